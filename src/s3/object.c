/* SPDX-License-Identifier: Apache-2.0 */
/* Object operations: PutObject, GetObject/HeadObject (ranges, partNumber, conditions,
 * response-* overrides), DeleteObject, DeleteObjects and CopyObject, plus the data sink that
 * PutObject and UploadPart stream bodies into (in memory up to the inline limit, else a data
 * file with a CRC-32 per block) and the reader that checks those CRCs on every GET. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

/* ---- sink ---- */

int s3_sink_open(S3Sink *k, S3Store *st, bool to_file, const char *storage_class)
{
    memset(k, 0, sizeof(*k));
    k->st = st;
    k->fd = -1;
    k->to_file = to_file;
    if (!to_file)
        return 0;
    char path[PATH_MAX];
    int r = s3_file_new_id(k->file);
    if (r < 0)
        return r;
    const EcSet *set = s3_store_ecset(st);
    if (set) {
        s3_store_geom(st, storage_class, &k->geom);
        return ec_writer_open(set, &k->geom, k->file, &k->ec);
    }
    if ((r = s3_file_tmp_path(st, k->file, path, sizeof(path))) < 0)
        return r;
    k->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    return k->fd < 0 ? -errno : 0;
}

static int sink_crc_push(S3Sink *k)
{
    if (k->ncrc == k->capcrc) {
        uint32_t cap = k->capcrc ? k->capcrc * 2 : 16;
        uint32_t *c = realloc(k->crcs, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        k->crcs = c;
        k->capcrc = cap;
    }
    k->crcs[k->ncrc++] = k->block_crc;
    k->block_crc = 0;
    k->block_fill = 0;
    return 0;
}

int s3_sink_write(S3Sink *k, const char *p, size_t n)
{
    if (!k->to_file) {
        k->size += n;
        return sov_buf_append(&k->mem, p, n);
    }
    if (k->ec) {
        int r = ec_writer_write(k->ec, p, n);
        if (r == 0)
            k->size += n;
        return r;
    }
    if (k->size == 0 && k->ncrc == 0 && k->block_fill == 0)
        k->block_crc = 0;
    size_t off = 0;
    while (off < n) {
        size_t take = SOV_MIN(n - off, (size_t)(S3_BLOCK - k->block_fill));
        k->block_crc = sov_crc32c(k->block_crc, p + off, take);
        k->block_fill += take;
        off += take;
        if (k->block_fill == S3_BLOCK && sink_crc_push(k) < 0)
            return -ENOMEM;
    }
    for (off = 0; off < n;) {
        ssize_t w = write(k->fd, p + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)w;
    }
    k->size += n;
    return 0;
}

int s3_sink_finish(S3Sink *k)
{
    if (!k->to_file)
        return 0;
    if (k->ec)
        return ec_writer_finish(k->ec);
    if (k->block_fill && sink_crc_push(k) < 0)
        return -ENOMEM;
    return 0;
}

void s3_sink_abort(S3Sink *k)
{
    if (k->ec && !k->ec_committed)
        ec_writer_abort(k->ec);
    if (k->fd >= 0) {
        char path[PATH_MAX];
        close(k->fd);
        k->fd = -1;
        if (s3_file_tmp_path(k->st, k->file, path, sizeof(path)) == 0)
            unlink(path);
    }
    s3_sink_release(k);
}

void s3_sink_release(S3Sink *k)
{
    k->ec = ec_writer_free(k->ec); /* removes nothing once committed */
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    free(k->crcs);
    k->crcs = NULL;
    sov_buf_release(&k->mem);
}

/* Commits a file sink off the loop (fsync, rename, directory fsync), then calls done. */
typedef struct CommitJob {
    uv_work_t work;
    S3Sink *sink;
    int status;
    void (*done)(void *ud, int status);
    void *ud;
} CommitJob;

int s3_sink_commit_sync(S3Sink *k)
{
    if (k->ec) {
        int r = ec_writer_commit(k->ec);
        k->ec_committed = r == 0;
        if (r == 0 && ec_writer_damaged(k->ec)) {
            /* written with fewer shards than k+m (still a quorum): repair the rest */
            S3Segment seg = {.size = k->size,
                             .ec_k = (uint8_t)k->geom.k,
                             .ec_m = (uint8_t)k->geom.m,
                             .ec_block = k->geom.block};
            memcpy(seg.file, k->file, sizeof(seg.file));
            s3_store_heal_later(k->st, &seg);
        }
        return r;
    }
    return s3_file_commit(k->st, k->file, k->fd);
}

static void commit_work(uv_work_t *w)
{
    CommitJob *j = w->data;
    j->status = s3_sink_commit_sync(j->sink);
}

static void commit_after(uv_work_t *w, int status)
{
    CommitJob *j = w->data;
    if (j->sink->fd >= 0)
        close(j->sink->fd);
    j->sink->fd = -1;
    j->done(j->ud, status < 0 ? status : j->status);
    free(j);
}

int s3_sink_commit(S3Sink *k, uv_loop_t *loop, void (*done)(void *ud, int status), void *ud)
{
    CommitJob *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->work.data = j;
    j->sink = k;
    j->done = done;
    j->ud = ud;
    int r = uv_queue_work(loop, &j->work, commit_work, commit_after);
    if (r < 0)
        free(j);
    return r;
}

/* Segment of a committed file sink (crcs moved into it). */
void s3_sink_segment(S3Sink *k, S3Segment *seg, const char *etag)
{
    memset(seg, 0, sizeof(*seg));
    memcpy(seg->file, k->file, 33);
    seg->size = k->size;
    seg->nblocks = k->ncrc;
    seg->crcs = k->crcs;
    k->crcs = NULL;
    snprintf(seg->etag, sizeof(seg->etag), "%.34s", etag);
    if (k->ec) {
        seg->ec_k = (uint8_t)k->geom.k;
        seg->ec_m = (uint8_t)k->geom.m;
        seg->ec_block = k->geom.block;
    }
}

/* ---- metadata headers ---- */

static const char *const stored_headers[] = {"content-type",
                                             "content-encoding",
                                             "content-disposition",
                                             "cache-control",
                                             "content-language",
                                             "expires",
                                             "x-amz-website-redirect-location",
                                             NULL};

/* Collects the headers an object keeps into a JSON object; "MetadataTooLarge" etc on error. */
int s3_collect_meta(S3Req *r, json_t **ret, const char **ret_code)
{
    json_t *m = json_object();
    size_t user = 0;
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; stored_headers[i]; i++) {
        SovStr v = sov_http_req_header(r->http, stored_headers[i]);
        if (!v.ptr)
            continue;
        if (i == 1) {
            /* aws-chunked describes the upload, not the object: it is not kept. */
            char enc[512];
            size_t n = 0;
            const char *p = v.ptr, *end = v.ptr + v.len;
            while (p < end) {
                const char *comma = memchr(p, ',', (size_t)(end - p));
                const char *e = comma ? comma : end;
                while (p < e && (*p == ' ' || *p == '\t'))
                    p++;
                size_t tl = (size_t)(e - p);
                while (tl && (p[tl - 1] == ' ' || p[tl - 1] == '\t'))
                    tl--;
                if (tl && !(tl == 11 && strncasecmp(p, "aws-chunked", 11) == 0) &&
                    n + tl + 2 < sizeof(enc)) {
                    if (n)
                        enc[n++] = ',';
                    memcpy(enc + n, p, tl);
                    n += tl;
                }
                p = e + 1;
            }
            if (n)
                json_object_set_new(m, stored_headers[i], json_stringn(enc, n));
            continue;
        }
        json_object_set_new(m, stored_headers[i], json_stringn(v.ptr, v.len));
    }
    size_t n = sov_http_req_header_count(r->http);
    for (size_t i = 0; i < n; i++) {
        SovStr name, value;
        sov_http_req_header_at(r->http, i, &name, &value);
        if (name.len <= 11 || strncasecmp(name.ptr, "x-amz-meta-", 11) != 0)
            continue;
        char lname[256];
        if (name.len >= sizeof(lname)) {
            json_decref(m);
            *ret_code = "MetadataTooLarge";
            return -EINVAL;
        }
        for (size_t j = 0; j < name.len; j++)
            lname[j] =
                (char)(name.ptr[j] >= 'A' && name.ptr[j] <= 'Z' ? name.ptr[j] + 32 : name.ptr[j]);
        lname[name.len] = '\0';
        user += name.len - 11 + value.len;
        json_t *val = json_stringn(value.ptr, value.len);
        if (!val) { /* not UTF-8 */
            json_decref(m);
            *ret_code = "InvalidArgument";
            return -EINVAL;
        }
        json_t *old = json_object_get(m, lname);
        if (old) { /* repeated header: values joined with ',' as HTTP says */
            char *joined = NULL;
            if (asprintf(&joined, "%s,%s", json_string_value(old), json_string_value(val)) < 0) {
                json_decref(val);
                json_decref(m);
                return -ENOMEM;
            }
            json_decref(val);
            val = json_string(joined);
            free(joined);
        }
        json_object_set_new(m, lname, val);
    }
    if (user > S3_MAX_USER_META) {
        json_decref(m);
        *ret_code = "MetadataTooLarge";
        return -EINVAL;
    }
    int rc;
    if ((rc = s3_acl_collect(r, m, ret_code)) < 0 ||
        (rc = s3_tagging_collect(r, m, ret_code)) < 0) {
        json_decref(m);
        return rc;
    }
    *ret = m;
    return 0;
}

int s3_copy_meta(S3Req *r, const char *src_meta, char **ret, const char **ret_code)
{
    json_t *m = json_loads(src_meta, 0, NULL);
    *ret = NULL;
    if (!m || !json_is_object(m)) {
        json_decref(m);
        *ret_code = "InternalError";
        return -EIO;
    }
    /* A copy is a new object: the requester's ACL, no restore; the tags stay unless
     * x-amz-tagging-directive says REPLACE. */
    json_object_del(m, "_acl");
    json_object_del(m, "_restore");
    const char *td = s3_header(r, "x-amz-tagging-directive");
    if (td && strcmp(td, "REPLACE") != 0 && strcmp(td, "COPY") != 0) {
        json_decref(m);
        *ret_code = "InvalidArgument";
        return -EINVAL;
    }
    bool replace_tags = td && strcmp(td, "REPLACE") == 0;
    if (replace_tags)
        json_object_del(m, "_tags");
    int rc = s3_acl_collect(r, m, ret_code);
    if (rc == 0 && replace_tags)
        rc = s3_tagging_collect(r, m, ret_code);
    if (rc == 0 && !(*ret = s3_meta_dump(m))) {
        *ret_code = "ServiceUnavailable";
        rc = -ENOMEM;
    }
    json_decref(m);
    return rc;
}

char *s3_meta_dump(json_t *m)
{
    return json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
}

/* ---- PutObject ---- */

typedef struct PutOp {
    S3WriteOp w;
    S3Req *r;
    S3Sink sink;
    bool committed_file;
    char etag[48];
    char *meta;
    char storage_class[24];
    int64_t now_ms;
    uint64_t expect;
    S3Segment seg;
    char version[40]; /* set once stored in a bucket with a versioning state */
    S3Sse sse;        /* the object's encryption (kind S3_SSE_NONE: none) */
    S3SseWriter wr;   /* the body's way into the sink (counts the plaintext) */
} PutOp;

/* Removes the current version of bucket/key inside the writer's transaction, queueing its data
 * files for removal after the commit. */
int s3_meta_remove_object(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT layout FROM objects WHERE bucket=? AND key=?", -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return -EIO;
    if (sqlite3_prepare_v2(db, "DELETE FROM objects WHERE bucket=? AND key=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -EIO;
}

/* Checks inside the writer's transaction that the bucket still exists for this owner. */
int s3_meta_check_bucket(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *owner)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT owner FROM buckets WHERE name=?", -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), r = 0;
    if (rc != SQLITE_ROW) {
        snprintf(w->err_code, sizeof(w->err_code), "NoSuchBucket");
        r = -ENOENT;
    } else if (strcmp((const char *)sqlite3_column_text(s, 0), owner) != 0) {
        snprintf(w->err_code, sizeof(w->err_code), "AccessDenied");
        r = -EACCES;
    }
    sqlite3_finalize(s);
    return r;
}

int s3_meta_insert_object(sqlite3 *db, const S3Object *o)
{
    sqlite3_stmt *s;
    SovBuf layout = SOV_BUF_INIT;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO objects(bucket, key, version, is_latest, size, etag,"
                           " mtime_ms, storage_class, meta, inline, inline_crc, layout, kind, seq)"
                           " VALUES(?1,?2,?13,1,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int(s, 11, o->delete_marker ? 1 : 0);
    sqlite3_bind_int64(s, 12, o->seq);
    sqlite3_bind_text(s, 13, o->version[0] ? o->version : "null", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 1, o->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, o->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (int64_t)o->size);
    sqlite3_bind_text(s, 4, o->etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, o->mtime_ms);
    sqlite3_bind_text(s, 6, o->storage_class, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, o->meta_json, -1, SQLITE_STATIC);
    if (o->is_inline) {
        uint64_t len = o->delete_marker ? 0 : s3_inline_stored_len(o); /* encrypted: stored */
        if (len)
            sqlite3_bind_blob(s, 8, o->inline_data, (int)len, SQLITE_STATIC);
        else
            sqlite3_bind_zeroblob(s, 8, 0);
        sqlite3_bind_int64(s, 9, o->inline_crc);
        sqlite3_bind_null(s, 10);
    } else {
        if (s3_layout_encode(o->segs, o->nsegs, &layout) < 0) {
            sqlite3_finalize(s);
            return -ENOMEM;
        }
        sqlite3_bind_null(s, 8);
        sqlite3_bind_null(s, 9);
        sqlite3_bind_blob(s, 10, layout.ptr, (int)layout.len, SQLITE_STATIC);
    }
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    sov_buf_release(&layout);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int put_apply(sqlite3 *db, S3WriteOp *w)
{
    PutOp *op = (PutOp *)w;
    S3Req *r = op->r;
    int rc = s3_meta_check_bucket(db, w, r->bucket, r->bucket_owner);
    if (rc < 0)
        return rc;
    S3Object o = {.bucket = r->bucket,
                  .key = r->key_name,
                  .size = op->wr.plain,
                  .mtime_ms = op->now_ms,
                  .meta_json = op->meta};
    snprintf(o.etag, sizeof(o.etag), "%s", op->etag);
    snprintf(o.storage_class, sizeof(o.storage_class), "%s", op->storage_class);
    if (!op->sink.to_file) {
        o.is_inline = true;
        o.inline_data = (uint8_t *)op->sink.mem.ptr;
        o.inline_crc = sov_crc32c(0L, op->sink.mem.ptr, op->sink.size); /* stored bytes */
    } else {
        o.nsegs = 1;
        o.segs = &op->seg;
    }
    op->version[0] = '\0';
    if ((rc = s3_meta_put_version(db, w, &o)) > 0)
        snprintf(op->version, sizeof(op->version), "%s", o.version);
    return rc < 0 ? rc : 0;
}

static void put_free(S3Req *r)
{
    PutOp *op = r->op_state;
    if (!op)
        return;
    if (op->committed_file)
        s3_file_remove(r->srv->store, op->sink.file);
    else
        s3_sink_abort(&op->sink);
    s3_sink_release(&op->sink);
    s3_sse_writer_release(&op->wr);
    s3_sse_clear(&op->sse);
    free(op->seg.crcs);
    free(op->meta);
    free(op);
    r->op_state = NULL;
}

static void put_done(S3WriteOp *w, int status)
{
    PutOp *op = (PutOp *)w;
    S3Req *r = op->r;
    if (status < 0) {
        if (op->w.err_code[0])
            s3_error(r, op->w.err_code, "The object could not be stored");
        else
            s3_error(r, "InternalError", "the metadata update failed");
        return;
    }
    op->committed_file = false; /* now owned by the metadata */
    op->sink.fd = -1;
    char etag[52];
    snprintf(etag, sizeof(etag), "\"%s\"", op->etag);
    sov_http_resp_header(r->http, "ETag", sov_str(etag));
    if (op->version[0])
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(op->version));
    S3Object o = {.bucket = r->bucket,
                  .key = r->key_name,
                  .size = op->expect,
                  .mtime_ms = op->now_ms,
                  .meta_json = op->meta};
    s3_expiration_header(r, &o, NULL);
    s3_sse_headers(r, &op->sse);
    s3_reply_empty(r, 200);
}

static void put_committed(void *ud, int status)
{
    S3Req *r = ud;
    PutOp *op = r->op_state;
    if (status < 0) {
        s3_error(r, "InternalError", "cannot store the object data");
        return;
    }
    op->committed_file = true;
    s3_sink_segment(&op->sink, &op->seg, op->etag);
    s3_store_submit(r->srv->store, &op->w);
}

static int put_data(S3Req *r, const char *p, size_t n)
{
    PutOp *op = r->op_state;
    if (op->wr.plain + n > op->expect) {
        s3_error(r, "IncompleteBody", "The body is longer than its declared length");
        return -EFBIG;
    }
    return s3_sse_writer_write(&op->wr, p, n);
}

static void put_end(S3Req *r)
{
    PutOp *op = r->op_state;
    if (op->wr.plain != op->expect) {
        s3_error(r, "IncompleteBody",
                 "You did not provide the number of bytes specified by the Content-Length HTTP "
                 "header");
        return;
    }
    s3_sse_etag(&op->sse, r->body_md5, op->etag);
    op->now_ms = s3_now_ms();
    if (s3_sse_writer_finish(&op->wr) < 0 || s3_sink_finish(&op->sink) < 0) {
        s3_error(r, "InternalError", "cannot store the object data");
        return;
    }
    if (!op->sink.to_file) {
        s3_store_submit(r->srv->store, &op->w);
        return;
    }
    if (s3_sink_commit(&op->sink, s3_loop_uv(r->loop), put_committed, r) < 0)
        s3_error(r, "InternalError", "cannot store the object data");
}

/* The declared size of the body: decoded length for aws-chunked bodies. */
int s3_body_size(S3Req *r, uint64_t *ret)
{
    const char *v;
    if (r->auth.payload == S3_PAYLOAD_STREAMING ||
        r->auth.payload == S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER) {
        v = s3_header(r, "x-amz-decoded-content-length");
        if (!v || sov_str_to_u64(sov_str(v), ret) < 0) {
            s3_error(r, "MissingContentLength",
                     "You must provide the x-amz-decoded-content-length header.");
            return -EINVAL;
        }
        return 0;
    }
    int64_t cl = sov_http_req_content_length(r->http);
    if (cl < 0) {
        s3_error(r, "MissingContentLength", "You must provide the Content-Length HTTP header.");
        return -EINVAL;
    }
    *ret = (uint64_t)cl;
    return 0;
}

int s3_storage_class(S3Req *r, char out[24])
{
    static const char *const classes[] = {"STANDARD", "STANDARD_IA", "GLACIER",
                                          "INTELLIGENT_TIERING", NULL};
    const char *sc = s3_header(r, "x-amz-storage-class");
    for (size_t i = 0; classes[i]; i++) {
        if (!sc || strcmp(sc, classes[i]) == 0) {
            snprintf(out, 24, "%s", classes[i]);
            return 0;
        }
    }
    s3_error_status(r, 400, "InvalidStorageClass",
                    "The storage class you specified is not valid (this store has STANDARD, "
                    "STANDARD_IA, GLACIER and INTELLIGENT_TIERING)");
    return -EINVAL;
}

void s3_object_put(S3Req *r)
{
    S3Bucket b;
    const char *code = "InvalidArgument";
    json_t *meta = NULL;

    if (s3_header(r, "x-amz-copy-source")) {
        s3_object_copy(r);
        return;
    }
    if (s3_require_bucket(r, &b) < 0)
        return;
    PutOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    op->sink.fd = -1;
    r->op_state = op;
    r->op_free = put_free;
    op->r = r;
    op->w.apply = put_apply;
    op->w.done = put_done;
    op->w.loop = r->loop;
    if (s3_body_size(r, &op->expect) < 0 || s3_storage_class(r, op->storage_class) < 0)
        return;
    if (op->expect > r->srv->cfg.max_object_size) {
        s3_error(r, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size");
        return;
    }
    if (s3_collect_meta(r, &meta, &code) < 0) {
        s3_error(r, code, "The metadata headers are too large or not valid");
        return;
    }
    op->meta = s3_meta_dump(meta);
    json_decref(meta);
    if (s3_sse_for_write(r, &op->sse) < 0)
        return;
    /* inline or a file by the stored size (encrypted data is larger than its plaintext) */
    uint64_t stored = op->sse.kind ? sse_stored_size(op->expect) : op->expect;
    if (!op->meta || s3_sse_meta_apply(&op->sse, &op->meta) < 0 ||
        s3_sink_open(&op->sink, r->srv->store, stored > r->srv->cfg.inline_max, op->storage_class) <
            0 ||
        s3_sse_writer_open(&op->wr, &op->sse, &op->sink) < 0) {
        s3_error(r, "InternalError", "cannot open a data file");
        return;
    }
    r->body_data = put_data;
    r->body_end = put_end;
    s3_body_start(r);
}

/* ---- DeleteObject ---- */

typedef struct DelOp {
    S3WriteOp w;
    S3Req *r;
    const char *version; /* versionId: that version for good; NULL: the current one */
    char marker[40];     /* the delete marker made or removed */
    bool is_marker;
} DelOp;

static int del_apply(sqlite3 *db, S3WriteOp *w)
{
    DelOp *op = (DelOp *)w;
    int rc = s3_meta_check_bucket(db, w, op->r->bucket, op->r->bucket_owner);
    if (rc < 0)
        return rc;
    op->marker[0] = '\0';
    op->is_marker = false;
    if (op->version) {
        rc = s3_meta_remove_version_ex(db, w, op->r->bucket, op->r->key_name, op->version,
                                       &op->is_marker);
        if (rc > 0)
            snprintf(op->marker, sizeof(op->marker), "%s", op->version);
        return rc < 0 ? rc : 0;
    }
    rc = s3_meta_expire_current(db, w, op->r->bucket, op->r->key_name, s3_now_ms(), op->marker);
    op->is_marker = op->marker[0] != '\0';
    return rc;
}

static void del_done(S3WriteOp *w, int status)
{
    DelOp *op = (DelOp *)w;
    S3Req *r = op->r;
    char code[48];
    snprintf(code, sizeof(code), "%s", w->err_code);
    if (status == 0 && op->is_marker)
        sov_http_resp_header(r->http, "x-amz-delete-marker", SOV_STR("true"));
    if (status == 0 && (op->marker[0] || op->version))
        sov_http_resp_header(r->http, "x-amz-version-id",
                             sov_str(op->marker[0] ? op->marker : op->version));
    free(op);
    if (code[0] && status < 0)
        s3_error(r, code, "The object could not be deleted");
    else if (status < 0)
        s3_error(r, "InternalError", "the metadata update failed");
    else
        s3_reply_empty(r, 204);
}

void s3_object_delete(S3Req *r)
{
    S3Bucket b;
    const char *v = s3_param(r, "versionId");
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (v && !s3_version_id_valid(v)) {
        s3_error(r, "InvalidArgument", "Invalid version id specified");
        return;
    }
    DelOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    op->r = r;
    op->version = v;
    op->w.apply = del_apply;
    op->w.done = del_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

/* ---- DeleteObjects ---- */

typedef struct MultiDelOp {
    S3WriteOp w;
    S3Req *r;
    SovXmlNode *root;
    bool quiet;
    uint8_t *denied; /* per Object element: the caller may not delete it (s3_access_keys) */
    SovBuf result;
} MultiDelOp;

static int multidel_apply(sqlite3 *db, S3WriteOp *w)
{
    MultiDelOp *op = (MultiDelOp *)w;
    SovXmlWriter x;
    int rc = s3_meta_check_bucket(db, w, op->r->bucket, op->r->bucket_owner);
    if (rc < 0)
        return rc;
    sov_buf_reset(&op->result);
    sov_xml_writer_init(&x, &op->result);
    sov_xml_open(&x, "DeleteResult", S3_XMLNS);
    size_t i = 0;
    for (SovXmlNode *n = op->root->child; n; n = n->next) {
        if (strcmp(n->name, "Object") != 0)
            continue;
        bool denied = op->denied[i++];
        SovXmlNode *k = sov_xml_child(n, "Key");
        SovXmlNode *v = sov_xml_child(n, "VersionId");
        const char *err = NULL;
        char marker[40] = "";
        bool is_marker = false;
        if (!k || !k->text_len)
            err = "InvalidArgument";
        else if (k->text_len > S3_MAX_KEY)
            err = "KeyTooLongError";
        else if (v && (!v->text || !s3_version_id_valid(v->text)))
            err = "NoSuchVersion";
        else if (denied)
            err = "AccessDenied";
        if (!err && v) {
            rc = s3_meta_remove_version_ex(db, w, op->r->bucket, k->text, v->text, &is_marker);
            if (rc < 0)
                return rc;
            if (is_marker) /* the marker removed */
                snprintf(marker, sizeof(marker), "%s", v->text);
        } else if (!err) {
            rc = s3_meta_expire_current(db, w, op->r->bucket, k->text, s3_now_ms(), marker);
            if (rc < 0)
                return rc;
            is_marker = marker[0] != '\0';
        }
        if (err) {
            sov_xml_open(&x, "Error", NULL);
            sov_xml_elem(&x, "Key", k ? (SovStr){k->text, k->text_len} : SOV_STR(""));
            sov_xml_elem(&x, "Code", sov_str(err));
            sov_xml_elem(&x, "Message", SOV_STR("The object could not be deleted"));
            sov_xml_close(&x);
        } else if (!op->quiet) {
            sov_xml_open(&x, "Deleted", NULL);
            sov_xml_elem(&x, "Key", (SovStr){k->text, k->text_len});
            if (v)
                sov_xml_elem(&x, "VersionId", (SovStr){v->text, v->text_len});
            if (is_marker) {
                sov_xml_elem(&x, "DeleteMarker", SOV_STR("true"));
                if (marker[0])
                    sov_xml_elem(&x, "DeleteMarkerVersionId", sov_str(marker));
            }
            sov_xml_close(&x);
        }
    }
    sov_xml_close(&x);
    return 0;
}

static void multidel_done(S3WriteOp *w, int status)
{
    MultiDelOp *op = (MultiDelOp *)w;
    S3Req *r = op->r;
    if (status < 0)
        s3_error(r, w->err_code[0] ? w->err_code : "InternalError", "DeleteObjects failed");
    else
        s3_reply_xml(r, 200, &op->result);
    sov_xml_free(op->root);
    sov_buf_release(&op->result);
    free(op->denied);
    free(op);
}

static void multidel_body(S3Req *r)
{
    SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 4, .max_nodes = 4 + 3 * 1001};
    SovBuf err = SOV_BUF_INIT;
    SovXmlNode *root = NULL;
    size_t count = 0;

    if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
        strcmp(root->name, "Delete") != 0) {
        sov_buf_release(&err);
        sov_xml_free(root);
        s3_error(r, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema");
        return;
    }
    sov_buf_release(&err);
    for (SovXmlNode *n = root->child; n; n = n->next)
        count += strcmp(n->name, "Object") == 0;
    if (count == 0 || count > S3_MAX_DELETE_KEYS) {
        sov_xml_free(root);
        s3_error(r, "MalformedXML", "A Delete request names 1 to 1000 objects");
        return;
    }
    MultiDelOp *op = calloc(1, sizeof(*op));
    if (op && !(op->denied = calloc(count, 1))) {
        free(op);
        op = NULL;
    }
    if (!op) {
        sov_xml_free(root);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    SovXmlNode *q = sov_xml_child(root, "Quiet");
    op->quiet = q && q->text && strcmp(q->text, "true") == 0;
    const char **keys = calloc(count, sizeof(*keys)), **versions = calloc(count, sizeof(*versions));
    if (!keys || !versions) {
        free(keys);
        free(versions);
        free(op->denied);
        free(op);
        sov_xml_free(root);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    size_t i = 0;
    for (SovXmlNode *n = root->child; n; n = n->next) {
        if (strcmp(n->name, "Object") != 0)
            continue;
        SovXmlNode *k = sov_xml_child(n, "Key"), *v = sov_xml_child(n, "VersionId");
        keys[i] = k && k->text_len ? k->text : NULL;
        versions[i++] = v ? (v->text ? v->text : "") : NULL;
    }
    s3_access_keys(r, count, keys, versions, op->denied);
    free(keys);
    free(versions);
    op->root = root;
    op->r = r;
    op->w.apply = multidel_apply;
    op->w.done = multidel_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

void s3_delete_objects(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    s3_body_xml(r, multidel_body);
}
