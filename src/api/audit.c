/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log: <data_dir>/audit.log, one JSON object per line for every mutating call
 *   {"seq":N,"time":"...","request_id":"...","user":"...","project":"...","action":"POST
 *    /compute/v2.1/servers","target":"...","result":202,"prev":"<hex>","hash":"<hex>"}
 * where hash = SHA-256 of the line's JSON without "hash" (members in that order) and prev the
 * hash of the line before (64 zeros for the first). The head (seq and hash of the last line) is
 * also kept in the state database, so removing the newest lines is detected as well as editing
 * or removing any other: `sov audit verify` checks both. Lines are written with O_APPEND and
 * fdatasync'ed before the call is answered. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "sov/crypto.h"
#include "sov/log.h"

#define AUDIT_LINE_MAX 8192

/* Canonical text of an entry without its hash: the exact bytes that are hashed. */
static json_t *entry(uint64_t seq, const char *time, const char *rid, const char *user,
                     const char *project, const char *action, const char *target, int result,
                     const char *prev)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s}", "seq", (json_int_t)seq, "time", time,
                     "request_id", rid, "user", user, "project", project, "action", action,
                     "target", target, "result", result, "prev", prev);
}

static int recover_head(Api *a, const char *path, SovBuf *err)
{
    /* The file is the record; the database keeps the head as a witness. On start the file's
     * last line must match or extend the recorded head (a crash between the two writes leaves
     * the file one entry ahead). */
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    char last_hash[65] = "", head[128];
    uint64_t last_seq = 0;
    if (f) {
        while ((n = getline(&line, &cap, f)) > 0) {
            json_error_t je;
            json_t *v = json_loadb(line, (size_t)n, 0, &je);
            if (!v)
                continue; /* a torn last line from a crash: verify reports it */
            const char *h = json_string_value(json_object_get(v, "hash"));
            if (h && strlen(h) == 64) {
                snprintf(last_hash, sizeof(last_hash), "%s", h);
                last_seq = (uint64_t)json_integer_value(json_object_get(v, "seq"));
            }
            json_decref(v);
        }
        free(line);
        fclose(f);
    }
    if (api_store_meta_get(a->store, "audit_head", head, sizeof(head)) == 0) {
        uint64_t hs = strtoull(head, NULL, 10);
        if (hs > last_seq) {
            sov_buf_printf(err,
                           "audit log %s ends at entry %" PRIu64 " but entry %" PRIu64
                           " was written: the log was truncated "
                           "(run `sov audit verify`)",
                           path, last_seq, hs);
            return -EBADMSG;
        }
    }
    a->audit_seq = last_seq;
    if (last_hash[0])
        sov_hex_decode(last_hash, 64, a->audit_head);
    else
        memset(a->audit_head, 0, sizeof(a->audit_head));
    return 0;
}

int api_audit_open(Api *a, SovBuf *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/audit.log", a->cfg.data_dir);
    int r = recover_head(a, path, err);
    if (r < 0)
        return r;
    a->audit_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (a->audit_fd < 0) {
        sov_buf_printf(err, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

void api_audit_close(Api *a)
{
    if (a->audit_fd >= 0)
        close(a->audit_fd);
    a->audit_fd = -1;
}

int api_audit_append(Api *a, const ApiCall *c, int status)
{
    if (a->audit_fd < 0)
        return -EBADF;
    char now[32], prev[65], action[320], rid[64], hash_hex[65];
    uint8_t hash[SOV_SHA256_LEN];
    SovStr m = sov_http_req_method(c->req), p = sov_http_req_path(c->req);
    api_time_iso(api_now_ms(), now);
    sov_hex_encode(a->audit_head, 32, prev);
    prev[64] = '\0';
    snprintf(action, sizeof(action), SOV_STR_FMT " " SOV_STR_FMT, SOV_STR_ARG(m),
             (int)SOV_MIN(p.len, 256), p.ptr);
    snprintf(rid, sizeof(rid), "req-%s", sov_http_req_id(c->req));
    const char *user = c->auth.user_name[0] ? c->auth.user_name : "-";
    json_t *e = entry(a->audit_seq + 1, now, rid, user, c->auth.project_id, action, c->target,
                      status, prev);
    char *text = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!text) {
        json_decref(e);
        return -ENOMEM;
    }
    sov_sha256(text, strlen(text), hash);
    sov_hex_encode(hash, sizeof(hash), hash_hex);
    hash_hex[64] = '\0';
    free(text);
    json_object_set_new(e, "hash", json_string(hash_hex));
    text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
    if (!text || strlen(text) + 2 > AUDIT_LINE_MAX) {
        free(text);
        return -ENOMEM;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves room: overwrite the NUL, write len + 1 bytes */
    ssize_t w = write(a->audit_fd, text, len + 1);
    free(text);
    if (w != (ssize_t)(len + 1)) {
        log_error("audit log write failed: %s", w < 0 ? strerror(errno) : "short write");
        return -EIO;
    }
    if (a->cfg.fsync && fdatasync(a->audit_fd) < 0)
        log_error("audit log fdatasync: %s", strerror(errno));
    a->audit_seq++;
    memcpy(a->audit_head, hash, sizeof(hash));
    char head[128];
    snprintf(head, sizeof(head), "%" PRIu64 " %s", a->audit_seq, hash_hex);
    api_store_meta_set(a->store, "audit_head", head);
    return 0;
}
