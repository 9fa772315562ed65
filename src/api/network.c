/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the network API lands. */
#include "api.h"

void api_network_routes(Api *a) {}
int api_network_start(Api *a, SovBuf *err)
{
    return 0;
}
void api_network_stop(Api *a) {}
