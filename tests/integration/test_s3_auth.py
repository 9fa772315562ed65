# SPDX-License-Identifier: Apache-2.0
"""sov-s3 authentication as real clients exercise it: SigV4 headers from boto3, aws and s3cmd,
presigned GET/PUT URLs from boto3 fetched with curl (path and virtual-host style), expired,
tampered and wrongly keyed requests, clock skew, and aws-chunked bodies.

What the installed clients send over plain HTTP (checked with a capturing server): boto3 1.26,
awscli 2.9 (`aws s3 cp`, multipart or not) and s3cmd 2.3 all hash the whole body into
x-amz-content-sha256; none sends STREAMING-AWS4-HMAC-SHA256-PAYLOAD, and boto3 only sends
STREAMING-UNSIGNED-PAYLOAD-TRAILER over https. So the signed streaming body is encoded here
from the spec, and the unsigned-trailer body by botocore's own AwsChunkedWrapper (the code
boto3 uses over https)."""
import datetime
import hashlib
import hmac
import io
import json
import os
import subprocess
import urllib.parse

import prometheus_client.parser
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from conftest import (EMPTY_SHA256, S3_DOMAIN, aws_cli_env, clean_env, etag_of, s3_error,
                      s3cmd_config, sigv4_key, sigv4_presign, sigv4_sign)


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "60", *map(str, args)], capture_output=True,
                       env=clean_env(), timeout=90)
    assert p.returncode == 0, p.stderr
    return p.stdout


def curl_status(*args):
    """curl printing the body, then the status on a last line of its own."""
    out = curl("-w", "\n%{http_code}", *args)
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def code_of(body):
    import xml.etree.ElementTree as ET
    return ET.fromstring(body).findtext("Code")


def test_hand_signer_matches_botocore():
    """The tests' own SigV4 signer and presigner (conftest.py) agree with botocore's, so a
    refusal of a hand-signed request is the daemon's doing. Also checks the aws-chunked
    encoder against the worked example in AWS's documentation."""
    from unittest import mock

    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    when = datetime.datetime(2026, 11, 26, 1, 2, 3)
    cred = Credentials("AK", "SK")
    headers = {"x-amz-meta-a": " x  y ", "Content-Type": "text/plain"}
    req = AWSRequest(method="PUT", data=b"hello", headers=dict(headers),
                     url="http://127.0.0.1:9/b/k%20%C3%A9?uploadId=a%2Bb&partNumber=2")
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = when
        S3SigV4Auth(cred, "s3", "eu-central-1").add_auth(req)
        ours = sigv4_sign("PUT", "127.0.0.1:9", "/b/k%20%C3%A9", "uploadId=a%2Bb&partNumber=2",
                          headers, b"hello", "AK", "SK", when=when)
        assert ours["Authorization"] == req.headers["Authorization"]
        req = AWSRequest(method="GET", url="http://127.0.0.1:9/b/k%20x", headers={})
        S3SigV4QueryAuth(cred, "s3", "eu-central-1", expires=60).add_auth(req)
        assert sigv4_presign("GET", "127.0.0.1:9", "/b/k%20x", "AK", "SK", when, 60) == req.url
    # AWS's example: 66560 bytes of 'a' in 64 KiB chunks, seed signature from its headers.
    key = sigv4_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1")
    body = _chunked_signed_body(b"a" * 66560, 65536, key, "20130524T000000Z",
                                "20130524/us-east-1/s3/aws4_request",
                                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9"
                                "fa80a0a9")
    assert len(body) == 66824
    assert body.startswith(b"10000;chunk-signature="
                           b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n")
    assert body.endswith(b"\r\n0;chunk-signature="
                         b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
                         b"\r\n\r\n")


def test_health_and_metrics_need_no_auth_but_s3_does(s3):
    r = requests.get(s3.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.text.strip() == "ok"
    s3.client().create_bucket(Bucket="metered")
    text = requests.get(s3.url + "/metrics", timeout=10).text
    families = list(prometheus_client.parser.text_string_to_metric_families(text))
    assert families, "no metric families"
    # An anonymous request to the S3 API is refused in S3's own format.
    r = s3.request("GET", "/", sign=False)
    assert r.status == 403 and r.code == "AccessDenied"
    r = s3.request("GET", "/metered", sign=False)
    assert r.status == 403 and r.code == "AccessDenied"


def test_header_auth_with_boto3_aws_and_s3cmd(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="from-boto3")
    c.put_object(Bucket="from-boto3", Key="k", Body=b"hello")
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["from-boto3"]
    env = aws_cli_env(s3, tmp_path)
    p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3api", "list-buckets"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert [b["Name"] for b in json.loads(p.stdout)["Buckets"]] == ["from-boto3"]
    cfg = s3cmd_config(s3, tmp_path)
    p = subprocess.run(["/usr/bin/s3cmd", "-c", str(cfg), "ls", "s3://from-boto3"],
                       capture_output=True, text=True, env=clean_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith("s3://from-boto3/k")


def test_wrong_secret_unknown_key_and_tampered_signature(s3):
    c = s3.client()
    c.create_bucket(Bucket="guarded")
    with pytest.raises(ClientError) as e:
        s3.client(secret_key="wrong" + s3.secret_key[5:]).put_object(
            Bucket="guarded", Key="x", Body=b"no")
    assert s3_error(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        s3.client(access_key="SOVTESTKEY9999999999").put_object(
            Bucket="guarded", Key="x", Body=b"no")
    assert s3_error(e) == ("InvalidAccessKeyId", 403)

    body = b"tampered"
    h = sigv4_sign("PUT", s3.host, "/guarded/x", "", {"x-amz-meta-a": "1"}, body,
                   s3.access_key, s3.secret_key)
    # The same request is accepted untouched (proves the hand signer), but not altered.
    sig = h["Authorization"][-64:]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    bad = dict(h, Authorization=h["Authorization"][:-64] + flipped)
    r = s3.request("PUT", "/guarded/x", headers=bad, body=body, sign=False)
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    r = s3.request("PUT", "/guarded/x", headers=dict(h, **{"x-amz-meta-a": "2"}), body=body,
                   sign=False)
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    r = s3.request("PUT", "/guarded/y", headers=h, body=body, sign=False)
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    # A body that is not the one whose hash was signed.
    r = s3.request("PUT", "/guarded/x", headers=h, body=b"tampereD", sign=False)
    assert (r.status, r.code) == (400, "XAmzContentSHA256Mismatch"), r
    # A credential scope naming another region, and a header that is not SigV4 at all.
    r = s3.request("PUT", "/guarded/x", body=body, region="us-east-1")
    assert (r.status, r.code) == (400, "AuthorizationHeaderMalformed"), r
    r = s3.request("GET", "/guarded", headers={"Authorization": "AWS4-HMAC-SHA256 garbage",
                                               "X-Amz-Date": now().strftime("%Y%m%dT%H%M%SZ"),
                                               "X-Amz-Content-SHA256": EMPTY_SHA256}, sign=False)
    assert r.status == 400 and r.code == "AuthorizationHeaderMalformed", r
    assert c.list_objects_v2(Bucket="guarded")["KeyCount"] == 0
    r = s3.request("PUT", "/guarded/x", headers=h, body=body, sign=False)
    assert r.status == 200, r
    assert c.get_object(Bucket="guarded", Key="x")["Metadata"] == {"a": "1"}


def test_clock_skew_with_hand_signed_curl(s3):
    s3.client().create_bucket(Bucket="clock")

    def curl_at(when):
        h = sigv4_sign("GET", s3.host, "/clock", "list-type=2", {}, b"", s3.access_key,
                       s3.secret_key, when=when)
        args = []
        for k, v in h.items():
            args += ["-H", f"{k}: {v}"]
        return curl_status(*args, f"{s3.url}/clock?list-type=2")

    status, body = curl_at(now())
    assert status == 200 and b"<Name>clock</Name>" in body, body
    assert curl_at(now() - datetime.timedelta(minutes=10))[0] == 200  # inside the 15 minutes
    for skew in (datetime.timedelta(minutes=-20), datetime.timedelta(minutes=20),
                 datetime.timedelta(days=-400)):
        status, body = curl_at(now() + skew)
        assert status == 403 and code_of(body) == "RequestTimeTooSkewed", (skew, body)


def test_presigned_get_and_put_with_curl(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="shared")
    data = os.urandom(300_000)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    put_url = c.generate_presigned_url("put_object", Params={"Bucket": "shared", "Key": "p/ü x+y"},
                                       ExpiresIn=300)
    assert put_url.startswith(s3.url)
    status, _ = curl_status("-T", f, put_url)
    assert status == 200
    get_url = c.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "p/ü x+y"},
                                       ExpiresIn=300)
    out = curl("-D", tmp_path / "hdr", get_url)
    assert out == data
    assert etag_of(data) in (tmp_path / "hdr").read_text()
    # Another key under the same signature, or an altered expiry, is refused.
    other = get_url.replace("/p/", "/q/", 1)
    status, body = curl_status(other)
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch"
    longer = get_url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")
    status, body = curl_status(longer)
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch"
    # An expired URL: issued two hours ago, valid for a minute. The same hand presigner issuing
    # now is accepted, so the refusal is the expiry.
    path = "/shared/" + urllib.parse.quote("p/ü x+y")
    fresh = sigv4_presign("GET", s3.host, path, s3.access_key, s3.secret_key, now(), 60)
    assert curl(fresh) == data
    old = sigv4_presign("GET", s3.host, path, s3.access_key, s3.secret_key,
                        now() - datetime.timedelta(hours=2), 60)
    status, body = curl_status(old)
    assert status == 403 and code_of(body) == "AccessDenied", body
    # Longer than the 7 days AWS allows.
    week = sigv4_presign("GET", s3.host, path, s3.access_key, s3.secret_key, now(), 604801)
    status, body = curl_status(week)
    assert status == 400 and code_of(body) == "AuthorizationQueryParametersError", body
    # A presigned PUT with a wrong secret stores nothing.
    bad = s3.client(secret_key="x" * 40).generate_presigned_url(
        "put_object", Params={"Bucket": "shared", "Key": "evil"}, ExpiresIn=300)
    status, body = curl_status("-T", f, bad)
    assert status == 403 and code_of(body) == "SignatureDoesNotMatch"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="shared")["Contents"]] == ["p/ü x+y"]


def test_virtual_host_style(s3, tmp_path):
    """bucket.s3.localhost:PORT. *.localhost does not resolve here, so curl gets --connect-to
    and boto3's requests are sent to 127.0.0.1 with the virtual Host header kept."""
    c = s3.client()
    c.create_bucket(Bucket="vhost")
    c.put_object(Bucket="vhost", Key="dir/file.txt", Body=b"virtual")
    endpoint = f"http://{S3_DOMAIN}:{s3.port}"
    vc = s3.client(endpoint=endpoint, addressing="virtual")
    url = vc.generate_presigned_url("get_object", Params={"Bucket": "vhost",
                                                          "Key": "dir/file.txt"}, ExpiresIn=60)
    assert url.startswith(f"http://vhost.{S3_DOMAIN}:{s3.port}/dir/file.txt?")
    out = curl("--connect-to", f"vhost.{S3_DOMAIN}:{s3.port}:127.0.0.1:{s3.port}", url)
    assert out == b"virtual"

    def to_loopback(request, **kw):
        u = urllib.parse.urlsplit(request.url)
        request.headers["Host"] = u.netloc
        request.url = urllib.parse.urlunsplit(u._replace(netloc=s3.host))

    vc.meta.events.register("before-send.s3", to_loopback)
    vc.put_object(Bucket="vhost", Key="v/put", Body=b"by host")
    assert c.get_object(Bucket="vhost", Key="v/put")["Body"].read() == b"by host"
    assert [o["Key"] for o in vc.list_objects_v2(Bucket="vhost", Prefix="v/")["Contents"]] == \
        ["v/put"]
    assert vc.get_object(Bucket="vhost", Key="dir/file.txt")["Body"].read() == b"virtual"


def _chunked_signed_body(data, chunk, signing_key, amz_date, scope, seed, tamper=False):
    """aws-chunked with a signature per chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    out, prev = [], seed
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256,
                         hashlib.sha256(piece).hexdigest()])
        prev = hmac.new(signing_key, sts.encode(), hashlib.sha256).hexdigest()
        if tamper and piece:
            piece = bytes([piece[0] ^ 1]) + piece[1:]
            tamper = False
        out.append(f"{len(piece):x};chunk-signature={prev}\r\n".encode() + piece + b"\r\n")
    return b"".join(out)


def _streaming_put(s3, key, data, chunk=65536, tamper=False):
    when = now()
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{s3.region}/s3/aws4_request"
    # Content-Length depends only on the sizes, so sign it before the chunk signatures exist.
    sizes = [len(data[i:i + chunk]) for i in range(0, len(data), chunk)] + [0]
    length = sum(len(f"{n:x};chunk-signature=".encode()) + 64 + 4 + n for n in sizes)
    h = sigv4_sign("PUT", s3.host, f"/stream/{key}", "",
                   {"Content-Encoding": "aws-chunked", "Content-Length": str(length),
                    "x-amz-decoded-content-length": str(len(data))}, b"",
                   s3.access_key, s3.secret_key, when=when,
                   payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                   signed_extra=("content-encoding", "content-length"))
    seed = h["Authorization"][-64:]
    body = _chunked_signed_body(data, chunk, sigv4_key(s3.secret_key, amz_date[:8], s3.region),
                                amz_date, scope, seed, tamper)
    assert len(body) == length
    return s3.request("PUT", f"/stream/{key}", headers=h, body=body, sign=False)


def test_aws_chunked_signed_streaming_upload(s3):
    c = s3.client()
    c.create_bucket(Bucket="stream")
    data = os.urandom(3 * 65536 + 1234)
    r = _streaming_put(s3, "ok", data)
    assert r.status == 200, r
    assert r.headers["ETag"] == etag_of(data)
    got = c.get_object(Bucket="stream", Key="ok")
    assert got["Body"].read() == data and got["ContentLength"] == len(data)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    # One flipped byte in the second chunk: its signature no longer matches; nothing stored.
    r = _streaming_put(s3, "bad", data, tamper=True)
    assert (r.status, r.code) == (403, "SignatureDoesNotMatch"), r
    # An overwrite that fails leaves the previous object as it was.
    r = _streaming_put(s3, "ok", os.urandom(70000), tamper=True)
    assert r.status == 403
    assert c.get_object(Bucket="stream", Key="ok")["Body"].read() == data
    assert [o["Key"] for o in c.list_objects_v2(Bucket="stream")["Contents"]] == ["ok"]


def _trailer_put(s3, key, data, corrupt=False):
    wrapped = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                                checksum_name="x-amz-checksum-crc32", chunk_size=65536).read()
    if corrupt:
        head, _, tail = wrapped.rpartition(b"x-amz-checksum-crc32:")
        wrapped = head + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    h = sigv4_sign("PUT", s3.host, f"/trail/{key}", "",
                   {"Content-Encoding": "aws-chunked", "Content-Length": str(len(wrapped)),
                    "x-amz-decoded-content-length": str(len(data)),
                    "x-amz-trailer": "x-amz-checksum-crc32"}, b"",
                   s3.access_key, s3.secret_key,
                   payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                   signed_extra=("content-encoding", "content-length"))
    return s3.request("PUT", f"/trail/{key}", headers=h, body=wrapped, sign=False)


def test_aws_chunked_unsigned_payload_trailer(s3):
    c = s3.client()
    c.create_bucket(Bucket="trail")
    data = os.urandom(200_001)
    r = _trailer_put(s3, "ok", data)
    assert r.status == 200, r
    assert c.get_object(Bucket="trail", Key="ok")["Body"].read() == data
    r = _trailer_put(s3, "bad", data, corrupt=True)
    assert (r.status, r.code) == (400, "BadDigest"), r
    assert [o["Key"] for o in c.list_objects_v2(Bucket="trail")["Contents"]] == ["ok"]


def test_boto3_over_https_sends_unsigned_trailer(start_s3):
    """With a checksum algorithm over TLS, boto3 itself streams the body as aws-chunked with a
    trailing x-amz-checksum-crc32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""
    s3 = start_s3(tls=True)
    c = s3.client()
    seen = []
    c.meta.events.register("before-send.s3.PutObject",
                           lambda request, **kw: seen.append(dict(request.headers)))
    c.create_bucket(Bucket="tls")
    data = os.urandom(1_000_003)
    c.put_object(Bucket="tls", Key="crc", Body=io.BytesIO(data), ChecksumAlgorithm="CRC32")
    sent = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in seen[0].items()}
    assert sent["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["x-amz-trailer"] == "x-amz-checksum-crc32"
    got = c.get_object(Bucket="tls", Key="crc")
    assert got["Body"].read() == data and got["ContentLength"] == len(data)
    # The same daemon over TLS also takes an ordinary signed PUT and a presigned GET by curl.
    c.put_object(Bucket="tls", Key="plain", Body=b"plain")
    url = c.generate_presigned_url("get_object", Params={"Bucket": "tls", "Key": "plain"})
    assert curl("--cacert", s3.cafile, url) == b"plain"
