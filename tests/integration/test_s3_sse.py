# SPDX-License-Identifier: Apache-2.0
"""sov-s3 server-side encryption with real clients: SSE-S3 (x-amz-server-side-encryption: AES256
and the bucket default), SSE-C (customer keys: wrong, missing and mismatched keys refused),
multipart uploads and copies across encryptions, ranges and partNumber reads in plaintext terms,
no plaintext anywhere on disk (data dir and erasure-coded drives), master key rotation through
POST /_sov/rotate-key, kill -9 and restart, and tampered stored bytes that must never read back
as wrong plaintext."""
import base64
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from conftest import aws_cli_env, s3_error
from test_s3_ec import drives_of, short_dir, start_ec  # noqa: F401 (short_dir is a fixture)

MIB = 1024 * 1024
MARK = b"SOV-PLAINTEXT-MARK:"
SIZES = [0, 1, 300_000, 3 * MIB + 7]  # inline (64K default) and data files
KEY1, KEY2 = os.urandom(32), os.urandom(32)


def body(size, seed):
    """Searchable plaintext: MARK and a counter over and over."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += MARK + b"%d-%08d|" % (seed, i)
        i += 1
    return bytes(out[:size])


def ssec(key, prefix=""):
    """boto3 SSE-C arguments (boto3 adds the key MD5 itself)."""
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def ssec_headers(key, md5_of=None):
    return {"x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
            "x-amz-server-side-encryption-customer-key-MD5":
                base64.b64encode(hashlib.md5(md5_of or key).digest()).decode()}


def files_under(*dirs):
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in names:
                yield os.path.join(root, n)


def plaintext_on_disk(*dirs, pattern=MARK):
    return [p for p in files_under(*dirs) if pattern in open(p, "rb").read()]


def admin(s3, path):
    token = (s3.data_dir / "admin.token").read_text()
    req = urllib.request.Request(s3.url + path, method="POST",
                                 headers={"x-sov-admin-token": token})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def check_reads(c, bucket, key, data, extra=None):
    """Whole GET, HEAD and a few ranges (inside a block, across the 256 KiB block boundary,
    suffix, open-ended) must all give the plaintext."""
    extra = extra or {}
    got = c.get_object(Bucket=bucket, Key=key, **extra)
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data, key
    head = c.head_object(Bucket=bucket, Key=key, **extra)
    assert head["ContentLength"] == len(data)
    if not data:
        return got, head
    n = len(data)
    for a, b in [(0, 0), (n // 3, n // 3 + 5), (262_140, 262_150), (n - 1, n - 1),
                 (1000, 600_000)]:
        if a >= n:
            continue
        b = min(b, n - 1)
        r = c.get_object(Bucket=bucket, Key=key, Range=f"bytes={a}-{b}", **extra)
        assert r["Body"].read() == data[a:b + 1], (key, a, b)
        assert r["ContentRange"] == f"bytes {a}-{b}/{n}"
    r = c.get_object(Bucket=bucket, Key=key, Range="bytes=-7", **extra)
    assert r["Body"].read() == data[-7:]
    r = c.get_object(Bucket=bucket, Key=key, Range=f"bytes={n // 2}-", **extra)
    assert r["Body"].read() == data[n // 2:]
    return got, head


def test_sse_s3_round_trips_and_nothing_plain_on_disk(s3):
    c = s3.client()
    c.create_bucket(Bucket="enc")
    objs = {}
    for i, size in enumerate(SIZES):
        data = body(size, i)
        resp = c.put_object(Bucket="enc", Key=f"o{size}", Body=data, ServerSideEncryption="AES256")
        assert resp["ServerSideEncryption"] == "AES256"
        assert resp["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
        objs[f"o{size}"] = data
    for key, data in objs.items():
        got, head = check_reads(c, "enc", key, data)
        assert got["ServerSideEncryption"] == "AES256"
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    listed = {o["Key"]: o["Size"] for o in c.list_objects_v2(Bucket="enc")["Contents"]}
    assert listed == {k: len(v) for k, v in objs.items()}
    assert plaintext_on_disk(s3.data_dir) == []
    # the scan does see plaintext: an unencrypted object is found (inline and file)
    c.put_object(Bucket="enc", Key="plain-small", Body=b"PLAIN-SEEN" * 10)
    c.put_object(Bucket="enc", Key="plain-big", Body=body(300_000, 99).replace(MARK, b"PLAIN-BIG"))
    assert plaintext_on_disk(s3.data_dir, pattern=b"PLAIN-SEEN")
    assert plaintext_on_disk(s3.data_dir, pattern=b"PLAIN-BIG")
    assert "ServerSideEncryption" not in c.head_object(Bucket="enc", Key="plain-big")
    # an unknown algorithm and KMS are refused
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="enc", Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert s3_error(e) == ("NotImplemented", 501)
    r = s3.request("PUT", "/enc/bad", headers={"x-amz-server-side-encryption": "AES128"},
                   body=b"x")
    assert (r.status, r.code) == (400, "InvalidEncryptionAlgorithmError")


def test_sse_c_keys(s3):
    c = s3.client()
    c.create_bucket(Bucket="cust")
    for size in (5, 300_000):
        data = body(size, size)
        resp = c.put_object(Bucket="cust", Key=f"c{size}", Body=data, **ssec(KEY1))
        assert resp["SSECustomerAlgorithm"] == "AES256"
        md5 = base64.b64encode(hashlib.md5(KEY1).digest()).decode()
        assert resp["SSECustomerKeyMD5"] == md5
        got, head = check_reads(c, "cust", f"c{size}", data, ssec(KEY1))
        assert got["SSECustomerKeyMD5"] == md5 and head["SSECustomerKeyMD5"] == md5
        assert "ServerSideEncryption" not in got
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="cust", Key=f"c{size}", **ssec(KEY2))
        assert s3_error(e) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="cust", Key=f"c{size}")
        assert s3_error(e) == ("InvalidRequest", 400)
        with pytest.raises(ClientError) as e:
            c.head_object(Bucket="cust", Key=f"c{size}")
        assert s3_error(e)[1] == 400
    # a key MD5 that is not the key's
    r = s3.request("PUT", "/cust/bad", headers=ssec_headers(KEY1, md5_of=KEY2), body=b"x")
    assert (r.status, r.code) == (400, "InvalidArgument")
    r = s3.request("GET", "/cust/c5", headers=ssec_headers(KEY1, md5_of=KEY2))
    assert (r.status, r.code) == (400, "InvalidArgument")
    # SSE-C and SSE-S3 together; key headers on an object that is not SSE-C
    r = s3.request("PUT", "/cust/both", headers={**ssec_headers(KEY1),
                                                  "x-amz-server-side-encryption": "AES256"},
                   body=b"x")
    assert (r.status, r.code) == (400, "InvalidArgument")
    c.put_object(Bucket="cust", Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="cust", Key="plain", **ssec(KEY1))
    assert s3_error(e) == ("InvalidRequest", 400)
    assert plaintext_on_disk(s3.data_dir) == []


def test_multipart_sse_s3_and_sse_c(s3):
    c = s3.client()
    c.create_bucket(Bucket="mpu")
    p1, p2 = body(5 * MIB, 1), body(MIB + 3, 2)
    whole = p1 + p2
    # SSE-S3
    up = c.create_multipart_upload(Bucket="mpu", Key="s3", ServerSideEncryption="AES256")
    assert up["ServerSideEncryption"] == "AES256"
    uid = up["UploadId"]
    e1 = c.upload_part(Bucket="mpu", Key="s3", UploadId=uid, PartNumber=1, Body=p1)
    assert e1["ServerSideEncryption"] == "AES256"
    e2 = c.upload_part(Bucket="mpu", Key="s3", UploadId=uid, PartNumber=2, Body=p2)
    parts = c.list_parts(Bucket="mpu", Key="s3", UploadId=uid)["Parts"]
    assert [p["Size"] for p in parts] == [len(p1), len(p2)]
    done = c.complete_multipart_upload(
        Bucket="mpu", Key="s3", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": e2["ETag"]}]})
    assert done["ServerSideEncryption"] == "AES256"
    check_reads(c, "mpu", "s3", whole)
    r = c.get_object(Bucket="mpu", Key="s3", Range=f"bytes={len(p1) - 10}-{len(p1) + 10}")
    assert r["Body"].read() == whole[len(p1) - 10:len(p1) + 11]
    r = c.get_object(Bucket="mpu", Key="s3", PartNumber=2)
    assert r["ContentLength"] == len(p2) and r["Body"].read() == p2
    # SSE-C, with a part copied from the SSE-S3 object
    up = c.create_multipart_upload(Bucket="mpu", Key="c", **ssec(KEY1))
    uid = up["UploadId"]
    with pytest.raises(ClientError) as e:
        c.upload_part(Bucket="mpu", Key="c", UploadId=uid, PartNumber=1, Body=p1)
    assert s3_error(e) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        c.upload_part(Bucket="mpu", Key="c", UploadId=uid, PartNumber=1, Body=p1, **ssec(KEY2))
    assert s3_error(e) == ("AccessDenied", 403)
    e1 = c.upload_part(Bucket="mpu", Key="c", UploadId=uid, PartNumber=1, Body=p1, **ssec(KEY1))
    cp = c.upload_part_copy(Bucket="mpu", Key="c", UploadId=uid, PartNumber=2,
                            CopySource={"Bucket": "mpu", "Key": "s3"},
                            CopySourceRange=f"bytes={len(p1)}-{len(whole) - 1}", **ssec(KEY1))
    c.complete_multipart_upload(
        Bucket="mpu", Key="c", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": cp["CopyPartResult"]["ETag"]}]})
    check_reads(c, "mpu", "c", whole, ssec(KEY1))
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="mpu", Key="c")
    assert s3_error(e) == ("InvalidRequest", 400)
    assert plaintext_on_disk(s3.data_dir) == []


@pytest.mark.parametrize("size", [1000, 300_000])
def test_copy_sse_s3_to_sse_c_to_plain(s3, size):
    c = s3.client()
    c.create_bucket(Bucket="cpy")
    data = body(size, 7)
    c.put_object(Bucket="cpy", Key="a", Body=data, ServerSideEncryption="AES256")
    r = c.copy_object(Bucket="cpy", Key="b", CopySource={"Bucket": "cpy", "Key": "a"},
                      **ssec(KEY1))
    assert r["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY1).digest()).decode()
    got = c.get_object(Bucket="cpy", Key="b", **ssec(KEY1))
    assert got["Body"].read() == data and "ServerSideEncryption" not in got
    with pytest.raises(ClientError) as e:  # the source's key is needed
        c.copy_object(Bucket="cpy", Key="c", CopySource={"Bucket": "cpy", "Key": "b"})
    assert s3_error(e) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket="cpy", Key="c", CopySource={"Bucket": "cpy", "Key": "b"},
                      **ssec(KEY2, "CopySource"))
    assert s3_error(e) == ("AccessDenied", 403)
    assert plaintext_on_disk(s3.data_dir) == []
    c.copy_object(Bucket="cpy", Key="c", CopySource={"Bucket": "cpy", "Key": "b"},
                  **ssec(KEY1, "CopySource"))
    got = c.get_object(Bucket="cpy", Key="c")
    assert got["Body"].read() == data and "ServerSideEncryption" not in got
    assert got["ETag"] == '"' + hashlib.md5(data).hexdigest() + '"'
    # plain -> SSE-S3 again, and the SSE-S3 object onto itself with encryption (allowed)
    c.copy_object(Bucket="cpy", Key="d", CopySource={"Bucket": "cpy", "Key": "c"},
                  ServerSideEncryption="AES256")
    assert c.head_object(Bucket="cpy", Key="d")["ServerSideEncryption"] == "AES256"
    c.copy_object(Bucket="cpy", Key="d", CopySource={"Bucket": "cpy", "Key": "d"},
                  ServerSideEncryption="AES256")
    assert c.get_object(Bucket="cpy", Key="d")["Body"].read() == data
    assert plaintext_on_disk(s3.data_dir, pattern=MARK)  # "c" is plain


def test_bucket_default_encryption_and_aws_cli(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="def")
    with pytest.raises(ClientError) as e:
        c.get_bucket_encryption(Bucket="def")
    assert s3_error(e) == ("ServerSideEncryptionConfigurationNotFoundError", 404)
    with pytest.raises(ClientError) as e:
        c.put_bucket_encryption(Bucket="def", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    assert s3_error(e) == ("NotImplemented", 501)
    c.put_bucket_encryption(Bucket="def", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    conf = c.get_bucket_encryption(Bucket="def")["ServerSideEncryptionConfiguration"]
    assert conf["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    data = body(300_000, 3)
    assert c.put_object(Bucket="def", Key="x", Body=data)["ServerSideEncryption"] == "AES256"
    assert c.head_object(Bucket="def", Key="x")["ServerSideEncryption"] == "AES256"
    assert c.get_object(Bucket="def", Key="x")["Body"].read() == data
    # SSE-C still wins over the default
    c.put_object(Bucket="def", Key="y", Body=b"cust", **ssec(KEY1))
    assert "ServerSideEncryption" not in c.head_object(Bucket="def", Key="y", **ssec(KEY1))
    assert plaintext_on_disk(s3.data_dir) == []
    c.delete_bucket_encryption(Bucket="def")
    with pytest.raises(ClientError) as e:
        c.get_bucket_encryption(Bucket="def")
    assert s3_error(e)[1] == 404
    assert "ServerSideEncryption" not in c.put_object(Bucket="def", Key="z", Body=b"z")
    # the aws CLI: cp --sse AES256 and head-object
    src = tmp_path / "cli.bin"
    src.write_bytes(body(200_000, 4))
    env = aws_cli_env(s3, tmp_path)
    ep = ["--endpoint-url", s3.url]
    p = subprocess.run(["/usr/bin/aws", *ep, "s3", "cp", "--sse", "AES256", str(src),
                        "s3://def/cli.bin"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["/usr/bin/aws", *ep, "s3api", "head-object", "--bucket", "def", "--key",
                        "cli.bin"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ServerSideEncryption"] == "AES256"
    out = tmp_path / "back.bin"
    p = subprocess.run(["/usr/bin/aws", *ep, "s3", "cp", "s3://def/cli.bin", str(out)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == src.read_bytes()


def test_rotate_key_then_kill_and_restart(s3):
    c = s3.client()
    c.create_bucket(Bucket="rot")
    keys_dir = s3.data_dir / "keys"
    old = {f"old{size}": body(size, size) for size in (10, 300_000)}
    for k, v in old.items():
        c.put_object(Bucket="rot", Key=k, Body=v, ServerSideEncryption="AES256")
    c.put_object(Bucket="rot", Key="oldc", Body=b"customer data", **ssec(KEY1))
    kid0 = (keys_dir / "current").read_text().strip()
    with pytest.raises(urllib.error.HTTPError) as e:  # the token is required
        urllib.request.urlopen(urllib.request.Request(s3.url + "/_sov/rotate-key",
                                                      method="POST"), timeout=30)
    assert e.value.code == 403
    kid1 = admin(s3, "/_sov/rotate-key")["kid"]
    assert kid1 != kid0 and (keys_dir / "current").read_text().strip() == kid1
    assert (keys_dir / kid0).exists() and (keys_dir / kid1).exists()
    new = {f"new{size}": body(size, size + 1) for size in (10, 300_000)}
    for k, v in new.items():
        c.put_object(Bucket="rot", Key=k, Body=v, ServerSideEncryption="AES256")
    for k, v in {**old, **new}.items():
        assert c.get_object(Bucket="rot", Key=k)["Body"].read() == v
    s3.kill()
    s3.start()
    c = s3.client()
    assert (keys_dir / "current").read_text().strip() == kid1
    for k, v in {**old, **new}.items():
        assert c.get_object(Bucket="rot", Key=k)["Body"].read() == v, k
    assert c.get_object(Bucket="rot", Key="oldc", **ssec(KEY1))["Body"].read() == b"customer data"
    assert plaintext_on_disk(s3.data_dir) == []


def data_files(s3):
    return sorted(p for p in (s3.data_dir / "objects").rglob("*") if p.is_file())


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def read_fails(c, bucket, key, data, **kw):
    """A GET of tampered data must fail (an error status or a cut body), never give bytes
    other than the plaintext."""
    try:
        got = c.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()
    except (ClientError, BotoCoreError):
        return True
    # a cut body at most, and what came is the plaintext's start (blocks before the damage)
    assert len(got) < len(data), "a full body came back from damaged data"
    assert got == data[:len(got)]
    return True


def test_tampered_data_never_reads_back(s3):
    c = s3.client()
    c.create_bucket(Bucket="tam")
    small, big = body(300_000, 5), body(3 * MIB + 7, 6)
    c.put_object(Bucket="tam", Key="small", Body=small, ServerSideEncryption="AES256")
    [f_small] = data_files(s3)
    c.put_object(Bucket="tam", Key="big", Body=big, ServerSideEncryption="AES256")
    [f_big] = [p for p in data_files(s3) if p != f_small]
    flip(f_small, 1000)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="tam", Key="small")
    assert s3_error(e) == ("InternalError", 500)
    # damage near the end of the big one: the headers went out, the body is cut
    flip(f_big, f_big.stat().st_size - 100)
    assert read_fails(c, "tam", "big", big)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="tam", Key="big", Range=f"bytes={len(big) - 50}-")
    assert s3_error(e) == ("InternalError", 500)
    # the undamaged start still reads
    r = c.get_object(Bucket="tam", Key="big", Range="bytes=0-99999")
    assert r["Body"].read() == big[:100000]
    # a damaged stream header
    c.put_object(Bucket="tam", Key="hdr", Body=small, ServerSideEncryption="AES256")
    [f_hdr] = [p for p in data_files(s3) if p not in (f_small, f_big)]
    flip(f_hdr, 10)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="tam", Key="hdr")
    assert s3_error(e) == ("InternalError", 500)


def test_erasure_coded_encrypted_objects(start_s3, short_dir):  # noqa: F811
    drives = drives_of(short_dir)
    s3 = start_ec(start_s3, drives)
    c = s3.client()
    c.create_bucket(Bucket="ecb")
    objs = {}
    for i, size in enumerate([1, 300_000, 3 * MIB + 7]):
        objs[f"e{size}"] = body(size, 20 + i)
        c.put_object(Bucket="ecb", Key=f"e{size}", Body=objs[f"e{size}"],
                     ServerSideEncryption="AES256")
    for k, v in objs.items():
        check_reads(c, "ecb", k, v)
    assert plaintext_on_disk(s3.data_dir, *drives) == []
    c.put_object(Bucket="ecb", Key="plain", Body=body(300_000, 30).replace(MARK, b"PLAIN-EC"))
    assert plaintext_on_disk(*drives, pattern=b"PLAIN-EC")
    s3.kill()
    s3.start()
    c = s3.client()
    for k, v in objs.items():
        assert c.get_object(Bucket="ecb", Key=k)["Body"].read() == v


def test_ssec_etag_does_not_confirm_the_plaintext(s3):
    """A listing needs no key: the ETag of SSE-C data must not be the MD5 of its plaintext."""
    c = s3.client()
    c.create_bucket(Bucket="etags")
    key = os.urandom(32)
    for name, body in (("small", b"salary=123456"), ("big", os.urandom(300000))):
        r = c.put_object(Bucket="etags", Key=name, Body=body, SSECustomerAlgorithm="AES256",
                         SSECustomerKey=key)
        listed = {o["Key"]: o["ETag"] for o in c.list_objects_v2(Bucket="etags")["Contents"]}
        assert listed[name] == r["ETag"] != '"%s"' % hashlib.md5(body).hexdigest()
        got = c.get_object(Bucket="etags", Key=name, SSECustomerAlgorithm="AES256",
                           SSECustomerKey=key, IfMatch=r["ETag"])
        assert got["Body"].read() == body
