/* SPDX-License-Identifier: Apache-2.0 */
/* DHCP and DNS for sov-net: renders a dnsmasq config, DHCP hosts file and DNS names file per
 * subnet from the Neutron documents (every value validated first, so nothing a tenant typed can
 * add a line to a dnsmasq file), runs dnsmasq inside the subnet's namespace as a child of the
 * agent, re-reads hosts and names with SIGHUP when ports change, restarts it when the subnet
 * changes and, with backoff, when it dies. An agent that exits leaves its dnsmasqs serving; the
 * next one adopts each that still runs the config it would write (watched through a pidfd). */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dhcp.h"
#include "sov/daemon.h"
#include "sov/log.h"

#define DHCP_BACKOFF_MIN_MS 250u
#define DHCP_BACKOFF_MAX_MS 30000u
#define DHCP_HEALTHY_MS     10000u /* a dnsmasq that ran this long resets the backoff */
#define DHCP_GRACE_MS       3000u  /* SIGTERM to SIGKILL */
#define DHCP_ID_MAX         64u
#define DHCP_NAME_MAX       64u
#define DHCP_FIXED_IPS_MAX  64u
#define DHCP_CACHE_SIZE     128u /* dnsmasq's DNS cache: names of one subnet and a few upstream */
#define DHCP_LABEL_MAX      63u
#define DHCP_FQDN_MAX       253u
#define DHCP_CLID_MAX       (255u * 3u) /* a client id as dnsmasq's lease file writes it */
#define DHCP_LEASES_MAX     (8u << 20)  /* the lease file we read */

/* One supervised dnsmasq. Invariants: proc != NULL exactly while a child runs, watch != NULL
 * exactly while an adopted dnsmasq (an earlier agent's, watched through pidfd) runs, never both;
 * pid is the running one's. handles counts the open libuv handles (the timer once loop is set,
 * proc and watch until their close callbacks), and the struct is freed only when stopping and
 * handles is 0. While a dnsmasq runs the timer is the SIGKILL grace period (if a kill was sent),
 * otherwise the restart backoff. conf and hosts hold what the files on disk hold; the file
 * conf.running is the config the running dnsmasq was started with (absent while that is not
 * known to be conf). */
struct Dhcp {
    char *ip_bin, *dnsmasq_bin, *user, *dns_upstream, *dns_domain;
    unsigned lease_s;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_process_t *proc;
    uv_poll_t *watch;
    int pid, pidfd;
    int handles;
    unsigned fails;
    uint64_t started_ms;
    bool stopping, restart_pending, killing;
    char *dir, *netns, *conf, *hosts, *names;
    /* leases no port has any more, released one dhcp_release at a time */
    char *release_bin, *ifname;
    struct Release *releases; /* queued, oldest first */
    uv_process_t *releasing;  /* the dhcp_release that runs */
};

typedef struct Release {
    struct Release *next;
    char mac[18], ip[16], clid[DHCP_CLID_MAX + 1];
} Release;

static void seterr(SovBuf *err, const char *fmt, ...) _printf_(2, 3);
static void seterr(SovBuf *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    sov_buf_reset(err);
    sov_buf_vprintf(err, fmt, ap);
    va_end(ap);
}

/* A name that may become a path component, an interface, a namespace or a user name. */
static bool plain_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max || s[0] == '-' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* A directory dnsmasq reads its paths from: absolute, printable, and none of the characters
 * that dnsmasq's option parser treats specially (comma, quote, comment, escape). */
static bool safe_path(const char *s)
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

static int parse_ip4(const char *s, uint32_t *ret)
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
    if (plen < min_plen || plen > max_plen || parse_ip4(ip, &a) < 0)
        return -EINVAL;
    *ret_net = a & prefix_mask(plen);
    *ret_plen = plen;
    return 0;
}

static void ip4_str(uint32_t a, char out[16])
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

/* xx:xx:xx:xx:xx:xx, unicast and not all zero; written lower case into out. */
static int parse_mac(const char *s, char out[18])
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

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* One RFC 1123 label of n characters: 1-63 letters, digits or '-', neither first nor last a
 * '-'; written lower case into out (n + 1 bytes). */
static bool dns_label(const char *s, size_t n, char *out)
{
    if (n == 0 || n > DHCP_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

/* A domain name: labels joined by '.', at most 253 characters once one trailing dot is
 * dropped; written lower case into out. */
static bool dns_domain_norm(const char *s, char out[DHCP_FQDN_MAX + 1])
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > DHCP_FQDN_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        const char *dot = memchr(s + i, '.', n - i);
        size_t len = dot ? (size_t)(dot - (s + i)) : n - i;
        if (!dns_label(s + i, len, out + i))
            return false;
        i += len;
        if (dot) {
            out[i++] = '.';
            if (i == n)
                return false; /* "a..": an empty label */
        }
    }
    out[n] = '\0';
    return true;
}

/* "ip,ip": at most DHCP_DNS_MAX IPv4 addresses, each written normalised into out (if not
 * NULL) as a server= line. "" is no resolver. */
static bool upstream_ok(const char *s, SovBuf *out)
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
        if (parse_ip4(ip, &a) < 0)
            return false;
        ip4_str(a, norm);
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
        seterr(err, "ports must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(ports), cap = 0;
    if (n > DHCP_NET_PORTS_MAX) {
        seterr(err, "%zu ports on the network of subnet %s, at most %u", n, subnet_id,
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
        const char *pid =
            jstr(p, "id") && plain_name(jstr(p, "id"), DHCP_ID_MAX) ? jstr(p, "id") : "?";
        if (!json_is_object(p) || (ips && !json_is_array(ips)) ||
            json_array_size(ips) > DHCP_FIXED_IPS_MAX) {
            seterr(err, "port #%zu (%s) is not a port document", i, pid);
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
            const char *sid = jstr(fip, "subnet_id");
            bool here = sid && strcmp(sid, subnet_id) == 0 && !leased;
            Lease *e = &l[nl];
            if (parse_ip4(jstr(fip, "ip_address"), &e->ip) < 0) {
                if (!here)
                    continue; /* another subnet's IPv6 address: no A record */
                seterr(err, "port %s: ip_address is not a host address of subnet %s", pid,
                       subnet_id);
                r = -EINVAL;
            } else if (here && !host_in(e->ip, net, plen)) {
                seterr(err, "port %s: ip_address is not a host address of subnet %s", pid,
                       subnet_id);
                r = -EINVAL;
            } else if (parse_mac(jstr(p, "mac_address"), e->mac) < 0) {
                seterr(err, "port %s: mac_address is not a unicast MAC", pid);
                r = -EINVAL;
            }
            if (r < 0)
                break;
            const char *dn = jstr(p, "dns_name");
            nl++;
            e->port = pid;
            e->device = jstr(p, "device_id") ? jstr(p, "device_id") : "";
            e->project = jstr(p, "project_id") ? jstr(p, "project_id") : "";
            e->since = jstr(p, "created_at") ? jstr(p, "created_at") : "";
            e->lease = here;
            leased = leased || here;
            leases += here;
            if (dn && dns_label(dn, strlen(dn), e->host) &&
                strlen(e->host) + 1 + strlen(domain) <= DHCP_FQDN_MAX)
                e->named = true;
            else
                host_default(e);
        }
    }
    if (r == 0 && leases > DHCP_PORTS_MAX) {
        seterr(err, "%zu ports on subnet %s, at most %u get DHCP", leases, subnet_id,
               DHCP_PORTS_MAX);
        r = -EINVAL;
    }
    if (r == 0) { /* leases first, by MAC */
        qsort(l, nl, sizeof(*l), lease_by_mac);
        for (size_t i = 1; i < nl && r == 0; i++)
            if (l[i].lease && l[i - 1].lease && strcmp(l[i].mac, l[i - 1].mac) == 0) {
                seterr(err, "ports %s and %s share MAC %s", l[i - 1].port, l[i].port, l[i].mac);
                r = -EINVAL;
            }
    }
    if (r == 0) {
        qsort(l, nl, sizeof(*l), lease_by_ip);
        for (size_t i = 1; i < nl && r == 0; i++)
            if (l[i].ip == l[i - 1].ip && l[i].lease && l[i - 1].lease) {
                char a[16];
                ip4_str(l[i].ip, a);
                seterr(err, "ports %s and %s share address %s", l[i - 1].port, l[i].port, a);
                r = -EINVAL;
            }
    }
    if (r == 0)
        r = names_unique(l, nl);
    if (r == 0) {
        for (size_t i = 0; i < nl && r == 0; i++) {
            char a[16];
            ip4_str(l[i].ip, a);
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
        seterr(err, "host_routes must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(routes);
    if (n == 0)
        return 0;
    if (n > DHCP_ROUTES_MAX) {
        seterr(err, "%zu host_routes, at most %u", n, DHCP_ROUTES_MAX);
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
        if (parse_cidr4(jstr(rt, "destination"), 0, 32, &dnet, &dlen) < 0 ||
            parse_ip4(jstr(rt, "nexthop"), &hop) < 0 || !host_in(hop, net, plen)) {
            sov_buf_release(&v);
            seterr(err,
                   "host_routes[%zu] needs an IPv4 destination CIDR and a nexthop on the "
                   "subnet",
                   i);
            return -EINVAL;
        }
        has_default = has_default || dlen == 0;
        ip4_str(dnet, d);
        ip4_str(hop, h);
        sov_buf_printf(&v, ",%s/%d,%s", d, dlen, h);
    }
    if (gw && !has_default)
        sov_buf_printf(&v, ",0.0.0.0/0,%s", gw);
    int r = sov_buf_printf(conf, "dhcp-option=option:classless-static-route%s\n", v.ptr);
    sov_buf_release(&v);
    return r < 0 ? -ENOMEM : 0;
}

int dhcp_render(const char *dir, const char *ifname, const char *server_ip, json_t *subnet,
                json_t *ports, const DhcpOpts *o, SovBuf *conf, SovBuf *hosts, SovBuf *names,
                SovBuf *err)
{
    const char *id = jstr(subnet, "id");
    if (!json_is_object(subnet) || !plain_name(id, DHCP_ID_MAX)) {
        seterr(err, "subnet needs an id of letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    json_t *ver = json_object_get(subnet, "ip_version");
    if (ver && !json_is_null(ver) && (!json_is_integer(ver) || json_integer_value(ver) != 4)) {
        seterr(err, "subnet %s: only IPv4 subnets get DHCP", id);
        return -EINVAL;
    }
    uint32_t net, sip, gw = 0, tmp;
    int plen;
    if (parse_cidr4(jstr(subnet, "cidr"), 1, 30, &net, &plen) < 0) {
        seterr(err, "subnet %s: cidr is not an IPv4 CIDR with room for hosts", id);
        return -EINVAL;
    }
    if (!safe_path(dir)) {
        seterr(err, "state directory must be an absolute path without blanks or ,#\"'\\");
        return -EINVAL;
    }
    if (!plain_name(ifname, 15)) {
        seterr(err, "interface name must be 1-15 letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    if (parse_ip4(server_ip, &sip) < 0 || !host_in(sip, net, plen)) {
        seterr(err, "subnet %s: the DHCP server address is not a host address of it", id);
        return -EINVAL;
    }
    json_t *g = json_object_get(subnet, "gateway_ip");
    if (g && !json_is_null(g) &&
        (parse_ip4(json_string_value(g), &gw) < 0 || !host_in(gw, net, plen))) {
        seterr(err, "subnet %s: gateway_ip is not a host address of it", id);
        return -EINVAL;
    }
    json_t *dns = json_object_get(subnet, "dns_nameservers");
    if ((dns && !json_is_array(dns)) || json_array_size(dns) > DHCP_DNS_MAX) {
        seterr(err, "subnet %s: dns_nameservers must be a list of at most %u addresses", id,
               DHCP_DNS_MAX);
        return -EINVAL;
    }
    unsigned lease = o && o->lease_s ? o->lease_s : DHCP_LEASE_DEFAULT_S;
    const char *def_domain = o && o->dns_domain ? o->dns_domain : DHCP_DOMAIN_DEFAULT;
    char domain[DHCP_FQDN_MAX + 1];
    if (lease < DHCP_LEASE_MIN_S || lease > DHCP_LEASE_MAX_S ||
        (o && o->user && !plain_name(o->user, 32)) || !dns_domain_norm(def_domain, domain) ||
        !upstream_ok(o ? o->dns_upstream : NULL, NULL)) {
        seterr(err, "bad DHCP options (lease time, user, DNS domain or upstream resolvers)");
        return -EINVAL;
    }
    /* the network's dns_domain when it is a domain name (sov-api takes any string) */
    const char *nd = jstr(subnet, "dns_domain");
    if (nd && *nd && !dns_domain_norm(nd, domain))
        dns_domain_norm(def_domain, domain); /* the failed try left a part in domain */
    char nets[16], mask[16], gws[16];
    ip4_str(net, nets);
    ip4_str(prefix_mask(plen), mask);
    ip4_str(gw, gws);
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
    upstream_ok(o ? o->dns_upstream : NULL, conf);
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
    if (json_array_size(dns) == 0) {
        char sips[16];
        ip4_str(sip, sips);
        sov_buf_printf(conf, "dhcp-option=option:dns-server,%s\n", sips);
    } else {
        sov_buf_puts(conf, "dhcp-option=option:dns-server");
        json_t *a;
        size_t i;
        json_array_foreach(dns, i, a)
        {
            char s[16];
            if (parse_ip4(json_string_value(a), &tmp) < 0) {
                seterr(err, "subnet %s: dns_nameservers[%zu] is not an IPv4 address", id, i);
                return -EINVAL;
            }
            ip4_str(tmp, s);
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
        seterr(err, "out of memory");
    return r;
}

/* ---- files ---- */

static int path_in(const Dhcp *d, const char *name, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s", d->dir, name) >= (int)n ? -ENAMETOOLONG : 0;
}

static void remove_files(Dhcp *d)
{
    DIR *dd = d->dir ? opendir(d->dir) : NULL;
    if (!dd)
        return;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN)
            unlinkat(dirfd(dd), e->d_name, 0);
    closedir(dd);
    rmdir(d->dir);
}

/* dnsmasq re-reads the hosts file as the user it dropped to: without user=root every directory
 * above it has to be searchable by others. */
static int check_reachable(const char *dir, SovBuf *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return -ENAMETOOLONG;
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            seterr(err,
                   "%s is not searchable by others, so dnsmasq (which drops to nobody) could "
                   "not re-read its hosts file; chmod o+x it or run dnsmasq as root",
                   p);
            return -EACCES;
        }
        char *s = strrchr(p, '/');
        if (!s || s == p)
            return 0;
        *s = '\0';
    }
}

static int write_file(const Dhcp *d, const char *name, const char *text, SovBuf *err)
{
    char p[PATH_MAX];
    int r = path_in(d, name, p, sizeof(p));
    if (r == 0)
        r = sov_write_file_atomic(p, text, strlen(text));
    if (r < 0)
        seterr(err, "cannot write %s/%s: %s", d->dir, name, strerror(-r));
    return r;
}

/* The pid of the dnsmasq serving d->dir (its pid file names a live process started with this
 * directory's --conf-file), else 0. */
static pid_t dnsmasq_of(const Dhcp *d)
{
    char p[PATH_MAX], buf[4096], want[PATH_MAX + 16];
    if (path_in(d, "pid", p, sizeof(p)) < 0)
        return 0;
    FILE *f = fopen(p, "re");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    if (pid <= 1 || pid > INT_MAX)
        return 0;
    snprintf(p, sizeof(p), "/proc/%ld/cmdline", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    snprintf(want, sizeof(want), "--conf-file=%s/conf", d->dir);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strcmp(buf + i, want) == 0)
            return (pid_t)pid;
    return 0;
}

/* A pidfd of the dnsmasq serving d->dir (its pid in *pid), checked again with the pidfd open
 * (the pid is still that dnsmasq, not a later process); -1 when none. */
static int dnsmasq_fd(const Dhcp *d, pid_t *pid)
{
    pid_t p = dnsmasq_of(d);
    int fd = p > 0 ? (int)syscall(SYS_pidfd_open, p, 0) : -1;
    if (fd >= 0 && dnsmasq_of(d) != p) {
        close(fd);
        fd = -1;
    }
    *pid = p;
    return fd;
}

/* A dnsmasq left by an earlier agent that is not adopted: it still holds the interface's DHCP
 * socket. */
static void kill_stale(const Dhcp *d)
{
    pid_t pid;
    int fd = dnsmasq_fd(d, &pid);
    if (fd >= 0) {
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        close(fd);
    }
}

/* Whether file name in d's directory holds exactly text. */
static bool file_is(const Dhcp *d, const char *name, const char *text)
{
    char p[PATH_MAX];
    if (path_in(d, name, p, sizeof(p)) < 0)
        return false;
    FILE *f = fopen(p, "re");
    if (!f)
        return false;
    size_t len = strlen(text), i = 0;
    int c;
    bool same = true;
    while (same && (c = getc(f)) != EOF)
        same = i < len && (char)c == text[i++];
    fclose(f);
    return same && i == len;
}

/* Whether process pid lives in network namespace netns (NULL: the agent's own). */
static bool in_netns(pid_t pid, const char *netns)
{
    char p[PATH_MAX], q[PATH_MAX];
    struct stat a, b;
    snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
    if (netns)
        snprintf(q, sizeof(q), "/run/netns/%s", netns);
    else
        snprintf(q, sizeof(q), "/proc/self/ns/net");
    return stat(p, &a) == 0 && stat(q, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* An earlier agent's dnsmasq that d can keep: it serves d->dir, in netns, started with conf,
 * from a binary not replaced since (an upgraded dnsmasq is restarted). Returns a pidfd of it
 * (its pid in *pid), or -1. */
static int adoptable(const Dhcp *d, const char *conf, const char *netns, pid_t *pid)
{
    char p[64], exe[PATH_MAX];
    if (!file_is(d, "conf.running", conf))
        return -1;
    int fd = dnsmasq_fd(d, pid);
    snprintf(p, sizeof(p), "/proc/%d/exe", (int)*pid);
    ssize_t n = fd >= 0 ? readlink(p, exe, sizeof(exe) - 1) : -1;
    if (n >= 0)
        exe[n] = '\0';
    if (fd >= 0 && (n < 0 || strstr(exe, " (deleted)") || !in_netns(*pid, netns))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---- leases no port has any more ----
 * dnsmasq keeps a lease until it expires (a day by default) even when its static host line
 * is gone, and will not give the address to another MAC until then ("not using configured
 * address ... because it is leased to ..."): a port deleted and its address given to a new
 * port would leave the new one without DHCP, and the old name in DNS. So a lease whose MAC and
 * address are no line of the hosts file goes: dropped from the lease file before a dnsmasq
 * starts, released (dhcp_release, the DHCPRELEASE its client would send) while one runs. */

/* Whether hosts ("mac,ip,name" or, for a port without a name, "mac,ip" lines) has a line
 * for mac and ip. */
static bool hosts_has(const char *hosts, const char *mac, const char *ip)
{
    char key[40];
    int n = snprintf(key, sizeof(key), "%s,%s", mac, ip);
    for (const char *l = hosts; l && *l;) {
        if (strncmp(l, key, (size_t)n) == 0 && (l[n] == ',' || l[n] == '\n' || l[n] == '\0'))
            return true;
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    return false;
}

/* One line of dnsmasq's lease file, "expiry mac ip name client-id": its MAC, address and
 * client id ("" for "*" or anything not in dnsmasq's hex:hex form). false when the line is no
 * Ethernet lease. line is cut up. */
static bool lease_line(char *line, Release *out)
{
    char *save = NULL;
    const char *f[5] = {0};
    for (int i = 0; i < 5; i++)
        f[i] = strtok_r(i ? NULL : line, " ", &save);
    uint32_t a;
    if (!f[2] || parse_mac(f[1], out->mac) < 0 || parse_ip4(f[2], &a) < 0)
        return false;
    ip4_str(a, out->ip);
    size_t n = f[4] ? strlen(f[4]) : 0;
    bool ok = n >= 2 && n <= DHCP_CLID_MAX && n % 3 == 2;
    for (size_t i = 0; ok && i < n; i++)
        ok = i % 3 == 2 ? f[4][i] == ':'
                        : (f[4][i] >= '0' && f[4][i] <= '9') || (f[4][i] >= 'a' && f[4][i] <= 'f');
    snprintf(out->clid, sizeof(out->clid), "%s", ok ? f[4] : "");
    return true;
}

/* The lease file, or NULL (none, unreadable, too big). */
static char *read_leases(const Dhcp *d)
{
    char p[PATH_MAX];
    if (path_in(d, "leases", p, sizeof(p)) < 0)
        return NULL;
    FILE *f = fopen(p, "re");
    if (!f)
        return NULL;
    SovBuf b = SOV_BUF_INIT;
    char chunk[16384];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = b.len + n <= DHCP_LEASES_MAX && sov_buf_append(&b, chunk, n) == 0;
    ok = ok && !ferror(f);
    fclose(f);
    if (!ok || !b.ptr) {
        sov_buf_release(&b);
        return NULL;
    }
    return sov_buf_steal(&b);
}

/* Calls fn for each line of dnsmasq's lease file with whether it is a lease a port still has
 * (keep) and, for a lease no port has, that lease (gone; NULL otherwise). false: no file. */
typedef void LeaseFn(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg);
static bool each_lease(Dhcp *d, LeaseFn *fn, void *arg)
{
    char *text = read_leases(d);
    if (!text)
        return false;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        Release r;
        char copy[1024];
        snprintf(copy, sizeof(copy), "%s", l);
        bool ok = strlen(l) < sizeof(copy) && lease_line(copy, &r);
        bool keep = ok && hosts_has(d->hosts, r.mac, r.ip);
        fn(d, l, keep, ok && !keep ? &r : NULL, arg);
    }
    free(text);
    return true;
}

typedef struct Kept {
    SovBuf lines; /* the lines kept */
    bool dropped; /* a line went */
} Kept;

static void keep_line(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg)
{
    Kept *k = arg;
    if (keep)
        sov_buf_printf(&k->lines, "%s\n", line);
    k->dropped = k->dropped || !keep;
}

/* Before a dnsmasq starts: the lease file without the leases no port has. */
static void prune_leases(Dhcp *d)
{
    Kept k = {SOV_BUF_INIT, false};
    if (each_lease(d, keep_line, &k) && k.dropped)
        write_file(d, "leases", k.lines.ptr ? k.lines.ptr : "", NULL);
    sov_buf_release(&k.lines);
}

static void release_next(Dhcp *d);
static void handle_closed(uv_handle_t *h);

/* Starts cmd (NULL-ended) inside d's namespace (ip netns exec) as a child on d's loop, its
 * stdout and stderr to out_fd (-1: nowhere), exit_cb when it ends; in a session of its own when
 * detached (no signal to the agent's process group reaches it). NULL with *rc < 0 when it cannot
 * start. */
static uv_process_t *run_child(Dhcp *d, char *const cmd[], int out_fd, uv_exit_cb exit_cb,
                               bool detached, int *rc)
{
    char *args[16];
    int n = 0;
    if (d->netns) {
        args[n++] = d->ip_bin;
        args[n++] = (char *)"netns";
        args[n++] = (char *)"exec";
        args[n++] = d->netns;
    }
    for (int i = 0; cmd[i] && n < 15; i++)
        args[n++] = cmd[i];
    args[n] = NULL;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
        {.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd}};
    uv_process_options_t o = {.file = args[0],
                              .args = args,
                              .exit_cb = exit_cb,
                              .cwd = "/",
                              .stdio = stdio,
                              .stdio_count = 3,
                              .flags = detached ? UV_PROCESS_DETACHED : 0};
    uv_process_t *p = calloc(1, sizeof(*p));
    *rc = p ? 0 : -ENOMEM;
    if (!p)
        return NULL;
    p->data = d;
    d->handles++;
    if ((*rc = uv_spawn(d->loop, p, &o)) < 0) {
        uv_close((uv_handle_t *)p, handle_closed);
        return NULL;
    }
    return p;
}

static void release_exit(uv_process_t *p, int64_t status, int sig)
{
    Dhcp *d = p->data;
    if (status != 0 || sig != 0) {
        const char *kv[] = {"dir", d->dir, "cmd", d->release_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, 0,
                    "dhcp_release failed (is dnsmasq-utils installed?); the lease stays until it "
                    "expires",
                    kv);
    }
    d->releasing = NULL;
    uv_close((uv_handle_t *)p, handle_closed);
    release_next(d);
}

static void release_next(Dhcp *d)
{
    Release *r = d->releases;
    if (d->releasing || !r || d->stopping || !d->loop || !d->ifname)
        return;
    d->releases = r->next;
    char *args[] = {d->release_bin, d->ifname, r->ip, r->mac, *r->clid ? r->clid : NULL, NULL};
    int rc;
    d->releasing = run_child(d, args, -1, release_exit, false, &rc);
    free(r);
    if (!d->releasing) {
        const char *kv[] = {"dir", d->dir, "cmd", d->release_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, rc, "cannot run dhcp_release", kv);
        release_next(d);
    }
}

static void queue_release(Dhcp *d, const char *line, bool keep, const Release *gone, void *arg)
{
    Release **tail = &d->releases;
    if (!gone)
        return;
    for (; *tail; tail = &(*tail)->next)
        if (!strcmp((*tail)->mac, gone->mac) && !strcmp((*tail)->ip, gone->ip))
            return; /* queued already */
    Release *q = malloc(sizeof(*q));
    if (q) {
        *q = *gone;
        q->next = NULL;
        *tail = q;
    }
}

/* While dnsmasq runs: queues a release of every lease no port has (once). */
static void release_stale(Dhcp *d)
{
    if (each_lease(d, queue_release, NULL))
        release_next(d);
}

/* ---- the process ---- */

static void spawn(Dhcp *d);

static void maybe_free(Dhcp *d)
{
    if (!d->stopping || d->handles > 0)
        return;
    free(d->ip_bin);
    free(d->dnsmasq_bin);
    free(d->user);
    free(d->dns_upstream);
    free(d->dns_domain);
    free(d->dir);
    free(d->netns);
    free(d->conf);
    free(d->hosts);
    free(d->names);
    free(d->release_bin);
    free(d->ifname);
    while (d->releases) {
        Release *r = d->releases;
        d->releases = r->next;
        free(r);
    }
    free(d);
}

static void handle_closed(uv_handle_t *h)
{
    Dhcp *d = h->data;
    if (h != (uv_handle_t *)&d->timer)
        free(h);
    d->handles--;
    maybe_free(d);
}

static void restart_cb(uv_timer_t *t)
{
    Dhcp *d = t->data;
    if (!d->stopping && !d->proc && !d->watch)
        spawn(d);
}

/* Sends sig to the running dnsmasq, a child or an adopted one. */
static void signal_dnsmasq(Dhcp *d, int sig)
{
    if (d->proc)
        uv_process_kill(d->proc, sig);
    else if (d->watch)
        syscall(SYS_pidfd_send_signal, d->pidfd, sig, NULL, 0);
}

static void grace_cb(uv_timer_t *t)
{
    signal_dnsmasq(t->data, SIGKILL);
}

static void schedule_restart(Dhcp *d)
{
    unsigned ms = DHCP_BACKOFF_MIN_MS << SOV_MIN(d->fails, 7u);
    ms = SOV_MIN(ms, DHCP_BACKOFF_MAX_MS);
    d->fails++;
    uv_timer_start(&d->timer, restart_cb, ms, 0);
}

/* Stops watching an adopted dnsmasq (it ended, or the agent lets go of it). */
static void unwatch(Dhcp *d)
{
    uv_close((uv_handle_t *)d->watch, handle_closed); /* out of epoll before the close */
    close(d->pidfd);
    d->watch = NULL;
    d->pidfd = -1;
}

/* The running dnsmasq ended (st: its exit status, "unknown" for an adopted one). */
static void ended(Dhcp *d, const char *st, int sig)
{
    char pid[16], sg[16];
    snprintf(pid, sizeof(pid), "%d", d->pid);
    snprintf(sg, sizeof(sg), "%d", sig);
    d->pid = 0;
    d->killing = false;
    uv_timer_stop(&d->timer);
    if (d->stopping) {
        remove_files(d);
        uv_close((uv_handle_t *)&d->timer, handle_closed);
        return;
    }
    if (d->restart_pending) {
        d->restart_pending = false;
        d->fails = 0;
        spawn(d);
        return;
    }
    if (uv_now(d->loop) - d->started_ms >= DHCP_HEALTHY_MS)
        d->fails = 0;
    const char *kv[] = {"dir", d->dir, "pid", pid, "status", st, "signal", sg, NULL};
    sov_logv_kv(SOV_LOG_WARN, NULL, 0, "dnsmasq exited; restarting it", kv);
    schedule_restart(d);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    Dhcp *d = p->data;
    char st[24];
    snprintf(st, sizeof(st), "%lld", (long long)status);
    d->proc = NULL;
    uv_close((uv_handle_t *)p, handle_closed);
    ended(d, st, sig);
}

/* The pidfd of an adopted dnsmasq reads ready: it ended. */
static void watch_cb(uv_poll_t *w, int status, int events)
{
    (void)status;
    (void)events;
    Dhcp *d = w->data;
    unwatch(d);
    ended(d, "unknown", 0);
}

/* Keeps the earlier agent's dnsmasq pid (pidfd open on it) as d's running one. */
static int watch(Dhcp *d, int pidfd, pid_t pid)
{
    uv_poll_t *w = calloc(1, sizeof(*w));
    int r = w ? uv_poll_init(d->loop, w, pidfd) : -ENOMEM;
    if (r < 0) {
        free(w);
        close(pidfd);
        return r;
    }
    w->data = d;
    d->handles++;
    d->watch = w;
    d->pidfd = pidfd;
    d->pid = (int)pid;
    d->started_ms = uv_now(d->loop);
    if ((r = uv_poll_start(w, UV_READABLE, watch_cb)) < 0)
        unwatch(d);
    return r;
}

static void spawn(Dhcp *d)
{
    char conf[PATH_MAX + 16], logp[PATH_MAX];
    snprintf(conf, sizeof(conf), "--conf-file=%s/conf", d->dir);
    if (path_in(d, "log", logp, sizeof(logp)) < 0)
        return;
    prune_leases(d);
    char *args[] = {d->dnsmasq_bin, (char *)"--keep-in-foreground", conf, NULL};
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), r;
    uv_process_t *p = run_child(d, args, logfd, exit_cb, true, &r);
    if (logfd >= 0)
        close(logfd);
    if (!p) {
        const char *kv[] = {"dir", d->dir, "cmd", d->dnsmasq_bin, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, r, "cannot start dnsmasq; retrying", kv);
        schedule_restart(d);
        return;
    }
    d->proc = p;
    d->pid = p->pid;
    d->started_ms = uv_now(d->loop);
    char cr[PATH_MAX]; /* the next agent keeps this dnsmasq while its config stays this one */
    int w = path_in(d, "conf.running", cr, sizeof(cr));
    if (w == 0)
        w = sov_write_file_atomic(cr, d->conf, strlen(d->conf));
    if (w < 0) {
        const char *kv[] = {"dir", d->dir, NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, w,
                    "cannot write conf.running; a restarted agent will restart this dnsmasq", kv);
    }
}

/* Ends the running dnsmasq; exit_cb decides what comes next. */
static void terminate(Dhcp *d)
{
    if ((!d->proc && !d->watch) || d->killing)
        return;
    d->killing = true;
    signal_dnsmasq(d, SIGTERM);
    uv_timer_start(&d->timer, grace_cb, DHCP_GRACE_MS, 0);
}

/* ---- API ---- */

bool dhcp_dns_ok(const char *dns_upstream, const char *dns_domain)
{
    char dom[DHCP_FQDN_MAX + 1];
    return upstream_ok(dns_upstream, NULL) &&
           (!dns_domain || !*dns_domain || dns_domain_norm(dns_domain, dom));
}

Dhcp *dhcp_new(const DhcpOpts *o)
{
    DhcpOpts def = {0};
    if (!o)
        o = &def;
    unsigned lease = o->lease_s ? o->lease_s : DHCP_LEASE_DEFAULT_S;
    const char *up = o->dns_upstream ? o->dns_upstream : "";
    const char *dom = o->dns_domain && *o->dns_domain ? o->dns_domain : DHCP_DOMAIN_DEFAULT;
    char norm[DHCP_FQDN_MAX + 1];
    if (lease < DHCP_LEASE_MIN_S || lease > DHCP_LEASE_MAX_S ||
        (o->user && !plain_name(o->user, 32)) || !upstream_ok(up, NULL) ||
        !dns_domain_norm(dom, norm))
        return NULL;
    Dhcp *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->pidfd = -1;
    d->lease_s = lease;
    d->ip_bin = strdup(o->ip ? o->ip : "ip");
    d->dnsmasq_bin = strdup(o->dnsmasq ? o->dnsmasq : "dnsmasq");
    d->user = o->user ? strdup(o->user) : NULL;
    d->dns_upstream = strdup(up);
    d->dns_domain = strdup(norm);
    d->release_bin = strdup(o->dhcp_release ? o->dhcp_release : "dhcp_release");
    if (!d->ip_bin || !d->dnsmasq_bin || (o->user && !d->user) || !d->dns_upstream ||
        !d->dns_domain || !d->release_bin) {
        d->stopping = true;
        maybe_free(d);
        return NULL;
    }
    return d;
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

int dhcp_apply(uv_loop_t *loop, const char *state_dir, const char *netns, const char *ifname,
               const char *server_ip, json_t *subnet, json_t *ports, Dhcp **io, SovBuf *err)
{
    json_t *en = json_object_get(subnet, "enable_dhcp");
    if (json_is_object(subnet) && json_is_false(en)) {
        dhcp_stop(*io);
        *io = NULL;
        return 0;
    }
    const char *id = jstr(subnet, "id");
    if (!plain_name(id, DHCP_ID_MAX)) {
        seterr(err, "subnet needs an id of letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    if (netns && *netns == '\0')
        netns = NULL;
    if (netns && !plain_name(netns, DHCP_NAME_MAX)) {
        seterr(err, "network namespace name must be letters, digits, '-', '_' or '.'");
        return -EINVAL;
    }
    /* dnsmasq runs in / and is given absolute paths: a relative state_dir is the agent's */
    char abs[PATH_MAX], cwd[PATH_MAX];
    if (state_dir && state_dir[0] != '/' && state_dir[0] != '\0') {
        if (!getcwd(cwd, sizeof(cwd)) ||
            snprintf(abs, sizeof(abs), "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, state_dir) >=
                (int)sizeof(abs)) {
            seterr(err, "cannot make the state directory absolute");
            return -ENAMETOOLONG;
        }
        state_dir = abs;
    }
    if (!safe_path(state_dir)) {
        seterr(err, "state directory must be a path without blanks or ,#\"'\\");
        return -EINVAL;
    }
    Dhcp *d = *io;
    bool created = false;
    if (!d) {
        d = dhcp_new(NULL);
        if (!d) {
            seterr(err, "out of memory");
            return -ENOMEM;
        }
        created = true;
    }
    SovBuf dir = SOV_BUF_INIT, conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, names = SOV_BUF_INIT;
    DhcpOpts o = {.lease_s = d->lease_s,
                  .user = d->user,
                  .dns_upstream = d->dns_upstream,
                  .dns_domain = d->dns_domain};
    int r = sov_buf_printf(&dir, "%s/dhcp/%s", state_dir, id) < 0 ? -ENOMEM : 0;
    if (r == 0 && d->dir && strcmp(d->dir, dir.ptr) != 0) {
        seterr(err, "this DHCP server belongs to %s, not to subnet %s", d->dir, id);
        r = -EINVAL;
    }
    if (r == 0)
        r = dhcp_render(dir.ptr, ifname, server_ip, subnet, ports, &o, &conf, &hosts, &names, err);
    if (r == 0 && !d->dir) {
        char *slash = strrchr(dir.ptr, '/'); /* state_dir/dhcp first */
        *slash = '\0';
        r = mkdir(dir.ptr, 0755) < 0 && errno != EEXIST ? -errno : 0;
        *slash = '/';
        if (r == 0 && mkdir(dir.ptr, 0755) < 0 && errno != EEXIST)
            r = -errno;
        if (r < 0) {
            seterr(err, "cannot create %s: %s", dir.ptr, strerror(-r));
        } else if (!d->user || strcmp(d->user, "root") != 0) {
            r = check_reachable(dir.ptr, err);
        }
    }
    if (r < 0) {
        sov_buf_release(&dir);
        sov_buf_release(&conf);
        sov_buf_release(&hosts);
        sov_buf_release(&names);
        if (created) {
            d->stopping = true;
            maybe_free(d);
        }
        return r;
    }
    if (!d->dir)
        d->dir = sov_buf_steal(&dir);
    sov_buf_release(&dir);
    if (str_differs(d->ifname, ifname)) {
        free(d->ifname);
        d->ifname = ifname ? strdup(ifname) : NULL;
    }
    bool conf_changed = str_differs(d->conf, conf.ptr) || str_differs(d->netns, netns);
    bool hosts_changed = !d->hosts || strcmp(d->hosts, hosts.ptr ? hosts.ptr : "") != 0;
    bool names_changed = !d->names || strcmp(d->names, names.ptr ? names.ptr : "") != 0;
    /* hosts and names first: a dnsmasq that starts on the new config reads them too */
    if (hosts_changed && (r = write_file(d, "hosts", hosts.ptr ? hosts.ptr : "", err)) == 0) {
        free(d->hosts);
        d->hosts = sov_buf_steal(&hosts);
        if (!d->hosts)
            d->hosts = strdup("");
    }
    if (r == 0 && names_changed &&
        (r = write_file(d, "names", names.ptr ? names.ptr : "", err)) == 0) {
        free(d->names);
        d->names = sov_buf_steal(&names);
        if (!d->names)
            d->names = strdup("");
    }
    hosts_changed = hosts_changed || names_changed;
    /* a first apply keeps the earlier agent's dnsmasq when it runs this very config */
    pid_t apid = 0;
    int pidfd = r == 0 && !d->loop ? adoptable(d, conf.ptr, netns, &apid) : -1;
    char cr[PATH_MAX];
    if (r == 0 && conf_changed && pidfd < 0 && path_in(d, "conf.running", cr, sizeof(cr)) == 0 &&
        unlink(cr) < 0 && errno != ENOENT) {
        seterr(err, "cannot remove %s: %s", cr, strerror(errno));
        r = -errno;
    }
    if (r == 0 && conf_changed && (r = write_file(d, "conf", conf.ptr, err)) == 0) {
        free(d->conf);
        d->conf = sov_buf_steal(&conf);
        free(d->netns);
        d->netns = netns ? strdup(netns) : NULL;
    }
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&names);
    if (r < 0 || (!d->hosts || !d->names || !d->conf || (netns && !d->netns))) {
        if (r == 0) {
            seterr(err, "out of memory");
            r = -ENOMEM;
        }
        if (pidfd >= 0)
            close(pidfd);
        if (created) {
            remove_files(d);
            d->stopping = true;
            maybe_free(d);
        }
        return r;
    }
    if (!d->loop) {
        d->loop = loop;
        uv_timer_init(loop, &d->timer);
        d->timer.data = d;
        d->handles++;
        if (pidfd >= 0 && watch(d, pidfd, apid) == 0) {
            /* it reads the hosts and names just written, and ends leases gone meanwhile */
            signal_dnsmasq(d, SIGHUP);
            release_stale(d);
        } else {
            kill_stale(d);
            spawn(d);
        }
    } else if (conf_changed) {
        if (d->proc || d->watch) {
            d->restart_pending = true;
            terminate(d);
        } else {
            uv_timer_stop(&d->timer);
            d->fails = 0;
            spawn(d);
        }
    } else if (hosts_changed && (d->proc || d->watch) && !d->restart_pending) {
        /* a SIGHUP that lands before dnsmasq handles it (right after the spawn) ends it: the
         * restart then reads the new hosts file all the same */
        signal_dnsmasq(d, SIGHUP);
        release_stale(d);
    }
    *io = d;
    return 0;
}

void dhcp_stop(Dhcp *d)
{
    char cr[PATH_MAX];
    if (!d || d->stopping)
        return;
    d->stopping = true;
    if (d->dir && path_in(d, "conf.running", cr, sizeof(cr)) == 0)
        unlink(cr); /* a dnsmasq on its way out is nobody's to adopt */
    if (d->proc || d->watch) {
        d->killing = false;
        terminate(d); /* ended() removes the files and closes the timer */
        return;
    }
    remove_files(d);
    if (d->loop)
        uv_close((uv_handle_t *)&d->timer, handle_closed);
    maybe_free(d);
}

void dhcp_detach(Dhcp *d)
{
    if (!d || d->stopping)
        return;
    d->stopping = true;
    if (d->proc) { /* closing the handle neither signals nor waits for the child */
        uv_close((uv_handle_t *)d->proc, handle_closed);
        d->proc = NULL;
    }
    if (d->watch)
        unwatch(d);
    if (d->releasing) {
        uv_close((uv_handle_t *)d->releasing, handle_closed);
        d->releasing = NULL;
    }
    if (d->loop)
        uv_close((uv_handle_t *)&d->timer, handle_closed);
    maybe_free(d);
}

void dhcp_sweep(const char *state_dir, json_t *keep)
{
    char dir[PATH_MAX];
    if (!state_dir || snprintf(dir, sizeof(dir), "%s/dhcp", state_dir) >= (int)sizeof(dir))
        return;
    DIR *dd = opendir(dir);
    if (!dd)
        return;
    struct dirent *e;
    while ((e = readdir(dd))) {
        char sub[PATH_MAX];
        if (!plain_name(e->d_name, DHCP_ID_MAX) || e->d_name[0] == '.' ||
            json_object_get(keep, e->d_name) ||
            snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= (int)sizeof(sub))
            continue;
        Dhcp gone = {.dir = sub};
        kill_stale(&gone);
        remove_files(&gone);
    }
    closedir(dd);
}

bool dhcp_running(const Dhcp *d)
{
    return d && (d->proc || d->watch) && !d->stopping;
}

int dhcp_pid(const Dhcp *d)
{
    return d && (d->proc || d->watch) ? d->pid : 0;
}
