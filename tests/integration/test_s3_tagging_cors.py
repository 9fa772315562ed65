# SPDX-License-Identifier: Apache-2.0
"""sov-s3 object and bucket tagging and CORS, through boto3, /usr/bin/aws and raw HTTP: tag round
trips, x-amz-tagging on PUT, CopyObject (COPY and REPLACE directives) and multipart uploads, the
tag count of GET, AWS's tag limits (refused requests change nothing), tags of one version, tags
and rules after a restart; CORS rules round trip and their checks, preflight requests allowed and
refused, Access-Control-* headers on actual requests, and DeleteBucketCors."""
import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli_env, s3_error


def tagset(d):
    return [{"Key": k, "Value": v} for k, v in d.items()]


def tags_of(resp):
    return {t["Key"]: t["Value"] for t in resp["TagSet"]}


def error_of(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    return s3_error(e)


@pytest.fixture
def bucket(s3):
    c = s3.client()
    c.create_bucket(Bucket="tags")
    return c


@pytest.fixture
def aws(s3, tmp_path):
    """Runs `aws s3api ...` against the daemon and returns the parsed JSON output (None when
    there is none); ok=False returns the CompletedProcess instead."""
    env = aws_cli_env(s3, tmp_path)

    def run(*args, ok=True):
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3api", *map(str, args)],
                           capture_output=True, text=True, env=env, timeout=120)
        if not ok:
            return p
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else None
    return run


# ---- object tagging ----

def test_object_tagging_round_trip(bucket):
    c = bucket
    c.put_object(Bucket="tags", Key="a/obj", Body=b"data")
    assert c.get_object_tagging(Bucket="tags", Key="a/obj")["TagSet"] == []
    assert "TagCount" not in c.get_object(Bucket="tags", Key="a/obj")
    tags = {"project": "sov cloud", "env": "prod", "path": "a/b:c@d=e+f_g.h-i", "empty": "",
            "ключ": "значение"}
    c.put_object_tagging(Bucket="tags", Key="a/obj", Tagging={"TagSet": tagset(tags)})
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="a/obj")) == tags
    got = c.get_object(Bucket="tags", Key="a/obj")
    assert got["TagCount"] == len(tags) and got["Body"].read() == b"data"
    # A new tag set replaces the old one as a whole.
    c.put_object_tagging(Bucket="tags", Key="a/obj", Tagging={"TagSet": tagset({"only": "1"})})
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="a/obj")) == {"only": "1"}
    assert c.head_object(Bucket="tags", Key="a/obj")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-tagging-count"] == "1"
    resp = c.delete_object_tagging(Bucket="tags", Key="a/obj")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert c.get_object_tagging(Bucket="tags", Key="a/obj")["TagSet"] == []
    assert "TagCount" not in c.get_object(Bucket="tags", Key="a/obj")
    # Tags are not metadata: they never come back as headers.
    head = c.head_object(Bucket="tags", Key="a/obj")
    assert head["Metadata"] == {}
    # An empty tag set is no tags at all.
    c.put_object_tagging(Bucket="tags", Key="a/obj", Tagging={"TagSet": tagset({"x": "y"})})
    c.put_object_tagging(Bucket="tags", Key="a/obj", Tagging={"TagSet": []})
    assert c.get_object_tagging(Bucket="tags", Key="a/obj")["TagSet"] == []


def test_object_tagging_missing_key_or_bucket(bucket):
    c = bucket
    assert error_of(c.get_object_tagging, Bucket="tags", Key="nope") == ("NoSuchKey", 404)
    assert error_of(c.put_object_tagging, Bucket="tags", Key="nope",
                    Tagging={"TagSet": tagset({"a": "b"})}) == ("NoSuchKey", 404)
    assert error_of(c.delete_object_tagging, Bucket="tags", Key="nope") == ("NoSuchKey", 404)
    assert error_of(c.get_object_tagging, Bucket="no-such-bucket",
                    Key="k") == ("NoSuchBucket", 404)
    c.put_object(Bucket="tags", Key="k", Body=b"x")
    assert error_of(c.get_object_tagging, Bucket="tags", Key="k",
                    VersionId="not-a-version") == ("InvalidArgument", 400)
    assert error_of(c.get_object_tagging, Bucket="tags", Key="k",
                    VersionId="0" * 32) == ("NoSuchVersion", 404)


def test_tagging_header_on_put_copy_and_multipart(bucket):
    c = bucket
    c.put_object(Bucket="tags", Key="src", Body=b"source",
                 Tagging="a=1&b=two%20words&c=x%2By")
    src_tags = {"a": "1", "b": "two words", "c": "x+y"}
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="src")) == src_tags
    assert c.get_object(Bucket="tags", Key="src")["TagCount"] == 3

    # CopyObject keeps the source's tags by default (x-amz-tagging is then ignored) ...
    c.copy_object(Bucket="tags", Key="copy-default", CopySource="tags/src")
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="copy-default")) == src_tags
    c.copy_object(Bucket="tags", Key="copy-explicit", CopySource="tags/src",
                  TaggingDirective="COPY", Tagging="ignored=1")
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="copy-explicit")) == src_tags
    # ... and takes x-amz-tagging instead with REPLACE (none given: no tags).
    c.copy_object(Bucket="tags", Key="copy-replace", CopySource="tags/src",
                  TaggingDirective="REPLACE", Tagging="new=tag")
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="copy-replace")) == {"new": "tag"}
    c.copy_object(Bucket="tags", Key="copy-none", CopySource="tags/src",
                  TaggingDirective="REPLACE")
    assert c.get_object_tagging(Bucket="tags", Key="copy-none")["TagSet"] == []
    assert c.get_object(Bucket="tags", Key="copy-none")["Body"].read() == b"source"
    # The source is untouched.
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="src")) == src_tags

    # A multipart upload's tags come from CreateMultipartUpload.
    up = c.create_multipart_upload(Bucket="tags", Key="mp", Tagging="part=yes")
    etag = c.upload_part(Bucket="tags", Key="mp", UploadId=up["UploadId"], PartNumber=1,
                         Body=b"m" * 1000)["ETag"]
    c.complete_multipart_upload(Bucket="tags", Key="mp", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="mp")) == {"part": "yes"}

    # An overwrite without x-amz-tagging has no tags.
    c.put_object(Bucket="tags", Key="src", Body=b"again")
    assert c.get_object_tagging(Bucket="tags", Key="src")["TagSet"] == []


def test_invalid_tags_refused_and_nothing_changed(s3, bucket):
    c = bucket
    c.put_object(Bucket="tags", Key="obj", Body=b"x", Tagging="keep=me")
    before = {"keep": "me"}
    # UTF-16 units count: 128 two-byte characters and 64 surrogate pairs are fine keys.
    ok_keys = {"é" * 128: "v" * 256, "😀" * 64: "😀" * 128}
    c.put_object_tagging(Bucket="tags", Key="obj", Tagging={"TagSet": tagset(ok_keys)})
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="obj")) == ok_keys
    c.put_object_tagging(Bucket="tags", Key="obj", Tagging={"TagSet": tagset(before)})

    bad = [
        tagset({f"k{i}": "v" for i in range(11)}),      # more than 10
        tagset({"k" * 129: "v"}),                       # key too long
        tagset({"😀" * 65: "v"}),                       # 130 UTF-16 units
        tagset({"k": "v" * 257}),                       # value too long
        tagset({"aws:owner": "me"}),                    # reserved prefix
        tagset({"semi;colon": "v"}),                    # character not allowed
        tagset({"k": "a,b"}),
        [{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}],
    ]
    for ts in bad:
        assert error_of(c.put_object_tagging, Bucket="tags", Key="obj",
                        Tagging={"TagSet": ts}) == ("InvalidTag", 400), ts
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="obj")) == before
    # An empty key (boto3 does not send one).
    r = s3.request("PUT", "/tags/obj", "tagging=",
                   body=b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet>"
                        b"</Tagging>")
    assert (r.status, r.code) == (400, "InvalidTag")

    # Documents that are not a Tagging document.
    for body in [b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
                 b"<Tagging></Tagging>", b"<Other><TagSet/></Other>", b"<Tagging><TagSet>",
                 b"not xml"]:
        r = s3.request("PUT", "/tags/obj", "tagging=", body=body)
        assert (r.status, r.code) == (400, "MalformedXML"), body
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="obj")) == before

    # x-amz-tagging on a PUT is checked the same way: the object is not created.
    for header in ["aws:x=1", "&".join(f"k{i}=v" for i in range(11)), "a=1&a=2", "k=a%2Cb"]:
        assert error_of(c.put_object, Bucket="tags", Key="new", Body=b"n",
                        Tagging=header) == ("InvalidTag", 400), header
    assert error_of(c.head_object, Bucket="tags", Key="new")[1] == 404
    # A copy with bad tags leaves the target as it was.
    assert error_of(c.copy_object, Bucket="tags", Key="obj", CopySource="tags/obj",
                    MetadataDirective="REPLACE", TaggingDirective="REPLACE",
                    Tagging="aws:x=1") == ("InvalidTag", 400)
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="obj")) == before


def test_tags_of_one_version(bucket):
    c = bucket
    c.put_bucket_versioning(Bucket="tags", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="tags", Key="v", Body=b"one", Tagging="gen=1")["VersionId"]
    v2 = c.put_object(Bucket="tags", Key="v", Body=b"two", Tagging="gen=2")["VersionId"]
    assert v1 != v2
    resp = c.put_object_tagging(Bucket="tags", Key="v", VersionId=v1,
                                Tagging={"TagSet": tagset({"gen": "old"})})
    assert resp["VersionId"] == v1
    got = c.get_object_tagging(Bucket="tags", Key="v", VersionId=v1)
    assert tags_of(got) == {"gen": "old"} and got["VersionId"] == v1
    got = c.get_object_tagging(Bucket="tags", Key="v")
    assert tags_of(got) == {"gen": "2"} and got["VersionId"] == v2
    resp = c.delete_object_tagging(Bucket="tags", Key="v")
    assert resp["VersionId"] == v2
    assert c.get_object_tagging(Bucket="tags", Key="v")["TagSet"] == []
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="v", VersionId=v1)) == {"gen": "old"}


def test_object_and_bucket_tagging_with_aws_cli(bucket, aws):
    bucket.put_object(Bucket="tags", Key="cli", Body=b"x")
    ts = json.dumps({"TagSet": tagset({"team": "storage", "tier": "gold"})})
    aws("put-object-tagging", "--bucket", "tags", "--key", "cli", "--tagging", ts)
    out = aws("get-object-tagging", "--bucket", "tags", "--key", "cli")
    assert tags_of(out) == {"team": "storage", "tier": "gold"}
    aws("delete-object-tagging", "--bucket", "tags", "--key", "cli")
    assert aws("get-object-tagging", "--bucket", "tags", "--key", "cli")["TagSet"] == []

    p = aws("get-bucket-tagging", "--bucket", "tags", ok=False)
    assert p.returncode != 0 and "NoSuchTagSet" in p.stderr
    aws("put-bucket-tagging", "--bucket", "tags", "--tagging",
        json.dumps({"TagSet": tagset({"cost-center": "42"})}))
    assert tags_of(aws("get-bucket-tagging", "--bucket", "tags")) == {"cost-center": "42"}
    aws("delete-bucket-tagging", "--bucket", "tags")
    p = aws("get-bucket-tagging", "--bucket", "tags", ok=False)
    assert p.returncode != 0 and "NoSuchTagSet" in p.stderr


def test_bucket_tagging(bucket):
    c = bucket
    assert error_of(c.get_bucket_tagging, Bucket="tags") == ("NoSuchTagSet", 404)
    fifty = {f"key-{i}": f"value {i}" for i in range(50)}
    resp = c.put_bucket_tagging(Bucket="tags", Tagging={"TagSet": tagset(fifty)})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(c.get_bucket_tagging(Bucket="tags")) == fifty
    too_many = dict(fifty, extra="1")
    for ts in [tagset(too_many), tagset({"aws:x": "1"}), tagset({"k" * 129: "v"})]:
        assert error_of(c.put_bucket_tagging, Bucket="tags",
                        Tagging={"TagSet": ts}) == ("InvalidTag", 400)
    assert tags_of(c.get_bucket_tagging(Bucket="tags")) == fifty
    c.put_bucket_tagging(Bucket="tags", Tagging={"TagSet": tagset({"a": "b"})})
    assert tags_of(c.get_bucket_tagging(Bucket="tags")) == {"a": "b"}
    # Bucket tags are not object tags.
    c.put_object(Bucket="tags", Key="o", Body=b"x")
    assert c.get_object_tagging(Bucket="tags", Key="o")["TagSet"] == []
    assert c.delete_bucket_tagging(Bucket="tags")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(c.get_bucket_tagging, Bucket="tags") == ("NoSuchTagSet", 404)
    assert error_of(c.get_bucket_tagging, Bucket="no-such-bucket") == ("NoSuchBucket", 404)


# ---- CORS ----

RULES = [
    {"ID": "site", "AllowedOrigins": ["https://www.example.com"],
     "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["content-type", "x-amz-*"],
     "ExposeHeaders": ["ETag", "x-amz-request-id"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["http://*.example.org"], "AllowedMethods": ["GET", "HEAD"]},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"], "AllowedHeaders": ["*"]},
]


def preflight(s3, path, origin=None, method=None, headers=None):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return s3.request("OPTIONS", path, headers=h, sign=False)


def test_cors_configuration_round_trip(bucket, aws):
    c = bucket
    assert error_of(c.get_bucket_cors, Bucket="tags") == ("NoSuchCORSConfiguration", 404)
    resp = c.put_bucket_cors(Bucket="tags", CORSConfiguration={"CORSRules": RULES})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert c.get_bucket_cors(Bucket="tags")["CORSRules"] == RULES
    assert aws("get-bucket-cors", "--bucket", "tags")["CORSRules"] == RULES

    bad = [
        ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}, "InvalidRequest"),
        ({"AllowedOrigins": ["http://*.*.example.com"], "AllowedMethods": ["GET"]},
         "InvalidRequest"),
        ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "ExposeHeaders": ["*"]},
         "InvalidRequest"),
        ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["*-*"]},
         "InvalidRequest"),
    ]
    for rule, code in bad:
        assert error_of(c.put_bucket_cors, Bucket="tags",
                        CORSConfiguration={"CORSRules": [rule]}) == (code, 400), rule
    too_many = [{"AllowedOrigins": [f"https://h{i}.example"], "AllowedMethods": ["GET"]}
                for i in range(101)]
    assert error_of(c.put_bucket_cors, Bucket="tags",
                    CORSConfiguration={"CORSRules": too_many})[1] == 400
    assert c.get_bucket_cors(Bucket="tags")["CORSRules"] == RULES

    # Through the CLI: a new configuration replaces the old one; 100 rules is the limit.
    cfg = {"CORSRules": too_many[:100]}
    aws("put-bucket-cors", "--bucket", "tags", "--cors-configuration", json.dumps(cfg))
    assert c.get_bucket_cors(Bucket="tags")["CORSRules"] == cfg["CORSRules"]
    aws("delete-bucket-cors", "--bucket", "tags")
    p = aws("get-bucket-cors", "--bucket", "tags", ok=False)
    assert p.returncode != 0 and "NoSuchCORSConfiguration" in p.stderr


def test_cors_malformed_documents(s3, bucket):
    for body in [b"<CORSConfiguration></CORSConfiguration>",
                 b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
                 b"</CORSConfiguration>",
                 b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"
                 b"</CORSConfiguration>",
                 b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>"
                 b"GET</AllowedMethod><MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule>"
                 b"</CORSConfiguration>",
                 b"<Other/>", b"<CORSConfiguration>"]:
        r = s3.request("PUT", "/tags", "cors=", body=body)
        assert (r.status, r.code) == (400, "MalformedXML"), body
    assert error_of(bucket.get_bucket_cors, Bucket="tags") == ("NoSuchCORSConfiguration", 404)


def test_cors_preflight_and_actual_requests(s3, bucket):
    c = bucket
    c.put_object(Bucket="tags", Key="page.html", Body=b"<p>hi</p>")
    # Without a configuration every preflight is refused.
    r = preflight(s3, "/tags/page.html", "https://www.example.com", "GET")
    assert (r.status, r.code) == (403, "AccessForbidden")
    c.put_bucket_cors(Bucket="tags", CORSConfiguration={"CORSRules": RULES})

    r = preflight(s3, "/tags/page.html", "https://www.example.com", "PUT",
                  "Content-Type, X-Amz-Meta-Color")
    assert r.status == 200, r
    h = {k.lower(): v for k, v in r.headers.items()}
    assert h["access-control-allow-origin"] == "https://www.example.com"
    assert [m.strip() for m in h["access-control-allow-methods"].split(",")] == ["GET", "PUT"]
    assert h["access-control-allow-headers"] == "Content-Type, X-Amz-Meta-Color"
    assert h["access-control-max-age"] == "600"
    assert [m.strip() for m in h["access-control-expose-headers"].split(",")] == \
        ["ETag", "x-amz-request-id"]
    assert h["access-control-allow-credentials"] == "true"
    assert "Origin" in h["vary"]

    # The wildcard origin rule; the bucket itself (no key) answers the same way.
    r = preflight(s3, "/tags", "http://app.example.org", "GET")
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == \
        "http://app.example.org"
    # A rule of origin "*" answers "*" (and no credentials).
    r = preflight(s3, "/tags/page.html", "https://anyone.test", "HEAD", "x-anything")
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers

    refused = [
        ("https://evil.example.com", "GET", None),          # origin not listed
        ("https://www.example.com", "DELETE", None),        # method not allowed
        ("https://www.example.com", "GET", "authorization"),  # header not allowed
        ("https://example.org", "GET", None),               # "http://*.example.org" needs a dot
        ("http://app.example.org", "PUT", None),
        ("https://www.example.com", "PATCH", None),         # no rule can allow it
    ]
    for origin, method, hdrs in refused:
        r = preflight(s3, "/tags/page.html", origin, method, hdrs)
        assert (r.status, r.code) == (403, "AccessForbidden"), (origin, method, hdrs)
        assert "Access-Control-Allow-Origin" not in r.headers

    # Missing request headers; a bucket that does not exist.
    r = preflight(s3, "/tags/page.html", method="GET")
    assert r.status == 400 and r.code == "BadRequest"
    r = preflight(s3, "/tags/page.html", origin="https://www.example.com")
    assert r.status == 400 and r.code == "BadRequest"
    r = preflight(s3, "/no-such-bucket/x", "https://www.example.com", "GET")
    assert (r.status, r.code) == (404, "NoSuchBucket")

    # Actual requests with an Origin carry the headers of the first matching rule.
    r = s3.request("GET", "/tags/page.html", headers={"Origin": "https://www.example.com"})
    assert r.status == 200 and r.body == b"<p>hi</p>"
    assert r.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    r = s3.request("GET", "/tags/page.html", headers={"Origin": "http://cdn.example.org"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == \
        "http://cdn.example.org"
    # No matching rule, or no Origin: no CORS headers, and the request still works.
    r = s3.request("GET", "/tags/page.html", headers={"Origin": "https://evil.example.com"})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = s3.request("GET", "/tags/page.html")
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    # An error answer carries them too (the browser can then read the error).
    r = s3.request("GET", "/tags/missing", headers={"Origin": "https://www.example.com"})
    assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == \
        "https://www.example.com"

    c.delete_bucket_cors(Bucket="tags")
    r = preflight(s3, "/tags/page.html", "https://www.example.com", "GET")
    assert (r.status, r.code) == (403, "AccessForbidden")
    r = s3.request("GET", "/tags/page.html", headers={"Origin": "https://www.example.com"})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


# ---- durability ----

def test_tags_and_cors_survive_restart(s3, bucket):
    c = bucket
    c.put_object(Bucket="tags", Key="durable", Body=b"x", Tagging="a=1")
    c.put_object_tagging(Bucket="tags", Key="durable",
                         Tagging={"TagSet": tagset({"kept": "yes", "n": "2"})})
    c.put_bucket_tagging(Bucket="tags", Tagging={"TagSet": tagset({"bucket": "tag"})})
    c.put_bucket_cors(Bucket="tags", CORSConfiguration={"CORSRules": RULES[:1]})
    s3.restart()
    c = s3.client()
    assert tags_of(c.get_object_tagging(Bucket="tags", Key="durable")) == \
        {"kept": "yes", "n": "2"}
    assert c.get_object(Bucket="tags", Key="durable")["TagCount"] == 2
    assert tags_of(c.get_bucket_tagging(Bucket="tags")) == {"bucket": "tag"}
    assert c.get_bucket_cors(Bucket="tags")["CORSRules"] == RULES[:1]
    r = preflight(s3, "/tags/durable", "https://www.example.com", "GET")
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == \
        "https://www.example.com"
