/* SPDX-License-Identifier: Apache-2.0 */
/* The block storage API (Cinder v3) of sov-api: version documents, volumes (create blank, from
 * a snapshot, another volume or an image; list with filters, sort and pages; update, delete,
 * actions such as extend, attach, detach, retype, reset), metadata, snapshots, and the hooks the
 * compute API uses for block-device mappings and volume attachments. Documents are in Cinder's
 * shape (see volume.h); volume_block.c realises them in sov-block, volume_type.c holds types and
 * quotas. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/json.h"
#include "sov/log.h"
#include "volume.h"

#define LIST_MAX 1000 /* items per page */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool jeq(const json_t *o, const char *key, const char *val)
{
    const char *s = jstr(o, key);
    return s && strcmp(s, val) == 0;
}

/* Cinder's timestamps carry microseconds and no zone ("2026-11-26T10:11:12.000000"); some
 * clients (gophercloud) parse exactly that layout. */
void volume_time(int64_t ms, char out[32])
{
    char iso[32];
    api_time_iso(ms, iso);
    snprintf(out, 32, "%.19s.%06d", iso, (int)(ms % 1000) * 1000);
}

static const char *doc_project(const char *kind, const json_t *doc)
{
    return jstr(doc, strcmp(kind, "snapshot") == 0 ? "os-extended-snapshot-attributes:project_id"
                                                   : "os-vol-tenant-attr:tenant_id");
}

/* Writes a volume or snapshot back (indexed columns from its members), stamping updated_at. */
int volume_doc_save(Api *a, const char *kind, json_t *doc, bool insert)
{
    char ts[32];
    const char *name = jstr(doc, "name");
    volume_time(api_now_ms(), ts);
    json_object_set_new(doc, "updated_at", json_string(ts));
    ApiDocMeta m = {.kind = kind,
                    .id = jstr(doc, "id"),
                    .project = doc_project(kind, doc),
                    .name = name ? name : "",
                    .status = jstr(doc, "status"),
                    .parent = strcmp(kind, "snapshot") == 0 ? jstr(doc, "volume_id") : NULL};
    int r = insert ? api_store_insert(a->store, &m, doc) : api_store_update(a->store, &m, doc);
    if (r < 0)
        log_error("cannot save %s %s: %s", kind, m.id, strerror(-r));
    return r;
}

int volume_doc_status(Api *a, const char *kind, json_t *doc, const char *status)
{
    json_object_set_new(doc, "status", json_string(status));
    return volume_doc_save(a, kind, doc, false);
}

/* ---- calls ---- */

/* Starts a call on /volume/v3/{project_id}/...: the project in the path must be the token's
 * (an admin may name any). Every answer carries the microversion we speak. */
ApiCall *volume_begin(Api *a, SovHttpReq *req, ApiNeed need)
{
    sov_http_resp_header(req, "OpenStack-API-Version", SOV_STR("volume 3.0"));
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, need);
    if (!c)
        return NULL;
    const char *p = api_param(c, "project_id");
    if (p && need != API_NEED_NONE && strcmp(p, c->auth.project_id) != 0 && !c->auth.system_admin) {
        api_fault(c, 403, NULL, "The project in the URL is not the project of the token.");
        return NULL;
    }
    return c;
}

static void bad(ApiCall *c, SovBuf *err)
{
    api_fault(c, 400, NULL, "Invalid input received: %s", err->ptr ? err->ptr : "bad value");
    sov_buf_release(err);
}

/* Optional string member (null = absent); false after answering 400. */
bool volume_get_str(ApiCall *c, json_t *o, const char *key, size_t max, const char **out)
{
    SovBuf err = SOV_BUF_INIT;
    if (sov_json_get_string(o, key, false, max, out, &err) < 0) {
        bad(c, &err);
        return false;
    }
    return true;
}

/* Cinder takes sizes as integers or strings of digits: 1 set, 0 absent, false on 400. */
static int get_size(ApiCall *c, json_t *o, const char *key, int64_t *ret)
{
    json_t *v = json_object_get(o, key);
    int64_t n = -1;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 10 &&
             strspn(json_string_value(v), "0123456789") == json_string_length(v))
        n = strtoll(json_string_value(v), NULL, 10);
    if (n < 1 || n > VOLUME_MAX_GB) {
        api_fault(c, 400, NULL,
                  "Invalid input received: '%s' must be an integer between 1 and %d (GiB)", key,
                  VOLUME_MAX_GB);
        return -1;
    }
    *ret = n;
    return 1;
}

/* Booleans as Cinder accepts them: true/false or their spellings as strings. */
int volume_get_flag(ApiCall *c, json_t *o, const char *key, bool *ret)
{
    json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v))
        *ret = json_is_true(v);
    else if (s && (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes")))
        *ret = true;
    else if (s && (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no")))
        *ret = false;
    else {
        api_fault(c, 400, NULL, "Invalid input received: '%s' must be a boolean", key);
        return -1;
    }
    return 1;
}

/* A metadata (or extra_specs) object: string keys and values of bounded size. */
bool volume_check_meta(ApiCall *c, json_t *m, const char *what)
{
    const char *k;
    json_t *v;
    if (!json_is_object(m) || json_object_size(m) > VOLUME_META_MAX) {
        api_fault(c, 400, NULL,
                  "Invalid input received: '%s' must be an object of at most %d "
                  "items",
                  what, VOLUME_META_MAX);
        return false;
    }
    json_object_foreach(m, k, v)
    {
        if (!*k || strlen(k) > VOLUME_TEXT_MAX || !json_is_string(v) ||
            json_string_length(v) > VOLUME_TEXT_MAX ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            api_fault(c, 400, NULL,
                      "Invalid input received: %s keys and values are strings of "
                      "1 to %d characters",
                      what, VOLUME_TEXT_MAX);
            return false;
        }
    }
    return true;
}

/* A volume or snapshot of the caller (or any, for an admin); 404 answered otherwise. The
 * document belongs to the call. */
static json_t *find_doc(ApiCall *c, const char *kind, const char *id)
{
    json_t *doc = NULL;
    char proj[API_ID_LEN + 1];
    if (id && api_valid_id(sov_str(id)) &&
        api_store_get(c->api->store, kind, id, &doc, proj, sizeof(proj)) == 0 &&
        api_can_access(c, proj)) {
        api_call_own(c, doc);
        return doc;
    }
    json_decref(doc);
    api_fault(c, 404, NULL, "%s %s could not be found.",
              strcmp(kind, "volume") == 0 ? "Volume" : "Snapshot", id ? id : "");
    return NULL;
}

static json_t *render(ApiCall *c, const char *kind, const json_t *doc, bool detail)
{
    json_t *v = api_doc_public(json_deep_copy(doc));
    if (strcmp(kind, "volume") == 0) {
        char self[512], book[512];
        const char *proj = doc_project(kind, doc), *id = jstr(doc, "id");
        snprintf(self, sizeof(self), "%s/volume/v3/%s/volumes/%s", api_public_url(c->api), proj,
                 id);
        snprintf(book, sizeof(book), "%s/volume/%s/volumes/%s", api_public_url(c->api), proj, id);
        json_object_set_new(v, "links",
                            json_pack("[{s:s,s:s},{s:s,s:s}]", "href", self, "rel", "self", "href",
                                      book, "rel", "bookmark"));
    }
    if (!detail && strcmp(kind, "volume") == 0) {
        json_t *brief = json_pack("{s:O,s:O}", "id", json_object_get(v, "id"), "name",
                                  json_object_get(v, "name"));
        if (json_object_get(v, "links"))
            json_object_set(brief, "links", json_object_get(v, "links"));
        json_decref(v);
        return brief;
    }
    return v;
}

/* ---- version documents ---- */

static json_t *version_doc(Api *a)
{
    char href[600];
    snprintf(href, sizeof(href), "%s/volume/v3/", api_public_url(a));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:s}],s:[{s:s,s:s}]}", "id", "v3.0", "status",
                     "CURRENT", "version", "3.0", "min_version", "3.0", "updated",
                     "2016-02-08T12:20:21Z", "links", "rel", "self", "href", href, "media-types",
                     "base", "application/json", "type",
                     "application/vnd.openstack.volume+json;version=3");
}

static void h_versions(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_NONE);
    if (c)
        api_reply(c, 300, json_pack("{s:[o]}", "versions", version_doc(ud)));
}

static void h_version(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_NONE);
    if (c)
        api_reply(c, 200, json_pack("{s:o}", "version", version_doc(ud)));
}

/* ---- volumes ---- */

typedef struct VolSpec {
    const char *name, *desc, *type, *zone, *snapshot_id, *source_volid, *image_id;
    int64_t size; /* GiB, 0: the source's */
    json_t *meta; /* object or NULL */
} VolSpec;

/* Validates, places and creates a volume document in 'creating' (the reconciler realises it);
 * answers the fault itself and returns NULL when refused. New reference. */
static json_t *vol_create(ApiCall *c, const VolSpec *s)
{
    Api *a = c->api;
    json_t *src = NULL, *type = NULL, *img = NULL, *doc = NULL, *specs;
    const char *src_type = NULL, *src_zone = NULL;
    int64_t size = s->size, min = 0;
    char zone[64], id[API_UUID_LEN + 1], ts[32], host[128];
    if (s->snapshot_id || s->source_volid) {
        bool snap = s->snapshot_id != NULL;
        if (!(src = find_doc(c, snap ? "snapshot" : "volume",
                             snap ? s->snapshot_id : s->source_volid)))
            return NULL;
        if (!jeq(src, "status", "available") && (snap || !jeq(src, "status", "in-use"))) {
            api_fault(c, 400, NULL, "Invalid %s: the source's status must be available",
                      snap ? "snapshot" : "volume");
            return NULL;
        }
        min = json_integer_value(json_object_get(src, "size"));
        src_type = jstr(src, snap ? "_volume_type" : "volume_type");
        src_zone = jstr(src, snap ? "_zone" : "availability_zone");
    }
    if (s->image_id) { /* an image the caller may see (Glance's visibility) */
        char mid[128];
        json_t *m = NULL;
        bool member = false;
        if (api_valid_id(sov_str(s->image_id)))
            api_store_get(a->store, "image", s->image_id, &img, NULL, 0);
        bool mine = img && (jeq(img, "owner", c->auth.project_id) || c->auth.system_admin);
        if (img && !mine && jeq(img, "visibility", "shared")) {
            snprintf(mid, sizeof(mid), "%s/%s", jstr(img, "id"), c->auth.project_id);
            member = api_store_get(a->store, "image_member", mid, &m, NULL, 0) == 0;
            json_decref(m);
        }
        if (!img || (!mine && (jeq(img, "visibility", "private") ||
                               (jeq(img, "visibility", "shared") && !member)))) {
            api_fault(c, 404, NULL, "Image %s could not be found.", s->image_id);
            goto out;
        }
        if (!jeq(img, "status", "active")) {
            api_fault(c, 400, NULL, "Invalid image: image %s is not active.", s->image_id);
            goto out;
        }
        int64_t bytes = json_integer_value(json_object_get(img, "size"));
        min = SOV_MAX((bytes + VOLUME_GIB - 1) / VOLUME_GIB,
                      json_integer_value(json_object_get(img, "min_disk")));
    }
    if (!size)
        size = min;
    if (!size || size < min) {
        api_fault(c, 400, NULL,
                  "Invalid input received: 'size' %s (the source needs %" PRId64 " GiB)",
                  size ? "is smaller than the source" : "is required", min);
        goto out;
    }
    if (s->type && !(type = volume_type_get(c, s->type))) {
        api_fault(c, 404, NULL, "Volume type with name %s could not be found.", s->type);
        goto out;
    }
    if (!type && !(type = src_type ? volume_type_get(c, src_type) : NULL) &&
        !(type = volume_type_default(c))) {
        api_fault(c, 500, NULL, "No default volume type is defined.");
        goto out;
    }
    if (!api_place_zone(c, s->zone ? s->zone : src_zone, zone) ||
        !api_quota_check(c, "volumes", 1) || !api_quota_check(c, "gigabytes", size))
        goto out;
    api_new_uuid(id);
    volume_time(api_now_ms(), ts);
    specs = json_object_get(type, "extra_specs");
    snprintf(host, sizeof(host), "sov-block@sov-block#%s",
             jstr(specs, "sov:tier") ? jstr(specs, "sov:tier") : jstr(type, "name"));
    doc = json_pack(
        "{s:s,s:s?,s:s?,s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:[],s:o,s:s?,s:s?,s:s,s:s,s:s,s:s,s:n,s:s,"
        "s:n,s:n,s:s,s:s}",
        "id", id, "name", s->name, "description", s->desc, "size", (json_int_t)size, "status",
        "creating", "availability_zone", zone, "volume_type", jstr(type, "name"), "bootable",
        src && jeq(src, "bootable", "true") ? "true" : "false", "encrypted",
        jeq(specs, "sov:encrypted", "true"), "multiattach", 0, "attachments", "metadata",
        s->meta ? json_deep_copy(s->meta) : json_object(), "snapshot_id", s->snapshot_id,
        "source_volid", s->source_volid, "created_at", ts, "updated_at", ts, "user_id",
        c->auth.user_id, "os-vol-tenant-attr:tenant_id", c->auth.project_id, "consistencygroup_id",
        "replication_status", "disabled", "os-vol-mig-status-attr:migstat",
        "os-vol-mig-status-attr:name_id", "os-vol-host-attr:host", host, "_type_id",
        jstr(type, "id"));
    if (doc && img) {
        /* The reconciler has sov-block copy the image's bytes as they are (raw; a qcow2 image is
         * not converted). Cinder keeps the image's properties as strings. */
        static const char *const props[][2] = {{"id", "image_id"},
                                               {"name", "image_name"},
                                               {"disk_format", "disk_format"},
                                               {"container_format", NULL},
                                               {"min_disk", NULL},
                                               {"min_ram", NULL},
                                               {"size", NULL},
                                               {"checksum", NULL}};
        json_t *meta = json_object();
        for (size_t i = 0; i < ELEMENTSOF(props); i++) {
            json_t *x = json_object_get(img, props[i][0]);
            char num[32];
            const char *key = props[i][1] ? props[i][1] : props[i][0];
            if (json_is_string(x))
                json_object_set(meta, key, x);
            else if (json_is_integer(x)) {
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(x));
                json_object_set_new(meta, key, json_string(num));
            }
        }
        json_object_set_new(doc, "bootable", json_string("true"));
        json_object_set_new(doc, "volume_image_metadata", meta);
        json_object_set_new(doc, "_image", json_string(jstr(img, "id")));
    }
    if (!doc || volume_doc_save(a, "volume", doc, true) < 0) {
        json_decref(doc);
        doc = NULL;
        api_fault(c, 500, NULL, "The volume could not be stored.");
        goto out;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    api_block_kick(a);
out:
    json_decref(type);
    json_decref(img);
    return doc;
}

static void h_vol_create(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_WRITE);
    json_t *b = c ? api_body(c, "volume") : NULL, *doc;
    VolSpec s = {0};
    bool multi = false;
    if (!b || get_size(c, b, "size", &s.size) < 0 ||
        !volume_get_str(c, b, "name", VOLUME_TEXT_MAX, &s.name) ||
        !volume_get_str(c, b, "description", VOLUME_TEXT_MAX, &s.desc) ||
        !volume_get_str(c, b, "volume_type", VOLUME_TEXT_MAX, &s.type) ||
        !volume_get_str(c, b, "availability_zone", VOLUME_TEXT_MAX, &s.zone) ||
        !volume_get_str(c, b, "snapshot_id", VOLUME_TEXT_MAX, &s.snapshot_id) ||
        !volume_get_str(c, b, "source_volid", VOLUME_TEXT_MAX, &s.source_volid) ||
        !volume_get_str(c, b, "imageRef", VOLUME_TEXT_MAX, &s.image_id) ||
        volume_get_flag(c, b, "multiattach", &multi) < 0)
        return;
    if ((s.meta = json_object_get(b, "metadata")) && json_is_null(s.meta))
        s.meta = NULL;
    if (s.meta && !volume_check_meta(c, s.meta, "metadata"))
        return;
    if (multi || !!s.snapshot_id + !!s.source_volid + !!s.image_id > 1) {
        api_fault(c, 400, NULL, "Invalid input received: %s",
                  multi ? "multiattach volumes are not supported"
                        : "give at most one of snapshot_id, source_volid and imageRef");
        return;
    }
    if ((doc = vol_create(c, &s))) {
        api_reply(c, 202, json_pack("{s:o}", "volume", render(c, "volume", doc, true)));
        json_decref(doc);
    }
}

typedef struct SortCtx {
    const char *key;
    bool desc;
} SortCtx;

static int cmp_docs(const void *x, const void *y, void *ud)
{
    const SortCtx *s = ud;
    json_t *a = json_object_get(*(json_t *const *)x, s->key);
    json_t *b = json_object_get(*(json_t *const *)y, s->key);
    int r;
    if (json_is_integer(a) && json_is_integer(b))
        r = (json_integer_value(a) > json_integer_value(b)) -
            (json_integer_value(a) < json_integer_value(b));
    else
        r = strcmp(json_string_value(a) ? json_string_value(a) : "",
                   json_string_value(b) ? json_string_value(b) : "");
    if (r == 0)
        r = strcmp(jstr(*(json_t *const *)x, "id"), jstr(*(json_t *const *)y, "id"));
    return s->desc ? -r : r;
}

/* GET /volumes[/detail] and /snapshots[/detail]: filters name, status (volume_id), all_tenants;
 * sort (key[:dir]) or sort_key/sort_dir; marker and limit with a next link. */
static void list_docs(ApiCall *c, const char *kind, bool detail)
{
    static const char *const keys[] = {"created_at", "updated_at", "name", "size", "status", "id"};
    bool snap = strcmp(kind, "snapshot") == 0;
    ApiListQuery q = {.kind = kind,
                      .project = api_all_projects(c) ? NULL : c->auth.project_id,
                      .name = api_query(c, "name"),
                      .status = api_query(c, "status"),
                      .parent = snap ? api_query(c, "volume_id") : NULL};
    const char *sort = api_query(c, "sort"), *dir = api_query(c, "sort_dir");
    const char *marker = api_query(c, "marker");
    char key[32] = "created_at";
    SortCtx sc = {key, true};
    int limit = api_query_limit(c, LIST_MAX, LIST_MAX);
    if (limit < 0)
        return;
    if (sort || api_query(c, "sort_key")) {
        const char *k = sort ? sort : api_query(c, "sort_key");
        size_t kl = strcspn(k, ":,");
        snprintf(key, sizeof(key), "%.*s", (int)SOV_MIN(kl, sizeof(key) - 1), k);
        dir = sort ? (k[kl] == ':' ? k + kl + 1 : "desc") : dir;
    }
    bool known = false;
    for (size_t i = 0; i < ELEMENTSOF(keys); i++)
        known = known || strcmp(key, keys[i]) == 0;
    if (!known || (dir && strncmp(dir, "asc", 3) != 0 && strncmp(dir, "desc", 4) != 0)) {
        api_fault(c, 400, NULL, "Invalid input received: cannot sort by %s %s", key,
                  dir ? dir : "");
        return;
    }
    sc.desc = !dir || strncmp(dir, "asc", 3) != 0;
    json_t *arr = NULL, *out = json_array();
    api_call_own(c, out);
    if (api_store_list(c->api->store, &q, &arr) < 0) {
        api_fault(c, 500, NULL, "cannot list %ss", kind);
        return;
    }
    api_call_own(c, arr);
    size_t n = json_array_size(arr), start = 0;
    json_t **v = calloc(n + 1, sizeof(*v));
    if (!v) {
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(arr, i);
    qsort_r(v, n, sizeof(*v), cmp_docs, &sc);
    if (marker) {
        while (start < n && !jeq(v[start], "id", marker))
            start++;
        if (start++ == n) {
            free(v);
            api_fault(c, 400, NULL, "Marker %s could not be found.", marker);
            return;
        }
    }
    for (size_t i = start; i < n && json_array_size(out) < (size_t)limit; i++)
        json_array_append_new(out, render(c, kind, v[i], detail));
    json_t *res = json_pack("{s:O}", snap ? "snapshots" : "volumes", out);
    if (start + json_array_size(out) < n && json_array_size(out) > 0) {
        char href[700];
        snprintf(href, sizeof(href), "%s/volume/v3/%s/%ss%s?limit=%d&marker=%s",
                 api_public_url(c->api), c->auth.project_id, kind, detail ? "/detail" : "", limit,
                 jstr(json_array_get(out, json_array_size(out) - 1), "id"));
        json_object_set_new(res, snap ? "snapshots_links" : "volumes_links",
                            json_pack("[{s:s,s:s}]", "rel", "next", "href", href));
    }
    free(v);
    api_reply(c, 200, res);
}

static void h_vol_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (c)
        list_docs(c, "volume", false);
}

static void h_vol_detail(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (c)
        list_docs(c, "volume", true);
}

static const char *path_kind(SovHttpReq *req)
{
    SovStr p = sov_http_req_path(req);
    return memmem(p.ptr, p.len, "/snapshots", 10) ? "snapshot" : "volume";
}

static void h_show(SovHttpReq *req, void *ud)
{
    const char *kind = path_kind(req);
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    json_t *d = c ? find_doc(c, kind, api_param(c, "id")) : NULL;
    if (d)
        api_reply(c, 200, json_pack("{s:o}", kind, render(c, kind, d, true)));
}

/* PUT /volumes/{id} and /snapshots/{id}: name, description, metadata (replaced). */
static void h_update(SovHttpReq *req, void *ud)
{
    const char *kind = path_kind(req), *name = NULL, *desc = NULL;
    ApiCall *c = volume_begin(ud, req, API_NEED_WRITE);
    json_t *b = c ? api_body(c, kind) : NULL;
    json_t *d = b ? find_doc(c, kind, api_param(c, "id")) : NULL, *meta;
    if (!d)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(d, "id"));
    /* cinderclient still sends the v1 spellings display_name and display_description */
    if (!volume_get_str(c, b, "name", VOLUME_TEXT_MAX, &name) ||
        !volume_get_str(c, b, "description", VOLUME_TEXT_MAX, &desc) ||
        !volume_get_str(c, b, "display_name", VOLUME_TEXT_MAX, &name) ||
        !volume_get_str(c, b, "display_description", VOLUME_TEXT_MAX, &desc))
        return;
    if ((meta = json_object_get(b, "metadata")) && !volume_check_meta(c, meta, "metadata"))
        return;
    if (name)
        json_object_set_new(d, "name", json_string(name));
    if (desc)
        json_object_set_new(d, "description", json_string(desc));
    if (meta)
        json_object_set(d, "metadata", meta);
    volume_doc_save(c->api, kind, d, false);
    api_reply(c, 200, json_pack("{s:o}", kind, render(c, kind, d, true)));
}

/* Marks a volume (and with cascade its snapshots) for deletion; the reconciler finishes it.
 * Returns 0 or -EBUSY with why set. */
static int vol_mark_deleting(Api *a, json_t *v, bool cascade, bool force, const char **why)
{
    static const char *const ok[] = {"available",       "error",    "error_restoring",
                                     "error_extending", "creating", "downloading"};
    bool allowed = force;
    for (size_t i = 0; i < ELEMENTSOF(ok); i++)
        allowed = allowed || jeq(v, "status", ok[i]);
    ApiListQuery q = {.kind = "snapshot", .parent = jstr(v, "id")};
    json_t *snaps = NULL, *s;
    size_t i;
    if (!allowed) {
        *why = "Invalid volume: Volume status must be available or error or error_restoring or "
               "error_extending and must not be attached or have snapshots.";
        return -EBUSY;
    }
    api_store_list(a->store, &q, &snaps);
    if (json_array_size(snaps) > 0 && !cascade) {
        json_decref(snaps);
        *why = "Invalid volume: Volume still has dependent snapshots.";
        return -EBUSY;
    }
    api_store_begin(a->store);
    json_array_foreach(snaps, i, s) volume_doc_status(a, "snapshot", s, "deleting");
    json_object_set_new(v, "attachments", json_array());
    volume_doc_status(a, "volume", v, "deleting");
    api_store_commit(a->store);
    json_decref(snaps);
    api_block_kick(a);
    return 0;
}

static void h_delete(SovHttpReq *req, void *ud)
{
    const char *kind = path_kind(req), *why = NULL, *casc;
    ApiCall *c = volume_begin(ud, req, API_NEED_WRITE);
    json_t *d = c ? find_doc(c, kind, api_param(c, "id")) : NULL;
    if (!d)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(d, "id"));
    casc = api_query(c, "cascade");
    if (strcmp(kind, "volume") == 0) {
        bool cascade = casc && (!strcasecmp(casc, "true") || !strcmp(casc, "1"));
        if (vol_mark_deleting(c->api, d, cascade, false, &why) < 0) {
            api_fault(c, 400, NULL, "%s", why);
            return;
        }
    } else {
        if (!jeq(d, "status", "available") && !jeq(d, "status", "error") &&
            !jeq(d, "status", "creating")) {
            api_fault(c, 400, NULL,
                      "Invalid snapshot: Snapshot status must be available or "
                      "error");
            return;
        }
        volume_doc_status(c->api, kind, d, "deleting");
        api_block_kick(c->api);
    }
    api_reply(c, 202, NULL);
}

static void attach_add(json_t *v, const char *server, const char *device, const char *host)
{
    char aid[API_UUID_LEN + 1], ts[32];
    api_new_uuid(aid);
    volume_time(api_now_ms(), ts);
    json_array_append_new(json_object_get(v, "attachments"),
                          json_pack("{s:s?,s:s,s:s?,s:s,s:s,s:s?,s:s}", "server_id", server,
                                    "attachment_id", aid, "device", device, "volume_id",
                                    jstr(v, "id"), "id", jstr(v, "id"), "host_name", host,
                                    "attached_at", ts));
    json_object_set_new(v, "status", json_string("in-use"));
}

bool volume_attach_pending(json_t *v)
{
    json_t *p = json_object_get(v, "_attach_pending");
    if (!p)
        return false;
    attach_add(v, jstr(p, "server_id"), jstr(p, "device"), NULL);
    json_object_del(v, "_attach_pending");
    return true;
}

/* Drops the attachments of server (or with attachment id aid; NULL/NULL: all); true when one
 * went. The volume is available again when none is left. */
static bool attach_del(json_t *v, const char *server, const char *aid)
{
    json_t *att = json_object_get(v, "attachments"), *x;
    bool gone = false;
    for (size_t i = json_array_size(att); i-- > 0;) {
        x = json_array_get(att, i);
        if ((!server || jeq(x, "server_id", server)) && (!aid || jeq(x, "attachment_id", aid))) {
            json_array_remove(att, i);
            gone = true;
        }
    }
    if (json_array_size(att) == 0)
        json_object_set_new(v, "status", json_string("available"));
    return gone;
}

static const char *const reset_states[] = {
    "available",   "in-use",   "error",          "creating",        "deleting",  "attaching",
    "detaching",   "reserved", "error_deleting", "error_extending", "extending", "maintenance",
    "downloading", NULL};

/* POST /volumes/{id}/action and /snapshots/{id}/action: one action per request. */
static void h_action(SovHttpReq *req, void *ud)
{
    const char *kind = path_kind(req), *st, *why = NULL;
    bool vol = strcmp(kind, "volume") == 0, flag = false;
    ApiCall *c = volume_begin(ud, req, API_NEED_WRITE);
    json_t *b = c ? api_body(c, NULL) : NULL;
    json_t *d = b ? find_doc(c, kind, api_param(c, "id")) : NULL, *arg;
    if (!d)
        return;
    snprintf(c->target, sizeof(c->target), "%s", jstr(d, "id"));
    void *it = json_object_iter(b);
    const char *act = it ? json_object_iter_key(it) : "";
    arg = it ? json_object_iter_value(it) : NULL;
    st = jstr(d, "status");
    if (json_object_size(b) != 1) {
        api_fault(c, 400, NULL, "Invalid input received: the body names exactly one action");
        return;
    }
    if ((!strcmp(act, "os-reset_status") || !strcmp(act, "os-force_delete")) &&
        !c->auth.system_admin) {
        api_fault(c, 403, NULL, "Policy does not allow %s to be performed.", act);
        return;
    }
    if (!strcmp(act, "os-reset_status")) {
        const char *ns = NULL;
        bool known = false;
        if (!volume_get_str(c, arg, "status", 32, &ns))
            return;
        for (size_t i = 0; ns && reset_states[i]; i++)
            known = known || strcmp(ns, reset_states[i]) == 0;
        if (ns && !known) {
            api_fault(c, 400, NULL, "Invalid input received: unknown status %s", ns);
            return;
        }
        if (ns)
            volume_doc_status(c->api, kind, d, ns);
        api_block_kick(c->api);
    } else if (!strcmp(act, "os-force_delete")) {
        if (vol)
            vol_mark_deleting(c->api, d, true, true, &why);
        else {
            volume_doc_status(c->api, kind, d, "deleting");
            api_block_kick(c->api);
        }
    } else if (!vol) {
        api_fault(c, 400, NULL, "There is no such action: %s", act);
        return;
    } else if (!strcmp(act, "os-extend")) {
        int64_t ns = 0, cur = json_integer_value(json_object_get(d, "size"));
        if (get_size(c, arg, "new_size", &ns) <= 0) {
            if (!c->answered)
                api_fault(c, 400, NULL, "Invalid input received: 'new_size' is required");
            return;
        }
        if (strcmp(st, "available") != 0 && strcmp(st, "in-use") != 0) {
            api_fault(c, 400, NULL,
                      "Invalid volume: Volume status must be available or in-use "
                      "to extend, but current status is: %s.",
                      st);
            return;
        }
        if (ns <= cur) {
            api_fault(c, 400, NULL,
                      "Invalid input received: New size for extend must be "
                      "greater than current size. (current: %" PRId64 ", extended: %" PRId64 ").",
                      cur, ns);
            return;
        }
        if (!api_quota_check(c, "gigabytes", ns - cur))
            return;
        json_object_set_new(d, "_after", json_string(st));
        json_object_set_new(d, "size", json_integer(ns));
        volume_doc_status(c->api, kind, d, "extending");
        api_block_kick(c->api);
    } else if (!strcmp(act, "os-retype")) {
        /* Every tier lives in the one sov-block; only encryption cannot change in place. */
        const char *nt = NULL;
        json_t *t;
        if (!volume_get_str(c, arg, "new_type", VOLUME_TEXT_MAX, &nt))
            return;
        if (!nt || !(t = volume_type_get(c, nt))) {
            api_fault(c, 404, NULL, "Volume type %s could not be found.", nt ? nt : "");
            return;
        }
        bool enc = jeq(json_object_get(t, "extra_specs"), "sov:encrypted", "true");
        bool busy = strcmp(st, "available") != 0 && strcmp(st, "in-use") != 0;
        if (busy || enc != json_is_true(json_object_get(d, "encrypted"))) {
            json_decref(t);
            api_fault(c, 400, NULL, "Invalid volume: %s%s",
                      busy ? "cannot retype a volume in " : "",
                      busy ? st : "encryption cannot change by retyping");
            return;
        }
        json_object_set_new(d, "volume_type", json_string(jstr(t, "name")));
        json_object_set_new(d, "_type_id", json_string(jstr(t, "id")));
        json_decref(t);
        volume_doc_save(c->api, kind, d, false);
    } else if (!strcmp(act, "os-set_bootable") || !strcmp(act, "os-update_readonly_flag")) {
        bool boot = !strcmp(act, "os-set_bootable");
        if (volume_get_flag(c, arg, boot ? "bootable" : "readonly", &flag) <= 0) {
            if (!c->answered)
                api_fault(c, 400, NULL, "Invalid input received: a boolean is required");
            return;
        }
        if (boot)
            json_object_set_new(d, "bootable", json_string(flag ? "true" : "false"));
        else
            json_object_set_new(json_object_get(d, "metadata"), "readonly",
                                json_string(flag ? "True" : "False"));
        volume_doc_save(c->api, kind, d, false);
    } else {
        static const struct {
            const char *act, *from, *from2, *to;
        } moves[] = {
            {"os-reserve", "available", NULL, "attaching"},
            {"os-unreserve", "attaching", NULL, "available"},
            {"os-begin_detaching", "in-use", NULL, "detaching"},
            {"os-roll_detaching", "detaching", NULL, "in-use"},
            {"os-attach", "available", "attaching", "in-use"},
            {"os-detach", "in-use", "detaching", "available"},
        };
        size_t i = 0;
        while (i < ELEMENTSOF(moves) && strcmp(moves[i].act, act) != 0)
            i++;
        if (i == ELEMENTSOF(moves)) {
            api_fault(c, 400, NULL, "There is no such action: %s", act);
            return;
        }
        if (strcmp(st, moves[i].from) != 0 && (!moves[i].from2 || strcmp(st, moves[i].from2))) {
            api_fault(c, 400, NULL, "Invalid volume: Volume status must be %s%s%s, not %s.",
                      moves[i].from, moves[i].from2 ? " or " : "",
                      moves[i].from2 ? moves[i].from2 : "", st);
            return;
        }
        const char *srv = NULL, *dev = NULL, *host = NULL, *aid = NULL;
        if (!strcmp(act, "os-attach")) {
            if (!volume_get_str(c, arg, "instance_uuid", 64, &srv) ||
                !volume_get_str(c, arg, "mountpoint", VOLUME_TEXT_MAX, &dev) ||
                !volume_get_str(c, arg, "host_name", VOLUME_TEXT_MAX, &host))
                return;
            attach_add(d, srv, dev, host);
        } else if (!strcmp(act, "os-detach")) {
            if (!volume_get_str(c, arg, "attachment_id", 64, &aid))
                return;
            attach_del(d, NULL, aid);
        } else {
            json_object_set_new(d, "status", json_string(moves[i].to));
        }
        volume_doc_save(c->api, kind, d, false);
    }
    api_reply(c, 202, NULL);
}

/* .../{volumes,snapshots}/{id}/metadata[/{key}]: GET, POST (merge), PUT (replace, or one key),
 * DELETE one key. */
static void h_meta(SovHttpReq *req, void *ud)
{
    const char *kind = path_kind(req);
    SovStr m = sov_http_req_method(req);
    bool get = sov_str_eq(m, SOV_STR("GET")), del = sov_str_eq(m, SOV_STR("DELETE"));
    ApiCall *c = volume_begin(ud, req, get ? API_NEED_READ : API_NEED_WRITE);
    json_t *b = c && !get && !del ? api_body(c, NULL) : NULL;
    json_t *d = c && (b || get || del) ? find_doc(c, kind, api_param(c, "id")) : NULL;
    const char *key = d ? api_param(c, "key") : NULL;
    if (!d)
        return;
    json_t *meta = json_object_get(d, "metadata"), *add = NULL;
    if (get || del) {
        json_t *v = key ? json_object_get(meta, key) : meta;
        if (!v)
            api_fault(c, 404, NULL, "Metadata item was not found.");
        else if (get)
            api_reply(c, 200,
                      key ? json_pack("{s:{s:O}}", "meta", key, v)
                          : json_pack("{s:O}", "metadata", meta));
        if (!v || get)
            return;
        json_object_del(meta, key);
    } else {
        add = json_object_get(b, key ? "meta" : "metadata");
        if (!volume_check_meta(c, add, "metadata"))
            return;
        if (key && (json_object_size(add) != 1 || !json_object_get(add, key))) {
            api_fault(c, 400, NULL, "Request body and URI mismatch");
            return;
        }
        if (sov_str_eq(m, SOV_STR("PUT")) && !key)
            json_object_clear(meta);
        json_object_update(meta, add);
        if (!volume_check_meta(c, meta, "metadata"))
            return;
    }
    snprintf(c->target, sizeof(c->target), "%s", jstr(d, "id"));
    volume_doc_save(c->api, kind, d, false);
    if (del)
        api_reply(c, 200, NULL);
    else
        api_reply(c, 200,
                  key ? json_pack("{s:O}", "meta", add) : json_pack("{s:O}", "metadata", meta));
}

/* ---- snapshots ---- */

static void h_snap_create(SovHttpReq *req, void *ud)
{
    ApiCall *c = volume_begin(ud, req, API_NEED_WRITE);
    json_t *b = c ? api_body(c, "snapshot") : NULL, *v, *meta;
    const char *vid = NULL, *name = NULL, *desc = NULL;
    bool force = false;
    char id[API_UUID_LEN + 1], ts[32];
    if (!b || !volume_get_str(c, b, "volume_id", 64, &vid) ||
        !volume_get_str(c, b, "name", VOLUME_TEXT_MAX, &name) ||
        !volume_get_str(c, b, "description", VOLUME_TEXT_MAX, &desc) ||
        volume_get_flag(c, b, "force", &force) < 0)
        return;
    if ((meta = json_object_get(b, "metadata")) && json_is_null(meta))
        meta = NULL;
    if (meta && !volume_check_meta(c, meta, "metadata"))
        return;
    if (!vid) {
        api_fault(c, 400, NULL, "Invalid input received: 'volume_id' is a required property");
        return;
    }
    if (!(v = find_doc(c, "volume", vid)))
        return;
    if (!jeq(v, "status", "available") && !(force && jeq(v, "status", "in-use"))) {
        api_fault(c, 400, NULL,
                  "Invalid volume: Volume %s status must be available%s, but "
                  "current status is: %s.",
                  vid, force ? " or in-use" : "", jstr(v, "status"));
        return;
    }
    int64_t size = json_integer_value(json_object_get(v, "size"));
    if (!api_quota_check(c, "snapshots", 1) || !api_quota_check(c, "gigabytes", size))
        return;
    api_new_uuid(id);
    volume_time(api_now_ms(), ts);
    json_t *s =
        json_pack("{s:s,s:s?,s:s?,s:s,s:I,s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s?,s:s?}", "id", id, "name",
                  name, "description", desc, "volume_id", jstr(v, "id"), "size", (json_int_t)size,
                  "status", "creating", "created_at", ts, "updated_at", ts, "metadata",
                  meta ? json_deep_copy(meta) : json_object(),
                  "os-extended-snapshot-attributes:project_id", c->auth.project_id,
                  "os-extended-snapshot-attributes:progress", "0%", "user_id", c->auth.user_id,
                  "_volume_type", jstr(v, "volume_type"), "_zone", jstr(v, "availability_zone"));
    snprintf(c->target, sizeof(c->target), "%s", id);
    api_call_own(c, s);
    if (!s || volume_doc_save(c->api, "snapshot", s, true) < 0) {
        api_fault(c, 500, NULL, "The snapshot could not be stored.");
        return;
    }
    api_block_kick(c->api);
    api_reply(c, 202, json_pack("{s:o}", "snapshot", render(c, "snapshot", s, true)));
}

static void h_snap_list(SovHttpReq *req, void *ud)
{
    SovStr p = sov_http_req_path(req);
    ApiCall *c = volume_begin(ud, req, API_NEED_READ);
    if (c)
        list_docs(c, "snapshot", memmem(p.ptr, p.len, "/detail", 7) != NULL);
}

/* ---- for the compute API ---- */

int api_volume_create_for(ApiCall *c, const char *name, int64_t size_gb, const char *image_id,
                          const char *zone, char out_id[API_UUID_LEN + 1])
{
    VolSpec s = {.name = name, .zone = zone, .image_id = image_id, .size = size_gb};
    if ((size_gb < 1 && !image_id) || size_gb < 0 || size_gb > VOLUME_MAX_GB) {
        api_fault(c, 400, NULL, "Invalid input received: volume_size must be between 1 and %d",
                  VOLUME_MAX_GB);
        return -EINVAL;
    }
    json_t *doc = vol_create(c, &s);
    if (!doc)
        return -EINVAL;
    snprintf(out_id, API_UUID_LEN + 1, "%s", jstr(doc, "id"));
    json_decref(doc);
    return 0;
}

/* The volume if it exists and belongs to project_id (NULL: any). New reference. */
static json_t *vol_of(Api *a, const char *project_id, const char *volume_id)
{
    json_t *doc = NULL;
    char proj[API_ID_LEN + 1];
    if (!volume_id || api_store_get(a->store, "volume", volume_id, &doc, proj, sizeof(proj)) < 0)
        return NULL;
    if (project_id && strcmp(project_id, proj) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int api_volume_attach(Api *a, const char *project_id, const char *volume_id, const char *server_id,
                      const char *device)
{
    json_t *v = vol_of(a, project_id, volume_id);
    int r = 0;
    if (!v)
        return -ENOENT;
    if ((jeq(v, "status", "creating") || jeq(v, "status", "downloading")) &&
        !json_object_get(v, "_attach_pending") &&
        json_array_size(json_object_get(v, "attachments")) == 0) {
        /* a volume Nova made for a server: attached the moment it is ready (the reconciler) */
        json_object_set_new(v, "_attach_pending",
                            json_pack("{s:s,s:s?}", "server_id", server_id, "device", device));
        r = volume_doc_save(a, "volume", v, false);
    } else if (!jeq(v, "status", "available") && !jeq(v, "status", "attaching"))
        r = -EBUSY;
    else {
        attach_add(v, server_id, device, NULL);
        r = volume_doc_save(a, "volume", v, false);
    }
    json_decref(v);
    return r;
}

int api_volume_detach(Api *a, const char *project_id, const char *volume_id, const char *server_id)
{
    json_t *v = vol_of(a, project_id, volume_id);
    int r = -EBUSY;
    if (!v)
        return -ENOENT;
    json_t *pending = json_object_get(v, "_attach_pending");
    if (pending && jeq(pending, "server_id", server_id)) {
        json_object_del(v, "_attach_pending");
        r = volume_doc_save(a, "volume", v, false);
    } else if (attach_del(v, server_id, NULL))
        r = volume_doc_save(a, "volume", v, false);
    json_decref(v);
    return r;
}

int api_volume_delete_for(Api *a, const char *volume_id)
{
    json_t *v = vol_of(a, NULL, volume_id);
    const char *why;
    if (!v)
        return -ENOENT;
    int r = vol_mark_deleting(a, v, false, true, &why);
    json_decref(v);
    return r;
}

/* ---- routes, start, stop ---- */

void api_volume_routes(Api *a)
{
    static const struct {
        const char *method, *path;
        SovHttpHandler h;
    } routes[] = {
        {"GET", "/volume", h_versions},
        {"GET", "/volume/", h_versions},
        {"GET", "/volume/v3", h_version},
        {"GET", "/volume/v3/", h_version},
        {"GET", "/volume/v3/{project_id}/volumes", h_vol_list},
        {"GET", "/volume/v3/{project_id}/volumes/detail", h_vol_detail},
        {"POST", "/volume/v3/{project_id}/volumes", h_vol_create},
        {"GET", "/volume/v3/{project_id}/snapshots", h_snap_list},
        {"GET", "/volume/v3/{project_id}/snapshots/detail", h_snap_list},
        {"POST", "/volume/v3/{project_id}/snapshots", h_snap_create},
    };
    /* shared by volumes and snapshots: the handlers tell them apart by the path */
    static const char *const colls[] = {"volumes", "snapshots"};
    static const struct {
        const char *method, *suffix;
        SovHttpHandler h;
    } items[] = {
        {"GET", "", h_show},
        {"PUT", "", h_update},
        {"DELETE", "", h_delete},
        {"POST", "/action", h_action},
        {"GET", "/metadata", h_meta},
        {"POST", "/metadata", h_meta},
        {"PUT", "/metadata", h_meta},
        {"GET", "/metadata/{key}", h_meta},
        {"PUT", "/metadata/{key}", h_meta},
        {"DELETE", "/metadata/{key}", h_meta},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].path, 0, routes[i].h, a);
    volume_type_routes(a);
    for (size_t k = 0; k < ELEMENTSOF(colls); k++)
        for (size_t i = 0; i < ELEMENTSOF(items); i++) {
            char path[128];
            snprintf(path, sizeof(path), "/volume/v3/{project_id}/%s/{id}%s", colls[k],
                     items[i].suffix);
            sov_router_add(a->router, items[i].method, path, 0, items[i].h, a);
        }
}

int api_volume_start(Api *a, SovBuf *err)
{
    int r = volume_types_seed(a, err);
    return r < 0 ? r : volume_block_start(a, err);
}

void api_volume_stop(Api *a)
{
    volume_block_stop(a);
}
