/* SPDX-License-Identifier: Apache-2.0 */
/* ListObjectVersions: every version and delete marker of a bucket in key order, newest first
 * within a key, one index range scan per page over (bucket, key, seq DESC); a delimiter's
 * common prefix is skipped with one seek past it, as in the other listings. The page cursor is
 * (key, seq): key-marker and version-id-marker name the last entry of the previous page. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/xml.h"

static void text(SovXmlWriter *w, bool url, const char *name, SovStr v)
{
    if (!url) {
        sov_xml_elem(w, name, v);
        return;
    }
    SovBuf e = SOV_BUF_INIT;
    s3_uri_encode(&e, v, true);
    sov_xml_elem(w, name, sov_buf_str(&e));
    sov_buf_release(&e);
}

/* The seq of bucket/key/version: 0 found, -ENOENT, -EIO. */
static int seq_of(sqlite3 *db, const char *bucket, const char *key, const char *version,
                  int64_t *ret)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT seq FROM objects WHERE bucket=? AND key=? AND version=?", -1,
                           &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

typedef struct Page {
    const char *prefix, *delim;
    size_t plen, dlen;
    long max;
    bool url;
    long count;
    bool truncated;
    SovBuf last_key;   /* NextKeyMarker */
    char last_ver[40]; /* NextVersionIdMarker ("" after a common prefix) */
} Page;

void s3_list_versions(S3Req *r)
{
    S3Bucket b;
    Page pg = {.max = 1000};
    SovBuf doc = SOV_BUF_INIT, entries = SOV_BUF_INIT, prefixes = SOV_BUF_INIT, cur = SOV_BUF_INIT;
    SovXmlWriter w, ew, pw;
    sqlite3_stmt *s = NULL;
    sqlite3 *db = s3_loop_db(r->loop);

    if (s3_require_bucket(r, &b) < 0)
        return;
    if (s3_list_args(r, &pg.prefix, &pg.delim, &pg.max, &pg.url) < 0)
        return;
    pg.plen = strlen(pg.prefix);
    pg.dlen = pg.delim ? strlen(pg.delim) : 0;
    const char *km = s3_param(r, "key-marker"), *vm = s3_param(r, "version-id-marker");
    if (km && !km[0])
        km = NULL;
    if (vm && !vm[0])
        vm = NULL;
    if (vm && !km) {
        s3_error(r, "InvalidArgument",
                 "A version-id marker cannot be specified without a key marker.");
        return;
    }
    /* The cursor: rows with key > cur, or key == cur and seq < cur_seq. */
    int64_t cur_seq = INT64_MIN;
    if (vm) {
        if (!s3_version_id_valid(vm) || seq_of(db, r->bucket, km, vm, &cur_seq) < 0) {
            s3_error(r, "InvalidArgument", "Invalid version id specified");
            return;
        }
        sov_buf_puts(&cur, km);
    } else if (km) {
        sov_buf_puts(&cur, km);
        size_t cl = cur.len;
        /* a marker that is one of this listing's common prefixes skips everything under it */
        if (pg.delim && cl >= pg.plen + pg.dlen && memcmp(cur.ptr, pg.prefix, pg.plen) == 0 &&
            memcmp(cur.ptr + cl - pg.dlen, pg.delim, pg.dlen) == 0 &&
            memmem(cur.ptr + pg.plen, cl - pg.plen, pg.delim, pg.dlen) == cur.ptr + cl - pg.dlen)
            sov_buf_putc(&cur, (char)0xff);
    }
    bool before_prefix =
        cur.len == 0 || (cur.len < pg.plen ? memcmp(cur.ptr, pg.prefix, cur.len) <= 0
                                           : memcmp(cur.ptr, pg.prefix, pg.plen) < 0);
    if (before_prefix) {
        sov_buf_reset(&cur);
        sov_buf_append(&cur, pg.prefix, pg.plen);
        cur_seq = INT64_MAX;
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT key, version, is_latest, size, etag, mtime_ms, storage_class,"
                           " kind, seq FROM objects INDEXED BY objects_versions"
                           " WHERE bucket=?1 AND (key > ?2 OR (key = ?2 AND seq < ?3))"
                           " ORDER BY key, seq DESC LIMIT 1001",
                           -1, &s, NULL) != SQLITE_OK) {
        sov_buf_release(&cur);
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sov_xml_writer_init(&ew, &entries);
    ew.depth = 1;
    ew.stack[0] = "";
    sov_xml_writer_init(&pw, &prefixes);
    pw.depth = 1;
    pw.stack[0] = "";
    sov_buf_reset(&entries); /* no XML declarations: these are pieces of the document */
    sov_buf_reset(&prefixes);
    bool done = pg.max == 0;
    int rc = SQLITE_DONE;
    while (!done) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, r->bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, cur.ptr ? cur.ptr : "", (int)cur.len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, cur_seq);
        int rows = 0;
        bool reseek = false;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            rows++;
            const char *key = (const char *)sqlite3_column_text(s, 0);
            size_t klen = (size_t)sqlite3_column_bytes(s, 0);
            if (klen < pg.plen || memcmp(key, pg.prefix, pg.plen) != 0) {
                done = true;
                break;
            }
            const char *d =
                pg.delim ? memmem(key + pg.plen, klen - pg.plen, pg.delim, pg.dlen) : NULL;
            if (pg.count == pg.max) {
                pg.truncated = true;
                done = true;
                break;
            }
            pg.count++;
            if (d) {
                size_t cplen = (size_t)(d - key) + pg.dlen;
                sov_xml_open(&pw, "CommonPrefixes", NULL);
                text(&pw, pg.url, "Prefix", (SovStr){key, cplen});
                sov_xml_close(&pw);
                sov_buf_reset(&pg.last_key);
                sov_buf_append(&pg.last_key, key, cplen);
                pg.last_ver[0] = '\0';
                sov_buf_reset(&cur);
                sov_buf_append(&cur, key, cplen);
                sov_buf_putc(&cur, (char)0xff);
                cur_seq = INT64_MIN;
                reseek = true;
                break;
            }
            bool marker = sqlite3_column_int(s, 7) == 1;
            const char *ver = (const char *)sqlite3_column_text(s, 1);
            char date[32];
            sov_xml_open(&ew, marker ? "DeleteMarker" : "Version", NULL);
            text(&ew, pg.url, "Key", (SovStr){key, klen});
            sov_xml_elem(&ew, "VersionId", sov_str(ver));
            sov_xml_elem(&ew, "IsLatest",
                         sqlite3_column_int(s, 2) ? SOV_STR("true") : SOV_STR("false"));
            s3_format_iso8601(sqlite3_column_int64(s, 5), date);
            sov_xml_elem(&ew, "LastModified", sov_str(date));
            if (!marker) {
                char etag[64];
                snprintf(etag, sizeof(etag), "\"%s\"", (const char *)sqlite3_column_text(s, 4));
                sov_xml_elem(&ew, "ETag", sov_str(etag));
                sov_xml_elem_u64(&ew, "Size", (uint64_t)sqlite3_column_int64(s, 3));
                sov_xml_elem(&ew, "StorageClass", sov_str((const char *)sqlite3_column_text(s, 6)));
            }
            sov_xml_open(&ew, "Owner", NULL);
            sov_xml_elem(&ew, "ID", sov_str(b.owner));
            sov_xml_elem(&ew, "DisplayName", sov_str(b.owner));
            sov_xml_close(&ew);
            sov_xml_close(&ew);
            sov_buf_reset(&pg.last_key);
            sov_buf_append(&pg.last_key, key, klen);
            snprintf(pg.last_ver, sizeof(pg.last_ver), "%s", ver);
            /* where the next batch goes on if this one ends here */
            sov_buf_reset(&cur);
            sov_buf_append(&cur, key, klen);
            cur_seq = sqlite3_column_int64(s, 8);
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            break;
        if (!reseek && rc == SQLITE_DONE && rows < 1001)
            done = true;
    }
    sqlite3_finalize(s);
    sov_buf_release(&cur);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sov_buf_release(&entries);
        sov_buf_release(&prefixes);
        sov_buf_release(&pg.last_key);
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    sov_xml_writer_init(&w, &doc);
    sov_xml_open(&w, "ListVersionsResult", S3_XMLNS);
    sov_xml_elem(&w, "Name", sov_str(r->bucket));
    text(&w, pg.url, "Prefix", sov_str(pg.prefix));
    text(&w, pg.url, "KeyMarker", sov_str(km ? km : ""));
    sov_xml_elem(&w, "VersionIdMarker", sov_str(vm ? vm : ""));
    sov_xml_elem_u64(&w, "MaxKeys", (uint64_t)pg.max);
    if (pg.delim)
        text(&w, pg.url, "Delimiter", sov_str(pg.delim));
    if (pg.url)
        sov_xml_elem(&w, "EncodingType", SOV_STR("url"));
    sov_xml_elem(&w, "IsTruncated", pg.truncated ? SOV_STR("true") : SOV_STR("false"));
    if (pg.truncated) {
        text(&w, pg.url, "NextKeyMarker", sov_buf_str(&pg.last_key));
        if (pg.last_ver[0])
            sov_xml_elem(&w, "NextVersionIdMarker", sov_str(pg.last_ver));
    }
    if (entries.len)
        sov_buf_append(&doc, entries.ptr, entries.len);
    if (prefixes.len)
        sov_buf_append(&doc, prefixes.ptr, prefixes.len);
    sov_xml_close(&w);
    sov_buf_release(&entries);
    sov_buf_release(&prefixes);
    sov_buf_release(&pg.last_key);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}
