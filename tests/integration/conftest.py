# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: real sovcloud daemons from ./bin started on loopback in a temp directory."""
import base64
import configparser
import datetime
import hashlib
import hmac
import http.client
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# SOV_BIN_DIR points the tests at binaries built elsewhere (default: ./bin, what `make` installs).
BIN = pathlib.Path(os.environ.get("SOV_BIN_DIR") or ROOT / "bin")


def clean_env():
    """Child processes get a minimal environment (no pyenv shims, no stray client config)."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def wait_for_file(path, proc, timeout=10.0):
    """Waits until a daemon wrote its port file; fails early if the daemon died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        time.sleep(0.01)
    raise TimeoutError(f"{path} not written")


class Daemon:
    def __init__(self, proc, port, tmp, log):
        self.proc, self.port, self.tmp, self.log = proc, port, tmp, log

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        return self.proc.returncode


@pytest.fixture
def start_demo(tmp_path):
    """Starts sov-demo with an optional INI text; returns a Daemon. Stops all at teardown."""
    started = []

    def start(ini="", workers=1):
        n = len(started)
        cfg = tmp_path / f"demo{n}.ini"
        cfg.write_text(f"[server]\nworkers = {workers}\nlisten = 127.0.0.1:0\n" + ini)
        port_file = tmp_path / f"demo{n}.port"
        log = tmp_path / f"demo{n}.log"
        proc = subprocess.Popen([str(BIN / "sov-demo"), "--config", str(cfg),
                                 "--port-file", str(port_file)],
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=clean_env())
        d = Daemon(proc, int(wait_for_file(port_file, proc)), tmp_path, log)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


# ---------------------------------------------------------------------------------------------
# sov-s3: the daemon, its accounts, and the helpers every tests/integration/test_s3_*.py shares.
# Clients talk to 127.0.0.1 only. Tests that need raw control over a request (chosen dates,
# tampered signatures, hostile paths) sign it themselves with sigv4_sign() below, an independent
# implementation checked against real requests by test_s3_auth.py.

S3_REGION = "eu-central-1"
S3_REGIONS = ("eu-central-1", "eu-west-3")
S3_DOMAIN = "s3.localhost"
S3_ACCOUNT = ("admin", "SOVTESTKEY0000000001", "secretsecretsecretsecretsecretsecret0001")
S3_ACCOUNT2 = ("other", "SOVTESTKEY0000000002", "secretsecretsecretsecretsecretsecret0002")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes (deselect with -m 'not slow')")


class ManagedDaemon:
    """A daemon process of ./bin on a data dir that outlives it: start() writes a marker into the
    log and waits for the port file; stop(), kill() and restart() keep the data dir, so a
    restarted daemon must serve what the previous one acknowledged."""
    binary = None

    def __init__(self, tmp, name, cfg):
        self.tmp, self.name, self.cfg = tmp, name, cfg
        self.data_dir = tmp / f"{name}-data"
        self.port_file = tmp / f"{name}.port"
        self.log = tmp / f"{name}.log"
        self.proc, self.port, self.starts = None, None, 0
        self.expect_exit = False  # set by stop()/kill(); any other exit is a daemon failure

    def start(self):
        self.expect_exit = False
        self.port_file.unlink(missing_ok=True)
        self.starts += 1
        with open(self.log, "a") as logf:
            logf.write(f"--- start {self.starts}\n")
            logf.flush()
            self.proc = subprocess.Popen([str(BIN / self.binary), "--config", str(self.cfg),
                                          "--port-file", str(self.port_file)],
                                         stdout=subprocess.DEVNULL, stderr=logf,
                                         env=clean_env())
        self.port = int(wait_for_file(self.port_file, self.proc))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM; returns the exit status (0 for a clean stop)."""
        self.expect_exit = True
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.proc.returncode

    def kill(self):
        """SIGKILL: nothing is flushed, nothing gets to clean up."""
        self.expect_exit = True
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=30)

    def restart(self):
        if self.alive():
            self.stop()
        return self.start()

    def log_tail(self, n=30):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


class S3Daemon(ManagedDaemon):
    """sov-s3 (see ManagedDaemon). The port is picked anew at each start; clients made before a
    restart point at the old port."""
    binary = "sov-s3"

    def __init__(self, tmp, name, cfg):
        super().__init__(tmp, name, cfg)
        self.region = S3_REGION
        self.account, self.access_key, self.secret_key = S3_ACCOUNT
        self.scheme, self.cafile = "http", None

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def client(self, access_key=None, secret_key=None, endpoint=None, addressing="path",
               **config):
        """A boto3 S3 client for this daemon (SigV4, path style, no retries so that every
        error the test sees is the daemon's first answer; TLS verified against the test CA)."""
        import boto3
        from botocore.config import Config
        cfg = dict(signature_version="s3v4", s3={"addressing_style": addressing},
                   retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=30)
        cfg.update(config)
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint or self.url, region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key, config=Config(**cfg),
            verify=self.cafile if self.cafile else None)

    def client2(self, **kw):
        """A client of the second account (start_s3(second_account=True))."""
        return self.client(access_key=S3_ACCOUNT2[1], secret_key=S3_ACCOUNT2[2], **kw)

    def request(self, method, path, query="", headers=None, body=b"", sign=True, **signkw):
        """One raw HTTP request on a fresh connection, SigV4-signed unless sign=False. path is
        sent exactly as given (already percent-encoded); query is a raw query string."""
        headers = dict(headers or {})
        if sign:
            headers = sigv4_sign(method, self.host, path, query, headers, body,
                                 signkw.pop("access_key", self.access_key),
                                 signkw.pop("secret_key", self.secret_key),
                                 region=signkw.pop("region", self.region), **signkw)
        return raw_http(self.port, method, path + ("?" + query if query else ""), headers, body)


class RawResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def xml(self):
        return ET.fromstring(self.body)

    @property
    def code(self):
        """The S3 error Code of an error body, None when there is none."""
        if not self.body.lstrip().startswith(b"<"):
            return None
        el = self.xml().find("Code")
        return None if el is None else el.text

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def raw_http(port, method, target, headers, body=b"", timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host="host" in {k.lower() for k in headers},
                        skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                        for k in headers):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        r = conn.getresponse()
        return RawResponse(r.status, r.headers, r.read())
    finally:
        conn.close()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_key(secret, datestamp, region, service="s3"):
    k = _hmac(("AWS4" + secret).encode(), datestamp)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _canonical_query(query):
    pairs = []
    for part in query.split("&") if query else []:
        k, _, v = part.partition("=")
        enc = lambda s: urllib.parse.quote(urllib.parse.unquote(s), safe="-_.~")  # noqa: E731
        pairs.append((enc(k), enc(v)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sigv4_sign(method, host, path, query, headers, body, access_key, secret_key,
               region=S3_REGION, when=None, payload_hash=None, signed_extra=()):
    """Returns headers with Host, X-Amz-Date, X-Amz-Content-SHA256 and Authorization added:
    AWS SigV4 written from the spec, with a chosen clock (when) and payload hash."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    if payload_hash is None:
        payload_hash = hashlib.sha256(body or b"").hexdigest()
    out = dict(headers)
    out.setdefault("Host", host)
    out["X-Amz-Date"] = amz_date
    out["X-Amz-Content-SHA256"] = payload_hash
    lower = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
    names = sorted(n for n in lower if n in ("host", "content-md5", "content-type")
                   or n.startswith("x-amz-") or n in signed_extra)
    creq = "\n".join([method, path, _canonical_query(query),
                      "".join(f"{n}:{lower[n]}\n" for n in names), ";".join(names),
                      payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(sigv4_key(secret_key, amz_date[:8], region), sts.encode(),
                   hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return out


def sigv4_presign(method, host, path, access_key, secret_key, when, expires,
                  region=S3_REGION, scheme="http"):
    """A presigned URL (query-string auth) issued at a chosen time."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    q = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access_key}/{scope}",
         "X-Amz-Date": amz_date, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": "host"}
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='-_.~')}" for k, v in q.items())
    creq = "\n".join([method, path, _canonical_query(query), f"host:{host}\n", "host",
                      "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(sigv4_key(secret_key, amz_date[:8], region), sts.encode(),
                   hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{path}?{query}&X-Amz-Signature={sig}"


def s3_error(excinfo):
    """(Code, HTTP status) of a botocore ClientError caught by pytest.raises."""
    resp = excinfo.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def etag_of(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def multipart_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def list_all_keys(client, bucket, **kw):
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kw):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def aws_cli_env(d, tmp, access_key=None, secret_key=None):
    """Environment for /usr/bin/aws: private config and credentials files, nothing inherited.
    awscli 2.9 ignores AWS_ENDPOINT_URL, so every call passes --endpoint-url."""
    home = tmp / "aws-home"
    home.mkdir(exist_ok=True)
    (home / "credentials").write_text(
        f"[default]\naws_access_key_id = {access_key or d.access_key}\n"
        f"aws_secret_access_key = {secret_key or d.secret_key}\n")
    (home / "config").write_text(f"[default]\nregion = {d.region}\noutput = json\n")
    env = clean_env()
    env.update(HOME=str(home), AWS_CONFIG_FILE=str(home / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
    return env


def s3cmd_config(d, tmp):
    """A private s3cmd config file: path-style requests to the daemon, SigV4, plain HTTP."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["default"] = {"access_key": d.access_key, "secret_key": d.secret_key,
                      "host_base": d.host, "host_bucket": d.host, "use_https": "False",
                      "signature_v2": "False", "bucket_location": d.region,
                      "check_ssl_certificate": "False", "guess_mime_type": "True",
                      "progress_meter": "False", "multipart_chunk_size_mb": "5"}
    path = tmp / "s3cfg"
    with open(path, "w") as f:
        cfg.write(f)
    return path


@pytest.fixture
def start_s3(tmp_path):
    """Starts sov-s3 on a fresh data dir: start_s3(ini_extra="", workers=1, fsync=True,
    second_account=False, tls=False) -> S3Daemon. ini_extra lands in [s3]; tls=True makes a
    self-signed certificate for 127.0.0.1 and serves https. Every daemon still running at
    teardown is killed."""
    started = []

    def start(ini_extra="", workers=1, fsync=True, second_account=False, tls=False):
        assert (BIN / "sov-s3").exists(), "bin/sov-s3 is not built (make)"
        name = f"s3-{len(started)}"
        cfg = tmp_path / f"{name}.ini"
        d = S3Daemon(tmp_path, name, cfg)
        d.data_dir.mkdir()
        keys = ""
        if second_account:
            kf = tmp_path / f"{name}.keys"
            kf.write_text(" ".join(S3_ACCOUNT2) + "\n")
            kf.chmod(0o600)
            keys = f"keys_file = {kf}\n"
        server_tls = ""
        if tls:
            key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                            str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            server_tls = f"tls_cert = {cert}\ntls_key = {key}\n"
            d.scheme, d.cafile = "https", str(cert)
        cfg.write_text(
            f"[server]\nlisten = 127.0.0.1:0\nworkers = {workers}\n{server_tls}"
            f"[s3]\ndata_dir = {d.data_dir}\nregion = {S3_REGION}\n"
            f"regions = {','.join(S3_REGIONS)}\naccount = {S3_ACCOUNT[0]}\n"
            f"access_key_id = {S3_ACCOUNT[1]}\nsecret_access_key = {S3_ACCOUNT[2]}\n"
            f"{keys}domain = {S3_DOMAIN}\nfsync = {'true' if fsync else 'false'}\n" + ini_extra)
        cfg.chmod(0o600)
        started.append(d)
        return d.start()

    yield start
    died = []
    for d in started:
        if d.alive():
            d.proc.kill()
            d.proc.wait()
        elif d.proc is not None and not d.expect_exit:
            died.append(f"{d.name} exited by itself with {d.proc.returncode}; log tail:\n"
                        + "\n".join(d.log.read_text(errors="replace").splitlines()[-30:]))
    if died:
        pytest.fail("\n".join(died))


@pytest.fixture
def s3(start_s3):
    """A running sov-s3 with the default account only."""
    return start_s3()


# ---------------------------------------------------------------------------------------------
# sov-block: the daemon and the helpers every tests/integration/test_block_*.py shares. Volumes
# are driven through the management API; data goes through real NBD clients (nbdinfo, nbdcopy,
# qemu-img, qemu-io, fio, qemu-system) or the protocol-level client in nbdwire.py.

MIB = 1024 * 1024


def run_tool(args, timeout=60, check=True, input=None, text=True):
    """Runs a client tool with a clean environment and a bounded time; returns the completed
    process (text output unless text=False). With check, a non-zero exit fails the test with
    its output."""
    try:
        p = subprocess.run([str(a) for a in args], capture_output=True, text=text,
                           timeout=timeout, env=clean_env(), input=input)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(str(a) for a in args)} hung for {timeout}s")
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(str(a) for a in args)} exited {p.returncode}:\n"
                    f"{p.stdout[-2000:]!s}\n{p.stderr[-2000:]!s}")
    return p


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"{status}: {body!r}")
        self.status, self.body = status, body


class BlockDaemon(ManagedDaemon):
    """sov-block (see ManagedDaemon): restarts keep data_dir, the master key and the socket
    path. The management and NBD TCP ports are picked anew at each start."""
    binary = "sov-block"

    def __init__(self, tmp, name, cfg, sockdir):
        super().__init__(tmp, name, cfg)
        self.master_key = tmp / f"{name}.key"
        # sun_path holds 107 bytes; pytest's tmp_path can be longer than that.
        self.socket = sockdir / f"{name}.sock"
        self.token = None

    def start(self):
        super().start()
        # The port file is written once the daemon listens; the NBD socket is bound before.
        assert self.socket.exists(), f"{self.socket} missing after start"
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # ---- management API ----

    def request(self, method, path, body=None, token=None, raw=None, headers=None):
        """One API request on a fresh connection: (status, parsed JSON or None, raw body).
        body is sent as JSON, raw as given; token defaults to the configured one (False: none)."""
        headers = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if data or method in ("POST", "PUT"):
            headers.setdefault("Content-Type", "application/json")
        r = raw_http(self.port, method, path, headers, data)
        doc = None
        if r.body and r.headers.get("Content-Type", "").startswith("application/json"):
            doc = json.loads(r.body)
        return r.status, doc, r

    def api(self, method, path, body=None, expect=200):
        """A request that must answer `expect`; returns the JSON document."""
        status, doc, r = self.request(method, path, body)
        if status != expect:
            raise ApiError(status, r.body)
        return doc

    def create_volume(self, name, size, encrypted=None):
        body = {"name": name, "size": size}
        if encrypted is not None:
            body["encrypted"] = encrypted
        return self.api("POST", "/v1/volumes", body, 201)["volume"]

    def clone(self, name, snapshot, size=None):
        body = {"name": name, "source_snapshot": snapshot}
        if size is not None:
            body["size"] = size
        return self.api("POST", "/v1/volumes", body, 201)["volume"]

    def snapshot(self, volume, name):
        return self.api("POST", f"/v1/volumes/{volume}/snapshots", {"name": name}, 201)["snapshot"]

    def volume(self, name):
        return self.api("GET", f"/v1/volumes/{name}")["volume"]

    def volumes(self):
        return {v["name"]: v for v in self.api("GET", "/v1/volumes")["volumes"]}

    def resize(self, name, size):
        return self.api("POST", f"/v1/volumes/{name}/resize", {"size": size})["volume"]

    def delete(self, name):
        self.api("DELETE", f"/v1/volumes/{name}", expect=204)

    def grant(self, volume, host=None, token=False):
        body = {"token": True} if token else {"host": host or "127.0.0.1"}
        return self.api("POST", f"/v1/volumes/{volume}/grants", body, 201)["grant"]

    def grants(self):
        return self.api("GET", "/v1/grants")["grants"]

    def revoke(self, grant_id):
        self.api("DELETE", f"/v1/grants/{grant_id}", expect=204)

    def metrics(self):
        """Prometheus samples: {'name{labels}': value}."""
        status, _, r = self.request("GET", "/metrics")
        assert status == 200, r
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    # ---- NBD addresses ----

    def uri(self, export):
        """nbd+unix URI of an export (Unix clients may open every export)."""
        return f"nbd+unix:///{export}?socket={self.socket}"

    @property
    def nbd_port(self):
        """The NBD TCP port of the running daemon, from a volume's uri_tcp (the API's only
        statement of it); creates and drops a probe volume when none exists."""
        vols = list(self.volumes().values())
        if vols:
            return int(urllib.parse.urlsplit(vols[0]["uri_tcp"]).port)
        v = self.create_volume("port-probe", 512)
        self.delete("port-probe")
        return int(urllib.parse.urlsplit(v["uri_tcp"]).port)

    def tcp_uri(self, export):
        return f"nbd://127.0.0.1:{self.nbd_port}/{export}"

    def data_files(self):
        """Every regular file under data_dir."""
        return sorted(p for p in self.data_dir.rglob("*") if p.is_file())

    def du(self):
        """Bytes the data dir really occupies on disk (allocated blocks, as du counts them)."""
        return sum(p.stat().st_blocks * 512 for p in self.data_files())


@pytest.fixture
def start_block(tmp_path):
    """Starts sov-block on a fresh data dir: start_block(token=None, fsync=True, master_key=True,
    tcp=True, unix_open=None, ini_extra="") -> BlockDaemon. ini_extra is appended as is (it may
    open sections). Every daemon still running at teardown is killed; one that exited by itself
    fails the test with its log tail."""
    started = []
    sockdir = pathlib.Path(tempfile.mkdtemp(prefix="sovblk-", dir="/tmp"))

    def start(token=None, fsync=True, master_key=True, tcp=True, unix_open=None, ini_extra=""):
        assert (BIN / "sov-block").exists(), "bin/sov-block is not built (make)"
        name = f"block-{len(started)}"
        cfg = tmp_path / f"{name}.ini"
        d = BlockDaemon(tmp_path, name, cfg, sockdir)
        d.data_dir.mkdir()
        d.token = token
        extra_nbd = "" if unix_open is None else f"unix_open = {'true' if unix_open else 'false'}\n"
        cfg.write_text(
            "[server]\nlisten = 127.0.0.1:0\n"
            "[log]\nlevel = info\n"
            f"[block]\ndata_dir = {d.data_dir}\nfsync = {'true' if fsync else 'false'}\n"
            + (f"master_key_file = {d.master_key}\n" if master_key else "")
            + f"[nbd]\nlisten = {'127.0.0.1:0' if tcp else ''}\nsocket = {d.socket}\n{extra_nbd}"
            + f"[api]\ntoken = {token or ''}\n" + ini_extra)
        cfg.chmod(0o600)
        started.append(d)
        return d.start()

    yield start
    died = []
    for d in started:
        if d.alive():
            d.proc.kill()
            d.proc.wait()
        elif d.proc is not None and not d.expect_exit:
            died.append(f"{d.name} exited by itself with {d.proc.returncode}; log tail:\n"
                        + d.log_tail())
    shutil.rmtree(sockdir, ignore_errors=True)
    if died:
        pytest.fail("\n".join(died))


@pytest.fixture
def block(start_block):
    """A running sov-block with a master key, the Unix socket and TCP, no API token."""
    return start_block()


def qemu_io(uri, *cmds, read_only=False, check=True, timeout=120):
    """qemu-io on an NBD URI with each command as one -c; fails the test on a non-zero exit
    (qemu-io exits 1 when a command fails or a read -P finds another pattern)."""
    args = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for c in cmds:
        args += ["-c", c]
    return run_tool(args + [uri], timeout=timeout, check=check)


def nbd_map(uri):
    """nbdinfo --map: [(offset, length, type)] with type 0 data, 3 hole+zero (base:allocation)."""
    out = run_tool(["nbdinfo", "--map", "--json", uri]).stdout
    return [(e["offset"], e["length"], e["type"]) for e in json.loads(out)]


def nbd_sha256(uri, tmp, name="export.raw"):
    """SHA-256 of a whole export, copied out with nbdcopy."""
    path = tmp / name
    run_tool(["nbdcopy", uri, str(path)])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.unlink()
    return digest


# ---- sov-api (the control plane) ----

OPENSTACK = "/usr/bin/openstack"


class ApiDaemon(ManagedDaemon):
    """sov-api (see ManagedDaemon) with the bootstrap admin (password self.admin_password,
    project 'admin', domain 'Default'). Restarts keep the state database and the audit log."""
    binary = "sov-api"

    def __init__(self, tmp, name, cfg):
        super().__init__(tmp, name, cfg)
        self.admin_password = "admin-" + os.urandom(6).hex()
        self.agent_token = "agent-" + os.urandom(8).hex()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self):
        return f"{self.url}/identity/v3"

    def env(self, user="admin", password=None, project="admin", domain="Default"):
        """Environment for the openstack CLI (and other keystoneauth clients) as that user."""
        e = clean_env()
        e.update({
            "OS_AUTH_URL": self.auth_url, "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user, "OS_PASSWORD": password or self.admin_password,
            "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": domain,
            "OS_PROJECT_DOMAIN_NAME": domain, "OS_REGION_NAME": "eu-central-1",
            "OS_INTERFACE": "public",
        })
        return e

    def openstack(self, *args, env=None, check=True, fmt=True, timeout=120, input=None):
        """Runs `openstack ARGS` (with `-f json` when fmt): the parsed output, or for
        check=False the CompletedProcess."""
        cmd = [OPENSTACK, *map(str, args)]
        if fmt:
            cmd += ["-f", "json"]
        p = subprocess.run(cmd, env=env or self.env(), capture_output=True, text=True,
                           timeout=timeout, input=input)
        if not check:
            return p
        if p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}\n"
                                 f"--- sov-api log:\n{self.log_tail()}")
        return json.loads(p.stdout) if fmt and p.stdout.strip() else p.stdout

    def request(self, method, path, body=None, token=None, raw=None, headers=None):
        """One request: (status, parsed JSON or None, RawResponse). token is sent as
        X-Auth-Token; body as JSON, raw as given."""
        headers = dict(headers or {})
        if token:
            headers["X-Auth-Token"] = token
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if data or method in ("POST", "PUT", "PATCH"):
            headers.setdefault("Content-Type", "application/json")
        r = raw_http(self.port, method, path, headers, data)
        doc = None
        if r.body and "json" in r.headers.get("Content-Type", ""):
            doc = json.loads(r.body)
        return r.status, doc, r

    def token(self, user="admin", password=None, project="admin", domain="Default"):
        """A project-scoped token for user (password auth)."""
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": domain},
            "password": password or self.admin_password}}},
            "scope": {"project": {"name": project, "domain": {"name": domain}}}}}
        status, doc, r = self.request("POST", "/identity/v3/auth/tokens", body)
        assert status == 201, (status, r.body)
        return r.headers["X-Subject-Token"]

    def make_project(self, name, user=None, role="member", password=None):
        """Creates project `name` and a user with `role` on it (through the Keystone API as
        admin); returns {"project_id", "user_id", "user", "password", "env", "token"}."""
        admin = self.token()
        user = user or f"{name}-user"
        password = password or "pw-" + os.urandom(6).hex()
        st, doc, r = self.request("POST", "/identity/v3/projects",
                                  {"project": {"name": name, "domain_id": "default"}}, admin)
        assert st == 201, r.body
        pid = doc["project"]["id"]
        st, doc, r = self.request("POST", "/identity/v3/users",
                                  {"user": {"name": user, "password": password,
                                            "domain_id": "default", "default_project_id": pid}},
                                  admin)
        assert st == 201, r.body
        uid = doc["user"]["id"]
        st, doc, r = self.request("GET", f"/identity/v3/roles?name={role}", None, admin)
        assert st == 200 and doc["roles"], r.body
        rid = doc["roles"][0]["id"]
        st, _, r = self.request("PUT", f"/identity/v3/projects/{pid}/users/{uid}/roles/{rid}",
                                None, admin)
        assert st == 204, r.body
        return {"project_id": pid, "user_id": uid, "user": user, "password": password,
                "env": self.env(user, password, name),
                "token": self.token(user, password, name)}


@pytest.fixture
def start_api(tmp_path):
    """Starts sov-api on a fresh data dir: start_api(ini_extra="", fsync=True) -> ApiDaemon.
    ini_extra is appended as is (it may open sections, e.g. "[block]\\nurl = ..."). Every
    daemon still running at teardown is stopped; one that exited by itself fails the test."""
    started = []

    def start(ini_extra="", fsync=True):
        assert (BIN / "sov-api").exists(), "bin/sov-api is not built (make)"
        name = f"api-{len(started)}"
        cfg = tmp_path / f"{name}.ini"
        d = ApiDaemon(tmp_path, name, cfg)
        cfg.write_text(
            "[server]\nlisten = 127.0.0.1:0\n"
            "[log]\nlevel = info\n"
            f"[api]\ndata_dir = {d.data_dir}\nfsync = {'true' if fsync else 'false'}\n"
            f"[identity]\nadmin_password = {d.admin_password}\n"
            f"[agent]\ntoken = {d.agent_token}\n" + ini_extra)
        started.append(d)
        return d.start()

    yield start
    failed = []
    for d in started:
        if d.proc is not None and d.proc.poll() is not None and not d.expect_exit:
            failed.append(f"{d.name} exited with {d.proc.returncode}:\n{d.log_tail()}")
        if d.alive():
            d.stop()
    assert not failed, "\n".join(failed)


@pytest.fixture
def api(start_api):
    return start_api()
