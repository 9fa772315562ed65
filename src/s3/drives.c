/* SPDX-License-Identifier: Apache-2.0 */
/* The store's drives: with [s3] drives set, object data is erasure-coded (ec.c) into shard
 * files across them, with a geometry per storage class. A healer thread repairs what reads
 * found damaged (queued by s3_store_heal_later) and, every scrub_interval seconds, verifies and
 * repairs every shard of every object and part (s3_store_heal_all, also what `sov s3 heal`
 * asks for). Data files of a store without drives stay under data_dir/objects (store.c). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/metrics.h"

#define HEAL_QUEUE_MAX 1024

typedef struct HealItem {
    char file[33];
    EcGeom g;
    uint64_t size;
    struct HealItem *next;
} HealItem;

struct S3Drives {
    char *paths[EC_MAX_SHARDS * 2];
    unsigned n;
    EcSet set;
    EcGeom def;
    struct {
        char cls[24];
        EcGeom g;
    } cls[8];
    unsigned ncls;
    char db_path[PATH_MAX];
    int64_t scrub_interval;
    uv_thread_t thread;
    bool started, stop;
    uv_mutex_t mu;
    uv_cond_t cv;
    HealItem *head;
    unsigned queued;
    uv_mutex_t pass_mu; /* one repair at a time: heals of one object must not race */
    SovMetric *m_healed, *m_lost, *m_damaged, *m_passes;
};

static int parse_geom(const char *s, unsigned ndrives, EcGeom *g)
{
    unsigned k, m;
    char extra;
    if (sscanf(s, "%u+%u%c", &k, &m, &extra) != 2 || k < 1 || k + m > ndrives)
        return -EINVAL;
    g->k = k;
    g->m = m;
    g->block = EC_BLOCK_DEFAULT;
    return ec_geom_check(g);
}

static bool class_known(const char *c)
{
    static const char *const known[] = {"STANDARD", "STANDARD_IA", "GLACIER", "INTELLIGENT_TIERING",
                                        NULL};
    for (size_t i = 0; known[i]; i++)
        if (strcmp(c, known[i]) == 0)
            return true;
    return false;
}

static bool stopping(S3Drives *d)
{
    return __atomic_load_n(&d->stop, __ATOMIC_ACQUIRE);
}

void s3_drives_stop(S3Drives *d)
{
    if (!d)
        return;
    uv_mutex_lock(&d->mu);
    __atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
    uv_cond_signal(&d->cv);
    uv_mutex_unlock(&d->mu);
}

void s3_drives_close(S3Drives *d)
{
    if (!d)
        return;
    s3_drives_stop(d);
    if (d->started)
        uv_thread_join(&d->thread);
    while (d->head) {
        HealItem *h = d->head;
        d->head = h->next;
        free(h);
    }
    uv_mutex_destroy(&d->mu);
    uv_cond_destroy(&d->cv);
    uv_mutex_destroy(&d->pass_mu);
    for (unsigned i = 0; i < d->n; i++)
        free(d->paths[i]);
    free(d);
}

static void heal_one(S3Drives *d, const char *file, const EcGeom *g, uint64_t size, S3HealStats *st)
{
    uint32_t damaged = 0, healed = 0;
    int rc = ec_heal(&d->set, g, file, size, &damaged, &healed);
    st->segments++;
    st->damaged += (uint64_t)__builtin_popcount(damaged);
    st->healed += (uint64_t)__builtin_popcount(healed);
    if (healed)
        sov_counter_add(d->m_healed, (uint64_t)__builtin_popcount(healed));
    if (damaged)
        sov_counter_add(d->m_damaged, (uint64_t)__builtin_popcount(damaged));
    if (rc < 0 && damaged) {
        log_error("erasure-coded data %s: damaged shards (mask %#x) could not all be rewritten "
                  "(mask %#x): a drive fails",
                  file, damaged, healed);
    } else if (rc < 0) {
        /* No shard left at all: removed meanwhile (a delete racing the pass), not lost. */
        bool any = false;
        for (unsigned i = 0; i < g->k + g->m && !any; i++) {
            char path[PATH_MAX];
            any =
                ec_shard_path(&d->set, file, i, path, sizeof(path)) == 0 && access(path, F_OK) == 0;
        }
        if (any) {
            st->lost++;
            sov_counter_add(d->m_lost, 1);
            log_error("erasure-coded data %s lost: fewer than %u good shards", file, g->k);
        }
    } else if (healed) {
        log_info("healed %d shard(s) of %s", __builtin_popcount(healed), file);
    }
}

static int heal_layouts(S3Drives *d, sqlite3 *db, const char *sql, S3HealStats *st)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    int rc = SQLITE_DONE;
    while (!stopping(d) && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        S3Segment *segs;
        uint32_t n;
        if (sqlite3_column_type(s, 0) != SQLITE_BLOB ||
            s3_layout_decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), &segs,
                             &n) < 0)
            continue;
        for (uint32_t i = 0; i < n && !stopping(d); i++) {
            if (!segs[i].ec_k)
                continue;
            EcGeom g = {segs[i].ec_k, segs[i].ec_m, segs[i].ec_block};
            heal_one(d, segs[i].file, &g, segs[i].size, st);
        }
        s3_segments_free(segs, n);
    }
    sqlite3_finalize(s);
    return stopping(d) ? -ECANCELED : rc == SQLITE_DONE ? 0 : -EIO;
}

int s3_drives_heal_all(S3Drives *d, S3HealStats *ret)
{
    sqlite3 *db;
    memset(ret, 0, sizeof(*ret));
    if (sqlite3_open_v2(d->db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, 5000);
    uv_mutex_lock(&d->pass_mu); /* a pass asked for while the store stops ends at once */
    int rc = heal_layouts(d, db, "SELECT layout FROM objects WHERE layout IS NOT NULL", ret);
    if (rc == 0)
        rc = heal_layouts(d, db, "SELECT layout FROM parts", ret);
    uv_mutex_unlock(&d->pass_mu);
    sqlite3_close(db);
    if (rc == 0)
        sov_counter_add(d->m_passes, 1); /* complete ones only */
    log_info("scrub%s: %" PRIu64 " erasure-coded segments, %" PRIu64 " damaged shards, %" PRIu64
             " rewritten, %" PRIu64 " lost",
             rc == -ECANCELED ? " cut short (stopping)" : "", ret->segments, ret->damaged,
             ret->healed, ret->lost);
    return rc;
}

static void healer_main(void *arg)
{
    S3Drives *d = arg;
    uint64_t next =
        d->scrub_interval ? uv_hrtime() + (uint64_t)d->scrub_interval * 1000000000ull : UINT64_MAX;
    uv_mutex_lock(&d->mu);
    while (!stopping(d)) {
        if (d->head) {
            HealItem *h = d->head;
            d->head = h->next;
            d->queued--;
            uv_mutex_unlock(&d->mu);
            S3HealStats st = {0};
            uv_mutex_lock(&d->pass_mu);
            heal_one(d, h->file, &h->g, h->size, &st);
            uv_mutex_unlock(&d->pass_mu);
            free(h);
            uv_mutex_lock(&d->mu);
            continue;
        }
        uint64_t now = uv_hrtime();
        if (now >= next) {
            uv_mutex_unlock(&d->mu);
            S3HealStats st;
            s3_drives_heal_all(d, &st);
            next = uv_hrtime() + (uint64_t)d->scrub_interval * 1000000000ull;
            uv_mutex_lock(&d->mu);
            continue;
        }
        if (next == UINT64_MAX)
            uv_cond_wait(&d->cv, &d->mu);
        else
            uv_cond_timedwait(&d->cv, &d->mu, next - now);
    }
    uv_mutex_unlock(&d->mu);
}

void s3_drives_heal_later(S3Drives *d, const S3Segment *seg)
{
    uv_mutex_lock(&d->mu);
    bool dup = false;
    for (HealItem *h = d->head; h && !dup; h = h->next)
        dup = strcmp(h->file, seg->file) == 0;
    if (!dup && d->queued < HEAL_QUEUE_MAX) {
        HealItem *h = calloc(1, sizeof(*h));
        if (h) {
            memcpy(h->file, seg->file, sizeof(h->file));
            h->g = (EcGeom){seg->ec_k, seg->ec_m, seg->ec_block};
            h->size = seg->size;
            h->next = d->head;
            d->head = h;
            d->queued++;
            uv_cond_signal(&d->cv);
        }
    }
    uv_mutex_unlock(&d->mu);
}

const EcSet *s3_drives_set(const S3Drives *d)
{
    return &d->set;
}

void s3_drives_geom(const S3Drives *d, const char *cls, EcGeom *ret)
{
    *ret = d->def;
    for (unsigned i = 0; cls && i < d->ncls; i++)
        if (strcmp(d->cls[i].cls, cls) == 0)
            *ret = d->cls[i].g;
}

/* Removes a data file's shards on every drive (whatever its geometry). */
void s3_drives_remove(S3Drives *d, const char *id)
{
    for (unsigned i = 0; i < d->n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/ec/%.2s/%s", d->paths[i], id, id);
        if (unlink(path) < 0 && errno != ENOENT)
            log_error_errno(-errno, "cannot remove %s", path);
    }
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Start-up sweep of the drives: temporary files, and shards no metadata names (ids: sorted
 * 32-byte file ids). */
unsigned s3_drives_sweep(S3Drives *d, const char *ids, size_t n)
{
    unsigned removed = 0;
    char path[PATH_MAX];
    for (unsigned i = 0; i < d->n; i++) {
        DIR *dir;
        struct dirent *e;
        snprintf(path, sizeof(path), "%s/tmp", d->paths[i]);
        if ((dir = opendir(path))) {
            while ((e = readdir(dir)))
                if (e->d_name[0] != '.' && unlinkat(dirfd(dir), e->d_name, 0) == 0)
                    removed++;
            closedir(dir);
        }
        for (unsigned x = 0; x < 256; x++) {
            snprintf(path, sizeof(path), "%s/ec/%02x", d->paths[i], x);
            if (!(dir = opendir(path)))
                continue;
            while ((e = readdir(dir))) {
                if (e->d_name[0] == '.')
                    continue;
                if (strlen(e->d_name) == 32 && n && bsearch(e->d_name, ids, n, 32, cmp_id))
                    continue;
                if (unlinkat(dirfd(dir), e->d_name, 0) == 0)
                    removed++;
            }
            closedir(dir);
        }
    }
    return removed;
}

int s3_drives_open(const S3StoreConfig *cfg, const char *db_path, S3Drives **ret, SovBuf *err)
{
    *ret = NULL;
    if (!cfg->drives || !cfg->drives[0])
        return 0;
    S3Drives *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    uv_mutex_init(&d->mu);
    uv_cond_init(&d->cv);
    uv_mutex_init(&d->pass_mu);
    char *list = strdup(cfg->drives), *save = NULL;
    int rc = list ? 0 : -ENOMEM;
    for (char *t = list ? strtok_r(list, ",", &save) : NULL; t && rc == 0;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = '\0';
        if (!l)
            continue;
        if (d->n == ELEMENTSOF(d->paths) || l > PATH_MAX / 4 || t[0] != '/') {
            sov_buf_printf(err, "drives: at most %zu absolute paths", ELEMENTSOF(d->paths));
            rc = -EINVAL;
        } else if (access(t, W_OK | X_OK) < 0) {
            sov_buf_printf(err, "drive %s: %s", t, strerror(errno));
            rc = -errno;
        } else if (!(d->paths[d->n++] = strdup(t))) {
            rc = -ENOMEM;
        }
    }
    free(list);
    if (rc == 0 && d->n == 0) {
        sov_buf_printf(err, "drives: no drive named");
        rc = -EINVAL;
    }
    if (rc == 0) {
        const char *ec = cfg->ec && cfg->ec[0] ? cfg->ec : "auto";
        rc = strcmp(ec, "auto") == 0 ? ec_geom_default(d->n, &d->def)
                                     : parse_geom(ec, d->n, &d->def);
        if (rc < 0)
            sov_buf_printf(err, "ec = %s: not K+M with K+M <= %u drives", ec, d->n);
    }
    if (rc == 0 && cfg->class_ec && cfg->class_ec[0]) {
        char *cl = strdup(cfg->class_ec), *sv = NULL;
        rc = cl ? 0 : -ENOMEM;
        for (char *t = cl ? strtok_r(cl, ",", &sv) : NULL; t && rc == 0;
             t = strtok_r(NULL, ",", &sv)) {
            char *eq = strchr(t, '=');
            while (*t == ' ')
                t++;
            if (eq)
                *eq = '\0';
            if (!eq || !class_known(t) || d->ncls == ELEMENTSOF(d->cls) ||
                parse_geom(eq + 1, d->n, &d->cls[d->ncls].g) < 0) {
                sov_buf_printf(err, "class_ec: %s is not CLASS=K+M (a storage class, K+M <= %u)", t,
                               d->n);
                rc = -EINVAL;
                break;
            }
            snprintf(d->cls[d->ncls++].cls, sizeof(d->cls[0].cls), "%s", t);
        }
        free(cl);
    }
    if (rc < 0) {
        s3_drives_close(d);
        return rc;
    }
    d->set = (EcSet){.drives = (const char *const *)d->paths,
                     .ndrives = d->n,
                     .ops = cfg->ec_ops,
                     .ops_ud = cfg->ec_ops_ud,
                     .fsync = cfg->fsync};
    snprintf(d->db_path, sizeof(d->db_path), "%s", db_path);
    d->scrub_interval = cfg->scrub_interval;
    d->m_healed = sov_metrics_counter("sov_s3_ec_shards_healed_total",
                                      "shard files rewritten from the other shards", NULL);
    d->m_damaged = sov_metrics_counter("sov_s3_ec_shards_damaged_total",
                                       "shards found missing, unreadable or failing a CRC", NULL);
    d->m_lost = sov_metrics_counter("sov_s3_ec_segments_lost_total",
                                    "data with fewer good shards than it needs", NULL);
    d->m_passes = sov_metrics_counter("sov_s3_scrub_passes_total",
                                      "complete verifications of every shard", NULL);
    if (uv_thread_create(&d->thread, healer_main, d) < 0) {
        s3_drives_close(d);
        return -EAGAIN;
    }
    d->started = true;
    log_info("erasure coding over %u drives: %u+%u by default", d->n, d->def.k, d->def.m);
    *ret = d;
    return 0;
}
