/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for sov-net's DHCP module, the last check between Neutron documents and the
 * files dnsmasq reads, and the reader of dnsmasq's lease file (where a DHCP client's own host
 * name lands). Input: a JSON document {"subnet", "ports", "server_ip", "dns_upstream",
 * "dns_domain", "leases"} (any shape). dhcp_render() must fail with a reason, or write a config
 * whose every line is a comment or one of the options sov-net writes, a hosts file of
 * "mac,ip[,fqdn]" lines and a names file of "ip fqdn label" lines, all printable ASCII (so no
 * input can add a line or an option). Each line of "leases" goes through lease_line(), which
 * must yield a canonical MAC, a dotted-quad address and an empty or hex client id. dhcp.c is
 * included for lease_line, a static, as the unit test does; dhcpconf.c is linked. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dhcp.c"
#include "sov/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const conf_keys[] = {"interface",
                                        "except-interface",
                                        "bind-interfaces",
                                        "no-resolv",
                                        "no-hosts",
                                        "dhcp-ignore-names",
                                        "domain-needed",
                                        "bogus-priv",
                                        "cache-size",
                                        "domain",
                                        "local",
                                        "addn-hosts",
                                        "server",
                                        "dhcp-authoritative",
                                        "dhcp-ignore",
                                        "dhcp-lease-max",
                                        "dhcp-range",
                                        "dhcp-hostsfile",
                                        "dhcp-leasefile",
                                        "pid-file",
                                        "log-facility",
                                        "dhcp-option",
                                        "user",
                                        NULL};

/* Printable ASCII lines, each ended by '\n'. */
static bool lines_clean(const SovBuf *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->ptr[i] != '\n' && (b->ptr[i] < 0x20 || b->ptr[i] > 0x7e))
            return false;
    return b->len == 0 || b->ptr[b->len - 1] == '\n';
}

/* "hh:hh:...:hh", lowercase */
static bool is_hexcolon(const char *s, size_t n)
{
    if (n < 2 || n % 3 != 2)
        return false;
    for (size_t i = 0; i < n; i++)
        if (i % 3 == 2 ? s[i] != ':'
                       : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool is_mac(const char *s, size_t n)
{
    return n == 17 && is_hexcolon(s, n);
}

static bool is_ip4(const char *s, size_t n)
{
    char tmp[16];
    struct in_addr a;
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET, tmp, &a) == 1;
}

static bool is_name(const char *s, size_t n)
{
    if (n == 0 || n > DHCP_FQDN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static void check_conf(const SovBuf *conf)
{
    if (!conf->ptr || !lines_clean(conf))
        abort();
    for (const char *l = conf->ptr; *l;) {
        const char *end = strchr(l, '\n');
        size_t klen = strcspn(l, "=\n");
        bool ok = *l == '#';
        for (size_t k = 0; !ok && conf_keys[k]; k++)
            ok = strlen(conf_keys[k]) == klen && strncmp(l, conf_keys[k], klen) == 0;
        if (!ok)
            abort();
        l = end + 1;
    }
}

/* Each line of b, cut at sep into at most three fields (the last one keeps any further sep),
 * must please ok. */
typedef bool LineFn(const char *const f[3], const size_t n[3], int count);
static void check_lines(const SovBuf *b, char sep, LineFn *ok)
{
    if (!lines_clean(b))
        abort();
    for (const char *l = b->ptr; l && *l;) {
        const char *end = strchr(l, '\n'), *f[3] = {l, NULL, NULL};
        size_t n[3] = {0};
        int count = 1;
        for (const char *p = l; p < end; p++)
            if (*p == sep && count < 3) {
                n[count - 1] = (size_t)(p - f[count - 1]);
                f[count++] = p + 1;
            }
        n[count - 1] = (size_t)(end - f[count - 1]);
        if (!ok(f, n, count))
            abort();
        l = end + 1;
    }
}

/* hosts: mac,ip[,fqdn] */
static bool hosts_line(const char *const f[3], const size_t n[3], int count)
{
    return count >= 2 && is_mac(f[0], n[0]) && is_ip4(f[1], n[1]) &&
           (count == 2 || (is_name(f[2], n[2]) && memchr(f[2], '.', n[2])));
}

/* names: ip fqdn label */
static bool names_line(const char *const f[3], const size_t n[3], int count)
{
    return count == 3 && is_ip4(f[0], n[0]) && is_name(f[1], n[1]) && is_name(f[2], n[2]);
}

static void check_leases(const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return;
    char *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        Release r;
        char line[1024];
        if (strlen(l) >= sizeof(line))
            continue;
        snprintf(line, sizeof(line), "%s", l);
        memset(&r, 0x5a, sizeof(r));
        if (!lease_line(line, &r))
            continue;
        size_t n = strnlen(r.clid, sizeof(r.clid));
        if (!is_mac(r.mac, strnlen(r.mac, sizeof(r.mac))) ||
            !is_ip4(r.ip, strnlen(r.ip, sizeof(r.ip))) || n >= sizeof(r.clid) ||
            (n && !is_hexcolon(r.clid, n)))
            abort();
        (void)hosts_has("fa:16:3e:00:00:01,10.0.0.2,a.b\n", r.mac, r.ip);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SovBuf conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, names = SOV_BUF_INIT, err = SOV_BUF_INIT;
    json_t *doc = NULL;
    if (size > 65536)
        return 0;
    if (sov_json_parse_object((SovStr){(const char *)data, size}, 65536, &doc, &err) < 0) {
        sov_buf_release(&err);
        return 0;
    }
    sov_buf_reset(&err);
    const char *sip = json_string_value(json_object_get(doc, "server_ip"));
    DhcpOpts o = {.dns_upstream = json_string_value(json_object_get(doc, "dns_upstream")),
                  .dns_domain = json_string_value(json_object_get(doc, "dns_domain"))};
    int r = dhcp_render("/run/sov-net/f/dhcp/s", "dh0123456789ab", sip ? sip : "",
                        json_object_get(doc, "subnet"), json_object_get(doc, "ports"), &o, &conf,
                        &hosts, &names, &err);
    if (r < 0 && err.len == 0)
        abort();
    if (r == 0) {
        check_conf(&conf);
        check_lines(&hosts, ',', hosts_line);
        check_lines(&names, ' ', names_line);
    }
    const char *leases = json_string_value(json_object_get(doc, "leases"));
    if (leases)
        check_leases(leases);
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&names);
    sov_buf_release(&err);
    json_decref(doc);
    return 0;
}
