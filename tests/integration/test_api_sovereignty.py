# SPDX-License-Identifier: Apache-2.0
"""Regions, zones and jurisdictions in sov-api: a project's allowed_jurisdictions decides where
its volumes, servers and images may be placed; anything else is refused with a fault that names
the zone, its jurisdiction and the project's policy, and nothing is created."""
import pytest

REGIONS = ("[api]\nregions = eu-central-1:EU:eu-central-1a,eu-central-1b;"
           "ch-zurich-1:CH:ch-zurich-1a;us-east-1:US:us-east-1a\n")


@pytest.fixture
def cloud(start_api):
    return start_api(REGIONS)


def project(api, name, jurisdictions=None):
    t = api.make_project(name)
    if jurisdictions:
        st, _, r = api.request("PATCH", f"/identity/v3/projects/{t['project_id']}",
                               {"project": {"allowed_jurisdictions": jurisdictions}},
                               token=api.token())
        assert st == 200, r.body
        t["token"] = api.token(t["user"], t["password"], name)
    return t


def volumes(api, t):
    st, doc, _ = api.request("GET", f"/volume/v3/{t['project_id']}/volumes", token=t["token"])
    assert st == 200
    return doc["volumes"]


def test_zones_listed_with_regions(cloud):
    # each region's services list that region's zones (this one is eu-central-1)
    zones = cloud.openstack("availability", "zone", "list", "--volume")
    assert {z["Zone Name"] for z in zones} == {"eu-central-1a", "eu-central-1b"}
    regions = cloud.openstack("region", "list")
    assert {r["Region"] for r in regions} == {"eu-central-1", "ch-zurich-1", "us-east-1"}


def test_default_policy_is_eu_only(cloud):
    t = project(cloud, "eu-only")
    p = cloud.openstack("volume", "create", "--size", "1", "--availability-zone", "us-east-1a",
                        "v-us", env=t["env"], check=False)
    assert p.returncode != 0 and "jurisdiction" in p.stderr.lower(), p.stderr
    assert "US" in p.stderr and "us-east-1a" in p.stderr
    assert volumes(cloud, t) == []
    v = cloud.openstack("volume", "create", "--size", "1", "v-eu", env=t["env"])
    assert v["availability_zone"] == "eu-central-1a"
    v = cloud.openstack("volume", "create", "--size", "1", "--availability-zone",
                        "eu-central-1b", "v-eu2", env=t["env"])
    assert v["availability_zone"] == "eu-central-1b"


def test_project_policy_widens_and_narrows(cloud):
    ch = project(cloud, "swiss", "CH")
    # the default zone is the first one the policy allows
    v = cloud.openstack("volume", "create", "--size", "1", "v-ch", env=ch["env"])
    assert v["availability_zone"] == "ch-zurich-1a"
    p = cloud.openstack("volume", "create", "--size", "1", "--availability-zone",
                        "eu-central-1a", "v-eu", env=ch["env"], check=False)
    assert p.returncode != 0 and "jurisdiction" in p.stderr.lower()
    both = project(cloud, "eu-ch", "EU,CH")
    for zone in ("eu-central-1a", "ch-zurich-1a"):
        v = cloud.openstack("volume", "create", "--size", "1", "--availability-zone", zone,
                            "v-" + zone, env=both["env"])
        assert v["availability_zone"] == zone
    assert len(volumes(cloud, ch)) == 1


def test_unknown_zone_is_a_bad_request(cloud):
    t = project(cloud, "typo")
    st, doc, r = cloud.request("POST", f"/volume/v3/{t['project_id']}/volumes",
                               {"volume": {"size": 1, "availability_zone": "eu-central-9z"}},
                               token=t["token"])
    assert st == 400, r.body
    assert volumes(cloud, t) == []


def test_policy_must_be_jurisdiction_codes(cloud):
    t = project(cloud, "bad-policy")
    st, doc, _ = cloud.request("PATCH", f"/identity/v3/projects/{t['project_id']}",
                               {"project": {"allowed_jurisdictions": "EU; DROP"}},
                               token=cloud.token())
    assert st == 400


def test_images_stay_where_the_policy_allows(cloud, tmp_path):
    # image data lives in this region (eu-central-1, EU): a CH-only project may not store any
    ch = project(cloud, "swiss-img", "CH")
    f = tmp_path / "disk.raw"
    f.write_bytes(b"\0" * 4096)
    p = cloud.openstack("image", "create", "--file", f, "--disk-format", "raw",
                        "--container-format", "bare", "img-ch", env=ch["env"], check=False)
    assert p.returncode != 0 and "403" in p.stderr, p.stderr
    st, doc, _ = cloud.request("GET", "/image/v2/images", token=ch["token"])
    assert st == 200 and [i for i in doc["images"] if i["name"] == "img-ch"] == []
    eu = project(cloud, "eu-img")
    img = cloud.openstack("image", "create", "--file", f, "--disk-format", "raw",
                          "--container-format", "bare", "img-eu", env=eu["env"])
    assert cloud.openstack("image", "show", img["id"], env=eu["env"])["status"] == "active"


def test_servers_placed_only_where_allowed(cloud, tmp_path):
    t = project(cloud, "eu-servers")
    f = tmp_path / "tiny.raw"
    f.write_bytes(b"\0" * 4096)
    img = cloud.openstack("image", "create", "--file", f, "--disk-format", "raw",
                          "--container-format", "bare", "tiny", env=t["env"])
    body = {"server": {"name": "s-us", "flavorRef": "t3.micro", "imageRef": img["id"],
                       "networks": "none", "availability_zone": "us-east-1a"}}
    st, doc, r = cloud.request("POST", "/compute/v2.1/servers", body, token=t["token"])
    assert st == 403, r.body
    assert "jurisdiction" in doc["forbidden"]["message"]
    st, doc, _ = cloud.request("GET", "/compute/v2.1/servers", token=t["token"])
    assert doc["servers"] == []
    # inside the policy the server is accepted (and, with no compute host, ends in ERROR)
    body["server"].update(name="s-eu", availability_zone="eu-central-1b")
    st, doc, r = cloud.request("POST", "/compute/v2.1/servers", body, token=t["token"])
    assert st == 202, r.body
    st, doc, _ = cloud.request("GET", f"/compute/v2.1/servers/{doc['server']['id']}",
                               token=t["token"])
    assert doc["server"]["OS-EXT-AZ:availability_zone"] == "eu-central-1b"
    assert "No valid host" in doc["server"]["fault"]["message"]


def test_scheduler_respects_zone_of_the_policy(cloud, tmp_path):
    """A compute host in a US zone never receives an EU-only project's server."""
    hdr = {"Authorization": f"Bearer {cloud.agent_token}"}
    st, _, r = cloud.request("POST", "/agent/v1/hosts",
                             {"host": "us-host", "kind": "compute", "zone": "us-east-1a",
                              "vcpus": 64, "ram_mb": 262144}, headers=hdr)
    assert st == 200, r.body
    t = project(cloud, "eu-sched")
    f = tmp_path / "tiny.raw"
    f.write_bytes(b"\0" * 4096)
    img = cloud.openstack("image", "create", "--file", f, "--disk-format", "raw",
                          "--container-format", "bare", "tiny2", env=t["env"])
    body = {"server": {"name": "s", "flavorRef": "t3.micro", "imageRef": img["id"],
                       "networks": "none"}}
    st, doc, r = cloud.request("POST", "/compute/v2.1/servers", body, token=t["token"])
    assert st == 202, r.body
    st, doc, _ = cloud.request("GET", f"/compute/v2.1/servers/{doc['server']['id']}",
                               token=t["token"])
    assert doc["server"]["status"] == "ERROR"
    # a US project lands on it
    us = project(cloud, "us-sched", "US")
    img = cloud.openstack("image", "create", "--file", f, "--disk-format", "raw",
                          "--container-format", "bare", "tiny3", env=us["env"], check=False)
    # images live in this (EU) region: a US-only project cannot store one here, so it boots
    # an EU project's public image instead
    assert img.returncode != 0
    st, _, r = cloud.request("PATCH", f"/image/v2/images/{doc['server']['image']['id']}",
                             raw=b'[{"op": "replace", "path": "/visibility", "value": "public"}]',
                             headers={"Content-Type":
                                      "application/openstack-images-v2.1-json-patch"},
                             token=cloud.token())
    assert st == 200, r.body
    body["server"]["imageRef"] = doc["server"]["image"]["id"]
    st, doc, r = cloud.request("POST", "/compute/v2.1/servers", body, token=us["token"])
    assert st == 202, r.body
    st, doc, _ = cloud.request("GET", f"/compute/v2.1/servers/{doc['server']['id']}",
                               token=cloud.token())
    assert doc["server"]["status"] == "BUILD"
    assert doc["server"]["OS-EXT-SRV-ATTR:host"] == "us-host"
    assert doc["server"]["OS-EXT-AZ:availability_zone"] == "us-east-1a"
