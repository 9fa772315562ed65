"""sov-s3 erasure coding with real clients: objects on four drives (2+2 by default) read back byte
for byte with shards and whole drives deleted or corrupted, heal on read, the operator's
`sov s3 heal`, a replaced empty drive rebuilt, the write quorum, a geometry per storage class,
and kill -9 during writes."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, clean_env

MIB = 1024 * 1024
SIZES = [0, 1, 65536 + 1, 300_000, MIB, 3 * MIB + 7]


def body(size, seed):
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:size])


@pytest.fixture
def short_dir():
    """Drive paths short enough for one config line (pytest's tmp paths are long)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="ec", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def drives_of(base, n=4):
    ds = [base / f"d{i}" for i in range(n)]
    for d in ds:
        d.mkdir(exist_ok=True)
    return ds


def start_ec(start_s3, drives, extra=""):
    return start_s3(ini_extra=f"drives = {','.join(str(d) for d in drives)}\n"
                              f"inline_max = 1K\nscrub_interval = 0\n" + extra)


def shards(drive):
    return sorted(p for p in (drive / "ec").rglob("*") if p.is_file())


def read_all(c, bucket, objs):
    for key, data in objs.items():
        got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), key


def heal(s3):
    """POST /_sov/heal with the daemon's admin token (what `sov s3 heal` does)."""
    import urllib.request
    token = (s3.data_dir / "admin.token").read_text()
    req = urllib.request.Request(s3.url + "/_sov/heal", method="POST",
                                 headers={"x-sov-admin-token": token})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def put_many(c, bucket, seed=0):
    objs = {}
    for i, size in enumerate(SIZES):
        key = f"obj-{size}"
        objs[key] = body(size, seed * 100 + i)
        c.put_object(Bucket=bucket, Key=key, Body=objs[key])
    return objs


def test_reads_survive_lost_and_corrupt_shards_and_heal(start_s3, short_dir):
    drives = drives_of(short_dir)
    s3 = start_ec(start_s3, drives)
    c = s3.client()
    c.create_bucket(Bucket="ecb")
    objs = put_many(c, "ecb")
    # multipart: each part its own erasure-coded segment
    up = c.create_multipart_upload(Bucket="ecb", Key="mp")["UploadId"]
    parts, mp = [], b""
    for n in (1, 2):
        data = body(5 * MIB if n == 1 else 123_457, 900 + n)
        mp += data
        parts.append({"PartNumber": n, "ETag": c.upload_part(
            Bucket="ecb", Key="mp", UploadId=up, PartNumber=n, Body=data)["ETag"]})
    c.complete_multipart_upload(Bucket="ecb", Key="mp", UploadId=up,
                                MultipartUpload={"Parts": parts})
    objs["mp"] = mp
    read_all(c, "ecb", objs)
    # no plain data files: every object above the inline limit is 4 shards, one per drive
    assert not [p for p in (s3.data_dir / "objects").rglob("*") if p.is_file()]
    n_segments = len([s for s in SIZES if s > 1024]) + 2
    assert [len(shards(d)) for d in drives] == [n_segments] * 4
    hdr = shards(drives[0])[0].read_bytes()[:16]
    assert hdr[:8] == b"SOVSHARD" and (hdr[10], hdr[11]) == (2, 2)

    # a range read across stripes
    got = c.get_object(Bucket="ecb", Key=f"obj-{MIB}", Range="bytes=262000-786999")["Body"].read()
    assert got == objs[f"obj-{MIB}"][262000:787000]

    # two whole drives gone (m = 2): every byte still reads
    before = {p: p.read_bytes() for d in drives for p in shards(d)}
    for d in drives[:2]:
        shutil.rmtree(d / "ec")
    read_all(c, "ecb", objs)
    # sov s3 heal rewrites them (the reads above queued heals too: the two share the work),
    # byte-identical to what the writer made
    res = heal(s3)
    assert res["lost"] == 0 and res["segments"] == n_segments
    assert {p: p.read_bytes() for d in drives for p in shards(d)} == before

    # now the other two drives are lost: the healed shards carry the data
    for d in drives[2:]:
        shutil.rmtree(d / "ec")
    read_all(c, "ecb", objs)
    assert heal(s3)["lost"] == 0
    assert {p: p.read_bytes() for d in drives for p in shards(d)} == before

    # flipped bytes in one shard: the read is right and repairs the shard by itself
    victim = next(p for d in drives for p in shards(d) if p.read_bytes()[12] == 0)  # data shard
    good = victim.read_bytes()
    bad = bytearray(good)
    bad[200] ^= 0xFF
    victim.write_bytes(bytes(bad))
    read_all(c, "ecb", objs)
    deadline = time.monotonic() + 60
    while victim.read_bytes() != good:
        assert time.monotonic() < deadline, "heal on read did not repair the shard"
        time.sleep(0.05)
    assert heal(s3) == {"segments": n_segments, "damaged": 0, "healed": 0, "lost": 0,
                        "error": None}

    # more than m shards of an object lost: a clean error, the daemon stays up
    key = f"obj-{MIB}"
    c.put_object(Bucket="ecb", Key="doomed", Body=objs[key])
    doomed = [p for d in drives for p in shards(d) if p.name not in {q.name for q in before}]
    assert len(doomed) == 4
    for p in doomed[:3]:
        p.unlink()
    with pytest.raises(Exception):
        c.get_object(Bucket="ecb", Key="doomed")["Body"].read()
    assert heal(s3)["lost"] == 1
    read_all(c, "ecb", objs)

    # the admin endpoint wants the operator's token
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(s3.url + "/_sov/heal", method="POST",
                                                      headers={"x-sov-admin-token": "x" * 64}))
    assert e.value.code == 403


def test_replaced_drive_quorum_and_classes(start_s3, short_dir):
    drives = drives_of(short_dir)
    s3 = start_ec(start_s3, drives, "class_ec = STANDARD_IA=3+1\n")
    c = s3.client()
    c.create_bucket(Bucket="ecb")
    objs = put_many(c, "ecb")
    # a storage class with its own geometry
    ia = body(2 * MIB, 77)
    c.put_object(Bucket="ecb", Key="ia", Body=ia, StorageClass="STANDARD_IA")
    objs["ia"] = ia
    assert c.head_object(Bucket="ecb", Key="ia")["StorageClass"] == "STANDARD_IA"
    km = {(p.read_bytes()[10], p.read_bytes()[11]) for d in drives for p in shards(d)}
    assert km == {(2, 2), (3, 1)}

    # a drive replaced by an empty one: reads work, the heal fills it
    shutil.rmtree(drives[3])
    drives[3].mkdir()
    read_all(c, "ecb", objs)
    heal(s3)
    assert len(shards(drives[3])) == len(shards(drives[0]))

    # write quorum (k+1 = 3 of 4): one broken drive still takes writes, two do not
    def break_drive(d):  # the drive's file system goes away: nothing can be written there
        d.rename(d.with_suffix(".away"))
        d.write_text("not a directory")

    def fix_drive(d):  # ... and comes back with its data
        d.unlink()
        d.with_suffix(".away").rename(d)

    break_drive(drives[0])
    data = body(MIB, 5)
    c.put_object(Bucket="ecb", Key="three", Body=data)
    objs["three"] = data
    break_drive(drives[1])
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="ecb", Key="two", Body=body(MIB, 6))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket="ecb", Key="two")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    fix_drive(drives[0])
    fix_drive(drives[1])
    read_all(c, "ecb", objs)
    res = heal(s3)
    assert res["lost"] == 0
    for d in drives:
        assert not list((d / "tmp").glob("*")) if (d / "tmp").exists() else True
    assert len({len(shards(d)) for d in drives}) == 1


def test_kill_during_writes_keeps_acknowledged_objects(start_s3, short_dir):
    drives = drives_of(short_dir)
    s3 = start_ec(start_s3, drives)
    c = s3.client()
    c.create_bucket(Bucket="ecb")
    acked, stop = {}, threading.Event()

    def writer():
        cl = s3.client()
        i = 0
        while not stop.is_set() and i < 400:
            data = body(300_000 + i, i)
            try:
                cl.put_object(Bucket="ecb", Key=f"k{i}", Body=data)
            except Exception:
                return
            acked[f"k{i}"] = data
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 10:
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.01)
    s3.kill()
    stop.set()
    t.join(60)
    s3.start()
    c = s3.client()
    read_all(c, "ecb", dict(acked))
    listed = {o["Key"] for page in c.get_paginator("list_objects_v2").paginate(Bucket="ecb")
              for o in page.get("Contents", [])}
    assert set(acked) <= listed
    # nothing half-written is left on the drives after the start-up sweep
    keys_on_disk = {p.name for d in drives for p in shards(d)}
    assert len(keys_on_disk) == len(listed)
    assert all(not list((d / "tmp").iterdir()) for d in drives if (d / "tmp").exists())
