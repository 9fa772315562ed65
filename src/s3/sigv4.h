/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4 for sov-s3: verification of the Authorization header and of presigned
 * (query-string) URLs, and a streaming decoder for aws-chunked bodies
 * (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, every chunk signature checked, and
 * STREAMING-UNSIGNED-PAYLOAD-TRAILER). Independent of the HTTP server: the caller passes the
 * request's pieces, so this file is unit-tested and fuzzed on its own. */
#ifndef SOV_S3_SIGV4_H
#define SOV_S3_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sov/buf.h"

#define S3_ACCESS_KEY_MAX 128
#define S3_SECRET_MAX     128
#define S3_MAX_SKEW_S     900    /* 15 minutes, as AWS */
#define S3_MAX_PRESIGN_S  604800 /* 7 days */

typedef struct S3Header {
    SovStr name;  /* as received; compared case-insensitively */
    SovStr value; /* as received, not trimmed */
} S3Header;

typedef struct S3AuthRequest {
    SovStr method; /* "GET", ... */
    SovStr path;   /* raw request path as received, percent-encoded, without the query */
    SovStr query;  /* raw query string after '?', empty when none */
    const S3Header *headers;
    size_t nheaders;
    time_t now; /* the server's clock */
} S3AuthRequest;

typedef enum S3AuthKind {
    S3_AUTH_ANONYMOUS, /* no Authorization header and no X-Amz-Signature: the caller decides */
    S3_AUTH_HEADER,
    S3_AUTH_PRESIGNED,
} S3AuthKind;

typedef enum S3Payload {
    S3_PAYLOAD_UNSIGNED,  /* UNSIGNED-PAYLOAD (and every presigned URL) */
    S3_PAYLOAD_SHA256,    /* x-amz-content-sha256 is the hex SHA-256 the body must have */
    S3_PAYLOAD_STREAMING, /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD: use S3ChunkDecoder */
    S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
} S3Payload;

typedef struct S3AuthResult {
    S3AuthKind kind;
    char access_key[S3_ACCESS_KEY_MAX + 1];
    S3Payload payload;
    char payload_sha256[65]; /* lowercase hex, for S3_PAYLOAD_SHA256 */
    /* For the chunk decoder: */
    uint8_t signing_key[32];
    char seed_signature[65];
    char amz_date[17]; /* YYYYMMDDTHHMMSSZ */
    char scope[128];   /* date/region/s3/aws4_request */
    /* For S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER: the checksum the x-amz-trailer header announced
     * ("x-amz-checksum-crc32", "-crc32c", "-crc64nvme" or "-sha256"), "" when none. */
    char trailer[32];
    /* On failure: the S3 error code ("SignatureDoesNotMatch", "InvalidAccessKeyId",
     * "AccessDenied", "RequestTimeTooSkewed", "AuthorizationHeaderMalformed",
     * "AuthorizationQueryParametersError", "InvalidArgument", "MissingSecurityHeader",
     * "XAmzContentSHA256Mismatch", "NotImplemented"), its HTTP status and a message. */
    const char *error_code;
    int http_status;
    char message[256];
} S3AuthResult;

/* Looks up the secret of an access key; returns 0 (secret copied, NUL-terminated) or -ENOENT. */
typedef int (*S3SecretLookup)(const char *access_key, char *ret_secret, size_t cap, void *ud);

/* Verifies the request's signature. region is the server's region (the credential scope must
 * name it). Returns 0 with res filled (kind S3_AUTH_ANONYMOUS when the request carries no
 * signature at all), or a negative errno with res->error_code, http_status and message set. */
int s3_sigv4_verify(const S3AuthRequest *rq, const char *region, S3SecretLookup lookup, void *ud,
                    S3AuthResult *res);

/* AWS's URI encoding (RFC 3986 unreserved characters kept, everything else %XX uppercase);
 * '/' is kept when keep_slash. Appends to out. */
int s3_uri_encode(SovBuf *out, SovStr s, bool keep_slash);
/* Percent-decoding of a path or query component ('+' stays '+' in a path and becomes ' ' in a
 * query when plus_is_space). Returns -EINVAL on a bad escape or an embedded NUL. */
int s3_uri_decode(SovBuf *out, SovStr s, bool plus_is_space);

/* Decoder of an aws-chunked body. Feed it the raw body as it arrives; it hands the payload
 * bytes to out as they come and checks each chunk's signature when the chunk ends (so a caller
 * must not make anything visible before s3_chunked_finish() succeeded). Chunk headers and
 * trailers are bounded in size. */
typedef struct S3ChunkDecoder S3ChunkDecoder;
typedef int (*S3ChunkOut)(void *ud, const char *p, size_t n);
S3ChunkDecoder *s3_chunked_new(const S3AuthResult *auth);
/* Returns 0, the negative value out returned, or -EBADMSG with s3_chunked_error() set. */
int s3_chunked_feed(S3ChunkDecoder *d, const char *p, size_t n, S3ChunkOut out, void *ud);
/* After the whole body: 0 when the final chunk (and trailer) arrived and verified, else
 * -EBADMSG ("IncompleteBody" when the body stopped early). */
int s3_chunked_finish(S3ChunkDecoder *d);
/* The S3 error code of the last failure ("SignatureDoesNotMatch", "IncompleteBody",
 * "InvalidRequest", "BadDigest" for a trailer checksum that does not match, "InternalError" when
 * out failed) and a message; NULL while there is none. */
const char *s3_chunked_error(const S3ChunkDecoder *d, const char **ret_message);
uint64_t s3_chunked_decoded_bytes(const S3ChunkDecoder *d);
void s3_chunked_free(S3ChunkDecoder *d);

#endif
