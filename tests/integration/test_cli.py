# SPDX-License-Identifier: Apache-2.0
"""`sov`, the operator CLI: up, status, env and down on a temporary data directory, running the
real sov-demo from ./bin and talking to it over HTTP like an operator would.

Port 8480 (the demo default) may be held by another cloud on this machine, so no test assumes
it: each compares what `sov status` reports with the port written into etc/demo.ini."""
import configparser
import json
import os
import re
import shlex
import stat
import subprocess
import urllib.request

import pytest

from conftest import BIN, clean_env

SOV = BIN / "sov"
ENV_VARS = ["OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME",
            "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_REGION_NAME",
            "OS_IDENTITY_API_VERSION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION", "SOV_S3_ENDPOINT", "AWS_ENDPOINT_URL", "SOV_DATA_DIR"]


def sov(*args, check=True):
    p = subprocess.run([str(SOV), *map(str, args)], capture_output=True, text=True,
                       env=clean_env(), timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"sov {' '.join(map(str, args))} exited {p.returncode}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@pytest.fixture
def cloud(tmp_path):
    """Returns a function giving fresh data directories; every one is taken down at the end."""
    dirs = []

    def make(name="var"):
        d = tmp_path / name
        dirs.append(d)
        return d

    yield make
    for d in dirs:
        sov("down", "--data-dir", d, check=False)
        # sov-net's namespace of this cloud (the VPC datapath outlives `sov down`, as guests do)
        ini = d / "etc" / "net.ini"
        ns = [l.split("=", 1)[1].strip() for l in (ini.read_text().splitlines()
                                                   if ini.exists() else [])
              if l.startswith("netns")]
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def status(d):
    out = json.loads(sov("status", "--json", "--data-dir", d).stdout)
    assert isinstance(out, list)
    return {e["name"]: e for e in out}


def config_port(d):
    ini = configparser.ConfigParser()
    ini.read(d / "etc" / "demo.ini")
    return int(ini["server"]["listen"].rsplit(":", 1)[1])


def credentials(d):
    ini = configparser.ConfigParser()
    ini.read(d / "credentials.ini")
    return ini


def http_get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_up_starts_a_healthy_demo(cloud):
    d = cloud()
    out = sov("up", "--data-dir", d).stdout
    demo = status(d)["demo"]
    port = config_port(d)
    assert set(demo) == {"name", "pid", "state", "endpoint", "metrics_url"}
    assert demo["state"] == "running"
    assert isinstance(demo["pid"], int) and alive(demo["pid"])
    assert demo["endpoint"] == f"http://127.0.0.1:{port}"
    assert demo["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    assert (d / "run" / "demo.pid").read_text().strip() == str(demo["pid"])
    assert (d / "run" / "demo.port").read_text().strip() == str(port)
    assert b"sov-demo" in open(f"/proc/{demo['pid']}/cmdline", "rb").read()

    assert http_get(demo["endpoint"] + "/healthz") == (200, "ok\n")
    code, metrics = http_get(demo["metrics_url"])
    assert code == 200 and "sov_http_requests_total" in metrics

    # The summary names the endpoint, the credentials and a first command to try.
    creds = credentials(d)
    assert demo["endpoint"] in out and demo["metrics_url"] in out
    assert creds["admin"]["password"] in out and creds["s3"]["access_key_id"] in out
    assert f"curl {demo['endpoint']}/healthz" in out and "env" in out
    assert "starting sov-demo" in (d / "log" / "demo.log").read_text()


def test_up_twice_is_idempotent(cloud):
    d = cloud()
    sov("up", "--data-dir", d)
    first = status(d)["demo"]
    again = sov("up", "--data-dir", d)
    assert "already running" in again.stdout
    assert status(d)["demo"] == first


def test_config_and_credentials_are_kept(cloud):
    d = cloud()
    sov("up", "--data-dir", d)
    sov("down", "--data-dir", d)
    cfg = d / "etc" / "demo.ini"
    edited = cfg.read_text() + "workers = 1\n"
    cfg.write_text(edited)
    creds = (d / "credentials.ini").read_text()
    sov("up", "--data-dir", d)
    assert cfg.read_text() == edited
    assert (d / "credentials.ini").read_text() == creds
    assert status(d)["demo"]["state"] == "running"


def test_env_exports_credentials_and_endpoints(cloud):
    d = cloud()
    out = sov("env", "--data-dir", d).stdout  # before any `up`: creates the credentials
    mode = stat.S_IMODE(os.stat(d / "credentials.ini").st_mode)
    assert mode == 0o600
    exports = dict(re.findall(r"^export ([A-Z0-9_]+)='([^']*)'$", out, re.M))
    assert set(ENV_VARS) <= set(exports)
    creds = credentials(d)
    assert exports["OS_AUTH_URL"] == "http://127.0.0.1:8400/identity/v3"
    assert exports["OS_USERNAME"] == "admin" == creds["admin"]["username"]
    assert exports["OS_PASSWORD"] == creds["admin"]["password"]
    assert len(exports["OS_PASSWORD"]) >= 16
    assert exports["OS_PROJECT_NAME"] == "admin"
    assert exports["OS_USER_DOMAIN_NAME"] == exports["OS_PROJECT_DOMAIN_NAME"] == "Default"
    assert exports["OS_REGION_NAME"] == exports["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert exports["OS_IDENTITY_API_VERSION"] == "3"
    assert re.fullmatch(r"SOV[A-Z0-9]{17}", exports["AWS_ACCESS_KEY_ID"])
    assert exports["AWS_ACCESS_KEY_ID"] == creds["s3"]["access_key_id"]
    assert len(exports["AWS_SECRET_ACCESS_KEY"]) == 40
    assert exports["AWS_SECRET_ACCESS_KEY"] == creds["s3"]["secret_access_key"]
    assert exports["SOV_S3_ENDPOINT"] == exports["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8433"
    assert exports["SOV_DATA_DIR"] == str(d.resolve())

    # `up` keeps the credentials `env` made, and the exports work in a real shell.
    sov("up", "--data-dir", d)
    assert credentials(d)["s3"]["access_key_id"] == exports["AWS_ACCESS_KEY_ID"]
    script = (f'eval "$({shlex.quote(str(SOV))} env --data-dir {shlex.quote(str(d))})"; '
              'echo "$AWS_ACCESS_KEY_ID $OS_PASSWORD $SOV_DATA_DIR"')
    sh = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=clean_env(),
                        timeout=60, check=True)
    assert sh.stdout.split() == [exports["AWS_ACCESS_KEY_ID"], exports["OS_PASSWORD"],
                                 str(d.resolve())]


def test_down_stops_and_is_idempotent(cloud):
    d = cloud()
    sov("up", "--data-dir", d)
    pid = status(d)["demo"]["pid"]
    sov("down", "--data-dir", d)
    assert not alive(pid)
    assert status(d)["demo"] == {"name": "demo", "pid": None, "state": "stopped",
                                 "endpoint": None, "metrics_url": None}
    assert not (d / "run" / "demo.pid").exists()
    assert not (d / "run" / "demo.port").exists()
    again = sov("down", "--data-dir", d)
    assert "nothing is running" in again.stdout


def test_stale_pid_file_never_kills_a_stranger(cloud):
    d = cloud()
    sov("up", "--data-dir", d)
    sov("down", "--data-dir", d)
    # A live process that is not sov-demo, as after a reboot recycled the pid.
    stranger = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for pid in (os.getpid(), stranger.pid):
            (d / "run" / "demo.pid").write_text(f"{pid}\n")
            demo = status(d)["demo"]
            assert demo["state"] == "stopped" and demo["pid"] is None
            sov("down", "--data-dir", d)
            assert stranger.poll() is None
            assert not (d / "run" / "demo.pid").exists()
        # A stale pid file does not keep `up` from starting the real daemon either.
        (d / "run" / "demo.pid").write_text(f"{stranger.pid}\n")
        sov("up", "--data-dir", d)
        demo = status(d)["demo"]
        assert demo["state"] == "running" and demo["pid"] != stranger.pid
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_two_clouds_side_by_side(cloud):
    a, b = cloud("a"), cloud("b")
    sov("up", "--data-dir", a)
    sov("up", "--data-dir", b)
    sa, sb = status(a)["demo"], status(b)["demo"]
    assert sa["state"] == sb["state"] == "running"
    assert sa["pid"] != sb["pid"]
    assert config_port(a) != config_port(b)
    assert sa["endpoint"] == f"http://127.0.0.1:{config_port(a)}"
    assert sb["endpoint"] == f"http://127.0.0.1:{config_port(b)}"
    for s in (sa, sb):
        assert http_get(s["endpoint"] + "/healthz") == (200, "ok\n")
    sov("down", "--data-dir", a)
    assert not alive(sa["pid"]) and alive(sb["pid"])
    assert status(b)["demo"]["state"] == "running"


def test_failing_daemon_fails_up(cloud):
    d = cloud()
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "demo.ini").write_text("[server]\nbogus=1\n")
    p = sov("up", "--data-dir", d, check=False)
    assert p.returncode != 0
    assert "demo" in p.stderr and "sov-demo" in p.stderr
    assert "bogus" in p.stderr  # the tail of the daemon's log says why
    assert status(d)["demo"]["state"] == "stopped"


def test_status_of_an_empty_data_dir(tmp_path):
    d = tmp_path / "none"
    assert status(d)["demo"]["state"] == "stopped"
    assert not d.exists()
    text = sov("status", "--data-dir", d).stdout
    assert re.search(r"^demo\s+stopped\b", text, re.M)
    assert "nothing is running" in sov("down", "--data-dir", d).stdout


@pytest.mark.parametrize("args", [[], ["help"], ["--help"], ["bogus"], ["up", "extra"],
                                  ["env", "--json"], ["status", "--data-dir"], ["s3"],
                                  ["s3", "bogus"]])
def test_usage(args):
    p = sov(*args, check=False)
    assert p.returncode == 2
    assert "usage: sov" in p.stderr and p.stdout == ""


def test_up_serves_s3_to_the_aws_cli_with_sov_env(cloud, tmp_path):
    """The example `sov up` prints works: `sov env` gives the aws CLI everything it needs."""
    d = cloud()
    out = sov("up", "--data-dir", d).stdout
    assert 's3 mb s3://first-bucket' in out
    st = status(d)
    assert st["s3"]["state"] == "running"
    env = clean_env()
    env["HOME"] = str(tmp_path)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "aws-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    for line in sov("env", "--data-dir", d).stdout.splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = shlex.split(v)[0]
    assert env["SOV_S3_ENDPOINT"] == st["s3"]["endpoint"]
    src = tmp_path / "hello.txt"
    src.write_bytes(b"sovereign bytes\n")

    def aws(*args):
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", env["SOV_S3_ENDPOINT"], *args],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    aws("s3", "mb", "s3://first-bucket")
    aws("s3", "cp", str(src), "s3://first-bucket/")
    assert "hello.txt" in aws("s3", "ls", "s3://first-bucket")
    aws("s3", "cp", "s3://first-bucket/hello.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == b"sovereign bytes\n"
    # The object survives a restart of the whole cloud.
    sov("down", "--data-dir", d)
    sov("up", "--data-dir", d)
    assert "hello.txt" in aws("s3", "ls", "s3://first-bucket")
    # The generated config holds the secret key: only its owner reads it.
    assert stat.S_IMODE(os.stat(d / "etc" / "s3.ini").st_mode) == 0o600
    # The operator's heal reaches this cloud's sov-s3 (no drives: nothing erasure-coded)
    healed = json.loads(sov("s3", "heal", "--data-dir", d).stdout)
    assert healed["lost"] == 0 and healed["segments"] == 0 and healed["error"] is None
    assert stat.S_IMODE(os.stat(d / "s3" / "admin.token").st_mode) == 0o600
    # a new master key for server-side encryption; the cloud's objects stay readable
    kid = json.loads(sov("s3", "rotate-key", "--data-dir", d).stdout)["kid"]
    assert re.fullmatch(r"[0-9a-f]{16}", kid)
    assert (d / "s3" / "keys" / "current").read_text().strip() == kid
    aws("s3", "cp", "s3://first-bucket/hello.txt", str(tmp_path / "again.txt"))
    assert (tmp_path / "again.txt").read_bytes() == b"sovereign bytes\n"
