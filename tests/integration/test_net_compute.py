# SPDX-License-Identifier: Apache-2.0
"""A server on a VPC network: sov-net makes the tap of its Neutron port on the subnet's bridge
(in a host namespace the test creates), sov-compute opens that tap for QEMU and the guest's second
NIC carries the port's MAC and gets the port's address from sov-net's DHCP server; the guest
reaches an instance namespace plugged into the same subnet
and the VPC's router, and deleting the server removes its tap. The guest also keeps its
user-mode NIC with the forwarded SSH port the test logs in through."""
import json
import subprocess

from test_compute_agent import start_compute, wait_for  # noqa: F401
from test_compute_e2e import ssh_to, tiny_image  # noqa: F401
from test_net_l3 import PID, hex12, netns, ns_run, ping, plug, sh, start_net  # noqa: F401


def test_server_nic_on_a_vpc_subnet(api, start_net, start_compute, netns, tiny_image, tmp_path):
    host = netns("vh")
    start_net(api, host, f"t{PID}", host="cn1")  # the machine's name: its compute agent's too
    comp = start_compute(api, extra=f"vpc = true\nnetns = {host}\n")
    os_ = api.openstack
    os_("image", "create", "--file", tiny_image, "--disk-format", "raw", "--container-format",
        "bare", "sov-tiny")
    key = tmp_path / "k1.pem"
    key.write_text(os_("keypair", "create", "k1", fmt=False))
    key.chmod(0o600)
    os_("network", "create", "vpc")
    os_("subnet", "create", "--network", "vpc", "--subnet-range", "10.0.1.0/24", "web")
    os_("router", "create", "r1")
    os_("router", "add", "subnet", "r1", "web", fmt=False)
    peer = os_("port", "create", "--network", "vpc", "peer")
    wait_for(lambda: os_("port", "show", "peer")["status"] == "ACTIVE", "peer port ACTIVE")
    inst = netns("vi")
    peer_ip = plug(host, inst, peer, 24, "10.0.1.1")

    srv = os_("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro", "--key-name",
              "k1", "--network", "vpc", "--wait", "vm1", timeout=240)
    sid = srv["id"]
    ports = os_("port", "list", "--device-id", sid, "--long")
    assert len(ports) == 1
    port = os_("port", "show", ports[0]["ID"])
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

    os_("server", "delete", "--wait", "vm1", fmt=False, timeout=240)
    wait_for(lambda: subprocess.run(["ip", "-n", host, "link", "show", tap],
                                    capture_output=True).returncode != 0, "the tap to go")
