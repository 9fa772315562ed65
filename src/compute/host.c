/* SPDX-License-Identifier: Apache-2.0 */
/* Host facts and per-guest host resources: the GPUs this host can pass through (PCI display
 * devices of NVIDIA and AMD found under [compute] pci_sysfs), the claims servers hold on them
 * (<server dir>/gpus, one PCI address a line, so a claim outlives agent restarts), and a
 * cgroup per guest carrying the flavor's CPU and memory limits (cgroup v2, or the v1 cpu and
 * memory hierarchies). Everything here is small reads and writes of sysfs, cgroupfs and the
 * state directory, done on the loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"
#include "sov/daemon.h"
#include "sov/log.h"

#define HOST_GPU_MAX      64     /* the API's bound on a registration's "gpus" */
#define HOST_PCI_SCAN_MAX 4096   /* directory entries read from pci_sysfs */
#define HOST_SRV_SCAN_MAX 100000 /* server directories read when counting claims */
#define HOST_PCI_ADDR_MAX 16     /* "dddd:bb:dd.f" with a domain of up to 8 digits */
#define HOST_CLAIM_FILE   "gpus"
#define CG_PERIOD_US      100000
#define CG_QEMU_MB        256  /* QEMU itself: device models, I/O buffers, its heap */
#define CG_TCG_MB         1024 /* TCG's translated-code cache, which QEMU sizes at 1 GiB */
#define PCI_VENDOR_NVIDIA 0x10de
#define PCI_VENDOR_AMD    0x1002
#define PCI_CLASS_DISPLAY 0x03

/* One GPU as sysfs shows it. Invariant: address is a valid PCI address (pci_addr_ok). */
typedef struct HostGpu {
    char address[HOST_PCI_ADDR_MAX + 1];
    char vendor[8], device[8]; /* 4 hex digits, no 0x */
    char driver[64];           /* basename of the driver link; "" when unbound */
    char iommu_group[16];      /* basename of the iommu_group link; "" without an IOMMU */
    bool vfio;
} HostGpu;

typedef struct HostGpus {
    HostGpu v[HOST_GPU_MAX];
    size_t n;
    bool truncated;
} HostGpus;

typedef enum CgMode { CG_OFF, CG_V1, CG_V2 } CgMode;

/* The cgroup layout found by host_init, fixed for the agent's life (one Compute a process).
 * Invariant: mode != CG_OFF iff every base[0..nbase) exists and takes new children. */
static struct {
    CgMode mode;
    size_t nbase;
    char base[2][SOV_CONF_STR_MAX + 32]; /* v2: <root>/sov; v1: <root>/cpu/sov, memory/sov */
} cg;

/* ---- small file helpers ---- */

/* Reads a small file (relative to dfd) as a string with trailing whitespace cut. */
static int read_text_at(int dfd, const char *name, char *buf, size_t n)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t k = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (k < 0)
        return -e;
    buf[k] = '\0';
    while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' ' || buf[k - 1] == '\t'))
        buf[--k] = '\0';
    return 0;
}

static int read_text(const char *path, char *buf, size_t n)
{
    return read_text_at(AT_FDCWD, path, buf, n);
}

/* Writes a value into an existing kernel file (cgroupfs): one write, no create, no rename. */
static int write_text(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(val);
    ssize_t k = write(fd, val, len);
    int e = errno;
    close(fd);
    if (k < 0)
        return -e;
    return (size_t)k == len ? 0 : -EIO;
}

/* The basename of symlink dfd/name into out; "" (and 0) when there is no such link. */
static int link_base_at(int dfd, const char *name, char *out, size_t n)
{
    char target[512];
    out[0] = '\0';
    ssize_t k = readlinkat(dfd, name, target, sizeof(target) - 1);
    if (k < 0)
        return errno == ENOENT ? 0 : -errno;
    target[k] = '\0';
    const char *b = strrchr(target, '/');
    b = b ? b + 1 : target;
    size_t len = strlen(b);
    if (len >= n)
        return -ENAMETOOLONG;
    memcpy(out, b, len + 1);
    return 0;
}

static bool hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* "dddd:bb:dd.f": a domain of 4 to 8 lower-case hex digits, bus, device, function. */
static bool pci_addr_ok(const char *a)
{
    size_t n = strlen(a);
    if (n < 12 || n > HOST_PCI_ADDR_MAX)
        return false;
    size_t d = n - 8; /* domain digits */
    return hex_run(a, d) && a[d] == ':' && hex_run(a + d + 1, 2) && a[d + 3] == ':' &&
           hex_run(a + d + 4, 2) && a[d + 6] == '.' && a[d + 7] >= '0' && a[d + 7] <= '7';
}

/* A server id as a single path component. */
static bool id_ok(const char *id)
{
    if (!id[0] || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

/* ---- GPU discovery ---- */

static int gpu_cmp(const void *a, const void *b)
{
    return strcmp(((const HostGpu *)a)->address, ((const HostGpu *)b)->address);
}

/* Parses "0x10de" into the 4 hex digits "10de"; false when it is not such a number. */
static bool pci_id(const char *text, unsigned long *ret, char out[8])
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 16);
    if (errno || end == text || *end)
        return false;
    *ret = v;
    snprintf(out, 8, "%04lx", v & 0xffff);
    return true;
}

/* Fills g from device directory dfd/name; false when it is not a GPU we pass through. */
static bool gpu_probe(int dfd, const char *name, HostGpu *g)
{
    char buf[32];
    unsigned long vendor, device, klass;
    char dummy[8];
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = read_text_at(fd, "class", buf, sizeof(buf)) == 0 && pci_id(buf, &klass, dummy) &&
              (klass >> 16) == PCI_CLASS_DISPLAY &&
              read_text_at(fd, "vendor", buf, sizeof(buf)) == 0 &&
              pci_id(buf, &vendor, g->vendor) &&
              (vendor == PCI_VENDOR_NVIDIA || vendor == PCI_VENDOR_AMD) &&
              read_text_at(fd, "device", buf, sizeof(buf)) == 0 && pci_id(buf, &device, g->device);
    if (ok) {
        snprintf(g->address, sizeof(g->address), "%s", name);
        link_base_at(fd, "driver", g->driver, sizeof(g->driver));
        link_base_at(fd, "iommu_group", g->iommu_group, sizeof(g->iommu_group));
        g->vfio = strcmp(g->driver, "vfio-pci") == 0;
    }
    close(fd);
    return ok;
}

/* The GPUs under pci_sysfs, sorted by address (the order claims take them in). */
static int gpus_scan(Compute *c, HostGpus *out)
{
    out->n = 0;
    out->truncated = false;
    DIR *d = opendir(c->cfg.pci_sysfs);
    if (!d)
        return -errno;
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d)) && seen++ < HOST_PCI_SCAN_MAX) {
        if (!pci_addr_ok(e->d_name))
            continue;
        if (out->n == HOST_GPU_MAX) {
            HostGpu spare;
            out->truncated |= gpu_probe(dirfd(d), e->d_name, &spare);
            continue;
        }
        memset(&out->v[out->n], 0, sizeof(out->v[0]));
        if (gpu_probe(dirfd(d), e->d_name, &out->v[out->n]))
            out->n++;
    }
    if (e)
        out->truncated = true;
    closedir(d);
    qsort(out->v, out->n, sizeof(out->v[0]), gpu_cmp);
    return 0;
}

json_t *host_gpu_inventory(Compute *c)
{
    json_t *arr = json_array();
    HostGpus *g = calloc(1, sizeof(*g));
    if (!arr || !g || gpus_scan(c, g) < 0) {
        free(g);
        return arr ? arr : json_array();
    }
    for (size_t i = 0; i < g->n; i++) {
        const HostGpu *x = &g->v[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:o,s:o,s:b}", "address", x->address, "vendor", x->vendor,
                           "device", x->device, "driver",
                           x->driver[0] ? json_string(x->driver) : json_null(), "iommu_group",
                           x->iommu_group[0] ? json_string(x->iommu_group) : json_null(), "vfio",
                           x->vfio));
    }
    free(g);
    return arr;
}

/* ---- GPU claims ---- */

typedef struct Claim {
    char a[HOST_GPU_MAX][HOST_PCI_ADDR_MAX + 1];
    size_t n;
} Claim;

/* Reads a claim file; a missing or malformed one is an empty claim. */
static void claim_read(const char *path, Claim *cl)
{
    char buf[HOST_GPU_MAX * (HOST_PCI_ADDR_MAX + 1) + 1];
    cl->n = 0;
    if (read_text(path, buf, sizeof(buf)) < 0)
        return;
    for (char *line = buf, *next; line && *line && cl->n < HOST_GPU_MAX; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (pci_addr_ok(line))
            memcpy(cl->a[cl->n++], line, strlen(line) + 1); /* <= HOST_PCI_ADDR_MAX */
    }
}

static bool claim_has(const Claim *cl, const char *addr)
{
    for (size_t i = 0; i < cl->n; i++)
        if (strcmp(cl->a[i], addr) == 0)
            return true;
    return false;
}

static void claim_path(const Server *s, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", s->dir, HOST_CLAIM_FILE);
}

/* Marks the GPUs other servers' directories claim. Every server directory counts, not only
 * the servers the API still assigns here: an orphan's QEMU may hold its GPU until the sweep
 * has stopped it. */
static void claims_of_others(const Server *s, const HostGpus *g, bool held[HOST_GPU_MAX])
{
    char path[SOV_CONF_STR_MAX + 16];
    snprintf(path, sizeof(path), "%s/servers", s->c->cfg.state_dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    size_t seen = 0;
    Claim *cl = malloc(sizeof(*cl));
    while (cl && (e = readdir(d)) && seen++ < HOST_SRV_SCAN_MAX) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, s->id) == 0)
            continue;
        char cpath[SOV_CONF_STR_MAX + 400];
        snprintf(cpath, sizeof(cpath), "%s/%s/%s", path, e->d_name, HOST_CLAIM_FILE);
        claim_read(cpath, cl);
        for (size_t i = 0; i < g->n; i++)
            held[i] |= claim_has(cl, g->v[i].address);
    }
    free(cl);
    closedir(d);
}

/* Picks want GPUs into pick (indexes into g): the server's recorded claim when it still
 * names want GPUs of this host (1), else free ones, those bound to vfio-pci first and each
 * group in address order (0). */
static int gpus_pick(Server *s, const HostGpus *g, int64_t want, size_t *pick, char *err,
                     size_t errn)
{
    char path[600];
    Claim *mine = malloc(sizeof(*mine));
    if (!mine) {
        snprintf(err, errn, "out of memory");
        return -ENOMEM;
    }
    claim_path(s, path, sizeof(path));
    claim_read(path, mine);
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        if (claim_has(mine, g->v[i].address))
            pick[n++] = i;
    bool kept = n == (size_t)want && mine->n == (size_t)want;
    free(mine);
    if (kept)
        return 1;

    bool held[HOST_GPU_MAX] = {false};
    claims_of_others(s, g, held);
    size_t nfree = 0;
    for (size_t i = 0; i < g->n; i++)
        nfree += !held[i];
    if ((int64_t)nfree < want) {
        snprintf(err, errn,
                 "the flavor asks for %" PRId64
                 " GPU(s); %zu of the %zu GPU(s) of host %s are free",
                 want, nfree, g->n, s->c->host);
        return -EBUSY;
    }
    n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < g->n && (int64_t)n < want; i++)
            if (!held[i] && g->v[i].vfio == (pass == 0))
                pick[n++] = i;
    return 0;
}

int host_gpu_claim(Server *s, int64_t want, SovBuf *devs, char *err, size_t errn)
{
    char path[600];
    claim_path(s, path, sizeof(path));
    if (want <= 0) {
        /* a resize to a flavor without GPUs gives them back */
        if (unlink(path) < 0 && errno != ENOENT)
            log_warn_errno(-errno, "cannot remove the GPU claim %s: %m", path);
        return 0;
    }
    if (want > HOST_GPU_MAX) {
        snprintf(err, errn, "the flavor asks for %" PRId64 " GPUs; a host offers at most %d", want,
                 HOST_GPU_MAX);
        return -EINVAL;
    }
    HostGpus *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errn, "out of memory");
        return -ENOMEM;
    }
    int r = gpus_scan(s->c, g);
    if (r < 0 || g->n == 0) {
        snprintf(err, errn, "host %s has no GPU to pass through (%s: %s)", s->c->host,
                 s->c->cfg.pci_sysfs, r < 0 ? strerror(-r) : "no NVIDIA or AMD display device");
        free(g);
        return -ENODEV;
    }
    size_t pick[HOST_GPU_MAX];
    r = gpus_pick(s, g, want, pick, err, errn);
    if (r < 0)
        goto out;
    bool kept = r == 1;
    for (int64_t i = 0; i < want; i++) {
        const HostGpu *x = &g->v[pick[i]];
        if (!x->vfio) {
            snprintf(err, errn,
                     "GPU %s (%s:%s) is bound to %s, not vfio-pci; bind it to vfio-pci for "
                     "passthrough",
                     x->address, x->vendor, x->device, x->driver[0] ? x->driver : "no driver");
            r = -EPERM;
            goto out;
        }
    }
    SovBuf text = SOV_BUF_INIT;
    for (int64_t i = 0; i < want; i++)
        sov_buf_printf(&text, "%s\n", g->v[pick[i]].address);
    r = !text.ptr ? -ENOMEM : kept ? 0 : sov_write_file_atomic(path, text.ptr, text.len);
    if (r < 0) {
        snprintf(err, errn, "cannot record the GPU claim in %s: %s", path, strerror(-r));
        sov_buf_release(&text);
        goto out;
    }
    for (int64_t i = 0; i < want && r >= 0; i++) {
        char dev[64];
        int k = snprintf(dev, sizeof(dev), "vfio-pci,host=%s", g->v[pick[i]].address);
        r = sov_buf_append(devs, dev, (size_t)k + 1);
    }
    if (r < 0)
        snprintf(err, errn, "out of memory");
    else {
        /* the claimed addresses, comma-separated, as the log's value */
        for (size_t i = 0; i < text.len; i++)
            if (text.ptr[i] == '\n')
                text.ptr[i] = i + 1 == text.len ? '\0' : ',';
        const char *kv[] = {"server", s->id, "gpus", text.ptr, NULL};
        sov_logv_kv(SOV_LOG_INFO, NULL, 0, kept ? "GPUs kept" : "GPUs claimed", kv);
    }
    sov_buf_release(&text);
out:
    free(g);
    return r < 0 ? r : 0;
}

/* ---- cgroups ---- */

static bool words_have(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

/* Makes dir (a child cgroup) unless it is there already. */
static int cg_mkdir(const char *dir)
{
    return mkdir(dir, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Enables the cpu and memory controllers for dir's children unless they are on already. */
static int cg_v2_delegate(const char *dir, char *why, size_t whyn)
{
    char path[SOV_CONF_STR_MAX + 64], cur[512];
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
    if (read_text(path, cur, sizeof(cur)) == 0 && words_have(cur, "cpu") &&
        words_have(cur, "memory"))
        return 0;
    int r = write_text(path, "+cpu +memory");
    if (r < 0)
        snprintf(why, whyn, "cannot enable cpu and memory in %s: %s", path, strerror(-r));
    return r;
}

static CgMode cg_detect(Compute *c, char *why, size_t whyn)
{
    const char *root = c->cfg.cgroup_root;
    char path[SOV_CONF_STR_MAX + 64], ctl[512];
    if (strcmp(c->cfg.cgroups, "off") == 0) {
        snprintf(why, whyn, "[compute] cgroups = off");
        return CG_OFF;
    }
    if (strcmp(c->cfg.cgroups, "auto") != 0) {
        snprintf(why, whyn, "[compute] cgroups = %s is neither auto nor off", c->cfg.cgroups);
        return CG_OFF;
    }
    snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
    if (read_text(path, ctl, sizeof(ctl)) == 0) {
        if (!words_have(ctl, "cpu") || !words_have(ctl, "memory")) {
            snprintf(why, whyn,
                     "cgroup v2 at %s offers no cpu and memory controllers (has: %.100s)", root,
                     ctl[0] ? ctl : "none");
            return CG_OFF;
        }
        snprintf(cg.base[0], sizeof(cg.base[0]), "%s/sov", root);
        int r;
        if (cg_v2_delegate(root, why, whyn) < 0)
            return CG_OFF;
        if ((r = cg_mkdir(cg.base[0])) < 0) {
            snprintf(why, whyn, "cannot create %s: %s", cg.base[0], strerror(-r));
            return CG_OFF;
        }
        if (cg_v2_delegate(cg.base[0], why, whyn) < 0)
            return CG_OFF;
        cg.nbase = 1;
        return CG_V2;
    }
    /* v1 or hybrid: one hierarchy a controller (cpu may be a link to cpu,cpuacct) */
    static const char *const probe[2][2] = {{"cpu", "cpu.cfs_quota_us"},
                                            {"memory", "memory.limit_in_bytes"}};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s/%s", root, probe[i][0], probe[i][1]);
        if (access(path, F_OK) < 0) {
            snprintf(why, whyn, "no cgroup v2 and no v1 %s hierarchy under %s", probe[i][0], root);
            return CG_OFF;
        }
        snprintf(cg.base[i], sizeof(cg.base[i]), "%s/%s/sov", root, probe[i][0]);
        int r = cg_mkdir(cg.base[i]);
        if (r < 0) {
            snprintf(why, whyn, "cannot create %s: %s", cg.base[i], strerror(-r));
            return CG_OFF;
        }
    }
    cg.nbase = 2;
    return CG_V1;
}

/* The memory limit of a guest: its RAM, QEMU's own needs and, under TCG, the code cache. */
static uint64_t cg_memory_bytes(const Compute *c, int64_t ram_mb)
{
    int64_t mb = ram_mb + CG_QEMU_MB + (strcmp(c->accel, "tcg") == 0 ? CG_TCG_MB : 0);
    return (uint64_t)mb << 20;
}

void host_cgroup_enter(Server *s, pid_t pid, int64_t vcpus, int64_t ram_mb)
{
    if (cg.mode == CG_OFF || pid <= 0 || vcpus < 1 || ram_mb < 1)
        return;
    if (!id_ok(s->id)) {
        log_warn("cgroup: server id %s is not a path component; the guest runs without one", s->id);
        return;
    }
    char quota[48], mem[32], pidv[24];
    snprintf(quota, sizeof(quota), "%" PRId64, vcpus * CG_PERIOD_US);
    snprintf(mem, sizeof(mem), "%" PRIu64, cg_memory_bytes(s->c, ram_mb));
    snprintf(pidv, sizeof(pidv), "%d", (int)pid);
    /* per base: the files to write, in order, with the pid last */
    char v2cpu[64];
    snprintf(v2cpu, sizeof(v2cpu), "%s %d", quota, CG_PERIOD_US);
    const char *const v2[][2] = {
        {"cpu.max", v2cpu}, {"memory.max", mem}, {"cgroup.procs", pidv}, {NULL, NULL}};
    const char *const v1cpu[][2] = {{"cpu.cfs_period_us", "100000"},
                                    {"cpu.cfs_quota_us", quota},
                                    {"cgroup.procs", pidv},
                                    {NULL, NULL}};
    const char *const v1mem[][2] = {
        {"memory.limit_in_bytes", mem}, {"cgroup.procs", pidv}, {NULL, NULL}};
    const char *const(*files[2])[2] = {v2, NULL};
    if (cg.mode == CG_V1) {
        files[0] = v1cpu;
        files[1] = v1mem;
    }
    for (size_t b = 0; b < cg.nbase; b++) {
        char dir[SOV_CONF_STR_MAX + 128], path[SOV_CONF_STR_MAX + 192];
        snprintf(dir, sizeof(dir), "%s/%s", cg.base[b], s->id);
        int r = cg_mkdir(dir);
        if (r < 0) {
            log_warn_errno(r, "cgroup: cannot create %s; server %s runs without its limits: %m",
                           dir, s->id);
            return;
        }
        for (size_t i = 0; files[b][i][0]; i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, files[b][i][0]);
            if ((r = write_text(path, files[b][i][1])) < 0) {
                log_warn_errno(r, "cgroup: cannot write %s to %s; server %s runs without it: %m",
                               files[b][i][1], path, s->id);
                return;
            }
        }
    }
    const char *kv[] = {"server", s->id,          "pid", pidv, "cpu_quota_us",
                        quota,    "memory_bytes", mem,   NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "guest in its cgroup", kv);
}

void host_release(Server *s)
{
    char path[600];
    claim_path(s, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn_errno(-errno, "cannot remove the GPU claim %s: %m", path);
    if (cg.mode == CG_OFF || !id_ok(s->id))
        return;
    for (size_t b = 0; b < cg.nbase; b++) {
        char dir[SOV_CONF_STR_MAX + 128];
        snprintf(dir, sizeof(dir), "%s/%s", cg.base[b], s->id);
        if (rmdir(dir) < 0 && errno != ENOENT)
            log_warn_errno(-errno, "cgroup: cannot remove %s: %m", dir);
    }
}

/* Removes the empty cgroups of servers that have no directory in this state_dir: left by an
 * agent whose guests were killed without a delete (or whose state was wiped). A populated
 * cgroup refuses rmdir (EBUSY) and stays: a guest still runs in it. Agents that share a
 * cgroup_root (tests run several on one machine) may remove each other's empty ones, which
 * host_cgroup_enter simply creates again. */
static void cg_sweep(Compute *c)
{
    size_t removed = 0;
    for (size_t b = 0; b < cg.nbase; b++) {
        DIR *d = opendir(cg.base[b]);
        if (!d)
            continue;
        struct dirent *e;
        size_t seen = 0;
        while ((e = readdir(d)) && seen++ < HOST_SRV_SCAN_MAX) {
            if (e->d_type != DT_DIR || !id_ok(e->d_name) || e->d_name[0] == '.')
                continue;
            char path[SOV_CONF_STR_MAX + 400];
            snprintf(path, sizeof(path), "%s/servers/%s", c->cfg.state_dir, e->d_name);
            if (access(path, F_OK) == 0 || errno != ENOENT)
                continue;
            if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
                removed++;
        }
        closedir(d);
    }
    if (removed)
        log_info("cgroups: removed %zu empty cgroup(s) of servers this host no longer has",
                 removed);
}

void host_init(Compute *c)
{
    HostGpus *g = calloc(1, sizeof(*g));
    if (g) {
        int r = gpus_scan(c, g);
        size_t vfio = 0;
        for (size_t i = 0; i < g->n; i++)
            vfio += g->v[i].vfio;
        if (r < 0 && r != -ENOENT)
            log_warn_errno(r, "GPUs: cannot read %s: %m", c->cfg.pci_sysfs);
        else
            log_info("GPUs: %zu under %s, %zu bound to vfio-pci%s", g->n, c->cfg.pci_sysfs, vfio,
                     g->truncated ? " (more are left out: a host offers at most 64)" : "");
        free(g);
    }
    char why[600] = "";
    memset(&cg, 0, sizeof(cg));
    cg.mode = cg_detect(c, why, sizeof(why));
    if (cg.mode == CG_OFF) {
        cg.nbase = 0;
        log_info("cgroups: off (%s)", why);
    } else if (cg.mode == CG_V2)
        log_info("cgroups: v2, a cgroup per guest under %s", cg.base[0]);
    else
        log_info("cgroups: v1, a cgroup per guest under %s and %s", cg.base[0], cg.base[1]);
    cg_sweep(c);
}
