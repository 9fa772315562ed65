/* SPDX-License-Identifier: Apache-2.0 */
/* sov-s3's CORS rules on their own: the CORSConfiguration document into our JSON form and back,
 * its checks, and the matching of origins, methods and requested headers (one '*' wildcard).
 * cors.c is included to reach its statics; the request plumbing it calls is stubbed out, since
 * only the pure functions run here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/s3/cors.c"

/* ---- stubs of what the operations call (never reached by these tests) ---- */

void s3_error(S3Req *r, const char *code, const char *message)
{
    (void)r, (void)code, (void)message;
    fail();
}

void s3_error_status(S3Req *r, int status, const char *code, const char *message)
{
    (void)r, (void)status, (void)code, (void)message;
    fail();
}

void s3_reply_xml(S3Req *r, int status, SovBuf *doc)
{
    (void)r, (void)status, (void)doc;
    fail();
}

void s3_reply_empty(S3Req *r, int status)
{
    (void)r, (void)status;
    fail();
}

char *s3_header(S3Req *r, const char *name)
{
    (void)r, (void)name;
    return NULL;
}

int s3_require_bucket(S3Req *r, S3Bucket *ret)
{
    (void)r, (void)ret;
    return -ENOENT;
}

int s3_bucket_subresource(S3Req *r, const char *name, void (*put)(S3Req *r),
                          void (*stored)(S3Req *r, int status), json_t **doc)
{
    (void)r, (void)name, (void)put, (void)stored;
    *doc = NULL;
    fail();
    return 0;
}

int s3_bucket_get(sqlite3 *db, const char *name, S3Bucket *ret)
{
    (void)db, (void)name, (void)ret;
    return -ENOENT;
}

int s3_bucket_config_get(sqlite3 *db, const char *bucket, const char *name, json_t **ret)
{
    (void)db, (void)bucket, (void)name;
    *ret = NULL;
    return -ENOENT;
}

void s3_bucket_config_set(S3Req *r, const char *name, json_t *value,
                          void (*done)(S3Req *r, int status))
{
    (void)r, (void)name, (void)done;
    json_decref(value);
    fail();
}

int s3_body_xml(S3Req *r, void (*done)(S3Req *r))
{
    (void)r, (void)done;
    return -EIO;
}

sqlite3 *s3_loop_db(S3Loop *l)
{
    (void)l;
    return NULL;
}

/* ---- helpers ---- */

/* Parses doc as a PutBucketCors body: 0 with *ret, or < 0 with the error code in *code. */
static int parse(const char *doc, json_t **ret, const char **code)
{
    S3Req r = {0};
    CorsError e = {0};
    sov_buf_puts(&r.xml, doc);
    int rc = cors_parse(&r, ret, &e);
    sov_buf_release(&r.xml);
    if (rc < 0)
        *code = e.code;
    return rc;
}

static const char sample[] =
    "<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<CORSRule><ID>site</ID><AllowedOrigin>https://www.example.com</AllowedOrigin>"
    "<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
    "<AllowedHeader>content-type</AllowedHeader><AllowedHeader>x-amz-*</AllowedHeader>"
    "<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>"
    "<CORSRule><AllowedOrigin> http://*.example.org </AllowedOrigin>"
    "<AllowedMethod>GET</AllowedMethod></CORSRule>"
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod>"
    "<AllowedHeader>*</AllowedHeader></CORSRule>"
    "</CORSConfiguration>";

/* ---- tests ---- */

static void test_wildcard(void **st)
{
    (void)st;
    const char *o = "https://a.example.com";
    assert_true(wildcard_match("https://a.example.com", o, strlen(o), false));
    assert_false(wildcard_match("https://A.example.com", o, strlen(o), false));
    assert_true(wildcard_match("https://*.example.com", o, strlen(o), false));
    assert_true(wildcard_match("*", o, strlen(o), false));
    assert_true(wildcard_match("https://*", o, strlen(o), false));
    assert_true(wildcard_match("*.com", o, strlen(o), false));
    assert_false(wildcard_match("https://*.example.org", o, strlen(o), false));
    /* The prefix and the suffix may not overlap. */
    assert_false(wildcard_match("https://a.*a.example.com", o, strlen(o), false));
    assert_false(wildcard_match("https://a.example.co", o, strlen(o), false));
    /* Headers compare without case, and only the first n bytes of s count. */
    assert_true(wildcard_match("X-Amz-*", "x-amz-date, more", 10, true));
    assert_false(wildcard_match("x-amz-date", "x-amz-date, more", 12, true));
}

static void test_parse_and_match(void **st)
{
    (void)st;
    json_t *doc;
    const char *code = NULL;
    assert_int_equal(parse(sample, &doc, &code), 0);
    json_t *rules = json_object_get(doc, "rules");
    assert_int_equal(json_array_size(rules), 3);
    json_t *r0 = json_array_get(rules, 0), *r1 = json_array_get(rules, 1),
           *r2 = json_array_get(rules, 2);
    assert_string_equal(json_string_value(json_object_get(r0, "id")), "site");
    assert_int_equal(json_integer_value(json_object_get(r0, "max_age")), 600);
    /* Surrounding white space is not part of an origin. */
    assert_string_equal(json_string_value(json_array_get(json_object_get(r1, "origins"), 0)),
                        "http://*.example.org");

    assert_ptr_equal(cors_rule_find(doc, "https://www.example.com", "PUT", NULL), r0);
    assert_ptr_equal(
        cors_rule_find(doc, "https://www.example.com", "GET", " Content-Type ,x-amz-date"), r0);
    assert_null(cors_rule_find(doc, "https://www.example.com", "GET", "authorization"));
    assert_null(cors_rule_find(doc, "https://www.example.com", "DELETE", NULL));
    assert_ptr_equal(cors_rule_find(doc, "http://cdn.example.org", "GET", NULL), r1);
    assert_null(cors_rule_find(doc, "http://example.org", "GET", NULL));
    assert_null(cors_rule_find(doc, "http://cdn.example.org", "GET", "x-custom"));
    /* The third rule takes any origin and header, for HEAD only. */
    assert_ptr_equal(cors_rule_find(doc, "https://www.example.com", "HEAD", "x-custom"), r2);
    assert_ptr_equal(cors_rule_find(doc, "null", "HEAD", NULL), r2);
    assert_null(cors_rule_find(doc, "null", "GET", NULL));

    assert_false(rule_any_origin(r0, "https://www.example.com"));
    assert_false(rule_any_origin(r1, "http://cdn.example.org"));
    assert_true(rule_any_origin(r2, "https://www.example.com"));
    json_decref(doc);
}

static void test_document_round_trip(void **st)
{
    (void)st;
    json_t *doc, *again;
    const char *code = NULL;
    SovBuf out = SOV_BUF_INIT;
    assert_int_equal(parse(sample, &doc, &code), 0);
    cors_doc(&out, doc);
    assert_non_null(strstr(out.ptr, "<ID>site</ID>"));
    assert_non_null(strstr(out.ptr, "<MaxAgeSeconds>600</MaxAgeSeconds>"));
    assert_int_equal(parse(out.ptr, &again, &code), 0);
    assert_true(json_equal(doc, again));
    json_decref(again);
    json_decref(doc);
    sov_buf_release(&out);
}

static void test_refused_documents(void **st)
{
    (void)st;
    static const struct {
        const char *doc, *code;
    } cases[] = {
        {"<CORSConfiguration/>", "MalformedXML"},
        {"<Other><CORSRule/></Other>", "MalformedXML"},
        {"<CORSConfiguration><CORSRule>", "MalformedXML"},
        {"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
         "</CORSConfiguration>",
         "MalformedXML"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"
         "</CORSConfiguration>",
         "MalformedXML"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod><Unknown>x</Unknown></CORSRule></CORSConfiguration>",
         "MalformedXML"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule>"
         "</CORSConfiguration>",
         "MalformedXML"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>",
         "InvalidRequest"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>http://*.*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
         "InvalidRequest"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod><AllowedHeader>**</AllowedHeader></CORSRule>"
         "</CORSConfiguration>",
         "InvalidRequest"},
        {"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
         "<AllowedMethod>GET</AllowedMethod><ExposeHeader>x-*</ExposeHeader></CORSRule>"
         "</CORSConfiguration>",
         "InvalidRequest"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        json_t *doc = NULL;
        const char *code = NULL;
        assert_int_equal(parse(cases[i].doc, &doc, &code), -EINVAL);
        assert_null(doc);
        assert_string_equal(code, cases[i].code);
    }
}

static void test_rule_limit(void **st)
{
    (void)st;
    SovBuf b = SOV_BUF_INIT;
    json_t *doc = NULL;
    const char *code = NULL;
    sov_buf_puts(&b, "<CORSConfiguration>");
    for (int i = 0; i < 100; i++)
        sov_buf_printf(&b,
                       "<CORSRule><AllowedOrigin>https://h%d</AllowedOrigin>"
                       "<AllowedMethod>GET</AllowedMethod></CORSRule>",
                       i);
    SovBuf full = SOV_BUF_INIT;
    sov_buf_printf(&full, "%s</CORSConfiguration>", b.ptr);
    assert_int_equal(parse(full.ptr, &doc, &code), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "rules")), 100);
    json_decref(doc);
    doc = NULL;
    sov_buf_reset(&full);
    sov_buf_printf(&full,
                   "%s<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
                   "</CORSRule></CORSConfiguration>",
                   b.ptr);
    assert_int_equal(parse(full.ptr, &doc, &code), -EINVAL);
    assert_string_equal(code, "InvalidRequest");
    sov_buf_release(&full);
    sov_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_parse_and_match),
        cmocka_unit_test(test_document_round_trip),
        cmocka_unit_test(test_refused_documents),
        cmocka_unit_test(test_rule_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
