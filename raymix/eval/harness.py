"""Zero-shot multiple-choice benchmarks (ARC-Easy, ARC-Challenge, PIQA, WinoGrande, HellaSwag,
MMLU) scored by lm-evaluation-harness on local files, as study S1 reports them. Each benchmark is
an lm-eval task built from a dict config that mirrors the official task YAML (same prompt, choices,
target, HellaSwag preprocessing, WinoGrande partial scoring, MMLU subject description) and differs
only in where the rows come from: the llm-foundry / original-format jsonl files of the shared data
folder, read here, instead of the Hugging Face hub. The model is the already-loaded torch model,
wrapped in lm-eval's ``HFLM``; metrics are ``harness/<benchmark>/acc`` (and ``acc_norm`` where the
official task defines it) plus ``harness/average/acc``, the unweighted mean over benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymix.config.schema import EvalConfig, EvalTaskConfig
from raymix.data.records import Record
from raymix.errors import ConfigError, DataError
from raymix.eval.protocol import TaskKind
from raymix.eval.tasks import Request, Task, register

__all__ = ["BENCHMARKS", "HarnessTask", "run_harness"]

BENCHMARKS = ("arc_easy", "arc_challenge", "piqa", "winogrande", "hellaswag", "mmlu")
"""Every benchmark the harness task runs, in report order."""

_ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
_ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}
_MMLU_DESCRIPTION = (
    "The following are multiple choice questions (with answers) about "
    "{{ subject.split('_') | join(' ') }}.\n\n"
)


@dataclass(frozen=True)
class _Benchmark:
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
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not JSON ({e.msg})") from e
            rows.append({**obj, "row": len(rows)})
    return rows


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


def _first(
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


_SPECS: dict[str, _Benchmark] = {
    "arc_easy": _Benchmark(
        ("arc/arc_easy_test.jsonl",),
        _arc_loader("arc/arc_easy_test.jsonl"),
        {
            "doc_to_text": "{{query}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [_ACC, _ACC_NORM],
        },
    ),
    "arc_challenge": _Benchmark(
        ("arc/arc_challenge_test.jsonl",),
        _arc_loader("arc/arc_challenge_test.jsonl"),
        {
            "doc_to_text": "{{query}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [_ACC, _ACC_NORM],
        },
    ),
    "piqa": _Benchmark(
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
    "winogrande": _Benchmark(
        ("winogrande/winogrande_dev.jsonl",),
        _load_winogrande,
        {
            "doc_to_text": _winogrande_gold,
            "doc_to_choice": _winogrande_contexts,
            "doc_to_target": _winogrande_continuation,
            "metric_list": [_ACC],
        },
    ),
    "hellaswag": _Benchmark(
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
    "mmlu": _Benchmark(
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


def _texts(row: dict[str, Any]) -> list[str]:
    """A row's text fields (each string, and each string of a list: the choices)."""
    out: list[str] = []
    for value in row.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, str)]
    return out


def _check(benchmarks: Sequence[str], data_dir: str | Path | None) -> tuple[list[str], Path]:
    """The benchmarks to run (all when empty) and the absolute data folder, or a ConfigError."""
    if data_dir is None:
        raise ConfigError("eval.tasks.harness.path: give the folder holding arc/, piqa/, ...")
    unknown = [b for b in benchmarks if b not in _SPECS]
    if unknown:
        raise ConfigError(
            f"eval.tasks.harness.benchmarks: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(BENCHMARKS)}"
        )
    root = Path(data_dir).expanduser().resolve()
    chosen = list(dict.fromkeys(benchmarks)) or list(BENCHMARKS)
    missing = [f for b in chosen for f in _SPECS[b].files if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"eval.tasks.harness.path: {root} has no {', '.join(missing)}")
    return chosen, root


def _task_config(name: str, root: Path, limit: int | None) -> dict[str, Any]:
    """The lm-eval task config of benchmark ``name``: its first ``limit`` rows from ``root``
    (MMLU: of each subject)."""
    spec = _SPECS[name]

    def dataset(**_: Any) -> Any:
        import datasets

        rows = _first(spec.load(root), limit, spec.per)
        if not rows:
            raise DataError(f"{root}: no rows for {name} in {', '.join(spec.files)}")
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})

    return {
        "task": f"raymix_{name}",
        "custom_dataset": dataset,
        "test_split": "test",
        "output_type": "multiple_choice",
        "num_fewshot": 0,
        "metadata": {"version": 1.0},
        **spec.config,
    }


def _build_tasks(benchmarks: Sequence[str], root: Path, limit: int | None) -> dict[str, Any]:
    """lm-eval ``ConfigurableTask`` objects by benchmark name."""
    from lm_eval.api.task import ConfigurableTask

    return {b: ConfigurableTask(config=_task_config(b, root, limit)) for b in benchmarks}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lm-eval's and datasets' info logging and datasets' progress bars off, then back."""
    import datasets

    logger = logging.getLogger("lm_eval")
    level = logger.level
    bars = datasets.utils.logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def _hflm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's ``HFLM`` around the loaded model, without its per-request progress bars."""
    from lm_eval.models.huggingface import HFLM

    class _QuietHFLM(HFLM):
        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> Any:
            return super().loglikelihood(requests, disable_tqdm=True)

    return _QuietHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _sample_row(benchmark: str, sample: dict[str, Any]) -> dict[str, Any]:
    """One per-sample row from an lm-eval logged sample."""
    doc = sample["doc"]
    lls = [float(r[0]) for r in sample["filtered_resps"]]
    chosen = max(range(len(lls)), key=lls.__getitem__)
    row = {
        "benchmark": benchmark,
        "doc_id": int(sample["doc_id"]),
        "row": int(doc["row"]),
        "gold": int(doc[_SPECS[benchmark].gold]),
        "chosen": chosen,
        "correct": bool(sample["acc"]),
        "loglikelihoods": lls,
    }
    if "acc_norm" in sample:
        row["correct_norm"] = bool(sample["acc_norm"])
    return row


def run_harness(
    model: Any,
    tokenizer: Any,
    benchmarks: Sequence[str],
    data_dir: str | Path | None,
    limit: int | None,
    batch_size: int = 8,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score ``model`` zero-shot on the benchmarks with lm-evaluation-harness.

    Run it on one process: the model is used as it is (device, dtype), put in eval mode for the
    run and given back in the mode it had.

    Args:
        model: An instantiated Hugging Face causal LM (``PreTrainedModel``).
        tokenizer: Its tokenizer.
        benchmarks: Names from ``BENCHMARKS``; empty for all of them.
        data_dir: The folder holding arc/, piqa/, winogrande/, hellaswag/ and mmlu/.
        limit: The first this many rows of each benchmark, as lm-eval's ``limit`` (which applies
            to each task, and MMLU is a group of one task per subject: the first this many rows
            of each subject); None for all.
        batch_size: Requests per forward pass.

    Returns:
        Metrics ``harness/<benchmark>/acc``, ``harness/<benchmark>/acc_norm`` (where the
        benchmark defines it) and ``harness/average/acc``; and one row per scored question
        (benchmark, doc_id, row in the file, gold, chosen, correct, the choices' log-likelihoods).

    Raises:
        ConfigError: No data folder, an unknown benchmark or a missing file.
        DataError: A file that is not jsonl, or has no rows.
    """
    chosen, root = _check(benchmarks, data_dir)
    from lm_eval.evaluator import evaluate

    training = model.training
    try:
        with _quiet():
            tasks = _build_tasks(chosen, root, limit)
            lm = _hflm(model, tokenizer, batch_size)
            out = evaluate(
                lm,
                {"tasks": {t.task_name: t for t in tasks.values()}, "groups": {}, "group_map": {}},
                limit=None,  # the datasets hold the first `limit` rows (MMLU: per subject)
                bootstrap_iters=0,
                log_samples=True,
            )
    finally:
        model.train(training)
    return _collect(out, tasks)


def _collect(
    out: dict[str, Any], tasks: dict[str, Any]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and per-sample rows from lm-eval's results, keyed by benchmark name."""
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for bench, task in tasks.items():
        res = out["results"][task.task_name]
        for m in ("acc", "acc_norm"):
            if f"{m},none" in res:
                metrics[f"harness/{bench}/{m}"] = float(res[f"{m},none"])
        rows += [_sample_row(bench, s) for s in out["samples"][task.task_name]]
    accs = [metrics[f"harness/{b}/acc"] for b in tasks]
    metrics["harness/average/acc"] = sum(accs) / len(accs)
    return metrics, rows


@dataclass
class HarnessTask:
    """The lm-eval multiple-choice benchmarks as a raymix task: no generation requests; the
    caller runs ``run_on_model`` on the final model, and ``score`` gives that run's metrics."""

    benchmarks: list[str]
    data_dir: Path
    limit: int | None
    batch_size: int = 8
    name: str = "harness"
    kind: TaskKind = "loglikelihood"
    _last: tuple[dict[str, float], list[dict[str, Any]]] = field(
        default_factory=lambda: ({}, []), init=False, repr=False
    )

    def requests(self) -> list[Request]:
        return []

    def texts(self) -> list[str]:
        """Every text of every configured benchmark, whatever ``limit`` is (for the
        contamination check): questions, contexts and each choice."""
        return [
            t for b in self.benchmarks for r in _SPECS[b].load(self.data_dir) for t in _texts(r)
        ]

    def run_on_model(
        self, model: Any, tokenizer: Any
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Score ``model`` on every configured benchmark (see ``run_harness``)."""
        self._last = run_harness(
            model, tokenizer, self.benchmarks, self.data_dir, self.limit, self.batch_size
        )
        return self._last

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """The last ``run_on_model`` result (empty before any run)."""
        return self._last


@register("harness")
def _harness(t: EvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    benchmarks, root = _check(t.benchmarks, t.path)
    return HarnessTask(benchmarks, root, t.limit, e.batch_size)
