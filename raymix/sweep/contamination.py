"""Find, once per sweep, the training rows that overlap each configured evaluation set (13-gram
overlap, ``raymix.data.contamination``), and warn where a source overlaps more than the
threshold. Trials get the result: their plans count (or drop) those rows.

Each eval set is compared whole: a task's ``limit`` only bounds what is scored, not what is
checked, so a training row that copies the 500th GSM8K question is found although the trial
scores the first 64. The harness benchmarks (ARC, PIQA, WinoGrande, HellaSwag, MMLU) are
compared through their questions and choices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from raymix.config import ExperimentConfig
from raymix.data.contamination import contaminated_rows, eval_ngrams
from raymix.data.pipeline import PreparedSource
from raymix.data.sources import load_records
from raymix.eval.registry import build_tasks

log = logging.getLogger("raymix")


def find_contamination(
    cfg: ExperimentConfig, sources: Mapping[str, PreparedSource]
) -> dict[str, dict[str, list[int]]] | None:
    """{eval task: {source: row ids overlapping it}}, or None when the check is off."""
    c = cfg.eval.contamination
    if not c.check or not cfg.eval.tasks:
        return None
    records = {s.name: load_records(s, cfg.seed).records for s in cfg.sources}
    heldout = {n: [records[n][i] for i in sources[n].heldout_ids] for n in records}
    whole = cfg.model_copy(
        update={
            "eval": cfg.eval.model_copy(
                update={"tasks": [t.model_copy(update={"limit": None}) for t in cfg.eval.tasks]}
            )
        }
    )
    out: dict[str, dict[str, list[int]]] = {}
    for task in build_tasks(whole, heldout):
        texts = eval_texts(task)
        grams = eval_ngrams(texts, c.ngram)
        out[task.name] = {n: contaminated_rows(rows, grams, c.ngram) for n, rows in records.items()}
        for n, bad in out[task.name].items():
            pool = set(sources[n].train_ids)
            found = len(pool.intersection(bad))
            share = found / max(1, len(pool))
            if share > c.threshold:
                log.warning(
                    "contamination: %d of the %d training rows (%.1f%%) of source %r share a "
                    "%d-gram with eval task %r (%d eval texts)%s",
                    found,
                    len(pool),
                    100 * share,
                    n,
                    c.ngram,
                    task.name,
                    len(texts),
                    "" if c.drop else " (set eval.contamination.drop: true to drop them)",
                )
    return out


def eval_texts(task: Any) -> list[str]:
    """Every text of an eval set: the task's own ``texts()`` where it has one (the harness
    benchmarks, which make no generation requests), else its prompts and reference answers."""
    own = getattr(task, "texts", None)
    if callable(own):
        return list(own())
    texts = []
    for r in task.requests():
        texts += [m["content"] for m in r.messages]
        texts += [str(r.meta[k]) for k in ("reference_text", "answer", "reference") if k in r.meta]
    return texts
