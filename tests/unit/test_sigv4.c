/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov-s3's SigV4 verification and aws-chunked decoder: the example requests and
 * signatures published in the AWS S3 API reference (header, presigned and chunked forms, key
 * AKIAIOSFODNN7EXAMPLE, 2013-05-24, us-east-1), values derived with an independent signer for
 * what those examples do not cover, and the refusals a client can provoke. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/buf.h"
#include "sov/macro.h"
#include "sigv4.h"

#define AK           "AKIAIOSFODNN7EXAMPLE"
#define SECRET       "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define REGION       "us-east-1"
#define T0           ((time_t)1369353600) /* 20130524T000000Z */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SCOPE        "20130524/us-east-1/s3/aws4_request"
#define CRED         "Credential=" AK "/" SCOPE

/* The AWS "GET Object" example (with a Range header). */
#define GET_SIG  "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
#define GET_SH   "host;range;x-amz-content-sha256;x-amz-date"
#define GET_AUTH "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature=" GET_SIG

/* The AWS chunked upload example: seed and chunk signatures. */
#define SEED_SIG   "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define CHUNK1_SIG "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define CHUNK2_SIG "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define FINAL_SIG  "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

typedef struct TestReq {
    S3Header h[80];
    size_t n;
    S3AuthRequest rq;
} TestReq;

static const char *lookup_secret = SECRET;

static int lookup(const char *access_key, char *ret_secret, size_t cap, void *ud)
{
    if (strcmp(access_key, "BROKENKEY") == 0)
        return -EIO;
    if (strcmp(access_key, AK) != 0)
        return -ENOENT;
    snprintf(ret_secret, cap, "%s", lookup_secret);
    return 0;
}

static void req_init(TestReq *t, const char *method, const char *path, const char *query)
{
    memset(t, 0, sizeof(*t));
    t->rq.method = sov_str(method);
    t->rq.path = sov_str(path);
    t->rq.query = sov_str(query);
    t->rq.now = T0;
}

static void req_add(TestReq *t, const char *name, const char *value)
{
    assert_true(t->n < ELEMENTSOF(t->h));
    t->h[t->n].name = sov_str(name);
    t->h[t->n].value = sov_str(value);
    t->n++;
}

/* Replaces the value of the first header called name (or adds it). */
static void req_set(TestReq *t, const char *name, const char *value)
{
    for (size_t i = 0; i < t->n; i++) {
        if (sov_str_eq_ci(t->h[i].name, sov_str(name))) {
            t->h[i].value = sov_str(value);
            return;
        }
    }
    req_add(t, name, value);
}

static void req_del(TestReq *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) {
        if (sov_str_eq_ci(t->h[i].name, sov_str(name))) {
            memmove(&t->h[i], &t->h[i + 1], (t->n - i - 1) * sizeof(t->h[0]));
            t->n--;
            return;
        }
    }
}

static int req_verify(TestReq *t, const char *region, S3AuthResult *res)
{
    t->rq.headers = t->h;
    t->rq.nheaders = t->n;
    return s3_sigv4_verify(&t->rq, region, lookup, NULL, res);
}

static void expect_fail(TestReq *t, const char *region, int want_r, const char *want_code,
                        int want_status)
{
    S3AuthResult res;
    int r = req_verify(t, region, &res);

    if (r != want_r || !res.error_code || strcmp(res.error_code, want_code) != 0 ||
        res.http_status != want_status)
        fail_msg("got r=%d %s %d (%s), want r=%d %s %d", r, res.error_code ? res.error_code : "-",
                 res.http_status, res.message, want_r, want_code, want_status);
    assert_true(strlen(res.message) > 0);
    /* Nothing but the error is handed out for a refused request. */
    assert_int_equal(res.access_key[0], '\0');
    assert_int_equal(res.seed_signature[0], '\0');
}

static void get_example(TestReq *t, const char *auth)
{
    req_init(t, "GET", "/test.txt", "");
    req_add(t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(t, "Range", "bytes=0-9");
    req_add(t, "x-amz-content-sha256", EMPTY_SHA256);
    req_add(t, "x-amz-date", "20130524T000000Z");
    req_add(t, "Authorization", auth);
}

static void test_uri_encode(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(s3_uri_encode(&b, SOV_STR("AZaz09-_.~ /$+=&\xc3\xa9"), false), 0);
    assert_string_equal(b.ptr, "AZaz09-_.~%20%2F%24%2B%3D%26%C3%A9");
    sov_buf_reset(&b);
    assert_int_equal(s3_uri_encode(&b, SOV_STR("/a b/c%d/"), true), 0);
    assert_string_equal(b.ptr, "/a%20b/c%25d/");
    sov_buf_reset(&b);
    assert_int_equal(s3_uri_encode(&b, SOV_STR(""), true), 0);
    assert_int_equal(b.len, 0);
    /* Appends, and respects the buffer's bound. */
    assert_int_equal(s3_uri_encode(&b, SOV_STR("x"), true), 0);
    assert_int_equal(s3_uri_encode(&b, SOV_STR("y"), true), 0);
    assert_string_equal(b.ptr, "xy");
    sov_buf_release(&b);
    sov_buf_init(&b, 4);
    assert_int_equal(s3_uri_encode(&b, SOV_STR("  "), false), -E2BIG);
    sov_buf_release(&b);
}

static void test_uri_decode(void **state)
{
    SovBuf b = SOV_BUF_INIT;

    assert_int_equal(s3_uri_decode(&b, SOV_STR("%41%2f%2F+b%c3%A9"), false), 0);
    assert_string_equal(b.ptr, "A//+b\xc3\xa9");
    sov_buf_reset(&b);
    assert_int_equal(s3_uri_decode(&b, SOV_STR("a+b%2B"), true), 0);
    assert_string_equal(b.ptr, "a b+");
    sov_buf_reset(&b);
    assert_int_equal(s3_uri_decode(&b, SOV_STR("%"), false), -EINVAL);
    assert_int_equal(s3_uri_decode(&b, SOV_STR("ab%4"), false), -EINVAL);
    assert_int_equal(s3_uri_decode(&b, SOV_STR("%zz"), false), -EINVAL);
    assert_int_equal(s3_uri_decode(&b, SOV_STR("%00"), false), -EINVAL);
    assert_int_equal(s3_uri_decode(&b, (SovStr){"a\0b", 3}, false), -EINVAL);
    sov_buf_release(&b);
}

static void test_get_object_example(void **state)
{
    TestReq t;
    S3AuthResult res;

    get_example(&t, GET_AUTH);
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    assert_int_equal(res.kind, S3_AUTH_HEADER);
    assert_string_equal(res.access_key, AK);
    assert_int_equal(res.payload, S3_PAYLOAD_SHA256);
    assert_string_equal(res.payload_sha256, EMPTY_SHA256);
    assert_string_equal(res.seed_signature, GET_SIG);
    assert_string_equal(res.amz_date, "20130524T000000Z");
    assert_string_equal(res.scope, SCOPE);
    assert_null(res.error_code);

    /* Blanks after the commas, around the whole value, and upper-case hex are all accepted. */
    get_example(&t,
                "  AWS4-HMAC-SHA256  " CRED ", SignedHeaders=" GET_SH
                ",   Signature=F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41 ");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* Parameters in another order. */
    get_example(&t, "AWS4-HMAC-SHA256 Signature=" GET_SIG ", SignedHeaders=" GET_SH ", " CRED);
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* Header names are case-insensitive and values are trimmed. */
    get_example(&t, GET_AUTH);
    req_del(&t, "Range");
    req_add(&t, "RANGE", "   bytes=0-9\t");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* x-amz-content-sha256 may be left unsigned (a value derived independently). */
    get_example(&t, "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;range;x-amz-date,Signature="
                    "b4904babad39b29ebe2eaefecf4c7037be9c6362be0aebe68ea5c700020e5085");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    req_set(&t, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    /* The clock may be off by up to 15 minutes either way. */
    get_example(&t, GET_AUTH);
    t.rq.now = T0 + S3_MAX_SKEW_S;
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.now = T0 - S3_MAX_SKEW_S;
    assert_int_equal(req_verify(&t, REGION, &res), 0);
}

static void test_put_object_example(void **state)
{
    static const char auth[] =
        "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-storage-class,Signature="
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
    const char *paths[] = {"/test%24file.text", "/test$file.text"};

    for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
        TestReq t;
        S3AuthResult res;

        req_init(&t, "PUT", paths[i], "");
        req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
        req_add(&t, "Date", "Fri, 24 May 2013 00:00:00 GMT");
        req_add(&t, "Authorization", auth);
        req_add(&t, "x-amz-date", "20130524T000000Z");
        req_add(&t, "x-amz-storage-class", "REDUCED_REDUNDANCY");
        req_add(&t, "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        assert_int_equal(req_verify(&t, REGION, &res), 0);
        assert_int_equal(res.payload, S3_PAYLOAD_SHA256);
        assert_string_equal(res.payload_sha256,
                            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");

        /* Another method, another body hash or another key is another signature. */
        t.rq.method = SOV_STR("POST");
        expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
        t.rq.method = SOV_STR("PUT");
        t.rq.path = SOV_STR("/test%25file.text");
        expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
        t.rq.path = sov_str(paths[i]);
        req_set(&t, "x-amz-content-sha256", EMPTY_SHA256);
        expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    }
}

static void test_bucket_examples(void **state)
{
    TestReq t;
    S3AuthResult res;

    /* GET Bucket lifecycle: a parameter without a value. */
    req_init(&t, "GET", "/", "lifecycle");
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "x-amz-date", "20130524T000000Z");
    req_add(&t, "x-amz-content-sha256", EMPTY_SHA256);
    req_add(&t, "Authorization",
            "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
            "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* An empty path is "/"; "lifecycle=" canonicalises like "lifecycle". */
    t.rq.path = SOV_STR("");
    t.rq.query = SOV_STR("lifecycle=");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.query = SOV_STR("");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);

    /* GET Bucket (List Objects): parameters are sorted, whatever order they came in. */
    req_init(&t, "GET", "/", "max-keys=2&prefix=J");
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "x-amz-date", "20130524T000000Z");
    req_add(&t, "x-amz-content-sha256", EMPTY_SHA256);
    req_add(&t, "Authorization",
            "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.query = SOV_STR("prefix=J&max-keys=2");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.query = SOV_STR("prefix=%4A&&max-keys=2&");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.query = SOV_STR("prefix=K&max-keys=2");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
}

/* Values derived with an independent signer: header whitespace, repeated headers, encoded path
 * and query characters, '+' as a space in the query and literal in the path. */
static void test_canonicalisation(void **state)
{
    TestReq t;
    S3AuthResult res;

    req_init(&t, "GET", "/my%20key/a+b.txt", "prefix=a+b&x=%C3%A9%2F%2B&empty");
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "X-Amz-Meta-Note", "  a   b\t c  ");
    req_add(&t, "x-amz-meta-note", "second");
    req_add(&t, "x-amz-content-sha256", EMPTY_SHA256);
    req_add(&t, "x-amz-date", "20130524T000000Z");
    req_add(&t, "Authorization",
            "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date;"
            "x-amz-meta-note,Signature="
            "9f0440af4c7aabb085f01e1cf7a12d51143315861b13028abe4820aa2163d7f1");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* The same request spelt differently on the wire. */
    t.rq.path = SOV_STR("/my key/a%2Bb.txt");
    t.rq.query = SOV_STR("x=\xc3\xa9/%2b&empty=&prefix=a%20b");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* The order of repeated headers matters. */
    t.h[1].value = SOV_STR("second");
    t.h[2].value = SOV_STR("a b c");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    t.h[1].value = SOV_STR("a b c");
    t.h[2].value = SOV_STR("second");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    /* A literal '+' in the path is not a space. */
    t.rq.path = SOV_STR("/my key/a b.txt");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    /* Bad escapes are refused, not guessed at. */
    t.rq.path = SOV_STR("/my%2");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    t.rq.path = SOV_STR("/my");
    t.rq.query = SOV_STR("a=%G0");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
}

static void test_presigned_example(void **state)
{
    static const char query[] =
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
        "X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    TestReq t;
    S3AuthResult res;
    char q[1024];

    req_init(&t, "GET", "/test.txt", query);
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    t.rq.now = T0 + 3600;
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    assert_int_equal(res.kind, S3_AUTH_PRESIGNED);
    assert_int_equal(res.payload, S3_PAYLOAD_UNSIGNED);
    assert_string_equal(res.access_key, AK);
    assert_string_equal(res.amz_date, "20130524T000000Z");
    /* Valid until the last second of X-Amz-Expires, not after. */
    t.rq.now = T0 + 86400;
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.now = T0 + 86401;
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    req_verify(&t, REGION, &res);
    assert_string_equal(res.message, "Request has expired");
    /* Not valid before its date, beyond the allowed skew. */
    t.rq.now = T0 - S3_MAX_SKEW_S;
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    t.rq.now = T0 - S3_MAX_SKEW_S - 1;
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    t.rq.now = T0;

    /* Another path or host, or an unsigned x-amz-* header. */
    t.rq.path = SOV_STR("/test2.txt");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    t.rq.path = SOV_STR("/test.txt");
    req_set(&t, "Host", "evil.example");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    req_set(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "x-amz-acl", "public-read");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    req_del(&t, "x-amz-acl");
    /* An extra parameter is signed too. */
    snprintf(q, sizeof(q), "%s&acl", query);
    t.rq.query = sov_str(q);
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);

    /* Expiry out of range, missing or repeated parameters, session tokens. */
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                         "X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                         "X-Amz-Expires=0&X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                         "X-Amz-Expires=-5&X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                         "X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    snprintf(q, sizeof(q), "%s&X-Amz-Date=20130524T000000Z", query);
    t.rq.query = sov_str(q);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    snprintf(q, sizeof(q), "%s&X-Amz-Security-Token=abc", query);
    t.rq.query = sov_str(q);
    expect_fail(&t, REGION, -ENOTSUP, "NotImplemented", 501);
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                         "X-Amz-Expires=10&X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    t.rq.query = SOV_STR("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                         "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=2013-05-24&"
                         "X-Amz-Expires=10&X-Amz-SignedHeaders=host&X-Amz-Signature=" GET_SIG);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationQueryParametersError", 400);
    /* The wrong region is named in the error. */
    t.rq.query = sov_str(query);
    expect_fail(&t, "eu-central-1", -EINVAL, "AuthorizationQueryParametersError", 400);
    /* A presigned URL and an Authorization header at once. */
    req_add(&t, "Authorization", GET_AUTH);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
}

static void test_anonymous(void **state)
{
    TestReq t;
    S3AuthResult res;

    req_init(&t, "GET", "/bucket/key", "versionId=3&x=y");
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "x-amz-date", "garbage");
    assert_int_equal(req_verify(&t, REGION, &res), 0);
    assert_int_equal(res.kind, S3_AUTH_ANONYMOUS);
    assert_int_equal(res.access_key[0], '\0');
    /* Signature Version 2 is refused rather than treated as anonymous. */
    t.rq.query = SOV_STR("AWSAccessKeyId=AKIA&Expires=1&Signature=abc");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
}

static void test_refusals(void **state)
{
    TestReq t;
    S3AuthResult res;

    /* Tampered signature. */
    get_example(&t, "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature="
                    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    /* Tampered signed header. */
    get_example(&t, GET_AUTH);
    req_set(&t, "Range", "bytes=0-10");
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    /* The right key with the wrong secret. */
    get_example(&t, GET_AUTH);
    lookup_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    lookup_secret = SECRET;
    /* An unknown access key. */
    get_example(&t, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLF/" SCOPE
                    ",SignedHeaders=" GET_SH ",Signature=" GET_SIG);
    expect_fail(&t, REGION, -EACCES, "InvalidAccessKeyId", 403);
    /* A lookup failure is the server's problem. */
    get_example(&t, "AWS4-HMAC-SHA256 Credential=BROKENKEY/" SCOPE ",SignedHeaders=" GET_SH
                    ",Signature=" GET_SIG);
    req_verify(&t, REGION, &res);
    assert_int_equal(req_verify(&t, REGION, &res), -EIO);
    assert_string_equal(res.error_code, "InternalError");
    assert_int_equal(res.http_status, 500);
    /* Clock skew. */
    get_example(&t, GET_AUTH);
    t.rq.now = T0 + S3_MAX_SKEW_S + 1;
    expect_fail(&t, REGION, -EACCES, "RequestTimeTooSkewed", 403);
    t.rq.now = T0 - S3_MAX_SKEW_S - 1;
    expect_fail(&t, REGION, -EACCES, "RequestTimeTooSkewed", 403);
    /* Another region: the message says which one is expected. */
    get_example(&t, GET_AUTH);
    expect_fail(&t, "eu-central-1", -EINVAL, "AuthorizationHeaderMalformed", 400);
    req_verify(&t, "eu-central-1", &res);
    assert_non_null(strstr(res.message, "'us-east-1' is wrong; expecting 'eu-central-1'"));
    /* Date: missing, malformed, impossible, or only the Date header (then it is the date). */
    get_example(&t, GET_AUTH);
    req_del(&t, "x-amz-date");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    req_add(&t, "Date", "Fri, 24 May 2013 00:00:00 GMT");
    /* The date is right now, but the signed x-amz-date is gone. */
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    req_set(&t, "Date", "Fri, 24 May 2013 00:00:00");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    get_example(&t, GET_AUTH);
    req_set(&t, "x-amz-date", "20130230T000000Z");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    req_set(&t, "x-amz-date", "20130524T240000Z");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    req_set(&t, "x-amz-date", "2013O524T000000Z");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    get_example(&t, GET_AUTH);
    req_add(&t, "x-amz-date", "20130524T000000Z");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    /* Credential date other than the request's. */
    get_example(&t, GET_AUTH);
    req_set(&t, "x-amz-date", "20130525T000000Z");
    t.rq.now = T0 + 86400;
    expect_fail(&t, REGION, -EINVAL, "AuthorizationHeaderMalformed", 400);
    /* Payload hash: missing, malformed, not implemented. */
    get_example(&t, GET_AUTH);
    req_del(&t, "x-amz-content-sha256");
    expect_fail(&t, REGION, -EINVAL, "MissingSecurityHeader", 400);
    req_add(&t, "x-amz-content-sha256", "abc");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    req_set(&t, "x-amz-content-sha256",
            "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    req_set(&t, "x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
    expect_fail(&t, REGION, -ENOTSUP, "NotImplemented", 501);
    /* Session tokens are not supported. */
    get_example(&t, GET_AUTH);
    req_add(&t, "x-amz-security-token", "token");
    expect_fail(&t, REGION, -ENOTSUP, "NotImplemented", 501);
    /* An x-amz-* header that is not signed. */
    get_example(&t, GET_AUTH);
    req_add(&t, "X-Amz-Copy-Source", "/other/key");
    expect_fail(&t, REGION, -EACCES, "AccessDenied", 403);
    /* Two Authorization headers. */
    get_example(&t, GET_AUTH);
    req_add(&t, "authorization", GET_AUTH);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
}

static void test_malformed_authorization(void **state)
{
    static const struct {
        const char *auth;
        int r;
        const char *code;
    } cases[] = {
        {"", -EINVAL, "InvalidArgument"},
        {"Bearer abc", -EINVAL, "InvalidArgument"},
        {"AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", -EINVAL, "InvalidArgument"},
        {"AWS4-HMAC-SHA256", -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256X " CRED ",SignedHeaders=" GET_SH ",Signature=" GET_SIG, -EINVAL,
         "InvalidArgument"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH, -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",Signature=" GET_SIG, -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 SignedHeaders=" GET_SH ",Signature=" GET_SIG, -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED "," CRED ",SignedHeaders=" GET_SH ",Signature=" GET_SIG, -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature=" GET_SIG ",Foo=bar",
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature", -EINVAL,
         "AuthorizationHeaderMalformed"},
        /* Credential shapes. */
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3,SignedHeaders=" GET_SH
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 Credential=" AK "/" SCOPE "/x,SignedHeaders=" GET_SH
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130524/us-east-1/ec2/aws4_request,SignedHeaders=" GET_SH ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130524/us-east-1/s3/aws5_request,SignedHeaders=" GET_SH ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130523/us-east-1/s3/aws4_request,SignedHeaders=" GET_SH ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 Credential=/" SCOPE ",SignedHeaders=" GET_SH ",Signature=" GET_SIG,
         -EACCES, "InvalidAccessKeyId"},
        /* Signed header lists: unsorted, upper case, duplicated, empty entries, no host. */
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=range;host;x-amz-content-sha256;x-amz-date"
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=Host;range;x-amz-content-sha256;x-amz-date"
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;host;range;x-amz-content-sha256;x-amz-date"
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;;range;x-amz-content-sha256;x-amz-date"
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=,Signature=" GET_SIG, -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=range;x-amz-content-sha256;x-amz-date"
         ",Signature=" GET_SIG,
         -EINVAL, "AuthorizationHeaderMalformed"},
        /* Signatures that are not 64 hex digits. */
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature=abc", -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH ",Signature=" GET_SIG "0", -EINVAL,
         "AuthorizationHeaderMalformed"},
        {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=" GET_SH
         ",Signature=x0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
         -EINVAL, "AuthorizationHeaderMalformed"},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        TestReq t;
        get_example(&t, cases[i].auth);
        expect_fail(&t, REGION, cases[i].r, cases[i].code, cases[i].r == -EACCES ? 403 : 400);
    }
}

static void test_limits(void **state)
{
    TestReq t;
    S3AuthResult res;
    SovBuf b = SOV_BUF_INIT;

    /* More than 64 signed headers. */
    assert_int_equal(sov_buf_puts(&b, "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host"), 0);
    for (int i = 0; i < 64; i++)
        assert_int_equal(sov_buf_printf(&b, ";x%02d", i), 0);
    assert_int_equal(sov_buf_puts(&b, ",Signature=" GET_SIG), 0);
    get_example(&t, b.ptr);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationHeaderMalformed", 400);
    /* An Authorization header longer than 4 KiB. */
    sov_buf_reset(&b);
    assert_int_equal(sov_buf_puts(&b, GET_AUTH), 0);
    while (b.len <= 4096)
        assert_int_equal(sov_buf_puts(&b, "          "), 0);
    assert_int_equal(sov_buf_puts(&b, ",x=y"), 0);
    get_example(&t, b.ptr);
    expect_fail(&t, REGION, -EINVAL, "AuthorizationHeaderMalformed", 400);
    /* More than 100 query parameters, a long query, a long path, a long signed header. */
    sov_buf_reset(&b);
    for (int i = 0; i < 101; i++)
        assert_int_equal(sov_buf_printf(&b, "p%d&", i), 0);
    get_example(&t, GET_AUTH);
    t.rq.query = sov_buf_str(&b);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    req_del(&t, "Authorization");
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    sov_buf_reset(&b);
    while (b.len <= 16384)
        assert_int_equal(sov_buf_puts(&b, "a=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"), 0);
    get_example(&t, GET_AUTH);
    t.rq.query = sov_buf_str(&b);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    sov_buf_reset(&b);
    while (b.len <= 8192)
        assert_int_equal(sov_buf_puts(&b, "/abcdefgh"), 0);
    get_example(&t, GET_AUTH);
    t.rq.path = sov_buf_str(&b);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    sov_buf_reset(&b);
    while (b.len <= 16384)
        assert_int_equal(sov_buf_puts(&b, "bytes=0-9,"), 0);
    get_example(&t, GET_AUTH);
    req_set(&t, "Range", b.ptr);
    expect_fail(&t, REGION, -EINVAL, "InvalidArgument", 400);
    /* Just under the limits is fine (and merely a wrong signature). */
    get_example(&t, GET_AUTH);
    sov_buf_reset(&b);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sov_buf_printf(&b, "p%d&", i), 0);
    t.rq.query = sov_buf_str(&b);
    expect_fail(&t, REGION, -EACCES, "SignatureDoesNotMatch", 403);
    /* A region the server is misconfigured with. */
    get_example(&t, GET_AUTH);
    assert_int_equal(req_verify(&t, "", &res), -EINVAL);
    assert_int_equal(res.http_status, 500);
    sov_buf_release(&b);
}

/* Collects what a decoder hands out. */
typedef struct Sink {
    SovBuf data;
    size_t calls;
    int fail_after; /* out returns -EIO once this many bytes arrived, 0 = never */
} Sink;

static int sink_out(void *ud, const char *p, size_t n)
{
    Sink *s = ud;

    assert_true(n > 0);
    s->calls++;
    if (s->fail_after && s->data.len + n >= (size_t)s->fail_after)
        return -EIO;
    return sov_buf_append(&s->data, p, n);
}

static void chunk_append(SovBuf *b, size_t size, const char *sig)
{
    assert_int_equal(sov_buf_printf(b, "%zx;chunk-signature=%s\r\n", size, sig), 0);
    for (size_t i = 0; i < size; i++)
        assert_int_equal(sov_buf_putc(b, 'a'), 0);
    assert_int_equal(sov_buf_puts(b, "\r\n"), 0);
}

/* The AWS chunked upload example body: 64 KiB and 1 KiB of 'a', then the final chunk. */
static void example_body(SovBuf *b)
{
    sov_buf_init(b, 0);
    chunk_append(b, 65536, CHUNK1_SIG);
    chunk_append(b, 1024, CHUNK2_SIG);
    chunk_append(b, 0, FINAL_SIG);
    assert_int_equal(b->len, 66824); /* the example's Content-Length */
}

static void chunked_auth(S3AuthResult *res)
{
    TestReq t;

    req_init(&t, "PUT", "/examplebucket/chunkObject.txt", "");
    req_add(&t, "Host", "s3.amazonaws.com");
    req_add(&t, "x-amz-date", "20130524T000000Z");
    req_add(&t, "x-amz-storage-class", "REDUCED_REDUNDANCY");
    req_add(&t, "Authorization",
            "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=content-encoding;content-length;host;"
            "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=" SEED_SIG);
    req_add(&t, "x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    req_add(&t, "Content-Encoding", "aws-chunked");
    req_add(&t, "x-amz-decoded-content-length", "66560");
    req_add(&t, "Content-Length", "66824");
    assert_int_equal(req_verify(&t, REGION, res), 0);
}

/* Decodes body fed in pieces of step bytes; returns finish()'s result (or the first feed
 * error) and leaves the output in sink. */
static int decode(const S3AuthResult *auth, const char *body, size_t len, size_t step, Sink *sink,
                  const char **ret_code)
{
    S3ChunkDecoder *d = s3_chunked_new(auth);
    int r = 0;

    assert_non_null(d);
    sov_buf_init(&sink->data, 0);
    sink->calls = 0;
    for (size_t off = 0; off < len && r == 0; off += step)
        r = s3_chunked_feed(d, body + off, SOV_MIN(step, len - off), sink_out, sink);
    if (r == 0)
        r = s3_chunked_finish(d);
    assert_int_equal(s3_chunked_decoded_bytes(d), sink->data.len);
    *ret_code = s3_chunked_error(d, NULL);
    if (r < 0) {
        const char *msg = NULL;
        assert_non_null(s3_chunked_error(d, &msg));
        assert_non_null(msg);
        /* A failed decoder stays failed. */
        assert_int_equal(s3_chunked_feed(d, "0", 1, sink_out, sink), -EBADMSG);
    }
    s3_chunked_free(d);
    return r;
}

static void test_chunked_example(void **state)
{
    static const size_t steps[] = {1, 7, 4096, 65536 + 100, 1 << 20};
    S3AuthResult auth;
    SovBuf body;

    chunked_auth(&auth);
    assert_int_equal(auth.payload, S3_PAYLOAD_STREAMING);
    assert_string_equal(auth.seed_signature, SEED_SIG);
    assert_string_equal(auth.amz_date, "20130524T000000Z");
    assert_string_equal(auth.scope, SCOPE);
    example_body(&body);

    for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
        Sink sink = {0};
        const char *code;

        assert_int_equal(decode(&auth, body.ptr, body.len, steps[i], &sink, &code), 0);
        assert_null(code);
        assert_int_equal(sink.data.len, 66560);
        for (size_t k = 0; k < sink.data.len; k++)
            if (sink.data.ptr[k] != 'a')
                fail_msg("byte %zu is %d", k, sink.data.ptr[k]);
        /* Streamed, not buffered: byte-by-byte input gives byte-by-byte output. */
        if (steps[i] == 1)
            assert_int_equal(sink.calls, 66560);
        sov_buf_release(&sink.data);
    }
    sov_buf_release(&body);
}

static void test_chunked_refusals(void **state)
{
    S3AuthResult auth;
    SovBuf body, b;
    Sink sink = {0};
    const char *code;
    size_t steps[] = {1, 1 << 20};

    chunked_auth(&auth);
    example_body(&body);

    for (size_t s = 0; s < ELEMENTSOF(steps); s++) {
        size_t step = steps[s];

        /* Truncated anywhere: incomplete. */
        const size_t cuts[] = {0, 3, 88, 1000, 65536 + 88, 65536 + 89, 66824 - 86, 66824 - 1};
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
            assert_int_equal(decode(&auth, body.ptr, cuts[i], step, &sink, &code), -EBADMSG);
            assert_string_equal(code, "IncompleteBody");
            sov_buf_release(&sink.data);
        }
        /* A tampered chunk signature, or tampered data. */
        sov_buf_init(&b, 0);
        assert_int_equal(sov_buf_append(&b, body.ptr, body.len), 0);
        b.ptr[23] ^= 1; /* 'd' -> 'e' */
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "SignatureDoesNotMatch");
        sov_buf_release(&sink.data);
        b.ptr[23] ^= 1;
        b.ptr[88 + 65535] = 'b';
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "SignatureDoesNotMatch");
        sov_buf_release(&sink.data);
        b.ptr[88 + 65535] = 'a';
        /* The last chunk's signature is checked too. */
        b.ptr[b.len - 10] ^= 1;
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "SignatureDoesNotMatch");
        assert_int_equal(sink.data.len, 66560);
        sov_buf_release(&sink.data);
        b.ptr[b.len - 10] ^= 1;
        /* A chunk's data not followed by CRLF. */
        b.ptr[88 + 65536 + 1] = ' ';
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
        b.ptr[88 + 65536 + 1] = '\n';
        /* Something else than CRLF after the final chunk's header. */
        b.ptr[b.len - 2] = 'x';
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
        b.ptr[b.len - 2] = '\r';
        /* Data after the final chunk. */
        assert_int_equal(sov_buf_puts(&b, "x"), 0);
        assert_int_equal(decode(&auth, b.ptr, b.len, step, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
        sov_buf_release(&b);
    }

    /* Chunks in another order or with another seed. */
    sov_buf_init(&b, 0);
    chunk_append(&b, 1024, CHUNK2_SIG);
    chunk_append(&b, 65536, CHUNK1_SIG);
    chunk_append(&b, 0, FINAL_SIG);
    assert_int_equal(decode(&auth, b.ptr, b.len, 4096, &sink, &code), -EBADMSG);
    assert_string_equal(code, "SignatureDoesNotMatch");
    sov_buf_release(&sink.data);
    auth.seed_signature[0] = auth.seed_signature[0] == '4' ? '5' : '4';
    assert_int_equal(decode(&auth, body.ptr, body.len, 4096, &sink, &code), -EBADMSG);
    assert_string_equal(code, "SignatureDoesNotMatch");
    sov_buf_release(&sink.data);
    chunked_auth(&auth);
    sov_buf_release(&b);

    /* Garbage chunk headers. */
    static const char *const bad[] = {
        "zz;chunk-signature=" FINAL_SIG "\r\n\r\n",
        "0;chunk-signature=" FINAL_SIG "\n\r\n",
        "0;chunk-signature=" FINAL_SIG "x\r\n\r\n",
        "0;chunk-signature=abc\r\n\r\n",
        "0;chunk-signature=" FINAL_SIG ";a=b\r\n\r\n",
        "0\r\n\r\n",
        "0;chunk-signaturf=" FINAL_SIG "\r\n\r\n",
        " 0;chunk-signature=" FINAL_SIG "\r\n\r\n",
        "10000000000000000;chunk-signature=" FINAL_SIG "\r\n\r\n",
        "ffffffffffffffff;chunk-signature=" FINAL_SIG "\r\n\r\n",
        "\r\n",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(decode(&auth, bad[i], strlen(bad[i]), 1, &sink, &code), -EBADMSG);
        if (strcmp(code, "InvalidRequest") != 0)
            fail_msg("case %zu: %s", i, code);
        sov_buf_release(&sink.data);
    }
    /* A header line that never ends is cut off at 4 KiB. */
    sov_buf_init(&b, 0);
    while (b.len < 5000)
        assert_int_equal(sov_buf_puts(&b, "0000000000"), 0);
    assert_int_equal(decode(&auth, b.ptr, b.len, 100, &sink, &code), -EBADMSG);
    assert_string_equal(code, "InvalidRequest");
    sov_buf_release(&sink.data);
    sov_buf_release(&b);

    /* The output callback's failure is passed on. */
    sink.fail_after = 100;
    assert_int_equal(decode(&auth, body.ptr, body.len, 4096, &sink, &code), -EIO);
    sov_buf_release(&sink.data);
    sink.fail_after = 0;

    /* Only streaming payloads have a decoder. */
    auth.payload = S3_PAYLOAD_UNSIGNED;
    assert_null(s3_chunked_new(&auth));
    sov_buf_release(&body);
}

static void test_unsigned_trailer(void **state)
{
    static const struct {
        const char *trailer;
        const char *value;
    } sums[] = {
        /* Checksums of "hello world", derived independently. */
        {"x-amz-checksum-crc32", "DUoRhQ=="},
        {"x-amz-checksum-crc32c", "yZRlqg=="},
        {"x-amz-checksum-crc64nvme", "jSnVw/bqjr4="},
        {"x-amz-checksum-sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="},
    };
    TestReq t;
    S3AuthResult auth;
    Sink sink = {0};
    const char *code;
    char body[512];

    /* The request itself, signed independently. */
    req_init(&t, "PUT", "/bucket/obj", "");
    req_add(&t, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&t, "x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    req_add(&t, "x-amz-date", "20130524T000000Z");
    req_add(&t, "x-amz-trailer", "x-amz-checksum-crc32");
    req_add(&t, "x-amz-decoded-content-length", "11");
    req_add(&t, "content-encoding", "aws-chunked");
    req_add(&t, "Authorization",
            "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=content-encoding;host;x-amz-content-sha256;"
            "x-amz-date;x-amz-decoded-content-length;x-amz-trailer,Signature="
            "92d8b5b1cdbc257ef2e9d052ecefb12a7910398a818538e777b9d5893afa2b84");
    assert_int_equal(req_verify(&t, REGION, &auth), 0);
    assert_int_equal(auth.payload, S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
    assert_string_equal(auth.trailer, "x-amz-checksum-crc32");
    req_set(&t, "x-amz-trailer", "x-amz-checksum-sha1");
    expect_fail(&t, REGION, -ENOTSUP, "NotImplemented", 501);
    req_set(&t, "x-amz-trailer", "x-amz-checksum-md4");
    expect_fail(&t, REGION, -EINVAL, "InvalidRequest", 400);

    for (size_t i = 0; i < ELEMENTSOF(sums); i++) {
        snprintf(auth.trailer, sizeof(auth.trailer), "%s", sums[i].trailer);
        for (size_t step = 1; step <= 512; step *= 8) {
            snprintf(body, sizeof(body), "6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\n%s:%s\r\n\r\n",
                     sums[i].trailer, sums[i].value);
            assert_int_equal(decode(&auth, body, strlen(body), step, &sink, &code), 0);
            assert_int_equal(sink.data.len, 11);
            assert_memory_equal(sink.data.ptr, "hello world", 11);
            sov_buf_release(&sink.data);
            /* Without the final empty line. */
            assert_int_equal(decode(&auth, body, strlen(body) - 2, step, &sink, &code), 0);
            sov_buf_release(&sink.data);
            /* Other data, same checksum. */
            body[3] = 'j';
            assert_int_equal(decode(&auth, body, strlen(body), step, &sink, &code), -EBADMSG);
            assert_string_equal(code, "BadDigest");
            sov_buf_release(&sink.data);
        }
        /* The announced trailer is missing, another one comes, or it is repeated. */
        snprintf(body, sizeof(body), "5\r\nhello\r\n0\r\n\r\n");
        assert_int_equal(decode(&auth, body, strlen(body), 3, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
        snprintf(body, sizeof(body), "0\r\nx-amz-checksum-other:AAAA\r\n\r\n");
        assert_int_equal(decode(&auth, body, strlen(body), 3, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
        snprintf(body, sizeof(body), "b\r\nhello world\r\n0\r\n%s:%s\r\n%s:%s\r\n\r\n",
                 sums[i].trailer, sums[i].value, sums[i].trailer, sums[i].value);
        assert_int_equal(decode(&auth, body, strlen(body), 3, &sink, &code), -EBADMSG);
        assert_string_equal(code, "InvalidRequest");
        sov_buf_release(&sink.data);
    }

    /* No trailer announced: none may come. */
    auth.trailer[0] = '\0';
    snprintf(body, sizeof(body), "5\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(decode(&auth, body, strlen(body), 1, &sink, &code), 0);
    sov_buf_release(&sink.data);
    snprintf(body, sizeof(body), "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n");
    assert_int_equal(decode(&auth, body, strlen(body), 1, &sink, &code), -EBADMSG);
    assert_string_equal(code, "InvalidRequest");
    sov_buf_release(&sink.data);
    /* Unsigned chunks carry no signature... but garbage is still garbage. */
    snprintf(body, sizeof(body), "5x\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(decode(&auth, body, strlen(body), 1, &sink, &code), -EBADMSG);
    assert_string_equal(code, "InvalidRequest");
    sov_buf_release(&sink.data);
    snprintf(body, sizeof(body), "5\r\nhello\r\n0\r\n");
    assert_int_equal(decode(&auth, body, strlen(body), 1, &sink, &code), -EBADMSG);
    assert_string_equal(code, "IncompleteBody");
    sov_buf_release(&sink.data);
}

/* The CRC-32C and CRC-64/NVME check values of the CRC catalogue ("123456789"). */
static void test_trailer_check_values(void **state)
{
    static const struct {
        const char *trailer;
        const char *value;
    } sums[] = {
        {"x-amz-checksum-crc32", "y/Q5Jg=="},         /* cbf43926 */
        {"x-amz-checksum-crc32c", "4waSgw=="},        /* e3069283 */
        {"x-amz-checksum-crc64nvme", "rosUhgp5mIg="}, /* ae8b14860a799888 */
    };
    S3AuthResult auth = {.payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER};
    Sink sink = {0};
    const char *code;
    char body[256];

    for (size_t i = 0; i < ELEMENTSOF(sums); i++) {
        snprintf(auth.trailer, sizeof(auth.trailer), "%s", sums[i].trailer);
        snprintf(body, sizeof(body), "9\r\n123456789\r\n0\r\n%s: %s\r\n\r\n", sums[i].trailer,
                 sums[i].value);
        assert_int_equal(decode(&auth, body, strlen(body), 2, &sink, &code), 0);
        sov_buf_release(&sink.data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_uri_decode),
        cmocka_unit_test(test_get_object_example),
        cmocka_unit_test(test_put_object_example),
        cmocka_unit_test(test_bucket_examples),
        cmocka_unit_test(test_canonicalisation),
        cmocka_unit_test(test_presigned_example),
        cmocka_unit_test(test_anonymous),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_malformed_authorization),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_chunked_example),
        cmocka_unit_test(test_chunked_refusals),
        cmocka_unit_test(test_unsigned_trailer),
        cmocka_unit_test(test_trailer_check_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
