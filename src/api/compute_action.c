/* SPDX-License-Identifier: Apache-2.0 */
/* Nova server actions (start, stop, reboot, resize and its confirm/revert, live migration,
 * console output) and volume attachments. They write intent into the server document (see
 * compute.c); the compute agent on the server's host carries it out and reports back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "compute.h"
#include "sov/json.h"
#include "sov/log.h"

static bool state_allows(ApiCall *c, json_t *doc, const char *action, const char *states)
{
    const char *st = nova_str(doc, "status"), *task = nova_task_state(doc);
    size_t n = st ? strlen(st) : 0;
    const char *p = st ? strstr(states, st) : NULL;
    bool ok = p && (p == states || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0');
    if (task)
        api_fault(c, 409, NULL, "Cannot '%s' instance %s while it is in task_state %s", action,
                  nova_str(doc, "id"), task);
    else if (!ok)
        api_fault(c, 409, NULL, "Cannot '%s' instance %s while it is in vm_state %s", action,
                  nova_str(doc, "id"), nova_vm_state(st));
    return ok && !task;
}

/* ---- servers: actions ---- */

static json_t *console_tail(json_t *doc, json_t *length)
{
    const char *text = nova_str(doc, "_console");
    int64_t want = -1;
    if (json_is_integer(length))
        want = json_integer_value(length);
    else if (json_is_string(length))
        want = strtoll(json_string_value(length), NULL, 10);
    if (!text)
        text = "";
    const char *end = text + strlen(text), *p = end;
    if (want < 0)
        p = text;
    else if (want > 0) { /* back to the start of the last want lines */
        int64_t lines = 0;
        p = end > text && end[-1] == '\n' ? end - 1 : end;
        while (p > text && !(p[-1] == '\n' && ++lines == want))
            p--;
    }
    return json_pack("{s:s}", "output", p);
}

/* Each action checks the state it needs, writes the intent and answers 202 (confirmResize
 * 204, os-getConsoleOutput 200 with the text). */
void nova_server_action(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *b = doc ? api_body(c, NULL) : NULL;
    if (!b)
        goto out;
    const char *act = json_object_size(b) == 1 ? json_object_iter_key(json_object_iter(b)) : "";
    json_t *arg = json_object_get(b, act), *reply = NULL;
    int code = 202;
    if (strcmp(act, "os-start") == 0) {
        if (!state_allows(c, doc, act, "SHUTOFF"))
            goto out;
        json_object_set_new(doc, "_desired", json_string("running"));
    } else if (strcmp(act, "os-stop") == 0) {
        if (!state_allows(c, doc, act, "ACTIVE"))
            goto out;
        json_object_set_new(doc, "_desired", json_string("stopped"));
    } else if (strcmp(act, "reboot") == 0) {
        const char *type = nova_str(arg, "type");
        bool hard = type && strcasecmp(type, "HARD") == 0;
        if (!type || (!hard && strcasecmp(type, "SOFT") != 0)) {
            api_fault(c, 400, NULL, "Invalid input for field/attribute type: SOFT or HARD");
            goto out;
        }
        if (!state_allows(c, doc, act, hard ? "ACTIVE SHUTOFF" : "ACTIVE"))
            goto out;
        json_object_set_new(doc, "status", json_string("REBOOT"));
        json_object_set_new(doc, "_reboot", json_integer(nova_num(doc, "_reboot") + 1));
        json_object_set_new(doc, "_reboot_hard", json_boolean(hard));
        json_object_set_new(doc, "_desired", json_string("running"));
    } else if (strcmp(act, "resize") == 0) {
        json_t *fr = json_object_get(arg, "flavorRef"), *nf = NULL,
               *cur = json_object_get(doc, "_flavor");
        char numref[32];
        const char *ref = json_string_value(fr);
        if (json_is_integer(fr)) {
            snprintf(numref, sizeof(numref), "%" JSON_INTEGER_FORMAT, json_integer_value(fr));
            ref = numref;
        }
        if (!ref || !*ref || !(nf = nova_flavor_lookup(c, nova_ref_id(ref)))) {
            api_fault(c, 400, NULL, "Flavor %.64s could not be found.", ref ? ref : "");
            goto out;
        }
        int64_t dv = nova_num(nf, "vcpus") - nova_num(cur, "vcpus");
        int64_t dr = nova_num(nf, "ram") - nova_num(cur, "ram");
        bool ok = false;
        if (strcmp(nova_str(nf, "id"), nova_str(cur, "id")) == 0)
            api_fault(c, 400, NULL, "When resizing, instances must change flavor!");
        else if (nova_num(nf, "disk") < nova_num(cur, "disk"))
            api_fault(c, 400, NULL, "Resize error: Unable to resize disk down.");
        else if (state_allows(c, doc, act, "ACTIVE SHUTOFF") &&
                 (dv <= 0 || api_quota_check(c, "cores", dv)) &&
                 (dr <= 0 || api_quota_check(c, "ram", dr)))
            ok = true;
        if (ok) {
            json_object_set_new(doc, "_resize", nova_flavor_brief(nf));
            json_object_set_new(doc, "status", json_string("RESIZE"));
        }
        json_decref(nf);
        if (!ok)
            goto out;
    } else if (strcmp(act, "confirmResize") == 0 || strcmp(act, "revertResize") == 0) {
        if (!state_allows(c, doc, act, "VERIFY_RESIZE"))
            goto out;
        if (act[0] == 'c') { /* the new flavor becomes the server's (and its quota usage) */
            nova_set_flavor(doc, json_object_get(doc, "_resize"));
            code = 204;
        }
        json_object_del(doc, "_resize");
        json_object_set_new(doc, "status", json_string("ACTIVE"));
    } else if (strcmp(act, "os-migrateLive") == 0) {
        const char *host = nova_str(doc, "OS-EXT-SRV-ATTR:host"), *to = nova_str(arg, "host");
        char picked[64] = "";
        if (!c->auth.system_admin) {
            api_fault(c, 403, NULL, "Policy does not allow os-migrateLive for your role.");
            goto out;
        }
        if (!json_is_object(arg) ||
            (json_object_get(arg, "host") && !json_is_null(json_object_get(arg, "host")) && !to)) {
            api_fault(c, 400, NULL, "Invalid input for field/attribute os-migrateLive.");
            goto out;
        }
        if (!state_allows(c, doc, act, "ACTIVE"))
            goto out;
        json_t *target = NULL; /* a named host must be a registered compute host */
        bool known =
            !to || (api_store_get(a->store, "host", to, &target, NULL, 0) == 0 &&
                    nova_str(target, "kind") && strcmp(nova_str(target, "kind"), "compute") == 0);
        json_decref(target);
        if (!known) {
            api_fault(c, 400, NULL, "Compute host %.64s could not be found.", to);
            goto out;
        }
        if (!to &&
            api_schedule(a, nova_str(doc, "OS-EXT-AZ:availability_zone"), nova_num(doc, "_vcpus"),
                         nova_num(doc, "_ram"), nova_num(doc, "_gpus"), host, picked) == 0)
            to = picked;
        if (!to || !*to || (host && strcmp(to, host) == 0)) {
            api_fault(c, 400, NULL, "No valid host was found. %s",
                      to ? "The target is the server's current host."
                         : "There are not enough hosts available.");
            goto out;
        }
        json_object_set_new(doc, "_migrate_to", json_string(to));
        json_object_del(doc, "_migration"); /* what an earlier attempt left */
        json_object_set_new(doc, "status", json_string("MIGRATING"));
        /* the ports follow (their binding names the target too) in the same transaction */
        int r = api_store_begin(a->store);
        if (r == 0) {
            if ((r = api_compute_ports_migrating(a, doc, to, NULL)) == 0 &&
                (r = nova_server_save(a, doc, project)) == 0)
                r = api_store_commit(a->store); /* a failed commit has rolled back */
            else
                api_store_rollback(a->store);
        }
        if (r < 0)
            api_fault(c, 500, NULL, "The server cannot be stored.");
        else
            api_reply(c, code, reply);
        goto out;
    } else if (strcmp(act, "os-getConsoleOutput") == 0) {
        json_t *len = json_object_get(arg, "length");
        if (!json_is_object(arg) ||
            (len && !json_is_null(len) && !json_is_integer(len) && !json_is_string(len))) {
            api_fault(c, 400, NULL, "Invalid input for field/attribute length.");
            goto out;
        }
        if (!nova_str(doc, "OS-EXT-SRV-ATTR:host")) {
            api_fault(c, 409, NULL, "Instance %s is not ready yet.", c->target);
            goto out;
        }
        api_reply(c, 200, console_tail(doc, len));
        goto out;
    } else {
        api_fault(c, 400, NULL, "There is no such action: %.64s", act);
        goto out;
    }
    if (nova_server_save(a, doc, project) < 0)
        api_fault(c, 500, NULL, "The server cannot be stored.");
    else
        api_reply(c, code, reply);
out:
    json_decref(doc);
}

/* ---- servers: volume attachments ---- */

static json_t *attachment_view(const char *sid, json_t *e)
{
    return json_pack("{s:O,s:O,s:s,s:O}", "id", json_object_get(e, "volume_id"), "volumeId",
                     json_object_get(e, "volume_id"), "serverId", sid, "device",
                     json_object_get(e, "device_name"));
}

/* The attached mapping of volume vol, or NULL; its index in *ret_index. */
static json_t *attachment_find(json_t *doc, const char *vol, size_t *ret_index)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "_bdm"), i, e)
    {
        const char *v = nova_str(e, "volume_id");
        if (vol && v && strcmp(v, vol) == 0 && json_is_true(json_object_get(e, "attached"))) {
            *ret_index = i;
            return e;
        }
    }
    return NULL;
}

void nova_attachments(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *out = json_array(), *e;
    size_t i;
    json_array_foreach(json_object_get(doc, "_bdm"), i, e)
    {
        if (nova_str(e, "volume_id") && json_is_true(json_object_get(e, "attached")))
            json_array_append_new(out, attachment_view(c->target, e));
    }
    if (doc)
        api_reply(c, 200, json_pack("{s:O}", "volumeAttachments", out));
    json_decref(out);
    json_decref(doc);
}

void nova_attachment_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *e;
    size_t i;
    if (!doc)
        return;
    if ((e = attachment_find(doc, api_param(c, "vol"), &i)))
        api_reply(c, 200, json_pack("{s:o}", "volumeAttachment", attachment_view(c->target, e)));
    else
        api_fault(c, 404, NULL, "Volume %.64s is not attached to instance %s", api_param(c, "vol"),
                  c->target);
    json_decref(doc);
}

void nova_attachment_create(SovHttpReq *req, void *ud)
{
    static const char *const keys[] = {"volumeId", "device", "tag", NULL};
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    char project[API_ID_LEN + 1], dev[32] = "";
    json_t *doc = c ? nova_server_get(c, project) : NULL;
    json_t *b = doc ? api_body(c, "volumeAttachment") : NULL, *bdm = json_object_get(doc, "_bdm");
    SovBuf err = SOV_BUF_INIT;
    const char *vol = NULL, *device = NULL;
    json_t *dv = json_object_get(b, "device"), *e;
    size_t i;
    if (!b)
        goto out;
    if (sov_json_check_keys(b, keys, &err) < 0 ||
        sov_json_get_string(b, "volumeId", true, 64, &vol, &err) < 0 ||
        (dv && !json_is_null(dv) &&
         sov_json_get_string(b, "device", false, 31, &device, &err) < 0) ||
        !api_valid_id(sov_str(vol)) ||
        (device && (strncmp(device, "/dev/", 5) != 0 || !device[5] ||
                    strspn(device + 5, "abcdefghijklmnopqrstuvwxyz") != strlen(device + 5)))) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute volumeAttachment. %s",
                  err.ptr ? err.ptr : "volumeId must be a UUID, device /dev/<letters>");
        goto out;
    }
    if (!state_allows(c, doc, "attach_volume", "ACTIVE SHUTOFF"))
        goto out;
    for (char l = 'b'; !device && l <= 'z'; l++) { /* the next free /dev/vdX */
        bool used = false;
        snprintf(dev, sizeof(dev), "/dev/vd%c", l);
        json_array_foreach(bdm, i, e)
        {
            const char *d = nova_str(e, "device_name");
            used = used || (d && strcmp(d, dev) == 0);
        }
        if (!used)
            device = dev;
    }
    json_array_foreach(bdm, i, e)
    {
        const char *d = nova_str(e, "device_name");
        if (device && d && strcmp(d, device) == 0) {
            api_fault(c, 400, NULL, "The supplied device path (%s) is in use.", device);
            goto out;
        }
    }
    int r = device ? api_volume_attach(a, project, vol, c->target, device) : -ENOSPC;
    if (r < 0) {
        if (r == -ENOENT)
            api_fault(c, 404, NULL, "Volume %s could not be found.", vol);
        else
            api_fault(c, 400, NULL, "Invalid volume: volume %s cannot be attached (%s)", vol,
                      r == -EBUSY ? "it is not available" : strerror(-r));
        goto out;
    }
    e = json_pack("{s:s,s:s,s:s,s:n,s:n,s:b,s:s,s:s,s:b}", "source_type", "volume",
                  "destination_type", "volume", "uuid", vol, "boot_index", "volume_size",
                  "delete_on_termination", 0, "device_name", device, "volume_id", vol, "attached",
                  1);
    json_array_append_new(bdm, json_incref(e));
    json_array_append_new(json_object_get(doc, "os-extended-volumes:volumes_attached"),
                          json_pack("{s:s}", "id", vol));
    if (nova_server_save(a, doc, project) < 0) {
        api_volume_detach(a, project, vol, c->target);
        json_decref(e);
        api_fault(c, 500, NULL, "The server cannot be stored.");
        goto out;
    }
    api_block_kick(a);
    api_reply(c, 200, json_pack("{s:o}", "volumeAttachment", attachment_view(c->target, e)));
    json_decref(e);
out:
    sov_buf_release(&err);
    json_decref(doc);
}

void nova_attachment_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *e, *att, *v;
    const char *vol = doc ? api_param(c, "vol") : NULL;
    size_t idx, i;
    if (!doc)
        return;
    if (!(e = attachment_find(doc, vol, &idx)))
        api_fault(c, 404, NULL, "Volume %.64s is not attached to instance %s", vol ? vol : "",
                  c->target);
    else if (nova_num(e, "boot_index") == 0 && json_is_integer(json_object_get(e, "boot_index")))
        api_fault(c, 400, NULL, "Cannot detach a root device volume");
    else if (state_allows(c, doc, "detach_volume", "ACTIVE SHUTOFF")) {
        int r = api_volume_detach(a, project, vol, c->target);
        if (r < 0 && r != -ENOENT) {
            api_fault(c, 400, NULL, "Invalid volume: %s", strerror(-r));
            goto out;
        }
        json_array_remove(json_object_get(doc, "_bdm"), idx);
        att = json_object_get(doc, "os-extended-volumes:volumes_attached");
        for (i = json_array_size(att); i-- > 0;)
            if ((v = json_array_get(att, i)) && nova_str(v, "id") &&
                strcmp(nova_str(v, "id"), vol) == 0)
                json_array_remove(att, i);
        if (nova_server_save(a, doc, project) < 0)
            api_fault(c, 500, NULL, "The server cannot be stored.");
        else {
            api_block_kick(a);
            api_reply(c, 202, NULL);
        }
    }
out:
    json_decref(doc);
}
