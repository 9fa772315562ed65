/* SPDX-License-Identifier: Apache-2.0 */
/* Storage classes, lifecycle rules and restores: the ?lifecycle bucket document (validated as
 * AWS does, stored in our JSON form as the bucket's "lifecycle" configuration member),
 * RestoreObject, and the checks GET and HEAD make on archived objects. The worker that applies
 * the rules is lcworker.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle-int.h"
#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

#define LC_MAX_RULES    1000
#define LC_MAX_TAGS     10
#define LC_MAX_ID       255
#define LC_MAX_NEWER    100
#define LC_MAX_SIZE_ARG (1ll << 53)

/* ---- storage classes ---- */

static const struct {
    const char *name;
    int rank;      /* colder is higher: a transition only ever goes colder */
    bool archived; /* reads need a restore */
    bool target;   /* a transition may name it */
} classes[] = {
    {"STANDARD", 0, false, false},
    {"REDUCED_REDUNDANCY", 0, false, false},
    {"STANDARD_IA", 1, false, true},
    {"ONEZONE_IA", 2, false, true},
    {"INTELLIGENT_TIERING", 3, false, true},
    {"GLACIER_IR", 4, false, true},
    {"GLACIER", 5, true, true},
    {"DEEP_ARCHIVE", 6, true, true},
};

static int class_find(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(classes); i++)
        if (strcmp(classes[i].name, name) == 0)
            return (int)i;
    return -1;
}

int s3_storage_class_rank(const char *name)
{
    int i = class_find(name);
    return i < 0 ? 0 : classes[i].rank;
}

bool s3_storage_class_archived(const char *name)
{
    int i = class_find(name);
    return i >= 0 && classes[i].archived;
}

/* ---- small parsers ---- */

typedef struct LcErr {
    const char *code;
    char msg[256];
} LcErr;

static int _printf_(3, 4) lc_fail(LcErr *e, const char *code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int malformed(LcErr *e)
{
    return lc_fail(e, "MalformedXML",
                   "The XML you provided was not well-formed or did not validate against our "
                   "published schema");
}

/* An element's text ("" when empty: the parser leaves it NULL then). */
static const char *txt(const SovXmlNode *n)
{
    return n && n->text ? n->text : "";
}

/* A whole number of at most 15 digits (surrounding blanks allowed): 0 or -EINVAL. */
static int parse_count(const SovXmlNode *n, int64_t *ret)
{
    const char *p = txt(n);
    int64_t v = 0;
    int digits = 0;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 15)
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    if (!digits || *p)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int fixed_digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -EINVAL;
        v = v * 10 + (**p - '0');
    }
    *ret = v;
    return 0;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* ISO 8601 in UTC: YYYY-MM-DD[THH:MM:SS[.fff](Z|+00:00)]. */
static int parse_date(const char *s, int64_t *ret_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    const char *p = s;
    while (*p == ' ' || *p == '\n' || *p == '\t')
        p++;
    if (fixed_digits(&p, 4, &y) < 0 || *p++ != '-' || fixed_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
        fixed_digits(&p, 2, &d) < 0)
        return -EINVAL;
    if (*p == 'T') {
        p++;
        if (fixed_digits(&p, 2, &h) < 0 || *p++ != ':' || fixed_digits(&p, 2, &mi) < 0 ||
            *p++ != ':' || fixed_digits(&p, 2, &sec) < 0)
            return -EINVAL;
        int64_t frac_ms = 0, scale = 100;
        if (*p == '.') {
            p++;
            if (*p < '0' || *p > '9')
                return -EINVAL;
            for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac_ms += scale * (*p - '0');
        }
        if (*p == 'Z')
            p++;
        else if (strncmp(p, "+00:00", 6) == 0)
            p += 6;
        else
            return -EINVAL;
        if (frac_ms)
            return -ERANGE; /* not midnight */
    }
    while (*p == ' ' || *p == '\n' || *p == '\t')
        p++;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    *ret_ms = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000;
    return 0;
}

static unsigned count_children(const SovXmlNode *n, const char *name)
{
    unsigned c = 0;
    for (const SovXmlNode *k = n->child; k; k = k->next)
        c += strcmp(k->name, name) == 0;
    return c;
}

/* Every child is one of names (NULL-terminated), each at most once unless its name begins one
 * of the names listed in multi (a space-separated list, or NULL). */
static bool children_ok(const SovXmlNode *n, const char *const *names, const char *multi)
{
    for (const SovXmlNode *k = n->child; k; k = k->next) {
        bool known = false;
        for (size_t i = 0; names[i] && !known; i++)
            known = strcmp(k->name, names[i]) == 0;
        size_t len = strlen(k->name);
        const char *m = multi ? strstr(multi, k->name) : NULL;
        bool repeatable = m && (m == multi || m[-1] == ' ') && (m[len] == ' ' || !m[len]);
        if (!known || (!repeatable && count_children(n, k->name) > 1))
            return false;
    }
    return true;
}

/* ---- the configuration document: XML to our JSON form ----
 * {"rules":[{"id","status","filter":{"form":"legacy|empty|prefix|tag|gt|lt|and","prefix",
 *  "tags":[[k,v]..],"gt","lt"},"expiration":{"days"|"date"(ms)|"marker":true},
 *  "transitions":[{"days"|"date","class"}],"noncurrent_expiration":{"days","newer"},
 *  "noncurrent_transitions":[{"days","newer","class"}],"abort_days"}]} */

static int tag_from_xml(const SovXmlNode *t, json_t *tags, LcErr *e)
{
    static const char *const names[] = {"Key", "Value", NULL};
    SovXmlNode *k = sov_xml_child(t, "Key"), *v = sov_xml_child(t, "Value");
    if (!children_ok(t, names, NULL) || !k)
        return malformed(e);
    if (k->text_len == 0 || k->text_len > 128 || (v && v->text_len > 256))
        return lc_fail(e, "InvalidArgument", "The TagKey you have provided is invalid");
    size_t i;
    json_t *pair;
    json_array_foreach(tags, i, pair)
    {
        if (strcmp(json_string_value(json_array_get(pair, 0)), txt(k)) == 0)
            return lc_fail(e, "InvalidArgument", "Duplicate Tag Keys are not allowed.");
    }
    if (json_array_size(tags) >= LC_MAX_TAGS)
        return lc_fail(e, "InvalidArgument", "A filter may have at most %d tags", LC_MAX_TAGS);
    json_array_append_new(tags, json_pack("[ss]", txt(k), txt(v)));
    return 0;
}

static int size_from_xml(const SovXmlNode *n, json_t *f, const char *name, LcErr *e)
{
    int64_t v;
    if (parse_count(n, &v) < 0)
        return malformed(e);
    if (v >= LC_MAX_SIZE_ARG)
        return lc_fail(e, "InvalidArgument", "%s is too large", n->name);
    json_object_set_new(f, name, json_integer(v));
    return 0;
}

static int filter_from_xml(const SovXmlNode *fn, json_t *f, LcErr *e)
{
    static const char *const names[] = {
        "Prefix", "Tag", "And", "ObjectSizeGreaterThan", "ObjectSizeLessThan", NULL};
    static const char *const forms[] = {"prefix", "tag", "and", "gt", "lt"};
    if (!children_ok(fn, names, NULL) || (fn->child && fn->child->next))
        return malformed(e);
    if (!fn->child) {
        json_object_set_new(f, "form", json_string("empty"));
        return 0;
    }
    const SovXmlNode *c = fn->child;
    for (size_t i = 0; i < ELEMENTSOF(forms); i++)
        if (strcmp(c->name, names[i]) == 0)
            json_object_set_new(f, "form", json_string(forms[i]));
    json_t *tags = json_array();
    json_object_set_new(f, "tags", tags);
    if (strcmp(c->name, "Prefix") == 0) {
        json_object_set_new(f, "prefix", json_string(txt(c)));
        return 0;
    }
    if (strcmp(c->name, "Tag") == 0)
        return tag_from_xml(c, tags, e);
    if (strcmp(c->name, "ObjectSizeGreaterThan") == 0)
        return size_from_xml(c, f, "gt", e);
    if (strcmp(c->name, "ObjectSizeLessThan") == 0)
        return size_from_xml(c, f, "lt", e);
    static const char *const and_names[] = {"Prefix", "Tag", "ObjectSizeGreaterThan",
                                            "ObjectSizeLessThan", NULL};
    if (!children_ok(c, and_names, "Tag"))
        return malformed(e);
    for (const SovXmlNode *k = c->child; k; k = k->next) {
        int rc = 0;
        if (strcmp(k->name, "Prefix") == 0)
            json_object_set_new(f, "prefix", json_string(txt(k)));
        else if (strcmp(k->name, "Tag") == 0)
            rc = tag_from_xml(k, tags, e);
        else
            rc =
                size_from_xml(k, f, strcmp(k->name, "ObjectSizeGreaterThan") == 0 ? "gt" : "lt", e);
        if (rc < 0)
            return rc;
    }
    json_t *gt = json_object_get(f, "gt"), *lt = json_object_get(f, "lt");
    if (gt && lt && json_integer_value(gt) >= json_integer_value(lt))
        return lc_fail(e, "InvalidArgument",
                       "ObjectSizeGreaterThan must be less than ObjectSizeLessThan");
    return 0;
}

/* NewerNoncurrentVersions of a noncurrent action, stored as "newer" in to. */
static int newer_from_xml(const SovXmlNode *n, json_t *to, LcErr *e)
{
    int64_t v;
    if (parse_count(n, &v) < 0)
        return malformed(e);
    if (v < 1 || v > LC_MAX_NEWER)
        return lc_fail(e, "InvalidArgument", "NewerNoncurrentVersions must be between 1 and %d",
                       LC_MAX_NEWER);
    json_object_set_new(to, "newer", json_integer(v));
    return 0;
}

/* Days (or NoncurrentDays) of an action: min is 1 for expirations, 0 for transitions. */
static int days_from_xml(const SovXmlNode *n, int64_t min, const char *action, int64_t *ret,
                         LcErr *e)
{
    if (parse_count(n, ret) < 0)
        return malformed(e);
    if (*ret < min || *ret > 2147483647)
        return lc_fail(e, "InvalidArgument", "'%s' for %s action must be a positive integer",
                       n->name, action);
    return 0;
}

static int date_from_xml(const SovXmlNode *n, int64_t *ret, LcErr *e)
{
    int rc = parse_date(txt(n), ret);
    if (rc == -EINVAL)
        return malformed(e);
    if (rc < 0 || *ret % 86400000 != 0)
        return lc_fail(e, "InvalidArgument", "'Date' must be at midnight GMT");
    return 0;
}

static int transition_from_xml(const SovXmlNode *t, bool noncurrent, json_t *rule, LcErr *e)
{
    static const char *const names[] = {"Days", "Date", "StorageClass", NULL};
    static const char *const nc_names[] = {"NoncurrentDays", "StorageClass",
                                           "NewerNoncurrentVersions", NULL};
    const char *list = noncurrent ? "noncurrent_transitions" : "transitions";
    const char *action = noncurrent ? "NoncurrentVersionTransition" : "Transition";
    SovXmlNode *days = sov_xml_child(t, noncurrent ? "NoncurrentDays" : "Days");
    SovXmlNode *date = noncurrent ? NULL : sov_xml_child(t, "Date");
    SovXmlNode *sc = sov_xml_child(t, "StorageClass");
    SovXmlNode *newer = noncurrent ? sov_xml_child(t, "NewerNoncurrentVersions") : NULL;
    if (!children_ok(t, noncurrent ? nc_names : names, NULL) || !sc || !days == !date)
        return malformed(e);
    int ci = class_find(txt(sc));
    if (ci < 0 || !classes[ci].target)
        return malformed(e);
    json_t *tr = json_object(), *arr = json_object_get(rule, list);
    if (!arr)
        json_object_set_new(rule, list, arr = json_array());
    json_array_append_new(arr, tr);
    json_object_set_new(tr, "class", json_string(txt(sc)));
    int64_t v;
    if (days) {
        if (days_from_xml(days, 0, action, &v, e) < 0)
            return -EINVAL;
        if (v < 30 && classes[ci].rank <= 2 && classes[ci].rank >= 1)
            return lc_fail(e, "InvalidArgument",
                           "'%s' in %s action must be greater than or equal to 30 for "
                           "storageClass '%s'",
                           days->name, action, txt(sc));
        json_object_set_new(tr, "days", json_integer(v));
    } else {
        if (date_from_xml(date, &v, e) < 0)
            return -EINVAL;
        json_object_set_new(tr, "date", json_integer(v));
    }
    if (newer && newer_from_xml(newer, tr, e) < 0)
        return -EINVAL;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (o != tr && json_equal(json_object_get(o, "class"), json_object_get(tr, "class")))
            return lc_fail(e, "InvalidArgument",
                           "'StorageClass' must be different for '%s' actions in same 'Rule'",
                           action);
    }
    if (json_array_size(arr) > LC_MAX_TRANS)
        return malformed(e);
    return 0;
}

static int expiration_from_xml(const SovXmlNode *x, json_t *rule, LcErr *e)
{
    static const char *const names[] = {"Days", "Date", "ExpiredObjectDeleteMarker", NULL};
    if (!children_ok(x, names, NULL) || !x->child || x->child->next)
        return malformed(e);
    json_t *exp = json_object();
    json_object_set_new(rule, "expiration", exp);
    const SovXmlNode *c = x->child;
    int64_t v;
    if (strcmp(c->name, "Days") == 0) {
        if (days_from_xml(c, 1, "Expiration", &v, e) < 0)
            return -EINVAL;
        json_object_set_new(exp, "days", json_integer(v));
    } else if (strcmp(c->name, "Date") == 0) {
        if (date_from_xml(c, &v, e) < 0)
            return -EINVAL;
        json_object_set_new(exp, "date", json_integer(v));
    } else if (strcmp(txt(c), "true") == 0) {
        json_object_set_new(exp, "marker", json_true());
    } else if (strcmp(txt(c), "false") == 0) {
        json_object_del(rule, "expiration"); /* no action */
    } else {
        return malformed(e);
    }
    return 0;
}

static int noncurrent_expiration_from_xml(const SovXmlNode *x, json_t *rule, LcErr *e)
{
    static const char *const names[] = {"NoncurrentDays", "NewerNoncurrentVersions", NULL};
    SovXmlNode *days = sov_xml_child(x, "NoncurrentDays");
    SovXmlNode *newer = sov_xml_child(x, "NewerNoncurrentVersions");
    int64_t v;
    if (!children_ok(x, names, NULL) || !days)
        return malformed(e);
    if (days_from_xml(days, 1, "NoncurrentVersionExpiration", &v, e) < 0)
        return -EINVAL;
    json_t *nc = json_pack("{sI}", "days", (json_int_t)v);
    json_object_set_new(rule, "noncurrent_expiration", nc);
    if (newer && newer_from_xml(newer, nc, e) < 0)
        return -EINVAL;
    return 0;
}

static int rule_from_xml(const SovXmlNode *rn, json_t *ids, json_t **ret, LcErr *e)
{
    static const char *const names[] = {"ID",
                                        "Status",
                                        "Filter",
                                        "Prefix",
                                        "Expiration",
                                        "Transition",
                                        "NoncurrentVersionExpiration",
                                        "NoncurrentVersionTransition",
                                        "AbortIncompleteMultipartUpload",
                                        NULL};
    json_t *rule = json_object();
    *ret = rule;
    if (!children_ok(rn, names, "Transition NoncurrentVersionTransition"))
        return malformed(e);
    SovXmlNode *id = sov_xml_child(rn, "ID"), *st = sov_xml_child(rn, "Status");
    SovXmlNode *filter = sov_xml_child(rn, "Filter"), *prefix = sov_xml_child(rn, "Prefix");
    if (!st || (strcmp(txt(st), "Enabled") != 0 && strcmp(txt(st), "Disabled") != 0) ||
        !filter == !prefix)
        return malformed(e);
    char gen[40];
    if (id && id->text_len > LC_MAX_ID)
        return lc_fail(e, "InvalidArgument", "ID length should not exceed allowed limit of %d",
                       LC_MAX_ID);
    if (!id || !id->text_len) {
        uint8_t raw[16];
        if (sov_random_bytes(raw, sizeof(raw)) < 0)
            return lc_fail(e, "InternalError", "no random bytes");
        sov_hex_encode(raw, sizeof(raw), gen);
    }
    const char *idv = id && id->text_len ? txt(id) : gen;
    if (json_object_get(ids, idv))
        return lc_fail(e, "InvalidArgument",
                       "Rule ID must be unique. Found same ID for more than one rule");
    json_object_set_new(ids, idv, json_true());
    json_object_set_new(rule, "id", json_string(idv));
    json_object_set_new(rule, "status", json_string(txt(st)));
    json_t *f = json_object();
    json_object_set_new(rule, "filter", f);
    if (prefix) {
        json_object_set_new(f, "form", json_string("legacy"));
        json_object_set_new(f, "prefix", json_string(txt(prefix)));
        json_object_set_new(f, "tags", json_array());
    } else if (filter_from_xml(filter, f, e) < 0) {
        return -EINVAL;
    }
    bool tags = json_array_size(json_object_get(f, "tags")) > 0;
    bool sized = json_object_get(f, "gt") || json_object_get(f, "lt");
    for (const SovXmlNode *c = rn->child; c; c = c->next) {
        int rc = 0;
        if (strcmp(c->name, "Expiration") == 0)
            rc = expiration_from_xml(c, rule, e);
        else if (strcmp(c->name, "Transition") == 0)
            rc = transition_from_xml(c, false, rule, e);
        else if (strcmp(c->name, "NoncurrentVersionTransition") == 0)
            rc = transition_from_xml(c, true, rule, e);
        else if (strcmp(c->name, "NoncurrentVersionExpiration") == 0)
            rc = noncurrent_expiration_from_xml(c, rule, e);
        else if (strcmp(c->name, "AbortIncompleteMultipartUpload") == 0) {
            SovXmlNode *d = sov_xml_child(c, "DaysAfterInitiation");
            static const char *const an[] = {"DaysAfterInitiation", NULL};
            int64_t v;
            if (!d || !children_ok(c, an, NULL))
                return malformed(e);
            if (days_from_xml(d, 1, "AbortIncompleteMultipartUpload", &v, e) < 0)
                return -EINVAL;
            if (tags || sized)
                return lc_fail(e, "InvalidRequest",
                               "AbortIncompleteMultipartUpload cannot be specified with "
                               "Tags or object size filters.");
            json_object_set_new(rule, "abort_days", json_integer(v));
        }
        if (rc < 0)
            return rc;
    }
    json_t *exp = json_object_get(rule, "expiration");
    if (json_object_get(exp, "marker") && tags)
        return lc_fail(e, "InvalidRequest",
                       "ExpiredObjectDeleteMarker cannot be specified with tags.");
    if (!exp && !json_object_get(rule, "transitions") &&
        !json_object_get(rule, "noncurrent_expiration") &&
        !json_object_get(rule, "noncurrent_transitions") && !json_object_get(rule, "abort_days"))
        return lc_fail(e, "InvalidRequest", "At least one action needs to be specified in a rule");
    /* Dates and days do not mix; an expiration comes after every transition. */
    bool has_days = json_object_get(exp, "days") != NULL, has_date = json_object_get(exp, "date");
    size_t i;
    json_t *tr;
    json_array_foreach(json_object_get(rule, "transitions"), i, tr)
    {
        has_days |= json_object_get(tr, "days") != NULL;
        has_date |= json_object_get(tr, "date") != NULL;
        json_t *ed = json_object_get(exp, "days"), *td = json_object_get(tr, "days");
        json_t *edt = json_object_get(exp, "date"), *tdt = json_object_get(tr, "date");
        if ((ed && td && json_integer_value(ed) <= json_integer_value(td)) ||
            (edt && tdt && json_integer_value(edt) <= json_integer_value(tdt)))
            return lc_fail(e, "InvalidArgument",
                           "'Days' in the Expiration action for filter must be greater than "
                           "'Days' in the Transition action");
    }
    if (has_days && has_date)
        return lc_fail(e, "InvalidRequest",
                       "Found mixed 'Date' and 'Days' based Expiration and Transition actions in "
                       "lifecycle rule");
    return 0;
}

static int config_from_xml(SovStr body, json_t **ret, LcErr *e)
{
    SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 8, .max_nodes = 65536};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = sov_xml_parse(body, &lim, &root, &err);
    sov_buf_release(&err);
    *ret = NULL;
    if (rc < 0 || strcmp(root->name, "LifecycleConfiguration") != 0) {
        sov_xml_free(root);
        return malformed(e);
    }
    static const char *const names[] = {"Rule", NULL};
    unsigned n = count_children(root, "Rule");
    if (!children_ok(root, names, "Rule") || n == 0 || n > LC_MAX_RULES) {
        sov_xml_free(root);
        return malformed(e);
    }
    json_t *doc = json_object(), *rules = json_array(), *ids = json_object();
    json_object_set_new(doc, "rules", rules);
    rc = 0;
    for (const SovXmlNode *r = root->child; r && rc == 0; r = r->next) {
        json_t *rule;
        rc = rule_from_xml(r, ids, &rule, e);
        json_array_append_new(rules, rule);
    }
    json_decref(ids);
    sov_xml_free(root);
    if (rc < 0) {
        json_decref(doc);
        return rc;
    }
    *ret = doc;
    return 0;
}

/* ---- the configuration document: our JSON form to XML ---- */

static void put_int(SovXmlWriter *w, const char *name, json_t *v)
{
    if (v)
        sov_xml_elem_u64(w, name, (uint64_t)json_integer_value(v));
}

static void put_date(SovXmlWriter *w, json_t *v)
{
    char date[32];
    s3_format_iso8601(json_integer_value(v), date);
    sov_xml_elem(w, "Date", sov_str(date));
}

static void put_tag(SovXmlWriter *w, json_t *pair)
{
    sov_xml_open(w, "Tag", NULL);
    sov_xml_elem(w, "Key", sov_str(json_string_value(json_array_get(pair, 0))));
    sov_xml_elem(w, "Value", sov_str(json_string_value(json_array_get(pair, 1))));
    sov_xml_close(w);
}

static void filter_to_xml(SovXmlWriter *w, json_t *f)
{
    const char *form = json_string_value(json_object_get(f, "form"));
    const char *prefix = json_string_value(json_object_get(f, "prefix"));
    json_t *tags = json_object_get(f, "tags");
    form = form ? form : "empty";
    if (strcmp(form, "legacy") == 0) {
        sov_xml_elem(w, "Prefix", sov_str(prefix ? prefix : ""));
        return;
    }
    sov_xml_open(w, "Filter", NULL);
    if (strcmp(form, "and") == 0)
        sov_xml_open(w, "And", NULL);
    if (prefix)
        sov_xml_elem(w, "Prefix", sov_str(prefix));
    size_t i;
    json_t *pair;
    json_array_foreach(tags, i, pair)
    {
        put_tag(w, pair);
    }
    put_int(w, "ObjectSizeGreaterThan", json_object_get(f, "gt"));
    put_int(w, "ObjectSizeLessThan", json_object_get(f, "lt"));
    if (strcmp(form, "and") == 0)
        sov_xml_close(w);
    sov_xml_close(w);
}

static void transitions_to_xml(SovXmlWriter *w, json_t *arr, bool noncurrent)
{
    size_t i;
    json_t *tr;
    json_array_foreach(arr, i, tr)
    {
        sov_xml_open(w, noncurrent ? "NoncurrentVersionTransition" : "Transition", NULL);
        if (json_object_get(tr, "date"))
            put_date(w, json_object_get(tr, "date"));
        put_int(w, noncurrent ? "NoncurrentDays" : "Days", json_object_get(tr, "days"));
        put_int(w, "NewerNoncurrentVersions", json_object_get(tr, "newer"));
        sov_xml_elem(w, "StorageClass", sov_str(json_string_value(json_object_get(tr, "class"))));
        sov_xml_close(w);
    }
}

static void config_to_xml(json_t *doc, SovBuf *out)
{
    SovXmlWriter w;
    size_t i;
    json_t *rule;
    sov_xml_writer_init(&w, out);
    sov_xml_open(&w, "LifecycleConfiguration", S3_XMLNS);
    json_array_foreach(json_object_get(doc, "rules"), i, rule)
    {
        sov_xml_open(&w, "Rule", NULL);
        sov_xml_elem(&w, "ID", sov_str(json_string_value(json_object_get(rule, "id"))));
        filter_to_xml(&w, json_object_get(rule, "filter"));
        sov_xml_elem(&w, "Status", sov_str(json_string_value(json_object_get(rule, "status"))));
        json_t *exp = json_object_get(rule, "expiration"), *nc;
        if (exp) {
            sov_xml_open(&w, "Expiration", NULL);
            put_int(&w, "Days", json_object_get(exp, "days"));
            if (json_object_get(exp, "date"))
                put_date(&w, json_object_get(exp, "date"));
            if (json_object_get(exp, "marker"))
                sov_xml_elem(&w, "ExpiredObjectDeleteMarker", SOV_STR("true"));
            sov_xml_close(&w);
        }
        transitions_to_xml(&w, json_object_get(rule, "transitions"), false);
        transitions_to_xml(&w, json_object_get(rule, "noncurrent_transitions"), true);
        if ((nc = json_object_get(rule, "noncurrent_expiration"))) {
            sov_xml_open(&w, "NoncurrentVersionExpiration", NULL);
            put_int(&w, "NoncurrentDays", json_object_get(nc, "days"));
            put_int(&w, "NewerNoncurrentVersions", json_object_get(nc, "newer"));
            sov_xml_close(&w);
        }
        if (json_object_get(rule, "abort_days")) {
            sov_xml_open(&w, "AbortIncompleteMultipartUpload", NULL);
            put_int(&w, "DaysAfterInitiation", json_object_get(rule, "abort_days"));
            sov_xml_close(&w);
        }
        sov_xml_close(&w);
    }
    sov_xml_close(&w);
}

/* ---- GET / PUT / DELETE ?lifecycle ---- */

static void config_set_done(S3Req *r, int status)
{
    if (status == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (status < 0)
        s3_error(r, "InternalError", "the lifecycle configuration could not be stored");
    else
        s3_reply_empty(r, strcmp(r->op, "DeleteBucketLifecycle") == 0 ? 204 : 200);
}

static void lifecycle_put_body(S3Req *r)
{
    json_t *doc;
    LcErr e = {0};
    if (config_from_xml(sov_buf_str(&r->xml), &doc, &e) < 0) {
        s3_error(r, e.code, e.msg);
        return;
    }
    s3_bucket_config_set(r, "lifecycle", doc, config_set_done);
}

void s3_bucket_lifecycle(S3Req *r)
{
    S3Bucket b;
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (strcmp(r->op, "PutBucketLifecycleConfiguration") == 0) {
        s3_body_xml(r, lifecycle_put_body);
        return;
    }
    if (strcmp(r->op, "DeleteBucketLifecycle") == 0) {
        s3_bucket_config_set(r, "lifecycle", NULL, config_set_done);
        return;
    }
    json_t *doc;
    int rc = s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "lifecycle", &doc);
    if (rc == -ENOENT) {
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    } else if (rc < 0) {
        s3_error(r, "InternalError", "metadata read failed");
    } else if (!doc) {
        s3_error_status(r, 404, "NoSuchLifecycleConfiguration",
                        "The lifecycle configuration does not exist");
    } else {
        SovBuf out = SOV_BUF_INIT;
        config_to_xml(doc, &out);
        json_decref(doc);
        s3_reply_xml(r, 200, &out);
        sov_buf_release(&out);
    }
}

/* ---- restores ----
 * There is no tape: the object's data never left its disk, so a restore completes at once and
 * only records until when reads are allowed again (meta["_restore"] = {"expiry_ms": ...}). */

/* The restore's expiry of a metadata document, 0 when there is none. */
int64_t s3_restore_expiry(const char *meta_json)
{
    if (!meta_json || !strstr(meta_json, "\"_restore\""))
        return 0;
    json_t *m = json_loads(meta_json, 0, NULL);
    int64_t v = json_integer_value(json_object_get(json_object_get(m, "_restore"), "expiry_ms"));
    json_decref(m);
    return v;
}

int s3_restore_check(S3Req *r, const S3Object *o)
{
    if (!s3_storage_class_archived(o->storage_class) ||
        s3_restore_expiry(o->meta_json) > s3_now_ms())
        return 0;
    s3_error_status(r, 403, "InvalidObjectState",
                    "The operation is not valid for the object's storage class");
    return -EACCES;
}

void s3_restore_headers(S3Req *r, const S3Object *o)
{
    int64_t exp = s3_restore_expiry(o->meta_json);
    if (exp > s3_now_ms()) {
        char date[40], v[96];
        s3_format_http_date(exp, date);
        snprintf(v, sizeof(v), "ongoing-request=\"false\", expiry-date=\"%s\"", date);
        sov_http_resp_header(r->http, "x-amz-restore", sov_str(v));
    }
    if (strcmp(o->storage_class, "INTELLIGENT_TIERING") == 0 && o->meta_json &&
        strstr(o->meta_json, "\"_tier\":\"archive\""))
        sov_http_resp_header(r->http, "x-amz-archive-status", SOV_STR("ARCHIVE_ACCESS"));
}

void s3_expiration_header(S3Req *r, const S3Object *o, json_t *meta)
{
    json_t *doc = NULL, *rule, *parsed = NULL;
    if (!r->bucket_lifecycle || o->delete_marker || o->noncurrent ||
        s3_bucket_config_get(s3_loop_db(r->loop), o->bucket, "lifecycle", &doc) < 0 || !doc)
        return;
    if (!meta && o->meta_json)
        meta = parsed = json_loads(o->meta_json, 0, NULL);
    int64_t day_ms = r->srv->cfg.lifecycle_day_seconds * 1000, best = -1;
    const char *best_id = "";
    size_t i;
    json_array_foreach(json_object_get(doc, "rules"), i, rule)
    {
        const char *st = json_string_value(json_object_get(rule, "status"));
        LcRule c;
        if (!st || strcmp(st, "Enabled") != 0)
            continue;
        s3_lc_rule_compile(rule, &c);
        if ((c.exp_days < 0 && c.exp_date < 0) ||
            !s3_lc_rule_matches(&c, o->key, strlen(o->key), (int64_t)o->size,
                                json_object_get(meta, "_tags"), false))
            continue;
        int64_t at =
            c.exp_date >= 0 ? c.exp_date : s3_lifecycle_due_ms(o->mtime_ms, c.exp_days, day_ms);
        if (best < 0 || at < best) {
            best = at;
            best_id = json_string_value(json_object_get(rule, "id"));
            best_id = best_id ? best_id : "";
        }
    }
    /* an RFC 1123 date has four digits of year: a rule further out than 9999 says nothing */
    if (best >= 0 && best <= INT64_C(253402300799999)) {
        /* the id URL-encoded, as AWS does */
        char date[40];
        SovBuf v = SOV_BUF_INIT;
        s3_format_http_date(best, date);
        if (sov_buf_printf(&v, "expiry-date=\"%s\", rule-id=\"", date) >= 0 &&
            s3_uri_encode(&v, sov_str(best_id), false) >= 0 && sov_buf_puts(&v, "\"") >= 0)
            sov_http_resp_header(r->http, "x-amz-expiration", sov_str(v.ptr));
        sov_buf_release(&v);
    }
    json_decref(parsed);
    json_decref(doc);
}

typedef struct RestoreState {
    int64_t now_ms, days_ms;
    bool was_restored;
    char version[40]; /* the versionId asked for, or "" */
} RestoreState;

static void restore_free(S3Req *r)
{
    free(r->op_state);
    r->op_state = NULL;
}

static int restore_edit(json_t *meta, void *ud)
{
    RestoreState *st = ud;
    json_t *old = json_object_get(meta, "_restore");
    st->was_restored = json_integer_value(json_object_get(old, "expiry_ms")) > st->now_ms;
    json_object_set_new(meta, "_restore",
                        json_pack("{sI}", "expiry_ms", (json_int_t)(st->now_ms + st->days_ms)));
    return 0;
}

static void restore_done(S3Req *r, int status, const char *version)
{
    RestoreState *st = r->op_state;
    (void)version;
    if (status == -ENOENT)
        s3_error(r, "NoSuchKey", "The specified key does not exist.");
    else if (status < 0)
        s3_error(r, "InternalError", "the restore could not be recorded");
    else
        s3_reply_empty(r, st->was_restored ? 200 : 202);
}

/* The storage class and metadata of the version asked for (the current one for ""). */
static int restore_read(S3Req *r, const char *version, S3Object *o)
{
    sqlite3_stmt *s;
    const char *q = version[0] ? "SELECT storage_class, meta, kind FROM objects"
                                 " WHERE bucket=?1 AND key=?2 AND version=?3"
                               : "SELECT storage_class, meta, kind FROM objects"
                                 " WHERE bucket=?1 AND key=?2 AND is_latest=1";
    if (sqlite3_prepare_v2(s3_loop_db(r->loop), q, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->key_name, -1, SQLITE_STATIC);
    if (version[0])
        sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW && sqlite3_column_int(s, 2) == 0) {
        snprintf(o->storage_class, sizeof(o->storage_class), "%s",
                 (const char *)sqlite3_column_text(s, 0));
        o->meta_json = strdup((const char *)sqlite3_column_text(s, 1));
        ret = o->meta_json ? 0 : -ENOMEM;
    } else {
        ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return ret;
}

static void restore_body(S3Req *r)
{
    RestoreState *st = r->op_state;
    SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 8, .max_nodes = 256};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    int64_t days = -1;
    int rc = r->xml.len ? sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) : -EINVAL;
    sov_buf_release(&err);
    if (rc == 0 && strcmp(root->name, "RestoreRequest") == 0) {
        SovXmlNode *d = sov_xml_child(root, "Days"),
                   *gj = sov_xml_child(root, "GlacierJobParameters");
        SovXmlNode *tier = gj ? sov_xml_child(gj, "Tier") : NULL;
        if (sov_xml_child(root, "Type") || sov_xml_child(root, "OutputLocation")) {
            sov_xml_free(root);
            s3_error(r, "NotImplemented", "Restores with a SELECT request are not implemented");
            return;
        }
        if ((tier && strcmp(txt(tier), "Standard") != 0 && strcmp(txt(tier), "Bulk") != 0 &&
             strcmp(txt(tier), "Expedited") != 0) ||
            (d && parse_count(d, &days) < 0))
            days = -2;
    }
    sov_xml_free(root);
    if (days == -1 || days == -2) {
        s3_error(r, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema");
        return;
    }
    if (days < 1 || days > 2147483647) {
        s3_error(r, "InvalidArgument", "Days must be a positive integer");
        return;
    }
    S3Object o = {.bucket = r->bucket, .key = r->key_name};
    rc = restore_read(r, st->version, &o);
    if (rc == -ENOENT) {
        s3_error(r, "NoSuchKey", "The specified key does not exist.");
        return;
    }
    if (rc < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    bool archived = s3_storage_class_archived(o.storage_class);
    rc = s3_access_object(r, &o);
    free(o.meta_json);
    if (rc < 0)
        return;
    if (!archived) {
        s3_error_status(r, 403, "InvalidObjectState",
                        "Restore is not allowed for the object's current storage class");
        return;
    }
    st->now_ms = s3_now_ms();
    st->days_ms = days * r->srv->cfg.lifecycle_day_seconds * 1000;
    s3_object_meta_update(r, st->version, restore_edit, st, restore_done);
}

void s3_object_restore(S3Req *r)
{
    S3Bucket b;
    const char *v = s3_param(r, "versionId");
    if (s3_require_bucket(r, &b) < 0)
        return;
    if (v && (strlen(v) >= 40 || !v[0])) {
        s3_error(r, "InvalidArgument", "Invalid version id specified");
        return;
    }
    RestoreState *st = calloc(1, sizeof(*st));
    if (!st) {
        s3_error(r, "ServiceUnavailable", "out of memory");
        return;
    }
    snprintf(st->version, sizeof(st->version), "%s", v ? v : "");
    r->op_state = st;
    r->op_free = restore_free;
    s3_body_xml(r, restore_body);
}
