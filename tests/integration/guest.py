# SPDX-License-Identifier: Apache-2.0
"""A tiny QEMU guest for integration tests, built from Debian packages only: the stock kernel
of linux-image-amd64 (/boot/vmlinuz-*) and an initramfs made here of busybox-static, the virtio
modules the kernel needs (with their dependencies from modules.dep, decompressed when the
package ships them compressed) and an /init shell script chosen by the test. Nothing is
downloaded; the initramfs is cached under tests/.cache/guest keyed by its content.

    g = Guest.build(init_script)           # or Guest.build() for the default disk probe
    out = g.run(drives=["nbd+unix:///vol?socket=/path"], timeout=300)

The guest runs under TCG (the host's /dev/kvm is a nested PVM layer where stock kernels do not
boot), prints to ttyS0, and powers off; run() returns the console output. Markers a script
prints are lines `SOVGUEST key=value ...`, parsed by markers()."""
import glob
import gzip
import hashlib
import lzma
import os
import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / "tests" / ".cache" / "guest"
BUSYBOX = pathlib.Path("/bin/busybox")
PACKAGES = ("linux-image-amd64", "busybox-static", "qemu-system-x86")

# Loaded in this order (each after its dependencies); other drivers can be added by callers.
DEFAULT_MODULES = ("virtio_pci", "virtio_blk")

# The default /init: probes /dev/vda, prints the SHA-256 of its first MiB and its size, then
# writes GUEST_PATTERN (64 KiB) at 1 MiB with an fsync, reads it back, and powers off.
GUEST_PATTERN_LINE = b"SOVGUEST-WROTE-THIS-BLOCK\n"
GUEST_PATTERN = (GUEST_PATTERN_LINE * (65536 // len(GUEST_PATTERN_LINE) + 1))[:65536]
PROBE_SCRIPT = r"""
dev=/dev/vda
i=0
while [ ! -b $dev ] && [ $i -lt 100 ]; do mdev -s; i=$((i + 1)); usleep 100000; done
[ -b $dev ] || { echo "SOVGUEST error=no-$dev"; poweroff -f; }
sum=$(dd if=$dev bs=65536 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
size=$(blockdev --getsize64 $dev)
echo "SOVGUEST read sha256=$sum size=$size"
yes SOVGUEST-WROTE-THIS-BLOCK | head -c 65536 > /tmp/pattern
dd if=/tmp/pattern of=$dev bs=65536 seek=16 count=1 conv=fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
back=$(dd if=$dev bs=65536 skip=16 count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
want=$(sha256sum < /tmp/pattern | cut -d' ' -f1)
echo "SOVGUEST wrote sha256=$want readback=$back"
"""


def missing_packages():
    """The Debian packages a guest needs that are not installed (see scripts/bootstrap)."""
    out = []
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                           text=True)
        if "install ok installed" not in r.stdout:
            out.append(p)
    return out


def kernel():
    """(vmlinuz path, modules dir) of the newest installed Debian kernel."""
    found = sorted(glob.glob("/boot/vmlinuz-*"), key=lambda p: [
        int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)])
    for vmlinuz in reversed(found):
        ver = vmlinuz[len("/boot/vmlinuz-"):]
        mods = pathlib.Path("/lib/modules") / ver
        if (mods / "modules.dep").exists() and os.access(vmlinuz, os.R_OK):
            return pathlib.Path(vmlinuz), mods
    raise FileNotFoundError("no readable /boot/vmlinuz-* with /lib/modules (linux-image-amd64)")


def module_order(moddir, names):
    """Module files (relative to moddir) for names, dependencies first, each once."""
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {}
    for path in deps:
        base = os.path.basename(path)
        by_name[re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")] = path
    order = []

    def add(path):
        for d in deps.get(path, []):
            add(d)
        if path not in order:
            order.append(path)

    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            # Built into the kernel (modules.builtin) needs nothing; anything else is an error.
            builtin = (moddir / "modules.builtin").read_text()
            if re.search(rf"/{re.escape(n)}\.ko$", builtin, re.M):
                continue
            raise FileNotFoundError(f"module {n} not found under {moddir}")
        add(by_name[key])
    return order


def module_bytes(path):
    """A module's ELF bytes: busybox insmod cannot read compressed modules."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True,
                              check=True).stdout
    return data


def cpio_newc(entries):
    """An uncompressed newc cpio archive from [(name, mode, data)] (data None for dirs)."""
    out = bytearray()
    ino = 1

    def pad(n):
        return b"\0" * ((4 - n % 4) % 4)

    for name, mode, data in list(entries) + [("TRAILER!!!", 0, b"")]:
        data = data or b""
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb + pad(110 + len(nb)) + data + pad(len(data))
        ino += 1
    return bytes(out)


class Guest:
    def __init__(self, vmlinuz, initrd):
        self.vmlinuz, self.initrd = vmlinuz, initrd

    @classmethod
    def build(cls, script=PROBE_SCRIPT, modules=DEFAULT_MODULES):
        """Builds (or takes from the cache) an initramfs whose /init loads the modules, runs
        script under busybox sh and powers off."""
        vmlinuz, moddir = kernel()
        mods = module_order(moddir, modules)
        init = ("#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"
                "mount -t proc proc /proc\nmount -t sysfs sys /sys\n"
                "mount -t devtmpfs dev /dev 2>/dev/null || mdev -s\nmount -t tmpfs tmp /tmp\n"
                + "".join(f"insmod /lib/modules/{os.path.basename(m).split('.ko')[0]}.ko\n"
                          for m in mods)
                + "echo SOVGUEST booted\n" + script
                + "\necho SOVGUEST done\nsync\npoweroff -f\n")
        key = hashlib.sha256(init.encode() + vmlinuz.name.encode() +
                             BUSYBOX.read_bytes()[:4096] +
                             str(BUSYBOX.stat().st_size).encode()).hexdigest()[:16]
        CACHE.mkdir(parents=True, exist_ok=True)
        initrd = CACHE / f"initrd-{vmlinuz.name}-{key}.cpio"
        if not initrd.exists():
            entries = [(d, 0o040755, None) for d in ("bin", "dev", "proc", "sys", "tmp",
                                                     "lib", "lib/modules")]
            entries.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
            entries.append(("init", 0o100755, init.encode()))
            for m in mods:
                name = os.path.basename(m).split(".ko")[0] + ".ko"
                entries.append((f"lib/modules/{name}", 0o100644, module_bytes(moddir / m)))
            tmp = initrd.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(cpio_newc(entries))
            tmp.rename(initrd)
        return cls(vmlinuz, initrd)

    def command(self, drives=(), memory=256, append=""):
        args = [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                "-machine", "accel=tcg", "-cpu", "max", "-m", str(memory), "-nographic",
                "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
                "-kernel", str(self.vmlinuz), "-initrd", str(self.initrd),
                "-append", f"console=ttyS0 panic=-1 rdinit=/init loglevel=4 {append}".strip()]
        for d in drives:
            spec = d if "file=" in d else f"file={d.replace(',', ',,')},format=raw,if=virtio"
            args += ["-drive", spec]
        return args

    def run(self, drives=(), timeout=300, memory=256, append="", env=None):
        """Boots the guest to power-off; returns its console output. Raises TimeoutError
        (with the output so far) when it does not finish in time."""
        p = subprocess.Popen(self.command(drives, memory, append), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise TimeoutError(f"guest did not power off in {timeout}s:\n"
                               + out.decode(errors="replace")[-3000:]) from None
        return out.decode(errors="replace")


def markers(output):
    """{'read': {'sha256': ..., 'size': ...}, ...} from the `SOVGUEST word k=v ...` lines."""
    out = {}
    for line in output.splitlines():
        m = re.search(r"SOVGUEST (\S+)(.*)$", line.strip())
        if m:
            out[m.group(1)] = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
    return out
