/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 request path: one handler takes every request, finds the bucket (virtual-host or path
 * style) and key, checks the signature, decodes the query, dispatches to the operation, and
 * owns the request's life (S3Req) until its answer. Also the S3 XML errors and the body reader
 * that checks payload hashes, aws-chunked signatures and Content-MD5. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

#define S3_MAX_PARAMS 64

/* ---- errors ---- */

static const struct {
    const char *code;
    int status;
} error_table[] = {
    {"AccessDenied", 403},
    {"AuthorizationHeaderMalformed", 400},
    {"AuthorizationQueryParametersError", 400},
    {"BadDigest", 400},
    {"BucketAlreadyExists", 409},
    {"BucketAlreadyOwnedByYou", 409},
    {"BucketNotEmpty", 409},
    {"EntityTooLarge", 400},
    {"EntityTooSmall", 400},
    {"IllegalLocationConstraintException", 400},
    {"IncompleteBody", 400},
    {"InternalError", 500},
    {"InvalidAccessKeyId", 403},
    {"InvalidArgument", 400},
    {"InvalidBucketName", 400},
    {"InvalidDigest", 400},
    {"InvalidLocationConstraint", 400},
    {"InvalidPart", 400},
    {"InvalidPartOrder", 400},
    {"InvalidRange", 416},
    {"InvalidRequest", 400},
    {"InvalidURI", 400},
    {"KeyTooLongError", 400},
    {"MalformedXML", 400},
    {"MetadataTooLarge", 400},
    {"MethodNotAllowed", 405},
    {"MissingContentLength", 411},
    {"MissingSecurityHeader", 400},
    {"NoSuchBucket", 404},
    {"NoSuchKey", 404},
    {"NoSuchUpload", 404},
    {"NoSuchVersion", 404},
    {"NoSuchBucketPolicy", 404},
    {"NoSuchCORSConfiguration", 404},
    {"NoSuchTagSet", 404},
    {"NoSuchLifecycleConfiguration", 404},
    {"NoSuchPublicAccessBlockConfiguration", 404},
    {"InvalidObjectState", 403},
    {"AccessForbidden", 403},
    {"RestoreAlreadyInProgress", 409},
    {"NotImplemented", 501},
    {"PreconditionFailed", 412},
    {"RequestTimeTooSkewed", 403},
    {"ServiceUnavailable", 503},
    {"SignatureDoesNotMatch", 403},
    {"SlowDown", 503},
    {"XAmzContentSHA256Mismatch", 400},
};

static int error_status(const char *code)
{
    for (size_t i = 0; i < ELEMENTSOF(error_table); i++)
        if (strcmp(error_table[i].code, code) == 0)
            return error_table[i].status;
    return 400;
}

/* Each loop thread remembers the series it used (operation names are literals, so their
 * pointers are keys): registering takes the registry's lock, counting must not. */
typedef struct RecordSlot {
    const char *op;
    int status;
    SovMetric *count, *latency;
} RecordSlot;
static _Thread_local RecordSlot record_slots[64];

void s3_record(S3Req *r, int status)
{
    const char *op = r->op ? r->op : "Unknown";
    RecordSlot *slot = NULL;
    for (size_t i = 0; i < ELEMENTSOF(record_slots) && !slot; i++) {
        RecordSlot *c = &record_slots[i];
        if (!c->op || (c->op == op && c->status == status))
            slot = c;
    }
    RecordSlot fresh = {op, status, NULL, NULL};
    if (!slot || !slot->op) {
        char labels[96];
        snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%d\"", op, status);
        fresh.count = sov_metrics_counter("sov_s3_requests_total",
                                          "S3 requests by operation and status", labels);
        snprintf(labels, sizeof(labels), "op=\"%s\"", op);
        fresh.latency = sov_metrics_histogram("sov_s3_request_seconds",
                                              "S3 request latency by operation", labels, NULL, 0);
        if (slot && fresh.count && fresh.latency)
            *slot = fresh; /* a full table just means registering each time */
        slot = &fresh;
    }
    if (slot->count)
        sov_counter_add(slot->count, 1);
    if (slot->latency)
        sov_histogram_observe(slot->latency, (double)(uv_hrtime() - (uint64_t)r->start_ns) / 1e9);
}

void s3_error_doc(SovBuf *doc, const char *code, const char *message, const char *bucket,
                  const char *key, const char *request_id)
{
    s3_error_doc_region(doc, code, message, bucket, key, request_id, NULL);
}

void s3_error_doc_region(SovBuf *doc, const char *code, const char *message, const char *bucket,
                         const char *key, const char *request_id, const char *region)
{
    SovXmlWriter w;
    sov_xml_writer_init(&w, doc);
    sov_xml_open(&w, "Error", NULL);
    sov_xml_elem(&w, "Code", sov_str(code));
    sov_xml_elem(&w, "Message", sov_str(message));
    if (bucket)
        sov_xml_elem(&w, "BucketName", sov_str(bucket));
    if (key)
        sov_xml_elem(&w, "Key", sov_str(key));
    /* Clients that signed for another region (s3cmd's "US") learn the right one here. */
    if (region)
        sov_xml_elem(&w, "Region", sov_str(region));
    sov_xml_elem(&w, "RequestId", sov_str(request_id));
    sov_xml_close(&w);
}

void s3_error_status(S3Req *r, int status, const char *code, const char *message)
{
    SovBuf doc = SOV_BUF_INIT;
    s3_error_doc_region(&doc, code, message, r->bucket, r->key_name, sov_http_req_id(r->http),
                        strcmp(code, "AuthorizationHeaderMalformed") == 0 ? r->srv->cfg.region
                                                                          : NULL);
    s3_record(r, status);
    if (status >= 500 && status != 501)
        log_error("%s %s: %s", r->op ? r->op : "request", code, message);
    sov_http_respond(r->http, status, "application/xml", doc.ptr, doc.len);
    sov_buf_release(&doc);
    s3_req_done(r);
}

void s3_error(S3Req *r, const char *code, const char *message)
{
    s3_error_status(r, error_status(code), code, message);
}

void s3_reply_xml(S3Req *r, int status, SovBuf *doc)
{
    s3_record(r, status);
    sov_counter_add(r->srv->m_bytes_out, doc->len);
    sov_http_respond(r->http, status, "application/xml", doc->ptr, doc->len);
    s3_req_done(r);
}

void s3_reply_empty(S3Req *r, int status)
{
    s3_record(r, status);
    sov_http_respond(r->http, status, NULL, NULL, 0);
    s3_req_done(r);
}

/* Ends the request's life. While its body is still being read, the body reader ends it once
 * reading stops (on_end or on_error). */
void s3_req_done(S3Req *r)
{
    if (r->body_active) {
        r->finished = true;
        return;
    }
    if (r->op_free)
        r->op_free(r);
    s3_chunked_free(r->chunks);
    sov_digest_free(r->sha256);
    sov_digest_free(r->md5);
    sov_buf_release(&r->xml);
    for (size_t i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(r->bucket);
    free(r->key_name);
    SovHttpReq *http = r->http;
    free(r);
    sov_http_req_unref(http);
}

/* ---- small helpers ---- */

const char *s3_param(const S3Req *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return r->params[i].value;
    return NULL;
}

bool s3_has_param(const S3Req *r, const char *name)
{
    return s3_param(r, name) != NULL;
}

char *s3_header(S3Req *r, const char *name)
{
    SovStr v = sov_http_req_header(r->http, name);
    if (!v.ptr)
        return NULL;
    return sov_arena_strndup(sov_http_req_arena(r->http), v.ptr, v.len);
}

int64_t s3_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void s3_format_iso8601(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    snprintf(out, 32, "%.31s", tmp);
}

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void s3_format_http_date(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    snprintf(out, 40, "%.39s", tmp);
}

int s3_parse_http_date(const char *s, int64_t *ret_ms)
{
    struct tm tm = {0};
    char wd[4], mon[4];
    int day, year, h, mi, sec;
    if (sscanf(s, "%3s, %d %3s %d %d:%d:%d GMT", wd, &day, mon, &year, &h, &mi, &sec) != 7)
        return -EINVAL;
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strcmp(mon, months[i]) == 0)
            m = i;
    if (m < 0 || day < 1 || day > 31 || year < 1970 || year > 9999 || h > 23 || mi > 59 ||
        sec > 60 || h < 0 || mi < 0 || sec < 0)
        return -EINVAL;
    tm.tm_year = year - 1900;
    tm.tm_mon = m;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *ret_ms = (int64_t)timegm(&tm) * 1000;
    return 0;
}

bool s3_bucket_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 3 || n > S3_MAX_BUCKET)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '.')
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
        if (c == '.' && (name[i + 1] == '.' || name[i + 1] == '-' || name[i - 1] == '-'))
            return false;
    }
    /* not an IP address */
    unsigned a, b, c, d;
    char extra;
    if (sscanf(name, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) == 4)
        return false;
    if (strncmp(name, "xn--", 4) == 0 || (n > 8 && strcmp(name + n - 8, "-s3alias") == 0))
        return false;
    return true;
}

int s3_require_bucket(S3Req *r, S3Bucket *ret)
{
    int rc = s3_bucket_get(s3_loop_db(r->loop), r->bucket, ret);
    if (rc == -ENOENT) {
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
        return rc;
    }
    if (rc < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return rc;
    }
    if ((rc = s3_access_check(r, ret)) < 0)
        return rc;
    snprintf(r->bucket_owner, sizeof(r->bucket_owner), "%s", ret->owner);
    r->bucket_lifecycle = ret->lifecycle;
    return 0;
}

/* ---- body reading ---- */

static int body_emit(void *ud, const char *p, size_t n)
{
    S3Req *r = ud;
    if (r->sha256)
        sov_digest_update(r->sha256, p, n);
    if (r->md5)
        sov_digest_update(r->md5, p, n);
    r->body_bytes += n;
    sov_counter_add(r->srv->m_bytes_in, n);
    return r->body_data ? r->body_data(r, p, n) : 0;
}

static int body_on_data(SovHttpReq *req, const char *p, size_t n, void *ud)
{
    S3Req *r = ud;
    int rc;
    if (r->finished)
        return -ECANCELED;
    if (r->chunks) {
        rc = s3_chunked_feed(r->chunks, p, n, body_emit, r);
        if (rc == -EBADMSG) {
            const char *msg;
            const char *code = s3_chunked_error(r->chunks, &msg);
            s3_error(r, code, msg);
        }
    } else {
        rc = body_emit(r, p, n);
    }
    if (rc < 0 && !r->finished)
        s3_error(r, "InternalError", "cannot store the request body");
    return rc < 0 ? -ECANCELED : 0;
}

static void body_on_end(SovHttpReq *req, void *ud)
{
    S3Req *r = ud;
    r->body_active = false;
    if (r->finished) {
        s3_req_done(r);
        return;
    }
    if (r->chunks && s3_chunked_finish(r->chunks) < 0) {
        const char *msg;
        const char *code = s3_chunked_error(r->chunks, &msg);
        s3_error(r, code, msg);
        return;
    }
    if (r->sha256) {
        uint8_t d[SOV_SHA256_LEN];
        char hex[2 * SOV_SHA256_LEN + 1];
        sov_digest_final(r->sha256, d);
        sov_hex_encode(d, sizeof(d), hex);
        if (strcmp(hex, r->auth.payload_sha256) != 0) {
            s3_error(
                r, "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.");
            return;
        }
    }
    if (r->md5) {
        sov_digest_final(r->md5, r->body_md5);
        if (r->check_md5 && !sov_memeq_ct(r->body_md5, r->want_md5, SOV_MD5_LEN)) {
            s3_error(r, "BadDigest",
                     "The Content-MD5 you specified did not match what we received.");
            return;
        }
    }
    r->body_end(r);
}

static void body_on_error(SovHttpReq *req, int err, void *ud)
{
    S3Req *r = ud;
    r->body_active = false;
    r->finished = true;
    s3_req_done(r);
}

int s3_base64_decode_buf(const char *in, size_t n, uint8_t *out)
{
    if (n == 0 || n % 4 || n > INT32_MAX)
        return -EINVAL;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -EINVAL;
    if (in[n - 1] == '=')
        len--;
    if (in[n - 2] == '=')
        len--;
    return len;
}

int s3_base64_decode(const char *in, uint8_t *out, size_t cap)
{
    uint8_t tmp[128];
    size_t n = strlen(in);
    if (n > sizeof(tmp) - 1)
        return -EINVAL;
    int len = s3_base64_decode_buf(in, n, tmp);
    if (len < 0 || (size_t)len > cap)
        return -EINVAL;
    memcpy(out, tmp, (size_t)len);
    return len;
}

void s3_base64_encode(const uint8_t *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int s3_body_start(S3Req *r)
{
    static const SovHttpBodyCallbacks cbs = {body_on_data, body_on_end, body_on_error};
    const char *cmd5 = s3_header(r, "content-md5");

    if (cmd5) {
        if (s3_base64_decode(cmd5, r->want_md5, sizeof(r->want_md5)) != SOV_MD5_LEN) {
            s3_error(r, "InvalidDigest", "The Content-MD5 you specified was invalid.");
            return -EINVAL;
        }
        r->check_md5 = true;
    }
    r->md5 = sov_digest_new(SOV_DIGEST_MD5);
    if (!r->md5)
        goto oom;
    switch (r->auth.payload) {
    case S3_PAYLOAD_SHA256:
        if (!(r->sha256 = sov_digest_new(SOV_DIGEST_SHA256)))
            goto oom;
        break;
    case S3_PAYLOAD_STREAMING:
    case S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER:
        if (!(r->chunks = s3_chunked_new(&r->auth)))
            goto oom;
        break;
    case S3_PAYLOAD_UNSIGNED:
        break;
    }
    r->body_active = true;
    if (sov_http_req_read_body(r->http, &cbs, r) < 0) {
        r->body_active = false;
        s3_error(r, "InternalError", "cannot read the request body");
        return -EIO;
    }
    return 0;
oom:
    s3_error(r, "ServiceUnavailable", "out of memory");
    return -ENOMEM;
}

static int xml_data(S3Req *r, const char *p, size_t n)
{
    if (r->xml.len + n > S3_MAX_XML_BODY) {
        s3_error(r, "MalformedXML", "The XML you provided was too large.");
        return -EFBIG;
    }
    return sov_buf_append(&r->xml, p, n);
}

int s3_body_xml(S3Req *r, void (*done)(S3Req *r))
{
    r->body_data = xml_data;
    r->body_end = done;
    return s3_body_start(r);
}

/* ---- authentication ---- */

static const S3Key *find_key(S3Server *srv, const char *access_key)
{
    const S3Key *k = NULL;
    uv_rwlock_rdlock(&srv->keys_lock);
    for (size_t i = 0; i < srv->nkeys; i++)
        if (strcmp(srv->keys[i].access_key, access_key) == 0)
            k = &srv->keys[i];
    uv_rwlock_rdunlock(&srv->keys_lock);
    return k;
}

/* The control plane issues and revokes EC2 credentials by rewriting keys_file: look at its
 * mtime at most once a second (one thread at a time) and re-read it when it changed, so a new
 * key works at once (an unknown key looks right away) and a deleted one stops within a second. */
static bool keys_file_reload(S3Server *srv)
{
    struct stat st;
    uint64_t now = uv_hrtime() / 1000000, last = atomic_load(&srv->keys_checked_ms);
    if (!srv->cfg.keys_file[0] || now - last < 1000 ||
        !atomic_compare_exchange_strong(&srv->keys_checked_ms, &last, now))
        return false;
    if (stat(srv->cfg.keys_file, &st) < 0)
        return false;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (mtime == atomic_load(&srv->keys_mtime))
        return false;
    SovBuf err = SOV_BUF_INIT;
    bool ok = s3_keys_load(srv, &err) == 0;
    if (!ok)
        log_warn("keys_file changed but was not reloaded: %s", err.ptr ? err.ptr : "?");
    else
        log_info("keys_file reloaded: %zu keys", srv->nkeys);
    sov_buf_release(&err);
    return ok;
}

const S3Key *s3_find_key(S3Server *srv, const char *access_key)
{
    keys_file_reload(srv);
    return find_key(srv, access_key);
}

static int lookup_secret(const char *access_key, char *ret, size_t cap, void *ud)
{
    const S3Key *k = s3_find_key(ud, access_key);
    if (!k)
        return -ENOENT;
    snprintf(ret, cap, "%s", k->secret);
    return 0;
}

/* ---- request parsing and dispatch ---- */

static int parse_query(S3Req *r, SovStr q)
{
    SovBuf name = SOV_BUF_INIT, value = SOV_BUF_INIT;
    size_t i = 0;
    int rc = 0;

    r->params = calloc(S3_MAX_PARAMS, sizeof(*r->params));
    if (!r->params)
        return -ENOMEM;
    while (i < q.len) {
        size_t end = i;
        while (end < q.len && q.ptr[end] != '&')
            end++;
        if (end > i) {
            size_t eq = i;
            while (eq < end && q.ptr[eq] != '=')
                eq++;
            if (r->nparams == S3_MAX_PARAMS) {
                rc = -E2BIG;
                break;
            }
            sov_buf_reset(&name);
            sov_buf_reset(&value);
            if (s3_uri_decode(&name, (SovStr){q.ptr + i, eq - i}, true) < 0 ||
                (eq < end &&
                 s3_uri_decode(&value, (SovStr){q.ptr + eq + 1, end - eq - 1}, true) < 0)) {
                rc = -EINVAL;
                break;
            }
            S3Param *p = &r->params[r->nparams++];
            p->name = strndup(name.ptr ? name.ptr : "", name.len);
            p->value = strndup(value.ptr ? value.ptr : "", value.len);
            p->has_value = eq < end;
            if (!p->name || !p->value) {
                rc = -ENOMEM;
                break;
            }
        }
        i = end + 1;
    }
    sov_buf_release(&name);
    sov_buf_release(&value);
    return rc;
}

/* Bucket from a virtual-host-style Host header ("bucket.<domain>[:port]"), or NULL. */
static char *vhost_bucket(S3Req *r)
{
    const char *domain = r->srv->cfg.domain;
    SovStr host = sov_http_req_header(r->http, "host");
    size_t dl = strlen(domain);
    if (!dl || !host.ptr)
        return NULL;
    size_t hl = host.len;
    for (size_t i = hl; i > 0; i--) {
        if (host.ptr[i - 1] == ':') {
            hl = i - 1;
            break;
        }
        if (host.ptr[i - 1] < '0' || host.ptr[i - 1] > '9')
            break;
    }
    if (hl <= dl + 1 || host.ptr[hl - dl - 1] != '.' ||
        strncasecmp(host.ptr + hl - dl, domain, dl) != 0)
        return NULL;
    return strndup(host.ptr, hl - dl - 1);
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void dispatch(S3Req *r)
{
    SovStr m = sov_http_req_method(r->http);
    bool get = sov_str_eq(m, SOV_STR("GET")), head = sov_str_eq(m, SOV_STR("HEAD")),
         put = sov_str_eq(m, SOV_STR("PUT")), post = sov_str_eq(m, SOV_STR("POST")),
         del = sov_str_eq(m, SOV_STR("DELETE"));

    if (!r->bucket) {
        r->op = "ListBuckets";
        if (!r->key)
            s3_error(r, "AccessDenied", "Anonymous users cannot list buckets");
        else if (get)
            s3_list_buckets(r);
        else
            s3_error(r, "MethodNotAllowed", "The specified method is not allowed");
        return;
    }
    if (sov_str_eq(m, SOV_STR("OPTIONS"))) {
        r->op = "PreflightRequest";
        s3_cors_preflight(r);
        return;
    }
    s3_cors_headers(r);
    if (!r->key_name) {
        /* bucket sub-resources: the operation names of GET, PUT and DELETE */
        static const struct {
            const char *param, *get, *put, *del;
            void (*fn)(S3Req *r);
        } subs[] = {
            {"policy", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy",
             s3_bucket_policy},
            {"policyStatus", "GetBucketPolicyStatus", NULL, NULL, s3_bucket_policy_status},
            {"acl", "GetBucketAcl", "PutBucketAcl", NULL, s3_bucket_acl},
            {"publicAccessBlock", "GetPublicAccessBlock", "PutPublicAccessBlock",
             "DeletePublicAccessBlock", s3_bucket_public_access_block},
            {"cors", "GetBucketCors", "PutBucketCors", "DeleteBucketCors", s3_bucket_cors},
            {"tagging", "GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging",
             s3_bucket_tagging},
            {"lifecycle", "GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration",
             "DeleteBucketLifecycle", s3_bucket_lifecycle},
            {"versioning", "GetBucketVersioning", "PutBucketVersioning", NULL,
             s3_bucket_versioning},
            {"encryption", "GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption",
             s3_bucket_encryption},
        };
        for (size_t i = 0; i < ELEMENTSOF(subs); i++) {
            if (!s3_has_param(r, subs[i].param))
                continue;
            const char *op = get ? subs[i].get : put ? subs[i].put : del ? subs[i].del : NULL;
            if (!op) {
                r->op = "Unsupported";
                s3_error(r, "MethodNotAllowed",
                         "The specified method is not allowed against this resource");
                return;
            }
            r->op = op;
            subs[i].fn(r);
            return;
        }
        /* bucket subresources this store does not have yet */
        static const char *const unsupported[] = {"website",
                                                  "replication",
                                                  "logging",
                                                  "object-lock",
                                                  "notification",
                                                  "accelerate",
                                                  "requestPayment",
                                                  "ownershipControls",
                                                  "analytics",
                                                  "metrics",
                                                  "inventory",
                                                  "intelligent-tiering",
                                                  NULL};
        for (size_t i = 0; unsupported[i]; i++) {
            if (s3_has_param(r, unsupported[i])) {
                r->op = "Unsupported";
                s3_error(r, "NotImplemented",
                         "This bucket configuration is not implemented by sov-s3 yet");
                return;
            }
        }
        if (get && s3_has_param(r, "location")) {
            r->op = "GetBucketLocation";
            s3_bucket_location(r);
        } else if (get && s3_has_param(r, "uploads")) {
            r->op = "ListMultipartUploads";
            s3_multipart_list_uploads(r);
        } else if (get && s3_has_param(r, "versions")) {
            r->op = "ListObjectVersions";
            s3_list_versions(r);
        } else if (get) {
            const char *lt = s3_param(r, "list-type");
            r->op = lt && strcmp(lt, "2") == 0 ? "ListObjectsV2" : "ListObjects";
            s3_list_objects(r, lt && strcmp(lt, "2") == 0 ? 2 : 1);
        } else if (head) {
            r->op = "HeadBucket";
            s3_bucket_head(r);
        } else if (put && r->nparams == 0) {
            r->op = "CreateBucket";
            if (!r->key)
                s3_error(r, "AccessDenied", "Anonymous users cannot create buckets");
            else
                s3_bucket_create(r);
        } else if (del && r->nparams == 0) {
            r->op = "DeleteBucket";
            s3_bucket_delete(r);
        } else if (post && s3_has_param(r, "delete")) {
            r->op = "DeleteObjects";
            s3_delete_objects(r);
        } else {
            r->op = "Unsupported";
            s3_error(r, put || post ? "NotImplemented" : "MethodNotAllowed",
                     "This request is not supported on a bucket");
        }
        return;
    }
    if (s3_has_param(r, "acl")) {
        r->op = get ? "GetObjectAcl" : put ? "PutObjectAcl" : "Unsupported";
        if (get || put)
            s3_object_acl(r);
        else
            s3_error(r, "MethodNotAllowed",
                     "The specified method is not allowed against this resource");
        return;
    }
    if (s3_has_param(r, "tagging")) {
        r->op = get   ? "GetObjectTagging"
                : put ? "PutObjectTagging"
                : del ? "DeleteObjectTagging"
                      : "Unsupported";
        if (get || put || del)
            s3_object_tagging(r);
        else
            s3_error(r, "MethodNotAllowed",
                     "The specified method is not allowed against this resource");
        return;
    }
    if (post && s3_has_param(r, "restore")) {
        r->op = "RestoreObject";
        s3_object_restore(r);
        return;
    }
    static const char *const obj_unsupported[] = {"retention", "legal-hold", "restore", "torrent",
                                                  "select",    "attributes", NULL};
    for (size_t i = 0; obj_unsupported[i]; i++) {
        if (s3_has_param(r, obj_unsupported[i])) {
            r->op = "Unsupported";
            s3_error(r, "NotImplemented", "This object operation is not implemented by sov-s3 yet");
            return;
        }
    }
    if (get && s3_has_param(r, "uploadId")) {
        r->op = "ListParts";
        s3_multipart_list_parts(r);
    } else if (get || head) {
        r->op = get ? "GetObject" : "HeadObject";
        s3_object_get(r);
    } else if (put && s3_has_param(r, "uploadId")) {
        r->op = s3_header(r, "x-amz-copy-source") ? "UploadPartCopy" : "UploadPart";
        s3_multipart_upload_part(r);
    } else if (put) {
        r->op = s3_header(r, "x-amz-copy-source") ? "CopyObject" : "PutObject";
        s3_object_put(r);
    } else if (del && s3_has_param(r, "uploadId")) {
        r->op = "AbortMultipartUpload";
        s3_multipart_abort(r);
    } else if (del) {
        r->op = "DeleteObject";
        s3_object_delete(r);
    } else if (post && s3_has_param(r, "uploads")) {
        r->op = "CreateMultipartUpload";
        s3_multipart_create(r);
    } else if (post && s3_has_param(r, "uploadId")) {
        r->op = "CompleteMultipartUpload";
        s3_multipart_complete(r);
    } else {
        r->op = "Unsupported";
        s3_error(r, "MethodNotAllowed",
                 "The specified method is not allowed against this resource");
    }
}

static void answer_plain(SovHttpReq *req, S3Server *srv, bool metrics)
{
    if (!metrics) {
        sov_http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
        return;
    }
    SovBuf b = SOV_BUF_INIT;
    sov_metrics_render(&b);
    sov_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.ptr, b.len);
    sov_buf_release(&b);
}

/* POST /_sov/heal (what `sov s3 heal` sends): verifies and repairs every erasure-coded shard
 * on the thread pool and answers a JSON summary. Only for the holder of the token in
 * data_dir/admin.token (the operator on this machine): S3 accounts cannot ask for it. */
typedef struct HealJob {
    uv_work_t work;
    SovHttpReq *req;
    S3Server *srv;
    S3HealStats st;
    int status;
} HealJob;

static void heal_work(uv_work_t *w)
{
    HealJob *j = w->data;
    j->status = s3_store_heal_all(j->srv->store, &j->st);
}

static void heal_after(uv_work_t *w, int status)
{
    HealJob *j = w->data;
    char body[256];
    bool stopped = status == 0 && j->status == -ECANCELED;
    int n = snprintf(body, sizeof(body),
                     "{\"segments\": %" PRIu64 ", \"damaged\": %" PRIu64 ", \"healed\": %" PRIu64
                     ", \"lost\": %" PRIu64 ", \"error\": %s}\n",
                     j->st.segments, j->st.damaged, j->st.healed, j->st.lost,
                     stopped                       ? "\"the daemon is stopping: pass cut short\""
                     : status < 0 || j->status < 0 ? "\"the metadata could not be read\""
                                                   : "null");
    sov_http_respond(j->req,
                     stopped                       ? 503
                     : status < 0 || j->status < 0 ? 500
                                                   : 200,
                     "application/json", body, (size_t)n);
    sov_http_req_unref(j->req);
    free(j);
}

/* An operator request: POST with the token of data_dir/admin.token; else answers, false. */
static bool admin_allowed(SovHttpReq *req, S3Server *srv)
{
    SovStr tok = sov_http_req_header(req, "x-sov-admin-token");
    size_t tl = strlen(srv->admin_token);
    if (!sov_str_eq(sov_http_req_method(req), SOV_STR("POST"))) {
        sov_http_respond_error(req, 405, "POST only");
        return false;
    }
    if (!tl || !tok.ptr || tok.len != tl || CRYPTO_memcmp(tok.ptr, srv->admin_token, tl) != 0) {
        sov_http_respond_error(req, 403, "the admin token of this sov-s3 is required");
        return false;
    }
    return true;
}

static void admin_heal(SovHttpReq *req, S3Server *srv, uv_loop_t *loop)
{
    if (!admin_allowed(req, srv))
        return;
    HealJob *j = calloc(1, sizeof(*j));
    if (!j) {
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    j->work.data = j;
    j->req = req;
    j->srv = srv;
    sov_http_req_ref(req);
    if (uv_queue_work(loop, &j->work, heal_work, heal_after) < 0) {
        sov_http_req_unref(req);
        free(j);
        sov_http_respond_error(req, 503, "cannot start the repair");
    }
}

/* POST /_sov/rotate-key: a new current master key for SSE-S3 (new objects wrap their keys
 * under it; old ones keep theirs and still read). Rotation fsyncs: on the thread pool. */
typedef struct RotateJob {
    uv_work_t work;
    SovHttpReq *req;
    char kid[SSE_KID_LEN + 1];
    int status;
} RotateJob;

static void rotate_work(uv_work_t *w)
{
    RotateJob *j = w->data;
    SseKeyring *kr = s3_sse_keyring();
    j->status = kr ? sse_keyring_rotate(kr, j->kid) : -ENOKEY;
}

static void rotate_after(uv_work_t *w, int status)
{
    RotateJob *j = w->data;
    char body[96];
    if (status < 0 || j->status < 0) {
        log_error_errno(status < 0 ? status : j->status, "key rotation failed");
        sov_http_respond_error(j->req, 500, "the key could not be rotated");
    } else {
        int n = snprintf(body, sizeof(body), "{\"kid\": \"%s\"}\n", j->kid);
        log_info("master key rotated: kid=%s", j->kid);
        sov_http_respond(j->req, 200, "application/json", body, (size_t)n);
    }
    sov_http_req_unref(j->req);
    free(j);
}

static void admin_rotate(SovHttpReq *req, S3Server *srv, uv_loop_t *loop)
{
    if (!admin_allowed(req, srv))
        return;
    RotateJob *j = calloc(1, sizeof(*j));
    if (!j) {
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    j->work.data = j;
    j->req = req;
    sov_http_req_ref(req);
    if (uv_queue_work(loop, &j->work, rotate_work, rotate_after) < 0) {
        sov_http_req_unref(req);
        free(j);
        sov_http_respond_error(req, 503, "cannot start the rotation");
    }
}

void s3_handle(SovHttpReq *req, void *ud)
{
    S3Worker *w = ud;
    S3Server *srv = w->srv;
    S3Header hdrs[64];
    size_t nh = sov_http_req_header_count(req);
    SovStr path = sov_http_req_path(req), query = sov_http_req_query(req);
    SovBuf dec = SOV_BUF_INIT;
    int rc;

    sov_http_resp_header(req, "x-amz-request-id", sov_str(sov_http_req_id(req)));
    sov_http_resp_header(req, "Server", SOV_STR("sovcloud-s3"));
    if (sov_str_eq(path, SOV_STR("/_sov/heal"))) {
        admin_heal(req, srv, s3_loop_uv(w->loop));
        return;
    }
    if (sov_str_eq(path, SOV_STR("/_sov/rotate-key"))) {
        admin_rotate(req, srv, s3_loop_uv(w->loop));
        return;
    }
    S3Req *r = calloc(1, sizeof(*r));
    if (!r) {
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    sov_http_req_ref(req);
    r->http = req;
    r->srv = srv;
    r->loop = w->loop;
    r->start_ns = (int64_t)uv_hrtime();

    if (nh > ELEMENTSOF(hdrs)) {
        r->op = "Request";
        s3_error(r, "InvalidRequest", "Too many header fields");
        return;
    }
    for (size_t i = 0; i < nh; i++)
        sov_http_req_header_at(req, i, &hdrs[i].name, &hdrs[i].value);
    S3AuthRequest ar = {.method = sov_http_req_method(req),
                        .path = path,
                        .query = query,
                        .headers = hdrs,
                        .nheaders = nh,
                        .now = time(NULL)};
    rc = s3_sigv4_verify(&ar, srv->cfg.region, lookup_secret, srv, &r->auth);
    if (rc == 0 && r->auth.kind == S3_AUTH_ANONYMOUS &&
        (sov_str_eq(ar.method, SOV_STR("GET")) || sov_str_eq(ar.method, SOV_STR("HEAD"))) &&
        (sov_str_eq(path, SOV_STR("/healthz")) || sov_str_eq(path, SOV_STR("/metrics")))) {
        answer_plain(req, srv, sov_str_eq(path, SOV_STR("/metrics")));
        free(r);
        sov_http_req_unref(req);
        return;
    }
    r->op = "Authenticate";
    if (rc < 0) {
        s3_error_status(r, r->auth.http_status ? r->auth.http_status : 403,
                        r->auth.error_code ? r->auth.error_code : "AccessDenied",
                        r->auth.message[0] ? r->auth.message : "Access Denied");
        return;
    }
    /* An anonymous request goes on with no key: only what a bucket policy or ACL grants
     * everyone is allowed (s3_access_check). */
    r->key = r->auth.kind == S3_AUTH_ANONYMOUS ? NULL : s3_find_key(srv, r->auth.access_key);
    if (!r->key && r->auth.kind != S3_AUTH_ANONYMOUS) {
        s3_error(r, "InvalidAccessKeyId",
                 "The AWS Access Key Id you provided does not exist in our records.");
        return;
    }
    r->op = "Request";
    rc = parse_query(r, query);
    if (rc == -E2BIG) {
        s3_error(r, "InvalidArgument", "Too many query parameters");
        return;
    } else if (rc < 0) {
        s3_error(r, "InvalidURI", "Couldn't parse the specified URI.");
        return;
    }
    if (s3_uri_decode(&dec, path, false) < 0 || !dec.len || dec.ptr[0] != '/') {
        sov_buf_release(&dec);
        s3_error(r, "InvalidURI", "Couldn't parse the specified URI.");
        return;
    }
    const char *p = dec.ptr + 1;
    size_t left = dec.len - 1;
    r->bucket = vhost_bucket(r);
    if (!r->bucket && left) {
        const char *slash = memchr(p, '/', left);
        size_t bl = slash ? (size_t)(slash - p) : left;
        r->bucket = strndup(p, bl);
        p += bl;
        left -= bl;
        if (left) {
            p++;
            left--;
        }
    }
    if (left)
        r->key_name = strndup(p, left);
    sov_buf_release(&dec);
    if (r->bucket && (!r->bucket[0] || strlen(r->bucket) > 255)) {
        s3_error(r, "InvalidBucketName", "The specified bucket is not valid.");
        return;
    }
    if (r->key_name) {
        if (strlen(r->key_name) > S3_MAX_KEY || left != strlen(r->key_name)) {
            s3_error(r, strlen(r->key_name) > S3_MAX_KEY ? "KeyTooLongError" : "InvalidURI",
                     "Your key is too long or not valid.");
            return;
        }
        if (!valid_utf8((const unsigned char *)r->key_name, left)) {
            s3_error(r, "InvalidURI", "Object keys must be valid UTF-8.");
            return;
        }
    }
    dispatch(r);
}
