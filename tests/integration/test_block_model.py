# SPDX-License-Identifier: Apache-2.0
"""sov-block against a model: seeded random sequences of WRITE (FUA or not), WRITE_ZEROES and
READ at arbitrary offsets and lengths (512-byte granular on encrypted volumes, which advertise
that minimum block size; byte granular otherwise), crossing cluster boundaries, applied both to
a volume and to a bytearray. Every read, and the whole volume after a restart, must equal the
model. A snapshot taken midway must keep matching the model as it was, and a clone written on
top of it must read through to the snapshot only where the clone did not write or zero --
zeroing a range of a clone must never let the parent's data show through."""
import random

import pytest

from conftest import MIB
import nbdwire

SIZE = 3 * MIB + 4096  # not a whole number of 64 KiB clusters
OPS = 400


def run_ops(c, model, rnd, n, align):
    for _ in range(n):
        op = rnd.random()
        ln = rnd.choice((1, 7, 512, 4096, 65536, 65537, 200_000, 300_000))
        ln = max(align, ln - ln % align)
        off = rnd.randrange(0, SIZE - ln + 1)
        off -= off % align
        if op < 0.5:
            data = rnd.randbytes(ln)
            c.write(off, data, fua=rnd.random() < 0.2)
            model[off:off + ln] = data
        elif op < 0.65:
            c.write_zeroes(off, ln)
            model[off:off + ln] = bytes(ln)
        elif op < 0.7:
            c.flush()
        else:
            assert c.read(off, ln) == model[off:off + ln], f"read {off}+{ln}"


def read_all(c):
    return b"".join(c.read(o, min(MIB, SIZE - o)) for o in range(0, SIZE, MIB))


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_random_ops_match_a_model(block, encrypted):
    align = 512 if encrypted else 1
    rnd = random.Random(f"sov-block-model-{encrypted}")
    block.create_volume("mv", SIZE, encrypted=encrypted)
    model = bytearray(SIZE)
    with nbdwire.Client("mv", unix=block.socket) as c:
        run_ops(c, model, rnd, OPS // 2, align)
        c.flush()
        snap_model = bytes(model)
        block.snapshot("mv", "mv-snap")
        run_ops(c, model, rnd, OPS // 2, align)
        c.flush()
        assert read_all(c) == model
    block.clone("mv-clone", "mv-snap")
    clone_model = bytearray(snap_model)
    with nbdwire.Client("mv-clone", unix=block.socket) as c:
        # Zero whole clusters and parts of clusters the snapshot holds data in.
        for off, ln in ((0, 65536), (65536 * 3 + 512, 1024), (MIB - 512, 131072)):
            c.write_zeroes(off, ln)
            clone_model[off:off + ln] = bytes(ln)
        assert c.read(0, 65536) == bytes(65536)
        run_ops(c, clone_model, rnd, OPS // 2, align)
        c.flush()
    with nbdwire.Client("mv-snap", unix=block.socket) as c:
        assert read_all(c) == snap_model
    block.restart()
    for name, want in (("mv", model), ("mv-snap", snap_model), ("mv-clone", clone_model)):
        with nbdwire.Client(name, unix=block.socket) as c:
            assert read_all(c) == want, name


def test_zeroing_after_a_snapshot_hides_the_snapshot_data(block):
    """The volume's own top layer is empty after a snapshot; zeroing (with holes allowed) or
    trimming there must not expose, or keep exposing, what the snapshot holds."""
    block.create_volume("z", 4 * MIB)
    with nbdwire.Client("z", unix=block.socket) as c:
        c.write(0, b"\xaa" * (4 * MIB))
        c.flush()
    block.snapshot("z", "z-snap")
    with nbdwire.Client("z", unix=block.socket) as c:
        c.write_zeroes(0, MIB)  # NBD_CMD_WRITE_ZEROES without NO_HOLE: may unmap
        c.write_zeroes(MIB + 100, 1000)
        assert c.read(0, MIB) == bytes(MIB)
        assert c.read(MIB, 2048) == b"\xaa" * 100 + bytes(1000) + b"\xaa" * 948
        c.flush()
    block.restart()
    with nbdwire.Client("z", unix=block.socket) as c:
        assert c.read(0, MIB) == bytes(MIB)
        assert c.read(MIB, 2048) == b"\xaa" * 100 + bytes(1000) + b"\xaa" * 948
    with nbdwire.Client("z-snap", unix=block.socket) as c:
        assert c.read(0, 4 * MIB) == b"\xaa" * (4 * MIB)


def test_largest_request(block):
    """32 MiB is the largest READ/WRITE served; one byte more is refused, and the connection
    or at least the daemon survives it."""
    block.create_volume("big", 40 * MIB)
    data = random.Random(1).randbytes(32 * MIB)
    with nbdwire.Client("big", unix=block.socket, timeout=120) as c:
        c.write(4 * MIB, data, fua=True)
        assert c.read(4 * MIB, 32 * MIB) == data
        h = c.send_request(nbdwire.CMD_READ, 0, 32 * MIB + 1)
        try:
            err, got, _ = c.read_reply()
            assert got == h and err != 0
        except ConnectionError:
            pass
    with nbdwire.Client("big", unix=block.socket) as c:
        assert c.read(4 * MIB, 4096) == data[:4096]
