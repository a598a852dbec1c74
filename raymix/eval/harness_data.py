"""The harness benchmarks' local files: where each benchmark's rows live, how they are read
(llm-foundry / original-format jsonl files, not the Hugging Face hub), and the lm-eval task
fields that turn a row into its choices, as the official task YAMLs define them (same prompt,
choices, target, HellaSwag preprocessing, WinoGrande partial scoring, MMLU subject description).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymix.data.files import read_jsonl
from raymix.errors import ConfigError, DataError

BENCHMARKS = ("arc_easy", "arc_challenge", "piqa", "winogrande", "hellaswag", "mmlu")
"""Every benchmark the harness task runs, in report order."""

_ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
_ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}
_MMLU_DESCRIPTION = (
    "The following are multiple choice questions (with answers) about "
    "{{ subject.split('_') | join(' ') }}.\n\n"
)


@dataclass(frozen=True)
class Benchmark:
    """Where one benchmark's rows live and how lm-eval turns them into choices.

    Attributes:
        files: The files it reads, relative to the data folder.
        load: Reads the rows (each with ``row``: its line in the file) from the data folder.
        config: lm-eval ``TaskConfig`` fields besides the task name and the data.
        gold: The row field holding the index of the right choice.
        per: The row field naming the sub-task (MMLU's subject) that ``limit`` applies to, as
            lm-eval applies it to each task of a group; None for a single-task benchmark.
    """

    files: tuple[str, ...]
    load: Callable[[Path], list[dict[str, Any]]]
    config: dict[str, Any]
    gold: str = "gold"
    per: str | None = None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a jsonl file, each with ``row``: its 0-based index among the objects."""
    return [{**obj, "row": i} for i, obj in enumerate(read_jsonl(path))]


def _arc_loader(file: str) -> Callable[[Path], list[dict[str, Any]]]:
    """Reads an llm-foundry ARC file (``query`` already starts with 'Question: ')."""
    return lambda root: _read_jsonl(root / file)


def _load_piqa(root: Path) -> list[dict[str, Any]]:
    """PIQA validation rows with ``label`` (0: sol1, 1: sol2) from the line-aligned label file."""
    rows = _read_jsonl(root / "piqa/valid.jsonl")
    labels = (root / "piqa/valid-labels.lst").read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise DataError(f"{root}/piqa: {len(rows)} rows but {len(labels)} labels")
    return [{**r, "label": int(lab)} for r, lab in zip(rows, labels, strict=True)]


def _load_winogrande(root: Path) -> list[dict[str, Any]]:
    return _read_jsonl(root / "winogrande/winogrande_dev.jsonl")


def _load_hellaswag(root: Path) -> list[dict[str, Any]]:
    return _read_jsonl(root / "hellaswag/hellaswag_val_1k_subset.jsonl")


def _load_mmlu(root: Path) -> list[dict[str, Any]]:
    """MMLU test rows grouped by subject, subjects in the order they first appear."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for r in _read_jsonl(root / "mmlu/mmlu_test.jsonl"):
        by_subject.setdefault(r["subject"], []).append(r)
    return [r for rows in by_subject.values() for r in rows]


def first_rows(
    rows: list[dict[str, Any]], limit: int | None, group: str | None
) -> list[dict[str, Any]]:
    """The first ``limit`` rows, or of each ``group`` (lm-eval's ``limit`` is per task, and a
    group benchmark such as MMLU is one task per subject)."""
    if limit is None:
        return rows
    if group is None:
        return rows[:limit]
    seen: dict[Any, int] = {}
    out = []
    for r in rows:
        seen[r[group]] = seen.get(r[group], 0) + 1
        if seen[r[group]] <= limit:
            out.append(r)
    return out


def _hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag text clean-up (WikiHow bracket artefacts)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_process_docs(dataset: Any) -> Any:
    """lm-eval's ``hellaswag/utils.process_docs``: query, cleaned endings and gold index."""

    def one(doc: dict[str, Any]) -> dict[str, Any]:
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_preprocess(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


def _winogrande_gold(doc: dict[str, Any]) -> int:
    """The right option's index: an int from doc_to_text makes lm-eval score partially."""
    return int(doc["gold"])


def _winogrande_contexts(doc: dict[str, Any]) -> list[str]:
    """The sentence up to the blank with each option filled in (one context per choice)."""
    return list(doc["context_options"])


def _winogrande_continuation(doc: dict[str, Any]) -> str:
    """The shared rest of the sentence after the blank, scored under every context."""
    return str(doc["continuation"]).strip()


SPECS: dict[str, Benchmark] = {
    "arc_easy": Benchmark(
        ("arc/arc_easy_test.jsonl",),
        _arc_loader("arc/arc_easy_test.jsonl"),
        {
            "doc_to_text": "{{query}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [_ACC, _ACC_NORM],
        },
    ),
    "arc_challenge": Benchmark(
        ("arc/arc_challenge_test.jsonl",),
        _arc_loader("arc/arc_challenge_test.jsonl"),
        {
            "doc_to_text": "{{query}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [_ACC, _ACC_NORM],
        },
    ),
    "piqa": Benchmark(
        ("piqa/valid.jsonl", "piqa/valid-labels.lst"),
        _load_piqa,
        {
            "doc_to_text": "Question: {{goal}}\nAnswer:",
            "doc_to_choice": "{{[sol1, sol2]}}",
            "doc_to_target": "label",
            "metric_list": [_ACC, _ACC_NORM],
        },
        gold="label",
    ),
    "winogrande": Benchmark(
        ("winogrande/winogrande_dev.jsonl",),
        _load_winogrande,
        {
            "doc_to_text": _winogrande_gold,
            "doc_to_choice": _winogrande_contexts,
            "doc_to_target": _winogrande_continuation,
            "metric_list": [_ACC],
        },
    ),
    "hellaswag": Benchmark(
        ("hellaswag/hellaswag_val_1k_subset.jsonl",),
        _load_hellaswag,
        {
            "process_docs": _hellaswag_process_docs,
            "doc_to_text": "{{query}}",
            "doc_to_choice": "choices",
            "doc_to_target": "{{label}}",
            "metric_list": [_ACC, _ACC_NORM],
        },
    ),
    "mmlu": Benchmark(
        ("mmlu/mmlu_test.jsonl",),
        _load_mmlu,
        {
            "description": _MMLU_DESCRIPTION,
            "doc_to_text": (
                "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
                "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
            ),
            "doc_to_choice": ["A", "B", "C", "D"],
            "doc_to_target": "answer",
            "metric_list": [_ACC],
        },
        gold="answer",
        per="subject",
    ),
}


def row_texts(row: dict[str, Any]) -> list[str]:
    """A row's text fields (each string, and each string of a list: the choices)."""
    out: list[str] = []
    for value in row.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, str)]
    return out


def check_benchmarks(
    benchmarks: Sequence[str], data_dir: str | Path | None
) -> tuple[list[str], Path]:
    """The benchmarks to run (all when empty) and the absolute data folder, or a ConfigError."""
    if data_dir is None:
        raise ConfigError("eval.tasks.harness.path: give the folder holding arc/, piqa/, ...")
    unknown = [b for b in benchmarks if b not in SPECS]
    if unknown:
        raise ConfigError(
            f"eval.tasks.harness.benchmarks: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(BENCHMARKS)}"
        )
    root = Path(data_dir).expanduser().resolve()
    chosen = list(dict.fromkeys(benchmarks)) or list(BENCHMARKS)
    missing = [f for b in chosen for f in SPECS[b].files if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"eval.tasks.harness.path: {root} has no {', '.join(missing)}")
    return chosen, root
