# SPDX-License-Identifier: Apache-2.0
"""sov-s3 objects through boto3 (and curl where headers matter): Put/Get/Head/Delete, ranges,
response header overrides, conditional requests, Content-MD5, user metadata and content
headers, DeleteObjects and CopyObject with its directives and source conditions."""
import datetime
import hashlib
import http.client
import os
import subprocess
import urllib.parse

import pytest
from botocore.exceptions import ClientError

from conftest import clean_env, etag_of, md5_b64, s3_error


@pytest.fixture
def bucket(s3):
    c = s3.client()
    c.create_bucket(Bucket="objs")
    return c


def error_of(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    return s3_error(e)


def test_put_get_head_delete(bucket):
    c = bucket
    data = os.urandom(123_457)
    put = c.put_object(Bucket="objs", Key="dir/obj.bin", Body=data)
    assert put["ETag"] == etag_of(data)
    got = c.get_object(Bucket="objs", Key="dir/obj.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == etag_of(data) and got["ContentLength"] == len(data)
    assert got["ResponseMetadata"]["HTTPHeaders"]["accept-ranges"] == "bytes"
    head = c.head_object(Bucket="objs", Key="dir/obj.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == etag_of(data)
    age = datetime.datetime.now(datetime.timezone.utc) - head["LastModified"]
    assert datetime.timedelta(minutes=-5) < age < datetime.timedelta(minutes=5)
    # Overwrite: new bytes, new ETag, old metadata gone.
    c.put_object(Bucket="objs", Key="dir/obj.bin", Body=b"", Metadata={"a": "b"})
    c.put_object(Bucket="objs", Key="dir/obj.bin", Body=b"small")
    got = c.get_object(Bucket="objs", Key="dir/obj.bin")
    assert got["Body"].read() == b"small" and got["Metadata"] == {}
    assert got["ETag"] == etag_of(b"small")
    assert c.delete_object(Bucket="objs", Key="dir/obj.bin")["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    assert error_of(c.get_object, Bucket="objs", Key="dir/obj.bin") == ("NoSuchKey", 404)
    assert error_of(c.head_object, Bucket="objs", Key="dir/obj.bin")[1] == 404
    # Deleting what is not there succeeds, as in S3.
    assert c.delete_object(Bucket="objs", Key="never")["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    assert error_of(c.get_object, Bucket="nobucket", Key="k") == ("NoSuchBucket", 404)
    assert error_of(c.put_object, Bucket="nobucket", Key="k", Body=b"") == ("NoSuchBucket", 404)


def test_empty_put_then_put_on_one_connection(s3):
    """boto3 sends `Expect: 100-continue` even with an empty body. If the server answers the
    final status without a 100, botocore 1.29 keeps that status line for the next request on
    the same keep-alive connection and the next PUT hangs until the read timeout (10 s here,
    a bound on a request that takes milliseconds, not a performance threshold)."""
    c = s3.client(read_timeout=10)
    c.create_bucket(Bucket="objs")
    assert c.put_object(Bucket="objs", Key="k", Body=b"")["ETag"] == etag_of(b"")
    assert c.put_object(Bucket="objs", Key="k", Body=b"small")["ETag"] == etag_of(b"small")
    assert c.get_object(Bucket="objs", Key="k")["Body"].read() == b"small"


def test_empty_object(bucket):
    c = bucket
    assert c.put_object(Bucket="objs", Key="empty", Body=b"")["ETag"] == etag_of(b"")
    got = c.get_object(Bucket="objs", Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0
    assert error_of(c.get_object, Bucket="objs", Key="empty", Range="bytes=0-0") == \
        ("InvalidRange", 416)


def test_metadata_and_content_headers_round_trip(bucket):
    c = bucket
    expires = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    c.put_object(Bucket="objs", Key="page.html.gz", Body=b"\x1f\x8b fake gzip",
                 ContentType="text/html; charset=utf-8", ContentEncoding="gzip",
                 ContentDisposition='attachment; filename="a b.html"',
                 CacheControl="max-age=60, public", ContentLanguage="de-DE", Expires=expires,
                 Metadata={"Color": "blue", "x-multi-word": "with spaces  inside", "e": ""})
    for resp in (c.get_object(Bucket="objs", Key="page.html.gz"),
                 c.head_object(Bucket="objs", Key="page.html.gz")):
        assert resp["ContentType"] == "text/html; charset=utf-8"
        assert resp["ContentEncoding"] == "gzip"
        assert resp["ContentDisposition"] == 'attachment; filename="a b.html"'
        assert resp["CacheControl"] == "max-age=60, public"
        assert resp["ContentLanguage"] == "de-DE"
        assert resp["Expires"] == expires
        assert resp["Metadata"] == {"color": "blue", "x-multi-word": "with spaces  inside",
                                    "e": ""}
    # Without a Content-Type, S3 stores binary/octet-stream.
    r = c.put_object(Bucket="objs", Key="untyped", Body=b"x")
    assert r["ETag"] == etag_of(b"x")
    assert c.head_object(Bucket="objs", Key="untyped")["ContentType"] in (
        "binary/octet-stream", "application/octet-stream")


def test_content_md5(bucket):
    c = bucket
    data = b"checked bytes"
    c.put_object(Bucket="objs", Key="md5", Body=data, ContentMD5=md5_b64(data))
    assert error_of(c.put_object, Bucket="objs", Key="md5", Body=b"other bytes",
                    ContentMD5=md5_b64(data)) == ("BadDigest", 400)
    for bad in ("notbase64!!", md5_b64(data)[:-4], "AAAA"):
        assert error_of(c.put_object, Bucket="objs", Key="md5", Body=data,
                        ContentMD5=bad) == ("InvalidDigest", 400), bad
    assert error_of(c.put_object, Bucket="objs", Key="new", Body=data,
                    ContentMD5=md5_b64(b"x")) == ("BadDigest", 400)
    # Nothing changed by the refusals.
    assert c.get_object(Bucket="objs", Key="md5")["Body"].read() == data
    assert [o["Key"] for o in c.list_objects_v2(Bucket="objs")["Contents"]] == ["md5"]


def test_ranges(bucket, s3):
    c = bucket
    data = bytes(range(256)) * 40 + b"tail!"
    n = len(data)
    c.put_object(Bucket="objs", Key="r", Body=data)
    cases = {"bytes=0-9": (0, 9), "bytes=-5": (n - 5, n - 1), "bytes=10-": (10, n - 1),
             "bytes=100-100": (100, 100), f"bytes=0-{n + 1000}": (0, n - 1),
             f"bytes=-{n + 10}": (0, n - 1)}
    for rng, (first, last) in cases.items():
        got = c.get_object(Bucket="objs", Key="r", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert got["ContentRange"] == f"bytes {first}-{last}/{n}", rng
        assert got["ContentLength"] == last - first + 1, rng
        assert got["Body"].read() == data[first:last + 1], rng
    for rng in (f"bytes={n}-", f"bytes={n + 5}-{n + 10}"):
        assert error_of(c.get_object, Bucket="objs", Key="r", Range=rng) == \
            ("InvalidRange", 416), rng
    # A Range header that does not parse is ignored (RFC 9110): the whole object, 200.
    for rng in ("bytes=abc", "bytes=5-2", "lines=0-1", "bytes=--1"):
        got = c.get_object(Bucket="objs", Key="r", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200, rng
        assert got["Body"].read() == data, rng
    # curl, as a downloader would use it.
    url = c.generate_presigned_url("get_object", Params={"Bucket": "objs", "Key": "r"})
    p = subprocess.run(["curl", "-sS", "-r", "20-29", url], capture_output=True,
                       env=clean_env(), timeout=60)
    assert p.stdout == data[20:30]


def test_response_header_overrides(bucket):
    c = bucket
    c.put_object(Bucket="objs", Key="o", Body=b"data", ContentType="text/plain")
    got = c.get_object(Bucket="objs", Key="o", ResponseContentType="application/x-test",
                       ResponseContentDisposition="attachment; filename=o.txt",
                       ResponseCacheControl="no-store", ResponseContentLanguage="fr",
                       ResponseContentEncoding="identity",
                       ResponseExpires=datetime.datetime(2030, 5, 6, tzinfo=datetime.timezone.utc))
    assert got["ContentType"] == "application/x-test"
    assert got["ContentDisposition"] == "attachment; filename=o.txt"
    assert got["CacheControl"] == "no-store"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"
    assert got["Expires"].year == 2030
    assert got["Body"].read() == b"data"
    # Overrides change the answer, not the object.
    head = c.head_object(Bucket="objs", Key="o")
    assert head["ContentType"] == "text/plain" and "CacheControl" not in head


def test_conditional_get_and_head(bucket):
    c = bucket
    c.put_object(Bucket="objs", Key="c", Body=b"conditional")
    head = c.head_object(Bucket="objs", Key="c")
    etag, lm = head["ETag"], head["LastModified"]
    day = datetime.timedelta(days=1)
    ok = dict(Bucket="objs", Key="c")

    def status(call, **kw):
        try:
            return call(**ok, **kw)["ResponseMetadata"]["HTTPStatusCode"]
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"]

    for call in (c.get_object, c.head_object):
        assert status(call, IfMatch=etag) == 200
        assert status(call, IfMatch="*") == 200
        assert status(call, IfMatch='"0123456789abcdef0123456789abcdef"') == 412
        assert status(call, IfNoneMatch=etag) == 304
        assert status(call, IfNoneMatch="*") == 304
        assert status(call, IfNoneMatch='"0123456789abcdef0123456789abcdef"') == 200
        assert status(call, IfModifiedSince=lm) == 304
        assert status(call, IfModifiedSince=lm - day) == 200
        assert status(call, IfUnmodifiedSince=lm) == 200
        assert status(call, IfUnmodifiedSince=lm - day) == 412
        # If-Match decides over If-Unmodified-Since, If-None-Match over If-Modified-Since.
        assert status(call, IfMatch=etag, IfUnmodifiedSince=lm - day) == 200
        assert status(call, IfNoneMatch='"00000000000000000000000000000000"',
                      IfModifiedSince=lm) == 200
    assert error_of(c.get_object, **ok, IfMatch='"nope"') == ("PreconditionFailed", 412)
    # A 304 carries the validators.
    with pytest.raises(ClientError) as e:
        c.get_object(**ok, IfNoneMatch=etag)
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_delete_objects(bucket, s3):
    c = bucket
    for k in ("a", "b/c", "d e", "ü"):
        c.put_object(Bucket="objs", Key=k, Body=k.encode())
    out = c.delete_objects(Bucket="objs", Delete={"Objects": [{"Key": "a"}, {"Key": "b/c"},
                                                             {"Key": "missing"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "b/c", "missing"]
    assert out.get("Errors", []) == []
    out = c.delete_objects(Bucket="objs", Delete={"Objects": [{"Key": "d e"}, {"Key": "ü"}],
                                                  "Quiet": True})
    assert out.get("Deleted", []) == [] and out.get("Errors", []) == []
    assert c.list_objects_v2(Bucket="objs")["KeyCount"] == 0
    # Bodies that are not a Delete document.
    c.put_object(Bucket="objs", Key="keep", Body=b"k")
    for body in (b"<Delete><Object><Key>keep</Key></Object>", b"not xml at all",
                 b"<Delete></Delete>",
                 b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"):
        r = s3.request("POST", "/objs", "delete", headers={"Content-MD5": md5_b64(body)},
                       body=body)
        assert (r.status, r.code) == (400, "MalformedXML"), (body[:40], r)
    assert [o["Key"] for o in c.list_objects_v2(Bucket="objs")["Contents"]] == ["keep"]


def test_copy_object_directives(bucket):
    c = bucket
    c.create_bucket(Bucket="other")
    data = os.urandom(70_000)
    c.put_object(Bucket="objs", Key="src ü/1", Body=data, ContentType="image/png",
                 Metadata={"origin": "camera"}, CacheControl="max-age=5")
    out = c.copy_object(Bucket="other", Key="copy", CopySource={"Bucket": "objs",
                                                               "Key": "src ü/1"})
    assert out["CopyObjectResult"]["ETag"] == etag_of(data)
    got = c.get_object(Bucket="other", Key="copy")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png" and got["Metadata"] == {"origin": "camera"}
    assert got["CacheControl"] == "max-age=5"
    c.copy_object(Bucket="objs", Key="replaced", CopySource={"Bucket": "objs", "Key": "src ü/1"},
                  MetadataDirective="REPLACE", ContentType="text/plain",
                  Metadata={"new": "yes"})
    got = c.get_object(Bucket="objs", Key="replaced")
    assert got["Body"].read() == data and got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"new": "yes"} and "CacheControl" not in got
    # Onto itself: refused unless something changes.
    assert error_of(c.copy_object, Bucket="objs", Key="src ü/1",
                    CopySource={"Bucket": "objs", "Key": "src ü/1"}) == ("InvalidRequest", 400)
    c.copy_object(Bucket="objs", Key="src ü/1", CopySource={"Bucket": "objs", "Key": "src ü/1"},
                  MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="image/png")
    got = c.get_object(Bucket="objs", Key="src ü/1")
    assert got["Body"].read() == data and got["Metadata"] == {"v": "2"}
    assert error_of(c.copy_object, Bucket="objs", Key="x",
                    CopySource={"Bucket": "objs", "Key": "absent"}) == ("NoSuchKey", 404)
    assert error_of(c.copy_object, Bucket="objs", Key="x",
                    CopySource={"Bucket": "absent-bucket", "Key": "k"}) == ("NoSuchBucket", 404)
    assert error_of(c.copy_object, Bucket="objs", Key="x", CopySource={"Bucket": "objs",
                    "Key": "replaced"}, MetadataDirective="MERGE") == ("InvalidArgument", 400)


def test_copy_source_conditions(bucket):
    c = bucket
    c.put_object(Bucket="objs", Key="s", Body=b"source")
    head = c.head_object(Bucket="objs", Key="s")
    etag, lm = head["ETag"], head["LastModified"]
    day = datetime.timedelta(days=1)
    src = {"Bucket": "objs", "Key": "s"}
    refused = [dict(CopySourceIfMatch='"00000000000000000000000000000000"'),
               dict(CopySourceIfNoneMatch=etag),
               dict(CopySourceIfModifiedSince=lm),
               dict(CopySourceIfUnmodifiedSince=lm - day)]
    for cond in refused:
        assert error_of(c.copy_object, Bucket="objs", Key="d", CopySource=src, **cond) == \
            ("PreconditionFailed", 412), cond
    assert error_of(c.head_object, Bucket="objs", Key="d")[1] == 404
    accepted = [dict(CopySourceIfMatch=etag), dict(CopySourceIfNoneMatch='"0"'),
                dict(CopySourceIfModifiedSince=lm - day), dict(CopySourceIfUnmodifiedSince=lm),
                dict(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=lm - day)]
    for i, cond in enumerate(accepted):
        c.copy_object(Bucket="objs", Key=f"d{i}", CopySource=src, **cond)
        assert c.get_object(Bucket="objs", Key=f"d{i}")["Body"].read() == b"source"


def test_big_object_streams_intact(bucket):
    c = bucket
    data = os.urandom(48 * 1024 * 1024 + 3)
    c.put_object(Bucket="objs", Key="big", Body=data)
    h = hashlib.sha256()
    body = c.get_object(Bucket="objs", Key="big")["Body"]
    while chunk := body.read(1 << 20):
        h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_user_metadata_limit(bucket):
    """S3 allows 2 KB of user metadata (names and values); more is MetadataTooLarge."""
    c = bucket
    c.put_object(Bucket="objs", Key="meta", Body=b"m", Metadata={"a": "x" * 1900})
    assert c.head_object(Bucket="objs", Key="meta")["Metadata"] == {"a": "x" * 1900}
    assert error_of(c.put_object, Bucket="objs", Key="meta", Body=b"n",
                    Metadata={"a": "x" * 2100}) == ("MetadataTooLarge", 400)
    assert error_of(c.put_object, Bucket="objs", Key="meta", Body=b"n",
                    Metadata={f"k{i}": "v" * 100 for i in range(30)}) == ("MetadataTooLarge", 400)
    assert c.get_object(Bucket="objs", Key="meta")["Body"].read() == b"m"


def test_max_object_size(start_s3):
    s3 = start_s3(ini_extra="max_object_size = 1M\n")
    c = s3.client()
    c.create_bucket(Bucket="capped")
    c.put_object(Bucket="capped", Key="fits", Body=b"f" * (1024 * 1024))
    assert error_of(c.put_object, Bucket="capped", Key="big",
                    Body=b"b" * (1024 * 1024 + 1)) == ("EntityTooLarge", 400)
    assert [o["Key"] for o in c.list_objects_v2(Bucket="capped")["Contents"]] == ["fits"]
    assert s3.alive()


def test_concurrent_overwrites_are_atomic(bucket, s3):
    """Writers replace one key again and again while readers read it: every read returns one
    complete version whose ETag matches its bytes, and the final object is one of them."""
    import threading
    c = bucket
    first = os.urandom(300_000)
    c.put_object(Bucket="objs", Key="hot", Body=first)
    versions = {hashlib.sha256(first).hexdigest()}
    lock = threading.Lock()
    bad, done = [], threading.Event()

    errors = []

    def writer(n):
        try:
            wc = s3.client()
            for i in range(8):
                data = os.urandom(100_000 + 50_000 * ((n + i) % 6))
                with lock:
                    versions.add(hashlib.sha256(data).hexdigest())
                wc.put_object(Bucket="objs", Key="hot", Body=data)
        except Exception as e:  # reported below, in the test's thread
            errors.append(repr(e))

    def reader():
        try:
            rc = s3.client()
            for _ in range(400):  # bounded; stops early once the writers are done
                got = rc.get_object(Bucket="objs", Key="hot")
                body = got["Body"].read()
                digest = hashlib.sha256(body).hexdigest()
                with lock:
                    if digest not in versions or got["ETag"] != etag_of(body):
                        bad.append((len(body), got["ETag"]))
                if done.is_set():
                    return
        except Exception as e:
            errors.append(repr(e))

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    done.set()
    for t in readers:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in writers + readers)
    assert errors == []
    assert bad == [], f"{len(bad)} torn or mismatched reads, e.g. {bad[:3]}"
    body = c.get_object(Bucket="objs", Key="hot")["Body"].read()
    assert hashlib.sha256(body).hexdigest() in versions
    assert [o["Key"] for o in c.list_objects_v2(Bucket="objs")["Contents"]] == ["hot"]


def test_prefix_keys_are_not_directories(bucket):
    """Keys that would be directories in a file tree: 'd/x' exists, 'd' and 'd/' do not."""
    c = bucket
    c.put_object(Bucket="objs", Key="d/x", Body=b"x")
    for k in ("d", "d/", "d/x/", "d/x/y"):
        assert error_of(c.get_object, Bucket="objs", Key=k) == ("NoSuchKey", 404), k
        assert error_of(c.head_object, Bucket="objs", Key=k)[1] == 404, k
    # Then both shapes at once, in both orders.
    c.put_object(Bucket="objs", Key="d", Body=b"file d")
    c.put_object(Bucket="objs", Key="d/x/y", Body=b"deeper")
    c.put_object(Bucket="objs", Key="e/f", Body=b"e/f")
    c.put_object(Bucket="objs", Key="e", Body=b"e")
    for k, v in {"d": b"file d", "d/x": b"x", "d/x/y": b"deeper", "e": b"e", "e/f": b"e/f"}.items():
        assert c.get_object(Bucket="objs", Key=k)["Body"].read() == v, k
    c.delete_object(Bucket="objs", Key="d/x")
    assert c.get_object(Bucket="objs", Key="d/x/y")["Body"].read() == b"deeper"
    assert error_of(c.get_object, Bucket="objs", Key="d/x") == ("NoSuchKey", 404)


def test_wire_formats(bucket, s3):
    """What parsers other than boto3 depend on: RFC 1123 dates in headers, ISO 8601 in XML,
    the S3 namespace, and XML escaping of keys when no encoding-type is asked for."""
    import re
    c = bucket
    odd = "a&b<c>\"'"
    c.put_object(Bucket="objs", Key=odd, Body=b"odd")
    r = s3.request("HEAD", "/objs/" + urllib.parse.quote(odd))
    assert r.status == 200
    rfc1123 = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|" \
              r"Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$"
    assert re.match(rfc1123, r.headers["Last-Modified"]), r.headers["Last-Modified"]
    assert re.match(rfc1123, r.headers["Date"])
    r = s3.request("GET", "/objs", "list-type=2")
    root = r.xml()
    assert root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}ListBucketResult"
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    assert [k.text for k in root.iter(ns + "Key")] == [odd]
    lm = root.find(f"{ns}Contents/{ns}LastModified").text
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$", lm), lm
    r = s3.request("GET", "/")
    assert r.xml().tag == ns + "ListAllMyBucketsResult"
    out = c.delete_objects(Bucket="objs", Delete={"Objects": [{"Key": odd}]})
    assert [d["Key"] for d in out["Deleted"]] == [odd]
    assert c.list_objects_v2(Bucket="objs")["KeyCount"] == 0


def test_presigned_overrides_and_method_binding(bucket, s3):
    c = bucket
    c.put_object(Bucket="objs", Key="report.csv", Body=b"a,b\n")
    url = c.generate_presigned_url("get_object", Params={
        "Bucket": "objs", "Key": "report.csv",
        "ResponseContentDisposition": 'attachment; filename="r.csv"',
        "ResponseContentType": "text/csv"})
    p = subprocess.run(["curl", "-sS", "-D", "-", url], capture_output=True, env=clean_env(),
                       timeout=60)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert body == b"a,b\n"
    assert b'content-disposition: attachment; filename="r.csv"' in head.lower()
    assert b"content-type: text/csv" in head.lower()
    # A URL signed for GET does not allow a PUT or a DELETE.
    for method in ("PUT", "DELETE"):
        p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                            "--data-binary", "overwritten", url], capture_output=True,
                           env=clean_env(), timeout=60)
        assert p.stdout == b"403", method
    assert c.get_object(Bucket="objs", Key="report.csv")["Body"].read() == b"a,b\n"


def test_overwrite_and_delete_during_a_slow_read(s3):
    """A GET that started before an overwrite or a delete returns the version it started on,
    whole. The reader stalls on purpose (it stops reading), so with one worker this also shows
    that a PUT and a DELETE are served while another response waits on a full socket."""
    c = s3.client()
    c.create_bucket(Bucket="slow")
    old, new = os.urandom(24 * 1024 * 1024), os.urandom(24 * 1024 * 1024)
    for action in ("overwrite", "delete"):
        c.put_object(Bucket="slow", Key="k", Body=old)
        url = c.generate_presigned_url("get_object", Params={"Bucket": "slow", "Key": "k"})
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=60)
        conn.request("GET", f"{u.path}?{u.query}")
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read(1024 * 1024)
        other = s3.client()
        if action == "overwrite":
            other.put_object(Bucket="slow", Key="k", Body=new)
            assert other.get_object(Bucket="slow", Key="k")["ETag"] == etag_of(new)
        else:
            other.delete_object(Bucket="slow", Key="k")
            assert error_of(other.head_object, Bucket="slow", Key="k")[1] == 404
        rest = resp.read()
        conn.close()
        assert hashlib.sha256(first + rest).digest() == hashlib.sha256(old).digest(), action
