/* SPDX-License-Identifier: Apache-2.0 */
/* IP address management for the network API: IPv4 and IPv6 addresses and CIDRs (parsing,
 * canonical text, containment, overlap), allocation pools (defaults, validation) and the
 * choice of the next free address. The pure functions know nothing of the store; the
 * ipam_allocate()/ipam_release() pair records an allocation as an "ipalloc" document whose id
 * "<subnet id>/<address>" is the store's primary key, so two ports can never hold the same
 * address of one subnet, whatever the order of the requests. */
#ifndef SOV_API_IPAM_H
#define SOV_API_IPAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define IPAM_ADDR_STRLEN  46 /* INET6_ADDRSTRLEN */
#define IPAM_CIDR_STRLEN  50 /* address, '/', up to three digits */
#define IPAM_RANGE_STRLEN 94 /* "start-end" */
#define IPAM_MAX_POOLS    64 /* allocation pools per subnet */

/* An address: family 4 or 6; the bytes are big-endian, an IPv4 address in b[12..15] with the
 * other bytes zero, so that both families compare and count alike. */
typedef struct IpamAddr {
    uint8_t family;
    uint8_t b[16];
} IpamAddr;

/* A network: addr has no host bits set once parsed strictly (prefix <= 32 or 128). */
typedef struct IpamCidr {
    IpamAddr addr;
    unsigned prefix;
} IpamCidr;

/* An inclusive range of one family, start <= end. */
typedef struct IpamRange {
    IpamAddr start, end;
} IpamRange;

/* Text forms: dotted quad, or RFC 5952 IPv6. -EINVAL when s is not an address. */
int ipam_addr_parse(const char *s, IpamAddr *ret);
void ipam_addr_str(const IpamAddr *a, char out[IPAM_ADDR_STRLEN]);
int ipam_addr_cmp(const IpamAddr *a, const IpamAddr *b); /* families first, then value */
bool ipam_addr_eq(const IpamAddr *a, const IpamAddr *b);
/* One up or down within the family's space: false on wrap-around (the value then wrapped). */
bool ipam_addr_inc(IpamAddr *a);
bool ipam_addr_dec(IpamAddr *a);

/* "addr/prefix". A bare address is accepted as a host route when allow_bare. Returns 0 for a
 * clean network, -EDOM when host bits are set (ret then holds the normalised network), and
 * -EINVAL when the text is not a CIDR at all. */
int ipam_cidr_parse(const char *s, bool allow_bare, IpamCidr *ret);
void ipam_cidr_str(const IpamCidr *c, char out[IPAM_CIDR_STRLEN]);
unsigned ipam_family_bits(uint8_t family); /* 32 or 128 */
/* The network address and the last address of the block. */
void ipam_cidr_first(const IpamCidr *c, IpamAddr *ret);
void ipam_cidr_last(const IpamCidr *c, IpamAddr *ret);
bool ipam_cidr_contains(const IpamCidr *c, const IpamAddr *a);
bool ipam_cidr_overlaps(const IpamCidr *a, const IpamCidr *b);
/* May a port hold a in c? Inside it, and neither the network address nor (IPv4) the
 * broadcast address, except in blocks too small to have them (/31, /32, /127, /128). */
bool ipam_addr_usable(const IpamCidr *c, const IpamAddr *a);

void ipam_range_str(const IpamRange *r, char out[IPAM_RANGE_STRLEN]);
bool ipam_range_contains(const IpamRange *r, const IpamAddr *a);

/* The default pools of a subnet: every usable address except the gateway's, as one or two
 * ranges (none for an IPv4 /31). Returns the count written to out (max >= 2). */
size_t ipam_pools_default(const IpamCidr *c, const IpamAddr *gateway, IpamRange *out, size_t max);

/* What ipam_pools_check() found wrong, with the pools involved. */
typedef enum IpamPoolError {
    IPAM_POOL_OK,
    IPAM_POOL_INVALID,     /* start > end or another family (pool i) */
    IPAM_POOL_OUT_OF_CIDR, /* not within the usable addresses of the subnet (pool i) */
    IPAM_POOL_OVERLAP,     /* pools i and j share addresses */
    IPAM_POOL_GATEWAY,     /* the gateway lies in pool i */
} IpamPoolError;
IpamPoolError ipam_pools_check(const IpamCidr *c, const IpamRange *pools, size_t n,
                               const IpamAddr *gateway, size_t *ret_i, size_t *ret_j);

/* The lowest address of the pools not listed in used (sorted ascending, any order of pools).
 * 0 and ret, or -ENOSPC when every pool address is taken. */
int ipam_next_free(const IpamRange *pools, size_t n, const IpamAddr *used, size_t nused,
                   IpamAddr *ret);

/* ---- allocations in the store ---- */

/* Reads a subnet document's cidr, gateway_ip and allocation_pools. -EINVAL when damaged. */
int ipam_subnet_read(json_t *subnet, IpamCidr *ret_cidr, IpamAddr *ret_gw, bool *ret_has_gw,
                     IpamRange *ret_pools, size_t *ret_npools);

/* Records that port_id (of project) holds an address of subnet (its document): ip, or NULL
 * for the lowest free pool address. 0 and the address in ret_ip; -EINVAL when ip is not a
 * usable address of the subnet, -EEXIST when it is taken, -ENOSPC when no pool address is
 * free, another -errno from the store. */
int ipam_allocate(ApiStore *s, json_t *subnet, const char *ip, const char *port_id,
                  const char *project, char ret_ip[IPAM_ADDR_STRLEN]);
/* Forgets an allocation (-ENOENT when there was none). */
int ipam_release(ApiStore *s, const char *subnet_id, const char *ip);
/* Allocations in subnet_id (< 0 on a store error). */
int64_t ipam_subnet_count(ApiStore *s, const char *subnet_id);

/* ---- for the network API: these answer Neutron faults themselves ---- */

typedef struct ApiCall ApiCall;

/* Subnets: the bool functions answer the fault and return false. */

/* allocation_pools of a request (a list of {start, end}). */
bool ipam_pools_parse(ApiCall *c, json_t *arr, IpamRange *pools, size_t *ret_n);
/* Pools inside the subnet's usable addresses, apart from each other and from the gateway. */
bool ipam_pools_valid(ApiCall *c, const IpamCidr *cidr, const IpamRange *pools, size_t n,
                      const IpamAddr *gw);
json_t *ipam_pools_json(const IpamRange *pools, size_t n);
/* gateway_ip of b (present): a usable address of cidr, or null (*has false). */
bool ipam_gateway_parse(ApiCall *c, json_t *b, const IpamCidr *cidr, IpamAddr *gw, bool *has);
/* dns_nameservers and host_routes of b, checked and normalised into doc. */
bool ipam_dns_routes(ApiCall *c, json_t *b, json_t *doc, const IpamCidr *cidr);
/* ipv6_ra_mode and ipv6_address_mode of b into doc (IPv6 subnets only). */
bool ipam_ipv6_modes(ApiCall *c, json_t *b, json_t *doc, int version);
/* Loopback or multicast: no DHCP there. */
bool ipam_cidr_special(const IpamCidr *c);
/* The ipalloc document of an address (a new reference), or NULL when it is free. */
json_t *ipam_alloc_get(ApiStore *s, const char *subnet_id, const IpamAddr *ip);

/* Ports. */

/* The addresses of a port of project on network net (its document): fixed_ips is the
 * request's list (subnet_id and/or ip_address per entry), or NULL for Neutron's default of
 * one IPv4 address from the first IPv4 subnet with room plus one from each IPv6 subnet. keep
 * is the port's current list on an update: entries named again stay as they are, the others
 * are released first. owner is the device_owner: only a router interface may take a subnet's
 * gateway address. Runs inside the caller's transaction; returns the new list, or NULL after
 * answering the fault (the caller rolls back). */
json_t *ipam_port_addresses(ApiCall *c, json_t *net, const char *port_id, const char *project,
                            const char *owner, json_t *fixed_ips, json_t *keep);
/* Releases every address of a fixed_ips list. */
void ipam_port_release(ApiStore *s, json_t *fixed_ips);

#endif
