/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's dnsmasq files from Neutron documents: validates every value first (so nothing a
 * tenant typed can add a line or an option to a dnsmasq file) and renders the config, the DHCP
 * hosts file and the DNS names file (dhcp_render, dhcp.h), plus the checks and parsers dhcp.c
 * shares (dhcp-int.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dhcp.h"
#include "dhcp-int.h"

#define DHCP_FIXED_IPS_MAX 64u
#define DHCP_CACHE_SIZE    128u /* dnsmasq's DNS cache: names of one subnet and a few upstream */

void dhcp_seterr(SovBuf *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    sov_buf_reset(err);
    sov_buf_vprintf(err, fmt, ap);
    va_end(ap);
}

bool dhcp_plain_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= max && s[0] != '-' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           sov_name_ok(s);
}

bool dhcp_safe_path(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 3000 || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr(",#\"'\\", c))
            return false;
    }
    return true;
}

int dhcp_parse_ip4(const char *s, uint32_t *ret)
{
    struct in_addr a;
    if (!s || strlen(s) > 15 || inet_pton(AF_INET, s, &a) != 1)
        return -EINVAL;
    *ret = ntohl(a.s_addr);
    return 0;
}

static uint32_t prefix_mask(int plen)
{
    return plen == 0 ? 0 : 0xffffffffu << (32 - plen);
}

/* "a.b.c.d/n"; host bits are masked off (the network is what dnsmasq needs). */
static int parse_cidr4(const char *s, int min_plen, int max_plen, uint32_t *ret_net, int *ret_plen)
{
    char ip[16];
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || (size_t)(slash - s) >= sizeof(ip) || slash[1] == '\0' || strlen(slash + 1) > 2)
        return -EINVAL;
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    int plen = 0;
    for (const char *p = slash + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        plen = plen * 10 + (*p - '0');
    }
    uint32_t a;
    if (plen < min_plen || plen > max_plen || dhcp_parse_ip4(ip, &a) < 0)
        return -EINVAL;
    *ret_net = a & prefix_mask(plen);
    *ret_plen = plen;
    return 0;
}

void dhcp_ip4_str(uint32_t a, char out[16])
{
    struct in_addr in = {.s_addr = htonl(a)};
    inet_ntop(AF_INET, &in, out, 16);
}

/* A usable host address of the subnet: inside it, neither its network nor broadcast address. */
static bool host_in(uint32_t a, uint32_t net, int plen)
{
    uint32_t m = prefix_mask(plen);
    return (a & m) == net && a != net && a != (net | ~m);
}

int dhcp_parse_mac(const char *s, char out[18])
{
    if (!s || strlen(s) != 17)
        return -EINVAL;
    bool zero = true;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        if (i % 3 == 2) {
            if (c != ':')
                return -EINVAL;
            out[i] = ':';
            continue;
        }
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -EINVAL;
        zero = zero && c == '0';
        out[i] = c;
    }
    out[17] = '\0';
    unsigned first = (unsigned)strtoul((char[]){out[0], out[1], 0}, NULL, 16);
    if (zero || (first & 1))
        return -EINVAL;
    return 0;
}

const char *dhcp_jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

bool dhcp_upstream_ok(const char *s, SovBuf *out)
{
    unsigned n = 0;
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char ip[16], norm[16];
        uint32_t a;
        if (len == 0 || len >= sizeof(ip) || ++n > DHCP_DNS_MAX)
            return false;
        memcpy(ip, s, len);
        ip[len] = '\0';
        if (dhcp_parse_ip4(ip, &a) < 0)
            return false;
        dhcp_ip4_str(a, norm);
        if (out)
            sov_buf_printf(out, "server=%s\n", norm);
        s = comma ? comma + 1 : s + len;
        if (comma && !*s)
            return false;
    }
    return true;
}

typedef struct Lease {
    char mac[18];
    uint32_t ip;
    const char *port;              /* the port's id, for messages */
    const char *device, *project;  /* device_id ("" none) and project_id of the port */
    const char *since;             /* its created_at ("" unknown): the first port keeps a name */
    char host[DHCP_LABEL_MAX + 1]; /* its host name: dns_name, else host-a-b-c-d; "" none */
    bool named;                    /* host came from dns_name */
    bool lease;                    /* the address is on the served subnet: a hosts line too */
} Lease;

static void host_default(Lease *l)
{
    snprintf(l->host, sizeof(l->host), "host-%u-%u-%u-%u", l->ip >> 24, (l->ip >> 16) & 255,
             (l->ip >> 8) & 255, l->ip & 255);
    l->named = false;
}

/* by name, then the oldest port first (created_at; unknown ones after), then by address */
static int lease_by_host(const void *a, const void *b)
{
    const Lease *x = *(Lease *const *)a, *y = *(Lease *const *)b;
    int c = strcmp(x->host, y->host);
    if (!c && (*x->since || *y->since))
        c = !*x->since ? 1 : !*y->since ? -1 : strcmp(x->since, y->since);
    return c ? c : (x->ip > y->ip) - (x->ip < y->ip);
}

static int lease_by_ip(const void *a, const void *b);

/* Whether e's chosen name is the default name host-a-b-c-d of another port of l (n leases,
 * sorted by address). */
static bool default_of_other(const Lease *l, size_t n, const Lease *e)
{
    unsigned a, b, c, d;
    Lease key = {0};
    if (sscanf(e->host, "host-%3u-%3u-%3u-%3u", &a, &b, &c, &d) != 4 || a > 255 || b > 255 ||
        c > 255 || d > 255)
        return false;
    key.ip = a << 24 | b << 16 | c << 8 | d;
    host_default(&key);
    if (strcmp(key.host, e->host) != 0)
        return false; /* "host-010-...": not the form a default takes */
    const Lease *o = bsearch(&key, l, n, sizeof(*l), lease_by_ip);
    return o && o->port != e->port;
}

/* Two leases of one port, or of ports of one device (a server's NICs) in one project. */
static bool same_owner(const Lease *a, const Lease *b)
{
    return a->port == b->port ||
           (*a->device && strcmp(a->device, b->device) == 0 && strcmp(a->project, b->project) == 0);
}

/* Every name belongs to one port, or to the ports of one device (l: n leases sorted by
 * address, each with a distinct one, so default names never collide): a dns_name that is
 * another port's default name, or that an older port of another owner also chose (created
 * earlier; the lower address when that is unknown), falls back to its own default, so a name
 * in use is not taken over by whoever comes later (on a shared network: another project). A
 * server's ports on one network thus share its name, one address record each, as in Neutron. */
static int names_unique(Lease *l, size_t n)
{
    Lease **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i].named && default_of_other(l, n, &l[i]))
            host_default(&l[i]);
        if (l[i].named)
            v[k++] = &l[i];
    }
    qsort(v, k, sizeof(*v), lease_by_host);
    for (size_t i = 1, keep = 0; i < k; i++) {
        if (strcmp(v[i]->host, v[keep]->host) == 0 && !same_owner(v[i], v[keep]))
            host_default(v[i]);
        else
            keep = i;
    }
    free(v);
    return 0;
}

/* by MAC, the leases of a MAC first (so two leases with one MAC are neighbours) */
static int lease_by_mac(const void *a, const void *b)
{
    const Lease *x = a, *y = b;
    int c = strcmp(x->mac, y->mac);
    return c ? c : (int)y->lease - (int)x->lease;
}

static int lease_by_ip(const void *a, const void *b)
{
    uint32_t x = ((const Lease *)a)->ip, y = ((const Lease *)b)->ip;
    return x < y ? -1 : x > y;
}

/* The hosts file: one MAC,IP,HOSTNAME line per port with an address on the subnet, and the
 * names file (dnsmasq's addn-hosts): one "IP FQDN HOSTNAME" line per named port, both sorted by
 * address so that the same ports in another order render the same files (and need no SIGHUP).
 * A port's host name is its dns_name when that is a valid label, else host-a-b-c-d. */
static int render_hosts(const char *subnet_id, uint32_t net, int plen, json_t *ports,
                        const char *domain, SovBuf *hosts, SovBuf *names, SovBuf *err)
{
    if (ports && !json_is_array(ports)) {
        dhcp_seterr(err, "ports must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(ports), cap = 0;
    if (n > DHCP_NET_PORTS_MAX) {
        dhcp_seterr(err, "%zu ports on the network of subnet %s, at most %u", n, subnet_id,
                    DHCP_NET_PORTS_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        cap += SOV_MIN(json_array_size(json_object_get(json_array_get(ports, i), "fixed_ips")),
                       DHCP_FIXED_IPS_MAX + 1);
    Lease *l = calloc(cap ? cap : 1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    size_t nl = 0, leases = 0;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        json_t *p = json_array_get(ports, i), *ips = json_object_get(p, "fixed_ips");
        const char *pid = dhcp_jstr(p, "id") && dhcp_plain_name(dhcp_jstr(p, "id"), DHCP_ID_MAX)
                              ? dhcp_jstr(p, "id")
                              : "?";
        if (!json_is_object(p) || (ips && !json_is_array(ips)) ||
            json_array_size(ips) > DHCP_FIXED_IPS_MAX) {
            dhcp_seterr(err, "port #%zu (%s) is not a port document", i, pid);
            r = -EINVAL;
            break;
        }
        /* every IPv4 address of the port gets its name; the first one on the served subnet
         * a lease too (DHCP hands out one address per MAC) */
        json_t *fip;
        size_t j;
        bool leased = false;
        json_array_foreach(ips, j, fip)
        {
            const char *sid = dhcp_jstr(fip, "subnet_id");
            bool here = sid && strcmp(sid, subnet_id) == 0 && !leased;
            Lease *e = &l[nl];
            if (dhcp_parse_ip4(dhcp_jstr(fip, "ip_address"), &e->ip) < 0) {
                if (!here)
                    continue; /* another subnet's IPv6 address: no A record */
                dhcp_seterr(err, "port %s: ip_address is not a host address of subnet %s", pid,
                            subnet_id);
                r = -EINVAL;
            } else if (here && !host_in(e->ip, net, plen)) {
                dhcp_seterr(err, "port %s: ip_address is not a host address of subnet %s", pid,
                            subnet_id);
                r = -EINVAL;
            } else if (dhcp_parse_mac(dhcp_jstr(p, "mac_address"), e->mac) < 0) {
                dhcp_seterr(err, "port %s: mac_address is not a unicast MAC", pid);
                r = -EINVAL;
            }
            if (r < 0)
                break;
            const char *dn = dhcp_jstr(p, "dns_name");
            nl++;
            e->port = pid;
            e->device = dhcp_jstr(p, "device_id") ? dhcp_jstr(p, "device_id") : "";
            e->project = dhcp_jstr(p, "project_id") ? dhcp_jstr(p, "project_id") : "";
            e->since = dhcp_jstr(p, "created_at") ? dhcp_jstr(p, "created_at") : "";
            e->lease = here;
            leased = leased || here;
            leases += here;
            if (dn && sov_dns_label_norm(dn, strlen(dn), e->host) &&
                strlen(e->host) + 1 + strlen(domain) <= DHCP_FQDN_MAX)
                e->named = true;
            else
                host_default(e);
        }
    }
    if (r == 0 && leases > DHCP_PORTS_MAX) {
        dhcp_seterr(err, "%zu ports on subnet %s, at most %u get DHCP", leases, subnet_id,
                    DHCP_PORTS_MAX);
        r = -EINVAL;
    }
    if (r == 0) { /* leases first, by MAC */
        qsort(l, nl, sizeof(*l), lease_by_mac);
        for (size_t i = 1; i < nl && r == 0; i++)
            if (l[i].lease && l[i - 1].lease && strcmp(l[i].mac, l[i - 1].mac) == 0) {
                dhcp_seterr(err, "ports %s and %s share MAC %s", l[i - 1].port, l[i].port,
                            l[i].mac);
                r = -EINVAL;
            }
    }
    if (r == 0) {
        qsort(l, nl, sizeof(*l), lease_by_ip);
        for (size_t i = 1; i < nl && r == 0; i++)
            if (l[i].ip == l[i - 1].ip && l[i].lease && l[i - 1].lease) {
                char a[16];
                dhcp_ip4_str(l[i].ip, a);
                dhcp_seterr(err, "ports %s and %s share address %s", l[i - 1].port, l[i].port, a);
                r = -EINVAL;
            }
    }
    if (r == 0)
        r = names_unique(l, nl);
    if (r == 0) {
        for (size_t i = 0; i < nl && r == 0; i++) {
            char a[16];
            dhcp_ip4_str(l[i].ip, a);
            if (strlen(l[i].host) + 1 + strlen(domain) > DHCP_FQDN_MAX)
                l[i].host[0] = '\0'; /* no room for the FQDN: the port goes nameless */
            /* the FQDN, never the bare label: dnsmasq reads a label like "ignore", "infinite"
             * or "12h" in a dhcp-host line as a keyword or a lease time */
            if ((l[i].lease &&
                 sov_buf_printf(hosts, "%s,%s%s%s%s%s\n", l[i].mac, a, l[i].host[0] ? "," : "",
                                l[i].host, l[i].host[0] ? "." : "",
                                l[i].host[0] ? domain : "") < 0) ||
                (l[i].host[0] &&
                 sov_buf_printf(names, "%s %s.%s %s\n", a, l[i].host, domain, l[i].host) < 0))
                r = -ENOMEM;
        }
    }
    free(l);
    return r;
}

/* Classless static routes (RFC 3442, option 121): host_routes, plus the default route through
 * the gateway, since a client that gets option 121 ignores the router option. */
static int render_routes(json_t *routes, const char *gw, uint32_t net, int plen, SovBuf *conf,
                         SovBuf *err)
{
    if (routes && !json_is_array(routes)) {
        dhcp_seterr(err, "host_routes must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(routes);
    if (n == 0)
        return 0;
    if (n > DHCP_ROUTES_MAX) {
        dhcp_seterr(err, "%zu host_routes, at most %u", n, DHCP_ROUTES_MAX);
        return -EINVAL;
    }
    SovBuf v = SOV_BUF_INIT;
    bool has_default = false;
    json_t *rt;
    size_t i;
    json_array_foreach(routes, i, rt)
    {
        uint32_t dnet, hop;
        int dlen;
        char d[16], h[16];
        if (parse_cidr4(dhcp_jstr(rt, "destination"), 0, 32, &dnet, &dlen) < 0 ||
            dhcp_parse_ip4(dhcp_jstr(rt, "nexthop"), &hop) < 0 || !host_in(hop, net, plen)) {
            sov_buf_release(&v);
            dhcp_seterr(err,
                        "host_routes[%zu] needs an IPv4 destination CIDR and a nexthop on the "
                        "subnet",
                        i);
            return -EINVAL;
        }
        has_default = has_default || dlen == 0;
        dhcp_ip4_str(dnet, d);
        dhcp_ip4_str(hop, h);
        sov_buf_printf(&v, ",%s/%d,%s", d, dlen, h);
    }
    if (gw && !has_default)
        sov_buf_printf(&v, ",0.0.0.0/0,%s", gw);
    int r = sov_buf_printf(conf, "dhcp-option=option:classless-static-route%s\n", v.ptr);
    sov_buf_release(&v);
    return r < 0 ? -ENOMEM : 0;
}

bool dhcp_dns_ok(const char *dns_upstream, const char *dns_domain)
{
    char dom[DHCP_FQDN_MAX + 1];
    return dhcp_upstream_ok(dns_upstream, NULL) &&
           (!dns_domain || !*dns_domain || sov_dns_name_norm(dns_domain, dom));
}

int dhcp_render(const char *dir, const char *ifname, const char *server_ip, json_t *subnet,
                json_t *ports, const DhcpOpts *o, SovBuf *conf, SovBuf *hosts, SovBuf *names,
                SovBuf *err)
{
    const char *id = dhcp_jstr(subnet, "id");
    if (!json_is_object(subnet) || !dhcp_plain_name(id, DHCP_ID_MAX)) {
        dhcp_seterr(err, "subnet needs an id of letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    json_t *ver = json_object_get(subnet, "ip_version");
    if (ver && !json_is_null(ver) && (!json_is_integer(ver) || json_integer_value(ver) != 4)) {
        dhcp_seterr(err, "subnet %s: only IPv4 subnets get DHCP", id);
        return -EINVAL;
    }
    uint32_t net, sip, gw = 0, tmp;
    int plen;
    if (parse_cidr4(dhcp_jstr(subnet, "cidr"), 1, 30, &net, &plen) < 0) {
        dhcp_seterr(err, "subnet %s: cidr is not an IPv4 CIDR with room for hosts", id);
        return -EINVAL;
    }
    if (!dhcp_safe_path(dir)) {
        dhcp_seterr(err, "state directory must be an absolute path without blanks or ,#\"'\\");
        return -EINVAL;
    }
    if (!dhcp_plain_name(ifname, 15)) {
        dhcp_seterr(err, "interface name must be 1-15 letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    if (dhcp_parse_ip4(server_ip, &sip) < 0 || !host_in(sip, net, plen)) {
        dhcp_seterr(err, "subnet %s: the DHCP server address is not a host address of it", id);
        return -EINVAL;
    }
    json_t *g = json_object_get(subnet, "gateway_ip");
    if (g && !json_is_null(g) &&
        (dhcp_parse_ip4(json_string_value(g), &gw) < 0 || !host_in(gw, net, plen))) {
        dhcp_seterr(err, "subnet %s: gateway_ip is not a host address of it", id);
        return -EINVAL;
    }
    json_t *mtu = json_object_get(subnet, "mtu");
    if (mtu && (!json_is_integer(mtu) || json_integer_value(mtu) < DHCP_MTU_MIN ||
                json_integer_value(mtu) > DHCP_MTU_MAX)) {
        dhcp_seterr(err, "subnet %s: mtu must be an integer from %u to %u", id, DHCP_MTU_MIN,
                    DHCP_MTU_MAX);
        return -EINVAL;
    }
    json_t *dns = json_object_get(subnet, "dns_nameservers");
    if ((dns && !json_is_array(dns)) || json_array_size(dns) > DHCP_DNS_MAX) {
        dhcp_seterr(err, "subnet %s: dns_nameservers must be a list of at most %u addresses", id,
                    DHCP_DNS_MAX);
        return -EINVAL;
    }
    unsigned lease = o && o->lease_s ? o->lease_s : DHCP_LEASE_DEFAULT_S;
    const char *def_domain = o && o->dns_domain ? o->dns_domain : DHCP_DOMAIN_DEFAULT;
    char domain[DHCP_FQDN_MAX + 1];
    if (lease < DHCP_LEASE_MIN_S || lease > DHCP_LEASE_MAX_S ||
        (o && o->user && !dhcp_plain_name(o->user, 32)) || !sov_dns_name_norm(def_domain, domain) ||
        !dhcp_upstream_ok(o ? o->dns_upstream : NULL, NULL)) {
        dhcp_seterr(err, "bad DHCP options (lease time, user, DNS domain or upstream resolvers)");
        return -EINVAL;
    }
    /* the network's dns_domain when it is a domain name (sov-api takes any string) */
    const char *nd = dhcp_jstr(subnet, "dns_domain");
    if (nd && *nd && !sov_dns_name_norm(nd, domain))
        sov_dns_name_norm(def_domain, domain); /* the failed try left a part in domain */
    char nets[16], mask[16], gws[16];
    dhcp_ip4_str(net, nets);
    dhcp_ip4_str(prefix_mask(plen), mask);
    dhcp_ip4_str(gw, gws);
    /* DNS: answered on the server address only; the ports' names (A and PTR) from the names
     * file, names of the domain never leave, other names go to the configured upstream
     * resolvers or are refused (no-resolv: never the host's resolv.conf) */
    sov_buf_printf(
        conf,
        "# dnsmasq for subnet %s, written by sov-net (changes are overwritten)\n"
        "# server address %s\n"
        "interface=%s\nexcept-interface=lo\nbind-interfaces\n"
        "no-resolv\nno-hosts\ndhcp-ignore-names\ndomain-needed\nbogus-priv\ncache-size=%u\n"
        "domain=%s\nlocal=/%s/\naddn-hosts=%s/names\n",
        id, server_ip, ifname, DHCP_CACHE_SIZE, domain, domain, dir);
    dhcp_upstream_ok(o ? o->dns_upstream : NULL, conf);
    sov_buf_printf(conf,
                   "dhcp-authoritative\n"
                   "dhcp-ignore=tag:!known\ndhcp-lease-max=%u\n"
                   "dhcp-range=%s,static,%s,%us\n"
                   "dhcp-hostsfile=%s/hosts\ndhcp-leasefile=%s/leases\n"
                   "pid-file=%s/pid\nlog-facility=%s/log\n"
                   "dhcp-option=option:domain-name,%s\n",
                   DHCP_PORTS_MAX, nets, mask, lease, dir, dir, dir, dir, domain);
    if (gw)
        sov_buf_printf(conf, "dhcp-option=option:router,%s\n", gws);
    /* sent whether or not asked for (busybox udhcpc does not ask), as Neutron's */
    if (mtu)
        sov_buf_printf(conf, "dhcp-option-force=option:mtu,%lld\n",
                       (long long)json_integer_value(mtu));
    if (json_array_size(dns) == 0) {
        char sips[16];
        dhcp_ip4_str(sip, sips);
        sov_buf_printf(conf, "dhcp-option=option:dns-server,%s\n", sips);
    } else {
        sov_buf_puts(conf, "dhcp-option=option:dns-server");
        json_t *a;
        size_t i;
        json_array_foreach(dns, i, a)
        {
            char s[16];
            if (dhcp_parse_ip4(json_string_value(a), &tmp) < 0) {
                dhcp_seterr(err, "subnet %s: dns_nameservers[%zu] is not an IPv4 address", id, i);
                return -EINVAL;
            }
            dhcp_ip4_str(tmp, s);
            sov_buf_printf(conf, ",%s", s);
        }
        sov_buf_putc(conf, '\n');
    }
    int r = render_routes(json_object_get(subnet, "host_routes"), gw ? gws : NULL, net, plen, conf,
                          err);
    if (r < 0)
        return r;
    if (o && o->user)
        sov_buf_printf(conf, "user=%s\n", o->user);
    if (!conf->ptr || conf->len == 0)
        r = -ENOMEM;
    else
        r = render_hosts(id, net, plen, ports, domain, hosts, names, err);
    if (r == -ENOMEM)
        dhcp_seterr(err, "out of memory");
    return r;
}
