/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/json.h: strict object parsing, typed getters, key checks and dumping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "sov/json.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

static json_t *parse_ok(const char *text)
{
    json_t *v = NULL;
    SovBuf err = SOV_BUF_INIT;

    if (sov_json_parse_object(sov_str(text), 1 << 20, &v, &err) != 0)
        fail_msg("'%s' refused: %s", text, err.ptr ? err.ptr : "");
    assert_non_null(v);
    sov_buf_release(&err);
    return v;
}

/* Parses text expecting -EINVAL; err receives the message. */
static void parse_fail(const char *text, SovBuf *err)
{
    json_t *v = (json_t *)(uintptr_t)0x1;

    sov_buf_reset(err);
    assert_int_equal(sov_json_parse_object(sov_str(text), 1 << 20, &v, err), -EINVAL);
    assert_ptr_equal(v, (json_t *)(uintptr_t)0x1); /* ret is written only on success */
    assert_non_null(err->ptr);
}

static void test_parse_object(void **state)
{
    json_t *v = parse_ok("{\"server\": {\"name\": \"vm1\", \"flavorRef\": \"1\"}}");

    assert_true(json_is_object(v));
    assert_true(json_is_object(json_object_get(v, "server")));
    json_decref(v);
    v = parse_ok("  {}  \n");
    assert_int_equal(json_object_size(v), 0);
    json_decref(v);
}

static void test_parse_malformed(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    parse_fail("{\"a\": 1,}", &err);
    assert_contains(err.ptr, "malformed JSON at line 1 column ");
    /* The position names the line and column of the problem. */
    parse_fail("{\n  \"a\": 1,\n  \"b\": tru\n}", &err);
    assert_contains(err.ptr, "malformed JSON at line 3 column 10");
    parse_fail("{\"a\": \"unterminated}", &err);
    assert_contains(err.ptr, "malformed JSON at line 1");
    parse_fail("", &err);
    assert_contains(err.ptr, "malformed JSON");
    parse_fail("{} {}", &err);
    assert_contains(err.ptr, "malformed JSON");
    /* NUL inside a string is refused by the parser already. */
    parse_fail("{\"a\": \"x\\u0000y\"}", &err);
    assert_contains(err.ptr, "malformed JSON");
    sov_buf_release(&err);
}

static void test_parse_null_body(void **state)
{
    SovBuf err = SOV_BUF_INIT;
    json_t *v = NULL;

    assert_int_equal(sov_json_parse_object(SOV_STR_NULL, 100, &v, &err), -EINVAL);
    assert_null(v);
    assert_contains(err.ptr, "malformed JSON");
    sov_buf_release(&err);
}

static void test_parse_non_object(void **state)
{
    static const char *const roots[] = {"[1, 2]", "[]"};
    static const char *const scalars[] = {"1", "\"s\"", "null", "true"};
    SovBuf err = SOV_BUF_INIT;

    for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
        parse_fail(roots[i], &err);
        assert_string_equal(err.ptr, "request body must be a JSON object");
    }
    /* Scalars are not even accepted by the parser as a document. */
    for (size_t i = 0; i < ELEMENTSOF(scalars); i++)
        parse_fail(scalars[i], &err);
    sov_buf_release(&err);
}

static void test_parse_duplicate_keys(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    parse_fail("{\"a\": 1, \"a\": 2}", &err);
    assert_contains(err.ptr, "duplicate");
    /* Nested objects are checked too. */
    parse_fail("{\"s\": {\"name\": \"x\", \"name\": \"y\"}}", &err);
    assert_contains(err.ptr, "duplicate");
    sov_buf_release(&err);
}

static void test_parse_too_large(void **state)
{
    SovBuf err = SOV_BUF_INIT;
    json_t *v = NULL;
    const char *body = "{\"a\": \"0123456789\"}"; /* 19 bytes */

    assert_int_equal(sov_json_parse_object(sov_str(body), 18, &v, &err), -E2BIG);
    assert_null(v);
    assert_string_equal(err.ptr, "request body larger than 18 bytes");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_parse_object(sov_str(body), 19, &v, &err), 0);
    assert_non_null(v);
    json_decref(v);
    sov_buf_release(&err);
}

static const char doc[] = "{\"name\": \"vm1\", \"empty\": \"\", \"count\": 3, \"neg\": -7,"
                          " \"big\": 9223372036854775807, \"real\": 1.5, \"on\": true,"
                          " \"off\": false, \"nil\": null, \"obj\": {\"x\": 1},"
                          " \"arr\": [1, 2, 3], \"utf8\": \"caf\\u00e9\"}";

static void test_get_string(void **state)
{
    json_t *v = parse_ok(doc);
    SovBuf err = SOV_BUF_INIT;
    const char *s = "untouched";

    assert_int_equal(sov_json_get_string(v, "name", true, 255, &s, &err), 1);
    assert_string_equal(s, "vm1");
    assert_int_equal(sov_json_get_string(v, "empty", true, 255, &s, &err), 1);
    assert_string_equal(s, "");
    assert_int_equal(sov_json_get_string(v, "name", true, 3, &s, &err), 1); /* max inclusive */
    assert_int_equal(err.len, 0);

    s = "untouched";
    assert_int_equal(sov_json_get_string(v, "missing", false, 255, &s, &err), 0);
    assert_string_equal(s, "untouched");
    assert_int_equal(err.len, 0);
    /* null counts as absent. */
    assert_int_equal(sov_json_get_string(v, "nil", false, 255, &s, &err), 0);
    assert_string_equal(s, "untouched");

    assert_int_equal(sov_json_get_string(v, "missing", true, 255, &s, &err), -EINVAL);
    assert_string_equal(err.ptr, "'missing' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_string(v, "nil", true, 255, &s, &err), -EINVAL);
    assert_string_equal(err.ptr, "'nil' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_string(v, "count", true, 255, &s, &err), -EINVAL);
    assert_string_equal(err.ptr, "'count' must be a string");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_string(v, "count", false, 255, &s, &err), -EINVAL);
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_string(v, "name", true, 2, &s, &err), -EINVAL);
    assert_string_equal(err.ptr, "'name' is longer than 2 characters");
    assert_string_equal(s, "untouched");

    /* The getter on a non-object finds nothing. */
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_string(json_object_get(v, "arr"), "x", true, 9, &s, &err),
                     -EINVAL);
    assert_int_equal(sov_json_get_string(NULL, "x", false, 9, &s, &err), 0);
    json_decref(v);
    sov_buf_release(&err);
}

static void test_get_string_embedded_nul(void **state)
{
    json_t *v = json_object();
    SovBuf err = SOV_BUF_INIT;
    const char *s = "untouched";

    /* A string with NUL can only come from code (the parser refuses \u0000), but the getter
     * must not hand a truncated C string to the caller either way. */
    json_object_set_new(v, "k", json_stringn("a\0b", 3));
    assert_int_equal(sov_json_get_string(v, "k", true, 255, &s, &err), -EINVAL);
    assert_string_equal(err.ptr, "'k' contains a NUL character");
    assert_string_equal(s, "untouched");
    json_decref(v);
    sov_buf_release(&err);
}

static void test_get_int(void **state)
{
    json_t *v = parse_ok(doc);
    SovBuf err = SOV_BUF_INIT;
    int64_t i = 42;

    assert_int_equal(sov_json_get_int(v, "count", true, 0, 10, &i, &err), 1);
    assert_int_equal(i, 3);
    assert_int_equal(sov_json_get_int(v, "count", true, 3, 3, &i, &err), 1);
    assert_int_equal(sov_json_get_int(v, "neg", true, -7, 0, &i, &err), 1);
    assert_int_equal(i, -7);
    assert_int_equal(sov_json_get_int(v, "big", true, 0, INT64_MAX, &i, &err), 1);
    assert_true(i == INT64_MAX);
    assert_int_equal(err.len, 0);

    i = 42;
    assert_int_equal(sov_json_get_int(v, "missing", false, 0, 10, &i, &err), 0);
    assert_int_equal(i, 42);
    assert_int_equal(sov_json_get_int(v, "missing", true, 0, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'missing' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "count", true, 4, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'count' must be between 4 and 10");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "neg", true, 0, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'neg' must be between 0 and 10");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "count", true, -5, 2, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'count' must be between -5 and 2");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "real", true, 0, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'real' must be an integer");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "name", true, 0, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'name' must be an integer");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_int(v, "on", true, 0, 10, &i, &err), -EINVAL);
    assert_string_equal(err.ptr, "'on' must be an integer");
    assert_int_equal(i, 42);
    json_decref(v);
    sov_buf_release(&err);
}

static void test_get_bool(void **state)
{
    json_t *v = parse_ok(doc);
    SovBuf err = SOV_BUF_INIT;
    bool b = false;

    assert_int_equal(sov_json_get_bool(v, "on", true, &b, &err), 1);
    assert_true(b);
    assert_int_equal(sov_json_get_bool(v, "off", true, &b, &err), 1);
    assert_false(b);
    b = true;
    assert_int_equal(sov_json_get_bool(v, "missing", false, &b, &err), 0);
    assert_true(b);
    assert_int_equal(sov_json_get_bool(v, "missing", true, &b, &err), -EINVAL);
    assert_string_equal(err.ptr, "'missing' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_bool(v, "count", true, &b, &err), -EINVAL);
    assert_string_equal(err.ptr, "'count' must be a boolean");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_bool(v, "name", false, &b, &err), -EINVAL);
    assert_string_equal(err.ptr, "'name' must be a boolean");
    assert_true(b);
    json_decref(v);
    sov_buf_release(&err);
}

static void test_get_object(void **state)
{
    json_t *v = parse_ok(doc), *o = NULL;
    json_t *sentinel = (json_t *)(uintptr_t)0x1;
    SovBuf err = SOV_BUF_INIT;
    int64_t x = 0;

    assert_int_equal(sov_json_get_object(v, "obj", true, &o, &err), 1);
    assert_non_null(o);
    assert_int_equal(sov_json_get_int(o, "x", true, 0, 9, &x, &err), 1);
    assert_int_equal(x, 1);
    o = sentinel;
    assert_int_equal(sov_json_get_object(v, "missing", false, &o, &err), 0);
    assert_ptr_equal(o, sentinel);
    assert_int_equal(sov_json_get_object(v, "missing", true, &o, &err), -EINVAL);
    assert_string_equal(err.ptr, "'missing' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_object(v, "arr", true, &o, &err), -EINVAL);
    assert_string_equal(err.ptr, "'arr' must be an object");
    assert_ptr_equal(o, sentinel);
    json_decref(v);
    sov_buf_release(&err);
}

static void test_get_array(void **state)
{
    json_t *v = parse_ok(doc), *a = NULL;
    json_t *sentinel = (json_t *)(uintptr_t)0x1;
    SovBuf err = SOV_BUF_INIT;

    assert_int_equal(sov_json_get_array(v, "arr", true, 3, &a, &err), 1);
    assert_int_equal(json_array_size(a), 3);
    a = sentinel;
    assert_int_equal(sov_json_get_array(v, "missing", false, 3, &a, &err), 0);
    assert_ptr_equal(a, sentinel);
    assert_int_equal(sov_json_get_array(v, "missing", true, 3, &a, &err), -EINVAL);
    assert_string_equal(err.ptr, "'missing' is a required property");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_array(v, "arr", true, 2, &a, &err), -EINVAL);
    assert_string_equal(err.ptr, "'arr' has more than 2 items");
    sov_buf_reset(&err);
    assert_int_equal(sov_json_get_array(v, "obj", true, 3, &a, &err), -EINVAL);
    assert_string_equal(err.ptr, "'obj' must be an array");
    assert_ptr_equal(a, sentinel);
    json_decref(v);
    sov_buf_release(&err);
}

static void test_check_keys(void **state)
{
    static const char *const allowed[] = {"name", "flavorRef", "imageRef", NULL};
    static const char *const none[] = {NULL};
    SovBuf err = SOV_BUF_INIT;
    json_t *v;

    v = parse_ok("{\"name\": \"a\", \"imageRef\": \"b\"}");
    assert_int_equal(sov_json_check_keys(v, allowed, &err), 0);
    assert_int_equal(err.len, 0);
    json_decref(v);

    v = parse_ok("{\"name\": \"a\", \"flavourRef\": \"b\"}");
    assert_int_equal(sov_json_check_keys(v, allowed, &err), -EINVAL);
    assert_string_equal(err.ptr, "additional property 'flavourRef' is not allowed");
    json_decref(v);

    /* Keys compare exactly, case included. */
    sov_buf_reset(&err);
    v = parse_ok("{\"Name\": \"a\"}");
    assert_int_equal(sov_json_check_keys(v, allowed, &err), -EINVAL);
    assert_string_equal(err.ptr, "additional property 'Name' is not allowed");
    json_decref(v);

    sov_buf_reset(&err);
    v = parse_ok("{}");
    assert_int_equal(sov_json_check_keys(v, none, &err), 0);
    json_decref(v);
    v = parse_ok("{\"x\": 1}");
    assert_int_equal(sov_json_check_keys(v, none, &err), -EINVAL);
    assert_string_equal(err.ptr, "additional property 'x' is not allowed");
    json_decref(v);
    sov_buf_release(&err);
}

static void test_dump_roundtrip(void **state)
{
    const char *text = "{\"name\":\"vm \\\"1\\\"\",\"n\":-3,\"ok\":true,\"nil\":null,"
                       "\"arr\":[1,\"two\",{\"three\":3}],\"obj\":{},\"u\":\"caf\\u00e9\"}";
    json_t *v = parse_ok(text), *back;
    SovBuf out = SOV_BUF_INIT;

    assert_int_equal(sov_json_dump(v, &out), 0);
    /* Compact form, with keys in insertion order. */
    assert_string_equal(out.ptr,
                        "{\"name\":\"vm \\\"1\\\"\",\"n\":-3,\"ok\":true,\"nil\":null,"
                        "\"arr\":[1,\"two\",{\"three\":3}],\"obj\":{},\"u\":\"caf\xc3\xa9\"}");
    back = parse_ok(out.ptr);
    assert_true(json_equal(v, back));
    json_decref(back);

    /* Appends to what the buffer holds. */
    sov_buf_reset(&out);
    sov_buf_puts(&out, "x=");
    assert_int_equal(sov_json_dump(json_object_get(v, "arr"), &out), 0);
    assert_string_equal(out.ptr, "x=[1,\"two\",{\"three\":3}]");
    /* Any value, not only objects. */
    sov_buf_reset(&out);
    json_t *s = json_string("plain");
    assert_int_equal(sov_json_dump(s, &out), 0);
    assert_string_equal(out.ptr, "\"plain\"");
    json_decref(s);

    /* A buffer limit makes the dump fail instead of truncating silently. */
    SovBuf small;
    sov_buf_init(&small, 8);
    assert_true(sov_json_dump(v, &small) < 0);
    sov_buf_release(&small);
    json_decref(v);
    sov_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_object),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_null_body),
        cmocka_unit_test(test_parse_non_object),
        cmocka_unit_test(test_parse_duplicate_keys),
        cmocka_unit_test(test_parse_too_large),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_string_embedded_nul),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_object),
        cmocka_unit_test(test_get_array),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_dump_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
