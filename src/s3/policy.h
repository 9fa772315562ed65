/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket policies: parsing, validation and evaluation of IAM policy documents. */
#ifndef SOV_S3_POLICY_H
#define SOV_S3_POLICY_H

#endif
