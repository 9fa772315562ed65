/* SPDX-License-Identifier: Apache-2.0 */
/* Bucket policies: parsing, validation and evaluation of IAM policy documents. */
#include "policy.h"
