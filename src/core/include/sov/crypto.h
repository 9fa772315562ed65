/* SPDX-License-Identifier: Apache-2.0 */
/* Crypto helpers over OpenSSL's EVP interface: digests (SHA-256, MD5) one-shot and streaming,
 * HMAC-SHA256, AES-256-GCM (authenticated, for objects and key wrapping), AES-256-XTS (for
 * block sectors), secure random bytes, hex encoding and constant-time comparison. All return
 * 0 on success or a negative errno (-EBADMSG when authentication fails). */
#ifndef SOV_CRYPTO_H
#define SOV_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOV_SHA256_LEN  32
#define SOV_MD5_LEN     16
#define SOV_GCM_KEY_LEN 32
#define SOV_GCM_IV_LEN  12
#define SOV_GCM_TAG_LEN 16
#define SOV_XTS_KEY_LEN 64 /* two AES-256 keys */

typedef enum SovDigestAlg { SOV_DIGEST_SHA256, SOV_DIGEST_MD5 } SovDigestAlg;

/* Streaming digest; opaque, freed with sov_digest_free(). */
typedef struct SovDigest SovDigest;
SovDigest *sov_digest_new(SovDigestAlg alg);
int sov_digest_update(SovDigest *d, const void *p, size_t n);
/* Writes the digest (32 or 16 bytes) and resets the context for reuse. */
int sov_digest_final(SovDigest *d, uint8_t *ret_digest);
SovDigest *sov_digest_free(SovDigest *d);

int sov_sha256(const void *p, size_t n, uint8_t ret[SOV_SHA256_LEN]);
int sov_md5(const void *p, size_t n, uint8_t ret[SOV_MD5_LEN]);
int sov_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n,
                    uint8_t ret[SOV_SHA256_LEN]);

/* AES-256-GCM. out must hold n bytes. aad may be NULL. */
int sov_aes256_gcm_encrypt(const uint8_t key[SOV_GCM_KEY_LEN], const uint8_t iv[SOV_GCM_IV_LEN],
                           const void *aad, size_t aadlen, const void *in, size_t n, void *out,
                           uint8_t ret_tag[SOV_GCM_TAG_LEN]);
int sov_aes256_gcm_decrypt(const uint8_t key[SOV_GCM_KEY_LEN], const uint8_t iv[SOV_GCM_IV_LEN],
                           const void *aad, size_t aadlen, const void *in, size_t n, void *out,
                           const uint8_t tag[SOV_GCM_TAG_LEN]);

/* AES-256-XTS over one data unit (a sector) of n >= 16 bytes; the tweak is the 64-bit sector
 * number, little-endian, zero-padded to 16 bytes (IEEE 1619 / dm-crypt plain64). */
int sov_aes256_xts_encrypt(const uint8_t key[SOV_XTS_KEY_LEN], uint64_t sector, const void *in,
                           size_t n, void *out);
int sov_aes256_xts_decrypt(const uint8_t key[SOV_XTS_KEY_LEN], uint64_t sector, const void *in,
                           size_t n, void *out);

/* CRC-32C (Castagnoli), chaining like zlib's crc32(): start from 0, feed the previous result
 * to continue. The SSE4.2 instruction where the CPU has it; sov_crc32c_sw is the table path. */
uint32_t sov_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t sov_crc32c_sw(uint32_t crc, const void *p, size_t n);

int sov_random_bytes(void *p, size_t n);
/* Lowercase hex of n bytes into out (2n+1 bytes with the NUL). */
void sov_hex_encode(const uint8_t *p, size_t n, char *out);
/* Decodes 2n hex characters into n bytes; -EINVAL on a non-hex character. */
int sov_hex_decode(const char *hex, size_t hexlen, uint8_t *out);
/* Compares in time independent of where the bytes differ. */
bool sov_memeq_ct(const void *a, const void *b, size_t n);

#endif
