/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the agent API lands. */
#include <errno.h>

#include "api.h"

void api_agent_routes(Api *a) {}
int api_agent_start(Api *a, SovBuf *err)
{
    return 0;
}
void api_agent_stop(Api *a) {}
int api_schedule(Api *a, const char *zone, int64_t vcpus, int64_t ram_mb, int64_t gpus,
                 char out_host[64])
{
    return -ENOSPC;
}
void api_agents_notify(Api *a) {}
