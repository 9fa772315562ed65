/* SPDX-License-Identifier: Apache-2.0 */
/* The compute API (Nova 2.1, microversion 2.1 only): servers under /compute/v2.1/servers:
 * create (validation, quotas, scheduling, block devices), list/detail with filters, show,
 * update, delete, actions, metadata and volume attachments. compute_action.c the actions and
 * attachments; compute_res.c the rest of /compute (key pairs, flavors, zones, quotas, limits,
 * versions).
 *
 * A server is one document of kind "server" in Nova's shape plus internal members ('_'
 * prefixed) the agent API reads: the desired state (_desired, _reboot, _resize, _migrate_to)
 * and what the agent needs to build the guest (_flavor, _image, _user_data, _key_public,
 * _networks, _bdm). The API writes intent; agents report observed state (status, power
 * state, addresses, console) into the same document. Status and task state shown to clients
 * are derived from the two, so a client never sees a task that has already finished. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "compute.h"
#include "sov/crypto.h"
#include "sov/json.h"
#include "sov/log.h"

#define USER_DATA_MAX 65535
#define BDM_MAX       16
#define NETS_MAX      16
#define LIST_MAX      1000

/* ---- small helpers ---- */

/* A reference may be an id or a URL ending in one ("http://.../flavors/ID"). */
const char *nova_ref_id(const char *ref)
{
    const char *slash = strrchr(ref, '/');
    return slash ? slash + 1 : ref;
}

static bool ip_ok(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "2026-01-02T03:04:05[.ffffff][Z|+00:00]" -> ms since the epoch; -1 when malformed. */
static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    int64_t off = 0;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        off = *p == '+' ? off : -off;
        p += 6;
    } else if (*p == 'Z')
        p++;
    if (*p)
        return -1;
    return ((int64_t)timegm(&tm) - off) * 1000;
}

/* ---- servers: state and representation ---- */

const char *nova_vm_state(const char *status)
{
    static const char *const map[][2] = {
        {"BUILD", "building"},   {"ACTIVE", "active"},         {"SHUTOFF", "stopped"},
        {"ERROR", "error"},      {"REBOOT", "active"},         {"RESIZE", "active"},
        {"MIGRATING", "active"}, {"VERIFY_RESIZE", "resized"}, {"DELETED", "deleted"},
    };
    for (size_t i = 0; status && i < ELEMENTSOF(map); i++)
        if (strcmp(status, map[i][0]) == 0)
            return map[i][1];
    return "error";
}

/* The task in flight, derived from the intent and the observed status (NULL: none). */
const char *nova_task_state(json_t *doc)
{
    const char *st = nova_str(doc, "status"), *want = nova_str(doc, "_desired");
    if (!st)
        return NULL;
    if (want && strcmp(want, "deleted") == 0)
        return "deleting";
    if (strcmp(st, "BUILD") == 0)
        return nova_str(doc, "OS-EXT-SRV-ATTR:host") ? "spawning" : "scheduling";
    if (strcmp(st, "REBOOT") == 0)
        return json_is_true(json_object_get(doc, "_reboot_hard")) ? "rebooting_hard" : "rebooting";
    if (strcmp(st, "RESIZE") == 0)
        return "resize_prep";
    if (strcmp(st, "MIGRATING") == 0)
        return "migrating";
    if (strcmp(st, "ACTIVE") == 0 && want && strcmp(want, "stopped") == 0)
        return "powering-off";
    if (strcmp(st, "SHUTOFF") == 0 && want && strcmp(want, "running") == 0)
        return "powering-on";
    return NULL;
}

/* Nova's hostId: SHA-224 of project and host, so tenants can tell co-located servers apart
 * without learning host names. */
static void host_id(const char *project, const char *host, char out[57])
{
    uint8_t md[28];
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    out[0] = '\0';
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha224(), NULL) &&
        EVP_DigestUpdate(ctx, project, strlen(project)) &&
        EVP_DigestUpdate(ctx, host, strlen(host)) && EVP_DigestFinal_ex(ctx, md, &len) &&
        len == sizeof(md))
        sov_hex_encode(md, sizeof(md), out);
    EVP_MD_CTX_free(ctx);
}

static json_t *bookmark(Api *a, const char *coll, const char *id)
{
    return json_pack("[{s:s,s:o}]", "rel", "bookmark", "href",
                     json_sprintf("%s/compute/%s/%s", api_public_url(a), coll, id ? id : ""));
}

/* The representation of a stored server document: a new object that shares the document's
 * public values and leaves the document as it is. */
static json_t *server_view(ApiCall *c, json_t *doc, bool detail)
{
    Api *a = c->api;
    const char *id = nova_str(doc, "id");
    if (!detail)
        return json_pack("{s:O,s:O,s:o}", "id", json_object_get(doc, "id"), "name",
                         json_object_get(doc, "name"), "links", nova_links(a, "servers", id));
    const char *status = nova_str(doc, "status"), *host = nova_str(doc, "OS-EXT-SRV-ATTR:host");
    const char *task = nova_task_state(doc), *key;
    bool error = status && strcmp(status, "ERROR") == 0;
    json_t *v = json_object(), *val;
    json_object_foreach(doc, key, val)
    {
        if (key[0] == '_' || (strcmp(key, "fault") == 0 && !error) ||
            strcmp(key, "updated_at") == 0 || strcmp(key, "power_state") == 0 ||
            (!c->auth.system_admin && strncmp(key, "OS-EXT-SRV-ATTR:", 16) == 0))
            continue;
        json_object_set(v, key, val);
    }
    char hid[57] = "";
    if (host && *host)
        host_id(nova_str(doc, "tenant_id") ? nova_str(doc, "tenant_id") : "", host, hid);
    json_object_set_new(v, "hostId", json_string(hid));
    json_object_set_new(v, "OS-EXT-STS:vm_state", json_string(nova_vm_state(status)));
    json_object_set_new(v, "OS-EXT-STS:task_state", task ? json_string(task) : json_null());
    json_t *ps = json_object_get(doc, "power_state"); /* agents may report it unprefixed */
    if (json_is_integer(ps))
        json_object_set(v, "OS-EXT-STS:power_state", ps);
    const char *fl = nova_str(json_object_get(doc, "flavor"), "id");
    const char *im = nova_str(json_object_get(doc, "image"), "id");
    json_object_set_new(
        v, "flavor",
        json_pack("{s:s,s:o}", "id", fl ? fl : "", "links", bookmark(a, "flavors", fl)));
    if (im)
        json_object_set_new(v, "image",
                            json_pack("{s:s,s:o}", "id", im, "links", bookmark(a, "images", im)));
    json_object_set_new(v, "links", nova_links(a, "servers", id));
    /* how to reach the guest's SSH when the host forwards a port to it (user-mode networking
     * of a single machine); with sov-net ports the addresses say it */
    json_t *ssh = json_object_get(doc, "_ssh");
    const char *sh = nova_str(ssh, "host");
    json_int_t sp = json_integer_value(json_object_get(ssh, "port"));
    if (sh && sp > 0 && sp < 65536) {
        char addr[300];
        snprintf(addr, sizeof(addr), "%s:%lld", sh, (long long)sp);
        json_object_set_new(v, "sov:ssh", json_string(addr));
    }
    return v;
}

int nova_server_save(Api *a, json_t *doc, const char *project)
{
    char now[32];
    api_time_iso(api_now_ms(), now);
    json_object_set_new(doc, "updated", json_string(now));
    const char *host = nova_str(doc, "OS-EXT-SRV-ATTR:host");
    ApiDocMeta m = {.kind = "server",
                    .id = nova_str(doc, "id"),
                    .project = project,
                    .name = nova_str(doc, "name"),
                    .status = nova_str(doc, "status"),
                    .host = host ? host : ""};
    return api_store_update(a->store, &m, doc);
}

json_t *nova_server_get(ApiCall *c, char project[API_ID_LEN + 1])
{
    const char *id = api_param(c, "id");
    json_t *doc = NULL;
    snprintf(c->target, sizeof(c->target), "%.127s", id ? id : "");
    if (!id || !api_valid_id(sov_str(id)) ||
        api_store_get(c->api->store, "server", id, &doc, project, API_ID_LEN + 1) < 0 ||
        !api_can_access(c, project)) {
        json_decref(doc);
        api_fault(c, 404, NULL, "Instance %s could not be found.", id ? id : "");
        return NULL;
    }
    return doc;
}

/* The host name Nova derives from a server's name, as one DNS label (its ports' dns_name, so
 * the subnet's DHCP server hands it to the guest and answers it): lower case, ' ', '_' and '.'
 * become '-', other characters go, no '-' at either end, at most 63 characters;
 * server-<id> when nothing is left. */
static void server_hostname(const char *name, const char *id, char out[64])
{
    size_t n = 0;
    for (const char *p = name ? name : ""; *p && n < 63; p++) {
        char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        if (ch == ' ' || ch == '_' || ch == '.')
            ch = '-';
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch == '-' && n > 0))
            out[n++] = ch;
    }
    while (n > 0 && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    if (n == 0)
        snprintf(out, 64, "server-%.36s", id);
}

/* As Nova has Neutron do: while the migration runs, binding:profile migrating_to names the
 * target (its sov-net makes the taps the incoming QEMU opens); at the cut-over the binding
 * moves there (the source's sov-net removes its taps). */
int api_compute_ports_migrating(Api *a, json_t *server, const char *to, const char *host)
{
    size_t i;
    json_t *b;
    int r = 0;
    json_array_foreach(json_object_get(server, "_networks"), i, b)
    {
        const char *port = nova_str(b, "port"), *sid = nova_str(server, "id");
        int pr = port && sid ? api_port_migration(a, port, sid, to, host) : 0;
        if (pr < 0 && pr != -ENOENT && r == 0)
            r = pr;
    }
    return r;
}

void api_compute_release_volumes(Api *a, const char *project, json_t *server)
{
    size_t i;
    json_t *b;
    const char *sid = nova_str(server, "id");
    bool any = false;
    json_array_foreach(json_object_get(server, "_bdm"), i, b)
    {
        const char *vol = nova_str(b, "volume_id");
        bool attached = json_is_true(json_object_get(b, "attached"));
        int r = 0;
        if (!vol || !(attached || json_is_true(json_object_get(b, "created"))))
            continue;
        if (attached && (r = api_volume_detach(a, project, vol, sid)) < 0)
            log_warn("volume %s of server %s not detached: %s", vol, sid, strerror(-r));
        if (json_is_true(json_object_get(b, "delete_on_termination")) &&
            (r = api_volume_delete_for(a, vol)) < 0)
            log_warn("volume %s of server %s not deleted: %s", vol, sid, strerror(-r));
        any = true;
    }
    if (any)
        api_block_kick(a);
    /* the ports Nova made for it go too; ports the user brought are only unbound */
    char hostname[64];
    if (nova_str(server, "_hostname"))
        snprintf(hostname, sizeof(hostname), "%s", nova_str(server, "_hostname"));
    else
        server_hostname(nova_str(server, "name"), sid, hostname);
    json_array_foreach(json_object_get(server, "_networks"), i, b)
    {
        const char *port = nova_str(b, "port");
        bool made = json_is_true(json_object_get(b, "created"));
        int r;
        if (port &&
            (r = made ? api_port_delete_for(a, port, sid)
                      : api_port_unbind_for(a, port, sid, hostname)) < 0 &&
            r != -ENOENT)
            log_warn("port %s of server %s not %s: %s", port, sid, made ? "deleted" : "unbound",
                     strerror(-r));
    }
}

/* ---- servers: create ---- */

/* May the caller boot from this image? Owner, admin, public and community images, and shared
 * ones the project accepted membership of. */
static bool image_visible(ApiCall *c, const char *id, json_t *img, const char *owner)
{
    const char *vis = nova_str(img, "visibility");
    if (api_can_access(c, owner) ||
        (vis && (strcmp(vis, "public") == 0 || strcmp(vis, "community") == 0)))
        return true;
    if (!vis || strcmp(vis, "shared") != 0)
        return false;
    ApiListQuery q = {.kind = "image_member", .parent = id};
    json_t *arr, *m;
    size_t i;
    bool ok = false;
    if (api_store_list(c->api->store, &q, &arr) < 0)
        return false;
    json_array_foreach(arr, i, m)
    {
        const char *member = nova_str(m, "member_id"), *st = nova_str(m, "status");
        ok = ok || (member && strcmp(member, c->auth.project_id) == 0 && st &&
                    strcmp(st, "accepted") == 0);
    }
    json_decref(arr);
    return ok;
}

/* The active image the caller may boot (new reference), or NULL after a 400. */
static json_t *image_check(ApiCall *c, const char *id, json_t *flavor, bool local_disk)
{
    json_t *img = NULL;
    char owner[API_ID_LEN + 1] = "";
    if (!api_valid_id(sov_str(id)) ||
        api_store_get(c->api->store, "image", id, &img, owner, sizeof(owner)) < 0 ||
        !image_visible(c, id, img, owner)) {
        json_decref(img);
        api_fault(c, 400, NULL, "Image %s could not be found.", id);
        return NULL;
    }
    if (!nova_str(img, "status") || strcmp(nova_str(img, "status"), "active") != 0) {
        api_fault(c, 400, NULL, "Image %s is not active.", id);
    } else if (nova_num(img, "min_ram") > nova_num(flavor, "ram")) {
        api_fault(c, 400, NULL, "Flavor's memory is too small for requested image.");
    } else if (local_disk && nova_num(flavor, "disk") > 0 &&
               (nova_num(img, "min_disk") > nova_num(flavor, "disk") ||
                nova_num(img, "size") > nova_num(flavor, "disk") * 1073741824LL)) {
        api_fault(c, 400, NULL, "Flavor's disk is too small for requested image.");
    } else
        return img;
    json_decref(img);
    return NULL;
}

/* Normalises "networks": "auto", "none" or [{"uuid"|"port"[, "fixed_ip"][, "tag"]}], every
 * network and port existing and usable by the caller. */
static json_t *networks_check(ApiCall *c, json_t *nets)
{
    if (!nets || json_is_null(nets))
        return json_array();
    if (json_is_string(nets) && (strcmp(json_string_value(nets), "auto") == 0 ||
                                 strcmp(json_string_value(nets), "none") == 0))
        return json_incref(nets);
    if (!json_is_array(nets) || json_array_size(nets) > NETS_MAX) {
        api_fault(c, 400, NULL,
                  "Invalid input for field/attribute networks: 'auto', 'none' or "
                  "at most %d network objects",
                  NETS_MAX);
        return NULL;
    }
    static const char *const keys[] = {"uuid", "port", "fixed_ip", "tag", NULL};
    json_t *out = json_array(), *n;
    size_t i;
    json_array_foreach(nets, i, n)
    {
        SovBuf err = SOV_BUF_INIT;
        const char *uuid = NULL, *port = NULL, *ip = NULL, *tag = NULL;
        char owner[API_ID_LEN + 1] = "";
        json_t *doc = NULL;
        if (!json_is_object(n) || sov_json_check_keys(n, keys, &err) < 0 ||
            sov_json_get_string(n, "uuid", false, 64, &uuid, &err) < 0 ||
            sov_json_get_string(n, "port", false, 64, &port, &err) < 0 ||
            sov_json_get_string(n, "fixed_ip", false, 64, &ip, &err) < 0 ||
            sov_json_get_string(n, "tag", false, 60, &tag, &err) < 0 || (!uuid && !port) ||
            (uuid && !api_valid_id(sov_str(uuid))) || (port && !api_valid_id(sov_str(port))) ||
            (ip && !ip_ok(ip))) {
            api_fault(c, 400, NULL, "Bad networks format: %s",
                      err.ptr ? err.ptr
                              : "a network uuid or port id is required, fixed_ip an "
                                "IP address");
            sov_buf_release(&err);
            json_decref(out);
            return NULL;
        }
        sov_buf_release(&err);
        json_t *item = json_object();
        if (port) {
            if (api_store_get(c->api->store, "port", port, &doc, owner, sizeof(owner)) < 0 ||
                !api_can_access(c, owner)) {
                api_fault(c, 400, NULL, "Port %s could not be found.", port);
                goto fail;
            }
            if (nova_str(doc, "device_id") && *nova_str(doc, "device_id")) {
                api_fault(c, 409, NULL, "Port %s is still in use.", port);
                goto fail;
            }
            for (size_t k = 0; k < json_array_size(out); k++)
                if (nova_str(json_array_get(out, k), "port") &&
                    strcmp(nova_str(json_array_get(out, k), "port"), port) == 0) {
                    api_fault(c, 400, NULL, "Port %s is requested more than once.", port);
                    goto fail;
                }
            json_object_set_new(item, "port", json_string(port));
            if (nova_str(doc, "network_id"))
                json_object_set(item, "uuid", json_object_get(doc, "network_id"));
        } else {
            if (api_store_get(c->api->store, "network", uuid, &doc, owner, sizeof(owner)) < 0 ||
                !(api_can_access(c, owner) || json_is_true(json_object_get(doc, "shared")))) {
                api_fault(c, 400, NULL, "Network %s could not be found.", uuid);
                goto fail;
            }
            json_object_set_new(item, "uuid", json_string(uuid));
        }
        if (ip)
            json_object_set_new(item, "fixed_ip", json_string(ip));
        if (tag)
            json_object_set_new(item, "tag", json_string(tag));
        json_decref(doc);
        json_array_append_new(out, item);
        continue;
    fail:
        json_decref(doc);
        json_decref(item);
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Security groups by name or id (the CLI sends ids), normalised to [{"name"}]. */
static json_t *secgroups_check(ApiCall *c, json_t *sgs)
{
    json_t *out = json_array(), *g;
    size_t i;
    if (!sgs || json_is_null(sgs)) {
        json_array_append_new(out, json_pack("{s:s}", "name", "default"));
        return out;
    }
    if (!json_is_array(sgs) || json_array_size(sgs) > NETS_MAX) {
        json_decref(out);
        api_fault(c, 400, NULL, "Invalid input for field/attribute security_groups.");
        return NULL;
    }
    json_array_foreach(sgs, i, g)
    {
        const char *name = nova_str(g, "name");
        json_t *doc = NULL, *arr = NULL;
        char owner[API_ID_LEN + 1] = "";
        if (!name || !*name || strlen(name) > 255) {
            json_decref(out);
            api_fault(c, 400, NULL, "Invalid input for field/attribute security_groups.");
            return NULL;
        }
        if (api_valid_id(sov_str(name)) &&
            api_store_get(c->api->store, "security_group", name, &doc, owner, sizeof(owner)) == 0 &&
            api_can_access(c, owner)) {
            name = nova_str(doc, "name") ? nova_str(doc, "name") : name;
        } else if (strcmp(name, "default") != 0) {
            ApiListQuery q = {
                .kind = "security_group", .project = c->auth.project_id, .name = name, .limit = 1};
            if (api_store_list(c->api->store, &q, &arr) < 0 || json_array_size(arr) == 0) {
                json_decref(arr);
                json_decref(doc);
                json_decref(out);
                api_fault(c, 400, NULL, "Security group %s not found for project %s.", name,
                          c->auth.project_id);
                return NULL;
            }
        }
        json_array_append_new(out, json_pack("{s:s}", "name", name));
        json_decref(arr);
        json_decref(doc);
    }
    return out;
}

/* Normalises block_device_mapping_v2. Sets *boot_image to the image of an image->local boot
 * entry and *bfv when the root disk is a volume. */
static json_t *bdm_check(ApiCall *c, json_t *in, const char **boot_image, bool *bfv)
{
    static const char *const keys[] = {"source_type", "destination_type",
                                       "uuid",        "boot_index",
                                       "volume_size", "delete_on_termination",
                                       "device_name", "guest_format",
                                       "disk_bus",    "device_type",
                                       "tag",         "volume_type",
                                       "no_device",   NULL};
    json_t *out = json_array(), *e;
    size_t i;
    int boots = 0;
    char dev = 'b';
    *bfv = false;
    if (!json_is_array(in) || json_array_size(in) > BDM_MAX) {
        api_fault(c, 400, NULL, "Block Device Mapping is Invalid: at most %d mappings", BDM_MAX);
        goto fail;
    }
    json_array_foreach(in, i, e)
    {
        SovBuf err = SOV_BUF_INIT;
        const char *src = NULL, *dst = NULL, *uuid = NULL, *devname = NULL;
        int64_t size = 0, boot = -1;
        bool dot = false;
        json_t *bi = json_object_get(e, "boot_index");
        if (!json_is_object(e) || sov_json_check_keys(e, keys, &err) < 0 ||
            sov_json_get_string(e, "source_type", true, 16, &src, &err) < 0 ||
            sov_json_get_string(e, "destination_type", false, 16, &dst, &err) < 0 ||
            sov_json_get_string(e, "uuid", false, 64, &uuid, &err) < 0 ||
            sov_json_get_string(e, "device_name", false, 64, &devname, &err) < 0 ||
            nova_get_intish(e, "volume_size", false, 1, 65536, &size, &err) < 0 ||
            sov_json_get_bool(e, "delete_on_termination", false, &dot, &err) < 0 ||
            (bi && !json_is_null(bi) &&
             nova_get_intish(e, "boot_index", true, -1, 64, &boot, &err) < 0)) {
            api_fault(c, 400, NULL, "Block Device Mapping is Invalid: %s",
                      err.ptr ? err.ptr : "each mapping must be an object");
            sov_buf_release(&err);
            goto fail;
        }
        bool s_img = strcmp(src, "image") == 0, s_vol = strcmp(src, "volume") == 0;
        bool s_blank = strcmp(src, "blank") == 0, s_snap = strcmp(src, "snapshot") == 0;
        if (!dst)
            dst = s_img || s_blank ? "local" : "volume";
        bool local = strcmp(dst, "local") == 0;
        const char *why = NULL;
        if (!s_img && !s_vol && !s_blank && !s_snap)
            why = "source_type must be image, volume, snapshot or blank";
        else if (!local && strcmp(dst, "volume") != 0)
            why = "destination_type must be local or volume";
        else if (!s_blank && (!uuid || !api_valid_id(sov_str(uuid))))
            why = "a uuid is required for this source_type";
        else if (s_snap)
            why = "booting from a volume snapshot is not supported; create a volume from it";
        else if (s_vol && local)
            why = "a volume cannot be a local disk";
        else if (s_blank && !local && !size)
            why = "a blank volume needs a volume_size";
        else if (s_img && local && boot != 0)
            why = "an image can only be a local disk as the boot device";
        else if (devname && (strlen(devname) > 32 || strchr(devname, ' ')))
            why = "device_name is invalid";
        if (why) {
            api_fault(c, 400, NULL, "Block Device Mapping is Invalid: %s", why);
            sov_buf_release(&err);
            goto fail;
        }
        sov_buf_release(&err);
        if (boot == 0) {
            boots++;
            if (s_img && local)
                *boot_image = uuid;
            else
                *bfv = true;
        }
        char devbuf[16];
        if (!devname && !local) {
            snprintf(devbuf, sizeof(devbuf), "/dev/vd%c", boot == 0 ? 'a' : dev++);
            devname = devbuf;
        }
        json_t *n =
            json_pack("{s:s,s:s,s:o,s:o,s:o,s:b,s:o,s:o,s:b}", "source_type", src,
                      "destination_type", dst, "uuid", uuid ? json_string(uuid) : json_null(),
                      "boot_index", boot >= 0 ? json_integer(boot) : json_null(), "volume_size",
                      size ? json_integer(size) : json_null(), "delete_on_termination", dot,
                      "device_name", devname ? json_string(devname) : json_null(), "volume_id",
                      s_vol ? json_string(uuid) : json_null(), "attached", 0);
        json_array_append_new(out, n);
    }
    if (boots > 1) {
        api_fault(c, 400, NULL,
                  "Block Device Mapping is Invalid: Boot sequence for the "
                  "instance and image/block device mapping combination is not "
                  "valid.");
        goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

typedef struct NewServer {
    json_t *flavor, *image, *key, *nets, *sgs, *bdm, *meta;
    const char *name, *image_id, *user_data, *disk_config, *ip4, *ip6;
    bool bfv, config_drive, reservation;
    char zone[64];
} NewServer;

static void new_server_release(NewServer *n)
{
    json_decref(n->flavor);
    json_decref(n->image);
    json_decref(n->key);
    json_decref(n->nets);
    json_decref(n->sgs);
    json_decref(n->bdm);
}

/* Everything about the request that can be refused before anything is changed. */
static bool create_validate(ApiCall *c, json_t *body, NewServer *n)
{
    static const char *const keys[] = {"name",
                                       "imageRef",
                                       "flavorRef",
                                       "networks",
                                       "key_name",
                                       "user_data",
                                       "availability_zone",
                                       "metadata",
                                       "block_device_mapping_v2",
                                       "min_count",
                                       "max_count",
                                       "security_groups",
                                       "accessIPv4",
                                       "accessIPv6",
                                       "adminPass",
                                       "OS-DCF:diskConfig",
                                       "config_drive",
                                       "personality",
                                       "return_reservation_id",
                                       NULL};
    static const char *const top[] = {"server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints",
                                      NULL};
    SovBuf err = SOV_BUF_INIT;
    json_t *s = json_object_get(body, "server"), *bdm = NULL, *pers = NULL;
    const char *flavor_ref = NULL, *image_ref = NULL, *key_name = NULL, *az = NULL, *pw = NULL;
    int64_t min_count = 1, max_count = 1;
    json_t *fr = json_object_get(s, "flavorRef"), *cd = json_object_get(s, "config_drive");
    char flavor_num[32];
    if (json_is_integer(fr)) { /* Nova takes numeric flavor ids as numbers too */
        snprintf(flavor_num, sizeof(flavor_num), "%" JSON_INTEGER_FORMAT, json_integer_value(fr));
        flavor_ref = flavor_num;
    }
    if (sov_json_check_keys(body, top, &err) < 0 || !json_is_object(s) ||
        sov_json_check_keys(s, keys, &err) < 0 ||
        sov_json_get_string(s, "name", true, NOVA_NAME_MAX, &n->name, &err) < 0 ||
        (!flavor_ref && sov_json_get_string(s, "flavorRef", true, 512, &flavor_ref, &err) < 0) ||
        sov_json_get_string(s, "imageRef", false, 512, &image_ref, &err) < 0 ||
        sov_json_get_string(s, "key_name", false, 255, &key_name, &err) < 0 ||
        sov_json_get_string(s, "user_data", false, 4 * ((USER_DATA_MAX + 2) / 3), &n->user_data,
                            &err) < 0 ||
        sov_json_get_string(s, "availability_zone", false, 255, &az, &err) < 0 ||
        sov_json_get_string(s, "accessIPv4", false, 64, &n->ip4, &err) < 0 ||
        sov_json_get_string(s, "accessIPv6", false, 64, &n->ip6, &err) < 0 ||
        sov_json_get_string(s, "adminPass", false, 255, &pw, &err) < 0 ||
        sov_json_get_string(s, "OS-DCF:diskConfig", false, 16, &n->disk_config, &err) < 0 ||
        sov_json_get_object(s, "metadata", false, &n->meta, &err) < 0 ||
        sov_json_get_array(s, "block_device_mapping_v2", false, BDM_MAX, &bdm, &err) < 0 ||
        sov_json_get_array(s, "personality", false, 5, &pers, &err) < 0 ||
        nova_get_intish(s, "min_count", false, 1, INT32_MAX, &min_count, &err) < 0 ||
        nova_get_intish(s, "max_count", false, 1, INT32_MAX, &max_count, &err) < 0 ||
        sov_json_get_bool(s, "return_reservation_id", false, &n->reservation, &err) < 0) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute server. %s",
                  err.ptr ? err.ptr : "'server' must be an object");
        sov_buf_release(&err);
        return false;
    }
    sov_buf_release(&err);
    if (!nova_name_ok(n->name)) {
        api_fault(c, 400, NULL,
                  "Invalid input for field/attribute name. Value: %.64s. It must "
                  "be 1-255 printable characters without leading or trailing "
                  "spaces.",
                  n->name);
        return false;
    }
    if (min_count > 1 || max_count < min_count) {
        api_fault(c, 400, NULL,
                  "min_count must be 1 and max_count at least min_count: one "
                  "server per request");
        return false;
    }
    if ((n->ip4 && *n->ip4 && !ip_ok(n->ip4)) || (n->ip6 && *n->ip6 && !ip_ok(n->ip6))) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute accessIPv4/accessIPv6.");
        return false;
    }
    if (n->disk_config && strcmp(n->disk_config, "AUTO") != 0 &&
        strcmp(n->disk_config, "MANUAL") != 0) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute OS-DCF:diskConfig.");
        return false;
    }
    n->config_drive = json_is_true(cd) || (json_is_string(cd) && *json_string_value(cd) &&
                                           strcasecmp(json_string_value(cd), "false") != 0);
    if (n->meta && !nova_metadata_ok(c, n->meta, 0))
        return false;
    if (n->user_data) {
        size_t ul = strlen(n->user_data);
        uint8_t *tmp = malloc(ul / 4 * 3 + 3);
        ssize_t dl = tmp ? api_base64_decode(n->user_data, ul, tmp, ul / 4 * 3 + 3) : -ENOMEM;
        free(tmp);
        if (dl < 0 || dl > USER_DATA_MAX) {
            api_fault(c, 400, NULL,
                      dl == -EINVAL ? "User data needs to be valid base 64."
                                    : "User data too large: at most %d bytes",
                      USER_DATA_MAX);
            return false;
        }
    }
    /* flavor, image, block devices */
    if (!*flavor_ref || !(n->flavor = nova_flavor_lookup(c, nova_ref_id(flavor_ref)))) {
        api_fault(c, 400, NULL, "Flavor %.64s could not be found.", flavor_ref);
        return false;
    }
    if (json_is_true(json_object_get(n->flavor, "OS-FLV-DISABLED:disabled"))) {
        api_fault(c, 400, NULL, "Flavor %s is disabled.", nova_str(n->flavor, "id"));
        return false;
    }
    n->image_id = image_ref && *image_ref ? nova_ref_id(image_ref) : NULL;
    const char *bdm_image = NULL;
    if (bdm && !(n->bdm = bdm_check(c, bdm, &bdm_image, &n->bfv)))
        return false;
    if (!n->bdm)
        n->bdm = json_array();
    if (!n->image_id)
        n->image_id = bdm_image;
    if (!n->image_id && !n->bfv) {
        api_fault(c, 400, NULL,
                  "Missing imageRef attribute: an image or a block device "
                  "mapping with boot_index 0 is required.");
        return false;
    }
    if (n->image_id && !(n->image = image_check(c, n->image_id, n->flavor, !n->bfv)))
        return false;
    for (size_t i = 0; i < json_array_size(n->bdm); i++) { /* images copied into volumes */
        json_t *e = json_array_get(n->bdm, i), *img;
        if (strcmp(nova_str(e, "source_type"), "image") == 0 &&
            strcmp(nova_str(e, "destination_type"), "volume") == 0) {
            if (!(img = image_check(c, nova_str(e, "uuid"), n->flavor, false)))
                return false;
            if (json_is_null(json_object_get(e, "volume_size")))
                json_object_set_new(
                    e, "volume_size",
                    json_integer(
                        SOV_MAX(SOV_MAX(nova_num(img, "min_disk"), nova_num(n->flavor, "disk")),
                                (nova_num(img, "size") + 1073741823) / 1073741824)));
            if (nova_num(e, "volume_size") < 1)
                json_object_set_new(e, "volume_size", json_integer(1));
            json_decref(img);
        } else if (strcmp(nova_str(e, "source_type"), "volume") == 0) {
            json_t *vol = NULL;
            char owner[API_ID_LEN + 1] = "";
            const char *vid = nova_str(e, "uuid");
            if (api_store_get(c->api->store, "volume", vid, &vol, owner, sizeof(owner)) < 0 ||
                !api_can_access(c, owner)) {
                json_decref(vol);
                api_fault(c, 400, NULL,
                          "Block Device Mapping is Invalid: failed to get volume "
                          "%s.",
                          vid);
                return false;
            }
            bool avail =
                nova_str(vol, "status") && strcmp(nova_str(vol, "status"), "available") == 0;
            json_decref(vol);
            if (!avail) {
                api_fault(c, 400, NULL, "Invalid volume: volume %s status must be available", vid);
                return false;
            }
        }
    }
    /* key, networks, security groups, zone */
    if (key_name) {
        char uniq[API_ID_LEN + 260];
        snprintf(uniq, sizeof(uniq), "%s/%s", c->auth.user_id, key_name);
        if (api_store_get_uniq(c->api->store, "keypair", uniq, &n->key) < 0) {
            api_fault(c, 400, NULL, "Invalid key_name provided.");
            return false;
        }
    }
    if (!(n->nets = networks_check(c, json_object_get(s, "networks"))) ||
        !(n->sgs = secgroups_check(c, json_object_get(s, "security_groups"))))
        return false;
    return api_place_zone(c, az, n->zone);
}

json_t *nova_flavor_brief(json_t *f)
{
    return json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(f, "id"), "name",
                     json_object_get(f, "name"), "vcpus", json_object_get(f, "vcpus"), "ram",
                     json_object_get(f, "ram"), "disk", json_object_get(f, "disk"), "ephemeral",
                     json_object_get(f, "OS-FLV-EXT-DATA:ephemeral"), "swap",
                     json_object_get(f, "swap"), "extra_specs", json_object_get(f, "_extra_specs"));
}

void nova_set_flavor(json_t *doc, json_t *flavor_brief_obj)
{
    json_t *f = flavor_brief_obj;
    json_object_set_new(doc, "flavor", json_pack("{s:O}", "id", json_object_get(f, "id")));
    json_object_set(doc, "_vcpus", json_object_get(f, "vcpus"));
    json_object_set(doc, "_ram", json_object_get(f, "ram"));
    json_object_set(doc, "_disk", json_object_get(f, "disk"));
    json_object_set_new(doc, "_gpus",
                        json_integer(nova_flavor_gpus(json_object_get(f, "extra_specs"))));
    json_object_set(doc, "_flavor", f);
}

/* Creates the volumes the mapping asks for and attaches the existing ones (inside the
 * caller's transaction). false after answering. */
static bool create_volumes(ApiCall *c, NewServer *n, const char *server_id)
{
    size_t i;
    json_t *e;
    json_array_foreach(n->bdm, i, e)
    {
        if (strcmp(nova_str(e, "destination_type"), "volume") != 0)
            continue;
        char vid[API_UUID_LEN + 1];
        bool created = !nova_str(e, "volume_id");
        if (created) {
            const char *img =
                strcmp(nova_str(e, "source_type"), "image") == 0 ? nova_str(e, "uuid") : NULL;
            if (api_volume_create_for(c, "", nova_num(e, "volume_size"), img, n->zone, vid) < 0)
                return false; /* answered */
            json_object_set_new(e, "volume_id", json_string(vid));
        }
        int r = api_volume_attach(c->api, c->auth.project_id, nova_str(e, "volume_id"), server_id,
                                  nova_str(e, "device_name"));
        if (r < 0 && !created) {
            api_fault(c, 400, NULL, "Invalid volume: volume %s cannot be attached (%s)",
                      nova_str(e, "volume_id"), strerror(-r));
            return false;
        }
        /* A volume still being made is attached the moment it is ready (volume.c); the agent
         * waits for it to be in-use. It goes with the server when delete_on_termination. */
        json_object_set_new(e, "attached", json_boolean(r == 0));
        json_object_set_new(e, "created", json_boolean(created));
    }
    return true;
}

/* Adds a port's fixed addresses to a server's "addresses" under its network's name. */
static void add_addresses(Api *a, json_t *addresses, json_t *port)
{
    json_t *net = NULL, *ips, *ip;
    size_t i;
    const char *name = nova_str(port, "network_id");
    if (name && api_store_get(a->store, "network", name, &net, NULL, 0) == 0 &&
        nova_str(net, "name") && *nova_str(net, "name"))
        name = nova_str(net, "name");
    if (!name)
        name = "";
    if (!(ips = json_object_get(addresses, name))) {
        ips = json_array();
        json_object_set_new(addresses, name, ips);
    }
    json_array_foreach(json_object_get(port, "fixed_ips"), i, ip)
    {
        const char *addr = nova_str(ip, "ip_address");
        if (addr)
            json_array_append_new(
                ips,
                json_pack("{s:s,s:i,s:s,s:s}", "addr", addr, "version", strchr(addr, ':') ? 6 : 4,
                          "OS-EXT-IPS:type", "fixed", "OS-EXT-IPS-MAC:mac_addr",
                          nova_str(port, "mac_address") ? nova_str(port, "mac_address") : ""));
    }
    json_decref(net);
}

/* Gives a placed server its ports, as nova-compute asks Neutron for them: a new port (with the
 * requested fixed IP) on each requested network, the requested existing ports as they are.
 * Their addresses go into "addresses"; the ports made here are marked "created" in _networks
 * so that they go with the server. Answers the fault and returns false on failure (the
 * caller's transaction then undoes every port made). */
static bool create_ports(ApiCall *c, NewServer *n, const char *server_id, const char *host,
                         json_t *doc)
{
    json_t *addresses = json_object_get(doc, "addresses"), *e;
    size_t i;
    char owner[80], hostname[64];
    snprintf(owner, sizeof(owner), "compute:%s", n->zone);
    server_hostname(nova_str(doc, "name"), server_id, hostname);
    json_object_set_new(doc, "_hostname",
                        json_string(hostname)); /* a rename keeps it, as in Nova */
    if (!json_is_array(n->nets))
        return true; /* "none", or "auto": the agent's fallback network */
    json_array_foreach(n->nets, i, e)
    {
        json_t *port = NULL;
        const char *pid = nova_str(e, "port");
        if (pid) { /* the user's port: bound to the server, as Nova has Neutron do */
            int r = api_port_bind_for(c->api, pid, server_id, owner, host, hostname);
            if (r < 0 || api_store_get(c->api->store, "port", pid, &port, NULL, 0) < 0) {
                api_fault(c, 400, NULL, "Port %s could not be found.", pid);
                return false;
            }
        } else {
            if (api_port_create_for(c, nova_str(e, "uuid"), nova_str(e, "fixed_ip"), server_id,
                                    owner, host, hostname, &port) < 0)
                return false;
            json_object_set(e, "port", json_object_get(port, "id"));
            json_object_set_new(e, "created", json_true());
        }
        add_addresses(c->api, addresses, port);
        json_decref(port);
    }
    return true;
}

static void h_server_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    json_t *body = c ? api_body(c, NULL) : NULL;
    NewServer n = {0};
    if (!body)
        return;
    if (!create_validate(c, body, &n))
        goto out;
    json_t *brief = nova_flavor_brief(n.flavor);
    int64_t vcpus = nova_num(brief, "vcpus"), ram = nova_num(brief, "ram");
    int64_t gpus = nova_flavor_gpus(json_object_get(brief, "extra_specs"));
    if (!api_quota_check(c, "instances", 1) || !api_quota_check(c, "cores", vcpus) ||
        !api_quota_check(c, "ram", ram)) {
        json_decref(brief);
        goto out;
    }
    char id[API_UUID_LEN + 1], host[64] = "", now[32], pass[13];
    uint8_t rnd[12];
    api_new_uuid(id);
    snprintf(c->target, sizeof(c->target), "%s", id);
    api_time_iso(api_now_ms(), now);
    sov_random_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        pass[i] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rnd[i] % 55];
    pass[12] = '\0';
    int sr = api_schedule(a, n.zone, vcpus, ram, gpus, NULL, host);
    bool placed = sr == 0 && host[0];
    const char *status = placed ? "BUILD" : "ERROR";
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{},s:o,s:o,s:s,s:s,s:i,s:s,s:o,s:o,s:s,s:[],s:i,s:s,"
        "s:s,s:O,s:n,s:n}",
        "id", id, "name", n.name, "status", status, "tenant_id", c->auth.project_id, "user_id",
        c->auth.user_id, "created", now, "updated", now, "addresses", "key_name",
        n.key ? json_string(nova_str(n.key, "name")) : json_null(), "metadata",
        n.meta ? json_incref(n.meta) : json_object(), "accessIPv4", n.ip4 ? n.ip4 : "",
        "accessIPv6", n.ip6 ? n.ip6 : "", "OS-EXT-STS:power_state", 0,
        "OS-EXT-AZ:availability_zone", n.zone, "OS-EXT-SRV-ATTR:host",
        placed ? json_string(host) : json_null(), "OS-EXT-SRV-ATTR:hypervisor_hostname",
        placed ? json_string(host) : json_null(), "OS-EXT-SRV-ATTR:instance_name", "",
        "os-extended-volumes:volumes_attached", "progress", 0, "config_drive",
        n.config_drive ? "True" : "", "OS-DCF:diskConfig", n.disk_config ? n.disk_config : "MANUAL",
        "security_groups", n.sgs, "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at");
    char iname[32];
    snprintf(iname, sizeof(iname), "instance-%.8s", id);
    json_object_set_new(doc, "OS-EXT-SRV-ATTR:instance_name", json_string(iname));
    json_object_set_new(doc, "image",
                        n.image && !n.bfv ? json_pack("{s:s}", "id", n.image_id) : json_string(""));
    nova_set_flavor(doc, brief);
    json_decref(brief);
    json_object_set_new(doc, "_image", json_string(n.image_id ? n.image_id : ""));
    if (n.image && nova_str(n.image, "disk_format")) /* the agent's qemu-img -F */
        json_object_set(doc, "_image_disk_format", json_object_get(n.image, "disk_format"));
    if (n.user_data)
        json_object_set_new(doc, "_user_data", json_string(n.user_data));
    if (n.key) {
        json_object_set(doc, "_key_public", json_object_get(n.key, "public_key"));
        json_object_set(doc, "_key_name", json_object_get(n.key, "name"));
    }
    json_object_set_new(doc, "_desired", json_string("running"));
    json_object_set_new(doc, "_reboot", json_integer(0));
    json_object_set_new(doc, "_reboot_hard", json_false());
    if (!placed)
        json_object_set_new(doc, "fault",
                            json_pack("{s:i,s:s,s:s}", "code", 500, "message",
                                      "No valid host was found. There are not enough hosts "
                                      "available.",
                                      "created", now));
    int r = api_store_begin(a->store);
    if (r < 0) {
        json_decref(doc);
        api_fault(c, 500, NULL, "The server cannot be stored.");
        goto out;
    }
    if (placed && (!create_volumes(c, &n, id) || !create_ports(c, &n, id, host, doc))) {
        api_store_rollback(a->store);
        json_decref(doc);
        goto out;
    }
    json_t *att = json_object_get(doc, "os-extended-volumes:volumes_attached"), *e;
    size_t i;
    json_array_foreach(n.bdm, i, e)
    {
        if (nova_str(e, "volume_id") && json_is_true(json_object_get(e, "attached")))
            json_array_append_new(att, json_pack("{s:O}", "id", json_object_get(e, "volume_id")));
    }
    json_object_set(doc, "_bdm", n.bdm);
    json_object_set(doc, "_networks", n.nets);
    ApiDocMeta m = {.kind = "server",
                    .id = id,
                    .project = c->auth.project_id,
                    .name = n.name,
                    .status = status,
                    .host = host};
    if ((r = api_store_insert(a->store, &m, doc)) < 0)
        api_store_rollback(a->store);
    else
        r = api_store_commit(a->store); /* a failed commit has rolled back */
    if (r < 0) {
        json_decref(doc);
        api_fault(c, 500, NULL, "The server cannot be stored.");
        goto out;
    }
    json_decref(doc);
    if (json_array_size(n.bdm))
        api_block_kick(a);
    if (!placed)
        log_info("server %s: no valid host in %s for %" PRId64 " vCPUs, %" PRId64 " MiB, %" PRId64
                 " GPUs",
                 id, n.zone, vcpus, ram, gpus);
    char loc[600];
    snprintf(loc, sizeof(loc), "%s" NOVA "/servers/%s", api_public_url(a), id);
    sov_http_resp_header(req, "Location", sov_str(loc));
    if (n.reservation) {
        api_reply(c, 202, json_pack("{s:s+}", "reservation_id", "r-", id + 28));
        goto out;
    }
    api_reply(c, 202,
              json_pack("{s:{s:s,s:o,s:s,s:s,s:O}}", "server", "id", id, "links",
                        nova_links(a, "servers", id), "adminPass", pass, "OS-DCF:diskConfig",
                        n.disk_config ? n.disk_config : "MANUAL", "security_groups", n.sgs));
out:
    new_server_release(&n);
}

/* Rendered server representations, by document revision: a listing without in-memory
 * filters reads ids, revisions and texts from the store and parses and renders only the
 * documents that changed since they were last shown. The text depends on the document and
 * on whether the caller is an admin (the OS-EXT-SRV-ATTR members), nothing else. */
#define VIEW_CACHE 4096

typedef struct ViewEntry {
    char id[API_UUID_LEN + 1];
    uint64_t rev;
    char *text[3]; /* brief, detail, detail for admins; NULL until rendered */
    size_t len[3];
} ViewEntry;

static ViewEntry *view_cache; /* VIEW_CACHE entries, owned by the loop thread */

typedef struct ViewWalk {
    ApiCall *c;
    int form; /* index into ViewEntry.text */
    SovBuf *out;
    size_t n;
    char last[API_UUID_LEN + 1];
} ViewWalk;

static ViewEntry *view_slot(const char *id, uint64_t rev)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    ViewEntry *e = &view_cache[h % VIEW_CACHE];
    if (strcmp(e->id, id) != 0 || e->rev != rev) {
        for (int k = 0; k < 3; k++) {
            free(e->text[k]);
            e->text[k] = NULL;
        }
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->rev = rev;
    }
    return e;
}

static int view_row(const char *id, uint64_t rev, const char *body, size_t len, void *ud)
{
    ViewWalk *w = ud;
    ViewEntry *e = view_slot(id, rev);
    if (!e->text[w->form]) {
        json_error_t je;
        json_t *doc = json_loadb(body, len, 0, &je), *v;
        if (!doc)
            return -EIO;
        v = server_view(w->c, doc, w->form > 0);
        json_decref(doc);
        e->text[w->form] = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!e->text[w->form])
            return -ENOMEM;
        e->len[w->form] = strlen(e->text[w->form]);
    }
    if (w->n++ && sov_buf_putc(w->out, ',') < 0)
        return -ENOMEM;
    snprintf(w->last, sizeof(w->last), "%s", id);
    return sov_buf_append(w->out, e->text[w->form], e->len[w->form]);
}

/* The listing without in-memory filters, assembled from cached texts. */
static void servers_list_fast(ApiCall *c, ApiListQuery *q, int limit, bool detail)
{
    SovBuf buf = SOV_BUF_INIT;
    ViewWalk w = {.c = c, .form = detail ? 1 + c->auth.system_admin : 0, .out = &buf};
    q->limit = (size_t)limit;
    sov_buf_puts(&buf, "{\"servers\":[");
    int r = api_store_list_rows(c->api->store, q, view_row, &w);
    if (r < 0) {
        sov_buf_release(&buf);
        if (r == -ENOENT)
            api_fault(c, 400, NULL, "marker [%s] not found", q->marker);
        else
            api_fault(c, 500, NULL, "The servers cannot be read.");
        return;
    }
    sov_buf_putc(&buf, ']');
    if (w.n == (size_t)limit) { /* ,"servers_links":[...] */
        json_t *links = json_object();
        nova_next_link(c, links, "servers_links", detail ? "servers/detail" : "servers", w.last);
        char *t = json_dumps(links, JSON_COMPACT);
        sov_buf_printf(&buf, ",%s", t ? t + 1 : "}");
        free(t);
        json_decref(links);
    } else
        sov_buf_putc(&buf, '}');
    api_reply_raw(c, 200, "application/json", buf.ptr, buf.len);
    sov_buf_release(&buf);
}

/* ---- servers: list, show, update, delete ---- */

typedef struct ListFilter {
    regex_t name;
    bool has_name;
    const char *flavor, *image;
    int64_t since;
} ListFilter;

static bool list_match(const ListFilter *f, json_t *doc)
{
    const char *name = nova_str(doc, "name"), *fl = nova_str(json_object_get(doc, "flavor"), "id");
    const char *img = nova_str(doc, "_image"), *upd = nova_str(doc, "updated");
    return (!f->has_name || regexec(&f->name, name ? name : "", 0, NULL, 0) == 0) &&
           (!f->flavor || (fl && strcmp(f->flavor, fl) == 0)) &&
           (!f->image || (img && strcmp(f->image, img) == 0)) &&
           (f->since < 0 || (upd && parse_time(upd) >= f->since));
}

/* Newest first. Filters on indexed columns (project, status, host) go to the store; the rest
 * (name as a regular expression, flavor, image, changes-since) are applied page by page. */
static void servers_list(SovHttpReq *req, Api *a, bool detail)
{
    static const char *const statuses[] = {"BUILD",  "ACTIVE", "SHUTOFF",       "ERROR",
                                           "REBOOT", "RESIZE", "VERIFY_RESIZE", "MIGRATING"};
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_READ);
    int limit = c ? api_query_limit(c, LIST_MAX, LIST_MAX) : -1;
    if (limit < 0)
        return;
    ListFilter f = {.since = -1, .flavor = api_query(c, "flavor"), .image = api_query(c, "image")};
    const char *name = api_query(c, "name"), *status = api_query(c, "status");
    const char *since = api_query(c, "changes-since");
    ApiListQuery q = {.kind = "server", .desc = true, .marker = api_query(c, "marker")};
    const char *tenant =
        api_query(c, "project_id") ? api_query(c, "project_id") : api_query(c, "tenant_id");
    q.project = !api_all_projects(c) ? c->auth.project_id : tenant;
    if (c->auth.system_admin)
        q.host = api_query(c, "host");
    char st[16] = "";
    json_t *out = json_array();
    bool known = !status;
    for (size_t i = 0; status && i < ELEMENTSOF(statuses); i++)
        if (strcasecmp(status, statuses[i]) == 0) {
            snprintf(st, sizeof(st), "%s", statuses[i]);
            q.status = st;
            known = true;
        }
    if (!known) /* Nova 2.1 answers an unknown status with an empty list */
        goto reply;
    if (since && (f.since = parse_time(since)) < 0) {
        json_decref(out);
        api_fault(c, 400, NULL, "Invalid filter field: changes-since.");
        return;
    }
    if (name) { /* no back-references: matching stays linear */
        if (strlen(name) > NOVA_NAME_MAX || strchr(name, '\\') ||
            regcomp(&f.name, name, REG_EXTENDED | REG_NOSUB) != 0) {
            json_decref(out);
            api_fault(c, 400, NULL, "Invalid filter field: name.");
            return;
        }
        f.has_name = true;
    }
    bool paged = f.has_name || f.flavor || f.image || f.since >= 0;
    if (!paged && view_cache) {
        json_decref(out);
        servers_list_fast(c, &q, limit, detail);
        return;
    }
    char cursor[API_UUID_LEN + 1];
    for (;;) {
        json_t *batch, *v;
        size_t i;
        q.limit = paged ? 200 : (size_t)limit;
        int r = api_store_list(a->store, &q, &batch);
        if (r < 0) {
            json_decref(out);
            if (f.has_name)
                regfree(&f.name);
            if (r == -ENOENT)
                api_fault(c, 400, NULL, "marker [%s] not found", q.marker);
            else
                api_fault(c, 500, NULL, "The servers cannot be read.");
            return;
        }
        json_array_foreach(batch, i, v)
        {
            if (json_array_size(out) == (size_t)limit)
                break;
            snprintf(cursor, sizeof(cursor), "%s", nova_str(v, "id"));
            if (list_match(&f, v))
                json_array_append_new(out, server_view(c, v, detail));
        }
        size_t n = json_array_size(batch);
        json_decref(batch);
        if (!paged || n < q.limit || json_array_size(out) == (size_t)limit)
            break;
        q.marker = cursor;
    }
    if (f.has_name)
        regfree(&f.name);
reply:;
    json_t *doc = json_pack("{s:o}", "servers", out);
    if (json_array_size(out) == (size_t)limit && limit > 0)
        nova_next_link(c, doc, "servers_links", detail ? "servers/detail" : "servers",
                       nova_str(json_array_get(out, (size_t)limit - 1), "id"));
    api_reply(c, 200, doc);
}

static void h_servers(SovHttpReq *req, void *ud)
{
    servers_list(req, ud, false);
}

static void h_servers_detail(SovHttpReq *req, void *ud)
{
    servers_list(req, ud, true);
}

static void h_server_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL;
    if (doc)
        api_reply(c, 200, json_pack("{s:o}", "server", server_view(c, doc, true)));
    json_decref(doc);
}

static void h_server_update(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig",
                                       NULL};
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *b = doc ? api_body(c, "server") : NULL;
    SovBuf err = SOV_BUF_INIT;
    const char *name = NULL, *ip4 = NULL, *ip6 = NULL, *dc = NULL;
    if (!b)
        goto out;
    if (sov_json_check_keys(b, keys, &err) < 0 ||
        sov_json_get_string(b, "name", false, NOVA_NAME_MAX, &name, &err) < 0 ||
        sov_json_get_string(b, "accessIPv4", false, 64, &ip4, &err) < 0 ||
        sov_json_get_string(b, "accessIPv6", false, 64, &ip6, &err) < 0 ||
        sov_json_get_string(b, "OS-DCF:diskConfig", false, 16, &dc, &err) < 0 ||
        (name && !nova_name_ok(name)) || (ip4 && *ip4 && !ip_ok(ip4)) ||
        (ip6 && *ip6 && !ip_ok(ip6)) || (dc && strcmp(dc, "AUTO") && strcmp(dc, "MANUAL"))) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute server. %s",
                  err.ptr ? err.ptr : "invalid value");
        goto out;
    }
    static const char *const members[] = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"};
    const char *vals[] = {name, ip4, ip6, dc};
    for (size_t i = 0; i < ELEMENTSOF(members); i++)
        if (vals[i])
            json_object_set_new(doc, members[i], json_string(vals[i]));
    if (nova_server_save(c->api, doc, project) < 0) {
        api_fault(c, 500, NULL, "The server cannot be stored.");
        goto out;
    }
    api_reply(c, 200, json_pack("{s:o}", "server", server_view(c, doc, true)));
out:
    sov_buf_release(&err);
    json_decref(doc);
}

/* A server that never reached a host goes at once; one on a host is marked and the agent
 * removes it once the guest is gone. */
static void h_server_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL;
    if (!doc)
        return;
    const char *host = nova_str(doc, "OS-EXT-SRV-ATTR:host");
    int r;
    if (!host || !*host) {
        if ((r = api_store_begin(a->store)) == 0) {
            api_compute_release_volumes(a, project, doc);
            if ((r = api_store_delete(a->store, "server", c->target)) < 0)
                api_store_rollback(a->store);
            else
                r = api_store_commit(a->store);
        }
    } else {
        json_object_set_new(doc, "_desired", json_string("deleted"));
        r = nova_server_save(a, doc, project);
    }
    json_decref(doc);
    if (r < 0)
        api_fault(c, 500, NULL, "The server cannot be deleted.");
    else
        api_reply(c, 204, NULL);
}

/* ---- registration ---- */

void api_compute_routes(Api *a)
{
    SovRouter *r = a->router;
    nova_catalog_routes(a);
    sov_router_add(r, "GET", NOVA "/servers", 0, h_servers, a);
    sov_router_add(r, "POST", NOVA "/servers", 0, h_server_create, a);
    sov_router_add(r, "GET", NOVA "/servers/detail", 0, h_servers_detail, a);
    sov_router_add(r, "GET", NOVA "/servers/{id}", 0, h_server_show, a);
    sov_router_add(r, "PUT", NOVA "/servers/{id}", 0, h_server_update, a);
    sov_router_add(r, "DELETE", NOVA "/servers/{id}", 0, h_server_delete, a);
    sov_router_add(r, "POST", NOVA "/servers/{id}/action", 0, nova_server_action, a);
    sov_router_add(r, "GET", NOVA "/servers/{id}/os-volume_attachments", 0, nova_attachments, a);
    sov_router_add(r, "POST", NOVA "/servers/{id}/os-volume_attachments", 0, nova_attachment_create,
                   a);
    sov_router_add(r, "GET", NOVA "/servers/{id}/os-volume_attachments/{vol}", 0,
                   nova_attachment_show, a);
    sov_router_add(r, "DELETE", NOVA "/servers/{id}/os-volume_attachments/{vol}", 0,
                   nova_attachment_delete, a);
}

int api_compute_start(Api *a, SovBuf *err)
{
    nova_flavors_seed(a);
    view_cache = calloc(VIEW_CACHE, sizeof(*view_cache)); /* NULL: listings parse every time */
    return 0;
}

void api_compute_stop(Api *a)
{
    for (size_t i = 0; view_cache && i < VIEW_CACHE; i++)
        for (int k = 0; k < 3; k++)
            free(view_cache[i].text[k]);
    free(view_cache);
    view_cache = NULL;
}
