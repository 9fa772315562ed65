/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side encryption of object data (SSE-S3 and SSE-C) with AES-256-GCM. A pure module (no
 * loop, no store): OpenSSL and core only. Key directory I/O blocks (fsync), so the daemon opens
 * and rotates the keyring at start-up or on its thread pool; everything else is CPU work.
 *
 * Keys. SSE-S3 objects have a random 32-byte data key, wrapped (AES-256-GCM) under the current
 * master key of the keyring and kept in the object's metadata; master keys never leave the key
 * directory. SSE-C objects use a data key derived from the customer's key and a per-object salt;
 * the object keeps only the key's MD5 (S3 sends it back) and a salted HMAC of the key to check
 * it on reads (see SseCustomerRecord). Either data key is the "base key" of the object's data
 * streams.
 *
 * Key directory (0700): one file per master key named by its id (16 lowercase hex digits) holding
 * the 32 raw key bytes (0600), and "current" holding the current id and a newline. Files are
 * written to ".tmp-<name>" (0600), fsynced, renamed into place and the directory fsynced; stale
 * ".tmp-*" files are removed on open. A directory or key file that group or others can access is
 * refused (-EPERM). Rotation adds a key and rewrites "current"; old keys stay for unwrapping.
 *
 * Wrapped data key, 61 bytes ("wk"): u8 version (1) | nonce[12] (random) | ciphertext[32] |
 * tag[16]. AAD: "sov-sse-v1 wrap" NUL kid[16] context, where the context is a caller-given byte
 * string naming what the key belongs to (sse_context() builds one from bucket, key, version):
 * a wrapped key moved to another object fails to unwrap. In metadata: {"kid": "<id>", "wk":
 * "<base64 of the 61 bytes>"}. Random 96-bit nonces allow about 2^32 wraps per master key:
 * rotate well before that.
 *
 * Data stream (one per data file: a whole object, or one multipart part). Stored form:
 *     header, SSE_HEADER_LEN (32) bytes:
 *         0 magic "SOVE"   4 u8 version (1)   5..7 zero   8 salt[16] (random)   24..31 zero
 *     then for each plaintext block of SSE_BLOCK bytes (the last one shorter, possibly empty
 *     when the whole stream is empty) its ciphertext followed by its 16-byte GCM tag.
 * So a stream always has at least one block, stored block i starts at SSE_HEADER_LEN +
 * i * (SSE_BLOCK + 16), and sse_stored_size(p) = 32 + p + 16 * max(1, ceil(p / SSE_BLOCK)).
 * Each stream has its own key and nonce prefix, derived from the base key, the salt and the
 * caller's part number (any number the reader can give again: 0 for a single-PUT object; a
 * multipart part's number if the layout keeps it, else 0 for every part):
 *     stream key   = HMAC-SHA256(base key, "sov-sse-v1 stream key" NUL salt u32le(part))
 *     nonce prefix = HMAC-SHA256(base key, "sov-sse-v1 stream nonce" NUL salt u32le(part))[0..4)
 *     block nonce  = nonce prefix | u64le(block index)
 *     block AAD    = u64le(block index) | u8 final (1 on the stream's last block, else 0)
 * A fresh random salt per stream means a base key used for many streams (every part of an
 * upload, retried parts, every object under one SSE-C key) never repeats a (key, nonce) pair.
 * The AAD and nonce make a reordered, dropped, duplicated or truncated block fail its tag; the
 * final flag catches a stream cut at a block boundary; a changed header byte changes the key
 * or is refused; a stream moved to another object (another base key) or part number fails.
 *
 * Integrity replaces the CRC: a block that fails its tag (-EBADMSG) is bitrot or tampering. */
#ifndef SOV_S3_SSE_H
#define SOV_S3_SSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov/buf.h"

#define SSE_KEY_LEN      32
#define SSE_BLOCK        (256 * 1024) /* plaintext per block; equals S3_BLOCK */
#define SSE_TAG_LEN      16
#define SSE_STORED_BLOCK (SSE_BLOCK + SSE_TAG_LEN)
#define SSE_HEADER_LEN   32
#define SSE_SALT_LEN     16
#define SSE_KID_LEN      16 /* hex digits */
#define SSE_WRAPPED_LEN  61
#define SSE_MD5_B64_LEN  24 /* base64 of 16 bytes */
#define SSE_MAX_CONTEXT  4096

/* ---- sizes and byte ranges ---- */

/* Blocks of a stream of plain_size bytes (at least 1). */
uint64_t sse_block_count(uint64_t plain_size);
/* Stored bytes of a stream of plain_size bytes, header included. */
uint64_t sse_stored_size(uint64_t plain_size);
/* The inverse: -EBADMSG when no plaintext size gives stored_size. */
int sse_plain_size(uint64_t stored_size, uint64_t *ret_plain);

/* The blocks that cover plaintext bytes [start, end) of a stream of plain_size bytes. Read
 * stored bytes [stored_off, stored_off + stored_len) (whole stored blocks), decrypt them as
 * blocks first_block.. (sse_stream_decrypt_run), drop the first skip plaintext bytes and keep
 * end - start. The header (stored bytes [0, SSE_HEADER_LEN)) is needed too, once per stream. */
typedef struct SseRange {
    uint64_t first_block;
    uint64_t nblocks;
    uint64_t stored_off;
    uint64_t stored_len;
    uint64_t skip;
} SseRange;
/* -EINVAL unless start < end <= plain_size (an empty range has no blocks). */
int sse_range_map(uint64_t plain_size, uint64_t start, uint64_t end, SseRange *ret);

/* ---- data streams ---- */

/* One stream's keys; not thread-safe (one per request). */
typedef struct SseStream SseStream;

/* A new stream for writing: picks the salt, writes the header to ret_header. */
int sse_stream_new(const uint8_t base_key[SSE_KEY_LEN], uint32_t part,
                   uint8_t ret_header[SSE_HEADER_LEN], SseStream **ret);
/* An existing stream, from its stored header: -EBADMSG when the header is not ours. */
int sse_stream_open(const uint8_t base_key[SSE_KEY_LEN], uint32_t part,
                    const uint8_t header[SSE_HEADER_LEN], SseStream **ret);
SseStream *sse_stream_free(SseStream *s);

/* One block: n <= SSE_BLOCK plaintext bytes (exactly SSE_BLOCK unless final) into n + 16 stored
 * bytes at out; out may equal in (the tag goes after the ciphertext). */
int sse_block_encrypt(SseStream *s, uint64_t index, bool final, const void *in, size_t n,
                      void *out);
/* One stored block of stored_n bytes (16 <= stored_n <= SSE_STORED_BLOCK) into stored_n - 16
 * bytes at out (out may equal in): -EBADMSG when the tag fails (out is then wiped). */
int sse_block_decrypt(SseStream *s, uint64_t index, bool final, const void *in, size_t stored_n,
                      void *out);
/* Consecutive stored blocks first_block.. of a stream of plain_size bytes (n bytes: whole
 * stored blocks, the stream's last one possibly shorter) into plaintext at out, which may equal
 * in; ret_n gets the plaintext length. */
int sse_stream_decrypt_run(SseStream *s, uint64_t plain_size, uint64_t first_block, const void *in,
                           size_t n, void *out, size_t *ret_n);

/* Streaming encryptor: takes plaintext in chunks of any size and hands stored bytes (header
 * first, then whole stored blocks) to write as it goes; holds at most one block. The last block
 * is only known at finish, so up to SSE_BLOCK bytes are held back until then. A write error is
 * returned and sticks. */
typedef int (*SseWriteFn)(void *ud, const void *p, size_t n);
typedef struct SseEncryptor SseEncryptor;
int sse_encryptor_new(const uint8_t base_key[SSE_KEY_LEN], uint32_t part, SseWriteFn write,
                      void *ud, SseEncryptor **ret);
int sse_encryptor_write(SseEncryptor *e, const void *p, size_t n);
int sse_encryptor_finish(SseEncryptor *e);
uint64_t sse_encryptor_plain_size(const SseEncryptor *e);
uint64_t sse_encryptor_stored_size(const SseEncryptor *e);
SseEncryptor *sse_encryptor_free(SseEncryptor *e);

/* ---- master keys (SSE-S3) ---- */

typedef struct SseKeyring SseKeyring; /* thread-safe: wraps and rotation may run concurrently */

/* Opens (creating it 0700 when missing) the key directory; an empty one gets its first key. */
int sse_keyring_open(const char *dir, SseKeyring **ret);
SseKeyring *sse_keyring_free(SseKeyring *kr); /* wipes the keys */
/* Makes a new key current (blocks on fsync); ret_kid (may be NULL) gets its id. */
int sse_keyring_rotate(SseKeyring *kr, char ret_kid[SSE_KID_LEN + 1]);
void sse_keyring_current(SseKeyring *kr, char ret_kid[SSE_KID_LEN + 1]);
size_t sse_keyring_count(SseKeyring *kr);

typedef struct SseWrappedKey {
    char kid[SSE_KID_LEN + 1];
    uint8_t wk[SSE_WRAPPED_LEN];
} SseWrappedKey;

/* Context for a wrapped key: length-prefixed bucket, key and version (NULL: none), so that no
 * two different triples give the same bytes. Appended to out. */
int sse_context(const char *bucket, const char *key, const char *version, SovBuf *out);
/* A fresh random data key. */
int sse_data_key_new(uint8_t ret_key[SSE_KEY_LEN]);
int sse_key_wrap(SseKeyring *kr, const uint8_t key[SSE_KEY_LEN], SovStr context,
                 SseWrappedKey *ret);
/* -ENOKEY: the master key is not in the keyring; -EBADMSG: wrong context or damaged blob. */
int sse_key_unwrap(SseKeyring *kr, const SseWrappedKey *w, SovStr context,
                   uint8_t ret_key[SSE_KEY_LEN]);
/* Unwraps under old_context and wraps again under the current master key and new_context
 * (rotation: the same context twice; a copy or completed upload: the new owner's). */
int sse_key_rewrap(SseKeyring *kr, const SseWrappedKey *w, SovStr old_context, SovStr new_context,
                   SseWrappedKey *ret);
/* {"kid": ..., "wk": base64}; from_json refuses anything else with -EINVAL. */
int sse_wrapped_to_json(const SseWrappedKey *w, json_t **ret);
int sse_wrapped_from_json(const json_t *j, SseWrappedKey *ret);

/* ---- customer keys (SSE-C) ---- */

/* Why a request's SSE-C headers were refused: the S3 error to answer. */
typedef struct SseError {
    int status;
    const char *code;
    const char *message;
} SseError;

typedef struct SseCustomerKey {
    uint8_t key[SSE_KEY_LEN];
    uint8_t md5[16];
    char md5_b64[SSE_MD5_B64_LEN + 1];
} SseCustomerKey;

/* Validates an x-amz-server-side-encryption header value: "AES256" is SSE-S3 (0); "aws:kms" and
 * "aws:kms:dsse" are not implemented (-EOPNOTSUPP); anything else is -EINVAL. */
int sse_s3_parse(const char *value, SseError *ret_err);
/* Validates the x-amz-server-side-encryption-customer-{algorithm,key,key-MD5} header values
 * (NULL when absent): 0 with the key, or -EINVAL with ret_err set. */
int sse_customer_parse(const char *alg, const char *key_b64, const char *md5_b64,
                       SseCustomerKey *ret, SseError *ret_err);
/* Wipes a customer or data key (an SseCustomerKey too: sse_key_wipe(&ck, sizeof(ck))) once
 * the request is done with it. */
void sse_key_wipe(void *key, size_t n);

/* What an SSE-C object keeps. The MD5 is what S3 echoes in responses, but it is unsalted and
 * MD5: it says which key was used, it does not prove a request holds it. check =
 * HMAC-SHA256(key, "sov-sse-v1 customer check" NUL salt) does, in constant time and before any
 * byte of the object is sent (a range read could otherwise start a 200 before a tag fails), and
 * the salt keeps equal keys from looking equal across objects. In metadata: {"kmd5": base64,
 * "salt": base64, "kh": base64}. */
typedef struct SseCustomerRecord {
    uint8_t md5[16];
    uint8_t salt[SSE_SALT_LEN];
    uint8_t check[32];
} SseCustomerRecord;

/* For a write: a new salt and record, and the object's data key = HMAC-SHA256(key, "sov-sse-v1
 * customer data" NUL salt) (per object, so streams of two objects under one key differ). */
int sse_customer_seal(const SseCustomerKey *ck, SseCustomerRecord *ret_rec,
                      uint8_t ret_data_key[SSE_KEY_LEN]);
/* For a read: -EACCES when ck is not the object's key, else the data key. */
int sse_customer_open(const SseCustomerKey *ck, const SseCustomerRecord *rec,
                      uint8_t ret_data_key[SSE_KEY_LEN]);
int sse_customer_to_json(const SseCustomerRecord *rec, json_t **ret);
int sse_customer_from_json(const json_t *j, SseCustomerRecord *ret);

/* Strict standard base64 (padding required, no whitespace): the decoded length, or -EINVAL
 * (also when it would exceed cap). encode writes 4 * ceil(n / 3) characters and a NUL. */
int sse_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
void sse_base64_encode(const uint8_t *in, size_t n, char *out);

#endif
