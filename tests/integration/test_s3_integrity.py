# SPDX-License-Identifier: Apache-2.0
"""Bitrot detection: every stored block carries a CRC-32C that GET checks before it sends the
block. Damage made behind the daemon's back (a flipped byte in a data file, in an inline object
inside the metadata database, a truncated file) must never reach a client as good data: the
GET fails with an S3 error, or, once bytes are on the wire, the connection ends short; blocks
that are intact stay readable, and the damage is counted in the metrics."""
import os
import sqlite3

import pytest
import requests

from conftest import s3_error

BLOCK = 256 * 1024


def bitrot_count(s3):
    text = requests.get(f"{s3.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("sov_s3_bitrot_total"):
            return int(float(line.split()[-1]))
    return 0


def data_files(s3):
    root = s3.data_dir / "objects"
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_flipped_byte_in_a_data_file_is_refused(start_s3):
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="rot")
    data = os.urandom(6 * BLOCK + 100)
    c.put_object(Bucket="rot", Key="big", Body=data)
    [f] = data_files(s3)
    bad = 5 * BLOCK + 7  # one byte in the sixth block
    with open(f, "r+b") as fh:
        fh.seek(bad)
        b = fh.read(1)
        fh.seek(bad)
        fh.write(bytes([b[0] ^ 0x40]))
    before = bitrot_count(s3)
    # A read that starts in the damaged block fails before any byte is sent.
    with pytest.raises(Exception) as e:
        c.get_object(Bucket="rot", Key="big", Range=f"bytes={bad}-{bad + 10}")["Body"].read()
    assert s3_error(e) == ("InternalError", 500)
    # A whole GET never hands the damaged bytes over as a complete object.
    r = requests.get(c.generate_presigned_url("get_object", Params={"Bucket": "rot", "Key": "big"}),
                     timeout=30, stream=True)
    got = b""
    try:
        for chunk in r.iter_content(65536):
            got += chunk
    except requests.exceptions.RequestException:
        pass
    assert got != data and len(got) < len(data)
    assert got == data[:len(got)]  # what did arrive is the intact prefix
    # Intact blocks stay readable.
    assert r.status_code == 200
    head = c.get_object(Bucket="rot", Key="big", Range=f"bytes=0-{5 * BLOCK - 1}")["Body"].read()
    assert head == data[:5 * BLOCK]
    tail = c.get_object(Bucket="rot", Key="big", Range=f"bytes={6 * BLOCK}-")["Body"].read()
    assert tail == data[6 * BLOCK:]
    assert bitrot_count(s3) >= before + 2


def test_damaged_inline_object_is_refused(start_s3):
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="rot")
    c.put_object(Bucket="rot", Key="small", Body=b"x" * 1000)
    s3.stop()
    db = sqlite3.connect(s3.data_dir / "meta.db")
    db.execute("UPDATE objects SET inline = ? WHERE key = 'small'", (b"x" * 999 + b"y",))
    db.commit()
    db.close()
    s3.start()
    c = s3.client()
    with pytest.raises(Exception) as e:
        c.get_object(Bucket="rot", Key="small")
    assert s3_error(e) == ("InternalError", 500)
    assert bitrot_count(s3) == 1
    # HEAD still answers from metadata; a new PUT replaces the damaged object.
    assert c.head_object(Bucket="rot", Key="small")["ContentLength"] == 1000
    c.put_object(Bucket="rot", Key="small", Body=b"fresh")
    assert c.get_object(Bucket="rot", Key="small")["Body"].read() == b"fresh"


def test_truncated_or_missing_data_file_is_an_error_not_a_hang(start_s3):
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="rot")
    c.put_object(Bucket="rot", Key="a", Body=os.urandom(BLOCK + 1))
    c.put_object(Bucket="rot", Key="b", Body=os.urandom(BLOCK + 1))
    files = data_files(s3)
    assert len(files) == 2
    os.truncate(files[0], 1000)
    files[1].unlink()
    for key in ("a", "b"):
        with pytest.raises(Exception) as e:
            c.get_object(Bucket="rot", Key=key)["Body"].read()
        assert s3_error(e) == ("InternalError", 500)
    assert s3.alive()
