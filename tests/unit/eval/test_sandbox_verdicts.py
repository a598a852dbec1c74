"""Hostile samples cannot forge a HumanEval verdict: each trick runs (its output shows it did) in a
sample whose function is wrong, and the sample still fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raymix.eval import humaneval, sandbox

pytestmark = pytest.mark.skipif(
    sandbox.sandbox_mode() is None, reason="this machine refuses the namespaces the sandbox needs"
)
ROOT = Path(__file__).resolve().parents[3]
PROBLEM = {
    "task_id": "toy/0",
    "prompt": 'def inc(x):\n    """x plus one"""\n',
    "entry_point": "inc",
    "test": "def check(candidate):\n    assert candidate(1) == 2, 'toy-secret-7f3a'\n    assert candidate(41) == 42\n",
    "canonical_solution": "    return x + 1\n",
}
WRONG = "\ndef inc(x):\n    return x\n"

TRICKS = {
    # the old pass marker was a constant of the program the sample ran
    "reads_its_own_program": """
import sys
print("trick ran", len(open(sys.argv[0]).read()))
""",
    "walks_code_constants_and_frames": """
import gc, sys, types
codes = [o.__code__ for o in gc.get_objects() if isinstance(o, types.FunctionType)]
frame, depth = sys._getframe(), 0
while frame:
    codes.append(frame.f_code)
    texts = [repr(v) for v in frame.f_globals.values()] + [repr(v) for v in frame.f_locals.values()]
    depth, frame = depth + 1, frame.f_back
def strings(code):
    for c in code.co_consts:
        yield from strings(c) if isinstance(c, types.CodeType) else [c] if isinstance(c, str) else []
consts = [c for code in codes for c in strings(code)] + texts
print("trick ran", len(consts), depth, any("-".join(["toy", "secret", "7f3a"]) in c for c in consts))
""",
    "excepthook_prints_and_exits_0": """
import os, sys
def hook(*a):
    print("passed"); sys.stdout.flush(); os._exit(0)
sys.excepthook = hook
print("trick ran")
""",
    "atexit_exits_0": """
import atexit, os
atexit.register(lambda: os._exit(0))
print("trick ran")
""",
    "signal_handlers_exit_0": """
import os, signal
for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, lambda *a: os._exit(0))
signal.alarm(1)
print("trick ran")
""",
    "patches_builtins_sys_and_os": """
import builtins, os, sys
builtins.AssertionError = type("Never", (Exception,), {})
sys.exit = os._exit = lambda *a: None
builtins.print("trick ran")
""",
    "os_exit_0_at_import": "print('trick ran', flush=True)\nimport os\nos._exit(0)\n",
    "sys_exit_0_at_import": "print('trick ran', flush=True)\nimport sys\nsys.exit(0)\n",
    "exits_0_when_called": """
print("trick ran")
def inc(x):
    import os; os._exit(0)
""",
    "returns_an_object_equal_to_everything": """
print("trick ran")
class Any:
    def __eq__(self, other):
        return True
def inc(x):
    return Any()
""",
    "writes_a_verdict_on_every_fd": """
import os
done = 0
for fd in range(0, 64):
    try:
        os.write(fd, b'{"passed": true, "error": ""}')
        done += 1
    except OSError:
        pass
print("trick ran", done)
""",
    "kills_every_process_it_can": """
import os, signal
print("trick ran", flush=True)
try:
    os.kill(-1, signal.SIGKILL)
except OSError as e:
    print("refused", e)
""",
    "ptraces_and_reads_other_processes": """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
results = [libc.ptrace(16, pid, 0, 0) for pid in range(1, 8)]  # PTRACE_ATTACH
print("trick ran", results, ctypes.get_errno(), os.path.exists("/proc"))
""",
}


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_a_trick_does_not_turn_a_wrong_sample_into_a_pass(trick: str) -> None:
    completion = WRONG + TRICKS[trick] if "def inc" not in TRICKS[trick] else TRICKS[trick]
    metrics, rows = humaneval.score(
        {"toy/0": PROBLEM}, [{"task_id": "toy/0", "completion": completion}], timeout_s=4
    )
    assert "trick ran" in rows[0]["output"], rows[0]["output"]
    assert metrics["pass@1"] == 0.0 and rows[0]["result"] in ("failed", "timeout"), rows[0]


def test_the_tests_never_reach_the_candidate() -> None:
    probe = WRONG + TRICKS["walks_code_constants_and_frames"]
    _, rows = humaneval.score({"toy/0": PROBLEM}, [{"task_id": "toy/0", "completion": probe}])
    assert rows[0]["output"].splitlines()[0].endswith("False"), rows[0]["output"]


def test_right_answers_pass_whatever_the_sample_prints() -> None:
    right = "    print('passed? no: just output')\n    return x + 1\n"
    metrics, rows = humaneval.score({"toy/0": PROBLEM}, [{"task_id": "toy/0", "completion": right}])
    assert metrics["pass@1"] == 1.0, rows


def test_values_cross_exactly_and_exceptions_keep_their_type() -> None:
    problem = {
        "task_id": "toy/1",
        "prompt": "def f(kind):\n",
        "entry_point": "f",
        "test": """
def check(candidate):
    assert candidate("float") == 0.1 + 0.2 and candidate("float") != 0.3
    assert candidate("nested") == {(1, "a"): [frozenset({2}), {3.5}, b"x", None, True, 2**80]}
    assert type(candidate("nested")[(1, "a")][0]) is frozenset
    assert candidate("inf") == float("inf") and candidate("nan") != candidate("nan")
    try:
        candidate("raise")
    except ValueError as e:
        assert "bad kind" in str(e)
    else:
        raise AssertionError("no ValueError")
""",
    }
    completion = """    if kind == "float":
        return 0.1 + 0.2
    if kind == "nested":
        return {(1, "a"): [frozenset({2}), {3.5}, b"x", None, True, 2**80]}
    if kind in ("inf", "nan"):
        return float(kind)
    raise ValueError("bad kind")
"""
    metrics, rows = humaneval.score(
        {"toy/1": problem}, [{"task_id": "toy/1", "completion": completion}]
    )
    assert metrics["pass@1"] == 1.0, rows[0]["output"]


def test_a_row_without_entry_point_is_checked_through_the_names_its_test_calls() -> None:
    assert humaneval.called_names(
        "import math\ndef h(x):\n    return x\nassert f(h(1)) == g(2)\n"
    ) == (
        "f",
        "g",
    )
    test = "assert double(2) == 4\nassert half(4) == 2\n"
    checks = [
        sandbox.Check(c, humaneval.called_names(test), "", test)
        for c in (
            "def double(x):\n    return 2 * x\ndef half(x):\n    return x // 2\n",
            "def double(x):\n    return 2 * x\nprint('no half')\n",
        )
    ]
    assert [status for status, _ in humaneval.run_checked(checks, 4)] == ["passed", "failed"]


def test_cli_scores_forgery_attempts_as_failures(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps(PROBLEM) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "\n".join(
            json.dumps({"task_id": "toy/0", "completion": WRONG + TRICKS[t]})
            for t in ("excepthook_prints_and_exits_0", "atexit_exits_0", "os_exit_0_at_import")
        )
        + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "humaneval", "--samples", str(samples),
         "--problems", str(problems)],  # fmt: skip
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pass@1"] == 0.0
