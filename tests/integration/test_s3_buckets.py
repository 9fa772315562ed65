# SPDX-License-Identifier: Apache-2.0
"""sov-s3 buckets through boto3 and raw signed requests: ListBuckets, CreateBucket and its
refusals (names, regions, existing buckets), HeadBucket, GetBucketLocation, DeleteBucket, and
the isolation between two accounts."""
import pytest
from botocore.exceptions import ClientError

from conftest import s3_error

GOOD_NAMES = ["abc", "a" * 63, "my.bucket-1", "0-9", "b-u-c-k-e-t"]
# Names boto3 lets through to the server (it checks only the character set client-side).
BAD_NAMES = ["ab", "a" * 64, "UPPER", "under_score", "-dash", "dash-", ".dot", "dot.",
             "a..b", "192.168.1.1", "xn--punycode", "bucket-s3alias"]


def test_create_list_head_delete(s3):
    c = s3.client()
    assert c.list_buckets()["Buckets"] == []
    for name in reversed(GOOD_NAMES):
        c.create_bucket(Bucket=name)
    out = c.list_buckets()
    assert [b["Name"] for b in out["Buckets"]] == sorted(GOOD_NAMES)
    assert all(b["CreationDate"] is not None for b in out["Buckets"])
    assert out["Owner"]["ID"] and "DisplayName" in out["Owner"]
    assert c.head_bucket(Bucket="abc")["ResponseMetadata"]["HTTPStatusCode"] == 200
    c.delete_bucket(Bucket="abc")
    with pytest.raises(ClientError) as e:
        c.head_bucket(Bucket="abc")
    assert s3_error(e)[1] == 404
    with pytest.raises(ClientError) as e:
        c.delete_bucket(Bucket="abc")
    assert s3_error(e) == ("NoSuchBucket", 404)
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == sorted(GOOD_NAMES[1:])


def test_invalid_bucket_names_are_refused_and_nothing_is_created(s3):
    c = s3.client()
    for name in BAD_NAMES:
        with pytest.raises(ClientError) as e:
            c.create_bucket(Bucket=name)
        assert s3_error(e) == ("InvalidBucketName", 400), name
    # Names boto3 would refuse itself go raw.
    for raw in ("/bad%20name", "/%C3%A9t%C3%A9", "/" + "b" * 300):
        r = s3.request("PUT", raw)
        assert (r.status, r.code) == (400, "InvalidBucketName"), (raw, r)
    assert c.list_buckets()["Buckets"] == []


def test_location_constraints(s3):
    c = s3.client()
    c.create_bucket(Bucket="default-region")
    c.create_bucket(Bucket="paris", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    c.create_bucket(Bucket="frankfurt",
                    CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    assert c.get_bucket_location(Bucket="paris")["LocationConstraint"] == "eu-west-3"
    assert c.get_bucket_location(Bucket="frankfurt")["LocationConstraint"] == "eu-central-1"
    assert c.get_bucket_location(Bucket="default-region")["LocationConstraint"] == "eu-central-1"
    for where in ("us-east-1", "eu-north-1", "mars-1"):
        with pytest.raises(ClientError) as e:
            c.create_bucket(Bucket="elsewhere",
                            CreateBucketConfiguration={"LocationConstraint": where})
        code, status = s3_error(e)
        assert status == 400 and code in ("InvalidLocationConstraint",
                                          "IllegalLocationConstraintException"), where
    # A body that is not XML.
    r = s3.request("PUT", "/badxml", body=b"<CreateBucketConfiguration><LocationConstraint>")
    assert (r.status, r.code) == (400, "MalformedXML"), r
    assert sorted(b["Name"] for b in c.list_buckets()["Buckets"]) == \
        ["default-region", "frankfurt", "paris"]
    with pytest.raises(ClientError) as e:
        c.get_bucket_location(Bucket="nope")
    assert s3_error(e) == ("NoSuchBucket", 404)


def test_existing_buckets(start_s3):
    d = start_s3(second_account=True)
    c, c2 = d.client(), d.client2()
    c.create_bucket(Bucket="taken")
    c.put_object(Bucket="taken", Key="k", Body=b"mine")
    with pytest.raises(ClientError) as e:
        c.create_bucket(Bucket="taken")
    assert s3_error(e) == ("BucketAlreadyOwnedByYou", 409)
    with pytest.raises(ClientError) as e:
        c2.create_bucket(Bucket="taken")
    assert s3_error(e) == ("BucketAlreadyExists", 409)
    # Neither refusal touched the bucket or its contents.
    assert c.get_object(Bucket="taken", Key="k")["Body"].read() == b"mine"
    assert c2.list_buckets()["Buckets"] == []


def test_delete_non_empty_bucket(s3):
    c = s3.client()
    c.create_bucket(Bucket="full")
    c.put_object(Bucket="full", Key="a/b", Body=b"x")
    with pytest.raises(ClientError) as e:
        c.delete_bucket(Bucket="full")
    assert s3_error(e) == ("BucketNotEmpty", 409)
    assert c.get_object(Bucket="full", Key="a/b")["Body"].read() == b"x"
    c.delete_object(Bucket="full", Key="a/b")
    c.delete_bucket(Bucket="full")
    assert c.list_buckets()["Buckets"] == []
    # The name is free again, and the new bucket is empty.
    c.create_bucket(Bucket="full")
    assert c.list_objects_v2(Bucket="full")["KeyCount"] == 0


def test_buckets_survive_restart(s3):
    c = s3.client()
    c.create_bucket(Bucket="durable", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    c.put_object(Bucket="durable", Key="k", Body=b"v")
    assert s3.stop() == 0
    s3.start()
    c = s3.client()
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["durable"]
    assert c.get_bucket_location(Bucket="durable")["LocationConstraint"] == "eu-west-3"
    assert c.get_object(Bucket="durable", Key="k")["Body"].read() == b"v"


def test_second_account_is_isolated(start_s3):
    d = start_s3(second_account=True)
    c, c2 = d.client(), d.client2()
    c.create_bucket(Bucket="first")
    c.put_object(Bucket="first", Key="secret", Body=b"s3cr3t")
    c2.create_bucket(Bucket="second")
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["first"]
    assert [b["Name"] for b in c2.list_buckets()["Buckets"]] == ["second"]
    denied = [
        lambda: c2.get_object(Bucket="first", Key="secret"),
        lambda: c2.put_object(Bucket="first", Key="planted", Body=b"x"),
        lambda: c2.delete_object(Bucket="first", Key="secret"),
        lambda: c2.list_objects_v2(Bucket="first"),
        lambda: c2.list_objects(Bucket="first"),
        lambda: c2.delete_bucket(Bucket="first"),
        lambda: c2.get_bucket_location(Bucket="first"),
        lambda: c2.create_multipart_upload(Bucket="first", Key="mp"),
        lambda: c2.copy_object(Bucket="second", Key="stolen",
                               CopySource={"Bucket": "first", "Key": "secret"}),
        lambda: c.copy_object(Bucket="second", Key="pushed",
                              CopySource={"Bucket": "first", "Key": "secret"}),
        lambda: c2.delete_objects(Bucket="first", Delete={"Objects": [{"Key": "secret"}]}),
    ]
    for i, call in enumerate(denied):
        with pytest.raises(ClientError) as e:
            call()
        assert s3_error(e) == ("AccessDenied", 403), i
    with pytest.raises(ClientError) as e:
        c2.head_object(Bucket="first", Key="secret")
    assert s3_error(e)[1] == 403
    with pytest.raises(ClientError) as e:
        c2.head_bucket(Bucket="first")
    assert s3_error(e)[1] == 403
    # Nothing changed on either side.
    assert [o["Key"] for o in c.list_objects_v2(Bucket="first")["Contents"]] == ["secret"]
    assert c.get_object(Bucket="first", Key="secret")["Body"].read() == b"s3cr3t"
    assert c2.list_objects_v2(Bucket="second")["KeyCount"] == 0
    assert c.list_multipart_uploads(Bucket="first").get("Uploads", []) == []


def test_read_only_subresources_clients_ask_for(s3):
    """Tools probe versioning and ACLs before they work (s3cmd info, backup tools): an
    unversioned bucket answers an empty VersioningConfiguration, ACLs name the owner with
    FULL_CONTROL. A configuration the daemon does not implement is refused in S3's format,
    never accepted and ignored."""
    c = s3.client()
    c.create_bucket(Bucket="probe")
    c.put_object(Bucket="probe", Key="k", Body=b"x")
    assert "Status" not in c.get_bucket_versioning(Bucket="probe")
    for acl in (c.get_bucket_acl(Bucket="probe"), c.get_object_acl(Bucket="probe", Key="k")):
        owner = acl["Owner"]["ID"]
        assert owner and [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == \
            [(owner, "FULL_CONTROL")]
    try:
        c.put_bucket_versioning(Bucket="probe", VersioningConfiguration={"Status": "Enabled"})
    except ClientError as e:
        assert (e.response["Error"]["Code"],
                e.response["ResponseMetadata"]["HTTPStatusCode"]) == ("NotImplemented", 501)
        assert "Status" not in c.get_bucket_versioning(Bucket="probe")
    else:
        assert c.get_bucket_versioning(Bucket="probe")["Status"] == "Enabled"


def test_read_your_writes_across_workers(start_s3):
    """With several workers, consecutive connections land on different threads: each write
    must be visible to the very next request, whichever worker takes it."""
    s3 = start_s3(workers=4)
    for i in range(40):
        b = f"rw-{i}"
        assert s3.request("PUT", f"/{b}").status == 200
        assert s3.request("PUT", f"/{b}/k", body=b"v%d" % i).status == 200
        r = s3.request("GET", f"/{b}/k")
        assert (r.status, r.body) == (200, b"v%d" % i), (b, r)
        r = s3.request("GET", f"/{b}", "list-type=2")
        assert b"<Key>k</Key>" in r.body, (b, r)
        assert s3.request("DELETE", f"/{b}/k").status == 204
        assert s3.request("GET", f"/{b}/k").status == 404
        assert s3.request("DELETE", f"/{b}").status == 204
        assert s3.request("HEAD", f"/{b}").status == 404
    assert s3.client().list_buckets()["Buckets"] == []
