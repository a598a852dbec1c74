"""Run untrusted generated Python in an isolation boundary, not behind a guard.

Threat model. A sample is arbitrary code written by a model: it may try to read or write files
outside its work folder, read secrets in home folders, open sockets, fork-bomb, exhaust memory or
disk, loop forever, kill or signal other processes (the evaluator included), or leave children
behind. Python-level guards (patching ``os``, ``builtins``) are not a boundary: ``posix.system``,
``importlib.reload(os)`` or ctypes get around them. So each sample runs in its own kernel
namespaces and with kernel limits instead:

- ``unshare --net --pid --mount --fork --mount-proc``: a network namespace with only a loopback
  that is down (no network at all); a PID namespace in which the sample is PID 1 and sees no other
  process (nothing to kill), and whose every process the kernel kills when the sample exits (no
  child outlives it); a mount namespace in which every mount is remounted read-only and fresh
  size-capped tmpfs cover /tmp, /var/tmp, /dev/shm, /run, /root and /home (writes go nowhere
  lasting, home folders are empty).
- As root, the sample then drops to the unprivileged user ``nobody`` (so RLIMIT_NPROC binds, and
  it owns nothing); otherwise a user namespace (``--user --map-root-user``) confines it.
- rlimits: CPU seconds, address space, file size, open files, processes; a wall-clock timeout
  after which the whole process group is SIGKILLed (and with it the PID namespace); the parent-
  death signal is SIGKILL so an evaluator crash takes the sample with it; output is capped.

If the machine refuses namespaces, :func:`run` raises :class:`SandboxUnavailable` unless the
caller explicitly passes ``allow_unsandboxed=True`` (rlimits and a process group only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from raymix.errors import RaymixError

NOBODY = 65534
_OUTPUT_CAP = 64 * 1024


class SandboxUnavailable(RaymixError):
    """This machine does not allow the namespaces the sandbox needs."""


@dataclass(frozen=True)
class Limits:
    """Kernel limits of one sample."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 64
    open_files: int = 256
    tmpfs_bytes: int = 64 << 20


@dataclass(frozen=True)
class Result:
    """How a sample ended: ``passed`` means exit status 0 within the limits."""

    status: str  # "passed", "failed" or "timeout"
    returncode: int | None
    output: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


_BOOT = str(Path(__file__).with_name("sandbox_boot.py"))  # run as a script, by path


def run(program: str, limits: Limits = Limits(), *, allow_unsandboxed: bool = False) -> Result:
    """Run ``program`` (Python source) in the sandbox and report how it ended."""
    mode = sandbox_mode()
    if mode is None and not allow_unsandboxed:
        raise SandboxUnavailable(
            "this machine refuses the namespaces the code sandbox needs (unshare --net --pid "
            "--mount); generated code is not run outside it. Pass --allow-unsandboxed "
            "(allow_unsandboxed=True) to run it with rlimits only, at your own risk"
        )
    if mode is None:
        return _run_unsandboxed(program, limits)
    cfg = {
        "drop": mode == "root",
        "uid": NOBODY,
        "python": sample_python(mode),
        "tmpfs": limits.tmpfs_bytes,
        "limits": _rlimits(limits),
    }
    cmd = _unshare(mode) + [sys.executable, "-I", "-S", _BOOT, json.dumps(cfg)]
    return _execute(cmd, program, limits.timeout_s)


def run_many(
    programs: Sequence[str],
    limits: Limits = Limits(),
    *,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> list[Result]:
    """Run several programs, ``workers`` at a time (default: the CPU count)."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(
            pool.map(lambda p: run(p, limits, allow_unsandboxed=allow_unsandboxed), programs)
        )


@cache
def sandbox_mode() -> str | None:
    """'root' (namespaces + drop to nobody), 'userns' (an unprivileged user namespace), or None
    when the machine allows neither."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for mode in (("root",) if os.geteuid() == 0 else ()) + ("userns",):
        probe = _unshare(mode) + ["/bin/sh", "-c", "exit 0"]
        try:
            if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
                return mode
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def sample_python(mode: str) -> str:
    """The interpreter samples run with: $RAYMIX_SANDBOX_PYTHON, else a system python that the
    unprivileged user can execute (a venv under /root is not), else this one."""
    given = os.environ.get("RAYMIX_SANDBOX_PYTHON")
    if given:
        return given
    if mode == "root":
        for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
            if os.path.exists(candidate):
                return os.path.realpath(candidate)
    return os.path.realpath(sys.executable)


def _unshare(mode: str) -> list[str]:
    base = ["unshare", "--net", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child"]
    return base + (["--user", "--map-root-user"] if mode == "userns" else [])


def _rlimits(limits: Limits) -> dict[str, int]:
    return {
        "RLIMIT_CPU": limits.cpu_s,
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_NPROC": limits.processes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }


def _execute(cmd: list[str], program: str, timeout_s: float) -> Result:
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed whole on timeout
    )
    assert proc.stdin is not None and proc.stdout is not None
    reader = _BoundedReader(proc.stdout)
    reader.start()
    try:
        proc.stdin.write(program.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout=timeout_s)
        status = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        status = "timeout"
    finally:
        _kill_group(proc)
        proc.wait()
    reader.join(timeout=5)
    return Result(status, proc.returncode, reader.text())


class _BoundedReader(threading.Thread):
    """Drains a pipe, keeping only its first and last bytes (a sample may print gigabytes)."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe, self.head, self.tail, self.dropped = pipe, b"", b"", 0

    def run(self) -> None:
        half = _OUTPUT_CAP // 2
        for chunk in iter(lambda: self.pipe.read1(65536), b""):
            if len(self.head) < half:
                take = half - len(self.head)
                self.head, chunk = self.head + chunk[:take], chunk[take:]
            self.tail += chunk
            if len(self.tail) > half:
                self.dropped += len(self.tail) - half
                self.tail = self.tail[-half:]

    def text(self) -> str:
        gap = f"\n[... {self.dropped} bytes dropped ...]\n".encode() if self.dropped else b""
        return (self.head + gap + self.tail).decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _run_unsandboxed(program: str, limits: Limits) -> Result:
    """Explicitly allowed fallback: rlimits and a process group, no namespaces."""
    import resource

    rl = _rlimits(limits)

    def limit() -> None:
        for name, value in rl.items():
            resource.setrlimit(getattr(resource, name), (value, value))

    with tempfile.TemporaryDirectory(prefix="raymix-sample-") as work:
        path = os.path.join(work, "sample.py")
        with open(path, "w") as f:
            f.write(program)
        cmd = [sys.executable, "-I", path]
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit,  # noqa: PLW1509 - only rlimits, before exec
        )
        try:
            out, _ = proc.communicate(timeout=limits.timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            status = "timeout"
        return Result(status, proc.returncode, out[:_OUTPUT_CAP].decode("utf-8", "replace"))
