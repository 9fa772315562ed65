/* SPDX-License-Identifier: Apache-2.0 */
/* Live migration between two sov-compute agents, coordinated through sov-api's documents.
 *
 * sov-api marks the server MIGRATING with _migrate_to = the target host, and lists it in the
 * target's watch too. The target (s->incoming) prepares the server as usual, starts QEMU paused
 * with `-incoming tcp:ADDR:PORT`, exports its fresh root overlay over NBD (nbd-server-start +
 * block-export-add) unless the root is a volume, and reports _migration {host, uri, nbd}.
 * The source then mirrors its root overlay into that export (blockdev-mirror, sync=top, since
 * both overlays sit on the same image; write-blocking, so every write after READY reaches both),
 * runs `migrate` once the mirror is READY, completes the mirror once the migration has (the
 * source is stopped; block-job-cancel on a ready mirror finishes without a pivot) and cuts over
 * by reporting the target as the server's host. The target, seeing itself as host, stops its
 * NBD server and resumes the guest. Volumes are shared over NBD (both QEMUs open the same
 * sov-block export; the incoming one stays inactive until it resumes), and the target builds
 * them on the slots the source reported (_vol_slots) so the device trees match. A failure on
 * either side is reported as _migration {failed}; sov-api then drops _migrate_to, the source
 * keeps running and the target discards its copy. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "compute.h"
#include "sov/log.h"

#define MIG_DEADLINE_MS    (10 * 60 * 1000)
#define MIG_TARGET_WAIT_MS (3 * 60 * 1000)

enum {
    SRC_IDLE,
    SRC_BUSY,        /* a QMP step in flight */
    SRC_MIRRORING,   /* waiting for BLOCK_JOB_READY */
    SRC_MIGRATING,   /* waiting for MIGRATION completed */
    SRC_FINISHING,   /* waiting for the mirror to finish */
    SRC_WAIT_TARGET, /* all sent; waiting for the target to say it loaded the guest */
    SRC_CUTOVER,     /* reported the target as host */
};

enum {
    TGT_IDLE,
    TGT_BUSY,
    TGT_READY, /* listening; reported */
};

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void log_mig(const Server *s, int level, const char *what, const char *detail)
{
    const char *kv[] = {"server", s->id, "detail", detail ? detail : "", NULL};
    sov_logv_kv(level, NULL, 0, what, kv);
}

static int free_port_on(const char *host)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(sa);
    int port = -EADDRNOTAVAIL;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &l) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

bool mig_is_target(const Compute *c, const json_t *doc)
{
    const char *host = jstr(doc, "OS-EXT-SRV-ATTR:host");
    return strcmp(host, c->host) != 0 && strcmp(jstr(doc, "_migrate_to"), c->host) == 0;
}

void mig_reset(Server *s)
{
    s->mig_stage = 0;
    s->mig_loaded = false;
    s->mig_nbd = false;
    s->mig_deadline_ms = 0;
}

/* ---- target ---- */

int mig_spawn_args(Server *s, Argv *v)
{
    if (!s->incoming)
        return 0;
    const char *h = s->c->cfg.migrate_host;
    int port = free_port_on(h);
    if (port < 0)
        return port;
    s->mig_port = port;
    argv_add(v, "-S");
    argv_add(v, "-incoming");
    argv_addf(v, "tcp:%s:%d", h, port);
    return 0;
}

static void target_fail(Server *s, const char *why)
{
    log_mig(s, SOV_LOG_WARN, "migration target failed", why);
    snprintf(s->mig_failed, sizeof(s->mig_failed), "target %s: %s", s->c->host, why);
    s->mig_stage = TGT_IDLE;
    agent_report(s);
}

static void exported(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err) {
        target_fail(s, err);
        return;
    }
    s->mig_stage = TGT_READY;
    log_mig(s, SOV_LOG_INFO, "migration target ready", s->mig_nbd ? "root over NBD" : "shared");
    agent_report(s);
}

static void nbd_started(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err) {
        target_fail(s, err);
        return;
    }
    json_t *a = json_pack("{s:s,s:s,s:s,s:b,s:s}", "type", "nbd", "id", "mig-root", "node-name",
                          "root", "writable", 1, "name", "root");
    if (qmp_execute(q, "block-export-add", a, exported, s) < 0)
        target_fail(s, "QMP is gone");
}

static void target_step(Server *s)
{
    if (s->mig_stage != TGT_IDLE || s->mig_failed[0] || !qmp_ready(s->qmp) || s->mig_port <= 0)
        return;
    s->mig_stage = TGT_BUSY;
    /* MIGRATION events here too: "completed" is what the source waits for */
    qmp_execute(s->qmp, "migrate-set-capabilities",
                json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "events", "state", 1),
                NULL, NULL);
    if (vol_boots_from_volume(s)) { /* the root is shared: nothing to receive but memory */
        exported(s->qmp, NULL, NULL, s);
        return;
    }
    int port = free_port_on(s->c->cfg.migrate_host);
    if (port < 0) {
        target_fail(s, "no free port for the NBD server");
        return;
    }
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    s->mig_nbd_port = port;
    s->mig_nbd = true;
    json_t *a = json_pack("{s:{s:s,s:{s:s,s:s}}}", "addr", "type", "inet", "data", "host",
                          s->c->cfg.migrate_host, "port", ps);
    if (qmp_execute(s->qmp, "nbd-server-start", a, nbd_started, s) < 0)
        target_fail(s, "QMP is gone");
}

static void resumed(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err)
        log_mig(s, SOV_LOG_WARN, "cannot resume the migrated guest", err);
    else
        log_mig(s, SOV_LOG_INFO, "migrated guest resumed here", NULL);
    qmp_command(q, "query-status");
}

/* The target became the host: stop serving the disk and run the guest. */
void mig_commit(Server *s)
{
    s->incoming = false;
    s->mig_stage = 0;
    s->mig_loaded = false;
    if (!qmp_ready(s->qmp))
        return; /* a later tick: qmp-less guests cannot resume */
    if (s->mig_nbd)
        qmp_execute(s->qmp, "nbd-server-stop", NULL, NULL, NULL);
    s->mig_nbd = false;
    qmp_execute(s->qmp, "cont", NULL, resumed, s);
}

/* ---- source ---- */

/* Undoes what the source started: the migration, the mirror (its target node goes once the
 * job has: BLOCK_JOB_CANCELLED), and a guest stopped at the end runs again. */
static void source_undo(Server *s)
{
    if (!qmp_ready(s->qmp))
        return;
    qmp_execute(s->qmp, "migrate_cancel", NULL, NULL, NULL);
    qmp_execute(s->qmp, "block-job-cancel",
                json_pack("{s:s,s:b}", "device", "mig-mirror", "force", 1), NULL, NULL);
    qmp_execute(s->qmp, "blockdev-del", json_pack("{s:s}", "node-name", "mig-target"), NULL, NULL);
    qmp_execute(s->qmp, "cont", NULL, NULL, NULL);
}

static void source_fail(Server *s, const char *why)
{
    log_mig(s, SOV_LOG_WARN, "live migration failed; the guest stays here", why);
    snprintf(s->mig_failed, sizeof(s->mig_failed), "source %s: %s", s->c->host, why);
    source_undo(s);
    s->mig_stage = SRC_IDLE;
    agent_report(s);
}

static void cut_over(Server *s);

/* "tcp:A.B.C.D:PORT" with a real IPv4 address and port, the only URI the source follows */
static bool tcp_uri_ok(const char *uri)
{
    char host[INET_ADDRSTRLEN + 1];
    int port = 0, n = 0;
    struct in_addr a;
    return strncmp(uri, "tcp:", 4) == 0 && strlen(uri) < 32 &&
           sscanf(uri + 4, "%15[0-9.]:%d%n", host, &port, &n) == 2 &&
           (size_t)n == strlen(uri + 4) && inet_pton(AF_INET, host, &a) == 1 && port > 0 &&
           port < 65536;
}

static void step_cb(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err)
        source_fail(s, err);
}

static void start_migrate(Server *s)
{
    json_t *m = json_object_get(s->doc, "_migration");
    s->mig_stage = SRC_MIGRATING;
    log_mig(s, SOV_LOG_INFO, "migrating memory", jstr(m, "uri"));
    if (qmp_execute(s->qmp, "migrate", json_pack("{s:s}", "uri", jstr(m, "uri")), step_cb, s) < 0)
        source_fail(s, "QMP is gone");
}

static void mirror_started(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err)
        source_fail(s, err);
}

static void target_opened(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    if (err) {
        source_fail(s, err);
        return;
    }
    log_mig(s, SOV_LOG_INFO, "mirroring the root disk to the target", NULL);
    json_t *a = json_pack("{s:s,s:s,s:s,s:s,s:s}", "job-id", "mig-mirror", "device", "root",
                          "target", "mig-target", "sync", "top", "copy-mode", "write-blocking");
    s->mig_stage = SRC_MIRRORING; /* BLOCK_JOB_READY may come before the command's answer */
    if (qmp_execute(q, "blockdev-mirror", a, mirror_started, s) < 0)
        source_fail(s, "QMP is gone");
}

static void source_step(Server *s)
{
    json_t *m = json_object_get(s->doc, "_migration");
    const char *uri = jstr(m, "uri");
    uint64_t now = compute_now_ms();
    if (!s->mig_deadline_ms)
        s->mig_deadline_ms = now + MIG_TARGET_WAIT_MS;
    if (s->mig_stage == SRC_CUTOVER || s->mig_failed[0])
        return;
    if (s->mig_stage == SRC_WAIT_TARGET) {
        if (json_is_true(json_object_get(m, "loaded")))
            cut_over(s);
        else if (now >= s->mig_deadline_ms)
            source_fail(s, "the target did not confirm it loaded the guest");
        return;
    }
    if (now >= s->mig_deadline_ms) {
        source_fail(s, s->mig_stage == SRC_IDLE ? "the target did not get ready in time"
                                                : "the migration did not finish in time");
        return;
    }
    if (s->mig_stage != SRC_IDLE || !*uri || !qmp_ready(s->qmp) || !s->qmp_running)
        return;
    json_t *nbdv = json_object_get(m, "nbd");
    struct in_addr na;
    json_int_t np = json_integer_value(json_object_get(nbdv, "port"));
    if (!tcp_uri_ok(uri) ||
        (json_is_object(nbdv) &&
         (inet_pton(AF_INET, jstr(nbdv, "host"), &na) != 1 || np <= 0 || np >= 65536))) {
        source_fail(s, "the target's addresses are not tcp:IPv4:port");
        return;
    }
    s->mig_stage = SRC_BUSY;
    s->mig_deadline_ms = now + MIG_DEADLINE_MS;
    qmp_execute(s->qmp, "migrate-set-capabilities",
                json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "events", "state", 1),
                NULL, NULL);
    json_t *nbd = json_object_get(m, "nbd");
    if (!json_is_object(nbd) || vol_boots_from_volume(s)) {
        start_migrate(s);
        return;
    }
    char port[24];
    snprintf(port, sizeof(port), "%lld",
             (long long)json_integer_value(json_object_get(nbd, "port")));
    json_t *a = json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:s}", "driver", "nbd", "node-name",
                          "mig-target", "server", "type", "inet", "host", jstr(nbd, "host"), "port",
                          port, "export", "root");
    /* what an earlier attempt may have left (an error when there is none) */
    qmp_execute(s->qmp, "blockdev-del", json_pack("{s:s}", "node-name", "mig-target"), NULL, NULL);
    if (qmp_execute(s->qmp, "blockdev-add", a, target_opened, s) < 0)
        source_fail(s, "QMP is gone");
}

static void migrate_stats(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Server *s = ud;
    char d[96];
    snprintf(
        d, sizeof(d), "total %lld ms, downtime %lld ms, %lld bytes of RAM",
        (long long)json_integer_value(json_object_get(ret, "total-time")),
        (long long)json_integer_value(json_object_get(ret, "downtime")),
        (long long)json_integer_value(json_object_get(json_object_get(ret, "ram"), "transferred")));
    if (!err)
        log_mig(s, SOV_LOG_INFO, "migration figures", d);
}

/* Memory and disk are across: the guest is stopped here; hand it over once the target says it
 * loaded the state (source_step), or take it back if the target fails. */
static void migrated(Server *s)
{
    qmp_execute(s->qmp, "query-migrate", NULL, migrate_stats, s);
    s->mig_stage = SRC_WAIT_TARGET;
    s->mig_deadline_ms = compute_now_ms() + MIG_TARGET_WAIT_MS;
}

static void cut_over(Server *s)
{
    s->mig_stage = SRC_CUTOVER;
    log_mig(s, SOV_LOG_INFO, "migration complete; handing the server to the target",
            jstr(s->doc, "_migrate_to"));
    agent_report(s);
}

void mig_event(Server *s, const char *event, json_t *data)
{
    if (s->incoming) { /* the target: the state is loaded; the source may hand over */
        const char *st = jstr(data, "status");
        if (strcmp(event, "MIGRATION") == 0 && strcmp(st, "completed") == 0 && !s->mig_loaded) {
            s->mig_loaded = true;
            log_mig(s, SOV_LOG_INFO, "migrated guest loaded here", NULL);
            agent_report(s);
        } else if (strcmp(event, "MIGRATION") == 0 && strcmp(st, "failed") == 0) {
            snprintf(s->mig_failed, sizeof(s->mig_failed), "target %.63s: loading failed",
                     s->c->host);
            agent_report(s);
        }
        return;
    }
    const char *dev = jstr(data, "device");
    if (strcmp(event, "BLOCK_JOB_READY") == 0 && strcmp(dev, "mig-mirror") == 0 &&
        s->mig_stage == SRC_MIRRORING) {
        start_migrate(s);
    } else if (strcmp(event, "MIGRATION") == 0 && s->mig_stage == SRC_MIGRATING) {
        const char *st = jstr(data, "status");
        if (strcmp(st, "completed") == 0) {
            json_t *nbd = json_object_get(json_object_get(s->doc, "_migration"), "nbd");
            if (json_is_object(nbd) && !vol_boots_from_volume(s)) {
                s->mig_stage = SRC_FINISHING;
                if (qmp_execute(s->qmp, "block-job-cancel",
                                json_pack("{s:s}", "device", "mig-mirror"), step_cb, s) < 0)
                    source_fail(s, "QMP is gone");
            } else {
                migrated(s);
            }
        } else if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
            source_fail(s, "QEMU reported the migration failed");
        }
    } else if ((strcmp(event, "BLOCK_JOB_COMPLETED") == 0 ||
                strcmp(event, "BLOCK_JOB_CANCELLED") == 0) &&
               strcmp(dev, "mig-mirror") == 0 && s->mig_stage == SRC_FINISHING) {
        const char *e = jstr(data, "error");
        if (*e)
            source_fail(s, e);
        else
            migrated(s);
    }
}

/* ---- both ---- */

void mig_step(Server *s)
{
    if (s->phase != PHASE_RUNNING || !s->doc)
        return;
    if (s->incoming) {
        target_step(s);
        return;
    }
    if (!*jstr(s->doc, "_migrate_to")) {
        if (s->mig_stage || s->mig_failed[0]) { /* over (or given up): forget it */
            if (s->mig_stage > SRC_IDLE && s->mig_stage < SRC_CUTOVER && !s->mig_failed[0]) {
                log_mig(s, SOV_LOG_WARN, "live migration abandoned; the guest stays here", NULL);
                source_undo(s); /* the target gave up: take the guest back */
            }
            s->mig_failed[0] = '\0';
            mig_reset(s);
        }
        return;
    }
    source_step(s);
}

json_t *mig_report(Server *s)
{
    if (s->incoming && s->phase == PHASE_ERROR && !s->mig_failed[0])
        snprintf(s->mig_failed, sizeof(s->mig_failed), "target %.63s: %.180s", s->c->host,
                 s->fault);
    if (s->mig_failed[0]) {
        json_t *b = json_pack("{s:{s:s}}", "_migration", "failed", s->mig_failed);
        if (!s->incoming)
            json_object_set_new(b, "status", json_string("ACTIVE"));
        return b;
    }
    if (s->incoming) {
        if (s->mig_stage != TGT_READY)
            return json_object();
        char uri[300];
        snprintf(uri, sizeof(uri), "tcp:%s:%d", s->c->cfg.migrate_host, s->mig_port);
        json_t *m = json_pack("{s:s,s:s}", "host", s->c->host, "uri", uri);
        if (s->mig_nbd)
            json_object_set_new(
                m, "nbd",
                json_pack("{s:s,s:i}", "host", s->c->cfg.migrate_host, "port", s->mig_nbd_port));
        if (s->mig_loaded)
            json_object_set_new(m, "loaded", json_true());
        return json_pack("{s:o}", "_migration", m);
    }
    if (s->mig_stage == SRC_CUTOVER) {
        const char *to = jstr(s->doc, "_migrate_to");
        return json_pack("{s:s,s:s,s:n}", "OS-EXT-SRV-ATTR:host", to,
                         "OS-EXT-SRV-ATTR:hypervisor_hostname", to, "_migration");
    }
    return NULL;
}

bool mig_needs_report(const Server *s)
{
    if (s->incoming && s->phase == PHASE_ERROR)
        return true;
    if (s->mig_failed[0])
        return !json_is_object(json_object_get(s->doc, "_migration")) ||
               !*jstr(json_object_get(s->doc, "_migration"), "failed");
    if (!s->incoming)
        return false;
    json_t *m = json_object_get(s->doc, "_migration");
    return s->mig_stage == TGT_READY &&
           (strcmp(jstr(m, "host"), s->c->host) != 0 ||
            s->mig_loaded != json_is_true(json_object_get(m, "loaded")));
}
