/* SPDX-License-Identifier: Apache-2.0 */
/* Host facts: GPU discovery and claims, cgroups per guest. (placeholder being written) */
#include <errno.h>
#include <stdio.h>

#include "host.h"

void host_init(Compute *c)
{
    (void)c;
}

json_t *host_gpu_inventory(Compute *c)
{
    (void)c;
    return json_array();
}

int host_gpu_claim(Server *s, int64_t want, SovBuf *devs, char *err, size_t errn)
{
    (void)s;
    (void)devs;
    if (want <= 0)
        return 0;
    snprintf(err, errn, "this host has no GPU to pass through");
    return -ENODEV;
}

void host_cgroup_enter(Server *s, pid_t pid, int64_t vcpus, int64_t ram_mb)
{
    (void)s;
    (void)pid;
    (void)vcpus;
    (void)ram_mb;
}

void host_release(Server *s)
{
    (void)s;
}
