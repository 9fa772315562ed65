/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket policies: parsing, validation and evaluation of IAM policy documents. Parsing checks the
 * whole document once (every element, every condition value) and keeps the JSON tree; evaluation
 * then walks that tree for each request and can rely on every value being well formed. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

struct S3Policy {
    json_t *statements; /* array of validated statement objects */
    bool is_public;
};

/* ---- wildcards ---- */

static char fold(char c, bool nocase)
{
    return nocase ? (char)tolower((unsigned char)c) : c;
}

bool s3_policy_glob(const char *p, const char *s, bool nocase)
{
    /* Greedy match with one backtracking point: the last '*' seen. Linear in practice and
     * never worse than len(p) * len(s), whatever the input. */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p && (*p == '?' || fold(*p, nocase) == fold(*s, nocase))) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static bool has_wildcard(const char *s)
{
    return strpbrk(s, "*?") != NULL;
}

/* ---- string-or-array elements ---- */

/* Checks that v is a string or a non-empty array of at most S3_POLICY_MAX_VALUES strings. */
static bool str_list_valid(json_t *v)
{
    if (json_is_string(v))
        return true;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > S3_POLICY_MAX_VALUES)
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return false;
    return true;
}

static size_t list_size(json_t *v)
{
    return json_is_array(v) ? json_array_size(v) : 1;
}

static json_t *list_at(json_t *v, size_t i)
{
    return json_is_array(v) ? json_array_get(v, i) : v;
}

/* ---- principals ---- */

static bool account_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* The account an AWS principal names ("*", "ACCOUNT", "arn:aws:iam::ACCOUNT:root"), written
 * into out; false when it is not a principal. */
static bool principal_account(const char *s, char out[64])
{
    static const char arn[] = "arn:aws:iam::", root[] = ":root";
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0) {
        snprintf(out, 64, "*");
        return true;
    }
    if (strncmp(s, arn, sizeof(arn) - 1) == 0 && n > sizeof(arn) - 1 + sizeof(root) - 1 &&
        strcmp(s + n - (sizeof(root) - 1), root) == 0) {
        s += sizeof(arn) - 1;
        n -= sizeof(arn) - 1 + sizeof(root) - 1;
    }
    if (!account_name_valid(s, n))
        return false;
    snprintf(out, 64, "%.*s", (int)n, s);
    return true;
}

/* Principal or NotPrincipal: "*" or {"AWS": .., "CanonicalUser": .., "Service": ..}. */
static bool principal_valid(json_t *v)
{
    if (json_is_string(v))
        return strcmp(json_string_value(v), "*") == 0;
    if (!json_is_object(v) || json_object_size(v) == 0)
        return false;
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        bool aws = strcmp(k, "AWS") == 0, canon = strcmp(k, "CanonicalUser") == 0;
        if (!aws && !canon && strcmp(k, "Service") != 0 && strcmp(k, "Federated") != 0)
            return false;
        if (!str_list_valid(e))
            return false;
        for (size_t i = 0; i < list_size(e); i++) {
            char acct[64];
            const char *s = json_string_value(list_at(e, i));
            if ((aws || canon) && !principal_account(s, acct))
                return false;
            if (!s[0])
                return false;
        }
    }
    return true;
}

/* Does the principal element name the caller ("" = anonymous, matched only by "*")? */
static bool principal_matches(json_t *v, const char *caller)
{
    if (json_is_string(v))
        return true; /* "*" */
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        if (strcmp(k, "AWS") != 0 && strcmp(k, "CanonicalUser") != 0)
            continue; /* services and federated users never call this daemon */
        for (size_t i = 0; i < list_size(e); i++) {
            char acct[64];
            if (!principal_account(json_string_value(list_at(e, i)), acct))
                continue;
            if (strcmp(acct, "*") == 0 || (caller[0] && strcmp(acct, caller) == 0))
                return true;
        }
    }
    return false;
}

/* Does the principal element grant everyone (before conditions)? */
static bool principal_public(json_t *v)
{
    return principal_matches(v, "");
}

/* ---- actions and resources ---- */

static const char *const known_actions[] = {
    "AbortMultipartUpload",
    "BypassGovernanceRetention",
    "CreateBucket",
    "DeleteBucket",
    "DeleteBucketOwnershipControls",
    "DeleteBucketPolicy",
    "DeleteBucketWebsite",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjectVersion",
    "DeleteObjectVersionTagging",
    "GetAccelerateConfiguration",
    "GetAnalyticsConfiguration",
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketLocation",
    "GetBucketLogging",
    "GetBucketNotification",
    "GetBucketObjectLockConfiguration",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock",
    "GetBucketRequestPayment",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetEncryptionConfiguration",
    "GetIntelligentTieringConfiguration",
    "GetInventoryConfiguration",
    "GetLifecycleConfiguration",
    "GetMetricsConfiguration",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectLegalHold",
    "GetObjectRetention",
    "GetObjectTagging",
    "GetObjectTorrent",
    "GetObjectVersion",
    "GetObjectVersionAcl",
    "GetObjectVersionAttributes",
    "GetObjectVersionTagging",
    "GetObjectVersionTorrent",
    "GetReplicationConfiguration",
    "ListAllMyBuckets",
    "ListBucket",
    "ListBucketMultipartUploads",
    "ListBucketVersions",
    "ListMultipartUploadParts",
    "ObjectOwnerOverrideToBucketOwner",
    "PutAccelerateConfiguration",
    "PutAnalyticsConfiguration",
    "PutBucketAcl",
    "PutBucketCORS",
    "PutBucketLogging",
    "PutBucketNotification",
    "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutEncryptionConfiguration",
    "PutIntelligentTieringConfiguration",
    "PutInventoryConfiguration",
    "PutLifecycleConfiguration",
    "PutMetricsConfiguration",
    "PutObject",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutObjectVersionAcl",
    "PutObjectVersionTagging",
    "PutReplicationConfiguration",
    "ReplicateDelete",
    "ReplicateObject",
    "ReplicateTags",
    "RestoreObject",
};

static bool action_valid(const char *a)
{
    if (strcmp(a, "*") == 0)
        return true;
    if (strncasecmp(a, "s3:", 3) != 0 || !a[3])
        return false;
    a += 3;
    for (const char *c = a; *c; c++)
        if (!isalpha((unsigned char)*c) && *c != '*' && *c != '?')
            return false;
    if (has_wildcard(a))
        return true;
    for (size_t i = 0; i < sizeof(known_actions) / sizeof(known_actions[0]); i++)
        if (strcasecmp(a, known_actions[i]) == 0)
            return true;
    return false;
}

/* A resource must lie in this bucket: "arn:aws:s3:::bucket" or "arn:aws:s3:::bucket/<key
 * pattern>"; the bucket part may hold wildcards that match this bucket. */
static bool resource_valid(const char *res, const char *bucket)
{
    static const char pfx[] = "arn:aws:s3:::";
    if (strncmp(res, pfx, sizeof(pfx) - 1) != 0)
        return false;
    const char *b = res + sizeof(pfx) - 1, *slash = strchr(b, '/');
    size_t bl = slash ? (size_t)(slash - b) : strlen(b);
    if (bl == 0 || bl > 255)
        return false;
    char part[256];
    snprintf(part, sizeof(part), "%.*s", (int)bl, b);
    if (s3_policy_glob(part, bucket, false))
        return true;
    /* "arn:aws:s3:::buck*" spans the bucket and its objects */
    char probe[320];
    snprintf(probe, sizeof(probe), "%s/x", bucket);
    return !slash && s3_policy_glob(part, probe, false);
}

static bool any_glob(json_t *list, const char *s, bool nocase)
{
    for (size_t i = 0; i < list_size(list); i++)
        if (s3_policy_glob(json_string_value(list_at(list, i)), s, nocase))
            return true;
    return false;
}

/* ---- condition values ---- */

/* A condition value as text: strings as they are, booleans and numbers written out. */
static const char *value_text(json_t *v, char buf[64])
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        return "true";
    if (json_is_false(v))
        return "false";
    if (json_is_integer(v)) {
        snprintf(buf, 64, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, 64, "%.17g", json_real_value(v));
        return buf;
    }
    return NULL;
}

static bool parse_number(const char *s, double *ret)
{
    char *end;
    if (!s[0] || isspace((unsigned char)s[0]))
        return false;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno || !isfinite(d))
        return false;
    *ret = d;
    return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

/* ISO 8601 ("2026-01-31", "2026-01-31T12:00:00Z", with fractions or a +hh:mm offset) or epoch
 * seconds, into milliseconds since the epoch. */
static bool parse_date(const char *s, int64_t *ret_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    size_t n = strlen(s);
    if (n > 0 && n <= 12 && strspn(s, "0123456789") == n) {
        double v;
        if (!parse_number(s, &v))
            return false;
        *ret_ms = (int64_t)v * 1000;
        return true;
    }
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    s += 10;
    int64_t offset_s = 0;
    if (*s == 'T') {
        if (!digits(s + 1, 2, &h) || s[3] != ':' || !digits(s + 4, 2, &mi) || h > 23 || mi > 59)
            return false;
        s += 6;
        if (*s == ':') {
            if (!digits(s + 1, 2, &sec) || sec > 60)
                return false;
            s += 3;
            if (*s == '.') {
                int scale = 100;
                s++;
                if (!isdigit((unsigned char)*s))
                    return false;
                for (; isdigit((unsigned char)*s); s++, scale /= 10)
                    ms += (*s - '0') * scale;
            }
        }
        if (*s == 'Z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            int oh, om;
            if (!digits(s + 1, 2, &oh) || s[3] != ':' || !digits(s + 4, 2, &om) || oh > 23 ||
                om > 59)
                return false;
            offset_s = (*s == '+' ? 1 : -1) * (oh * 3600 + om * 60);
            s += 6;
        }
    }
    if (*s)
        return false;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *ret_ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_s) * 1000 + ms;
    return true;
}

typedef struct Cidr {
    int family;
    uint8_t addr[16];
    unsigned bits;
} Cidr;

static bool parse_cidr(const char *s, Cidr *ret)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof(host))
        return false;
    memcpy(host, s, hl);
    host[hl] = '\0';
    Cidr c = {0};
    if (inet_pton(AF_INET, host, c.addr) == 1) {
        c.family = AF_INET;
        c.bits = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        c.family = AF_INET6;
        c.bits = 128;
    } else {
        return false;
    }
    if (slash) {
        int bits;
        size_t dl = strlen(slash + 1);
        if (dl == 0 || dl > 3 || !digits(slash + 1, (int)dl, &bits) || (unsigned)bits > c.bits)
            return false;
        c.bits = (unsigned)bits;
    }
    *ret = c;
    return true;
}

static bool cidr_contains(const Cidr *net, const Cidr *ip)
{
    if (net->family != ip->family)
        return false;
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, ip->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (ip->addr[full] & mask);
}

/* ---- condition operators ---- */

typedef enum CondType {
    C_STRING,
    C_STRING_NOCASE,
    C_STRING_LIKE,
    C_NUMERIC,
    C_DATE,
    C_BOOL,
    C_IP,
    C_ARN,
    C_NULL,
} CondType;

typedef enum CondCmp { CMP_EQ, CMP_LT, CMP_LE, CMP_GT, CMP_GE } CondCmp;

typedef struct CondOp {
    const char *name;
    CondType type;
    CondCmp cmp;
    bool negate;
} CondOp;

static const CondOp cond_ops[] = {
    {"StringEquals", C_STRING, CMP_EQ, false},
    {"StringNotEquals", C_STRING, CMP_EQ, true},
    {"StringEqualsIgnoreCase", C_STRING_NOCASE, CMP_EQ, false},
    {"StringNotEqualsIgnoreCase", C_STRING_NOCASE, CMP_EQ, true},
    {"StringLike", C_STRING_LIKE, CMP_EQ, false},
    {"StringNotLike", C_STRING_LIKE, CMP_EQ, true},
    {"NumericEquals", C_NUMERIC, CMP_EQ, false},
    {"NumericNotEquals", C_NUMERIC, CMP_EQ, true},
    {"NumericLessThan", C_NUMERIC, CMP_LT, false},
    {"NumericLessThanEquals", C_NUMERIC, CMP_LE, false},
    {"NumericGreaterThan", C_NUMERIC, CMP_GT, false},
    {"NumericGreaterThanEquals", C_NUMERIC, CMP_GE, false},
    {"DateEquals", C_DATE, CMP_EQ, false},
    {"DateNotEquals", C_DATE, CMP_EQ, true},
    {"DateLessThan", C_DATE, CMP_LT, false},
    {"DateLessThanEquals", C_DATE, CMP_LE, false},
    {"DateGreaterThan", C_DATE, CMP_GT, false},
    {"DateGreaterThanEquals", C_DATE, CMP_GE, false},
    {"Bool", C_BOOL, CMP_EQ, false},
    {"IpAddress", C_IP, CMP_EQ, false},
    {"NotIpAddress", C_IP, CMP_EQ, true},
    {"ArnEquals", C_ARN, CMP_EQ, false},
    {"ArnLike", C_ARN, CMP_EQ, false},
    {"ArnNotEquals", C_ARN, CMP_EQ, true},
    {"ArnNotLike", C_ARN, CMP_EQ, true},
    {"Null", C_NULL, CMP_EQ, false},
};

typedef enum SetMode { SET_NONE, SET_ANY, SET_ALL } SetMode;

/* "ForAnyValue:StringLikeIfExists" into its operator, set mode and IfExists flag. */
static const CondOp *cond_op_parse(const char *name, SetMode *set, bool *if_exists)
{
    *set = SET_NONE;
    if (strncmp(name, "ForAnyValue:", 12) == 0) {
        *set = SET_ANY;
        name += 12;
    } else if (strncmp(name, "ForAllValues:", 13) == 0) {
        *set = SET_ALL;
        name += 13;
    }
    size_t n = strlen(name);
    *if_exists = n > 8 && strcmp(name + n - 8, "IfExists") == 0;
    if (*if_exists)
        n -= 8;
    for (size_t i = 0; i < sizeof(cond_ops) / sizeof(cond_ops[0]); i++) {
        if (strlen(cond_ops[i].name) == n && strncmp(cond_ops[i].name, name, n) == 0) {
            if (cond_ops[i].type == C_NULL && (*if_exists || *set != SET_NONE))
                return NULL;
            return &cond_ops[i];
        }
    }
    return NULL;
}

static bool cond_value_valid(const CondOp *op, const char *v)
{
    double d;
    int64_t ms;
    Cidr c;
    switch (op->type) {
    case C_NUMERIC:
        return parse_number(v, &d);
    case C_DATE:
        return parse_date(v, &ms);
    case C_BOOL:
    case C_NULL:
        return strcasecmp(v, "true") == 0 || strcasecmp(v, "false") == 0;
    case C_IP:
        return parse_cidr(v, &c);
    default:
        return strlen(v) <= 1024;
    }
}

static bool cond_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n > 128)
        return false;
    if (strncasecmp(k, "aws:", 4) == 0)
        return n > 4;
    if (strncasecmp(k, "s3:", 3) == 0)
        return n > 3;
    return false;
}

static bool cmp_holds(CondCmp cmp, double a, double b)
{
    switch (cmp) {
    case CMP_LT:
        return a < b;
    case CMP_LE:
        return a <= b;
    case CMP_GT:
        return a > b;
    case CMP_GE:
        return a >= b;
    default:
        return a == b;
    }
}

/* The positive comparison of a request value with one policy value. */
static bool value_matches(const CondOp *op, const char *req, const char *pol)
{
    double a, b;
    int64_t da, db;
    Cidr net, ip;
    switch (op->type) {
    case C_STRING:
        return strcmp(req, pol) == 0;
    case C_STRING_NOCASE:
        return strcasecmp(req, pol) == 0;
    case C_STRING_LIKE:
    case C_ARN:
        return s3_policy_glob(pol, req, false);
    case C_NUMERIC:
        return parse_number(req, &a) && parse_number(pol, &b) && cmp_holds(op->cmp, a, b);
    case C_DATE:
        return parse_date(req, &da) && parse_date(pol, &db) &&
               cmp_holds(op->cmp, (double)da, (double)db);
    case C_BOOL:
        return strcasecmp(req, pol) == 0;
    case C_IP:
        return parse_cidr(pol, &net) && parse_cidr(req, &ip) &&
               ip.bits == (ip.family == AF_INET ? 32u : 128u) && cidr_contains(&net, &ip);
    case C_NULL:
        return false;
    }
    return false;
}

static const char *request_key(const S3PolicyRequest *q, const char *name)
{
    for (size_t i = 0; i < q->nkeys; i++)
        if (q->keys[i].name && q->keys[i].value && strcasecmp(q->keys[i].name, name) == 0)
            return q->keys[i].value;
    return NULL;
}

/* One operator on one key with its values (a string, number, bool, or an array of them). */
static bool condition_holds(const CondOp *op, SetMode set, bool if_exists, const char *key,
                            json_t *values, const S3PolicyRequest *q)
{
    const char *v = request_key(q, key);
    char buf[64];
    if (op->type == C_NULL) {
        bool want_absent = strcasecmp(value_text(list_at(values, 0), buf), "true") == 0;
        return want_absent == (v == NULL);
    }
    if (!v) {
        if (if_exists || set == SET_ALL)
            return true;
        if (set == SET_ANY)
            return false;
        return op->negate;
    }
    bool any = false;
    for (size_t i = 0; i < list_size(values) && !any; i++) {
        const char *pv = value_text(list_at(values, i), buf);
        any = pv && value_matches(op, v, pv);
    }
    return op->negate ? !any : any;
}

static bool conditions_hold(json_t *cond, const S3PolicyRequest *q)
{
    const char *opname, *key;
    json_t *block, *values;
    json_object_foreach(cond, opname, block)
    {
        SetMode set;
        bool if_exists;
        const CondOp *op = cond_op_parse(opname, &set, &if_exists);
        if (!op)
            return false;
        json_object_foreach(block, key, values)
        {
            if (!condition_holds(op, set, if_exists, key, values, q))
                return false;
        }
    }
    return true;
}

static bool value_list_valid(json_t *v)
{
    if (json_is_array(v)) {
        if (json_array_size(v) == 0 || json_array_size(v) > S3_POLICY_MAX_VALUES)
            return false;
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e) && !json_is_number(e) && !json_is_boolean(e))
                return false;
        }
        return true;
    }
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

static int condition_validate(json_t *cond, SovBuf *err)
{
    if (!json_is_object(cond)) {
        sov_buf_puts(err, "Condition must be an object");
        return -EINVAL;
    }
    size_t count = 0;
    const char *opname, *key;
    json_t *block, *values;
    json_object_foreach(cond, opname, block)
    {
        SetMode set;
        bool if_exists;
        const CondOp *op = cond_op_parse(opname, &set, &if_exists);
        if (!op) {
            sov_buf_printf(err, "Invalid Condition type : %.64s", opname);
            return -EINVAL;
        }
        if (!json_is_object(block) || json_object_size(block) == 0) {
            sov_buf_printf(err, "Condition %.64s must map keys to values", opname);
            return -EINVAL;
        }
        json_object_foreach(block, key, values)
        {
            if (++count > S3_POLICY_MAX_CONDITIONS) {
                sov_buf_puts(err, "Policy has too many conditions");
                return -EINVAL;
            }
            if (!cond_key_valid(key)) {
                sov_buf_puts(err, "Policy has an invalid condition key");
                return -EINVAL;
            }
            if (!value_list_valid(values)) {
                sov_buf_printf(err, "Invalid value for condition key %.128s", key);
                return -EINVAL;
            }
            for (size_t i = 0; i < list_size(values); i++) {
                char buf[64];
                const char *pv = value_text(list_at(values, i), buf);
                if (!pv || !cond_value_valid(op, pv)) {
                    sov_buf_printf(err, "Invalid value for condition %.64s on key %.128s", opname,
                                   key);
                    return -EINVAL;
                }
            }
            if (op->type == C_NULL && list_size(values) != 1) {
                sov_buf_puts(err, "Null takes one value, true or false");
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Keys whose fixed values pin a statement to known callers, so that it does not make a policy
 * public (the caller's network or account). */
static bool restricting_condition(json_t *cond)
{
    static const char *const keys[] = {
        "aws:SourceIp",       "aws:SourceVpc",   "aws:SourceVpce",       "aws:SourceAccount",
        "aws:SourceArn",      "aws:SourceOwner", "aws:PrincipalAccount", "aws:PrincipalArn",
        "aws:PrincipalOrgID", "aws:userid",      "aws:username",
    };
    const char *opname, *key;
    json_t *block, *values;
    json_object_foreach(cond, opname, block)
    {
        SetMode set;
        bool if_exists;
        const CondOp *op = cond_op_parse(opname, &set, &if_exists);
        if (!op || op->negate || if_exists || set != SET_NONE)
            continue;
        if (op->type != C_STRING && op->type != C_STRING_NOCASE && op->type != C_ARN &&
            op->type != C_STRING_LIKE && op->type != C_IP)
            continue;
        json_object_foreach(block, key, values)
        {
            bool known = false;
            for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !known; i++)
                known = strcasecmp(key, keys[i]) == 0;
            if (!known)
                continue;
            bool fixed = true;
            for (size_t i = 0; i < list_size(values) && fixed; i++) {
                char buf[64];
                const char *pv = value_text(list_at(values, i), buf);
                Cidr c;
                if (op->type == C_IP)
                    fixed = parse_cidr(pv, &c) && c.bits >= (c.family == AF_INET ? 8u : 32u);
                else
                    fixed = !has_wildcard(pv);
            }
            if (fixed)
                return true;
        }
    }
    return false;
}

/* ---- documents ---- */

static int fail(SovBuf *err, const char *msg)
{
    sov_buf_puts(err, msg);
    return -EINVAL;
}

/* Every member of o is one of the n names in fields: 0, or -EINVAL naming the first that is not. */
static int fields_known(json_t *o, const char *const *fields, size_t n, SovBuf *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(k, fields[i]) == 0;
        if (!known) {
            sov_buf_printf(err, "Unknown field %.64s", k);
            return -EINVAL;
        }
    }
    return 0;
}

/* A string or list of strings each naming a valid action, or (resources) a valid resource of
 * bucket. */
static bool each_valid(json_t *l, bool resources, const char *bucket)
{
    if (!str_list_valid(l))
        return false;
    for (size_t i = 0; i < list_size(l); i++) {
        const char *v = json_string_value(list_at(l, i));
        if (!(resources ? resource_valid(v, bucket) : action_valid(v)))
            return false;
    }
    return true;
}

static int statement_validate(json_t *st, const char *bucket, SovBuf *err)
{
    static const char *const fields[] = {"Sid",          "Effect",      "Principal",
                                         "NotPrincipal", "Action",      "NotAction",
                                         "Resource",     "NotResource", "Condition"};
    if (!json_is_object(st))
        return fail(err, "Each Statement must be an object");
    if (fields_known(st, fields, sizeof(fields) / sizeof(fields[0]), err) < 0)
        return -EINVAL;
    json_t *sid = json_object_get(st, "Sid");
    if (sid && (!json_is_string(sid) || json_string_length(sid) > 256))
        return fail(err, "Statement IDs (SID) must be strings");
    json_t *effect = json_object_get(st, "Effect");
    if (!effect)
        return fail(err, "Missing required field Effect");
    if (!json_is_string(effect) || (strcmp(json_string_value(effect), "Allow") != 0 &&
                                    strcmp(json_string_value(effect), "Deny") != 0))
        return fail(err, "Invalid effect: the Effect must be Allow or Deny");
    json_t *p = json_object_get(st, "Principal"), *np = json_object_get(st, "NotPrincipal");
    if (!p && !np)
        return fail(err, "Missing required field Principal");
    if ((p && np) || !principal_valid(p ? p : np))
        return fail(err, "Invalid principal in policy");
    json_t *a = json_object_get(st, "Action"), *na = json_object_get(st, "NotAction");
    if (!a && !na)
        return fail(err, "Missing required field Action");
    if ((a && na) || !each_valid(a ? a : na, false, bucket))
        return fail(err, "Policy has invalid action");
    json_t *r = json_object_get(st, "Resource"), *nr = json_object_get(st, "NotResource");
    if (!r && !nr)
        return fail(err, "Missing required field Resource");
    if ((r && nr) || !each_valid(r ? r : nr, true, bucket))
        return fail(err, "Policy has invalid resource");
    json_t *cond = json_object_get(st, "Condition");
    return cond ? condition_validate(cond, err) : 0;
}

static bool statement_public(json_t *st)
{
    if (strcmp(json_string_value(json_object_get(st, "Effect")), "Allow") != 0)
        return false;
    json_t *np = json_object_get(st, "NotPrincipal");
    if (!np && !principal_public(json_object_get(st, "Principal")))
        return false;
    json_t *cond = json_object_get(st, "Condition");
    return !cond || !restricting_condition(cond);
}

int s3_policy_parse(const char *text, size_t len, const char *bucket, S3Policy **ret, SovBuf *err)
{
    static const char *const fields[] = {"Version", "Id", "Statement"};
    if (len > S3_POLICY_MAX_BYTES)
        return fail(err, "Policy exceeds the maximum allowed document size");
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i == len || text[i] != '{')
        return fail(err, "Policies must be valid JSON and the first byte must be '{'");
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        return fail(err, "This policy contains invalid Json");
    }
    int rc = fields_known(doc, fields, sizeof(fields) / sizeof(fields[0]), err);
    if (rc < 0)
        goto out;
    json_t *ver = json_object_get(doc, "Version"), *id = json_object_get(doc, "Id");
    if (ver && (!json_is_string(ver) || (strcmp(json_string_value(ver), "2012-10-17") != 0 &&
                                         strcmp(json_string_value(ver), "2008-10-17") != 0))) {
        rc = fail(err, "Document is invalid: Invalid Version");
        goto out;
    }
    if (id && !json_is_string(id)) {
        rc = fail(err, "Document is invalid: Id must be a string");
        goto out;
    }
    json_t *sts = json_object_get(doc, "Statement");
    if (!sts) {
        rc = fail(err, "Missing required field Statement");
        goto out;
    }
    json_t *list = json_is_array(sts) ? json_incref(sts) : json_pack("[O]", sts);
    if (!list) {
        rc = -ENOMEM;
        goto out;
    }
    if (json_array_size(list) == 0 || json_array_size(list) > S3_POLICY_MAX_STATEMENTS) {
        json_decref(list);
        rc = fail(err, json_array_size(list) ? "Policy has too many statements"
                                             : "Missing required field Statement");
        goto out;
    }
    bool is_public = false;
    for (size_t s = 0; s < json_array_size(list) && rc == 0; s++) {
        json_t *st = json_array_get(list, s);
        rc = statement_validate(st, bucket, err);
        if (rc < 0)
            break;
        json_t *sid = json_object_get(st, "Sid");
        for (size_t o = 0; o < s && sid; o++) {
            json_t *other = json_object_get(json_array_get(list, o), "Sid");
            if (other && json_equal(sid, other)) {
                rc = fail(err, "Statement IDs (SID) in a single policy must be unique");
                break;
            }
        }
        if (rc == 0 && statement_public(st))
            is_public = true;
    }
    if (rc < 0) {
        json_decref(list);
        goto out;
    }
    S3Policy *p = calloc(1, sizeof(*p));
    if (!p) {
        json_decref(list);
        rc = -ENOMEM;
        goto out;
    }
    p->statements = list;
    p->is_public = is_public;
    *ret = p;
out:
    json_decref(doc);
    return rc;
}

S3Policy *s3_policy_free(S3Policy *p)
{
    if (p) {
        json_decref(p->statements);
        free(p);
    }
    return NULL;
}

bool s3_policy_is_public(const S3Policy *p)
{
    return p && p->is_public;
}

static bool statement_applies(json_t *st, const S3PolicyRequest *q)
{
    json_t *p = json_object_get(st, "Principal"), *np = json_object_get(st, "NotPrincipal");
    if (p ? !principal_matches(p, q->principal) : principal_matches(np, q->principal))
        return false;
    json_t *a = json_object_get(st, "Action"), *na = json_object_get(st, "NotAction");
    if (a ? !any_glob(a, q->action, true) : any_glob(na, q->action, true))
        return false;
    json_t *r = json_object_get(st, "Resource"), *nr = json_object_get(st, "NotResource");
    if (r ? !any_glob(r, q->resource, false) : any_glob(nr, q->resource, false))
        return false;
    json_t *cond = json_object_get(st, "Condition");
    return !cond || conditions_hold(cond, q);
}

S3PolicyDecision s3_policy_evaluate(const S3Policy *p, const S3PolicyRequest *q)
{
    S3PolicyDecision d = S3_POLICY_NONE;
    if (!p)
        return d;
    for (size_t i = 0; i < json_array_size(p->statements); i++) {
        json_t *st = json_array_get(p->statements, i);
        bool deny = strcmp(json_string_value(json_object_get(st, "Effect")), "Deny") == 0;
        if (!deny && (q->ignore_allow || d == S3_POLICY_ALLOW))
            continue;
        if (!statement_applies(st, q))
            continue;
        if (deny)
            return S3_POLICY_DENY;
        d = S3_POLICY_ALLOW;
    }
    return d;
}
