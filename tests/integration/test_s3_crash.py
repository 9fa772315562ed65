# SPDX-License-Identifier: Apache-2.0
"""sov-s3 under kill -9: eight boto3 uploaders write objects of random size and content while
the daemon is killed once a given number of PUTs has been acknowledged (counted, not timed).
After a restart on the same data dir every acknowledged object must be there byte for byte, and
any object that was in flight is either absent or complete and exactly one of the versions that
could be there (the one before or the one sent) -- never torn, truncated or mixed. Three rounds
on one data dir, so recovery from one crash is itself crashed into."""
import hashlib
import os
import random
import threading

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from conftest import list_all_keys

UPLOADERS = 8
ROUNDS = 3
NEW_PER_ROUND = 70  # objects of 1 KiB - 2 MiB per round, plus overwrites of earlier ones
OVERWRITES_PER_ROUND = 15
KILL_AFTER = 25  # acknowledgements per round


def sha(data):
    return hashlib.sha256(data).hexdigest()


def read_sha(c, key):
    got = c.get_object(Bucket="crash", Key=key)
    data = got["Body"].read()
    assert got["ContentLength"] == len(data)
    return sha(data), len(data)


def load_until_killed(s3, jobs):
    """Runs the jobs on UPLOADERS threads and kills the daemon with SIGKILL as soon as
    KILL_AFTER PUTs were acknowledged. Returns (sent, acked): key -> sha256 of the bytes
    sent / acknowledged with a 200."""
    c = s3.client(max_pool_connections=UPLOADERS * 2, connect_timeout=5, read_timeout=60)
    lock = threading.Lock()
    todo = iter(jobs)
    sent, acked, failed = {}, {}, []
    enough, killed = threading.Event(), threading.Event()

    def uploader():
        while not killed.is_set():
            with lock:
                job = next(todo, None)
            if job is None:
                return
            key, size = job
            data = os.urandom(size)
            with lock:
                sent[key] = sha(data)
            try:
                c.put_object(Bucket="crash", Key=key, Body=data)
            except (BotoCoreError, ClientError) as e:
                with lock:
                    failed.append((key, repr(e)))
                continue
            with lock:
                acked[key] = sent[key]
                if len(acked) >= KILL_AFTER:
                    enough.set()

    threads = [threading.Thread(target=uploader, daemon=True) for _ in range(UPLOADERS)]
    for t in threads:
        t.start()
    ok = enough.wait(timeout=300)
    s3.kill()
    killed.set()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert ok, f"only {len(acked)} PUTs acknowledged, failures: {failed[:3]}"
    assert len(acked) < len(jobs), "the daemon finished the whole load before the kill landed"
    assert set(sent) - set(acked), "nothing was in flight when the daemon died"
    return sent, acked


def test_kill_9_never_loses_an_acknowledged_put(start_s3):
    s3 = start_s3(workers=2)
    s3.client().create_bucket(Bucket="crash")
    rnd = random.Random(20261126)
    state = {}  # key -> sha256 the store held after the last verified restart
    stats = []
    for rnd_no in range(ROUNDS):
        jobs = [(f"r{rnd_no}/{i:03d}", rnd.randint(1024, 2 * 1024 * 1024))
                for i in range(NEW_PER_ROUND)]
        for key in rnd.sample(sorted(state), min(OVERWRITES_PER_ROUND, len(state))):
            jobs.insert(rnd.randrange(len(jobs)), (key, rnd.randint(1024, 1024 * 1024)))
        assert len({k for k, _ in jobs}) == len(jobs)  # one write per key per round
        sent, acked = load_until_killed(s3, jobs)

        s3.start()  # same data dir
        c = s3.client()
        for key, digest in sorted(acked.items()):
            assert read_sha(c, key)[0] == digest, f"acknowledged {key} lost or changed"
        listed = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket="crash"):
            for o in page.get("Contents", []):
                listed[o["Key"]] = o["Size"]
        assert set(state) <= set(listed), \
            f"objects from before this round disappeared: {sorted(set(state) - set(listed))[:5]}"
        assert set(listed) <= set(state) | set(sent), \
            f"objects nobody wrote: {sorted(set(listed) - set(state) - set(sent))[:5]}"
        observed = {}
        for key, size in listed.items():
            digest, length = read_sha(c, key)
            assert length == size, f"{key}: listed size {size}, body {length}"
            if key in acked:
                allowed = {acked[key]}
            else:  # in flight or never sent this round: the old version or the new, whole
                allowed = {state.get(key), sent.get(key)} - {None}
            assert digest in allowed, f"{key} is torn, mixed or stale after the crash"
            observed[key] = digest
        for key in set(sent) - set(listed):
            with pytest.raises(ClientError) as e:
                c.head_object(Bucket="crash", Key=key)
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404, key
        stats.append((len(acked), len(set(sent) - set(acked)),
                      len((set(sent) - set(acked)) & set(listed))))
        state = observed
    # The daemon takes new writes and has no leftovers from the crashes.
    c.put_object(Bucket="crash", Key="after", Body=b"alive")
    assert c.get_object(Bucket="crash", Key="after")["Body"].read() == b"alive"
    assert c.list_multipart_uploads(Bucket="crash").get("Uploads", []) == []
    assert s3.stop() == 0
    print("per round (acked, in flight, in-flight visible after restart):", stats)


def test_kill_9_during_multipart_keeps_completed_objects(start_s3):
    """A completed multipart object survives kill -9 whole; an upload in progress keeps its
    acknowledged parts, stays invisible as an object, and can be completed after the restart."""
    s3 = start_s3()
    c = s3.client()
    c.create_bucket(Bucket="crash")
    mib = 1024 * 1024
    parts = [os.urandom(5 * mib), os.urandom(5 * mib), os.urandom(1000)]
    uid = c.create_multipart_upload(Bucket="crash", Key="done")["UploadId"]
    etags = [c.upload_part(Bucket="crash", Key="done", UploadId=uid, PartNumber=i,
                           Body=p)["ETag"] for i, p in enumerate(parts, 1)]
    c.complete_multipart_upload(Bucket="crash", Key="done", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]})
    pending = c.create_multipart_upload(Bucket="crash", Key="pending")["UploadId"]
    c.upload_part(Bucket="crash", Key="pending", UploadId=pending, PartNumber=1, Body=parts[0])
    s3.kill()
    s3.start()
    c = s3.client()
    assert read_sha(c, "done")[0] == sha(b"".join(parts))
    assert list_all_keys(c, "crash") == ["done"]
    ups = c.list_multipart_uploads(Bucket="crash").get("Uploads", [])
    assert [u["UploadId"] for u in ups] == [pending]
    listed = c.list_parts(Bucket="crash", Key="pending", UploadId=pending)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * mib)]
    # The pending upload can still be completed after the restart.
    e2 = c.upload_part(Bucket="crash", Key="pending", UploadId=pending, PartNumber=2,
                       Body=b"tail")["ETag"]
    c.complete_multipart_upload(Bucket="crash", Key="pending", UploadId=pending,
                                MultipartUpload={"Parts": [
                                    {"PartNumber": 1, "ETag": listed[0]["ETag"]},
                                    {"PartNumber": 2, "ETag": e2}]})
    assert read_sha(c, "pending")[0] == sha(parts[0] + b"tail")
