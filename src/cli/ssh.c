/* SPDX-License-Identifier: Apache-2.0 */
/* `sov ssh [-i KEYFILE] SERVER [COMMAND...]`: logs in to sov-api (Keystone password auth, with
 * the OS_* variables when set, else the admin of the data directory's cloud), finds the server
 * by id or exact name, reads the SSH address its details carry ("sov:ssh": "host:port") and
 * replaces itself with the system's ssh client, so that the exit status is ssh's. A remote
 * command of several words reaches the guest as the same words (each is quoted for the remote
 * shell); a single word is handed to the remote shell as is, as with ssh. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sov/http.h"
#include "sov/json.h"

#define SSH_HTTP_TIMEOUT_MS (15 * 1000)
#define SSH_HTTP_MAX_BODY   (8u * 1024 * 1024) /* a catalog or a page of server details */
#define SSH_TOKEN_MAX       1024
#define SSH_NAME_MAX        255 /* Nova's limit on server names */

/* An http:// URL split up. Invariant: host is non-empty, 0 < port < 65536, path starts with
 * '/' or is empty, and none of them holds a trailing slash. */
typedef struct SshUrl {
    char host[256];
    int port;
    char path[512];
} SshUrl;

/* Where to log in and as whom. */
typedef struct SshAuth {
    SshUrl auth;
    char username[256], password[256], project[256], user_domain[256], project_domain[256];
    char region[64];
} SshAuth;

/* An authenticated session: the token and the compute endpoint from the catalog. */
typedef struct SshSession {
    char token[SSH_TOKEN_MAX];
    SshUrl compute;
} SshSession;

static int url_parse(const char *s, SshUrl *ret)
{
    SshUrl u = {.port = 80};
    const char *p = s, *host_end, *path;
    size_t n;

    if (strncmp(p, "https://", 8) == 0)
        return -EPROTONOSUPPORT;
    if (strncmp(p, "http://", 7) != 0)
        return -EINVAL;
    p += 7;
    path = p + strcspn(p, "/?#");
    if (*p == '[') { /* [v6]:port */
        host_end = memchr(p, ']', (size_t)(path - p));
        if (!host_end)
            return -EINVAL;
        n = (size_t)(host_end - p - 1);
        if (n == 0 || n >= sizeof(u.host))
            return -EINVAL;
        memcpy(u.host, p + 1, n);
        host_end++;
    } else {
        host_end = memchr(p, ':', (size_t)(path - p));
        if (!host_end)
            host_end = path;
        n = (size_t)(host_end - p);
        if (n == 0 || n >= sizeof(u.host))
            return -EINVAL;
        memcpy(u.host, p, n);
    }
    if (host_end < path) {
        uint64_t v;
        if (*host_end != ':' ||
            sov_str_to_u64((SovStr){host_end + 1, (size_t)(path - host_end - 1)}, &v) < 0 ||
            v == 0 || v > 65535)
            return -EINVAL;
        u.port = (int)v;
    }
    n = strcspn(path, "?#");
    while (n > 0 && path[n - 1] == '/')
        n--;
    if (n >= sizeof(u.path))
        return -ENAMETOOLONG;
    memcpy(u.path, path, n);
    *ret = u;
    return 0;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static int url_escape(SovBuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int r = 0;

    for (; r >= 0 && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~')
            r = sov_buf_putc(b, (char)ch);
        else
            r = sov_buf_printf(b, "%%%c%c", hex[ch >> 4], hex[ch & 15]);
    }
    return r;
}

/* ---- one blocking request ---- */

typedef struct SshFetch {
    int status;
    int err;
    SovBuf *body;
    char *token; /* X-Subject-Token goes here when not NULL (SSH_TOKEN_MAX bytes) */
} SshFetch;

static void fetch_headers(SovHttpClientReq *r, int status, void *ud)
{
    SshFetch *f = ud;
    SovStr t;

    f->status = status;
    if (!f->token)
        return;
    t = sov_http_client_resp_header(r, "X-Subject-Token");
    if (t.ptr && t.len > 0 && t.len < SSH_TOKEN_MAX) {
        memcpy(f->token, t.ptr, t.len);
        f->token[t.len] = '\0';
    }
}

static int fetch_body(SovHttpClientReq *r, const char *p, size_t n, void *ud)
{
    return sov_buf_append(((SshFetch *)ud)->body, p, n);
}

static void fetch_done(SovHttpClientReq *r, int err, void *ud)
{
    ((SshFetch *)ud)->err = err;
}

/* One request with JSON in and out; the body is bounded by SSH_HTTP_MAX_BODY and the whole
 * exchange by SSH_HTTP_TIMEOUT_MS. */
static int ssh_http(const SshUrl *u, const char *method, const char *target, const char *token,
                    const char *body, char *ret_token, int *ret_status, json_t **ret_doc)
{
    static const SovHttpClientCallbacks cbs = {fetch_headers, fetch_body, fetch_done};
    char auth[SSH_TOKEN_MAX + 32];
    const char *headers[4] = {"Accept: application/json", NULL, NULL, NULL};
    SovBuf buf;
    SshFetch f = {.body = &buf, .token = ret_token};
    uv_loop_t loop;
    size_t nh = 1;
    json_error_t jerr;
    int r;

    if (body)
        headers[nh++] = "Content-Type: application/json";
    if (token) {
        snprintf(auth, sizeof(auth), "X-Auth-Token: %s", token);
        headers[nh++] = auth;
    }
    sov_buf_init(&buf, SSH_HTTP_MAX_BODY);
    r = uv_loop_init(&loop);
    if (r < 0)
        return r;
    r = sov_http_client_request(&loop, u->host, u->port, method, target, headers, sov_str(body),
                                SSH_HTTP_TIMEOUT_MS, &cbs, &f);
    if (r >= 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    explicit_bzero(auth, sizeof(auth));
    if (r >= 0 && f.err < 0)
        r = f.err;
    if (r >= 0) {
        *ret_status = f.status;
        *ret_doc = buf.len ? json_loadb(buf.ptr, buf.len, 0, &jerr) : NULL;
    }
    sov_buf_release(&buf);
    return r < 0 ? r : 0;
}

/* ---- credentials and login ---- */

static void env_copy(char *out, size_t n, const char *name, const char *def)
{
    const char *v = getenv(name);

    snprintf(out, n, "%s", v && *v ? v : def);
}

static int auth_from_env_or_cloud(const Cli *c, SshAuth *ret)
{
    const char *url = getenv("OS_AUTH_URL");
    char cfg[PATH_MAX], buf[300];
    CliCreds cr;
    int r;

    if (url && *url) {
        r = url_parse(url, &ret->auth);
        if (r < 0) {
            fprintf(stderr, "sov ssh: OS_AUTH_URL %s: %s\n", url,
                    r == -EPROTONOSUPPORT ? "only http:// is supported" : "not an http:// URL");
            return r;
        }
        env_copy(ret->username, sizeof(ret->username), "OS_USERNAME", "");
        env_copy(ret->password, sizeof(ret->password), "OS_PASSWORD", "");
        env_copy(ret->project, sizeof(ret->project), "OS_PROJECT_NAME", "");
        env_copy(ret->user_domain, sizeof(ret->user_domain), "OS_USER_DOMAIN_NAME", "Default");
        env_copy(ret->project_domain, sizeof(ret->project_domain), "OS_PROJECT_DOMAIN_NAME",
                 "Default");
        env_copy(ret->region, sizeof(ret->region), "OS_REGION_NAME", "");
        if (!ret->username[0] || !ret->password[0] || !ret->project[0]) {
            fprintf(stderr, "sov ssh: OS_AUTH_URL is set but OS_USERNAME, OS_PASSWORD or "
                            "OS_PROJECT_NAME is not\n");
            return -EINVAL;
        }
        return 0;
    }
    /* The admin of the cloud in the data directory, as `sov env` would export it; nothing is
     * created here: without credentials.ini there is no cloud to log in to. */
    if (cli_path(c, cfg, sizeof(cfg), "credentials.ini") < 0 || access(cfg, R_OK) < 0) {
        fprintf(stderr,
                "sov ssh: no cloud in %s (no credentials.ini); run `sov up` or set OS_AUTH_URL "
                "and the other OS_* variables\n",
                c->data_dir);
        return -ENOENT;
    }
    r = cli_creds_ensure(c, &cr);
    if (r < 0) {
        fprintf(stderr, "sov ssh: cannot read %s: %s\n", cfg, strerror(-r));
        return r;
    }
    snprintf(buf, sizeof(buf), "http://127.0.0.1:%d/identity/v3",
             cli_config_port(c, CLI_API_NAME, CLI_API_DEFAULT_PORT));
    r = url_parse(buf, &ret->auth);
    snprintf(ret->username, sizeof(ret->username), "%s", cr.username);
    snprintf(ret->password, sizeof(ret->password), "%s", cr.password);
    snprintf(ret->project, sizeof(ret->project), "admin");
    snprintf(ret->user_domain, sizeof(ret->user_domain), "Default");
    snprintf(ret->project_domain, sizeof(ret->project_domain), "Default");
    snprintf(ret->region, sizeof(ret->region), "%s", cr.region);
    explicit_bzero(&cr, sizeof(cr));
    return r;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The public compute endpoint of the catalog (in region when one is given, else the first). */
static int catalog_compute(json_t *catalog, const char *region, SshUrl *ret)
{
    json_t *svc, *ep;
    size_t i, j;

    json_array_foreach(catalog, i, svc)
    {
        const char *type = jstr(svc, "type");
        if (!type || strcmp(type, "compute") != 0)
            continue;
        json_array_foreach(json_object_get(svc, "endpoints"), j, ep)
        {
            const char *iface = jstr(ep, "interface"), *reg = jstr(ep, "region_id");
            const char *url = jstr(ep, "url");
            if (!reg)
                reg = jstr(ep, "region");
            if (!url || (iface && strcmp(iface, "public") != 0) ||
                (region && *region && reg && strcmp(reg, region) != 0))
                continue;
            return url_parse(url, ret);
        }
    }
    return -ENOENT;
}

static int login(const SshAuth *a, SshSession *ret)
{
    char target[600];
    json_t *req, *doc = NULL;
    char *body;
    int status = 0, r;

    req = json_pack("{s:{s:{s:[s],s:{s:{s:s,s:{s:s},s:s}}},s:{s:{s:s,s:{s:s}}}}}", "auth",
                    "identity", "methods", "password", "password", "user", "name", a->username,
                    "domain", "name", a->user_domain, "password", a->password, "scope", "project",
                    "name", a->project, "domain", "name", a->project_domain);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return -ENOMEM;
    /* OS_AUTH_URL names the Keystone root, with or without its /v3. */
    snprintf(target, sizeof(target), "%s%s/auth/tokens", a->auth.path,
             strlen(a->auth.path) >= 3 &&
                     strcmp(a->auth.path + strlen(a->auth.path) - 3, "/v3") == 0
                 ? ""
                 : "/v3");
    ret->token[0] = '\0';
    r = ssh_http(&a->auth, "POST", target, NULL, body, ret->token, &status, &doc);
    explicit_bzero(body, strlen(body));
    free(body);
    if (r < 0) {
        fprintf(stderr, "sov ssh: cannot reach sov-api at %s:%d: %s\n", a->auth.host, a->auth.port,
                strerror(-r));
        goto out;
    }
    if (status != 201 || !ret->token[0]) {
        fprintf(stderr, "sov ssh: login as %s to project %s failed (HTTP %d)\n", a->username,
                a->project, status);
        r = -EACCES;
        goto out;
    }
    r = catalog_compute(json_object_get(json_object_get(doc, "token"), "catalog"), a->region,
                        &ret->compute);
    if (r < 0) {
        /* No usable catalog entry: sov-api serves Nova under /compute/v2.1 of its own origin. */
        ret->compute = a->auth;
        snprintf(ret->compute.path, sizeof(ret->compute.path), "/compute/v2.1");
        r = 0;
    }
out:
    json_decref(doc);
    return r;
}

/* ---- finding the server ---- */

/* The Nova name filter is a POSIX extended regular expression and sov-api refuses
 * backslashes, so every character that is not plainly literal becomes '.': the answer is a
 * superset that the caller narrows down to exact matches. */
static int name_regex(SovBuf *b, const char *name)
{
    int r = sov_buf_putc(b, '^');

    for (; r >= 0 && *name; name++)
        r = sov_buf_putc(b, strchr(".[]()*+?{}|^$\\", *name) ? '.' : *name);
    return r < 0 ? r : sov_buf_putc(b, '$');
}

/* 0 with the server's details, -ENOENT (message printed) or another error (printed). */
static int server_find(const SshSession *s, const char *server, json_t **ret)
{
    SovBuf target = SOV_BUF_INIT, re = SOV_BUF_INIT;
    json_t *doc = NULL, *v, *found = NULL;
    size_t i, matches = 0;
    int status = 0, r;

    r = sov_buf_printf(&target, "%s/servers/", s->compute.path);
    if (r >= 0)
        r = url_escape(&target, server);
    if (r >= 0)
        r = ssh_http(&s->compute, "GET", target.ptr, s->token, NULL, NULL, &status, &doc);
    if (r < 0)
        goto fail;
    if (status == 200 && json_is_object(json_object_get(doc, "server"))) {
        *ret = json_incref(json_object_get(doc, "server"));
        goto out;
    }
    if (status != 404) {
        r = -EIO;
        goto fail;
    }
    json_decref(doc);
    doc = NULL;
    sov_buf_reset(&target);
    r = name_regex(&re, server);
    if (r >= 0)
        r = sov_buf_printf(&target, "%s/servers/detail?name=", s->compute.path);
    if (r >= 0)
        r = url_escape(&target, re.ptr);
    if (r >= 0)
        r = ssh_http(&s->compute, "GET", target.ptr, s->token, NULL, NULL, &status, &doc);
    if (r < 0)
        goto fail;
    if (status != 200 || !json_is_array(json_object_get(doc, "servers"))) {
        r = -EIO;
        goto fail;
    }
    json_array_foreach(json_object_get(doc, "servers"), i, v)
    {
        const char *name = jstr(v, "name");
        if (!name || strcmp(name, server) != 0)
            continue;
        matches++;
        found = v;
    }
    if (matches == 0) {
        fprintf(stderr, "sov ssh: no server named %s\n", server);
        r = -ENOENT;
    } else if (matches > 1) {
        fprintf(stderr, "sov ssh: %zu servers are named %s; use the id\n", matches, server);
        r = -ENOENT;
    } else {
        *ret = json_incref(found);
    }
    goto out;
fail:
    if (r == -EIO)
        fprintf(stderr, "sov ssh: looking up server %s failed (HTTP %d)\n", server, status);
    else
        fprintf(stderr, "sov ssh: looking up server %s failed: %s\n", server, strerror(-r));
out:
    json_decref(doc);
    sov_buf_release(&target);
    sov_buf_release(&re);
    return r;
}

/* Splits "host:port" (the host possibly in brackets) as sov-api writes it. */
static int ssh_addr_parse(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t n;
    uint64_t v;

    if (!colon || sov_str_to_u64(sov_str(colon + 1), &v) < 0 || v == 0 || v > 65535)
        return -EINVAL;
    n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen || memchr(h, '@', n) || h[0] == '-')
        return -EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, portlen, "%u", (unsigned)v);
    return 0;
}

int cli_cmd_ssh(const Cli *c)
{
    const char *server = c->nargs > 0 ? c->args[0] : NULL;
    char host[256], port[8], dest[300];
    const char *argv[32];
    SovBuf cmd = SOV_BUF_INIT;
    SshAuth a = {.region = ""};
    SshSession s;
    json_t *doc = NULL;
    const char *addr;
    size_t n = 0;
    int r;

    if (!server || !*server || strlen(server) > SSH_NAME_MAX) {
        fputs("usage: sov ssh [-i KEYFILE] [--data-dir DIR] SERVER [COMMAND...]\n", stderr);
        return 2;
    }
    r = auth_from_env_or_cloud(c, &a);
    if (r >= 0)
        r = login(&a, &s);
    explicit_bzero(a.password, sizeof(a.password));
    if (r < 0)
        return 1;
    r = server_find(&s, server, &doc);
    explicit_bzero(s.token, sizeof(s.token));
    if (r < 0)
        return 1;
    addr = jstr(doc, "sov:ssh");
    if (!addr) {
        fprintf(stderr, "sov ssh: server %s has no SSH address yet (status %s)\n", server,
                jstr(doc, "status") ? jstr(doc, "status") : "unknown");
        json_decref(doc);
        return 1;
    }
    r = ssh_addr_parse(addr, host, sizeof(host), port, sizeof(port));
    if (r < 0) {
        fprintf(stderr, "sov ssh: server %s has a malformed SSH address \"%.300s\"\n", server,
                addr);
        json_decref(doc);
        return 1;
    }
    json_decref(doc);
    snprintf(dest, sizeof(dest), "root@%s", host);
    argv[n++] = "ssh";
    argv[n++] = "-p";
    argv[n++] = port;
    if (c->ssh_key) {
        argv[n++] = "-i";
        argv[n++] = c->ssh_key;
    }
    /* The guest's host key is new on every boot and the address is a forwarded loopback
     * port that another guest may have had before: there is nothing to pin. */
    static const char *const opts[] = {"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                                       "LogLevel=ERROR", "BatchMode=yes", "ConnectTimeout=10"};
    for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
        argv[n++] = "-o";
        argv[n++] = opts[i];
    }
    argv[n++] = "--";
    argv[n++] = dest;
    /* ssh joins the command's words with spaces for the remote shell, which then splits them
     * again its own way. One word stays as is (`sov ssh vm 'ls | wc -l'`); several words are
     * each quoted, so that they arrive as the same argv (`sov ssh vm sh -c 'exit 7'`). */
    if (c->nargs == 2)
        argv[n++] = c->args[1];
    for (int i = 1; c->nargs > 2 && r >= 0 && i < c->nargs; i++) {
        if (i > 1)
            r = sov_buf_putc(&cmd, ' ');
        if (r >= 0)
            r = cli_shell_quote(&cmd, c->args[i]);
    }
    if (r < 0) {
        fprintf(stderr, "sov ssh: %s\n", strerror(-r));
        sov_buf_release(&cmd);
        return 1;
    }
    if (c->nargs > 2)
        argv[n++] = cmd.ptr;
    argv[n] = NULL;
    fflush(NULL);
    execvp("ssh", (char *const *)argv);
    fprintf(stderr, "sov ssh: cannot run ssh: %s\n", strerror(errno));
    sov_buf_release(&cmd);
    return 1;
}
