# SPDX-License-Identifier: Apache-2.0
"""sov-compute's host resources against a real sov-api and real QEMU (TCG): GPU discovery from
a fake PCI sysfs tree ([compute] pci_sysfs), the inventory the scheduler places GPU flavors
by, the claims a server holds on its GPUs (<server dir>/gpus) and the faults when a GPU cannot
be passed through; and the cgroup a guest's QEMU runs in with the flavor's CPU and memory
limits, removed with the server."""
import pathlib
import re

import pytest

from test_compute_agent import (NOVA, create, host_doc, pid_alive, qemu_pid, show, start_compute,
                                wait_for, wait_status)

__all__ = ["start_compute"]  # the fixture, imported for pytest

MIB = 1 << 20

# (address, vendor, device, class, driver, iommu group)
GPU_HOST_DEVICES = [
    ("0000:af:00.0", "0x10de", "0x1eb8", "0x030200", "nouveau", "40"),   # NVIDIA T4, host driver
    ("0000:b1:00.0", "0x10de", "0x1eb8", "0x030200", "vfio-pci", "41"),  # NVIDIA T4, for VMs
    ("0000:b1:00.1", "0x1002", "0xaaf0", "0x040300", "snd_hda_intel", "41"),  # AMD audio
    ("0000:00:02.0", "0x8086", "0x3e92", "0x030000", "i915", "1"),  # Intel display: not ours
    ("0000:00:1f.2", "0x8086", "0xa352", "0x010601", "ahci", "2"),  # SATA controller
    ("0000:00:1f.3", "0x8086", "0xa348", "0x040300", None, None),  # unbound, no IOMMU
]


def fake_pci(root, devices):
    """A tree shaped like /sys/bus/pci/devices (plus the drivers and groups it links to)."""
    (root / "devices").mkdir(parents=True)
    for addr, vendor, device, klass, driver, group in devices:
        d = root / "devices" / addr
        d.mkdir()
        for name, value in (("vendor", vendor), ("device", device), ("class", klass)):
            (d / name).write_text(value + "\n")
        if driver:
            (root / "drivers" / driver).mkdir(parents=True, exist_ok=True)
            (d / "driver").symlink_to(f"../../drivers/{driver}")
        if group:
            (root / "iommu_groups" / group).mkdir(parents=True, exist_ok=True)
            (d / "iommu_group").symlink_to(f"../../iommu_groups/{group}")
    return root / "devices"


def boot_image(api, token):
    """A Glance image whose boot sector halts the CPU: enough for QEMU to run (ACTIVE)."""
    st, doc, r = api.request("POST", "/image/v2/images", {
        "name": "halt", "disk_format": "raw", "container_format": "bare"}, token)
    assert st == 201, r.body
    mbr = bytearray(512)
    mbr[0:4] = b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp back to hlt
    mbr[510:512] = b"\x55\xaa"
    st, _, r = api.request("PUT", f"/image/v2/images/{doc['id']}/file", token=token,
                           raw=bytes(mbr) + b"\0" * (MIB - 512),
                           headers={"Content-Type": "application/octet-stream"})
    assert st == 204, r.body
    return doc["id"]


def hypervisor(api, host):
    """`openstack hypervisor show HOST` as a dict."""
    return api.openstack("hypervisor", "show", host)


def admin_show(api, token, sid):
    s = show(api, token, sid)
    assert s is not None
    return s


def test_gpu_inventory_placement_and_claims(start_api, start_compute, tmp_path):
    api = start_api()
    pci = fake_pci(tmp_path / "pci-gpu1", GPU_HOST_DEVICES)
    empty = fake_pci(tmp_path / "pci-cpu1", [])
    gpu = start_compute(api, host="gpu1",
                        extra=f"pci_sysfs = {pci}\nvcpus = 16\nram_mb = 65536\n")
    h = wait_for(lambda: host_doc(api, "gpu1"), "host gpu1")
    assert (h["vcpus"], h["ram_mb"]) == (16, 65536)
    # only the NVIDIA (and AMD) display controllers, in address order
    assert h["gpus"] == [
        {"address": "0000:af:00.0", "vendor": "10de", "device": "1eb8", "driver": "nouveau",
         "iommu_group": "40", "vfio": False},
        {"address": "0000:b1:00.0", "vendor": "10de", "device": "1eb8", "driver": "vfio-pci",
         "iommu_group": "41", "vfio": True},
    ], h["gpus"]
    assert "GPUs: 2 under" in gpu.log.read_text()

    token = api.token()
    image = boot_image(api, token)
    # a flavor without GPUs on the GPU host (the only host yet) runs and claims nothing
    small = create(api, token, image, name="small")
    s = wait_status(api, token, small, "ACTIVE", timeout=90)
    assert s["OS-EXT-SRV-ATTR:host"] == "gpu1"
    assert not (gpu.state_dir / "servers" / small / "gpus").exists()
    pid = qemu_pid(gpu, small)
    assert pid and b"vfio-pci" not in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()

    start_compute(api, host="cpu1", extra=f"pci_sysfs = {empty}\n")
    wait_for(lambda: host_doc(api, "cpu1"), "host cpu1")
    assert host_doc(api, "cpu1")["gpus"] == []
    assert hypervisor(api, "gpu1")["gpus"] == 2
    assert hypervisor(api, "cpu1")["gpus"] == 0

    # first GPU server: the scheduler sends it to gpu1 (cpu1 has the room, not the GPU); the
    # agent claims the GPU bound to vfio-pci first; QEMU then refuses the fake host device
    g1 = create(api, token, image, name="g1", flavorRef="g4.xlarge")
    s = wait_status(api, token, g1, "ERROR", timeout=90)
    assert s["OS-EXT-SRV-ATTR:host"] == "gpu1"
    assert "vfio" in s["fault"]["message"] and "0000:b1:00.0" in s["fault"]["message"], s["fault"]
    assert (gpu.state_dir / "servers" / g1 / "gpus").read_text() == "0000:b1:00.0\n"
    assert "vfio-pci,host=0000:b1:00.0" in (gpu.state_dir / "servers" / g1 / "qemu.log") \
        .read_text()

    # second: the GPU left is bound to the host driver, and the agent says so (no claim)
    g2 = create(api, token, image, name="g2", flavorRef="g4.xlarge")
    s = wait_status(api, token, g2, "ERROR", timeout=90)
    assert s["OS-EXT-SRV-ATTR:host"] == "gpu1"
    assert s["fault"]["message"] == (
        "GPU 0000:af:00.0 (10de:1eb8) is bound to nouveau, not vfio-pci; bind it to vfio-pci "
        "for passthrough"), s["fault"]
    assert not (gpu.state_dir / "servers" / g2 / "gpus").exists()

    # third: both GPUs are taken (the scheduler counts the servers' GPUs): no valid host
    g3 = create(api, token, image, name="g3", flavorRef="g4.xlarge")
    s = wait_status(api, token, g3, "ERROR")
    assert "No valid host was found" in s["fault"]["message"], s["fault"]
    assert not s.get("OS-EXT-SRV-ATTR:host")
    assert hypervisor(api, "cpu1")["running_vms"] == 0

    # deleting the first gives its GPU back: the next GPU server claims it again
    for sid in (g1, g3):
        st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
        assert st == 204, r.body
        wait_for(lambda: show(api, token, sid) is None, f"{sid} to be gone")
    assert not (gpu.state_dir / "servers" / g1).exists()
    g4 = create(api, token, image, name="g4", flavorRef="g4.xlarge")
    s = wait_status(api, token, g4, "ERROR", timeout=90)
    assert s["OS-EXT-SRV-ATTR:host"] == "gpu1"
    assert (gpu.state_dir / "servers" / g4 / "gpus").read_text() == "0000:b1:00.0\n"
    assert "vfio" in s["fault"]["message"], s["fault"]
    # and the small server ran on throughout
    assert pid_alive(pid) and admin_show(api, token, small)["status"] == "ACTIVE"


def cgroup_lines(pid):
    """/proc/PID/cgroup as {controller: path} ("" for the v2 hierarchy)."""
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(",") if ctrls else [""]:
            out[ctrl] = path
    return out


def test_guest_cgroup_limits_and_cleanup(start_api, start_compute):
    api = start_api()
    comp = start_compute(api)
    h = wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    log = comp.log.read_text()
    mode = re.search(r"cgroups: (off \(.*\)|v1|v2)", log)
    assert mode, log
    if mode.group(1).startswith("off"):
        pytest.skip(f"no writable cgroup file system: {mode.group(1)}")
    mode = mode.group(1)

    token = api.token()
    image = boot_image(api, token)
    sid = create(api, token, image)  # t3.micro: 2 vCPUs, 1024 MiB
    wait_status(api, token, sid, "ACTIVE", timeout=90)
    pid = qemu_pid(comp, sid)
    assert pid and pid_alive(pid)
    assert re.search(rf'msg="guest in its cgroup" server={sid} pid={pid} ', comp.log.read_text())
    # RAM + 256 MiB for QEMU + 1 GiB of translated code under TCG
    memory = (1024 + 256 + (1024 if h["info"]["accel"] == "tcg" else 0)) * MIB
    cg = cgroup_lines(pid)
    root = pathlib.Path("/sys/fs/cgroup")
    if mode == "v2":
        assert cg[""] == f"/sov/{sid}", cg
        dirs = [root / "sov" / sid]
        assert (dirs[0] / "cpu.max").read_text().split() == ["200000", "100000"]
        assert int((dirs[0] / "memory.max").read_text()) == memory
    else:
        assert cg["cpu"] == f"/sov/{sid}" and cg["memory"] == f"/sov/{sid}", cg
        dirs = [root / "cpu" / "sov" / sid, root / "memory" / "sov" / sid]
        assert int((dirs[0] / "cpu.cfs_quota_us").read_text()) == 200000
        assert int((dirs[0] / "cpu.cfs_period_us").read_text()) == 100000
        assert int((dirs[1] / "memory.limit_in_bytes").read_text()) == memory
    for d in dirs:
        assert str(pid) in (d / "cgroup.procs").read_text().split()

    st, _, r = api.request("DELETE", f"{NOVA}/servers/{sid}", token=token)
    assert st == 204, r.body
    wait_for(lambda: show(api, token, sid) is None, "the server to be gone", timeout=60)
    wait_for(lambda: not pid_alive(pid), "QEMU to exit")
    for d in dirs:
        assert not d.exists(), d
    assert "cannot remove" not in comp.log.read_text()
