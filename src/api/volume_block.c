/* SPDX-License-Identifier: Apache-2.0 */
/* The realisation of sov-api's volumes in sov-block: a level-triggered reconciler. On every
 * kick (after a change) and every few seconds while something is in transition (at least every
 * minute anyway) it lists sov-block's volumes on its management API, compares them with the
 * volume and snapshot documents and converges: creates, clones, resizes, snapshots and deletes
 * there, then moves the documents out of creating, extending and deleting. A volume from an
 * image is created with a source URL that sov-block copies the image from (image_source_url:
 * presigned in sov-s3 or a signed link to this API); it stays downloading while sov-block
 * reports the import running, and turns available, or error with sov-block's reason. If
 * sov-block loses a half-copied volume (it deletes them when it restarts), the copy starts
 * again. One pass at a time, asynchronous HTTP only; while sov-block is down documents keep
 * their state (logged once) and the next pass retries, so restarting sov-api or sov-block
 * converges again.
 *
 * Names in sov-block: "vol-<volume id>", "snap-<snapshot id>" and "clone-<volume id>" (the
 * temporary snapshot a volume cloned from another volume starts from). Only names of these
 * shapes are ours; everything else in sov-block is left alone. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_s3.h"
#include "sov/json.h"
#include "sov/log.h"
#include "volume.h"

#define TICK_MS          3000  /* period while something is in transition */
#define COPY_TICK_MS     1000  /* period while sov-block copies an image into a volume */
#define FULL_PASS_MS     60000 /* a full comparison at least this often */
#define BLOCK_TIMEOUT_MS 10000
#define BLOCK_LIST_MAX   (64u << 20)
/* How long sov-block may use an image's link: an hour, plus a second per 4 MiB of image (each
 * ranged GET must start before the expiry), at most the 7 days SigV4 allows. */
#define IMAGE_LINK_S    3600
#define IMAGE_LINK_RATE (4 << 20)
#define IMAGE_LINK_MAX  604800

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool jeq(const json_t *o, const char *key, const char *val)
{
    const char *s = jstr(o, key);
    return s && strcmp(s, val) == 0;
}

/* One per daemon (a->block). refs: one for the timer handle (dropped when it is closed) and
 * one per request to sov-block in flight, so that a callback arriving after stop finds it. At
 * most one pass runs at a time; a kick during a pass sets again. */
typedef struct Recon {
    Api *a;
    uv_timer_t timer;
    int refs;
    bool enabled, busy, again, stopping, down, listing, prev_ok;
    int64_t last_full_ms;
    char host[256];
    int port;
    char auth[SOV_CONF_STR_MAX + 32]; /* "Authorization: Bearer ..." or "" */
    json_t *have;                     /* sov-block's volumes and snapshots of this pass, by name */
    json_t *ops;                      /* this pass's requests, run one after the other */
    size_t next;
    json_t *op; /* the one in flight */
    SovBuf resp;
    int status;
} Recon;

static void recon_put(Recon *R)
{
    if (--R->refs > 0)
        return;
    json_decref(R->have);
    json_decref(R->ops);
    sov_buf_release(&R->resp);
    explicit_bzero(R->auth, sizeof(R->auth));
    free(R);
}

static void pass_start(Recon *R);
static void run_next(Recon *R);

static void rc_headers(SovHttpClientReq *q, int status, void *ud)
{
    ((Recon *)ud)->status = status;
}

static int rc_body(SovHttpClientReq *q, const char *p, size_t n, void *ud)
{
    return sov_buf_append(&((Recon *)ud)->resp, p, n);
}

static void listed(Recon *R, int err);
static void op_done(Recon *R, int err);

static void rc_done(SovHttpClientReq *q, int err, void *ud)
{
    Recon *R = ud;
    if (!R->stopping) {
        if (R->listing)
            listed(R, err);
        else
            op_done(R, err);
    }
    recon_put(R);
}

/* Sends one request; the answer arrives in listed() or op_done(), from the loop (never before
 * this returns). */
static int block_send(Recon *R, const char *method, const char *path, json_t *body)
{
    static const SovHttpClientCallbacks cbs = {rc_headers, rc_body, rc_done};
    const char *hdrs[3];
    size_t n = 0;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (R->auth[0])
        hdrs[n++] = R->auth;
    if (text)
        hdrs[n++] = "Content-Type: application/json";
    hdrs[n] = NULL;
    sov_buf_reset(&R->resp);
    R->status = 0;
    R->refs++;
    int r = sov_http_client_request(R->a->loop, R->host, R->port, method, path, hdrs, sov_str(text),
                                    BLOCK_TIMEOUT_MS, &cbs, R);
    free(text);
    if (r < 0)
        R->refs--;
    return r;
}

static void recon_down(Recon *R, const char *why)
{
    if (!R->down)
        log_warn("sov-block at %s:%d unavailable (%s); volumes wait in their current state",
                 R->host, R->port, why);
    R->down = true;
}

static void on_tick(uv_timer_t *t);

static void pass_end(Recon *R)
{
    ApiListQuery q = {.kind = "volume", .status = "downloading"};
    R->busy = false;
    R->op = NULL;
    json_decref(R->have);
    json_decref(R->ops);
    R->have = R->ops = NULL;
    /* A copy ends on sov-block's side; look more often while one runs. */
    uint64_t period = !R->stopping && api_store_count(R->a->store, &q) > 0 ? COPY_TICK_MS : TICK_MS;
    if (!R->stopping && uv_timer_get_repeat(&R->timer) != period)
        uv_timer_start(&R->timer, on_tick, period, period);
    if (R->again && !R->stopping) {
        R->again = false;
        pass_start(R);
    }
}

static void pass_start(Recon *R)
{
    if (!R->enabled || R->stopping)
        return;
    if (R->busy) {
        R->again = true;
        return;
    }
    R->busy = true;
    R->again = false;
    R->listing = true;
    R->last_full_ms = api_now_ms();
    if (block_send(R, "GET", "/v1/volumes", NULL) < 0) {
        recon_down(R, "out of memory");
        pass_end(R);
    }
}

static void add_op(Recon *R, const char *step, const char *method, const char *path, json_t *body,
                   const char *kind, const char *id, const char *want, bool chain)
{
    json_t *op =
        json_pack("{s:s,s:s,s:s,s:b}", "step", step, "m", method, "p", path, "chain", chain);
    if (!op) {
        json_decref(body);
        return;
    }
    if (body)
        json_object_set_new(op, "b", body);
    if (kind)
        json_object_set_new(op, "kind", json_string(kind));
    if (id)
        json_object_set_new(op, "id", json_string(id));
    if (want)
        json_object_set_new(op, "want", json_string(want));
    json_array_append_new(R->ops, op);
}

/* A document reached its realised state: records the export sov-block reported. */
static void mark_ready(Api *a, const char *kind, json_t *doc, const json_t *info,
                       const char *status)
{
    if (strcmp(kind, "volume") == 0 && info) {
        const char *tcp = jstr(info, "uri_tcp"), *unx = jstr(info, "uri_unix");
        json_t *exp = json_pack("{s:s?,s:s?,s:s?,s:s?}", "name", jstr(info, "name"), "uri",
                                tcp ? tcp : unx, "uri_tcp", tcp, "uri_unix", unx);
        json_object_set_new(doc, "_export", exp ? exp : json_object());
        json_object_set_new(doc, "_block_name", json_string(jstr(info, "name")));
    }
    if (strcmp(kind, "snapshot") == 0)
        json_object_set_new(doc, "os-extended-snapshot-attributes:progress", json_string("100%"));
    json_object_del(doc, "_error");
    volume_doc_status(a, kind, doc, status);
}

static void mark_error(Api *a, const char *kind, json_t *doc, const char *status, const char *why)
{
    log_warn("%s %s: %s", kind, jstr(doc, "id"), why);
    json_object_set_new(doc, "_error", json_string(why));
    volume_doc_status(a, kind, doc, status);
}

/* A volume sov-block has (info): available once complete, downloading while its import runs,
 * error when the import failed. */
static void settle(Api *a, json_t *v, const json_t *info)
{
    const json_t *imp = json_object_get(info, "import");
    char why[400];
    if (!imp) {
        mark_ready(a, "volume", v, info, volume_attach_pending(v) ? "in-use" : "available");
    } else if (jeq(imp, "state", "failed")) {
        snprintf(why, sizeof(why), "copying the image failed: %s",
                 jstr(imp, "error") ? jstr(imp, "error") : "no reason given");
        mark_error(a, "volume", v, "error", why);
    } else if (!jeq(v, "status", "downloading")) {
        mark_ready(a, "volume", v, info, "downloading");
    }
}

/* Puts the URL of the volume's image into sov-block's create body; marks the volume in error
 * and returns false when there is none. */
static bool add_source(Recon *R, json_t *v, const char *image_id, json_t *body)
{
    SovBuf url = SOV_BUF_INIT, err = SOV_BUF_INIT;
    json_t *img = NULL;
    char why[400];
    int r = api_store_get(R->a->store, "image", image_id, &img, NULL, 0);
    if (r == 0) {
        int64_t ttl =
            IMAGE_LINK_S + json_integer_value(json_object_get(img, "size")) / IMAGE_LINK_RATE;
        r = image_source_url(R->a, img, (unsigned)SOV_MIN(ttl, IMAGE_LINK_MAX), &url, &err);
    } else {
        sov_buf_printf(&err, "the image is gone");
    }
    bool ok = r >= 0 && url.ptr;
    if (!ok) {
        snprintf(why, sizeof(why), "cannot copy image %s: %s", image_id,
                 err.ptr ? err.ptr : strerror(r < 0 ? -r : ENOMEM));
        mark_error(R->a, "volume", v, "error", why);
    } else {
        json_object_set_new(body, "source_url", json_string(url.ptr));
    }
    json_decref(img);
    sov_buf_release(&err);
    sov_buf_release(&url);
    return ok;
}

static int64_t block_size(const json_t *info)
{
    return (int64_t)json_integer_value(json_object_get(info, "size"));
}

/* Compares one volume document with sov-block and queues what converges it. */
static void plan_volume(Recon *R, json_t *v)
{
    Api *a = R->a;
    const char *id = jstr(v, "id"), *st = jstr(v, "status");
    char bn[64], src[64], path[160];
    snprintf(bn, sizeof(bn), "vol-%s", id);
    json_t *info = json_object_get(R->have, bn);
    int64_t want = json_integer_value(json_object_get(v, "size")) * VOLUME_GIB;
    if (!st)
        return;
    if (strcmp(st, "creating") == 0 || strcmp(st, "downloading") == 0) {
        if (info) {
            settle(a, v, info);
            return;
        }
        if (strcmp(st, "downloading") == 0) /* sov-block lost the partial copy: again */
            volume_doc_status(a, "volume", v, "creating");
        json_t *body = json_pack("{s:s,s:I}", "name", bn, "size", (json_int_t)want);
        const char *sid = jstr(v, "snapshot_id"), *vid = jstr(v, "source_volid");
        const char *image = jstr(v, "_image");
        if (sid) {
            snprintf(src, sizeof(src), "snap-%s", sid);
            if (!json_object_get(R->have, src)) {
                json_t *s = NULL;
                api_store_get(a->store, "snapshot", sid, &s, NULL, 0);
                if (!s || !jeq(s, "status", "creating"))
                    mark_error(a, "volume", v, "error", "the source snapshot is gone");
                json_decref(s);
                json_decref(body);
                return;
            }
            json_object_set_new(body, "source_snapshot", json_string(src));
        } else if (vid) {
            char tmp[64];
            snprintf(src, sizeof(src), "vol-%s", vid);
            snprintf(tmp, sizeof(tmp), "clone-%s", id);
            bool chained = !json_object_get(R->have, tmp);
            if (chained) {
                if (!json_object_get(R->have, src)) {
                    mark_error(a, "volume", v, "error", "the source volume is not in sov-block");
                    json_decref(body);
                    return;
                }
                snprintf(path, sizeof(path), "/v1/volumes/%s/snapshots", src);
                add_op(R, "clone_snap", "POST", path, json_pack("{s:s}", "name", tmp), "volume", id,
                       "creating", false);
            }
            json_object_set_new(body, "source_snapshot", json_string(tmp));
            add_op(R, "create", "POST", "/v1/volumes", body, "volume", id, "creating", chained);
            snprintf(path, sizeof(path), "/v1/volumes/%s", tmp);
            add_op(R, "drop", "DELETE", path, NULL, NULL, NULL, NULL, false);
            return;
        } else if (image && !add_source(R, v, image, body)) {
            json_decref(body);
            return;
        }
        if (!sid && json_is_true(json_object_get(v, "encrypted")))
            json_object_set_new(body, "encrypted", json_true());
        add_op(R, "create", "POST", "/v1/volumes", body, "volume", id, "creating", false);
    } else if (strcmp(st, "extending") == 0) {
        const char *after = jstr(v, "_after");
        if (!info) {
            mark_error(a, "volume", v, "error_extending", "the volume is not in sov-block");
        } else if (block_size(info) >= want) {
            json_t *keep = json_string(after ? after : "available");
            json_object_del(v, "_after");
            mark_ready(a, "volume", v, info, json_string_value(keep));
            json_decref(keep);
        } else {
            snprintf(path, sizeof(path), "/v1/volumes/%s/resize", bn);
            add_op(R, "resize", "POST", path, json_pack("{s:I}", "size", (json_int_t)want),
                   "volume", id, "extending", false);
        }
    } else if (strcmp(st, "deleting") == 0) {
        if (!info) {
            api_store_delete(a->store, "volume", id);
            return;
        }
        snprintf(path, sizeof(path), "/v1/volumes/%s", bn);
        add_op(R, "delete", "DELETE", path, NULL, "volume", id, "deleting", false);
    } else if (!strncmp(st, "error", 5)) {
        return; /* kept as it is until deleted or reset */
    } else if (!info) {
        mark_error(a, "volume", v, "error", "sov-block no longer has this volume");
    } else if (block_size(info) < want) {
        snprintf(path, sizeof(path), "/v1/volumes/%s/resize", bn);
        add_op(R, "resize", "POST", path, json_pack("{s:I}", "size", (json_int_t)want), "volume",
               id, st, false);
    }
}

static void plan_snapshot(Recon *R, json_t *s)
{
    Api *a = R->a;
    const char *id = jstr(s, "id"), *st = jstr(s, "status");
    char bn[64], vbn[64], path[160];
    snprintf(bn, sizeof(bn), "snap-%s", id);
    snprintf(vbn, sizeof(vbn), "vol-%s", jstr(s, "volume_id"));
    json_t *info = json_object_get(R->have, bn);
    if (!st)
        return;
    if (strcmp(st, "creating") == 0) {
        if (info)
            mark_ready(a, "snapshot", s, info, "available");
        else if (!json_object_get(R->have, vbn))
            mark_error(a, "snapshot", s, "error", "its volume is not in sov-block");
        else {
            snprintf(path, sizeof(path), "/v1/volumes/%s/snapshots", vbn);
            add_op(R, "snap", "POST", path, json_pack("{s:s}", "name", bn), "snapshot", id,
                   "creating", false);
        }
    } else if (strcmp(st, "deleting") == 0) {
        if (!info) {
            api_store_delete(a->store, "snapshot", id);
            return;
        }
        snprintf(path, sizeof(path), "/v1/volumes/%s", bn);
        add_op(R, "delete", "DELETE", path, NULL, "snapshot", id, "deleting", false);
    } else if (strcmp(st, "available") == 0 && !info) {
        mark_error(a, "snapshot", s, "error", "sov-block no longer has this snapshot");
    }
}

/* Names of ours in sov-block that no document wants any more. */
static void plan_orphans(Recon *R)
{
    const char *name;
    json_t *info;
    json_object_foreach(R->have, name, info)
    {
        static const char *const pre[] = {"vol-", "snap-", "clone-"};
        const char *kind[] = {"volume", "snapshot", "volume"};
        for (size_t i = 0; i < ELEMENTSOF(pre); i++) {
            size_t pl = strlen(pre[i]);
            if (strncmp(name, pre[i], pl) != 0 || strlen(name + pl) != API_UUID_LEN ||
                !api_valid_id(sov_str(name + pl)))
                continue;
            json_t *doc = NULL;
            api_store_get(R->a->store, kind[i], name + pl, &doc, NULL, 0);
            bool orphan = !doc || (i == 2 && !jeq(doc, "status", "creating"));
            json_decref(doc);
            if (orphan) {
                char path[160];
                snprintf(path, sizeof(path), "/v1/volumes/%s", name);
                add_op(R, "drop", "DELETE", path, NULL, NULL, NULL, NULL, false);
            }
        }
    }
}

static void plan(Recon *R)
{
    json_t *arr = NULL, *d;
    size_t i;
    ApiListQuery q = {.kind = "volume"};
    if (api_store_list(R->a->store, &q, &arr) == 0)
        json_array_foreach(arr, i, d) plan_volume(R, d);
    json_decref(arr);
    arr = NULL;
    q.kind = "snapshot";
    if (api_store_list(R->a->store, &q, &arr) == 0)
        json_array_foreach(arr, i, d) plan_snapshot(R, d);
    json_decref(arr);
    plan_orphans(R);
}

static void listed(Recon *R, int err)
{
    json_t *doc = NULL, *arr, *v;
    size_t i;
    char why[64];
    R->listing = false;
    if (err == 0 && R->status == 200)
        doc = json_loadb(R->resp.ptr, R->resp.len, 0, NULL);
    arr = json_object_get(doc, "volumes");
    if (!json_is_array(arr)) {
        if (err < 0)
            snprintf(why, sizeof(why), "%s", strerror(-err));
        else
            snprintf(why, sizeof(why), "GET /v1/volumes answered %d", R->status);
        recon_down(R, why);
        json_decref(doc);
        pass_end(R);
        return;
    }
    if (R->down)
        log_info("sov-block at %s:%d is reachable again", R->host, R->port);
    R->down = false;
    R->have = json_object();
    R->ops = json_array();
    json_array_foreach(arr, i, v) if (jstr(v, "name")) json_object_set(R->have, jstr(v, "name"), v);
    json_decref(doc);
    api_store_begin(R->a->store);
    plan(R);
    api_store_commit(R->a->store);
    R->next = 0;
    R->prev_ok = true;
    run_next(R);
}

static void run_next(Recon *R)
{
    while (R->next < json_array_size(R->ops)) {
        json_t *op = json_array_get(R->ops, R->next++);
        const char *kind = jstr(op, "kind"), *want = jstr(op, "want");
        if (json_is_true(json_object_get(op, "chain")) && !R->prev_ok)
            continue;
        if (kind && want) { /* the document may have moved on since the plan */
            json_t *doc = NULL;
            api_store_get(R->a->store, kind, jstr(op, "id"), &doc, NULL, 0);
            bool still = doc && jeq(doc, "status", want);
            json_decref(doc);
            if (!still) {
                R->prev_ok = false;
                continue;
            }
        }
        R->op = op;
        if (block_send(R, jstr(op, "m"), jstr(op, "p"), json_object_get(op, "b")) < 0)
            break;
        return;
    }
    pass_end(R);
}

/* The answer to one queued request: moves its document on. 5xx and connection errors leave it
 * for the next pass; refusals (4xx, 507) are recorded as the document's error. */
static void op_done(Recon *R, int err)
{
    Api *a = R->a;
    json_t *op = R->op, *resp = NULL, *doc = NULL;
    const char *step = jstr(op, "step"), *kind = jstr(op, "kind"), *id = jstr(op, "id");
    int st = R->status;
    char why[300];
    if (err < 0) {
        snprintf(why, sizeof(why), "%s %s: %s", jstr(op, "m"), jstr(op, "p"), strerror(-err));
        recon_down(R, why);
        pass_end(R);
        return;
    }
    R->prev_ok = st >= 200 && st < 300;
    resp = json_loadb(R->resp.ptr, R->resp.len, 0, NULL);
    const char *msg = jstr(json_object_get(resp, "error"), "message");
    snprintf(why, sizeof(why), "sov-block refused (%d): %s", st, msg ? msg : "no reason given");
    if (kind && id)
        api_store_get(a->store, kind, id, &doc, NULL, 0);
    if (!doc || !jeq(doc, "status", jstr(op, "want"))) {
        /* moved on meanwhile (or a drop): the next pass looks again */
    } else if (strcmp(step, "delete") == 0) {
        if (st == 204 || st == 404)
            api_store_delete(a->store, kind, id);
        else
            log_warn("%s %s: sov-block did not delete it yet (%d): %s", kind, id, st,
                     msg ? msg : "");
    } else if (R->prev_ok && strcmp(step, "create") == 0 && strcmp(kind, "volume") == 0) {
        settle(a, doc, json_object_get(resp, "volume"));
    } else if (R->prev_ok && strcmp(step, "clone_snap") != 0) {
        json_t *info = json_object_get(resp, strcmp(step, "snap") == 0 ? "snapshot" : "volume");
        const char *after = jstr(doc, "_after");
        const char *next = strcmp(step, "resize") != 0                  ? "available"
                           : strcmp(jstr(op, "want"), "extending") != 0 ? jstr(op, "want")
                           : after                                      ? after
                                                                        : "available";
        json_t *keep = json_string(next);
        json_object_del(doc, "_after");
        mark_ready(a, kind, doc, info, json_string_value(keep));
        json_decref(keep);
    } else if (st == 409 && strcmp(step, "clone_snap") == 0) {
        R->prev_ok = true; /* left by an earlier pass */
    } else if (st == 409 && strcmp(step, "create") == 0) {
        /* the name exists already: the next listing shows it */
    } else if (!R->prev_ok && (st < 500 || st == 507)) {
        mark_error(a, kind, doc, strcmp(step, "resize") == 0 ? "error_extending" : "error", why);
    } else if (!R->prev_ok) {
        log_warn("%s %s: %s; retried later", kind, id, why);
    }
    json_decref(doc);
    json_decref(resp);
    run_next(R);
}

static bool in_transition(Api *a)
{
    static const char *const kinds[] = {"volume", "snapshot"};
    static const char *const states[] = {"creating", "downloading", "extending", "deleting"};
    for (size_t k = 0; k < ELEMENTSOF(kinds); k++)
        for (size_t s = 0; s < ELEMENTSOF(states); s++) {
            ApiListQuery q = {.kind = kinds[k], .status = states[s]};
            if (api_store_count(a->store, &q) > 0)
                return true;
        }
    return false;
}

static void on_tick(uv_timer_t *t)
{
    Recon *R = t->data;
    if (in_transition(R->a) || api_now_ms() - R->last_full_ms >= FULL_PASS_MS)
        pass_start(R);
}

/* Without sov-block ([block] url empty) nothing is realised: volumes stay 'creating' (they
 * never become available, so neither extends nor snapshots start), and deletions complete at
 * once because nothing exists that could be deleted. */
static void offline_pass(Api *a)
{
    static const char *const kinds[] = {"snapshot", "volume"};
    for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
        ApiListQuery q = {.kind = kinds[k], .status = "deleting"};
        json_t *arr = NULL, *d;
        size_t i;
        if (api_store_list(a->store, &q, &arr) == 0)
            json_array_foreach(arr, i, d) api_store_delete(a->store, kinds[k], jstr(d, "id"));
        json_decref(arr);
    }
}

void api_block_kick(Api *a)
{
    Recon *R = a->block;
    if (!R)
        return;
    if (R->enabled)
        pass_start(R);
    else
        offline_pass(a);
}

/* "http://HOST:PORT" with an optional trailing slash. */
static int parse_block_url(Recon *R, const char *url, SovBuf *err)
{
    const char *p = url + 7, *colon;
    char *end;
    if (strncmp(url, "http://", 7) != 0 || !(colon = strrchr(p, ':')) || colon == p ||
        (size_t)(colon - p) >= sizeof(R->host))
        goto bad;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end && strcmp(end, "/") != 0) || port < 1 || port > 65535)
        goto bad;
    memcpy(R->host, p, (size_t)(colon - p));
    R->host[colon - p] = '\0';
    if (R->host[0] == '[' && R->host[strlen(R->host) - 1] == ']') {
        memmove(R->host, R->host + 1, strlen(R->host) - 2);
        R->host[strlen(R->host) - 2] = '\0';
    }
    R->port = (int)port;
    return 0;
bad:
    sov_buf_printf(err, "[block] url must be http://HOST:PORT, not '%s'", url);
    return -EINVAL;
}

static void on_timer_closed(uv_handle_t *h)
{
    recon_put(h->data);
}

int volume_block_start(Api *a, SovBuf *err)
{
    int r;
    Recon *R = calloc(1, sizeof(*R));
    if (!R)
        return -ENOMEM;
    R->a = a;
    R->refs = 1;
    sov_buf_init(&R->resp, BLOCK_LIST_MAX);
    R->enabled = a->cfg.block_url[0] != '\0';
    if (R->enabled && (r = parse_block_url(R, a->cfg.block_url, err)) < 0) {
        free(R);
        return r;
    }
    if (a->cfg.block_token[0])
        snprintf(R->auth, sizeof(R->auth), "Authorization: Bearer %s", a->cfg.block_token);
    uv_timer_init(a->loop, &R->timer);
    R->timer.data = R;
    uv_timer_start(&R->timer, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&R->timer);
    a->block = R;
    api_block_kick(a); /* converge what a previous run left */
    return 0;
}

void volume_block_stop(Api *a)
{
    Recon *R = a->block;
    if (!R)
        return;
    a->block = NULL;
    R->stopping = true;
    uv_timer_stop(&R->timer);
    uv_close((uv_handle_t *)&R->timer, on_timer_closed);
}

bool volume_block_up(Api *a)
{
    Recon *R = a->block;
    return R && R->enabled && !R->down;
}
