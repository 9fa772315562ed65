/* SPDX-License-Identifier: Apache-2.0 */
/* Host facts and per-guest host resources (host.c): the GPUs this host offers (PCI display
 * devices of NVIDIA and AMD under [compute] pci_sysfs), which of them a server holds, and a
 * cgroup per guest with the flavor's CPU and memory limits ([compute] cgroups, cgroup_root). */
#ifndef SOV_COMPUTE_HOST_H
#define SOV_COMPUTE_HOST_H

#include "compute.h"

/* Reads the configuration and the cgroup layout (v2: <root>/sov/<server id>; v1 or hybrid:
 * <root>/cpu/sov/<id> and <root>/memory/sov/<id>; else off), removes the empty cgroups of
 * servers this host no longer has, and logs what it found. */
void host_init(Compute *c);
/* The GPUs for the registration's "gpus" array (a new reference, never NULL): at most 64
 * objects {address, vendor, device, driver (or null), iommu_group (or null), vfio}, sorted
 * by address. */
json_t *host_gpu_inventory(Compute *c);
/* Claims `want` GPUs for s and appends one QEMU "-device" value per GPU to devs
 * ("vfio-pci,host=ADDR", NUL-terminated each). The claim lives in <server dir>/gpus, so it
 * outlives agent restarts; a server that already holds `want` GPUs keeps them, else it gets
 * free ones (not in another server directory's claim), those bound to vfio-pci first, each
 * group in address order. want <= 0 drops any claim. 0, or <0 with a reason in err: -EPERM
 * (a picked GPU is not bound to vfio-pci), -EBUSY (too few free), -ENODEV (no GPU here),
 * -EINVAL (more than a host can have). */
int host_gpu_claim(Server *s, int64_t want, SovBuf *devs, char *err, size_t errn);
/* Puts QEMU process pid into the server's cgroup with the flavor's limits: vcpus whole CPUs
 * (CFS quota per 100 ms period) and memory of ram_mb + 256 MiB for QEMU (+ 1 GiB for the
 * translated-code cache under TCG). Failures are logged and never stop the guest. */
void host_cgroup_enter(Server *s, pid_t pid, int64_t vcpus, int64_t ram_mb);
/* Releases the server's GPUs and removes its cgroup; the process must be gone. */
void host_release(Server *s);

#endif
