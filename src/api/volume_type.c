/* SPDX-License-Identifier: Apache-2.0 */
/* Volume types of sov-api's block storage API (Cinder v3) and the project-wide parts around
 * volumes: the seeded tiers (ssd-performance, ssd-standard as the default, hdd-standard,
 * archive, with the design's IOPS and latency figures as extra specs), admin-managed types and
 * extra specs, quota sets, absolute limits, availability zones, services and extensions. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/json.h"
#include "sov/log.h"
#include "volume.h"

#define DEFAULT_TYPE_KEY "volume_default_type"

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool jeq(const json_t *o, const char *key, const char *val)
{
    const char *s = jstr(o, key);
    return s && strcmp(s, val) == 0;
}

static const struct {
    const char *name, *description, *media, *iops, *latency;
} tiers[] = {
    {"ssd-performance", "NVMe-based, <1 ms latency, 100K+ IOPS", "nvme", "100000", "1"},
    {"ssd-standard", "SSD-based, <5 ms latency, 10K IOPS", "ssd", "10000", "5"},
    {"hdd-standard", "HDD-based, <10 ms latency, 1K IOPS", "hdd", "1000", "10"},
    {"archive", "Cold storage, optimized for cost", "cold", NULL, NULL},
};

int volume_types_seed(Api *a, SovBuf *err)
{
    char def[API_UUID_LEN + 1] = "";
    for (size_t i = 0; i < ELEMENTSOF(tiers); i++) {
        json_t *doc = NULL;
        char id[API_UUID_LEN + 1];
        if (api_store_get_uniq(a->store, "volume_type", tiers[i].name, &doc) == 0) {
            if (strcmp(tiers[i].name, "ssd-standard") == 0)
                snprintf(def, sizeof(def), "%s", jstr(doc, "id"));
            json_decref(doc);
            continue;
        }
        api_new_uuid(id);
        json_t *specs = json_pack("{s:s,s:s,s:s}", "sov:tier", tiers[i].name, "sov:media",
                                  tiers[i].media, "volume_backend_name", "sov-block");
        if (tiers[i].iops) {
            json_object_set_new(specs, "sov:iops", json_string(tiers[i].iops));
            json_object_set_new(specs, "sov:latency_ms", json_string(tiers[i].latency));
        }
        doc = json_pack("{s:s,s:s,s:s,s:b,s:b,s:o,s:n}", "id", id, "name", tiers[i].name,
                        "description", tiers[i].description, "is_public", 1,
                        "os-volume-type-access:is_public", 1, "extra_specs", specs, "qos_specs_id");
        ApiDocMeta m = {.kind = "volume_type",
                        .id = id,
                        .project = "",
                        .name = tiers[i].name,
                        .uniq = tiers[i].name};
        int r = api_store_insert(a->store, &m, doc);
        json_decref(doc);
        if (r < 0) {
            sov_buf_printf(err, "cannot seed volume type %s: %s", tiers[i].name, strerror(-r));
            return r;
        }
        if (strcmp(tiers[i].name, "ssd-standard") == 0)
            snprintf(def, sizeof(def), "%s", id);
    }
    char cur[64];
    if (def[0] && api_store_meta_get(a->store, DEFAULT_TYPE_KEY, cur, sizeof(cur)) < 0)
        return api_store_meta_set(a->store, DEFAULT_TYPE_KEY, def);
    return 0;
}

/* By id or name; private types only for admins. New reference or NULL. */
json_t *volume_type_get(ApiCall *c, const char *ref)
{
    json_t *doc = NULL;
    if (!ref || !*ref)
        return NULL;
    if (api_store_get_uniq(c->api->store, "volume_type", ref, &doc) < 0 &&
        api_valid_id(sov_str(ref)))
        api_store_get(c->api->store, "volume_type", ref, &doc, NULL, 0);
    if (doc && !json_is_true(json_object_get(doc, "is_public")) && !c->auth.system_admin) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

json_t *volume_type_default(ApiCall *c)
{
    char id[64];
    json_t *doc = NULL;
    if (api_store_meta_get(c->api->store, DEFAULT_TYPE_KEY, id, sizeof(id)) == 0)
        doc = volume_type_get(c, id);
    return doc ? doc : volume_type_get(c, "ssd-standard");
}

/* The type of the route's {id}, owned by the call; 404 answered when there is none. */
static json_t *type_param(ApiCall *c)
{
    const char *id = api_param(c, "id");
    json_t *doc = volume_type_get(c, id);
    if (!doc) {
        api_fault(c, 404, NULL, "Volume type %s could not be found.", id ? id : "");
        return NULL;
    }
    api_call_own(c, doc);
    return doc;
}

static int type_save(Api *a, json_t *doc, bool insert)
{
    const char *name = jstr(doc, "name");
    ApiDocMeta m = {
        .kind = "volume_type", .id = jstr(doc, "id"), .project = "", .name = name, .uniq = name};
    return insert ? api_store_insert(a->store, &m, doc) : api_store_update(a->store, &m, doc);
}

static void h_types(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (!c)
        return;
    ApiListQuery q = {.kind = "volume_type"};
    json_t *arr = NULL, *out = json_array(), *d;
    size_t i;
    api_store_list(c->api->store, &q, &arr);
    json_array_foreach(arr, i,
                       d) if (c->auth.system_admin || json_is_true(json_object_get(d, "is_public")))
        json_array_append_new(out, api_doc_public(json_deep_copy(d)));
    json_decref(arr);
    api_reply(c, 200, json_pack("{s:o}", "volume_types", out));
}

static void h_type_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    json_t *t = c ? type_param(c) : NULL;
    if (t)
        api_reply(c, 200, json_pack("{s:o}", "volume_type", api_doc_public(json_deep_copy(t))));
}

static void h_type_default(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (!c)
        return;
    json_t *t = volume_type_default(c);
    if (!t) {
        api_fault(c, 404, NULL, "Default volume type can not be found.");
        return;
    }
    api_reply(c, 200, json_pack("{s:o}", "volume_type", api_doc_public(t)));
}

/* Shared by create and update: name, description, is_public (and extra_specs on create). */
static bool type_fields(ApiCall *c, json_t *b, json_t *doc)
{
    const char *name = NULL, *desc = NULL;
    bool pub = true;
    int r;
    if (!volume_get_str(c, b, "name", VOLUME_TEXT_MAX, &name) ||
        !volume_get_str(c, b, "description", VOLUME_TEXT_MAX, &desc))
        return false;
    if ((r = volume_get_flag(c, b, "os-volume-type-access:is_public", &pub)) < 0 ||
        (r == 0 && volume_get_flag(c, b, "is_public", &pub) < 0))
        return false;
    if (name && (!*name || strspn(name, " ") == strlen(name))) {
        api_fault(c, 400, NULL, "Invalid input received: the name of a volume type is empty");
        return false;
    }
    if (name && !jeq(doc, "name", name)) {
        json_t *other = NULL;
        if (api_store_get_uniq(c->api->store, "volume_type", name, &other) == 0) {
            json_decref(other);
            api_fault(c, 409, NULL, "Volume Type %s already exists.", name);
            return false;
        }
        json_object_set_new(doc, "name", json_string(name));
    }
    if (desc)
        json_object_set_new(doc, "description", json_string(desc));
    if (json_object_get(b, "is_public") || json_object_get(b, "os-volume-type-access:is_public")) {
        json_object_set_new(doc, "is_public", json_boolean(pub));
        json_object_set_new(doc, "os-volume-type-access:is_public", json_boolean(pub));
    }
    return true;
}

static void h_type_create(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_ADMIN);
    json_t *b = c ? api_body(c, "volume_type") : NULL, *specs = NULL;
    char id[API_UUID_LEN + 1];
    if (!b)
        return;
    api_new_uuid(id);
    json_t *doc =
        json_pack("{s:s,s:n,s:n,s:b,s:b,s:{},s:n}", "id", id, "name", "description", "is_public", 1,
                  "os-volume-type-access:is_public", 1, "extra_specs", "qos_specs_id");
    api_call_own(c, doc);
    if (!jstr(b, "name")) {
        api_fault(c, 400, NULL, "Invalid input received: 'name' is a required property");
        return;
    }
    if (!type_fields(c, b, doc))
        return;
    if ((specs = json_object_get(b, "extra_specs")) && !json_is_null(specs)) {
        if (!volume_check_meta(c, specs, "extra_specs"))
            return;
        json_object_set(doc, "extra_specs", specs);
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (type_save(c->api, doc, true) < 0) {
        api_fault(c, 409, NULL, "Volume Type %s already exists.", jstr(doc, "name"));
        return;
    }
    api_reply(c, 200, json_pack("{s:O}", "volume_type", doc));
}

static void h_type_update(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_ADMIN);
    json_t *b = c ? api_body(c, "volume_type") : NULL;
    json_t *t = b ? type_param(c) : NULL;
    if (!t)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(t, "id"));
    if (!type_fields(c, b, t))
        return;
    if (type_save(c->api, t, false) < 0) {
        api_fault(c, 409, NULL, "Volume Type %s already exists.", jstr(t, "name"));
        return;
    }
    api_reply(c, 200, json_pack("{s:O}", "volume_type", t));
}

static void h_type_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_ADMIN);
    json_t *t = c ? type_param(c) : NULL, *def;
    if (!t)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(t, "id"));
    def = volume_type_default(c);
    bool is_def = def && jeq(def, "id", jstr(t, "id"));
    json_decref(def);
    if (is_def) {
        api_fault(c, 400, NULL, "Default volume type can not be deleted.");
        return;
    }
    ApiListQuery q = {.kind = "volume"};
    json_t *arr = NULL, *v;
    size_t i;
    bool used = false;
    api_store_list(c->api->store, &q, &arr);
    json_array_foreach(arr, i, v) used = used || jeq(v, "_type_id", jstr(t, "id"));
    json_decref(arr);
    if (used) {
        api_fault(c, 400, NULL, "Target volume type is still in use.");
        return;
    }
    api_store_delete(c->api->store, "volume_type", jstr(t, "id"));
    api_reply(c, 202, NULL);
}

static void h_specs(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    json_t *t = c ? type_param(c) : NULL;
    const char *key = t ? api_param(c, "key") : NULL;
    if (!t)
        return;
    json_t *specs = json_object_get(t, "extra_specs");
    if (!key) {
        api_reply(c, 200, json_pack("{s:O}", "extra_specs", specs));
        return;
    }
    json_t *v = json_object_get(specs, key);
    if (!v)
        api_fault(c, 404, NULL, "Volume Type %s has no extra specs with key %s.", jstr(t, "id"),
                  key);
    else
        api_reply(c, 200, json_pack("{s:O}", key, v));
}

/* POST .../extra_specs {"extra_specs": {...}} merges; PUT .../extra_specs/{key} {key: value};
 * DELETE .../extra_specs/{key}. */
static void h_specs_set(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_ADMIN);
    SovStr m = sov_http_req_method(req);
    bool del = sov_str_eq(m, SOV_STR("DELETE"));
    json_t *b = c && !del ? api_body(c, NULL) : NULL;
    json_t *t = c && (b || del) ? type_param(c) : NULL;
    const char *key = t ? api_param(c, "key") : NULL;
    if (!t)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(t, "id"));
    json_t *specs = json_object_get(t, "extra_specs"), *add = b;
    if (del) {
        if (json_object_del(specs, key) < 0) {
            api_fault(c, 404, NULL, "Volume Type %s has no extra specs with key %s.", jstr(t, "id"),
                      key);
            return;
        }
    } else {
        if (!key)
            add = json_object_get(b, "extra_specs");
        else if (json_object_size(b) != 1 || !json_object_get(b, key)) {
            api_fault(c, 400, NULL, "Invalid input received: the body must hold the key %s", key);
            return;
        }
        if (!volume_check_meta(c, add, "extra_specs"))
            return;
        json_object_update(specs, add);
        if (!volume_check_meta(c, specs, "extra_specs"))
            return;
    }
    type_save(c->api, t, false);
    if (del)
        api_reply(c, 202, NULL);
    else
        api_reply(c, 200, key ? json_deep_copy(add) : json_pack("{s:O}", "extra_specs", add));
}

static const char *const qkeys[] = {"volumes", "gigabytes", "snapshots"};

static int64_t quota_default(Api *a, size_t i)
{
    return i == 0 ? a->cfg.quota_volumes : i == 1 ? a->cfg.quota_gigabytes : a->cfg.quota_snapshots;
}

/* mode 0: limits, 1: limits with usage, 2: defaults. Backups and groups do not exist here. */
static json_t *quota_set(Api *a, const char *proj, int mode)
{
    json_t *q = json_object();
    for (size_t i = 0; i < ELEMENTSOF(qkeys) + 4; i++) {
        static const char *const none[] = {"backups", "backup_gigabytes", "groups",
                                           "per_volume_gigabytes"};
        const char *k = i < ELEMENTSOF(qkeys) ? qkeys[i] : none[i - ELEMENTSOF(qkeys)];
        int64_t lim = i < ELEMENTSOF(qkeys)
                          ? (mode == 2 ? quota_default(a, i) : api_quota_limit(a, proj, k))
                      : i == ELEMENTSOF(qkeys) + 3 ? VOLUME_MAX_GB
                                                   : 0;
        int64_t used = i < ELEMENTSOF(qkeys) && mode == 1 ? api_quota_usage(a, proj, k) : 0;
        json_object_set_new(q, k,
                            mode == 1 ? json_pack("{s:I,s:I,s:i,s:i}", "limit", lim, "in_use", used,
                                                  "reserved", 0, "allocated", 0)
                                      : json_integer(lim));
    }
    json_object_set_new(q, "id", json_string(proj));
    return q;
}

/* GET/PUT/DELETE /os-quota-sets/{target}[/defaults]: a project reads its own, an admin any. */
static void h_quota(SovHttpReq *req, void *ud)
{
    SovStr m = sov_http_req_method(req), p = sov_http_req_path(req);
    bool get = sov_str_eq(m, SOV_STR("GET")), put = sov_str_eq(m, SOV_STR("PUT"));
    ApiCall *c = volume_begin(ud, req, get ? API_NEED_READ : API_NEED_ADMIN);
    json_t *b = c && put ? api_body(c, "quota_set") : NULL, *proj = NULL, *v;
    const char *target = c ? api_param(c, "target") : NULL, *k;
    if (!c || (put && !b))
        return;
    if (!c->auth.system_admin && strcmp(target, c->auth.project_id) != 0) {
        api_fault(c, 403, NULL, "Policy does not allow reading the quotas of another project.");
        return;
    }
    if (api_store_get(c->api->store, "project", target, &proj, NULL, 0) < 0) {
        api_fault(c, 404, NULL, "Project %s could not be found.", target);
        return;
    }
    json_decref(proj);
    snprintf(c->target, sizeof(c->target), "%s", target);
    if (get) {
        const char *u = api_query(c, "usage");
        bool usage = u && (!strcasecmp(u, "true") || !strcmp(u, "1"));
        bool defaults = memmem(p.ptr, p.len, "/defaults", 9) != NULL;
        api_reply(c, 200,
                  json_pack("{s:o}", "quota_set", quota_set(c->api, target, defaults ? 2 : usage)));
        return;
    }
    json_object_foreach(b, k, v)
    {
        size_t i = 0;
        if (strcmp(k, "tenant_id") == 0) /* cinderclient sends it along */
            continue;
        while (i < ELEMENTSOF(qkeys) && strcmp(k, qkeys[i]) != 0)
            i++;
        if (i == ELEMENTSOF(qkeys) || !json_is_integer(v) || json_integer_value(v) < -1 ||
            json_integer_value(v) > INT32_MAX) {
            api_fault(c, 400, NULL,
                      "Invalid input received: Bad key(s) or value(s) in quota "
                      "set: %s",
                      k);
            return;
        }
    }
    api_store_begin(c->api->store);
    for (size_t i = 0; i < ELEMENTSOF(qkeys); i++)
        if (!put || (v = json_object_get(b, qkeys[i])))
            api_quota_set(c->api, target, qkeys[i],
                          put ? json_integer_value(v) : quota_default(c->api, i));
    api_store_commit(c->api->store);
    json_t *q = quota_set(c->api, target, 0);
    json_object_del(q, "id");
    api_reply(c, 200, put ? json_pack("{s:o}", "quota_set", q) : (json_decref(q), NULL));
}

static void h_limits(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (!c)
        return;
    Api *a = c->api;
    const char *p = c->auth.project_id;
    json_t *abs = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:i}", "maxTotalVolumes",
        api_quota_limit(a, p, "volumes"), "maxTotalVolumeGigabytes",
        api_quota_limit(a, p, "gigabytes"), "maxTotalSnapshots", api_quota_limit(a, p, "snapshots"),
        "totalVolumesUsed", api_quota_usage(a, p, "volumes"), "totalGigabytesUsed",
        api_quota_usage(a, p, "gigabytes"), "totalSnapshotsUsed",
        api_quota_usage(a, p, "snapshots"), "maxTotalBackups", 0, "maxTotalBackupGigabytes", 0,
        "totalBackupsUsed", 0, "totalBackupGigabytesUsed", 0);
    api_reply(c, 200, json_pack("{s:{s:[],s:o}}", "limits", "rate", "absolute", abs));
}

static void h_zones(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (!c)
        return;
    json_t *out = json_array();
    for (size_t r = 0; r < api_region_count(c->api); r++) {
        const ApiRegion *reg = api_region_at(c->api, r);
        for (unsigned z = 0; z < reg->nzones && api_jurisdiction_allowed(c, reg->jurisdiction); z++)
            json_array_append_new(out, json_pack("{s:s,s:{s:b}}", "zoneName", reg->zones[z].name,
                                                 "zoneState", "available", 1));
    }
    api_reply(c, 200, json_pack("{s:o}", "availabilityZoneInfo", out));
}

/* cinder-volume is up while sov-block answers. */
static void h_services(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_ADMIN);
    char ts[32];
    if (!c)
        return;
    volume_time(api_now_ms(), ts);
    const char *zone = api_local_region(c->api)->zones[0].name;
    bool up = volume_block_up(c->api);
    api_reply(c, 200,
              json_pack("{s:[{s:s,s:s,s:s,s:s,s:s,s:s,s:n},{s:s,s:s,s:s,s:s,s:s,s:s,s:n}]}",
                        "services", "binary", "cinder-scheduler", "host", "sov-api", "zone", zone,
                        "status", "enabled", "state", "up", "updated_at", ts, "disabled_reason",
                        "binary", "cinder-volume", "host", "sov-block@sov-block", "zone", zone,
                        "status", "enabled", "state", up ? "up" : "down", "updated_at", ts,
                        "disabled_reason"));
}

static void h_extensions(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (c)
        api_reply(c, 200, json_pack("{s:[]}", "extensions"));
}

void volume_type_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", "/volume/v3/{project_id}/types", h_types},
        {"POST", "/volume/v3/{project_id}/types", h_type_create},
        {"GET", "/volume/v3/{project_id}/types/default", h_type_default},
        {"GET", "/volume/v3/{project_id}/types/{id}", h_type_show},
        {"PUT", "/volume/v3/{project_id}/types/{id}", h_type_update},
        {"DELETE", "/volume/v3/{project_id}/types/{id}", h_type_delete},
        {"GET", "/volume/v3/{project_id}/types/{id}/extra_specs", h_specs},
        {"POST", "/volume/v3/{project_id}/types/{id}/extra_specs", h_specs_set},
        {"GET", "/volume/v3/{project_id}/types/{id}/extra_specs/{key}", h_specs},
        {"PUT", "/volume/v3/{project_id}/types/{id}/extra_specs/{key}", h_specs_set},
        {"DELETE", "/volume/v3/{project_id}/types/{id}/extra_specs/{key}", h_specs_set},
        {"GET", "/volume/v3/{project_id}/os-quota-sets/{target}", h_quota},
        {"GET", "/volume/v3/{project_id}/os-quota-sets/{target}/defaults", h_quota},
        {"PUT", "/volume/v3/{project_id}/os-quota-sets/{target}", h_quota},
        {"DELETE", "/volume/v3/{project_id}/os-quota-sets/{target}", h_quota},
        {"GET", "/volume/v3/{project_id}/limits", h_limits},
        {"GET", "/volume/v3/{project_id}/os-availability-zone", h_zones},
        {"GET", "/volume/v3/{project_id}/os-services", h_services},
        {"GET", "/volume/v3/{project_id}/extensions", h_extensions},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
}
