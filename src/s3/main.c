/* SPDX-License-Identifier: Apache-2.0 */
/* sov-s3: the S3-compatible object store daemon. Configuration, accounts and keys, the store,
 * and one HTTP server per worker loop whose single route hands every request to s3_handle(). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3.h"
#include "sov/log.h"
#include "sov/xml.h"

const SovConfField s3_conf_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(S3Config, listen), 3, 255, "127.0.0.1:8433",
     "address and port to listen on (HOST:PORT; port 0 picks a free one)"},
    {"server", "workers", SOV_CONF_INT, offsetof(S3Config, workers), 0, 256, "0",
     "event loop threads sharing the port; 0 means one per CPU"},
    {"server", "access_log", SOV_CONF_BOOL, offsetof(S3Config, access_log), 0, 0, "true",
     "log one line per request"},
    {"server", "tls_cert", SOV_CONF_STRING, offsetof(S3Config, tls_cert), 0, 255, "",
     "PEM certificate chain: serve HTTPS instead of HTTP (empty: plain HTTP)"},
    {"server", "tls_key", SOV_CONF_STRING, offsetof(S3Config, tls_key), 0, 255, "",
     "PEM private key of tls_cert"},
    {"log", "level", SOV_CONF_STRING, offsetof(S3Config, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    {"s3", "data_dir", SOV_CONF_STRING, offsetof(S3Config, data_dir), 1, 255, "var/s3",
     "directory of the metadata database and object data"},
    {"s3", "region", SOV_CONF_STRING, offsetof(S3Config, region), 1, 63, "eu-central-1",
     "this endpoint's region: signatures must be scoped to it"},
    {"s3", "regions", SOV_CONF_STRING, offsetof(S3Config, regions), 0, 1000, "",
     "comma-separated LocationConstraints CreateBucket accepts (empty: only region)"},
    {"s3", "account", SOV_CONF_STRING, offsetof(S3Config, account), 1, 63, "admin",
     "the account that owns access_key_id"},
    {"s3", "access_key_id", SOV_CONF_STRING, offsetof(S3Config, access_key_id), 0, 128, "",
     "the first account's access key id"},
    {"s3", "secret_access_key", SOV_CONF_STRING, offsetof(S3Config, secret_access_key), 0, 128, "",
     "the first account's secret key"},
    {"s3", "keys_file", SOV_CONF_STRING, offsetof(S3Config, keys_file), 0, 255, "",
     "more keys, one per line: ACCOUNT ACCESS_KEY_ID SECRET (re-read on SIGHUP, and when it "
     "changed and a request names an unknown key; a missing file holds no keys)"},
    {"s3", "domain", SOV_CONF_STRING, offsetof(S3Config, domain), 0, 200, "s3.localhost",
     "virtual-host-style addressing: BUCKET.<domain> (empty: path style only)"},
    {"s3", "fsync", SOV_CONF_BOOL, offsetof(S3Config, fsync), 0, 0, "true",
     "fsync data and metadata before acknowledging a write"},
    {"s3", "inline_max", SOV_CONF_SIZE, offsetof(S3Config, inline_max), 0, 1024 * 1024, "64K",
     "objects up to this size are kept inside the metadata database"},
    {"s3", "max_object_size", SOV_CONF_SIZE, offsetof(S3Config, max_object_size), 1,
     5ll * 1024 * 1024 * 1024 * 1024, "5G", "largest single PUT (multipart objects may be larger)"},
    {"s3", "drives", SOV_CONF_STRING, offsetof(S3Config, drives), 0, 255, "",
     "erasure coding: absolute directories, one per drive (file system), comma-separated; their "
     "order is part of the data's placement (empty: data files under data_dir, no coding)"},
    {"s3", "ec", SOV_CONF_STRING, offsetof(S3Config, ec), 0, 16, "auto",
     "data+parity shards of new objects: auto (by drive count: 4 drives 2+2, 8 drives 5+3, ...) "
     "or K+M"},
    {"s3", "class_ec", SOV_CONF_STRING, offsetof(S3Config, class_ec), 0, 255, "",
     "geometry per storage class, e.g. STANDARD_IA=3+1,GLACIER=4+2 (others: ec)"},
    {"s3", "scrub_interval", SOV_CONF_INT, offsetof(S3Config, scrub_interval), 0, 31536000, "86400",
     "seconds between background verifications of every shard (0: never)"},
    {"s3", "lifecycle_day_seconds", SOV_CONF_INT, offsetof(S3Config, lifecycle_day_seconds), 1,
     86400, "86400", "seconds that count as one day in lifecycle rules and restores (tests: 1)"},
    {"s3", "lifecycle_interval", SOV_CONF_INT, offsetof(S3Config, lifecycle_interval), 1, 86400,
     "60", "seconds between two passes of the lifecycle worker"},
    SOV_HTTP_LIMIT_FIELDS(S3Config, http),
};
const size_t s3_conf_nfields = ELEMENTSOF(s3_conf_fields);

typedef struct Daemon {
    S3Server srv;
    SovDaemonArgs args;
    SovHttpServerConfig http;
    int *fds;
    unsigned nworkers;
    SovWorkers *workers;
    SovSignals *signals;
    SovTlsContext *tls;
} Daemon;

/* ---- keys ---- */

static int add_key(S3Key **keys, size_t *n, const char *account, const char *ak, const char *sk,
                   SovBuf *err)
{
    if (!account[0] || strlen(account) >= sizeof((*keys)->account) || !ak[0] ||
        strlen(ak) > S3_ACCESS_KEY_MAX || strlen(sk) < 8 || strlen(sk) > S3_SECRET_MAX) {
        sov_buf_printf(err, "bad key entry for account '%s'", account);
        return -EINVAL;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*keys)[i].access_key, ak) == 0) {
            sov_buf_printf(err, "access key %s appears twice", ak);
            return -EINVAL;
        }
    }
    S3Key *k = realloc(*keys, (*n + 1) * sizeof(**keys));
    if (!k)
        return -ENOMEM;
    *keys = k;
    memset(&k[*n], 0, sizeof(k[*n]));
    snprintf(k[*n].account, sizeof(k[*n].account), "%s", account);
    snprintf(k[*n].access_key, sizeof(k[*n].access_key), "%s", ak);
    snprintf(k[*n].secret, sizeof(k[*n].secret), "%s", sk);
    (*n)++;
    return 0;
}

int s3_keys_load(S3Server *srv, SovBuf *err)
{
    S3Key *keys = NULL;
    size_t n = 0;
    int r = 0;

    if (srv->cfg.access_key_id[0])
        r = add_key(&keys, &n, srv->cfg.account, srv->cfg.access_key_id, srv->cfg.secret_access_key,
                    err);
    if (r == 0 && srv->cfg.keys_file[0]) {
        FILE *f = fopen(srv->cfg.keys_file, "re");
        char line[512];
        unsigned lineno = 0;
        struct stat st;
        if (f && fstat(fileno(f), &st) == 0)
            atomic_store(&srv->keys_mtime,
                         (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
        if (!f && errno == ENOENT) {
            /* not written yet (sov-api writes it with the first EC2 credential): no keys */
            atomic_store(&srv->keys_mtime, 0);
        } else if (!f) {
            sov_buf_printf(err, "cannot open keys_file %s: %s", srv->cfg.keys_file,
                           strerror(errno));
            r = -errno;
        }
        while (r == 0 && f && fgets(line, sizeof(line), f)) {
            char account[128], ak[256], sk[256], extra[2];
            lineno++;
            if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
                continue;
            if (sscanf(line, "%127s %255s %255s %1s", account, ak, sk, extra) != 3) {
                sov_buf_printf(err, "%s:%u: expected ACCOUNT ACCESS_KEY_ID SECRET",
                               srv->cfg.keys_file, lineno);
                r = -EINVAL;
                break;
            }
            r = add_key(&keys, &n, account, ak, sk, err);
        }
        if (f)
            fclose(f);
    }
    if (r < 0) {
        free(keys);
        return r;
    }
    /* Requests hold pointers to keys only while they run: keep the old table (leaked on
     * reload, a few hundred bytes per SIGHUP) rather than free it under them. */
    uv_rwlock_wrlock(&srv->keys_lock);
    srv->keys = keys;
    srv->nkeys = n;
    uv_rwlock_wrunlock(&srv->keys_lock);
    return 0;
}

/* The operator's token for POST /_sov/heal: data_dir/admin.token, made (0600) on first start. */
static int admin_token(S3Server *srv, SovBuf *err)
{
    char path[PATH_MAX - 8];
    snprintf(path, sizeof(path), "%s/admin.token", srv->cfg.data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, srv->admin_token, sizeof(srv->admin_token) - 1);
        close(fd);
        if (n == 64) {
            srv->admin_token[64] = '\0';
            return 0;
        }
    }
    uint8_t raw[32];
    char tmp[PATH_MAX];
    if (sov_random_bytes(raw, sizeof(raw)) < 0)
        return -EIO;
    sov_hex_encode(raw, sizeof(raw), srv->admin_token);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, srv->admin_token, 64) != 64 || fsync(fd) < 0 || close(fd) < 0 ||
        rename(tmp, path) < 0) {
        int e = errno;
        sov_buf_printf(err, "cannot write %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

static int parse_regions(S3Server *srv, SovBuf *err)
{
    char tmp[SOV_CONF_STR_MAX];
    snprintf(srv->regions[0], sizeof(srv->regions[0]), "%.63s", srv->cfg.region);
    srv->nregions = 1;
    snprintf(tmp, sizeof(tmp), "%s", srv->cfg.regions);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (strcmp(t, srv->cfg.region) == 0)
            continue;
        if (srv->nregions == ELEMENTSOF(srv->regions) || strlen(t) >= sizeof(srv->regions[0])) {
            sov_buf_printf(err, "[s3] regions: too many or too long");
            return -EINVAL;
        }
        snprintf(srv->regions[srv->nregions++], sizeof(srv->regions[0]), "%.63s", t);
    }
    return 0;
}

/* Errors the HTTP layer finds itself (framing, limits, timeouts) answer as S3 XML too. */
static void s3_error_page(SovHttpReq *req, int status, const char *message, void *ud)
{
    const char *code = status == 408   ? "RequestTimeout"
                       : status == 413 ? "EntityTooLarge"
                       : status == 431 ? "RequestHeaderSectionTooLarge"
                       : status == 414 ? "KeyTooLongError"
                       : status == 505 ? "HttpVersionNotSupported"
                       : status >= 500 ? "InternalError"
                                       : "InvalidRequest";
    SovBuf doc = SOV_BUF_INIT;
    s3_error_doc(&doc, code, message, NULL, NULL, sov_http_req_id(req));
    sov_http_resp_header(req, "x-amz-request-id", sov_str(sov_http_req_id(req)));
    sov_http_respond(req, status == 431 || status == 414 ? 400 : status, "application/xml", doc.ptr,
                     doc.len);
    sov_buf_release(&doc);
}

/* ---- workers ---- */

static void *worker_start(uv_loop_t *loop, unsigned idx, void *ud)
{
    Daemon *d = ud;
    S3Worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->srv = &d->srv;
    w->loop = s3_loop_new(d->srv.store, loop);
    w->router = sov_router_new();
    if (!w->loop || !w->router) {
        log_error("worker %u: cannot open the metadata database", idx);
        return w;
    }
    sov_router_add(w->router, "*", "/{path+}", SOV_ROUTE_STREAM, s3_handle, w);
    SovHttpServerConfig cfg = d->http;
    cfg.router = w->router;
    w->http = sov_http_server_new(loop, &cfg);
    if (w->http) {
        int r = sov_http_server_listen_fd(w->http, d->fds[idx]);
        if (r < 0)
            log_error_errno(r, "worker %u cannot listen", idx);
    }
    return w;
}

static void server_done(SovHttpServer *s, void *ud)
{
    S3Worker *w = ud;
    s3_loop_close(w->loop);
    w->loop = NULL;
}

static void worker_stop(uv_loop_t *loop, void *state, void *ud)
{
    S3Worker *w = state;
    if (w && w->http)
        sov_http_server_shutdown(w->http, server_done, w);
    else if (w) {
        s3_loop_close(w->loop);
        w->loop = NULL;
    }
}

static void worker_free(void *state, void *ud)
{
    S3Worker *w = state;
    if (w) {
        sov_http_server_free(w->http);
        sov_router_free(w->router);
        free(w);
    }
}

static void on_hup(void *ud)
{
    Daemon *d = ud;
    S3Config fresh;
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;

    if (sov_conf_load(s3_conf_fields, s3_conf_nfields, &fresh, d->args.config, &err) < 0 ||
        sov_log_level_from_string(fresh.log_level, &lvl) < 0) {
        log_error("reload refused: %s", err.len ? err.ptr : "bad log level");
    } else {
        sov_log_set_level(lvl);
        /* keys: the account key and the keys file may change live */
        snprintf(d->srv.cfg.access_key_id, sizeof(d->srv.cfg.access_key_id), "%s",
                 fresh.access_key_id);
        snprintf(d->srv.cfg.secret_access_key, sizeof(d->srv.cfg.secret_access_key), "%s",
                 fresh.secret_access_key);
        snprintf(d->srv.cfg.keys_file, sizeof(d->srv.cfg.keys_file), "%s", fresh.keys_file);
        sov_buf_reset(&err);
        if (s3_keys_load(&d->srv, &err) < 0)
            log_error("keys not reloaded: %s", err.ptr);
        else
            log_info("configuration reloaded");
    }
    explicit_bzero(&fresh, sizeof(fresh));
    sov_buf_release(&err);
}

int main(int argc, char **argv)
{
    Daemon d = {0};
    S3Config *cfg = &d.srv.cfg;
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;
    char host[256], portbuf[16];
    int port, r;
    uv_loop_t *loop = uv_default_loop();

    static const SovDaemonSpec spec = {"sov-s3",
                                       "sov-s3 configuration",
                                       s3_conf_fields,
                                       ELEMENTSOF(s3_conf_fields),
                                       offsetof(S3Config, listen),
                                       offsetof(S3Config, log_level),
                                       sizeof(S3Config)};
    int lvl_int;
    r = sov_daemon_load(argc, argv, &spec, cfg, &d.args, &lvl_int, host, sizeof(host), &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    lvl = (SovLogLevel)lvl_int;
    uv_rwlock_init(&d.srv.keys_lock);
    if (parse_regions(&d.srv, &err) < 0 || s3_keys_load(&d.srv, &err) < 0) {
        fprintf(stderr, "sov-s3: %s\n", err.ptr);
        return 2;
    }
    if (d.srv.nkeys == 0) {
        fprintf(stderr, "sov-s3: no access key: set [s3] access_key_id and secret_access_key, "
                        "or keys_file\n");
        return 2;
    }
    if (d.args.check_config) {
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("s3", lvl, stderr);

    S3StoreConfig sc = {.data_dir = cfg->data_dir,
                        .fsync = cfg->fsync,
                        .drives = cfg->drives,
                        .ec = cfg->ec,
                        .class_ec = cfg->class_ec,
                        .scrub_interval = cfg->scrub_interval};
    if ((r = s3_store_open(&sc, &d.srv.store, &err)) < 0) {
        log_error("store: %s", err.ptr);
        return 1;
    }
    if (admin_token(&d.srv, &err) < 0) {
        log_error("%s", err.ptr);
        return 1;
    }
    if ((r = s3_sse_keyring_open(cfg->data_dir)) < 0) {
        log_error_errno(r, "cannot open the keyring %s/keys", cfg->data_dir);
        return 1;
    }
    d.srv.m_bytes_in = sov_metrics_counter("sov_s3_bytes_received_total",
                                           "object bytes received in request bodies", NULL);
    d.srv.m_bytes_out =
        sov_metrics_counter("sov_s3_bytes_sent_total", "object and document bytes sent", NULL);

    sov_http_limits_from_conf(&cfg->http, &d.http.limits);
    if (d.http.limits.max_body < cfg->max_object_size + cfg->max_object_size / 8)
        d.http.limits.max_body = cfg->max_object_size + cfg->max_object_size / 8;
    d.http.svc = "s3";
    d.http.error_page = s3_error_page;
    d.http.access_log = cfg->access_log;
    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        if (sov_tls_server_new(cfg->tls_cert, cfg->tls_key, &d.tls, &err) < 0) {
            log_error("TLS: %s", err.ptr);
            return 1;
        }
        d.http.tls = d.tls;
    }
    d.nworkers = cfg->workers > 0 ? (unsigned)cfg->workers : sov_cpu_count();
    d.fds = calloc(d.nworkers, sizeof(int));
    if (!d.fds)
        return 1;
    for (unsigned i = 0; i < d.nworkers; i++) {
        r = sov_listen_tcp(host, port, true, &d.fds[i], &port);
        if (r < 0) {
            log_error_errno(r, "cannot listen on %s", cfg->listen);
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
    if ((r = s3_lifecycle_start(&d.srv, loop)) < 0) {
        log_error_errno(r, "cannot start the lifecycle worker");
        return 1;
    }
    {
        char workers[16];
        const char *kv[] = {"host",     host,          "port",   portbuf,     "workers", workers,
                            "data_dir", cfg->data_dir, "region", cfg->region, NULL};
        snprintf(portbuf, sizeof(portbuf), "%d", port);
        snprintf(workers, sizeof(workers), "%u", d.nworkers);
        if (sov_daemon_announce(&d.args, port, kv) < 0)
            return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    s3_store_stop(d.srv.store); /* a scrub or heal pass must not hold the workers' drain */
    sov_workers_stop(d.workers);
    s3_lifecycle_stop(&d.srv);
    s3_store_close(d.srv.store);
    s3_sse_keyring_close();
    if (d.args.pidfile)
        unlink(d.args.pidfile);
    log_info("stopped");
    sov_tls_free(d.tls);
    free(d.fds);
    free(d.srv.keys);
    uv_loop_close(loop);
    sov_metrics_reset();
    return 0;
}
