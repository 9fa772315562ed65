/* SPDX-License-Identifier: Apache-2.0 */
/* `sov s3 heal` and `sov s3 rotate-key`: operator requests to the data directory's sov-s3 over
 * its HTTP port, authorised by the token sov-s3 keeps in its data dir (DATA_DIR/s3/admin.token,
 * readable by the operator only). heal verifies every erasure-coded shard and rewrites the
 * damaged ones; rotate-key makes a new current master key for server-side encryption. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sov/http.h"

#define ADMIN_TIMEOUT_MS (30u * 60u * 1000u) /* a heal reads every shard of the store */

int cli_cmd_s3(const Cli *c)
{
    const char *what = c->nargs == 1 ? c->args[0] : "";
    const char *target = strcmp(what, "heal") == 0         ? "/_sov/heal"
                         : strcmp(what, "rotate-key") == 0 ? "/_sov/rotate-key"
                                                           : NULL;
    char path[PATH_MAX], hdr[128];
    SovBuf tok = SOV_BUF_INIT, body = SOV_BUF_INIT;
    const CliService *svc = NULL;
    CliProbe p;
    int status = 0, r;

    if (!target) {
        fprintf(stderr, "usage: sov s3 heal|rotate-key [--data-dir DIR]\n");
        return 2;
    }
    for (size_t i = 0; i < cli_services_n; i++)
        if (strcmp(cli_services[i].name, CLI_S3_NAME) == 0)
            svc = &cli_services[i];
    if (!svc || cli_probe(c, svc, &p) < 0 || p.state != CLI_RUNNING || p.port < 0) {
        fprintf(stderr, "sov: sov-s3 of %s is not running (sov up)\n", c->data_dir);
        return 1;
    }
    if ((r = cli_path(c, path, sizeof(path), "%s/admin.token", CLI_S3_NAME)) < 0 ||
        (r = cli_file_read(path, 128, &tok)) < 0) {
        fprintf(stderr, "sov: cannot read sov-s3's admin token %s: %s\n", path, strerror(-r));
        sov_buf_release(&tok);
        return 1;
    }
    while (tok.len && (tok.ptr[tok.len - 1] == '\n' || tok.ptr[tok.len - 1] == ' '))
        tok.ptr[--tok.len] = '\0';
    snprintf(hdr, sizeof(hdr), "X-Sov-Admin-Token: %s", tok.ptr ? tok.ptr : "");
    const char *headers[] = {hdr, NULL};
    sov_buf_init(&body, 64 * 1024);
    r = sov_http_fetch_headers(p.host, p.port, "POST", target, headers, SOV_STR(""),
                               ADMIN_TIMEOUT_MS, &status, &body);
    explicit_bzero(hdr, sizeof(hdr));
    if (tok.ptr)
        explicit_bzero(tok.ptr, tok.len);
    sov_buf_release(&tok);
    if (r < 0) {
        fprintf(stderr, "sov: %s:%d%s: %s\n", p.host, p.port, target, strerror(-r));
        sov_buf_release(&body);
        return 1;
    }
    fwrite(body.ptr ? body.ptr : "", 1, body.len, status == 200 ? stdout : stderr);
    if (body.len && body.ptr[body.len - 1] != '\n')
        fputc('\n', status == 200 ? stdout : stderr);
    /* heal: data that could not be rebuilt is a failure the operator must see in $? */
    bool lost =
        status == 200 && body.ptr && !strstr(body.ptr, "\"lost\": 0") && strcmp(what, "heal") == 0;
    sov_buf_release(&body);
    return status == 200 && !lost ? 0 : 1;
}
