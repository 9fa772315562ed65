/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side encryption for sov-s3: the master keyring, data key wrapping, AES-256-GCM data
 * streams of authenticated blocks and SSE-C customer keys. Formats are described in sse.h. */
#include "sse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sov/bytes.h"
#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/macro.h"

#define HEADER_MAGIC   "SOVE"
#define HEADER_VERSION 1
#define WRAP_VERSION   1
#define NONCE_PREFIX   4
#define CURRENT_FILE   "current"
#define TMP_PREFIX     ".tmp-"

static const char LABEL_STREAM_KEY[] = "sov-sse-v1 stream key";
static const char LABEL_STREAM_NONCE[] = "sov-sse-v1 stream nonce";
static const char LABEL_WRAP[] = "sov-sse-v1 wrap";
static const char LABEL_CUSTOMER_CHECK[] = "sov-sse-v1 customer check";
static const char LABEL_CUSTOMER_DATA[] = "sov-sse-v1 customer data";

_Static_assert(SSE_WRAPPED_LEN == 1 + SOV_GCM_IV_LEN + SSE_KEY_LEN + SOV_GCM_TAG_LEN,
               "wrapped key layout");
_Static_assert(SSE_TAG_LEN == SOV_GCM_TAG_LEN, "GCM tag length");

void sse_key_wipe(void *key, size_t n)
{
    if (key && n)
        OPENSSL_cleanse(key, n);
}

/* HMAC-SHA256(key, label NUL salt [u32le(part)]): the one key derivation of this module. */
static int derive(const uint8_t key[SSE_KEY_LEN], const char *label, const uint8_t *salt,
                  const uint32_t *part, uint8_t ret[SOV_SHA256_LEN])
{
    uint8_t msg[64 + SSE_SALT_LEN + 4];
    size_t ll = strlen(label) + 1, n = ll + SSE_SALT_LEN;

    if (ll > 64)
        return -EINVAL;
    memcpy(msg, label, ll);
    memcpy(msg + ll, salt, SSE_SALT_LEN);
    if (part) {
        sov_put_le32(msg + n, *part);
        n += 4;
    }
    return sov_hmac_sha256(key, SSE_KEY_LEN, msg, n, ret);
}

/* ---- base64 ---- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void sse_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            w |= in[i + 2];
        out[o++] = b64_chars[(w >> 18) & 63];
        out[o++] = b64_chars[(w >> 12) & 63];
        out[o++] = i + 1 < n ? b64_chars[(w >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_chars[w & 63] : '=';
    }
    out[o] = '\0';
}

int sse_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t o = 0;

    if (len % 4 || len / 4 * 3 > INT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (in[i + j] == '=') {
                /* Padding only in the last quantum's last two places. */
                if (i + 4 != len || j < 2)
                    return -EINVAL;
                pad++;
                v[j] = 0;
                continue;
            }
            if (pad)
                return -EINVAL;
            v[j] = b64_value(in[i + j]);
            if (v[j] < 0)
                return -EINVAL;
        }
        /* Canonical form only: the bits padding drops must be zero. */
        if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3)))
            return -EINVAL;
        size_t nb = 3 - (size_t)pad;
        if (o + nb > cap)
            return -EINVAL;
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (nb > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (nb > 2)
            out[o++] = (uint8_t)w;
    }
    return (int)o;
}

/* Decodes a JSON string member into exactly n bytes. */
static int json_bytes(const json_t *obj, const char *name, uint8_t *out, size_t n)
{
    const json_t *v = json_object_get(obj, name);
    uint8_t tmp[128];
    int r;

    if (!json_is_string(v) || n > sizeof(tmp))
        return -EINVAL;
    r = sse_base64_decode(json_string_value(v), json_string_length(v), tmp, sizeof(tmp));
    if (r != (int)n) {
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return -EINVAL;
    }
    memcpy(out, tmp, n);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
}

static int json_set_bytes(json_t *obj, const char *name, const uint8_t *p, size_t n)
{
    char b64[4 * ((128 + 2) / 3) + 1];
    if (n > 128)
        return -EINVAL;
    sse_base64_encode(p, n, b64);
    return json_object_set_new(obj, name, json_string(b64)) == 0 ? 0 : -ENOMEM;
}

/* ---- sizes and ranges ---- */

uint64_t sse_block_count(uint64_t plain_size)
{
    return plain_size == 0 ? 1 : (plain_size - 1) / SSE_BLOCK + 1;
}

uint64_t sse_stored_size(uint64_t plain_size)
{
    return SSE_HEADER_LEN + plain_size + SSE_TAG_LEN * sse_block_count(plain_size);
}

int sse_plain_size(uint64_t stored_size, uint64_t *ret_plain)
{
    uint64_t d, full, rem;

    if (stored_size < SSE_HEADER_LEN + SSE_TAG_LEN)
        return -EBADMSG;
    d = stored_size - SSE_HEADER_LEN;
    full = d / SSE_STORED_BLOCK;
    rem = d % SSE_STORED_BLOCK;
    if (rem == 0) {
        *ret_plain = full * SSE_BLOCK;
        return 0;
    }
    /* A short last block has at least its tag; an empty one exists only in an empty stream. */
    if (rem < SSE_TAG_LEN || (rem == SSE_TAG_LEN && full > 0))
        return -EBADMSG;
    *ret_plain = full * SSE_BLOCK + rem - SSE_TAG_LEN;
    return 0;
}

/* Stored length of block index of a stream of plain_size bytes. */
static uint64_t stored_block_len(uint64_t plain_size, uint64_t index)
{
    if (index + 1 < sse_block_count(plain_size))
        return SSE_STORED_BLOCK;
    return plain_size - index * SSE_BLOCK + SSE_TAG_LEN;
}

int sse_range_map(uint64_t plain_size, uint64_t start, uint64_t end, SseRange *ret)
{
    uint64_t first, last;

    if (start >= end || end > plain_size)
        return -EINVAL;
    first = start / SSE_BLOCK;
    last = (end - 1) / SSE_BLOCK;
    *ret = (SseRange){
        .first_block = first,
        .nblocks = last - first + 1,
        .stored_off = SSE_HEADER_LEN + first * SSE_STORED_BLOCK,
        .stored_len = (last - first) * SSE_STORED_BLOCK + stored_block_len(plain_size, last),
        .skip = start - first * SSE_BLOCK,
    };
    return 0;
}

/* ---- data streams ---- */

/* Invariant: ctx holds the stream key (AES-256-GCM, 12-byte IVs); blocks only set the IV. */
struct SseStream {
    EVP_CIPHER_CTX *ctx;
    uint8_t nonce_prefix[NONCE_PREFIX];
};

SseStream *sse_stream_free(SseStream *s)
{
    if (s) {
        EVP_CIPHER_CTX_free(s->ctx);
        OPENSSL_cleanse(s, sizeof(*s));
        free(s);
    }
    return NULL;
}

static int stream_derive(const uint8_t base_key[SSE_KEY_LEN], uint32_t part,
                         const uint8_t salt[SSE_SALT_LEN], SseStream **ret)
{
    uint8_t key[SOV_SHA256_LEN], nonce[SOV_SHA256_LEN];
    SseStream *s;
    int r;

    r = derive(base_key, LABEL_STREAM_KEY, salt, &part, key);
    if (r >= 0)
        r = derive(base_key, LABEL_STREAM_NONCE, salt, &part, nonce);
    if (r < 0)
        goto out;
    s = calloc(1, sizeof(*s));
    if (!s) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(s->nonce_prefix, nonce, NONCE_PREFIX);
    s->ctx = EVP_CIPHER_CTX_new();
    if (!s->ctx || EVP_CipherInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL, 1) != 1) {
        sse_stream_free(s);
        r = -EIO;
        goto out;
    }
    *ret = s;
out:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(nonce, sizeof(nonce));
    return r;
}

int sse_stream_new(const uint8_t base_key[SSE_KEY_LEN], uint32_t part,
                   uint8_t ret_header[SSE_HEADER_LEN], SseStream **ret)
{
    uint8_t hdr[SSE_HEADER_LEN] = {0};
    int r;

    memcpy(hdr, HEADER_MAGIC, 4);
    hdr[4] = HEADER_VERSION;
    r = sov_random_bytes(hdr + 8, SSE_SALT_LEN);
    if (r < 0)
        return r;
    r = stream_derive(base_key, part, hdr + 8, ret);
    if (r < 0)
        return r;
    memcpy(ret_header, hdr, sizeof(hdr));
    return 0;
}

int sse_stream_open(const uint8_t base_key[SSE_KEY_LEN], uint32_t part,
                    const uint8_t header[SSE_HEADER_LEN], SseStream **ret)
{
    static const uint8_t zero[8];

    if (memcmp(header, HEADER_MAGIC, 4) != 0 || header[4] != HEADER_VERSION ||
        memcmp(header + 5, zero, 3) != 0 || memcmp(header + 24, zero, 8) != 0)
        return -EBADMSG;
    return stream_derive(base_key, part, header + 8, ret);
}

/* One GCM pass over a block; tag is written (enc) or checked. */
static int block_run(SseStream *s, bool enc, uint64_t index, bool final, const uint8_t *in,
                     size_t n, uint8_t *out, uint8_t tag[SSE_TAG_LEN])
{
    uint8_t iv[SOV_GCM_IV_LEN], aad[9], fin[32];
    int len;

    memcpy(iv, s->nonce_prefix, NONCE_PREFIX);
    sov_put_le64(iv + NONCE_PREFIX, index);
    sov_put_le64(aad, index);
    aad[8] = final ? 1 : 0;
    if (EVP_CipherInit_ex(s->ctx, NULL, NULL, NULL, iv, enc ? 1 : 0) != 1 ||
        EVP_CipherUpdate(s->ctx, NULL, &len, aad, sizeof(aad)) != 1 ||
        (n && EVP_CipherUpdate(s->ctx, out, &len, in, (int)n) != 1))
        return -EIO;
    if (!enc && EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_SET_TAG, SSE_TAG_LEN, tag) != 1)
        return -EIO;
    if (EVP_CipherFinal_ex(s->ctx, fin, &len) != 1)
        return enc ? -EIO : -EBADMSG;
    if (enc && EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, SSE_TAG_LEN, tag) != 1)
        return -EIO;
    return 0;
}

int sse_block_encrypt(SseStream *s, uint64_t index, bool final, const void *in, size_t n, void *out)
{
    if (n > SSE_BLOCK || (!final && n != SSE_BLOCK))
        return -EINVAL;
    return block_run(s, true, index, final, in, n, out, (uint8_t *)out + n);
}

int sse_block_decrypt(SseStream *s, uint64_t index, bool final, const void *in, size_t stored_n,
                      void *out)
{
    uint8_t tag[SSE_TAG_LEN];
    size_t n;
    int r;

    if (stored_n < SSE_TAG_LEN || stored_n > SSE_STORED_BLOCK ||
        (!final && stored_n != SSE_STORED_BLOCK))
        return -EINVAL;
    n = stored_n - SSE_TAG_LEN;
    memcpy(tag, (const uint8_t *)in + n, SSE_TAG_LEN);
    r = block_run(s, false, index, final, in, n, out, tag);
    if (r < 0 && n)
        OPENSSL_cleanse(out, n); /* never leave unauthenticated plaintext behind */
    return r;
}

int sse_stream_decrypt_run(SseStream *s, uint64_t plain_size, uint64_t first_block, const void *in,
                           size_t n, void *out, size_t *ret_n)
{
    uint64_t count = sse_block_count(plain_size);
    const uint8_t *src = in;
    uint8_t *dst = out;
    size_t soff = 0, poff = 0;
    bool inplace = in == out;

    if (n == 0)
        return -EINVAL;
    for (uint64_t idx = first_block; soff < n; idx++) {
        if (idx >= count)
            return -EINVAL;
        size_t len = (size_t)stored_block_len(plain_size, idx);
        if (n - soff < len)
            return -EINVAL;
        /* In place, each block decrypts where it lies and then moves down over the tags. */
        uint8_t *to = inplace ? dst + soff : dst + poff;
        int r = sse_block_decrypt(s, idx, idx + 1 == count, src + soff, len, to);
        if (r < 0)
            return r;
        if (inplace && soff != poff)
            memmove(dst + poff, dst + soff, len - SSE_TAG_LEN);
        soff += len;
        poff += len - SSE_TAG_LEN;
    }
    *ret_n = poff;
    return 0;
}

/* ---- streaming encryptor ---- */

/* Invariants: fill <= SSE_BLOCK plaintext bytes wait in buf (room for the tag after them);
 * index blocks went out; the header went out once header_sent; a full buffer is only encrypted
 * when more data arrives (not final) or at finish (final). */
struct SseEncryptor {
    SseStream *s;
    uint8_t header[SSE_HEADER_LEN];
    bool header_sent, finished;
    int error;
    SseWriteFn write;
    void *ud;
    uint8_t *buf;
    size_t fill;
    uint64_t index, plain, stored;
};

SseEncryptor *sse_encryptor_free(SseEncryptor *e)
{
    if (e) {
        sse_stream_free(e->s);
        if (e->buf) {
            OPENSSL_cleanse(e->buf, SSE_STORED_BLOCK);
            free(e->buf);
        }
        free(e);
    }
    return NULL;
}

int sse_encryptor_new(const uint8_t base_key[SSE_KEY_LEN], uint32_t part, SseWriteFn write,
                      void *ud, SseEncryptor **ret)
{
    SseEncryptor *e = calloc(1, sizeof(*e));
    int r;

    if (!e)
        return -ENOMEM;
    e->write = write;
    e->ud = ud;
    e->buf = malloc(SSE_STORED_BLOCK);
    if (!e->buf) {
        sse_encryptor_free(e);
        return -ENOMEM;
    }
    r = sse_stream_new(base_key, part, e->header, &e->s);
    if (r < 0) {
        sse_encryptor_free(e);
        return r;
    }
    *ret = e;
    return 0;
}

static int enc_emit(SseEncryptor *e, const void *p, size_t n)
{
    int r = e->write(e->ud, p, n);
    if (r < 0)
        return e->error = r;
    e->stored += n;
    return 0;
}

static int enc_header(SseEncryptor *e)
{
    if (e->header_sent)
        return 0;
    e->header_sent = true;
    return enc_emit(e, e->header, SSE_HEADER_LEN);
}

/* Encrypts n plaintext bytes at p (p may be buf) as the next block into buf and emits it. */
static int enc_block(SseEncryptor *e, const void *p, size_t n, bool final)
{
    int r = sse_block_encrypt(e->s, e->index, final, p, n, e->buf);
    if (r < 0)
        return e->error = r;
    e->index++;
    e->fill = 0;
    return enc_emit(e, e->buf, n + SSE_TAG_LEN);
}

/* An encryptor that can take more: no earlier error, not finished, its header written. */
static int enc_begin(SseEncryptor *e)
{
    if (e->error)
        return e->error;
    if (e->finished)
        return -EINVAL;
    return enc_header(e);
}

int sse_encryptor_write(SseEncryptor *e, const void *p, size_t n)
{
    const uint8_t *src = p;
    int r;

    if ((r = enc_begin(e)) < 0)
        return r;
    while (n > 0) {
        if (e->fill == SSE_BLOCK) {
            r = enc_block(e, e->buf, SSE_BLOCK, false);
            if (r < 0)
                return r;
        }
        if (e->fill == 0 && n > SSE_BLOCK) {
            /* More follows this block, so it is not final: no need to copy it. */
            r = enc_block(e, src, SSE_BLOCK, false);
            if (r < 0)
                return r;
            src += SSE_BLOCK;
            n -= SSE_BLOCK;
            e->plain += SSE_BLOCK;
            continue;
        }
        size_t take = SOV_MIN((size_t)SSE_BLOCK - e->fill, n);
        memcpy(e->buf + e->fill, src, take);
        e->fill += take;
        e->plain += take;
        src += take;
        n -= take;
    }
    return 0;
}

int sse_encryptor_finish(SseEncryptor *e)
{
    int r;

    if ((r = enc_begin(e)) < 0)
        return r;
    e->finished = true;
    /* The held-back block is the last one; it is empty only when the whole stream is. */
    return enc_block(e, e->buf, e->fill, true);
}

uint64_t sse_encryptor_plain_size(const SseEncryptor *e)
{
    return e->plain;
}

uint64_t sse_encryptor_stored_size(const SseEncryptor *e)
{
    return e->stored;
}

/* ---- keyring ---- */

typedef struct SseMasterKey {
    char kid[SSE_KID_LEN + 1];
    uint8_t key[SSE_KEY_LEN];
} SseMasterKey;

/* Invariants: keys[0..n) are every key file of the directory, each id once; keys[cur] is the
 * key "current" names. lock guards keys, n, cap and cur; rotate_lock orders rotations. */
struct SseKeyring {
    int dfd;
    pthread_rwlock_t lock;
    pthread_mutex_t rotate_lock;
    SseMasterKey *keys;
    size_t n, cap, cur;
};

static bool kid_valid(const char *s, size_t len)
{
    if (len != SSE_KID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static SseMasterKey *keyring_find(SseKeyring *kr, const char *kid)
{
    for (size_t i = 0; i < kr->n; i++)
        if (strcmp(kr->keys[i].kid, kid) == 0)
            return &kr->keys[i];
    return NULL;
}

static int keyring_add(SseKeyring *kr, const char *kid, const uint8_t key[SSE_KEY_LEN])
{
    if (kr->n == kr->cap) {
        size_t cap = kr->cap ? kr->cap * 2 : 8;
        SseMasterKey *k = calloc(cap, sizeof(*k));
        if (!k)
            return -ENOMEM;
        if (kr->n)
            memcpy(k, kr->keys, kr->n * sizeof(*k));
        if (kr->keys) {
            OPENSSL_cleanse(kr->keys, kr->cap * sizeof(*k));
            free(kr->keys);
        }
        kr->keys = k;
        kr->cap = cap;
    }
    snprintf(kr->keys[kr->n].kid, sizeof(kr->keys[kr->n].kid), "%s", kid);
    memcpy(kr->keys[kr->n].key, key, SSE_KEY_LEN);
    kr->n++;
    return 0;
}

SseKeyring *sse_keyring_free(SseKeyring *kr)
{
    if (kr) {
        if (kr->keys) {
            OPENSSL_cleanse(kr->keys, kr->cap * sizeof(*kr->keys));
            free(kr->keys);
        }
        if (kr->dfd >= 0)
            close(kr->dfd);
        pthread_rwlock_destroy(&kr->lock);
        pthread_mutex_destroy(&kr->rotate_lock);
        free(kr);
    }
    return NULL;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes name in the directory atomically and durably: temporary file, fsync, rename, fsync of
 * the directory. */
static int write_file(int dfd, const char *name, const void *p, size_t n)
{
    char tmp[64];
    int fd, r;

    snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s", name);
    (void)unlinkat(dfd, tmp, 0);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    r = write_all(fd, p, n);
    if (r >= 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r >= 0)
        r = -errno;
    if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
        r = -errno;
    if (r < 0) {
        (void)unlinkat(dfd, tmp, 0);
        return r;
    }
    return fsync(dfd) < 0 ? -errno : 0;
}

/* Reads a whole small file of the directory into buf; returns its length. */
static int read_small(int dfd, const char *name, bool check_mode, uint8_t *buf, size_t cap)
{
    struct stat st;
    size_t got = 0;
    int fd, r = 0;

    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EBADMSG;
        goto out;
    }
    if (check_mode && (st.st_mode & 077)) {
        r = -EPERM;
        goto out;
    }
    if ((uint64_t)st.st_size > cap) {
        r = -EBADMSG;
        goto out;
    }
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r = (int)got;
out:
    close(fd);
    return r;
}

static int keyring_load(SseKeyring *kr)
{
    int fd = dup(kr->dfd), r = 0;
    struct dirent *de;
    DIR *d;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while ((errno = 0, de = readdir(d))) {
        uint8_t key[SSE_KEY_LEN + 1];
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            /* Left by a crash before its rename: nothing refers to it. */
            (void)unlinkat(kr->dfd, de->d_name, 0);
            continue;
        }
        if (!kid_valid(de->d_name, strlen(de->d_name)))
            continue;
        r = read_small(kr->dfd, de->d_name, true, key, sizeof(key));
        if (r >= 0 && r != SSE_KEY_LEN)
            r = -EBADMSG;
        if (r >= 0)
            r = keyring_add(kr, de->d_name, key);
        OPENSSL_cleanse(key, sizeof(key));
        if (r < 0)
            break;
    }
    if (r >= 0 && errno)
        r = -errno;
    closedir(d);
    return r < 0 ? r : 0;
}

static int write_current(SseKeyring *kr, const char *kid)
{
    char line[SSE_KID_LEN + 2];
    snprintf(line, sizeof(line), "%s\n", kid);
    return write_file(kr->dfd, CURRENT_FILE, line, SSE_KID_LEN + 1);
}

/* A new key with a fresh id, written to its file (not yet current). */
static int key_create(SseKeyring *kr, char kid[SSE_KID_LEN + 1], uint8_t key[SSE_KEY_LEN])
{
    uint8_t id[SSE_KID_LEN / 2];
    int r;

    do {
        r = sov_random_bytes(id, sizeof(id));
        if (r < 0)
            return r;
        sov_hex_encode(id, sizeof(id), kid);
        pthread_rwlock_rdlock(&kr->lock);
        bool taken = keyring_find(kr, kid) != NULL;
        pthread_rwlock_unlock(&kr->lock);
        if (!taken)
            break;
    } while (true);
    r = sov_random_bytes(key, SSE_KEY_LEN);
    if (r < 0)
        return r;
    return write_file(kr->dfd, kid, key, SSE_KEY_LEN);
}

/* Reads "current" and points cur at its key; an empty directory gets its first key and a lone
 * key without "current" (a crash between the two writes of the first key) becomes current. */
static int keyring_pick_current(SseKeyring *kr)
{
    uint8_t line[SSE_KID_LEN + 2];
    char kid[SSE_KID_LEN + 1];
    uint8_t key[SSE_KEY_LEN];
    int r;

    r = read_small(kr->dfd, CURRENT_FILE, false, line, sizeof(line));
    if (r == -ENOENT) {
        if (kr->n > 1)
            return -EBADMSG; /* which one? the operator must say */
        if (kr->n == 0) {
            r = key_create(kr, kid, key);
            if (r >= 0)
                r = keyring_add(kr, kid, key);
            OPENSSL_cleanse(key, sizeof(key));
            if (r < 0)
                return r;
        }
        r = write_current(kr, kr->keys[0].kid);
        if (r < 0)
            return r;
        kr->cur = 0;
        return 0;
    }
    if (r < 0)
        return r;
    size_t len = (size_t)r;
    if (len && line[len - 1] == '\n')
        len--;
    if (!kid_valid((const char *)line, len))
        return -EBADMSG;
    memcpy(kid, line, SSE_KID_LEN);
    kid[SSE_KID_LEN] = '\0';
    SseMasterKey *k = keyring_find(kr, kid);
    if (!k)
        return -EBADMSG;
    kr->cur = (size_t)(k - kr->keys);
    return 0;
}

int sse_keyring_open(const char *dir, SseKeyring **ret)
{
    SseKeyring *kr;
    struct stat st;
    bool created = false;
    int r;

    if (mkdir(dir, 0700) == 0)
        created = true;
    else if (errno != EEXIST)
        return -errno;
    kr = calloc(1, sizeof(*kr));
    if (!kr)
        return -ENOMEM;
    kr->dfd = -1;
    pthread_rwlock_init(&kr->lock, NULL);
    pthread_mutex_init(&kr->rotate_lock, NULL);
    kr->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (kr->dfd < 0) {
        r = -errno;
        goto fail;
    }
    if (fstat(kr->dfd, &st) < 0) {
        r = -errno;
        goto fail;
    }
    if (st.st_mode & 077) {
        r = -EPERM;
        goto fail;
    }
    if (created) {
        r = sov_fsync_parent(dir); /* losing the key directory loses the data */
        if (r < 0)
            goto fail;
    }
    r = keyring_load(kr);
    if (r < 0)
        goto fail;
    r = keyring_pick_current(kr);
    if (r < 0)
        goto fail;
    *ret = kr;
    return 0;
fail:
    sse_keyring_free(kr);
    return r;
}

int sse_keyring_rotate(SseKeyring *kr, char ret_kid[SSE_KID_LEN + 1])
{
    char kid[SSE_KID_LEN + 1];
    uint8_t key[SSE_KEY_LEN];
    int r;

    pthread_mutex_lock(&kr->rotate_lock);
    r = key_create(kr, kid, key);
    if (r < 0)
        goto out;
    pthread_rwlock_wrlock(&kr->lock);
    r = keyring_add(kr, kid, key);
    pthread_rwlock_unlock(&kr->lock);
    if (r < 0)
        goto out;
    /* Current only once the key file is durable; until "current" is, reopening keeps the old
     * current key, which is still valid. */
    r = write_current(kr, kid);
    if (r < 0)
        goto out;
    pthread_rwlock_wrlock(&kr->lock);
    kr->cur = kr->n - 1;
    pthread_rwlock_unlock(&kr->lock);
    if (ret_kid)
        memcpy(ret_kid, kid, sizeof(kid));
out:
    OPENSSL_cleanse(key, sizeof(key));
    pthread_mutex_unlock(&kr->rotate_lock);
    return r;
}

void sse_keyring_current(SseKeyring *kr, char ret_kid[SSE_KID_LEN + 1])
{
    pthread_rwlock_rdlock(&kr->lock);
    memcpy(ret_kid, kr->keys[kr->cur].kid, SSE_KID_LEN + 1);
    pthread_rwlock_unlock(&kr->lock);
}

size_t sse_keyring_count(SseKeyring *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    size_t n = kr->n;
    pthread_rwlock_unlock(&kr->lock);
    return n;
}

/* ---- wrapped data keys ---- */

static int append_netstring(SovBuf *out, const char *s)
{
    size_t n = strlen(s);
    int r = sov_buf_printf(out, "%zu:", n);
    if (r >= 0)
        r = sov_buf_append(out, s, n);
    if (r >= 0)
        r = sov_buf_putc(out, ',');
    return r;
}

int sse_context(const char *bucket, const char *key, const char *version, SovBuf *out)
{
    int r = append_netstring(out, bucket);
    if (r >= 0)
        r = append_netstring(out, key);
    if (r >= 0 && version)
        r = append_netstring(out, version);
    return r < 0 ? r : 0;
}

int sse_data_key_new(uint8_t ret_key[SSE_KEY_LEN])
{
    return sov_random_bytes(ret_key, SSE_KEY_LEN);
}

/* "sov-sse-v1 wrap" NUL kid context, into aad (room for SSE_MAX_CONTEXT + 64). */
static int wrap_aad(const char *kid, SovStr context, uint8_t *aad, size_t *ret_len)
{
    size_t ll = sizeof(LABEL_WRAP); /* with its NUL */

    if (context.len > SSE_MAX_CONTEXT)
        return -EINVAL;
    memcpy(aad, LABEL_WRAP, ll);
    memcpy(aad + ll, kid, SSE_KID_LEN);
    if (context.len)
        memcpy(aad + ll + SSE_KID_LEN, context.ptr, context.len);
    *ret_len = ll + SSE_KID_LEN + context.len;
    return 0;
}

int sse_key_wrap(SseKeyring *kr, const uint8_t key[SSE_KEY_LEN], SovStr context, SseWrappedKey *ret)
{
    uint8_t aad[SSE_MAX_CONTEXT + 64], wk[SSE_WRAPPED_LEN];
    uint8_t *nonce = wk + 1, *ct = nonce + SOV_GCM_IV_LEN, *tag = ct + SSE_KEY_LEN;
    char kid[SSE_KID_LEN + 1];
    size_t aadlen;
    int r;

    wk[0] = WRAP_VERSION;
    r = sov_random_bytes(nonce, SOV_GCM_IV_LEN);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&kr->lock);
    const SseMasterKey *mk = &kr->keys[kr->cur];
    memcpy(kid, mk->kid, sizeof(kid));
    r = wrap_aad(kid, context, aad, &aadlen);
    if (r >= 0)
        r = sov_aes256_gcm_encrypt(mk->key, nonce, aad, aadlen, key, SSE_KEY_LEN, ct, tag);
    pthread_rwlock_unlock(&kr->lock);
    if (r < 0)
        return r;
    memcpy(ret->kid, kid, sizeof(kid));
    memcpy(ret->wk, wk, sizeof(wk));
    return 0;
}

int sse_key_unwrap(SseKeyring *kr, const SseWrappedKey *w, SovStr context,
                   uint8_t ret_key[SSE_KEY_LEN])
{
    const uint8_t *nonce = w->wk + 1, *ct = nonce + SOV_GCM_IV_LEN, *tag = ct + SSE_KEY_LEN;
    uint8_t aad[SSE_MAX_CONTEXT + 64], key[SSE_KEY_LEN];
    size_t aadlen;
    int r;

    if (!kid_valid(w->kid, strnlen(w->kid, sizeof(w->kid))) || w->wk[0] != WRAP_VERSION)
        return -EBADMSG;
    r = wrap_aad(w->kid, context, aad, &aadlen);
    if (r < 0)
        return r;
    pthread_rwlock_rdlock(&kr->lock);
    const SseMasterKey *mk = keyring_find(kr, w->kid);
    if (!mk)
        r = -ENOKEY;
    else
        r = sov_aes256_gcm_decrypt(mk->key, nonce, aad, aadlen, ct, SSE_KEY_LEN, key, tag);
    pthread_rwlock_unlock(&kr->lock);
    if (r >= 0)
        memcpy(ret_key, key, SSE_KEY_LEN);
    OPENSSL_cleanse(key, sizeof(key));
    return r;
}

int sse_key_rewrap(SseKeyring *kr, const SseWrappedKey *w, SovStr old_context, SovStr new_context,
                   SseWrappedKey *ret)
{
    uint8_t key[SSE_KEY_LEN];
    int r = sse_key_unwrap(kr, w, old_context, key);
    if (r >= 0)
        r = sse_key_wrap(kr, key, new_context, ret);
    OPENSSL_cleanse(key, sizeof(key));
    return r;
}

int sse_wrapped_to_json(const SseWrappedKey *w, json_t **ret)
{
    json_t *j = json_object();
    if (!j || json_object_set_new(j, "kid", json_string(w->kid)) != 0 ||
        json_set_bytes(j, "wk", w->wk, SSE_WRAPPED_LEN) < 0) {
        json_decref(j);
        return -ENOMEM;
    }
    *ret = j;
    return 0;
}

int sse_wrapped_from_json(const json_t *j, SseWrappedKey *ret)
{
    const json_t *kid = json_object_get(j, "kid");
    SseWrappedKey w;

    if (!json_is_object(j) || json_object_size(j) != 2 || !json_is_string(kid) ||
        !kid_valid(json_string_value(kid), json_string_length(kid)))
        return -EINVAL;
    memcpy(w.kid, json_string_value(kid), SSE_KID_LEN + 1);
    if (json_bytes(j, "wk", w.wk, SSE_WRAPPED_LEN) < 0 || w.wk[0] != WRAP_VERSION)
        return -EINVAL;
    *ret = w;
    return 0;
}

/* ---- customer keys ---- */

static int sse_fail(SseError *err, int status, const char *code, const char *message)
{
    *err = (SseError){status, code, message};
    return -EINVAL;
}

int sse_s3_parse(const char *value, SseError *ret_err)
{
    if (value && strcmp(value, "AES256") == 0)
        return 0;
    if (value && (strcmp(value, "aws:kms") == 0 || strcmp(value, "aws:kms:dsse") == 0)) {
        sse_fail(ret_err, 501, "NotImplemented",
                 "Server-side encryption with KMS keys is not "
                 "implemented");
        return -EOPNOTSUPP;
    }
    return sse_fail(ret_err, 400, "InvalidEncryptionAlgorithmError",
                    "The encryption request you specified is not valid. The valid value is "
                    "AES256.");
}

int sse_customer_parse(const char *alg, const char *key_b64, const char *md5_b64,
                       SseCustomerKey *ret, SseError *ret_err)
{
    uint8_t key[SSE_KEY_LEN + 3], md5[16 + 3], want[SOV_MD5_LEN];
    int r;

    if (!alg)
        return sse_fail(ret_err, 400, "InvalidArgument",
                        "Requests specifying Server Side Encryption with Customer provided keys "
                        "must provide a valid encryption algorithm.");
    if (strcmp(alg, "AES256") != 0)
        return sse_fail(ret_err, 400, "InvalidEncryptionAlgorithmError",
                        "The encryption request you specified is not valid. The valid value is "
                        "AES256.");
    if (!key_b64)
        return sse_fail(ret_err, 400, "InvalidArgument",
                        "Requests specifying Server Side Encryption with Customer provided keys "
                        "must provide an appropriate secret key.");
    if (!md5_b64)
        return sse_fail(ret_err, 400, "InvalidArgument",
                        "Requests specifying Server Side Encryption with Customer provided keys "
                        "must provide the client calculated MD5 of the secret key.");
    r = sse_base64_decode(key_b64, strlen(key_b64), key, sizeof(key));
    if (r != SSE_KEY_LEN) {
        OPENSSL_cleanse(key, sizeof(key));
        return sse_fail(ret_err, 400, "InvalidArgument",
                        "The secret key was invalid for the specified algorithm.");
    }
    r = sse_base64_decode(md5_b64, strlen(md5_b64), md5, sizeof(md5));
    if (r != SOV_MD5_LEN || sov_md5(key, SSE_KEY_LEN, want) < 0 ||
        !sov_memeq_ct(want, md5, SOV_MD5_LEN)) {
        OPENSSL_cleanse(key, sizeof(key));
        return sse_fail(ret_err, 400, "InvalidArgument",
                        "The calculated MD5 hash of the key did not match the hash that was "
                        "provided.");
    }
    memcpy(ret->key, key, SSE_KEY_LEN);
    memcpy(ret->md5, want, SOV_MD5_LEN);
    sse_base64_encode(want, SOV_MD5_LEN, ret->md5_b64);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

int sse_customer_seal(const SseCustomerKey *ck, SseCustomerRecord *ret_rec,
                      uint8_t ret_data_key[SSE_KEY_LEN])
{
    SseCustomerRecord rec;
    uint8_t dk[SOV_SHA256_LEN];
    int r;

    memcpy(rec.md5, ck->md5, sizeof(rec.md5));
    r = sov_random_bytes(rec.salt, sizeof(rec.salt));
    if (r >= 0)
        r = derive(ck->key, LABEL_CUSTOMER_CHECK, rec.salt, NULL, rec.check);
    if (r >= 0)
        r = derive(ck->key, LABEL_CUSTOMER_DATA, rec.salt, NULL, dk);
    if (r >= 0) {
        *ret_rec = rec;
        memcpy(ret_data_key, dk, SSE_KEY_LEN);
    }
    OPENSSL_cleanse(dk, sizeof(dk));
    return r;
}

int sse_customer_open(const SseCustomerKey *ck, const SseCustomerRecord *rec,
                      uint8_t ret_data_key[SSE_KEY_LEN])
{
    uint8_t check[SOV_SHA256_LEN], dk[SOV_SHA256_LEN];
    int r;

    r = derive(ck->key, LABEL_CUSTOMER_CHECK, rec->salt, NULL, check);
    if (r < 0)
        return r;
    if (!sov_memeq_ct(check, rec->check, sizeof(check)))
        return -EACCES;
    r = derive(ck->key, LABEL_CUSTOMER_DATA, rec->salt, NULL, dk);
    if (r >= 0)
        memcpy(ret_data_key, dk, SSE_KEY_LEN);
    OPENSSL_cleanse(dk, sizeof(dk));
    return r;
}

int sse_customer_to_json(const SseCustomerRecord *rec, json_t **ret)
{
    json_t *j = json_object();
    if (!j || json_set_bytes(j, "kmd5", rec->md5, sizeof(rec->md5)) < 0 ||
        json_set_bytes(j, "salt", rec->salt, sizeof(rec->salt)) < 0 ||
        json_set_bytes(j, "kh", rec->check, sizeof(rec->check)) < 0) {
        json_decref(j);
        return -ENOMEM;
    }
    *ret = j;
    return 0;
}

int sse_customer_from_json(const json_t *j, SseCustomerRecord *ret)
{
    SseCustomerRecord rec;

    if (!json_is_object(j) || json_object_size(j) != 3 ||
        json_bytes(j, "kmd5", rec.md5, sizeof(rec.md5)) < 0 ||
        json_bytes(j, "salt", rec.salt, sizeof(rec.salt)) < 0 ||
        json_bytes(j, "kh", rec.check, sizeof(rec.check)) < 0)
        return -EINVAL;
    *ret = rec;
    return 0;
}
