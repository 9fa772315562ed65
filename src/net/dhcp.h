/* SPDX-License-Identifier: Apache-2.0 */
/* DHCP and DNS for sov-net: one dnsmasq per IPv4 subnet with DHCP enabled, started inside the
 * subnet's network namespace and supervised on the agent's libuv loop; it outlives the agent
 * (dhcp_detach) and the next agent adopts it. Every port on the
 * subnet gets a static lease (its MAC to its fixed IP, with its host name); nobody else gets an
 * address. dnsmasq also answers DNS on the server address: A and PTR records of every port
 * (dns_name, else host-a-b-c-d, in the network's dns_domain), other names forwarded to the
 * configured upstream resolvers or refused. Inputs are Neutron documents from sov-api,
 * validated here before any of them reaches a dnsmasq file. */
#ifndef SOV_NET_DHCP_H
#define SOV_NET_DHCP_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "sov/buf.h"

typedef struct Dhcp Dhcp; /* one dnsmasq per subnet */

#define DHCP_LEASE_DEFAULT_S 86400u
#define DHCP_LEASE_MIN_S     120u
#define DHCP_LEASE_MAX_S     (365u * 86400u)
#define DHCP_PORTS_MAX       4096u  /* static leases per subnet */
#define DHCP_NET_PORTS_MAX   16384u /* ports of the network, for DNS names */
#define DHCP_DNS_MAX         8u
#define DHCP_ROUTES_MAX      32u
#define DHCP_MTU_MIN         68u /* the interface MTU handed out (option 26) */
#define DHCP_MTU_MAX         65535u
#define DHCP_DOMAIN_DEFAULT  "openstacklocal" /* Neutron's default dns_domain */

/* What the agent's config decides; a zeroed struct means the defaults. */
typedef struct DhcpOpts {
    unsigned lease_s;    /* lease time of every static lease; 0: DHCP_LEASE_DEFAULT_S */
    const char *ip;      /* the `ip` binary (netns exec); NULL: "ip" from PATH */
    const char *dnsmasq; /* NULL: "dnsmasq" from PATH */
    /* dnsmasq-utils' dhcp_release, which ends the lease of a port that is gone; NULL:
     * "dhcp_release" from PATH */
    const char *dhcp_release;
    /* The user dnsmasq drops to after binding; NULL: dnsmasq's own default (nobody). It re-reads
     * the hosts file as that user on SIGHUP, so state_dir must be searchable by it. */
    const char *user;
    /* Upstream resolvers for the names dnsmasq does not know, "ip,ip" (at most DHCP_DNS_MAX);
     * NULL or "": none, such names are refused. */
    const char *dns_upstream;
    /* The domain of subnets whose network has no valid dns_domain; NULL or "":
     * DHCP_DOMAIN_DEFAULT. */
    const char *dns_domain;
} DhcpOpts;

/* Whether the agent's [net] dns_upstream and dns_domain are well formed (NULL or "" are: none,
 * DHCP_DOMAIN_DEFAULT), so a bad config stops the agent at start, not each subnet's DHCP. */
bool dhcp_dns_ok(const char *dns_upstream, const char *dns_domain);

/* Optional: a Dhcp with non-default options, to be handed to dhcp_apply() through *io (apply
 * creates one with the defaults when *io is NULL). The strings are copied. NULL on bad options
 * (lease_s outside [DHCP_LEASE_MIN_S, DHCP_LEASE_MAX_S], a user name that is not a plain name)
 * or out of memory. */
Dhcp *dhcp_new(const DhcpOpts *o);

/* Starts/updates DHCP for subnet (Neutron subnet doc: id, cidr, gateway_ip, dns_nameservers,
 * host_routes, enable_dhcp, ip_version 4 only, plus the network's dns_domain, which replaces
 * the default domain when it is a valid domain name, and the network's mtu, handed out to every
 * client when present) serving on interface ifname inside network
 * namespace netns (NULL or "": the agent's own), where the caller gave ifname the address
 * server_ip in the subnet. ports: array of Neutron port docs (mac_address, fixed_ips[{subnet_id,
 * ip_address}], dns_name); each port with an address on this subnet gets a static lease and a
 * DNS name; ports on other subnets are skipped. Without dns_nameservers, DHCP hands out
 * server_ip as the DNS server. Files live in state_dir/dhcp/<subnet id>/ (conf, hosts, names,
 * leases, pid, log, conf.running, owner), written atomically. A change of ports (or of their names)
 * rewrites hosts and names and sends SIGHUP; a change of anything else restarts dnsmasq; a
 * dnsmasq that dies is restarted with backoff. The first apply of a Dhcp keeps a dnsmasq an
 * earlier agent left in state_dir when it was started with the config about to be written and
 * runs in netns from a dnsmasq binary not replaced since (it gets a SIGHUP for the hosts and
 * names, and leases no port has are released); any other dnsmasq left there is killed and a new
 * one started. enable_dhcp false stops
 * and frees *io and sets it to NULL. Returns 0, or <0 with a reason in err, leaving what ran
 * before running. A dnsmasq that cannot be started is retried with backoff like one that died
 * (dhcp_running() says whether one runs). */
int dhcp_apply(uv_loop_t *loop, const char *state_dir, const char *netns, const char *ifname,
               const char *server_ip, json_t *subnet, json_t *ports, Dhcp **io, SovBuf *err);

/* Stops d's dnsmasq (SIGTERM, SIGKILL after a grace period), or kills the one an earlier agent
 * left when d never started its own; removes its files and frees d once its handles are closed
 * (run the loop to finish). A first dhcp_apply for the same subnet before that takes the files
 * over (and kills the old dnsmasq): they stay. Accepts NULL. */
void dhcp_stop(Dhcp *d);

/* Lets go of d's dnsmasq without stopping it and keeps its files, for the next agent to adopt
 * (the agent exits); frees d once its handles are closed. Accepts NULL. */
void dhcp_detach(Dhcp *d);

/* Kills the dnsmasq of every subnet directory in state_dir (absolute)/dhcp whose subnet id is
 * no key of keep and removes the directory: what an earlier agent left for subnets gone since,
 * or a first dhcp_apply that failed left running. */
void dhcp_sweep(const char *state_dir, json_t *keep);

/* Whether its dnsmasq is running (for status/metrics). Accepts NULL. */
bool dhcp_running(const Dhcp *d);
/* The pid of the running dnsmasq, 0 when none. */
int dhcp_pid(const Dhcp *d);

/* For tests and dhcp_apply: validates the documents and renders dnsmasq's config file (for the
 * directory dir) into conf, its DHCP hosts file into hosts and its DNS names file into names.
 * Returns 0 or -EINVAL with err set. */
int dhcp_render(const char *dir, const char *ifname, const char *server_ip, json_t *subnet,
                json_t *ports, const DhcpOpts *o, SovBuf *conf, SovBuf *hosts, SovBuf *names,
                SovBuf *err);

#endif
