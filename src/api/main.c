/* SPDX-License-Identifier: Apache-2.0 */
/* sov-api: the control plane daemon. One loop serves every API on one port; the parts
 * (identity.c, compute.c, image.c, volume.c, network.c, agent.c) register their routes on one
 * router and start their timers here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "network-int.h"
#include "sov/log.h"
#include "sov/metrics.h"

#define Q(key, field, def, help)                                                                   \
    {                                                                                              \
        "quota", key, SOV_CONF_INT, offsetof(ApiConfig, field), -1, INT32_MAX, def, help           \
    }

static const SovConfField api_conf_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(ApiConfig, listen), 3, 255, "127.0.0.1:8400",
     "address of every API (HOST:PORT; port 0 picks a free one)"},
    {"server", "public_url", SOV_CONF_STRING, offsetof(ApiConfig, public_url), 0, 255, "",
     "base URL of the catalog's endpoints (empty: http://<listen address>)"},
    {"server", "access_log", SOV_CONF_BOOL, offsetof(ApiConfig, access_log), 0, 0, "true",
     "log one line per request"},
    {"log", "level", SOV_CONF_STRING, offsetof(ApiConfig, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    {"api", "data_dir", SOV_CONF_STRING, offsetof(ApiConfig, data_dir), 1, 255, "var/api",
     "directory of the state database (state.db), the audit log and local image data"},
    {"api", "fsync", SOV_CONF_BOOL, offsetof(ApiConfig, fsync), 0, 0, "true",
     "make every acknowledged change durable before answering"},
    {"api", "regions", SOV_CONF_STRING, offsetof(ApiConfig, regions), 3, 255,
     "eu-central-1:EU:eu-central-1a,eu-central-1b,eu-central-1c",
     "regions as NAME:JURISDICTION:ZONE,ZONE;NAME:...; the first one is this region"},
    {"identity", "admin_password", SOV_CONF_STRING, offsetof(ApiConfig, admin_password), 0, 255, "",
     "password of the bootstrap user 'admin' (set once, on the first start)"},
    {"identity", "admin_password_file", SOV_CONF_STRING, offsetof(ApiConfig, admin_password_file),
     0, 255, "", "file holding the bootstrap admin password instead (first line)"},
    {"identity", "token_ttl", SOV_CONF_DURATION, offsetof(ApiConfig, token_ttl_ms), 1000,
     7 * 24 * 3600000LL, "12h", "lifetime of an issued token"},
    {"agent", "token", SOV_CONF_STRING, offsetof(ApiConfig, agent_token), 0, 255, "",
     "bearer token agents (sov-compute, sov-net) present (empty: agent API closed)"},
    {"agent", "heartbeat", SOV_CONF_DURATION, offsetof(ApiConfig, heartbeat_ms), 1000, 600000,
     "10s", "how often agents report; a host silent for three is down"},
    {"network", "dns_domain", SOV_CONF_STRING, offsetof(ApiConfig, dns_domain), 0, 253,
     "openstacklocal",
     "DNS domain of ports on networks without dns_domain (sov-net's [net] dns_domain)"},
    {"block", "url", SOV_CONF_STRING, offsetof(ApiConfig, block_url), 0, 255, "",
     "sov-block management API (http://HOST:PORT; empty: volumes stay in 'creating')"},
    {"block", "token", SOV_CONF_STRING, offsetof(ApiConfig, block_token), 0, 255, "",
     "bearer token of the sov-block management API"},
    {"image", "s3_url", SOV_CONF_STRING, offsetof(ApiConfig, s3_url), 0, 255, "",
     "sov-s3 endpoint for image data (http://HOST:PORT; empty: <data_dir>/images)"},
    {"image", "s3_access_key", SOV_CONF_STRING, offsetof(ApiConfig, s3_access_key), 0, 255, "",
     "access key for the image bucket"},
    {"image", "s3_secret_key", SOV_CONF_STRING, offsetof(ApiConfig, s3_secret_key), 0, 255, "",
     "secret key for the image bucket"},
    {"image", "s3_bucket", SOV_CONF_STRING, offsetof(ApiConfig, s3_bucket), 0, 63, "sov-images",
     "bucket holding image data"},
    {"identity", "s3_keys_file", SOV_CONF_STRING, offsetof(ApiConfig, s3_keys_file), 0, 255, "",
     "file sov-api writes EC2 credentials to, for sov-s3's [s3] keys_file (empty: none)"},
    Q("instances", quota_instances, "10", "servers per project (-1: unlimited)"),
    Q("cores", quota_cores, "20", "vCPUs per project"),
    Q("ram", quota_ram_mb, "51200", "RAM in MiB per project"),
    Q("key_pairs", quota_key_pairs, "100", "key pairs per user"),
    Q("volumes", quota_volumes, "10", "volumes per project"),
    Q("gigabytes", quota_gigabytes, "1000", "GiB of volumes and snapshots per project"),
    Q("snapshots", quota_snapshots, "10", "volume snapshots per project"),
    Q("networks", quota_networks, "100", "networks per project"),
    Q("subnets", quota_subnets, "100", "subnets per project"),
    Q("ports", quota_ports, "500", "ports per project"),
    Q("routers", quota_routers, "10", "routers per project"),
    Q("floatingips", quota_floatingips, "50", "floating IPs per project"),
    Q("security_groups", quota_security_groups, "10", "security groups per project"),
    Q("security_group_rules", quota_security_group_rules, "100",
      "security group rules per project"),
    Q("images", quota_images, "100", "images per project"),
    SOV_HTTP_LIMIT_FIELDS(ApiConfig, http),
};

static const SovDaemonSpec daemon_spec = {"sov-api",
                                          "sov-api configuration",
                                          api_conf_fields,
                                          ELEMENTSOF(api_conf_fields),
                                          offsetof(ApiConfig, listen),
                                          offsetof(ApiConfig, log_level),
                                          sizeof(ApiConfig)};

typedef struct Daemon {
    Api a;
    SovDaemonArgs args;
    SovSignals *signals;
    bool stopping;
} Daemon;

/* "eu-central-1:EU:eu-central-1a,eu-central-1b;..." */
static int parse_regions(Api *a, SovBuf *err)
{
    char buf[SOV_CONF_STR_MAX];
    snprintf(buf, sizeof(buf), "%s", a->cfg.regions);
    char *save = NULL;
    for (char *r = strtok_r(buf, ";", &save); r; r = strtok_r(NULL, ";", &save)) {
        if (a->nregions == API_MAX_REGIONS) {
            sov_buf_printf(err, "[api] regions: at most %d", API_MAX_REGIONS);
            return -EINVAL;
        }
        ApiRegion *reg = &a->regions[a->nregions];
        char *c1 = strchr(r, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2 || c1 == r || c2 == c1 + 1 || (size_t)(c1 - r) >= sizeof(reg->name) ||
            (size_t)(c2 - c1 - 1) >= sizeof(reg->jurisdiction)) {
            sov_buf_printf(err, "[api] regions: '%s' is not NAME:JURISDICTION:ZONE,...", r);
            return -EINVAL;
        }
        memcpy(reg->name, r, (size_t)(c1 - r));
        memcpy(reg->jurisdiction, c1 + 1, (size_t)(c2 - c1 - 1));
        char *zsave = NULL;
        for (char *z = strtok_r(c2 + 1, ",", &zsave); z; z = strtok_r(NULL, ",", &zsave)) {
            if (reg->nzones == API_MAX_ZONES || strlen(z) >= sizeof(reg->zones[0].name)) {
                sov_buf_printf(err, "[api] regions: too many or too long zones in %s", reg->name);
                return -EINVAL;
            }
            snprintf(reg->zones[reg->nzones++].name, 64, "%s", z);
        }
        if (reg->nzones == 0) {
            sov_buf_printf(err, "[api] regions: region %s has no zone", reg->name);
            return -EINVAL;
        }
        a->nregions++;
    }
    if (a->nregions == 0) {
        sov_buf_printf(err, "[api] regions is empty");
        return -EINVAL;
    }
    return 0;
}

static void on_store_commit(void *ud)
{
    api_agents_notify(ud);
}

static void api_error_page(SovHttpReq *req, int status, const char *message, void *ud)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":%d,\"title\":\"%s\",\"message\":\"%s\"}}", status,
                     sov_http_status_reason(status), message ? message : "");
    sov_http_respond(req, status, "application/json", body,
                     (size_t)SOV_MIN(n, (int)sizeof(body) - 1));
}

static void stop_parts(Api *a)
{
    api_agent_stop(a);
    api_network_stop(a);
    api_volume_stop(a);
    api_image_stop(a);
    api_compute_stop(a);
    api_identity_stop(a);
}

static void http_done(SovHttpServer *s, void *ud)
{
    Daemon *d = ud;
    stop_parts(&d->a);
    sov_signals_close(d->signals);
}

static void on_term(int sig, void *ud)
{
    Daemon *d = ud;
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("stopping (signal %d)", sig);
    api_agent_stop(&d->a); /* answers long-polls first: the drain would wait for them */
    sov_http_server_shutdown(d->a.http, http_done, d);
}

static void on_hup(void *ud)
{
    Daemon *d = ud;
    sov_daemon_reload_log_level(&daemon_spec, d->args.config);
}

int main(int argc, char **argv)
{
    static Daemon d;
    Api *a = &d.a;
    ApiConfig *cfg = &a->cfg;
    SovBuf err = SOV_BUF_INIT;
    char host[256], path[4096];
    int port, lvl_int, fd = -1, r;

    a->audit_fd = -1;
    r = sov_daemon_load(argc, argv, &daemon_spec, cfg, &d.args, &lvl_int, host, sizeof(host),
                        &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (parse_regions(a, &err) < 0) {
        fprintf(stderr, "sov-api: %s\n", err.ptr);
        return 2;
    }
    if (!cfg->dns_domain[0] || !neu_dns_domain_ok(cfg->dns_domain)) {
        fprintf(stderr, "sov-api: [network] dns_domain must be a domain name\n");
        return 2;
    }
    if (d.args.check_config) {
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("sov-api", (SovLogLevel)lvl_int, stderr);
    if (mkdir(cfg->data_dir, 0750) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", cfg->data_dir, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof(path), "%s/state.db", cfg->data_dir);
    if ((r = api_store_open(path, cfg->fsync, &a->store, &err)) < 0) {
        log_error("%s", err.ptr);
        return 1;
    }
    if ((r = sov_listen_tcp(host, port, false, &fd, &port)) < 0) {
        log_error("cannot listen on %s: %s", cfg->listen, strerror(-r));
        return 1;
    }
    if (cfg->public_url[0])
        snprintf(a->public_url, sizeof(a->public_url), "%s", cfg->public_url);
    else
        snprintf(a->public_url, sizeof(a->public_url), "http://%s:%d",
                 strcmp(host, "0.0.0.0") == 0 || !host[0] ? "127.0.0.1" : host, port);
    size_t ul = strlen(a->public_url);
    while (ul > 0 && a->public_url[ul - 1] == '/')
        a->public_url[--ul] = '\0';

    a->loop = uv_default_loop();
    a->router = sov_router_new();
    sov_router_add_ops(a->router);
    api_identity_routes(a);
    api_compute_routes(a);
    api_image_routes(a);
    api_volume_routes(a);
    api_network_routes(a);
    api_agent_routes(a);

    if ((r = api_audit_open(a, &err)) < 0 || (r = api_identity_start(a, &err)) < 0 ||
        (r = api_compute_start(a, &err)) < 0 || (r = api_image_start(a, &err)) < 0 ||
        (r = api_volume_start(a, &err)) < 0 || (r = api_network_start(a, &err)) < 0 ||
        (r = api_agent_start(a, &err)) < 0) {
        log_error("cannot start: %s", err.ptr ? err.ptr : strerror(-r));
        return 1;
    }
    api_store_on_commit(a->store, on_store_commit, a);

    SovHttpServerConfig hc = {.router = a->router,
                              .svc = "api",
                              .access_log = cfg->access_log,
                              .error_page = api_error_page};
    sov_http_limits_from_conf(&cfg->http, &hc.limits);
    a->http = sov_http_server_new(a->loop, &hc);
    if (!a->http || sov_http_server_listen_fd(a->http, fd) < 0) {
        log_error("cannot start the HTTP server");
        return 1;
    }
    if (d.args.pidfile && (r = sov_pidfile_write(d.args.pidfile)) < 0)
        log_warn("cannot write pid file %s: %s", d.args.pidfile, strerror(-r));
    d.signals = sov_signals_install(a->loop, on_term, on_hup, &d);
    const char *reg = api_local_region(a)->name;
    const char *kv[] = {"url", a->public_url, "region", reg, NULL};
    sov_daemon_announce(&d.args, port, kv);
    uv_run(a->loop, UV_RUN_DEFAULT);

    sov_http_server_free(a->http);
    sov_router_free(a->router);
    api_audit_close(a);
    a->store = api_store_close(a->store);
    uv_loop_close(a->loop);
    sov_buf_release(&err);
    log_info("stopped");
    return 0;
}
