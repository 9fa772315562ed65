# SPDX-License-Identifier: Apache-2.0
"""Compute end to end through Debian's `openstack` CLI: sov-api with a real sov-block and a
sov-compute running the tiny guest (scripts/guest-image) under TCG. A server made with a key
pair and user-data answers SSH with its hostname and the user-data's effect; a volume attached
while it runs appears in the guest (virtio serial = volume id), takes writes that a snapshot then
holds byte for byte (read back over NBD), survives an agent killed with SIGKILL, and goes away
from the guest on detach; stop, start and reboot; delete leaves no process, file or cgroup. A
server booted from a volume runs from sov-block over NBD. An image that is not a disk ends in
ERROR with a fault saying so. Every wait polls against a deadline."""
import base64
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import qemu_io
from test_compute_agent import (host_doc, pid_alive, qemu_pid, start_compute,  # noqa: F401
                                wait_for)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "e2e-block-token"


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    script = ROOT / "scripts" / "guest-image"
    if not shutil.which("ssh") or not shutil.which("qemu-system-x86_64"):
        pytest.skip("needs an ssh client and qemu-system-x86")
    disk = tmp_path_factory.mktemp("guest") / "sov-tiny.raw"
    subprocess.run([str(script), str(disk)], check=True, capture_output=True, timeout=300)
    return disk


@pytest.fixture
def cloud(start_api, start_block, start_compute, tiny_image, tmp_path):
    block = start_block(token=TOKEN)
    api = start_api(ini_extra=f"[block]\nurl = {block.url}\ntoken = {TOKEN}\n")
    comp = start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    image = api.openstack("image", "create", "--file", tiny_image, "--disk-format", "raw",
                          "--container-format", "bare", "sov-tiny")["id"]
    out = api.openstack("keypair", "create", "k1", fmt=False)
    key = tmp_path / "k1.pem"
    key.write_text(out)
    key.chmod(0o600)
    return api, block, comp, image, key


def ssh_to(api, key, server):
    addr = api.openstack("server", "show", server)["sov:ssh"]
    host, port = addr.rsplit(":", 1)

    def ssh(cmd, check=True):
        p = subprocess.run(["ssh", "-i", str(key), "-p", port, "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{host}",
                            cmd], capture_output=True, text=True, timeout=60)
        if not check:
            return p
        return p.stdout if p.returncode == 0 else None

    return ssh


def disk_with_serial(ssh, serial):
    """The guest's vdX whose virtio serial is serial, or '' when none (None: SSH failed)."""
    out = ssh("for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = '%s' ] && "
              "echo ${d##*/}; done; true" % serial)
    return None if out is None else out.strip()


def status_is(api, kind, name, want):
    return api.openstack(kind, "show", name)["status"] == want


def test_server_with_key_user_data_volume_and_lifecycle(cloud, tmp_path):
    api, block, comp, image, key = cloud
    ud = tmp_path / "user-data"
    ud.write_text("#!/bin/sh\necho made-by-user-data > /tmp/ud-marker\n")
    srv = api.openstack("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro",
                        "--key-name", "k1", "--user-data", ud, "--wait", "web-1", timeout=240)
    assert srv["status"] == "ACTIVE"
    sid = srv["id"]
    ssh = ssh_to(api, key, "web-1")
    assert wait_for(lambda: ssh("hostname"), "SSH", timeout=120).strip() == "web-1"
    assert wait_for(lambda: ssh("cat /tmp/ud-marker"), "user-data").strip() == "made-by-user-data"

    # a volume attached to the running guest
    vol = api.openstack("volume", "create", "--size", "1", "data-1")["id"]
    wait_for(lambda: status_is(api, "volume", vol, "available"), "volume available")
    api.openstack("server", "add", "volume", "web-1", "data-1", fmt=False)
    serial = vol[:20]
    dev = wait_for(lambda: disk_with_serial(ssh, serial), "the volume in the guest", timeout=90)
    assert dev.startswith("vd")
    assert api.openstack("volume", "show", vol)["status"] == "in-use"
    # 4 KiB of 'Z' at 1 MiB, flushed to sov-block
    w = ssh(f"head -c 4096 /dev/zero | tr '\\000' 'Z' | dd of=/dev/{dev} bs=4096 seek=256 "
            "2>/dev/null && sync && echo written")
    assert w and w.strip() == "written"

    # the agent dies with the volume plugged: the guest keeps running and keeps its disk
    pid = qemu_pid(comp, sid)
    comp.kill()
    comp.restart()
    assert pid_alive(pid) and qemu_pid(comp, sid) == pid
    assert disk_with_serial(ssh, serial) == dev

    # detach: the guest lets go of the disk, the volume is available again
    api.openstack("server", "remove", "volume", "web-1", "data-1", fmt=False)
    wait_for(lambda: disk_with_serial(ssh, serial) == "", "the volume to leave the guest",
             timeout=90)
    wait_for(lambda: status_is(api, "volume", vol, "available"), "volume available again")
    # what the guest wrote is in a snapshot, byte for byte
    snap = api.openstack("volume", "snapshot", "create", "--volume", "data-1", "snap-1")["id"]
    wait_for(lambda: api.openstack("volume", "snapshot", "show", snap)["status"] == "available",
             "snapshot available")
    qemu_io(block.uri(f"snap-{snap}"), "read -P 0x5a 1M 4k", "read -P 0 0 1M",
            read_only=True)

    # stop (ACPI powerdown), start, reboot (a new boot id)
    boot_id = ssh("cat /proc/sys/kernel/random/boot_id").strip()
    api.openstack("server", "stop", "web-1", fmt=False)
    wait_for(lambda: status_is(api, "server", sid, "SHUTOFF"), "SHUTOFF", timeout=120)
    assert not pid_alive(pid)
    api.openstack("server", "start", "web-1", fmt=False)
    wait_for(lambda: status_is(api, "server", sid, "ACTIVE"), "ACTIVE", timeout=120)
    booted = wait_for(lambda: ssh("cat /proc/sys/kernel/random/boot_id"), "SSH after start",
                      timeout=120).strip()
    assert booted != boot_id
    api.openstack("server", "reboot", "--wait", "web-1", fmt=False, timeout=240)
    rebooted = wait_for(lambda: (b := ssh("cat /proc/sys/kernel/random/boot_id")) and
                        b.strip() != booted and b, "SSH after reboot", timeout=120).strip()
    assert rebooted not in (boot_id, booted)

    # delete: no QEMU, no server directory
    pid = qemu_pid(comp, sid)
    api.openstack("server", "delete", "--wait", "web-1", fmt=False, timeout=240)
    wait_for(lambda: not pid_alive(pid), "QEMU to end")
    wait_for(lambda: not (comp.state_dir / "servers" / sid).exists(), "the server dir to go")
    procs = [p for p in pathlib.Path("/proc").glob("[0-9]*/cmdline")
             if sid.encode() in (p.read_bytes() if p.exists() else b"")]
    assert procs == []


def test_boot_from_volume_runs_from_sov_block(cloud):
    api, block, comp, image, key = cloud
    srv = api.openstack("server", "create", "--image", "sov-tiny", "--boot-from-volume", "1",
                        "--flavor", "t3.micro", "--key-name", "k1", "--wait", "bfv-1",
                        timeout=300)
    assert srv["status"] == "ACTIVE"
    sid = srv["id"]
    vols = api.openstack("server", "show", sid)["volumes_attached"]
    vol = vols[0]["id"] if isinstance(vols, list) else vols.split("'")[1]
    ssh = ssh_to(api, key, "bfv-1")
    assert wait_for(lambda: ssh("hostname"), "SSH", timeout=150).strip() == "bfv-1"
    # no local disk: QEMU's root is sov-block's export of the volume
    assert not (comp.state_dir / "servers" / sid / "disk.qcow2").exists()
    cmdline = pathlib.Path(f"/proc/{qemu_pid(comp, sid)}/cmdline").read_bytes()
    assert f"vol-{vol}".encode() in cmdline and b'"driver":"nbd"' in cmdline
    # a write to the root disk past the image's end lands in the volume
    out = ssh("head -c 4096 /dev/zero | tr '\\000' 'Q' | dd of=/dev/vda bs=4096 seek=131072 "
              "2>/dev/null && sync && echo ok")
    assert out and out.strip() == "ok"
    qemu_io(block.uri(f"vol-{vol}"), "read -P 0x51 512M 4k", read_only=True)
    api.openstack("server", "delete", "--wait", "bfv-1", fmt=False, timeout=240)
    wait_for(lambda: status_is(api, "volume", vol, "available"), "the root volume released")


def test_bad_requests_end_in_error_or_are_refused(cloud, tmp_path):
    api, block, comp, image, key = cloud
    junk = tmp_path / "junk.raw"
    junk.write_bytes(os.urandom(1 << 20)[:510] + b"\0\0" + b"\0" * ((1 << 20) - 512))
    api.openstack("image", "create", "--file", junk, "--disk-format", "raw",
                  "--container-format", "bare", "junk")
    srv = api.openstack("server", "create", "--image", "junk", "--flavor", "t3.micro",
                        "not-a-disk")
    sid = srv["id"]
    wait_for(lambda: status_is(api, "server", sid, "ERROR"), "ERROR", timeout=60)
    fault = api.openstack("server", "show", sid)["fault"]
    assert "not a bootable disk" in str(fault)
    assert qemu_pid(comp, sid) is None
    api.openstack("server", "delete", "--wait", sid, fmt=False, timeout=120)
    wait_for(lambda: not (comp.state_dir / "servers" / sid).exists(), "the server dir to go")
    # more memory than the host offers (m5.2xlarge: 32 GiB; the agent offers 16 GiB)
    big = api.openstack("server", "create", "--image", "sov-tiny", "--flavor", "m5.2xlarge",
                        "too-big")["id"]
    wait_for(lambda: status_is(api, "server", big, "ERROR"), "ERROR", timeout=30)
    assert "No valid host was found" in str(api.openstack("server", "show", big)["fault"])
    assert not (comp.state_dir / "servers" / big).exists()
    # unknown flavor or image: refused before anything is made
    for args in (("--flavor", "no-such-flavor", "--image", "sov-tiny"),
                 ("--flavor", "t3.micro", "--image", "no-such-image")):
        p = api.openstack("server", "create", *args, "never", check=False)
        assert p.returncode != 0
    assert [s["Name"] for s in api.openstack("server", "list")] == ["too-big"]


def test_resize_confirm_and_revert(cloud):
    """Cold resize: the guest comes back with the new flavor's memory and a root disk grown to
    its size (VERIFY_RESIZE), confirm keeps it; a second resize reverted returns to it."""
    api, block, comp, image, key = cloud
    sid = api.openstack("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro",
                        "--key-name", "k1", "--wait", "rs-1", timeout=240)["id"]
    ssh = ssh_to(api, key, "rs-1")

    def facts():
        out = ssh("awk '/MemTotal/ {print $2}' /proc/meminfo; cat /sys/block/vda/size")
        return out and [int(x) for x in out.split()]

    mem0, sectors0 = wait_for(facts, "SSH", timeout=150)
    assert sectors0 * 512 == 10 << 30  # t3.micro: 10 GB
    api.openstack("server", "resize", "--flavor", "t3.small", "--wait", "rs-1", fmt=False,
                  timeout=300)
    assert api.openstack("server", "show", sid)["status"] == "VERIFY_RESIZE"
    mem1, sectors1 = wait_for(lambda: (f := facts()) and f[0] != mem0 and f, "the new flavor",
                              timeout=150)
    assert mem1 > mem0 + 900 * 1024 and sectors1 * 512 == 20 << 30  # 2 GiB, 20 GB
    api.openstack("server", "resize", "confirm", "rs-1", fmt=False)
    wait_for(lambda: status_is(api, "server", sid, "ACTIVE"), "ACTIVE after confirm")
    assert api.openstack("server", "show", sid)["flavor"].startswith("t3.small")
    # t3.medium, then revert: back on t3.small's memory
    api.openstack("server", "resize", "--flavor", "t3.medium", "--wait", "rs-1", fmt=False,
                  timeout=300)
    mem2 = wait_for(lambda: (f := facts()) and f[0] > mem1 + 1800 * 1024 and f[0], "t3.medium",
                    timeout=150)
    api.openstack("server", "resize", "revert", "rs-1", fmt=False)
    wait_for(lambda: (f := facts()) and f[0] < mem2 and f[0], "the reverted flavor", timeout=150)
    assert wait_for(lambda: status_is(api, "server", sid, "ACTIVE"), "ACTIVE after revert")
    api.openstack("server", "delete", "--wait", "rs-1", fmt=False, timeout=240)


def test_live_migration_while_the_guest_writes(cloud, start_compute):
    """Live migration to a second agent: the root overlay is mirrored over NBD, memory follows,
    the guest keeps its boot id, uptime and every write it made (a writer runs throughout); an
    attached volume stays on its slot; the source host keeps nothing."""
    api, block, comp, image, key = cloud
    comp2 = start_compute(api, host="cn2")
    wait_for(lambda: host_doc(api, "cn2"), "host cn2")
    sid = api.openstack("server", "create", "--image", "sov-tiny", "--flavor", "t3.micro",
                        "--key-name", "k1", "--wait", "mig-1", timeout=240)["id"]
    assert api.openstack("server", "show", sid)["OS-EXT-SRV-ATTR:host"] == "cn1"
    vol = api.openstack("volume", "create", "--size", "1", "mig-data")["id"]
    wait_for(lambda: status_is(api, "volume", vol, "available"), "volume available")
    api.openstack("server", "add", "volume", "mig-1", "mig-data", fmt=False)
    ssh = ssh_to(api, key, "mig-1")
    dev = wait_for(lambda: disk_with_serial(ssh, vol[:20]), "the volume in the guest", timeout=150)
    assert ssh(f"echo volume-before-migration | dd of=/dev/{dev} conv=fsync 2>/dev/null "
               "&& echo ok").strip() == "ok"
    boot_id = ssh("cat /proc/sys/kernel/random/boot_id").strip()
    up0 = float(ssh("cut -d' ' -f1 /proc/uptime"))
    # a writer: record i at byte 512 MiB + 8*i of the root disk, then in /run/last; it stops
    # when /run/stop appears and leaves its count in /run/done
    w = ssh("setsid sh -c 'i=0; while [ $i -lt 20000 ] && [ ! -e /run/stop ]; do i=$((i+1)); "
            "printf %08d $i | dd of=/dev/vda bs=8 seek=$((67108864 + i)) conv=notrunc "
            "2>/dev/null; echo $i > /run/last; done; echo $i > /run/done.tmp; "
            "mv /run/done.tmp /run/done' </dev/null >/dev/null 2>&1 & echo started", check=False)
    assert w.returncode == 0 and "started" in w.stdout, (w.stdout, w.stderr)

    def last():  # the writer truncates and rewrites /run/last: read until a number
        return wait_for(lambda: (v := ssh("cat /run/last 2>/dev/null")) and v.strip().isdigit()
                        and int(v), "a count from the writer", timeout=30)

    wait_for(lambda: last() > 20, "the writer", timeout=30)
    src_pid = qemu_pid(comp, sid)
    api.openstack("server", "migrate", "--live-migration", "--wait", "mig-1",
                  fmt=False, timeout=300)
    shown = api.openstack("server", "show", sid)
    assert shown["OS-EXT-SRV-ATTR:host"] == "cn2" and shown["status"] == "ACTIVE"
    wait_for(lambda: not pid_alive(src_pid), "the source QEMU to end")
    wait_for(lambda: not (comp.state_dir / "servers" / sid).exists(), "the source dir to go")
    assert pid_alive(qemu_pid(comp2, sid))
    ssh = ssh_to(api, key, "mig-1")
    assert wait_for(lambda: ssh("cat /proc/sys/kernel/random/boot_id"), "SSH on cn2",
                    timeout=60).strip() == boot_id
    assert float(ssh("cut -d' ' -f1 /proc/uptime")) > up0
    # the writer carried on; after it stops, every value it wrote is on the disk
    n = last()
    wait_for(lambda: last() > n, "the writer to go on on cn2")
    ssh("touch /run/stop")
    n = int(wait_for(lambda: ssh("cat /run/done 2>/dev/null"), "the writer to stop"))
    ssh("sync; echo 3 > /proc/sys/vm/drop_caches")
    data = ssh(f"dd if=/dev/vda bs=8 skip=67108865 count={n} 2>/dev/null")
    values = [int(data[i:i + 8]) for i in range(0, len(data), 8)]
    assert values == list(range(1, n + 1))
    assert disk_with_serial(ssh, vol[:20]) == dev
    assert ssh(f"head -c 24 /dev/{dev}").startswith("volume-before-migration")
    api.openstack("server", "delete", "--wait", "mig-1", fmt=False, timeout=240)
    wait_for(lambda: not (comp2.state_dir / "servers" / sid).exists(), "the target dir to go")
