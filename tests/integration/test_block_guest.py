# SPDX-License-Identifier: Apache-2.0
"""A real guest on a sov-block volume: QEMU (TCG) boots Debian's stock kernel with a busybox
initramfs (guest.py) and the volume as its virtio disk over the NBD Unix socket. The guest
reports the SHA-256 of the first MiB it reads, which must be what the test wrote through
sov-block, and writes a 64 KiB pattern with an fsync that must be visible to qemu-io afterwards;
the same again on an encrypted clone of a snapshot, over TCP with a token export."""
import hashlib
import os

import pytest

import guest
from conftest import MIB, qemu_io
import nbdwire


@pytest.fixture(scope="session")
def tiny_guest():
    missing = guest.missing_packages()
    if missing:
        pytest.skip(f"packages missing (scripts/bootstrap installs them): {' '.join(missing)}")
    return guest.Guest.build()


def boot_and_check(tiny_guest, block, drive, export, first_mib, size):
    out = tiny_guest.run(drives=[drive], timeout=120)
    m = guest.markers(out)
    assert "done" in m, out[-3000:]
    assert m["read"]["size"] == str(size), m
    assert m["read"]["sha256"] == hashlib.sha256(first_mib).hexdigest(), out[-2000:]
    want = hashlib.sha256(guest.GUEST_PATTERN).hexdigest()
    assert m["wrote"]["sha256"] == want and m["wrote"]["readback"] == want, m
    # The guest's write reached the volume: another client reads it.
    with nbdwire.Client(export, unix=block.socket) as c:
        assert c.read(MIB, 65536) == guest.GUEST_PATTERN
        assert c.read(0, MIB) == first_mib


def test_guest_boots_on_a_volume(tiny_guest, block):
    size = 32 * MIB
    block.create_volume("disk", size)
    first = os.urandom(MIB)
    with nbdwire.Client("disk", unix=block.socket) as c:
        c.write(0, first)
        c.flush()
    boot_and_check(tiny_guest, block, block.uri("disk"), "disk", first, size)
    qemu_io(block.uri("disk"), "read -P 0 1088k 1M", read_only=True)  # nothing else changed


def test_guest_on_an_encrypted_clone_over_tcp(tiny_guest, block):
    size = 16 * MIB
    block.create_volume("base", size, encrypted=True)
    first = os.urandom(MIB)
    with nbdwire.Client("base", unix=block.socket) as c:
        c.write(0, first, fua=True)
    block.snapshot("base", "base-snap")
    block.clone("vm1", "base-snap")
    g = block.grant("vm1", token=True)
    boot_and_check(tiny_guest, block, block.tcp_uri(g["export"]), "vm1", first, size)
    # The snapshot did not see the guest's write.
    with nbdwire.Client("base-snap", unix=block.socket) as c:
        assert c.read(MIB, 65536) == bytes(65536)
