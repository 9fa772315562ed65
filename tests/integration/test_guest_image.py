# SPDX-License-Identifier: Apache-2.0
"""The tiny guest image (scripts/guest-image, guest/): built from Debian packages here, booted
under QEMU TCG from the raw disk by SeaBIOS and syslinux with a NoCloud seed ISO. The guest must
print its ready marker and the user-data's output on the serial console, answer SSH with the
seed's key and hostname, keep its host key and not rerun user-data across a reboot, and power
off on the ACPI power button. Waits poll the serial log against a deadline."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "guest-image"
PACKAGES = ("busybox-static", "dropbear-bin", "kmod", "cpio", "dosfstools", "mtools",
            "syslinux", "syslinux-common", "qemu-system-x86", "openssh-client")
BOOT_DEADLINE = 120.0
HOSTNAME = "tiny-one"
IID = "iid-test-guest-image"


def missing_packages():
    def installed(p):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                           text=True)
        return "install ok installed" in r.stdout

    out = [p for p in PACKAGES if not installed(p)]
    if not any(installed(p) for p in ("genisoimage", "xorriso")):
        out.append("genisoimage")
    if not any(os.access(p, os.R_OK) for p in pathlib.Path("/boot").glob("vmlinuz-*")):
        out.append("linux-image-amd64")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vm:
    """A QEMU process booting disk.raw with the seed, its serial log and QMP socket."""

    def __init__(self, tmp, disk, seed):
        self.tmp, self.log = tmp, tmp / "serial.log"
        self.qmp_path = tmp / "qmp.sock"
        self.port = free_port()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg", "-m", "256",
             "-drive", f"file={disk},format=raw,if=virtio",
             "-drive", f"file={seed},format=raw,if=virtio,readonly=on",
             "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
             "-device", "virtio-net-pci,netdev=n0",
             "-serial", f"file:{self.log}", "-display", "none",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(tmp / "qemu.err", "wb"))

    def text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern, count=1, deadline=BOOT_DEADLINE):
        """Polls the serial log until pattern matched count times; returns the last match."""
        end = time.monotonic() + deadline
        while True:
            found = list(re.finditer(pattern, self.text(), re.M))
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"no {pattern!r} (x{count}) on the console:\n"
                                     + self.text()[-4000:])
            time.sleep(0.1)

    def qmp(self, command):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.qmp_path))
            f = s.makefile("rw")
            f.readline()
            for cmd in ("qmp_capabilities", command):
                f.write(json.dumps({"execute": cmd}) + "\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply

    def ssh(self, key, command, timeout=30):
        return subprocess.run(
            ["ssh", "-i", str(key), "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    missing = missing_packages()
    if missing:
        pytest.skip(f"Debian packages missing (scripts/bootstrap installs them): "
                    f"{' '.join(missing)}")
    tmp = tmp_path_factory.mktemp("guest-image")
    t0 = time.monotonic()
    subprocess.run([str(SCRIPT), str(tmp / "disk.raw")], check=True, timeout=300,
                   capture_output=True)
    print(f"guest image built in {time.monotonic() - t0:.1f}s")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test",
                    "-f", str(key)], check=True, timeout=30)
    seed = tmp / "seed"
    seed.mkdir()
    (seed / "meta-data").write_text(
        f"instance-id: {IID}\nlocal-hostname: {HOSTNAME}\npublic-keys:\n"
        f"  - {(tmp / 'id_ed25519.pub').read_text().strip()}\n")
    (seed / "user-data").write_text(
        "#!/bin/sh\necho hello-from-user-data > /dev/console\ntouch /root/user-data-ran\n")
    subprocess.run([str(SCRIPT), "--seed", str(seed), str(tmp / "seed.iso")], check=True,
                   timeout=60)
    return tmp, key


@pytest.fixture(scope="module")
def vm(image):
    tmp, _ = image
    v = Vm(tmp, tmp / "disk.raw", tmp / "seed.iso")
    yield v
    v.kill()


def test_seed_iso_is_labelled_cidata(image):
    tmp, _ = image
    with open(tmp / "seed.iso", "rb") as f:
        f.seek(16 * 2048)
        pvd = f.read(2048)
    assert pvd[1:6] == b"CD001"
    assert pvd[40:72].decode().strip() == "cidata"


def test_boot_marker_user_data_and_ssh(vm, image):
    _, key = image
    m = vm.wait_for(r"^sov-guest: ready hostname=(\S+) ip=(\S+) instance-id=(\S+)")
    ready = time.monotonic() - vm.started
    assert m.group(1) == HOSTNAME and m.group(3) == IID, m.group(0)
    assert m.group(2) != "none", vm.text()[-3000:]
    vm.wait_for(r"^hello-from-user-data", deadline=30)
    vm.wait_for(r"^sov-guest: user-data exit=0", deadline=30)
    r = vm.ssh(key, "hostname")
    ssh_ok = time.monotonic() - vm.started
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == HOSTNAME
    print(f"boot to ready marker {ready:.1f}s, to first SSH command {ssh_ok:.1f}s (TCG)")
    r = vm.ssh(key, "test -e /root/user-data-ran && id -u")
    assert (r.returncode, r.stdout.strip()) == (0, "0"), r.stderr


def test_ssh_refuses_other_keys(vm, image):
    tmp, _ = image
    vm.wait_for(r"^sov-guest: ready ")
    other = tmp / "other"
    if not other.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True, timeout=30)
    r = vm.ssh(other, "true")
    assert r.returncode == 255


def test_reboot_keeps_host_key_and_runs_user_data_once(vm, image):
    _, key = image
    vm.wait_for(r"^sov-guest: user-data exit=0")
    first = vm.wait_for(r"^sov-guest: hostkey ssh-ed25519 (\S+)").group(1)
    assert "return" in vm.qmp("system_reset")
    vm.wait_for(r"^sov-guest: ready ", count=2)
    assert vm.wait_for(r"^sov-guest: hostkey ssh-ed25519 (\S+)", count=2).group(1) == first
    r = vm.ssh(key, "hostname")
    assert (r.returncode, r.stdout.strip()) == (0, HOSTNAME), r.stderr
    assert vm.text().count("hello-from-user-data") == 1


def test_acpi_power_button_powers_off(vm):
    vm.wait_for(r"^sov-guest: ready ")
    assert "return" in vm.qmp("system_powerdown")
    try:
        vm.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("guest ignored the power button:\n" + vm.text()[-3000:])
    assert "sov-guest: power button" in vm.text()
