/* SPDX-License-Identifier: Apache-2.0 */
/* sov-demo: the smallest sovcloud daemon. It shows how every daemon is put together from core
 * (config, logging, worker loops, HTTP routes, metrics, graceful stop) and gives `sov up`, the
 * tests and bench/http.sh a real server: /healthz, /metrics, a fixed small response, a
 * buffered echo, a streamed upload digest and a streamed download. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov/conf.h"
#include "sov/crypto.h"
#include "sov/daemon.h"
#include "sov/http.h"
#include "sov/log.h"
#include "sov/metrics.h"

typedef struct DemoConfig {
    char listen[SOV_CONF_STR_MAX];
    int64_t workers;
    bool access_log;
    char log_level[SOV_CONF_STR_MAX];
    char tls_cert[SOV_CONF_STR_MAX];
    char tls_key[SOV_CONF_STR_MAX];
    SovHttpLimitsConf http;
} DemoConfig;

static const SovConfField demo_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(DemoConfig, listen), 3, 255, "127.0.0.1:8480",
     "address and port to listen on (HOST:PORT; port 0 picks a free one)"},
    {"server", "workers", SOV_CONF_INT, offsetof(DemoConfig, workers), 0, 256, "0",
     "event loop threads sharing the port; 0 means one per CPU"},
    {"server", "access_log", SOV_CONF_BOOL, offsetof(DemoConfig, access_log), 0, 0, "true",
     "log one line per request"},
    {"server", "tls_cert", SOV_CONF_STRING, offsetof(DemoConfig, tls_cert), 0, 255, "",
     "PEM certificate chain: serve HTTPS instead of HTTP (empty: plain HTTP)"},
    {"server", "tls_key", SOV_CONF_STRING, offsetof(DemoConfig, tls_key), 0, 255, "",
     "PEM private key of tls_cert"},
    {"log", "level", SOV_CONF_STRING, offsetof(DemoConfig, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    SOV_HTTP_LIMIT_FIELDS(DemoConfig, http),
};

typedef struct Demo {
    DemoConfig cfg;
    SovDaemonArgs args;
    SovRouter *router;
    SovHttpServerConfig http;
    int *fds;
    unsigned nworkers;
    unsigned next_fd;
    uv_loop_t *main_loop;
    SovWorkers *workers;
    SovSignals *signals;
    SovTlsContext *tls;
} Demo;

static const char hello_body[] = "Hello from sovcloud\n";

static void h_hello(SovHttpReq *req, void *ud)
{
    sov_http_respond(req, 200, "text/plain", hello_body, sizeof(hello_body) - 1);
}

static void h_echo(SovHttpReq *req, void *ud)
{
    SovStr body = sov_http_req_body(req);
    SovStr ct = sov_http_req_header(req, "content-type");
    char *ctype = ct.ptr ? sov_arena_strndup(sov_http_req_arena(req), ct.ptr, ct.len) : NULL;
    if (ctype && sov_http_resp_header(req, "X-Echo-Content-Type", ct) < 0)
        ctype = NULL;
    sov_http_respond(req, 200, "application/octet-stream", body.ptr, body.len);
}

/* PUT /upload: streams the body through SHA-256 without keeping it, then reports its size
 * and digest. Proves that bodies of any size pass in bounded memory. */
typedef struct Upload {
    SovDigest *d;
    uint64_t bytes;
} Upload;

static int up_data(SovHttpReq *req, const char *p, size_t n, void *ud)
{
    Upload *u = ud;
    u->bytes += n;
    return sov_digest_update(u->d, p, n);
}

static void up_end(SovHttpReq *req, void *ud)
{
    Upload *u = ud;
    uint8_t dg[SOV_SHA256_LEN];
    char hex[2 * SOV_SHA256_LEN + 1], body[160];
    int n;

    sov_digest_final(u->d, dg);
    sov_hex_encode(dg, sizeof(dg), hex);
    n = snprintf(body, sizeof(body), "{\"bytes\":%" PRIu64 ",\"sha256\":\"%s\"}\n", u->bytes, hex);
    sov_http_respond(req, 200, "application/json", body, (size_t)n);
    sov_digest_free(u->d);
    free(u);
}

static void up_error(SovHttpReq *req, int err, void *ud)
{
    Upload *u = ud;
    sov_digest_free(u->d);
    free(u);
}

static void h_upload(SovHttpReq *req, void *ud)
{
    static const SovHttpBodyCallbacks cbs = {up_data, up_end, up_error};
    Upload *u = calloc(1, sizeof(*u));

    if (!u || !(u->d = sov_digest_new(SOV_DIGEST_SHA256))) {
        free(u);
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    if (sov_http_req_read_body(req, &cbs, u) < 0) {
        sov_digest_free(u->d);
        free(u);
        sov_http_respond_error(req, 500, "cannot read body");
    }
}

/* GET /stream?bytes=N: a chunked response of N bytes written 64 KiB at a time, each write
 * waiting for the previous one (backpressure). */
typedef struct Stream {
    uint64_t left;
    char block[64 * 1024];
} Stream;

static void stream_next(SovHttpReq *req, int status, void *ud)
{
    Stream *st = ud;
    size_t n;

    if (status < 0 || sov_http_req_is_closed(req)) {
        free(st);
        return;
    }
    if (st->left == 0) {
        sov_http_resp_end(req);
        free(st);
        return;
    }
    n = st->left < sizeof(st->block) ? (size_t)st->left : sizeof(st->block);
    st->left -= n;
    if (sov_http_resp_write(req, st->block, n, stream_next, st) < 0)
        free(st);
}

static void h_stream(SovHttpReq *req, void *ud)
{
    SovStr q = sov_http_req_query(req);
    uint64_t n = 0;
    Stream *st;

    if (!sov_str_has_prefix(q, SOV_STR("bytes=")) ||
        sov_str_to_u64((SovStr){q.ptr + 6, q.len - 6}, &n) < 0 || n > (1ull << 40)) {
        sov_http_respond_error(req, 400, "query must be bytes=N with N up to 1 TiB");
        return;
    }
    st = malloc(sizeof(*st));
    if (!st) {
        sov_http_respond_error(req, 503, "out of memory");
        return;
    }
    for (size_t i = 0; i < sizeof(st->block); i++)
        st->block[i] = (char)('a' + i % 26);
    st->left = n;
    sov_http_resp_start(req, 200, -1);
    stream_next(req, 0, st);
}

/* ---- worker threads ---- */

typedef struct WorkerState {
    SovHttpServer *srv;
} WorkerState;

static void *worker_start(uv_loop_t *loop, unsigned idx, void *ud)
{
    Demo *d = ud;
    WorkerState *ws = calloc(1, sizeof(*ws));
    int r;

    if (!ws)
        return NULL;
    ws->srv = sov_http_server_new(loop, &d->http);
    if (!ws->srv)
        return ws;
    r = sov_http_server_listen_fd(ws->srv, d->fds[idx]);
    if (r < 0)
        log_error_errno(r, "worker %u cannot listen", idx);
    return ws;
}

static void server_done(SovHttpServer *s, void *ud)
{
}

static void worker_stop(uv_loop_t *loop, void *state, void *ud)
{
    WorkerState *ws = state;
    if (ws && ws->srv)
        sov_http_server_shutdown(ws->srv, server_done, NULL);
}

static void worker_free(void *state, void *ud)
{
    WorkerState *ws = state;
    if (ws) {
        sov_http_server_free(ws->srv);
        free(ws);
    }
}

static const SovDaemonSpec daemon_spec = {"sov-demo",
                                          "sov-demo configuration",
                                          demo_fields,
                                          ELEMENTSOF(demo_fields),
                                          offsetof(DemoConfig, listen),
                                          offsetof(DemoConfig, log_level),
                                          sizeof(DemoConfig)};

static void on_hup(void *ud)
{
    Demo *d = ud;
    sov_daemon_reload_log_level(&daemon_spec, d->args.config);
}

int main(int argc, char **argv)
{
    Demo d = {0};
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;
    char host[256], portbuf[16];
    int port, r;
    uv_loop_t *loop = uv_default_loop();

    int lvl_int;
    r = sov_daemon_load(argc, argv, &daemon_spec, &d.cfg, &d.args, &lvl_int, host, sizeof(host),
                        &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    lvl = (SovLogLevel)lvl_int;
    if (d.args.check_config) {
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("demo", lvl, stderr);

    d.router = sov_router_new();
    sov_router_add_ops(d.router);
    sov_router_add(d.router, "GET", "/hello", 0, h_hello, &d);
    sov_router_add(d.router, "HEAD", "/hello", 0, h_hello, &d);
    sov_router_add(d.router, "POST", "/echo", 0, h_echo, &d);
    sov_router_add(d.router, "PUT", "/upload", SOV_ROUTE_STREAM, h_upload, &d);
    sov_router_add(d.router, "GET", "/stream", 0, h_stream, &d);

    sov_http_limits_from_conf(&d.cfg.http, &d.http.limits);
    d.http.router = d.router;
    d.http.svc = "demo";
    d.http.access_log = d.cfg.access_log;
    if (d.cfg.tls_cert[0] || d.cfg.tls_key[0]) {
        if (sov_tls_server_new(d.cfg.tls_cert, d.cfg.tls_key, &d.tls, &err) < 0) {
            log_error("TLS: %s", err.ptr);
            return 1;
        }
        d.http.tls = d.tls;
    }

    d.nworkers = d.cfg.workers > 0 ? (unsigned)d.cfg.workers : sov_cpu_count();
    d.fds = calloc(d.nworkers, sizeof(int));
    if (!d.fds)
        return 1;
    for (unsigned i = 0; i < d.nworkers; i++) {
        r = sov_listen_tcp(host, port, true, &d.fds[i], &port);
        if (r < 0) {
            log_error_errno(r, "cannot listen on %s", d.cfg.listen);
            return 1;
        }
    }
    if (d.args.pidfile && (r = sov_pidfile_write(d.args.pidfile)) < 0) {
        log_error_errno(r, "cannot write pid file %s", d.args.pidfile);
        return 1;
    }
    d.signals = sov_signals_install(loop, NULL, on_hup, &d);
    r = sov_workers_start(d.nworkers, worker_start, worker_stop, worker_free, &d, &d.workers);
    if (r < 0) {
        log_error_errno(r, "cannot start workers");
        return 1;
    }
    {
        char workers[16];
        const char *kv[] = {"host", host, "port", portbuf, "workers", workers, NULL};
        snprintf(portbuf, sizeof(portbuf), "%d", port);
        snprintf(workers, sizeof(workers), "%u", d.nworkers);
        if (sov_daemon_announce(&d.args, port, kv) < 0)
            return 1;
    }
    /* The main loop only waits for signals: it runs until SIGTERM/SIGINT close their handles. */
    uv_run(loop, UV_RUN_DEFAULT);
    sov_workers_stop(d.workers);
    if (d.args.pidfile)
        unlink(d.args.pidfile);
    log_info("stopped");
    sov_router_free(d.router);
    sov_tls_free(d.tls);
    free(d.fds);
    uv_loop_close(loop);
    sov_metrics_reset();
    return 0;
}
