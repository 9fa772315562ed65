/* SPDX-License-Identifier: Apache-2.0 */
/* Private interface of the `sov` operator CLI: the table of daemons that make up the all-in-one
 * cloud, the layout of a data directory and the helpers the subcommands share. Only the files
 * of src/cli include it.
 *
 * Data directory layout (paths relative to --data-dir):
 *   etc/<name>.ini     daemon config, generated on the first `up`, never overwritten after
 *   run/<name>.pid     written by the daemon (--pidfile)
 *   run/<name>.port    the port the daemon listens on (--port-file)
 *   run/sov.lock       serialises `up` and `down` on one data directory
 *   log/<name>.log     the daemon's stdout and stderr, appended
 *   credentials.ini    admin and S3 credentials, mode 0600 */
#ifndef SOV_CLI_H
#define SOV_CLI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sov/buf.h"

/* One daemon of the all-in-one cloud; adding a service to `sov up` is one line in the table. */
typedef struct CliService {
    const char *name;   /* short name used for its files and in output */
    const char *binary; /* executable installed next to `sov` */
    int default_port;   /* preferred port on 127.0.0.1 when its config is first written */
} CliService;

extern const CliService cli_services[];
extern const size_t cli_services_n;

/* Default ports of services that do not exist yet but already have a place in `sov env`. */
#define CLI_API_NAME             "api"
#define CLI_API_DEFAULT_PORT     8400
#define CLI_S3_NAME              "s3"
#define CLI_S3_DEFAULT_PORT      8433
#define CLI_BLOCK_NAME           "block"
#define CLI_BLOCK_DEFAULT_PORT   8476
#define CLI_NBD_DEFAULT_PORT     10809
#define CLI_COMPUTE_NAME         "compute"
#define CLI_COMPUTE_DEFAULT_PORT 8478
#define CLI_NET_NAME             "net"
#define CLI_NET_DEFAULT_PORT     8479

#define CLI_REGION "eu-central-1"

/* What every subcommand knows. Invariant: data_dir is absolute and has no trailing slash. */
typedef struct Cli {
    char data_dir[PATH_MAX];
    const char *data_dir_arg; /* as given on the command line, for printed examples */
    const char *argv0;
    char bin_dir[PATH_MAX]; /* directory holding the sov executable and the daemons */
    bool json;
    const char *api_data_dir; /* `audit verify --api-data DIR` */
    const char *ssh_key;      /* `ssh -i KEYFILE` */
    char **args;              /* `ssh`: SERVER, then the remote command's words; `s3`: heal... */
    int nargs;
} Cli;

typedef enum CliState {
    CLI_STOPPED,
    CLI_UNHEALTHY, /* the process is alive but /healthz does not answer 200 */
    CLI_RUNNING,
} CliState;

/* A daemon as seen from its files and /proc. pid is 0 unless the process is alive and really is
 * that daemon; port is -1 when neither the port file nor the config names one. */
typedef struct CliProbe {
    CliState state;
    pid_t pid;
    char host[256]; /* where to connect: the listen address, wildcards mapped to loopback */
    int port;
} CliProbe;

/* Paths. cli_path() writes data_dir/<formatted>; -ENAMETOOLONG when it does not fit. */
int cli_path(const Cli *c, char *out, size_t n, const char *fmt, ...) _printf_(4, 5);
int cli_dirs_create(const Cli *c);

/* Files. cli_file_read() reads a small file whole (bounded by max). cli_file_create() creates
 * path with the given content and mode only if it does not exist yet, atomically (a reader
 * never sees a partial file); returns 1 when it created it, 0 when it was already there. */
int cli_file_read(const char *path, size_t max, SovBuf *out);
int cli_file_create(const char *path, const char *data, size_t len, mode_t mode);
/* A file holding one decimal number (pid or port files); -ENOENT, -EINVAL. */
int cli_file_read_number(const char *path, long min, long max, long *ret);

/* A setting of a service's config (etc/<name>.ini): -ENOENT without the file, -EINVAL when
 * the key is not there. */
int cli_config_get(const Cli *c, const char *name, const char *section, const char *key, char *out,
                   size_t cap);
/* The [server] listen address of a service's config (any name, present or future);
 * -ENOENT when the config does not exist. */
int cli_config_listen(const Cli *c, const char *name, char *host, size_t hostlen, int *ret_port);
/* The port a service is configured for, or def when it has no config yet. */
int cli_config_port(const Cli *c, const char *name, int def);

/* Processes. */
/* True when pid runs svc's binary with this data directory's config: a stale pid file that
 * points at an unrelated process never matches. */
bool cli_pid_is_service(const Cli *c, const CliService *svc, pid_t pid);

/* Networking. */
bool cli_health_ok(const char *host, int port, unsigned timeout_ms);
int cli_port_check_free(const char *host, int port);
/* The default port when it is free on 127.0.0.1, otherwise one the kernel picks. */
int cli_port_choose(int def, int *ret_port);
/* "http://host:port", brackets around IPv6 hosts. */
void cli_url(const char *host, int port, char *out, size_t n);

int cli_probe(const Cli *c, const CliService *svc, CliProbe *ret);
const char *cli_state_name(CliState s);

uint64_t cli_now_ms(void);
void cli_sleep_ms(unsigned ms);

/* Appends s quoted for POSIX shells (single quotes; ' becomes '\''). */
int cli_shell_quote(SovBuf *b, const char *s);

/* Credentials (creds.c). */
typedef struct CliCreds {
    char username[64];
    char password[64];
    char access_key_id[64];
    char secret_access_key[64];
    char region[64];
} CliCreds;

/* Loads credentials.ini, generating it first (mode 0600) when it does not exist. */
int cli_creds_ensure(const Cli *c, CliCreds *ret);

/* Subcommands: each returns the process exit status. */
int cli_cmd_up(const Cli *c);
int cli_cmd_down(const Cli *c);
int cli_cmd_status(const Cli *c);
int cli_cmd_env(const Cli *c);
int cli_cmd_audit_verify(const Cli *c);
int cli_cmd_ssh(const Cli *c);
int cli_cmd_s3(const Cli *c);
/* Checks an audit log (and the head recorded in state_db, when not NULL): 0 ok, 1 broken. */
int cli_audit_verify(const char *log_path, const char *state_db);

#endif
