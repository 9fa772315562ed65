/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-api's address parsing (src/api/ipam.c): the input is split at its
 * first two newlines into a CIDR, an address and a gateway as Neutron clients send them.
 * Besides not crashing, what parses must print back to a form that parses to the same value,
 * a CIDR contains its first and last addresses, default pools stay inside the subnet and miss
 * the gateway, and the next free address lies in the pools. The store and fault functions
 * ipam.c calls for allocations are stubs here: allocation is the integration tests' job. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "ipam.h"
#include "network-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- stubs of what allocation needs (never reached by this target) ---- */
void api_fault(ApiCall *c, int status, const char *type, const char *fmt, ...)
{
    abort();
}
void neu_invalid(ApiCall *c, const char *attr, const char *fmt, ...)
{
    abort();
}
bool neu_get_str(ApiCall *c, json_t *b, const char *key, size_t max, bool nullable,
                 const char **ret)
{
    abort();
}
void neu_repr(json_t *v, char out[80])
{
    abort();
}
int64_t api_store_count(ApiStore *s, const ApiListQuery *q)
{
    abort();
}
int api_store_delete(ApiStore *s, const char *kind, const char *id)
{
    abort();
}
int api_store_get(ApiStore *s, const char *kind, const char *id, json_t **ret, char *p, size_t n)
{
    abort();
}
int api_store_insert(ApiStore *s, const ApiDocMeta *m, json_t *doc)
{
    abort();
}
int api_store_list(ApiStore *s, const ApiListQuery *q, json_t **ret)
{
    abort();
}

static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *cs = field(&p, end), *as = field(&p, end), *gs = field(&p, end);
    IpamCidr c, c2;
    IpamAddr a, a2, gw, first, last;
    char buf[IPAM_CIDR_STRLEN];
    bool have_c = ipam_cidr_parse(cs, false, &c) == 0;
    bool have_a = ipam_addr_parse(as, &a) == 0;
    bool have_g = ipam_addr_parse(gs, &gw) == 0;
    if (have_c) {
        ipam_cidr_str(&c, buf);
        if (ipam_cidr_parse(buf, false, &c2) != 0 || c2.prefix != c.prefix ||
            !ipam_addr_eq(&c.addr, &c2.addr))
            abort();
        ipam_cidr_first(&c, &first);
        ipam_cidr_last(&c, &last);
        if (!ipam_cidr_contains(&c, &first) || !ipam_cidr_contains(&c, &last) ||
            ipam_addr_cmp(&first, &last) > 0 || !ipam_cidr_overlaps(&c, &c))
            abort();
        if (c.prefix >= ipam_family_bits(c.addr.family) - 16) { /* small: pools are cheap */
            IpamRange pools[IPAM_MAX_POOLS];
            const IpamAddr *g = have_g && ipam_cidr_contains(&c, &gw) ? &gw : NULL;
            size_t n = ipam_pools_default(&c, g, pools, IPAM_MAX_POOLS);
            for (size_t i = 0; i < n; i++) {
                if (!ipam_cidr_contains(&c, &pools[i].start) ||
                    !ipam_cidr_contains(&c, &pools[i].end) ||
                    ipam_addr_cmp(&pools[i].start, &pools[i].end) > 0 ||
                    (g && ipam_range_contains(&pools[i], g)))
                    abort();
            }
            IpamAddr next;
            if (ipam_next_free(pools, n, NULL, 0, &next) == 0) {
                bool in = false;
                for (size_t i = 0; i < n; i++)
                    in |= ipam_range_contains(&pools[i], &next);
                if (!in)
                    abort();
            }
        }
        if (have_a)
            (void)ipam_addr_usable(&c, &a);
    }
    if (have_a) {
        char s[IPAM_ADDR_STRLEN];
        ipam_addr_str(&a, s);
        if (ipam_addr_parse(s, &a2) != 0 || !ipam_addr_eq(&a, &a2))
            abort();
        a2 = a;
        if (ipam_addr_inc(&a2) && (!ipam_addr_dec(&a2) || !ipam_addr_eq(&a, &a2)))
            abort();
    }
    free(cs);
    free(as);
    free(gs);
    return 0;
}
