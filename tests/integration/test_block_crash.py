# SPDX-License-Identifier: Apache-2.0
"""sov-block under kill -9. Writers on their own NBD connections write deterministic data at
random 4 KiB-aligned offsets of one volume: one flushes every few writes, one writes with FUA,
and one never flushes (the load in flight when the daemon dies). The daemon is killed once a
given number of flushed-or-FUA writes has been acknowledged (counted, not timed). After a
restart, every 4 KiB page whose last write was made durable holds exactly that write; every
other page holds, sector by sector, its durable content or one of the writes sent after it --
never anything else (no torn metadata, no data from another page, no stale clusters). Three
rounds on one data dir, so recovery is itself crashed into; a clone of a snapshot taken in
round one is checked the same way."""
import hashlib
import os
import random
import threading

import pytest

from conftest import MIB, qemu_io
import nbdwire

PAGE = 4096
SECTOR = 512
SIZE = 48 * MIB
PAGES = SIZE // PAGE
ROUNDS = 3
DURABLE_BEFORE_KILL = 1000
REGIONS = {"flusher": (0, 16 * MIB), "fua": (16 * MIB, 32 * MIB), "loose": (32 * MIB, SIZE)}


def page_data(version, page):
    """The 4 KiB a write of `version` puts on `page` (recomputable, unique per pair)."""
    return hashlib.shake_128(f"{version}:{page}".encode()).digest(PAGE)


class Ledger:
    """Per page: the durable version (0 = never written: zeros) and the versions sent since."""

    def __init__(self):
        self.lock = threading.Lock()
        self.durable = [0] * PAGES
        self.since = [[] for _ in range(PAGES)]
        self.durable_writes = 0

    def sent(self, version, pages):
        with self.lock:
            for p in pages:
                self.since[p].append(version)

    def made_durable(self, writes):
        """writes: [(version, pages)] acknowledged before an acknowledged FLUSH (or by FUA)."""
        with self.lock:
            for version, pages in writes:
                for p in pages:
                    # Only the newest durable write of a page counts; later sends stay open.
                    if version in self.since[p]:
                        i = self.since[p].index(version)
                        self.durable[p] = version
                        del self.since[p][:i + 1]
            self.durable_writes += len(writes)

    def allowed(self, page):
        return [self.durable[page]] + self.since[page]


def writer(kind, block, ledger, versions, stop, enough, errors):
    lo, hi = REGIONS[kind]
    rnd = random.Random(f"{kind}-{block.starts}")
    try:
        c = nbdwire.Client("crash", unix=block.socket, timeout=60)
    except Exception as e:  # noqa: BLE001 -- reported by the test
        errors.append(f"{kind}: {e!r}")
        return
    pending = []
    try:
        while not stop.is_set():
            npages = rnd.choice((1, 1, 2, 3, 8, 16, 33))
            first = rnd.randrange(lo // PAGE, hi // PAGE - npages)
            pages = list(range(first, first + npages))
            with ledger.lock:
                version = versions[0]
                versions[0] += 1
            ledger.sent(version, pages)
            c.write(first * PAGE, b"".join(page_data(version, p) for p in pages),
                    fua=(kind == "fua"))
            if kind == "fua":
                ledger.made_durable([(version, pages)])
            elif kind == "flusher":
                pending.append((version, pages))
                if len(pending) >= rnd.randint(1, 6):
                    c.flush()
                    ledger.made_durable(pending)
                    pending = []
            if ledger.durable_writes >= DURABLE_BEFORE_KILL:
                enough.set()
    except (ConnectionError, OSError, nbdwire.NbdError):
        pass  # the daemon was killed under us
    finally:
        c.sock.close()


def verify(block, export, ledger, label):
    """Reads the whole export and checks each page against the ledger."""
    durable_ok = open_ok = 0
    with nbdwire.Client(export, unix=block.socket, timeout=60) as c:
        assert c.size == SIZE
        for off in range(0, SIZE, MIB):
            chunk = c.read(off, MIB)
            for i in range(MIB // PAGE):
                page = off // PAGE + i
                got = chunk[i * PAGE:(i + 1) * PAGE]
                allowed = ledger.allowed(page)
                images = [page_data(v, page) if v else bytes(PAGE) for v in allowed]
                if len(allowed) == 1:
                    assert got == images[0], \
                        f"{label}: page {page} lost its durable write {allowed[0]}"
                    durable_ok += 1
                    continue
                for s in range(0, PAGE, SECTOR):
                    assert any(got[s:s + SECTOR] == im[s:s + SECTOR] for im in images), \
                        f"{label}: page {page} sector {s // SECTOR} is none of {allowed}"
                open_ok += 1
    return durable_ok, open_ok


def settle(ledger, c, label):
    """After a verified restart, makes the ledger exact again: every page whose content was
    open is read back and rewritten as a new durable version-less image, so the next round
    starts from known bytes."""
    for page in range(PAGES):
        if len(ledger.allowed(page)) > 1:
            got = c.read(page * PAGE, PAGE)
            images = {(page_data(v, page) if v else bytes(PAGE)): v for v in ledger.allowed(page)}
            if got in images:
                ledger.durable[page], ledger.since[page] = images[got], []
            else:  # a sector-level mix: overwrite with the durable version, made durable
                v = ledger.durable[page]
                c.write(page * PAGE, page_data(v, page) if v else bytes(PAGE))
                ledger.since[page] = []
    c.flush()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_kill_9_keeps_every_flushed_write(start_block, encrypted):
    block = start_block()
    block.create_volume("crash", SIZE, encrypted=encrypted)
    ledger = Ledger()
    versions = [1]
    stats = []
    clone_ledger = None
    for rnd_no in range(ROUNDS):
        stop, enough = threading.Event(), threading.Event()
        errors = []
        ledger.durable_writes = 0
        threads = [threading.Thread(target=writer, args=(k, block, ledger, versions, stop,
                                                         enough, errors), daemon=True)
                   for k in REGIONS]
        for t in threads:
            t.start()
        ok = enough.wait(timeout=300)
        block.kill()
        stop.set()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive()
        assert not errors, errors
        assert ok, f"only {ledger.durable_writes} durable writes acknowledged"
        open_pages = sum(1 for p in range(PAGES) if len(ledger.allowed(p)) > 1)
        assert open_pages, "nothing was in flight or unflushed when the daemon died"

        block.start()
        stats.append((ledger.durable_writes, open_pages) +
                     verify(block, "crash", ledger, f"round {rnd_no}"))
        if clone_ledger is not None:
            verify(block, "crash-clone", clone_ledger, f"round {rnd_no} clone")
        with nbdwire.Client("crash", unix=block.socket) as c:
            settle(ledger, c, f"round {rnd_no}")
        if rnd_no == 0:
            # A snapshot and a clone of the settled state: the clone's content must survive
            # later crashes of the volume's load untouched.
            block.snapshot("crash", "crash-snap")
            block.clone("crash-clone", "crash-snap")
            clone_ledger = Ledger()
            clone_ledger.durable = list(ledger.durable)
    # The snapshot froze round one's settled state too; the daemon takes new writes.
    verify(block, "crash-snap", clone_ledger, "snapshot")
    with nbdwire.Client("crash", unix=block.socket) as c:
        c.write(0, b"alive" * 512, fua=True)
        assert c.read(0, 2560) == b"alive" * 512
    assert block.stop() == 0
    print("per round (durable writes, open pages, pages exact, pages checked by sector):",
          stats)


def test_kill_9_after_management_operations(start_block):
    """What the API acknowledged survives kill -9: created volumes, snapshots and clones with
    their data, resizes, deletes, grants, and zeroing and trimming made durable by a flush."""
    block = start_block()
    block.create_volume("m", 8 * MIB)
    data = os.urandom(4 * MIB)
    with nbdwire.Client("m", unix=block.socket) as c:
        c.write(0, data)
        c.flush()
    block.snapshot("m", "m-snap")
    block.clone("m-clone", "m-snap")
    block.resize("m", 12 * MIB)
    block.create_volume("doomed", MIB)
    block.delete("doomed")
    g = block.grant("m", token=True)
    with nbdwire.Client("m", unix=block.socket) as c:
        c.write_zeroes(0, MIB)  # whole clusters
        c.write_zeroes(MIB + 1000, 5000)  # parts of a cluster
        c.trim(2 * MIB, MIB)
        c.flush()
    block.kill()
    block.start()
    vols = block.volumes()
    assert set(vols) == {"m", "m-snap", "m-clone"}
    assert vols["m"]["size"] == 12 * MIB and vols["m-snap"]["size"] == 8 * MIB
    assert [x["id"] for x in block.grants()] == [g["id"]]
    with nbdwire.Client("m", unix=block.socket) as c:
        assert c.size == 12 * MIB
        assert c.read(0, MIB) == bytes(MIB)
        want = bytearray(data[MIB:2 * MIB])
        want[1000:6000] = bytes(5000)
        assert c.read(MIB, MIB) == want
        assert c.read(3 * MIB, MIB) == data[3 * MIB:]
        assert c.read(8 * MIB, 4 * MIB) == bytes(4 * MIB)
    for name in ("m-snap", "m-clone"):
        with nbdwire.Client(name, unix=block.socket) as c:
            assert c.read(0, 4 * MIB) == data, name
    qemu_io(block.tcp_uri(g["export"]), "read -P 0 0 1M", read_only=True)
