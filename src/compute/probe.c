/* SPDX-License-Identifier: Apache-2.0 */
/* The accelerator probe. A /dev/kvm that opens proves nothing (on a nested PVM layer QEMU
 * reports KVM enabled while the guest hangs), so with accel = auto the agent boots a real
 * tiny guest under KVM: the host's kernel with an initramfs written here (a newc cpio holding a
 * static busybox and an /init script that prints a marker on the serial console and powers
 * off). The marker within the deadline means KVM works; anything else means TCG. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute.h"
#include "sov/log.h"

#define MARKER "SOV-PROBE-OK"

typedef struct Probe {
    Compute *c;
    void (*done)(Compute *c);
    uv_process_t proc;
    uv_timer_t timer;
    uint64_t deadline;
    char serial[600];
    bool exited, finished;
    int pending_closes;
} Probe;

/* ---- the initramfs ---- */

static int cpio_entry(SovBuf *out, const char *name, unsigned mode, unsigned rmaj, unsigned rmin,
                      const void *data, size_t len)
{
    static unsigned ino = 1;
    size_t nlen = strlen(name) + 1;
    int r = sov_buf_printf(out, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X",
                           ino++, mode, 0u, 0u, 1u, 0u, len, 0u, 0u, rmaj, rmin, nlen, 0u);
    if (r < 0)
        return r;
    if ((r = sov_buf_append(out, name, nlen)) < 0)
        return r;
    while (out->len % 4)
        if ((r = sov_buf_putc(out, '\0')) < 0)
            return r;
    if (len && (r = sov_buf_append(out, data, len)) < 0)
        return r;
    while (out->len % 4)
        if ((r = sov_buf_putc(out, '\0')) < 0)
            return r;
    return 0;
}

static int read_file(const char *path, SovBuf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            int r = -errno;
            close(fd);
            return r;
        }
        if (n == 0)
            break;
        if (sov_buf_append(out, buf, (size_t)n) < 0) {
            close(fd);
            return -ENOMEM;
        }
    }
    close(fd);
    return 0;
}

static int write_initramfs(const char *path, SovBuf *why)
{
    static const char *const busyboxes[] = {"/bin/busybox", "/usr/bin/busybox"};
    static const char init[] = "#!/bin/busybox sh\n"
                               "/bin/busybox echo " MARKER "\n"
                               "/bin/busybox poweroff -f\n";
    SovBuf bb = SOV_BUF_INIT, out = SOV_BUF_INIT;
    int r = -ENOENT;
    for (size_t i = 0; i < sizeof(busyboxes) / sizeof(busyboxes[0]) && r < 0; i++) {
        sov_buf_reset(&bb);
        r = read_file(busyboxes[i], &bb);
    }
    if (r < 0) {
        sov_buf_printf(why, "no static busybox (install busybox-static)");
        goto out;
    }
    if ((r = cpio_entry(&out, "bin", 040755, 0, 0, NULL, 0)) < 0 ||
        (r = cpio_entry(&out, "dev", 040755, 0, 0, NULL, 0)) < 0 ||
        (r = cpio_entry(&out, "dev/console", 020600, 5, 1, NULL, 0)) < 0 ||
        (r = cpio_entry(&out, "bin/busybox", 0100755, 0, 0, bb.ptr, bb.len)) < 0 ||
        (r = cpio_entry(&out, "init", 0100755, 0, 0, init, sizeof(init) - 1)) < 0 ||
        (r = cpio_entry(&out, "TRAILER!!!", 0, 0, 0, NULL, 0)) < 0)
        goto out;
    r = sov_write_file_atomic(path, out.ptr, out.len);
    if (r < 0)
        sov_buf_printf(why, "cannot write %s: %s", path, strerror(-r));
out:
    sov_buf_release(&bb);
    sov_buf_release(&out);
    return r;
}

/* The newest /boot/vmlinuz-* (or [compute] kernel). */
static int find_kernel(Compute *c, char *out, size_t n)
{
    if (c->cfg.kernel[0]) {
        snprintf(out, n, "%s", c->cfg.kernel);
        return access(out, R_OK) == 0 ? 0 : -errno;
    }
    DIR *d = opendir("/boot");
    if (!d)
        return -errno;
    struct dirent *e;
    out[0] = '\0';
    char best[256] = "";
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "vmlinuz-", 8) == 0 && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    closedir(d);
    if (!best[0])
        return -ENOENT;
    snprintf(out, n, "/boot/%s", best);
    return access(out, R_OK) == 0 ? 0 : -errno;
}

/* ---- the probe run ---- */

static void probe_free_cb(uv_handle_t *h)
{
    Probe *p = h->data;
    if (--p->pending_closes == 0)
        free(p);
}

static void decide(Compute *c, const char *accel, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void decide(Compute *c, const char *accel, const char *fmt, ...)
{
    va_list ap;
    snprintf(c->accel, sizeof(c->accel), "%s", accel);
    va_start(ap, fmt);
    vsnprintf(c->accel_reason, sizeof(c->accel_reason), fmt, ap);
    va_end(ap);
    c->accel_known = true;
    sov_gauge_set(strcmp(accel, "kvm") == 0 ? c->m_accel_kvm : c->m_accel_tcg, 1);
    const char *kv[] = {"accel", c->accel, "reason", c->accel_reason, NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "accelerator chosen", kv);
}

static bool marker_seen(const char *path)
{
    SovBuf b = SOV_BUF_INIT;
    bool seen = false;
    if (read_file(path, &b) == 0 && b.ptr)
        seen = memmem(b.ptr, b.len, MARKER, strlen(MARKER)) != NULL;
    sov_buf_release(&b);
    return seen;
}

static void probe_finish(Probe *p, bool ok, const char *why)
{
    if (p->finished)
        return;
    p->finished = true;
    if (ok)
        decide(p->c, "kvm", "%s", "a test guest booted under KVM");
    else
        decide(p->c, "tcg", "the KVM test guest did not boot: %s", why);
    if (!p->exited)
        uv_process_kill(&p->proc, SIGKILL);
    uv_timer_stop(&p->timer);
    p->done(p->c);
}

static void probe_timer_cb(uv_timer_t *t)
{
    Probe *p = t->data;
    if (marker_seen(p->serial)) {
        probe_finish(p, true, NULL);
        return;
    }
    if (compute_now_ms() >= p->deadline) {
        probe_finish(p, false, "no boot marker before the deadline");
        return;
    }
}

static void probe_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    Probe *p = proc->data;
    p->exited = true;
    if (!p->finished)
        probe_finish(p, marker_seen(p->serial), "QEMU exited without the boot marker");
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, probe_free_cb);
    uv_close((uv_handle_t *)proc, probe_free_cb);
}

int probe_accel(Compute *c, void (*done)(Compute *c))
{
    const char *mode = c->cfg.accel;
    if (strcmp(mode, "tcg") == 0 || strcmp(mode, "kvm") == 0) {
        decide(c, mode, "%s", "set in the configuration ([compute] accel)");
        done(c);
        return 0;
    }
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        decide(c, "tcg", "/dev/kvm cannot be opened: %s", strerror(errno));
        done(c);
        return 0;
    }
    close(fd);
    char dir[512], initrd[600], kernel[300], append[] = "console=ttyS0 panic=-1 quiet";
    SovBuf why = SOV_BUF_INIT;
    snprintf(dir, sizeof(dir), "%s/probe", c->cfg.state_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        decide(c, "tcg", "cannot create the probe directory: %s", strerror(errno));
        done(c);
        return 0;
    }
    snprintf(initrd, sizeof(initrd), "%s/initrd.cpio", dir);
    if (find_kernel(c, kernel, sizeof(kernel)) < 0) {
        decide(c, "tcg", "%s", "no readable host kernel to probe KVM with (/boot/vmlinuz-*)");
        done(c);
        return 0;
    }
    if (write_initramfs(initrd, &why) < 0) {
        decide(c, "tcg", "%s", why.ptr ? why.ptr : "cannot build the probe initramfs");
        sov_buf_release(&why);
        done(c);
        return 0;
    }
    Probe *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->c = c;
    p->done = done;
    snprintf(p->serial, sizeof(p->serial), "%s/serial.log", dir);
    unlink(p->serial);
    char serial_arg[620];
    snprintf(serial_arg, sizeof(serial_arg), "file:%s", p->serial);
    /* setpriv --pdeathsig: a probe guest that hangs (the usual outcome here) dies with this
     * agent however the agent ends, even by SIGKILL before the deadline */
    char *args[] = {"setpriv",  "--pdeathsig", "KILL",       "--",      c->cfg.qemu, "-accel",
                    "kvm",      "-machine",    "q35",        "-m",      "256",       "-nodefaults",
                    "-display", "none",        "-no-reboot", "-kernel", kernel,      "-initrd",
                    initrd,     "-append",     append,       "-serial", serial_arg,  NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
    uv_process_options_t o = {.file = "setpriv",
                              .args = args,
                              .exit_cb = probe_exit_cb,
                              .stdio = stdio,
                              .stdio_count = 3};
    p->proc.data = p;
    int r = uv_spawn(c->loop, &p->proc, &o);
    if (r < 0) {
        p->pending_closes = 1;
        uv_close((uv_handle_t *)&p->proc, probe_free_cb);
        decide(c, "tcg", "cannot start QEMU for the probe: %s", uv_strerror(r));
        done(c);
        return 0;
    }
    p->pending_closes = 2;
    p->deadline = compute_now_ms() + c->cfg.probe_timeout_ms;
    uv_timer_init(c->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, probe_timer_cb, 200, 200);
    log_info("probing KVM with a test guest (deadline %llu ms)",
             (unsigned long long)c->cfg.probe_timeout_ms);
    return 0;
}
