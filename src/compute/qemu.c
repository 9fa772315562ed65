/* SPDX-License-Identifier: Apache-2.0 */
/* One QEMU process per server, converged level-triggered from the desired document: prepare
 * the server directory (a qcow2 overlay on the cached image, a NoCloud seed ISO) in the thread
 * pool, spawn `qemu-system-x86_64` as a detached child (no -daemonize: libuv reaps it), drive it
 * through QMP, and re-adopt processes a previous agent left running (pid file, QEMU's -name
 * in /proc/PID/cmdline and the QMP socket). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compute.h"
#include "host.h"
#include "sov/log.h"

extern char **environ;

typedef struct Work {
    uv_work_t w;
    Server *s;
    int kind; /* 0 prepare, 1 remove */
    /* inputs, copied on the loop so the thread touches no shared state */
    char image[65], image_format[8], api_host[256], token[SOV_CONF_STR_MAX],
        state_dir[SOV_CONF_STR_MAX];
    char qemu_img[SOV_CONF_STR_MAX], dir[512], id[65], name[256];
    int api_port;
    bool bfv;                  /* the root disk is a volume: no overlay to make */
    char mac[18];              /* the user-mode NIC's MAC */
    char vpc_mac[NIC_MAX][18]; /* the VPC NICs' (their ports') */
    int nvpc;
    int64_t disk_gb, have_gb; /* the flavor's root disk; what the overlay has (0: unknown) */
    char *user_data, *key;
    /* output */
    int r;
    char err[2048];
} Work;

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

void argv_add(Argv *a, const char *str)
{
    char *d = strdup(str);
    if (!d || a->n >= (int)(sizeof(a->v) / sizeof(a->v[0])) - 1) {
        free(d);
        a->oom = true;
        return;
    }
    a->v[a->n++] = d;
    a->v[a->n] = NULL;
}

void argv_addf(Argv *a, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof(buf)) {
        a->oom = true;
        return;
    }
    argv_add(a, buf);
}

void argv_free(Argv *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

static void path_in(const Server *s, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", s->dir, name);
}

static int read_small(const char *path, char *out, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t k = read(fd, out, n - 1);
    close(fd);
    if (k < 0)
        return -errno;
    out[k] = '\0';
    return 0;
}

static void write_small(const Server *s, const char *name, long long v)
{
    char path[600], buf[32];
    path_in(s, name, path, sizeof(path));
    snprintf(buf, sizeof(buf), "%lld\n", v);
    int r = sov_write_file_atomic(path, buf, strlen(buf));
    if (r < 0)
        log_warn_errno(r, "cannot write %s", path);
}

void server_set_error(Server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->fault, sizeof(s->fault), fmt, ap);
    va_end(ap);
    s->phase = PHASE_ERROR;
    const char *kv[] = {"server", s->id, "fault", s->fault, NULL};
    sov_logv_kv(SOV_LOG_ERROR, NULL, 0, "server failed", kv);
    agent_report(s);
}

/* The user-mode NIC's MAC, derived from the server id in QEMU's range (VPC NICs carry their
 * ports' MACs). */
static void server_mac(const Server *s, char out[18])
{
    uint32_t h = 2166136261u; /* FNV-1a of the id */
    for (const char *p = s->id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    snprintf(out, 18, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}

json_t *server_flavor(const Server *s)
{
    json_t *r = json_object_get(s->doc, "_resize");
    return json_is_object(r) ? r : json_object_get(s->doc, "_flavor");
}

static int64_t flavor_num(const Server *s, const char *k)
{
    return json_integer_value(json_object_get(server_flavor(s), k));
}

const char *server_status(const Server *s)
{
    bool resizing = json_is_object(json_object_get(s->doc, "_resize"));
    if (s->restarting && s->phase != PHASE_ERROR) {
        const char *st = jstr(s->doc, "status");
        if (strcmp(st, "REBOOT") == 0)
            return "REBOOT";
        return resizing ? "RESIZE" : "REVERT_RESIZE";
    }
    /* the guest stops at the end of a migration: still MIGRATING until the hand-over (an ACTIVE
     * report then would drop the server from the target's watch) */
    if (*jstr(s->doc, "_migrate_to") && s->phase == PHASE_RUNNING && !s->incoming)
        return "MIGRATING";
    if (resizing && s->phase == PHASE_RUNNING && s->qmp_running &&
        s->run_vcpus == flavor_num(s, "vcpus") && s->run_ram == flavor_num(s, "ram"))
        return "VERIFY_RESIZE";
    switch (s->phase) {
    case PHASE_ERROR:
        return "ERROR";
    case PHASE_STOPPED:
        return s->waiting ? "BUILD" : "SHUTOFF";
    case PHASE_RUNNING:
        return s->qmp_running ? "ACTIVE" : (s->reported[0] ? s->reported : "BUILD");
    default:
        return "BUILD";
    }
}

/* ---- blocking helpers (thread pool) ---- */

static int run_tool(char *const argv[], const char *log_path, char *err, size_t errn)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        snprintf(err, errn, "cannot run %s: %s", argv[0], strerror(r));
        return -r;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errn, "waiting for %s: %s", argv[0], strerror(errno));
            return -errno;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errn, "%s failed (see %s)", argv[0], log_path);
        return -EIO;
    }
    return 0;
}

typedef struct Fetch {
    int fd, status;
    int err;
    uint64_t bytes;
} Fetch;

static void fetch_headers(SovHttpClientReq *r, int status, void *ud)
{
    ((Fetch *)ud)->status = status;
}

static int fetch_body(SovHttpClientReq *r, const char *p, size_t n, void *ud)
{
    Fetch *f = ud;
    if (f->status != 200)
        return 0; /* an error page: not image data */
    while (n) {
        ssize_t k = write(f->fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
        f->bytes += (uint64_t)k;
    }
    return 0;
}

static void fetch_done(SovHttpClientReq *r, int err, void *ud)
{
    ((Fetch *)ud)->err = err;
}

/* Streams image data from the agent API into the cache (a temp file renamed into place once
 * complete), on a loop of this worker thread. */
static int fetch_image(Work *w, const char *dst)
{
    static const SovHttpClientCallbacks cbs = {fetch_headers, fetch_body, fetch_done};
    char target[160], tmp[760], auth[SOV_CONF_STR_MAX + 32];
    snprintf(target, sizeof(target), "/agent/v1/images/%s/file", w->image);
    snprintf(tmp, sizeof(tmp), "%s.part-%d-%lu", dst, (int)getpid(),
             (unsigned long)uv_thread_self());
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", w->token);
    const char *hdrs[] = {auth, NULL};
    Fetch f = {.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (f.fd < 0) {
        snprintf(w->err, sizeof(w->err), "cannot create %s: %s", tmp, strerror(errno));
        return -errno;
    }
    uv_loop_t loop;
    int r = uv_loop_init(&loop);
    if (r == 0) {
        r = sov_http_client_request(&loop, w->api_host, w->api_port, "GET", target, hdrs,
                                    SOV_STR_NULL, 600000, &cbs, &f);
        if (r == 0) {
            uv_run(&loop, UV_RUN_DEFAULT);
            r = f.err;
        }
        uv_loop_close(&loop);
    }
    if (r == 0 && f.status == 200 && fsync(f.fd) < 0)
        r = -errno;
    close(f.fd);
    if (r == 0 && f.status == 200 && rename(tmp, dst) == 0)
        return 0;
    unlink(tmp);
    if (r < 0)
        snprintf(w->err, sizeof(w->err), "image %s cannot be fetched from sov-api: %s", w->image,
                 strerror(-r));
    else
        snprintf(w->err, sizeof(w->err),
                 "image %s cannot be fetched: GET %s answered %d and it is not in this "
                 "host's image cache",
                 w->image, target, f.status);
    return r < 0 ? r : -ENOENT;
}

static int write_text(const char *path, const char *text, size_t len)
{
    return sov_write_file_atomic(path, text, len);
}

static void base64_decode(const char *in, SovBuf *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    int bits = 0;
    for (const char *p = in; *p && *p != '='; p++) {
        const char *q = strchr(tbl, *p);
        if (!q || !*p)
            continue; /* whitespace and newlines */
        acc = (acc << 6) | (unsigned)(q - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sov_buf_putc(out, (char)((acc >> bits) & 0xff));
        }
    }
}

static void make_seed(Work *w, const char *path, const char *log_path);

/* The overlay's virtual size becomes the flavor's disk (qemu-img refuses to shrink: an image
 * bigger than the flavor's disk is an error, as in Nova); the size is kept in "disk_gb". */
static int grow_disk(Work *w, const char *disk, const char *log_path)
{
    if (w->disk_gb <= 0)
        return 0;
    char size[32], rec[600];
    snprintf(size, sizeof(size), "%lldG", (long long)w->disk_gb);
    char *argv[] = {w->qemu_img, "resize", "-q", "-f", "qcow2", (char *)disk, size, NULL};
    int r = run_tool(argv, log_path, w->err, sizeof(w->err));
    if (r < 0) {
        snprintf(w->err, sizeof(w->err),
                 "cannot size the root disk to the flavor's %lld GB (is the image bigger?); see "
                 "%s/prepare.log",
                 (long long)w->disk_gb, w->dir);
        return r;
    }
    snprintf(rec, sizeof(rec), "%s/disk_gb", w->dir);
    snprintf(size, sizeof(size), "%lld\n", (long long)w->disk_gb);
    sov_write_file_atomic(rec, size, strlen(size));
    w->have_gb = w->disk_gb;
    return 0;
}

/* Refuses an image nothing could boot: a raw disk needs a boot sector (MBR, or GPT's
 * protective MBR), a qcow2 image its magic. */
static int check_disk(const char *path, const char *format, const char *id, char *err, size_t n)
{
    unsigned char b[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, n, "cannot open the image copy %s: %s", path, strerror(errno));
        return -errno;
    }
    ssize_t k = pread(fd, b, sizeof(b), 0);
    close(fd);
    bool ok = strcmp(format, "qcow2") == 0 ? k >= 4 && memcmp(b, "QFI\xfb", 4) == 0
                                           : k == 512 && b[510] == 0x55 && b[511] == 0xaa;
    if (ok)
        return 0;
    snprintf(err, n,
             strcmp(format, "qcow2") == 0
                 ? "image %s is not a qcow2 disk (no qcow2 header)"
                 : "image %s is not a bootable disk (no boot sector: a raw image must be a whole "
                   "disk with an MBR or GPT)",
             id);
    return -EINVAL;
}

static void prepare_work(uv_work_t *req)
{
    Work *w = (Work *)req;
    char path[700], img[700], log_path[700];
    snprintf(log_path, sizeof(log_path), "%s/prepare.log", w->dir);
    if (mkdir(w->dir, 0700) < 0 && errno != EEXIST) {
        w->r = -errno;
        snprintf(w->err, sizeof(w->err), "cannot create %s: %s", w->dir, strerror(errno));
        return;
    }
    /* root disk */
    snprintf(path, sizeof(path), "%s/disk.qcow2", w->dir);
    if (!w->bfv && access(path, F_OK) != 0) {
        if (!w->image[0]) {
            w->r = -ENOTSUP;
            snprintf(w->err, sizeof(w->err), "the server has neither an image nor a root volume");
            return;
        }
        if (strchr(w->image, '/') || w->image[0] == '.') {
            w->r = -EINVAL;
            snprintf(w->err, sizeof(w->err), "image id %s is not an id", w->image);
            return;
        }
        snprintf(img, sizeof(img), "%s/images/%s", w->state_dir, w->image);
        if (access(img, R_OK) != 0 && (w->r = fetch_image(w, img)) < 0)
            return;
        if ((w->r = check_disk(img, w->image_format, w->image, w->err, sizeof(w->err))) < 0)
            return;
        /* made under a temporary name: an agent killed midway must not find half a disk */
        char tmp[720];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        char *argv[] = {w->qemu_img, "create",        "-q", "-f", "qcow2", "-b", img,
                        "-F",        w->image_format, tmp,  NULL};
        if ((w->r = run_tool(argv, log_path, w->err, sizeof(w->err))) < 0 ||
            (w->r = grow_disk(w, tmp, log_path)) < 0)
            return;
        if (rename(tmp, path) < 0) {
            w->r = -errno;
            snprintf(w->err, sizeof(w->err), "cannot rename %s: %s", tmp, strerror(errno));
            return;
        }
    } else if (!w->bfv && w->disk_gb > w->have_gb && (w->r = grow_disk(w, path, log_path)) < 0) {
        return; /* a resize to a flavor with a bigger disk */
    }
    /* NoCloud seed */
    snprintf(path, sizeof(path), "%s/seed.iso", w->dir);
    if (access(path, F_OK) == 0)
        return;
    make_seed(w, path, log_path);
}

/* The NoCloud seed ISO at path (made under a temporary name). */
static void make_seed(Work *w, const char *path, const char *log_path)
{
    char seed[620], md[700], ud[700], nc[700];
    snprintf(seed, sizeof(seed), "%s/seed", w->dir);
    mkdir(seed, 0700);
    SovBuf meta = SOV_BUF_INIT, user = SOV_BUF_INIT;
    sov_buf_printf(&meta, "instance-id: %s\nlocal-hostname: %s\n", w->id, w->name);
    if (w->key && *w->key) {
        sov_buf_printf(&meta, "public-keys:\n  - \"");
        for (const char *p = w->key; *p; p++)
            if (*p != '\n' && *p != '\r' && *p != '"' && *p != '\\')
                sov_buf_putc(&meta, *p);
        sov_buf_puts(&meta, "\"\n");
    }
    if (w->user_data && *w->user_data)
        base64_decode(w->user_data, &user);
    snprintf(md, sizeof(md), "%s/meta-data", seed);
    snprintf(ud, sizeof(ud), "%s/user-data", seed);
    snprintf(nc, sizeof(nc), "%s/network-config", seed);
    /* network config version 1: DHCP on every NIC, matched by MAC (user-mode first) */
    char net[1024];
    int nl = snprintf(net, sizeof(net), "version: 1\nconfig:\n");
    for (int i = 0; i <= w->nvpc && nl > 0 && (size_t)nl < sizeof(net); i++)
        nl += snprintf(net + nl, sizeof(net) - (size_t)nl,
                       "  - type: physical\n    name: eth%d\n    mac_address: \"%s\"\n"
                       "    subnets:\n      - type: dhcp\n",
                       i, i == 0 ? w->mac : w->vpc_mac[i - 1]);
    if (nl < 0 || (size_t)nl >= sizeof(net))
        nl = 0;
    int r = write_text(md, meta.ptr ? meta.ptr : "", meta.len);
    if (r == 0)
        r = write_text(ud, user.ptr ? user.ptr : "", user.len);
    if (r == 0)
        r = write_text(nc, net, (size_t)nl);
    sov_buf_release(&meta);
    sov_buf_release(&user);
    if (r < 0) {
        w->r = r;
        snprintf(w->err, sizeof(w->err), "cannot write the seed: %s", strerror(-r));
        return;
    }
    char iso[720];
    snprintf(iso, sizeof(iso), "%s.tmp", path);
    const char *tool = access("/usr/bin/genisoimage", X_OK) == 0 ? "genisoimage" : "xorriso";
    if (strcmp(tool, "genisoimage") == 0) {
        char *argv[] = {"genisoimage", "-quiet", "-output", iso, "-volid", "cidata",
                        "-joliet",     "-rock",  md,        ud,  nc,       NULL};
        w->r = run_tool(argv, log_path, w->err, sizeof(w->err));
    } else {
        char *argv[] = {"xorriso", "-as",     "mkisofs", "-quiet", "-output", iso, "-volid",
                        "cidata",  "-joliet", "-rock",   md,       ud,        nc,  NULL};
        w->r = run_tool(argv, log_path, w->err, sizeof(w->err));
    }
    if (w->r == 0 && rename(iso, path) < 0) {
        w->r = -errno;
        snprintf(w->err, sizeof(w->err), "cannot rename %s: %s", iso, strerror(errno));
    }
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

static void remove_work(uv_work_t *req)
{
    Work *w = (Work *)req;
    if (nftw(w->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT) {
        w->r = -errno;
        snprintf(w->err, sizeof(w->err), "cannot remove %s: %s", w->dir, strerror(errno));
    }
}

static void work_done(uv_work_t *req, int status)
{
    Work *w = (Work *)req;
    Server *s = w->s;
    free(w->user_data);
    free(w->key);
    if (!s) { /* the server went away meanwhile */
        free(w);
        return;
    }
    if (w->kind == 0) {
        s->disk_gb = w->have_gb;
        if (w->r < 0)
            server_set_error(s, "%s", w->err);
        else {
            s->phase = PHASE_STOPPED;
            server_converge(s);
        }
    } else {
        const char *kv[] = {"server", s->id, NULL};
        if (w->r < 0)
            log_warn("%s", w->err);
        else
            sov_logv_kv(SOV_LOG_INFO, NULL, 0, "server removed", kv);
        host_release(s);
        s->phase = PHASE_GONE;
        agent_report(s);
    }
    free(w);
}

static Work *work_new(Server *s, int kind)
{
    Work *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    Compute *c = s->c;
    w->s = s;
    w->kind = kind;
    snprintf(w->image, sizeof(w->image), "%s", jstr(s->doc, "_image"));
    /* the cached image's format, when the API says it (default raw) */
    const char *fmt = jstr(s->doc, "_image_disk_format");
    snprintf(w->image_format, sizeof(w->image_format), "%s",
             strcmp(fmt, "qcow2") == 0 ? "qcow2" : "raw");
    snprintf(w->api_host, sizeof(w->api_host), "%s", c->api_host);
    w->api_port = c->api_port;
    snprintf(w->token, sizeof(w->token), "%s", c->cfg.agent_token);
    snprintf(w->state_dir, sizeof(w->state_dir), "%s", c->cfg.state_dir);
    snprintf(w->qemu_img, sizeof(w->qemu_img), "%s", c->cfg.qemu_img);
    snprintf(w->dir, sizeof(w->dir), "%s", s->dir);
    snprintf(w->id, sizeof(w->id), "%s", s->id);
    const char *name = jstr(s->doc, "name");
    size_t k = 0;
    for (const char *p = *name ? name : s->id; *p && k < sizeof(w->name) - 1; p++)
        w->name[k++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                               (*p >= '0' && *p <= '9') || *p == '-'
                           ? *p
                           : '-';
    w->bfv = vol_boots_from_volume(s);
    server_mac(s, w->mac);
    size_t ni;
    json_t *ne;
    json_array_foreach(json_object_get(s->doc, "_networks"), ni, ne)
    {
        const char *m = jstr(ne, "mac");
        if (s->c->cfg.vpc && strlen(m) == 17 && w->nvpc < NIC_MAX &&
            strspn(m, "0123456789abcdefABCDEF:") == 17)
            snprintf(w->vpc_mac[w->nvpc++], sizeof(w->vpc_mac[0]), "%s", m);
    }
    w->disk_gb = flavor_num(s, "disk");
    w->have_gb = s->disk_gb;
    w->user_data = strdup(jstr(s->doc, "_user_data"));
    w->key = strdup(jstr(s->doc, "_key_public"));
    return w;
}

/* ---- the QEMU process ---- */

static void proc_close_cb(uv_handle_t *h)
{
    free(h);
}

static void qmp_status_cb(Qmp *q, bool running, void *ud)
{
    Server *s = ud;
    s->qmp_answered = true;
    if (running != s->qmp_running) {
        s->qmp_running = running;
        agent_report(s);
    }
}

static void qmp_event_cb(Qmp *q, const char *event, json_t *data, void *ud)
{
    vol_event(ud, event, data);
    mig_event(ud, event, data);
}

static void qmp_closed_cb(Qmp *q, void *ud)
{
    Server *s = ud;
    s->qmp = NULL;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t l = strnlen(src, n - 1);
    memcpy(dst, src, l);
    dst[l] = '\0';
}

/* The last line QEMU wrote to its log: why it refused to start. */
static void qemu_log_tail(const Server *s, char *out, size_t n)
{
    char path[600], buf[2048];
    path_in(s, "qemu.log", path, sizeof(path));
    copy_str(out, n, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t k = pread(fd, buf, sizeof(buf) - 1, from);
    close(fd);
    if (k <= 0)
        return;
    while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
        k--;
    buf[k] = '\0';
    char *line = strrchr(buf, '\n');
    copy_str(out, n, line ? line + 1 : buf);
}

static void process_gone(Server *s)
{
    const char *kv[] = {"server", s->id, NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "QEMU process ended", kv);
    bool crashed = !s->stop_asked && s->started_ms && compute_now_ms() - s->started_ms < 5000 &&
                   s->phase == PHASE_RUNNING;
    s->stop_asked = false;
    s->stop_stage = 0;
    s->started_ms = 0;
    s->pid = 0;
    s->qmp_running = s->qmp_answered = false;
    s->stop_deadline_ms = 0;
    qmp_close(s->qmp);
    s->qmp = NULL;
    vol_clear(s);
    mig_reset(s);
    char path[600];
    path_in(s, "qemu.pid", path, sizeof(path));
    unlink(path);
    if (crashed) {
        char why[400];
        qemu_log_tail(s, why, sizeof(why));
        server_set_error(s, "QEMU exited at start: %s", why);
        return;
    }
    if (s->phase == PHASE_RUNNING)
        s->phase = PHASE_STOPPED;
    if (s->doc && strcmp(jstr(s->doc, "_desired"), "deleted") != 0)
        agent_report(s);
    server_converge(s);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    Server *s = p->data;
    s->child = false;
    uv_close((uv_handle_t *)p, proc_close_cb);
    process_gone(s);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(sa);
    int port = -EADDRNOTAVAIL;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &l) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void qmp_attach(Server *s)
{
    char sock[600];
    path_in(s, "qmp.sock", sock, sizeof(sock));
    if (s->qmp || access(sock, F_OK) != 0)
        return;
    if (strlen(sock) < 108) {
        s->qmp = qmp_connect(s->c->loop, sock, qmp_status_cb, qmp_closed_cb, s);
        qmp_on_event(s->qmp, qmp_event_cb, s);
        return;
    }
    /* too long for sun_path: reach it through a directory descriptor (connect() runs within
     * uv_pipe_connect, so the descriptor may close right after) */
    int dfd = open(s->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    snprintf(sock, sizeof(sock), "/proc/self/fd/%d/qmp.sock", dfd);
    s->qmp = qmp_connect(s->c->loop, sock, qmp_status_cb, qmp_closed_cb, s);
    qmp_on_event(s->qmp, qmp_event_cb, s);
    close(dfd);
}

static int server_spawn(Server *s)
{
    Compute *c = s->c;
    json_t *fl = server_flavor(s);
    long long vcpus = json_integer_value(json_object_get(fl, "vcpus"));
    long long ram = json_integer_value(json_object_get(fl, "ram"));
    if (vcpus < 1 || vcpus > 256 || ram < 16 || ram > (1LL << 22)) {
        server_set_error(s, "flavor vcpus=%lld ram=%lld MiB is outside what this host runs", vcpus,
                         ram);
        return -EINVAL;
    }
    if (s->ssh_port <= 0) {
        s->ssh_port = free_port();
        if (s->ssh_port < 0) {
            server_set_error(s, "no free loopback port for SSH");
            return -EADDRNOTAVAIL;
        }
        write_small(s, "ssh_port", s->ssh_port);
    }
    Argv a = {0};
    char err[400] = "", logp[600], sock[600];
    int r = vol_cmdline(s, &a, err, sizeof(err)); /* first: it may have to wait */
    if (r == -EAGAIN) {
        argv_free(&a);
        s->waiting = true;
        return r;
    }
    Nic nics[NIC_MAX];
    int nnic = 0;
    if (c->cfg.vpc) {
        nnic = nic_open_taps(s, nics, NIC_MAX, err, sizeof(err));
        uint64_t now = compute_now_ms();
        if (nnic == -EAGAIN) {
            if (!s->tap_wait_since)
                s->tap_wait_since = now;
            if (now - s->tap_wait_since < c->cfg.tap_wait_ms) {
                argv_free(&a);
                s->waiting = true;
                return -EAGAIN;
            }
            const char *kv[] = {"server", s->id, "why", err, NULL};
            sov_logv_kv(SOV_LOG_WARN, NULL, 0, "starting without its VPC NICs", kv);
        } else if (nnic < 0) {
            argv_free(&a);
            server_set_error(s, "%s", err);
            return nnic;
        }
        if (nnic < 0)
            nnic = 0;
        s->tap_wait_since = 0;
    }
    s->waiting = false;
    SovBuf gpus = SOV_BUF_INIT;
    if (r == 0)
        r = host_gpu_claim(s, json_integer_value(json_object_get(s->doc, "_gpus")), &gpus, err,
                           sizeof(err));
    if (r < 0) {
        argv_free(&a);
        sov_buf_release(&gpus);
        nic_close(nics, nnic);
        server_set_error(s, "%s", err);
        return r;
    }
    Argv v = {0};
    argv_add(&v, c->cfg.qemu);
    argv_add(&v, "-name");
    argv_addf(&v, "sov-%s", s->id);
    argv_add(&v, "-machine");
    argv_add(&v, "q35");
    argv_add(&v, "-accel");
    argv_add(&v, c->accel);
    argv_add(&v, "-smp");
    argv_addf(&v, "%lld", vcpus);
    argv_add(&v, "-m");
    argv_addf(&v, "%lldM", ram);
    argv_add(&v, "-nodefaults");
    argv_add(&v, "-display");
    argv_add(&v, "none");
    if (!vol_boots_from_volume(s)) { /* the overlay on the cached image (its backing file) */
        argv_add(&v, "-blockdev");
        argv_addf(
            &v, "{\"driver\":\"file\",\"node-name\":\"root-file\",\"filename\":\"%s/disk.qcow2\"}",
            s->dir);
        argv_add(&v, "-blockdev");
        argv_add(&v, "{\"driver\":\"qcow2\",\"node-name\":\"root\",\"file\":\"root-file\"}");
        argv_add(&v, "-device");
        argv_add(&v, "virtio-blk-pci,drive=root,id=rootdisk,bootindex=0");
    }
    /* the seed as a read-only virtio disk: guests probe virtio disks synchronously, CD-ROMs
     * late; cloud-init's NoCloud finds the label on either */
    argv_add(&v, "-drive");
    argv_addf(&v, "file=%s/seed.iso,format=raw,if=virtio,readonly=on", s->dir);
    argv_add(&v, "-netdev");
    argv_addf(&v, "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", s->ssh_port);
    char mac[18];
    server_mac(s, mac);
    argv_add(&v, "-device");
    argv_addf(&v, "virtio-net-pci,netdev=n0,mac=%s", mac);
    for (int i = 0; i < nnic; i++) { /* the taps are QEMU's fds 3, 4, ... */
        argv_add(&v, "-netdev");
        argv_addf(&v, "tap,id=p%d,fd=%d", i, 3 + i);
        argv_add(&v, "-device");
        argv_addf(&v, "virtio-net-pci,netdev=p%d,mac=%s", i, nics[i].mac);
    }
    argv_add(&v, "-serial");
    argv_addf(&v, "file:%s/serial.log", s->dir);
    /* relative to QEMU's working directory (the server dir): a Unix socket path has to fit
     * in 108 bytes, a state_dir need not */
    argv_add(&v, "-qmp");
    argv_add(&v, "unix:qmp.sock,server=on,wait=off");
    argv_add(&v, "-pidfile");
    argv_addf(&v, "%s/qemu.pid", s->dir);
    for (int i = 0; i < a.n; i++)
        argv_add(&v, a.v[i]);
    argv_free(&a);
    if (mig_spawn_args(s, &v) < 0)
        v.oom = true;
    for (size_t off = 0; off < gpus.len; off += strlen(gpus.ptr + off) + 1) {
        argv_add(&v, "-device");
        argv_add(&v, gpus.ptr + off);
    }
    sov_buf_release(&gpus);
    if (v.oom) {
        argv_free(&v);
        nic_close(nics, nnic);
        server_set_error(s, "out of memory (or a too long argument) building QEMU's command line");
        return -ENOMEM;
    }
    path_in(s, "qmp.sock", sock, sizeof(sock));
    unlink(sock);
    path_in(s, "qemu.log", logp, sizeof(logp));
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    uv_stdio_container_t stdio[3 + NIC_MAX] = {
        {.flags = UV_IGNORE},
        {.flags = logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = logfd},
        {.flags = logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = logfd}};
    for (int i = 0; i < nnic; i++)
        stdio[3 + i] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = nics[i].fd};
    uv_process_options_t o = {.file = c->cfg.qemu,
                              .args = v.v,
                              .exit_cb = exit_cb,
                              .cwd = s->dir,
                              .stdio = stdio,
                              .stdio_count = 3 + nnic,
                              .flags = UV_PROCESS_DETACHED};
    uv_process_t *proc = calloc(1, sizeof(*proc));
    if (!proc) {
        if (logfd >= 0)
            close(logfd);
        argv_free(&v);
        nic_close(nics, nnic);
        server_set_error(s, "out of memory");
        return -ENOMEM;
    }
    proc->data = s;
    r = uv_spawn(c->loop, proc, &o);
    argv_free(&v);
    nic_close(nics, nnic); /* QEMU holds its own copies */
    if (logfd >= 0)
        close(logfd);
    if (r < 0) {
        uv_close((uv_handle_t *)proc, proc_close_cb);
        server_set_error(s, "cannot start %s: %s", c->cfg.qemu, uv_strerror(r));
        return r;
    }
    s->child = true;
    s->pid = proc->pid;
    s->started_ms = compute_now_ms();
    s->stop_asked = false;
    s->qmp_running = s->qmp_answered = false;
    s->phase = PHASE_RUNNING;
    /* the pid file is ours too, so an agent restarted before QEMU wrote it still finds it */
    write_small(s, "qemu.pid", s->pid);
    host_cgroup_enter(s, s->pid, vcpus, ram);
    s->run_vcpus = vcpus;
    s->run_ram = ram;
    s->restarting = false;
    char fl_rec[64];
    snprintf(fl_rec, sizeof(fl_rec), "%lld %lld", vcpus, ram);
    path_in(s, "flavor", logp, sizeof(logp));
    if (sov_write_file_atomic(logp, fl_rec, strlen(fl_rec)) < 0)
        log_warn("cannot record the flavor of server %s", s->id);
    char smp[32], mem[32];
    snprintf(smp, sizeof(smp), "%lld", vcpus);
    snprintf(mem, sizeof(mem), "%lldM", ram);
    const char *kv[] = {"server", s->id, "accel", c->accel, "vcpus", smp, "ram", mem, NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "QEMU started", kv);
    return 0;
}

/* A QEMU left by a previous agent: its pid file names a live process whose command line
 * carries this server's -name. */
static void try_adopt(Server *s)
{
    char path[600], buf[64], want[96];
    path_in(s, "qemu.pid", path, sizeof(path));
    pid_t pid = sov_pidfile_read(path);
    snprintf(want, sizeof(want), "sov-%s", s->id); /* its -name */
    if (!sov_proc_matches(pid, NULL, want))
        return;
    snprintf(buf, sizeof(buf), "%ld", (long)pid);
    s->pid = pid;
    s->child = false;
    s->phase = PHASE_RUNNING;
    struct stat st;
    path_in(s, "serial.log", path, sizeof(path));
    if (stat(path, &st) == 0)
        s->console_off = (uint64_t)st.st_size;
    vol_load(s);
    qmp_attach(s);
    const char *kv[] = {"server", s->id, "pid", buf, NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "re-adopted a running QEMU", kv);
}

Server *server_new(Compute *c, const char *id)
{
    Server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c = c;
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->dir, sizeof(s->dir), "%s/servers/%s", c->cfg.state_dir, id);
    char path[600], buf[32];
    path_in(s, "ssh_port", path, sizeof(path));
    if (read_small(path, buf, sizeof(buf)) == 0)
        s->ssh_port = atoi(buf);
    path_in(s, "reboot", path, sizeof(path));
    s->reboot_seen = read_small(path, buf, sizeof(buf)) == 0 ? atoll(buf) : -1;
    path_in(s, "disk_gb", path, sizeof(path));
    if (read_small(path, buf, sizeof(buf)) == 0)
        s->disk_gb = atoll(buf);
    path_in(s, "flavor", path, sizeof(path));
    long long fv, fr;
    if (read_small(path, buf, sizeof(buf)) == 0 && sscanf(buf, "%lld %lld", &fv, &fr) == 2) {
        s->run_vcpus = fv;
        s->run_ram = fr;
    }
    try_adopt(s);
    if (s->phase == PHASE_NEW) { /* prepared: the seed is made last */
        path_in(s, "seed.iso", path, sizeof(path));
        if (access(path, F_OK) == 0)
            s->phase = PHASE_STOPPED;
    }
    s->next = c->servers;
    c->servers = s;
    return s;
}

void server_free(Server *s)
{
    if (!s)
        return;
    qmp_close(s->qmp);
    json_decref(s->doc);
    free(s);
}

static void kill_now(Server *s)
{
    if (s->pid <= 0)
        return;
    if (s->stop_stage >= 1)
        return; /* server_tick escalates to SIGKILL */
    s->stop_asked = true;
    s->stop_stage = 1;
    s->stop_deadline_ms = compute_now_ms();
    if (qmp_command(s->qmp, "quit") < 0)
        kill(s->pid, SIGTERM);
}

static void start_work(Server *s, int kind)
{
    Work *w = work_new(s, kind);
    if (!w) {
        server_set_error(s, "out of memory");
        return;
    }
    int r = uv_queue_work(s->c->loop, &w->w, kind == 0 ? prepare_work : remove_work, work_done);
    if (r < 0) {
        free(w->user_data);
        free(w->key);
        free(w);
        server_set_error(s, "cannot queue work: %s", uv_strerror(r));
        return;
    }
    s->phase = kind == 0 ? PHASE_PREPARING : PHASE_REMOVING;
}

/* ACPI power button, then quit once stop_timeout passes (server_tick). */
static void powerdown(Server *s, const char *why)
{
    if (s->stop_deadline_ms)
        return;
    /* without QMP the deadline passes at once and QEMU gets SIGTERM */
    if (qmp_command(s->qmp, "system_powerdown") < 0)
        s->stop_deadline_ms = compute_now_ms();
    s->stop_asked = true;
    if (!s->stop_deadline_ms)
        s->stop_deadline_ms = compute_now_ms() + s->c->cfg.stop_timeout_ms;
    const char *kv[] = {"server", s->id, "why", why, NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "ACPI powerdown sent", kv);
}

/* Compares the desired document with what runs and takes the next step. */
static void converge_once(Server *s);

void server_converge(Server *s)
{
    converge_once(s);
    if (s->phase == PHASE_RUNNING && s->doc && !s->c->stopping)
        mig_step(s);
}

static void converge_once(Server *s)
{
    if (s->c->stopping || s->phase == PHASE_PREPARING || s->phase == PHASE_REMOVING ||
        s->phase == PHASE_GONE)
        return;
    const char *want = s->doc ? jstr(s->doc, "_desired") : "deleted";
    if (strcmp(want, "deleted") == 0) {
        if (s->pid > 0) {
            kill_now(s);
            return;
        }
        start_work(s, 1);
        return;
    }
    if (s->phase == PHASE_ERROR)
        return;
    int64_t reboot = json_integer_value(json_object_get(s->doc, "_reboot"));
    if (s->reboot_seen < 0) {
        s->reboot_seen = reboot;
        if (mkdir(s->dir, 0700) == 0 || errno == EEXIST)
            write_small(s, "reboot", reboot);
    }
    if (s->phase == PHASE_NEW) {
        start_work(s, 0);
        agent_report(s);
        return;
    }
    if (strcmp(want, "running") == 0) {
        bool hard = json_is_true(json_object_get(s->doc, "_reboot_hard"));
        if (s->phase == PHASE_STOPPED) {
            if (s->reboot_seen != reboot) {
                s->reboot_seen = reboot;
                write_small(s, "reboot", reboot);
            }
            if (!vol_boots_from_volume(s) && flavor_num(s, "disk") > s->disk_gb && s->disk_gb > 0) {
                start_work(s, 0); /* a bigger root disk first */
                return;
            }
            if (server_spawn(s) != -EAGAIN)
                agent_report(s);
        } else if (s->incoming || *jstr(s->doc, "_migrate_to")) {
            /* migrating: no reboot or restart until it is over */
        } else if (s->phase == PHASE_RUNNING && s->qmp_answered && !s->qmp_running &&
                   !s->restarting && !s->stop_deadline_ms && qmp_ready(s->qmp)) {
            /* paused but meant to run (a migrated guest whose resume was missed) */
            if (qmp_command(s->qmp, "cont") == 0) {
                const char *kv[] = {"server", s->id, NULL};
                sov_logv_kv(SOV_LOG_INFO, NULL, 0, "resuming a paused guest", kv);
            }
        } else if (s->phase == PHASE_RUNNING && reboot > s->reboot_seen && hard &&
                   qmp_ready(s->qmp)) {
            if (qmp_command(s->qmp, "system_reset") == 0) {
                const char *kv[] = {"server", s->id, NULL};
                sov_logv_kv(SOV_LOG_INFO, NULL, 0, "rebooted (hard: system_reset)", kv);
                s->reboot_seen = reboot;
                write_small(s, "reboot", reboot);
                agent_report(s);
            }
        } else if (s->phase == PHASE_RUNNING && !s->restarting && s->qmp_answered &&
                   (reboot > s->reboot_seen ||
                    (s->run_vcpus && (s->run_vcpus != flavor_num(s, "vcpus") ||
                                      s->run_ram != flavor_num(s, "ram"))))) {
            /* a soft reboot or another flavor: the guest shuts down, a new QEMU starts */
            s->restarting = true;
            powerdown(s, reboot > s->reboot_seen ? "soft reboot" : "new flavor");
            agent_report(s);
        }
    } else if (strcmp(want, "stopped") == 0) {
        s->waiting = false;
        if (s->phase == PHASE_RUNNING && !s->stop_deadline_ms)
            powerdown(s, "stop");
    }
}

/* Whether the document's observed state differs from ours. Reports on snapshots only when it
 * does: every report is a change that answers the next watch, so reporting unconditionally
 * would loop. */
bool server_needs_report(const Server *s)
{
    if (s->incoming || mig_needs_report(s))
        return mig_needs_report(s);
    if (!s->doc || s->phase == PHASE_PREPARING || s->phase == PHASE_REMOVING ||
        s->phase == PHASE_GONE || strcmp(jstr(s->doc, "_desired"), "deleted") == 0)
        return false;
    if (s->phase == PHASE_RUNNING && !s->qmp_answered)
        return false; /* not known yet (a re-adopted guest must not flap to BUILD) */
    if (strcmp(jstr(s->doc, "status"), server_status(s)) != 0)
        return true;
    if (s->phase == PHASE_ERROR &&
        strcmp(jstr(json_object_get(s->doc, "fault"), "message"), s->fault) != 0)
        return true;
    json_int_t port = json_integer_value(json_object_get(json_object_get(s->doc, "_ssh"), "port"));
    return s->ssh_port > 0 && port != s->ssh_port;
}

/* Periodic: liveness of adopted processes, QMP (re)connection and status, stop deadlines and
 * new console output. */
void server_tick(Server *s)
{
    if (s->pid > 0 && !s->child && !sov_pid_alive(s->pid)) {
        process_gone(s);
        return;
    }
    if (s->pid > 0) {
        if (!s->qmp)
            qmp_attach(s);
        else if (qmp_ready(s->qmp))
            qmp_command(s->qmp, "query-status");
        /* past the powerdown deadline: quit (QMP, else SIGTERM); one more period: SIGKILL */
        uint64_t now = compute_now_ms();
        if (s->stop_deadline_ms && now >= s->stop_deadline_ms && s->stop_stage == 0) {
            s->stop_stage = 1;
            if (qmp_command(s->qmp, "quit") < 0)
                kill(s->pid, SIGTERM);
            const char *kv[] = {"server", s->id, NULL};
            sov_logv_kv(SOV_LOG_INFO, NULL, 0, "powerdown deadline passed; quit sent", kv);
        } else if (s->stop_deadline_ms && s->stop_stage == 1 &&
                   now >= s->stop_deadline_ms + s->c->cfg.stop_timeout_ms) {
            s->stop_stage = 2;
            const char *kv[] = {"server", s->id, NULL};
            sov_logv_kv(SOV_LOG_WARN, NULL, 0, "QEMU did not stop in time; killing it", kv);
            kill(s->pid, SIGKILL);
        }
        char path[600];
        struct stat st;
        path_in(s, "serial.log", path, sizeof(path));
        if (stat(path, &st) == 0 && (uint64_t)st.st_size > s->console_off)
            agent_report(s);
    }
    server_converge(s);
    vol_converge(s);
}

/* Directories of servers the API no longer lists (deleted while the agent was away). */
void compute_sweep_orphans(Compute *c)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/servers", c->cfg.state_dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    unsigned n = 0;
    while ((e = readdir(d)) && n++ < 100000) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > 64)
            continue;
        Server *s;
        for (s = c->servers; s && strcmp(s->id, e->d_name) != 0; s = s->next)
            ;
        if (s)
            continue;
        s = server_new(c, e->d_name);
        if (!s)
            break;
        const char *kv[] = {"server", s->id, NULL};
        sov_logv_kv(SOV_LOG_INFO, NULL, 0, "removing a server the API no longer knows", kv);
        s->gone_sent = true; /* nothing to tell the API */
        server_converge(s);
    }
    closedir(d);
}
