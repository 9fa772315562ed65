/* SPDX-License-Identifier: Apache-2.0 */
/* Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts and
 * ListMultipartUploads. Every part is its own data file; Complete validates the part list
 * against the stored parts inside the writer's transaction and turns them into the object's
 * segments without copying a byte. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

/* The upload of this bucket and key (on the loop's read connection): its storage class and
 * metadata (ret_meta may be NULL). */
static int upload_read(S3Req *r, const char *id, char *storage_class, size_t cap, char **ret_meta)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(r->loop),
                           "SELECT storage_class, meta FROM uploads WHERE id=? AND bucket=? AND"
                           " key=?",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->key_name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && storage_class)
        snprintf(storage_class, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    if (rc == SQLITE_ROW && ret_meta) {
        const char *m = (const char *)sqlite3_column_text(s, 1);
        if (!(*ret_meta = strdup(m ? m : "{}")))
            rc = SQLITE_NOMEM;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

/* Checks (on the loop's read connection) that the upload exists for this bucket and key. */
static int upload_exists(S3Req *r, const char *id, char *storage_class, size_t cap)
{
    return upload_read(r, id, storage_class, cap, NULL);
}

static int upload_exists_w(sqlite3 *db, const char *id, const char *bucket, const char *key)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM uploads WHERE id=? AND bucket=? AND key=?", -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

static bool valid_upload_id(const char *id)
{
    if (strlen(id) != 32)
        return false;
    for (size_t i = 0; i < 32; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

static void no_such_upload(S3Req *r)
{
    s3_error(r, "NoSuchUpload",
             "The specified upload does not exist. The upload ID may be invalid, or the upload "
             "may have been aborted or completed.");
}

/* ---- Create ---- */

typedef struct CreateOp {
    S3WriteOp w;
    S3Req *r;
    char id[33];
    char storage_class[24];
    char *meta;
    S3Sse sse; /* the upload's encryption, recorded in its meta["_sse"] */
} CreateOp;

static int create_apply(sqlite3 *db, S3WriteOp *w)
{
    CreateOp *op = (CreateOp *)w;
    S3Req *r = op->r;
    sqlite3_stmt *s;
    int rc = s3_meta_check_bucket(db, w, r->bucket, r->bucket_owner);
    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO uploads(id, bucket, key, initiated_ms, owner, storage_class,"
            " meta) VALUES(?,?,?,?,?,?,?)",
            -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->key_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, s3_now_ms());
    sqlite3_bind_text(s, 5, s3_principal(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, op->storage_class, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, op->meta, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void create_done(S3WriteOp *w, int status)
{
    CreateOp *op = (CreateOp *)w;
    S3Req *r = op->r;
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter x;
    if (status < 0) {
        s3_error(r, w->err_code[0] ? w->err_code : "InternalError", "cannot start the upload");
    } else {
        sov_xml_writer_init(&x, &doc);
        sov_xml_open(&x, "InitiateMultipartUploadResult", S3_XMLNS);
        sov_xml_elem(&x, "Bucket", sov_str(r->bucket));
        sov_xml_elem(&x, "Key", sov_str(r->key_name));
        sov_xml_elem(&x, "UploadId", sov_str(op->id));
        sov_xml_close(&x);
        s3_sse_headers(r, &op->sse);
        s3_reply_xml(r, 200, &doc);
        sov_buf_release(&doc);
    }
    s3_sse_clear(&op->sse);
    free(op->meta);
    free(op);
}

void s3_multipart_create(S3Req *r)
{
    S3Bucket b;
    json_t *meta;
    const char *code = "InvalidArgument";
    if (s3_require_bucket(r, &b) < 0)
        return;
    CreateOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    if (s3_storage_class(r, op->storage_class) < 0) {
        free(op);
        return;
    }
    if (s3_collect_meta(r, &meta, &code) < 0) {
        free(op);
        s3_error(r, code, "The metadata headers are too large or not valid");
        return;
    }
    op->meta = s3_meta_dump(meta);
    json_decref(meta);
    if (s3_sse_for_write(r, &op->sse) < 0) {
        free(op->meta);
        free(op);
        return;
    }
    if (!op->meta || s3_sse_meta_apply(&op->sse, &op->meta) < 0 || s3_file_new_id(op->id) < 0) {
        s3_sse_clear(&op->sse);
        free(op->meta);
        free(op);
        s3_error(r, "InternalError", "cannot start the upload");
        return;
    }
    op->r = r;
    op->w.apply = create_apply;
    op->w.done = create_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

/* ---- UploadPart and UploadPartCopy ---- */

typedef struct PartOp {
    S3WriteOp w;
    S3Req *r;
    char upload[33];
    uint32_t num;
    S3Sink sink;
    bool have_file;
    S3Segment seg;
    S3Object src; /* UploadPartCopy */
    bool copy;
    S3Sse sse;      /* the upload's encryption */
    S3Sse src_sse;  /* UploadPartCopy: the source's key */
    S3SseWriter wr; /* the body's way into the sink */
    uint64_t plain; /* the part's size (plaintext) */
} PartOp;

static void part_free(S3Req *r)
{
    PartOp *op = r->op_state;
    if (!op)
        return;
    if (op->have_file)
        s3_file_remove(r->srv->store, op->seg.file);
    s3_sink_abort(&op->sink);
    s3_sse_writer_release(&op->wr);
    s3_sse_clear(&op->sse);
    s3_sse_clear(&op->src_sse);
    free(op->seg.crcs);
    s3_object_clear(&op->src);
    free(op);
    r->op_state = NULL;
}

static int part_apply(sqlite3 *db, S3WriteOp *w)
{
    PartOp *op = (PartOp *)w;
    S3Req *r = op->r;
    sqlite3_stmt *s;
    SovBuf layout = SOV_BUF_INIT;
    int rc = upload_exists_w(db, op->upload, r->bucket, r->key_name);
    if (rc == -ENOENT)
        snprintf(w->err_code, sizeof(w->err_code), "NoSuchUpload");
    if (rc < 0)
        return rc;
    /* A part uploaded again replaces the earlier one. */
    if (sqlite3_prepare_v2(db, "SELECT layout FROM parts WHERE upload=? AND num=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)op->num);
    if (sqlite3_step(s) == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    if (s3_layout_encode(&op->seg, 1, &layout) < 0)
        return -ENOMEM;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO parts(upload, num, size, etag, mtime_ms, layout)"
                           " VALUES(?,?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK) {
        sov_buf_release(&layout);
        return -EIO;
    }
    sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, (int)op->num);
    sqlite3_bind_int64(s, 3, (int64_t)op->plain); /* the layout has the stored size */
    sqlite3_bind_text(s, 4, op->seg.etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, s3_now_ms());
    sqlite3_bind_blob(s, 6, layout.ptr, (int)layout.len, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    sov_buf_release(&layout);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void part_done(S3WriteOp *w, int status)
{
    PartOp *op = (PartOp *)w;
    S3Req *r = op->r;
    char etag[52];
    if (status < 0) {
        if (strcmp(w->err_code, "NoSuchUpload") == 0)
            no_such_upload(r);
        else
            s3_error(r, "InternalError", "the part could not be stored");
        return;
    }
    op->have_file = false;
    snprintf(etag, sizeof(etag), "\"%s\"", op->seg.etag);
    s3_sse_headers(r, &op->sse);
    if (!op->copy) {
        sov_http_resp_header(r->http, "ETag", sov_str(etag));
        s3_reply_empty(r, 200);
        return;
    }
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter x;
    char date[32];
    s3_format_iso8601(s3_now_ms(), date);
    sov_xml_writer_init(&x, &doc);
    sov_xml_open(&x, "CopyPartResult", S3_XMLNS);
    sov_xml_elem(&x, "ETag", sov_str(etag));
    sov_xml_elem(&x, "LastModified", sov_str(date));
    sov_xml_close(&x);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

static void part_committed(void *ud, int status)
{
    S3Req *r = ud;
    PartOp *op = r->op_state;
    char etag[33];
    if (status < 0) {
        s3_error(r, "InternalError", "cannot store the part data");
        return;
    }
    s3_sse_etag(&op->sse, r->body_md5, etag);
    s3_sink_segment(&op->sink, &op->seg, etag);
    op->have_file = true;
    s3_store_submit(r->srv->store, &op->w);
}

static int part_data(S3Req *r, const char *p, size_t n)
{
    PartOp *op = r->op_state;
    if (op->wr.plain + n > S3_MAX_PART) {
        s3_error(r, "EntityTooLarge", "A part is at most 5 GiB");
        return -EFBIG;
    }
    return s3_sse_writer_write(&op->wr, p, n);
}

static void part_end(S3Req *r)
{
    PartOp *op = r->op_state;
    uint64_t expect;
    if (s3_body_size(r, &expect) < 0)
        return;
    if (op->wr.plain != expect) {
        s3_error(r, "IncompleteBody", "The body is shorter than its declared length");
        return;
    }
    op->plain = op->wr.plain;
    if (s3_sse_writer_finish(&op->wr) < 0 || s3_sink_finish(&op->sink) < 0 ||
        s3_sink_commit(&op->sink, s3_loop_uv(r->loop), part_committed, r) < 0)
        s3_error(r, "InternalError", "cannot store the part data");
}

static void part_copy_done(S3Req *r, int status, S3Segment *seg, void *ud)
{
    PartOp *op = r->op_state;
    if (status < 0) {
        s3_error(r, "InternalError", "The copy failed");
        return;
    }
    op->seg = *seg;
    seg->crcs = NULL;
    op->have_file = true;
    s3_store_submit(r->srv->store, &op->w);
}

void s3_multipart_upload_part(S3Req *r)
{
    S3Bucket b;
    uint64_t num;
    const char *id = s3_param(r, "uploadId"), *pn = s3_param(r, "partNumber");

    if (s3_require_bucket(r, &b) < 0)
        return;
    if (!pn || sov_str_to_u64(sov_str(pn), &num) < 0 || num < 1 || num > S3_MAX_PARTS) {
        s3_error(r, "InvalidArgument",
                 "Part number must be an integer between 1 and 10000, inclusive");
        return;
    }
    char sclass[24] = "STANDARD";
    char *umeta = NULL;
    if (!valid_upload_id(id) || upload_read(r, id, sclass, sizeof(sclass), &umeta) < 0) {
        no_such_upload(r);
        return;
    }
    PartOp *op = calloc(1, sizeof(*op));
    if (!op) {
        free(umeta);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    op->sink.fd = -1;
    r->op_state = op;
    r->op_free = part_free;
    op->r = r;
    snprintf(op->upload, sizeof(op->upload), "%s", id);
    op->num = (uint32_t)num;
    op->w.apply = part_apply;
    op->w.done = part_done;
    op->w.loop = r->loop;
    /* the upload's key (SSE-C: the request must carry the same customer key) */
    int rc = s3_sse_for_read(r, r->bucket, r->key_name, umeta, "", &op->sse);
    free(umeta);
    if (rc < 0)
        return;
    if (s3_header(r, "x-amz-copy-source")) {
        uint64_t off = 0, len;
        op->copy = true;
        if (s3_copy_source(r, &op->src) < 0 ||
            s3_sse_for_read(r, op->src.bucket, op->src.key, op->src.meta_json, "x-amz-copy-source-",
                            &op->src_sse) < 0)
            return;
        len = op->src.size;
        const char *range = s3_header(r, "x-amz-copy-source-range");
        if (range) {
            uint64_t a, z;
            char extra;
            if (sscanf(range, "bytes=%" SCNu64 "-%" SCNu64 "%c", &a, &z, &extra) != 2 || z < a ||
                z >= op->src.size) {
                s3_error(r, "InvalidArgument",
                         "The x-amz-copy-source-range value must be of the form bytes=first-last "
                         "where first and last are the zero-based offsets of the first and last "
                         "bytes to copy");
                return;
            }
            off = a;
            len = z - a + 1;
        }
        if (len > S3_MAX_PART) {
            s3_error(r, "InvalidRequest", "A part is at most 5 GiB");
            return;
        }
        op->plain = len;
        if (s3_copy_data_sse(r, &op->src, off, len, sclass, &op->src_sse, &op->sse, part_copy_done,
                             NULL) < 0)
            s3_error(r, "InternalError", "The copy could not start");
        return;
    }
    uint64_t expect;
    if (s3_body_size(r, &expect) < 0)
        return;
    if (expect > S3_MAX_PART) {
        s3_error(r, "EntityTooLarge", "A part is at most 5 GiB");
        return;
    }
    if (s3_sink_open(&op->sink, r->srv->store, true, sclass) < 0 ||
        s3_sse_writer_open(&op->wr, &op->sse, &op->sink) < 0) {
        s3_error(r, "InternalError", "cannot open a data file");
        return;
    }
    r->body_data = part_data;
    r->body_end = part_end;
    s3_body_start(r);
}

/* ---- Complete ---- */

typedef struct CompletePart {
    uint32_t num;
    char etag[40];
} CompletePart;

typedef struct CompleteOp {
    S3WriteOp w;
    S3Req *r;
    char upload[33];
    CompletePart *parts;
    uint32_t nparts;
    char etag[48];
    char bad_part[64];
    char version[40]; /* set when the bucket has a versioning state */
    char *meta;       /* the object's metadata (its "_sse" gives the response headers) */
    uint64_t size;    /* the completed object's size and time (for x-amz-expiration) */
    int64_t mtime_ms;
} CompleteOp;

static int complete_apply(sqlite3 *db, S3WriteOp *w)
{
    CompleteOp *op = (CompleteOp *)w;
    S3Req *r = op->r;
    sqlite3_stmt *s;
    S3Object o = {.bucket = r->bucket, .key = r->key_name};
    SovDigest *md5 = NULL;
    uint32_t i = 0;
    int rc = upload_exists_w(db, op->upload, r->bucket, r->key_name);
    if (rc == -ENOENT)
        snprintf(w->err_code, sizeof(w->err_code), "NoSuchUpload");
    if (rc < 0)
        return rc;
    o.segs = calloc(op->nparts, sizeof(*o.segs));
    md5 = sov_digest_new(SOV_DIGEST_MD5);
    if (!o.segs || !md5) {
        rc = -ENOMEM;
        goto out;
    }
    /* Stored parts in number order, walked alongside the requested list (also ascending). */
    if (sqlite3_prepare_v2(db,
                           "SELECT num, size, etag, layout FROM parts WHERE upload=? ORDER BY num",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
    while (i < op->nparts && sqlite3_step(s) == SQLITE_ROW) {
        uint32_t num = (uint32_t)sqlite3_column_int(s, 0);
        if (num < op->parts[i].num) {
            /* not part of the object: its file goes after the commit */
            s3_op_unlink_layout(w, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3));
            continue;
        }
        if (num > op->parts[i].num ||
            strcmp((const char *)sqlite3_column_text(s, 2), op->parts[i].etag) != 0)
            break; /* the requested part is missing or its ETag differs */
        S3Segment *segs;
        uint32_t n;
        if (s3_layout_decode(sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3), &segs,
                             &n) < 0 ||
            n != 1) {
            rc = -EIO;
            sqlite3_finalize(s);
            goto out;
        }
        o.segs[i] = segs[0];
        free(segs);
        uint64_t psize = (uint64_t)sqlite3_column_int64(s, 1); /* plaintext */
        if (i + 1 < op->nparts && psize < S3_MIN_PART) {
            snprintf(w->err_code, sizeof(w->err_code), "EntityTooSmall");
            rc = -EINVAL;
            sqlite3_finalize(s);
            o.nsegs = i + 1;
            goto out;
        }
        uint8_t bin[SOV_MD5_LEN];
        sov_hex_decode(o.segs[i].etag, 32, bin);
        sov_digest_update(md5, bin, sizeof(bin));
        o.size += psize;
        i++;
        o.nsegs = i;
    }
    /* Parts stored after the last requested one are dropped too. */
    while (i == op->nparts && sqlite3_step(s) == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3));
    }
    sqlite3_finalize(s);
    if (i < op->nparts) {
        snprintf(w->err_code, sizeof(w->err_code), "InvalidPart");
        snprintf(op->bad_part, sizeof(op->bad_part), "%u", op->parts[i].num);
        rc = -EINVAL;
        goto out;
    }
    uint8_t dg[SOV_MD5_LEN];
    char hex[2 * SOV_MD5_LEN + 1];
    sov_digest_final(md5, dg);
    sov_hex_encode(dg, sizeof(dg), hex);
    snprintf(op->etag, sizeof(op->etag), "%s-%u", hex, op->nparts);
    snprintf(o.etag, sizeof(o.etag), "%s", op->etag);
    o.mtime_ms = s3_now_ms();
    /* metadata and storage class chosen at Create */
    if (sqlite3_prepare_v2(db, "SELECT meta, storage_class FROM uploads WHERE id=?", -1, &s,
                           NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        o.meta_json = strdup((const char *)sqlite3_column_text(s, 0));
        snprintf(o.storage_class, sizeof(o.storage_class), "%s",
                 (const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_finalize(s);
    if (!o.meta_json) {
        rc = -EIO;
        goto out;
    }
    free(op->meta);
    op->meta = strdup(o.meta_json);
    op->size = o.size;
    op->mtime_ms = o.mtime_ms;
    if ((rc = s3_meta_check_bucket(db, w, r->bucket, r->bucket_owner)) < 0 ||
        (rc = s3_meta_put_version(db, w, &o)) < 0)
        goto out;
    op->version[0] = '\0';
    if (rc > 0)
        snprintf(op->version, sizeof(op->version), "%s", o.version);
    static const char *const stmts[] = {"DELETE FROM parts WHERE upload=?",
                                        "DELETE FROM uploads WHERE id=?"};
    for (size_t k = 0; k < ELEMENTSOF(stmts); k++) {
        if (sqlite3_prepare_v2(db, stmts[k], -1, &s, NULL) != SQLITE_OK) {
            rc = -EIO;
            goto out;
        }
        sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
        sqlite3_finalize(s);
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    free(o.meta_json);
    s3_segments_free(o.segs, o.nsegs);
    sov_digest_free(md5);
    return rc;
}

static void complete_done(S3WriteOp *w, int status)
{
    CompleteOp *op = (CompleteOp *)w;
    S3Req *r = op->r;
    if (status < 0) {
        if (strcmp(w->err_code, "NoSuchUpload") == 0)
            no_such_upload(r);
        else if (strcmp(w->err_code, "InvalidPart") == 0)
            s3_error(r, "InvalidPart",
                     "One or more of the specified parts could not be found. The part may not "
                     "have been uploaded, or the specified entity tag may not match the part's "
                     "entity tag.");
        else if (strcmp(w->err_code, "EntityTooSmall") == 0)
            s3_error(r, "EntityTooSmall",
                     "Your proposed upload is smaller than the minimum allowed object size.");
        else
            s3_error(r, w->err_code[0] ? w->err_code : "InternalError",
                     "the upload could not be completed");
    } else {
        SovBuf doc = SOV_BUF_INIT;
        SovXmlWriter x;
        char etag[52], loc[S3_MAX_KEY + 128];
        snprintf(etag, sizeof(etag), "\"%s\"", op->etag);
        snprintf(loc, sizeof(loc), "/%s/%s", r->bucket, r->key_name);
        sov_xml_writer_init(&x, &doc);
        sov_xml_open(&x, "CompleteMultipartUploadResult", S3_XMLNS);
        sov_xml_elem(&x, "Location", sov_str(loc));
        sov_xml_elem(&x, "Bucket", sov_str(r->bucket));
        sov_xml_elem(&x, "Key", sov_str(r->key_name));
        sov_xml_elem(&x, "ETag", sov_str(etag));
        sov_xml_close(&x);
        if (op->version[0])
            sov_http_resp_header(r->http, "x-amz-version-id", sov_str(op->version));
        S3Object o = {.bucket = r->bucket,
                      .key = r->key_name,
                      .size = op->size,
                      .mtime_ms = op->mtime_ms,
                      .meta_json = op->meta};
        s3_expiration_header(r, &o, NULL);
        s3_sse_meta_headers(r, op->meta);
        s3_reply_xml(r, 200, &doc);
        sov_buf_release(&doc);
    }
    free(op->meta);
    free(op->parts);
    free(op);
}

static void complete_body(S3Req *r)
{
    SovXmlLimits lim = {
        .max_bytes = S3_MAX_XML_BODY, .max_depth = 4, .max_nodes = 2 + 4 * S3_MAX_PARTS};
    SovBuf err = SOV_BUF_INIT;
    SovXmlNode *root = NULL;
    CompleteOp *op = calloc(1, sizeof(*op));
    const char *malformed = "The XML you provided was not well-formed or did not validate "
                            "against our published schema";

    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
        strcmp(root->name, "CompleteMultipartUpload") != 0) {
        s3_error(r, "MalformedXML", malformed);
        goto out;
    }
    uint32_t n = 0;
    for (SovXmlNode *c = root->child; c; c = c->next)
        n += strcmp(c->name, "Part") == 0;
    if (n == 0 || n > S3_MAX_PARTS) {
        s3_error(r, "MalformedXML", malformed);
        goto out;
    }
    op->parts = calloc(n, sizeof(*op->parts));
    if (!op->parts) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        goto out;
    }
    for (SovXmlNode *c = root->child; c; c = c->next) {
        if (strcmp(c->name, "Part") != 0)
            continue;
        SovXmlNode *pn = sov_xml_child(c, "PartNumber"), *et = sov_xml_child(c, "ETag");
        uint64_t num;
        if (!pn || !et || sov_str_to_u64((SovStr){pn->text, pn->text_len}, &num) < 0 || num < 1 ||
            num > S3_MAX_PARTS) {
            s3_error(r, "MalformedXML", malformed);
            goto out;
        }
        if (op->nparts && num <= op->parts[op->nparts - 1].num) {
            s3_error(r, "InvalidPartOrder",
                     "The list of parts was not in ascending order. The parts list must be "
                     "specified in order by part number.");
            goto out;
        }
        CompletePart *p = &op->parts[op->nparts++];
        p->num = (uint32_t)num;
        const char *t = et->text;
        size_t tl = et->text_len;
        while (tl && (*t == '"' || *t == ' ')) {
            t++;
            tl--;
        }
        while (tl && (t[tl - 1] == '"' || t[tl - 1] == ' '))
            tl--;
        snprintf(p->etag, sizeof(p->etag), "%.*s", (int)SOV_MIN(tl, sizeof(p->etag) - 1), t);
    }
    op->r = r;
    snprintf(op->upload, sizeof(op->upload), "%s", s3_param(r, "uploadId"));
    op->w.apply = complete_apply;
    op->w.done = complete_done;
    op->w.loop = r->loop;
    sov_xml_free(root);
    sov_buf_release(&err);
    s3_store_submit(r->srv->store, &op->w);
    return;
out:
    sov_xml_free(root);
    sov_buf_release(&err);
    free(op->parts);
    free(op);
}

void s3_multipart_complete(S3Req *r)
{
    S3Bucket b;
    const char *id = s3_param(r, "uploadId");
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (!valid_upload_id(id) || upload_exists(r, id, NULL, 0) < 0) {
        no_such_upload(r);
        return;
    }
    s3_body_xml(r, complete_body);
}

/* ---- Abort ---- */

typedef struct AbortOp {
    S3WriteOp w;
    S3Req *r;
    char upload[33];
} AbortOp;

static int abort_apply(sqlite3 *db, S3WriteOp *w)
{
    AbortOp *op = (AbortOp *)w;
    sqlite3_stmt *s;
    int rc = upload_exists_w(db, op->upload, op->r->bucket, op->r->key_name);
    if (rc == -ENOENT)
        snprintf(w->err_code, sizeof(w->err_code), "NoSuchUpload");
    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db, "SELECT layout FROM parts WHERE upload=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    static const char *const stmts[] = {"DELETE FROM parts WHERE upload=?",
                                        "DELETE FROM uploads WHERE id=?"};
    for (size_t k = 0; k < ELEMENTSOF(stmts); k++) {
        if (sqlite3_prepare_v2(db, stmts[k], -1, &s, NULL) != SQLITE_OK)
            return -EIO;
        sqlite3_bind_text(s, 1, op->upload, -1, SQLITE_STATIC);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
        sqlite3_finalize(s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void abort_done(S3WriteOp *w, int status)
{
    AbortOp *op = (AbortOp *)w;
    S3Req *r = op->r;
    bool missing = strcmp(w->err_code, "NoSuchUpload") == 0;
    free(op);
    if (status < 0 && missing)
        no_such_upload(r);
    else if (status < 0)
        s3_error(r, "InternalError", "the upload could not be aborted");
    else
        s3_reply_empty(r, 204);
}

void s3_multipart_abort(S3Req *r)
{
    S3Bucket b;
    const char *id = s3_param(r, "uploadId");
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (!valid_upload_id(id)) {
        no_such_upload(r);
        return;
    }
    AbortOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    op->r = r;
    snprintf(op->upload, sizeof(op->upload), "%s", id);
    op->w.apply = abort_apply;
    op->w.done = abort_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

/* ---- listings ---- */

static long int_param(S3Req *r, const char *name, long def, long max, bool *bad)
{
    const char *v = s3_param(r, name);
    char *end;
    if (!v)
        return def;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!v[0] || *end || errno || n < 0) {
        *bad = true;
        return def;
    }
    return n > max ? max : n;
}

static void put_owner(SovXmlWriter *x, const char *name, const char *owner)
{
    sov_xml_open(x, name, NULL);
    sov_xml_elem(x, "ID", sov_str(owner));
    sov_xml_elem(x, "DisplayName", sov_str(owner));
    sov_xml_close(x);
}

void s3_multipart_list_parts(S3Req *r)
{
    S3Bucket b;
    char sc[24];
    bool bad = false;
    const char *id = s3_param(r, "uploadId");
    if (s3_require_bucket(r, &b) < 0)
        return;
    long max = int_param(r, "max-parts", 1000, 1000, &bad);
    long marker = int_param(r, "part-number-marker", 0, S3_MAX_PARTS, &bad);
    if (bad) {
        s3_error(r, "InvalidArgument", "max-parts and part-number-marker must be integers");
        return;
    }
    if (!valid_upload_id(id) || upload_exists(r, id, sc, sizeof(sc)) < 0) {
        no_such_upload(r);
        return;
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(r->loop),
                           "SELECT num, size, etag, mtime_ms FROM parts WHERE upload=? AND num>?"
                           " ORDER BY num LIMIT ?",
                           -1, &s, NULL) != SQLITE_OK) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, marker);
    sqlite3_bind_int64(s, 3, max + 1);
    SovBuf parts = SOV_BUF_INIT, doc = SOV_BUF_INIT;
    SovXmlWriter px, x;
    sov_xml_writer_init(&px, &parts);
    sov_buf_reset(&parts);
    px.depth = 1;
    px.stack[0] = "";
    long count = 0, last = 0;
    bool truncated = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (count == max) {
            truncated = true;
            break;
        }
        char etag[52], date[32];
        last = sqlite3_column_int(s, 0);
        snprintf(etag, sizeof(etag), "\"%s\"", (const char *)sqlite3_column_text(s, 2));
        s3_format_iso8601(sqlite3_column_int64(s, 3), date);
        sov_xml_open(&px, "Part", NULL);
        sov_xml_elem_u64(&px, "PartNumber", (uint64_t)last);
        sov_xml_elem(&px, "LastModified", sov_str(date));
        sov_xml_elem(&px, "ETag", sov_str(etag));
        sov_xml_elem_u64(&px, "Size", (uint64_t)sqlite3_column_int64(s, 1));
        sov_xml_close(&px);
        count++;
    }
    sqlite3_finalize(s);
    sov_xml_writer_init(&x, &doc);
    sov_xml_open(&x, "ListPartsResult", S3_XMLNS);
    sov_xml_elem(&x, "Bucket", sov_str(r->bucket));
    sov_xml_elem(&x, "Key", sov_str(r->key_name));
    sov_xml_elem(&x, "UploadId", sov_str(id));
    sov_xml_elem_u64(&x, "PartNumberMarker", (uint64_t)marker);
    sov_xml_elem_u64(&x, "NextPartNumberMarker", (uint64_t)last);
    sov_xml_elem_u64(&x, "MaxParts", (uint64_t)max);
    sov_xml_elem(&x, "IsTruncated", truncated ? SOV_STR("true") : SOV_STR("false"));
    put_owner(&x, "Initiator", b.owner);
    put_owner(&x, "Owner", b.owner);
    sov_xml_elem(&x, "StorageClass", sov_str(sc));
    if (parts.len)
        sov_buf_append(&doc, parts.ptr, parts.len);
    sov_xml_close(&x);
    sov_buf_release(&parts);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

void s3_multipart_list_uploads(S3Req *r)
{
    S3Bucket b;
    bool bad = false;
    if (s3_require_bucket(r, &b) < 0)
        return;
    long max = int_param(r, "max-uploads", 1000, 1000, &bad);
    if (bad) {
        s3_error(r, "InvalidArgument", "max-uploads must be an integer");
        return;
    }
    const char *prefix = s3_param(r, "prefix") ?: "";
    const char *key_marker = s3_param(r, "key-marker") ?: "";
    const char *id_marker = s3_param(r, "upload-id-marker") ?: "";
    const char *delim = s3_param(r, "delimiter");
    size_t plen = strlen(prefix), dlen = delim ? strlen(delim) : 0;
    SovBuf last_cp = SOV_BUF_INIT;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(r->loop),
                           "SELECT key, id, initiated_ms, storage_class FROM uploads"
                           " WHERE bucket=?1 AND (key > ?2 OR (key = ?2 AND id > ?3))"
                           " AND substr(key, 1, length(?4)) = ?4"
                           " ORDER BY key, id",
                           -1, &s, NULL) != SQLITE_OK) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sqlite3_bind_text(s, 1, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key_marker, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, key_marker[0] ? id_marker : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, prefix, -1, SQLITE_STATIC);
    SovBuf ups = SOV_BUF_INIT, doc = SOV_BUF_INIT, next_key = SOV_BUF_INIT;
    SovXmlWriter ux, x;
    char next_id[33] = "";
    sov_xml_writer_init(&ux, &ups);
    sov_buf_reset(&ups);
    ux.depth = 1;
    ux.stack[0] = "";
    long count = 0;
    bool truncated = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (count == max) {
            truncated = true;
            break;
        }
        char date[32];
        const char *key = (const char *)sqlite3_column_text(s, 0);
        const char *d = dlen ? strstr(key + plen, delim) : NULL;
        if (d) {
            /* rolled up into a common prefix, listed once */
            size_t cl = (size_t)(d - key) + dlen;
            if (last_cp.len == cl && memcmp(last_cp.ptr, key, cl) == 0)
                continue;
            sov_buf_reset(&last_cp);
            sov_buf_append(&last_cp, key, cl);
            sov_xml_open(&ux, "CommonPrefixes", NULL);
            sov_xml_elem(&ux, "Prefix", (SovStr){key, cl});
            sov_xml_close(&ux);
            count++;
            continue;
        }
        sov_buf_reset(&next_key);
        sov_buf_puts(&next_key, key);
        snprintf(next_id, sizeof(next_id), "%s", (const char *)sqlite3_column_text(s, 1));
        s3_format_iso8601(sqlite3_column_int64(s, 2), date);
        sov_xml_open(&ux, "Upload", NULL);
        sov_xml_elem(&ux, "Key", sov_str(key));
        sov_xml_elem(&ux, "UploadId", sov_str(next_id));
        put_owner(&ux, "Initiator", b.owner);
        put_owner(&ux, "Owner", b.owner);
        sov_xml_elem(&ux, "StorageClass", sov_str((const char *)sqlite3_column_text(s, 3)));
        sov_xml_elem(&ux, "Initiated", sov_str(date));
        sov_xml_close(&ux);
        count++;
    }
    sqlite3_finalize(s);
    sov_xml_writer_init(&x, &doc);
    sov_xml_open(&x, "ListMultipartUploadsResult", S3_XMLNS);
    sov_xml_elem(&x, "Bucket", sov_str(r->bucket));
    sov_xml_elem(&x, "KeyMarker", sov_str(key_marker));
    sov_xml_elem(&x, "UploadIdMarker", sov_str(id_marker));
    sov_xml_elem(&x, "NextKeyMarker", sov_buf_str(&next_key));
    sov_xml_elem(&x, "NextUploadIdMarker", sov_str(next_id));
    sov_xml_elem(&x, "Prefix", sov_str(prefix));
    if (delim)
        sov_xml_elem(&x, "Delimiter", sov_str(delim));
    sov_xml_elem_u64(&x, "MaxUploads", (uint64_t)max);
    sov_xml_elem(&x, "IsTruncated", truncated ? SOV_STR("true") : SOV_STR("false"));
    if (ups.len)
        sov_buf_append(&doc, ups.ptr, ups.len);
    sov_xml_close(&x);
    sov_buf_release(&ups);
    sov_buf_release(&next_key);
    sov_buf_release(&last_cp);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}
