/* SPDX-License-Identifier: Apache-2.0 */
/* sov-s3 server-side encryption: keyring files, key wrapping, block streams (round trips,
 * streaming against one-shot, tampering), range mapping and SSE-C header validation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/s3/sse.h"
#include "sov/crypto.h"

#define B SSE_BLOCK

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

typedef struct TmpDir {
    char root[64];
    char keys[96];
} TmpDir;

static void tmp_make(TmpDir *t)
{
    snprintf(t->root, sizeof(t->root), "/tmp/test_s3sse.XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->keys, sizeof(t->keys), "%s/keys", t->root);
}

static void tmp_remove(TmpDir *t)
{
    nftw(t->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_bytes(const char *path, const void *p, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static size_t read_bytes(const char *path, void *p, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, p, cap);
    assert_true(n >= 0);
    close(fd);
    return (size_t)n;
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

static int collect(void *ud, const void *p, size_t n)
{
    return sov_buf_append(ud, p, n);
}

/* Encrypts data in chunks of the given sizes (cycled) and returns the stored bytes. */
static void encrypt_chunks(const uint8_t key[SSE_KEY_LEN], uint32_t part, const uint8_t *data,
                           size_t n, const size_t *chunks, size_t nchunks, SovBuf *out)
{
    SseEncryptor *e;
    size_t off = 0, c = 0;

    sov_buf_init(out, 0);
    assert_int_equal(sse_encryptor_new(key, part, collect, out, &e), 0);
    while (off < n) {
        size_t want = chunks[c++ % nchunks], take = SOV_MIN(want, n - off);
        assert_int_equal(sse_encryptor_write(e, data + off, take), 0);
        off += take;
    }
    assert_int_equal(sse_encryptor_finish(e), 0);
    assert_int_equal(sse_encryptor_plain_size(e), n);
    assert_int_equal(sse_encryptor_stored_size(e), out->len);
    sse_encryptor_free(e);
}

static void encrypt_all(const uint8_t key[SSE_KEY_LEN], uint32_t part, const uint8_t *data,
                        size_t n, SovBuf *out)
{
    size_t whole = n ? n : 1;
    encrypt_chunks(key, part, data, n, &whole, 1, out);
}

/* Decrypts a whole stored stream; returns the status and the plaintext. */
static int decrypt_all(const uint8_t key[SSE_KEY_LEN], uint32_t part, const uint8_t *stored,
                       size_t n, uint64_t plain_size, uint8_t **ret)
{
    SseStream *s;
    size_t got = 0;
    int r;

    *ret = NULL;
    if (n < SSE_HEADER_LEN)
        return -EBADMSG;
    r = sse_stream_open(key, part, stored, &s);
    if (r < 0)
        return r;
    uint8_t *out = malloc(n);
    assert_non_null(out);
    r = sse_stream_decrypt_run(s, plain_size, 0, stored + SSE_HEADER_LEN, n - SSE_HEADER_LEN, out,
                               &got);
    sse_stream_free(s);
    if (r < 0) {
        free(out);
        return r;
    }
    assert_int_equal(got, plain_size);
    *ret = out;
    return 0;
}

static void key_of(uint8_t key[SSE_KEY_LEN], uint8_t v)
{
    memset(key, v, SSE_KEY_LEN);
}

/* ---- keyring ---- */

static void test_keyring_create_reopen(void **state)
{
    (void)state;
    TmpDir t;
    SseKeyring *kr;
    SseWrappedKey w;
    char kid[SSE_KID_LEN + 1], kid2[SSE_KID_LEN + 1], path[160], line[64];
    uint8_t dk[SSE_KEY_LEN], back[SSE_KEY_LEN], raw[64];
    struct stat st;
    SovStr ctx = SOV_STR("6:bucket,3:key,");

    tmp_make(&t);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_keyring_count(kr), 1);
    sse_keyring_current(kr, kid);
    assert_int_equal(strlen(kid), SSE_KID_LEN);
    assert_int_equal(stat(t.keys, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/%s", t.keys, kid);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(read_bytes(path, raw, sizeof(raw)), SSE_KEY_LEN);
    snprintf(path, sizeof(path), "%s/current", t.keys);
    size_t n = read_bytes(path, line, sizeof(line) - 1);
    line[n] = '\0';
    assert_int_equal(n, SSE_KID_LEN + 1);
    assert_memory_equal(line, kid, SSE_KID_LEN);
    assert_int_equal(line[SSE_KID_LEN], '\n');

    assert_int_equal(sse_data_key_new(dk), 0);
    assert_int_equal(sse_key_wrap(kr, dk, ctx, &w), 0);
    assert_string_equal(w.kid, kid);
    /* The wrapped key holds neither the data key nor the master key. */
    assert_null(memmem(w.wk, sizeof(w.wk), dk, 8));
    assert_null(memmem(w.wk, sizeof(w.wk), raw, 8));
    sse_keyring_free(kr);

    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_keyring_count(kr), 1);
    sse_keyring_current(kr, kid2);
    assert_string_equal(kid, kid2);
    assert_int_equal(sse_key_unwrap(kr, &w, ctx, back), 0);
    assert_memory_equal(dk, back, SSE_KEY_LEN);
    sse_keyring_free(kr);
    tmp_remove(&t);
}

static void test_keyring_rotate(void **state)
{
    (void)state;
    TmpDir t;
    SseKeyring *kr;
    SseWrappedKey w1, w2;
    char kid1[SSE_KID_LEN + 1], kid2[SSE_KID_LEN + 1], cur[SSE_KID_LEN + 1];
    uint8_t dk[SSE_KEY_LEN], back[SSE_KEY_LEN], *plain, *dec;
    SovStr ctx = SOV_STR("ctx-a");
    size_t n = 2 * B + 77;
    SovBuf stored;

    tmp_make(&t);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    sse_keyring_current(kr, kid1);
    assert_int_equal(sse_data_key_new(dk), 0);
    assert_int_equal(sse_key_wrap(kr, dk, ctx, &w1), 0);
    plain = pattern(n, 7);
    encrypt_all(dk, 0, plain, n, &stored);

    assert_int_equal(sse_keyring_rotate(kr, kid2), 0);
    assert_string_not_equal(kid1, kid2);
    assert_int_equal(sse_keyring_count(kr), 2);
    sse_keyring_current(kr, cur);
    assert_string_equal(cur, kid2);
    /* Old wrapped keys still unwrap; rewrap moves them to the current key. */
    assert_int_equal(sse_key_unwrap(kr, &w1, ctx, back), 0);
    assert_memory_equal(back, dk, SSE_KEY_LEN);
    assert_int_equal(sse_key_rewrap(kr, &w1, ctx, ctx, &w2), 0);
    assert_string_equal(w2.kid, kid2);
    assert_memory_not_equal(w1.wk, w2.wk, SSE_WRAPPED_LEN);
    sse_keyring_free(kr);

    /* After a reopen the new key is current and both wrapped forms unwrap to the key that still
     * decrypts the data written before the rotation. */
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_keyring_count(kr), 2);
    sse_keyring_current(kr, cur);
    assert_string_equal(cur, kid2);
    memset(back, 0, sizeof(back));
    assert_int_equal(sse_key_unwrap(kr, &w2, ctx, back), 0);
    assert_int_equal(decrypt_all(back, 0, (uint8_t *)stored.ptr, stored.len, n, &dec), 0);
    assert_memory_equal(dec, plain, n);
    free(dec);
    assert_int_equal(sse_key_unwrap(kr, &w1, ctx, back), 0);
    assert_memory_equal(back, dk, SSE_KEY_LEN);
    /* A rewrap to another context: the old context no longer opens it. */
    assert_int_equal(sse_key_rewrap(kr, &w2, ctx, SOV_STR("ctx-b"), &w1), 0);
    assert_int_equal(sse_key_unwrap(kr, &w1, ctx, back), -EBADMSG);
    assert_int_equal(sse_key_unwrap(kr, &w1, SOV_STR("ctx-b"), back), 0);
    assert_memory_equal(back, dk, SSE_KEY_LEN);
    sse_keyring_free(kr);
    sov_buf_release(&stored);
    free(plain);
    tmp_remove(&t);
}

static void test_keyring_refuses(void **state)
{
    (void)state;
    TmpDir t;
    SseKeyring *kr;
    char kid[SSE_KID_LEN + 1], path[200], tmp[200];
    uint8_t key[SSE_KEY_LEN];
    struct stat st;

    tmp_make(&t);
    key_of(key, 3);

    /* A directory others can read. */
    assert_int_equal(mkdir(t.keys, 0700), 0);
    assert_int_equal(chmod(t.keys, 0755), 0);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EPERM);
    assert_int_equal(chmod(t.keys, 0700), 0);

    /* One key and no "current" (a crash after the first key): adopted; a stale temporary file
     * is removed. */
    snprintf(path, sizeof(path), "%s/0123456789abcdef", t.keys);
    write_bytes(path, key, sizeof(key), 0600);
    snprintf(tmp, sizeof(tmp), "%s/.tmp-fedcba9876543210", t.keys);
    write_bytes(tmp, key, sizeof(key), 0600);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    sse_keyring_current(kr, kid);
    assert_string_equal(kid, "0123456789abcdef");
    assert_int_equal(stat(tmp, &st), -1);
    sse_keyring_free(kr);

    /* A key file others can read. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EPERM);
    assert_int_equal(chmod(path, 0600), 0);

    /* A key file of the wrong size. */
    write_bytes(path, key, 16, 0600);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EBADMSG);
    write_bytes(path, key, sizeof(key), 0600);

    /* "current" names a key that is not there. */
    snprintf(tmp, sizeof(tmp), "%s/current", t.keys);
    write_bytes(tmp, "aaaaaaaaaaaaaaaa\n", 17, 0600);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EBADMSG);
    write_bytes(tmp, "not a key id\n", 13, 0600);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EBADMSG);

    /* Two keys and no "current": ambiguous. */
    unlink(tmp);
    snprintf(path, sizeof(path), "%s/1111111111111111", t.keys);
    write_bytes(path, key, sizeof(key), 0600);
    assert_int_equal(sse_keyring_open(t.keys, &kr), -EBADMSG);
    /* Named: fine, and other files are ignored. */
    write_bytes(tmp, "1111111111111111", 16, 0600);
    snprintf(path, sizeof(path), "%s/README", t.keys);
    write_bytes(path, "x", 1, 0644);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_keyring_count(kr), 2);
    sse_keyring_current(kr, kid);
    assert_string_equal(kid, "1111111111111111");
    sse_keyring_free(kr);

    /* A missing parent directory. */
    snprintf(path, sizeof(path), "%s/no/such/keys", t.root);
    assert_int_equal(sse_keyring_open(path, &kr), -ENOENT);
    tmp_remove(&t);
}

/* ---- wrapping ---- */

static void test_wrap_tamper(void **state)
{
    (void)state;
    TmpDir t;
    SseKeyring *kr;
    SseWrappedKey w, bad;
    uint8_t dk[SSE_KEY_LEN], back[SSE_KEY_LEN];
    char big[SSE_MAX_CONTEXT + 1];
    SovBuf c1 = SOV_BUF_INIT, c2 = SOV_BUF_INIT;

    tmp_make(&t);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_data_key_new(dk), 0);
    assert_int_equal(sse_context("b", "a/b", "c", &c1), 0);
    assert_int_equal(sse_context("b", "a", "b/c", &c2), 0);
    assert_false(sov_str_eq(sov_buf_str(&c1), sov_buf_str(&c2)));
    assert_string_equal(c1.ptr, "1:b,3:a/b,1:c,");
    assert_int_equal(sse_key_wrap(kr, dk, sov_buf_str(&c1), &w), 0);
    assert_int_equal(sse_key_unwrap(kr, &w, sov_buf_str(&c1), back), 0);
    assert_memory_equal(back, dk, SSE_KEY_LEN);

    /* Wrong context (another object, no version). */
    assert_int_equal(sse_key_unwrap(kr, &w, sov_buf_str(&c2), back), -EBADMSG);
    sov_buf_reset(&c2);
    assert_int_equal(sse_context("b", "a/b", NULL, &c2), 0);
    assert_int_equal(sse_key_unwrap(kr, &w, sov_buf_str(&c2), back), -EBADMSG);
    /* Every byte matters. */
    for (size_t i = 0; i < SSE_WRAPPED_LEN; i++) {
        bad = w;
        bad.wk[i] ^= 0x01;
        memset(back, 0x5a, sizeof(back));
        assert_int_equal(sse_key_unwrap(kr, &bad, sov_buf_str(&c1), back), -EBADMSG);
        assert_false(memcmp(back, dk, SSE_KEY_LEN) == 0);
    }
    /* A master key we do not have, a malformed id. */
    bad = w;
    memcpy(bad.kid, "ffffffffffffffff", SSE_KID_LEN);
    if (strcmp(bad.kid, w.kid) != 0)
        assert_int_equal(sse_key_unwrap(kr, &bad, sov_buf_str(&c1), back), -ENOKEY);
    memcpy(bad.kid, "FFFFFFFFFFFFFFFF", SSE_KID_LEN);
    assert_int_equal(sse_key_unwrap(kr, &bad, sov_buf_str(&c1), back), -EBADMSG);
    /* After a rotation, claiming the new key for the old blob fails. */
    assert_int_equal(sse_keyring_rotate(kr, bad.kid), 0);
    memcpy(bad.wk, w.wk, SSE_WRAPPED_LEN);
    assert_int_equal(sse_key_unwrap(kr, &bad, sov_buf_str(&c1), back), -EBADMSG);
    /* Oversized contexts are refused. */
    memset(big, 'x', sizeof(big));
    assert_int_equal(sse_key_wrap(kr, dk, (SovStr){big, sizeof(big)}, &bad), -EINVAL);
    assert_int_equal(sse_key_unwrap(kr, &w, (SovStr){big, sizeof(big)}, back), -EINVAL);

    sov_buf_release(&c1);
    sov_buf_release(&c2);
    sse_keyring_free(kr);
    tmp_remove(&t);
}

static void test_wrapped_json(void **state)
{
    (void)state;
    TmpDir t;
    SseKeyring *kr;
    SseWrappedKey w, back;
    uint8_t dk[SSE_KEY_LEN];
    json_t *j;
    char wk_b64[128];

    tmp_make(&t);
    assert_int_equal(sse_keyring_open(t.keys, &kr), 0);
    assert_int_equal(sse_data_key_new(dk), 0);
    assert_int_equal(sse_key_wrap(kr, dk, SOV_STR("c"), &w), 0);
    assert_int_equal(sse_wrapped_to_json(&w, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "kid")), w.kid);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "wk"))), 84);
    assert_int_equal(sse_wrapped_from_json(j, &back), 0);
    assert_string_equal(back.kid, w.kid);
    assert_memory_equal(back.wk, w.wk, SSE_WRAPPED_LEN);
    snprintf(wk_b64, sizeof(wk_b64), "%s", json_string_value(json_object_get(j, "wk")));
    json_decref(j);

    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"kid\":\"0123456789abcdef\"}",
        "{\"kid\":\"0123456789abcdef\",\"wk\":\"AAAA\"}",
        "{\"kid\":\"0123456789abcdef\",\"wk\":\"!!!!\"}",
        "{\"kid\":\"0123456789abcdef\",\"wk\":5}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        j = json_loads(bad[i], 0, NULL);
        assert_non_null(j);
        assert_int_equal(sse_wrapped_from_json(j, &back), -EINVAL);
        json_decref(j);
    }
    /* A good wk with a bad kid, an extra member, a wrong version byte. */
    j = json_pack("{s:s,s:s}", "kid", "0123456789ABCDEF", "wk", wk_b64);
    assert_int_equal(sse_wrapped_from_json(j, &back), -EINVAL);
    json_decref(j);
    j = json_pack("{s:s,s:s,s:i}", "kid", w.kid, "wk", wk_b64, "x", 1);
    assert_int_equal(sse_wrapped_from_json(j, &back), -EINVAL);
    json_decref(j);
    w.wk[0] = 2;
    assert_int_equal(sse_wrapped_to_json(&w, &j), 0);
    assert_int_equal(sse_wrapped_from_json(j, &back), -EINVAL);
    json_decref(j);
    sse_keyring_free(kr);
    tmp_remove(&t);
}

/* ---- data streams ---- */

static const size_t sizes[] = {0, 1, B - 1, B, B + 1, 3 * (size_t)B + 5};

static void test_sizes(void **state)
{
    (void)state;
    uint64_t p;

    assert_int_equal(sse_block_count(0), 1);
    assert_int_equal(sse_block_count(1), 1);
    assert_int_equal(sse_block_count(B), 1);
    assert_int_equal(sse_block_count(B + 1), 2);
    assert_int_equal(sse_stored_size(0), SSE_HEADER_LEN + SSE_TAG_LEN);
    assert_int_equal(sse_stored_size(B), SSE_HEADER_LEN + SSE_STORED_BLOCK);
    assert_int_equal(sse_stored_size(3 * (uint64_t)B + 5),
                     SSE_HEADER_LEN + 3 * (uint64_t)SSE_STORED_BLOCK + 5 + SSE_TAG_LEN);
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        assert_int_equal(sse_plain_size(sse_stored_size(sizes[i]), &p), 0);
        assert_int_equal(p, sizes[i]);
    }
    assert_int_equal(sse_plain_size(sse_stored_size(5ull << 40), &p), 0);
    assert_int_equal(p, 5ull << 40);
    assert_int_equal(sse_plain_size(0, &p), -EBADMSG);
    assert_int_equal(sse_plain_size(SSE_HEADER_LEN + 15, &p), -EBADMSG);
    assert_int_equal(sse_plain_size(SSE_HEADER_LEN + SSE_STORED_BLOCK + 15, &p), -EBADMSG);
    /* An empty block after a full one is never written. */
    assert_int_equal(sse_plain_size(SSE_HEADER_LEN + SSE_STORED_BLOCK + 16, &p), -EBADMSG);
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t key[SSE_KEY_LEN], *dec;
    SovBuf stored;

    assert_int_equal(sse_data_key_new(key), 0);
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        size_t n = sizes[i];
        uint8_t *plain = pattern(n, (uint32_t)i);
        encrypt_all(key, 2, plain, n, &stored);
        assert_int_equal(stored.len, sse_stored_size(n));
        assert_memory_equal(stored.ptr, "SOVE\x01", 5);
        assert_int_equal(decrypt_all(key, 2, (uint8_t *)stored.ptr, stored.len, n, &dec), 0);
        if (n)
            assert_memory_equal(dec, plain, n);
        free(dec);

        /* In place: the plaintext ends up at the front of the stored bytes. */
        SseStream *s;
        size_t got;
        assert_int_equal(sse_stream_open(key, 2, (uint8_t *)stored.ptr, &s), 0);
        uint8_t *body = (uint8_t *)stored.ptr + SSE_HEADER_LEN;
        assert_int_equal(
            sse_stream_decrypt_run(s, n, 0, body, stored.len - SSE_HEADER_LEN, body, &got), 0);
        assert_int_equal(got, n);
        if (n)
            assert_memory_equal(body, plain, n);
        sse_stream_free(s);
        sov_buf_release(&stored);
        free(plain);
    }
}

static void test_streaming_equals_oneshot(void **state)
{
    (void)state;
    static const size_t chunks[] = {1, 7, 4093, B - 1, B, B + 1, 65536, 3, 2 * (size_t)B + 9};
    static const size_t lens[] = {0, 5, B, 2 * (size_t)B, 3 * (size_t)B + 5, 7 * (size_t)B + 11};
    uint8_t key[SSE_KEY_LEN];
    SovBuf stored;

    assert_int_equal(sse_data_key_new(key), 0);
    for (size_t li = 0; li < ELEMENTSOF(lens); li++) {
        for (size_t start = 0; start < ELEMENTSOF(chunks); start += 4) {
            size_t n = lens[li];
            uint8_t *plain = pattern(n, 99);
            encrypt_chunks(key, 1, plain, n, chunks + start, ELEMENTSOF(chunks) - start, &stored);
            assert_int_equal(stored.len, sse_stored_size(n));

            /* One-shot blocks under the same header give the same bytes. */
            SseStream *s;
            assert_int_equal(sse_stream_open(key, 1, (uint8_t *)stored.ptr, &s), 0);
            uint64_t count = sse_block_count(n);
            uint8_t *blk = malloc(SSE_STORED_BLOCK);
            size_t off = SSE_HEADER_LEN;
            for (uint64_t b = 0; b < count; b++) {
                size_t len = SOV_MIN((size_t)B, n - b * B);
                assert_int_equal(sse_block_encrypt(s, b, b + 1 == count, plain + b * B, len, blk),
                                 0);
                assert_memory_equal(stored.ptr + off, blk, len + SSE_TAG_LEN);
                off += len + SSE_TAG_LEN;
            }
            assert_int_equal(off, stored.len);
            free(blk);
            sse_stream_free(s);
            sov_buf_release(&stored);
            free(plain);
        }
    }
}

static void test_tamper_blocks(void **state)
{
    (void)state;
    size_t n = 3 * (size_t)B + 5;
    uint8_t key[SSE_KEY_LEN], other[SSE_KEY_LEN], *plain = pattern(n, 5), *dec, *copy;
    const size_t sb = SSE_STORED_BLOCK, h = SSE_HEADER_LEN;
    SovBuf stored;

    assert_int_equal(sse_data_key_new(key), 0);
    encrypt_all(key, 4, plain, n, &stored);
    copy = malloc(stored.len);
    uint8_t *st = (uint8_t *)stored.ptr;

    /* Swapped blocks 0 and 1. */
    memcpy(copy, st, stored.len);
    memcpy(copy + h, st + h + sb, sb);
    memcpy(copy + h + sb, st + h, sb);
    assert_int_equal(decrypt_all(key, 4, copy, stored.len, n, &dec), -EBADMSG);
    /* Block 1 duplicated over block 2. */
    memcpy(copy, st, stored.len);
    memcpy(copy + h + 2 * sb, st + h + sb, sb);
    assert_int_equal(decrypt_all(key, 4, copy, stored.len, n, &dec), -EBADMSG);
    /* Truncated inside the last block: the run is short. */
    assert_int_equal(decrypt_all(key, 4, st, stored.len - 1, n, &dec), -EINVAL);
    /* The last block dropped and the size claiming so: the final flag catches it. */
    assert_int_equal(decrypt_all(key, 4, st, h + 3 * sb, 3 * (size_t)B, &dec), -EBADMSG);
    /* A flipped bit anywhere: header (magic, reserved, salt), ciphertext, tag. */
    static const size_t flips[] = {0,
                                   4,
                                   6,
                                   8,
                                   23,
                                   28,
                                   h,
                                   h + 100,
                                   h + B,
                                   h + B + 15,
                                   h + sb,
                                   h + 3 * sb + 4,
                                   h + 3 * sb + 5,
                                   h + 3 * sb + 20};
    for (size_t i = 0; i < ELEMENTSOF(flips); i++) {
        memcpy(copy, st, stored.len);
        copy[flips[i]] ^= 0x80;
        int r = decrypt_all(key, 4, copy, stored.len, n, &dec);
        assert_true(r == -EBADMSG);
    }
    /* Wrong key, wrong part number. */
    key_of(other, 1);
    assert_int_equal(decrypt_all(other, 4, st, stored.len, n, &dec), -EBADMSG);
    assert_int_equal(decrypt_all(key, 5, st, stored.len, n, &dec), -EBADMSG);
    /* A failed block leaves no plaintext behind. */
    SseStream *s;
    uint8_t *out = malloc(sb);
    memcpy(copy, st, stored.len);
    copy[h + 10] ^= 1;
    assert_int_equal(sse_stream_open(key, 4, copy, &s), 0);
    memset(out, 0xee, sb);
    assert_int_equal(sse_block_decrypt(s, 0, false, copy + h, sb, out), -EBADMSG);
    for (size_t i = 0; i < B; i++)
        if (out[i] != 0)
            fail_msg("byte %zu of a failed block survived", i);
    /* Misuse: a short non-final block, an oversized block. */
    assert_int_equal(sse_block_decrypt(s, 0, false, copy + h, sb - 1, out), -EINVAL);
    assert_int_equal(sse_block_encrypt(s, 0, false, plain, B - 1, out), -EINVAL);
    assert_int_equal(sse_block_encrypt(s, 0, true, plain, B + 1, out), -EINVAL);
    sse_stream_free(s);
    /* Intact, it decrypts. */
    assert_int_equal(decrypt_all(key, 4, st, stored.len, n, &dec), 0);
    assert_memory_equal(dec, plain, n);
    free(dec);
    free(out);
    free(copy);
    free(plain);
    sov_buf_release(&stored);
}

static void test_range_map(void **state)
{
    (void)state;
    const uint64_t sb = SSE_STORED_BLOCK, h = SSE_HEADER_LEN, p = 3 * (uint64_t)B + 5;
    SseRange rg;

    assert_int_equal(sse_range_map(p, 0, 1, &rg), 0);
    assert_int_equal(rg.first_block, 0);
    assert_int_equal(rg.nblocks, 1);
    assert_int_equal(rg.stored_off, h);
    assert_int_equal(rg.stored_len, sb);
    assert_int_equal(rg.skip, 0);
    assert_int_equal(sse_range_map(p, B - 1, B + 1, &rg), 0);
    assert_int_equal(rg.first_block, 0);
    assert_int_equal(rg.nblocks, 2);
    assert_int_equal(rg.stored_len, 2 * sb);
    assert_int_equal(rg.skip, B - 1);
    assert_int_equal(sse_range_map(p, 3 * (uint64_t)B, p, &rg), 0);
    assert_int_equal(rg.first_block, 3);
    assert_int_equal(rg.stored_off, h + 3 * sb);
    assert_int_equal(rg.stored_len, 5 + SSE_TAG_LEN);
    assert_int_equal(sse_range_map(p, B + 7, p, &rg), 0);
    assert_int_equal(rg.first_block, 1);
    assert_int_equal(rg.nblocks, 3);
    assert_int_equal(rg.stored_len, 2 * sb + 5 + SSE_TAG_LEN);
    assert_int_equal(rg.skip, 7);
    assert_int_equal(rg.stored_off + rg.stored_len, sse_stored_size(p));
    assert_int_equal(sse_range_map(B, B - 1, B, &rg), 0);
    assert_int_equal(rg.stored_len, sb);
    assert_int_equal(sse_range_map(p, 5, 5, &rg), -EINVAL);
    assert_int_equal(sse_range_map(p, 0, p + 1, &rg), -EINVAL);
    assert_int_equal(sse_range_map(0, 0, 0, &rg), -EINVAL);

    /* Reading what the map says and decrypting it gives exactly the range. */
    uint8_t key[SSE_KEY_LEN], *plain = pattern(p, 11), *out = malloc(5 * sb);
    SovBuf stored;
    SseStream *s;
    assert_int_equal(sse_data_key_new(key), 0);
    encrypt_all(key, 0, plain, p, &stored);
    assert_int_equal(sse_stream_open(key, 0, (uint8_t *)stored.ptr, &s), 0);
    static const uint64_t ranges[][2] = {
        {0, 1},          {0, B}, {1, B + 1}, {B, 2 * B}, {B - 3, 3 * B + 2}, {3 * B, 3 * B + 5},
        {17, 3 * B + 5},
    };
    for (size_t i = 0; i < ELEMENTSOF(ranges); i++) {
        size_t got;
        assert_int_equal(sse_range_map(p, ranges[i][0], ranges[i][1], &rg), 0);
        assert_true(rg.stored_off + rg.stored_len <= stored.len);
        assert_int_equal(sse_stream_decrypt_run(s, p, rg.first_block, stored.ptr + rg.stored_off,
                                                rg.stored_len, out, &got),
                         0);
        assert_true(got >= rg.skip + (ranges[i][1] - ranges[i][0]));
        assert_memory_equal(out + rg.skip, plain + ranges[i][0], ranges[i][1] - ranges[i][0]);
    }
    /* Blocks past the end of the stream are refused. */
    size_t got;
    assert_int_equal(sse_stream_decrypt_run(s, p, 4, stored.ptr + h, sb, out, &got), -EINVAL);
    sse_stream_free(s);
    sov_buf_release(&stored);
    free(out);
    free(plain);
}

static void test_no_plaintext(void **state)
{
    (void)state;
    static const char pat[] = "SECRET-PATTERN-0123456789abcdef!";
    size_t n = 2 * (size_t)B + 1000, pl = sizeof(pat) - 1;
    uint8_t key[SSE_KEY_LEN], *plain = malloc(n);
    SovBuf stored;

    for (size_t i = 0; i < n; i++)
        plain[i] = (uint8_t)pat[i % pl];
    assert_int_equal(sse_data_key_new(key), 0);
    encrypt_all(key, 0, plain, n, &stored);
    assert_null(memmem(stored.ptr, stored.len, pat, 8));
    assert_null(memmem(stored.ptr, stored.len, pat + 8, 8));
    assert_null(memmem(stored.ptr, stored.len, key, 8));
    /* Equal blocks do not give equal ciphertext either. */
    assert_memory_not_equal(stored.ptr + SSE_HEADER_LEN, stored.ptr + SSE_HEADER_LEN + B + 16, 64);
    sov_buf_release(&stored);
    free(plain);
}

static int fail_write(void *ud, const void *p, size_t n)
{
    int *calls = ud;
    (void)p;
    (void)n;
    return ++*calls > 1 ? -EIO : 0; /* the header goes through, the first block does not */
}

static void test_encryptor_errors(void **state)
{
    (void)state;
    uint8_t key[SSE_KEY_LEN], *plain = pattern(2 * (size_t)B, 1);
    SseEncryptor *e;
    SovBuf out;
    int calls = 0;

    key_of(key, 9);
    assert_int_equal(sse_encryptor_new(key, 0, fail_write, &calls, &e), 0);
    assert_int_equal(sse_encryptor_write(e, plain, 2 * (size_t)B), -EIO);
    assert_int_equal(sse_encryptor_write(e, plain, 1), -EIO);
    assert_int_equal(sse_encryptor_finish(e), -EIO);
    sse_encryptor_free(e);

    sov_buf_init(&out, 0);
    assert_int_equal(sse_encryptor_new(key, 0, collect, &out, &e), 0);
    assert_int_equal(sse_encryptor_write(e, plain, 10), 0);
    /* Nothing but the header before a block is complete and known not to be the last. */
    assert_int_equal(out.len, SSE_HEADER_LEN);
    assert_int_equal(sse_encryptor_finish(e), 0);
    assert_int_equal(sse_encryptor_write(e, plain, 1), -EINVAL);
    assert_int_equal(sse_encryptor_finish(e), -EINVAL);
    sse_encryptor_free(e);
    sov_buf_release(&out);
    free(plain);
}

/* ---- SSE-C ---- */

static void b64_of(const void *p, size_t n, char *out)
{
    sse_base64_encode(p, n, out);
}

static void test_customer_parse(void **state)
{
    (void)state;
    uint8_t key[SSE_KEY_LEN], md5[SOV_MD5_LEN];
    char kb[64], mb[32], short_kb[64], other_mb[32];
    SseCustomerKey ck;
    SseError err;

    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    b64_of(key, sizeof(key), kb);
    assert_int_equal(sov_md5(key, sizeof(key), md5), 0);
    b64_of(md5, sizeof(md5), mb);
    b64_of(key, 16, short_kb);
    md5[0] ^= 1;
    b64_of(md5, sizeof(md5), other_mb);

    assert_int_equal(sse_customer_parse("AES256", kb, mb, &ck, &err), 0);
    assert_memory_equal(ck.key, key, sizeof(key));
    assert_string_equal(ck.md5_b64, mb);

    struct {
        const char *alg, *key, *md5, *code;
    } bad[] = {
        {NULL, kb, mb, "InvalidArgument"},
        {"AES128", kb, mb, "InvalidEncryptionAlgorithmError"},
        {"aes256", kb, mb, "InvalidEncryptionAlgorithmError"},
        {"AES256", NULL, mb, "InvalidArgument"},
        {"AES256", kb, NULL, "InvalidArgument"},
        {"AES256", "not base64!", mb, "InvalidArgument"},
        {"AES256", short_kb, mb, "InvalidArgument"},
        {"AES256", "", mb, "InvalidArgument"},
        {"AES256", kb, other_mb, "InvalidArgument"},
        {"AES256", kb, "AAAA", "InvalidArgument"},
        {"AES256", kb, "????????????????????????", "InvalidArgument"},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        err = (SseError){0};
        assert_int_equal(sse_customer_parse(bad[i].alg, bad[i].key, bad[i].md5, &ck, &err),
                         -EINVAL);
        assert_int_equal(err.status, 400);
        assert_string_equal(err.code, bad[i].code);
        assert_non_null(err.message);
    }
    /* The messages say which header is wrong. */
    sse_customer_parse("AES256", kb, other_mb, &ck, &err);
    assert_non_null(strstr(err.message, "MD5"));
    sse_customer_parse("AES256", short_kb, mb, &ck, &err);
    assert_non_null(strstr(err.message, "secret key was invalid"));

    assert_int_equal(sse_s3_parse("AES256", &err), 0);
    assert_int_equal(sse_s3_parse("aws:kms", &err), -EOPNOTSUPP);
    assert_int_equal(err.status, 501);
    assert_int_equal(sse_s3_parse("AES512", &err), -EINVAL);
    assert_string_equal(err.code, "InvalidEncryptionAlgorithmError");
}

static void test_customer_seal_open(void **state)
{
    (void)state;
    uint8_t key[SSE_KEY_LEN], md5[SOV_MD5_LEN], dk1[SSE_KEY_LEN], dk2[SSE_KEY_LEN];
    uint8_t dk[SSE_KEY_LEN], *plain = pattern(1000, 3), *dec;
    char kb[64], mb[32];
    SseCustomerKey ck, wrong;
    SseCustomerRecord r1, r2, back;
    SseError err;
    SovBuf stored;
    json_t *j;

    key_of(key, 0x42);
    b64_of(key, sizeof(key), kb);
    sov_md5(key, sizeof(key), md5);
    b64_of(md5, sizeof(md5), mb);
    assert_int_equal(sse_customer_parse("AES256", kb, mb, &ck, &err), 0);
    key_of(key, 0x43);
    b64_of(key, sizeof(key), kb);
    sov_md5(key, sizeof(key), md5);
    b64_of(md5, sizeof(md5), mb);
    assert_int_equal(sse_customer_parse("AES256", kb, mb, &wrong, &err), 0);

    assert_int_equal(sse_customer_seal(&ck, &r1, dk1), 0);
    assert_int_equal(sse_customer_seal(&ck, &r2, dk2), 0);
    /* Per-object salt: two objects under one key get different data keys and checks. */
    assert_memory_not_equal(r1.salt, r2.salt, SSE_SALT_LEN);
    assert_memory_not_equal(r1.check, r2.check, 32);
    assert_memory_not_equal(dk1, dk2, SSE_KEY_LEN);
    assert_memory_not_equal(dk1, ck.key, SSE_KEY_LEN);
    assert_memory_equal(r1.md5, ck.md5, SOV_MD5_LEN);

    assert_int_equal(sse_customer_open(&ck, &r1, dk), 0);
    assert_memory_equal(dk, dk1, SSE_KEY_LEN);
    assert_int_equal(sse_customer_open(&wrong, &r1, dk), -EACCES);

    /* Data written under the derived key reads back with the key the record gives. */
    encrypt_all(dk1, 0, plain, 1000, &stored);
    assert_int_equal(sse_customer_open(&ck, &r1, dk), 0);
    assert_int_equal(decrypt_all(dk, 0, (uint8_t *)stored.ptr, stored.len, 1000, &dec), 0);
    assert_memory_equal(dec, plain, 1000);
    free(dec);
    /* The record never holds the key. */
    assert_null(memmem(&r1, sizeof(r1), ck.key, 8));

    assert_int_equal(sse_customer_to_json(&r1, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "kmd5")), ck.md5_b64);
    assert_int_equal(sse_customer_from_json(j, &back), 0);
    assert_memory_equal(&back, &r1, sizeof(r1));
    json_object_del(j, "kh");
    assert_int_equal(sse_customer_from_json(j, &back), -EINVAL);
    json_object_set_new(j, "kh", json_string("AAAA"));
    assert_int_equal(sse_customer_from_json(j, &back), -EINVAL);
    json_decref(j);
    sov_buf_release(&stored);
    free(plain);
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t in[16], out[16];
    char enc[32];

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(0xf0 + i);
    for (size_t n = 0; n <= sizeof(in); n++) {
        sse_base64_encode(in, n, enc);
        assert_int_equal(strlen(enc), 4 * ((n + 2) / 3));
        assert_int_equal(sse_base64_decode(enc, strlen(enc), out, sizeof(out)), (int)n);
        assert_memory_equal(in, out, n);
    }
    sse_base64_encode((const uint8_t *)"foobar", 6, enc);
    assert_string_equal(enc, "Zm9vYmFy");
    sse_base64_encode((const uint8_t *)"fo", 2, enc);
    assert_string_equal(enc, "Zm8=");
    static const char *const bad[] = {
        "Zm8", "Zm9=Zm8=", "Z===", "Zm9=", "Zm=8", " Zm8=", "Zm8=\n", "Zm-_"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        assert_int_equal(sse_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -EINVAL);
    assert_int_equal(sse_base64_decode("Zm9vYmFy", 8, out, 5), -EINVAL); /* over cap */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyring_create_reopen),
        cmocka_unit_test(test_keyring_rotate),
        cmocka_unit_test(test_keyring_refuses),
        cmocka_unit_test(test_wrap_tamper),
        cmocka_unit_test(test_wrapped_json),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_streaming_equals_oneshot),
        cmocka_unit_test(test_tamper_blocks),
        cmocka_unit_test(test_range_map),
        cmocka_unit_test(test_no_plaintext),
        cmocka_unit_test(test_encryptor_errors),
        cmocka_unit_test(test_customer_parse),
        cmocka_unit_test(test_customer_seal_open),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
