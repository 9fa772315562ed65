/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/conf.h: typed INI loading, range checks, error messages and the sample. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sov/conf.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

typedef struct TestConf {
    char name[SOV_CONF_STR_MAX];
    char motd[SOV_CONF_STR_MAX];
    int64_t workers;
    int64_t nice;
    bool debug;
    bool tls;
    uint64_t cache_size;
    uint64_t max_object;
    uint64_t ttl_ms;
    uint64_t grace_ms;
    uint64_t flush_ms;
} TestConf;

#define GIB (1024LL * 1024 * 1024)

static const SovConfField fields[] = {
    {"server", "name", SOV_CONF_STRING, offsetof(TestConf, name), 1, 16, "sov-test",
     "service name"},
    {"server", "motd", SOV_CONF_STRING, offsetof(TestConf, motd), 0, 0, "", "message of the day"},
    {"server", "workers", SOV_CONF_INT, offsetof(TestConf, workers), 1, 64, "4", "worker threads"},
    {"server", "nice", SOV_CONF_INT, offsetof(TestConf, nice), -20, 19, "-5", "scheduling"},
    {"server", "debug", SOV_CONF_BOOL, offsetof(TestConf, debug), 0, 1, "false", "debug logs"},
    {"server", "tls", SOV_CONF_BOOL, offsetof(TestConf, tls), 0, 1, "yes", "serve TLS"},
    {"cache", "size", SOV_CONF_SIZE, offsetof(TestConf, cache_size), 0, INT64_MAX, "64M",
     "cache size"},
    {"cache", "max_object", SOV_CONF_SIZE, offsetof(TestConf, max_object), 1024, GIB, "1KiB",
     "largest cached object"},
    {"cache", "ttl", SOV_CONF_DURATION, offsetof(TestConf, ttl_ms), 0, 86400000, "5m",
     "entry lifetime"},
    {"cache", "grace", SOV_CONF_DURATION, offsetof(TestConf, grace_ms), 1, 60000, "250ms",
     "grace period"},
    {"cache", "flush", SOV_CONF_DURATION, offsetof(TestConf, flush_ms), 0, 86400000, "30",
     "flush interval"},
};

static void assert_defaults(const TestConf *c)
{
    assert_string_equal(c->name, "sov-test");
    assert_string_equal(c->motd, "");
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->nice, -5);
    assert_false(c->debug);
    assert_true(c->tls);
    assert_int_equal(c->cache_size, 64ULL * 1024 * 1024);
    assert_int_equal(c->max_object, 1024);
    assert_int_equal(c->ttl_ms, 5 * 60 * 1000);
    assert_int_equal(c->grace_ms, 250);
    assert_int_equal(c->flush_ms, 30000);
}

/* Loads text and expects failure; returns the error message (owned by err). */
static const char *load_fail(SovBuf *err, const char *text)
{
    TestConf c;

    sov_buf_reset(err);
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c, text, err), -EINVAL);
    assert_non_null(err->ptr);
    return err->ptr;
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/sov-test-conf-XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static const SovConfField *field(const char *key)
{
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        if (strcmp(fields[i].key, key) == 0)
            return &fields[i];
    fail_msg("no field %s", key);
    return NULL;
}

static void test_defaults(void **state)
{
    TestConf c;
    SovBuf err = SOV_BUF_INIT;

    memset(&c, 0x55, sizeof(c));
    assert_int_equal(sov_conf_load(fields, ELEMENTSOF(fields), &c, NULL, &err), 0);
    assert_defaults(&c);
    memset(&c, 0x55, sizeof(c));
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c, "", &err), 0);
    assert_defaults(&c);
    memset(&c, 0x55, sizeof(c));
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c,
                                          "; just a comment\n# another\n\n[server]\n", &err),
                     0);
    assert_defaults(&c);
    assert_int_equal(err.len, 0);
    sov_buf_release(&err);
}

static void test_bad_default(void **state)
{
    SovConfField bad[] = {
        {"s", "n", SOV_CONF_INT, offsetof(TestConf, workers), 1, 10, "11", "n"},
    };
    TestConf c;
    SovBuf err = SOV_BUF_INIT;

    assert_int_equal(sov_conf_load_string(bad, 1, &c, "", &err), -EINVAL);
    assert_contains(err.ptr, "[s] n");
    sov_buf_release(&err);
}

static void test_parse_size(void **state)
{
    const SovConfField *f = field("size");
    TestConf c;
    static const struct {
        const char *in;
        uint64_t want;
    } ok[] = {
        {"0", 0},           {"123", 123},
        {"1K", 1024},       {"1k", 1024},
        {"1KiB", 1024},     {"1KB", 1024},
        {"2M", 2ULL << 20}, {"2MiB", 2ULL << 20},
        {"3G", 3ULL << 30}, {"3GiB", 3ULL << 30},
        {"1T", 1ULL << 40}, {"8388607T", 8388607ULL << 40},
    };
    static const struct {
        const char *in;
        int r;
    } bad[] = {
        {"", -EINVAL},
        {"K", -EINVAL},
        {"1X", -EINVAL},
        {"1.5G", -EINVAL},
        {"1 K", -EINVAL},
        {"1KiBB", -EINVAL},
        {"1Ki B", -EINVAL},
        {"0x10", -EINVAL},
        {"-1", -ERANGE},
        {"8388608T", -ERANGE},
        {"99999999999999999999", -ERANGE},
    };

    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        c.cache_size = 7;
        if (sov_conf_parse_value(f, ok[i].in, &c) != 0)
            fail_msg("size '%s' refused", ok[i].in);
        if (c.cache_size != ok[i].want)
            fail_msg("size '%s' gave %llu", ok[i].in, (unsigned long long)c.cache_size);
    }
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c.cache_size = 7;
        int r = sov_conf_parse_value(f, bad[i].in, &c);
        if (r != bad[i].r)
            fail_msg("size '%s' gave %d, want %d", bad[i].in, r, bad[i].r);
        assert_int_equal(c.cache_size, 7);
    }

    /* The range is checked after the suffix is applied. */
    f = field("max_object");
    assert_int_equal(sov_conf_parse_value(f, "1023", &c), -ERANGE);
    assert_int_equal(sov_conf_parse_value(f, "1G", &c), 0);
    assert_int_equal(c.max_object, 1ULL << 30);
    assert_int_equal(sov_conf_parse_value(f, "1025M", &c), -ERANGE);
}

static void test_parse_duration(void **state)
{
    const SovConfField *f = field("ttl");
    TestConf c;
    static const struct {
        const char *in;
        uint64_t want_ms;
    } ok[] = {
        {"0", 0},       {"250ms", 250},  {"45", 45000},     {"2s", 2000},
        {"3m", 180000}, {"1h", 3600000}, {"24h", 86400000}, {"1440m", 86400000},
    };
    static const struct {
        const char *in;
        int r;
    } bad[] = {
        {"", -EINVAL},    {"ms", -EINVAL}, {"1d", -EINVAL},  {"5sec", -EINVAL}, {"1.5h", -EINVAL},
        {"5 s", -EINVAL}, {"2S", -EINVAL}, {"-1s", -ERANGE}, {"25h", -ERANGE},  {"86401", -ERANGE},
    };

    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        c.ttl_ms = 7;
        if (sov_conf_parse_value(f, ok[i].in, &c) != 0)
            fail_msg("duration '%s' refused", ok[i].in);
        if (c.ttl_ms != ok[i].want_ms)
            fail_msg("duration '%s' gave %llu ms", ok[i].in, (unsigned long long)c.ttl_ms);
    }
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c.ttl_ms = 7;
        int r = sov_conf_parse_value(f, bad[i].in, &c);
        if (r != bad[i].r)
            fail_msg("duration '%s' gave %d, want %d", bad[i].in, r, bad[i].r);
        assert_int_equal(c.ttl_ms, 7);
    }
}

static void test_parse_int(void **state)
{
    const SovConfField *f = field("nice");
    TestConf c;

    assert_int_equal(sov_conf_parse_value(f, "-20", &c), 0);
    assert_int_equal(c.nice, -20);
    assert_int_equal(sov_conf_parse_value(f, "19", &c), 0);
    assert_int_equal(c.nice, 19);
    assert_int_equal(sov_conf_parse_value(f, "0", &c), 0);
    assert_int_equal(c.nice, 0);
    c.nice = 3;
    assert_int_equal(sov_conf_parse_value(f, "20", &c), -ERANGE);
    assert_int_equal(sov_conf_parse_value(f, "-21", &c), -ERANGE);
    assert_int_equal(sov_conf_parse_value(f, "99999999999999999999", &c), -ERANGE);
    assert_int_equal(sov_conf_parse_value(f, "-99999999999999999999", &c), -ERANGE);
    assert_int_equal(sov_conf_parse_value(f, "abc", &c), -EINVAL);
    assert_int_equal(sov_conf_parse_value(f, "12abc", &c), -EINVAL);
    assert_int_equal(sov_conf_parse_value(f, "1K", &c), -EINVAL); /* no suffixes on ints */
    assert_int_equal(sov_conf_parse_value(f, "1s", &c), -EINVAL);
    assert_int_equal(sov_conf_parse_value(f, "", &c), -EINVAL);
    assert_int_equal(sov_conf_parse_value(f, "1.0", &c), -EINVAL);
    assert_int_equal(c.nice, 3);
}

static void test_parse_bool(void **state)
{
    const SovConfField *f = field("debug");
    TestConf c;
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "ON"};
    static const char *const no[] = {"false", "no", "off", "0", "FALSE", "No", "Off"};
    static const char *const bad[] = {"", "maybe", "2", "y", "n", "truee", "enabled"};

    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        c.debug = false;
        assert_int_equal(sov_conf_parse_value(f, yes[i], &c), 0);
        assert_true(c.debug);
    }
    for (size_t i = 0; i < ELEMENTSOF(no); i++) {
        c.debug = true;
        assert_int_equal(sov_conf_parse_value(f, no[i], &c), 0);
        assert_false(c.debug);
    }
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c.debug = true;
        if (sov_conf_parse_value(f, bad[i], &c) != -EINVAL)
            fail_msg("bool '%s' accepted", bad[i]);
        assert_true(c.debug);
    }
}

static void test_parse_string(void **state)
{
    const SovConfField *name = field("name"), *motd = field("motd");
    TestConf c;
    char big[SOV_CONF_STR_MAX + 1];

    assert_int_equal(sov_conf_parse_value(name, "0123456789abcdef", &c), 0); /* 16 = max */
    assert_string_equal(c.name, "0123456789abcdef");
    assert_int_equal(sov_conf_parse_value(name, "0123456789abcdefg", &c), -E2BIG);
    assert_int_equal(sov_conf_parse_value(name, "", &c), -ERANGE); /* min length 1 */
    assert_string_equal(c.name, "0123456789abcdef");

    /* Without a max, the buffer size is the limit. */
    memset(big, 'x', sizeof(big));
    big[SOV_CONF_STR_MAX - 1] = '\0';
    assert_int_equal(sov_conf_parse_value(motd, big, &c), 0);
    assert_int_equal(strlen(c.motd), SOV_CONF_STR_MAX - 1);
    big[SOV_CONF_STR_MAX - 1] = 'x';
    big[SOV_CONF_STR_MAX] = '\0';
    assert_int_equal(sov_conf_parse_value(motd, big, &c), -E2BIG);
    assert_int_equal(sov_conf_parse_value(motd, "", &c), 0);
    assert_string_equal(c.motd, "");
}

static const char full_text[] = "; a full config\n"
                                "[server]\n"
                                "name = api-1\n"
                                "motd = hello world\n"
                                "workers = 64\n"
                                "nice=-20\n"
                                "debug = on\n"
                                "tls = false\n"
                                "\n"
                                "[cache]\n"
                                "size = 2G\n"
                                "max_object = 16KiB\n"
                                "ttl = 1h\n"
                                "grace = 60s\n"
                                "flush = 10\n";

static void assert_full(const TestConf *c)
{
    assert_string_equal(c->name, "api-1");
    assert_string_equal(c->motd, "hello world");
    assert_int_equal(c->workers, 64);
    assert_int_equal(c->nice, -20);
    assert_true(c->debug);
    assert_false(c->tls);
    assert_int_equal(c->cache_size, 2ULL << 30);
    assert_int_equal(c->max_object, 16384);
    assert_int_equal(c->ttl_ms, 3600000);
    assert_int_equal(c->grace_ms, 60000);
    assert_int_equal(c->flush_ms, 10000);
}

static void test_load_string(void **state)
{
    TestConf c;
    SovBuf err = SOV_BUF_INIT;

    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c, full_text, &err), 0);
    assert_full(&c);
    assert_int_equal(err.len, 0);

    /* A partial file keeps the defaults of the keys it does not set. */
    assert_int_equal(
        sov_conf_load_string(fields, ELEMENTSOF(fields), &c, "[cache]\r\nttl = 2m\r\n", &err), 0);
    assert_int_equal(c.ttl_ms, 120000);
    c.ttl_ms = 5 * 60 * 1000;
    assert_defaults(&c);

    /* No trailing newline. */
    assert_int_equal(
        sov_conf_load_string(fields, ELEMENTSOF(fields), &c, "[server]\nworkers = 9", &err), 0);
    assert_int_equal(c.workers, 9);
    sov_buf_release(&err);
}

static void test_load_file(void **state)
{
    TestConf c;
    SovBuf err = SOV_BUF_INIT;
    char *path = write_temp(full_text);

    assert_int_equal(sov_conf_load(fields, ELEMENTSOF(fields), &c, path, &err), 0);
    assert_full(&c);
    unlink(path);
    free(path);

    /* Errors name the file, not "<string>". */
    path = write_temp("[server]\n\nworkers = 65\n");
    sov_buf_reset(&err);
    assert_int_equal(sov_conf_load(fields, ELEMENTSOF(fields), &c, path, &err), -EINVAL);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: [server] workers: value out of range", path);
    assert_contains(err.ptr, want);
    unlink(path);
    free(path);
    sov_buf_release(&err);
}

static void test_load_missing_file(void **state)
{
    TestConf c;
    SovBuf err = SOV_BUF_INIT;

    assert_int_equal(
        sov_conf_load(fields, ELEMENTSOF(fields), &c, "/nonexistent/sov-test/none.ini", &err),
        -ENOENT);
    assert_contains(err.ptr, "/nonexistent/sov-test/none.ini");
    /* The defaults were still applied. */
    assert_defaults(&c);
    sov_buf_release(&err);
}

static void test_error_unknown_key(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_string_equal(load_fail(&err, "[server]\nworkers = 2\nworkerz = 3\n"),
                        "<string>:3: unknown key [server] workerz");
    assert_string_equal(load_fail(&err, "[nosuch]\nworkers = 2\n"),
                        "<string>:2: unknown key [nosuch] workers");
    /* A key outside any section. */
    assert_string_equal(load_fail(&err, "workers = 2\n"), "<string>:1: unknown key [] workers");
    sov_buf_release(&err);
}

static void test_error_out_of_range(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_string_equal(load_fail(&err, "[server]\nworkers = 65\n"),
                        "<string>:2: [server] workers: value out of range (allowed 1..64)");
    assert_string_equal(load_fail(&err, "[server]\nnice = -21\n"),
                        "<string>:2: [server] nice: value out of range (allowed -20..19)");
    assert_contains(load_fail(&err, "[cache]\n\n\nmax_object = 512\n"),
                    "<string>:4: [cache] max_object: value out of range");
    assert_contains(load_fail(&err, "[cache]\nsize = -1K\n"),
                    "<string>:2: [cache] size: value out of range");
    sov_buf_release(&err);
}

static void test_error_malformed_number(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_contains(load_fail(&err, "[server]\nworkers = 4x\n"),
                    "<string>:2: [server] workers: malformed value");
    assert_contains(load_fail(&err, "[cache]\nsize = 10X\n"),
                    "<string>:2: [cache] size: malformed value");
    assert_contains(load_fail(&err, "[cache]\nttl = 5 days\n"),
                    "<string>:2: [cache] ttl: malformed value");
    assert_contains(load_fail(&err, "[server]\nworkers =\n"),
                    "<string>:2: [server] workers: malformed value");
    sov_buf_release(&err);
}

static void test_error_bad_bool(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_string_equal(load_fail(&err, "[server]\ndebug = maybe\n"),
                        "<string>:2: [server] debug: malformed value");
    sov_buf_release(&err);
}

static void test_error_string_too_long(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_string_equal(load_fail(&err, "[server]\nname = 0123456789abcdefg\n"),
                        "<string>:2: [server] name: value too long");
    assert_string_equal(load_fail(&err, "[server]\nname =\n"),
                        "<string>:2: [server] name: value out of range");
    sov_buf_release(&err);
}

static void test_error_line_too_long(void **state)
{
    SovBuf text = SOV_BUF_INIT, err = SOV_BUF_INIT;

    sov_buf_puts(&text, "[server]\nworkers = 2\nmotd = ");
    for (int i = 0; i < 250; i++)
        sov_buf_putc(&text, 'x');
    sov_buf_puts(&text, "\nworkers = 3\n");
    assert_contains(load_fail(&err, text.ptr), "<string>:3: line longer than 199 bytes");
    sov_buf_release(&text);
    sov_buf_release(&err);
}

/* Builds "[server]\nmotd = xxx…\n" where the motd line has exactly len characters. */
static void motd_line(SovBuf *text, size_t len, bool newline)
{
    sov_buf_reset(text);
    sov_buf_puts(text, "[server]\nmotd = ");
    for (size_t i = strlen("motd = "); i < len; i++)
        sov_buf_putc(text, 'x');
    if (newline)
        sov_buf_putc(text, '\n');
}

static void test_line_length_boundary(void **state)
{
    SovBuf text = SOV_BUF_INIT, err = SOV_BUF_INIT;
    TestConf c;

    /* 198 characters plus newline fit inih's 200-byte line buffer. */
    motd_line(&text, 198, true);
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c, text.ptr, &err), 0);
    assert_int_equal(strlen(c.motd), 198 - strlen("motd = "));

    /* 200 characters are more than the 199 the message promises. */
    motd_line(&text, 200, true);
    assert_contains(load_fail(&err, text.ptr), "<string>:2: line longer than 199 bytes");
    motd_line(&text, 200, false);
    assert_contains(load_fail(&err, text.ptr), "<string>:2: line longer than 199 bytes");

    motd_line(&text, 199, false);
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c, text.ptr, &err), 0);
    assert_int_equal(strlen(c.motd), 199 - strlen("motd = "));
    sov_buf_release(&text);
    sov_buf_release(&err);
}

/* Regression, fixed (src/core/conf.c, conf_reader()): the length check counts the line's '\n', so a
 * line of exactly 199 characters is refused with "line longer than 199 bytes" when a newline
 * follows it, yet accepted at the end of the text without one (see the test above). The limit
 * should apply to the line's characters alone. This test fails until conf.c is fixed. */
static void test_regression_line_of_199_with_newline(void **state)
{
    SovBuf text = SOV_BUF_INIT, err = SOV_BUF_INIT;
    TestConf c;
    char msg[256];
    int r;

    motd_line(&text, 199, true);
    r = sov_conf_load_string(fields, ELEMENTSOF(fields), &c, text.ptr, &err);
    snprintf(msg, sizeof(msg), "%s", err.ptr ? err.ptr : "");
    sov_buf_release(&text);
    sov_buf_release(&err);
    if (r != 0)
        fail_msg("a 199-character line followed by a newline was refused: %s", msg);
    assert_int_equal(strlen(c.motd), 199 - strlen("motd = "));
}

static void test_error_syntax(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    assert_string_equal(load_fail(&err, "[server]\nworkers = 2\n[cache\n"),
                        "<string>:3: syntax error");
    assert_string_equal(load_fail(&err, "[server]\njust words\n"), "<string>:2: syntax error");
    sov_buf_release(&err);
}

static void test_error_first_only(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    /* Only the first problem is reported, so the message stays one line. */
    assert_string_equal(load_fail(&err, "[server]\nbogus = 1\nworkers = 0\ndebug = maybe\n"),
                        "<string>:2: unknown key [server] bogus");
    assert_null(strchr(err.ptr, '\n'));
    sov_buf_release(&err);
}

/* Removes the '#' of every "#key = value" line, leaving "# comment" lines alone. */
static void uncomment_sample(const char *in, SovBuf *out)
{
    const char *p = in;
    int uncommented = 0;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (len > 1 && p[0] == '#' && p[1] != ' ' && memmem(p, len, " = ", 3)) {
            p++;
            len--;
            uncommented++;
        }
        sov_buf_append(out, p, len);
        p += len;
    }
    assert_int_equal(uncommented, ELEMENTSOF(fields));
}

static void test_sample_roundtrip(void **state)
{
    SovBuf sample = SOV_BUF_INIT, text = SOV_BUF_INIT, err = SOV_BUF_INIT;
    TestConf defaults, loaded;

    memset(&defaults, 0, sizeof(defaults));
    assert_int_equal(sov_conf_load(fields, ELEMENTSOF(fields), &defaults, NULL, &err), 0);
    assert_int_equal(sov_conf_write_sample(fields, ELEMENTSOF(fields), "sov-test sample", &sample),
                     0);
    assert_contains(sample.ptr, "# sov-test sample\n");
    assert_contains(sample.ptr, "\n[server]\n");
    assert_contains(sample.ptr, "\n[cache]\n");
    assert_contains(sample.ptr, "# worker threads (1..64)\n#workers = 4\n");
    assert_contains(sample.ptr, "\n#ttl = 5m\n");

    /* Commented out, the sample loads to the defaults too. */
    memset(&loaded, 0, sizeof(loaded));
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &loaded, sample.ptr, &err),
                     0);
    assert_memory_equal(&loaded, &defaults, sizeof(defaults));

    uncomment_sample(sample.ptr, &text);
    assert_contains(text.ptr, "\nworkers = 4\n");
    memset(&loaded, 0, sizeof(loaded));
    if (sov_conf_load_string(fields, ELEMENTSOF(fields), &loaded, text.ptr, &err) != 0)
        fail_msg("uncommented sample does not load: %s", err.ptr);
    assert_memory_equal(&loaded, &defaults, sizeof(defaults));
    assert_defaults(&loaded);

    sov_buf_release(&sample);
    sov_buf_release(&text);
    sov_buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_string),
        cmocka_unit_test(test_load_string),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_out_of_range),
        cmocka_unit_test(test_error_malformed_number),
        cmocka_unit_test(test_error_bad_bool),
        cmocka_unit_test(test_error_string_too_long),
        cmocka_unit_test(test_error_line_too_long),
        cmocka_unit_test(test_line_length_boundary),
        cmocka_unit_test(test_regression_line_of_199_with_newline),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_first_only),
        cmocka_unit_test(test_sample_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
