/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-s3's SigV4 verification and aws-chunked decoder. The first byte
 * picks one of three modes:
 *
 *   0: a request in text form, "METHOD\nPATH\nQUERY\nName: value\n...\n\n" then a body, verified
 *      at the clock of the AWS examples (2013-05-24) with the AWS example key; when it is a
 *      valid streaming upload, the body goes through the chunk decoder.
 *   1: the rest is an aws-chunked body for a fixed authentication (the AWS chunked example's
 *      seed, or unsigned chunks with a CRC32 trailer), cut into fuzzer-chosen pieces.
 *   2: the rest is a payload; the target builds a valid aws-chunked body for it itself (signed
 *      or with a trailer), optionally flips one byte, and feeds it in pieces. An untouched body
 *      must decode to exactly the payload; a damaged one must either fail or still yield the
 *      payload (a flipped hex digit's case, say).
 *
 * Besides not crashing: results are 0 or a negative errno with an S3 error code and a
 * matching HTTP status, every string in S3AuthResult is terminated, and the decoder's byte
 * count equals what it handed out. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "sov/buf.h"
#include "sov/crypto.h"
#include "sov/macro.h"
#include "sigv4.h"

#define AK           "AKIAIOSFODNN7EXAMPLE"
#define SECRET       "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define REGION       "us-east-1"
#define T0           ((time_t)1369353600) /* 20130524T000000Z */
#define AMZ_DATE     "20130524T000000Z"
#define SCOPE        "20130524/us-east-1/s3/aws4_request"
#define SEED_SIG     "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEADERS_MAX  128
#define INPUT_MAX    (512 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lookup(const char *access_key, char *ret_secret, size_t cap, void *ud)
{
    if (strcmp(access_key, AK) != 0)
        return -ENOENT;
    snprintf(ret_secret, cap, "%s", SECRET);
    return 0;
}

static void check_terminated(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        __builtin_trap();
}

static void check_result(int r, const S3AuthResult *res)
{
    check_terminated(res->access_key, sizeof(res->access_key));
    check_terminated(res->payload_sha256, sizeof(res->payload_sha256));
    check_terminated(res->seed_signature, sizeof(res->seed_signature));
    check_terminated(res->amz_date, sizeof(res->amz_date));
    check_terminated(res->scope, sizeof(res->scope));
    check_terminated(res->trailer, sizeof(res->trailer));
    check_terminated(res->message, sizeof(res->message));
    if (r == 0) {
        if (res->error_code)
            __builtin_trap();
        if (res->kind != S3_AUTH_ANONYMOUS &&
            (strcmp(res->access_key, AK) != 0 || strlen(res->seed_signature) != 64 ||
             strlen(res->amz_date) != 16 || strcmp(res->scope, SCOPE) != 0))
            __builtin_trap();
        if (res->payload == S3_PAYLOAD_SHA256 && strlen(res->payload_sha256) != 64)
            __builtin_trap();
        return;
    }
    if (!res->error_code || res->message[0] == '\0' || res->access_key[0] != '\0')
        __builtin_trap();
    switch (r) {
    case -EINVAL:
        if (res->http_status != 400)
            __builtin_trap();
        break;
    case -EACCES:
        if (res->http_status != 403)
            __builtin_trap();
        break;
    case -ENOTSUP:
        if (res->http_status != 501)
            __builtin_trap();
        break;
    default:
        __builtin_trap(); /* lookup never fails otherwise, and memory is plentiful */
    }
}

typedef struct Sink {
    SovBuf data;
    uint64_t bytes;
} Sink;

static int sink_out(void *ud, const char *p, size_t n)
{
    Sink *s = ud;

    if (n == 0)
        __builtin_trap();
    s->bytes += n;
    if (s->data.max == 0)
        return 0;
    return sov_buf_append(&s->data, p, n);
}

/* Feeds body in pieces of step bytes (1 + step % 4096); returns the decoder's verdict. */
static int run_decoder(const S3AuthResult *auth, const char *body, size_t len, unsigned step,
                       Sink *sink)
{
    S3ChunkDecoder *d = s3_chunked_new(auth);
    size_t piece = 1 + step % 4096;
    int r = 0;

    if (!d)
        __builtin_trap();
    for (size_t off = 0; off < len && r == 0; off += piece)
        r = s3_chunked_feed(d, body + off, SOV_MIN(piece, len - off), sink_out, sink);
    if (r == 0)
        r = s3_chunked_finish(d);
    if (s3_chunked_decoded_bytes(d) != sink->bytes)
        __builtin_trap();
    if (r < 0) {
        const char *msg = NULL;
        if (r != -EBADMSG || !s3_chunked_error(d, &msg) || !msg)
            __builtin_trap();
        if (s3_chunked_feed(d, "x", 1, sink_out, sink) != -EBADMSG)
            __builtin_trap();
    } else if (s3_chunked_error(d, NULL)) {
        __builtin_trap();
    }
    s3_chunked_free(d);
    return r;
}

/* Mode 0: a request in text form. */
static void fuzz_request(const char *p, size_t n)
{
    S3Header headers[HEADERS_MAX];
    SovStr lines[3] = {SOV_STR_NULL, SOV_STR_NULL, SOV_STR_NULL};
    S3AuthRequest rq = {.now = T0};
    S3AuthResult res;
    size_t nh = 0, i = 0;
    const char *end = p + n;
    int r;

    for (i = 0; i < 3 && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        lines[i] = (SovStr){p, (size_t)(stop - p)};
        p = nl ? nl + 1 : end;
    }
    while (p < end && nh < HEADERS_MAX) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(stop - p));
        if (stop == p) {
            p++;
            break; /* empty line: the body follows */
        }
        if (colon) {
            const char *v = colon + 1;
            if (v < stop && *v == ' ')
                v++;
            headers[nh].name = (SovStr){p, (size_t)(colon - p)};
            headers[nh].value = (SovStr){v, (size_t)(stop - v)};
            nh++;
        }
        p = nl ? nl + 1 : end;
    }
    rq.method = lines[0];
    rq.path = lines[1];
    rq.query = lines[2];
    rq.headers = headers;
    rq.nheaders = nh;

    r = s3_sigv4_verify(&rq, REGION, lookup, NULL, &res);
    check_result(r, &res);
    if (r == 0 && (res.payload == S3_PAYLOAD_STREAMING ||
                   res.payload == S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER)) {
        Sink sink = {0};
        run_decoder(&res, p, (size_t)(end - p), (unsigned)(end - p), &sink);
    } else if (r == 0 && res.kind == S3_AUTH_ANONYMOUS) {
        /* The same request at another time is still anonymous. */
        rq.now = 0;
        if (s3_sigv4_verify(&rq, REGION, lookup, NULL, &res) != 0 || res.kind != S3_AUTH_ANONYMOUS)
            __builtin_trap();
    }
}

static void fixed_auth(S3AuthResult *auth, bool signed_chunks)
{
    uint8_t k[SOV_SHA256_LEN];
    char k0[] = "AWS4" SECRET;

    memset(auth, 0, sizeof(*auth));
    auth->kind = S3_AUTH_HEADER;
    snprintf(auth->access_key, sizeof(auth->access_key), "%s", AK);
    if (!signed_chunks) {
        auth->payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
        snprintf(auth->trailer, sizeof(auth->trailer), "x-amz-checksum-crc32");
        return;
    }
    auth->payload = S3_PAYLOAD_STREAMING;
    snprintf(auth->seed_signature, sizeof(auth->seed_signature), "%s", SEED_SIG);
    snprintf(auth->amz_date, sizeof(auth->amz_date), "%s", AMZ_DATE);
    snprintf(auth->scope, sizeof(auth->scope), "%s", SCOPE);
    if (sov_hmac_sha256(k0, strlen(k0), "20130524", 8, k) < 0 ||
        sov_hmac_sha256(k, sizeof(k), REGION, strlen(REGION), k) < 0 ||
        sov_hmac_sha256(k, sizeof(k), "s3", 2, k) < 0 ||
        sov_hmac_sha256(k, sizeof(k), "aws4_request", 12, auth->signing_key) < 0)
        __builtin_trap();
}

/* The signature of one chunk, computed here independently of chunked.c. */
static void sign_chunk(const S3AuthResult *auth, const char *prev, const uint8_t *p, size_t n,
                       char out[65])
{
    uint8_t h[SOV_SHA256_LEN], mac[SOV_SHA256_LEN];
    char hex[65];
    SovBuf sts = SOV_BUF_INIT;

    if (sov_sha256(p, n, h) < 0)
        __builtin_trap();
    sov_hex_encode(h, sizeof(h), hex);
    if (sov_buf_printf(&sts, "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n%s\n%s", auth->amz_date,
                       auth->scope, prev, SHA256_EMPTY, hex) < 0 ||
        sov_hmac_sha256(auth->signing_key, 32, sts.ptr, sts.len, mac) < 0)
        __builtin_trap();
    sov_hex_encode(mac, sizeof(mac), out);
    sov_buf_release(&sts);
}

static void base64(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Mode 2: a valid body for the payload, maybe damaged at one byte. */
static void fuzz_roundtrip(const uint8_t *data, size_t n)
{
    S3AuthResult auth;
    SovBuf body = SOV_BUF_INIT;
    Sink sink = {0};
    bool signed_chunks, damage;
    size_t chunk, pos;
    unsigned step;
    char prev[65], sig[65];
    int r;

    if (n < 4)
        return;
    signed_chunks = data[0] & 1;
    damage = data[0] & 2;
    chunk = 1 + data[1] % 64;
    pos = (size_t)data[2] << 8 | data[3];
    step = data[2] ^ data[3];
    data += 4;
    n -= 4;
    fixed_auth(&auth, signed_chunks);
    snprintf(prev, sizeof(prev), "%s", auth.seed_signature);

    for (size_t off = 0;; off += chunk) {
        size_t len = off < n ? SOV_MIN(chunk, n - off) : 0;
        if (signed_chunks) {
            sign_chunk(&auth, prev, data + off, len, sig);
            memcpy(prev, sig, sizeof(sig));
            r = sov_buf_printf(&body, "%zx;chunk-signature=%s\r\n", len, sig);
        } else {
            r = sov_buf_printf(&body, "%zx\r\n", len);
        }
        if (r < 0 || sov_buf_append(&body, data + off, len) < 0)
            __builtin_trap();
        if (len == 0)
            break;
        if (sov_buf_puts(&body, "\r\n") < 0)
            __builtin_trap();
    }
    if (signed_chunks) {
        r = sov_buf_puts(&body, "\r\n");
    } else {
        uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)n);
        uint8_t be[4] = {(uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
        char b64[16];
        base64(be, 4, b64);
        r = sov_buf_printf(&body, "x-amz-checksum-crc32:%s\r\n\r\n", b64);
    }
    if (r < 0)
        __builtin_trap();
    if (damage)
        body.ptr[pos % body.len] ^= (char)(1 + (step & 0x7f));

    sov_buf_init(&sink.data, SIZE_MAX / 4);
    r = run_decoder(&auth, body.ptr, body.len, step, &sink);
    if (!damage && r != 0)
        __builtin_trap();
    if (r == 0 && (sink.data.len != n || (n && memcmp(sink.data.ptr, data, n) != 0)))
        __builtin_trap();
    sov_buf_release(&sink.data);
    sov_buf_release(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > INPUT_MAX)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_request((const char *)data + 1, size - 1);
        break;
    case 1: {
        S3AuthResult auth;
        Sink sink = {0};
        fixed_auth(&auth, data[1] & 1);
        run_decoder(&auth, (const char *)data + 2, size - 2, data[1] >> 1, &sink);
        break;
    }
    default:
        fuzz_roundtrip(data + 1, size - 1);
        break;
    }
    return 0;
}
