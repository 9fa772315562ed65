# SPDX-License-Identifier: Apache-2.0
"""sov-api killed with SIGKILL while clients create resources: every create it acknowledged
is there after a restart, nothing half-made is visible, and the audit log still verifies."""
import subprocess
import threading

from conftest import BIN, clean_env

SOV = BIN / "sov"


def create_loop(api, token, prefix, acked, stop, limit=400):
    """Creates networks one after another until stop is set or the daemon is gone; records
    the ids of the creates that were answered 201."""
    for i in range(limit):
        if stop.is_set():
            return
        try:
            st, doc, _ = api.request("POST", "/network/v2.0/networks",
                                     {"network": {"name": f"{prefix}-{i}"}}, token=token)
        except OSError:
            return  # the daemon died under us: this create was never acknowledged
        if st == 201:
            acked.append(doc["network"]["id"])


def test_kill_during_creates_keeps_every_acknowledged_resource(start_api):
    api = start_api("[quota]\nnetworks = -1\n")
    admin = api.token()
    t = api.make_project("crash")
    for rnd in range(2):
        acked = {0: [], 1: []}
        stop = threading.Event()
        threads = [threading.Thread(target=create_loop,
                                    args=(api, tok, f"r{rnd}-{n}", acked[n], stop))
                   for n, tok in ((0, admin), (1, t["token"]))]
        for th in threads:
            th.start()
        # kill once some creates were acknowledged (bounded: the loops stop by themselves)
        while sum(map(len, acked.values())) < 20 and any(th.is_alive() for th in threads):
            threads[0].join(timeout=0.01)
        api.kill()
        stop.set()
        for th in threads:
            th.join(timeout=60)
        assert sum(map(len, acked.values())) >= 20
        api.start()
        admin = api.token()
        t["token"] = api.token(t["user"], t["password"], "crash")
        st, doc, _ = api.request("GET", "/network/v2.0/networks?fields=id&fields=name",
                                 token=admin)
        assert st == 200
        have = {n["id"] for n in doc["networks"]}
        for n in (0, 1):
            missing = set(acked[n]) - have
            assert not missing, f"round {rnd}: acknowledged networks lost: {missing}"
        # the project still sees exactly its own
        st, doc, _ = api.request("GET", "/network/v2.0/networks", token=t["token"])
        mine = {n["id"] for n in doc["networks"]}
        assert set(acked[1]) <= mine and not (set(acked[0]) & mine)
        p = subprocess.run([str(SOV), "audit", "verify", "--api-data", str(api.data_dir)],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
