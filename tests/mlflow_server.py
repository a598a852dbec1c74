"""A real ``mlflow server`` on 127.0.0.1 for the tests that need a tracking server: its store (a
sqlite file or any database URI) and artifact folder outlive ``stop``, so ``start`` again is the
same server coming back after an outage."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    def __init__(self, tmp: Path, backend_store_uri: str | None = None) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        store = backend_store_uri or f"sqlite:///{tmp}/server.db"
        self.cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", "1", "--backend-store-uri", store,
                    "--artifacts-destination", str(tmp / "artifacts")]  # fmt: skip
        self.log = tmp / f"mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        with self.log.open("ab") as out:  # its own process group: stop() ends its workers too
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        if wait:
            self.wait_up()

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the server and every worker process it started (SIGKILL after 20 s)."""
        if self.proc is None:
            return
        group = self.proc.pid
        os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # workers that outlived their parent
        self.proc.wait(timeout=20)
        self.proc = None
