/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/log.h: logfmt formatting, quoting, secret redaction and level filtering. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/buf.h"
#include "sov/log.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

#define assert_not_contains(hay, needle)                                                           \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ && strstr(h_, n_))                                                                  \
            fail_msg("'%s' contains '%s'", h_, n_);                                                \
    } while (0)

/* The line without its "ts=… " prefix, which changes from run to run. */
static const char *after_ts(const SovBuf *b)
{
    const char *sp;

    assert_non_null(b->ptr);
    assert_true(strncmp(b->ptr, "ts=", 3) == 0);
    sp = strchr(b->ptr, ' ');
    assert_non_null(sp);
    return sp + 1;
}

static int setup(void **state)
{
    sov_log_setup("test", SOV_LOG_DEBUG, NULL);
    return 0;
}

static void test_format_fields(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    regex_t re;

    assert_int_equal(sov_log_format(&b, SOV_LOG_INFO, "0123456789abcdef", 0, "started", NULL), 0);
    assert_string_equal(after_ts(&b), "level=info svc=test req=0123456789abcdef msg=started");
    assert_int_equal(
        regcomp(&re,
                "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                "level=",
                REG_EXTENDED | REG_NOSUB),
        0);
    if (regexec(&re, b.ptr, 0, NULL, 0) != 0)
        fail_msg("bad timestamp in '%s'", b.ptr);
    regfree(&re);
    assert_null(strchr(b.ptr, '\n'));

    /* Without a request id there is no req field. */
    sov_buf_reset(&b);
    sov_log_format(&b, SOV_LOG_ERROR, NULL, 0, "boom", NULL);
    assert_string_equal(after_ts(&b), "level=error svc=test msg=boom");

    sov_buf_reset(&b);
    sov_log_format(&b, SOV_LOG_WARN, NULL, 0, "x", NULL);
    assert_string_equal(after_ts(&b), "level=warn svc=test msg=x");
    sov_buf_reset(&b);
    sov_log_format(&b, SOV_LOG_DEBUG, NULL, 0, "x", NULL);
    assert_string_equal(after_ts(&b), "level=debug svc=test msg=x");
    sov_buf_release(&b);
}

static void test_format_err_and_kv(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    const char *const kv[] = {"bucket", "photos", "key", NULL, "size", "1024", "path", "a b", NULL};

    sov_log_format(&b, SOV_LOG_ERROR, "r1", -ENOENT, "PUT failed", kv);
    /* "key" names a secret, so even a NULL value is replaced. */
    assert_string_equal(after_ts(&b), "level=error svc=test req=r1 msg=\"PUT failed\" "
                                      "err=\"No such file or directory\" bucket=photos "
                                      "key=[redacted] size=1024 path=\"a b\"");
    /* A positive errno is reported the same way. */
    sov_buf_reset(&b);
    sov_log_format(&b, SOV_LOG_ERROR, NULL, EACCES, "open", NULL);
    assert_string_equal(after_ts(&b), "level=error svc=test msg=open err=\"Permission denied\"");
    sov_buf_release(&b);
}

static void test_format_null_value(void **state)
{
    SovBuf b = SOV_BUF_INIT;
    const char *const kv[] = {"host", NULL, NULL};

    sov_log_format(&b, SOV_LOG_INFO, NULL, 0, "m", kv);
    assert_string_equal(after_ts(&b), "level=info svc=test msg=m host=\"\"");
    sov_buf_release(&b);
}

static void test_quoting(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"", "\"\""},
        {"two words", "\"two words\""},
        {"a=b", "\"a=b\""},
        {"say \"hi\"", "\"say \\\"hi\\\"\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"line1\nline2", "\"line1\\nline2\""},
        {"cr\rlf", "\"cr\\x0dlf\""},
        {"tab\there", "\"tab\\x09here\""},
        {"bell\x01\x1f", "\"bell\\x01\\x1f\""},
        {"del\x7f", "\"del\\x7f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"/v2/images?x", "/v2/images?x"},
    };
    SovBuf b = SOV_BUF_INIT;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char want[256];
        const char *const kv[] = {"v", cases[i].in, NULL};

        /* The same escaping applies to msg, req and values. */
        sov_buf_reset(&b);
        sov_log_format(&b, SOV_LOG_INFO, cases[i].in, 0, cases[i].in, kv);
        snprintf(want, sizeof(want), "level=info svc=test req=%s msg=%s v=%s", cases[i].out,
                 cases[i].out, cases[i].out);
        assert_string_equal(after_ts(&b), want);
        /* Whatever the input, the event stays on one line without raw control bytes. */
        for (const char *p = b.ptr; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                fail_msg("raw control byte 0x%02x in '%s'", (unsigned char)*p, b.ptr);
    }
    sov_buf_release(&b);
}

static void test_redaction(void **state)
{
    static const char *const secret[] = {
        "password",
        "Password",
        "db_password",
        "Authorization",
        "authorization",
        "aws_secret_key",
        "x-amz-security-token",
        "X-Auth-Token",
        "access_key",
        "Cookie",
        "signature",
        "credential",
    };
    static const char *const plain[] = {"bucket", "user", "status", "method", "path"};
    SovBuf b = SOV_BUF_INIT;

    for (size_t i = 0; i < ELEMENTSOF(secret); i++) {
        const char *const kv[] = {secret[i], "hunter2 s3cr3t", "bucket", "b1", NULL};
        char want[128];

        assert_true(sov_log_key_is_secret(secret[i]));
        sov_buf_reset(&b);
        sov_log_format(&b, SOV_LOG_INFO, NULL, 0, "auth", kv);
        assert_not_contains(b.ptr, "hunter2");
        assert_not_contains(b.ptr, "s3cr3t");
        snprintf(want, sizeof(want), " %s=[redacted] bucket=b1", secret[i]);
        assert_contains(b.ptr, want);
    }
    for (size_t i = 0; i < ELEMENTSOF(plain); i++) {
        const char *const kv[] = {plain[i], "visible", NULL};
        char want[64];

        assert_false(sov_log_key_is_secret(plain[i]));
        sov_buf_reset(&b);
        sov_log_format(&b, SOV_LOG_INFO, NULL, 0, "m", kv);
        snprintf(want, sizeof(want), " %s=visible", plain[i]);
        assert_contains(b.ptr, want);
    }
    sov_buf_release(&b);
}

static void test_level_strings(void **state)
{
    SovLogLevel l = SOV_LOG_ERROR;

    assert_int_equal(sov_log_level_from_string("debug", &l), 0);
    assert_int_equal(l, SOV_LOG_DEBUG);
    assert_int_equal(sov_log_level_from_string("WARN", &l), 0);
    assert_int_equal(l, SOV_LOG_WARN);
    assert_int_equal(sov_log_level_from_string("Info", &l), 0);
    assert_int_equal(l, SOV_LOG_INFO);
    assert_int_equal(sov_log_level_from_string("error", &l), 0);
    assert_int_equal(l, SOV_LOG_ERROR);
    assert_int_equal(sov_log_level_from_string("verbose", &l), -EINVAL);
    assert_int_equal(sov_log_level_from_string("", &l), -EINVAL);
    assert_int_equal(l, SOV_LOG_ERROR);
    assert_string_equal(sov_log_level_to_string(SOV_LOG_WARN), "warn");
    assert_string_equal(sov_log_level_to_string((SovLogLevel)42), "unknown");
}

/* Everything written to f since it was opened. */
static char *slurp(FILE *f)
{
    long n;
    char *s;

    fflush(f);
    n = ftell(f);
    assert_true(n >= 0);
    s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_level_filtering(void **state)
{
    FILE *f = tmpfile();
    char *out;

    assert_non_null(f);
    sov_log_setup("filt", SOV_LOG_WARN, f);
    assert_int_equal(sov_log_get_level(), SOV_LOG_WARN);

    const char *const kv[] = {"n", "1", NULL};
    assert_int_equal(sov_logv_kv(SOV_LOG_DEBUG, NULL, 0, "dropped-debug", kv), 0);
    assert_int_equal(sov_logv_kv(SOV_LOG_INFO, NULL, -EIO, "dropped-info", kv), -EIO);
    assert_int_equal(sov_logv_kv(SOV_LOG_WARN, "rq", 0, "kept-warn", kv), 0);
    assert_int_equal(sov_logv_kv(SOV_LOG_ERROR, NULL, -ENOSPC, "kept-error", NULL), -ENOSPC);
    /* The return value is negative even when err is given as a positive errno. */
    assert_int_equal(sov_logv_kv(SOV_LOG_ERROR, NULL, EPERM, "kept-eperm", NULL), -EPERM);
    assert_int_equal(log_info("dropped-%s", "printf"), 0);
    assert_int_equal(log_error_errno(-EINVAL, "kept-%s %d", "printf", 42), -EINVAL);

    sov_log_set_level(SOV_LOG_DEBUG);
    assert_int_equal(sov_log_get_level(), SOV_LOG_DEBUG);
    assert_int_equal(log_debug("now-kept"), 0);

    out = slurp(f);
    assert_int_equal(count_lines(out), 5);
    assert_not_contains(out, "dropped");
    assert_contains(out, "level=warn svc=filt req=rq msg=kept-warn n=1\n");
    assert_contains(out, "level=error svc=filt msg=kept-error err=\"No space left on device\"\n");
    assert_contains(out, "level=error svc=filt msg=kept-eperm err=\"Operation not permitted\"\n");
    assert_contains(out, "level=error svc=filt msg=\"kept-printf 42\" err=\"Invalid argument\"\n");
    assert_contains(out, "level=debug svc=filt msg=now-kept\n");
    /* Every line is a complete event that starts with its timestamp. */
    for (const char *line = out; *line; line = strchr(line, '\n') + 1)
        assert_true(strncmp(line, "ts=", 3) == 0);
    free(out);

    sov_log_setup("test", SOV_LOG_DEBUG, NULL);
    fclose(f);
}

static void test_multiline_message_stays_one_line(void **state)
{
    FILE *f = tmpfile();
    char *out;

    assert_non_null(f);
    sov_log_setup("ml", SOV_LOG_INFO, f);
    log_info("first\nts=forged level=error msg=injected");
    out = slurp(f);
    assert_int_equal(count_lines(out), 1);
    assert_contains(out, "msg=\"first\\nts=forged level=error msg=injected\"\n");
    free(out);
    sov_log_setup("test", SOV_LOG_DEBUG, NULL);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_format_fields, setup),
        cmocka_unit_test_setup(test_format_err_and_kv, setup),
        cmocka_unit_test_setup(test_format_null_value, setup),
        cmocka_unit_test_setup(test_quoting, setup),
        cmocka_unit_test_setup(test_redaction, setup),
        cmocka_unit_test_setup(test_level_strings, setup),
        cmocka_unit_test_setup(test_level_filtering, setup),
        cmocka_unit_test_setup(test_multiline_message_stays_one_line, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
