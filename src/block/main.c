/* SPDX-License-Identifier: Apache-2.0 */
/* sov-block: volumes served over NBD. One worker loop owns the volume store (the engine is
 * single-threaded), the NBD listeners (a Unix socket and optionally TCP) and the management
 * HTTP API (api.c); the main loop only waits for signals. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "block.h"
#include "sov/log.h"

const SovConfField block_conf_fields[] = {
    {"server", "listen", SOV_CONF_STRING, offsetof(BlockConfig, listen), 3, 255, "127.0.0.1:8476",
     "management API address (HOST:PORT; port 0 picks a free one)"},
    {"server", "access_log", SOV_CONF_BOOL, offsetof(BlockConfig, access_log), 0, 0, "true",
     "log one line per management request"},
    {"log", "level", SOV_CONF_STRING, offsetof(BlockConfig, log_level), 1, 16, "info",
     "debug, info, warn or error"},
    {"block", "data_dir", SOV_CONF_STRING, offsetof(BlockConfig, data_dir), 1, 255, "var/block",
     "directory of the volume catalog, layers and map journals"},
    {"block", "master_key_file", SOV_CONF_STRING, offsetof(BlockConfig, master_key_file), 0, 255,
     "",
     "file with the 32-byte master key (64 hex digits) that wraps volume keys; created "
     "(mode 0600) when missing; empty: no encrypted volumes"},
    {"block", "fsync", SOV_CONF_BOOL, offsetof(BlockConfig, fsync), 0, 0, "true",
     "make FLUSH and FUA durable (fdatasync)"},
    {"nbd", "listen", SOV_CONF_STRING, offsetof(BlockConfig, nbd_listen), 0, 255, "127.0.0.1:10809",
     "NBD over TCP (HOST:PORT; empty: no TCP); exports need a grant"},
    {"nbd", "socket", SOV_CONF_STRING, offsetof(BlockConfig, nbd_socket), 0, 107, "",
     "NBD over a Unix socket (default: <data_dir>/nbd.sock; \"off\": none)"},
    {"nbd", "unix_open", SOV_CONF_BOOL, offsetof(BlockConfig, unix_open), 0, 0, "true",
     "Unix-socket clients may open every export (the socket's mode 0660 is the access control)"},
    {"nbd", "tls_cert", SOV_CONF_STRING, offsetof(BlockConfig, nbd_tls_cert), 0, 255, "",
     "certificate chain (PEM) that NBD STARTTLS presents (empty: no TLS)"},
    {"nbd", "tls_key", SOV_CONF_STRING, offsetof(BlockConfig, nbd_tls_key), 0, 255, "",
     "private key (PEM) of tls_cert"},
    {"nbd", "tls", SOV_CONF_STRING, offsetof(BlockConfig, nbd_tls), 0, 16, "",
     "off, optional (clients may upgrade) or require (every client must STARTTLS first); "
     "empty: require when tls_cert is set, else off"},
    {"block", "io", SOV_CONF_STRING, offsetof(BlockConfig, io), 4, 7, "uring",
     "data I/O of reads and writes: uring (io_uring, the thread pool where the kernel refuses "
     "it), threads, or sync (on the loop)"},
    {"api", "token", SOV_CONF_STRING, offsetof(BlockConfig, api_token), 0, 255, "",
     "bearer token the management API requires (empty: none; bind it to loopback then)"},
    SOV_HTTP_LIMIT_FIELDS(BlockConfig, http),
};
const size_t block_conf_nfields = ELEMENTSOF(block_conf_fields);

typedef struct Daemon {
    Block b;
    SovDaemonArgs args;
    int http_fd, tcp_fd, unix_fd;
    SovWorkers *workers;
    SovSignals *signals;
} Daemon;

/* ---- master key ---- */

static int load_master_key(const char *path, uint8_t key[VOL_MASTER_KEY_LEN], SovBuf *err)
{
    char hex[2 * VOL_MASTER_KEY_LEN + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        uint8_t k[VOL_MASTER_KEY_LEN];
        char out[2 * VOL_MASTER_KEY_LEN + 2];
        int r = sov_random_bytes(k, sizeof(k));
        if (r < 0)
            return r;
        sov_hex_encode(k, sizeof(k), out);
        out[2 * VOL_MASTER_KEY_LEN] = '\n';
        out[2 * VOL_MASTER_KEY_LEN + 1] = '\0';
        mode_t old = umask(077);
        r = sov_write_file_atomic(path, out, strlen(out));
        umask(old);
        explicit_bzero(k, sizeof(k));
        explicit_bzero(out, sizeof(out));
        if (r < 0) {
            sov_buf_printf(err, "cannot create master key %s: %s", path, strerror(-r));
            return r;
        }
        log_info("created a new master key in %s (keep it: encrypted volumes need it)", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        sov_buf_printf(err, "cannot open master key %s: %s", path, strerror(errno));
        return -errno;
    }
    struct stat stt;
    if (fstat(fd, &stt) == 0 && (stt.st_mode & 077)) {
        close(fd);
        sov_buf_printf(err, "master key %s is readable by others (chmod 600 it)", path);
        return -EPERM;
    }
    ssize_t n = read(fd, hex, sizeof(hex));
    close(fd);
    if (n < 2 * VOL_MASTER_KEY_LEN || sov_hex_decode(hex, 2 * VOL_MASTER_KEY_LEN, key) < 0) {
        explicit_bzero(hex, sizeof(hex));
        sov_buf_printf(err, "master key %s must hold 64 hex digits", path);
        return -EINVAL;
    }
    explicit_bzero(hex, sizeof(hex));
    return 0;
}

/* ---- TLS ---- */

/* Checks [nbd] tls, tls_cert and tls_key and loads the certificate (so that --check-config
 * catches a bad one too). */
static int nbd_tls_setup(Block *b, SovBuf *err)
{
    const BlockConfig *cfg = &b->cfg;
    bool have_cert = cfg->nbd_tls_cert[0] != '\0';

    if (!cfg->nbd_tls[0])
        b->nbd_tls_mode = have_cert ? NBD_TLS_REQUIRE : NBD_TLS_OFF;
    else if (strcmp(cfg->nbd_tls, "off") == 0)
        b->nbd_tls_mode = NBD_TLS_OFF;
    else if (strcmp(cfg->nbd_tls, "optional") == 0)
        b->nbd_tls_mode = NBD_TLS_OPTIONAL;
    else if (strcmp(cfg->nbd_tls, "require") == 0)
        b->nbd_tls_mode = NBD_TLS_REQUIRE;
    else {
        sov_buf_printf(err, "[nbd] tls must be off, optional or require");
        return -EINVAL;
    }
    if (have_cert != (cfg->nbd_tls_key[0] != '\0')) {
        sov_buf_printf(err, "[nbd] tls_cert and tls_key go together");
        return -EINVAL;
    }
    if (b->nbd_tls_mode != NBD_TLS_OFF && !have_cert) {
        sov_buf_printf(err, "[nbd] tls = %s needs tls_cert and tls_key", cfg->nbd_tls);
        return -EINVAL;
    }
    if (b->nbd_tls_mode == NBD_TLS_OFF)
        return 0;
    return sov_tls_server_new(cfg->nbd_tls_cert, cfg->nbd_tls_key, &b->nbd_tls, err);
}

/* ---- sockets ---- */

static int listen_unix(const char *path, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* A socket left by a daemon that died is in the way; one a live daemon serves is not ours
     * to take, but the data dir lock (the catalog) already keeps two daemons apart. */
    unlink(path);
    mode_t old = umask(007);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(fd, 128) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

/* ---- worker ---- */

static void *worker_start(uv_loop_t *loop, unsigned idx, void *ud)
{
    Daemon *d = ud;
    Block *b = &d->b;
    int r;

    b->loop = loop;
    b->aio = block_aio_new(loop,
                           strcmp(b->cfg.io, "sync") == 0      ? BLOCK_AIO_SYNC
                           : strcmp(b->cfg.io, "threads") == 0 ? BLOCK_AIO_THREADS
                                                               : BLOCK_AIO_URING,
                           block_aio_done, b);
    if (block_api_start(b, d->http_fd) < 0)
        log_error("management API did not start");
    NbdServerConfig nc = {
        .backend = block_nbd_backend(b), .tls = b->nbd_tls, .tls_mode = b->nbd_tls_mode};
    b->nbd = nbd_server_new(loop, &nc);
    if (!b->nbd) {
        log_error("cannot start the NBD server");
        return b;
    }
    if (d->unix_fd >= 0 && (r = nbd_server_listen_fd(b->nbd, d->unix_fd, true)) < 0)
        log_error_errno(r, "NBD Unix socket");
    if (d->tcp_fd >= 0 && (r = nbd_server_listen_fd(b->nbd, d->tcp_fd, false)) < 0)
        log_error_errno(r, "NBD TCP listener");
    return b;
}

static void nbd_done(NbdServer *s, void *ud)
{
    Block *b = ud;
    block_aio_close(b->aio);
}

static void worker_stop(uv_loop_t *loop, void *state, void *ud)
{
    Block *b = state;
    if (b->nbd)
        nbd_server_shutdown(b->nbd, nbd_done, b);
    block_api_stop(b);
}

static void worker_free(void *state, void *ud)
{
    Block *b = state;
    nbd_server_free(b->nbd);
    b->nbd = NULL;
    block_aio_free(b->aio);
    b->aio = NULL;
    block_api_free(b);
}

static const SovDaemonSpec daemon_spec = {"sov-block",
                                          "sov-block configuration",
                                          block_conf_fields,
                                          ELEMENTSOF(block_conf_fields),
                                          offsetof(BlockConfig, listen),
                                          offsetof(BlockConfig, log_level),
                                          sizeof(BlockConfig)};

static void on_hup(void *ud)
{
    Daemon *d = ud;
    sov_daemon_reload_log_level(&daemon_spec, d->args.config);
}

int main(int argc, char **argv)
{
    Daemon d = {.http_fd = -1, .tcp_fd = -1, .unix_fd = -1};
    BlockConfig *cfg = &d.b.cfg;
    SovBuf err = SOV_BUF_INIT;
    SovLogLevel lvl;
    char host[256], nbd_host[256], portbuf[16];
    int port, nbd_port = 0, r;
    uint8_t master[VOL_MASTER_KEY_LEN];
    bool have_master = false;
    uv_loop_t *loop = uv_default_loop();

    int lvl_int;
    r = sov_daemon_load(argc, argv, &daemon_spec, cfg, &d.args, &lvl_int, host, sizeof(host),
                        &port);
    if (r != 0)
        return r > 0 ? 0 : 2;
    lvl = (SovLogLevel)lvl_int;
    if (strcmp(cfg->io, "uring") != 0 && strcmp(cfg->io, "threads") != 0 &&
        strcmp(cfg->io, "sync") != 0) {
        fprintf(stderr, "sov-block: [block] io must be uring, threads or sync\n");
        return 2;
    }
    if (cfg->nbd_listen[0] &&
        sov_parse_hostport(cfg->nbd_listen, nbd_host, sizeof(nbd_host), &nbd_port) < 0) {
        fprintf(stderr, "sov-block: bad [nbd] listen (HOST:PORT)\n");
        return 2;
    }
    if (!cfg->nbd_socket[0]) {
        int n = snprintf(cfg->nbd_socket, sizeof(cfg->nbd_socket), "%s/nbd.sock", cfg->data_dir);
        if (n < 0 || (size_t)n >= 108) {
            fprintf(stderr, "sov-block: data_dir too long for a Unix socket path: set [nbd] "
                            "socket\n");
            return 2;
        }
    }
    if (nbd_tls_setup(&d.b, &err) < 0) {
        fprintf(stderr, "sov-block: %s\n", err.ptr);
        sov_buf_release(&err);
        return 2;
    }
    if (d.args.check_config) {
        sov_tls_free(d.b.nbd_tls);
        printf("configuration ok\n");
        return 0;
    }
    sov_log_setup("block", lvl, stderr);
    /* The data dir holds the volumes (and usually the master key): only its owner enters. */
    if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
        log_error_errno(-errno, "cannot create %s", cfg->data_dir);
        return 1;
    }
    if (cfg->master_key_file[0]) {
        if (load_master_key(cfg->master_key_file, master, &err) < 0) {
            log_error("%s", err.ptr);
            sov_buf_release(&err);
            return 1;
        }
        have_master = true;
    }
    r = vol_store_open(cfg->data_dir, have_master ? master : NULL, cfg->fsync, &d.b.store, &err);
    explicit_bzero(master, sizeof(master));
    if (r < 0) {
        log_error("volume store %s: %s", cfg->data_dir, err.ptr);
        sov_buf_release(&err);
        return 1;
    }
    if (block_grants_load(&d.b, &err) < 0) {
        log_error("grants: %s", err.ptr);
        sov_buf_release(&err);
        return 1;
    }
    sov_http_limits_from_conf(&cfg->http, &d.b.http_limits);
    if ((r = sov_listen_tcp(host, port, false, &d.http_fd, &port)) < 0) {
        log_error_errno(r, "cannot listen on %s", cfg->listen);
        return 1;
    }
    if (cfg->nbd_listen[0] &&
        (r = sov_listen_tcp(nbd_host, nbd_port, false, &d.tcp_fd, &nbd_port)) < 0) {
        log_error_errno(r, "cannot listen on %s (NBD)", cfg->nbd_listen);
        return 1;
    }
    d.b.nbd_port = nbd_port;
    if (strcmp(cfg->nbd_socket, "off") != 0 && (r = listen_unix(cfg->nbd_socket, &d.unix_fd)) < 0) {
        log_error_errno(r, "cannot listen on %s (NBD)", cfg->nbd_socket);
        return 1;
    }
    if (d.args.pidfile && (r = sov_pidfile_write(d.args.pidfile)) < 0) {
        log_error_errno(r, "cannot write pid file %s", d.args.pidfile);
        return 1;
    }
    d.signals = sov_signals_install(loop, NULL, on_hup, &d);
    r = sov_workers_start(1, worker_start, worker_stop, worker_free, &d, &d.workers);
    if (r < 0) {
        log_error_errno(r, "cannot start the worker");
        return 1;
    }
    {
        char np[16];
        const char *kv[] = {"host", host,         "port",          portbuf,    "nbd_port",
                            np,     "nbd_socket", cfg->nbd_socket, "data_dir", cfg->data_dir,
                            NULL};
        snprintf(portbuf, sizeof(portbuf), "%d", port);
        snprintf(np, sizeof(np), "%d", nbd_port);
        if (sov_daemon_announce(&d.args, port, kv) < 0)
            return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    sov_workers_stop(d.workers);
    vol_store_close(d.b.store);
    block_grants_free(&d.b);
    d.b.nbd_tls = sov_tls_free(d.b.nbd_tls);
    if (d.unix_fd >= 0)
        unlink(cfg->nbd_socket);
    if (d.args.pidfile)
        unlink(d.args.pidfile);
    log_info("stopped");
    uv_loop_close(loop);
    sov_metrics_reset();
    return 0;
}
