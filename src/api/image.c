/* SPDX-License-Identifier: Apache-2.0 */
/* Glance v2 under /image: version discovery, schemas, images (create, list with Glance's
 * visibility rules, filters, sorting and pages, show, JSON-patch update, delete), tags,
 * deactivate/reactivate and members. Images are documents of kind "image" in the API's shape
 * plus internal members (_store: where the data lies, _s3_upload: a multipart upload in flight,
 * _created_ms/_updated_ms: sort keys finer than the ISO times); members are documents of kind
 * "image_member" with id "<image>/<project>", owned by the member's project. The data plane
 * (PUT and GET .../file, the local and the object store) is image_s3.c. For volumes created
 * from images, sov-block reads the data without a token through a URL made here: presigned in
 * the object store, or an HMAC-signed /image/internal/{id} link for the local store. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "image_s3.h"
#include "sov/crypto.h"

#define KIND        "image"
#define MEMBER_KIND "image_member"
#define STR_MAX     255
#define VALUE_MAX   65535
#define MAX_TAGS    128
#define MAX_PROPS   128
#define MAX_PATCH   256

static const char *const disk_formats[] = {"ami", "ari",   "aki", "vhd", "vhdx",  "vmdk",
                                           "raw", "qcow2", "vdi", "iso", "ploop", NULL};
static const char *const container_formats[] = {"ami", "ari",    "aki",        "bare", "ovf",
                                                "ova", "docker", "compressed", NULL};
static const char *const visibilities[] = {"public", "private", "community", "shared", NULL};
static const char *const readonly_attrs[] = {
    "status",     "checksum",     "size",          "virtual_size", "created_at",
    "updated_at", "os_hash_algo", "os_hash_value", "self",         "file",
    "schema",     "direct_url",   "locations",     "stores",       NULL};
static const char *const reserved_attrs[] = {"deleted", "deleted_at", "location", NULL};
static const char *const base_attrs[] = {
    "id",          "name",         "status",       "visibility",    "protected",
    "os_hidden",   "checksum",     "os_hash_algo", "os_hash_value", "owner",
    "size",        "virtual_size", "min_disk",     "min_ram",       "container_format",
    "disk_format", "created_at",   "updated_at",   "tags",          NULL};

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

/* A refusal built while validating, answered by the caller (PATCH applies all or nothing). */
typedef struct ImgErr {
    int status;
    char msg[512];
} ImgErr;

_printf_(3, 4) static int img_err(ImgErr *e, int status, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static const char *jstr(const json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

static bool valid_uuid(const char *s)
{
    return s && strlen(s) == API_UUID_LEN && api_valid_id(sov_str(s));
}

/* ---- documents, access and views ---- */

int image_doc_save(Api *a, json_t *doc)
{
    ApiDocMeta m = {.kind = KIND,
                    .id = jstr(doc, "id"),
                    .project = jstr(doc, "owner"),
                    .name = jstr(doc, "name"),
                    .status = jstr(doc, "status")};
    return api_store_update(a->store, &m, doc);
}

void image_doc_touch(json_t *doc)
{
    char ts[32];
    int64_t now = api_now_ms();
    api_time_iso(now, ts);
    json_object_set_new(doc, "updated_at", json_string(ts));
    json_object_set_new(doc, "_updated_ms", json_integer(now));
}

static bool is_owner(const ApiCall *c, const json_t *doc)
{
    const char *owner = jstr(doc, "owner");
    return c->auth.system_admin || (owner && strcmp(owner, c->auth.project_id) == 0);
}

/* The member document of project on image (new reference), or NULL. */
static json_t *member_get(Api *a, const char *image_id, const char *project)
{
    char mid[128];
    json_t *m;
    snprintf(mid, sizeof(mid), "%s/%s", image_id, project);
    return api_store_get(a->store, MEMBER_KIND, mid, &m, NULL, 0) == 0 ? m : NULL;
}

/* Glance's visibility: the owner and admins see everything; public and community images are
 * everyone's; shared ones their members'. */
static bool image_visible(ApiCall *c, const json_t *doc)
{
    const char *vis = jstr(doc, "visibility");
    if (is_owner(c, doc))
        return true;
    if (!vis || strcmp(vis, "public") == 0 || strcmp(vis, "community") == 0)
        return true;
    if (strcmp(vis, "shared") == 0) {
        json_t *m = member_get(c->api, jstr(doc, "id"), c->auth.project_id);
        json_decref(m);
        return m != NULL;
    }
    return false;
}

/* Loads the image of the route's {id} when the caller may see it; answers 404 otherwise. */
static json_t *image_lookup(ApiCall *c)
{
    const char *raw = api_param(c, "id");
    char id[API_UUID_LEN + 1];
    json_t *doc = NULL;
    if (raw)
        snprintf(c->target, sizeof(c->target), "%.127s", raw);
    if (!raw || !valid_uuid(raw)) {
        api_fault(c, 404, NULL, "No image found with ID %.64s", raw ? raw : "");
        return NULL;
    }
    for (size_t i = 0; i <= API_UUID_LEN; i++)
        id[i] = (char)(raw[i] >= 'A' && raw[i] <= 'F' ? raw[i] + 32 : raw[i]);
    if (api_store_get(c->api->store, KIND, id, &doc, NULL, 0) < 0 || !image_visible(c, doc)) {
        json_decref(doc);
        api_fault(c, 404, NULL, "No image found with ID %s", id);
        return NULL;
    }
    snprintf(c->target, sizeof(c->target), "%s", id);
    api_call_own(c, doc);
    return doc;
}

/* Like image_lookup, for changes: only the owner (or an admin) may, others get 403. */
static json_t *image_lookup_owned(ApiCall *c, const char *what)
{
    json_t *doc = image_lookup(c);
    if (doc && !is_owner(c, doc)) {
        api_fault(c, 403, NULL, "You are not permitted to %s image %s.", what, c->target);
        return NULL;
    }
    return doc;
}

/* The API shape: internal members dropped, links added. */
static json_t *image_view(const json_t *doc)
{
    json_t *v = json_deep_copy(doc);
    const char *id = jstr(doc, "id");
    char buf[128];
    if (!v)
        return NULL;
    api_doc_public(v);
    snprintf(buf, sizeof(buf), "/v2/images/%s", id);
    json_object_set_new(v, "self", json_string(buf));
    snprintf(buf, sizeof(buf), "/v2/images/%s/file", id);
    json_object_set_new(v, "file", json_string(buf));
    json_object_set_new(v, "schema", json_string("/v2/schemas/image"));
    return v;
}

/* ---- attributes ---- */

static int check_tag(json_t *t, ImgErr *e)
{
    const char *s = json_string_value(t);
    if (!s)
        return img_err(e, 400, "Invalid tag: tags must be strings");
    if (!*s || strlen(s) > STR_MAX)
        return img_err(e, 400, "Invalid tag: a tag has 1 to %d characters", STR_MAX);
    return 0;
}

/* Removes repeated tags (Glance's tags are a set) and bounds their number. */
static int tags_normalise(json_t *doc, ImgErr *e)
{
    json_t *tags = json_object_get(doc, "tags");
    json_t *out = json_array();
    size_t i, j;
    json_t *t, *u;
    json_array_foreach(tags, i, t)
    {
        bool dup = false;
        if (check_tag(t, e) < 0) {
            json_decref(out);
            return -1;
        }
        json_array_foreach(out, j, u) dup = dup || json_equal(t, u);
        if (!dup)
            json_array_append(out, t);
    }
    if (json_array_size(out) > MAX_TAGS) {
        json_decref(out);
        return img_err(e, 413, "Maximum number of tags exceeded (%d)", MAX_TAGS);
    }
    json_object_set_new(doc, "tags", out);
    return 0;
}

static int set_enum(json_t *doc, const char *key, json_t *v, const char *const *allowed,
                    bool nullable, ImgErr *e)
{
    const char *s = json_string_value(v);
    if ((json_is_null(v) && nullable) || (s && in_list(allowed, s))) {
        json_object_set(doc, key, v);
        return 0;
    }
    return img_err(e, 400, "Invalid value for '%s': %s", key,
                   s ? "not one of the allowed values" : "expected a string");
}

/* Sets one attribute as a create body or a PATCH would; refusals as Glance answers them. */
static int set_attr(ApiCall *c, json_t *doc, const char *key, json_t *v, bool creating, ImgErr *e)
{
    size_t kl = strlen(key);
    if (kl == 0 || kl > STR_MAX)
        return img_err(e, 400, "Property names have 1 to %d characters", STR_MAX);
    if (key[0] == '_' || in_list(reserved_attrs, key))
        return img_err(e, 403, "Attribute '%.255s' is reserved.", key);
    if (strcmp(key, "id") == 0) {
        const char *s = json_string_value(v);
        if (!creating)
            return img_err(e, 403, "Attribute 'id' is read-only.");
        if (!valid_uuid(s))
            return img_err(e, 400, "Invalid value for 'id': expected a UUID");
        char low[API_UUID_LEN + 1];
        for (size_t i = 0; i <= API_UUID_LEN; i++)
            low[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
        json_object_set_new(doc, "id", json_string(low));
        return 0;
    }
    if (in_list(readonly_attrs, key))
        return img_err(e, 403, "Attribute '%s' is read-only.", key);
    if (strcmp(key, "owner") == 0) {
        const char *s = json_string_value(v);
        if (!c->auth.system_admin) {
            if (creating && s && strcmp(s, c->auth.project_id) == 0)
                return 0;
            return img_err(e, 403, "Attribute 'owner' is read-only.");
        }
        if (!s || !*s || strlen(s) > STR_MAX)
            return img_err(e, 400, "Invalid value for 'owner'");
        json_object_set(doc, key, v);
        return 0;
    }
    if (strcmp(key, "name") == 0) {
        const char *s = json_string_value(v);
        if (!json_is_null(v) && (!s || strlen(s) > STR_MAX))
            return img_err(e, 400, "Invalid value for 'name': a string of at most %d characters",
                           STR_MAX);
        json_object_set(doc, key, v);
        return 0;
    }
    if (strcmp(key, "visibility") == 0) {
        const char *s = json_string_value(v);
        if (!s || !in_list(visibilities, s))
            return img_err(e, 400,
                           "Invalid value for 'visibility': one of public, private, "
                           "community, shared");
        if (strcmp(s, "public") == 0 && !c->auth.system_admin)
            return img_err(e, 403, "You are not authorized to complete publicize_image action.");
        json_object_set(doc, key, v);
        return 0;
    }
    if (strcmp(key, "protected") == 0 || strcmp(key, "os_hidden") == 0) {
        if (!json_is_boolean(v))
            return img_err(e, 400, "Invalid value for '%s': expected a boolean", key);
        json_object_set(doc, key, v);
        return 0;
    }
    if (strcmp(key, "min_disk") == 0 || strcmp(key, "min_ram") == 0) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return img_err(e, 400, "Invalid value for '%s': expected an integer >= 0", key);
        json_object_set(doc, key, v);
        return 0;
    }
    if (strcmp(key, "disk_format") == 0 || strcmp(key, "container_format") == 0) {
        const char *st = jstr(doc, "status");
        if (!creating && st && strcmp(st, "queued") != 0)
            return img_err(e, 403, "Attribute %s can be only replaced for a queued image.", key);
        return set_enum(doc, key, v, key[0] == 'd' ? disk_formats : container_formats, true, e);
    }
    if (strcmp(key, "tags") == 0) {
        if (!json_is_array(v))
            return img_err(e, 400, "Invalid value for 'tags': expected an array of strings");
        json_object_set_new(doc, key, json_deep_copy(v));
        return tags_normalise(doc, e);
    }
    /* A custom property: a string, as Glance's schema has it. */
    const char *s = json_string_value(v);
    if (!s || strlen(s) > VALUE_MAX)
        return img_err(e, 400,
                       "Invalid value for property '%.255s': expected a string of at "
                       "most %d characters",
                       key, VALUE_MAX);
    if (!json_object_get(doc, key)) {
        size_t n = 0;
        const char *k;
        json_t *x;
        json_object_foreach(doc, k, x) n += k[0] != '_' && !in_list(base_attrs, k);
        if (n >= MAX_PROPS)
            return img_err(e, 413, "Maximum number of image properties exceeded (%d)", MAX_PROPS);
    }
    json_object_set(doc, key, v);
    return 0;
}

/* ---- version discovery and schemas ---- */

static json_t *versions_doc(Api *a)
{
    static const char *const ids[] = {"v2.9", "v2.8", "v2.7", "v2.6", "v2.5",
                                      "v2.4", "v2.3", "v2.2", "v2.1", "v2.0"};
    char href[600];
    json_t *list = json_array();
    snprintf(href, sizeof(href), "%s/image/v2/", api_public_url(a));
    for (size_t i = 0; i < ELEMENTSOF(ids); i++)
        json_array_append_new(list, json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "id", ids[i], "status",
                                              i == 0 ? "CURRENT" : "SUPPORTED", "links", "rel",
                                              "self", "href", href));
    return json_pack("{s:o}", "versions", list);
}

static void h_versions_root(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_NONE);
    if (c) /* Glance answers its root with 300 Multiple Choices */
        api_reply(c, 300, versions_doc(ud));
}

static void h_versions(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_NONE);
    if (c)
        api_reply(c, 200, versions_doc(ud));
}

/* The image schema clients may fetch (JSON Schema draft 4, as Glance publishes it); custom
 * properties are strings. */
static const char image_schema_text[] =
    "{\"name\":\"image\",\"additionalProperties\":{\"type\":\"string\"},\"properties\":{"
    "\"id\":{\"type\":\"string\",\"pattern\":\"^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
    "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$\"},"
    "\"name\":{\"type\":[\"null\",\"string\"],\"maxLength\":255},"
    "\"status\":{\"type\":\"string\",\"readOnly\":true,\"enum\":[\"queued\",\"saving\","
    "\"active\",\"killed\",\"deleted\",\"deactivated\",\"uploading\",\"importing\"]},"
    "\"visibility\":{\"type\":\"string\",\"enum\":[\"public\",\"private\",\"community\","
    "\"shared\"]},"
    "\"protected\":{\"type\":\"boolean\"},\"os_hidden\":{\"type\":\"boolean\"},"
    "\"checksum\":{\"type\":[\"null\",\"string\"],\"readOnly\":true,\"maxLength\":32},"
    "\"os_hash_algo\":{\"type\":[\"null\",\"string\"],\"readOnly\":true},"
    "\"os_hash_value\":{\"type\":[\"null\",\"string\"],\"readOnly\":true},"
    "\"owner\":{\"type\":[\"null\",\"string\"],\"maxLength\":255},"
    "\"size\":{\"type\":[\"null\",\"integer\"],\"readOnly\":true},"
    "\"virtual_size\":{\"type\":[\"null\",\"integer\"],\"readOnly\":true},"
    "\"min_disk\":{\"type\":\"integer\"},\"min_ram\":{\"type\":\"integer\"},"
    "\"container_format\":{\"type\":[\"null\",\"string\"],\"enum\":[null,\"ami\",\"ari\","
    "\"aki\",\"bare\",\"ovf\",\"ova\",\"docker\",\"compressed\"]},"
    "\"disk_format\":{\"type\":[\"null\",\"string\"],\"enum\":[null,\"ami\",\"ari\",\"aki\","
    "\"vhd\",\"vhdx\",\"vmdk\",\"raw\",\"qcow2\",\"vdi\",\"iso\",\"ploop\"]},"
    "\"created_at\":{\"type\":\"string\",\"readOnly\":true},"
    "\"updated_at\":{\"type\":\"string\",\"readOnly\":true},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":255}},"
    "\"self\":{\"type\":\"string\",\"readOnly\":true},"
    "\"file\":{\"type\":\"string\",\"readOnly\":true},"
    "\"schema\":{\"type\":\"string\",\"readOnly\":true}},"
    "\"links\":[{\"rel\":\"self\",\"href\":\"{self}\"},{\"rel\":\"enclosure\",\"href\":\"{file}\"},"
    "{\"rel\":\"describedby\",\"href\":\"{schema}\"}]}";

static json_t *image_schema(void)
{
    return json_loads(image_schema_text, 0, NULL);
}

static void h_schema_image(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    if (c)
        api_reply(c, 200, image_schema());
}

static void h_schema_images(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    if (!c)
        return;
    json_t *s = image_schema();
    json_object_set_new(s, "name", json_string("image"));
    api_reply(c, 200,
              json_pack("{s:s,s:{s:{s:s,s:o},s:{s:s},s:{s:s},s:{s:s}},s:[{s:s,s:s},{s:s,s:s},"
                        "{s:s,s:s}]}",
                        "name", "images", "properties", "images", "type", "array", "items", s,
                        "schema", "type", "string", "first", "type", "string", "next", "type",
                        "string", "links", "rel", "first", "href", "{first}", "rel", "next", "href",
                        "{next}", "rel", "describedby", "href", "{schema}"));
}

static json_t *member_schema(void)
{
    return json_pack("{s:s,s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:[sss]},s:{s:s},s:{s:s}}}",
                     "name", "member", "properties", "created_at", "type", "string", "updated_at",
                     "type", "string", "image_id", "type", "string", "member_id", "type", "string",
                     "status", "type", "string", "enum", "pending", "accepted", "rejected",
                     "schema", "type", "string", "id", "type", "string");
}

static void h_schema_member(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    if (c)
        api_reply(c, 200, member_schema());
}

static void h_schema_members(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    if (c)
        api_reply(c, 200,
                  json_pack("{s:s,s:{s:{s:s,s:o}}}", "name", "members", "properties", "members",
                            "type", "array", "items", member_schema()));
}

/* ---- create, show ---- */

static void h_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    ImgErr e = {0};
    char id[API_UUID_LEN + 1], ts[32];
    const char *key;
    json_t *v;
    if (!c)
        return;
    json_t *b = api_body(c, NULL);
    if (!b)
        return;
    const ApiRegion *reg = api_local_region(a);
    if (!api_jurisdiction_allowed(c, reg->jurisdiction)) {
        api_fault(c, 403, NULL,
                  "Image data of region %s would be stored under jurisdiction %s, which project "
                  "%s does not allow (allowed: %s)",
                  reg->name, reg->jurisdiction, c->auth.project_id,
                  c->auth.jurisdictions[0] ? c->auth.jurisdictions : "EU");
        return;
    }
    if (!api_quota_check(c, "images", 1))
        return;
    int64_t now = api_now_ms();
    api_new_uuid(id);
    api_time_iso(now, ts);
    json_t *doc = json_pack(
        "{s:s,s:n,s:s,s:s,s:b,s:b,s:n,s:n,s:n,s:s,s:n,s:n,s:i,s:i,s:n,s:n,s:s,s:s,s:[],s:I,s:I}",
        "id", id, "name", "status", "queued", "visibility", "shared", "protected", 0, "os_hidden",
        0, "checksum", "os_hash_algo", "os_hash_value", "owner", c->auth.project_id, "size",
        "virtual_size", "min_disk", 0, "min_ram", 0, "container_format", "disk_format",
        "created_at", ts, "updated_at", ts, "tags", "_created_ms", (json_int_t)now, "_updated_ms",
        (json_int_t)now);
    api_call_own(c, doc);
    /* Glance's default visibility is "shared" (members may be added later); a private image
     * is asked for explicitly. */
    json_object_foreach(b, key, v)
    {
        if (set_attr(c, doc, key, v, true, &e) < 0) {
            api_fault(c, e.status, NULL, "%s", e.msg);
            return;
        }
    }
    snprintf(c->target, sizeof(c->target), "%s", jstr(doc, "id"));
    ApiDocMeta m = {.kind = KIND,
                    .id = jstr(doc, "id"),
                    .project = jstr(doc, "owner"),
                    .name = jstr(doc, "name"),
                    .status = "queued"};
    int r = api_store_insert(a->store, &m, doc);
    if (r == -EEXIST) {
        api_fault(c, 409, NULL, "Image with identifier %s already exists!", jstr(doc, "id"));
        return;
    }
    if (r < 0) {
        api_fault(c, 500, NULL, "The image could not be stored: %s", strerror(-r));
        return;
    }
    char loc[600];
    snprintf(loc, sizeof(loc), "%s/image/v2/images/%s", api_public_url(a), jstr(doc, "id"));
    sov_http_resp_header(req, "Location", sov_str(loc));
    api_reply(c, 201, image_view(doc));
}

static void h_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    json_t *doc;
    if (c && (doc = image_lookup(c)))
        api_reply(c, 200, image_view(doc));
}

/* ---- list ---- */

typedef struct SortKey {
    const char *key;
    bool desc;
} SortKey;

typedef struct ListCtx {
    SortKey keys[8];
    size_t nkeys;
} ListCtx;

static const char *const sort_keys[] = {
    "name",       "status",       "container_format", "disk_format", "size",     "id",
    "created_at", "updated_at",   "visibility",       "owner",       "min_disk", "min_ram",
    "protected",  "virtual_size", "os_hidden",        NULL};

static int cmp_json(const json_t *x, const json_t *y)
{
    if (!x || json_is_null(x))
        return (!y || json_is_null(y)) ? 0 : -1;
    if (!y || json_is_null(y))
        return 1;
    if (json_is_string(x) && json_is_string(y))
        return strcmp(json_string_value(x), json_string_value(y));
    if (json_is_boolean(x) || json_is_boolean(y))
        return (int)json_is_true(x) - (int)json_is_true(y);
    json_int_t a = json_integer_value(x), b = json_integer_value(y);
    return a < b ? -1 : a > b;
}

static int cmp_images(const void *pa, const void *pb, void *ud)
{
    const ListCtx *sort_ctx = ud;
    const json_t *x = *(json_t *const *)pa, *y = *(json_t *const *)pb;
    for (size_t i = 0; i < sort_ctx->nkeys; i++) {
        const char *k = sort_ctx->keys[i].key;
        int r;
        /* The times compare by their milliseconds so that images made within a second keep
         * their order. */
        if (strcmp(k, "created_at") == 0)
            k = "_created_ms";
        else if (strcmp(k, "updated_at") == 0)
            k = "_updated_ms";
        r = cmp_json(json_object_get(x, k), json_object_get(y, k));
        if (!r && strcmp(k, "_created_ms") == 0) /* same millisecond: the store's order */
            r = cmp_json(json_object_get(x, "_pos"), json_object_get(y, "_pos"));
        if (r)
            return sort_ctx->keys[i].desc ? -r : r;
    }
    return 0;
}

static bool parse_sort(ApiCall *c, ListCtx *lc)
{
    const char *keys[8], *dirs[8];
    size_t nk = api_query_all(c, "sort_key", keys, 8), nd = api_query_all(c, "sort_dir", dirs, 8);
    const char *sort = api_query(c, "sort");
    if (sort && nk) {
        api_fault(c, 400, NULL, "The 'sort' and 'sort_key' parameters cannot be combined");
        return false;
    }
    if (sort) {
        char *copy = sov_arena_strndup(sov_http_req_arena(c->req), sort, strlen(sort)), *save;
        for (char *t = strtok_r(copy, ",", &save); t && lc->nkeys < 7;
             t = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(t, ':');
            bool desc = true;
            if (colon) {
                *colon = '\0';
                if (strcmp(colon + 1, "asc") != 0 && strcmp(colon + 1, "desc") != 0) {
                    api_fault(c, 400, NULL, "Invalid sort direction: %.32s", colon + 1);
                    return false;
                }
                desc = strcmp(colon + 1, "desc") == 0;
            }
            lc->keys[lc->nkeys++] = (SortKey){t, desc};
        }
    } else {
        for (size_t i = 0; i < nk && i < 7; i++) {
            const char *d = i < nd ? dirs[i] : nd ? dirs[nd - 1] : "desc";
            if (strcmp(d, "asc") != 0 && strcmp(d, "desc") != 0) {
                api_fault(c, 400, NULL, "Invalid sort direction: %.32s", d);
                return false;
            }
            lc->keys[lc->nkeys++] = (SortKey){keys[i], strcmp(d, "desc") == 0};
        }
    }
    for (size_t i = 0; i < lc->nkeys; i++)
        if (!in_list(sort_keys, lc->keys[i].key)) {
            api_fault(c, 400, NULL, "Invalid sort key: %.64s", lc->keys[i].key);
            return false;
        }
    if (lc->nkeys == 0)
        lc->keys[lc->nkeys++] = (SortKey){"created_at", true};
    lc->keys[lc->nkeys++] = (SortKey){"id", lc->keys[0].desc};
    return true;
}

/* Query keys that are not filters on custom properties. */
static const char *const list_params[] = {
    "limit",    "marker",    "sort_key",   "sort_dir",    "sort",
    "name",     "status",    "visibility", "owner",       "member_status",
    "tag",      "os_hidden", "protected",  "disk_format", "container_format",
    "size_min", "size_max",  "id",         "all_tenants", "all_projects",
    NULL};

typedef struct PropFilter {
    const char *key, *value;
} PropFilter;

/* Every other query key filters on a custom property: key=value, both percent-decoded. */
static size_t prop_filters(ApiCall *c, PropFilter *out, size_t max)
{
    ApiQueryPair qp[64];
    size_t nq = api_query_pairs(c, qp, ELEMENTSOF(qp)), n = 0;
    for (size_t i = 0; i < nq && n < max; i++) {
        const char *k = qp[i].key;
        if (k[0] != '_' && !in_list(list_params, k) && !in_list(base_attrs, k))
            out[n++] = (PropFilter){k, qp[i].value};
    }
    return n;
}

static bool int_filter(ApiCall *c, const char *key, int64_t *ret)
{
    const char *v = api_query(c, key);
    char *end;
    if (!v)
        return true;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < 0) {
        api_fault(c, 400, NULL, "Invalid value for %s: %.32s", key, v);
        return false;
    }
    *ret = n;
    return true;
}

/* Glance's listing rules: without a visibility filter, a project sees its own images, public
 * ones and shared ones it accepted (member_status); community images only when asked for;
 * admins see everything. */
static bool list_match(ApiCall *c, json_t *doc, const char *vis, const char *mstatus)
{
    const char *v = jstr(doc, "visibility"), *owner = jstr(doc, "owner");
    bool own = owner && strcmp(owner, c->auth.project_id) == 0;
    if (vis && strcmp(vis, "all") != 0 && strcmp(v, vis) != 0)
        return false;
    if (strcmp(v, "shared") == 0 && !own) {
        json_t *m = member_get(c->api, jstr(doc, "id"), c->auth.project_id);
        const char *st = m ? jstr(m, "status") : NULL;
        bool ok = st && (strcmp(mstatus, "all") == 0 || strcmp(mstatus, st) == 0);
        json_decref(m);
        if (ok)
            return true;
        return c->auth.system_admin && !vis;
    }
    if (c->auth.system_admin || own || strcmp(v, "public") == 0)
        return true;
    return strcmp(v, "community") == 0 && vis != NULL;
}

/* Appends the request's query minus marker to out ("a=1&b=2"), as it came (still encoded). */
static void query_without_marker(ApiCall *c, SovBuf *out)
{
    SovStr q = sov_http_req_query(c->req);
    size_t i = 0;
    while (i < q.len) {
        size_t j = i;
        while (j < q.len && q.ptr[j] != '&')
            j++;
        if (j > i && !(j - i >= 6 && memcmp(q.ptr + i, "marker", 6) == 0 &&
                       (j - i == 6 || q.ptr[i + 6] == '='))) {
            if (out->len)
                sov_buf_putc(out, '&');
            sov_buf_append(out, q.ptr + i, j - i);
        }
        i = j + 1;
    }
}

static void h_list(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_READ);
    ListCtx lc = {0};
    PropFilter props[16];
    const char *tags[16];
    int64_t size_min = -1, size_max = -1;
    json_t *all, *d;
    size_t i, ntags, n = 0;
    if (!c)
        return;
    int limit = api_query_limit(c, 25, 1000);
    if (limit < 0 || !parse_sort(c, &lc) || !int_filter(c, "size_min", &size_min) ||
        !int_filter(c, "size_max", &size_max))
        return;
    const char *vis = api_query(c, "visibility"), *mstatus = api_query(c, "member_status");
    const char *name = api_query(c, "name"), *status = api_query(c, "status");
    const char *owner = api_query(c, "owner"), *hidden = api_query(c, "os_hidden");
    const char *marker = api_query(c, "marker");
    if (vis && strcmp(vis, "all") != 0 && !in_list(visibilities, vis)) {
        api_fault(c, 400, NULL, "Invalid visibility value: %.32s", vis);
        return;
    }
    if (!mstatus)
        mstatus = "accepted";
    if (strcmp(mstatus, "all") != 0 && strcmp(mstatus, "accepted") != 0 &&
        strcmp(mstatus, "pending") != 0 && strcmp(mstatus, "rejected") != 0) {
        api_fault(c, 400, NULL, "Invalid member_status value: %.32s", mstatus);
        return;
    }
    ntags = api_query_all(c, "tag", tags, ELEMENTSOF(tags));
    size_t nprops = prop_filters(c, props, ELEMENTSOF(props));
    ApiListQuery q = {.kind = KIND, .name = name, .status = status, .project = owner};
    if (api_store_list(a->store, &q, &all) < 0) {
        api_fault(c, 500, NULL, "The image list could not be read");
        return;
    }
    api_call_own(c, all);
    json_t **v = sov_arena_alloc(sov_http_req_arena(req), (json_array_size(all) + 1) * sizeof(*v));
    if (!v) {
        api_fault(c, 500, NULL, "out of memory");
        return;
    }
    json_array_foreach(all, i, d)
    {
        bool ok = list_match(c, d, vis, mstatus);
        bool hid = json_is_true(json_object_get(d, "os_hidden"));
        ok = ok && (hid == (hidden && strcasecmp(hidden, "true") == 0));
        for (size_t t = 0; ok && t < ntags; t++) {
            size_t k;
            json_t *x;
            bool has = false;
            json_array_foreach(json_object_get(d, "tags"), k, x) has =
                has || strcmp(json_string_value(x), tags[t]) == 0;
            ok = has;
        }
        static const char *const eq_keys[] = {"disk_format", "container_format", "id", NULL};
        for (size_t k = 0; ok && eq_keys[k]; k++) {
            const char *want = api_query(c, eq_keys[k]);
            ok = !want || (jstr(d, eq_keys[k]) && strcmp(jstr(d, eq_keys[k]), want) == 0);
        }
        const char *prot = api_query(c, "protected");
        if (ok && prot)
            ok = json_is_true(json_object_get(d, "protected")) == (strcasecmp(prot, "true") == 0);
        json_int_t size = json_integer_value(json_object_get(d, "size"));
        if (ok && (size_min >= 0 || size_max >= 0) && !json_is_integer(json_object_get(d, "size")))
            ok = false;
        if (ok && ((size_min >= 0 && size < size_min) || (size_max >= 0 && size > size_max)))
            ok = false;
        for (size_t f = 0; ok && f < nprops; f++) {
            const char *have = jstr(d, props[f].key);
            ok = have && strcmp(have, props[f].value) == 0;
        }
        if (ok) {
            json_object_set_new(d, "_pos", json_integer((json_int_t)n)); /* creation order */
            v[n++] = d;
        }
    }
    qsort_r(v, n, sizeof(*v), cmp_images, &lc);
    size_t start = 0;
    if (marker) {
        while (start < n && strcmp(jstr(v[start], "id"), marker) != 0)
            start++;
        if (start == n) {
            api_fault(c, 400, NULL, "Invalid marker. Image %.64s could not be found.", marker);
            return;
        }
        start++;
    }
    json_t *images = json_array();
    size_t end = start + (size_t)limit < n ? start + (size_t)limit : n;
    for (i = start; i < end; i++)
        json_array_append_new(images, image_view(v[i]));
    json_t *out = json_pack("{s:o,s:s}", "images", images, "schema", "/v2/schemas/images");
    SovBuf qb = SOV_BUF_INIT;
    query_without_marker(c, &qb);
    char *first = sov_arena_printf(sov_http_req_arena(req), "/v2/images%s%s", qb.len ? "?" : "",
                                   qb.len ? qb.ptr : "");
    json_object_set_new(out, "first", json_string(first ? first : "/v2/images"));
    if (end < n && end > start) {
        char *next =
            sov_arena_printf(sov_http_req_arena(req), "/v2/images?%s%smarker=%s",
                             qb.len ? qb.ptr : "", qb.len ? "&" : "", jstr(v[end - 1], "id"));
        if (next)
            json_object_set_new(out, "next", json_string(next));
    }
    sov_buf_release(&qb);
    api_reply(c, 200, out);
}

/* ---- update (JSON patch) ---- */

/* Splits a JSON pointer into at most two decoded tokens; -1 when it is not one. */
static int pointer_split(const char *path, char *t0, size_t c0, char *t1, size_t c1)
{
    char *outs[2] = {t0, t1};
    size_t caps[2] = {c0, c1}, n = 0, o = 0;
    if (path[0] != '/')
        return -1;
    t0[0] = t1[0] = '\0';
    for (const char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            outs[n][o] = '\0';
            n++;
            o = 0;
            if (!*p)
                return (int)n;
            if (n == 2)
                return -1;
            continue;
        }
        char ch = *p;
        if (ch == '~') {
            if (p[1] != '0' && p[1] != '1')
                return -1;
            ch = p[1] == '0' ? '~' : '/';
            p++;
        }
        if (o + 1 >= caps[n])
            return -1;
        outs[n][o++] = ch;
    }
}

static int patch_tags_index(json_t *doc, const char *op, const char *idx, json_t *val, ImgErr *e)
{
    json_t *tags = json_object_get(doc, "tags");
    size_t n = json_array_size(tags);
    char *end;
    long i = strcmp(idx, "-") == 0 ? (long)n : strtol(idx, &end, 10);
    bool ok_idx = strcmp(idx, "-") == 0 || (*idx && !*end && i >= 0);
    if (!ok_idx || (strcmp(op, "add") == 0 ? (size_t)i > n : (size_t)i >= n))
        return img_err(e, 400, "Invalid tag index: %.32s", idx);
    if (strcmp(op, "remove") == 0)
        return json_array_remove(tags, (size_t)i) == 0 ? 0 : img_err(e, 400, "Invalid index");
    if (check_tag(val, e) < 0)
        return -1;
    if (strcmp(op, "add") == 0)
        json_array_insert(tags, (size_t)i, val);
    else
        json_array_set(tags, (size_t)i, val);
    return 0;
}

static int patch_one(ApiCall *c, json_t *doc, json_t *op, ImgErr *e)
{
    const char *kind = jstr(op, "op"), *path = jstr(op, "path");
    json_t *val = json_object_get(op, "value");
    char t0[STR_MAX + 2], t1[64];
    if (!json_is_object(op))
        return img_err(e, 400, "A patch operation must be an object");
    if (!kind) { /* the older media type: {"replace": "/name", "value": ...} */
        static const char *const ops[] = {"add", "replace", "remove"};
        for (size_t i = 0; i < ELEMENTSOF(ops) && !kind; i++)
            if (json_is_string(json_object_get(op, ops[i]))) {
                kind = ops[i];
                path = jstr(op, ops[i]);
            }
    }
    if (!kind ||
        (strcmp(kind, "add") != 0 && strcmp(kind, "replace") != 0 && strcmp(kind, "remove") != 0))
        return img_err(e, 400, "Operations must be one of add, replace, remove");
    if (!path)
        return img_err(e, 400, "Operation requires a 'path' string");
    if (strcmp(kind, "remove") != 0 && !val)
        return img_err(e, 400, "Operation '%s' requires a 'value'", kind);
    int nt = pointer_split(path, t0, sizeof(t0), t1, sizeof(t1));
    if (nt < 1 || (nt == 2 && strcmp(t0, "tags") != 0))
        return img_err(e, 400, "Invalid JSON pointer for this resource: '%.255s'", path);
    if (nt == 2)
        return patch_tags_index(doc, kind, t1, val, e);
    bool base = in_list(base_attrs, t0) || in_list(readonly_attrs, t0) || t0[0] == '_' ||
                in_list(reserved_attrs, t0);
    if (strcmp(kind, "remove") == 0) {
        if (strcmp(t0, "tags") == 0) {
            json_object_set_new(doc, "tags", json_array());
            return 0;
        }
        if (base) {
            if (in_list(readonly_attrs, t0) || strcmp(t0, "id") == 0)
                return img_err(e, 403, "Attribute '%s' is read-only.", t0);
            return img_err(e, 403, "Attribute '%.255s' cannot be removed.", t0);
        }
        if (!json_object_get(doc, t0))
            return img_err(e, 409, "Property %.255s does not exist.", t0);
        json_object_del(doc, t0);
        return 0;
    }
    if (strcmp(kind, "replace") == 0 && !base && !json_object_get(doc, t0))
        return img_err(e, 409, "Property %.255s does not exist.", t0);
    return set_attr(c, doc, t0, val, false, e);
}

static void h_update(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    ImgErr e = {0};
    json_error_t je;
    json_t *doc, *ops, *op;
    size_t i;
    if (!c || !(doc = image_lookup_owned(c, "modify")))
        return;
    SovStr ct = sov_http_req_header(req, "Content-Type");
    if (!ct.ptr ||
        !(sov_str_has_prefix(ct, SOV_STR("application/openstack-images-v2.1-json-patch")) ||
          sov_str_has_prefix(ct, SOV_STR("application/openstack-images-v2.0-json-patch")))) {
        api_fault(c, 415, NULL,
                  "Unsupported Content-Type: use application/openstack-images-v2.1-json-patch");
        return;
    }
    SovStr body = sov_http_req_body(req);
    ops = json_loadb(body.ptr ? body.ptr : "", body.len, JSON_REJECT_DUPLICATES, &je);
    if (!ops) {
        api_fault(c, 400, NULL, "Malformed JSON patch: %s", je.text);
        return;
    }
    api_call_own(c, ops);
    if (!json_is_array(ops) || json_array_size(ops) > MAX_PATCH) {
        api_fault(c, 400, NULL, "A JSON patch is an array of at most %d operations", MAX_PATCH);
        return;
    }
    json_t *work = json_deep_copy(doc);
    api_call_own(c, work);
    json_array_foreach(ops, i, op)
    {
        if (patch_one(c, work, op, &e) < 0) {
            api_fault(c, e.status, NULL, "%s", e.msg);
            return;
        }
    }
    if (tags_normalise(work, &e) < 0) {
        api_fault(c, e.status, NULL, "%s", e.msg);
        return;
    }
    if (!json_equal(work, doc))
        image_doc_touch(work);
    int r = image_doc_save(a, work);
    if (r < 0) {
        api_fault(c, 500, NULL, "The image could not be stored: %s", strerror(-r));
        return;
    }
    api_reply(c, 200, image_view(work));
}

/* ---- tags and actions ---- */

static void tag_change(SovHttpReq *req, Api *a, bool add)
{
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    ImgErr e = {0};
    json_t *doc;
    if (!c || !(doc = image_lookup_owned(c, "modify")))
        return;
    const char *tag = api_param(c, "tag");
    json_t *t = json_string(tag ? tag : "");
    api_call_own(c, t);
    if (check_tag(t, &e) < 0) {
        api_fault(c, e.status, NULL, "%s", e.msg);
        return;
    }
    json_t *tags = json_object_get(doc, "tags");
    size_t i, at = SIZE_MAX;
    json_t *x;
    json_array_foreach(tags, i, x) if (json_equal(x, t)) at = i;
    if (add) {
        if (at == SIZE_MAX) {
            if (json_array_size(tags) >= MAX_TAGS) {
                api_fault(c, 413, NULL, "Maximum number of tags exceeded (%d)", MAX_TAGS);
                return;
            }
            json_array_append(tags, t);
        }
    } else {
        if (at == SIZE_MAX) {
            api_fault(c, 404, NULL, "Tag %.255s not found", tag);
            return;
        }
        json_array_remove(tags, at);
    }
    image_doc_touch(doc);
    int r = image_doc_save(a, doc);
    if (r < 0)
        api_fault(c, 500, NULL, "The image could not be stored: %s", strerror(-r));
    else
        api_reply(c, 204, NULL);
}

static void h_tag_add(SovHttpReq *req, void *ud)
{
    tag_change(req, ud, true);
}

static void h_tag_del(SovHttpReq *req, void *ud)
{
    tag_change(req, ud, false);
}

static void set_active(SovHttpReq *req, Api *a, bool deactivate)
{
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_ADMIN);
    json_t *doc;
    if (!c || !(doc = image_lookup(c)))
        return;
    const char *st = jstr(doc, "status");
    if (strcmp(st, "active") != 0 && strcmp(st, "deactivated") != 0) {
        api_fault(c, 400, NULL, "Not allowed to %s image in status '%s'",
                  deactivate ? "deactivate" : "reactivate", st);
        return;
    }
    json_object_set_new(doc, "status", json_string(deactivate ? "deactivated" : "active"));
    image_doc_touch(doc);
    int r = image_doc_save(a, doc);
    if (r < 0)
        api_fault(c, 500, NULL, "The image could not be stored: %s", strerror(-r));
    else
        api_reply(c, 204, NULL);
}

static void h_deactivate(SovHttpReq *req, void *ud)
{
    set_active(req, ud, true);
}

static void h_reactivate(SovHttpReq *req, void *ud)
{
    set_active(req, ud, false);
}

/* ---- members ---- */

static json_t *member_view(const json_t *m)
{
    json_t *v = json_deep_copy(m);
    api_doc_public(v);
    json_object_set_new(v, "schema", json_string("/v2/schemas/member"));
    return v;
}

static void h_member_add(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    json_t *doc, *b;
    const char *member = NULL;
    char ts[32], mid[128];
    if (!c || !(doc = image_lookup_owned(c, "share")) || !(b = api_body(c, NULL)))
        return;
    member = jstr(b, "member");
    if (!member || !*member || strlen(member) > STR_MAX) {
        api_fault(c, 400, NULL, "The body needs a 'member' string (a project id)");
        return;
    }
    if (strcmp(jstr(doc, "visibility"), "shared") != 0) {
        api_fault(c, 403, NULL, "Only shared images have members.");
        return;
    }
    api_time_iso(api_now_ms(), ts);
    snprintf(mid, sizeof(mid), "%s/%s", jstr(doc, "id"), member);
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:s}", "image_id", jstr(doc, "id"), "member_id", member,
                          "status", "pending", "created_at", ts, "updated_at", ts);
    api_call_own(c, m);
    ApiDocMeta meta = {.kind = MEMBER_KIND,
                       .id = mid,
                       .project = member,
                       .parent = jstr(doc, "id"),
                       .status = "pending"};
    int r = api_store_insert(a->store, &meta, m);
    if (r == -EEXIST)
        api_fault(c, 409, NULL, "Member %.255s is already a member of image %s", member,
                  jstr(doc, "id"));
    else if (r < 0)
        api_fault(c, 500, NULL, "The member could not be stored: %s", strerror(-r));
    else
        api_reply(c, 200, member_view(m));
}

static void h_member_list(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_READ);
    json_t *doc, *all, *m;
    size_t i;
    if (!c || !(doc = image_lookup(c)))
        return;
    ApiListQuery q = {.kind = MEMBER_KIND, .parent = jstr(doc, "id")};
    if (api_store_list(a->store, &q, &all) < 0) {
        api_fault(c, 500, NULL, "The member list could not be read");
        return;
    }
    api_call_own(c, all);
    json_t *out = json_array();
    bool owner = is_owner(c, doc);
    json_array_foreach(all, i, m) if (owner || strcmp(jstr(m, "member_id"), c->auth.project_id) ==
                                                   0) json_array_append_new(out, member_view(m));
    api_reply(c, 200, json_pack("{s:o,s:s}", "members", out, "schema", "/v2/schemas/members"));
}

/* The member of the route for the caller: the owner sees every member, a member itself. */
static json_t *member_lookup(ApiCall *c, json_t *doc)
{
    const char *member = api_param(c, "member");
    json_t *m = member ? member_get(c->api, jstr(doc, "id"), member) : NULL;
    if (!m || !(is_owner(c, doc) || strcmp(member, c->auth.project_id) == 0)) {
        json_decref(m);
        api_fault(c, 404, NULL, "%.255s is not a member of image %s", member ? member : "",
                  jstr(doc, "id"));
        return NULL;
    }
    api_call_own(c, m);
    return m;
}

static void h_member_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    json_t *doc, *m;
    if (c && (doc = image_lookup(c)) && (m = member_lookup(c, doc)))
        api_reply(c, 200, member_view(m));
}

static void h_member_update(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    json_t *doc, *m, *b;
    char ts[32], mid[128];
    if (!c || !(doc = image_lookup(c)) || !(m = member_lookup(c, doc)) || !(b = api_body(c, NULL)))
        return;
    const char *st = jstr(b, "status");
    if (!st || (strcmp(st, "pending") != 0 && strcmp(st, "accepted") != 0 &&
                strcmp(st, "rejected") != 0)) {
        api_fault(c, 400, NULL, "status must be one of pending, accepted, rejected");
        return;
    }
    if (strcmp(jstr(m, "member_id"), c->auth.project_id) != 0) {
        api_fault(c, 403, NULL, "Only the member itself may change its status");
        return;
    }
    api_time_iso(api_now_ms(), ts);
    json_object_set_new(m, "status", json_string(st));
    json_object_set_new(m, "updated_at", json_string(ts));
    snprintf(mid, sizeof(mid), "%s/%s", jstr(doc, "id"), jstr(m, "member_id"));
    ApiDocMeta meta = {.kind = MEMBER_KIND,
                       .id = mid,
                       .project = jstr(m, "member_id"),
                       .parent = jstr(doc, "id"),
                       .status = st};
    if (api_store_update(a->store, &meta, m) < 0)
        api_fault(c, 500, NULL, "The member could not be stored");
    else
        api_reply(c, 200, member_view(m));
}

static void h_member_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    json_t *doc, *m;
    char mid[128];
    if (!c || !(doc = image_lookup(c)) || !(m = member_lookup(c, doc)))
        return;
    if (!is_owner(c, doc)) {
        api_fault(c, 403, NULL, "Only the image owner may remove members");
        return;
    }
    snprintf(mid, sizeof(mid), "%s/%s", jstr(doc, "id"), jstr(m, "member_id"));
    api_store_delete(a->store, MEMBER_KIND, mid);
    api_reply(c, 204, NULL);
}

/* ---- data and delete (the data plane is image_s3.c) ---- */

static void h_upload(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_WRITE);
    json_t *doc;
    if (!c || !(doc = image_lookup_owned(c, "upload data to")))
        return;
    SovStr ct = sov_http_req_header(req, "Content-Type");
    if (ct.ptr && !sov_str_has_prefix(ct, SOV_STR("application/octet-stream"))) {
        api_fault(c, 415, NULL, "Image data must be sent as application/octet-stream");
        return;
    }
    const char *st = jstr(doc, "status");
    if (strcmp(st, "queued") != 0) {
        api_fault(c, 409, NULL, "Image status transition from %s to saving is not allowed", st);
        return;
    }
    image_data_upload(c, doc);
}

static void h_download(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_READ);
    json_t *doc;
    if (!c || !(doc = image_lookup(c)))
        return;
    const char *st = jstr(doc, "status");
    if (strcmp(st, "deactivated") == 0 && !c->auth.system_admin) {
        api_fault(c, 403, NULL,
                  "The requested image has been deactivated. Image data download is forbidden.");
        return;
    }
    if (strcmp(st, "active") != 0 && strcmp(st, "deactivated") != 0) {
        api_reply(c, 204, NULL); /* no data yet */
        return;
    }
    image_data_download(c, doc);
}

/* The document goes first, then the data: a crash in between leaves unreachable data
 * rather than an image without its bytes. */
static void h_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_GLANCE, API_NEED_WRITE);
    json_t *doc;
    if (!c || !(doc = image_lookup_owned(c, "delete")))
        return;
    if (json_is_true(json_object_get(doc, "protected"))) {
        api_fault(c, 403, NULL, "Image %s is protected and cannot be deleted.", c->target);
        return;
    }
    const char *store = jstr(doc, "_store"), *st = jstr(doc, "status");
    bool has_data = store && (strcmp(st, "active") == 0 || strcmp(st, "deactivated") == 0);
    api_store_begin(a->store);
    api_store_delete_children(a->store, MEMBER_KIND, c->target);
    int r = api_store_delete(a->store, KIND, c->target);
    if (r < 0 || api_store_commit(a->store) < 0) {
        api_store_rollback(a->store);
        api_fault(c, 500, NULL, "The image could not be deleted");
        return;
    }
    /* An upload in flight (saving) removes its own data when it finds the image gone. */
    if (has_data)
        image_data_remove(c, c->target, store);
    else
        api_reply(c, 204, NULL);
}

/* ---- data links for sov-block ---- */

/* Signs "<id> <expires>" with the cloud's link key: random, drawn once and kept in the state
 * database, so that links outlive a restart of sov-api in the middle of a long copy. */
static int link_sig(Api *a, const char *id, int64_t expires, char out[65])
{
    uint8_t key[32], mac[SOV_SHA256_LEN];
    char hex[65], msg[96];
    int r = api_store_meta_get(a->store, "image_link_key", hex, sizeof(hex));
    if (r == -ENOENT) {
        if ((r = sov_random_bytes(key, sizeof(key))) < 0)
            return r;
        sov_hex_encode(key, sizeof(key), hex);
        hex[64] = '\0';
        r = api_store_meta_set(a->store, "image_link_key", hex);
    }
    if (r < 0 || strlen(hex) != 64 || sov_hex_decode(hex, 64, key) < 0)
        return r < 0 ? r : -EINVAL;
    int n = snprintf(msg, sizeof(msg), "%.40s %" PRId64, id, expires);
    r = sov_hmac_sha256(key, sizeof(key), msg, (size_t)n, mac);
    explicit_bzero(key, sizeof(key));
    explicit_bzero(hex, sizeof(hex));
    if (r < 0)
        return r;
    sov_hex_encode(mac, sizeof(mac), out);
    out[64] = '\0';
    return 0;
}

int image_source_url(Api *a, const json_t *img, unsigned ttl_s, SovBuf *out, SovBuf *err)
{
    const char *id = jstr(img, "id"), *store = jstr(img, "_store"), *st = jstr(img, "status");
    const char *base = api_public_url(a);
    ImageS3 *s3 = image_data_s3(a);
    char sig[65];
    int64_t expires = api_now_ms() / 1000 + ttl_s;
    int r;
    if (!id || !st || strcmp(st, "active") != 0) {
        sov_buf_printf(err, "the image is not active");
        return -EINVAL;
    }
    if (store && strcmp(store, "s3") == 0 && s3)
        return image_s3_presign(s3, id, ttl_s, out);
    if (!store || strcmp(store, "file") != 0 || s3) {
        sov_buf_printf(err, "the image data lies in the '%s' store, which is not configured",
                       store ? store : "?");
        return -ENOENT;
    }
    if (strncmp(base, "http://", 7) != 0) {
        sov_buf_printf(err, "sov-block reads local images over http://, not %s", base);
        return -EPROTONOSUPPORT;
    }
    if ((r = link_sig(a, id, expires, sig)) < 0)
        return r;
    return sov_buf_printf(out, "%s/image/internal/%s?expires=%" PRId64 "&sig=%s", base, id, expires,
                          sig);
}

/* GET /image/internal/{id}?expires=&sig=: the data of an active image for the holder of a link
 * from image_source_url (Range works as on .../file). */
static void h_internal(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_GLANCE, API_NEED_NONE);
    if (!c)
        return;
    const char *id = api_param(c, "id"), *exp = api_query(c, "expires"), *sig = api_query(c, "sig");
    char want[65];
    json_t *doc = NULL;
    int64_t e = -1;
    if (exp && exp[0] && strlen(exp) < 16 && strspn(exp, "0123456789") == strlen(exp))
        e = strtoll(exp, NULL, 10);
    if (!id || !valid_uuid(id) || e < api_now_ms() / 1000 || !sig || strlen(sig) != 64 ||
        link_sig(c->api, id, e, want) < 0 || !sov_memeq_ct(want, sig, 64)) {
        api_fault(c, 403, NULL, "This link is not valid or has expired.");
        return;
    }
    if (api_store_get(c->api->store, KIND, id, &doc, NULL, 0) < 0 || !jstr(doc, "status") ||
        strcmp(jstr(doc, "status"), "active") != 0) {
        json_decref(doc);
        api_fault(c, 404, NULL, "No active image found with ID %s", id);
        return;
    }
    api_call_own(c, doc);
    image_data_download(c, doc);
}

int api_image_start(Api *a, SovBuf *err)
{
    return image_data_start(a, err);
}

void api_image_stop(Api *a)
{
    image_data_stop(a);
}

void api_image_routes(Api *a)
{
    static const struct {
        const char *method, *pattern;
        SovHttpHandler h;
        unsigned flags;
    } routes[] = {
        {"GET", "/image", h_versions_root, 0},
        {"GET", "/image/", h_versions_root, 0},
        {"GET", "/image/versions", h_versions, 0},
        {"GET", "/image/v2", h_versions, 0},
        {"GET", "/image/v2/", h_versions, 0},
        {"GET", "/image/v2/schemas/image", h_schema_image, 0},
        {"GET", "/image/v2/schemas/images", h_schema_images, 0},
        {"GET", "/image/v2/schemas/member", h_schema_member, 0},
        {"GET", "/image/v2/schemas/members", h_schema_members, 0},
        {"POST", "/image/v2/images", h_create, 0},
        {"GET", "/image/v2/images", h_list, 0},
        {"GET", "/image/v2/images/{id}", h_show, 0},
        {"PATCH", "/image/v2/images/{id}", h_update, 0},
        {"DELETE", "/image/v2/images/{id}", h_delete, 0},
        {"PUT", "/image/v2/images/{id}/file", h_upload, SOV_ROUTE_STREAM},
        {"GET", "/image/v2/images/{id}/file", h_download, 0},
        {"PUT", "/image/v2/images/{id}/tags/{tag}", h_tag_add, 0},
        {"DELETE", "/image/v2/images/{id}/tags/{tag}", h_tag_del, 0},
        {"POST", "/image/v2/images/{id}/actions/deactivate", h_deactivate, 0},
        {"POST", "/image/v2/images/{id}/actions/reactivate", h_reactivate, 0},
        {"POST", "/image/v2/images/{id}/members", h_member_add, 0},
        {"GET", "/image/v2/images/{id}/members", h_member_list, 0},
        {"GET", "/image/v2/images/{id}/members/{member}", h_member_show, 0},
        {"PUT", "/image/v2/images/{id}/members/{member}", h_member_update, 0},
        {"DELETE", "/image/v2/images/{id}/members/{member}", h_member_delete, 0},
        {"GET", "/image/internal/{id}", h_internal, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(routes); i++)
        sov_router_add(a->router, routes[i].method, routes[i].pattern, routes[i].flags, routes[i].h,
                       a);
}
