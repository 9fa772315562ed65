/* SPDX-License-Identifier: Apache-2.0 */
/* DHCP and DNS for sov-net: writes the dnsmasq files of a subnet (rendered by dhcpconf.c) and
 * runs dnsmasq inside the subnet's namespace as a child of the agent, re-reads hosts and names
 * with SIGHUP when ports change, restarts it when the subnet changes and, with backoff, when it
 * dies; releases the leases of ports that are gone. An agent that exits leaves its dnsmasqs
 * serving; the next one adopts each that still runs the config it would write (watched through a
 * pidfd). */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dhcp.h"
#include "dhcp-int.h"
#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/log.h"

#define DHCP_BACKOFF_MIN_MS 250u
#define DHCP_BACKOFF_MAX_MS 30000u
#define DHCP_HEALTHY_MS     10000u     /* a dnsmasq that ran this long resets the backoff */
#define DHCP_GRACE_MS       3000u      /* SIGTERM to SIGKILL */
#define DHCP_LEASES_MAX     (8u << 20) /* the lease file we read */

/* One supervised dnsmasq. Invariants: proc != NULL exactly while a child runs, watch != NULL
 * exactly while an adopted dnsmasq (an earlier agent's, watched through pidfd) runs, never both;
 * pid is the running one's. handles counts the open libuv handles (the timer once loop is set,
 * proc and watch until their close callbacks), and the struct is freed only when stopping and
 * handles is 0. While a dnsmasq runs the timer is the SIGKILL grace period (if a kill was sent),
 * otherwise the restart backoff. conf and hosts hold what the files on disk hold; the file
 * conf.running is the config the running dnsmasq was started with (absent while that is not
 * known to be conf). */
struct Dhcp {
    char *ip_bin, *dnsmasq_bin, *user, *dns_upstream, *dns_domain;
    unsigned lease_s;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_process_t *proc;
    uv_poll_t *watch;
    int pid, pidfd;
    int handles;
    unsigned fails;
    uint64_t started_ms;
    bool stopping, restart_pending, killing;
    /* a token of this Dhcp, written to the file owner by its first apply: a later Dhcp of the
     * same subnet (DHCP off and on again while this one's dnsmasq is still ending) writes its
     * own, and this one's end then leaves the files to it */
    char owner[40];
    char *dir, *netns, *conf, *hosts, *names;
    /* leases no port has any more, released one dhcp_release at a time */
    char *release_bin, *ifname;
    struct Release *releases; /* queued, oldest first */
    uv_process_t *releasing;  /* the dhcp_release that runs */
};

typedef struct Release {
    struct Release *next;
    char mac[18], ip[16], clid[DHCP_CLID_MAX + 1];
} Release;

/* ---- files ---- */

static int path_in(const Dhcp *d, const char *name, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", d->dir, name) >= (int)n ? -ENAMETOOLONG : 0;
}

/* Removes the files of a subnet's directory dir (NULL: none) and the directory. */
static void remove_files(const char *dir)
{
    DIR *dd = dir ? opendir(dir) : NULL;
    if (!dd)
        return;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN)
            unlinkat(dirfd(dd), e->d_name, 0);
    closedir(dd);
    rmdir(dir);
}

/* dnsmasq re-reads the hosts file as the user it dropped to: without user=root every directory
 * above it has to be searchable by others. */
static int check_reachable(const char *dir, SovBuf *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return -ENAMETOOLONG;
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            dhcp_seterr(err,
                        "%s is not searchable by others, so dnsmasq (which drops to nobody) could "
                        "not re-read its hosts file; chmod o+x it or run dnsmasq as root",
                        p);
            return -EACCES;
        }
        char *s = strrchr(p, '/');
        if (!s || s == p)
            return 0;
        *s = '\0';
    }
}

static int write_file(const Dhcp *d, const char *name, const char *text, SovBuf *err)
{
    char p[PATH_MAX];
    int r = path_in(d, name, p, sizeof(p));
    if (r == 0)
        r = sov_write_file_atomic(p, text, strlen(text));
    if (r < 0)
        dhcp_seterr(err, "cannot write %s/%s: %s", d->dir, name, strerror(-r));
    return r;
}

/* The pid of the dnsmasq serving subnet directory dir (its pid file names a live process
 * started with this directory's --conf-file), else 0. */
static pid_t dnsmasq_of(const char *dir)
{
    char p[PATH_MAX], want[PATH_MAX + 16];
    if (snprintf(p, sizeof(p), "%s/pid", dir) >= (int)sizeof(p) ||
        snprintf(want, sizeof(want), "--conf-file=%s/conf", dir) >= (int)sizeof(want))
        return 0;
    pid_t pid = sov_pidfile_read(p);
    return sov_proc_matches(pid, NULL, want) ? pid : 0;
}

/* A pidfd of the dnsmasq serving dir (its pid in *pid), checked again with the pidfd open (the
 * pid is still that dnsmasq, not a later process); -1 when none. */
static int dnsmasq_fd(const char *dir, pid_t *pid)
{
    pid_t p = dnsmasq_of(dir);
    int fd = p > 0 ? (int)syscall(SYS_pidfd_open, p, 0) : -1;
    if (fd >= 0 && dnsmasq_of(dir) != p) {
        close(fd);
        fd = -1;
    }
    *pid = p;
    return fd;
}

/* A dnsmasq of dir left by an earlier agent that is not adopted: it still holds the
 * interface's DHCP socket. */
static void kill_stale(const char *dir)
{
    pid_t pid;
    int fd = dir ? dnsmasq_fd(dir, &pid) : -1;
    if (fd >= 0) {
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        close(fd);
    }
}

/* Whether file name in d's directory holds exactly text. */
static bool file_is(const Dhcp *d, const char *name, const char *text)
{
    char p[PATH_MAX];
    if (path_in(d, name, p, sizeof(p)) < 0)
        return false;
    FILE *f = fopen(p, "re");
    if (!f)
        return false;
    size_t len = strlen(text), i = 0;
    int c;
    bool same = true;
    while (same && (c = getc(f)) != EOF)
        same = i < len && (char)c == text[i++];
    fclose(f);
    return same && i == len;
}

/* Whether process pid lives in network namespace netns (NULL: the agent's own). */
static bool in_netns(pid_t pid, const char *netns)
{
    char p[PATH_MAX], q[PATH_MAX];
    struct stat a, b;
    snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
    if (netns)
        snprintf(q, sizeof(q), "/run/netns/%s", netns);
    else
        snprintf(q, sizeof(q), "/proc/self/ns/net");
    return stat(p, &a) == 0 && stat(q, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* An earlier agent's dnsmasq that d can keep: it serves d->dir, in netns, started with conf,
 * from a binary not replaced since (an upgraded dnsmasq is restarted). Returns a pidfd of it
 * (its pid in *pid), or -1. */
static int adoptable(const Dhcp *d, const char *conf, const char *netns, pid_t *pid)
{
    char p[64], exe[PATH_MAX];
    if (!file_is(d, "conf.running", conf))
        return -1;
    int fd = dnsmasq_fd(d->dir, pid);
    snprintf(p, sizeof(p), "/proc/%d/exe", (int)*pid);
    ssize_t n = fd >= 0 ? readlink(p, exe, sizeof(exe) - 1) : -1;
    if (n >= 0)
        exe[n] = '\0';
    if (fd >= 0 && (n < 0 || strstr(exe, " (deleted)") || !in_netns(*pid, netns))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---- leases no port has any more ----
 * dnsmasq keeps a lease until it expires (a day by default) even when its static host line
 * is gone, and will not give the address to another MAC until then ("not using configured
 * address ... because it is leased to ..."): a port deleted and its address given to a new
 * port would leave the new one without DHCP, and the old name in DNS. So a lease whose MAC and
 * address are no line of the hosts file goes: dropped from the lease file before a dnsmasq
 * starts, released (dhcp_release, the DHCPRELEASE its client would send) while one runs. */

/* Whether hosts ("mac,ip,name" or, for a port without a name, "mac,ip" lines) has a line
 * for mac and ip. */
static bool hosts_has(const char *hosts, const char *mac, const char *ip)
{
    char key[40];
    int n = snprintf(key, sizeof(key), "%s,%s", mac, ip);
    for (const char *l = hosts; l && *l;) {
        if (strncmp(l, key, (size_t)n) == 0 && (l[n] == ',' || l[n] == '\n' || l[n] == '\0'))
            return true;
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    return false;
}

/* One line of dnsmasq's lease file, "expiry mac ip name client-id": its MAC, address and
 * client id ("" for "*" or anything not in dnsmasq's hex:hex form). false when the line is no
 * Ethernet lease. line is cut up. */
static bool lease_line(char *line, Release *out)
{
    char *save = NULL;
    const char *f[5] = {0};
    for (int i = 0; i < 5; i++)
        f[i] = strtok_r(i ? NULL : line, " ", &save);
    uint32_t a;
    if (!f[2] || dhcp_parse_mac(f[1], out->mac) < 0 || dhcp_parse_ip4(f[2], &a) < 0)
        return false;
    dhcp_ip4_str(a, out->ip);
    size_t n = f[4] ? strlen(f[4]) : 0;
    bool ok = n >= 2 && n <= DHCP_CLID_MAX && n % 3 == 2;
    for (size_t i = 0; ok && i < n; i++)
        ok = i % 3 == 2 ? f[4][i] == ':'
                        : (f[4][i] >= '0' && f[4][i] <= '9') || (f[4][i] >= 'a' && f[4][i] <= 'f');
    snprintf(out->clid, sizeof(out->clid), "%s", ok ? f[4] : "");
    return true;
}

/* The lease file, or NULL (none, unreadable, too big). */
static char *read_leases(const Dhcp *d)
{
    char p[PATH_MAX];
    if (path_in(d, "leases", p, sizeof(p)) < 0)
        return NULL;
    FILE *f = fopen(p, "re");
    if (!f)
        return NULL;
    SovBuf b = SOV_BUF_INIT;
    char chunk[16384];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = b.len + n <= DHCP_LEASES_MAX && sov_buf_append(&b, chunk, n) == 0;
    ok = ok && !ferror(f);
    fclose(f);
    if (!ok || !b.ptr) {
        sov_buf_release(&b);
        return NULL;
    }
    return sov_buf_steal(&b);
}

/* Calls fn for each line of dnsmasq's lease file with whether it is a lease a port still has
 * (keep) and, for a lease no port has, that lease (gone; NULL otherwise). false: no file. */
typedef void LeaseFn(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg);
static bool each_lease(Dhcp *d, LeaseFn *fn, void *arg)
{
    char *text = read_leases(d);
    if (!text)
        return false;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        Release r;
        char copy[1024];
        snprintf(copy, sizeof(copy), "%s", l);
        bool ok = strlen(l) < sizeof(copy) && lease_line(copy, &r);
        bool keep = ok && hosts_has(d->hosts, r.mac, r.ip);
        fn(d, l, keep, ok && !keep ? &r : NULL, arg);
    }
    free(text);
    return true;
}

typedef struct Kept {
    SovBuf lines; /* the lines kept */
    bool dropped; /* a line went */
} Kept;

static void keep_line(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg)
{
    Kept *k = arg;
    if (keep)
        sov_buf_printf(&k->lines, "%s\n", line);
    k->dropped = k->dropped || !keep;
}

/* Before a dnsmasq starts: the lease file without the leases no port has. */
static void prune_leases(Dhcp *d)
{
    Kept k = {SOV_BUF_INIT, false};
    if (each_lease(d, keep_line, &k) && k.dropped)
        write_file(d, "leases", k.lines.ptr ? k.lines.ptr : "", NULL);
    sov_buf_release(&k.lines);
}

static void release_next(Dhcp *d);
static void handle_closed(uv_handle_t *h);

/* Starts cmd (NULL-ended) inside d's namespace (ip netns exec) as a child on d's loop, its
 * stdout and stderr to out_fd (-1: nowhere), exit_cb when it ends; in a session of its own when
 * detached (no signal to the agent's process group reaches it). NULL with *rc < 0 when it cannot
 * start. */
static uv_process_t *run_child(Dhcp *d, char *const cmd[], int out_fd, uv_exit_cb exit_cb,
                               bool detached, int *rc)
{
    char *args[16];
    int n = 0;
    if (d->netns) {
        args[n++] = d->ip_bin;
        args[n++] = (char *)"netns";
        args[n++] = (char *)"exec";
        args[n++] = d->netns;
    }
    for (int i = 0; cmd[i] && n < 15; i++)
        args[n++] = cmd[i];
    args[n] = NULL;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd}};
    uv_process_options_t o = {.file = args[0],
                              .args = args,
                              .exit_cb = exit_cb,
                              .cwd = "/",
                              .stdio = stdio,
                              .stdio_count = 3,
                              .flags = detached ? UV_PROCESS_DETACHED : 0};
    uv_process_t *p = calloc(1, sizeof(*p));
    *rc = p ? 0 : -ENOMEM;
    if (!p)
        return NULL;
    p->data = d;
    d->handles++;
    if ((*rc = uv_spawn(d->loop, p, &o)) < 0) {
        uv_close((uv_handle_t *)p, handle_closed);
        return NULL;
    }
    return p;
}

static void release_exit(uv_process_t *p, int64_t status, int sig)
{
    Dhcp *d = p->data;
    if (status != 0 || sig != 0) {
        const char *kv[] = {"dir", d->dir, "cmd", d->release_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, 0,
                    "dhcp_release failed (is dnsmasq-utils installed?); the lease stays until it "
                    "expires",
                    kv);
    }
    d->releasing = NULL;
    uv_close((uv_handle_t *)p, handle_closed);
    release_next(d);
}

static void release_next(Dhcp *d)
{
    Release *r = d->releases;
    if (d->releasing || !r || d->stopping || !d->loop || !d->ifname)
        return;
    d->releases = r->next;
    char *args[] = {d->release_bin, d->ifname, r->ip, r->mac, *r->clid ? r->clid : NULL, NULL};
    int rc;
    d->releasing = run_child(d, args, -1, release_exit, false, &rc);
    free(r);
    if (!d->releasing) {
        const char *kv[] = {"dir", d->dir, "cmd", d->release_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, rc, "cannot run dhcp_release", kv);
        release_next(d);
    }
}

static void queue_release(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg)
{
    Release **tail = &d->releases;
    if (!gone)
        return;
    for (; *tail; tail = &(*tail)->next)
        if (!strcmp((*tail)->mac, gone->mac) && !strcmp((*tail)->ip, gone->ip))
            return; /* queued already */
    Release *q = malloc(sizeof(*q));
    if (q) {
        *q = *gone;
        q->next = NULL;
        *tail = q;
    }
}

/* While dnsmasq runs: queues a release of every lease no port has (once). */
static void release_stale(Dhcp *d)
{
    if (each_lease(d, queue_release, NULL))
        release_next(d);
}

/* ---- the process ---- */

static void spawn(Dhcp *d);

static void maybe_free(Dhcp *d)
{
    if (!d->stopping || d->handles > 0)
        return;
    free(d->ip_bin);
    free(d->dnsmasq_bin);
    free(d->user);
    free(d->dns_upstream);
    free(d->dns_domain);
    free(d->dir);
    free(d->netns);
    free(d->conf);
    free(d->hosts);
    free(d->names);
    free(d->release_bin);
    free(d->ifname);
    while (d->releases) {
        Release *r = d->releases;
        d->releases = r->next;
        free(r);
    }
    free(d);
}

static void handle_closed(uv_handle_t *h)
{
    Dhcp *d = h->data;
    if (h != (uv_handle_t *)&d->timer)
        free(h);
    d->handles--;
    maybe_free(d);
}

static void restart_cb(uv_timer_t *t)
{
    Dhcp *d = t->data;
    if (!d->stopping && !d->proc && !d->watch)
        spawn(d);
}

/* Sends sig to the running dnsmasq, a child or an adopted one. */
static void signal_dnsmasq(Dhcp *d, int sig)
{
    if (d->proc)
        uv_process_kill(d->proc, sig);
    else if (d->watch)
        syscall(SYS_pidfd_send_signal, d->pidfd, sig, NULL, 0);
}

static void grace_cb(uv_timer_t *t)
{
    signal_dnsmasq(t->data, SIGKILL);
}

static void schedule_restart(Dhcp *d)
{
    unsigned ms = DHCP_BACKOFF_MIN_MS << SOV_MIN(d->fails, 7u);
    ms = SOV_MIN(ms, DHCP_BACKOFF_MAX_MS);
    d->fails++;
    uv_timer_start(&d->timer, restart_cb, ms, 0);
}

/* Stops watching an adopted dnsmasq (it ended, or the agent lets go of it). */
static void unwatch(Dhcp *d)
{
    uv_close((uv_handle_t *)d->watch, handle_closed); /* out of epoll before the close */
    close(d->pidfd);
    d->watch = NULL;
    d->pidfd = -1;
}

/* The running dnsmasq ended (st: its exit status, "unknown" for an adopted one). */
static void ended(Dhcp *d, const char *st, int sig)
{
    char pid[16], sg[16];
    snprintf(pid, sizeof(pid), "%d", d->pid);
    snprintf(sg, sizeof(sg), "%d", sig);
    d->pid = 0;
    d->killing = false;
    uv_timer_stop(&d->timer);
    if (d->stopping) {
        if (file_is(d, "owner", d->owner)) /* else a newer Dhcp took the directory over */
            remove_files(d->dir);
        uv_close((uv_handle_t *)&d->timer, handle_closed);
        return;
    }
    if (d->restart_pending) {
        d->restart_pending = false;
        d->fails = 0;
        spawn(d);
        return;
    }
    if (uv_now(d->loop) - d->started_ms >= DHCP_HEALTHY_MS)
        d->fails = 0;
    const char *kv[] = {"dir", d->dir, "pid", pid, "status", st, "signal", sg, NULL};
    sov_logv_kv(SOV_LOG_WARN, NULL, 0, "dnsmasq exited; restarting it", kv);
    schedule_restart(d);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    Dhcp *d = p->data;
    char st[24];
    snprintf(st, sizeof(st), "%lld", (long long)status);
    d->proc = NULL;
    uv_close((uv_handle_t *)p, handle_closed);
    ended(d, st, sig);
}

/* The pidfd of an adopted dnsmasq reads ready: it ended. */
static void watch_cb(uv_poll_t *w, int status, int events)
{
    (void)status;
    (void)events;
    Dhcp *d = w->data;
    unwatch(d);
    ended(d, "unknown", 0);
}

/* Keeps the earlier agent's dnsmasq pid (pidfd open on it) as d's running one. */
static int watch(Dhcp *d, int pidfd, pid_t pid)
{
    uv_poll_t *w = calloc(1, sizeof(*w));
    int r = w ? uv_poll_init(d->loop, w, pidfd) : -ENOMEM;
    if (r < 0) {
        free(w);
        close(pidfd);
        return r;
    }
    w->data = d;
    d->handles++;
    d->watch = w;
    d->pidfd = pidfd;
    d->pid = (int)pid;
    d->started_ms = uv_now(d->loop);
    if ((r = uv_poll_start(w, UV_READABLE, watch_cb)) < 0)
        unwatch(d);
    return r;
}

static void spawn(Dhcp *d)
{
    char conf[PATH_MAX + 16], logp[PATH_MAX];
    snprintf(conf, sizeof(conf), "--conf-file=%s/conf", d->dir);
    if (path_in(d, "log", logp, sizeof(logp)) < 0)
        return;
    prune_leases(d);
    char *args[] = {d->dnsmasq_bin, (char *)"--keep-in-foreground", conf, NULL};
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), r;
    uv_process_t *p = run_child(d, args, logfd, exit_cb, true, &r);
    if (logfd >= 0)
        close(logfd);
    if (!p) {
        const char *kv[] = {"dir", d->dir, "cmd", d->dnsmasq_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, r, "cannot start dnsmasq; retrying", kv);
        schedule_restart(d);
        return;
    }
    d->proc = p;
    d->pid = p->pid;
    d->started_ms = uv_now(d->loop);
    char cr[PATH_MAX]; /* the next agent keeps this dnsmasq while its config stays this one */
    int w = path_in(d, "conf.running", cr, sizeof(cr));
    if (w == 0)
        w = sov_write_file_atomic(cr, d->conf, strlen(d->conf));
    if (w < 0) {
        const char *kv[] = {"dir", d->dir, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, w,
                    "cannot write conf.running; a restarted agent will restart this dnsmasq", kv);
    }
}

/* Ends the running dnsmasq; exit_cb decides what comes next. */
static void terminate(Dhcp *d)
{
    if ((!d->proc && !d->watch) || d->killing)
        return;
    d->killing = true;
    signal_dnsmasq(d, SIGTERM);
    uv_timer_start(&d->timer, grace_cb, DHCP_GRACE_MS, 0);
}

/* ---- API ---- */

Dhcp *dhcp_new(const DhcpOpts *o)
{
    DhcpOpts def = {0};
    if (!o)
        o = &def;
    unsigned lease = o->lease_s ? o->lease_s : DHCP_LEASE_DEFAULT_S;
    const char *up = o->dns_upstream ? o->dns_upstream : "";
    const char *dom = o->dns_domain && *o->dns_domain ? o->dns_domain : DHCP_DOMAIN_DEFAULT;
    char norm[DHCP_FQDN_MAX + 1];
    if (lease < DHCP_LEASE_MIN_S || lease > DHCP_LEASE_MAX_S ||
        (o->user && !dhcp_plain_name(o->user, 32)) || !dhcp_upstream_ok(up, NULL) ||
        !sov_dns_name_norm(dom, norm))
        return NULL;
    Dhcp *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->pidfd = -1;
    d->lease_s = lease;
    d->ip_bin = strdup(o->ip ? o->ip : "ip");
    d->dnsmasq_bin = strdup(o->dnsmasq ? o->dnsmasq : "dnsmasq");
    d->user = o->user ? strdup(o->user) : NULL;
    d->dns_upstream = strdup(up);
    d->dns_domain = strdup(norm);
    d->release_bin = strdup(o->dhcp_release ? o->dhcp_release : "dhcp_release");
    if (!d->ip_bin || !d->dnsmasq_bin || (o->user && !d->user) || !d->dns_upstream ||
        !d->dns_domain || !d->release_bin) {
        d->stopping = true;
        maybe_free(d);
        return NULL;
    }
    return d;
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

int dhcp_apply(uv_loop_t *loop, const char *state_dir, const char *netns, const char *ifname,
               const char *server_ip, json_t *subnet, json_t *ports, Dhcp **io, SovBuf *err)
{
    json_t *en = json_object_get(subnet, "enable_dhcp");
    if (json_is_object(subnet) && json_is_false(en)) {
        dhcp_stop(*io);
        *io = NULL;
        return 0;
    }
    const char *id = dhcp_jstr(subnet, "id");
    if (!dhcp_plain_name(id, DHCP_ID_MAX)) {
        dhcp_seterr(err, "subnet needs an id of letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    if (netns && *netns == '\0')
        netns = NULL;
    if (netns && !dhcp_plain_name(netns, DHCP_NAME_MAX)) {
        dhcp_seterr(err, "network namespace name must be letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    /* dnsmasq runs in / and is given absolute paths: a relative state_dir is the agent's */
    char abs[PATH_MAX], cwd[PATH_MAX];
    if (state_dir && state_dir[0] != '/' && state_dir[0] != '\0') {
        if (!getcwd(cwd, sizeof(cwd)) ||
            snprintf(abs, sizeof(abs), "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, state_dir) >=
                (int)sizeof(abs)) {
            dhcp_seterr(err, "cannot make the state directory absolute");
            return -ENAMETOOLONG;
        }
        state_dir = abs;
    }
    if (!dhcp_safe_path(state_dir)) {
        dhcp_seterr(err, "state directory must be a path without blanks or ,#\"'\\");
        return -EINVAL;
    }
    Dhcp *d = *io;
    bool created = false;
    if (!d) {
        d = dhcp_new(NULL);
        if (!d) {
            dhcp_seterr(err, "out of memory");
            return -ENOMEM;
        }
        created = true;
    }
    SovBuf dir = SOV_BUF_INIT, conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, names = SOV_BUF_INIT;
    DhcpOpts o = {.lease_s = d->lease_s,
                  .user = d->user,
                  .dns_upstream = d->dns_upstream,
                  .dns_domain = d->dns_domain};
    int r = sov_buf_printf(&dir, "%s/dhcp/%s", state_dir, id) < 0 ? -ENOMEM : 0;
    if (r == 0 && d->dir && strcmp(d->dir, dir.ptr) != 0) {
        dhcp_seterr(err, "this DHCP server belongs to %s, not to subnet %s", d->dir, id);
        r = -EINVAL;
    }
    if (r == 0)
        r = dhcp_render(dir.ptr, ifname, server_ip, subnet, ports, &o, &conf, &hosts, &names, err);
    if (r == 0 && !d->owner[0]) {            /* until the first apply got as far as its token */
        char *slash = strrchr(dir.ptr, '/'); /* state_dir/dhcp first */
        *slash = '\0';
        r = mkdir(dir.ptr, 0755) < 0 && errno != EEXIST ? -errno : 0;
        *slash = '/';
        if (r == 0 && mkdir(dir.ptr, 0755) < 0 && errno != EEXIST)
            r = -errno;
        if (r < 0) {
            dhcp_seterr(err, "cannot create %s: %s", dir.ptr, strerror(-r));
        } else if (!d->user || strcmp(d->user, "root") != 0) {
            r = check_reachable(dir.ptr, err);
        }
    }
    if (r < 0) {
        sov_buf_release(&dir);
        sov_buf_release(&conf);
        sov_buf_release(&hosts);
        sov_buf_release(&names);
        if (created) {
            d->stopping = true;
            maybe_free(d);
        }
        return r;
    }
    if (!d->dir)
        d->dir = sov_buf_steal(&dir);
    if (!d->owner[0]) { /* the directory is this Dhcp's from now on */
        uint64_t tok[2];
        if (sov_random_bytes(tok, sizeof(tok)) < 0) {
            dhcp_seterr(err, "no random token");
            r = -EIO;
        } else {
            snprintf(d->owner, sizeof(d->owner), "%016" PRIx64 "%016" PRIx64 "\n", tok[0], tok[1]);
            if ((r = write_file(d, "owner", d->owner, err)) < 0)
                d->owner[0] = '\0';
        }
    }
    sov_buf_release(&dir);
    if (str_differs(d->ifname, ifname)) {
        free(d->ifname);
        d->ifname = ifname ? strdup(ifname) : NULL;
    }
    bool conf_changed = str_differs(d->conf, conf.ptr) || str_differs(d->netns, netns);
    bool hosts_changed = !d->hosts || strcmp(d->hosts, hosts.ptr ? hosts.ptr : "") != 0;
    bool names_changed = !d->names || strcmp(d->names, names.ptr ? names.ptr : "") != 0;
    /* hosts and names first: a dnsmasq that starts on the new config reads them too */
    if (r == 0 && hosts_changed &&
        (r = write_file(d, "hosts", hosts.ptr ? hosts.ptr : "", err)) == 0) {
        free(d->hosts);
        d->hosts = sov_buf_steal(&hosts);
        if (!d->hosts)
            d->hosts = strdup("");
    }
    if (r == 0 && names_changed &&
        (r = write_file(d, "names", names.ptr ? names.ptr : "", err)) == 0) {
        free(d->names);
        d->names = sov_buf_steal(&names);
        if (!d->names)
            d->names = strdup("");
    }
    hosts_changed = hosts_changed || names_changed;
    /* a first apply keeps the earlier agent's dnsmasq when it runs this very config */
    pid_t apid = 0;
    int pidfd = r == 0 && !d->loop ? adoptable(d, conf.ptr, netns, &apid) : -1;
    char cr[PATH_MAX];
    if (r == 0 && conf_changed && pidfd < 0 && path_in(d, "conf.running", cr, sizeof(cr)) == 0 &&
        unlink(cr) < 0 && errno != ENOENT) {
        dhcp_seterr(err, "cannot remove %s: %s", cr, strerror(errno));
        r = -errno;
    }
    if (r == 0 && conf_changed && (r = write_file(d, "conf", conf.ptr, err)) == 0) {
        free(d->conf);
        d->conf = sov_buf_steal(&conf);
        free(d->netns);
        d->netns = netns ? strdup(netns) : NULL;
    }
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&names);
    if (r < 0 || (!d->hosts || !d->names || !d->conf || (netns && !d->netns))) {
        if (r == 0) {
            dhcp_seterr(err, "out of memory");
            r = -ENOMEM;
        }
        if (pidfd >= 0)
            close(pidfd);
        if (created) {
            remove_files(d->dir);
            d->stopping = true;
            maybe_free(d);
        }
        return r;
    }
    if (!d->loop) {
        d->loop = loop;
        uv_timer_init(loop, &d->timer);
        d->timer.data = d;
        d->handles++;
        if (pidfd >= 0 && watch(d, pidfd, apid) == 0) {
            /* it reads the hosts and names just written, and ends leases gone meanwhile */
            signal_dnsmasq(d, SIGHUP);
            release_stale(d);
        } else {
            kill_stale(d->dir);
            spawn(d);
        }
    } else if (conf_changed) {
        if (d->proc || d->watch) {
            d->restart_pending = true;
            terminate(d);
        } else {
            uv_timer_stop(&d->timer);
            d->fails = 0;
            spawn(d);
        }
    } else if (hosts_changed && (d->proc || d->watch) && !d->restart_pending) {
        /* a SIGHUP that lands before dnsmasq handles it (right after the spawn) ends it: the
         * restart then reads the new hosts file all the same */
        signal_dnsmasq(d, SIGHUP);
        release_stale(d);
    }
    *io = d;
    return 0;
}

void dhcp_stop(Dhcp *d)
{
    char cr[PATH_MAX];
    if (!d || d->stopping)
        return;
    d->stopping = true;
    if (d->dir && path_in(d, "conf.running", cr, sizeof(cr)) == 0)
        unlink(cr); /* a dnsmasq on its way out is nobody's to adopt */
    if (d->proc || d->watch) {
        d->killing = false;
        terminate(d); /* ended() removes the files (unless taken over) and closes the timer */
        return;
    }
    kill_stale(d->dir); /* one an earlier agent left, when a first apply failed */
    remove_files(d->dir);
    if (d->loop)
        uv_close((uv_handle_t *)&d->timer, handle_closed);
    maybe_free(d);
}

void dhcp_detach(Dhcp *d)
{
    if (!d || d->stopping)
        return;
    d->stopping = true;
    if (d->proc) { /* closing the handle neither signals nor waits for the child */
        uv_close((uv_handle_t *)d->proc, handle_closed);
        d->proc = NULL;
    }
    if (d->watch)
        unwatch(d);
    if (d->releasing) {
        uv_close((uv_handle_t *)d->releasing, handle_closed);
        d->releasing = NULL;
    }
    if (d->loop)
        uv_close((uv_handle_t *)&d->timer, handle_closed);
    maybe_free(d);
}

void dhcp_sweep(const char *state_dir, json_t *keep)
{
    char dir[PATH_MAX];
    if (!state_dir || snprintf(dir, sizeof(dir), "%s/dhcp", state_dir) >= (int)sizeof(dir))
        return;
    DIR *dd = opendir(dir);
    if (!dd)
        return;
    struct dirent *e;
    while ((e = readdir(dd))) {
        char sub[PATH_MAX];
        if (!dhcp_plain_name(e->d_name, DHCP_ID_MAX) || e->d_name[0] == '.' ||
            json_object_get(keep, e->d_name) ||
            snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= (int)sizeof(sub))
            continue;
        kill_stale(sub);
        remove_files(sub);
    }
    closedir(dd);
}

bool dhcp_running(const Dhcp *d)
{
    return d && (d->proc || d->watch) && !d->stopping;
}

int dhcp_pid(const Dhcp *d)
{
    return d && (d->proc || d->watch) ? d->pid : 0;
}
