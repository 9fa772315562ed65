# SPDX-License-Identifier: Apache-2.0
"""sov-s3 listings: ListObjectsV2 (prefix, delimiter, continuation tokens, start-after,
max-keys, fetch-owner, encoding-type=url), ListObjects v1 with markers, ListObjectVersions on
an unversioned bucket, and 100,000 keys listed page by page in order."""
import concurrent.futures
import subprocess
import threading
import time
import urllib.parse

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli_env, list_all_keys, s3_error, sigv4_sign

KEYS = ["a", "a/", "a/1", "a/2", "a/b/3", "a b", "a+b", "a%b", "b", "c/d", "c/e/f", "z", "é",
        "ü/x", "~", "A", "0", "a/b/c/d/e", "日本/語"]


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode())


@pytest.fixture
def listed(s3):
    c = s3.client()
    c.create_bucket(Bucket="list")
    for k in KEYS:
        c.put_object(Bucket="list", Key=k, Body=k.encode())
    return c


def test_list_v2_order_prefix_and_delimiter(listed):
    c = listed
    out = c.list_objects_v2(Bucket="list")
    assert [o["Key"] for o in out["Contents"]] == utf8_sorted(KEYS)
    assert out["KeyCount"] == len(KEYS) and out["IsTruncated"] is False
    assert out["Name"] == "list" and out["MaxKeys"] == 1000
    for o in out["Contents"]:
        assert o["Size"] == len(o["Key"].encode())
        assert o["ETag"].startswith('"') and o["LastModified"] is not None
        assert o["StorageClass"] == "STANDARD"
        assert "Owner" not in o
    out = c.list_objects_v2(Bucket="list", Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == utf8_sorted(k for k in KEYS if "/" not in k)
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/", "c/", "ü/", "日本/"]
    assert out["KeyCount"] == len(out["Contents"]) + len(out["CommonPrefixes"])
    out = c.list_objects_v2(Bucket="list", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["a/", "a/1", "a/2"]  # "a/" is a key too
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/b/"]
    assert out["Prefix"] == "a/" and out["Delimiter"] == "/"
    out = c.list_objects_v2(Bucket="list", Prefix="a")
    assert [o["Key"] for o in out["Contents"]] == utf8_sorted(k for k in KEYS if k.startswith("a"))
    # Prefixes that need percent-encoding in the query (and in its signature).
    for prefix in ("a b", "a+", "a%", "日本/", "ü", "a/b/c/"):
        out = c.list_objects_v2(Bucket="list", Prefix=prefix)
        assert [o["Key"] for o in out.get("Contents", [])] == \
            utf8_sorted(k for k in KEYS if k.startswith(prefix)), prefix
    out = c.list_objects_v2(Bucket="list", Prefix="nothing/")
    assert out["KeyCount"] == 0 and "Contents" not in out
    # A delimiter that is not '/'.
    out = c.list_objects_v2(Bucket="list", Delimiter="b")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a b", "a%b", "a+b", "a/b", "b"]
    out = c.list_objects_v2(Bucket="list", StartAfter="c/d")
    assert [o["Key"] for o in out["Contents"]] == \
        utf8_sorted(k for k in KEYS if k.encode() > b"c/d")
    out = c.list_objects_v2(Bucket="list", FetchOwner=True, MaxKeys=2)
    assert all(o["Owner"]["ID"] for o in out["Contents"])


def test_list_v2_paging(listed):
    c = listed
    for delimiter in ("", "/"):
        full = c.list_objects_v2(Bucket="list", Delimiter=delimiter)
        want = ([o["Key"] for o in full.get("Contents", [])],
                [p["Prefix"] for p in full.get("CommonPrefixes", [])])
        for page_size in (1, 2, 5):
            keys, prefixes, token, pages = [], [], None, 0
            while True:
                kw = {"ContinuationToken": token} if token else {}
                out = c.list_objects_v2(Bucket="list", MaxKeys=page_size, Delimiter=delimiter,
                                        **kw)
                n = len(out.get("Contents", [])) + len(out.get("CommonPrefixes", []))
                assert n == out["KeyCount"] and 0 < n <= page_size
                keys += [o["Key"] for o in out.get("Contents", [])]
                prefixes += [p["Prefix"] for p in out.get("CommonPrefixes", [])]
                pages += 1
                assert pages <= len(KEYS), "paging does not end"
                if not out["IsTruncated"]:
                    assert "NextContinuationToken" not in out
                    break
                token = out["NextContinuationToken"]
                assert out.get("ContinuationToken") == kw.get("ContinuationToken")
            assert (keys, prefixes) == want, (delimiter, page_size)


def test_list_v2_token_survives_changes(listed):
    """A continuation token stays valid when the key it points after is deleted; keys created
    behind the cursor are not returned, keys created ahead of it are."""
    c = listed
    want = utf8_sorted(KEYS)
    out = c.list_objects_v2(Bucket="list", MaxKeys=4)
    seen = [o["Key"] for o in out["Contents"]]
    assert seen == want[:4]
    c.delete_object(Bucket="list", Key=seen[-1])
    c.put_object(Bucket="list", Key="0-behind", Body=b"")
    c.put_object(Bucket="list", Key="zz-ahead", Body=b"")
    token = out["NextContinuationToken"]
    for _ in range(len(KEYS)):
        out = c.list_objects_v2(Bucket="list", MaxKeys=4, ContinuationToken=token)
        seen += [o["Key"] for o in out["Contents"]]
        if not out["IsTruncated"]:
            break
        token = out["NextContinuationToken"]
    assert seen == utf8_sorted(want + ["zz-ahead"])


def test_list_bad_arguments(listed, s3):
    for query in ("list-type=2&max-keys=-1", "list-type=2&max-keys=abc",
                  "list-type=2&continuation-token=%21%21garbage",
                  "list-type=2&encoding-type=base64"):
        r = s3.request("GET", "/list", query)
        assert (r.status, r.code) == (400, "InvalidArgument"), (query, r)
    with pytest.raises(ClientError) as e:
        listed.list_objects_v2(Bucket="nolist")
    assert s3_error(e) == ("NoSuchBucket", 404)


def test_encoding_type_url(listed, s3):
    c = listed
    c.put_object(Bucket="list", Key="ctl\x01char", Body=b"")
    r = s3.request("GET", "/list", "list-type=2&encoding-type=url")
    assert r.status == 200, r
    root = r.xml()
    ns = root.tag[:-len("ListBucketResult")]
    assert root.findtext(ns + "EncodingType") == "url"
    raw = [e.text for e in root.iter(ns + "Key")]
    decoded = [urllib.parse.unquote_plus(k) for k in raw]
    assert decoded == utf8_sorted(KEYS + ["ctl\x01char"])
    assert all(all(ch.isascii() and ch.isprintable() and ch != " " for ch in k) for k in raw)
    # boto3 asks for encoding-type=url by itself and decodes; the key comes back intact.
    assert "ctl\x01char" in list_all_keys(c, "list")


def test_list_v1_markers(listed):
    c = listed
    want = utf8_sorted(KEYS)
    keys, marker, pages = [], "", 0
    while True:
        out = c.list_objects(Bucket="list", MaxKeys=4, Marker=marker)
        keys += [o["Key"] for o in out["Contents"]]
        assert out["Marker"] == marker
        pages += 1
        assert pages <= len(KEYS)
        if not out["IsTruncated"]:
            break
        marker = keys[-1]
    assert keys == want
    out = c.list_objects(Bucket="list", Delimiter="/", MaxKeys=3)
    assert out["IsTruncated"] is True
    got = [o["Key"] for o in out.get("Contents", [])] + \
        [p["Prefix"] for p in out.get("CommonPrefixes", [])]
    assert out["NextMarker"] == max(got, key=lambda k: k.encode())
    out = c.list_objects(Bucket="list", Marker="ü")
    assert [o["Key"] for o in out["Contents"]] == [k for k in want if k.encode() > "ü".encode()]
    # Objects in v1 carry their owner.
    assert all(o["Owner"]["ID"] for o in c.list_objects(Bucket="list")["Contents"])


def test_list_object_versions_unversioned(listed):
    out = listed.list_object_versions(Bucket="list", Prefix="a/")
    vs = out["Versions"]
    assert [v["Key"] for v in vs] == ["a/", "a/1", "a/2", "a/b/3", "a/b/c/d/e"]
    assert all(v["VersionId"] == "null" and v["IsLatest"] is True for v in vs)
    assert out.get("DeleteMarkers", []) == []
    out = listed.list_object_versions(Bucket="list", Delimiter="/", Prefix="a/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/b/"]
    got = listed.get_object(Bucket="list", Key="a/1", VersionId="null")
    assert got["Body"].read() == b"a/1"


def _put_many(s3, bucket, keys, threads=16):
    """Creates empty objects over keep-alive connections, signed by the test's own signer:
    boto3 costs a few milliseconds of client CPU per request, which on a 2-core machine would
    make the client, not the daemon, the thing measured."""
    import http.client
    it = iter(keys)
    lock = threading.Lock()
    failures = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=60)
        while True:
            with lock:
                k = next(it, None)
            if k is None:
                break
            path = f"/{bucket}/{urllib.parse.quote(k)}"
            h = sigv4_sign("PUT", s3.host, path, "", {}, b"", s3.access_key, s3.secret_key)
            h["Content-Length"] = "0"
            conn.request("PUT", path, body=b"", headers=h)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failures.append((k, r.status))
                break
        conn.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    assert failures == []


@pytest.mark.slow
def test_hundred_thousand_keys(start_s3, tmp_path):
    # fsync off: this test is about listing, not durability (test_s3_crash.py covers that).
    s3 = start_s3(fsync=False)
    c = s3.client()
    c.create_bucket(Bucket="many")
    n = 100_000
    keys = [f"{i % 10}/{i:06d}" for i in range(n)]
    t0 = time.monotonic()
    _put_many(s3, "many", keys)
    created = time.monotonic() - t0
    print(f"created {n} objects in {created:.1f}s")
    want = sorted(keys)
    pages, got = 0, []
    for page in c.get_paginator("list_objects_v2").paginate(Bucket="many"):
        pages += 1
        assert page["KeyCount"] == len(page["Contents"]) <= 1000
        got += [o["Key"] for o in page["Contents"]]
    assert pages == n // 1000
    assert got == want
    # v1 with markers, 1000 at a time, and max-keys above 1000 is capped to 1000.
    got = []
    for page in c.get_paginator("list_objects").paginate(Bucket="many"):
        got += [o["Key"] for o in page["Contents"]]
    assert got == want
    assert c.list_objects_v2(Bucket="many", MaxKeys=5000)["KeyCount"] == 1000
    out = c.list_objects_v2(Bucket="many", Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == [f"{i}/" for i in range(10)]
    assert "Contents" not in out
    out = c.list_objects_v2(Bucket="many", Prefix="7/", StartAfter="7/050000", MaxKeys=3)
    assert [o["Key"] for o in out["Contents"]] == ["7/050007", "7/050017", "7/050027"]
    # The CLI sees the same count.
    p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3", "ls", "s3://many",
                        "--recursive", "--summarize"], capture_output=True, text=True,
                       env=aws_cli_env(s3, tmp_path), timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Total Objects: 100000" in p.stdout
