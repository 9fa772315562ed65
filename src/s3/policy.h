/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket policies: parsing, validation and evaluation of IAM policy documents. A pure module (no
 * store, no loop): the caller hands in the policy text and a description of the request (the
 * action, the resource ARN, the principal and the condition keys), and gets Allow, Deny or no
 * decision back, explicit Deny winning over Allow as in IAM. */
#ifndef SOV_S3_POLICY_H
#define SOV_S3_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "sov/buf.h"

#define S3_POLICY_MAX_BYTES      (20 * 1024) /* as AWS for bucket policies */
#define S3_POLICY_MAX_STATEMENTS 100
#define S3_POLICY_MAX_VALUES     100 /* entries of one Action, Resource, Principal or condition */
#define S3_POLICY_MAX_CONDITIONS 32  /* condition keys of one statement, all operators together */

/* A parsed, validated policy. Invariant: every statement has an Effect, a principal element,
 * an action element and a resource element, every resource names the bucket it was parsed for,
 * and every condition value parses for its operator. */
typedef struct S3Policy S3Policy;

/* Parses and validates policy text for bucket. 0 with *ret, or -EINVAL with the reason (the
 * message of a MalformedPolicy error) in err, or -ENOMEM. */
int s3_policy_parse(const char *text, size_t len, const char *bucket, S3Policy **ret, SovBuf *err);
S3Policy *s3_policy_free(S3Policy *p);

/* Does some Allow statement grant everyone ("*", or an account pattern that is not one fixed
 * account) without a condition that pins the caller to fixed addresses or accounts? */
bool s3_policy_is_public(const S3Policy *p);

/* One request condition key and its value (keys compare case-insensitively). */
typedef struct S3PolicyKey {
    const char *name;
    const char *value;
} S3PolicyKey;

typedef struct S3PolicyRequest {
    const char *action;    /* "s3:GetObject" */
    const char *resource;  /* "arn:aws:s3:::bucket" or "arn:aws:s3:::bucket/key" */
    const char *principal; /* the caller's account, "" when anonymous */
    const S3PolicyKey *keys;
    size_t nkeys;
    /* RestrictPublicBuckets: a public policy grants nothing to this caller (its Deny
     * statements still apply) */
    bool ignore_allow;
} S3PolicyRequest;

typedef enum S3PolicyDecision {
    S3_POLICY_NONE = 0, /* no statement applies: implicit deny, other grants may allow */
    S3_POLICY_ALLOW = 1,
    S3_POLICY_DENY = 2,
} S3PolicyDecision;

S3PolicyDecision s3_policy_evaluate(const S3Policy *p, const S3PolicyRequest *q);

/* Wildcard match as IAM does for actions and ARNs: '*' any run of characters (also '/'), '?'
 * one character; nocase for action names. */
bool s3_policy_glob(const char *pattern, const char *s, bool nocase);

#endif
