/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net security groups: compiles Neutron ports, security groups and rules into one nftables
 * script that atomically replaces the tables `bridge sov_sg` and `inet sov_sg` of the namespace
 * that holds the host's bridges. The design (marks, sets, conntrack fast path) is described at
 * the top of sg.c. */
#ifndef SOV_NET_SG_H
#define SOV_NET_SG_H

#include <jansson.h>

#include "sov/buf.h"

/* Bounds on what one compile accepts; past them sg_compile() fails with -E2BIG (past the
 * per-port ones, a port of another host is left out instead). */
#define SG_MAX_PORTS       65536 /* ports listed, on any host (remote group members) */
#define SG_MAX_LOCAL_PORTS 4096  /* filtered ports with "_dev" (a 16-bit mark half each) */
#define SG_MAX_GROUPS      16384
#define SG_MAX_RULES       65536
#define SG_MAX_PORT_IPS    32         /* fixed_ips of one port */
#define SG_MAX_PORT_PAIRS  10         /* allowed_address_pairs of one port (sov-api's cap) */
#define SG_MAX_PORT_GROUPS 64         /* security_groups of one port */
#define SG_MAX_BOXES       (1u << 20) /* set elements after expansion; also group memberships */
#define SG_MAX_ID_LEN      64
#define SG_MAX_IFNAME_LEN  15

/* Writes the nft script for this host to out (appending). ports: Neutron port documents
 * (fixed_ips, allowed_address_pairs, security_groups, ...), those of this host carrying "_dev"
 * (the host-side device on the bridge) and, for a conntrack zone per bridge, "_bridge" (that
 * bridge's name: pass it, or two subnets with the same CIDR on one host share conntrack
 * entries); groups: security_group documents; rules: security_group_rule documents. A rule, or
 * a port of another host, that does not validate is left out, and so is a set element past 64
 * partially overlapping ones (rules only allow: what they leave out stays dropped). Returns 0,
 * the number left out (>0) with the first reasons in err, or <0 (-EINVAL bad input, -E2BIG
 * past a bound, -ENOMEM) with a reason appended to err; out may then hold a partial script. */
int sg_compile(json_t *ports, json_t *groups, json_t *rules, SovBuf *out, SovBuf *err);

#endif
