"""The code sandbox contains hostile programs: each test checks the effect did not happen."""

from __future__ import annotations

import os
import socket
import subprocess
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
print("pid", os.getpid(), "sees", len([p for p in os.listdir('/proc') if p.isdigit()]))
for pid in ({me}, {os.getppid()}, 1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as e:
        print("refused", pid, e.errno)
""",
        QUICK,
    )
    assert "pid 1 sees" in result.output  # PID 1 of its own namespace, alone
    assert os.getpid() == me  # we are alive to check


def test_posix_system_and_reloading_os_change_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)
    result = run(
        f"""
import importlib, os, posix
os = importlib.reload(os)
posix.system("touch {marker} /etc/pwned 2>/dev/null; id -u")
os.system("cat /root/.bashrc 2>&1 | head -1")
""",
        QUICK,
    )
    assert not marker.exists() and not Path("/etc/pwned").exists()
    assert "65534" in result.output or os.geteuid() != 0


def test_children_do_not_outlive_the_sample(tmp_path: Path) -> None:
    # a duration no other process on the machine uses, so pgrep finds only the sample's children
    seconds = f"300.{os.getpid()}{time.monotonic_ns() % 10_000}"
    result = run(
        f"""
import os, subprocess
subprocess.Popen(["sleep", "{seconds}"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", "{seconds}"])
print("parent leaving")
""",
        QUICK,
    )
    assert "parent leaving" in result.output
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "a child of the sample survived it"


def test_refuses_to_run_without_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_mode", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="allow-unsandboxed"):
        run("print(1)")
    assert run("print(1)", allow_unsandboxed=True).output == "1\n"


def test_a_flood_of_output_is_capped() -> None:
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", Limits(timeout_s=2))
    assert result.status in ("timeout", "failed")
    assert len(result.output) < 100_000 and "bytes dropped" in result.output
