/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/buf.h: the SovStr helpers, the growable SovBuf and the SovArena. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/buf.h"

/* The header's invariant: len <= cap and, once memory exists, ptr[len] == '\0'. */
static void assert_buf_invariant(const SovBuf *b)
{
    assert_true(b->len <= b->cap || (b->cap == 0 && b->len == 0));
    if (b->cap > 0) {
        assert_non_null(b->ptr);
        assert_true(b->len < b->cap);
        assert_int_equal(b->ptr[b->len], '\0');
    }
    if (b->max)
        assert_true(b->len <= b->max);
}

static void test_str_eq_ci(void **state)
{
    assert_true(sov_str_eq_ci(SOV_STR("Content-Type"), SOV_STR("content-type")));
    assert_true(sov_str_eq_ci(SOV_STR(""), SOV_STR("")));
    assert_false(sov_str_eq_ci(SOV_STR("abc"), SOV_STR("abd")));
    assert_false(sov_str_eq_ci(SOV_STR("abc"), SOV_STR("abcd")));
    /* Only the view's bytes count, not what follows them. */
    assert_true(sov_str_eq_ci((SovStr){"HOSTNAME", 4}, SOV_STR("host")));
}

static void test_str_eq(void **state)
{
    assert_true(sov_str_eq(SOV_STR("abc"), sov_str("abc")));
    assert_true(sov_str_eq(SOV_STR_NULL, SOV_STR("")));
    assert_false(sov_str_eq(SOV_STR("abc"), SOV_STR("ABC")));
    assert_int_equal(sov_str(NULL).len, 0);
}

static void test_str_has_prefix(void **state)
{
    assert_true(sov_str_has_prefix(SOV_STR("/v2/images"), SOV_STR("/v2/")));
    assert_true(sov_str_has_prefix(SOV_STR("abc"), SOV_STR("")));
    assert_true(sov_str_has_prefix(SOV_STR("abc"), SOV_STR("abc")));
    assert_false(sov_str_has_prefix(SOV_STR("ab"), SOV_STR("abc")));
    assert_false(sov_str_has_prefix(SOV_STR("/v3/x"), SOV_STR("/v2/")));
}

static void test_str_to_u64(void **state)
{
    uint64_t v = 77;

    assert_int_equal(sov_str_to_u64(SOV_STR("0"), &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sov_str_to_u64(SOV_STR("12345"), &v), 0);
    assert_int_equal(v, 12345);
    assert_int_equal(sov_str_to_u64(SOV_STR("18446744073709551615"), &v), 0);
    assert_true(v == UINT64_MAX);

    v = 77;
    assert_int_equal(sov_str_to_u64(SOV_STR("18446744073709551616"), &v), -ERANGE);
    assert_int_equal(sov_str_to_u64(SOV_STR("99999999999999999999"), &v), -ERANGE);
    assert_int_equal(sov_str_to_u64(SOV_STR(""), &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR_NULL, &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR("12a"), &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR("-1"), &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR("+1"), &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR(" 1"), &v), -EINVAL);
    assert_int_equal(sov_str_to_u64(SOV_STR("1 "), &v), -EINVAL);
    /* Failures leave the output alone. */
    assert_int_equal(v, 77);
    /* The view ends where its length says, even if more digits follow in memory. */
    assert_int_equal(sov_str_to_u64((SovStr){"123456", 3}, &v), 0);
    assert_int_equal(v, 123);
}

static void test_buf_append(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_buf_invariant(&b);
    assert_int_equal(sov_buf_append(&b, "hello", 5), 0);
    assert_buf_invariant(&b);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.ptr, "hello");
    assert_int_equal(sov_buf_putc(&b, ','), 0);
    assert_int_equal(sov_buf_puts(&b, " world"), 0);
    assert_int_equal(sov_buf_append_str(&b, SOV_STR("!!")), 0);
    assert_buf_invariant(&b);
    assert_string_equal(b.ptr, "hello, world!!");
    assert_int_equal(b.len, 14);
    assert_true(sov_str_eq(sov_buf_str(&b), SOV_STR("hello, world!!")));

    /* Appending nothing to an empty buffer still makes it a valid C string. */
    sov_buf_release(&b);
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    assert_int_equal(sov_buf_append(&b, NULL, 0), 0);
    assert_buf_invariant(&b);
    assert_non_null(b.ptr);
    assert_string_equal(b.ptr, "");
    sov_buf_release(&b);
}

static void test_buf_binary(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    const char bin[] = {'a', '\0', 'b', '\0'};

    assert_int_equal(sov_buf_append(&b, bin, sizeof(bin)), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.ptr, bin, 4);
    assert_buf_invariant(&b);
    sov_buf_release(&b);
}

static void test_buf_grow_large(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    char chunk[1000];

    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (char)('a' + i % 26);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sov_buf_append(&b, chunk, sizeof(chunk)), 0);
        assert_buf_invariant(&b);
    }
    assert_int_equal(b.len, 100000);
    for (int i = 0; i < 100; i++)
        assert_memory_equal(b.ptr + i * 1000, chunk, sizeof(chunk));
    sov_buf_release(&b);
}

static void test_buf_printf(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    char big[300];

    assert_int_equal(sov_buf_printf(&b, "%s=%d", "x", 42), 0);
    assert_string_equal(b.ptr, "x=42");
    assert_int_equal(b.len, 4);
    assert_int_equal(sov_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 4);
    assert_buf_invariant(&b);

    /* Longer than the first allocation: printf must grow the buffer, not truncate. */
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sov_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 4 + 2 + 299);
    assert_int_equal(b.ptr[4], '[');
    assert_int_equal(b.ptr[4 + 1 + 299], ']');
    assert_buf_invariant(&b);
    sov_buf_release(&b);
}

static void test_buf_put_u64(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(sov_buf_put_u64(&b, 0), 0);
    assert_int_equal(sov_buf_putc(&b, ' '), 0);
    assert_int_equal(sov_buf_put_u64(&b, 7), 0);
    assert_int_equal(sov_buf_putc(&b, ' '), 0);
    assert_int_equal(sov_buf_put_u64(&b, 1234567890), 0);
    assert_int_equal(sov_buf_putc(&b, ' '), 0);
    assert_int_equal(sov_buf_put_u64(&b, UINT64_MAX), 0);
    assert_string_equal(b.ptr, "0 7 1234567890 18446744073709551615");
    assert_buf_invariant(&b);
    sov_buf_release(&b);
}

static void test_buf_reserve(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(sov_buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1001);
    assert_int_equal(b.len, 0);
    char *p = b.ptr;
    /* Reserved room is used without moving the bytes. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sov_buf_putc(&b, 'x'), 0);
    assert_ptr_equal(b.ptr, p);
    assert_int_equal(b.len, 1000);
    assert_buf_invariant(&b);
    sov_buf_release(&b);
}

static void test_buf_max(void **state)
{
    SovBuf b;

    sov_buf_init(&b, 10);
    assert_int_equal(b.max, 10);
    assert_int_equal(sov_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10);
    assert_buf_invariant(&b);

    /* Full: every way of adding a byte is refused, and the buffer is unchanged. */
    assert_int_equal(sov_buf_putc(&b, 'x'), -E2BIG);
    assert_int_equal(sov_buf_puts(&b, "x"), -E2BIG);
    assert_int_equal(sov_buf_printf(&b, "%d", 1), -E2BIG);
    assert_int_equal(sov_buf_put_u64(&b, 1), -E2BIG);
    assert_int_equal(sov_buf_reserve(&b, 1), -E2BIG);
    assert_int_equal(sov_buf_reserve(&b, SIZE_MAX), -E2BIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.ptr, "0123456789");
    assert_buf_invariant(&b);
    assert_int_equal(sov_buf_reserve(&b, 0), 0);

    /* A refused append that would cross the limit adds nothing, not a prefix. */
    sov_buf_reset(&b);
    assert_int_equal(sov_buf_append(&b, "abcdef", 6), 0);
    assert_int_equal(sov_buf_append(&b, "ghijk", 5), -E2BIG);
    assert_int_equal(sov_buf_printf(&b, "%s", "ghijk"), -E2BIG);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.ptr, "abcdef");
    assert_int_equal(sov_buf_append(&b, "ghij", 4), 0);
    assert_string_equal(b.ptr, "abcdefghij");
    assert_buf_invariant(&b);

    /* After consume there is room again. */
    sov_buf_consume(&b, 3);
    assert_int_equal(sov_buf_append(&b, "klm", 3), 0);
    assert_string_equal(b.ptr, "defghijklm");
    assert_int_equal(sov_buf_putc(&b, 'n'), -E2BIG);
    sov_buf_release(&b);
}

static void test_buf_max_huge_request(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    /* Without a max, the implicit limit still refuses sizes that would overflow. */
    assert_int_equal(sov_buf_puts(&b, "ab"), 0);
    assert_int_equal(sov_buf_reserve(&b, SIZE_MAX), -E2BIG);
    assert_int_equal(sov_buf_reserve(&b, SIZE_MAX - 1), -E2BIG);
    assert_int_equal(sov_buf_reserve(&b, SIZE_MAX / 2), -E2BIG);
    assert_string_equal(b.ptr, "ab");
    sov_buf_release(&b);
}

static void test_buf_consume(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(sov_buf_puts(&b, "GET / HTTP/1.1\r\n"), 0);
    sov_buf_consume(&b, 4);
    assert_string_equal(b.ptr, "/ HTTP/1.1\r\n");
    assert_int_equal(b.len, 12);
    assert_buf_invariant(&b);
    sov_buf_consume(&b, 0);
    assert_string_equal(b.ptr, "/ HTTP/1.1\r\n");
    sov_buf_consume(&b, 12);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.ptr, "");
    assert_buf_invariant(&b);
    assert_int_equal(sov_buf_puts(&b, "abc"), 0);
    sov_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.ptr, "");
    sov_buf_release(&b);

    /* Consuming from a buffer that never allocated is harmless. */
    sov_buf_consume(&b, 5);
    assert_int_equal(b.len, 0);
    assert_null(b.ptr);
}

static void test_buf_reset(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    sov_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(sov_buf_puts(&b, "abc"), 0);
    size_t cap = b.cap;
    sov_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.ptr, "");
    assert_int_equal(sov_buf_puts(&b, "x"), 0);
    assert_string_equal(b.ptr, "x");
    sov_buf_release(&b);
}

static void test_buf_steal(void **state)
{
    SovBuf b;
    char *s;

    sov_buf_init(&b, 100);
    assert_int_equal(sov_buf_puts(&b, "owned"), 0);
    s = sov_buf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "owned");
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100); /* the limit survives */
    free(s);

    /* The buffer is usable afterwards. */
    assert_int_equal(sov_buf_puts(&b, "again"), 0);
    assert_string_equal(b.ptr, "again");
    sov_buf_release(&b);

    /* Stealing from an empty buffer gives an empty string, never NULL. */
    s = sov_buf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_buf_release_twice(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(sov_buf_puts(&b, "x"), 0);
    sov_buf_release(&b);
    sov_buf_release(&b);
    assert_null(b.ptr);
    assert_int_equal(b.cap, 0);
}

static void test_arena_alignment(void **state)
{
    SovArena a;
    size_t align = _Alignof(max_align_t);

    sov_arena_init(&a, 0);
    for (size_t n = 1; n < 200; n += 7) {
        char *p = sov_arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % align, 0);
        memset(p, 0xab, n); /* ASan catches an allocation shorter than asked */
    }
    /* A zero-byte request still returns distinct, aligned memory. */
    void *z1 = sov_arena_alloc(&a, 0), *z2 = sov_arena_alloc(&a, 0);
    assert_non_null(z1);
    assert_non_null(z2);
    assert_ptr_not_equal(z1, z2);
    assert_int_equal((uintptr_t)z2 % align, 0);
    sov_arena_release(&a);
}

static void test_arena_many_blocks(void **state)
{
    SovArena a;
    char *ptrs[64];

    sov_arena_init(&a, 0);
    /* Enough to span several blocks, plus one larger than a block. */
    for (int i = 0; i < 64; i++) {
        ptrs[i] = sov_arena_alloc(&a, 1000);
        assert_non_null(ptrs[i]);
        memset(ptrs[i], i, 1000);
    }
    char *big = sov_arena_alloc(&a, 100000);
    assert_non_null(big);
    memset(big, 0x5a, 100000);
    /* Earlier allocations were not moved or overwritten. */
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 1000; j += 111)
            assert_int_equal((unsigned char)ptrs[i][j], i);
    assert_int_equal(a.total, 64 * 1000 + 100000);
    sov_arena_release(&a);
    assert_null(a.head);
    assert_int_equal(a.total, 0);
}

static void test_arena_strndup_printf(void **state)
{
    SovArena a;
    char *s, *t;

    sov_arena_init(&a, 0);
    s = sov_arena_strndup(&a, "bucket/key", 6);
    assert_non_null(s);
    assert_string_equal(s, "bucket");
    s = sov_arena_strndup(&a, "", 0);
    assert_non_null(s);
    assert_string_equal(s, "");
    t = sov_arena_printf(&a, "%s-%03d", "req", 7);
    assert_non_null(t);
    assert_string_equal(t, "req-007");
    /* Longer than a block. */
    t = sov_arena_printf(&a, "%5000d|", 1);
    assert_non_null(t);
    assert_int_equal(strlen(t), 5001);
    assert_int_equal(t[5000], '|');
    sov_arena_release(&a);
}

static void test_arena_reset(void **state)
{
    SovArena a;

    sov_arena_init(&a, 0);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 20; i++) {
            char *p = sov_arena_printf(&a, "round %d item %d", round, i);
            assert_non_null(p);
            char want[64];
            snprintf(want, sizeof(want), "round %d item %d", round, i);
            assert_string_equal(p, want);
        }
        char *big = sov_arena_alloc(&a, 10000);
        assert_non_null(big);
        memset(big, 1, 10000);
        sov_arena_reset(&a);
        assert_int_equal(a.total, 0);
        assert_int_equal(a.used, 0);
    }
    sov_arena_release(&a);
}

static void test_arena_max(void **state)
{
    SovArena a;

    sov_arena_init(&a, 100);
    assert_non_null(sov_arena_alloc(&a, 60));
    assert_null(sov_arena_alloc(&a, 41));
    assert_null(sov_arena_alloc(&a, SIZE_MAX));
    assert_null(sov_arena_strndup(&a, "0123456789012345678901234567890123456789x", 41));
    assert_null(sov_arena_printf(&a, "%50d", 1));
    assert_int_equal(a.total, 60);
    assert_non_null(sov_arena_alloc(&a, 40));
    assert_int_equal(a.total, 100);
    assert_null(sov_arena_alloc(&a, 1));
    /* The limit counts since the last reset. */
    sov_arena_reset(&a);
    assert_non_null(sov_arena_alloc(&a, 100));
    assert_null(sov_arena_alloc(&a, 1));
    sov_arena_release(&a);

    sov_arena_init(&a, 10);
    assert_null(sov_arena_alloc(&a, 11));
    assert_non_null(sov_arena_alloc(&a, 10));
    sov_arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str_eq_ci),
        cmocka_unit_test(test_str_eq),
        cmocka_unit_test(test_str_has_prefix),
        cmocka_unit_test(test_str_to_u64),
        cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_binary),
        cmocka_unit_test(test_buf_grow_large),
        cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_put_u64),
        cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_max),
        cmocka_unit_test(test_buf_max_huge_request),
        cmocka_unit_test(test_buf_consume),
        cmocka_unit_test(test_buf_reset),
        cmocka_unit_test(test_buf_steal),
        cmocka_unit_test(test_buf_release_twice),
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_many_blocks),
        cmocka_unit_test(test_arena_strndup_printf),
        cmocka_unit_test(test_arena_reset),
        cmocka_unit_test(test_arena_max),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
