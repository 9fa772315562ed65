/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side encryption in the daemon, on top of sse.h: the keyring of the store
 * (data_dir/keys), the encryption of a request (x-amz-server-side-encryption, the SSE-C headers
 * or the bucket's default) and its record in an object's metadata (meta["_sse"]), the key of an
 * object to read (SSE-C keys checked before any byte goes out), the writer that encrypts a body
 * on its way to a sink, whole-buffer helpers for inline data, the response headers, and
 * Get/Put/DeleteBucketEncryption. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "sov/crypto.h"
#include "sov/log.h"
#include "sov/xml.h"

/* Opened once at start-up, before the workers; thread-safe afterwards (sse.h). */
static SseKeyring *keyring;

int s3_sse_keyring_open(const char *data_dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/keys", data_dir) >= sizeof(path))
        return -ENAMETOOLONG;
    return sse_keyring_open(path, &keyring);
}

void s3_sse_keyring_close(void)
{
    keyring = sse_keyring_free(keyring);
}

SseKeyring *s3_sse_keyring(void)
{
    return keyring;
}

void s3_sse_clear(S3Sse *s)
{
    sse_key_wipe(s, sizeof(*s));
}

void s3_sse_etag(const S3Sse *s, const uint8_t md5[16], char hex[33])
{
    uint8_t mac[SOV_SHA256_LEN];
    if (s && s->kind == S3_SSE_C && sov_hmac_sha256(s->key, SSE_KEY_LEN, md5, 16, mac) == 0) {
        sov_hex_encode(mac, 16, hex);
        sse_key_wipe(mac, sizeof(mac));
        return;
    }
    sov_hex_encode(md5, 16, hex);
}

static int wrap_context(const char *bucket, const char *key, SovBuf *ctx)
{
    return sse_context(bucket, key, NULL, ctx);
}

static void sse_error(S3Req *r, const SseError *e)
{
    s3_error_status(r, e->status, e->code, e->message);
}

/* The SSE-C headers (prefix "" or "x-amz-copy-source-"): 0 absent, 1 parsed into ck, or < 0
 * answered. */
static int customer_headers(S3Req *r, const char *prefix, SseCustomerKey *ck)
{
    char n1[96], n2[96], n3[96];
    if (!prefix[0])
        prefix = "x-amz-";
    snprintf(n1, sizeof(n1), "%sserver-side-encryption-customer-algorithm", prefix);
    snprintf(n2, sizeof(n2), "%sserver-side-encryption-customer-key", prefix);
    snprintf(n3, sizeof(n3), "%sserver-side-encryption-customer-key-md5", prefix);
    const char *alg = s3_header(r, n1), *key = s3_header(r, n2), *md5 = s3_header(r, n3);
    SseError e;
    if (!alg && !key && !md5)
        return 0;
    if (sse_customer_parse(alg, key, md5, ck, &e) < 0) {
        sse_error(r, &e);
        return -EINVAL;
    }
    return 1;
}

int s3_sse_for_write(S3Req *r, S3Sse *ret)
{
    SseCustomerKey ck;
    SseError e;
    const char *alg = s3_header(r, "x-amz-server-side-encryption");
    int rc;

    memset(ret, 0, sizeof(*ret));
    if ((rc = customer_headers(r, "", &ck)) < 0)
        return rc;
    if (rc == 1) {
        if (alg) {
            sse_key_wipe(&ck, sizeof(ck));
            s3_error(r, "InvalidArgument",
                     "Server Side Encryption with Customer provided key is incompatible with the "
                     "encryption method specified");
            return -EINVAL;
        }
        rc = sse_customer_seal(&ck, &ret->rec, ret->key);
        memcpy(ret->md5_b64, ck.md5_b64, sizeof(ret->md5_b64));
        sse_key_wipe(&ck, sizeof(ck));
        if (rc < 0) {
            s3_error(r, "InternalError", "cannot derive the object's key");
            return rc;
        }
        ret->kind = S3_SSE_C;
        return 0;
    }
    if (alg) {
        if (sse_s3_parse(alg, &e) < 0) {
            sse_error(r, &e);
            return -EINVAL;
        }
    } else {
        json_t *def = NULL;
        rc = s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "encryption", &def);
        bool on = rc == 0 && json_is_object(def);
        json_decref(def);
        if (!on)
            return 0;
    }
    SovBuf ctx = SOV_BUF_INIT;
    if (!keyring) {
        s3_error(r, "InternalError", "the store has no keyring");
        return -EIO;
    }
    rc = wrap_context(r->bucket, r->key_name, &ctx);
    if (rc == 0)
        rc = sse_data_key_new(ret->key);
    if (rc == 0)
        rc = sse_key_wrap(keyring, ret->key, sov_buf_str(&ctx), &ret->wrapped);
    sov_buf_release(&ctx);
    if (rc < 0) {
        s3_sse_clear(ret);
        s3_error(r, "InternalError", "cannot make the object's key");
        return rc;
    }
    ret->kind = S3_SSE_S3;
    return 0;
}

int s3_sse_meta_apply(const S3Sse *s, char **meta_json)
{
    json_t *m = json_loads(*meta_json, 0, NULL), *v = NULL, *inner = NULL;
    int rc = 0;
    if (!m || !json_is_object(m)) {
        json_decref(m);
        return -EIO;
    }
    json_object_del(m, "_sse");
    if (s && s->kind == S3_SSE_S3)
        rc = sse_wrapped_to_json(&s->wrapped, &inner);
    else if (s && s->kind == S3_SSE_C)
        rc = sse_customer_to_json(&s->rec, &inner);
    if (rc == 0 && inner) {
        v = json_object();
        if (!v || json_object_set_new(v, s->kind == S3_SSE_S3 ? "s3" : "c", inner) < 0 ||
            json_object_set_new(m, "_sse", v) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        char *text = s3_meta_dump(m);
        if (!text) {
            rc = -ENOMEM;
        } else {
            free(*meta_json);
            *meta_json = text;
        }
    }
    json_decref(m);
    return rc;
}

/* The kind and, for SSE-C, the record of an object's metadata: 0, or -EBADMSG. */
static int meta_parse(const char *meta_json, S3SseKind *kind, SseWrappedKey *wk,
                      SseCustomerRecord *rec)
{
    json_t *m = json_loads(meta_json ? meta_json : "{}", 0, NULL);
    json_t *sse = json_object_get(m, "_sse");
    int rc = 0;
    *kind = S3_SSE_NONE;
    if (sse) {
        json_t *s3 = json_object_get(sse, "s3"), *c = json_object_get(sse, "c");
        if (s3 && sse_wrapped_from_json(s3, wk) == 0)
            *kind = S3_SSE_S3;
        else if (c && sse_customer_from_json(c, rec) == 0)
            *kind = S3_SSE_C;
        else
            rc = -EBADMSG;
    }
    json_decref(m);
    return rc;
}

int s3_sse_for_read(S3Req *r, const char *bucket, const char *key, const char *meta_json,
                    const char *prefix, S3Sse *ret)
{
    SseCustomerKey ck;
    int rc;

    memset(ret, 0, sizeof(*ret));
    if (meta_parse(meta_json, &ret->kind, &ret->wrapped, &ret->rec) < 0) {
        s3_error(r, "InternalError", "The object's encryption record is damaged");
        return -EBADMSG;
    }
    if ((rc = customer_headers(r, prefix, &ck)) < 0)
        return rc;
    if (rc == 1 && ret->kind != S3_SSE_C) {
        sse_key_wipe(&ck, sizeof(ck));
        s3_error_status(r, 400, "InvalidRequest",
                        "The encryption parameters are not applicable to this object.");
        return -EINVAL;
    }
    if (ret->kind == S3_SSE_C) {
        if (rc == 0) {
            s3_error_status(r, 400, "InvalidRequest",
                            "The object was stored using a form of Server Side Encryption. The "
                            "correct parameters must be provided to retrieve the object.");
            return -EINVAL;
        }
        rc = sse_customer_open(&ck, &ret->rec, ret->key);
        memcpy(ret->md5_b64, ck.md5_b64, sizeof(ret->md5_b64));
        sse_key_wipe(&ck, sizeof(ck));
        if (rc < 0) {
            s3_sse_clear(ret);
            if (rc == -EACCES)
                s3_error(r, "AccessDenied", "Access Denied");
            else
                s3_error(r, "InternalError", "cannot derive the object's key");
            return rc;
        }
        return 0;
    }
    if (ret->kind == S3_SSE_S3) {
        SovBuf ctx = SOV_BUF_INIT;
        rc = keyring ? wrap_context(bucket, key, &ctx) : -ENOKEY;
        if (rc == 0)
            rc = sse_key_unwrap(keyring, &ret->wrapped, sov_buf_str(&ctx), ret->key);
        sov_buf_release(&ctx);
        if (rc < 0) {
            log_error_errno(rc, "object %s/%s: the data key (master key %s) does not unwrap",
                            bucket, key, ret->wrapped.kid);
            s3_sse_clear(ret);
            s3_error(r, "InternalError", "The object's key cannot be unwrapped");
            return rc;
        }
    }
    return 0;
}

void s3_sse_headers(S3Req *r, const S3Sse *s)
{
    if (s->kind == S3_SSE_S3) {
        sov_http_resp_header(r->http, "x-amz-server-side-encryption", SOV_STR("AES256"));
    } else if (s->kind == S3_SSE_C) {
        char md5[SSE_MD5_B64_LEN + 1];
        if (s->md5_b64[0])
            memcpy(md5, s->md5_b64, sizeof(md5));
        else
            sse_base64_encode(s->rec.md5, sizeof(s->rec.md5), md5);
        sov_http_resp_header(r->http, "x-amz-server-side-encryption-customer-algorithm",
                             SOV_STR("AES256"));
        sov_http_resp_header(r->http, "x-amz-server-side-encryption-customer-key-MD5",
                             sov_str(md5));
    }
}

void s3_sse_meta_headers(S3Req *r, const char *meta_json)
{
    S3Sse s;
    memset(&s, 0, sizeof(s));
    if (meta_parse(meta_json, &s.kind, &s.wrapped, &s.rec) == 0)
        s3_sse_headers(r, &s);
}

/* ---- data ---- */

static int sink_fn(void *ud, const void *p, size_t n)
{
    return s3_sink_write(ud, p, n);
}

int s3_sse_writer_open(S3SseWriter *w, const S3Sse *s, S3Sink *k)
{
    memset(w, 0, sizeof(*w));
    w->sink = k;
    if (!s || s->kind == S3_SSE_NONE)
        return 0;
    return sse_encryptor_new(s->key, 0, sink_fn, k, &w->enc);
}

int s3_sse_writer_write(S3SseWriter *w, const void *p, size_t n)
{
    w->plain += n;
    if (w->enc)
        return sse_encryptor_write(w->enc, p, n);
    return s3_sink_write(w->sink, p, n);
}

int s3_sse_writer_finish(S3SseWriter *w)
{
    return w->enc ? sse_encryptor_finish(w->enc) : 0;
}

void s3_sse_writer_release(S3SseWriter *w)
{
    w->enc = sse_encryptor_free(w->enc);
}

int s3_sse_decrypt_buf(const S3Sse *s, const uint8_t *in, size_t n, uint64_t plain_size,
                       uint8_t **ret)
{
    SseStream *st = NULL;
    size_t pn = 0;
    if (n != sse_stored_size(plain_size))
        return -EBADMSG;
    uint8_t *out = malloc(n);
    if (!out)
        return -ENOMEM;
    int rc = sse_stream_open(s->key, 0, in, &st);
    if (rc == 0)
        rc = sse_stream_decrypt_run(st, plain_size, 0, in + SSE_HEADER_LEN, n - SSE_HEADER_LEN, out,
                                    &pn);
    sse_stream_free(st);
    if (rc == 0 && pn != plain_size)
        rc = -EBADMSG;
    if (rc < 0) {
        free(out);
        return rc == -EINVAL ? -EBADMSG : rc;
    }
    *ret = out;
    return 0;
}

static int buf_fn(void *ud, const void *p, size_t n)
{
    return sov_buf_append(ud, p, n);
}

int s3_sse_encrypt_buf(const S3Sse *s, const void *p, size_t n, SovBuf *out)
{
    SseEncryptor *e = NULL;
    int rc = sse_encryptor_new(s->key, 0, buf_fn, out, &e);
    if (rc == 0)
        rc = sse_encryptor_write(e, p, n);
    if (rc == 0)
        rc = sse_encryptor_finish(e);
    sse_encryptor_free(e);
    return rc;
}

/* ---- Get/Put/DeleteBucketEncryption ---- */

static void encryption_stored(S3Req *r, int status)
{
    if (status == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (status < 0)
        s3_error(r, "InternalError", "The bucket's encryption could not be stored");
    else
        s3_reply_empty(r, strcmp(r->op, "DeleteBucketEncryption") == 0 ? 204 : 200);
}

static void encryption_put(S3Req *r)
{
    SovXmlLimits lim = {.max_bytes = 64 * 1024, .max_depth = 6, .max_nodes = 64};
    SovBuf err = SOV_BUF_INIT;
    SovXmlNode *root = NULL;
    const char *malformed = "The XML you provided was not well-formed or did not validate "
                            "against our published schema";
    int rc = sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err);
    sov_buf_release(&err);
    if (rc < 0 || strcmp(root->name, "ServerSideEncryptionConfiguration") != 0) {
        sov_xml_free(root);
        s3_error(r, "MalformedXML", malformed);
        return;
    }
    SovXmlNode *rule = NULL;
    unsigned nrules = 0;
    for (SovXmlNode *c = root->child; c; c = c->next) {
        if (strcmp(c->name, "Rule") == 0) {
            rule = c;
            nrules++;
        }
    }
    SovXmlNode *def = rule ? sov_xml_child(rule, "ApplyServerSideEncryptionByDefault") : NULL;
    SovXmlNode *alg = def ? sov_xml_child(def, "SSEAlgorithm") : NULL;
    SovXmlNode *bk = rule ? sov_xml_child(rule, "BucketKeyEnabled") : NULL;
    if (nrules != 1 || !alg) {
        sov_xml_free(root);
        s3_error(r, "MalformedXML", malformed);
        return;
    }
    SseError e;
    if (sse_s3_parse(alg->text, &e) < 0) {
        sov_xml_free(root);
        /* aws:kms is refused (501 NotImplemented): there is no KMS behind this store */
        s3_error_status(r, e.status, e.code, e.message);
        return;
    }
    json_t *doc = json_pack("{s:s, s:b}", "algorithm", "AES256", "bucket_key",
                            bk && bk->text && strcmp(bk->text, "true") == 0);
    sov_xml_free(root);
    if (!doc) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    s3_bucket_config_set(r, "encryption", doc, encryption_stored);
}

void s3_bucket_encryption(S3Req *r)
{
    json_t *doc;
    if (!s3_bucket_subresource(r, "encryption", encryption_put, encryption_stored, &doc))
        return;
    if (!json_is_object(doc)) {
        json_decref(doc);
        s3_error_status(r, 404, "ServerSideEncryptionConfigurationNotFoundError",
                        "The server side encryption configuration was not found");
        return;
    }
    bool bucket_key = json_is_true(json_object_get(doc, "bucket_key"));
    json_decref(doc);
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter x;
    sov_xml_writer_init(&x, &out);
    sov_xml_open(&x, "ServerSideEncryptionConfiguration", S3_XMLNS);
    sov_xml_open(&x, "Rule", NULL);
    sov_xml_open(&x, "ApplyServerSideEncryptionByDefault", NULL);
    sov_xml_elem(&x, "SSEAlgorithm", SOV_STR("AES256"));
    sov_xml_close(&x);
    sov_xml_elem(&x, "BucketKeyEnabled", bucket_key ? SOV_STR("true") : SOV_STR("false"));
    sov_xml_close(&x);
    sov_xml_close(&x);
    s3_reply_xml(r, 200, &out);
    sov_buf_release(&out);
}
