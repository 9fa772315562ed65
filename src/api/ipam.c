/* SPDX-License-Identifier: Apache-2.0 */
/* IP address management (see ipam.h): address and CIDR arithmetic over 16 big-endian bytes
 * for both families, allocation pools, and allocations recorded as "ipalloc" documents. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipam.h"
#include "network-int.h"
#include "sov/macro.h"

#define MAX_DNS         5  /* nameservers per subnet, as Neutron's default */
#define MAX_HOST_ROUTES 20 /* host routes per subnet */

/* ---- addresses ---- */

unsigned ipam_family_bits(uint8_t family)
{
    return family == 4 ? 32 : 128;
}

int ipam_addr_parse(const char *s, IpamAddr *ret)
{
    IpamAddr a = {0};
    if (!s)
        return -EINVAL;
    if (inet_pton(AF_INET, s, &a.b[12]) == 1)
        a.family = 4;
    else if (strchr(s, ':') && inet_pton(AF_INET6, s, a.b) == 1)
        a.family = 6;
    else
        return -EINVAL;
    *ret = a;
    return 0;
}

void ipam_addr_str(const IpamAddr *a, char out[IPAM_ADDR_STRLEN])
{
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->family == 4 ? &a->b[12] : a->b, out,
                   IPAM_ADDR_STRLEN))
        snprintf(out, IPAM_ADDR_STRLEN, "?");
}

int ipam_addr_cmp(const IpamAddr *a, const IpamAddr *b)
{
    if (a->family != b->family)
        return a->family < b->family ? -1 : 1;
    return memcmp(a->b, b->b, sizeof(a->b));
}

bool ipam_addr_eq(const IpamAddr *a, const IpamAddr *b)
{
    return ipam_addr_cmp(a, b) == 0;
}

/* First byte that belongs to the family's address. */
static unsigned first_byte(uint8_t family)
{
    return family == 4 ? 12 : 0;
}

bool ipam_addr_inc(IpamAddr *a)
{
    for (int i = 15; i >= (int)first_byte(a->family); i--)
        if (++a->b[i] != 0)
            return true;
    return false;
}

bool ipam_addr_dec(IpamAddr *a)
{
    for (int i = 15; i >= (int)first_byte(a->family); i--)
        if (a->b[i]-- != 0)
            return true;
    return false;
}

/* Clears (ones false) or sets every bit after the first prefix bits of the family. */
static void set_host_bits(IpamAddr *a, unsigned prefix, bool ones)
{
    unsigned bit = first_byte(a->family) * 8 + prefix;
    for (unsigned i = bit; i < 128; i++) {
        uint8_t mask = (uint8_t)(0x80u >> (i % 8));
        if (ones)
            a->b[i / 8] |= mask;
        else
            a->b[i / 8] &= (uint8_t)~mask;
    }
}

/* ---- CIDRs ---- */

int ipam_cidr_parse(const char *s, bool allow_bare, IpamCidr *ret)
{
    char buf[IPAM_CIDR_STRLEN];
    IpamCidr c = {0};
    if (!s || strlen(s) >= sizeof(buf))
        return -EINVAL;
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    else if (!allow_bare)
        return -EINVAL;
    if (ipam_addr_parse(buf, &c.addr) < 0)
        return -EINVAL;
    unsigned bits = ipam_family_bits(c.addr.family);
    c.prefix = bits;
    if (slash) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
            return -EINVAL;
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v > bits)
            return -EINVAL;
        c.prefix = v;
    }
    IpamAddr net = c.addr;
    set_host_bits(&net, c.prefix, false);
    bool clean = ipam_addr_eq(&net, &c.addr);
    c.addr = net;
    *ret = c;
    return clean ? 0 : -EDOM;
}

void ipam_cidr_str(const IpamCidr *c, char out[IPAM_CIDR_STRLEN])
{
    char a[IPAM_ADDR_STRLEN];
    ipam_addr_str(&c->addr, a);
    snprintf(out, IPAM_CIDR_STRLEN, "%s/%u", a, c->prefix);
}

void ipam_cidr_first(const IpamCidr *c, IpamAddr *ret)
{
    *ret = c->addr;
    set_host_bits(ret, c->prefix, false);
}

void ipam_cidr_last(const IpamCidr *c, IpamAddr *ret)
{
    *ret = c->addr;
    set_host_bits(ret, c->prefix, true);
}

bool ipam_cidr_contains(const IpamCidr *c, const IpamAddr *a)
{
    if (a->family != c->addr.family)
        return false;
    IpamAddr net = *a;
    set_host_bits(&net, c->prefix, false);
    IpamAddr mine;
    ipam_cidr_first(c, &mine);
    return ipam_addr_eq(&net, &mine);
}

bool ipam_cidr_overlaps(const IpamCidr *a, const IpamCidr *b)
{
    if (a->addr.family != b->addr.family)
        return false;
    return ipam_cidr_contains(a, &b->addr) || ipam_cidr_contains(b, &a->addr);
}

bool ipam_addr_usable(const IpamCidr *c, const IpamAddr *a)
{
    if (!ipam_cidr_contains(c, a))
        return false;
    unsigned bits = ipam_family_bits(c->addr.family);
    if (c->prefix + 1 >= bits) /* /31, /32, /127, /128: every address is a host */
        return true;
    IpamAddr first, last;
    ipam_cidr_first(c, &first);
    ipam_cidr_last(c, &last);
    if (ipam_addr_eq(a, &first))
        return false;
    return !(c->addr.family == 4 && ipam_addr_eq(a, &last));
}

/* ---- ranges and pools ---- */

void ipam_range_str(const IpamRange *r, char out[IPAM_RANGE_STRLEN])
{
    char s[IPAM_ADDR_STRLEN], e[IPAM_ADDR_STRLEN];
    ipam_addr_str(&r->start, s);
    ipam_addr_str(&r->end, e);
    snprintf(out, IPAM_RANGE_STRLEN, "%s-%s", s, e);
}

bool ipam_range_contains(const IpamRange *r, const IpamAddr *a)
{
    return ipam_addr_cmp(a, &r->start) >= 0 && ipam_addr_cmp(a, &r->end) <= 0;
}

/* The first and last address a pool may use in c. false when there is none. */
static bool usable_bounds(const IpamCidr *c, IpamAddr *lo, IpamAddr *hi)
{
    unsigned bits = ipam_family_bits(c->addr.family);
    ipam_cidr_first(c, lo);
    ipam_cidr_last(c, hi);
    if (c->prefix == bits)
        return true; /* a single address */
    if (c->prefix + 1 == bits)
        return false; /* point-to-point /31 and /127: no pool, addresses by request only */
    ipam_addr_inc(lo);
    if (c->addr.family == 4)
        ipam_addr_dec(hi);
    return true;
}

size_t ipam_pools_default(const IpamCidr *c, const IpamAddr *gateway, IpamRange *out, size_t max)
{
    IpamAddr lo, hi;
    size_t n = 0;
    if (max < 2 || !usable_bounds(c, &lo, &hi))
        return 0;
    if (!gateway || ipam_addr_cmp(gateway, &lo) < 0 || ipam_addr_cmp(gateway, &hi) > 0) {
        out[n++] = (IpamRange){lo, hi};
        return n;
    }
    /* the gateway splits the usable addresses in two */
    if (ipam_addr_cmp(gateway, &lo) > 0) {
        IpamAddr before = *gateway;
        ipam_addr_dec(&before);
        out[n++] = (IpamRange){lo, before};
    }
    if (ipam_addr_cmp(gateway, &hi) < 0) {
        IpamAddr after = *gateway;
        ipam_addr_inc(&after);
        out[n++] = (IpamRange){after, hi};
    }
    return n;
}

IpamPoolError ipam_pools_check(const IpamCidr *c, const IpamRange *pools, size_t n,
                               const IpamAddr *gateway, size_t *ret_i, size_t *ret_j)
{
    IpamAddr lo, hi;
    bool any = usable_bounds(c, &lo, &hi);
    for (size_t i = 0; i < n; i++) {
        const IpamRange *p = &pools[i];
        *ret_i = i;
        if (p->start.family != c->addr.family || p->end.family != c->addr.family ||
            ipam_addr_cmp(&p->start, &p->end) > 0)
            return IPAM_POOL_INVALID;
        if (!any || ipam_addr_cmp(&p->start, &lo) < 0 || ipam_addr_cmp(&p->end, &hi) > 0)
            return IPAM_POOL_OUT_OF_CIDR;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ipam_addr_cmp(&pools[i].start, &pools[j].end) <= 0 &&
                ipam_addr_cmp(&pools[j].start, &pools[i].end) <= 0) {
                *ret_i = i;
                *ret_j = j;
                return IPAM_POOL_OVERLAP;
            }
    for (size_t i = 0; gateway && i < n; i++)
        if (ipam_range_contains(&pools[i], gateway)) {
            *ret_i = i;
            return IPAM_POOL_GATEWAY;
        }
    return IPAM_POOL_OK;
}

static int range_cmp(const void *x, const void *y)
{
    return ipam_addr_cmp(&((const IpamRange *)x)->start, &((const IpamRange *)y)->start);
}

int ipam_next_free(const IpamRange *pools, size_t n, const IpamAddr *used, size_t nused,
                   IpamAddr *ret)
{
    IpamRange sorted[IPAM_MAX_POOLS];
    n = SOV_MIN(n, ELEMENTSOF(sorted));
    memcpy(sorted, pools, n * sizeof(*pools));
    qsort(sorted, n, sizeof(*sorted), range_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        IpamAddr cand = sorted[i].start;
        for (;;) {
            while (k < nused && ipam_addr_cmp(&used[k], &cand) < 0)
                k++;
            if (k == nused || !ipam_addr_eq(&used[k], &cand)) {
                *ret = cand;
                return 0;
            }
            if (ipam_addr_eq(&cand, &sorted[i].end) || !ipam_addr_inc(&cand))
                break; /* this pool is full */
        }
    }
    return -ENOSPC;
}

/* ---- allocations in the store ---- */

int ipam_subnet_read(json_t *subnet, IpamCidr *ret_cidr, IpamAddr *ret_gw, bool *ret_has_gw,
                     IpamRange *ret_pools, size_t *ret_npools)
{
    if (ipam_cidr_parse(json_string_value(json_object_get(subnet, "cidr")), false, ret_cidr) < 0)
        return -EINVAL;
    const char *gw = json_string_value(json_object_get(subnet, "gateway_ip"));
    *ret_has_gw = gw && ipam_addr_parse(gw, ret_gw) == 0;
    size_t n = 0, i;
    json_t *p;
    json_array_foreach(json_object_get(subnet, "allocation_pools"), i, p)
    {
        if (n == IPAM_MAX_POOLS)
            break;
        if (ipam_addr_parse(json_string_value(json_object_get(p, "start")), &ret_pools[n].start) <
                0 ||
            ipam_addr_parse(json_string_value(json_object_get(p, "end")), &ret_pools[n].end) < 0)
            return -EINVAL;
        n++;
    }
    *ret_npools = n;
    return 0;
}

static int addr_sort_cmp(const void *x, const void *y)
{
    return ipam_addr_cmp(x, y);
}

/* Every address allocated in subnet_id, sorted; the caller frees *ret. */
static int used_addresses(ApiStore *s, const char *subnet_id, IpamAddr **ret, size_t *ret_n)
{
    ApiListQuery q = {.kind = "ipalloc", .parent = subnet_id};
    json_t *arr;
    int r = api_store_list(s, &q, &arr);
    if (r < 0)
        return r;
    size_t n = 0, i;
    json_t *v;
    IpamAddr *out = calloc(json_array_size(arr) + 1, sizeof(*out));
    if (!out) {
        json_decref(arr);
        return -ENOMEM;
    }
    json_array_foreach(arr, i, v)
    {
        if (ipam_addr_parse(json_string_value(json_object_get(v, "ip_address")), &out[n]) == 0)
            n++;
    }
    json_decref(arr);
    qsort(out, n, sizeof(*out), addr_sort_cmp);
    *ret = out;
    *ret_n = n;
    return 0;
}

static int record(ApiStore *s, json_t *subnet, const IpamAddr *a, const char *port_id,
                  const char *project, char ret_ip[IPAM_ADDR_STRLEN])
{
    char ip[IPAM_ADDR_STRLEN], id[160];
    const char *subnet_id = json_string_value(json_object_get(subnet, "id"));
    ipam_addr_str(a, ip);
    snprintf(id, sizeof(id), "%s/%s", subnet_id, ip);
    json_t *doc = json_pack("{s:s,s:s?,s:s,s:s}", "subnet_id", subnet_id, "network_id",
                            json_string_value(json_object_get(subnet, "network_id")), "ip_address",
                            ip, "port_id", port_id);
    if (!doc)
        return -ENOMEM;
    ApiDocMeta m = {
        .kind = "ipalloc", .id = id, .project = project, .name = ip, .parent = subnet_id};
    int r = api_store_insert(s, &m, doc);
    json_decref(doc);
    if (r == 0)
        memcpy(ret_ip, ip, IPAM_ADDR_STRLEN);
    return r;
}

int ipam_allocate(ApiStore *s, json_t *subnet, const char *ip, const char *port_id,
                  const char *project, char ret_ip[IPAM_ADDR_STRLEN])
{
    IpamCidr cidr;
    IpamAddr gw, a;
    IpamRange pools[IPAM_MAX_POOLS];
    size_t npools;
    bool has_gw;
    int r = ipam_subnet_read(subnet, &cidr, &gw, &has_gw, pools, &npools);
    if (r < 0)
        return r;
    if (ip) {
        if (ipam_addr_parse(ip, &a) < 0 || !ipam_addr_usable(&cidr, &a))
            return -EINVAL;
        return record(s, subnet, &a, port_id, project, ret_ip);
    }
    /* The loop owns the store, so the free address cannot be taken between the look and the
     * insert; the retry only guards against a store shared with another writer. */
    for (int attempt = 0; attempt < 4; attempt++) {
        IpamAddr *used = NULL;
        size_t nused = 0;
        r = used_addresses(s, json_string_value(json_object_get(subnet, "id")), &used, &nused);
        if (r < 0)
            return r;
        r = ipam_next_free(pools, npools, used, nused, &a);
        free(used);
        if (r < 0)
            return r;
        r = record(s, subnet, &a, port_id, project, ret_ip);
        if (r != -EEXIST)
            return r;
    }
    return -ENOSPC;
}

int ipam_release(ApiStore *s, const char *subnet_id, const char *ip)
{
    IpamAddr a;
    char canon[IPAM_ADDR_STRLEN], id[160];
    if (ipam_addr_parse(ip, &a) < 0)
        return -ENOENT;
    ipam_addr_str(&a, canon);
    snprintf(id, sizeof(id), "%s/%s", subnet_id, canon);
    return api_store_delete(s, "ipalloc", id);
}

int64_t ipam_subnet_count(ApiStore *s, const char *subnet_id)
{
    ApiListQuery q = {.kind = "ipalloc", .parent = subnet_id};
    return api_store_count(s, &q);
}

/* ---- ports ---- */

void ipam_port_release(ApiStore *s, json_t *fixed_ips)
{
    size_t i;
    json_t *f;
    json_array_foreach(fixed_ips, i, f)
        ipam_release(s, json_string_value(json_object_get(f, "subnet_id")),
                     json_string_value(json_object_get(f, "ip_address")));
}

/* The subnet of list whose id is id, or which contains ip when id is NULL. */
static json_t *subnet_pick(json_t *list, const char *id, const IpamAddr *ip)
{
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        IpamCidr c;
        if (id ? strcmp(json_string_value(json_object_get(s, "id")), id) == 0
               : ipam_cidr_parse(json_string_value(json_object_get(s, "cidr")), false, &c) == 0 &&
                     ipam_cidr_contains(&c, ip))
            return s;
    }
    return NULL;
}

/* Allocates in one subnet and appends the entry to out: false after answering. */
static bool port_alloc(ApiCall *c, json_t *subnet, const char *ip, const char *port_id,
                       const char *project, json_t *out, bool *ret_full)
{
    char got[IPAM_ADDR_STRLEN];
    const char *sid = json_string_value(json_object_get(subnet, "id"));
    int r = ipam_allocate(c->api->store, subnet, ip, port_id, project, got);
    if (r == 0) {
        json_array_append_new(out, json_pack("{s:s,s:s}", "subnet_id", sid, "ip_address", got));
        return true;
    }
    if (r == -ENOSPC && ret_full) {
        *ret_full = true;
        return false;
    }
    if (r == -EINVAL)
        api_fault(c, 400, "InvalidIpForSubnet",
                  "IP address %s is not a valid IP for the specified subnet.", ip);
    else if (r == -EEXIST)
        api_fault(c, 409, "IpAddressAlreadyAllocated",
                  "IP address %s already allocated in subnet %s", ip, sid);
    else if (r == -ENOSPC)
        api_fault(c, 409, "IpAddressGenerationFailure",
                  "No more IP addresses available on network %s.",
                  json_string_value(json_object_get(subnet, "network_id")));
    else
        api_fault(c, 500, NULL, "IP allocation failed: %s", strerror(-r));
    return false;
}

static json_t *default_addresses(ApiCall *c, json_t *subnets, const char *net_id,
                                 const char *port_id, const char *project, json_t *out)
{
    size_t i;
    json_t *s;
    bool any_v4 = false, got_v4 = false;
    for (int fam = 4; fam <= 6; fam += 2)
        json_array_foreach(subnets, i, s)
        {
            if (json_integer_value(json_object_get(s, "ip_version")) != fam || (fam == 4 && got_v4))
                continue;
            bool full = false;
            any_v4 = any_v4 || fam == 4;
            if (port_alloc(c, s, NULL, port_id, project, out, fam == 4 ? &full : NULL))
                got_v4 = got_v4 || fam == 4;
            else if (!full)
                return NULL;
        }
    if (any_v4 && !got_v4) {
        api_fault(c, 409, "IpAddressGenerationFailure",
                  "No more IP addresses available on network %s.", net_id);
        return NULL;
    }
    return out;
}

json_t *ipam_port_addresses(ApiCall *c, json_t *net, const char *port_id, const char *project,
                            const char *owner, json_t *fixed_ips, json_t *keep)
{
    const char *net_id = json_string_value(json_object_get(net, "id"));
    ApiListQuery q = {.kind = "subnet", .parent = net_id};
    json_t *subnets, *out = json_array(), *f;
    json_t *claimed = json_array(); /* per request entry: the kept entry, or null */
    size_t i;
    if (api_store_list(c->api->store, &q, &subnets) < 0)
        subnets = json_array();
    if (!fixed_ips) {
        json_t *r = default_addresses(c, subnets, net_id, port_id, project, out);
        json_decref(subnets);
        json_decref(claimed);
        if (!r)
            json_decref(out);
        return r;
    }
    json_t *kept = keep ? json_deep_copy(keep) : json_array();
    if (!json_is_array(fixed_ips) || json_array_size(fixed_ips) > 5)
        goto invalid;
    /* pass 1: resolve every entry to its subnet (and address) and find what stays */
    json_array_foreach(fixed_ips, i, f)
    {
        json_t *sid = json_object_get(f, "subnet_id"), *ipv = json_object_get(f, "ip_address");
        IpamAddr a;
        char canon[IPAM_ADDR_STRLEN];
        if (!json_is_object(f) || json_object_size(f) != (size_t)(!!sid + !!ipv) ||
            (!sid && !ipv) || (sid && !json_is_string(sid)) || (ipv && !json_is_string(ipv)))
            goto invalid;
        if (ipv && ipam_addr_parse(json_string_value(ipv), &a) < 0) {
            api_fault(c, 400, "HTTPBadRequest",
                      "Invalid input for fixed_ips. Reason: '%.64s' is not a valid IP address.",
                      json_string_value(ipv));
            goto fail;
        }
        json_t *s = subnet_pick(subnets, sid ? json_string_value(sid) : NULL, ipv ? &a : NULL);
        if (!s && sid) {
            api_fault(c, 400, "InvalidInput",
                      "Invalid input for operation: Failed to create port on network %s, because "
                      "fixed_ips included invalid subnet %.64s.",
                      net_id, json_string_value(sid));
            goto fail;
        }
        if (!s) {
            api_fault(c, 400, "InvalidIpForNetwork",
                      "IP address %.64s is not a valid IP for any of the subnets on the "
                      "specified network.",
                      json_string_value(ipv));
            goto fail;
        }
        const char *subnet_id = json_string_value(json_object_get(s, "id"));
        if (ipv) {
            ipam_addr_str(&a, canon);
            const char *gw = json_string_value(json_object_get(s, "gateway_ip"));
            if (gw && strcmp(gw, canon) == 0 && strcmp(owner, "network:router_interface") != 0) {
                api_fault(c, 409, "IpAddressAlreadyAllocated",
                          "IP address %s already allocated in subnet %s (it is the gateway "
                          "address, reserved for the subnet's router)",
                          canon, subnet_id);
                goto fail;
            }
        }
        json_t *hit = json_null();
        size_t j;
        json_t *k;
        json_array_foreach(kept, j, k)
        {
            if (strcmp(json_string_value(json_object_get(k, "subnet_id")), subnet_id) == 0 &&
                (!ipv || strcmp(json_string_value(json_object_get(k, "ip_address")), canon) == 0) &&
                !json_is_true(json_object_get(k, "_claimed"))) {
                json_object_set_new(k, "_claimed", json_true());
                hit = json_pack("{s:s,s:O}", "subnet_id", subnet_id, "ip_address",
                                json_object_get(k, "ip_address"));
                break;
            }
        }
        if (json_is_null(hit))
            hit = json_pack("{s:s,s:s?}", "_new", subnet_id, "ip_address", ipv ? canon : NULL);
        json_array_append_new(claimed, hit);
    }
    /* pass 2: release what the new list drops, then allocate what it adds */
    json_array_foreach(kept, i, f) if (!json_is_true(json_object_get(f, "_claimed")))
        ipam_release(c->api->store, json_string_value(json_object_get(f, "subnet_id")),
                     json_string_value(json_object_get(f, "ip_address")));
    json_array_foreach(claimed, i, f)
    {
        const char *newsub = json_string_value(json_object_get(f, "_new"));
        if (!newsub) {
            json_array_append(out, f);
            continue;
        }
        if (!port_alloc(c, subnet_pick(subnets, newsub, NULL),
                        json_string_value(json_object_get(f, "ip_address")), port_id, project, out,
                        NULL))
            goto fail;
    }
    json_decref(subnets);
    json_decref(claimed);
    json_decref(kept);
    return out;
invalid:
    api_fault(c, 400, "HTTPBadRequest",
              "Invalid input for fixed_ips. Reason: expected a list of at most 5 objects with "
              "subnet_id and/or ip_address.");
fail:
    json_decref(subnets);
    json_decref(claimed);
    json_decref(kept);
    json_decref(out);
    return NULL;
}

/* ---- subnets: the address attributes of requests ---- */

bool ipam_pools_parse(ApiCall *c, json_t *arr, IpamRange *pools, size_t *ret_n)
{
    size_t i;
    json_t *p;
    if (!json_is_array(arr) || json_array_size(arr) > IPAM_MAX_POOLS) {
        neu_invalid(c, "allocation_pools", "expected a list of at most %d pools", IPAM_MAX_POOLS);
        return false;
    }
    json_array_foreach(arr, i, p)
    {
        if (json_object_size(p) != 2 ||
            ipam_addr_parse(json_string_value(json_object_get(p, "start")), &pools[i].start) ||
            ipam_addr_parse(json_string_value(json_object_get(p, "end")), &pools[i].end)) {
            char r[80];
            neu_repr(p, r);
            neu_invalid(c, "allocation_pools", "'%s' is not a pool of start and end addresses", r);
            return false;
        }
    }
    *ret_n = json_array_size(arr);
    return true;
}

bool ipam_pools_valid(ApiCall *c, const IpamCidr *cidr, const IpamRange *pools, size_t n,
                      const IpamAddr *gw)
{
    size_t i = 0, j = 0;
    char a[IPAM_RANGE_STRLEN], b[IPAM_RANGE_STRLEN], cs[IPAM_CIDR_STRLEN], g[IPAM_ADDR_STRLEN];
    IpamPoolError e = ipam_pools_check(cidr, pools, n, gw, &i, &j);
    if (e == IPAM_POOL_OK)
        return true;
    ipam_range_str(&pools[i], a);
    ipam_range_str(&pools[j], b);
    ipam_cidr_str(cidr, cs);
    if (e == IPAM_POOL_INVALID)
        api_fault(c, 400, "InvalidAllocationPool", "The allocation pool %s is not valid.", a);
    else if (e == IPAM_POOL_OUT_OF_CIDR)
        api_fault(c, 400, "OutOfBoundsAllocationPool",
                  "The allocation pool %s spans beyond the subnet cidr %s.", a, cs);
    else if (e == IPAM_POOL_OVERLAP)
        api_fault(c, 409, "OverlappingAllocationPools",
                  "Found overlapping allocation pools: %s %s for subnet %s.", a, b, cs);
    else {
        ipam_addr_str(gw, g);
        api_fault(c, 409, "GatewayConflictWithAllocationPools",
                  "Gateway ip %s conflicts with allocation pool %s.", g, a);
    }
    return false;
}

json_t *ipam_pools_json(const IpamRange *pools, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char s[IPAM_ADDR_STRLEN], e[IPAM_ADDR_STRLEN];
        ipam_addr_str(&pools[i].start, s);
        ipam_addr_str(&pools[i].end, e);
        json_array_append_new(arr, json_pack("{s:s,s:s}", "start", s, "end", e));
    }
    return arr;
}

/* gateway_ip of b when present: *has false for null. */
bool ipam_gateway_parse(ApiCall *c, json_t *b, const IpamCidr *cidr, IpamAddr *gw, bool *has)
{
    json_t *v = json_object_get(b, "gateway_ip");
    char cs[IPAM_CIDR_STRLEN];
    if (json_is_null(v)) {
        *has = false;
        return true;
    }
    if (ipam_addr_parse(json_string_value(v), gw) < 0) {
        char r[80];
        neu_repr(v, r);
        neu_invalid(c, "gateway_ip", "'%s' is not a valid IP address", r);
        return false;
    }
    ipam_cidr_str(cidr, cs);
    if (!ipam_addr_usable(cidr, gw)) {
        api_fault(c, 400, "InvalidInput",
                  "Invalid input for operation: Gateway %s is not valid on subnet %s.",
                  json_string_value(v), cs);
        return false;
    }
    *has = true;
    return true;
}

/* dns_nameservers and host_routes of b, normalised into doc. */
bool ipam_dns_routes(ApiCall *c, json_t *b, json_t *doc, const IpamCidr *cidr)
{
    json_t *dns = json_object_get(b, "dns_nameservers"), *hr = json_object_get(b, "host_routes");
    json_t *v;
    size_t i;
    if (dns) {
        json_t *out = json_array();
        json_object_set_new(doc, "dns_nameservers", out);
        if (!json_is_array(dns) || json_array_size(dns) > MAX_DNS) {
            neu_invalid(c, "dns_nameservers", "expected a list of at most %d addresses", MAX_DNS);
            return false;
        }
        json_array_foreach(dns, i, v)
        {
            IpamAddr a;
            char s[IPAM_ADDR_STRLEN], r[80];
            neu_repr(v, r);
            if (ipam_addr_parse(json_string_value(v), &a) < 0) {
                neu_invalid(c, "dns_nameservers", "'%s' is not a valid nameserver", r);
                return false;
            }
            ipam_addr_str(&a, s);
            json_t *str = json_string(s);
            size_t j;
            json_t *e;
            json_array_foreach(out, j, e) if (json_equal(e, str))
            {
                json_decref(str);
                neu_invalid(c, "dns_nameservers", "Duplicate nameserver '%s'", s);
                return false;
            }
            json_array_append_new(out, str);
        }
    }
    if (hr) {
        json_t *out = json_array();
        json_object_set_new(doc, "host_routes", out);
        if (!json_is_array(hr) || json_array_size(hr) > MAX_HOST_ROUTES) {
            neu_invalid(c, "host_routes", "expected a list of at most %d routes", MAX_HOST_ROUTES);
            return false;
        }
        json_array_foreach(hr, i, v)
        {
            IpamCidr d;
            IpamAddr nh;
            char ds[IPAM_CIDR_STRLEN], ns[IPAM_ADDR_STRLEN], r[80];
            neu_repr(v, r);
            int pr =
                ipam_cidr_parse(json_string_value(json_object_get(v, "destination")), false, &d);
            if (json_object_size(v) != 2 || (pr < 0 && pr != -EDOM) ||
                ipam_addr_parse(json_string_value(json_object_get(v, "nexthop")), &nh) < 0 ||
                d.addr.family != cidr->addr.family || nh.family != cidr->addr.family) {
                neu_invalid(c, "host_routes", "'%s' is not a valid route of this subnet", r);
                return false;
            }
            ipam_cidr_str(&d, ds);
            ipam_addr_str(&nh, ns);
            json_array_append_new(out, json_pack("{s:s,s:s}", "destination", ds, "nexthop", ns));
        }
    }
    return true;
}

bool ipam_cidr_special(const IpamCidr *c)
{
    IpamCidr lo, mc;
    if (c->addr.family == 4) {
        ipam_cidr_parse("127.0.0.0/8", false, &lo);
        ipam_cidr_parse("224.0.0.0/4", false, &mc);
    } else {
        ipam_cidr_parse("::1/128", false, &lo);
        ipam_cidr_parse("ff00::/8", false, &mc);
    }
    return ipam_cidr_overlaps(c, &lo) || ipam_cidr_overlaps(c, &mc);
}

bool ipam_ipv6_modes(ApiCall *c, json_t *b, json_t *doc, int version)
{
    static const char *const keys[] = {"ipv6_ra_mode", "ipv6_address_mode"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const char *m = NULL;
        if (!json_object_get(b, keys[i]) || !neu_get_str(c, b, keys[i], 32, true, &m))
            continue;
        if (m && (version != 6 || (strcmp(m, "slaac") != 0 && strcmp(m, "dhcpv6-stateful") != 0 &&
                                   strcmp(m, "dhcpv6-stateless") != 0))) {
            neu_invalid(c, keys[i], "'%s' is not valid for an IPv%d subnet", m, version);
            return false;
        }
        json_object_set_new(doc, keys[i], m ? json_string(m) : json_null());
    }
    return !c->answered;
}

/* The ipalloc document of an address, when allocated. */
json_t *ipam_alloc_get(ApiStore *s, const char *subnet_id, const IpamAddr *ip)
{
    char a[IPAM_ADDR_STRLEN], id[160];
    json_t *doc;
    ipam_addr_str(ip, a);
    snprintf(id, sizeof(id), "%s/%s", subnet_id, a);
    return api_store_get(s, "ipalloc", id, &doc, NULL, 0) == 0 ? doc : NULL;
}
