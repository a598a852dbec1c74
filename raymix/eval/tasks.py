"""The evaluation protocol and its registry.

A task turns into requests (chat messages to answer, plus what scoring needs) and scores the
generated answers: ``metrics`` named ``<task or source>/<metric>`` (logged as ``eval/...``) and
per-sample rows (logged as a jsonl artifact). Generation is the caller's: in a trial every rank
generates its shard of the requests on the final model; ``raymix eval TASK --run`` does it on a
trial's saved checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from raymix.config.schema import EvalConfig, EvalTaskConfig, ExperimentConfig
from raymix.data.records import Message, Record
from raymix.errors import ConfigError
from raymix.eval import gsm8k, humaneval
from raymix.eval.text import exact_match, rouge_l


@dataclass(frozen=True)
class Request:
    """One prompt to answer, and what its score needs."""

    messages: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """What every evaluation task provides. A multi-turn task (MT-Bench) may also define
    ``next_round(outputs, requests) -> list[Request]``: the follow-up requests built from the
    answers so far (empty when done); ``score`` then gets every round's outputs and requests."""

    name: str

    def requests(self) -> list[Request]: ...

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]: ...


TaskFactory = Callable[[EvalTaskConfig, EvalConfig, dict[str, list[Record]]], Task]
REGISTRY: dict[str, TaskFactory] = {}


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Add a task factory to the registry under ``name``."""

    def deco(factory: TaskFactory) -> TaskFactory:
        REGISTRY[name] = factory
        return factory

    return deco


Answer = Callable[[list[Request]], list[str]]


def answer_all(task: Task, answer: Answer) -> tuple[list[str], list[Request]]:
    """Every round of ``task`` answered by ``answer`` (the caller's generation), in order."""
    outputs: list[str] = []
    requests: list[Request] = []
    pending = task.requests()
    while pending:
        got = answer(pending)
        outputs += got
        requests += pending
        follow = getattr(task, "next_round", None)
        pending = follow(got, pending) if follow else []
    return outputs, requests


def task_factory(name: str) -> TaskFactory:
    """The registered factory of task ``name``."""
    _load_plugins()
    if name not in REGISTRY:
        raise ConfigError(f"eval task {name!r} is not available; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_tasks(cfg: ExperimentConfig, heldout: dict[str, list[Record]]) -> list[Task]:
    """The configured tasks; ``heldout`` holds each source's held-out records."""
    return [task_factory(t.name)(t, cfg.eval, heldout) for t in cfg.eval.tasks]


@dataclass
class HeldoutTask:
    """Each source's held-out rows, scored by what the row carries: a final answer (``####``
    numbers: strict and flexible exact match), unit tests (pass@1 in the sandbox), or a
    reference (exact match and ROUGE-L)."""

    rows: dict[str, list[Record]]
    ecfg: EvalConfig
    name: str = "heldout"

    def requests(self) -> list[Request]:
        return [
            Request(
                _prompt_messages(r["messages"]),
                {"source": src, **r["meta"], "reference_text": r["messages"][-1]["content"]},
            )
            for src, rows in sorted(self.rows.items())
            for r in rows
        ]

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        by_source: dict[str, list[tuple[str, Request]]] = {}
        for out, req in zip(outputs, requests, strict=True):
            by_source.setdefault(req.meta["source"], []).append((out, req))
        metrics: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for src, pairs in sorted(by_source.items()):
            m, r = self._score_source(pairs)
            metrics.update({f"{src}/{k}": v for k, v in m.items()})
            rows += [{"source": src, **x} for x in r]
        return metrics, rows

    def _score_source(
        self, pairs: list[tuple[str, Request]]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Score each row by what it carries (see :func:`row_scorer`); a source's metric is the
        mean over the rows that have it (a GSM8K row without ``####`` is scored by reference)."""
        by_kind: dict[str, list[int]] = {}
        for i, (_, req) in enumerate(pairs):
            by_kind.setdefault(row_scorer(req.meta), []).append(i)
        rows: list[dict[str, Any]] = [{} for _ in pairs]
        for kind, idx in by_kind.items():
            for i, row in zip(idx, self._score_kind(kind, [pairs[i] for i in idx]), strict=True):
                rows[i] = {"scorer": kind, **row}
        sums: dict[str, list[float]] = {}
        for row in rows:
            for k in _ROW_METRICS[row["scorer"]]:
                sums.setdefault(k, []).append(float(row[k]))
        return {k: sum(v) / len(v) for k, v in sorted(sums.items())}, rows

    def _score_kind(self, kind: str, pairs: list[tuple[str, Request]]) -> list[dict[str, Any]]:
        outs = [o for o, _ in pairs]
        if kind == "answer":
            _, rows = gsm8k.score(outs, [f"#### {req.meta['answer']}" for _, req in pairs])
            return [
                {**r, "exact_match": r["flexible_extract"], "strict_match": r["strict_match"]}
                for r in rows
            ]
        if kind == "test":
            programs = [_code(o) + "\n" + req.meta["test"] for o, req in pairs]
            results = humaneval.run_checked(
                programs, self.ecfg.timeout_s, allow_unsandboxed=self.ecfg.allow_unsandboxed
            )
            return [
                {"output": o, "pass_at_1": float(st == "passed"), "result": st}
                for o, (st, _) in zip(outs, results, strict=True)
            ]
        refs = [req.meta.get("reference", req.meta["reference_text"]) for _, req in pairs]
        return [
            {
                "output": o,
                "reference": r,
                "exact_match": exact_match(o, r),
                "rouge_l": rouge_l(o, r),
            }
            for o, r in zip(outs, refs, strict=True)
        ]


_ROW_METRICS = {
    "answer": ("exact_match", "strict_match"),
    "test": ("pass_at_1",),
    "reference": ("exact_match", "rouge_l"),
}


def row_scorer(meta: dict[str, Any]) -> str:
    """How a held-out row is scored, from what it carries: ``answer`` (a final number: GSM8K
    strict and flexible exact match), ``test`` (unit tests: pass@1 in the sandbox) or
    ``reference`` (its reference answer: exact match and ROUGE-L)."""
    if "answer" in meta:
        return "answer"
    if "test" in meta:
        return "test"
    return "reference"


@register("heldout")
def _heldout(t: EvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    return HeldoutTask({s: rows[: t.limit] for s, rows in heldout.items() if rows}, e)


@dataclass
class GSM8KTask:
    """GSM8K test questions with the trial's template, zero-shot or with ``shots`` solved
    examples as earlier turns of the chat; lm-eval-harness extraction and normalisation."""

    rows: list[dict[str, Any]]
    shots: list[dict[str, Any]] = field(default_factory=list)
    name: str = "gsm8k"

    def requests(self) -> list[Request]:
        context: list[Message] = []
        for s in self.shots:
            context += [Message(role="user", content=s["question"]),
                        Message(role="assistant", content=s["answer"])]  # fmt: skip
        return [
            Request(
                context + [Message(role="user", content=r["question"])], {"answer": r["answer"]}
            )
            for r in self.rows
        ]

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        m, rows = gsm8k.score(outputs, [r.meta["answer"] for r in requests])
        return {
            "gsm8k/exact_match": m["flexible_extract"],
            "gsm8k/strict_match": m["strict_match"],
        }, rows


@register("gsm8k")
def _gsm8k(t: EvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    from raymix.eval.cli import load_gsm8k_references

    shots: list[dict[str, Any]] = []
    if t.shots:
        # like lm-eval: exemplars drawn from the train split with a fixed seed
        pool = load_gsm8k_references(t.fewshot_path, split="train")
        pick = np.random.default_rng(1234).choice(len(pool), size=t.shots, replace=False)
        shots = [pool[int(i)] for i in pick]
    return GSM8KTask(load_gsm8k_references(t.path)[: t.limit], shots)


@dataclass
class HumanEvalTask:
    """HumanEval problems as chat requests; the code in the answer completes the function."""

    problems: dict[str, dict[str, Any]]
    samples: int
    ecfg: EvalConfig
    name: str = "humaneval"

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
            {"task_id": r.meta["task_id"], "completion": "\n" + _code(o)}
            for o, r in zip(outputs, requests, strict=True)
        ]
        m, rows = humaneval.score(
            self.problems,
            samples,
            timeout_s=self.ecfg.timeout_s,
            allow_unsandboxed=self.ecfg.allow_unsandboxed,
        )
        # MLflow metric names may not contain "@": pass@k is logged as pass_at_k
        return {f"humaneval/{k.replace('@', '_at_')}": v for k, v in m.items()}, rows


@register("humaneval")
def _humaneval(t: EvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    from raymix.eval.cli import load_humaneval_problems

    problems = load_humaneval_problems(t.path)
    keep = list(problems)[: t.limit]
    return HumanEvalTask({k: problems[k] for k in keep}, t.samples, e)


def _prompt_messages(messages: list[Message]) -> list[Message]:
    """The conversation up to (not including) its last assistant turn."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.DOTALL)


def _code(text: str) -> str:
    """The first fenced code block of an answer, or the answer itself."""
    m = _FENCE.search(text)
    return m.group(1) if m else text


def _load_plugins() -> None:
    """Import the task modules that register themselves (judge and harness tasks)."""
    import importlib

    for module in ("raymix.eval.judge", "raymix.eval.harness"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
