/* SPDX-License-Identifier: Apache-2.0 */
/* The document store on SQLite (see store.h). Statements are prepared once and cached by their
 * text; the revision and creation counters live in memory and in the meta table, written in the
 * same transaction as the documents they stamp. */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "sov/log.h"
#include "sov/macro.h"

#define STMT_CACHE 96

typedef struct CachedStmt {
    char *sql;
    sqlite3_stmt *st;
} CachedStmt;

struct ApiStore {
    sqlite3 *db;
    CachedStmt cache[STMT_CACHE];
    size_t ncache;
    unsigned depth; /* begin nesting */
    bool dirty;     /* a write happened in the current transaction */
    bool failed;    /* a statement failed inside the transaction */
    uint64_t rev;   /* last committed or pending revision */
    uint64_t seq;   /* creation counter */
    uint64_t rev_at_begin, seq_at_begin;
    struct {
        char kind[24];
        uint64_t changed; /* revision of the last update or delete of this kind */
        uint64_t any;     /* ... or insert */
    } kinds[32];
    size_t nkinds;
    void (*on_commit)(void *ud);
    void *on_commit_ud;
};

/* Versioned migrations: index + 1 is the version. Append only; never edit a shipped one. */
static const char *const migrations[] = {
    "CREATE TABLE docs ("
    " kind TEXT NOT NULL, id TEXT NOT NULL, project TEXT NOT NULL DEFAULT '',"
    " name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT '',"
    " host TEXT NOT NULL DEFAULT '', parent TEXT NOT NULL DEFAULT '', uniq TEXT,"
    " seq BIGINT NOT NULL, rev BIGINT NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (kind, id));"
    "CREATE UNIQUE INDEX docs_uniq ON docs (kind, uniq);"
    "CREATE INDEX docs_project ON docs (kind, project, seq);"
    "CREATE INDEX docs_seq ON docs (kind, seq);"
    "CREATE INDEX docs_parent ON docs (kind, parent);"
    "CREATE INDEX docs_host ON docs (kind, host);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('rev', '0');"
    "INSERT INTO meta (key, value) VALUES ('seq', '0');",
};

static sqlite3_stmt *stmt(ApiStore *s, const char *sql)
{
    for (size_t i = 0; i < s->ncache; i++)
        if (strcmp(s->cache[i].sql, sql) == 0) {
            sqlite3_reset(s->cache[i].st);
            sqlite3_clear_bindings(s->cache[i].st);
            return s->cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(s->db));
        return NULL;
    }
    if (s->ncache == STMT_CACHE) { /* evict the oldest */
        free(s->cache[0].sql);
        sqlite3_finalize(s->cache[0].st);
        memmove(&s->cache[0], &s->cache[1], (STMT_CACHE - 1) * sizeof(CachedStmt));
        s->ncache--;
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        return NULL;
    }
    s->cache[s->ncache++] = (CachedStmt){copy, st};
    return st;
}

static int sql_errno(ApiStore *s, int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    default:
        log_error("store: %s", sqlite3_errmsg(s->db));
        return -EIO;
    }
}

static int exec(ApiStore *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("store: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return sql_errno(s, rc);
    }
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

static int meta_get_u64(ApiStore *s, const char *key, uint64_t *ret)
{
    char buf[32];
    int r = api_store_meta_get(s, key, buf, sizeof(buf));
    if (r < 0)
        return r;
    *ret = strtoull(buf, NULL, 10);
    return 0;
}

static int migrate(ApiStore *s, SovBuf *err)
{
    int r = exec(s, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)");
    if (r < 0)
        return r;
    int64_t have = 0;
    sqlite3_stmt *st = stmt(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!st)
        return -EIO;
    if (sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (have > (int64_t)ELEMENTSOF(migrations)) {
        sov_buf_printf(err, "state schema version %" PRId64 " is newer than this sov-api (%zu)",
                       have, ELEMENTSOF(migrations));
        return -EPROTO;
    }
    for (size_t v = (size_t)have; v < ELEMENTSOF(migrations); v++) {
        char ins[96];
        snprintf(ins, sizeof(ins), "INSERT INTO schema_migrations (version) VALUES (%zu)", v + 1);
        if ((r = exec(s, "BEGIN")) < 0)
            return r;
        if ((r = exec(s, migrations[v])) < 0 || (r = exec(s, ins)) < 0) {
            exec(s, "ROLLBACK");
            sov_buf_printf(err, "migration %zu failed", v + 1);
            return r;
        }
        if ((r = exec(s, "COMMIT")) < 0)
            return r;
        log_info("state schema migrated to version %zu", v + 1);
    }
    return 0;
}

int api_store_open(const char *path, bool fsync, ApiStore **ret, SovBuf *err)
{
    ApiStore *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sov_buf_printf(err, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
        api_store_close(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s->db, 5000);
    int r = exec(s, "PRAGMA journal_mode=WAL");
    if (r == 0)
        r = exec(s, fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    if (r == 0)
        r = exec(s, "PRAGMA foreign_keys=ON");
    if (r == 0)
        r = migrate(s, err);
    if (r == 0)
        r = meta_get_u64(s, "rev", &s->rev);
    if (r == 0)
        r = meta_get_u64(s, "seq", &s->seq);
    if (r < 0) {
        if (!err->len)
            sov_buf_printf(err, "cannot open the state in %s: %s", path, strerror(-r));
        api_store_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

ApiStore *api_store_close(ApiStore *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->ncache; i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    sqlite3_close(s->db);
    free(s);
    return NULL;
}

int api_store_begin(ApiStore *s)
{
    if (s->depth++ > 0)
        return 0;
    s->dirty = false;
    s->failed = false;
    s->rev_at_begin = s->rev;
    s->seq_at_begin = s->seq;
    int r = exec(s, "BEGIN IMMEDIATE");
    if (r < 0)
        s->depth = 0;
    return r;
}

static int write_counters(ApiStore *s)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, s->rev);
    int r = api_store_meta_set(s, "rev", buf);
    if (r == 0) {
        snprintf(buf, sizeof(buf), "%" PRIu64, s->seq);
        r = api_store_meta_set(s, "seq", buf);
    }
    return r;
}

int api_store_commit(ApiStore *s)
{
    if (s->depth == 0)
        return -EINVAL;
    if (--s->depth > 0)
        return 0;
    if (s->failed) {
        exec(s, "ROLLBACK");
        s->rev = s->rev_at_begin;
        s->seq = s->seq_at_begin;
        return -EIO;
    }
    int r = s->dirty ? write_counters(s) : 0;
    if (r == 0)
        r = exec(s, "COMMIT");
    if (r < 0) {
        exec(s, "ROLLBACK");
        s->rev = s->rev_at_begin;
        s->seq = s->seq_at_begin;
        return r;
    }
    if (s->dirty && s->on_commit)
        s->on_commit(s->on_commit_ud);
    s->dirty = false;
    return 0;
}

void api_store_rollback(ApiStore *s)
{
    if (s->depth == 0)
        return;
    if (--s->depth > 0) {
        s->failed = true; /* the outer commit turns into a rollback */
        return;
    }
    exec(s, "ROLLBACK");
    s->rev = s->rev_at_begin;
    s->seq = s->seq_at_begin;
    s->dirty = false;
}

/* Runs one write inside a transaction of its own when none is open. */
typedef int (*WriteFn)(ApiStore *s, const void *arg);

static int in_txn(ApiStore *s, WriteFn fn, const void *arg)
{
    int r = api_store_begin(s);
    if (r < 0)
        return r;
    r = fn(s, arg);
    if (r < 0) {
        if (s->depth == 1)
            api_store_rollback(s);
        else {
            s->depth--; /* the caller's transaction decides; this write changed nothing */
        }
        return r;
    }
    return api_store_commit(s);
}

/* Remembers that a document of kind was written at rev (in memory: caches built on these
 * revisions start empty with the process). */
static void kind_touch(ApiStore *s, const char *kind, uint64_t rev, bool insert)
{
    size_t i;
    for (i = 0; i < s->nkinds; i++)
        if (strcmp(s->kinds[i].kind, kind) == 0)
            break;
    if (i == s->nkinds) {
        if (s->nkinds == ELEMENTSOF(s->kinds) || strlen(kind) >= sizeof(s->kinds[0].kind)) {
            /* untracked kind: api_store_kind_rev() answers the global revision for it */
            return;
        }
        snprintf(s->kinds[i].kind, sizeof(s->kinds[i].kind), "%s", kind);
        s->nkinds++;
    }
    s->kinds[i].any = rev;
    if (!insert)
        s->kinds[i].changed = rev;
}

uint64_t api_store_kind_rev(ApiStore *s, const char *kind, bool with_inserts)
{
    for (size_t i = 0; i < s->nkinds; i++)
        if (strcmp(s->kinds[i].kind, kind) == 0)
            return with_inserts ? s->kinds[i].any : s->kinds[i].changed;
    return s->nkinds == ELEMENTSOF(s->kinds) ? s->rev : 0;
}

typedef struct PutArgs {
    const ApiDocMeta *m;
    json_t *doc;
    bool update;
} PutArgs;

static int do_put(ApiStore *s, const void *arg)
{
    const PutArgs *a = arg;
    const ApiDocMeta *m = a->m;
    char *body = json_dumps(a->doc, JSON_COMPACT);
    if (!body)
        return -ENOMEM;
    sqlite3_stmt *st;
    uint64_t rev = s->rev + 1;
    if (a->update)
        st = stmt(s, "UPDATE docs SET project = ?, name = ?, status = ?, host = ?, parent = ?,"
                     " uniq = ?, rev = ?, body = ? WHERE kind = ? AND id = ?");
    else
        st = stmt(s, "INSERT INTO docs (project, name, status, host, parent, uniq, rev, body,"
                     " kind, id, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st) {
        free(body);
        return -EIO;
    }
    bind_text(st, 1, m->project);
    bind_text(st, 2, m->name);
    bind_text(st, 3, m->status);
    bind_text(st, 4, m->host);
    bind_text(st, 5, m->parent);
    if (m->uniq && m->uniq[0])
        sqlite3_bind_text(st, 6, m->uniq, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, (int64_t)rev);
    sqlite3_bind_text(st, 8, body, -1, SQLITE_STATIC);
    bind_text(st, 9, m->kind);
    bind_text(st, 10, m->id);
    if (!a->update)
        sqlite3_bind_int64(st, 11, (int64_t)(s->seq + 1));
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    free(body);
    if (rc != SQLITE_DONE)
        return sql_errno(s, rc);
    if (a->update && sqlite3_changes(s->db) == 0)
        return -ENOENT;
    s->rev = rev;
    kind_touch(s, m->kind, rev, !a->update);
    if (!a->update)
        s->seq++;
    s->dirty = true;
    return 0;
}

int api_store_insert(ApiStore *s, const ApiDocMeta *m, json_t *doc)
{
    PutArgs a = {m, doc, false};
    return in_txn(s, do_put, &a);
}

int api_store_update(ApiStore *s, const ApiDocMeta *m, json_t *doc)
{
    PutArgs a = {m, doc, true};
    return in_txn(s, do_put, &a);
}

typedef struct DelArgs {
    const char *kind, *key;
    bool children;
    int count;
} DelArgs;

static int do_delete(ApiStore *s, const void *arg)
{
    DelArgs *a = (DelArgs *)arg;
    sqlite3_stmt *st = stmt(s, a->children ? "DELETE FROM docs WHERE kind = ? AND parent = ?"
                                           : "DELETE FROM docs WHERE kind = ? AND id = ?");
    if (!st)
        return -EIO;
    bind_text(st, 1, a->kind);
    bind_text(st, 2, a->key);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return sql_errno(s, rc);
    a->count = sqlite3_changes(s->db);
    if (a->count == 0)
        return a->children ? 0 : -ENOENT;
    s->rev++;
    kind_touch(s, a->kind, s->rev, false);
    s->dirty = true;
    return 0;
}

int api_store_delete(ApiStore *s, const char *kind, const char *id)
{
    DelArgs a = {kind, id, false, 0};
    return in_txn(s, do_delete, &a);
}

int api_store_delete_children(ApiStore *s, const char *kind, const char *parent)
{
    DelArgs a = {kind, parent, true, 0};
    int r = in_txn(s, do_delete, &a);
    return r < 0 ? r : a.count;
}

static int load_body(sqlite3_stmt *st, int col, json_t **ret)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    json_error_t je;
    json_t *v = text ? json_loads(text, 0, &je) : NULL;
    if (!v) {
        log_error("store: a stored document does not parse: %s", text ? je.text : "NULL");
        return -EIO;
    }
    *ret = v;
    return 0;
}

int api_store_get(ApiStore *s, const char *kind, const char *id, json_t **ret, char *ret_project,
                  size_t project_cap)
{
    sqlite3_stmt *st = stmt(s, "SELECT body, project FROM docs WHERE kind = ? AND id = ?");
    if (!st)
        return -EIO;
    bind_text(st, 1, kind);
    bind_text(st, 2, id);
    int rc = sqlite3_step(st), r;
    if (rc == SQLITE_ROW) {
        r = load_body(st, 0, ret);
        if (r == 0 && ret_project)
            snprintf(ret_project, project_cap, "%s", (const char *)sqlite3_column_text(st, 1));
    } else
        r = rc == SQLITE_DONE ? -ENOENT : sql_errno(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int api_store_get_uniq(ApiStore *s, const char *kind, const char *uniq, json_t **ret)
{
    sqlite3_stmt *st = stmt(s, "SELECT body FROM docs WHERE kind = ? AND uniq = ?");
    if (!st)
        return -EIO;
    bind_text(st, 1, kind);
    bind_text(st, 2, uniq);
    int rc = sqlite3_step(st), r;
    if (rc == SQLITE_ROW)
        r = load_body(st, 0, ret);
    else
        r = rc == SQLITE_DONE ? -ENOENT : sql_errno(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

/* Builds "WHERE kind = ? [AND col = ?]..." into sql and returns the values to bind in order. */
static size_t where(const ApiListQuery *q, SovBuf *sql, const char **vals)
{
    size_t n = 0;
    sov_buf_puts(sql, " WHERE kind = ?");
    vals[n++] = q->kind;
    static const struct {
        const char *col;
        size_t off;
    } cols[] = {
        {"project", offsetof(ApiListQuery, project)}, {"name", offsetof(ApiListQuery, name)},
        {"status", offsetof(ApiListQuery, status)},   {"host", offsetof(ApiListQuery, host)},
        {"parent", offsetof(ApiListQuery, parent)},
    };
    for (size_t i = 0; i < ELEMENTSOF(cols); i++) {
        const char *v = *(const char *const *)((const char *)q + cols[i].off);
        if (!v)
            continue;
        sov_buf_printf(sql, " AND %s = ?", cols[i].col);
        vals[n++] = v;
    }
    return n;
}

int api_store_list_rows(ApiStore *s, const ApiListQuery *q, ApiRowFn fn, void *ud)
{
    SovBuf sql = SOV_BUF_INIT;
    const char *vals[8];
    int64_t marker_seq = -1;
    if (q->marker) {
        sqlite3_stmt *ms = stmt(s, "SELECT seq FROM docs WHERE kind = ? AND id = ?");
        if (!ms)
            return -EIO;
        bind_text(ms, 1, q->kind);
        bind_text(ms, 2, q->marker);
        if (sqlite3_step(ms) == SQLITE_ROW)
            marker_seq = sqlite3_column_int64(ms, 0);
        sqlite3_reset(ms);
        sqlite3_clear_bindings(ms);
        if (marker_seq < 0)
            return -ENOENT;
    }
    sov_buf_puts(&sql, "SELECT id, rev, body FROM docs");
    size_t n = where(q, &sql, vals);
    if (q->marker)
        sov_buf_puts(&sql, q->desc ? " AND seq < ?" : " AND seq > ?");
    sov_buf_puts(&sql, q->desc ? " ORDER BY seq DESC" : " ORDER BY seq");
    if (q->limit)
        sov_buf_printf(&sql, " LIMIT %zu", q->limit);
    sqlite3_stmt *st = sql.ptr ? stmt(s, sql.ptr) : NULL;
    sov_buf_release(&sql);
    if (!st)
        return -EIO;
    for (size_t i = 0; i < n; i++)
        bind_text(st, (int)i + 1, vals[i]);
    if (q->marker)
        sqlite3_bind_int64(st, (int)n + 1, marker_seq);
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if ((r = fn((const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
                    body ? body : "", len, ud)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = sql_errno(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r < 0 ? r : 0;
}

static int collect_row(const char *id, uint64_t rev, const char *body, size_t len, void *ud)
{
    json_error_t je;
    json_t *v = json_loadb(body, len, 0, &je);
    if (!v) {
        log_error("store: a stored document does not parse: %s", je.text);
        return -EIO;
    }
    json_array_append_new(ud, v);
    return 0;
}

int api_store_list(ApiStore *s, const ApiListQuery *q, json_t **ret)
{
    json_t *arr = json_array();
    int r = api_store_list_rows(s, q, collect_row, arr);
    if (r < 0) {
        json_decref(arr);
        return r;
    }
    *ret = arr;
    return 0;
}

int64_t api_store_count(ApiStore *s, const ApiListQuery *q)
{
    SovBuf sql = SOV_BUF_INIT;
    const char *vals[8];
    sov_buf_puts(&sql, "SELECT COUNT(*) FROM docs");
    size_t n = where(q, &sql, vals);
    sqlite3_stmt *st = sql.ptr ? stmt(s, sql.ptr) : NULL;
    sov_buf_release(&sql);
    if (!st)
        return -EIO;
    for (size_t i = 0; i < n; i++)
        bind_text(st, (int)i + 1, vals[i]);
    int64_t count = -EIO;
    if (sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return count;
}

uint64_t api_store_rev(ApiStore *s)
{
    return s->rev;
}

void api_store_on_commit(ApiStore *s, void (*fn)(void *ud), void *ud)
{
    s->on_commit = fn;
    s->on_commit_ud = ud;
}

int api_store_meta_get(ApiStore *s, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st = stmt(s, "SELECT value FROM meta WHERE key = ?");
    if (!st)
        return -EIO;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st), r = 0;
    if (rc == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    else
        r = rc == SQLITE_DONE ? -ENOENT : sql_errno(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

int api_store_meta_set(ApiStore *s, const char *key, const char *value)
{
    /* portable upsert: update, then insert when nothing was there */
    sqlite3_stmt *st = stmt(s, "UPDATE meta SET value = ? WHERE key = ?");
    if (!st)
        return -EIO;
    bind_text(st, 1, value);
    bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return sql_errno(s, rc);
    if (sqlite3_changes(s->db) > 0)
        return 0;
    st = stmt(s, "INSERT INTO meta (key, value) VALUES (?, ?)");
    if (!st)
        return -EIO;
    bind_text(st, 1, key);
    bind_text(st, 2, value);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : sql_errno(s, rc);
}

json_t *api_doc_public(json_t *doc)
{
    const char *key;
    json_t *v;
    void *tmp;
    if (json_is_object(doc))
        json_object_foreach_safe(doc, tmp, key, v)
        {
            if (key[0] == '_')
                json_object_del(doc, key);
        }
    return doc;
}
