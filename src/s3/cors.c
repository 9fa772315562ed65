/* SPDX-License-Identifier: Apache-2.0 */
/* CORS: a bucket's rules (PutBucketCors, GetBucketCors, DeleteBucketCors), the answer to a
 * browser's preflight (OPTIONS, anonymous) and the Access-Control-* headers of an actual request
 * with an Origin header. The rules are the "cors" configuration document in our JSON form:
 * {"rules": [{"id", "origins", "methods", "headers", "expose", "max_age"}]}, checked once when
 * stored, so that matching a request only compares strings. The first rule that matches the
 * origin, the method and (for a preflight) every requested header decides. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3.h"
#include "sov/xml.h"

#define S3_MAX_CORS_RULES 100
#define S3_MAX_CORS_ID    255

/* ---- matching (pure functions on the stored document) ---- */

/* Does s match pattern, which has at most one '*' standing for any run of characters? */
static bool wildcard_match(const char *pattern, const char *s, size_t n, bool icase)
{
    const char *star = strchr(pattern, '*');
    size_t pl = star ? (size_t)(star - pattern) : strlen(pattern);
    if (!star)
        return n == pl && (icase ? strncasecmp(pattern, s, n) : strncmp(pattern, s, n)) == 0;
    size_t sl = strlen(star + 1);
    if (n < pl + sl)
        return false;
    if (icase)
        return strncasecmp(pattern, s, pl) == 0 && strncasecmp(star + 1, s + n - sl, sl) == 0;
    return strncmp(pattern, s, pl) == 0 && strncmp(star + 1, s + n - sl, sl) == 0;
}

static bool list_match(json_t *list, const char *s, size_t n, bool icase)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && wildcard_match(json_string_value(v), s, n, icase))
            return true;
    }
    return false;
}

/* Every header of the comma-separated list req_headers (NULL: none) allowed by the rule? */
static bool headers_match(json_t *rule, const char *req_headers)
{
    json_t *allowed = json_object_get(rule, "headers");
    for (const char *p = req_headers; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        size_t n = (size_t)(end - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n && !list_match(allowed, p, n, true))
            return false;
        p = end;
    }
    return true;
}

/* The first rule of the document allowing origin, method and the requested headers; NULL when
 * none does. The result borrows from doc. */
static json_t *cors_rule_find(json_t *doc, const char *origin, const char *method,
                              const char *req_headers)
{
    size_t i;
    json_t *rule;
    json_array_foreach(json_object_get(doc, "rules"), i, rule)
    {
        if (list_match(json_object_get(rule, "origins"), origin, strlen(origin), false) &&
            list_match(json_object_get(rule, "methods"), method, strlen(method), false) &&
            headers_match(rule, req_headers))
            return rule;
    }
    return NULL;
}

/* Is the origin that the rule matched allowed only through a lone "*"? Then the answer is
 * "Access-Control-Allow-Origin: *" and no credentials. */
static bool rule_any_origin(json_t *rule, const char *origin)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rule, "origins"), i, v)
    {
        const char *o = json_string_value(v);
        if (o && wildcard_match(o, origin, strlen(origin), false))
            return strcmp(o, "*") == 0;
    }
    return false;
}

static void join_list(SovBuf *b, json_t *list)
{
    size_t i;
    json_t *v;
    sov_buf_reset(b);
    json_array_foreach(list, i, v)
    {
        if (i)
            sov_buf_puts(b, ", ");
        sov_buf_puts(b, json_string_value(v));
    }
}

/* The Access-Control-* headers of a matched rule; req_headers is echoed for a preflight. */
static void rule_headers(S3Req *r, json_t *rule, const char *origin, const char *req_headers,
                         bool preflight)
{
    SovBuf b = SOV_BUF_INIT;
    bool any = rule_any_origin(rule, origin);
    sov_http_resp_header(r->http, "Access-Control-Allow-Origin", sov_str(any ? "*" : origin));
    join_list(&b, json_object_get(rule, "methods"));
    sov_http_resp_header(r->http, "Access-Control-Allow-Methods", sov_buf_str(&b));
    if (preflight && req_headers && req_headers[0])
        sov_http_resp_header(r->http, "Access-Control-Allow-Headers", sov_str(req_headers));
    if (json_array_size(json_object_get(rule, "expose"))) {
        join_list(&b, json_object_get(rule, "expose"));
        sov_http_resp_header(r->http, "Access-Control-Expose-Headers", sov_buf_str(&b));
    }
    json_t *age = json_object_get(rule, "max_age");
    if (json_is_integer(age)) {
        char n[24];
        snprintf(n, sizeof(n), "%lld", (long long)json_integer_value(age));
        sov_http_resp_header(r->http, "Access-Control-Max-Age", sov_str(n));
    }
    if (!any)
        sov_http_resp_header(r->http, "Access-Control-Allow-Credentials", SOV_STR("true"));
    sov_http_resp_header(
        r->http, "Vary",
        SOV_STR("Origin, Access-Control-Request-Headers, Access-Control-Request-Method"));
    sov_buf_release(&b);
}

static bool method_valid(const char *m)
{
    static const char *const methods[] = {"GET", "PUT", "POST", "DELETE", "HEAD"};
    for (size_t i = 0; i < ELEMENTSOF(methods); i++)
        if (strcmp(m, methods[i]) == 0)
            return true;
    return false;
}

/* ---- PutBucketCors: the XML document into our JSON form ---- */

typedef struct CorsError {
    const char *code;
    char message[160];
} CorsError;

static _printf_(3, 4) int cors_fail(CorsError *e, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->code = code;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char malformed[] = "The XML you provided was not well-formed or did not validate "
                                "against our published schema";

/* The text of a leaf element without surrounding white space, as a new JSON string. */
static json_t *leaf_string(const SovXmlNode *n)
{
    const char *t = n->text ? n->text : "";
    size_t len = n->text_len;
    while (len && strchr(" \t\r\n", *t))
        t++, len--;
    while (len && strchr(" \t\r\n", t[len - 1]))
        len--;
    return json_stringn(t, len);
}

static int rule_parse(const SovXmlNode *x, json_t *rule, CorsError *e)
{
    json_t *origins = json_array(), *methods = json_array(), *headers = json_array(),
           *expose = json_array();
    json_object_set_new(rule, "origins", origins);
    json_object_set_new(rule, "methods", methods);
    json_object_set_new(rule, "headers", headers);
    json_object_set_new(rule, "expose", expose);
    if (!origins || !methods || !headers || !expose)
        return cors_fail(e, "ServiceUnavailable", "%s", "out of memory");
    for (const SovXmlNode *c = x->child; c; c = c->next) {
        json_t *v = leaf_string(c);
        const char *s = json_string_value(v);
        int rc = 0;
        if (!v) /* not UTF-8 */
            return cors_fail(e, "MalformedXML", "%s", malformed);
        if (c->child) {
            rc = cors_fail(e, "MalformedXML", "%s", malformed);
        } else if (strcmp(c->name, "AllowedOrigin") == 0) {
            const char *star = strchr(s, '*');
            if (star && strchr(star + 1, '*'))
                rc = cors_fail(e, "InvalidRequest",
                               "AllowedOrigin \"%.100s\" can not have more than one wildcard.", s);
            else
                json_array_append(origins, v);
        } else if (strcmp(c->name, "AllowedMethod") == 0) {
            if (!method_valid(s))
                rc = cors_fail(e, "InvalidRequest",
                               "Found unsupported HTTP method in CORS config. Unsupported method "
                               "is %.40s",
                               s);
            else
                json_array_append(methods, v);
        } else if (strcmp(c->name, "AllowedHeader") == 0) {
            const char *star = strchr(s, '*');
            if (star && strchr(star + 1, '*'))
                rc = cors_fail(e, "InvalidRequest",
                               "AllowedHeader \"%.100s\" can not have more than one wildcard.", s);
            else
                json_array_append(headers, v);
        } else if (strcmp(c->name, "ExposeHeader") == 0) {
            if (strchr(s, '*'))
                rc = cors_fail(e, "InvalidRequest",
                               "ExposeHeader \"%.100s\" contains wildcard. We currently do not "
                               "support wildcard for ExposeHeader.",
                               s);
            else
                json_array_append(expose, v);
        } else if (strcmp(c->name, "MaxAgeSeconds") == 0) {
            uint64_t age;
            if (sov_str_to_u64(sov_str(s), &age) < 0 || age > INT32_MAX)
                rc = cors_fail(e, "MalformedXML", "%s", malformed);
            else
                json_object_set_new(rule, "max_age", json_integer((json_int_t)age));
        } else if (strcmp(c->name, "ID") == 0) {
            if (strlen(s) > S3_MAX_CORS_ID)
                rc = cors_fail(e, "InvalidArgument", "%s",
                               "The ID of a CORS rule must be at most 255 characters long");
            else
                json_object_set(rule, "id", v);
        } else {
            rc = cors_fail(e, "MalformedXML", "%s", malformed);
        }
        json_decref(v);
        if (rc < 0)
            return rc;
    }
    if (!json_array_size(origins) || !json_array_size(methods))
        return cors_fail(e, "MalformedXML", "%s", malformed);
    return 0;
}

static int cors_parse(S3Req *r, json_t **ret, CorsError *e)
{
    SovXmlLimits lim = {.max_bytes = S3_MAX_XML_BODY, .max_depth = 4, .max_nodes = 16384};
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;
    json_t *doc = json_object(), *rules = json_array();
    int rc = 0;
    size_t n = 0;

    *ret = NULL;
    if (!doc || !rules || json_object_set(doc, "rules", rules) < 0) {
        rc = cors_fail(e, "ServiceUnavailable", "%s", "out of memory");
        goto out;
    }
    if (sov_xml_parse(sov_buf_str(&r->xml), &lim, &root, &err) < 0 ||
        strcmp(root->name, "CORSConfiguration") != 0) {
        rc = cors_fail(e, "MalformedXML", "%s", malformed);
        goto out;
    }
    for (const SovXmlNode *x = root->child; x && rc == 0; x = x->next) {
        if (strcmp(x->name, "CORSRule") != 0) {
            rc = cors_fail(e, "MalformedXML", "%s", malformed);
            break;
        }
        if (++n > S3_MAX_CORS_RULES) {
            rc = cors_fail(e, "InvalidRequest", "%s",
                           "A CORS configuration can have at most 100 rules");
            break;
        }
        json_t *rule = json_object();
        if (!rule || json_array_append_new(rules, rule) < 0)
            rc = cors_fail(e, "ServiceUnavailable", "%s", "out of memory");
        else
            rc = rule_parse(x, rule, e);
    }
    if (rc == 0 && n == 0)
        rc = cors_fail(e, "MalformedXML", "%s", malformed);
    if (rc == 0) {
        *ret = doc;
        doc = NULL;
    }
out:
    json_decref(rules);
    json_decref(doc);
    sov_xml_free(root);
    sov_buf_release(&err);
    return rc;
}

/* ---- GetBucketCors: our JSON form back into XML ---- */

static void elems(SovXmlWriter *w, const char *name, json_t *list)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        sov_xml_elem(w, name, (SovStr){json_string_value(v), json_string_length(v)});
    }
}

static void cors_doc(SovBuf *out, json_t *doc)
{
    SovXmlWriter w;
    size_t i;
    json_t *rule;
    sov_xml_writer_init(&w, out);
    sov_xml_open(&w, "CORSConfiguration", S3_XMLNS);
    json_array_foreach(json_object_get(doc, "rules"), i, rule)
    {
        sov_xml_open(&w, "CORSRule", NULL);
        json_t *id = json_object_get(rule, "id");
        if (json_is_string(id))
            sov_xml_elem(&w, "ID", (SovStr){json_string_value(id), json_string_length(id)});
        elems(&w, "AllowedHeader", json_object_get(rule, "headers"));
        elems(&w, "AllowedMethod", json_object_get(rule, "methods"));
        elems(&w, "AllowedOrigin", json_object_get(rule, "origins"));
        elems(&w, "ExposeHeader", json_object_get(rule, "expose"));
        json_t *age = json_object_get(rule, "max_age");
        if (json_is_integer(age))
            sov_xml_elem_u64(&w, "MaxAgeSeconds", (uint64_t)json_integer_value(age));
        sov_xml_close(&w);
    }
    sov_xml_close(&w);
}

/* ---- the operations ---- */

static void cors_stored(S3Req *r, int status)
{
    if (status == -ENOENT)
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
    else if (status < 0)
        s3_error(r, "InternalError", "The bucket's CORS configuration could not be stored");
    else
        s3_reply_empty(r, strcmp(r->op, "PutBucketCors") == 0 ? 200 : 204);
}

static void cors_put(S3Req *r)
{
    json_t *doc;
    CorsError e;
    if (cors_parse(r, &doc, &e) < 0) {
        s3_error(r, e.code, e.message);
        return;
    }
    s3_bucket_config_set(r, "cors", doc, cors_stored);
}

void s3_bucket_cors(S3Req *r)
{
    json_t *doc;
    if (!s3_bucket_subresource(r, "cors", cors_put, cors_stored, &doc))
        return;
    if (!json_array_size(json_object_get(doc, "rules"))) {
        json_decref(doc);
        s3_error_status(r, 404, "NoSuchCORSConfiguration", "The CORS configuration does not exist");
        return;
    }
    SovBuf out = SOV_BUF_INIT;
    cors_doc(&out, doc);
    json_decref(doc);
    s3_reply_xml(r, 200, &out);
    sov_buf_release(&out);
}

static void forbidden(S3Req *r, const char *message)
{
    s3_error_status(r, 403, "AccessForbidden", message);
}

void s3_cors_preflight(S3Req *r)
{
    const char *origin = s3_header(r, "origin");
    const char *method = s3_header(r, "access-control-request-method");
    const char *req_headers = s3_header(r, "access-control-request-headers");
    if (!origin || !origin[0]) {
        s3_error_status(r, 400, "BadRequest",
                        "Insufficient information. Origin request header needed.");
        return;
    }
    /* A method no rule can name (PATCH, ...) is simply not allowed: 403 below. */
    if (!method || !method[0]) {
        s3_error_status(r, 400, "BadRequest", "Invalid Access-Control-Request-Method: null");
        return;
    }
    S3Bucket b;
    int rc = s3_bucket_get(s3_loop_db(r->loop), r->bucket, &b);
    json_t *doc = NULL;
    if (rc == 0)
        rc = s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "cors", &doc);
    if (rc == -ENOENT) {
        s3_error(r, "NoSuchBucket", "The specified bucket does not exist");
        return;
    }
    if (rc < 0) {
        s3_error(r, "InternalError", "metadata read failed");
        return;
    }
    if (!json_array_size(json_object_get(doc, "rules"))) {
        json_decref(doc);
        forbidden(r, "CORSResponse: CORS is not enabled for this bucket.");
        return;
    }
    json_t *rule = cors_rule_find(doc, origin, method, req_headers);
    if (!rule) {
        json_decref(doc);
        forbidden(r, "CORSResponse: This CORS request is not allowed. This is usually because the "
                     "evalution of Origin, request method / Access-Control-Request-Method or "
                     "Access-Control-Request-Headers are not whitelisted by the resource's CORS "
                     "spec.");
        return;
    }
    rule_headers(r, rule, origin, req_headers, true);
    json_decref(doc);
    s3_reply_empty(r, 200);
}

void s3_cors_headers(S3Req *r)
{
    const char *origin = s3_header(r, "origin");
    if (!origin || !origin[0] || !r->bucket)
        return;
    json_t *doc;
    if (s3_bucket_config_get(s3_loop_db(r->loop), r->bucket, "cors", &doc) < 0 || !doc)
        return; /* no bucket or no rules: the operation answers as it would without CORS */
    SovStr m = sov_http_req_method(r->http);
    char method[8];
    if (m.len < sizeof(method)) {
        memcpy(method, m.ptr, m.len);
        method[m.len] = '\0';
        json_t *rule = cors_rule_find(doc, origin, method, NULL);
        if (rule)
            rule_headers(r, rule, origin, NULL, false);
    }
    json_decref(doc);
}
