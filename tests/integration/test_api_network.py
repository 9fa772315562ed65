# SPDX-License-Identifier: Apache-2.0
"""sov-api's Neutron v2.0 with Debian's openstack CLI and raw requests: the seed's VPC
(networks, subnets with CIDR checks, an external network, a router with its gateway and an
interface, security groups and rules, ports, floating IPs), the default security group, project
isolation, IP exhaustion, delete-order refusals, quotas and hostile input. Every refusal is
checked to have changed nothing."""
import json
import subprocess
import time

import pytest
from conftest import BIN, raw_http

N = "/network/v2.0"


def neutron_error(doc):
    assert doc and set(doc["NeutronError"]) == {"type", "message", "detail"}, doc
    return doc["NeutronError"]["type"], doc["NeutronError"]["message"]


def failed(p, *needles):
    """A refused CLI call: non-zero exit and every needle in its stderr."""
    assert p.returncode != 0, p.stdout
    for n in needles:
        assert n in p.stderr, p.stderr
    return p.stderr


def post(api, tok, path, key, body):
    return api.request("POST", N + path, {key: body}, tok)


@pytest.fixture
def acme(api):
    return api.make_project("acme")


def test_version_documents_and_extensions(api):
    for path in ("/network", "/network/"):
        st, doc, _ = api.request("GET", path)
        assert st == 200
        v = doc["versions"][0]
        assert v["id"] == "v2.0" and v["status"] == "CURRENT"
        assert v["links"][0]["href"] == api.url + "/network/v2.0/"
    for path in (N, N + "/"):
        st, doc, _ = api.request("GET", path)
        assert st == 200
        assert {"networks", "subnets", "ports", "routers", "floatingips", "security_groups",
                "security_group_rules"} <= {r["collection"] for r in doc["resources"]}
    tok = api.token()
    st, doc, _ = api.request("GET", N + "/extensions", token=tok)
    aliases = {e["alias"] for e in doc["extensions"]}
    assert {"router", "ext-gw-mode", "security-group", "quotas", "external-net",
            "standard-attr-description", "standard-attr-timestamp", "project-id"} <= aliases
    st, doc, _ = api.request("GET", N + "/extensions/router", token=tok)
    assert st == 200 and doc["extension"]["alias"] == "router"
    st, doc, _ = api.request("GET", N + "/extensions/qos", token=tok)
    assert st == 404
    st, doc, _ = api.request("GET", N + "/networks")
    assert st == 401
    aliases_cli = {e["Alias"] for e in api.openstack("extension", "list", "--network")}
    assert "security-group" in aliases_cli


def test_seed_vpc_with_the_cli(api, acme):
    env, tok = acme["env"], acme["token"]
    os_ = lambda *a, **kw: api.openstack(*a, env=env, **kw)  # noqa: E731
    get = lambda path: api.request("GET", N + path, token=tok)[1]  # noqa: E731
    vpc = os_("network", "create", "vpc")
    assert vpc["mtu"] == 1450 and vpc["status"] == "ACTIVE"
    assert vpc["project_id"] == acme["project_id"]
    pub = os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.0/24", "public")
    assert pub["gateway_ip"] == "10.0.1.1" and pub["enable_dhcp"] is True
    assert pub["allocation_pools"] == [{"start": "10.0.1.2", "end": "10.0.1.254"}]
    priv = os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.2.0/24", "private")
    # refusals: an overlapping CIDR, a gateway outside the subnet; nothing is created
    failed(os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.128/25", "x",
               check=False), "overlaps with another subnet")
    failed(os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.3.0/24",
               "--gateway", "10.0.9.1", "y", check=False), "Gateway")
    assert sorted(s["Name"] for s in os_("subnet", "list")) == ["private", "public"]
    assert sorted(get("/networks/" + vpc["id"])["network"]["subnets"]) == sorted(
        [pub["id"], priv["id"]])

    # the external network is the admin's, visible to everyone
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "x", "router:external": True})
    assert st == 403 and neutron_error(doc)[0] == "PolicyNotAuthorized"
    ext = api.openstack("network", "create", "--external", "ext")
    assert ext["router:external"] is True and ext["mtu"] == 1500  # an uplink's, not VXLAN's
    api.openstack("subnet", "create", "--network", "ext", "--subnet-range", "203.0.113.0/24",
                  "--no-dhcp", "ext-sub")
    assert {n["Name"] for n in os_("network", "list")} == {"vpc", "ext"}

    r1 = os_("router", "create", "r1")
    assert r1["external_gateway_info"] is None and r1["status"] == "ACTIVE"
    os_("router", "set", "--external-gateway", "ext", "r1", fmt=False)
    os_("router", "add", "subnet", "r1", "private", fmt=False)
    r1 = os_("router", "show", "r1")
    gw = r1["external_gateway_info"]
    assert gw["network_id"] == ext["id"] and gw["enable_snat"] is True
    assert gw["external_fixed_ips"][0]["ip_address"].startswith("203.0.113.")
    rif = get("/ports?device_owner=network:router_interface")["ports"]
    assert len(rif) == 1 and rif[0]["fixed_ips"][0]["ip_address"] == "10.0.2.1"
    assert rif[0]["device_id"] == r1["id"]
    st, doc, _ = api.request("PUT", f"{N}/routers/{r1['id']}/add_router_interface",
                             {"subnet_id": priv["id"]}, tok)
    assert st == 400 and "already has a port on subnet" in neutron_error(doc)[1]

    web = os_("security", "group", "create", "web")
    assert {(r["direction"], r["ethertype"]) for r in web["rules"]} == {
        ("egress", "IPv4"), ("egress", "IPv6")}
    rule = os_("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
               "--remote-ip", "10.0.1.0/24", "web")
    assert (rule["port_range_min"], rule["port_range_max"]) == (22, 22)
    assert rule["remote_ip_prefix"] == "10.0.1.0/24" and rule["protocol"] == "tcp"
    assert rule["security_group_id"] == web["id"]
    failed(os_("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port",
               "30:20", "web", check=False))  # refused by the CLI itself, and by the API:
    st, doc, _ = post(api, tok, "/security-group-rules", "security_group_rule", {
        "security_group_id": web["id"], "direction": "ingress", "protocol": "tcp",
        "port_range_min": 30, "port_range_max": 20})
    assert st == 400
    assert neutron_error(doc) == ("SecurityGroupInvalidPortRange",
                                  "For TCP/UDP protocols, port_range_min must be <= port_range_max")
    assert len(os_("security", "group", "rule", "list", "web")) == 3

    p1 = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=private",
             "--security-group", "web", "p1")
    assert p1["fixed_ips"] == [{"subnet_id": priv["id"], "ip_address": "10.0.2.2"}]
    assert p1["mac_address"].startswith("fa:16:3e:") and p1["status"] == "DOWN"
    assert p1["security_group_ids"] == [web["id"]]
    found = os_("port", "list", "--fixed-ip", "ip-address=10.0.2.2")
    assert [p["ID"] for p in found] == [p1["id"]]

    fip = os_("floating", "ip", "create", "ext")
    addr = fip["floating_ip_address"]
    assert addr.startswith("203.0.113.") and fip["status"] == "DOWN" and fip["port_id"] is None
    os_("floating", "ip", "set", "--port", "p1", addr, fmt=False)
    fip = os_("floating", "ip", "show", addr)
    assert fip["port_id"] == p1["id"] and fip["fixed_ip_address"] == "10.0.2.2"
    assert fip["router_id"] == r1["id"] and fip["status"] == "ACTIVE"
    assert [f["Floating IP Address"] for f in os_("floating", "ip", "list")] == [addr]

    # delete order: a network with ports, a router with interfaces, a subnet in use...
    failed(os_("network", "delete", "vpc", fmt=False, check=False), "vpc")
    for path, kind in ((f"/networks/{vpc['id']}", "NetworkInUse"),
                       (f"/routers/{r1['id']}", "RouterInUse"),
                       (f"/subnets/{priv['id']}", "SubnetInUse"),
                       (f"/ports/{rif[0]['id']}", "ServicePortInUse")):
        st, doc, _ = api.request("DELETE", N + path, token=tok)
        assert st == 409 and neutron_error(doc)[0] == kind
    # ...and an interface a floating IP depends on
    st, doc, _ = api.request("PUT", f"{N}/routers/{r1['id']}/remove_router_interface",
                             {"subnet_id": priv["id"]}, tok)
    assert st == 409 and neutron_error(doc)[0] == "RouterInterfaceInUseByFloatingIP"
    # (the project's ports besides the DHCP ports of its subnets)
    assert len([p for p in get("/ports")["ports"] if p["device_owner"] != "network:dhcp"]) == 2
    assert len(get("/subnets")["subnets"]) == 3

    # teardown in the right order works, and frees the external addresses
    os_("port", "delete", "p1", fmt=False)
    assert get("/floatingips/" + fip["id"])["floatingip"]["port_id"] is None  # unlinked
    os_("floating", "ip", "delete", addr, fmt=False)
    os_("router", "remove", "subnet", "r1", "private", fmt=False)
    os_("router", "delete", "r1", fmt=False)
    os_("security", "group", "delete", "web", fmt=False)
    os_("network", "delete", "vpc", fmt=False)
    assert [s["name"] for s in get("/subnets")["subnets"]] == ["ext-sub"]
    api.openstack("network", "delete", "ext", fmt=False)  # no gateway or FIP port left on it
    assert api.openstack("network", "list") == []


def test_default_security_group(api, acme):
    env = acme["env"]
    groups = api.openstack("security", "group", "list", env=env)
    assert [g["Name"] for g in groups] == ["default"]
    gid = groups[0]["ID"]
    rules = api.openstack("security", "group", "rule", "list", "--long", "default", env=env)
    got = sorted((r["Direction"], r["Ethertype"], r["Remote Security Group"]) for r in rules)
    assert got == [("egress", "IPv4", None), ("egress", "IPv6", None),
                   ("ingress", "IPv4", gid), ("ingress", "IPv6", gid)]
    st, doc, _ = api.request("DELETE", N + "/security-groups/" + gid, token=acme["token"])
    assert st == 409 and neutron_error(doc)[0] == "SecurityGroupCannotRemoveDefault"
    # a second "default" cannot be made, and the list still has one
    st, doc, _ = post(api, acme["token"], "/security-groups", "security_group", {"name": "default"})
    assert st == 409
    st, doc, _ = api.request("GET", N + "/security-groups?name=default", token=acme["token"])
    assert [g["id"] for g in doc["security_groups"]] == [gid]
    # ports get the default group unless port security is off
    st, net, _ = post(api, acme["token"], "/networks", "network", {"name": "n"})
    nid = net["network"]["id"]
    st, doc, _ = post(api, acme["token"], "/ports", "port", {"network_id": nid})
    assert st == 201 and doc["port"]["security_groups"] == [gid]
    assert doc["port"]["fixed_ips"] == []  # no subnet, no address
    st, doc, _ = post(api, acme["token"], "/ports", "port",
                      {"network_id": nid, "port_security_enabled": False})
    assert st == 201 and doc["port"]["security_groups"] == []
    st, doc, _ = api.request("DELETE", N + "/security-groups/" + gid, token=acme["token"])
    assert st == 409
    # a group in use by a port stays; port security off refuses groups
    st, doc, _ = post(api, acme["token"], "/security-groups", "security_group", {"name": "g2"})
    g2 = doc["security_group"]["id"]
    st, doc, _ = post(api, acme["token"], "/ports", "port",
                      {"network_id": nid, "security_groups": [g2]})
    port = doc["port"]
    st, doc, _ = api.request("DELETE", N + "/security-groups/" + g2, token=acme["token"])
    assert st == 409 and neutron_error(doc)[0] == "SecurityGroupInUse"
    st, doc, _ = api.request("PUT", f"{N}/ports/{port['id']}",
                             {"port": {"port_security_enabled": False}}, acme["token"])
    assert st == 409 and neutron_error(doc)[0] == "PortSecurityPortHasSecurityGroup"
    st, doc, _ = api.request("PUT", f"{N}/ports/{port['id']}", {"port": {
        "port_security_enabled": False, "security_groups": []}}, acme["token"])
    assert st == 200 and doc["port"]["security_groups"] == []
    assert api.request("DELETE", N + "/security-groups/" + g2, token=acme["token"])[0] == 204
    # bindings are the admin's business, and hidden from members
    st, doc, _ = post(api, acme["token"], "/ports", "port",
                      {"network_id": nid, "binding:host_id": "node1"})
    assert st == 403
    st, doc, _ = api.request("PUT", f"{N}/ports/{port['id']}",
                             {"port": {"binding:host_id": "node1"}}, api.token())
    assert st == 200 and doc["port"]["binding:host_id"] == "node1"
    st, doc, _ = api.request("GET", f"{N}/ports/{port['id']}", token=acme["token"])
    assert "binding:host_id" not in doc["port"]
    st, doc, _ = api.request("GET", f"{N}/ports?binding:host_id=node1", token=api.token())
    assert [p["id"] for p in doc["ports"]] == [port["id"]]


def test_rule_validation(api, acme):
    tok = acme["token"]
    st, doc, _ = post(api, tok, "/security-groups", "security_group", {"name": "g"})
    gid = doc["security_group"]["id"]

    def rule(**kw):
        body = {"security_group_id": gid, "direction": "ingress"}
        body.update(kw)
        return post(api, tok, "/security-group-rules", "security_group_rule", body)

    bad = [
        (dict(protocol="tcp", port_range_min=0, port_range_max=10),
         "SecurityGroupInvalidPortValue"),
        (dict(protocol="tcp", port_range_min=1, port_range_max=70000),
         "SecurityGroupInvalidPortValue"),
        (dict(protocol="icmp", port_range_min=300), "SecurityGroupInvalidIcmpValue"),
        (dict(protocol="icmp", port_range_max=3), "SecurityGroupMissingIcmpType"),
        (dict(port_range_min=22, port_range_max=22), "SecurityGroupProtocolRequiredWithPorts"),
        (dict(protocol="gre", port_range_min=1, port_range_max=2),
         "SecurityGroupInvalidProtocolForPortRange"),
        (dict(protocol="bogus"), "SecurityGroupRuleInvalidProtocol"),
        (dict(protocol=256), "SecurityGroupRuleInvalidProtocol"),
        (dict(protocol="+6"), "SecurityGroupRuleInvalidProtocol"),
        (dict(protocol=" 6"), "SecurityGroupRuleInvalidProtocol"),
        (dict(protocol="-0"), "SecurityGroupRuleInvalidProtocol"),
        (dict(ethertype="IPv4", remote_ip_prefix="2001:db8::/64"),
         "SecurityGroupRuleParameterConflict"),
        (dict(remote_ip_prefix="10.0.0.0/8", remote_group_id=gid),
         "SecurityGroupRemoteGroupAndRemoteIpPrefix"),
        (dict(ethertype="IPv4", protocol="icmpv6"), "SecurityGroupEthertypeConflictWithProtocol"),
        (dict(direction="sideways"), "HTTPBadRequest"),
        (dict(ethertype="IPv5"), "HTTPBadRequest"),
        (dict(remote_ip_prefix="10.0.0.300/8"), "HTTPBadRequest"),
    ]
    for body, want in bad:
        st, doc, _ = rule(**body)
        assert st == 400 and neutron_error(doc)[0] == want, (body, doc)
    st, doc, _ = rule(remote_group_id="5a0e8a70-0000-4000-8000-000000000000")
    assert st == 404 and neutron_error(doc)[0] == "SecurityGroupNotFound"
    # accepted forms: numbers, "any", icmp type/code, a prefix normalised to its network
    st, doc, _ = rule(protocol="6", port_range_min=80, port_range_max=81)
    assert st == 201 and doc["security_group_rule"]["protocol"] == "6"
    st, doc, _ = rule(protocol="tcp", port_range_min=80, port_range_max=81)
    assert st == 409 and neutron_error(doc)[0] == "SecurityGroupRuleExists"  # same as "6"
    st, doc, _ = rule(protocol="icmp", port_range_min=8, port_range_max=0,
                      remote_ip_prefix="192.168.7.9/24")
    assert st == 201 and doc["security_group_rule"]["remote_ip_prefix"] == "192.168.7.0/24"
    st, doc, _ = rule(protocol=None, ethertype="IPv6", remote_group_id=gid)
    assert st == 201 and doc["security_group_rule"]["protocol"] is None
    st, doc, _ = api.request("GET", f"{N}/security-group-rules?security_group_id={gid}", token=tok)
    assert len(doc["security_group_rules"]) == 5  # two egress defaults + three
    st, doc, _ = api.request("GET", f"{N}/security-groups/{gid}", token=tok)
    assert len(doc["security_group"]["security_group_rules"]) == 5


def test_projects_are_isolated(api, acme):
    beta = api.make_project("beta")
    ids = {}
    for who in (acme, beta):  # the same name and CIDR in two projects
        st, doc, _ = post(api, who["token"], "/networks", "network", {"name": "net"})
        assert st == 201
        nid = doc["network"]["id"]
        st, doc, _ = post(api, who["token"], "/subnets", "subnet",
                          {"network_id": nid, "cidr": "10.0.0.0/24", "ip_version": 4})
        assert st == 201, doc
        st, port, _ = post(api, who["token"], "/ports", "port", {"network_id": nid})
        assert port["port"]["fixed_ips"][0]["ip_address"] == "10.0.0.2"  # separate IPAM
        ids[who["project_id"]] = (nid, doc["subnet"]["id"], port["port"]["id"])
    a_net, a_sub, a_port = ids[acme["project_id"]]
    b = beta["token"]
    for path, kind in ((f"/networks/{a_net}", "NetworkNotFound"),
                       (f"/subnets/{a_sub}", "SubnetNotFound"),
                       (f"/ports/{a_port}", "PortNotFound")):
        st, doc, _ = api.request("GET", N + path, token=b)
        assert st == 404 and neutron_error(doc)[0] == kind
        st, doc, _ = api.request("DELETE", N + path, token=b)
        assert st == 404
        st, doc, _ = api.request("PUT", N + path, {path.split("/")[1][:-1]: {"name": "x"}}, b)
        assert st == 404
    st, doc, _ = post(api, b, "/ports", "port", {"network_id": a_net})
    assert st == 404 and neutron_error(doc)[0] == "NetworkNotFound"
    st, doc, _ = api.request("GET", N + "/networks", token=b)
    assert [n["id"] for n in doc["networks"]] == [ids[beta["project_id"]][0]]
    st, doc, _ = api.request("GET", N + "/networks?project_id=" + acme["project_id"], token=b)
    assert doc["networks"] == []
    # the admin sees every project's networks; the other project's view is unchanged
    admin = api.token()
    st, doc, _ = api.request("GET", N + "/networks", token=admin)
    assert {n["id"] for n in doc["networks"]} == {a_net, ids[beta["project_id"]][0]}
    st, doc, _ = api.request("GET", f"{N}/networks/{a_net}", token=acme["token"])
    assert st == 200 and doc["network"]["name"] == "net"
    # a shared network is visible to all and takes their ports
    st, doc, _ = api.request("PUT", f"{N}/networks/{a_net}", {"network": {"shared": True}},
                             acme["token"])
    assert st == 403  # sharing is the admin's
    st, doc, _ = api.request("PUT", f"{N}/networks/{a_net}", {"network": {"shared": True}}, admin)
    assert st == 200 and doc["network"]["shared"] is True
    st, doc, _ = post(api, b, "/ports", "port", {"network_id": a_net})
    assert st == 201 and doc["port"]["project_id"] == beta["project_id"]
    st, doc, _ = api.request("DELETE", f"{N}/networks/{a_net}", token=b)
    assert st == 403
    # the admin may create for another project, which then owns it
    st, doc, _ = post(api, admin, "/networks", "network",
                      {"name": "given", "project_id": beta["project_id"]})
    assert st == 201 and doc["network"]["tenant_id"] == beta["project_id"]
    assert api.request("GET", f"{N}/networks/{doc['network']['id']}", token=b)[0] == 200
    # a reader may look but not write
    reader = api.make_project("gamma", role="reader")
    st, doc, _ = post(api, reader["token"], "/networks", "network", {"name": "r"})
    assert st == 403 and neutron_error(doc)[0] == "PolicyNotAuthorized"
    st, doc, _ = api.request("GET", N + "/networks", token=reader["token"])
    assert st == 200


def test_ip_exhaustion_and_allocation(api, acme):
    tok = acme["token"]
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "small"})
    nid = doc["network"]["id"]
    st, doc, _ = post(api, tok, "/subnets", "subnet",
                      {"network_id": nid, "cidr": "10.9.0.0/29", "ip_version": 4,
                       "enable_dhcp": False})  # no DHCP port: all five addresses are ours
    sid = doc["subnet"]["id"]
    assert doc["subnet"]["allocation_pools"] == [{"start": "10.9.0.2", "end": "10.9.0.6"}]
    ports = []
    for i in range(5):
        st, doc, _ = post(api, tok, "/ports", "port", {"network_id": nid, "name": f"p{i}"})
        assert st == 201, doc
        ports.append(doc["port"])
    assert [p["fixed_ips"][0]["ip_address"] for p in ports] == [f"10.9.0.{i}" for i in range(2, 7)]
    assert len({p["mac_address"] for p in ports}) == 5
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": nid})
    assert st == 409
    assert neutron_error(doc) == ("IpAddressGenerationFailure",
                                  f"No more IP addresses available on network {nid}.")
    st, doc, _ = post(api, tok, "/ports", "port",
                      {"network_id": nid, "fixed_ips": [{"ip_address": "10.9.0.3"}]})
    assert st == 409 and neutron_error(doc)[0] == "IpAddressAlreadyAllocated"
    for ip, kind in (("10.9.0.7", "InvalidIpForSubnet"), ("10.9.0.0", "InvalidIpForSubnet"),
                     ("10.10.0.1", "InvalidIpForNetwork")):
        fixed = {"subnet_id": sid, "ip_address": ip} if kind == "InvalidIpForSubnet" else {
            "ip_address": ip}
        st, doc, _ = post(api, tok, "/ports", "port", {"network_id": nid, "fixed_ips": [fixed]})
        assert st == 400 and neutron_error(doc)[0] == kind, (ip, doc)
    st, doc, _ = api.request("GET", f"{N}/ports?network_id={nid}", token=tok)
    assert len(doc["ports"]) == 5  # the refusals left nothing behind
    # a freed address is handed out again; a port moves to an address of its choice
    assert api.request("DELETE", f"{N}/ports/{ports[1]['id']}", token=tok)[0] == 204
    st, doc, _ = api.request("PUT", f"{N}/ports/{ports[0]['id']}",
                             {"port": {"fixed_ips": [{"ip_address": "10.9.0.3"}]}}, tok)
    assert st == 200 and doc["port"]["fixed_ips"] == [{"subnet_id": sid, "ip_address": "10.9.0.3"}]
    assert doc["port"]["revision_number"] == ports[0]["revision_number"] + 1
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": nid})
    assert st == 201 and doc["port"]["fixed_ips"][0]["ip_address"] == "10.9.0.2"
    # the gateway address is the router's
    st, doc, _ = post(api, tok, "/ports", "port",
                      {"network_id": nid, "fixed_ips": [{"ip_address": "10.9.0.1"}]})
    assert st == 409
    # a subnet's pool can be narrowed; the gateway may not enter it
    st, doc, _ = api.request("PUT", f"{N}/subnets/{sid}", {"subnet": {"allocation_pools": [
        {"start": "10.9.0.1", "end": "10.9.0.4"}]}}, tok)
    assert st == 409 and neutron_error(doc)[0] == "GatewayConflictWithAllocationPools"


def test_ipv6_subnet(api, acme):
    tok = acme["token"]
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "dual"})
    nid = doc["network"]["id"]
    st, v4, _ = post(api, tok, "/subnets", "subnet",
                     {"network_id": nid, "cidr": "10.5.0.0/24", "ip_version": 4})
    st, doc, _ = post(api, tok, "/subnets", "subnet",
                      {"network_id": nid, "cidr": "2001:DB8:0:1::/64", "ip_version": 6})
    assert st == 201, doc
    s6 = doc["subnet"]
    assert s6["cidr"] == "2001:db8:0:1::/64" and s6["gateway_ip"] == "2001:db8:0:1::1"
    assert s6["allocation_pools"] == [{"start": "2001:db8:0:1::2",
                                       "end": "2001:db8:0:1:ffff:ffff:ffff:ffff"}]
    st, doc, _ = post(api, tok, "/subnets", "subnet",
                      {"network_id": nid, "cidr": "2001:db8:0:1:8000::/65", "ip_version": 6})
    assert st == 400 and "overlaps with another subnet" in neutron_error(doc)[1]
    st, doc, _ = post(api, tok, "/subnets", "subnet",
                      {"network_id": nid, "cidr": "2001:db8:0:2::/64", "ip_version": 4})
    assert st == 400 and neutron_error(doc)[0] == "InvalidInput"
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": nid})
    assert [f["ip_address"] for f in doc["port"]["fixed_ips"]] == ["10.5.0.2", "2001:db8:0:1::2"]


def test_cidr_and_pool_validation(api, acme):
    tok = acme["token"]
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "v"})
    nid = doc["network"]["id"]

    def subnet(**kw):
        body = {"network_id": nid, "ip_version": 4}
        body.update(kw)
        return post(api, tok, "/subnets", "subnet", body)

    for cidr in ("10.0.1.1/24", "10.0.0.0/33", "10.0.0/24", "banana", "10.0.0.0"):
        st, doc, _ = subnet(cidr=cidr)
        assert st == 400, cidr
        assert neutron_error(doc)[1] == \
            f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.", doc
    cases = [
        (dict(cidr="10.1.0.0/24", allocation_pools=[{"start": "10.1.0.9", "end": "10.1.0.3"}]),
         400, "InvalidAllocationPool"),
        (dict(cidr="10.1.0.0/24", allocation_pools=[{"start": "10.1.0.2", "end": "10.1.1.3"}]),
         400, "OutOfBoundsAllocationPool"),
        (dict(cidr="10.1.0.0/24", allocation_pools=[{"start": "10.1.0.2", "end": "10.1.0.20"},
                                                    {"start": "10.1.0.10", "end": "10.1.0.30"}]),
         409, "OverlappingAllocationPools"),
        (dict(cidr="10.1.0.0/24", gateway_ip="10.1.0.5",
              allocation_pools=[{"start": "10.1.0.2", "end": "10.1.0.20"}]),
         409, "GatewayConflictWithAllocationPools"),
        (dict(cidr="10.1.0.0/24", gateway_ip="10.1.0.255"), 400, "InvalidInput"),
        (dict(cidr="10.1.0.0/24", dns_nameservers=["8.8.8.8", "8.8.8.8"]), 400, "HTTPBadRequest"),
        (dict(cidr="127.0.0.0/24"), 400, "InvalidInput"),
        (dict(cidr="10.1.0.0/24", subnetpool_id="abc"), 400, "HTTPBadRequest"),
        (dict(cidr="10.1.0.0/24", ip_version=5), 400, "HTTPBadRequest"),
    ]
    for body, status, kind in cases:
        st, doc, _ = subnet(**body)
        assert (st, neutron_error(doc)[0]) == (status, kind), (body, doc)
    st, doc, _ = api.request("GET", f"{N}/subnets?network_id={nid}", token=tok)
    assert doc["subnets"] == []
    # a gateway of null, explicit pools, DNS and host routes
    st, doc, _ = subnet(cidr="10.1.0.0/24", gateway_ip=None,
                        allocation_pools=[{"start": "10.1.0.100", "end": "10.1.0.110"}],
                        dns_nameservers=["9.9.9.9"],
                        host_routes=[{"destination": "10.8.0.0/16", "nexthop": "10.1.0.254"}])
    assert st == 201, doc
    s = doc["subnet"]
    assert s["gateway_ip"] is None and s["dns_nameservers"] == ["9.9.9.9"]
    assert s["host_routes"] == [{"destination": "10.8.0.0/16", "nexthop": "10.1.0.254"}]
    st, doc, _ = api.request("PUT", f"{N}/subnets/{s['id']}",
                             {"subnet": {"gateway_ip": "10.1.0.1", "name": "renamed"}}, tok)
    assert st == 200 and doc["subnet"]["gateway_ip"] == "10.1.0.1"
    assert doc["subnet"]["revision_number"] == 1
    st, doc, _ = api.request("PUT", f"{N}/subnets/{s['id']}", {"subnet": {"cidr": "10.2.0.0/24"}},
                             tok)
    assert st == 400 and "read-only" in neutron_error(doc)[1]


def test_floating_ip_needs_a_router(api, acme):
    tok, admin = acme["token"], api.token()
    st, doc, _ = post(api, admin, "/networks", "network", {"name": "pub", "router:external": True})
    ext = doc["network"]["id"]
    st, doc, _ = post(api, admin, "/subnets", "subnet",
                      {"network_id": ext, "cidr": "198.51.100.0/29", "ip_version": 4,
                       "enable_dhcp": False})
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "lan"})
    lan = doc["network"]["id"]
    st, doc, _ = post(api, tok, "/subnets", "subnet",
                      {"network_id": lan, "cidr": "192.168.0.0/24", "ip_version": 4})
    lan_sub = doc["subnet"]["id"]
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": lan})
    port = doc["port"]["id"]
    st, doc, _ = post(api, tok, "/floatingips", "floatingip",
                      {"floating_network_id": ext, "port_id": port})
    assert st == 404 and neutron_error(doc)[0] == "ExternalGatewayForFloatingIPNotFound"
    st, doc, _ = post(api, tok, "/floatingips", "floatingip", {"floating_network_id": lan})
    assert st == 400
    st, doc, _ = post(api, tok, "/routers", "router", {
        "name": "gw", "external_gateway_info": {"network_id": ext, "enable_snat": False}})
    assert st == 201 and doc["router"]["external_gateway_info"]["enable_snat"] is False
    router = doc["router"]["id"]
    st, doc, _ = api.request("PUT", f"{N}/routers/{router}/add_router_interface",
                             {"subnet_id": lan_sub}, tok)
    assert st == 200 and doc["subnet_ids"] == [lan_sub] and doc["network_id"] == lan
    st, doc, _ = post(api, tok, "/floatingips", "floatingip",
                      {"floating_network_id": ext, "port_id": port,
                       "floating_ip_address": "198.51.100.6"})
    assert st == 201, doc
    f = doc["floatingip"]
    assert f["floating_ip_address"] == "198.51.100.6" and f["router_id"] == router
    assert f["fixed_ip_address"] == "192.168.0.2"
    # the gateway cannot go while a floating IP needs it
    st, doc, _ = api.request("PUT", f"{N}/routers/{router}",
                             {"router": {"external_gateway_info": {}}}, tok)
    assert st == 409 and neutron_error(doc)[0] == "RouterExternalGatewayInUseByFloatingIp"
    # the external /29 has five addresses: gateway port, this floating IP, three more
    for _ in range(3):
        assert post(api, tok, "/floatingips", "floatingip", {"floating_network_id": ext})[0] == 201
    st, doc, _ = post(api, tok, "/floatingips", "floatingip", {"floating_network_id": ext})
    assert st == 409 and neutron_error(doc)[0] == "IpAddressGenerationFailure"
    st, doc, _ = api.request("PUT", f"{N}/floatingips/{f['id']}", {"floatingip": {"port_id": None}},
                             tok)
    assert st == 200 and doc["floatingip"]["port_id"] is None
    assert doc["floatingip"]["status"] == "DOWN"
    # extra routes need a connected next hop: a host address of a router subnet (not its
    # network or broadcast address, which the kernel refuses) that is not the router's own
    for bad in ("172.16.0.1", "192.168.0.0", "192.168.0.255", "192.168.0.1"):
        st, doc, _ = api.request("PUT", f"{N}/routers/{router}", {"router": {"routes": [
            {"destination": "10.20.0.0/16", "nexthop": bad}]}}, tok)
        assert st == 400 and neutron_error(doc)[0] == "InvalidRoutes", (bad, doc)
    st, doc, _ = api.request("PUT", f"{N}/routers/{router}", {"router": {"routes": [
        {"destination": "10.20.0.0/16", "nexthop": "192.168.0.10"}]}}, tok)
    assert st == 200 and doc["router"]["routes"][0]["nexthop"] == "192.168.0.10"


def test_quotas(api, acme):
    pid, tok, admin = acme["project_id"], acme["token"], api.token()
    api.openstack("quota", "set", "--networks", "1", acme["project_id"], fmt=False)
    st, doc, _ = api.request("GET", f"{N}/quotas/{pid}", token=tok)
    assert st == 200 and doc["quota"]["network"] == 1 and doc["quota"]["subnet"] == 100
    assert post(api, tok, "/networks", "network", {"name": "one"})[0] == 201
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "two"})
    assert st == 409 and neutron_error(doc)[0] == "OverQuota"
    st, doc, _ = api.request("GET", N + "/networks", token=tok)
    assert [n["name"] for n in doc["networks"]] == ["one"]
    st, doc, _ = api.request("GET", f"{N}/quotas/{pid}/details", token=tok)
    assert doc["quota"]["network"] == {"used": 1, "limit": 1, "reserved": 0}
    st, doc, _ = api.request("GET", f"{N}/quotas/{pid}/default", token=tok)
    assert doc["quota"]["network"] == 100
    # members can neither raise their quota nor read another project's
    st, doc, _ = api.request("PUT", f"{N}/quotas/{pid}", {"quota": {"network": 50}}, tok)
    assert st == 403
    st, doc, _ = api.request("GET", "/identity/v3/auth/tokens", token=admin,
                             headers={"X-Subject-Token": admin})
    admin_project = doc["token"]["project"]["id"]
    st, doc, _ = api.request("GET", f"{N}/quotas/{admin_project}", token=tok)
    assert st == 403
    st, doc, _ = api.request("PUT", f"{N}/quotas/{pid}",
                             {"quota": {"network": 0, "check_limit": True}}, admin)
    assert st == 400
    st, doc, _ = api.request("PUT", f"{N}/quotas/{pid}", {"quota": {"port": "lots"}}, admin)
    assert st == 400
    st, doc, _ = api.request("DELETE", f"{N}/quotas/{pid}", token=admin)
    assert st == 204
    assert post(api, tok, "/networks", "network", {"name": "two"})[0] == 201


def test_hostile_input(api, acme):
    tok = acme["token"]
    cases = [
        (b"{not json", "BadRequest"),
        (b"[]", "BadRequest"),
        (json.dumps({"network": "vpc"}).encode(), "BadRequest"),
        (json.dumps({"network": {"name": 5}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"name": "x" * 300}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"admin_state_up": "maybe"}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"mtu": "big"}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"mtu": 9001}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"mtu": 67}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"colour": "red"}}).encode(), "HTTPBadRequest"),
        (json.dumps({"network": {"name": "a", "project_id": "0" * 32}}).encode(), "HTTPBadRequest"),
    ]
    for raw, kind in cases:
        st, doc, _ = api.request("POST", N + "/networks", raw=raw, token=tok)
        assert st == 400 and neutron_error(doc)[0] == kind, (raw[:80], doc)
    st, doc, r = api.request("POST", N + "/networks", raw=b'{"network": {"name": "' +
                             b"x" * (2 << 20) + b'"}}', token=tok)
    assert st in (400, 413)
    for path, kind in (("/networks/", "NetworkNotFound"), ("/subnets/", "SubnetNotFound"),
                       ("/ports/", "PortNotFound"), ("/routers/", "RouterNotFound"),
                       ("/security-groups/", "SecurityGroupNotFound"),
                       ("/floatingips/", "FloatingIPNotFound")):
        for ident in ("5a0e8a70-0000-4000-8000-000000000000", "no-such-thing", "x" * 200):
            st, doc, _ = api.request("GET", N + path + ident, token=tok)
            assert st == 404 and neutron_error(doc)[0] == kind
    st, doc, _ = post(api, tok, "/subnets", "subnet", {"cidr": "10.0.0.0/24"})
    assert st == 400
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": 7})
    assert st == 400
    st, doc, _ = api.request("PUT", N + "/routers/x/add_router_interface", raw=b"nope", token=tok)
    assert st == 400
    st, doc, _ = api.request("GET", N + "/networks?limit=abc", token=tok)
    assert st == 400
    st, doc, _ = api.request("GET", N + "/networks", token=tok)
    assert doc["networks"] == []  # nothing above created anything


def test_list_filters_fields_and_pages(api, acme):
    tok = acme["token"]
    for name in ("a", "b", "c"):
        post(api, tok, "/networks", "network", {"name": name, "tags": [name]})
    st, doc, _ = api.request("GET", N + "/networks?limit=2", token=tok)
    assert [n["name"] for n in doc["networks"]] == ["a", "b"]
    nxt = doc["networks_links"][0]
    assert nxt["rel"] == "next"
    st, doc, _ = api.request("GET", nxt["href"][len(api.url):], token=tok)
    assert [n["name"] for n in doc["networks"]] == ["c"] and "networks_links" not in doc
    st, doc, _ = api.request("GET", N + "/networks?name=b&name=c&fields=name&fields=id", token=tok)
    assert sorted(n["name"] for n in doc["networks"]) == ["b", "c"]
    assert all(set(n) == {"id", "name"} for n in doc["networks"])
    st, doc, _ = api.request("GET", N + "/networks?shared=false&tags-any=a,c", token=tok)
    assert sorted(n["name"] for n in doc["networks"]) == ["a", "c"]
    listed = api.openstack("network", "list", "--name", "b", env=acme["env"])
    assert [n["Name"] for n in listed] == ["b"]


def test_state_survives_a_restart(api, acme):
    tok = acme["token"]
    st, doc, _ = post(api, tok, "/networks", "network", {"name": "keep"})
    nid = doc["network"]["id"]
    post(api, tok, "/subnets", "subnet", {"network_id": nid, "cidr": "10.3.0.0/24",
                                          "ip_version": 4})
    st, p1, _ = post(api, tok, "/ports", "port", {"network_id": nid})
    api.restart()
    tok = api.token(acme["user"], acme["password"], "acme")
    st, p2, _ = post(api, tok, "/ports", "port", {"network_id": nid})
    assert p1["port"]["fixed_ips"][0]["ip_address"] == "10.3.0.2"
    assert p2["port"]["fixed_ips"][0]["ip_address"] == "10.3.0.3"


def test_allowed_address_pairs(api, acme):
    """Pairs are stored normalised (a missing or null MAC is the port's own); malformed pairs
    are refused with a Neutron fault and change nothing."""
    tok = acme["token"]
    st, net, _ = post(api, tok, "/networks", "network", {"name": "n"})
    assert st == 201
    st, _, _ = post(api, tok, "/subnets", "subnet", {"network_id": net["network"]["id"],
                                                     "cidr": "10.9.0.0/24", "ip_version": 4})
    assert st == 201
    pairs = [{"ip_address": "10.9.0.50"}, {"ip_address": "10.9.0.64/26", "mac_address": None},
             {"ip_address": "10.9.0.60", "mac_address": "fa:16:3e:00:00:01"}]
    st, doc, _ = post(api, tok, "/ports", "port", {"network_id": net["network"]["id"],
                                                   "allowed_address_pairs": pairs})
    assert st == 201, doc
    port = doc["port"]
    assert port["allowed_address_pairs"] == [
        {"ip_address": "10.9.0.50", "mac_address": port["mac_address"]},
        {"ip_address": "10.9.0.64/26", "mac_address": port["mac_address"]},
        {"ip_address": "10.9.0.60", "mac_address": "fa:16:3e:00:00:01"}]
    for bad in ([{"ip_address": "10.9.0.1", "mac_address": 5}], [{"ip_address": "nope"}],
                [{"mac_address": "fa:16:3e:00:00:01"}], [{"ip_address": "10.9.0.1", "x": 1}],
                [{"ip_address": "10.9.0.65/26"}], [{"ip_address": "10.9.0.1"}] * 11, "x"):
        st, doc, _ = api.request("PUT", N + "/ports/" + port["id"],
                                 {"port": {"allowed_address_pairs": bad}}, tok)
        assert st == 400 and neutron_error(doc)[0] == "HTTPBadRequest", (bad, doc)
    st, doc, _ = api.request("GET", N + "/ports/" + port["id"], token=tok)
    assert doc["port"]["allowed_address_pairs"] == port["allowed_address_pairs"]


def test_the_clouds_dns_domain(start_api, tmp_path):
    """[network] dns_domain: the domain of dns_assignment on networks without one (what sov-net's
    [net] dns_domain makes the DHCP servers answer); one that is no domain stops sov-api."""
    api = start_api(ini_extra="[network]\ndns_domain = Cloud.Example.\n")
    api.openstack("network", "create", "n1")
    api.openstack("subnet", "create", "--network", "n1", "--subnet-range", "10.3.0.0/24", "s1")
    p = api.openstack("port", "create", "--network", "n1", "--fixed-ip", "ip-address=10.3.0.9",
                      "p1")
    assert p["dns_assignment"] == [{"hostname": "host-10-3-0-9", "ip_address": "10.3.0.9",
                                    "fqdn": "host-10-3-0-9.cloud.example."}]
    # a network's dns_domain is a DNS name as sov-net's DHCP servers take it, or refused
    tok = api.token()
    for bad in ("example.org..", "-a.example", "a_b.example", "x" * 64 + ".example", "."):
        st, doc, _ = api.request("POST", N + "/networks", {"network": {"dns_domain": bad}},
                                 token=tok)
        assert st == 400 and "dns_domain" in neutron_error(doc)[1], (bad, st, doc)
    bad = tmp_path / "bad.ini"
    bad.write_text(api.cfg.read_text().replace("Cloud.Example.", "not a domain"))
    r = subprocess.run([str(BIN / "sov-api"), "--config", str(bad), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "dns_domain" in r.stderr, (r.returncode, r.stderr)


def test_dns_name_in_use(api):
    """dns_assignment names what sov-net's DNS answers: the ports of one device share a name,
    a port of another device asking for it later gets its own host-... name, and gets the name
    once the holders are gone; a name that is another port's host-... name is taken only once
    no port has that address."""
    os_ = api.openstack
    os_("network", "create", "dn")
    os_("subnet", "create", "--network", "dn", "--subnet-range", "10.4.0.0/24", "dn-v4")

    def port(name, ip, dns, device):
        return os_("port", "create", "--network", "dn", "--fixed-ip", f"ip-address={ip}",
                   "--dns-name", dns, "--device", device, name)

    def host(name):
        return os_("port", "show", name)["dns_assignment"][0]["hostname"]

    port("c1", "10.4.0.11", "app", "srv1")
    port("c2", "10.4.0.12", "App", "srv1")
    port("e1", "10.4.0.13", "app", "srv2")
    port("h1", "10.4.0.14", "host-10-4-0-11", "srv3")
    assert [host(n) for n in ("c1", "c2", "e1", "h1")] == [
        "app", "app", "host-10-4-0-13", "host-10-4-0-14"]
    st, doc, _ = api.request("GET", "/network/v2.0/ports?name=e1&name=c2", token=api.token())
    assert st == 200 and sorted((p["name"], p["dns_assignment"][0]["hostname"])
                                for p in doc["ports"]) == [("c2", "app"), ("e1", "host-10-4-0-13")]
    # the holders gone (and 10.4.0.11 with c1), both names are free
    os_("port", "delete", "c1", "c2", fmt=False)
    assert host("e1") == "app"
    assert host("h1") == "host-10-4-0-11"


def register_network_host(api, host, l3, realised=False, term=None, doc=False):
    """A heartbeat of network host <host>.net (as sov-net sends it: realised, whether router or
    DHCP namespaces are there or it holds the role; term, the last grant of the l3 role it
    learnt of, which older sov-nets do not send); whether it holds the l3 role (doc: the whole
    host document)."""
    info = {"tunnel_ip": "", "l3": l3, "l3_realised": realised}
    if term is not None:
        info["l3_term"] = term
    r = raw_http(api.port, "POST", "/agent/v1/hosts",
                 {"Authorization": f"Bearer {api.agent_token}", "Content-Type": "application/json"},
                 json.dumps({"host": host + ".net", "kind": "network", "info": info}).encode())
    assert r.status == 200, r.body
    host_doc = json.loads(r.body)["host"]
    return host_doc if doc else host_doc["l3_active"]


def test_l3_role_moves_after_silence_not_after_a_restart(start_api):
    """The l3 holder silent for three heartbeat periods: a network host with l3 off never takes
    the role, the next one with l3 on does, and the old holder is told it stands by. A restart of
    sov-api moves nothing, even after a longer outage: the holder counts as heard at the
    start."""
    api = start_api("heartbeat = 1s\n")  # [agent]
    register = lambda host, l3: register_network_host(api, host, l3)  # noqa: E731
    assert register("n1", True) is True
    deadline = time.monotonic() + 30
    while not register("n2", True):
        assert register("n3", False) is False
        assert time.monotonic() < deadline, "n2 never took the l3 role"
        time.sleep(0.2)
    assert register("n1", True) is False
    # sov-api down for longer than three periods (the time passing is the point here), so the
    # holder's last report is older than that when it is back: n1 reporting first stays standby
    api.stop()
    time.sleep(4)
    api.start()
    assert register("n1", True) is False
    assert register("n2", True) is True
    api.openstack("router", "create", "r")
    hosts = [a["Host"] for a in api.openstack("network", "agent", "list", "--router", "r")]
    assert hosts == ["n2"]


def test_network_hosts_as_agents(api, acme):
    """Network hosts registering through the agent API: the first with l3 on holds the l3 role,
    a second stands by, one with l3 off never takes it; Neutron's agent API (admin only) shows a
    Linux bridge agent per host and an L3 and a DHCP agent per l3 host, and which of them hosts
    a router and a network's DHCP."""
    register = lambda host, l3: register_network_host(api, host, l3)  # noqa: E731
    assert register("n1", True) is True
    assert register("n2", True) is False
    assert register("n3", False) is False
    assert register("n1", True) is True  # its heartbeats keep it
    os_ = api.openstack
    agents = os_("network", "agent", "list")
    assert sorted((a["Host"], a["Agent Type"], a["Binary"]) for a in agents) == [
        ("n1", "DHCP agent", "neutron-dhcp-agent"), ("n1", "L3 agent", "neutron-l3-agent"),
        ("n1", "Linux bridge agent", "neutron-linuxbridge-agent"),
        ("n2", "DHCP agent", "neutron-dhcp-agent"), ("n2", "L3 agent", "neutron-l3-agent"),
        ("n2", "Linux bridge agent", "neutron-linuxbridge-agent"),
        ("n3", "Linux bridge agent", "neutron-linuxbridge-agent")]
    assert all(a["Alive"] for a in agents)
    assert [a["Host"] for a in os_("network", "agent", "list", "--agent-type", "l3")] == [
        "n1", "n2"]
    one = os_("network", "agent", "show", agents[1]["ID"])
    assert one["host"] == "n1" and one["agent_type"] == "L3 agent"
    assert one["configuration"]["l3_active"] is True
    # ids stay the same (derived from host and type)
    assert [a["ID"] for a in os_("network", "agent", "list")] == [a["ID"] for a in agents]
    os_("network", "create", "an")
    os_("subnet", "create", "--network", "an", "--subnet-range", "10.6.0.0/24", "an-v4")
    os_("router", "create", "ar")
    assert [a["Host"] for a in os_("network", "agent", "list", "--router", "ar")] == ["n1"]
    assert [a["Host"] for a in os_("network", "agent", "list", "--network", "an")] == ["n1"]
    l3 = {a["Host"]: a["ID"] for a in agents if a["Agent Type"] == "L3 agent"}
    assert [r["Name"] for r in os_("router", "list", "--agent", l3["n1"])] == ["ar"]
    assert os_("router", "list", "--agent", l3["n2"]) == []
    # unknown ids, non-admins
    tok = api.token()
    st, doc, _ = api.request("GET", N + "/agents/0f0e0d0c-0000-5000-8000-000000000000",
                             token=tok)
    assert st == 404 and neutron_error(doc)[0] == "AgentNotFound"
    st, doc, _ = api.request("GET", N + "/routers/nope/l3-agents", token=tok)
    assert st == 404
    # others than the admin see no agents (Neutron's policy) and may not ask what they host
    st, doc, _ = api.request("GET", N + "/agents", token=acme["token"])
    assert st == 200 and doc == {"agents": []}, doc
    st, doc, _ = api.request("GET", N + "/agents/" + agents[0]["ID"], token=acme["token"])
    assert st == 404 and neutron_error(doc)[0] == "AgentNotFound"
    st, doc, _ = api.request("GET", N + f"/agents/{agents[0]['ID']}/l3-routers",
                             token=acme["token"])
    assert st == 403, doc


def test_a_heartbeat_sent_before_its_grant_moves_no_role(start_api):
    """Each grant of the l3 role is a term (l3_term in the host document, never one the host saw
    before) that the host's heartbeats echo once they learnt of it. A heartbeat the new holder
    sent before the answer that gave it the role, arriving after the admin disabled that holder,
    says nothing of the routers it is making by then: nobody takes the role until the holder has
    echoed the grant and reported its namespaces gone. An echo of a term this sov-api never gave
    (its database was replaced) holds moves back only until the host echoes its answer's term,
    and a grant's term is past what the host echoed."""
    api = start_api()
    reg = lambda *a, **k: register_network_host(api, *a, **k)  # noqa: E731
    m3 = reg("m3", False, False, term=0, doc=True)  # l3 off: no grant, term 0 all the same
    assert m3["l3_active"] is False and m3["l3_term"] == 0
    m1 = reg("m1", True, False, term=0, doc=True)
    t1 = m1["l3_term"]
    assert m1["l3_active"] is True and t1 > 0
    agents = lambda: {a["Host"]: a["ID"] for a in api.openstack(  # noqa: E731
        "network", "agent", "list", "--agent-type", "l3")}
    api.openstack("network", "agent", "set", "--disable", agents()["m1"], fmt=False)
    assert reg("m1", True, False, term=0) is False  # sent before it learnt of t1
    assert reg("m2", True, False, term=0) is False  # m1 may be making routers now
    conf = api.openstack("network", "agent", "show", agents()["m1"])["configuration"]
    assert conf["l3_term"] == t1 and conf["l3_term_seen"] == 0
    assert reg("m1", True, True, term=t1) is False  # it was: it stands by and removes them
    assert reg("m2", True, False, term=0) is False
    assert reg("m1", True, False, term=t1) is False  # gone
    m2 = reg("m2", True, False, term=0, doc=True)
    t2 = m2["l3_term"]
    assert m2["l3_active"] is True and t2 > 0
    # a host echoing a term from another database holds the role back for one answer
    api.openstack("network", "agent", "set", "--enable", agents()["m1"], fmt=False)
    api.openstack("network", "agent", "set", "--disable", agents()["m2"], fmt=False)
    assert reg("m3", False, False, term=t2 + 1000) is False
    assert reg("m2", True, False, term=t2) is False
    assert reg("m1", True, False, term=t1) is False  # m3's echo is not its term
    assert reg("m3", False, False, term=0) is False
    m1 = reg("m1", True, False, term=t2 + 5000, doc=True)
    assert m1["l3_active"] is True and m1["l3_term"] > t2 + 5000  # a new grant, a new term


def test_disabling_the_l3_agent_moves_the_role_after_its_host_let_go(api):
    """`openstack network agent set --disable` on the holder's L3 agent: the holder stands by at
    its next report, and the role goes to another host only once the holder reports that it no
    longer has what it realised; enabled again, it waits as a standby."""
    reg = lambda *a: register_network_host(api, *a)  # noqa: E731
    assert reg("n1", True, True) is True
    assert reg("n2", True) is False
    os_ = api.openstack
    l3 = {a["Host"]: a["ID"] for a in os_("network", "agent", "list", "--agent-type", "l3")}
    os_("network", "agent", "set", "--disable", l3["n1"], fmt=False)
    states = {(a["Host"], a["Agent Type"]): a["State"] for a in os_("network", "agent", "list")}
    assert states == {("n1", "L3 agent"): False, ("n1", "DHCP agent"): False,
                      ("n1", "Linux bridge agent"): True, ("n2", "L3 agent"): True,
                      ("n2", "DHCP agent"): True, ("n2", "Linux bridge agent"): True}
    assert reg("n2", True) is False  # n1 still holds
    assert reg("n1", True, True) is False  # n1 told to stand by...
    assert reg("n2", True) is False  # ...and still has its routers
    assert reg("n1", True, False) is False
    assert reg("n2", True) is True
    os_("network", "agent", "set", "--enable", "--description", "rack 4", l3["n1"], fmt=False)
    assert reg("n1", True, False) is False
    shown = os_("network", "agent", "show", l3["n1"])
    assert shown["admin_state_up"] is True and shown["description"] == "rack 4"
    assert shown["configuration"]["l3_realised"] is False
    # the DHCP agent stands for the same role; the Linux bridge agent cannot be disabled
    dhcp = {a["Host"]: a["ID"] for a in os_("network", "agent", "list", "--agent-type", "dhcp")}
    os_("network", "agent", "set", "--disable", dhcp["n2"], fmt=False)
    assert reg("n2", True, True) is False
    assert os_("network", "agent", "show", l3["n2"])["admin_state_up"] is False
    l2 = next(a["ID"] for a in os_("network", "agent", "list", "--agent-type", "linux-bridge")
              if a["Host"] == "n1")
    failed(os_("network", "agent", "set", "--disable", l2, fmt=False, check=False),
           "cannot be disabled")
    tok = api.token()
    st, doc, _ = api.request("PUT", f"{N}/agents/{l3['n1']}", {"agent": {"host": "x"}}, tok)
    assert st == 400, doc
    st, doc, _ = api.request("PUT", f"{N}/agents/{l3['n1']}",
                             {"agent": {"admin_state_up": False}}, api.make_project("p")["token"])
    assert st == 404 and neutron_error(doc)[0] == "AgentNotFound"
    assert os_("network", "agent", "show", l3["n1"])["admin_state_up"] is True
