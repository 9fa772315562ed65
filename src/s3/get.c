/* SPDX-License-Identifier: Apache-2.0 */
/* GetObject and HeadObject (conditions, Range, partNumber, response-* overrides; data read a
 * CRC block at a time and checked before it is sent), CopyObject, and the copy engine that
 * UploadPartCopy shares (runs on the thread pool, checks source CRCs as it reads). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

static SovMetric *bitrot_metric(void)
{
    return sov_metrics_counter("sov_s3_bitrot_total", "data blocks whose CRC did not match on read",
                               NULL);
}

bool s3_etag_matches(const char *header, const char *etag)
{
    const char *p = header;
    size_t el = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        const char *t = p;
        if (n >= 2 && t[0] == 'W' && t[1] == '/') {
            t += 2;
            n -= 2;
        }
        if (n == 1 && t[0] == '*')
            return true;
        if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
            t++;
            n -= 2;
        }
        if (n == el && memcmp(t, etag, el) == 0)
            return true;
        p = end ? end : p + strlen(p);
    }
    return false;
}

/* Evaluates the conditional headers (prefix "" or "x-amz-copy-source-"): 0 to go on, 412 or
 * 304. */
static int conditions(S3Req *r, const S3Object *o, const char *prefix)
{
    char name[64];
    const char *v;
    int64_t t, mtime_s = o->mtime_ms / 1000;

    snprintf(name, sizeof(name), "%sif-match", prefix);
    if ((v = s3_header(r, name))) {
        if (!s3_etag_matches(v, o->etag))
            return 412;
    } else {
        snprintf(name, sizeof(name), "%sif-unmodified-since", prefix);
        if ((v = s3_header(r, name)) && s3_parse_http_date(v, &t) == 0 && mtime_s > t / 1000)
            return 412;
    }
    snprintf(name, sizeof(name), "%sif-none-match", prefix);
    if ((v = s3_header(r, name))) {
        if (s3_etag_matches(v, o->etag))
            return prefix[0] ? 412 : 304;
    } else {
        snprintf(name, sizeof(name), "%sif-modified-since", prefix);
        if ((v = s3_header(r, name)) && s3_parse_http_date(v, &t) == 0 && mtime_s <= t / 1000)
            return prefix[0] ? 412 : 304;
    }
    return 0;
}

/* Range: 0 no (usable) range, 1 range set, -1 unsatisfiable. */
static int parse_range(const char *v, uint64_t size, uint64_t *start, uint64_t *end)
{
    uint64_t a, b;
    if (strncmp(v, "bytes=", 6) != 0 || strchr(v, ','))
        return 0;
    v += 6;
    const char *dash = strchr(v, '-');
    if (!dash)
        return 0;
    SovStr first = {v, (size_t)(dash - v)}, second = sov_str(dash + 1);
    if (first.len == 0) {
        if (sov_str_to_u64(second, &b) < 0)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *start = b >= size ? 0 : size - b;
        *end = size;
        return 1;
    }
    if (sov_str_to_u64(first, &a) < 0)
        return 0;
    if (second.len == 0) {
        b = UINT64_MAX - 1;
    } else if (sov_str_to_u64(second, &b) < 0 || b < a) {
        return 0;
    }
    if (a >= size)
        return -1;
    *start = a;
    *end = b >= size ? size : b + 1;
    return 1;
}

static void put_object_headers(S3Req *r, const S3Object *o)
{
    char etag[52], date[40];
    json_t *meta = json_loads(o->meta_json, 0, NULL);
    const char *key;
    json_t *val;

    snprintf(etag, sizeof(etag), "\"%s\"", o->etag);
    sov_http_resp_header(r->http, "ETag", sov_str(etag));
    s3_format_http_date(o->mtime_ms, date);
    sov_http_resp_header(r->http, "Last-Modified", sov_str(date));
    sov_http_resp_header(r->http, "Accept-Ranges", SOV_STR("bytes"));
    if (strcmp(o->version, "null") != 0)
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(o->version));
    if (strcmp(o->storage_class, "STANDARD") != 0)
        sov_http_resp_header(r->http, "x-amz-storage-class", sov_str(o->storage_class));
    s3_restore_headers(r, o);
    s3_expiration_header(r, o, meta);
    json_t *tags = json_object_get(meta, "_tags");
    if (json_object_size(tags)) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", json_object_size(tags));
        sov_http_resp_header(r->http, "x-amz-tagging-count", sov_str(n));
    }
    static const char *const overrides[][2] = {
        {"content-type", "response-content-type"},
        {"content-language", "response-content-language"},
        {"expires", "response-expires"},
        {"cache-control", "response-cache-control"},
        {"content-disposition", "response-content-disposition"},
        {"content-encoding", "response-content-encoding"}};
    json_object_foreach(meta, key, val)
    {
        bool overridden = false;
        if (key[0] == '_') /* ours: ACL, tags, restore state */
            continue;
        for (size_t i = 0; i < ELEMENTSOF(overrides); i++)
            if (strcmp(key, overrides[i][0]) == 0 && s3_param(r, overrides[i][1]))
                overridden = true;
        if (!overridden && strcmp(key, "content-type") != 0)
            sov_http_resp_header(r->http, key, sov_str(json_string_value(val)));
    }
    for (size_t i = 0; i < ELEMENTSOF(overrides); i++) {
        const char *v = s3_param(r, overrides[i][1]);
        if (v && strcmp(overrides[i][0], "content-type") != 0)
            sov_http_resp_header(r->http, overrides[i][0], sov_str(v));
    }
    json_decref(meta);
}

static const char *content_type(S3Req *r, const S3Object *o, char *buf, size_t cap)
{
    const char *v = s3_param(r, "response-content-type");
    if (v)
        return v;
    json_t *meta = json_loads(o->meta_json, 0, NULL);
    json_t *ct = json_object_get(meta, "content-type");
    snprintf(buf, cap, "%s", ct ? json_string_value(ct) : "binary/octet-stream");
    json_decref(meta);
    return buf;
}

typedef struct GetState {
    S3Object o;
    uint64_t pos, end;
    uint32_t seg;
    uint64_t seg_base;
    int fd;
    uint32_t fd_seg;
    EcReader *ec; /* the reader of an erasure-coded segment (ec_seg) */
    uint32_t ec_seg;
    char *buf;
    size_t bufcap; /* a multiple of S3_BLOCK (encrypted segments: of SSE_STORED_BLOCK) */
    size_t slice_off, slice_len;
    /* An encrypted object: its key, each segment's plaintext size, the open stream */
    S3Sse sse;
    uint64_t *psize;
    SseStream *stream;
    uint32_t stream_seg;
    uint8_t *plain_inline; /* an encrypted inline object's plaintext */
} GetState;

/* Sets up the reading of an encrypted object's segments (stored form) with its key. */
static int get_sse_setup(GetState *g, const S3Sse *sse)
{
    g->sse = *sse;
    if (sse->kind == S3_SSE_NONE || g->o.is_inline)
        return 0;
    g->psize = calloc(g->o.nsegs ? g->o.nsegs : 1, sizeof(*g->psize));
    if (!g->psize)
        return -ENOMEM;
    for (uint32_t i = 0; i < g->o.nsegs; i++)
        if (sse_plain_size(g->o.segs[i].size, &g->psize[i]) < 0)
            return -EBADMSG;
    return 0;
}

static void get_sse_release(GetState *g)
{
    free(g->psize);
    g->psize = NULL;
    g->stream = sse_stream_free(g->stream);
    free(g->plain_inline);
    g->plain_inline = NULL;
    s3_sse_clear(&g->sse);
}

/* A segment's size as the client sees it (plaintext). */
static uint64_t seg_size(const GetState *g, uint32_t i)
{
    return g->psize ? g->psize[i] : g->o.segs[i].size;
}

static void get_free(S3Req *r)
{
    GetState *g = r->op_state;
    if (!g)
        return;
    if (g->fd >= 0)
        close(g->fd);
    g->ec = ec_reader_free(g->ec);
    free(g->buf);
    get_sse_release(g);
    s3_object_clear(&g->o);
    free(g);
    r->op_state = NULL;
}

/* Reads [g->pos, ...) of an erasure-coded segment: as many bytes as the buffer holds, up to the
 * end of the range or segment; shards found damaged go to the healer (heal on read). */
static int ec_open(S3Store *st, GetState *g, const S3Segment *s)
{
    if (!s3_store_ecset(st)) {
        log_error("object %s/%s: erasure-coded data, but no drives configured", g->o.bucket,
                  g->o.key);
        return -EIO;
    }
    if (!g->ec || g->ec_seg != g->seg) {
        EcGeom geom = {s->ec_k, s->ec_m, s->ec_block};
        g->ec = ec_reader_free(g->ec);
        int rc = ec_reader_open(s3_store_ecset(st), &geom, s->file, s->size, &g->ec);
        if (rc < 0) {
            log_error_errno(rc, "object %s/%s: shards of %s", g->o.bucket, g->o.key, s->file);
            return -EIO;
        }
        g->ec_seg = g->seg;
    }
    return 0;
}

/* Reads n bytes at off of an erasure-coded segment into buf (heal on read). */
static int get_ec_read(S3Store *st, GetState *g, const S3Segment *s, uint64_t off, size_t n,
                       char *buf)
{
    if (ec_open(st, g, s) < 0)
        return -EIO;
    uint32_t before = ec_reader_damaged(g->ec);
    int rc = ec_reader_read(g->ec, off, n, buf);
    uint32_t damaged = ec_reader_damaged(g->ec);
    if (damaged != before) {
        log_error("object %s/%s: damaged shards of %s (mask %#x), repairing", g->o.bucket, g->o.key,
                  s->file, damaged);
        sov_counter_add(bitrot_metric(), 1);
        s3_store_heal_later(st, s);
    }
    if (rc < 0) {
        log_error("object %s/%s: %s has fewer good shards than it needs", g->o.bucket, g->o.key,
                  s->file);
        return -EIO;
    }
    return 0;
}

static int get_load_ec(S3Store *st, GetState *g, const S3Segment *s)
{
    uint64_t in_seg = g->pos - g->seg_base;
    uint64_t want_end = SOV_MIN(s->size, g->end - g->seg_base);
    size_t n = (size_t)SOV_MIN((uint64_t)g->bufcap, want_end - in_seg);
    int rc = get_ec_read(st, g, s, in_seg, n, g->buf);
    if (rc < 0)
        return rc;
    g->slice_off = 0;
    g->slice_len = n;
    return 0;
}

static int file_open(S3Store *st, GetState *g, const S3Segment *s)
{
    if (g->fd < 0 || g->fd_seg != g->seg) {
        char path[PATH_MAX];
        if (g->fd >= 0)
            close(g->fd);
        s3_file_path(st, s->file, path, sizeof(path));
        g->fd = open(path, O_RDONLY | O_CLOEXEC);
        g->fd_seg = g->seg;
        if (g->fd < 0) {
            log_error_errno(-errno, "object %s/%s: data file %s", g->o.bucket, g->o.key, s->file);
            return -EIO;
        }
    }
    return 0;
}

static int file_read(GetState *g, const S3Segment *s, uint64_t off, size_t len, char *buf)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(g->fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_error("object %s/%s: data file %s is short or unreadable", g->o.bucket, g->o.key,
                      s->file);
            return -EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Stored bytes [off, off + n) of segment s (a data file or shards). */
static int seg_read(S3Store *st, GetState *g, const S3Segment *s, uint64_t off, size_t n, char *buf)
{
    if (s->ec_k)
        return get_ec_read(st, g, s, off, n, buf);
    int rc = file_open(st, g, s);
    return rc < 0 ? rc : file_read(g, s, off, n, buf);
}

/* An encrypted segment: the stored blocks covering as much of [g->pos, g->end) as the buffer
 * holds, decrypted in place (each block's GCM tag checked; the CRCs of the stored blocks do not
 * line up with them). */
static int get_load_sse(S3Store *st, GetState *g, const S3Segment *s)
{
    uint64_t plain = g->psize[g->seg], in_seg = g->pos - g->seg_base;
    uint64_t want_end = SOV_MIN(plain, g->end - g->seg_base);
    uint64_t first = in_seg / SSE_BLOCK, nmax = g->bufcap / SSE_STORED_BLOCK;
    SseRange rg;
    size_t pn;
    int rc;
    if (want_end > (first + nmax) * SSE_BLOCK)
        want_end = (first + nmax) * SSE_BLOCK;
    if (sse_range_map(plain, in_seg, want_end, &rg) < 0)
        return -EIO;
    if (!g->stream || g->stream_seg != g->seg) {
        uint8_t hdr[SSE_HEADER_LEN];
        g->stream = sse_stream_free(g->stream);
        if ((rc = seg_read(st, g, s, 0, sizeof(hdr), (char *)hdr)) < 0)
            return rc;
        rc = sse_stream_open(g->sse.key, 0, hdr, &g->stream);
        if (rc < 0)
            goto bad;
        g->stream_seg = g->seg;
    }
    if ((rc = seg_read(st, g, s, rg.stored_off, (size_t)rg.stored_len, g->buf)) < 0)
        return rc;
    rc = sse_stream_decrypt_run(g->stream, plain, rg.first_block, g->buf, (size_t)rg.stored_len,
                                g->buf, &pn);
    if (rc < 0 || pn < rg.skip)
        goto bad;
    g->slice_off = (size_t)rg.skip;
    g->slice_len = (size_t)SOV_MIN((uint64_t)(pn - rg.skip), g->end - g->pos);
    return 0;
bad:
    log_error("bitrot: object %s/%s, file %s, encrypted data fails its tag", g->o.bucket, g->o.key,
              s->file);
    sov_counter_add(bitrot_metric(), 1);
    return -EBADMSG;
}

/* Reads and checks the block holding g->pos; sets the slice to send. */
static int get_load(S3Store *st, GetState *g)
{
    while (g->seg < g->o.nsegs && g->pos >= g->seg_base + seg_size(g, g->seg)) {
        g->seg_base += seg_size(g, g->seg);
        g->seg++;
    }
    if (g->seg >= g->o.nsegs)
        return -EIO;
    const S3Segment *s = &g->o.segs[g->seg];
    if (g->psize)
        return get_load_sse(st, g, s);
    if (s->ec_k)
        return get_load_ec(st, g, s);
    int rc = file_open(st, g, s);
    if (rc < 0)
        return rc;
    /* As many whole blocks as the buffer holds, up to the end of the range or segment: large
     * reads and writes, each block checked. */
    uint64_t in_seg = g->pos - g->seg_base;
    uint64_t bi = in_seg / S3_BLOCK, boff = bi * S3_BLOCK;
    uint64_t want_end = SOV_MIN(s->size, g->end - g->seg_base);
    size_t blen = (size_t)SOV_MIN((uint64_t)g->bufcap, s->size - boff);
    size_t upto = (size_t)SOV_MIN((uint64_t)blen, want_end - boff);
    blen = SOV_MIN(blen, (upto + S3_BLOCK - 1) / S3_BLOCK * S3_BLOCK);
    if ((rc = file_read(g, s, boff, blen, g->buf)) < 0)
        return rc;
    for (size_t o = 0; o < blen; o += S3_BLOCK, bi++) {
        size_t n = SOV_MIN((size_t)S3_BLOCK, blen - o);
        if (bi >= s->nblocks || sov_crc32c(0, g->buf + o, n) != s->crcs[bi]) {
            log_error("bitrot: object %s/%s, file %s, block %" PRIu64 " fails its CRC", g->o.bucket,
                      g->o.key, s->file, bi);
            sov_counter_add(bitrot_metric(), 1);
            return -EBADMSG;
        }
    }
    g->slice_off = (size_t)(in_seg - boff);
    g->slice_len = (size_t)SOV_MIN((uint64_t)blen - g->slice_off, g->end - g->pos);
    return 0;
}

static void get_next(SovHttpReq *req, int status, void *ud)
{
    S3Req *r = ud;
    GetState *g = r->op_state;
    if (status < 0 || sov_http_req_is_closed(req)) {
        s3_req_done(r);
        return;
    }
    g->pos += g->slice_len;
    sov_counter_add(r->srv->m_bytes_out, g->slice_len);
    if (g->pos >= g->end) {
        sov_http_resp_end(req);
        s3_req_done(r);
        return;
    }
    if (get_load(r->srv->store, g) < 0) {
        /* Headers went out already: the short body and closed connection tell the client. */
        sov_http_resp_end(req);
        s3_req_done(r);
        return;
    }
    if (sov_http_resp_write(req, g->buf + g->slice_off, g->slice_len, get_next, r) < 0)
        s3_req_done(r);
}

void s3_object_get(S3Req *r)
{
    S3Bucket b;
    GetState *g;
    const char *v;
    char ctbuf[256];
    uint64_t start = 0, end;
    bool ranged = false, head = sov_http_req_is_head(r->http);
    int rc;

    if (s3_require_bucket(r, &b) < 0)
        return;
    const char *ver = s3_param(r, "versionId");
    if (ver && !s3_version_id_valid(ver)) {
        s3_error(r, "InvalidArgument", "Invalid version id specified");
        return;
    }
    g = calloc(1, sizeof(*g));
    if (!g) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    g->fd = -1;
    r->op_state = g;
    r->op_free = get_free;
    /* An overwrite that commits between reading the metadata and opening the data file
     * unlinks that file: read the metadata again (the new version) and retry. */
    for (int attempt = 0;; attempt++) {
        rc = s3_object_get_version(s3_loop_db(r->loop), r->bucket, r->key_name, ver, &g->o);
        if (r->object_acl_pending && (rc == -ENOENT || (rc == 0 && g->o.delete_marker)) &&
            !s3_access_may_list(r)) {
            /* as AWS: without s3:ListBucket a missing key is AccessDenied, not an oracle */
            s3_error(r, "AccessDenied", "Access Denied");
            return;
        }
        if (rc == -ENOENT) {
            if (ver)
                s3_error(r, "NoSuchVersion", "The specified version does not exist.");
            else
                s3_error(r, "NoSuchKey", "The specified key does not exist.");
            return;
        } else if (rc < 0) {
            s3_error(r, "InternalError", "the object's metadata cannot be read");
            return;
        }
        if (g->o.delete_marker) {
            char date[40];
            sov_http_resp_header(r->http, "x-amz-delete-marker", SOV_STR("true"));
            sov_http_resp_header(r->http, "x-amz-version-id", sov_str(g->o.version));
            s3_format_http_date(g->o.mtime_ms, date);
            sov_http_resp_header(r->http, "Last-Modified", sov_str(date));
            if (ver)
                s3_error(r, "MethodNotAllowed",
                         "The specified method is not allowed against this resource.");
            else
                s3_error(r, "NoSuchKey", "The specified key does not exist.");
            return;
        }
        if (g->o.is_inline || g->o.nsegs == 0 || head)
            break;
        if (g->o.segs[0].ec_k) {
            /* Pin the first segment's shards (open them all now), as the open() below pins a
             * data file: an overwrite that commits later unlinks them but cannot take them from
             * this GET. Fewer than k there: overwritten meanwhile, read the metadata again. */
            g->seg = 0;
            if (ec_open(r->srv->store, g, &g->o.segs[0]) == 0 &&
                ec_reader_pin(g->ec) >= g->o.segs[0].ec_k) {
                if (ec_reader_damaged(g->ec)) /* heal on read */
                    s3_store_heal_later(r->srv->store, &g->o.segs[0]);
                break;
            }
            if (attempt == 3)
                break;
            g->ec = ec_reader_free(g->ec);
            s3_object_clear(&g->o);
            continue;
        }
        char path[PATH_MAX];
        s3_file_path(r->srv->store, g->o.segs[0].file, path, sizeof(path));
        g->fd = open(path, O_RDONLY | O_CLOEXEC);
        g->fd_seg = 0;
        if (g->fd >= 0 || errno != ENOENT || attempt == 3)
            break; /* a file still missing is reported by the first read */
        s3_object_clear(&g->o);
    }
    S3Object *o = &g->o;
    if (s3_access_object(r, o) < 0 || (!head && s3_restore_check(r, o) < 0))
        return;
    if (!head)
        s3_lifecycle_accessed(r->srv, o);
    S3Sse sse;
    if (s3_sse_for_read(r, o->bucket, o->key, o->meta_json, "", &sse) < 0)
        return;
    rc = get_sse_setup(g, &sse);
    s3_sse_clear(&sse);
    if (rc < 0) {
        log_error("object %s/%s: an encrypted segment has an impossible size", o->bucket, o->key);
        s3_error(r, "InternalError", "The object's data is damaged");
        return;
    }
    end = o->size;
    rc = conditions(r, o, "");
    if (rc == 412) {
        s3_error(r, "PreconditionFailed",
                 "At least one of the pre-conditions you specified did not hold");
        return;
    }
    if (rc == 304) {
        char etag[52], date[40];
        snprintf(etag, sizeof(etag), "\"%s\"", o->etag);
        sov_http_resp_header(r->http, "ETag", sov_str(etag));
        s3_format_http_date(o->mtime_ms, date);
        sov_http_resp_header(r->http, "Last-Modified", sov_str(date));
        s3_reply_empty(r, 304);
        return;
    }
    const char *range = s3_header(r, "range");
    if ((v = s3_param(r, "partNumber"))) {
        uint64_t pn;
        bool multipart = strchr(o->etag, '-') != NULL;
        uint32_t nparts = multipart ? o->nsegs : 1;
        if (sov_str_to_u64(sov_str(v), &pn) < 0 || pn < 1 || pn > S3_MAX_PARTS) {
            s3_error(r, "InvalidArgument", "Part number must be an integer between 1 and 10000");
            return;
        }
        if (range) {
            s3_error(r, "InvalidRequest",
                     "Cannot specify both Range header and partNumber query parameter");
            return;
        }
        if (pn > nparts) {
            s3_error_status(r, 416, "InvalidPartNumber",
                            "The requested partnumber is not satisfiable");
            return;
        }
        if (multipart) {
            for (uint32_t i = 0; i + 1 < pn; i++)
                start += seg_size(g, i);
            end = start + seg_size(g, pn - 1);
            char cnt[16];
            snprintf(cnt, sizeof(cnt), "%u", nparts);
            sov_http_resp_header(r->http, "x-amz-mp-parts-count", sov_str(cnt));
            ranged = true;
        }
    } else if (range) {
        rc = parse_range(range, o->size, &start, &end);
        if (rc < 0) {
            char cr[48];
            snprintf(cr, sizeof(cr), "bytes */%" PRIu64, o->size);
            sov_http_resp_header(r->http, "Content-Range", sov_str(cr));
            s3_error(r, "InvalidRange", "The requested range is not satisfiable");
            return;
        }
        ranged = rc == 1;
    }
    put_object_headers(r, o);
    s3_sse_headers(r, &g->sse);
    if (ranged) {
        char cr[80];
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start,
                 end > start ? end - 1 : start, o->size);
        sov_http_resp_header(r->http, "Content-Range", sov_str(cr));
    }
    int status = ranged ? 206 : 200;
    const char *ct = content_type(r, o, ctbuf, sizeof(ctbuf));
    if (o->is_inline) {
        const uint8_t *data = o->inline_data;
        uint64_t stored = g->sse.kind ? sse_stored_size(o->size) : o->size;
        if (!head && sov_crc32c(0L, o->inline_data, stored) != o->inline_crc) {
            log_error("bitrot: inline object %s/%s fails its CRC", o->bucket, o->key);
            sov_counter_add(bitrot_metric(), 1);
            s3_error(r, "InternalError", "The object's data is damaged");
            return;
        }
        if (!head && g->sse.kind) {
            rc = s3_sse_decrypt_buf(&g->sse, o->inline_data, stored, o->size, &g->plain_inline);
            if (rc < 0) {
                log_error("bitrot: inline object %s/%s fails its tag", o->bucket, o->key);
                sov_counter_add(bitrot_metric(), 1);
                s3_error(r, "InternalError", "The object's data is damaged");
                return;
            }
            data = g->plain_inline;
        }
        s3_record(r, status);
        sov_counter_add(r->srv->m_bytes_out, head ? 0 : end - start);
        sov_http_respond(r->http, status, ct, head ? NULL : data + start, end - start);
        s3_req_done(r);
        return;
    }
    if (head || start == end) {
        s3_record(r, status);
        sov_http_respond(r->http, status, ct, NULL, end - start);
        s3_req_done(r);
        return;
    }
    g->bufcap = end - start > S3_BLOCK ? S3_GET_BUF : S3_BLOCK;
    if (g->psize) /* whole stored blocks: a short range may still straddle two */
        g->bufcap = (end - start > SSE_BLOCK ? 4 : 2) * SSE_STORED_BLOCK;
    g->buf = malloc(g->bufcap);
    g->pos = start;
    g->end = end;
    if (!g->buf) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    if (get_load(r->srv->store, g) < 0) {
        s3_error(r, "InternalError", "The object's data is damaged or missing");
        return;
    }
    s3_record(r, status);
    if (g->slice_len == end - start) {
        /* Fits one block: headers and body leave in one write. */
        sov_counter_add(r->srv->m_bytes_out, g->slice_len);
        sov_http_respond(r->http, status, ct, g->buf + g->slice_off, g->slice_len);
        s3_req_done(r);
        return;
    }
    if (sov_http_resp_header(r->http, "Content-Type", sov_str(ct)) < 0 ||
        sov_http_resp_start(r->http, status, (int64_t)(end - start)) < 0 ||
        sov_http_resp_write(r->http, g->buf + g->slice_off, g->slice_len, get_next, r) < 0)
        s3_req_done(r);
}

/* ---- copy ---- */

int s3_copy_source(S3Req *r, S3Object *ret)
{
    const char *src = s3_header(r, "x-amz-copy-source");
    SovBuf dec = SOV_BUF_INIT;
    S3Bucket b = {0};
    SovStr s = sov_str(src);
    const char *q = memchr(s.ptr, '?', s.len);
    char version[40] = "";
    if (q) {
        if (strncmp(q, "?versionId=", 11) != 0 || strlen(q + 11) >= sizeof(version) ||
            !s3_version_id_valid(q + 11)) {
            s3_error(r, "InvalidArgument", "Invalid version id specified");
            return -EINVAL;
        }
        snprintf(version, sizeof(version), "%s", q + 11);
        s.len = (size_t)(q - s.ptr);
    }
    if (s3_uri_decode(&dec, s, false) < 0 || dec.len == 0) {
        sov_buf_release(&dec);
        s3_error(r, "InvalidArgument", "Copy Source must mention the source bucket and key");
        return -EINVAL;
    }
    char *p = dec.ptr + (dec.ptr[0] == '/');
    char *slash = strchr(p, '/');
    if (!slash || slash == p || !slash[1] || strlen(slash + 1) > S3_MAX_KEY) {
        sov_buf_release(&dec);
        s3_error(r, "InvalidArgument", "Copy Source must mention the source bucket and key");
        return -EINVAL;
    }
    *slash = '\0';
    int rc = s3_bucket_get(s3_loop_db(r->loop), p, &b);
    bool marker = false;
    if (rc == 0 && version[0]) {
        rc = s3_object_get_version(s3_loop_db(r->loop), p, slash + 1, version, ret);
        if (rc == 0 && ret->delete_marker) {
            s3_object_clear(ret);
            marker = true;
            rc = -ENOENT;
        } else if (rc == -ENOENT) {
            rc = -ESRCH;
        }
    } else if (rc == 0) {
        rc = s3_object_get_meta(s3_loop_db(r->loop), p, slash + 1, ret);
    }
    if (rc == 0 && s3_access_copy_source(r, &b, ret) < 0) {
        s3_object_clear(ret);
        rc = -EACCES;
    } else if ((rc == -ENOENT || rc == -ESRCH) && b.name[0]) {
        /* missing: say so only to a caller who may read it */
        S3Object none = {.key = slash + 1, .meta_json = (char *)"{}"};
        if (s3_access_copy_source(r, &b, &none) < 0) {
            marker = false;
            rc = -EACCES;
        }
    }
    sov_buf_release(&dec);
    if (rc < 0) {
        bool no_bucket = rc == -ENOENT && b.name[0] == '\0';
        if (rc == -EACCES)
            s3_error(r, "AccessDenied", "Access Denied");
        else if (marker)
            s3_error_status(r, 400, "InvalidRequest",
                            "The source of a copy request may not specifically refer to a delete "
                            "marker by version id.");
        else if (rc == -ESRCH)
            s3_error(r, "NoSuchVersion", "The specified version does not exist.");
        else if (no_bucket)
            s3_error(r, "NoSuchBucket", "The source bucket does not exist");
        else if (rc == -ENOENT)
            s3_error(r, "NoSuchKey", "The specified key does not exist.");
        else
            s3_error(r, "InternalError", "cannot read the source");
        return rc;
    }
    if (conditions(r, ret, "x-amz-copy-source-") != 0) {
        s3_object_clear(ret);
        s3_error(r, "PreconditionFailed",
                 "At least one of the pre-conditions you specified did not hold");
        return -EINVAL;
    }
    /* An archived source must be restored first (s3_restore_check answers InvalidObjectState). */
    if (s3_restore_check(r, ret) < 0) {
        s3_object_clear(ret);
        return -EACCES;
    }
    return 0;
}

typedef struct CopyJob {
    uv_work_t work;
    S3Req *r;
    const S3Object *src;
    uint64_t off, len; /* plaintext */
    S3Sink sink;
    S3Segment seg;
    char storage_class[24];
    S3Sse src_sse, dst_sse; /* the source's key; the destination's encryption */
    int status;
    void (*done)(S3Req *r, int status, S3Segment *seg, void *ud);
    void *ud;
} CopyJob;

/* Reads plaintext [off, off + len) of the source (decrypted when it is encrypted, CRCs or tags
 * checked) into w, updating md5. */
static int copy_read(CopyJob *j, S3SseWriter *w, SovDigest *md5)
{
    const S3Object *o = j->src;
    int rc = 0;
    if (o->is_inline) {
        uint8_t *plain = NULL;
        const uint8_t *data = o->inline_data;
        uint64_t stored = j->src_sse.kind ? sse_stored_size(o->size) : o->size;
        if (sov_crc32c(0L, o->inline_data, stored) != o->inline_crc)
            return -EBADMSG;
        if (j->src_sse.kind) {
            if ((rc = s3_sse_decrypt_buf(&j->src_sse, o->inline_data, stored, o->size, &plain)) < 0)
                return rc;
            data = plain;
        }
        rc = s3_sse_writer_write(w, data + j->off, j->len);
        sov_digest_update(md5, data + j->off, j->len);
        free(plain);
        return rc;
    }
    GetState g = {.o = *o, .fd = -1, .pos = j->off, .end = j->off + j->len};
    g.bufcap = j->src_sse.kind ? SSE_STORED_BLOCK : S3_BLOCK;
    g.buf = malloc(g.bufcap);
    rc = g.buf ? get_sse_setup(&g, &j->src_sse) : -ENOMEM;
    while (rc == 0 && g.pos < g.end) {
        rc = get_load(j->r->srv->store, &g);
        if (rc == 0) {
            rc = s3_sse_writer_write(w, g.buf + g.slice_off, g.slice_len);
            sov_digest_update(md5, g.buf + g.slice_off, g.slice_len);
            g.pos += g.slice_len;
        }
    }
    if (g.fd >= 0)
        close(g.fd);
    ec_reader_free(g.ec);
    free(g.buf);
    get_sse_release(&g);
    return rc;
}

static void copy_work(uv_work_t *w)
{
    CopyJob *j = w->data;
    SovDigest *md5 = sov_digest_new(SOV_DIGEST_MD5);
    S3SseWriter wr = {0};
    uint8_t dg[SOV_MD5_LEN];
    int rc = s3_sink_open(&j->sink, j->r->srv->store, true, j->storage_class);

    if (rc == 0)
        rc = s3_sse_writer_open(&wr, &j->dst_sse, &j->sink);
    if (!md5 || rc < 0) {
        j->status = rc < 0 ? rc : -ENOMEM;
        goto out;
    }
    rc = copy_read(j, &wr, md5);
    if (rc == 0)
        rc = s3_sse_writer_finish(&wr);
    if (rc == 0)
        rc = s3_sink_finish(&j->sink);
    if (rc == 0)
        rc = s3_sink_commit_sync(&j->sink);
    if (rc == 0) {
        char hex[2 * SOV_MD5_LEN + 1];
        sov_digest_final(md5, dg);
        s3_sse_etag(&j->dst_sse, dg, hex);
        s3_sink_segment(&j->sink, &j->seg, hex);
    }
    j->status = rc;
out:
    if (j->status < 0)
        s3_sink_abort(&j->sink);
    else
        s3_sink_release(&j->sink);
    s3_sse_writer_release(&wr);
    sov_digest_free(md5);
}

static void copy_after(uv_work_t *w, int status)
{
    CopyJob *j = w->data;
    s3_sse_clear(&j->src_sse);
    s3_sse_clear(&j->dst_sse);
    j->done(j->r, status < 0 ? status : j->status, &j->seg, j->ud);
    free(j->seg.crcs);
    free(j);
}

int s3_copy_data_sse(S3Req *r, const S3Object *src, uint64_t off, uint64_t len,
                     const char *storage_class, const S3Sse *src_sse, const S3Sse *dst_sse,
                     void (*done)(S3Req *r, int status, S3Segment *seg, void *ud), void *ud)
{
    CopyJob *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    snprintf(j->storage_class, sizeof(j->storage_class), "%s",
             storage_class ? storage_class : "STANDARD");
    j->work.data = j;
    j->r = r;
    j->src = src;
    j->off = off;
    j->len = len;
    j->done = done;
    j->ud = ud;
    j->sink.fd = -1;
    if (src_sse)
        j->src_sse = *src_sse;
    if (dst_sse)
        j->dst_sse = *dst_sse;
    int rc = uv_queue_work(s3_loop_uv(r->loop), &j->work, copy_work, copy_after);
    if (rc < 0) {
        s3_sse_clear(&j->src_sse);
        s3_sse_clear(&j->dst_sse);
        free(j);
    }
    return rc;
}

int s3_copy_data(S3Req *r, const S3Object *src, uint64_t off, uint64_t len,
                 const char *storage_class,
                 void (*done)(S3Req *r, int status, S3Segment *seg, void *ud), void *ud)
{
    return s3_copy_data_sse(r, src, off, len, storage_class, NULL, NULL, done, ud);
}

typedef struct CopyOp {
    S3WriteOp w;
    S3Req *r;
    S3Object src;
    S3Object dst;
    S3Segment seg;
    bool have_file;
    char version[40]; /* the copy's version, when the bucket has a versioning state */
    S3Sse src_sse;    /* the source's key */
    S3Sse dst_sse;    /* the copy's encryption */
} CopyOp;

static void copy_free(S3Req *r)
{
    CopyOp *op = r->op_state;
    if (!op)
        return;
    if (op->have_file)
        s3_file_remove(r->srv->store, op->seg.file);
    free(op->seg.crcs);
    free(op->dst.meta_json);
    free(op->dst.inline_data);
    s3_object_clear(&op->src);
    s3_sse_clear(&op->src_sse);
    s3_sse_clear(&op->dst_sse);
    free(op);
    r->op_state = NULL;
}

static int copy_apply(sqlite3 *db, S3WriteOp *w)
{
    CopyOp *op = (CopyOp *)w;
    S3Req *r = op->r;
    int rc = s3_meta_check_bucket(db, w, r->bucket, r->bucket_owner);
    if (rc < 0 || (rc = s3_meta_put_version(db, w, &op->dst)) < 0)
        return rc;
    op->version[0] = '\0';
    if (rc > 0)
        snprintf(op->version, sizeof(op->version), "%s", op->dst.version);
    return 0;
}

static void copy_done(S3WriteOp *w, int status)
{
    CopyOp *op = (CopyOp *)w;
    S3Req *r = op->r;
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter x;
    char etag[52], date[32];

    if (status < 0) {
        s3_error(r, w->err_code[0] ? w->err_code : "InternalError", "The copy failed");
        return;
    }
    op->have_file = false;
    snprintf(etag, sizeof(etag), "\"%s\"", op->dst.etag);
    s3_format_iso8601(op->dst.mtime_ms, date);
    sov_xml_writer_init(&x, &doc);
    sov_xml_open(&x, "CopyObjectResult", S3_XMLNS);
    sov_xml_elem(&x, "ETag", sov_str(etag));
    sov_xml_elem(&x, "LastModified", sov_str(date));
    sov_xml_close(&x);
    if (op->version[0])
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(op->version));
    if (strcmp(op->src.version, "null") != 0)
        sov_http_resp_header(r->http, "x-amz-copy-source-version-id", sov_str(op->src.version));
    s3_expiration_header(r, &op->dst, NULL);
    s3_sse_headers(r, &op->dst_sse);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

static void copy_data_done(S3Req *r, int status, S3Segment *seg, void *ud)
{
    CopyOp *op = r->op_state;
    if (status < 0) {
        s3_error(r, "InternalError",
                 status == -EBADMSG ? "The source object's data is damaged" : "The copy failed");
        return;
    }
    op->seg = *seg;
    seg->crcs = NULL;
    op->have_file = true;
    op->dst.is_inline = false;
    op->dst.nsegs = 1;
    op->dst.segs = &op->seg;
    snprintf(op->dst.etag, sizeof(op->dst.etag), "%s", op->seg.etag);
    s3_store_submit(r->srv->store, &op->w);
}

/* A small copy with encryption on either side: decrypted and encrypted again on the loop (at
 * most inline_max bytes), stored inline. */
static void copy_inline_sse(S3Req *r, CopyOp *op)
{
    S3Object *d = &op->dst;
    uint64_t stored = op->src_sse.kind ? sse_stored_size(op->src.size) : op->src.size;
    uint8_t *plain = NULL, md5[SOV_MD5_LEN];
    const uint8_t *data = op->src.inline_data;
    SovBuf out = SOV_BUF_INIT;
    if (sov_crc32c(0L, op->src.inline_data, stored) != op->src.inline_crc ||
        (op->src_sse.kind &&
         s3_sse_decrypt_buf(&op->src_sse, op->src.inline_data, stored, op->src.size, &plain) < 0)) {
        s3_error(r, "InternalError", "The source object's data is damaged");
        return;
    }
    if (plain)
        data = plain;
    sov_md5(data, d->size, md5);
    s3_sse_etag(&op->dst_sse, md5, d->etag);
    int rc = op->dst_sse.kind ? s3_sse_encrypt_buf(&op->dst_sse, data, d->size, &out)
                              : sov_buf_append(&out, data, d->size);
    free(plain);
    d->inline_data = malloc(out.len ? out.len : 1);
    if (rc < 0 || !d->inline_data) {
        sov_buf_release(&out);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    if (out.len)
        memcpy(d->inline_data, out.ptr, out.len);
    d->inline_crc = sov_crc32c(0L, d->inline_data, out.len);
    d->is_inline = true;
    sov_buf_release(&out);
    s3_store_submit(r->srv->store, &op->w);
}

void s3_object_copy(S3Req *r)
{
    S3Bucket b;
    const char *directive = s3_header(r, "x-amz-metadata-directive");
    const char *code = "InvalidArgument";

    if (s3_require_bucket(r, &b) < 0)
        return;
    CopyOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    r->op_state = op;
    r->op_free = copy_free;
    op->r = r;
    op->w.apply = copy_apply;
    op->w.done = copy_done;
    op->w.loop = r->loop;
    if (directive && strcmp(directive, "COPY") != 0 && strcmp(directive, "REPLACE") != 0) {
        s3_error(r, "InvalidArgument", "Unknown metadata directive.");
        return;
    }
    bool replace = directive && strcmp(directive, "REPLACE") == 0;
    if (s3_copy_source(r, &op->src) < 0)
        return;
    if (s3_sse_for_read(r, op->src.bucket, op->src.key, op->src.meta_json, "x-amz-copy-source-",
                        &op->src_sse) < 0 ||
        s3_sse_for_write(r, &op->dst_sse) < 0)
        return;
    if (op->src.size > r->srv->cfg.max_object_size) {
        s3_error(r, "InvalidRequest",
                 "The specified copy source is larger than the maximum "
                 "allowable size for a copy source");
        return;
    }
    if (!replace && !s3_header(r, "x-amz-storage-class") && op->dst_sse.kind == S3_SSE_NONE &&
        !strstr(s3_header(r, "x-amz-copy-source"), "?versionId=") && /* restoring a version */
        strcmp(op->src.bucket, r->bucket) == 0 && strcmp(op->src.key, r->key_name) == 0) {
        s3_error(r, "InvalidRequest",
                 "This copy request is illegal because it is trying to copy an object to itself "
                 "without changing the object's metadata, storage class, website redirect "
                 "location or encryption attributes.");
        return;
    }
    S3Object *d = &op->dst;
    d->bucket = r->bucket;
    d->key = r->key_name;
    d->size = op->src.size;
    d->mtime_ms = s3_now_ms();
    if (s3_storage_class(r, d->storage_class) < 0)
        return;
    if (replace) {
        json_t *meta;
        if (s3_collect_meta(r, &meta, &code) < 0) {
            s3_error(r, code, "The metadata headers are too large or not valid");
            return;
        }
        const char *td = s3_header(r, "x-amz-tagging-directive");
        if (!td || strcmp(td, "REPLACE") != 0) { /* COPY: the source's tags stay */
            json_t *src = json_loads(op->src.meta_json, 0, NULL);
            json_t *tags = json_object_get(src, "_tags");
            if (tags)
                json_object_set(meta, "_tags", tags);
            json_decref(src);
        }
        d->meta_json = s3_meta_dump(meta);
        json_decref(meta);
    } else if (s3_copy_meta(r, op->src.meta_json, &d->meta_json, &code) < 0) {
        s3_error(r, code, "The copy's ACL or tags are not valid");
        return;
    }
    if (!d->meta_json || s3_sse_meta_apply(&op->dst_sse, &d->meta_json) < 0) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    if (op->src.is_inline && (op->src_sse.kind || op->dst_sse.kind) &&
        (op->dst_sse.kind ? sse_stored_size(op->src.size) : op->src.size) <=
            r->srv->cfg.inline_max) {
        copy_inline_sse(r, op);
        return;
    }
    if (op->src.size <= r->srv->cfg.inline_max && !op->src_sse.kind && !op->dst_sse.kind) {
        /* Small: the copy is a metadata write (data checked and carried inline). */
        uint8_t md5[SOV_MD5_LEN];
        if (op->src.is_inline) {
            if (sov_crc32c(0L, op->src.inline_data, op->src.size) != op->src.inline_crc) {
                s3_error(r, "InternalError", "The source object's data is damaged");
                return;
            }
            d->inline_data = malloc(op->src.size ? op->src.size : 1);
            if (!d->inline_data) {
                s3_error(r, "ServiceUnavailable", "out of memory");
                return;
            }
            memcpy(d->inline_data, op->src.inline_data, op->src.size);
            d->is_inline = true;
            d->inline_crc = op->src.inline_crc;
            sov_md5(d->inline_data, d->size, md5);
            sov_hex_encode(md5, sizeof(md5), d->etag);
            s3_store_submit(r->srv->store, &op->w);
            return;
        }
    }
    if (s3_copy_data_sse(r, &op->src, 0, op->src.size, op->dst.storage_class, &op->src_sse,
                         &op->dst_sse, copy_data_done, NULL) < 0)
        s3_error(r, "InternalError", "The copy could not start");
}
