# SPDX-License-Identifier: Apache-2.0
"""Opt-in: a full Debian image (scripts/cloud-image: debootstrap, systemd, Debian's cloud-init)
booted by sov-compute under TCG, so the NoCloud seed is proven against the real cloud-init and
not only against our tiny guest's init: the key pair's key logs in as cloud-init's default user,
the hostname is the server's name, #cloud-config write_files and runcmd ran and cloud-init
reports done. Building the image needs the Debian mirror and takes minutes, booting it under
TCG one to two more, so the test runs only when SOV_CLOUD_IMAGE names a built image
(`scripts/cloud-image /var/tmp/sov-cloud.qcow2`, then `SOV_CLOUD_IMAGE=/var/tmp/sov-cloud.qcow2
make test`)."""
import os
import pathlib
import subprocess

import pytest

from test_compute_agent import start_compute, wait_for  # noqa: F401
from test_compute_e2e import cloud, tiny_image  # noqa: F401

IMAGE = os.environ.get("SOV_CLOUD_IMAGE", "")

pytestmark = pytest.mark.skipif(not IMAGE or not pathlib.Path(IMAGE).is_file(),
                                reason="opt-in: set SOV_CLOUD_IMAGE to an image built by "
                                       "scripts/cloud-image")

USER_DATA = """#cloud-config
write_files:
  - path: /etc/sov-written
    content: written-by-cloud-init
runcmd:
  - [sh, -c, "echo runcmd-ran > /root/runcmd-marker"]
"""


def test_debian_cloud_image_configures_itself_from_the_seed(cloud, tmp_path):
    api, block, comp, image, key = cloud
    fmt = "qcow2" if IMAGE.endswith(".qcow2") else "raw"
    api.openstack("image", "create", "--file", IMAGE, "--disk-format", fmt,
                  "--container-format", "bare", "debian-cloud", timeout=600)
    ud = tmp_path / "user-data"
    ud.write_text(USER_DATA)
    sid = api.openstack("server", "create", "--image", "debian-cloud", "--flavor", "t3.small",
                        "--key-name", "k1", "--user-data", ud, "--wait", "ci-debian",
                        timeout=600)["id"]
    port = api.openstack("server", "show", sid)["sov:ssh"].rsplit(":", 1)[1]

    def ssh(cmd):
        p = subprocess.run(["ssh", "-i", str(key), "-p", port, "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
                            "debian@127.0.0.1", cmd], capture_output=True, text=True, timeout=600)
        return p.stdout if p.returncode == 0 else None

    assert wait_for(lambda: ssh("hostname"), "SSH as debian", timeout=600).strip() == "ci-debian"
    status = ssh("cloud-init status --wait --long; echo rc=$?")
    assert status and "status: done" in status and "rc=0" in status, status
    assert ssh("cat /etc/sov-written").strip() == "written-by-cloud-init"
    assert ssh("sudo -n cat /root/runcmd-marker").strip() == "runcmd-ran"
    assert "NoCloud" in ssh("sudo -n cloud-init query platform; "
                            "sudo -n cat /run/cloud-init/ds-identify.log | head -n 50")
    api.openstack("server", "delete", "--wait", sid, fmt=False, timeout=300)
    wait_for(lambda: not (comp.state_dir / "servers" / sid).exists(), "the server dir to go")
