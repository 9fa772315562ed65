# SPDX-License-Identifier: Apache-2.0
"""sov-block's volume engine seen from outside: thin provisioning (the API's `allocated` and the
data dir's real disk use grow only with writes), snapshots (frozen, read-only exports), clones
(share a snapshot's data, diverge independently, outlive their snapshot and its volume), online
resize under an open connection, and everything surviving a restart."""
import time

import pytest

from conftest import MIB, ApiError, nbd_map, qemu_io, run_tool
import nbdwire

CLUSTER = 64 * 1024


def test_thin_provisioning(block):
    base = block.du()
    v = block.create_volume("thin", 1024 * MIB)
    assert (v["size"], v["allocated"], v["encrypted"], v["snapshot"]) == \
        (1024 * MIB, 0, False, False)
    assert v["origin"] in ("", None)
    assert block.du() - base < 4 * MIB, "creating a 1 GiB volume allocated its space"
    qemu_io(block.uri("thin"), "write -P 0x5 512M 1M", "flush")
    assert block.volume("thin")["allocated"] == MIB
    grown = block.du() - base
    assert MIB <= grown < 8 * MIB, grown
    # Rewriting the same range allocates nothing new; a 1-byte write takes one cluster.
    qemu_io(block.uri("thin"), "write -P 0x6 512M 1M", "write -P 0x7 100M 1", "flush")
    assert block.volume("thin")["allocated"] == MIB + CLUSTER
    # Reading holes allocates nothing.
    qemu_io(block.uri("thin"), "read -P 0 0 16M", read_only=True)
    assert block.volume("thin")["allocated"] == MIB + CLUSTER
    # Discarding whole clusters gives them back.
    qemu_io(block.uri("thin"), "discard 512M 1M", "flush")
    assert block.volume("thin")["allocated"] == CLUSTER
    listed = block.volumes()["thin"]
    assert listed["allocated"] == CLUSTER and listed["size"] == 1024 * MIB


def test_snapshot_is_frozen_and_read_only(block):
    block.create_volume("vol", 8 * MIB)
    uri = block.uri("vol")
    qemu_io(uri, "write -P 0xa1 0 2M", "flush")
    s = block.snapshot("vol", "snap1")
    assert s["name"] == "snap1" and s["snapshot"] is True and s["origin"] == "vol"
    assert s["size"] == 8 * MIB
    assert s["uri_unix"] == f"nbd+unix:///snap1?socket={block.socket}"
    qemu_io(uri, "write -P 0xb2 1M 2M", "flush")
    qemu_io(block.uri("snap1"), "read -P 0xa1 0 2M", "read -P 0 2M 6M", read_only=True)
    qemu_io(uri, "read -P 0xa1 0 1M", "read -P 0xb2 1M 2M", read_only=True)
    # Writing to the snapshot fails whichever way it is tried.
    p = qemu_io(block.uri("snap1"), "write -P 0xff 0 4k", check=False)
    assert p.returncode != 0
    with nbdwire.Client("snap1", unix=block.socket) as c:
        assert c.read_only
        with pytest.raises(nbdwire.NbdError) as e:
            c.write(0, b"\xff" * 4096)
        assert e.value.code == nbdwire.EPERM
        with pytest.raises(nbdwire.NbdError):
            c.trim(0, CLUSTER)
        with pytest.raises(nbdwire.NbdError):
            c.write_zeroes(0, CLUSTER)
        assert c.read(0, 4096) == b"\xa1" * 4096
    info = run_tool(["nbdinfo", "--json", block.uri("snap1")]).stdout
    assert '"is_read_only": true' in info
    # The snapshot's map shows the data it froze.
    assert [(o, n) for o, n, t in nbd_map(block.uri("snap1")) if t & 1 == 0] == [(0, 2 * MIB)]
    # A snapshot of a snapshot is not a thing; a second snapshot of the volume is.
    status, doc, _ = block.request("POST", "/v1/volumes/snap1/snapshots", {"name": "s2"})
    assert 400 <= status < 500 and doc["error"]["code"] == status
    s2 = block.snapshot("vol", "snap2")
    qemu_io(block.uri("snap2"), "read -P 0xa1 0 1M", "read -P 0xb2 1M 2M", read_only=True)
    assert s2["origin"] == "vol"


def test_clones_share_then_diverge_and_outlive_their_parents(block, tmp_path):
    block.create_volume("parent", 8 * MIB)
    qemu_io(block.uri("parent"), "write -P 0x10 0 4M", "flush")
    block.snapshot("parent", "golden")
    c1 = block.clone("clone1", "golden")
    assert (c1["size"], c1["snapshot"], c1["origin"], c1["allocated"]) == \
        (8 * MIB, False, "golden", 0)
    c2 = block.clone("clone2", "golden", size=16 * MIB)
    assert c2["size"] == 16 * MIB
    qemu_io(block.uri("clone1"), "read -P 0x10 0 4M", "read -P 0 4M 4M", read_only=True)
    qemu_io(block.uri("clone2"), "read -P 0x10 0 4M", "read -P 0 4M 12M", read_only=True)
    # Independent writes.
    qemu_io(block.uri("clone1"), "write -P 0x21 0 1M", "flush")
    qemu_io(block.uri("clone2"), "write -P 0x22 512k 1M", "write -P 0x23 12M 1M", "flush")
    qemu_io(block.uri("parent"), "write -P 0x11 3M 1M", "flush")
    assert block.volume("clone1")["allocated"] == MIB
    qemu_io(block.uri("clone1"), "read -P 0x21 0 1M", "read -P 0x10 1M 3M", read_only=True)
    qemu_io(block.uri("clone2"), "read -P 0x10 0 512k", "read -P 0x22 512k 1M",
            "read -P 0x10 1536k 2560k", "read -P 0x23 12M 1M", read_only=True)
    qemu_io(block.uri("golden"), "read -P 0x10 0 4M", read_only=True)
    qemu_io(block.uri("parent"), "read -P 0x10 0 3M", "read -P 0x11 3M 1M", read_only=True)
    # A clone's map shows the shared data as data, not holes.
    data = [(o, n) for o, n, t in nbd_map(block.uri("clone1")) if t & 1 == 0]
    assert sum(n for _, n in data) == 4 * MIB
    # Clone of a clone's snapshot: three levels deep.
    block.snapshot("clone1", "c1snap")
    block.clone("grandchild", "c1snap")
    qemu_io(block.uri("grandchild"), "read -P 0x21 0 1M", "read -P 0x10 1M 3M", read_only=True)

    # Parent volume, then its snapshot, go away; the clones keep every byte.
    block.delete("parent")
    block.delete("golden")
    assert "parent" not in block.volumes() and "golden" not in block.volumes()
    assert run_tool(["nbdinfo", "--size", block.uri("golden")], check=False).returncode != 0
    qemu_io(block.uri("clone1"), "read -P 0x21 0 1M", "read -P 0x10 1M 3M", read_only=True)
    qemu_io(block.uri("clone2"), "read -P 0x10 0 512k", "read -P 0x22 512k 1M",
            "read -P 0x10 1536k 2560k", "read -P 0x23 12M 1M", read_only=True)
    block.delete("clone1")  # its snapshot c1snap and grandchild still need its data
    qemu_io(block.uri("c1snap"), "read -P 0x21 0 1M", "read -P 0x10 1M 3M", read_only=True)
    # After a restart all of it still reads back.
    block.restart()
    qemu_io(block.uri("clone2"), "read -P 0x10 0 512k", "read -P 0x22 512k 1M",
            "read -P 0x10 1536k 2560k", "read -P 0x23 12M 1M", read_only=True)
    qemu_io(block.uri("grandchild"), "read -P 0x21 0 1M", "read -P 0x10 1M 3M", read_only=True)
    # Deleting the rest frees the data dir's space.
    held = block.du()
    for name in ("grandchild", "c1snap", "clone2"):
        block.delete(name)
    assert block.volumes() == {}
    assert block.du() < held - 4 * MIB, (held, block.du())


def wait_deletable(block, name, attempts=200):
    """DELETE until it stops answering 409: an NBD client's close reaches the daemon
    asynchronously. Bounded; returns the last status."""
    for _ in range(attempts):
        status, _, _ = block.request("DELETE", f"/v1/volumes/{name}")
        if status != 409:
            return status
        time.sleep(0.05)
    return status


def test_delete_of_an_open_volume_is_refused(block):
    block.create_volume("busy", MIB)
    c = nbdwire.Client("busy", unix=block.socket)
    status, doc, _ = block.request("DELETE", "/v1/volumes/busy")
    assert status == 409 and doc["error"]["code"] == 409 and doc["error"]["message"]
    c.write(0, b"still here" * 50, fua=True)
    assert c.read(0, 500) == b"still here" * 50
    c.close()
    assert wait_deletable(block, "busy") == 204
    assert "busy" not in block.volumes()
    # An open snapshot is busy too.
    block.create_volume("v", MIB)
    block.snapshot("v", "vs")
    c = nbdwire.Client("vs", unix=block.socket)
    status, _, _ = block.request("DELETE", "/v1/volumes/vs")
    assert status == 409
    c.close()
    assert wait_deletable(block, "vs") == 204


def test_online_resize_while_connected(block):
    block.create_volume("grow", 8 * MIB)
    old = nbdwire.Client("grow", unix=block.socket)
    assert old.size == 8 * MIB
    old.write(0, b"A" * 65536)
    v = block.resize("grow", 24 * MIB)
    assert v["size"] == 24 * MIB
    # The open connection keeps working on what it knows.
    old.write(65536, b"B" * 65536, fua=True)
    assert old.read(0, 131072) == b"A" * 65536 + b"B" * 65536
    # A new connection sees the new size, and the new space is zeros then writable.
    new = nbdwire.Client("grow", unix=block.socket)
    assert new.size == 24 * MIB
    assert new.read(20 * MIB, 4096) == bytes(4096)
    new.write(24 * MIB - 4096, b"C" * 4096, fua=True)
    assert new.read(24 * MIB - 4096, 4096) == b"C" * 4096
    with pytest.raises(nbdwire.NbdError):
        new.read(24 * MIB, 512)
    assert run_tool(["nbdinfo", "--size", block.uri("grow")]).stdout.strip() == str(24 * MIB)
    qemu_io(block.uri("grow"), "read -P 0x41 0 64k", "read -P 0x42 64k 64k",
            "read -P 0x43 24572k 4k", read_only=True)
    old.close()
    new.close()
    # Shrinking, odd sizes and resizing a snapshot are refused and change nothing.
    block.snapshot("grow", "grow-s")
    for body in ({"size": 8 * MIB}, {"size": 24 * MIB + 100}, {"size": 0}, {"size": "32M"},
                 {}):
        status, doc, _ = block.request("POST", "/v1/volumes/grow/resize", body)
        assert status == 400, (body, status)
        assert doc["error"]["code"] == 400
    status, _, _ = block.request("POST", "/v1/volumes/grow-s/resize", {"size": 32 * MIB})
    assert 400 <= status < 500
    assert block.volume("grow-s")["size"] == 24 * MIB
    assert block.volume("grow")["size"] == 24 * MIB
    block.restart()
    assert block.volume("grow")["size"] == 24 * MIB
    qemu_io(block.uri("grow"), "read -P 0x43 24572k 4k", read_only=True)


def test_volumes_survive_restart(block):
    block.create_volume("p1", 4 * MIB)
    qemu_io(block.uri("p1"), "write -P 0x99 1M 1M", "flush")
    block.snapshot("p1", "p1s")
    block.clone("p1c", "p1s")
    before = block.volumes()
    assert block.stop() == 0
    block.start()
    after = block.volumes()
    assert set(after) == {"p1", "p1s", "p1c"}
    for name in after:
        b, a = dict(before[name]), dict(after[name])
        for k in ("uri_tcp",):  # the TCP port is picked anew at each start
            b.pop(k), a.pop(k)
        assert a == b, name
    qemu_io(block.uri("p1c"), "read -P 0x99 1M 1M", "read -P 0 2M 2M", read_only=True)
    with pytest.raises(ApiError) as e:
        block.create_volume("p1s", MIB)
    assert e.value.status == 409


def test_snapshot_under_an_open_connection(block):
    """A snapshot holds every write acknowledged before it, flushed or not, and none after,
    while the writer's connection stays open across it and goes on writing to the volume."""
    block.create_volume("live", 4 * MIB)
    w = nbdwire.Client("live", unix=block.socket)
    w.write(0, b"1" * 100_000)
    w.flush()
    w.write(50_000, b"2" * 100_000)  # acknowledged, not flushed
    block.snapshot("live", "live-s1")
    w.write(0, b"3" * 200_000)
    w.write(3 * MIB, b"4" * 4096)
    block.snapshot("live", "live-s2")
    w.write(100_000, b"5" * 10)
    with nbdwire.Client("live-s1", unix=block.socket) as s1:
        assert s1.read(0, 150_000) == b"1" * 50_000 + b"2" * 100_000
        assert s1.read(150_000, 4096) == bytes(4096)
        assert s1.read(3 * MIB, 4096) == bytes(4096)
    with nbdwire.Client("live-s2", unix=block.socket) as s2:
        assert s2.read(0, 200_000) == b"3" * 200_000
        assert s2.read(3 * MIB, 4096) == b"4" * 4096
    assert w.read(99_998, 14) == b"33" + b"5" * 10 + b"33"
    # A second connection opened now sees the same as the writer.
    with nbdwire.Client("live", unix=block.socket) as r:
        assert r.read(0, 200_000) == w.read(0, 200_000)
    w.close()
