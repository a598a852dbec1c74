"""HumanEval (and any problem file in its format): programs built as human-eval builds them, run
in the sandbox, scored with the unbiased pass@k estimator (Chen et al., 2021)."""

from __future__ import annotations

import ast
import builtins
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymix.config.schema import EvalConfig, HumanEvalTaskConfig
from raymix.data.files import hub_rows, read_jsonl
from raymix.data.records import Message, Record
from raymix.errors import DataError
from raymix.eval import sandbox
from raymix.eval.protocol import Request, Task, TaskKind

HUB_HUMANEVAL = "openai/openai_humaneval"

DEFAULT_TIMEOUT_S = 3.0  # human-eval's per-sample timeout


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from ``n`` samples of which ``c`` passed."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def run_checked(
    checks: Sequence[sandbox.Check],
    timeout_s: float,
    *,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> list[tuple[str, str]]:
    """(status, output) per check made in the sandbox (:func:`raymix.eval.sandbox.check`): the
    generated code answers calls from the trusted test code in another process, and only the
    test's process can write the verdict, so no trick in the generated code (printing a pass
    marker, exit hooks, ``os._exit(0)``) turns a failed or unfinished test into a pass."""
    limits = sandbox.Limits(timeout_s=timeout_s, cpu_s=int(timeout_s) + 1)
    results = sandbox.check_many(
        checks, limits, workers=workers, allow_unsandboxed=allow_unsandboxed
    )
    return [(r.status, r.output.rstrip()[-2000:]) for r in results]


def problem_check(problem: dict[str, Any], completion: str) -> sandbox.Check:
    """A HumanEval sample as a check: the prompt and completion are the candidate; the prompt
    (for its helper functions) and the tests run in the checker."""
    entry = problem["entry_point"]
    return sandbox.Check(
        candidate=problem["prompt"] + completion,
        entry_points=(entry,),
        setup=_runnable(problem["prompt"]),
        test=problem["test"] + f"\ncheck({entry})\n",
    )


def _runnable(prompt: str) -> str:
    """The prompt as code the checker can run for its helpers: as it is, with a body added to
    a bare last signature, or nothing."""
    for code in (prompt, prompt.rstrip() + "\n    pass\n"):
        try:
            compile(code, "prompt", "exec")
            return code
        except SyntaxError:
            continue
    return ""


def called_names(test: str) -> tuple[str, ...]:
    """The functions a test calls that it neither defines nor imports and that are not
    builtins: what the code under test must provide (for rows with no ``entry_point``)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return ()
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    called = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    return tuple(sorted({c for c in called if c not in defined and not hasattr(builtins, c)}))


def score(
    problems: dict[str, dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(pass@k for every k up to the fewest samples per problem, per-sample results)."""
    for i, s in enumerate(samples):
        if s.get("task_id") not in problems:
            raise DataError(f"sample {i}: unknown task_id {s.get('task_id')!r}")
        if not isinstance(s.get("completion"), str):
            raise DataError(f"sample {i}: missing 'completion' text")
    checks = [problem_check(problems[s["task_id"]], s["completion"]) for s in samples]
    results = run_checked(checks, timeout_s, workers=workers, allow_unsandboxed=allow_unsandboxed)
    per_task: dict[str, list[bool]] = defaultdict(list)
    rows = []
    for s, (status, output) in zip(samples, results, strict=True):
        per_task[s["task_id"]].append(status == "passed")
        rows.append({**s, "result": status, "passed": status == "passed", "output": output})
    n_min = min(len(v) for v in per_task.values()) if per_task else 0
    metrics = {
        f"pass@{k}": float(np.mean([pass_at_k(len(v), sum(v), k) for v in per_task.values()]))
        for k in range(1, n_min + 1)
    }
    return metrics, rows


def load_humaneval_problems(path: str | None) -> dict[str, dict[str, Any]]:
    """Problems by task_id from a local file, or the hub's HumanEval."""
    rows = read_jsonl(path) if path else hub_rows(HUB_HUMANEVAL, None, "test", "--problems")
    need = ("task_id", "prompt", "test", "entry_point")
    first_line: dict[str, int] = {}
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise DataError(
                f"{path}:{i + 1}: missing field(s) {', '.join(missing)} of the HumanEval format "
                f"({', '.join(need)})"
            )
        if r["task_id"] in first_line:
            raise DataError(
                f"{path}:{i + 1}: task_id {r['task_id']!r} repeats line "
                f"{first_line[r['task_id']]}; each problem appears once"
            )
        first_line[r["task_id"]] = i + 1
    return {r["task_id"]: r for r in rows}


_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block of an answer, or the answer itself."""
    m = _FENCE.search(text)
    return m.group(1) if m else text


@dataclass
class HumanEvalTask:
    """HumanEval problems as chat requests; the code in the answer completes the function."""

    problems: dict[str, dict[str, Any]]
    samples: int
    ecfg: EvalConfig
    name: str = "humaneval"
    kind: TaskKind = "generate"

    def requests(self) -> list[Request]:
        return [
            Request(
                [
                    Message(
                        role="user",
                        content=f"Complete the following Python function:\n```python\n{p['prompt']}```",
                    )
                ],
                {"task_id": tid},
            )
            for tid, p in self.problems.items()
            for _ in range(self.samples)
        ]

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        samples = [
            {"task_id": r.meta["task_id"], "completion": "\n" + extract_code(o)}
            for o, r in zip(outputs, requests, strict=True)
        ]
        m, rows = score(
            self.problems,
            samples,
            timeout_s=self.ecfg.timeout_s,
            allow_unsandboxed=self.ecfg.allow_unsandboxed,
        )
        # MLflow metric names may not contain "@": pass@k is logged as pass_at_k
        return {f"humaneval/{k.replace('@', '_at_')}": v for k, v in m.items()}, rows


def make_task(t: HumanEvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    problems = load_humaneval_problems(t.path)
    keep = list(problems)[: t.limit]
    return HumanEvalTask({k: problems[k] for k in keep}, t.samples, e)
