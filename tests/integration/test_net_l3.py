# SPDX-License-Identifier: Apache-2.0
"""sov-net against a real sov-api, driven by the `openstack` CLI, in network namespaces the test
creates (a "host" namespace holding sov-net's bridges, one namespace per instance, an "internet"
namespace on the external network): a VPC with a web and an app subnet, a router with an external
gateway, ports whose veth ends the test moves into its instance namespaces; then subnet-to-subnet
routing through the router, the app subnet reaching the internet only through SNAT (the internet
sees the router's address), the internet reaching a floating IP (once the default security
group allows it) but never a private address, and removal leaving no namespace, bridge or veth. Traffic stays inside these namespaces; every wait
polls against a deadline."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess

import pytest

from conftest import ManagedDaemon, raw_http
from test_compute_agent import wait_for

PID = os.getpid()


def sh(*args, check=True, timeout=30):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))}: {p.stderr}")
    return p


def netns_add(name):
    """ip netns add, after removing a namespace of that name a test process that had this
    process's pid left behind (pids are reused; the name is this process's now)."""
    sh("ip", "netns", "del", name, check=False)
    sh("ip", "netns", "add", name)


def hex12(uuid):
    return uuid.replace("-", "")[:12]


class NetDaemon(ManagedDaemon):
    binary = "sov-net"


@pytest.fixture
def netns():
    """netns(name) -> a namespace made for this test (removed at the end)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("needs root, iproute2 and nftables")
    made = []

    def make(name):
        full = f"t{PID}{name}"
        netns_add(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        made.append(full)
        return full

    yield make
    for ns in reversed(made):
        sh("ip", "netns", "del", ns, check=False)
    # and the router namespaces sov-net made with this test's prefix
    for ns in sh("ip", "netns", "list").stdout.split():
        if ns.startswith(f"t{PID}"):
            sh("ip", "netns", "del", ns, check=False)


def reap_dhcp(prefix):
    """Ends the dnsmasqs a stopped sov-net left serving (they outlive the agent, as guests do)
    and removes their files."""
    base = pathlib.Path(f"/run/sov-net/{prefix}")
    for pidf in base.glob("dhcp/*/pid"):
        try:
            pid = int(pidf.read_text())
            args = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"--conf-file={pidf.parent}/conf".encode() in args:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start_net(tmp_path):
    """start(api, host_ns, prefix, ...) -> a running sov-net; at the end each is stopped and
    the DHCP servers it left are ended."""
    started, prefixes = [], set()

    def start(api, host_ns, prefix, host="net1", extra=""):
        cfg = tmp_path / f"net-{len(started)}.ini"
        d = NetDaemon(tmp_path, f"net-{len(started)}", cfg)
        cfg.write_text(
            "[server]\nlisten = 127.0.0.1:0\n[log]\nlevel = info\n"
            f"[net]\napi_url = http://127.0.0.1:{api.port}\nagent_token = {api.agent_token}\n"
            f"host = {host}\nnetns = {host_ns}\nprefix = {prefix}\n"
            f"state_dir = {tmp_path / ('net-state-' + host)}\nresync = 2s\n{extra}")
        started.append(d)
        prefixes.add(prefix)
        return d.start()

    yield start
    for d in started:
        if d.alive():
            d.stop()
    for prefix in prefixes:
        reap_dhcp(prefix)


def passes(d):
    r = raw_http(d.port, "GET", "/metrics", {})
    for line in r.body.decode().splitlines():
        if line.startswith("sov_net_realisations_total"):
            return float(line.split()[-1])
    return 0


def ns_run(ns, *args, check=True, timeout=30):
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def plug(host_ns, inst_ns, port, prefixlen, gateway):
    """Moves the port's instance end into inst_ns and configures it as the port says."""
    vi = "vi" + hex12(port["id"])
    sh("ip", "-n", host_ns, "link", "set", vi, "netns", inst_ns)
    ip = port["fixed_ips"][0]["ip_address"]
    ns_run(inst_ns, "ip", "link", "set", vi, "address", port["mac_address"])
    ns_run(inst_ns, "ip", "addr", "add", f"{ip}/{prefixlen}", "dev", vi)
    ns_run(inst_ns, "ip", "link", "set", vi, "up")
    ns_run(inst_ns, "ip", "route", "add", "default", "via", gateway)
    return ip


def ping(ns, addr):
    return ns_run(ns, "busybox", "ping", "-c", "1", "-W", "1", addr, check=False).returncode == 0


PEER_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(1); s.settimeout(20)
c, a = s.accept(); c.sendall(a[0].encode()); c.close()
"""


def seen_as(server_ns, client_ns, addr):
    """The source address server_ns sees when client_ns connects to addr:8080."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "/usr/bin/python3", "-c",
                            PEER_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def connect():
            p = ns_run(client_ns, "/usr/bin/python3", "-c",
                       "import socket,sys; s=socket.create_connection((sys.argv[1], 8080), 2);"
                       "print(s.recv(64).decode())", addr, check=False)
            return p.stdout.strip() if p.returncode == 0 else None
        return wait_for(connect, f"a connection to {addr}", timeout=15)
    finally:
        srv.kill()
        srv.wait()


UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 8082)); s.settimeout(10)
print("ready", flush=True)
n = 0
try:
    while n < int(sys.argv[1]):
        n += len(s.recv(65536)) == 1472
except OSError:
    pass
print(n)
"""


def datagrams(server_ns, client_ns, addr, count):
    """How many of count 1,472-byte UDP datagrams (a 1,500-byte IP packet each, may be
    fragmented: DF off) client_ns sends to addr:8082 arrive whole in server_ns."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "/usr/bin/python3", "-c",
                            UDP_SERVER, str(count)], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        ns_run(client_ns, "/usr/bin/python3", "-c",
               "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
               "s.setsockopt(socket.IPPROTO_IP, 10, 0);"  # IP_MTU_DISCOVER: IP_PMTUDISC_DONT
               "[s.sendto(b'x' * 1472, (sys.argv[1], 8082)) for _ in range(int(sys.argv[2]))]",
               addr, str(count))
        out, _ = srv.communicate(timeout=30)
        return int(out.split()[-1])
    finally:
        srv.kill()
        srv.wait()


def frag_creates(ns):
    """IP fragments namespace ns has made (its /proc/net/snmp Ip FragCreates)."""
    lines = [l.split() for l in ns_run(ns, "cat", "/proc/net/snmp").stdout.splitlines()
             if l.startswith("Ip:")]
    return int(dict(zip(lines[0], lines[1]))["FragCreates"])


def count_fragments_in(ns, dev):
    """From now on, counts the IPv4 fragments that reach namespace ns on dev, before any
    reassembly (a table of the test's own); returns a function that reads the count."""
    for cmd in (("add", "table", "ip", "frag_probe"),
                ("add", "chain", "ip", "frag_probe", "in",
                 "{ type filter hook prerouting priority -450; }"),
                ("add", "rule", "ip", "frag_probe", "in", "iifname", dev, "ip", "frag-off",
                 "&", "0x3fff", "!=", "0", "counter")):
        ns_run(ns, "nft", *cmd)
    return lambda: int(re.search(r"counter packets (\d+)",
                                 ns_run(ns, "nft", "list", "table", "ip", "frag_probe").stdout)[1])


LISTENER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); s.settimeout(1)
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        c, a = s.accept(); c.close()
    except OSError:
        pass
"""


def tcp_reaches(server_ns, client_ns, addr, port):
    """Whether client_ns can open addr:port while server_ns listens on it (the listener is
    first seen answering locally, so a refusal is the path's)."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "/usr/bin/python3", "-c", LISTENER,
                            str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connect = ("import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), "
               "2).close()")
    try:
        wait_for(lambda: ns_run(server_ns, "/usr/bin/python3", "-c", connect, "127.0.0.1",
                                str(port), check=False).returncode == 0, "the listener")
        return ns_run(client_ns, "/usr/bin/python3", "-c", connect, addr, str(port),
                      check=False).returncode == 0
    finally:
        srv.kill()
        srv.wait()


def two_subnet_vpc(os_, gateway):
    """The VPC both tests use: subnets web and app on r1 (with an external gateway on "public"
    when gateway), a port on each, both ACTIVE. Returns (web subnet, app subnet, router, p_web,
    p_app)."""
    os_("network", "create", "vpc")
    web_sub = os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.0/24",
                  "web")
    app_sub = os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.2.0/24", "app")
    router = os_("router", "create", "r1")
    if gateway:
        os_("router", "set", "--external-gateway", "public", "r1", fmt=False)
    os_("router", "add", "subnet", "r1", "web", fmt=False)
    os_("router", "add", "subnet", "r1", "app", fmt=False)
    p_web = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=web", "p-web")
    p_app = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=app", "p-app")
    for p in (p_web, p_app):
        wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", "port ACTIVE")
    return web_sub, app_sub, router, p_web, p_app


def test_vpc_routing_nat_floating_ip_and_cleanup(api, start_net, netns):
    host = netns("host")
    prefix = f"t{PID}"
    net = start_net(api, host, prefix)
    os_ = api.openstack
    os_("network", "create", "--external", "public")
    pub_sub = os_("subnet", "create", "--network", "public", "--subnet-range", "203.0.113.0/24",
                  "--gateway", "203.0.113.1", "--no-dhcp", "public-v4")
    web_sub, app_sub, router, p_web, p_app = two_subnet_vpc(os_, gateway=True)
    rns = f"{prefix}r-{hex12(router['id'])}"
    assert rns in sh("ip", "netns", "list").stdout
    # the subnets with DHCP have their DHCP namespace and dnsmasq
    for sub in (web_sub, app_sub):
        assert f"{prefix}d-{hex12(sub['id'])}" in sh("ip", "netns", "list").stdout

    web, app, inet = netns("web"), netns("app"), netns("inet")
    web_ip = plug(host, web, p_web, 24, "10.0.1.1")
    app_ip = plug(host, app, p_app, 24, "10.0.2.1")
    # the "internet": a host at the external subnet's gateway address, on its bridge
    sh("ip", "-n", host, "link", "add", f"x{PID % 100000}", "type", "veth", "peer", "name",
       "eth0", "netns", inet)
    sh("ip", "-n", host, "link", "set", f"x{PID % 100000}", "master",
       "sb" + hex12(pub_sub["id"]), "up")
    ns_run(inet, "ip", "addr", "add", "203.0.113.1/24", "dev", "eth0")
    ns_run(inet, "ip", "link", "set", "eth0", "up")

    # subnet to subnet through the router
    assert wait_for(lambda: ping(web, app_ip), "web -> app")
    assert ping(app, web_ip)
    # a security group with tcp/22 from the web subnet only, instead of app's default group
    os_("security", "group", "create", "ssh-from-web")
    os_("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
        "--remote-ip", "10.0.1.0/24", "ssh-from-web")
    os_("port", "set", "--no-security-group", "--security-group", "ssh-from-web", "p-app",
        fmt=False)
    assert wait_for(lambda: not ping(web, app_ip), "ICMP to app refused")
    assert tcp_reaches(app, web, app_ip, 22)
    assert not tcp_reaches(app, web, app_ip, 23)
    # (app, no longer in web's default group, is refused by web in turn)
    assert not ping(app, web_ip)
    # app to the internet: SNAT to the router's external address
    gw_ip = os_("router", "show", "r1")["external_gateway_info"]["external_fixed_ips"][0][
        "ip_address"]
    assert seen_as(inet, app, "203.0.113.1") == gw_ip
    # the router's legs carry their ports' MACs (what Neutron shows is what answers)
    links = {l["ifname"]: l["address"] for l in json.loads(sh("ip", "-n", rns, "-j", "link").stdout)}
    owners = []
    for p in os_("port", "list", "--router", "r1", "--long"):
        owners.append(p["Device Owner"])
        leg = ("qg" + hex12(router["id"]) if p["Device Owner"] == "network:router_gateway"
               else "qr" + hex12(p["ID"]))
        assert links[leg] == p["MAC Address"], leg
    assert sorted(owners) == ["network:router_gateway"] + ["network:router_interface"] * 2
    # a leg with another MAC (as an older sov-net left it) gets its port's back from the next
    # sov-net, announced with a gratuitous ARP: app's neighbour entry for its gateway follows
    # without app sending anything
    gw_app = next(p for p in os_("port", "list", "--router", "r1", "--long")
                  if p["Fixed IP Addresses"][0]["ip_address"] == "10.0.2.1")
    net.stop()
    sh("ip", "-n", rns, "link", "set", "qr" + hex12(gw_app["ID"]), "address", "02:00:00:00:00:01")
    ns_run(app, "ip", "neigh", "flush", "all")
    assert ping(app, "10.0.2.1")
    lladdr = lambda: json.loads(ns_run(app, "ip", "-j", "neigh", "show", "10.0.2.1").stdout)[0][
        "lladdr"]  # noqa: E731
    assert lladdr() == "02:00:00:00:00:01"
    net.start()
    wait_for(lambda: lladdr() == gw_app["MAC Address"], "the gateway's MAC announced")
    # the internet cannot reach a private address even with a route to it
    ns_run(inet, "ip", "route", "add", "10.0.0.0/16", "via", gw_ip)
    assert not ping(inet, web_ip)
    # a floating IP for web: reachable from the internet, and web's traffic leaves as it
    fip = os_("floating", "ip", "create", "public")["floating_ip_address"]
    os_("floating", "ip", "set", "--port", "p-web", fip, fmt=False)
    wait_for(lambda: os_("floating", "ip", "show", fip)["status"] == "ACTIVE", "FIP ACTIVE")
    # the default security group lets in only its members: the internet is refused...
    assert not ping(inet, fip)
    # ...until rules allow ICMP and tcp/8080 from anywhere
    os_("security", "group", "rule", "create", "--protocol", "icmp", "default")
    os_("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "8080",
        "--remote-ip", "203.0.113.0/24", "default")
    assert wait_for(lambda: ping(inet, fip), "the floating IP from the internet")
    assert seen_as(inet, web, "203.0.113.1") == fip
    assert seen_as(web, inet, fip) == "203.0.113.1"
    assert not ping(inet, web_ip)
    # hairpin: from inside to the floating IP, across subnets and from web's own subnet; the
    # owner sees the router's external address (as from outside), the client the floating IP
    assert seen_as(web, app, fip) == gw_ip
    p_web2 = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=web", "p-web2")
    wait_for(lambda: os_("port", "show", p_web2["id"])["status"] == "ACTIVE", "port ACTIVE")
    web2 = netns("web2")
    plug(host, web2, p_web2, 24, "10.0.1.1")
    assert seen_as(web, web2, fip) == gw_ip
    ns_run(web2, "ip", "link", "del", "vi" + hex12(p_web2["id"]))
    os_("port", "delete", "p-web2", fmt=False)
    # a client with a floating IP of its own is seen as that address, as in Neutron
    fip2 = os_("floating", "ip", "create", "public")["floating_ip_address"]
    os_("floating", "ip", "set", "--port", "p-app", fip2, fmt=False)
    wait_for(lambda: os_("floating", "ip", "show", fip2)["status"] == "ACTIVE", "FIP ACTIVE")
    assert wait_for(lambda: seen_as(web, app, fip) == fip2, "app seen as its floating IP")
    os_("floating", "ip", "delete", fip2, fmt=False)

    # a restarted sov-net finds everything right and changes nothing (same interface indexes)
    def links():
        return {(l["ifname"], l["ifindex"]) for l in json.loads(
            sh("ip", "-n", host, "-j", "link", "show").stdout)}
    before = links()
    applied = net.tmp / "net-state-net1" / "sg-applied.nft"
    loaded = applied.stat().st_ino
    net.restart()
    wait_for(lambda: passes(net) >= 2, "two datapath passes after the restart")
    assert links() == before
    # nor reloads the security groups (each load writes this file anew)
    assert applied.stat().st_ino == loaded
    assert tcp_reaches(app, web, app_ip, 22) and ping(inet, fip)
    # what someone else removes comes back with the next pass: each of the two tables
    def listed(family):
        return sh("ip", "netns", "exec", host, "nft", "list", "table", family, "sov_sg",
                  check=False).stdout
    for family, verb, mark in (("bridge", "delete", "vmap @m_src"),
                               ("inet", "delete", "vmap @m_egress"),
                               ("bridge", "flush", "vmap @m_src")):
        assert mark in listed(family)
        sh("ip", "netns", "exec", host, "nft", verb, "table", family, "sov_sg")
        assert mark not in listed(family)
        wait_for(lambda: mark in listed(family), f"table {family} sov_sg back after {verb}")

    # removal: everything sov-net made goes
    os_("floating", "ip", "delete", fip, fmt=False)
    for p in ("p-web", "p-app"):
        os_("port", "delete", p, fmt=False)
    os_("router", "remove", "subnet", "r1", "web", fmt=False)
    os_("router", "remove", "subnet", "r1", "app", fmt=False)
    os_("router", "unset", "--external-gateway", "r1", fmt=False)
    os_("router", "delete", "r1", fmt=False)
    for s in ("web", "app", "public-v4"):
        os_("subnet", "delete", s, fmt=False)
    os_("network", "delete", "vpc", "public", fmt=False)
    sh("ip", "-n", host, "link", "del", f"x{PID % 100000}")

    def clean():
        links = sh("ip", "-n", host, "-o", "link", "show").stdout
        ours = [l for l in links.splitlines()
                if any(f": {p}" in l for p in ("sb", "vp", "pr", "pg", "pd", "tap"))]
        left = [n for n in sh("ip", "netns", "list").stdout.split()
                if n.startswith((f"{prefix}r-", f"{prefix}d-"))]
        tables = sh("ip", "netns", "exec", host, "nft", "list", "tables").stdout
        return not ours and not left and "sov_sg" not in tables
    wait_for(clean, "sov-net's devices, namespaces and nft tables to go")


def test_vxlan_between_two_hosts_and_same_cidr_in_two_projects(api, start_net, netns):
    """Two "hosts" (namespaces joined by an underlay veth) each run sov-net with a tunnel
    address: ports bound to either host share their subnet over VXLAN. A second project with the
    same CIDR gets its own bridge and VNI: its instance cannot reach the first project's."""
    h1, h2 = netns("h1"), netns("h2")
    sh("ip", "-n", h1, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", h2)
    for ns, addr in ((h1, "10.99.0.1/24"), (h2, "10.99.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", "u0")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
    prefix = f"t{PID}"
    start_net(api, h1, prefix, host="net1", extra="tunnel_ip = 10.99.0.1\n")
    start_net(api, h2, prefix + "b", host="net2", extra="tunnel_ip = 10.99.0.2\nl3 = false\n")
    os_ = api.openstack
    os_("network", "create", "blue")
    sub = os_("subnet", "create", "--network", "blue", "--subnet-range", "10.0.5.0/24", "blue-v4")
    pa = os_("port", "create", "--network", "blue", "--host", "net1", "pa")
    pb = os_("port", "create", "--network", "blue", "--host", "net2", "pb")
    other = api.make_project("other")
    osb = lambda *a, **kw: api.openstack(*a, env=other["env"], **kw)  # noqa: E731
    osb("network", "create", "red")
    red = osb("subnet", "create", "--network", "red", "--subnet-range", "10.0.5.0/24", "red-v4")
    pc = osb("port", "create", "--network", "red", "--fixed-ip",
             f"ip-address={pb['fixed_ips'][0]['ip_address']}", "pc")
    for p, env in ((pa, None), (pb, None), (pc, other["env"])):
        wait_for(lambda: api.openstack("port", "show", p["id"], env=env)["status"] == "ACTIVE",
                 "port ACTIVE")
    a, b, c = netns("ia"), netns("ib"), netns("ic")
    ip_a = plug(h1, a, pa, 24, "10.0.5.1")
    ip_b = plug(h2, b, pb, 24, "10.0.5.1")
    plug(h1, c, pc, 24, "10.0.5.1")
    vx = "vx" + hex12(sub["id"])
    assert vx in sh("ip", "-n", h1, "-o", "link").stdout
    assert wait_for(lambda: ping(a, ip_b), "a -> b over VXLAN")
    assert ping(b, ip_a)
    # the network's MTU (1450: room for VXLAN's 50 bytes) on the devices of both hosts
    tun = "vx" + hex12(sub["id"])
    for ns, dev in ((h1, tun), (h2, tun), (h1, "vp" + hex12(pa["id"])), (a, "vi" + hex12(pa["id"]))):
        assert " mtu 1450 " in sh("ip", "-n", ns, "link", "show", dev).stdout, (ns, dev)
    # (a full-size packet is cut by the instance, to the MTU it was given, not by the underlay)
    underlay_frags, cut = count_fragments_in(h2, "u0"), frag_creates(a)
    assert datagrams(b, a, ip_b, 20) == 20
    assert frag_creates(a) > cut and underlay_frags() == 0
    # red has the same addresses on another bridge and VNI: a reaches b, c reaches nothing
    assert not ping(c, ip_a)
    assert ip_b == pc["fixed_ips"][0]["ip_address"]
    assert ping(a, ip_b)

    # a subnet's VNI: its id's first 24 bits, the same on both hosts, another for red
    def vni(ns, dev):
        doc = json.loads(sh("ip", "-n", ns, "-d", "-j", "link", "show", "dev", dev).stdout)
        return doc[0]["linkinfo"]["info_data"]["id"]
    first = int(hex12(sub["id"])[:6], 16) % 16777214 + 1
    assert vni(h1, vx) == vni(h2, vx) == first
    assert vni(h1, "vx" + hex12(red["id"])) != first
    # a VXLAN device with another VNI (made by hand) is made again by the next pass
    sh("ip", "-n", h1, "link", "del", vx)
    sh("ip", "-n", h1, "link", "add", vx, "type", "vxlan", "id", str(first % 16777214 + 1),
       "local", "10.99.0.1", "dstport", "4789")
    sh("ip", "-n", h1, "link", "set", vx, "master", "sb" + hex12(sub["id"]), "up")
    os_("port", "create", "--network", "blue", "--host", "net1", "pd")  # a change: a pass
    wait_for(lambda: vni(h1, vx) == first, "the VNI put back")
    assert wait_for(lambda: ping(a, ip_b), "a -> b over VXLAN again")
    # a port bound to no host is the network host's (h1, l3 on), not on every host's bridge;
    # once h2 reports a port made after it, h2 has seen the unbound one too
    pu = os_("port", "create", "--network", "blue", "pu")
    pe = os_("port", "create", "--network", "blue", "--host", "net2", "pe")
    for p in (pu, pe):
        wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", "port ACTIVE")
    assert "vp" + hex12(pu["id"]) in sh("ip", "-n", h1, "-o", "link").stdout
    assert "vp" + hex12(pe["id"]) in sh("ip", "-n", h2, "-o", "link").stdout
    assert "vp" + hex12(pu["id"]) not in sh("ip", "-n", h2, "-o", "link").stdout


def l3_roles(api):
    st, doc, r = api.request("GET", "/agent/v1/hosts", token=api.token())
    assert st == 200, r.body
    return {h["host"]: h.get("l3_active") for h in doc["hosts"] if h["kind"] == "network"}


def test_one_l3_host_at_a_time_and_takeover(start_api, start_net, netns):
    """Two network hosts with [net] l3 on (the default) on one VXLAN underlay: sov-api gives the
    l3 role to one, so the router and the DHCP server are realised there only (not twice on one
    segment) and the other host's instance reaches the gateway over VXLAN; Neutron's agent API
    says where. When the holder's host fails, the other takes the role after three heartbeat
    periods, realises them and announces the gateway; the first, back again, stands by. A holder
    cut off with its datapath running loses the role the same way and, back, removes its
    copies."""
    api = start_api("heartbeat = 2s\n")  # [agent]: a host is silent after 6 s
    h1, h2 = netns("h1"), netns("h2")
    sh("ip", "-n", h1, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", h2)
    for ns, addr in ((h1, "10.99.0.1/24"), (h2, "10.99.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", "u0")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
    p1, p2 = f"t{PID}", f"t{PID}b"
    n1 = start_net(api, h1, p1, host="net1", extra="tunnel_ip = 10.99.0.1\n")
    wait_for(lambda: l3_roles(api).get("net1.net"), "net1 holding the l3 role")
    n2 = start_net(api, h2, p2, host="net2", extra="tunnel_ip = 10.99.0.2\n")
    wait_for(lambda: "net2.net" in l3_roles(api), "net2 registered")
    assert l3_roles(api) == {"net1.net": True, "net2.net": False}
    os_ = api.openstack
    os_("network", "create", "blue")
    sub = os_("subnet", "create", "--network", "blue", "--subnet-range", "10.0.5.0/24", "blue-v4")
    router = os_("router", "create", "r1")
    os_("router", "add", "subnet", "r1", "blue-v4", fmt=False)
    # a port made after the router, bound to net2: once net2 reports it, net2 has seen the router
    pb = os_("port", "create", "--network", "blue", "--host", "net2", "pb")
    wait_for(lambda: os_("port", "show", pb["id"])["status"] == "ACTIVE", "port ACTIVE")
    wait_for(lambda: os_("router", "show", "r1")["status"] == "ACTIVE", "router ACTIVE")
    r12, s12 = hex12(router["id"]), hex12(sub["id"])
    names = sh("ip", "netns", "list").stdout
    assert f"{p1}r-{r12}" in names and f"{p1}d-{s12}" in names
    assert f"{p2}r-{r12}" not in names and f"{p2}d-{s12}" not in names
    dh = os_("port", "list", "--network", "blue", "--device-owner", "network:dhcp")[0]
    leg_mac = lambda ns, leg: json.loads(sh("ip", "-n", ns, "-j", "link", "show", leg).stdout)[0][
        "address"]  # noqa: E731
    assert leg_mac(f"{p1}d-{s12}", "dh" + hex12(dh["ID"])) == dh["MAC Address"]
    b = netns("ib")
    plug(h2, b, pb, 24, "10.0.5.1")
    assert wait_for(lambda: ping(b, "10.0.5.1"), "the gateway over VXLAN")
    # Neutron's view: each host a Linux bridge agent, an L3 and a DHCP agent (l3 on); net1's
    # host the router and the network's DHCP
    agents = os_("network", "agent", "list")
    assert sorted((a["Host"], a["Agent Type"], a["Alive"]) for a in agents) == [
        (h, t, True) for h in ("net1", "net2")
        for t in ("DHCP agent", "L3 agent", "Linux bridge agent")]
    hosts_of = lambda *what: [a["Host"] for a in os_("network", "agent", "list", *what)]  # noqa
    assert hosts_of("--router", "r1") == ["net1"] and hosts_of("--network", "blue") == ["net1"]
    l3_agent = {a["Host"]: a["ID"] for a in agents if a["Agent Type"] == "L3 agent"}
    assert [r["Name"] for r in os_("router", "list", "--agent", l3_agent["net1"])] == ["r1"]
    assert os_("router", "list", "--agent", l3_agent["net2"]) == []

    # net1's host fails, its datapath with it: net2 takes the role after three silent heartbeat
    # periods
    n1.kill()
    for ns in (f"{p1}r-{r12}", f"{p1}d-{s12}"):
        sh("ip", "netns", "del", ns)
    reap_dhcp(p1)
    wait_for(lambda: l3_roles(api) == {"net1.net": False, "net2.net": True}, "net2 taking over")
    netns_now = lambda: sh("ip", "netns", "list").stdout  # noqa: E731
    wait_for(lambda: f"{p2}r-{r12}" in netns_now() and f"{p2}d-{s12}" in netns_now(),
             "the router and DHCP on net2")
    # the gateway leg shows itself (a gratuitous ARP, and IPv6's own announcements, so the VPC
    # test is the one that proves the ARP), with its port's MAC as before: net2's bridge, which
    # had learnt that MAC over VXLAN, forwards to its own leg with no traffic from the instance
    gw = next(p for p in os_("port", "list", "--router", "r1", "--long")
              if p["Fixed IP Addresses"][0]["ip_address"] == "10.0.5.1")
    fdb = lambda: json.loads(sh("bridge", "-n", h2, "-j", "fdb", "show", "br", "sb" + s12).stdout)
    wait_for(lambda: any(e["mac"] == gw["MAC Address"] and e.get("ifname") == "pr" + hex12(gw["ID"])
                         for e in fdb()), "the gateway's MAC learnt on net2's own leg")
    assert leg_mac(f"{p2}r-{r12}", "qr" + hex12(gw["ID"])) == gw["MAC Address"]
    assert ping(b, "10.0.5.1")
    assert hosts_of("--router", "r1") == ["net2"] and hosts_of("--network", "blue") == ["net2"]
    assert {a["Host"]: a["Alive"] for a in os_("network", "agent", "list", "--agent-type", "l3")
            } == {"net1": False, "net2": True}
    # net1 back: it stands by (it realises a port bound to it, not the router)
    n1.start()
    pa = os_("port", "create", "--network", "blue", "--host", "net1", "pa")
    wait_for(lambda: os_("port", "show", pa["id"])["status"] == "ACTIVE", "port ACTIVE")
    assert f"{p1}r-{r12}" not in netns_now() and f"{p1}d-{s12}" not in netns_now()
    assert l3_roles(api) == {"net1.net": False, "net2.net": True}

    # now net2 is cut off (its datapath left running): net1 takes the role; net2, back, stands by
    # and removes the router and DHCP server it still had
    n2.kill()
    wait_for(lambda: l3_roles(api) == {"net1.net": True, "net2.net": False}, "net1 taking over")
    wait_for(lambda: f"{p1}r-{r12}" in netns_now() and f"{p1}d-{s12}" in netns_now(),
             "the router and DHCP on net1")
    n2.start()
    wait_for(lambda: f"{p2}r-{r12}" not in netns_now() and f"{p2}d-{s12}" not in netns_now(),
             "net2's copies gone")
    assert hosts_of("--router", "r1") == ["net1"]
    assert wait_for(lambda: ping(b, "10.0.5.1"), "the gateway on net1 again")

    # maintenance: the admin disables net1's L3 agent; net1 stands by, and only once it has
    # removed its router and DHCP server does net2 take the role (never both at once)
    l3_1 = {a["Host"]: a["ID"] for a in os_("network", "agent", "list", "--agent-type", "l3")}
    os_("network", "agent", "set", "--disable", l3_1["net1"], fmt=False)
    seen = []

    def moved():
        names = netns_now()
        seen.append(any(f"{p1}{k}" in names and f"{p2}{k}" in names
                        for k in (f"r-{r12}", f"d-{s12}")))
        return all(f"{p1}{k}" not in names and f"{p2}{k}" in names
                   for k in (f"r-{r12}", f"d-{s12}"))
    wait_for(moved, "the role moved to net2")
    assert not any(seen)
    assert l3_roles(api) == {"net1.net": False, "net2.net": True}
    states = {(a["Host"], a["Agent Type"]): a["State"] for a in os_("network", "agent", "list")}
    assert states[("net1", "L3 agent")] is False and states[("net1", "DHCP agent")] is False
    assert states[("net1", "Linux bridge agent")] is True
    assert wait_for(lambda: ping(b, "10.0.5.1"), "the gateway on net2 after the move")
    # each sov-net echoes the last grant of the role it learnt of (what held the move back
    # until net1 had learnt of its own)
    conf = lambda host: os_("network", "agent", "show", l3_1[host])["configuration"]  # noqa
    wait_for(lambda: conf("net2")["l3_term_seen"] == conf("net2")["l3_term"] > 0,
             "net2 echoing its grant")
    assert conf("net1")["l3_term_seen"] == conf("net1")["l3_term"] > 0
    l2_1 = next(a["ID"] for a in os_("network", "agent", "list")
                if a["Host"] == "net1" and a["Agent Type"] == "Linux bridge agent")
    p = os_("network", "agent", "set", "--disable", l2_1, fmt=False, check=False)
    assert p.returncode != 0 and "cannot be disabled" in p.stderr, p.stderr


GSO_ATTRS = {41: "gso_max_size", 63: "gso_ipv4_max_size", 58: "gro_max_size",
             64: "gro_ipv4_max_size"}


def gso_limits(ns, dev):
    """The GSO/GRO limits of dev in namespace ns, read over rtnetlink (Debian 12's iproute2
    shows neither IPv4 one)."""
    code = r"""
import json, socket, struct, sys
RTM_GETLINK, IFLA_IFNAME = 18, 3
name = sys.argv[1].encode() + b"\0"
attr = struct.pack("=HH", 4 + len(name), IFLA_IFNAME) + name + b"\0" * (-len(name) % 4)
body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + attr
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.sendto(struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, 1, 1, 0) + body, (0, 0))
m = s.recv(65536)
length, kind = struct.unpack_from("=IH", m)
assert kind == 16, kind
off, out = 32, {}
while off + 4 <= length:
    alen, atype = struct.unpack_from("=HH", m, off)
    if alen < 4:
        break
    if alen == 8:
        out[atype] = struct.unpack_from("=I", m, off + 4)[0]
    off += (alen + 3) & ~3
print(json.dumps(out))
"""
    got = json.loads(ns_run(ns, "/usr/bin/python3", "-c", code, dev).stdout)
    return {name: got.get(str(a)) for a, name in GSO_ATTRS.items()}


def test_big_tcp_limits_applied_and_reverted(api, start_net, netns):
    """[net] big_tcp: sov-net's veths (port ends, router legs) get 256 KiB GSO/GRO limits and
    carry traffic; with the setting off again a pass puts them back to the kernel's 64 KiB."""
    host = netns("host")
    prefix = f"t{PID}"
    net = start_net(api, host, prefix, extra="big_tcp = true\n")
    os_ = api.openstack
    _, _, router, p_web, p_app = two_subnet_vpc(os_, gateway=False)
    rns = f"{prefix}r-{hex12(router['id'])}"
    leg = next(l["ifname"] for l in json.loads(sh("ip", "-n", rns, "-j", "link").stdout)
               if l["ifname"].startswith("qr"))
    big = {n: 262144 for n in GSO_ATTRS.values()}
    for ns, dev in ((host, "vp" + hex12(p_web["id"])), (host, "vi" + hex12(p_web["id"])),
                    (rns, leg)):
        assert gso_limits(ns, dev) == big, dev
    web, app = netns("web"), netns("app")
    plug(host, web, p_web, 24, "10.0.1.1")
    app_ip = plug(host, app, p_app, 24, "10.0.2.1")
    assert wait_for(lambda: ping(web, app_ip), "web -> app")
    assert seen_as(app, web, app_ip) == p_web["fixed_ips"][0]["ip_address"]

    # off again: the next pass puts the limits of what is still sov-net's back
    net.stop()
    net.cfg.write_text(net.cfg.read_text().replace("big_tcp = true", "big_tcp = false"))
    net.start()
    small = {n: 65536 for n in GSO_ATTRS.values()}
    wait_for(lambda: gso_limits(host, "vp" + hex12(p_web["id"])) == small
             and gso_limits(rns, leg) == small, "the default limits back")
    assert ping(web, app_ip)


def test_removed_routes_leave_the_namespaces(api, start_net, netns):
    """A router's extra route and a subnet's gateway route in its DHCP namespace go from the
    kernel when they go from the API (sov-net only ever added them)."""
    host = netns("host")
    prefix = f"t{PID}"
    start_net(api, host, prefix)
    os_ = api.openstack
    web_sub, _, router, _, _ = two_subnet_vpc(os_, gateway=False)
    rns = f"{prefix}r-{hex12(router['id'])}"
    dns = f"{prefix}d-{hex12(web_sub['id'])}"

    def routes(ns):
        return {(r["dst"], r.get("gateway")) for r in json.loads(
            sh("ip", "-n", ns, "-4", "-j", "route", "show").stdout)}

    extra = ("192.168.50.0/24", "10.0.2.7")
    os_("router", "set", "--route", "destination=192.168.50.0/24,gateway=10.0.2.7", "r1",
        fmt=False)
    wait_for(lambda: extra in routes(rns), "the extra route in the router")
    os_("router", "unset", "--route", "destination=192.168.50.0/24,gateway=10.0.2.7", "r1",
        fmt=False)
    wait_for(lambda: extra not in routes(rns), "the extra route gone")
    assert ("10.0.1.0/24", None) in routes(rns)  # the connected ones stay

    wait_for(lambda: ("default", "10.0.1.1") in routes(dns), "the DHCP namespace's default")
    os_("router", "remove", "subnet", "r1", "web", fmt=False)  # (the gateway is in use till then)
    os_("subnet", "set", "--gateway", "none", "web", fmt=False)
    wait_for(lambda: not any(d == "default" for d, _ in routes(dns)), "its default route gone")
