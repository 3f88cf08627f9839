"""A throwaway Ray head for the workload tests: its own ports and temp dir on 127.0.0.2.

Started with `ray start --head --block` in a new session, so every process it starts
shares its process group; stopping kills that group (never `ray stop`, which would
kill other people's Ray on this machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Head:
    def __init__(self, num_cpus: int = 2, env: dict | None = None):
        self.num_cpus = num_cpus
        self.tmp = tempfile.mkdtemp(prefix="rw-", dir="/tmp")
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"http://{HOST}:{self.dashboard_port}"
        self.gcs_address = f"{HOST}:{self.port}"
        self.env = dict(os.environ)
        self.env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                         "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "Head":
        ray = str(Path(sys.executable).parent / "ray")
        cmd = [ray, "start", "--head", "--block", f"--node-ip-address={HOST}", f"--port={self.port}",
               f"--dashboard-host={HOST}", f"--dashboard-port={self.dashboard_port}", "--include-dashboard=true",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--temp-dir={self.tmp}", f"--num-cpus={self.num_cpus}",
               "--num-gpus=0", "--disable-usage-stats"]
        self.log = open(os.path.join(self.tmp, "head.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited ({self.proc.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"ray head did not come up in {timeout:.0f} s: {self.tail()}")
        self._wait_jobs_api(deadline)
        return self

    def _wait_jobs_api(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)

    def tail(self, n: int = 3000) -> str:
        try:
            return Path(self.tmp, "head.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rfind(")") + 2:].split()
                if fields[0] != "Z" and int(fields[2]) == self.proc.pid:  # state, ppid, pgrp
                    out.append(int(d.name))
        return out

    def stop(self, timeout: float = 6) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pids():
            self.proc.poll()
            time.sleep(0.3)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self.log.close()
