/* SPDX-License-Identifier: Apache-2.0 */
/* VPC NICs: a server's Neutron ports, realised by sov-net as persistent taps (tap + the port
 * id's first 12 hex digits) on their subnet's bridge in [compute] netns. The agent opens each
 * tap itself (entering that namespace on the calling thread only) and hands QEMU the descriptor
 * (-netdev tap,fd=N), so QEMU keeps running in the host namespace with its user-mode network for
 * the forwarded SSH port beside the VPC NICs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compute.h"
#include "sov/log.h"

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static bool tap_name(const char *port, char out[IFNAMSIZ])
{
    int k = 0;
    char h[13];
    for (const char *p = port; *p && k < 12; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
            h[k++] = *p;
        else if (*p != '-')
            return false;
    }
    h[k] = '\0';
    if (k != 12)
        return false;
    snprintf(out, IFNAMSIZ, "tap%s", h);
    return true;
}

static bool mac_ok(const char *m)
{
    unsigned b[6];
    return strlen(m) == 17 &&
           sscanf(m, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) == 6;
}

int nic_open_taps(Server *s, Nic *nics, int max, char *err, size_t errn)
{
    json_t *nets = json_object_get(s->doc, "_networks"), *e;
    size_t i;
    int n = 0, r = 0, self = -1, nsfd = -1;
    const char *ns = s->c->cfg.netns;
    if (json_array_size(nets) == 0)
        return 0;
    if (*ns) {
        char path[300];
        snprintf(path, sizeof(path), "/run/netns/%s", ns);
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        nsfd = open(path, O_RDONLY | O_CLOEXEC);
        if (self < 0 || nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
            snprintf(err, errn, "cannot enter network namespace %s: %s", ns, strerror(errno));
            r = nsfd < 0 && errno == ENOENT ? -EAGAIN : -errno; /* sov-net makes it */
            goto out;
        }
    }
    json_array_foreach(nets, i, e)
    {
        const char *port = jstr(e, "port"), *mac = jstr(e, "mac");
        char name[IFNAMSIZ];
        if (!*port)
            continue;
        if (n >= max || !tap_name(port, name) || !mac_ok(mac)) {
            snprintf(err, errn, "port %.64s cannot be plugged (too many NICs or a bad id or MAC)",
                     port);
            r = -EINVAL;
            break;
        }
        if (if_nametoindex(name) == 0) { /* sov-net has not made it (yet) */
            snprintf(err, errn, "the tap %s of port %s does not exist", name, port);
            r = -EAGAIN;
            break;
        }
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        memcpy(ifr.ifr_name, name, strlen(name));
        if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
            snprintf(err, errn, "cannot open the tap %s: %s", name, strerror(errno));
            r = -errno;
            if (fd >= 0)
                close(fd);
            break;
        }
        nics[n].fd = fd;
        snprintf(nics[n].mac, sizeof(nics[n].mac), "%s", mac);
        n++;
    }
    if (*ns && setns(self, CLONE_NEWNET) < 0) {
        log_error_errno(-errno, "cannot return to the host network namespace");
        r = -errno;
    }
out:
    if (self >= 0)
        close(self);
    if (nsfd >= 0)
        close(nsfd);
    if (r < 0) {
        nic_close(nics, n);
        return r;
    }
    return n;
}

void nic_close(Nic *nics, int n)
{
    for (int i = 0; i < n; i++)
        if (nics[i].fd >= 0) {
            close(nics[i].fd);
            nics[i].fd = -1;
        }
}
