# SPDX-License-Identifier: Apache-2.0
"""sov-compute against a real sov-api: registration with the probed accelerator, servers that
become real QEMU processes (TCG), the NoCloud seed, console output through `openstack console
log show`, stop/start/reboot/delete, a server whose image cannot be fetched, and an agent
restart that re-adopts a running guest, and (with scripts/guest-image) SSH into the tiny guest
with the key pair, hostname and user-data taken from the seed.

Until sov-api serves image data to agents, the tests put a bootable raw disk into the agent's
image cache (<state_dir>/images/<image id>): the host kernel and a busybox initramfs on a FAT
volume made bootable by syslinux (mtools, no root)."""
import base64
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, ManagedDaemon, raw_http

NOVA = "/compute/v2.1"
MARKER = "SOV-GUEST-UP"


class ComputeDaemon(ManagedDaemon):
    binary = "sov-compute"

    def __init__(self, tmp, name, cfg):
        super().__init__(tmp, name, cfg)
        self.state_dir = tmp / f"{name}-state"

    def metrics(self):
        r = raw_http(self.port, "GET", "/metrics", {})
        assert r.status == 200
        return r.body.decode()


def wait_for(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def start_compute(tmp_path):
    """start_compute(api, host="cn1") -> ComputeDaemon (accel=auto with a short probe)."""
    started = []
    if not (BIN / "sov-compute").exists():
        pytest.fail("bin/sov-compute is not built (make)")
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")

    def start(api, host="cn1", extra=""):
        name = f"compute-{len(started)}"
        cfg = tmp_path / f"{name}.ini"
        d = ComputeDaemon(tmp_path, name, cfg)
        cfg.write_text(
            "[server]\nlisten = 127.0.0.1:0\n[log]\nlevel = info\n"
            f"[compute]\napi_url = http://127.0.0.1:{api.port}\n"
            f"agent_token = {api.agent_token}\nhost = {host}\n"
            f"state_dir = {d.state_dir}\nvcpus = 8\nram_mb = 16384\n"
            "probe_timeout = 3s\nstop_timeout = 2s\npoll = 300ms\n" + extra)
        started.append(d)
        return d.start()

    yield start
    failed = []
    for d in started:
        if d.proc is not None and d.proc.poll() is not None and not d.expect_exit:
            failed.append(f"{d.name} exited with {d.proc.returncode}:\n{d.log_tail()}")
        if d.alive():
            d.stop()
        # guests outlive the agent by design: end the test's own ones
        for pidf in (d.state_dir / "servers").glob("*/qemu.pid"):
            try:
                os.kill(int(pidf.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
    assert not failed, "\n".join(failed)


def agent_get(api, path):
    r = raw_http(api.port, "GET", path, {"Authorization": f"Bearer {api.agent_token}"})
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)


def host_doc(api, host):
    hosts = {h["host"]: h for h in agent_get(api, "/agent/v1/hosts")["hosts"]}
    return hosts.get(host)


def internal(api, sid, host="cn1"):
    """The server document with its internal members, as the agent sees it."""
    doc = agent_get(api, f"/agent/v1/watch?kinds=server&host={host}&since=0&wait=0")
    for s in doc["resources"]["server"]:
        if s["id"] == sid:
            return s
    return None


def make_image(api, token):
    st, doc, r = api.request("POST", "/image/v2/images", {
        "name": "tiny", "disk_format": "raw", "container_format": "bare"}, token)
    assert st == 201, r.body
    st, _, r = api.request("PUT", f"/image/v2/images/{doc['id']}/file", token=token,
                           raw=b"\0" * 4096,
                           headers={"Content-Type": "application/octet-stream"})
    assert st == 204, r.body
    return doc["id"]


def cpio(entries):
    """A newc cpio archive of (name, mode, data, (rdev major, minor))."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate(entries + [("TRAILER!!!", 0, b"", (0, 0))], 1):
        nb = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0)
        out += ("070701" + "".join(f"{v:08X}" for v in fields)).encode() + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def bootable_disk(path, tmp):
    """A raw disk that boots the host kernel with a busybox init printing MARKER and idling."""
    kernels = sorted(pathlib.Path("/boot").glob("vmlinuz-*"))
    busybox = next((p for p in (pathlib.Path("/bin/busybox"), pathlib.Path("/usr/bin/busybox"))
                    if p.exists()), None)
    if not kernels or not busybox or not all(shutil.which(t) for t in
                                             ("syslinux", "mcopy", "mkfs.vfat")):
        pytest.skip("needs a host kernel, busybox-static, syslinux, mtools and dosfstools")
    init = (f"#!/bin/busybox sh\n/bin/busybox echo {MARKER}\n"
            "while true; do /bin/busybox sleep 1; done\n").encode()
    (tmp / "initrd").write_bytes(cpio([
        ("bin", 0o40755, b"", (0, 0)), ("dev", 0o40755, b"", (0, 0)),
        ("dev/console", 0o20600, b"", (5, 1)),
        ("bin/busybox", 0o100755, busybox.read_bytes(), (0, 0)),
        ("init", 0o100755, init, (0, 0))]))
    (tmp / "syslinux.cfg").write_text(
        "SERIAL 0 115200\nDEFAULT l\nTIMEOUT 0\nLABEL l\n KERNEL vmlinuz\n"
        " APPEND initrd=initrd console=ttyS0 quiet\n")
    subprocess.run(["truncate", "-s", "32M", str(path)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "SOVBOOT", str(path)], check=True, capture_output=True)
    subprocess.run(["syslinux", "--install", str(path)], check=True)
    for src, dst in ((kernels[-1], "vmlinuz"), (tmp / "initrd", "initrd"),
                     (tmp / "syslinux.cfg", "syslinux.cfg")):
        subprocess.run(["mcopy", "-i", str(path), str(src), "::" + dst], check=True)


def create(api, token, image, name="vm", **extra):
    st, doc, r = api.request("POST", NOVA + "/servers", {"server": {
        "name": name, "flavorRef": "t3.micro", "imageRef": image, **extra}}, token)
    assert st == 202, r.body
    return doc["server"]["id"]


def show(api, token, sid):
    st, doc, r = api.request("GET", f"{NOVA}/servers/{sid}", token=token)
    return doc["server"] if st == 200 else None


def wait_status(api, token, sid, status, timeout=60):
    return wait_for(lambda: (s := show(api, token, sid)) and s["status"] == status and
                    not s.get("OS-EXT-STS:task_state") and s, f"{sid} {status}", timeout)


def action(api, token, sid, body):
    st, _, r = api.request("POST", f"{NOVA}/servers/{sid}/action", body, token)
    assert st == 202, r.body


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return pathlib.Path(f"/proc/{pid}").exists() and \
        "Z" not in pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2]


def qemu_pid(comp, sid):
    p = comp.state_dir / "servers" / sid / "qemu.pid"
    try:
        return int(p.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def test_host_registers_with_probed_accelerator(start_api, start_compute):
    api = start_api()
    comp = start_compute(api)
    h = wait_for(lambda: (d := host_doc(api, "cn1")) and d, "host cn1")
    assert (h["kind"], h["vcpus"], h["ram_mb"], h["status"]) == ("compute", 8, 16384, "up")
    assert h["info"]["accel"] in ("kvm", "tcg") and h["info"]["reason"], h
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert h["info"]["accel"] == "tcg" and "/dev/kvm" in h["info"]["reason"]
    assert f'sov_compute_accel{{mode="{h["info"]["accel"]}"}} 1' in comp.metrics()
    assert raw_http(comp.port, "GET", "/healthz", {}).status == 200
    hv = api.openstack("hypervisor", "show", "cn1")
    assert hv["hypervisor_type"] == h["info"]["accel"]


def test_unfetchable_image_goes_to_error_with_fault(start_api, start_compute):
    api = start_api()
    comp = start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    token = api.token()
    image = make_image(api, token)
    (api.data_dir / "images" / image).unlink()  # the image store lost its data
    sid = create(api, token, image)
    s = wait_status(api, token, sid, "ERROR")
    assert "cannot be fetched" in s["fault"]["message"], s["fault"]
    assert image in s["fault"]["message"]
    # an errored server deletes cleanly: document and directory gone
    st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
    assert st == 204, r.body
    wait_for(lambda: show(api, token, sid) is None, "the server to be gone")
    assert not (comp.state_dir / "servers" / sid).exists()


def test_server_lifecycle_console_and_readoption(start_api, start_compute, tmp_path):
    api = start_api()
    comp = start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    token = api.token()
    image = make_image(api, token)
    (comp.state_dir / "images").mkdir(parents=True, exist_ok=True)
    bootable_disk(comp.state_dir / "images" / image, tmp_path)
    st, doc, r = api.request("POST", NOVA + "/os-keypairs", {"keypair": {"name": "k1"}}, token)
    assert st == 200, r.body
    key = doc["keypair"]["public_key"].strip()
    user_data = "#cloud-config\nhostname: from-user-data\n"
    sid = create(api, token, image, name="web-1", key_name="k1",
                 user_data=base64.b64encode(user_data.encode()).decode())

    s = wait_status(api, token, sid, "ACTIVE", timeout=90)
    assert s["OS-EXT-STS:power_state"] == 1 and s["OS-EXT-STS:vm_state"] == "active"
    sdir = comp.state_dir / "servers" / sid
    pid = qemu_pid(comp, sid)
    assert pid and pid_alive(pid)
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"-daemonize" not in cmdline and f"sov-{sid}".encode() in cmdline
    # the NoCloud seed: an ISO labelled cidata with the instance id, hostname, key, user-data
    meta = (sdir / "seed" / "meta-data").read_text()
    assert f"instance-id: {sid}" in meta and "local-hostname: web-1" in meta and key in meta
    assert (sdir / "seed" / "user-data").read_text() == user_data
    iso = (sdir / "seed.iso").read_bytes()
    assert iso[0x8000 + 40:0x8000 + 46] == b"CIDATA" or b"cidata" in iso[0x8000:0x8800]
    # the forwarded SSH port is reported and listening on loopback
    ssh = internal(api, sid)["_ssh"]
    assert ssh["host"] == "127.0.0.1"
    socket.create_connection(("127.0.0.1", ssh["port"]), timeout=5).close()
    # the guest boots (TCG) and its serial console reaches the console-log API
    wait_for(lambda: MARKER in api.openstack("console", "log", "show", sid, fmt=False),
             "the guest's console marker", timeout=120)

    # stop: the idle guest ignores ACPI, so the deadline passes and QEMU is told to quit
    action(api, token, sid, {"os-stop": None})
    s = wait_status(api, token, sid, "SHUTOFF")
    assert s["OS-EXT-STS:power_state"] == 4
    wait_for(lambda: not pid_alive(pid), "QEMU to exit")
    # a converged agent stays quiet: its reports must not feed its own watch
    puts = lambda: api.log.read_text().count(f"method=PUT path=/agent/v1/resources/server/{sid}")
    before = puts()
    agent_get(api, "/agent/v1/watch?kinds=host&since=999999999&wait=2")  # 2 s of API time
    assert puts() - before <= 1
    action(api, token, sid, {"os-start": None})
    wait_status(api, token, sid, "ACTIVE")
    pid = qemu_pid(comp, sid)
    assert pid and pid_alive(pid)

    # hard reboot: system_reset in the same process
    action(api, token, sid, {"reboot": {"type": "HARD"}})
    wait_status(api, token, sid, "ACTIVE")
    assert qemu_pid(comp, sid) == pid and pid_alive(pid)
    assert "rebooted (hard: system_reset)" in comp.log.read_text()

    # a restarted agent re-adopts the guest instead of killing it
    comp.stop()
    assert pid_alive(pid)
    comp.start()
    wait_for(lambda: "re-adopted a running QEMU" in comp.log.read_text(), "re-adoption")
    assert qemu_pid(comp, sid) == pid and pid_alive(pid)
    wait_status(api, token, sid, "ACTIVE")
    restart_log = comp.log.read_text().split(f"--- start {comp.starts}")[1]
    assert "status=BUILD" not in restart_log and "QEMU started" not in restart_log

    # delete: process, directory and document are gone
    st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
    assert st == 204, r.body
    wait_for(lambda: show(api, token, sid) is None, "the server to be gone", timeout=60)
    wait_for(lambda: not pid_alive(pid), "QEMU to exit")
    assert not sdir.exists()
    assert comp.alive()


def test_server_deleted_while_agent_is_down_is_cleaned_up(start_api, start_compute, tmp_path):
    api = start_api()
    comp = start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    token = api.token()
    image = make_image(api, token)
    (comp.state_dir / "images").mkdir(parents=True, exist_ok=True)
    bootable_disk(comp.state_dir / "images" / image, tmp_path)
    sid = create(api, token, image)
    wait_status(api, token, sid, "ACTIVE", timeout=90)
    pid = qemu_pid(comp, sid)
    assert pid and pid_alive(pid)
    comp.kill()  # nothing gets to clean up
    assert pid_alive(pid)
    st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
    assert st == 204, r.body
    assert show(api, token, sid)["OS-EXT-STS:task_state"] == "deleting"
    comp.start()
    wait_for(lambda: show(api, token, sid) is None, "the server to be gone", timeout=60)
    wait_for(lambda: not pid_alive(pid), "QEMU to exit")
    assert not (comp.state_dir / "servers" / sid).exists()


def test_ssh_into_the_tiny_guest_with_its_key_pair(start_api, start_compute, tmp_path):
    """End to end with the tiny guest (scripts/guest-image): key pair, user-data and hostname
    reach the guest through the NoCloud seed, and SSH answers on the reported port."""
    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "guest-image"
    if not script.exists() or not shutil.which("ssh"):
        pytest.skip("needs scripts/guest-image and an ssh client")
    api = start_api()
    comp = start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    token = api.token()
    # the image goes through Glance; the agent fetches it through the agent API
    disk = tmp_path / "sov-tiny.raw"
    subprocess.run([str(script), str(disk)], check=True, capture_output=True, timeout=300)
    image = api.openstack("image", "create", "--file", disk, "--disk-format", "raw",
                          "--container-format", "bare", "sov-tiny")["id"]
    st, doc, r = api.request("POST", NOVA + "/os-keypairs", {"keypair": {"name": "k1"}}, token)
    assert st == 200, r.body
    keyfile = tmp_path / "k1.pem"
    keyfile.write_text(doc["keypair"]["private_key"])
    keyfile.chmod(0o600)
    user_data = "#!/bin/sh\necho user-data-ran > /tmp/marker\n"
    sid = create(api, token, image, name="guest-1", key_name="k1",
                 user_data=base64.b64encode(user_data.encode()).decode())
    wait_status(api, token, sid, "ACTIVE", timeout=90)
    port = internal(api, sid)["_ssh"]["port"]
    # the server's details say where its SSH answers
    shown = api.openstack("server", "show", sid)
    assert shown["sov:ssh"] == f"127.0.0.1:{port}"

    def ssh(cmd):
        p = subprocess.run(["ssh", "-i", str(keyfile), "-p", str(port), "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "root@127.0.0.1",
                            cmd], capture_output=True, text=True, timeout=30)
        return p.stdout if p.returncode == 0 else None

    out = wait_for(lambda: ssh("hostname"), "SSH into the guest", timeout=120)
    assert out.strip() == "guest-1"
    assert wait_for(lambda: ssh("cat /tmp/marker"), "user-data to run").strip() == \
        "user-data-ran"
    st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
    assert st == 204, r.body
    wait_for(lambda: show(api, token, sid) is None, "the server to be gone")
