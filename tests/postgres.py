"""A throwaway PostgreSQL server on 127.0.0.1 (the machine's own PostgreSQL binaries, a fresh
data folder under the test's tmp), for an ``mlflow server`` with the database backend store that
cluster.yaml's head runs."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.mlflow_server import free_port


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH), or None."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Postgres:
    """``start`` initialises a cluster with a database ``mlflow`` owned by user ``mlflow``;
    ``uri`` is the SQLAlchemy URI MLflow takes. As root, the server runs as user postgres."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None, "no PostgreSQL binaries (initdb, pg_ctl)"
        self.bin = bin_dir
        # its own folder under /tmp: user postgres cannot enter pytest's (mode 700, root's)
        self.home = Path(tempfile.mkdtemp(prefix="raymix-pg-"))
        self.data = self.home / "data"
        self.port = free_port()
        self.uri = f"postgresql://mlflow@127.0.0.1:{self.port}/mlflow"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-2000:]}"

    def start(self) -> None:
        if self._as:
            shutil.chown(self.home, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8")  # fmt: skip
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                  "-l", str(self.data / "server.log"), "start")  # fmt: skip
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        self._run(*psql, "-c", "CREATE USER mlflow")
        self._run(*psql, "-c", "CREATE DATABASE mlflow OWNER mlflow")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.home, ignore_errors=True)
