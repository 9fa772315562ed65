/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's bit of raw rtnetlink: the GSO/GRO size limits of its devices; gratuitous ARP. */
#ifndef SOV_NET_NL_H
#define SOV_NET_NL_H

#include "sov/buf.h"

/* Standard and BIG TCP limits (bytes): the kernel's default, and what [net] big_tcp sets. */
#define NL_GSO_DEFAULT 65536u
#define NL_GSO_BIG     262144u

/* In network namespace ns (a name under /run/netns; NULL or "": the caller's), sets the GSO and
 * GRO size limits (generic and IPv4, where the kernel has them) of every device named one of
 * prefixes (NULL-terminated) followed by 12 hex digits to size, capped by the device's TSO limit;
 * devices already there are not touched. Returns how many it changed, or <0 with a reason in
 * err. */
int nl_converge_gso(const char *ns, const char *const *prefixes, unsigned size, SovBuf *err);

/* In namespace ns (as above), announces IPv4 address addr of device ifname with one gratuitous
 * ARP request, so switches and neighbours learn where it is now (a router that moved hosts).
 * 0, or <0 with a reason in err. */
int nl_announce(const char *ns, const char *ifname, const char *addr, SovBuf *err);

#endif
