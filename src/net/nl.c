/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net: rtnetlink for what Debian 12's `ip` cannot set, the GSO/GRO size limits of devices
 * (IFLA_GSO_IPV4_MAX_SIZE and IFLA_GRO_IPV4_MAX_SIZE arrived with Linux 6.3, after iproute2
 * 6.1). A socket is opened inside the wanted namespace (setns on this thread and back), one
 * dump reads every device there, and only devices whose limits differ get an RTM_NEWLINK.
 * And gratuitous ARP, which Debian 12 has no tool for but busybox's. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nl.h"
#include "sov/macro.h"

/* attribute numbers from Linux's if_link.h, newer than the headers Debian 12 ships */
enum {
    NL_GSO_MAX_SIZE = 41,
    NL_GRO_MAX_SIZE = 58,
    NL_TSO_MAX_SIZE = 59,
    NL_GSO_IPV4_MAX_SIZE = 63,
    NL_GRO_IPV4_MAX_SIZE = 64,
};
static const unsigned short nl_sizes[] = {NL_GSO_MAX_SIZE, NL_GRO_MAX_SIZE, NL_GSO_IPV4_MAX_SIZE,
                                          NL_GRO_IPV4_MAX_SIZE};
#define NL_MAX_CHANGES 8192u /* devices changed in one call (bounds the work list) */

static void seterr_as(SovBuf *err, const char *prefix, const char *what, int e)
{
    if (err)
        sov_buf_printf(err, "%s: %s: %s", prefix, what, strerror(e));
}

static void seterr(SovBuf *err, const char *what, int e)
{
    seterr_as(err, "netlink", what, e);
}

/* A socket(domain, type, proto) in namespace ns (NULL or "": this thread's). */
static int open_in(const char *ns, int domain, int type, int proto, SovBuf *err)
{
    const char *who = domain == AF_NETLINK ? "netlink" : "packet"; /* for messages */
    if (!ns || !*ns) {
        int s = socket(domain, type | SOCK_CLOEXEC, proto), e = errno;
        if (s < 0)
            seterr_as(err, who, "socket", e);
        return s < 0 ? -e : s;
    }
    char path[300];
    if (snprintf(path, sizeof(path), "/run/netns/%s", ns) >= (int)sizeof(path) || strchr(ns, '/')) {
        seterr_as(err, who, "namespace name", EINVAL);
        return -EINVAL;
    }
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = self < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0) {
        int e = errno;
        if (self >= 0)
            close(self);
        seterr_as(err, who, path, e);
        return -e;
    }
    int s = -1, e = 0;
    if (setns(target, CLONE_NEWNET) < 0) {
        e = errno;
    } else {
        s = socket(domain, type | SOCK_CLOEXEC, proto);
        e = s < 0 ? errno : 0;
        if (setns(self, CLONE_NEWNET) < 0) {
            /* this pool thread would go on in the wrong namespace: nothing sane is left */
            fprintf(stderr, "sov-net: cannot return to its network namespace: %s\n",
                    strerror(errno));
            abort();
        }
    }
    close(target);
    close(self);
    if (s < 0)
        seterr_as(err, who, "socket in namespace", e);
    return s < 0 ? -e : s;
}

/* NLMSG_OK without its signed/unsigned comparison */
static bool msg_ok(const struct nlmsghdr *h, int len)
{
    return len >= (int)sizeof(*h) && h->nlmsg_len >= sizeof(*h) && h->nlmsg_len <= (unsigned)len;
}

/* Sends one request; for a dump, calls each(msg) per answer; returns 0 or -errno. */
static int talk(int s, struct nlmsghdr *req, void (*each)(struct nlmsghdr *, void *), void *ud)
{
    static __thread uint32_t seq;
    req->nlmsg_seq = ++seq;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(s, req, req->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    static __thread char buf[65536] __attribute__((aligned(4)));
    for (;;) {
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int len = (int)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; msg_ok(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_seq != req->nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
                    return -EPROTO;
                return e->error; /* 0: the ack */
            }
            if (each)
                each(h, ud);
        }
    }
}

typedef struct Change {
    int index;
    unsigned size;
    bool has[ELEMENTSOF(nl_sizes)];
} Change;

typedef struct Scan {
    const char *const *prefixes;
    unsigned want;
    Change *v;
    size_t n;
    bool full;
} Scan;

static void scan_link(struct nlmsghdr *h, void *ud)
{
    Scan *sc = ud;
    if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
        return;
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi)));
    const char *name = NULL;
    unsigned have[ELEMENTSOF(nl_sizes)], tso = 0;
    bool has[ELEMENTSOF(nl_sizes)] = {false};
    for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        size_t plen = RTA_PAYLOAD(a);
        if (a->rta_type == IFLA_IFNAME && plen > 0 && ((char *)RTA_DATA(a))[plen - 1] == '\0')
            name = RTA_DATA(a);
        if (plen != 4)
            continue;
        unsigned v;
        memcpy(&v, RTA_DATA(a), 4);
        if (a->rta_type == NL_TSO_MAX_SIZE)
            tso = v;
        for (size_t i = 0; i < ELEMENTSOF(nl_sizes); i++)
            if (a->rta_type == nl_sizes[i]) {
                have[i] = v;
                has[i] = true;
            }
    }
    bool ours = false; /* a prefix, then exactly 12 hex digits: sov-net's names */
    for (size_t i = 0; name && sc->prefixes[i] && !ours; i++) {
        size_t pl = strlen(sc->prefixes[i]);
        ours = strncmp(name, sc->prefixes[i], pl) == 0 && strlen(name + pl) == 12 &&
               strspn(name + pl, "0123456789abcdef") == 12;
    }
    if (!ours)
        return;
    unsigned want = tso && sc->want > tso ? tso : sc->want;
    bool differs = false;
    for (size_t i = 0; i < ELEMENTSOF(nl_sizes); i++)
        differs |= has[i] && have[i] != want;
    if (!differs)
        return;
    if (sc->n >= NL_MAX_CHANGES) {
        sc->full = true;
        return;
    }
    Change *c = &sc->v[sc->n++];
    c->index = ifi->ifi_index;
    c->size = want;
    memcpy(c->has, has, sizeof(has));
}

int nl_converge_gso(const char *ns, const char *const *prefixes, unsigned size, SovBuf *err)
{
    int s = open_in(ns, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, err);
    if (s < 0)
        return s;
    Scan sc = {.prefixes = prefixes, .want = size, .v = calloc(NL_MAX_CHANGES, sizeof(Change))};
    struct {
        struct nlmsghdr h;
        struct ifinfomsg ifi;
        char attrs[64];
    } req;
    int r = sc.v ? 0 : -ENOMEM;
    if (r == 0) {
        memset(&req, 0, sizeof(req));
        req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
        req.h.nlmsg_type = RTM_GETLINK;
        req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.ifi.ifi_family = AF_UNSPEC;
        r = talk(s, &req.h, scan_link, &sc);
        if (r < 0)
            seterr(err, "link dump", -r);
    }
    int changed = 0;
    for (size_t i = 0; r == 0 && i < sc.n; i++) {
        memset(&req, 0, sizeof(req));
        req.h.nlmsg_type = RTM_NEWLINK;
        req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        req.ifi.ifi_family = AF_UNSPEC;
        req.ifi.ifi_index = sc.v[i].index;
        unsigned len = NLMSG_LENGTH(sizeof(req.ifi));
        for (size_t k = 0; k < ELEMENTSOF(nl_sizes); k++) {
            if (!sc.v[i].has[k])
                continue;
            struct rtattr *a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(len));
            a->rta_type = nl_sizes[k];
            a->rta_len = RTA_LENGTH(4);
            memcpy(RTA_DATA(a), &sc.v[i].size, 4);
            len = NLMSG_ALIGN(len) + RTA_ALIGN(a->rta_len);
        }
        req.h.nlmsg_len = len;
        r = talk(s, &req.h, NULL, NULL);
        if (r == -ENODEV) /* gone meanwhile (a port being removed) */
            r = 0;
        else if (r < 0)
            seterr(err, "setting GSO/GRO sizes", -r);
        else
            changed++;
    }
    if (r == 0 && sc.full) {
        r = -E2BIG;
        seterr(err, "too many devices to change in one pass", E2BIG);
    }
    free(sc.v);
    close(s);
    return r < 0 ? r : changed;
}

int nl_announce(const char *ns, const char *ifname, const char *addr, SovBuf *err)
{
    struct in_addr ip;
    struct ifreq ifr = {0};
    if (inet_pton(AF_INET, addr, &ip) != 1 || strlen(ifname) >= sizeof(ifr.ifr_name)) {
        seterr_as(err, "gratuitous ARP", addr, EINVAL);
        return -EINVAL;
    }
    int s = open_in(ns, AF_PACKET, SOCK_DGRAM, 0, err); /* protocol 0: it sends, receives none */
    if (s < 0)
        return s;
    int r = 0;
    memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
    struct sockaddr_ll to = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP), .sll_halen = ETH_ALEN};
    struct {
        struct arphdr h;
        uint8_t sha[ETH_ALEN], spa[4], tha[ETH_ALEN], tpa[4];
    } __attribute__((packed)) arp = {.h = {.ar_hrd = htons(ARPHRD_ETHER),
                                           .ar_pro = htons(ETH_P_IP),
                                           .ar_hln = ETH_ALEN,
                                           .ar_pln = 4,
                                           .ar_op = htons(ARPOP_REQUEST)}};
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
        r = -errno;
        seterr_as(err, "gratuitous ARP", ifname, errno);
        goto out;
    }
    to.sll_ifindex = ifr.ifr_ifindex;
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
        r = -errno;
        seterr_as(err, "gratuitous ARP", ifname, errno);
        goto out;
    }
    /* a request for its own address, from it, to everyone (RFC 5227's announcement) */
    memcpy(arp.sha, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    memcpy(arp.spa, &ip, 4);
    memcpy(arp.tpa, &ip, 4);
    memset(to.sll_addr, 0xff, ETH_ALEN);
    if (sendto(s, &arp, sizeof(arp), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
        r = -errno;
        seterr_as(err, "gratuitous ARP", ifname, errno);
    }
out:
    close(s);
    return r;
}
