"""GSM8K scoring exactly as lm-evaluation-harness's ``gsm8k`` task (v3.0) scores it.

Two filters extract an answer from the generated text: ``strict-match`` takes the first
``#### <number>``; ``flexible-extract`` takes the last number-like span. Both are compared to the
reference by exact match after the task's normalisation: drop ``,``, ``$``, everything up to
``#### `` and a trailing ``.``, then lower-case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymix.config.schema import EvalConfig, GSM8KTaskConfig
from raymix.data.files import hub_rows, read_jsonl
from raymix.data.records import Message, Record
from raymix.errors import DataError
from raymix.eval.protocol import Request, Task, TaskKind

HUB_GSM8K = "openai/gsm8k"

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
FALLBACK = "[invalid]"
_IGNORE = [",", r"\$", r"(?s).*#### ", r"\.$"]


def _extract(pattern: re.Pattern[str], text: str, group_select: int) -> str:
    """lm-eval's RegexFilter: findall, pick ``group_select``, first non-empty group, strip."""
    found = pattern.findall(text if isinstance(text, str) else "")
    if not found:
        return FALLBACK
    match = found[group_select]
    if isinstance(match, tuple):
        nonempty = [m for m in match if m]
        match = nonempty[0] if nonempty else FALLBACK
    return match.strip()


def strict_match(text: str) -> str:
    """The ``strict-match`` filter."""
    return _extract(STRICT, text, 0)


def flexible_extract(text: str) -> str:
    """The ``flexible-extract`` filter."""
    return _extract(FLEXIBLE, text, -1)


def normalise(text: str) -> str:
    """The exact_match normalisation of the task (regexes_to_ignore, ignore_case)."""
    for pattern in _IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def score(
    outputs: Sequence[str], references: Sequence[str]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(metrics, per-sample rows) for generated ``outputs`` against reference answers."""
    rows: list[dict[str, Any]] = []
    for i, (out, ref) in enumerate(zip(outputs, references, strict=True)):
        target = normalise(ref)
        strict, flexible = strict_match(out), flexible_extract(out)
        rows.append(
            {
                "idx": i,
                "output": out,
                "target": target,
                "strict": strict,
                "flexible": flexible,
                "strict_match": float(normalise(strict) == target),
                "flexible_extract": float(normalise(flexible) == target),
            }
        )
    n = max(1, len(rows))
    metrics = {
        "strict_match": sum(r["strict_match"] for r in rows) / n,
        "flexible_extract": sum(r["flexible_extract"] for r in rows) / n,
    }
    return metrics, rows


def load_gsm8k_references(path: str | None, split: str = "test") -> list[dict[str, Any]]:
    """GSM8K rows (question, answer) from a local file, or the hub's ``split``."""
    rows = read_jsonl(path) if path else hub_rows(HUB_GSM8K, "main", split, "--references")
    for i, r in enumerate(rows):
        if "answer" not in r or "question" not in r:
            raise DataError(f"{path}:{i + 1}: expected GSM8K fields question and answer")
    return rows


@dataclass
class GSM8KTask:
    """GSM8K test questions with the trial's template, zero-shot or with ``shots`` solved
    examples as earlier turns of the chat; lm-eval-harness extraction and normalisation."""

    rows: list[dict[str, Any]]
    shots: list[dict[str, Any]] = field(default_factory=list)
    name: str = "gsm8k"
    kind: TaskKind = "generate"

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
        m, rows = score(outputs, [r.meta["answer"] for r in requests])
        return {
            "gsm8k/exact_match": m["flexible_extract"],
            "gsm8k/strict_match": m["strict_match"],
        }, rows


def make_task(t: GSM8KTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    shots: list[dict[str, Any]] = []
    if t.shots:
        # like lm-eval: exemplars drawn from the train split with a fixed seed
        pool = load_gsm8k_references(t.fewshot_path, split="train")
        pick = np.random.default_rng(1234).choice(len(pool), size=t.shots, replace=False)
        shots = [pool[int(i)] for i in pick]
    return GSM8KTask(load_gsm8k_references(t.path)[: t.limit], shots)
