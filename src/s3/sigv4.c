/* SPDX-License-Identifier: Apache-2.0 */
/* Verification of AWS Signature Version 4 requests for sov-s3, written from the AWS S3 API
 * reference: the Authorization header form and the presigned (query string) form. The canonical
 * request is rebuilt from the raw path, query and headers the caller passes; everything a client
 * controls is bounded before it is used, and every refusal carries the S3 error code. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sov/buf.h"
#include "sov/crypto.h"
#include "sov/macro.h"
#include "sigv4.h"

#define SIGV4_ALGORITHM  "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR "aws4_request"
#define SIGV4_SERVICE    "s3"

/* Limits on what a client sends. Real requests stay far below them: S3 keys are at most 1024
 * bytes, SDKs sign a dozen headers and presigned URLs carry about ten parameters. */
#define SIGV4_MAX_AUTH_HEADER    4096
#define SIGV4_MAX_SIGNED_HEADERS 64
#define SIGV4_MAX_HEADER_NAME    128
#define SIGV4_MAX_HEADER_VALUE   16384
#define SIGV4_MAX_METHOD         32
#define SIGV4_MAX_PATH           8192
#define SIGV4_MAX_QUERY          16384
#define SIGV4_MAX_QUERY_PARAMS   100
#define SIGV4_MAX_REGION         64
#define SIGV4_MAX_CANONICAL      (256 * 1024)

typedef enum SigMode { SIG_HEADER, SIG_PRESIGNED } SigMode;

/* One query parameter: the decoded name and value (for the X-Amz-* parameters of a presigned
 * URL) and their canonical re-encoding. All four point into Query.pool. */
typedef struct QueryParam {
    SovStr name;
    SovStr value;
    SovStr ename;
    SovStr evalue;
} QueryParam;

/* The parsed query. Invariant: n <= SIGV4_MAX_QUERY_PARAMS and every view in p points into pool,
 * which does not change once query_parse() returned. */
typedef struct Query {
    QueryParam p[SIGV4_MAX_QUERY_PARAMS];
    size_t n;
    SovBuf pool;
} Query;

/* The signature parameters of either form, as views into the Authorization header or the
 * query pool. */
typedef struct SigParams {
    SovStr credential; /* AK/YYYYMMDD/region/s3/aws4_request */
    SovStr signed_headers;
    SovStr signature;
    SovStr date;    /* X-Amz-Date (presigned only) */
    SovStr expires; /* X-Amz-Expires (presigned only) */
} SigParams;

typedef struct Scope {
    SovStr access_key;
    SovStr date;
    SovStr region;
    SovStr service;
    SovStr terminator;
} Scope;

_printf_(5, 6) static int auth_fail(S3AuthResult *res, int r, const char *code, int status,
                                    const char *fmt, ...)
{
    va_list ap;

    res->error_code = code;
    res->http_status = status;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    return r;
}

#define FAIL_400(res, code, ...) auth_fail(res, -EINVAL, code, 400, __VA_ARGS__)
#define FAIL_403(res, code, ...) auth_fail(res, -EACCES, code, 403, __VA_ARGS__)
#define FAIL_501(res, ...)       auth_fail(res, -ENOTSUP, "NotImplemented", 501, __VA_ARGS__)

/* The error code for a malformed signature parameter depends on where it came from. */
static const char *malformed_code(SigMode mode)
{
    return mode == SIG_HEADER ? "AuthorizationHeaderMalformed"
                              : "AuthorizationQueryParametersError";
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int s3_uri_encode(SovBuf *out, SovStr s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    int r;

    while (i < s.len) {
        size_t run = i;
        while (run < s.len &&
               (is_unreserved((unsigned char)s.ptr[run]) || (keep_slash && s.ptr[run] == '/')))
            run++;
        if (run > i) {
            r = sov_buf_append(out, s.ptr + i, run - i);
            if (r < 0)
                return r;
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s.ptr[i++];
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        r = sov_buf_append(out, esc, sizeof(esc));
        if (r < 0)
            return r;
    }
    return 0;
}

int s3_uri_decode(SovBuf *out, SovStr s, bool plus_is_space)
{
    size_t i = 0;
    int r;

    while (i < s.len) {
        size_t run = i;
        while (run < s.len && s.ptr[run] != '%' && s.ptr[run] != '\0' &&
               !(plus_is_space && s.ptr[run] == '+'))
            run++;
        if (run > i) {
            r = sov_buf_append(out, s.ptr + i, run - i);
            if (r < 0)
                return r;
            i = run;
            continue;
        }
        if (s.ptr[i] == '\0')
            return -EINVAL;
        if (s.ptr[i] == '+') {
            r = sov_buf_putc(out, ' ');
            i++;
        } else {
            int hi, lo;
            if (s.len - i < 3)
                return -EINVAL;
            hi = hexval((unsigned char)s.ptr[i + 1]);
            lo = hexval((unsigned char)s.ptr[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            r = sov_buf_putc(out, (char)(hi << 4 | lo));
            i += 3;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static SovStr str_trim(SovStr s)
{
    while (s.len > 0 && is_ws(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && is_ws(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* Splits s at the first sep: ret_head gets what is before it, s what is after (empty when sep
 * is absent). Returns whether sep was found. */
static bool str_split(SovStr *s, char sep, SovStr *ret_head)
{
    const char *p = s->len ? memchr(s->ptr, sep, s->len) : NULL;

    if (!p) {
        *ret_head = *s;
        *s = (SovStr){s->ptr ? s->ptr + s->len : NULL, 0};
        return false;
    }
    *ret_head = (SovStr){s->ptr, (size_t)(p - s->ptr)};
    s->len -= (size_t)(p - s->ptr) + 1;
    s->ptr = p + 1;
    return true;
}

/* Whether s is made of printable ASCII without spaces and at most max bytes long: only such
 * client values are echoed into error messages. */
static bool str_printable(SovStr s, size_t max)
{
    if (s.len == 0 || s.len > max)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] <= 0x20 || (unsigned char)s.ptr[i] >= 0x7f)
            return false;
    return true;
}

/* Finds the request header called name (case-insensitively). Returns how many there are (each
 * one counted) and the first in ret_value. */
static size_t header_find(const S3AuthRequest *rq, SovStr name, SovStr *ret_value)
{
    size_t count = 0;

    for (size_t i = 0; i < rq->nheaders; i++) {
        if (!sov_str_eq_ci(rq->headers[i].name, name))
            continue;
        if (count++ == 0 && ret_value)
            *ret_value = rq->headers[i].value;
    }
    return count;
}

static int digits(const char *p, size_t n, bool *ok)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            *ok = false;
            return 0;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Converts broken-down UTC time, refusing fields that timegm() would silently carry over
 * (February 30th, hour 24). */
static int tm_to_time(struct tm *tm, time_t *ret)
{
    struct tm want = *tm, back;
    time_t t = 0;

    if (tm->tm_year < 70 || tm->tm_year > 8099 || tm->tm_mon < 0 || tm->tm_mon > 11 ||
        tm->tm_mday < 1 || tm->tm_mday > 31 || tm->tm_hour > 23 || tm->tm_min > 59 ||
        tm->tm_sec > 59)
        return -EINVAL;
    t = timegm(tm);
    if (t == (time_t)-1 || !gmtime_r(&t, &back))
        return -EINVAL;
    if (back.tm_year != want.tm_year || back.tm_mon != want.tm_mon ||
        back.tm_mday != want.tm_mday || back.tm_hour != want.tm_hour ||
        back.tm_min != want.tm_min || back.tm_sec != want.tm_sec)
        return -EINVAL;
    *ret = t;
    return 0;
}

/* ISO 8601 basic format as SigV4 uses it: YYYYMMDDTHHMMSSZ. */
static int parse_amz_date(SovStr s, time_t *ret)
{
    struct tm tm = {0};
    bool ok = true;

    if (s.len != 16 || s.ptr[8] != 'T' || s.ptr[15] != 'Z')
        return -EINVAL;
    tm.tm_year = digits(s.ptr, 4, &ok) - 1900;
    tm.tm_mon = digits(s.ptr + 4, 2, &ok) - 1;
    tm.tm_mday = digits(s.ptr + 6, 2, &ok);
    tm.tm_hour = digits(s.ptr + 9, 2, &ok);
    tm.tm_min = digits(s.ptr + 11, 2, &ok);
    tm.tm_sec = digits(s.ptr + 13, 2, &ok);
    if (!ok)
        return -EINVAL;
    return tm_to_time(&tm, ret);
}

/* RFC 1123 as HTTP's Date header has it: "Fri, 24 May 2013 00:00:00 GMT". */
static int parse_http_date(SovStr s, time_t *ret)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm = {0};
    bool ok = true;
    int mon = -1;

    if (s.len != 29 || s.ptr[3] != ',' || s.ptr[4] != ' ' || s.ptr[7] != ' ' || s.ptr[11] != ' ' ||
        s.ptr[16] != ' ' || s.ptr[19] != ':' || s.ptr[22] != ':' ||
        memcmp(s.ptr + 25, " GMT", 4) != 0)
        return -EINVAL;
    for (int i = 0; i < 12; i++)
        if (memcmp(s.ptr + 8, months + 3 * i, 3) == 0)
            mon = i;
    if (mon < 0)
        return -EINVAL;
    tm.tm_mon = mon;
    tm.tm_mday = digits(s.ptr + 5, 2, &ok);
    tm.tm_year = digits(s.ptr + 12, 4, &ok) - 1900;
    tm.tm_hour = digits(s.ptr + 17, 2, &ok);
    tm.tm_min = digits(s.ptr + 20, 2, &ok);
    tm.tm_sec = digits(s.ptr + 23, 2, &ok);
    if (!ok)
        return -EINVAL;
    return tm_to_time(&tm, ret);
}

static void format_amz_date(time_t t, char out[17])
{
    struct tm tm;

    /* t came from a parsed date, so the year has four digits. */
    if (!gmtime_r(&t, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        out[0] = '\0';
}

static void query_release(Query *q)
{
    sov_buf_release(&q->pool);
}

/* Splits the raw query at '&', decodes each name and value ('+' is a space, as HTML forms and
 * S3 have it) and re-encodes them the AWS way for the canonical query. */
static int query_parse(Query *q, SovStr raw, S3AuthResult *res)
{
    struct {
        size_t off[4], len[4];
    } pieces[SIGV4_MAX_QUERY_PARAMS];
    SovBuf scratch;
    SovStr rest = raw;
    int r = 0;

    q->n = 0;
    sov_buf_init(&q->pool, SIGV4_MAX_QUERY * 8);
    sov_buf_init(&scratch, SIGV4_MAX_QUERY);
    if (raw.len > SIGV4_MAX_QUERY) {
        r = FAIL_400(res, "InvalidArgument", "The query string is longer than %d bytes",
                     SIGV4_MAX_QUERY);
        goto out;
    }
    while (rest.len > 0) {
        SovStr item, name, value;
        SovStr parts[2];

        str_split(&rest, '&', &item);
        if (item.len == 0)
            continue;
        if (q->n == SIGV4_MAX_QUERY_PARAMS) {
            r = FAIL_400(res, "InvalidArgument", "The query string has more than %d parameters",
                         SIGV4_MAX_QUERY_PARAMS);
            goto out;
        }
        value = item;
        str_split(&value, '=', &name);
        parts[0] = name;
        parts[1] = value;
        for (size_t k = 0; k < 2; k++) {
            sov_buf_reset(&scratch);
            r = s3_uri_decode(&scratch, parts[k], true);
            if (r == -EINVAL) {
                r = FAIL_400(res, "InvalidArgument", "The query string has a bad %%-escape");
                goto out;
            }
            if (r < 0)
                goto oom;
            pieces[q->n].off[2 * k] = q->pool.len;
            r = sov_buf_append(&q->pool, scratch.ptr ? scratch.ptr : "", scratch.len);
            if (r < 0)
                goto oom;
            pieces[q->n].len[2 * k] = scratch.len;
            pieces[q->n].off[2 * k + 1] = q->pool.len;
            r = s3_uri_encode(&q->pool, sov_buf_str(&scratch), false);
            if (r < 0)
                goto oom;
            pieces[q->n].len[2 * k + 1] = q->pool.len - pieces[q->n].off[2 * k + 1];
        }
        q->n++;
    }
    /* The pool is complete: the views can point into it now. */
    for (size_t i = 0; i < q->n; i++) {
        SovStr v[4];
        for (size_t k = 0; k < 4; k++)
            v[k] = (SovStr){q->pool.ptr + pieces[i].off[k], pieces[i].len[k]};
        q->p[i] = (QueryParam){.name = v[0], .ename = v[1], .value = v[2], .evalue = v[3]};
    }
    r = 0;
    goto out;
oom:
    r = auth_fail(res, r == -E2BIG ? -EINVAL : r, r == -E2BIG ? "InvalidArgument" : "InternalError",
                  r == -E2BIG ? 400 : 500, "The query string could not be processed");
out:
    sov_buf_release(&scratch);
    return r;
}

static int str_cmp(SovStr a, SovStr b)
{
    size_t n = SOV_MIN(a.len, b.len);
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;

    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int param_cmp(const void *a, const void *b)
{
    const QueryParam *x = *(const QueryParam *const *)a, *y = *(const QueryParam *const *)b;
    int c = str_cmp(x->ename, y->ename);

    return c != 0 ? c : str_cmp(x->evalue, y->evalue);
}

/* Appends the canonical query: parameters sorted by encoded name, then value, joined by '&',
 * without X-Amz-Signature for a presigned URL. */
static int canonical_query(SovBuf *out, const Query *q, SigMode mode)
{
    const QueryParam *sorted[SIGV4_MAX_QUERY_PARAMS];
    size_t n = 0;
    int r;

    for (size_t i = 0; i < q->n; i++) {
        if (mode == SIG_PRESIGNED && sov_str_eq(q->p[i].name, SOV_STR("X-Amz-Signature")))
            continue;
        sorted[n++] = &q->p[i];
    }
    if (n > 1)
        qsort(sorted, n, sizeof(sorted[0]), param_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (r = sov_buf_putc(out, '&')) < 0)
            return r;
        if ((r = sov_buf_append_str(out, sorted[i]->ename)) < 0 ||
            (r = sov_buf_putc(out, '=')) < 0 ||
            (r = sov_buf_append_str(out, sorted[i]->evalue)) < 0)
            return r;
    }
    return 0;
}

/* Appends a header value with leading and trailing blanks removed and inner runs of blanks
 * turned into one space. */
static int append_header_value(SovBuf *out, SovStr v)
{
    size_t i = 0;
    int r;

    v = str_trim(v);
    while (i < v.len) {
        size_t run = i;
        while (run < v.len && !is_ws(v.ptr[run]))
            run++;
        if ((r = sov_buf_append(out, v.ptr + i, run - i)) < 0)
            return r;
        if (run == v.len)
            break;
        while (run < v.len && is_ws(v.ptr[run]))
            run++;
        if ((r = sov_buf_putc(out, ' ')) < 0)
            return r;
        i = run;
    }
    return 0;
}

static bool is_header_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Parses the ';'-separated list of signed header names: lowercase tokens in strictly ascending
 * order, as SigV4 requires them, host among them. */
static int parse_signed_headers(SovStr list, SovStr *names, size_t *ret_n, SigMode mode,
                                S3AuthResult *res)
{
    const char *code = malformed_code(mode);
    SovStr rest = list;
    size_t n = 0;
    bool host = false;

    if (list.len == 0)
        return FAIL_400(res, code, "The list of signed headers is empty");
    for (;;) {
        SovStr name;
        bool more = str_split(&rest, ';', &name);

        if (n == SIGV4_MAX_SIGNED_HEADERS)
            return FAIL_400(res, code, "More than %d signed headers", SIGV4_MAX_SIGNED_HEADERS);
        if (name.len == 0 || name.len > SIGV4_MAX_HEADER_NAME)
            return FAIL_400(res, code, "A signed header name is empty or too long");
        for (size_t i = 0; i < name.len; i++)
            if (!is_header_name_char((unsigned char)name.ptr[i]))
                return FAIL_400(res, code,
                                "Signed header names must be lowercase HTTP field names");
        if (n > 0 && str_cmp(names[n - 1], name) >= 0)
            return FAIL_400(res, code, "Signed header names must be sorted and unique");
        if (sov_str_eq(name, SOV_STR("host")))
            host = true;
        names[n++] = name;
        if (!more)
            break;
    }
    if (!host)
        return FAIL_400(res, code, "The host header must be signed");
    *ret_n = n;
    return 0;
}

static bool signed_has(const SovStr *names, size_t n, SovStr name)
{
    for (size_t i = 0; i < n; i++)
        if (sov_str_eq_ci(names[i], name))
            return true;
    return false;
}

/* Appends "name:value\n" for every signed header, values of repeated headers joined by ','. */
static int canonical_headers(SovBuf *out, const S3AuthRequest *rq, const SovStr *names, size_t n,
                             S3AuthResult *res)
{
    int r;

    for (size_t i = 0; i < n; i++) {
        bool first = true;

        if ((r = sov_buf_append_str(out, names[i])) < 0 || (r = sov_buf_putc(out, ':')) < 0)
            return r;
        for (size_t h = 0; h < rq->nheaders; h++) {
            if (!sov_str_eq_ci(rq->headers[h].name, names[i]))
                continue;
            if (rq->headers[h].value.len > SIGV4_MAX_HEADER_VALUE)
                return FAIL_400(res, "InvalidArgument", "A signed header is longer than %d bytes",
                                SIGV4_MAX_HEADER_VALUE);
            if (!first && (r = sov_buf_putc(out, ',')) < 0)
                return r;
            if ((r = append_header_value(out, rq->headers[h].value)) < 0)
                return r;
            first = false;
        }
        if ((r = sov_buf_putc(out, '\n')) < 0)
            return r;
    }
    return 0;
}

/* Splits "Credential=..., SignedHeaders=..., Signature=..." (in any order, blanks allowed around
 * the commas) after the algorithm name. */
static int parse_auth_header(SovStr value, SigParams *ret, S3AuthResult *res)
{
    static const char code[] = "AuthorizationHeaderMalformed";
    SovStr rest;
    SigParams p = {0};
    bool have_cred = false, have_sh = false, have_sig = false;

    value = str_trim(value);
    if (value.len > SIGV4_MAX_AUTH_HEADER)
        return FAIL_400(res, code, "The authorization header is longer than %d bytes",
                        SIGV4_MAX_AUTH_HEADER);
    if (!sov_str_has_prefix(value, SOV_STR(SIGV4_ALGORITHM)) ||
        (value.len > strlen(SIGV4_ALGORITHM) && !is_ws(value.ptr[strlen(SIGV4_ALGORITHM)]))) {
        if (sov_str_has_prefix(value, SOV_STR("AWS ")))
            return FAIL_400(res, "InvalidArgument",
                            "Signature Version 2 is not supported; use AWS4-HMAC-SHA256");
        return FAIL_400(res, "InvalidArgument", "Unsupported Authorization Type");
    }
    rest = str_trim(
        (SovStr){value.ptr + strlen(SIGV4_ALGORITHM), value.len - strlen(SIGV4_ALGORITHM)});
    if (rest.len == 0)
        return FAIL_400(res, code, "The authorization header is malformed; it has no parameters");
    while (rest.len > 0) {
        SovStr item, key, val;
        SovStr *slot;
        bool *seen;

        str_split(&rest, ',', &item);
        item = str_trim(item);
        if (item.len == 0)
            continue;
        val = item;
        if (!str_split(&val, '=', &key))
            return FAIL_400(res, code,
                            "The authorization header is malformed; a parameter has no '='");
        if (sov_str_eq(key, SOV_STR("Credential"))) {
            slot = &p.credential;
            seen = &have_cred;
        } else if (sov_str_eq(key, SOV_STR("SignedHeaders"))) {
            slot = &p.signed_headers;
            seen = &have_sh;
        } else if (sov_str_eq(key, SOV_STR("Signature"))) {
            slot = &p.signature;
            seen = &have_sig;
        } else {
            return FAIL_400(res, code, "The authorization header is malformed; unknown parameter");
        }
        if (*seen)
            return FAIL_400(res, code,
                            "The authorization header is malformed; a parameter is repeated");
        *seen = true;
        *slot = val;
    }
    if (!have_cred || !have_sh || !have_sig)
        return FAIL_400(res, code,
                        "The authorization header is malformed; it needs Credential, "
                        "SignedHeaders and Signature");
    *ret = p;
    return 0;
}

/* Collects the X-Amz-* parameters of a presigned URL (decoded), each at most once. */
static int parse_presigned(const Query *q, SigParams *ret, S3AuthResult *res)
{
    static const char code[] = "AuthorizationQueryParametersError";
    SovStr algorithm = SOV_STR_NULL;
    SigParams p = {0};
    struct {
        const char *name;
        SovStr *slot;
    } want[] = {
        {"X-Amz-Algorithm", &algorithm},
        {"X-Amz-Credential", &p.credential},
        {"X-Amz-Date", &p.date},
        {"X-Amz-Expires", &p.expires},
        {"X-Amz-SignedHeaders", &p.signed_headers},
        {"X-Amz-Signature", &p.signature},
    };
    bool seen[ELEMENTSOF(want)] = {false};

    for (size_t i = 0; i < q->n; i++) {
        if (sov_str_eq(q->p[i].name, SOV_STR("X-Amz-Security-Token")))
            return FAIL_501(res, "Temporary security credentials (X-Amz-Security-Token) are not "
                                 "supported");
        for (size_t k = 0; k < ELEMENTSOF(want); k++) {
            if (!sov_str_eq(q->p[i].name, sov_str(want[k].name)))
                continue;
            if (seen[k])
                return FAIL_400(res, code, "The query parameter %s is repeated", want[k].name);
            seen[k] = true;
            *want[k].slot = q->p[i].value;
        }
    }
    for (size_t k = 0; k < ELEMENTSOF(want); k++)
        if (!seen[k])
            return FAIL_400(res, code,
                            "Query-string authentication version 4 requires the "
                            "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                            "X-Amz-SignedHeaders, and X-Amz-Expires parameters.");
    if (!sov_str_eq(algorithm, SOV_STR(SIGV4_ALGORITHM)))
        return FAIL_400(res, code, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"");
    *ret = p;
    return 0;
}

static bool is_access_key_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '/' && c != ',' && c != ';' && c != '=' && c != '"';
}

/* Splits and checks the credential: access key, the request's date, the server's region, s3
 * and aws4_request. */
static int parse_credential(SovStr cred, const char *amz_date, const char *region, SigMode mode,
                            Scope *ret, S3AuthResult *res)
{
    const char *code = malformed_code(mode);
    const char *what = mode == SIG_HEADER ? "The authorization header is malformed"
                                          : "Error parsing the X-Amz-Credential parameter";
    SovStr rest = cred;
    Scope s;

    if (!str_split(&rest, '/', &s.access_key) || !str_split(&rest, '/', &s.date) ||
        !str_split(&rest, '/', &s.region) || !str_split(&rest, '/', &s.service) ||
        str_split(&rest, '/', &s.terminator))
        return FAIL_400(res, code,
                        "%s; the Credential is mal-formed; expecting "
                        "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
                        what);
    if (s.access_key.len == 0 || s.access_key.len > S3_ACCESS_KEY_MAX)
        return FAIL_403(res, "InvalidAccessKeyId",
                        "The AWS Access Key Id you provided does not exist in our records.");
    for (size_t i = 0; i < s.access_key.len; i++)
        if (!is_access_key_char((unsigned char)s.access_key.ptr[i]))
            return FAIL_403(res, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.");
    if (s.date.len != 8 || memcmp(s.date.ptr, amz_date, 8) != 0)
        return FAIL_400(res, code, "%s; Invalid credential date. Date is not the same as %s.", what,
                        mode == SIG_HEADER ? "the request date" : "X-Amz-Date");
    if (!sov_str_eq(s.region, sov_str(region))) {
        if (str_printable(s.region, SIGV4_MAX_REGION))
            return FAIL_400(res, code, "%s; the region '" SOV_STR_FMT "' is wrong; expecting '%s'",
                            what, SOV_STR_ARG(s.region), region);
        return FAIL_400(res, code, "%s; the region is wrong; expecting '%s'", what, region);
    }
    if (!sov_str_eq(s.service, SOV_STR(SIGV4_SERVICE)))
        return FAIL_400(res, code, "%s; incorrect service; expecting 's3'", what);
    if (!sov_str_eq(s.terminator, SOV_STR(SIGV4_TERMINATOR)))
        return FAIL_400(res, code, "%s; incorrect terminal; expecting 'aws4_request'", what);
    *ret = s;
    return 0;
}

/* Reads x-amz-content-sha256 into res->payload (header form only). */
static int parse_payload(const S3AuthRequest *rq, S3AuthResult *res)
{
    static const char *const unsupported[] = {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD",
    };
    SovStr v = SOV_STR_NULL;
    size_t n = header_find(rq, SOV_STR("x-amz-content-sha256"), &v);

    if (n == 0)
        return FAIL_400(res, "MissingSecurityHeader",
                        "Your request was missing a required header: x-amz-content-sha256");
    if (n > 1)
        return FAIL_400(res, "InvalidArgument", "The x-amz-content-sha256 header is repeated");
    v = str_trim(v);
    if (sov_str_eq(v, SOV_STR("UNSIGNED-PAYLOAD"))) {
        res->payload = S3_PAYLOAD_UNSIGNED;
        return 0;
    }
    if (sov_str_eq(v, SOV_STR("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"))) {
        res->payload = S3_PAYLOAD_STREAMING;
        return 0;
    }
    if (sov_str_eq(v, SOV_STR("STREAMING-UNSIGNED-PAYLOAD-TRAILER"))) {
        res->payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(unsupported); i++)
        if (sov_str_eq(v, sov_str(unsupported[i])))
            return FAIL_501(res, "x-amz-content-sha256: %s is not implemented", unsupported[i]);
    if (v.len == 64) {
        bool hex = true;
        for (size_t i = 0; i < 64; i++)
            if (hexval((unsigned char)v.ptr[i]) < 0)
                hex = false;
        if (hex) {
            for (size_t i = 0; i < 64; i++)
                res->payload_sha256[i] = (char)(v.ptr[i] | 0x20); /* lowercase */
            res->payload_sha256[64] = '\0';
            res->payload = S3_PAYLOAD_SHA256;
            return 0;
        }
    }
    return FAIL_400(res, "InvalidArgument",
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a "
                    "hex SHA-256");
}

/* For STREAMING-UNSIGNED-PAYLOAD-TRAILER: the checksum x-amz-trailer announces. */
static int parse_trailer(const S3AuthRequest *rq, S3AuthResult *res)
{
    static const char *const known[] = {
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha256",
    };
    SovStr v = SOV_STR_NULL;
    size_t n = header_find(rq, SOV_STR("x-amz-trailer"), &v);

    res->trailer[0] = '\0';
    if (n == 0)
        return 0;
    v = str_trim(v);
    if (n > 1 || v.len == 0)
        return FAIL_400(res, "InvalidRequest", "The x-amz-trailer header must name one checksum");
    for (size_t i = 0; i < ELEMENTSOF(known); i++) {
        if (sov_str_eq_ci(v, sov_str(known[i]))) {
            snprintf(res->trailer, sizeof(res->trailer), "%s", known[i]);
            return 0;
        }
    }
    if (sov_str_eq_ci(v, SOV_STR("x-amz-checksum-sha1")))
        return FAIL_501(res, "The x-amz-checksum-sha1 trailer is not implemented");
    return FAIL_400(res, "InvalidRequest",
                    "The value specified in the x-amz-trailer header is not supported");
}

/* Signing keys change once a day per secret and region: each thread keeps the last few, which
 * saves four of the five HMACs a request costs. */
typedef struct KeyCacheEntry {
    char secret[S3_SECRET_MAX + 1];
    char date[9];
    char region[64];
    uint8_t key[SOV_SHA256_LEN];
} KeyCacheEntry;
static _Thread_local KeyCacheEntry key_cache[8];
static _Thread_local unsigned key_cache_next;

static int derive_signing_key_uncached(const char *secret, SovStr date, const char *region,
                                       uint8_t ret[SOV_SHA256_LEN]);

static int derive_signing_key(const char *secret, SovStr date, const char *region,
                              uint8_t ret[SOV_SHA256_LEN])
{
    size_t sl = strlen(secret), rl = strlen(region);
    bool cacheable = date.len == 8 && sl <= S3_SECRET_MAX && rl < sizeof(key_cache[0].region);
    for (size_t i = 0; cacheable && i < ELEMENTSOF(key_cache); i++) {
        KeyCacheEntry *e = &key_cache[i];
        if (e->date[0] && memcmp(e->date, date.ptr, 8) == 0 && strcmp(e->region, region) == 0 &&
            strlen(e->secret) == sl && sov_memeq_ct(e->secret, secret, sl)) {
            memcpy(ret, e->key, SOV_SHA256_LEN);
            return 0;
        }
    }
    int r = derive_signing_key_uncached(secret, date, region, ret);
    if (r < 0 || !cacheable)
        return r;
    KeyCacheEntry *e = &key_cache[key_cache_next++ % ELEMENTSOF(key_cache)];
    memcpy(e->secret, secret, sl + 1);
    memcpy(e->date, date.ptr, 8);
    e->date[8] = '\0';
    memcpy(e->region, region, rl + 1);
    memcpy(e->key, ret, SOV_SHA256_LEN);
    return 0;
}

static int derive_signing_key_uncached(const char *secret, SovStr date, const char *region,
                                       uint8_t ret[SOV_SHA256_LEN])
{
    char k0[4 + S3_SECRET_MAX + 1];
    uint8_t k[SOV_SHA256_LEN];
    int n, r;

    n = snprintf(k0, sizeof(k0), "AWS4%s", secret);
    if (n < 0 || (size_t)n >= sizeof(k0))
        return -EINVAL;
    r = sov_hmac_sha256(k0, (size_t)n, date.ptr, date.len, k);
    if (r >= 0)
        r = sov_hmac_sha256(k, sizeof(k), region, strlen(region), k);
    if (r >= 0)
        r = sov_hmac_sha256(k, sizeof(k), SIGV4_SERVICE, strlen(SIGV4_SERVICE), k);
    if (r >= 0)
        r = sov_hmac_sha256(k, sizeof(k), SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR), ret);
    explicit_bzero(k0, sizeof(k0));
    explicit_bzero(k, sizeof(k));
    return r;
}

/* Builds the canonical request into cr. */
static int build_canonical_request(SovBuf *cr, const S3AuthRequest *rq, const Query *q,
                                   SigMode mode, const SovStr *names, size_t nnames,
                                   SovStr signed_headers, const char *payload_hash,
                                   S3AuthResult *res)
{
    SovBuf path;
    int r;

    if ((r = sov_buf_append_str(cr, rq->method)) < 0 || (r = sov_buf_putc(cr, '\n')) < 0)
        goto fail;

    sov_buf_init(&path, SIGV4_MAX_PATH);
    r = s3_uri_decode(&path, rq->path, false);
    if (r == 0)
        r = s3_uri_encode(cr, path.len ? sov_buf_str(&path) : SOV_STR("/"), true);
    sov_buf_release(&path);
    if (r == -EINVAL)
        return FAIL_400(res, "InvalidArgument", "The request path has a bad %%-escape");
    if (r < 0 || (r = sov_buf_putc(cr, '\n')) < 0)
        goto fail;

    if ((r = canonical_query(cr, q, mode)) < 0 || (r = sov_buf_putc(cr, '\n')) < 0)
        goto fail;
    r = canonical_headers(cr, rq, names, nnames, res);
    if (r == -EINVAL)
        return r;
    if (r < 0 || (r = sov_buf_putc(cr, '\n')) < 0)
        goto fail;
    if ((r = sov_buf_append_str(cr, signed_headers)) < 0 || (r = sov_buf_putc(cr, '\n')) < 0 ||
        (r = sov_buf_puts(cr, payload_hash)) < 0)
        goto fail;
    return 0;
fail:
    if (r == -E2BIG)
        return FAIL_400(res, "InvalidArgument", "The request is too large to be authenticated");
    return auth_fail(res, r, "InternalError", 500, "Out of memory while checking the signature");
}

static int verify(const S3AuthRequest *rq, const char *region, S3SecretLookup lookup, void *ud,
                  S3AuthResult *res, Query *q, SovBuf *cr)
{
    SovStr names[SIGV4_MAX_SIGNED_HEADERS];
    size_t nnames = 0;
    SovStr auth = SOV_STR_NULL;
    size_t nauth;
    bool presigned = false, v2 = false, v2_sig = false;
    SigMode mode;
    SigParams sp = {0};
    Scope scope = {0};
    time_t t = 0;
    char secret[S3_SECRET_MAX + 1];
    char sts[256];
    uint8_t digest[SOV_SHA256_LEN], key[SOV_SHA256_LEN], mac[SOV_SHA256_LEN];
    char hex[65], got[65], payload_buf[65];
    const char *payload_hash;
    int r, n;

    if (!region || strlen(region) == 0 || strlen(region) > SIGV4_MAX_REGION)
        return auth_fail(res, -EINVAL, "InternalError", 500, "The server's region is not set");
    if (rq->method.len == 0 || rq->method.len > SIGV4_MAX_METHOD)
        return FAIL_400(res, "InvalidArgument", "Bad request method");
    if (rq->path.len > SIGV4_MAX_PATH)
        return FAIL_400(res, "InvalidArgument", "The request path is longer than %d bytes",
                        SIGV4_MAX_PATH);

    nauth = header_find(rq, SOV_STR("authorization"), &auth);
    if ((r = query_parse(q, rq->query, res)) < 0)
        return r;
    for (size_t i = 0; i < q->n; i++) {
        SovStr name = q->p[i].name;
        if (sov_str_eq(name, SOV_STR("X-Amz-Algorithm")) ||
            sov_str_eq(name, SOV_STR("X-Amz-Credential")) ||
            sov_str_eq(name, SOV_STR("X-Amz-Signature")))
            presigned = true;
        else if (sov_str_eq(name, SOV_STR("AWSAccessKeyId")))
            v2 = true;
        else if (sov_str_eq(name, SOV_STR("Signature")))
            v2_sig = true;
    }
    if (nauth == 0 && !presigned) {
        if (v2 && v2_sig)
            return FAIL_400(res, "InvalidArgument",
                            "Signature Version 2 is not supported; use AWS4-HMAC-SHA256");
        res->kind = S3_AUTH_ANONYMOUS;
        return 0;
    }
    if (nauth > 1)
        return FAIL_400(res, "InvalidArgument", "The Authorization header is repeated");
    if (nauth == 1 && presigned)
        return FAIL_400(res, "InvalidArgument",
                        "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                        "parameter or the Authorization header should be specified");
    mode = presigned ? SIG_PRESIGNED : SIG_HEADER;
    r = mode == SIG_HEADER ? parse_auth_header(auth, &sp, res) : parse_presigned(q, &sp, res);
    if (r < 0)
        return r;
    if (header_find(rq, SOV_STR("x-amz-security-token"), NULL) > 0)
        return FAIL_501(res, "Temporary security credentials (x-amz-security-token) are not "
                             "supported");

    /* The request date. */
    if (mode == SIG_PRESIGNED) {
        if (parse_amz_date(sp.date, &t) < 0)
            return FAIL_400(res, "AuthorizationQueryParametersError",
                            "X-Amz-Date must be in the ISO8601 Long Format "
                            "\"yyyyMMdd'T'HHmmss'Z'\"");
        memcpy(res->amz_date, sp.date.ptr, 16);
        res->amz_date[16] = '\0';
    } else {
        SovStr d = SOV_STR_NULL;
        size_t nd = header_find(rq, SOV_STR("x-amz-date"), &d);

        if (nd > 1 || (nd == 0 && header_find(rq, SOV_STR("date"), &d) > 1))
            return FAIL_400(res, "InvalidArgument", "The date header is repeated");
        d = str_trim(d);
        if (d.len == 0 || (nd == 1 ? parse_amz_date(d, &t) : parse_http_date(d, &t)) < 0)
            return FAIL_403(res, "AccessDenied",
                            "AWS authentication requires a valid Date or x-amz-date header");
        if (nd == 1) {
            memcpy(res->amz_date, d.ptr, 16);
            res->amz_date[16] = '\0';
        } else {
            format_amz_date(t, res->amz_date);
        }
    }

    if ((r = parse_credential(sp.credential, res->amz_date, region, mode, &scope, res)) < 0)
        return r;
    if ((r = parse_signed_headers(sp.signed_headers, names, &nnames, mode, res)) < 0)
        return r;
    if (sp.signature.len != 64)
        return FAIL_400(res, malformed_code(mode), "The signature must be 64 hex digits");
    for (size_t i = 0; i < 64; i++) {
        if (hexval((unsigned char)sp.signature.ptr[i]) < 0)
            return FAIL_400(res, malformed_code(mode), "The signature must be 64 hex digits");
        got[i] = (char)(sp.signature.ptr[i] | 0x20);
    }
    got[64] = '\0';

    /* Time: the request must be recent (header form) or valid now (presigned). */
    if (mode == SIG_PRESIGNED) {
        uint64_t expires;
        if (sov_str_to_u64(sp.expires, &expires) < 0 || expires == 0)
            return FAIL_400(res, "AuthorizationQueryParametersError",
                            "X-Amz-Expires should be a number between 1 and %d", S3_MAX_PRESIGN_S);
        if (expires > S3_MAX_PRESIGN_S)
            return FAIL_400(res, "AuthorizationQueryParametersError",
                            "X-Amz-Expires must be less than a week (in seconds) that is %d",
                            S3_MAX_PRESIGN_S);
        if (t > rq->now && t - rq->now > S3_MAX_SKEW_S)
            return FAIL_403(res, "AccessDenied", "Request is not valid yet");
        if (rq->now > t && (uint64_t)(rq->now - t) > expires)
            return FAIL_403(res, "AccessDenied", "Request has expired");
    } else if ((t > rq->now ? t - rq->now : rq->now - t) > S3_MAX_SKEW_S) {
        return FAIL_403(res, "RequestTimeTooSkewed",
                        "The difference between the request time and the current time is too "
                        "large.");
    }

    /* The payload. */
    if (mode == SIG_PRESIGNED) {
        res->payload = S3_PAYLOAD_UNSIGNED;
        payload_hash = "UNSIGNED-PAYLOAD";
    } else {
        if ((r = parse_payload(rq, res)) < 0)
            return r;
        if (res->payload == S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER &&
            (r = parse_trailer(rq, res)) < 0)
            return r;
        switch (res->payload) {
        case S3_PAYLOAD_SHA256:
            payload_hash = res->payload_sha256;
            break;
        case S3_PAYLOAD_STREAMING:
            payload_hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
            break;
        case S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER:
            payload_hash = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
            break;
        default:
            payload_hash = "UNSIGNED-PAYLOAD";
            break;
        }
        /* The canonical request has the header's own spelling of the hash. */
        if (res->payload == S3_PAYLOAD_SHA256) {
            SovStr v;
            header_find(rq, SOV_STR("x-amz-content-sha256"), &v);
            v = str_trim(v);
            memcpy(payload_buf, v.ptr, 64);
            payload_buf[64] = '\0';
            payload_hash = payload_buf;
        }
    }

    /* Every x-amz-* header is part of what is authorised, so it must be signed, as S3 has it
     * (a presigned URL's holder must not add x-amz-acl, say). x-amz-content-sha256 is the
     * exception S3 makes: its value is the last line of the canonical request anyway. */
    for (size_t h = 0; h < rq->nheaders; h++) {
        SovStr name = rq->headers[h].name;
        if (name.len >= 6 && sov_str_eq_ci((SovStr){name.ptr, 6}, SOV_STR("x-amz-")) &&
            !sov_str_eq_ci(name, SOV_STR("x-amz-content-sha256")) &&
            !signed_has(names, nnames, name))
            return FAIL_403(res, "AccessDenied",
                            "There were headers present in the request which were not signed");
    }

    r = build_canonical_request(cr, rq, q, mode, names, nnames, sp.signed_headers, payload_hash,
                                res);
    if (r < 0)
        return r;

    memcpy(res->access_key, scope.access_key.ptr, scope.access_key.len);
    res->access_key[scope.access_key.len] = '\0';
    r = lookup(res->access_key, secret, sizeof(secret), ud);
    if (r == -ENOENT)
        return FAIL_403(res, "InvalidAccessKeyId",
                        "The AWS Access Key Id you provided does not exist in our records.");
    if (r < 0)
        return auth_fail(res, r, "InternalError", 500, "The access key could not be looked up");
    secret[sizeof(secret) - 1] = '\0';
    r = derive_signing_key(secret, scope.date, region, key);
    explicit_bzero(secret, sizeof(secret));
    if (r < 0)
        return auth_fail(res, r, "InternalError", 500, "The signing key could not be derived");

    snprintf(res->scope, sizeof(res->scope), SOV_STR_FMT "/%s/%s/%s", SOV_STR_ARG(scope.date),
             region, SIGV4_SERVICE, SIGV4_TERMINATOR);
    if ((r = sov_sha256(cr->ptr, cr->len, digest)) < 0)
        return auth_fail(res, r, "InternalError", 500, "Hashing failed");
    sov_hex_encode(digest, sizeof(digest), hex);
    n = snprintf(sts, sizeof(sts), SIGV4_ALGORITHM "\n%s\n%s\n%s", res->amz_date, res->scope, hex);
    if (n < 0 || (size_t)n >= sizeof(sts))
        return auth_fail(res, -EINVAL, "InternalError", 500, "The string to sign is too long");
    if ((r = sov_hmac_sha256(key, sizeof(key), sts, (size_t)n, mac)) < 0)
        return auth_fail(res, r, "InternalError", 500, "Signing failed");
    sov_hex_encode(mac, sizeof(mac), hex);
    if (!sov_memeq_ct(hex, got, 64)) {
        explicit_bzero(key, sizeof(key));
        return FAIL_403(res, "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you "
                        "provided. Check your key and signing method.");
    }

    res->kind = mode == SIG_HEADER ? S3_AUTH_HEADER : S3_AUTH_PRESIGNED;
    memcpy(res->signing_key, key, sizeof(key));
    explicit_bzero(key, sizeof(key));
    memcpy(res->seed_signature, hex, sizeof(hex));
    return 0;
}

int s3_sigv4_verify(const S3AuthRequest *rq, const char *region, S3SecretLookup lookup, void *ud,
                    S3AuthResult *res)
{
    Query *q;
    SovBuf cr;
    int r;

    memset(res, 0, sizeof(*res));
    q = malloc(sizeof(*q));
    if (!q)
        return auth_fail(res, -ENOMEM, "InternalError", 500, "Out of memory");
    sov_buf_init(&q->pool, 0);
    sov_buf_init(&cr, SIGV4_MAX_CANONICAL);
    r = verify(rq, region, lookup, ud, res, q, &cr);
    sov_buf_release(&cr);
    query_release(q);
    free(q);
    if (r < 0) {
        /* Nothing of a refused request is handed out but the error. */
        const char *code = res->error_code;
        int status = res->http_status;
        char message[sizeof(res->message)];

        memcpy(message, res->message, sizeof(message));
        memset(res, 0, sizeof(*res));
        res->error_code = code ? code : "InternalError";
        res->http_status = code ? status : 500;
        memcpy(res->message, message, sizeof(message));
    }
    return r;
}
