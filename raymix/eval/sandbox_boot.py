"""The sandbox's boot program: PID 1 of a sample's fresh namespaces (run as a script,
``python -I -S sandbox_boot.py``, with the job as JSON on stdin).

It never runs untrusted code itself. It builds a minimal root (the interpreter, its shared
libraries and its standard library, bound read-only; four harmless devices; a private devpts;
size-capped tmpfs for /tmp, /dev/shm and the work folder) and pivots into it, so the host's
filesystem is unmounted from the sample's view. Then it starts the sample's processes, each with
the rlimits, without privileges (the unprivileged uid as root, every capability dropped in a
user namespace), with ``no_new_privs`` and a system-call filter, and with SIGKILL as parent-
death signal; it waits for their verdict, kills every other process of the namespace, and writes
the verdict on the host's verdict pipe, which no sample process holds. When it exits, the kernel
kills whatever is left in the PID namespace.

Modes: ``script`` runs one program, the verdict is its exit status; ``check`` runs the candidate
and the checker of :mod:`raymix.eval.sandbox_runner`, the verdict is the checker's.
With ``isolate`` false (the explicitly allowed unsandboxed fallback) it skips the namespace
steps and runs in a temporary folder. Standard library only: it runs with ``-S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 24, 38, 22
SECCOMP_MODE_FILTER = 2
RUNNER = Path(__file__).with_name("sandbox_runner.py")
MOUNT_POINTS = ("/mnt", "/media", "/srv", "/opt", "/tmp")  # where the new root is built
STARTED = b"S"  # on the verdict pipes: the sample's code starts now (the timeout counts from here)
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/work", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}

libc = ctypes.CDLL(None, use_errno=True)


def main() -> None:
    job: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    verdict_fd = os.dup(job["verdict_fd"])  # off the low fds the children's pipes take
    os.close(job["verdict_fd"])
    if job["isolate"]:
        work, runner = "/work", "/raymix/runner.py"
        _build_root(job)
    else:
        work = tempfile.mkdtemp(prefix="raymix-sample-")
        runner = str(RUNNER)
        if job["mode"] == "script":
            Path(work, "sample.py").write_text(job["program"])
    pids: list[int] = []
    try:
        if job["mode"] == "check":
            verdict = _check(job, work, runner, pids, verdict_fd)
        else:
            verdict = _script(job, work, pids, verdict_fd)
    finally:
        if job["isolate"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # as PID 1: every other process of the namespace
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap_all()
        if not job["isolate"]:
            shutil.rmtree(work, ignore_errors=True)
    os.write(verdict_fd, json.dumps(verdict).encode())


def _script(job: dict[str, Any], work: str, pids: list[int], host: int) -> dict[str, Any]:
    pid = _spawn(job, work, [job["python"], "-I", work + "/sample.py"], {}, b"")
    pids.append(pid)
    os.write(host, STARTED)
    _, status = os.waitpid(pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status)}


def _check(
    job: dict[str, Any], work: str, runner: str, pids: list[int], host: int
) -> dict[str, Any]:
    calls_r, calls_w = os.pipe()
    answers_r, answers_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    candidate = json.dumps(job["candidate"]).encode()
    checker = json.dumps(job["checker"]).encode()
    argv = [job["python"], "-I", runner]
    # unbuffered: the candidate is killed once the verdict is in, and its output must be whole
    unbuffered = [job["python"], "-I", "-u", runner, "candidate"]
    pids.append(_spawn(job, work, unbuffered, {3: calls_r, 4: answers_w}, candidate))
    fds = {3: calls_w, 4: answers_r, 5: verdict_w}
    pids.append(_spawn(job, work, [*argv, "checker"], fds, checker))
    for fd in (calls_r, calls_w, answers_r, answers_w, verdict_w):
        os.close(fd)
    with os.fdopen(verdict_r, "rb") as f:
        data = f.read(1)
        if data == STARTED:  # the checker is about to run the tests: their clock starts
            os.write(host, STARTED)
            data = b""
        data += f.read(1 << 20)
    try:
        verdict = json.loads(data)
    except ValueError:
        verdict = {"passed": False, "error": "the checker ended without a verdict"}
    return {"passed": verdict.get("passed") is True, "error": str(verdict.get("error", ""))}


def _spawn(
    job: dict[str, Any], work: str, argv: list[str], fds: dict[int, int], stdin: bytes
) -> int:
    """Start one sample process: ``fds`` maps the child's fd numbers to ours; ``stdin`` is its
    input. It runs unprivileged, limited and filtered from its first instruction."""
    stdin_r, stdin_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for target, source in fds.items():  # staged high first: a source may be a target
                os.dup2(source, 100 + target)
            os.dup2(stdin_r, 0)
            for target in fds:
                os.dup2(100 + target, target)
            os.closerange(max(fds, default=2) + 1, 1 << 16)
            os.chdir(work)
            _confine(job)
            os.execve(argv[0], argv, ENV)
        except BaseException as exc:  # noqa: BLE001 - the child must never return into boot
            os.write(2, f"raymix sandbox: cannot start the sample: {exc!r}\n".encode())
        finally:
            os._exit(127)
    os.close(stdin_r)
    with contextlib.suppress(BrokenPipeError):  # a child that died before reading its input
        _write_all(stdin_w, stdin)
    os.close(stdin_w)
    return pid


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _confine(job: dict[str, Any]) -> None:
    """In the child, before exec: limits, privileges dropped, no_new_privs, the syscall filter."""
    for name, value in job["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if job["drop"] == "uid":
        os.setgroups([])
        os.setgid(job["uid"])
        os.setuid(job["uid"])
    elif job["drop"] == "caps":
        # no capability survives the exec: empty bounding and inheritable sets, no ambient ones
        cap = 0
        while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_PDEATHSIG")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    bpf = bytes.fromhex(job["seccomp"])
    if bpf:
        _load_filter(bpf)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_filter(bpf: bytes) -> None:
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.cast(program, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def _reap_all() -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(src), target.encode(), enc(fstype), flags, data.encode() or None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _bind_ro(source: str, target: str, extra: int = MS_NODEV) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(target).touch()
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | extra)


def _build_root(job: dict[str, Any]) -> None:
    """The sample's whole filesystem, then pivot into it and detach the host's."""
    root, tmpfs = job["root"], job["tmpfs"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    new = next(p for p in MOUNT_POINTS if os.path.isdir(p) and not _shadows(p, root))
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for path in root["dirs"] + root["files"]:
        _bind_ro(path, new + path)
    for path in root["hide"]:  # e.g. site-packages inside the standard library folder
        if os.path.isdir(new + path):
            _mount("tmpfs", new + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    for path in root["devices"]:
        _bind_ro(path, new + path, extra=MS_NOEXEC)
    for path in ("/tmp", "/dev/shm", "/work"):
        os.makedirs(new + path)
        _mount("tmpfs", new + path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs},mode=1777")
    os.makedirs(new + "/dev/pts")
    with contextlib.suppress(OSError):  # a kernel without devpts instances: an empty /dev/pts
        _mount(
            "devpts", new + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666"
        )
        os.symlink("pts/ptmx", new + "/dev/ptmx")
    os.makedirs(new + "/raymix")
    shutil.copyfile(RUNNER, new + "/raymix/runner.py")
    if job["mode"] == "script":
        Path(new + "/work/sample.py").write_text(job["program"])
    if job["drop"] == "uid":
        os.chown(new + "/work", job["uid"], job["uid"])
    _mount(None, new, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    os.chdir(new)
    if libc.syscall(job["pivot_root_nr"], b".", b".") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root")
    if libc.umount2(b".", MNT_DETACH) != 0:  # the host's root, stacked under the new one
        raise OSError(ctypes.get_errno(), "umount the host's root")
    os.chdir("/")


def _shadows(mount_point: str, root: dict[str, list[str]]) -> bool:
    paths = root["dirs"] + root["files"] + root["devices"]
    return any(p == mount_point or p.startswith(mount_point + "/") for p in paths)


if __name__ == "__main__":
    main()
