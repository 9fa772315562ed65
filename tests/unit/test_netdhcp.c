/* SPDX-License-Identifier: Apache-2.0 */
/* sov-net's DHCP module (src/net/dhcp.c, included for its statics, and dhcpconf.c): the
 * dnsmasq config and hosts file rendered from Neutron documents, hostile documents refused
 * before they reach a file, and the supervision (start, SIGHUP on port changes, restart on
 * subnet changes and on death, stop removing everything, adoption by the next agent, the sweep
 * of what serves gone subnets) run against a fake dnsmasq script, so no root is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/net/dhcp.c"

#define SUBNET "5f0c6c7e-1f4e-4a55-9d8a-0d6c1b1e2a01"
#define OTHER  "9a9a9a9a-1f4e-4a55-9d8a-0d6c1b1e2a02"

static json_t *subnet_doc(void)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:b, s:[s,s], s:[]}", "id", SUBNET, "cidr",
                     "10.20.0.0/24", "gateway_ip", "10.20.0.1", "ip_version", 4, "enable_dhcp", 1,
                     "dns_nameservers", "9.9.9.9", "1.1.1.1", "host_routes");
}

static json_t *port_doc(const char *id, const char *mac, const char *subnet, const char *ip)
{
    return json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "id", id, "mac_address", mac, "fixed_ips",
                     "subnet_id", subnet, "ip_address", ip);
}

static json_t *ports_doc(void)
{
    json_t *a = json_array();
    json_array_append_new(a, port_doc("p1", "FA:16:3E:00:00:0B", SUBNET, "10.20.0.11"));
    json_array_append_new(a, port_doc("p2", "fa:16:3e:00:00:0a", SUBNET, "10.20.0.10"));
    json_array_append_new(a, port_doc("p3", "fa:16:3e:00:00:0c", OTHER, "10.99.0.5"));
    json_array_append_new(a, json_pack("{s:s, s:s, s:[]}", "id", "p4", "mac_address",
                                       "fa:16:3e:00:00:0d", "fixed_ips"));
    return a;
}

static SovBuf names = SOV_BUF_INIT; /* the names file of the last render() */

static int render(json_t *subnet, json_t *ports, const DhcpOpts *o, SovBuf *conf, SovBuf *hosts,
                  SovBuf *err)
{
    sov_buf_reset(conf);
    sov_buf_reset(hosts);
    sov_buf_reset(&names);
    sov_buf_reset(err);
    return dhcp_render("/var/lib/sov-net/dhcp/" SUBNET, "ns-br0", "10.20.0.2", subnet, ports, o,
                       conf, hosts, &names, err);
}

static void test_render(void **state)
{
    json_t *s = subnet_doc(), *p = ports_doc();
    SovBuf conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, err = SOV_BUF_INIT;
    assert_int_equal(render(s, p, NULL, &conf, &hosts, &err), 0);
    const char *want[] = {"\ninterface=ns-br0\n",
                          "\nexcept-interface=lo\n",
                          "\nbind-interfaces\n",
                          "\nno-resolv\n",
                          "\nno-hosts\n",
                          "\ndomain=openstacklocal\n",
                          "\nlocal=/openstacklocal/\n",
                          "\naddn-hosts=/var/lib/sov-net/dhcp/" SUBNET "/names\n",
                          "\ncache-size=128\n",
                          "\ndhcp-option=option:domain-name,openstacklocal\n",
                          "\ndhcp-authoritative\n",
                          "\ndhcp-ignore=tag:!known\n",
                          "\ndhcp-range=10.20.0.0,static,255.255.255.0,86400s\n",
                          "\ndhcp-hostsfile=/var/lib/sov-net/dhcp/" SUBNET "/hosts\n",
                          "\ndhcp-leasefile=/var/lib/sov-net/dhcp/" SUBNET "/leases\n",
                          "\npid-file=/var/lib/sov-net/dhcp/" SUBNET "/pid\n",
                          "\nlog-facility=/var/lib/sov-net/dhcp/" SUBNET "/log\n",
                          "\ndhcp-option=option:router,10.20.0.1\n",
                          "\ndhcp-option=option:dns-server,9.9.9.9,1.1.1.1\n"};
    for (size_t i = 0; i < ELEMENTSOF(want); i++)
        if (!strstr(conf.ptr, want[i]))
            fail_msg("missing %s in\n%s", want[i], conf.ptr);
    assert_null(strstr(conf.ptr, "classless"));
    assert_null(strstr(conf.ptr, "option:mtu")); /* none without the network's */
    assert_null(strstr(conf.ptr, "user="));
    assert_null(strstr(conf.ptr, "port=0")); /* DNS on */
    assert_null(strstr(conf.ptr, "server="));
    /* sorted by address, lower-case MACs, leases for this subnet's addresses only, names for
     * the network's other subnets' addresses too, default names */
    assert_string_equal(hosts.ptr, "fa:16:3e:00:00:0a,10.20.0.10,host-10-20-0-10.openstacklocal\n"
                                   "fa:16:3e:00:00:0b,10.20.0.11,host-10-20-0-11.openstacklocal\n");
    assert_string_equal(names.ptr, "10.20.0.10 host-10-20-0-10.openstacklocal host-10-20-0-10\n"
                                   "10.20.0.11 host-10-20-0-11.openstacklocal host-10-20-0-11\n"
                                   "10.99.0.5 host-10-99-0-5.openstacklocal host-10-99-0-5\n");

    /* the same ports in another order render the same file */
    SovBuf hosts2 = SOV_BUF_INIT, conf2 = SOV_BUF_INIT;
    json_t *rev = json_array();
    for (size_t i = json_array_size(p); i-- > 0;)
        json_array_append(rev, json_array_get(p, i));
    assert_int_equal(render(s, rev, NULL, &conf2, &hosts2, &err), 0);
    assert_string_equal(hosts.ptr, hosts2.ptr);
    assert_string_equal(conf.ptr, conf2.ptr);

    /* the network's MTU goes to every client, asked for or not */
    json_object_set_new(s, "mtu", json_integer(1450));
    assert_int_equal(render(s, p, NULL, &conf, &hosts, &err), 0);
    assert_non_null(strstr(conf.ptr, "\ndhcp-option-force=option:mtu,1450\n"));
    json_object_del(s, "mtu");

    /* options: lease time and user; no gateway, no DNS; no ports at all */
    DhcpOpts o = {.lease_s = 600, .user = "dnsmasq"};
    json_object_set_new(s, "gateway_ip", json_null());
    json_object_set_new(s, "dns_nameservers", json_array());
    assert_int_equal(render(s, NULL, &o, &conf, &hosts, &err), 0);
    assert_non_null(strstr(conf.ptr, "\ndhcp-range=10.20.0.0,static,255.255.255.0,600s\n"));
    assert_non_null(strstr(conf.ptr, "\nuser=dnsmasq\n"));
    assert_null(strstr(conf.ptr, "router"));
    /* no dns_nameservers: the server's own address answers */
    assert_non_null(strstr(conf.ptr, "\ndhcp-option=option:dns-server,10.20.0.2\n"));
    assert_int_equal(hosts.len, 0);
    assert_int_equal(names.len, 0);

    json_decref(rev);
    json_decref(s);
    json_decref(p);
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&conf2);
    sov_buf_release(&hosts2);
    sov_buf_release(&err);
}

static void test_routes(void **state)
{
    json_t *s = subnet_doc();
    SovBuf conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, err = SOV_BUF_INIT;
    json_object_set_new(s, "host_routes",
                        json_pack("[{s:s,s:s},{s:s,s:s}]", "destination", "192.168.0.0/16",
                                  "nexthop", "10.20.0.254", "destination", "172.16.5.0/24",
                                  "nexthop", "10.20.0.253"));
    assert_int_equal(render(s, NULL, NULL, &conf, &hosts, &err), 0);
    /* the default route through the gateway rides along: option 121 overrides option 3 */
    assert_non_null(strstr(conf.ptr,
                           "\ndhcp-option=option:classless-static-route,192.168.0.0/16,"
                           "10.20.0.254,172.16.5.0/24,10.20.0.253,0.0.0.0/0,10.20.0.1\n"));
    json_array_append_new(
        json_object_get(s, "host_routes"),
        json_pack("{s:s,s:s}", "destination", "0.0.0.0/0", "nexthop", "10.20.0.254"));
    assert_int_equal(render(s, NULL, NULL, &conf, &hosts, &err), 0);
    assert_non_null(strstr(conf.ptr, ",0.0.0.0/0,10.20.0.254\n"));
    assert_null(strstr(conf.ptr, "0.0.0.0/0,10.20.0.1"));
    json_decref(s);
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&err);
}

/* Each case changes one field of a good subnet (or adds one bad port); all are refused. */
static void test_hostile(void **state)
{
    static const struct {
        const char *key;
        const char *json; /* the value, as JSON */
    } bad[] = {
        {"id", "\"../../etc\""},
        {"id", "\"a/b\""},
        {"id", "\"\""},
        {"id", "\"x\\ndhcp-script=/bin/sh\""},
        {"id", "7"},
        {"ip_version", "6"},
        {"ip_version", "\"4\""},
        {"cidr", "\"10.20.0.0/31\""},
        {"cidr", "\"10.20.0.0/33\""},
        {"cidr", "\"10.20.0.0/24x\""},
        {"cidr", "\"10.20.0.0\""},
        {"cidr", "\"fd00::/64\""},
        {"cidr", "\"10.20.0.0/24\\ndhcp-script=/x\""},
        {"cidr", "null"},
        {"gateway_ip", "\"10.20.0.1\\ndhcp-script=/bin/sh\""},
        {"gateway_ip", "\"10.21.0.1\""},
        {"gateway_ip", "\"10.20.0.255\""},
        {"gateway_ip", "\"10.20.0.0\""},
        {"gateway_ip", "\"010.20.0.1\""},
        {"gateway_ip", "5"},
        {"dns_nameservers", "[\"9.9.9.9,1.1.1.1\"]"},
        {"dns_nameservers", "[\"9.9.9.9\\nuser=root\"]"},
        {"dns_nameservers", "[1]"},
        {"dns_nameservers", "\"9.9.9.9\""},
        {"dns_nameservers", "[\"1.1.1.1\",\"1.1.1.1\",\"1.1.1.1\",\"1.1.1.1\",\"1.1.1.1\","
                            "\"1.1.1.1\",\"1.1.1.1\",\"1.1.1.1\",\"1.1.1.1\"]"},
        {"host_routes", "[{\"destination\":\"1.0.0.0/8\",\"nexthop\":\"192.0.2.1\"}]"},
        {"host_routes", "[{\"destination\":\"1.0.0.0/8,2.0.0.0/8\",\"nexthop\":\"10.20.0.9\"}]"},
        {"host_routes", "[{\"destination\":\"1.0.0.0/8\"}]"},
        {"host_routes", "{}"},
        {"mtu", "67"},
        {"mtu", "65536"},
        {"mtu", "\"1450\""},
        {"mtu", "1450.5"},
        {"mtu", "null"},
        {"ports", "{}"},
        {"ports", "[7]"},
        {"ports", "[{\"id\":\"q\",\"mac_address\":\"fa:16:3e:00:00:01\",\"fixed_ips\":{}}]"},
    };
    static const char *bad_ports[][2] = {
        {"fa:16:3e:00:00:0", "10.20.0.30"},
        {"fa:16:3e:00:00:0g", "10.20.0.30"},
        {"fa-16-3e-00-00-01", "10.20.0.30"},
        {"fa:16:3e:00:00:01\n", "10.20.0.30"},
        {"01:00:5e:00:00:01", "10.20.0.30"}, /* multicast */
        {"00:00:00:00:00:00", "10.20.0.30"},
        {"fa:16:3e:00:00:0a", "10.20.0.30"}, /* MAC of p2 again */
        {"fa:16:3e:00:00:31", "10.20.0.10"}, /* address of p2 again */
        {"fa:16:3e:00:00:31", "10.20.1.10"},
        {"fa:16:3e:00:00:31", "10.20.0.255"},
        {"fa:16:3e:00:00:31", "10.20.0.30,10.20.0.31"},
        {"fa:16:3e:00:00:31", "10.20.0.30\nuser=root"},
    };
    SovBuf conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, err = SOV_BUF_INIT;
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        json_t *s = subnet_doc(), *p = ports_doc();
        json_t *v = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        if (strcmp(bad[i].key, "ports") == 0) {
            json_decref(p);
            p = v;
        } else {
            json_object_set_new(s, bad[i].key, v);
        }
        int r = render(s, p, NULL, &conf, &hosts, &err);
        if (r != -EINVAL)
            fail_msg("%s=%s: got %d", bad[i].key, bad[i].json, r);
        assert_true(err.len > 0);
        json_decref(s);
        json_decref(p);
    }
    for (size_t i = 0; i < ELEMENTSOF(bad_ports); i++) {
        json_t *s = subnet_doc(), *p = ports_doc();
        json_array_append_new(p, port_doc("bad", bad_ports[i][0], SUBNET, bad_ports[i][1]));
        int r = render(s, p, NULL, &conf, &hosts, &err);
        if (r != -EINVAL)
            fail_msg("port %s %s: got %d", bad_ports[i][0], bad_ports[i][1], r);
        json_decref(s);
        json_decref(p);
    }
    /* the arguments of the caller */
    json_t *s = subnet_doc();
    const char *ifs[] = {"", "eth0\nx", "a b", "0123456789abcdef", "-x", "..", "a/b", NULL};
    for (size_t i = 0; i < ELEMENTSOF(ifs); i++)
        assert_int_equal(
            dhcp_render("/d", ifs[i], "10.20.0.2", s, NULL, NULL, &conf, &hosts, &names, &err),
            -EINVAL);
    const char *ips[] = {"10.20.0.0", "10.20.0.255", "10.21.0.2", "10.20.0.2 ", "", NULL};
    for (size_t i = 0; i < ELEMENTSOF(ips); i++)
        assert_int_equal(
            dhcp_render("/d", "br0", ips[i], s, NULL, NULL, &conf, &hosts, &names, &err), -EINVAL);
    const char *dirs[] = {"d", "/a,b", "/a b", "/a#b", "/a\nb", "/a\"b", "", NULL};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
        assert_int_equal(
            dhcp_render(dirs[i], "br0", "10.20.0.2", s, NULL, NULL, &conf, &hosts, &names, &err),
            -EINVAL);
    DhcpOpts o = {.user = "root\nuser"};
    assert_int_equal(render(s, NULL, &o, &conf, &hosts, &err), -EINVAL);
    o = (DhcpOpts){.lease_s = 5};
    assert_int_equal(render(s, NULL, &o, &conf, &hosts, &err), -EINVAL);
    assert_null(dhcp_new(&o));
    /* too many ports */
    json_t *many = json_array();
    for (unsigned i = 0; i <= DHCP_NET_PORTS_MAX; i++)
        json_array_append_new(many, json_object());
    assert_int_equal(render(s, many, NULL, &conf, &hosts, &err), -EINVAL);
    json_decref(many);
    json_decref(s);
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&err);
}

static json_t *named_port(const char *id, const char *mac, const char *ip, const char *name)
{
    json_t *p = port_doc(id, mac, SUBNET, ip);
    json_object_set_new(p, "dns_name", json_string(name));
    return p;
}

/* Names: dns_name (lower case) or host-a-b-c-d, the network's dns_domain or the default, the
 * configured upstream resolvers; hostile names never reach a file, and no port takes another
 * port's name. */
static void test_dns(void **state)
{
    json_t *s = subnet_doc(), *p = json_array();
    SovBuf conf = SOV_BUF_INIT, hosts = SOV_BUF_INIT, err = SOV_BUF_INIT;
    json_array_append_new(p, named_port("p1", "fa:16:3e:00:00:01", "10.20.0.11", "Web-1"));
    json_array_append_new(p, named_port("p2", "fa:16:3e:00:00:02", "10.20.0.12", ""));
    json_object_set_new(s, "dns_domain", json_string("Example.ORG."));
    DhcpOpts o = {.dns_upstream = "192.0.2.53,198.51.100.53", .dns_domain = "cloud.test"};
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    assert_string_equal(hosts.ptr, "fa:16:3e:00:00:01,10.20.0.11,web-1.example.org\n"
                                   "fa:16:3e:00:00:02,10.20.0.12,host-10-20-0-12.example.org\n");
    assert_string_equal(names.ptr, "10.20.0.11 web-1.example.org web-1\n"
                                   "10.20.0.12 host-10-20-0-12.example.org host-10-20-0-12\n");
    const char *want[] = {"\ndomain=example.org\n", "\nlocal=/example.org/\n",
                          "\nserver=192.0.2.53\nserver=198.51.100.53\n",
                          "\ndhcp-option=option:domain-name,example.org\n",
                          "\ndhcp-option=option:dns-server,9.9.9.9,1.1.1.1\n"};
    for (size_t i = 0; i < ELEMENTSOF(want); i++)
        if (!strstr(conf.ptr, want[i]))
            fail_msg("missing %s in\n%s", want[i], conf.ptr);

    /* a network dns_domain that is no domain name: the configured default */
    static const char *bad_domains[] = {"a b",   "x\nserver=6.6.6.6", "-a.org", "a..b",   "a,b",
                                        "a/b",   "\xc3\xa9.org",      ".",      "a.-b.c", "/",
                                        "a.b-.c"};
    for (size_t i = 0; i < ELEMENTSOF(bad_domains); i++) {
        json_object_set_new(s, "dns_domain", json_string(bad_domains[i]));
        assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
        if (!strstr(conf.ptr, "\ndomain=cloud.test\n") || strstr(conf.ptr, "6.6.6.6"))
            fail_msg("dns_domain %s:\n%s", bad_domains[i], conf.ptr);
        assert_non_null(strstr(names.ptr, " web-1.cloud.test web-1\n"));
    }
    char longd[300];
    memset(longd, 'a', sizeof(longd));
    for (size_t i = 63; i < sizeof(longd); i += 64)
        longd[i] = '.';
    longd[254] = '\0'; /* 254 characters of valid labels */
    json_object_set_new(s, "dns_domain", json_string(longd));
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    assert_non_null(strstr(conf.ptr, "\ndomain=cloud.test\n"));
    longd[253] = '\0';
    longd[252] = 'a';
    json_object_set_new(s, "dns_domain", json_string(longd));
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    assert_null(strstr(conf.ptr, "\ndomain=cloud.test\n"));
    assert_int_equal(names.len, 0); /* no room left for a host name: nameless ports */
    assert_string_equal(hosts.ptr, "fa:16:3e:00:00:01,10.20.0.11\nfa:16:3e:00:00:02,10.20.0.12\n");
    json_object_del(s, "dns_domain");

    /* hostile dns_names: the default name instead, and never a new line or field */
    static const char *bad_names[] = {
        "a b",
        "x\nserver=6.6.6.6",
        "web,10.20.0.99",
        "-web",
        "web-",
        "web.example.org",
        "w_b",
        "\xc3\xa9",
        "a#b",
        "",
        "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
        json_object_set_new(json_array_get(p, 0), "dns_name", json_string(bad_names[i]));
        assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
        if (strcmp(names.ptr, "10.20.0.11 host-10-20-0-11.cloud.test host-10-20-0-11\n"
                              "10.20.0.12 host-10-20-0-12.cloud.test host-10-20-0-12\n") != 0)
            fail_msg("dns_name %s:\n%s", bad_names[i], names.ptr);
        assert_int_equal(strchr(hosts.ptr, '\n') - hosts.ptr,
                         strlen("fa:16:3e:00:00:01,10.20.0.11,host-10-20-0-11.cloud.test"));
    }
    json_object_set_new(json_array_get(p, 0), "dns_name", json_integer(7));
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    assert_non_null(strstr(names.ptr, "10.20.0.11 host-10-20-0-11.cloud.test"));

    /* one name, one port: a taken name (chosen or default) falls back to the default */
    json_object_set_new(json_array_get(p, 0), "dns_name", json_string("web"));
    json_array_append_new(p, named_port("p3", "fa:16:3e:00:00:03", "10.20.0.13", "WEB"));
    json_array_append_new(p,
                          named_port("p4", "fa:16:3e:00:00:04", "10.20.0.14", "host-10-20-0-12"));
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    assert_string_equal(names.ptr, "10.20.0.11 web.cloud.test web\n"
                                   "10.20.0.12 host-10-20-0-12.cloud.test host-10-20-0-12\n"
                                   "10.20.0.13 host-10-20-0-13.cloud.test host-10-20-0-13\n"
                                   "10.20.0.14 host-10-20-0-14.cloud.test host-10-20-0-14\n");
    /* ... even when the fallback is itself taken */
    json_object_set_new(json_array_get(p, 1), "dns_name", json_string("host-10-20-0-13"));
    assert_int_equal(render(s, p, &o, &conf, &hosts, &err), 0);
    const char *line = "10.20.0.13 host-10-20-0-13.cloud.test host-10-20-0-13\n";
    assert_non_null(strstr(names.ptr, line));
    assert_null(strstr(strstr(names.ptr, line) + strlen(line), "host-10-20-0-13."));
    assert_null(strstr(names.ptr, " host-10-20-0-13.cloud.test host-10-20-0-13\n10.20.0.13"));

    /* many ports choosing one name (on a shared network: another project's): one keeps it,
     * every other port its default and none goes nameless; a label dnsmasq reads as a keyword
     * or lease time ("ignore": no DHCP at all) never stands alone in a dhcp-host line */
    json_t *many = json_array();
    for (int i = 0; i < 40; i++) {
        char mac[18], ip[16];
        snprintf(mac, sizeof(mac), "fa:16:3e:00:01:%02x", i);
        snprintf(ip, sizeof(ip), "10.20.0.%d", 100 + i);
        json_array_append_new(many, named_port("px", mac, ip, i == 39 ? "ignore" : "web"));
    }
    assert_int_equal(render(s, many, &o, &conf, &hosts, &err), 0);
    size_t webs = 0, lines = 0;
    for (const char *h = names.ptr; (h = strstr(h, " web\n")); h++)
        webs++;
    for (const char *h = names.ptr; (h = strchr(h, '\n')); h++)
        lines++;
    assert_int_equal(webs, 1);
    assert_int_equal(lines, 40);
    assert_non_null(strstr(names.ptr, "10.20.0.100 web.cloud.test web\n"));
    assert_null(strstr(hosts.ptr, ",ignore\n"));
    assert_non_null(strstr(hosts.ptr, ",10.20.0.139,ignore.cloud.test\n"));
    assert_non_null(strstr(conf.ptr, "\ndhcp-ignore-names\n"));
    json_decref(many);

    /* the network's other subnets: names for their addresses, no leases; a port keeps its name
     * on all its addresses, and another port claiming it falls back to its default */
    json_t *net = json_array(), *pm = named_port("pm", "fa:16:3e:00:02:01", "10.20.0.50", "multi");
    json_array_append_new(json_object_get(pm, "fixed_ips"),
                          json_pack("{s:s, s:s}", "subnet_id", OTHER, "ip_address", "10.99.0.50"));
    json_array_append_new(net, pm);
    json_t *po = port_doc("po", "fa:16:3e:00:02:02", OTHER, "10.99.0.7");
    json_object_set_new(po, "dns_name", json_string("multi"));
    json_array_append_new(net, po);
    assert_int_equal(render(s, net, &o, &conf, &hosts, &err), 0);
    assert_string_equal(hosts.ptr, "fa:16:3e:00:02:01,10.20.0.50,multi.cloud.test\n");
    assert_string_equal(names.ptr, "10.20.0.50 multi.cloud.test multi\n"
                                   "10.99.0.7 host-10-99-0-7.cloud.test host-10-99-0-7\n"
                                   "10.99.0.50 multi.cloud.test multi\n");
    json_decref(net);

    /* a server's ports (one device, one project) share its name, an address record each; the
     * same device_id on another project's port (a shared network) does not get it */
    net = json_array();
    static const struct {
        const char *id, *mac, *ip, *project;
    } nics[] = {{"n1", "fa:16:3e:00:03:01", "10.20.0.60", "pa"},
                {"n2", "fa:16:3e:00:03:02", "10.20.0.61", "pb"},
                {"n3", "fa:16:3e:00:03:03", "10.20.0.62", "pa"}};
    for (size_t i = 0; i < ELEMENTSOF(nics); i++) {
        json_t *np = named_port(nics[i].id, nics[i].mac, nics[i].ip, "vm1");
        json_object_set_new(np, "device_id", json_string("srv-1"));
        json_object_set_new(np, "project_id", json_string(nics[i].project));
        json_array_append_new(net, np);
    }
    assert_int_equal(render(s, net, &o, &conf, &hosts, &err), 0);
    assert_string_equal(names.ptr, "10.20.0.60 vm1.cloud.test vm1\n"
                                   "10.20.0.61 host-10-20-0-61.cloud.test host-10-20-0-61\n"
                                   "10.20.0.62 vm1.cloud.test vm1\n");
    /* a port created later does not take a name in use, whatever its address: the first
     * port (created_at) keeps it; without created_at the lower address does */
    json_t *late = named_port("n4", "fa:16:3e:00:03:04", "10.20.0.59", "vm1");
    json_object_set_new(late, "created_at", json_string("2026-11-26T10:00:01Z"));
    for (size_t i = 0; i < ELEMENTSOF(nics); i++)
        json_object_set_new(json_array_get(net, i), "created_at",
                            json_string("2026-11-26T10:00:00Z"));
    json_array_append_new(net, late);
    assert_int_equal(render(s, net, &o, &conf, &hosts, &err), 0);
    assert_string_equal(names.ptr, "10.20.0.59 host-10-20-0-59.cloud.test host-10-20-0-59\n"
                                   "10.20.0.60 vm1.cloud.test vm1\n"
                                   "10.20.0.61 host-10-20-0-61.cloud.test host-10-20-0-61\n"
                                   "10.20.0.62 vm1.cloud.test vm1\n");
    json_array_remove(net, ELEMENTSOF(nics));
    for (size_t i = 0; i < ELEMENTSOF(nics); i++)
        json_object_del(json_array_get(net, i), "created_at");

    /* ports without a device are each their own */
    for (size_t i = 0; i < ELEMENTSOF(nics); i++)
        json_object_set_new(json_array_get(net, i), "device_id", json_string(""));
    assert_int_equal(render(s, net, &o, &conf, &hosts, &err), 0);
    assert_string_equal(names.ptr, "10.20.0.60 vm1.cloud.test vm1\n"
                                   "10.20.0.61 host-10-20-0-61.cloud.test host-10-20-0-61\n"
                                   "10.20.0.62 host-10-20-0-62.cloud.test host-10-20-0-62\n");
    json_decref(net);

    /* bad options are refused */
    static const char *bad_up[] = {
        "1.2.3.4,",
        ",1.2.3.4",
        "1.2.3.4\nserver=6.6.6.6",
        "1.2.3",
        "1.2.3.4 5.6.7.8",
        "::1",
        "1,2,3,4,5,6,7,8,9",
        "1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad_up); i++) {
        DhcpOpts b = {.dns_upstream = bad_up[i]};
        if (render(s, p, &b, &conf, &hosts, &err) != -EINVAL)
            fail_msg("dns_upstream %s accepted", bad_up[i]);
        assert_null(dhcp_new(&b));
    }
    DhcpOpts b = {.dns_domain = "a b"};
    assert_int_equal(render(s, p, &b, &conf, &hosts, &err), -EINVAL);
    assert_null(dhcp_new(&b));
    assert_false(dhcp_dns_ok("1.2.3.4,", NULL));
    assert_false(dhcp_dns_ok(NULL, "bad domain"));
    assert_true(dhcp_dns_ok("192.0.2.1", "Corp.Example."));
    assert_true(dhcp_dns_ok(NULL, NULL) && dhcp_dns_ok("", ""));
    /* the agent's settings reach the Dhcp; none means no upstream and the default domain */
    DhcpOpts ao = {.dns_upstream = "192.0.2.1", .dns_domain = "Corp.Example."};
    Dhcp *d = dhcp_new(&ao);
    assert_non_null(d);
    assert_string_equal(d->dns_upstream, "192.0.2.1");
    assert_string_equal(d->dns_domain, "corp.example");
    d->stopping = true;
    maybe_free(d);
    ao = (DhcpOpts){.dns_upstream = "", .dns_domain = ""};
    d = dhcp_new(&ao);
    assert_string_equal(d->dns_upstream, "");
    assert_string_equal(d->dns_domain, "openstacklocal");
    d->stopping = true;
    maybe_free(d);

    json_decref(s);
    json_decref(p);
    sov_buf_release(&conf);
    sov_buf_release(&hosts);
    sov_buf_release(&err);
}

/* ---- supervision against a fake dnsmasq ---- */

typedef struct Fix {
    char dir[64];
    char sub[200];
    char script[128];
    uv_loop_t loop;
} Fix;

/* Records its pid and every SIGHUP next to its config; exits on SIGTERM. */
static const char fake_dnsmasq[] =
    "#!/bin/sh\n"
    "d=${2#--conf-file=}; d=${d%/conf}\n"
    "[ \"$1\" = --keep-in-foreground ] || exit 3\n"
    "trap 'echo hup >> \"$d/hups\"' HUP\n"
    "trap 'kill $s 2>/dev/null; exit 0' TERM\n"
    "echo $$ > \"$d/pid\"\n" /* as dnsmasq's pid-file, before fakepid (what tests wait for) */
    "echo $$ > \"$d/fakepid.tmp\" && mv \"$d/fakepid.tmp\" \"$d/fakepid\"\n"
    "while :; do sleep 5 & s=$!; wait $s; kill $s 2>/dev/null; done\n";

static int setup(void **state)
{
    Fix *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/netdhcp.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    chmod(f->dir, 0755);
    snprintf(f->sub, sizeof(f->sub), "%s/dhcp/%s", f->dir, SUBNET);
    snprintf(f->script, sizeof(f->script), "%s/fake-dnsmasq", f->dir);
    FILE *s = fopen(f->script, "w");
    assert_non_null(s);
    fputs(fake_dnsmasq, s);
    fclose(s);
    chmod(f->script, 0755);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fix *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle was closed */
    free(f);
    return 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef bool (*Pred)(Fix *f, const void *arg);

/* Runs the loop until pred holds, for at most 10 s. */
static bool run_until(Fix *f, Pred pred, const void *arg)
{
    long end = now_ms() + 10000;
    while (now_ms() < end) {
        if (pred(f, arg))
            return true;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    return pred(f, arg);
}

static long read_long(const Fix *f, const char *name)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", f->sub, name);
    FILE *fp = fopen(p, "r");
    long v = 0;
    if (fp) {
        if (fscanf(fp, "%ld", &v) != 1)
            v = 0;
        fclose(fp);
    }
    return v;
}

static int count_lines(const Fix *f, const char *name)
{
    char p[300], line[64];
    snprintf(p, sizeof(p), "%s/%s", f->sub, name);
    FILE *fp = fopen(p, "r");
    int n = 0;
    while (fp && fgets(line, sizeof(line), fp))
        n++;
    if (fp)
        fclose(fp);
    return n;
}

static bool fake_pid_is(Fix *f, const void *arg)
{
    return read_long(f, "fakepid") == *(const long *)arg;
}

static bool fake_pid_not(Fix *f, const void *arg)
{
    long v = read_long(f, "fakepid");
    return v != 0 && v != *(const long *)arg;
}

static bool hups_at_least(Fix *f, const void *arg)
{
    return count_lines(f, "hups") >= *(const int *)arg;
}

static bool dir_gone(Fix *f, const void *arg)
{
    return access(f->sub, F_OK) != 0 && !uv_loop_alive(&f->loop);
}

/* Port p5 joins the subnet: the hosts file gets its line and the running dnsmasq its first
 * SIGHUP. */
static void add_port(Fix *f, Dhcp *d, json_t *s, json_t *p)
{
    SovBuf err = SOV_BUF_INIT;
    json_array_append_new(p, port_doc("p5", "fa:16:3e:00:00:0e", SUBNET, "10.20.0.12"));
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    sov_buf_release(&err);
    int one = 1;
    assert_true(run_until(f, hups_at_least, &one));
    assert_int_equal(count_lines(f, "hosts"), 3);
}

static void test_supervise(void **state)
{
    Fix *f = *state;
    DhcpOpts o = {.dnsmasq = f->script};
    Dhcp *d = dhcp_new(&o);
    assert_non_null(d);
    json_t *s = subnet_doc(), *p = ports_doc();
    SovBuf err = SOV_BUF_INIT;
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    assert_true(dhcp_running(d));
    long pid = dhcp_pid(d);
    assert_true(run_until(f, fake_pid_is, &pid));
    assert_int_equal(count_lines(f, "hosts"), 2);

    /* the same documents again: nothing to do */
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    assert_int_equal(dhcp_pid(d), pid);

    /* a new port: the hosts file grows and dnsmasq gets SIGHUP, not a restart */
    add_port(f, d, s, p);
    assert_int_equal(dhcp_pid(d), pid);

    /* a new gateway: restart */
    json_object_set_new(s, "gateway_ip", json_string("10.20.0.254"));
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    assert_true(run_until(f, fake_pid_not, &pid));
    pid = read_long(f, "fakepid");
    assert_int_equal(dhcp_pid(d), pid);

    /* a bad update is refused and leaves the running one alone */
    json_object_set_new(s, "gateway_ip", json_string("192.0.2.1"));
    assert_true(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err) < 0);
    assert_true(dhcp_running(d));
    assert_int_equal(dhcp_pid(d), pid);

    /* killed: restarted */
    kill((pid_t)pid, SIGKILL);
    assert_true(run_until(f, fake_pid_not, &pid));
    assert_true(dhcp_running(d));
    pid = dhcp_pid(d);

    /* enable_dhcp false stops it, removes the files and frees d */
    json_object_set_new(s, "enable_dhcp", json_false());
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    assert_null(d);
    assert_true(run_until(f, dir_gone, NULL));
    assert_true(kill((pid_t)pid, 0) < 0);
    json_decref(s);
    json_decref(p);
    sov_buf_release(&err);
}

/* Whether pid ended (gone, or a zombie: a detached child nobody reaps until the test does). */
static bool ended_pid(long pid)
{
    char p[64], st[256];
    snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
    FILE *fp = fopen(p, "r");
    if (!fp)
        return true;
    size_t n = fread(st, 1, sizeof(st) - 1, fp);
    fclose(fp);
    st[n] = '\0';
    char *r = strrchr(st, ')');
    return !r || r[2] == 'Z' || r[2] == 'X';
}

static bool pid_ended(Fix *f, const void *arg)
{
    (void)f;
    return ended_pid(*(const long *)arg);
}

/* Runs the loop until it has no handles left (a detached or stopped Dhcp closed them all). */
static bool loop_idle(Fix *f, const void *arg)
{
    (void)arg;
    return !uv_loop_alive(&f->loop);
}

/* A first agent's Dhcp serving s and p, its fake dnsmasq running (pid in *pid). */
static Dhcp *first_agent(Fix *f, const DhcpOpts *o, json_t *s, json_t *p, long *pid)
{
    SovBuf err = SOV_BUF_INIT;
    Dhcp *d = dhcp_new(o);
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    sov_buf_release(&err);
    *pid = dhcp_pid(d);
    assert_true(run_until(f, fake_pid_is, pid));
    return d;
}

/* The agent holding d exits (dhcp_detach) and the next one applies s and p: its Dhcp. */
static Dhcp *next_agent(Fix *f, Dhcp *d, const DhcpOpts *o, json_t *s, json_t *p)
{
    SovBuf err = SOV_BUF_INIT;
    dhcp_detach(d);
    assert_true(run_until(f, loop_idle, NULL));
    d = dhcp_new(o);
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    sov_buf_release(&err);
    return d;
}

/* d did not keep the dnsmasq *pid: it ended (reaped here, its parent's place) and *pid becomes
 * d's own. */
static void replaced(Fix *f, const Dhcp *d, long *pid)
{
    assert_true(dhcp_pid(d) != *pid);
    assert_true(run_until(f, pid_ended, pid));
    assert_int_equal(waitpid((pid_t)*pid, NULL, 0), *pid);
    *pid = dhcp_pid(d);
}

/* An agent that exits (dhcp_detach) leaves its dnsmasq serving; the next one adopts it when it
 * runs the config it would write (same pid, a SIGHUP for the hosts, watched: it is restarted
 * when it dies) and replaces it otherwise; dhcp_sweep ends what serves a subnet gone since. */
static void test_adopt(void **state)
{
    Fix *f = *state;
    DhcpOpts o = {.dnsmasq = f->script};
    json_t *s = subnet_doc(), *p = ports_doc();
    SovBuf err = SOV_BUF_INIT;
    long pid;
    Dhcp *d = first_agent(f, &o, s, p, &pid);

    /* the same documents: kept, and told to re-read its hosts */
    d = next_agent(f, d, &o, s, p);
    assert_true(dhcp_running(d));
    assert_int_equal(dhcp_pid(d), pid);
    assert_int_equal(read_long(f, "pid"), pid);
    int one = 1;
    assert_true(run_until(f, hups_at_least, &one));
    /* a new port: SIGHUP through the pidfd, same process */
    json_array_append_new(p, port_doc("p5", "fa:16:3e:00:00:0e", SUBNET, "10.20.0.12"));
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    int two = 2;
    assert_true(run_until(f, hups_at_least, &two));
    assert_int_equal(dhcp_pid(d), pid);
    assert_int_equal(count_lines(f, "hosts"), 3);

    /* it dies: restarted as a child of this agent */
    kill((pid_t)pid, SIGKILL);
    assert_true(run_until(f, fake_pid_not, &pid));
    assert_int_equal(waitpid((pid_t)pid, NULL, 0), pid); /* the earlier "agent" reaps it */
    pid = read_long(f, "fakepid");
    assert_int_equal(dhcp_pid(d), pid);

    /* a new gateway while no agent ran: the left dnsmasq is replaced */
    json_object_set_new(s, "gateway_ip", json_string("10.20.0.254"));
    d = next_agent(f, d, &o, s, p);
    replaced(f, d, &pid);
    assert_true(run_until(f, fake_pid_is, &pid));
    /* a config written but its dnsmasq not restarted yet when the agent went (conf.running is
     * gone first): not adopted */
    char cr[300];
    snprintf(cr, sizeof(cr), "%s/conf.running", f->sub);
    assert_int_equal(unlink(cr), 0);
    d = next_agent(f, d, &o, s, p);
    replaced(f, d, &pid);
    assert_true(run_until(f, fake_pid_is, &pid));
    assert_int_equal(access(cr, F_OK), 0);

    /* the subnet went while no agent ran: the sweep ends its dnsmasq and removes its files; a
     * subnet the agent keeps is left alone */
    dhcp_detach(d);
    assert_true(run_until(f, loop_idle, NULL));
    json_t *keep = json_pack("{s:{}}", SUBNET);
    dhcp_sweep(f->dir, keep);
    assert_false(ended_pid(pid));
    assert_int_equal(access(f->sub, F_OK), 0);
    json_decref(keep);
    keep = json_object();
    dhcp_sweep(f->dir, keep);
    assert_true(run_until(f, pid_ended, &pid));
    assert_int_equal(waitpid((pid_t)pid, NULL, 0), pid);
    assert_true(run_until(f, dir_gone, NULL));
    json_decref(keep);

    /* a dnsmasq whose binary was replaced since (an upgrade) is restarted, not kept */
    char cmd[700], sh[200];
    snprintf(sh, sizeof(sh), "%s/sh-old", f->dir);
    snprintf(cmd, sizeof(cmd), "cp /bin/sh '%s' && sed -i '1s|.*|#!%s|' '%s'", sh, sh, f->script);
    assert_int_equal(system(cmd), 0);
    d = first_agent(f, &o, s, p, &pid);
    assert_int_equal(unlink(sh), 0);
    d = next_agent(f, d, &o, s, p);
    replaced(f, d, &pid);
    dhcp_stop(d);
    assert_true(run_until(f, dir_gone, NULL));
    json_decref(s);
    json_decref(p);
    sov_buf_release(&err);
}

/* A first apply that fails leaves the earlier agent's dnsmasq alone; when the subnet then goes,
 * dhcp_stop ends it if the apply got as far as the subnet's directory, dhcp_sweep if not. */
static void test_failed_first_apply(void **state)
{
    Fix *f = *state;
    DhcpOpts o = {.dnsmasq = f->script};
    json_t *s = subnet_doc(), *p = ports_doc();
    SovBuf err = SOV_BUF_INIT;
    long pid;
    Dhcp *d = first_agent(f, &o, s, p, &pid);
    dhcp_detach(d);
    assert_true(run_until(f, loop_idle, NULL));

    /* refused before the directory (a gateway outside the subnet) */
    json_object_set_new(s, "gateway_ip", json_string("192.0.2.1"));
    d = dhcp_new(&o);
    assert_true(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err) < 0);
    dhcp_stop(d);
    assert_true(run_until(f, loop_idle, NULL));
    assert_false(ended_pid(pid));
    json_t *keep = json_object();
    dhcp_sweep(f->dir, keep);
    assert_true(run_until(f, pid_ended, &pid));
    assert_int_equal(waitpid((pid_t)pid, NULL, 0), pid);
    assert_true(run_until(f, dir_gone, NULL));

    /* refused at the files (the hosts file cannot be replaced) */
    json_object_set_new(s, "gateway_ip", json_string("10.20.0.1"));
    d = first_agent(f, &o, s, p, &pid);
    dhcp_detach(d);
    assert_true(run_until(f, loop_idle, NULL));
    char h[300];
    snprintf(h, sizeof(h), "%s/hosts", f->sub);
    assert_int_equal(unlink(h), 0);
    assert_int_equal(mkdir(h, 0755), 0);
    d = dhcp_new(&o);
    assert_true(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err) < 0);
    assert_false(ended_pid(pid));
    dhcp_stop(d);
    assert_true(run_until(f, pid_ended, &pid));
    assert_int_equal(waitpid((pid_t)pid, NULL, 0), pid);
    json_decref(keep);
    json_decref(s);
    json_decref(p);
    sov_buf_release(&err);
}

/* Whether pid is gone from /proc (libuv reaped it, so its exit callback ran). */
static bool reaped(Fix *f, const void *arg)
{
    (void)f;
    char p[64];
    snprintf(p, sizeof(p), "/proc/%ld", *(const long *)arg);
    return access(p, F_OK) != 0;
}

/* DHCP turned off and on again within the stop grace period: the new server takes the subnet's
 * directory over, and the old one's end leaves the new one's files alone. */
static void test_retake(void **state)
{
    Fix *f = *state;
    DhcpOpts o = {.dnsmasq = f->script};
    json_t *s = subnet_doc(), *p = ports_doc();
    SovBuf err = SOV_BUF_INIT;
    long old;
    Dhcp *d = first_agent(f, &o, s, p, &old);
    dhcp_stop(d); /* SIGTERM sent; its end is handled on a later loop turn */
    d = dhcp_new(&o);
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, p, &d, &err), 0);
    long pid = dhcp_pid(d);
    assert_int_not_equal(pid, old);
    assert_true(run_until(f, reaped, &old));
    assert_true(run_until(f, fake_pid_is, &pid));
    assert_true(dhcp_running(d));
    assert_int_equal(count_lines(f, "hosts"), 2);
    assert_int_equal(read_long(f, "pid"), pid);

    /* later changes still reach the files and the server */
    add_port(f, d, s, p);
    assert_int_equal(dhcp_pid(d), pid);

    dhcp_stop(d);
    assert_true(run_until(f, dir_gone, NULL));
    json_decref(s);
    json_decref(p);
    sov_buf_release(&err);
}

/* A dnsmasq that ignores SIGTERM is killed after the grace period, and the files still go. */
static void test_stop_escalates(void **state)
{
    Fix *f = *state;
    FILE *sc = fopen(f->script, "w");
    assert_non_null(sc);
    fputs("#!/bin/sh\n"
          "d=${2#--conf-file=}; d=${d%/conf}\n"
          "trap '' TERM\n"
          "echo $$ > \"$d/fakepid.tmp\" && mv \"$d/fakepid.tmp\" \"$d/fakepid\"\n"
          "while :; do sleep 1; done\n",
          sc);
    fclose(sc);
    DhcpOpts o = {.dnsmasq = f->script};
    Dhcp *d = dhcp_new(&o);
    json_t *s = subnet_doc();
    SovBuf err = SOV_BUF_INIT;
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, NULL, &d, &err), 0);
    long pid = dhcp_pid(d);
    assert_true(run_until(f, fake_pid_is, &pid));
    dhcp_stop(d);
    assert_true(run_until(f, dir_gone, NULL));
    assert_true(kill((pid_t)pid, 0) < 0);
    json_decref(s);
    sov_buf_release(&err);
}

static void test_missing_binary(void **state)
{
    Fix *f = *state;
    DhcpOpts o = {.dnsmasq = "/nonexistent/dnsmasq"};
    Dhcp *d = dhcp_new(&o);
    json_t *s = subnet_doc();
    SovBuf err = SOV_BUF_INIT;
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, NULL, &d, &err), 0);
    assert_false(dhcp_running(d));
    uv_run(&f->loop, UV_RUN_NOWAIT);
    dhcp_stop(d);
    assert_true(run_until(f, dir_gone, NULL));
    /* a relative state directory is the agent's: dnsmasq (running in /) gets absolute paths */
    char cwd[512], st[128], conf[400], want[400];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(st, sizeof(st), "%s/st", f->dir);
    assert_int_equal(mkdir(st, 0755), 0);
    assert_int_equal(chdir(f->dir), 0);
    d = dhcp_new(&o);
    assert_int_equal(dhcp_apply(&f->loop, "st", NULL, "br0", "10.20.0.2", s, NULL, &d, &err), 0);
    assert_int_equal(chdir(cwd), 0);
    snprintf(conf, sizeof(conf), "%s/dhcp/%s/conf", st, SUBNET);
    snprintf(want, sizeof(want), "\ndhcp-hostsfile=%s/dhcp/%s/hosts\n", st, SUBNET);
    FILE *fp = fopen(conf, "r");
    assert_non_null(fp);
    char text[4096];
    text[fread(text, 1, sizeof(text) - 1, fp)] = '\0';
    fclose(fp);
    assert_non_null(strstr(text, want));
    dhcp_stop(d);
    assert_true(run_until(f, dir_gone, NULL));
    assert_int_equal(access(conf, F_OK), -1);
    /* a state directory others cannot search is refused up front */
    chmod(f->dir, 0700);
    d = NULL;
    assert_int_equal(dhcp_apply(&f->loop, f->dir, NULL, "br0", "10.20.0.2", s, NULL, &d, &err),
                     -EACCES);
    assert_null(d);
    json_decref(s);
    sov_buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_dns),
        cmocka_unit_test_setup_teardown(test_supervise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_first_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    sov_buf_release(&names);
    return r;
}
