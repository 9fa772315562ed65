/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/crypto.h against published and independently derived known answers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sov/crypto.h"
#include "sov/macro.h"

/* Compares n bytes against lowercase hex, showing both on failure. */
static void assert_hex(const uint8_t *got, size_t n, const char *want_hex)
{
    char *hex = malloc(2 * n + 1);

    assert_non_null(hex);
    sov_hex_encode(got, n, hex);
    if (strcmp(hex, want_hex) != 0) {
        fail_msg("got %s, want %s", hex, want_hex);
    }
    free(hex);
}

static void from_hex(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(hex), 2 * n);
    assert_int_equal(sov_hex_decode(hex, 2 * n, out), 0);
}

static void test_sha256(void **state)
{
    uint8_t d[SOV_SHA256_LEN];

    assert_int_equal(sov_sha256("abc", 3, d), 0);
    assert_hex(d, sizeof(d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(sov_sha256("", 0, d), 0);
    assert_hex(d, sizeof(d), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* FIPS 180-2 two-block message. */
    assert_int_equal(sov_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d),
                     0);
    assert_hex(d, sizeof(d), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_md5(void **state)
{
    uint8_t d[SOV_MD5_LEN];

    assert_int_equal(sov_md5("abc", 3, d), 0);
    assert_hex(d, sizeof(d), "900150983cd24fb0d6963f7d28e17f72");
    assert_int_equal(sov_md5("", 0, d), 0);
    assert_hex(d, sizeof(d), "d41d8cd98f00b204e9800998ecf8427e");
}

static void test_hmac_sha256(void **state)
{
    uint8_t mac[SOV_SHA256_LEN];
    uint8_t key20[20];
    uint8_t key131[131];
    const char *data = "Test Using Larger Than Block-Size Key - Hash Key First";

    /* RFC 4231 test case 2. */
    assert_int_equal(sov_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
    assert_hex(mac, sizeof(mac),
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 1. */
    memset(key20, 0x0b, sizeof(key20));
    assert_int_equal(sov_hmac_sha256(key20, sizeof(key20), "Hi There", 8, mac), 0);
    assert_hex(mac, sizeof(mac),
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* RFC 4231 test case 6: a key longer than the block size is hashed first. */
    memset(key131, 0xaa, sizeof(key131));
    assert_int_equal(sov_hmac_sha256(key131, sizeof(key131), data, strlen(data), mac), 0);
    assert_hex(mac, sizeof(mac),
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_digest_streaming(void **state)
{
    uint8_t buf[1000], one[SOV_SHA256_LEN], streamed[SOV_SHA256_LEN];
    SovDigest *d = sov_digest_new(SOV_DIGEST_SHA256);

    assert_non_null(d);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    assert_int_equal(sov_sha256(buf, sizeof(buf), one), 0);

    /* Uneven pieces, including empty ones, give the one-shot digest. */
    size_t pieces[] = {0, 1, 63, 64, 65, 0, 300, 507};
    size_t off = 0;
    for (size_t i = 0; i < ELEMENTSOF(pieces); i++) {
        assert_int_equal(sov_digest_update(d, buf + off, pieces[i]), 0);
        off += pieces[i];
    }
    assert_int_equal(off, sizeof(buf));
    assert_int_equal(sov_digest_final(d, streamed), 0);
    assert_memory_equal(streamed, one, sizeof(one));

    /* The context starts over after final. */
    assert_int_equal(sov_digest_update(d, "ab", 2), 0);
    assert_int_equal(sov_digest_update(d, "c", 1), 0);
    assert_int_equal(sov_digest_final(d, streamed), 0);
    assert_hex(streamed, sizeof(streamed),
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* And a final with nothing fed is the empty digest. */
    assert_int_equal(sov_digest_final(d, streamed), 0);
    assert_hex(streamed, sizeof(streamed),
               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_null(sov_digest_free(d));
    assert_null(sov_digest_free(NULL));
}

static void test_digest_streaming_md5(void **state)
{
    uint8_t out[SOV_MD5_LEN];
    SovDigest *d = sov_digest_new(SOV_DIGEST_MD5);

    assert_non_null(d);
    assert_int_equal(sov_digest_update(d, "a", 1), 0);
    assert_int_equal(sov_digest_update(d, "bc", 2), 0);
    assert_int_equal(sov_digest_final(d, out), 0);
    assert_hex(out, sizeof(out), "900150983cd24fb0d6963f7d28e17f72");
    assert_int_equal(sov_digest_update(d, "abc", 3), 0);
    assert_int_equal(sov_digest_final(d, out), 0);
    assert_hex(out, sizeof(out), "900150983cd24fb0d6963f7d28e17f72");
    sov_digest_free(d);
}

static const uint8_t zero_key[SOV_GCM_KEY_LEN];
static const uint8_t zero_iv[SOV_GCM_IV_LEN];

static void test_gcm_known_answers(void **state)
{
    uint8_t pt[16] = {0}, ct[16], tag[SOV_GCM_TAG_LEN];

    /* GCM specification (McGrew & Viega), test case 14. */
    assert_int_equal(sov_aes256_gcm_encrypt(zero_key, zero_iv, NULL, 0, pt, sizeof(pt), ct, tag),
                     0);
    assert_hex(ct, sizeof(ct), "cea7403d4d606b6e074ec5d3baf39d18");
    assert_hex(tag, sizeof(tag), "d0d1c8a799996bf0265b98b5d48ab919");

    /* Test case 13: empty plaintext, only a tag. */
    assert_int_equal(sov_aes256_gcm_encrypt(zero_key, zero_iv, NULL, 0, NULL, 0, ct, tag), 0);
    assert_hex(tag, sizeof(tag), "530f8afbc74536b9a963b4f1c4cb738b");
    assert_int_equal(sov_aes256_gcm_decrypt(zero_key, zero_iv, NULL, 0, NULL, 0, ct, tag), 0);
}

static void test_gcm_roundtrip_and_tamper(void **state)
{
    uint8_t key[SOV_GCM_KEY_LEN], iv[SOV_GCM_IV_LEN], tag[SOV_GCM_TAG_LEN], bad[SOV_GCM_TAG_LEN];
    uint8_t pt[1000], ct[1000], back[1000];
    const char aad[] = "bucket=photos;key=cat.jpg";

    assert_int_equal(sov_random_bytes(key, sizeof(key)), 0);
    assert_int_equal(sov_random_bytes(iv, sizeof(iv)), 0);
    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (uint8_t)i;
    assert_int_equal(sov_aes256_gcm_encrypt(key, iv, aad, strlen(aad), pt, sizeof(pt), ct, tag), 0);
    assert_memory_not_equal(ct, pt, sizeof(pt));
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, tag),
                     0);
    assert_memory_equal(back, pt, sizeof(pt));

    /* One flipped bit anywhere fails authentication. */
    ct[500] ^= 0x01;
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, tag),
                     -EBADMSG);
    ct[500] ^= 0x01;
    memcpy(bad, tag, sizeof(bad));
    bad[15] ^= 0x80;
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, bad),
                     -EBADMSG);
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, "bucket=photos;key=dog.jpg", strlen(aad), ct,
                                            sizeof(ct), back, tag),
                     -EBADMSG);
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, NULL, 0, ct, sizeof(ct), back, tag), -EBADMSG);
    iv[0] ^= 1;
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, tag),
                     -EBADMSG);
    iv[0] ^= 1;
    key[31] ^= 1;
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, tag),
                     -EBADMSG);
    key[31] ^= 1;
    /* A truncated ciphertext is a different message. */
    assert_int_equal(
        sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct) - 1, back, tag), -EBADMSG);
    /* Untampered still decrypts. */
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), ct, sizeof(ct), back, tag),
                     0);

    /* An empty message with AAD is still authenticated. */
    assert_int_equal(sov_aes256_gcm_encrypt(key, iv, aad, strlen(aad), NULL, 0, ct, tag), 0);
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad), NULL, 0, back, tag), 0);
    assert_int_equal(sov_aes256_gcm_decrypt(key, iv, aad, strlen(aad) - 1, NULL, 0, back, tag),
                     -EBADMSG);
}

static void test_gcm_in_place(void **state)
{
    uint8_t buf[64], orig[64], tag[SOV_GCM_TAG_LEN];

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = orig[i] = (uint8_t)(255 - i);
    assert_int_equal(sov_aes256_gcm_encrypt(zero_key, zero_iv, NULL, 0, buf, sizeof(buf), buf, tag),
                     0);
    assert_memory_not_equal(buf, orig, sizeof(buf));
    assert_int_equal(sov_aes256_gcm_decrypt(zero_key, zero_iv, NULL, 0, buf, sizeof(buf), buf, tag),
                     0);
    assert_memory_equal(buf, orig, sizeof(buf));
}

static void xts_key(uint8_t key[SOV_XTS_KEY_LEN])
{
    for (int i = 0; i < SOV_XTS_KEY_LEN; i++)
        key[i] = (uint8_t)i;
}

/* Derived with the openssl CLI: `openssl enc` has no XTS, so the vector was computed from IEEE
 * 1619 by hand with `openssl enc -aes-256-ecb -nopad` as the block cipher (key = bytes 00..3f,
 * sector 0x0102030405060708, so the tweak is 08070605040302010000000000000000), and matches
 * python-cryptography's XTS. The 40-byte case exercises ciphertext stealing, also derived by
 * hand from ECB. */
static void test_xts_known_answer(void **state)
{
    uint8_t key[SOV_XTS_KEY_LEN], pt[40], ct[40], back[40];

    xts_key(key);
    for (int i = 0; i < 40; i++)
        pt[i] = (uint8_t)((i * 7 + 3) % 256);
    assert_int_equal(sov_aes256_xts_encrypt(key, 0x0102030405060708ULL, pt, 32, ct), 0);
    assert_hex(ct, 32, "ecd6bee361a3fbc9d838a311cda5f8cac9da1e9b0793ab4a7a0179118ff2dd42");
    assert_int_equal(sov_aes256_xts_decrypt(key, 0x0102030405060708ULL, ct, 32, back), 0);
    assert_memory_equal(back, pt, 32);

    assert_int_equal(sov_aes256_xts_encrypt(key, 0x0102030405060708ULL, pt, 40, ct), 0);
    assert_hex(ct, 40,
               "ecd6bee361a3fbc9d838a311cda5f8ca139463f8d43d77085d6f69dd45be4be5c9da1e9b0793ab4a");
    assert_int_equal(sov_aes256_xts_decrypt(key, 0x0102030405060708ULL, ct, 40, back), 0);
    assert_memory_equal(back, pt, 40);
}

static void test_xts_roundtrip(void **state)
{
    static const size_t sizes[] = {512, 4096};
    uint8_t key[SOV_XTS_KEY_LEN];

    assert_int_equal(sov_random_bytes(key, sizeof(key)), 0);
    key[0] = 0;
    key[32] = 1; /* the halves differ whatever the random bytes were */
    for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
        size_t n = sizes[s];
        uint8_t *pt = malloc(n), *ct = malloc(n), *ct2 = malloc(n), *back = malloc(n);

        assert_non_null(pt);
        assert_non_null(ct);
        assert_non_null(ct2);
        assert_non_null(back);
        memset(pt, 0, n); /* zero sectors are the common case on a fresh disk */
        assert_int_equal(sov_aes256_xts_encrypt(key, 7, pt, n, ct), 0);
        assert_memory_not_equal(ct, pt, n);
        /* Equal plaintext blocks do not give equal ciphertext blocks within a sector. */
        assert_memory_not_equal(ct, ct + 16, 16);
        assert_int_equal(sov_aes256_xts_decrypt(key, 7, ct, n, back), 0);
        assert_memory_equal(back, pt, n);

        /* Another sector, same data: different ciphertext; decrypting with the wrong sector
         * gives garbage. */
        assert_int_equal(sov_aes256_xts_encrypt(key, 8, pt, n, ct2), 0);
        assert_memory_not_equal(ct, ct2, n);
        assert_int_equal(sov_aes256_xts_decrypt(key, 8, ct, n, back), 0);
        assert_memory_not_equal(back, pt, n);
        /* Sectors that differ only in high bits of the number differ too. */
        assert_int_equal(sov_aes256_xts_encrypt(key, 7 | (1ULL << 63), pt, n, ct2), 0);
        assert_memory_not_equal(ct, ct2, n);

        /* Deterministic: the same sector encrypts the same way again. */
        assert_int_equal(sov_aes256_xts_encrypt(key, 7, pt, n, ct2), 0);
        assert_memory_equal(ct, ct2, n);
        free(pt);
        free(ct);
        free(ct2);
        free(back);
    }
}

static void test_xts_refusals(void **state)
{
    uint8_t key[SOV_XTS_KEY_LEN], buf[32] = {0}, out[32];

    for (int i = 0; i < 32; i++)
        key[i] = key[32 + i] = (uint8_t)(i * 3);
    assert_int_equal(sov_aes256_xts_encrypt(key, 0, buf, sizeof(buf), out), -EINVAL);
    assert_int_equal(sov_aes256_xts_decrypt(key, 0, buf, sizeof(buf), out), -EINVAL);

    xts_key(key);
    assert_int_equal(sov_aes256_xts_encrypt(key, 0, buf, 15, out), -EINVAL);
    assert_int_equal(sov_aes256_xts_decrypt(key, 0, buf, 15, out), -EINVAL);
    assert_int_equal(sov_aes256_xts_encrypt(key, 0, buf, 0, out), -EINVAL);
    assert_int_equal(sov_aes256_xts_encrypt(key, 0, buf, 16, out), 0);
}

static void test_hex(void **state)
{
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[2 * sizeof(bytes) + 1];
    uint8_t back[sizeof(bytes)];

    memset(hex, 'Z', sizeof(hex));
    sov_hex_encode(bytes, sizeof(bytes), hex);
    assert_string_equal(hex, "00017f80abff");
    sov_hex_encode(bytes, 0, hex);
    assert_string_equal(hex, "");

    assert_int_equal(sov_hex_decode("00017f80abff", 12, back), 0);
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_int_equal(sov_hex_decode("00017F80ABFF", 12, back), 0);
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_int_equal(sov_hex_decode("", 0, back), 0);

    assert_int_equal(sov_hex_decode("abc", 3, back), -EINVAL);
    assert_int_equal(sov_hex_decode("0g", 2, back), -EINVAL);
    assert_int_equal(sov_hex_decode("g0", 2, back), -EINVAL);
    assert_int_equal(sov_hex_decode("0 ", 2, back), -EINVAL);
    assert_int_equal(sov_hex_decode("-1", 2, back), -EINVAL);
    assert_int_equal(sov_hex_decode("0x", 2, back), -EINVAL);
    /* Only hexlen characters are read. */
    assert_int_equal(sov_hex_decode("abzz", 2, back), 0);
    assert_int_equal(back[0], 0xab);

    uint8_t key[32];
    from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key, 32);
    for (int i = 0; i < 32; i++)
        assert_int_equal(key[i], i);
}

static void test_memeq_ct(void **state)
{
    uint8_t a[64], b[64];

    for (int i = 0; i < 64; i++)
        a[i] = b[i] = (uint8_t)i;
    assert_true(sov_memeq_ct(a, b, sizeof(a)));
    assert_true(sov_memeq_ct(a, b, 0));
    b[0] ^= 1;
    assert_false(sov_memeq_ct(a, b, sizeof(a)));
    assert_true(sov_memeq_ct(a + 1, b + 1, sizeof(a) - 1));
    b[0] ^= 1;
    b[63] ^= 0x80;
    assert_false(sov_memeq_ct(a, b, sizeof(a)));
    assert_true(sov_memeq_ct(a, b, 63));
}

static void test_random_bytes(void **state)
{
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};

    assert_int_equal(sov_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(sov_random_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(sov_random_bytes(a, 0), 0);
}

static void test_crc32c(void **st)
{
    uint8_t buf[1000];
    /* the check value of the Castagnoli CRC (RFC 3720 appendix B.4 uses the same polynomial) */
    assert_int_equal(sov_crc32c(0, "123456789", 9), 0xe3069283);
    assert_int_equal(sov_crc32c_sw(0, "123456789", 9), 0xe3069283);
    assert_int_equal(sov_crc32c(0, "", 0), 0);
    memset(buf, 0, 32);
    assert_int_equal(sov_crc32c(0, buf, 32), 0x8a9136aa); /* RFC 3720 B.4: 32 bytes of zeros */
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    /* hardware and table agree at every length and alignment, and chaining equals one pass */
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof(buf); n += 37) {
            uint32_t whole = sov_crc32c(0, buf + off, n);
            assert_int_equal(whole, sov_crc32c_sw(0, buf + off, n));
            assert_int_equal(
                whole, sov_crc32c(sov_crc32c(0, buf + off, n / 3), buf + off + n / 3, n - n / 3));
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_md5),
        cmocka_unit_test(test_hmac_sha256),
        cmocka_unit_test(test_digest_streaming),
        cmocka_unit_test(test_digest_streaming_md5),
        cmocka_unit_test(test_gcm_known_answers),
        cmocka_unit_test(test_gcm_roundtrip_and_tamper),
        cmocka_unit_test(test_gcm_in_place),
        cmocka_unit_test(test_xts_known_answer),
        cmocka_unit_test(test_xts_roundtrip),
        cmocka_unit_test(test_xts_refusals),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_memeq_ct),
        cmocka_unit_test(test_random_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
