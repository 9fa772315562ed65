/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-s3's bucket policy parser and evaluator: any bytes are parsed as a
 * policy for bucket "b"; an accepted policy is evaluated against fixed requests. Invariants
 * (abort on violation): a refusal always says why, a caller whose Allow statements are ignored
 * is never allowed, and a Deny for everyone is a Deny for each caller. The input also drives
 * the wildcard matcher, which must agree with itself under case folding. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const S3PolicyKey keys[] = {
    {"aws:SourceIp", "127.0.0.1"},
    {"aws:SecureTransport", "false"},
    {"aws:CurrentTime", "2026-11-26T10:00:00.000Z"},
    {"aws:EpochTime", "1795600000"},
    {"aws:username", "admin"},
    {"s3:prefix", "home/alice/"},
    {"s3:delimiter", "/"},
    {"s3:max-keys", "100"},
    {"s3:x-amz-acl", "public-read"},
};

static void evaluate(const S3Policy *p)
{
    static const char *const actions[] = {"s3:GetObject", "s3:ListBucket", "s3:PutObject",
                                          "s3:DeleteObjectVersion"};
    static const char *const resources[] = {"arn:aws:s3:::b", "arn:aws:s3:::b/k",
                                            "arn:aws:s3:::b/dir/x?y*z"};
    static const char *const callers[] = {"", "admin", "other"};
    for (size_t a = 0; a < sizeof(actions) / sizeof(actions[0]); a++) {
        for (size_t r = 0; r < sizeof(resources) / sizeof(resources[0]); r++) {
            S3PolicyDecision seen[3];
            for (size_t c = 0; c < 3; c++) {
                S3PolicyRequest q = {.action = actions[a],
                                     .resource = resources[r],
                                     .principal = callers[c],
                                     .keys = keys,
                                     .nkeys = sizeof(keys) / sizeof(keys[0])};
                seen[c] = s3_policy_evaluate(p, &q);
                if (seen[c] != S3_POLICY_NONE && seen[c] != S3_POLICY_ALLOW &&
                    seen[c] != S3_POLICY_DENY)
                    abort();
                q.ignore_allow = true;
                S3PolicyDecision restricted = s3_policy_evaluate(p, &q);
                if (restricted == S3_POLICY_ALLOW)
                    abort();
                /* ignoring the grants leaves the denials exactly as they were */
                if ((restricted == S3_POLICY_DENY) != (seen[c] == S3_POLICY_DENY))
                    abort();
                q.nkeys = 0; /* without any condition key: must not crash */
                (void)s3_policy_evaluate(p, &q);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    S3Policy *p = NULL;
    SovBuf err = SOV_BUF_INIT;
    int rc = s3_policy_parse((const char *)data, size, "b", &p, &err);
    if (rc == 0) {
        if (!p || err.len)
            abort();
        evaluate(p);
        (void)s3_policy_is_public(p);
    } else if (p || (rc == -EINVAL && (!err.ptr || !err.len))) {
        abort(); /* a refusal leaves nothing behind and always says why */
    }
    s3_policy_free(p);
    sov_buf_release(&err);

    /* wildcard matching: pattern and subject split at the first NUL */
    if (size > 1 && size < 512) {
        char buf[512];
        memcpy(buf, data, size);
        buf[size] = '\0';
        const char *pat = buf, *subj = memchr(buf, '\0', size) ? buf + strlen(buf) + 1 : buf;
        if (subj > buf + size)
            subj = buf + size;
        bool exact = s3_policy_glob(pat, subj, false), folded = s3_policy_glob(pat, subj, true);
        if (exact && !folded)
            abort(); /* case-insensitive matching accepts everything exact matching does */
        char lower[512];
        size_t n = strlen(subj);
        for (size_t i = 0; i <= n; i++)
            lower[i] = (char)tolower((unsigned char)subj[i]);
        if (folded != s3_policy_glob(pat, lower, true))
            abort();
    }
    return 0;
}
