# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: real sovcloud daemons from ./bin started on loopback in a temp directory."""
import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"


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
