/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net security groups: Neutron ports, groups and rules compiled into one nftables script.
 *
 * Where packets are seen. All instance ports of a host are bridge ports, and bridged IP traffic
 * reaches the inet family only through br_netfilter. There, iifname/oifname are the *bridge*
 * (measured: a ping between two veth ports of br0 matches `iifname "br0"` and `oifname "br0"`,
 * never the port names; `meta ibrname` is refused outside the bridge family and nft 1.0 has no
 * `ibrport`). The bridge family does see the ports but has no conntrack on this kernel. So the
 * script has two tables, replaced together in one transaction:
 *
 *   table bridge sov_sg: prerouting (priority -200, before br_netfilter at 0) maps the ingress
 *     port through a verdict map (iifname -> chain) that enforces anti-spoofing (ether saddr is
 *     the port's MAC; ARP and IPv4/IPv6 source addresses are its fixed IPs, plus the DHCP
 *     discover from 0.0.0.0, IPv6 link-local (EUI-64 of the MAC) and ::; see "Allowed address
 *     pairs" below) and then stores the port's number N (1..4096) in the low 16 bits of the
 *     packet mark. Forward (priority -200, before br_netfilter's forward hook) stores the
 *     egress port's number in the high 16 bits.
 *   table inet sov_sg: prerouting and output at priority -300 put each packet in the conntrack
 *     zone of its bridge (ports' "_bridge"; iifname/oifname is the bridge there), so subnets
 *     with the same CIDR on one host never share a conntrack entry. Prerouting (priority 0,
 *     after conntrack at -200) is the egress check of
 *     the sending port, forward (priority 0) the ingress check of the receiving port. Both begin
 *     with the conntrack fast path: packets of other ports (mark half 0) are accepted, then
 *     `ct state established,related accept`, `ct state invalid drop`, and only the first packet
 *     of a flow goes on, through a verdict map keyed by the mark half, to the port's chain.
 *
 * Rules. A port chain accepts the implicit protocol traffic Neutron allows (DHCP, IPv6 neighbour
 * discovery), jumps to one chain per security group of the port and ends in drop (allow-only).
 * A group chain has a handful of rules, each one lookup in a named concatenated interval set:
 *   ip saddr . meta l4proto . th dport @set    ports (any protocol: 0-255 . 0-65535)
 *   ip saddr . meta l4proto . th sport @set    ICMP type/code: the first two header bytes
 * (ip daddr for egress; ip6 likewise). Every Neutron rule becomes one element (a box: address
 * prefix x protocol range x port range); a remote group rule becomes one element per member IP
 * (fixed IPs of all ports carrying that group). So 10,000 rules are 10,000 set elements behind
 * the same few rules. The kernel refuses overlapping elements in one set, so boxes are sorted,
 * boxes of one protocol and the same addresses whose ports overlap or touch merge into one,
 * boxes inside another box are dropped and partially overlapping ones go to a second (third..)
 * set of the same kind ("layers", at most 64 per group, direction, family and kind; an element
 * past that is left out and counted, as is a rule that does not validate).
 *
 * Allowed address pairs (Neutron's allowed_address_pairs: an IP or CIDR with an optional MAC,
 * by default the port's) widen what a port may send: the source checks are lookups of the pair
 * (ether saddr . source address) in one anonymous set per family, so a pair's MAC may send only
 * from the pair's addresses (ARP likewise, keyed ether saddr . arp saddr ether . arp saddr ip).
 * An IPv6 pair also admits its MAC's link-local address and ::, as Neutron does. Elements
 * inside another of the same MAC are left out (the kernel refuses overlapping elements); a pair
 * 0.0.0.0/0 therefore admits any source from its MAC, except the bare 0.0.0.0 outside DHCP.
 * Pairs are also members of the port's groups for remote group rules, as a prefix (one
 * element, not one per address). Traffic to a pair's address or MAC needs nothing extra: the
 * receiving port's chain does not look at destinations, so its ingress rules apply as they do
 * to its fixed IPs.
 *
 * Ports with port_security_enabled false, device_owner "network:*" or without "_dev" get no
 * mark and pass untouched. Names in the script are numbers (port N, group N, set layers); ids
 * appear only in comments, after validation as [0-9a-f-]{1,64}; device names are validated as
 * [A-Za-z0-9_-]{1,15}.
 *
 * Limits and caveats. The packet mark of bridged traffic belongs to sov-net in its namespace
 * (another user of marks there would confuse the maps). "Any protocol" elements match through
 * `th dport`, so an IP packet too short for 4 transport bytes matches no such element. Traffic
 * to and from the host itself (dnsmasq on the bridge) is not forwarded and so only sees the
 * sender's egress check. Tightened rules do not end flows already established (conntrack
 * entries stay). The overlap scan is near-linear for realistic rule sets; many wide prefixes
 * above many narrower ones with distinct ports make it quadratic within the caps of sg.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg.h"
#include "sov/json.h"
#include "sov/mac.h"
#include "sov/macro.h"

__extension__ typedef unsigned __int128 SgAddr;

typedef struct SgIp {
    uint8_t fam; /* 4 or 6 */
    SgAddr addr;
} SgIp;

/* An allowed address pair: mac may send from the prefix addr/plen. Invariant: the host bits
 * of ip.addr are clear. */
typedef struct SgPair {
    uint8_t mac[6];
    uint8_t plen;
    SgIp ip;
} SgPair;

/* One port of the input. ips, pairs and groups index into SgCtx's vectors. */
typedef struct SgPort {
    const char *id;
    const char *dev;    /* NULL unless on this host */
    const char *bridge; /* the bridge dev is on, when the caller says (conntrack zone) */
    uint8_t mac[6];
    bool has_mac;
    bool filtered; /* on this host, port security on, not a network: port */
    uint32_t num;  /* 1.. for filtered ports: the mark half */
    size_t ip_off, n_ips;
    size_t pair_off, n_pairs;
    size_t grp_off, n_grps;
} SgPort;

typedef struct SgGroup {
    const char *id;
    uint32_t num;          /* input index */
    bool used;             /* a filtered port of this host carries it */
    size_t mem_off, n_mem; /* members in SgCtx.members, after sorting */
} SgGroup;

/* A group member: an IP (plen 32/128) or an allowed address pair's prefix of a port carrying
 * group g. Invariant: the host bits of ip.addr are clear. */
typedef struct SgMember {
    uint32_t group;
    uint8_t plen;
    SgIp ip;
} SgMember;

enum { SG_KIND_DPORT = 0, SG_KIND_ICMP = 1 };
enum { SG_DIR_INGRESS = 0, SG_DIR_EGRESS = 1 };

/* One set element: an address prefix x protocol range x port (or ICMP type<<8|code) range.
 * Invariant: lo/hi are the first/last address of prefix plen; proto_lo <= proto_hi;
 * port_lo <= port_hi. */
typedef struct SgBox {
    uint32_t group;
    uint8_t dir, fam, kind, plen;
    uint8_t proto_lo, proto_hi;
    uint16_t port_lo, port_hi;
    SgAddr lo, hi;
    int layer; /* -1: dropped (inside another box) */
} SgBox;

typedef struct SgCtx {
    SovBuf *out, *err;
    int r; /* first output error */
    SgPort *ports;
    size_t n_ports;
    SgGroup *groups; /* sorted by id */
    size_t n_groups;
    SgIp *ips;
    size_t n_ips, cap_ips;
    SgPair *pairs;
    size_t n_pairs, cap_pairs;
    uint32_t *pgroups; /* group index (into groups) per port, UINT32_MAX when unknown */
    size_t n_pgroups, cap_pgroups;
    SgMember *members;
    size_t n_members, cap_members;
    SgBox *boxes;
    size_t n_boxes, cap_boxes;
    size_t skipped; /* rules, set elements or other hosts' ports left out, the first reasons in
                     * err */
} SgCtx;

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = reallocarray(*p, n, size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int fail(SovBuf *err, int r, const char *what, size_t idx, const char *fmt, ...)
    _printf_(5, 6);
static int fail(SovBuf *err, int r, const char *what, size_t idx, const char *fmt, ...)
{
    va_list ap;
    sov_buf_printf(err, "%s %zu: ", what, idx);
    va_start(ap, fmt);
    sov_buf_vprintf(err, fmt, ap);
    va_end(ap);
    return r;
}

/* Appends " (what idx)" to a message a sov_json getter already wrote. */
static int located(SovBuf *err, int r, const char *what, size_t idx)
{
    sov_buf_printf(err, " (%s %zu)", what, idx);
    return r;
}

static bool id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SG_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || s[i] == '-'))
            return false;
    return true;
}

static bool ifname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SG_MAX_IFNAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static SgAddr addr_from_bytes(const uint8_t *b, size_t n)
{
    SgAddr a = 0;
    for (size_t i = 0; i < n; i++)
        a = a << 8 | b[i];
    return a;
}

/* Parses an address, optionally with /prefix; fam is 4 or 6 on success. */
static bool ip_parse(const char *s, bool allow_prefix, uint8_t *ret_fam, SgAddr *ret_addr,
                     uint8_t *ret_plen)
{
    char buf[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n + 1);
    char *slash = strchr(buf, '/');
    long plen = -1;
    if (slash) {
        if (!allow_prefix)
            return false;
        *slash = '\0';
        const char *p = slash + 1;
        size_t pl = strlen(p);
        if (pl == 0 || pl > 3)
            return false;
        plen = 0;
        for (size_t i = 0; i < pl; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false;
            plen = plen * 10 + (p[i] - '0');
        }
    }
    uint8_t bytes[16];
    uint8_t fam;
    if (inet_pton(AF_INET, buf, bytes) == 1)
        fam = 4;
    else if (inet_pton(AF_INET6, buf, bytes) == 1)
        fam = 6;
    else
        return false;
    unsigned bits = fam == 4 ? 32 : 128;
    if (plen < 0)
        plen = bits;
    if (plen > (long)bits)
        return false;
    *ret_fam = fam;
    *ret_addr = addr_from_bytes(bytes, bits / 8);
    *ret_plen = (uint8_t)plen;
    return true;
}

static SgAddr host_mask(uint8_t fam, uint8_t plen)
{
    unsigned bits = fam == 4 ? 32 : 128;
    unsigned host = bits - plen;
    if (host == 0)
        return 0;
    if (host >= 128)
        return ~(SgAddr)0;
    return ((SgAddr)1 << host) - 1;
}

static void addr_format(uint8_t fam, SgAddr a, char *buf, size_t len)
{
    uint8_t b[16];
    size_t n = fam == 4 ? 4 : 16;
    for (size_t i = 0; i < n; i++)
        b[n - 1 - i] = (uint8_t)(a >> (8 * i));
    if (!inet_ntop(fam == 4 ? AF_INET : AF_INET6, b, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

/* ---- output ---------------------------------------------------------------------------- */

static void emit(SgCtx *c, const char *fmt, ...) _printf_(2, 3);
static void emit(SgCtx *c, const char *fmt, ...)
{
    if (c->r < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = sov_buf_vprintf(c->out, fmt, ap);
    va_end(ap);
    if (r < 0)
        c->r = r;
}

/* ---- input ------------------------------------------------------------------------------ */

static int group_cmp(const void *a, const void *b)
{
    return strcmp(((const SgGroup *)a)->id, ((const SgGroup *)b)->id);
}

static uint32_t group_find(const SgCtx *c, const char *id)
{
    SgGroup key = {.id = id};
    const SgGroup *g = bsearch(&key, c->groups, c->n_groups, sizeof(SgGroup), group_cmp);
    return g ? (uint32_t)(g - c->groups) : UINT32_MAX;
}

static int parse_groups(SgCtx *c, json_t *groups)
{
    if (!json_is_array(groups))
        return fail(c->err, -EINVAL, "groups", 0, "must be an array");
    size_t n = json_array_size(groups);
    if (n > SG_MAX_GROUPS)
        return fail(c->err, -E2BIG, "groups", n, "more than %d", SG_MAX_GROUPS);
    c->groups = calloc(n ? n : 1, sizeof(SgGroup));
    if (!c->groups)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(groups, i);
        const char *id = NULL;
        if (!json_is_object(g))
            return fail(c->err, -EINVAL, "group", i, "must be an object");
        int r = sov_json_get_string(g, "id", true, SG_MAX_ID_LEN, &id, c->err);
        if (r < 0)
            return located(c->err, r, "group", i);
        if (!id_valid(id))
            return fail(c->err, -EINVAL, "group", i, "invalid id");
        c->groups[i] = (SgGroup){.id = id, .num = (uint32_t)i};
    }
    c->n_groups = n;
    qsort(c->groups, n, sizeof(SgGroup), group_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(c->groups[i - 1].id, c->groups[i].id) == 0)
            return fail(c->err, -EINVAL, "groups", n, "duplicate id %s", c->groups[i].id);
    /* Number groups in sorted order so names do not depend on input order. */
    for (size_t i = 0; i < n; i++)
        c->groups[i].num = (uint32_t)i + 1;
    return 0;
}

static int parse_port_ips(SgCtx *c, json_t *p, SgPort *port, size_t i)
{
    json_t *ips = NULL;
    int r = sov_json_get_array(p, "fixed_ips", false, SG_MAX_PORT_IPS, &ips, c->err);
    if (r < 0)
        return located(c->err, r, "port", i);
    port->ip_off = c->n_ips;
    for (size_t k = 0; ips && k < json_array_size(ips); k++) {
        json_t *fip = json_array_get(ips, k);
        const char *s = NULL, *subnet = NULL;
        if (!json_is_object(fip))
            return fail(c->err, -EINVAL, "port", i, "fixed_ips entries must be objects");
        r = sov_json_get_string(fip, "ip_address", true, 63, &s, c->err);
        if (r >= 0)
            r = sov_json_get_string(fip, "subnet_id", false, SG_MAX_ID_LEN, &subnet, c->err);
        if (r < 0)
            return located(c->err, r, "port", i);
        if (subnet && !id_valid(subnet))
            return fail(c->err, -EINVAL, "port", i, "invalid subnet_id");
        SgIp ip;
        uint8_t plen;
        if (!ip_parse(s, false, &ip.fam, &ip.addr, &plen) || ip.addr == 0)
            return fail(c->err, -EINVAL, "port", i, "invalid ip_address");
        for (size_t m = port->ip_off; m < c->n_ips; m++)
            if (c->ips[m].fam == ip.fam && c->ips[m].addr == ip.addr)
                return fail(c->err, -EINVAL, "port", i, "duplicate ip_address");
        if (grow((void **)&c->ips, &c->cap_ips, c->n_ips + 1, sizeof(SgIp)) < 0)
            return -ENOMEM;
        c->ips[c->n_ips++] = ip;
    }
    port->n_ips = c->n_ips - port->ip_off;
    return 0;
}

static int parse_port_groups(SgCtx *c, json_t *p, SgPort *port, size_t i)
{
    json_t *sgs = NULL;
    int r = sov_json_get_array(p, "security_groups", false, SG_MAX_PORT_GROUPS, &sgs, c->err);
    if (r < 0)
        return located(c->err, r, "port", i);
    port->grp_off = c->n_pgroups;
    for (size_t k = 0; sgs && k < json_array_size(sgs); k++) {
        json_t *v = json_array_get(sgs, k);
        if (!json_is_string(v) || !id_valid(json_string_value(v)))
            return fail(c->err, -EINVAL, "port", i, "invalid security_groups entry");
        /* A group that is not listed has no rules: the port simply gets nothing from it. */
        uint32_t g = group_find(c, json_string_value(v));
        if (grow((void **)&c->pgroups, &c->cap_pgroups, c->n_pgroups + 1, sizeof(uint32_t)) < 0)
            return -ENOMEM;
        c->pgroups[c->n_pgroups++] = g;
    }
    port->n_grps = c->n_pgroups - port->grp_off;
    return 0;
}

/* A pair's MAC defaults to the port's; a port without one (not on this host) only lends its
 * pairs' prefixes to remote groups, where the MAC does not matter. */
static int parse_port_pairs(SgCtx *c, json_t *p, SgPort *port, size_t i)
{
    json_t *pairs = NULL;
    int r =
        sov_json_get_array(p, "allowed_address_pairs", false, SG_MAX_PORT_PAIRS, &pairs, c->err);
    if (r < 0)
        return located(c->err, r, "port", i);
    port->pair_off = c->n_pairs;
    for (size_t k = 0; pairs && k < json_array_size(pairs); k++) {
        json_t *e = json_array_get(pairs, k);
        const char *s = NULL, *mac = NULL;
        if (!json_is_object(e))
            return fail(c->err, -EINVAL, "port", i,
                        "allowed_address_pairs entries must be objects");
        r = sov_json_get_string(e, "ip_address", true, 63, &s, c->err);
        if (r >= 0)
            r = sov_json_get_string(e, "mac_address", false, 17, &mac, c->err);
        if (r < 0)
            return located(c->err, r, "port", i);
        SgPair pair = {.plen = 0};
        if (!ip_parse(s, true, &pair.ip.fam, &pair.ip.addr, &pair.plen))
            return fail(c->err, -EINVAL, "port", i, "invalid allowed_address_pairs ip_address");
        pair.ip.addr &= ~host_mask(pair.ip.fam, pair.plen);
        if (mac && (!sov_mac_parse(mac, pair.mac) || !sov_mac_unicast(pair.mac)))
            return fail(c->err, -EINVAL, "port", i, "invalid allowed_address_pairs mac_address");
        if (!mac)
            memcpy(pair.mac, port->mac, sizeof(pair.mac));
        if (grow((void **)&c->pairs, &c->cap_pairs, c->n_pairs + 1, sizeof(SgPair)) < 0)
            return -ENOMEM;
        c->pairs[c->n_pairs++] = pair;
    }
    port->n_pairs = c->n_pairs - port->pair_off;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Two ports on one device would make the verdict maps ambiguous (nft refuses them anyway). */
static int check_devs(SgCtx *c)
{
    _cleanup_free_ const char **devs = calloc(c->n_ports ? c->n_ports : 1, sizeof(char *));
    size_t n = 0;
    if (!devs)
        return -ENOMEM;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].dev)
            devs[n++] = c->ports[i].dev;
    qsort(devs, n, sizeof(char *), str_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(devs[i - 1], devs[i]) == 0)
            return fail(c->err, -EINVAL, "ports", n, "duplicate _dev %s", devs[i]);
    return 0;
}

/* Counts a port, rule or element left out; the first few reasons stay in err, "; " after
 * each (sg_compile trims the last). */
#define SG_MAX_REASONS 4
static void skip(SgCtx *c, size_t mark)
{
    if (++c->skipped > SG_MAX_REASONS) {
        c->err->len = mark; /* enough said: the count tells the rest */
        if (c->err->ptr)
            c->err->ptr[mark] = '\0';
    } else {
        sov_buf_puts(c->err, "; ");
    }
}

static int parse_port(SgCtx *c, json_t *p, size_t i, uint32_t *n_local);

/* A port of another host (no "_dev") that does not validate is left out: it only narrows the
 * members of its groups. One of this host's fails the compile. */
static int parse_ports(SgCtx *c, json_t *ports)
{
    if (!json_is_array(ports))
        return fail(c->err, -EINVAL, "ports", 0, "must be an array");
    size_t n = json_array_size(ports);
    if (n > SG_MAX_PORTS)
        return fail(c->err, -E2BIG, "ports", n, "more than %d", SG_MAX_PORTS);
    c->ports = calloc(n ? n : 1, sizeof(SgPort));
    if (!c->ports)
        return -ENOMEM;
    uint32_t n_local = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(ports, i);
        size_t mark = c->err->len;
        int r = parse_port(c, p, i, &n_local);
        json_t *dev = json_object_get(p, "_dev");
        if ((r == -EINVAL || r == -E2BIG) && (!dev || json_is_null(dev))) {
            c->ports[i] = (SgPort){.id = ""};
            skip(c, mark);
        } else if (r < 0) {
            return r;
        }
    }
    c->n_ports = n;
    return check_devs(c);
}

static int parse_port(SgCtx *c, json_t *p, size_t i, uint32_t *n_local)
{
    SgPort *port = &c->ports[i];
    const char *mac = NULL, *owner = NULL;
    bool secured = true;
    if (!json_is_object(p))
        return fail(c->err, -EINVAL, "port", i, "must be an object");
    int r = sov_json_get_string(p, "id", true, SG_MAX_ID_LEN, &port->id, c->err);
    if (r >= 0)
        r = sov_json_get_string(p, "mac_address", false, 17, &mac, c->err);
    if (r >= 0)
        r = sov_json_get_string(p, "device_owner", false, 255, &owner, c->err);
    if (r >= 0)
        r = sov_json_get_string(p, "_dev", false, SG_MAX_IFNAME_LEN, &port->dev, c->err);
    if (r >= 0)
        r = sov_json_get_string(p, "_bridge", false, SG_MAX_IFNAME_LEN, &port->bridge, c->err);
    if (r >= 0)
        r = sov_json_get_bool(p, "port_security_enabled", false, &secured, c->err);
    if (r < 0)
        return located(c->err, r, "port", i);
    if (!id_valid(port->id))
        return fail(c->err, -EINVAL, "port", i, "invalid id");
    if (mac && !sov_mac_parse(mac, port->mac))
        return fail(c->err, -EINVAL, "port", i, "invalid mac_address");
    port->has_mac = mac != NULL;
    if (port->dev && !ifname_valid(port->dev))
        return fail(c->err, -EINVAL, "port", i, "invalid _dev");
    if (port->bridge && !ifname_valid(port->bridge))
        return fail(c->err, -EINVAL, "port", i, "invalid _bridge");
    if (!port->dev)
        port->bridge = NULL;
    r = parse_port_ips(c, p, port, i);
    if (r >= 0)
        r = parse_port_pairs(c, p, port, i);
    if (r >= 0)
        r = parse_port_groups(c, p, port, i);
    if (r < 0)
        return r;
    port->filtered = port->dev && secured && !(owner && strncmp(owner, "network:", 8) == 0);
    if (port->filtered) {
        if (!port->has_mac)
            return fail(c->err, -EINVAL, "port", i, "'mac_address' is required");
        if (++*n_local > SG_MAX_LOCAL_PORTS)
            return fail(c->err, -E2BIG, "ports", i, "more than %d on this host",
                        SG_MAX_LOCAL_PORTS);
        port->num = *n_local;
        for (size_t k = 0; k < port->n_grps; k++)
            if (c->pgroups[port->grp_off + k] != UINT32_MAX)
                c->groups[c->pgroups[port->grp_off + k]].used = true;
    }
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const SgMember *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->ip.fam != y->ip.fam)
        return x->ip.fam < y->ip.fam ? -1 : 1;
    if (x->ip.addr != y->ip.addr)
        return x->ip.addr < y->ip.addr ? -1 : 1;
    if (x->plen != y->plen)
        return x->plen < y->plen ? -1 : 1;
    return 0;
}

static int member_add(SgCtx *c, uint32_t group, SgIp ip, uint8_t plen)
{
    if (c->n_members >= SG_MAX_BOXES)
        return fail(c->err, -E2BIG, "ports", c->n_ports, "more than %u group memberships",
                    SG_MAX_BOXES);
    if (grow((void **)&c->members, &c->cap_members, c->n_members + 1, sizeof(SgMember)) < 0)
        return -ENOMEM;
    c->members[c->n_members++] = (SgMember){.group = group, .plen = plen, .ip = ip};
    return 0;
}

/* Members of every group: the fixed IPs and allowed address pairs of all listed ports that
 * carry it. */
static int collect_members(SgCtx *c)
{
    for (size_t i = 0; i < c->n_ports; i++) {
        const SgPort *p = &c->ports[i];
        for (size_t g = 0; g < p->n_grps; g++) {
            uint32_t gi = c->pgroups[p->grp_off + g];
            int r = 0;
            if (gi == UINT32_MAX)
                continue;
            for (size_t k = 0; r >= 0 && k < p->n_ips; k++) {
                SgIp ip = c->ips[p->ip_off + k];
                r = member_add(c, gi, ip, ip.fam == 4 ? 32 : 128);
            }
            for (size_t k = 0; r >= 0 && k < p->n_pairs; k++)
                r = member_add(c, gi, c->pairs[p->pair_off + k].ip, c->pairs[p->pair_off + k].plen);
            if (r < 0)
                return r;
        }
    }
    if (c->n_members)
        qsort(c->members, c->n_members, sizeof(SgMember), member_cmp);
    for (size_t i = 0; i < c->n_members;) {
        size_t j = i;
        while (j < c->n_members && c->members[j].group == c->members[i].group)
            j++;
        c->groups[c->members[i].group].mem_off = i;
        c->groups[c->members[i].group].n_mem = j - i;
        i = j;
    }
    return 0;
}

static const struct {
    const char *name;
    uint8_t num;
} protocols[] = {
    {"ah", 51},         {"dccp", 33},      {"egp", 8},       {"esp", 50},        {"gre", 47},
    {"hopopt", 0},      {"icmp", 1},       {"igmp", 2},      {"ipip", 4},        {"ipv6-encap", 41},
    {"ipv6-frag", 44},  {"ipv6-icmp", 58}, {"icmpv6", 58},   {"ipv6-nonxt", 59}, {"ipv6-opts", 60},
    {"ipv6-route", 43}, {"ospf", 89},      {"pgm", 113},     {"rsvp", 46},       {"sctp", 132},
    {"tcp", 6},         {"udp", 17},       {"udplite", 136}, {"vrrp", 112},
};

/* 1 with *ret set for a protocol, 0 for "any" (null, absent or "any"), -EINVAL otherwise. */
static int protocol_parse(json_t *v, uint8_t *ret)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0 || json_integer_value(v) > 255)
            return -EINVAL;
        *ret = (uint8_t)json_integer_value(v);
        return 1;
    }
    if (!json_is_string(v))
        return -EINVAL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n != strlen(s) || n == 0 || n > 16)
        return -EINVAL;
    if (strcmp(s, "any") == 0)
        return 0;
    for (size_t i = 0; i < ELEMENTSOF(protocols); i++)
        if (strcmp(s, protocols[i].name) == 0) {
            *ret = protocols[i].num;
            return 1;
        }
    if (n > 3)
        return -EINVAL;
    unsigned num = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        num = num * 10 + (unsigned)(s[i] - '0');
    }
    if (num > 255)
        return -EINVAL;
    *ret = (uint8_t)num;
    return 1;
}

static bool proto_has_ports(uint8_t p)
{
    return p == 6 || p == 17 || p == 33 || p == 132 || p == 136;
}

static int box_add(SgCtx *c, const SgBox *b)
{
    if (c->n_boxes >= SG_MAX_BOXES)
        return fail(c->err, -E2BIG, "rules", c->n_boxes, "expand to more than %u set elements",
                    SG_MAX_BOXES);
    if (grow((void **)&c->boxes, &c->cap_boxes, c->n_boxes + 1, sizeof(SgBox)) < 0)
        return -ENOMEM;
    c->boxes[c->n_boxes++] = *b;
    return 0;
}

/* Validates one rule and turns it into boxes (one per member IP for a remote group). */
static int parse_rule(SgCtx *c, json_t *rule, size_t i)
{
    const char *id = NULL, *gid = NULL, *dir = NULL, *eth = NULL, *prefix = NULL, *rgid = NULL;
    int64_t pmin = -1, pmax = -1;
    if (!json_is_object(rule))
        return fail(c->err, -EINVAL, "rule", i, "must be an object");
    int r = sov_json_get_string(rule, "id", true, SG_MAX_ID_LEN, &id, c->err);
    if (r >= 0)
        r = sov_json_get_string(rule, "security_group_id", true, SG_MAX_ID_LEN, &gid, c->err);
    if (r >= 0)
        r = sov_json_get_string(rule, "direction", true, 16, &dir, c->err);
    if (r >= 0)
        r = sov_json_get_string(rule, "ethertype", true, 16, &eth, c->err);
    if (r >= 0)
        r = sov_json_get_string(rule, "remote_ip_prefix", false, 63, &prefix, c->err);
    if (r >= 0)
        r = sov_json_get_string(rule, "remote_group_id", false, SG_MAX_ID_LEN, &rgid, c->err);
    if (r >= 0)
        r = sov_json_get_int(rule, "port_range_min", false, 0, 65535, &pmin, c->err);
    if (r >= 0)
        r = sov_json_get_int(rule, "port_range_max", false, 0, 65535, &pmax, c->err);
    if (r < 0)
        return located(c->err, r, "rule", i);
    if (!id_valid(id) || !id_valid(gid) || (rgid && !id_valid(rgid)))
        return fail(c->err, -EINVAL, "rule", i, "invalid id");

    SgBox b = {.layer = 0};
    if (strcmp(dir, "ingress") == 0)
        b.dir = SG_DIR_INGRESS;
    else if (strcmp(dir, "egress") == 0)
        b.dir = SG_DIR_EGRESS;
    else
        return fail(c->err, -EINVAL, "rule", i, "direction must be ingress or egress");
    if (strcmp(eth, "IPv4") == 0)
        b.fam = 4;
    else if (strcmp(eth, "IPv6") == 0)
        b.fam = 6;
    else
        return fail(c->err, -EINVAL, "rule", i, "ethertype must be IPv4 or IPv6");

    uint8_t proto = 0;
    r = protocol_parse(json_object_get(rule, "protocol"), &proto);
    if (r < 0)
        return fail(c->err, -EINVAL, "rule", i, "invalid protocol");
    bool any = r == 0;
    if (!any && proto == 1 && b.fam == 6)
        proto = 58; /* Neutron accepts "icmp" for IPv6 rules and means ICMPv6 */
    if (!any && proto == 58 && b.fam == 4)
        return fail(c->err, -EINVAL, "rule", i, "icmpv6 in an IPv4 rule");

    b.kind = SG_KIND_DPORT;
    b.proto_lo = any ? 0 : proto;
    b.proto_hi = any ? 255 : proto;
    b.port_lo = 0;
    b.port_hi = 65535;
    if (!any && (proto == 1 || proto == 58)) {
        if (pmin > 255 || pmax > 255)
            return fail(c->err, -EINVAL, "rule", i, "ICMP type and code are at most 255");
        if (pmax >= 0 && pmin < 0)
            return fail(c->err, -EINVAL, "rule", i, "ICMP code without type");
        if (pmin >= 0) {
            /* th sport of an ICMP packet is type << 8 | code. */
            b.kind = SG_KIND_ICMP;
            b.port_lo = (uint16_t)(pmin << 8 | (pmax >= 0 ? pmax : 0));
            b.port_hi = (uint16_t)(pmin << 8 | (pmax >= 0 ? pmax : 255));
        }
    } else if (!any && proto_has_ports(proto)) {
        if (pmax >= 0 && pmin < 0)
            return fail(c->err, -EINVAL, "rule", i, "port_range_max without port_range_min");
        if (pmin >= 0) {
            if (pmax < 0)
                pmax = pmin;
            if (pmin > pmax)
                return fail(c->err, -EINVAL, "rule", i, "port_range_min > port_range_max");
            b.port_lo = (uint16_t)pmin;
            b.port_hi = (uint16_t)pmax;
        }
    } else if (pmin >= 0 || pmax >= 0) {
        return fail(c->err, -EINVAL, "rule", i, "port range for a protocol without ports");
    }

    if (prefix && rgid)
        return fail(c->err, -EINVAL, "rule", i, "both remote_ip_prefix and remote_group_id");
    b.plen = 0;
    b.lo = 0;
    if (prefix) {
        uint8_t fam;
        SgAddr a;
        if (!ip_parse(prefix, true, &fam, &a, &b.plen))
            return fail(c->err, -EINVAL, "rule", i, "invalid remote_ip_prefix");
        if (fam != b.fam)
            return fail(c->err, -EINVAL, "rule", i, "remote_ip_prefix does not match ethertype");
        b.lo = a & ~host_mask(fam, b.plen);
    }
    b.hi = b.lo | host_mask(b.fam, b.plen);

    uint32_t g = group_find(c, gid);
    if (g == UINT32_MAX || !c->groups[g].used)
        return 0; /* validated, but no port of this host needs it */
    b.group = g;
    if (!rgid)
        return box_add(c, &b);
    uint32_t rg = group_find(c, rgid);
    if (rg == UINT32_MAX)
        return 0; /* an unknown group has no members */
    for (size_t k = 0; k < c->groups[rg].n_mem; k++) {
        const SgMember *m = &c->members[c->groups[rg].mem_off + k];
        if (m->ip.fam != b.fam)
            continue;
        b.plen = m->plen;
        b.lo = m->ip.addr;
        b.hi = b.lo | host_mask(b.fam, b.plen);
        r = box_add(c, &b);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A rule that does not validate is left out rather than failing the compile: rules only allow,
 * so the rule's traffic stays dropped, and no other port's filtering is held up by it. */
static int parse_rules(SgCtx *c, json_t *rules)
{
    if (!json_is_array(rules))
        return fail(c->err, -EINVAL, "rules", 0, "must be an array");
    size_t n = json_array_size(rules);
    if (n > SG_MAX_RULES)
        return fail(c->err, -E2BIG, "rules", n, "more than %d", SG_MAX_RULES);
    for (size_t i = 0; i < n; i++) {
        size_t mark = c->err->len;
        int r = parse_rule(c, json_array_get(rules, i), i);
        if (r == -EINVAL)
            skip(c, mark);
        else if (r < 0)
            return r;
    }
    return 0;
}

/* ---- overlap removal ---------------------------------------------------------------------- */

static bool same_bucket(const SgBox *a, const SgBox *b)
{
    return a->group == b->group && a->dir == b->dir && a->fam == b->fam && a->kind == b->kind;
}

static int box_cmp(const void *pa, const void *pb)
{
    const SgBox *a = pa, *b = pb;
#define CMP(x, y)                                                                                  \
    if ((x) != (y))                                                                                \
        return (x) < (y) ? -1 : 1;
    CMP(a->group, b->group)
    CMP(a->dir, b->dir)
    CMP(a->fam, b->fam)
    CMP(a->kind, b->kind)
    CMP(a->lo, b->lo)
    CMP(b->hi, a->hi) /* wider first */
    CMP(a->proto_lo, b->proto_lo)
    CMP(b->proto_hi, a->proto_hi)
    CMP(a->port_lo, b->port_lo)
    CMP(b->port_hi, a->port_hi)
#undef CMP
    return 0;
}

static bool box_contains(const SgBox *a, const SgBox *b)
{
    return a->lo <= b->lo && a->hi >= b->hi && a->proto_lo <= b->proto_lo &&
           a->proto_hi >= b->proto_hi && a->port_lo <= b->port_lo && a->port_hi >= b->port_hi;
}

static bool box_overlaps(const SgBox *a, const SgBox *b)
{
    return a->lo <= b->hi && b->lo <= a->hi && a->proto_lo <= b->proto_hi &&
           b->proto_lo <= a->proto_hi && a->port_lo <= b->port_hi && b->port_lo <= a->port_hi;
}

/* Sorted by address, each box is compared with the later boxes whose address range starts
 * inside its own: a box inside another is dropped, a partial overlap forbids the earlier box's
 * layer to the later one, which takes the lowest layer left. */
static int assign_layers(SgCtx *c)
{
    if (c->n_boxes)
        qsort(c->boxes, c->n_boxes, sizeof(SgBox), box_cmp);
    /* Boxes of one protocol and the same addresses whose ports overlap or touch are one range
     * (rules only allow, so the union is what they say): many rules sliding over each other's
     * ports then need no layers. Sorted by port_lo, so the merged list stays sorted. */
    size_t kept = 0;
    for (size_t i = 0; i < c->n_boxes; i++) {
        SgBox *p = kept ? &c->boxes[kept - 1] : NULL, *b = &c->boxes[i];
        if (p && same_bucket(p, b) && p->lo == b->lo && p->hi == b->hi &&
            p->proto_lo == p->proto_hi && b->proto_lo == p->proto_lo &&
            b->proto_hi == p->proto_hi && (unsigned)b->port_lo <= (unsigned)p->port_hi + 1) {
            p->port_hi = SOV_MAX(p->port_hi, b->port_hi);
            continue;
        }
        c->boxes[kept++] = *b;
    }
    c->n_boxes = kept;
    _cleanup_free_ uint64_t *forbid = calloc(c->n_boxes ? c->n_boxes : 1, sizeof(uint64_t));
    _cleanup_free_ size_t *run_end = calloc(c->n_boxes ? c->n_boxes : 1, sizeof(size_t));
    if (!forbid || !run_end)
        return -ENOMEM;
    /* run_end[i]: one past the last box with box i's bucket and address range. */
    for (size_t i = c->n_boxes; i-- > 0;) {
        const SgBox *a = &c->boxes[i], *b = i + 1 < c->n_boxes ? &c->boxes[i + 1] : NULL;
        bool same = b && same_bucket(a, b) && a->lo == b->lo && a->hi == b->hi;
        run_end[i] = same ? run_end[i + 1] : i + 1;
        c->boxes[i].layer = 0;
    }
    for (size_t i = 0; i < c->n_boxes; i++) {
        SgBox *a = &c->boxes[i];
        if (a->layer < 0)
            continue;
        if (forbid[i] == UINT64_MAX) { /* left out (less allowed), not the whole compile */
            size_t mark = c->err->len;
            sov_buf_printf(c->err,
                           "group %s: more than 64 partially overlapping rules of one direction, "
                           "family and kind (one element left out)",
                           c->groups[a->group].id);
            skip(c, mark);
            a->layer = -1;
            continue;
        }
        a->layer = __builtin_ctzll(~forbid[i]);
        for (size_t j = i + 1; j < c->n_boxes; j++) {
            SgBox *b = &c->boxes[j];
            if (!same_bucket(a, b) || b->lo > a->hi)
                break;
            /* Same addresses, sorted by protocol then port: once past a's protocol (or a's
             * ports of its one protocol), nothing else with these addresses overlaps a. */
            if (b->lo == a->lo && b->hi == a->hi &&
                (b->proto_lo > a->proto_hi ||
                 (a->proto_lo == a->proto_hi && b->proto_lo == a->proto_lo &&
                  b->port_lo > a->port_hi))) {
                j = run_end[j] - 1;
                continue;
            }
            if (b->layer < 0 || !box_overlaps(a, b))
                continue;
            if (box_contains(a, b)) {
                b->layer = -1;
            } else if (box_contains(b, a)) {
                a->layer = -1;
                break;
            } else {
                forbid[j] |= UINT64_C(1) << a->layer;
            }
        }
    }
    return 0;
}

/* ---- emission ------------------------------------------------------------------------------ */

static void emit_range(SgCtx *c, unsigned lo, unsigned hi)
{
    if (lo == hi)
        emit(c, "%u", lo);
    else
        emit(c, "%u-%u", lo, hi);
}

static const char dir_tag[] = "ie";

/* The sets of one group (boxes [from, to), sorted, so grouped by bucket) and its two chains,
 * each one lookup per set. A used group without rules still gets its (empty) chains: port
 * chains jump to them. */
static void emit_group(SgCtx *c, const SgGroup *g, size_t from, size_t to)
{
    SovBuf rules[2] = {SOV_BUF_INIT, SOV_BUF_INIT};
    for (size_t i = from; i < to;) {
        size_t j = i;
        int max_layer = -1;
        while (j < to && same_bucket(&c->boxes[i], &c->boxes[j])) {
            max_layer = SOV_MAX(max_layer, c->boxes[j].layer);
            j++;
        }
        const SgBox *f = &c->boxes[i];
        for (int layer = 0; layer <= max_layer; layer++) {
            size_t count = 0;
            for (size_t k = i; k < j; k++)
                count += c->boxes[k].layer == layer;
            if (count == 0)
                continue; /* its boxes all turned out to lie inside others */
            char name[64];
            snprintf(name, sizeof(name), "s%u_%c%u%c%d", g->num, dir_tag[f->dir], f->fam,
                     f->kind == SG_KIND_ICMP ? 't' : 'p', layer);
            emit(c, "  set %s {\n    type %s . inet_proto . inet_service; flags interval;\n", name,
                 f->fam == 4 ? "ipv4_addr" : "ipv6_addr");
            emit(c, "    elements = {");
            bool first = true;
            for (size_t k = i; k < j; k++) {
                const SgBox *b = &c->boxes[k];
                if (b->layer != layer)
                    continue;
                char addr[INET6_ADDRSTRLEN];
                addr_format(b->fam, b->lo, addr, sizeof(addr));
                emit(c, "%s\n      %s", first ? "" : ",", addr);
                if (b->plen != (b->fam == 4 ? 32 : 128))
                    emit(c, "/%u", b->plen);
                emit(c, " . ");
                emit_range(c, b->proto_lo, b->proto_hi);
                emit(c, " . ");
                emit_range(c, b->port_lo, b->port_hi);
                first = false;
            }
            emit(c, " }\n  }\n");
            int r = sov_buf_printf(&rules[f->dir], "    %s %s . meta l4proto . th %s @%s accept\n",
                                   f->fam == 4 ? "ip" : "ip6",
                                   f->dir == SG_DIR_INGRESS ? "saddr" : "daddr",
                                   f->kind == SG_KIND_ICMP ? "sport" : "dport", name);
            if (r < 0 && c->r >= 0)
                c->r = r;
        }
        i = j;
    }
    for (int d = 0; d < 2; d++) {
        emit(c, "  chain g%u_%c { # group %s %s\n", g->num, dir_tag[d], g->id,
             d == SG_DIR_INGRESS ? "ingress" : "egress");
        if (rules[d].len)
            emit(c, "%s", rules[d].ptr);
        emit(c, "  }\n");
        sov_buf_release(&rules[d]);
    }
}

/* One source a port may send from: a MAC with an address prefix (host bits clear). */
typedef struct SgSrc {
    uint8_t mac[6];
    uint8_t plen;
    bool dropped; /* inside another source of the same MAC: left out of the set */
    SgAddr addr;
} SgSrc;

/* Per family: the port's MAC with its fixed IPs and one or two implicit addresses, and per
 * pair its prefix, plus for IPv6 its MAC's :: and link-local address. */
#define SG_MAX_SRCS (SG_MAX_PORT_IPS + 3 * SG_MAX_PORT_PAIRS + 2)

/* IPv6 link-local address of a MAC (modified EUI-64). */
static SgAddr link_local(const uint8_t mac[6])
{
    const uint8_t ll[16] = {0xfe, 0x80, [8] = mac[0] ^ 2, mac[1], mac[2],
                            0xff, 0xfe, mac[3],           mac[4], mac[5]};
    return addr_from_bytes(ll, 16);
}

static void src_add(SgSrc *v, size_t *n, const uint8_t mac[6], uint8_t plen, SgAddr addr)
{
    if (*n >= SG_MAX_SRCS)
        return; /* not reached: the bounds of sg.h keep n within SG_MAX_SRCS */
    v[*n] = (SgSrc){.plen = plen, .addr = addr};
    memcpy(v[*n].mac, mac, 6);
    (*n)++;
}

/* The sources of family fam that port p may send from. The kernel refuses overlapping
 * elements in one set, so a source inside another of the same MAC (or equal to an earlier
 * one) is marked dropped; CIDRs either nest or are disjoint, so the rest never overlap. */
static size_t port_srcs(const SgCtx *c, const SgPort *p, uint8_t fam, SgSrc v[SG_MAX_SRCS])
{
    uint8_t host = fam == 4 ? 32 : 128;
    size_t n = 0;
    src_add(v, &n, p->mac, host, 0); /* 0.0.0.0 (DHCP, ARP probes) or :: (DAD) */
    if (fam == 6)
        src_add(v, &n, p->mac, host, link_local(p->mac));
    for (size_t k = 0; k < p->n_ips; k++)
        if (c->ips[p->ip_off + k].fam == fam)
            src_add(v, &n, p->mac, host, c->ips[p->ip_off + k].addr);
    for (size_t k = 0; k < p->n_pairs; k++) {
        const SgPair *pair = &c->pairs[p->pair_off + k];
        if (pair->ip.fam != fam)
            continue;
        src_add(v, &n, pair->mac, pair->plen, pair->ip.addr);
        if (fam == 6) {
            src_add(v, &n, pair->mac, host, 0);
            src_add(v, &n, pair->mac, host, link_local(pair->mac));
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n && !v[i].dropped; j++)
            if (j != i && !memcmp(v[i].mac, v[j].mac, 6) && v[j].plen <= v[i].plen &&
                (v[i].addr & ~host_mask(fam, v[j].plen)) == v[j].addr &&
                (v[j].plen < v[i].plen || j < i))
                v[i].dropped = true;
    return n;
}

/* "    match != { mac . addr, ... } drop" over the sources left; ARP keys are
 * mac . mac . addr (frame and ARP sender hardware address). */
static void emit_srcs(SgCtx *c, const char *match, uint8_t fam, const SgSrc *v, size_t n, bool arp)
{
    bool first = true;
    emit(c, "    %s != {", match);
    for (size_t i = 0; i < n; i++) {
        if (v[i].dropped)
            continue;
        char mac[18], addr[INET6_ADDRSTRLEN];
        sov_mac_format(v[i].mac, mac);
        addr_format(fam, v[i].addr, addr, sizeof(addr));
        emit(c, "%s %s . ", first ? "" : ",", mac);
        if (arp)
            emit(c, "%s . ", mac);
        emit(c, "%s", addr);
        if (v[i].plen != (fam == 4 ? 32 : 128))
            emit(c, "/%u", v[i].plen);
        first = false;
    }
    emit(c, " } drop\n");
}

/* The port's anti-spoofing chain (see the top of this file). */
static void emit_port_from(SgCtx *c, const SgPort *p)
{
    SgSrc v[SG_MAX_SRCS];
    char mac[18];
    sov_mac_format(p->mac, mac);
    emit(c, "  chain p%u_from { # port %s dev %s\n    meta mark set 0x%08x\n", p->num, p->id,
         p->dev, p->num);
    bool other = false; /* a pair with another MAC */
    for (size_t k = 0; k < p->n_pairs; k++)
        other |= memcmp(c->pairs[p->pair_off + k].mac, p->mac, 6) != 0;
    if (!other) {
        emit(c, "    ether saddr != %s drop\n", mac);
    } else {
        emit(c, "    ether saddr != { %s", mac);
        for (size_t k = 0; k < p->n_pairs; k++) {
            const uint8_t *m = c->pairs[p->pair_off + k].mac;
            bool seen = !memcmp(m, p->mac, 6);
            for (size_t j = 0; j < k && !seen; j++)
                seen = !memcmp(c->pairs[p->pair_off + j].mac, m, 6);
            if (seen)
                continue;
            char pm[18];
            sov_mac_format(m, pm);
            emit(c, ", %s", pm);
        }
        emit(c, " } drop\n");
    }
    size_t n = port_srcs(c, p, 4, v);
    emit_srcs(c, "ether saddr . arp saddr ether . arp saddr ip", 4, v, n, true);
    emit(c, "    ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n");
    emit_srcs(c, "ether saddr . ip saddr", 4, v, n, false);
    emit(c, "    ip saddr 0.0.0.0 drop\n");
    n = port_srcs(c, p, 6, v);
    emit_srcs(c, "ether saddr . ip6 saddr", 6, v, n, false);
    emit(c, "    ether type != { ip, ip6, arp } drop\n  }\n");
}

static void emit_bridge(SgCtx *c)
{
    emit(c, "table bridge sov_sg {\n  map m_src {\n    type ifname : verdict;\n");
    bool any = false;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].filtered) {
            emit(c, "%s \"%s\" : jump p%u_from", any ? "," : "    elements = {", c->ports[i].dev,
                 c->ports[i].num);
            any = true;
        }
    emit(c, "%s  }\n  map m_dst {\n    type ifname : verdict;\n", any ? " }\n" : "");
    any = false;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].filtered) {
            emit(c, "%s \"%s\" : jump p%u_to", any ? "," : "    elements = {", c->ports[i].dev,
                 c->ports[i].num);
            any = true;
        }
    emit(c, "%s  }\n", any ? " }\n" : "");
    emit(c, "  chain c_pre {\n    type filter hook prerouting priority -200; policy accept;\n"
            "    iifname vmap @m_src\n  }\n"
            "  chain c_fwd {\n    type filter hook forward priority -200; policy accept;\n"
            "    oifname vmap @m_dst\n  }\n");
    for (size_t i = 0; i < c->n_ports; i++) {
        const SgPort *p = &c->ports[i];
        if (!p->filtered)
            continue;
        emit_port_from(c, p);
        emit(c, "  chain p%u_to {\n    meta mark set meta mark & 0x0000ffff | 0x%08x\n  }\n",
             p->num, p->num << 16);
    }
    emit(c, "}\n");
}

/* One conntrack zone per bridge (numbered in name order), set before conntrack sees the
 * packet: bridged and host-bound packets carry the bridge as iifname, host-sent ones as
 * oifname. Without it two subnets with the same addresses on one host would share conntrack
 * entries, and a packet on one bridge could pass as the reply of a flow on the other. */
static int emit_zones(SgCtx *c)
{
    _cleanup_free_ const char **br = calloc(c->n_ports ? c->n_ports : 1, sizeof(char *));
    size_t n = 0;
    if (!br)
        return -ENOMEM;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].bridge)
            br[n++] = c->ports[i].bridge;
    if (n == 0)
        return 0;
    qsort(br, n, sizeof(char *), str_cmp);
    static const char *const hooks[][2] = {{"prerouting", "iifname"}, {"output", "oifname"}};
    for (size_t h = 0; h < ELEMENTSOF(hooks); h++) {
        emit(c,
             "  chain c_zone_%s {\n    type filter hook %s priority -300; policy accept;\n"
             "    ct zone set %s map {",
             hooks[h][0], hooks[h][0], hooks[h][1]);
        unsigned zone = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && strcmp(br[i - 1], br[i]) == 0)
                continue;
            emit(c, "%s \"%s\" : %u", zone ? "," : "", br[i], zone + 1);
            zone++;
        }
        emit(c, " }\n  }\n");
    }
    return 0;
}

static void emit_inet(SgCtx *c)
{
    emit(c, "table inet sov_sg {\n  map m_egress {\n    type mark : verdict;\n");
    bool any = false;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].filtered) {
            emit(c, "%s 0x%08x : jump p%u_e", any ? "," : "    elements = {", c->ports[i].num,
                 c->ports[i].num);
            any = true;
        }
    emit(c, "%s  }\n  map m_ingress {\n    type mark : verdict;\n", any ? " }\n" : "");
    any = false;
    for (size_t i = 0; i < c->n_ports; i++)
        if (c->ports[i].filtered) {
            emit(c, "%s 0x%08x : jump p%u_i", any ? "," : "    elements = {", c->ports[i].num << 16,
                 c->ports[i].num);
            any = true;
        }
    emit(c, "%s  }\n", any ? " }\n" : "");
    int zr = emit_zones(c);
    if (zr < 0 && c->r >= 0)
        c->r = zr;
    emit(c, "  chain c_pre {\n    type filter hook prerouting priority 0; policy accept;\n"
            "    meta mark & 0x0000ffff == 0 accept\n"
            "    ct state established,related accept\n    ct state invalid drop\n"
            "    meta mark & 0x0000ffff vmap @m_egress\n  }\n");
    emit(c, "  chain c_fwd {\n    type filter hook forward priority 0; policy accept;\n"
            "    meta mark & 0xffff0000 == 0 accept\n"
            "    ct state established,related accept\n    ct state invalid drop\n"
            "    meta mark & 0xffff0000 vmap @m_ingress\n  }\n");

    /* Boxes are sorted by group index, which is the order of c->groups. */
    size_t b = 0;
    for (size_t g = 0; g < c->n_groups; g++) {
        size_t from = b;
        while (b < c->n_boxes && c->boxes[b].group == g)
            b++;
        if (c->groups[g].used)
            emit_group(c, &c->groups[g], from, b);
    }

    for (size_t i = 0; i < c->n_ports; i++) {
        const SgPort *p = &c->ports[i];
        if (!p->filtered)
            continue;
        emit(c, "  chain p%u_e { # port %s egress\n", p->num, p->id);
        emit(c, "    udp sport 67 udp dport 68 drop\n    udp sport 547 udp dport 546 drop\n"
                "    icmpv6 type nd-router-advert drop\n"
                "    meta nfproto ipv4 udp sport 68 udp dport 67 accept\n"
                "    meta nfproto ipv6 udp sport 546 udp dport 547 accept\n"
                "    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, "
                "mld-listener-report, mld2-listener-report } accept\n");
        for (size_t k = 0; k < p->n_grps; k++) {
            uint32_t g = c->pgroups[p->grp_off + k];
            if (g != UINT32_MAX)
                emit(c, "    jump g%u_e\n", c->groups[g].num);
        }
        emit(c, "    drop\n  }\n");
        emit(c, "  chain p%u_i { # port %s ingress\n", p->num, p->id);
        emit(c, "    meta nfproto ipv4 udp sport 67 udp dport 68 accept\n"
                "    meta nfproto ipv6 udp sport 547 udp dport 546 accept\n"
                "    icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, "
                "mld-listener-query } accept\n");
        for (size_t k = 0; k < p->n_grps; k++) {
            uint32_t g = c->pgroups[p->grp_off + k];
            if (g != UINT32_MAX)
                emit(c, "    jump g%u_i\n", c->groups[g].num);
        }
        emit(c, "    drop\n  }\n");
    }
    emit(c, "}\n");
}

int sg_compile(json_t *ports, json_t *groups, json_t *rules, SovBuf *out, SovBuf *err)
{
    SgCtx c = {.out = out, .err = err};
    int r = parse_groups(&c, groups);
    if (r >= 0)
        r = parse_ports(&c, ports);
    if (r >= 0)
        r = collect_members(&c);
    if (r >= 0)
        r = parse_rules(&c, rules);
    if (r >= 0)
        r = assign_layers(&c);
    if (r >= 0) {
        emit(&c, "# sov-net security groups: replaces tables bridge sov_sg and inet sov_sg\n"
                 "add table bridge sov_sg\ndelete table bridge sov_sg\n"
                 "add table inet sov_sg\ndelete table inet sov_sg\n");
        emit_bridge(&c);
        emit_inet(&c);
        r = c.r;
        if (r < 0)
            sov_buf_printf(err, "script too large");
        else
            r = (int)SOV_MIN(c.skipped, (size_t)INT32_MAX);
        if (r > 0 && err->len >= 2 && !strcmp(err->ptr + err->len - 2, "; ")) {
            err->len -= 2;
            err->ptr[err->len] = '\0';
        }
    }
    free(c.ports);
    free(c.groups);
    free(c.ips);
    free(c.pairs);
    free(c.pgroups);
    free(c.members);
    free(c.boxes);
    return r;
}
