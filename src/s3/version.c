/* SPDX-License-Identifier: Apache-2.0 */
/* Versioning: PutBucketVersioning/GetBucketVersioning, the version rules every write follows
 * inside the writer's transaction, and ListObjectVersions.
 *
 * A key's versions are rows of objects with the same (bucket, key): version is 'null' (what
 * unversioned and suspended buckets write) or a random 32-hex-digit id, seq orders them (higher
 * is newer), is_latest marks the current one, kind 1 is a delete marker. A bucket that never
 * had versioning keeps one row per key (a PUT replaces it); Enabled adds a row per PUT and a
 * delete marker per DELETE; Suspended replaces the 'null' row and keeps the others. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

bool s3_version_id_valid(const char *v)
{
    if (strcmp(v, "null") == 0)
        return true;
    size_t n = strlen(v);
    if (n != 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return false;
    return true;
}

static int new_version_id(char out[40])
{
    uint8_t raw[16];
    if (sov_random_bytes(raw, sizeof(raw)) < 0)
        return -EIO;
    sov_hex_encode(raw, sizeof(raw), out);
    return 0;
}

int s3_meta_versioning(sqlite3 *db, const char *bucket, char out[16])
{
    sqlite3_stmt *s;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, "SELECT versioning FROM buckets WHERE name=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), r = 0;
    if (rc == SQLITE_ROW)
        snprintf(out, 16, "%s", (const char *)sqlite3_column_text(s, 0));
    else
        r = rc == SQLITE_DONE ? -ENOENT : -EIO;
    sqlite3_finalize(s);
    return r;
}

static int exec_key(sqlite3 *db, const char *sql, const char *bucket, const char *key,
                    const char *version)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    if (version)
        sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -EIO;
}

/* The seq of a new version of bucket/key: after every existing one. */
static int next_seq(sqlite3 *db, const char *bucket, const char *key, int64_t *ret)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT MAX(seq) FROM objects WHERE bucket=? AND key=?", -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t max = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return -EIO;
    *ret = max + 1;
    return 0;
}

/* Removes one row, queueing its data files for removal after the commit: 1 removed, 0 none. */
static int remove_row(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                      const char *version, bool *was_latest, bool *was_marker)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT layout, is_latest, kind FROM objects"
                           " WHERE bucket=? AND key=? AND version=?",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        s3_op_unlink_layout(w, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
        if (was_latest)
            *was_latest = sqlite3_column_int(s, 1) != 0;
        if (was_marker)
            *was_marker = sqlite3_column_int(s, 2) == 1;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return -EIO;
    rc = exec_key(db, "DELETE FROM objects WHERE bucket=?1 AND key=?2 AND version=?3", bucket, key,
                  version);
    return rc < 0 ? rc : 1;
}

/* Makes room for a new current version under the bucket's versioning state and picks its id and
 * seq into o (version, seq). */
static int make_room(sqlite3 *db, S3WriteOp *w, S3Object *o)
{
    char state[16];
    int rc = s3_meta_versioning(db, o->bucket, state);
    if (rc < 0)
        return rc;
    if (!state[0]) {
        /* never versioned: the new object replaces the key */
        if ((rc = s3_meta_remove_object(db, w, o->bucket, o->key)) < 0)
            return rc;
        snprintf(o->version, sizeof(o->version), "null");
        o->seq = 1;
        return 0;
    }
    if (strcmp(state, "Enabled") == 0) {
        if ((rc = new_version_id(o->version)) < 0)
            return rc;
    } else {
        snprintf(o->version, sizeof(o->version), "null");
        if ((rc = remove_row(db, w, o->bucket, o->key, "null", NULL, NULL)) < 0)
            return rc;
    }
    if ((rc = exec_key(db,
                       "UPDATE objects SET is_latest=0 WHERE bucket=?1 AND key=?2 AND is_latest=1",
                       o->bucket, o->key, NULL)) < 0 ||
        (rc = next_seq(db, o->bucket, o->key, &o->seq)) < 0)
        return rc;
    return 1;
}

int s3_meta_put_version(sqlite3 *db, S3WriteOp *w, S3Object *o)
{
    int rc = make_room(db, w, o), ins;
    if (rc >= 0 && (ins = s3_meta_insert_object(db, o)) < 0)
        rc = ins;
    return rc;
}

int s3_meta_expire_current(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                           int64_t now_ms, char *marker_ret)
{
    char state[16];
    marker_ret[0] = '\0';
    int rc = s3_meta_versioning(db, bucket, state);
    if (rc < 0)
        return rc;
    if (!state[0])
        return (rc = s3_meta_remove_object(db, w, bucket, key)) < 0 ? rc : 0;
    S3Object m = {.bucket = (char *)bucket,
                  .key = (char *)key,
                  .mtime_ms = now_ms,
                  .delete_marker = true,
                  .is_inline = true,
                  .meta_json = "{}"};
    snprintf(m.storage_class, sizeof(m.storage_class), "STANDARD");
    if ((rc = make_room(db, w, &m)) < 0 || (rc = s3_meta_insert_object(db, &m)) < 0)
        return rc;
    snprintf(marker_ret, 40, "%s", m.version);
    return 0;
}

int s3_meta_remove_version_ex(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                              const char *version, bool *was_marker)
{
    bool latest = false;
    *was_marker = false;
    int rc = remove_row(db, w, bucket, key, version, &latest, was_marker);
    if (rc <= 0 || !latest)
        return rc;
    /* the newest remaining version becomes the current one */
    int u = exec_key(db,
                     "UPDATE objects SET is_latest=1 WHERE bucket=?1 AND key=?2 AND version="
                     "(SELECT version FROM objects WHERE bucket=?1 AND key=?2 ORDER BY seq DESC"
                     " LIMIT 1)",
                     bucket, key, NULL);
    return u < 0 ? u : rc;
}

int s3_meta_remove_version(sqlite3 *db, S3WriteOp *w, const char *bucket, const char *key,
                           const char *version)
{
    bool marker;
    int rc = s3_meta_remove_version_ex(db, w, bucket, key, version, &marker);
    return rc < 0 ? rc : 0;
}

/* ---- PutBucketVersioning / GetBucketVersioning ---- */

typedef struct VerOp {
    S3WriteOp w;
    S3Req *r;
    char state[16];
} VerOp;

static int ver_apply(sqlite3 *db, S3WriteOp *w)
{
    VerOp *op = (VerOp *)w;
    int rc = s3_meta_check_bucket(db, w, op->r->bucket, op->r->bucket_owner);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "UPDATE buckets SET versioning=? WHERE name=?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, op->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, op->r->bucket, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void ver_done(S3WriteOp *w, int status)
{
    VerOp *op = (VerOp *)w;
    S3Req *r = op->r;
    if (status < 0)
        s3_error(r, w->err_code[0] ? w->err_code : "InternalError",
                 "The versioning state could not be changed");
    else
        s3_reply_empty(r, 200);
    free(op);
}

static void ver_body(S3Req *r)
{
    SovXmlLimits lim = {.max_bytes = 16384, .max_depth = 4, .max_nodes = 16};
    SovBuf err = SOV_BUF_INIT;
    SovXmlNode *root = NULL;
    if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
        strcmp(root->name, "VersioningConfiguration") != 0) {
        sov_buf_release(&err);
        sov_xml_free(root);
        s3_error(r, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema");
        return;
    }
    sov_buf_release(&err);
    SovXmlNode *st = sov_xml_child(root, "Status");
    SovXmlNode *mfa = sov_xml_child(root, "MfaDelete");
    /* an empty element has no text (NULL) */
    const char *state = st && st->text ? st->text : "";
    const char *mfa_state = mfa && mfa->text ? mfa->text : "";
    bool ok = strcmp(state, "Enabled") == 0 || strcmp(state, "Suspended") == 0;
    bool mfa_on = mfa && strcmp(mfa_state, "Enabled") == 0;
    bool mfa_bad = mfa && !mfa_on && strcmp(mfa_state, "Disabled") != 0;
    if (!ok || mfa_bad) {
        sov_xml_free(root);
        s3_error(r, "MalformedXML", "Versioning Status must be Enabled or Suspended");
        return;
    }
    if (mfa_on) {
        sov_xml_free(root);
        s3_error(r, "NotImplemented", "MFA delete is not supported by sov-s3");
        return;
    }
    VerOp *op = calloc(1, sizeof(*op));
    if (!op) {
        sov_xml_free(root);
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    snprintf(op->state, sizeof(op->state), "%s", state);
    sov_xml_free(root);
    op->r = r;
    op->w.apply = ver_apply;
    op->w.done = ver_done;
    op->w.loop = r->loop;
    s3_store_submit(r->srv->store, &op->w);
}

void s3_bucket_versioning(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (sov_str_eq(sov_http_req_method(r->http), SOV_STR("PUT"))) {
        s3_body_xml(r, ver_body);
        return;
    }
    SovBuf doc = SOV_BUF_INIT;
    SovXmlWriter w;
    sov_xml_writer_init(&w, &doc);
    sov_xml_open(&w, "VersioningConfiguration", S3_XMLNS);
    if (b.versioning[0])
        sov_xml_elem(&w, "Status", sov_str(b.versioning));
    sov_xml_close(&w);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}
