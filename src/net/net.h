/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net: the per-host network agent that turns sov-api's Neutron resources into Linux
 * networking. One loop owns the agent API client (agent.c: registration, the long-poll watch
 * of networks, subnets, ports, routers and floating IPs, status reports) and hands each
 * snapshot to realize.c, which runs on the thread pool: it reads what the kernel has (`ip -j`),
 * computes what the snapshot wants and applies the difference with `ip -batch` and `nft -f`
 * (never a shell). One realisation runs at a time; a newer snapshot waits for it.
 *
 * Datapath (every host-side device lives in the namespace [net] netns, made when missing; the
 * root namespace when empty; names carry the first 12 hex digits of the resource id):
 *   sb<subnet>            a Linux bridge per subnet
 *   vp<port> / vi<port>   a veth per instance port: vp on the bridge, vi for the instance
 *                         (tests move it into their own namespace); tap<port> for compute ports
 *   <prefix>r-<router>    a namespace per router; qr<port> in it (the subnet's gateway address)
 *                         with its peer pr<port> on the subnet's bridge; qg<router> (external
 *                         address, floating IPs) with pg<router> on the external subnet's bridge
 *   table ip sov_nat      in the router namespace: SNAT (masquerade) of its subnets through the
 *                         gateway, 1:1 NAT of floating IPs
 *   <prefix>d-<subnet>    a namespace per subnet with DHCP (where [net] l3 is on): dh<port> holds
 *                         the subnet's network:dhcp port address, pd<port> is on the bridge;
 *                         dhcp.c runs dnsmasq there with a static lease per port
 *   vx<subnet>            with [net] tunnel_ip: a VXLAN device on the subnet's bridge (VNI derived
 *                         from the subnet id), flooding to the tunnel addresses of the other
 *                         sov-net hosts; instance ports are realised on the host their binding
 *                         names (any host when unbound), routers only where [net] l3 is on */
#ifndef SOV_NET_H
#define SOV_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sov/buf.h"
#include "sov/conf.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/metrics.h"

typedef struct NetConfig {
    char listen[SOV_CONF_STR_MAX];
    char log_level[SOV_CONF_STR_MAX];
    char api_url[SOV_CONF_STR_MAX];
    char agent_token[SOV_CONF_STR_MAX];
    char host[SOV_CONF_STR_MAX];
    char zone[SOV_CONF_STR_MAX];
    char netns[SOV_CONF_STR_MAX];
    char prefix[SOV_CONF_STR_MAX];
    char state_dir[SOV_CONF_STR_MAX];
    char ip[SOV_CONF_STR_MAX];
    char nft[SOV_CONF_STR_MAX];
    char bridge[SOV_CONF_STR_MAX];
    char tunnel_ip[SOV_CONF_STR_MAX];
    char dns_upstream[SOV_CONF_STR_MAX]; /* the DHCP servers' DNS (dhcp.h) */
    char dns_domain[SOV_CONF_STR_MAX];
    bool l3;
    bool big_tcp; /* BIG TCP limits on veth ports and router legs (nl.h) */
    uint64_t resync_ms;
    SovHttpLimitsConf http;
} NetConfig;

/* A network's MTU (its Neutron `mtu`): what its bridge ports, VXLAN devices and router and DHCP
 * legs get and DHCP hands out; room for VXLAN's 50 bytes on a 1500-byte underlay by default. */
#define NET_MTU_DEFAULT 1450
#define NET_MTU_MIN     68
#define NET_MTU_MAX     9000

typedef struct Dhcp Dhcp;
typedef struct DhcpSlot {
    char subnet[65];
    Dhcp *d;
    struct DhcpSlot *next;
} DhcpSlot;

typedef struct Net {
    NetConfig cfg;
    uv_loop_t *loop;
    char api_host[256];
    int api_port;
    char host[64];
    uint64_t rev;
    bool registered, watch_busy, stopping;
    bool l3_active;   /* sov-api says this host holds the l3 role (with [net] l3 on) */
    bool l3_realised; /* router or DHCP namespaces are here, or the role is held (agent.c) */
    int64_t l3_term;  /* the l3 term the last heartbeat answer named (echoed in heartbeats) */
    uint64_t hb_sent, hb_answered; /* heartbeats sent; the latest whose answer was taken */
    unsigned backoff_ms;
    uint64_t heartbeat_ms;
    uv_timer_t heartbeat, watch_retry, resync;
    json_t *snapshot; /* the latest watch answer's resources (owned) */
    bool applying, dirty;
    json_t *reported;   /* "kind/id" -> status last reported */
    DhcpSlot *dhcp;     /* the dnsmasq of each subnet this host serves */
    char dhcp_dir[128]; /* their files: /run/sov-net/<prefix> */
    unsigned puts;      /* reports in flight */
    SovHttpServer *http;
    SovRouter *router;
    SovHttpLimits limits;
    SovMetric *m_applies, *m_apply_errors, *m_ports, *m_pass_ms, *m_rules;
} Net;

/* agent.c */
void agent_start(Net *n);
void agent_stop(Net *n);

/* realize.c: makes the kernel match snapshot (resources by kind) on the calling thread;
 * statuses gets "kind/id" -> status for what it realised, dhcp gets subnet id -> {netns, ifname,
 * server_ip, subnet, ports} for each DHCP server this host runs. 0, or <0 with err (a partial
 * application is retried by the next pass). */
int net_realize(const NetConfig *cfg, json_t *snapshot, json_t *statuses, json_t *dhcp,
                SovBuf *err);
/* realize.c: whether router or DHCP namespaces of this agent's prefix exist (what the l3 role
 * made here, whatever the last pass managed); true when /run/netns cannot be read. */
bool net_l3_left(const NetConfig *cfg);

#endif
