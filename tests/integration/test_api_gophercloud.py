# SPDX-License-Identifier: Apache-2.0
"""sov-api through gophercloud, the Go SDK under Terraform's OpenStack provider: the program in
tests/gophercloud is built once per session, offline, from Debian's Go packages (GOPATH mode),
and each step (token, projects, flavors, keypair, image, network, volume, server) runs as the
bootstrap admin and as a member of another project. A step whose API part the daemon does not
serve yet (its list route answers 404) is skipped with that reason."""
import ipaddress
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, clean_env

SRC = ROOT / "tests" / "gophercloud"
GOCODE = "/usr/share/gocode"

# The route that must answer 200 for a step to run ({project} is the token's project id).
PROBES = {
    "token": [],
    "projects": [],
    "flavors": ["/compute/v2.1/flavors"],
    "keypair": ["/compute/v2.1/os-keypairs"],
    "image": ["/image/v2/images"],
    "network": ["/network/v2.0/networks"],
    "volume": ["/volume/v3/{project}/volumes"],
    "server": ["/compute/v2.1/servers", "/compute/v2.1/flavors", "/image/v2/images"],
}
RESOURCE_STEPS = ["keypair", "image", "network", "volume", "server"]


@pytest.fixture(scope="session")
def gophercloud(tmp_path_factory):
    """Path of the built program. No network: GOPATH mode over /usr/share/gocode."""
    go = shutil.which("go", path=clean_env()["PATH"])
    if go is None:
        pytest.skip("no `go` on PATH (scripts/bootstrap installs golang-go)")
    if not os.path.isdir(f"{GOCODE}/src/github.com/gophercloud/gophercloud"):
        pytest.skip("gophercloud sources missing (golang-github-gophercloud-gophercloud-dev)")
    tmp = tmp_path_factory.mktemp("gophercloud")
    env = clean_env()
    env.update({"GO111MODULE": "off", "GOPATH": GOCODE, "GOCACHE": str(tmp / "cache"),
                "GOFLAGS": "", "GOPROXY": "off", "CGO_ENABLED": "0", "HOME": str(tmp)})
    out = tmp / "sov-gophercloud"
    p = subprocess.run([go, "build", "-o", str(out), "."], cwd=SRC, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"go build failed:\n{p.stdout}\n{p.stderr}"
    return out


def run(prog, env, *steps, expect_rc=0):
    """Runs the program; returns its JSON lines by step name (and the process)."""
    p = subprocess.run([str(prog), *steps], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == expect_rc, (p.returncode, p.stdout, p.stderr)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    return {d["step"]: d for d in lines}, lines, p


def served(api, token, project_id, step):
    """None when every route of the step answers 200, else why not."""
    for path in PROBES[step]:
        path = path.format(project=project_id)
        st, _, _ = api.request("GET", path, token=token)
        if st != 200:
            return f"GET {path} answers {st}: that API part is not there yet"
    return None


def require(api, step, token=None):
    token = token or api.token()
    st, doc, r = api.request("GET", "/identity/v3/auth/tokens", token=token,
                             headers={"X-Subject-Token": token})
    assert st == 200, r.body
    why = served(api, token, doc["token"]["project"]["id"], step)
    if why:
        pytest.skip(why)


def leftovers(api, token, project_id):
    """Resources named gc-* that a run left behind in a project (each step cleans up)."""
    found = []
    for path, key in [("/compute/v2.1/os-keypairs", "keypairs"),
                      ("/image/v2/images", "images"),
                      ("/network/v2.0/networks", "networks"),
                      ("/network/v2.0/ports", "ports"),
                      ("/volume/v3/{project}/volumes", "volumes"),
                      ("/compute/v2.1/servers", "servers")]:
        st, doc, _ = api.request("GET", path.format(project=project_id), token=token)
        if st != 200:
            continue
        for item in doc[key]:
            item = item.get("keypair", item)
            if str(item.get("name", "")).startswith("gc-"):
                found.append(f"{key}: {item['name']}")
    return found


def check_step(api, token, name, d):
    """What every step's line must say beyond ok."""
    assert d["ok"] is True, d
    if name == "flavors":
        st, doc, _ = api.request("GET", "/compute/v2.1/flavors/detail", token=token)
        assert st == 200
        names = sorted(f["name"] for f in doc["flavors"])
        assert d["flavors"] == names
        micro = next(f for f in doc["flavors"] if f["name"] == "t3.micro")
        assert d["t3.micro"] == {"id": micro["id"], "vcpus": micro["vcpus"],
                                 "ram": micro["ram"], "disk": micro["disk"]}
    elif name == "keypair":
        assert d["imported"]["type"] == "ssh-ed25519"
        assert d["generated"]["type"] == "ssh-rsa"
        for k in ("imported", "generated"):
            assert len(d[k]["fingerprint"].split(":")) == 16, d
    elif name == "image":
        assert d["status"] == "active" and d["size"] == 3000
        assert len(d["checksum"]) == 32 and int(d["checksum"], 16) >= 0
    elif name == "network":
        assert ipaddress.ip_address(d["ip"]) in ipaddress.ip_network("10.0.0.0/24")
        assert d["ports_listed"] >= 1
    elif name == "volume":
        assert d["size"] == 1
        assert d["status"] in ("creating", "available"), d
    elif name == "server":
        assert d["status"] == "ERROR"
        assert "No valid host was found" in d["fault"]


def test_identity_steps(api, gophercloud):
    p = api.make_project("gcproj")
    by_step, lines, _ = run(gophercloud, api.env(), "token", "projects")
    assert [x["step"] for x in lines] == ["token", "projects"]
    tok = by_step["token"]
    assert tok["ok"] and tok["user"] == "admin" and tok["project"] == "admin"
    assert "admin" in tok["roles"]
    assert {"identity", "compute", "image", "network", "volumev3"} <= set(tok["services"])
    assert {"admin", "gcproj"} <= set(by_step["projects"]["projects"])

    # A member's token is scoped to its own project.
    by_step, _, _ = run(gophercloud, p["env"], "token")
    assert by_step["token"]["user"] == "gcproj-user"
    assert by_step["token"]["project"] == "gcproj"
    assert "admin" not in by_step["token"]["roles"]


def test_wrong_password_fails_auth(api, gophercloud):
    by_step, lines, p = run(gophercloud, api.env(password="not-the-password"), "token",
                            expect_rc=1)
    assert len(lines) == 1 and lines[0]["step"] == "auth" and lines[0]["ok"] is False, p.stdout
    assert "401" in lines[0]["error"] or "uthentica" in lines[0]["error"], lines[0]


@pytest.mark.parametrize("step", ["flavors", *RESOURCE_STEPS])
def test_step_as_admin(api, gophercloud, step):
    token = api.token()
    require(api, step, token)
    by_step, lines, _ = run(gophercloud, api.env(), step)
    assert len(lines) == 1
    check_step(api, token, step, by_step[step])
    st, doc, _ = api.request("GET", "/identity/v3/auth/tokens", token=token,
                             headers={"X-Subject-Token": token})
    assert leftovers(api, token, doc["token"]["project"]["id"]) == []


def test_resource_steps_as_member(api, gophercloud):
    """A member of its own project runs every served resource step in one process (one
    authentication, as Terraform does); nothing of it lands in, or is left in, either project."""
    p = api.make_project("gcmember")
    steps = [s for s in RESOURCE_STEPS
             if served(api, p["token"], p["project_id"], s) is None]
    if not steps:
        pytest.skip("no resource API part is served yet")
    by_step, lines, _ = run(gophercloud, p["env"], *steps)
    assert [x["step"] for x in lines] == steps
    for s in steps:
        check_step(api, p["token"], s, by_step[s])
    assert leftovers(api, p["token"], p["project_id"]) == []
    admin = api.token()
    st, doc, _ = api.request("GET", "/identity/v3/auth/tokens", token=admin,
                             headers={"X-Subject-Token": admin})
    assert leftovers(api, admin, doc["token"]["project"]["id"]) == []
