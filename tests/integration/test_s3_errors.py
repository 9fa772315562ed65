# SPDX-License-Identifier: Apache-2.0
"""sov-s3 errors and hostile input: the XML error document and request ids, errors the HTTP
core finds itself (answered in S3's format), oversized headers and URLs, unicode and dot-dot
keys, the 1024-byte key limit. After each refusal the test checks that nothing changed and the
daemon still serves."""
import socket
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from conftest import etag_of, list_all_keys, s3_error, sigv4_sign


def send_raw(port, raw):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before reading everything
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    return data


def check_error_reply(data):
    """A refusal found by the HTTP core is still an S3 error document with its request id."""
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    root = ET.fromstring(body)
    assert root.tag == "Error" and root.findtext("Code") and root.findtext("Message")
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    return root.findtext("Code")


def snapshot(c):
    """Every bucket with every key and ETag."""
    return {b["Name"]: {o["Key"]: o["ETag"] for page in
                        c.get_paginator("list_objects_v2").paginate(Bucket=b["Name"])
                        for o in page.get("Contents", [])}
            for b in c.list_buckets()["Buckets"]}


def files_outside(tmp, data_dir):
    return sorted(p for p in tmp.rglob("*") if data_dir not in p.parents and p != data_dir)


def test_error_document_and_request_ids(s3):
    c = s3.client()
    c.create_bucket(Bucket="errs")
    r = s3.request("GET", "/nosuchbucket", "list-type=2")
    assert r.status == 404
    assert r.headers["Content-Type"].startswith("application/xml")
    root = r.xml()
    assert root.tag == "Error"
    assert root.findtext("Code") == "NoSuchBucket"
    assert root.findtext("Message")
    assert root.findtext("RequestId") == r.headers["x-amz-request-id"]
    r2 = s3.request("GET", "/errs/missing/key")
    assert (r2.status, r2.code) == (404, "NoSuchKey")
    assert r2.xml().findtext("Key") == "missing/key"
    assert r2.headers["x-amz-request-id"] != r.headers["x-amz-request-id"]
    # Success and HEAD answers carry a request id too; a HEAD error has no body.
    ok = s3.request("GET", "/errs", "list-type=2")
    assert ok.status == 200 and ok.headers["x-amz-request-id"]
    h = s3.request("HEAD", "/errs/missing")
    assert h.status == 404 and h.body == b"" and h.headers["x-amz-request-id"]
    # boto3 sees the same fields.
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="errs", Key="nope")
    assert s3_error(e) == ("NoSuchKey", 404)
    assert e.value.response["ResponseMetadata"]["RequestId"]
    # A method S3 does not have on this resource.
    r = s3.request("PATCH", "/errs/x")
    assert r.status in (405, 501) and r.code in ("MethodNotAllowed", "NotImplemented"), r
    assert r.xml().findtext("RequestId")


def test_huge_headers_and_urls_are_refused_and_daemon_lives(s3):
    c = s3.client()
    c.create_bucket(Bucket="hostile")
    c.put_object(Bucket="hostile", Key="k", Body=b"v")
    before = snapshot(c)
    cases = [
        b"GET /hostile/k HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"PUT /hostile/new HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\nz",
        b"GET /hostile/" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /hostile/k HTTP/1.1\r\nHost: x\r\nRange: bytes=" + b"0-1," * 50_000 + b"\r\n\r\n",
    ]
    for raw in cases:
        data = send_raw(s3.port, raw)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
        assert status in (400, 414, 431), (raw[:50], data[:200])
        check_error_reply(data)
        assert s3.alive()
    # A body larger than S3 allows is refused from its Content-Length alone.
    data = send_raw(s3.port, b"PUT /hostile/huge HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 999999999999999\r\n\r\n")
    assert data.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), data[:100]
    assert check_error_reply(data) == "EntityTooLarge"
    assert snapshot(c) == before
    assert c.get_object(Bucket="hostile", Key="k")["Body"].read() == b"v"


def test_hostile_ranges_and_garbage(s3):
    c = s3.client()
    c.create_bucket(Bucket="ranges")
    c.put_object(Bucket="ranges", Key="k", Body=b"0123456789")
    for rng in ("bytes=99999999999999999999999999-", "bytes=-99999999999999999999999",
                "bytes=0-99999999999999999999999999"):
        r = s3.request("GET", "/ranges/k", headers={"Range": rng}, signed_extra=("range",))
        # Never a wrong slice: the whole object, a clamped slice, or a refusal.
        assert (r.status, r.body) in ((200, b"0123456789"), (206, b"0123456789")) or \
            r.status in (400, 416), (rng, r)
    for garbage in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nHost\r\n\r\n"):
        data = send_raw(s3.port, garbage)
        assert data.startswith(b"HTTP/1.1 400"), (garbage, data[:100])
        check_error_reply(data)
    assert c.get_object(Bucket="ranges", Key="k", Range="bytes=2-3")["Body"].read() == b"23"


def test_truncated_upload_stores_nothing(s3):
    """A client that promises more bytes than it sends and hangs up: with UNSIGNED-PAYLOAD
    nothing but the length can catch it, and no shortened object may appear."""
    c = s3.client()
    c.create_bucket(Bucket="trunc")
    c.put_object(Bucket="trunc", Key="old", Body=b"previous")
    for key in ("new", "old"):
        path = f"/trunc/{key}"
        h = sigv4_sign("PUT", s3.host, path, "", {}, b"", s3.access_key, s3.secret_key,
                       payload_hash="UNSIGNED-PAYLOAD")
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        s = socket.create_connection(("127.0.0.1", s3.port), timeout=30)
        s.sendall((head + "Content-Length: 100000\r\n\r\n").encode() + b"z" * 60_000)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):  # the server may answer 400 or just close
            pass
        s.close()
    # The daemon notices the hang-up; the next request on a new connection sees the result.
    assert c.get_object(Bucket="trunc", Key="old")["Body"].read() == b"previous"
    assert list_all_keys(c, "trunc") == ["old"]
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="trunc", Key="new")
    assert s3_error(e)[1] == 404


UNICODE_KEYS = ["日本語/ファイル.txt", "emoji 😀/x", "spaces and +plus", "percent %41%2F",
                "question?mark&amp=1", "hash#frag", "back\\slash", "tab\tkey", "ÅÄÖ/ö",
                "quote\"'<tag>", "semi;colon,comma"]


def test_unicode_and_special_keys_round_trip(s3):
    c = s3.client()
    c.create_bucket(Bucket="keys")
    for k in UNICODE_KEYS:
        data = k.encode() * 3
        assert c.put_object(Bucket="keys", Key=k, Body=data)["ETag"] == etag_of(data)
    for k in UNICODE_KEYS:
        assert c.get_object(Bucket="keys", Key=k)["Body"].read() == k.encode() * 3, k
    assert list_all_keys(c, "keys") == sorted(UNICODE_KEYS, key=lambda k: k.encode())
    c.copy_object(Bucket="keys", Key="copied",
                  CopySource={"Bucket": "keys", "Key": UNICODE_KEYS[0]})
    assert c.get_object(Bucket="keys", Key="copied")["Body"].read() == UNICODE_KEYS[0].encode() * 3


DOT_KEYS = ["a/../b", "../up", "../../../../../../tmp/escape", "./x", "a/./b", "a/..", "a/.",
            "..%2f..%2fescape", "a//b", "/lead", "c/../../victim/k"]


@pytest.mark.parametrize("via", ["boto3", "raw"])
def test_dot_dot_keys_stay_literal_and_inside(start_s3, via):
    """S3 keys are opaque strings: 'a/../b' is its own key, never 'b', and never a path that
    leaves the data dir or reaches another bucket. A server may refuse such keys (400) instead,
    as long as nothing changes."""
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="dots")
    c.create_bucket(Bucket="victim")
    c.put_object(Bucket="dots", Key="b", Body=b"original b")
    c.put_object(Bucket="victim", Key="k", Body=b"victim k")
    outside = files_outside(s3.tmp, s3.data_dir)
    accepted = []
    for k in DOT_KEYS:
        body = b"dot:" + k.encode()
        if via == "boto3":
            try:
                c.put_object(Bucket="dots", Key=k, Body=body)
                status = 200
            except ClientError as e:
                status = s3_error(e)[1]
        else:
            path = "/dots/" + urllib.parse.quote(k, safe="/.")
            status = s3.request("PUT", path, body=body).status
        assert status in (200, 400), (k, status)
        if status == 200:
            accepted.append(k)
            assert c.get_object(Bucket="dots", Key=k)["Body"].read() == body, k
    assert c.get_object(Bucket="dots", Key="b")["Body"].read() == b"original b"
    assert c.get_object(Bucket="victim", Key="k")["Body"].read() == b"victim k"
    assert list_all_keys(c, "victim") == ["k"]
    keys = list_all_keys(c, "dots")
    assert sorted(keys) == sorted(["b"] + accepted), keys
    assert files_outside(s3.tmp, s3.data_dir) == outside
    # Reading the same hostile paths never serves a file from outside a bucket.
    for path in ("/dots/../victim/k", "/dots/%2e%2e/victim/k", "/victim/../dots/b",
                 "/../../etc/passwd", "/dots/..%2f..%2f..%2fetc%2fpasswd"):
        r = s3.request("GET", path)
        assert b"victim k" not in r.body and b"root:" not in r.body, path
        assert r.status in (400, 403, 404), (path, r)


def test_key_length_limit(s3):
    c = s3.client()
    c.create_bucket(Bucket="long")
    for k in ("k" * 1024, "é" * 512, "a/" * 512):
        c.put_object(Bucket="long", Key=k, Body=b"ok")
        assert c.get_object(Bucket="long", Key=k)["Body"].read() == b"ok"
    before = list_all_keys(c, "long")
    for k in ("k" * 1025, "é" * 512 + "x", "k" * 5000):
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket="long", Key=k, Body=b"too long")
        assert s3_error(e) == ("KeyTooLongError", 400), len(k)
    with pytest.raises(ClientError) as e:
        c.create_multipart_upload(Bucket="long", Key="m" * 1025)
    assert s3_error(e) == ("KeyTooLongError", 400)
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket="long", Key="c" * 1025, CopySource={"Bucket": "long",
                                                                 "Key": "k" * 1024})
    assert s3_error(e) == ("KeyTooLongError", 400)
    assert list_all_keys(c, "long") == before


def test_nul_and_invalid_utf8_keys(s3):
    """Keys S3 clients cannot produce by accident: a NUL byte and bytes that are not UTF-8.
    Either the key round-trips exactly or it is refused with 400 and nothing is stored."""
    c = s3.client()
    c.create_bucket(Bucket="ctl")
    stored = 0
    for raw in (b"nul\x00byte", b"bad\xffutf8", b"\xc3"):
        path = "/ctl/" + urllib.parse.quote(raw)
        r = s3.request("PUT", path, body=b"x")
        if r.status == 200:
            stored += 1
            got = s3.request("GET", path)
            assert got.status == 200 and got.body == b"x"
        else:
            assert r.status == 400, (raw, r)
    assert s3.alive()
    assert s3.request("GET", "/ctl", "list-type=2&encoding-type=url").xml() is not None
    assert c.list_objects_v2(Bucket="ctl")["KeyCount"] == stored
