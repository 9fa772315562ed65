/* SPDX-License-Identifier: Apache-2.0 */
/* Volumes of a server, served by sov-block over NBD: the root disk of a server booted from a
 * volume, and data volumes, cold-plugged on QEMU's command line and hot-plugged or unplugged
 * through QMP while it runs (blockdev-add + device_add; device_del, DEVICE_DELETED, then
 * blockdev-del). Each data volume sits behind its own pcie-root-port (slot N: bus rpN, node
 * volN, device vdevN) so the guest sees it come and go; its virtio serial is the first 20
 * characters of the volume id, which guests show in /sys/block/vdX/serial. The desired set is
 * the server document's _bdm entries sov-api gave an "export" (an attached, ready volume). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "sov/log.h"

#define UNPLUG_WAIT_MS 30000
#define PLUG_RETRY_MS  5000

typedef struct Target {
    const char *id;
    json_t *blockdev; /* the NBD node's arguments without node-name (owned) */
    bool qcow2;
} Target;

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static bool is_root(const json_t *b)
{
    json_t *bi = json_object_get(b, "boot_index");
    return json_is_integer(bi) && json_integer_value(bi) == 0 &&
           strcmp(jstr(b, "destination_type"), "volume") == 0;
}

bool vol_boots_from_volume(const Server *s)
{
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(s->doc, "_bdm"), i, b) if (is_root(b)) return true;
    return false;
}

/* Where the mapping's volume is served: sov-block's Unix socket when this host can open it,
 * else its TCP address. NULL while the volume is not ready. */
static json_t *nbd_args(const json_t *b, bool *qcow2)
{
    json_t *e = json_object_get(b, "export");
    const char *unx = jstr(e, "uri_unix"), *tcp = jstr(e, "uri_tcp");
    char name[128], path[108], host[64];
    int port = 0;
    *qcow2 = strcmp(jstr(e, "format"), "qcow2") == 0;
    /* nbd+unix:///NAME?socket=PATH */
    const char *q = strstr(unx, "?socket=");
    if (strncmp(unx, "nbd+unix:///", 12) == 0 && q && (size_t)(q - unx - 12) < sizeof(name) &&
        strlen(q + 8) < sizeof(path)) {
        snprintf(name, sizeof(name), "%.*s", (int)(q - unx - 12), unx + 12);
        snprintf(path, sizeof(path), "%s", q + 8);
        if (access(path, W_OK) == 0)
            return json_pack("{s:s,s:{s:s,s:s},s:s,s:i}", "driver", "nbd", "server", "type", "unix",
                             "path", path, "export", name, "reconnect-delay", 30);
    }
    /* nbd://HOST:PORT/NAME */
    if (strncmp(tcp, "nbd://", 6) == 0 &&
        sscanf(tcp + 6, "%63[^:/]:%d/%127s", host, &port, name) == 3 && port > 0 && port < 65536) {
        char ps[8];
        snprintf(ps, sizeof(ps), "%d", port);
        return json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:i}", "driver", "nbd", "server", "type", "inet",
                         "host", host, "port", ps, "export", name, "reconnect-delay", 30);
    }
    return NULL;
}

static bool id_ok(const char *id)
{
    size_t l = strlen(id);
    return l > 0 && l <= 64 && strspn(id, "0123456789abcdef-") == l;
}

/* The data volumes the document has attached, up to VOL_SLOTS; blockdev is NULL while a
 * volume's export is not known (not ready, or sov-block away): such a volume is not plugged
 * yet, but not unplugged either. */
static size_t wanted(const Server *s, Target *out)
{
    size_t i, n = 0;
    json_t *b;
    json_array_foreach(json_object_get(s->doc, "_bdm"), i, b)
    {
        const char *id = jstr(b, "volume_id");
        bool q = false;
        if (is_root(b) || !id_ok(id) || n >= VOL_SLOTS ||
            !json_is_true(json_object_get(b, "attached")))
            continue;
        json_t *a = nbd_args(b, &q);
        out[n++] = (Target){.id = id, .blockdev = a, .qcow2 = q};
    }
    return n;
}

static void targets_free(Target *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(t[i].blockdev);
}

static void save(Server *s)
{
    char path[600], buf[VOL_SLOTS * 80] = "";
    size_t k = 0;
    for (int i = 1; i <= VOL_SLOTS; i++)
        if (s->vol[i][0])
            k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%d %s\n", i, s->vol[i]);
    snprintf(path, sizeof(path), "%s/volumes", s->dir);
    int r = sov_write_file_atomic(path, buf, k);
    if (r < 0)
        log_warn_errno(r, "cannot write %s", path);
}

void vol_load(Server *s)
{
    char path[600], line[128];
    snprintf(path, sizeof(path), "%s/volumes", s->dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    int slot;
    char id[65];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "%d %64s", &slot, id) == 2 && slot >= 1 && slot <= VOL_SLOTS)
            snprintf(s->vol[slot], sizeof(s->vol[slot]), "%s", id);
    fclose(f);
}

void vol_clear(Server *s)
{
    memset(s->vol, 0, sizeof(s->vol));
    s->vol_busy = false;
    s->vol_slot = 0;
    s->vol_deadline_ms = s->vol_retry_ms = 0;
}

static int slot_of(const Server *s, const char *id)
{
    for (int i = 1; i <= VOL_SLOTS; i++)
        if (strcmp(s->vol[i], id) == 0)
            return i;
    return 0;
}

static char *blockdev_json(json_t *args, const char *node)
{
    json_t *o = json_deep_copy(args);
    json_object_set_new(o, "node-name", json_string(node));
    char *js = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return js;
}

static void add_blockdev(Argv *a, json_t *args, const char *node)
{
    char *js = blockdev_json(args, node);
    argv_add(a, "-blockdev");
    argv_add(a, js ? js : "");
    a->oom = a->oom || !js;
    free(js);
}

static void add_format(Argv *a, const char *node, const char *file)
{
    argv_add(a, "-blockdev");
    argv_addf(a, "{\"driver\":\"qcow2\",\"node-name\":\"%s\",\"file\":\"%s\"}", node, file);
}

int vol_cmdline(Server *s, Argv *a, char *err, size_t errn)
{
    for (int i = 1; i <= VOL_SLOTS; i++) {
        argv_add(a, "-device");
        argv_addf(a, "pcie-root-port,id=rp%d,chassis=%d,slot=%d", i, i, i);
    }
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(s->doc, "_bdm"), i, b)
    {
        if (!is_root(b))
            continue;
        bool q;
        json_t *nbd = nbd_args(b, &q);
        if (!nbd) {
            snprintf(err, errn, "root volume %s is not ready", jstr(b, "volume_id"));
            return -EAGAIN;
        }
        add_blockdev(a, nbd, q ? "root-nbd" : "root");
        json_decref(nbd);
        if (q)
            add_format(a, "root", "root-nbd");
        argv_add(a, "-device");
        argv_add(a, "virtio-blk-pci,drive=root,id=rootdisk,bootindex=0");
    }
    /* an incoming migration takes the source's slots, so both device trees match */
    json_t *slots = json_object_get(s->doc, "_vol_slots");
    if (s->incoming && json_is_object(slots)) {
        const char *k;
        json_t *v;
        memset(s->vol, 0, sizeof(s->vol));
        json_object_foreach(slots, k, v)
        {
            json_int_t n = json_integer_value(v);
            if (n >= 1 && n <= VOL_SLOTS && strlen(k) < sizeof(s->vol[0]))
                snprintf(s->vol[n], sizeof(s->vol[n]), "%s", k);
        }
    }
    /* slots kept from the last run where the volume is still wanted, the lowest free else */
    Target t[VOL_SLOTS];
    size_t n = wanted(s, t);
    char keep[VOL_SLOTS + 1][65];
    memset(keep, 0, sizeof(keep));
    for (size_t k = 0; k < n; k++) {
        int slot = slot_of(s, t[k].id);
        if (slot && t[k].blockdev)
            snprintf(keep[slot], sizeof(keep[slot]), "%s", t[k].id);
    }
    memcpy(s->vol, keep, sizeof(keep));
    for (size_t k = 0; k < n; k++) {
        if (!t[k].blockdev)
            continue; /* plugged once its export is known */
        int slot = slot_of(s, t[k].id);
        for (int j = 1; !slot && j <= VOL_SLOTS; j++)
            if (!s->vol[j][0]) {
                slot = j;
                snprintf(s->vol[j], sizeof(s->vol[j]), "%s", t[k].id);
            }
        char node[16], file[16];
        snprintf(node, sizeof(node), "vol%d", slot);
        snprintf(file, sizeof(file), "vol%d-nbd", slot);
        add_blockdev(a, t[k].blockdev, t[k].qcow2 ? file : node);
        if (t[k].qcow2)
            add_format(a, node, file);
        argv_add(a, "-device");
        argv_addf(a, "virtio-blk-pci,drive=%s,id=vdev%d,bus=rp%d,serial=%.20s", node, slot, slot,
                  t[k].id);
    }
    targets_free(t, n);
    save(s);
    return 0;
}

/* ---- hot plug ---- */

typedef struct Op {
    Server *s;
    int slot;
    char id[65];
    bool qcow2;
} Op;

static void op_fail(Server *s, const char *what, const char *id, const char *why)
{
    const char *kv[] = {"server", s->id, "volume", id, "error", why, NULL};
    sov_logv_kv(SOV_LOG_WARN, NULL, 0, what, kv);
    s->vol_busy = false;
    s->vol_retry_ms = compute_now_ms() + PLUG_RETRY_MS;
}

static void plugged(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Op *op = ud;
    Server *s = op->s;
    if (err) {
        op_fail(s, "volume plug failed", op->id, err);
        /* take the node back out so the slot can be reused */
        char node[16];
        snprintf(node, sizeof(node), "vol%d", op->slot);
        qmp_execute(q, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL, NULL);
        if (op->qcow2) {
            snprintf(node, sizeof(node), "vol%d-nbd", op->slot);
            qmp_execute(q, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL, NULL);
        }
    } else {
        snprintf(s->vol[op->slot], sizeof(s->vol[op->slot]), "%s", op->id);
        save(s);
        s->vol_busy = false;
        const char *kv[] = {"server", s->id, "volume", op->id, NULL};
        sov_logv_kv(SOV_LOG_INFO, NULL, 0, "volume attached", kv);
        vol_converge(s);
    }
    free(op);
}

static void node_added(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Op *op = ud;
    if (err) {
        op_fail(op->s, "volume open failed", op->id, err);
        free(op);
        return;
    }
    char node[16], dev[16], bus[16];
    snprintf(node, sizeof(node), "vol%d", op->slot);
    snprintf(dev, sizeof(dev), "vdev%d", op->slot);
    snprintf(bus, sizeof(bus), "rp%d", op->slot);
    char serial[21];
    snprintf(serial, sizeof(serial), "%.20s", op->id);
    json_t *args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "virtio-blk-pci", "id", dev,
                             "drive", node, "bus", bus, "serial", serial);
    if (qmp_execute(q, "device_add", args, plugged, op) < 0) {
        op_fail(op->s, "volume plug failed", op->id, "QMP is gone");
        free(op);
    }
}

static void format_added(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Op *op = ud;
    if (err) {
        op_fail(op->s, "volume open failed", op->id, err);
        free(op);
        return;
    }
    char node[16], file[16];
    snprintf(node, sizeof(node), "vol%d", op->slot);
    snprintf(file, sizeof(file), "vol%d-nbd", op->slot);
    if (qmp_execute(q, "blockdev-add",
                    json_pack("{s:s,s:s,s:s}", "driver", "qcow2", "node-name", node, "file", file),
                    node_added, op) < 0) {
        op_fail(op->s, "volume plug failed", op->id, "QMP is gone");
        free(op);
    }
}

static void plug(Server *s, const Target *t, int slot)
{
    Op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->s = s;
    op->slot = slot;
    op->qcow2 = t->qcow2;
    snprintf(op->id, sizeof(op->id), "%s", t->id);
    char node[16];
    snprintf(node, sizeof(node), t->qcow2 ? "vol%d-nbd" : "vol%d", slot);
    json_t *args = json_deep_copy(t->blockdev);
    json_object_set_new(args, "node-name", json_string(node));
    s->vol_busy = true;
    if (qmp_execute(s->qmp, "blockdev-add", args, t->qcow2 ? format_added : node_added, op) < 0) {
        s->vol_busy = false;
        free(op);
    }
}

static void node_deleted(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Op *op = ud;
    Server *s = op->s;
    if (err && !strstr(err, "find node")) { /* still there: keep the slot, try again later */
        log_warn("server %s: blockdev-del vol%d: %s", s->id, op->slot, err);
        s->vol_busy = false;
        s->vol_slot = 0;
        s->vol_retry_ms = compute_now_ms() + PLUG_RETRY_MS;
        free(op);
        return;
    }
    const char *kv[] = {"server", s->id, "volume", s->vol[op->slot], NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "volume detached", kv);
    s->vol[op->slot][0] = '\0';
    save(s);
    s->vol_busy = false;
    s->vol_slot = 0;
    free(op);
    vol_converge(s);
}

/* The guest let go of slot's device: drop its block nodes. */
static void release_nodes(Server *s, int slot)
{
    Op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->s = s;
    op->slot = slot;
    char node[16], file[16];
    snprintf(node, sizeof(node), "vol%d", slot);
    snprintf(file, sizeof(file), "vol%d-nbd", slot);
    /* a qcow2 layer first (absent for raw volumes: the error is ignored), then the NBD node */
    qmp_execute(s->qmp, "blockdev-del", json_pack("{s:s}", "node-name", node), NULL, NULL);
    if (qmp_execute(s->qmp, "blockdev-del", json_pack("{s:s}", "node-name", file), node_deleted,
                    op) < 0) {
        s->vol_busy = false;
        free(op);
    }
}

static void unplug_asked(Qmp *q, json_t *ret, const char *err, void *ud)
{
    Op *op = ud;
    Server *s = op->s;
    if (err && strstr(err, "not found")) {
        int slot = op->slot;
        free(op);
        release_nodes(s, slot); /* already gone */
        return;
    }
    if (err)
        log_warn("server %s: device_del vdev%d: %s", s->id, op->slot, err);
    /* DEVICE_DELETED ends the wait; without it, the deadline asks again */
    free(op);
}

static void unplug(Server *s, int slot)
{
    Op *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->s = s;
    op->slot = slot;
    char dev[16];
    snprintf(dev, sizeof(dev), "vdev%d", slot);
    s->vol_busy = true;
    s->vol_slot = slot;
    s->vol_deadline_ms = compute_now_ms() + UNPLUG_WAIT_MS;
    const char *kv[] = {"server", s->id, "volume", s->vol[slot], NULL};
    sov_logv_kv(SOV_LOG_INFO, NULL, 0, "detaching volume (device_del)", kv);
    if (qmp_execute(s->qmp, "device_del", json_pack("{s:s}", "id", dev), unplug_asked, op) < 0) {
        s->vol_busy = false;
        s->vol_slot = 0;
        free(op);
    }
}

void vol_event(Server *s, const char *event, json_t *data)
{
    const char *dev = jstr(data, "device");
    if (strcmp(event, "DEVICE_DELETED") != 0 || strncmp(dev, "vdev", 4) != 0)
        return;
    int slot = atoi(dev + 4);
    if (slot < 1 || slot > VOL_SLOTS || slot != s->vol_slot)
        return;
    s->vol_slot = 0; /* released: no second device_del at the deadline */
    release_nodes(s, slot);
}

void vol_converge(Server *s)
{
    if (s->phase != PHASE_RUNNING || !qmp_ready(s->qmp) || !s->doc)
        return;
    uint64_t now = compute_now_ms();
    if (s->vol_busy) {
        if (s->vol_slot && now >= s->vol_deadline_ms) { /* the guest ignored the request */
            int slot = s->vol_slot;
            log_warn("server %s: the guest has not released vdev%d yet; asking again", s->id, slot);
            s->vol_busy = false;
            unplug(s, slot);
        }
        return;
    }
    if (now < s->vol_retry_ms)
        return; /* a plug or release failed a moment ago */
    Target t[VOL_SLOTS];
    size_t n = wanted(s, t);
    /* unplug first: it frees slots */
    for (int i = 1; i <= VOL_SLOTS; i++) {
        if (!s->vol[i][0])
            continue;
        bool want = false;
        for (size_t k = 0; k < n; k++)
            want = want || strcmp(t[k].id, s->vol[i]) == 0;
        if (!want) {
            unplug(s, i);
            targets_free(t, n);
            return;
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (slot_of(s, t[k].id) || !t[k].blockdev)
            continue;
        int slot = slot_of(s, "");
        if (slot)
            plug(s, &t[k], slot);
        break;
    }
    targets_free(t, n);
}
