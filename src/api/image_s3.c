/* SPDX-License-Identifier: Apache-2.0 */
/* Image data (see image_s3.h): the upload and download pipelines behind Glance's
 * /v2/images/{id}/file and the two stores they use, the local one (<data_dir>/images/<id>)
 * and the object store through its S3 API, whose client is here too: requests signed with
 * AWS Signature Version 4 as the AWS specification describes it (canonical request, string
 * to sign, a signing key derived from the secret, date, region and service), each sent on a
 * fresh connection by core's asynchronous HTTP client. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "image_s3.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define KIND       "image"
#define FILE_CHUNK (4u * 1024 * 1024) /* bytes handed to one thread-pool write */
#define S3_PART    (8u * 1024 * 1024) /* multipart part size, also the ranged GET size */
#define READ_CHUNK (1u * 1024 * 1024) /* one file read of a download */

#define S3_DEFAULT_MAX_RESP (64 * 1024)
#define S3_DEFAULT_TIMEOUT  120000u

struct ImageS3 {
    uv_loop_t *loop;
    char host[256];
    int port;
    char region[64];
    char access_key[256];
    char secret_key[256];
    char bucket[64];
};

/* One request in flight; freed after its callback. */
typedef struct S3Call {
    ImageS3Cb cb;
    void *ud;
    SovBuf own; /* the response body when the op had no sink */
    SovBuf *sink;
    int status;
    bool overflow;
} S3Call;

int image_s3_new(uv_loop_t *loop, const char *url, const char *region, const char *access_key,
                 const char *secret_key, const char *bucket, ImageS3 **ret, SovBuf *err)
{
    const char *p;
    ImageS3 *s;

    if (strncmp(url, "https://", 8) == 0) {
        sov_buf_printf(err, "[image] s3_url: https is not supported yet, use http://");
        return -EPROTONOSUPPORT;
    }
    if (strncmp(url, "http://", 7) != 0) {
        sov_buf_printf(err, "[image] s3_url must be http://HOST:PORT");
        return -EINVAL;
    }
    if (!bucket[0] || !region[0]) {
        sov_buf_printf(err, "[image] s3_bucket and the region must be set");
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    p = url + 7;
    const char *colon = strrchr(p, ':');
    const char *end = p + strcspn(p, "/");
    if (!colon || colon > end || colon == p || (size_t)(colon - p) >= sizeof(s->host)) {
        s->port = 80;
        colon = end;
    } else {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port <= 0 || port > 65535) {
            sov_buf_printf(err, "[image] s3_url has a bad port: %s", url);
            free(s);
            return -EINVAL;
        }
        s->port = (int)port;
    }
    if (colon == p || (size_t)(colon - p) >= sizeof(s->host)) {
        sov_buf_printf(err, "[image] s3_url has no host: %s", url);
        free(s);
        return -EINVAL;
    }
    memcpy(s->host, p, (size_t)(colon - p));
    snprintf(s->region, sizeof(s->region), "%s", region);
    snprintf(s->access_key, sizeof(s->access_key), "%s", access_key);
    snprintf(s->secret_key, sizeof(s->secret_key), "%s", secret_key);
    snprintf(s->bucket, sizeof(s->bucket), "%s", bucket);
    *ret = s;
    return 0;
}

ImageS3 *image_s3_free(ImageS3 *s)
{
    if (s) {
        explicit_bzero(s->secret_key, sizeof(s->secret_key));
        free(s);
    }
    return NULL;
}

const char *image_s3_bucket(const ImageS3 *s)
{
    return s->bucket;
}

/* ---- Signature Version 4 ---- */

static void hex_sha256(const void *p, size_t n, char out[65])
{
    uint8_t h[SOV_SHA256_LEN];
    sov_sha256(p, n, h);
    sov_hex_encode(h, sizeof(h), out);
    out[64] = '\0';
}

/* RFC 3986 unreserved characters stay, everything else is %XX (upper case), '/' kept in
 * paths: the encoding SigV4 prescribes for S3 (no double encoding). */
static void uri_encode(SovBuf *out, const char *s, bool keep_slash)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~' || (ch == '/' && keep_slash)) {
            sov_buf_putc(out, (char)ch);
        } else {
            sov_buf_putc(out, '%');
            sov_buf_putc(out, hexd[ch >> 4]);
            sov_buf_putc(out, hexd[ch & 15]);
        }
    }
}

int image_s3_authorization(const char *access_key, const char *secret_key, const char *region,
                           const char *amz_date, const char *method, const char *canonical_uri,
                           const char *canonical_query, const char *canonical_headers,
                           const char *signed_headers, const char *payload_hash, SovBuf *out)
{
    SovBuf creq = SOV_BUF_INIT, sts = SOV_BUF_INIT, k = SOV_BUF_INIT;
    char date[9], creq_hash[65], sig[65];
    uint8_t key[SOV_SHA256_LEN], mac[SOV_SHA256_LEN];
    int r = -ENOMEM;

    if (strlen(amz_date) != 16)
        return -EINVAL;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (sov_buf_printf(&creq, "%s\n%s\n%s\n%s\n%s\n%s", method, canonical_uri, canonical_query,
                       canonical_headers, signed_headers, payload_hash) < 0)
        goto out;
    hex_sha256(creq.ptr, creq.len, creq_hash);
    if (sov_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", amz_date, date,
                       region, creq_hash) < 0)
        goto out;
    if (sov_buf_printf(&k, "AWS4%s", secret_key) < 0)
        goto out;
    if ((r = sov_hmac_sha256(k.ptr, k.len, date, 8, key)) < 0 ||
        (r = sov_hmac_sha256(key, sizeof(key), region, strlen(region), key)) < 0 ||
        (r = sov_hmac_sha256(key, sizeof(key), "s3", 2, key)) < 0 ||
        (r = sov_hmac_sha256(key, sizeof(key), "aws4_request", 12, key)) < 0 ||
        (r = sov_hmac_sha256(key, sizeof(key), sts.ptr, sts.len, mac)) < 0)
        goto out;
    sov_hex_encode(mac, sizeof(mac), sig);
    sig[64] = '\0';
    r = sov_buf_printf(out,
                       "AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, "
                       "SignedHeaders=%s, Signature=%s",
                       access_key, date, region, signed_headers, sig);
out:
    explicit_bzero(key, sizeof(key));
    if (k.ptr)
        explicit_bzero(k.ptr, k.len);
    sov_buf_release(&creq);
    sov_buf_release(&sts);
    sov_buf_release(&k);
    return r < 0 ? r : 0;
}

/* ---- requests ---- */

static void call_headers(SovHttpClientReq *r, int status, void *ud)
{
    ((S3Call *)ud)->status = status;
}

static int call_body(SovHttpClientReq *r, const char *p, size_t n, void *ud)
{
    S3Call *k = ud;
    SovBuf *b = k->sink ? k->sink : &k->own;
    if (sov_buf_append(b, p, n) < 0) {
        k->overflow = true;
        return -E2BIG;
    }
    return 0;
}

static void call_done(SovHttpClientReq *r, int err, void *ud)
{
    S3Call *k = ud;
    SovBuf *b = k->sink ? k->sink : &k->own;
    ImageS3Result res = {.err = err, .status = k->status, .body = sov_buf_str(b)};
    if (k->overflow)
        res.err = -E2BIG;
    if (r && !res.err) {
        SovStr e = sov_http_client_resp_header(r, "ETag");
        if (e.ptr)
            res.etag = e;
    }
    if (!res.err && res.status == 0)
        res.err = -EPROTO;
    k->cb(&res, k->ud);
    sov_buf_release(&k->own);
    free(k);
}

/* A start failure still answers through the callback, from the loop, so that callers have
 * one path. */
typedef struct S3Late {
    uv_timer_t t;
    S3Call *k;
    int err;
} S3Late;

static void late_closed(uv_handle_t *h)
{
    free(h->data);
}

static void late_fire(uv_timer_t *t)
{
    S3Late *l = t->data;
    call_done(NULL, l->err, l->k);
    uv_close((uv_handle_t *)&l->t, late_closed);
}

static int fail_later(ImageS3 *s, S3Call *k, int err)
{
    S3Late *l = calloc(1, sizeof(*l));
    if (!l) {
        sov_buf_release(&k->own);
        free(k);
        return -ENOMEM;
    }
    l->k = k;
    l->err = err;
    uv_timer_init(s->loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, late_fire, 0, 0);
    return 0;
}

int image_s3_call(ImageS3 *s, const ImageS3Op *op, ImageS3Cb cb, void *ud)
{
    static const SovHttpClientCallbacks cbs = {call_headers, call_body, call_done};
    SovBuf uri = SOV_BUF_INIT, target = SOV_BUF_INIT, hdrs = SOV_BUF_INIT, auth = SOV_BUF_INIT;
    SovBuf signed_h = SOV_BUF_INIT;
    char amz_date[17], payload[65], md5b64[32] = "", range[64] = "", hostport[300];
    char *lines[8];
    const char *headers[8];
    size_t nh = 0;
    struct tm tm;
    time_t now = time(NULL);
    int r;

    if (!s)
        return -ENODEV;
    S3Call *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->cb = cb;
    k->ud = ud;
    k->sink = op->sink;
    sov_buf_init(&k->own, op->max_resp ? op->max_resp : S3_DEFAULT_MAX_RESP);

    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    if (op->sign_body)
        hex_sha256(op->body.ptr ? op->body.ptr : "", op->body.len, payload);
    else
        snprintf(payload, sizeof(payload), "UNSIGNED-PAYLOAD");
    if (op->md5)
        EVP_EncodeBlock((unsigned char *)md5b64, op->md5, 16);
    if (op->range_len)
        snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)op->range_start,
                 (unsigned long long)(op->range_start + op->range_len - 1));
    snprintf(hostport, sizeof(hostport), "%s:%d", s->host, s->port);

    sov_buf_putc(&uri, '/');
    uri_encode(&uri, s->bucket, false);
    if (op->key) {
        sov_buf_putc(&uri, '/');
        uri_encode(&uri, op->key, true);
    }
    sov_buf_append(&target, uri.ptr, uri.len);
    if (op->query && op->query[0])
        sov_buf_printf(&target, "?%s", op->query);

    /* Canonical headers, sorted by name: content-md5, host, x-amz-content-sha256, x-amz-date.
     * Range is sent unsigned. */
    if (md5b64[0]) {
        sov_buf_printf(&hdrs, "content-md5:%s\n", md5b64);
        sov_buf_puts(&signed_h, "content-md5;");
    }
    sov_buf_printf(&hdrs, "host:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n", hostport, payload,
                   amz_date);
    sov_buf_puts(&signed_h, "host;x-amz-content-sha256;x-amz-date");
    r = image_s3_authorization(s->access_key, s->secret_key, s->region, amz_date, op->method,
                               uri.ptr, op->query ? op->query : "", hdrs.ptr, signed_h.ptr, payload,
                               &auth);
    if (r < 0)
        goto fail;

    lines[nh] = NULL;
    if (asprintf(&lines[nh++], "Authorization: %s", auth.ptr) < 0 ||
        asprintf(&lines[nh++], "x-amz-date: %s", amz_date) < 0 ||
        asprintf(&lines[nh++], "x-amz-content-sha256: %s", payload) < 0 ||
        (md5b64[0] && asprintf(&lines[nh++], "Content-MD5: %s", md5b64) < 0) ||
        (range[0] && asprintf(&lines[nh++], "Range: %s", range) < 0)) {
        lines[nh - 1] = NULL;
        r = -ENOMEM;
    } else {
        for (size_t i = 0; i < nh; i++)
            headers[i] = lines[i];
        headers[nh] = NULL;
        r = sov_http_client_request(s->loop, s->host, s->port, op->method, target.ptr, headers,
                                    op->body, op->timeout_ms ? op->timeout_ms : S3_DEFAULT_TIMEOUT,
                                    &cbs, k);
    }
    for (size_t i = 0; i < nh; i++)
        free(lines[i]);
    if (r < 0)
        goto fail;
    k = NULL;
fail:
    if (auth.ptr)
        explicit_bzero(auth.ptr, auth.len);
    sov_buf_release(&uri);
    sov_buf_release(&target);
    sov_buf_release(&hdrs);
    sov_buf_release(&auth);
    sov_buf_release(&signed_h);
    if (k)
        return fail_later(s, k, r);
    return 0;
}

int image_s3_presign(ImageS3 *s, const char *key, unsigned expires_s, SovBuf *out)
{
    SovBuf uri = SOV_BUF_INIT, q = SOV_BUF_INIT, cred = SOV_BUF_INIT, auth = SOV_BUF_INIT;
    char amz_date[17], host[320];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    sov_buf_putc(&uri, '/');
    uri_encode(&uri, s->bucket, false);
    sov_buf_putc(&uri, '/');
    uri_encode(&uri, key, true);
    sov_buf_printf(&cred, "%s/%.8s/%s/s3/aws4_request", s->access_key, amz_date, s->region);
    /* The canonical query: the X-Amz-* parameters sorted by name, the signature left out. */
    sov_buf_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    uri_encode(&q, cred.ptr ? cred.ptr : "", false);
    sov_buf_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%u&X-Amz-SignedHeaders=host", amz_date,
                   expires_s);
    snprintf(host, sizeof(host), "host:%s:%d\n", s->host, s->port);
    int r =
        image_s3_authorization(s->access_key, s->secret_key, s->region, amz_date, "GET", uri.ptr,
                               q.ptr ? q.ptr : "", host, "host", "UNSIGNED-PAYLOAD", &auth);
    const char *sig = r == 0 && auth.ptr ? strstr(auth.ptr, "Signature=") : NULL;
    if (r == 0)
        r = !sig ? -EINVAL
                 : sov_buf_printf(out,
                                  strchr(s->host, ':') ? "http://[%s]:%d%s?%s&X-Amz-Signature=%s"
                                                       : "http://%s:%d%s?%s&X-Amz-Signature=%s",
                                  s->host, s->port, uri.ptr, q.ptr, sig + 10);
    if (auth.ptr)
        explicit_bzero(auth.ptr, auth.len);
    sov_buf_release(&uri);
    sov_buf_release(&q);
    sov_buf_release(&cred);
    sov_buf_release(&auth);
    return r < 0 ? r : 0;
}

void image_s3_error_code(SovStr body, char *out, size_t cap)
{
    const char *open = "<Code>";
    out[0] = '\0';
    for (size_t i = 0; i + 6 <= body.len; i++) {
        if (memcmp(body.ptr + i, open, 6) != 0)
            continue;
        size_t j = i + 6, n = 0;
        while (j < body.len && body.ptr[j] != '<' && n + 1 < cap)
            out[n++] = body.ptr[j++];
        out[n] = '\0';
        return;
    }
}

/* ---- the stores ---- */

typedef struct ImageState {
    ImageS3 *s3; /* NULL: the local store */
    char dir[SOV_CONF_STR_MAX + 16];
    uv_timer_t bucket_timer;
    bool timer_open;
} ImageState;

static ImageState *state(Api *a)
{
    return a->image;
}

/* The object store client, NULL when the local store is used or after stop. */
static ImageS3 *s3_of(Api *a)
{
    return a->image ? state(a)->s3 : NULL;
}

ImageS3 *image_data_s3(Api *a)
{
    return s3_of(a);
}

static const char *jstr(const json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* ---- image data: helpers ---- */

static void data_path(Api *a, const char *id, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%s", state(a)->dir, id, suffix);
}

static void unlink_done(uv_fs_t *f)
{
    if (f->result < 0 && f->result != UV_ENOENT)
        log_warn("image data %s not removed: %s", f->path, uv_strerror((int)f->result));
    uv_fs_req_cleanup(f);
    free(f);
}

/* Removes a file on the thread pool (unlinking a large file can take a while). */
static void unlink_async(Api *a, const char *path)
{
    uv_fs_t *f = malloc(sizeof(*f));
    if (!f || uv_fs_unlink(a->loop, f, path, unlink_done) < 0) {
        free(f);
        unlink(path);
    }
}

static void s3_log_done(const ImageS3Result *res, void *ud)
{
    char code[64];
    image_s3_error_code(res->body, code, sizeof(code));
    if (res->err < 0 || (res->status >= 300 && res->status != 404))
        log_warn("image object cleanup of %s failed: status=%d err=%s code=%s", (char *)ud,
                 res->status, res->err < 0 ? strerror(-res->err) : "none", code);
    free(ud);
}

/* Removes an object (or aborts a multipart upload, upload_id set) without waiting. */
static void s3_remove_async(Api *a, const char *id, const char *upload_id)
{
    ImageS3 *s3 = s3_of(a);
    char q[512] = "";
    if (!s3)
        return;
    if (upload_id && upload_id[0])
        snprintf(q, sizeof(q), "uploadId=%s", upload_id);
    ImageS3Op op = {.method = "DELETE", .key = id, .query = q};
    char *tag = strdup(id);
    if (tag && image_s3_call(s3, &op, s3_log_done, tag) < 0)
        free(tag);
}

/* Puts an image whose upload did not finish back to queued (Glance does the same). */
static void image_requeue(Api *a, const char *id)
{
    json_t *doc;
    if (api_store_get(a->store, KIND, id, &doc, NULL, 0) < 0)
        return;
    if (strcmp(jstr(doc, "status"), "saving") == 0) {
        json_object_set_new(doc, "status", json_string("queued"));
        json_object_del(doc, "_store");
        json_object_del(doc, "_s3_upload");
        image_doc_touch(doc);
        image_doc_save(a, doc);
    }
    json_decref(doc);
}

/* ---- upload ---- */

/* One PUT .../file in flight. Invariants: at most one step is in flight (busy): a chunk in the
 * thread pool or at the object store, or the final step; fill collects the body meanwhile and
 * reading pauses while it holds a whole chunk. Every callback that enters from the loop holds
 * u for its duration (depth) and ends with up_release(), which frees u once the body is over,
 * nothing is in flight and the outcome is settled; internal steps never free, so a callback
 * that runs nested (an answer that makes the server report the body's end at once) is safe.
 * The Upload holds a reference on the request until it is freed. */
typedef struct Upload {
    Api *a;
    ApiCall *c;
    SovHttpReq *req;
    char id[API_UUID_LEN + 1];
    bool s3;
    size_t chunk;
    int fd;
    char dir[SOV_CONF_STR_MAX + 16], tmp[SOV_CONF_STR_MAX + 64], final[SOV_CONF_STR_MAX + 64];
    EVP_MD_CTX *md5, *sha512;
    SovBuf fill, work;
    uint64_t size, written;
    unsigned depth;
    bool body_open, body_done, busy, paused, failed, cleaned, finished;
    int werr;
    uv_work_t w[3]; /* a chunk's three jobs (MD5, SHA-512, write or part MD5) run side by side */
    unsigned pending;
    /* object store */
    char upload_id[256];
    unsigned part;
    uint8_t part_md5[16];
    SovBuf parts; /* CompleteMultipartUpload's <Part> elements so far */
    bool single;  /* the data went up in one PUT */
    char md5hex[33], shahex[129];
} Upload;

static void up_step(Upload *u);

static Upload *up_enter(void *ud)
{
    Upload *u = ud;
    u->depth++;
    return u;
}

static void up_release(Upload *u)
{
    if (--u->depth > 0 || u->busy || u->body_open || !(u->failed ? u->cleaned : u->finished))
        return;
    if (u->fd >= 0)
        close(u->fd);
    EVP_MD_CTX_free(u->md5);
    EVP_MD_CTX_free(u->sha512);
    sov_buf_release(&u->fill);
    sov_buf_release(&u->work);
    sov_buf_release(&u->parts);
    sov_http_req_unref(u->req);
    free(u);
}

/* Records the first failure and answers it at once; the cleanup waits until nothing is in
 * flight (up_step). */
static void up_fail(Upload *u, int status, const char *msg)
{
    if (u->failed || u->finished)
        return;
    u->failed = true;
    if (!u->c->answered)
        api_fault(u->c, status, NULL, "%s", msg);
    if (u->paused && u->body_open) {
        u->paused = false;
        sov_http_req_resume(u->req); /* the next piece is refused, which ends the body */
    }
}

static void up_cleanup(Upload *u)
{
    if (u->cleaned)
        return;
    u->cleaned = true;
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    if (!u->s3)
        unlink_async(u->a, u->tmp);
    if (u->s3 && u->upload_id[0])
        s3_remove_async(u->a, u->id, u->upload_id);
    else if (u->s3 && u->single)
        s3_remove_async(u->a, u->id, NULL);
    image_requeue(u->a, u->id);
}

/* The step in flight ended in a failure already recorded. */
static void up_step_failed(Upload *u)
{
    u->busy = false;
    up_step(u);
}

static void up_store_error(Upload *u, int err)
{
    bool full = err == -ENOSPC || err == -EDQUOT;
    log_error_errno(err, "image %s: storing data failed: %s", u->id, strerror(-err));
    up_fail(u, full ? 413 : 500,
            full ? "Image storage media is full" : "The image data could not be stored");
}

static int up_on_data(SovHttpReq *req, const char *p, size_t n, void *ud)
{
    Upload *u = up_enter(ud);
    int r = 0;
    if (u->failed) {
        r = -ECANCELED;
    } else if (sov_buf_append(&u->fill, p, n) < 0) {
        up_fail(u, 500, "out of memory");
        r = -ENOMEM;
    } else {
        u->size += n;
        if (u->fill.len >= u->chunk)
            up_step(u);
        if (u->busy && u->fill.len >= u->chunk && !u->paused) {
            u->paused = true;
            sov_http_req_pause(req);
        }
    }
    up_release(u);
    return r;
}

static void up_on_end(SovHttpReq *req, void *ud)
{
    Upload *u = up_enter(ud);
    u->body_open = false;
    u->body_done = true;
    up_step(u);
    up_release(u);
}

static void up_on_error(SovHttpReq *req, int err, void *ud)
{
    Upload *u = up_enter(ud);
    u->body_open = false;
    up_fail(u, err == -E2BIG || err == -EFBIG ? 413 : 400, "The image data did not arrive whole");
    up_step(u);
    up_release(u);
}

/* Thread pool: the three jobs of a chunk, which touch disjoint state. */
static void w_md5(uv_work_t *w)
{
    Upload *u = w->data;
    EVP_DigestUpdate(u->md5, u->work.ptr, u->work.len);
}

static void w_sha512(uv_work_t *w)
{
    Upload *u = w->data;
    EVP_DigestUpdate(u->sha512, u->work.ptr, u->work.len);
}

/* The local store writes the chunk; the object store wants the part's own MD5. */
static void w_store(uv_work_t *w)
{
    Upload *u = w->data;
    if (u->s3) {
        EVP_Digest(u->work.ptr, u->work.len, u->part_md5, NULL, EVP_md5(), NULL);
        return;
    }
    for (size_t off = 0; off < u->work.len;) {
        ssize_t n = pwrite(u->fd, u->work.ptr + off, u->work.len - off, (off_t)(u->written + off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            u->werr = n < 0 ? -errno : -EIO;
            return;
        }
        off += (size_t)n;
    }
}

static void up_chunk_stored(Upload *u)
{
    u->written += u->work.len;
    sov_buf_reset(&u->work);
    u->busy = false;
    up_step(u);
}

/* A failed answer of the object store is recorded (and logged) here; true when it went well. */
static bool s3_ok(Upload *u, const ImageS3Result *res, const char *what)
{
    char code[64];
    if (res->err == 0 && res->status >= 200 && res->status < 300)
        return true;
    image_s3_error_code(res->body, code, sizeof(code));
    log_error("image %s: object store %s failed: status=%d err=%s code=%s", u->id, what,
              res->status, res->err < 0 ? strerror(-res->err) : "none", code);
    up_fail(u, 503, "The object store did not take the image data");
    return false;
}

static void s3_start(Upload *u, ImageS3Op *op, ImageS3Cb cb)
{
    if (image_s3_call(s3_of(u->a), op, cb, u) < 0) {
        up_fail(u, 503, "The object store is not available");
        up_step_failed(u);
    }
}

static void s3_part_done(const ImageS3Result *res, void *ud)
{
    Upload *u = up_enter(ud);
    if (s3_ok(u, res, "UploadPart") && !u->failed) {
        sov_buf_printf(&u->parts,
                       "<Part><PartNumber>%u</PartNumber><ETag>" SOV_STR_FMT "</ETag></Part>",
                       u->part, SOV_STR_ARG(res->etag));
        up_chunk_stored(u);
    } else {
        up_step_failed(u);
    }
    up_release(u);
}

static void s3_send_part(Upload *u)
{
    char q[400];
    u->part++;
    snprintf(q, sizeof(q), "partNumber=%u&uploadId=%s", u->part, u->upload_id);
    ImageS3Op op = {.method = "PUT",
                    .key = u->id,
                    .query = q,
                    .body = sov_buf_str(&u->work),
                    .md5 = u->part_md5};
    s3_start(u, &op, s3_part_done);
}

/* Copies the UploadId of a CreateMultipartUpload answer, percent-encoded for a query. */
static bool parse_upload_id(SovStr body, char *out, size_t cap)
{
    const char *p = body.ptr ? memmem(body.ptr, body.len, "<UploadId>", 10) : NULL;
    size_t o = 0;
    if (!p)
        return false;
    for (p += 10; p < body.ptr + body.len && *p != '<'; p++) {
        unsigned char ch = (unsigned char)*p;
        bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (o + 4 >= cap)
            return false;
        if (plain)
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
    }
    out[o] = '\0';
    return o > 0;
}

static void s3_created(const ImageS3Result *res, void *ud)
{
    Upload *u = up_enter(ud);
    json_t *doc;
    if (!s3_ok(u, res, "CreateMultipartUpload") || u->failed) {
        up_step_failed(u);
    } else if (!parse_upload_id(res->body, u->upload_id, sizeof(u->upload_id))) {
        log_error("image %s: CreateMultipartUpload answered without an UploadId", u->id);
        up_fail(u, 503, "The object store did not start the upload");
        up_step_failed(u);
    } else {
        /* Remembered so that a restart after a crash can abort it. */
        if (api_store_get(u->a->store, KIND, u->id, &doc, NULL, 0) == 0) {
            json_object_set_new(doc, "_s3_upload", json_string(u->upload_id));
            image_doc_save(u->a, doc);
            json_decref(doc);
        }
        s3_send_part(u);
    }
    up_release(u);
}

static void s3_single_done(const ImageS3Result *res, void *ud)
{
    Upload *u = up_enter(ud);
    if (s3_ok(u, res, "PutObject"))
        up_chunk_stored(u);
    else
        up_step_failed(u);
    up_release(u);
}

static void w_chunk_after(uv_work_t *w, int status)
{
    Upload *u = up_enter(w->data);
    if (status < 0 && !u->werr)
        u->werr = status;
    if (--u->pending > 0) {
        up_release(u);
        return;
    }
    if (u->werr < 0) {
        up_store_error(u, u->werr);
        up_step_failed(u);
    } else if (!u->s3) {
        up_chunk_stored(u);
    } else if (u->failed) {
        up_step_failed(u);
    } else if (u->part == 0 && u->body_done && u->fill.len == 0) { /* all of it: one PUT */
        u->single = true;
        ImageS3Op op = {
            .method = "PUT", .key = u->id, .body = sov_buf_str(&u->work), .md5 = u->part_md5};
        s3_start(u, &op, s3_single_done);
    } else if (!u->upload_id[0]) {
        ImageS3Op op = {.method = "POST", .key = u->id, .query = "uploads=", .sign_body = true};
        s3_start(u, &op, s3_created);
    } else {
        s3_send_part(u);
    }
    up_release(u);
}

/* The data is stored: the image turns active, or the data goes again when the image was
 * deleted meanwhile. */
static void up_commit(Upload *u)
{
    json_t *doc = NULL;
    u->busy = false;
    if (api_store_get(u->a->store, KIND, u->id, &doc, NULL, 0) < 0 ||
        strcmp(jstr(doc, "status"), "saving") != 0) {
        json_decref(doc);
        if (u->s3)
            s3_remove_async(u->a, u->id, NULL);
        else
            unlink_async(u->a, u->final);
        u->cleaned = true;
        up_fail(u, 410, "Image deleted during upload");
        return;
    }
    json_object_set_new(doc, "status", json_string("active"));
    json_object_set_new(doc, "size", json_integer((json_int_t)u->size));
    json_object_set_new(doc, "checksum", json_string(u->md5hex));
    json_object_set_new(doc, "os_hash_algo", json_string("sha512"));
    json_object_set_new(doc, "os_hash_value", json_string(u->shahex));
    json_object_set_new(doc, "_store", json_string(u->s3 ? "s3" : "file"));
    json_object_del(doc, "_s3_upload");
    image_doc_touch(doc);
    int r = image_doc_save(u->a, doc);
    json_decref(doc);
    if (r < 0) {
        up_fail(u, 500, "The image could not be stored");
        if (!u->s3)
            unlink_async(u->a, u->final);
        up_cleanup(u);
        return;
    }
    u->finished = true;
    log_info("image %s active: size=%" PRIu64 " store=%s", u->id, u->size, u->s3 ? "s3" : "file");
    api_reply(u->c, 204, NULL);
}

/* Thread pool: makes the local file durable under its final name. */
static void w_final_file(uv_work_t *w)
{
    Upload *u = w->data;
    bool sync = u->a->cfg.fsync;
    if (sync && fdatasync(u->fd) < 0)
        u->werr = -errno;
    if (close(u->fd) < 0 && !u->werr)
        u->werr = -errno;
    u->fd = -1;
    if (!u->werr && rename(u->tmp, u->final) < 0)
        u->werr = -errno;
    if (!u->werr && sync) {
        int dfd = open(u->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
            u->werr = -errno;
            unlink(u->final); /* not durable: the image stays without data */
        }
        if (dfd >= 0)
            close(dfd);
    }
}

static void w_final_after(uv_work_t *w, int status)
{
    Upload *u = up_enter(w->data);
    if (u->werr < 0 || status < 0) {
        up_store_error(u, u->werr < 0 ? u->werr : status);
        up_step_failed(u);
    } else {
        up_commit(u);
    }
    up_release(u);
}

static void s3_completed(const ImageS3Result *res, void *ud)
{
    Upload *u = up_enter(ud);
    /* CompleteMultipartUpload may answer 200 with an error document. */
    bool ok = s3_ok(u, res, "CompleteMultipartUpload");
    if (ok && res->body.ptr && memmem(res->body.ptr, res->body.len, "<Error>", 7)) {
        log_error("image %s: CompleteMultipartUpload failed: " SOV_STR_FMT, u->id,
                  SOV_STR_ARG(res->body));
        up_fail(u, 503, "The object store did not complete the upload");
        ok = false;
    }
    if (ok) {
        u->upload_id[0] = '\0';
        up_commit(u);
    } else {
        up_step_failed(u);
    }
    up_release(u);
}

static void up_finalize(Upload *u)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(u->md5, md, &n);
    sov_hex_encode(md, n, u->md5hex);
    EVP_DigestFinal_ex(u->sha512, md, &n);
    sov_hex_encode(md, n, u->shahex);
    u->busy = true;
    if (!u->s3) {
        u->w[0].data = u;
        if (uv_queue_work(u->a->loop, &u->w[0], w_final_file, w_final_after) < 0) {
            up_fail(u, 500, "The image data could not be stored");
            up_step_failed(u);
        }
    } else if (u->upload_id[0]) {
        SovBuf body = SOV_BUF_INIT;
        char q[400];
        snprintf(q, sizeof(q), "uploadId=%s", u->upload_id);
        sov_buf_printf(&body, "<CompleteMultipartUpload>" SOV_STR_FMT "</CompleteMultipartUpload>",
                       SOV_STR_ARG(sov_buf_str(&u->parts)));
        ImageS3Op op = {.method = "POST",
                        .key = u->id,
                        .query = q,
                        .body = sov_buf_str(&body),
                        .sign_body = true,
                        .timeout_ms = 600000};
        s3_start(u, &op, s3_completed);
        sov_buf_release(&body);
    } else if (u->single) {
        up_commit(u);
    } else { /* an empty image */
        EVP_Digest("", 0, u->part_md5, NULL, EVP_md5(), NULL);
        u->single = true;
        ImageS3Op op = {.method = "PUT", .key = u->id, .md5 = u->part_md5};
        s3_start(u, &op, s3_completed);
    }
}

/* The next step when nothing is in flight: clean up after a failure, send a full (or the
 * last) chunk, or finish once the body is over. */
static void up_step(Upload *u)
{
    if (u->busy || u->finished)
        return;
    if (u->failed) {
        up_cleanup(u);
        return;
    }
    if (u->fill.len >= u->chunk || (u->body_done && u->fill.len > 0)) {
        SovBuf t = u->work;
        u->work = u->fill;
        u->fill = t;
        sov_buf_reset(&u->fill);
        static const uv_work_cb jobs[3] = {w_md5, w_sha512, w_store};
        u->busy = true;
        u->pending = 1; /* held until every job is queued */
        for (size_t i = 0; i < ELEMENTSOF(jobs); i++) {
            u->w[i].data = u;
            if (uv_queue_work(u->a->loop, &u->w[i], jobs[i], w_chunk_after) < 0)
                u->werr = -EIO;
            else
                u->pending++;
        }
        if (--u->pending == 0) { /* nothing was queued */
            up_store_error(u, u->werr);
            up_step_failed(u);
            return;
        }
    } else if (u->body_done) {
        up_finalize(u);
        return;
    }
    if (u->paused && u->fill.len < u->chunk && u->body_open) {
        u->paused = false;
        sov_http_req_resume(u->req);
    }
}

void image_data_upload(ApiCall *c, json_t *doc)
{
    static const SovHttpBodyCallbacks cbs = {up_on_data, up_on_end, up_on_error};
    Api *a = c->api;
    Upload *u = calloc(1, sizeof(*u));
    if (!u || !(u->md5 = EVP_MD_CTX_new()) || !(u->sha512 = EVP_MD_CTX_new()) ||
        !EVP_DigestInit_ex(u->md5, EVP_md5(), NULL) ||
        !EVP_DigestInit_ex(u->sha512, EVP_sha512(), NULL)) {
        if (u) {
            EVP_MD_CTX_free(u->md5);
            EVP_MD_CTX_free(u->sha512);
        }
        free(u);
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    u->a = a;
    u->c = c;
    u->req = c->req;
    u->fd = -1;
    u->s3 = s3_of(a) != NULL;
    u->chunk = u->s3 ? S3_PART : FILE_CHUNK;
    snprintf(u->id, sizeof(u->id), "%s", jstr(doc, "id"));
    if (!u->s3) {
        snprintf(u->dir, sizeof(u->dir), "%s", state(a)->dir);
        /* A temporary name per upload: removing an abandoned one never hits the next. */
        snprintf(u->tmp, sizeof(u->tmp), "%s/%s.%s.tmp", u->dir, u->id, sov_http_req_id(c->req));
        data_path(a, u->id, "", u->final, sizeof(u->final));
        u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (u->fd < 0) {
            log_error("image %s: cannot create %s: %s", u->id, u->tmp, strerror(errno));
            EVP_MD_CTX_free(u->md5);
            EVP_MD_CTX_free(u->sha512);
            free(u);
            api_fault(c, 500, NULL, "The image data could not be stored");
            return;
        }
    }
    json_object_set_new(doc, "status", json_string("saving"));
    json_object_set_new(doc, "_store", json_string(u->s3 ? "s3" : "file"));
    image_doc_touch(doc);
    if (image_doc_save(a, doc) < 0) {
        close(u->fd);
        unlink(u->tmp);
        EVP_MD_CTX_free(u->md5);
        EVP_MD_CTX_free(u->sha512);
        free(u);
        api_fault(c, 500, NULL, "The image could not be stored");
        return;
    }
    sov_http_req_ref(c->req);
    up_enter(u);
    u->body_open = true;
    if (sov_http_req_read_body(c->req, &cbs, u) < 0) {
        u->body_open = false;
        up_fail(u, 500, "The request body could not be read");
        up_step(u);
    }
    up_release(u);
}

/* ---- download ---- */

/* One GET .../file in flight: reads a piece (file: thread pool; object store: ranged GET),
 * writes it, and reads the next only when the write is done. The response starts with the
 * first piece, so a store that cannot deliver it still gets a proper fault. Holds a request
 * reference. */
typedef struct Download {
    Api *a;
    SovHttpReq *req;
    ApiCall *c;
    char id[API_UUID_LEN + 1];
    int fd;
    int status; /* 200 or 206 */
    uint64_t off, left, total;
    bool started;
    char content_range[96], md5[33];
    uv_fs_t fs;
    char *buf;
    SovBuf sbuf;
    size_t piece;
} Download;

static void dl_free(Download *d)
{
    if (d->fd >= 0)
        close(d->fd);
    free(d->buf);
    sov_buf_release(&d->sbuf);
    sov_http_req_unref(d->req);
    free(d);
}

static void dl_next(Download *d);

static void dl_written(SovHttpReq *req, int status, void *ud)
{
    Download *d = ud;
    if (status < 0 || sov_http_req_is_closed(req)) {
        dl_free(d);
        return;
    }
    if (d->left == 0) {
        sov_http_resp_end(req);
        dl_free(d);
        return;
    }
    dl_next(d);
}

static void dl_start(Download *d)
{
    SovHttpReq *req = d->req;
    d->started = true;
    api_mark_answered(d->c, d->status);
    sov_http_resp_header(req, "Content-Type", SOV_STR("application/octet-stream"));
    sov_http_resp_header(req, "Accept-Ranges", SOV_STR("bytes"));
    if (d->content_range[0])
        sov_http_resp_header(req, "Content-Range", sov_str(d->content_range));
    if (d->md5[0]) /* hex, as Glance sends it */
        sov_http_resp_header(req, "Content-MD5", sov_str(d->md5));
    sov_http_resp_start(req, d->status, (int64_t)d->total);
}

/* A read failed: a fault when nothing went out yet, else the client sees a short body and a
 * closed connection. */
static void dl_abort(Download *d, int err)
{
    log_error_errno(err, "image %s: download failed at %" PRIu64 ": %s", d->id, d->off,
                    strerror(-err));
    if (!d->started)
        api_fault(d->c, 503, NULL, "The image data could not be read");
    else
        sov_http_resp_end(d->req);
    dl_free(d);
}

static void dl_send(Download *d, const char *p, size_t n)
{
    if (!d->started)
        dl_start(d);
    d->off += n;
    d->left -= n;
    if (sov_http_resp_write(d->req, p, n, dl_written, d) < 0)
        dl_free(d);
}

static void dl_read_done(uv_fs_t *f)
{
    Download *d = f->data;
    ssize_t n = f->result;
    uv_fs_req_cleanup(f);
    if (n <= 0) {
        dl_abort(d, n < 0 ? (int)n : -EIO);
        return;
    }
    dl_send(d, d->buf, (size_t)n);
}

static void dl_s3_done(const ImageS3Result *res, void *ud)
{
    Download *d = ud;
    if (res->err < 0 || (res->status != 200 && res->status != 206) || res->body.len != d->piece) {
        char code[64];
        image_s3_error_code(res->body, code, sizeof(code));
        log_error("image %s: object store GET failed: status=%d err=%d code=%s", d->id, res->status,
                  res->err, code);
        dl_abort(d, res->err < 0 ? res->err : -EIO);
        return;
    }
    dl_send(d, d->sbuf.ptr, d->sbuf.len);
}

static void dl_next(Download *d)
{
    ImageS3 *s3 = s3_of(d->a);
    if (sov_http_req_is_closed(d->req) || !d->a->image) {
        dl_free(d);
        return;
    }
    if (s3) {
        d->piece = d->left < S3_PART ? (size_t)d->left : S3_PART;
        sov_buf_release(&d->sbuf);
        sov_buf_init(&d->sbuf, d->piece + 1);
        ImageS3Op op = {.method = "GET",
                        .key = d->id,
                        .range_start = d->off,
                        .range_len = d->piece,
                        .sink = &d->sbuf};
        if (image_s3_call(s3, &op, dl_s3_done, d) < 0)
            dl_abort(d, -ENOMEM);
        return;
    }
    size_t n = d->left < READ_CHUNK ? (size_t)d->left : READ_CHUNK;
    uv_buf_t b = uv_buf_init(d->buf, (unsigned)n);
    d->fs.data = d;
    if (uv_fs_read(d->a->loop, &d->fs, d->fd, &b, 1, (int64_t)d->off, dl_read_done) < 0)
        dl_abort(d, -EIO);
}

/* Parses a single "bytes=a-b" range against size: 1 with [start, end], 0 when absent or not
 * a single byte range (answered in full), -1 when unsatisfiable. */
static int parse_range(SovStr h, uint64_t size, uint64_t *start, uint64_t *end)
{
    char buf[96], *dash, *e1, *e2;
    if (!h.ptr || h.len >= sizeof(buf) || !sov_str_has_prefix(h, SOV_STR("bytes=")))
        return 0;
    memcpy(buf, h.ptr + 6, h.len - 6);
    buf[h.len - 6] = '\0';
    if (strchr(buf, ',') || !(dash = strchr(buf, '-')))
        return 0;
    *dash = '\0';
    if (!buf[0]) { /* a suffix: the last N bytes */
        unsigned long long n = strtoull(dash + 1, &e2, 10);
        if (!dash[1] || *e2)
            return 0;
        if (n == 0 || size == 0)
            return -1;
        *start = n >= size ? 0 : size - n;
        *end = size - 1;
        return 1;
    }
    unsigned long long a = strtoull(buf, &e1, 10), b = size ? size - 1 : 0;
    if (*e1 || buf[0] == '-' || buf[0] == '+')
        return 0;
    if (dash[1]) {
        b = strtoull(dash + 1, &e2, 10);
        if (*e2 || b < a || dash[1] == '-' || dash[1] == '+')
            return 0;
    }
    if (a >= size)
        return -1;
    *start = a;
    *end = b >= size ? size - 1 : b;
    return 1;
}

void image_data_download(ApiCall *c, const json_t *doc)
{
    Api *a = c->api;
    SovHttpReq *req = c->req;
    char path[SOV_CONF_STR_MAX + 64], hdr[96];
    uint64_t start = 0, end = 0;
    const char *store = jstr(doc, "_store");
    if (!store || strcmp(store, state(a)->s3 ? "s3" : "file") != 0) {
        api_fault(c, 503, NULL, "The image data lies in the '%s' store, which is not configured",
                  store ? store : "?");
        return;
    }
    uint64_t size = (uint64_t)json_integer_value(json_object_get(doc, "size"));
    int rg = parse_range(sov_http_req_header(req, "Range"), size, &start, &end);
    if (rg < 0) {
        snprintf(hdr, sizeof(hdr), "bytes */%" PRIu64, size);
        sov_http_resp_header(req, "Content-Range", sov_str(hdr));
        api_fault(c, 416, NULL, "Requested range not satisfiable");
        return;
    }
    Download *d = calloc(1, sizeof(*d));
    if (!d) {
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    d->a = a;
    d->req = req;
    d->c = c;
    d->fd = -1;
    snprintf(d->id, sizeof(d->id), "%s", jstr(doc, "id"));
    d->off = rg ? start : 0;
    d->left = d->total = rg ? end - start + 1 : size;
    d->status = rg ? 206 : 200;
    if (rg)
        snprintf(d->content_range, sizeof(d->content_range),
                 "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end, size);
    else if (jstr(doc, "checksum"))
        snprintf(d->md5, sizeof(d->md5), "%s", jstr(doc, "checksum"));
    if (!state(a)->s3) {
        data_path(a, d->id, "", path, sizeof(path));
        d->fd = open(path, O_RDONLY | O_CLOEXEC);
        d->buf = malloc(READ_CHUNK);
        if (d->fd < 0 || !d->buf) {
            log_error("image %s: cannot open %s: %s", d->id, path, strerror(errno));
            if (d->fd >= 0)
                close(d->fd);
            free(d->buf);
            free(d);
            api_fault(c, 503, NULL, "The image data could not be read");
            return;
        }
    }
    sov_http_req_ref(req);
    if (d->left == 0) {
        dl_start(d);
        sov_http_resp_end(req);
        dl_free(d);
        return;
    }
    dl_next(d);
}

/* ---- delete ---- */

typedef struct Deletion {
    ApiCall *c;
    SovHttpReq *req;
    uv_fs_t fs;
} Deletion;

static void del_finish(Deletion *d)
{
    api_reply(d->c, 204, NULL);
    sov_http_req_unref(d->req);
    free(d);
}

static void del_file_done(uv_fs_t *f)
{
    Deletion *d = f->data;
    if (f->result < 0 && f->result != UV_ENOENT)
        log_warn("image %s: data not removed: %s", d->c->target, uv_strerror((int)f->result));
    uv_fs_req_cleanup(f);
    del_finish(d);
}

static void del_s3_done(const ImageS3Result *res, void *ud)
{
    Deletion *d = ud;
    if (res->err < 0 || (res->status >= 300 && res->status != 404)) {
        char code[64];
        image_s3_error_code(res->body, code, sizeof(code));
        log_warn("image %s: object not removed: status=%d err=%d code=%s", d->c->target,
                 res->status, res->err, code);
    }
    del_finish(d);
}

void image_data_remove(ApiCall *c, const char *id, const char *store)
{
    Api *a = c->api;
    char path[SOV_CONF_STR_MAX + 64];
    Deletion *d = calloc(1, sizeof(*d));
    if (!d) {
        api_reply(c, 204, NULL);
        return;
    }
    d->c = c;
    d->req = c->req;
    sov_http_req_ref(c->req);
    if (strcmp(store, "s3") == 0 && s3_of(a)) {
        ImageS3Op op = {.method = "DELETE", .key = id};
        if (image_s3_call(s3_of(a), &op, del_s3_done, d) < 0)
            del_finish(d);
        return;
    }
    if (strcmp(store, "file") != 0) {
        log_warn("image %s: data in store '%s' not removed (not configured)", id, store);
        del_finish(d);
        return;
    }
    data_path(a, id, "", path, sizeof(path));
    d->fs.data = d;
    if (uv_fs_unlink(a->loop, &d->fs, path, del_file_done) < 0)
        del_finish(d);
}

/* ---- start and stop ---- */

static void bucket_retry(uv_timer_t *t);

static void bucket_done(const ImageS3Result *res, void *ud)
{
    Api *a = ud;
    ImageState *st = state(a);
    char code[64];
    if (!st)
        return;
    image_s3_error_code(res->body, code, sizeof(code));
    if (res->err == 0 && ((res->status >= 200 && res->status < 300) ||
                          strcmp(code, "BucketAlreadyOwnedByYou") == 0)) {
        log_info("image bucket %s ready", image_s3_bucket(st->s3));
        return;
    }
    log_warn("image bucket %s not created (status=%d err=%s code=%s), retrying",
             image_s3_bucket(st->s3), res->status, res->err < 0 ? strerror(-res->err) : "none",
             code);
    if (st->timer_open)
        uv_timer_start(&st->bucket_timer, bucket_retry, 5000, 0);
}

static void bucket_retry(uv_timer_t *t)
{
    Api *a = t->data;
    ImageS3Op op = {.method = "PUT", .sign_body = true, .timeout_ms = 30000};
    if (image_s3_call(state(a)->s3, &op, bucket_done, a) < 0)
        uv_timer_start(t, bucket_retry, 5000, 0);
}

/* Uploads a crash interrupted: back to queued, their partial data removed. */
static void recover_uploads(Api *a)
{
    ImageState *st = state(a);
    ApiListQuery q = {.kind = KIND, .status = "saving"};
    json_t *all, *doc;
    size_t i;
    if (api_store_list(a->store, &q, &all) == 0) {
        json_array_foreach(all, i, doc)
        {
            const char *id = jstr(doc, "id"), *up = jstr(doc, "_s3_upload"),
                       *store = jstr(doc, "_store");
            char path[SOV_CONF_STR_MAX + 64];
            log_warn("image %s: upload interrupted, back to queued", id);
            /* The data may have been stored just before the crash: a queued image has none. */
            if (store && strcmp(store, "s3") == 0 && st->s3) {
                if (up)
                    s3_remove_async(a, id, up);
                s3_remove_async(a, id, NULL);
            } else if (store && strcmp(store, "file") == 0) {
                data_path(a, id, "", path, sizeof(path));
                if (unlink(path) < 0 && errno != ENOENT)
                    log_warn("cannot remove %s: %s", path, strerror(errno));
            }
            image_requeue(a, id);
        }
        json_decref(all);
    }
    DIR *dir = opendir(st->dir);
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0 && unlinkat(dirfd(dir), e->d_name, 0))
            log_warn("cannot remove %s/%s: %s", st->dir, e->d_name, strerror(errno));
    }
    if (dir)
        closedir(dir);
}

int image_data_start(Api *a, SovBuf *err)
{
    ImageState *st = calloc(1, sizeof(*st));
    int r;
    if (!st)
        return -ENOMEM;
    a->image = st;
    snprintf(st->dir, sizeof(st->dir), "%s/images", a->cfg.data_dir);
    if (mkdir(st->dir, 0750) < 0 && errno != EEXIST) {
        r = -errno;
        sov_buf_printf(err, "cannot create %s: %s", st->dir, strerror(errno));
        return r;
    }
    if (a->cfg.s3_url[0]) {
        r = image_s3_new(a->loop, a->cfg.s3_url, api_local_region(a)->name, a->cfg.s3_access_key,
                         a->cfg.s3_secret_key, a->cfg.s3_bucket, &st->s3, err);
        if (r < 0)
            return r;
        uv_timer_init(a->loop, &st->bucket_timer);
        st->bucket_timer.data = a;
        st->timer_open = true;
        bucket_retry(&st->bucket_timer);
    }
    recover_uploads(a);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    ImageState *st = h->data;
    image_s3_free(st->s3);
    free(st);
}

/* Calls still in flight find a->image NULL and stop there. */
void image_data_stop(Api *a)
{
    ImageState *st = a ? state(a) : NULL;
    if (!st)
        return;
    a->image = NULL;
    if (st->timer_open) {
        st->timer_open = false;
        uv_timer_stop(&st->bucket_timer);
        st->bucket_timer.data = st;
        uv_close((uv_handle_t *)&st->bucket_timer, timer_closed);
        return;
    }
    image_s3_free(st->s3);
    free(st);
}
