/* SPDX-License-Identifier: Apache-2.0 */
/* Access control: who may do what to a bucket and its objects. */
#include <errno.h>
#include <string.h>

#include "s3.h"

int s3_access_check(S3Req *r, const S3Bucket *b)
{
    if (!r->key || strcmp(b->owner, r->key->account) != 0) {
        s3_error(r, "AccessDenied", "Access Denied");
        return -EACCES;
    }
    return 0;
}

int s3_access_object(S3Req *r, const S3Object *o)
{
    (void)o;
    if (!r->object_acl_pending)
        return 0;
    s3_error(r, "AccessDenied", "Access Denied");
    return -EACCES;
}

int s3_access_copy_source(S3Req *r, const S3Bucket *b, const S3Object *o)
{
    (void)o;
    return r->key && strcmp(b->owner, r->key->account) == 0 ? 0 : -EACCES;
}

int s3_acl_collect(S3Req *r, json_t *meta, const char **code)
{
    (void)r, (void)meta, (void)code;
    return 0;
}

int s3_bucket_initial_config(S3Req *r, json_t **ret, const char **code)
{
    (void)r, (void)code;
    *ret = json_object();
    return *ret ? 0 : -ENOMEM;
}

static void not_yet(S3Req *r)
{
    s3_error(r, "NotImplemented", "This bucket configuration is not implemented by sov-s3 yet");
}

void s3_bucket_policy(S3Req *r) { not_yet(r); }
void s3_bucket_policy_status(S3Req *r) { not_yet(r); }
void s3_bucket_acl(S3Req *r) { not_yet(r); }
void s3_object_acl(S3Req *r) { not_yet(r); }
void s3_bucket_public_access_block(S3Req *r) { not_yet(r); }
