/* SPDX-License-Identifier: Apache-2.0 */
/* The agent side of sov-api's agent API: registration and heartbeats on a timer, the
 * level-triggered long-poll watch of the servers assigned to this host (errors back off and
 * retry) and the observed-state reports (one PUT in flight per server, coalesced). All
 * requests are asynchronous on the loop. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "host.h"
#include "sov/json.h"
#include "sov/log.h"

#define WATCH_WAIT_S    30
#define BACKOFF_MAX_MS  10000
#define RESP_MAX        (64u << 20)
#define TICK_MS_DEFAULT 1000

typedef struct Call {
    Compute *c;
    Server *s; /* reports */
    int kind;  /* 0 register, 1 watch, 2 report */
    int status;
    SovBuf body;
    char *req_body;
    char auth[SOV_CONF_STR_MAX + 32];
} Call;

uint64_t compute_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_headers(SovHttpClientReq *r, int status, void *ud)
{
    ((Call *)ud)->status = status;
}

static int on_body(SovHttpClientReq *r, const char *p, size_t n, void *ud)
{
    Call *k = ud;
    return sov_buf_append(&k->body, p, n) < 0 ? -EFBIG : 0;
}

static void on_done(SovHttpClientReq *r, int err, void *ud);

static int call(Compute *c, Server *s, int kind, const char *method, const char *target,
                json_t *body, unsigned timeout_ms)
{
    static const SovHttpClientCallbacks cbs = {on_headers, on_body, on_done};
    Call *k = calloc(1, sizeof(*k));
    if (!k) {
        json_decref(body);
        return -ENOMEM;
    }
    k->c = c;
    k->s = s;
    k->kind = kind;
    sov_buf_init(&k->body, RESP_MAX);
    if (body) {
        k->req_body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
    snprintf(k->auth, sizeof(k->auth), "Authorization: Bearer %s", c->cfg.agent_token);
    const char *hdrs[] = {k->auth, "Content-Type: application/json", NULL};
    SovStr b = k->req_body ? (SovStr){k->req_body, strlen(k->req_body)} : SOV_STR_NULL;
    int r = sov_http_client_request(c->loop, c->api_host, c->api_port, method, target, hdrs, b,
                                    timeout_ms, &cbs, k);
    if (r < 0) {
        free(k->req_body);
        sov_buf_release(&k->body);
        free(k);
    }
    return r;
}

/* ---- registration and heartbeat ---- */

static void do_register(Compute *c)
{
    json_t *b = json_pack("{s:s,s:s,s:I,s:I,s:{s:s,s:s}}", "host", c->host, "kind", "compute",
                          "vcpus", (json_int_t)c->vcpus, "ram_mb", (json_int_t)c->ram_mb, "info",
                          "accel", c->accel, "reason", c->accel_reason);
    if (c->cfg.zone[0])
        json_object_set_new(b, "zone", json_string(c->cfg.zone));
    json_object_set_new(b, "gpus", host_gpu_inventory(c));
    int r = call(c, NULL, 0, "POST", "/agent/v1/hosts", b, 10000);
    if (r < 0)
        log_warn_errno(r, "cannot send the heartbeat");
}

static void heartbeat_cb(uv_timer_t *t)
{
    do_register(t->data);
}

static void watch(Compute *c);

static void watch_retry_cb(uv_timer_t *t)
{
    watch(t->data);
}

static void watch(Compute *c)
{
    if (c->stopping || c->watch_busy || !c->registered)
        return;
    char target[512];
    snprintf(target, sizeof(target),
             "/agent/v1/watch?kinds=server&host=%s&since=%" PRIu64 "&wait=%d", c->host, c->rev,
             WATCH_WAIT_S);
    int r = call(c, NULL, 1, "GET", target, NULL, (WATCH_WAIT_S + 15) * 1000);
    if (r < 0) {
        log_warn_errno(r, "cannot start the watch");
        uv_timer_start(&c->watch_retry, watch_retry_cb, 1000, 0);
        return;
    }
    c->watch_busy = true;
}

static void watch_backoff(Compute *c)
{
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 500;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&c->watch_retry, watch_retry_cb, c->backoff_ms, 0);
}

static void apply_snapshot(Compute *c, json_t *doc)
{
    json_t *servers = json_object_get(json_object_get(doc, "resources"), "server");
    c->rev = (uint64_t)json_integer_value(json_object_get(doc, "rev"));
    for (Server *s = c->servers; s; s = s->next)
        s->seen = false;
    size_t i;
    json_t *v;
    json_array_foreach(servers, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        if (!id || !*id || strlen(id) > 64 || strchr(id, '/') || id[0] == '.')
            continue;
        /* a server migrating here is prepared as the migration's target */
        const char *host = json_string_value(json_object_get(v, "OS-EXT-SRV-ATTR:host"));
        bool target = mig_is_target(c, v);
        if (host && strcmp(host, c->host) != 0 && !target)
            continue;
        Server *s;
        for (s = c->servers; s && strcmp(s->id, id) != 0; s = s->next)
            ;
        if (!s && !(s = server_new(c, id)))
            continue;
        json_decref(s->doc);
        s->doc = json_incref(v);
        s->seen = true;
        if (s->incoming && !target)
            mig_commit(s); /* the source handed it over */
        s->incoming = target;
    }
    for (Server *s = c->servers; s; s = s->next)
        if (!s->seen && s->doc) { /* gone from the API: clean up, nothing to report */
            json_decref(s->doc);
            s->doc = NULL;
            s->gone_sent = true;
        }
    for (Server *s = c->servers; s; s = s->next) {
        server_converge(s);
        if (server_needs_report(s))
            agent_report(s);
    }
    compute_sweep_orphans(c);
}

/* ---- observed state ---- */

static json_t *report_body(Server *s)
{
    Compute *c = s->c;
    const char *st = server_status(s);
    int power = strcmp(st, "ACTIVE") == 0 ? 1 : strcmp(st, "SHUTOFF") == 0 ? 4 : 0;
    json_t *b = json_pack("{s:s,s:i,s:s,s:s,s:s}", "status", st, "OS-EXT-STS:power_state", power,
                          "_accel", c->accel, "OS-EXT-SRV-ATTR:host", c->host,
                          "OS-EXT-SRV-ATTR:hypervisor_hostname", c->host);
    json_t *slots = json_object();
    for (int i = 1; i <= VOL_SLOTS; i++)
        if (s->vol[i][0])
            json_object_set_new(slots, s->vol[i], json_integer(i));
    json_object_set_new(b, "_vol_slots", slots);
    if (s->ssh_port > 0)
        json_object_set_new(b, "_ssh",
                            json_pack("{s:s,s:i}", "host", "127.0.0.1", "port", s->ssh_port));
    if (s->phase == PHASE_ERROR)
        json_object_set_new(b, "fault", json_pack("{s:i,s:s}", "code", 500, "message", s->fault));
    else
        json_object_set_new(b, "fault", json_null());
    /* new console output, bounded per report */
    char path[600];
    snprintf(path, sizeof(path), "%s/serial.log", s->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        size_t max = (size_t)c->cfg.console_max;
        char *buf = malloc(max);
        ssize_t n = buf ? pread(fd, buf, max, (off_t)s->console_off) : -1;
        if (n > 0) {
            /* NUL bytes cannot travel in a JSON string from jansson's dumper; drop them */
            size_t k = 0;
            for (ssize_t i = 0; i < n; i++)
                if (buf[i])
                    buf[k++] = buf[i];
            json_t *str = json_stringn(buf, k); /* NULL when not UTF-8 */
            if (!str) {
                for (size_t i = 0; i < k; i++)
                    if ((unsigned char)buf[i] >= 0x80)
                        buf[i] = '?';
                str = json_stringn(buf, k);
            }
            if (str)
                json_object_set_new(b, "console_append", str);
            s->console_off += (uint64_t)n;
        }
        free(buf);
        close(fd);
    }
    return b;
}

void agent_report(Server *s)
{
    Compute *c = s->c;
    if (c->stopping)
        return;
    if (s->put_busy) {
        s->dirty = true;
        return;
    }
    if (s->phase == PHASE_GONE && s->gone_sent)
        return;
    if (!c->registered) {
        s->dirty = true;
        return;
    }
    json_t *b = s->phase == PHASE_GONE ? json_pack("{s:b}", "gone", 1) : mig_report(s);
    if (!b)
        b = report_body(s);
    char target[160];
    snprintf(target, sizeof(target), "/agent/v1/resources/server/%s", s->id);
    if (s->phase != PHASE_GONE && !s->incoming) {
        const char *st = server_status(s);
        if (strcmp(st, s->reported) != 0) {
            const char *kv[] = {"server", s->id, "status", st, NULL};
            sov_logv_kv(SOV_LOG_INFO, NULL, 0, "observed state", kv);
        }
        snprintf(s->reported, sizeof(s->reported), "%s", st);
    }
    s->dirty = false;
    if (call(c, s, 2, "PUT", target, b, 10000) == 0)
        s->put_busy = true;
    else
        s->dirty = true;
}

static void sweep_gone(Compute *c)
{
    Server **pp = &c->servers;
    while (*pp) {
        Server *s = *pp;
        if (s->phase == PHASE_GONE && s->gone_sent && !s->put_busy) {
            *pp = s->next;
            server_free(s);
        } else
            pp = &s->next;
    }
}

static void on_done(SovHttpClientReq *r, int err, void *ud)
{
    Call *k = ud;
    Compute *c = k->c;
    if (k->kind == 0) {
        if (err < 0 || k->status != 200)
            log_warn("registration failed: err=%d status=%d", err, k->status);
        else {
            json_t *doc = NULL;
            if (sov_json_parse_object((SovStr){k->body.ptr, k->body.len}, RESP_MAX, &doc, NULL) ==
                0) {
                json_int_t hb = json_integer_value(json_object_get(doc, "heartbeat_ms"));
                if (hb >= 1000 && (uint64_t)hb != c->heartbeat_ms && !c->stopping) {
                    c->heartbeat_ms = (uint64_t)hb;
                    uv_timer_start(&c->heartbeat, heartbeat_cb, c->heartbeat_ms / 2,
                                   c->heartbeat_ms / 2);
                }
                json_decref(doc);
            }
            if (!c->registered) {
                c->registered = true;
                log_info("registered with sov-api as host %s", c->host);
                watch(c);
                for (Server *s = c->servers; s; s = s->next)
                    if (s->dirty)
                        agent_report(s);
            }
        }
    } else if (k->kind == 1) {
        c->watch_busy = false;
        json_t *doc = NULL;
        if (err < 0 || k->status != 200 ||
            sov_json_parse_object((SovStr){k->body.ptr, k->body.len}, RESP_MAX, &doc, NULL) < 0) {
            if (!c->stopping)
                log_warn("watch failed: err=%d status=%d; retrying", err, k->status);
            watch_backoff(c);
        } else {
            c->backoff_ms = 0;
            apply_snapshot(c, doc);
            json_decref(doc);
            sweep_gone(c);
            watch(c);
        }
    } else {
        Server *s = k->s;
        s->put_busy = false;
        if (s->phase == PHASE_GONE) {
            /* 204: recorded; 404: already gone; anything else: try again on the next tick */
            if (err == 0 && (k->status == 204 || k->status == 404 || k->status == 409))
                s->gone_sent = true;
            else
                s->dirty = true;
        } else if (err < 0 || k->status >= 300) {
            if (k->status != 404)
                log_warn("report for server %s failed: err=%d status=%d", s->id, err, k->status);
            /* sov-api refused it (gone, not this host's any more, bad): the next change
             * reports anew; only a failed exchange is tried again at once */
            s->dirty = err < 0 || k->status >= 500;
        }
        if (s->dirty && !c->stopping)
            agent_report(s);
        sweep_gone(c);
    }
    free(k->req_body);
    sov_buf_release(&k->body);
    free(k);
}

static void tick_cb(uv_timer_t *t)
{
    Compute *c = t->data;
    sov_gauge_set(c->m_servers, 0);
    int64_t n = 0, running = 0;
    for (Server *s = c->servers; s; s = s->next) {
        server_tick(s);
        if (s->dirty && !s->put_busy)
            agent_report(s);
        n++;
        running += s->pid > 0;
    }
    sov_gauge_set(c->m_servers, n);
    sov_gauge_set(c->m_running, running);
    sweep_gone(c);
}

void agent_start(Compute *c)
{
    uv_timer_init(c->loop, &c->heartbeat);
    uv_timer_init(c->loop, &c->watch_retry);
    uv_timer_init(c->loop, &c->tick);
    c->heartbeat.data = c->watch_retry.data = c->tick.data = c;
    c->heartbeat_ms = 10000;
    uv_timer_start(&c->heartbeat, heartbeat_cb, 0, c->heartbeat_ms / 2);
    uv_timer_start(&c->tick, tick_cb, c->cfg.poll_ms ? c->cfg.poll_ms : TICK_MS_DEFAULT,
                   c->cfg.poll_ms ? c->cfg.poll_ms : TICK_MS_DEFAULT);
}

void agent_stop(Compute *c)
{
    c->stopping = true;
    uv_timer_stop(&c->heartbeat);
    uv_timer_stop(&c->watch_retry);
    uv_timer_stop(&c->tick);
}
