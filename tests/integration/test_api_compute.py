# SPDX-License-Identifier: Apache-2.0
"""sov-api's compute API (Nova 2.1) with the openstack CLI and raw requests: flavors, key pairs,
servers (the "No valid host was found" path while no compute agent is registered, and the
state machine with a registered agent), filters and paging, quotas, project isolation, roles,
hostile bodies and idempotent creates."""
import base64
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import raw_http

NOVA = "/compute/v2.1"
SEED = {"t3.micro": (2, 1024), "t3.small": (2, 2048), "t3.medium": (2, 4096),
        "t3.large": (2, 8192), "c5.xlarge": (4, 8192), "m5.2xlarge": (8, 32768),
        "g4.xlarge": (4, 16384)}


def nova(api, method, path, body=None, token=None, headers=None, raw=None):
    return api.request(method, NOVA + path, body, token or api.token(), headers=headers, raw=raw)


def make_image(api, token, name="cirros"):
    """An active image through the Glance API (created, then uploaded)."""
    st, doc, r = api.request("POST", "/image/v2/images", {
        "name": name, "disk_format": "raw", "container_format": "bare"}, token)
    if st == 404:
        pytest.skip("the image API is not there yet: servers need an image document")
    assert st == 201, r.body
    st, _, r = api.request("PUT", f"/image/v2/images/{doc['id']}/file", token=token,
                           raw=b"\0" * 4096,
                           headers={"Content-Type": "application/octet-stream"})
    assert st == 204, r.body
    return doc["id"]


def server_body(image, name="vm", **extra):
    return {"server": {"name": name, "flavorRef": "t3.micro", "imageRef": image, **extra}}


def create(api, token, image, name="vm", headers=None, **extra):
    st, doc, r = nova(api, "POST", "/servers", server_body(image, name, **extra), token,
                      headers=headers)
    assert st == 202, r.body
    return doc["server"]["id"]


def server_ids(api, token, query=""):
    st, doc, r = nova(api, "GET", "/servers" + query, token=token)
    assert st == 200, r.body
    return [s["id"] for s in doc["servers"]]


def agent(api, method, path, body):
    r = raw_http(api.port, method, path,
                 {"Authorization": f"Bearer {api.agent_token}",
                  "Content-Type": "application/json"}, json.dumps(body).encode())
    assert 200 <= r.status < 300, (r.status, r.body)
    return json.loads(r.body) if r.body else None


def register_host(api, host, vcpus=16, ram_mb=65536, zone="eu-central-1a"):
    agent(api, "POST", "/agent/v1/hosts",
          {"host": host, "kind": "compute", "zone": zone, "vcpus": vcpus, "ram_mb": ram_mb})


def observe(api, sid, **fields):
    agent(api, "PUT", f"/agent/v1/resources/server/{sid}", fields)


def show(api, token, sid):
    st, doc, r = nova(api, "GET", f"/servers/{sid}", token=token)
    assert st == 200, r.body
    return doc["server"]


# ---- versions, flavors, zones ----

def test_version_documents_without_token(api):
    for path in ("/compute", "/compute/"):
        st, doc, r = api.request("GET", path)
        assert st == 200, r.body
        assert [v["id"] for v in doc["versions"]] == ["v2.1"]
    for path in (NOVA, NOVA + "/"):
        st, doc, r = api.request("GET", path)
        assert st == 200, r.body
        v = doc["version"]
        assert (v["id"], v["status"], v["version"], v["min_version"]) == \
            ("v2.1", "CURRENT", "2.1", "2.1")
    st, _, _ = api.request("GET", NOVA + "/servers")
    assert st == 401


def test_flavors_seed_create_properties_and_access(api):
    flavors = {f["Name"]: f for f in api.openstack("flavor", "list")}
    for name, (vcpus, ram) in SEED.items():
        assert (flavors[name]["VCPUs"], flavors[name]["RAM"]) == (vcpus, ram), name
    g4 = api.openstack("flavor", "show", "g4.xlarge")
    assert g4["properties"] == {"pci_passthrough:alias": "gpu:1", "resources:PGPU": "1"}

    api.openstack("flavor", "create", "--id", "tiny-1", "--ram", "512", "--disk", "1",
                  "--vcpus", "1", "tiny")
    api.openstack("flavor", "set", "--property", "hw:cpu_policy=dedicated", "tiny", fmt=False)
    tiny = api.openstack("flavor", "show", "tiny")
    assert (tiny["id"], tiny["ram"], tiny["properties"]) == \
        ("tiny-1", 512, {"hw:cpu_policy": "dedicated"})
    api.openstack("flavor", "delete", "tiny", fmt=False)
    assert api.openstack("flavor", "show", "tiny", check=False).returncode != 0

    admin = api.token()
    st, doc, _ = nova(api, "GET", "/flavors/detail?minRam=16000", token=admin)
    assert sorted(f["id"] for f in doc["flavors"]) == ["g4.xlarge", "m5.2xlarge"]
    st, doc, _ = nova(api, "GET", "/flavors?limit=2", token=admin)
    assert [f["id"] for f in doc["flavors"]] == ["c5.xlarge", "g4.xlarge"]
    nxt = doc["flavors_links"][0]["href"]
    st, doc, _ = api.request("GET", nxt[nxt.index("/compute"):], token=admin)
    assert [f["id"] for f in doc["flavors"]] == ["m5.2xlarge", "t3.large"]
    assert nova(api, "GET", "/flavors?marker=nope", token=admin)[0] == 400
    assert nova(api, "GET", "/flavors?minDisk=x", token=admin)[0] == 400

    # a private flavor: invisible to a project until it is given access
    p = api.make_project("fa")
    body = {"flavor": {"name": "secret", "id": "secret-1", "ram": 256, "vcpus": 1, "disk": 1,
                       "os-flavor-access:is_public": False}}
    assert nova(api, "POST", "/flavors", body, admin)[0] == 200
    assert nova(api, "POST", "/flavors", body, admin)[0] == 409
    assert nova(api, "GET", "/flavors/secret-1", token=p["token"])[0] == 404
    assert "secret-1" not in [f["id"] for f in
                              nova(api, "GET", "/flavors", token=p["token"])[1]["flavors"]]
    st, doc, _ = nova(api, "POST", "/flavors/secret-1/action",
                      {"addTenantAccess": {"tenant": p["project_id"]}}, admin)
    assert st == 200 and doc["flavor_access"] == [
        {"flavor_id": "secret-1", "tenant_id": p["project_id"]}]
    assert nova(api, "GET", "/flavors/secret-1", token=p["token"])[0] == 200
    # members cannot create, delete or change flavors; nothing changes
    assert nova(api, "POST", "/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1,
                                                     "disk": 1}}, p["token"])[0] == 403
    assert nova(api, "DELETE", "/flavors/t3.micro", token=p["token"])[0] == 403
    assert nova(api, "POST", "/flavors/t3.micro/os-extra_specs",
                {"extra_specs": {"a": "b"}}, p["token"])[0] == 403
    for bad in ({"name": "x", "ram": "lots", "vcpus": 1, "disk": 1},
                {"name": "", "ram": 1, "vcpus": 1, "disk": 1},
                {"name": "x", "ram": 1, "vcpus": 0, "disk": 1},
                {"name": "x", "ram": 1, "vcpus": 1, "disk": 1, "bogus": 1},
                {"name": "x" * 256, "ram": 1, "vcpus": 1, "disk": 1}):
        assert nova(api, "POST", "/flavors", {"flavor": bad}, admin)[0] == 400, bad
    st, doc, _ = nova(api, "GET", "/flavors/t3.micro/os-extra_specs", token=admin)
    assert doc == {"extra_specs": {}}
    st, doc, _ = nova(api, "GET", "/flavors/detail?is_public=none", token=admin)
    assert len(doc["flavors"]) == len(SEED) + 1


def test_availability_zones(api):
    st, doc, _ = nova(api, "GET", "/os-availability-zone")
    assert [z["zoneName"] for z in doc["availabilityZoneInfo"]] == \
        ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    assert all(z["zoneState"]["available"] for z in doc["availabilityZoneInfo"])
    p = api.make_project("az")
    assert nova(api, "GET", "/os-availability-zone/detail", token=p["token"])[0] == 403


# ---- key pairs ----

def ssh_keygen(*args):
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_keypairs_generated_imported_and_deleted(api, tmp_path):
    out = api.openstack("keypair", "create", "gen", fmt=False)
    assert out.startswith("-----BEGIN RSA PRIVATE KEY-----")
    priv = tmp_path / "gen"
    priv.write_text(out[:out.index("-----END RSA PRIVATE KEY-----") + 29] + "\n")
    priv.chmod(0o600)
    gen = api.openstack("keypair", "show", "gen")
    # ssh-keygen reads the private key: same key, Nova's MD5 fingerprint
    assert ssh_keygen("-l", "-f", str(priv)).startswith("2048 SHA256:")
    assert f"MD5:{gen['fingerprint']}" in ssh_keygen("-l", "-E", "md5", "-f", str(priv))
    pub = api.openstack("keypair", "show", "--public-key", "gen", fmt=False)
    assert pub.startswith("ssh-rsa AAAA") and pub.split()[2] == "gen"
    assert ssh_keygen("-y", "-f", str(priv)).split()[:2] == pub.split()[:2]

    ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f", str(tmp_path / "ed"))
    imp = api.openstack("keypair", "create", "--public-key", str(tmp_path / "ed.pub"), "ed")
    assert f"MD5:{imp['fingerprint']}" in \
        ssh_keygen("-l", "-E", "md5", "-f", str(tmp_path / "ed.pub"))
    ssh_keygen("-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(tmp_path / "ec"))
    token = api.token()
    ec_pub = (tmp_path / "ec.pub").read_text()
    st, doc, r = nova(api, "POST", "/os-keypairs",
                      {"keypair": {"name": "ec", "public_key": ec_pub}}, token)
    assert st == 200 and "private_key" not in doc["keypair"], r.body
    assert sorted(k["Name"] for k in api.openstack("keypair", "list")) == ["ec", "ed", "gen"]

    # refused: duplicates, broken keys, bad names, wrong types; nothing is stored
    blob = ec_pub.split()[1]
    bad = [{"name": "ed", "public_key": ec_pub},
           {"name": "k1", "public_key": "ssh-rsa notbase64!"},
           {"name": "k2", "public_key": "ssh-ed25519 " + blob},
           {"name": "k3", "public_key": "ssh-rsa " + blob[:-8]},
           {"name": "k4", "public_key": "ssh-dss AAAAB3NzaC1kc3M="},
           {"name": "bad/name"}, {"name": ""}, {"name": "x" * 256}, {"name": 7},
           {"name": "k5", "public_key": ["x"]}, {"name": "k6", "bogus": 1}]
    for b in bad:
        st, doc, r = nova(api, "POST", "/os-keypairs", {"keypair": b}, token)
        assert st == (409 if b["name"] == "ed" else 400), (b, r.body)
    assert nova(api, "POST", "/os-keypairs", raw=b"{not json", token=token)[0] == 400
    st, doc, _ = nova(api, "GET", "/os-keypairs", token=token)
    assert sorted(k["keypair"]["name"] for k in doc["keypairs"]) == ["ec", "ed", "gen"]

    # key pairs belong to their user: another one sees none of them
    other = api.make_project("kp")
    assert nova(api, "GET", "/os-keypairs/gen", token=other["token"])[0] == 404
    assert nova(api, "DELETE", "/os-keypairs/gen", token=other["token"])[0] == 404
    assert nova(api, "GET", "/os-keypairs", token=other["token"])[1] == {"keypairs": []}

    api.openstack("keypair", "delete", "gen", "ed", "ec", fmt=False)
    assert api.openstack("keypair", "list") == []
    assert nova(api, "DELETE", "/os-keypairs/gen", token=token)[0] == 404


def test_keypair_quota(api):
    p = api.make_project("kq")
    st, _, r = nova(api, "PUT", f"/os-quota-sets/{p['project_id']}",
                    {"quota_set": {"key_pairs": 1}})
    assert st == 200, r.body
    assert nova(api, "POST", "/os-keypairs", {"keypair": {"name": "a"}}, p["token"])[0] == 200
    st, doc, _ = nova(api, "POST", "/os-keypairs", {"keypair": {"name": "b"}}, p["token"])
    assert st == 403 and "too many key pairs" in doc["forbidden"]["message"]
    assert len(nova(api, "GET", "/os-keypairs", token=p["token"])[1]["keypairs"]) == 1


# ---- servers ----

def test_server_create_wait_ends_in_error_without_compute_agent(api):
    """No compute agent is registered: the scheduler finds no host, the server ends in ERROR
    with Nova's fault, and the CLI's --wait reports the failure."""
    make_image(api, api.token())
    p = api.openstack("server", "create", "--flavor", "t3.micro", "--image", "cirros",
                      "--wait", "vm1", check=False, fmt=False)
    assert "Error creating server" in p.stdout + p.stderr, (p.stdout, p.stderr)
    s = api.openstack("server", "show", "vm1")
    assert (s["status"], s["OS-EXT-STS:vm_state"]) == ("ERROR", "error")
    assert s["fault"]["code"] == 500
    assert s["fault"]["message"].startswith("No valid host was found.")
    assert s["flavor"] == "t3.micro (t3.micro)" and s["image"].startswith("cirros (")
    listed = api.openstack("server", "list")
    assert [(x["Name"], x["Status"]) for x in listed] == [("vm1", "ERROR")]
    st, doc, _ = nova(api, "GET", f"/servers/{s['id']}")
    assert doc["server"]["OS-EXT-SRV-ATTR:host"] is None
    assert not [k for k in doc["server"] if k.startswith("_")]
    api.openstack("server", "delete", "vm1", fmt=False)
    assert nova(api, "GET", f"/servers/{s['id']}")[0] == 404
    assert api.openstack("server", "list") == []


def test_server_lifecycle_with_a_compute_agent(api):
    token = api.token()
    image = make_image(api, token)
    st, _, r = nova(api, "POST", "/os-keypairs", {"keypair": {"name": "k"}}, token)
    assert st == 200, r.body
    register_host(api, "cn1", vcpus=8, ram_mb=16384)
    # a GPU flavor finds no GPU host; the server that fits is placed on cn1
    st, doc, r = nova(api, "POST", "/servers", {"server": {
        "name": "gpu", "flavorRef": "g4.xlarge", "imageRef": image}}, token)
    assert st == 202 and show(api, token, doc["server"]["id"])["status"] == "ERROR"
    user_data = base64.b64encode(b"#cloud-config\n").decode()
    st, doc, r = nova(api, "POST", "/servers", server_body(
        image, "web", key_name="k", user_data=user_data, metadata={"role": "web"},
        networks=[], availability_zone="eu-central-1a"), token)
    assert st == 202, r.body
    sid = doc["server"]["id"]
    assert r.headers["Location"].endswith(f"{NOVA}/servers/{sid}") and doc["server"]["adminPass"]
    s = show(api, token, sid)
    assert (s["status"], s["OS-EXT-STS:task_state"]) == ("BUILD", "spawning")
    assert s["OS-EXT-SRV-ATTR:host"] == "cn1" and len(s["hostId"]) == 56
    assert (s["key_name"], s["metadata"]) == ("k", {"role": "web"})

    # the agent sees the whole desired state through the watch
    w = json.loads(raw_http(api.port, "GET", "/agent/v1/watch?kinds=server&host=cn1&since=0",
                            {"Authorization": f"Bearer {api.agent_token}"}, b"").body)
    doc = [d for d in w["resources"]["server"] if d["id"] == sid][0]
    assert (doc["_vcpus"], doc["_ram"], doc["_disk"], doc["_gpus"]) == (2, 1024, 10, 0)
    assert doc["_flavor"]["name"] == "t3.micro" and doc["_image"] == image
    assert doc["_user_data"] == user_data and doc["_key_public"].startswith("ssh-rsa ")
    assert (doc["_desired"], doc["_reboot"], doc["_networks"]) == ("running", 0, [])

    observe(api, sid, status="ACTIVE", console_append="one\ntwo\nthree\n",
            **{"OS-EXT-STS:power_state": 1})
    s = show(api, token, sid)
    assert (s["status"], s["OS-EXT-STS:vm_state"], s["OS-EXT-STS:task_state"]) == \
        ("ACTIVE", "active", None)
    st, doc, _ = nova(api, "POST", f"/servers/{sid}/action", {"os-start": None}, token)
    assert st == 409 and doc["conflictingRequest"]["message"] == \
        f"Cannot 'os-start' instance {sid} while it is in vm_state active"
    st, doc, _ = nova(api, "POST", f"/servers/{sid}/action",
                      {"os-getConsoleOutput": {"length": 2}}, token)
    assert doc == {"output": "two\nthree\n"}

    assert nova(api, "POST", f"/servers/{sid}/action", {"os-stop": None}, token)[0] == 202
    assert show(api, token, sid)["OS-EXT-STS:task_state"] == "powering-off"
    assert nova(api, "POST", f"/servers/{sid}/action", {"os-stop": None}, token)[0] == 409
    observe(api, sid, status="SHUTOFF")
    assert show(api, token, sid)["OS-EXT-STS:vm_state"] == "stopped"
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"reboot": {"type": "SOFT"}}, token)[0] == 409
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"reboot": {"type": "SIDEWAYS"}}, token)[0] == 400
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"reboot": {"type": "HARD"}}, token)[0] == 202
    s = show(api, token, sid)
    assert (s["status"], s["OS-EXT-STS:task_state"]) == ("REBOOT", "rebooting_hard")
    observe(api, sid, status="ACTIVE")

    # resize: RESIZE until the agent reports VERIFY_RESIZE, then confirm takes the new flavor
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"resize": {"flavorRef": "t3.micro"}}, token)[0] == 400
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"resize": {"flavorRef": "t3.small"}}, token)[0] == 202
    assert show(api, token, sid)["status"] == "RESIZE"
    observe(api, sid, status="VERIFY_RESIZE")
    assert nova(api, "POST", f"/servers/{sid}/action", {"confirmResize": None}, token)[0] == 204
    s = show(api, token, sid)
    assert (s["status"], s["flavor"]["id"]) == ("ACTIVE", "t3.small")
    st, doc, _ = nova(api, "GET", "/limits", token=token)
    assert doc["limits"]["absolute"]["totalRAMUsed"] == 2048 + 16384

    # live migration: admin only, to a host the scheduler picks (never the current one)
    p = api.make_project("lm")
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"os-migrateLive": {"host": None, "block_migration": "auto"}},
                p["token"])[0] == 404
    st, doc, _ = nova(api, "POST", f"/servers/{sid}/action",
                      {"os-migrateLive": {"host": None, "block_migration": "auto"}}, token)
    assert st == 400 and "No valid host" in doc["badRequest"]["message"]
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"os-migrateLive": {"host": "nowhere", "block_migration": "auto"}},
                token)[0] == 400
    register_host(api, "cn2", vcpus=8, ram_mb=16384)
    assert nova(api, "POST", f"/servers/{sid}/action",
                {"os-migrateLive": {"host": None, "block_migration": "auto"}}, token)[0] == 202
    assert show(api, token, sid)["status"] == "MIGRATING"
    observe(api, sid, status="ACTIVE")

    # update, metadata
    st, doc, _ = nova(api, "PUT", f"/servers/{sid}", {"server": {"name": "web-1"}}, token)
    assert st == 200 and doc["server"]["name"] == "web-1"
    assert nova(api, "PUT", f"/servers/{sid}", {"server": {"name": ""}}, token)[0] == 400
    st, doc, _ = nova(api, "POST", f"/servers/{sid}/metadata", {"metadata": {"a": "1"}}, token)
    assert doc == {"metadata": {"role": "web", "a": "1"}}
    assert nova(api, "DELETE", f"/servers/{sid}/metadata/role", token=token)[0] == 204
    st, doc, _ = nova(api, "GET", f"/servers/{sid}/metadata", token=token)
    assert doc == {"metadata": {"a": "1"}}
    assert nova(api, "PUT", f"/servers/{sid}/metadata/b", {"meta": {"c": "1"}}, token)[0] == 400
    # volume attachments: none yet; an unknown volume is refused
    st, doc, _ = nova(api, "GET", f"/servers/{sid}/os-volume_attachments", token=token)
    assert doc == {"volumeAttachments": []}
    assert nova(api, "POST", f"/servers/{sid}/os-volume_attachments",
                {"volumeAttachment": {"volumeId": str(uuid.uuid4())}}, token)[0] == 404

    # delete: the agent finishes it
    assert nova(api, "DELETE", f"/servers/{sid}", token=token)[0] == 204
    s = show(api, token, sid)
    assert s["OS-EXT-STS:task_state"] == "deleting"
    assert nova(api, "POST", f"/servers/{sid}/action", {"os-stop": None}, token)[0] == 409
    observe(api, sid, gone=True)
    assert nova(api, "GET", f"/servers/{sid}", token=token)[0] == 404


def test_server_list_filters_and_paging(api):
    token = api.token()
    image = make_image(api, token)
    ids = [create(api, token, image, f"app-{i}") for i in range(4)]
    other = create(api, token, image, "db-0", flavorRef="t3.small")
    newest_first = [other] + ids[::-1]
    assert server_ids(api, token) == newest_first
    st, doc, _ = nova(api, "GET", "/servers/detail?limit=2", token=token)
    assert [s["id"] for s in doc["servers"]] == newest_first[:2]
    href = doc["servers_links"][0]["href"]
    st, doc, _ = api.request("GET", href[href.index("/compute"):], token=token)
    assert [s["id"] for s in doc["servers"]] == newest_first[2:4]
    assert "status" in doc["servers"][0] and "status" not in \
        nova(api, "GET", "/servers?limit=1", token=token)[1]["servers"][0]
    assert server_ids(api, token, "?name=app") == ids[::-1]
    assert server_ids(api, token, "?name=^app-[02]$") == [ids[2], ids[0]]
    assert server_ids(api, token, "?name=app&limit=3") == ids[::-1][:3]
    assert server_ids(api, token, "?flavor=t3.small") == [other]
    assert server_ids(api, token, f"?image={image}&status=error") == newest_first
    assert server_ids(api, token, "?status=ACTIVE") == []
    assert server_ids(api, token, "?status=bogus") == []
    assert server_ids(api, token, "?changes-since=2000-01-01T00:00:00Z") == newest_first
    assert server_ids(api, token, "?changes-since=2999-01-01T00:00:00Z") == []
    for q in ("?marker=" + str(uuid.uuid4()), "?limit=x", "?changes-since=yesterday",
              "?name=(unclosed"):
        assert nova(api, "GET", "/servers" + q, token=token)[0] == 400, q


def test_quota_refuses_the_second_server(api):
    p = api.make_project("q")
    image = make_image(api, p["token"])
    api.openstack("quota", "set", "--instances", "1", p["project_id"], fmt=False)
    st, doc, _ = nova(api, "GET", f"/os-quota-sets/{p['project_id']}", token=p["token"])
    assert doc["quota_set"]["instances"] == 1
    create(api, p["token"], image, "one")
    st, doc, r = nova(api, "POST", "/servers", server_body(image, "two"), p["token"])
    assert st == 403, r.body
    assert "Quota exceeded for instances" in doc["forbidden"]["message"]
    assert len(server_ids(api, p["token"])) == 1
    st, doc, _ = nova(api, "GET", f"/os-quota-sets/{p['project_id']}/detail", token=p["token"])
    assert doc["quota_set"]["instances"] == {"limit": 1, "in_use": 1, "reserved": 0}
    assert doc["quota_set"]["cores"]["in_use"] == 2
    rows = {r["Resource"]: r for r in api.openstack("quota", "list", "--compute", "--detail",
                                                     "--project", p["project_id"])}
    assert (rows["instances"]["In Use"], rows["instances"]["Limit"]) == (1, 1)
    st, doc, _ = nova(api, "GET", "/limits", token=p["token"])
    a = doc["limits"]["absolute"]
    assert (a["maxTotalInstances"], a["totalInstancesUsed"], a["totalRAMUsed"]) == (1, 1, 1024)
    # a limit below what is used needs force; members cannot change quotas or see others'
    assert nova(api, "PUT", f"/os-quota-sets/{p['project_id']}",
                {"quota_set": {"instances": 0}})[0] == 400
    assert nova(api, "PUT", f"/os-quota-sets/{p['project_id']}",
                {"quota_set": {"instances": 5}}, p["token"])[0] == 403
    assert nova(api, "GET", f"/os-quota-sets/{api.make_project('q2')['project_id']}",
                token=p["token"])[0] == 403
    assert nova(api, "PUT", f"/os-quota-sets/{p['project_id']}",
                {"quota_set": {"instances": "many"}})[0] == 400
    st, doc, _ = nova(api, "GET", f"/os-quota-sets/{p['project_id']}/defaults")
    assert doc["quota_set"]["instances"] == 10


def test_projects_and_roles_are_isolated(api):
    a = api.make_project("pa")
    b = api.make_project("pb")
    reader = api.make_project("pr", role="reader")
    image = make_image(api, a["token"])
    sid = create(api, a["token"], image, "mine")
    for method, path, body in (("GET", f"/servers/{sid}", None),
                               ("PUT", f"/servers/{sid}", {"server": {"name": "x"}}),
                               ("DELETE", f"/servers/{sid}", None),
                               ("POST", f"/servers/{sid}/action", {"os-stop": None}),
                               ("GET", f"/servers/{sid}/metadata", None),
                               ("GET", f"/servers/{sid}/os-volume_attachments", None)):
        assert nova(api, method, path, body, b["token"])[0] == 404, (method, path)
    assert server_ids(api, b["token"]) == []
    assert server_ids(api, b["token"], "?all_tenants=1") == []
    # b cannot boot a's (private) image
    st, doc, _ = nova(api, "POST", "/servers", server_body(image), b["token"])
    assert st == 400 and "could not be found" in doc["badRequest"]["message"]
    # readers read but cannot create
    st, _, r = nova(api, "POST", "/servers", server_body(image), reader["token"])
    assert st == 403, r.body
    assert server_ids(api, reader["token"]) == []
    admin = api.token()
    assert server_ids(api, admin) == []
    assert server_ids(api, admin, "?all_tenants=1") == [sid]
    assert server_ids(api, admin, f"?all_tenants=1&project_id={b['project_id']}") == []
    assert show(api, a["token"], sid)["name"] == "mine"


def test_hostile_bodies_are_refused_and_change_nothing(api):
    token = api.token()
    image = make_image(api, token)
    net = str(uuid.uuid4())
    huge = base64.b64encode(b"x" * 70000).decode()
    cases = [
        {"server": {"name": "vm", "imageRef": image}},
        {"server": {"name": 5, "flavorRef": "t3.micro", "imageRef": image}},
        {"server": {"name": "x" * 256, "flavorRef": "t3.micro", "imageRef": image}},
        {"server": {"name": " lead", "flavorRef": "t3.micro", "imageRef": image}},
        {"server": {"name": "vm", "flavorRef": ["t3.micro"], "imageRef": image}},
        {"server": {"name": "vm", "flavorRef": "nope", "imageRef": image}},
        {"server": {"name": "vm", "flavorRef": "t3.micro", "imageRef": str(uuid.uuid4())}},
        {"server": {"name": "vm", "flavorRef": "t3.micro"}},
        {"server": {"name": "vm", "flavorRef": "t3.micro", "imageRef": "not-an-id"}},
        server_body(image, user_data="!!not base64!!"),
        server_body(image, user_data=huge),
        server_body(image, key_name="missing"),
        server_body(image, networks=[{"uuid": "not-a-uuid"}]),
        server_body(image, networks=[{"uuid": net}]),
        server_body(image, networks=[{"fixed_ip": "10.0.0.5"}]),
        server_body(image, networks="everything"),
        server_body(image, availability_zone="mars-1a"),
        server_body(image, metadata={"k": 1}),
        server_body(image, metadata=["k"]),
        server_body(image, min_count=2),
        server_body(image, accessIPv4="999.1.1.1"),
        server_body(image, bogus=True),
        server_body(image, security_groups=[{"name": "no-such-group"}]),
        server_body(image, block_device_mapping_v2=[{"source_type": "floppy", "uuid": net}]),
        server_body(image, block_device_mapping_v2=[{
            "source_type": "volume", "destination_type": "volume", "uuid": net,
            "boot_index": 0}]),
        {"server": {"name": "vm", "flavorRef": "t3.micro", "imageRef": image}, "extra": 1},
        {"server": "vm"},
        {},
    ]
    for body in cases:
        st, doc, r = nova(api, "POST", "/servers", body, token)
        # one fault object with code 400 (badRequest; the zone's is named by common code)
        assert st == 400 and [f["code"] for f in doc.values()] == [400], (body, r.body[:300])
    for raw in (b"{", b"[]", b"null", b"\xff\xfe", b'{"server": {"name": "a", "name": "b"}}'):
        assert nova(api, "POST", "/servers", raw=raw, token=token)[0] == 400, raw
    assert nova(api, "POST", "/servers", raw=b"x" * (2 << 20), token=token)[0] in (400, 413)
    assert server_ids(api, token) == []
    assert nova(api, "GET", "/servers/not-a-uuid", token=token)[0] == 404
    assert nova(api, "GET", f"/servers/{uuid.uuid4()}", token=token)[0] == 404
    sid = create(api, token, image)
    for body in ({}, {"os-start": None, "os-stop": None}, {"fly": None},
                 {"reboot": None}, {"resize": {"flavorRef": "nope"}}):
        assert nova(api, "POST", f"/servers/{sid}/action", body, token)[0] in (400, 409), body
    st, doc, _ = nova(api, "POST", f"/servers/{sid}/action", {"os-stop": None}, token)
    assert st == 409 and "vm_state error" in doc["conflictingRequest"]["message"]
    assert show(api, token, sid)["status"] == "ERROR"


def test_idempotency_key_returns_the_same_server(api):
    token = api.token()
    image = make_image(api, token)
    key = {"X-Idempotency-Key": "create-" + os.urandom(4).hex()}
    first = create(api, token, image, "once", headers=key)
    again = create(api, token, image, "once", headers=key)
    assert first == again
    assert server_ids(api, token) == [first]
    third = create(api, token, image, "once", headers={"X-Idempotency-Key": "other"})
    assert third != first and len(server_ids(api, token)) == 2


def test_placed_server_gets_ports_on_its_networks(api):
    """As nova-compute asks Neutron: a placed server gets a port (with the requested fixed IP)
    on each requested network, its addresses show them, and the ports go with the server."""
    t = api.make_project("ports")
    register_host(api, "cn-ports")
    image = make_image(api, t["token"])
    net = api.openstack("network", "create", "app-net", env=t["env"])
    api.openstack("subnet", "create", "--network", "app-net", "--subnet-range", "10.20.0.0/24",
                  "app-sub", env=t["env"])
    sid = create(api, t["token"], image, "with-ports",
                 networks=[{"uuid": net["id"]}, {"uuid": net["id"], "fixed_ip": "10.20.0.50"}])
    assert show(api, api.token(), sid)["OS-EXT-SRV-ATTR:host"] == "cn-ports"
    srv = show(api, t["token"], sid)
    assert srv["status"] == "BUILD"
    addrs = sorted(a["addr"] for a in srv["addresses"]["app-net"])
    assert len(addrs) == 2 and "10.20.0.50" in addrs
    assert all(a["OS-EXT-IPS-MAC:mac_addr"].startswith("fa:16:3e:")
               for a in srv["addresses"]["app-net"])
    ports = api.openstack("port", "list", "--device-id", sid, "--long", env=t["env"])
    assert len(ports) == 2
    # a fixed IP that is taken: refused, and nothing of the server or its ports remains
    st, doc, r = nova(api, "POST", "/servers",
                      server_body(image, "clash", networks=[{"uuid": net["id"],
                                                             "fixed_ip": "10.20.0.50"}]),
                      t["token"])
    assert st == 409, r.body
    assert [s for s in server_ids(api, t["token"]) if s != sid] == []
    assert len(server_ports(api, t)) == 2
    # deleting the server: the agent cleans up and reports it gone, the ports go with it
    st, _, _ = nova(api, "DELETE", f"/servers/{sid}", token=t["token"])
    assert st == 204
    agent(api, "PUT", f"/agent/v1/resources/server/{sid}", {"gone": True})
    assert server_ports(api, t) == []


def project_with_a_port(api, name, host, cidr):
    """A project with an image, network app-net (subnet cidr) and a port "mine" on it, and a
    compute host: (project, image id, network, port)."""
    t = api.make_project(name)
    register_host(api, host)
    image = make_image(api, t["token"])
    net = api.openstack("network", "create", "app-net", env=t["env"])
    api.openstack("subnet", "create", "--network", "app-net", "--subnet-range", cidr, "app-sub",
                  env=t["env"])
    return t, image, net, api.openstack("port", "create", "--network", "app-net", "mine",
                                        env=t["env"])


def test_a_brought_port_is_bound_to_the_server_and_named_after_it(api):
    """--nic port-id=: the user's port is bound to the server as Nova has Neutron bind it
    (device, owner, host: what makes sov-net give it a tap), and it and the ports Nova makes
    take the server's host name as dns_name; deleting the server unbinds the port and keeps it."""
    t, image, net, mine = project_with_a_port(api, "brought", "cn-brought", "10.21.0.0/24")
    named = api.openstack("port", "create", "--network", "app-net", "--dns-name", "db", "named",
                          env=t["env"])
    sid = create(api, t["token"], image, "Web Server_1.eu",
                 networks=[{"port": mine["id"]}, {"port": named["id"]}, {"uuid": net["id"]}])
    # admin: sees the binding host too
    ports = {p["id"]: p for p in (api.openstack("port", "show", i) for i in
             [r["ID"] for r in api.openstack("port", "list", "--device-id", sid)])}
    assert set(ports) > {mine["id"], named["id"]} and len(ports) == 3
    for p in ports.values():
        assert p["device_owner"] == "compute:eu-central-1a"
        assert p["binding_host_id"] == "cn-brought"
    assert ports[mine["id"]]["dns_name"] == "web-server-1-eu"
    assert ports[named["id"]]["dns_name"] == "db"  # a port's own name stays
    made = next(i for i in ports if i not in (mine["id"], named["id"]))
    assert ports[made]["dns_name"] == "web-server-1-eu"
    # bound: another server cannot take it
    st, _, r = nova(api, "POST", "/servers",
                    server_body(image, "thief", networks=[{"port": mine["id"]}]), t["token"])
    assert st == 409, r.body
    # the host name was fixed at creation: a rename leaves it
    st, _, r = nova(api, "PUT", f"/servers/{sid}", {"server": {"name": "renamed"}}, t["token"])
    assert st == 200, r.body

    # live migration: the ports name the target while it runs (its sov-net makes their taps),
    # and are bound to it at the cut-over; a failed attempt leaves them where they were
    def bindings():
        return {(p["binding_host_id"], p["binding_profile"].get("migrating_to"))
                for p in (api.openstack("port", "show", i) for i in ports)}

    register_host(api, "cn-brought2")
    observe(api, sid, status="ACTIVE")
    migrate = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    assert nova(api, "POST", f"/servers/{sid}/action", migrate)[0] == 202
    assert bindings() == {("cn-brought", "cn-brought2")}
    observe(api, sid, _migration={"failed": "the target went away"})
    assert bindings() == {("cn-brought", None)}
    assert nova(api, "POST", f"/servers/{sid}/action", migrate)[0] == 202
    assert bindings() == {("cn-brought", "cn-brought2")}
    observe(api, sid, **{"OS-EXT-SRV-ATTR:host": "cn-brought2", "status": "ACTIVE"})
    assert bindings() == {("cn-brought2", None)}
    # a late report of the host it left cannot take it back
    r = raw_http(api.port, "PUT", f"/agent/v1/resources/server/{sid}",
                 {"Authorization": f"Bearer {api.agent_token}", "Content-Type": "application/json"},
                 json.dumps({"status": "BUILD", "OS-EXT-SRV-ATTR:host": "cn-brought"}).encode())
    assert r.status == 409, (r.status, r.body)
    assert show(api, api.token(), sid)["OS-EXT-SRV-ATTR:host"] == "cn-brought2"
    assert bindings() == {("cn-brought2", None)}

    st, _, _ = nova(api, "DELETE", f"/servers/{sid}", token=t["token"])
    assert st == 204
    agent(api, "PUT", f"/agent/v1/resources/server/{sid}", {"gone": True})
    left = {p["ID"] for p in server_ports(api, t)}
    assert left == {mine["id"], named["id"]}
    for pid, dns in ((mine["id"], ""), (named["id"], "db")):
        p = api.openstack("port", "show", pid)
        assert (p["device_id"], p["device_owner"], p["binding_host_id"], p["dns_name"]) == \
            ("", "", "", dns)
    # and a name with nothing usable left: server-<id>
    sid = create(api, t["token"], image, "___", networks=[{"port": mine["id"]}])
    assert api.openstack("port", "show", mine["id"])["dns_name"] == f"server-{sid}"


def test_ports_follow_their_current_server_only(api):
    """A server deleted while it migrates leaves no migrating_to on the port it was brought
    (the next server's host would realise it too); a port Nova made for one server that the
    tenant then gave to another goes with neither server but the one it is on."""
    t, image, net, mine = project_with_a_port(api, "follow", "cn-f1", "10.22.0.0/24")
    sid = create(api, t["token"], image, "web", networks=[{"port": mine["id"]}])
    register_host(api, "cn-f2")
    observe(api, sid, status="ACTIVE")
    migrate = {"os-migrateLive": {"host": "cn-f2", "block_migration": "auto"}}
    assert nova(api, "POST", f"/servers/{sid}/action", migrate)[0] == 202
    assert api.openstack("port", "show", mine["id"])["binding_profile"] == \
        {"migrating_to": "cn-f2"}
    assert nova(api, "DELETE", f"/servers/{sid}", token=t["token"])[0] == 204
    agent(api, "PUT", f"/agent/v1/resources/server/{sid}", {"gone": True})
    p = api.openstack("port", "show", mine["id"])
    assert (p["device_id"], p["binding_host_id"], p["binding_profile"]) == ("", "", {})

    s1 = create(api, t["token"], image, "one", networks=[{"uuid": net["id"]}])
    made = api.openstack("port", "list", "--device-id", s1)[0]["ID"]
    st, _, r = api.request("PUT", f"/network/v2.0/ports/{made}", {"port": {"device_id": ""}},
                           t["token"])
    assert st == 200, r.body
    s2 = create(api, t["token"], image, "two", networks=[{"port": made}])
    assert api.openstack("port", "show", made)["device_id"] == s2
    assert nova(api, "DELETE", f"/servers/{s1}", token=t["token"])[0] == 204
    agent(api, "PUT", f"/agent/v1/resources/server/{s1}", {"gone": True})
    assert [p["ID"] for p in api.openstack("port", "list", "--device-id", s2)] == [made]


def server_ports(api, t):
    """The ports on app-net other than its subnet's DHCP port."""
    return [p for p in api.openstack("port", "list", "--network", "app-net", "--long",
                                     env=t["env"]) if p["Device Owner"] != "network:dhcp"]


def test_agents_read_image_data_through_a_signed_link(api):
    t = api.make_project("agent-img")
    data = os.urandom(300000)
    st, doc, r = api.request("POST", "/image/v2/images", {
        "name": "disk", "disk_format": "raw", "container_format": "bare"}, t["token"])
    assert st == 201, r.body
    iid = doc["id"]
    st, doc, r = agent_raw(api, f"/agent/v1/images/{iid}")
    assert st == 409  # queued: no data yet
    st, _, r = api.request("PUT", f"/image/v2/images/{iid}/file", token=t["token"], raw=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert st == 204, r.body
    st, doc, r = agent_raw(api, f"/agent/v1/images/{iid}")
    assert st == 200, r.body
    assert doc["size"] == len(data) and doc["checksum"] == hashlib.md5(data).hexdigest()
    with urllib.request.urlopen(doc["url"], timeout=30) as f:
        assert f.read() == data
    # the link is signed: a changed one is refused
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(doc["url"].replace("sig=", "sig=0"), timeout=30)
    st, _, _ = api.request("GET", f"/agent/v1/images/{iid}")
    assert st == 401
    st, _, _ = agent_raw(api, "/agent/v1/images/" + "0" * 32)
    assert st == 404


def agent_raw(api, path):
    r = raw_http(api.port, "GET", path, {"Authorization": f"Bearer {api.agent_token}"}, b"")
    return r.status, (json.loads(r.body) if r.body else None), r
