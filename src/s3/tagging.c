/* SPDX-License-Identifier: Apache-2.0 */
/* Object and bucket tagging. A tag set is a JSON object {"key": "value"}: an object's lives in
 * its metadata under "_tags" (one per version), a bucket's is the "tagging" configuration
 * document. Tags come from a Tagging XML document (Put*Tagging) or, for a new object, from the
 * x-amz-tagging header (a URL-encoded query string); both go through the same checks, AWS's
 * limits included: 10 tags per object, 50 per bucket, keys of 1 to 128 and values of up to 256
 * UTF-16 units from a small character set, no duplicate keys, no "aws:" prefix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/xml.h"

#define S3_MAX_OBJECT_TAGS 10
#define S3_MAX_BUCKET_TAGS 50
#define S3_TAG_KEY_MAX     128 /* UTF-16 code units, as AWS counts */
#define S3_TAG_VALUE_MAX   256

/* Why a tag set was refused: the S3 error code and its message. */
typedef struct TagError {
    const char *code;
    const char *message;
} TagError;

static int tag_fail(TagError *e, const char *code, const char *message)
{
    e->code = code;
    e->message = message;
    return -EINVAL;
}

/* Checks one key or value: valid UTF-8 made of letters, digits, white space and + - = . _ : / @
 * (every non-ASCII character counts as a letter), at most max UTF-16 units. */
static bool tag_text_valid(const char *s, size_t n, size_t max)
{
    size_t units = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr(" +-=._:/@", c) != NULL;
            if (!ok || c == '\0')
                return false;
            units++;
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t j = 1; j < len; j++) {
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | ((unsigned char)s[i + j] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        units += cp >= 0x10000 ? 2 : 1;
        i += len;
    }
    return units <= max;
}

/* Adds one tag to the set after the checks; max is the set's limit. */
static int tags_add(json_t *tags, const char *k, size_t kn, const char *v, size_t vn, size_t max,
                    TagError *e)
{
    if (kn == 0 || !tag_text_valid(k, kn, S3_TAG_KEY_MAX))
        return tag_fail(e, "InvalidTag", "The TagKey you have provided is invalid");
    if (!tag_text_valid(v, vn, S3_TAG_VALUE_MAX))
        return tag_fail(e, "InvalidTag", "The TagValue you have provided is invalid");
    if (kn >= 4 && strncmp(k, "aws:", 4) == 0)
        return tag_fail(e, "InvalidTag", "Your TagKey cannot be prefixed with aws:");
    char *key = strndup(k, kn);
    json_t *val = json_stringn(v, vn);
    int rc = 0;
    if (!key || !val)
        rc = tag_fail(e, "ServiceUnavailable", "out of memory");
    else if (json_object_get(tags, key))
        rc = tag_fail(e, "InvalidTag", "Cannot provide multiple Tags with the same key");
    else if (json_object_size(tags) >= max)
        rc = tag_fail(e, "InvalidTag",
                      max == S3_MAX_OBJECT_TAGS ? "Object tags cannot be greater than 10"
                                                : "Bucket tag count cannot be greater than 50");
    else if (json_object_set(tags, key, val) < 0)
        rc = tag_fail(e, "ServiceUnavailable", "out of memory");
    free(key);
    json_decref(val);
    return rc;
}

static const char malformed[] = "The XML you provided was not well-formed or did not validate "
                                "against our published schema";

/* Parses the Tagging document of r->xml into a new tag set. */
static int tags_parse(S3Req *r, size_t max, json_t **ret, TagError *e)
{
    SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 4, .max_nodes = 1024};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = -EINVAL;
    json_t *tags = json_object();

    *ret = NULL;
    if (!tags) {
        tag_fail(e, "ServiceUnavailable", "out of memory");
        goto out;
    }
    if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
        strcmp(root->name, "Tagging") != 0) {
        tag_fail(e, "MalformedXML", malformed);
        goto out;
    }
    SovXmlNode *set = sov_xml_child(root, "TagSet");
    if (!set) {
        tag_fail(e, "MalformedXML", malformed);
        goto out;
    }
    for (SovXmlNode *t = set->child; t; t = t->next) {
        SovXmlNode *k = sov_xml_child(t, "Key"), *v = sov_xml_child(t, "Value");
        if (strcmp(t->name, "Tag") != 0 || !k || !v) {
            tag_fail(e, "MalformedXML", malformed);
            goto out;
        }
        if (tags_add(tags, k->text ? k->text : "", k->text_len, v->text ? v->text : "", v->text_len,
                     max, e) < 0)
            goto out;
    }
    *ret = tags;
    tags = NULL;
    rc = 0;
out:
    json_decref(tags);
    sov_xml_free(root);
    sov_buf_release(&err);
    return rc;
}

/* <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging> */
static void tags_doc(SovBuf *doc, json_t *tags)
{
    SovXmlWriter w;
    const char *k;
    json_t *v;
    sov_xml_writer_init(&w, doc);
    sov_xml_open(&w, "Tagging", S3_XMLNS);
    sov_xml_open(&w, "TagSet", NULL);
    json_object_foreach(tags, k, v)
    {
        sov_xml_open(&w, "Tag", NULL);
        sov_xml_elem(&w, "Key", sov_str(k));
        sov_xml_elem(&w, "Value", (SovStr){json_string_value(v), json_string_length(v)});
        sov_xml_close(&w);
    }
    sov_xml_close(&w);
    sov_xml_close(&w);
}

int s3_tagging_collect(S3Req *r, json_t *meta, const char **code)
{
    /* A copy keeps the source's tags unless x-amz-tagging-directive is REPLACE (s3_copy_meta
     * carries them); only then does x-amz-tagging count. */
    if (r->op && strcmp(r->op, "CopyObject") == 0) {
        const char *td = s3_header(r, "x-amz-tagging-directive");
        if (!td || strcmp(td, "REPLACE") != 0)
            return 0;
    }
    const char *h = s3_header(r, "x-amz-tagging");
    if (!h)
        return 0;
    json_t *tags = json_object();
    SovBuf k = SOV_BUF_INIT, v = SOV_BUF_INIT;
    TagError e = {0};
    int rc = tags ? 0 : tag_fail(&e, "ServiceUnavailable", "out of memory");
    for (const char *p = h; rc == 0 && *p;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n) {
            const char *eq = memchr(p, '=', n);
            size_t kl = eq ? (size_t)(eq - p) : n;
            sov_buf_reset(&k);
            sov_buf_reset(&v);
            if (s3_uri_decode(&k, (SovStr){p, kl}, true) < 0 ||
                (eq && s3_uri_decode(&v, (SovStr){eq + 1, n - kl - 1}, true) < 0))
                rc = tag_fail(&e, "InvalidArgument",
                              "The header 'x-amz-tagging' shall be encoded as UTF-8 then "
                              "URLEncoded URL query parameters without tag name duplicates.");
            else
                rc = tags_add(tags, k.ptr ? k.ptr : "", k.len, v.ptr ? v.ptr : "", v.len,
                              S3_MAX_OBJECT_TAGS, &e);
        }
        p += n + (end ? 1 : 0);
    }
    sov_buf_release(&k);
    sov_buf_release(&v);
    if (rc < 0) {
        json_decref(tags);
        *code = e.code;
        return rc;
    }
    if (json_object_size(tags))
        json_object_set_new(meta, "_tags", tags);
    else {
        json_decref(tags);
        json_object_del(meta, "_tags");
    }
    return 0;
}

/* ---- bucket tagging ---- */

static void bucket_tagging_stored(S3Req *r, int status)
{
    if (status == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (status < 0)
        s3_error(r, "InternalError", "The bucket's tags could not be stored");
    else
        s3_reply_empty(r, 204);
}

static void bucket_tagging_put(S3Req *r)
{
    json_t *tags;
    TagError e;
    if (tags_parse(r, S3_MAX_BUCKET_TAGS, &tags, &e) < 0) {
        s3_error(r, e.code, e.message);
        return;
    }
    /* An empty tag set is no tag set: GetBucketTagging answers NoSuchTagSet afterwards. */
    if (!json_object_size(tags)) {
        json_decref(tags);
        tags = NULL;
    }
    s3_bucket_config_set(r, "tagging", tags, bucket_tagging_stored);
}

void s3_bucket_tagging(S3Req *r)
{
    json_t *tags;
    if (!s3_bucket_subresource(r, "tagging", bucket_tagging_put, bucket_tagging_stored, &tags))
        return;
    if (!json_is_object(tags) || !json_object_size(tags)) {
        json_decref(tags);
        s3_error_status(r, 404, "NoSuchTagSet", "The TagSet does not exist");
        return;
    }
    SovBuf doc = SOV_BUF_INIT;
    tags_doc(&doc, tags);
    json_decref(tags);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

/* ---- object tagging ---- */

/* What an object tagging request carries from its first step to the metadata edit. */
typedef struct TagOp {
    char version[40];  /* the version read (and checked) first */
    bool send_version; /* x-amz-version-id goes out: the bucket has or had versioning */
    json_t *tags;      /* the new set, NULL to remove it */
} TagOp;

static void tag_op_free(S3Req *r)
{
    TagOp *op = r->op_state;
    json_decref(op->tags);
    free(op);
    r->op_state = NULL;
}

/* On the writer thread: a private copy of the set, so that no reference count is shared with the
 * loop thread. */
static int tags_edit(json_t *meta, void *ud)
{
    json_t *tags = ud;
    if (!tags) {
        json_object_del(meta, "_tags"); /* absent already: nothing to do */
        return 0;
    }
    json_t *copy = json_deep_copy(tags);
    if (!copy || json_object_set_new(meta, "_tags", copy) < 0)
        return -ENOMEM;
    return 0;
}

static void version_header(S3Req *r, const char *version)
{
    TagOp *op = r->op_state;
    if (op->send_version && version && version[0])
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(version));
}

static void object_tagging_stored(S3Req *r, int status, const char *version)
{
    if (status == -ENOENT) {
        s3_error(r, "NoSuchKey", "The specified key does not exist.");
        return;
    }
    if (status < 0) {
        s3_error(r, "InternalError", "The object's tags could not be stored");
        return;
    }
    version_header(r, version);
    s3_reply_empty(r, strcmp(r->op, "PutObjectTagging") == 0 ? 200 : 204);
}

static void object_tagging_put(S3Req *r)
{
    TagOp *op = r->op_state;
    TagError e;
    if (tags_parse(r, S3_MAX_OBJECT_TAGS, &op->tags, &e) < 0) {
        s3_error(r, e.code, e.message);
        return;
    }
    if (!json_object_size(op->tags)) {
        json_decref(op->tags);
        op->tags = NULL;
    }
    s3_object_meta_update(r, op->version, tags_edit, op->tags, object_tagging_stored);
}

/* Reads the version the request names (the current one without versionId), answering the
 * error when there is none or it may not be touched. */
static int object_tagging_target(S3Req *r, const S3Bucket *b, TagOp *op)
{
    const char *vid = s3_param(r, "versionId");
    S3Object o;
    if (vid && !s3_version_id_valid(vid)) {
        s3_error(r, "InvalidArgument", "Invalid version id specified");
        return -EINVAL;
    }
    int rc = s3_object_get_version(s3_loop_db(r->loop), r->bucket, r->key_name, vid, &o);
    if (rc == -ENOENT) {
        if (vid)
            s3_error_status(r, 404, "NoSuchVersion", "The specified version does not exist.");
        else
            s3_error(r, "NoSuchKey", "The specified key does not exist.");
        return rc;
    }
    if (rc < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return rc;
    }
    if (o.delete_marker) {
        s3_object_clear(&o);
        sov_http_resp_header(r->http, "x-amz-delete-marker", SOV_STR("true"));
        if (vid)
            s3_error(r, "MethodNotAllowed",
                     "The specified method is not allowed against this resource.");
        else
            s3_error(r, "NoSuchKey", "The specified key does not exist.");
        return -ENOENT;
    }
    if (r->object_acl_pending && (rc = s3_access_object(r, &o)) < 0) {
        s3_object_clear(&o);
        return rc;
    }
    snprintf(op->version, sizeof(op->version), "%s", o.version);
    op->send_version = b->versioning[0] || strcmp(o.version, "null") != 0;
    if (strcmp(r->op, "GetObjectTagging") == 0) {
        json_t *meta = json_loads(o.meta_json ? o.meta_json : "{}", 0, NULL);
        json_t *tags = json_object_get(meta, "_tags");
        op->tags = json_is_object(tags) ? json_incref(tags) : json_object();
        json_decref(meta);
    }
    s3_object_clear(&o);
    return 0;
}

void s3_object_tagging(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    TagOp *op = calloc(1, sizeof(*op));
    if (!op) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    r->op_state = op;
    r->op_free = tag_op_free;
    if (object_tagging_target(r, &b, op) < 0)
        return;
    if (strcmp(r->op, "PutObjectTagging") == 0) {
        s3_body_xml(r, object_tagging_put);
    } else if (strcmp(r->op, "DeleteObjectTagging") == 0) {
        s3_object_meta_update(r, op->version, tags_edit, NULL, object_tagging_stored);
    } else if (!op->tags) {
        s3_error(r, "ServiceUnavailable", "out of memory");
    } else {
        SovBuf doc = SOV_BUF_INIT;
        version_header(r, op->version);
        tags_doc(&doc, op->tags);
        s3_reply_xml(r, 200, &doc);
        sov_buf_release(&doc);
    }
}
