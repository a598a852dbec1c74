"""The ``heldout`` task: each source's held-out rows answered by the model and scored row by row
by what the row carries (see :func:`row_scorer`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raymix.config.schema import EvalConfig, HeldoutTaskConfig
from raymix.data.records import Message, Record
from raymix.eval import gsm8k, humaneval, sandbox
from raymix.eval.humaneval import extract_code
from raymix.eval.protocol import Request, Task, TaskKind
from raymix.eval.text import exact_match, rouge_l


@dataclass
class HeldoutTask:
    """Each source's held-out rows, scored by what the row carries: a final answer (``####``
    numbers: strict and flexible exact match), unit tests (pass@1 in the sandbox), or a
    reference (exact match and ROUGE-L)."""

    rows: dict[str, list[Record]]
    ecfg: EvalConfig
    name: str = "heldout"
    kind: TaskKind = "generate"

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
            checks = [
                sandbox.Check(
                    candidate=extract_code(o),
                    entry_points=_entry_points(req.meta),
                    setup="",
                    test=req.meta["test"],
                )
                for o, req in pairs
            ]
            results = humaneval.run_checked(
                checks, self.ecfg.timeout_s, allow_unsandboxed=self.ecfg.allow_unsandboxed
            )
            return [
                {
                    "output": o,
                    "passed": st == "passed",
                    "pass_at_1": float(st == "passed"),
                    "result": st,
                }
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


def _entry_points(meta: dict[str, Any]) -> tuple[str, ...]:
    """The functions a row's tests call: its ``entry_point``, else those the tests call without
    defining them."""
    if isinstance(meta.get("entry_point"), str):
        return (meta["entry_point"],)
    return humaneval.called_names(meta["test"])


def make_task(t: HeldoutTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    return HeldoutTask({s: rows[: t.limit] for s, rows in heldout.items() if rows}, e)


def _prompt_messages(messages: list[Message]) -> list[Message]:
    """The conversation up to (not including) its last assistant turn."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]
