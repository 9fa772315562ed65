# SPDX-License-Identifier: Apache-2.0
"""Encrypted volumes: data files under data_dir never hold their plaintext (checked by
searching every file for recognisable patterns, with an unencrypted volume as the control that
proves the search finds them), reads return the plaintext, a restart with the same master key
serves it again, snapshots and clones of an encrypted volume stay encrypted, and a daemon with
another master key does not hand the data out."""
import os
import stat

import pytest

from conftest import MIB, nbd_sha256, qemu_io, run_tool
import nbdwire

MARKER = b"SOVCLOUD-PLAINTEXT-MARKER:do-not-store-me;"
BLOCK = (MARKER * (4096 // len(MARKER) + 1))[:4096]
PIECE = BLOCK[:1024]  # a part of a cluster: the rest of the cluster must stay zeros


def files_containing(block, needles):
    """Data files under data_dir holding any of needles (bytes), read in overlapping chunks."""
    hits = []
    longest = max(len(n) for n in needles)
    for path in block.data_files():
        with open(path, "rb") as f:
            tail = b""
            while chunk := f.read(4 * MIB):
                buf = tail + chunk
                if any(n in buf for n in needles):
                    hits.append(path)
                    break
                tail = buf[-longest:]
    return hits


NEEDLES = (MARKER, b"\x5a" * 256)


def write_plaintext(block, name):
    """A marker-filled MiB at 1 MiB (protocol client, unaligned pieces too) and a 0x5a run."""
    with nbdwire.Client(name, unix=block.socket) as c:
        c.write(MIB, BLOCK * 256)
        # Part of a cluster (encrypted exports advertise a 512-byte minimum block size).
        c.write(3 * MIB + 1024, PIECE)
        c.flush()
    qemu_io(block.uri(name), "write -P 0x5a 5M 512k", "flush")


def check_plaintext(block, name):
    with nbdwire.Client(name, unix=block.socket) as c:
        assert c.read(MIB, 256 * 4096) == BLOCK * 256
        assert c.read(3 * MIB + 1024, len(PIECE)) == PIECE
        assert c.read(3 * MIB, 1024) == bytes(1024)
        assert c.read(3 * MIB + 2048, 62 * 1024) == bytes(62 * 1024)
    qemu_io(block.uri(name), "read -P 0x5a 5M 512k", "read -P 0 0 1M", read_only=True)


def test_encrypted_volume_leaves_no_plaintext(block):
    assert block.master_key.exists()
    assert stat.S_IMODE(block.master_key.stat().st_mode) == 0o600
    enc = block.create_volume("secret", 16 * MIB, encrypted=True)
    assert enc["encrypted"] is True
    plain = block.create_volume("control", 16 * MIB, encrypted=False)
    assert plain["encrypted"] is False
    write_plaintext(block, "secret")
    write_plaintext(block, "control")
    check_plaintext(block, "secret")
    hits = files_containing(block, NEEDLES)
    assert hits, "the control volume's plaintext was not found: the search is broken"
    control_files = set(hits)
    # Only the control volume's files may hold the patterns. Which files those are is the
    # engine's business, so take them from a data dir with the control volume alone.
    block.delete("control")
    assert files_containing(block, NEEDLES) == [], "plaintext of an encrypted volume on disk"
    # After a clean stop (everything flushed, catalog rewritten) still nothing.
    assert block.stop() == 0
    assert files_containing(block, NEEDLES) == []
    assert files_containing(block, [block.master_key.read_text().strip().encode()]) == []
    block.start()
    check_plaintext(block, "secret")
    assert control_files  # noqa: the control proved the search above


def test_encrypted_snapshots_and_clones(block, tmp_path):
    block.create_volume("ev", 8 * MIB, encrypted=True)
    write_plaintext(block, "ev")
    s = block.snapshot("ev", "ev-snap")
    assert s["encrypted"] is True
    c = block.clone("ev-clone", "ev-snap", size=12 * MIB)
    assert c["encrypted"] is True
    check_plaintext(block, "ev-snap")
    check_plaintext(block, "ev-clone")
    qemu_io(block.uri("ev-clone"), "write -P 0x5a 9M 1M", "flush")
    qemu_io(block.uri("ev-clone"), "read -P 0x5a 9M 1M", read_only=True)
    # Whole-volume copies agree where they should.
    assert nbd_sha256(block.uri("ev"), tmp_path) == nbd_sha256(block.uri("ev-snap"), tmp_path)
    block.delete("ev")
    block.delete("ev-snap")
    check_plaintext(block, "ev-clone")
    assert files_containing(block, NEEDLES) == []
    block.kill()  # unflushed state is irrelevant here: everything above was flushed
    block.start()
    check_plaintext(block, "ev-clone")
    assert files_containing(block, NEEDLES) == []


def test_restart_with_the_master_key(block):
    block.create_volume("keyed", 8 * MIB, encrypted=True)
    write_plaintext(block, "keyed")
    key = block.master_key.read_bytes()
    block.restart()
    assert block.master_key.read_bytes() == key  # not regenerated
    check_plaintext(block, "keyed")
    # Another master key: the daemon either refuses to start or refuses the volume; it never
    # serves the plaintext (nor garbage as if it were the volume's data).
    assert block.stop() == 0
    block.master_key.write_text(os.urandom(32).hex() + "\n")
    block.master_key.chmod(0o600)
    started = True
    try:
        block.start()
    except (RuntimeError, TimeoutError, AssertionError):
        started = False
        block.expect_exit = True
    if started:
        p = run_tool(["nbdinfo", "--size", block.uri("keyed")], check=False)
        if p.returncode == 0:
            with nbdwire.Client("keyed", unix=block.socket) as c:
                with pytest.raises(nbdwire.NbdError):
                    c.read(MIB, 4096)
        # Unencrypted volumes are still served.
        block.create_volume("plain", MIB)
        qemu_io(block.uri("plain"), "write -P 1 0 4k")
        block.stop()
    # The right key brings it all back.
    block.master_key.write_bytes(key)
    block.start()
    check_plaintext(block, "keyed")


def test_master_key_file_must_be_private(block):
    assert block.stop() == 0
    block.master_key.chmod(0o644)
    with pytest.raises(RuntimeError):
        block.start()
    block.expect_exit = True
    assert "master key" in block.log_tail().lower()
    block.master_key.chmod(0o600)
    block.start()


def test_no_master_key_no_encrypted_volumes(start_block):
    d = start_block(master_key=False)
    status, doc, _ = d.request("POST", "/v1/volumes", {"name": "e", "size": MIB,
                                                        "encrypted": True})
    assert status == 400 and doc["error"]["code"] == 400 and doc["error"]["message"]
    assert "e" not in d.volumes()
    assert d.create_volume("p", MIB)["encrypted"] is False
