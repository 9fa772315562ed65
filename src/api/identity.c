/* SPDX-License-Identifier: Apache-2.0 */
/* Keystone v3 tokens: password, token and application-credential authentication, scoping,
 * the catalog, validation and revocation, and the bootstrap of an empty state (the Default
 * domain, the admin, member and reader roles, the admin project and user).
 *
 * Tokens are 32 random bytes (base64url, "sov_" prefix); only their SHA-256 is stored, with the
 * scope and expiry, so a stolen database holds no usable token. Passwords and application
 * credential secrets are argon2id hashes, computed on the thread pool, never on the loop. */
#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "identity.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define ARGON2_T     2
#define ARGON2_M     19456 /* KiB */
#define ARGON2_P     1
#define ENCODED_MAX  160
#define TOKEN_PREFIX "sov_"

static const char *const role_names[] = {"reader", "member", "admin"};

/* ---- password hashing on the thread pool ---- */

typedef struct HashWork {
    uv_work_t w;
    ApiCall *c;
    char *password;
    char encoded[ENCODED_MAX]; /* hash: output; verify: input */
    bool verify;
    bool ok;
    IdentityHashDone done;
    void (*verified)(ApiCall *c, bool ok, void *ud);
    void *ud;
} HashWork;

static void hash_run(uv_work_t *w)
{
    HashWork *h = w->data;
    size_t plen = strlen(h->password);
    if (h->verify) {
        h->ok = argon2id_verify(h->encoded, h->password, plen) == ARGON2_OK;
        return;
    }
    uint8_t salt[16];
    if (sov_random_bytes(salt, sizeof(salt)) < 0) {
        h->ok = false;
        return;
    }
    h->ok = argon2id_hash_encoded(ARGON2_T, ARGON2_M, ARGON2_P, h->password, plen, salt,
                                  sizeof(salt), 32, h->encoded, sizeof(h->encoded)) == ARGON2_OK;
}

static void hash_after(uv_work_t *w, int status)
{
    HashWork *h = w->data;
    SovHttpReq *req = h->c->req;
    explicit_bzero(h->password, strlen(h->password));
    free(h->password);
    if (!sov_http_req_is_closed(req)) {
        if (h->verify)
            h->verified(h->c, h->ok && status == 0, h->ud);
        else
            h->done(h->c, h->ok && status == 0 ? h->encoded : "", h->ud);
    }
    sov_http_req_unref(req);
    free(h);
}

static int hash_queue(ApiCall *c, const char *password, HashWork *h)
{
    h->c = c;
    h->password = strdup(password);
    h->w.data = h;
    if (!h->password || uv_queue_work(c->api->loop, &h->w, hash_run, hash_after) < 0) {
        free(h->password);
        free(h);
        return -ENOMEM;
    }
    sov_http_req_ref(c->req);
    return 0;
}

void identity_hash_async(ApiCall *c, const char *password, IdentityHashDone done, void *ud)
{
    HashWork *h = calloc(1, sizeof(*h));
    if (!h || (h->done = done, h->ud = ud, hash_queue(c, password, h)) < 0) {
        done(c, "", ud);
        return;
    }
}

void identity_verify_async(ApiCall *c, const char *password, const char *encoded,
                           void (*verified)(ApiCall *c, bool ok, void *ud), void *ud)
{
    HashWork *h = calloc(1, sizeof(*h));
    if (!h || strlen(encoded) >= sizeof(h->encoded)) {
        free(h);
        verified(c, false, ud);
        return;
    }
    snprintf(h->encoded, sizeof(h->encoded), "%s", encoded);
    h->verify = true;
    h->verified = verified;
    h->ud = ud;
    if (hash_queue(c, password, h) < 0)
        verified(c, false, ud);
}

/* ---- roles ---- */

unsigned identity_roles(Api *a, const char *user_id, const char *project_id)
{
    ApiListQuery q = {.kind = "assignment", .project = project_id, .parent = user_id};
    json_t *arr;
    unsigned roles = 0;
    if (api_store_list(a->store, &q, &arr) < 0)
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "role_name"));
        if (!name)
            continue;
        if (strcmp(name, "admin") == 0)
            roles |= API_ROLE_ADMIN | API_ROLE_MEMBER | API_ROLE_READER;
        else if (strcmp(name, "member") == 0)
            roles |= API_ROLE_MEMBER | API_ROLE_READER;
        else if (strcmp(name, "reader") == 0)
            roles |= API_ROLE_READER;
    }
    json_decref(arr);
    return roles;
}

json_t *identity_role_list(Api *a, unsigned roles)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < ELEMENTSOF(role_names); i++) {
        if (!(roles & (1u << i)))
            continue;
        json_t *r;
        if (api_store_get_uniq(a->store, "role", role_names[i], &r) == 0) {
            json_array_append_new(arr, json_pack("{s:O,s:O}", "id", json_object_get(r, "id"),
                                                 "name", json_object_get(r, "name")));
            json_decref(r);
        }
    }
    return arr;
}

static unsigned roles_from_names(json_t *names)
{
    unsigned roles = 0;
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        const char *n = json_string_value(json_is_object(v) ? json_object_get(v, "name") : v);
        for (size_t k = 0; n && k < ELEMENTSOF(role_names); k++)
            if (strcmp(n, role_names[k]) == 0)
                roles |= 1u << k;
    }
    if (roles & API_ROLE_ADMIN)
        roles |= API_ROLE_MEMBER;
    if (roles & API_ROLE_MEMBER)
        roles |= API_ROLE_READER;
    return roles;
}

void identity_revoke_tokens(Api *a, const char *user_id, const char *project_id)
{
    ApiListQuery q = {.kind = "token", .parent = user_id, .project = project_id};
    json_t *arr;
    if (api_store_list(a->store, &q, &arr) < 0)
        return;
    size_t i;
    json_t *v;
    api_store_begin(a->store);
    json_array_foreach(arr, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "_hash"));
        if (id)
            api_store_delete(a->store, "token", id);
    }
    api_store_commit(a->store);
    json_decref(arr);
}

/* ---- catalog ---- */

static json_t *endpoint(Api *a, const char *svc, const char *iface, const char *url)
{
    char id[API_ID_LEN + 1];
    uint8_t h[SOV_SHA256_LEN];
    char seed[128];
    snprintf(seed, sizeof(seed), "endpoint:%s:%s", svc, iface);
    sov_sha256(seed, strlen(seed), h);
    sov_hex_encode(h, 16, id);
    id[API_ID_LEN] = '\0';
    const char *reg = api_local_region(a)->name;
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "interface", iface, "region", reg,
                     "region_id", reg, "url", url);
}

static json_t *catalog(Api *a, const char *project_id)
{
    static const struct {
        const char *type, *name, *path;
    } svcs[] = {
        {"identity", "keystone", "/identity/v3"},
        {"compute", "nova", "/compute/v2.1"},
        {"image", "glance", "/image"},
        {"volumev3", "cinderv3", "/volume/v3/%s"},
        {"block-storage", "cinder", "/volume/v3/%s"},
        {"network", "neutron", "/network"},
    };
    json_t *cat = json_array();
    for (size_t i = 0; i < ELEMENTSOF(svcs); i++) {
        char path[128], url[768], id[API_ID_LEN + 1];
        uint8_t h[SOV_SHA256_LEN];
        if (strstr(svcs[i].path, "%s")) {
            if (!project_id || !*project_id)
                continue;
            snprintf(path, sizeof(path), "/volume/v3/%s", project_id);
        } else
            snprintf(path, sizeof(path), "%s", svcs[i].path);
        snprintf(url, sizeof(url), "%s%s", api_public_url(a), path);
        sov_sha256(svcs[i].type, strlen(svcs[i].type), h);
        sov_hex_encode(h, 16, id);
        id[API_ID_LEN] = '\0';
        json_t *eps = json_array();
        json_array_append_new(eps, endpoint(a, svcs[i].type, "public", url));
        json_array_append_new(eps, endpoint(a, svcs[i].type, "internal", url));
        json_array_append_new(eps, endpoint(a, svcs[i].type, "admin", url));
        json_array_append_new(cat, json_pack("{s:s,s:s,s:s,s:o}", "id", id, "type", svcs[i].type,
                                             "name", svcs[i].name, "endpoints", eps));
    }
    return cat;
}

/* ---- tokens ---- */

typedef struct Scope {
    json_t *user;    /* the user document */
    json_t *project; /* the project document, or NULL (unscoped) */
    json_t *domain;  /* the user's domain */
    json_t *pdomain; /* the project's domain */
    json_t *app_cred;
    const char *method;
    int64_t expires_ms; /* 0: the configured TTL */
} Scope;

static void scope_free(Scope *s)
{
    json_decref(s->user);
    json_decref(s->project);
    json_decref(s->domain);
    json_decref(s->pdomain);
    json_decref(s->app_cred);
    memset(s, 0, sizeof(*s));
}

static json_t *token_body(Api *a, const char *const *methods, size_t nmethods, json_t *user,
                          json_t *udomain, json_t *project, json_t *pdomain, unsigned roles,
                          int64_t issued, int64_t expires, const char *audit_id, bool nocatalog,
                          json_t *app_cred)
{
    char exp[40], iss[40];
    api_time_keystone(expires, exp);
    api_time_keystone(issued, iss);
    json_t *m = json_array();
    for (size_t i = 0; i < nmethods; i++)
        json_array_append_new(m, json_string(methods[i]));
    json_t *t =
        json_pack("{s:o,s:{s:s,s:s,s:{s:s,s:s},s:n},s:[s],s:s,s:s}", "methods", m, "user", "id",
                  api_jstr(user, "id"), "name", api_jstr(user, "name"), "domain", "id",
                  api_jstr(udomain, "id"), "name", api_jstr(udomain, "name"), "password_expires_at",
                  "audit_ids", audit_id, "expires_at", exp, "issued_at", iss);
    if (project) {
        json_object_set_new(t, "project",
                            json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", api_jstr(project, "id"),
                                      "name", api_jstr(project, "name"), "domain", "id",
                                      api_jstr(pdomain, "id"), "name", api_jstr(pdomain, "name")));
        json_object_set_new(t, "is_domain", json_false());
        json_object_set_new(t, "roles", identity_role_list(a, roles));
        if (!nocatalog)
            json_object_set_new(t, "catalog", catalog(a, api_jstr(project, "id")));
    }
    if (app_cred)
        json_object_set_new(t, "application_credential",
                            json_pack("{s:s,s:s,s:b}", "id", api_jstr(app_cred, "id"), "name",
                                      api_jstr(app_cred, "name"), "restricted",
                                      !json_is_true(json_object_get(app_cred, "unrestricted"))));
    return json_pack("{s:o}", "token", t);
}

static void issue_token(ApiCall *c, Scope *s)
{
    Api *a = c->api;
    uint8_t raw[32], h[SOV_SHA256_LEN];
    char token[80], hash[65], audit_hex[23];
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (sov_random_bytes(raw, sizeof(raw)) < 0) {
        api_fault(c, 500, NULL, "no randomness");
        return;
    }
    size_t o = strlen(TOKEN_PREFIX);
    memcpy(token, TOKEN_PREFIX, o);
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 |
                     (i + 1 < sizeof(raw) ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < sizeof(raw) ? raw[i + 2] : 0);
        token[o++] = b64[(v >> 18) & 63];
        token[o++] = b64[(v >> 12) & 63];
        if (i + 1 < sizeof(raw))
            token[o++] = b64[(v >> 6) & 63];
        if (i + 2 < sizeof(raw))
            token[o++] = b64[v & 63];
    }
    token[o] = '\0';
    sov_sha256(token, o, h);
    sov_hex_encode(h, sizeof(h), hash);
    hash[64] = '\0';
    sov_hex_encode(raw, 11, audit_hex); /* audit id: a different cut of the same randomness */
    audit_hex[22] = '\0';

    int64_t now = api_now_ms();
    int64_t exp = now + (int64_t)a->cfg.token_ttl_ms;
    if (s->expires_ms && s->expires_ms < exp)
        exp = s->expires_ms;
    const char *pid = s->project ? api_jstr(s->project, "id") : "";
    unsigned roles = 0;
    if (s->project) {
        roles = identity_roles(a, api_jstr(s->user, "id"), pid);
        if (s->app_cred)
            roles &= roles_from_names(json_object_get(s->app_cred, "roles"));
        if (!roles) {
            api_fault(c, 401, NULL, "User %s has no access to project %s", api_jstr(s->user, "id"),
                      pid);
            return;
        }
    }
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "_hash", hash, "user_id",
                  api_jstr(s->user, "id"), "project_id", pid, "issued_ms", (json_int_t)now,
                  "expires_ms", (json_int_t)exp, "method", s->method, "audit_id", audit_hex,
                  "app_cred_id", s->app_cred ? api_jstr(s->app_cred, "id") : "");
    ApiDocMeta m = {.kind = "token", .id = hash, .project = pid, .parent = api_jstr(s->user, "id")};
    int r = api_store_insert(a->store, &m, doc);
    json_decref(doc);
    if (r < 0) {
        api_fault(c, 500, NULL, "cannot store the token: %s", strerror(-r));
        return;
    }
    const char *methods[] = {s->method};
    bool nocat = api_query(c, "nocatalog") != NULL;
    json_t *body = token_body(a, methods, 1, s->user, s->domain, s->project, s->pdomain, roles, now,
                              exp, audit_hex, nocat, s->app_cred);
    sov_http_resp_header(c->req, "X-Subject-Token", sov_str(token));
    explicit_bzero(token, sizeof(token));
    snprintf(c->target, sizeof(c->target), "%.64s", api_jstr(s->user, "id"));
    /* a successful login is audited as the user it made (failures are only logged: an
     * unauthenticated flood must not grow the audit log) */
    c->authenticated = true;
    snprintf(c->auth.user_id, sizeof(c->auth.user_id), "%s", api_jstr(s->user, "id"));
    snprintf(c->auth.user_name, sizeof(c->auth.user_name), "%s", api_jstr(s->user, "name"));
    snprintf(c->auth.project_id, sizeof(c->auth.project_id), "%s", pid);
    api_reply(c, 201, body);
}

/* Loads a token's stored record and everything its caller view needs. */
static int token_load(Api *a, const char *token, json_t **ret_doc)
{
    uint8_t h[SOV_SHA256_LEN];
    char hash[65];
    if (strncmp(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0 || strlen(token) > 100)
        return -EACCES;
    sov_sha256(token, strlen(token), h);
    sov_hex_encode(h, sizeof(h), hash);
    hash[64] = '\0';
    json_t *doc;
    if (api_store_get(a->store, "token", hash, &doc, NULL, 0) < 0)
        return -EACCES;
    if (json_integer_value(json_object_get(doc, "expires_ms")) <= api_now_ms()) {
        api_store_delete(a->store, "token", hash);
        json_decref(doc);
        return -EACCES;
    }
    *ret_doc = doc;
    return 0;
}

/* Validated callers by token hash, so that a busy client costs one hash and a lookup. An entry
 * holds while no token, user, project, role or application credential was updated or deleted
 * and no role assignment written since it was filled (any such change empties every entry:
 * rare, and always right), and until the token expires. */
#define AUTH_CACHE 1024

typedef struct AuthCacheEntry {
    uint64_t gen;
    ApiAuth auth;
} AuthCacheEntry;

static AuthCacheEntry *auth_cache; /* loop thread only */

static uint64_t identity_gen(Api *a)
{
    static const char *const kinds[] = {"token", "user", "project", "role", "app_cred"};
    uint64_t g = api_store_kind_rev(a->store, "assignment", true);
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        uint64_t k = api_store_kind_rev(a->store, kinds[i], false);
        if (k > g)
            g = k;
    }
    return g + 1; /* never 0: 0 marks an empty slot */
}

static AuthCacheEntry *auth_slot(const uint8_t h[SOV_SHA256_LEN])
{
    if (!auth_cache && !(auth_cache = calloc(AUTH_CACHE, sizeof(*auth_cache))))
        return NULL;
    return &auth_cache[(h[0] | (unsigned)h[1] << 8) % AUTH_CACHE];
}

static int token_validate_uncached(Api *a, const char *token, ApiAuth *ret);

int api_token_validate(Api *a, const char *token, ApiAuth *ret)
{
    uint8_t h[SOV_SHA256_LEN];
    char hash[65];
    if (strncmp(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0 || strlen(token) > 100)
        return -EACCES;
    sov_sha256(token, strlen(token), h);
    sov_hex_encode(h, sizeof(h), hash);
    hash[64] = '\0';
    AuthCacheEntry *e = auth_slot(h);
    uint64_t gen = identity_gen(a);
    if (e && e->gen == gen && strcmp(e->auth.token_hash, hash) == 0 &&
        e->auth.expires_ms > api_now_ms()) {
        *ret = e->auth;
        return 0;
    }
    int r = token_validate_uncached(a, token, ret);
    if (r == 0 && e) {
        e->gen = gen;
        e->auth = *ret;
    }
    return r;
}

static int token_validate_uncached(Api *a, const char *token, ApiAuth *ret)
{
    json_t *doc, *user = NULL, *proj = NULL;
    if (token_load(a, token, &doc) < 0)
        return -EACCES;
    memset(ret, 0, sizeof(*ret));
    const char *uid = api_jstr(doc, "user_id"), *pid = api_jstr(doc, "project_id");
    int r = api_store_get(a->store, "user", uid, &user, NULL, 0);
    if (r == 0 && !json_is_true(json_object_get(user, "enabled")))
        r = -EACCES;
    if (r == 0 && *pid) {
        r = api_store_get(a->store, "project", pid, &proj, NULL, 0);
        if (r == 0 && !json_is_true(json_object_get(proj, "enabled")))
            r = -EACCES;
    }
    if (r == 0) {
        snprintf(ret->user_id, sizeof(ret->user_id), "%s", uid);
        snprintf(ret->user_name, sizeof(ret->user_name), "%s", api_jstr(user, "name"));
        snprintf(ret->domain_id, sizeof(ret->domain_id), "%s", api_jstr(user, "domain_id"));
        snprintf(ret->token_hash, sizeof(ret->token_hash), "%s", api_jstr(doc, "_hash"));
        snprintf(ret->app_cred_id, sizeof(ret->app_cred_id), "%s", api_jstr(doc, "app_cred_id"));
        ret->expires_ms = json_integer_value(json_object_get(doc, "expires_ms"));
        if (proj) {
            snprintf(ret->project_id, sizeof(ret->project_id), "%s", pid);
            snprintf(ret->project_name, sizeof(ret->project_name), "%s", api_jstr(proj, "name"));
            snprintf(ret->project_domain_id, sizeof(ret->project_domain_id), "%s",
                     api_jstr(proj, "domain_id"));
            snprintf(ret->jurisdictions, sizeof(ret->jurisdictions), "%s",
                     api_jstr(proj, "allowed_jurisdictions"));
            ret->roles = identity_roles(a, uid, pid);
            if (ret->app_cred_id[0]) {
                json_t *ac;
                if (api_store_get(a->store, "app_cred", ret->app_cred_id, &ac, NULL, 0) == 0) {
                    ret->roles &= roles_from_names(json_object_get(ac, "roles"));
                    json_decref(ac);
                } else
                    r = -EACCES; /* deleted credential: its tokens die with it */
            }
            ret->system_admin =
                (ret->roles & API_ROLE_ADMIN) && strcmp(pid, a->admin_project_id) == 0;
        }
    }
    json_decref(proj);
    json_decref(user);
    json_decref(doc);
    return r < 0 ? -EACCES : 0;
}

/* ---- POST /auth/tokens ---- */

typedef struct AuthCtx {
    Scope s;
    json_t *scope_req; /* the request's "scope" (owned by the body) */
} AuthCtx;

/* Finds a domain by {"id"} or {"name"}. */
static int find_domain(Api *a, json_t *ref, json_t **ret)
{
    const char *id = json_string_value(json_object_get(ref, "id"));
    const char *name = json_string_value(json_object_get(ref, "name"));
    if (id)
        return api_store_get(a->store, "domain", id, ret, NULL, 0);
    if (name)
        return api_store_get_uniq(a->store, "domain", name, ret);
    return -EINVAL;
}

/* A user or project by {"id"} or by {"name", "domain": {"id"|"name"}}. */
static int find_named(Api *a, const char *kind, json_t *ref, json_t **ret)
{
    const char *id = json_string_value(json_object_get(ref, "id"));
    const char *name = json_string_value(json_object_get(ref, "name"));
    if (id && strlen(id) <= 64)
        return api_store_get(a->store, kind, id, ret, NULL, 0);
    if (!name || strlen(name) > 255)
        return -EINVAL;
    json_t *dom;
    int r = find_domain(a, json_object_get(ref, "domain"), &dom);
    if (r < 0)
        return r;
    char uniq[320];
    snprintf(uniq, sizeof(uniq), "%s/%s", api_jstr(dom, "id"), name);
    json_decref(dom);
    return api_store_get_uniq(a->store, kind, uniq, ret);
}

/* After the user is authenticated: resolve the scope and issue. */
static void finish_auth(ApiCall *c, AuthCtx *x)
{
    Api *a = c->api;
    Scope *s = &x->s;
    if (!json_is_true(json_object_get(s->user, "enabled"))) {
        api_fault(c, 401, NULL, "The account is disabled.");
        return;
    }
    api_store_get(a->store, "domain", api_jstr(s->user, "domain_id"), &s->domain, NULL, 0);
    json_t *sp = json_object_get(x->scope_req, "project");
    if (s->app_cred) {
        /* an application credential is bound to its project */
        api_store_get(a->store, "project", api_jstr(s->app_cred, "project_id"), &s->project, NULL,
                      0);
    } else if (sp) {
        if (find_named(a, "project", sp, &s->project) < 0) {
            api_fault(c, 401, NULL, "Could not find the project to scope to.");
            return;
        }
    } else if (x->scope_req) {
        api_fault(c, 400, NULL, "Only project scope is supported.");
        return;
    } else if (*api_jstr(s->user, "default_project_id")) {
        api_store_get(a->store, "project", api_jstr(s->user, "default_project_id"), &s->project,
                      NULL, 0);
    }
    if (s->project) {
        if (!json_is_true(json_object_get(s->project, "enabled"))) {
            api_fault(c, 401, NULL, "The project is disabled.");
            return;
        }
        api_store_get(a->store, "domain", api_jstr(s->project, "domain_id"), &s->pdomain, NULL, 0);
    }
    issue_token(c, s);
}

static void auth_verified(ApiCall *c, bool ok, void *ud)
{
    AuthCtx *x = ud;
    if (!ok)
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
    else
        finish_auth(c, x);
    scope_free(&x->s);
    free(x);
}

static void h_auth_tokens(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_NONE);
    if (!c)
        return;
    json_t *auth = api_body(c, "auth");
    if (!auth)
        return;
    json_t *ident = json_object_get(auth, "identity");
    json_t *methods = json_object_get(ident, "methods");
    const char *method = json_string_value(json_array_get(methods, 0));
    if (!json_is_object(ident) || !json_is_array(methods) || json_array_size(methods) != 1 ||
        !method) {
        api_fault(c, 400, NULL, "identity.methods must list exactly one method");
        return;
    }
    json_t *scope = json_object_get(auth, "scope");
    if (scope && !json_is_object(scope)) {
        api_fault(c, 400, NULL, "scope must be an object");
        return;
    }
    AuthCtx *x = calloc(1, sizeof(*x));
    if (!x) {
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    x->scope_req = scope;
    x->s.method = strcmp(method, "password") == 0                 ? "password"
                  : strcmp(method, "token") == 0                  ? "token"
                  : strcmp(method, "application_credential") == 0 ? "application_credential"
                                                                  : NULL;
    json_t *m = json_object_get(ident, method);
    if (!x->s.method || !json_is_object(m)) {
        free(x);
        api_fault(c, 400, NULL, "unsupported authentication method '%s'", method);
        return;
    }
    if (strcmp(method, "password") == 0) {
        json_t *u = json_object_get(m, "user");
        const char *pw = json_string_value(json_object_get(u, "password"));
        if (!json_is_object(u) || !pw || strlen(pw) > 4096) {
            free(x);
            api_fault(c, 400, NULL, "password.user needs a password and an id or name");
            return;
        }
        const char *enc;
        if (find_named(a, "user", u, &x->s.user) < 0 ||
            !(enc = api_jstr(x->s.user, "_password"))[0]) {
            /* same work as a real check, so timing does not tell which users exist */
            identity_verify_async(c, pw,
                                  "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
                                  "0000000000000000000000000000000000000000000",
                                  auth_verified, x);
            return;
        }
        identity_verify_async(c, pw, enc, auth_verified, x);
        return;
    }
    if (strcmp(method, "token") == 0) {
        const char *tok = json_string_value(json_object_get(m, "id"));
        json_t *td;
        if (!tok || token_load(a, tok, &td) < 0) {
            free(x);
            api_fault(c, 401, NULL, "The request you have made requires authentication.");
            return;
        }
        x->s.expires_ms = json_integer_value(json_object_get(td, "expires_ms"));
        int r = api_store_get(a->store, "user", api_jstr(td, "user_id"), &x->s.user, NULL, 0);
        json_decref(td);
        if (r < 0) {
            free(x);
            api_fault(c, 401, NULL, "The request you have made requires authentication.");
            return;
        }
        auth_verified(c, true, x);
        return;
    }
    /* application_credential: {"id", "secret"} or {"name", "user": {...}, "secret"} */
    const char *id = json_string_value(json_object_get(m, "id"));
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *secret = json_string_value(json_object_get(m, "secret"));
    int r = -EINVAL;
    if (secret && strlen(secret) <= 4096) {
        if (id && strlen(id) <= 64)
            r = api_store_get(a->store, "app_cred", id, &x->s.app_cred, NULL, 0);
        else if (name && json_is_object(json_object_get(m, "user"))) {
            json_t *u;
            if ((r = find_named(a, "user", json_object_get(m, "user"), &u)) == 0) {
                char uniq[320];
                snprintf(uniq, sizeof(uniq), "%s/%.255s", api_jstr(u, "id"), name);
                json_decref(u);
                r = api_store_get_uniq(a->store, "app_cred", uniq, &x->s.app_cred);
            }
        }
    }
    if (r == 0) {
        int64_t exp = json_integer_value(json_object_get(x->s.app_cred, "_expires_ms"));
        if (exp && exp <= api_now_ms())
            r = -EACCES;
        x->s.expires_ms = exp;
    }
    if (r == 0)
        r = api_store_get(a->store, "user", api_jstr(x->s.app_cred, "user_id"), &x->s.user, NULL,
                          0);
    if (r < 0) {
        scope_free(&x->s);
        free(x);
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
        return;
    }
    identity_verify_async(c, secret, api_jstr(x->s.app_cred, "_secret"), auth_verified, x);
}

/* GET/HEAD/DELETE /auth/tokens with X-Subject-Token. */
static void h_token_check(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    SovStr st = sov_http_req_header(req, "X-Subject-Token");
    char tok[128];
    json_t *doc;
    if (!st.ptr || st.len >= sizeof(tok)) {
        api_fault(c, 404, NULL, "Could not find token.");
        return;
    }
    memcpy(tok, st.ptr, st.len);
    tok[st.len] = '\0';
    if (token_load(a, tok, &doc) < 0) {
        api_fault(c, 404, NULL, "Could not find token: %.8s...", tok);
        return;
    }
    const char *uid = api_jstr(doc, "user_id");
    bool own = strcmp(uid, c->auth.user_id) == 0;
    if (!own && !c->auth.system_admin) {
        json_decref(doc);
        api_fault(c, 403, NULL, "You are not authorized to check another user's token.");
        return;
    }
    SovStr m = sov_http_req_method(req);
    if (sov_str_eq(m, SOV_STR("DELETE"))) {
        snprintf(c->target, sizeof(c->target), "%s", uid);
        api_store_delete(a->store, "token", api_jstr(doc, "_hash"));
        json_decref(doc);
        api_reply(c, 204, NULL);
        return;
    }
    ApiAuth au;
    if (api_token_validate(a, tok, &au) < 0) {
        json_decref(doc);
        api_fault(c, 404, NULL, "Could not find token.");
        return;
    }
    json_t *user = NULL, *ud_ = NULL, *proj = NULL, *pd = NULL;
    api_store_get(a->store, "user", au.user_id, &user, NULL, 0);
    api_store_get(a->store, "domain", au.domain_id, &ud_, NULL, 0);
    if (au.project_id[0]) {
        api_store_get(a->store, "project", au.project_id, &proj, NULL, 0);
        api_store_get(a->store, "domain", au.project_domain_id, &pd, NULL, 0);
    }
    const char *methods[] = {api_jstr(doc, "method")};
    json_t *body = token_body(a, methods, 1, user, ud_, proj, pd, au.roles,
                              json_integer_value(json_object_get(doc, "issued_ms")), au.expires_ms,
                              api_jstr(doc, "audit_id"), api_query(c, "nocatalog") != NULL, NULL);
    json_decref(user);
    json_decref(ud_);
    json_decref(proj);
    json_decref(pd);
    json_decref(doc);
    sov_http_resp_header(req, "X-Subject-Token", sov_str(tok));
    if (sov_http_req_is_head(req)) {
        json_decref(body);
        api_reply(c, 200, NULL);
    } else
        api_reply(c, 200, body);
}

static void h_auth_catalog(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    api_reply(c, 200, json_pack("{s:o}", "catalog", catalog(a, c->auth.project_id)));
}

/* ---- version documents ---- */

static json_t *version_v3(Api *a)
{
    char self[600];
    snprintf(self, sizeof(self), "%s/identity/v3/", api_public_url(a));
    return json_pack("{s:s,s:s,s:s,s:[{s:s,s:s}],s:[{s:s,s:s}]}", "id", "v3.14", "status", "stable",
                     "updated", "2020-04-07T00:00:00Z", "links", "rel", "self", "href", self,
                     "media-types", "base", "application/json", "type",
                     "application/vnd.openstack.identity-v3+json");
}

static void h_versions(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_NONE);
    if (!c)
        return;
    api_reply(c, 300, json_pack("{s:{s:[o]}}", "versions", "values", version_v3(a)));
}

static void h_version(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_NONE);
    if (!c)
        return;
    api_reply(c, 200, json_pack("{s:o}", "version", version_v3(a)));
}

/* ---- bootstrap ---- */

static int read_admin_password(Api *a, char *out, size_t cap, SovBuf *err)
{
    if (a->cfg.admin_password[0]) {
        snprintf(out, cap, "%s", a->cfg.admin_password);
        return 0;
    }
    if (!a->cfg.admin_password_file[0]) {
        sov_buf_printf(err, "first start: set [identity] admin_password or admin_password_file");
        return -EINVAL;
    }
    FILE *f = fopen(a->cfg.admin_password_file, "re");
    if (!f || !fgets(out, (int)cap, f)) {
        if (f)
            fclose(f);
        sov_buf_printf(err, "cannot read %s", a->cfg.admin_password_file);
        return -EINVAL;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] ? 0 : -EINVAL;
}

static int put_doc(Api *a, const char *kind, const char *id, const char *project, const char *uniq,
                   const char *parent, json_t *doc)
{
    ApiDocMeta m = {.kind = kind,
                    .id = id,
                    .project = project,
                    .name = api_jstr(doc, "name"),
                    .uniq = uniq,
                    .parent = parent};
    int r = api_store_insert(a->store, &m, doc);
    json_decref(doc);
    return r;
}

static int bootstrap(Api *a, SovBuf *err)
{
    char pw[512], now[32], enc[ENCODED_MAX], pid[API_ID_LEN + 1], uid[API_ID_LEN + 1],
        rid[API_ID_LEN + 1], uniq[320], aid[API_ID_LEN + 1];
    uint8_t salt[16];
    int r = read_admin_password(a, pw, sizeof(pw), err);
    if (r < 0)
        return r;
    if (sov_random_bytes(salt, sizeof(salt)) < 0 ||
        argon2id_hash_encoded(ARGON2_T, ARGON2_M, ARGON2_P, pw, strlen(pw), salt, sizeof(salt), 32,
                              enc, sizeof(enc)) != ARGON2_OK) {
        explicit_bzero(pw, sizeof(pw));
        sov_buf_printf(err, "cannot hash the admin password");
        return -EIO;
    }
    explicit_bzero(pw, sizeof(pw));
    api_time_iso(api_now_ms(), now);
    api_store_begin(a->store);
    r = put_doc(a, "domain", IDENTITY_DEFAULT_DOMAIN, "", "Default", NULL,
                json_pack("{s:s,s:s,s:s,s:b,s:{}}", "id", IDENTITY_DEFAULT_DOMAIN, "name",
                          "Default", "description", "The default domain", "enabled", 1, "tags"));
    for (size_t i = 0; r == 0 && i < ELEMENTSOF(role_names); i++) {
        api_new_id(rid);
        r = put_doc(a, "role", rid, "", role_names[i], NULL,
                    json_pack("{s:s,s:s,s:n,s:s}", "id", rid, "name", role_names[i], "domain_id",
                              "description", ""));
        if (strcmp(role_names[i], "admin") == 0)
            snprintf(aid, sizeof(aid), "%s", rid);
    }
    api_new_id(pid);
    snprintf(uniq, sizeof(uniq), "%s/admin", IDENTITY_DEFAULT_DOMAIN);
    if (r == 0)
        r = put_doc(a, "project", pid, pid, uniq, NULL,
                    json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:[],s:s}", "id", pid, "name", "admin",
                              "domain_id", IDENTITY_DEFAULT_DOMAIN, "parent_id",
                              IDENTITY_DEFAULT_DOMAIN, "description", "Bootstrap project",
                              "enabled", 1, "is_domain", 0, "tags", "allowed_jurisdictions",
                              api_local_region(a)->jurisdiction));
    api_new_id(uid);
    if (r == 0)
        r = put_doc(a, "user", uid, "", uniq, NULL,
                    json_pack("{s:s,s:s,s:s,s:s,s:b,s:n,s:{},s:s}", "id", uid, "name", "admin",
                              "domain_id", IDENTITY_DEFAULT_DOMAIN, "default_project_id", pid,
                              "enabled", 1, "password_expires_at", "options", "_password", enc));
    if (r == 0) {
        char asg[128];
        snprintf(asg, sizeof(asg), "%s:%s:%s", pid, uid, aid);
        r = put_doc(a, "assignment", asg, pid, NULL, uid,
                    json_pack("{s:s,s:s,s:s,s:s}", "project_id", pid, "user_id", uid, "role_id",
                              aid, "role_name", "admin"));
    }
    if (r == 0)
        r = api_store_meta_set(a->store, "admin_project_id", pid);
    if (r == 0)
        r = api_store_commit(a->store);
    else
        api_store_rollback(a->store);
    if (r < 0)
        sov_buf_printf(err, "bootstrap failed: %s", strerror(-r));
    else
        log_info("identity bootstrapped: domain Default, roles admin/member/reader, project "
                 "admin, user admin");
    return r;
}

int api_identity_start(Api *a, SovBuf *err)
{
    int r = api_store_meta_get(a->store, "admin_project_id", a->admin_project_id,
                               sizeof(a->admin_project_id));
    if (r == -ENOENT) {
        if ((r = bootstrap(a, err)) < 0)
            return r;
        r = api_store_meta_get(a->store, "admin_project_id", a->admin_project_id,
                               sizeof(a->admin_project_id));
    }
    snprintf(a->default_domain_id, sizeof(a->default_domain_id), "%s", IDENTITY_DEFAULT_DOMAIN);
    if (r == 0)
        identity_export_ec2(a);
    return r;
}

void api_identity_stop(Api *a)
{
}

void api_identity_routes(Api *a)
{
    SovRouter *r = a->router;
    sov_router_add(r, "GET", "/identity", 0, h_versions, a);
    sov_router_add(r, "GET", "/identity/", 0, h_versions, a);
    sov_router_add(r, "GET", "/identity/v3", 0, h_version, a);
    sov_router_add(r, "GET", "/identity/v3/", 0, h_version, a);
    sov_router_add(r, "POST", "/identity/v3/auth/tokens", 0, h_auth_tokens, a);
    sov_router_add(r, "GET", "/identity/v3/auth/tokens", 0, h_token_check, a);
    sov_router_add(r, "HEAD", "/identity/v3/auth/tokens", 0, h_token_check, a);
    sov_router_add(r, "DELETE", "/identity/v3/auth/tokens", 0, h_token_check, a);
    sov_router_add(r, "GET", "/identity/v3/auth/catalog", 0, h_auth_catalog, a);
    keystone_routes(a);
}
