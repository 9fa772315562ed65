/* SPDX-License-Identifier: Apache-2.0 */
/* The Neutron v2.0 network API under /network/v2.0, first part: what every Neutron file
 * shares (network-int.h: faults, request bodies, documents, lists with filters, fields= and
 * pages), version documents, extensions, quotas, networks and subnets. Ports live in
 * network_port.c, routers and floating IPs in network_l3.c, security groups in secgroup.c and
 * address management in ipam.c. This is desired state only: sov-net realises the documents.
 *
 * Visibility follows Neutron: a project sees its own resources plus shared and external
 * networks (and their subnets); the system admin sees every project's. Another project's
 * resource answers 404, so ids do not leak. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ipam.h"
#include "network-int.h"

#define MAX_TAGS 50

/* A network's MTU: room for VXLAN's 50 bytes on a 1500-byte underlay; an external network
 * meets the operator's uplink (a router fragments or answers "fragmentation needed" between the
 * two, as Neutron's flat external networks). */
#define MTU_DEFAULT          1450
#define MTU_EXTERNAL_DEFAULT 1500
#define MTU_MAX              9000

#define FOUND "could not be found."
const NeuKind neu_network = {"network",         "network", "networks", "networks",
                             "NetworkNotFound", "Network", FOUND};
const NeuKind neu_subnet = {"subnet",         "subnet", "subnets", "subnets",
                            "SubnetNotFound", "Subnet", FOUND};
const NeuKind neu_port = {"port", "port", "ports", "ports", "PortNotFound", "Port", FOUND};
const NeuKind neu_router = {"router",         "router", "routers", "routers",
                            "RouterNotFound", "Router", FOUND};
const NeuKind neu_floatingip = {"floatingip",         "floatingip",  "floatingips", "floatingips",
                                "FloatingIPNotFound", "Floating IP", FOUND};
const NeuKind neu_secgroup = {"security_group",  "security_group",        "security_groups",
                              "security-groups", "SecurityGroupNotFound", "Security group",
                              "does not exist."};
const NeuKind neu_sgrule = {
    "security_group_rule",  "security_group_rule",       "security_group_rules",
    "security-group-rules", "SecurityGroupRuleNotFound", "Security group rule",
    "does not exist."};

/* ---- faults and request bodies ---- */

/* A short printable form of a client's value for messages. */
void neu_repr(json_t *v, char out[80])
{
    char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    const char *t = json_is_string(v) ? json_string_value(v) : s ? s : "?";
    snprintf(out, 80, "%.60s%s", t, strlen(t) > 60 ? "..." : "");
    free(s);
}

void neu_invalid(ApiCall *c, const char *attr, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    api_fault(c, 400, "HTTPBadRequest", "Invalid input for %s. Reason: %s.", attr, reason);
}

void neu_store_fault(ApiCall *c, int r)
{
    if (r == -EEXIST)
        api_fault(c, 409, "Conflict", "The resource already exists.");
    else
        api_fault(c, 500, NULL,
                  "Request Failed: internal server error while processing your "
                  "request (%s).",
                  strerror(-r));
}

json_t *neu_body(ApiCall *c, const char *key, const char *const *allowed)
{
    json_t *b = api_body(c, key), *v;
    const char *k;
    SovBuf bad = SOV_BUF_INIT;
    if (!b)
        return NULL;
    json_object_foreach(b, k, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], k) != 0)
            i++;
        if (!allowed[i])
            sov_buf_printf(&bad, "%s%.64s", bad.len ? ", " : "", k);
    }
    if (bad.len) {
        api_fault(c, 400, "HTTPBadRequest", "Unrecognized attribute(s) '%s'", bad.ptr);
        sov_buf_release(&bad);
        return NULL;
    }
    return b;
}

/* Refuses members a PUT may not change, as Neutron words it. */
bool neu_readonly(ApiCall *c, json_t *b, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++)
        if (json_object_get(b, keys[i])) {
            api_fault(c, 400, "HTTPBadRequest", "Cannot update read-only attribute %s", keys[i]);
            return false;
        }
    return true;
}

bool neu_get_str(ApiCall *c, json_t *b, const char *key, size_t max, bool nullable,
                 const char **ret)
{
    json_t *v = json_object_get(b, key);
    char r[80];
    if (!v)
        return true;
    if (json_is_null(v) && nullable) {
        *ret = NULL;
        return true;
    }
    neu_repr(v, r);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        neu_invalid(c, key, "'%s' is not a valid string", r);
        return false;
    }
    if (json_string_length(v) > max) {
        neu_invalid(c, key, "'%s' exceeds maximum length of %zu", r, max);
        return false;
    }
    *ret = json_string_value(v);
    return true;
}

bool neu_get_bool(ApiCall *c, json_t *b, const char *key, bool *ret)
{
    json_t *v = json_object_get(b, key);
    const char *s = json_string_value(v);
    char r[80];
    if (!v)
        return true;
    if (json_is_boolean(v))
        *ret = json_is_true(v);
    else if (s && (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0))
        *ret = true;
    else if (s && (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0))
        *ret = false;
    else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        *ret = json_integer_value(v) == 1;
    else {
        neu_repr(v, r);
        neu_invalid(c, key, "'%s' cannot be converted to boolean", r);
        return false;
    }
    return true;
}

bool neu_get_int(ApiCall *c, json_t *b, const char *key, int64_t min, int64_t max, int64_t *ret)
{
    json_t *v = json_object_get(b, key);
    const char *s = json_string_value(v);
    char r[80], *end;
    int64_t n;
    if (!v)
        return true;
    neu_repr(v, r);
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (s && *s && (errno = 0, n = strtoll(s, &end, 10), !*end && errno == 0))
        ;
    else {
        neu_invalid(c, key, "'%s' is not an integer", r);
        return false;
    }
    if (n < min || n > max) {
        neu_invalid(c, key, "'%s' is too %s - must be %s '%" PRId64 "'", r,
                    n < min ? "small" : "large", n < min ? "at least" : "no larger than",
                    n < min ? min : max);
        return false;
    }
    *ret = n;
    return true;
}

bool neu_admin_only(ApiCall *c, json_t *b, const char *key)
{
    if (!json_object_get(b, key) || c->auth.system_admin)
        return true;
    api_fault(c, 403, "PolicyNotAuthorized", "(rule:%s) is disallowed by policy", key);
    return false;
}

bool neu_owner(ApiCall *c, json_t *b, char out[API_ID_LEN + 1])
{
    const char *p = NULL, *t = NULL;
    if (!neu_get_str(c, b, "project_id", 255, false, &p) ||
        !neu_get_str(c, b, "tenant_id", 255, false, &t))
        return false;
    if (p && t && strcmp(p, t) != 0) {
        api_fault(c, 400, "HTTPBadRequest", "'project_id' and 'tenant_id' do not match");
        return false;
    }
    const char *want = p ? p : t;
    if (want && strcmp(want, c->auth.project_id) != 0) {
        if (!c->auth.system_admin) {
            api_fault(c, 400, "HTTPBadRequest",
                      "Specifying 'project_id' or 'tenant_id' other than the authenticated "
                      "project in request requires admin privileges");
            return false;
        }
        if (strlen(want) != API_ID_LEN || !api_valid_id(sov_str(want))) {
            neu_invalid(c, "project_id", "'%.64s' is not a valid project id", want);
            return false;
        }
        snprintf(out, API_ID_LEN + 1, "%s", want);
        return true;
    }
    snprintf(out, API_ID_LEN + 1, "%s", c->auth.project_id);
    return true;
}

bool neu_quota(ApiCall *c, const char *project, const char *resource, int64_t delta)
{
    if (strcmp(project, c->auth.project_id) == 0)
        return api_quota_check(c, resource, delta);
    int64_t lim = api_quota_limit(c->api, project, resource);
    if (lim < 0 || api_quota_usage(c->api, project, resource) + delta <= lim)
        return true;
    api_fault(c, 409, "OverQuota", "Quota exceeded for resources: ['%s'].", resource);
    return false;
}

/* Validates an array of strings (tags, zone hints). */
bool neu_str_array(ApiCall *c, json_t *b, const char *key, size_t max_items, size_t maxlen)
{
    json_t *v = json_object_get(b, key), *e;
    size_t i;
    if (!v)
        return true;
    if (!json_is_array(v) || json_array_size(v) > max_items) {
        neu_invalid(c, key, "expected a list of at most %zu strings", max_items);
        return false;
    }
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > maxlen ||
            strlen(json_string_value(e)) != json_string_length(e)) {
            neu_invalid(c, key, "item %zu is not a string of 1 to %zu characters", i, maxlen);
            return false;
        }
    }
    return true;
}

/* Copies the plain string members of b into doc after checking them. */
bool neu_copy_strs(ApiCall *c, json_t *b, json_t *doc, const char *const *keys, size_t max)
{
    for (size_t i = 0; keys[i]; i++) {
        const char *v = NULL;
        if (!json_object_get(b, keys[i]))
            continue;
        if (!neu_get_str(c, b, keys[i], max, false, &v))
            return false;
        json_object_set_new(doc, keys[i], json_string(v));
    }
    return true;
}

bool neu_copy_bools(ApiCall *c, json_t *b, json_t *doc, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) {
        bool v;
        if (!json_object_get(b, keys[i]))
            continue;
        if (!neu_get_bool(c, b, keys[i], &v))
            return false;
        json_object_set_new(doc, keys[i], json_boolean(v));
    }
    return true;
}

/* Standard attributes every resource accepts: name/description strings and tags. */
bool neu_copy_std(ApiCall *c, json_t *b, json_t *doc)
{
    static const char *const strs[] = {"name", "description", NULL};
    if (!neu_copy_strs(c, b, doc, strs, NEU_NAME_MAX) || !neu_str_array(c, b, "tags", MAX_TAGS, 60))
        return false;
    if (json_object_get(b, "tags"))
        json_object_set(doc, "tags", json_object_get(b, "tags"));
    return true;
}

/* A member that must be null (features this cloud does not have: QoS, segments...). */
bool neu_must_be_null(ApiCall *c, json_t *b, const char *key)
{
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v))
        return true;
    neu_invalid(c, key, "this cloud does not support %s", key);
    return false;
}

/* ---- documents ---- */

const char *neu_s(json_t *doc, const char *key)
{
    const char *v = json_string_value(json_object_get(doc, key));
    return v ? v : "";
}

json_t *neu_doc_new(const char *project, const char *id)
{
    char now[32];
    api_time_iso(api_now_ms(), now);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:[]}", "id", id, "project_id", project, "tenant_id",
                     project, "created_at", now, "updated_at", now, "revision_number", 0, "tags");
}

void neu_doc_touch(json_t *doc)
{
    char now[32];
    api_time_iso(api_now_ms(), now);
    json_object_set_new(doc, "updated_at", json_string(now));
    json_object_set_new(
        doc, "revision_number",
        json_integer(json_integer_value(json_object_get(doc, "revision_number")) + 1));
}

int neu_doc_put(Api *a, const NeuKind *k, json_t *doc, bool insert)
{
    char uniq[256] = "";
    ApiDocMeta m = {.kind = k->kind,
                    .id = neu_s(doc, "id"),
                    .project = neu_s(doc, "project_id"),
                    .name = neu_s(doc, "name"),
                    .status = neu_s(doc, "status"),
                    .uniq = uniq};
    if (k == &neu_subnet || k == &neu_port)
        m.parent = neu_s(doc, "network_id");
    else if (k == &neu_sgrule)
        m.parent = neu_s(doc, "security_group_id");
    else if (k == &neu_floatingip) {
        m.parent = neu_s(doc, "floating_network_id");
        m.name = neu_s(doc, "floating_ip_address");
    }
    if (k == &neu_port) {
        m.host = neu_s(doc, "binding:host_id");
        snprintf(uniq, sizeof(uniq), "%s/%s", neu_s(doc, "network_id"), neu_s(doc, "mac_address"));
    }
    if (k == &neu_secgroup && json_is_true(json_object_get(doc, "_default")))
        snprintf(uniq, sizeof(uniq), "default/%s", neu_s(doc, "project_id"));
    return insert ? api_store_insert(a->store, &m, doc) : api_store_update(a->store, &m, doc);
}

int api_network_status_set(Api *a, const char *kind, const char *id, const char *status)
{
    const NeuKind *kinds[] = {&neu_network, &neu_port, &neu_router, &neu_floatingip};
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        json_t *doc = NULL;
        if (strcmp(kinds[i]->kind, kind) != 0)
            continue;
        int r = api_store_get(a->store, kind, id, &doc, NULL, 0);
        if (r == 0 && strcmp(neu_s(doc, "status"), status) != 0) {
            json_object_set_new(doc, "status", json_string(status));
            neu_doc_touch(doc);
            r = neu_doc_put(a, kinds[i], doc, false);
        }
        json_decref(doc);
        return r;
    }
    return -EINVAL;
}

static bool net_public(json_t *net)
{
    return json_is_true(json_object_get(net, "shared")) ||
           json_is_true(json_object_get(net, "router:external"));
}

bool neu_visible(ApiCall *c, const NeuKind *k, json_t *doc)
{
    if (c->auth.system_admin || strcmp(neu_s(doc, "project_id"), c->auth.project_id) == 0)
        return true;
    if (k == &neu_network)
        return net_public(doc);
    if (k == &neu_subnet) {
        json_t *net;
        if (api_store_get(c->api->store, "network", neu_s(doc, "network_id"), &net, NULL, 0) < 0)
            return false;
        bool pub = net_public(net);
        json_decref(net);
        return pub;
    }
    return false;
}

json_t *neu_doc_find(ApiCall *c, const NeuKind *k, const char *id)
{
    json_t *doc;
    if (!id || !*id || strlen(id) > 64 ||
        api_store_get(c->api->store, k->kind, id, &doc, NULL, 0) < 0)
        return NULL;
    if (!neu_visible(c, k, doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

void neu_not_found(ApiCall *c, const NeuKind *k, const char *id)
{
    api_fault(c, 404, k->notfound, "%s %.64s %s", k->label, id ? id : "", k->missing);
}

json_t *neu_doc_get(ApiCall *c, const NeuKind *k, const char *id)
{
    json_t *doc = neu_doc_find(c, k, id);
    if (!doc)
        neu_not_found(c, k, id);
    return doc;
}

/* Documents of kind (project and parent optional); an empty array on a store error. */
json_t *neu_list_of(Api *a, const char *kind, const char *project, const char *parent)
{
    ApiListQuery q = {.kind = kind, .project = project, .parent = parent};
    json_t *arr;
    return api_store_list(a->store, &q, &arr) < 0 ? json_array() : arr;
}

json_t *neu_list_visible(ApiCall *c, const NeuKind *k)
{
    bool cross = k == &neu_network || k == &neu_subnet;
    bool all = c->auth.system_admin;
    json_t *arr = neu_list_of(c->api, k->kind, all || cross ? NULL : c->auth.project_id, NULL);
    if (all || !cross)
        return arr;
    json_t *pub = json_object(), *out = json_array(), *v;
    size_t i;
    if (k == &neu_subnet) {
        json_t *nets = neu_list_of(c->api, "network", NULL, NULL);
        json_array_foreach(nets, i, v) if (net_public(v))
            json_object_set_new(pub, neu_s(v, "id"), json_true());
        json_decref(nets);
    }
    json_array_foreach(arr, i, v)
    {
        if (strcmp(neu_s(v, "project_id"), c->auth.project_id) == 0 ||
            (k == &neu_network ? net_public(v) : !!json_object_get(pub, neu_s(v, "network_id"))))
            json_array_append(out, v);
    }
    json_decref(pub);
    json_decref(arr);
    return out;
}

/* Ownership for changes: the resource's project or the admin (visible ones of others, like
 * shared networks, are refused with 403). */
bool neu_may_change(ApiCall *c, json_t *doc)
{
    if (c->auth.system_admin || strcmp(neu_s(doc, "project_id"), c->auth.project_id) == 0)
        return true;
    api_fault(c, 403, "PolicyNotAuthorized", "Policy does not allow this operation on %s.",
              neu_s(doc, "id"));
    return false;
}

/* ---- answers ---- */

static bool reserved_key(const char *k)
{
    static const char *const keys[] = {
        "fields",   "limit",    "marker",       "page_reverse", "sort_key",     "sort_dir", "tags",
        "tags-any", "not-tags", "not-tags-any", "all_tenants",  "all_projects", NULL};
    for (size_t i = 0; keys[i]; i++)
        if (strcmp(keys[i], k) == 0)
            return true;
    return false;
}

/* Does one document value match one query value? */
static bool value_match(json_t *v, const char *q)
{
    char buf[32];
    size_t i;
    json_t *e;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strcmp(json_string_value(v), q) == 0;
    case JSON_TRUE:
        return strcasecmp(q, "true") == 0 || strcmp(q, "1") == 0;
    case JSON_FALSE:
        return strcasecmp(q, "false") == 0 || strcmp(q, "0") == 0;
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strcmp(buf, q) == 0;
    case JSON_NULL:
        return !*q || strcmp(q, "None") == 0 || strcmp(q, "null") == 0;
    case JSON_ARRAY: /* a member (security_groups=X) or, for objects, k=v (fixed_ips) */
        json_array_foreach(v, i, e)
        {
            const char *eq = strchr(q, '=');
            if (json_is_object(e) && eq) {
                char key[64];
                snprintf(key, sizeof(key), "%.*s", (int)SOV_MIN((size_t)(eq - q), 63), q);
                json_t *m = json_object_get(e, key);
                if (m && value_match(m, eq + 1))
                    return true;
            } else if (!json_is_object(e) && value_match(e, q))
                return true;
        }
        return false;
    default:
        return false;
    }
}

static bool tags_match(json_t *tags, const char *list, bool all)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    bool any = false;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        json_t *wrapped = json_string(t);
        bool has = false;
        size_t i;
        json_t *e;
        json_array_foreach(tags, i, e) has = has || json_equal(e, wrapped);
        json_decref(wrapped);
        if (all && !has)
            return false;
        any = any || has;
    }
    return all || any;
}

static bool doc_match(json_t *doc, const ApiQueryPair *qp, size_t n)
{
    json_t *tags = json_object_get(doc, "tags");
    for (size_t i = 0; i < n; i++) {
        const char *k = qp[i].key;
        if (strcmp(k, "tags") == 0 && !tags_match(tags, qp[i].value, true))
            return false;
        if (strcmp(k, "tags-any") == 0 && !tags_match(tags, qp[i].value, false))
            return false;
        if (strcmp(k, "not-tags") == 0 && tags_match(tags, qp[i].value, true))
            return false;
        if (strcmp(k, "not-tags-any") == 0 && tags_match(tags, qp[i].value, false))
            return false;
        if (reserved_key(k) || k[0] == '_')
            continue;
        json_t *v = json_object_get(doc, k);
        bool seen = false, ok = false;
        for (size_t j = 0; j < i; j++)
            seen = seen || strcmp(qp[j].key, k) == 0;
        if (!v || seen)
            continue; /* unknown filters are ignored, as Neutron without filter-validation */
        for (size_t j = i; j < n && !ok; j++)
            ok = strcmp(qp[j].key, k) == 0 && value_match(v, qp[j].value);
        if (!ok)
            return false;
    }
    return true;
}

/* The public form of doc for this caller, reduced to fields= when asked (steals doc). */
static json_t *present(ApiCall *c, const NeuKind *k, json_t *doc)
{
    const char *f[64];
    size_t n = api_query_all(c, "fields", f, ELEMENTSOF(f));
    api_doc_public(doc);
    if (k == &neu_port && !c->auth.system_admin) {
        json_object_del(doc, "binding:host_id");
        json_object_del(doc, "binding:profile");
        json_object_del(doc, "binding:vif_details");
        json_object_del(doc, "binding:vif_type");
    }
    if (!n)
        return doc;
    json_t *out = json_object();
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", f[i]);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (json_object_get(doc, t))
                json_object_set(out, t, json_object_get(doc, t));
    }
    json_decref(doc);
    return out;
}

void neu_reply_doc(ApiCall *c, int status, const NeuKind *k, json_t *doc)
{
    json_t *out = json_object();
    json_object_set_new(out, k->key, present(c, k, doc));
    api_reply(c, status, out);
}

void neu_reply_list(ApiCall *c, const NeuKind *k, json_t *arr)
{
    ApiQueryPair qp[64];
    size_t n = api_query_pairs(c, qp, ELEMENTSOF(qp)), i, start = 0;
    int limit = api_query_limit(c, 0, 100000);
    const char *marker = api_query(c, "marker");
    json_t *v, *items = json_array(), *out = json_object();
    if (limit < 0) {
        json_decref(arr);
        json_decref(items);
        json_decref(out);
        return;
    }
    json_t *matched = json_array();
    json_array_foreach(arr, i, v) if (doc_match(v, qp, n)) json_array_append(matched, v);
    json_decref(arr);
    if (marker) {
        json_array_foreach(matched, i, v) if (strcmp(neu_s(v, "id"), marker) == 0) start = i + 1;
    }
    size_t total = json_array_size(matched), end = total;
    if (limit > 0 && start + (size_t)limit < total)
        end = start + (size_t)limit;
    for (i = start; i < end; i++)
        json_array_append_new(items, present(c, k, json_incref(json_array_get(matched, i))));
    json_object_set_new(out, k->collection, items);
    if (end < total) {
        SovBuf href = SOV_BUF_INIT;
        sov_buf_printf(&href, "%s" NEU_PREFIX "/%s?limit=%d&marker=%s", api_public_url(c->api),
                       k->path, limit, neu_s(json_array_get(matched, end - 1), "id"));
        for (i = 0; i < n; i++)
            if (strcmp(qp[i].key, "limit") != 0 && strcmp(qp[i].key, "marker") != 0) {
                /* filters travel on in the link; values are ids and names, so escape the
                 * few characters that would break it */
                sov_buf_printf(&href, "&%s=", qp[i].key);
                for (const char *p = qp[i].value; *p; p++)
                    if (strchr("&=#%+ ?", *p))
                        sov_buf_printf(&href, "%%%02X", (unsigned char)*p);
                    else
                        sov_buf_putc(&href, *p);
            }
        char key[64];
        snprintf(key, sizeof(key), "%s_links", k->collection);
        json_object_set_new(out, key, json_pack("[{s:s,s:s}]", "rel", "next", "href", href.ptr));
        sov_buf_release(&href);
    }
    json_decref(matched);
    api_reply(c, 200, out);
}

ApiCall *neu_begin(SovHttpReq *req, void *ud, ApiNeed need)
{
    return api_begin(ud, req, API_STYLE_NEUTRON, need);
}

/* Runs a group of writes as one transaction: commit, or the store's fault. */
bool neu_commit(ApiCall *c)
{
    int r = api_store_commit(c->api->store);
    if (r < 0)
        neu_store_fault(c, r);
    return r == 0;
}

/* ---- version documents and extensions ---- */

static void h_versions(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_NONE);
    char href[600];
    if (!c)
        return;
    snprintf(href, sizeof(href), "%s/network/v2.0/", api_public_url(c->api));
    api_reply(c, 200,
              json_pack("{s:[{s:s,s:s,s:[{s:s,s:s}]}]}", "versions", "id", "v2.0", "status",
                        "CURRENT", "links", "rel", "self", "href", href));
}

static void h_resources(SovHttpReq *req, void *ud)
{
    const NeuKind *kinds[] = {&neu_network,    &neu_subnet,   &neu_port,  &neu_router,
                              &neu_floatingip, &neu_secgroup, &neu_sgrule};
    ApiCall *c = neu_begin(req, ud, API_NEED_NONE);
    if (!c)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        char href[600];
        snprintf(href, sizeof(href), "%s" NEU_PREFIX "/%s", api_public_url(c->api), kinds[i]->path);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "name", kinds[i]->key,
                                             "collection", kinds[i]->collection, "links", "rel",
                                             "self", "href", href));
    }
    api_reply(c, 200, json_pack("{s:o}", "resources", arr));
}

/* The extensions this API really implements (alias, name): clients such as openstacksdk
 * adapt to the list. */
static const char *const extensions[][2] = {
    {"router", "Neutron L3 Router"},
    {"ext-gw-mode", "Neutron L3 Configurable external gateway mode"},
    {"extraroute", "Neutron Extra Route"},
    {"external-net", "Neutron external network"},
    {"security-group", "security-group"},
    {"port-security", "Port Security"},
    {"allowed-address-pairs", "Allowed Address Pairs"},
    {"dns-integration", "DNS Integration"},
    {"binding", "Port Binding"},
    {"quotas", "Quota management support"},
    {"quota_details", "Quota details management support"},
    {"net-mtu", "Network MTU"},
    {"project-id", "project_id field enabled"},
    {"standard-attr-description", "standard-attr-description"},
    {"standard-attr-timestamp", "Resource timestamps"},
    {"standard-attr-revisions", "Resource revision numbers"},
    {"pagination", "Pagination support"},
    {"agent", "agent"},
    {"l3_agent_scheduler", "L3 Agent Scheduler"},
    {"dhcp_agent_scheduler", "DHCP Agent Scheduler"},
};

static json_t *extension_json(size_t i)
{
    return json_pack("{s:s,s:s,s:s,s:[],s:s}", "alias", extensions[i][0], "name", extensions[i][1],
                     "description", extensions[i][1], "links", "updated",
                     "2013-01-01T00:00:00-00:00");
}

static void h_extensions(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (!c)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < ELEMENTSOF(extensions); i++)
        json_array_append_new(arr, extension_json(i));
    api_reply(c, 200, json_pack("{s:o}", "extensions", arr));
}

static void h_extension(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (!c)
        return;
    const char *alias = api_param(c, "alias");
    for (size_t i = 0; i < ELEMENTSOF(extensions); i++)
        if (alias && strcmp(alias, extensions[i][0]) == 0) {
            api_reply(c, 200, json_pack("{s:o}", "extension", extension_json(i)));
            return;
        }
    api_fault(c, 404, "HTTPNotFound", "Extension with alias %.64s does not exist",
              alias ? alias : "");
}

/* ---- quotas ---- */

static const char *const quota_res[] = {
    "network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule",
    NULL};

static int64_t quota_default(Api *a, size_t i)
{
    const int64_t v[] = {a->cfg.quota_networks,
                         a->cfg.quota_subnets,
                         a->cfg.quota_ports,
                         a->cfg.quota_routers,
                         a->cfg.quota_floatingips,
                         a->cfg.quota_security_groups,
                         a->cfg.quota_security_group_rules};
    return v[i];
}

enum { QUOTA_LIMITS, QUOTA_DEFAULTS, QUOTA_DETAILS };

static json_t *quota_json(Api *a, const char *project, int mode)
{
    json_t *q = json_object();
    for (size_t i = 0; quota_res[i]; i++) {
        int64_t lim = mode == QUOTA_DEFAULTS ? quota_default(a, i)
                                             : api_quota_limit(a, project, quota_res[i]);
        if (mode == QUOTA_DETAILS)
            json_object_set_new(q, quota_res[i],
                                json_pack("{s:I,s:I,s:i}", "used",
                                          (json_int_t)api_quota_usage(a, project, quota_res[i]),
                                          "limit", (json_int_t)lim, "reserved", 0));
        else
            json_object_set_new(q, quota_res[i], json_integer(lim));
    }
    return q;
}

/* The project of a quota URL, when the caller may read it. */
static const char *quota_project(ApiCall *c)
{
    const char *p = api_param(c, "project_id");
    if (!p || strlen(p) > 64) {
        api_fault(c, 404, "HTTPNotFound", "The resource could not be found.");
        return NULL;
    }
    if (!c->auth.system_admin && strcmp(p, c->auth.project_id) != 0) {
        api_fault(c, 403, "PolicyNotAuthorized",
                  "Only admin is authorized to access quotas for another tenant");
        return NULL;
    }
    return p;
}

/* GET /quotas/{project_id}[/default|/details] */
static void h_quota_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    const char *p = c ? quota_project(c) : NULL;
    SovStr path = sov_http_req_path(req);
    bool dflt = path.len > 8 && !memcmp(path.ptr + path.len - 8, "/default", 8);
    bool details = path.len > 8 && !memcmp(path.ptr + path.len - 8, "/details", 8);
    if (p)
        api_reply(c, 200,
                  json_pack("{s:o}", "quota",
                            quota_json(c->api, p,
                                       dflt      ? QUOTA_DEFAULTS
                                       : details ? QUOTA_DETAILS
                                                 : QUOTA_LIMITS)));
}

static void h_quota_put(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"network",
                                       "subnet",
                                       "port",
                                       "router",
                                       "floatingip",
                                       "security_group",
                                       "security_group_rule",
                                       "check_limit",
                                       "force",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_ADMIN);
    const char *p = c ? quota_project(c) : NULL;
    json_t *b = p ? neu_body(c, "quota", keys) : NULL;
    int64_t v[ELEMENTSOF(quota_res)];
    bool check = false;
    if (!b || !neu_get_bool(c, b, "check_limit", &check))
        return;
    snprintf(c->target, sizeof(c->target), "%s", p);
    for (size_t i = 0; quota_res[i]; i++) {
        v[i] = INT64_MIN;
        if (!neu_get_int(c, b, quota_res[i], -1, INT32_MAX, &v[i]))
            return;
        int64_t used = api_quota_usage(c->api, p, quota_res[i]);
        if (check && v[i] >= 0 && v[i] < used) {
            api_fault(c, 400, "InvalidQuotaValue",
                      "Quota limit %" PRId64 " for %s must be greater than or equal to already "
                      "used and reserved %" PRId64 ".",
                      v[i], quota_res[i], used);
            return;
        }
    }
    int r = api_store_begin(c->api->store);
    for (size_t i = 0; r == 0 && quota_res[i]; i++)
        if (v[i] != INT64_MIN)
            r = api_quota_set(c->api, p, quota_res[i], v[i]);
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        api_reply(c, 200, json_pack("{s:o}", "quota", quota_json(c->api, p, QUOTA_LIMITS)));
}

static void h_quota_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_ADMIN);
    const char *p = c ? quota_project(c) : NULL;
    json_t *doc;
    if (!p)
        return;
    snprintf(c->target, sizeof(c->target), "%s", p);
    /* The quota document is shared with Nova and Cinder: forget only Neutron's limits. */
    if (api_store_get(c->api->store, "quota", p, &doc, NULL, 0) == 0) {
        for (size_t i = 0; quota_res[i]; i++)
            json_object_del(doc, quota_res[i]);
        ApiDocMeta m = {.kind = "quota", .id = p, .project = p};
        int r = api_store_update(c->api->store, &m, doc);
        json_decref(doc);
        if (r < 0) {
            neu_store_fault(c, r);
            return;
        }
    }
    api_reply(c, 204, NULL);
}

/* ---- networks ---- */

static bool net_apply(ApiCall *c, json_t *b, json_t *doc)
{
    static const char *const bools[] = {
        "admin_state_up", "port_security_enabled", "shared", "router:external", "is_default", NULL};
    static const char *const provider[] = {"provider:network_type", "provider:physical_network",
                                           NULL};
    int64_t mtu = 0, seg = 0;
    const char *dns = NULL;
    if (!neu_admin_only(c, b, "shared") || !neu_admin_only(c, b, "router:external") ||
        !neu_admin_only(c, b, "is_default") || !neu_admin_only(c, b, "provider:network_type") ||
        !neu_admin_only(c, b, "provider:physical_network") ||
        !neu_admin_only(c, b, "provider:segmentation_id") || !neu_copy_std(c, b, doc) ||
        !neu_copy_bools(c, b, doc, bools) || !neu_copy_strs(c, b, doc, provider, 64) ||
        !neu_get_int(c, b, "mtu", 68, MTU_MAX, &mtu) ||
        !neu_get_int(c, b, "provider:segmentation_id", 0, 16777215, &seg) ||
        !neu_get_str(c, b, "dns_domain", 255, false, &dns) ||
        !neu_str_array(c, b, "availability_zone_hints", 8, 64) ||
        !neu_must_be_null(c, b, "qos_policy_id"))
        return false;
    if (mtu)
        json_object_set_new(doc, "mtu", json_integer(mtu));
    if (json_object_get(b, "provider:segmentation_id"))
        json_object_set_new(doc, "provider:segmentation_id", json_integer(seg));
    if (dns && !neu_dns_domain_ok(dns)) {
        neu_invalid(c, "dns_domain", "'%.80s' is not a valid domain name", dns);
        return false;
    }
    if (dns)
        json_object_set_new(doc, "dns_domain", json_string(dns));
    if (json_object_get(b, "availability_zone_hints"))
        json_object_set(doc, "availability_zone_hints",
                        json_object_get(b, "availability_zone_hints"));
    return true;
}

static void h_net_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c)
        neu_reply_list(c, &neu_network, neu_list_visible(c, &neu_network));
}

static void h_net_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *doc = c ? neu_doc_get(c, &neu_network, api_param(c, "id")) : NULL;
    if (doc)
        neu_reply_doc(c, 200, &neu_network, doc);
}

static void h_net_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "admin_state_up",
                                       "shared",
                                       "router:external",
                                       "mtu",
                                       "project_id",
                                       "tenant_id",
                                       "availability_zone_hints",
                                       "tags",
                                       "port_security_enabled",
                                       "is_default",
                                       "dns_domain",
                                       "qos_policy_id",
                                       "provider:network_type",
                                       "provider:physical_network",
                                       "provider:segmentation_id",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "network", keys) : NULL;
    char project[API_ID_LEN + 1], id[API_UUID_LEN + 1];
    if (!b || !neu_owner(c, b, project) || !neu_quota(c, project, "network", 1))
        return;
    api_new_uuid(id);
    json_t *doc = neu_doc_new(project, id);
    json_object_update_new(
        doc, json_pack("{s:s,s:s,s:b,s:s,s:[],s:b,s:b,s:i,s:b,s:[],s:[],s:n,s:n,"
                       "s:b}",
                       "name", "", "description", "", "admin_state_up", 1, "status", "ACTIVE",
                       "subnets", "shared", 0, "router:external", 0, "mtu", MTU_DEFAULT,
                       "port_security_enabled", 1, "availability_zone_hints", "availability_zones",
                       "ipv4_address_scope", "ipv6_address_scope", "l2_adjacency", 1));
    if (!net_apply(c, b, doc)) {
        json_decref(doc);
        return;
    }
    if (!json_object_get(b, "mtu") && json_is_true(json_object_get(doc, "router:external")))
        json_object_set_new(doc, "mtu", json_integer(MTU_EXTERNAL_DEFAULT));
    snprintf(c->target, sizeof(c->target), "%s", id);
    int r = neu_doc_put(c->api, &neu_network, doc, true);
    if (r < 0) {
        json_decref(doc);
        neu_store_fault(c, r);
        return;
    }
    neu_reply_doc(c, 201, &neu_network, doc);
}

/* Ports on a network, optionally only those of other projects than skip_project. */
static bool net_has_ports(Api *a, const char *net_id, const char *skip_project, bool skip_dhcp,
                          bool only_external_users)
{
    json_t *ports = neu_list_of(a, "port", NULL, net_id), *p;
    size_t i;
    bool found = false;
    json_array_foreach(ports, i, p)
    {
        const char *owner = neu_s(p, "device_owner");
        if (skip_dhcp && strcmp(owner, OWNER_DHCP) == 0)
            continue;
        if (skip_project &&
            (strcmp(neu_s(p, "project_id"), skip_project) == 0 || !neu_s(p, "project_id")[0]))
            continue;
        if (only_external_users && strcmp(owner, OWNER_RGW) != 0 && strcmp(owner, OWNER_FIP) != 0)
            continue;
        found = true;
    }
    json_decref(ports);
    return found;
}

static void h_net_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "admin_state_up",
                                       "shared",
                                       "router:external",
                                       "mtu",
                                       "tags",
                                       "port_security_enabled",
                                       "is_default",
                                       "dns_domain",
                                       "qos_policy_id",
                                       "id",
                                       "project_id",
                                       "tenant_id",
                                       "status",
                                       "subnets",
                                       "provider:network_type",
                                       "provider:physical_network",
                                       "provider:segmentation_id",
                                       NULL};
    static const char *const ro[] = {"id", "project_id", "tenant_id", "status", "subnets", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "network", keys) : NULL;
    json_t *doc =
        b && neu_readonly(c, b, ro) ? neu_doc_get(c, &neu_network, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    bool was_ext = json_is_true(json_object_get(doc, "router:external"));
    bool was_shared = json_is_true(json_object_get(doc, "shared"));
    if (!neu_may_change(c, doc) || !net_apply(c, b, doc))
        goto out;
    if (was_ext && !json_is_true(json_object_get(doc, "router:external")) &&
        net_has_ports(c->api, neu_s(doc, "id"), NULL, true, true)) {
        api_fault(c, 409, "ExternalNetworkInUse",
                  "External network %s cannot be updated to be non-external, since it has "
                  "existing gateway ports.",
                  neu_s(doc, "id"));
        goto out;
    }
    if (was_shared && !json_is_true(json_object_get(doc, "shared")) &&
        net_has_ports(c->api, neu_s(doc, "id"), neu_s(doc, "project_id"), true, false)) {
        api_fault(c, 409, "InvalidSharedSetting",
                  "Unable to reconfigure sharing settings for network %s. Multiple tenants are "
                  "using it.",
                  neu_s(doc, "id"));
        goto out;
    }
    neu_doc_touch(doc);
    int r = neu_doc_put(c->api, &neu_network, doc, false);
    if (r < 0) {
        neu_store_fault(c, r);
        goto out;
    }
    neu_reply_doc(c, 200, &neu_network, json_incref(doc));
out:
    json_decref(doc);
}

static void h_net_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *doc = c ? neu_doc_get(c, &neu_network, api_param(c, "id")) : NULL, *v;
    size_t i;
    if (!doc)
        return;
    const char *id = neu_s(doc, "id");
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (!neu_may_change(c, doc))
        goto out;
    if (net_has_ports(c->api, id, NULL, true, false)) {
        api_fault(c, 409, "NetworkInUse",
                  "Unable to complete operation on network %s. There are one or more ports "
                  "still in use on the network.",
                  id);
        goto out;
    }
    /* Subnets go with their network, as in Neutron, and so do DHCP ports. */
    ApiStore *s = c->api->store;
    json_t *subnets = neu_list_of(c->api, "subnet", NULL, id);
    int r = api_store_begin(s);
    json_array_foreach(subnets, i, v) if (r >= 0) r =
        api_store_delete_children(s, "ipalloc", neu_s(v, "id"));
    json_decref(subnets);
    if (r >= 0)
        r = api_store_delete_children(s, "port", id);
    if (r >= 0)
        r = api_store_delete_children(s, "subnet", id);
    if (r >= 0)
        r = api_store_delete(s, "network", id);
    if (r < 0) {
        api_store_rollback(s);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        api_reply(c, 204, NULL);
out:
    json_decref(doc);
}

/* ---- subnets ---- */

/* Adds or removes a subnet id in its network's list. */
static int net_subnets_edit(Api *a, const char *net_id, const char *subnet_id, bool add)
{
    json_t *net, *v;
    size_t i;
    int r = api_store_get(a->store, "network", net_id, &net, NULL, 0);
    if (r < 0)
        return r;
    json_t *arr = json_object_get(net, "subnets");
    if (add)
        json_array_append_new(arr, json_string(subnet_id));
    else
        json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), subnet_id) == 0)
        {
            json_array_remove(arr, i);
            break;
        }
    neu_doc_touch(net);
    r = neu_doc_put(a, &neu_network, net, false);
    json_decref(net);
    return r;
}

static void h_subnet_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "network_id",
                                       "ip_version",
                                       "cidr",
                                       "gateway_ip",
                                       "allocation_pools",
                                       "enable_dhcp",
                                       "dns_nameservers",
                                       "host_routes",
                                       "project_id",
                                       "tenant_id",
                                       "ipv6_ra_mode",
                                       "ipv6_address_mode",
                                       "subnetpool_id",
                                       "use_default_subnetpool",
                                       "prefixlen",
                                       "service_types",
                                       "segment_id",
                                       "tags",
                                       NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "subnet", keys) : NULL, *net = NULL, *doc = NULL, *v;
    char project[API_ID_LEN + 1], id[API_UUID_LEN + 1], cs[IPAM_CIDR_STRLEN], g[IPAM_ADDR_STRLEN];
    const char *net_id = NULL, *cidr_s = NULL;
    int64_t version = 0;
    bool dhcp = true, has_gw = true, use_default = false;
    IpamCidr cidr;
    IpamAddr gw;
    IpamRange pools[IPAM_MAX_POOLS];
    size_t npools = 0, i;
    if (!b || !neu_owner(c, b, project) || !neu_get_str(c, b, "network_id", 64, false, &net_id) ||
        !neu_get_str(c, b, "cidr", IPAM_CIDR_STRLEN, false, &cidr_s) ||
        !neu_get_int(c, b, "ip_version", 4, 6, &version) ||
        !neu_get_bool(c, b, "enable_dhcp", &dhcp) ||
        !neu_get_bool(c, b, "use_default_subnetpool", &use_default) ||
        !neu_must_be_null(c, b, "subnetpool_id") || !neu_must_be_null(c, b, "segment_id") ||
        !neu_must_be_null(c, b, "prefixlen") || !neu_str_array(c, b, "service_types", 8, 255))
        return;
    if (!net_id) {
        api_fault(c, 400, "HTTPBadRequest",
                  "Failed to parse request. Required attribute "
                  "'network_id' not specified");
        return;
    }
    if (!(net = neu_doc_get(c, &neu_network, net_id)))
        return;
    if (!c->auth.system_admin && strcmp(neu_s(net, "project_id"), c->auth.project_id) != 0) {
        api_fault(c, 403, "PolicyNotAuthorized", "(rule:create_subnet) is disallowed by policy");
        goto out;
    }
    if (!cidr_s || use_default) {
        api_fault(c, 400, "BadRequest",
                  "Bad subnet request: a subnetpool must be specified in "
                  "the absence of a cidr.");
        goto out;
    }
    if (version == 5) {
        neu_invalid(c, "ip_version", "'5' is not in [4, 6]");
        goto out;
    }
    if (ipam_cidr_parse(cidr_s, false, &cidr) < 0) {
        neu_invalid(c, "cidr", "'%s' is not a valid IP subnet", cidr_s);
        goto out;
    }
    ipam_cidr_str(&cidr, cs);
    if (version && version != cidr.addr.family) {
        api_fault(c, 400, "InvalidInput",
                  "Invalid input for operation: cidr '%s' does not match the ip_version '%d'.", cs,
                  (int)version);
        goto out;
    }
    if (cidr.prefix == 0) {
        api_fault(c, 400, "InvalidInput",
                  "Invalid input for operation: 0 is not allowed as CIDR prefix length.");
        goto out;
    }
    if (dhcp && ipam_cidr_special(&cidr)) {
        api_fault(c, 400, "InvalidInput",
                  "Invalid input for operation: Loopback and multicast "
                  "IP subnets are not supported if enable_dhcp is True.");
        goto out;
    }
    json_t *siblings = neu_list_of(c->api, "subnet", NULL, net_id);
    json_array_foreach(siblings, i, v)
    {
        IpamCidr other;
        if (ipam_cidr_parse(neu_s(v, "cidr"), false, &other) == 0 &&
            ipam_cidr_overlaps(&cidr, &other)) {
            api_fault(c, 400, "InvalidInput",
                      "Invalid input for operation: Requested subnet with cidr: %s for network: "
                      "%s overlaps with another subnet.",
                      cs, net_id);
            json_decref(siblings);
            goto out;
        }
    }
    json_decref(siblings);
    /* the gateway defaults to the first host address, as in Neutron */
    ipam_cidr_first(&cidr, &gw);
    ipam_addr_inc(&gw);
    has_gw = cidr.prefix + 1 < ipam_family_bits(cidr.addr.family);
    if (json_object_get(b, "gateway_ip") && !ipam_gateway_parse(c, b, &cidr, &gw, &has_gw))
        goto out;
    if (json_is_array(json_object_get(b, "allocation_pools")) ||
        (json_object_get(b, "allocation_pools") &&
         !json_is_null(json_object_get(b, "allocation_pools")))) {
        if (!ipam_pools_parse(c, json_object_get(b, "allocation_pools"), pools, &npools) ||
            !ipam_pools_valid(c, &cidr, pools, npools, has_gw ? &gw : NULL))
            goto out;
    } else
        npools = ipam_pools_default(&cidr, has_gw ? &gw : NULL, pools, IPAM_MAX_POOLS);
    if (!neu_quota(c, project, "subnet", 1))
        goto out;
    api_new_uuid(id);
    ipam_addr_str(&gw, g);
    doc = neu_doc_new(project, id);
    json_object_update_new(
        doc, json_pack("{s:s,s:s,s:s,s:i,s:s,s:o,s:o,s:b,s:[],s:[],s:n,s:n,s:n,s:[],s:n}", "name",
                       "", "description", "", "network_id", neu_s(net, "id"), "ip_version",
                       (int)cidr.addr.family, "cidr", cs, "gateway_ip",
                       has_gw ? json_string(g) : json_null(), "allocation_pools",
                       ipam_pools_json(pools, npools), "enable_dhcp", dhcp, "dns_nameservers",
                       "host_routes", "ipv6_ra_mode", "ipv6_address_mode", "subnetpool_id",
                       "service_types", "segment_id"));
    if (!neu_copy_std(c, b, doc) || !ipam_dns_routes(c, b, doc, &cidr) ||
        !ipam_ipv6_modes(c, b, doc, cidr.addr.family))
        goto out;
    if (json_object_get(b, "service_types"))
        json_object_set(doc, "service_types", json_object_get(b, "service_types"));
    snprintf(c->target, sizeof(c->target), "%s", id);
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = neu_doc_put(c->api, &neu_subnet, doc, true);
    if (r == 0)
        r = net_subnets_edit(c->api, neu_s(net, "id"), id, true);
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (dhcp && !neu_subnet_dhcp_port(c, net, doc)) {
        api_store_rollback(c->api->store); /* answered */
    } else if (neu_commit(c))
        neu_reply_doc(c, 201, &neu_subnet, json_incref(doc));
out:
    json_decref(doc);
    json_decref(net);
}

static void h_subnet_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    if (c)
        neu_reply_list(c, &neu_subnet, neu_list_visible(c, &neu_subnet));
}

static void h_subnet_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_READ);
    json_t *doc = c ? neu_doc_get(c, &neu_subnet, api_param(c, "id")) : NULL;
    if (doc)
        neu_reply_doc(c, 200, &neu_subnet, doc);
}

static void h_subnet_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name",
                                       "description",
                                       "gateway_ip",
                                       "allocation_pools",
                                       "enable_dhcp",
                                       "dns_nameservers",
                                       "host_routes",
                                       "tags",
                                       "service_types",
                                       "id",
                                       "cidr",
                                       "ip_version",
                                       "network_id",
                                       "project_id",
                                       "tenant_id",
                                       "subnetpool_id",
                                       "ipv6_ra_mode",
                                       "ipv6_address_mode",
                                       NULL};
    static const char *const ro[] = {
        "id",        "cidr",          "ip_version",   "network_id",        "project_id",
        "tenant_id", "subnetpool_id", "ipv6_ra_mode", "ipv6_address_mode", NULL};
    static const char *const bools[] = {"enable_dhcp", NULL};
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *b = c ? neu_body(c, "subnet", keys) : NULL;
    json_t *doc =
        b && neu_readonly(c, b, ro) ? neu_doc_get(c, &neu_subnet, api_param(c, "id")) : NULL;
    IpamCidr cidr;
    IpamAddr gw, old_gw;
    IpamRange pools[IPAM_MAX_POOLS];
    size_t npools;
    bool has_gw, had_gw;
    char g[IPAM_ADDR_STRLEN];
    if (!doc)
        return;
    bool dhcp_was = json_is_true(json_object_get(doc, "enable_dhcp"));
    snprintf(c->target, sizeof(c->target), "%s", neu_s(doc, "id"));
    if (!neu_may_change(c, doc) || ipam_subnet_read(doc, &cidr, &gw, &has_gw, pools, &npools) < 0 ||
        !neu_copy_std(c, b, doc) || !neu_copy_bools(c, b, doc, bools) ||
        !ipam_dns_routes(c, b, doc, &cidr) || !neu_str_array(c, b, "service_types", 8, 255))
        goto out;
    old_gw = gw;
    had_gw = has_gw;
    if (json_object_get(b, "gateway_ip") && !ipam_gateway_parse(c, b, &cidr, &gw, &has_gw))
        goto out;
    if (json_object_get(b, "allocation_pools") &&
        !ipam_pools_parse(c, json_object_get(b, "allocation_pools"), pools, &npools))
        goto out;
    if (!ipam_pools_valid(c, &cidr, pools, npools, has_gw ? &gw : NULL))
        goto out;
    if (has_gw != had_gw || (has_gw && !ipam_addr_eq(&gw, &old_gw))) {
        /* the gateway address moves only when nothing (a router) holds either address */
        json_t *held = had_gw ? ipam_alloc_get(c->api->store, neu_s(doc, "id"), &old_gw) : NULL;
        if (!held && has_gw)
            held = ipam_alloc_get(c->api->store, neu_s(doc, "id"), &gw);
        if (held) {
            api_fault(c, 409, "GatewayIpInUse",
                      "Current gateway ip %s already in use by port %s. Unable to update.",
                      neu_s(held, "ip_address"), neu_s(held, "port_id"));
            json_decref(held);
            goto out;
        }
        ipam_addr_str(&gw, g);
        json_object_set_new(doc, "gateway_ip", has_gw ? json_string(g) : json_null());
    }
    json_object_set_new(doc, "allocation_pools", ipam_pools_json(pools, npools));
    if (json_object_get(b, "service_types"))
        json_object_set(doc, "service_types", json_object_get(b, "service_types"));
    neu_doc_touch(doc);
    bool dhcp_now = json_is_true(json_object_get(doc, "enable_dhcp"));
    json_t *net =
        dhcp_now != dhcp_was ? neu_doc_get(c, &neu_network, neu_s(doc, "network_id")) : NULL;
    if (dhcp_now != dhcp_was && !net)
        goto out; /* answered */
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = neu_doc_put(c->api, &neu_subnet, doc, false);
    if (r == 0 && dhcp_was && !dhcp_now)
        r = neu_subnet_dhcp_drop(c->api, doc);
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (!dhcp_was && dhcp_now && !neu_subnet_dhcp_port(c, net, doc)) {
        api_store_rollback(c->api->store); /* answered */
    } else if (neu_commit(c))
        neu_reply_doc(c, 200, &neu_subnet, json_incref(doc));
    json_decref(net);
out:
    json_decref(doc);
}

static void h_subnet_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = neu_begin(req, ud, API_NEED_WRITE);
    json_t *doc = c ? neu_doc_get(c, &neu_subnet, api_param(c, "id")) : NULL;
    if (!doc)
        return;
    const char *id = neu_s(doc, "id");
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (!neu_may_change(c, doc))
        goto out;
    int r = api_store_begin(c->api->store);
    if (r == 0)
        r = neu_subnet_dhcp_drop(c->api, doc); /* its DHCP port goes with it */
    if (r == 0 && ipam_subnet_count(c->api->store, id) > 0) {
        api_store_rollback(c->api->store);
        api_fault(c, 409, "SubnetInUse",
                  "Unable to complete operation on subnet %s: One or more ports have an IP "
                  "allocation from this subnet.",
                  id);
        goto out;
    }
    if (r == 0)
        r = api_store_delete(c->api->store, "subnet", id);
    if (r == 0)
        r = net_subnets_edit(c->api, neu_s(doc, "network_id"), id, false);
    if (r < 0) {
        api_store_rollback(c->api->store);
        neu_store_fault(c, r);
    } else if (neu_commit(c))
        api_reply(c, 204, NULL);
out:
    json_decref(doc);
}

/* ---- routes ---- */

void api_network_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", "/network", h_versions},
        {"GET", "/network/", h_versions},
        {"GET", NEU_PREFIX, h_resources},
        {"GET", NEU_PREFIX "/", h_resources},
        {"GET", NEU_PREFIX "/extensions", h_extensions},
        {"GET", NEU_PREFIX "/extensions/{alias}", h_extension},
        {"GET", NEU_PREFIX "/quotas/{project_id}", h_quota_show},
        {"PUT", NEU_PREFIX "/quotas/{project_id}", h_quota_put},
        {"DELETE", NEU_PREFIX "/quotas/{project_id}", h_quota_delete},
        {"GET", NEU_PREFIX "/quotas/{project_id}/default", h_quota_show},
        {"GET", NEU_PREFIX "/quotas/{project_id}/details", h_quota_show},
        {"GET", NEU_PREFIX "/networks", h_net_list},
        {"POST", NEU_PREFIX "/networks", h_net_create},
        {"GET", NEU_PREFIX "/networks/{id}", h_net_show},
        {"PUT", NEU_PREFIX "/networks/{id}", h_net_update},
        {"DELETE", NEU_PREFIX "/networks/{id}", h_net_delete},
        {"GET", NEU_PREFIX "/subnets", h_subnet_list},
        {"POST", NEU_PREFIX "/subnets", h_subnet_create},
        {"GET", NEU_PREFIX "/subnets/{id}", h_subnet_show},
        {"PUT", NEU_PREFIX "/subnets/{id}", h_subnet_update},
        {"DELETE", NEU_PREFIX "/subnets/{id}", h_subnet_delete},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
    neu_port_routes(a);
    neu_l3_routes(a);
    neu_agent_routes(a);
    neu_secgroup_routes(a);
}

int api_network_start(Api *a, SovBuf *err)
{
    return 0;
}

void api_network_stop(Api *a)
{
    json_decref(a->port_dns);
    a->port_dns = NULL;
}
