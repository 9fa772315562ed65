# SPDX-License-Identifier: Apache-2.0
"""sov-api's Keystone v3 with Debian's openstack CLI and raw requests: tokens, projects, users,
roles, assignments, application and EC2 credentials (used against a real sov-s3), expiry and
revocation, hostile input, the hash-chained audit log with `sov audit verify`, and the agent
API with the scheduler's view of hosts."""
import json
import subprocess
import threading
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import BIN, clean_env, raw_http

SOV = BIN / "sov"


def test_token_issue_and_catalog(api):
    tok = api.openstack("token", "issue")
    assert tok["id"].startswith("sov_") and tok["project_id"]
    st, doc, r = api.request("GET", "/identity/v3/auth/tokens", token=tok["id"],
                             headers={"X-Subject-Token": tok["id"]})
    assert st == 200, r.body
    types = {s["type"] for s in doc["token"]["catalog"]}
    assert {"identity", "compute", "image", "volumev3", "network"} <= types
    assert {r["name"] for r in doc["token"]["roles"]} == {"admin", "member", "reader"}
    vol = [s for s in doc["token"]["catalog"] if s["type"] == "volumev3"][0]
    assert vol["endpoints"][0]["url"].endswith("/volume/v3/" + tok["project_id"])


def test_wrong_password_and_unknown_user(api):
    env = api.env(password="wrong")
    p = api.openstack("token", "issue", env=env, check=False)
    assert p.returncode != 0 and "401" in p.stderr
    p = api.openstack("token", "issue", env=api.env(user="nobody"), check=False)
    assert p.returncode != 0 and "401" in p.stderr
    st, doc, _ = api.request("GET", "/identity/v3/projects", token="sov_forged")
    assert st == 401 and doc["error"]["code"] == 401


def test_projects_users_roles_with_cli(api):
    p = api.openstack("project", "create", "--description", "team a",
                      "--property", "allowed_jurisdictions=EU,CH", "team-a")
    assert p["allowed_jurisdictions"] == "EU,CH"
    u = api.openstack("user", "create", "--password", "pw-a-1", "--project", "team-a", "alice")
    api.openstack("role", "add", "--project", "team-a", "--user", "alice", "member", fmt=False)
    rows = api.openstack("role", "assignment", "list", "--names", "--user", "alice")
    assert [(r["Role"], r["Project"]) for r in rows] == [("member", "team-a@Default")]
    alice = api.env("alice", "pw-a-1", "team-a")
    tok = api.openstack("token", "issue", env=alice)
    assert tok["user_id"] == u["id"] and tok["project_id"] == p["id"]
    # a member is not an admin: creating projects is refused
    r = api.openstack("project", "create", "other", env=alice, check=False)
    assert r.returncode != 0 and "403" in r.stderr
    names = {x["Name"] for x in api.openstack("project", "list")}
    assert {"admin", "team-a"} <= names
    # duplicates conflict
    r = api.openstack("project", "create", "team-a", check=False)
    assert r.returncode != 0 and "409" in r.stderr


def test_role_removal_revokes_tokens(api):
    t = api.make_project("rv")
    st, _, _ = api.request("GET", f"/identity/v3/users/{t['user_id']}", token=t["token"])
    assert st == 200
    admin = api.token()
    st, doc, _ = api.request("GET", "/identity/v3/roles?name=member", token=admin)
    rid = doc["roles"][0]["id"]
    st, _, _ = api.request(
        "DELETE", f"/identity/v3/projects/{t['project_id']}/users/{t['user_id']}/roles/{rid}",
        token=admin)
    assert st == 204
    st, _, _ = api.request("GET", f"/identity/v3/users/{t['user_id']}", token=t["token"])
    assert st == 401


def test_token_revocation(api):
    tok = api.token()
    admin = api.token()
    st, _, _ = api.request("DELETE", "/identity/v3/auth/tokens", token=admin,
                           headers={"X-Subject-Token": tok})
    assert st == 204
    st, _, _ = api.request("GET", "/identity/v3/projects", token=tok)
    assert st == 401
    st, _, _ = api.request("HEAD", "/identity/v3/auth/tokens", token=admin,
                           headers={"X-Subject-Token": tok})
    assert st == 404


def test_token_expiry(start_api):
    api = start_api("[identity]\ntoken_ttl = 1s\n")
    tok = api.token()
    st, _, _ = api.request("GET", "/identity/v3/auth/catalog", token=tok)
    assert st == 200
    # the token dies one second after issue: poll (bounded) until it is refused
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st, doc, _ = api.request("GET", "/identity/v3/auth/catalog", token=tok)
        if st == 401:
            break
    assert st == 401 and doc["error"]["code"] == 401


def test_application_credential(api):
    t = api.make_project("appc")
    st, doc, r = api.request("POST", f"/identity/v3/users/{t['user_id']}/application_credentials",
                             {"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}},
                             token=t["token"])
    assert st == 201, r.body
    ac = doc["application_credential"]
    assert ac["secret"] and [x["name"] for x in ac["roles"]] == ["reader"]
    env = clean_env()
    env.update({"OS_AUTH_URL": api.auth_url, "OS_AUTH_TYPE": "v3applicationcredential",
                "OS_APPLICATION_CREDENTIAL_ID": ac["id"],
                "OS_APPLICATION_CREDENTIAL_SECRET": ac["secret"],
                "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": "eu-central-1"})
    tok = api.openstack("token", "issue", env=env)
    assert tok["project_id"] == t["project_id"]
    # the credential is restricted to reader: it cannot change anything
    st, doc, _ = api.request("POST", f"/identity/v3/users/{t['user_id']}/application_credentials",
                             {"application_credential": {"name": "again"}}, token=tok["id"])
    assert st == 403
    # a wrong secret is refused; a deleted credential's tokens die with it
    env["OS_APPLICATION_CREDENTIAL_SECRET"] = "nope"
    assert api.openstack("token", "issue", env=env, check=False).returncode != 0
    st, _, _ = api.request("DELETE",
                           f"/identity/v3/users/{t['user_id']}/application_credentials/{ac['id']}",
                           token=t["token"])
    assert st == 204
    st, _, _ = api.request("GET", "/identity/v3/auth/catalog", token=tok["id"])
    assert st == 401


def test_ec2_credentials_work_against_sov_s3(tmp_path, start_api, start_s3):
    keys = tmp_path / "ec2-keys"
    s3 = start_s3(f"keys_file = {keys}\n")
    api = start_api(f"[identity]\ns3_keys_file = {keys}\n")
    t = api.make_project("objects")
    cred = api.openstack("ec2", "credentials", "create", env=t["env"])
    assert cred["project_id"] == t["project_id"]
    client = boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=cred["access"],
                          aws_secret_access_key=cred["secret"], region_name="eu-central-1",
                          config=botocore.config.Config(s3={"addressing_style": "path"},
                                                        retries={"max_attempts": 1}))
    client.create_bucket(Bucket="proj-bucket",
                         CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    client.put_object(Bucket="proj-bucket", Key="k", Body=b"hello")
    assert client.get_object(Bucket="proj-bucket", Key="k")["Body"].read() == b"hello"
    # deleting the credential removes the key: sov-s3 re-reads its keys file within a second
    api.openstack("ec2", "credentials", "delete", cred["access"], env=t["env"], fmt=False)
    deadline = time.monotonic() + 20
    refused = None
    while time.monotonic() < deadline and refused is None:
        try:
            client.list_objects_v2(Bucket="proj-bucket")
        except botocore.exceptions.ClientError as e:
            refused = e.response["Error"]["Code"]
    assert refused == "InvalidAccessKeyId"


def test_hostile_identity_input(api):
    admin = api.token()
    before = api.request("GET", "/identity/v3/projects", token=admin)[1]["projects"]
    cases = [
        ("POST", "/identity/v3/auth/tokens", b"{not json"),
        ("POST", "/identity/v3/auth/tokens", b'{"auth": 5}'),
        ("POST", "/identity/v3/auth/tokens", b'{"auth": {"identity": {"methods": ["password"]}}}'),
        ("POST", "/identity/v3/auth/tokens",
         b'{"auth": {"identity": {"methods": ["magic"], "magic": {}}}}'),
        ("POST", "/identity/v3/projects", b'{"project": {"name": 5}}'),
        ("POST", "/identity/v3/projects", json.dumps({"project": {"name": "x" * 300}}).encode()),
        ("POST", "/identity/v3/projects",
         b'{"project": {"name": "j", "allowed_jurisdictions": "EU;rm -rf"}}'),
        ("POST", "/identity/v3/users", b'{"user": {"name": "u", "password": 7}}'),
        ("POST", "/identity/v3/projects", b'{"project": {"name": "dup", "name": "dup2"}}'),
    ]
    for method, path, body in cases:
        st, doc, r = api.request(method, path, raw=body, token=admin)
        assert st in (400, 401), (path, body, st, r.body)
        assert doc and "error" in doc, r.body
    st, doc, _ = api.request("POST", "/identity/v3/projects", raw=b"x" * (2 * 1024 * 1024),
                             token=admin)
    assert st == 413
    after = api.request("GET", "/identity/v3/projects", token=admin)[1]["projects"]
    assert len(after) == len(before)
    st, doc, _ = api.request("GET", "/identity/v3/projects/" + "f" * 32, token=admin)
    assert st == 404 and doc["error"]["code"] == 404


def test_project_isolation_in_identity(api):
    a = api.make_project("iso-a")
    b = api.make_project("iso-b")
    # b's user cannot read a's project or a's user
    st, _, _ = api.request("GET", f"/identity/v3/projects/{a['project_id']}", token=b["token"])
    assert st == 403
    st, _, _ = api.request("GET", f"/identity/v3/users/{a['user_id']}", token=b["token"])
    assert st == 403
    st, _, _ = api.request("GET", f"/identity/v3/users/{a['user_id']}/credentials/OS-EC2",
                           token=b["token"])
    assert st == 403
    rows = api.openstack("project", "list", env=b["env"])
    assert [r["Name"] for r in rows] == ["iso-b"]


def audit_verify(api):
    return subprocess.run([str(SOV), "audit", "verify", "--api-data", str(api.data_dir)],
                          capture_output=True, text=True, env=clean_env(), timeout=60)


def test_audit_log_chain_and_tamper_detection(api):
    api.openstack("project", "create", "audited-1")
    api.openstack("project", "create", "audited-2")
    api.openstack("project", "create", "audited-3")
    log = api.data_dir / "audit.log"
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    logins = [e for e in entries if e["action"] == "POST /identity/v3/auth/tokens"]
    assert logins and all(e["user"] == "admin" and e["result"] == 201 for e in logins)
    creates = [e for e in entries if e["action"] == "POST /identity/v3/projects"]
    assert len(creates) == 3 and all(e["result"] == 201 and e["user"] == "admin" for e in creates)
    assert all(e["target"] for e in creates) and all(e["request_id"].startswith("req-")
                                                     for e in creates)
    p = audit_verify(api)
    assert p.returncode == 0 and f"{len(entries)} entries" in p.stdout, p.stdout + p.stderr

    original = log.read_text()
    lines = original.splitlines(keepends=True)
    # an edited entry
    log.write_text("".join(lines[:1] + [lines[1].replace('"result":201', '"result":200')]
                           + lines[2:]))
    p = audit_verify(api)
    assert p.returncode == 1 and "edited" in p.stdout, p.stdout
    # a removed entry in the middle
    log.write_text("".join(lines[:1] + lines[2:]))
    p = audit_verify(api)
    assert p.returncode == 1 and "BROKEN" in p.stdout
    # the newest entry removed: caught by the head in the state database
    log.write_text("".join(lines[:-1]))
    p = audit_verify(api)
    assert p.returncode == 1 and "removed from the end" in p.stdout, p.stdout
    log.write_text(original)
    assert audit_verify(api).returncode == 0


def test_refused_calls_are_audited_too(api):
    t = api.make_project("aud-ro", role="reader")
    st, _, _ = api.request("POST", f"/identity/v3/users/{t['user_id']}/application_credentials",
                           {"application_credential": {"name": "x"}}, token=t["token"])
    assert st == 403
    last = json.loads((api.data_dir / "audit.log").read_text().splitlines()[-1])
    assert last["result"] == 403 and last["user"] == t["user"]


def test_agent_registration_and_watch(api):
    tok = api.agent_token
    hdr = {"Authorization": f"Bearer {tok}"}
    st, _, _ = api.request("POST", "/agent/v1/hosts", {"host": "h1", "kind": "compute"})
    assert st == 401
    st, doc, r = api.request("POST", "/agent/v1/hosts",
                             {"host": "h1", "kind": "compute", "zone": "eu-central-1b",
                              "vcpus": 4, "ram_mb": 8192}, headers=hdr)
    assert st == 200, r.body
    assert doc["host"]["zone"] == "eu-central-1b"
    st, doc, _ = api.request("POST", "/agent/v1/hosts",
                             {"host": "h2", "kind": "compute", "zone": "mars-1"}, headers=hdr)
    assert st == 400
    st, doc, _ = api.request("GET", "/agent/v1/hosts", token=api.token())
    assert st == 200 and [(h["host"], h["status"]) for h in doc["hosts"]] == [("h1", "up")]
    # operators see the same hosts as Nova hypervisors
    hv = api.openstack("hypervisor", "list")
    assert [(h["Hypervisor Hostname"], h["State"]) for h in hv] == [("h1", "up")]
    hv = api.openstack("hypervisor", "show", "h1")
    assert hv["vcpus"] == 4 and hv["memory_mb"] == 8192 and hv["vcpus_used"] == 0
    # a watch with an old revision answers at once with the full state
    st, doc, _ = api.request("GET", "/agent/v1/watch?kinds=host&since=0&wait=30", headers=hdr)
    assert st == 200 and [h["host"] for h in doc["resources"]["host"]] == ["h1"]
    rev = doc["rev"]
    # a watch at the current revision waits for the next change: make one from another client
    out = {}

    def watch():
        out["r"] = api.request("GET", f"/agent/v1/watch?kinds=host&since={rev}&wait=30",
                               headers=hdr)
    th = threading.Thread(target=watch)
    th.start()
    st, _, _ = api.request("POST", "/agent/v1/hosts", {"host": "h3", "kind": "compute"},
                           headers=hdr)
    assert st == 200
    th.join(timeout=60)
    st, doc, _ = out["r"]
    assert st == 200 and doc["rev"] > rev and {"h1", "h3"} <= {h["host"] for h in
                                                              doc["resources"]["host"]}
