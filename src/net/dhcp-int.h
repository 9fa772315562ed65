/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's DHCP module (dhcp.h), inside: the limits and the checks and parsers that
 * dhcpconf.c (the dnsmasq files) and dhcp.c (the dnsmasq processes and their lease files)
 * share. */
#ifndef SOV_NET_DHCP_INT_H
#define SOV_NET_DHCP_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov/buf.h"
#include "sov/daemon.h"
#include "sov/macro.h"

#define DHCP_ID_MAX    64u
#define DHCP_NAME_MAX  64u
#define DHCP_LABEL_MAX SOV_DNS_LABEL_MAX /* DNS names: sov_dns_name_norm */
#define DHCP_FQDN_MAX  SOV_DNS_NAME_MAX
#define DHCP_CLID_MAX  (255u * 3u) /* a client id as dnsmasq's lease file writes it */

/* Replaces err's text (err may be NULL). */
void dhcp_seterr(SovBuf *err, const char *fmt, ...) _printf_(2, 3);
/* A name that may become a path component, an interface, a namespace or a user name: 1..max
 * letters, digits, '-', '_' or '.', not starting with '-', not "." or "..". */
bool dhcp_plain_name(const char *s, size_t max);
/* A directory dnsmasq reads its paths from: absolute, printable, and none of the characters
 * that dnsmasq's option parser treats specially (comma, quote, comment, escape). */
bool dhcp_safe_path(const char *s);
/* A dotted quad into *ret (host order); 0 or -EINVAL. */
int dhcp_parse_ip4(const char *s, uint32_t *ret);
/* a (host order) as a dotted quad. */
void dhcp_ip4_str(uint32_t a, char out[16]);
/* xx:xx:xx:xx:xx:xx, unicast and not all zero; written lower case into out. 0 or -EINVAL. */
int dhcp_parse_mac(const char *s, char out[18]);
/* The string member k of o, NULL when absent or not a string. */
const char *dhcp_jstr(json_t *o, const char *k);
/* "ip,ip": at most DHCP_DNS_MAX IPv4 addresses, each written normalised into out (if not
 * NULL) as a server= line. "" is no resolver. */
bool dhcp_upstream_ok(const char *s, SovBuf *out);

#endif
