/* SPDX-License-Identifier: Apache-2.0 */
/* sov-compute: the per-host agent that turns the servers sov-api assigns to this host into
 * QEMU processes. One loop (the main one) owns everything: the agent API client (agent.c),
 * the QEMU processes and their preparation (qemu.c), the QMP connections (qmp.c), the
 * accelerator probe (probe.c) and the /healthz and /metrics listener (main.c). Blocking work
 * (image copies, qemu-img, the seed ISO) runs in the libuv thread pool.
 *
 * On-disk layout under [compute] state_dir:
 *   images/<image id>          raw copy of a Glance image (the cache overlays are built on)
 *   servers/<server id>/       one per server: disk.qcow2 (overlay), seed.iso (NoCloud),
 *                              qemu.pid, qmp.sock, serial.log, qemu.log, ssh_port, reboot
 *   probe/                     the accelerator probe's initramfs and serial log */
#ifndef SOV_COMPUTE_H
#define SOV_COMPUTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "sov/buf.h"
#include "sov/conf.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/metrics.h"

typedef struct ComputeConfig {
    char listen[SOV_CONF_STR_MAX];
    char log_level[SOV_CONF_STR_MAX];
    char api_url[SOV_CONF_STR_MAX];
    char agent_token[SOV_CONF_STR_MAX];
    char host[SOV_CONF_STR_MAX];
    char zone[SOV_CONF_STR_MAX];
    int64_t vcpus;
    int64_t ram_mb_;
    char state_dir[SOV_CONF_STR_MAX];
    char qemu[SOV_CONF_STR_MAX];
    char qemu_img[SOV_CONF_STR_MAX];
    char accel[SOV_CONF_STR_MAX];
    char kernel[SOV_CONF_STR_MAX];
    uint64_t probe_timeout_ms;
    uint64_t stop_timeout_ms;
    uint64_t poll_ms;
    uint64_t console_max;
    char pci_sysfs[SOV_CONF_STR_MAX];
    char cgroups[SOV_CONF_STR_MAX];
    char cgroup_root[SOV_CONF_STR_MAX];
    char migrate_host[SOV_CONF_STR_MAX];
    char netns[SOV_CONF_STR_MAX];
    bool vpc;
    uint64_t tap_wait_ms;
    SovHttpLimitsConf http;
} ComputeConfig;

typedef enum ServerPhase {
    PHASE_NEW,       /* seen, nothing done yet */
    PHASE_PREPARING, /* thread pool builds the disk and the seed */
    PHASE_STOPPED,   /* prepared, no QEMU */
    PHASE_RUNNING,   /* QEMU process alive */
    PHASE_ERROR,     /* failed; fault set; retried only by a new desired state */
    PHASE_REMOVING,  /* deleted: process gone, files being removed */
    PHASE_GONE,      /* reported gone; freed on the next sweep */
} ServerPhase;

typedef struct Compute Compute;
typedef struct Qmp Qmp;

/* Hot-plug slots: one pcie-root-port per data volume a guest can carry. */
#define VOL_SLOTS 8

/* A command line being built (strings owned; oom set when an allocation failed). */
typedef struct Argv {
    char *v[160];
    int n;
    bool oom;
} Argv;
void argv_add(Argv *a, const char *s);
void argv_addf(Argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void argv_free(Argv *a);

/* One server assigned to this host. Invariants: pid > 0 iff a QEMU process is believed alive;
 * `child` iff we spawned it (libuv reaps it; adopted processes are polled instead); each
 * spawn has its own heap process handle, freed in its close callback; qmp is non-NULL only
 * while pid > 0. */
typedef struct Server {
    Compute *c;
    char id[65];
    char dir[512];
    json_t *doc; /* the latest desired document (owned) */
    ServerPhase phase;
    pid_t pid;
    bool child;
    uint64_t started_ms; /* when we spawned it (0: adopted) */
    bool stop_asked;     /* we asked it to stop (powerdown, quit, kill) */
    Qmp *qmp;
    bool qmp_running;  /* QMP query-status said running */
    bool qmp_answered; /* ... at least once since this process was spawned or adopted */
    int ssh_port;
    int64_t reboot_seen;
    uint64_t stop_deadline_ms; /* powerdown asked; quit after this */
    int stop_stage;            /* 0 powerdown, 1 quit sent, 2 killed */
    bool waiting;              /* prepared, but the root volume or a tap is not ready yet */
    uint64_t tap_wait_since;   /* when the wait for the taps began (0: not waiting) */
    /* the flavor the running QEMU has (file "flavor"), the root disk's size (file "disk_gb");
     * restarting: stopped to come back with another flavor (resize, revert) */
    int64_t run_vcpus, run_ram, disk_gb;
    bool restarting;
    /* live migration (migrate.c): incoming = this host is the target and not yet the host */
    bool incoming, mig_nbd, mig_loaded;
    int mig_stage, mig_port, mig_nbd_port;
    uint64_t mig_deadline_ms;
    char mig_failed[256];
    uint64_t console_off;
    char fault[512];
    /* volumes in the running QEMU by slot (1..VOL_SLOTS; "" free), kept in <dir>/volumes;
     * one plug or unplug in flight at a time */
    char vol[VOL_SLOTS + 1][65];
    bool vol_busy;
    int vol_slot;             /* the slot being unplugged (waits for DEVICE_DELETED) */
    uint64_t vol_deadline_ms; /* unplug: ask again after this */
    uint64_t vol_retry_ms;    /* plug failed: not before this */
    /* reporting: one PUT in flight at a time; `dirty` asks for another */
    bool put_busy, dirty, gone_sent;
    char reported[16]; /* last status reported */
    bool seen;         /* present in the latest watch snapshot */
    struct Server *next;
} Server;

struct Compute {
    ComputeConfig cfg;
    uv_loop_t *loop;
    char api_host[256];
    int api_port;
    char host[64];
    int64_t vcpus, ram_mb;
    /* accelerator */
    bool accel_known;
    char accel[8];
    char accel_reason[256];
    /* agent API */
    uint64_t rev;
    bool registered, watch_busy, stopping;
    unsigned backoff_ms;
    uint64_t heartbeat_ms;
    uv_timer_t heartbeat, watch_retry, tick;
    Server *servers;
    SovHttpServer *http;
    SovRouter *router;
    SovHttpLimits limits;
    SovMetric *m_accel_kvm, *m_accel_tcg, *m_servers, *m_running;
};

/* agent.c */
void agent_start(Compute *c);
void agent_stop(Compute *c);
/* Asks for a report of s's observed state (coalesced). */
void agent_report(Server *s);
uint64_t compute_now_ms(void);

/* probe.c: decides KVM or TCG, then calls done on the loop. */
int probe_accel(Compute *c, void (*done)(Compute *c));

/* qemu.c */
void server_converge(Server *s);
void server_tick(Server *s);
Server *server_new(Compute *c, const char *id);
void server_free(Server *s);
/* The flavor the document wants now: the resize target while one is pending, else its own. */
json_t *server_flavor(const Server *s);
/* The status to report: ACTIVE, SHUTOFF, ERROR, BUILD, or the resize states. */
const char *server_status(const Server *s);
bool server_needs_report(const Server *s);
/* Server dirs on disk that the API no longer knows: stop and remove them. */
void compute_sweep_orphans(Compute *c);
void server_set_error(Server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* volumes.c: the root disk when it is a volume, data volumes over NBD from sov-block. */
/* Whether the server boots from a volume (a mapping with boot_index 0). */
bool vol_boots_from_volume(const Server *s);
/* Appends the root-port, root-volume and data-volume arguments for a fresh QEMU and records the
 * slots; -EAGAIN while the root volume is not ready, other <0 with err. */
int vol_cmdline(Server *s, Argv *a, char *err, size_t errn);
/* Reads the slots a previous agent recorded (adoption). */
void vol_load(Server *s);
/* The QEMU process ended: no volume is plugged any more. */
void vol_clear(Server *s);
/* Running: plugs and unplugs one volume towards the desired set. */
void vol_converge(Server *s);
/* QMP event of s's QEMU. */
void vol_event(Server *s, const char *event, json_t *data);

/* nic.c: VPC NICs, the taps sov-net made for the server's ports. */
#define NIC_MAX 4
typedef struct Nic {
    int fd;
    char mac[18];
} Nic;
/* Opens the taps of s's ports: the count, -EAGAIN while one does not exist, other <0 with
 * err. */
int nic_open_taps(Server *s, Nic *nics, int max, char *err, size_t errn);
void nic_close(Nic *nics, int n);

/* migrate.c: live migration, source and target sides. */
/* Whether doc is a server migrating to this host (not yet its host). */
bool mig_is_target(const Compute *c, const json_t *doc);
/* Target: adds -S and -incoming to a new QEMU's command line. */
int mig_spawn_args(Server *s, Argv *v);
/* Target: the server is ours now; resume it. */
void mig_commit(Server *s);
/* Both: the next step (called on every convergence). */
void mig_step(Server *s);
void mig_event(Server *s, const char *event, json_t *data);
/* The QEMU process ended. */
void mig_reset(Server *s);
/* A report the migration needs instead of the usual one (new reference), or NULL. */
json_t *mig_report(Server *s);
bool mig_needs_report(const Server *s);

/* qmp.c: an asynchronous QMP client on a Unix socket. */
typedef void (*QmpEventCb)(Qmp *q, const char *event, json_t *data, void *ud);
/* A command's outcome: ret (borrowed) on success, or ret NULL and err saying why. */
typedef void (*QmpReplyCb)(Qmp *q, json_t *ret, const char *err, void *ud);
typedef void (*QmpStatusCb)(Qmp *q, bool running, void *ud);
typedef void (*QmpClosedCb)(Qmp *q, void *ud);
Qmp *qmp_connect(uv_loop_t *loop, const char *path, QmpStatusCb on_status, QmpClosedCb on_closed,
                 void *ud);
/* Sends a command without arguments ("query-status", "system_powerdown", "quit", ...). */
int qmp_command(Qmp *q, const char *execute);
bool qmp_ready(const Qmp *q);
/* Sends execute with args (stolen; may be NULL); cb runs once with the reply, or with an error
 * when the connection ends first (never after qmp_close). */
int qmp_execute(Qmp *q, const char *execute, json_t *args, QmpReplyCb cb, void *ud);
/* Events (name and data) go to cb from now on. */
void qmp_on_event(Qmp *q, QmpEventCb cb, void *ud);
/* Closes the connection; no callback runs afterwards. */
void qmp_close(Qmp *q);

#endif
