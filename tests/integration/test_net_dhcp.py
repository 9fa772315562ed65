# SPDX-License-Identifier: Apache-2.0
"""sov-net's DHCP and DNS (src/net/dhcp.c) with a real dnsmasq and real clients: a namespace
"host" holds a bridge that dnsmasq serves, and client namespaces hang off it by veth pairs.
A small C driver (built here from dhcp.c, dhcpconf.c and core) runs dhcp_apply() on a libuv loop and takes
JSON commands on stdin; busybox udhcpc in the clients must get exactly the static address,
router, DNS servers, domain, host name and routes of its port; a MAC without a port gets
nothing; a new port is served after the SIGHUP path; a killed dnsmasq comes back; stop removes
process and files; an agent that dies leaves its dnsmasqs serving and the next one keeps them
(or replaces one whose subnet changed), and a stopped sov-net does likewise. End to end, sov-api and sov-net (driven by the openstack CLI) serve an
instance namespace its lease with the DHCP port as DNS server, and busybox nslookup resolves the
ports' names (dns_name, else host-a-b-c-d, in the network's dns_domain) both ways; a renamed
port is answered by the same dnsmasq, a bad dns_name is refused, unknown names are refused, a
configured upstream resolver answers the rest through the router's SNAT, and a subnet with
dns_nameservers hands those out. Needs root, ip, nft, dnsmasq and busybox; everything it
creates is removed at the end."""
import json
import os
import pathlib
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, clean_env
from test_net_l3 import PID, hex12, netns, netns_add, ns_run, start_net  # noqa: F401 (fixtures)

BUILD = pathlib.Path(os.environ.get("SOV_BUILD_DIR") or ROOT / "build")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "dnsmasq", "busybox", "cc")),
    reason="needs root, ip, dnsmasq, busybox and cc")

SUBNET_ID = "3c1f5a52-8a8e-4b8e-9d0b-6f6f0b7d1a10"
MAC1, MAC2, MAC3 = "fa:16:3e:5a:00:01", "fa:16:3e:5a:00:02", "fa:16:3e:5a:00:03"
SUBNET2_ID = "77e0a9c4-29a2-4c1e-8d43-0b1d3c5e7f20"

DRIVER_C = r"""
/* Test driver: one JSON command per stdin line, one JSON answer per stdout line. */
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <jansson.h>
#include "dhcp.h"

static uv_loop_t *loop;
static Dhcp *dh[4]; /* by "slot" */
static Dhcp *d;
static char line[1 << 16];
static size_t used;

static void answer(int rc, const char *err)
{ /* about the Dhcp of the command's slot */
    json_t *a = json_pack("{s:i, s:s, s:i, s:b}", "rc", rc, "err", err ? err : "",
                          "pid", dhcp_pid(d), "running", dhcp_running(d));
    char *s = json_dumps(a, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(a);
}

static void command(const char *text)
{
    json_t *c = json_loads(text, 0, NULL);
    const char *op = json_string_value(json_object_get(c, "op"));
    size_t slot = (size_t)json_integer_value(json_object_get(c, "slot")) % 4;
    d = dh[slot];
    if (!op) {
        answer(-22, "bad command");
    } else if (strcmp(op, "apply") == 0) {
        SovBuf err = SOV_BUF_INIT;
        int r = dhcp_apply(loop, json_string_value(json_object_get(c, "state_dir")),
                           json_string_value(json_object_get(c, "netns")),
                           json_string_value(json_object_get(c, "ifname")),
                           json_string_value(json_object_get(c, "server_ip")),
                           json_object_get(c, "subnet"), json_object_get(c, "ports"), &dh[slot], &err);
        d = dh[slot];
        answer(r, err.ptr);
        sov_buf_release(&err);
    } else if (strcmp(op, "stop") == 0) {
        dhcp_stop(d);
        d = dh[slot] = NULL;
        answer(0, NULL);
    } else if (strcmp(op, "status") == 0) {
        answer(0, NULL);
    } else {
        answer(-22, "unknown op");
    }
    json_decref(c);
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    b->base = line + used;
    b->len = sizeof(line) - used - 1;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) { /* EOF: stop and let the loop run out */
        for (size_t i = 0; i < 4; i++) {
            dhcp_stop(dh[i]);
            dh[i] = NULL;
        }
        uv_close((uv_handle_t *)s, NULL);
        return;
    }
    used += (size_t)n;
    line[used] = '\0';
    char *nl;
    while ((nl = strchr(line, '\n'))) {
        *nl = '\0';
        command(line);
        used -= (size_t)(nl + 1 - line);
        memmove(line, nl + 1, used + 1);
    }
}

int main(void)
{
    static uv_pipe_t in;
    loop = uv_default_loop();
    uv_pipe_init(loop, &in, 0);
    uv_pipe_open(&in, 0);
    uv_read_start((uv_stream_t *)&in, alloc_cb, read_cb);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 3;
}
"""

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
printf 'ip=%s\\nsubnet=%s\\nrouter=%s\\ndns=%s\\nstaticroutes=%s\\nlease=%s\\ndomain=%s\\nhostname=%s\\n' \\
    "$ip" "$subnet" "$router" "$dns" "$staticroutes" "$lease" "$domain" "$hostname" > "$UDHCPC_OUT"
printf 'mtu=%s\\n' "$mtu" >> "$UDHCPC_OUT"
"""


def sh(*args, check=True, timeout=30):
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True,
                          text=True, env=clean_env())


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def driver_bin(tmp_path_factory):
    core = BUILD / "src/core/libsovcore.a"
    llhttp = BUILD / "src/core/libllhttp.a"
    if not core.exists():
        pytest.fail(f"{core} missing: run make first")
    d = tmp_path_factory.mktemp("dhcpdrv")
    (d / "driver.c").write_text(DRIVER_C)
    libs = sh("pkg-config", "--cflags", "--libs", "libuv", "jansson", "inih", "expat",
              "libcrypto", "libssl").stdout.split()
    out = d / "driver"
    sh("cc", "-std=gnu17", "-D_GNU_SOURCE", "-Wall", "-Werror", "-Wno-unused-parameter",
       "-include", str(ROOT / "src/core/include/sov/banned.h"),
       "-I", str(ROOT / "src/core/include"), "-I", str(ROOT / "src/net"),
       "-o", str(out), str(d / "driver.c"), str(ROOT / "src/net/dhcp.c"),
       str(ROOT / "src/net/dhcpconf.c"), str(core),
       str(llhttp), *libs, "-lpthread", "-lm", timeout=120)
    return out


class Driver:
    def __init__(self, exe):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=clean_env())

    def cmd(self, **c):
        self.proc.stdin.write(json.dumps(c) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, "driver did not answer within 30 s"
        line = self.proc.stdout.readline()
        assert line, f"driver died: {self.proc.stderr.read()}"
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def netenv():
    """Namespaces host, c1, c2, c3: in host br0 (10.77.0.2/24) with c1 (MAC1) and c2 (MAC2) on
    it, and br1 (10.78.0.2/24) with c3 (MAC3); each client's end is eth0."""
    sfx = secrets.token_hex(3)
    env = {"host": f"sovdh-h-{sfx}", "c1": f"sovdh-a-{sfx}", "c2": f"sovdh-b-{sfx}",
           "c3": f"sovdh-c-{sfx}"}
    made = []
    try:
        for ns in env.values():
            netns_add(ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        h = env["host"]
        for br, addr in (("br0", "10.77.0.2/24"), ("br1", "10.78.0.2/24")):
            sh("ip", "-n", h, "link", "add", br, "type", "bridge")
            sh("ip", "-n", h, "addr", "add", addr, "dev", br)
        for i, (c, mac, br) in enumerate(((env["c1"], MAC1, "br0"), (env["c2"], MAC2, "br0"),
                                          (env["c3"], MAC3, "br1")), 1):
            sh("ip", "-n", h, "link", "add", f"vh{i}", "type", "veth", "peer", "name", "eth0",
               "netns", c)
            sh("ip", "-n", h, "link", "set", f"vh{i}", "master", br, "up")
            sh("ip", "-n", c, "link", "set", "eth0", "address", mac, "up")
        sh("ip", "-n", h, "link", "set", "br0", "up")
        sh("ip", "-n", h, "link", "set", "br1", "up")
        yield env
    finally:
        for ns in made:  # nothing may outlive the test, not even a dnsmasq a crash left
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def dirs():
    """A state directory dnsmasq can search after dropping to nobody, and a scratch one."""
    state = pathlib.Path(tempfile.mkdtemp(prefix="sovdhcp-", dir="/tmp"))
    state.chmod(0o755)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sovdhcpc-", dir="/tmp"))
    yield state, tmp
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def lease_in(host, vm, port, tmp):
    """Moves port's veth end from host into namespace vm with the port's MAC and returns the
    options of a DHCP lease udhcpc gets there."""
    vi = "vi" + hex12(port["id"])
    sh("ip", "-n", host, "link", "set", vi, "netns", vm)
    ns_run(vm, "ip", "link", "set", vi, "address", port["mac_address"])
    ns_run(vm, "ip", "link", "set", vi, "up")
    return wait_for(lambda: udhcpc(vm, tmp, "vm", tries=3, ifname=vi), 60, "a lease")


def udhcpc(ns, tmp, name, tries=5, pause=1, ifname="eth0"):
    """One DHCP exchange from namespace ns; returns the options bound, or None."""
    script = tmp / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    out = tmp / f"{name}.out"
    env = clean_env() | {"UDHCPC_OUT": str(out)}
    subprocess.run(["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", ifname, "-n", "-q",
                    "-t", str(tries), "-T", str(pause), "-O", "staticroutes", "-s", str(script)],
                   env=env, capture_output=True, timeout=60)
    if not out.exists():
        return None
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def port(pid, mac, ip):
    return {"id": pid, "mac_address": mac,
            "fixed_ips": [{"subnet_id": SUBNET_ID, "ip_address": ip}]}


def proc_comm(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def netns_of(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


def on_br0(state, netenv):
    """The driver's apply arguments for SUBNET_ID served on br0 of the host namespace at
    10.77.0.2, and the directory of its files."""
    return ({"op": "apply", "state_dir": str(state), "netns": netenv["host"], "ifname": "br0",
             "server_ip": "10.77.0.2"}, state / "dhcp" / SUBNET_ID)


def test_dhcp_serves_static_leases(driver_bin, netenv, dirs):
    state, tmp = dirs
    subnet = {"id": SUBNET_ID, "cidr": "10.77.0.0/24", "gateway_ip": "10.77.0.1",
              "ip_version": 4, "enable_dhcp": True, "dns_nameservers": ["9.9.9.9", "1.1.1.1"],
              "host_routes": [{"destination": "192.168.50.0/24", "nexthop": "10.77.0.254"}]}
    dhcp_port = {"id": "dhcp", "mac_address": "fa:16:3e:5a:00:ff",
                 "fixed_ips": [{"subnet_id": SUBNET_ID, "ip_address": "10.77.0.2"}]}
    ports = [dhcp_port, port("p1", MAC1, "10.77.0.11")]
    args, files = on_br0(state, netenv)
    drv = Driver(driver_bin)
    try:
        a = drv.cmd(**args, subnet=subnet, ports=ports)
        assert a["rc"] == 0 and a["running"], a
        pid1 = a["pid"]
        # ip netns exec execs dnsmasq in place: the child becomes dnsmasq in the host namespace
        wait_for(lambda: proc_comm(pid1) == "dnsmasq", what="dnsmasq to run")
        assert netns_of(pid1) != netns_of(os.getpid())
        assert {"conf", "hosts"} <= {p.name for p in files.iterdir()}
        assert (files / "hosts").read_text() == \
            "fa:16:3e:5a:00:ff,10.77.0.2,host-10-77-0-2.openstacklocal\n" \
            "fa:16:3e:5a:00:01,10.77.0.11,host-10-77-0-11.openstacklocal\n"

        got = udhcpc(netenv["c1"], tmp, "c1")
        assert got is not None, (files / "log").read_text()
        assert got["ip"] == "10.77.0.11"
        assert got["subnet"] == "255.255.255.0"
        assert got["router"] == "10.77.0.1"
        assert got["dns"].split() == ["9.9.9.9", "1.1.1.1"]
        assert got["lease"] == "86400"
        assert got["domain"] == "openstacklocal" and got["hostname"] == "host-10-77-0-11"
        routes = got["staticroutes"].split()
        assert routes == ["192.168.50.0/24", "10.77.0.254", "0.0.0.0/0", "10.77.0.1"]
        wait_for(lambda: MAC1 in (files / "leases").read_text(), what="the lease on disk")
        assert {"conf", "hosts", "leases", "pid", "log"} <= {p.name for p in files.iterdir()}
        assert int((files / "pid").read_text()) == pid1

        # a MAC without a port gets no address (no dynamic range)
        assert udhcpc(netenv["c2"], tmp, "c2-none", tries=2, pause=1) is None

        # a second port: hosts rewritten and re-read (SIGHUP), same dnsmasq
        a = drv.cmd(**args, subnet=subnet, ports=ports + [port("p2", MAC2, "10.77.0.12")])
        assert a["rc"] == 0 and a["pid"] == pid1, a
        assert "fa:16:3e:5a:00:02,10.77.0.12,host-10-77-0-12.openstacklocal" in (files / "hosts").read_text()
        got = udhcpc(netenv["c2"], tmp, "c2")
        assert got is not None and got["ip"] == "10.77.0.12", (files / "log").read_text()
        assert drv.cmd(op="status")["pid"] == pid1

        # a deleted port's lease goes with it (DHCPRELEASE), so its address, given to a new
        # port with another MAC, is that port's at once (not after the old lease expires)
        moved = [dhcp_port, port("p3", MAC2, "10.77.0.11")]
        a = drv.cmd(**args, subnet=subnet, ports=moved)
        assert a["rc"] == 0 and a["pid"] == pid1, a
        wait_for(lambda: MAC1 not in (files / "leases").read_text(), what="the lease released")
        got = udhcpc(netenv["c2"], tmp, "c2-moved")
        assert got is not None and got["ip"] == "10.77.0.11", (files / "log").read_text()
        # and back
        a = drv.cmd(**args, subnet=subnet, ports=ports + [port("p2", MAC2, "10.77.0.12")])
        assert a["rc"] == 0 and a["pid"] == pid1, a
        wait_for(lambda: f"{MAC2} 10.77.0.11" not in (files / "leases").read_text(),
                 what="the moved lease released")
        got = udhcpc(netenv["c1"], tmp, "c1-back")
        assert got is not None and got["ip"] == "10.77.0.11", (files / "log").read_text()

        # hostile input is refused and changes nothing
        bad = dict(subnet, gateway_ip="10.77.0.1\ndhcp-script=/bin/sh")
        a = drv.cmd(**args, subnet=bad, ports=ports)
        assert a["rc"] < 0 and "gateway_ip" in a["err"], a
        assert "dhcp-script" not in (files / "conf").read_text()
        assert drv.cmd(op="status")["pid"] == pid1

        # killed: supervised back
        os.kill(pid1, 9)
        st = wait_for(lambda: (lambda s: s if s["running"] and s["pid"] not in (0, pid1)
                               else None)(drv.cmd(op="status")), what="a new dnsmasq")
        pid2 = st["pid"]
        wait_for(lambda: proc_comm(pid2) == "dnsmasq", what="dnsmasq to run again")
        got = udhcpc(netenv["c1"], tmp, "c1-again")
        assert got is not None and got["ip"] == "10.77.0.11", (files / "log").read_text()

        # a new gateway restarts it with the new router
        a = drv.cmd(**args, subnet=dict(subnet, gateway_ip="10.77.0.3", host_routes=[]),
                    ports=ports)
        assert a["rc"] == 0, a
        st = wait_for(lambda: (lambda s: s if s["running"] and s["pid"] not in (0, pid2)
                               else None)(drv.cmd(op="status")), what="a restarted dnsmasq")
        pid3 = st["pid"]
        wait_for(lambda: proc_comm(pid3) == "dnsmasq", what="dnsmasq after the restart")
        got = udhcpc(netenv["c1"], tmp, "c1-gw")
        assert got is not None and got["router"] == "10.77.0.3", (files / "log").read_text()

        # stop: process and files gone
        a = drv.cmd(op="stop")
        assert a["rc"] == 0 and not a["running"]
        wait_for(lambda: not files.exists(), what="the DHCP files to go")
        wait_for(lambda: proc_comm(pid3) is None, what="dnsmasq to exit")
        assert drv.close() == 0  # every libuv handle closed
    finally:
        drv.close()


def test_nameless_ports_keep_their_leases(driver_bin, netenv, dirs):
    """A domain too long for any name leaves ports nameless ("mac,ip" hosts lines): their
    leases are theirs all the same, kept when dnsmasq restarts and when other ports come."""
    state, tmp = dirs
    domain = ".".join(["d" * 62] * 4)  # 251 characters: no host name fits before it
    subnet = {"id": SUBNET_ID, "cidr": "10.77.0.0/24", "gateway_ip": "10.77.0.1",
              "ip_version": 4, "enable_dhcp": True, "dns_domain": domain}
    ports = [port("p1", MAC1, "10.77.0.11")]
    args, files = on_br0(state, netenv)
    drv = Driver(driver_bin)
    try:
        a = drv.cmd(**args, subnet=subnet, ports=ports)
        assert a["rc"] == 0 and a["running"], a
        assert (files / "hosts").read_text() == f"{MAC1},10.77.0.11\n"
        got = udhcpc(netenv["c1"], tmp, "c1")
        assert got is not None and got["ip"] == "10.77.0.11", (files / "log").read_text()
        wait_for(lambda: MAC1 in (files / "leases").read_text(), what="the lease on disk")
        # a restart (new gateway) prunes the lease file first: this lease stays
        pid = a["pid"]
        a = drv.cmd(**args, subnet=dict(subnet, gateway_ip="10.77.0.3"), ports=ports)
        assert a["rc"] == 0, a
        wait_for(lambda: (lambda s: s["running"] and s["pid"] not in (0, pid))(
            drv.cmd(op="status")), what="a restarted dnsmasq")
        assert MAC1 in (files / "leases").read_text()
        # another port (SIGHUP, releases): p1's lease stays
        a = drv.cmd(**args, subnet=dict(subnet, gateway_ip="10.77.0.3"),
                    ports=ports + [port("p2", MAC2, "10.77.0.12")])
        got = udhcpc(netenv["c2"], tmp, "c2")
        assert got is not None and got["ip"] == "10.77.0.12", (files / "log").read_text()
        wait_for(lambda: MAC2 in (files / "leases").read_text(), what="p2's lease on disk")
        assert MAC1 in (files / "leases").read_text()
    finally:
        drv.close()


def alive(pid):
    """A process that exists and is not a zombie (an orphan's reaper may be slow)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_two_subnets_one_namespace_and_agent_crash(driver_bin, netenv, dirs):
    """Two dnsmasqs share the host namespace (one per bridge); an agent that dies leaves them
    serving, and the next agent keeps the one whose config is unchanged (same process; a port
    deleted while no agent ran loses its lease at once, so its address is the next port's) and
    replaces the one whose config changed instead of failing to bind."""
    state, tmp = dirs
    nets = [
        dict(slot=0, ifname="br0", server_ip="10.77.0.2",
             subnet={"id": SUBNET_ID, "cidr": "10.77.0.0/24", "gateway_ip": "10.77.0.1",
                     "enable_dhcp": True, "dns_nameservers": ["9.9.9.9"]},
             ports=[port("p1", MAC1, "10.77.0.11")]),
        dict(slot=1, ifname="br1", server_ip="10.78.0.2",
             subnet={"id": SUBNET2_ID, "cidr": "10.78.0.0/24", "gateway_ip": "10.78.0.1",
                     "enable_dhcp": True, "dns_nameservers": ["8.8.8.8"]},
             ports=[{"id": "p3", "mac_address": MAC3,
                     "fixed_ips": [{"subnet_id": SUBNET2_ID, "ip_address": "10.78.0.13"}]}]),
    ]
    common = {"op": "apply", "state_dir": str(state), "netns": netenv["host"]}
    drv = Driver(driver_bin)
    try:
        old = []
        for n in nets:
            a = drv.cmd(**common, **n)
            assert a["rc"] == 0 and a["running"], a
            old.append(a["pid"])
        for pid in old:
            wait_for(lambda: proc_comm(pid) == "dnsmasq", what="dnsmasq to run")
        got = udhcpc(netenv["c1"], tmp, "c1")
        assert got and got["ip"] == "10.77.0.11" and got["router"] == "10.77.0.1", got
        got = udhcpc(netenv["c3"], tmp, "c3")
        assert got and got["ip"] == "10.78.0.13" and got["router"] == "10.78.0.1", got
        assert got["dns"] == "8.8.8.8"

        drv.proc.kill()  # the agent dies; its dnsmasqs live on
        drv.proc.wait(timeout=10)
        assert all(alive(pid) for pid in old)

        drv = Driver(driver_bin)
        nets[0]["ports"] = [port("p2", MAC2, "10.77.0.11")]  # p1 gone, its address moved
        nets[1]["subnet"]["dns_nameservers"] = ["8.8.4.4"]  # the second subnet changed
        a = drv.cmd(**common, **nets[0])
        assert a["rc"] == 0 and a["running"] and a["pid"] == old[0], a  # kept
        a = drv.cmd(**common, **nets[1])
        assert a["rc"] == 0, a
        wait_for(lambda: not alive(old[1]), what="the stale dnsmasq to be killed")
        st = wait_for(lambda: (lambda s: s if s["running"] and proc_comm(s["pid"]) ==
                               "dnsmasq" else None)(drv.cmd(op="status", slot=1)),
                      what="the new dnsmasq")
        new = st["pid"]
        assert new != old[1] and alive(old[0])
        leases = state / "dhcp" / SUBNET_ID / "leases"
        wait_for(lambda: MAC1 not in leases.read_text(), what="p1's lease released")
        got = udhcpc(netenv["c2"], tmp, "c2-new")
        assert got and got["ip"] == "10.77.0.11", got
        got = udhcpc(netenv["c3"], tmp, "c3-new")
        assert got and got["ip"] == "10.78.0.13" and got["dns"] == "8.8.4.4", got
        assert drv.cmd(op="status", slot=0)["pid"] == old[0]

        assert drv.close() == 0  # stops both
        assert not (state / "dhcp" / SUBNET_ID).exists()
        assert not (state / "dhcp" / SUBNET2_ID).exists()
        assert not alive(old[0]) and not alive(new)
    finally:
        drv.close()


# ---- end to end: sov-api and sov-net ----

def lookup(ns, name, server):
    """busybox nslookup NAME SERVER from namespace ns: the answers {name: [addresses],
    "ptr": [names]}, or None when there were none. (It asks for A and AAAA and fails when
    either finds nothing, so its exit status says little.)"""
    p = ns_run(ns, "busybox", "nslookup", name, server, check=False, timeout=20)
    out, ans = p.stdout.splitlines(), {}
    for i, line in enumerate(out):
        if "name = " in line:
            ans.setdefault("ptr", []).append(line.split("name = ", 1)[1].strip().rstrip("."))
        elif line.startswith("Address:") and i > 0 and out[i - 1].startswith("Name:"):
            ans.setdefault(out[i - 1].split(None, 1)[1].strip(), []).append(
                line.split(None, 1)[1].strip())
    return ans or None


def dnsmasq_pid(prefix, subnet_id):
    try:
        return int(pathlib.Path(f"/run/sov-net/{prefix}/dhcp/{subnet_id}/pid").read_text())
    except (OSError, ValueError):
        return 0


UPSTREAM_CONF = """port=53
listen-address={ip}
bind-interfaces
no-resolv
no-hosts
host-record=www.upstream.test,198.51.100.80
"""


def test_dns_end_to_end(api, start_net, netns, tmp_path):
    host = netns("host")
    prefix = f"t{PID}"
    start_net(api, host, prefix, extra="dns_upstream = 203.0.113.53\n")
    os_ = api.openstack
    # an "internet" with a resolver, reachable only through the router's SNAT
    os_("network", "create", "--external", "public")
    pub = os_("subnet", "create", "--network", "public", "--subnet-range", "203.0.113.0/24",
              "--gateway", "203.0.113.1", "--no-dhcp", "public-v4")
    os_("network", "create", "--dns-domain", "Example.Test.", "vpc")
    sub = os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.0/24", "web")
    os_("router", "create", "r1")
    os_("router", "set", "--external-gateway", "public", "r1", fmt=False)
    os_("router", "add", "subnet", "r1", "web", fmt=False)
    p1 = os_("port", "create", "--network", "vpc", "--dns-name", "web1", "p1")
    p2 = os_("port", "create", "--network", "vpc", "p2")
    ip1, ip2 = p1["fixed_ips"][0]["ip_address"], p2["fixed_ips"][0]["ip_address"]
    assert p1["dns_name"] == "web1" and p2["dns_name"] == ""
    assert p1["dns_assignment"] == [{"hostname": "web1", "ip_address": ip1,
                                     "fqdn": "web1.example.test."}]
    h2 = "host-" + ip2.replace(".", "-")
    assert os_("port", "show", "p2")["dns_assignment"][0]["fqdn"] == f"{h2}.example.test."
    dhcp = os_("port", "list", "--device-owner", "network:dhcp", "--network", "vpc",
               "--long")
    assert len(dhcp) == 1
    dhcp_ip = dhcp[0]["Fixed IP Addresses"][0]["ip_address"] \
        if isinstance(dhcp[0]["Fixed IP Addresses"], list) \
        else dhcp[0]["Fixed IP Addresses"].split("'")[3]
    # a second subnet of the network: its ports' names resolve from the first one's server
    os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.2.0/24", "app")
    p3 = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=app", "--dns-name",
             "db1", "p3")
    ip3 = p3["fixed_ips"][0]["ip_address"]
    for p in (p1, p2, p3):
        wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", 60, "port ACTIVE")
    wait_for(lambda: dnsmasq_pid(prefix, sub["id"]), 30, "the subnet's dnsmasq")

    inet = netns("inet")
    xl = f"x{PID % 100000}"
    sh("ip", "-n", host, "link", "add", xl, "type", "veth", "peer", "name", "eth0",
       "netns", inet)
    sh("ip", "-n", host, "link", "set", xl, "master", "sb" + hex12(pub["id"]), "up")
    ns_run(inet, "ip", "addr", "add", "203.0.113.1/24", "dev", "eth0")
    ns_run(inet, "ip", "addr", "add", "203.0.113.53/24", "dev", "eth0")
    ns_run(inet, "ip", "link", "set", "eth0", "up")
    (tmp_path / "upstream.conf").write_text(UPSTREAM_CONF.format(ip="203.0.113.53"))
    upstream = subprocess.Popen(["ip", "netns", "exec", inet, "dnsmasq", "--keep-in-foreground",
                                 f"--conf-file={tmp_path / 'upstream.conf'}",
                                 f"--pid-file={tmp_path / 'upstream.pid'}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the instance: p1's veth end in its own namespace, configured by DHCP alone
        vm = netns("vm")
        got = lease_in(host, vm, p1, tmp_path)
        vi = "vi" + hex12(p1["id"])
        assert got["ip"] == ip1 and got["router"] == "10.0.1.1", got
        assert got["dns"].split() == [dhcp_ip], got
        assert got["domain"] == "example.test" and got["hostname"] == "web1", got
        # the network's MTU (1450: room for VXLAN), on the port's devices and in the lease
        assert got["mtu"] == "1450", got
        for ns, dev in ((vm, vi), (host, "vp" + hex12(p1["id"]))):
            assert " mtu 1450 " in sh("ip", "-n", ns, "link", "show", dev).stdout
        ns_run(vm, "ip", "addr", "add", f"{ip1}/24", "dev", vi)
        ns_run(vm, "ip", "route", "add", "default", "via", "10.0.1.1")

        # the ports' names both ways, from the DHCP port's address
        ans = wait_for(lambda: lookup(vm, "web1.example.test", dhcp_ip), 30, "web1")
        assert ans["web1.example.test"] == [ip1], ans
        assert lookup(vm, f"{h2}.example.test", dhcp_ip)[f"{h2}.example.test"] == [ip2]
        assert lookup(vm, ip1, dhcp_ip)["ptr"] == ["web1.example.test"]
        assert lookup(vm, ip2, dhcp_ip)["ptr"] == [f"{h2}.example.test"]
        assert lookup(vm, "db1.example.test", dhcp_ip)["db1.example.test"] == [ip3]
        assert lookup(vm, ip3, dhcp_ip)["ptr"] == ["db1.example.test"]
        # names it does not know: the upstream resolver, through the router's SNAT
        ans = wait_for(lambda: lookup(vm, "www.upstream.test", dhcp_ip), 30, "upstream")
        assert ans["www.upstream.test"] == ["198.51.100.80"], ans
        # ...but never a name of the network's own domain
        assert lookup(vm, "nobody.example.test", dhcp_ip) is None

        # a rename: the same dnsmasq answers the new name and forgets the old one
        pid = dnsmasq_pid(prefix, sub["id"])
        os_("port", "set", "--dns-name", "web2", "p1", fmt=False)
        assert os_("port", "show", "p1")["dns_assignment"][0]["hostname"] == "web2"
        wait_for(lambda: lookup(vm, "web2.example.test", dhcp_ip), 30, "the new name")
        assert lookup(vm, "web1.example.test", dhcp_ip) is None
        assert lookup(vm, ip1, dhcp_ip)["ptr"] == ["web2.example.test"]
        assert dnsmasq_pid(prefix, sub["id"]) == pid
        got = udhcpc(vm, tmp_path, "vm-renamed", tries=3, ifname=vi)
        assert got and got["hostname"] == "web2", got

        # a bad name is refused with Neutron's 400 and changes nothing
        tok = api.token()
        for bad in ("bad_name", "web2.example.test", "-web", "x" * 64, "a b\nserver=1.2.3.4"):
            st, doc, _ = api.request("PUT", f"/network/v2.0/ports/{p1['id']}",
                                     {"port": {"dns_name": bad}}, token=tok)
            assert st == 400 and "dns_name" in doc["NeutronError"]["message"], (bad, st, doc)
        p = os_("port", "set", "--dns-name", "bad_name", "p1", fmt=False, check=False)
        assert p.returncode != 0
        assert os_("port", "show", "p1")["dns_name"] == "web2"
        st, doc, _ = api.request("POST", "/network/v2.0/ports",
                                 {"port": {"network_id": sub["network_id"], "dns_name": "a.b"}},
                                 token=tok)
        assert st == 400, doc

        # dns_nameservers on the subnet: handed out instead of the DHCP port
        os_("subnet", "set", "--dns-nameserver", "192.0.2.53", "web", fmt=False)
        got = wait_for(lambda: (lambda g: g if g and g["dns"] == "192.0.2.53" else None)(
            udhcpc(vm, tmp_path, "vm-ns", tries=2, ifname=vi)), 60, "the subnet's nameserver")
        assert got["domain"] == "example.test" and got["hostname"] == "web2"
        # (and the DHCP port still answers the ports' names)
        assert lookup(vm, "web2.example.test", dhcp_ip)["web2.example.test"] == [ip1]

        # the network's MTU changed: the port's host end and the router's and DHCP server's
        # legs follow, and the next lease tells the instance
        os_("network", "set", "--mtu", "1400", "vpc", fmt=False)
        legs = ((host, "vp" + hex12(p1["id"])),
                (f"{prefix}r-{hex12(os_('router', 'show', 'r1')['id'])}", "qr"),
                (f"{prefix}d-{hex12(sub['id'])}", "dh"))

        def mtus():
            out = [sh("ip", "-n", ns, "-o", "link", "show").stdout for ns, _ in legs]
            return [re.findall(rf": {dev}[0-9a-f]*[@:].* mtu (\d+) ", o)
                    for o, (_, dev) in zip(out, legs)]
        wait_for(lambda: all(m == ["1400"] for m in mtus()), 30, "the legs at 1400")
        got = wait_for(lambda: (lambda g: g if g and g["mtu"] == "1400" else None)(
            udhcpc(vm, tmp_path, "vm-mtu", tries=2, ifname=vi)), 60, "the new MTU in a lease")
        assert got["ip"] == ip1, got

        # names in use: a port created after p1 (neither has a device) asking for web2, and
        # one asking for p2's default name, get their own default names, in the API as in DNS
        p5 = os_("port", "create", "--network", "vpc", "--dns-name", "WEB2", "p5")
        p6 = os_("port", "create", "--network", "vpc", "--dns-name", h2, "p6")
        ip5, ip6 = p5["fixed_ips"][0]["ip_address"], p6["fixed_ips"][0]["ip_address"]
        h5, h6 = "host-" + ip5.replace(".", "-"), "host-" + ip6.replace(".", "-")
        assert p5["dns_assignment"][0]["hostname"] == h5, p5
        assert os_("port", "show", "p6")["dns_assignment"][0]["fqdn"] == f"{h6}.example.test."
        assert os_("port", "show", "p1")["dns_assignment"][0]["hostname"] == "web2"
        wait_for(lambda: lookup(vm, ip6, dhcp_ip), 30, "p6's name")
        assert lookup(vm, ip5, dhcp_ip)["ptr"] == [f"{h5}.example.test"]
        assert lookup(vm, ip6, dhcp_ip)["ptr"] == [f"{h6}.example.test"]
        assert lookup(vm, "web2.example.test", dhcp_ip)["web2.example.test"] == [ip1]
        assert lookup(vm, f"{h2}.example.test", dhcp_ip)[f"{h2}.example.test"] == [ip2]

        # p1 deleted: its lease is released, so its name goes from DNS and its address, given
        # to a new port with another MAC, leases to that port at once
        leases = pathlib.Path(f"/run/sov-net/{prefix}/dhcp/{sub['id']}/leases")
        assert p1["mac_address"] in leases.read_text()
        os_("port", "delete", "p1", fmt=False)
        wait_for(lambda: p1["mac_address"] not in leases.read_text(), 30, "p1's lease released")
        p4 = os_("port", "create", "--network", "vpc", "--fixed-ip", f"ip-address={ip1}",
                 "--dns-name", "web4", "p4")
        assert p4["mac_address"] != p1["mac_address"]
        wait_for(lambda: os_("port", "show", p4["id"])["status"] == "ACTIVE", 60, "p4 ACTIVE")
        vm2 = netns("vm2")
        got = lease_in(host, vm2, p4, tmp_path)
        assert got["ip"] == ip1 and got["hostname"] == "web4", got
        ns_run(vm2, "ip", "addr", "add", f"{ip1}/24", "dev", "vi" + hex12(p4["id"]))
        assert lookup(vm2, "web4.example.test", dhcp_ip)["web4.example.test"] == [ip1]
        # web2 went with p1: p5 has it now
        assert os_("port", "show", "p5")["dns_assignment"][0]["hostname"] == "web2"
        assert lookup(vm2, "web2.example.test", dhcp_ip)["web2.example.test"] == [ip5]
    finally:
        upstream.kill()
        upstream.wait()


def test_dhcp_outlives_agent_restart(api, start_net, netns, tmp_path):
    """sov-net stopped (SIGTERM) leaves its dnsmasqs serving: the instance renews its lease and
    resolves names while no agent runs. The restarted agent keeps the dnsmasq of a subnet that
    did not change (same process, which learns a rename made meanwhile) and ends the one of a
    subnet deleted meanwhile, files and all."""
    host = netns("host")
    prefix = f"t{PID}"
    net = start_net(api, host, prefix)
    os_ = api.openstack
    os_("network", "create", "n1")
    sub = os_("subnet", "create", "--network", "n1", "--subnet-range", "10.0.9.0/24", "s1")
    os_("network", "create", "n2")
    sub2 = os_("subnet", "create", "--network", "n2", "--subnet-range", "10.0.8.0/24", "s2")
    p = os_("port", "create", "--network", "n1", "--dns-name", "web1", "p")
    ip = p["fixed_ips"][0]["ip_address"]
    wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", 60, "port ACTIVE")
    pid = wait_for(lambda: dnsmasq_pid(prefix, sub["id"]), 30, "s1's dnsmasq")
    pid2 = wait_for(lambda: dnsmasq_pid(prefix, sub2["id"]), 30, "s2's dnsmasq")
    vm = netns("vm")
    got = lease_in(host, vm, p, tmp_path)
    vi = "vi" + hex12(p["id"])
    assert got["ip"] == ip and got["hostname"] == "web1", got
    server = got["dns"]
    ns_run(vm, "ip", "addr", "add", f"{ip}/24", "dev", vi)
    wait_for(lambda: lookup(vm, "web1.openstacklocal", server), 30, "web1")

    assert net.stop() == 0
    assert alive(pid) and alive(pid2)
    got = udhcpc(vm, tmp_path, "vm-agentless", tries=3, ifname=vi)
    assert got and got["ip"] == ip, got
    assert lookup(vm, "web1.openstacklocal", server)["web1.openstacklocal"] == [ip]
    os_("port", "set", "--dns-name", "web2", "p", fmt=False)
    os_("subnet", "delete", "s2", fmt=False)

    net.start()
    s2dir = pathlib.Path(f"/run/sov-net/{prefix}/dhcp/{sub2['id']}")
    wait_for(lambda: not alive(pid2) and not s2dir.exists(), 60, "s2's dnsmasq ended")
    wait_for(lambda: lookup(vm, "web2.openstacklocal", server), 30, "the new name")
    assert lookup(vm, "web1.openstacklocal", server) is None
    assert dnsmasq_pid(prefix, sub["id"]) == pid and alive(pid)


def test_dns_refused_without_upstream(api, start_net, netns, tmp_path):
    """Without [net] dns_upstream, the names dnsmasq does not know are refused: never looked
    up in the host's resolv.conf."""
    host = netns("host")
    prefix = f"t{PID}"
    start_net(api, host, prefix)
    os_ = api.openstack
    os_("network", "create", "n1")
    sub = os_("subnet", "create", "--network", "n1", "--subnet-range", "10.0.9.0/24", "s1")
    p = os_("port", "create", "--network", "n1", "p")
    ip = p["fixed_ips"][0]["ip_address"]
    wait_for(lambda: os_("port", "show", p["id"])["status"] == "ACTIVE", 60, "port ACTIVE")
    wait_for(lambda: dnsmasq_pid(prefix, sub["id"]), 30, "the subnet's dnsmasq")
    vm = netns("vm")
    got = lease_in(host, vm, p, tmp_path)
    vi = "vi" + hex12(p["id"])
    assert got["domain"] == "openstacklocal"
    server = got["dns"]
    ns_run(vm, "ip", "addr", "add", f"{ip}/24", "dev", vi)
    name = "host-" + ip.replace(".", "-") + ".openstacklocal"
    assert wait_for(lambda: lookup(vm, name, server), 30, "the port's name")[name] == [ip]
    p = ns_run(vm, "busybox", "nslookup", "localhost", server, check=False, timeout=20)
    assert p.returncode != 0 and "127.0.0.1" not in p.stdout
    p = ns_run(vm, "busybox", "nslookup", "example.com", server, check=False, timeout=20)
    assert p.returncode != 0, p.stdout
    assert "REFUSED" in p.stdout + p.stderr, p.stdout + p.stderr
