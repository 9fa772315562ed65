# SPDX-License-Identifier: Apache-2.0
"""sov-api's block storage API (Cinder v3) realised by a real sov-block: the openstack CLI creates,
extends, snapshots, clones and deletes volumes and each change is checked in sov-block's own
listing; quotas, project isolation, roles and hostile bodies; sov-block down at create time and
started later (with sov-api restarted) converges. Volumes from images (local image store and
sov-s3) hold the image's bytes, read back over NBD; too small, unknown or unreadable images
fail cleanly."""
import hashlib
import os
import socket
import time

import pytest
from botocore.exceptions import ClientError

from conftest import MIB, nbd_map, run_tool

GIB = 1024 ** 3
TIERS = {"ssd-performance", "ssd-standard", "hdd-standard", "archive"}


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


class Cinder:
    """REST helper for one caller: paths under /volume/v3/<project>."""

    def __init__(self, api, token, project_id):
        self.api, self.token, self.project = api, token, project_id

    def req(self, method, path, body=None, raw=None, project=None):
        st, doc, r = self.api.request(method, f"/volume/v3/{project or self.project}{path}",
                                      body, self.token, raw=raw)
        return st, doc

    def volume(self, vid):
        st, doc = self.req("GET", f"/volumes/{vid}")
        return doc["volume"] if st == 200 else None

    def snapshot(self, sid):
        st, doc = self.req("GET", f"/snapshots/{sid}")
        return doc["snapshot"] if st == 200 else None

    def volumes(self):
        st, doc = self.req("GET", "/volumes/detail")
        assert st == 200, doc
        return doc["volumes"]

    def wait_status(self, vid, status, snapshot=False):
        get = self.snapshot if snapshot else self.volume
        return wait_for(lambda: (lambda v: v if v and v["status"] == status else None)(get(vid)),
                        f"{'snapshot' if snapshot else 'volume'} {vid} {status}")

    def wait_gone(self, vid, snapshot=False):
        get = self.snapshot if snapshot else self.volume
        wait_for(lambda: get(vid) is None, f"{vid} deleted")


def admin_cinder(api):
    tok = api.token()
    st, doc, r = api.request("GET", "/identity/v3/auth/tokens", None, tok,
                             headers={"X-Subject-Token": tok})
    assert st == 200, r.body
    return Cinder(api, tok, doc["token"]["project"]["id"])


@pytest.fixture
def cloud(start_api, start_block):
    token = "blk-" + os.urandom(8).hex()
    block = start_block(token=token)
    api = start_api(ini_extra=f"[block]\nurl = {block.url}\ntoken = {token}\n")
    return api, block, admin_cinder(api)


def test_versions_and_types(cloud):
    api, block, adm = cloud
    st, doc, _ = api.request("GET", "/volume")
    assert st == 300 and doc["versions"][0]["id"] == "v3.0"
    st, doc, _ = api.request("GET", "/volume/v3/")
    assert st == 200 and doc["version"]["status"] == "CURRENT"

    types = api.openstack("volume", "type", "list", "--long")
    assert {t["Name"] for t in types} == TIERS
    perf = api.openstack("volume", "type", "show", "ssd-performance")
    assert perf["properties"]["sov:iops"] == "100000"
    assert perf["properties"]["volume_backend_name"] == "sov-block"
    st, doc = adm.req("GET", "/types/default")
    assert st == 200 and doc["volume_type"]["name"] == "ssd-standard"

    # admins manage types; the default and types in use cannot go
    api.openstack("volume", "type", "create", "--property", "sov:tier=gold", "gold")
    assert "gold" in {t["Name"] for t in api.openstack("volume", "type", "list")}
    api.openstack("volume", "type", "delete", "gold", fmt=False)
    st, doc = adm.req("DELETE", f"/types/{doc['volume_type']['id']}")
    assert st == 400
    member = api.make_project("typeless")
    who = Cinder(api, member["token"], member["project_id"])
    st, _ = who.req("POST", "/types", {"volume_type": {"name": "mine"}})
    assert st == 403
    assert {t["Name"] for t in api.openstack("volume", "type", "list")} == TIERS


def test_volume_lifecycle_in_sov_block(cloud):
    api, block, adm = cloud
    os_ = api.openstack
    v = os_("volume", "create", "--size", "1", "--type", "hdd-standard", "--property", "tier=x",
            "data")
    assert v["status"] == "creating" and v["type"] == "hdd-standard"
    vid = v["id"]
    adm.wait_status(vid, "available")
    assert os_("volume", "show", "data")["status"] == "available"
    assert block.volumes()[f"vol-{vid}"]["size"] == GIB

    # extend
    os_("volume", "set", "--size", "2", "data", fmt=False)
    adm.wait_status(vid, "available")
    assert adm.volume(vid)["size"] == 2
    assert block.volumes()[f"vol-{vid}"]["size"] == 2 * GIB
    # shrinking is refused
    st, doc = adm.req("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": 1}})
    assert st == 400 and "badRequest" in doc

    # snapshot
    s = os_("volume", "snapshot", "create", "--volume", "data", "snap")
    sid = s["id"]
    adm.wait_status(sid, "available", snapshot=True)
    have = block.volumes()
    assert have[f"snap-{sid}"]["snapshot"] and have[f"snap-{sid}"]["origin"] == f"vol-{vid}"

    # a volume with snapshots is not deleted
    p = os_("volume", "delete", "data", fmt=False, check=False)
    assert p.returncode != 0 and "snapshots" in p.stderr
    assert adm.volume(vid)["status"] == "available" and f"vol-{vid}" in block.volumes()

    # from the snapshot, larger; and a clone of the volume
    c1 = os_("volume", "create", "--snapshot", "snap", "--size", "3", "fromsnap")
    c2 = os_("volume", "create", "--source", "data", "clone")
    adm.wait_status(c1["id"], "available")
    adm.wait_status(c2["id"], "available")
    have = block.volumes()
    assert have[f"vol-{c1['id']}"]["origin"] == f"snap-{sid}"
    assert have[f"vol-{c1['id']}"]["size"] == 3 * GIB
    assert have[f"vol-{c2['id']}"]["size"] == 2 * GIB
    assert adm.volume(c1["id"])["snapshot_id"] == sid
    assert adm.volume(c2["id"])["source_volid"] == vid
    # the temporary snapshot of the clone goes away
    wait_for(lambda: not any(n.startswith("clone-") for n in block.volumes()), "clone snapshot")

    # rename and properties
    os_("volume", "set", "--name", "renamed", "--property", "k=v", "clone", fmt=False)
    shown = os_("volume", "show", "renamed")
    assert shown["properties"] == {"k": "v"}

    # delete everything: gone from the API and from sov-block
    os_("volume", "snapshot", "delete", "snap", fmt=False)
    adm.wait_gone(sid, snapshot=True)
    os_("volume", "delete", "data", "fromsnap", "renamed", fmt=False)
    for x in (vid, c1["id"], c2["id"]):
        adm.wait_gone(x)
    assert block.volumes() == {}
    assert adm.volumes() == []


def test_attach_actions_and_reset(cloud):
    api, block, adm = cloud
    # a type asking for encryption at rest gets an encrypted sov-block volume
    st, doc = adm.req("POST", "/types", {"volume_type": {
        "name": "sealed", "extra_specs": {"sov:encrypted": "true"}}})
    assert st == 200, doc
    st, doc = adm.req("POST", "/volumes", {"volume": {"size": 1, "volume_type": "sealed"}})
    assert st == 202 and doc["volume"]["encrypted"] is True
    sealed = doc["volume"]["id"]
    adm.wait_status(sealed, "available")
    assert block.volumes()[f"vol-{sealed}"]["encrypted"] is True
    assert adm.req("DELETE", f"/volumes/{sealed}")[0] == 202
    adm.wait_gone(sealed)

    st, doc = adm.req("POST", "/volumes", {"volume": {"size": 1, "name": "att"}})
    assert st == 202
    vid = doc["volume"]["id"]
    adm.wait_status(vid, "available")
    server = "11111111-2222-4333-8444-555555555555"
    st, _ = adm.req("POST", f"/volumes/{vid}/action",
                    {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}})
    assert st == 202
    v = adm.volume(vid)
    assert v["status"] == "in-use" and v["attachments"][0]["server_id"] == server
    st, doc = adm.req("DELETE", f"/volumes/{vid}")
    assert st == 400 and adm.volume(vid)["status"] == "in-use"
    # extending an attached volume keeps it in-use
    st, _ = adm.req("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": "2"}})
    assert st == 202
    wait_for(lambda: block.volumes()[f"vol-{vid}"]["size"] == 2 * GIB, "resize in sov-block")
    adm.wait_status(vid, "in-use")
    st, _ = adm.req("POST", f"/volumes/{vid}/action",
                    {"os-detach": {"attachment_id": v["attachments"][0]["attachment_id"]}})
    assert st == 202
    v = adm.volume(vid)
    assert v["status"] == "available" and v["attachments"] == []
    st, _ = adm.req("POST", f"/volumes/{vid}/action", {"os-reset_status": {"status": "error"}})
    assert st == 202 and adm.volume(vid)["status"] == "error"
    st, _ = adm.req("DELETE", f"/volumes/{vid}")
    assert st == 202
    adm.wait_gone(vid)
    assert block.volumes() == {}


def test_quota_isolation_and_roles(cloud):
    api, block, adm = cloud
    p2 = api.make_project("tenant2")
    api.openstack("quota", "set", "--volumes", "1", "tenant2", fmt=False)
    v = api.openstack("volume", "create", "--size", "1", "mine", env=p2["env"])
    t2 = Cinder(api, p2["token"], p2["project_id"])
    st, doc = t2.req("POST", "/volumes", {"volume": {"size": 1, "name": "second"}})
    assert st == 413 and "overLimit" in doc, doc
    assert [x["name"] for x in t2.volumes()] == ["mine"]
    st, doc = t2.req("GET", f"/os-quota-sets/{p2['project_id']}?usage=True")
    assert st == 200 and doc["quota_set"]["volumes"] == {
        "limit": 1, "in_use": 1, "reserved": 0, "allocated": 0}
    st, doc = t2.req("GET", "/limits")
    assert doc["limits"]["absolute"]["maxTotalVolumes"] == 1
    # a member cannot change quotas
    st, _ = t2.req("PUT", f"/os-quota-sets/{p2['project_id']}", {"quota_set": {"volumes": 50}})
    assert st == 403

    # another project sees nothing of tenant2's volume and cannot touch it
    other = api.make_project("tenant3")
    t3 = Cinder(api, other["token"], other["project_id"])
    vid = v["id"]
    assert t3.req("GET", f"/volumes/{vid}")[0] == 404
    assert t3.req("DELETE", f"/volumes/{vid}")[0] == 404
    assert t3.req("PUT", f"/volumes/{vid}", {"volume": {"name": "x"}})[0] == 404
    assert t3.req("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": 5}})[0] == 404
    assert t3.req("POST", "/snapshots", {"snapshot": {"volume_id": vid}})[0] == 404
    assert t3.req("POST", "/volumes", {"volume": {"size": 1, "source_volid": vid}})[0] == 404
    assert t3.volumes() == []
    # nor can it use tenant2's project in the path
    assert t3.req("GET", "/volumes/detail", project=p2["project_id"])[0] == 403
    p = api.openstack("volume", "delete", vid, env=other["env"], fmt=False, check=False)
    assert p.returncode != 0
    assert t2.volume(vid)["name"] == "mine"

    # a reader lists but cannot create
    rd = api.make_project("readers", role="reader")
    r = Cinder(api, rd["token"], rd["project_id"])
    assert r.req("GET", "/volumes")[0] == 200
    st, _ = r.req("POST", "/volumes", {"volume": {"size": 1}})
    assert st == 403 and r.volumes() == []
    # the admin sees every project's with all_tenants
    st, doc = adm.req("GET", "/volumes/detail?all_tenants=1")
    assert vid in {x["id"] for x in doc["volumes"]}
    t2.wait_status(vid, "available")
    assert {n for n in block.volumes()} == {f"vol-{vid}"}


def test_hostile_bodies_change_nothing(cloud):
    api, block, adm = cloud
    bad = [
        {"volume": {"size": 0}},
        {"volume": {"size": -1}},
        {"volume": {"size": "x"}},
        {"volume": {"size": 1.5}},
        {"volume": {"size": 10 ** 12}},
        {"volume": {"size": [1]}},
        {"volume": {"size": 1, "name": "n" * 10000}},
        {"volume": {"size": 1, "description": 7}},
        {"volume": {"size": 1, "metadata": {"k": 1}}},
        {"volume": {"size": 1, "metadata": "kv"}},
        {"volume": {"size": 1, "availability_zone": "mars-1a"}},
        {"volume": {"size": 1, "multiattach": True}},
        {"volume": {}},
        {"volume": "1"},
        {"size": 1},
    ]
    for body in bad:
        st, doc = adm.req("POST", "/volumes", body)
        # (common.c's zone placement names its own fault key: InvalidAvailabilityZone)
        assert st == 400 and list(doc.values())[0]["code"] == 400, (body, st, doc)
    # unknown references answer 404 as Cinder does
    for body in ({"volume": {"size": 1, "volume_type": "platinum"}},
                 {"volume": {"size": 1, "snapshot_id": "00000000-0000-4000-8000-000000000000"}},
                 {"volume": {"size": 1, "source_volid": "nope"}},
                 {"volume": {"size": 1, "imageRef": "00000000-0000-4000-8000-000000000000"}}):
        st, doc = adm.req("POST", "/volumes", body)
        assert st == 404 and "itemNotFound" in doc, (body, st, doc)
    for raw in (b"{", b"[]", b"\x00", b'{"volume": {"size": 1}, "volume": {"size": 2}}'):
        st, doc = adm.req("POST", "/volumes", raw=raw)
        assert st == 400, raw
    st, _ = adm.req("POST", "/snapshots", {"snapshot": {"volume_id": 5}})
    assert st == 400
    st, _ = adm.req("PUT", "/os-quota-sets/" + adm.project, {"quota_set": {"volumes": "many"}})
    assert st == 400
    assert adm.req("GET", "/volumes/not-a-uuid")[0] == 404
    assert adm.req("GET", "/volumes/detail?sort=password:asc")[0] == 400
    assert adm.req("GET", "/volumes/detail?marker=00000000-0000-4000-8000-000000000000")[0] == 400
    assert adm.volumes() == [] and block.volumes() == {}
    st, doc = adm.req("GET", f"/os-quota-sets/{adm.project}?usage=true")
    assert doc["quota_set"]["volumes"]["in_use"] == 0
    assert doc["quota_set"]["gigabytes"]["in_use"] == 0

    # actions on a real volume: unknown ones, bad sizes, admin-only ones
    st, doc = adm.req("POST", "/volumes", {"volume": {"size": 1}})
    vid = doc["volume"]["id"]
    adm.wait_status(vid, "available")
    for body in ({"os-frobnicate": {}}, {"os-extend": {"new_size": "big"}},
                 {"os-extend": {}}, {"os-extend": {"new_size": 2}, "os-detach": {}},
                 {"os-reset_status": {"status": "weird"}}, {"os-set_bootable": {"bootable": 3}}):
        st, doc = adm.req("POST", f"/volumes/{vid}/action", body)
        assert st == 400, (body, st, doc)
    member = api.make_project("resetter")
    m = Cinder(api, member["token"], member["project_id"])
    st, doc = m.req("POST", "/volumes", {"volume": {"size": 1}})
    mid = doc["volume"]["id"]
    st, _ = m.req("POST", f"/volumes/{mid}/action", {"os-reset_status": {"status": "available"}})
    assert st == 403
    assert adm.volume(vid)["size"] == 1 and block.volumes()[f"vol-{vid}"]["size"] == GIB


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_block_down_then_up_converges(start_api, start_block):
    token = "blk-" + os.urandom(8).hex()
    port = free_port()
    api = start_api(ini_extra=f"[block]\nurl = http://127.0.0.1:{port}\ntoken = {token}\n")
    adm = admin_cinder(api)
    a = api.openstack("volume", "create", "--size", "1", "early")
    assert adm.volume(a["id"])["status"] == "creating"
    st, doc = adm.req("GET", "/os-services")
    assert {s["binary"]: s["state"] for s in doc["services"]}["cinder-volume"] == "down"

    # sov-api restarts, then sov-block appears: the start-up pass converges
    api.stop()
    block = start_block(token=token, ini_extra=f"[server]\nlisten = 127.0.0.1:{port}\n")
    assert block.port == port
    api.start()
    adm = admin_cinder(api)
    adm.wait_status(a["id"], "available")
    assert block.volumes()[f"vol-{a['id']}"]["size"] == GIB

    # sov-block goes away: a new volume waits, a deletion waits; it comes back: both converge
    block.stop()
    b = api.openstack("volume", "create", "--size", "2", "late")
    api.openstack("volume", "delete", "early", fmt=False)
    assert adm.volume(b["id"])["status"] == "creating"
    assert adm.volume(a["id"])["status"] == "deleting"
    block.start()
    adm.wait_status(b["id"], "available")
    adm.wait_gone(a["id"])
    assert set(block.volumes()) == {f"vol-{b['id']}"}
    assert "unavailable" in api.log.read_text()


# ---- volumes from images ----

def raw_image(api, tmp_path, name, data, *extra, env=None):
    src = tmp_path / f"{name}.raw"
    src.write_bytes(data)
    img = api.openstack("image", "create", "--file", src, "--disk-format", "raw",
                        "--container-format", "bare", *extra, name, env=env)
    src.unlink()
    return img


def check_volume_holds(block, vid, data, tmp_path):
    """The sov-block volume of vid starts with data and reads as zeros (holes) after it."""
    uri, out = block.uri(f"vol-{vid}"), tmp_path / "vol.raw"
    run_tool(["nbdcopy", uri, str(out)])  # sparse: only the data is written
    with open(out, "rb") as f:
        head = f.read(len(data) + MIB)
    out.unlink()
    assert head[:len(data)] == data and head[len(data):] == bytes(MIB)
    end = -(-len(data) // (64 * 1024)) * 64 * 1024  # the last cluster with data
    assert all(t == 3 for off, length, t in nbd_map(uri) if off >= end)


def check_image_volume(api, block, adm, tmp_path, data):
    img = raw_image(api, tmp_path, "img", data)
    v = api.openstack("volume", "create", "--image", "img", "--size", "1", "fromimg")
    assert v["status"] in ("creating", "downloading") and v["bootable"] == "true"
    done = adm.wait_status(v["id"], "available")
    assert done["bootable"] == "true" and done["size"] == 1
    assert done["volume_image_metadata"] == {
        "image_id": img["id"], "image_name": "img", "disk_format": "raw",
        "container_format": "bare", "min_disk": "0", "min_ram": "0", "size": str(len(data)),
        "checksum": hashlib.md5(data).hexdigest()}
    check_volume_holds(block, v["id"], data, tmp_path)
    assert "import" not in block.volumes()[f"vol-{v['id']}"]
    return img, v["id"]


def test_volume_from_local_image(cloud, tmp_path):
    api, block, adm = cloud
    data = os.urandom(2 * MIB) + bytes(MIB) + os.urandom(MIB + 4321)
    img, vid = check_image_volume(api, block, adm, tmp_path, data)
    # the data link sov-block got is signed: without a valid signature it is refused
    st, _, r = api.request("GET", f"/image/internal/{img['id']}")
    assert st == 403
    st, _, r = api.request("GET", f"/image/internal/{img['id']}?expires=99999999999&sig="
                           + "0" * 64)
    assert st == 403

    # too small for the image's min_disk: refused up front, nothing created
    raw_image(api, tmp_path, "big", os.urandom(1000), "--min-disk", "2")
    p = api.openstack("volume", "create", "--image", "big", "--size", "1", "small",
                      fmt=False, check=False)
    assert p.returncode != 0 and "size" in p.stderr
    assert [v["name"] for v in adm.volumes()] == ["fromimg"]
    # unknown images and another project's private ones are 404
    st, doc = adm.req("POST", "/volumes", {"volume": {
        "size": 1, "imageRef": "00000000-0000-4000-8000-000000000000"}})
    assert st == 404 and "itemNotFound" in doc
    other = api.make_project("img-owner")
    theirs = raw_image(api, tmp_path, "theirs", b"x" * 512, env=other["env"])
    st, doc = adm.req("POST", "/volumes", {"volume": {"size": 1, "imageRef": theirs["id"]}})
    assert st == 202  # the cloud admin may
    adm.wait_status(doc["volume"]["id"], "available")
    me = api.make_project("img-user")
    mine = Cinder(api, me["token"], me["project_id"])
    st, _ = mine.req("POST", "/volumes", {"volume": {"size": 1, "imageRef": theirs["id"]}})
    assert st == 404 and mine.volumes() == []
    rd = api.make_project("img-reader", role="reader")
    st, _ = Cinder(api, rd["token"], rd["project_id"]).req(
        "POST", "/volumes", {"volume": {"size": 1, "imageRef": img["id"]}})
    assert st == 403

    # the image's data is unreadable: the volume goes to error with the reason
    lost = raw_image(api, tmp_path, "lost", os.urandom(4096))
    (api.data_dir / "images" / lost["id"]).unlink()
    st, doc = adm.req("POST", "/volumes", {"volume": {"size": 1, "imageRef": lost["id"]}})
    assert st == 202
    bad = adm.wait_status(doc["volume"]["id"], "error")
    assert bad["bootable"] == "true"
    assert "copying the image failed" in api.log.read_text()
    assert adm.req("DELETE", f"/volumes/{bad['id']}")[0] == 202
    adm.wait_gone(bad["id"])

    api.openstack("volume", "delete", "fromimg", fmt=False)
    adm.wait_gone(vid)
    assert f"vol-{vid}" not in block.volumes() and f"vol-{bad['id']}" not in block.volumes()


def test_volume_from_s3_image(start_api, start_block, start_s3, tmp_path):
    s3 = start_s3()
    token = "blk-" + os.urandom(8).hex()
    block = start_block(token=token)
    api = start_api(ini_extra=f"[block]\nurl = {block.url}\ntoken = {token}\n"
                              f"[image]\ns3_url = {s3.url}\ns3_access_key = {s3.access_key}\n"
                              f"s3_secret_key = {s3.secret_key}\ns3_bucket = glance-images\n")
    c = s3.client()

    def bucket_ready():
        try:
            return c.head_bucket(Bucket="glance-images") is not None
        except ClientError:
            return False
    wait_for(bucket_ready, "the image bucket")
    adm = admin_cinder(api)
    data = os.urandom(9 * MIB + 99)  # two ranged GETs of the presigned URL
    img, vid = check_image_volume(api, block, adm, tmp_path, data)
    assert c.head_object(Bucket="glance-images", Key=img["id"])["ContentLength"] == len(data)
    assert not (api.data_dir / "images" / img["id"]).exists()

    # Nova's boot from volume: a block-device mapping from the image makes such a volume too
    st, doc, r = api.request("POST", "/agent/v1/hosts", {
        "host": "cn1", "kind": "compute", "zone": "eu-central-1a", "vcpus": 8, "ram_mb": 16384},
        headers={"Authorization": f"Bearer {api.agent_token}"})
    assert 200 <= st < 300, r.body
    st, doc, r = api.request("POST", "/compute/v2.1/servers", {"server": {
        "name": "bfv", "flavorRef": "t3.micro", "networks": "none",
        "block_device_mapping_v2": [{"boot_index": 0, "source_type": "image", "uuid": img["id"],
                                     "destination_type": "volume", "volume_size": 1}]}},
        adm.token)
    assert st == 202, r.body
    boot = [v for v in adm.volumes() if v["id"] != vid]
    assert len(boot) == 1 and boot[0]["volume_image_metadata"]["image_id"] == img["id"]
    # made for the server: attached to it the moment the copy is done
    adm.wait_status(boot[0]["id"], "in-use")
    att = adm.volumes()
    att = [v for v in att if v["id"] == boot[0]["id"]][0]["attachments"]
    assert [a["server_id"] for a in att] == [doc["server"]["id"]]
    check_volume_holds(block, boot[0]["id"], data, tmp_path)
