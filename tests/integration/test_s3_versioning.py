"""sov-s3 versioning with real clients: PutBucketVersioning, version ids, GET/HEAD/DELETE by
versionId, delete markers, ListObjectVersions with markers and delimiters, CopyObject from a
version, suspended buckets, DeleteObjects with versions, and versions surviving kill -9."""
import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli_env


def err(e):
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def all_versions(c, bucket, **kw):
    out, markers, prefixes = [], [], []
    for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket, **kw):
        out += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return out, markers, prefixes


def test_versions_markers_and_reads_by_id(s3):
    c = s3.client()
    c.create_bucket(Bucket="ver")
    assert "Status" not in c.get_bucket_versioning(Bucket="ver")
    c.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
    assert c.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"

    bodies = [b"one", b"two" * 30000, b"three"]  # the middle one is a data file, not inline
    ids = [c.put_object(Bucket="ver", Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(set(ids)) == 3 and "null" not in ids
    for vid, body in zip(ids, bodies):
        got = c.get_object(Bucket="ver", Key="k", VersionId=vid)
        assert got["Body"].read() == body and got["VersionId"] == vid
        assert c.head_object(Bucket="ver", Key="k", VersionId=vid)["ContentLength"] == len(body)
    assert c.get_object(Bucket="ver", Key="k")["Body"].read() == b"three"

    versions, markers, _ = all_versions(c, "ver")
    assert [v["VersionId"] for v in versions] == ids[::-1]  # newest first
    assert [v["IsLatest"] for v in versions] == [True, False, False]
    assert markers == []

    # DELETE without a version: a delete marker hides the key, the versions stay
    d = c.delete_object(Bucket="ver", Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] not in ids
    marker = d["VersionId"]
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="ver", Key="k")
    assert err(e.value) == ("NoSuchKey", 404)
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="ver", Key="k", VersionId=marker)
    assert err(e.value) == ("MethodNotAllowed", 405)
    assert c.list_objects_v2(Bucket="ver").get("KeyCount") == 0
    assert c.get_object(Bucket="ver", Key="k", VersionId=ids[1])["Body"].read() == bodies[1]
    versions, markers, _ = all_versions(c, "ver")
    assert [m["VersionId"] for m in markers] == [marker] and markers[0]["IsLatest"]
    assert not any(v["IsLatest"] for v in versions)

    # removing the marker brings the key back
    d = c.delete_object(Bucket="ver", Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker
    assert c.get_object(Bucket="ver", Key="k")["Body"].read() == b"three"

    # removing the current version for good: the next newest becomes current
    c.delete_object(Bucket="ver", Key="k", VersionId=ids[2])
    assert c.get_object(Bucket="ver", Key="k")["Body"].read() == bodies[1]
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket="ver", Key="k", VersionId=ids[2])
    assert err(e.value) == ("NoSuchVersion", 404)
    # a data file of a removed version is gone from the disk too
    c.delete_object(Bucket="ver", Key="k", VersionId=ids[1])
    files = [p for p in (s3.data_dir / "objects").rglob("*") if p.is_file()]
    assert files == []

    # bad ids are refused, nothing changes
    for bad in ("x", "../../etc", "0" * 31):
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="ver", Key="k", VersionId=bad)
        assert err(e.value) == ("InvalidArgument", 400)
        with pytest.raises(ClientError) as e:
            c.delete_object(Bucket="ver", Key="k", VersionId=bad)
        assert err(e.value) == ("InvalidArgument", 400)
    assert c.get_object(Bucket="ver", Key="k")["Body"].read() == b"one"
    with pytest.raises(ClientError) as e:
        c.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Off"})
    assert err(e.value) == ("MalformedXML", 400)
    assert c.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"


def test_suspended_unversioned_copy_and_multi_delete(s3):
    c = s3.client()
    c.create_bucket(Bucket="plain")
    c.put_object(Bucket="plain", Key="a", Body=b"1")
    r = c.put_object(Bucket="plain", Key="a", Body=b"2")
    assert "VersionId" not in r  # never versioned: no version ids, one row per key
    versions, _, _ = all_versions(c, "plain")
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True)]
    assert c.get_object(Bucket="plain", Key="a", VersionId="null")["Body"].read() == b"2"

    c.create_bucket(Bucket="sus")
    c.put_object(Bucket="sus", Key="k", Body=b"before")  # the null version
    c.put_bucket_versioning(Bucket="sus", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="sus", Key="k", Body=b"v1")["VersionId"]
    c.put_bucket_versioning(Bucket="sus", VersioningConfiguration={"Status": "Suspended"})
    assert c.put_object(Bucket="sus", Key="k", Body=b"s1")["VersionId"] == "null"
    assert c.put_object(Bucket="sus", Key="k", Body=b"s2")["VersionId"] == "null"
    versions, _, _ = all_versions(c, "sus")
    assert [v["VersionId"] for v in versions] == ["null", v1]  # s2 replaced before and s1
    assert c.get_object(Bucket="sus", Key="k", VersionId="null")["Body"].read() == b"s2"
    d = c.delete_object(Bucket="sus", Key="k")  # suspended: a null delete marker
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    versions, markers, _ = all_versions(c, "sus")
    assert [v["VersionId"] for v in versions] == [v1] and [m["VersionId"] for m in markers] == ["null"]

    # copy from an older version, into a versioned bucket
    c.put_bucket_versioning(Bucket="sus", VersioningConfiguration={"Status": "Enabled"})
    cp = c.copy_object(Bucket="sus", Key="copy", CopySource={"Bucket": "sus", "Key": "k", "VersionId": v1})
    assert cp["CopySourceVersionId"] == v1 and cp["VersionId"] not in ("null", v1)
    assert c.get_object(Bucket="sus", Key="copy")["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket="sus", Key="c2", CopySource={"Bucket": "sus", "Key": "k", "VersionId": "null"})
    assert err(e.value) == ("InvalidRequest", 400)  # that version is a delete marker
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket="sus", Key="c2", CopySource={"Bucket": "sus", "Key": "k", "VersionId": "f" * 32})
    assert err(e.value) == ("NoSuchVersion", 404)

    # DeleteObjects: markers for plain keys, permanent removal with a version id
    got = c.delete_objects(Bucket="sus", Delete={"Objects": [{"Key": "copy"}, {"Key": "k", "VersionId": v1}]})
    by_key = {d["Key"]: d for d in got["Deleted"]}
    assert by_key["copy"]["DeleteMarker"] is True and by_key["copy"]["DeleteMarkerVersionId"]
    assert by_key["k"]["VersionId"] == v1
    versions, markers, _ = all_versions(c, "sus")
    assert sorted(v["Key"] for v in versions) == ["copy"]
    assert sorted((m["Key"], m["VersionId"]) for m in markers)[1] == ("k", "null")

    # a bucket with versions left is not empty
    with pytest.raises(ClientError) as e:
        c.delete_bucket(Bucket="sus")
    assert err(e.value) == ("BucketNotEmpty", 409)

    # multipart completion makes a version
    up = c.create_multipart_upload(Bucket="sus", Key="mp")["UploadId"]
    etag = c.upload_part(Bucket="sus", Key="mp", UploadId=up, PartNumber=1, Body=b"x" * 100)["ETag"]
    done = c.complete_multipart_upload(Bucket="sus", Key="mp", UploadId=up,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["VersionId"] not in (None, "null")


def test_list_versions_pages_and_prefixes(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="pag")
    c.put_bucket_versioning(Bucket="pag", VersioningConfiguration={"Status": "Enabled"})
    expect = []
    for key in ("a", "d/1", "d/2", "e/x/1", "z"):
        for i in range(3):
            expect.append((key, c.put_object(Bucket="pag", Key=key, Body=b"%d" % i)["VersionId"]))
    c.delete_object(Bucket="pag", Key="z")
    want = {}
    for key, vid in expect:
        want.setdefault(key, []).insert(0, vid)
    full, markers, _ = all_versions(c, "pag")
    assert len(markers) == 1
    paged = []
    for page in c.get_paginator("list_object_versions").paginate(
            Bucket="pag", PaginationConfig={"PageSize": 2}):
        assert len(page.get("Versions", [])) + len(page.get("DeleteMarkers", [])) <= 2
        paged += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    assert paged == [(v["Key"], v["VersionId"]) for v in full]
    assert [vid for k, vid in paged if k == "d/1"] == want["d/1"]
    assert sorted(set(k for k, _ in paged)) == ["a", "d/1", "d/2", "e/x/1", "z"]

    versions, _, prefixes = all_versions(c, "pag", Delimiter="/")
    assert sorted(prefixes) == ["d/", "e/"]
    assert sorted(set(v["Key"] for v in versions)) == ["a", "z"]
    versions, _, prefixes = all_versions(c, "pag", Prefix="d/", PaginationConfig={"PageSize": 1})
    assert [(v["Key"], v["VersionId"]) for v in versions] == \
        [("d/1", x) for x in want["d/1"]] + [("d/2", x) for x in want["d/2"]]

    with pytest.raises(ClientError) as e:
        c.list_object_versions(Bucket="pag", VersionIdMarker=want["a"][0])
    assert err(e.value) == ("InvalidArgument", 400)

    # the aws CLI lists the same versions
    out = subprocess.run(
        ["/usr/bin/aws", "--endpoint-url", s3.url, "s3api", "list-object-versions",
         "--bucket", "pag", "--prefix", "d/"],
        env=aws_cli_env(s3, tmp_path), capture_output=True, text=True, timeout=60, check=True)
    listed = json.loads(out.stdout)
    assert [v["VersionId"] for v in listed["Versions"]] == want["d/1"] + want["d/2"]


def test_versions_survive_kill(s3):
    c = s3.client()
    c.create_bucket(Bucket="dur")
    c.put_bucket_versioning(Bucket="dur", VersioningConfiguration={"Status": "Enabled"})
    ids = [c.put_object(Bucket="dur", Key="k", Body=b"%d" % i * 40000)["VersionId"]
           for i in range(4)]
    marker = c.delete_object(Bucket="dur", Key="k")["VersionId"]
    s3.kill()
    s3.start()
    c = s3.client()
    assert c.get_bucket_versioning(Bucket="dur")["Status"] == "Enabled"
    versions, markers, _ = all_versions(c, "dur")
    assert [v["VersionId"] for v in versions] == ids[::-1]
    assert [m["VersionId"] for m in markers] == [marker]
    for i, vid in enumerate(ids):
        assert c.get_object(Bucket="dur", Key="k", VersionId=vid)["Body"].read() == b"%d" % i * 40000


def test_restore_by_copy_and_empty_elements(s3):
    """Copying an older version onto its own key restores it (AWS's documented way); empty XML
    elements in a versioning request are refused, never crash the daemon."""
    c = s3.client()
    c.create_bucket(Bucket="rst")
    c.put_bucket_versioning(Bucket="rst", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="rst", Key="k", Body=b"first")["VersionId"]
    c.put_object(Bucket="rst", Key="k", Body=b"second")
    cp = c.copy_object(Bucket="rst", Key="k", CopySource={"Bucket": "rst", "Key": "k", "VersionId": v1})
    assert cp["CopySourceVersionId"] == v1
    assert c.get_object(Bucket="rst", Key="k")["Body"].read() == b"first"
    assert len(all_versions(c, "rst")[0]) == 3
    for body in (b"<VersioningConfiguration><Status/></VersioningConfiguration>",
                 b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete/>"
                 b"</VersioningConfiguration>"):
        r = s3.request("PUT", "/rst", "versioning", body=body)
        assert r.status == 400 and r.code == "MalformedXML", r
    assert c.get_bucket_versioning(Bucket="rst")["Status"] == "Enabled"
