/* SPDX-License-Identifier: Apache-2.0 */
/* `sov status` and `sov env`: what runs in a data directory (a text table, or JSON for scripts
 * and tests), and the shell exports that point OpenStack and AWS clients at the cloud. Neither
 * starts or stops anything; `env` only creates the credentials when they do not exist yet. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sov/json.h"

static json_t *status_json(const CliService *svc, const CliProbe *p)
{
    char url[300], metrics[320];
    bool has_url = p->state != CLI_STOPPED && p->port > 0;

    if (has_url) {
        cli_url(p->host, p->port, url, sizeof(url));
        snprintf(metrics, sizeof(metrics), "%s/metrics", url);
    }
    return json_pack("{s:s, s:o, s:s, s:s?, s:s?}", "name", svc->name, "pid",
                     p->pid > 0 ? json_integer(p->pid) : json_null(), "state",
                     cli_state_name(p->state), "endpoint", has_url ? url : NULL, "metrics_url",
                     has_url ? metrics : NULL);
}

int cli_cmd_status(const Cli *c)
{
    json_t *arr = c->json ? json_array() : NULL;
    char url[300], pid[24];
    CliProbe p;
    char *out;

    if (c->json && !arr)
        return 1;
    if (!c->json)
        printf("%-8s %-10s %-8s %s\n", "NAME", "STATE", "PID", "ENDPOINT");
    for (size_t i = 0; i < cli_services_n; i++) {
        const CliService *svc = &cli_services[i];
        if (cli_probe(c, svc, &p) < 0)
            p = (CliProbe){.state = CLI_STOPPED, .pid = 0, .host = "127.0.0.1", .port = -1};
        if (c->json) {
            if (json_array_append_new(arr, status_json(svc, &p)) < 0) {
                json_decref(arr);
                return 1;
            }
            continue;
        }
        snprintf(pid, sizeof(pid), "%ld", (long)p.pid);
        if (p.state != CLI_STOPPED && p.port > 0)
            cli_url(p.host, p.port, url, sizeof(url));
        else
            snprintf(url, sizeof(url), "-");
        printf("%-8s %-10s %-8s %s\n", svc->name, cli_state_name(p.state), p.pid ? pid : "-", url);
    }
    if (c->json) {
        out = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(arr);
        if (!out)
            return 1;
        printf("%s\n", out);
        free(out);
    }
    return 0;
}

static int export_line(SovBuf *b, const char *name, const char *value)
{
    int r = sov_buf_printf(b, "export %s=", name);

    if (r >= 0)
        r = cli_shell_quote(b, value);
    return r < 0 ? r : sov_buf_putc(b, '\n');
}

int cli_cmd_env(const Cli *c)
{
    char auth_url[128], s3_url[128], block_url[128], nbd_sock[PATH_MAX];
    SovBuf b = SOV_BUF_INIT;
    CliCreds cr;
    int r;

    r = cli_dirs_create(c);
    if (r >= 0)
        r = cli_creds_ensure(c, &cr);
    if (r < 0) {
        fprintf(stderr, "sov: cannot read or create %s/credentials.ini: %s\n", c->data_dir,
                strerror(-r));
        return 1;
    }
    /* Each daemon's config says where it listens; the reserved defaults stand in for daemons
     * that do not exist yet (api). */
    snprintf(auth_url, sizeof(auth_url), "http://127.0.0.1:%d/identity/v3",
             cli_config_port(c, CLI_API_NAME, CLI_API_DEFAULT_PORT));
    snprintf(s3_url, sizeof(s3_url), "http://127.0.0.1:%d",
             cli_config_port(c, CLI_S3_NAME, CLI_S3_DEFAULT_PORT));
    snprintf(block_url, sizeof(block_url), "http://127.0.0.1:%d",
             cli_config_port(c, CLI_BLOCK_NAME, CLI_BLOCK_DEFAULT_PORT));
    if (cli_path(c, nbd_sock, sizeof(nbd_sock), "block/nbd.sock") < 0)
        nbd_sock[0] = '\0';
    const char *const vars[][2] = {
        {"OS_AUTH_URL", auth_url},
        {"OS_USERNAME", cr.username},
        {"OS_PASSWORD", cr.password},
        {"OS_PROJECT_NAME", "admin"},
        {"OS_USER_DOMAIN_NAME", "Default"},
        {"OS_PROJECT_DOMAIN_NAME", "Default"},
        {"OS_REGION_NAME", cr.region},
        {"OS_IDENTITY_API_VERSION", "3"},
        {"AWS_ACCESS_KEY_ID", cr.access_key_id},
        {"AWS_SECRET_ACCESS_KEY", cr.secret_access_key},
        {"AWS_DEFAULT_REGION", cr.region},
        {"SOV_S3_ENDPOINT", s3_url},
        {"AWS_ENDPOINT_URL", s3_url},
        {"SOV_BLOCK_API", block_url},
        {"SOV_NBD_SOCKET", nbd_sock},
        {"SOV_DATA_DIR", c->data_dir},
    };
    r = sov_buf_puts(&b, "# sovcloud endpoints and credentials; use: eval \"$(sov env)\"\n");
    for (size_t i = 0; r >= 0 && i < ELEMENTSOF(vars); i++)
        r = export_line(&b, vars[i][0], vars[i][1]);
    if (r >= 0)
        fputs(b.ptr, stdout);
    if (b.ptr)
        explicit_bzero(b.ptr, b.len);
    explicit_bzero(&cr, sizeof(cr));
    sov_buf_release(&b);
    return r < 0 ? 1 : 0;
}
