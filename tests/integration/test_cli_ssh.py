# SPDX-License-Identifier: Apache-2.0
"""`sov ssh`: logs in to a real sov-api (OS_* variables, or the admin of a data directory),
finds a server by exact name (the Nova name filter is a regular expression) or by id, and hands
over to the ssh client at the server's forwarded SSH port; the exit status is ssh's.

One tiny guest (scripts/guest-image) boots for the whole file; the other servers have an image
whose data is gone, so they end in ERROR without a QEMU process and without an SSH address."""
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import BIN, clean_env
from test_compute_agent import start_compute  # noqa: F401 (a fixture)
from test_compute_agent import NOVA, create, host_doc, make_image, show, wait_for, wait_status

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "guest-image"
# Regular-expression characters in the guest's name: only an exact match may select it. The
# guest's hostname is the name made DNS-safe.
GUEST, HOSTNAME = "g.1+x", "g-1-x"


def sov_ssh(env, *args, timeout=60):
    return subprocess.run([str(BIN / "sov"), "ssh", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def fails(p, message):
    """Exit status 1 with one line on stderr that says why."""
    assert p.returncode == 1 and message in p.stderr and p.stderr.count("\n") == 1, p


def test_sov_ssh_by_name_and_id_with_exit_status_and_lookup_errors(start_api, start_compute,
                                                                    tmp_path):
    if not SCRIPT.exists() or not shutil.which("ssh"):
        pytest.skip("needs scripts/guest-image and an ssh client")
    assert (BIN / "sov").exists(), "bin/sov is not built (make)"
    api = start_api()
    start_compute(api)
    wait_for(lambda: host_doc(api, "cn1"), "host cn1")
    token = api.token()
    env = {**api.env(), "HOME": str(tmp_path)}  # no ~/.ssh/config of the caller's

    disk = tmp_path / "sov-tiny.raw"
    subprocess.run([str(SCRIPT), str(disk)], check=True, capture_output=True, timeout=300)
    image = api.openstack("image", "create", "--file", disk, "--disk-format", "raw",
                          "--container-format", "bare", "sov-tiny")["id"]
    st, doc, r = api.request("POST", NOVA + "/os-keypairs", {"keypair": {"name": "k1"}}, token)
    assert st == 200, r.body
    key = tmp_path / "k1.pem"
    key.write_text(doc["keypair"]["private_key"])
    key.chmod(0o600)

    # Servers that never boot: a decoy the guest's name matches as a regular expression, and
    # two servers sharing a name.
    dead = make_image(api, token)
    (api.data_dir / "images" / dead).unlink()
    decoy = create(api, token, dead, name="gz1xx")
    twins = [create(api, token, dead, name="twin") for _ in range(2)]
    sid = create(api, token, image, name=GUEST, key_name="k1")
    for s in (decoy, *twins):
        wait_status(api, token, s, "ERROR")
    wait_status(api, token, sid, "ACTIVE", timeout=90)
    assert show(api, token, sid)["sov:ssh"].startswith("127.0.0.1:")

    # The guest boots under TCG: ssh fails (255) until dropbear answers.
    first = wait_for(lambda: (p := sov_ssh(env, "-i", key, GUEST, "hostname")).returncode == 0
                     and p, "sov ssh into the guest", timeout=180)
    assert first.stdout.strip() == HOSTNAME
    # By id; several words arrive as the same argv, and the exit status comes back as sov's.
    p = sov_ssh(env, "-i", key, sid, "sh", "-c", "echo 'o u t'; echo err >&2; exit 7")
    assert (p.returncode, p.stdout.strip(), p.stderr.strip()) == (7, "o u t", "err")
    # one word goes to the remote shell as is
    p = sov_ssh(env, "-i", key, GUEST, "echo a b c | wc -w")
    assert (p.returncode, p.stdout.strip()) == (0, "3"), p

    p = sov_ssh(env, "-i", key, "no-such-server", "true")
    fails(p, "no server named no-such-server")
    p = sov_ssh(env, "-i", key, "g.1", "true")  # a prefix of the name is no match
    fails(p, "no server named g.1")
    p = sov_ssh(env, "twin", "true")
    fails(p, "2 servers are named twin; use the id")
    p = sov_ssh(env, twins[0], "true")
    fails(p, "has no SSH address yet (status ERROR)")
    p = sov_ssh(env, "-i", key, "gz1xx", "true")
    fails(p, "has no SSH address yet")

    # usage errors
    assert sov_ssh(env).returncode == 2
    assert sov_ssh(env, "-i").returncode == 2
    assert sov_ssh(env, "--bogus", GUEST).returncode == 2

    # Wrong password: the login fails before any lookup.
    p = sov_ssh({**env, "OS_PASSWORD": "wrong"}, GUEST, "true")
    fails(p, "login as admin")

    # Without OS_* variables: the admin of the cloud in --data-dir (credentials.ini and the
    # listen address of etc/api.ini, as `sov up` writes them).
    data = tmp_path / "cloud"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "api.ini").write_text(f"[server]\nlisten = 127.0.0.1:{api.port}\n")
    creds = data / "credentials.ini"
    creds.write_text(f"[admin]\nusername = admin\npassword = {api.admin_password}\n"
                     "[s3]\naccess_key_id = SOVTESTTESTTESTTEST1\n"
                     "secret_access_key = secretsecretsecretsecretsecretsecret1234\n"
                     "region = eu-central-1\n")
    creds.chmod(0o600)
    plain = {**clean_env(), "HOME": str(tmp_path)}
    p = sov_ssh(plain, "--data-dir", data, "-i", key, GUEST, "hostname")
    assert (p.returncode, p.stdout.strip()) == (0, HOSTNAME), p
    p = sov_ssh(plain, "--data-dir", tmp_path / "nothing", GUEST, "true")
    fails(p, "no cloud in")
    assert not (tmp_path / "nothing").exists()

    for s in (sid, decoy, *twins):
        st, _, r = api.request("DELETE", f"{NOVA}/servers/{s}", token=token)
        assert st == 204, r.body
    wait_for(lambda: show(api, token, sid) is None, "the guest to be gone")
