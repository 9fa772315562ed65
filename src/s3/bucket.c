/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
 * and the listings ListObjects v1 and v2 (versions: list.c) over the metadata index, which keeps
 * keys in byte order so that a page is one index range scan (a delimiter's common prefix is skipped
 * with one seek past it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

/* ---- write ops shared shape ---- */

typedef struct BucketOp {
    S3WriteOp w;
    S3Req *r;
    char name[S3_MAX_BUCKET + 1];
    char owner[64];
    char region[64];
    int64_t now_ms;
    char *config; /* CreateBucket: the new bucket's configuration document */
} BucketOp;

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -EIO;
}

/* Owner of a bucket on the writer's connection: 1 found, 0 none, < 0 error. */
static int owner_of(sqlite3 *db, const char *name, char *owner, size_t cap)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT owner FROM buckets WHERE name=?", -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), r = 0;
    if (rc == SQLITE_ROW) {
        snprintf(owner, cap, "%s", (const char *)sqlite3_column_text(s, 0));
        r = 1;
    } else if (rc != SQLITE_DONE) {
        r = -EIO;
    }
    sqlite3_finalize(s);
    return r;
}

static void bucket_op_done(S3WriteOp *w, int status)
{
    BucketOp *op = (BucketOp *)w;
    S3Req *r = op->r;
    if (op->w.err_code[0]) {
        const char *msg = strcmp(op->w.err_code, "BucketAlreadyOwnedByYou") == 0
                              ? "Your previous request to create the named bucket succeeded "
                                "and you already own it."
                          : strcmp(op->w.err_code, "BucketAlreadyExists") == 0
                              ? "The requested bucket name is not available."
                          : strcmp(op->w.err_code, "BucketNotEmpty") == 0
                              ? "The bucket you tried to delete is not empty"
                          : strcmp(op->w.err_code, "NoSuchBucket") == 0
                              ? "The specified bucket does not exist"
                              : "Access Denied";
        s3_error(r, op->w.err_code, msg);
    } else if (status < 0) {
        s3_error(r, "InternalError", "the metadata update failed");
    } else if (strcmp(r->op, "CreateBucket") == 0) {
        char loc[S3_MAX_BUCKET + 2];
        snprintf(loc, sizeof(loc), "/%s", op->name);
        sov_http_resp_header(r->http, "Location", sov_str(loc));
        s3_reply_empty(r, 200);
    } else {
        s3_reply_empty(r, 204);
    }
    free(op->config);
    free(op);
}

/* ---- ListBuckets ---- */

void s3_list_buckets(S3Req *r)
{
    sqlite3_stmt *s;
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter w;
    char date[32];

    if (sqlite3_prepare_v2(s3_loop_db(r->loop),
                           "SELECT name, created_ms FROM buckets WHERE owner=? ORDER BY name", -1,
                           &s, NULL) != SQLITE_OK) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sqlite3_bind_text(s, 1, r->key->account, -1, SQLITE_STATIC);
    sov_xml_writer_init(&w, &doc);
    sov_xml_open(&w, "ListAllMyBucketsResult", S3_XMLNS);
    sov_xml_open(&w, "Owner", NULL);
    sov_xml_elem(&w, "ID", sov_str(r->key->account));
    sov_xml_elem(&w, "DisplayName", sov_str(r->key->account));
    sov_xml_close(&w);
    sov_xml_open(&w, "Buckets", NULL);
    while (sqlite3_step(s) == SQLITE_ROW) {
        sov_xml_open(&w, "Bucket", NULL);
        sov_xml_elem(&w, "Name", sov_str((const char *)sqlite3_column_text(s, 0)));
        s3_format_iso8601(sqlite3_column_int64(s, 1), date);
        sov_xml_elem(&w, "CreationDate", sov_str(date));
        sov_xml_close(&w);
    }
    sqlite3_finalize(s);
    sov_xml_close(&w);
    sov_xml_close(&w);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

/* ---- CreateBucket ---- */

static int create_apply(sqlite3 *db, S3WriteOp *w)
{
    BucketOp *op = (BucketOp *)w;
    char owner[64];
    int r = owner_of(db, op->name, owner, sizeof(owner));
    if (r < 0)
        return r;
    if (r == 1) {
        snprintf(w->err_code, sizeof(w->err_code), "%s",
                 strcmp(owner, op->owner) == 0 ? "BucketAlreadyOwnedByYou" : "BucketAlreadyExists");
        return -EEXIST;
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO buckets(name, owner, region, created_ms, config)"
                           " VALUES(?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, op->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, op->region, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, op->now_ms);
    sqlite3_bind_text(s, 5, op->config ? op->config : "{}", -1, SQLITE_STATIC);
    return step_done(s);
}

static void create_with_body(S3Req *r)
{
    const char *region = r->srv->cfg.region;
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;

    if (r->xml.len) {
        SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 4, .max_nodes = 16};
        if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
            strcmp(root->name, "CreateBucketConfiguration") != 0) {
            sov_xml_free(root);
            sov_buf_release(&err);
            s3_error(r, "MalformedXML",
                     "The XML you provided was not well-formed or did not validate against our "
                     "published schema");
            return;
        }
        SovXmlNode *lc = sov_xml_child(root, "LocationConstraint");
        if (lc && lc->text_len) {
            bool ok = false;
            for (size_t i = 0; i < r->srv->nregions; i++)
                if (strcmp(r->srv->regions[i], lc->text) == 0) {
                    ok = true;
                    region = r->srv->regions[i];
                }
            if (!ok) {
                sov_xml_free(root);
                sov_buf_release(&err);
                s3_error(r, "InvalidLocationConstraint",
                         "The specified location-constraint is not valid");
                return;
            }
        }
    }
    sov_xml_free(root);
    sov_buf_release(&err);
    json_t *config;
    const char *code = "ServiceUnavailable";
    if (s3_bucket_initial_config(r, &config, &code) < 0) {
        s3_error(r, code, "The bucket's ACL headers are not valid");
        return;
    }
    BucketOp *op = calloc(1, sizeof(*op));
    if (!op || !(op->config = json_dumps(config, JSON_COMPACT))) {
        json_decref(config);
        free(op);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    json_decref(config);
    op->r = r;
    snprintf(op->name, sizeof(op->name), "%s", r->bucket);
    snprintf(op->owner, sizeof(op->owner), "%s", r->key->account);
    snprintf(op->region, sizeof(op->region), "%.63s", region);
    op->now_ms = s3_now_ms();
    op->w.apply = create_apply;
    op->w.done = bucket_op_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

void s3_bucket_create(S3Req *r)
{
    if (!s3_bucket_name_valid(r->bucket)) {
        s3_error(r, "InvalidBucketName", "The specified bucket is not valid.");
        return;
    }
    s3_body_xml(r, create_with_body);
}

/* ---- HeadBucket, GetBucketLocation ---- */

void s3_bucket_head(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    sov_http_resp_header(r->http, "x-amz-bucket-region", sov_str(b.region));
    s3_reply_empty(r, 200);
}

void s3_bucket_location(S3Req *r)
{
    S3Bucket b;
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter w;
    if (s3_require_bucket(r, &b) < 0)
        return;
    sov_xml_writer_init(&w, &doc);
    sov_xml_open(&w, "LocationConstraint", S3_XMLNS);
    sov_xml_escape(&doc, sov_str(b.region));
    sov_xml_close(&w);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

/* ---- DeleteBucket ---- */

static int delete_apply(sqlite3 *db, S3WriteOp *w)
{
    BucketOp *op = (BucketOp *)w;
    char owner[64];
    sqlite3_stmt *s;
    int r = owner_of(db, op->name, owner, sizeof(owner));
    if (r < 0)
        return r;
    if (r == 0 || strcmp(owner, op->owner) != 0) {
        snprintf(w->err_code, sizeof(w->err_code), "%s", r == 0 ? "NoSuchBucket" : "AccessDenied");
        return -ENOENT;
    }
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM objects WHERE bucket=? LIMIT 1", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->name, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r == SQLITE_ROW) {
        snprintf(w->err_code, sizeof(w->err_code), "BucketNotEmpty");
        return -ENOTEMPTY;
    }
    /* Unfinished multipart uploads go with the bucket: their part files after the commit. */
    if (sqlite3_prepare_v2(db,
                           "SELECT p.layout FROM parts p JOIN uploads u ON p.upload = u.id"
                           " WHERE u.bucket=?",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->name, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    static const char *const stmts[] = {
        "DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE bucket=?)",
        "DELETE FROM uploads WHERE bucket=?", "DELETE FROM buckets WHERE name=?"};
    for (size_t i = 0; i < ELEMENTSOF(stmts); i++) {
        if (sqlite3_prepare_v2(db, stmts[i], -1, &s, NULL) != SQLITE_OK)
            return -EIO;
        sqlite3_bind_text(s, 1, op->name, -1, SQLITE_STATIC);
        if (step_done(s) < 0)
            return -EIO;
    }
    return 0;
}

void s3_bucket_delete(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    BucketOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    op->r = r;
    snprintf(op->name, sizeof(op->name), "%s", r->bucket);
    snprintf(op->owner, sizeof(op->owner), "%s", r->bucket_owner);
    op->w.apply = delete_apply;
    op->w.done = bucket_op_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

/* ---- listings ---- */

typedef struct ListArgs {
    int version;
    const char *prefix, *delimiter;
    size_t prefix_len, delim_len;
    long max_keys;
    bool url;
    bool fetch_owner;
    SovBuf cursor; /* list keys strictly after this */
} ListArgs;

static int b64_decode_any(const char *in, SovBuf *out)
{
    size_t n = strlen(in);
    if (n == 0 || n % 4 || n > 4096)
        return -EINVAL;
    uint8_t *tmp = malloc(n);
    if (!tmp)
        return -ENOMEM;
    int len = s3_base64_decode_buf(in, n, tmp);
    if (len < 0) {
        free(tmp);
        return -EINVAL;
    }
    sov_buf_append(out, tmp, (size_t)len);
    free(tmp);
    return 0;
}

static void put_text(SovXmlWriter *w, const ListArgs *a, const char *name, SovStr v)
{
    if (!a->url) {
        sov_xml_elem(w, name, v);
        return;
    }
    SovBuf e = SOV_BUF_INIT;
    s3_uri_encode(&e, v, true);
    sov_xml_elem(w, name, sov_buf_str(&e));
    sov_buf_release(&e);
}

static void put_owner(SovXmlWriter *w, const char *owner)
{
    sov_xml_open(w, "Owner", NULL);
    sov_xml_elem(w, "ID", sov_str(owner));
    sov_xml_elem(w, "DisplayName", sov_str(owner));
    sov_xml_close(w);
}

int s3_list_args(S3Req *r, const char **prefix, const char **delimiter, long *max_keys, bool *url)
{
    const char *v;
    *prefix = s3_param(r, "prefix");
    *prefix = *prefix ? *prefix : "";
    *delimiter = s3_param(r, "delimiter");
    if (*delimiter && !(*delimiter)[0])
        *delimiter = NULL;
    *max_keys = 1000;
    *url = false;
    if ((v = s3_param(r, "max-keys"))) {
        char *end;
        errno = 0;
        *max_keys = strtol(v, &end, 10);
        if (!v[0] || *end || errno || *max_keys < 0) {
            s3_error(r, "InvalidArgument",
                     "Provided max-keys not an integer or within integer range");
            return -EINVAL;
        }
        if (*max_keys > 1000)
            *max_keys = 1000;
    }
    if ((v = s3_param(r, "encoding-type"))) {
        if (strcmp(v, "url") != 0) {
            s3_error(r, "InvalidArgument", "Invalid Encoding Method specified in Request");
            return -EINVAL;
        }
        *url = true;
    }
    return 0;
}

void s3_list_objects(S3Req *r, int version)
{
    S3Bucket b;
    ListArgs a = {.version = version, .max_keys = 1000};
    const char *v;
    SovBuf doc = SOV_BUF_INIT, entries = SOV_BUF_INIT, last = SOV_BUF_INIT;
    SovXmlWriter w, ew;
    sqlite3_stmt *s = NULL;

    if (s3_require_bucket(r, &b) < 0)
        return;
    if (s3_list_args(r, &a.prefix, &a.delimiter, &a.max_keys, &a.url) < 0)
        return;
    a.prefix_len = strlen(a.prefix);
    a.delim_len = a.delimiter ? strlen(a.delimiter) : 0;
    a.fetch_owner = version != 2 || ((v = s3_param(r, "fetch-owner")) && strcmp(v, "true") == 0);
    const char *token = version == 2 ? s3_param(r, "continuation-token") : NULL;
    const char *start = version == 2 ? s3_param(r, "start-after") : s3_param(r, "marker");
    if (token) {
        if (b64_decode_any(token, &a.cursor) < 0) {
            s3_error(r, "InvalidArgument", "The continuation token provided is incorrect");
            return;
        }
    } else if (start) {
        sov_buf_puts(&a.cursor, start);
        /* A marker that is one of this listing's common prefixes skips everything under it. */
        size_t cl = a.cursor.len;
        if (a.delimiter && cl >= a.prefix_len + a.delim_len &&
            memcmp(a.cursor.ptr, a.prefix, a.prefix_len) == 0 &&
            memcmp(a.cursor.ptr + cl - a.delim_len, a.delimiter, a.delim_len) == 0 &&
            memmem(a.cursor.ptr + a.prefix_len, cl - a.prefix_len, a.delimiter, a.delim_len) ==
                a.cursor.ptr + cl - a.delim_len)
            sov_buf_putc(&a.cursor, (char)0xff);
    }
    /* Nothing before the prefix can match: start the scan there. */
    bool cursor_before_prefix =
        a.cursor.len == 0 ||
        (a.cursor.len < a.prefix_len ? memcmp(a.cursor.ptr, a.prefix, a.cursor.len) <= 0
                                     : memcmp(a.cursor.ptr, a.prefix, a.prefix_len) < 0);

    if (sqlite3_prepare_v2(
            s3_loop_db(r->loop),
            "SELECT key, size, etag, mtime_ms, storage_class FROM objects"
            " WHERE bucket=?1 AND is_latest=1 AND kind=0 AND (key > ?2 OR (?3 AND key = ?4))"
            " ORDER BY key LIMIT 1001",
            -1, &s, NULL) != SQLITE_OK) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sov_xml_writer_init(&ew, &entries);
    ew.depth = 1; /* entries are written into the document's root */
    ew.stack[0] = "";
    long count = 0, nkeys = 0;
    bool truncated = false, done = false;
    char date[32];
    SovBuf cur = SOV_BUF_INIT;
    bool inclusive = false;
    if (cursor_before_prefix) {
        sov_buf_append(&cur, a.prefix, a.prefix_len);
        inclusive = true;
    } else {
        sov_buf_append(&cur, a.cursor.ptr ? a.cursor.ptr : "", a.cursor.len);
    }
    entries.len = 0;
    if (entries.ptr)
        entries.ptr[0] = '\0';
    while (!done && a.max_keys > 0) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, r->bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, cur.ptr ? cur.ptr : "", (int)cur.len, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 3, inclusive);
        sqlite3_bind_text(s, 4, cur.ptr ? cur.ptr : "", (int)cur.len, SQLITE_TRANSIENT);
        bool reseek = false;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *key = (const char *)sqlite3_column_text(s, 0);
            size_t klen = (size_t)sqlite3_column_bytes(s, 0);
            if (klen < a.prefix_len || memcmp(key, a.prefix, a.prefix_len) != 0) {
                done = true;
                break;
            }
            const char *d = NULL;
            if (a.delimiter)
                d = memmem(key + a.prefix_len, klen - a.prefix_len, a.delimiter, a.delim_len);
            if (count == a.max_keys) {
                truncated = true;
                done = true;
                break;
            }
            count++;
            if (d) {
                size_t cplen = (size_t)(d - key) + a.delim_len;
                sov_xml_open(&ew, "CommonPrefixes", NULL);
                put_text(&ew, &a, "Prefix", (SovStr){key, cplen});
                sov_xml_close(&ew);
                /* skip every key under this common prefix */
                sov_buf_reset(&cur);
                sov_buf_append(&cur, key, cplen);
                sov_buf_reset(&last);
                sov_buf_append(&last, key, cplen);
                sov_buf_putc(&cur, (char)0xff);
                sov_buf_putc(&last, (char)0xff);
                inclusive = false;
                reseek = true;
                break;
            }
            nkeys++;
            sov_buf_reset(&last);
            sov_buf_append(&last, key, klen);
            sov_xml_open(&ew, "Contents", NULL);
            put_text(&ew, &a, "Key", (SovStr){key, klen});
            s3_format_iso8601(sqlite3_column_int64(s, 3), date);
            sov_xml_elem(&ew, "LastModified", sov_str(date));
            char etag[64];
            snprintf(etag, sizeof(etag), "\"%s\"", (const char *)sqlite3_column_text(s, 2));
            sov_xml_elem(&ew, "ETag", sov_str(etag));
            sov_xml_elem_u64(&ew, "Size", (uint64_t)sqlite3_column_int64(s, 1));
            if (a.fetch_owner)
                put_owner(&ew, b.owner);
            sov_xml_elem(&ew, "StorageClass", sov_str((const char *)sqlite3_column_text(s, 4)));
            sov_xml_close(&ew);
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            sqlite3_finalize(s);
            sov_buf_release(&entries);
            sov_buf_release(&cur);
            sov_buf_release(&last);
            sov_buf_release(&a.cursor);
            s3_error(r, "InternalError", "metadata read failed");
            return;
        }
        if (!reseek)
            done = true; /* out of prefix, truncated, or no more keys */
    }
    sqlite3_finalize(s);

    sov_xml_writer_init(&w, &doc);
    sov_xml_open(&w, "ListBucketResult", S3_XMLNS);
    sov_xml_elem(&w, "Name", sov_str(r->bucket));
    put_text(&w, &a, "Prefix", sov_str(a.prefix));
    if (version == 2) {
        sov_xml_elem_u64(&w, "KeyCount", (uint64_t)count);
        if (token)
            sov_xml_elem(&w, "ContinuationToken", sov_str(token));
        if (start)
            put_text(&w, &a, "StartAfter", sov_str(start));
    } else {
        put_text(&w, &a, "Marker", sov_str(start ? start : ""));
    }
    sov_xml_elem_u64(&w, "MaxKeys", (uint64_t)a.max_keys);
    if (a.delimiter)
        put_text(&w, &a, "Delimiter", sov_str(a.delimiter));
    if (a.url)
        sov_xml_elem(&w, "EncodingType", SOV_STR("url"));
    sov_xml_elem(&w, "IsTruncated", truncated ? SOV_STR("true") : SOV_STR("false"));
    if (truncated) {
        /* The cursor of the next page: the last key, or past the last common prefix. */
        if (version == 2) {
            char *tok = malloc(last.len / 3 * 4 + 8);
            if (tok) {
                s3_base64_encode((const uint8_t *)last.ptr, last.len, tok);
                sov_xml_elem(&w, "NextContinuationToken", sov_str(tok));
                free(tok);
            }
        } else {
            /* v1: markers are keys; a prefix marker without the 0xff byte works because every
             * key under it sorts after it only when longer: keep it as is. */
            SovStr m = sov_buf_str(&last);
            if (m.len && (unsigned char)m.ptr[m.len - 1] == 0xff)
                m.len--;
            put_text(&w, &a, "NextMarker", m);
        }
    }
    if (entries.len)
        sov_buf_append(&doc, entries.ptr, entries.len);
    sov_xml_close(&w);
    (void)nkeys;
    sov_buf_release(&entries);
    sov_buf_release(&cur);
    sov_buf_release(&last);
    sov_buf_release(&a.cursor);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}
