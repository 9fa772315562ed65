/* SPDX-License-Identifier: Apache-2.0 */
/* One datapath pass (thread pool): read what the kernel has, compute what the snapshot wants,
 * apply the difference. Reads use `ip -j`; changes go through `ip -batch -` and `nft -f -` on
 * stdin, built only from validated ids (hex digits) and addresses (parsed by inet_pton), so no
 * client string reaches a command line unchecked. Only names sov-net owns are ever removed:
 * sb/vp/vi/pr/pg + 12 hex digits, tap + 12 hex digits, and namespaces <prefix>r-<12 hex>. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "nl.h"
#include "sg.h"
#include "sov/log.h"
#include "sov/mac.h"
#include "vni.h"

#define OUT_MAX (16u << 20)

extern char **environ;

typedef struct Ctx {
    const NetConfig *cfg;
    json_t *res;        /* snapshot resources by kind */
    json_t *host_links; /* name -> link object (ip -j link show) */
    json_t *netns;      /* name -> true */
    SovBuf *err;
} Ctx;

static const char *jstr(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

/* ---- running tools ---- */

/* Runs argv with `in` on its stdin; stdout into out (when non-NULL); stderr's first line into
 * err on failure. */
static int run(char *const argv[], const char *in, size_t inlen, SovBuf *out, SovBuf *err)
{
    int pin[2], pout[2], perr[2];
    if (pipe2(pin, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(pout, O_CLOEXEC) < 0) {
        close(pin[0]);
        close(pin[1]);
        return -errno;
    }
    if (pipe2(perr, O_CLOEXEC) < 0) {
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        return -errno;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (r != 0) {
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        sov_buf_printf(err, "cannot run %s: %s", argv[0], strerror(r));
        return -r;
    }
    SovBuf eb = SOV_BUF_INIT;
    size_t off = 0;
    if (!in || !inlen) {
        close(pin[1]);
        pin[1] = -1;
    }
    struct pollfd pf[3];
    bool oopen = true, eopen = true;
    while (oopen || eopen) {
        int k = 0, io = -1, ie = -1, iw = -1;
        if (oopen) {
            pf[k] = (struct pollfd){.fd = pout[0], .events = POLLIN};
            io = k++;
        }
        if (eopen) {
            pf[k] = (struct pollfd){.fd = perr[0], .events = POLLIN};
            ie = k++;
        }
        if (pin[1] >= 0) {
            pf[k] = (struct pollfd){.fd = pin[1], .events = POLLOUT};
            iw = k++;
        }
        int pr = poll(pf, (nfds_t)k, 60000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) { /* a tool silent for a minute is hung: end it */
            kill(pid, SIGKILL);
            break;
        }
        char buf[16384];
        if (iw >= 0 && pf[iw].revents) {
            ssize_t w = write(pin[1], in + off, inlen - off);
            if (w > 0)
                off += (size_t)w;
            if (w < 0 || off >= inlen) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
        if (io >= 0 && pf[io].revents) {
            ssize_t n = read(pout[0], buf, sizeof(buf));
            if (n <= 0)
                oopen = false;
            else if (out && sov_buf_append(out, buf, (size_t)n) < 0)
                oopen = false;
        }
        if (ie >= 0 && pf[ie].revents) {
            ssize_t n = read(perr[0], buf, sizeof(buf));
            if (n <= 0)
                eopen = false;
            else if (eb.len < 4096)
                sov_buf_append(&eb, buf, (size_t)n);
        }
    }
    if (pin[1] >= 0)
        close(pin[1]);
    close(pout[0]);
    close(perr[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
    if (r < 0) {
        size_t l = 0;
        while (l < eb.len && eb.ptr[l] != '\n')
            l++;
        sov_buf_printf(err, "%s: %.*s", argv[0], (int)SOV_MIN(l, 400), eb.ptr ? eb.ptr : "failed");
    }
    sov_buf_release(&eb);
    return r;
}

/* `ip [-n NS] ARGS...` (NULL-terminated). */
static int ip(const Ctx *x, const char *ns, const char *in, SovBuf *out, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)x->cfg->ip;
    if (ns && *ns) {
        argv[n++] = "-n";
        argv[n++] = (char *)ns;
    }
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 15)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return run(argv, in, in ? strlen(in) : 0, out, x->err);
}

static int ip_batch(const Ctx *x, const char *ns, const SovBuf *b)
{
    if (!b->len)
        return 0;
    return ip(x, ns, b->ptr, NULL, "-batch", "-", NULL);
}

/* A command inside namespace ns (or the host namespace when ns is empty). */
static int in_ns(const Ctx *x, const char *ns, char *const cmd[], const char *in)
{
    char *argv[24];
    int n = 0;
    if (ns && *ns) {
        argv[n++] = (char *)x->cfg->ip;
        argv[n++] = "netns";
        argv[n++] = "exec";
        argv[n++] = (char *)ns;
    }
    for (int i = 0; cmd[i] && n < 23; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    return run(argv, in, in ? strlen(in) : 0, NULL, x->err);
}

/* ---- names and addresses ---- */

/* The first 12 hex digits of a resource id (lower-case hex digits and '-', at most 64), or
 * false when it is not one or has fewer. */
static bool hex12(const char *id, char out[13])
{
    int k = 0;
    size_t n = strlen(id);
    if (n > 64 || strspn(id, "0123456789abcdef-") != n)
        return false;
    for (const char *p = id; *p && k < 12; p++)
        if (*p != '-')
            out[k++] = *p;
    out[k] = '\0';
    return k == 12;
}

static bool owned_link(const char *name)
{
    size_t l = strlen(name), pre = strncmp(name, "tap", 3) == 0 ? 3 : 2;
    if (l != pre + 12)
        return false;
    if (pre == 2 && strncmp(name, "sb", 2) && strncmp(name, "vp", 2) && strncmp(name, "vi", 2) &&
        strncmp(name, "pr", 2) && strncmp(name, "pg", 2) && strncmp(name, "vx", 2) &&
        strncmp(name, "pd", 2))
        return false;
    return strspn(name + pre, "0123456789abcdef") == 12;
}

/* "a.b.c.d/len" of a CIDR with host bits allowed; false when not exactly that (IPv4, a
 * prefix length of one or two digits up to 32). */
static bool cidr4(const char *cidr, char *net, size_t n, int *len)
{
    char buf[64];
    if (strlen(cidr) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", cidr);
    char *slash = strchr(buf, '/');
    if (!slash)
        return false;
    *slash = '\0';
    size_t digits = strspn(slash + 1, "0123456789");
    if (digits < 1 || digits > 2 || slash[1 + digits])
        return false;
    long l = strtol(slash + 1, NULL, 10);
    struct in_addr a;
    if (l > 32 || inet_pton(AF_INET, buf, &a) != 1)
        return false;
    *len = (int)l;
    snprintf(net, n, "%s", buf);
    return true;
}

static bool ip4(const char *s)
{
    struct in_addr a;
    return s && inet_pton(AF_INET, s, &a) == 1;
}

static json_t *find(const Ctx *x, const char *kind, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(x->res, kind), i,
                       v) if (strcmp(jstr(v, "id"), id) == 0) return v;
    return NULL;
}

/* The IPv4 subnet (a snapshot document) of a port's first fixed IPv4 address, and it. */
static json_t *port_subnet(const Ctx *x, const json_t *port, const char **addr)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(port, "fixed_ips"), i, f)
    {
        json_t *s = find(x, "subnet", jstr(f, "subnet_id"));
        char net[64];
        int len;
        if (s && ip4(jstr(f, "ip_address")) && cidr4(jstr(s, "cidr"), net, sizeof(net), &len)) {
            *addr = jstr(f, "ip_address");
            return s;
        }
    }
    return NULL;
}

static void router_ns(const Ctx *x, const char *rid12, char *out, size_t n)
{
    snprintf(out, n, "%.16sr-%s", x->cfg->prefix, rid12);
}

/* ---- reading the kernel ---- */

static int read_links(Ctx *x, const char *ns, json_t **ret)
{
    SovBuf out;
    sov_buf_init(&out, OUT_MAX);
    int r = ip(x, ns, NULL, &out, "-j", "link", "show", NULL);
    json_t *arr =
        r == 0 ? json_loadb(out.ptr ? out.ptr : "[]", out.len ? out.len : 2, 0, NULL) : NULL;
    sov_buf_release(&out);
    if (!json_is_array(arr)) {
        json_decref(arr);
        if (r == 0)
            sov_buf_printf(x->err, "ip -j link show: unexpected output");
        return r < 0 ? r : -EIO;
    }
    json_t *by = json_object();
    size_t i;
    json_t *l;
    json_array_foreach(arr, i, l) if (*jstr(l, "ifname")) json_object_set(by, jstr(l, "ifname"), l);
    json_decref(arr);
    *ret = by;
    return 0;
}

static int read_netns(Ctx *x)
{
    SovBuf out;
    sov_buf_init(&out, OUT_MAX);
    int r = ip(x, NULL, NULL, &out, "-j", "netns", "list", NULL);
    json_t *arr = r == 0 && out.len ? json_loadb(out.ptr, out.len, 0, NULL) : json_array();
    sov_buf_release(&out);
    if (r < 0) {
        json_decref(arr);
        return r;
    }
    x->netns = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (*jstr(v, "name"))
        json_object_set_new(x->netns, jstr(v, "name"), json_true());
    json_decref(arr);
    return 0;
}

static bool link_up(const json_t *l)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(l, "flags"), i,
                       f) if (strcmp(json_string_value(f), "UP") == 0) return true;
    return false;
}

/* ---- the host namespace: bridges and ports ---- */

typedef struct Want {
    /* name -> {"kind": bridge|veth|tap|vxlan, "master": br, "peer": name, "peer_ns": ns,
     * "mtu": n (not for bridges: theirs is their ports' least)} */
    json_t *links;
    json_t *routers; /* router id -> {"ns", "legs": {ifname: [addr/len...]}, "mtu": {ifname: n},
                        "gw": ip, "routes", "snat": [cidrs], "inner": [cidrs], "fips":
                        [[fip, fixed]], "qg": name} */
    SovBuf up;       /* "link set <instance device> up" lines, run once its filtering is loaded */
} Want;

static void want_link(Want *w, const char *name, const char *kind, const char *master,
                      const char *peer, const char *peer_ns, int mtu)
{
    json_t *o = json_pack("{s:s}", "kind", kind);
    if (mtu)
        json_object_set_new(o, "mtu", json_integer(mtu));
    if (master)
        json_object_set_new(o, "master", json_string(master));
    if (peer)
        json_object_set_new(o, "peer", json_string(peer));
    if (peer_ns)
        json_object_set_new(o, "peer_ns", json_string(peer_ns));
    json_object_set_new(w->links, name, o);
}

static json_t *router_want(Ctx *x, Want *w, json_t *router)
{
    char r12[13], ns[96];
    if (!hex12(jstr(router, "id"), r12))
        return NULL;
    json_t *o = json_object_get(w->routers, jstr(router, "id"));
    if (o)
        return o;
    router_ns(x, r12, ns, sizeof(ns));
    o = json_pack("{s:s,s:{},s:{},s:{},s:[],s:[],s:[],s:[]}", "ns", ns, "legs", "mtu", "mac",
                  "routes", "snat", "fips", "inner");
    json_object_set_new(w->routers, jstr(router, "id"), o);
    return o;
}

/* The MTU of a subnet's network (its Neutron document's, NET_MTU_DEFAULT when that has none in
 * range). */
static int net_mtu(const Ctx *x, const json_t *subnet)
{
    json_t *n = find(x, "network", jstr(subnet, "network_id"));
    json_int_t m = json_integer_value(json_object_get(n, "mtu"));
    return m >= NET_MTU_MIN && m <= NET_MTU_MAX ? (int)m : NET_MTU_DEFAULT;
}

/* A leg of a router or DHCP namespace: its addresses, MTU and its port's MAC (Neutron's
 * mac_address is what the leg answers with, and so stays the same when the leg moves hosts). */
static void want_leg(json_t *rw, const char *leg, const char *addr, int mtu, const char *mac)
{
    char canon[18];
    json_object_set_new(json_object_get(rw, "legs"), leg, json_pack("[s]", addr));
    json_object_set_new(json_object_get(rw, "mtu"), leg, json_integer(mtu));
    if (sov_mac_port(mac, canon))
        json_object_set_new(json_object_get(rw, "mac"), leg, json_string(canon));
}

static void plan(Ctx *x, Want *w)
{
    size_t i;
    json_t *v;
    char h[13], name[32], peer[32], br[32], net[64], leg[64];
    int len;
    json_t *vnis = ip4(x->cfg->tunnel_ip) ? net_vni_plan(json_object_get(x->res, "subnet")) : NULL;
    json_array_foreach(json_object_get(x->res, "subnet"), i, v)
    {
        if (!hex12(jstr(v, "id"), h) || !cidr4(jstr(v, "cidr"), net, sizeof(net), &len))
            continue;
        snprintf(br, sizeof(br), "sb%s", h);
        want_link(w, br, "bridge", NULL, NULL, NULL, 0);
        if (ip4(x->cfg->tunnel_ip)) {
            json_t *vni = json_object_get(vnis, jstr(v, "id"));
            snprintf(name, sizeof(name), "vx%s", h);
            want_link(w, name, "vxlan", br, NULL, NULL, net_mtu(x, v));
            json_object_set_new(
                json_object_get(w->links, name), "vni",
                json_integer(vni ? json_integer_value(vni) : net_vni_first(jstr(v, "id"))));
        }
    }
    json_decref(vnis);
    if (x->cfg->l3)
        json_array_foreach(json_object_get(x->res, "router"), i, v) router_want(x, w, v);
    json_array_foreach(json_object_get(x->res, "port"), i, v)
    {
        const char *addr = NULL, *owner = jstr(v, "device_owner");
        json_t *sn = port_subnet(x, v, &addr);
        char s12[13];
        if (!sn || !hex12(jstr(v, "id"), h) || !hex12(jstr(sn, "id"), s12))
            continue;
        snprintf(br, sizeof(br), "sb%s", s12);
        cidr4(jstr(sn, "cidr"), net, sizeof(net), &len);
        int mtu = net_mtu(x, sn);
        const char *bound = jstr(v, "binding:host_id");
        const char *to = jstr(json_object_get(v, "binding:profile"), "migrating_to");
        /* another host's instance (unless it is live-migrating here); one bound nowhere is the
         * network host's (where [net] l3 is on), not on every host's bridge with one MAC */
        if ((*bound ? strcmp(bound, x->cfg->host) != 0 : !x->cfg->l3) &&
            strncmp(owner, "network:", 8) != 0 && strcmp(to, x->cfg->host) != 0)
            continue;
        if (strcmp(owner, "network:router_interface") == 0) {
            json_t *router = x->cfg->l3 ? find(x, "router", jstr(v, "device_id")) : NULL;
            json_t *rw = router ? router_want(x, w, router) : NULL;
            if (!rw)
                continue;
            snprintf(name, sizeof(name), "pr%s", h);
            snprintf(peer, sizeof(peer), "qr%s", h);
            want_link(w, name, "veth", br, peer, jstr(rw, "ns"), mtu);
            snprintf(leg, sizeof(leg), "%s/%d", addr, len);
            want_leg(rw, peer, leg, mtu, jstr(v, "mac_address"));
            json_array_append_new(json_object_get(rw, "snat"), json_string(jstr(sn, "cidr")));
            json_array_append_new(json_object_get(rw, "inner"), json_string(jstr(sn, "cidr")));
        } else if (strcmp(owner, "network:dhcp") == 0) {
            /* the subnet's DHCP server: a namespace with a leg holding the port's address */
            char dev[80], ns[96];
            snprintf(dev, sizeof(dev), "dhcp-%s", jstr(sn, "id"));
            if (!x->cfg->l3 || strcmp(jstr(v, "device_id"), dev) != 0 ||
                !json_is_true(json_object_get(sn, "enable_dhcp")))
                continue;
            snprintf(ns, sizeof(ns), "%.16sd-%s", x->cfg->prefix, s12);
            snprintf(name, sizeof(name), "pd%s", h);
            snprintf(peer, sizeof(peer), "dh%s", h);
            want_link(w, name, "veth", br, peer, ns, mtu);
            snprintf(leg, sizeof(leg), "%s/%d", addr, len);
            json_t *d = json_pack("{s:s,s:s,s:{},s:{},s:{},s:[],s:[],s:[],s:s,s:s,s:O}", "ns", ns,
                                  "kind", "dhcp", "legs", "mtu", "mac", "routes", "snat", "fips",
                                  "ifname", peer, "server_ip", addr, "subnet", sn);
            want_leg(d, peer, leg, mtu, jstr(v, "mac_address"));
            /* a default route through the subnet's router: dnsmasq forwards the names it does
             * not know to [net] dns_upstream through the router's SNAT, like Neutron's */
            const char *gw = jstr(sn, "gateway_ip");
            if (ip4(gw) && strcmp(gw, addr) != 0)
                json_array_append_new(json_object_get(d, "routes"),
                                      json_pack("[s,s]", "0.0.0.0/0", gw));
            json_object_set_new(w->routers, dev, d);
        } else if (strncmp(owner, "network:", 8) == 0) {
            continue; /* gateways and floating IPs are the router's */
        } else if (strncmp(owner, "compute:", 8) == 0) {
            snprintf(name, sizeof(name), "tap%s", h);
            want_link(w, name, "tap", br, NULL, NULL, mtu);
        } else {
            snprintf(name, sizeof(name), "vp%s", h);
            snprintf(peer, sizeof(peer), "vi%s", h);
            want_link(w, name, "veth", br, peer, NULL, mtu);
        }
    }
    /* external gateways */
    json_array_foreach(json_object_get(x->res, "router"), i, v)
    {
        if (!x->cfg->l3)
            break;
        json_t *gi = json_object_get(v, "external_gateway_info"), *rw = router_want(x, w, v);
        json_t *fx = json_array_get(json_object_get(gi, "external_fixed_ips"), 0);
        json_t *sn = fx ? find(x, "subnet", jstr(fx, "subnet_id")) : NULL;
        char r12[13], s12[13];
        if (!rw || !sn || !ip4(jstr(fx, "ip_address")) || !hex12(jstr(v, "id"), r12) ||
            !hex12(jstr(sn, "id"), s12) || !cidr4(jstr(sn, "cidr"), net, sizeof(net), &len))
            continue;
        snprintf(name, sizeof(name), "pg%s", r12);
        snprintf(peer, sizeof(peer), "qg%s", r12);
        snprintf(br, sizeof(br), "sb%s", s12);
        int mtu = net_mtu(x, sn);
        want_link(w, name, "veth", br, peer, jstr(rw, "ns"), mtu);
        snprintf(leg, sizeof(leg), "%s/%d", jstr(fx, "ip_address"), len);
        json_t *gp = find(x, "port", jstr(v, "_gw_port"));
        want_leg(rw, peer, leg, mtu, jstr(gp, "mac_address"));
        json_object_set_new(rw, "qg", json_string(peer));
        json_object_set_new(rw, "gwip", json_string(jstr(fx, "ip_address")));
        if (ip4(jstr(sn, "gateway_ip")))
            json_object_set_new(rw, "gw", json_string(jstr(sn, "gateway_ip")));
        if (json_is_false(json_object_get(gi, "enable_snat")))
            json_array_clear(json_object_get(rw, "snat"));
    }
    /* floating IPs: 1:1 NAT on their router's gateway */
    json_array_foreach(json_object_get(x->res, "floatingip"), i, v)
    {
        json_t *router = find(x, "router", jstr(v, "router_id"));
        json_t *rw = router ? json_object_get(w->routers, jstr(router, "id")) : NULL;
        const char *fip = jstr(v, "floating_ip_address"), *fixed = jstr(v, "fixed_ip_address");
        if (!rw || !json_object_get(rw, "qg") || !ip4(fip) || !ip4(fixed))
            continue;
        json_array_append_new(json_object_get(rw, "fips"),
                              json_pack("[s,s,s]", fip, fixed, jstr(v, "id")));
        snprintf(leg, sizeof(leg), "%s/32", fip);
        json_array_append_new(json_object_get(json_object_get(rw, "legs"), jstr(rw, "qg")),
                              json_string(leg));
    }
    json_array_foreach(json_object_get(x->res, "router"), i, v)
    {
        json_t *rw = json_object_get(w->routers, jstr(v, "id")), *rt;
        size_t k;
        json_array_foreach(json_object_get(v, "routes"), k, rt)
        {
            if (rw && cidr4(jstr(rt, "destination"), net, sizeof(net), &len) &&
                ip4(jstr(rt, "nexthop")))
                json_array_append_new(
                    json_object_get(rw, "routes"),
                    json_pack("[s,s]", jstr(rt, "destination"), jstr(rt, "nexthop")));
        }
    }
}

/* veth ends sov-net makes in its own namespace (the router and DHCP legs' peers live in theirs);
 * see nl.h and [net] big_tcp */
static const char *const host_veths[] = {"vp", "vi", "pr", "pg", "pd", NULL};

static unsigned gso_size(const NetConfig *cfg)
{
    return cfg->big_tcp ? NL_GSO_BIG : NL_GSO_DEFAULT;
}

static int apply_host(Ctx *x, Want *w)
{
    /* deletions run first: a VNI or name they free may be what an addition takes */
    SovBuf b = SOV_BUF_INIT, del = SOV_BUF_INIT;
    json_t *vnis = json_object(), *l;
    const char *name;
    json_t *spec;
    int r = 0;
    /* namespaces first: veth peers are created into them */
    json_t *rw;
    json_object_foreach(w->routers, name, rw)
    {
        const char *ns = jstr(rw, "ns");
        if (!json_object_get(x->netns, ns) &&
            (r = ip(x, NULL, NULL, NULL, "netns", "add", ns, NULL)) < 0)
            goto out;
    }
    /* the VNIs of the VXLAN devices there are (one whose subnet's VNI moved is made again) */
    if (ip4(x->cfg->tunnel_ip)) {
        SovBuf out;
        sov_buf_init(&out, OUT_MAX);
        r = ip(x, x->cfg->netns, NULL, &out, "-d", "-j", "link", "show", "type", "vxlan", NULL);
        json_t *arr = r == 0 && out.len ? json_loadb(out.ptr, out.len, 0, NULL) : NULL;
        size_t i;
        sov_buf_release(&out);
        if (r < 0)
            goto out;
        json_array_foreach(arr, i, l)
        {
            json_t *id =
                json_object_get(json_object_get(json_object_get(l, "linkinfo"), "info_data"), "id");
            if (*jstr(l, "ifname") && json_is_integer(id))
                json_object_set(vnis, jstr(l, "ifname"), id);
        }
        json_decref(arr);
    }
    /* bridges before what goes on them */
    for (int pass = 0; pass < 2; pass++)
        json_object_foreach(w->links, name, spec)
        {
            const char *kind = jstr(spec, "kind");
            bool bridge = strcmp(kind, "bridge") == 0;
            if (bridge != (pass == 0))
                continue;
            json_t *have = json_object_get(x->host_links, name);
            json_t *vni = json_object_get(vnis, name);
            if (have && vni && !json_equal(vni, json_object_get(spec, "vni"))) {
                sov_buf_printf(&del, "link del %s\n", name);
                have = NULL;
            }
            long long mtu = json_integer_value(json_object_get(spec, "mtu"));
            if (!have) {
                if (bridge)
                    sov_buf_printf(&b, "link add %s type bridge\n", name);
                else if (strcmp(kind, "tap") == 0)
                    sov_buf_printf(&b, "tuntap add dev %s mode tap\nlink set %s mtu %lld\n", name,
                                   name, mtu);
                else if (strcmp(kind, "vxlan") == 0)
                    sov_buf_printf(
                        &b, "link add %s mtu %lld type vxlan id %lld local %s dstport 4789\n", name,
                        mtu, (long long)json_integer_value(json_object_get(spec, "vni")),
                        x->cfg->tunnel_ip);
                else if (*jstr(spec, "peer_ns"))
                    sov_buf_printf(
                        &b, "link add %s mtu %lld type veth peer name %s mtu %lld netns %s\n", name,
                        mtu, jstr(spec, "peer"), mtu, jstr(spec, "peer_ns"));
                else
                    sov_buf_printf(&b, "link add %s mtu %lld type veth peer name %s mtu %lld\n",
                                   name, mtu, jstr(spec, "peer"), mtu);
            } else if (!bridge &&
                       json_integer_value(json_object_get(have, "mtu")) != (json_int_t)mtu) {
                sov_buf_printf(&b, "link set %s mtu %lld\n", name, mtu); /* the network's changed */
            }
            /* an instance end not yet in its instance's namespace follows its pair */
            json_t *vi = strncmp(name, "vp", 2) == 0 && have
                             ? json_object_get(x->host_links, jstr(spec, "peer"))
                             : NULL;
            if (vi && json_integer_value(json_object_get(vi, "mtu")) != (json_int_t)mtu)
                sov_buf_printf(&b, "link set %s mtu %lld\n", jstr(spec, "peer"), mtu);
            const char *master = jstr(spec, "master");
            if (*master && (!have || strcmp(jstr(have, "master"), master) != 0))
                sov_buf_printf(&b, "link set %s master %s\n", name, master);
            /* an instance's device carries traffic only once the security groups that
             * filter it are loaded: a pass that cannot load them leaves it down (fail closed) */
            bool inst = strcmp(kind, "tap") == 0 || strncmp(name, "vp", 2) == 0;
            if (!have || !link_up(have))
                sov_buf_printf(inst ? &w->up : &b, "link set %s up\n", name);
        }
    /* what is no longer wanted (a veth's peer goes with it) */
    json_object_foreach(x->host_links, name, spec)
    {
        if (!owned_link(name) || json_object_get(w->links, name))
            continue;
        if (strncmp(name, "vi", 2) == 0) {
            char vp[32];
            snprintf(vp, sizeof(vp), "vp%s", name + 2);
            if (json_object_get(x->host_links, vp))
                continue; /* goes with its pair */
        }
        sov_buf_printf(&del, "link del %s\n", name);
    }
    if ((r = ip_batch(x, x->cfg->netns, &del)) == 0)
        r = ip_batch(x, x->cfg->netns, &b);
out:
    json_decref(vnis);
    sov_buf_release(&del);
    sov_buf_release(&b);
    return r;
}

/* ---- security groups: one nft script for the host namespace (sg.c), applied when it changed */

/* nft's listing of both sov_sg tables in namespace ns ("" for the caller's own). */
static int sg_list(const Ctx *x, const char *ns, SovBuf *out)
{
    static const char *const fams[] = {"bridge", "inet"};
    for (size_t i = 0; i < ELEMENTSOF(fams); i++) {
        char *cmd[] = {(char *)x->cfg->nft, "list", "table", (char *)fams[i], "sov_sg", NULL};
        char *argv[] = {(char *)x->cfg->ip,
                        "netns",
                        "exec",
                        (char *)ns,
                        cmd[0],
                        cmd[1],
                        cmd[2],
                        cmd[3],
                        cmd[4],
                        NULL};
        int r = run(*ns ? argv : cmd, NULL, 0, out, x->err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* What nft lists once `script` is loaded into an empty ruleset: loaded into a network
 * namespace of its own (unshare; gone when the shell exits) and both tables listed there. The
 * passes compare the live listing with this, not with a listing of the live tables taken after
 * loading, which would take in whatever someone changed between the load and the listing. The
 * shell script is fixed; nft's path is its $0. */
static int sg_expected(const Ctx *x, const SovBuf *script, SovBuf *out)
{
    char *argv[] = {
        "unshare",
        "--net",
        "--",
        "sh",
        "-c",
        "\"$0\" -f - && \"$0\" list table bridge sov_sg && \"$0\" list table inet sov_sg",
        (char *)x->cfg->nft,
        NULL};
    return run(argv, script->ptr, script->len, out, x->err);
}

static void slurp(const char *path, SovBuf *b, size_t cap)
{
    FILE *f = fopen(path, "re");
    char buf[65536];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0 && b->len <= cap)
        sov_buf_append(b, buf, n);
    if (f)
        fclose(f);
}

static int apply_sg(Ctx *x, Want *w)
{
    json_t *ports = json_array(), *p;
    size_t i, local = 0;
    json_array_foreach(json_object_get(x->res, "port"), i, p)
    {
        json_t *c = json_copy(p);
        char h[13], dev[32];
        const char *owner = jstr(p, "device_owner");
        if (hex12(jstr(p, "id"), h) && strncmp(owner, "network:", 8) != 0) {
            snprintf(dev, sizeof(dev), "%s%s", strncmp(owner, "compute:", 8) == 0 ? "tap" : "vp",
                     h);
            json_t *spec = json_object_get(w->links, dev);
            if (spec) { /* on this host: filtered at its device, conntrack zone of its bridge */
                local++;
                json_object_set_new(c, "_dev", json_string(dev));
                json_object_set_new(c, "_bridge", json_string(jstr(spec, "master")));
            }
        }
        json_array_append_new(ports, c);
    }
    SovBuf script = SOV_BUF_INIT, old = SOV_BUF_INIT;
    /* no port here: no tables either (removal leaves nothing behind) */
    int r = local ? sg_compile(ports, json_object_get(x->res, "security_group"),
                               json_object_get(x->res, "security_group_rule"), &script, x->err)
                  : sov_buf_puts(&script, "table inet sov_sg\ndelete table inet sov_sg\n"
                                          "table bridge sov_sg\ndelete table bridge sov_sg\n");
    if (r > 0) { /* rules, elements or other hosts' ports left out: the rest goes on */
        char n[24];
        snprintf(n, sizeof(n), "%d", r);
        const char *kv[] = {"left_out", n, "why", x->err->ptr ? x->err->ptr : "", NULL};
        sov_logv_kv(SOV_LOG_WARN, NULL, 0, "security group rules or ports left out", kv);
        sov_buf_reset(x->err);
        r = 0;
    }
    json_decref(ports);
    char path[SOV_CONF_STR_MAX + 32];
    snprintf(path, sizeof(path), "%s/sg-applied.nft", x->cfg->state_dir);
    char lpath[SOV_CONF_STR_MAX + 32];
    snprintf(lpath, sizeof(lpath), "%s/sg-listed.txt", x->cfg->state_dir);
    SovBuf quiet = SOV_BUF_INIT, listed = SOV_BUF_INIT, now = SOV_BUF_INIT;
    if (r == 0) { /* unchanged and still loaded as nft listed it then: nothing to do */
        slurp(path, &old, script.len);
        Ctx q = *x;
        q.err = &quiet;
        if (old.len == script.len && script.len && !memcmp(old.ptr, script.ptr, script.len)) {
            if (!local)
                goto out;
            slurp(lpath, &listed, OUT_MAX);
            if (listed.len && sg_list(&q, x->cfg->netns, &now) == 0 && now.len == listed.len &&
                !memcmp(now.ptr, listed.ptr, now.len))
                goto out;
        }
    }
    if (r < 0)
        goto out;
    /* bridged IPv4/IPv6 through the inet hooks (br_netfilter), in this namespace */
    if (local && access("/proc/sys/net/bridge", F_OK) != 0) {
        char *mp[] = {"modprobe", "br_netfilter", NULL};
        if ((r = run(mp, NULL, 0, NULL, x->err)) < 0)
            goto out;
    }
    char *sys[] = {"sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1",
                   "net.bridge.bridge-nf-call-ip6tables=1", NULL};
    char *nft[] = {(char *)x->cfg->nft, "-f", "-", NULL};
    if ((!local || (r = in_ns(x, x->cfg->netns, sys, NULL)) == 0) &&
        (r = in_ns(x, x->cfg->netns, nft, script.ptr)) == 0)
        r = sov_write_file_atomic(path, script.ptr, script.len);
    if (r == 0 && local) { /* what the next passes compare the live listing with */
        Ctx q = *x;
        q.err = &quiet;
        now.len = 0;
        if (sg_expected(&q, &script, &now) < 0 || !now.len ||
            sov_write_file_atomic(lpath, now.ptr, now.len) < 0)
            unlink(lpath);
    }
out:
    sov_buf_release(&listed);
    sov_buf_release(&now);
    sov_buf_release(&quiet);
    sov_buf_release(&old);
    sov_buf_release(&script);
    return r;
}

/* ---- VXLAN flooding: one all-zero FDB entry per peer on every tunnel device ---- */

static int apply_fdb(Ctx *x, Want *w)
{
    json_t *peers = json_array(), *h;
    size_t i;
    json_array_foreach(json_object_get(x->res, "host"), i, h)
    {
        json_t *info = json_object_get(h, "info");
        const char *tip = jstr(info, "tunnel_ip");
        if (strcmp(jstr(h, "kind"), "network") == 0 && strcmp(jstr(h, "status"), "up") == 0 &&
            ip4(tip) && strcmp(tip, x->cfg->tunnel_ip) != 0)
            json_array_append_new(peers, json_string(tip));
    }
    SovBuf out, b = SOV_BUF_INIT;
    sov_buf_init(&out, OUT_MAX);
    char *argv[] = {(char *)x->cfg->bridge, "-j", "fdb", "show", NULL, NULL, NULL};
    char *nsargv[] = {
        (char *)x->cfg->bridge, "-n", (char *)x->cfg->netns, "-j", "fdb", "show", NULL};
    int r = run(*x->cfg->netns ? nsargv : argv, NULL, 0, &out, x->err);
    json_t *fdb = r == 0 && out.len ? json_loadb(out.ptr, out.len, 0, NULL) : json_array();
    sov_buf_release(&out);
    /* the flooding entries there are ("<dev> <dst>") and the peers wanted: each looked up
     * once, not scanned per device and peer (the dump holds every learned MAC too) */
    json_t *flood = json_object(), *want = json_object(), *e, *p, *spec;
    const char *name;
    char key[96];
    json_array_foreach(peers, i, p) json_object_set(want, json_string_value(p), json_true());
    json_array_foreach(fdb, i, e)
    {
        if (strcmp(jstr(e, "mac"), "00:00:00:00:00:00") != 0 || !*jstr(e, "dst"))
            continue;
        snprintf(key, sizeof(key), "%s %s", jstr(e, "ifname"), jstr(e, "dst"));
        json_object_set(flood, key, json_true());
        spec = json_object_get(w->links, jstr(e, "ifname"));
        if (spec && strcmp(jstr(spec, "kind"), "vxlan") == 0 &&
            !json_object_get(want, jstr(e, "dst")))
            sov_buf_printf(&b, "fdb del 00:00:00:00:00:00 dev %s dst %s\n", jstr(e, "ifname"),
                           jstr(e, "dst"));
    }
    json_object_foreach(w->links, name, spec)
    {
        if (strcmp(jstr(spec, "kind"), "vxlan") != 0)
            continue;
        const char *peer;
        json_object_foreach(want, peer, p) /* (each peer once) */
        {
            snprintf(key, sizeof(key), "%s %s", name, peer);
            if (!json_object_get(flood, key))
                sov_buf_printf(&b, "fdb append 00:00:00:00:00:00 dev %s dst %s\n", name, peer);
        }
    }
    json_decref(flood);
    json_decref(want);
    if (r == 0 && b.len) {
        char *bargv[] = {(char *)x->cfg->bridge, "-batch", "-", NULL};
        char *bnsargv[] = {
            (char *)x->cfg->bridge, "-n", (char *)x->cfg->netns, "-batch", "-", NULL};
        r = run(*x->cfg->netns ? bnsargv : bargv, b.ptr, b.len, NULL, x->err);
    }
    sov_buf_release(&b);
    json_decref(fdb);
    json_decref(peers);
    return r;
}

/* ---- router namespaces ---- */

/* "a.b.c.d/len" with the host bits cleared; "default" is 0.0.0.0/0, a bare address a /32. */
static bool route_dst(const char *s, char out[20])
{
    char buf[32];
    int len = 32;
    if (strcmp(s, "default") == 0)
        s = "0.0.0.0/0";
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/'), *end = NULL;
    if (slash) {
        *slash = '\0';
        long l = strtol(slash + 1, &end, 10);
        if (*end || l < 0 || l > 32)
            return false;
        len = (int)l;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return false;
    a.s_addr &= len ? htonl(0xffffffffu << (32 - len)) : 0;
    char ip[16];
    inet_ntop(AF_INET, &a, ip, sizeof(ip));
    snprintf(out, 20, "%s/%d", ip, len);
    return true;
}

/* The routes sov-net added in namespace ns (`ip route replace`: protocol boot) that rw no
 * longer wants (a router's removed extra route or gateway, a subnet's removed gateway_ip in
 * its DHCP namespace): a "route del" each into b. Connected routes are the kernel's. */
static int drop_stale_routes(Ctx *x, const char *ns, json_t *rw, SovBuf *b)
{
    SovBuf out;
    sov_buf_init(&out, OUT_MAX);
    int r =
        ip(x, ns, NULL, &out, "-4", "-j", "route", "show", "table", "main", "proto", "boot", NULL);
    json_t *have = r == 0 && out.len ? json_loadb(out.ptr, out.len, 0, NULL) : NULL, *h, *rt;
    sov_buf_release(&out);
    size_t i, k;
    json_array_foreach(have, i, h)
    {
        char dst[20], want[20];
        const char *gw = jstr(h, "gateway");
        if (*jstr(h, "type") || !route_dst(jstr(h, "dst"), dst) || !ip4(gw))
            continue; /* only unicast routes through a gateway are ours */
        bool keep = *jstr(rw, "gw") && *jstr(rw, "qg") && strcmp(dst, "0.0.0.0/0") == 0 &&
                    strcmp(gw, jstr(rw, "gw")) == 0;
        json_array_foreach(json_object_get(rw, "routes"), k, rt) keep =
            keep ||
            (route_dst(json_string_value(json_array_get(rt, 0)), want) && strcmp(dst, want) == 0 &&
             strcmp(gw, json_string_value(json_array_get(rt, 1))) == 0);
        if (!keep)
            sov_buf_printf(b, "route del %s via %s\n", dst, gw);
    }
    json_decref(have);
    return r < 0 ? r : 0;
}

static int apply_router(Ctx *x, const char *rid, json_t *rw)
{
    const char *ns = jstr(rw, "ns");
    json_t *links = NULL;
    int r = read_links(x, ns, &links);
    if (r < 0)
        return r;
    SovBuf out;
    sov_buf_init(&out, OUT_MAX);
    r = ip(x, ns, NULL, &out, "-j", "addr", "show", NULL);
    json_t *addrs = r < 0 ? NULL : out.len ? json_loadb(out.ptr, out.len, 0, NULL) : json_array();
    sov_buf_release(&out);
    if (!json_is_array(addrs)) { /* not knowing the addresses, change none of them */
        if (r >= 0)
            sov_buf_printf(x->err, "unreadable addresses in %s", ns);
        json_decref(addrs);
        json_decref(links);
        return r < 0 ? r : -EIO;
    }
    SovBuf b = SOV_BUF_INIT;
    json_t *announce = json_array(); /* [leg, address]: added, or on a leg whose MAC changed */
    json_t *lo = json_object_get(links, "lo");
    if (lo && !link_up(lo))
        sov_buf_printf(&b, "link set lo up\n");
    const char *leg;
    json_t *want;
    json_object_foreach(json_object_get(rw, "legs"), leg, want)
    {
        json_t *have = json_object_get(links, leg);
        if (!have)
            continue; /* created with its peer in the host namespace */
        json_int_t mtu = json_integer_value(json_object_get(json_object_get(rw, "mtu"), leg));
        if (mtu && json_integer_value(json_object_get(have, "mtu")) != mtu)
            sov_buf_printf(&b, "link set %s mtu %lld\n", leg, (long long)mtu);
        const char *mac = jstr(json_object_get(rw, "mac"), leg);
        bool moved = *mac && strcmp(jstr(have, "address"), mac) != 0;
        if (moved)
            sov_buf_printf(&b, "link set %s address %s\n", leg, mac);
        if (!link_up(have))
            sov_buf_printf(&b, "link set %s up\n", leg);
        /* addresses: add the missing, drop the unwanted */
        json_t *cur = json_array(), *ai, *a;
        size_t i, k;
        json_array_foreach(addrs, i, ai) if (strcmp(jstr(ai, "ifname"), leg) == 0)
            json_array_foreach(json_object_get(ai, "addr_info"), k,
                               a) if (strcmp(jstr(a, "family"), "inet") == 0)
        {
            char s[80];
            snprintf(s, sizeof(s), "%s/%lld", jstr(a, "local"),
                     (long long)json_integer_value(json_object_get(a, "prefixlen")));
            json_array_append_new(cur, json_string(s));
        }
        json_array_foreach(want, i, a)
        {
            bool found = false;
            json_array_foreach(cur, k, ai) found = found || json_equal(a, ai);
            if (!found)
                sov_buf_printf(&b, "addr add %s dev %s\n", json_string_value(a), leg);
            if (!found || moved) { /* neighbours learn where (and which MAC) it is now */
                char host[64];
                snprintf(host, sizeof(host), "%s", json_string_value(a));
                host[strcspn(host, "/")] = '\0';
                json_array_append_new(announce, json_pack("[s,s]", leg, host));
            }
        }
        json_array_foreach(cur, k, ai)
        {
            bool keep = false;
            json_array_foreach(want, i, a) keep = keep || json_equal(a, ai);
            if (!keep)
                sov_buf_printf(&b, "addr del %s dev %s\n", json_string_value(ai), leg);
        }
        json_decref(cur);
    }
    /* legs of interfaces removed from the router go with their host-side peers */
    r = drop_stale_routes(x, ns, rw, &b);
    if (*jstr(rw, "gw") && *jstr(rw, "qg"))
        sov_buf_printf(&b, "route replace default via %s dev %s\n", jstr(rw, "gw"), jstr(rw, "qg"));
    size_t i;
    json_t *rt;
    json_array_foreach(json_object_get(rw, "routes"), i, rt)
        sov_buf_printf(&b, "route replace %s via %s\n", json_string_value(json_array_get(rt, 0)),
                       json_string_value(json_array_get(rt, 1)));
    if (r == 0)
        r = ip_batch(x, ns, &b);
    sov_buf_release(&b);
    json_decref(addrs);
    json_decref(links);
    /* an address new here may have been elsewhere a moment ago (the l3 role moved to this host):
     * neighbours and bridges (over VXLAN too) learn where it is now instead of when their ARP
     * entries age out; best effort, as ARP itself */
    json_t *an;
    json_array_foreach(announce, i, an)
    {
        SovBuf e = SOV_BUF_INIT;
        if (r == 0 && nl_announce(ns, json_string_value(json_array_get(an, 0)),
                                  json_string_value(json_array_get(an, 1)), &e) < 0)
            log_warn("%s: %s", ns, e.ptr ? e.ptr : "gratuitous ARP failed");
        sov_buf_release(&e);
    }
    json_decref(announce);
    static const char *const legs[] = {"qr", "qg", "dh", NULL};
    if (r == 0 && (r = nl_converge_gso(ns, legs, gso_size(x->cfg), x->err)) > 0)
        r = 0;
    if (r < 0 || strcmp(jstr(rw, "kind"), "dhcp") == 0)
        return r;
    /* forwarding on; no ICMP redirects (a hairpin to a floating IP leaves by the leg it came
     * in on, and a redirect would send the client straight to an address that is not it) */
    SovBuf sc = SOV_BUF_INIT;
    sov_buf_puts(&sc, "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.send_redirects = 0\n"
                      "net.ipv4.conf.default.send_redirects = 0\n");
    const char *lname;
    json_t *addrs_of;
    json_object_foreach(json_object_get(rw, "legs"), lname, addrs_of)
        sov_buf_printf(&sc, "net.ipv4.conf.%s.send_redirects = 0\n", lname);
    char *fwd[] = {"sysctl", "-e", "-q", "-p", "-", NULL};
    r = sc.ptr ? in_ns(x, ns, fwd, sc.ptr) : -ENOMEM;
    sov_buf_release(&sc);
    if (r < 0)
        return r;
    /* NAT: replaced as a whole, atomically */
    SovBuf nft = SOV_BUF_INIT;
    const char *qg = jstr(rw, "qg");
    sov_buf_puts(&nft, "table ip sov_nat\ndelete table ip sov_nat\n");
    if (*qg) {
        sov_buf_puts(&nft, "table ip sov_nat {\n chain pre {\n  type nat hook prerouting "
                           "priority -100;\n");
        json_t *f;
        json_array_foreach(json_object_get(rw, "fips"), i, f) sov_buf_printf(
            &nft, "  ip daddr %s dnat to %s\n", json_string_value(json_array_get(f, 0)),
            json_string_value(json_array_get(f, 1)));
        sov_buf_printf(&nft, " }\n chain post {\n  type nat hook postrouting priority 100;\n");
        json_array_foreach(json_object_get(rw, "fips"), i, f) sov_buf_printf(
            &nft, "  oifname \"%s\" ip saddr %s snat to %s\n", qg,
            json_string_value(json_array_get(f, 1)), json_string_value(json_array_get(f, 0)));
        json_t *c, *inner = json_object_get(rw, "inner");
        json_array_foreach(json_object_get(rw, "snat"), i, c) sov_buf_printf(
            &nft, "  oifname \"%s\" ip saddr %s masquerade\n", qg, json_string_value(c));
        /* Hairpin: an inside address reaching a floating IP of this router comes back in;
         * its source becomes the router's external address (as for traffic from outside, and
         * so the reply returns through the router even on the same subnet). */
        if (json_array_size(inner) && json_array_size(json_object_get(rw, "fips")) &&
            ip4(jstr(rw, "gwip"))) {
            json_array_foreach(json_object_get(rw, "fips"), i, f) sov_buf_printf(
                &nft, "  oifname != \"%s\" ct status dnat ip saddr %s snat to %s\n", qg,
                json_string_value(json_array_get(f, 1)), json_string_value(json_array_get(f, 0)));
            sov_buf_printf(&nft, "  oifname != \"%s\" ct status dnat ip saddr {", qg);
            json_array_foreach(inner, i, c)
                sov_buf_printf(&nft, "%s %s", i ? "," : "", json_string_value(c));
            sov_buf_printf(&nft, " } snat to %s\n", jstr(rw, "gwip"));
        }
        /* Traffic between the router's own subnets needs no translation: it skips connection
         * tracking (a lookup per packet on the routed path), except to and from addresses
         * with a floating IP, whose replies to a hairpin (inside -> floating IP) must be
         * translated back. */
        if (json_array_size(inner)) {
            sov_buf_printf(&nft, " }\n chain east_west {\n  type filter hook prerouting priority "
                                 "-300;\n");
            if (json_array_size(json_object_get(rw, "fips"))) {
                sov_buf_puts(&nft, "  ip saddr {");
                json_array_foreach(json_object_get(rw, "fips"), i, f) sov_buf_printf(
                    &nft, "%s %s", i ? "," : "", json_string_value(json_array_get(f, 1)));
                sov_buf_puts(&nft, " } return\n  ip daddr {");
                json_array_foreach(json_object_get(rw, "fips"), i, f) sov_buf_printf(
                    &nft, "%s %s", i ? "," : "", json_string_value(json_array_get(f, 1)));
                sov_buf_puts(&nft, " } return\n");
            }
            sov_buf_printf(&nft, "  iifname != \"%s\" ip daddr {", qg);
            json_array_foreach(inner, i, c)
                sov_buf_printf(&nft, "%s %s", i ? "," : "", json_string_value(c));
            sov_buf_puts(&nft, " } notrack\n");
        }
        /* from outside only replies and what a floating IP translated get in */
        sov_buf_printf(&nft,
                       " }\n chain from_outside {\n  type filter hook forward priority 0;\n"
                       "  iifname \"%s\" ct state established,related accept\n"
                       "  iifname \"%s\" ct status dnat accept\n  iifname \"%s\" drop\n }\n}\n",
                       qg, qg, qg);
    }
    char *nftcmd[] = {(char *)x->cfg->nft, "-f", "-", NULL};
    r = in_ns(x, ns, nftcmd, nft.ptr);
    sov_buf_release(&nft);
    (void)rid;
    return r;
}

/* ---- the pass ---- */

static void status(json_t *st, const char *kind, const char *id, const char *s)
{
    char key[160];
    snprintf(key, sizeof(key), "%s/%s", kind, id);
    json_object_set_new(st, key, json_string(s));
}

/* Whether name is one of this agent's router or DHCP namespaces: <prefix>r- or <prefix>d- and
 * 12 hex digits (what a pass makes, and removes when unwanted). */
static bool l3_ns_ours(const NetConfig *cfg, const char *name)
{
    char pre[24], dpre[24];
    snprintf(pre, sizeof(pre), "%.16sr-", cfg->prefix);
    snprintf(dpre, sizeof(dpre), "%.16sd-", cfg->prefix);
    return (strncmp(name, pre, strlen(pre)) == 0 || strncmp(name, dpre, strlen(dpre)) == 0) &&
           strlen(name) == strlen(pre) + 12 && strspn(name + strlen(pre), "0123456789abcdef") == 12;
}

bool net_l3_left(const NetConfig *cfg)
{
    DIR *d = opendir("/run/netns");
    if (!d)
        return errno != ENOENT; /* not knowing, it may have some */
    bool found = false;
    struct dirent *e;
    errno = 0;
    while (!found && (e = readdir(d)))
        found = l3_ns_ours(cfg, e->d_name);
    found = found || errno != 0; /* a failed read: it may have some */
    closedir(d);
    return found;
}

int net_realize(const NetConfig *cfg, json_t *snapshot, json_t *statuses, json_t *dhcp, SovBuf *err)
{
    Ctx x = {.cfg = cfg, .res = snapshot, .err = err};
    Want w = {.links = json_object(), .routers = json_object()};
    int r = read_netns(&x);
    if (r == 0 && *cfg->netns && !json_object_get(x.netns, cfg->netns)) { /* sov up's own */
        r = ip(&x, NULL, NULL, NULL, "netns", "add", cfg->netns, NULL);
        if (r == 0)
            r = ip(&x, cfg->netns, NULL, NULL, "link", "set", "lo", "up", NULL);
    }
    if (r == 0)
        r = read_links(&x, cfg->netns, &x.host_links);
    if (r < 0)
        goto out;
    plan(&x, &w);
    if ((r = apply_host(&x, &w)) < 0 ||
        (r = nl_converge_gso(cfg->netns, host_veths, gso_size(cfg), x.err)) < 0)
        goto out;
    if (ip4(cfg->tunnel_ip) && (r = apply_fdb(&x, &w)) < 0)
        goto out;
    if ((r = apply_sg(&x, &w)) < 0 || (r = ip_batch(&x, cfg->netns, &w.up)) < 0)
        goto out;
    const char *rid, *name;
    json_t *rw, *v;
    json_object_foreach(w.routers, rid, rw)
    {
        /* one router the kernel refuses (a route it will not take) holds up no other, nor
         * the DHCP servers: ERROR for it, and the pass goes on */
        bool dhcp_ns = strcmp(jstr(rw, "kind"), "dhcp") == 0;
        if (apply_router(&x, rid, rw) < 0) {
            const char *kv[] = {dhcp_ns ? "subnet" : "router", rid, "why", err->ptr ? err->ptr : "",
                                NULL};
            sov_logv_kv(SOV_LOG_WARN, NULL, 0, "cannot set up a namespace", kv);
            sov_buf_reset(err);
            if (!dhcp_ns) {
                status(statuses, "router", rid, "ERROR");
                continue;
            }
        } else if (!dhcp_ns) {
            status(statuses, "router", rid, "ACTIVE");
            continue;
        }
        /* what the loop's DHCP supervisor needs: where to serve and whom (every port of the
         * network: leases for those on the subnet, DNS names for all, the router's and the
         * DHCP servers' too, as Neutron's; not floating IPs), and the network's dns_domain */
        json_t *sn = json_object_get(rw, "subnet"), *ports = json_array(), *p;
        size_t k;
        json_array_foreach(json_object_get(snapshot, "port"), k, p)
        {
            const char *owner = jstr(p, "device_owner");
            if (strcmp(jstr(p, "network_id"), jstr(sn, "network_id")) == 0 &&
                (strncmp(owner, "network:", 8) != 0 ||
                 strcmp(owner, "network:router_interface") == 0 ||
                 strcmp(owner, "network:dhcp") == 0))
                json_array_append(ports, p);
        }
        json_t *sd = json_copy(sn), *nw = find(&x, "network", jstr(sn, "network_id"));
        if (sd && json_is_string(json_object_get(nw, "dns_domain")))
            json_object_set(sd, "dns_domain", json_object_get(nw, "dns_domain"));
        if (sd) /* handed to the clients: the MTU their devices must take */
            json_object_set_new(sd, "mtu", json_integer(net_mtu(&x, sn)));
        json_object_set_new(dhcp, jstr(sn, "id"),
                            json_pack("{s:s,s:s,s:s,s:o,s:o}", "netns", jstr(rw, "ns"), "ifname",
                                      jstr(rw, "ifname"), "server_ip", jstr(rw, "server_ip"),
                                      "subnet", sd ? sd : json_incref(sn), "ports", ports));
    }
    /* namespaces of routers that are gone */
    json_object_foreach(x.netns, name, v)
    {
        bool wanted = false;
        const char *id;
        json_object_foreach(w.routers, id, rw) wanted = wanted || strcmp(jstr(rw, "ns"), name) == 0;
        if (!wanted && l3_ns_ours(cfg, name) &&
            (r = ip(&x, NULL, NULL, NULL, "netns", "del", name, NULL)) < 0)
            goto out;
    }
    /* statuses: a port is ACTIVE once its device is on its bridge */
    json_decref(x.host_links);
    x.host_links = NULL;
    if ((r = read_links(&x, cfg->netns, &x.host_links)) < 0)
        goto out;
    size_t i;
    json_array_foreach(json_object_get(snapshot, "port"), i, v)
    {
        char h[13], dev[32];
        const char *owner = jstr(v, "device_owner");
        if (!hex12(jstr(v, "id"), h))
            continue;
        snprintf(dev, sizeof(dev), "%s%s",
                 strcmp(owner, "network:router_interface") == 0 ? "pr"
                 : strcmp(owner, "network:dhcp") == 0           ? "pd"
                 : strncmp(owner, "compute:", 8) == 0           ? "tap"
                                                                : "vp",
                 h);
        if (strncmp(owner, "network:", 8) == 0 && strcmp(owner, "network:router_interface") != 0 &&
            strcmp(owner, "network:dhcp") != 0)
            continue;
        json_t *spec = json_object_get(w.links, dev), *have = json_object_get(x.host_links, dev);
        const char *bound = jstr(v, "binding:host_id");
        if ((*bound && strcmp(bound, cfg->host) != 0) ||
            (!cfg->l3 && (strncmp(owner, "network:", 8) == 0 || !*bound)))
            continue; /* another host reports it */
        status(statuses, "port", jstr(v, "id"),
               spec && have && strcmp(jstr(have, "master"), jstr(spec, "master")) == 0 ? "ACTIVE"
                                                                                       : "DOWN");
    }
    json_array_foreach(json_object_get(snapshot, "floatingip"), i, v)
    {
        if (!cfg->l3)
            break;
        json_t *router = find(&x, "router", jstr(v, "router_id"));
        rw = router ? json_object_get(w.routers, jstr(router, "id")) : NULL;
        status(statuses, "floatingip", jstr(v, "id"),
               rw && *jstr(rw, "qg") && ip4(jstr(v, "fixed_ip_address")) ? "ACTIVE" : "DOWN");
    }
    json_array_foreach(json_object_get(snapshot, "network"), i, v)
        status(statuses, "network", jstr(v, "id"), "ACTIVE");
out:
    json_decref(w.links);
    json_decref(w.routers);
    sov_buf_release(&w.up);
    json_decref(x.host_links);
    json_decref(x.netns);
    return r;
}
