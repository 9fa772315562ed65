# SPDX-License-Identifier: Apache-2.0
"""The core HTTP server as real clients see it, through sov-demo: curl (chunked uploads,
Expect: 100-continue, HTTP/1.0, HEAD), raw pipelining, Prometheus text parsed by the official
client library, bounded memory for large streamed uploads, graceful SIGTERM and SIGHUP reload."""
import hashlib
import os
import signal
import socket
import subprocess

import prometheus_client.parser
import requests

from conftest import BIN, clean_env


def curl(*args, check=True):
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True,
                          check=check, env=clean_env())


def test_health_and_metrics_are_prometheus_text(start_demo):
    d = start_demo()
    assert requests.get(d.url + "/healthz", timeout=10).text == "ok\n"
    for _ in range(3):
        requests.get(d.url + "/hello", timeout=10)
    requests.get(d.url + "/missing", timeout=10)
    text = requests.get(d.url + "/metrics", timeout=10).text
    families = {f.name: f for f in prometheus_client.parser.text_string_to_metric_families(text)}
    reqs = families["sov_http_requests"]
    by_route = {(s.labels["route"], s.labels["status"]): s.value for s in reqs.samples
                if s.name == "sov_http_requests_total"}
    assert by_route[("/hello", "200")] == 3
    assert by_route[("unmatched", "404")] == 1
    hist = families["sov_http_request_duration_seconds"]
    counts = [s.value for s in hist.samples if s.name.endswith("_count")
              and s.labels["route"] == "/hello"]
    assert counts == [3]
    assert "process_resident_memory_bytes" in families


def test_curl_uploads_chunked_and_expect_continue(start_demo, tmp_path):
    d = start_demo()
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "blob"
    f.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    # curl sends Expect: 100-continue for bodies over 1 MiB and waits for the 100
    out = curl("-v", "-T", str(f), d.url + "/upload")
    assert b"HTTP/1.1 100 Continue" in out.stderr
    assert want in out.stdout.decode()
    out = curl("-T", str(f), "-H", "Transfer-Encoding: chunked", d.url + "/upload")
    assert f'"bytes":{len(data)}' in out.stdout.decode() and want in out.stdout.decode()
    # buffered echo keeps the bytes exactly
    small = os.urandom(50000)
    r = requests.post(d.url + "/echo", data=small, timeout=10)
    assert r.status_code == 200 and r.content == small


def test_streamed_download_and_head_and_http10(start_demo):
    d = start_demo()
    out = curl("-D", "-", d.url + "/stream?bytes=1000003").stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert len(body) == 1000003
    out = curl("-I", d.url + "/hello").stdout.decode()
    assert out.startswith("HTTP/1.1 200") and "Content-Length: 20" in out
    out = curl("--http1.0", "-D", "-", d.url + "/hello").stdout.decode()
    assert "Connection: close" in out and out.endswith("Hello from sovcloud\n")
    out = curl("-o", "/dev/null", "-w", "%{http_code}", d.url + "/stream?bytes=x", check=False)
    assert out.stdout == b"400"


def test_pipelined_requests_answer_in_order(start_demo):
    d = start_demo()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"GET /hello HTTP/1.1\r\n\r\n" * 50 + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    assert data.count(b"Hello from sovcloud\n") == 50
    assert data.endswith(b"\r\n\r\nok\n")


def test_large_upload_streams_in_bounded_memory(start_demo, tmp_path):
    """512 MiB through the streaming route: the daemon's RSS must stay far below the body."""
    d = start_demo()
    size = 512 * 1024 * 1024
    proc = subprocess.Popen(["curl", "-sS", "--max-time", "120", "-T", "-", d.url + "/upload"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    h = hashlib.sha256()
    block = bytes(range(256)) * 4096  # 1 MiB
    peak = 0
    for i in range(size // len(block)):
        proc.stdin.write(block)
        h.update(block)
        if i % 64 == 0:
            rss = int(open(f"/proc/{d.proc.pid}/statm").read().split()[1]) * os.sysconf("SC_PAGESIZE")
            peak = max(peak, rss)
    proc.stdin.close()
    out = proc.stdout.read().decode()
    assert proc.wait() == 0
    assert f'"bytes":{size}' in out and h.hexdigest() in out
    assert peak < 64 * 1024 * 1024, f"daemon RSS reached {peak} bytes"


def test_hostile_requests_get_errors_and_server_survives(start_demo):
    d = start_demo("[http]\nmax_header_bytes = 4K\nmax_url = 1K\n")
    cases = [
        (b"GET /hello HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"GET /hello HTTP/9.9\r\n\r\n", b"505"),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"413"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"400"),  # a TLS hello on plain HTTP
    ]
    for raw, status in cases:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 " + status), (raw[:40], data[:60])
    assert requests.get(d.url + "/hello", timeout=10).status_code == 200
    assert d.proc.poll() is None


def test_sigterm_drains_in_flight_request(start_demo):
    d = start_demo()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"PUT /upload HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
    # The 100 Continue proves the handler is reading this body when the signal comes.
    assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"hello")
    d.proc.send_signal(signal.SIGTERM)
    # New connections are refused once the listener is closed; poll until then.
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", d.port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.02)
    s.sendall(b"world")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b"Connection: close" in data
    assert hashlib.sha256(b"helloworld").hexdigest().encode() in data
    assert d.proc.wait(timeout=20) == 0


def test_sighup_reloads_log_level(start_demo):
    d = start_demo("[log]\nlevel = warn\n")
    requests.get(d.url + "/hello", timeout=10)
    cfg = d.tmp / "demo0.ini"
    cfg.write_text(cfg.read_text().replace("level = warn", "level = info"))
    d.proc.send_signal(signal.SIGHUP)
    # Poll the log for the reload line, then a request is logged at info.
    import time
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in d.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "configuration reloaded" in d.log.read_text()
    requests.get(d.url + "/hello", timeout=10)
    deadline = time.monotonic() + 10
    while "path=/hello" not in d.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.log.read_text().count("path=/hello") == 1


def test_bad_config_is_refused_with_its_line(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[server]\nworkers = 2\n[http]\nmax_headers = 0\n")
    p = subprocess.run([str(BIN / "sov-demo"), "--check-config", "--config", str(cfg)],
                       capture_output=True, text=True, env=clean_env())
    assert p.returncode == 2
    assert f"{cfg}:4" in p.stderr and "max_headers" in p.stderr and "out of range" in p.stderr
    cfg.write_text("[server]\nlisten = 127.0.0.1:1\nbogus = 1\n")
    p = subprocess.run([str(BIN / "sov-demo"), "--check-config", "--config", str(cfg)],
                       capture_output=True, text=True, env=clean_env())
    assert p.returncode == 2 and "unknown key [server] bogus" in p.stderr
    sample = subprocess.run([str(BIN / "sov-demo"), "--print-sample-config"], capture_output=True,
                            text=True, check=True).stdout
    assert "#listen = 127.0.0.1:8480" in sample and "[http]" in sample
    # the committed sample stays the one the daemon prints
    from conftest import ROOT
    assert (ROOT / "etc" / "sov-demo.sample.ini").read_text() == sample


def test_tls_listener_with_curl(start_demo, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    d = start_demo(f"tls_cert = {cert}\ntls_key = {key}\n")
    url = f"https://127.0.0.1:{d.port}"
    out = curl("--cacert", str(cert), url + "/hello", url + "/healthz").stdout
    assert out == b"Hello from sovcloud\nok\n"
    data = os.urandom(2 * 1024 * 1024 + 3)
    f = tmp_path / "blob"
    f.write_bytes(data)
    out = curl("--cacert", str(cert), "-T", str(f), "-H", "Transfer-Encoding: chunked",
               url + "/upload").stdout.decode()
    assert hashlib.sha256(data).hexdigest() in out
    assert len(curl("--cacert", str(cert), url + "/stream?bytes=3000001").stdout) == 3000001
    # TLS 1.1 is refused; plain HTTP on the TLS port gets no HTTP answer; the server lives on
    assert curl("--cacert", str(cert), "--tlsv1.1", "--tls-max", "1.1", url + "/hello",
                check=False).returncode != 0
    assert curl(f"http://127.0.0.1:{d.port}/hello", check=False).returncode != 0
    assert curl("--cacert", str(cert), url + "/hello").stdout == b"Hello from sovcloud\n"


def test_tls_bad_key_refused(tmp_path):
    cfg = tmp_path / "tls.ini"
    cfg.write_text("[server]\nlisten = 127.0.0.1:0\ntls_cert = /nonexistent.pem\ntls_key = /nonexistent.pem\n")
    p = subprocess.run([str(BIN / "sov-demo"), "--config", str(cfg)], capture_output=True,
                       text=True, env=clean_env(), timeout=20)
    assert p.returncode == 1 and "cannot load certificate /nonexistent.pem" in p.stderr
