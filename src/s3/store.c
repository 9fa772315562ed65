/* SPDX-License-Identifier: Apache-2.0 */
/* The sov-s3 store. Metadata lives in SQLite (WAL): every worker loop reads through its own
 * read-only connection, and one writer thread applies all changes. The writer takes every
 * change queued since its last commit, applies each inside a savepoint of one transaction and
 * commits them together: one WAL fsync acknowledges a whole batch of PUTs (group commit).
 * Object data larger than the inline limit lives in files named by random ids under
 * objects/xx/, written under tmp/ first and moved in with fsync + rename + directory fsync
 * before the metadata that names them commits; a crash in between leaves an unreferenced file
 * that the start-up sweep removes, never a visible partial object. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3.h"
#include "sov/daemon.h"
#include "sov/log.h"

struct S3Store {
    char dir[PATH_MAX / 2];
    bool fsync;
    int lock_fd; /* flock on data_dir/LOCK: one daemon per data dir */
    sqlite3 *wdb;
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;
    S3WriteOp *head, *tail;
    bool stop;
    S3Drives *drives; /* erasure coding; NULL: data files under dir/objects */
};

struct S3Loop {
    S3Store *st;
    uv_loop_t *uv;
    sqlite3 *rdb;
    uv_async_t async;
    uv_mutex_t mu;
    S3WriteOp *done_head, *done_tail;
    unsigned pending; /* ops submitted from this loop and not yet completed (loop thread only) */
    bool closing;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS buckets(name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    " region TEXT NOT NULL, created_ms INTEGER NOT NULL, versioning TEXT NOT NULL DEFAULT '',"
    " config TEXT NOT NULL DEFAULT '{}');"
    "CREATE TABLE IF NOT EXISTS objects(bucket TEXT NOT NULL, key TEXT NOT NULL,"
    " version TEXT NOT NULL, is_latest INTEGER NOT NULL, size INTEGER NOT NULL,"
    " etag TEXT NOT NULL, mtime_ms INTEGER NOT NULL, storage_class TEXT NOT NULL,"
    " meta TEXT NOT NULL, inline BLOB, inline_crc INTEGER, layout BLOB,"
    " kind INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(bucket, key, version)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS uploads(id TEXT PRIMARY KEY, bucket TEXT NOT NULL,"
    " key TEXT NOT NULL, initiated_ms INTEGER NOT NULL, owner TEXT NOT NULL,"
    " storage_class TEXT NOT NULL, meta TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, initiated_ms);"
    "CREATE TABLE IF NOT EXISTS parts(upload TEXT NOT NULL, num INTEGER NOT NULL,"
    " size INTEGER NOT NULL, etag TEXT NOT NULL, mtime_ms INTEGER NOT NULL,"
    " layout BLOB NOT NULL, PRIMARY KEY(upload, num)) WITHOUT ROWID;";

/* ---- layout: the segments of an object, as stored in objects.layout and parts.layout ---- */

#define LAYOUT_MAGIC  0x53334c31u /* "S3L1": files under objects/ only */
#define LAYOUT_MAGIC2 0x53334c32u /* "S3L2": each segment says its erasure coding */

static void put_u32(SovBuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sov_buf_append(b, x, 4);
}

static void put_u64(SovBuf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int s3_layout_encode(const S3Segment *segs, uint32_t n, SovBuf *out)
{
    bool ec = false;
    for (uint32_t i = 0; i < n; i++)
        ec |= segs[i].ec_k != 0;
    put_u32(out, ec ? LAYOUT_MAGIC2 : LAYOUT_MAGIC);
    put_u32(out, n);
    for (uint32_t i = 0; i < n; i++) {
        sov_buf_append(out, segs[i].file, 32);
        char etag[32] = {0};
        memcpy(etag, segs[i].etag, strnlen(segs[i].etag, 32));
        sov_buf_append(out, etag, 32);
        put_u64(out, segs[i].size);
        put_u32(out, segs[i].nblocks);
        if (ec) {
            put_u32(out, (uint32_t)segs[i].ec_k | (uint32_t)segs[i].ec_m << 8);
            put_u32(out, segs[i].ec_block);
        }
        for (uint32_t j = 0; j < segs[i].nblocks; j++)
            put_u32(out, segs[i].crcs[j]);
    }
    return out->len ? 0 : -ENOMEM;
}

void s3_segments_free(S3Segment *segs, uint32_t n)
{
    if (!segs)
        return;
    for (uint32_t i = 0; i < n; i++)
        free(segs[i].crcs);
    free(segs);
}

int s3_layout_decode(const void *data, size_t len, S3Segment **ret, uint32_t *ret_n)
{
    const uint8_t *p = data, *end = p + len;
    if (len < 8 || (get_u32(p) != LAYOUT_MAGIC && get_u32(p) != LAYOUT_MAGIC2))
        return -EBADMSG;
    bool ec = get_u32(p) == LAYOUT_MAGIC2;
    uint32_t n = get_u32(p + 4);
    p += 8;
    if (n > S3_MAX_PARTS)
        return -EBADMSG;
    S3Segment *segs = calloc(n ? n : 1, sizeof(*segs));
    if (!segs)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 76)
            goto bad;
        memcpy(segs[i].file, p, 32);
        memcpy(segs[i].etag, p + 32, 32);
        segs[i].size = (uint64_t)get_u32(p + 64) | (uint64_t)get_u32(p + 68) << 32;
        segs[i].nblocks = get_u32(p + 72);
        p += 76;
        if (ec) {
            if (end - p < 8)
                goto bad;
            uint32_t km = get_u32(p);
            segs[i].ec_k = (uint8_t)km;
            segs[i].ec_m = (uint8_t)(km >> 8);
            segs[i].ec_block = get_u32(p + 4);
            p += 8;
            EcGeom g = {segs[i].ec_k, segs[i].ec_m, segs[i].ec_block};
            if ((km >> 16) || (segs[i].ec_k && (ec_geom_check(&g) < 0 || segs[i].nblocks)))
                goto bad;
        }
        if ((!segs[i].ec_k && segs[i].nblocks != (segs[i].size + S3_BLOCK - 1) / S3_BLOCK) ||
            (uint64_t)(end - p) < (uint64_t)segs[i].nblocks * 4)
            goto bad;
        segs[i].crcs = malloc(segs[i].nblocks ? segs[i].nblocks * 4u : 1);
        if (!segs[i].crcs)
            goto bad;
        for (uint32_t j = 0; j < segs[i].nblocks; j++, p += 4)
            segs[i].crcs[j] = get_u32(p);
    }
    if (p != end)
        goto bad;
    *ret = segs;
    *ret_n = n;
    return 0;
bad:
    s3_segments_free(segs, n);
    return -EBADMSG;
}

void s3_object_clear(S3Object *o)
{
    free(o->bucket);
    free(o->key);
    free(o->meta_json);
    free(o->inline_data);
    s3_segments_free(o->segs, o->nsegs);
    memset(o, 0, sizeof(*o));
}

/* ---- files ---- */

int s3_file_new_id(char out[33])
{
    uint8_t rnd[16];
    int r = sov_random_bytes(rnd, sizeof(rnd));
    if (r < 0)
        return r;
    sov_hex_encode(rnd, sizeof(rnd), out);
    return 0;
}

int s3_file_path(const S3Store *st, const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/objects/%.2s/%s", st->dir, id, id);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

int s3_file_tmp_path(const S3Store *st, const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/tmp/%s", st->dir, id);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

int s3_file_commit(const S3Store *st, const char *id, int fd)
{
    char tmp[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];
    int r;

    if (st->fsync && fdatasync(fd) < 0)
        return -errno;
    if ((r = s3_file_tmp_path(st, id, tmp, sizeof(tmp))) < 0 ||
        (r = s3_file_path(st, id, dst, sizeof(dst))) < 0)
        return r;
    snprintf(dir, sizeof(dir), "%s/objects/%.2s", st->dir, id);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return -errno;
    if (rename(tmp, dst) < 0)
        return -errno;
    if (st->fsync && (r = sov_fsync_dir(dir)) < 0)
        return r;
    return 0;
}

void s3_file_remove(const S3Store *st, const char *id)
{
    char path[PATH_MAX];
    if (s3_file_path(st, id, path, sizeof(path)) == 0 && unlink(path) < 0 && errno != ENOENT)
        log_error_errno(-errno, "cannot remove %s", path);
    if (st->drives)
        s3_drives_remove(st->drives, id);
}

const EcSet *s3_store_ecset(const S3Store *st)
{
    return st->drives ? s3_drives_set(st->drives) : NULL;
}

void s3_store_geom(const S3Store *st, const char *storage_class, EcGeom *ret)
{
    if (st->drives)
        s3_drives_geom(st->drives, storage_class, ret);
    else
        *ret = (EcGeom){1, 0, EC_BLOCK_DEFAULT};
}

void s3_store_heal_later(S3Store *st, const S3Segment *seg)
{
    if (st->drives && seg->ec_k)
        s3_drives_heal_later(st->drives, seg);
}

void s3_store_stop(S3Store *st)
{
    if (st)
        s3_drives_stop(st->drives);
}

int s3_store_heal_all(S3Store *st, S3HealStats *ret)
{
    memset(ret, 0, sizeof(*ret));
    return st->drives ? s3_drives_heal_all(st->drives, ret) : 0;
}

const char *s3_store_dir(const S3Store *st)
{
    return st->dir;
}

bool s3_store_fsync(const S3Store *st)
{
    return st->fsync;
}

/* ---- writer thread ---- */

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("sqlite: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static void loop_post(S3WriteOp *op)
{
    S3Loop *l = op->loop;
    op->next = NULL;
    uv_mutex_lock(&l->mu);
    if (l->done_tail)
        l->done_tail->next = op;
    else
        l->done_head = op;
    l->done_tail = op;
    uv_mutex_unlock(&l->mu);
    uv_async_send(&l->async);
}

static void writer_batch(S3Store *st, S3WriteOp *ops)
{
    bool ok = exec(st->wdb, "BEGIN IMMEDIATE") == 0;
    for (S3WriteOp *op = ops; op; op = op->next) {
        if (!ok) {
            op->status = -EIO;
            continue;
        }
        if (exec(st->wdb, "SAVEPOINT op") < 0) {
            op->status = -EIO;
            continue;
        }
        op->status = op->apply(st->wdb, op);
        if (op->status < 0)
            exec(st->wdb, "ROLLBACK TO op");
        exec(st->wdb, "RELEASE op");
    }
    if (ok && exec(st->wdb, "COMMIT") < 0) {
        exec(st->wdb, "ROLLBACK");
        ok = false;
    }
    S3WriteOp *next;
    for (S3WriteOp *op = ops; op; op = next) {
        next = op->next;
        if (!ok)
            op->status = -EIO;
        if (op->status == 0) {
            for (size_t i = 0; i < op->unlink_after.len; i += strlen(op->unlink_after.ptr + i) + 1)
                s3_file_remove(st, op->unlink_after.ptr + i);
        }
        loop_post(op);
    }
}

static void writer_main(void *arg)
{
    S3Store *st = arg;
    for (;;) {
        uv_mutex_lock(&st->mu);
        while (!st->head && !st->stop)
            uv_cond_wait(&st->cv, &st->mu);
        S3WriteOp *ops = st->head;
        st->head = st->tail = NULL;
        bool stop = st->stop;
        uv_mutex_unlock(&st->mu);
        if (ops)
            writer_batch(st, ops);
        else if (stop)
            break;
    }
}

void s3_store_submit(S3Store *st, S3WriteOp *op)
{
    op->loop->pending++;
    op->next = NULL;
    op->status = 0;
    uv_mutex_lock(&st->mu);
    if (st->tail)
        st->tail->next = op;
    else
        st->head = op;
    st->tail = op;
    uv_cond_signal(&st->cv);
    uv_mutex_unlock(&st->mu);
}

int s3_op_unlink_after(S3WriteOp *op, const char *file_id)
{
    if (sov_buf_append(&op->unlink_after, file_id, strlen(file_id)) < 0 ||
        sov_buf_putc(&op->unlink_after, '\0') < 0)
        return -ENOMEM;
    return 0;
}

void s3_op_unlink_layout(S3WriteOp *op, const void *layout, size_t n)
{
    S3Segment *segs;
    uint32_t nsegs;
    if (!layout || s3_layout_decode(layout, n, &segs, &nsegs) < 0)
        return;
    for (uint32_t i = 0; i < nsegs; i++)
        s3_op_unlink_after(op, segs[i].file);
    s3_segments_free(segs, nsegs);
}

/* ---- loops ---- */

static void loop_closed(uv_handle_t *h);

static void loop_async(uv_async_t *h)
{
    S3Loop *l = h->data;
    uv_mutex_lock(&l->mu);
    S3WriteOp *ops = l->done_head;
    l->done_head = l->done_tail = NULL;
    uv_mutex_unlock(&l->mu);
    S3WriteOp *next;
    for (S3WriteOp *op = ops; op; op = next) {
        next = op->next;
        l->pending--;
        sov_buf_release(&op->unlink_after);
        op->done(op, op->status);
    }
    if (l->closing && l->pending == 0 && !uv_is_closing((uv_handle_t *)&l->async))
        uv_close((uv_handle_t *)&l->async, loop_closed);
}

static int open_db(const char *path, bool readonly, sqlite3 **ret)
{
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, ret, flags, NULL) != SQLITE_OK) {
        log_error("sqlite: cannot open %s: %s", path, *ret ? sqlite3_errmsg(*ret) : "?");
        sqlite3_close(*ret);
        *ret = NULL;
        return -EIO;
    }
    sqlite3_busy_timeout(*ret, 10000);
    return 0;
}

S3Loop *s3_loop_new(S3Store *st, uv_loop_t *loop)
{
    char path[PATH_MAX];
    S3Loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->st = st;
    l->uv = loop;
    snprintf(path, sizeof(path), "%s/meta.db", st->dir);
    if (open_db(path, true, &l->rdb) < 0) {
        free(l);
        return NULL;
    }
    uv_mutex_init(&l->mu);
    uv_async_init(loop, &l->async, loop_async);
    l->async.data = l;
    return l;
}

/* Prepared read statements, kept per thread (each loop thread has its own connection): parsing
 * SQL cost a third of a small GET. A statement is reset and unbound when its user is done. */
typedef struct StmtCacheEntry {
    sqlite3 *db;
    const char *sql;
    sqlite3_stmt *s;
} StmtCacheEntry;
static _Thread_local StmtCacheEntry stmt_cache[8];

static sqlite3_stmt *cached_stmt(sqlite3 *db, const char *sql)
{
    StmtCacheEntry *free_slot = NULL;
    for (size_t i = 0; i < ELEMENTSOF(stmt_cache); i++) {
        if (stmt_cache[i].db == db && stmt_cache[i].sql == sql)
            return stmt_cache[i].s;
        if (!stmt_cache[i].db && !free_slot)
            free_slot = &stmt_cache[i];
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        return NULL;
    if (free_slot)
        *free_slot = (StmtCacheEntry){db, sql, s};
    return s;
}

static void stmt_release(sqlite3 *db, sqlite3_stmt *s)
{
    for (size_t i = 0; i < ELEMENTSOF(stmt_cache); i++) {
        if (stmt_cache[i].s == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return;
        }
    }
    sqlite3_finalize(s); /* the cache was full */
}

static void loop_closed(uv_handle_t *h)
{
    S3Loop *l = h->data;
    for (size_t i = 0; i < ELEMENTSOF(stmt_cache); i++) {
        if (stmt_cache[i].db == l->rdb) {
            sqlite3_finalize(stmt_cache[i].s);
            stmt_cache[i] = (StmtCacheEntry){0};
        }
    }
    sqlite3_close(l->rdb);
    uv_mutex_destroy(&l->mu);
    free(l);
}

/* Closes once every op this loop submitted has come back: the writer thread may still post
 * completions to it until then. */
void s3_loop_close(S3Loop *l)
{
    if (!l)
        return;
    l->closing = true;
    if (l->pending == 0)
        uv_close((uv_handle_t *)&l->async, loop_closed);
}

sqlite3 *s3_loop_db(S3Loop *l)
{
    return l->rdb;
}

uv_loop_t *s3_loop_uv(S3Loop *l)
{
    return l->uv;
}

/* ---- open, sweep, close ---- */

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Every data file id the layouts name. Any read or decode failure is an error: a sweep that
 * missed a reference would delete data that is still named. */
static int collect_ids(sqlite3 *db, const char *sql, SovBuf *ids)
{
    sqlite3_stmt *s;
    int rc = SQLITE_DONE, r = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    while (r == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        S3Segment *segs;
        uint32_t n;
        if (sqlite3_column_type(s, 0) != SQLITE_BLOB)
            continue;
        if (s3_layout_decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), &segs,
                             &n) < 0) {
            r = -EBADMSG;
            break;
        }
        for (uint32_t i = 0; i < n; i++)
            if (sov_buf_append(ids, segs[i].file, 32) < 0)
                r = -ENOMEM;
        s3_segments_free(segs, n);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(s);
    return r;
}

/* Removes what a crash can leave behind: files in tmp/ (uploads never finished) and data files
 * no metadata names (moved in, but their metadata never committed). */
static void sweep(S3Store *st)
{
    char path[PATH_MAX];
    SovBuf ids = SOV_BUF_INIT;
    unsigned removed = 0;
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/tmp", st->dir);
    if ((d = opendir(path))) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && unlinkat(dirfd(d), e->d_name, 0) == 0)
                removed++;
        closedir(d);
    }
    if (collect_ids(st->wdb, "SELECT layout FROM objects", &ids) < 0 ||
        collect_ids(st->wdb, "SELECT layout FROM parts", &ids) < 0) {
        log_error("start-up sweep skipped: a layout in the metadata cannot be read (no data "
                  "file is removed)");
        sov_buf_release(&ids);
        return;
    }
    size_t n = ids.len / 32;
    if (n)
        qsort(ids.ptr, n, 32, cmp_id);
    for (unsigned i = 0; i < 256; i++) {
        snprintf(path, sizeof(path), "%s/objects/%02x", st->dir, i);
        if (!(d = opendir(path)))
            continue;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            if (strlen(e->d_name) == 32 && n && bsearch(e->d_name, ids.ptr, n, 32, cmp_id))
                continue;
            if (unlinkat(dirfd(d), e->d_name, 0) == 0)
                removed++;
        }
        closedir(d);
    }
    if (st->drives)
        removed += s3_drives_sweep(st->drives, ids.ptr, n);
    if (removed)
        log_info("start-up sweep removed %u unreferenced data files", removed);
    sov_buf_release(&ids);
}

int s3_store_open(const S3StoreConfig *cfg, S3Store **ret, SovBuf *err)
{
    char path[PATH_MAX];
    S3Store *st = calloc(1, sizeof(*st));
    int r;

    if (!st)
        return -ENOMEM;
    if (strlen(cfg->data_dir) >= sizeof(st->dir)) {
        free(st);
        sov_buf_printf(err, "data_dir too long");
        return -ENAMETOOLONG;
    }
    snprintf(st->dir, sizeof(st->dir), "%s", cfg->data_dir);
    st->fsync = cfg->fsync;
    snprintf(path, sizeof(path), "%s/tmp", st->dir);
    if ((r = mkdir_p(path)) < 0) {
        sov_buf_printf(err, "cannot create %s: %s", path, strerror(-r));
        free(st);
        return r;
    }
    /* Two daemons on one store would each sweep the other's files in flight: refuse. */
    snprintf(path, sizeof(path), "%s/LOCK", st->dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        sov_buf_printf(err, "%s is in use by another sov-s3 (%s)", st->dir,
                       r == -EWOULDBLOCK ? "locked" : strerror(-r));
        if (st->lock_fd >= 0)
            close(st->lock_fd);
        free(st);
        return r;
    }
    snprintf(path, sizeof(path), "%s/objects", st->dir);
    mkdir(path, 0750);
    snprintf(path, sizeof(path), "%s/meta.db", st->dir);
    if (open_db(path, false, &st->wdb) < 0 || exec(st->wdb, "PRAGMA journal_mode=WAL") < 0 ||
        exec(st->wdb, st->fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF") < 0 ||
        exec(st->wdb, schema) < 0) {
        sov_buf_printf(err, "cannot open the metadata database %s", path);
        sqlite3_close(st->wdb);
        close(st->lock_fd);
        free(st);
        return -EIO;
    }
    /* The format version: a newer store is refused rather than misread. */
    sqlite3_stmt *s;
    int version = 0;
    if (sqlite3_prepare_v2(st->wdb, "SELECT v FROM meta WHERE k='format'", -1, &s, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            version = atoi((const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
    }
    if (version == 1) {
        /* format 2: delete markers (kind 1) and the order of a key's versions (seq) */
        if (exec(st->wdb, "BEGIN") < 0 ||
            exec(st->wdb, "ALTER TABLE objects ADD COLUMN kind INTEGER NOT NULL DEFAULT 0") < 0 ||
            exec(st->wdb, "ALTER TABLE objects ADD COLUMN seq INTEGER NOT NULL DEFAULT 0") < 0 ||
            exec(st->wdb, "UPDATE meta SET v='2' WHERE k='format'") < 0 ||
            exec(st->wdb, "COMMIT") < 0) {
            sov_buf_printf(err, "cannot upgrade %s to format 2", path);
            sqlite3_close(st->wdb);
            close(st->lock_fd);
            free(st);
            return -EIO;
        }
    }
    if (version == 0) {
        exec(st->wdb, "INSERT INTO meta(k, v) VALUES('format', '2')");
    } else if (version > S3_FORMAT_VERSION) {
        sov_buf_printf(err, "%s has format %d; this sov-s3 reads up to %d", path, version,
                       S3_FORMAT_VERSION);
        sqlite3_close(st->wdb);
        close(st->lock_fd);
        free(st);
        return -EPROTO;
    }
    exec(st->wdb, "CREATE INDEX IF NOT EXISTS objects_versions ON objects(bucket, key, seq DESC)");
    if ((r = s3_drives_open(cfg, path, &st->drives, err)) < 0) {
        sqlite3_close(st->wdb);
        close(st->lock_fd);
        free(st);
        return r;
    }
    sweep(st);
    uv_mutex_init(&st->mu);
    uv_cond_init(&st->cv);
    if (uv_thread_create(&st->thread, writer_main, st) < 0) {
        sqlite3_close(st->wdb);
        close(st->lock_fd);
        free(st);
        return -EAGAIN;
    }
    st->thread_started = true;
    *ret = st;
    return 0;
}

void s3_store_close(S3Store *st)
{
    if (!st)
        return;
    if (st->thread_started) {
        uv_mutex_lock(&st->mu);
        st->stop = true;
        uv_cond_signal(&st->cv);
        uv_mutex_unlock(&st->mu);
        uv_thread_join(&st->thread);
        uv_mutex_destroy(&st->mu);
        uv_cond_destroy(&st->cv);
    }
    s3_drives_close(st->drives);
    sqlite3_close(st->wdb);
    close(st->lock_fd);
    free(st);
}

/* ---- reads ---- */

bool s3_sse_meta_encrypted(const char *meta_json)
{
    if (!meta_json || !strstr(meta_json, "\"_sse\""))
        return false;
    json_t *m = json_loads(meta_json, 0, NULL);
    bool enc = json_is_object(json_object_get(m, "_sse"));
    json_decref(m);
    return enc;
}

uint64_t s3_inline_stored_len(const S3Object *o)
{
    return s3_sse_meta_encrypted(o->meta_json) ? sse_stored_size(o->size) : o->size;
}

int s3_bucket_get(sqlite3 *db, const char *name, S3Bucket *ret)
{
    static const char sql[] = "SELECT owner, region, created_ms, versioning, config = '{}',"
                              " instr(config, '\"lifecycle\"') > 0 FROM buckets WHERE name=?";
    sqlite3_stmt *s = cached_stmt(db, sql);
    int r = -ENOENT;
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "%s", name);
        snprintf(ret->owner, sizeof(ret->owner), "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(ret->region, sizeof(ret->region), "%s", (const char *)sqlite3_column_text(s, 1));
        ret->created_ms = sqlite3_column_int64(s, 2);
        snprintf(ret->versioning, sizeof(ret->versioning), "%s",
                 (const char *)sqlite3_column_text(s, 3));
        ret->no_config = sqlite3_column_int(s, 4) != 0;
        ret->lifecycle = sqlite3_column_int(s, 5) != 0;
        r = 0;
    } else if (rc != SQLITE_DONE) {
        r = -EIO;
    }
    stmt_release(db, s);
    return r;
}

int s3_object_get_meta(sqlite3 *db, const char *bucket, const char *key, S3Object *o)
{
    int r = s3_object_get_version(db, bucket, key, NULL, o);
    if (r == 0 && o->delete_marker) {
        s3_object_clear(o);
        r = -ENOENT;
    }
    return r;
}

int s3_object_get_version(sqlite3 *db, const char *bucket, const char *key, const char *version,
                          S3Object *o)
{
    static const char sql_latest[] =
        "SELECT version, size, etag, mtime_ms, storage_class, meta, inline,"
        " inline_crc, layout, kind, is_latest FROM objects WHERE bucket=?1 AND key=?2"
        " AND is_latest=1";
    static const char sql_version[] =
        "SELECT version, size, etag, mtime_ms, storage_class, meta, inline,"
        " inline_crc, layout, kind, is_latest FROM objects WHERE bucket=?1 AND key=?2"
        " AND version=?3";
    sqlite3_stmt *s = cached_stmt(db, version ? sql_version : sql_latest);
    int r = -ENOENT;
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    if (version)
        sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    memset(o, 0, sizeof(*o));
    if (rc == SQLITE_ROW) {
        o->bucket = strdup(bucket);
        o->key = strdup(key);
        snprintf(o->version, sizeof(o->version), "%s", (const char *)sqlite3_column_text(s, 0));
        o->size = (uint64_t)sqlite3_column_int64(s, 1);
        snprintf(o->etag, sizeof(o->etag), "%s", (const char *)sqlite3_column_text(s, 2));
        o->mtime_ms = sqlite3_column_int64(s, 3);
        snprintf(o->storage_class, sizeof(o->storage_class), "%s",
                 (const char *)sqlite3_column_text(s, 4));
        o->meta_json = strdup((const char *)sqlite3_column_text(s, 5));
        o->delete_marker = sqlite3_column_int(s, 9) == 1;
        o->noncurrent = sqlite3_column_int(s, 10) == 0;
        r = 0;
        if (o->delete_marker) {
            o->is_inline = true;
            o->inline_data = malloc(1);
        } else if (sqlite3_column_type(s, 6) == SQLITE_BLOB ||
                   sqlite3_column_type(s, 8) != SQLITE_BLOB) {
            size_t n = (size_t)sqlite3_column_bytes(s, 6);
            o->is_inline = true;
            o->inline_data = malloc(n ? n : 1);
            if (o->inline_data && n)
                memcpy(o->inline_data, sqlite3_column_blob(s, 6), n);
            o->inline_crc = (uint32_t)sqlite3_column_int64(s, 7);
            /* encrypted data (meta "_sse") is kept in its stored form */
            if (!o->meta_json || n != s3_inline_stored_len(o))
                r = -EBADMSG;
        } else {
            r = s3_layout_decode(sqlite3_column_blob(s, 8), (size_t)sqlite3_column_bytes(s, 8),
                                 &o->segs, &o->nsegs);
        }
        if (!o->bucket || !o->key || !o->meta_json || (o->is_inline && !o->inline_data))
            r = -ENOMEM;
        if (r < 0)
            s3_object_clear(o);
    } else if (rc != SQLITE_DONE) {
        r = -EIO;
    }
    stmt_release(db, s);
    return r;
}
