/* SPDX-License-Identifier: Apache-2.0 */
/* `sov up` and `sov down`: start every daemon of the all-in-one cloud in the background and wait
 * until each answers GET /healthz, or stop them with SIGTERM (SIGKILL when they do not exit).
 * Both hold run/sov.lock, so two invocations on one data directory never interleave, and both
 * leave alone what is already in the wanted state. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cli.h"
#include "sov/crypto.h"
#include "sov/daemon.h"

#define START_TIMEOUT_MS 15000u
#define STOP_TIMEOUT_MS  20000u
#define KILL_TIMEOUT_MS  5000u
#define POLL_MS          25u
#define LOG_TAIL_LINES   20
#define LOG_TAIL_BYTES   (64 * 1024)
#define SAFE_PATH        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int lock_file(const char *path, int extra_flags)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | extra_flags, 0600);

    if (fd < 0)
        return -errno;
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int r = -errno;
            close(fd);
            return r;
        }
    }
    return fd;
}

static int lock_data_dir(const Cli *c)
{
    char p[PATH_MAX];
    int r = cli_path(c, p, sizeof(p), "run/sov.lock");

    return r < 0 ? r : lock_file(p, 0);
}

/* Choosing a port and binding it are two steps: two clouds starting at once could both find
 * the default port free, and their SO_REUSEPORT daemons would then share it silently. A lock
 * per user (SO_REUSEPORT sharing needs the same uid) held from the choice until the daemon
 * listens closes that window. Best effort: without it we only lose that protection. */
static int lock_ports(void)
{
    const char *rt = getenv("XDG_RUNTIME_DIR");
    char p[PATH_MAX];

    if (rt && rt[0] == '/')
        snprintf(p, sizeof(p), "%s/sov-ports.lock", rt);
    else
        snprintf(p, sizeof(p), "/tmp/sov-ports-%u.lock", (unsigned)getuid());
    return lock_file(p, O_NOFOLLOW);
}

static void unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

static void remove_run_files(const Cli *c, const CliService *svc)
{
    char p[PATH_MAX];

    if (cli_path(c, p, sizeof(p), "run/%s.pid", svc->name) == 0)
        unlink(p);
    if (cli_path(c, p, sizeof(p), "run/%s.port", svc->name) == 0)
        unlink(p);
}

/* Prints the last lines the daemon wrote to its log since offset from. */
static void print_log_tail(const char *path, off_t from)
{
    char buf[LOG_TAIL_BYTES + 1];
    const char *start, *line;
    struct stat st;
    ssize_t n;
    int fd, lines = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= from) {
        fprintf(stderr, "  (nothing in %s)\n", path);
        if (fd >= 0)
            close(fd);
        return;
    }
    if (st.st_size - from > LOG_TAIL_BYTES)
        from = st.st_size - LOG_TAIL_BYTES;
    n = pread(fd, buf, LOG_TAIL_BYTES, from);
    close(fd);
    if (n <= 0)
        return;
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    start = buf + n;
    while (start > buf && lines < LOG_TAIL_LINES) {
        start--;
        if (*start == '\n' && ++lines == LOG_TAIL_LINES) {
            start++;
            break;
        }
    }
    fprintf(stderr, "  last lines of %s:\n", path);
    for (line = start; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        fprintf(stderr, "  | %.*s\n", len, line);
        line = nl ? nl + 1 : NULL;
    }
}

/* The control plane: its state under the data dir, the admin password of credentials.ini, and
 * the addresses of sov-block (volumes) and sov-s3 (image data, EC2 credentials). */
static int api_config(const Cli *c, const CliCreds *cr, SovBuf *text)
{
    char dir[PATH_MAX], host[256];
    uint8_t raw[24];
    char agent_token[49];
    int block_port = -1, s3_port = -1, r;

    r = cli_path(c, dir, sizeof(dir), "api");
    if (r < 0)
        return r;
    if (cli_config_listen(c, CLI_BLOCK_NAME, host, sizeof(host), &block_port) < 0)
        block_port = -1;
    if (cli_config_listen(c, CLI_S3_NAME, host, sizeof(host), &s3_port) < 0)
        s3_port = -1;
    if ((r = sov_random_bytes(raw, sizeof(raw))) < 0)
        return r;
    sov_hex_encode(raw, sizeof(raw), agent_token);
    agent_token[48] = '\0';
    r = sov_buf_printf(text,
                       "\n[api]\n"
                       "data_dir = %s\n"
                       "regions = %s:EU:%sa,%sb,%sc\n"
                       "\n[identity]\n"
                       "admin_password = %s\n"
                       "s3_keys_file = %s/ec2-keys\n"
                       "\n[agent]\n"
                       "token = %s\n",
                       dir, cr->region, cr->region, cr->region, cr->region, cr->password, dir,
                       agent_token);
    if (r >= 0 && block_port > 0)
        r = sov_buf_printf(text, "\n[block]\nurl = http://127.0.0.1:%d\n", block_port);
    if (r >= 0 && s3_port > 0)
        r = sov_buf_printf(text,
                           "\n[image]\n"
                           "s3_url = http://127.0.0.1:%d\n"
                           "s3_access_key = %s\n"
                           "s3_secret_key = %s\n",
                           s3_port, cr->access_key_id, cr->secret_access_key);
    explicit_bzero(agent_token, sizeof(agent_token));
    return r;
}

/* The network namespace holding this cloud's VPC datapath (bridges, taps, router legs), named
 * after the data dir so two clouds on one machine do not meet; sov-net makes it. */
static void vpc_netns(const Cli *c, char out[32])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = c->data_dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    snprintf(out, 32, "sov-%06x", h & 0xffffff);
}

/* The compute agent of this machine: it reports to sov-api with the agent token of sov-api's
 * config, in the region's first zone; guests live under the data dir. */
static int compute_config(const Cli *c, const CliCreds *cr, SovBuf *text)
{
    char dir[PATH_MAX], host[256], token[256], ns[32];
    int api_port, r;

    vpc_netns(c, ns);
    r = cli_path(c, dir, sizeof(dir), "compute");
    if (r < 0)
        return r;
    if (cli_config_listen(c, CLI_API_NAME, host, sizeof(host), &api_port) < 0 ||
        cli_config_get(c, CLI_API_NAME, "agent", "token", token, sizeof(token)) < 0)
        return -ENOENT; /* sov-api's config comes first in the table */
    r = sov_buf_printf(text,
                       "\n[compute]\n"
                       "api_url = http://127.0.0.1:%d\n"
                       "agent_token = %s\n"
                       "host = compute-1\n"
                       "zone = %sa\n"
                       "state_dir = %s\n"
                       "# servers' Neutron ports as NICs on sov-net's bridges\n"
                       "vpc = true\n"
                       "netns = %s\n",
                       api_port, token, cr->region, dir, ns);
    explicit_bzero(token, sizeof(token));
    return r;
}

/* The network agent of this machine: same host name as the compute agent (port bindings name
 * the machine), the datapath in the cloud's own namespace. */
static int net_config(const Cli *c, SovBuf *text)
{
    char dir[PATH_MAX], host[256], token[256], ns[32];
    int api_port, r;

    r = cli_path(c, dir, sizeof(dir), "net");
    if (r < 0)
        return r;
    if (cli_config_listen(c, CLI_API_NAME, host, sizeof(host), &api_port) < 0 ||
        cli_config_get(c, CLI_API_NAME, "agent", "token", token, sizeof(token)) < 0)
        return -ENOENT;
    vpc_netns(c, ns);
    r = sov_buf_printf(text,
                       "\n[net]\n"
                       "api_url = http://127.0.0.1:%d\n"
                       "agent_token = %s\n"
                       "host = compute-1\n"
                       "netns = %s\n"
                       "prefix = %s\n"
                       "state_dir = %s\n",
                       api_port, token, ns, ns, dir);
    explicit_bzero(token, sizeof(token));
    return r;
}

static int write_config(const Cli *c, const CliService *svc, const CliCreds *cr)
{
    char p[PATH_MAX];
    SovBuf text = SOV_BUF_INIT;
    int port, r;

    r = cli_path(c, p, sizeof(p), "etc/%s.ini", svc->name);
    if (r < 0 || access(p, F_OK) == 0)
        return r;
    r = cli_port_choose(svc->default_port, &port);
    if (r < 0)
        return r;
    r = sov_buf_printf(&text,
                       "# %s configuration, written by the first `sov up` and never overwritten:\n"
                       "# edit it freely. `%s --print-sample-config` lists every setting.\n"
                       "[server]\n"
                       "listen = 127.0.0.1:%d\n",
                       svc->binary, svc->binary, port);
    if (r >= 0 && strcmp(svc->name, CLI_S3_NAME) == 0) {
        /* The object store keeps its data under the data dir and serves the generated key. */
        char dir[PATH_MAX];
        r = cli_path(c, dir, sizeof(dir), "s3");
        if (r >= 0)
            r = sov_buf_printf(&text,
                               "\n[s3]\n"
                               "data_dir = %s\n"
                               "region = %s\n"
                               "account = %s\n"
                               "access_key_id = %s\n"
                               "secret_access_key = %s\n"
                               "# EC2 credentials issued by sov-api (Keystone) for its projects\n"
                               "keys_file = %s/api/ec2-keys\n",
                               dir, cr->region, cr->username, cr->access_key_id,
                               cr->secret_access_key, c->data_dir);
    }
    if (r >= 0 && strcmp(svc->name, CLI_BLOCK_NAME) == 0) {
        /* Volumes, their master key and the NBD socket live under the data dir; NBD over TCP
         * gets a port of its own (exports need a grant there). */
        char dir[PATH_MAX];
        int nbd_port;
        r = cli_path(c, dir, sizeof(dir), "block");
        if (r >= 0)
            r = cli_port_choose(CLI_NBD_DEFAULT_PORT, &nbd_port);
        if (r >= 0)
            r = sov_buf_printf(&text,
                               "\n[block]\n"
                               "data_dir = %s\n"
                               "master_key_file = %s/master.key\n"
                               "\n[nbd]\n"
                               "listen = 127.0.0.1:%d\n"
                               "socket = %s/nbd.sock\n",
                               dir, dir, nbd_port, dir);
    }
    if (r >= 0 && strcmp(svc->name, CLI_API_NAME) == 0)
        r = api_config(c, cr, &text);
    if (r >= 0 && strcmp(svc->name, CLI_COMPUTE_NAME) == 0)
        r = compute_config(c, cr, &text);
    if (r >= 0 && strcmp(svc->name, CLI_NET_NAME) == 0)
        r = net_config(c, &text);
    bool secret = strcmp(svc->name, CLI_S3_NAME) == 0 || strcmp(svc->name, CLI_API_NAME) == 0 ||
                  strcmp(svc->name, CLI_COMPUTE_NAME) == 0 || strcmp(svc->name, CLI_NET_NAME) == 0;
    if (r >= 0)
        r = cli_file_create(p, text.ptr, text.len, secret ? 0600 : 0644);
    if (text.ptr)
        explicit_bzero(text.ptr, text.len);
    sov_buf_release(&text);
    return r < 0 ? r : 0;
}

static void log_marker(int fd, const CliService *svc)
{
    char ts[32], line[256];
    struct tm tm;
    time_t now = time(NULL);
    int n;

    if (!gmtime_r(&now, &tm) || strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return;
    n = snprintf(line, sizeof(line), "ts=%s level=info svc=sov msg=\"starting %s\"\n", ts,
                 svc->binary);
    if (n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) < 0)
        return; /* the log line is a courtesy; the start goes on */
}

/* Runs in the child between fork() and execve(): async-signal-safe calls only. */
static _Noreturn void child_exec(int nullfd, int logfd, const char *dir, char *const argv[],
                                 char *const envp[])
{
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD};
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigset_t none;
    static const char msg[] = "sov: cannot execute the daemon\n";

    setsid();
    if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
        _exit(127);
    for (int fd = 0; fd < 3; fd++)
        fcntl(fd, F_SETFD, 0);
    if (close_range(3, ~0u, 0) < 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    if (chdir(dir) < 0)
        _exit(127);
    execve(argv[0], argv, envp);
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(127);
    _exit(127);
}

/* Starts svc in the background with a clean environment; the daemon writes its own pid and
 * port files once it listens. ret_log_from is where this start's output begins in the log.
 * Reports its own failures. */
static int service_spawn(const Cli *c, const CliService *svc, pid_t *ret_pid, off_t *ret_log_from)
{
    char bin[PATH_MAX], cfg[PATH_MAX], pidf[PATH_MAX], portf[PATH_MAX], logp[PATH_MAX];
    char env_path[] = "PATH=" SAFE_PATH, env_home[PATH_MAX + 8], env_lang[128];
    char *argv[] = {bin,  (char *)"--config",    cfg,   (char *)"--pidfile",
                    pidf, (char *)"--port-file", portf, NULL};
    char *envp[] = {env_path, env_home, env_lang, NULL};
    const char *home = getenv("HOME"), *lang = getenv("LANG");
    struct stat st;
    int logfd, nullfd, r;
    pid_t pid;

    if (snprintf(bin, sizeof(bin), "%s/%s", c->bin_dir, svc->binary) >= (int)sizeof(bin) ||
        cli_path(c, cfg, sizeof(cfg), "etc/%s.ini", svc->name) < 0 ||
        cli_path(c, pidf, sizeof(pidf), "run/%s.pid", svc->name) < 0 ||
        cli_path(c, portf, sizeof(portf), "run/%s.port", svc->name) < 0 ||
        cli_path(c, logp, sizeof(logp), "log/%s.log", svc->name) < 0) {
        fprintf(stderr, "sov: %s: path too long under %s\n", svc->name, c->data_dir);
        return -ENAMETOOLONG;
    }
    if (access(bin, X_OK) < 0) {
        r = -errno;
        fprintf(stderr, "sov: %s (%s) cannot start: %s: %s (daemons are found next to sov)\n",
                svc->name, svc->binary, bin, strerror(-r));
        return r;
    }
    snprintf(env_home, sizeof(env_home), "HOME=%s", home && *home ? home : "/");
    snprintf(env_lang, sizeof(env_lang), "LANG=%s",
             lang && *lang && strlen(lang) < 100 ? lang : "C.UTF-8");

    logfd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (logfd < 0 || fstat(logfd, &st) < 0) {
        r = -errno;
        fprintf(stderr, "sov: %s: cannot open %s: %s\n", svc->name, logp, strerror(-r));
        if (logfd >= 0)
            close(logfd);
        return r;
    }
    log_marker(logfd, svc);
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fflush(NULL);
    pid = nullfd < 0 ? -1 : fork();
    if (pid == 0)
        child_exec(nullfd, logfd, c->data_dir, argv, envp);
    r = pid < 0 ? -errno : 0;
    if (nullfd >= 0)
        close(nullfd);
    close(logfd);
    if (r < 0) {
        fprintf(stderr, "sov: %s (%s) cannot start: %s\n", svc->name, svc->binary, strerror(-r));
        return r;
    }
    *ret_pid = pid;
    *ret_log_from = st.st_size;
    return 0;
}

/* Sends SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; 0 once the process is gone, -errno when
 * it cannot be signalled, -ETIMEDOUT when it outlives even SIGKILL. The process's identity is
 * checked again before the SIGKILL so that a recycled pid is never hit. */
static int service_stop_pid(const Cli *c, const CliService *svc, pid_t pid, bool own_child)
{
    uint64_t deadline;

    if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
        return -errno;
    for (int round = 0; round < 2; round++) {
        deadline = cli_now_ms() + (round == 0 ? STOP_TIMEOUT_MS : KILL_TIMEOUT_MS);
        for (;;) {
            if (own_child)
                waitpid(pid, NULL, WNOHANG);
            if (!sov_pid_alive(pid))
                return 0;
            if (cli_now_ms() >= deadline)
                break;
            cli_sleep_ms(POLL_MS);
        }
        if (round == 0 && (own_child || cli_pid_is_service(c, svc, pid)))
            kill(pid, SIGKILL);
    }
    return -ETIMEDOUT;
}

/* Polls until the daemon answers /healthz with 200. With own_child, pid is a process we just
 * forked (reaped here when it exits); otherwise it is a daemon started earlier. */
static int service_wait_healthy(const Cli *c, const CliService *svc, pid_t pid, bool own_child,
                                off_t log_from)
{
    char portf[PATH_MAX], logp[PATH_MAX], host[256] = "127.0.0.1";
    uint64_t deadline = cli_now_ms() + START_TIMEOUT_MS;
    int cfg_port, status;
    long port;

    if (cli_path(c, portf, sizeof(portf), "run/%s.port", svc->name) < 0 ||
        cli_path(c, logp, sizeof(logp), "log/%s.log", svc->name) < 0)
        return -ENAMETOOLONG;
    if (cli_config_listen(c, svc->name, host, sizeof(host), &cfg_port) < 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    for (;;) {
        if (own_child ? waitpid(pid, &status, WNOHANG) == pid : !sov_pid_alive(pid)) {
            if (!own_child)
                fprintf(stderr, "sov: %s (%s, pid %ld) exited\n", svc->name, svc->binary,
                        (long)pid);
            else if (WIFEXITED(status))
                fprintf(stderr, "sov: %s (%s) failed to start: it exited with status %d\n",
                        svc->name, svc->binary, WEXITSTATUS(status));
            else
                fprintf(stderr, "sov: %s (%s) failed to start: it was killed by signal %d\n",
                        svc->name, svc->binary, WTERMSIG(status));
            print_log_tail(logp, log_from);
            remove_run_files(c, svc);
            return -ECHILD;
        }
        if (cli_file_read_number(portf, 1, 65535, &port) == 0 &&
            cli_health_ok(host, (int)port, 1000))
            return 0;
        if (cli_now_ms() >= deadline)
            break;
        cli_sleep_ms(POLL_MS);
    }
    fprintf(stderr, "sov: %s (%s, pid %ld) did not answer GET /healthz within %u s\n", svc->name,
            svc->binary, (long)pid, START_TIMEOUT_MS / 1000);
    print_log_tail(logp, log_from);
    if (own_child) {
        /* Ours and broken: do not leave it behind half-started. */
        if (service_stop_pid(c, svc, pid, true) == 0)
            remove_run_files(c, svc);
    } else {
        fprintf(stderr, "  `sov down` then `sov up` restarts it\n");
    }
    return -ETIMEDOUT;
}

static int service_start(const Cli *c, const CliService *svc, const CliCreds *cr)
{
    char host[256], cfg[PATH_MAX];
    off_t log_from = 0;
    pid_t pid = 0;
    int port, lock, r;

    remove_run_files(c, svc); /* stale: the probe found no live daemon behind them */
    lock = lock_ports();
    r = write_config(c, svc, cr);
    if (r < 0) {
        fprintf(stderr, "sov: %s: cannot write its config: %s\n", svc->name, strerror(-r));
        goto out;
    }
    if (cli_path(c, cfg, sizeof(cfg), "etc/%s.ini", svc->name) < 0) {
        r = -ENAMETOOLONG;
        goto out;
    }
    if (cli_config_listen(c, svc->name, host, sizeof(host), &port) == 0 && port > 0 &&
        cli_port_check_free(host, port) < 0) {
        fprintf(stderr,
                "sov: %s (%s) cannot start: port %d (from %s) is already in use;\n"
                "  stop whatever listens there or edit the file\n",
                svc->name, svc->binary, port, cfg);
        r = -EADDRINUSE;
        goto out;
    }
    r = service_spawn(c, svc, &pid, &log_from);
    if (r < 0)
        goto out;
    r = service_wait_healthy(c, svc, pid, true, log_from);
    if (r == 0)
        printf("%-8s started (pid %ld)\n", svc->name, (long)pid);
out:
    unlock(lock);
    return r;
}

static int service_up(const Cli *c, const CliService *svc, const CliCreds *cr)
{
    CliProbe p;
    int r;

    r = cli_probe(c, svc, &p);
    if (r < 0)
        return r;
    if (p.state == CLI_RUNNING) {
        printf("%-8s already running (pid %ld)\n", svc->name, (long)p.pid);
        return 0;
    }
    if (p.state == CLI_UNHEALTHY) {
        /* Alive and ours: perhaps still starting. Give it the same time as a fresh start. */
        r = service_wait_healthy(c, svc, p.pid, false, 0);
        if (r == 0)
            printf("%-8s already running (pid %ld)\n", svc->name, (long)p.pid);
        return r;
    }
    return service_start(c, svc, cr);
}

static void print_summary(const Cli *c, const CliCreds *cr)
{
    char url[300], first[300] = "", s3[300] = "", block[300] = "", api[300] = "";
    SovBuf q = SOV_BUF_INIT;

    printf("\nsovcloud is up in %s\n\n", c->data_dir);
    printf("  %-8s %-32s %s\n", "NAME", "ENDPOINT", "METRICS");
    for (size_t i = 0; i < cli_services_n; i++) {
        CliProbe p;
        if (cli_probe(c, &cli_services[i], &p) < 0 || p.port < 0)
            continue;
        cli_url(p.host, p.port, url, sizeof(url));
        printf("  %-8s %-32s %s/metrics\n", cli_services[i].name, url, url);
        if (!first[0])
            snprintf(first, sizeof(first), "%s", url);
        if (strcmp(cli_services[i].name, CLI_S3_NAME) == 0)
            snprintf(s3, sizeof(s3), "%s", url);
        if (strcmp(cli_services[i].name, CLI_BLOCK_NAME) == 0)
            snprintf(block, sizeof(block), "%s", url);
        if (strcmp(cli_services[i].name, CLI_API_NAME) == 0)
            snprintf(api, sizeof(api), "%s", url);
    }
    printf("\n  Credentials (%s/credentials.ini):\n", c->data_dir);
    printf("    user               %s (project admin, region %s)\n", cr->username, cr->region);
    printf("    password           %s\n", cr->password);
    printf("    access key id      %s\n", cr->access_key_id);
    printf("    secret access key  %s\n", cr->secret_access_key);
    printf("\n  Try:\n");
    if (first[0])
        printf("    curl %s/healthz\n", first);
    if (c->data_dir_arg) {
        sov_buf_puts(&q, " --data-dir ");
        cli_shell_quote(&q, c->data_dir_arg);
    }
    printf("    eval \"$(%s env%s)\"\n", c->argv0, q.ptr ? q.ptr : "");
    if (block[0]) {
        char sock[PATH_MAX];
        if (cli_path(c, sock, sizeof(sock), "block/nbd.sock") == 0) {
            printf(
                "    curl -X POST %s/v1/volumes -d '{\"name\": \"disk1\", \"size\": 1073741824}'\n",
                block);
            printf("    qemu-img info 'nbd+unix:///disk1?socket=%s'\n", sock);
        }
    }
    if (api[0]) {
        printf("    openstack token issue\n");
        printf("    openstack flavor list\n");
        printf("    openstack volume create --size 1 first-volume\n");
        printf("    openstack network create first-net\n");
    }
    if (s3[0]) {
        printf("    /usr/bin/aws --endpoint-url \"$SOV_S3_ENDPOINT\" s3 mb s3://first-bucket\n");
        printf("    /usr/bin/aws --endpoint-url \"$SOV_S3_ENDPOINT\" s3 cp README.md "
               "s3://first-bucket/\n");
        printf("    /usr/bin/aws --endpoint-url \"$SOV_S3_ENDPOINT\" s3 ls s3://first-bucket\n");
    }
    sov_buf_release(&q);
}

int cli_cmd_up(const Cli *c)
{
    CliCreds cr;
    int lock, r;

    r = cli_dirs_create(c);
    if (r < 0) {
        fprintf(stderr, "sov: cannot create %s: %s\n", c->data_dir, strerror(-r));
        return 1;
    }
    lock = lock_data_dir(c);
    if (lock < 0) {
        fprintf(stderr, "sov: cannot lock %s: %s\n", c->data_dir, strerror(-lock));
        return 1;
    }
    r = cli_creds_ensure(c, &cr);
    if (r < 0) {
        fprintf(stderr, "sov: cannot read or create %s/credentials.ini: %s\n", c->data_dir,
                strerror(-r));
        unlock(lock);
        return 1;
    }
    for (size_t i = 0; i < cli_services_n; i++) {
        r = service_up(c, &cli_services[i], &cr);
        if (r < 0) {
            if (i > 0)
                fprintf(stderr, "sov: the daemons started before it keep running; "
                                "`sov down` stops them\n");
            break;
        }
    }
    if (r == 0)
        print_summary(c, &cr);
    explicit_bzero(&cr, sizeof(cr));
    unlock(lock);
    return r < 0 ? 1 : 0;
}

static int service_down(const Cli *c, const CliService *svc, bool *stopped)
{
    char pidf[PATH_MAX];
    long pid;
    int r;

    r = cli_path(c, pidf, sizeof(pidf), "run/%s.pid", svc->name);
    if (r < 0)
        return r;
    r = cli_file_read_number(pidf, 1, INT32_MAX, &pid);
    if (r == -ENOENT) {
        remove_run_files(c, svc);
        return 0;
    }
    if (r < 0 || !cli_pid_is_service(c, svc, (pid_t)pid)) {
        if (r < 0)
            printf("%-8s unreadable pid file %s removed\n", svc->name, pidf);
        else
            printf("%-8s stale pid file removed (pid %ld is not its %s)\n", svc->name, pid,
                   svc->binary);
        remove_run_files(c, svc);
        return 0;
    }
    r = service_stop_pid(c, svc, (pid_t)pid, false);
    if (r < 0) {
        fprintf(stderr, "sov: %s (%s, pid %ld) does not stop: %s\n", svc->name, svc->binary, pid,
                r == -ETIMEDOUT ? "still alive after SIGKILL" : strerror(-r));
        return r;
    }
    remove_run_files(c, svc);
    printf("%-8s stopped (pid %ld)\n", svc->name, pid);
    *stopped = true;
    return 0;
}

int cli_cmd_down(const Cli *c)
{
    bool stopped = false, failed = false;
    struct stat st;
    int lock;

    if (stat(c->data_dir, &st) < 0) {
        printf("sov: nothing is running in %s\n", c->data_dir);
        return 0;
    }
    lock = cli_dirs_create(c);
    if (lock >= 0)
        lock = lock_data_dir(c);
    if (lock < 0) {
        fprintf(stderr, "sov: cannot lock %s/run/sov.lock: %s\n", c->data_dir, strerror(-lock));
        return 1;
    }
    /* In reverse table order: later daemons may depend on earlier ones. */
    for (size_t i = cli_services_n; i-- > 0;)
        if (service_down(c, &cli_services[i], &stopped) < 0)
            failed = true;
    if (!stopped && !failed)
        printf("sov: nothing is running in %s\n", c->data_dir);
    unlock(lock);
    return failed ? 1 : 0;
}
