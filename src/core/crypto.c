/* SPDX-License-Identifier: Apache-2.0 */
/* EVP-based implementations of the sov crypto helpers. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "sov/crypto.h"

struct SovDigest {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
};

static const EVP_MD *digest_md(SovDigestAlg alg)
{
    return alg == SOV_DIGEST_MD5 ? EVP_md5() : EVP_sha256();
}

SovDigest *sov_digest_new(SovDigestAlg alg)
{
    SovDigest *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->md = digest_md(alg);
    d->ctx = EVP_MD_CTX_new();
    if (!d->ctx || EVP_DigestInit_ex(d->ctx, d->md, NULL) != 1)
        return sov_digest_free(d);
    return d;
}

int sov_digest_update(SovDigest *d, const void *p, size_t n)
{
    return EVP_DigestUpdate(d->ctx, p, n) == 1 ? 0 : -EIO;
}

int sov_digest_final(SovDigest *d, uint8_t *ret)
{
    unsigned len;
    if (EVP_DigestFinal_ex(d->ctx, ret, &len) != 1)
        return -EIO;
    return EVP_DigestInit_ex(d->ctx, d->md, NULL) == 1 ? 0 : -EIO;
}

SovDigest *sov_digest_free(SovDigest *d)
{
    if (d) {
        EVP_MD_CTX_free(d->ctx);
        free(d);
    }
    return NULL;
}

static int digest_once(SovDigestAlg alg, const void *p, size_t n, uint8_t *ret)
{
    unsigned len;
    return EVP_Digest(p, n, ret, &len, digest_md(alg), NULL) == 1 ? 0 : -EIO;
}

int sov_sha256(const void *p, size_t n, uint8_t ret[SOV_SHA256_LEN])
{
    return digest_once(SOV_DIGEST_SHA256, p, n, ret);
}

int sov_md5(const void *p, size_t n, uint8_t ret[SOV_MD5_LEN])
{
    return digest_once(SOV_DIGEST_MD5, p, n, ret);
}

int sov_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n,
                    uint8_t ret[SOV_SHA256_LEN])
{
    unsigned len = SOV_SHA256_LEN;
    if (keylen > INT32_MAX)
        return -EINVAL;
    return HMAC(EVP_sha256(), key, (int)keylen, p, n, ret, &len) ? 0 : -EIO;
}

/* Runs one EVP cipher pass. For GCM, tag is written (encrypt) or checked (decrypt). */
static int cipher_run(const EVP_CIPHER *cipher, bool enc, const uint8_t *key, const uint8_t *iv,
                      const void *aad, size_t aadlen, const void *in, size_t n, void *out,
                      uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t fin[32]; /* GCM and XTS emit nothing at final; room for safety */
    int len, r = -EIO;

    if (!ctx)
        return -ENOMEM;
    if (n > INT32_MAX || aadlen > INT32_MAX) {
        r = -EINVAL;
        goto out;
    }
    if (EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc) != 1)
        goto out;
    if (aad && aadlen && EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1)
        goto out;
    if (n && EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1)
        goto out;
    if (tag && !enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SOV_GCM_TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, fin, &len) != 1) {
        r = tag ? -EBADMSG : -EIO;
        goto out;
    }
    if (tag && enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SOV_GCM_TAG_LEN, tag) != 1)
        goto out;
    r = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return r;
}

int sov_aes256_gcm_encrypt(const uint8_t key[SOV_GCM_KEY_LEN], const uint8_t iv[SOV_GCM_IV_LEN],
                           const void *aad, size_t aadlen, const void *in, size_t n, void *out,
                           uint8_t ret_tag[SOV_GCM_TAG_LEN])
{
    return cipher_run(EVP_aes_256_gcm(), true, key, iv, aad, aadlen, in, n, out, ret_tag);
}

int sov_aes256_gcm_decrypt(const uint8_t key[SOV_GCM_KEY_LEN], const uint8_t iv[SOV_GCM_IV_LEN],
                           const void *aad, size_t aadlen, const void *in, size_t n, void *out,
                           const uint8_t tag[SOV_GCM_TAG_LEN])
{
    uint8_t t[SOV_GCM_TAG_LEN];
    int r;

    memcpy(t, tag, sizeof(t));
    r = cipher_run(EVP_aes_256_gcm(), false, key, iv, aad, aadlen, in, n, out, t);
    if (r < 0 && n)
        OPENSSL_cleanse(out, n); /* never leave unauthenticated plaintext behind */
    return r;
}

static int xts_run(bool enc, const uint8_t *key, uint64_t sector, const void *in, size_t n,
                   void *out)
{
    uint8_t tweak[16] = {0};

    if (n < 16)
        return -EINVAL;
    /* XTS with two equal key halves is insecure and refused by OpenSSL in FIPS mode; we
     * refuse it everywhere so behaviour does not depend on the provider. */
    if (CRYPTO_memcmp(key, key + 32, 32) == 0)
        return -EINVAL;
    for (int i = 0; i < 8; i++)
        tweak[i] = (uint8_t)(sector >> (8 * i));
    return cipher_run(EVP_aes_256_xts(), enc, key, tweak, NULL, 0, in, n, out, NULL);
}

int sov_aes256_xts_encrypt(const uint8_t key[SOV_XTS_KEY_LEN], uint64_t sector, const void *in,
                           size_t n, void *out)
{
    return xts_run(true, key, sector, in, n, out);
}

int sov_aes256_xts_decrypt(const uint8_t key[SOV_XTS_KEY_LEN], uint64_t sector, const void *in,
                           size_t n, void *out)
{
    return xts_run(false, key, sector, in, n, out);
}

int sov_random_bytes(void *p, size_t n)
{
    if (n > INT32_MAX)
        return -EINVAL;
    return RAND_bytes(p, (int)n) == 1 ? 0 : -EIO;
}

void sov_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sov_hex_decode(const char *hex, size_t hexlen, uint8_t *out)
{
    if (hexlen % 2)
        return -EINVAL;
    for (size_t i = 0; i < hexlen / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

bool sov_memeq_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
