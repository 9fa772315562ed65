/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads with a loop each, signals on the main loop, pid files. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sov/conf.h"
#include "sov/daemon.h"
#include "sov/log.h"
#include "sov/http.h"
#include "sov/macro.h"

typedef struct Broadcast {
    struct Broadcast *next;
    void (*fn)(void *state, void *arg);
    void *arg;
} Broadcast;

typedef struct Worker {
    SovWorkers *w;
    unsigned idx;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t async;
    uv_sem_t ready;
    void *state;
    bool stop_requested;
    bool stopped;
    pthread_mutex_t lock;
    Broadcast *pending;
} Worker;

struct SovWorkers {
    unsigned n;
    SovWorkerStart start;
    SovWorkerStop stop;
    SovWorkerFree fr;
    void *ud;
    Worker *workers;
};

static void on_async(uv_async_t *a)
{
    Worker *wk = a->data;
    Broadcast *b;
    bool stop;

    pthread_mutex_lock(&wk->lock);
    b = wk->pending;
    wk->pending = NULL;
    stop = wk->stop_requested && !wk->stopped;
    if (stop)
        wk->stopped = true;
    pthread_mutex_unlock(&wk->lock);
    while (b) {
        Broadcast *next = b->next;
        b->fn(wk->state, b->arg);
        free(b);
        b = next;
    }
    if (stop) {
        uv_close((uv_handle_t *)&wk->async, NULL);
        if (wk->w->stop)
            wk->w->stop(&wk->loop, wk->state, wk->w->ud);
    }
}

static void *worker_main(void *arg)
{
    Worker *wk = arg;

    uv_loop_init(&wk->loop);
    uv_async_init(&wk->loop, &wk->async, on_async);
    wk->async.data = wk;
    wk->state = wk->w->start(&wk->loop, wk->idx, wk->w->ud);
    uv_sem_post(&wk->ready);
    uv_run(&wk->loop, UV_RUN_DEFAULT);
    if (wk->w->fr)
        wk->w->fr(wk->state, wk->w->ud);
    uv_loop_close(&wk->loop);
    return NULL;
}

int sov_workers_start(unsigned n, SovWorkerStart start, SovWorkerStop stop, SovWorkerFree fr,
                      void *ud, SovWorkers **ret)
{
    SovWorkers *w = calloc(1, sizeof(*w));

    if (!w || n == 0) {
        free(w);
        return -EINVAL;
    }
    w->workers = calloc(n, sizeof(Worker));
    if (!w->workers) {
        free(w);
        return -ENOMEM;
    }
    *w = (SovWorkers){
        .n = n, .start = start, .stop = stop, .fr = fr, .ud = ud, .workers = w->workers};
    for (unsigned i = 0; i < n; i++) {
        Worker *wk = &w->workers[i];
        wk->w = w;
        wk->idx = i;
        pthread_mutex_init(&wk->lock, NULL);
        uv_sem_init(&wk->ready, 0);
        if (pthread_create(&wk->thread, NULL, worker_main, wk) != 0) {
            w->n = i;
            sov_workers_stop(w);
            return -EAGAIN;
        }
        uv_sem_wait(&wk->ready);
    }
    *ret = w;
    return 0;
}

void sov_workers_broadcast(SovWorkers *w, void (*fn)(void *state, void *arg), void *arg)
{
    for (unsigned i = 0; i < w->n; i++) {
        Worker *wk = &w->workers[i];
        Broadcast *b = calloc(1, sizeof(*b));
        if (!b)
            continue;
        b->fn = fn;
        b->arg = arg;
        pthread_mutex_lock(&wk->lock);
        if (wk->stopped) {
            free(b);
        } else {
            b->next = wk->pending;
            wk->pending = b;
            uv_async_send(&wk->async);
        }
        pthread_mutex_unlock(&wk->lock);
    }
}

void sov_workers_stop(SovWorkers *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < w->n; i++) {
        Worker *wk = &w->workers[i];
        pthread_mutex_lock(&wk->lock);
        if (!wk->stopped) {
            wk->stop_requested = true;
            uv_async_send(&wk->async);
        }
        pthread_mutex_unlock(&wk->lock);
    }
    for (unsigned i = 0; i < w->n; i++) {
        pthread_join(w->workers[i].thread, NULL);
        uv_sem_destroy(&w->workers[i].ready);
        pthread_mutex_destroy(&w->workers[i].lock);
    }
    free(w->workers);
    free(w);
}

struct SovSignals {
    uv_signal_t term, intr, hup;
    void (*on_term)(int sig, void *ud);
    void (*on_hup)(void *ud);
    void *ud;
    int open;
    bool stopping;
};

static void on_signal(uv_signal_t *h, int sig)
{
    SovSignals *s = h->data;
    if (sig == SIGHUP) {
        if (s->on_hup)
            s->on_hup(s->ud);
    } else if (s->on_term) {
        s->on_term(sig, s->ud);
    } else if (!s->stopping) {
        /* The default: closing the handles lets the main loop end; the daemon then drains. */
        s->stopping = true;
        log_info("signal %d: draining and stopping", sig);
        sov_signals_close(s);
    }
}

SovSignals *sov_signals_install(uv_loop_t *loop, void (*on_term)(int sig, void *ud),
                                void (*on_hup)(void *ud), void *ud)
{
    SovSignals *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    signal(SIGPIPE, SIG_IGN);
    s->on_term = on_term;
    s->on_hup = on_hup;
    s->ud = ud;
    uv_signal_t *hs[] = {&s->term, &s->intr, &s->hup};
    int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, hs[i]);
        hs[i]->data = s;
        uv_signal_start(hs[i], on_signal, sigs[i]);
    }
    return s;
}

static void signals_closed(uv_handle_t *h)
{
    SovSignals *s = h->data;
    if (--s->open == 0)
        free(s);
}

void sov_signals_close(SovSignals *s)
{
    if (!s)
        return;
    s->open = 3;
    uv_close((uv_handle_t *)&s->term, signals_closed);
    uv_close((uv_handle_t *)&s->intr, signals_closed);
    uv_close((uv_handle_t *)&s->hup, signals_closed);
}

int sov_pidfile_write(const char *path)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    return sov_write_file_atomic(path, buf, (size_t)n);
}

pid_t sov_pidfile_read(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || (size_t)n == sizeof(buf) - 1) /* nothing, or more than a pid */
        return 0;
    buf[n] = '\0';
    const char *a = buf + strspn(buf, " \t\n");
    char *end;
    errno = 0;
    long v = isdigit((unsigned char)*a) ? strtol(a, &end, 10) : 0;
    if (v <= 1 || v > INT_MAX || errno || end[strspn(end, " \t\n")] != '\0')
        return 0;
    return (pid_t)v;
}

/* The state letter of /proc/<pid>/stat ("pid (comm) S ..."; comm may hold anything, so it is
 * the one after the last ')'), 0 when there is no such process. */
static char proc_state(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%ld/stat", (long)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *r = strrchr(buf, ')');
    return r && r[1] == ' ' ? r[2] : 0;
}

bool sov_pid_alive(pid_t pid)
{
    char st = pid > 0 ? proc_state(pid) : 0;
    return st != 0 && st != 'Z' && st != 'X';
}

bool sov_proc_matches(pid_t pid, const char *argv0, const char *arg)
{
    enum { CMDLINE_MAX = 64 * 1024 };
    char p[64];
    if (!sov_pid_alive(pid))
        return false;
    snprintf(p, sizeof(p), "/proc/%ld/cmdline", (long)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char *buf = malloc(CMDLINE_MAX + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len < CMDLINE_MAX && (n = read(fd, buf + len, CMDLINE_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf || n < 0 || len == 0) {
        free(buf);
        return false;
    }
    buf[len] = '\0'; /* each argument ends in a NUL; a cut-off last one ends here */
    bool name_ok = true, arg_ok = arg == NULL;
    size_t i = 0;
    for (const char *a = buf; a < buf + len; a += strlen(a) + 1, i++) {
        if (i == 0 && argv0) {
            const char *base = strrchr(a, '/');
            name_ok = strcmp(base ? base + 1 : a, argv0) == 0;
        } else if (i > 0 && arg && strcmp(a, arg) == 0) {
            arg_ok = true;
        }
    }
    free(buf);
    return name_ok && arg_ok;
}

unsigned sov_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int sov_parse_http_url(const char *url, char *host, size_t n, int *ret_port)
{
    char hp[256];
    if (strncmp(url, "http://", 7) != 0 || strlen(url + 7) >= sizeof(hp))
        return -EINVAL;
    memcpy(hp, url + 7, strlen(url + 7) + 1);
    char *slash = strchr(hp, '/');
    if (slash)
        *slash = '\0';
    return sov_parse_hostport(hp, host, n, ret_port);
}

bool sov_name_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

bool sov_dns_label_norm(const char *s, size_t n, char *out)
{
    if (n == 0 || n > SOV_DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

bool sov_dns_name_norm(const char *s, char out[SOV_DNS_NAME_MAX + 1])
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > SOV_DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        const char *dot = memchr(s + i, '.', n - i);
        size_t len = dot ? (size_t)(dot - (s + i)) : n - i;
        if (!sov_dns_label_norm(s + i, len, out + i))
            return false;
        i += len;
        if (dot) {
            out[i++] = '.';
            if (i == n)
                return false; /* "a..": an empty label */
        }
    }
    out[n] = '\0';
    return true;
}

int sov_parse_hostport(const char *s, char *host, size_t n, int *ret_port)
{
    const char *colon;
    size_t hl;
    char *end;
    long port;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -EINVAL;
        hl = (size_t)(rb - s - 1);
        s++;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= n)
        return -EINVAL;
    for (const char *d = colon + 1; *d; d++)
        if (*d < '0' || *d > '9')
            return -EINVAL; /* strtol would take spaces and signs */
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *ret_port = (int)port;
    return 0;
}

static void usage(const char *name)
{
    printf("Usage: %s [--config FILE] [--listen HOST:PORT] [--pidfile FILE] [--port-file FILE]\n"
           "       %s --print-sample-config | --check-config [--config FILE]\n",
           name, name);
}

int sov_daemon_parse_args(int argc, char **argv, const char *name, SovDaemonArgs *ret)
{
    SovDaemonArgs a = {0};

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(name);
            return 1;
        } else if (strcmp(o, "--print-sample-config") == 0) {
            a.print_config = true;
            continue;
        } else if (strcmp(o, "--check-config") == 0) {
            a.check_config = true;
            continue;
        } else if (strcmp(o, "--config") == 0) {
            dst = &a.config;
        } else if (strcmp(o, "--listen") == 0) {
            dst = &a.listen;
        } else if (strcmp(o, "--pidfile") == 0) {
            dst = &a.pidfile;
        } else if (strcmp(o, "--port-file") == 0) {
            dst = &a.port_file;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", name, o);
            usage(name);
            return -EINVAL;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", name, o);
            return -EINVAL;
        }
        *dst = argv[++i];
    }
    *ret = a;
    return 0;
}

int sov_daemon_load(int argc, char **argv, const SovDaemonSpec *spec, void *cfg,
                    SovDaemonArgs *args, int *ret_log_level, char *host, size_t hostcap,
                    int *ret_port)
{
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;
    char *listen = (char *)cfg + spec->listen_offset;
    int r = sov_daemon_parse_args(argc, argv, spec->name, args);

    if (r != 0)
        return r > 0 ? 1 : -EINVAL;
    if (args->print_config) {
        sov_conf_write_sample(spec->fields, spec->nfields, spec->title, &err);
        fputs(err.ptr, stdout);
        sov_buf_release(&err);
        return 1;
    }
    if (sov_conf_load(spec->fields, spec->nfields, cfg, args->config, &err) < 0) {
        fprintf(stderr, "%s: %s\n", spec->name, err.ptr);
        sov_buf_release(&err);
        return -EINVAL;
    }
    sov_buf_release(&err);
    if (args->listen) {
        if (strlen(args->listen) >= SOV_CONF_STR_MAX) {
            fprintf(stderr, "%s: --listen value too long\n", spec->name);
            return -EINVAL;
        }
        snprintf(listen, SOV_CONF_STR_MAX, "%s", args->listen);
    }
    if (sov_log_level_from_string((char *)cfg + spec->log_level_offset, &lvl) < 0) {
        fprintf(stderr, "%s: bad [log] level\n", spec->name);
        return -EINVAL;
    }
    if (sov_parse_hostport(listen, host, hostcap, ret_port) < 0) {
        fprintf(stderr, "%s: bad listen address '%s' (HOST:PORT)\n", spec->name, listen);
        return -EINVAL;
    }
    *ret_log_level = (int)lvl;
    return 0;
}

int sov_daemon_reload_log_level(const SovDaemonSpec *spec, const char *config)
{
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;
    void *fresh = calloc(1, spec->cfg_size);
    int r = -ENOMEM;

    if (fresh && (r = sov_conf_load(spec->fields, spec->nfields, fresh, config, &err)) == 0 &&
        (r = sov_log_level_from_string((char *)fresh + spec->log_level_offset, &lvl)) == 0) {
        sov_log_set_level(lvl);
        log_info("configuration reloaded (log level)");
    } else {
        log_error("reload refused: %s", err.len ? err.ptr : "bad log level");
    }
    if (fresh)
        explicit_bzero(fresh, spec->cfg_size);
    free(fresh);
    sov_buf_release(&err);
    return r;
}

int sov_daemon_announce(const SovDaemonArgs *args, int port, const char *const *kv)
{
    char buf[16];
    int r = 0;
    snprintf(buf, sizeof(buf), "%d\n", port);
    if (args->port_file && (r = sov_write_file_atomic(args->port_file, buf, strlen(buf))) < 0)
        log_error_errno(r, "cannot write port file %s", args->port_file);
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "listening", kv);
    return r;
}

int sov_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int sov_fsync_parent(const char *path)
{
    char dir[4096];
    size_t len = strlen(path);
    if (len >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, path, len + 1);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return sov_fsync_dir(dir);
}

int sov_write_file_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    int fd, r = 0;

    static unsigned seq;

    /* A temp name of our own: concurrent writers of one path never share a temp file. */
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", path, (int)getpid(),
                 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED)) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write(fd, data, len) != (ssize_t)len)
        r = errno ? -errno : -EIO;
    else if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    return sov_fsync_parent(path); /* the rename is durable once its directory is */
}

void sov_http_limits_from_conf(const SovHttpLimitsConf *c, SovHttpLimits *l)
{
    sov_http_limits_default(l);
    l->max_header_bytes = (uint32_t)c->max_header_bytes_;
    l->max_headers = (uint32_t)c->max_headers_;
    l->max_url = (uint32_t)c->max_url_;
    l->max_body = c->max_body;
    l->max_buffered_body = c->max_buffered_body;
    l->header_timeout_ms = (uint32_t)c->header_timeout_ms_;
    l->body_timeout_ms = (uint32_t)c->body_timeout_ms_;
    l->idle_timeout_ms = (uint32_t)c->idle_timeout_ms_;
    l->max_connections = (uint32_t)c->max_connections_;
    l->shutdown_grace_ms = (uint32_t)c->shutdown_grace_ms_;
}
