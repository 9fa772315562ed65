/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's side of sov-api's agent API: registration and heartbeats, the level-triggered
 * long-poll watch of the network kinds, one realisation at a time on the thread pool (a newer
 * snapshot waits and replaces any older waiting one), and status reports for what changed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dhcp.h"
#include "net.h"
#include "sov/json.h"
#include "sov/log.h"

#define WATCH_WAIT_S   30
#define BACKOFF_MAX_MS 10000
#define RESP_MAX       (64u << 20)
#define KINDS          "network,subnet,port,router,floatingip,security_group,security_group_rule,host"

typedef struct Call {
    Net *n;
    int kind;     /* 0 register, 1 watch, 2 report */
    uint64_t seq; /* heartbeats: the how-manyth this agent sent */
    int status;
    char key[160]; /* reports: "kind/id" */
    char want[16]; /* reports: the status sent */
    SovBuf body;
    char *req_body;
    char auth[SOV_CONF_STR_MAX + 32];
} Call;

typedef struct Apply {
    uv_work_t w;
    Net *n;
    NetConfig cfg; /* n's, with l3 off while this host stands by (n->l3_active) */
    json_t *snapshot, *statuses, *dhcp;
    int r;
    bool l3_left; /* router or DHCP namespaces still here after the pass */
    uint64_t ns;  /* how long the pass took */
    SovBuf err;
} Apply;

static void on_headers(SovHttpClientReq *r, int status, void *ud)
{
    ((Call *)ud)->status = status;
}

static int on_body(SovHttpClientReq *r, const char *p, size_t len, void *ud)
{
    Call *k = ud;
    return sov_buf_append(&k->body, p, len) < 0 ? -EFBIG : 0;
}

static void on_done(SovHttpClientReq *r, int err, void *ud);

static int call(Net *n, int kind, const char *method, const char *target, json_t *body,
                unsigned timeout_ms, Call **ret)
{
    static const SovHttpClientCallbacks cbs = {on_headers, on_body, on_done};
    Call *k = calloc(1, sizeof(*k));
    if (!k) {
        json_decref(body);
        return -ENOMEM;
    }
    k->n = n;
    k->kind = kind;
    sov_buf_init(&k->body, RESP_MAX);
    if (body) {
        k->req_body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
    snprintf(k->auth, sizeof(k->auth), "Authorization: Bearer %s", n->cfg.agent_token);
    const char *hdrs[] = {k->auth, "Content-Type: application/json", NULL};
    SovStr b = k->req_body ? (SovStr){k->req_body, strlen(k->req_body)} : SOV_STR_NULL;
    if (ret)
        *ret = k;
    int r = sov_http_client_request(n->loop, n->api_host, n->api_port, method, target, hdrs, b,
                                    timeout_ms, &cbs, k);
    if (r < 0) {
        free(k->req_body);
        sov_buf_release(&k->body);
        free(k);
    }
    return r;
}

static void do_register(Net *n)
{
    /* registered as <host>.net: the machine's name is its compute agent's; ports bound to
     * that name are realised here */
    char reg[80];
    snprintf(reg, sizeof(reg), "%.63s.net", n->host);
    json_t *b = json_pack("{s:s,s:s,s:I,s:I}", "host", reg, "kind", "network", "vcpus",
                          (json_int_t)0, "ram_mb", (json_int_t)0);
    if (n->cfg.zone[0])
        json_object_set_new(b, "zone", json_string(n->cfg.zone));
    /* l3_realised: router or DHCP namespaces are here, or this host holds the role and makes
     * them; l3_term: the last grant of the role this host learnt of. sov-api gives the role to
     * another host only once this host reports both (the last grant seen, nothing realised) or
     * has gone silent, so a heartbeat sent before the answer that gave the role moves nothing */
    json_object_set_new(b, "info",
                        json_pack("{s:s,s:b,s:b,s:I}", "tunnel_ip", n->cfg.tunnel_ip, "l3",
                                  n->cfg.l3, "l3_realised", n->l3_realised, "l3_term",
                                  (json_int_t)n->l3_term));
    Call *k;
    int r = call(n, 0, "POST", "/agent/v1/hosts", b, 10000, &k);
    if (r < 0)
        log_warn_errno(r, "cannot send the heartbeat");
    else
        k->seq = ++n->hb_sent;
}

static void heartbeat_cb(uv_timer_t *t)
{
    do_register(t->data);
}

static void watch(Net *n);

static void watch_retry_cb(uv_timer_t *t)
{
    watch(t->data);
}

static void watch(Net *n)
{
    if (n->stopping || n->watch_busy || !n->registered)
        return;
    char target[512];
    snprintf(target, sizeof(target), "/agent/v1/watch?kinds=%s&since=%" PRIu64 "&wait=%d", KINDS,
             n->rev, WATCH_WAIT_S);
    if (call(n, 1, "GET", target, NULL, (WATCH_WAIT_S + 15) * 1000, NULL) < 0) {
        uv_timer_start(&n->watch_retry, watch_retry_cb, 1000, 0);
        return;
    }
    n->watch_busy = true;
}

static void watch_backoff(Net *n)
{
    n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2 : 500;
    if (n->backoff_ms > BACKOFF_MAX_MS)
        n->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&n->watch_retry, watch_retry_cb, n->backoff_ms, 0);
}

/* ---- realisation ---- */

static void apply_work(uv_work_t *req)
{
    Apply *a = (Apply *)req;
    uint64_t t0 = uv_hrtime();
    a->r = net_realize(&a->cfg, a->snapshot, a->statuses, a->dhcp, &a->err);
    a->l3_left = net_l3_left(&a->cfg);
    a->ns = uv_hrtime() - t0;
}

static void report(Net *n, const char *key, const char *status)
{
    char kind[32], target[200];
    const char *slash = strchr(key, '/');
    if (!slash || (size_t)(slash - key) >= sizeof(kind) || n->puts > 256)
        return;
    snprintf(kind, sizeof(kind), "%.*s", (int)(slash - key), key);
    snprintf(target, sizeof(target), "/agent/v1/resources/%s/%s", kind, slash + 1);
    Call *k = NULL;
    if (call(n, 2, "PUT", target, json_pack("{s:s}", "status", status), 10000, &k) == 0) {
        snprintf(k->key, sizeof(k->key), "%s", key);
        snprintf(k->want, sizeof(k->want), "%s", status);
        n->puts++;
    }
}

static void apply_start(Net *n);

/* One dnsmasq per subnet the pass says this host serves; the others stop. */
static void dhcp_converge(Net *n, json_t *want)
{
    const char *sid;
    json_t *d;
    json_object_foreach(want, sid, d)
    {
        DhcpSlot *sl;
        for (sl = n->dhcp; sl && strcmp(sl->subnet, sid) != 0; sl = sl->next)
            ;
        if (!sl) {
            /* dnsmasq drops to nobody, which must reach its hosts file: its files live in
             * /run/sov-net/<prefix> (0711 all the way), not under state_dir */
            DhcpOpts o = {.ip = n->cfg.ip,
                          .dns_upstream = n->cfg.dns_upstream,
                          .dns_domain = n->cfg.dns_domain};
            if (!(sl = calloc(1, sizeof(*sl))) || !(sl->d = dhcp_new(&o))) {
                free(sl);
                continue;
            }
            snprintf(sl->subnet, sizeof(sl->subnet), "%s", sid);
            sl->next = n->dhcp;
            n->dhcp = sl;
        }
        SovBuf err = SOV_BUF_INIT;
        if (dhcp_apply(n->loop, n->dhcp_dir, json_string_value(json_object_get(d, "netns")),
                       json_string_value(json_object_get(d, "ifname")),
                       json_string_value(json_object_get(d, "server_ip")),
                       json_object_get(d, "subnet"), json_object_get(d, "ports"), &sl->d, &err) < 0)
            log_warn("DHCP for subnet %s: %s", sid, err.ptr ? err.ptr : "failed");
        sov_buf_release(&err);
    }
    /* what an earlier agent (or a first apply that failed) left for subnets gone since; the
     * slots stopped below end their own dnsmasq */
    json_t *keep = json_copy(want);
    for (DhcpSlot *sl = n->dhcp; sl && keep; sl = sl->next)
        json_object_set_new(keep, sl->subnet, json_true());
    if (keep)
        dhcp_sweep(n->dhcp_dir, keep);
    json_decref(keep);
    for (DhcpSlot **pp = &n->dhcp; *pp;) {
        DhcpSlot *sl = *pp;
        if (json_object_get(want, sl->subnet) && sl->d) {
            pp = &sl->next;
            continue;
        }
        *pp = sl->next;
        dhcp_stop(sl->d);
        free(sl);
    }
}

static void apply_done(uv_work_t *req, int status)
{
    Apply *a = (Apply *)req;
    Net *n = a->n;
    int r = a->r;
    n->applying = false;
    sov_counter_add(n->m_applies, 1);
    sov_gauge_set(n->m_pass_ms, (int64_t)(a->ns / 1000000));
    sov_gauge_set(n->m_rules,
                  (int64_t)json_array_size(json_object_get(a->snapshot, "security_group_rule")));
    if (a->r < 0) {
        sov_counter_add(n->m_apply_errors, 1);
        log_warn("datapath pass failed: %s", a->err.ptr ? a->err.ptr : strerror(-a->r));
        n->dirty = true; /* the resync timer tries again */
    }
    /* report what differs from the documents' status */
    const char *key;
    json_t *st;
    int64_t ports = 0;
    json_object_foreach(a->statuses, key, st)
    {
        const char *s = json_string_value(st);
        ports += strncmp(key, "port/", 5) == 0 && s && strcmp(s, "ACTIVE") == 0;
        const char *was = json_string_value(json_object_get(n->reported, key));
        if (s && (!was || strcmp(was, s) != 0))
            report(n, key, s);
    }
    sov_gauge_set(n->m_ports, ports);
    if (r >= 0 && !n->stopping) /* a pass ending after SIGTERM starts no DHCP server */
        dhcp_converge(n, a->dhcp);
    /* what is there, failed pass or not, or the role held now (the next pass makes them) */
    bool left = a->l3_left || (n->cfg.l3 && n->l3_active);
    if (left != n->l3_realised) {
        n->l3_realised = left;
        if (!n->stopping) /* sov-api learns it now, not at the next heartbeat */
            do_register(n);
    }
    json_decref(a->snapshot);
    json_decref(a->statuses);
    json_decref(a->dhcp);
    sov_buf_release(&a->err);
    free(a);
    if (n->dirty && !n->stopping && r >= 0)
        apply_start(n);
}

/* The statuses the documents show now, so unchanged ones are not reported again. */
static void note_doc_statuses(Net *n, json_t *res)
{
    const char *kind;
    json_t *arr, *v;
    size_t i;
    json_object_clear(n->reported);
    json_object_foreach(res, kind, arr) json_array_foreach(arr, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *st = json_string_value(json_object_get(v, "status"));
        char key[160];
        if (id && st && strlen(id) <= 64) {
            snprintf(key, sizeof(key), "%s/%s", kind, id);
            json_object_set_new(n->reported, key, json_string(st));
        }
    }
}

static void apply_start(Net *n)
{
    if (n->applying || !n->snapshot || n->stopping)
        return;
    Apply *a = calloc(1, sizeof(*a));
    if (!a)
        return;
    a->n = n;
    a->cfg = n->cfg;
    a->cfg.l3 = n->cfg.l3 && n->l3_active;
    a->snapshot = json_deep_copy(n->snapshot);
    a->statuses = json_object();
    a->dhcp = json_object();
    sov_buf_init(&a->err, 4096);
    n->dirty = false;
    if (!a->snapshot || uv_queue_work(n->loop, &a->w, apply_work, apply_done) < 0) {
        json_decref(a->snapshot);
        json_decref(a->statuses);
        json_decref(a->dhcp);
        free(a);
        n->dirty = true;
        return;
    }
    n->applying = true;
}

static void resync_cb(uv_timer_t *t)
{
    Net *n = t->data;
    n->dirty = true;
    apply_start(n);
}

/* A heartbeat's answer: sov-api's heartbeat period, and whether this host holds the l3 role
 * (sov-api's agent.c: routers, DHCP servers and unbound ports are realised on one network host
 * with [net] l3 on at a time); a change of role starts a pass. */
static void registered(Net *n, json_t *doc)
{
    json_int_t hb = json_integer_value(json_object_get(doc, "heartbeat_ms"));
    if (hb >= 1000 && (uint64_t)hb != n->heartbeat_ms && !n->stopping) {
        n->heartbeat_ms = (uint64_t)hb;
        uv_timer_start(&n->heartbeat, heartbeat_cb, n->heartbeat_ms / 2, n->heartbeat_ms / 2);
    }
    /* a sov-api that knows no l3 role (older) leaves [net] l3 to decide, as it did */
    json_t *la = json_object_get(json_object_get(doc, "host"), "l3_active");
    bool active = la ? json_is_true(la) : true;
    if (n->cfg.l3 && active != n->l3_active)
        log_info("%s the l3 role: %s", active ? "this host holds" : "another network host holds",
                 active ? "routers, DHCP servers and unbound ports are realised here"
                        : "this host realises only the ports bound to it");
    bool changed = active != n->l3_active;
    n->l3_active = active;
    /* missing: a sov-api that counts no terms, or a host document without one; a new term is
     * echoed at once (sov-api may be holding a move back until it is) */
    json_int_t term = json_integer_value(json_object_get(json_object_get(doc, "host"), "l3_term"));
    bool echo = term != n->l3_term && !n->stopping;
    n->l3_term = term;
    /* routers are about to be made: sov-api gives the role to nobody else meanwhile */
    if (n->cfg.l3 && active)
        n->l3_realised = true;
    if (changed && n->registered) {
        n->dirty = true;
        apply_start(n);
    }
    if (!n->registered) {
        n->registered = true;
        log_info("registered with sov-api as network host %s.net", n->host);
        watch(n);
    }
    if (echo)
        do_register(n);
}

static void on_done(SovHttpClientReq *r, int err, void *ud)
{
    Call *k = ud;
    Net *n = k->n;
    if (k->kind == 0) {
        json_t *doc = NULL;
        if (err < 0 || k->status != 200 ||
            sov_json_parse_object((SovStr){k->body.ptr, k->body.len}, RESP_MAX, &doc, NULL) < 0)
            log_warn("registration failed: err=%d status=%d", err, k->status);
        else if (k->seq > n->hb_answered) { /* each heartbeat has its own connection: an answer
                                             * older than one already taken says nothing new */
            n->hb_answered = k->seq;
            registered(n, doc);
        }
        json_decref(doc);
    } else if (k->kind == 1) {
        n->watch_busy = false;
        json_t *doc = NULL;
        if (err < 0 || k->status != 200 ||
            sov_json_parse_object((SovStr){k->body.ptr, k->body.len}, RESP_MAX, &doc, NULL) < 0) {
            if (!n->stopping)
                log_warn("watch failed: err=%d status=%d; retrying", err, k->status);
            watch_backoff(n);
        } else {
            n->backoff_ms = 0;
            n->rev = (uint64_t)json_integer_value(json_object_get(doc, "rev"));
            json_t *res = json_object_get(doc, "resources"), *h;
            size_t i;
            /* heartbeats change only the hosts' last_seen_ms: no new pass for those */
            json_array_foreach(json_object_get(res, "host"), i, h)
                json_object_del(h, "last_seen_ms");
            if (json_is_object(res) && !(n->snapshot && json_equal(n->snapshot, res))) {
                json_decref(n->snapshot);
                n->snapshot = json_incref(res);
                note_doc_statuses(n, res);
                n->dirty = true;
                apply_start(n);
            }
            json_decref(doc);
            watch(n);
        }
    } else {
        n->puts--;
        if (err == 0 && k->status < 300)
            json_object_set_new(n->reported, k->key, json_string(k->want));
        else if (k->status != 404)
            log_warn("status report for %s failed: err=%d status=%d", k->key, err, k->status);
    }
    free(k->req_body);
    sov_buf_release(&k->body);
    free(k);
}

void agent_start(Net *n)
{
    uv_timer_init(n->loop, &n->heartbeat);
    uv_timer_init(n->loop, &n->watch_retry);
    uv_timer_init(n->loop, &n->resync);
    n->heartbeat.data = n->watch_retry.data = n->resync.data = n;
    n->heartbeat_ms = 10000;
    n->l3_realised = net_l3_left(&n->cfg); /* what an earlier agent left, until a pass looks */
    uv_timer_start(&n->heartbeat, heartbeat_cb, 0, n->heartbeat_ms / 2);
    uv_timer_start(&n->resync, resync_cb, n->cfg.resync_ms, n->cfg.resync_ms);
}

void agent_stop(Net *n)
{
    n->stopping = true;
    for (DhcpSlot *sl = n->dhcp, *next; sl; sl = next) { /* serving on: the next agent adopts */
        next = sl->next;
        dhcp_detach(sl->d);
        free(sl);
    }
    n->dhcp = NULL;
    uv_timer_stop(&n->heartbeat);
    uv_timer_stop(&n->watch_retry);
    uv_timer_stop(&n->resync);
}
