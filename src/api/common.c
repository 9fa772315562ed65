/* SPDX-License-Identifier: Apache-2.0 */
/* What every API of sov-api shares: starting a call (token, role, idempotent replay), answering
 * it (JSON, faults in each API's own shape, audit, idempotency record), query strings, ids and
 * times, quotas, and the placement of resources into zones the project's jurisdiction allows. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "sov/crypto.h"
#include "sov/json.h"
#include "sov/log.h"

#define IDEM_MAX_BODY (256 * 1024)

/* ---- ids and times ---- */

/* The hex digits of a UUID of that version (its version and variant bits set in b). */
static void uuid_hex(uint8_t b[16], unsigned version, char out[API_ID_LEN + 1])
{
    b[6] = (uint8_t)((b[6] & 0x0f) | version << 4);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    sov_hex_encode(b, 16, out);
    out[API_ID_LEN] = '\0';
}

static void uuid_dashed(const char h[API_ID_LEN + 1], char out[API_UUID_LEN + 1])
{
    snprintf(out, API_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

void api_new_id(char out[API_ID_LEN + 1])
{
    uint8_t b[16];
    if (sov_random_bytes(b, sizeof(b)) < 0)
        abort(); /* no randomness: nothing safe to hand out */
    uuid_hex(b, 4, out);
}

void api_new_uuid(char out[API_UUID_LEN + 1])
{
    char h[API_ID_LEN + 1];
    api_new_id(h);
    uuid_dashed(h, out);
}

void api_name_uuid(const char *name, char out[API_UUID_LEN + 1])
{
    uint8_t d[SOV_SHA256_LEN];
    char h[API_ID_LEN + 1];
    if (sov_sha256(name, strlen(name), d) < 0)
        abort(); /* no hash: nothing stable to hand out */
    uuid_hex(d, 5, h);
    uuid_dashed(h, out);
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool api_valid_id(SovStr s)
{
    if (s.len == API_ID_LEN) {
        for (size_t i = 0; i < s.len; i++)
            if (!is_hex(s.ptr[i]))
                return false;
        return true;
    }
    if (s.len == API_UUID_LEN) {
        for (size_t i = 0; i < s.len; i++) {
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? s.ptr[i] != '-' : !is_hex(s.ptr[i]))
                return false;
        }
        return true;
    }
    return false;
}

int64_t api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void api_time_iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void api_time_keystone(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[24];
    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%.19s.%06dZ", base, (int)(ms % 1000) * 1000);
}

const char *api_public_url(Api *a)
{
    return a->public_url;
}

/* ---- query strings ---- */

static int unhex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes (and '+' to space when form) into the arena; NULL on a NUL byte or bad
 * escape. */
static char *decode(SovArena *ar, const char *p, size_t n, bool form)
{
    char *out = sov_arena_alloc(ar, n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%') {
            int hi = i + 2 < n ? unhex(p[i + 1]) : -1;
            int lo = i + 2 < n ? unhex(p[i + 2]) : -1;
            if (i + 2 >= n || hi < 0 || lo < 0)
                return NULL;
            ch = (char)(hi * 16 + lo);
            i += 2;
            if (ch == '\0')
                return NULL;
        } else if (ch == '+' && form)
            ch = ' ';
        out[o++] = ch;
    }
    out[o] = '\0';
    return out;
}

size_t api_query_all(ApiCall *c, const char *key, const char **out, size_t max)
{
    SovStr q = sov_http_req_query(c->req);
    SovArena *ar = sov_http_req_arena(c->req);
    size_t klen = strlen(key), n = 0, i = 0;
    while (i < q.len && n < max) {
        size_t j = i;
        while (j < q.len && q.ptr[j] != '&')
            j++;
        const char *eq = memchr(q.ptr + i, '=', j - i);
        size_t nl = eq ? (size_t)(eq - (q.ptr + i)) : j - i;
        char *name = decode(ar, q.ptr + i, nl, true);
        if (name && strlen(name) == klen && memcmp(name, key, klen) == 0) {
            const char *v = eq ? decode(ar, eq + 1, (size_t)(q.ptr + j - eq - 1), true) : "";
            if (v)
                out[n++] = v;
        }
        i = j + 1;
    }
    return n;
}

size_t api_query_pairs(ApiCall *c, ApiQueryPair *out, size_t max)
{
    SovStr q = sov_http_req_query(c->req);
    SovArena *ar = sov_http_req_arena(c->req);
    size_t n = 0, i = 0;
    while (i < q.len && n < max) {
        size_t j = i;
        while (j < q.len && q.ptr[j] != '&')
            j++;
        const char *eq = memchr(q.ptr + i, '=', j - i);
        size_t kl = eq ? (size_t)(eq - (q.ptr + i)) : j - i;
        out[n].key = kl ? decode(ar, q.ptr + i, kl, true) : NULL;
        out[n].value = eq ? decode(ar, eq + 1, (size_t)(q.ptr + j - eq - 1), true) : "";
        if (out[n].key && out[n].value)
            n++;
        i = j + 1;
    }
    return n;
}

const char *api_query(ApiCall *c, const char *key)
{
    const char *v = NULL;
    return api_query_all(c, key, &v, 1) ? v : NULL;
}

const char *api_param(ApiCall *c, const char *name)
{
    SovStr p = sov_http_req_param(c->req, name);
    if (!p.ptr)
        return NULL;
    return decode(sov_http_req_arena(c->req), p.ptr, p.len, false);
}

int api_query_limit(ApiCall *c, int def, int max)
{
    const char *v = api_query(c, "limit");
    if (!v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 0) {
        api_fault(c, 400, "BadRequest", "limit must be a non-negative integer");
        return -1;
    }
    if (n == 0)
        return max;
    return n > max ? max : (int)n;
}

/* ---- answering ---- */

static const char *nova_key(int status)
{
    switch (status) {
    case 400:
        return "badRequest";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "itemNotFound";
    case 405:
        return "HTTPMethodNotAllowed";
    case 409:
        return "conflictingRequest";
    case 413:
        return "overLimit";
    case 415:
        return "badMediaType";
    case 501:
        return "notImplemented";
    case 503:
        return "serviceUnavailable";
    default:
        return status >= 500 ? "computeFault" : "badRequest";
    }
}

static const char *neutron_type(int status)
{
    switch (status) {
    case 400:
        return "HTTPBadRequest";
    case 401:
        return "HTTPUnauthorized";
    case 403:
        return "HTTPForbidden";
    case 404:
        return "HTTPNotFound";
    case 409:
        return "HTTPConflict";
    case 413:
        return "HTTPRequestEntityTooLarge";
    default:
        return "HTTPInternalServerError";
    }
}

static bool mutating(SovHttpReq *req)
{
    SovStr m = sov_http_req_method(req);
    return !sov_str_eq(m, SOV_STR("GET")) && !sov_str_eq(m, SOV_STR("HEAD")) &&
           !sov_str_eq(m, SOV_STR("OPTIONS"));
}

static void request_id_header(SovHttpReq *req)
{
    char rid[64];
    snprintf(rid, sizeof(rid), "req-%s", sov_http_req_id(req));
    sov_http_resp_header(req, "X-OpenStack-Request-ID", sov_str(rid));
    if (sov_str_has_prefix(sov_http_req_path(req), SOV_STR("/compute/"))) {
        sov_http_resp_header(req, "OpenStack-API-Version", SOV_STR("compute 2.1"));
        sov_http_resp_header(req, "X-OpenStack-Nova-API-Version", SOV_STR("2.1"));
        sov_http_resp_header(req, "Vary",
                             SOV_STR("OpenStack-API-Version, X-OpenStack-Nova-API-Version"));
    }
}

static void idem_id(ApiCall *c, char out[65])
{
    SovDigest *d = sov_digest_new(SOV_DIGEST_SHA256);
    uint8_t h[SOV_SHA256_LEN];
    SovStr path = sov_http_req_path(c->req);
    if (!d) {
        out[0] = '\0';
        return;
    }
    sov_digest_update(d, c->auth.project_id, strlen(c->auth.project_id) + 1);
    sov_digest_update(d, c->auth.user_id, strlen(c->auth.user_id) + 1);
    sov_digest_update(d, path.ptr, path.len);
    sov_digest_update(d, "", 1);
    sov_digest_update(d, c->idem_key, strlen(c->idem_key));
    sov_digest_final(d, h);
    sov_digest_free(d);
    sov_hex_encode(h, sizeof(h), out);
    out[64] = '\0';
}

static void idem_save(ApiCall *c, int status, const char *ctype, const void *body, size_t n)
{
    if (!c->idem_key[0] || status < 200 || status > 299 || n > IDEM_MAX_BODY)
        return;
    char id[65];
    idem_id(c, id);
    if (!id[0])
        return;
    json_t *doc = json_pack("{s:i,s:s,s:s%,s:I}", "status", status, "content_type",
                            ctype ? ctype : "", "body", body ? (const char *)body : "", n,
                            "created_ms", (json_int_t)api_now_ms());
    if (!doc)
        return; /* a body that is not UTF-8 is not replayable; nothing else to do */
    ApiDocMeta m = {.kind = "idem", .id = id, .project = c->auth.project_id};
    int r = api_store_insert(c->api->store, &m, doc);
    if (r < 0 && r != -EEXIST)
        log_warn("idempotency record not saved: %s", strerror(-r));
    json_decref(doc);
}

static bool idem_replay(ApiCall *c)
{
    char id[65];
    json_t *doc;
    idem_id(c, id);
    if (!id[0] || api_store_get(c->api->store, "idem", id, &doc, NULL, 0) < 0)
        return false;
    int status = (int)json_integer_value(json_object_get(doc, "status"));
    const char *ctype = json_string_value(json_object_get(doc, "content_type"));
    json_t *b = json_object_get(doc, "body");
    request_id_header(c->req);
    sov_http_resp_header(c->req, "X-Idempotent-Replay", SOV_STR("true"));
    sov_http_respond(c->req, status, ctype && *ctype ? ctype : NULL, json_string_value(b),
                     json_string_length(b));
    json_decref(doc);
    c->answered = true;
    return true;
}

void api_call_own(ApiCall *c, json_t *v)
{
    if (c->nowned < ELEMENTSOF(c->owned))
        c->owned[c->nowned++] = v;
    else
        log_error("more than %zu documents handed to one call: one leaks", ELEMENTSOF(c->owned));
    /* leaking is the safe failure: freeing now would pull it from under its user */
}

static void release_owned(ApiCall *c)
{
    for (unsigned i = 0; i < c->nowned; i++)
        json_decref(c->owned[i]);
    c->nowned = 0;
}

static void finish(ApiCall *c, int status, const char *ctype, const void *body, size_t n)
{
    if (c->answered) {
        log_error("call answered twice (%d)", status);
        return;
    }
    c->answered = true;
    if (mutating(c->req) && c->authenticated)
        api_audit_append(c->api, c, status);
    if (c->idem_key[0])
        idem_save(c, status, ctype, body, n);
    request_id_header(c->req);
    sov_http_respond(c->req, status, ctype, body, n);
    release_owned(c);
}

void api_reply(ApiCall *c, int status, json_t *v)
{
    if (!v) {
        finish(c, status, NULL, "", 0);
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!text) {
        finish(c, 500, "application/json", "{}", 2);
        return;
    }
    finish(c, status, "application/json", text, strlen(text));
    free(text);
}

void api_reply_raw(ApiCall *c, int status, const char *content_type, const void *body, size_t n)
{
    finish(c, status, content_type, body, n);
}

void api_mark_answered(ApiCall *c, int status)
{
    c->answered = true;
    release_owned(c);
    if (mutating(c->req) && c->authenticated)
        api_audit_append(c->api, c, status);
    request_id_header(c->req);
}

static void fault_v(ApiCall *c, int status, const char *type, const char *fmt, va_list ap)
    _printf_(4, 0);
static void fault_v(ApiCall *c, int status, const char *type, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    json_t *v;
    switch (c->style) {
    case API_STYLE_NOVA:
        /* Nova's fault keys are camelCase (overLimit...); a Neutron-style type is not one */
        if (!type || !(type[0] >= 'a' && type[0] <= 'z'))
            type = nova_key(status);
        v = json_pack("{s:{s:i,s:s}}", type, "code", status, "message", msg);
        break;
    case API_STYLE_NEUTRON:
        v = json_pack("{s:{s:s,s:s,s:s}}", "NeutronError", "type",
                      type ? type : neutron_type(status), "message", msg, "detail", "");
        break;
    case API_STYLE_GLANCE:
        v = json_pack("{s:i,s:s,s:s}", "code", status, "title", sov_http_status_reason(status),
                      "message", msg);
        break;
    case API_STYLE_KEYSTONE:
    case API_STYLE_AGENT:
    default:
        v = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", status, "title",
                      sov_http_status_reason(status), "message", msg);
        break;
    }
    if (status == 401 && !c->answered)
        sov_http_resp_header(c->req, "WWW-Authenticate", SOV_STR("Keystone uri=\"/identity/v3\""));
    api_reply(c, status, v);
}

void api_fault(ApiCall *c, int status, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fault_v(c, status, type, fmt, ap);
    va_end(ap);
}

/* ---- starting a call ---- */

ApiCall *api_begin(Api *a, SovHttpReq *req, ApiStyle style, ApiNeed need)
{
    ApiCall *c = sov_arena_alloc(sov_http_req_arena(req), sizeof(*c));
    if (!c) {
        sov_http_respond_error(req, 500, "out of memory");
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->api = a;
    c->req = req;
    c->style = style;
    if (need == API_NEED_NONE)
        return c;
    SovStr tok = sov_http_req_header(req, "X-Auth-Token");
    if (!tok.ptr || tok.len == 0 || tok.len > 512) {
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
        return NULL;
    }
    char token[513];
    memcpy(token, tok.ptr, tok.len);
    token[tok.len] = '\0';
    if (api_token_validate(a, token, &c->auth) < 0) {
        explicit_bzero(token, sizeof(token));
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
        return NULL;
    }
    explicit_bzero(token, sizeof(token));
    c->authenticated = true;
    unsigned r = c->auth.roles;
    bool ok = need == API_NEED_READ    ? (r & (API_ROLE_READER | API_ROLE_MEMBER | API_ROLE_ADMIN))
              : need == API_NEED_WRITE ? (r & (API_ROLE_MEMBER | API_ROLE_ADMIN))
                                       : c->auth.system_admin;
    if (!ok) {
        c->authenticated = mutating(req); /* refused changes are audited too */
        api_fault(c, 403, style == API_STYLE_NEUTRON ? "PolicyNotAuthorized" : NULL,
                  "Policy does not allow this operation for your role.");
        return NULL;
    }
    if (sov_str_eq(sov_http_req_method(req), SOV_STR("POST"))) {
        SovStr k = sov_http_req_header(req, "X-Idempotency-Key");
        if (k.ptr && k.len > 0 && k.len < sizeof(c->idem_key)) {
            memcpy(c->idem_key, k.ptr, k.len);
            c->idem_key[k.len] = '\0';
            if (idem_replay(c))
                return NULL;
        }
    }
    return c;
}

json_t *api_body(ApiCall *c, const char *wrap)
{
    SovBuf err = SOV_BUF_INIT;
    json_t *v = NULL;
    SovStr body = sov_http_req_body(c->req);
    if (sov_json_parse_object(body, 1024 * 1024, &v, &err) < 0) {
        api_fault(c, 400, "BadRequest", "Malformed request body: %s",
                  err.ptr ? err.ptr : "not a JSON object");
        sov_buf_release(&err);
        return NULL;
    }
    sov_buf_release(&err);
    api_call_own(c, v);
    if (!wrap)
        return v;
    json_t *inner = json_object_get(v, wrap);
    if (!json_is_object(inner)) {
        api_fault(c, 400, "BadRequest", "Malformed request body: expected an object '%s'", wrap);
        return NULL;
    }
    return inner;
}

bool api_can_access(const ApiCall *c, const char *project_id)
{
    return c->auth.system_admin || (project_id && strcmp(project_id, c->auth.project_id) == 0);
}

bool api_all_projects(const ApiCall *c)
{
    if (!c->auth.system_admin)
        return false;
    const char *keys[] = {"all_tenants", "all_projects"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const char *v = api_query((ApiCall *)c, keys[i]);
        if (v && (strcmp(v, "") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0))
            return true;
    }
    return false;
}

/* ---- quotas ---- */

typedef struct QuotaDef {
    const char *name;
    size_t cfg_off;
} QuotaDef;

static const QuotaDef quota_defs[] = {
    {"instances", offsetof(ApiConfig, quota_instances)},
    {"cores", offsetof(ApiConfig, quota_cores)},
    {"ram", offsetof(ApiConfig, quota_ram_mb)},
    {"key_pairs", offsetof(ApiConfig, quota_key_pairs)},
    {"volumes", offsetof(ApiConfig, quota_volumes)},
    {"gigabytes", offsetof(ApiConfig, quota_gigabytes)},
    {"snapshots", offsetof(ApiConfig, quota_snapshots)},
    {"network", offsetof(ApiConfig, quota_networks)},
    {"subnet", offsetof(ApiConfig, quota_subnets)},
    {"port", offsetof(ApiConfig, quota_ports)},
    {"router", offsetof(ApiConfig, quota_routers)},
    {"floatingip", offsetof(ApiConfig, quota_floatingips)},
    {"security_group", offsetof(ApiConfig, quota_security_groups)},
    {"security_group_rule", offsetof(ApiConfig, quota_security_group_rules)},
    {"images", offsetof(ApiConfig, quota_images)},
};

static const QuotaDef *quota_def(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(quota_defs); i++)
        if (strcmp(quota_defs[i].name, name) == 0)
            return &quota_defs[i];
    return NULL;
}

int64_t api_quota_limit(Api *a, const char *project_id, const char *resource)
{
    const QuotaDef *d = quota_def(resource);
    if (!d)
        return -1;
    json_t *doc;
    if (api_store_get(a->store, "quota", project_id, &doc, NULL, 0) == 0) {
        json_t *v = json_object_get(doc, resource);
        if (json_is_integer(v)) {
            int64_t lim = json_integer_value(v);
            json_decref(doc);
            return lim;
        }
        json_decref(doc);
    }
    return *(const int64_t *)((const char *)&a->cfg + d->cfg_off);
}

int api_quota_set(Api *a, const char *project_id, const char *resource, int64_t limit)
{
    if (!quota_def(resource))
        return -EINVAL;
    json_t *doc;
    bool exists = api_store_get(a->store, "quota", project_id, &doc, NULL, 0) == 0;
    if (!exists)
        doc = json_object();
    json_object_set_new(doc, resource, json_integer(limit < 0 ? -1 : limit));
    ApiDocMeta m = {.kind = "quota", .id = project_id, .project = project_id};
    int r = exists ? api_store_update(a->store, &m, doc) : api_store_insert(a->store, &m, doc);
    json_decref(doc);
    return r;
}

/* Sums an integer member of every document of kind in the project. */
static int64_t sum_member(Api *a, const char *kind, const char *project, const char *member)
{
    ApiListQuery q = {.kind = kind, .project = project};
    json_t *arr;
    if (api_store_list(a->store, &q, &arr) < 0)
        return 0;
    int64_t sum = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) sum += json_integer_value(json_object_get(v, member));
    json_decref(arr);
    return sum;
}

int64_t api_quota_usage(Api *a, const char *project_id, const char *resource)
{
    static const struct {
        const char *res, *kind, *member; /* member NULL: count documents */
    } map[] = {
        {"instances", "server", NULL},
        {"cores", "server", "_vcpus"},
        {"ram", "server", "_ram"},
        {"key_pairs", "keypair", NULL},
        {"volumes", "volume", NULL},
        {"gigabytes", "volume", "size"},
        {"snapshots", "snapshot", NULL},
        {"network", "network", NULL},
        {"subnet", "subnet", NULL},
        {"port", "port", NULL},
        {"router", "router", NULL},
        {"floatingip", "floatingip", NULL},
        {"security_group", "security_group", NULL},
        {"security_group_rule", "security_group_rule", NULL},
        {"images", "image", NULL},
    };
    for (size_t i = 0; i < ELEMENTSOF(map); i++) {
        if (strcmp(map[i].res, resource) != 0)
            continue;
        if (!map[i].member) {
            ApiListQuery q = {.kind = map[i].kind, .project = project_id};
            int64_t n = api_store_count(a->store, &q);
            return n < 0 ? 0 : n;
        }
        int64_t n = sum_member(a, map[i].kind, project_id, map[i].member);
        if (strcmp(resource, "gigabytes") == 0) /* snapshots count against gigabytes too */
            n += sum_member(a, "snapshot", project_id, "size");
        return n;
    }
    return 0;
}

bool api_quota_check(ApiCall *c, const char *resource, int64_t delta)
{
    int64_t lim = api_quota_limit(c->api, c->auth.project_id, resource);
    if (lim < 0)
        return true;
    int64_t used = api_quota_usage(c->api, c->auth.project_id, resource);
    if (used + delta <= lim)
        return true;
    switch (c->style) {
    case API_STYLE_NEUTRON:
        api_fault(c, 409, "OverQuota", "Quota exceeded for resources: ['%s'].", resource);
        break;
    case API_STYLE_NOVA:
        if (strcmp(resource, "volumes") == 0 || strcmp(resource, "gigabytes") == 0 ||
            strcmp(resource, "snapshots") == 0)
            api_fault(c, 413, "overLimit",
                      "VolumeLimitExceeded: Maximum number of %s allowed (%" PRId64 ") exceeded",
                      resource, lim);
        else
            api_fault(c, 403, NULL,
                      "Quota exceeded for %s: Requested %" PRId64 ", but already used %" PRId64
                      " of %" PRId64 " %s",
                      resource, delta, used, lim, resource);
        break;
    default:
        api_fault(c, 413, "overLimit", "Quota exceeded for %s: %" PRId64 " of %" PRId64 " used",
                  resource, used, lim);
        break;
    }
    return false;
}

/* ---- regions and sovereignty ---- */

const ApiRegion *api_local_region(Api *a)
{
    return &a->regions[0];
}

size_t api_region_count(Api *a)
{
    return a->nregions;
}

const ApiRegion *api_region_at(Api *a, size_t i)
{
    return i < a->nregions ? &a->regions[i] : NULL;
}

bool api_jurisdiction_allowed(const ApiCall *c, const char *jurisdiction)
{
    const char *list = c->auth.jurisdictions[0] ? c->auth.jurisdictions : "EU";
    size_t jl = strlen(jurisdiction);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if (n == jl && strncasecmp(p, jurisdiction, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

bool api_place_zone(ApiCall *c, const char *requested, char out_zone[64])
{
    Api *a = c->api;
    const ApiRegion *reg = NULL;
    const char *zone = NULL;
    if (!requested || !*requested) {
        /* first zone of the first region whose jurisdiction the project allows */
        for (size_t i = 0; i < a->nregions && !zone; i++)
            if (api_jurisdiction_allowed(c, a->regions[i].jurisdiction) && a->regions[i].nzones) {
                reg = &a->regions[i];
                zone = reg->zones[0].name;
            }
        if (!zone) {
            api_fault(c, 403, "JurisdictionNotAllowed",
                      "No region of this cloud lies in a jurisdiction project %s allows (%s)",
                      c->auth.project_id, c->auth.jurisdictions[0] ? c->auth.jurisdictions : "EU");
            return false;
        }
    } else {
        for (size_t i = 0; i < a->nregions && !zone; i++)
            for (unsigned z = 0; z < a->regions[i].nzones; z++)
                if (strcmp(a->regions[i].zones[z].name, requested) == 0) {
                    reg = &a->regions[i];
                    zone = reg->zones[z].name;
                    break;
                }
        if (!zone) {
            api_fault(c, 400, "InvalidAvailabilityZone",
                      "The requested availability zone is not available: %s", requested);
            return false;
        }
        if (!api_jurisdiction_allowed(c, reg->jurisdiction)) {
            api_fault(c, 403, "JurisdictionNotAllowed",
                      "Availability zone %s is in region %s under jurisdiction %s, which "
                      "project %s does not allow (allowed: %s)",
                      zone, reg->name, reg->jurisdiction, c->auth.project_id,
                      c->auth.jurisdictions[0] ? c->auth.jurisdictions : "EU");
            return false;
        }
    }
    snprintf(out_zone, 64, "%s", zone);
    return true;
}
