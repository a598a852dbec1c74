"""The sandbox's boot program: run as a script (``python -I -S sandbox_boot.py CONFIG``) as PID 1
of the sample's fresh PID, network and mount namespaces, it locks the filesystem down, drops
privileges and limits, then replaces itself with the sample's interpreter.

Steps (see :mod:`raymix.eval.sandbox` for the threat model): make every mount private and
remount each read-only; cover /tmp, /var/tmp, /dev/shm, /run, /root and /home with fresh
size-capped tmpfs; write the sample (read from stdin) into /tmp/work; set the rlimits; as root,
drop to the unprivileged uid; ask for SIGKILL on the parent's death; exec the sample with a
minimal environment. Standard library only: it runs with ``-S`` before anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
WORK = "/tmp/work"


def main(argv: list[str]) -> None:
    """Boot one sample: ``argv[0]`` is the JSON config, the program comes on stdin."""
    cfg: dict[str, Any] = json.loads(argv[0])
    program = sys.stdin.read()
    libc = ctypes.CDLL(None, use_errno=True)
    _lock_filesystem(libc, cfg["tmpfs"])
    os.mkdir(WORK)
    with open(WORK + "/sample.py", "w") as f:
        f.write(program)
    if cfg["drop"]:
        os.chown(WORK, cfg["uid"], cfg["uid"])
        os.chown(WORK + "/sample.py", cfg["uid"], cfg["uid"])
    os.chdir(WORK)
    for name, value in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if cfg["drop"]:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the uid change above cleared it
    env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    os.execve(cfg["python"], [cfg["python"], "-I", "sample.py"], env)


def _mount(
    libc: Any, src: str, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    fs = fstype.encode() if fstype else None
    opts = data.encode() if data else None
    if libc.mount(src.encode(), target.encode(), fs, flags, opts) != 0:
        raise OSError(ctypes.get_errno(), "mount " + target)


def _lock_filesystem(libc: Any, tmpfs_bytes: int) -> None:
    """Every mount private and read-only (bar /proc, the namespace's own); private tmpfs over
    the writable and secret-holding folders."""
    _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            t = line.split()[4].encode().decode("unicode_escape")
            if t != "/proc" and not t.startswith("/proc/"):
                targets.append(t)
    for t in sorted(set(targets), key=len):
        # a mount we may not touch stays as it is; the private tmpfs below still hide data
        with contextlib.suppress(OSError):
            _mount(libc, "none", t, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    size = f"size={tmpfs_bytes},mode=1777"
    for t in PRIVATE_TMPFS:
        if os.path.isdir(t):
            _mount(libc, "tmpfs", t, "tmpfs", 0, size)


if __name__ == "__main__":
    main(sys.argv[1:])
