/* SPDX-License-Identifier: Apache-2.0 */
/* Running a daemon: N loop threads that each serve their own SO_REUSEPORT socket, signal
 * handling on the main loop (SIGTERM/SIGINT drain and exit, SIGHUP reload), pid files, and the
 * common command line every sovcloud daemon accepts. */
#ifndef SOV_DAEMON_H
#define SOV_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct SovWorkers SovWorkers;

/* Called in each worker thread with its fresh loop; returns per-thread state or NULL. */
typedef void *(*SovWorkerStart)(uv_loop_t *loop, unsigned idx, void *ud);
/* Called in the worker thread when asked to stop; must make the loop run out (close handles,
 * shut servers down gracefully). */
typedef void (*SovWorkerStop)(uv_loop_t *loop, void *state, void *ud);
/* Called in the worker thread after its loop ended, to free its state. */
typedef void (*SovWorkerFree)(void *state, void *ud);

int sov_workers_start(unsigned n, SovWorkerStart start, SovWorkerStop stop, SovWorkerFree fr,
                      void *ud, SovWorkers **ret);
/* Asks every worker to stop, then joins them (blocking). */
void sov_workers_stop(SovWorkers *w);
/* Runs fn(state, arg) in every worker thread (asynchronously). */
void sov_workers_broadcast(SovWorkers *w, void (*fn)(void *state, void *arg), void *arg);

typedef struct SovSignals SovSignals;
/* Installs handlers on loop: on_term for SIGTERM/SIGINT (NULL: log once and close the signal
 * handles, which ends a main loop that only waits for signals), on_hup for SIGHUP (may be
 * NULL). SIGPIPE is ignored process-wide. */
SovSignals *sov_signals_install(uv_loop_t *loop, void (*on_term)(int sig, void *ud),
                                void (*on_hup)(void *ud), void *ud);
void sov_signals_close(SovSignals *s);

/* Writes the pid file atomically (temp file, fsync, rename). */
int sov_pidfile_write(const char *path);

/* The process a pid file names: its pid when the file holds one decimal number > 1 (blanks
 * around it allowed), else 0 (missing, unreadable, anything else). */
pid_t sov_pidfile_read(const char *path);

/* Whether pid is a live process: it exists and is no zombie (one whose parent has yet to reap
 * it is gone all the same). */
bool sov_pid_alive(pid_t pid);

/* Whether pid is a live process (not a zombie) whose argv[0] has the base name argv0 (NULL: any)
 * and one of whose later arguments is exactly arg (NULL: none needed); only the first 64 KiB of
 * its command line are looked at. What a daemon checks before it adopts or signals the process
 * a pid file names, which may by now be another one. */
bool sov_proc_matches(pid_t pid, const char *argv0, const char *arg);

/* Number of online CPUs (at least 1). */
unsigned sov_cpu_count(void);

/* The command line every sovcloud daemon accepts. */
typedef struct SovDaemonArgs {
    const char *config;    /* --config FILE */
    const char *listen;    /* --listen HOST:PORT, overrides the config */
    const char *pidfile;   /* --pidfile FILE */
    const char *port_file; /* --port-file FILE: the bound port, written once listening */
    bool print_config;     /* --print-sample-config */
    bool check_config;     /* --check-config: load, report, exit */
} SovDaemonArgs;

/* Returns 0, 1 when --help was printed, or -EINVAL (message printed to stderr). */
int sov_daemon_parse_args(int argc, char **argv, const char *name, SovDaemonArgs *ret);
/* The start of every daemon's main. Parses the command line, prints --help or the sample
 * config, loads the config into cfg, applies --listen to the listen field, checks the [log]
 * level and the listen address. Returns 0 to go on (lvl, host and port set), 1 when the
 * daemon is done and exits 0 (help, sample), -EINVAL after telling stderr why (exit 2).
 * --check-config is left to the daemon, which may check more first. */
typedef struct SovDaemonSpec {
    const char *name;  /* "sov-s3" */
    const char *title; /* heading of the sample config */
    const struct SovConfField *fields;
    size_t nfields;
    size_t listen_offset; /* char[SOV_CONF_STR_MAX] fields of the config struct */
    size_t log_level_offset;
    size_t cfg_size; /* sizeof the config struct (for reloads) */
} SovDaemonSpec;
int sov_daemon_load(int argc, char **argv, const SovDaemonSpec *spec, void *cfg,
                    SovDaemonArgs *args, int *ret_log_level, char *host, size_t hostcap,
                    int *ret_port);
/* SIGHUP for daemons that change only their log level live: loads the config afresh and
 * applies [log] level; a bad config is refused and logged. */
int sov_daemon_reload_log_level(const SovDaemonSpec *spec, const char *config);
/* Once listening: writes --port-file (if any) and logs "listening" with the key/value pairs
 * (NULL-terminated). */
int sov_daemon_announce(const SovDaemonArgs *args, int port, const char *const *kv);
/* Splits "host:port" or "[v6]:port"; host goes to host (size n). */
int sov_parse_hostport(const char *s, char *host, size_t n, int *ret_port);
/* Host and port of "http://HOST:PORT[/...]" (an agent's api_url); -EINVAL otherwise. */
int sov_parse_http_url(const char *url, char *host, size_t n, int *ret_port);
/* Whether s is a name agents use for hosts, zones and namespaces: letters, digits, '-', '_',
 * '.' (the empty string included; callers check emptiness themselves). */
bool sov_name_ok(const char *s);
/* DNS names (RFC 1123): a label is 1-SOV_DNS_LABEL_MAX letters, digits or '-', neither first
 * nor last a '-'; a name is labels joined by '.', at most SOV_DNS_NAME_MAX characters before one
 * optional trailing '.'. sov_dns_label_norm checks the n characters at s and writes them lower
 * case into out (n + 1 bytes); sov_dns_name_norm does that for a whole name, without the
 * trailing dot ("" is no name). */
#define SOV_DNS_LABEL_MAX 63u
#define SOV_DNS_NAME_MAX  253u
bool sov_dns_label_norm(const char *s, size_t n, char *out);
bool sov_dns_name_norm(const char *s, char out[SOV_DNS_NAME_MAX + 1]);
/* fsync of a directory, and of the directory holding path (trailing '/' ignored): what makes
 * a create or rename in it durable. 0 or -errno. */
int sov_fsync_dir(const char *dir);
int sov_fsync_parent(const char *path);
/* Writes a small file atomically (temp, fsync, rename). */
int sov_write_file_atomic(const char *path, const char *data, size_t len);

/* HTTP limits as config fields of a daemon's [http] section: expands to SovConfField entries
 * for a SovHttpLimits member `m` of config struct type T. */
#define SOV_HTTP_LIMIT_FIELDS(T, m)                                                                \
    {"http", "max_header_bytes", SOV_CONF_SIZE, offsetof(T, m.max_header_bytes_),                  \
     1024,   1024 * 1024,        "16K",         "largest request line plus headers"},              \
        {"http", "max_headers", SOV_CONF_INT, offsetof(T, m.max_headers_),                         \
         1,      1000,          "100",        "most header lines in a request"},                   \
        {"http", "max_url",   SOV_CONF_SIZE, offsetof(T, m.max_url_),                              \
         256,    1024 * 1024, "8K",          "longest request target"},                            \
        {"http", "max_body", SOV_CONF_SIZE, offsetof(T, m.max_body),                               \
         0,      INT64_MAX,  "5G",          "largest streamed request body"},                      \
        {"http", "max_buffered_body", SOV_CONF_SIZE, offsetof(T, m.max_buffered_body),             \
         0,      1024 * 1024 * 1024,  "1M",          "largest request body held in memory"},       \
        {"http",                                                                                   \
         "header_timeout",                                                                         \
         SOV_CONF_DURATION,                                                                        \
         offsetof(T, m.header_timeout_ms_),                                                        \
         100,                                                                                      \
         3600000,                                                                                  \
         "30s",                                                                                    \
         "time allowed to send the request headers"},                                              \
        {"http",                                                                                   \
         "body_timeout",                                                                           \
         SOV_CONF_DURATION,                                                                        \
         offsetof(T, m.body_timeout_ms_),                                                          \
         100,                                                                                      \
         3600000,                                                                                  \
         "30s",                                                                                    \
         "longest pause while sending a body or reading a response"},                              \
        {"http",                                                                                   \
         "idle_timeout",                                                                           \
         SOV_CONF_DURATION,                                                                        \
         offsetof(T, m.idle_timeout_ms_),                                                          \
         100,                                                                                      \
         3600000,                                                                                  \
         "60s",                                                                                    \
         "keep-alive connection without a request"},                                               \
        {"http", "max_connections", SOV_CONF_INT, offsetof(T, m.max_connections_),                 \
         1,      1000000,           "10000",      "open connections per worker thread"},           \
    {                                                                                              \
        "http", "shutdown_grace", SOV_CONF_DURATION, offsetof(T, m.shutdown_grace_ms_), 0, 600000, \
            "10s", "time in-flight requests get on SIGTERM"                                        \
    }

/* The config-file form of SovHttpLimits (the loader writes 64-bit fields). */
typedef struct SovHttpLimitsConf {
    uint64_t max_header_bytes_;
    int64_t max_headers_;
    uint64_t max_url_;
    uint64_t max_body;
    uint64_t max_buffered_body;
    uint64_t header_timeout_ms_;
    uint64_t body_timeout_ms_;
    uint64_t idle_timeout_ms_;
    int64_t max_connections_;
    uint64_t shutdown_grace_ms_;
} SovHttpLimitsConf;

struct SovHttpLimits;
void sov_http_limits_from_conf(const SovHttpLimitsConf *c, struct SovHttpLimits *ret);
#endif
