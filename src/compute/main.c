/* SPDX-License-Identifier: Apache-2.0 */
/* sov-compute: the per-host compute agent. Everything runs on the main loop: the /healthz and
 * /metrics listener, the agent API client and the QEMU processes. It probes the accelerator
 * first, then registers with sov-api and converges. On SIGTERM it stops without touching the
 * guests: a restarted agent re-adopts them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute.h"
#include "host.h"
#include "sov/log.h"

static const SovConfField conf_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(ComputeConfig, listen), 3, 255, "127.0.0.1:8478",
     "/healthz and /metrics address (HOST:PORT; port 0 picks a free one)"},
    {"log", "level", SOV_CONF_STRING, offsetof(ComputeConfig, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    {"compute", "api_url", SOV_CONF_STRING, offsetof(ComputeConfig, api_url), 8, 255,
     "http://127.0.0.1:8400", "sov-api's address (http://HOST:PORT)"},
    {"compute", "agent_token", SOV_CONF_STRING, offsetof(ComputeConfig, agent_token), 0, 255, "",
     "sov-api's [agent] token"},
    {"compute", "host", SOV_CONF_STRING, offsetof(ComputeConfig, host), 0, 63, "",
     "host name to register (empty: this machine's hostname)"},
    {"compute", "zone", SOV_CONF_STRING, offsetof(ComputeConfig, zone), 0, 63, "",
     "availability zone (empty: the API's first zone)"},
    {"compute", "vcpus", SOV_CONF_INT, offsetof(ComputeConfig, vcpus), 0, 4096, "0",
     "vCPUs offered to the scheduler (0: the machine's CPUs)"},
    {"compute", "ram_mb", SOV_CONF_INT, offsetof(ComputeConfig, ram_mb_), 0, 1 << 30, "0",
     "memory offered in MiB (0: the machine's memory)"},
    {"compute", "state_dir", SOV_CONF_STRING, offsetof(ComputeConfig, state_dir), 1, 200,
     "var/compute", "image cache and one directory per server"},
    {"compute", "qemu", SOV_CONF_STRING, offsetof(ComputeConfig, qemu), 1, 255,
     "qemu-system-x86_64", "the QEMU binary"},
    {"compute", "qemu_img", SOV_CONF_STRING, offsetof(ComputeConfig, qemu_img), 1, 255, "qemu-img",
     "the qemu-img binary"},
    {"compute", "accel", SOV_CONF_STRING, offsetof(ComputeConfig, accel), 3, 4, "auto",
     "auto (probe KVM with a test boot), kvm or tcg"},
    {"compute", "kernel", SOV_CONF_STRING, offsetof(ComputeConfig, kernel), 0, 255, "",
     "kernel the KVM probe boots (empty: the newest /boot/vmlinuz-*)"},
    {"compute", "probe_timeout", SOV_CONF_DURATION, offsetof(ComputeConfig, probe_timeout_ms), 500,
     600000, "20s", "how long the KVM probe guest gets to boot"},
    {"compute", "stop_timeout", SOV_CONF_DURATION, offsetof(ComputeConfig, stop_timeout_ms), 100,
     3600000, "60s", "ACPI powerdown grace before QEMU is told to quit"},
    {"compute", "poll", SOV_CONF_DURATION, offsetof(ComputeConfig, poll_ms), 100, 60000, "1s",
     "period of the QMP status poll and console forwarding"},
    {"compute", "console_max", SOV_CONF_SIZE, offsetof(ComputeConfig, console_max), 256,
     1024 * 1024, "16K", "most console bytes forwarded per report"},
    {"compute", "pci_sysfs", SOV_CONF_STRING, offsetof(ComputeConfig, pci_sysfs), 1, 200,
     "/sys/bus/pci/devices", "where the GPU discovery reads PCI devices"},
    {"compute", "cgroups", SOV_CONF_STRING, offsetof(ComputeConfig, cgroups), 2, 4, "auto",
     "auto (a cgroup per guest where the host allows) or off"},
    {"compute", "cgroup_root", SOV_CONF_STRING, offsetof(ComputeConfig, cgroup_root), 1, 200,
     "/sys/fs/cgroup", "the cgroup file system"},
    {"compute", "migrate_host", SOV_CONF_STRING, offsetof(ComputeConfig, migrate_host), 1, 63,
     "127.0.0.1", "address other hosts reach this one at for live migration"},
    {"compute", "vpc", SOV_CONF_BOOL, offsetof(ComputeConfig, vpc), 0, 0, "false",
     "plug servers' Neutron ports as VPC NICs (taps sov-net makes)"},
    {"compute", "netns", SOV_CONF_STRING, offsetof(ComputeConfig, netns), 0, 63, "",
     "network namespace of sov-net's bridges and taps (empty: this one)"},
    {"compute", "tap_wait", SOV_CONF_DURATION, offsetof(ComputeConfig, tap_wait_ms), 0, 600000,
     "60s", "how long a server waits for sov-net to make its taps before starting without"},
    SOV_HTTP_LIMIT_FIELDS(ComputeConfig, http),
};

static const SovDaemonSpec daemon_spec = {
    "sov-compute",           "sov-compute configuration",     conf_fields,
    ELEMENTSOF(conf_fields), offsetof(ComputeConfig, listen), offsetof(ComputeConfig, log_level),
    sizeof(ComputeConfig)};

static const char *config_path;

static void on_hup(void *ud)
{
    sov_daemon_reload_log_level(&daemon_spec, config_path);
}

static void on_term(int sig, void *ud)
{
    Compute *c = ud;
    log_info("stopping (signal %d); guests keep running", sig);
    agent_stop(c);
    /* in-flight agent API requests (the long poll) are abandoned, not awaited */
    uv_stop(c->loop);
}

static void probed(Compute *c)
{
    agent_start(c);
}

int main(int argc, char **argv)
{
    static Compute c;
    SovDaemonArgs args;
    char host[256];
    int port, lvl, r, fd = -1;

    r = sov_daemon_load(argc, argv, &daemon_spec, &c.cfg, &args, &lvl, host, sizeof(host), &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (sov_parse_http_url(c.cfg.api_url, c.api_host, sizeof(c.api_host), &c.api_port) < 0) {
        fprintf(stderr, "sov-compute: [compute] api_url must be http://HOST:PORT\n");
        return 2;
    }
    if (strcmp(c.cfg.accel, "auto") != 0 && strcmp(c.cfg.accel, "kvm") != 0 &&
        strcmp(c.cfg.accel, "tcg") != 0) {
        fprintf(stderr, "sov-compute: [compute] accel must be auto, kvm or tcg\n");
        return 2;
    }
    if (c.cfg.host[0]) {
        size_t hl = strnlen(c.cfg.host, sizeof(c.host) - 1);
        memcpy(c.host, c.cfg.host, hl);
        c.host[hl] = '\0';
    } else if (gethostname(c.host, sizeof(c.host)) < 0)
        snprintf(c.host, sizeof(c.host), "localhost");
    c.host[sizeof(c.host) - 1] = '\0';
    if (!c.host[0] || !sov_name_ok(c.host) || !sov_name_ok(c.cfg.zone) ||
        !sov_name_ok(c.cfg.netns)) {
        fprintf(stderr, "sov-compute: host and zone names are letters, digits, '-', '_', '.'\n");
        return 2;
    }
    config_path = args.config;
    if (args.check_config) {
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("compute", (SovLogLevel)lvl, stderr);
    c.vcpus = c.cfg.vcpus ? c.cfg.vcpus : (int64_t)sov_cpu_count();
    if (c.cfg.ram_mb_)
        c.ram_mb = (int64_t)c.cfg.ram_mb_;
    else {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        c.ram_mb = pages > 0 && psize > 0 ? (int64_t)pages * psize / (1024 * 1024) : 1024;
    }
    char path[SOV_CONF_STR_MAX + 16];
    const char *sub[] = {"", "/servers", "/images"};
    for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
        snprintf(path, sizeof(path), "%s%s", c.cfg.state_dir, sub[i]);
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            log_error_errno(-errno, "cannot create %s", path);
            return 1;
        }
    }
    c.loop = uv_default_loop();
    c.m_accel_kvm = sov_metrics_gauge("sov_compute_accel", "accelerator in use", "mode=\"kvm\"");
    c.m_accel_tcg = sov_metrics_gauge("sov_compute_accel", "accelerator in use", "mode=\"tcg\"");
    c.m_servers = sov_metrics_gauge("sov_compute_servers", "servers assigned to this host", "");
    c.m_running = sov_metrics_gauge("sov_compute_qemu_running", "QEMU processes alive", "");
    sov_http_limits_from_conf(&c.cfg.http, &c.limits);
    if ((r = sov_listen_tcp(host, port, false, &fd, &port)) < 0) {
        log_error_errno(r, "cannot listen on %s", c.cfg.listen);
        return 1;
    }
    c.router = sov_router_new();
    if (!c.router)
        return 1;
    sov_router_add_ops(c.router);
    SovHttpServerConfig hc = {.limits = c.limits, .router = c.router, .svc = "compute"};
    c.http = sov_http_server_new(c.loop, &hc);
    if (!c.http || sov_http_server_listen_fd(c.http, fd) < 0) {
        log_error("cannot start the HTTP listener");
        return 1;
    }
    if (args.pidfile && (r = sov_pidfile_write(args.pidfile)) < 0) {
        log_error_errno(r, "cannot write pid file %s", args.pidfile);
        return 1;
    }
    SovSignals *sig = sov_signals_install(c.loop, on_term, on_hup, &c);
    host_init(&c);
    if ((r = probe_accel(&c, probed)) < 0) {
        log_error_errno(r, "cannot probe the accelerator");
        return 1;
    }
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    const char *kv[] = {"host", host,  "port",        portbuf,     "compute_host",
                        c.host, "api", c.cfg.api_url, "state_dir", c.cfg.state_dir,
                        NULL};
    if (sov_daemon_announce(&args, port, kv) < 0)
        return 1;
    uv_run(c.loop, UV_RUN_DEFAULT);
    sov_signals_close(sig);
    for (Server *s = c.servers, *n; s; s = n) {
        n = s->next;
        server_free(s);
    }
    if (args.pidfile)
        unlink(args.pidfile);
    log_info("stopped");
    /* the loop still holds abandoned client requests and the listener: exit without closing */
    return 0;
}
