/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the compute API lands. */
#include "api.h"

void api_compute_routes(Api *a) {}
int api_compute_start(Api *a, SovBuf *err)
{
    return 0;
}
void api_compute_stop(Api *a) {}
