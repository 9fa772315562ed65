/* SPDX-License-Identifier: Apache-2.0 */
/* Host facts and per-guest host resources (host.c): the GPUs this host offers (PCI display
 * devices of NVIDIA and AMD under [compute] pci_sysfs), which of them a server holds, and a
 * cgroup per guest with the flavor's CPU and memory limits. */
#ifndef SOV_COMPUTE_HOST_H
#define SOV_COMPUTE_HOST_H

#include "compute.h"

/* Reads the configuration and the cgroup layout; logs what it found. */
void host_init(Compute *c);
/* The GPUs for the registration's "gpus" array (a new reference, never NULL). */
json_t *host_gpu_inventory(Compute *c);
/* Claims `want` GPUs for s (kept across restarts in <server dir>/gpus) and appends one QEMU
 * "-device" value per GPU to devs, NUL-terminated each. 0, or <0 with a reason in err. */
int host_gpu_claim(Server *s, int64_t want, SovBuf *devs, char *err, size_t errn);
/* Puts QEMU process pid into the server's cgroup with the flavor's limits; failures are logged
 * and never stop the guest. */
void host_cgroup_enter(Server *s, pid_t pid, int64_t vcpus, int64_t ram_mb);
/* Removes the server's cgroup (and releases its GPUs); the process must be gone. */
void host_release(Server *s);

#endif
