# SPDX-License-Identifier: Apache-2.0
"""sov-s3 storage classes, lifecycle rules and restores: the ?lifecycle document (round trip
through boto3 and the aws CLI, validation errors as AWS answers them), and the lifecycle worker
acting on a daemon whose days last a second (expiration by prefix, tag and size, transitions to
GLACIER then RestoreObject, aborting incomplete multipart uploads, noncurrent versions and
expired delete markers of a versioned bucket). Every wait polls with a deadline."""
import datetime
import email.utils
import json
import re
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import aws_cli_env, s3_error
from test_compute_agent import wait_for

FAST = "lifecycle_day_seconds = 1\nlifecycle_interval = 1\n"


def error_of(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    return s3_error(e)


def actions(s3, action):
    """The daemon's sov_s3_lifecycle_actions_total for one action."""
    text = requests.get(f"{s3.url}/metrics", timeout=10).text
    m = re.search(r'^sov_s3_lifecycle_actions_total\{action="%s"\} (\d+)' % action, text,
                  re.MULTILINE)
    return int(m.group(1)) if m else 0


def start_worker(start_s3):
    """A daemon whose lifecycle days last a second and whose worker runs every second."""
    s3 = start_s3(FAST)
    if "sov_s3_lifecycle_actions_total" not in requests.get(f"{s3.url}/metrics", timeout=10).text:
        pytest.skip("sov-s3 was built without its lifecycle worker (lcworker.c is not in "
                    "src/s3/meson.build)")
    return s3


def keys(c, bucket, prefix=""):
    return sorted(o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix=prefix)
                  .get("Contents", []))


def versions(c, bucket, prefix=""):
    """(key, version id, is latest, is delete marker) of every version, newest first per key."""
    r = c.list_object_versions(Bucket=bucket, Prefix=prefix)
    out = [(v["Key"], v["VersionId"], v["IsLatest"], False) for v in r.get("Versions", [])]
    out += [(v["Key"], v["VersionId"], v["IsLatest"], True) for v in r.get("DeleteMarkers", [])]
    return sorted(out)


def put_lifecycle_xml(s3, bucket, xml):
    body = xml.encode()
    return s3.request("PUT", f"/{bucket}", "lifecycle", body=body,
                      headers={"Content-Type": "application/xml"})


# ---- the configuration document ----

FULL_RULES = [
    {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
     "Expiration": {"Days": 7},
     "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]},
    {"ID": "tagged", "Filter": {"Tag": {"Key": "class", "Value": "tmp"}}, "Status": "Disabled",
     "Expiration": {"Date": "2030-01-01T00:00:00.000Z"}},
    {"ID": "and", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k1", "Value": "v1"},
                                                 {"Key": "k2", "Value": ""}],
                        "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
     "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"},
                     {"Days": 60, "StorageClass": "DEEP_ARCHIVE"}]},
    {"ID": "versions", "Filter": {}, "Status": "Enabled",
     "Expiration": {"ExpiredObjectDeleteMarker": True},
     "NoncurrentVersionTransitions": [{"NoncurrentDays": 0, "StorageClass": "GLACIER"}],
     "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    {"ID": "big", "Filter": {"ObjectSizeGreaterThan": 5000}, "Status": "Enabled",
     "Expiration": {"Days": 1}},
]


def normalized(rules):
    """A boto3 rule list in a comparable form (dates as text)."""
    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if hasattr(v, "strftime"):
            return v.strftime("%Y-%m-%dT%H:%M:%S")
        return v
    return fix(rules)


def test_configuration_round_trip_and_delete(s3):
    c = s3.client()
    c.create_bucket(Bucket="lcrt")
    assert error_of(c.get_bucket_lifecycle_configuration, Bucket="lcrt") == (
        "NoSuchLifecycleConfiguration", 404)
    c.put_bucket_lifecycle_configuration(Bucket="lcrt",
                                         LifecycleConfiguration={"Rules": FULL_RULES})
    got = c.get_bucket_lifecycle_configuration(Bucket="lcrt")["Rules"]
    want = json.loads(json.dumps(FULL_RULES))
    want[1]["Expiration"]["Date"] = "2030-01-01T00:00:00"
    assert normalized(got) == want
    # A new document replaces the old one; an ID is made up when none is given.
    c.put_bucket_lifecycle_configuration(Bucket="lcrt", LifecycleConfiguration={"Rules": [
        {"Prefix": "old-style/", "Status": "Enabled", "Expiration": {"Days": 2}}]})
    got = c.get_bucket_lifecycle_configuration(Bucket="lcrt")["Rules"]
    assert len(got) == 1 and got[0]["Prefix"] == "old-style/" and got[0]["ID"]
    assert got[0]["Expiration"] == {"Days": 2} and "Filter" not in got[0]
    r = c.delete_bucket_lifecycle(Bucket="lcrt")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(c.get_bucket_lifecycle_configuration, Bucket="lcrt") == (
        "NoSuchLifecycleConfiguration", 404)
    assert error_of(c.get_bucket_lifecycle_configuration, Bucket="nope") == ("NoSuchBucket", 404)


def rule_xml(body):
    return f"<LifecycleConfiguration><Rule>{body}</Rule></LifecycleConfiguration>"


EXP = "<Expiration><Days>1</Days></Expiration>"
BAD = [
    ("not xml", "MalformedXML"),
    ("<LifecycleConfiguration></LifecycleConfiguration>", "MalformedXML"),
    ("<Other><Rule/></Other>", "MalformedXML"),
    (rule_xml("<ID>a</ID><Filter/>" + EXP), "MalformedXML"),  # no Status
    (rule_xml("<ID>a</ID><Status>On</Status><Filter/>" + EXP), "MalformedXML"),
    (rule_xml("<ID>a</ID><Status>Enabled</Status>" + EXP), "MalformedXML"),  # no filter
    (rule_xml("<Status>Enabled</Status><Filter/><Prefix>x</Prefix>" + EXP), "MalformedXML"),
    (rule_xml("<Status>Enabled</Status><Filter><Prefix>a</Prefix><Tag><Key>k</Key>"
              "<Value>v</Value></Tag></Filter>" + EXP), "MalformedXML"),
    (rule_xml("<Status>Enabled</Status><Filter/>"), "InvalidRequest"),  # no action
    (rule_xml("<Status>Enabled</Status><Filter/><Expiration><Days>0</Days></Expiration>"),
     "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter/><Expiration><Days>x</Days></Expiration>"),
     "MalformedXML"),
    (rule_xml("<Status>Enabled</Status><Filter/><Expiration><Days>1</Days>"
              "<Date>2030-01-01T00:00:00Z</Date></Expiration>"), "MalformedXML"),
    (rule_xml("<Status>Enabled</Status><Filter/>"
              "<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>"), "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter/>"
              "<Transition><Days>1</Days><StorageClass>STANDARD</StorageClass></Transition>"),
     "MalformedXML"),
    (rule_xml("<Status>Enabled</Status><Filter/>"
              "<Transition><Days>5</Days><StorageClass>STANDARD_IA</StorageClass></Transition>"),
     "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter/><Expiration><Days>5</Days></Expiration>"
              "<Transition><Days>5</Days><StorageClass>GLACIER</StorageClass></Transition>"),
     "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter/>"
              "<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays>"
              "</NoncurrentVersionExpiration>"), "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter/>"
              "<AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation>"
              "</AbortIncompleteMultipartUpload>"), "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter><Tag><Key>k</Key><Value>v</Value></Tag>"
              "</Filter><AbortIncompleteMultipartUpload><DaysAfterInitiation>1"
              "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"), "InvalidRequest"),
    (rule_xml("<Status>Enabled</Status><Filter><And><Tag><Key>k</Key><Value>1</Value></Tag>"
              "<Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>" + EXP),
     "InvalidArgument"),
    (rule_xml("<Status>Enabled</Status><Filter><And><ObjectSizeGreaterThan>10"
              "</ObjectSizeGreaterThan><ObjectSizeLessThan>5</ObjectSizeLessThan></And>"
              "</Filter>" + EXP), "InvalidArgument"),
    (rule_xml("<ID>" + "x" * 256 + "</ID><Status>Enabled</Status><Filter/>" + EXP),
     "InvalidArgument"),
    ("<LifecycleConfiguration>" + ("<Rule><ID>same</ID><Status>Enabled</Status><Filter/>"
                                   + EXP + "</Rule>") * 2 + "</LifecycleConfiguration>",
     "InvalidArgument"),
    ("<LifecycleConfiguration>" + "".join(
        f"<Rule><ID>r{i}</ID><Status>Enabled</Status><Filter/>{EXP}</Rule>"
        for i in range(1001)) + "</LifecycleConfiguration>", "MalformedXML"),
]


def test_configuration_validation(s3):
    c = s3.client()
    c.create_bucket(Bucket="lcv")
    for xml, code in BAD:
        r = put_lifecycle_xml(s3, "lcv", xml)
        assert (r.status, r.code) == (400, code), xml[:300]
    # None of them was stored; a valid one with the most rules allowed is.
    assert error_of(c.get_bucket_lifecycle_configuration, Bucket="lcv")[0] == (
        "NoSuchLifecycleConfiguration")
    ok = "<LifecycleConfiguration>" + "".join(
        f"<Rule><ID>r{i}</ID><Status>Enabled</Status><Filter><Prefix>p{i}/</Prefix></Filter>"
        f"{EXP}</Rule>" for i in range(1000)) + "</LifecycleConfiguration>"
    r = put_lifecycle_xml(s3, "lcv", ok)
    assert r.status == 200, r.body[:300]
    assert len(c.get_bucket_lifecycle_configuration(Bucket="lcv")["Rules"]) == 1000


def test_aws_cli_lifecycle(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="lccli")
    env = aws_cli_env(s3, tmp_path)
    doc = {"Rules": [{"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                      "Expiration": {"Days": 3},
                      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}
    f = tmp_path / "lc.json"
    f.write_text(json.dumps(doc))

    def s3api(*args):
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3api", *args],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else None

    s3api("put-bucket-lifecycle-configuration", "--bucket", "lccli",
          "--lifecycle-configuration", f"file://{f}")
    assert s3api("get-bucket-lifecycle-configuration", "--bucket", "lccli") == doc
    assert c.get_bucket_lifecycle_configuration(Bucket="lccli")["Rules"] == doc["Rules"]
    s3api("delete-bucket-lifecycle", "--bucket", "lccli")
    assert error_of(c.get_bucket_lifecycle_configuration, Bucket="lccli")[1] == 404


# ---- the worker ----

def test_expiration_by_prefix_tag_and_size(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="exp")
    for k in ("logs/1", "logs/2", "keep/1", "logsx"):
        c.put_object(Bucket="exp", Key=k, Body=b"data")
    c.put_object(Bucket="exp", Key="sized/big", Body=b"x" * 500)
    c.put_object(Bucket="exp", Key="sized/small", Body=b"x" * 50)
    c.put_object(Bucket="exp", Key="t/tmp", Body=b"1", Tagging="class=tmp&owner=me")
    c.put_object(Bucket="exp", Key="t/other", Body=b"1", Tagging="class=keep")
    c.put_object(Bucket="exp", Key="t/none", Body=b"1")
    tags_work = object_tags(c, "exp", "t/tmp") == {"class": "tmp", "owner": "me"}
    c.put_bucket_lifecycle_configuration(Bucket="exp", LifecycleConfiguration={"Rules": [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Days": 1}},
        {"ID": "tmp", "Filter": {"Tag": {"Key": "class", "Value": "tmp"}}, "Status": "Enabled",
         "Expiration": {"Days": 1}},
        {"ID": "big", "Status": "Enabled", "Expiration": {"Days": 1},
         "Filter": {"And": {"Prefix": "sized/", "ObjectSizeGreaterThan": 100}}},
        {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled",
         "Expiration": {"Days": 1}},
    ]})
    gone = {"logs/1", "logs/2", "sized/big"} | ({"t/tmp"} if tags_work else set())
    wait_for(lambda: not gone & set(keys(c, "exp")), "the expired objects to go", timeout=90)
    # The pass that removed them looked at every key: what no rule matches is still there.
    assert set(keys(c, "exp")) == {"keep/1", "logsx", "sized/small", "t/other", "t/none"} | (
        set() if tags_work else {"t/tmp"})
    assert error_of(c.get_object, Bucket="exp", Key="logs/1") == ("NoSuchKey", 404)
    assert actions(s3, "expire") >= len(gone)
    if not tags_work:
        pytest.skip("object tagging (x-amz-tagging on PUT) is not stored yet: tag filter untested")


def test_expiration_header_names_the_rule_and_day(s3):
    """x-amz-expiration (boto3's Expiration) on HEAD, GET, PUT, copy and complete: the earliest
    enabled Expiration rule that takes the object, with real days its day rounded up to midnight
    UTC as AWS does (and as the worker acts); nothing for a key no enabled rule takes."""
    c = s3.client()
    c.create_bucket(Bucket="hdr")
    c.put_object(Bucket="hdr", Key="logs/a", Body=b"x")
    c.put_object(Bucket="hdr", Key="logs/tmp", Body=b"x", Tagging="class=tmp")
    c.put_object(Bucket="hdr", Key="other", Body=b"x")
    assert "Expiration" not in c.head_object(Bucket="hdr", Key="logs/a")
    c.put_bucket_lifecycle_configuration(Bucket="hdr", LifecycleConfiguration={"Rules": [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Days": 3}},
        {"ID": 'tmp "q"', "Filter": {"Tag": {"Key": "class", "Value": "tmp"}},
         "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "later", "Filter": {"Prefix": "logs/a"}, "Status": "Enabled",
         "Expiration": {"Date": "2100-01-01T00:00:00Z"}},
        {"ID": "off", "Filter": {"Prefix": "other"}, "Status": "Disabled",
         "Expiration": {"Days": 1}},
        {"ID": "far", "Filter": {"Prefix": "far/"}, "Status": "Enabled",
         "Expiration": {"Days": 2**31 - 1}}]})

    def due(mod, days):
        """The midnights after mod + days (mod is whole seconds: at midnight, either one)."""
        at = mod.astimezone(datetime.timezone.utc) + datetime.timedelta(days=days)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = day + datetime.timedelta(days=1)
        return {email.utils.format_datetime(d, usegmt=True) for d in
                ((day, nxt) if at == day else (nxt,))}

    for key, days, rule in (("logs/a", 3, "logs"), ("logs/tmp", 1, "tmp%20%22q%22")):
        for h in (c.head_object(Bucket="hdr", Key=key), c.get_object(Bucket="hdr", Key=key)):
            m = re.fullmatch(r'expiry-date="([^"]+)", rule-id="([^"]*)"', h["Expiration"])
            assert m and m.group(2) == rule, h["Expiration"]
            assert m.group(1) in due(h["LastModified"], days), (h["Expiration"],
                                                                h["LastModified"])
    assert "Expiration" not in c.head_object(Bucket="hdr", Key="other")
    # past the year 9999 there is no RFC 1123 date to give
    assert "Expiration" not in c.put_object(Bucket="hdr", Key="far/x", Body=b"x")
    put = c.put_object(Bucket="hdr", Key="logs/new", Body=b"x")
    head = c.head_object(Bucket="hdr", Key="logs/new")
    assert put["Expiration"] == head["Expiration"] and 'rule-id="logs"' in put["Expiration"]
    copy = c.copy_object(Bucket="hdr", Key="logs/copy",
                         CopySource={"Bucket": "hdr", "Key": "other"})
    head = c.head_object(Bucket="hdr", Key="logs/copy")
    assert copy["Expiration"] == head["Expiration"] and 'rule-id="logs"' in copy["Expiration"]
    assert "Expiration" not in c.copy_object(Bucket="hdr", Key="other2",
                                             CopySource={"Bucket": "hdr", "Key": "logs/a"})
    up = c.create_multipart_upload(Bucket="hdr", Key="logs/mp")["UploadId"]
    part = c.upload_part(Bucket="hdr", Key="logs/mp", UploadId=up, PartNumber=1, Body=b"y")
    done = c.complete_multipart_upload(Bucket="hdr", Key="logs/mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    head = c.head_object(Bucket="hdr", Key="logs/mp")
    assert done["Expiration"] == head["Expiration"] and 'rule-id="logs"' in done["Expiration"]
    # by version id: the current version says it, a noncurrent one (its own rules) does not
    c.put_bucket_versioning(Bucket="hdr", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="hdr", Key="logs/v", Body=b"1")["VersionId"]
    v2 = c.put_object(Bucket="hdr", Key="logs/v", Body=b"2")["VersionId"]
    assert 'rule-id="logs"' in c.head_object(Bucket="hdr", Key="logs/v",
                                             VersionId=v2)["Expiration"]
    assert "Expiration" not in c.get_object(Bucket="hdr", Key="logs/v", VersionId=v1)
    c.delete_bucket_lifecycle(Bucket="hdr")
    assert "Expiration" not in c.head_object(Bucket="hdr", Key="logs/a")


def object_tags(c, bucket, key):
    """The object's tags, or None while object tagging is not implemented."""
    try:
        return {t["Key"]: t["Value"] for t in
                c.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    except ClientError:
        return None


def test_expiration_by_date_and_clean_stop(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="date")
    c.put_object(Bucket="date", Key="old/a", Body=b"a")
    c.put_object(Bucket="date", Key="new/a", Body=b"a")
    c.put_bucket_lifecycle_configuration(Bucket="date", LifecycleConfiguration={"Rules": [
        {"ID": "past", "Filter": {"Prefix": "old/"}, "Status": "Enabled",
         "Expiration": {"Date": "2020-01-01T00:00:00Z"}},
        {"ID": "future", "Filter": {"Prefix": "new/"}, "Status": "Enabled",
         "Expiration": {"Date": "2100-01-01T00:00:00Z"}}]})
    wait_for(lambda: keys(c, "date") == ["new/a"], "old/a to expire", timeout=90)
    # The worker holds nothing that keeps the daemon from stopping cleanly, and its state
    # survives a restart.
    assert s3.stop() == 0
    s3.start()
    c = s3.client()
    assert keys(c, "date") == ["new/a"]
    assert c.get_bucket_lifecycle_configuration(Bucket="date")["Rules"][0]["ID"] == "past"


def test_transition_to_glacier_then_restore(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="cold")
    c.put_object(Bucket="cold", Key="arch/a", Body=b"frozen bytes")
    c.put_object(Bucket="cold", Key="warm/b", Body=b"warm bytes")
    assert error_of(c.restore_object, Bucket="cold", Key="warm/b",
                    RestoreRequest={"Days": 1}) == ("InvalidObjectState", 403)
    c.put_bucket_lifecycle_configuration(Bucket="cold", LifecycleConfiguration={"Rules": [
        {"ID": "freeze", "Filter": {"Prefix": "arch/"}, "Status": "Enabled",
         "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}]}]})
    wait_for(lambda: c.head_object(Bucket="cold", Key="arch/a").get("StorageClass")
             == "GLACIER", "arch/a to move to GLACIER", timeout=90)
    listed = {o["Key"]: o["StorageClass"] for o in c.list_objects_v2(Bucket="cold")["Contents"]}
    assert listed == {"arch/a": "GLACIER", "warm/b": "STANDARD"}
    assert actions(s3, "transition") >= 1
    assert error_of(c.get_object, Bucket="cold", Key="arch/a") == ("InvalidObjectState", 403)
    assert "Restore" not in c.head_object(Bucket="cold", Key="arch/a")
    assert c.get_object(Bucket="cold", Key="warm/b")["Body"].read() == b"warm bytes"
    # A restore is immediate here: 202 the first time, 200 while the copy is available.
    r = c.restore_object(Bucket="cold", Key="arch/a",
                         RestoreRequest={"Days": 600, "GlacierJobParameters": {"Tier": "Bulk"}})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert c.get_object(Bucket="cold", Key="arch/a")["Body"].read() == b"frozen bytes"
    head = c.head_object(Bucket="cold", Key="arch/a")
    assert head["StorageClass"] == "GLACIER"
    assert re.fullmatch(r'ongoing-request="false", expiry-date="\w{3}, \d\d \w{3} \d{4} '
                        r'\d\d:\d\d:\d\d GMT"', head["Restore"]), head["Restore"]
    r = c.restore_object(Bucket="cold", Key="arch/a", RestoreRequest={"Days": 700})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert c.head_object(Bucket="cold", Key="arch/a")["Restore"] != head["Restore"]
    # Bad requests.
    assert error_of(c.restore_object, Bucket="cold", Key="missing",
                    RestoreRequest={"Days": 1}) == ("NoSuchKey", 404)
    r = s3.request("POST", "/cold/arch/a", "restore", body=b"<RestoreRequest><Days>0</Days>"
                   b"</RestoreRequest>")
    assert (r.status, r.code) == (400, "InvalidArgument")
    r = s3.request("POST", "/cold/arch/a", "restore", body=b"<Nope/>")
    assert (r.status, r.code) == (400, "MalformedXML")


def test_restore_expires(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="thaw")
    c.put_object(Bucket="thaw", Key="a", Body=b"a")
    c.put_bucket_lifecycle_configuration(Bucket="thaw", LifecycleConfiguration={"Rules": [
        {"ID": "freeze", "Filter": {}, "Status": "Enabled",
         "Transitions": [{"Days": 0, "StorageClass": "DEEP_ARCHIVE"}]}]})
    wait_for(lambda: c.head_object(Bucket="thaw", Key="a").get("StorageClass")
             == "DEEP_ARCHIVE", "a to move to DEEP_ARCHIVE", timeout=90)
    assert c.restore_object(Bucket="thaw", Key="a", RestoreRequest={"Days": 1})[
        "ResponseMetadata"]["HTTPStatusCode"] == 202
    # One (one-second) day later the worker drops the restored copy: reads fail again.
    wait_for(lambda: actions(s3, "restore_expired") >= 1, "the restore to expire", timeout=90)
    assert error_of(c.get_object, Bucket="thaw", Key="a") == ("InvalidObjectState", 403)
    assert "Restore" not in c.head_object(Bucket="thaw", Key="a")
    assert c.restore_object(Bucket="thaw", Key="a", RestoreRequest={"Days": 100})[
        "ResponseMetadata"]["HTTPStatusCode"] == 202


def test_storage_class_on_put(s3):
    c = s3.client()
    c.create_bucket(Bucket="classes")
    try:
        c.put_object(Bucket="classes", Key="ia", Body=b"ia", StorageClass="STANDARD_IA")
    except ClientError as e:
        if e.response["Error"]["Code"] == "InvalidStorageClass":
            pytest.skip("PutObject does not take x-amz-storage-class other than STANDARD yet "
                        "(s3_storage_class in object.c)")
        raise
    c.put_object(Bucket="classes", Key="gl", Body=b"gl", StorageClass="GLACIER")
    assert c.head_object(Bucket="classes", Key="ia")["StorageClass"] == "STANDARD_IA"
    assert c.get_object(Bucket="classes", Key="ia")["Body"].read() == b"ia"
    assert error_of(c.get_object, Bucket="classes", Key="gl") == ("InvalidObjectState", 403)
    assert c.restore_object(Bucket="classes", Key="gl", RestoreRequest={"Days": 5})[
        "ResponseMetadata"]["HTTPStatusCode"] == 202
    assert c.get_object(Bucket="classes", Key="gl")["Body"].read() == b"gl"


def data_files(s3):
    return {p.name for p in (s3.data_dir / "objects").rglob("*") if p.is_file()}


def test_abort_incomplete_multipart_uploads(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="mpu")
    before = data_files(s3)
    old = c.create_multipart_upload(Bucket="mpu", Key="up/a")["UploadId"]
    c.upload_part(Bucket="mpu", Key="up/a", UploadId=old, PartNumber=1, Body=b"p" * 300_000)
    other = c.create_multipart_upload(Bucket="mpu", Key="other/b")["UploadId"]
    part_files = data_files(s3) - before
    assert part_files
    c.put_bucket_lifecycle_configuration(Bucket="mpu", LifecycleConfiguration={"Rules": [
        {"ID": "abort", "Filter": {"Prefix": "up/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    wait_for(lambda: [
        u["Key"] for u in c.list_multipart_uploads(Bucket="mpu").get("Uploads", [])]
        == ["other/b"], "the upload to be aborted", timeout=90)
    assert error_of(c.list_parts, Bucket="mpu", Key="up/a", UploadId=old) == ("NoSuchUpload",
                                                                              404)
    assert not part_files & data_files(s3)
    assert actions(s3, "abort_upload") >= 1
    c.abort_multipart_upload(Bucket="mpu", Key="other/b", UploadId=other)


def enable_versioning(c, bucket):
    c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if c.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        pytest.skip("bucket versioning is not implemented yet (GetBucketVersioning)")


def test_noncurrent_versions_and_expired_delete_markers(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="ver")
    enable_versioning(c, "ver")
    ids = [c.put_object(Bucket="ver", Key="keep2/k", Body=b"v%d" % i)["VersionId"]
           for i in range(3)]
    c.put_object(Bucket="ver", Key="dm/k", Body=b"doomed")
    c.delete_object(Bucket="ver", Key="dm/k")  # a delete marker over one version
    c.put_object(Bucket="ver", Key="dm/live", Body=b"current")
    c.put_object(Bucket="ver", Key="nct/k", Body=b"old")
    c.put_object(Bucket="ver", Key="nct/k", Body=b"new")
    c.put_bucket_lifecycle_configuration(Bucket="ver", LifecycleConfiguration={"Rules": [
        {"ID": "keep-one", "Filter": {"Prefix": "keep2/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
        {"ID": "markers", "Filter": {"Prefix": "dm/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        {"ID": "cold-old", "Filter": {"Prefix": "nct/"}, "Status": "Enabled",
         "NoncurrentVersionTransitions": [{"NoncurrentDays": 0, "StorageClass": "GLACIER"}]},
    ]})
    # The oldest of keep2/k goes; the newest noncurrent one is kept (NewerNoncurrentVersions).
    wait_for(lambda: [v[1] for v in versions(c, "ver", "keep2/")] != sorted(ids),
             "the oldest noncurrent version to go", timeout=90)
    assert sorted(v[1] for v in versions(c, "ver", "keep2/")) == sorted(ids[1:])
    assert c.get_object(Bucket="ver", Key="keep2/k")["Body"].read() == b"v2"
    # dm/k: its noncurrent version expires, then the delete marker left alone goes too;
    # dm/live (current, no marker) stays.
    wait_for(lambda: [v[0] for v in versions(c, "ver", "dm/")] == ["dm/live"],
             "the expired delete marker to go", timeout=90)
    assert actions(s3, "expire_delete_marker") >= 1
    assert actions(s3, "expire_noncurrent") >= 2
    # nct/k: the noncurrent version moved to GLACIER, the current one did not.
    wait_for(lambda: [
        v["StorageClass"] for v in c.list_object_versions(Bucket="ver", Prefix="nct/")
        ["Versions"] if not v["IsLatest"]] == ["GLACIER"],
        "the noncurrent version to move to GLACIER", timeout=90)
    assert c.get_object(Bucket="ver", Key="nct/k")["Body"].read() == b"new"
    assert c.head_object(Bucket="ver", Key="nct/k").get("StorageClass", "STANDARD") == "STANDARD"


def test_expiration_on_versioned_bucket_leaves_a_delete_marker(start_s3):
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="verexp")
    enable_versioning(c, "verexp")
    vid = c.put_object(Bucket="verexp", Key="x", Body=b"x")["VersionId"]
    c.put_bucket_lifecycle_configuration(Bucket="verexp", LifecycleConfiguration={"Rules": [
        {"ID": "exp", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    wait_for(lambda: keys(c, "verexp") == [], "x to expire", timeout=90)
    vs = versions(c, "verexp")
    assert len(vs) == 2 and ("x", vid, False, False) in vs
    assert [v for v in vs if v[3] and v[2]], vs  # the current version is a delete marker
    assert c.get_object(Bucket="verexp", Key="x", VersionId=vid)["Body"].read() == b"x"


def test_expiration_across_batches(start_s3):
    """More keys than one step reads (1000 index rows): the walk resumes after its cursor."""
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="bulk")
    for i in range(1100):
        c.put_object(Bucket="bulk", Key=f"b/{i:05d}", Body=b"")
    for k in ("a", "c"):
        c.put_object(Bucket="bulk", Key=k, Body=b"stays")
    c.put_bucket_lifecycle_configuration(Bucket="bulk", LifecycleConfiguration={"Rules": [
        {"ID": "b", "Filter": {"Prefix": "b/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    wait_for(lambda: c.list_objects_v2(Bucket="bulk")["KeyCount"] == 2, "every b/ key to expire",
             timeout=90)
    assert keys(c, "bulk") == ["a", "c"]
    assert actions(s3, "expire") == 1100


def test_intelligent_tiering_moves_by_last_access(start_s3):
    """INTELLIGENT_TIERING: an object nobody reads for 30 (one-second) days goes to the archive
    tier (still readable, x-amz-archive-status), one read all along stays in the frequent tier,
    and a read brings an archived object back."""
    s3 = start_worker(start_s3)
    c = s3.client()
    c.create_bucket(Bucket="tier")
    for key in ("hot", "cold"):
        c.put_object(Bucket="tier", Key=key, Body=key.encode() * 100,
                     StorageClass="INTELLIGENT_TIERING")

    def archived(key):
        h = c.head_object(Bucket="tier", Key=key)["ResponseMetadata"]["HTTPHeaders"]
        return h.get("x-amz-archive-status") == "ARCHIVE_ACCESS"

    deadline = time.monotonic() + 120
    while not archived("cold"):
        assert time.monotonic() < deadline, "the unread object never reached the archive tier"
        assert c.get_object(Bucket="tier", Key="hot")["Body"].read() == b"hot" * 100
        time.sleep(0.5)
    assert not archived("hot")
    assert c.head_object(Bucket="tier", Key="cold")["StorageClass"] == "INTELLIGENT_TIERING"
    # an archived INTELLIGENT_TIERING object needs no restore; the read moves it back
    assert c.get_object(Bucket="tier", Key="cold")["Body"].read() == b"cold" * 100
    wait_for(lambda: not archived("cold"), "the read object back in the frequent tier",
             timeout=90)
    assert actions(s3, "access_recorded") >= 1 and actions(s3, "archive_tier") >= 1
