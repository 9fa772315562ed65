/* SPDX-License-Identifier: Apache-2.0 */
/* The management API of sov-block (HTTP JSON on core), for the control plane and operators:
 * volumes (create, clone, import from a URL (import.c), list, show, resize, delete), snapshots,
 * and export grants (which client may open which export over NBD), plus /healthz and /metrics.
 * Grants persist in <data_dir>/grants.json, rewritten atomically. Errors are {"error": {"code",
 * "title", "message"}}. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "sov/json.h"
#include "sov/log.h"

#define MAX_GRANTS 4096

/* ---- grants ---- */

static int grants_path(Block *b, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/grants.json", b->cfg.data_dir);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

static int grants_save(Block *b)
{
    char path[4096];
    json_t *arr = json_array();
    for (size_t i = 0; i < b->ngrants; i++) {
        BlockGrant *g = &b->grants[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "id", g->id, "volume", g->volume,
                                             "host", g->host, "token", g->token));
    }
    char *text = json_dumps(arr, JSON_INDENT(1));
    json_decref(arr);
    if (!text)
        return -ENOMEM;
    int r = grants_path(b, path, sizeof(path));
    if (r == 0)
        r = sov_write_file_atomic(path, text, strlen(text));
    free(text);
    return r;
}

int block_grants_load(Block *b, SovBuf *err)
{
    char path[4096];
    json_error_t je;
    if (grants_path(b, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    json_t *arr = json_load_file(path, 0, &je);
    if (!arr)
        return 0; /* none yet */
    if (!json_is_array(arr) || json_array_size(arr) > MAX_GRANTS) {
        json_decref(arr);
        sov_buf_printf(err, "%s is not a list of grants", path);
        return -EINVAL;
    }
    b->grants = calloc(json_array_size(arr) + 1, sizeof(*b->grants));
    if (!b->grants) {
        json_decref(arr);
        return -ENOMEM;
    }
    size_t i;
    json_t *g;
    json_array_foreach(arr, i, g)
    {
        const char *id = json_string_value(json_object_get(g, "id"));
        const char *vol = json_string_value(json_object_get(g, "volume"));
        const char *host = json_string_value(json_object_get(g, "host"));
        const char *token = json_string_value(json_object_get(g, "token"));
        if (!id || !vol || !host || !token)
            continue;
        BlockGrant *o = &b->grants[b->ngrants++];
        snprintf(o->id, sizeof(o->id), "%.32s", id);
        snprintf(o->volume, sizeof(o->volume), "%.63s", vol);
        snprintf(o->host, sizeof(o->host), "%.63s", host);
        snprintf(o->token, sizeof(o->token), "%.64s", token);
    }
    json_decref(arr);
    return 0;
}

void block_grants_free(Block *b)
{
    if (b->grants)
        explicit_bzero(b->grants, b->ngrants * sizeof(*b->grants));
    free(b->grants);
    b->grants = NULL;
    b->ngrants = 0;
}

/* "ip:port" or "[v6]:port" -> "ip" */
static void peer_host(const char *peer, char *out, size_t cap)
{
    const char *end = strrchr(peer, ':');
    size_t n = end ? (size_t)(end - peer) : strlen(peer);
    if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
        peer++;
        n -= 2;
    }
    snprintf(out, cap, "%.*s", (int)SOV_MIN(n, cap - 1), peer);
}

bool block_grant_allows(Block *b, const char *export_name, const NbdClientInfo *client,
                        char volume[VOL_NAME_MAX + 1])
{
    const char *slash = strchr(export_name, '/');
    size_t vl = slash ? (size_t)(slash - export_name) : strlen(export_name);
    volume[0] = '\0';
    if (vl == 0 || vl > VOL_NAME_MAX)
        return false;
    memcpy(volume, export_name, vl);
    volume[vl] = '\0';
    bool is_unix = strcmp(client->peer, "unix") == 0;
    if (!slash && is_unix && b->cfg.unix_open)
        return true;
    char host[64];
    peer_host(client->peer, host, sizeof(host));
    for (size_t i = 0; i < b->ngrants; i++) {
        BlockGrant *g = &b->grants[i];
        if (strcmp(g->volume, volume) != 0)
            continue;
        if (slash) {
            size_t tl = strlen(slash + 1);
            if (g->token[0] && tl == strlen(g->token) && sov_memeq_ct(g->token, slash + 1, tl))
                return true;
        } else if (!is_unix && g->host[0] && strcmp(g->host, host) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- HTTP helpers ---- */

static void reply_json(SovHttpReq *req, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!text) {
        sov_http_respond_error(req, 500, "out of memory");
        return;
    }
    sov_http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

static void reply_error(SovHttpReq *req, int status, const char *fmt, ...) _printf_(3, 4);
static void reply_error(SovHttpReq *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(req, status,
               json_pack("{s:{s:i,s:s,s:s}}", "error", "code", status, "title",
                         sov_http_status_reason(status), "message", msg));
}

static int errno_status(int r)
{
    switch (r) {
    case -ENOENT:
        return 404;
    case -EEXIST:
    case -EBUSY:
    case -ENOTEMPTY:
        return 409;
    case -EINVAL:
    case -ENOKEY:
    case -ENAMETOOLONG:
        return 400;
    case -ENOSPC:
        return 507;
    case -EAGAIN:
        return 503;
    default:
        return 500;
    }
}

static bool authorized(Block *b, SovHttpReq *req)
{
    if (!b->cfg.api_token[0])
        return true;
    SovStr h = sov_http_req_header(req, "authorization");
    size_t tl = strlen(b->cfg.api_token);
    if (h.ptr && h.len == 7 + tl && strncasecmp(h.ptr, "Bearer ", 7) == 0 &&
        sov_memeq_ct(h.ptr + 7, b->cfg.api_token, tl))
        return true;
    reply_error(req, 401, "a valid bearer token is required");
    return false;
}

static bool name_param(SovHttpReq *req, char out[VOL_NAME_MAX + 1])
{
    SovStr n = sov_http_req_param(req, "name");
    if (!n.ptr || n.len == 0 || n.len > VOL_NAME_MAX || memchr(n.ptr, '%', n.len)) {
        reply_error(req, 404, "no such volume");
        return false;
    }
    memcpy(out, n.ptr, n.len);
    out[n.len] = '\0';
    return true;
}

/* A volume whose import has not completed holds partial data: no snapshots, resizes or grants. */
static bool not_importing(Block *b, SovHttpReq *req, const char *name)
{
    if (!block_import_busy(b, name))
        return true;
    reply_error(req, 409, "volume %s is being imported (or its import failed)", name);
    return false;
}

static json_t *volume_json(Block *b, const VolInfo *vi)
{
    char date[32], uri[512];
    time_t t = (time_t)(vi->created_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o =
        json_pack("{s:s,s:I,s:b,s:b,s:s,s:I,s:s}", "name", vi->name, "size", (json_int_t)vi->size,
                  "encrypted", vi->encrypted, "snapshot", vi->is_snapshot, "origin", vi->origin,
                  "allocated", (json_int_t)vi->allocated, "created_at", date);
    block_import_describe(b, vi->name, o);
    if (strcmp(b->cfg.nbd_socket, "off") != 0) {
        snprintf(uri, sizeof(uri), "nbd+unix:///%s?socket=%s", vi->name, b->cfg.nbd_socket);
        json_object_set_new(o, "uri_unix", json_string(uri));
    }
    if (b->cfg.nbd_listen[0]) {
        char host[256];
        int port;
        if (sov_parse_hostport(b->cfg.nbd_listen, host, sizeof(host), &port) == 0) {
            snprintf(uri, sizeof(uri), "nbd://%s:%d/%s", host, b->nbd_port, vi->name);
            json_object_set_new(o, "uri_tcp", json_string(uri));
        }
    }
    return o;
}

static json_t *body_object(SovHttpReq *req, const char *const *allowed)
{
    SovBuf err = SOV_BUF_INIT;
    json_t *o = NULL;
    if (sov_json_parse_object(sov_http_req_body(req), 64 * 1024, &o, &err) < 0 ||
        (allowed && sov_json_check_keys(o, allowed, &err) < 0)) {
        reply_error(req, 400, "%s", err.len ? err.ptr : "the body must be a JSON object");
        json_decref(o);
        o = NULL;
    }
    sov_buf_release(&err);
    return o;
}

/* ---- handlers ---- */

static void h_list(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    VolInfo *all;
    size_t n;
    if (!authorized(b, req))
        return;
    int r = vol_list(b->store, &all, &n);
    if (r < 0) {
        reply_error(req, 500, "cannot list volumes");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, volume_json(b, &all[i]));
    free(all);
    reply_json(req, 200, json_pack("{s:o}", "volumes", arr));
}

static void h_create(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    static const char *const keys[] = {"name",       "size", "encrypted", "source_snapshot",
                                       "source_url", NULL};
    SovBuf err = SOV_BUF_INIT;
    const char *name = NULL, *source = NULL, *url = NULL;
    int64_t size = 0;
    bool encrypted = false;
    VolInfo vi;
    int r;

    if (!authorized(b, req))
        return;
    json_t *o = body_object(req, keys);
    if (!o)
        return;
    if (sov_json_get_string(o, "name", true, VOL_NAME_MAX, &name, &err) < 0 ||
        sov_json_get_string(o, "source_snapshot", false, VOL_NAME_MAX, &source, &err) < 0 ||
        sov_json_get_string(o, "source_url", false, 4096, &url, &err) < 0 ||
        sov_json_get_int(o, "size", !source, 1, (int64_t)VOL_MAX_SIZE, &size, &err) < 0 ||
        sov_json_get_bool(o, "encrypted", false, &encrypted, &err) < 0) {
        reply_error(req, 400, "%s", err.ptr);
        goto out;
    }
    if (source && url) {
        reply_error(req, 400, "source_snapshot and source_url exclude each other");
        goto out;
    }
    if (url) {
        r = block_import_start(b, name, (uint64_t)size, encrypted, url, &err);
    } else if (source) {
        r = vol_clone(b->store, source, name, &err);
        /* A clone may be asked to be larger than its snapshot right away. */
        if (r == 0 && size > 0 && vol_info(b->store, name, &vi) == 0 && (uint64_t)size > vi.size)
            r = vol_resize(b->store, name, (uint64_t)size, &err);
    } else {
        r = vol_create(b->store, name, (uint64_t)size, encrypted, &err);
    }
    if (r < 0) {
        reply_error(req, errno_status(r), "%s", err.len ? err.ptr : strerror(-r));
        goto out;
    }
    log_info("volume %s created%s%s%s", name, source ? " from " : "", source ? source : "",
             url ? " for an import" : "");
    /* An import answers at once; the listing shows its progress until the data is durable. */
    if (vol_info(b->store, name, &vi) == 0)
        reply_json(req, url ? 202 : 201, json_pack("{s:o}", "volume", volume_json(b, &vi)));
    else
        reply_error(req, 500, "created but cannot be read back");
out:
    json_decref(o);
    sov_buf_release(&err);
}

static void h_show(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    char name[VOL_NAME_MAX + 1];
    VolInfo vi;
    if (!authorized(b, req) || !name_param(req, name))
        return;
    if (vol_info(b->store, name, &vi) < 0) {
        reply_error(req, 404, "no volume or snapshot named %s", name);
        return;
    }
    reply_json(req, 200, json_pack("{s:o}", "volume", volume_json(b, &vi)));
}

static void h_delete(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    char name[VOL_NAME_MAX + 1];
    SovBuf err = SOV_BUF_INIT;
    if (!authorized(b, req) || !name_param(req, name))
        return;
    int r = block_import_stop(b, name);
    if (r < 0) {
        reply_error(req, 409, "volume %s is finishing its import; try again", name);
        return;
    }
    r = vol_delete(b->store, name, &err);
    if (r == 0 || r == -ENOENT)
        block_import_forget(b, name);
    if (r < 0) {
        reply_error(req, errno_status(r), "%s", err.len ? err.ptr : strerror(-r));
    } else {
        /* grants of a deleted export go with it */
        size_t k = 0;
        for (size_t i = 0; i < b->ngrants; i++)
            if (strcmp(b->grants[i].volume, name) != 0)
                b->grants[k++] = b->grants[i];
        if (k != b->ngrants) {
            b->ngrants = k;
            grants_save(b);
        }
        log_info("volume %s deleted", name);
        sov_http_respond(req, 204, NULL, NULL, 0);
    }
    sov_buf_release(&err);
}

static void h_resize(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    static const char *const keys[] = {"size", NULL};
    char name[VOL_NAME_MAX + 1];
    SovBuf err = SOV_BUF_INIT;
    int64_t size;
    VolInfo vi;
    if (!authorized(b, req) || !name_param(req, name) || !not_importing(b, req, name))
        return;
    json_t *o = body_object(req, keys);
    if (!o)
        return;
    if (sov_json_get_int(o, "size", true, 1, (int64_t)VOL_MAX_SIZE, &size, &err) < 0) {
        reply_error(req, 400, "%s", err.ptr);
    } else {
        int r = vol_resize(b->store, name, (uint64_t)size, &err);
        if (r < 0)
            reply_error(req, errno_status(r), "%s", err.len ? err.ptr : strerror(-r));
        else if (vol_info(b->store, name, &vi) == 0)
            reply_json(req, 200, json_pack("{s:o}", "volume", volume_json(b, &vi)));
        else
            reply_error(req, 500, "resized but cannot be read back");
    }
    json_decref(o);
    sov_buf_release(&err);
}

static void h_snapshot(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    static const char *const keys[] = {"name", NULL};
    char name[VOL_NAME_MAX + 1];
    SovBuf err = SOV_BUF_INIT;
    const char *snap;
    VolInfo vi;
    if (!authorized(b, req) || !name_param(req, name) || !not_importing(b, req, name))
        return;
    json_t *o = body_object(req, keys);
    if (!o)
        return;
    if (sov_json_get_string(o, "name", true, VOL_NAME_MAX, &snap, &err) < 0) {
        reply_error(req, 400, "%s", err.ptr);
    } else {
        int r = vol_snapshot(b->store, name, snap, &err);
        if (r < 0)
            reply_error(req, errno_status(r), "%s", err.len ? err.ptr : strerror(-r));
        else if (vol_info(b->store, snap, &vi) == 0)
            reply_json(req, 201, json_pack("{s:o}", "snapshot", volume_json(b, &vi)));
        else
            reply_error(req, 500, "snapshot taken but cannot be read back");
    }
    json_decref(o);
    sov_buf_release(&err);
}

static json_t *grant_json(Block *b, const BlockGrant *g)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", g->id, "volume", g->volume, "host", g->host);
    if (g->token[0]) {
        char exp[VOL_NAME_MAX + 70];
        snprintf(exp, sizeof(exp), "%s/%s", g->volume, g->token);
        json_object_set_new(o, "export", json_string(exp));
    } else {
        json_object_set_new(o, "export", json_string(g->volume));
    }
    return o;
}

static void h_grant(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    static const char *const keys[] = {"host", "token", NULL};
    char name[VOL_NAME_MAX + 1];
    SovBuf err = SOV_BUF_INIT;
    const char *host = NULL;
    bool want_token = false;
    VolInfo vi;
    if (!authorized(b, req) || !name_param(req, name) || !not_importing(b, req, name))
        return;
    json_t *o = body_object(req, keys);
    if (!o)
        return;
    if (sov_json_get_string(o, "host", false, 63, &host, &err) < 0 ||
        sov_json_get_bool(o, "token", false, &want_token, &err) < 0) {
        reply_error(req, 400, "%s", err.ptr);
        goto out;
    }
    if (!host && !want_token) {
        reply_error(req, 400,
                    "a grant names a client \"host\" (IP address) or asks for a \"token\"");
        goto out;
    }
    if (host && (!host[0] || strspn(host, "0123456789abcdefABCDEF.:") != strlen(host))) {
        reply_error(req, 400, "\"host\" must be an IP address");
        goto out;
    }
    if (vol_info(b->store, name, &vi) < 0) {
        reply_error(req, 404, "no volume or snapshot named %s", name);
        goto out;
    }
    if (b->ngrants >= MAX_GRANTS) {
        reply_error(req, 409, "too many grants");
        goto out;
    }
    BlockGrant *g = realloc(b->grants, (b->ngrants + 1) * sizeof(*g));
    if (!g) {
        reply_error(req, 500, "out of memory");
        goto out;
    }
    b->grants = g;
    g = &b->grants[b->ngrants];
    memset(g, 0, sizeof(*g));
    uint8_t rnd[32];
    sov_random_bytes(rnd, 16);
    sov_hex_encode(rnd, 16, g->id);
    snprintf(g->volume, sizeof(g->volume), "%s", name);
    if (host)
        snprintf(g->host, sizeof(g->host), "%s", host);
    if (want_token) {
        sov_random_bytes(rnd, 32);
        sov_hex_encode(rnd, 32, g->token);
    }
    b->ngrants++;
    if (grants_save(b) < 0) {
        b->ngrants--;
        reply_error(req, 500, "cannot save the grant");
        goto out;
    }
    log_info("export %s granted to %s", name, host ? host : "a token holder");
    reply_json(req, 201, json_pack("{s:o}", "grant", grant_json(b, g)));
out:
    json_decref(o);
    sov_buf_release(&err);
}

static void h_grants(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    if (!authorized(b, req))
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < b->ngrants; i++)
        json_array_append_new(arr, grant_json(b, &b->grants[i]));
    reply_json(req, 200, json_pack("{s:o}", "grants", arr));
}

static void h_revoke(SovHttpReq *req, void *ud)
{
    Block *b = ud;
    SovStr id = sov_http_req_param(req, "id");
    if (!authorized(b, req))
        return;
    for (size_t i = 0; i < b->ngrants; i++) {
        if (sov_str_eq(sov_str(b->grants[i].id), id)) {
            BlockGrant saved = b->grants[i];
            memmove(&b->grants[i], &b->grants[i + 1], (b->ngrants - i - 1) * sizeof(*b->grants));
            b->ngrants--;
            if (grants_save(b) < 0) {
                memmove(&b->grants[i + 1], &b->grants[i], (b->ngrants - i) * sizeof(*b->grants));
                b->grants[i] = saved;
                b->ngrants++;
                reply_error(req, 500, "cannot save the grants");
                return;
            }
            sov_http_respond(req, 204, NULL, NULL, 0);
            return;
        }
    }
    reply_error(req, 404, "no such grant");
}

static void api_error_page(SovHttpReq *req, int status, const char *message, void *ud)
{
    reply_error(req, status, "%s", message);
}

int block_api_start(Block *b, int fd)
{
    SovHttpServerConfig cfg = {0};
    b->router = sov_router_new();
    if (!b->router)
        return -ENOMEM;
    int r = block_imports_recover(b);
    if (r < 0)
        log_error_errno(r, "cannot recover unfinished imports");
    sov_router_add_ops(b->router);
    sov_router_add(b->router, "GET", "/v1/volumes", 0, h_list, b);
    sov_router_add(b->router, "POST", "/v1/volumes", 0, h_create, b);
    sov_router_add(b->router, "GET", "/v1/volumes/{name}", 0, h_show, b);
    sov_router_add(b->router, "DELETE", "/v1/volumes/{name}", 0, h_delete, b);
    sov_router_add(b->router, "POST", "/v1/volumes/{name}/resize", 0, h_resize, b);
    sov_router_add(b->router, "POST", "/v1/volumes/{name}/snapshots", 0, h_snapshot, b);
    sov_router_add(b->router, "POST", "/v1/volumes/{name}/grants", 0, h_grant, b);
    sov_router_add(b->router, "GET", "/v1/grants", 0, h_grants, b);
    sov_router_add(b->router, "DELETE", "/v1/grants/{id}", 0, h_revoke, b);
    cfg.limits = b->http_limits;
    cfg.router = b->router;
    cfg.svc = "block";
    cfg.access_log = b->cfg.access_log;
    cfg.error_page = api_error_page;
    b->http = sov_http_server_new(b->loop, &cfg);
    if (!b->http)
        return -ENOMEM;
    return sov_http_server_listen_fd(b->http, fd);
}

static void api_done(SovHttpServer *s, void *ud)
{
}

void block_api_stop(Block *b)
{
    block_imports_stop(b);
    if (b->http)
        sov_http_server_shutdown(b->http, api_done, b);
}

void block_api_free(Block *b)
{
    block_imports_free(b);
    sov_http_server_free(b->http);
    b->http = NULL;
    sov_router_free(b->router);
    b->router = NULL;
}
