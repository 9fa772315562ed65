/* SPDX-License-Identifier: Apache-2.0 */
/* Access control: who may do what to a bucket and its objects. The bucket owner may do
 * everything its bucket policy does not explicitly deny; anyone else needs a grant from the
 * policy, the bucket ACL or (for object reads) the object's ACL, an explicit Deny winning over
 * every grant. Also the handlers of the ?policy, ?policyStatus, ?acl and ?publicAccessBlock
 * sub-resources, and the public access block that keeps buckets from being opened by mistake.
 *
 * Stored forms: buckets.config "policy" is the policy text as PUT (a JSON string),
 * "acl" the grants beyond the owner's FULL_CONTROL ([{"id"|"uri": .., "perm": ..}]),
 * "public_access_block" {"BlockPublicAcls": bool, ...}; an object's meta "_acl" holds its grants
 * in the same form. Objects belong to their bucket's owner. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

#define URI_ALL_USERS    "http://acs.amazonaws.com/groups/global/AllUsers"
#define URI_AUTH_USERS   "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
#define URI_LOG_DELIVERY "http://acs.amazonaws.com/groups/s3/LogDelivery"
#define XSI_NS           "http://www.w3.org/2001/XMLSchema-instance"
#define ACL_MAX_GRANTS   100 /* as AWS */

enum {
    P_READ = 1,
    P_WRITE = 2,
    P_READ_ACP = 4,
    P_WRITE_ACP = 8,
    P_FULL = 15,
};

static const struct {
    const char *name;
    unsigned bits;
} perms[] = {
    {"FULL_CONTROL", P_FULL}, {"WRITE", P_WRITE},       {"WRITE_ACP", P_WRITE_ACP},
    {"READ", P_READ},         {"READ_ACP", P_READ_ACP},
};

static unsigned perm_bits(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(perms); i++)
        if (name && strcmp(perms[i].name, name) == 0)
            return perms[i].bits;
    return 0;
}

/* ---- operations and the permissions they need ---- */

enum {
    R_OBJECT = 1,      /* the resource is the object (bucket/key) */
    R_ALL_OBJECTS = 2, /* many objects at once (DeleteObjects): bucket/ * */
    R_POLICY = 4,      /* the policy's own operations: never denied to the owner */
    R_PUBLIC = 8,      /* needs no authorisation at all (CORS preflight) */
};

typedef struct OpRule {
    const char *op;
    const char *action;         /* IAM action */
    const char *version_action; /* the action when a versionId parameter is present */
    unsigned bucket_perm;       /* bucket ACL permission that grants it, 0: none */
    unsigned object_perm;       /* object ACL permission that grants it, 0: none */
    unsigned flags;
} OpRule;

static const OpRule rules[] = {
    {"GetObject", "s3:GetObject", "s3:GetObjectVersion", 0, P_READ, R_OBJECT},
    {"HeadObject", "s3:GetObject", "s3:GetObjectVersion", 0, P_READ, R_OBJECT},
    {"GetObjectAcl", "s3:GetObjectAcl", "s3:GetObjectVersionAcl", 0, P_READ_ACP, R_OBJECT},
    {"PutObjectAcl", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", 0, P_WRITE_ACP, R_OBJECT},
    {"PutObject", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"CopyObject", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"UploadPart", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"UploadPartCopy", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"CreateMultipartUpload", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"CompleteMultipartUpload", "s3:PutObject", NULL, P_WRITE, 0, R_OBJECT},
    {"AbortMultipartUpload", "s3:AbortMultipartUpload", NULL, P_WRITE, 0, R_OBJECT},
    {"ListParts", "s3:ListMultipartUploadParts", NULL, P_READ, 0, R_OBJECT},
    {"DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion", P_WRITE, 0, R_OBJECT},
    {"DeleteObjects", "s3:DeleteObject", NULL, P_WRITE, 0, R_ALL_OBJECTS},
    {"GetObjectTagging", "s3:GetObjectTagging", "s3:GetObjectVersionTagging", 0, 0, R_OBJECT},
    {"PutObjectTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging", 0, 0, R_OBJECT},
    {"DeleteObjectTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", 0, 0,
     R_OBJECT},
    {"RestoreObject", "s3:RestoreObject", NULL, 0, 0, R_OBJECT},
    {"ListObjects", "s3:ListBucket", NULL, P_READ, 0, 0},
    {"ListObjectsV2", "s3:ListBucket", NULL, P_READ, 0, 0},
    {"HeadBucket", "s3:ListBucket", NULL, P_READ, 0, 0},
    {"ListObjectVersions", "s3:ListBucketVersions", NULL, P_READ, 0, 0},
    {"ListMultipartUploads", "s3:ListBucketMultipartUploads", NULL, P_READ, 0, 0},
    {"GetBucketLocation", "s3:GetBucketLocation", NULL, 0, 0, 0},
    {"DeleteBucket", "s3:DeleteBucket", NULL, 0, 0, 0},
    {"GetBucketPolicy", "s3:GetBucketPolicy", NULL, 0, 0, R_POLICY},
    {"PutBucketPolicy", "s3:PutBucketPolicy", NULL, 0, 0, R_POLICY},
    {"DeleteBucketPolicy", "s3:DeleteBucketPolicy", NULL, 0, 0, R_POLICY},
    {"GetBucketPolicyStatus", "s3:GetBucketPolicyStatus", NULL, 0, 0, 0},
    {"GetBucketAcl", "s3:GetBucketAcl", NULL, P_READ_ACP, 0, 0},
    {"PutBucketAcl", "s3:PutBucketAcl", NULL, P_WRITE_ACP, 0, 0},
    {"GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock", NULL, 0, 0, 0},
    {"PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock", NULL, 0, 0, 0},
    {"DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock", NULL, 0, 0, 0},
    {"GetBucketCors", "s3:GetBucketCORS", NULL, 0, 0, 0},
    {"PutBucketCors", "s3:PutBucketCORS", NULL, 0, 0, 0},
    {"DeleteBucketCors", "s3:PutBucketCORS", NULL, 0, 0, 0},
    {"GetBucketTagging", "s3:GetBucketTagging", NULL, 0, 0, 0},
    {"PutBucketTagging", "s3:PutBucketTagging", NULL, 0, 0, 0},
    {"DeleteBucketTagging", "s3:PutBucketTagging", NULL, 0, 0, 0},
    {"GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration", NULL, 0, 0, 0},
    {"PutBucketLifecycleConfiguration", "s3:PutLifecycleConfiguration", NULL, 0, 0, 0},
    {"DeleteBucketLifecycle", "s3:PutLifecycleConfiguration", NULL, 0, 0, 0},
    {"GetBucketVersioning", "s3:GetBucketVersioning", NULL, 0, 0, 0},
    {"PutBucketVersioning", "s3:PutBucketVersioning", NULL, 0, 0, 0},
    {"PreflightRequest", NULL, NULL, 0, 0, R_PUBLIC},
};

static const OpRule *rule_of(const char *op)
{
    for (size_t i = 0; op && i < ELEMENTSOF(rules); i++)
        if (strcmp(rules[i].op, op) == 0)
            return &rules[i];
    return NULL; /* unknown operations are the owner's alone */
}

/* ---- stored documents ---- */

typedef struct Pab {
    bool block_acls, ignore_acls, block_policy, restrict_buckets;
} Pab;

static const char *const pab_fields[] = {"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                         "RestrictPublicBuckets"};

static Pab pab_from_json(json_t *doc)
{
    return (Pab){json_is_true(json_object_get(doc, pab_fields[0])),
                 json_is_true(json_object_get(doc, pab_fields[1])),
                 json_is_true(json_object_get(doc, pab_fields[2])),
                 json_is_true(json_object_get(doc, pab_fields[3]))};
}

static Pab pab_read(sqlite3 *db, const char *bucket)
{
    json_t *doc = NULL;
    s3_bucket_config_get(db, bucket, "public_access_block", &doc);
    Pab p = pab_from_json(doc);
    json_decref(doc);
    return p;
}

/* The bucket's policy, parsed; NULL when it has none (or an unreadable one, which grants and
 * denies nothing). */
static S3Policy *policy_read(sqlite3 *db, const char *bucket)
{
    json_t *doc = NULL;
    S3Policy *p = NULL;
    if (s3_bucket_config_get(db, bucket, "policy", &doc) < 0 || !json_is_string(doc)) {
        json_decref(doc);
        return NULL;
    }
    SovBuf err = SOV_BUF_INIT;
    if (s3_policy_parse(json_string_value(doc), json_string_length(doc), bucket, &p, &err) < 0)
        log_warn("bucket %s: stored policy does not parse: %s", bucket, err.ptr ? err.ptr : "?");
    sov_buf_release(&err);
    json_decref(doc);
    return p;
}

static bool grant_public(json_t *g)
{
    const char *uri = json_string_value(json_object_get(g, "uri"));
    return uri && (strcmp(uri, URI_ALL_USERS) == 0 || strcmp(uri, URI_AUTH_USERS) == 0);
}

static bool grants_public(json_t *grants)
{
    for (size_t i = 0; i < json_array_size(grants); i++)
        if (grant_public(json_array_get(grants, i)))
            return true;
    return false;
}

/* The permissions a grant list gives the caller ("" anonymous). */
static unsigned grants_for(json_t *grants, const char *caller, bool ignore_public)
{
    unsigned bits = 0;
    for (size_t i = 0; i < json_array_size(grants); i++) {
        json_t *g = json_array_get(grants, i);
        const char *id = json_string_value(json_object_get(g, "id"));
        const char *uri = json_string_value(json_object_get(g, "uri"));
        bool match = false;
        if (id)
            match = caller[0] && strcmp(id, caller) == 0;
        else if (uri && !ignore_public)
            match =
                strcmp(uri, URI_ALL_USERS) == 0 || (caller[0] && strcmp(uri, URI_AUTH_USERS) == 0);
        if (match)
            bits |= perm_bits(json_string_value(json_object_get(g, "perm")));
    }
    return bits;
}

/* ---- the request as the policy sees it ---- */

typedef struct PolicyCtx {
    char resource[S3_MAX_KEY + S3_MAX_BUCKET + 32];
    char ip[64], now[32], epoch[24];
    S3PolicyKey keys[24];
    S3PolicyRequest q;
} PolicyCtx;

static void ctx_key(PolicyCtx *c, const char *name, const char *value)
{
    if (value && c->q.nkeys < ELEMENTSOF(c->keys))
        c->keys[c->q.nkeys++] = (S3PolicyKey){name, value};
}

static void ctx_init(PolicyCtx *c, S3Req *r, const char *bucket, const char *key,
                     const char *action)
{
    memset(c, 0, sizeof(*c));
    if (key)
        snprintf(c->resource, sizeof(c->resource), "arn:aws:s3:::%s/%s", bucket, key);
    else
        snprintf(c->resource, sizeof(c->resource), "arn:aws:s3:::%s", bucket);
    c->q.action = action;
    c->q.resource = c->resource;
    c->q.principal = s3_principal(r);
    c->q.keys = c->keys;
    /* the peer's address without its port ("1.2.3.4:5", "::1:5", "::ffff:1.2.3.4:5") */
    snprintf(c->ip, sizeof(c->ip), "%s", sov_http_req_peer(r->http));
    char *colon = strrchr(c->ip, ':');
    if (colon)
        *colon = '\0';
    const char *ip =
        strncmp(c->ip, "::ffff:", 7) == 0 && strchr(c->ip + 7, '.') ? c->ip + 7 : c->ip;
    int64_t now = s3_now_ms();
    s3_format_iso8601(now, c->now);
    snprintf(c->epoch, sizeof(c->epoch), "%lld", (long long)(now / 1000));
    ctx_key(c, "aws:SourceIp", ip);
    ctx_key(c, "aws:SecureTransport", r->srv->cfg.tls_cert[0] ? "true" : "false");
    ctx_key(c, "aws:CurrentTime", c->now);
    ctx_key(c, "aws:EpochTime", c->epoch);
    ctx_key(c, "aws:PrincipalType", r->key ? "Account" : "Anonymous");
    if (r->key) {
        ctx_key(c, "aws:username", r->key->account);
        ctx_key(c, "aws:userid", r->key->account);
        ctx_key(c, "aws:PrincipalAccount", r->key->account);
        ctx_key(c, "s3:signatureversion", "AWS4-HMAC-SHA256");
        ctx_key(c, "s3:authType",
                r->auth.kind == S3_AUTH_PRESIGNED ? "REST-QUERY-STRING" : "REST-HEADER");
    }
    ctx_key(c, "aws:UserAgent", s3_header(r, "user-agent"));
    ctx_key(c, "aws:Referer", s3_header(r, "referer"));
    ctx_key(c, "s3:prefix", s3_param(r, "prefix"));
    ctx_key(c, "s3:delimiter", s3_param(r, "delimiter"));
    ctx_key(c, "s3:max-keys", s3_param(r, "max-keys"));
    ctx_key(c, "s3:VersionId", s3_param(r, "versionId"));
    static const char *const headers[] = {
        "x-amz-acl",           "x-amz-copy-source",        "x-amz-metadata-directive",
        "x-amz-storage-class", "x-amz-content-sha256",     "x-amz-server-side-encryption",
        "x-amz-grant-read",    "x-amz-grant-full-control",
    };
    static const char *const names[] = {
        "s3:x-amz-acl",           "s3:x-amz-copy-source",        "s3:x-amz-metadata-directive",
        "s3:x-amz-storage-class", "s3:x-amz-content-sha256",     "s3:x-amz-server-side-encryption",
        "s3:x-amz-grant-read",    "s3:x-amz-grant-full-control",
    };
    for (size_t i = 0; i < ELEMENTSOF(headers); i++)
        ctx_key(c, names[i], s3_header(r, headers[i]));
}

/* ---- decisions ---- */

typedef enum Verdict {
    V_DENY,
    V_ALLOW,
    V_OBJECT_ACL, /* up to the object's ACL */
} Verdict;

/* What a decision reads from the bucket's configuration; loaded once per request, or once for
 * all the keys of a DeleteObjects. */
typedef struct BucketAccess {
    S3Policy *pol;
    Pab pab;
    json_t *acl;
    bool acl_read;
} BucketAccess;

static void access_load(sqlite3 *db, const S3Bucket *b, bool owner, BucketAccess *ba)
{
    *ba = (BucketAccess){0};
    if (b->no_config) /* the common case: nothing to read (and parse) per request */
        return;
    ba->pol = policy_read(db, b->name);
    ba->pab = owner ? (Pab){0} : pab_read(db, b->name);
}

static void access_release(BucketAccess *ba)
{
    s3_policy_free(ba->pol);
    json_decref(ba->acl);
    *ba = (BucketAccess){0};
}

static Verdict decide_with(S3Req *r, sqlite3 *db, const S3Bucket *b, const char *key,
                           const OpRule *rule, const char *action, BucketAccess *ba)
{
    const char *caller = s3_principal(r);
    bool owner = caller[0] && strcmp(b->owner, caller) == 0;
    if (rule && (rule->flags & R_POLICY)) /* as AWS: the policy is the owner's account's alone, */
        return owner ? V_ALLOW : V_DENY;  /* and the owner can always fix it */
    S3PolicyDecision d = S3_POLICY_NONE;
    PolicyCtx *c = ba->pol && action ? malloc(sizeof(*c)) : NULL;
    if (c) {
        ctx_init(c, r, b->name, key, action);
        /* RestrictPublicBuckets: a public policy grants nothing beyond the owner's account */
        c->q.ignore_allow = !owner && ba->pab.restrict_buckets && s3_policy_is_public(ba->pol);
        d = s3_policy_evaluate(ba->pol, &c->q);
        free(c);
    } else if (ba->pol && action) {
        d = S3_POLICY_DENY; /* out of memory: fail closed */
    }
    if (d == S3_POLICY_DENY)
        return V_DENY;
    if (owner || d == S3_POLICY_ALLOW)
        return V_ALLOW;
    if (!rule)
        return V_DENY;
    if (rule->bucket_perm) {
        if (!ba->acl_read) {
            s3_bucket_config_get(db, b->name, "acl", &ba->acl);
            ba->acl_read = true;
        }
        unsigned bits = grants_for(ba->acl, caller, ba->pab.ignore_acls);
        if ((bits & rule->bucket_perm) == rule->bucket_perm)
            return V_ALLOW;
    }
    return rule->object_perm && key ? V_OBJECT_ACL : V_DENY;
}

/* The decision for action on bucket b (and key), before any object is read. */
static Verdict decide(S3Req *r, sqlite3 *db, const S3Bucket *b, const char *key, const OpRule *rule,
                      const char *action)
{
    const char *caller = s3_principal(r);
    BucketAccess ba = {0};
    if (!(rule && (rule->flags & R_POLICY)))
        access_load(db, b, caller[0] && strcmp(b->owner, caller) == 0, &ba);
    Verdict v = decide_with(r, db, b, key, rule, action, &ba);
    access_release(&ba);
    return v;
}

static const char *rule_action(S3Req *r, const OpRule *rule)
{
    if (!rule)
        return NULL;
    if (rule->version_action && s3_param(r, "versionId"))
        return rule->version_action;
    return rule->action;
}

int s3_access_check(S3Req *r, const S3Bucket *b)
{
    const OpRule *rule = rule_of(r->op);
    r->object_acl_pending = false;
    if (rule && (rule->flags & R_PUBLIC))
        return 0;
    if (rule && (rule->flags & R_ALL_OBJECTS)) {
        /* DeleteObjects: with a policy every key is decided by s3_access_keys (it may allow
         * some keys only); without one the answer is the same for every key, so a caller with
         * no right on the bucket gets 403 for the request, as before */
        S3Policy *pol = policy_read(s3_loop_db(r->loop), b->name);
        bool per_key = pol != NULL;
        s3_policy_free(pol);
        if (per_key || decide(r, s3_loop_db(r->loop), b, "*", rule, rule->action) == V_ALLOW)
            return 0;
        s3_error(r, "AccessDenied", "Access Denied");
        return -EACCES;
    }
    const char *key = NULL;
    if (rule && (rule->flags & R_OBJECT))
        key = r->key_name;
    else if (rule && (rule->flags & R_ALL_OBJECTS))
        key = "*";
    Verdict v = decide(r, s3_loop_db(r->loop), b, key, rule, rule_action(r, rule));
    if (v == V_ALLOW)
        return 0;
    if (v == V_OBJECT_ACL) {
        r->object_acl_pending = true;
        return 0;
    }
    s3_error(r, "AccessDenied", "Access Denied");
    return -EACCES;
}

/* A Deny on some keys holds in DeleteObjects too: checked per key (s3.h), the bucket's
 * configuration read once for all of them. */
void s3_access_keys(S3Req *r, size_t n, const char *const *keys, const char *const *versions,
                    uint8_t *denied)
{
    static const OpRule del = {
        "DeleteObject", "s3:DeleteObject", "s3:DeleteObjectVersion", P_WRITE, 0, R_OBJECT};
    S3Bucket b = {0};
    snprintf(b.name, sizeof(b.name), "%s", r->bucket);
    snprintf(b.owner, sizeof(b.owner), "%s", r->bucket_owner);
    const char *caller = s3_principal(r);
    sqlite3 *db = s3_loop_db(r->loop);
    BucketAccess ba;
    access_load(db, &b, caller[0] && strcmp(b.owner, caller) == 0, &ba);
    for (size_t i = 0; i < n; i++)
        denied[i] =
            keys[i] && decide_with(r, db, &b, keys[i], &del,
                                   versions[i] ? del.version_action : del.action, &ba) != V_ALLOW;
    access_release(&ba);
}

bool s3_access_may_list(S3Req *r)
{
    static const OpRule list = {"ListObjects", "s3:ListBucket", NULL, P_READ, 0, 0};
    S3Bucket b = {0};
    snprintf(b.name, sizeof(b.name), "%s", r->bucket);
    snprintf(b.owner, sizeof(b.owner), "%s", r->bucket_owner);
    return decide(r, s3_loop_db(r->loop), &b, NULL, &list, list.action) == V_ALLOW;
}

/* Does the object's ACL (its metadata's "_acl") give the caller need? */
static bool object_acl_allows(S3Req *r, sqlite3 *db, const char *bucket, const char *meta_json,
                              unsigned need)
{
    json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : NULL;
    Pab pab = pab_read(db, bucket);
    unsigned bits = grants_for(json_object_get(meta, "_acl"), s3_principal(r), pab.ignore_acls);
    json_decref(meta);
    return need && (bits & need) == need;
}

int s3_access_object(S3Req *r, const S3Object *o)
{
    if (!r->object_acl_pending)
        return 0;
    const OpRule *rule = rule_of(r->op);
    if (rule &&
        object_acl_allows(r, s3_loop_db(r->loop), r->bucket, o->meta_json, rule->object_perm))
        return 0;
    s3_error(r, "AccessDenied", "Access Denied");
    return -EACCES;
}

int s3_access_copy_source(S3Req *r, const S3Bucket *b, const S3Object *o)
{
    static const OpRule read = {"GetObject", "s3:GetObject", "s3:GetObjectVersion",
                                0,           P_READ,         R_OBJECT};
    sqlite3 *db = s3_loop_db(r->loop);
    const char *src = s3_header(r, "x-amz-copy-source");
    bool versioned = src && strstr(src, "?versionId=");
    Verdict v = decide(r, db, b, o->key, &read, versioned ? read.version_action : read.action);
    if (v == V_OBJECT_ACL && object_acl_allows(r, db, b->name, o->meta_json, P_READ))
        v = V_ALLOW;
    return v == V_ALLOW ? 0 : -EACCES;
}

/* ---- ACLs from headers and documents ---- */

static bool account_known(S3Server *srv, const char *id)
{
    bool found = false;
    uv_rwlock_rdlock(&srv->keys_lock);
    for (size_t i = 0; i < srv->nkeys && !found; i++)
        found = strcmp(srv->keys[i].account, id) == 0;
    uv_rwlock_rdunlock(&srv->keys_lock);
    return found;
}

static int grant_add(json_t *grants, const char *type, const char *who, const char *perm)
{
    if (json_array_size(grants) >= ACL_MAX_GRANTS)
        return -E2BIG;
    json_t *g = json_pack("{s:s, s:s}", type, who, "perm", perm);
    return g ? json_array_append_new(grants, g) : -ENOMEM;
}

/* A canned ACL's grants beyond the owner's FULL_CONTROL; false for an unknown name. */
static bool canned_grants(const char *name, json_t *grants, bool bucket)
{
    if (strcmp(name, "private") == 0 || strcmp(name, "bucket-owner-read") == 0 ||
        strcmp(name, "bucket-owner-full-control") == 0 || strcmp(name, "aws-exec-read") == 0)
        return true; /* objects belong to the bucket owner: nothing beyond the owner */
    if (strcmp(name, "public-read") == 0)
        return grant_add(grants, "uri", URI_ALL_USERS, "READ") == 0;
    if (strcmp(name, "public-read-write") == 0)
        return grant_add(grants, "uri", URI_ALL_USERS, "READ") == 0 &&
               grant_add(grants, "uri", URI_ALL_USERS, "WRITE") == 0;
    if (strcmp(name, "authenticated-read") == 0)
        return grant_add(grants, "uri", URI_AUTH_USERS, "READ") == 0;
    if (bucket && strcmp(name, "log-delivery-write") == 0)
        return grant_add(grants, "uri", URI_LOG_DELIVERY, "WRITE") == 0 &&
               grant_add(grants, "uri", URI_LOG_DELIVERY, "READ_ACP") == 0;
    return false;
}

/* The owner of the bucket being changed, or being created. */
static const char *acl_owner(S3Req *r)
{
    return r->bucket_owner[0] ? r->bucket_owner : s3_principal(r);
}

static int grant_checked(json_t *grants, const char *type, const char *who, const char *perm,
                         const char **code)
{
    int rc = grant_add(grants, type, who, perm);
    if (rc < 0)
        *code = rc == -E2BIG ? "InvalidArgument" : "ServiceUnavailable";
    return rc;
}

/* Checks one grantee and appends its grant: 0, or < 0 with *code. */
static int grantee_add(S3Req *r, json_t *grants, const char *type, const char *value,
                       const char *perm, const char **code)
{
    if (strcasecmp(type, "id") == 0) {
        if (!value[0] || !account_known(r->srv, value)) {
            *code = "InvalidArgument";
            return -EINVAL;
        }
        if (strcmp(perm, "FULL_CONTROL") == 0 && strcmp(value, acl_owner(r)) == 0)
            return 0; /* the owner's own FULL_CONTROL is implied */
        return grant_checked(grants, "id", value, perm, code);
    }
    if (strcasecmp(type, "uri") == 0) {
        if (strcmp(value, URI_ALL_USERS) != 0 && strcmp(value, URI_AUTH_USERS) != 0 &&
            strcmp(value, URI_LOG_DELIVERY) != 0) {
            *code = "InvalidArgument";
            return -EINVAL;
        }
        return grant_checked(grants, "uri", value, perm, code);
    }
    *code = strcasecmp(type, "emailAddress") == 0 ? "UnresolvableGrantByEmailAddress"
                                                  : "InvalidArgument";
    return -EINVAL;
}

/* x-amz-grant-read: id="a", uri="http://...", ... */
static int header_grants(S3Req *r, const char *value, const char *perm, json_t *grants,
                         const char **code)
{
    char *copy = strdup(value), *save = NULL;
    int rc = copy ? 0 : -ENOMEM;
    for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        char *eq = strchr(item, '=');
        if (!eq) {
            *code = "InvalidArgument";
            rc = -EINVAL;
            break;
        }
        *eq = '\0';
        char *v = eq + 1, *end = v + strlen(v);
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (end - v >= 2 && v[0] == '"' && end[-1] == '"') {
            v++;
            *--end = '\0';
        }
        char *t = item + strlen(item);
        while (t > item && (t[-1] == ' ' || t[-1] == '\t'))
            *--t = '\0';
        rc = grantee_add(r, grants, item, v, perm, code);
    }
    free(copy);
    if (rc == -ENOMEM)
        *code = "ServiceUnavailable";
    return rc;
}

/* The ACL that x-amz-acl or x-amz-grant-* headers set: 1 with *ret (the grants), 0 when the
 * request has none of them, < 0 with *code. */
static int acl_from_headers(S3Req *r, bool bucket, json_t **ret, const char **code)
{
    static const char *const hdrs[] = {"x-amz-grant-read", "x-amz-grant-write",
                                       "x-amz-grant-read-acp", "x-amz-grant-write-acp",
                                       "x-amz-grant-full-control"};
    static const char *const hperms[] = {"READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"};
    const char *canned = s3_header(r, "x-amz-acl");
    bool any_grant = false;
    for (size_t i = 0; i < ELEMENTSOF(hdrs); i++)
        any_grant |= s3_header(r, hdrs[i]) != NULL;
    if (!canned && !any_grant)
        return 0;
    if (canned && any_grant) {
        *code = "InvalidRequest";
        return -EINVAL;
    }
    json_t *grants = json_array();
    if (!grants) {
        *code = "ServiceUnavailable";
        return -ENOMEM;
    }
    int rc = 0;
    if (canned && !canned_grants(canned, grants, bucket)) {
        *code = "InvalidArgument";
        rc = -EINVAL;
    }
    for (size_t i = 0; i < ELEMENTSOF(hdrs) && rc == 0; i++) {
        const char *v = s3_header(r, hdrs[i]);
        if (v)
            rc = header_grants(r, v, hperms[i], grants, code);
    }
    if (rc < 0) {
        json_decref(grants);
        return rc;
    }
    *ret = grants;
    return 1;
}

/* An element's text ("" for an empty element, whose text is NULL). */
static const char *xtext(const SovXmlNode *n)
{
    return n && n->text ? n->text : "";
}

/* An AccessControlPolicy document into grants: 0, or < 0 with *code. */
static int acl_from_xml(S3Req *r, SovStr body, json_t **ret, const char **code)
{
    SovXmlLimits lim = {.max_bytes = 64 * 1024, .max_depth = 6, .max_nodes = 8 * ACL_MAX_GRANTS};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = sov_xml_parse(body, &lim, &root, &err);
    sov_buf_release(&err);
    *code = "MalformedACLError";
    SovXmlNode *list = rc == 0 && strcmp(root->name, "AccessControlPolicy") == 0
                           ? sov_xml_child(root, "AccessControlList")
                           : NULL;
    json_t *grants = list ? json_array() : NULL;
    if (!grants) {
        sov_xml_free(root);
        return -EINVAL;
    }
    SovXmlNode *owner = sov_xml_child(root, "Owner");
    SovXmlNode *owner_id = owner ? sov_xml_child(owner, "ID") : NULL;
    if (owner_id && strcmp(xtext(owner_id), acl_owner(r)) != 0) {
        *code = "AccessDenied"; /* an ACL cannot give the bucket away */
        rc = -EACCES;
    }
    for (SovXmlNode *g = list->child; g && rc == 0; g = g->next) {
        SovXmlNode *grantee = sov_xml_child(g, "Grantee"), *perm = sov_xml_child(g, "Permission");
        if (strcmp(g->name, "Grant") != 0 || !grantee || !perm || !perm_bits(xtext(perm))) {
            rc = -EINVAL;
            break;
        }
        SovXmlNode *id = sov_xml_child(grantee, "ID"), *uri = sov_xml_child(grantee, "URI"),
                   *mail = sov_xml_child(grantee, "EmailAddress");
        if (id)
            rc = grantee_add(r, grants, "id", xtext(id), xtext(perm), code);
        else if (uri)
            rc = grantee_add(r, grants, "uri", xtext(uri), xtext(perm), code);
        else if (mail)
            rc = grantee_add(r, grants, "emailAddress", xtext(mail), xtext(perm), code);
        else
            rc = -EINVAL;
    }
    sov_xml_free(root);
    if (rc < 0) {
        json_decref(grants);
        return rc;
    }
    *ret = grants;
    return 0;
}

int s3_acl_collect(S3Req *r, json_t *meta, const char **code)
{
    json_t *grants = NULL;
    int rc = acl_from_headers(r, false, &grants, code);
    if (rc <= 0)
        return rc;
    if (grants_public(grants) && pab_read(s3_loop_db(r->loop), r->bucket).block_acls) {
        json_decref(grants);
        *code = "AccessDenied";
        return -EACCES;
    }
    if (json_array_size(grants))
        json_object_set_new(meta, "_acl", grants);
    else
        json_decref(grants);
    return 0;
}

int s3_bucket_initial_config(S3Req *r, json_t **ret, const char **code)
{
    json_t *grants = NULL, *conf = json_object();
    int rc = conf ? acl_from_headers(r, true, &grants, code) : -ENOMEM;
    if (rc < 0 || !conf) {
        json_decref(conf);
        if (rc == -ENOMEM)
            *code = "ServiceUnavailable";
        return rc < 0 ? rc : -ENOMEM;
    }
    if (rc > 0 && json_array_size(grants))
        json_object_set_new(conf, "acl", grants);
    else
        json_decref(grants);
    *ret = conf;
    return 0;
}

/* ---- the ACL document ---- */

static void acl_grantee(SovBuf *doc, const char *type)
{
    sov_buf_printf(doc, "<Grantee xmlns:xsi=\"%s\" xsi:type=\"%s\">", XSI_NS, type);
}

static void acl_render(SovBuf *doc, const char *owner, json_t *grants)
{
    SovXmlWriter w;
    sov_xml_writer_init(&w, doc);
    sov_xml_open(&w, "AccessControlPolicy", S3_XMLNS);
    sov_xml_open(&w, "Owner", NULL);
    sov_xml_elem(&w, "ID", sov_str(owner));
    sov_xml_elem(&w, "DisplayName", sov_str(owner));
    sov_xml_close(&w);
    sov_xml_open(&w, "AccessControlList", NULL);
    sov_buf_puts(doc, "<Grant>");
    acl_grantee(doc, "CanonicalUser");
    sov_xml_elem(&w, "ID", sov_str(owner));
    sov_xml_elem(&w, "DisplayName", sov_str(owner));
    sov_buf_puts(doc, "</Grantee><Permission>FULL_CONTROL</Permission></Grant>");
    for (size_t i = 0; i < json_array_size(grants); i++) {
        json_t *g = json_array_get(grants, i);
        const char *id = json_string_value(json_object_get(g, "id"));
        const char *uri = json_string_value(json_object_get(g, "uri"));
        const char *perm = json_string_value(json_object_get(g, "perm"));
        if ((!id && !uri) || !perm_bits(perm))
            continue;
        sov_buf_puts(doc, "<Grant>");
        acl_grantee(doc, id ? "CanonicalUser" : "Group");
        if (id) {
            sov_xml_elem(&w, "ID", sov_str(id));
            sov_xml_elem(&w, "DisplayName", sov_str(id));
        } else {
            sov_xml_elem(&w, "URI", sov_str(uri));
        }
        sov_buf_puts(doc, "</Grantee>");
        sov_xml_elem(&w, "Permission", sov_str(perm));
        sov_buf_puts(doc, "</Grant>");
    }
    sov_xml_close(&w);
    sov_xml_close(&w);
}

static void reply_acl(S3Req *r, json_t *grants)
{
    SovBuf doc = SOV_BUF_INIT;
    acl_render(&doc, r->bucket_owner, grants);
    s3_reply_xml(r, 200, &doc);
    sov_buf_release(&doc);
}

/* The grants a PutBucketAcl / PutObjectAcl asks for (headers, else the XML body): 0 with *ret,
 * or answers the error and returns < 0. */
static int acl_requested(S3Req *r, bool bucket, json_t **ret)
{
    const char *code = "MalformedACLError";
    int rc = acl_from_headers(r, bucket, ret, &code);
    if (rc > 0 && r->xml.len) {
        json_decref(*ret);
        code = "UnexpectedContent";
        rc = -EINVAL;
    } else if (rc == 0) {
        rc = r->xml.len ? acl_from_xml(r, sov_buf_str(&r->xml), ret, &code) : -EINVAL;
    }
    if (rc >= 0 && grants_public(*ret) && pab_read(s3_loop_db(r->loop), r->bucket).block_acls) {
        json_decref(*ret);
        code = "AccessDenied";
        rc = -EACCES;
    }
    if (rc >= 0)
        return 0;
    if (strcmp(code, "UnresolvableGrantByEmailAddress") == 0 ||
        strcmp(code, "UnexpectedContent") == 0)
        s3_error_status(r, 400, code, "The ACL could not be applied");
    else if (strcmp(code, "MalformedACLError") == 0)
        s3_error(r, code,
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema");
    else
        s3_error(r, code,
                 strcmp(code, "AccessDenied") == 0 ? "Access Denied" : "Invalid ACL grant");
    return rc;
}

static void config_saved(S3Req *r, int status)
{
    if (status == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (status < 0)
        s3_error(r, "InternalError", "the bucket configuration could not be saved");
    else
        s3_reply_empty(r, sov_str_eq(sov_http_req_method(r->http), SOV_STR("PUT")) &&
                                  strcmp(r->op, "PutBucketPolicy") != 0
                              ? 200
                              : 204);
}

static void bucket_acl_put(S3Req *r)
{
    json_t *grants;
    if (acl_requested(r, true, &grants) < 0)
        return;
    s3_bucket_config_set(r, "acl", grants, config_saved);
}

void s3_bucket_acl(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (sov_str_eq(sov_http_req_method(r->http), SOV_STR("PUT"))) {
        s3_body_xml(r, bucket_acl_put);
        return;
    }
    json_t *grants = NULL;
    if (s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "acl", &grants) < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    reply_acl(r, grants);
    json_decref(grants);
}

/* ---- object ACLs ---- */

/* The metadata of one object version (NULL: the current one): 0 with *ret (malloc'd),
 * -ENOENT, -EISDIR for a delete marker, or -EIO. */
static int object_meta_read(sqlite3 *db, const char *bucket, const char *key, const char *version,
                            char **ret)
{
    sqlite3_stmt *s;
    const char *q = version ? "SELECT meta, kind FROM objects WHERE bucket=?1 AND key=?2"
                              " AND version=?3"
                            : "SELECT meta, kind FROM objects WHERE bucket=?1 AND key=?2"
                              " AND is_latest=1";
    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    if (version)
        sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *m = (const char *)sqlite3_column_text(s, 0);
        if (sqlite3_column_int(s, 1) != 0)
            rc = -EISDIR;
        else
            rc = (*ret = strdup(m ? m : "{}")) ? 0 : -ENOMEM;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Answers the error of a failed object read; version as asked. */
static void object_missing(S3Req *r, int rc, const char *version)
{
    if (rc == -EISDIR && version)
        s3_error(r, "MethodNotAllowed",
                 "The specified method is not allowed against this resource");
    else if ((rc == -ENOENT || rc == -EISDIR) && version && strcmp(version, "null") != 0)
        s3_error_status(r, 404, "NoSuchVersion", "The specified version does not exist.");
    else if (rc == -ENOENT || rc == -EISDIR)
        s3_error(r, "NoSuchKey", "The specified key does not exist.");
    else
        s3_error(r, "InternalError", "the object's metadata cannot be read");
}

static void acl_state_free(S3Req *r)
{
    json_decref(r->op_state);
    r->op_state = NULL;
}

static int acl_edit(json_t *meta, void *ud)
{
    json_t *grants = ud;
    if (json_array_size(grants) == 0) {
        json_object_del(meta, "_acl");
        return 0;
    }
    json_t *copy = json_deep_copy(grants);
    return copy && json_object_set_new(meta, "_acl", copy) == 0 ? 0 : -ENOMEM;
}

static void object_acl_saved(S3Req *r, int status, const char *version)
{
    const char *asked = s3_param(r, "versionId");
    if (status < 0) {
        object_missing(r, status == -ENOENT ? -ENOENT : -EIO, asked);
        return;
    }
    if (version && version[0] && strcmp(version, "null") != 0)
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(version));
    s3_reply_empty(r, 200);
}

static void object_acl_put(S3Req *r)
{
    json_t *grants;
    if (acl_requested(r, false, &grants) < 0)
        return;
    r->op_state = grants;
    r->op_free = acl_state_free;
    s3_object_meta_update(r, s3_param(r, "versionId"), acl_edit, grants, object_acl_saved);
}

void s3_object_acl(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    const char *version = s3_param(r, "versionId");
    char *meta = NULL;
    int rc = object_meta_read(s3_loop_db(r->loop), r->bucket, r->key_name, version, &meta);
    if (rc < 0 && r->object_acl_pending && (rc == -ENOENT || rc == -EISDIR) &&
        !s3_access_may_list(r)) {
        s3_error(r, "AccessDenied", "Access Denied"); /* no existence oracle without a grant */
        return;
    }
    if (rc < 0) {
        object_missing(r, rc, version);
        return;
    }
    if (r->object_acl_pending) {
        const OpRule *rule = rule_of(r->op);
        if (!rule ||
            !object_acl_allows(r, s3_loop_db(r->loop), r->bucket, meta, rule->object_perm)) {
            free(meta);
            s3_error(r, "AccessDenied", "Access Denied");
            return;
        }
    }
    if (sov_str_eq(sov_http_req_method(r->http), SOV_STR("PUT"))) {
        free(meta);
        s3_body_xml(r, object_acl_put);
        return;
    }
    json_t *m = json_loads(meta, 0, NULL);
    free(meta);
    if (version)
        sov_http_resp_header(r->http, "x-amz-version-id", sov_str(version));
    reply_acl(r, json_object_get(m, "_acl"));
    json_decref(m);
}

/* ---- bucket policy ---- */

static void policy_put(S3Req *r)
{
    S3Policy *p = NULL;
    SovBuf err = SOV_BUF_INIT;
    const char *text = r->xml.ptr ? r->xml.ptr : "";
    if (s3_policy_parse(text, r->xml.len, r->bucket, &p, &err) < 0) {
        s3_error(r, "MalformedPolicy", err.ptr ? err.ptr : "Invalid policy");
        sov_buf_release(&err);
        return;
    }
    sov_buf_release(&err);
    bool is_public = s3_policy_is_public(p);
    s3_policy_free(p);
    if (is_public && pab_read(s3_loop_db(r->loop), r->bucket).block_policy) {
        s3_error(r, "AccessDenied",
                 "Access Denied: the public access block refuses public policies");
        return;
    }
    json_t *v = json_stringn(text, r->xml.len);
    if (!v) {
        s3_error(r, "MalformedPolicy", "Policies must be valid UTF-8 JSON");
        return;
    }
    s3_bucket_config_set(r, "policy", v, config_saved);
}

void s3_bucket_policy(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    SovStr m = sov_http_req_method(r->http);
    if (sov_str_eq(m, SOV_STR("PUT"))) {
        s3_body_xml(r, policy_put);
        return;
    }
    if (sov_str_eq(m, SOV_STR("DELETE"))) {
        s3_bucket_config_set(r, "policy", NULL, config_saved);
        return;
    }
    json_t *doc = NULL;
    if (s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "policy", &doc) < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    if (!json_is_string(doc)) {
        json_decref(doc);
        s3_error_status(r, 404, "NoSuchBucketPolicy", "The bucket policy does not exist");
        return;
    }
    s3_record(r, 200);
    sov_http_respond(r->http, 200, "application/json", json_string_value(doc),
                     json_string_length(doc));
    json_decref(doc);
    s3_req_done(r);
}

void s3_bucket_policy_status(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    sqlite3 *db = s3_loop_db(r->loop);
    json_t *doc = NULL;
    s3_bucket_config_get(db, r->bucket, "policy", &doc);
    bool has = json_is_string(doc);
    json_decref(doc);
    if (!has) {
        s3_error_status(r, 404, "NoSuchBucketPolicy", "The bucket policy does not exist");
        return;
    }
    S3Policy *p = policy_read(db, r->bucket);
    bool is_public = s3_policy_is_public(p);
    s3_policy_free(p);
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter w;
    sov_xml_writer_init(&w, &out);
    sov_xml_open(&w, "PolicyStatus", S3_XMLNS);
    sov_xml_elem(&w, "IsPublic", sov_str(is_public ? "true" : "false"));
    sov_xml_close(&w);
    s3_reply_xml(r, 200, &out);
    sov_buf_release(&out);
}

/* ---- public access block ---- */

static void pab_put(S3Req *r)
{
    SovXmlLimits lim = {.max_bytes = 16 * 1024, .max_depth = 4, .max_nodes = 16};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err);
    sov_buf_release(&err);
    json_t *doc = json_object();
    if (rc < 0 || !doc || strcmp(root->name, "PublicAccessBlockConfiguration") != 0)
        rc = -EINVAL;
    for (SovXmlNode *n = rc == 0 ? root->child : NULL; n && rc == 0; n = n->next) {
        size_t f = 0;
        while (f < ELEMENTSOF(pab_fields) && strcmp(pab_fields[f], n->name) != 0)
            f++;
        if (f == ELEMENTSOF(pab_fields) ||
            (strcmp(xtext(n), "true") != 0 && strcmp(xtext(n), "false") != 0))
            rc = -EINVAL;
        else
            json_object_set_new(doc, pab_fields[f], json_boolean(strcmp(xtext(n), "true") == 0));
    }
    sov_xml_free(root);
    if (rc < 0) {
        json_decref(doc);
        s3_error(r, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema");
        return;
    }
    for (size_t f = 0; f < ELEMENTSOF(pab_fields); f++)
        if (!json_object_get(doc, pab_fields[f]))
            json_object_set_new(doc, pab_fields[f], json_false());
    s3_bucket_config_set(r, "public_access_block", doc, config_saved);
}

void s3_bucket_public_access_block(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    SovStr m = sov_http_req_method(r->http);
    if (sov_str_eq(m, SOV_STR("PUT"))) {
        s3_body_xml(r, pab_put);
        return;
    }
    if (sov_str_eq(m, SOV_STR("DELETE"))) {
        s3_bucket_config_set(r, "public_access_block", NULL, config_saved);
        return;
    }
    json_t *doc = NULL;
    if (s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "public_access_block", &doc) < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        s3_error_status(r, 404, "NoSuchPublicAccessBlockConfiguration",
                        "The public access block configuration was not found");
        return;
    }
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter w;
    sov_xml_writer_init(&w, &out);
    sov_xml_open(&w, "PublicAccessBlockConfiguration", S3_XMLNS);
    for (size_t f = 0; f < ELEMENTSOF(pab_fields); f++)
        sov_xml_elem(&w, pab_fields[f],
                     sov_str(json_is_true(json_object_get(doc, pab_fields[f])) ? "true" : "false"));
    sov_xml_close(&w);
    json_decref(doc);
    s3_reply_xml(r, 200, &out);
    sov_buf_release(&out);
}
