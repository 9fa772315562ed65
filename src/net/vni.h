/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's VXLAN network identifiers: one per subnet, the same on every host. */
#ifndef SOV_NET_VNI_H
#define SOV_NET_VNI_H

#include <jansson.h>

/* A subnet's first choice of VNI: its id's first 24 bits (the first six hex digits, '-'
 * skipped) mapped to 1..16777214; 0 when the id has fewer than six hex digits. */
json_int_t net_vni_first(const char *id);

/* The VNI of every subnet of a Neutron subnet list (id -> VNI; NULL when out of memory).
 * Oldest subnet first (created_at, then id), each takes its first choice or, when one before it
 * holds that, the next free one: two subnets never share a VNI (and so never an L2 segment
 * across hosts). A subnet's VNI depends only on the subnets before it, so a new subnet moves
 * none (unless made in the same second as one whose id sorts after its own); deleting a subnet
 * can move the VNI of any later one whose first choice was taken (not always back to its first
 * choice). Subnets without a usable id are left out. */
json_t *net_vni_plan(json_t *subnets);

#endif
