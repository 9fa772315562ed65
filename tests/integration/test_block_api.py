# SPDX-License-Identifier: Apache-2.0
"""The sov-block management API's refusals: bad names and sizes, unknown volumes, duplicate
names, malformed bodies, methods that do not exist, and the bearer token when one is
configured. Every error is {"error": {"code", "title", "message"}} with code = HTTP status, and
after each refusal nothing changed. Imports from a source URL (served by a small HTTP server in
the test) land byte for byte, and fail cleanly: too large, unreachable, deleted or killed
mid-copy."""
import http.server
import os
import signal
import socket
import threading
import time

import pytest

from conftest import MIB, raw_http, run_tool


def check_error(status, doc, want):
    assert status == want, (status, doc)
    assert set(doc) == {"error"}
    err = doc["error"]
    assert err["code"] == want and err["title"] and err["message"], err


def test_health_and_metrics(block):
    status, _, r = block.request("GET", "/healthz")
    assert status == 200
    m = block.metrics()
    assert any(k.startswith("sov_block_") for k in m), sorted(m)[:20]


def test_bad_names(block):
    for name in ("", ".hidden", "a/b", "a b", "x" * 64, "ä", "a%2Fb", "..", "semi;colon",
                 "new\nline", None, 7, ["a"]):
        status, doc, _ = block.request("POST", "/v1/volumes", {"name": name, "size": MIB})
        check_error(status, doc, 400)
    # The longest allowed name and every allowed character.
    ok = "A" * 62 + "z"
    assert block.create_volume(ok, MIB)["name"] == ok
    assert block.create_volume("a-b_c.9", MIB)["name"] == "a-b_c.9"
    assert set(block.volumes()) == {ok, "a-b_c.9"}
    # Snapshot names follow the same rules.
    for name in ("", ".s", "s/t", "x" * 64):
        status, doc, _ = block.request("POST", f"/v1/volumes/{ok}/snapshots", {"name": name})
        check_error(status, doc, 400)
    assert set(block.volumes()) == {ok, "a-b_c.9"}


def test_bad_sizes(block):
    for size in (0, -512, 511, 513, 1000, 1.5, "1048576", None, True, 2 ** 63, 2 ** 64,
                 2 ** 70, 64 * 2 ** 40 + 512):
        status, doc, _ = block.request("POST", "/v1/volumes", {"name": "s", "size": size})
        check_error(status, doc, 400)
    status, doc, _ = block.request("POST", "/v1/volumes", {"name": "s"})
    check_error(status, doc, 400)
    assert block.volumes() == {}
    assert block.create_volume("s", 512)["size"] == 512
    # Thin: the largest size is accepted and costs nothing.
    assert block.create_volume("huge", 64 * 2 ** 40)["size"] == 64 * 2 ** 40
    assert block.du() < 16 * MIB


def test_unknown_volume_is_404(block):
    block.create_volume("known", MIB)
    for method, path, body in (("GET", "/v1/volumes/nope", None),
                               ("DELETE", "/v1/volumes/nope", None),
                               ("POST", "/v1/volumes/nope/resize", {"size": 2 * MIB}),
                               ("POST", "/v1/volumes/nope/snapshots", {"name": "s"}),
                               ("POST", "/v1/volumes/nope/grants", {"host": "127.0.0.1"}),
                               ("DELETE", "/v1/grants/0123456789abcdef0123456789abcdef", None),
                               ("GET", "/v1/volumes/" + "x" * 300, None)):
        status, doc, _ = block.request(method, path, body)
        check_error(status, doc, 404)
    # A clone of a snapshot that does not exist, and of a volume that is not a snapshot.
    status, doc, _ = block.request("POST", "/v1/volumes", {"name": "c",
                                                           "source_snapshot": "nope"})
    check_error(status, doc, 404)
    status, doc, _ = block.request("POST", "/v1/volumes", {"name": "c",
                                                           "source_snapshot": "known"})
    assert 400 <= status < 500 and doc["error"]["code"] == status
    status, doc, _ = block.request("GET", "/v1/nothing-here")
    check_error(status, doc, 404)
    assert set(block.volumes()) == {"known"}


def test_duplicates_are_409(block):
    block.create_volume("dup", MIB)
    block.snapshot("dup", "dup-snap")
    for body in ({"name": "dup", "size": 2 * MIB}, {"name": "dup-snap", "size": MIB},
                 {"name": "dup", "source_snapshot": "dup-snap"}):
        status, doc, _ = block.request("POST", "/v1/volumes", body)
        check_error(status, doc, 409)
    for name in ("dup", "dup-snap"):
        status, doc, _ = block.request("POST", "/v1/volumes/dup/snapshots", {"name": name})
        check_error(status, doc, 409)
    vols = block.volumes()
    assert set(vols) == {"dup", "dup-snap"} and vols["dup"]["size"] == MIB
    # A name freed by a delete can be taken again.
    block.create_volume("gone", MIB)
    block.delete("gone")
    assert block.create_volume("gone", 2 * MIB)["size"] == 2 * MIB


def test_malformed_bodies(block):
    for raw in (b"", b"{", b"[]", b"null", b'"x"', b'{"name": "a", "size": 512',
                b'{"name": "a", "size": 512, "name": "b"}', b"\xff\xfe",
                b'{"name": "a", "size": 512, "bogus": 1}', b'{"name": "a\\u0000b", "size": 512}'):
        status, doc, _ = block.request("POST", "/v1/volumes", raw=raw)
        check_error(status, doc, 400)
    status, doc, _ = block.request("POST", "/v1/volumes", {"name": "a", "size": 512,
                                                           "encrypted": "yes"})
    check_error(status, doc, 400)
    # An oversized body is refused by the HTTP layer, in the API's error format.
    status, doc, _ = block.request("POST", "/v1/volumes",
                                   raw=b'{"name": "' + b"a" * (8 * MIB) + b'", "size": 512}')
    assert status in (400, 413) and doc["error"]["code"] == status
    assert block.volumes() == {}


def test_methods_that_do_not_exist(block):
    for method, path in (("PUT", "/v1/volumes"), ("PATCH", "/v1/volumes/x"),
                         ("DELETE", "/v1/volumes"), ("GET", "/v1/volumes/x/resize")):
        status, doc, _ = block.request(method, path, raw=b"{}")
        assert status in (404, 405), (method, path, status)
        assert doc["error"]["code"] == status


def test_token_required_when_configured(start_block):
    d = start_block(token="s3cr3t-t0ken-for-tests")
    assert d.create_volume("t", MIB)["name"] == "t"  # helpers send the token
    for token in (False, "wrong", "s3cr3t-t0ken-for-test", "s3cr3t-t0ken-for-testsX"):
        for method, path, body in (("GET", "/v1/volumes", None),
                                   ("POST", "/v1/volumes", {"name": "u", "size": MIB}),
                                   ("GET", "/v1/volumes/t", None),
                                   ("DELETE", "/v1/volumes/t", None),
                                   ("POST", "/v1/volumes/t/grants", {"host": "127.0.0.1"}),
                                   ("GET", "/v1/grants", None)):
            status, doc, _ = d.request(method, path, body, token=token)
            check_error(status, doc, 401)
    # Other schemes and casing of the scheme name.
    r = raw_http(d.port, "GET", "/v1/volumes", {"Authorization": "Basic czNjcjN0"})
    assert r.status == 401
    r = raw_http(d.port, "GET", "/v1/volumes", {"Authorization": "bearer s3cr3t-t0ken-for-tests"})
    assert r.status == 200
    assert set(d.volumes()) == {"t"} and d.grants() == []


@pytest.mark.parametrize("host", ["not-an-ip", "", "127.0.0.1; rm -rf /", "x" * 100])
def test_bad_grants(block, host):
    block.create_volume("g", MIB)
    status, doc, _ = block.request("POST", "/v1/volumes/g/grants", {"host": host})
    check_error(status, doc, 400)
    status, doc, _ = block.request("POST", "/v1/volumes/g/grants", {})
    check_error(status, doc, 400)
    status, doc, _ = block.request("POST", "/v1/volumes/g/grants", {"token": False})
    check_error(status, doc, 400)
    assert block.grants() == []


def test_many_volumes_listed_in_order(block):
    names = [f"vol-{i:04d}" for i in range(300)]
    for n in reversed(names):
        block.create_volume(n, 512)
    block.snapshot("vol-0000", "snap-0000")
    listed = block.api("GET", "/v1/volumes")["volumes"]
    assert [v["name"] for v in listed] == sorted(names + ["snap-0000"])
    assert all(v["size"] == 512 and v["allocated"] == 0 for v in listed)


# ---- imports from a source URL ----

class SourceServer(http.server.ThreadingHTTPServer):
    """Serves self.files {path: bytes} on loopback. Range requests get 206 unless the path
    starts with /plain/ (then 200 and the whole file, as servers that ignore Range answer);
    /stall/... sends its headers and the first MiB, then waits for self.release."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), SourceHandler)
        self.files, self.ranges = {}, []
        self.release = threading.Event()
        self.stalled = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class SourceHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        plain, stall = path.startswith("/plain/"), path.startswith("/stall/")
        data = self.server.files.get("/" + path.split("/", 2)[2] if plain or stall else path)
        if data is None:
            self.send_error(404)
            return
        status, start, end = 200, 0, len(data) - 1
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        if rng and not plain:
            a, b = rng.removeprefix("bytes=").split("-")
            start, end = int(a), min(int(b), len(data) - 1)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if stall:
            self.wfile.write(body[:MIB])
            self.wfile.flush()
            self.server.stalled.set()
            self.server.release.wait(60)
            return
        self.wfile.write(body)


@pytest.fixture
def source():
    srv = SourceServer()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def wait_for(fn, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not (v := fn()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return v


def imported(block, name):
    """The volume once its import is over (completed or failed)."""
    def done():
        v = block.volume(name)
        return v if v.get("import", {}).get("state") in (None, "failed") else None
    return wait_for(done, f"import of {name}")


def read_export(block, name, tmp_path):
    out = tmp_path / f"{name}.raw"
    run_tool(["nbdcopy", block.uri(name), str(out)])
    data = out.read_bytes()
    out.unlink()
    return data


def test_import_from_url(block, source, tmp_path):
    # random data around a MiB of zeros, across two 8 MiB pieces, not a multiple of a sector
    data = os.urandom(4 * MIB) + bytes(MIB) + os.urandom(4 * MIB + 777)
    source.files["/img.raw"] = data
    status, doc, _ = block.request("POST", "/v1/volumes", {
        "name": "imp", "size": 16 * MIB, "source_url": source.url("/img.raw?x=1&y=%2F")})
    assert status == 202, doc
    assert doc["volume"]["import"]["state"] in ("importing", "flushing")
    v = imported(block, "imp")
    assert "import" not in v and v["size"] == 16 * MIB
    assert len([r for r in source.ranges if r]) >= 2  # ranged pieces
    assert v["allocated"] < len(data)  # the zeros were not written
    got = read_export(block, "imp", tmp_path)
    assert got[:len(data)] == data and got[len(data):] == bytes(16 * MIB - len(data))

    # a source that ignores Range is taken whole; encrypted volumes import too
    status, doc, _ = block.request("POST", "/v1/volumes", {
        "name": "imp2", "size": 10 * MIB, "encrypted": True,
        "source_url": source.url("/plain/img.raw")})
    assert status == 202, doc
    assert "import" not in imported(block, "imp2")
    assert read_export(block, "imp2", tmp_path)[:len(data)] == data
    # an empty source gives a volume of zeros; the volumes are ordinary afterwards
    source.files["/empty"] = b""
    block.request("POST", "/v1/volumes", {"name": "imp3", "size": MIB,
                                          "source_url": source.url("/empty")})
    assert "import" not in imported(block, "imp3")
    assert block.snapshot("imp", "imp-snap")["origin"] == "imp"
    assert block.resize("imp2", 20 * MIB)["size"] == 20 * MIB
    m = block.metrics()
    assert m['sov_block_imports_total{result="ok"}'] == 3


def test_import_refusals_and_failures(block, source):
    source.files["/two"] = os.urandom(2 * MIB)
    for url in ("https://127.0.0.1/x", "ftp://127.0.0.1/x", "http://", "http:///x",
                "http://a b/x", "http://h/x\r\nEvil: 1", "http://user@127.0.0.1/x",
                "http://h:0/x", "http://h:99999/x", "http://h:/x", "http://h:8a/x",
                "http://[::1/x", "http://h/x#frag", "http://h/" + "x" * 5000, 7, ["x"], True):
        status, doc, _ = block.request("POST", "/v1/volumes", {
            "name": "bad", "size": MIB, "source_url": url})
        check_error(status, doc, 400)
    block.create_volume("base", MIB)
    block.snapshot("base", "base-snap")
    status, doc, _ = block.request("POST", "/v1/volumes", {
        "name": "bad", "source_snapshot": "base-snap", "source_url": source.url("/two")})
    check_error(status, doc, 400)
    status, doc, _ = block.request("POST", "/v1/volumes", {
        "name": "base", "size": MIB, "source_url": source.url("/two")})
    check_error(status, doc, 409)
    assert set(block.volumes()) == {"base", "base-snap"}

    # failures keep the volume, with the reason, until it is deleted
    cases = {"big": (source.url("/two"), "larger than the volume"),
             "big-plain": (source.url("/plain/two"), "larger than the volume"),
             "missing": (source.url("/nope"), "HTTP 404"),
             "refused": (f"http://127.0.0.1:{free_port()}/x", "reading the source failed")}
    for name, (url, _) in cases.items():
        status, doc, _ = block.request("POST", "/v1/volumes",
                                       {"name": name, "size": MIB, "source_url": url})
        assert status == 202, doc
    for name, (_, why) in cases.items():
        imp = imported(block, name)["import"]
        assert imp["state"] == "failed" and why in imp["error"], (name, imp)
    # a failed import is not a usable volume
    for method, path, body in (("POST", "/v1/volumes/big/snapshots", {"name": "s"}),
                               ("POST", "/v1/volumes/big/resize", {"size": 2 * MIB}),
                               ("POST", "/v1/volumes/big/grants", {"host": "127.0.0.1"})):
        status, doc, _ = block.request(method, path, body)
        check_error(status, doc, 409)
    for name in cases:
        block.delete(name)
    assert set(block.volumes()) == {"base", "base-snap"} and block.grants() == []
    assert block.metrics()['sov_block_imports_total{result="failed"}'] == len(cases)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_import_deleted_or_killed_mid_copy(block, source, tmp_path):
    source.files["/slow"] = os.urandom(3 * MIB)
    status, doc, _ = block.request("POST", "/v1/volumes", {
        "name": "slow", "size": 4 * MIB, "source_url": source.url("/stall/slow")})
    assert status == 202
    assert source.stalled.wait(30)
    wait_for(lambda: block.volume("slow")["import"]["bytes"] == MIB, "the first MiB")
    # deleted while the GET is in flight: gone at once, the name free again
    block.delete("slow")
    assert "slow" not in block.volumes()
    source.release.set()
    block.create_volume("slow", MIB)
    block.delete("slow")

    # killed mid-copy: the next start deletes the half-copied volume
    source.release.clear()
    source.stalled.clear()
    block.request("POST", "/v1/volumes", {"name": "torn", "size": 4 * MIB,
                                          "source_url": source.url("/stall/slow")})
    assert source.stalled.wait(30)
    wait_for(lambda: block.volume("torn")["import"]["bytes"] == MIB, "the first MiB")
    block.kill()
    source.release.set()
    block.start()
    assert "torn" not in block.volumes()
    assert "did not complete" in block.log.read_text()
    # a clean stop during an import waits for the GET in flight (here until the source gives
    # up), keeps nothing half-copied and exits 0
    source.release.clear()
    block.request("POST", "/v1/volumes", {"name": "torn", "size": 4 * MIB,
                                          "source_url": source.url("/stall/slow")})
    wait_for(lambda: block.volume("torn")["import"]["bytes"] == MIB, "the first MiB")
    block.expect_exit = True
    block.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining" in block.log.read_text().split("--- start")[-1], "the stop")
    source.release.set()
    assert block.proc.wait(timeout=30) == 0
    block.start()
    assert "torn" not in block.volumes()
