# SPDX-License-Identifier: Apache-2.0
"""sov-block's NBD STARTTLS with the real clients: a CA and a server certificate made with
openssl, sov-block with [nbd] tls = require, then nbdinfo (nbds+unix, x509 verified against the
CA) and qemu-io/qemu-img (tls-creds-x509) over the Unix socket and TCP. A plaintext client is
refused, a wrong CA fails the handshake, and bytes written through TLS read back the same,
including WRITEs larger than the transport's in-place threshold."""
import json
import subprocess

import pytest

from conftest import BIN, MIB, run_tool


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, cn):
    """A CA in d/ca-cert.pem (the name both libnbd and qemu look for) with its key."""
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem",
            "-out", "ca-cert.pem", "-days", "2", "-subj", f"/CN={cn}", cwd=d)
    return d


@pytest.fixture
def pki(tmp_path):
    """{'ca': client dir with ca-cert.pem, 'cert'/'key': the server's PEM files, 'other': a
    client dir trusting an unrelated CA}."""
    ca = make_ca(tmp_path / "pki", "sov test CA")
    (ca / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=ca)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", "server-cert.pem", "-days", "2", "-extfile", "san.ext",
            cwd=ca)
    other = make_ca(tmp_path / "other", "unrelated CA")
    return {"ca": ca, "cert": ca / "server-cert.pem", "key": ca / "server-key.pem",
            "other": other}


def tls_ini(pki, mode="require"):
    return f"[nbd]\ntls_cert = {pki['cert']}\ntls_key = {pki['key']}\ntls = {mode}\n"


def nbds_unix(block, export, certdir):
    return f"nbds+unix:///{export}?socket={block.socket}&tls-certificates={certdir}"


def qemu_tls(tool_args, certdir, opts, check=True):
    """qemu-io/qemu-img with an x509 client credential from certdir and --image-opts."""
    head = 2 if tool_args[0] == "qemu-img" else 1  # qemu-img takes options after its command
    return run_tool(tool_args[:head] + ["--object",
                                        f"tls-creds-x509,id=tls0,dir={certdir},endpoint=client"]
                    + tool_args[head:] + ["--image-opts", opts], check=check, timeout=120)


def unix_opts(block, export):
    return (f"driver=nbd,path={block.socket},export={export},tls-creds=tls0,"
            "tls-hostname=localhost")


def test_nbdinfo_over_tls_and_plaintext_refused(start_block, pki):
    block = start_block(ini_extra=tls_ini(pki))
    block.create_volume("sec", 16 * MIB)
    info = json.loads(run_tool(["nbdinfo", "--json",
                                nbds_unix(block, "sec", pki["ca"])]).stdout)
    assert info["TLS"] is True
    assert info["exports"][0]["export-size"] == 16 * MIB
    listed = json.loads(run_tool(["nbdinfo", "--list", "--json",
                                  f"nbds+unix:///?socket={block.socket}"
                                  f"&tls-certificates={pki['ca']}"]).stdout)
    assert "sec" in {e["export-name"] for e in listed["exports"]}
    # Plaintext: every option is refused with TLS_REQD, so the client gets nothing.
    p = run_tool(["nbdinfo", "--size", block.uri("sec")], check=False)
    assert p.returncode != 0
    assert "TLS" in p.stderr or "tls" in p.stderr, p.stderr
    # The daemon is still serving.
    assert run_tool(["nbdinfo", "--size",
                     nbds_unix(block, "sec", pki["ca"])]).stdout.strip() == str(16 * MIB)


def test_qemu_write_read_round_trip_over_tls(start_block, pki):
    block = start_block(ini_extra=tls_ini(pki))
    block.create_volume("rt", 32 * MIB)
    opts = unix_opts(block, "rt")
    # 4 MiB and 1 MiB writes exceed the in-place threshold: with TLS they take the buffered
    # path. Small writes, flush and discard go along.
    qemu_tls(["qemu-io", "-c", "write -P 0x5a 0 4M", "-c", "write -P 0xa5 4M 1M",
              "-c", "write -P 0x33 12345 512", "-c", "flush", "-c", "discard 8M 1M"],
             pki["ca"], opts)
    qemu_tls(["qemu-io", "-r", "-c", "read -P 0x5a 0 12345", "-c", "read -P 0x33 12345 512",
              "-c", "read -P 0x5a 12857 4181447", "-c", "read -P 0xa5 4M 1M",
              "-c", "read -P 0 8M 1M"], pki["ca"], opts)
    # The same bytes through nbdinfo's TLS (libnbd): the allocation map shows the data.
    m = json.loads(run_tool(["nbdinfo", "--map", "--json",
                             nbds_unix(block, "rt", pki["ca"])]).stdout)
    data = [(e["offset"], e["length"]) for e in m if e["type"] & 1 == 0]
    assert data and data[0][0] == 0 and sum(n for _, n in data) >= 5 * MIB
    # qemu-img info through TLS.
    info = json.loads(qemu_tls(["qemu-img", "info", "--output=json"], pki["ca"], opts).stdout)
    assert info["virtual-size"] == 32 * MIB
    # A client that does not trust the server's CA fails the handshake (qemu checks the
    # certificate against tls-hostname; libnbd 1.14 checks it only with a host name, see the
    # TCP test).
    p = qemu_tls(["qemu-io", "-r", "-c", "read 0 512"], pki["other"], opts, check=False)
    assert p.returncode != 0
    # A plaintext qemu client is refused.
    p = run_tool(["qemu-io", "-f", "raw", "-r", "-c", "read 0 512", block.uri("rt")],
                 check=False)
    assert p.returncode != 0


def test_tls_over_tcp_with_grant_and_optional_mode(start_block, pki, tmp_path):
    block = start_block(ini_extra=tls_ini(pki, "optional"))
    block.create_volume("opt", 8 * MIB)
    # Optional: plaintext over the Unix socket still works...
    qemu_tls(["qemu-io", "-c", "write -P 0x77 0 2M"], pki["ca"], unix_opts(block, "opt"))
    assert run_tool(["nbdinfo", "--size", block.uri("opt")]).stdout.strip() == str(8 * MIB)
    run_tool(["qemu-io", "-f", "raw", "-r", "-c", "read -P 0x77 0 2M", block.uri("opt")])
    # ... and TLS over TCP checks the certificate's IP address SAN.
    block.grant("opt", host="127.0.0.1")
    port = block.nbd_port
    qemu_tls(["qemu-io", "-r", "-c", "read -P 0x77 0 2M"], pki["ca"],
             f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},"
             "export=opt,tls-creds=tls0")
    info = json.loads(run_tool(["nbdinfo", "--json",
                                f"nbds://127.0.0.1:{port}/opt?tls-certificates={pki['ca']}"]
                               ).stdout)
    assert info["TLS"] is True
    # A client that does not trust the server's CA fails the handshake; the server goes on.
    p = run_tool(["nbdinfo", "--size",
                  f"nbds://127.0.0.1:{port}/opt?tls-certificates={pki['other']}"], check=False)
    assert p.returncode != 0
    assert run_tool(["nbdinfo", "--size",
                     f"nbds://127.0.0.1:{port}/opt?tls-certificates={pki['ca']}"]
                    ).stdout.strip() == str(8 * MIB)


def test_bad_tls_config_is_refused(pki, tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text(f"[block]\ndata_dir = {tmp_path / 'd'}\n[nbd]\ntls = require\n")
    p = subprocess.run([str(BIN / "sov-block"), "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "tls" in p.stderr
    cfg.write_text(f"[block]\ndata_dir = {tmp_path / 'd'}\n[nbd]\ntls_cert = {pki['cert']}\n"
                   f"tls_key = {pki['other'] / 'ca-key.pem'}\n")
    p = subprocess.run([str(BIN / "sov-block"), "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "match" in p.stderr
