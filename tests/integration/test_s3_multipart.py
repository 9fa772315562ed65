# SPDX-License-Identifier: Apache-2.0
"""sov-s3 multipart uploads: `aws s3 cp` of a 20 MiB file both ways, and boto3's low-level
calls (create, upload_part, upload_part_copy with ranges, list_parts, list_multipart_uploads,
complete and its refusals, abort), reads by partNumber, and the "<md5 of md5s>-N" ETag."""
import hashlib
import os
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli_env, etag_of, multipart_etag, s3_error

MiB = 1024 * 1024


def error_of(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    return s3_error(e)


@pytest.fixture
def mp(s3):
    c = s3.client()
    c.create_bucket(Bucket="mpu")
    return c


def upload(c, key, parts, **create_kw):
    uid = c.create_multipart_upload(Bucket="mpu", Key=key, **create_kw)["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = c.upload_part(Bucket="mpu", Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == etag_of(p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def test_aws_cli_cp_multipart_both_ways(s3, tmp_path):
    s3.client().create_bucket(Bucket="cli")
    data = os.urandom(20 * MiB + 12345)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    env = aws_cli_env(s3, tmp_path)
    aws = ["/usr/bin/aws", "--endpoint-url", s3.url, "s3"]
    p = subprocess.run(aws + ["cp", "--no-progress", str(src), "s3://cli/big/file.bin"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    head = s3.client().head_object(Bucket="cli", Key="big/file.bin")
    assert head["ContentLength"] == len(data)
    # awscli's default: 8 MiB parts above an 8 MiB threshold.
    parts = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    assert head["ETag"] == multipart_etag(parts)
    p = subprocess.run(aws + ["cp", "--no-progress", "s3://cli/big/file.bin", str(dst)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_multipart_upload_complete_and_part_reads(mp):
    c = mp
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 7), b"last"]
    uid, done = upload(c, "obj", parts, ContentType="video/mp4", Metadata={"k": "v"})
    uploads = c.list_multipart_uploads(Bucket="mpu")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("obj", uid)]
    listed = c.list_parts(Bucket="mpu", Key="obj", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == \
        [(i, etag_of(p), len(p)) for i, p in enumerate(parts, 1)]
    # Still invisible until completed.
    assert error_of(c.head_object, Bucket="mpu", Key="obj")[1] == 404
    out = c.complete_multipart_upload(Bucket="mpu", Key="obj", UploadId=uid,
                                      MultipartUpload={"Parts": done})
    assert out["ETag"] == multipart_etag(parts) and out["Key"] == "obj"
    data = b"".join(parts)
    got = c.get_object(Bucket="mpu", Key="obj")
    assert got["Body"].read() == data and got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "video/mp4" and got["Metadata"] == {"k": "v"}
    offset = 0
    for i, p in enumerate(parts, 1):
        got = c.get_object(Bucket="mpu", Key="obj", PartNumber=i)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(p) - 1}/{len(data)}"
        assert got["Body"].read() == p
        assert c.head_object(Bucket="mpu", Key="obj", PartNumber=i)["ContentLength"] == len(p)
        offset += len(p)
    assert error_of(c.get_object, Bucket="mpu", Key="obj", PartNumber=4) == \
        ("InvalidPartNumber", 416)
    # The upload is gone once completed.
    assert c.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
    assert error_of(c.list_parts, Bucket="mpu", Key="obj", UploadId=uid) == ("NoSuchUpload", 404)
    # A simple object read by part 1 is the whole object.
    c.put_object(Bucket="mpu", Key="simple", Body=b"simple")
    got = c.get_object(Bucket="mpu", Key="simple", PartNumber=1)
    assert got["Body"].read() == b"simple"


def test_complete_refusals_leave_the_upload_usable(mp):
    c = mp
    parts = [os.urandom(5 * MiB), b"small", os.urandom(5 * MiB)]
    uid, done = upload(c, "strict", parts)
    cases = [
        ([done[1], done[0]], "InvalidPartOrder"),
        ([done[0], done[0], done[2]], "InvalidPartOrder"),
        ([done[0], {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}],
         "InvalidPart"),
        ([done[0], {"PartNumber": 9, "ETag": done[1]["ETag"]}], "InvalidPart"),
        # part 2 is under 5 MiB and not the last one
        (done, "EntityTooSmall"),
        ([], "MalformedXML"),
    ]
    for plist, code in cases:
        assert error_of(c.complete_multipart_upload, Bucket="mpu", Key="strict", UploadId=uid,
                        MultipartUpload={"Parts": plist}) == (code, 400), code
        assert error_of(c.head_object, Bucket="mpu", Key="strict")[1] == 404
    # Replacing part 2 with a full-size one makes the same upload completable.
    big2 = os.urandom(5 * MiB + 1)
    r = c.upload_part(Bucket="mpu", Key="strict", UploadId=uid, PartNumber=2, Body=big2)
    done[1] = {"PartNumber": 2, "ETag": r["ETag"]}
    # Parts may be skipped: complete with 1 and 2 only.
    out = c.complete_multipart_upload(Bucket="mpu", Key="strict", UploadId=uid,
                                      MultipartUpload={"Parts": done[:2]})
    assert out["ETag"] == multipart_etag([parts[0], big2])
    assert c.get_object(Bucket="mpu", Key="strict")["Body"].read() == parts[0] + big2
    assert c.list_objects_v2(Bucket="mpu")["KeyCount"] == 1


def test_upload_part_copy_with_ranges(mp):
    c = mp
    src = os.urandom(12 * MiB + 5)
    c.put_object(Bucket="mpu", Key="source", Body=src)
    uid = c.create_multipart_upload(Bucket="mpu", Key="assembled")["UploadId"]
    cut = 6 * MiB
    r1 = c.upload_part_copy(Bucket="mpu", Key="assembled", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": "mpu", "Key": "source"},
                            CopySourceRange=f"bytes=0-{cut - 1}")
    assert r1["CopyPartResult"]["ETag"] == etag_of(src[:cut])
    r2 = c.upload_part_copy(Bucket="mpu", Key="assembled", UploadId=uid, PartNumber=2,
                            CopySource={"Bucket": "mpu", "Key": "source"},
                            CopySourceRange=f"bytes={cut}-{len(src) - 1}")
    r3 = c.upload_part(Bucket="mpu", Key="assembled", UploadId=uid, PartNumber=3, Body=b"end")
    # Ranges past the source or backwards are refused (AWS: 400 InvalidArgument) and store
    # no part.
    for bad in (f"bytes=0-{len(src)}", "bytes=5-1", f"bytes={len(src)}-{len(src) + 9}"):
        assert error_of(c.upload_part_copy, Bucket="mpu", Key="assembled", UploadId=uid,
                        PartNumber=4, CopySource={"Bucket": "mpu", "Key": "source"},
                        CopySourceRange=bad) in (("InvalidArgument", 400),
                                                 ("InvalidRange", 416)), bad
    assert [p["PartNumber"] for p in c.list_parts(Bucket="mpu", Key="assembled",
                                                 UploadId=uid)["Parts"]] == [1, 2, 3]
    c.complete_multipart_upload(Bucket="mpu", Key="assembled", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
                  {"PartNumber": 3, "ETag": r3["ETag"]}]})
    assert c.get_object(Bucket="mpu", Key="assembled")["Body"].read() == src + b"end"
    # A whole-object part copy, with a source condition that fails.
    uid = c.create_multipart_upload(Bucket="mpu", Key="cond")["UploadId"]
    assert error_of(c.upload_part_copy, Bucket="mpu", Key="cond", UploadId=uid, PartNumber=1,
                    CopySource={"Bucket": "mpu", "Key": "source"},
                    CopySourceIfMatch='"00000000000000000000000000000000"') == \
        ("PreconditionFailed", 412)
    r = c.upload_part_copy(Bucket="mpu", Key="cond", UploadId=uid, PartNumber=1,
                           CopySource={"Bucket": "mpu", "Key": "source"})
    assert r["CopyPartResult"]["ETag"] == etag_of(src)


def test_abort_and_unknown_uploads(mp):
    c = mp
    uid, done = upload(c, "gone", [os.urandom(5 * MiB), b"x"])
    c.abort_multipart_upload(Bucket="mpu", Key="gone", UploadId=uid)
    assert error_of(c.upload_part, Bucket="mpu", Key="gone", UploadId=uid, PartNumber=3,
                    Body=b"y") == ("NoSuchUpload", 404)
    assert error_of(c.list_parts, Bucket="mpu", Key="gone", UploadId=uid) == ("NoSuchUpload", 404)
    assert error_of(c.complete_multipart_upload, Bucket="mpu", Key="gone", UploadId=uid,
                    MultipartUpload={"Parts": done}) == ("NoSuchUpload", 404)
    assert error_of(c.abort_multipart_upload, Bucket="mpu", Key="gone", UploadId=uid) == \
        ("NoSuchUpload", 404)
    assert c.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []
    assert c.list_objects_v2(Bucket="mpu")["KeyCount"] == 0
    # An upload id used with another key, and ids that never existed.
    uid = c.create_multipart_upload(Bucket="mpu", Key="mine")["UploadId"]
    assert error_of(c.upload_part, Bucket="mpu", Key="other", UploadId=uid, PartNumber=1,
                    Body=b"z") == ("NoSuchUpload", 404)
    for fake in ("0" * 32, "../../etc", "x" * 600):
        assert error_of(c.list_parts, Bucket="mpu", Key="mine", UploadId=fake) == \
            ("NoSuchUpload", 404), fake
    for n in (0, 10001):
        assert error_of(c.upload_part, Bucket="mpu", Key="mine", UploadId=uid, PartNumber=n,
                        Body=b"z") == ("InvalidArgument", 400), n


def test_list_uploads_and_parts_paging(mp):
    c = mp
    ids = {}
    for key in ("b/2", "a/1", "b/1", "a/1"):
        ids.setdefault(key, []).append(c.create_multipart_upload(Bucket="mpu", Key=key)["UploadId"])
    out = c.list_multipart_uploads(Bucket="mpu")
    assert [u["Key"] for u in out["Uploads"]] == ["a/1", "a/1", "b/1", "b/2"]
    assert sorted(u["UploadId"] for u in out["Uploads"] if u["Key"] == "a/1") == sorted(ids["a/1"])
    out = c.list_multipart_uploads(Bucket="mpu", Prefix="b/")
    assert [u["Key"] for u in out["Uploads"]] == ["b/1", "b/2"]
    out = c.list_multipart_uploads(Bucket="mpu", Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/", "b/"]
    uid = ids["b/1"][0]
    for i in range(1, 6):
        c.upload_part(Bucket="mpu", Key="b/1", UploadId=uid, PartNumber=i, Body=bytes([i]) * i)
    seen, marker = [], 0
    for _ in range(10):
        out = c.list_parts(Bucket="mpu", Key="b/1", UploadId=uid, MaxParts=2,
                           PartNumberMarker=marker)
        seen += [p["PartNumber"] for p in out["Parts"]]
        if not out["IsTruncated"]:
            break
        marker = out["NextPartNumberMarker"]
    assert seen == [1, 2, 3, 4, 5]


def test_reads_across_part_boundaries_and_lenient_complete(mp):
    c = mp
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(777)]
    uid, done = upload(c, "seams", parts)
    # ETags without their quotes are accepted, as AWS does.
    unquoted = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"].strip('"')} for p in done]
    c.complete_multipart_upload(Bucket="mpu", Key="seams", UploadId=uid,
                                MultipartUpload={"Parts": unquoted})
    data = b"".join(parts)
    n = len(data)
    for first, last in ((5 * MiB - 10, 5 * MiB + 9), (0, 10 * MiB), (10 * MiB - 1, n - 1),
                        (3, n - 4), (5 * MiB, 5 * MiB)):
        got = c.get_object(Bucket="mpu", Key="seams", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == data[first:last + 1], (first, last)
        assert got["ContentRange"] == f"bytes {first}-{last}/{n}"
    got = c.get_object(Bucket="mpu", Key="seams", Range="bytes=-800")
    assert got["Body"].read() == data[-800:]
    etag = multipart_etag(parts)
    assert c.head_object(Bucket="mpu", Key="seams", IfMatch=etag)["ETag"] == etag
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="mpu", Key="seams", IfNoneMatch=etag)
    assert s3_error(e)[1] == 304
    # A part whose Content-MD5 does not match is refused and not stored.
    uid = c.create_multipart_upload(Bucket="mpu", Key="md5")["UploadId"]
    import base64
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert error_of(c.upload_part, Bucket="mpu", Key="md5", UploadId=uid, PartNumber=1,
                    Body=b"part", ContentMD5=wrong) == ("BadDigest", 400)
    assert c.list_parts(Bucket="mpu", Key="md5", UploadId=uid).get("Parts", []) == []


def test_storage_is_given_back(s3):
    """Aborted uploads, replaced parts, overwritten and deleted objects free their bytes: after
    60 MiB went through and everything was deleted, the data dir holds well under 4 MiB."""
    c = s3.client()
    c.create_bucket(Bucket="space")

    def data_dir_bytes():
        return sum(p.stat().st_size for p in s3.data_dir.rglob("*") if p.is_file())

    uid = c.create_multipart_upload(Bucket="space", Key="aborted")["UploadId"]
    for i in (1, 2):
        c.upload_part(Bucket="space", Key="aborted", UploadId=uid, PartNumber=i,
                      Body=os.urandom(5 * MiB))
    c.abort_multipart_upload(Bucket="space", Key="aborted", UploadId=uid)
    c.put_object(Bucket="space", Key="big", Body=os.urandom(10 * MiB))
    c.put_object(Bucket="space", Key="big", Body=os.urandom(10 * MiB))
    uid = c.create_multipart_upload(Bucket="space", Key="mp")["UploadId"]
    for body in (os.urandom(5 * MiB), os.urandom(5 * MiB)):  # part 1 uploaded twice
        e1 = c.upload_part(Bucket="space", Key="mp", UploadId=uid, PartNumber=1, Body=body)["ETag"]
    e2 = c.upload_part(Bucket="space", Key="mp", UploadId=uid, PartNumber=2,
                       Body=os.urandom(5 * MiB))["ETag"]
    e3 = c.upload_part(Bucket="space", Key="mp", UploadId=uid, PartNumber=3,
                       Body=os.urandom(5 * MiB))["ETag"]
    # Part 3 is left out of the object: its bytes must go too.
    c.complete_multipart_upload(Bucket="space", Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert e3
    assert c.head_object(Bucket="space", Key="mp")["ContentLength"] == 10 * MiB
    assert data_dir_bytes() < 24 * MiB  # the two live objects and not much more
    c.delete_object(Bucket="space", Key="big")
    c.delete_object(Bucket="space", Key="mp")
    assert data_dir_bytes() < 4 * MiB
