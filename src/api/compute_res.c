/* SPDX-License-Identifier: Apache-2.0 */
/* The Nova resources around servers (see compute.h): key pairs, flavors, availability zones,
 * quota sets, limits and the version documents.
 *
 * Key pairs: import of OpenSSH public keys (checked by parsing the wire blob and, for RSA and
 * ECDSA, loading the key into OpenSSL), generation of RSA 2048 pairs whose private half is
 * returned once and never stored, and Nova's MD5 fingerprint. A key pair belongs to a user,
 * not a project: the document's parent is the user id and its uniqueness key "<user>/<name>";
 * the project column records where it was created.
 *
 * Flavors: documents of kind "flavor" whose id is the flavor id (the seed's are their names),
 * global (project ""), with internal members _extra_specs and _access (projects given a
 * private flavor). */
#include <errno.h>
#include <inttypes.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compute.h"
#include "sov/crypto.h"
#include "sov/json.h"
#include "sov/log.h"

#define LIST_MAX     1000  /* most items in one listing */
#define SPECS_MAX    64    /* extra specs per flavor */
#define PUBKEY_MAX   16384 /* longest public key line accepted */
#define KEYNAME_MAX  255
#define RSA_MIN_BITS 1024
#define RSA_MAX_BITS 16384

/* ---- base64 ---- */

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

ssize_t api_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    if (n % 4 != 0)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = in[i + (size_t)k];
            if (ch == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) /* data after padding */
                return -EINVAL;
            if ((v[k] = b64_value(ch)) < 0)
                return -EINVAL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t take = 3 - (size_t)pad;
        if (o + take > cap)
            return -E2BIG;
        out[o++] = (uint8_t)(w >> 16);
        if (take > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (take > 2)
            out[o++] = (uint8_t)w;
    }
    return (ssize_t)o;
}

char *api_base64_encode(const uint8_t *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

/* ---- the OpenSSH wire format (RFC 4251 section 5) ---- */

typedef struct Wire {
    const uint8_t *p;
    size_t n, off;
} Wire;

static bool wire_string(Wire *w, const uint8_t **ret, size_t *ret_len)
{
    if (w->n - w->off < 4)
        return false;
    const uint8_t *q = w->p + w->off;
    size_t len = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
    if (len > w->n - w->off - 4)
        return false;
    *ret = q + 4;
    *ret_len = len;
    w->off += 4 + len;
    return true;
}

static bool wire_is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static void put_string(SovBuf *b, const void *p, size_t n)
{
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    sov_buf_append(b, len, 4);
    sov_buf_append(b, p, n);
}

/* An mpint: big-endian, with a leading zero byte when the top bit is set. */
static int put_mpint(SovBuf *b, const BIGNUM *bn)
{
    int nb = BN_num_bytes(bn);
    uint8_t *tmp = malloc((size_t)nb + 1);
    if (!tmp)
        return -ENOMEM;
    tmp[0] = 0;
    BN_bn2bin(bn, tmp + 1);
    bool lead = nb > 0 && (tmp[1] & 0x80);
    put_string(b, lead ? tmp : tmp + 1, (size_t)nb + (lead ? 1 : 0));
    free(tmp);
    return 0;
}

static void fingerprint(const uint8_t *blob, size_t n, char out[API_FINGERPRINT_LEN + 1])
{
    uint8_t md[SOV_MD5_LEN];
    sov_md5(blob, n, md);
    for (size_t i = 0; i < SOV_MD5_LEN; i++)
        snprintf(out + 3 * i, 4, "%02x%s", md[i], i + 1 < SOV_MD5_LEN ? ":" : "");
}

static int check_rsa(Wire *w, SovBuf *err)
{
    const uint8_t *e, *n;
    size_t el, nl;
    if (!wire_string(w, &e, &el) || !wire_string(w, &n, &nl) || el == 0 || nl == 0 ||
        (e[0] & 0x80) || (n[0] & 0x80)) {
        sov_buf_puts(err, "malformed RSA key");
        return -EINVAL;
    }
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    int bits = bn ? BN_num_bits(bn) : 0;
    bool ok =
        bn && be && bits >= RSA_MIN_BITS && bits <= RSA_MAX_BITS && BN_is_odd(be) && !BN_is_one(be);
    BN_free(bn);
    BN_free(be);
    if (!ok) {
        sov_buf_printf(err, "unusable RSA key (%d bits; %d to %d with an odd exponent needed)",
                       bits, RSA_MIN_BITS, RSA_MAX_BITS);
        return -EINVAL;
    }
    return 0;
}

/* Loads the point into OpenSSL, which refuses one that is not on the curve. */
static int check_ecdsa(Wire *w, const char *curve, const char *group, size_t point_len, SovBuf *err)
{
    const uint8_t *id, *q;
    size_t il, ql;
    if (!wire_string(w, &id, &il) || !wire_is(id, il, curve) || !wire_string(w, &q, &ql) ||
        ql != point_len || q[0] != 0x04) {
        sov_buf_puts(err, "malformed ECDSA key");
        return -EINVAL;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    bool ok = bld && ctx &&
              OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
              OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q, ql) &&
              (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) > 0 &&
              EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0;
    if (ok) {
        EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = chk && EVP_PKEY_public_check(chk) > 0;
        EVP_PKEY_CTX_free(chk);
    }
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    if (!ok) {
        sov_buf_puts(err, "the ECDSA point is not on the curve");
        return -EINVAL;
    }
    return 0;
}

int api_ssh_key_check(const char *line, char ret_fingerprint[API_FINGERPRINT_LEN + 1], SovBuf *err)
{
    size_t len = strlen(line);
    if (len > PUBKEY_MAX) {
        sov_buf_printf(err, "public key longer than %d bytes", PUBKEY_MAX);
        return -EINVAL;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    while (len && *line == ' ')
        line++, len--;
    if (memchr(line, '\n', len) || memchr(line, '\r', len)) {
        sov_buf_puts(err, "one public key line expected");
        return -EINVAL;
    }
    const char *sp = memchr(line, ' ', len);
    if (!sp) {
        sov_buf_puts(err, "expected 'TYPE BASE64 [COMMENT]'");
        return -EINVAL;
    }
    size_t tl = (size_t)(sp - line);
    const char *b64 = sp + 1, *end = line + len;
    const char *bend = memchr(b64, ' ', (size_t)(end - b64));
    size_t bl = (size_t)((bend ? bend : end) - b64);
    uint8_t *blob = malloc(bl / 4 * 3 + 3);
    if (!blob)
        return -ENOMEM;
    ssize_t n = api_base64_decode(b64, bl, blob, bl / 4 * 3 + 3);
    if (n <= 0) {
        free(blob);
        sov_buf_puts(err, "the key is not valid base64");
        return -EINVAL;
    }
    Wire w = {blob, (size_t)n, 0};
    const uint8_t *type;
    size_t typel;
    int r = -EINVAL;
    if (!wire_string(&w, &type, &typel) || typel != tl || memcmp(type, line, tl) != 0)
        sov_buf_puts(err, "the key's type does not match its data");
    else if (wire_is(type, typel, "ssh-rsa"))
        r = check_rsa(&w, err);
    else if (wire_is(type, typel, "ssh-ed25519")) {
        const uint8_t *k;
        size_t kl;
        if (wire_string(&w, &k, &kl) && kl == 32)
            r = 0;
        else
            sov_buf_puts(err, "malformed Ed25519 key");
    } else if (wire_is(type, typel, "ecdsa-sha2-nistp256"))
        r = check_ecdsa(&w, "nistp256", "P-256", 65, err);
    else if (wire_is(type, typel, "ecdsa-sha2-nistp384"))
        r = check_ecdsa(&w, "nistp384", "P-384", 97, err);
    else if (wire_is(type, typel, "ecdsa-sha2-nistp521"))
        r = check_ecdsa(&w, "nistp521", "P-521", 133, err);
    else
        sov_buf_printf(err, "unsupported key type '%.*s'", (int)SOV_MIN(tl, 64), line);
    if (r == 0 && w.off != w.n) {
        sov_buf_puts(err, "trailing bytes after the key");
        r = -EINVAL;
    }
    if (r == 0)
        fingerprint(blob, (size_t)n, ret_fingerprint);
    free(blob);
    return r;
}

int api_ssh_key_generate(const char *comment, char **ret_private_pem, char **ret_public,
                         char ret_fingerprint[API_FINGERPRINT_LEN + 1])
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    BIGNUM *n = NULL, *e = NULL;
    BIO *bio = NULL;
    SovBuf blob = SOV_BUF_INIT;
    char *b64 = NULL, *pem = NULL, *pub = NULL;
    int r = -EIO;
    if (!pkey || !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e))
        goto out;
    put_string(&blob, "ssh-rsa", 7);
    if (put_mpint(&blob, e) < 0 || put_mpint(&blob, n) < 0 || !blob.ptr)
        goto out;
    if (!(b64 = api_base64_encode((const uint8_t *)blob.ptr, blob.len)))
        goto out;
    /* PKCS#1 ("BEGIN RSA PRIVATE KEY"), as Nova hands out and ssh/ssh-keygen read. */
    if (!(bio = BIO_new(BIO_s_mem())) ||
        !PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0, NULL, NULL))
        goto out;
    char *mem;
    long ml = BIO_get_mem_data(bio, &mem);
    if (ml <= 0 || !(pem = strndup(mem, (size_t)ml)))
        goto out;
    size_t pl = strlen(b64) + strlen(comment) + 16;
    if (!(pub = malloc(pl)))
        goto out;
    snprintf(pub, pl, "ssh-rsa %s %s", b64, comment);
    fingerprint((const uint8_t *)blob.ptr, blob.len, ret_fingerprint);
    *ret_private_pem = TAKE_PTR(pem);
    *ret_public = TAKE_PTR(pub);
    r = 0;
out:
    if (pem)
        OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
    free(pub);
    free(b64);
    BIO_free(bio); /* the memory BIO's buffer is cleared with it */
    sov_buf_release(&blob);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(pkey);
    return r;
}

/* ---- the os-keypairs API ---- */

static bool keyname_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KEYNAME_MAX || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == ' ' || ch == '.' || ch == '@'))
            return false;
    }
    return true;
}

static void uniq_key(const ApiCall *c, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", c->auth.user_id, name);
}

/* The representation of GET /os-keypairs/{name}; list entries carry fewer members. */
static json_t *keypair_view(json_t *doc, bool full)
{
    json_t *v = json_pack("{s:O,s:O,s:O,s:s}", "name", json_object_get(doc, "name"), "public_key",
                          json_object_get(doc, "public_key"), "fingerprint",
                          json_object_get(doc, "fingerprint"), "type", "ssh");
    if (full && v) {
        json_object_set(v, "user_id", json_object_get(doc, "user_id"));
        json_object_set(v, "created_at", json_object_get(doc, "created_at"));
        json_object_set_new(v, "updated_at", json_null());
        json_object_set_new(v, "deleted_at", json_null());
        json_object_set_new(v, "deleted", json_false());
    }
    return v;
}

static void h_keypair_list(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    if (!c)
        return;
    ApiListQuery q = {.kind = "keypair", .parent = c->auth.user_id};
    json_t *arr, *out = json_array(), *v;
    size_t i;
    if (api_store_list(c->api->store, &q, &arr) < 0) {
        json_decref(out);
        api_fault(c, 500, NULL, "The key pairs cannot be read.");
        return;
    }
    json_array_foreach(arr, i, v)
        json_array_append_new(out, json_pack("{s:o}", "keypair", keypair_view(v, false)));
    json_decref(arr);
    api_reply(c, 200, json_pack("{s:o}", "keypairs", out));
}

static void h_keypair_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    if (!c)
        return;
    json_t *b = api_body(c, "keypair");
    if (!b)
        return;
    static const char *const keys[] = {"name", "public_key", "type", "user_id", NULL};
    SovBuf err = SOV_BUF_INIT;
    const char *name = NULL, *pub = NULL, *type = NULL;
    char fp[API_FINGERPRINT_LEN + 1], uniq[API_ID_LEN + KEYNAME_MAX + 2], id[API_ID_LEN + 1];
    char *priv = NULL, *gen_pub = NULL, when[32];
    if (sov_json_check_keys(b, keys, &err) < 0 ||
        sov_json_get_string(b, "name", true, KEYNAME_MAX, &name, &err) < 0 ||
        sov_json_get_string(b, "public_key", false, PUBKEY_MAX, &pub, &err) < 0 ||
        sov_json_get_string(b, "type", false, 16, &type, &err) < 0) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute keypair. %s", err.ptr);
        goto out;
    }
    if (type && strcmp(type, "ssh") != 0) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute type: only 'ssh' is supported");
        goto out;
    }
    if (json_object_get(b, "user_id") &&
        (!json_is_string(json_object_get(b, "user_id")) ||
         strcmp(json_string_value(json_object_get(b, "user_id")), c->auth.user_id) != 0)) {
        api_fault(c, 400, NULL, "Key pairs can only be created for the calling user.");
        goto out;
    }
    if (!keyname_ok(name)) {
        api_fault(c, 400, NULL, "Keypair data is invalid: Keypair name contains unsafe characters");
        goto out;
    }
    snprintf(c->target, sizeof(c->target), "%.127s", name);
    uniq_key(c, name, uniq, sizeof(uniq));
    json_t *old;
    if (api_store_get_uniq(a->store, "keypair", uniq, &old) == 0) {
        json_decref(old);
        api_fault(c, 409, NULL, "Key pair '%s' already exists.", name);
        goto out;
    }
    int64_t lim = api_quota_limit(a, c->auth.project_id, "key_pairs");
    ApiListQuery q = {.kind = "keypair", .parent = c->auth.user_id};
    if (lim >= 0 && api_store_count(a->store, &q) + 1 > lim) {
        api_fault(c, 403, NULL, "Quota exceeded, too many key pairs.");
        goto out;
    }
    if (pub) {
        if (api_ssh_key_check(pub, fp, &err) < 0) {
            api_fault(c, 400, NULL, "Keypair data is invalid: %s", err.ptr ? err.ptr : "?");
            goto out;
        }
    } else {
        char comment[KEYNAME_MAX + 1];
        snprintf(comment, sizeof(comment), "%s", name);
        for (char *p = comment; *p; p++)
            if (*p == ' ')
                *p = '_';
        if (api_ssh_key_generate(comment, &priv, &gen_pub, fp) < 0) {
            api_fault(c, 500, NULL, "Key generation failed.");
            goto out;
        }
        pub = gen_pub;
    }
    api_new_id(id);
    api_time_iso(api_now_ms(), when);
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", name, "public_key", pub, "fingerprint",
                  fp, "user_id", c->auth.user_id, "type", "ssh", "created_at", when, "_id", id);
    ApiDocMeta m = {.kind = "keypair",
                    .id = id,
                    .project = c->auth.project_id,
                    .name = name,
                    .parent = c->auth.user_id,
                    .uniq = uniq};
    int r = doc ? api_store_insert(a->store, &m, doc) : -ENOMEM;
    if (r < 0) {
        json_decref(doc);
        if (r == -EEXIST)
            api_fault(c, 409, NULL, "Key pair '%s' already exists.", name);
        else
            api_fault(c, 500, NULL, "The key pair cannot be stored.");
        goto out;
    }
    json_t *v = keypair_view(doc, false);
    json_object_set(v, "user_id", json_object_get(doc, "user_id"));
    if (priv) {
        json_object_set_new(v, "private_key", json_string(priv));
        c->idem_key[0] = '\0'; /* a private key is never stored, not even for a replay */
    }
    json_decref(doc);
    api_reply(c, 200, json_pack("{s:o}", "keypair", v));
out:
    if (priv) {
        OPENSSL_cleanse(priv, strlen(priv));
        free(priv);
    }
    free(gen_pub);
    sov_buf_release(&err);
}

static int keypair_find(ApiCall *c, json_t **ret)
{
    const char *name = api_param(c, "name");
    char uniq[API_ID_LEN + KEYNAME_MAX + 2];
    if (!name || strlen(name) > KEYNAME_MAX ||
        (uniq_key(c, name, uniq, sizeof(uniq)),
         api_store_get_uniq(c->api->store, "keypair", uniq, ret) < 0)) {
        api_fault(c, 404, NULL, "Keypair %s not found for user %s", name ? name : "",
                  c->auth.user_id);
        return -ENOENT;
    }
    return 0;
}

static void h_keypair_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    json_t *doc;
    if (!c || keypair_find(c, &doc) < 0)
        return;
    api_reply(c, 200, json_pack("{s:o}", "keypair", keypair_view(doc, true)));
    json_decref(doc);
}

static void h_keypair_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_WRITE);
    json_t *doc;
    if (!c)
        return;
    snprintf(c->target, sizeof(c->target), "%.127s",
             api_param(c, "name") ? api_param(c, "name") : "");
    if (keypair_find(c, &doc) < 0)
        return;
    const char *id = json_string_value(json_object_get(doc, "_id"));
    int r = id ? api_store_delete(a->store, "keypair", id) : -ENOENT;
    json_decref(doc);
    if (r < 0) {
        api_fault(c, r == -ENOENT ? 404 : 500, NULL, "The key pair cannot be deleted.");
        return;
    }
    api_reply(c, 202, NULL);
}

static void keypair_routes(Api *a)
{
    sov_router_add(a->router, "GET", "/compute/v2.1/os-keypairs", 0, h_keypair_list, a);
    sov_router_add(a->router, "POST", "/compute/v2.1/os-keypairs", 0, h_keypair_create, a);
    sov_router_add(a->router, "GET", "/compute/v2.1/os-keypairs/{name}", 0, h_keypair_show, a);
    sov_router_add(a->router, "DELETE", "/compute/v2.1/os-keypairs/{name}", 0, h_keypair_delete, a);
}

/* ---- helpers shared with compute.c ---- */

json_t *nova_links(Api *a, const char *coll, const char *id)
{
    const char *u = api_public_url(a);
    return json_pack("[{s:s,s:o},{s:s,s:o}]", "rel", "self", "href",
                     json_sprintf("%s" NOVA "/%s/%s", u, coll, id), "rel", "bookmark", "href",
                     json_sprintf("%s/compute/%s/%s", u, coll, id));
}

int nova_get_intish(json_t *o, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *ret, SovBuf *err)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!*s || *end || errno || n < min || n > max) {
            sov_buf_printf(err, "'%s' must be an integer between %" PRId64 " and %" PRId64, key,
                           min, max);
            return -EINVAL;
        }
        *ret = n;
        return 1;
    }
    return sov_json_get_int(o, key, required, min, max, ret, err);
}

bool nova_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NOVA_NAME_MAX || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

void nova_next_link(ApiCall *c, json_t *out, const char *key, const char *path, const char *last_id)
{
    SovStr q = sov_http_req_query(c->req);
    SovBuf b = SOV_BUF_INIT;
    sov_buf_printf(&b, "%s" NOVA "/%s?", api_public_url(c->api), path);
    size_t i = 0;
    while (i < q.len) {
        size_t j = i;
        while (j < q.len && q.ptr[j] != '&')
            j++;
        SovStr kv = {q.ptr + i, j - i};
        if (kv.len && !sov_str_has_prefix(kv, SOV_STR("marker=")))
            sov_buf_printf(&b, SOV_STR_FMT "&", SOV_STR_ARG(kv));
        i = j + 1;
    }
    sov_buf_printf(&b, "marker=%s", last_id);
    json_object_set_new(out, key, json_pack("[{s:s,s:s}]", "rel", "next", "href", b.ptr));
    sov_buf_release(&b);
}

/* ---- version documents ---- */

static json_t *version_v21(Api *a)
{
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:o},{s:s,s:s,s:s}],s:[{s:s,s:s}]}", "id", "v2.1", "status",
        "CURRENT", "version", "2.1", "min_version", "2.1", "updated", "2013-07-23T11:33:21Z",
        "links", "rel", "self", "href", json_sprintf("%s" NOVA "/", api_public_url(a)), "rel",
        "describedby", "type", "text/html", "href", "https://docs.openstack.org/", "media-types",
        "base", "application/json", "type", "application/vnd.openstack.compute+json;version=2.1");
}

static void h_versions(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_NONE);
    if (c)
        api_reply(c, 200, json_pack("{s:[o]}", "versions", version_v21(ud)));
}

static void h_version(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_NONE);
    if (c)
        api_reply(c, 200, json_pack("{s:o}", "version", version_v21(ud)));
}

/* ---- flavors ---- */

typedef struct SeedFlavor {
    const char *id;
    int vcpus, ram_mb, disk_gb;
    bool gpu;
} SeedFlavor;

/* The instance types of the design (infrastructure layer, 1.1); disks sized by class. */
static const SeedFlavor seed_flavors[] = {
    {"t3.micro", 2, 1024, 10, false},   {"t3.small", 2, 2048, 20, false},
    {"t3.medium", 2, 4096, 40, false},  {"t3.large", 2, 8192, 80, false},
    {"c5.xlarge", 4, 8192, 80, false},  {"m5.2xlarge", 8, 32768, 160, false},
    {"g4.xlarge", 4, 16384, 160, true},
};

static json_t *flavor_doc(const char *id, const char *name, int64_t vcpus, int64_t ram,
                          int64_t disk, int64_t ephemeral, int64_t swap, double rxtx,
                          bool is_public)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:o,s:f,s:b,s:b,s:{},s:[]}", "id", id, "name", name,
                     "vcpus", (json_int_t)vcpus, "ram", (json_int_t)ram, "disk", (json_int_t)disk,
                     "OS-FLV-EXT-DATA:ephemeral", (json_int_t)ephemeral, "swap",
                     swap ? json_integer(swap) : json_string(""), "rxtx_factor", rxtx,
                     "os-flavor-access:is_public", is_public, "OS-FLV-DISABLED:disabled", 0,
                     "_extra_specs", "_access");
}

static int flavor_save(Api *a, json_t *doc, bool insert)
{
    ApiDocMeta m = {.kind = "flavor",
                    .id = nova_str(doc, "id"),
                    .project = "",
                    .name = nova_str(doc, "name"),
                    .uniq = nova_str(doc, "name")};
    return insert ? api_store_insert(a->store, &m, doc) : api_store_update(a->store, &m, doc);
}

static bool flavor_visible(const ApiCall *c, json_t *doc)
{
    size_t i;
    json_t *v;
    if (c->auth.system_admin || json_is_true(json_object_get(doc, "os-flavor-access:is_public")))
        return true;
    json_array_foreach(json_object_get(doc, "_access"), i, v)
    {
        if (strcmp(json_string_value(v), c->auth.project_id) == 0)
            return true;
    }
    return false;
}

json_t *nova_flavor_lookup(ApiCall *c, const char *id)
{
    json_t *doc;
    if (!id || api_store_get(c->api->store, "flavor", id, &doc, NULL, 0) < 0)
        return NULL;
    if (!flavor_visible(c, doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int64_t nova_flavor_gpus(json_t *specs)
{
    const char *pgpu = nova_str(specs, "resources:PGPU"),
               *alias = nova_str(specs, "pci_passthrough:alias");
    if (pgpu)
        return strtoll(pgpu, NULL, 10);
    if (alias && strncasecmp(alias, "gpu", 3) == 0 && strchr(alias, ':'))
        return strtoll(strchr(alias, ':') + 1, NULL, 10);
    return 0;
}

static json_t *flavor_view(Api *a, json_t *doc, bool detail)
{
    const char *id = nova_str(doc, "id");
    if (!detail) {
        json_t *v = json_pack("{s:O,s:O,s:o}", "id", json_object_get(doc, "id"), "name",
                              json_object_get(doc, "name"), "links", nova_links(a, "flavors", id));
        json_decref(doc);
        return v;
    }
    json_object_set_new(doc, "links", nova_links(a, "flavors", id));
    return api_doc_public(doc);
}

void nova_flavors_seed(Api *a)
{
    for (size_t i = 0; i < ELEMENTSOF(seed_flavors); i++) {
        const SeedFlavor *f = &seed_flavors[i];
        json_t *doc;
        if (api_store_get(a->store, "flavor", f->id, &doc, NULL, 0) == 0) {
            json_decref(doc);
            continue;
        }
        doc = flavor_doc(f->id, f->id, f->vcpus, f->ram_mb, f->disk_gb, 0, 0, 1.0, true);
        if (f->gpu)
            json_object_set_new(
                doc, "_extra_specs",
                json_pack("{s:s,s:s}", "pci_passthrough:alias", "gpu:1", "resources:PGPU", "1"));
        int r = flavor_save(a, doc, true);
        if (r < 0 && r != -EEXIST)
            log_warn("flavor %s not seeded: %s", f->id, strerror(-r));
        json_decref(doc);
    }
}

typedef struct FlavorOrder {
    int key; /* index into flavor_sort_keys */
    bool desc;
} FlavorOrder;

static const char *const flavor_sort_keys[][2] = {
    {"flavorid", "id"}, {"name", "name"},    {"memory_mb", "ram"},
    {"vcpus", "vcpus"}, {"root_gb", "disk"}, {"id", "id"},
};

static int flavor_cmp(const void *x, const void *y, void *ud)
{
    const FlavorOrder *o = ud;
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    const char *k = flavor_sort_keys[o->key][1];
    int r;
    if (json_is_integer(json_object_get(a, k)))
        r = nova_num(a, k) < nova_num(b, k) ? -1 : nova_num(a, k) > nova_num(b, k);
    else
        r = strcmp(nova_str(a, k), nova_str(b, k));
    if (r == 0)
        r = strcmp(nova_str(a, "id"), nova_str(b, "id"));
    return o->desc ? -r : r;
}

/* A non-negative integer query parameter (absent: 0); false after a 400. */
static bool query_count(ApiCall *c, const char *key, int64_t *ret)
{
    const char *v = api_query(c, key);
    char *end;
    *ret = v ? strtoll(v, &end, 10) : 0;
    if (v && (!*v || *end || *ret < 0 || *ret > INT32_MAX)) {
        api_fault(c, 400, NULL, "Invalid %s value: %.32s", key, v);
        return false;
    }
    return true;
}

static void flavors_list(SovHttpReq *req, Api *a, bool detail)
{
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_READ);
    int64_t min_disk, min_ram;
    if (!c || !query_count(c, "minDisk", &min_disk) || !query_count(c, "minRam", &min_ram))
        return;
    int limit = api_query_limit(c, LIST_MAX, LIST_MAX);
    const char *pub = api_query(c, "is_public"), *marker = api_query(c, "marker");
    const char *sk = api_query(c, "sort_key"), *sd = api_query(c, "sort_dir");
    FlavorOrder order = {.key = sk ? -1 : 0, .desc = sd && strcmp(sd, "desc") == 0};
    if (limit < 0)
        return;
    for (size_t i = 0; sk && i < ELEMENTSOF(flavor_sort_keys); i++)
        if (strcmp(sk, flavor_sort_keys[i][0]) == 0)
            order.key = (int)i;
    if (order.key < 0 || (sd && strcmp(sd, "asc") != 0 && strcmp(sd, "desc") != 0)) {
        api_fault(c, 400, NULL, "Invalid sort_key or sort_dir.");
        return;
    }
    /* admins choose with is_public (true by default, "none" for all); others see the public
     * flavors and the private ones their project was given */
    int want_public = 1; /* 1 public, 0 private, -1 all */
    if (c->auth.system_admin && pub) {
        if (strcasecmp(pub, "none") == 0)
            want_public = -1;
        else if (strcasecmp(pub, "false") == 0 || strcmp(pub, "0") == 0 ||
                 strcasecmp(pub, "no") == 0)
            want_public = 0;
    }
    ApiListQuery lq = {.kind = "flavor"};
    json_t *all = NULL, *v, **items = NULL;
    if (api_store_list(a->store, &lq, &all) < 0 ||
        !(items = calloc(json_array_size(all) + 1, sizeof(*items)))) {
        json_decref(all);
        api_fault(c, 500, NULL, "The flavors cannot be read.");
        return;
    }
    size_t n = 0, i;
    json_array_foreach(all, i, v)
    {
        bool is_pub = json_is_true(json_object_get(v, "os-flavor-access:is_public"));
        if (nova_num(v, "disk") < min_disk || nova_num(v, "ram") < min_ram)
            continue;
        if (c->auth.system_admin ? (want_public >= 0 && is_pub != (want_public == 1))
                                 : !flavor_visible(c, v))
            continue;
        items[n++] = v;
    }
    qsort_r(items, n, sizeof(*items), flavor_cmp, &order);
    size_t start = 0;
    if (marker) {
        for (start = 0; start < n && strcmp(nova_str(items[start], "id"), marker) != 0; start++)
            ;
        if (start == n) {
            free(items);
            json_decref(all);
            api_fault(c, 400, NULL, "marker [%s] not found", marker);
            return;
        }
        start++;
    }
    json_t *arr = json_array(), *out = json_object();
    const char *last = NULL;
    for (i = start; i < n && json_array_size(arr) < (size_t)limit; i++) {
        last = nova_str(items[i], "id");
        json_array_append_new(arr, flavor_view(a, json_incref(items[i]), detail));
    }
    json_object_set_new(out, "flavors", arr);
    if (api_query(c, "limit") && json_array_size(arr) == (size_t)limit && last)
        nova_next_link(c, out, "flavors_links", detail ? "flavors/detail" : "flavors", last);
    free(items);
    json_decref(all);
    api_reply(c, 200, out);
}

static void h_flavors(SovHttpReq *req, void *ud)
{
    flavors_list(req, ud, false);
}

static void h_flavors_detail(SovHttpReq *req, void *ud)
{
    flavors_list(req, ud, true);
}

/* Starts a flavor call: the flavor the caller may see, or NULL after a 404. */
static json_t *flavor_call(ApiCall *c)
{
    const char *id = api_param(c, "id");
    snprintf(c->target, sizeof(c->target), "%.127s", id ? id : "");
    json_t *doc = nova_flavor_lookup(c, id);
    if (!doc)
        api_fault(c, 404, NULL, "Flavor %s could not be found.", id ? id : "");
    return doc;
}

static void h_flavor_show(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_READ);
    json_t *doc = c ? flavor_call(c) : NULL;
    if (doc)
        api_reply(c, 200, json_pack("{s:o}", "flavor", flavor_view(ud, doc, true)));
}

static void h_flavor_create(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_ADMIN);
    json_t *b = c ? api_body(c, "flavor") : NULL;
    if (!b)
        return;
    static const char *const keys[] = {"name",  "id",          "ram",
                                       "vcpus", "disk",        "OS-FLV-EXT-DATA:ephemeral",
                                       "swap",  "rxtx_factor", "os-flavor-access:is_public",
                                       NULL};
    SovBuf err = SOV_BUF_INIT;
    const char *name = NULL, *id = NULL;
    int64_t ram = 0, vcpus = 0, disk = 0, eph = 0, swap = 0;
    bool is_public = true;
    json_t *rx = json_object_get(b, "rxtx_factor");
    if (sov_json_check_keys(b, keys, &err) < 0 ||
        sov_json_get_string(b, "name", true, NOVA_NAME_MAX, &name, &err) < 0 ||
        sov_json_get_string(b, "id", false, NOVA_NAME_MAX, &id, &err) < 0 ||
        nova_get_intish(b, "ram", true, 1, INT32_MAX, &ram, &err) < 0 ||
        nova_get_intish(b, "vcpus", true, 1, INT32_MAX, &vcpus, &err) < 0 ||
        nova_get_intish(b, "disk", true, 0, INT32_MAX, &disk, &err) < 0 ||
        nova_get_intish(b, "OS-FLV-EXT-DATA:ephemeral", false, 0, INT32_MAX, &eph, &err) < 0 ||
        nova_get_intish(b, "swap", false, 0, INT32_MAX, &swap, &err) < 0 ||
        sov_json_get_bool(b, "os-flavor-access:is_public", false, &is_public, &err) < 0 ||
        (rx && !json_is_null(rx) && (!json_is_number(rx) || json_number_value(rx) <= 0) &&
         sov_buf_puts(&err, "'rxtx_factor' must be a positive number") >= 0)) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute flavor. %s", err.ptr);
        sov_buf_release(&err);
        return;
    }
    sov_buf_release(&err);
    char uuid[API_UUID_LEN + 1];
    if (!id) {
        api_new_uuid(uuid);
        id = uuid;
    }
    bool id_ok = *id && id[0] != ' ' && id[strlen(id) - 1] != ' ';
    for (const char *p = id; *p; p++)
        id_ok = id_ok && (strchr("._- ", *p) || (*p >= '0' && *p <= '9') ||
                          (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'));
    if (!nova_name_ok(name) || !id_ok) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute %s.", id_ok ? "name" : "id");
        return;
    }
    snprintf(c->target, sizeof(c->target), "%.127s", id);
    json_t *old;
    if (api_store_get(a->store, "flavor", id, &old, NULL, 0) == 0) {
        json_decref(old);
        api_fault(c, 409, NULL, "Flavor with ID %s already exists.", id);
        return;
    }
    json_t *doc = flavor_doc(id, name, vcpus, ram, disk, eph, swap,
                             rx && json_is_number(rx) ? json_number_value(rx) : 1.0, is_public);
    int r = flavor_save(a, doc, true);
    if (r < 0) {
        json_decref(doc);
        api_fault(c, r == -EEXIST ? 409 : 500, NULL, "Flavor with name %s already exists.", name);
        return;
    }
    api_reply(c, 200, json_pack("{s:o}", "flavor", flavor_view(a, doc, true)));
}

static void h_flavor_delete(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_ADMIN);
    json_t *doc = c ? flavor_call(c) : NULL;
    if (!doc)
        return;
    json_decref(doc);
    int r = api_store_delete(c->api->store, "flavor", c->target);
    if (r < 0)
        api_fault(c, 500, NULL, "The flavor cannot be deleted.");
    else
        api_reply(c, 202, NULL);
}

static json_t *access_list(json_t *doc)
{
    json_t *out = json_array(), *v;
    size_t i;
    json_array_foreach(json_object_get(doc, "_access"), i, v)
    {
        json_array_append_new(
            out, json_pack("{s:O,s:O}", "flavor_id", json_object_get(doc, "id"), "tenant_id", v));
    }
    return json_pack("{s:o}", "flavor_access", out);
}

static void h_flavor_access(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_ADMIN);
    json_t *doc = c ? flavor_call(c) : NULL;
    if (!doc)
        return;
    if (json_is_true(json_object_get(doc, "os-flavor-access:is_public")))
        api_fault(c, 404, NULL, "Access list not available for public flavors.");
    else
        api_reply(c, 200, access_list(doc));
    json_decref(doc);
}

static void h_flavor_action(SovHttpReq *req, void *ud)
{
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, API_NEED_ADMIN);
    json_t *doc = c ? flavor_call(c) : NULL, *b = doc ? api_body(c, NULL) : NULL;
    if (!b) {
        json_decref(doc);
        return;
    }
    json_t *add = json_object_get(b, "addTenantAccess"),
           *rm = json_object_get(b, "removeTenantAccess");
    json_t *act = add ? add : rm, *acc = json_object_get(doc, "_access");
    const char *tenant = nova_str(act, "tenant");
    if (json_object_size(b) != 1 || !act || !tenant || !*tenant || strlen(tenant) > 255) {
        json_decref(doc);
        api_fault(c, 400, NULL,
                  "Invalid input: expected addTenantAccess or removeTenantAccess "
                  "with a tenant");
        return;
    }
    if (json_is_true(json_object_get(doc, "os-flavor-access:is_public"))) {
        json_decref(doc);
        api_fault(c, 409, NULL, "Can not add access to a public flavor.");
        return;
    }
    size_t i, found = SIZE_MAX;
    json_t *v;
    json_array_foreach(acc, i, v)
    {
        if (strcmp(json_string_value(v), tenant) == 0)
            found = i;
    }
    if (add && found != SIZE_MAX) {
        api_fault(c, 409, NULL,
                  "Flavor access already exists for flavor %s and project %s "
                  "combination.",
                  c->target, tenant);
    } else if (rm && found == SIZE_MAX) {
        api_fault(c, 404, NULL, "Flavor access not found for %s / %s combination.", c->target,
                  tenant);
    } else {
        if (add)
            json_array_append_new(acc, json_string(tenant));
        else
            json_array_remove(acc, found);
        if (flavor_save(c->api, doc, false) < 0)
            api_fault(c, 500, NULL, "The flavor cannot be updated.");
        else
            api_reply(c, 200, access_list(doc));
    }
    json_decref(doc);
}

/* Extra spec keys as Nova allows them; values are strings (numbers and booleans converted). */
static bool spec_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255)
        return false;
    for (; *k; k++)
        if (!strchr("-_:. /", *k) && !(*k >= '0' && *k <= '9') && !(*k >= 'a' && *k <= 'z') &&
            !(*k >= 'A' && *k <= 'Z'))
            return false;
    return true;
}

static json_t *spec_value(json_t *v)
{
    if (json_is_string(v) && json_string_length(v) <= 255)
        return json_incref(v);
    if (json_is_integer(v))
        return json_sprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v))
        return json_sprintf("%g", json_real_value(v));
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "True" : "False");
    return NULL;
}

static void h_specs(SovHttpReq *req, void *ud)
{
    bool get = sov_str_eq(sov_http_req_method(req), SOV_STR("GET"));
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, get ? API_NEED_READ : API_NEED_ADMIN);
    json_t *doc = c ? flavor_call(c) : NULL, *specs = json_object_get(doc, "_extra_specs");
    if (!doc)
        return;
    const char *key = api_param(c, "key");
    json_t *b = NULL;
    if (!get && !sov_str_eq(sov_http_req_method(req), SOV_STR("DELETE")) &&
        !(b = api_body(c, key ? NULL : "extra_specs"))) {
        json_decref(doc);
        return;
    }
    if (get) {
        json_t *v = key ? json_object_get(specs, key) : NULL;
        if (key && !v)
            api_fault(c, 404, NULL, "Flavor %s has no extra specs with key %s.", c->target, key);
        else
            api_reply(c, 200,
                      key ? json_pack("{s:O}", key, v) : json_pack("{s:O}", "extra_specs", specs));
        json_decref(doc);
        return;
    }
    if (!b) { /* DELETE of one key */
        if (!key || !json_object_get(specs, key)) {
            api_fault(c, 404, NULL, "Flavor %s has no extra specs with key %s.", c->target,
                      key ? key : "");
            json_decref(doc);
            return;
        }
        json_object_del(specs, key);
    } else {
        if (key && (json_object_size(b) != 1 || !json_object_get(b, key))) {
            api_fault(c, 400, NULL, "Request body and URI mismatch");
            json_decref(doc);
            return;
        }
        const char *k;
        json_t *v, *vals = json_object();
        json_object_foreach(b, k, v)
        {
            json_t *s = spec_value(v);
            if (!spec_key_ok(k) || !s) {
                json_decref(s);
                json_decref(vals);
                json_decref(doc);
                api_fault(c, 400, NULL, "Invalid input for field/attribute extra_specs: '%.64s'",
                          k);
                return;
            }
            json_object_set_new(vals, k, s);
        }
        json_object_update(specs, vals);
        if (json_object_size(specs) > SPECS_MAX) {
            json_decref(vals);
            json_decref(doc);
            api_fault(c, 400, NULL, "At most %d extra specs per flavor.", SPECS_MAX);
            return;
        }
        b = key ? vals : json_pack("{s:o}", "extra_specs", vals);
    }
    if (flavor_save(c->api, doc, false) < 0) {
        json_decref(b);
        api_fault(c, 500, NULL, "The flavor cannot be updated.");
    } else
        api_reply(c, 200, b);
    json_decref(doc);
}

/* ---- availability zones ---- */

static void zones_reply(SovHttpReq *req, Api *a, bool detail)
{
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, detail ? API_NEED_ADMIN : API_NEED_READ);
    if (!c)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < api_region_count(a); i++) {
        const ApiRegion *r = api_region_at(a, i);
        for (unsigned z = 0; z < r->nzones; z++)
            json_array_append_new(arr, json_pack("{s:s,s:{s:b},s:o}", "zoneName", r->zones[z].name,
                                                 "zoneState", "available", 1, "hosts",
                                                 detail ? json_object() : json_null()));
    }
    api_reply(c, 200, json_pack("{s:o}", "availabilityZoneInfo", arr));
}

static void h_zones(SovHttpReq *req, void *ud)
{
    zones_reply(req, ud, false);
}

static void h_zones_detail(SovHttpReq *req, void *ud)
{
    zones_reply(req, ud, true);
}

/* ---- quota sets and limits ---- */

static const char *const quota_keys[] = {"instances", "cores", "ram", "key_pairs"};

/* Nova's fixed or network-owned quotas, shown for clients that expect them. */
static const struct {
    const char *key;
    int value;
} quota_fixed[] = {
    {"metadata_items", NOVA_META_MAX},
    {"injected_files", 5},
    {"injected_file_content_bytes", 10240},
    {"injected_file_path_bytes", 255},
    {"server_groups", 10},
    {"server_group_members", 10},
    {"fixed_ips", -1},
    {"floating_ips", -1},
    {"security_groups", -1},
    {"security_group_rules", -1},
};

static int64_t quota_default(Api *a, const char *key)
{
    return strcmp(key, "instances") == 0 ? a->cfg.quota_instances
           : strcmp(key, "cores") == 0   ? a->cfg.quota_cores
           : strcmp(key, "ram") == 0     ? a->cfg.quota_ram_mb
                                         : a->cfg.quota_key_pairs;
}

/* mode 0: limits, 1: defaults, 2: detail with usage. */
static json_t *quota_set(Api *a, const char *project, int mode)
{
    json_t *qs = json_pack("{s:s}", "id", project);
    for (size_t i = 0; i < ELEMENTSOF(quota_keys); i++) {
        const char *k = quota_keys[i];
        int64_t lim = mode == 1 ? quota_default(a, k) : api_quota_limit(a, project, k);
        json_object_set_new(
            qs, k,
            mode == 2 ? json_pack("{s:I,s:I,s:i}", "limit", (json_int_t)lim, "in_use",
                                  (json_int_t)api_quota_usage(a, project, k), "reserved", 0)
                      : json_integer(lim));
    }
    for (size_t i = 0; i < ELEMENTSOF(quota_fixed); i++)
        json_object_set_new(qs, quota_fixed[i].key,
                            mode == 2 ? json_pack("{s:i,s:i,s:i}", "limit", quota_fixed[i].value,
                                                  "in_use", 0, "reserved", 0)
                                      : json_integer(quota_fixed[i].value));
    return json_pack("{s:o}", "quota_set", qs);
}

static const char *quota_project(ApiCall *c)
{
    const char *p = api_param(c, "project");
    if (!p || !api_valid_id(sov_str(p))) {
        api_fault(c, 400, NULL, "Invalid project id %.64s", p ? p : "");
        return NULL;
    }
    if (!c->auth.system_admin && strcmp(p, c->auth.project_id) != 0) {
        api_fault(c, 403, NULL,
                  "Policy doesn't allow os_compute_api:os-quota-sets:show to be "
                  "performed.");
        return NULL;
    }
    snprintf(c->target, sizeof(c->target), "%s", p);
    return p;
}

static void quota_get(SovHttpReq *req, Api *a, int mode)
{
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_READ);
    const char *p = c ? quota_project(c) : NULL;
    if (p)
        api_reply(c, 200, quota_set(a, p, mode));
}

static void h_quota_show(SovHttpReq *req, void *ud)
{
    quota_get(req, ud, 0);
}

static void h_quota_defaults(SovHttpReq *req, void *ud)
{
    quota_get(req, ud, 1);
}

static void h_quota_detail(SovHttpReq *req, void *ud)
{
    quota_get(req, ud, 2);
}

static void h_quota_update(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_ADMIN);
    const char *p = c ? quota_project(c) : NULL;
    json_t *b = p ? api_body(c, "quota_set") : NULL;
    if (!b)
        return;
    SovBuf err = SOV_BUF_INIT;
    bool force = false;
    int64_t vals[ELEMENTSOF(quota_keys)];
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v)
    {
        bool known = strcmp(k, "force") == 0;
        for (size_t i = 0; i < ELEMENTSOF(quota_keys); i++)
            known = known || strcmp(k, quota_keys[i]) == 0;
        for (size_t i = 0; i < ELEMENTSOF(quota_fixed); i++)
            known = known || strcmp(k, quota_fixed[i].key) == 0;
        if (!known || (strcmp(k, "force") != 0 &&
                       nova_get_intish(b, k, true, -1, INT32_MAX, &(int64_t){0}, &err) < 0)) {
            api_fault(c, 400, NULL, "Invalid input for field/attribute quota_set. %s",
                      err.ptr ? err.ptr : "Additional properties are not allowed");
            sov_buf_release(&err);
            return;
        }
    }
    if (sov_json_get_bool(b, "force", false, &force, &err) < 0) {
        api_fault(c, 400, NULL, "Invalid input for field/attribute force. %s", err.ptr);
        sov_buf_release(&err);
        return;
    }
    for (size_t i = 0; i < ELEMENTSOF(quota_keys); i++) {
        vals[i] = INT64_MIN;
        if (!json_object_get(b, quota_keys[i]))
            continue;
        nova_get_intish(b, quota_keys[i], true, -1, INT32_MAX, &vals[i], &err);
        int64_t used = api_quota_usage(a, p, quota_keys[i]);
        if (!force && vals[i] >= 0 && vals[i] < used) {
            api_fault(c, 400, NULL,
                      "Quota limit %" PRId64 " for %s must be greater than or "
                      "equal to already used and reserved %" PRId64 ".",
                      vals[i], quota_keys[i], used);
            sov_buf_release(&err);
            return;
        }
    }
    sov_buf_release(&err);
    int r = api_store_begin(a->store);
    for (size_t i = 0; i < ELEMENTSOF(quota_keys) && r >= 0; i++)
        if (vals[i] != INT64_MIN)
            r = api_quota_set(a, p, quota_keys[i], vals[i]);
    if (r < 0) {
        api_store_rollback(a->store);
        api_fault(c, 500, NULL, "The quota cannot be stored.");
        return;
    }
    api_store_commit(a->store);
    json_t *out = quota_set(a, p, 0);
    json_object_del(json_object_get(out, "quota_set"), "id");
    api_reply(c, 200, out);
}

/* Back to the defaults: the compute members leave the project's quota document. */
static void h_quota_delete(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_ADMIN);
    const char *p = c ? quota_project(c) : NULL;
    json_t *doc;
    if (!p)
        return;
    if (api_store_get(a->store, "quota", p, &doc, NULL, 0) == 0) {
        for (size_t i = 0; i < ELEMENTSOF(quota_keys); i++)
            json_object_del(doc, quota_keys[i]);
        ApiDocMeta m = {.kind = "quota", .id = p, .project = p};
        int r = api_store_update(a->store, &m, doc);
        json_decref(doc);
        if (r < 0) {
            api_fault(c, 500, NULL, "The quota cannot be stored.");
            return;
        }
    }
    api_reply(c, 202, NULL);
}

static void h_limits(SovHttpReq *req, void *ud)
{
    Api *a = ud;
    ApiCall *c = api_begin(a, req, API_STYLE_NOVA, API_NEED_READ);
    if (!c)
        return;
    const char *p = api_query(c, "tenant_id");
    if (!p || !c->auth.system_admin || !api_valid_id(sov_str(p)))
        p = c->auth.project_id;
    json_t *abs =
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
                  "maxTotalInstances", (json_int_t)api_quota_limit(a, p, "instances"),
                  "maxTotalCores", (json_int_t)api_quota_limit(a, p, "cores"), "maxTotalRAMSize",
                  (json_int_t)api_quota_limit(a, p, "ram"), "maxTotalKeypairs",
                  (json_int_t)api_quota_limit(a, p, "key_pairs"), "totalInstancesUsed",
                  (json_int_t)api_quota_usage(a, p, "instances"), "totalCoresUsed",
                  (json_int_t)api_quota_usage(a, p, "cores"), "totalRAMUsed",
                  (json_int_t)api_quota_usage(a, p, "ram"), "maxServerMeta", NOVA_META_MAX,
                  "maxImageMeta", NOVA_META_MAX, "maxPersonality", 5, "maxPersonalitySize", 10240,
                  "maxSecurityGroups", -1, "maxSecurityGroupRules", -1, "maxTotalFloatingIps", -1,
                  "maxServerGroups", 10, "maxServerGroupMembers", 10, "totalSecurityGroupsUsed", 0,
                  "totalFloatingIpsUsed", 0, "totalServerGroupsUsed", 0);
    api_reply(c, 200, json_pack("{s:{s:[],s:o}}", "limits", "rate", "absolute", abs));
}

/* ---- server metadata ---- */

static void h_metadata(SovHttpReq *req, void *ud)
{
    SovStr m = sov_http_req_method(req);
    bool get = sov_str_eq(m, SOV_STR("GET")), post = sov_str_eq(m, SOV_STR("POST"));
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, get ? API_NEED_READ : API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *md = json_object_get(doc, "metadata");
    json_t *b = doc && !get ? api_body(c, "metadata") : NULL;
    if (!doc || (!get && !b))
        goto out;
    if (!get) {
        size_t have = 0;
        const char *k;
        json_t *v;
        json_object_foreach(md, k, v)
        {
            have += post && !json_object_get(b, k); /* keys the merge keeps */
        }
        if (!nova_metadata_ok(c, b, have))
            goto out;
        if (!post)
            json_object_clear(md);
        json_object_update(md, b);
        if (nova_server_save(c->api, doc, project) < 0) {
            api_fault(c, 500, NULL, "The server cannot be stored.");
            goto out;
        }
    }
    api_reply(c, 200, json_pack("{s:O}", "metadata", md));
out:
    json_decref(doc);
}

static void h_metadata_item(SovHttpReq *req, void *ud)
{
    SovStr m = sov_http_req_method(req);
    bool get = sov_str_eq(m, SOV_STR("GET")), put = sov_str_eq(m, SOV_STR("PUT"));
    ApiCall *c = api_begin(ud, req, API_STYLE_NOVA, get ? API_NEED_READ : API_NEED_WRITE);
    char project[API_ID_LEN + 1];
    json_t *doc = c ? nova_server_get(c, project) : NULL, *md = json_object_get(doc, "metadata");
    json_t *b = doc && put ? api_body(c, "meta") : NULL;
    const char *key = doc ? api_param(c, "key") : NULL;
    if (!doc || (put && !b) || !key)
        goto out;
    json_t *v = json_object_get(md, key);
    if (put) {
        if (json_object_size(b) != 1 || !json_object_get(b, key)) {
            api_fault(c, 400, NULL, "Request body and URI mismatch");
            goto out;
        }
        if (!nova_metadata_ok(c, b, json_object_size(md) - (v ? 1 : 0)))
            goto out;
        json_object_update(md, b);
    } else if (!v) {
        api_fault(c, 404, NULL, "Metadata item was not found");
        goto out;
    } else if (get) {
        api_reply(c, 200, json_pack("{s:{s:O}}", "meta", key, v));
        goto out;
    } else
        json_object_del(md, key);
    if (nova_server_save(c->api, doc, project) < 0)
        api_fault(c, 500, NULL, "The server cannot be stored.");
    else
        api_reply(c, put ? 200 : 204, put ? json_pack("{s:O}", "meta", b) : NULL);
out:
    json_decref(doc);
}

bool nova_metadata_ok(ApiCall *c, json_t *md, size_t have)
{
    const char *k;
    json_t *v;
    if (!json_is_object(md)) {
        api_fault(c, 400, NULL,
                  "Invalid input for field/attribute metadata. Value must be an "
                  "object.");
        return false;
    }
    if (have + json_object_size(md) > NOVA_META_MAX) {
        api_fault(c, 403, NULL, "Quota exceeded for metadata_items: at most %d items",
                  NOVA_META_MAX);
        return false;
    }
    json_object_foreach(md, k, v)
    {
        if (!*k || strlen(k) > 255 || !json_is_string(v) || json_string_length(v) > 255) {
            api_fault(c, 400, NULL,
                      "Invalid input for field/attribute metadata. '%.64s' needs a key of "
                      "1-255 and a string value of 0-255 characters",
                      k);
            return false;
        }
    }
    return true;
}

void nova_catalog_routes(Api *a)
{
    SovRouter *r = a->router;
    sov_router_add(r, "GET", "/compute", 0, h_versions, a);
    sov_router_add(r, "GET", "/compute/", 0, h_versions, a);
    sov_router_add(r, "GET", NOVA, 0, h_version, a);
    sov_router_add(r, "GET", NOVA "/", 0, h_version, a);
    keypair_routes(a);
    sov_router_add(r, "GET", NOVA "/flavors", 0, h_flavors, a);
    sov_router_add(r, "POST", NOVA "/flavors", 0, h_flavor_create, a);
    sov_router_add(r, "GET", NOVA "/flavors/detail", 0, h_flavors_detail, a);
    sov_router_add(r, "GET", NOVA "/flavors/{id}", 0, h_flavor_show, a);
    sov_router_add(r, "DELETE", NOVA "/flavors/{id}", 0, h_flavor_delete, a);
    sov_router_add(r, "GET", NOVA "/flavors/{id}/os-flavor-access", 0, h_flavor_access, a);
    sov_router_add(r, "POST", NOVA "/flavors/{id}/action", 0, h_flavor_action, a);
    sov_router_add(r, "GET", NOVA "/flavors/{id}/os-extra_specs", 0, h_specs, a);
    sov_router_add(r, "POST", NOVA "/flavors/{id}/os-extra_specs", 0, h_specs, a);
    sov_router_add(r, "GET", NOVA "/flavors/{id}/os-extra_specs/{key}", 0, h_specs, a);
    sov_router_add(r, "PUT", NOVA "/flavors/{id}/os-extra_specs/{key}", 0, h_specs, a);
    sov_router_add(r, "DELETE", NOVA "/flavors/{id}/os-extra_specs/{key}", 0, h_specs, a);
    sov_router_add(r, "GET", NOVA "/os-availability-zone", 0, h_zones, a);
    sov_router_add(r, "GET", NOVA "/os-availability-zone/detail", 0, h_zones_detail, a);
    sov_router_add(r, "GET", NOVA "/os-quota-sets/{project}", 0, h_quota_show, a);
    sov_router_add(r, "PUT", NOVA "/os-quota-sets/{project}", 0, h_quota_update, a);
    sov_router_add(r, "DELETE", NOVA "/os-quota-sets/{project}", 0, h_quota_delete, a);
    sov_router_add(r, "GET", NOVA "/os-quota-sets/{project}/defaults", 0, h_quota_defaults, a);
    sov_router_add(r, "GET", NOVA "/os-quota-sets/{project}/detail", 0, h_quota_detail, a);
    sov_router_add(r, "GET", NOVA "/limits", 0, h_limits, a);
    sov_router_add(r, "GET", NOVA "/servers/{id}/metadata", 0, h_metadata, a);
    sov_router_add(r, "PUT", NOVA "/servers/{id}/metadata", 0, h_metadata, a);
    sov_router_add(r, "POST", NOVA "/servers/{id}/metadata", 0, h_metadata, a);
    sov_router_add(r, "GET", NOVA "/servers/{id}/metadata/{key}", 0, h_metadata_item, a);
    sov_router_add(r, "PUT", NOVA "/servers/{id}/metadata/{key}", 0, h_metadata_item, a);
    sov_router_add(r, "DELETE", NOVA "/servers/{id}/metadata/{key}", 0, h_metadata_item, a);
}
