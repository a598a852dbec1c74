"""The harness benchmarks' local files: where each benchmark's rows live, how they are read
(llm-foundry / original-format jsonl files, not the Hugging Face hub), and the lm-eval task
fields that turn a row into its choices, as the official task YAMLs define them (same prompt,
choices, target, HellaSwag preprocessing, WinoGrande partial scoring, MMLU subject description;
RACE through lm-eval's own ``race`` functions). RACE alone may also come from the hub: without
its local file, lm-eval's own ``race`` task reads ``EleutherAI/race``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymix.data.files import hub_rows, read_jsonl
from raymix.errors import ConfigError, DataError

BENCHMARKS = ("arc_easy", "arc_challenge", "piqa", "winogrande", "hellaswag", "mmlu")
"""The benchmarks the harness task runs when none are listed, in report order."""

OPTIONAL = ("race",)
"""Benchmarks run only when listed (their data is not part of the usual harness folder)."""

RACE_FILE = "race/race_high_test.jsonl"
RACE_HUB = ("EleutherAI/race", "high", "test")
"""The hub dataset, config and split of lm-eval's ``race`` task."""

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
        hub: lm-eval's own task of the benchmark, run on its Hugging Face hub dataset when the
            data folder lacks ``files`` (``load`` then reads the hub's rows too); None where the
            local files are required.
        texts: A row's texts for the contamination check; None for :func:`row_texts`.
    """

    files: tuple[str, ...]
    load: Callable[[Path], list[dict[str, Any]]]
    config: dict[str, Any]
    gold: str = "gold"
    per: str | None = None
    hub: str | None = None
    texts: Callable[[dict[str, Any]], list[str]] | None = None

    def local(self, root: Path) -> bool:
        """Whether ``root`` holds every file of the benchmark."""
        return all((root / f).is_file() for f in self.files)


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


def _race_problems(doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A RACE row's problems (a list, or the hub's string of a Python list), each checked to be
    what lm-eval's ``race`` functions read: a question, 4 options and an answer letter A-D."""
    problems = doc.get("problems")
    if isinstance(problems, str):
        try:
            problems = ast.literal_eval(problems)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{where}: problems is not a Python list literal") from None
    if not isinstance(problems, list) or not problems:
        raise DataError(
            f"{where}: problems must be a non-empty list of {{question, options, answer}}"
        )
    for j, p in enumerate(problems, 1):
        options = p.get("options") if isinstance(p, dict) else None
        if not (
            isinstance(p, dict)
            and isinstance(p.get("question"), str)
            and isinstance(options, list)
            and len(options) == 4
            and all(isinstance(o, str) for o in options)
            and p.get("answer") in ("A", "B", "C", "D")
        ):
            raise DataError(
                f"{where}: problem {j}: expected question, 4 options and answer A, B, C or D"
            )
    return problems


def _race_rows(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """RACE rows as lm-eval's ``race`` task reads them (the hub's form: ``problems`` a string of
    a Python list), with ``gold``: the index of the last problem's answer, the one asked."""
    out = []
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        if not isinstance(r.get("article"), str):
            raise DataError(f"{at}: expected article text")
        problems = _race_problems(r, at)
        gold = "ABCD".index(problems[-1]["answer"])
        out.append({**r, "problems": str(problems), "gold": gold, "row": i})
    return out


def _load_race(root: Path) -> list[dict[str, Any]]:
    """RACE-high test rows from ``race/race_high_test.jsonl`` (EleutherAI/race rows: article,
    problems), or from the hub when the folder has no such file."""
    if (root / RACE_FILE).is_file():
        return _race_rows(read_jsonl(root / RACE_FILE), str(root / RACE_FILE))
    name, config, split = RACE_HUB
    rows = hub_rows(name, config, split, f"{root}/{RACE_FILE}")
    return _race_rows(rows, f"{name} ({config}, {split})")


def _race_text(doc: dict[str, Any]) -> str:
    """lm-eval's ``race`` prompt: the article, the earlier problems answered, the last asked."""
    from lm_eval.tasks.race import preprocess_race

    return str(preprocess_race.doc_to_text(doc))


def _race_choices(doc: dict[str, Any]) -> list[str]:
    """lm-eval's ``race`` choices: the last problem's 4 options."""
    from lm_eval.tasks.race import preprocess_race

    return list(preprocess_race.doc_to_choice(doc))


def _race_target(doc: dict[str, Any]) -> int:
    """lm-eval's ``race`` target: the last problem's answer index."""
    from lm_eval.tasks.race import preprocess_race

    return int(preprocess_race.doc_to_target(doc))


def _race_texts(row: dict[str, Any]) -> list[str]:
    """The article, and every problem's question and options."""
    problems = ast.literal_eval(row["problems"])
    return [row["article"], *(t for p in problems for t in [p["question"], *p["options"]])]


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
    "race": Benchmark(
        (RACE_FILE,),
        _load_race,
        {
            "doc_to_text": _race_text,
            "doc_to_choice": _race_choices,
            "doc_to_target": _race_target,
            "metric_list": [_ACC],
        },
        hub="race",
        texts=_race_texts,
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
    """The benchmarks to run (all but :data:`OPTIONAL` when empty) and the absolute data folder,
    or a ConfigError. A benchmark with a hub task (RACE) may lack its files: it then runs from
    the hub."""
    if data_dir is None:
        raise ConfigError("eval.tasks.harness.path: give the folder holding arc/, piqa/, ...")
    unknown = [b for b in benchmarks if b not in SPECS]
    if unknown:
        raise ConfigError(
            f"eval.tasks.harness.benchmarks: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join((*BENCHMARKS, *OPTIONAL))}"
        )
    root = Path(data_dir).expanduser().resolve()
    chosen = list(dict.fromkeys(benchmarks)) or list(BENCHMARKS)
    missing = [
        f
        for b in chosen
        if SPECS[b].hub is None
        for f in SPECS[b].files
        if not (root / f).is_file()
    ]
    if missing:
        raise ConfigError(f"eval.tasks.harness.path: {root} has no {', '.join(missing)}")
    return chosen, root
