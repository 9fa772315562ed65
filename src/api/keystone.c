/* SPDX-License-Identifier: Apache-2.0 */
/* Keystone v3 resources: domains, projects (with the sovereignty attribute
 * allowed_jurisdictions), users, roles, role assignments, application credentials, EC2
 * credentials (exported for sov-s3), and the read-only regions/services/endpoints views. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define NAME_MAX_LEN 255

static void add_links(Api *a, json_t *doc, const char *collection)
{
    char self[768];
    snprintf(self, sizeof(self), "%s/identity/v3/%s/%s", api_public_url(a), collection,
             api_jstr(doc, "id"));
    json_object_set_new(doc, "links", json_pack("{s:s}", "self", self));
}

json_t *identity_public(Api *a, const char *collection, json_t *doc)
{
    api_doc_public(doc);
    add_links(a, doc, collection);
    return doc;
}

static json_t *list_links(Api *a, const char *collection)
{
    char self[768];
    snprintf(self, sizeof(self), "%s/identity/v3/%s", api_public_url(a), collection);
    return json_pack("{s:s,s:n,s:n}", "self", self, "previous", "next");
}

/* A string member that must be present (required) or may be (optional), bounded. */
static int get_str(ApiCall *c, json_t *o, const char *k, bool required, size_t max,
                   const char **ret)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        if (required) {
            api_fault(c, 400, NULL, "'%s' is a required property", k);
            return -EINVAL;
        }
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) > max ||
        (required && json_string_length(v) == 0)) {
        api_fault(c, 400, NULL, "'%s' must be a string of 1 to %zu characters", k, max);
        return -EINVAL;
    }
    *ret = json_string_value(v);
    return 1;
}

static int get_bool(ApiCall *c, json_t *o, const char *k, bool *ret)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        api_fault(c, 400, NULL, "'%s' must be a boolean", k);
        return -EINVAL;
    }
    *ret = json_is_true(v);
    return 1;
}

static bool valid_jurisdictions(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == ',' || *p == ' '))
            return false;
    return true;
}

/* Loads {id} of kind for a call, answering 404 when absent. */
static json_t *load(ApiCall *c, const char *kind, const char *what, const char *id)
{
    json_t *doc;
    if (!id || strlen(id) > 64 || api_store_get(c->api->store, kind, id, &doc, NULL, 0) < 0) {
        api_fault(c, 404, NULL, "Could not find %s: %s.", what, id ? id : "");
        return NULL;
    }
    return doc;
}

static int store_err(ApiCall *c, int r, const char *what)
{
    if (r == -EEXIST)
        api_fault(c, 409, NULL, "Conflict occurred attempting to store %s - Duplicate entry.",
                  what);
    else
        api_fault(c, 500, NULL, "cannot store %s: %s", what, strerror(-r));
    return r;
}

static void reply_one(ApiCall *c, int status, const char *wrap, const char *collection, json_t *doc)
{
    api_reply(c, status, json_pack("{s:o}", wrap, identity_public(c->api, collection, doc)));
}

static void reply_list(ApiCall *c, const char *wrap, const char *collection, json_t *arr)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) identity_public(c->api, collection, v);
    api_reply(c, 200, json_pack("{s:o,s:o}", wrap, arr, "links", list_links(c->api, collection)));
}

/* Keeps the documents whose member k equals the query parameter k (when given). */
static void filter_eq(ApiCall *c, json_t *arr, const char *k)
{
    const char *want = api_query(c, k);
    if (!want)
        return;
    for (size_t i = json_array_size(arr); i-- > 0;) {
        json_t *v = json_object_get(json_array_get(arr, i), k);
        bool keep = json_is_string(v)    ? strcmp(json_string_value(v), want) == 0
                    : json_is_boolean(v) ? (strcasecmp(want, "true") == 0) == json_is_true(v)
                                         : false;
        if (!keep)
            json_array_remove(arr, i);
    }
}

static json_t *list_kind(ApiCall *c, const char *kind, const char *project, const char *parent)
{
    ApiListQuery q = {.kind = kind, .project = project, .parent = parent};
    json_t *arr;
    if (api_store_list(c->api->store, &q, &arr) < 0) {
        api_fault(c, 500, NULL, "cannot list %ss", kind);
        return NULL;
    }
    return arr;
}

/* ---- domains ---- */

static void h_domains(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *arr = list_kind(c, "domain", NULL, NULL);
    if (!arr)
        return;
    filter_eq(c, arr, "name");
    filter_eq(c, arr, "enabled");
    reply_list(c, "domains", "domains", arr);
}

static void h_domain_create(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *b = api_body(c, "domain");
    const char *name = NULL, *desc = "";
    bool enabled = true;
    char id[API_ID_LEN + 1];
    if (!b || get_str(c, b, "name", true, NAME_MAX_LEN, &name) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0 ||
        get_bool(c, b, "enabled", &enabled) < 0)
        return;
    api_new_id(id);
    json_t *doc = json_pack("{s:s,s:s,s:s,s:b,s:[]}", "id", id, "name", name, "description", desc,
                            "enabled", enabled, "tags");
    ApiDocMeta m = {.kind = "domain", .id = id, .name = name, .uniq = name};
    snprintf(c->target, sizeof(c->target), "%s", id);
    int r = api_store_insert(c->api->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "Domain");
        return;
    }
    reply_one(c, 201, "domain", "domains", doc);
}

static void h_domain(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    SovStr method = sov_http_req_method(req);
    bool get = sov_str_eq(method, SOV_STR("GET"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, get ? API_NEED_READ : API_NEED_ADMIN);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    json_t *doc = load(c, "domain", "domain", id);
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (get) {
        if (!c->auth.system_admin && strcmp(id, c->auth.domain_id) != 0) {
            json_decref(doc);
            api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
            return;
        }
        reply_one(c, 200, "domain", "domains", doc);
        return;
    }
    if (sov_str_eq(method, SOV_STR("DELETE"))) {
        ApiListQuery q = {.kind = "project"};
        json_t *projects = list_kind(c, "project", NULL, NULL);
        bool used = false;
        size_t i;
        json_t *v;
        (void)q;
        if (!projects) {
            json_decref(doc);
            return;
        }
        json_array_foreach(projects, i, v) used |= strcmp(api_jstr(v, "domain_id"), id) == 0;
        json_decref(projects);
        if (json_is_true(json_object_get(doc, "enabled")) || used ||
            strcmp(id, IDENTITY_DEFAULT_DOMAIN) == 0) {
            json_decref(doc);
            api_fault(c, 403, NULL,
                      "Cannot delete a domain that is enabled or holds projects; disable it and "
                      "remove its projects first.");
            return;
        }
        json_decref(doc);
        api_store_delete(a->store, "domain", id);
        api_reply(c, 204, NULL);
        return;
    }
    json_t *b = api_body(c, "domain");
    const char *name = NULL, *desc = NULL;
    bool enabled = true;
    int he;
    if (!b || get_str(c, b, "name", false, NAME_MAX_LEN, &name) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0 ||
        (he = get_bool(c, b, "enabled", &enabled)) < 0) {
        json_decref(doc);
        return;
    }
    if (name)
        json_object_set_new(doc, "name", json_string(name));
    if (desc)
        json_object_set_new(doc, "description", json_string(desc));
    if (he > 0)
        json_object_set_new(doc, "enabled", json_boolean(enabled));
    ApiDocMeta m = {
        .kind = "domain", .id = id, .name = api_jstr(doc, "name"), .uniq = api_jstr(doc, "name")};
    int r = api_store_update(a->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "Domain");
        return;
    }
    reply_one(c, 200, "domain", "domains", doc);
}

/* ---- projects ---- */

static void h_projects(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    json_t *arr = list_kind(c, "project", NULL, NULL);
    if (!arr)
        return;
    if (!c->auth.system_admin) /* others see the projects they hold a role on */
        for (size_t i = json_array_size(arr); i-- > 0;)
            if (!identity_roles(a, c->auth.user_id, api_jstr(json_array_get(arr, i), "id")))
                json_array_remove(arr, i);
    filter_eq(c, arr, "name");
    filter_eq(c, arr, "domain_id");
    filter_eq(c, arr, "enabled");
    filter_eq(c, arr, "parent_id");
    reply_list(c, "projects", "projects", arr);
}

static const char *const project_fixed[] = {"id",        "name",        "domain_id",
                                            "parent_id", "description", "enabled",
                                            "is_domain", "tags",        "allowed_jurisdictions",
                                            "options",   NULL};

/* Copies the project's extra properties (string values) and checks the known fields. */
static int project_apply(ApiCall *c, json_t *b, json_t *doc, bool create)
{
    const char *name = NULL, *desc = NULL, *jur = NULL;
    bool enabled = true;
    int he;
    if (get_str(c, b, "name", create, 64, &name) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0 ||
        (he = get_bool(c, b, "enabled", &enabled)) < 0 ||
        get_str(c, b, "allowed_jurisdictions", false, 120, &jur) < 0)
        return -EINVAL;
    if (jur && (!*jur || !valid_jurisdictions(jur))) {
        api_fault(c, 400, NULL,
                  "allowed_jurisdictions is a comma-separated list of jurisdiction codes such as "
                  "\"EU,CH\"");
        return -EINVAL;
    }
    json_t *tags = json_object_get(b, "tags");
    if (tags && (!json_is_array(tags) || json_array_size(tags) > 80)) {
        api_fault(c, 400, NULL, "'tags' must be a list of at most 80 strings");
        return -EINVAL;
    }
    const char *k;
    json_t *v;
    size_t extra = 0;
    json_object_foreach(b, k, v)
    {
        bool fixed = false;
        for (size_t i = 0; project_fixed[i]; i++)
            fixed |= strcmp(k, project_fixed[i]) == 0;
        if (fixed)
            continue;
        if (k[0] == '_' || strlen(k) > 255 || ++extra > 64 ||
            !(json_is_string(v) || json_is_null(v)) ||
            (json_is_string(v) && json_string_length(v) > 4096)) {
            api_fault(c, 400, NULL, "invalid project property '%.64s'", k);
            return -EINVAL;
        }
        json_object_set(doc, k, v);
    }
    if (name)
        json_object_set_new(doc, "name", json_string(name));
    if (desc)
        json_object_set_new(doc, "description", json_string(desc));
    if (he > 0)
        json_object_set_new(doc, "enabled", json_boolean(enabled));
    if (jur)
        json_object_set_new(doc, "allowed_jurisdictions", json_string(jur));
    if (tags)
        json_object_set(doc, "tags", tags);
    return 0;
}

static void h_project_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *b = api_body(c, "project");
    const char *dom = IDENTITY_DEFAULT_DOMAIN;
    char id[API_ID_LEN + 1], uniq[320];
    json_t *d;
    if (!b || get_str(c, b, "domain_id", false, 64, &dom) < 0)
        return;
    if (api_store_get(a->store, "domain", dom, &d, NULL, 0) < 0) {
        api_fault(c, 400, NULL, "Could not find domain: %s.", dom);
        return;
    }
    json_decref(d);
    api_new_id(id);
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:[],s:{},s:s}", "id", id, "domain_id", dom,
                  "parent_id", dom, "description", "", "enabled", 1, "is_domain", 0, "tags",
                  "options", "allowed_jurisdictions", api_local_region(a)->jurisdiction);
    if (project_apply(c, b, doc, true) < 0) {
        json_decref(doc);
        return;
    }
    snprintf(uniq, sizeof(uniq), "%s/%s", dom, api_jstr(doc, "name"));
    ApiDocMeta m = {
        .kind = "project", .id = id, .project = id, .name = api_jstr(doc, "name"), .uniq = uniq};
    snprintf(c->target, sizeof(c->target), "%s", id);
    int r = api_store_insert(a->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "Project");
        return;
    }
    reply_one(c, 201, "project", "projects", doc);
}

static void h_project(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    SovStr method = sov_http_req_method(req);
    bool get = sov_str_eq(method, SOV_STR("GET"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, get ? API_NEED_READ : API_NEED_ADMIN);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    if (get && !c->auth.system_admin && !identity_roles(a, c->auth.user_id, id ? id : "")) {
        api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
        return;
    }
    json_t *doc = load(c, "project", "project", id);
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (get) {
        reply_one(c, 200, "project", "projects", doc);
        return;
    }
    if (sov_str_eq(method, SOV_STR("DELETE"))) {
        json_decref(doc);
        if (strcmp(id, a->admin_project_id) == 0) {
            api_fault(c, 403, NULL, "The bootstrap admin project cannot be deleted.");
            return;
        }
        api_store_begin(a->store);
        api_store_delete(a->store, "project", id);
        ApiListQuery q = {.kind = "assignment", .project = id};
        json_t *asg;
        if (api_store_list(a->store, &q, &asg) == 0) {
            size_t i;
            json_t *v;
            json_array_foreach(asg, i, v)
            {
                char aid[128];
                snprintf(aid, sizeof(aid), "%s:%s:%s", api_jstr(v, "project_id"),
                         api_jstr(v, "user_id"), api_jstr(v, "role_id"));
                api_store_delete(a->store, "assignment", aid);
            }
            json_decref(asg);
        }
        int r = api_store_commit(a->store);
        identity_revoke_tokens(a, NULL, id);
        if (r < 0)
            api_fault(c, 500, NULL, "cannot delete the project");
        else
            api_reply(c, 204, NULL);
        return;
    }
    json_t *b = api_body(c, "project");
    if (!b || project_apply(c, b, doc, false) < 0) {
        json_decref(doc);
        return;
    }
    char uniq[320];
    snprintf(uniq, sizeof(uniq), "%s/%s", api_jstr(doc, "domain_id"), api_jstr(doc, "name"));
    ApiDocMeta m = {
        .kind = "project", .id = id, .project = id, .name = api_jstr(doc, "name"), .uniq = uniq};
    int r = api_store_update(a->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "Project");
        return;
    }
    if (!json_is_true(json_object_get(doc, "enabled")))
        identity_revoke_tokens(a, NULL, id);
    reply_one(c, 200, "project", "projects", doc);
}

/* ---- users ---- */

static void h_users(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *arr = list_kind(c, "user", NULL, NULL);
    if (!arr)
        return;
    filter_eq(c, arr, "name");
    filter_eq(c, arr, "domain_id");
    filter_eq(c, arr, "enabled");
    reply_list(c, "users", "users", arr);
}

typedef struct UserWrite {
    json_t *doc;
    bool create;
    bool revoke; /* password changed or user disabled: drop its tokens */
} UserWrite;

static void user_store(ApiCall *c, const char *encoded, void *ud)
{
    UserWrite *w = ud;
    Api *a = c->api;
    json_t *doc = w->doc;
    bool create = w->create, revoke = w->revoke;
    free(w);
    if (encoded && !*encoded) {
        json_decref(doc);
        api_fault(c, 500, NULL, "cannot hash the password");
        return;
    }
    if (encoded)
        json_object_set_new(doc, "_password", json_string(encoded));
    char uniq[320];
    snprintf(uniq, sizeof(uniq), "%s/%s", api_jstr(doc, "domain_id"), api_jstr(doc, "name"));
    ApiDocMeta m = {
        .kind = "user", .id = api_jstr(doc, "id"), .name = api_jstr(doc, "name"), .uniq = uniq};
    int r = create ? api_store_insert(a->store, &m, doc) : api_store_update(a->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "User");
        return;
    }
    if (revoke)
        identity_revoke_tokens(a, api_jstr(doc, "id"), NULL);
    reply_one(c, create ? 201 : 200, "user", "users", doc);
}

static int user_apply(ApiCall *c, json_t *b, json_t *doc, bool create, const char **password)
{
    const char *name = NULL, *dpid = NULL, *email = NULL, *desc = NULL;
    bool enabled = true;
    int he;
    json_t *pw = json_object_get(b, "password");
    if (get_str(c, b, "name", create, NAME_MAX_LEN, &name) < 0 ||
        get_str(c, b, "default_project_id", false, 64, &dpid) < 0 ||
        get_str(c, b, "email", false, 255, &email) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0 ||
        (he = get_bool(c, b, "enabled", &enabled)) < 0)
        return -EINVAL;
    if (pw && !json_is_null(pw) &&
        (!json_is_string(pw) || json_string_length(pw) == 0 || json_string_length(pw) > 4096)) {
        api_fault(c, 400, NULL, "'password' must be a string of 1 to 4096 characters");
        return -EINVAL;
    }
    if (dpid && *dpid) {
        json_t *p;
        if (api_store_get(c->api->store, "project", dpid, &p, NULL, 0) < 0) {
            api_fault(c, 400, NULL, "Could not find project: %s.", dpid);
            return -EINVAL;
        }
        json_decref(p);
        json_object_set_new(doc, "default_project_id", json_string(dpid));
    }
    if (name)
        json_object_set_new(doc, "name", json_string(name));
    if (email)
        json_object_set_new(doc, "email", json_string(email));
    if (desc)
        json_object_set_new(doc, "description", json_string(desc));
    if (he > 0)
        json_object_set_new(doc, "enabled", json_boolean(enabled));
    *password = json_string_value(pw);
    return 0;
}

static void h_user_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *b = api_body(c, "user");
    const char *dom = IDENTITY_DEFAULT_DOMAIN, *pw = NULL;
    char id[API_ID_LEN + 1];
    json_t *d;
    if (!b || get_str(c, b, "domain_id", false, 64, &dom) < 0)
        return;
    if (api_store_get(a->store, "domain", dom, &d, NULL, 0) < 0) {
        api_fault(c, 400, NULL, "Could not find domain: %s.", dom);
        return;
    }
    json_decref(d);
    api_new_id(id);
    json_t *doc = json_pack("{s:s,s:s,s:b,s:n,s:{}}", "id", id, "domain_id", dom, "enabled", 1,
                            "password_expires_at", "options");
    if (user_apply(c, b, doc, true, &pw) < 0) {
        json_decref(doc);
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    UserWrite *w = calloc(1, sizeof(*w));
    if (!w) {
        json_decref(doc);
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    *w = (UserWrite){doc, true, false};
    if (pw)
        identity_hash_async(c, pw, user_store, w);
    else
        user_store(c, NULL, w);
}

static void h_user(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    SovStr method = sov_http_req_method(req);
    bool get = sov_str_eq(method, SOV_STR("GET"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, get ? API_NEED_READ : API_NEED_ADMIN);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    if (get && !c->auth.system_admin && strcmp(id ? id : "", c->auth.user_id) != 0) {
        api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
        return;
    }
    json_t *doc = load(c, "user", "user", id);
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (get) {
        reply_one(c, 200, "user", "users", doc);
        return;
    }
    if (sov_str_eq(method, SOV_STR("DELETE"))) {
        json_decref(doc);
        api_store_begin(a->store);
        api_store_delete(a->store, "user", id);
        static const char *const kinds[] = {"assignment", "app_cred", "ec2"};
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
            ApiListQuery q = {.kind = kinds[k], .parent = id};
            json_t *arr;
            if (api_store_list(a->store, &q, &arr) < 0)
                continue;
            size_t i;
            json_t *v;
            json_array_foreach(arr, i, v)
            {
                char did[160];
                if (k == 0)
                    snprintf(did, sizeof(did), "%s:%s:%s", api_jstr(v, "project_id"), id,
                             api_jstr(v, "role_id"));
                else
                    snprintf(did, sizeof(did), "%s", api_jstr(v, k == 1 ? "id" : "access"));
                api_store_delete(a->store, kinds[k], did);
            }
            json_decref(arr);
        }
        int r = api_store_commit(a->store);
        identity_revoke_tokens(a, id, NULL);
        identity_export_ec2(a);
        if (r < 0)
            api_fault(c, 500, NULL, "cannot delete the user");
        else
            api_reply(c, 204, NULL);
        return;
    }
    json_t *b = api_body(c, "user");
    const char *pw = NULL;
    if (!b || user_apply(c, b, doc, false, &pw) < 0) {
        json_decref(doc);
        return;
    }
    UserWrite *w = calloc(1, sizeof(*w));
    if (!w) {
        json_decref(doc);
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    *w = (UserWrite){doc, false, pw != NULL || !json_is_true(json_object_get(doc, "enabled"))};
    if (pw)
        identity_hash_async(c, pw, user_store, w);
    else
        user_store(c, NULL, w);
}

static void h_user_projects(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    if (!c->auth.system_admin && strcmp(id ? id : "", c->auth.user_id) != 0) {
        api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
        return;
    }
    json_t *arr = list_kind(c, "project", NULL, NULL);
    if (!arr)
        return;
    for (size_t i = json_array_size(arr); i-- > 0;)
        if (!identity_roles(a, id, api_jstr(json_array_get(arr, i), "id")))
            json_array_remove(arr, i);
    reply_list(c, "projects", "projects", arr);
}

/* POST /users/{id}/password {"user": {"password", "original_password"}}: self-service. */
typedef struct PwChange {
    json_t *doc;
    char *new_password;
} PwChange;

static void pw_verified(ApiCall *c, const char *encoded, void *ud);

static void pw_original_checked(ApiCall *c, bool ok, void *ud)
{
    PwChange *p = ud;
    if (ok) {
        identity_hash_async(c, p->new_password, pw_verified, p);
        return;
    }
    explicit_bzero(p->new_password, strlen(p->new_password));
    free(p->new_password);
    json_decref(p->doc);
    free(p);
    api_fault(c, 401, NULL, "The original password is not correct.");
}

static void h_user_password(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_NONE);
    if (!c)
        return;
    /* Keystone lets a user change an expired password without a token: the original password
     * is the proof. We require a valid token of the same user as well. */
    SovStr tok = sov_http_req_header(req, "X-Auth-Token");
    char t[513];
    ApiAuth au;
    if (!tok.ptr || tok.len >= sizeof(t)) {
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
        return;
    }
    memcpy(t, tok.ptr, tok.len);
    t[tok.len] = '\0';
    int ok = api_token_validate(a, t, &au);
    explicit_bzero(t, sizeof(t));
    const char *id = api_param(c, "id");
    if (ok < 0 || strcmp(au.user_id, id ? id : "") != 0) {
        api_fault(c, 401, NULL, "The request you have made requires authentication.");
        return;
    }
    c->auth = au;
    c->authenticated = true;
    snprintf(c->target, sizeof(c->target), "%s", id);
    json_t *b = api_body(c, "user");
    const char *np = NULL, *op = NULL;
    if (!b || get_str(c, b, "password", true, 4096, &np) < 0 ||
        get_str(c, b, "original_password", true, 4096, &op) < 0)
        return;
    json_t *doc = load(c, "user", "user", id);
    if (!doc)
        return;
    PwChange *p = calloc(1, sizeof(*p));
    if (!p || !(p->new_password = strdup(np))) {
        free(p);
        json_decref(doc);
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    p->doc = doc;
    identity_verify_async(c, op, api_jstr(doc, "_password"), pw_original_checked, p);
}

static void pw_verified(ApiCall *c, const char *encoded, void *ud)
{
    /* the original password was right: the new hash replaces the old one, tokens go */
    PwChange *p = ud;
    explicit_bzero(p->new_password, strlen(p->new_password));
    free(p->new_password);
    UserWrite *w = calloc(1, sizeof(*w));
    if (!w || !*encoded) {
        free(w);
        json_decref(p->doc);
        free(p);
        api_fault(c, 500, NULL, "cannot hash the password");
        return;
    }
    *w = (UserWrite){p->doc, false, true};
    free(p);
    user_store(c, encoded, w);
}

/* ---- roles and assignments ---- */

static void h_roles(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    json_t *arr = list_kind(c, "role", NULL, NULL);
    if (!arr)
        return;
    filter_eq(c, arr, "name");
    reply_list(c, "roles", "roles", arr);
}

static void h_role(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    json_t *doc = load(c, "role", "role", api_param(c, "id"));
    if (doc)
        reply_one(c, 200, "role", "roles", doc);
}

static void h_role_create(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    json_t *b = api_body(c, "role");
    const char *name = NULL, *desc = "";
    char id[API_ID_LEN + 1];
    if (!b || get_str(c, b, "name", true, NAME_MAX_LEN, &name) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0)
        return;
    api_new_id(id);
    json_t *doc =
        json_pack("{s:s,s:s,s:n,s:s}", "id", id, "name", name, "domain_id", "description", desc);
    ApiDocMeta m = {.kind = "role", .id = id, .name = name, .uniq = name};
    snprintf(c->target, sizeof(c->target), "%s", id);
    int r = api_store_insert(c->api->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "Role");
        return;
    }
    reply_one(c, 201, "role", "roles", doc);
}

static void h_role_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_ADMIN);
    if (!c)
        return;
    const char *id = api_param(c, "id");
    json_t *doc = load(c, "role", "role", id);
    if (!doc)
        return;
    snprintf(c->target, sizeof(c->target), "%s", id);
    const char *n = api_jstr(doc, "name");
    bool builtin = !strcmp(n, "admin") || !strcmp(n, "member") || !strcmp(n, "reader");
    json_decref(doc);
    if (builtin) {
        api_fault(c, 403, NULL, "The built-in roles cannot be deleted.");
        return;
    }
    api_store_delete(a->store, "role", id);
    api_reply(c, 204, NULL);
}

/* /projects/{project}/users/{user}/roles[/{role}] */
static void h_assignment(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    SovStr method = sov_http_req_method(req);
    bool read = sov_str_eq(method, SOV_STR("GET")) || sov_str_eq(method, SOV_STR("HEAD"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, read ? API_NEED_READ : API_NEED_ADMIN);
    if (!c)
        return;
    const char *pid = api_param(c, "project"), *uid = api_param(c, "user");
    const char *rid = api_param(c, "role");
    if (read && !c->auth.system_admin && strcmp(uid ? uid : "", c->auth.user_id) != 0) {
        api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
        return;
    }
    json_t *p = load(c, "project", "project", pid);
    if (!p)
        return;
    json_decref(p);
    json_t *u = load(c, "user", "user", uid);
    if (!u)
        return;
    json_decref(u);
    if (!rid) { /* list */
        ApiListQuery q = {.kind = "assignment", .project = pid, .parent = uid};
        json_t *arr, *out = json_array();
        if (api_store_list(a->store, &q, &arr) == 0) {
            size_t i;
            json_t *v, *role;
            json_array_foreach(
                arr, i,
                v) if (api_store_get(a->store, "role", api_jstr(v, "role_id"), &role, NULL, 0) == 0)
                json_array_append_new(out, identity_public(a, "roles", role));
            json_decref(arr);
        }
        api_reply(c, 200, json_pack("{s:o,s:o}", "roles", out, "links", list_links(a, "roles")));
        return;
    }
    json_t *role = load(c, "role", "role", rid);
    if (!role)
        return;
    char aid[128];
    snprintf(aid, sizeof(aid), "%s:%s:%s", pid, uid, rid);
    snprintf(c->target, sizeof(c->target), "%.127s", aid);
    json_t *existing;
    bool have = api_store_get(a->store, "assignment", aid, &existing, NULL, 0) == 0;
    if (have)
        json_decref(existing);
    if (read) {
        json_decref(role);
        if (have)
            api_reply(c, 204, NULL);
        else
            api_fault(c, 404, NULL, "Could not find role assignment.");
        return;
    }
    if (sov_str_eq(method, SOV_STR("DELETE"))) {
        json_decref(role);
        if (!have) {
            api_fault(c, 404, NULL, "Could not find role assignment.");
            return;
        }
        api_store_delete(a->store, "assignment", aid);
        identity_revoke_tokens(a, uid, pid);
        api_reply(c, 204, NULL);
        return;
    }
    if (!have) {
        json_t *doc = json_pack("{s:s,s:s,s:s,s:s}", "project_id", pid, "user_id", uid, "role_id",
                                rid, "role_name", api_jstr(role, "name"));
        ApiDocMeta m = {.kind = "assignment", .id = aid, .project = pid, .parent = uid};
        int r = api_store_insert(a->store, &m, doc);
        json_decref(doc);
        if (r < 0 && r != -EEXIST) {
            json_decref(role);
            store_err(c, r, "role assignment");
            return;
        }
    }
    json_decref(role);
    api_reply(c, 204, NULL);
}

static json_t *domain_ref(Api *a, const char *id)
{
    json_t *d;
    if (api_store_get(a->store, "domain", id, &d, NULL, 0) < 0)
        return json_pack("{s:s}", "id", id);
    json_t *ref = json_pack("{s:s,s:s}", "id", id, "name", api_jstr(d, "name"));
    json_decref(d);
    return ref;
}

static void h_role_assignments(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    const char *uid = api_query(c, "user.id"), *pid = api_query(c, "scope.project.id");
    const char *rid = api_query(c, "role.id");
    bool names = api_query(c, "include_names") != NULL;
    if (!c->auth.system_admin && (!uid || strcmp(uid, c->auth.user_id) != 0)) {
        api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
        return;
    }
    ApiListQuery q = {.kind = "assignment", .project = pid, .parent = uid};
    json_t *arr, *out = json_array();
    if (api_store_list(a->store, &q, &arr) < 0) {
        json_decref(out);
        api_fault(c, 500, NULL, "cannot list role assignments");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (rid && strcmp(rid, api_jstr(v, "role_id")) != 0)
            continue;
        json_t *e = json_pack("{s:{s:s},s:{s:s},s:{s:{s:s}}}", "role", "id", api_jstr(v, "role_id"),
                              "user", "id", api_jstr(v, "user_id"), "scope", "project", "id",
                              api_jstr(v, "project_id"));
        if (names) {
            json_t *d;
            json_object_set_new(json_object_get(e, "role"), "name",
                                json_string(api_jstr(v, "role_name")));
            if (api_store_get(a->store, "user", api_jstr(v, "user_id"), &d, NULL, 0) == 0) {
                json_t *eu = json_object_get(e, "user");
                json_object_set(eu, "name", json_object_get(d, "name"));
                json_object_set_new(eu, "domain", domain_ref(a, api_jstr(d, "domain_id")));
                json_decref(d);
            }
            if (api_store_get(a->store, "project", api_jstr(v, "project_id"), &d, NULL, 0) == 0) {
                json_t *ep = json_object_get(json_object_get(e, "scope"), "project");
                json_object_set(ep, "name", json_object_get(d, "name"));
                json_object_set_new(ep, "domain", domain_ref(a, api_jstr(d, "domain_id")));
                json_decref(d);
            }
        }
        json_array_append_new(out, e);
    }
    json_decref(arr);
    api_reply(c, 200,
              json_pack("{s:o,s:o}", "role_assignments", out, "links",
                        list_links(a, "role_assignments")));
}

/* ---- application credentials ---- */

typedef struct AppCredWrite {
    json_t *doc;
    char *secret;
} AppCredWrite;

static void app_cred_store(ApiCall *c, const char *encoded, void *ud)
{
    AppCredWrite *w = ud;
    json_t *doc = w->doc;
    char *secret = w->secret;
    free(w);
    if (!*encoded) {
        json_decref(doc);
        free(secret);
        api_fault(c, 500, NULL, "cannot hash the secret");
        return;
    }
    json_object_set_new(doc, "_secret", json_string(encoded));
    char uniq[320];
    snprintf(uniq, sizeof(uniq), "%s/%s", api_jstr(doc, "user_id"), api_jstr(doc, "name"));
    ApiDocMeta m = {.kind = "app_cred",
                    .id = api_jstr(doc, "id"),
                    .project = api_jstr(doc, "project_id"),
                    .name = api_jstr(doc, "name"),
                    .parent = api_jstr(doc, "user_id"),
                    .uniq = uniq};
    int r = api_store_insert(c->api->store, &m, doc);
    if (r < 0) {
        json_decref(doc);
        free(secret);
        store_err(c, r, "Application credential");
        return;
    }
    api_doc_public(doc);
    json_object_set_new(doc, "secret", json_string(secret)); /* shown once, never again */
    explicit_bzero(secret, strlen(secret));
    free(secret);
    add_links(c->api, doc, "application_credentials");
    api_reply(c, 201, json_pack("{s:o}", "application_credential", doc));
}

static bool own_user(ApiCall *c, const char *uid)
{
    if (uid && strcmp(uid, c->auth.user_id) == 0)
        return true;
    api_fault(c, 403, NULL, "You are not authorized to perform the requested action.");
    return false;
}

static void h_app_creds(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    bool post = sov_str_eq(sov_http_req_method(req), SOV_STR("POST"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, post ? API_NEED_WRITE : API_NEED_READ);
    if (!c)
        return;
    const char *uid = api_param(c, "user");
    if (!own_user(c, uid))
        return;
    if (!post) {
        json_t *arr = list_kind(c, "app_cred", NULL, uid);
        if (!arr)
            return;
        filter_eq(c, arr, "name");
        reply_list(c, "application_credentials", "application_credentials", arr);
        return;
    }
    if (c->auth.app_cred_id[0]) {
        api_fault(c, 403, NULL,
                  "An application credential cannot create another application credential.");
        return;
    }
    json_t *b = api_body(c, "application_credential");
    const char *name = NULL, *desc = "", *secret = NULL, *exp = NULL;
    bool unrestricted = false;
    if (!b || get_str(c, b, "name", true, NAME_MAX_LEN, &name) < 0 ||
        get_str(c, b, "description", false, 1024, &desc) < 0 ||
        get_str(c, b, "secret", false, 4096, &secret) < 0 ||
        get_bool(c, b, "unrestricted", &unrestricted) < 0)
        return;
    json_t *jexp = json_object_get(b, "expires_at");
    int64_t exp_ms = 0;
    if (jexp && !json_is_null(jexp)) {
        struct tm tm = {0};
        exp = json_string_value(jexp);
        const char *end = exp ? strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
        if (!end) {
            api_fault(c, 400, NULL, "expires_at must be an ISO 8601 time");
            return;
        }
        exp_ms = (int64_t)timegm(&tm) * 1000;
        if (exp_ms <= api_now_ms()) {
            api_fault(c, 400, NULL, "expires_at is in the past");
            return;
        }
    }
    /* roles: a subset of the caller's roles on the project (default: all of them) */
    json_t *want = json_object_get(b, "roles");
    unsigned have = c->auth.roles, mask = have;
    if (want) {
        if (!json_is_array(want) || json_array_size(want) > 8) {
            api_fault(c, 400, NULL, "'roles' must be a list of role references");
            return;
        }
        mask = 0;
        size_t i;
        json_t *v;
        json_array_foreach(want, i, v)
        {
            const char *n = json_string_value(json_object_get(v, "name"));
            const char *rid = json_string_value(json_object_get(v, "id"));
            json_t *role = NULL;
            if (rid)
                api_store_get(a->store, "role", rid, &role, NULL, 0);
            else if (n)
                api_store_get_uniq(a->store, "role", n, &role);
            unsigned bit = 0;
            n = role ? api_jstr(role, "name") : "";
            bit = !strcmp(n, "reader")   ? API_ROLE_READER
                  : !strcmp(n, "member") ? API_ROLE_MEMBER
                  : !strcmp(n, "admin")  ? API_ROLE_ADMIN
                                         : 0;
            json_decref(role);
            if (!bit || !(have & bit)) {
                api_fault(c, 403, NULL,
                          "A role of the application credential is not one the "
                          "user holds on the project.");
                return;
            }
            mask |= bit;
        }
    }
    char id[API_ID_LEN + 1], gen[49];
    api_new_id(id);
    if (!secret) {
        uint8_t raw[24];
        sov_random_bytes(raw, sizeof(raw));
        sov_hex_encode(raw, sizeof(raw), gen);
        gen[48] = '\0';
        secret = gen;
    }
    json_t *roles = identity_role_list(a, mask);
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:b,s:o,s:I}", "id", id, "name", name, "description",
                  desc, "user_id", c->auth.user_id, "project_id", c->auth.project_id, "roles",
                  roles, "unrestricted", unrestricted, "expires_at",
                  exp ? json_string(exp) : json_null(), "_expires_ms", (json_int_t)exp_ms);
    AppCredWrite *w = calloc(1, sizeof(*w));
    if (!w || !(w->secret = strdup(secret))) {
        free(w);
        json_decref(doc);
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    w->doc = doc;
    snprintf(c->target, sizeof(c->target), "%s", id);
    identity_hash_async(c, secret, app_cred_store, w);
    explicit_bzero(gen, sizeof(gen));
}

static void h_app_cred(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    bool del = sov_str_eq(sov_http_req_method(req), SOV_STR("DELETE"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, del ? API_NEED_WRITE : API_NEED_READ);
    if (!c)
        return;
    const char *uid = api_param(c, "user"), *id = api_param(c, "id");
    if (!own_user(c, uid))
        return;
    json_t *doc = load(c, "app_cred", "application credential", id);
    if (!doc)
        return;
    if (strcmp(api_jstr(doc, "user_id"), uid) != 0) {
        json_decref(doc);
        api_fault(c, 404, NULL, "Could not find application credential: %s.", id);
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    if (del) {
        json_decref(doc);
        api_store_delete(a->store, "app_cred", id);
        api_reply(c, 204, NULL);
        return;
    }
    reply_one(c, 200, "application_credential", "application_credentials", doc);
}

/* ---- EC2 credentials ---- */

void identity_export_ec2(Api *a)
{
    if (!a->cfg.s3_keys_file[0])
        return;
    ApiListQuery q = {.kind = "ec2"};
    json_t *arr;
    if (api_store_list(a->store, &q, &arr) < 0)
        return;
    SovBuf out = SOV_BUF_INIT;
    sov_buf_puts(&out, "# written by sov-api: EC2 credentials (ACCOUNT ACCESS_KEY SECRET)\n");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) sov_buf_printf(&out, "%s %s %s\n", api_jstr(v, "tenant_id"),
                                                 api_jstr(v, "access"), api_jstr(v, "secret"));
    json_decref(arr);
    mode_t old = umask(077);
    int r = sov_write_file_atomic(a->cfg.s3_keys_file, out.ptr, out.len);
    umask(old);
    if (r < 0)
        log_error("cannot write %s: %s", a->cfg.s3_keys_file, strerror(-r));
    explicit_bzero(out.ptr, out.len);
    sov_buf_release(&out);
}

static json_t *ec2_public(Api *a, json_t *doc)
{
    char self[768];
    snprintf(self, sizeof(self), "%s/identity/v3/users/%s/credentials/OS-EC2/%s", api_public_url(a),
             api_jstr(doc, "user_id"), api_jstr(doc, "access"));
    json_object_set_new(doc, "links", json_pack("{s:s}", "self", self));
    return api_doc_public(doc);
}

static void h_ec2s(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    bool post = sov_str_eq(sov_http_req_method(req), SOV_STR("POST"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, post ? API_NEED_WRITE : API_NEED_READ);
    if (!c)
        return;
    const char *uid = api_param(c, "user");
    if (!c->auth.system_admin && !own_user(c, uid))
        return;
    if (!post) {
        json_t *arr = list_kind(c, "ec2", NULL, uid);
        if (!arr)
            return;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) ec2_public(a, v);
        api_reply(
            c, 200,
            json_pack("{s:o,s:o}", "credentials", arr, "links", list_links(a, "credentials")));
        return;
    }
    json_t *b = api_body(c, NULL);
    const char *tenant = c->auth.project_id;
    if (!b || get_str(c, b, "tenant_id", false, 64, &tenant) < 0)
        return;
    json_t *u = load(c, "user", "user", uid);
    if (!u)
        return;
    json_decref(u);
    if (!identity_roles(a, uid, tenant)) {
        api_fault(c, 403, NULL, "The user has no role on project %s.", tenant);
        return;
    }
    uint8_t raw[36];
    char access[41], secret[41];
    if (sov_random_bytes(raw, sizeof(raw)) < 0) {
        api_fault(c, 500, NULL, "no randomness");
        return;
    }
    sov_hex_encode(raw, 16, access);
    access[32] = '\0';
    sov_hex_encode(raw + 16, 20, secret);
    secret[40] = '\0';
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:n}", "access", access, "secret", secret, "user_id",
                            uid, "tenant_id", tenant, "trust_id");
    ApiDocMeta m = {.kind = "ec2", .id = access, .project = tenant, .parent = uid};
    snprintf(c->target, sizeof(c->target), "%s", access);
    int r = api_store_insert(a->store, &m, doc);
    explicit_bzero(secret, sizeof(secret));
    if (r < 0) {
        json_decref(doc);
        store_err(c, r, "EC2 credential");
        return;
    }
    identity_export_ec2(a);
    api_reply(c, 201, json_pack("{s:o}", "credential", ec2_public(a, doc)));
}

static void h_ec2(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    bool del = sov_str_eq(sov_http_req_method(req), SOV_STR("DELETE"));
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, del ? API_NEED_WRITE : API_NEED_READ);
    if (!c)
        return;
    const char *uid = api_param(c, "user"), *access = api_param(c, "access");
    if (!c->auth.system_admin && !own_user(c, uid))
        return;
    json_t *doc = load(c, "ec2", "credential", access);
    if (!doc)
        return;
    if (strcmp(api_jstr(doc, "user_id"), uid) != 0) {
        json_decref(doc);
        api_fault(c, 404, NULL, "Could not find credential: %s.", access);
        return;
    }
    snprintf(c->target, sizeof(c->target), "%s", access);
    if (del) {
        json_decref(doc);
        api_store_delete(a->store, "ec2", access);
        identity_export_ec2(a);
        api_reply(c, 204, NULL);
        return;
    }
    api_reply(c, 200, json_pack("{s:o}", "credential", ec2_public(a, doc)));
}

/* ---- regions, services and endpoints (read-only views of the configuration) ---- */

static void h_regions(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_KEYSTONE, API_NEED_READ);
    if (!c)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < api_region_count(a); i++) {
        const ApiRegion *r = api_region_at(a, i);
        char desc[160];
        snprintf(desc, sizeof(desc), "jurisdiction %s", r->jurisdiction);
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:n,s:s}", "id", r->name, "description", desc,
                                        "parent_region_id", "jurisdiction", r->jurisdiction));
    }
    api_reply(c, 200, json_pack("{s:o,s:o}", "regions", arr, "links", list_links(a, "regions")));
}

void keystone_routes(Api *a)
{
    SovRouter *r = a->router;
    const char *p = "/identity/v3";
    char pat[160];
#define ROUTE(m, path, h)                                                                          \
    snprintf(pat, sizeof(pat), "%s%s", p, path);                                                   \
    sov_router_add(r, m, pat, 0, h, a)
    ROUTE("GET", "/domains", h_domains);
    ROUTE("POST", "/domains", h_domain_create);
    ROUTE("GET", "/domains/{id}", h_domain);
    ROUTE("PATCH", "/domains/{id}", h_domain);
    ROUTE("DELETE", "/domains/{id}", h_domain);
    ROUTE("GET", "/projects", h_projects);
    ROUTE("POST", "/projects", h_project_create);
    ROUTE("GET", "/projects/{project}/users/{user}/roles", h_assignment);
    ROUTE("GET", "/projects/{project}/users/{user}/roles/{role}", h_assignment);
    ROUTE("HEAD", "/projects/{project}/users/{user}/roles/{role}", h_assignment);
    ROUTE("PUT", "/projects/{project}/users/{user}/roles/{role}", h_assignment);
    ROUTE("DELETE", "/projects/{project}/users/{user}/roles/{role}", h_assignment);
    ROUTE("GET", "/projects/{id}", h_project);
    ROUTE("PATCH", "/projects/{id}", h_project);
    ROUTE("DELETE", "/projects/{id}", h_project);
    ROUTE("GET", "/users", h_users);
    ROUTE("POST", "/users", h_user_create);
    ROUTE("GET", "/users/{id}/projects", h_user_projects);
    ROUTE("POST", "/users/{id}/password", h_user_password);
    ROUTE("GET", "/users/{user}/application_credentials", h_app_creds);
    ROUTE("POST", "/users/{user}/application_credentials", h_app_creds);
    ROUTE("GET", "/users/{user}/application_credentials/{id}", h_app_cred);
    ROUTE("DELETE", "/users/{user}/application_credentials/{id}", h_app_cred);
    ROUTE("GET", "/users/{user}/credentials/OS-EC2", h_ec2s);
    ROUTE("POST", "/users/{user}/credentials/OS-EC2", h_ec2s);
    ROUTE("GET", "/users/{user}/credentials/OS-EC2/{access}", h_ec2);
    ROUTE("DELETE", "/users/{user}/credentials/OS-EC2/{access}", h_ec2);
    ROUTE("GET", "/users/{id}", h_user);
    ROUTE("PATCH", "/users/{id}", h_user);
    ROUTE("DELETE", "/users/{id}", h_user);
    ROUTE("GET", "/roles", h_roles);
    ROUTE("POST", "/roles", h_role_create);
    ROUTE("GET", "/roles/{id}", h_role);
    ROUTE("DELETE", "/roles/{id}", h_role_delete);
    ROUTE("GET", "/role_assignments", h_role_assignments);
    ROUTE("GET", "/regions", h_regions);
#undef ROUTE
}
