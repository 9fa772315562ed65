# SPDX-License-Identifier: Apache-2.0
"""sov-net security groups (src/net/sg.c) on real bridged traffic: a namespace "host" holds
bridge br0 with br_netfilter on, three "instance" namespaces hang off it by veth pairs whose
bridge ends are the ports' "_dev" names. A small C driver (built here from sg.c and core) turns
JSON ports/groups/rules into the nft script, which is loaded with `ip netns exec HOST nft -f -`.
Checked: default group semantics (members reach each other, others cannot reach in; IPv4 and
IPv6 with neighbour discovery), a tcp/22
rule open to one CIDR only, established replies through a port without ingress rules,
anti-spoofing of the source IP and MAC (with a port_security_enabled=false control that shows
the spoofed packet would otherwise arrive), a conntrack zone per bridge (two bridges with the
same addresses: a packet on one must not pass as the reply of a flow on the other), random
overlapping rules resolved into disjoint sets, and that a 10,000-rule compile is a few set
lookups that `nft -c` accepts. Allowed address pairs: a port may send (and ARP) from a pair's
address or CIDR with the pair's MAC and no other, traffic to a pair address meets the port's
ingress rules, a pair counts as a member of its port's groups, and pairs set and cleared with
`openstack port set` take effect through a real sov-api and sov-net. Needs root, ip, nft,
busybox and cc; everything it creates is removed at the end."""
import ipaddress
import json
import os
import pathlib
import random
import re
import secrets
import select
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, clean_env
from test_compute_agent import wait_for
from test_net_l3 import PID, hex12, netns, netns_add, ns_run, ping, plug, start_net  # noqa: F401 (fixtures)

BUILD = pathlib.Path(os.environ.get("SOV_BUILD_DIR") or ROOT / "build")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "busybox", "cc")),
    reason="needs root, ip, nft, busybox and cc")

PREFIX = f"sgt-{os.getpid()}"
HOST = PREFIX + "h"
INST = {"a": 1, "b": 2, "c": 3}  # instance name -> last octet / MAC byte

G_DEF = "0d0d0d0d-0000-4000-8000-000000000001"
G_SSH = "55555555-0000-4000-8000-000000000002"
G_OUT = "e0e0e0e0-0000-4000-8000-000000000003"

DRIVER_C = r"""
/* Test driver: {"ports":[...],"groups":[...],"rules":[...]} on stdin, nft script on stdout. */
#include <stdio.h>
#include <jansson.h>
#include "sg.h"

int main(void)
{
    json_error_t e;
    json_t *in = json_loadf(stdin, 0, &e);
    if (!in) {
        fprintf(stderr, "bad json: %s\n", e.text);
        return 2;
    }
    SovBuf out = SOV_BUF_INIT, err = SOV_BUF_INIT;
    int r = sg_compile(json_object_get(in, "ports"), json_object_get(in, "groups"),
                       json_object_get(in, "rules"), &out, &err);
    if (r < 0) {
        fprintf(stderr, "sg_compile: %d %s\n", r, err.ptr ? err.ptr : "");
        return 1;
    }
    fwrite(out.ptr, 1, out.len, stdout);
    sov_buf_release(&out);
    sov_buf_release(&err);
    json_decref(in);
    return 0;
}
"""

# Listeners of one instance: tcp 22, 23 and 80 answer "ok"; udp 5000 payloads are appended
# to a log file. The process ends by itself after its deadline.
SERVER_PY = r"""
import select, socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
log = open(sys.argv[1], "a", buffering=1)
socks = []
for port in (22, 23, 80):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    socks.append(s)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 5000))
socks.append(u)
print("ready", flush=True)
while time.monotonic() < deadline:
    ready, _, _ = select.select(socks, [], [], 0.5)
    for s in ready:
        if s is u:
            data, _ = u.recvfrom(2048)
            log.write(data.decode(errors="replace") + "\n")
            continue
        c, _ = s.accept()
        c.settimeout(2)
        try:
            c.sendall(b"ok\n")
        except OSError:
            pass
        c.close()
"""

TCP_CLIENT = ("import socket, sys\n"
              "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
              "s.settimeout(2)\n"
              "print(s.recv(16).decode().strip())\n")
UDP_SEND = ("import socket, sys\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.bind(('0.0.0.0', int(sys.argv[4]) if len(sys.argv) > 4 else 0))\n"
            "u.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))\n")
# A UDP listener on one port that appends payloads to a log, ending by itself at its deadline.
UDP_LOG_PY = ("import select, socket, sys, time\n"
              "deadline = time.monotonic() + float(sys.argv[3])\n"
              "log = open(sys.argv[2], 'a', buffering=1)\n"
              "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "u.bind(('0.0.0.0', int(sys.argv[1])))\n"
              "print('ready', flush=True)\n"
              "while time.monotonic() < deadline:\n"
              "    if select.select([u], [], [], 0.5)[0]:\n"
              "        log.write(u.recv(2048).decode(errors='replace') + '\\n')\n")


def sh(*args, check=True, timeout=30, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env=clean_env(), **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r


def ns_of(name):
    return PREFIX + name


def ip_of(name):
    return f"10.9.0.{INST[name]}"


def ip6_of(name):
    return f"fd00:9::{INST[name]}"


def mac_of(name):
    return f"02:00:00:00:00:{INST[name]:02x}"


def dev_of(name):
    return f"vp{name}{INST[name]}"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    core = BUILD / "src/core/libsovcore.a"
    if not core.exists():
        pytest.fail(f"{core} missing: run make first")
    d = tmp_path_factory.mktemp("sgdrv")
    (d / "driver.c").write_text(DRIVER_C)
    libs = sh("pkg-config", "--cflags", "--libs", "jansson").stdout.split()
    out = d / "driver"
    sh("cc", "-std=gnu17", "-D_GNU_SOURCE", "-Wall", "-Werror", "-Wno-unused-parameter",
       "-include", ROOT / "src/core/include/sov/banned.h",
       "-I", ROOT / "src/core/include", "-I", ROOT / "src/net",
       "-o", out, d / "driver.c", ROOT / "src/net/sg.c", core, *libs, timeout=120)
    return out


def compile_sg(driver, ports, groups, rules):
    r = subprocess.run([str(driver)], input=json.dumps(
        {"ports": ports, "groups": groups, "rules": rules}), capture_output=True, text=True,
        timeout=60, env=clean_env())
    assert r.returncode == 0, r.stderr
    return r.stdout


def rule(rid, group, direction, proto=None, pmin=None, pmax=None, prefix=None, remote=None,
         ethertype="IPv4"):
    return {"id": f"{rid:08x}-0000-4000-8000-00000000000{rid % 10}", "security_group_id": group,
            "direction": direction, "ethertype": ethertype, "protocol": proto,
            "port_range_min": pmin, "port_range_max": pmax, "remote_ip_prefix": prefix,
            "remote_group_id": remote}


GROUPS = [{"id": G_DEF, "project_id": "p"}, {"id": G_SSH, "project_id": "p"},
          {"id": G_OUT, "project_id": "p"}]
# G_DEF: the default group (ingress from members, all egress); G_SSH: tcp/22 from c's /32
# only; G_OUT: egress only, nothing may come in.
RULES = [rule(1, G_DEF, "ingress", remote=G_DEF), rule(2, G_DEF, "egress"),
         rule(3, G_SSH, "ingress", "tcp", 22, 22, prefix="10.9.0.3/32"),
         rule(4, G_OUT, "egress"),
         rule(5, G_DEF, "ingress", remote=G_DEF, ethertype="IPv6"),
         rule(6, G_DEF, "egress", ethertype="IPv6"), rule(7, G_OUT, "egress", ethertype="IPv6")]
PORT_GROUPS = {"a": [G_DEF, G_SSH], "b": [G_DEF], "c": [G_OUT]}


def port(name, secured=True):
    return {"id": f"{INST[name]:08x}-1111-4000-8000-000000000000", "mac_address": mac_of(name),
            "fixed_ips": [{"subnet_id": "5b0b0b0b-0000-4000-8000-000000000000",
                           "ip_address": ip_of(name)},
                          {"subnet_id": "6b0b0b0b-0000-4000-8000-000000000000",
                           "ip_address": ip6_of(name)}],
            "security_groups": PORT_GROUPS[name], "port_security_enabled": secured,
            "device_owner": "compute:nova", "_dev": dev_of(name), "_bridge": "br0"}


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    """The host namespace with br0 and three instances; listeners in each instance."""
    made, servers = [], []
    logs = tmp_path_factory.mktemp("sglogs")
    try:
        netns_add(HOST)
        made.append(HOST)
        sh("ip", "-n", HOST, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", HOST, "link", "set", "br0", "up")
        for name in INST:
            ns = ns_of(name)
            netns_add(ns)
            made.append(ns)
            sh("ip", "link", "add", dev_of(name), "netns", HOST, "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh("ip", "-n", HOST, "link", "set", dev_of(name), "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac_of(name))
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", ip_of(name) + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "addr", "add", ip6_of(name) + "/64", "dev", "eth0", "nodad")
        # br_netfilter must be loaded for these per-namespace switches to exist.
        sh("ip", "netns", "exec", HOST, "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1",
           "net.bridge.bridge-nf-call-ip6tables=1")
        for name in INST:
            log = logs / f"{name}.log"
            log.touch()
            p = subprocess.Popen(["ip", "netns", "exec", ns_of(name), "/usr/bin/python3", "-c",
                                  SERVER_PY, str(log), "600"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=clean_env())
            servers.append(p)
            ready, _, _ = select.select([p.stdout], [], [], 20)
            assert ready and p.stdout.readline().strip() == "ready", p.stderr.read()
        yield {"logs": logs}
    finally:
        for p in servers:
            p.kill()
            p.wait(timeout=10)
        for ns in reversed(made):
            sh("ip", "netns", "del", ns, check=False)


def apply(driver, secured=("a", "b", "c")):
    script = compile_sg(driver, [port(n, n in secured) for n in INST], GROUPS, RULES)
    sh("ip", "netns", "exec", HOST, "nft", "-f", "-", input=script)
    return script


def ping_ok(src, dst_ip):
    r = sh("ip", "netns", "exec", ns_of(src), "busybox", "ping", "-c", "1", "-W", "2", dst_ip,
           check=False)
    return r.returncode == 0


def ping6_ok(src, dst_ip):
    r = sh("ip", "netns", "exec", ns_of(src), "busybox", "ping6", "-c", "1", "-W", "2", dst_ip,
           check=False)
    return r.returncode == 0


def tcp_ok(src, dst_ip, port_no):
    r = sh("ip", "netns", "exec", ns_of(src), "/usr/bin/python3", "-c", TCP_CLIENT, dst_ip,
           port_no, check=False)
    return r.returncode == 0 and r.stdout.strip() == "ok"


def udp_send(src, dst_ip, payload, port_no=5000, sport=0):
    sh("ip", "netns", "exec", ns_of(src), "/usr/bin/python3", "-c", UDP_SEND, dst_ip, port_no,
       payload, sport)


def wait_logged(topo, name, payload, timeout=10.0):
    log = topo["logs"] / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if payload in log.read_text().split():
            return True
        time.sleep(0.05)
    return False


def logged(topo, name, payload):
    return payload in (topo["logs"] / f"{name}.log").read_text().split()


def test_default_group_members_only(driver, topo):
    apply(driver)
    assert ping_ok("a", ip_of("b"))
    assert ping_ok("b", ip_of("a"))
    assert tcp_ok("b", ip_of("a"), 80)
    # c is in no group of a or b: it cannot reach in, and nothing reaches c (no ingress rule).
    assert not ping_ok("c", ip_of("a"))
    assert not ping_ok("c", ip_of("b"))
    assert not ping_ok("a", ip_of("c"))


def test_ipv6_default_group_and_neighbour_discovery(driver, topo):
    """IPv6 needs neighbour discovery through the filter (implicit ICMPv6 allowances) and the
    link-local source address derived from the MAC."""
    apply(driver)
    assert ping6_ok("a", ip6_of("b"))
    assert ping6_ok("b", ip6_of("a"))
    assert not ping6_ok("c", ip6_of("a"))
    assert not ping6_ok("a", ip6_of("c"))


def test_tcp22_from_one_cidr_and_established_replies(driver, topo):
    apply(driver)
    # c has no ingress rule at all, so the "ok" it reads came back as an established reply.
    assert tcp_ok("c", ip_of("a"), 22)
    assert not tcp_ok("c", ip_of("a"), 23)
    assert not tcp_ok("c", ip_of("b"), 22)  # b is not in the ssh group


def test_antispoof_source_ip(driver, topo):
    """c takes b's address (a member of a's default group): its packets must not reach a."""
    apply(driver)
    sh("ip", "-n", ns_of("c"), "addr", "del", ip_of("c") + "/24", "dev", "eth0")
    sh("ip", "-n", ns_of("c"), "addr", "add", ip_of("b") + "/24", "dev", "eth0")
    # A static neighbour: c's ARP with b's address is itself dropped at the bridge.
    sh("ip", "-n", ns_of("c"), "neigh", "replace", ip_of("a"), "lladdr", mac_of("a"), "dev",
       "eth0", "nud", "permanent")
    try:
        spoofed, marker = "spoof-" + secrets.token_hex(4), "real-" + secrets.token_hex(4)
        udp_send("c", ip_of("a"), spoofed)
        udp_send("b", ip_of("a"), marker)
        assert wait_logged(topo, "a", marker)
        assert not logged(topo, "a", spoofed)
        # Control: without port security on c the same packet does arrive.
        apply(driver, secured=("a", "b"))
        control = "control-" + secrets.token_hex(4)
        udp_send("c", ip_of("a"), control)
        assert wait_logged(topo, "a", control)
    finally:
        sh("ip", "-n", ns_of("c"), "addr", "flush", "dev", "eth0")
        sh("ip", "-n", ns_of("c"), "addr", "add", ip_of("c") + "/24", "dev", "eth0")
        sh("ip", "-n", ns_of("c"), "addr", "add", ip6_of("c") + "/64", "dev", "eth0", "nodad")
        sh("ip", "-n", ns_of("c"), "neigh", "flush", "dev", "eth0")
        apply(driver)
    assert tcp_ok("c", ip_of("a"), 22)


def test_antispoof_source_mac(driver, topo):
    apply(driver)
    assert ping_ok("b", ip_of("a"))  # a and b know each other's MAC now
    sh("ip", "-n", ns_of("b"), "link", "set", "eth0", "address", "02:00:00:00:00:99")
    # The MAC change flushed b's neighbours; a static entry keeps ARP (whose sender MAC is
    # checked too) out of the way, so the frame itself meets the check.
    sh("ip", "-n", ns_of("b"), "neigh", "replace", ip_of("a"), "lladdr", mac_of("a"), "dev",
       "eth0", "nud", "permanent")
    try:
        spoofed = "mac-" + secrets.token_hex(4)
        udp_send("b", ip_of("a"), spoofed)
    finally:
        sh("ip", "-n", ns_of("b"), "link", "set", "eth0", "address", mac_of("b"))
        sh("ip", "-n", ns_of("b"), "neigh", "flush", "dev", "eth0")
    marker = "real-" + secrets.token_hex(4)
    udp_send("b", ip_of("a"), marker)
    assert wait_logged(topo, "a", marker)
    assert not logged(topo, "a", spoofed)


def test_ten_thousand_rules_are_set_elements(driver, topo):
    rules = [rule(i, G_DEF, "ingress", "tcp", 1000 + i % 50, 1000 + i % 50,
                  prefix=f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}/32")
             for i in range(10000)]
    # Overlaps the kernel would refuse in one set: a box inside another, and two boxes that
    # only partly overlap (10.100.0.1 tcp/1000 lies in both).
    rules.append(rule(20000, G_DEF, "ingress", "tcp", 1000, 1020, prefix="10.0.0.0/8"))
    rules.append(rule(20002, G_DEF, "ingress", "tcp", 900, 1000, prefix="10.100.0.0/24"))
    rules.append(rule(20003, G_DEF, "ingress", "tcp", 1000, 1100, prefix="10.100.0.1/32"))
    rules.append(rule(20001, G_DEF, "ingress", "icmp", 8, None, prefix="0.0.0.0/0"))
    ports = [port(n) for n in INST]
    script = compile_sg(driver, ports, GROUPS, rules)
    lookups = [line for line in script.splitlines() if "@s" in line and "accept" in line]
    assert len(lookups) <= 10, lookups
    assert script.count(" . 6 . ") >= 5000
    sh("ip", "netns", "exec", HOST, "nft", "-c", "-f", "-", input=script, timeout=120)


def _box(r):
    """The (addr lo, addr hi, proto lo, proto hi, port lo, port hi, kind) a rule stands for."""
    net = ipaddress.ip_network(r["remote_ip_prefix"] or "0.0.0.0/0")
    lo, hi = int(net.network_address), int(net.broadcast_address)
    p, pmin, pmax = r["protocol"], r["port_range_min"], r["port_range_max"]
    if p is None:
        return (lo, hi, 0, 255, 0, 65535, "p")
    if p == "icmp":
        if pmin is None:
            return (lo, hi, 1, 1, 0, 65535, "p")
        return (lo, hi, 1, 1, pmin * 256 + (pmax or 0),
                pmin * 256 + (255 if pmax is None else pmax), "t")
    num = {"tcp": 6, "udp": 17}[p]
    return (lo, hi, num, num, 0 if pmin is None else pmin, 65535 if pmin is None else pmax, "p")


def test_overlapping_rules_resolve_to_disjoint_sets(driver):
    """Random overlapping rules: within each set no two elements overlap (the kernel refuses
    that), every rule lies inside some element of its kind, and every element is a rule or the
    merged ports of rules with the same addresses and protocol."""
    def elem(text):
        addr, proto, port = [x.strip() for x in text.split(" . ")]
        net = ipaddress.ip_network(addr)
        pl, _, ph = proto.partition("-")
        ol, _, oh = port.partition("-")
        return (int(net.network_address), int(net.broadcast_address), int(pl), int(ph or pl),
                int(ol), int(oh or ol))

    def overlap(a, b):
        return all(a[k] <= b[k + 1] and b[k] <= a[k + 1] for k in (0, 2, 4))

    def inside(a, b):
        return all(b[k] <= a[k] and a[k + 1] <= b[k + 1] for k in (0, 2, 4))

    def covered(e, boxes):
        """e allows nothing the rules do not: it is a rule, or rules of its addresses and
        protocol whose ports, merged, are exactly its ports."""
        mine = sorted(b[4:6] for b in boxes if b[:4] == e[:4] and inside(b[:6], e))
        at = e[4]
        for lo, hi in mine:
            if lo > at:
                return False
            at = max(at, hi + 1)
        return bool(mine) and mine[0][0] == e[4] and at == e[5] + 1

    rnd = random.Random(7)
    ports = [port("a")]
    for _ in range(150):
        rules = []
        for i in range(rnd.randint(1, 40)):
            net = ipaddress.ip_network(
                f"{rnd.choice(['10.0.0.0', '10.0.0.64', '10.0.0.7'])}/"
                f"{rnd.choice([0, 8, 24, 26, 30, 32])}", strict=False)
            proto = rnd.choice([None, "tcp", "tcp", "udp", "icmp"])
            pmin = pmax = None
            if proto in ("tcp", "udp") and rnd.random() < 0.8:
                pmin = rnd.randint(0, 20)
                pmax = pmin + rnd.randint(0, 10)
            if proto == "icmp" and rnd.random() < 0.7:
                pmin, pmax = rnd.randint(0, 3), rnd.choice([None, 0, 1])
            rules.append(rule(i, G_DEF, "ingress", proto, pmin, pmax, prefix=str(net)))
        script = compile_sg(driver, ports, GROUPS, rules)
        sets = {m.group(1): [elem(e) for e in m.group(2).split(",")] for m in re.finditer(
            r"set (s\S+) \{.*?elements = \{(.*?)\}", script, re.S)}
        for name, els in sets.items():
            for i, a in enumerate(els):
                assert not any(overlap(a, b) for b in els[i + 1:]), (name, a)
        boxes = [_box(r) for r in rules]
        for b in boxes:
            assert any(inside(b[:6], e) for n, els in sets.items() if n[-2] == b[6]
                       for e in els), b
        for els in sets.values():
            for e in els:
                assert covered(e, boxes), e


# Two instances on a second bridge br1 with the same addresses as a and b (another project's
# subnet with the same CIDR), in G_OUT: nothing may come in.
TWINS = {"x": ("10.9.0.1", "02:00:00:00:01:01", "vpx1"), "y": ("10.9.0.2", "02:00:00:00:01:02",
                                                               "vpy2")}


def twin_port(name, bridge):
    ip, mac, dev = TWINS[name]
    p = {"id": f"{ord(name):08x}-2222-4000-8000-000000000000", "mac_address": mac,
         "fixed_ips": [{"ip_address": ip}], "security_groups": [G_OUT], "_dev": dev}
    if bridge:
        p["_bridge"] = "br1"
    return p


@pytest.fixture
def twins(topo, tmp_path):
    made, procs = [], []
    try:
        sh("ip", "-n", HOST, "link", "add", "br1", "type", "bridge")
        sh("ip", "-n", HOST, "link", "set", "br1", "up")
        for name, (ip, mac, dev) in TWINS.items():
            ns = ns_of(name)
            netns_add(ns)
            made.append(ns)
            sh("ip", "link", "add", dev, "netns", HOST, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", HOST, "link", "set", dev, "master", "br1", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        log = tmp_path / "x.log"
        log.touch()
        p = subprocess.Popen(["ip", "netns", "exec", ns_of("x"), "/usr/bin/python3", "-c",
                              UDP_LOG_PY, "5002", str(log), "300"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=clean_env())
        procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 20)
        assert ready and p.stdout.readline().strip() == "ready", p.stderr.read()
        yield log
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "-n", HOST, "link", "del", "br1", check=False)


def test_conntrack_zone_per_bridge(driver, topo, twins):
    """a (10.9.0.1:5002) sends to b (10.9.0.2:5000) on br0; on br1, y (also 10.9.0.2) sends
    from port 5000 to x (also 10.9.0.1) port 5002: the reply tuple of a's flow. x accepts
    nothing, so only a shared conntrack entry could let it in."""
    def run(zones):
        ports = [port(n) for n in INST] + [twin_port(n, zones) for n in TWINS]
        if not zones:
            for p in ports:
                p.pop("_bridge", None)
        script = compile_sg(driver, ports, GROUPS, RULES)
        assert ("ct zone set iifname map" in script) == zones
        sh("ip", "netns", "exec", HOST, "nft", "-f", "-", input=script)
        marker, sneak = "flow-" + secrets.token_hex(4), "sneak-" + secrets.token_hex(4)
        udp_send("a", ip_of("b"), marker, 5000, 5002)
        assert wait_logged(topo, "b", marker)
        sh("ip", "netns", "exec", ns_of("y"), "/usr/bin/python3", "-c", UDP_SEND, TWINS["x"][0],
           5002, sneak, 5000)
        return sneak

    blocked = run(zones=True)
    # Control: with one zone for both bridges the same packet is taken for a reply and passes.
    leaked = run(zones=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and leaked not in twins.read_text().split():
        time.sleep(0.05)
    assert leaked in twins.read_text().split()
    assert blocked not in twins.read_text().split()
    apply(driver)


# ---- allowed address pairs ----------------------------------------------------------------

UDP_FROM = ("import socket, sys\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.bind((sys.argv[1], 0))\n"
            "u.sendto(sys.argv[4].encode(), (sys.argv[2], int(sys.argv[3])))\n")

# b takes udp/5000 from all of 10.9.0.0/24: whether a packet arrives depends only on the
# sender's anti-spoofing.
RULES_UDP_OPEN = RULES + [rule(30, G_DEF, "ingress", "udp", 5000, 5000, prefix="10.9.0.0/24")]


def apply_pairs(driver, pairs, rules=RULES):
    """Loads the script with pairs[name] as the allowed_address_pairs of that instance."""
    ports = [port(n) for n in INST]
    for p, name in zip(ports, INST):
        if name in pairs:
            p["allowed_address_pairs"] = pairs[name]
    script = compile_sg(driver, ports, GROUPS, rules)
    sh("ip", "netns", "exec", HOST, "nft", "-f", "-", input=script)
    return script


def udp_from(ns, src_ip, dst_ip, payload, port_no=5000):
    sh("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", UDP_FROM, src_ip, dst_ip, port_no,
       payload)


def arrives(topo, ns, src_ip, dev="eth0"):
    """Whether a UDP packet from src_ip (in ns) reaches b. b's neighbour entry is pinned so
    the packet leaves at once, and a marker from a (admitted anyway) is sent after it and
    awaited, so a miss is not a delay."""
    sh("ip", "-n", ns, "neigh", "replace", ip_of("b"), "lladdr", mac_of("b"), "dev", dev, "nud",
       "permanent")
    probe, marker = "probe-" + secrets.token_hex(4), "marker-" + secrets.token_hex(4)
    udp_from(ns, src_ip, ip_of("b"), probe)
    udp_from(ns_of("a"), ip_of("a"), ip_of("b"), marker)
    assert wait_logged(topo, "b", marker)
    return logged(topo, "b", probe)


@pytest.fixture
def extra_addrs(driver, topo):
    """extra_addrs(name, cidr): a secondary address in an instance; all removed at the end,
    neighbours flushed and the plain script loaded again."""
    added = []

    def add(name, cidr):
        sh("ip", "-n", ns_of(name), "addr", "add", cidr, "dev", "eth0",
           *(["nodad"] if ":" in cidr else []))
        added.append((name, cidr))

    yield add
    for name, cidr in added:
        sh("ip", "-n", ns_of(name), "addr", "del", cidr, "dev", "eth0", check=False)
    for name in INST:
        sh("ip", "-n", ns_of(name), "neigh", "flush", "dev", "eth0", check=False)
    apply(driver)


def test_address_pair_host_and_cidr(driver, topo, extra_addrs):
    """a sends from secondary addresses: dropped without a pair, passes with the pair (as a
    host address, as a CIDR that holds it, as 0.0.0.0/0), and a CIDR pair does not admit an
    address outside it."""
    for cidr in ("10.9.0.200/24", "10.9.0.150/24", "10.9.0.100/24"):
        extra_addrs("a", cidr)
    apply_pairs(driver, {}, RULES_UDP_OPEN)
    assert arrives(topo, ns_of("a"), ip_of("a"))  # the control: a's own address
    assert not arrives(topo, ns_of("a"), "10.9.0.200")
    apply_pairs(driver, {"a": [{"ip_address": "10.9.0.200"}]}, RULES_UDP_OPEN)
    assert arrives(topo, ns_of("a"), "10.9.0.200")
    assert not arrives(topo, ns_of("a"), "10.9.0.150")
    apply_pairs(driver, {"a": [{"ip_address": "10.9.0.128/25"}]}, RULES_UDP_OPEN)
    assert arrives(topo, ns_of("a"), "10.9.0.150")
    assert arrives(topo, ns_of("a"), "10.9.0.200")
    assert not arrives(topo, ns_of("a"), "10.9.0.100")
    assert arrives(topo, ns_of("a"), ip_of("a"))  # fixed IPs still pass next to the pair
    apply_pairs(driver, {"a": [{"ip_address": "0.0.0.0/0"}]}, RULES_UDP_OPEN)
    assert arrives(topo, ns_of("a"), "10.9.0.100")
    assert arrives(topo, ns_of("a"), ip_of("a"))
    # removed again: blocked again
    apply_pairs(driver, {}, RULES_UDP_OPEN)
    assert not arrives(topo, ns_of("a"), "10.9.0.150")


def test_ipv6_address_pair(driver, topo, extra_addrs):
    """An IPv6 pair, like an IPv6 fixed IP: a reaches b (which admits members of its default
    group) from the pair address, with neighbour discovery, and not without the pair."""
    extra_addrs("a", "fd00:9::c8/64")

    def ping6_from():
        return sh("ip", "netns", "exec", ns_of("a"), "busybox", "ping6", "-c", "1", "-W", "2",
                  "-I", "fd00:9::c8", ip6_of("b"), check=False).returncode == 0

    apply_pairs(driver, {})
    assert not ping6_from()
    apply_pairs(driver, {"a": [{"ip_address": "fd00:9::c8"}]})
    assert ping6_from()
    assert ping6_ok("a", ip6_of("b"))
    apply_pairs(driver, {"a": [{"ip_address": "fd00:9::/120"}]})
    assert ping6_from()


@pytest.fixture
def vmac(topo):
    """A namespace behind a macvlan on a's eth0 with MAC 02:00:00:00:00:aa and 10.9.0.201/24
    (keepalived's virtual MAC): frames from a's port with another source MAC."""
    ns = ns_of("v")
    netns_add(ns)
    try:
        sh("ip", "-n", ns_of("a"), "link", "add", "mv0", "link", "eth0", "address",
           "02:00:00:00:00:aa", "type", "macvlan", "mode", "bridge")
        sh("ip", "-n", ns_of("a"), "link", "set", "mv0", "netns", ns)
        sh("ip", "-n", ns, "addr", "add", "10.9.0.201/24", "dev", "mv0")
        sh("ip", "-n", ns, "addr", "add", "10.9.0.202/24", "dev", "mv0")
        sh("ip", "-n", ns, "link", "set", "mv0", "up")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)
        for name in INST:
            sh("ip", "-n", ns_of(name), "neigh", "flush", "dev", "eth0", check=False)


def test_address_pair_with_another_mac(driver, topo, vmac):
    """A pair with its own MAC: that MAC may send (and ARP) from the pair's address, and only
    from it; the same address with the port's own MAC (the default) does not admit the other
    MAC."""
    def ping_b():
        return sh("ip", "netns", "exec", vmac, "busybox", "ping", "-c", "1", "-W", "2",
                  ip_of("b"), check=False).returncode == 0

    try:
        apply_pairs(driver, {"a": [{"ip_address": "10.9.0.201"}]}, RULES_UDP_OPEN)
        assert not ping_b()
        assert not arrives(topo, vmac, "10.9.0.201", dev="mv0")
        apply_pairs(driver, {"a": [{"ip_address": "10.9.0.201",
                                    "mac_address": "02:00:00:00:00:aa"}]}, RULES_UDP_OPEN)
        # ARP and ICMP both ways: b admits the pair address as a member of its group
        assert ping_b()
        assert arrives(topo, vmac, "10.9.0.201", dev="mv0")
        assert not arrives(topo, vmac, "10.9.0.202", dev="mv0")
        assert arrives(topo, ns_of("a"), ip_of("a"))  # the port's own MAC and IP still pass
    finally:
        apply(driver)


def test_traffic_to_pair_address_meets_ingress_rules(driver, topo, extra_addrs):
    """b (a member of a's default group) reaches a at its pair address, c (no member) does
    not; without the pair a's ARP answers for that address are dropped, so b cannot either."""
    extra_addrs("a", "10.9.0.200/24")
    apply_pairs(driver, {})
    assert not ping_ok("b", "10.9.0.200")
    apply_pairs(driver, {"a": [{"ip_address": "10.9.0.200"}]})
    assert ping_ok("b", "10.9.0.200")
    assert tcp_ok("b", "10.9.0.200", 80)
    assert not ping_ok("c", "10.9.0.200")
    assert not tcp_ok("c", "10.9.0.200", 80)


def test_remote_group_admits_pair_address(driver, topo, extra_addrs):
    """b admits only members of its default group (RULES). a's pair address is a member (a
    carries the group); c's pair address passes c's anti-spoofing but is no member."""
    extra_addrs("a", "10.9.0.200/24")
    extra_addrs("c", "10.9.0.210/24")
    apply_pairs(driver, {"a": [{"ip_address": "10.9.0.200"}],
                         "c": [{"ip_address": "10.9.0.210"}]})
    assert arrives(topo, ns_of("a"), "10.9.0.200")
    assert not arrives(topo, ns_of("c"), "10.9.0.210")
    # the group's set holds the pair address
    script = apply_pairs(driver, {"a": [{"ip_address": "10.9.0.192/27"}]})
    assert "10.9.0.192/27 . 0-255 . 0-65535" in script
    assert arrives(topo, ns_of("a"), "10.9.0.200")


def test_address_pairs_from_the_openstack_cli(api, start_net, netns):
    """sov-api and sov-net, driven by the openstack CLI: p1's instance adds secondary addresses;
    sending from them to p2 (whose default group admits only its members) works once they are
    p1's allowed address pairs, as a host address or a CIDR, and stops when the pairs are
    cleared."""
    host = netns("host")
    start_net(api, host, f"t{PID}")
    os_ = api.openstack
    os_("network", "create", "aap")
    os_("subnet", "create", "--network", "aap", "--subnet-range", "10.0.1.0/24", "aap-v4")
    p1 = os_("port", "create", "--network", "aap", "p1")
    p2 = os_("port", "create", "--network", "aap", "p2")
    for p in (p1, p2):
        wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", "port ACTIVE")
    i1, i2 = netns("i1"), netns("i2")
    plug(host, i1, p1, 24, "10.0.1.1")
    ip2 = plug(host, i2, p2, 24, "10.0.1.1")
    dev1 = "vi" + hex12(p1["id"])
    assert wait_for(lambda: ping(i1, ip2), "p1 -> p2 from its fixed IP")

    def filtered():  # both ports have their anti-spoofing chains (so a refusal is theirs)
        r = ns_run(host, "nft", "list", "table", "bridge", "sov_sg", check=False)
        return r.returncode == 0 and all(f"vp{hex12(p['id'])}" in r.stdout for p in (p1, p2))
    wait_for(filtered, "the security group tables")
    for addr in ("10.0.1.200", "10.0.1.150", "10.0.1.100"):
        ns_run(i1, "ip", "addr", "add", f"{addr}/24", "dev", dev1)

    def from_(src):
        return ns_run(i1, "busybox", "ping", "-c", "1", "-W", "1", "-I", src, ip2,
                      check=False).returncode == 0

    assert not from_("10.0.1.200")
    os_("port", "set", "--allowed-address", "ip-address=10.0.1.200", "p1", fmt=False)
    pairs = os_("port", "show", "p1")["allowed_address_pairs"]
    assert pairs == [{"ip_address": "10.0.1.200", "mac_address": p1["mac_address"]}], pairs
    assert wait_for(lambda: from_("10.0.1.200"), "p1 -> p2 from its pair address")
    assert not from_("10.0.1.150")
    # replaced by a CIDR
    os_("port", "set", "--no-allowed-address", "--allowed-address", "ip-address=10.0.1.128/25",
        "p1", fmt=False)
    assert wait_for(lambda: from_("10.0.1.150"), "p1 -> p2 from inside its pair CIDR")
    assert from_("10.0.1.200")
    assert not from_("10.0.1.100")
    # cleared: blocked again, the fixed IP still passes
    os_("port", "set", "--no-allowed-address", "p1", fmt=False)
    assert wait_for(lambda: not from_("10.0.1.150") and not from_("10.0.1.200"),
                    "the pair addresses blocked again")
    assert ping(i1, ip2)
