/* SPDX-License-Identifier: Apache-2.0 */
/* sov-s3 internals shared by its files: configuration, the store (SQLite metadata index with a
 * group-committing writer thread, object data files with per-block CRCs), the per-request
 * context that authentication and dispatch fill in, and the S3 operations. */
#ifndef SOV_S3_H
#define SOV_S3_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ec.h"
#include "sigv4.h"
#include "sse.h"
#include "sov/buf.h"
#include "sov/conf.h"
#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/metrics.h"

#define S3_MAX_KEY         1024 /* bytes, as AWS */
#define S3_MAX_BUCKET      63
#define S3_BLOCK           (256 * 1024)   /* CRC block of data files */
#define S3_GET_BUF         (4 * S3_BLOCK) /* read and send size of large GETs */
#define S3_MAX_XML_BODY    (1024 * 1024)
#define S3_MAX_DELETE_KEYS 1000
#define S3_MAX_PARTS       10000
#define S3_MIN_PART        (5 * 1024 * 1024)
#define S3_MAX_PART        (5ull * 1024 * 1024 * 1024)
#define S3_MAX_USER_META   2048 /* bytes of x-amz-meta-* names and values, as AWS */
#define S3_FORMAT_VERSION  2
#define S3_XMLNS           "http://s3.amazonaws.com/doc/2006-03-01/"

typedef struct S3Config {
    char listen[SOV_CONF_STR_MAX];
    int64_t workers;
    bool access_log;
    char tls_cert[SOV_CONF_STR_MAX];
    char tls_key[SOV_CONF_STR_MAX];
    char log_level[SOV_CONF_STR_MAX];
    char data_dir[SOV_CONF_STR_MAX];
    char region[SOV_CONF_STR_MAX];
    char regions[SOV_CONF_STR_MAX];
    char account[SOV_CONF_STR_MAX];
    char access_key_id[SOV_CONF_STR_MAX];
    char secret_access_key[SOV_CONF_STR_MAX];
    char keys_file[SOV_CONF_STR_MAX];
    char domain[SOV_CONF_STR_MAX];
    bool fsync;
    uint64_t inline_max;
    uint64_t max_object_size;
    char drives[SOV_CONF_STR_MAX];   /* erasure coding: drive directories, comma-separated */
    char ec[SOV_CONF_STR_MAX];       /* default geometry: auto or K+M */
    char class_ec[SOV_CONF_STR_MAX]; /* per storage class: CLASS=K+M,... */
    int64_t scrub_interval;          /* seconds between background scrubs; 0: none */
    int64_t lifecycle_day_seconds;   /* seconds that count as one lifecycle day (tests: 1-2) */
    int64_t lifecycle_interval;      /* seconds between lifecycle worker passes */
    SovHttpLimitsConf http;
} S3Config;

extern const SovConfField s3_conf_fields[];
extern const size_t s3_conf_nfields;

/* ---- accounts ---- */

typedef struct S3Key {
    char account[64];
    char access_key[S3_ACCESS_KEY_MAX + 1];
    char secret[S3_SECRET_MAX + 1];
} S3Key;

/* ---- store ---- */

typedef struct S3Store S3Store;
typedef struct S3Loop S3Loop; /* one per worker loop: read connection and completion queue */

/* One data file of an object (a whole single-PUT object, or one multipart part). */
typedef struct S3Segment {
    char file[33]; /* 32 hex digits */
    uint64_t size;
    uint32_t nblocks;
    uint32_t *crcs; /* CRC-32 of each S3_BLOCK of the file */
    char etag[35];  /* part ETag (hex MD5), for partNumber reads and ListParts */
    /* Erasure-coded segments (ec_k > 0): shard files on the store's drives, each block with
     * its CRC-32C inside them (nblocks 0, no crcs here). */
    uint8_t ec_k, ec_m;
    uint32_t ec_block;
} S3Segment;

typedef struct S3Object {
    char *bucket;
    char *key;
    char version[40];
    uint64_t size;
    char etag[48]; /* without quotes */
    int64_t mtime_ms;
    char storage_class[24];
    bool delete_marker; /* a versioned bucket's marker of a deletion (no data) */
    bool noncurrent;    /* a version that is not the key's latest (read by version id) */
    int64_t seq;        /* order of the key's versions (set by s3_meta_put_version) */
    char *meta_json;    /* {"content-type":..., "x-amz-meta-x":...} */
    /* Data: inline bytes (size bytes, crc32 inline_crc) or segments. */
    uint8_t *inline_data;
    uint32_t inline_crc;
    bool is_inline;
    uint32_t nsegs;
    S3Segment *segs;
} S3Object;

void s3_object_clear(S3Object *o);
/* Encodes/decodes segments into the layout column (versioned binary format). */
int s3_layout_encode(const S3Segment *segs, uint32_t n, SovBuf *out);
int s3_layout_decode(const void *p, size_t n, S3Segment **ret, uint32_t *ret_n);
void s3_segments_free(S3Segment *segs, uint32_t n);

typedef struct S3StoreConfig {
    const char *data_dir;
    bool fsync;
    /* Erasure coding: comma-separated drive directories (NULL or "": data files under
     * data_dir/objects, no erasure coding), the default geometry ("auto": by drive count, or
     * "K+M") and per storage class ones ("STANDARD_IA=3+1,GLACIER=2+2"). */
    const char *drives;
    const char *ec;
    const char *class_ec;
    int64_t scrub_interval; /* seconds between background scrubs of every shard; 0: none */
    const EcOps *ec_ops;    /* tests: the drives' system calls (NULL: the real ones) */
    void *ec_ops_ud;
} S3StoreConfig;

int s3_store_open(const S3StoreConfig *cfg, S3Store **ret, SovBuf *err);
void s3_store_close(S3Store *st);
const char *s3_store_dir(const S3Store *st);
bool s3_store_fsync(const S3Store *st);
/* The drive set, or NULL when the store does not erasure-code. */
const EcSet *s3_store_ecset(const S3Store *st);
/* The geometry that new data of a storage class gets (only with a drive set). */
void s3_store_geom(const S3Store *st, const char *storage_class, EcGeom *ret);
/* Queues an erasure-coded segment a read found damaged for the healer thread. */
void s3_store_heal_later(S3Store *st, const S3Segment *seg);
/* Verifies and repairs every erasure-coded segment now (blocking: the thread pool's job).
 * Counts segments checked, shards found damaged and rewritten, and segments that lost more
 * than their parity can rebuild. */
typedef struct S3HealStats {
    uint64_t segments, damaged, healed, lost;
} S3HealStats;
int s3_store_heal_all(S3Store *st, S3HealStats *ret);
/* The daemon stops (SIGTERM): the healer thread ends and a pass that runs (the background scrub
 * or an operator's heal) ends after the segment it is on, returning -ECANCELED; later passes
 * return -ECANCELED at once. Writes and reads go on until s3_store_close. */
void s3_store_stop(S3Store *st);

/* The store's drives (drives.c; used by store.c only). */
typedef struct S3Drives S3Drives;
int s3_drives_open(const S3StoreConfig *cfg, const char *db_path, S3Drives **ret, SovBuf *err);
void s3_drives_stop(S3Drives *d);
void s3_drives_close(S3Drives *d);
const EcSet *s3_drives_set(const S3Drives *d);
void s3_drives_geom(const S3Drives *d, const char *cls, EcGeom *ret);
void s3_drives_remove(S3Drives *d, const char *id);
unsigned s3_drives_sweep(S3Drives *d, const char *sorted_ids, size_t n);
void s3_drives_heal_later(S3Drives *d, const S3Segment *seg);
int s3_drives_heal_all(S3Drives *d, S3HealStats *ret);

S3Loop *s3_loop_new(S3Store *st, uv_loop_t *loop);
void s3_loop_close(S3Loop *l);  /* closes the async handle; frees once closed */
sqlite3 *s3_loop_db(S3Loop *l); /* this loop's read-only connection */
uv_loop_t *s3_loop_uv(S3Loop *l);

/* A metadata change, applied by the writer thread inside a shared transaction (group commit).
 * apply runs on the writer thread and returns 0 or a negative errno (its changes are rolled
 * back to a savepoint then); done runs on the submitting loop once the transaction committed
 * (status 0) or failed. Files named in unlink_after are removed after a successful commit. */
typedef struct S3WriteOp S3WriteOp;
struct S3WriteOp {
    int (*apply)(sqlite3 *db, S3WriteOp *op);
    void (*done)(S3WriteOp *op, int status);
    void *ud;
    S3Loop *loop;
    int status;
    char err_code[48];   /* set by apply for a specific S3 error */
    SovBuf unlink_after; /* NUL-separated file ids */
    S3WriteOp *next;
};
void s3_store_submit(S3Store *st, S3WriteOp *op);
/* Files to delete once the op's transaction commits. */
int s3_op_unlink_after(S3WriteOp *op, const char *file_id);
/* The same for every data file a layout (objects.layout, parts.layout) names; NULL: none. */
void s3_op_unlink_layout(S3WriteOp *op, const void *layout, size_t n);

/* Data files: data_dir/objects/xx/<id>; new ones are written under data_dir/tmp and moved in by
 * s3_file_commit (fsync file, rename, fsync dir), which blocks: call it off the loop. */
int s3_file_new_id(char out[33]);
int s3_file_path(const S3Store *st, const char *id, char *out, size_t cap);
int s3_file_tmp_path(const S3Store *st, const char *id, char *out, size_t cap);
int s3_file_commit(const S3Store *st, const char *id, int fd);
void s3_file_remove(const S3Store *st, const char *id);

/* Reads (on a loop's read connection). Return 0, -ENOENT, or a negative errno. */
typedef struct S3Bucket {
    char name[S3_MAX_BUCKET + 1];
    char owner[64];
    char region[64];
    int64_t created_ms;
    char versioning[16]; /* "", "Enabled" or "Suspended" */
    bool no_config;      /* buckets.config is empty: no policy, ACL, CORS... to read */
    bool lifecycle;      /* buckets.config may hold a lifecycle configuration */
} S3Bucket;
int s3_bucket_get(sqlite3 *db, const char *name, S3Bucket *ret);
/* The current version (-ENOENT when the key has none or it is a delete marker). */
int s3_object_get_meta(sqlite3 *db, const char *bucket, const char *key, S3Object *ret);
/* One version (NULL: the current one, which may be a delete marker: ret->delete_marker). */
int s3_object_get_version(sqlite3 *db, const char *bucket, const char *key, const char *version,
                          S3Object *ret);

/* Where a body goes while it arrives: memory up to the inline limit, else a data file under
 * tmp/ with a CRC-32 per S3_BLOCK. */
typedef struct S3Sink {
    S3Store *st;
    bool to_file;
    int fd;
    EcWriter *ec; /* a file sink on a store with drives: the shards being written */
    EcGeom geom;
    bool ec_committed;
    char file[33];
    SovBuf mem;
    uint64_t size;
    uint32_t *crcs;
    uint32_t ncrc, capcrc;
    uint32_t block_crc;
    uint64_t block_fill;
} S3Sink;
/* storage_class picks the geometry of an erasure-coded store (NULL: STANDARD). */
int s3_sink_open(S3Sink *k, S3Store *st, bool to_file, const char *storage_class);
/* The same commit as s3_sink_commit, blocking (for code already on the thread pool). */
int s3_sink_commit_sync(S3Sink *k);
int s3_sink_write(S3Sink *k, const char *p, size_t n);
int s3_sink_finish(S3Sink *k); /* closes the last partial CRC block */
/* Moves the file in (fsync, rename, dir fsync) on the thread pool, then calls done on loop. */
int s3_sink_commit(S3Sink *k, uv_loop_t *loop, void (*done)(void *ud, int status), void *ud);
void s3_sink_segment(S3Sink *k, S3Segment *seg, const char *etag);
void s3_sink_abort(S3Sink *k);   /* removes the temporary file */
void s3_sink_release(S3Sink *k); /* frees memory, closes the fd */

/* ---- requests ---- */

typedef struct S3Param {
    char *name;
    char *value; /* "" when the parameter has no '=' */
    bool has_value;
} S3Param;

typedef struct S3Server S3Server;

typedef struct S3Req {
    SovHttpReq *http;
    S3Server *srv;
    S3Loop *loop;
    S3AuthResult auth;
    const S3Key *key;      /* the authenticated key (its account); NULL for an anonymous request */
    char bucket_owner[64]; /* the bucket's owner, once s3_require_bucket passed */
    bool bucket_lifecycle; /* and whether it may have a lifecycle configuration */
    /* s3_access_check left the decision to the object's ACL: s3_access_object decides once
     * the object's metadata is read */
    bool object_acl_pending;
    char *bucket;   /* NULL for the service */
    char *key_name; /* object key, NULL when none */
    S3Param *params;
    size_t nparams;
    const char *op; /* operation name, for metrics */
    int64_t start_ns;
    /* Body reading (see s3_body_*) */
    S3ChunkDecoder *chunks;
    SovDigest *sha256; /* payload hash check */
    SovDigest *md5;    /* ETag and Content-MD5 */
    uint8_t want_md5[SOV_MD5_LEN];
    bool check_md5;
    uint64_t body_bytes;
    uint8_t body_md5[SOV_MD5_LEN]; /* MD5 of the decoded body, once it ended */
    bool body_active;              /* the body reader still runs */
    bool finished;                 /* answered while the body was still being read */
    int (*body_data)(struct S3Req *r, const char *p, size_t n);
    void (*body_end)(struct S3Req *r);
    SovBuf xml; /* buffered small XML bodies */
    bool body_failed;
    void *op_state;
    void (*op_free)(struct S3Req *r);
} S3Req;

struct S3Server {
    S3Config cfg;
    S3Store *store;
    S3Key *keys;
    size_t nkeys;
    uv_rwlock_t keys_lock;
    _Atomic uint64_t keys_checked_ms; /* last look at keys_file for an unknown key */
    _Atomic int64_t keys_mtime;       /* keys_file's mtime (ns) when last loaded */
    char regions[16][64];
    size_t nregions;
    SovMetric *m_bytes_in, *m_bytes_out;
    void *lifecycle;      /* the lifecycle worker's state (lifecycle.c) */
    char admin_token[65]; /* data_dir/admin.token: operator requests (POST /_sov/heal) */
};

/* Per-loop state, reached from handlers through the router's userdata. */
typedef struct S3Worker {
    S3Server *srv;
    S3Loop *loop;
    SovRouter *router;
    SovHttpServer *http;
} S3Worker;

void s3_handle(SovHttpReq *req, void *ud);
const S3Key *s3_find_key(S3Server *srv, const char *access_key);
int s3_keys_load(S3Server *srv, SovBuf *err);

/* Query parameter lookup (decoded); NULL when absent. */
const char *s3_param(const S3Req *r, const char *name);
bool s3_has_param(const S3Req *r, const char *name);
/* Request header as a NUL-terminated arena copy, or NULL. */
char *s3_header(S3Req *r, const char *name);

/* The XML body of an S3 error (bucket and key may be NULL). */
void s3_error_doc(SovBuf *doc, const char *code, const char *message, const char *bucket,
                  const char *key, const char *request_id);
void s3_error_doc_region(SovBuf *doc, const char *code, const char *message, const char *bucket,
                         const char *key, const char *request_id, const char *region);
/* Answers an S3 XML error and ends the request. */
void s3_error(S3Req *r, const char *code, const char *message);
void s3_error_status(S3Req *r, int status, const char *code, const char *message);
/* Answers 200 (or status) with an XML document and ends the request. */
void s3_reply_xml(S3Req *r, int status, SovBuf *doc);
void s3_reply_empty(S3Req *r, int status);
void s3_req_done(S3Req *r);
/* Counts the request in the metrics (operation, status, latency). */
void s3_record(S3Req *r, int status);

/* Reads the request body: checks the signed payload hash, decodes aws-chunked bodies and
 * Content-MD5, calling r->body_data for each decoded piece and r->body_end at the end (when
 * every check passed). On failure it answers the S3 error itself. */
int s3_body_start(S3Req *r);
/* Reads a small XML body into r->xml, then calls done. */
int s3_body_xml(S3Req *r, void (*done)(S3Req *r));

/* The requester's account, or "" for an anonymous request. */
const char *s3_principal(const S3Req *r);

/* ---- bucket configuration documents (bconf.c) ----
 * buckets.config is one JSON object whose members are the bucket's sub-resource documents in
 * our own JSON form: "policy", "acl", "public_access_block", "cors", "tagging", "lifecycle",
 * "encryption". */
/* Reads one member on a loop's read connection: 0 with *ret a new reference (NULL when the
 * member is absent), -ENOENT without the bucket, or -EIO. */
int s3_bucket_config_get(sqlite3 *db, const char *bucket, const char *name, json_t **ret);
/* Sets (value, stolen) or removes (NULL) one member through the writer; done gets 0, -ENOENT
 * (bucket gone) or another negative errno and must answer the request. */
void s3_bucket_config_set(S3Req *r, const char *name, json_t *value,
                          void (*done)(S3Req *r, int status));
/* The common shape of a bucket sub-resource handler (GET/PUT/DELETE ?name): checks the bucket
 * and the access; PUT reads the XML body and calls put (which stores with
 * s3_bucket_config_set), DELETE removes the member (stored answers). Returns 1 for a GET, with
 * *doc the member (a new reference, or NULL when absent) for the caller to render; 0 when the
 * request was taken care of (answered, or in progress). */
int s3_bucket_subresource(S3Req *r, const char *name, void (*put)(S3Req *r),
                          void (*stored)(S3Req *r, int status), json_t **doc);
/* Edits the metadata JSON of one object version (NULL or "": the current one) through the
 * writer: edit runs on the writer thread and returns 0 (keep), or a negative errno. done gets
 * 0 and the version edited, -ENOENT (no such key or version, or a delete marker) or another
 * negative errno, and must answer. Keys of meta beginning with '_' are ours (never sent as
 * headers): "_acl", "_tags", "_restore". */
typedef int (*S3MetaEdit)(json_t *meta, void *ud);
void s3_object_meta_update(S3Req *r, const char *version, S3MetaEdit edit, void *ud,
                           void (*done)(S3Req *r, int status, const char *version));

/* ---- access control (access.c, policy.c) ---- */
/* Decides whether the request (r->op on r->bucket / r->key_name, by s3_principal) may go on:
 * 0 when allowed (possibly with object_acl_pending set), else answers the S3 error itself and
 * returns < 0. Called by s3_require_bucket once the bucket exists. */
int s3_access_check(S3Req *r, const S3Bucket *b);
/* The keys of a DeleteObjects request (versions[i] NULL: the current one; keys[i] NULL: skipped):
 * denied[i] set when the caller may not delete it; answers nothing. */
void s3_access_keys(S3Req *r, size_t n, const char *const *keys, const char *const *versions,
                    uint8_t *denied);
/* Reads of an object whose decision waits for its ACL: 0 allowed, else answers, < 0. */
int s3_access_object(S3Req *r, const S3Object *o);
/* May the caller list the bucket (s3:ListBucket)? Without it a missing key answers AccessDenied. */
bool s3_access_may_list(S3Req *r);
/* May the requester read the copy source object o of bucket b? 0 or -EACCES (no answer). */
int s3_access_copy_source(S3Req *r, const S3Bucket *b, const S3Object *o);
/* The object ACL (x-amz-acl, x-amz-grant-*) of a PUT, COPY or CreateMultipartUpload into
 * meta["_acl"]: 0, or < 0 with *code the S3 error code. */
int s3_acl_collect(S3Req *r, json_t *meta, const char **code);
/* The initial configuration of a new bucket (x-amz-acl of CreateBucket): 0 with *ret a new
 * JSON object, or < 0 with *code. */
int s3_bucket_initial_config(S3Req *r, json_t **ret, const char **code);
void s3_bucket_policy(S3Req *r);              /* GET/PUT/DELETE ?policy */
void s3_bucket_policy_status(S3Req *r);       /* GET ?policyStatus */
void s3_bucket_acl(S3Req *r);                 /* GET/PUT ?acl on a bucket */
void s3_object_acl(S3Req *r);                 /* GET/PUT ?acl on an object */
void s3_bucket_public_access_block(S3Req *r); /* GET/PUT/DELETE ?publicAccessBlock */

/* ---- tagging and CORS (tagging.c, cors.c) ---- */
/* x-amz-tagging of a PUT, COPY (with x-amz-tagging-directive REPLACE) or
 * CreateMultipartUpload into meta["_tags"]: 0, or < 0 with *code. */
int s3_tagging_collect(S3Req *r, json_t *meta, const char **code);
void s3_bucket_tagging(S3Req *r); /* GET/PUT/DELETE ?tagging on a bucket */
void s3_object_tagging(S3Req *r); /* GET/PUT/DELETE ?tagging on an object */
void s3_bucket_cors(S3Req *r);    /* GET/PUT/DELETE ?cors */
void s3_cors_preflight(S3Req *r); /* OPTIONS */
/* Adds the Access-Control-* headers that the bucket's CORS rules give a request with an
 * Origin header (called before any operation answers). */
void s3_cors_headers(S3Req *r);

/* ---- lifecycle and storage classes (lifecycle.c) ---- */
void s3_bucket_lifecycle(S3Req *r); /* GET/PUT/DELETE ?lifecycle */
void s3_object_restore(S3Req *r);   /* POST ?restore */
/* GET of a GLACIER object not restored: answers InvalidObjectState and returns < 0. */
int s3_restore_check(S3Req *r, const S3Object *o);
/* x-amz-restore on GET/HEAD of a restored or restoring object. */
void s3_restore_headers(S3Req *r, const S3Object *o);
/* x-amz-expiration on a PUT, copy, completion, GET or HEAD of the current version: when the
 * earliest enabled lifecycle Expiration (Days or Date) whose filter takes the object falls due,
 * and that rule's id. Reads the bucket's configuration on r's loop; meta is o's metadata when
 * the caller has it parsed (NULL: read from o->meta_json). */
void s3_expiration_header(S3Req *r, const S3Object *o, json_t *meta);
/* Starts the lifecycle worker on loop (the daemon's main loop: a timer every
 * cfg.lifecycle_interval seconds, its own S3Loop for reads and writer completions); stop ends
 * it before the store closes. */
int s3_lifecycle_start(S3Server *srv, uv_loop_t *loop);
void s3_lifecycle_stop(S3Server *srv);
/* A GET read an object: INTELLIGENT_TIERING counts its days in the frequent tier from the last
 * read (recorded by the worker's next pass). Any thread. */
void s3_lifecycle_accessed(S3Server *srv, const S3Object *o);

/* Operations */
void s3_list_buckets(S3Req *r);
void s3_bucket_create(S3Req *r);
void s3_bucket_head(S3Req *r);
void s3_bucket_delete(S3Req *r);
void s3_bucket_location(S3Req *r);
void s3_bucket_versioning(S3Req *r);
void s3_list_objects(S3Req *r, int version); /* ListObjects 1 or 2 */
void s3_delete_objects(S3Req *r);
void s3_object_put(S3Req *r);
void s3_object_get(S3Req *r);
void s3_object_delete(S3Req *r);
void s3_object_copy(S3Req *r);
void s3_multipart_create(S3Req *r);
void s3_multipart_upload_part(S3Req *r);
void s3_multipart_complete(S3Req *r);
void s3_multipart_abort(S3Req *r);
void s3_multipart_list_parts(S3Req *r);
void s3_multipart_list_uploads(S3Req *r);

/* Helpers shared by the operation files */
int s3_body_size(S3Req *r, uint64_t *ret);
int s3_storage_class(S3Req *r, char out[24]);
int s3_collect_meta(S3Req *r, json_t **ret, const char **ret_code);
char *s3_meta_dump(json_t *m);
/* The metadata of a copy that keeps the source's (COPY directive): its own ACL, no restore
 * state, the source's tags unless x-amz-tagging-directive is REPLACE. */
int s3_copy_meta(S3Req *r, const char *src_meta, char **ret, const char **ret_code);
/* Inside the writer's transaction: */
int s3_meta_check_bucket(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *owner);
int s3_meta_remove_object(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key);
/* Versioning-aware removal of the current version, as DeleteObject without a versionId does
 * (and lifecycle Expiration): unversioned buckets lose the object, versioned ones get a delete
 * marker (Suspended: it replaces the null version). The new marker's id goes to marker_ret
 * (40 bytes) when one is made, else "". */
int s3_meta_expire_current(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                           int64_t now_ms, char *marker_ret);
/* Removes one version (or delete marker) for good; the next newest becomes current. */
int s3_meta_remove_version(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                           const char *version);
/* The same, saying whether it was a delete marker: 1 removed, 0 no such version. */
int s3_meta_remove_version_ex(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                              const char *version, bool *was_marker);
/* Stores o as the key's new current version under the bucket's versioning state (a bucket that
 * never had versioning replaces the key; Enabled adds a version; Suspended replaces the 'null'
 * one); sets o->version and o->seq. Returns 1 when the bucket has a versioning state (the
 * reply names the version), 0 when it never had, or a negative errno. */
int s3_meta_put_version(sqlite3 *db, S3WriteOp *w, S3Object *o);
/* 'null' or one of our 32-hex-digit ids (anything else is InvalidArgument). */
bool s3_version_id_valid(const char *v);
void s3_list_versions(S3Req *r); /* ListObjectVersions */
/* The arguments every listing takes (prefix, delimiter, max-keys capped at 1000, encoding-type);
 * answers InvalidArgument and returns < 0 for bad ones. */
int s3_list_args(S3Req *r, const char **prefix, const char **delimiter, long *max_keys, bool *url);
/* The bucket's versioning state inside the writer: "", "Enabled" or "Suspended". */
int s3_meta_versioning(sqlite3 *db, const char *bucket, char out[16]);
int s3_meta_insert_object(sqlite3 *db, const S3Object *o);
/* Source of a copy: parses x-amz-copy-source, reads the object, checks access and the
 * x-amz-copy-source-if-* conditions; answers the error itself and returns < 0. */
int s3_copy_source(S3Req *r, S3Object *ret);
/* Copies [off, off+len) of an object into a new committed data file on the thread pool (CRCs
 * checked while reading); done gets the segment (file, size, crcs, etag = MD5 of the data). */
int s3_copy_data(S3Req *r, const S3Object *src, uint64_t off, uint64_t len,
                 const char *storage_class,
                 void (*done)(S3Req *r, int status, S3Segment *seg, void *ud), void *ud);
/* ETag list match (If-Match / If-None-Match): "*", or one of the quoted or bare tags. */
bool s3_etag_matches(const char *header, const char *etag);
bool s3_bucket_name_valid(const char *name);
int64_t s3_now_ms(void);
void s3_format_iso8601(int64_t ms, char out[32]);
void s3_format_http_date(int64_t ms, char out[40]);
int s3_parse_http_date(const char *s, int64_t *ret_ms);
/* Checks the bucket exists and belongs to the caller; answers the error and returns < 0. */
int s3_require_bucket(S3Req *r, S3Bucket *ret);
/* Base64 of small values (Content-MD5, tokens): decode returns the byte count or -EINVAL;
 * encode writes 4*ceil(n/3)+1 bytes. */
int s3_base64_decode(const char *in, uint8_t *out, size_t cap);
void s3_base64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes n base64 characters into out (at least 3n/4 bytes); returns the length or -EINVAL. */
int s3_base64_decode_buf(const char *in, size_t n, uint8_t *out);

/* ---- server-side encryption (encrypt.c, on sse.h) ----
 * Encryption sits above the sink: bodies go through an SseEncryptor whose stored bytes feed
 * s3_sink_write, so a segment's size, CRCs and shards are of the stored form while the object's
 * size and ETag are of the plaintext. An encrypted object's metadata keeps meta["_sse"]:
 * {"s3": {"kid", "wk"}} (the data key wrapped under sse_context(bucket, key, NULL)) or
 * {"c": {"kmd5", "salt", "kh"}} (SSE-C); an upload's metadata likewise. Every data stream (a
 * single-PUT object's file or inline bytes, one multipart part) uses part number 0. */
typedef enum S3SseKind { S3_SSE_NONE, S3_SSE_S3, S3_SSE_C } S3SseKind;
typedef struct S3Sse {
    S3SseKind kind;
    uint8_t key[SSE_KEY_LEN];          /* the data key of the object's streams */
    SseWrappedKey wrapped;             /* SSE-S3 */
    SseCustomerRecord rec;             /* SSE-C */
    char md5_b64[SSE_MD5_B64_LEN + 1]; /* SSE-C: the customer key's MD5 (echoed) */
} S3Sse;
/* The store's keyring (data_dir/keys), opened at start-up before the workers. */
int s3_sse_keyring_open(const char *data_dir);
void s3_sse_keyring_close(void);
SseKeyring *s3_sse_keyring(void);
/* The encryption of a new object (PUT, copy destination, CreateMultipartUpload) of r->bucket /
 * r->key_name: SSE-C headers, x-amz-server-side-encryption, else the bucket's default (else
 * none). Answers the error itself and returns < 0. */
int s3_sse_for_write(S3Req *r, S3Sse *ret);
/* The key to read an object (or upload) whose metadata is meta_json, with the request's SSE-C
 * headers (prefix "" or "x-amz-copy-source-"): kind S3_SSE_NONE for a plain object. Answers
 * 400 InvalidRequest (missing or needless SSE-C headers), 403 AccessDenied (wrong key) or 500
 * itself and returns < 0. */
int s3_sse_for_read(S3Req *r, const char *bucket, const char *key, const char *meta_json,
                    const char *prefix, S3Sse *ret);
/* Replaces meta["_sse"] of a dumped metadata object with s's record (none: removed). */
int s3_sse_meta_apply(const S3Sse *s, char **meta_json);
bool s3_sse_meta_encrypted(const char *meta_json);
/* The length of an inline object's stored bytes (its plaintext size unless encrypted). */
uint64_t s3_inline_stored_len(const S3Object *o);
/* x-amz-server-side-encryption or the SSE-C algorithm and key MD5 for a response. */
void s3_sse_headers(S3Req *r, const S3Sse *s);
void s3_sse_meta_headers(S3Req *r, const char *meta_json);
void s3_sse_clear(S3Sse *s); /* wipes the keys */
/* The ETag of new data given the MD5 of its plaintext: that MD5 in hex, except for SSE-C,
 * where listings (no key needed) must not confirm guesses of the plaintext: then a keyed
 * digest of it (S3's ETag of SSE-C data is not its MD5 either). */
void s3_sse_etag(const S3Sse *s, const uint8_t md5[16], char hex[33]);
/* A body's way into a sink: plaintext in, stored bytes (encrypted when s says so) out. */
typedef struct S3SseWriter {
    S3Sink *sink;
    SseEncryptor *enc; /* NULL: plain */
    uint64_t plain;    /* plaintext bytes written */
} S3SseWriter;
int s3_sse_writer_open(S3SseWriter *w, const S3Sse *s, S3Sink *k);
int s3_sse_writer_write(S3SseWriter *w, const void *p, size_t n);
int s3_sse_writer_finish(S3SseWriter *w);
void s3_sse_writer_release(S3SseWriter *w);
/* A whole stream in memory (inline data): decrypt into *ret (malloc, plain_size bytes), -EBADMSG
 * when damaged; encrypt appends the stored form to out. */
int s3_sse_decrypt_buf(const S3Sse *s, const uint8_t *in, size_t n, uint64_t plain_size,
                       uint8_t **ret);
int s3_sse_encrypt_buf(const S3Sse *s, const void *p, size_t n, SovBuf *out);
/* s3_copy_data with the source's key (src_sse) and the destination's encryption (dst_sse);
 * either may be NULL for plain data. off and len are plaintext; the segment is stored form. */
int s3_copy_data_sse(S3Req *r, const S3Object *src, uint64_t off, uint64_t len,
                     const char *storage_class, const S3Sse *src_sse, const S3Sse *dst_sse,
                     void (*done)(S3Req *r, int status, S3Segment *seg, void *ud), void *ud);
void s3_bucket_encryption(S3Req *r); /* GET/PUT/DELETE ?encryption */

#endif
