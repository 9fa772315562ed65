/* SPDX-License-Identifier: Apache-2.0 */
/* Lifecycle rules, storage classes and restores. */
#include "s3.h"

void s3_bucket_lifecycle(S3Req *r)
{
    s3_error(r, "NotImplemented", "Lifecycle rules are not implemented by sov-s3 yet");
}

void s3_object_restore(S3Req *r)
{
    s3_error(r, "NotImplemented", "RestoreObject is not implemented by sov-s3 yet");
}

int s3_restore_check(S3Req *r, const S3Object *o)
{
    (void)r, (void)o;
    return 0;
}

void s3_restore_headers(S3Req *r, const S3Object *o)
{
    (void)r, (void)o;
}

int s3_lifecycle_start(S3Server *srv, uv_loop_t *loop)
{
    (void)srv, (void)loop;
    return 0;
}

void s3_lifecycle_stop(S3Server *srv)
{
    (void)srv;
}
