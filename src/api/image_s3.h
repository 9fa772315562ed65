/* SPDX-License-Identifier: Apache-2.0 */
/* Image data behind the Glance API of image.c. Uploads stream through the thread pool, which
 * hashes them (MD5 for checksum, SHA-512 for os_hash_value) and writes them either to the
 * local store (<data_dir>/images/<id>, durable before the image turns active) or, when
 * [image] s3_url is set, to the object store as Glance's S3 backend keeps them: one object per
 * image, named by the image id, in one bucket, sent in one PUT or as a multipart upload.
 * Downloads stream back with backpressure (file reads on the thread pool, or ranged GETs).
 *
 * The S3 client signs each request with AWS Signature Version 4 (the payload hashed, or sent
 * as UNSIGNED-PAYLOAD with a Content-MD5 the server checks) and runs it asynchronously on the
 * loop with core's HTTP client. */
#ifndef SOV_API_IMAGE_S3_H
#define SOV_API_IMAGE_S3_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api.h"
#include "sov/buf.h"

/* ---- image.c, for the data plane ---- */

/* Writes an image document back (indexed columns from its members). */
int image_doc_save(Api *a, json_t *doc);
/* Sets updated_at to now. */
void image_doc_touch(json_t *doc);

/* ---- the data plane ---- */

/* Creates the local store's directory, the S3 client (and its bucket, asynchronously, retried
 * until it exists), and puts uploads a crash interrupted back to queued. */
int image_data_start(Api *a, SovBuf *err);
void image_data_stop(Api *a);
/* Takes the data of a queued image the caller may write (doc belongs to the call): the image
 * turns saving, then active once the data is stored, and the call is answered (204). */
void image_data_upload(ApiCall *c, json_t *doc);
/* Streams the data of an active image (Range: one byte range, 206), answering the call. */
void image_data_download(ApiCall *c, const json_t *doc);
/* Removes the data of a deleted image from store ("file" or "s3"), then answers 204. */
void image_data_remove(ApiCall *c, const char *id, const char *store);

/* ---- the S3 client ---- */

typedef struct ImageS3 ImageS3;

/* What came back: err < 0 when no HTTP answer arrived (connection refused, timeout), else
 * the status, the ETag header and the body (bounded by the op's max_resp; the view lives
 * until the callback returns). */
typedef struct ImageS3Result {
    int err;
    int status;
    SovStr etag;
    SovStr body;
} ImageS3Result;

typedef void (*ImageS3Cb)(const ImageS3Result *res, void *ud);

/* One request. key NULL addresses the bucket. query is already canonical: keys sorted,
 * values percent-encoded ("uploads=", "partNumber=2&uploadId=..."). body is copied before
 * image_s3_call returns. sign_body hashes the payload into the signature (small XML bodies);
 * otherwise the request carries UNSIGNED-PAYLOAD and, when md5 is set, a Content-MD5 the
 * server checks. range_len > 0 asks for bytes [range_start, range_start + range_len). The
 * response body goes to sink when set (the caller's buffer, bounded by its max), else to an
 * internal buffer of at most max_resp bytes (64 KiB when 0). */
typedef struct ImageS3Op {
    const char *method;
    const char *key;
    const char *query;
    SovStr body;
    bool sign_body;
    const uint8_t *md5; /* 16 bytes */
    uint64_t range_start, range_len;
    SovBuf *sink;
    size_t max_resp;
    unsigned timeout_ms; /* 0: 120 s */
} ImageS3Op;

/* url is "http://HOST:PORT" (TLS is not spoken by core's client yet: -EPROTONOSUPPORT). */
int image_s3_new(uv_loop_t *loop, const char *url, const char *region, const char *access_key,
                 const char *secret_key, const char *bucket, ImageS3 **ret, SovBuf *err);
ImageS3 *image_s3_free(ImageS3 *s);
const char *image_s3_bucket(const ImageS3 *s);

/* Starts the request; cb runs exactly once, later, on the loop (also on a failure to start). */
int image_s3_call(ImageS3 *s, const ImageS3Op *op, ImageS3Cb cb, void *ud);

/* A presigned GET of key (query-string SigV4, UNSIGNED-PAYLOAD, only "host" signed), valid for
 * expires_s seconds (at most 604800): "http://HOST:PORT/BUCKET/KEY?X-Amz-...". */
int image_s3_presign(ImageS3 *s, const char *key, unsigned expires_s, SovBuf *out);
/* The object store client of the image data plane, NULL for the local store. */
ImageS3 *image_data_s3(Api *a);

/* ---- image.c, for the block storage API ---- */

/* A URL sov-block can GET an active image's data from without a token, for ttl_s seconds: a
 * presigned GET of its object in the object store, or for the local store an HMAC-signed link
 * to GET /image/internal/{id} on this API (its key is kept in the state database).
 * < 0 with err set when this API cannot serve the image's data. */
int image_source_url(Api *a, const json_t *img, unsigned ttl_s, SovBuf *out, SovBuf *err);

/* The S3 error code of an error body ("NoSuchKey"), copied into out ("" when none). */
void image_s3_error_code(SovStr body, char *out, size_t cap);

/* Signature Version 4 of one request (exposed for unit tests): the Authorization header value
 * for the given canonical parts. amz_date is "YYYYMMDDTHHMMSSZ"; headers are the canonical
 * "name:value" lines in sorted order, signed the signed-header list ("host;x-amz-date"). */
int image_s3_authorization(const char *access_key, const char *secret_key, const char *region,
                           const char *amz_date, const char *method, const char *canonical_uri,
                           const char *canonical_query, const char *canonical_headers,
                           const char *signed_headers, const char *payload_hash, SovBuf *out);

#endif
