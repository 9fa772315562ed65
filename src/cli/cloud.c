/* SPDX-License-Identifier: Apache-2.0 */
/* The all-in-one cloud as `sov` sees it: the table of daemons, the files of a data directory,
 * and probes of a daemon's process (/proc) and health (GET /healthz). Every subcommand builds on
 * these helpers; none of them prints anything. */
#include <fcntl.h>
#include <signal.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "sov/daemon.h"
#include "sov/http.h"

const CliService cli_services[] = {
    {"demo", "sov-demo", 8480},
    {CLI_S3_NAME, "sov-s3", CLI_S3_DEFAULT_PORT},
    {CLI_BLOCK_NAME, "sov-block", CLI_BLOCK_DEFAULT_PORT},
    {CLI_API_NAME, "sov-api", CLI_API_DEFAULT_PORT}, /* after block and s3: it uses both */
    {CLI_NET_NAME, "sov-net", CLI_NET_DEFAULT_PORT}, /* an agent of sov-api: VPC datapath */
    {CLI_COMPUTE_NAME, "sov-compute", CLI_COMPUTE_DEFAULT_PORT}, /* an agent of sov-api */
};
const size_t cli_services_n = ELEMENTSOF(cli_services);

int cli_path(const Cli *c, char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    int a, b;

    a = snprintf(out, n, "%s/", c->data_dir);
    if (a < 0 || (size_t)a >= n)
        return -ENAMETOOLONG;
    va_start(ap, fmt);
    b = vsnprintf(out + a, n - (size_t)a, fmt, ap);
    va_end(ap);
    if (b < 0 || (size_t)b >= n - (size_t)a)
        return -ENAMETOOLONG;
    return 0;
}

int cli_dirs_create(const Cli *c)
{
    static const char *const subdirs[] = {"etc", "run", "log"};
    char p[PATH_MAX];
    int r;

    /* The data directory holds credentials: only its owner may look inside. */
    if (mkdir(c->data_dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
        r = cli_path(c, p, sizeof(p), "%s", subdirs[i]);
        if (r < 0)
            return r;
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

int cli_file_read(const char *path, size_t max, SovBuf *out)
{
    char chunk[4096];
    ssize_t n;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (out->len + (size_t)n > max) {
            r = -EFBIG;
            break;
        }
        r = sov_buf_append(out, chunk, (size_t)n);
        if (r < 0)
            break;
    }
    close(fd);
    if (r == 0 && !out->ptr)
        r = sov_buf_reserve(out, 1); /* an empty file still reads as "" */
    return r;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_file_create(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    int fd, r;

    /* Written in full under a temporary name, then linked into place: link() refuses to
     * replace an existing file, so a concurrent `sov` or an operator's edit always wins. */
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = write_all(fd, data, len);
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r == 0) {
        if (link(tmp, path) == 0)
            r = 1;
        else if (errno != EEXIST)
            r = -errno;
    }
    unlink(tmp);
    return r;
}

int cli_file_read_number(const char *path, long min, long max, long *ret)
{
    SovBuf b = SOV_BUF_INIT;
    uint64_t v;
    size_t n;
    int r;

    r = cli_file_read(path, 64, &b);
    if (r < 0)
        goto out;
    n = b.len;
    while (n > 0 && (b.ptr[n - 1] == '\n' || b.ptr[n - 1] == ' '))
        n--;
    r = sov_str_to_u64((SovStr){b.ptr, n}, &v);
    if (r < 0 || v < (uint64_t)min || v > (uint64_t)max) {
        r = -EINVAL;
        goto out;
    }
    *ret = (long)v;
out:
    sov_buf_release(&b);
    return r;
}

typedef struct ConfLookup {
    const char *section, *key;
    char *out;
    size_t cap;
    bool found;
} ConfLookup;

static int lookup_handler(void *ud, const char *section, const char *name, const char *value)
{
    ConfLookup *l = ud;

    if (strcmp(section, l->section) == 0 && strcmp(name, l->key) == 0) {
        snprintf(l->out, l->cap, "%s", value);
        l->found = true;
    }
    return 1; /* keep going: the daemon, not sov, judges the rest of the file */
}

int cli_config_get(const Cli *c, const char *name, const char *section, const char *key, char *out,
                   size_t cap)
{
    ConfLookup l = {section, key, out, cap, false};
    char p[PATH_MAX];
    FILE *f;
    int r;

    r = cli_path(c, p, sizeof(p), "etc/%s.ini", name);
    if (r < 0)
        return r;
    f = fopen(p, "re");
    if (!f)
        return -errno;
    r = ini_parse_file(f, lookup_handler, &l);
    fclose(f);
    return r < 0 || !l.found ? -EINVAL : 0;
}

int cli_config_listen(const Cli *c, const char *name, char *host, size_t hostlen, int *ret_port)
{
    char value[256];
    int r = cli_config_get(c, name, "server", "listen", value, sizeof(value));

    if (r < 0)
        return r;
    r = sov_parse_hostport(value, host, hostlen, ret_port);
    if (r < 0)
        return r;
    /* A wildcard listener is reached on loopback. */
    if (strcmp(host, "0.0.0.0") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(host, hostlen, "::1");
    return 0;
}

int cli_config_port(const Cli *c, const char *name, int def)
{
    char host[256];
    int port;

    if (cli_config_listen(c, name, host, sizeof(host), &port) < 0 || port == 0)
        return def;
    return port;
}

bool cli_pid_is_service(const Cli *c, const CliService *svc, pid_t pid)
{
    char cfg[PATH_MAX];

    /* argv[0] names the binary and the arguments hold this data directory's config */
    return cli_path(c, cfg, sizeof(cfg), "etc/%s.ini", svc->name) == 0 &&
           sov_proc_matches(pid, svc->binary, cfg);
}

bool cli_health_ok(const char *host, int port, unsigned timeout_ms)
{
    SovBuf body;
    int status = 0, r;

    if (port <= 0)
        return false;
    sov_buf_init(&body, 4096);
    r = sov_http_fetch(host, port, "GET", "/healthz", SOV_STR_NULL, timeout_ms, &status, &body);
    sov_buf_release(&body);
    return r == 0 && status == 200;
}

int cli_port_check_free(const char *host, int port)
{
    int fd, r;

    /* Binding without SO_REUSEPORT fails while anyone listens there; a daemon binding with
     * SO_REUSEPORT would instead silently share the port with another cloud's daemon. */
    r = sov_listen_tcp(host, port, false, &fd, NULL);
    if (r < 0)
        return r;
    close(fd);
    return 0;
}

int cli_port_choose(int def, int *ret_port)
{
    int fd, port, r;

    if (cli_port_check_free("127.0.0.1", def) == 0) {
        *ret_port = def;
        return 0;
    }
    r = sov_listen_tcp("127.0.0.1", 0, false, &fd, &port);
    if (r < 0)
        return r;
    close(fd);
    *ret_port = port;
    return 0;
}

void cli_url(const char *host, int port, char *out, size_t n)
{
    if (strchr(host, ':'))
        snprintf(out, n, "http://[%s]:%d", host, port);
    else
        snprintf(out, n, "http://%s:%d", host, port);
}

int cli_probe(const Cli *c, const CliService *svc, CliProbe *ret)
{
    CliProbe p = {.state = CLI_STOPPED, .pid = 0, .port = -1};
    char path[PATH_MAX];
    long v;
    int r;

    snprintf(p.host, sizeof(p.host), "127.0.0.1");
    if (cli_config_listen(c, svc->name, p.host, sizeof(p.host), &p.port) < 0 || p.port == 0)
        p.port = -1;
    r = cli_path(c, path, sizeof(path), "run/%s.pid", svc->name);
    if (r < 0)
        return r;
    if (cli_file_read_number(path, 1, INT32_MAX, &v) < 0 || !cli_pid_is_service(c, svc, (pid_t)v)) {
        *ret = p;
        return 0;
    }
    p.pid = (pid_t)v;
    /* The port file holds the port actually bound (the config may say 0). */
    r = cli_path(c, path, sizeof(path), "run/%s.port", svc->name);
    if (r < 0)
        return r;
    if (cli_file_read_number(path, 1, 65535, &v) == 0)
        p.port = (int)v;
    p.state = cli_health_ok(p.host, p.port, 2000) ? CLI_RUNNING : CLI_UNHEALTHY;
    *ret = p;
    return 0;
}

const char *cli_state_name(CliState s)
{
    switch (s) {
    case CLI_RUNNING:
        return "running";
    case CLI_UNHEALTHY:
        return "unhealthy";
    case CLI_STOPPED:
        break;
    }
    return "stopped";
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cli_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int cli_shell_quote(SovBuf *b, const char *s)
{
    int r = sov_buf_putc(b, '\'');

    for (; r >= 0 && *s; s++)
        r = *s == '\'' ? sov_buf_puts(b, "'\\''") : sov_buf_putc(b, *s);
    return r < 0 ? r : sov_buf_putc(b, '\'');
}
