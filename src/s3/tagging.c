/* SPDX-License-Identifier: Apache-2.0 */
/* Object and bucket tagging. */
#include "s3.h"

int s3_tagging_collect(S3Req *r, json_t *meta, const char **code)
{
    (void)r, (void)meta, (void)code;
    return 0;
}

void s3_bucket_tagging(S3Req *r)
{
    s3_error(r, "NotImplemented", "Tagging is not implemented by sov-s3 yet");
}

void s3_object_tagging(S3Req *r)
{
    s3_error(r, "NotImplemented", "Tagging is not implemented by sov-s3 yet");
}
