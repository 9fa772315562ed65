/* SPDX-License-Identifier: Apache-2.0 */
/* The lifecycle worker: applies the buckets' lifecycle rules (lifecycle.c stores them) in the
 * background, expires restores and moves INTELLIGENT_TIERING objects to their archive tier. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle-int.h"
#include "s3.h"
#include "sov/log.h"

#define LC_BATCH 1000 /* index rows read per step, and so at most the actions of a write op */
/* INTELLIGENT_TIERING: days without a write or read before archiving (not a lifecycle rule: no
 * rounding to midnight) */
#define LC_TIER_DAYS 30

/* ---- the lifecycle worker ----
 * One pass at a time on the main loop. A pass lists the buckets with enabled rules, then for
 * each walks its objects in (key, seq) order, LC_BATCH index rows per step, collecting a key's
 * versions before deciding about them (a noncurrent version's age counts from the mtime of the
 * next newer one), then its multipart uploads; at most once per lifecycle day it also sweeps
 * every object for expired restores and the INTELLIGENT_TIERING archive tier. The actions of a
 * step go to the writer as one op, which checks each against the row again (a write may have
 * come in between) and skips those that no longer hold; the next step starts once it is back. */

enum {
    ACT_EXPIRE,
    ACT_EXPIRE_MARKER,
    ACT_EXPIRE_NONCURRENT,
    ACT_TRANSITION,
    ACT_TRANSITION_NONCURRENT,
    ACT_ABORT_UPLOAD,
    ACT_RESTORE_EXPIRED,
    ACT_ARCHIVE_TIER,
    ACT_ACCESS, /* INTELLIGENT_TIERING: a read recorded (back to the frequent tier) */
    ACT_N
};
static const char *const act_names[ACT_N] = {
    "expire",          "expire_delete_marker",  "expire_noncurrent",
    "transition",      "transition_noncurrent", "abort_upload",
    "restore_expired", "archive_tier",          "access_recorded"};

/* Reads of INTELLIGENT_TIERING objects noted by GETs (any worker thread) since the last pass;
 * bounded: reads beyond it are not counted until the next pass. */
#define LC_ACCESS_MAX 65536
typedef struct LcAccess {
    char *bucket, *key;
    char version[40];
    int64_t ms;
} LcAccess;

typedef struct LcBucket {
    char name[S3_MAX_BUCKET + 1];
    json_t *doc; /* the lifecycle document the rules point into */
    LcRule *rules;
    size_t nrules;
    bool need_tags, objects, uploads;
} LcBucket;

typedef struct LcAction {
    int type;
    char *bucket, *key;
    char version[40]; /* the version, or the upload id */
    int64_t guard;    /* mtime, initiation time or restore expiry seen when planned */
    char cls[24];
    json_t *rules; /* the lifecycle document it was planned by (borrowed), NULL: none */
} LcAction;

typedef struct LcRow {
    char version[40];
    bool latest;
    int kind;
    int64_t size, mtime;
    char cls[24];
    json_t *tags; /* NULL without tags or when no rule needs them */
} LcRow;

enum { PH_OBJECTS, PH_UPLOADS, PH_SWEEP, PH_DONE };

typedef struct LcWorker {
    S3Server *srv;
    uv_loop_t *loop;
    uv_timer_t timer; /* the next pass, or the next step of this one */
    S3Loop *sl;
    uv_handle_t *async; /* sl's completion handle, unreferenced while idle */
    bool stopping, busy, in_pass, timer_closed;
    int64_t day_ms, now_ms, last_sweep_ms;
    SovMetric *m[ACT_N];
    /* the pass: buckets[bi] in phase, the cursor after the last row read */
    LcBucket *buckets;
    size_t nbuckets, bi;
    int phase;
    SovBuf c1, c2; /* objects: key / uploads: id / sweep: bucket, key */
    int64_t cseq;
    char cver[40];
    /* the versions of one key, oldest first */
    SovBuf gkey;
    LcRow *rows;
    size_t nrows, caprows;
    LcAction *acts;
    size_t nacts, capacts;
    uv_mutex_t amu; /* guards acc */
    LcAccess *acc;
    size_t nacc, capacc;
} LcWorker;

typedef struct LcBatch {
    S3WriteOp w;
    LcWorker *lw;
    LcAction *acts;
    size_t n;
    int64_t now_ms;
    uint64_t counts[ACT_N];
} LcBatch;

static int64_t jint(json_t *o, const char *name, int64_t none)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? json_integer_value(v) : none;
}

static size_t trans_compile(json_t *arr, LcTrans *out)
{
    size_t i, n = 0;
    json_t *t;
    json_array_foreach(arr, i, t)
    {
        const char *cls = json_string_value(json_object_get(t, "class"));
        if (n == LC_MAX_TRANS || !cls)
            break;
        out[n].days = jint(t, "days", -1);
        out[n].date = jint(t, "date", -1);
        out[n].newer = jint(t, "newer", 0);
        snprintf(out[n].cls, sizeof(out[n].cls), "%s", cls);
        n++;
    }
    return n;
}

void s3_lc_rule_compile(json_t *j, LcRule *r)
{
    json_t *f = json_object_get(j, "filter"), *exp = json_object_get(j, "expiration");
    json_t *nc = json_object_get(j, "noncurrent_expiration");
    r->prefix = json_string_value(json_object_get(f, "prefix"));
    r->prefix = r->prefix ? r->prefix : "";
    r->prefix_len = strlen(r->prefix);
    r->tags = json_object_get(f, "tags");
    r->gt = jint(f, "gt", -1);
    r->lt = jint(f, "lt", -1);
    r->exp_days = jint(exp, "days", -1);
    r->exp_date = jint(exp, "date", -1);
    r->exp_marker = json_is_true(json_object_get(exp, "marker"));
    r->ntr = trans_compile(json_object_get(j, "transitions"), r->tr);
    r->nnctr = trans_compile(json_object_get(j, "noncurrent_transitions"), r->nctr);
    r->nc_days = jint(nc, "days", -1);
    r->nc_newer = jint(nc, "newer", 0);
    r->abort_days = jint(j, "abort_days", -1);
}

static void buckets_free(LcWorker *lw)
{
    for (size_t i = 0; i < lw->nbuckets; i++) {
        json_decref(lw->buckets[i].doc);
        free(lw->buckets[i].rules);
    }
    free(lw->buckets);
    lw->buckets = NULL;
    lw->nbuckets = lw->bi = 0;
}

/* The buckets that have enabled rules, with their rules compiled. */
static int buckets_load(LcWorker *lw)
{
    sqlite3_stmt *s;
    size_t cap = 0;
    if (sqlite3_prepare_v2(s3_loop_db(lw->sl),
                           "SELECT name, config FROM buckets WHERE config LIKE '%\"lifecycle\"%'"
                           " ORDER BY name",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *cfg = json_loads((const char *)sqlite3_column_text(s, 1), 0, NULL);
        json_t *doc = json_incref(json_object_get(cfg, "lifecycle"));
        json_t *rules = json_object_get(doc, "rules"), *rule;
        size_t n = json_array_size(rules), i;
        json_decref(cfg);
        if (lw->nbuckets == cap) {
            LcBucket *nb = realloc(lw->buckets, (cap ? 2 * cap : 16) * sizeof(*nb));
            if (nb) {
                lw->buckets = nb;
                cap = cap ? 2 * cap : 16;
            }
        }
        LcRule *compiled = n ? calloc(n, sizeof(*compiled)) : NULL;
        if (lw->nbuckets == cap || !compiled) {
            json_decref(doc);
            free(compiled);
            if (!n)
                continue;
            rc = SQLITE_NOMEM;
            break;
        }
        LcBucket *b = &lw->buckets[lw->nbuckets];
        *b = (LcBucket){.doc = doc, .rules = compiled};
        snprintf(b->name, sizeof(b->name), "%s", (const char *)sqlite3_column_text(s, 0));
        json_array_foreach(rules, i, rule)
        {
            const char *st = json_string_value(json_object_get(rule, "status"));
            if (!st || strcmp(st, "Enabled") != 0)
                continue;
            LcRule *r = &b->rules[b->nrules++];
            s3_lc_rule_compile(rule, r);
            b->need_tags |= json_array_size(r->tags) > 0;
            b->uploads |= r->abort_days >= 0;
            b->objects |= r->exp_days >= 0 || r->exp_date >= 0 || r->exp_marker || r->ntr ||
                          r->nnctr || r->nc_days >= 0;
        }
        if (b->nrules) {
            lw->nbuckets++;
        } else {
            json_decref(b->doc);
            free(b->rules);
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

bool s3_lc_rule_matches(const LcRule *r, const char *key, size_t klen, int64_t size, json_t *tags,
                        bool marker)
{
    if (klen < r->prefix_len || memcmp(key, r->prefix, r->prefix_len) != 0)
        return false;
    if (marker) /* a delete marker has neither tags nor a size */
        return json_array_size(r->tags) == 0 && r->gt < 0 && r->lt < 0;
    if ((r->gt >= 0 && size <= r->gt) || (r->lt >= 0 && size >= r->lt))
        return false;
    size_t i;
    json_t *pair;
    json_array_foreach(r->tags, i, pair)
    {
        const char *want = json_string_value(json_array_get(pair, 1));
        const char *have =
            json_string_value(json_object_get(tags, json_string_value(json_array_get(pair, 0))));
        if (!have || !want || strcmp(have, want) != 0)
            return false;
    }
    return true;
}

static bool due(const LcWorker *lw, int64_t days, int64_t date, int64_t since_ms)
{
    if (date >= 0)
        return lw->now_ms >= date;
    return days >= 0 && lw->now_ms >= s3_lifecycle_due_ms(since_ms, days, lw->day_ms);
}

static void act_add(LcWorker *lw, int type, const char *bucket, const char *key, size_t klen,
                    const char *version, int64_t guard, const char *cls, json_t *rules)
{
    if (lw->nacts == lw->capacts) {
        size_t cap = lw->capacts ? 2 * lw->capacts : 64;
        LcAction *n = realloc(lw->acts, cap * sizeof(*n));
        if (!n)
            return; /* the next pass tries again */
        lw->acts = n;
        lw->capacts = cap;
    }
    LcAction *a = &lw->acts[lw->nacts];
    *a = (LcAction){.type = type, .guard = guard, .rules = rules};
    a->bucket = strdup(bucket);
    a->key = strndup(key, klen);
    snprintf(a->version, sizeof(a->version), "%s", version);
    snprintf(a->cls, sizeof(a->cls), "%s", cls ? cls : "");
    if (!a->bucket || !a->key) {
        free(a->bucket);
        free(a->key);
        return;
    }
    lw->nacts++;
}

static void acts_free(LcAction *acts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(acts[i].bucket);
        free(acts[i].key);
    }
    free(acts);
}

/* Decides about the versions of one key (rows, oldest first) once they are all read. */
static void group_decide(LcWorker *lw, const LcBucket *b)
{
    const char *key = lw->gkey.ptr;
    size_t klen = lw->gkey.len, n = lw->nrows;
    int64_t rank = 0; /* noncurrent versions newer than this one */
    for (size_t i = n; i-- > 0;) {
        const LcRow *row = &lw->rows[i];
        bool marker = row->kind == 1, expire = false;
        const char *colder = NULL;
        int best = s3_storage_class_rank(row->cls);
        if (row->latest && marker) {
            for (size_t k = 0; k < b->nrules && n == 1 && !expire; k++) {
                const LcRule *r = &b->rules[k];
                expire = s3_lc_rule_matches(r, key, klen, 0, NULL, true) &&
                         (r->exp_marker || due(lw, r->exp_days, -1, row->mtime));
            }
            if (expire)
                act_add(lw, ACT_EXPIRE_MARKER, b->name, key, klen, row->version, row->mtime, NULL,
                        b->doc);
            continue;
        }
        int64_t since = row->latest ? row->mtime : i + 1 < n ? lw->rows[i + 1].mtime : row->mtime;
        for (size_t k = 0; k < b->nrules; k++) {
            const LcRule *r = &b->rules[k];
            if (!s3_lc_rule_matches(r, key, klen, row->size, row->tags, marker))
                continue;
            if (row->latest)
                expire |= due(lw, r->exp_days, r->exp_date, row->mtime);
            else
                expire |= rank >= r->nc_newer && due(lw, r->nc_days, -1, since);
            const LcTrans *tr = row->latest ? r->tr : r->nctr;
            size_t ntr = row->latest ? r->ntr : r->nnctr;
            for (size_t t = 0; t < ntr && !marker; t++) {
                if (rank >= tr[t].newer && due(lw, tr[t].days, tr[t].date, since) &&
                    s3_storage_class_rank(tr[t].cls) > best) {
                    best = s3_storage_class_rank(tr[t].cls);
                    colder = tr[t].cls;
                }
            }
        }
        if (expire)
            act_add(lw, row->latest ? ACT_EXPIRE : ACT_EXPIRE_NONCURRENT, b->name, key, klen,
                    row->version, row->mtime, NULL, b->doc);
        else if (colder)
            act_add(lw, row->latest ? ACT_TRANSITION : ACT_TRANSITION_NONCURRENT, b->name, key,
                    klen, row->version, row->mtime, colder, b->doc);
        if (!row->latest)
            rank++;
    }
    for (size_t i = 0; i < n; i++)
        json_decref(lw->rows[i].tags);
    lw->nrows = 0;
    sov_buf_reset(&lw->gkey);
}

static int step_objects(LcWorker *lw, const LcBucket *b, bool *ret_end)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(lw->sl),
                           "SELECT key, version, is_latest, size, mtime_ms, storage_class, meta,"
                           " kind, seq FROM objects WHERE bucket=?1 AND (key, seq, version) >"
                           " (?2, ?3, ?4) ORDER BY key, seq, version LIMIT ?5",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, b->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, lw->c1.ptr ? lw->c1.ptr : "", (int)lw->c1.len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, lw->cseq);
    sqlite3_bind_text(s, 4, lw->cver, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 5, LC_BATCH);
    int rc, nread = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s, 0);
        size_t klen = (size_t)sqlite3_column_bytes(s, 0);
        nread++;
        if (lw->nrows && (klen != lw->gkey.len || memcmp(key, lw->gkey.ptr, klen) != 0))
            group_decide(lw, b);
        if (lw->nrows == 0) {
            sov_buf_reset(&lw->gkey);
            sov_buf_append(&lw->gkey, key, klen);
        }
        if (lw->nrows == lw->caprows) {
            size_t cap = lw->caprows ? 2 * lw->caprows : 16;
            LcRow *nr = realloc(lw->rows, cap * sizeof(*nr));
            if (!nr) {
                rc = SQLITE_NOMEM;
                break;
            }
            lw->rows = nr;
            lw->caprows = cap;
        }
        LcRow *row = &lw->rows[lw->nrows++];
        *row = (LcRow){.latest = sqlite3_column_int(s, 2) != 0,
                       .size = sqlite3_column_int64(s, 3),
                       .mtime = sqlite3_column_int64(s, 4),
                       .kind = sqlite3_column_int(s, 7)};
        snprintf(row->version, sizeof(row->version), "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(row->cls, sizeof(row->cls), "%s", (const char *)sqlite3_column_text(s, 5));
        const char *meta = (const char *)sqlite3_column_text(s, 6);
        if (b->need_tags && meta && strstr(meta, "\"_tags\"")) {
            json_t *m = json_loads(meta, 0, NULL);
            row->tags = json_incref(json_object_get(m, "_tags"));
            json_decref(m);
        }
        sov_buf_reset(&lw->c1);
        sov_buf_append(&lw->c1, key, klen);
        lw->cseq = sqlite3_column_int64(s, 8);
        snprintf(lw->cver, sizeof(lw->cver), "%s", row->version);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return -EIO;
    *ret_end = nread < LC_BATCH;
    if (*ret_end && lw->nrows)
        group_decide(lw, b);
    return 0;
}

static int step_uploads(LcWorker *lw, const LcBucket *b, bool *ret_end)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(lw->sl),
                           "SELECT id, key, initiated_ms FROM uploads WHERE bucket=?1 AND id > ?2"
                           " ORDER BY id LIMIT ?3",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, b->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, lw->c1.ptr ? lw->c1.ptr : "", (int)lw->c1.len, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, LC_BATCH);
    int rc, nread = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        const char *key = (const char *)sqlite3_column_text(s, 1);
        size_t klen = (size_t)sqlite3_column_bytes(s, 1);
        int64_t initiated = sqlite3_column_int64(s, 2);
        nread++;
        for (size_t k = 0; k < b->nrules; k++) {
            const LcRule *r = &b->rules[k];
            if (r->abort_days >= 0 && s3_lc_rule_matches(r, key, klen, 0, NULL, true) &&
                due(lw, r->abort_days, -1, initiated)) {
                act_add(lw, ACT_ABORT_UPLOAD, b->name, key, klen, id, initiated, NULL, b->doc);
                break;
            }
        }
        sov_buf_reset(&lw->c1);
        sov_buf_puts(&lw->c1, id);
    }
    sqlite3_finalize(s);
    *ret_end = nread < LC_BATCH;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* When an INTELLIGENT_TIERING object was last written or read (meta "_atime"). */
static int64_t tier_since(const char *meta_json, int64_t mtime)
{
    json_t *m = json_loads(meta_json, 0, NULL);
    int64_t at = jint(m, "_atime", 0);
    json_decref(m);
    return at > mtime ? at : mtime;
}

/* Every bucket: restores past their expiry, INTELLIGENT_TIERING objects due for the archive
 * tier (the days count from the last write or recorded read). */
static int step_sweep(LcWorker *lw, bool *ret_end)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(s3_loop_db(lw->sl),
                           "SELECT bucket, key, version, storage_class, meta, mtime_ms, kind"
                           " FROM objects WHERE (bucket, key, version) > (?1, ?2, ?3)"
                           " ORDER BY bucket, key, version LIMIT ?4",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, lw->c1.ptr ? lw->c1.ptr : "", (int)lw->c1.len, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, lw->c2.ptr ? lw->c2.ptr : "", (int)lw->c2.len, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, lw->cver, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 4, LC_BATCH);
    int rc, nread = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *bucket = (const char *)sqlite3_column_text(s, 0);
        const char *key = (const char *)sqlite3_column_text(s, 1);
        size_t klen = (size_t)sqlite3_column_bytes(s, 1);
        const char *version = (const char *)sqlite3_column_text(s, 2);
        const char *cls = (const char *)sqlite3_column_text(s, 3);
        const char *meta = (const char *)sqlite3_column_text(s, 4);
        int64_t mtime = sqlite3_column_int64(s, 5), exp;
        nread++;
        if (s3_storage_class_archived(cls) && (exp = s3_restore_expiry(meta)) && exp <= lw->now_ms)
            act_add(lw, ACT_RESTORE_EXPIRED, bucket, key, klen, version, exp, NULL, NULL);
        int64_t last;
        if (strcmp(cls, "INTELLIGENT_TIERING") == 0 && sqlite3_column_int(s, 6) == 0 && meta &&
            !strstr(meta, "\"_tier\":\"archive\"") &&
            lw->now_ms >= (last = tier_since(meta, mtime)) + LC_TIER_DAYS * lw->day_ms)
            act_add(lw, ACT_ARCHIVE_TIER, bucket, key, klen, version, last, NULL, NULL);
        sov_buf_reset(&lw->c1);
        sov_buf_puts(&lw->c1, bucket);
        sov_buf_reset(&lw->c2);
        sov_buf_append(&lw->c2, key, klen);
        snprintf(lw->cver, sizeof(lw->cver), "%s", version);
    }
    sqlite3_finalize(s);
    *ret_end = nread < LC_BATCH;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- applying a batch (writer thread) ---- */

/* The row an action was planned on, if it is still the same: 1 (with is_latest and kind), 0. */
static int row_same(sqlite3 *db, const LcAction *a, bool *latest, int *kind)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT is_latest, kind, mtime_ms FROM objects"
                           " WHERE bucket=? AND key=? AND version=?",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, a->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, a->version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW && sqlite3_column_int64(s, 2) == a->guard) {
        *latest = sqlite3_column_int(s, 0) != 0;
        *kind = sqlite3_column_int(s, 1);
        ret = 1;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = -EIO;
    }
    sqlite3_finalize(s);
    return ret;
}

static int count_versions(sqlite3 *db, const LcAction *a)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM objects WHERE bucket=? AND key=?", -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, a->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int n = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -EIO;
    sqlite3_finalize(s);
    return n;
}

static int exec_bound(sqlite3 *db, const char *sql, const char *a1, const char *a2, const char *a3,
                      const char *a4, int64_t i5)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    const char *args[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4; i++)
        if (args[i] && sqlite3_bind_parameter_count(s) > i)
            sqlite3_bind_text(s, i + 1, args[i], -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 5)
        sqlite3_bind_int64(s, 5, i5);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -EIO;
}

static int abort_upload(sqlite3 *db, S3WriteOp *w, const LcAction *a)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM uploads WHERE id=?1 AND bucket=?2 AND initiated_ms=?3",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, a->version, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, a->guard);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -EIO;
    if (sqlite3_prepare_v2(db, "SELECT layout FROM parts WHERE upload=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, a->version, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE ||
        exec_bound(db, "DELETE FROM parts WHERE upload=?1", a->version, NULL, NULL, NULL, 0) < 0 ||
        exec_bound(db, "DELETE FROM uploads WHERE id=?1", a->version, NULL, NULL, NULL, 0) < 0)
        return -EIO;
    return 1;
}

/* Rewrites one version's metadata: drops an expired restore, or records the archive tier. */
static int meta_fix(sqlite3 *db, const LcAction *a)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT meta, storage_class, mtime_ms FROM objects"
                           " WHERE bucket=? AND key=? AND version=? AND kind=0",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, a->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, a->version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return rc == SQLITE_DONE ? 0 : -EIO;
    }
    json_t *meta = json_loads((const char *)sqlite3_column_text(s, 0), 0, NULL);
    bool tiering = strcmp((const char *)sqlite3_column_text(s, 1), "INTELLIGENT_TIERING") == 0;
    int64_t mtime = sqlite3_column_int64(s, 2);
    sqlite3_finalize(s);
    bool change = false;
    if (a->type == ACT_RESTORE_EXPIRED) {
        change = jint(json_object_get(meta, "_restore"), "expiry_ms", 0) == a->guard;
        if (change)
            json_object_del(meta, "_restore");
    } else if (a->type == ACT_ACCESS) {
        /* a read: recorded, and the object is back in the frequent tier */
        if (tiering && jint(meta, "_atime", 0) < a->guard) {
            json_object_set_new(meta, "_atime", json_integer(a->guard));
            json_object_del(meta, "_tier");
            change = true;
        }
    } else if (tiering && a->guard == SOV_MAX(mtime, jint(meta, "_atime", 0))) {
        change = json_object_set_new(meta, "_tier", json_string("archive")) == 0;
    }
    char *text = change ? s3_meta_dump(meta) : NULL;
    json_decref(meta);
    if (!change)
        return 0;
    if (!text)
        return -ENOMEM;
    rc = exec_bound(db, "UPDATE objects SET meta=?4 WHERE bucket=?1 AND key=?2 AND version=?3",
                    a->bucket, a->key, a->version, text, 0);
    free(text);
    return rc < 0 ? rc : 1;
}

/* 1 done, 0 no longer applies, < 0 error. */
static int act_apply(sqlite3 *db, S3WriteOp *w, const LcAction *a, int64_t now_ms)
{
    bool latest = false;
    int kind = 0, rc;
    char marker[40];
    switch (a->type) {
    case ACT_EXPIRE:
    case ACT_EXPIRE_MARKER:
    case ACT_EXPIRE_NONCURRENT:
        if ((rc = row_same(db, a, &latest, &kind)) <= 0)
            return rc;
        if (a->type == ACT_EXPIRE) {
            if (!latest || kind != 0)
                return 0;
            rc = s3_meta_expire_current(db, w, a->bucket, a->key, now_ms, marker);
        } else if (a->type == ACT_EXPIRE_MARKER) {
            if (!latest || kind != 1 || (rc = count_versions(db, a)) != 1)
                return rc < 0 ? rc : 0;
            rc = s3_meta_remove_version(db, w, a->bucket, a->key, a->version);
        } else {
            if (latest)
                return 0;
            rc = s3_meta_remove_version(db, w, a->bucket, a->key, a->version);
        }
        return rc < 0 ? rc : 1;
    case ACT_TRANSITION:
    case ACT_TRANSITION_NONCURRENT:
        return exec_bound(db,
                          "UPDATE objects SET storage_class=?4 WHERE bucket=?1 AND key=?2 AND"
                          " version=?3 AND mtime_ms=?5 AND kind=0",
                          a->bucket, a->key, a->version, a->cls, a->guard);
    case ACT_ABORT_UPLOAD:
        return abort_upload(db, w, a);
    default:
        return meta_fix(db, a);
    }
}

/* Are the bucket's stored rules still the ones an action was planned by? 1 yes, 0 no (changed,
 * deleted, or the bucket is gone), < 0 error. */
static int rules_current(sqlite3 *db, const char *bucket, json_t *rules)
{
    json_t *cur = NULL;
    int rc = s3_bucket_config_get(db, bucket, "lifecycle", &cur);
    int same = json_equal(cur, rules);
    json_decref(cur);
    return rc < 0 && rc != -ENOENT ? rc : same;
}

static int batch_apply(sqlite3 *db, S3WriteOp *w)
{
    LcBatch *b = (LcBatch *)w;
    json_t *checked = NULL;
    int current = 0;
    memset(b->counts, 0, sizeof(b->counts));
    for (size_t i = 0; i < b->n; i++) {
        if (b->acts[i].rules && b->acts[i].rules != checked) {
            checked = b->acts[i].rules;
            if ((current = rules_current(db, b->acts[i].bucket, checked)) < 0)
                return current;
        }
        if (b->acts[i].rules && !current)
            continue; /* the rules changed since the pass began: the next pass decides */
        int rc = act_apply(db, w, &b->acts[i], b->now_ms);
        if (rc < 0)
            return rc;
        b->counts[b->acts[i].type] += rc > 0;
    }
    return 0;
}

static void lc_step(LcWorker *lw);

static void batch_done(S3WriteOp *w, int status)
{
    LcBatch *b = (LcBatch *)w;
    LcWorker *lw = b->lw;
    if (status < 0) {
        log_warn_errno(status, "lifecycle: %zu actions failed (retried next pass)", b->n);
    } else {
        for (int i = 0; i < ACT_N; i++) {
            if (b->counts[i] && lw->m[i])
                sov_counter_add(lw->m[i], b->counts[i]);
            if (b->counts[i])
                log_info("lifecycle action=%s count=%" PRIu64, act_names[i], b->counts[i]);
        }
    }
    acts_free(b->acts, b->n);
    sov_buf_release(&b->w.unlink_after);
    free(b);
    lw->busy = false;
    if (lw->async)
        uv_unref(lw->async);
    if (!lw->stopping)
        lc_step(lw);
}

/* ---- the pass ---- */

static void cursor_reset(LcWorker *lw)
{
    sov_buf_reset(&lw->c1);
    sov_buf_reset(&lw->c2);
    lw->cseq = INT64_MIN;
    lw->cver[0] = '\0';
}

/* Moves on to the next phase that has work (next: leave the current one first). */
static void phase_settle(LcWorker *lw, bool next)
{
    for (;;) {
        if (next) {
            if (lw->phase == PH_OBJECTS)
                lw->phase = PH_UPLOADS;
            else if (lw->phase == PH_UPLOADS) {
                lw->bi++;
                lw->phase = PH_OBJECTS;
            } else
                lw->phase = PH_DONE;
            cursor_reset(lw);
        }
        next = true;
        if (lw->phase >= PH_SWEEP)
            return;
        if (lw->bi >= lw->nbuckets) {
            bool sweep = lw->now_ms - lw->last_sweep_ms >= lw->day_ms;
            lw->phase = sweep ? PH_SWEEP : PH_DONE;
            if (sweep)
                lw->last_sweep_ms = lw->now_ms;
            cursor_reset(lw);
            return;
        }
        const LcBucket *b = &lw->buckets[lw->bi];
        if ((lw->phase == PH_OBJECTS && b->objects) || (lw->phase == PH_UPLOADS && b->uploads))
            return;
    }
}

static void on_timer(uv_timer_t *t);

static void pass_end(LcWorker *lw)
{
    buckets_free(lw);
    lw->in_pass = false;
    uv_timer_start(&lw->timer, on_timer, (uint64_t)lw->srv->cfg.lifecycle_interval * 1000, 0);
}

/* One step: reads up to LC_BATCH rows of the current phase, then hands what is due to the
 * writer (the next step starts when it is back) or yields to the loop. */
static void lc_step(LcWorker *lw)
{
    bool end = false;
    int rc = 0;
    lw->now_ms = s3_now_ms();
    if (lw->phase == PH_OBJECTS)
        rc = step_objects(lw, &lw->buckets[lw->bi], &end);
    else if (lw->phase == PH_UPLOADS)
        rc = step_uploads(lw, &lw->buckets[lw->bi], &end);
    else if (lw->phase == PH_SWEEP)
        rc = step_sweep(lw, &end);
    if (rc < 0) {
        log_warn_errno(rc,
                       "lifecycle: metadata read failed; the pass goes on with the next bucket");
        for (size_t i = 0; i < lw->nrows; i++)
            json_decref(lw->rows[i].tags);
        lw->nrows = 0;
        end = true;
    }
    if (end && lw->phase != PH_DONE)
        phase_settle(lw, true);
    if (lw->nacts) {
        LcBatch *b = calloc(1, sizeof(*b));
        if (b) {
            b->lw = lw;
            b->acts = lw->acts;
            b->n = lw->nacts;
            b->now_ms = lw->now_ms;
            b->w.apply = batch_apply;
            b->w.done = batch_done;
            b->w.loop = lw->sl;
            lw->acts = NULL;
            lw->nacts = lw->capacts = 0;
            lw->busy = true;
            if (lw->async)
                uv_ref(lw->async); /* an op in flight keeps the loop */
            s3_store_submit(lw->srv->store, &b->w);
            return;
        }
        acts_free(lw->acts, lw->nacts);
        lw->acts = NULL;
        lw->nacts = lw->capacts = 0;
    }
    if (lw->phase == PH_DONE)
        pass_end(lw);
    else
        uv_timer_start(&lw->timer, on_timer, 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    LcWorker *lw = t->data;
    if (lw->stopping || lw->busy)
        return;
    if (!lw->in_pass) {
        lw->now_ms = s3_now_ms();
        int rc = buckets_load(lw);
        if (rc < 0) {
            log_warn_errno(rc, "lifecycle: cannot list the buckets' rules");
            buckets_free(lw);
        }
        lw->in_pass = true;
        lw->bi = 0;
        lw->phase = PH_OBJECTS;
        cursor_reset(lw);
        phase_settle(lw, false);
        /* the reads noted since the last pass go with its first batch */
        uv_mutex_lock(&lw->amu);
        LcAccess *acc = lw->acc;
        size_t nacc = lw->nacc;
        lw->acc = NULL;
        lw->nacc = lw->capacc = 0;
        uv_mutex_unlock(&lw->amu);
        for (size_t i = 0; i < nacc; i++) {
            act_add(lw, ACT_ACCESS, acc[i].bucket, acc[i].key, strlen(acc[i].key), acc[i].version,
                    acc[i].ms, NULL, NULL);
            free(acc[i].bucket);
            free(acc[i].key);
        }
        free(acc);
    }
    lc_step(lw);
}

void s3_lifecycle_accessed(S3Server *srv, const S3Object *o)
{
    LcWorker *lw = srv->lifecycle;
    if (!lw || strcmp(o->storage_class, "INTELLIGENT_TIERING") != 0)
        return;
    uv_mutex_lock(&lw->amu);
    if (lw->nacc == lw->capacc && lw->capacc < LC_ACCESS_MAX) {
        size_t cap = lw->capacc ? 2 * lw->capacc : 64;
        LcAccess *n = realloc(lw->acc, cap * sizeof(*n));
        if (n) {
            lw->acc = n;
            lw->capacc = cap;
        }
    }
    if (lw->nacc < lw->capacc) {
        LcAccess *a = &lw->acc[lw->nacc];
        a->bucket = strdup(o->bucket);
        a->key = strdup(o->key);
        snprintf(a->version, sizeof(a->version), "%s", o->version);
        a->ms = s3_now_ms();
        if (a->bucket && a->key) {
            lw->nacc++;
        } else {
            free(a->bucket);
            free(a->key);
        }
    }
    uv_mutex_unlock(&lw->amu);
}

static void find_async(uv_handle_t *h, void *arg)
{
    LcWorker *lw = arg;
    if (h->type == UV_ASYNC && h->data == lw->sl)
        lw->async = h;
}

int s3_lifecycle_start(S3Server *srv, uv_loop_t *loop)
{
    LcWorker *lw = calloc(1, sizeof(*lw));
    if (!lw)
        return -ENOMEM;
    lw->srv = srv;
    lw->loop = loop;
    uv_mutex_init(&lw->amu);
    lw->day_ms = srv->cfg.lifecycle_day_seconds * 1000;
    lw->last_sweep_ms = INT64_MIN / 2;
    if (!(lw->sl = s3_loop_new(srv->store, loop))) {
        uv_mutex_destroy(&lw->amu);
        free(lw);
        return -ENOMEM;
    }
    /* The worker must not keep the main loop alive once the daemon stops: its timer and the
     * completion handle hold it only while an op is in flight. */
    uv_walk(loop, find_async, lw);
    if (lw->async)
        uv_unref(lw->async);
    uv_timer_init(loop, &lw->timer);
    lw->timer.data = lw;
    uv_unref((uv_handle_t *)&lw->timer);
    for (int i = 0; i < ACT_N; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "action=\"%s\"", act_names[i]);
        lw->m[i] = sov_metrics_counter("sov_s3_lifecycle_actions_total",
                                       "objects, versions and uploads the lifecycle worker "
                                       "expired, transitioned or cleaned up",
                                       labels);
    }
    srv->lifecycle = lw;
    uv_timer_start(&lw->timer, on_timer, (uint64_t)srv->cfg.lifecycle_interval * 1000, 0);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    LcWorker *lw = h->data;
    lw->timer_closed = true;
}

void s3_lifecycle_stop(S3Server *srv)
{
    LcWorker *lw = srv->lifecycle;
    if (!lw)
        return;
    lw->stopping = true;
    uv_timer_stop(&lw->timer);
    while (lw->busy) /* the op in flight holds the loop alive until it is back */
        uv_run(lw->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&lw->timer, timer_closed);
    s3_loop_close(lw->sl);
    while (!lw->timer_closed)
        uv_run(lw->loop, UV_RUN_NOWAIT);
    buckets_free(lw);
    for (size_t i = 0; i < lw->nrows; i++)
        json_decref(lw->rows[i].tags);
    free(lw->rows);
    acts_free(lw->acts, lw->nacts);
    sov_buf_release(&lw->c1);
    sov_buf_release(&lw->c2);
    sov_buf_release(&lw->gkey);
    for (size_t i = 0; i < lw->nacc; i++) {
        free(lw->acc[i].bucket);
        free(lw->acc[i].key);
    }
    free(lw->acc);
    uv_mutex_destroy(&lw->amu);
    free(lw);
    srv->lifecycle = NULL;
}
