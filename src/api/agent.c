/* SPDX-License-Identifier: Apache-2.0 */
/* The agent API and the scheduler. Agents (sov-compute, sov-net, ...) authenticate with the
 * [agent] token as a bearer token and:
 *   POST /agent/v1/hosts                     register and heartbeat (capacity, zone, GPUs)
 *   GET  /agent/v1/watch?kinds=K,..&host=H&since=REV&wait=S
 *        the full desired state of those kinds (servers only those assigned to H), with
 *        internal members, at once when the state's revision is past REV, else after the next
 *        change or S seconds (long-poll, level-triggered: an agent that restarts asks with
 *        since=0 and converges)
 *   PUT  /agent/v1/resources/{kind}/{id}     observed state (status, power state, addresses,
 *        console output, fault; "gone": true once a deleted resource is cleaned up)
 *   GET  /agent/v1/images/{id}               a tokenless URL of an image's data
 *   GET  /agent/v1/images/{id}/file          the data itself
 * Hosts are documents of kind "host" (id = host name); a host silent for three heartbeat
 * periods is down and gets no new servers. The scheduler places a server on the up compute
 * host of its zone with the most free memory that has room for its vCPUs, RAM and GPUs.
 * One network host with [net] l3 on at a time is the l3 host ("l3_active" in its document, and
 * in the answer to its heartbeat): it alone realises routers, DHCP servers and ports bound to no
 * host, which would otherwise answer for the same addresses from several hosts on a shared VXLAN
 * segment. The first to register holds the role while it heartbeats; once it has been silent for
 * three periods (counted from this sov-api's start too, so a restart of sov-api hands nothing
 * over) the next network host with l3 on to register takes it, and the old one, when it reports
 * again, learns it stands by and removes what it realised. A holder the admin disabled
 * (PUT /v2.0/agents/{id}, network_agent.c) stands by at its next report; while it still reports
 * "l3_realised" (router or DHCP namespaces are there, or it holds the role), or has not yet
 * echoed its last grant ("l3_term": each grant is a new term), nobody else takes the role. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "image_s3.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define MAX_WAITERS  256
#define MAX_WAIT_S   60
#define CONSOLE_KEEP (64 * 1024)

typedef struct Waiter {
    ApiCall *c;
    uv_timer_t timer;
    uint64_t since;
    struct Waiter *next, *prev;
    bool done;
} Waiter;

typedef struct Agents {
    Api *api;
    Waiter *head;
    unsigned n;
    uv_timer_t kick; /* answers waiters after a commit, outside the committing handler */
    bool kick_armed;
    bool stopping;
    /* the l3 role: when each host last reported, on the loop's monotonic clock (a step of the
     * wall clock moves no role), and when this sov-api started (hosts it has not heard from
     * yet count as heard then) */
    json_t *heard; /* host -> uv_now() */
    uint64_t started;
} Agents;

/* Agent calls carry the agent token; admins with a Keystone token may read. */
static ApiCall *agent_begin(Api *a, SovHttpReq *req)
{
    ApiCall *c = api_begin(a, req, API_STYLE_AGENT, API_NEED_NONE);
    if (!c)
        return NULL;
    SovStr h = sov_http_req_header(req, "Authorization");
    size_t tl = strlen(a->cfg.agent_token);
    if (!tl) {
        api_fault(c, 403, NULL, "the agent API is closed ([agent] token is not set)");
        return NULL;
    }
    if (!h.ptr || h.len != tl + 7 || strncmp(h.ptr, "Bearer ", 7) != 0 ||
        !sov_memeq_ct(h.ptr + 7, a->cfg.agent_token, tl)) {
        api_fault(c, 401, NULL, "agent token missing or wrong");
        return NULL;
    }
    c->authenticated = true;
    snprintf(c->auth.user_name, sizeof(c->auth.user_name), "agent");
    return c;
}

bool api_host_up(Api *a, json_t *h)
{
    int64_t seen = json_integer_value(json_object_get(h, "last_seen_ms"));
    return api_now_ms() - seen <= 3 * (int64_t)a->cfg.heartbeat_ms;
}

/* Writes host document h (its id is its "host"; parent its "kind"). */
static int host_save(Api *a, json_t *h, bool insert)
{
    const char *name = api_jstr(h, "host");
    ApiDocMeta m = {.kind = "host",
                    .id = name,
                    .name = name,
                    .status = "up",
                    .host = name,
                    .parent = api_jstr(h, "kind")};
    return insert ? api_store_insert(a->store, &m, h) : api_store_update(a->store, &m, h);
}

/* Whether host document h is a network host that asks for the l3 role ([net] l3) and the admin
 * has not disabled its L3 and DHCP agents (api_host_agent_set). */
static bool l3_wanted(json_t *h)
{
    return strcmp(api_jstr(h, "kind"), "network") == 0 &&
           json_is_true(json_object_get(json_object_get(h, "info"), "l3")) &&
           !json_is_true(json_object_get(h, "l3_disabled"));
}

/* Whether host document h has reported to this sov-api within three heartbeat periods of now
 * (periods before it started do not count: it cannot know what happened in them). */
static bool l3_holder_heard(Api *a, json_t *h)
{
    Agents *ag = a->agents;
    json_t *t = json_object_get(ag->heard, api_jstr(h, "host"));
    uint64_t seen = t ? (uint64_t)json_integer_value(t) : ag->started;
    return uv_now(a->loop) - seen <= 3 * a->cfg.heartbeat_ms;
}

/* Sets doc's "l3_active" (see the top of this file); old is the host's stored document or NULL.
 * A holder silent too long loses the role here, to the registering host (its name goes to
 * demoted). Runs inside the caller's transaction. */
static int l3_elect(Api *a, json_t *doc, json_t *old, json_t *demoted)
{
    bool active = false;
    if (l3_wanted(doc)) {
        active = json_is_true(json_object_get(old, "l3_active"));
        ApiListQuery q = {.kind = "host", .parent = "network"};
        json_t *hosts, *h;
        size_t i;
        if (!active) {
            int r = api_store_list(a->store, &q, &hosts);
            if (r < 0)
                return r;
            active = true;
            json_array_foreach(hosts, i, h)
            {
                const char *name = api_jstr(h, "host");
                bool holds = json_is_true(json_object_get(h, "l3_active"));
                if (strcmp(name, api_jstr(doc, "host")) == 0)
                    continue;
                /* a host sov-api hears from that holds the role, or still has what it realised
                 * with it (it says so in its heartbeat), or has not yet reported having learnt of
                 * its last grant (the heartbeat that dropped the role may have been sent before
                 * the answer that gave it: the host may be making routers now), keeps the others
                 * out: a holder that no longer wants the role drops it at its own next report */
                json_t *info = json_object_get(h, "info"), *seen = json_object_get(info, "l3_term");
                bool unseen =
                    json_is_integer(seen) &&
                    json_integer_value(seen) != json_integer_value(json_object_get(h, "l3_term"));
                if (l3_holder_heard(a, h) &&
                    (holds || unseen || json_is_true(json_object_get(info, "l3_realised")))) {
                    active = false;
                    continue;
                }
                if (!holds)
                    continue;
                /* the old holder stands by from now on (it learns so when it reports again) */
                json_object_set_new(h, "l3_active", json_false());
                if ((r = host_save(a, h, false)) < 0) {
                    json_decref(hosts);
                    return r;
                }
                json_array_append_new(demoted, json_string(name));
            }
            json_decref(hosts);
        }
    }
    if (strcmp(api_jstr(doc, "kind"), "network") != 0)
        return 0;
    /* each grant is a new term, never one the host saw before (not after this document was
     * recreated either): past its last term, past the one it echoes ("l3_term" in its
     * heartbeat's info, the last it learnt of) and at least the clock's milliseconds */
    json_int_t term = json_integer_value(json_object_get(old, "l3_term"));
    if (active && !json_is_true(json_object_get(old, "l3_active"))) {
        json_int_t echo =
            json_integer_value(json_object_get(json_object_get(doc, "info"), "l3_term"));
        json_int_t now = (json_int_t)api_now_ms();
        term = (echo > term ? echo : term) + 1;
        if (term < now)
            term = now;
    }
    json_object_set_new(doc, "l3_term", json_integer(term));
    json_object_set_new(doc, "l3_active", json_boolean(active));
    return 0;
}

static bool valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n <= max && sov_name_ok(s);
}

/* ---- hosts ---- */

static void h_register(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = agent_begin(a, req);
    if (!c)
        return;
    json_t *b = api_body(c, NULL);
    if (!b)
        return;
    const char *host = json_string_value(json_object_get(b, "host"));
    const char *kind = json_string_value(json_object_get(b, "kind"));
    const char *zone = json_string_value(json_object_get(b, "zone"));
    json_t *gpus = json_object_get(b, "gpus");
    if (!host || !valid_name(host, 63) || !kind || !valid_name(kind, 16)) {
        api_fault(c, 400, NULL, "host (name) and kind (compute, network...) are required");
        return;
    }
    if (zone && !valid_name(zone, 63)) {
        api_fault(c, 400, NULL, "zone must be a zone name");
        return;
    }
    if (!zone)
        zone = api_local_region(a)->zones[0].name;
    bool known = false;
    for (size_t i = 0; i < api_region_count(a) && !known; i++)
        for (unsigned z = 0; z < api_region_at(a, i)->nzones; z++)
            known |= strcmp(api_region_at(a, i)->zones[z].name, zone) == 0;
    if (!known) {
        api_fault(c, 400, NULL, "zone %s is not one of this cloud's availability zones", zone);
        return;
    }
    json_int_t vcpus = json_integer_value(json_object_get(b, "vcpus"));
    json_int_t ram = json_integer_value(json_object_get(b, "ram_mb"));
    if (vcpus < 0 || vcpus > 4096 || ram < 0 || ram > (json_int_t)1 << 32 ||
        (gpus && (!json_is_array(gpus) || json_array_size(gpus) > 64))) {
        api_fault(c, 400, NULL, "vcpus, ram_mb or gpus out of range");
        return;
    }
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:I,s:s}", "host", host, "kind", kind, "zone", zone,
                  "vcpus", vcpus, "ram_mb", ram, "gpus", gpus ? json_incref(gpus) : json_array(),
                  "last_seen_ms", (json_int_t)api_now_ms(), "status", "up");
    json_t *info = json_object_get(b, "info");
    if (json_is_object(info) && json_object_size(info) <= 32)
        json_object_set(doc, "info", info);
    json_t *old = NULL;
    bool exists = api_store_get(a->store, "host", host, &old, NULL, 0) == 0;
    if (exists) {
        json_object_set(doc, "registered_ms", json_object_get(old, "registered_ms"));
        /* what the admin set through Neutron's agents API */
        if (json_is_true(json_object_get(old, "l3_disabled")))
            json_object_set_new(doc, "l3_disabled", json_true());
        json_t *descs = json_object_get(old, "agent_descriptions");
        if (json_is_object(descs))
            json_object_set(doc, "agent_descriptions", descs);
    } else
        json_object_set_new(doc, "registered_ms", json_integer(api_now_ms()));
    Agents *ag = a->agents;
    if (!ag) { /* a request that finished arriving after SIGTERM */
        json_decref(old);
        json_decref(doc);
        api_fault(c, 503, NULL, "sov-api is stopping");
        return;
    }
    json_object_set_new(ag->heard, host, json_integer((json_int_t)uv_now(a->loop)));
    bool was_active = json_is_true(json_object_get(old, "l3_active"));
    json_t *demoted = json_array();
    /* a role that moves leaves one holder and goes to the other in one transaction */
    int r = demoted ? api_store_begin(a->store) : -ENOMEM;
    if (r == 0 && (r = l3_elect(a, doc, exists ? old : NULL, demoted)) < 0)
        api_store_rollback(a->store);
    json_decref(old);
    if (r < 0) {
        json_decref(demoted);
        json_decref(doc);
        api_fault(c, 500, NULL, "cannot record the host: %s", strerror(-r));
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", host);
    r = host_save(a, doc, !exists);
    if (r == 0)
        r = api_store_commit(a->store);
    else
        api_store_rollback(a->store);
    if (r < 0) {
        json_decref(demoted);
        json_decref(doc);
        api_fault(c, 500, NULL, "cannot record the host: %s", strerror(-r));
        return;
    }
    size_t i;
    json_t *d;
    json_array_foreach(demoted, i, d) log_warn("network host %s has not reported for %" PRIu64
                                               " ms: it no longer holds the l3 role",
                                               json_string_value(d), 3 * a->cfg.heartbeat_ms);
    json_decref(demoted);
    if (json_is_true(json_object_get(doc, "l3_active")) && !was_active)
        log_info("network host %s holds the l3 role (routers, DHCP, unbound ports)", host);
    if (!exists)
        log_info("agent registered: host=%s kind=%s zone=%s", host, kind, zone);
    api_reply(c, 200,
              json_pack("{s:o,s:I}", "host", doc, "heartbeat_ms", (json_int_t)a->cfg.heartbeat_ms));
}

static void h_hosts(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c;
    if (sov_http_req_header(req, "X-Auth-Token").ptr)
        c = api_begin(a, req, API_STYLE_AGENT, API_NEED_ADMIN);
    else
        c = agent_begin(a, req);
    if (!c)
        return;
    ApiListQuery q = {.kind = "host"};
    json_t *arr;
    if (api_store_list(a->store, &q, &arr) < 0) {
        api_fault(c, 500, NULL, "cannot list hosts");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        json_object_set_new(v, "status", json_string(api_host_up(a, v) ? "up" : "down"));
    api_reply(c, 200, json_pack("{s:o}", "hosts", arr));
}

/* Nova's view of the compute hosts (os-hypervisors, admin): `openstack hypervisor list/show`.
 * Usage is what the scheduler counts: the servers assigned to each host. */
static json_t *hypervisor_view(Api *a, json_t *h, size_t idx, bool detail)
{
    const char *name = api_jstr(h, "host");
    ApiListQuery sq = {.kind = "server", .host = name};
    json_t *servers;
    int64_t cpu = 0, ram = 0, disk = 0, count = 0;
    if (api_store_list(a->store, &sq, &servers) == 0) {
        size_t k;
        json_t *s;
        json_array_foreach(servers, k, s)
        {
            cpu += json_integer_value(json_object_get(s, "_vcpus"));
            ram += json_integer_value(json_object_get(s, "_ram"));
            disk += json_integer_value(json_object_get(s, "_disk"));
            count++;
        }
        json_decref(servers);
    }
    json_t *v = json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)idx + 1, "hypervisor_hostname",
                          name, "state", api_host_up(a, h) ? "up" : "down", "status", "enabled");
    if (detail) {
        json_t *info = json_object_get(h, "info");
        const char *accel = api_jstr(info, "accel");
        json_object_update_new(
            v,
            json_pack(
                "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:s,s:I,s:s},s:s,s:s,s:I}", "hypervisor_type",
                *accel ? accel : "QEMU", "vcpus", json_integer_value(json_object_get(h, "vcpus")),
                "vcpus_used", (json_int_t)cpu, "memory_mb",
                json_integer_value(json_object_get(h, "ram_mb")), "memory_mb_used", (json_int_t)ram,
                "local_gb_used", (json_int_t)disk, "running_vms", (json_int_t)count, "gpus",
                (json_int_t)json_array_size(json_object_get(h, "gpus")), "service", "host", name,
                "id", (json_int_t)idx + 1, "disabled_reason", "", "host_ip", "",
                "availability_zone", api_jstr(h, "zone"), "hypervisor_version", (json_int_t)1));
        json_object_update_new(
            v, json_pack("{s:s,s:i,s:i,s:i,s:I,s:i}", "cpu_info", "{}", "current_workload", 0,
                         "disk_available_least", 0, "free_disk_gb", 0, "free_ram_mb",
                         json_integer_value(json_object_get(h, "ram_mb")) - (json_int_t)ram,
                         "local_gb", 0));
        /* as `uptime` prints it: the time the host has been registered */
        int64_t now = api_now_ms(),
                up_s = (now - json_integer_value(json_object_get(h, "registered_ms"))) / 1000;
        char clock[32], uptime[128];
        api_time_iso(now, clock);
        snprintf(uptime, sizeof(uptime),
                 " %.8s up %" PRId64 " days, %" PRId64 ":%02" PRId64
                 ", 0 users, load average: 0.00, 0.00, 0.00",
                 clock + 11, up_s / 86400, up_s % 86400 / 3600, up_s % 3600 / 60);
        json_object_set_new(v, "uptime", json_string(uptime));
    }
    return v;
}

static void hypervisors(SovHttpReq *req, Api *a, bool detail)
{
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_ADMIN);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    ApiListQuery q = {.kind = "host", .parent = "compute"};
    json_t *hosts, *out = json_array();
    if (api_store_list(a->store, &q, &hosts) < 0) {
        json_decref(out);
        api_fault(c, 500, NULL, "cannot list hosts");
        return;
    }
    size_t i;
    json_t *h;
    json_array_foreach(hosts, i, h)
    {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i + 1);
        if (id && strcmp(id, idx) != 0 && strcmp(id, api_jstr(h, "host")) != 0)
            continue;
        json_array_append_new(out, hypervisor_view(a, h, i, detail || id));
    }
    json_decref(hosts);
    if (id) {
        if (json_array_size(out) == 0) {
            json_decref(out);
            api_fault(c, 404, NULL, "Hypervisor with ID %s could not be found.", id);
            return;
        }
        json_t *one = json_incref(json_array_get(out, 0));
        json_decref(out);
        api_reply(c, 200, json_pack("{s:o}", "hypervisor", one));
        return;
    }
    api_reply(c, 200, json_pack("{s:o}", "hypervisors", out));
}

static void h_hypervisors(SovHttpReq *req, void *ud)
{
    hypervisors(req, ud, false);
}

static void h_hypervisors_detail(SovHttpReq *req, void *ud)
{
    hypervisors(req, ud, true);
}

/* os-aggregates: one per availability zone with its compute hosts (zones are the only host
 * groups this cloud has). */
static void h_aggregates(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_ADMIN);
    if (!c)
        return;
    ApiListQuery q = {.kind = "host", .parent = "compute"};
    json_t *hosts, *out = json_array();
    if (api_store_list(a->store, &q, &hosts) < 0)
        hosts = json_array();
    json_int_t id = 0;
    for (size_t r = 0; r < api_region_count(a); r++) {
        const ApiRegion *reg = api_region_at(a, r);
        for (unsigned z = 0; z < reg->nzones; z++) {
            const char *zone = reg->zones[z].name;
            json_t *names = json_array(), *h;
            size_t i;
            json_array_foreach(hosts, i, h) if (strcmp(api_jstr(h, "zone"), zone) == 0)
                json_array_append(names, json_object_get(h, "host"));
            json_array_append_new(out, json_pack("{s:I,s:s,s:s,s:o,s:{s:s,s:s}}", "id", ++id,
                                                 "name", zone, "availability_zone", zone, "hosts",
                                                 names, "metadata", "availability_zone", zone,
                                                 "jurisdiction", reg->jurisdiction));
        }
    }
    json_decref(hosts);
    api_reply(c, 200, json_pack("{s:o}", "aggregates", out));
}

/* GET /agent/v1/images/{id}: where an agent reads an image's data from without a Keystone
 * token (a presigned object-store URL, or a signed link to this API), for the image's size
 * and checksum. Only active images; the link lives an hour plus a second per 4 MiB. */
static void h_image_source(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = agent_begin(a, req);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    json_t *img;
    if (!id || strlen(id) > 64 || api_store_get(a->store, "image", id, &img, NULL, 0) < 0) {
        api_fault(c, 404, NULL, "image %s does not exist", id ? id : "");
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (strcmp(api_jstr(img, "status"), "active") != 0) {
        api_fault(c, 409, NULL, "image %s is %s, not active", id, api_jstr(img, "status"));
        json_decref(img);
        return;
    }
    SovBuf url = SOV_BUF_INIT, err = SOV_BUF_INIT;
    int64_t size = json_integer_value(json_object_get(img, "size"));
    unsigned ttl = 3600 + (unsigned)SOV_MIN(size / (4 << 20), 6 * 24 * 3600);
    int r = image_source_url(a, img, ttl, &url, &err);
    if (r < 0)
        api_fault(c, 503, NULL, "image %s cannot be served: %s", id, err.ptr ? err.ptr : "?");
    else
        api_reply(c, 200,
                  json_pack("{s:s,s:s,s:I,s:s,s:s,s:I}", "id", id, "url", url.ptr, "size",
                            (json_int_t)size, "checksum", api_jstr(img, "checksum"), "disk_format",
                            api_jstr(img, "disk_format"), "expires_in", (json_int_t)ttl));
    sov_buf_release(&url);
    sov_buf_release(&err);
    json_decref(img);
}

/* GET /agent/v1/images/{id}/file: the data of an active image, streamed (Range works). */
static void h_image_file(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = agent_begin(a, req);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    json_t *img = NULL;
    if (!id || strlen(id) > 64 || api_store_get(a->store, "image", id, &img, NULL, 0) < 0 ||
        strcmp(api_jstr(img, "status"), "active") != 0) {
        json_decref(img);
        api_fault(c, 404, NULL, "no active image %s", id ? id : "");
        return;
    }
    api_call_own(c, img);
    image_data_download(c, img);
}

/* ---- watch ---- */

/* Each attached volume mapping of a server gains "export": where sov-block serves it over NBD
 * (the volume's _export: uri_unix and uri_tcp) once the volume is ready, so the agent can
 * open it. */
static void add_exports(Api *a, json_t *servers)
{
    size_t i, j;
    json_t *s, *b;
    json_array_foreach(servers, i, s) json_array_foreach(json_object_get(s, "_bdm"), j, b)
    {
        const char *vol = api_jstr(b, "volume_id");
        json_t *v = NULL;
        if (!*vol || !json_is_true(json_object_get(b, "attached")) ||
            api_store_get(a->store, "volume", vol, &v, NULL, 0) < 0)
            continue;
        json_t *exp = json_object_get(v, "_export"); /* in-use: made, imported and attached */
        if (json_is_object(exp) && strcmp(api_jstr(v, "status"), "in-use") == 0) {
            json_t *e = json_deep_copy(exp); /* with the format the image gave the volume */
            const char *f = api_jstr(json_object_get(v, "volume_image_metadata"), "disk_format");
            json_object_set_new(e, "format",
                                json_string(strcmp(f, "qcow2") == 0 ? "qcow2" : "raw"));
            json_object_set_new(b, "export", e);
        }
        json_decref(v);
    }
    /* and each network attachment its port's MAC, for the NIC the agent plugs into sov-net */
    json_array_foreach(servers, i, s) json_array_foreach(json_object_get(s, "_networks"), j, b)
    {
        json_t *p = NULL;
        const char *pid = api_jstr(b, "port");
        if (*pid && api_store_get(a->store, "port", pid, &p, NULL, 0) == 0)
            json_object_set_new(b, "mac", json_string(api_jstr(p, "mac_address")));
        json_decref(p);
    }
}

static json_t *snapshot(Api *a, ApiCall *c)
{
    const char *kinds = api_query(c, "kinds");
    const char *host = api_query(c, "host");
    json_t *res = json_object();
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", kinds ? kinds : "");
    char *save = NULL;
    for (char *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        if (!valid_name(k, 32))
            continue;
        ApiListQuery q = {.kind = k};
        if (host && *host && strcmp(k, "server") == 0)
            q.host = host;
        json_t *arr;
        if (api_store_list(a->store, &q, &arr) < 0)
            continue;
        if (q.host) { /* and servers migrating here: the target prepares before cut-over */
            ApiListQuery mq = {.kind = "server", .status = "MIGRATING"};
            json_t *mig;
            if (api_store_list(a->store, &mq, &mig) == 0) {
                size_t i;
                json_t *v;
                json_array_foreach(mig, i, v) if (strcmp(api_jstr(v, "_migrate_to"), host) == 0)
                    json_array_append(arr, v);
                json_decref(mig);
            }
        }
        if (strcmp(k, "server") == 0)
            add_exports(a, arr);
        json_object_set_new(res, k, arr);
    }
    return json_pack("{s:I,s:o}", "rev", (json_int_t)api_store_rev(a->store), "resources", res);
}

static void waiter_close_cb(uv_handle_t *h)
{
    Waiter *w = h->data;
    sov_http_req_unref(w->c->req);
    free(w);
}

static void waiter_finish(Agents *ag, Waiter *w)
{
    Api *a = ag->api;
    if (w->done)
        return;
    w->done = true;
    if (w->prev)
        w->prev->next = w->next;
    else
        ag->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    ag->n--;
    if (!sov_http_req_is_closed(w->c->req))
        api_reply(w->c, 200, snapshot(a, w->c));
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_close_cb);
}

static void waiter_timeout(uv_timer_t *t)
{
    Waiter *w = t->data;
    waiter_finish(w->c->api->agents, w);
}

static void h_watch(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    Agents *ag = a->agents;
    ApiCall *c = agent_begin(a, req);
    if (!c)
        return;
    const char *kinds = api_query(c, "kinds");
    const char *since_s = api_query(c, "since"), *wait_s = api_query(c, "wait");
    if (!kinds || !*kinds || strlen(kinds) > 200) {
        api_fault(c, 400, NULL, "kinds=server,port,... is required");
        return;
    }
    uint64_t since = since_s ? strtoull(since_s, NULL, 10) : 0;
    long wait = wait_s ? strtol(wait_s, NULL, 10) : 0;
    if (wait < 0)
        wait = 0;
    if (wait > MAX_WAIT_S)
        wait = MAX_WAIT_S;
    /* a stopping sov-api (ag gone, or going) answers at once */
    if (api_store_rev(a->store) > since || wait == 0 || !ag || ag->stopping ||
        ag->n >= MAX_WAITERS) {
        api_reply(c, 200, snapshot(a, c));
        return;
    }
    Waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    w->c = c;
    w->since = since;
    uv_timer_init(a->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, waiter_timeout, (uint64_t)wait * 1000, 0);
    sov_http_req_ref(req);
    w->next = ag->head;
    if (ag->head)
        ag->head->prev = w;
    ag->head = w;
    ag->n++;
}

static void kick_cb(uv_timer_t *t)
{
    Agents *ag = t->data;
    Api *a = ag->api;
    ag->kick_armed = false;
    uint64_t rev = api_store_rev(a->store);
    Waiter *w = ag->head;
    while (w) {
        Waiter *next = w->next;
        if (rev > w->since)
            waiter_finish(ag, w);
        w = next;
    }
}

void api_agents_notify(Api *a)
{
    Agents *ag = a->agents;
    if (!ag || ag->kick_armed || !ag->head)
        return;
    ag->kick_armed = true;
    uv_timer_start(&ag->kick, kick_cb, 0, 0);
}

/* ---- observed state ---- */

static void h_observed(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = agent_begin(a, req);
    if (!c)
        return;
    const char *kind = api_param(c, "kind"), *id = api_param(c, "id");
    json_t *b = api_body(c, NULL);
    if (!b)
        return;
    if (!kind || !valid_name(kind, 32) || !id || strlen(id) > 64) {
        api_fault(c, 404, NULL, "no such resource");
        return;
    }
    json_t *doc;
    char project[API_ID_LEN + 1];
    if (api_store_get(a->store, kind, id, &doc, project, sizeof(project)) < 0) {
        api_fault(c, 404, NULL, "%s %s does not exist", kind, id);
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    snprintf(c->auth.project_id, sizeof(c->auth.project_id), "%s", project);
    if (json_is_true(json_object_get(b, "gone"))) {
        if (strcmp(api_jstr(doc, "_desired"), "deleted") != 0) {
            json_decref(doc);
            api_fault(c, 409, NULL, "%s %s is not being deleted", kind, id);
            return;
        }
        if (strcmp(kind, "server") == 0) /* its volumes: detached, or deleted with it */
            api_compute_release_volumes(a, project, doc);
        json_decref(doc);
        api_store_delete(a->store, kind, id);
        api_reply(c, 204, NULL);
        return;
    }
    if (strcmp(kind, "server") != 0) { /* network resources keep their own indexing */
        const char *st = json_string_value(json_object_get(b, "status"));
        json_decref(doc);
        int r = st ? api_network_status_set(a, kind, id, st) : -EINVAL;
        if (r == -EINVAL)
            api_fault(c, 400, NULL, "status must be ACTIVE, DOWN or ERROR");
        else if (r < 0)
            api_fault(c, r == -ENOENT ? 404 : 500, NULL, "%s %s: %s", kind, id, strerror(-r));
        else
            api_reply(c, 204, NULL);
        return;
    }
    /* copy the observed fields the agent may set */
    static const char *const fields[] = {
        "status",
        "power_state",
        "OS-EXT-STS:vm_state",
        "OS-EXT-STS:power_state",
        "OS-EXT-STS:task_state",
        "addresses",
        "fault",
        "_observed",
        "_accel",
        "_ssh",
        "binding:host_id",
        "progress",
        "OS-EXT-SRV-ATTR:host",
        "OS-EXT-SRV-ATTR:hypervisor_hostname",
        "_vol_slots",
        "_migration",
    };
    const char *old_host = json_string_value(json_object_get(doc, "OS-EXT-SRV-ATTR:host"));
    char was[64];
    snprintf(was, sizeof(was), "%s", old_host ? old_host : "");
    /* Only the server's host reports it, and names another host only to hand it over to its
     * migration target: a late report of the host it left must not take it back. */
    json_t *rh = json_object_get(b, "OS-EXT-SRV-ATTR:host");
    if (rh && *was && !(json_is_string(rh) && strcmp(json_string_value(rh), was) == 0) &&
        !(json_is_string(rh) && strcmp(json_string_value(rh), api_jstr(doc, "_migrate_to")) == 0)) {
        json_decref(doc);
        api_fault(c, 409, NULL, "server %s is on host %s", id, was);
        return;
    }
    json_t *v;
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        if ((v = json_object_get(b, fields[i])))
            json_object_set(doc, fields[i], v);
    const char *append = json_string_value(json_object_get(b, "console_append"));
    if (append) {
        const char *old = api_jstr(doc, "_console");
        size_t ol = strlen(old), al = strlen(append);
        SovBuf nb = SOV_BUF_INIT;
        size_t keep = ol + al > CONSOLE_KEEP ? ol + al - CONSOLE_KEEP : 0;
        if (keep < ol)
            sov_buf_append(&nb, old + keep, ol - keep);
        sov_buf_append(&nb, append + (keep > ol ? keep - ol : 0), al - (keep > ol ? keep - ol : 0));
        json_object_set_new(doc, "_console", json_stringn(nb.ptr ? nb.ptr : "", nb.len));
        sov_buf_release(&nb);
    }
    const char *now_host = api_jstr(doc, "OS-EXT-SRV-ATTR:host");
    bool cut_over = false, gave_up = false;
    if (strcmp(was, now_host) != 0) { /* a live migration cut over: the target owns it now */
        if (!valid_name(now_host, 63)) {
            json_decref(doc);
            api_fault(c, 400, NULL, "OS-EXT-SRV-ATTR:host must be a host name");
            return;
        }
        json_object_del(doc, "_migrate_to");
        json_object_del(doc, "_migration");
        cut_over = true;
    }
    /* live migration: the target says where it listens (_migration {host, uri, nbd}); the
     * source cuts over by naming the target as host (above) or gives up (failed) */
    json_t *mig = json_object_get(doc, "_migration");
    if (mig && (json_is_null(mig) || api_jstr(mig, "failed")[0])) {
        if (!json_is_null(mig)) {
            log_warn("live migration of server %s failed: %s", id, api_jstr(mig, "failed"));
            json_object_del(doc, "_migrate_to");
            gave_up = true;
            if (strcmp(api_jstr(doc, "status"), "MIGRATING") == 0)
                json_object_set_new(doc, "status", json_string("ACTIVE"));
        }
        json_object_del(doc, "_migration");
    }
    if (json_is_null(json_object_get(doc, "fault")))
        json_object_del(doc, "fault");
    char now[32];
    api_time_iso(api_now_ms(), now);
    json_object_set_new(doc, "updated", json_string(now));
    json_object_set_new(doc, "updated_at", json_string(now));
    const char *host = api_jstr(doc, "OS-EXT-SRV-ATTR:host");
    ApiDocMeta m = {.kind = kind,
                    .id = id,
                    .project = project,
                    .name = api_jstr(doc, "name"),
                    .status = api_jstr(doc, "status"),
                    .host = host,
                    .parent = json_string_value(json_object_get(doc, "network_id"))};
    /* a server's ports: bound to the host it now runs on, or no longer migrating */
    bool ports = cut_over || gave_up;
    int r = ports ? api_store_begin(a->store) : 0;
    bool began = ports && r == 0;
    /* the hosts have moved on already: a port that cannot follow does not hold the server */
    if (began && (r = api_compute_ports_migrating(a, doc, NULL, cut_over ? now_host : NULL)) < 0) {
        log_warn("server %s: its ports were not updated for the migration: %s", id, strerror(-r));
        r = 0;
    }
    if (r == 0)
        r = api_store_update(a->store, &m, doc);
    if (began && r == 0)
        r = api_store_commit(a->store); /* a failed commit has rolled back */
    else if (began)
        api_store_rollback(a->store);
    json_decref(doc);
    if (r < 0)
        api_fault(c, 500, NULL, "cannot record the observed state: %s", strerror(-r));
    else
        api_reply(c, 204, NULL);
}

/* ---- scheduler ---- */

int api_schedule(Api *a, const char *zone, int64_t vcpus, int64_t ram_mb, int64_t gpus,
                 const char *exclude, char out_host[64])
{
    ApiListQuery q = {.kind = "host", .parent = "compute"};
    json_t *hosts;
    if (api_store_list(a->store, &q, &hosts) < 0)
        return -EIO;
    int64_t best_free = -1;
    size_t i;
    json_t *h;
    json_array_foreach(hosts, i, h)
    {
        if (!api_host_up(a, h) || (zone && *zone && strcmp(api_jstr(h, "zone"), zone) != 0))
            continue;
        const char *name = api_jstr(h, "host");
        if (exclude && strcmp(name, exclude) == 0)
            continue;
        ApiListQuery sq = {.kind = "server", .host = name};
        json_t *servers;
        if (api_store_list(a->store, &sq, &servers) < 0)
            continue;
        int64_t used_cpu = 0, used_ram = 0, used_gpu = 0;
        size_t k;
        json_t *s;
        json_array_foreach(servers, k, s)
        {
            used_cpu += json_integer_value(json_object_get(s, "_vcpus"));
            used_ram += json_integer_value(json_object_get(s, "_ram"));
            used_gpu += json_integer_value(json_object_get(s, "_gpus"));
        }
        json_decref(servers);
        int64_t free_cpu = json_integer_value(json_object_get(h, "vcpus")) - used_cpu;
        int64_t free_ram = json_integer_value(json_object_get(h, "ram_mb")) - used_ram;
        int64_t free_gpu = (int64_t)json_array_size(json_object_get(h, "gpus")) - used_gpu;
        if (free_cpu < vcpus || free_ram < ram_mb || free_gpu < gpus)
            continue;
        if (free_ram > best_free) {
            best_free = free_ram;
            snprintf(out_host, 64, "%s", name);
        }
    }
    json_decref(hosts);
    return best_free < 0 ? -ENOSPC : 0;
}

int api_host_agent_set(Api *a, const char *host, const char *type, bool set_desc, const char *desc,
                       int enable)
{
    json_t *doc, *d;
    int r = api_store_get(a->store, "host", host, &doc, NULL, 0);
    if (r < 0)
        return r;
    if (set_desc) {
        if (!json_is_object(d = json_object_get(doc, "agent_descriptions")))
            json_object_set_new(doc, "agent_descriptions", d = json_object());
        if (desc)
            json_object_set_new(d, type, json_string(desc));
        else
            json_object_del(d, type);
    }
    if (enable == 0)
        json_object_set_new(doc, "l3_disabled", json_true());
    else if (enable == 1)
        json_object_del(doc, "l3_disabled");
    r = host_save(a, doc, false);
    json_decref(doc);
    if (r == 0 && enable >= 0)
        log_info("network host %s: L3 and DHCP agents %s by the admin", host,
                 enable ? "enabled" : "disabled");
    return r;
}

/* ---- life ---- */

int api_agent_start(Api *a, SovBuf *err)
{
    Agents *ag = calloc(1, sizeof(*ag));
    if (!ag)
        return -ENOMEM;
    ag->api = a;
    uv_update_time(a->loop); /* the loop has not run yet: its cached time is from its creation */
    ag->started = uv_now(a->loop);
    if (!(ag->heard = json_object())) {
        free(ag);
        return -ENOMEM;
    }
    uv_timer_init(a->loop, &ag->kick);
    ag->kick.data = ag;
    uv_unref((uv_handle_t *)&ag->kick);
    a->agents = ag;
    return 0;
}

static void kick_closed(uv_handle_t *h)
{
    free(h->data);
}

void api_agent_stop(Api *a)
{
    Agents *ag = a->agents;
    if (!ag)
        return;
    ag->stopping = true;
    while (ag->head) /* long-polls answer now, so a graceful stop does not wait for them */
        waiter_finish(ag, ag->head);
    a->agents = NULL;
    json_decref(ag->heard);
    ag->heard = NULL;
    uv_close((uv_handle_t *)&ag->kick, kick_closed);
}

void api_agent_routes(Api *a)
{
    sov_router_add(a->router, "POST", "/agent/v1/hosts", 0, h_register, a);
    sov_router_add(a->router, "GET", "/agent/v1/hosts", 0, h_hosts, a);
    sov_router_add(a->router, "GET", "/agent/v1/watch", 0, h_watch, a);
    sov_router_add(a->router, "PUT", "/agent/v1/resources/{kind}/{id}", 0, h_observed, a);
    sov_router_add(a->router, "GET", "/agent/v1/images/{id}", 0, h_image_source, a);
    sov_router_add(a->router, "GET", "/agent/v1/images/{id}/file", 0, h_image_file, a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-hypervisors", 0, h_hypervisors, a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-hypervisors/detail", 0, h_hypervisors_detail,
                   a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-hypervisors/{id}", 0, h_hypervisors_detail,
                   a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-hypervisors/{id}/uptime", 0,
                   h_hypervisors_detail, a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-aggregates", 0, h_aggregates, a);
}
