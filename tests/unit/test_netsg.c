/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net security group compiler (src/net/sg.c): the script's key lines for small inputs,
 * refusal of hostile input (never a crash, always a reason), overlap handling of set
 * elements, allowed address pairs, and that 10,000 rules become set elements behind a few
 * rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sg.h"

#define G1 "0d0d0d0d-0000-4000-8000-000000000001"
#define G2 "55555555-0000-4000-8000-000000000002"

static const char *groups_json = "[{\"id\":\"" G1 "\",\"project_id\":\"p\"},{\"id\":\"" G2 "\"}]";

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v)
        fail_msg("bad test json: %s: %s", e.text, s);
    return v;
}

static json_t *port_doc(const char *id, const char *mac, const char *ip, const char *group,
                        const char *dev)
{
    json_t *p = json_pack("{s:s, s:s, s:[{s:s, s:s}], s:[s], s:s}", "id", id, "mac_address", mac,
                          "fixed_ips", "subnet_id", "5b0b", "ip_address", ip, "security_groups",
                          group, "device_owner", "compute:nova");
    if (dev) {
        json_object_set_new(p, "_dev", json_string(dev));
        json_object_set_new(p, "_bridge", json_string(dev[2] == 'b' ? "brq-b" : "brq-a"));
    }
    return p;
}

static json_t *rule_doc(const char *id, const char *group, const char *dir, const char *proto,
                        int pmin, int pmax, const char *prefix, const char *remote)
{
    json_t *r = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "security_group_id", group, "direction",
                          dir, "ethertype", "IPv4");
    json_object_set_new(r, "protocol", proto ? json_string(proto) : json_null());
    json_object_set_new(r, "port_range_min", pmin >= 0 ? json_integer(pmin) : json_null());
    json_object_set_new(r, "port_range_max", pmax >= 0 ? json_integer(pmax) : json_null());
    json_object_set_new(r, "remote_ip_prefix", prefix ? json_string(prefix) : json_null());
    json_object_set_new(r, "remote_group_id", remote ? json_string(remote) : json_null());
    return r;
}

/* A host with ports a (G1+G2, local), b (G1, local), c (G1, another host), d (G1, local but
 * port security off) and r (router port, local). */
static json_t *base_ports(void)
{
    json_t *ports = json_array();
    json_t *a = port_doc("aa01", "02:00:00:00:00:01", "10.9.0.1", G1, "vpa1");
    json_array_append_new(json_object_get(a, "security_groups"), json_string(G2));
    json_array_append_new(ports, a);
    json_array_append_new(ports, port_doc("bb02", "02:00:00:00:00:02", "10.9.0.2", G1, "vpb2"));
    json_array_append_new(ports, port_doc("cc03", "02:00:00:00:00:03", "10.9.0.77", G1, NULL));
    json_t *d = port_doc("dd04", "02:00:00:00:00:04", "10.9.0.4", G1, "vpd4");
    json_object_set_new(d, "port_security_enabled", json_false());
    json_array_append_new(ports, d);
    json_t *r = port_doc("ee05", "02:00:00:00:00:05", "10.9.0.254", G1, "vpr5");
    json_object_set_new(r, "device_owner", json_string("network:router_interface"));
    json_array_append_new(ports, r);
    return ports;
}

static json_t *base_rules(void)
{
    json_t *rules = json_array();
    json_array_append_new(rules, rule_doc("f001", G1, "ingress", NULL, -1, -1, NULL, G1));
    json_array_append_new(rules, rule_doc("f002", G1, "egress", NULL, -1, -1, NULL, NULL));
    json_array_append_new(rules,
                          rule_doc("f003", G2, "ingress", "tcp", 22, 22, "10.9.0.3/32", NULL));
    json_array_append_new(rules, rule_doc("f004", G2, "ingress", "icmp", 8, 0, "10.1.2.3/8", NULL));
    json_array_append_new(rules, rule_doc("f005", G2, "ingress", "icmp", 3, -1, NULL, NULL));
    return rules;
}

static int compile(json_t *ports, json_t *rules, SovBuf *out, SovBuf *err)
{
    json_t *groups = load(groups_json);
    int r = sg_compile(ports, groups, rules, out, err);
    json_decref(groups);
    return r;
}

static void assert_has(const SovBuf *b, const char *needle)
{
    if (!b->ptr || !strstr(b->ptr, needle))
        fail_msg("missing \"%s\" in:\n%s", needle, b->ptr ? b->ptr : "(empty)");
}

static void assert_lacks(const SovBuf *b, const char *needle)
{
    if (b->ptr && strstr(b->ptr, needle))
        fail_msg("unexpected \"%s\" in:\n%s", needle, b->ptr);
}

static void test_basic_script(void **state)
{
    json_t *ports = base_ports(), *rules = base_rules();
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    /* Atomic replacement of both tables. */
    assert_has(&out, "add table inet sov_sg\ndelete table inet sov_sg\n");
    assert_has(&out, "add table bridge sov_sg\ndelete table bridge sov_sg\n");
    /* Ports: the local secured ones only, by device. */
    assert_has(&out, "\"vpa1\" : jump p1_from");
    assert_has(&out, "\"vpb2\" : jump p2_to");
    assert_lacks(&out, "vpd4");
    assert_lacks(&out, "vpr5");
    /* Anti-spoofing. */
    assert_has(&out, "ether saddr != 02:00:00:00:00:01 drop");
    assert_has(&out, "ether saddr . arp saddr ether . arp saddr ip != { 02:00:00:00:00:01 . "
                     "02:00:00:00:00:01 . 0.0.0.0, 02:00:00:00:00:01 . 02:00:00:00:00:01 . "
                     "10.9.0.1 } drop");
    assert_has(&out, "ether saddr . ip saddr != { 02:00:00:00:00:01 . 0.0.0.0, 02:00:00:00:00:01 "
                     ". 10.9.0.1 } drop\n    ip saddr 0.0.0.0 drop\n");
    assert_has(&out, "ether saddr . ip6 saddr != { 02:00:00:00:00:01 . ::, 02:00:00:00:00:01 . "
                     "fe80::ff:fe00:1 } drop");
    assert_has(&out, "udp sport 68 udp dport 67 accept");
    /* A conntrack zone per bridge, numbered in name order, both for bridged/host-bound and
     * host-sent packets. */
    assert_has(&out, "priority -300; policy accept;\n    ct zone set iifname map { \"brq-a\" : 1, "
                     "\"brq-b\" : 2 }");
    assert_has(&out, "ct zone set oifname map { \"brq-a\" : 1, \"brq-b\" : 2 }");
    /* Conntrack fast path before the per-port lookup. */
    const char *ct = strstr(out.ptr, "ct state established,related accept");
    const char *vmap = strstr(out.ptr, "vmap @m_egress");
    assert_non_null(ct);
    assert_non_null(vmap);
    assert_true(ct < vmap);
    /* Remote group members: the IPs of every port carrying G1, on any host, whether filtered
     * or not. */
    assert_has(&out, "10.9.0.77 . 0-255 . 0-65535");
    assert_has(&out, "10.9.0.4 . 0-255 . 0-65535");
    assert_has(&out, "10.9.0.3 . 6 . 22");
    /* ICMP type/code as th sport = type << 8 | code; the prefix's host bits are cleared. */
    assert_has(&out, "10.0.0.0/8 . 1 . 2048");
    assert_lacks(&out, "10.0.0.0/8 . 1 . 2048-");
    assert_has(&out, "0.0.0.0/0 . 1 . 768-1023");
    assert_has(&out, "ip saddr . meta l4proto . th sport @s");
    assert_has(&out, "ip daddr . meta l4proto . th dport @s1_e4p0 accept");
    /* Allow-only: port chains end in drop after their groups. */
    assert_has(&out, "    jump g1_i\n    jump g2_i\n    drop\n");
    assert_has(&out, "# group " G2 " ingress");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

static void test_port_without_groups_drops_all(void **state)
{
    json_t *ports = load("[{\"id\":\"ab\",\"mac_address\":\"02:00:00:00:00:09\",\"_dev\":\"tap1\","
                         "\"fixed_ips\":[{\"ip_address\":\"2001:db8::9\"}]}]");
    json_t *rules = base_rules();
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "mld-listener-query } accept\n    drop\n");
    assert_has(&out, "arp saddr ip != { 02:00:00:00:00:09 . 02:00:00:00:00:09 . 0.0.0.0 } drop");
    assert_has(&out, "ip6 saddr != { 02:00:00:00:00:09 . ::, 02:00:00:00:00:09 . fe80::ff:fe00:9, "
                     "02:00:00:00:00:09 . 2001:db8::9 } drop");
    /* Groups no local port carries produce nothing. */
    assert_lacks(&out, "chain g1_i");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

static void test_overlaps(void **state)
{
    json_t *ports = base_ports();
    json_t *rules = json_array();
    /* Identical duplicates and a box inside another collapse; a partial overlap moves to a
     * second set. */
    json_array_append_new(rules, rule_doc("a1", G2, "ingress", "tcp", 20, 30, "10.0.0.0/8", NULL));
    json_array_append_new(rules, rule_doc("a2", G2, "ingress", "tcp", 20, 30, "10.0.0.0/8", NULL));
    json_array_append_new(rules, rule_doc("a3", G2, "ingress", "tcp", 22, 22, "10.1.0.0/16", NULL));
    json_array_append_new(rules, rule_doc("a4", G2, "ingress", "tcp", 25, 40, "10.2.0.0/16", NULL));
    json_array_append_new(rules, rule_doc("a5", G2, "ingress", "udp", 25, 40, "10.2.0.0/16", NULL));
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "set s2_i4p0 {");
    assert_has(&out, "set s2_i4p1 {");
    assert_lacks(&out, "set s2_i4p2 {");
    assert_lacks(&out, "10.1.0.0/16");
    const char *first = strstr(out.ptr, "10.0.0.0/8 . 6 . 20-30");
    assert_non_null(first);
    assert_null(strstr(first + 1, "10.0.0.0/8 . 6 . 20-30"));
    assert_has(&out, "10.2.0.0/16 . 6 . 25-40");
    assert_has(&out, "10.2.0.0/16 . 17 . 25-40");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* Many rules sliding over each other's ports on the same addresses are one range; past 64
 * partially overlapping boxes (nested prefixes with sliding ports) the rest are left out, counted
 * in the return value, and the script still loads everything else. */
static void test_overlap_limits(void **state)
{
    json_t *ports = base_ports(), *rules = json_array();
    char id[16], prefix[32];
    for (int k = 0; k < 65; k++) {
        snprintf(id, sizeof(id), "a%d", k);
        json_array_append_new(rules,
                              rule_doc(id, G1, "ingress", "tcp", 1000 + k, 2000 + k, NULL, NULL));
    }
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "0.0.0.0/0 . 6 . 1000-2064 }");
    assert_lacks(&out, "s1_i4p1");
    sov_buf_reset(&out);
    json_array_clear(rules);
    for (int k = 8; k <= 128; k++) {
        snprintf(id, sizeof(id), "b%d", k);
        snprintf(prefix, sizeof(prefix), "fd00::/%d", k);
        json_t *r = rule_doc(id, G1, "ingress", "tcp", k, 1000 + k, prefix, NULL);
        json_object_set_new(r, "ethertype", json_string("IPv6"));
        json_array_append_new(rules, r);
    }
    json_array_append_new(rules, rule_doc("c1", G1, "ingress", "udp", 53, 53, NULL, NULL));
    assert_int_equal(compile(ports, rules, &out, &err), 121 - 64);
    assert_has(&out, "set s1_i6p63 {");
    assert_lacks(&out, "set s1_i6p64 {");
    assert_has(&out, "0.0.0.0/0 . 17 . 53");
    assert_has(&err, "more than 64 partially overlapping rules");
    assert_true(err.len < 1024); /* the first reasons, not 57 */
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* Each case: one field of a valid rule (or port) replaced with a bad value. */
static const struct {
    const char *key, *value;
} bad_rule_fields[] = {
    {"id", "\"F00D\""},
    {"id", "\"a\\\"; flush ruleset; \\\"\""},
    {"id", "\"0123456789012345678901234567890123456789012345678901234567890123456789\""},
    {"id", "null"},
    {"security_group_id", "\"g1\""},
    {"direction", "\"sideways\""},
    {"ethertype", "\"IPX\""},
    {"ethertype", "null"},
    {"protocol", "\"foo\""},
    {"protocol", "\"256\""},
    {"protocol", "\"-1\""},
    {"protocol", "300"},
    {"protocol", "\"icmpv6\""},
    {"protocol", "{}"},
    {"port_range_min", "70000"},
    {"port_range_min", "-1"},
    {"port_range_min", "\"22\""},
    {"port_range_min", "30"}, /* > port_range_max 25 */
    {"remote_ip_prefix", "\"10.0.0.0/33\""},
    {"remote_ip_prefix", "\"10.0.0.0/\""},
    {"remote_ip_prefix", "\"10.0.0.0/08x\""},
    {"remote_ip_prefix", "\"2001:db8::/64\""},
    {"remote_ip_prefix", "\"10.0.0.0 } drop\""},
    {"remote_ip_prefix", "\"\""},
    {"remote_group_id", "\"" G1 "\""}, /* together with remote_ip_prefix */
    {"remote_group_id", "\"G1\""},
};

static void test_hostile_rules(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(bad_rule_fields); i++) {
        json_t *ports = base_ports();
        json_t *rules = json_array();
        json_t *r = rule_doc("f0", G1, "ingress", "tcp", 20, 25, "10.0.0.0/8", NULL);
        json_object_set_new(r, bad_rule_fields[i].key, load(bad_rule_fields[i].value));
        json_array_append_new(rules, r);
        json_array_append_new(rules, rule_doc("f1", G1, "ingress", "udp", 53, 53, NULL, NULL));
        SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
        /* left out with a reason, the other rule compiled: one bad rule holds up nothing */
        int rc = compile(ports, rules, &out, &err);
        if (rc != 1 || (out.ptr && strstr(out.ptr, "10.0.0.0/8 . 6 . 20-25")))
            fail_msg("rule with %s=%s accepted", bad_rule_fields[i].key, bad_rule_fields[i].value);
        assert_has(&out, "0.0.0.0/0 . 17 . 53");
        assert_true(err.len > 0);
        sov_buf_release(&out);
        sov_buf_release(&err);
        json_decref(ports);
        json_decref(rules);
    }
}

static const struct {
    const char *key, *value;
} bad_port_fields[] = {
    {"id", "\"xyz\""},
    {"id", "7"},
    {"mac_address", "\"02:00:00:00:00\""},
    {"mac_address", "\"02:00:00:00:00:0g\""},
    {"mac_address", "\"02:00-00:00:00:01\""},
    {"mac_address", "null"}, /* required on a filtered local port */
    {"fixed_ips", "[{\"ip_address\":\"10.0.0.300\"}]"},
    {"fixed_ips", "[{\"ip_address\":\"10.0.0.1/24\"}]"},
    {"fixed_ips", "[{\"ip_address\":\"0.0.0.0\"}]"},
    {"fixed_ips", "[{\"ip_address\":\"10.0.0.1\"},{\"ip_address\":\"10.0.0.1\"}]"},
    {"fixed_ips", "[7]"},
    {"fixed_ips", "{}"},
    {"security_groups", "[\"; drop\"]"},
    {"security_groups", "\"" G1 "\""},
    {"port_security_enabled", "\"yes\""},
    {"_dev", "\"vp a\""},
    {"_dev", "\"vp\\\"a\""},
    {"_dev", "\"abcdefghijklmnop\""},
    {"_dev", "\"\""},
    {"_dev", "\"vpb2\""}, /* duplicate of port b */
    {"device_owner", "5"},
    {"_bridge", "\"br 0\""},
    {"_bridge", "\"br0\\\" }\""},
    {"_bridge", "[]"},
    {"allowed_address_pairs", "{}"},
    {"allowed_address_pairs", "[7]"},
    {"allowed_address_pairs", "[[]]"},
    {"allowed_address_pairs", "[{}]"},
    {"allowed_address_pairs", "[{\"mac_address\":\"02:00:00:00:00:07\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":null}]"},
    {"allowed_address_pairs", "[{\"ip_address\":7}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.300\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.0/33\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.0/\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.0/-1\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"2001:db8::/129\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.1 } accept\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.1\\u0000\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"02:00:00:00:00\"}]"},
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"zz:00:00:00:00:01\"}]"},
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"02:00:00:00:00:01 \"}]"},
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"01:00:5e:00:00:01\"}]"},
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"ff:ff:ff:ff:ff:ff\"}]"},
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":\"00:00:00:00:00:00\"}]"},
    {"allowed_address_pairs", "[{\"ip_address\":\"10.0.0.1\",\"mac_address\":7}]"},
    /* more than SG_MAX_PORT_PAIRS (sov-api's cap) */
    {"allowed_address_pairs",
     "[{\"ip_address\":\"10.0.1.1\"},{\"ip_address\":\"10.0.1.2\"},{\"ip_address\":\"10.0.1.3\"},"
     "{\"ip_address\":\"10.0.1.4\"},{\"ip_address\":\"10.0.1.5\"},{\"ip_address\":\"10.0.1.6\"},"
     "{\"ip_address\":\"10.0.1.7\"},{\"ip_address\":\"10.0.1.8\"},{\"ip_address\":\"10.0.1.9\"},"
     "{\"ip_address\":\"10.0.1.10\"},{\"ip_address\":\"10.0.1.11\"}]"},
};

static void test_hostile_ports(void **state)
{
    for (size_t i = 0; i < ELEMENTSOF(bad_port_fields); i++) {
        json_t *ports = base_ports(), *rules = base_rules();
        json_t *p = json_array_get(ports, 0);
        json_object_set_new(p, bad_port_fields[i].key, load(bad_port_fields[i].value));
        SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
        int rc = compile(ports, rules, &out, &err);
        if (rc >= 0)
            fail_msg("port with %s=%s accepted", bad_port_fields[i].key, bad_port_fields[i].value);
        assert_true(err.len > 0);
        sov_buf_release(&out);
        sov_buf_release(&err);
        json_decref(ports);
        json_decref(rules);
    }
    /* The same on a port of another host (c, no "_dev"): left out with a reason (it only
     * narrows its groups' members), this host's ports filtered as before. */
    size_t left_out = 0;
    for (size_t i = 0; i < ELEMENTSOF(bad_port_fields); i++) {
        if (strcmp(bad_port_fields[i].key, "_dev") == 0)
            continue; /* that makes it a port of this host */
        json_t *ports = base_ports(), *rules = base_rules();
        json_t *p = json_array_get(ports, 2);
        json_object_set_new(p, bad_port_fields[i].key, load(bad_port_fields[i].value));
        SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
        int rc = compile(ports, rules, &out, &err);
        bool fine = strcmp(bad_port_fields[i].key, "mac_address") == 0 &&
                    strcmp(bad_port_fields[i].value, "null") == 0; /* not filtered: optional */
        if (rc != (fine ? 0 : 1))
            fail_msg("port c with %s=%s: %d", bad_port_fields[i].key, bad_port_fields[i].value, rc);
        assert_has(&out, "\"vpa1\" : jump p1_from");
        if (fine) {
            assert_has(&out, "10.9.0.77");
        } else {
            assert_lacks(&out, "10.9.0.77");
            assert_true(err.len > 2 && strcmp(err.ptr + err.len - 2, "; ") != 0);
            left_out++;
        }
        sov_buf_release(&out);
        sov_buf_release(&err);
        json_decref(ports);
        json_decref(rules);
    }
    assert_true(left_out > 30);
    /* "_dev": null is no device: another host's port, left out too */
    json_t *ports = base_ports(), *rules = base_rules();
    json_object_set_new(json_array_get(ports, 2), "_dev", json_null());
    json_object_set_new(json_array_get(ports, 2), "mac_address", json_string("02:00"));
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 1);
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* Every field of a port, a rule and a group replaced by odd JSON values, and odd top-level
 * values: an error or a script, never a crash (ASan runs this too). */
static void test_odd_values_never_crash(void **state)
{
    static const char *odd[] = {"null",
                                "true",
                                "0",
                                "-1",
                                "1e300",
                                "\"\"",
                                "[]",
                                "{}",
                                "[[[]]]",
                                "\"\\u0000\"",
                                "9223372036854775807"};
    static const char *rule_keys[] = {"id",
                                      "security_group_id",
                                      "direction",
                                      "ethertype",
                                      "protocol",
                                      "port_range_min",
                                      "port_range_max",
                                      "remote_ip_prefix",
                                      "remote_group_id"};
    static const char *port_keys[] = {
        "id",           "mac_address", "fixed_ips", "security_groups",      "port_security_enabled",
        "device_owner", "_dev",        "_bridge",   "allowed_address_pairs"};
    for (size_t v = 0; v < ELEMENTSOF(odd); v++) {
        for (size_t k = 0; k < ELEMENTSOF(rule_keys) + ELEMENTSOF(port_keys) + 2; k++) {
            json_t *ports = base_ports(), *rules = base_rules(), *groups = load(groups_json);
            json_t *val = load(odd[v]);
            if (k < ELEMENTSOF(rule_keys))
                json_object_set_new(json_array_get(rules, 0), rule_keys[k], val);
            else if (k < ELEMENTSOF(rule_keys) + ELEMENTSOF(port_keys))
                json_object_set_new(json_array_get(ports, 0), port_keys[k - ELEMENTSOF(rule_keys)],
                                    val);
            else if (k == ELEMENTSOF(rule_keys) + ELEMENTSOF(port_keys))
                json_object_set_new(json_array_get(groups, 0), "id", val);
            else
                json_array_append_new(rules, val);
            SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
            (void)sg_compile(ports, groups, rules, &out, &err);
            sov_buf_release(&out);
            sov_buf_release(&err);
            json_decref(ports);
            json_decref(rules);
            json_decref(groups);
        }
        json_t *val = load(odd[v]);
        SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
        /* Three empty arrays are a valid empty host; anything else is not three arrays. */
        assert_true((sg_compile(val, val, val, &out, &err) < 0) == (strcmp(odd[v], "[]") != 0));
        assert_true(sg_compile(NULL, NULL, NULL, &out, &err) < 0);
        sov_buf_release(&out);
        sov_buf_release(&err);
        json_decref(val);
    }
}

static void test_ten_thousand_rules(void **state)
{
    json_t *ports = base_ports(), *rules = json_array();
    for (int i = 0; i < 10000; i++) {
        char id[16], prefix[32];
        snprintf(id, sizeof(id), "%x", i);
        snprintf(prefix, sizeof(prefix), "10.%d.%d.0/24", 100 + i / 256, i % 256);
        json_array_append_new(rules, rule_doc(id, i % 2 ? G1 : G2, i % 3 ? "ingress" : "egress",
                                              i % 5 ? "tcp" : "udp", 1000 + i % 100,
                                              1000 + i % 100 + i % 7, prefix, NULL));
    }
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    size_t lookups = 0, lines = 0;
    for (const char *p = out.ptr; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (memmem(p, len, " @s", 3) && len > 7 && memcmp(p + len - 7, " accept", 7) == 0)
            lookups++;
        lines++;
        p = nl ? nl + 1 : NULL;
    }
    /* Each rule is one element line; the rules that look them up are a handful. */
    assert_true(lookups > 0);
    assert_true(lookups <= 8);
    assert_true(lines < 10000 + 400);
    assert_true(out.len < 10000 * 48 + 32768);
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

static void set_pairs(json_t *port, const char *pairs)
{
    json_object_set_new(port, "allowed_address_pairs", load(pairs));
}

/* Port a with pairs: its own MAC with a VIP and a CIDR, another MAC (keepalived's VMAC) with a
 * VIP, and IPv6: each pair's MAC may send from its pair's addresses only. */
static void test_address_pairs_antispoof(void **state)
{
    json_t *ports = base_ports(), *rules = base_rules();
    set_pairs(json_array_get(ports, 0),
              "[{\"ip_address\":\"10.9.0.200\"},"
              "{\"ip_address\":\"10.9.1.7/24\",\"mac_address\":\"02:00:00:00:00:01\"},"
              "{\"ip_address\":\"10.9.0.201\",\"mac_address\":\"00:00:5E:00:01:07\"},"
              "{\"ip_address\":\"fd00:9::c8\"},"
              "{\"ip_address\":\"fd00:77::/64\",\"mac_address\":\"00:00:5e:00:02:07\"}]");
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    /* Both MACs, each once. */
    assert_has(&out, "ether saddr != { 02:00:00:00:00:01, 00:00:5e:00:01:07, 00:00:5e:00:02:07 } "
                     "drop\n");
    /* The CIDR's host bits are cleared; the VMAC goes with its own VIP only. */
    assert_has(&out, "ether saddr . ip saddr != { 02:00:00:00:00:01 . 0.0.0.0, 02:00:00:00:00:01 . "
                     "10.9.0.1, 02:00:00:00:00:01 . 10.9.0.200, 02:00:00:00:00:01 . 10.9.1.0/24, "
                     "00:00:5e:00:01:07 . 10.9.0.201 } drop");
    assert_has(&out, "00:00:5e:00:01:07 . 00:00:5e:00:01:07 . 10.9.0.201 } drop");
    assert_has(&out, "02:00:00:00:00:01 . 02:00:00:00:00:01 . 10.9.1.0/24,");
    /* IPv6: the pair with the port's MAC, and the other MAC's prefix with its :: and
     * link-local address (EUI-64 of 00:00:5e:00:02:07). */
    assert_has(&out, "02:00:00:00:00:01 . fd00:9::c8, 00:00:5e:00:02:07 . fd00:77::/64, "
                     "00:00:5e:00:02:07 . ::, 00:00:5e:00:02:07 . fe80::200:5eff:fe00:207 } drop");
    /* Port b has no pairs: its checks name only its own MAC. */
    assert_has(&out, "ether saddr != 02:00:00:00:00:02 drop");
    assert_has(&out, "ether saddr . ip saddr != { 02:00:00:00:00:02 . 0.0.0.0, 02:00:00:00:00:02 . "
                     "10.9.0.2 } drop");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* Elements inside another of the same MAC are left out (the kernel refuses overlaps): a pair
 * 0.0.0.0/0 leaves one IPv4 element for its MAC; duplicates appear once; the same prefix with
 * another MAC stays. */
static void test_address_pairs_overlap(void **state)
{
    json_t *ports = base_ports(), *rules = base_rules();
    set_pairs(json_array_get(ports, 0),
              "[{\"ip_address\":\"10.9.0.1\"},{\"ip_address\":\"10.9.0.200\"},"
              "{\"ip_address\":\"10.9.0.200\"},{\"ip_address\":\"0.0.0.0/0\"},"
              "{\"ip_address\":\"10.9.0.200\",\"mac_address\":\"02:00:00:00:00:aa\"},"
              "{\"ip_address\":\"10.9.0.0/16\",\"mac_address\":\"02:00:00:00:00:aa\"},"
              "{\"ip_address\":\"::/0\"}]");
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "ether saddr . ip saddr != { 02:00:00:00:00:01 . 0.0.0.0/0, "
                     "02:00:00:00:00:aa . 10.9.0.0/16 } drop\n    ip saddr 0.0.0.0 drop\n");
    assert_has(&out, "ether saddr . ip6 saddr != { 02:00:00:00:00:01 . ::/0 } drop");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* Pairs count as members of the port's groups: a remote group rule admits them, as a prefix
 * (one element), on any host, whether the port is filtered here or not. */
static void test_address_pairs_remote_group(void **state)
{
    json_t *ports = base_ports(), *rules = base_rules();
    set_pairs(json_array_get(ports, 1), "[{\"ip_address\":\"10.9.0.200\"}]");
    set_pairs(json_array_get(ports, 2), "[{\"ip_address\":\"172.16.0.0/12\"},"
                                        "{\"ip_address\":\"172.16.5.5\"}]");
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "10.9.0.200 . 0-255 . 0-65535");
    assert_has(&out, "172.16.0.0/12 . 0-255 . 0-65535");
    assert_lacks(&out, "172.16.5.5");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
    /* Without pairs, neither address is a member. */
    ports = base_ports();
    rules = base_rules();
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_lacks(&out, "10.9.0.200");
    assert_lacks(&out, "172.16.0.0");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

/* The most of everything on one port (fixed IPs and pairs of both families, each pair with its
 * own MAC) fits the bounded source lists. */
static void test_address_pairs_bounds(void **state)
{
    json_t *ports = base_ports(), *rules = base_rules();
    json_t *a = json_array_get(ports, 0), *ips = json_array(), *pairs = json_array();
    for (int i = 0; i < SG_MAX_PORT_IPS; i++) {
        char ip[64];
        snprintf(ip, sizeof(ip), i % 2 ? "10.9.3.%d" : "fd00:9::1:%x", i + 1);
        json_array_append_new(ips, json_pack("{s:s}", "ip_address", ip));
    }
    for (int i = 0; i < SG_MAX_PORT_PAIRS; i++) {
        char ip[64], mac[18];
        snprintf(ip, sizeof(ip), "fd00:%x::/64", i + 1);
        snprintf(mac, sizeof(mac), "02:00:00:00:01:%02x", i);
        json_array_append_new(pairs, json_pack("{s:s, s:s}", "ip_address", ip, "mac_address", mac));
    }
    json_object_set_new(a, "fixed_ips", ips);
    json_object_set_new(a, "allowed_address_pairs", pairs);
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), 0);
    assert_has(&out, "02:00:00:00:01:09 . fd00:a::/64, 02:00:00:00:01:09 . ::, 02:00:00:00:01:09 . "
                     "fe80::ff:fe00:109 } drop");
    assert_has(&out, "02:00:00:00:00:01 . fd00:9::1:1f,");
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

static void test_limits(void **state)
{
    /* More rules than SG_MAX_RULES: refused before any work. */
    json_t *ports = base_ports(), *rules = json_array();
    json_t *r = rule_doc("f0", G1, "ingress", "tcp", 22, 22, NULL, NULL);
    for (int i = 0; i <= SG_MAX_RULES; i++)
        json_array_append(rules, r);
    json_decref(r);
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(compile(ports, rules, &out, &err), -E2BIG);
    sov_buf_release(&err);
    /* An output buffer with a small max: -E2BIG, no overflow. */
    json_decref(rules);
    rules = base_rules();
    sov_buf_init(&out, 256);
    assert_true(compile(ports, rules, &out, &err) < 0);
    assert_true(out.len <= 256);
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(ports);
    json_decref(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_script),
        cmocka_unit_test(test_port_without_groups_drops_all),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_overlap_limits),
        cmocka_unit_test(test_hostile_rules),
        cmocka_unit_test(test_hostile_ports),
        cmocka_unit_test(test_odd_values_never_crash),
        cmocka_unit_test(test_ten_thousand_rules),
        cmocka_unit_test(test_address_pairs_antispoof),
        cmocka_unit_test(test_address_pairs_overlap),
        cmocka_unit_test(test_address_pairs_remote_group),
        cmocka_unit_test(test_address_pairs_bounds),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
