/* SPDX-License-Identifier: Apache-2.0 */
/* Streaming decoder of aws-chunked request bodies, written from the S3 API reference: signed
 * chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), each chained to the one before by its signature,
 * and unsigned chunks followed by trailing checksum headers (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
 * Payload bytes leave as soon as they arrive; only chunk header and trailer lines are buffered,
 * and those are bounded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "sov/buf.h"
#include "sov/crypto.h"
#include "sov/macro.h"
#include "sigv4.h"

#define CHUNK_LINE_MAX     4096
#define CHUNK_SIZE_MAX     (5ULL << 40) /* S3's largest object */
#define CHUNK_TRAILERS_MAX 16

/* The empty string's SHA-256, part of every chunk's string to sign. */
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef enum ChunkState {
    ST_HEADER,  /* reading "size[;ext]\r\n" into line */
    ST_DATA,    /* remaining payload bytes of the chunk */
    ST_DATA_CR, /* the "\r\n" after a chunk's data */
    ST_DATA_LF,
    ST_TRAILER, /* reading trailer lines into line, until an empty one */
    ST_DONE,
    ST_FAILED,
} ChunkState;

typedef enum TrailerKind {
    TRAILER_NONE,
    TRAILER_CRC32,
    TRAILER_CRC32C,
    TRAILER_CRC64NVME,
    TRAILER_SHA256,
} TrailerKind;

/* Invariants: line_len <= CHUNK_LINE_MAX; in ST_DATA remaining > 0 bytes of the current chunk
 * are still due; prev_sig is the signature of the last verified chunk (the seed at first);
 * error is NULL until the decoder fails, and then it stays failed. */
struct S3ChunkDecoder {
    ChunkState state;
    bool signed_chunks;
    bool final; /* the current chunk is the zero-length last one */
    uint64_t remaining;
    uint64_t decoded;
    char line[CHUNK_LINE_MAX];
    size_t line_len;

    /* Signed chunks. */
    uint8_t signing_key[SOV_SHA256_LEN];
    char amz_date[17];
    char scope[128];
    char prev_sig[65];
    char chunk_sig[65];
    SovDigest *chunk_sha;

    /* Trailing checksum (unsigned chunks). */
    TrailerKind trailer;
    char trailer_name[32];
    bool trailer_seen;
    unsigned trailer_lines;
    uint32_t crc32;
    uint32_t crc32c;
    uint64_t crc64;
    uint64_t *crc64_table;
    SovDigest *trailer_sha;

    const char *error;
    char message[160];
};

static int chunk_fail(S3ChunkDecoder *d, const char *code, const char *message)
{
    d->state = ST_FAILED;
    d->error = code;
    snprintf(d->message, sizeof(d->message), "%s", message);
    return -EBADMSG;
}

static uint64_t *crc64_table_new(void)
{
    uint64_t *t = malloc(256 * sizeof(*t));

    if (!t)
        return NULL;
    for (uint64_t i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x9A6C9329AC4BC9B5ull : c >> 1;
        t[i] = c;
    }
    return t;
}

S3ChunkDecoder *s3_chunked_new(const S3AuthResult *auth)
{
    static const struct {
        const char *name;
        TrailerKind kind;
    } trailers[] = {
        {"x-amz-checksum-crc32", TRAILER_CRC32},
        {"x-amz-checksum-crc32c", TRAILER_CRC32C},
        {"x-amz-checksum-crc64nvme", TRAILER_CRC64NVME},
        {"x-amz-checksum-sha256", TRAILER_SHA256},
    };
    S3ChunkDecoder *d;

    if (!auth || (auth->payload != S3_PAYLOAD_STREAMING &&
                  auth->payload != S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER)) {
        errno = EINVAL;
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->state = ST_HEADER;
    d->signed_chunks = auth->payload == S3_PAYLOAD_STREAMING;
    if (d->signed_chunks) {
        memcpy(d->signing_key, auth->signing_key, sizeof(d->signing_key));
        snprintf(d->amz_date, sizeof(d->amz_date), "%s", auth->amz_date);
        snprintf(d->scope, sizeof(d->scope), "%s", auth->scope);
        snprintf(d->prev_sig, sizeof(d->prev_sig), "%s", auth->seed_signature);
        d->chunk_sha = sov_digest_new(SOV_DIGEST_SHA256);
        if (!d->chunk_sha)
            return s3_chunked_free(d), NULL;
        return d;
    }
    for (size_t i = 0; i < ELEMENTSOF(trailers); i++) {
        if (strcmp(auth->trailer, trailers[i].name) == 0) {
            d->trailer = trailers[i].kind;
            snprintf(d->trailer_name, sizeof(d->trailer_name), "%s", trailers[i].name);
        }
    }
    d->crc32 = (uint32_t)crc32(0L, Z_NULL, 0);
    d->crc32c = 0;
    d->crc64 = ~0ull;
    if ((d->trailer == TRAILER_CRC64NVME && !(d->crc64_table = crc64_table_new())) ||
        (d->trailer == TRAILER_SHA256 && !(d->trailer_sha = sov_digest_new(SOV_DIGEST_SHA256))))
        return s3_chunked_free(d), NULL;
    return d;
}

void s3_chunked_free(S3ChunkDecoder *d)
{
    if (!d)
        return;
    sov_digest_free(d->chunk_sha);
    sov_digest_free(d->trailer_sha);
    free(d->crc64_table);
    explicit_bzero(d->signing_key, sizeof(d->signing_key));
    free(d);
}

const char *s3_chunked_error(const S3ChunkDecoder *d, const char **ret_message)
{
    if (ret_message)
        *ret_message = d->error ? d->message : NULL;
    return d->error;
}

uint64_t s3_chunked_decoded_bytes(const S3ChunkDecoder *d)
{
    return d->decoded;
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

/* Parses the hex chunk size at the start of the line; returns the number of digits or -1. */
static int parse_size(const char *p, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; i < n && hexval((unsigned char)p[i]) >= 0; i++) {
        if (i >= 16)
            return -1;
        v = v << 4 | (uint64_t)hexval((unsigned char)p[i]);
    }
    if (i == 0)
        return -1;
    *ret = v;
    return (int)i;
}

/* The signature of the chunk whose data went through chunk_sha. */
static int chunk_signature(S3ChunkDecoder *d, char ret_hex[65])
{
    uint8_t digest[SOV_SHA256_LEN], mac[SOV_SHA256_LEN];
    char data_hex[65];
    char sts[400];
    int n, r;

    if ((r = sov_digest_final(d->chunk_sha, digest)) < 0)
        return r;
    sov_hex_encode(digest, sizeof(digest), data_hex);
    n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n" SHA256_EMPTY "\n%s",
                 d->amz_date, d->scope, d->prev_sig, data_hex);
    if (n < 0 || (size_t)n >= sizeof(sts))
        return -EINVAL;
    if ((r = sov_hmac_sha256(d->signing_key, sizeof(d->signing_key), sts, (size_t)n, mac)) < 0)
        return r;
    sov_hex_encode(mac, sizeof(mac), ret_hex);
    return 0;
}

/* Called when a chunk's data is complete: checks its signature and chains it. */
static int chunk_end(S3ChunkDecoder *d)
{
    char want[65];

    if (!d->signed_chunks)
        return 0;
    if (chunk_signature(d, want) < 0)
        return chunk_fail(d, "InternalError", "The chunk signature could not be computed");
    if (!sov_memeq_ct(want, d->chunk_sig, 64))
        return chunk_fail(d, "SignatureDoesNotMatch",
                          "The chunk signature we calculated does not match the one you provided");
    memcpy(d->prev_sig, want, sizeof(want));
    return 0;
}

static int header_line(S3ChunkDecoder *d)
{
    static const char sig_ext[] = ";chunk-signature=";
    const char *p = d->line;
    size_t n = d->line_len;
    uint64_t size;
    int digits = parse_size(p, n, &size);

    if (digits < 0)
        return chunk_fail(d, "InvalidRequest", "Bad chunk size");
    if (size > CHUNK_SIZE_MAX || d->decoded + size < d->decoded ||
        d->decoded + size > CHUNK_SIZE_MAX)
        return chunk_fail(d, "InvalidRequest", "The chunk is too large");
    p += digits;
    n -= (size_t)digits;
    if (d->signed_chunks) {
        if (n != strlen(sig_ext) + 64 || memcmp(p, sig_ext, strlen(sig_ext)) != 0)
            return chunk_fail(d, "InvalidRequest", "Bad chunk header: expected chunk-signature");
        p += strlen(sig_ext);
        for (size_t i = 0; i < 64; i++) {
            if (hexval((unsigned char)p[i]) < 0)
                return chunk_fail(d, "InvalidRequest", "Bad chunk signature");
            d->chunk_sig[i] = (char)(p[i] | 0x20);
        }
        d->chunk_sig[64] = '\0';
    } else if (n > 0 && p[0] != ';') {
        /* Chunk extensions of unsigned chunks are allowed and ignored. */
        return chunk_fail(d, "InvalidRequest", "Bad chunk header");
    }
    d->remaining = size;
    d->final = size == 0;
    if (size > 0) {
        d->state = ST_DATA;
        return 0;
    }
    if (!d->signed_chunks) {
        d->state = ST_TRAILER;
        return 0;
    }
    d->state = ST_DATA_CR;
    return chunk_end(d);
}

/* Standard base64 with padding, as S3 spells checksums. */
static size_t base64_encode(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* The base64 checksum of the decoded payload for the announced trailer. */
static int trailer_checksum(S3ChunkDecoder *d, char out[64])
{
    uint8_t b[SOV_SHA256_LEN];
    size_t n = 0;

    switch (d->trailer) {
    case TRAILER_CRC32:
    case TRAILER_CRC32C: {
        uint32_t c = d->trailer == TRAILER_CRC32 ? d->crc32 : d->crc32c;
        for (int i = 0; i < 4; i++)
            b[i] = (uint8_t)(c >> (24 - 8 * i));
        n = 4;
        break;
    }
    case TRAILER_CRC64NVME: {
        uint64_t c = ~d->crc64;
        for (int i = 0; i < 8; i++)
            b[i] = (uint8_t)(c >> (56 - 8 * i));
        n = 8;
        break;
    }
    case TRAILER_SHA256:
        if (sov_digest_final(d->trailer_sha, b) < 0)
            return -EIO;
        n = SOV_SHA256_LEN;
        break;
    default:
        return -EINVAL;
    }
    base64_encode(b, n, out);
    return 0;
}

static int trailer_line(S3ChunkDecoder *d)
{
    const char *colon;
    size_t name_len;
    const char *v;
    size_t vlen;
    char want[64];

    if (d->line_len == 0) {
        if (d->trailer != TRAILER_NONE && !d->trailer_seen)
            return chunk_fail(d, "InvalidRequest",
                              "The trailer announced by x-amz-trailer is "
                              "missing");
        d->state = ST_DONE;
        return 0;
    }
    if (++d->trailer_lines > CHUNK_TRAILERS_MAX)
        return chunk_fail(d, "InvalidRequest", "Too many trailer lines");
    colon = memchr(d->line, ':', d->line_len);
    if (!colon)
        return chunk_fail(d, "InvalidRequest", "Bad trailer line");
    name_len = (size_t)(colon - d->line);
    if (d->trailer == TRAILER_NONE ||
        !sov_str_eq_ci((SovStr){d->line, name_len}, sov_str(d->trailer_name)))
        return chunk_fail(d, "InvalidRequest", "A trailer was not announced by x-amz-trailer");
    if (d->trailer_seen)
        return chunk_fail(d, "InvalidRequest", "The trailer is repeated");
    d->trailer_seen = true;
    v = colon + 1;
    vlen = d->line_len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (trailer_checksum(d, want) < 0)
        return chunk_fail(d, "InternalError", "The checksum could not be computed");
    if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
        return chunk_fail(d, "BadDigest",
                          "The checksum in the trailer does not match the data received");
    return 0;
}

/* Accumulates a CRLF-terminated line; returns 1 when line holds a whole line (without the
 * CRLF), 0 when more input is needed, or -EBADMSG. Consumes what it used from *p / *n. */
static int take_line(S3ChunkDecoder *d, const char **p, size_t *n)
{
    const char *nl = memchr(*p, '\n', *n);
    size_t take = nl ? (size_t)(nl - *p) + 1 : *n;

    if (d->line_len + take > CHUNK_LINE_MAX + (nl ? 1 : 0))
        return chunk_fail(d, "InvalidRequest", "A chunk header or trailer line is too long");
    memcpy(d->line + d->line_len, *p, nl ? take - 1 : take);
    d->line_len += nl ? take - 1 : take;
    *p += take;
    *n -= take;
    if (!nl)
        return 0;
    if (d->line_len == 0 || d->line[d->line_len - 1] != '\r')
        return chunk_fail(d, "InvalidRequest", "A chunk header or trailer line must end in CRLF");
    d->line_len--;
    for (size_t i = 0; i < d->line_len; i++)
        if (d->line[i] == '\0' || d->line[i] == '\r')
            return chunk_fail(d, "InvalidRequest", "Bad character in a chunk header line");
    return 1;
}

static void checksum_update(S3ChunkDecoder *d, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;

    switch (d->trailer) {
    case TRAILER_CRC32:
        while (n > 0) {
            uInt step = n > (1u << 30) ? (1u << 30) : (uInt)n;
            d->crc32 = (uint32_t)crc32(d->crc32, u, step);
            u += step;
            n -= step;
        }
        break;
    case TRAILER_CRC32C:
        d->crc32c = sov_crc32c(d->crc32c, u, n);
        break;
    case TRAILER_CRC64NVME:
        for (size_t i = 0; i < n; i++)
            d->crc64 = d->crc64_table[(d->crc64 ^ u[i]) & 0xff] ^ (d->crc64 >> 8);
        break;
    case TRAILER_SHA256:
        sov_digest_update(d->trailer_sha, p, n);
        break;
    default:
        break;
    }
}

int s3_chunked_feed(S3ChunkDecoder *d, const char *p, size_t n, S3ChunkOut out, void *ud)
{
    int r;

    while (n > 0) {
        switch (d->state) {
        case ST_HEADER:
        case ST_TRAILER:
            r = take_line(d, &p, &n);
            if (r < 0)
                return r;
            if (r == 0)
                break;
            r = d->state == ST_HEADER ? header_line(d) : trailer_line(d);
            d->line_len = 0;
            if (r < 0)
                return r;
            break;
        case ST_DATA: {
            size_t take = d->remaining < n ? (size_t)d->remaining : n;
            if (d->signed_chunks) {
                if (sov_digest_update(d->chunk_sha, p, take) < 0)
                    return chunk_fail(d, "InternalError", "Hashing failed");
            } else {
                checksum_update(d, p, take);
            }
            r = out(ud, p, take);
            if (r < 0) {
                chunk_fail(d, "InternalError", "The payload could not be stored");
                return r;
            }
            p += take;
            n -= take;
            d->remaining -= take;
            d->decoded += take;
            if (d->remaining == 0) {
                d->state = ST_DATA_CR;
                if ((r = chunk_end(d)) < 0)
                    return r;
            }
            break;
        }
        case ST_DATA_CR:
        case ST_DATA_LF:
            if (*p != (d->state == ST_DATA_CR ? '\r' : '\n'))
                return chunk_fail(d, "InvalidRequest", "A chunk's data must end in CRLF");
            p++;
            n--;
            if (d->state == ST_DATA_CR)
                d->state = ST_DATA_LF;
            else
                d->state = d->final ? ST_DONE : ST_HEADER;
            break;
        case ST_DONE:
            return chunk_fail(d, "InvalidRequest", "Data after the final chunk");
        case ST_FAILED:
        default:
            return -EBADMSG;
        }
    }
    return 0;
}

int s3_chunked_finish(S3ChunkDecoder *d)
{
    if (d->state == ST_DONE)
        return 0;
    if (d->state == ST_FAILED)
        return -EBADMSG;
    /* Some clients end the trailer section without its final empty line; the data and its
     * checksum are complete by then. */
    if (d->state == ST_TRAILER && d->line_len == 0 && d->trailer_seen) {
        d->state = ST_DONE;
        return 0;
    }
    return chunk_fail(d, "IncompleteBody",
                      "You did not provide the number of bytes specified by the chunk headers");
}
