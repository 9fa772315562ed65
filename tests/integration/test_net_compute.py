# SPDX-License-Identifier: Apache-2.0
"""A server on a VPC network: sov-net makes the tap of its Neutron port on the subnet's bridge
(in a host namespace the test creates), sov-compute opens that tap for QEMU and the guest's second
NIC carries the port's MAC and gets the port's address from sov-net's DHCP server; the guest
reaches an instance namespace plugged into the same subnet
and the VPC's router, and deleting the server removes its tap. A port the user made
(--nic port-id) on a second subnet is bound to the server and becomes its third NIC, and the
subnets' DNS answers the server's name with the addresses of both. The guest also keeps its
user-mode NIC with the forwarded SSH port the test logs in through."""
import json
import subprocess

from test_compute_agent import host_doc, start_compute, wait_for  # noqa: F401
from test_compute_e2e import TOKEN, ssh_to, tiny_image  # noqa: F401
from test_net_dhcp import lookup
from test_net_l3 import PID, hex12, netns, ns_run, ping, plug, sh, start_net  # noqa: F401


def image_key_and_vpc(os_, tiny_image, tmp_path):
    """The tiny image as sov-tiny, keypair k1 (its private key's path returned), network vpc
    with subnet web 10.0.1.0/24."""
    os_("image", "create", "--file", tiny_image, "--disk-format", "raw", "--container-format",
        "bare", "sov-tiny")
    key = tmp_path / "k1.pem"
    key.write_text(os_("keypair", "create", "k1", fmt=False))
    key.chmod(0o600)
    os_("network", "create", "vpc")
    os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.0/24", "web")
    return key


def test_server_nic_on_a_vpc_subnet(api, start_net, start_compute, netns, tiny_image, tmp_path):
    host = netns("vh")
    start_net(api, host, f"t{PID}", host="cn1")  # the machine's name: its compute agent's too
    comp = start_compute(api, extra=f"vpc = true\nnetns = {host}\n")
    os_ = api.openstack
    key = image_key_and_vpc(os_, tiny_image, tmp_path)
    os_("router", "create", "r1")
    os_("router", "add", "subnet", "r1", "web", fmt=False)
    # (10.0.2.0/24 is the guest's user-mode network)
    os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.3.0/24", "app")
    os_("router", "add", "subnet", "r1", "app", fmt=False)
    mine = os_("port", "create", "--network", "vpc", "--fixed-ip", "subnet=app", "mine")
    peer = os_("port", "create", "--network", "vpc", "peer")
    wait_for(lambda: os_("port", "show", "peer")["status"] == "ACTIVE", "peer port ACTIVE")
    inst = netns("vi")
    peer_ip = plug(host, inst, peer, 24, "10.0.1.1")

    srv = os_("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro", "--key-name",
              "k1", "--nic", "net-id=vpc,v4-fixed-ip=10.0.1.20", "--nic",
              f"port-id={mine['id']}", "--wait", "vm1", timeout=240)
    sid = srv["id"]
    ports = os_("port", "list", "--device-id", sid, "--long")
    assert len(ports) == 2
    port = os_("port", "show", next(p["ID"] for p in ports if p["ID"] != mine["id"]))
    mine = os_("port", "show", mine["id"])
    assert (mine["device_owner"], mine["dns_name"]) == ("compute:eu-central-1a", "vm1")
    mine_ip = mine["fixed_ips"][0]["ip_address"]
    vm_ip = port["fixed_ips"][0]["ip_address"]
    tap = "tap" + hex12(port["id"])
    link = json.loads(sh("ip", "-n", host, "-j", "link", "show", tap).stdout)[0]
    assert link["master"] == "sb" + hex12(port["fixed_ips"][0]["subnet_id"])
    wait_for(lambda: os_("port", "show", port["id"])["status"] == "ACTIVE", "VM port ACTIVE")

    ssh = ssh_to(api, key, "vm1")
    # the guest's second NIC is the port: its MAC, on the subnet's bridge
    macs = wait_for(lambda: ssh("cat /sys/class/net/eth1/address"), "SSH", timeout=150)
    assert macs.strip() == port["mac_address"]
    # sov-net's DHCP server gave eth1 the port's address
    assert wait_for(lambda: (o := ssh("ip -4 -o addr show dev eth1")) and vm_ip in o and o,
                    "the port's address on eth1 by DHCP", timeout=90)
    assert wait_for(lambda: ping(inst, vm_ip), "the instance namespace -> the VM")
    out = ssh(f"ping -c 1 -W 2 {peer_ip} >/dev/null && echo ok; "
              "ping -c 1 -W 2 10.0.1.1 >/dev/null && echo gw")
    assert out.split() == ["ok", "gw"]
    # the brought port: the third NIC, its MAC and (by DHCP) its address on the app subnet
    assert ssh("cat /sys/class/net/eth2/address").strip() == mine["mac_address"]
    assert wait_for(lambda: (o := ssh("ip -4 -o addr show dev eth2")) and mine_ip in o and o,
                    "the brought port's address on eth2 by DHCP", timeout=90)
    assert ssh("ping -c 1 -W 2 10.0.3.1 >/dev/null && echo ok").split() == ["ok"]  # app's gw
    # the server's name, on both its addresses, from the DHCP server of either subnet
    dhcp_ips = [p["Fixed IP Addresses"][0]["ip_address"]
                for p in os_("port", "list", "--network", "vpc", "--long")
                if p["Device Owner"] == "network:dhcp"]
    assert len(dhcp_ips) == 2
    fqdn = "vm1.openstacklocal"
    for dhcp_ip in dhcp_ips:
        assert wait_for(lambda: sorted((lookup(inst, fqdn, dhcp_ip) or {}).get(fqdn, [])) ==
                        sorted([vm_ip, mine_ip]), f"vm1 resolved to both addresses by {dhcp_ip}")

    os_("server", "delete", "--wait", "vm1", fmt=False, timeout=240)
    wait_for(lambda: subprocess.run(["ip", "-n", host, "link", "show", tap],
                                    capture_output=True).returncode != 0, "the tap to go")
    # the brought port stays, unbound
    mine = os_("port", "show", mine["id"])
    assert (mine["device_id"], mine["device_owner"], mine["dns_name"]) == ("", "", "")


def test_live_migration_keeps_the_vpc_nic(start_api, start_block, start_net, start_compute,
                                          netns, tiny_image, tmp_path):
    """Live migration of a server with a VPC NIC between two hosts (each a namespace with its
    own sov-net, VXLAN between them): while it runs the port's binding names the target, whose
    sov-net makes the tap the incoming QEMU opens; at the cut-over the binding moves there and
    the source's tap goes; an instance namespace on the first host reaches the guest at the
    same address before and after (over VXLAN after)."""
    block = start_block(token=TOKEN)
    api = start_api(ini_extra=f"[block]\nurl = {block.url}\ntoken = {TOKEN}\n")
    h1, h2 = netns("mh1"), netns("mh2")
    sh("ip", "-n", h1, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", h2)
    for ns, addr in ((h1, "10.99.0.1/24"), (h2, "10.99.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", "u0")
        sh("ip", "-n", ns, "link", "set", "u0", "up")
    start_net(api, h1, f"t{PID}", host="cn1", extra="tunnel_ip = 10.99.0.1\n")
    start_net(api, h2, f"t{PID}b", host="cn2", extra="tunnel_ip = 10.99.0.2\nl3 = false\n")
    comp = start_compute(api, extra=f"vpc = true\nnetns = {h1}\n")
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    os_ = api.openstack
    key = image_key_and_vpc(os_, tiny_image, tmp_path)
    peer = os_("port", "create", "--network", "vpc", "--host", "cn1", "peer")
    wait_for(lambda: os_("port", "show", "peer")["status"] == "ACTIVE", "peer port ACTIVE")
    inst = netns("mi")
    plug(h1, inst, peer, 24, "10.0.1.1")

    srv = os_("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro", "--key-name",
              "k1", "--network", "vpc", "--wait", "vm1", timeout=240)
    sid = srv["id"]
    port = os_("port", "show", os_("port", "list", "--device-id", sid)[0]["ID"])
    vm_ip, tap = port["fixed_ips"][0]["ip_address"], "tap" + hex12(port["id"])
    ssh = ssh_to(api, key, "vm1")
    assert wait_for(lambda: (o := ssh("ip -4 -o addr show dev eth1")) and vm_ip in o and o,
                    "the port's address on eth1 by DHCP", timeout=150)
    assert wait_for(lambda: ping(inst, vm_ip), "the instance namespace -> the VM on cn1")

    start_compute(api, host="cn2", extra=f"vpc = true\nnetns = {h2}\n")
    wait_for(lambda: host_doc(api, "cn2"), "host cn2")
    os_("server", "migrate", "--live-migration", "--wait", "vm1", fmt=False, timeout=300)
    shown = os_("server", "show", sid)
    assert shown["OS-EXT-SRV-ATTR:host"] == "cn2" and shown["status"] == "ACTIVE"
    port = os_("port", "show", port["id"])
    assert port["binding_host_id"] == "cn2" and "migrating_to" not in port["binding_profile"]
    assert sh("ip", "-n", h2, "link", "show", tap, check=False).returncode == 0
    wait_for(lambda: sh("ip", "-n", h1, "link", "show", tap, check=False).returncode != 0,
             "the source's tap to go")
    assert wait_for(lambda: ping(inst, vm_ip), "the instance namespace -> the VM on cn2")
    ssh = ssh_to(api, key, "vm1")
    assert wait_for(lambda: ssh("cat /sys/class/net/eth1/address"), "SSH on cn2",
                    timeout=60).strip() == port["mac_address"]
    assert comp.alive()
