/* SPDX-License-Identifier: Apache-2.0 */
/* `sov audit verify`: checks sov-api's hash-chained audit log. Every line is
 *   {"seq":N,...,"prev":"<hash of line N-1>","hash":"<SHA-256 of this line without hash>"}
 * so an edited line breaks its own hash, a removed or reordered one breaks the chain, and
 * removing the newest lines is caught by the head sov-api records in its state database
 * (meta key audit_head: "<seq> <hash>"). Reads the files only; sov-api may be running. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sov/crypto.h"

#define HASH_KEY ",\"hash\":\""

static int read_head(const char *db_path, uint64_t *seq, char hash[65])
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int r = -ENOENT;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'audit_head'", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v && sscanf(v, "%" SCNu64 " %64s", seq, hash) == 2)
            r = 0;
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

int cli_audit_verify(const char *log_path, const char *db_path)
{
    FILE *f = fopen(log_path, "re");
    if (!f) {
        fprintf(stderr, "sov: cannot open the audit log %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    char *line = NULL, prev[65], hex[65];
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0, last_seq = 0;
    int bad = 0;
    memset(prev, '0', 64);
    prev[64] = '\0';
    while ((n = getline(&line, &cap, f)) > 0 && !bad) {
        lineno++;
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *hk = NULL;
        for (char *p = strstr(line, HASH_KEY); p; p = strstr(p + 1, HASH_KEY))
            hk = p;
        json_error_t je;
        json_t *v = json_loads(line, 0, &je);
        const char *h = json_string_value(json_object_get(v, "hash"));
        const char *pv = json_string_value(json_object_get(v, "prev"));
        json_t *js = json_object_get(v, "seq");
        if (!v || !hk || !h || !pv || !json_is_integer(js) || strlen(h) != 64) {
            printf("audit log BROKEN at line %" PRIu64 ": not an audit entry\n", lineno);
            bad = 1;
        } else if ((uint64_t)json_integer_value(js) != last_seq + 1) {
            printf("audit log BROKEN at line %" PRIu64 ": entry %" PRId64 " follows %" PRIu64
                   " (an entry was removed or reordered)\n",
                   lineno, (int64_t)json_integer_value(js), last_seq);
            bad = 1;
        } else if (strcmp(pv, prev) != 0) {
            printf("audit log BROKEN at line %" PRIu64 ": it does not chain to the entry before "
                   "(an entry was removed or edited)\n",
                   lineno);
            bad = 1;
        } else {
            /* the hashed text is the line with its hash member cut off, closed again */
            uint8_t d[SOV_SHA256_LEN];
            size_t plen = (size_t)(hk - line);
            char *pre = malloc(plen + 2);
            if (!pre) {
                json_decref(v);
                break;
            }
            memcpy(pre, line, plen);
            pre[plen] = '}';
            pre[plen + 1] = '\0';
            sov_sha256(pre, plen + 1, d);
            free(pre);
            sov_hex_encode(d, sizeof(d), hex);
            hex[64] = '\0';
            if (strcmp(hex, h) != 0) {
                printf("audit log BROKEN at line %" PRIu64 ": entry %" PRIu64
                       " was edited (its hash does not match its content)\n",
                       lineno, last_seq + 1);
                bad = 1;
            } else {
                last_seq++;
                memcpy(prev, h, 65);
            }
        }
        json_decref(v);
    }
    free(line);
    fclose(f);
    if (bad)
        return 1;
    uint64_t head_seq;
    char head_hash[65];
    if (db_path && read_head(db_path, &head_seq, head_hash) == 0) {
        if (head_seq > last_seq ||
            (head_seq == last_seq && last_seq > 0 && strcmp(head_hash, prev) != 0)) {
            printf("audit log BROKEN: it ends at entry %" PRIu64
                   " but sov-api recorded entry %" PRIu64
                   " as the last one written (entries were removed from the end)\n",
                   last_seq, head_seq);
            return 1;
        }
    }
    printf("audit log ok: %" PRIu64 " entries, head %s\n", last_seq, prev);
    return 0;
}

int cli_cmd_audit_verify(const Cli *c)
{
    char log_path[PATH_MAX], db_path[PATH_MAX];
    const char *dir = c->api_data_dir;
    int r;
    if (dir) {
        r = snprintf(log_path, sizeof(log_path), "%s/audit.log", dir) < (int)sizeof(log_path) &&
                    snprintf(db_path, sizeof(db_path), "%s/state.db", dir) < (int)sizeof(db_path)
                ? 0
                : -ENAMETOOLONG;
    } else {
        r = cli_path(c, log_path, sizeof(log_path), "api/audit.log");
        if (r == 0)
            r = cli_path(c, db_path, sizeof(db_path), "api/state.db");
    }
    if (r < 0) {
        fprintf(stderr, "sov: path too long\n");
        return 1;
    }
    return cli_audit_verify(log_path, db_path);
}
