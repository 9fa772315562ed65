# SPDX-License-Identifier: Apache-2.0
"""sov-s3 access control through boto3, the aws CLI and raw HTTP: bucket policies (public reads,
explicit Deny over Allow, cross-account grants, conditions on the caller's address and the
listing prefix), canned and XML ACLs on buckets and objects, the public access block, refusals
of malformed documents, and policies that outlive a restart. Anonymous callers are unsigned
requests, exactly what a browser or curl sends."""
import json
import subprocess

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from conftest import S3_ACCOUNT, S3_ACCOUNT2, aws_cli_env, s3_error

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal, action, resource, **extra):
    return dict(Effect="Allow", Principal=principal, Action=action, Resource=resource, **extra)


def deny(principal, action, resource, **extra):
    return dict(Effect="Deny", Principal=principal, Action=action, Resource=resource, **extra)


def anon_get(d, bucket, key):
    r = d.request("GET", f"/{bucket}/{key}", sign=False)
    return r.status, (r.body if r.status == 200 else r.code)


def anon_list(d, bucket, query="list-type=2"):
    r = d.request("GET", f"/{bucket}", query, sign=False)
    return r.status, (r.body if r.status == 200 else r.code)


def denied(call):
    with pytest.raises(ClientError) as e:
        call()
    return s3_error(e)


def test_anonymous_reads_need_a_public_policy(s3):
    c = s3.client()
    c.create_bucket(Bucket="site")
    c.put_object(Bucket="site", Key="index.html", Body=b"<h1>hi</h1>")
    assert anon_get(s3, "site", "index.html") == (403, "AccessDenied")
    assert anon_list(s3, "site") == (403, "AccessDenied")
    assert denied(lambda: c.get_bucket_policy(Bucket="site")) == ("NoSuchBucketPolicy", 404)
    assert denied(lambda: c.get_bucket_policy_status(Bucket="site")) == \
        ("NoSuchBucketPolicy", 404)

    doc = policy(allow("*", "s3:GetObject", "arn:aws:s3:::site/*"))
    c.put_bucket_policy(Bucket="site", Policy=doc)
    assert json.loads(c.get_bucket_policy(Bucket="site")["Policy"]) == json.loads(doc)
    assert c.get_bucket_policy_status(Bucket="site")["PolicyStatus"]["IsPublic"] is True
    assert anon_get(s3, "site", "index.html") == (200, b"<h1>hi</h1>")
    # boto3 without credentials (botocore's UNSIGNED) reads too
    anon = s3.client(signature_version=UNSIGNED)
    assert anon.get_object(Bucket="site", Key="index.html")["Body"].read() == b"<h1>hi</h1>"
    assert anon.head_object(Bucket="site", Key="index.html")["ContentLength"] == 11
    # the policy grants reads only: no listing, no writes, no deletes, no policy changes
    assert anon_list(s3, "site") == (403, "AccessDenied")
    assert denied(lambda: anon.put_object(Bucket="site", Key="x", Body=b"x"))[1] == 403
    assert denied(lambda: anon.delete_object(Bucket="site", Key="index.html"))[1] == 403
    assert denied(lambda: anon.delete_bucket_policy(Bucket="site"))[1] == 403
    assert [o["Key"] for o in c.list_objects_v2(Bucket="site")["Contents"]] == ["index.html"]

    c.delete_bucket_policy(Bucket="site")
    assert denied(lambda: c.get_bucket_policy(Bucket="site")) == ("NoSuchBucketPolicy", 404)
    assert anon_get(s3, "site", "index.html") == (403, "AccessDenied")


def test_explicit_deny_wins_even_for_the_owner(s3):
    c = s3.client()
    c.create_bucket(Bucket="vault")
    for k in ("pub/a", "secret/b"):
        c.put_object(Bucket="vault", Key=k, Body=k.encode())
    c.put_bucket_policy(Bucket="vault", Policy=policy(
        allow("*", "s3:GetObject", "arn:aws:s3:::vault/*"),
        deny("*", ["s3:GetObject", "s3:DeleteObject"], "arn:aws:s3:::vault/secret/*")))
    assert anon_get(s3, "vault", "pub/a") == (200, b"pub/a")
    assert anon_get(s3, "vault", "secret/b") == (403, "AccessDenied")
    # the owner is bound by an explicit Deny too ...
    assert denied(lambda: c.get_object(Bucket="vault", Key="secret/b")) == ("AccessDenied", 403)
    assert denied(lambda: c.delete_object(Bucket="vault", Key="secret/b")) == \
        ("AccessDenied", 403)
    assert c.get_object(Bucket="vault", Key="pub/a")["Body"].read() == b"pub/a"
    # ... but can always read, replace and remove the policy itself
    assert "secret" in c.get_bucket_policy(Bucket="vault")["Policy"]
    c.delete_bucket_policy(Bucket="vault")
    assert c.get_object(Bucket="vault", Key="secret/b")["Body"].read() == b"secret/b"


def test_cross_account_access_through_a_policy(start_s3):
    d = start_s3(second_account=True)
    c, c2 = d.client(), d.client2()
    c.create_bucket(Bucket="shared")
    c.put_object(Bucket="shared", Key="docs/readme", Body=b"read me")
    assert denied(lambda: c2.get_object(Bucket="shared", Key="docs/readme")) == \
        ("AccessDenied", 403)
    other = S3_ACCOUNT2[0]
    c.put_bucket_policy(Bucket="shared", Policy=policy(
        allow({"AWS": f"arn:aws:iam::{other}:root"}, ["s3:GetObject", "s3:ListBucket"],
              ["arn:aws:s3:::shared", "arn:aws:s3:::shared/*"]),
        allow({"AWS": [other]}, "s3:PutObject", "arn:aws:s3:::shared/inbox/*")))
    assert c2.get_object(Bucket="shared", Key="docs/readme")["Body"].read() == b"read me"
    assert [o["Key"] for o in c2.list_objects_v2(Bucket="shared")["Contents"]] == ["docs/readme"]
    c2.put_object(Bucket="shared", Key="inbox/report", Body=b"from other")
    assert c.get_object(Bucket="shared", Key="inbox/report")["Body"].read() == b"from other"
    # nothing beyond the grants
    assert denied(lambda: c2.put_object(Bucket="shared", Key="docs/readme", Body=b"x")) == \
        ("AccessDenied", 403)
    assert denied(lambda: c2.delete_object(Bucket="shared", Key="inbox/report")) == \
        ("AccessDenied", 403)
    assert denied(lambda: c2.get_bucket_policy(Bucket="shared")) == ("AccessDenied", 403)
    assert denied(lambda: c2.put_bucket_policy(Bucket="shared", Policy=policy(
        allow("*", "s3:*", "arn:aws:s3:::shared/*")))) == ("AccessDenied", 403)
    assert denied(lambda: c2.get_bucket_acl(Bucket="shared")) == ("AccessDenied", 403)
    assert denied(lambda: c2.delete_bucket(Bucket="shared")) == ("AccessDenied", 403)
    # anonymous callers get nothing from a grant to one account
    assert anon_get(d, "shared", "docs/readme") == (403, "AccessDenied")
    # copying out needs read access to the source: the grant gives it
    c2.create_bucket(Bucket="mine")
    c2.copy_object(Bucket="mine", Key="copy", CopySource={"Bucket": "shared", "Key": "docs/readme"})
    assert c2.get_object(Bucket="mine", Key="copy")["Body"].read() == b"read me"
    assert c.get_object(Bucket="shared", Key="docs/readme")["Body"].read() == b"read me"


def test_conditions_on_source_ip_and_prefix(start_s3):
    d = start_s3(second_account=True)
    c, c2 = d.client(), d.client2()
    c.create_bucket(Bucket="cond")
    c.put_object(Bucket="cond", Key="home/other/a", Body=b"a")
    c.put_object(Bucket="cond", Key="home/admin/b", Body=b"b")

    def from_net(cidr):
        return policy(allow("*", "s3:GetObject", "arn:aws:s3:::cond/*",
                            Condition={"IpAddress": {"aws:SourceIp": cidr}}))

    c.put_bucket_policy(Bucket="cond", Policy=from_net("127.0.0.1/32"))
    assert anon_get(d, "cond", "home/other/a") == (200, b"a")
    # a grant pinned to one address is not public
    assert c.get_bucket_policy_status(Bucket="cond")["PolicyStatus"]["IsPublic"] is False
    c.put_bucket_policy(Bucket="cond", Policy=from_net("10.0.0.0/8"))
    assert anon_get(d, "cond", "home/other/a") == (403, "AccessDenied")

    other = S3_ACCOUNT2[0]
    c.put_bucket_policy(Bucket="cond", Policy=policy(allow(
        {"AWS": other}, "s3:ListBucket", "arn:aws:s3:::cond",
        Condition={"StringLike": {"s3:prefix": [f"home/{other}/", f"home/{other}/*"]}})))
    got = c2.list_objects_v2(Bucket="cond", Prefix=f"home/{other}/")
    assert [o["Key"] for o in got["Contents"]] == ["home/other/a"]
    assert denied(lambda: c2.list_objects_v2(Bucket="cond", Prefix="home/admin/")) == \
        ("AccessDenied", 403)
    assert denied(lambda: c2.list_objects_v2(Bucket="cond")) == ("AccessDenied", 403)
    assert denied(lambda: c2.get_object(Bucket="cond", Key="home/other/a")) == \
        ("AccessDenied", 403)


def test_canned_object_acl_opens_one_object(s3):
    c = s3.client()
    c.create_bucket(Bucket="mixed")
    c.put_object(Bucket="mixed", Key="open", Body=b"o", ACL="public-read")
    c.put_object(Bucket="mixed", Key="closed", Body=b"c")
    assert anon_get(s3, "mixed", "open") == (200, b"o")
    assert anon_get(s3, "mixed", "closed") == (403, "AccessDenied")
    assert anon_list(s3, "mixed") == (403, "AccessDenied")
    acl = c.get_object_acl(Bucket="mixed", Key="open")
    grants = [(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Grantee"]["Type"],
               g["Permission"]) for g in acl["Grants"]]
    assert grants == [(S3_ACCOUNT[0], "CanonicalUser", "FULL_CONTROL"),
                      (ALL_USERS, "Group", "READ")]
    # an anonymous reader may read the object but not its ACL, nor change it
    r = s3.request("GET", "/mixed/open", "acl", sign=False)
    assert (r.status, r.code) == (403, "AccessDenied")
    r = s3.request("PUT", "/mixed/closed", "acl", headers={"x-amz-acl": "public-read"},
                   sign=False)
    assert (r.status, r.code) == (403, "AccessDenied")
    # the owner flips them with PutObjectAcl
    c.put_object_acl(Bucket="mixed", Key="open", ACL="private")
    c.put_object_acl(Bucket="mixed", Key="closed", ACL="public-read")
    assert anon_get(s3, "mixed", "open") == (403, "AccessDenied")
    assert anon_get(s3, "mixed", "closed") == (200, b"c")
    assert [g["Permission"] for g in c.get_object_acl(Bucket="mixed", Key="open")["Grants"]] \
        == ["FULL_CONTROL"]
    # an overwrite without x-amz-acl is private again; a copy does not inherit the ACL
    c.copy_object(Bucket="mixed", Key="copy", CopySource={"Bucket": "mixed", "Key": "closed"})
    assert anon_get(s3, "mixed", "copy") == (403, "AccessDenied")
    c.put_object(Bucket="mixed", Key="closed", Body=b"c2")
    assert anon_get(s3, "mixed", "closed") == (403, "AccessDenied")
    assert denied(lambda: c.put_object(Bucket="mixed", Key="bad", Body=b"x",
                                       ACL="world-writable")) == ("InvalidArgument", 400)
    assert denied(lambda: c.get_object(Bucket="mixed", Key="bad"))[0] == "NoSuchKey"


def test_bucket_acl_public_read_lets_anyone_list(s3):
    c = s3.client()
    c.create_bucket(Bucket="listed", ACL="public-read")
    c.put_object(Bucket="listed", Key="k", Body=b"v")
    status, body = anon_list(s3, "listed")
    assert status == 200 and b"<Key>k</Key>" in body
    # listing is not reading: the object itself stays private
    assert anon_get(s3, "listed", "k") == (403, "AccessDenied")
    acl = c.get_bucket_acl(Bucket="listed")
    assert acl["Owner"]["ID"] == S3_ACCOUNT[0]
    assert [(g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"][1:]] == \
        [(ALL_USERS, "READ")]
    # an XML AccessControlPolicy replaces it: private again, anonymous listing refused
    c.put_bucket_acl(Bucket="listed", AccessControlPolicy={
        "Owner": {"ID": S3_ACCOUNT[0]},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": S3_ACCOUNT[0]},
                    "Permission": "FULL_CONTROL"}]})
    assert anon_list(s3, "listed") == (403, "AccessDenied")
    assert [g["Permission"] for g in c.get_bucket_acl(Bucket="listed")["Grants"]] == \
        ["FULL_CONTROL"]
    c.put_bucket_acl(Bucket="listed", ACL="public-read")
    assert anon_list(s3, "listed")[0] == 200


def test_public_access_block(s3):
    c = s3.client()
    c.create_bucket(Bucket="guarded")
    c.put_object(Bucket="guarded", Key="was-public", Body=b"p", ACL="public-read")
    c.put_bucket_policy(Bucket="guarded", Policy=policy(
        allow("*", "s3:GetObject", "arn:aws:s3:::guarded/open/*")))
    c.put_object(Bucket="guarded", Key="open/x", Body=b"x")
    assert anon_get(s3, "guarded", "was-public") == (200, b"p")
    assert anon_get(s3, "guarded", "open/x") == (200, b"x")
    assert denied(lambda: c.get_public_access_block(Bucket="guarded")) == \
        ("NoSuchPublicAccessBlockConfiguration", 404)

    # IgnorePublicAcls and RestrictPublicBuckets close what was opened before
    c.put_public_access_block(Bucket="guarded", PublicAccessBlockConfiguration={
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True})
    assert c.get_public_access_block(Bucket="guarded")["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True}
    assert anon_get(s3, "guarded", "was-public") == (403, "AccessDenied")
    assert anon_get(s3, "guarded", "open/x") == (403, "AccessDenied")
    assert c.get_object(Bucket="guarded", Key="open/x")["Body"].read() == b"x"

    # BlockPublicAcls and BlockPublicPolicy refuse new public grants; nothing changes
    c.put_public_access_block(Bucket="guarded", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False})
    before = c.get_bucket_policy(Bucket="guarded")["Policy"]
    public = policy(allow("*", "s3:GetObject", "arn:aws:s3:::guarded/*"))
    assert denied(lambda: c.put_bucket_policy(Bucket="guarded", Policy=public)) == \
        ("AccessDenied", 403)
    assert c.get_bucket_policy(Bucket="guarded")["Policy"] == before
    assert denied(lambda: c.put_bucket_acl(Bucket="guarded", ACL="public-read")) == \
        ("AccessDenied", 403)
    assert denied(lambda: c.put_object(Bucket="guarded", Key="new", Body=b"n",
                                       ACL="public-read")) == ("AccessDenied", 403)
    assert denied(lambda: c.put_object_acl(Bucket="guarded", Key="open/x",
                                           ACL="public-read-write")) == ("AccessDenied", 403)
    assert denied(lambda: c.get_object(Bucket="guarded", Key="new"))[0] == "NoSuchKey"
    # private grants and non-public policies still go through
    c.put_object(Bucket="guarded", Key="new", Body=b"n", ACL="private")
    c.put_bucket_policy(Bucket="guarded", Policy=policy(allow(
        "*", "s3:GetObject", "arn:aws:s3:::guarded/*",
        Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}})))
    assert anon_get(s3, "guarded", "new") == (200, b"n")

    # without the block, the old public ACL counts again
    c.delete_public_access_block(Bucket="guarded")
    assert denied(lambda: c.get_public_access_block(Bucket="guarded"))[1] == 404
    c.delete_bucket_policy(Bucket="guarded")
    assert anon_get(s3, "guarded", "was-public") == (200, b"p")
    assert anon_get(s3, "guarded", "new") == (403, "AccessDenied")


BAD_POLICIES = [
    "not json at all",
    "{",
    json.dumps({"Version": "2012-10-17"}),
    policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}),
    policy(allow("*", "s3:GetObject", "arn:aws:s3:::another-bucket/*")),
    policy(allow("*", "s3:Teleport", "arn:aws:s3:::strict/*")),
    policy(dict(allow("*", "s3:GetObject", "arn:aws:s3:::strict/*"), Effect="Perhaps")),
    policy(allow("*", "s3:GetObject", "arn:aws:s3:::strict/*",
                 Condition={"IpAddress": {"aws:SourceIp": "999.0.0.0/8"}})),
    policy(allow("*", "s3:GetObject", "arn:aws:s3:::strict/*",
                 Condition={"StringAlmostEquals": {"s3:prefix": "x"}})),
    json.dumps({"Statement": [allow("*", "s3:GetObject", "arn:aws:s3:::strict/*")],
                "Padding": "x" * 21000}),
]


def test_malformed_documents_change_nothing(s3):
    c = s3.client()
    c.create_bucket(Bucket="strict")
    c.put_object(Bucket="strict", Key="k", Body=b"v")
    good = policy(allow("*", "s3:GetObject", "arn:aws:s3:::strict/k"))
    c.put_bucket_policy(Bucket="strict", Policy=good)
    for i, bad in enumerate(BAD_POLICIES):
        assert denied(lambda: c.put_bucket_policy(Bucket="strict", Policy=bad)) == \
            ("MalformedPolicy", 400), i
    assert c.get_bucket_policy(Bucket="strict")["Policy"] == good
    assert anon_get(s3, "strict", "k") == (200, b"v")

    # ACL documents: not XML, unknown permission, unknown account; a canned ACL nobody knows
    for body in (b"<AccessControlPolicy><AccessControlList><Grant>",
                 b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>admin</ID>"
                 b"</Grantee><Permission>OWN</Permission></Grant></AccessControlList>"
                 b"</AccessControlPolicy>",
                 b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>admin</ID>"
                 b"</Grantee><Permission/></Grant></AccessControlList></AccessControlPolicy>",
                 b"<Nonsense/>"):
        r = s3.request("PUT", "/strict", "acl", body=body)
        assert (r.status, r.code) == (400, "MalformedACLError"), body
    r = s3.request("PUT", "/strict", "acl", body=(
        b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>nobody-known</ID>"
        b"</Grantee><Permission>READ</Permission></Grant></AccessControlList>"
        b"</AccessControlPolicy>"))
    assert (r.status, r.code) == (400, "InvalidArgument")
    r = s3.request("PUT", "/strict", "acl", body=(
        b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID/></Grantee>"
        b"<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"))
    assert (r.status, r.code) == (400, "InvalidArgument")
    r = s3.request("PUT", "/strict", "acl", headers={"x-amz-acl": "everyone-everything"})
    assert (r.status, r.code) == (400, "InvalidArgument")
    r = s3.request("PUT", "/strict", "publicAccessBlock",
                   body=b"<PublicAccessBlockConfiguration><BlockPublicAcls>maybe"
                        b"</BlockPublicAcls></PublicAccessBlockConfiguration>")
    assert (r.status, r.code) == (400, "MalformedXML")
    r = s3.request("PUT", "/strict", "publicAccessBlock",
                   body=b"<PublicAccessBlockConfiguration><BlockPublicAcls/>"
                        b"</PublicAccessBlockConfiguration>")
    assert (r.status, r.code) == (400, "MalformedXML")
    assert [g["Permission"] for g in c.get_bucket_acl(Bucket="strict")["Grants"]] == \
        ["FULL_CONTROL"]
    assert denied(lambda: c.get_public_access_block(Bucket="strict"))[1] == 404


def test_policy_with_aws_cli_survives_restart(s3, tmp_path):
    c = s3.client()
    c.create_bucket(Bucket="durable")
    c.put_object(Bucket="durable", Key="k", Body=b"kept")
    env = aws_cli_env(s3, tmp_path)

    def aws(*args):
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", s3.url, "s3api", *args],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else None

    doc = policy(allow("*", "s3:GetObject", "arn:aws:s3:::durable/*"))
    (tmp_path / "policy.json").write_text(doc)
    aws("put-bucket-policy", "--bucket", "durable", "--policy", f"file://{tmp_path}/policy.json")
    aws("put-bucket-acl", "--bucket", "durable", "--acl", "public-read")
    acl = aws("get-bucket-acl", "--bucket", "durable")
    assert acl["Owner"]["ID"] == S3_ACCOUNT[0]
    assert {(g["Grantee"]["Type"], g["Permission"]) for g in acl["Grants"]} == \
        {("CanonicalUser", "FULL_CONTROL"), ("Group", "READ")}
    assert anon_get(s3, "durable", "k") == (200, b"kept")

    assert s3.stop() == 0
    s3.start()
    assert anon_get(s3, "durable", "k") == (200, b"kept")
    assert anon_list(s3, "durable")[0] == 200
    assert json.loads(aws("get-bucket-policy", "--bucket", "durable")["Policy"]) == \
        json.loads(doc)
    status = aws("get-bucket-policy-status", "--bucket", "durable")
    assert status["PolicyStatus"]["IsPublic"] is True


def test_grants_to_another_account(start_s3):
    d = start_s3(second_account=True)
    c, c2 = d.client(), d.client2()
    other = S3_ACCOUNT2[0]
    c.create_bucket(Bucket="granted")
    c.put_object(Bucket="granted", Key="for-other", Body=b"f", GrantRead=f'id="{other}"')
    c.put_object(Bucket="granted", Key="not-for-other", Body=b"n")
    assert c2.get_object(Bucket="granted", Key="for-other")["Body"].read() == b"f"
    assert denied(lambda: c2.get_object(Bucket="granted", Key="not-for-other")) == \
        ("AccessDenied", 403)
    # READ is not READ_ACP, and an object grant gives nothing on the bucket
    assert denied(lambda: c2.get_object_acl(Bucket="granted", Key="for-other")) == \
        ("AccessDenied", 403)
    assert denied(lambda: c2.list_objects_v2(Bucket="granted")) == ("AccessDenied", 403)
    assert anon_get(d, "granted", "for-other") == (403, "AccessDenied")

    # an XML ACL with FULL_CONTROL for the other account lets it read and rewrite the ACL
    owner = {"ID": S3_ACCOUNT[0]}
    c.put_object_acl(Bucket="granted", Key="not-for-other", AccessControlPolicy={
        "Owner": owner,
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": S3_ACCOUNT[0]},
                    "Permission": "FULL_CONTROL"},
                   {"Grantee": {"Type": "CanonicalUser", "ID": other},
                    "Permission": "FULL_CONTROL"}]})
    assert c2.get_object(Bucket="granted", Key="not-for-other")["Body"].read() == b"n"
    acl = c2.get_object_acl(Bucket="granted", Key="not-for-other")
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == \
        [(S3_ACCOUNT[0], "FULL_CONTROL"), (other, "FULL_CONTROL")]
    c2.put_object_acl(Bucket="granted", Key="not-for-other", ACL="private")
    assert denied(lambda: c2.get_object(Bucket="granted", Key="not-for-other")) == \
        ("AccessDenied", 403)
    # a bucket ACL granting WRITE lets the other account add objects, not read them
    c.put_bucket_acl(Bucket="granted", GrantWrite=f'id="{other}"',
                     GrantFullControl=f'id="{S3_ACCOUNT[0]}"')
    c2.put_object(Bucket="granted", Key="dropped", Body=b"d")
    assert c.get_object(Bucket="granted", Key="dropped")["Body"].read() == b"d"
    assert denied(lambda: c2.get_object(Bucket="granted", Key="dropped")) == \
        ("AccessDenied", 403)
    grants = c.get_bucket_acl(Bucket="granted")["Grants"]
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in grants] == \
        [(S3_ACCOUNT[0], "FULL_CONTROL"), (other, "WRITE")]


def test_public_write_acl_takes_anonymous_uploads(s3):
    c = s3.client()
    c.create_bucket(Bucket="dropbox", ACL="public-read-write")
    anon = s3.client(signature_version=UNSIGNED)
    anon.put_object(Bucket="dropbox", Key="single", Body=b"s")
    up = anon.create_multipart_upload(Bucket="dropbox", Key="multi")
    etag = anon.upload_part(Bucket="dropbox", Key="multi", UploadId=up["UploadId"], PartNumber=1,
                            Body=b"m")["ETag"]
    anon.complete_multipart_upload(Bucket="dropbox", Key="multi", UploadId=up["UploadId"],
                                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    # the objects belong to the bucket owner: the uploader cannot read them back
    assert c.get_object(Bucket="dropbox", Key="multi")["Body"].read() == b"m"
    assert c.get_object(Bucket="dropbox", Key="single")["Body"].read() == b"s"
    assert anon_get(s3, "dropbox", "single") == (403, "AccessDenied")
    assert sorted(o["Key"] for o in anon.list_objects_v2(Bucket="dropbox")["Contents"]) == \
        ["multi", "single"]
    anon.delete_object(Bucket="dropbox", Key="single")
    assert [o["Key"] for o in c.list_objects_v2(Bucket="dropbox")["Contents"]] == ["multi"]
    # the ACL itself stays the owner's
    assert denied(lambda: anon.put_bucket_acl(Bucket="dropbox", ACL="private"))[1] == 403
    assert denied(lambda: anon.get_bucket_acl(Bucket="dropbox"))[1] == 403


def test_versions_have_their_own_acls_and_actions(s3):
    c = s3.client()
    c.create_bucket(Bucket="vers")
    c.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket="vers", Key="k", Body=b"one")["VersionId"]
    v2 = c.put_object(Bucket="vers", Key="k", Body=b"two")["VersionId"]

    def anon_version(v):
        r = s3.request("GET", "/vers/k", f"versionId={v}", sign=False)
        return r.status, (r.body if r.status == 200 else r.code)

    # PutObjectAcl with a versionId opens that version only
    c.put_object_acl(Bucket="vers", Key="k", VersionId=v1, ACL="public-read")
    assert anon_version(v1) == (200, b"one")
    assert anon_version(v2) == (403, "AccessDenied")
    assert anon_get(s3, "vers", "k") == (403, "AccessDenied")
    assert len(c.get_object_acl(Bucket="vers", Key="k", VersionId=v1)["Grants"]) == 2
    assert len(c.get_object_acl(Bucket="vers", Key="k")["Grants"]) == 1
    # s3:GetObject covers the current version; older ones need s3:GetObjectVersion
    c.put_bucket_policy(Bucket="vers", Policy=policy(
        allow("*", "s3:GetObject", "arn:aws:s3:::vers/*")))
    assert anon_get(s3, "vers", "k") == (200, b"two")
    assert anon_version(v2) == (403, "AccessDenied")
    c.put_bucket_policy(Bucket="vers", Policy=policy(
        allow("*", "s3:GetObjectVersion", "arn:aws:s3:::vers/*")))
    assert anon_version(v2) == (200, b"two")
    assert anon_get(s3, "vers", "k") == (403, "AccessDenied")


def test_review_findings_stay_fixed(start_s3):
    """Regressions from a review: empty XML elements in DeleteObjects, a partner with s3:* on a
    bucket rewriting its policy, anonymous callers telling missing keys from private ones."""
    import base64
    import hashlib
    d = start_s3(second_account=True)
    c, partner = d.client(), d.client2()
    c.create_bucket(Bucket="shared")
    c.put_object(Bucket="shared", Key="a", Body=b"x")
    def multi_delete(body):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        return d.request("POST", "/shared", "delete", body=body, headers={"Content-MD5": md5})

    r = multi_delete(b"<Delete><Object><Key>a</Key><VersionId/></Object></Delete>")
    assert r.status == 200 and b"<Error>" in r.body
    assert c.head_object(Bucket="shared", Key="a")["ContentLength"] == 1  # nothing deleted
    assert multi_delete(b"<Delete><Quiet/><Object><Key>a</Key></Object></Delete>").status == 200
    with pytest.raises(ClientError):
        c.head_object(Bucket="shared", Key="a")
    c.put_object(Bucket="shared", Key="a", Body=b"x")
    pol = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": S3_ACCOUNT2[0]}, "Action": "s3:*",
        "Resource": ["arn:aws:s3:::shared", "arn:aws:s3:::shared/*"]}]}
    c.put_bucket_policy(Bucket="shared", Policy=json.dumps(pol))
    assert partner.get_object(Bucket="shared", Key="a")["Body"].read() == b"x"
    public = dict(pol, Statement=[dict(pol["Statement"][0], Principal="*")])
    with pytest.raises(ClientError) as e:
        partner.put_bucket_policy(Bucket="shared", Policy=json.dumps(public))
    assert s3_error(e)[0] == "AccessDenied"
    assert json.loads(c.get_bucket_policy(Bucket="shared")["Policy"]) == pol
    assert anon_get(d, "shared", "a")[0] == 403
    assert anon_get(d, "shared", "no-such-key")[0] == 403  # not 404: existence is not told
