# SPDX-License-Identifier: Apache-2.0
"""The sov-block management API's refusals: bad names and sizes, unknown volumes, duplicate
names, malformed bodies, methods that do not exist, and the bearer token when one is
configured. Every error is {"error": {"code", "title", "message"}} with code = HTTP status, and
after each refusal nothing changed."""
import pytest

from conftest import MIB, raw_http


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
