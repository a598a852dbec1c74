"""Checks on the files ``raymix eval gsm8k|humaneval`` scores, before anything runs.

A predictions or samples file must cover its references or problems, once each, or the score
means something other than it says: a missing row would silently shrink the denominator and a
repeated one would let the last line win. So:

* **gsm8k** (``{idx, output}`` per line): every ``idx`` is a line of the references and appears
  once; every reference has a prediction.
* **humaneval** (``{task_id, completion}`` per line): several samples per task are how pass@k is
  computed, so a task may repeat, but every problem has samples and every task has the same
  number of them (pass@k for k up to that number is then one estimate over every problem).

An empty file, an unknown id or a malformed row is always a :class:`DataError` naming the file
and line. A file that leaves out references or problems (or has uneven sample counts) is one
too, unless ``--allow-partial``: then what is there is scored and a note on stderr says how much
of the set that is.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymix.data.files import read_jsonl
from raymix.errors import DataError

SHOW_IDS = 5
"""How many missing or uneven ids a message lists before it says '...'."""

PARTIAL_HINT = "pass --allow-partial to score only what the file has"


def _few(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOW_IDS])
    return shown + (f", ... ({len(ids) - SHOW_IDS} more)" if len(ids) > SHOW_IDS else "")


def note(message: str) -> None:
    """One line on stderr (stdout carries the metrics JSON alone)."""
    print(f"raymix: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Predictions:
    """GSM8K predictions in reference order: each reference line's ``idx`` and output."""

    idx: list[int]
    outputs: list[str]
    total: int
    """Lines of the references."""


def gsm8k_predictions(
    path: str | Path, references: Sequence[dict[str, Any]], refs_name: str, allow_partial: bool
) -> Predictions:
    """The predictions of ``path`` checked against ``references`` (named ``refs_name`` in
    messages), sorted by ``idx``.

    Raises:
        DataError: an empty file, a row without an int ``idx`` of the references or without
            ``output`` text, a repeated ``idx``, or (without ``allow_partial``) references with
            no prediction.
    """
    n = len(references)
    if n == 0:
        raise DataError(f"{refs_name}: no references (empty file); expected GSM8K rows")
    rows = read_jsonl(path)
    if not rows:
        raise DataError(
            f"{path}: no predictions (empty file); expected one {{idx, output}} object per line, "
            f"idx 0..{n - 1} for the lines of {refs_name}"
        )
    seen: dict[int, int] = {}
    by_idx: dict[int, str] = {}
    for lineno, row in enumerate(rows, 1):
        idx = row.get("idx")
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < n:
            raise DataError(
                f"{path}:{lineno}: idx {idx!r} is not a line of the references "
                f"(0..{n - 1} in {refs_name})"
            )
        if not isinstance(row.get("output"), str):
            raise DataError(f"{path}:{lineno}: missing 'output' text (keys: idx, output)")
        if idx in seen:
            raise DataError(
                f"{path}:{lineno}: idx {idx} repeats line {seen[idx]}; each reference gets "
                "exactly one prediction"
            )
        seen[idx] = lineno
        by_idx[idx] = row["output"]
    missing = [i for i in range(n) if i not in by_idx]
    if missing and not allow_partial:
        raise DataError(
            f"{path}: {len(missing)} of the {n} references in {refs_name} have no prediction "
            f"(idx {_few(missing)}); give one {{idx, output}} per reference, or {PARTIAL_HINT}"
        )
    if missing:
        note(
            f"--allow-partial: scoring {len(by_idx)} of {n} references "
            f"({len(missing)} without a prediction, idx {_few(missing)})"
        )
    order = sorted(by_idx)
    return Predictions(order, [by_idx[i] for i in order], n)


def humaneval_samples(
    path: str | Path, problems: dict[str, dict[str, Any]], problems_name: str, allow_partial: bool
) -> list[dict[str, Any]]:
    """The samples of ``path`` checked against ``problems`` (named ``problems_name``).

    Raises:
        DataError: an empty file, an unknown ``task_id``, a row without ``completion`` text, or
            (without ``allow_partial``) problems with no samples or tasks with fewer samples
            than others.
    """
    if not problems:
        raise DataError(f"{problems_name}: no problems (empty file); expected HumanEval rows")
    rows = read_jsonl(path)
    if not rows:
        raise DataError(
            f"{path}: no samples (empty file); expected one {{task_id, completion}} object per "
            f"line for the {len(problems)} problems of {problems_name}"
        )
    for lineno, row in enumerate(rows, 1):
        tid = row.get("task_id")
        if not isinstance(tid, str) or tid not in problems:
            raise DataError(
                f"{path}:{lineno}: task_id {tid!r} is not a problem of {problems_name} "
                f"(e.g. {_few(list(problems))})"
            )
        if not isinstance(row.get("completion"), str):
            raise DataError(
                f"{path}:{lineno}: missing 'completion' text (keys: task_id, completion)"
            )
    counts = Counter(r["task_id"] for r in rows)
    missing = [t for t in problems if t not in counts]
    most = max(counts.values())
    uneven = sorted((t for t, c in counts.items() if c < most), key=list(problems).index)
    if missing and not allow_partial:
        raise DataError(
            f"{path}: {len(missing)} of the {len(problems)} problems of {problems_name} have no "
            f"sample (task_id {_few(missing)}); give samples for every problem, or {PARTIAL_HINT}"
        )
    if uneven and not allow_partial:
        fewest = min(counts.values())
        raise DataError(
            f"{path}: uneven samples per task: {most} for most, {fewest} for "
            f"{_few([f'{t} ({counts[t]})' for t in uneven])}; pass@k needs the same number of "
            f"samples for every task (a repeated task_id is one more sample), or {PARTIAL_HINT}"
        )
    if missing or uneven:
        note(
            f"--allow-partial: scoring {len(rows)} samples of {len(counts)} of the "
            f"{len(problems)} problems ({len(missing)} without samples; pass@k up to the fewest "
            f"samples of a task, {min(counts.values())})"
        )
    return rows
