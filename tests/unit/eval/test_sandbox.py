"""The code sandbox contains hostile programs: each test checks the effect did not happen."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

import pytest

from raymix.eval import sandbox
from raymix.eval.sandbox import Limits, run

pytestmark = pytest.mark.skipif(
    sandbox.sandbox_mode() is None, reason="this machine refuses the namespaces the sandbox needs"
)
QUICK = Limits(timeout_s=5, cpu_s=5)


def test_a_plain_program_passes_and_a_failing_one_fails() -> None:
    assert run("assert 1 + 1 == 2\nprint('ok')").output == "ok\n"
    bad = run("assert 1 + 1 == 3")
    assert bad.status == "failed" and "AssertionError" in bad.output


def test_writes_outside_the_work_dir_do_not_land(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)
    result = run(
        f"""
import os
for path in [{str(target)!r}, "/etc/raymix-escaped", "/work/raymix-escaped", "/var/tmp/escaped"]:
    try:
        open(path, "w").write("x")
    except OSError as e:
        print("blocked", path, e.errno)
""",
        QUICK,
    )
    assert not target.exists() and not Path("/etc/raymix-escaped").exists()
    assert not Path("/var/tmp/escaped").exists()
    assert result.output.count("blocked") >= 3


def test_home_directories_are_not_readable() -> None:
    secret = Path.home() / ".raymix-sandbox-secret"
    secret.write_text("top secret")
    try:
        result = run(
            f"""
import os
try:
    print(open({str(secret)!r}).read())
except OSError as e:
    print("denied", e.errno)
print(sorted(os.listdir({str(Path.home())!r})))
""",
            QUICK,
        )
        assert "top secret" not in result.output and "denied" in result.output
    finally:
        secret.unlink()


def test_no_network_even_to_loopback() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        result = run(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')",
            QUICK,
        )
        assert result.status == "failed" and "connected" not in result.output
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_fork_bomb_is_contained() -> None:
    start = time.monotonic()
    result = run(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        Limits(timeout_s=4, cpu_s=4),
    )
    assert result.status in ("timeout", "failed")
    assert time.monotonic() - start < 20
    assert run("print('still fine')").output == "still fine\n"


def test_memory_bomb_is_refused() -> None:
    result = run("x = bytearray(8 << 30)\nprint('allocated')", QUICK)
    assert result.status == "failed" and "MemoryError" in result.output


def test_endless_loop_is_killed_on_time() -> None:
    start = time.monotonic()
    result = run("while True:\n    pass", Limits(timeout_s=1.5, cpu_s=10))
    assert result.status == "timeout"
    assert time.monotonic() - start < 6


def test_cannot_kill_or_see_the_parent() -> None:
    me = os.getpid()
    result = run(
        f"""
import os, signal
print("pid", os.getpid(), "proc", os.path.exists("/proc"))
for pid in ({me}, {os.getppid()}, 1, -1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as e:
        print("refused", pid, e.errno)
""",
        QUICK,
    )
    assert "proc False" in result.output  # no /proc: nothing of the host's processes to see
    assert f"refused {me}" in result.output  # not in its PID namespace
    assert os.getpid() == me  # we are alive to check


def test_posix_system_and_reloading_os_change_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)
    result = run(
        f"""
import importlib, os, posix
os = importlib.reload(os)
print("system", posix.system("touch {marker} /etc/pwned"), "uid", os.getuid())
print("shell", os.path.exists("/bin/sh"))
""",
        QUICK,
    )
    assert not marker.exists() and not Path("/etc/pwned").exists()
    assert "shell False" in result.output  # the minimal root has no shell and no tools
    assert "uid 65534" in result.output or os.geteuid() != 0


def _processes_named(name: str) -> list[str]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == name:
                found.append(comm.parent.name)
    return found


LEAVER = """
import ctypes, os, time
libc = ctypes.CDLL(None)
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: no signal when the parent dies
        if os.fork() == 0:
            libc.prctl(15, b"{name}", 0, 0, 0)  # PR_SET_NAME, to be found from the host
            time.sleep(120)
        os._exit(0)
print("parent leaving", flush=True)
{then}
"""


@pytest.mark.parametrize("then", ["", "import time; time.sleep(120)"], ids=["exits", "times_out"])
def test_nothing_outlives_its_sample(then: str) -> None:
    name = f"rmx{os.getpid() % 10_000}{time.monotonic_ns() % 100_000}"[:15]
    start = time.monotonic()
    result = run(LEAVER.format(name=name, then=then), Limits(timeout_s=3, cpu_s=5))
    assert "parent leaving" in result.output, result.output
    assert time.monotonic() - start < 60  # not held until the children's sleep ends
    assert _processes_named(name) == [], "a process of the sample outlived it"


def test_a_process_exhausting_sample_leaves_no_process_behind() -> None:
    def nobody_processes() -> int:
        return sum(1 for st in Path("/proc").glob("[0-9]*/status") if _uid(st) == sandbox.NOBODY)

    before = nobody_processes()
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork() or time.sleep(60)\n    except OSError:\n        time.sleep(0.01)\n"
    results = sandbox.run_many([bomb] * 4, Limits(timeout_s=2, cpu_s=5), workers=2)
    assert {r.status for r in results} <= {"timeout", "failed"}
    assert nobody_processes() <= before


def _uid(status: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in status.read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def test_shared_memory_and_message_queues_are_private_to_a_sample() -> None:
    key = 0x5EED0000 + os.getpid() % 0xFFFF
    create = f"""
import ctypes, mmap
libc = ctypes.CDLL(None, use_errno=True)
shmid = libc.shmget({key}, 512 << 20, 0o1666)  # IPC_CREAT | 0666: 512 MiB of SysV memory
print("shm", shmid, ctypes.get_errno())
mq = libc.mq_open(b"/raymix-leak", 0o100 | 2, 0o666, None)  # O_CREAT | O_RDWR
print("mq", mq)
open("/dev/shm/raymix-leak", "w").write("x" * 1000)
"""
    read = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget({key}, 0, 0), "mq", libc.mq_open(b"/raymix-leak", 2),
      "file", os.path.exists("/dev/shm/raymix-leak"))
"""
    first = run(create, QUICK)
    assert "shm -1" not in first.output, first.output  # it did create the segment
    second = run(read, QUICK)
    assert "shm -1 mq -1 file False" in second.output, second.output
    host_keys = [line.split()[0] for line in Path("/proc/sysvipc/shm").read_text().splitlines()]
    assert str(key) not in host_keys  # nothing stays allocated on the host
    assert not Path("/dev/shm/raymix-leak").exists()


def test_the_root_holds_the_interpreter_and_its_standard_library_only() -> None:
    project = Path(__file__).resolve()
    result = run(
        f"""
import os, sys, json
print(sorted(os.listdir("/")))
print("project", os.path.exists({str(project)!r}), "passwd", os.path.exists("/etc/passwd"))
print("site", [p for p in sys.path if os.path.isdir(p) and os.listdir(p) and "packages" in p])
import json, decimal, sqlite3, hashlib, ssl  # the standard library works
""",
        QUICK,
    )
    assert result.passed, result.output
    top = set(eval(result.output.splitlines()[0]))
    assert top <= {"usr", "lib", "lib64", "etc", "dev", "tmp", "work", "raymix", "bin", "root"}
    assert "project False passwd False" in result.output
    assert "site []" in result.output


def test_no_new_privileges_and_the_syscall_filter_hold() -> None:
    result = run(
        """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
print("nnp", libc.prctl(39, 0, 0, 0, 0), "seccomp", libc.prctl(21, 0, 0, 0, 0))
calls = {
    "mount": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
    "unshare": lambda: libc.unshare(0x10000000),
    "ptrace": lambda: libc.ptrace(0, 0, 0, 0),
    "keyctl": lambda: libc.syscall(250, 0, 0, 0, 0),
    "bpf": lambda: libc.syscall(321, 0, 0, 0),
    "setns": lambda: libc.setns(0, 0),
    "init_module": lambda: libc.syscall(175, 0, 0, 0),
}
for name, call in calls.items():
    ctypes.set_errno(0)
    print(name, call(), errno.errorcode.get(ctypes.get_errno()))
""",
        QUICK,
    )
    assert "nnp 1 seccomp 2" in result.output, result.output
    for name in ("mount", "unshare", "ptrace", "keyctl", "bpf", "setns", "init_module"):
        assert f"{name} -1 EPERM" in result.output, result.output


def test_the_filter_refuses_what_is_listed_and_nothing_a_program_needs() -> None:
    import pyseccomp

    assert "ptrace" in sandbox.DENIED_SYSCALLS and "kexec_load" in sandbox.DENIED_SYSCALLS
    for needed in ("read", "write", "clone", "execve", "mmap", "openat", "socket"):
        assert needed not in sandbox.DENIED_SYSCALLS
        assert pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, needed) >= 0


def test_refuses_to_run_without_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_mode", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="allow-unsandboxed"):
        run("print(1)")
    assert run("print(1)", allow_unsandboxed=True).output == "1\n"


def test_a_flood_of_output_is_capped() -> None:
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", Limits(timeout_s=2))
    assert result.status in ("timeout", "failed")
    assert len(result.output) < 100_000 and "bytes dropped" in result.output
