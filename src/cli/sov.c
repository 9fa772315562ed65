/* SPDX-License-Identifier: Apache-2.0 */
/* sov: the operator CLI of sovcloud. This file parses the command line, resolves the data
 * directory and the directory holding the daemons, and hands over to one subcommand (up, down,
 * status, env, audit, ssh, s3), each of which lives in its own file. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define DEFAULT_DATA_DIR "./var"

typedef struct Command {
    const char *name;
    int (*run)(const Cli *c);
    bool creates_data_dir;
    bool takes_json;
} Command;

static const Command commands[] = {
    {"up", cli_cmd_up, true, false},
    {"down", cli_cmd_down, false, false},
    {"status", cli_cmd_status, false, true},
    {"env", cli_cmd_env, true, false},
    {"audit", cli_cmd_audit_verify, false, false}, /* `audit verify` */
    {"ssh", cli_cmd_ssh, false, false},
    {"s3", cli_cmd_s3, false, false}, /* `s3 heal`, `s3 rotate-key` */
};

static int usage(void)
{
    fputs("usage: sov COMMAND [--data-dir DIR]\n"
          "\n"
          "Runs the sovcloud all-in-one cloud out of one data directory (default " DEFAULT_DATA_DIR
          ").\n"
          "\n"
          "commands:\n"
          "  up              start every daemon in the background, wait until each is healthy\n"
          "  down            stop every daemon (SIGTERM, SIGKILL after 20 s)\n"
          "  status [--json] show each daemon: running, unhealthy or stopped\n"
          "  env             print shell exports for OpenStack and AWS clients:\n"
          "                  eval \"$(sov env)\"\n"
          "  audit verify [--api-data DIR]\n"
          "                  check sov-api's hash-chained audit log (DIR: sov-api's data_dir,\n"
          "                  default DATA_DIR/api); exit 1 when an entry was edited or removed\n"
          "  ssh [-i KEYFILE] SERVER [COMMAND...]\n"
          "                  ssh as root into a server (name or id) at the address in its\n"
          "                  details (sov:ssh); logs in with OS_* variables when OS_AUTH_URL is\n"
          "                  set, else as the admin of DATA_DIR's cloud; exits with ssh's status\n"
          "  s3 heal         verify every erasure-coded shard of sov-s3 and rewrite the damaged\n"
          "                  ones; prints a summary, exits 1 when some data could not be rebuilt\n"
          "  s3 rotate-key   make a new current master key for server-side encryption (objects\n"
          "                  written before keep their key and stay readable)\n"
          "  help            show this text\n",
          stderr);
    return 2;
}

/* Daemons run with 0, 1 and 2 redirected; making sure they are open now means no file we open
 * later takes one of those numbers by accident. */
static void stdio_ensure_open(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
            _exit(1);
}

static int mkdir_parents(const char *path)
{
    char p[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, path, n + 1);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        /* Parents are ordinary directories; the data directory itself holds credentials. */
        if (mkdir(p, i == n ? 0700 : 0755) < 0 && errno != EEXIST)
            return -errno;
        p[i] = i == n ? '\0' : '/';
    }
    return 0;
}

/* The data directory as an absolute, canonical path: the daemons' command lines embed it and
 * `sov down` recognises its daemons by it, so ./var and var must come out the same. */
static int data_dir_resolve(const char *arg, bool create, char *out, size_t n)
{
    char cwd[PATH_MAX], *real;
    int r;

    if (create && (r = mkdir_parents(arg)) < 0)
        return r;
    real = realpath(arg, NULL);
    if (real) {
        r = snprintf(out, n, "%s", real) < (int)n ? 0 : -ENAMETOOLONG;
        free(real);
        return r;
    }
    if (errno != ENOENT)
        return -errno;
    /* Does not exist yet: nothing runs there, and nothing is created by this command. */
    if (arg[0] == '/')
        return snprintf(out, n, "%s", arg) < (int)n ? 0 : -ENAMETOOLONG;
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    return snprintf(out, n, "%s/%s", cwd, arg) < (int)n ? 0 : -ENAMETOOLONG;
}

static int bin_dir_resolve(char *out, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", out, n - 1);
    char *slash;

    if (len < 0)
        return -errno;
    out[len] = '\0';
    slash = strrchr(out, '/');
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    Cli c = {.argv0 = argv[0] && argv[0][0] ? argv[0] : "sov"};
    const Command *cmd = NULL;
    const char *dir = NULL, *sub = NULL;
    int r;

    stdio_ensure_open();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--data-dir") == 0) {
            if (++i >= argc)
                return usage();
            dir = argv[i];
        } else if (strncmp(a, "--data-dir=", 11) == 0) {
            dir = a + 11;
        } else if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "--api-data") == 0) {
            if (++i >= argc)
                return usage();
            c.api_data_dir = argv[i];
        } else if (cmd && cmd->run == cli_cmd_audit_verify && !sub && strcmp(a, "verify") == 0) {
            sub = a;
        } else if (cmd && cmd->run == cli_cmd_s3 && !c.args && a[0] != '-') {
            c.args = &argv[i];
            c.nargs = 1;
        } else if (cmd && cmd->run == cli_cmd_ssh) {
            /* ssh's own options, then SERVER; every word after SERVER is the remote command. */
            if (strcmp(a, "-i") == 0) {
                if (++i >= argc)
                    return usage();
                c.ssh_key = argv[i];
                continue;
            }
            if (strcmp(a, "--") == 0)
                i++;
            else if (a[0] == '-')
                return usage();
            c.args = &argv[i];
            c.nargs = argc - i;
            break;
        } else if (a[0] == '-' || cmd) {
            return usage(); /* --help, -h, unknown options and stray arguments alike */
        } else {
            for (size_t k = 0; k < ELEMENTSOF(commands) && !cmd; k++)
                if (strcmp(a, commands[k].name) == 0)
                    cmd = &commands[k];
            if (!cmd)
                return usage(); /* `help` and unknown commands */
        }
    }
    if (!cmd || (c.json && !cmd->takes_json) || (dir && !dir[0]) ||
        ((cmd->run == cli_cmd_audit_verify) != (sub != NULL)) ||
        (c.api_data_dir && cmd->run != cli_cmd_audit_verify) ||
        ((cmd->run == cli_cmd_ssh || cmd->run == cli_cmd_s3) && c.nargs < 1))
        return usage();
    c.data_dir_arg = dir;
    r = data_dir_resolve(dir ? dir : DEFAULT_DATA_DIR, cmd->creates_data_dir, c.data_dir,
                         sizeof(c.data_dir));
    if (r < 0) {
        fprintf(stderr, "sov: data directory %s: %s\n", dir ? dir : DEFAULT_DATA_DIR, strerror(-r));
        return 1;
    }
    r = bin_dir_resolve(c.bin_dir, sizeof(c.bin_dir));
    if (r < 0) {
        fprintf(stderr, "sov: cannot find my own executable: %s\n", strerror(-r));
        return 1;
    }
    return cmd->run(&c);
}
