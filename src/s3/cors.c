/* SPDX-License-Identifier: Apache-2.0 */
/* CORS: bucket rules and preflight requests. */
#include "s3.h"

void s3_bucket_cors(S3Req *r)
{
    s3_error(r, "NotImplemented", "CORS is not implemented by sov-s3 yet");
}

void s3_cors_preflight(S3Req *r)
{
    s3_error(r, "NotImplemented", "CORS is not implemented by sov-s3 yet");
}

void s3_cors_headers(S3Req *r)
{
    (void)r;
}
