/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket policies (src/s3/policy.c): what the parser refuses and why, and how evaluation
 * decides (explicit Deny over Allow, principals, wildcards, Not* elements, conditions). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define BUCKET "photos"

static S3Policy *parse_ok(const char *text)
{
    S3Policy *p = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = s3_policy_parse(text, strlen(text), BUCKET, &p, &err);
    if (rc != 0)
        fail_msg("policy refused: %s\n%s", err.ptr ? err.ptr : "?", text);
    sov_buf_release(&err);
    return p;
}

/* Parses a policy that must be refused; the message must contain want. */
static void parse_bad(const char *text, const char *want)
{
    S3Policy *p = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = s3_policy_parse(text, strlen(text), BUCKET, &p, &err);
    if (rc != -EINVAL)
        fail_msg("policy accepted (rc %d): %s", rc, text);
    assert_null(p);
    assert_non_null(err.ptr);
    if (!strstr(err.ptr, want))
        fail_msg("message \"%s\" lacks \"%s\" for %s", err.ptr, want, text);
    sov_buf_release(&err);
}

/* A one-statement policy around a statement body. */
static char *one(const char *stmt)
{
    static char buf[8192];
    snprintf(buf, sizeof(buf), "{\"Version\":\"2012-10-17\",\"Statement\":[{%s}]}", stmt);
    return buf;
}

static S3PolicyDecision eval(const S3Policy *p, const char *principal, const char *action,
                             const char *resource, const S3PolicyKey *keys, size_t nkeys)
{
    S3PolicyRequest q = {.action = action,
                         .resource = resource,
                         .principal = principal,
                         .keys = keys,
                         .nkeys = nkeys};
    return s3_policy_evaluate(p, &q);
}

static void glob_matching(void **state)
{
    (void)state;
    assert_true(s3_policy_glob("*", "", false));
    assert_true(s3_policy_glob("a*c", "abbbc", false));
    assert_true(s3_policy_glob("a?c", "abc", false));
    assert_false(s3_policy_glob("a?c", "ac", false));
    assert_true(s3_policy_glob("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y/z", false));
    assert_false(s3_policy_glob("arn:aws:s3:::b/*", "arn:aws:s3:::bb/x", false));
    assert_true(s3_policy_glob("s3:get*", "s3:GetObject", true));
    assert_false(s3_policy_glob("s3:get*", "s3:GetObject", false));
    assert_true(s3_policy_glob("*a*b*c*", "xxaxxbxxcxx", false));
    assert_false(s3_policy_glob("*a*b*c*d", "xxaxxbxxcxx", false));
    /* a pathological pattern stays cheap */
    char s[4001];
    memset(s, 'a', 4000);
    s[4000] = '\0';
    assert_false(s3_policy_glob("*a*a*a*a*a*a*a*a*b", s, false));
}

static void refuses_malformed_documents(void **state)
{
    (void)state;
    parse_bad("", "first byte");
    parse_bad("[1,2]", "first byte");
    parse_bad("{\"Statement\": [", "invalid Json");
    parse_bad("{\"Version\":\"2012-10-17\"}", "Missing required field Statement");
    parse_bad("{\"Version\":\"2099-01-01\",\"Statement\":[]}", "Invalid Version");
    parse_bad("{\"Statement\":[]}", "Missing required field Statement");
    parse_bad("{\"Bogus\":1,\"Statement\":[]}", "Unknown field Bogus");
    parse_bad("{\"Statement\":[{\"Effect\":\"Allow\"}],\"Statement\":[]}", "invalid Json");
    parse_bad(one("\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::"
                  "photos/*\""),
              "Missing required field Effect");
    parse_bad(one("\"Effect\":\"Maybe\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "Invalid effect");
    parse_bad(one("\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "Missing required field Principal");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"someone\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "Invalid principal");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::a b:root\"},"
                  "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::photos/*\""),
              "Invalid principal");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:FlyAway\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "invalid action");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"ec2:*\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "invalid action");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":[],"
                  "\"Resource\":\"arn:aws:s3:::photos/*\""),
              "invalid action");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::other/*\""),
              "invalid resource");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"*\""),
              "invalid resource");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\""),
              "Missing required field Resource");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\",\"Condition\":{\"StringSorta\":"
                  "{\"s3:prefix\":\"a\"}}"),
              "Invalid Condition type");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\",\"Condition\":{\"IpAddress\":"
                  "{\"aws:SourceIp\":\"300.1.1.1/8\"}}"),
              "Invalid value");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\",\"Condition\":{\"DateLessThan\":"
                  "{\"aws:CurrentTime\":\"yesterday\"}}"),
              "Invalid value");
    parse_bad(one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
                  "\"Resource\":\"arn:aws:s3:::photos/*\",\"Condition\":{\"StringEquals\":"
                  "{\"custom:thing\":\"x\"}}"),
              "invalid condition key");
    parse_bad("{\"Statement\":[{\"Sid\":\"a\",\"Effect\":\"Allow\",\"Principal\":\"*\","
              "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::photos/*\"},"
              "{\"Sid\":\"a\",\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
              "\"Resource\":\"arn:aws:s3:::photos/*\"}]}",
              "unique");
    /* over the size limit, though valid JSON */
    size_t n = S3_POLICY_MAX_BYTES + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    int off = snprintf(big, n + 1, "{\"Id\":\"");
    memset(big + off, 'x', n - (size_t)off - 2);
    memcpy(big + n - 2, "\"}", 3);
    parse_bad(big, "maximum allowed document size");
    free(big);
}

static void accepts_the_usual_shapes(void **state)
{
    (void)state;
    const char *const ok[] = {
        /* Statement as one object, Principal forms, bucket and object resources */
        "{\"Version\":\"2012-10-17\",\"Id\":\"x\",\"Statement\":{\"Effect\":\"Allow\","
        "\"Principal\":{\"AWS\":\"*\"},\"Action\":\"s3:*\",\"Resource\":[\"arn:aws:s3:::photos\","
        "\"arn:aws:s3:::photos/*\"]}}",
        "{\"Statement\":[{\"Sid\":\"1\",\"Effect\":\"Deny\",\"NotPrincipal\":{\"AWS\":["
        "\"arn:aws:iam::admin:root\",\"other\"]},\"NotAction\":[\"s3:Get*\",\"s3:List?ucket\"],"
        "\"NotResource\":\"arn:aws:s3:::photos/public/*\"}]}",
        "{\"Version\":\"2008-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\","
        "\"Action\":\"*\",\"Resource\":\"arn:aws:s3:::phot*\","
        "\"Condition\":{\"IpAddress\":{\"aws:SourceIp\":[\"10.0.0.0/8\",\"2001:db8::/32\"]},"
        "\"Bool\":{\"aws:SecureTransport\":true},\"NumericLessThanEquals\":{\"s3:max-keys\":10},"
        "\"DateGreaterThan\":{\"aws:CurrentTime\":\"2020-01-01T00:00:00Z\"},"
        "\"ForAnyValue:StringLike\":{\"s3:prefix\":[\"a/*\",\"b/*\"]},"
        "\"StringEqualsIgnoreCaseIfExists\":{\"s3:x-amz-acl\":\"private\"},"
        "\"Null\":{\"s3:delimiter\":\"false\"}}}]}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        s3_policy_free(parse_ok(ok[i]));
}

static void deny_wins_and_principals_match(void **state)
{
    (void)state;
    S3Policy *p = parse_ok(
        "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\","
        "\"Resource\":\"arn:aws:s3:::photos/*\"},{\"Effect\":\"Deny\",\"Principal\":\"*\","
        "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::photos/secret/*\"},"
        "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::other:root\"},"
        "\"Action\":[\"s3:PutObject\",\"s3:ListBucket\"],\"Resource\":[\"arn:aws:s3:::photos\","
        "\"arn:aws:s3:::photos/*\"]}]}");
    assert_true(s3_policy_is_public(p));
    assert_int_equal(eval(p, "", "s3:GetObject", "arn:aws:s3:::photos/a.jpg", NULL, 0),
                     S3_POLICY_ALLOW);
    assert_int_equal(eval(p, "", "s3:GetObject", "arn:aws:s3:::photos/secret/a", NULL, 0),
                     S3_POLICY_DENY);
    assert_int_equal(eval(p, "other", "s3:GetObject", "arn:aws:s3:::photos/secret/a", NULL, 0),
                     S3_POLICY_DENY);
    /* actions compare case-insensitively, ARNs do not */
    assert_int_equal(eval(p, "", "S3:GETOBJECT", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_ALLOW);
    assert_int_equal(eval(p, "", "s3:PutObject", "arn:aws:s3:::photos/a", NULL, 0), S3_POLICY_NONE);
    assert_int_equal(eval(p, "other", "s3:PutObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_ALLOW);
    assert_int_equal(eval(p, "third", "s3:PutObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_NONE);
    assert_int_equal(eval(p, "other", "s3:ListBucket", "arn:aws:s3:::photos", NULL, 0),
                     S3_POLICY_ALLOW);
    /* RestrictPublicBuckets: nothing allowed, Deny still denies */
    S3PolicyRequest q = {.action = "s3:GetObject",
                         .resource = "arn:aws:s3:::photos/a",
                         .principal = "",
                         .ignore_allow = true};
    assert_int_equal(s3_policy_evaluate(p, &q), S3_POLICY_NONE);
    q.resource = "arn:aws:s3:::photos/secret/a";
    assert_int_equal(s3_policy_evaluate(p, &q), S3_POLICY_DENY);
    s3_policy_free(p);
    /* an anonymous caller is matched by "*" only */
    p = parse_ok(one("\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"admin\"]},"
                     "\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::photos/*\""));
    assert_false(s3_policy_is_public(p));
    assert_int_equal(eval(p, "", "s3:GetObject", "arn:aws:s3:::photos/a", NULL, 0), S3_POLICY_NONE);
    assert_int_equal(eval(p, "admin", "s3:GetObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_ALLOW);
    s3_policy_free(p);
}

static void not_elements(void **state)
{
    (void)state;
    S3Policy *p = parse_ok(one("\"Effect\":\"Deny\",\"NotPrincipal\":{\"AWS\":\"admin\"},"
                               "\"NotAction\":\"s3:Get*\",\"NotResource\":"
                               "\"arn:aws:s3:::photos/open/*\""));
    /* everyone but admin is denied everything but reads outside open/ */
    assert_int_equal(eval(p, "other", "s3:PutObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_DENY);
    assert_int_equal(eval(p, "", "s3:DeleteObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_DENY);
    assert_int_equal(eval(p, "admin", "s3:PutObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_NONE);
    assert_int_equal(eval(p, "other", "s3:GetObject", "arn:aws:s3:::photos/a", NULL, 0),
                     S3_POLICY_NONE);
    assert_int_equal(eval(p, "other", "s3:PutObject", "arn:aws:s3:::photos/open/a", NULL, 0),
                     S3_POLICY_NONE);
    s3_policy_free(p);
}

#define ALLOW_IF(cond)                                                                             \
    one("\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":[\"arn:aws:"    \
        "s3:::photos\",\"arn:aws:s3:::photos/*\"],\"Condition\":" cond)

static S3PolicyDecision with_key(const S3Policy *p, const char *name, const char *value)
{
    S3PolicyKey k = {name, value};
    return eval(p, "", "s3:ListBucket", "arn:aws:s3:::photos", &k, value ? 1 : 0);
}

static void string_and_ip_conditions(void **state)
{
    (void)state;
    S3Policy *p = parse_ok(ALLOW_IF("{\"IpAddress\":{\"aws:SourceIp\":\"127.0.0.1/32\"}}"));
    assert_false(s3_policy_is_public(p));
    assert_int_equal(with_key(p, "aws:SourceIp", "127.0.0.1"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "AWS:SOURCEIP", "127.0.0.1"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "aws:SourceIp", "127.0.0.2"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:SourceIp", "::1"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:SourceIp", NULL), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"NotIpAddress\":{\"aws:SourceIp\":[\"10.0.0.0/8\",\"fd00::/8\"]}}"));
    assert_true(s3_policy_is_public(p));
    assert_int_equal(with_key(p, "aws:SourceIp", "10.200.1.1"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:SourceIp", "fd12::1"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:SourceIp", "11.0.0.1"), S3_POLICY_ALLOW);
    /* a negated operator holds when the key is absent */
    assert_int_equal(with_key(p, "aws:SourceIp", NULL), S3_POLICY_ALLOW);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"StringLike\":{\"s3:prefix\":[\"home/\",\"home/*\"]}}"));
    assert_int_equal(with_key(p, "s3:prefix", "home/alice/"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:prefix", "etc/"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "s3:prefix", NULL), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"StringNotEquals\":{\"s3:x-amz-acl\":\"public-read\"}}"));
    assert_int_equal(with_key(p, "s3:x-amz-acl", "public-read"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "s3:x-amz-acl", "private"), S3_POLICY_ALLOW);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"StringEqualsIgnoreCase\":{\"aws:username\":\"Admin\"}}"));
    assert_int_equal(with_key(p, "aws:username", "ADMIN"), S3_POLICY_ALLOW);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"StringEqualsIfExists\":{\"s3:delimiter\":\"/\"}}"));
    assert_int_equal(with_key(p, "s3:delimiter", NULL), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:delimiter", "/"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:delimiter", "|"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"Null\":{\"s3:delimiter\":\"true\"}}"));
    assert_int_equal(with_key(p, "s3:delimiter", NULL), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:delimiter", "/"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"ForAllValues:StringEquals\":{\"s3:prefix\":[\"a\",\"b\"]}}"));
    assert_int_equal(with_key(p, "s3:prefix", NULL), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:prefix", "b"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:prefix", "c"), S3_POLICY_NONE);
    s3_policy_free(p);
}

static void numeric_bool_and_date_conditions(void **state)
{
    (void)state;
    S3Policy *p = parse_ok(ALLOW_IF("{\"NumericLessThanEquals\":{\"s3:max-keys\":\"100\"}}"));
    assert_int_equal(with_key(p, "s3:max-keys", "100"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:max-keys", "7"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:max-keys", "101"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "s3:max-keys", "lots"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"NumericGreaterThan\":{\"s3:max-keys\":5}}"));
    assert_int_equal(with_key(p, "s3:max-keys", "6"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "s3:max-keys", "5"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"Bool\":{\"aws:SecureTransport\":\"false\"}}"));
    assert_int_equal(with_key(p, "aws:SecureTransport", "false"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "aws:SecureTransport", "true"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"DateLessThan\":{\"aws:CurrentTime\":\"2030-01-01T00:00:00Z\"},"
                          "\"DateGreaterThanEquals\":{\"aws:CurrentTime\":\"2020-06-01\"}}"));
    assert_int_equal(with_key(p, "aws:CurrentTime", "2026-11-26T10:00:00.123Z"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "aws:CurrentTime", "2031-01-01T00:00:00Z"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:CurrentTime", "2020-05-31T23:59:59Z"), S3_POLICY_NONE);
    assert_int_equal(with_key(p, "aws:CurrentTime", "2020-06-01T00:00:00Z"), S3_POLICY_ALLOW);
    /* offsets move the instant */
    assert_int_equal(with_key(p, "aws:CurrentTime", "2020-06-01T01:00:00+02:00"), S3_POLICY_NONE);
    s3_policy_free(p);

    p = parse_ok(ALLOW_IF("{\"DateGreaterThan\":{\"aws:EpochTime\":\"1600000000\"}}"));
    assert_int_equal(with_key(p, "aws:EpochTime", "1700000000"), S3_POLICY_ALLOW);
    assert_int_equal(with_key(p, "aws:EpochTime", "1500000000"), S3_POLICY_NONE);
    s3_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(glob_matching),
        cmocka_unit_test(refuses_malformed_documents),
        cmocka_unit_test(accepts_the_usual_shapes),
        cmocka_unit_test(deny_wins_and_principals_match),
        cmocka_unit_test(not_elements),
        cmocka_unit_test(string_and_ip_conditions),
        cmocka_unit_test(numeric_bool_and_date_conditions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
