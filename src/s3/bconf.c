/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket configuration documents and object metadata edits. A bucket's sub-resources (policy,
 * ACL, CORS, tagging, lifecycle, ...) live as members of one JSON object in buckets.config, read
 * on a loop's connection and changed through the writer thread like every other change; an
 * object's ACL, tags and restore state live in its metadata JSON under keys beginning with '_'. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/log.h"

const char *s3_principal(const S3Req *r)
{
    return r->key ? r->key->account : "";
}

static int config_read(sqlite3 *db, const char *bucket, json_t **ret)
{
    sqlite3_stmt *s;
    *ret = NULL;
    if (sqlite3_prepare_v2(db, "SELECT config FROM buckets WHERE name=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), r = 0;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        *ret = json_loads(t ? t : "{}", 0, NULL);
        if (!*ret || !json_is_object(*ret)) {
            json_decref(*ret);
            *ret = json_object(); /* a damaged document reads as no configuration */
        }
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return r;
}

int s3_bucket_config_get(sqlite3 *db, const char *bucket, const char *name, json_t **ret)
{
    json_t *all;
    int rc = config_read(db, bucket, &all);
    *ret = NULL;
    if (rc < 0)
        return rc;
    json_t *v = json_object_get(all, name);
    if (v)
        *ret = json_incref(v);
    json_decref(all);
    return 0;
}

typedef struct ConfOp {
    S3WriteOp w;
    S3Req *r;
    char name[32];
    json_t *value;
    void (*done)(S3Req *r, int status);
} ConfOp;

static int conf_apply(sqlite3 *db, S3WriteOp *w)
{
    ConfOp *op = (ConfOp *)w;
    json_t *all;
    /* the bucket the access check saw: not one deleted and made again by someone else since */
    int rc = s3_meta_check_bucket(db, w, op->r->bucket, op->r->bucket_owner);
    if (rc < 0 || (rc = config_read(db, op->r->bucket, &all)) < 0)
        return rc;
    if (op->value)
        json_object_set(all, op->name, op->value);
    else
        json_object_del(all, op->name);
    char *text = json_dumps(all, JSON_COMPACT);
    json_decref(all);
    if (!text)
        return -ENOMEM;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "UPDATE buckets SET config=? WHERE name=?", -1, &s, NULL) !=
        SQLITE_OK) {
        free(text);
        return -EIO;
    }
    sqlite3_bind_text(s, 1, text, -1, free);
    sqlite3_bind_text(s, 2, op->r->bucket, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void conf_done(S3WriteOp *w, int status)
{
    ConfOp *op = (ConfOp *)w;
    S3Req *r = op->r;
    void (*done)(S3Req *, int) = op->done;
    json_decref(op->value);
    free(op);
    done(r, status);
}

void s3_bucket_config_set(S3Req *r, const char *name, json_t *value,
                          void (*done)(S3Req *r, int status))
{
    ConfOp *op = calloc(1, sizeof(*op));
    if (!op || strlen(name) >= sizeof(op->name)) {
        free(op);
        json_decref(value);
        done(r, -ENOMEM);
        return;
    }
    op->r = r;
    snprintf(op->name, sizeof(op->name), "%s", name);
    op->value = value;
    op->done = done;
    op->w.apply = conf_apply;
    op->w.done = conf_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

int s3_bucket_subresource(S3Req *r, const char *name, void (*put)(S3Req *r),
                          void (*stored)(S3Req *r, int status), json_t **doc)
{
    S3Bucket b;
    SovStr m = sov_http_req_method(r->http);
    *doc = NULL;
    if (s3_require_bucket(r, &b) < 0)
        return 0;
    if (sov_str_eq(m, SOV_STR("PUT"))) {
        s3_body_xml(r, put);
        return 0;
    }
    if (sov_str_eq(m, SOV_STR("DELETE"))) {
        s3_bucket_config_set(r, name, NULL, stored);
        return 0;
    }
    int rc = s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, name, doc);
    if (rc == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (rc < 0)
        s3_error(r, "InternalError", "metadata read failed");
    return rc < 0 ? 0 : 1;
}

typedef struct MetaOp {
    S3WriteOp w;
    S3Req *r;
    char version[40];
    S3MetaEdit edit;
    void *ud;
    void (*done)(S3Req *r, int status, const char *version);
} MetaOp;

static int meta_apply(sqlite3 *db, S3WriteOp *w)
{
    MetaOp *op = (MetaOp *)w;
    sqlite3_stmt *s;
    int rc = s3_meta_check_bucket(db, w, op->r->bucket, op->r->bucket_owner);
    if (rc < 0)
        return rc;
    const char *q = op->version[0] ? "SELECT version, meta, kind FROM objects"
                                     " WHERE bucket=?1 AND key=?2 AND version=?3"
                                   : "SELECT version, meta, kind FROM objects"
                                     " WHERE bucket=?1 AND key=?2 AND is_latest=1";
    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, op->r->key_name, -1, SQLITE_STATIC);
    if (op->version[0])
        sqlite3_bind_text(s, 3, op->version, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    if (sqlite3_column_int(s, 2) != 0) { /* a delete marker has no metadata to edit */
        sqlite3_finalize(s);
        return -ENOENT;
    }
    snprintf(op->version, sizeof(op->version), "%s", (const char *)sqlite3_column_text(s, 0));
    json_t *meta = json_loads((const char *)sqlite3_column_text(s, 1), 0, NULL);
    sqlite3_finalize(s);
    if (!meta || !json_is_object(meta)) {
        json_decref(meta);
        return -EIO;
    }
    rc = op->edit(meta, op->ud);
    char *text = rc == 0 ? s3_meta_dump(meta) : NULL;
    json_decref(meta);
    if (rc < 0)
        return rc;
    if (!text)
        return -ENOMEM;
    if (sqlite3_prepare_v2(db, "UPDATE objects SET meta=? WHERE bucket=? AND key=? AND version=?",
                           -1, &s, NULL) != SQLITE_OK) {
        free(text);
        return -EIO;
    }
    sqlite3_bind_text(s, 1, text, -1, free);
    sqlite3_bind_text(s, 2, op->r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, op->r->key_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, op->version, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void meta_done(S3WriteOp *w, int status)
{
    MetaOp *op = (MetaOp *)w;
    op->done(op->r, status, op->version);
    free(op);
}

void s3_object_meta_update(S3Req *r, const char *version, S3MetaEdit edit, void *ud,
                           void (*done)(S3Req *r, int status, const char *version))
{
    MetaOp *op = calloc(1, sizeof(*op));
    if (!op || (version && strlen(version) >= sizeof(op->version))) {
        int status = op ? -ENOENT : -ENOMEM;
        free(op);
        done(r, status, "");
        return;
    }
    op->r = r;
    snprintf(op->version, sizeof(op->version), "%s", version ? version : "");
    op->edit = edit;
    op->ud = ud;
    op->done = done;
    op->w.apply = meta_apply;
    op->w.done = meta_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}
