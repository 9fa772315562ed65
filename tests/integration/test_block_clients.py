# SPDX-License-Identifier: Apache-2.0
"""sov-block through the NBD clients people use, over the Unix socket: nbdinfo (size, export
list, allocation map), qemu-io (patterns, discard, write zeroes, flush), qemu-img (info,
convert both ways, compare), nbdcopy, and fio's nbd engine under random read/write load with
CRC-32C verification. Each test checks the bytes, not just exit codes, and the allocation map
against what was written."""
import hashlib
import json
import os
import re

from conftest import MIB, nbd_map, nbd_sha256, qemu_io, run_tool
import nbdwire


def test_nbdinfo_size_list_and_flags(block):
    block.create_volume("alpha", 64 * MIB)
    block.create_volume("beta", 3 * MIB + 512)
    assert run_tool(["nbdinfo", "--size", block.uri("alpha")]).stdout.strip() == str(64 * MIB)
    assert run_tool(["nbdinfo", "--size", block.uri("beta")]).stdout.strip() == \
        str(3 * MIB + 512)
    listed = json.loads(run_tool(["nbdinfo", "--list", "--json",
                                  f"nbd+unix:///?socket={block.socket}"]).stdout)
    names = {e["export-name"]: e for e in listed["exports"]}
    assert {"alpha", "beta"} <= set(names)
    assert names["alpha"]["export-size"] == 64 * MIB
    info = json.loads(run_tool(["nbdinfo", "--json", block.uri("alpha")]).stdout)
    assert info["protocol"] == "newstyle-fixed" and info["structured"] is True
    exp = info["exports"][0]
    assert "base:allocation" in exp["contexts"]
    for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"):
        assert exp[flag] is True, flag
    assert exp["is_read_only"] is False
    # An export that does not exist is refused in the handshake.
    p = run_tool(["nbdinfo", "--size", block.uri("gamma")], check=False)
    assert p.returncode != 0


def test_nbdinfo_map_shows_holes_and_data(block):
    block.create_volume("sparse", 16 * MIB)
    uri = block.uri("sparse")
    assert nbd_map(uri) == [(0, 16 * MIB, 3)]
    qemu_io(uri, "write -P 0x11 1M 1M", "write -P 0x22 8M 64k", "flush")
    assert nbd_map(uri) == [(0, 1 * MIB, 3), (1 * MIB, 1 * MIB, 0), (2 * MIB, 6 * MIB, 3),
                            (8 * MIB, 64 * 1024, 0), (8 * MIB + 64 * 1024, 8 * MIB - 64 * 1024, 3)]
    # A discard of a whole written range makes it a hole again.
    qemu_io(uri, "discard 1M 1M")
    m = nbd_map(uri)
    data = [(o, n) for o, n, t in m if t & 1 == 0]
    assert data == [(8 * MIB, 64 * 1024)], m
    # Extents tile the export.
    assert sum(n for _, n, _ in m) == 16 * MIB


def test_qemu_io_patterns_discard_zero_flush(block):
    block.create_volume("qio", 8 * MIB)
    uri = block.uri("qio")
    qemu_io(uri, "write -P 0xab 0 2M", "write -P 0xcd 2M 512", "write -P 0xef 3000 1000",
            "flush")
    qemu_io(uri, "read -P 0xab 0 3000", "read -P 0xef 3000 1000", "read -P 0xab 4000 2093152",
            "read -P 0xcd 2M 512", "read -P 0 2097664 1M", read_only=True)
    # Write zeroes (in the middle of data), and a FUA write.
    qemu_io(uri, "write -z 64k 128k", "write -f -P 0x42 7M 4k")
    qemu_io(uri, "read -P 0xab 4000 61536", "read -P 0 64k 128k", "read -P 0xab 192k 64k",
            "read -P 0x42 7M 4k", read_only=True)
    # Discard of whole clusters reads back as zeros; neighbours keep their data.
    qemu_io(uri, "discard 1M 512k", "flush")
    qemu_io(uri, "read -P 0xab 960k 64k", "read -P 0 1M 512k", "read -P 0xab 1536k 512k",
            read_only=True)
    # Reads past the end fail without harming the connection or the daemon.
    p = qemu_io(uri, "read 8M 512", check=False)
    assert p.returncode != 0
    qemu_io(uri, "read -P 0x42 7M 4k", read_only=True)


def test_qemu_img_convert_both_ways_and_compare(block, tmp_path):
    size = 12 * MIB
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:  # data, a hole, more data, unaligned tail data
        f.write(os.urandom(3 * MIB))
        f.seek(6 * MIB)
        f.write(os.urandom(2 * MIB + 1536))
        f.truncate(size)
    block.create_volume("img", size)
    uri = block.uri("img")
    info = json.loads(run_tool(["qemu-img", "info", "--output=json", uri]).stdout)
    assert info["virtual-size"] == size
    run_tool(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri])
    run_tool(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri])
    back = tmp_path / "back.raw"
    run_tool(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, str(back)])
    assert back.stat().st_size == size
    assert hashlib.sha256(back.read_bytes()).hexdigest() == \
        hashlib.sha256(src.read_bytes()).hexdigest()
    # compare notices a one-byte difference.
    qemu_io(uri, "write -P 0x01 9M 1")
    p = run_tool(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri], check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "differ" in p.stdout.lower() or "mismatch" in p.stdout.lower()
    # The converted hole stayed a hole (qemu-img writes zeros sparsely).
    holes = [(o, n) for o, n, t in nbd_map(uri) if t & 1]
    assert any(o <= 3 * MIB and o + n >= 6 * MIB for o, n in holes), holes


def test_nbdcopy_file_to_volume_to_volume(block, tmp_path):
    size = 20 * MIB
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(size))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    block.create_volume("c1", size)
    block.create_volume("c2", size)
    run_tool(["nbdcopy", "--flush", str(src), block.uri("c1")])
    run_tool(["nbdcopy", "--flush", "--connections=4", "--requests=16", block.uri("c1"),
              block.uri("c2")])
    assert nbd_sha256(block.uri("c1"), tmp_path) == want
    assert nbd_sha256(block.uri("c2"), tmp_path) == want
    # nbdcopy to stdout as well (one stream, in order).
    p = run_tool(["nbdcopy", block.uri("c2"), "-"], text=False)
    assert hashlib.sha256(p.stdout).hexdigest() == want


def test_fio_randrw_crc32c_verify(block):
    block.create_volume("fio", 32 * MIB)
    uri = block.uri("fio")
    p = run_tool(["fio", "--name=randrw", "--ioengine=nbd", f"--uri={uri}", "--rw=randrw",
                  "--bs=4k", "--size=32m", "--io_size=16m", "--iodepth=16",
                  "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", "--do_verify=1",
                  "--output-format=json"], timeout=300)
    res = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
    assert res["error"] == 0
    assert res["write"]["io_bytes"] > 0 and res["read"]["io_bytes"] > 0
    # Several jobs, each its own NBD connection (multi-conn), block sizes from 512 B to 64 KiB.
    p = run_tool(["fio", "--name=multi", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite",
                  "--bsrange=512-64k", "--size=8m", "--numjobs=3", "--offset_increment=8m",
                  "--iodepth=8", "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
                  "--output-format=json"], timeout=300)
    for job in json.loads(p.stdout[p.stdout.index("{"):])["jobs"]:
        assert job["error"] == 0


def test_multi_conn_flush_makes_writes_visible(block):
    block.create_volume("mc", 4 * MIB)
    a = nbdwire.Client("mc", unix=block.socket)
    b = nbdwire.Client("mc", unix=block.socket)
    assert a.flags & nbdwire.TF_CAN_MULTI_CONN
    data = os.urandom(128 * 1024)
    a.write(100_000, data)
    a.flush()
    assert b.read(100_000, len(data)) == data
    b.write(0, b"x" * 512, fua=True)
    assert a.read(0, 512) == b"x" * 512
    a.close()
    b.close()


def test_metrics_count_nbd_requests(block):
    block.create_volume("m", 4 * MIB)
    before = block.metrics()
    qemu_io(block.uri("m"), "write -P 1 0 1M", "flush", "read 0 1M")
    after = block.metrics()

    def total(m, pattern):
        return sum(v for k, v in m.items() if re.search(pattern, k, re.I))

    for cmd in ("write", "read", "flush"):
        pat = r'^sov_block_nbd_requests_total\{.*cmd="' + cmd + '"'
        assert total(after, pat) > total(before, pat), (cmd, after)
    assert total(after, r"^sov_block_read_bytes_total") - \
        total(before, r"^sov_block_read_bytes_total") >= MIB
