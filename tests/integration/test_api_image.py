# SPDX-License-Identifier: Apache-2.0
"""sov-api's image API (Glance v2) with Debian's openstack CLI and raw requests: create with
--file, show, save, list filters, set/unset of properties and tags, delete (data removed);
visibility between projects (private, public, shared with members, community), roles, quotas
and sovereignty; hostile bodies and patches, each refusal changing nothing; ranges; a kill -9
in the middle of an upload; and the object store backend on a real sov-s3 (objects checked
with boto3)."""
import hashlib
import json
import os
import socket
import time

import pytest
from botocore.exceptions import ClientError

MIB = 1024 * 1024
PATCH_CT = "application/openstack-images-v2.1-json-patch"


def wait_for(fn, what, timeout=30):
    """Polls fn until it returns something true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Glance:
    """REST helper for one caller (a token) against /image/v2."""

    def __init__(self, api, token):
        self.api, self.token = api, token

    def req(self, method, path, body=None, raw=None, headers=None):
        st, doc, r = self.api.request(method, "/image/v2" + path, body, self.token, raw=raw,
                                      headers=headers)
        return st, doc, r

    def create(self, **attrs):
        st, doc, r = self.req("POST", "/images", attrs)
        assert st == 201, r.body
        return doc

    def upload(self, iid, data):
        st, _, r = self.req("PUT", f"/images/{iid}/file", raw=data,
                            headers={"Content-Type": "application/octet-stream"})
        return st, r

    def show(self, iid):
        st, doc, _ = self.req("GET", f"/images/{iid}")
        return doc if st == 200 else None

    def names(self, query=""):
        st, doc, r = self.req("GET", "/images" + query)
        assert st == 200, r.body
        return {i["name"] for i in doc["images"]}

    def patch(self, iid, ops, ct=PATCH_CT):
        return self.req("PATCH", f"/images/{iid}", raw=json.dumps(ops).encode(),
                        headers={"Content-Type": ct})


def md5(b):
    return hashlib.md5(b).hexdigest()


def image_file(api, iid):
    return api.data_dir / "images" / iid


def tmp_files(api, iid):
    """The temporary files of uploads to iid in the local store."""
    return list((api.data_dir / "images").glob(f"{iid}.*.tmp"))


# ---- the openstack CLI ----

def test_cli_create_show_save_list_set_delete(api, tmp_path):
    data = os.urandom(5 * MIB + 12345)
    src, out = tmp_path / "cirros.raw", tmp_path / "out.raw"
    src.write_bytes(data)
    img = api.openstack("image", "create", "--file", src, "--disk-format", "raw",
                        "--container-format", "bare", "--property", "os_distro=cirros", "cirros")
    iid = img["id"]
    shown = api.openstack("image", "show", "cirros")
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == md5(data)
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["properties"]["os_distro"] == "cirros"
    assert shown["disk_format"] == "raw" and shown["container_format"] == "bare"
    assert image_file(api, iid).read_bytes() == data  # the local store
    api.openstack("image", "save", "--file", out, "cirros", fmt=False)
    assert out.read_bytes() == data

    g = Glance(api, api.token())
    g.create(name="empty", disk_format="qcow2", visibility="private")  # the CLI would read stdin
    rows = api.openstack("image", "list", "--name", "cirros")
    assert [r["Name"] for r in rows] == ["cirros"]
    assert {r["Name"] for r in api.openstack("image", "list", "--status", "queued")} == {"empty"}
    assert {r["Name"] for r in api.openstack("image", "list", "--private")} == {"empty"}

    api.openstack("image", "set", "--property", "hw_disk_bus=scsi", "--tag", "gold", "--tag",
                  "linux", "--min-ram", "128", "cirros", fmt=False)
    shown = api.openstack("image", "show", iid)
    assert shown["properties"]["hw_disk_bus"] == "scsi" and shown["min_ram"] == 128
    assert sorted(shown["tags"]) == ["gold", "linux"]
    api.openstack("image", "unset", "--property", "hw_disk_bus", "--tag", "gold", iid, fmt=False)
    doc = g.show(iid)
    assert "hw_disk_bus" not in doc and doc["tags"] == ["linux"] and doc["os_distro"] == "cirros"
    assert g.names("?tag=linux") == {"cirros"}
    assert g.names("?os_distro=cirros") == {"cirros"} and g.names("?os_distro=debian") == set()

    api.openstack("image", "delete", "cirros", "empty", fmt=False)
    assert not image_file(api, iid).exists()
    assert g.show(iid) is None and g.names() == set()
    st, _, _ = g.req("GET", f"/images/{iid}/file")
    assert st == 404


def test_versions_and_schemas(api):
    st, doc, _ = api.request("GET", "/image")  # no token: version discovery
    assert st == 300
    cur = [v for v in doc["versions"] if v["status"] == "CURRENT"]
    assert [v["id"] for v in cur] == ["v2.9"]
    assert cur[0]["links"][0]["href"] == f"{api.url}/image/v2/"
    assert {"v2.0", "v2.1"} <= {v["id"] for v in doc["versions"]}
    st, doc2, _ = api.request("GET", "/image/versions")
    assert st == 200 and doc2 == doc
    g = Glance(api, api.token())
    st, s, _ = g.req("GET", "/schemas/image")
    assert st == 200 and s["name"] == "image" and "disk_format" in s["properties"]
    assert s["additionalProperties"] == {"type": "string"}
    st, s, _ = g.req("GET", "/schemas/images")
    assert st == 200 and s["name"] == "images"
    st, _, _ = api.request("GET", "/image/v2/images")
    assert st == 401


# ---- data: ranges, states, conflicts ----

def test_data_ranges_and_states(api):
    g = Glance(api, api.token())
    data = os.urandom(300000)
    img = g.create(name="r", disk_format="raw", container_format="bare")
    iid = img["id"]
    assert img["status"] == "queued" and img["size"] is None and img["checksum"] is None
    assert img["self"] == f"/v2/images/{iid}" and img["file"] == f"/v2/images/{iid}/file"
    st, _, r = g.req("GET", f"/images/{iid}/file")
    assert st == 204 and r.body == b""  # no data yet
    st, r = g.upload(iid, data)
    assert st == 204, r.body
    st, r = g.upload(iid, b"again")  # an active image takes no more data
    assert st == 409, r.body
    st, _, r = g.req("GET", f"/images/{iid}/file")
    assert st == 200 and r.body == data
    assert r.headers["Content-MD5"] == md5(data)
    assert r.headers["Content-Type"] == "application/octet-stream"
    for rng, lo, hi in (("bytes=0-99", 0, 99), ("bytes=1000-", 1000, len(data) - 1),
                        ("bytes=-10", len(data) - 10, len(data) - 1),
                        ("bytes=299990-400000", 299990, len(data) - 1)):
        st, _, r = g.req("GET", f"/images/{iid}/file", headers={"Range": rng})
        assert st == 206 and r.body == data[lo:hi + 1], rng
        assert r.headers["Content-Range"] == f"bytes {lo}-{hi}/{len(data)}"
    st, _, r = g.req("GET", f"/images/{iid}/file", headers={"Range": "bytes=300000-"})
    assert st == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"

    # an empty image is fine
    e = g.create(name="zero", disk_format="raw", container_format="bare")
    assert g.upload(e["id"], b"")[0] == 204
    doc = g.show(e["id"])
    assert doc["status"] == "active" and doc["size"] == 0 and doc["checksum"] == md5(b"")
    st, _, r = g.req("GET", f"/images/{e['id']}/file")
    assert st == 200 and r.body == b""

    # deactivate (admin): the data is kept but not served to others; reactivate
    assert g.req("POST", f"/images/{iid}/actions/deactivate")[0] == 204
    assert g.show(iid)["status"] == "deactivated"
    assert g.req("POST", f"/images/{iid}/actions/reactivate")[0] == 204
    assert g.show(iid)["status"] == "active"
    st, _, _ = g.req("POST", f"/images/{e['id']}x/actions/deactivate")
    assert st == 404

    # protected images are not deleted
    st, doc, _ = g.patch(iid, [{"op": "replace", "path": "/protected", "value": True}])
    assert st == 200 and doc["protected"] is True
    st, _, r = g.req("DELETE", f"/images/{iid}")
    assert st == 403 and image_file(api, iid).exists()
    g.patch(iid, [{"op": "replace", "path": "/protected", "value": False}])
    assert g.req("DELETE", f"/images/{iid}")[0] == 204
    assert not image_file(api, iid).exists()

    # upload to an unknown image, a malformed id
    st, r = g.upload("00000000-0000-4000-8000-000000000000", b"x")
    assert st == 404, r.body
    st, r = g.upload("not-a-uuid", b"x")
    assert st == 404


def test_client_chosen_id_list_paging_and_sorting(api):
    g = Glance(api, api.token())
    fixed = "3f0c9a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
    assert g.create(id=fixed, name="img-0", disk_format="raw")["id"] == fixed
    st, doc, _ = g.req("POST", "/images", {"id": fixed, "name": "dup"})
    assert st == 409
    for i in range(1, 5):
        g.create(name=f"img-{i}", disk_format="iso", min_disk=i)
    st, doc, _ = g.req("GET", "/images?limit=2&sort_key=name&sort_dir=asc")
    assert [i["name"] for i in doc["images"]] == ["img-0", "img-1"]
    seen = [i["name"] for i in doc["images"]]
    while "next" in doc:
        assert doc["next"].startswith("/v2/images?")
        st, doc, _ = api.request("GET", "/image" + doc["next"], token=g.token)
        assert st == 200
        seen += [i["name"] for i in doc["images"]]
    assert seen == [f"img-{i}" for i in range(5)]
    st, doc, _ = g.req("GET", "/images?sort=min_disk:desc,name:asc")
    assert [i["name"] for i in doc["images"]] == ["img-4", "img-3", "img-2", "img-1", "img-0"]
    # newest first by default
    st, doc, _ = g.req("GET", "/images")
    assert [i["name"] for i in doc["images"]][0] == "img-4"
    assert g.names("?disk_format=iso&size_max=0") == set()
    assert g.names("?disk_format=raw") == {"img-0"}
    for bad in ("?sort_key=nope", "?sort_dir=sideways&sort_key=name", "?marker=nope",
                "?limit=-1", "?visibility=everyone", "?member_status=maybe", "?size_min=x"):
        st, doc, _ = g.req("GET", "/images" + bad)
        assert st == 400, bad


# ---- projects, roles, visibility ----

def admin_project(api, token):
    st, doc, r = api.request("GET", "/identity/v3/auth/tokens", None, token,
                             headers={"X-Subject-Token": token})
    assert st == 200, r.body
    return doc["token"]["project"]["id"]


def test_visibility_between_projects(api):
    adm = Glance(api, api.token())
    admin_pid = admin_project(api, adm.token)
    other = api.make_project("team-b")
    reader = api.make_project("team-r", role="reader")
    o = Glance(api, other["token"])
    data = os.urandom(64 * 1024)
    priv = adm.create(name="priv", visibility="private", disk_format="raw",
                      container_format="bare")
    pub = adm.create(name="pub", visibility="public", disk_format="raw", container_format="bare")
    comm = adm.create(name="comm", visibility="community", disk_format="raw")
    shared = adm.create(name="shared", disk_format="raw")
    assert shared["visibility"] == "shared" and pub["owner"] == admin_pid
    for img in (priv, pub, shared):
        assert adm.upload(img["id"], data)[0] == 204

    # the other project: private is invisible (404 everywhere), public is readable only
    assert o.show(priv["id"]) is None
    for method, path in (("GET", "/file"), ("DELETE", ""), ("PUT", "/tags/x")):
        assert o.req(method, f"/images/{priv['id']}{path}")[0] == 404, (method, path)
    st, _, _ = o.patch(priv["id"], [{"op": "replace", "path": "/name", "value": "mine"}])
    assert st == 404
    assert o.names() == {"pub"}
    assert o.names("?visibility=community") == {"comm"}
    assert o.show(comm["id"])["name"] == "comm"
    st, _, r = o.req("GET", f"/images/{pub['id']}/file")
    assert st == 200 and r.body == data
    assert o.req("DELETE", f"/images/{pub['id']}")[0] == 403
    st, _, _ = o.patch(pub["id"], [{"op": "replace", "path": "/name", "value": "x"}])
    assert st == 403
    assert o.upload(pub["id"], b"x")[0] == 403
    assert o.req("POST", f"/images/{pub['id']}/actions/deactivate")[0] == 403  # admin only
    # the CLI agrees
    p = api.openstack("image", "show", priv["id"], env=other["env"], check=False)
    assert p.returncode != 0
    p = api.openstack("image", "delete", pub["id"], env=other["env"], check=False, fmt=False)
    assert p.returncode != 0 and "403" in p.stderr
    assert adm.show(pub["id"])["status"] == "active"

    # non-admins cannot publish; they can share with members
    st, doc, _ = o.req("POST", "/images", {"name": "mine", "visibility": "public"})
    assert st == 403
    mine = o.create(name="mine", visibility="private")
    st, _, _ = o.patch(mine["id"], [{"op": "replace", "path": "/visibility", "value": "public"}])
    assert st == 403 and o.show(mine["id"])["visibility"] == "private"
    assert adm.names("?visibility=private") >= {"priv", "mine"}  # admins see every project's

    # members of a shared image: pending (visible by id, not listed), accepted (listed)
    st, m, _ = adm.req("POST", f"/images/{shared['id']}/members", {"member": other["project_id"]})
    assert st == 200 and m["status"] == "pending", m
    st, _, _ = adm.req("POST", f"/images/{priv['id']}/members", {"member": other["project_id"]})
    assert st == 403  # only shared images have members
    assert o.show(shared["id"])["name"] == "shared" and "shared" not in o.names()
    assert o.names("?member_status=pending") >= {"shared"}
    st, _, _ = adm.req("PUT", f"/images/{shared['id']}/members/{other['project_id']}",
                       {"status": "accepted"})
    assert st == 403  # the member decides
    st, m, _ = o.req("PUT", f"/images/{shared['id']}/members/{other['project_id']}",
                     {"status": "accepted"})
    assert st == 200 and m["status"] == "accepted"
    assert "shared" in o.names()
    st, _, r = o.req("GET", f"/images/{shared['id']}/file")
    assert st == 200 and r.body == data
    st, doc, _ = adm.req("GET", f"/images/{shared['id']}/members")
    assert [x["member_id"] for x in doc["members"]] == [other["project_id"]]
    assert adm.req("DELETE", f"/images/{shared['id']}/members/{other['project_id']}")[0] == 204
    assert o.show(shared["id"]) is None

    # a reader reads, never writes
    r = Glance(api, reader["token"])
    assert r.names() == {"pub"}
    st, _, _ = r.req("POST", "/images", {"name": "nope"})
    assert st == 403
    assert r.req("DELETE", f"/images/{pub['id']}")[0] == 403
    assert r.names() == {"pub"} and o.names() >= {"pub", "mine"}


def test_quota_and_sovereignty(start_api):
    api = start_api(ini_extra="[quota]\nimages = 2\n")
    adm = Glance(api, api.token())
    other = api.make_project("team-q")
    o = Glance(api, other["token"])
    o.create(name="a")
    o.create(name="b")
    st, doc, _ = o.req("POST", "/images", {"name": "c"})
    assert st == 413 and "images" in doc["message"], doc
    assert o.names() == {"a", "b"}
    adm.create(name="admin-own")  # the quota is per project
    # a project that only allows Swiss jurisdiction may not store images in this EU region
    st, _, r = api.request("PATCH", f"/identity/v3/projects/{other['project_id']}",
                           {"project": {"allowed_jurisdictions": "CH"}}, adm.token)
    assert st == 200, r.body
    ch = Glance(api, api.token(other["user"], other["password"], "team-q"))
    st, doc, _ = ch.req("POST", "/images", {"name": "swiss"})
    assert st == 403 and "jurisdiction" in doc["message"], doc
    assert o.names() == {"a", "b"}


# ---- hostile input ----

def test_hostile_bodies_and_patches(api):
    g = Glance(api, api.token())
    img = g.create(name="target", disk_format="raw", container_format="bare", tags=["a"])
    iid = img["id"]
    before = g.show(iid)
    bad_creates = [
        ({"disk_format": "floppy"}, 400), ({"container_format": "zip"}, 400),
        ({"min_disk": "ten"}, 400), ({"min_ram": -1}, 400), ({"protected": "yes"}, 400),
        ({"name": 123}, 400), ({"name": "n" * 256}, 400), ({"tags": "a"}, 400),
        ({"tags": [1]}, 400), ({"tags": ["t" * 256]}, 400), ({"visibility": "world"}, 400),
        ({"custom": 5}, 400), ({"custom": "v" * 70000}, 400), ({"id": "not-a-uuid"}, 400),
        ({"status": "active"}, 403), ({"checksum": "0" * 32}, 403), ({"size": 5}, 403),
        ({"os_hash_value": "x"}, 403), ({"_store": "file"}, 403), ({"deleted": "x"}, 403),
        ({"owner": ""}, 400),
    ]
    for body, status in bad_creates:
        st, doc, r = g.req("POST", "/images", body)
        assert st == status, (body, st, r.body)
        assert doc["code"] == status and doc["message"]
    for raw in (b"{", b"[]", b'{"name": "x", "name": "y"}', b"\xff\xfe"):
        st, _, _ = g.req("POST", "/images", raw=raw)
        assert st == 400, raw
    bad_patches = [
        ([{"op": "replace", "path": "/id", "value": "x"}], 403),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/checksum", "value": "0" * 32}], 403),
        ([{"op": "replace", "path": "/size", "value": 1}], 403),
        ([{"op": "remove", "path": "/name"}], 403),
        ([{"op": "add", "path": "/min_disk", "value": "big"}], 400),
        ([{"op": "replace", "path": "/disk_format", "value": "floppy"}], 400),
        ([{"op": "move", "path": "/name", "from": "/x"}], 400),
        ([{"op": "replace", "path": "name", "value": "x"}], 400),
        ([{"op": "add", "path": "/a/b", "value": "x"}], 400),
        ([{"op": "add", "path": "/tags/9", "value": "x"}], 400),
        ([{"op": "replace", "path": "/nonexistent", "value": "x"}], 409),
        ([{"op": "remove", "path": "/nonexistent"}], 409),
        ([{"op": "replace", "path": "/name", "value": "renamed"},
          {"op": "replace", "path": "/status", "value": "active"}], 403),  # all or nothing
        ({"op": "replace"}, 400), ("x", 400), ([1], 400),
    ]
    for ops, status in bad_patches:
        st, doc, r = g.patch(iid, ops)
        assert st == status, (ops, st, r.body)
    st, _, _ = g.req("PATCH", f"/images/{iid}", raw=b"[", headers={"Content-Type": PATCH_CT})
    assert st == 400
    st, _, _ = g.patch(iid, [{"op": "replace", "path": "/name", "value": "x"}],
                       ct="application/json")
    assert st == 415
    assert g.show(iid) == before  # nothing changed
    # JSON-patch as the SDK writes it: list indices on tags, escaped names
    g2 = g.create(name="patchy")
    st, doc, r = g.patch(g2["id"], [
        {"op": "add", "path": "/tags/0", "value": "x"}, {"op": "add", "path": "/tags/-",
                                                         "value": "y"},
        {"op": "add", "path": "/a~1b", "value": "slash"}, {"op": "add", "path": "/c.d",
                                                           "value": "dot"},
        {"op": "replace", "path": "/tags/0", "value": "z"}, {"op": "remove", "path": "/tags/1"}])
    assert st == 200, r.body
    assert doc["tags"] == ["z"] and doc["a/b"] == "slash" and doc["c.d"] == "dot"
    st, _, _ = g.req("PUT", f"/images/{g2['id']}/tags/{'t' * 256}")
    assert st == 400
    assert g.req("DELETE", f"/images/{g2['id']}/tags/nope")[0] == 404
    assert g.req("PUT", f"/images/{g2['id']}/tags/new")[0] == 204
    assert g.show(g2["id"])["tags"] == ["z", "new"]
    st, _, _ = g.req("PUT", f"/images/{g2['id']}/file", raw=b"{}",
                     headers={"Content-Type": "application/json"})
    assert st == 415 and g.show(g2["id"])["status"] == "queued"


# ---- crash in the middle of an upload ----

def start_partial_upload(api, token, iid, sent, total):
    s = socket.create_connection(("127.0.0.1", api.port))
    s.sendall((f"PUT /image/v2/images/{iid}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"X-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {total}\r\n\r\n").encode() + sent)
    return s


def test_kill_during_upload_leaves_no_partial_image(start_api):
    api = start_api()
    g = Glance(api, api.token())
    data = os.urandom(12 * MIB)
    iid = g.create(name="crashy", disk_format="raw", container_format="bare")["id"]
    s = start_partial_upload(api, g.token, iid, data[:9 * MIB], len(data))
    wait_for(lambda: g.show(iid)["status"] == "saving", "upload under way")
    wait_for(lambda: [t for t in tmp_files(api, iid) if t.stat().st_size >= 4 * MIB],
             "partial data on disk")
    api.kill()
    s.close()
    api.start()
    g = Glance(api, api.token())
    doc = g.show(iid)
    assert doc["status"] == "queued" and doc["size"] is None and doc["checksum"] is None
    assert not tmp_files(api, iid) and not image_file(api, iid).exists()
    st, _, _ = g.req("GET", f"/images/{iid}/file")
    assert st == 204
    # a client that goes away mid-upload leaves it queued too, without a restart
    s = start_partial_upload(api, g.token, iid, data[:5 * MIB], len(data))
    wait_for(lambda: g.show(iid)["status"] == "saving", "second upload under way")
    s.close()
    wait_for(lambda: g.show(iid)["status"] == "queued", "upload abandoned")
    wait_for(lambda: not tmp_files(api, iid), "temporary data removed")
    st, r = g.upload(iid, data)
    assert st == 204, r.body
    doc = g.show(iid)
    assert doc["status"] == "active" and doc["checksum"] == md5(data)
    assert image_file(api, iid).read_bytes() == data

    # deleted while its data is arriving: the upload ends with 410 and leaves nothing behind
    gone = g.create(name="gone", disk_format="raw", container_format="bare")["id"]
    s = start_partial_upload(api, g.token, gone, data[:MIB], 2 * MIB)
    wait_for(lambda: g.show(gone)["status"] == "saving", "third upload under way")
    assert g.req("DELETE", f"/images/{gone}")[0] == 204
    s.sendall(data[MIB:2 * MIB])
    s.settimeout(30)
    assert s.recv(64).startswith(b"HTTP/1.1 410")
    s.close()
    wait_for(lambda: not image_file(api, gone).exists(), "data of the deleted image removed")
    assert not tmp_files(api, gone) and g.show(gone) is None


# ---- the object store backend ----

@pytest.fixture
def s3_cloud(start_api, start_s3):
    s3 = start_s3()
    api = start_api(ini_extra=f"[image]\ns3_url = {s3.url}\ns3_access_key = {s3.access_key}\n"
                              f"s3_secret_key = {s3.secret_key}\ns3_bucket = glance-images\n")
    c = s3.client()

    def bucket_ready():
        try:
            c.head_bucket(Bucket="glance-images")
            return True
        except ClientError:
            return False
    wait_for(bucket_ready, "the image bucket")  # created by sov-api at start
    return api, s3, c


def test_s3_backend_with_cli(s3_cloud, tmp_path):
    api, s3, c = s3_cloud
    data = os.urandom(19 * MIB + 777)  # three parts of a multipart upload
    src, out = tmp_path / "big.raw", tmp_path / "out.raw"
    src.write_bytes(data)
    iid = api.openstack("image", "create", "--file", src, "--disk-format", "qcow2",
                        "--container-format", "bare", "big")["id"]
    head = c.head_object(Bucket="glance-images", Key=iid)
    assert head["ContentLength"] == len(data)
    body = c.get_object(Bucket="glance-images", Key=iid)["Body"].read()
    assert body == data
    assert not image_file(api, iid).exists()  # nothing in the local store
    g = Glance(api, api.token())
    doc = g.show(iid)
    assert doc["status"] == "active" and doc["checksum"] == md5(data)
    assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
    api.openstack("image", "save", "--file", out, "big", fmt=False)
    assert out.read_bytes() == data
    st, _, r = g.req("GET", f"/images/{iid}/file",
                     headers={"Range": f"bytes={8 * MIB - 5}-{8 * MIB + 4}"})
    assert st == 206 and r.body == data[8 * MIB - 5:8 * MIB + 5]

    small = g.create(name="small", disk_format="raw", container_format="bare")
    sdata = os.urandom(1000)
    assert g.upload(small["id"], sdata)[0] == 204  # one PUT
    assert c.get_object(Bucket="glance-images", Key=small["id"])["Body"].read() == sdata
    assert g.req("GET", f"/images/{small['id']}/file")[2].body == sdata

    api.openstack("image", "delete", "big", fmt=False)
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="glance-images", Key=iid)
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert g.req("DELETE", f"/images/{small['id']}")[0] == 204
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="glance-images").get("Contents", [])]
    assert keys == []


def test_s3_kill_during_upload_aborts_it(s3_cloud):
    api, s3, c = s3_cloud
    g = Glance(api, api.token())
    data = os.urandom(20 * MIB)
    iid = g.create(name="crashy", disk_format="raw", container_format="bare")["id"]
    s = start_partial_upload(api, g.token, iid, data[:17 * MIB], len(data))

    def uploads():
        return c.list_multipart_uploads(Bucket="glance-images").get("Uploads", [])

    def parts_stored():
        up = uploads()
        return up and c.list_parts(Bucket="glance-images", Key=iid,
                                   UploadId=up[0]["UploadId"]).get("Parts")
    # a stored part means sov-api has recorded the upload id (it does so before sending it)
    wait_for(parts_stored, "multipart upload under way")
    api.kill()
    s.close()
    api.start()
    g = Glance(api, api.token())
    assert g.show(iid)["status"] == "queued"
    wait_for(lambda: not uploads(), "the interrupted multipart upload aborted")
    assert "Contents" not in c.list_objects_v2(Bucket="glance-images")
    st, r = g.upload(iid, data)
    assert st == 204, r.body
    assert c.get_object(Bucket="glance-images", Key=iid)["Body"].read() == data
