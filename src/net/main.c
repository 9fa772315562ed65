/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net: the per-host network agent. The /healthz and /metrics listener and the agent API
 * client run on the main loop; realisations run on the thread pool. On SIGTERM it stops its
 * DHCP servers (their leases stay on disk) and leaves the rest of the datapath as it is: a
 * restarted sov-net finds that right and changes nothing, and starts the DHCP servers again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dhcp.h"
#include "net.h"
#include "sov/log.h"

static const SovConfField conf_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(NetConfig, listen), 3, 255, "127.0.0.1:8479",
     "/healthz and /metrics address (HOST:PORT; port 0 picks a free one)"},
    {"log", "level", SOV_CONF_STRING, offsetof(NetConfig, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    {"net", "api_url", SOV_CONF_STRING, offsetof(NetConfig, api_url), 8, 255,
     "http://127.0.0.1:8400", "sov-api's address (http://HOST:PORT)"},
    {"net", "agent_token", SOV_CONF_STRING, offsetof(NetConfig, agent_token), 0, 255, "",
     "sov-api's [agent] token"},
    {"net", "host", SOV_CONF_STRING, offsetof(NetConfig, host), 0, 63, "",
     "host name to register (empty: this machine's hostname)"},
    {"net", "zone", SOV_CONF_STRING, offsetof(NetConfig, zone), 0, 63, "",
     "availability zone (empty: the API's first zone)"},
    {"net", "netns", SOV_CONF_STRING, offsetof(NetConfig, netns), 0, 63, "",
     "network namespace holding the bridges and host-side devices (empty: this one)"},
    {"net", "prefix", SOV_CONF_STRING, offsetof(NetConfig, prefix), 1, 16, "sov",
     "prefix of the namespaces sov-net makes (routers)"},
    {"net", "state_dir", SOV_CONF_STRING, offsetof(NetConfig, state_dir), 1, 200, "var/net",
     "batch files and DHCP state"},
    {"net", "ip", SOV_CONF_STRING, offsetof(NetConfig, ip), 1, 255, "ip", "iproute2's ip"},
    {"net", "nft", SOV_CONF_STRING, offsetof(NetConfig, nft), 1, 255, "nft", "nftables' nft"},
    {"net", "bridge", SOV_CONF_STRING, offsetof(NetConfig, bridge), 1, 255, "bridge",
     "iproute2's bridge"},
    {"net", "tunnel_ip", SOV_CONF_STRING, offsetof(NetConfig, tunnel_ip), 0, 63, "",
     "this host's underlay IPv4 address for VXLAN (empty: one host, no tunnels)"},
    {"net", "l3", SOV_CONF_BOOL, offsetof(NetConfig, l3), 0, 0, "true",
     "whether this host may hold the l3 role sov-api gives one network host at a time (routers "
     "with their NAT and floating IPs, DHCP servers, ports bound to no host)"},
    {"net", "big_tcp", SOV_CONF_BOOL, offsetof(NetConfig, big_tcp), 0, 0, "false",
     "GSO/GRO limits of 256 KiB (BIG TCP) on veth ports, router and DHCP legs (packets bigger "
     "than a tap, VXLAN or uplink takes are cut to MSS size there)"},
    {"net", "resync", SOV_CONF_DURATION, offsetof(NetConfig, resync_ms), 1000, 3600000, "30s",
     "period of a full re-check even without changes (repairs what others removed)"},
    {"net", "dns_upstream", SOV_CONF_STRING, offsetof(NetConfig, dns_upstream), 0, 127, "",
     "resolvers (ip,ip) the DHCP servers' DNS forwards unknown names to (empty: refuse them)"},
    {"net", "dns_domain", SOV_CONF_STRING, offsetof(NetConfig, dns_domain), 0, 253,
     "openstacklocal", "DNS domain of instances on networks without dns_domain"},
    SOV_HTTP_LIMIT_FIELDS(NetConfig, http),
};

static const SovDaemonSpec daemon_spec = {"sov-net",
                                          "sov-net configuration",
                                          conf_fields,
                                          ELEMENTSOF(conf_fields),
                                          offsetof(NetConfig, listen),
                                          offsetof(NetConfig, log_level),
                                          sizeof(NetConfig)};

static const char *config_path;

static void on_hup(void *ud)
{
    sov_daemon_reload_log_level(&daemon_spec, config_path);
}

static void on_term(int sig, void *ud)
{
    Net *n = ud;
    log_info("stopping (signal %d); the datapath stays as it is", sig);
    agent_stop(n);
    uv_stop(n->loop);
}

int main(int argc, char **argv)
{
    static Net n;
    SovDaemonArgs args;
    char host[256];
    int port, lvl, r, fd = -1;

    r = sov_daemon_load(argc, argv, &daemon_spec, &n.cfg, &args, &lvl, host, sizeof(host), &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (!dhcp_dns_ok(n.cfg.dns_upstream, n.cfg.dns_domain)) {
        fprintf(stderr, "sov-net: [net] dns_upstream must be IPv4 addresses separated by ',' (at "
                        "most 8) and dns_domain a domain name\n");
        return 2;
    }
    if (sov_parse_http_url(n.cfg.api_url, n.api_host, sizeof(n.api_host), &n.api_port) < 0) {
        fprintf(stderr, "sov-net: [net] api_url must be http://HOST:PORT\n");
        return 2;
    }
    if (n.cfg.host[0])
        snprintf(n.host, sizeof(n.host), "%.63s", n.cfg.host);
    else if (gethostname(n.host, sizeof(n.host)) < 0)
        snprintf(n.host, sizeof(n.host), "localhost");
    n.host[sizeof(n.host) - 1] = '\0';
    snprintf(n.cfg.host, sizeof(n.cfg.host), "%s", n.host); /* realize.c reads it */
    if (!n.host[0] || !sov_name_ok(n.host) || !sov_name_ok(n.cfg.zone) ||
        !sov_name_ok(n.cfg.netns) || !sov_name_ok(n.cfg.prefix)) {
        fprintf(stderr, "sov-net: host, zone, netns and prefix are letters, digits, '-', '_', "
                        "'.'\n");
        return 2;
    }
    config_path = args.config;
    if (args.check_config) {
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("net", (SovLogLevel)lvl, stderr);
    if (mkdir(n.cfg.state_dir, 0700) < 0 && errno != EEXIST) {
        log_error_errno(-errno, "cannot create %s", n.cfg.state_dir);
        return 1;
    }
    /* dnsmasq (as nobody) re-reads its hosts file: a path it can traverse */
    snprintf(n.dhcp_dir, sizeof(n.dhcp_dir), "/run/sov-net/%.16s", n.cfg.prefix);
    if ((mkdir("/run/sov-net", 0711) < 0 && errno != EEXIST) ||
        (mkdir(n.dhcp_dir, 0711) < 0 && errno != EEXIST) || chmod(n.dhcp_dir, 0711) < 0) {
        log_error_errno(-errno, "cannot create %s", n.dhcp_dir);
        return 1;
    }
    n.loop = uv_default_loop();
    n.reported = json_object();
    n.m_applies = sov_metrics_counter("sov_net_realisations_total", "datapath passes", "");
    n.m_apply_errors =
        sov_metrics_counter("sov_net_realisation_errors_total", "datapath passes that failed", "");
    n.m_ports = sov_metrics_gauge("sov_net_ports", "instance ports realised on this host", "");
    n.m_pass_ms =
        sov_metrics_gauge("sov_net_last_pass_ms", "duration of the last datapath pass", "");
    n.m_rules = sov_metrics_gauge("sov_net_security_group_rules",
                                  "security group rules in the last datapath pass", "");
    sov_http_limits_from_conf(&n.cfg.http, &n.limits);
    if ((r = sov_listen_tcp(host, port, false, &fd, &port)) < 0) {
        log_error_errno(r, "cannot listen on %s", n.cfg.listen);
        return 1;
    }
    n.router = sov_router_new();
    if (!n.router)
        return 1;
    sov_router_add_ops(n.router);
    SovHttpServerConfig hc = {.limits = n.limits, .router = n.router, .svc = "net"};
    n.http = sov_http_server_new(n.loop, &hc);
    if (!n.http || sov_http_server_listen_fd(n.http, fd) < 0) {
        log_error("cannot start the HTTP listener");
        return 1;
    }
    if (args.pidfile && (r = sov_pidfile_write(args.pidfile)) < 0) {
        log_error_errno(r, "cannot write pid file %s", args.pidfile);
        return 1;
    }
    SovSignals *sig = sov_signals_install(n.loop, on_term, on_hup, &n);
    agent_start(&n);
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    const char *kv[] = {"host", host,          "port",  portbuf,     "net_host", n.host,
                        "api",  n.cfg.api_url, "netns", n.cfg.netns, NULL};
    if (sov_daemon_announce(&args, port, kv) < 0)
        return 1;
    uv_run(n.loop, UV_RUN_DEFAULT);
    sov_signals_close(sig);
    if (args.pidfile)
        unlink(args.pidfile);
    log_info("stopped");
    return 0;
}
