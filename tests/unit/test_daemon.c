/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/daemon.h: host:port parsing, the daemon command line, atomic file writes,
 * pid files, listening sockets and worker threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sov/conf.h"
#include "sov/daemon.h"
#include "sov/mac.h"
#include "sov/http.h"
#include "sov/log.h"
#include "sov/macro.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

static void test_parse_hostport(void **state)
{
    char host[64];
    int port = -1;

    assert_int_equal(sov_parse_hostport("127.0.0.1:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 80);
    assert_int_equal(sov_parse_hostport("[::1]:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    assert_int_equal(sov_parse_hostport("localhost:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0);
    assert_int_equal(sov_parse_hostport("0.0.0.0:65535", host, sizeof(host), &port), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(sov_parse_hostport("[fe80::1%eth0]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "fe80::1%eth0");
    assert_int_equal(port, 443);
}

static void test_parse_http_url_and_names(void **state)
{
    char host[64];
    int port = -1;

    assert_int_equal(sov_parse_http_url("http://127.0.0.1:8400", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8400);
    assert_int_equal(sov_parse_http_url("http://[::1]:9/api", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9);
    assert_int_equal(sov_parse_http_url("https://h:1", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sov_parse_http_url("http://h", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sov_parse_http_url("http://", host, sizeof(host), &port), -EINVAL);
    assert_true(sov_name_ok("compute-1.net_a"));
    assert_true(sov_name_ok(""));
    assert_false(sov_name_ok("a b"));
    assert_false(sov_name_ok("../x"));
    assert_false(sov_name_ok("x/y"));
}

/* MAC addresses: six hex pairs joined by one kind of separator; written back lower-case. */
static void test_mac(void **state)
{
    (void)state;
    uint8_t m[6];
    char out[18];
    assert_true(sov_mac_parse("FA:16:3e:0A:b1:ff", m));
    sov_mac_format(m, out);
    assert_string_equal(out, "fa:16:3e:0a:b1:ff");
    assert_true(sov_mac_parse("fa-16-3e-0a-b1-ff", m));
    assert_int_equal(m[5], 0xff);
    static const char *const bad[] = {"",
                                      "fa:16:3e:0a:b1",
                                      "fa:16:3e:0a:b1:ff:",
                                      "fa:16-3e:0a:b1:ff",
                                      "fa:16:3e:0a:b1:fg",
                                      "fa.16.3e.0a.b1.ff",
                                      " a:16:3e:0a:b1:ff",
                                      "fa:16:3e:0a:b1:f",
                                      NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_false(sov_mac_parse(bad[i], m));
    assert_false(sov_mac_parse(NULL, m));
    /* a port's MAC: unicast and not all zeros */
    assert_true(sov_mac_parse("fa:16:3e:00:00:01", m) && sov_mac_unicast(m));
    assert_true(sov_mac_parse("01:00:5e:00:00:01", m) && !sov_mac_unicast(m));
    assert_true(sov_mac_parse("00:00:00:00:00:00", m) && !sov_mac_unicast(m));
    assert_true(sov_mac_port("FA-16-3E-00-00-01", out));
    assert_string_equal(out, "fa:16:3e:00:00:01");
    assert_false(sov_mac_port("01:00:5e:00:00:01", out));
    assert_false(sov_mac_port("fa:16:3e:00:00", out));
}

/* DNS labels and names: RFC 1123 syntax, lower-cased, one trailing dot dropped. */
static void test_dns_names(void **state)
{
    (void)state;
    char out[SOV_DNS_NAME_MAX + 1], l64[70], n254[300];
    assert_true(sov_dns_name_norm("Web-1.Example.TEST.", out));
    assert_string_equal(out, "web-1.example.test");
    assert_true(sov_dns_name_norm("a", out));
    assert_string_equal(out, "a");
    static const char *const bad[] = {"",    ".",   "a..", "a..b", ".a",    "-a.b", "a-.b",
                                      "a_b", "a b", "a/b", "é.x",  "a.b..", NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_false(sov_dns_name_norm(bad[i], out));
    assert_false(sov_dns_name_norm(NULL, out));
    memset(l64, 'a', 64);
    l64[64] = '\0';
    assert_false(sov_dns_name_norm(l64, out)); /* a 64-character label */
    assert_false(sov_dns_label_norm(l64, 64, out));
    assert_true(sov_dns_label_norm(l64, 63, out));
    memcpy(l64 + 63, ".b", 3); /* a 63-character label, then another */
    assert_true(sov_dns_name_norm(l64, out));
    assert_int_equal(strlen(out), 65);
    assert_false(sov_dns_name_norm("a.b-", out));
    /* 253 characters (and a trailing dot) are a name, 254 are not */
    for (size_t i = 0; i < 254; i++)
        n254[i] = i % 4 == 3 ? '.' : 'b';
    n254[253] = '\0';
    assert_true(sov_dns_name_norm(n254, out));
    assert_int_equal(strlen(out), 253);
    n254[253] = '.';
    n254[254] = '\0';
    assert_true(sov_dns_name_norm(n254, out));
    n254[253] = 'b';
    assert_false(sov_dns_name_norm(n254, out));
    assert_true(sov_dns_label_norm("Db-1", 4, out));
    assert_string_equal(out, "db-1");
    assert_false(sov_dns_label_norm("", 0, out));
    assert_false(sov_dns_label_norm("-a", 2, out));
    assert_false(sov_dns_label_norm("a.b", 3, out));
}

static void test_parse_hostport_bad(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1",                 /* no port */
        "host:70000",                /* out of range */
        "host:65536",                /* just out of range */
        ":80",                       /* empty host */
        "[]:80",                     /* empty v6 host */
        "host:",                     /* empty port */
        "host:80x",                  /* trailing junk */
        "host:-1",                   /* negative */
        "[::1]",                     /* v6 without port */
        "[::1]8080",                 /* missing colon */
        "[::1:8080",                 /* unterminated bracket */
        "",                          /* nothing at all */
        "host:99999999999999999999", /* overflow */
    };
    char host[64];
    int port = 12345;

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        snprintf(host, sizeof(host), "untouched");
        if (sov_parse_hostport(bad[i], host, sizeof(host), &port) != -EINVAL)
            fail_msg("'%s' accepted (host '%s', port %d)", bad[i], host, port);
        assert_string_equal(host, "untouched");
        assert_int_equal(port, 12345);
    }
    /* The host must fit the caller's buffer, NUL included. */
    assert_int_equal(sov_parse_hostport("abcd:1", host, 4, &port), -EINVAL);
    assert_int_equal(sov_parse_hostport("abc:1", host, 4, &port), 0);
    assert_string_equal(host, "abc");
}

/* Regression, fixed (src/core/daemon.c, sov_parse_hostport()): the port goes through strtol(),
 * which skips leading whitespace and takes a sign, so "host: 80", "host:+80" and "host:-0" are
 * accepted (ports 80, 80 and 0) although none is HOST:PORT. Expected -EINVAL: the port must be
 * 1 to 5 decimal digits. This test fails until daemon.c is fixed. */
static void test_regression_hostport_lenient_port(void **state)
{
    static const char *const bad[] = {"host: 80", "host:+80", "host:-0", "host:\t80"};
    char host[64];
    int port = -1;

    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (sov_parse_hostport(bad[i], host, sizeof(host), &port) != -EINVAL)
            fail_msg("'%s' accepted as port %d, want -EINVAL", bad[i], port);
}

/* Runs sov_daemon_parse_args with stdout and stderr captured into *ret_out. */
static int parse_args(int argc, char **argv, SovDaemonArgs *a, char **ret_out)
{
    FILE *cap = tmpfile();
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO), r;
    long n;

    assert_non_null(cap);
    fflush(stdout);
    fflush(stderr);
    dup2(fileno(cap), STDOUT_FILENO);
    dup2(fileno(cap), STDERR_FILENO);
    r = sov_daemon_parse_args(argc, argv, "sov-test", a);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);

    n = lseek(fileno(cap), 0, SEEK_END);
    assert_true(n >= 0);
    *ret_out = calloc(1, (size_t)n + 1);
    assert_non_null(*ret_out);
    assert_int_equal(pread(fileno(cap), *ret_out, (size_t)n, 0), n);
    fclose(cap);
    return r;
}

static void test_daemon_args(void **state)
{
    char *argv[] = {"sov-test",  "--config",    "/etc/sov/s3.ini", "--listen",     "127.0.0.1:9000",
                    "--pidfile", "/run/s3.pid", "--port-file",     "/run/s3.port", NULL};
    SovDaemonArgs a;
    char *out;

    memset(&a, 0x55, sizeof(a));
    assert_int_equal(parse_args(9, argv, &a, &out), 0);
    assert_string_equal(a.config, "/etc/sov/s3.ini");
    assert_string_equal(a.listen, "127.0.0.1:9000");
    assert_string_equal(a.pidfile, "/run/s3.pid");
    assert_string_equal(a.port_file, "/run/s3.port");
    assert_false(a.print_config);
    assert_false(a.check_config);
    assert_string_equal(out, "");
    free(out);

    char *flags[] = {"sov-test", "--check-config", "--print-sample-config", NULL};
    memset(&a, 0x55, sizeof(a));
    assert_int_equal(parse_args(3, flags, &a, &out), 0);
    assert_true(a.check_config);
    assert_true(a.print_config);
    assert_null(a.config);
    assert_null(a.listen);
    assert_null(a.pidfile);
    assert_null(a.port_file);
    free(out);

    /* No options at all gives all defaults. */
    char *none[] = {"sov-test", NULL};
    memset(&a, 0x55, sizeof(a));
    assert_int_equal(parse_args(1, none, &a, &out), 0);
    assert_null(a.config);
    assert_false(a.check_config);
    free(out);

    /* A later option overrides an earlier one. */
    char *twice[] = {"sov-test", "--config", "a.ini", "--config", "b.ini", NULL};
    assert_int_equal(parse_args(5, twice, &a, &out), 0);
    assert_string_equal(a.config, "b.ini");
    free(out);
}

static void test_daemon_args_errors(void **state)
{
    static const char *const need_value[] = {"--config", "--listen", "--pidfile", "--port-file"};
    SovDaemonArgs a;
    char *out;

    for (size_t i = 0; i < ELEMENTSOF(need_value); i++) {
        char *argv[] = {"sov-test", (char *)need_value[i], NULL};
        char want[64];

        memset(&a, 0x55, sizeof(a));
        assert_int_equal(parse_args(2, argv, &a, &out), -EINVAL);
        snprintf(want, sizeof(want), "%s needs a value", need_value[i]);
        assert_contains(out, want);
        free(out);
    }

    char *unknown[] = {"sov-test", "--config", "x.ini", "--bogus", NULL};
    assert_int_equal(parse_args(4, unknown, &a, &out), -EINVAL);
    assert_contains(out, "unknown option '--bogus'");
    free(out);
    char *positional[] = {"sov-test", "extra", NULL};
    assert_int_equal(parse_args(2, positional, &a, &out), -EINVAL);
    free(out);
    char *joined[] = {"sov-test", "--config=x.ini", NULL};
    assert_int_equal(parse_args(2, joined, &a, &out), -EINVAL);
    free(out);
}

static void test_daemon_args_help(void **state)
{
    char *help[] = {"sov-test", "--config", "x.ini", "--help", "--bogus", NULL};
    char *h[] = {"sov-test", "-h", NULL};
    SovDaemonArgs a;
    char *out;

    /* --help wins over anything after it. */
    assert_int_equal(parse_args(5, help, &a, &out), 1);
    assert_contains(out, "Usage: sov-test");
    free(out);
    assert_int_equal(parse_args(2, h, &a, &out), 1);
    assert_contains(out, "Usage: sov-test");
    free(out);
}

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sov-test-daemon-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char path[512];

    if (d) {
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
                unlink(path);
            }
        closedir(d);
    }
    return rmdir(tmpdir) == 0 ? 0 : -1;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = calloc(1, 4096);

    assert_non_null(f);
    assert_non_null(buf);
    assert_true(fread(buf, 1, 4095, f) < 4095);
    fclose(f);
    return buf;
}

/* How many entries tmpdir holds. */
static int count_entries(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_write_file_atomic(void **state)
{
    char path[128], tmp[160];
    char *got;

    snprintf(path, sizeof(path), "%s/port", tmpdir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(sov_write_file_atomic(path, "8080\n", 5), 0);
    got = read_all(path);
    assert_string_equal(got, "8080\n");
    free(got);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(count_entries(), 1);

    /* Replacing a longer file leaves none of the old bytes behind. */
    assert_int_equal(sov_write_file_atomic(path, "0123456789", 10), 0);
    assert_int_equal(sov_write_file_atomic(path, "42", 2), 0);
    got = read_all(path);
    assert_string_equal(got, "42");
    free(got);
    assert_int_equal(count_entries(), 1);

    /* Binary data and empty files. */
    assert_int_equal(sov_write_file_atomic(path, "a\0b", 3), 0);
    got = read_all(path);
    assert_memory_equal(got, "a\0b", 4);
    free(got);
    assert_int_equal(sov_write_file_atomic(path, "", 0), 0);
    got = read_all(path);
    assert_string_equal(got, "");
    free(got);
    assert_int_equal(count_entries(), 1);
}

static void test_write_file_atomic_errors(void **state)
{
    char path[128], longpath[5000];

    snprintf(path, sizeof(path), "%s/missing-dir/file", tmpdir);
    assert_int_equal(sov_write_file_atomic(path, "x", 1), -ENOENT);
    assert_int_equal(count_entries(), 0);

    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(sov_write_file_atomic(longpath, "x", 1), -ENAMETOOLONG);

    /* The target is a directory: the rename fails and the temp file is cleaned up. */
    snprintf(path, sizeof(path), "%s/adir", tmpdir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_true(sov_write_file_atomic(path, "x", 1) < 0);
    assert_int_equal(count_entries(), 1);
    rmdir(path);
}

static void test_pidfile(void **state)
{
    char path[128], want[32];
    char *got;

    snprintf(path, sizeof(path), "%s/sov.pid", tmpdir);
    assert_int_equal(sov_pidfile_write(path), 0);
    got = read_all(path);
    snprintf(want, sizeof(want), "%d\n", (int)getpid());
    assert_string_equal(got, want);
    free(got);
    assert_int_equal(count_entries(), 1);
}

/* sov_pidfile_read takes one decimal pid > 1 with blanks around it, nothing else. */
static void test_pidfile_read(void **state)
{
    static const struct {
        const char *text;
        long want;
    } cases[] = {
        {"4242\n", 4242},
        {"  77 \n\n", 77},
        {"4242", 4242},
        {"", 0},
        {"\n", 0},
        {"1\n", 0},
        {"0\n", 0},
        {"-5\n", 0},
        {"12abc\n", 0},
        {"abc\n", 0},
        {"+12\n", 0},
        {"12 13\n", 0},
        {"2147483648\n", 0},
        {"99999999999999999999\n", 0},
        {"123                                                 \n", 0}, /* longer than a pid */
    };
    char path[128];
    snprintf(path, sizeof(path), "%s/x.pid", tmpdir);
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        assert_int_equal(sov_write_file_atomic(path, cases[i].text, strlen(cases[i].text)), 0);
        assert_int_equal((long)sov_pidfile_read(path), cases[i].want);
    }
    assert_int_equal(sov_pidfile_write(path), 0);
    assert_int_equal(sov_pidfile_read(path), getpid());
    unlink(path);
    assert_int_equal(sov_pidfile_read(path), 0); /* missing */
}

/* sov_proc_matches and sov_pid_alive against a child with a known command line, before and
 * after it ends (a zombie, then reaped). */
static void test_proc_matches(void **state)
{
    (void)state;
    int pfd[2]; /* the shell writes a line to it once it runs (its command line is set) */
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0); /* its sleep goes with it */
        if (pfd[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(pfd[1], 3) != 3)
            _exit(126); /* fd 3, open across the exec */
        execl("/bin/sh", "sh", "-c", "echo >&3; exec 3>&-; sleep 60; :", "sov-marker-0",
              "--conf-file=/x/conf", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    assert_true(sov_proc_matches(pid, "sh", "--conf-file=/x/conf"));
    assert_true(sov_pid_alive(pid));
    assert_true(sov_proc_matches(pid, NULL, "sov-marker-0"));
    assert_true(sov_proc_matches(pid, "sh", NULL));
    assert_false(sov_proc_matches(pid, "bash", "sov-marker-0")); /* another binary */
    assert_false(sov_proc_matches(pid, NULL, "sov-marker"));     /* a prefix is not the arg */
    assert_false(sov_proc_matches(pid, NULL, "--conf-file=/x/con"));
    assert_false(sov_proc_matches(pid, NULL, "sh")); /* argv[0] is no argument */
    assert_false(sov_proc_matches(pid, NULL, "/x/conf"));
    assert_int_equal(kill(-pid, SIGKILL), 0);
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0); /* a zombie now */
    assert_false(sov_pid_alive(pid));
    assert_false(sov_proc_matches(pid, "sh", "sov-marker-0"));
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_false(sov_pid_alive(pid));
    assert_false(sov_proc_matches(pid, NULL, NULL));
    assert_false(sov_pid_alive(0));
    assert_false(sov_pid_alive(-1));
    assert_true(sov_pid_alive(getpid()));
}

typedef struct LoadCfg {
    char listen[SOV_CONF_STR_MAX];
    char level[SOV_CONF_STR_MAX];
} LoadCfg;

static const SovConfField load_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(LoadCfg, listen), 3, 255, "127.0.0.1:1234",
     "where"},
    {"log", "level", SOV_CONF_STRING, offsetof(LoadCfg, level), 1, 16, "info", "how loud"},
};
static const SovDaemonSpec load_spec = {"sov-t",
                                        "sov-t configuration",
                                        load_fields,
                                        ELEMENTSOF(load_fields),
                                        offsetof(LoadCfg, listen),
                                        offsetof(LoadCfg, level),
                                        sizeof(LoadCfg)};

static int load(const char *ini, char **extra, int nextra, LoadCfg *cfg, char *host, int *port)
{
    char path[128], *argv[8] = {(char *)"sov-t"};
    int argc = 1, lvl;
    SovDaemonArgs args;
    if (ini) {
        snprintf(path, sizeof(path), "%s/t.ini", tmpdir);
        assert_int_equal(sov_write_file_atomic(path, ini, strlen(ini)), 0);
        argv[argc++] = (char *)"--config";
        argv[argc++] = path;
    }
    for (int i = 0; i < nextra; i++)
        argv[argc++] = extra[i];
    return sov_daemon_load(argc, argv, &load_spec, cfg, &args, &lvl, host, 256, port);
}

static void test_daemon_load(void **state)
{
    LoadCfg cfg;
    char host[256];
    int port;
    /* defaults, a config file, and --listen over both */
    assert_int_equal(load(NULL, NULL, 0, &cfg, host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 1234);
    assert_int_equal(load("[server]\nlisten = 0.0.0.0:99\n", NULL, 0, &cfg, host, &port), 0);
    assert_int_equal(port, 99);
    char *over[] = {(char *)"--listen", (char *)"[::1]:7"};
    assert_int_equal(load("[server]\nlisten = 0.0.0.0:99\n", over, 2, &cfg, host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7);
    /* refusals: bad level, bad address, bad config, unknown flag */
    assert_int_equal(load("[log]\nlevel = loud\n", NULL, 0, &cfg, host, &port), -EINVAL);
    assert_int_equal(load("[server]\nlisten = nowhere\n", NULL, 0, &cfg, host, &port), -EINVAL);
    assert_int_equal(load("[nope]\nx = 1\n", NULL, 0, &cfg, host, &port), -EINVAL);
    char *bad[] = {(char *)"--frobnicate"};
    assert_int_equal(load(NULL, bad, 1, &cfg, host, &port), -EINVAL);
    char *toolong[] = {(char *)"--listen", NULL};
    char big[SOV_CONF_STR_MAX + 8];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    toolong[1] = big;
    assert_int_equal(load(NULL, toolong, 2, &cfg, host, &port), -EINVAL);
    /* --print-sample-config and --help end the daemon with success */
    char *sample[] = {(char *)"--print-sample-config"};
    assert_int_equal(load(NULL, sample, 1, &cfg, host, &port), 1);
    char *help[] = {(char *)"--help"};
    assert_int_equal(load(NULL, help, 1, &cfg, host, &port), 1);
    /* SIGHUP's reload: a good file sets the level, a bad one is refused */
    char path[128];
    snprintf(path, sizeof(path), "%s/r.ini", tmpdir);
    const char *good = "[log]\nlevel = debug\n", *shouty = "[log]\nlevel = shouty\n";
    assert_int_equal(sov_write_file_atomic(path, good, strlen(good)), 0);
    assert_int_equal(sov_daemon_reload_log_level(&load_spec, path), 0);
    assert_int_equal(sov_write_file_atomic(path, shouty, strlen(shouty)), 0);
    assert_true(sov_daemon_reload_log_level(&load_spec, path) < 0);
    sov_log_set_level(SOV_LOG_INFO);
}

static void test_listen_tcp(void **state)
{
    int fd = -1, port = 0, c, a;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct pollfd pfd;

    assert_int_equal(sov_listen_tcp("127.0.0.1", 0, false, &fd, &port), 0);
    assert_true(fd >= 0);
    assert_true(port > 0 && port <= 65535);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    a = accept(fd, NULL, NULL);
    assert_true(a >= 0);
    assert_int_equal(write(c, "ping", 4), 4);
    char buf[8] = {0};
    assert_int_equal(read(a, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "ping");
    close(a);
    close(c);

    /* Without SO_REUSEPORT the port is taken. */
    int fd2 = -1, port2 = 0;
    assert_int_equal(sov_listen_tcp("127.0.0.1", port, false, &fd2, &port2), -EADDRINUSE);
    assert_int_equal(fd2, -1);
    close(fd);

    /* With it, two sockets share a port. */
    assert_int_equal(sov_listen_tcp("127.0.0.1", 0, true, &fd, &port), 0);
    assert_int_equal(sov_listen_tcp("127.0.0.1", port, true, &fd2, &port2), 0);
    assert_int_equal(port2, port);
    close(fd);
    close(fd2);

    /* The port can be left out of the answer. */
    assert_int_equal(sov_listen_tcp("127.0.0.1", 0, false, &fd, NULL), 0);
    close(fd);
}

static void test_listen_tcp_errors(void **state)
{
    int fd = -1, port = 0;

    assert_int_equal(sov_listen_tcp("127.0.0.1", 70000, false, &fd, &port), -EINVAL);
    assert_int_equal(sov_listen_tcp("127.0.0.1", -1, false, &fd, &port), -EINVAL);
    /* Only numeric hosts: a name would need a blocking DNS lookup. */
    assert_int_equal(sov_listen_tcp("localhost", 0, false, &fd, &port), -EINVAL);
    assert_int_equal(sov_listen_tcp("999.1.1.1", 0, false, &fd, &port), -EINVAL);
    assert_int_equal(fd, -1);
}

static void test_listen_tcp_v6(void **state)
{
    int fd = -1, port = 0;
    int r = sov_listen_tcp("::1", 0, false, &fd, &port);

    if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT)
        skip(); /* no IPv6 loopback in this sandbox */
    assert_int_equal(r, 0);
    assert_true(port > 0);
    close(fd);
}

typedef struct WorkerTest {
    int started, freed, broadcasts;
} WorkerTest;

static void *w_start(uv_loop_t *loop, unsigned idx, void *ud)
{
    WorkerTest *t = ud;
    __atomic_fetch_add(&t->started, 1, __ATOMIC_SEQ_CST);
    return (void *)(uintptr_t)(idx + 1);
}

static void w_stop(uv_loop_t *loop, void *state, void *ud)
{
}

static void w_free(void *state, void *ud)
{
    WorkerTest *t = ud;
    assert_true((uintptr_t)state >= 1 && (uintptr_t)state <= 3);
    __atomic_fetch_add(&t->freed, 1, __ATOMIC_SEQ_CST);
}

static void w_broadcast(void *state, void *arg)
{
    WorkerTest *t = arg;
    __atomic_fetch_add(&t->broadcasts, (int)(uintptr_t)state, __ATOMIC_SEQ_CST);
}

static void test_workers(void **state)
{
    WorkerTest t = {0};
    SovWorkers *w = NULL;

    assert_int_equal(sov_workers_start(0, w_start, w_stop, w_free, &t, &w), -EINVAL);
    assert_int_equal(sov_workers_start(3, w_start, w_stop, w_free, &t, &w), 0);
    assert_non_null(w);
    assert_int_equal(__atomic_load_n(&t.started, __ATOMIC_SEQ_CST), 3);
    sov_workers_broadcast(w, w_broadcast, &t);
    for (int i = 0; i < 500 && __atomic_load_n(&t.broadcasts, __ATOMIC_SEQ_CST) < 6; i++)
        usleep(10000);
    /* Each worker ran the function once with its own state (1 + 2 + 3). */
    assert_int_equal(__atomic_load_n(&t.broadcasts, __ATOMIC_SEQ_CST), 6);
    sov_workers_stop(w);
    assert_int_equal(t.freed, 3);
    assert_true(sov_cpu_count() >= 1);
}

typedef struct LimitsConf {
    SovHttpLimitsConf http;
} LimitsConf;

static void test_http_limit_fields_match_defaults(void **state)
{
    static const SovConfField fields[] = {SOV_HTTP_LIMIT_FIELDS(LimitsConf, http)};
    LimitsConf c;
    SovHttpLimits from_conf, defaults;
    SovBuf err = SOV_BUF_INIT;

    /* The config defaults and sov_http_limits_default() say the same thing. */
    memset(&c, 0, sizeof(c));
    if (sov_conf_load(fields, ELEMENTSOF(fields), &c, NULL, &err) != 0)
        fail_msg("defaults do not load: %s", err.ptr);
    memset(&from_conf, 0, sizeof(from_conf));
    memset(&defaults, 0, sizeof(defaults));
    sov_http_limits_from_conf(&c.http, &from_conf);
    sov_http_limits_default(&defaults);
    assert_int_equal(from_conf.max_header_bytes, defaults.max_header_bytes);
    assert_int_equal(from_conf.max_headers, defaults.max_headers);
    assert_int_equal(from_conf.max_url, defaults.max_url);
    assert_int_equal(from_conf.max_body, defaults.max_body);
    assert_int_equal(from_conf.max_buffered_body, defaults.max_buffered_body);
    assert_int_equal(from_conf.header_timeout_ms, defaults.header_timeout_ms);
    assert_int_equal(from_conf.body_timeout_ms, defaults.body_timeout_ms);
    assert_int_equal(from_conf.idle_timeout_ms, defaults.idle_timeout_ms);
    assert_int_equal(from_conf.max_connections, defaults.max_connections);
    assert_int_equal(from_conf.shutdown_grace_ms, defaults.shutdown_grace_ms);

    /* And a file value arrives in the runtime struct. */
    assert_int_equal(sov_conf_load_string(fields, ELEMENTSOF(fields), &c,
                                          "[http]\nheader_timeout = 5s\nmax_url = 16K\n", &err),
                     0);
    sov_http_limits_from_conf(&c.http, &from_conf);
    assert_int_equal(from_conf.header_timeout_ms, 5000);
    assert_int_equal(from_conf.max_url, 16384);
    sov_buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_parse_hostport_bad),
        cmocka_unit_test(test_parse_http_url_and_names),
        cmocka_unit_test(test_dns_names),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_regression_hostport_lenient_port),
        cmocka_unit_test(test_daemon_args),
        cmocka_unit_test(test_daemon_args_errors),
        cmocka_unit_test(test_daemon_args_help),
        cmocka_unit_test_setup_teardown(test_write_file_atomic, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_write_file_atomic_errors, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_pidfile, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_pidfile_read, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_proc_matches),
        cmocka_unit_test_setup_teardown(test_daemon_load, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_listen_tcp),
        cmocka_unit_test(test_listen_tcp_errors),
        cmocka_unit_test(test_listen_tcp_v6),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_http_limit_fields_match_defaults),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
