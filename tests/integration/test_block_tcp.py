# SPDX-License-Identifier: Apache-2.0
"""NBD over TCP and export grants: over TCP an export is served only to a host it was granted
to, or to anyone who names it "<volume>/<token>" with a token grant's secret. Checked with
nbdinfo, qemu-io and fio as clients, and with the protocol client for the refusals' shape;
grants survive a restart and a revoked grant stops new connections."""
import json

import pytest

from conftest import MIB, qemu_io, run_tool
import nbdwire


def refused(uri):
    """nbdinfo cannot open the export."""
    return run_tool(["nbdinfo", "--size", uri], check=False, timeout=20).returncode != 0


def test_ungranted_host_is_refused_then_granted(block):
    v = block.create_volume("tv", 8 * MIB)
    assert v["uri_tcp"] == f"nbd://127.0.0.1:{block.nbd_port}/tv"
    assert v["uri_unix"] == f"nbd+unix:///tv?socket={block.socket}"
    uri = block.tcp_uri("tv")
    assert refused(uri)
    with pytest.raises(nbdwire.NbdError) as e:
        nbdwire.Client("tv", tcp=("127.0.0.1", block.nbd_port))
    assert e.value.code & nbdwire.REP_ERR
    # A grant to another host does not let 127.0.0.1 in.
    block.grant("tv", host="10.20.30.40")
    assert refused(uri)
    g = block.grant("tv", host="127.0.0.1")
    assert g["volume"] == "tv" and g["host"] == "127.0.0.1" and g["id"]
    assert run_tool(["nbdinfo", "--size", uri]).stdout.strip() == str(8 * MIB)
    qemu_io(uri, "write -P 0x3c 0 1M", "flush")
    qemu_io(uri, "read -P 0x3c 0 1M", read_only=True)
    qemu_io(block.uri("tv"), "read -P 0x3c 0 1M", read_only=True)  # same bytes over Unix
    # The grant is for tv only.
    block.create_volume("other", MIB)
    assert refused(block.tcp_uri("other"))
    assert {x["id"] for x in block.grants()} >= {g["id"]}


def test_tcp_list_shows_only_granted_exports(block):
    block.create_volume("seen", MIB)
    block.create_volume("hidden", MIB)
    block.grant("seen", host="127.0.0.1")
    tcp = json.loads(run_tool(["nbdinfo", "--list", "--json",
                               f"nbd://127.0.0.1:{block.nbd_port}/"]).stdout)
    names = {e["export-name"] for e in tcp["exports"]}
    assert "seen" in names and "hidden" not in names
    unix = nbdwire.list_exports(unix=block.socket)
    assert {"seen", "hidden"} <= set(unix)


def test_token_export(block):
    block.create_volume("tok", 16 * MIB)
    block.create_volume("tok2", MIB)
    g = block.grant("tok", token=True)
    export = g["export"]
    volume, _, secret = export.partition("/")
    assert volume == "tok" and len(secret) >= 32
    assert refused(block.tcp_uri("tok"))  # the plain name stays closed
    uri = block.tcp_uri(export)
    assert run_tool(["nbdinfo", "--size", uri]).stdout.strip() == str(16 * MIB)
    qemu_io(uri, "write -P 0x77 4M 1M", "flush")
    qemu_io(block.uri("tok"), "read -P 0x77 4M 1M", read_only=True)
    p = run_tool(["fio", "--name=tok", "--ioengine=nbd", f"--uri={uri}", "--rw=randrw",
                  "--bs=4k", "--size=4m", "--iodepth=8", "--verify=crc32c",
                  "--verify_fatal=1", "--verify_state_save=0", "--output-format=json"], timeout=300)
    assert json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]["error"] == 0
    # Wrong secrets, a secret for another volume, and an empty one are refused.
    for bad in (f"tok/{secret[:-1]}", f"tok/{secret}0", f"tok/{'0' * len(secret)}",
                f"tok2/{secret}", "tok/", f"/{secret}", f"tok/{secret}/x"):
        with pytest.raises(nbdwire.NbdError):
            nbdwire.Client(bad, tcp=("127.0.0.1", block.nbd_port))


def test_revoked_grant_is_refused_and_grants_persist(block):
    block.create_volume("rv", MIB)
    host = block.grant("rv", host="127.0.0.1")
    tok = block.grant("rv", token=True)
    assert not refused(block.tcp_uri("rv"))
    assert not refused(block.tcp_uri(tok["export"]))
    block.revoke(host["id"])
    assert refused(block.tcp_uri("rv"))
    assert not refused(block.tcp_uri(tok["export"]))
    # Grants are stored: after a restart the token still works and the revoked one is gone.
    block.restart()
    assert [g["id"] for g in block.grants()] == [tok["id"]]
    assert refused(block.tcp_uri("rv"))
    assert not refused(block.tcp_uri(tok["export"]))
    block.revoke(tok["id"])
    assert refused(block.tcp_uri(tok["export"]))
    assert block.grants() == []
    status, doc, _ = block.request("DELETE", f"/v1/grants/{tok['id']}")
    assert status == 404 and doc["error"]["code"] == 404


def test_unix_socket_without_unix_open_needs_a_token(start_block):
    d = start_block(unix_open=False)
    d.create_volume("u", MIB)
    with pytest.raises(nbdwire.NbdError):
        nbdwire.Client("u", unix=d.socket)
    g = d.grant("u", token=True)
    with nbdwire.Client(g["export"], unix=d.socket) as c:
        assert c.size == MIB
        c.write(0, b"u" * 4096, fua=True)
        assert c.read(0, 4096) == b"u" * 4096


def test_no_tcp_listener_when_disabled(start_block):
    d = start_block(tcp=False)
    v = d.create_volume("only-unix", MIB)
    assert run_tool(["nbdinfo", "--size", d.uri("only-unix")]).stdout.strip() == str(MIB)
    assert not v.get("uri_tcp"), v
