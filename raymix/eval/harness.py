"""Zero-shot multiple-choice benchmarks (ARC-Easy, ARC-Challenge, PIQA, WinoGrande, HellaSwag,
MMLU, and RACE when listed) scored by lm-evaluation-harness on local files, as study S1 reports
them. Each benchmark is an lm-eval task built from a dict config that mirrors the official task
YAML (same prompt, choices, target, HellaSwag preprocessing, WinoGrande partial scoring, MMLU
subject description; RACE with lm-eval's own ``race`` functions) and differs only in where the
rows come from: local llm-foundry / original-format jsonl files (:mod:`raymix.eval.harness_data`)
instead of the Hugging Face hub. RACE without its local file runs as lm-eval's own ``race`` task,
which reads the hub. The model is the already-loaded torch model, wrapped in lm-eval's ``HFLM``;
metrics are ``harness/<benchmark>/acc`` (and ``acc_norm`` where the official task defines it)
plus ``harness/average/acc``, the unweighted mean over benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymix.config.schema import EvalConfig, HarnessTaskConfig
from raymix.data.records import Record
from raymix.errors import DataError
from raymix.eval.harness_data import (
    BENCHMARKS,
    OPTIONAL,
    SPECS,
    check_benchmarks,
    first_rows,
    row_texts,
)
from raymix.eval.protocol import Request, Task, TaskKind

__all__ = ["BENCHMARKS", "OPTIONAL", "HarnessTask", "make_task", "run_harness"]

log = logging.getLogger("raymix")


def _task_config(name: str, root: Path, limit: int | None) -> dict[str, Any]:
    """The lm-eval task config of benchmark ``name``: its first ``limit`` rows from ``root``
    (MMLU: of each subject)."""
    spec = SPECS[name]

    def dataset(**_: Any) -> Any:
        import datasets

        rows = first_rows(spec.load(root), limit, spec.per)
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
    """lm-eval ``ConfigurableTask`` objects by benchmark name: local files where ``root`` has
    them, else lm-eval's own hub task (see :func:`_from_hub`)."""
    from lm_eval.api.task import ConfigurableTask

    return {
        b: (
            _hub_task(b, root)
            if _from_hub(b, root)
            else ConfigurableTask(config=_task_config(b, root, limit))
        )
        for b in benchmarks
    }


def _from_hub(benchmark: str, root: Path) -> bool:
    """Whether ``benchmark`` runs as lm-eval's own hub task: it has one and ``root`` lacks its
    files (:func:`check_benchmarks` lets only such a benchmark lack them)."""
    return SPECS[benchmark].hub is not None and not SPECS[benchmark].local(root)


def _hub_task(benchmark: str, root: Path) -> Any:
    """lm-eval's own task of ``benchmark`` (its registered YAML), reading the hub. Only the
    task's own folder of lm-eval's tasks is indexed (all of them take a minute)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    name = SPECS[benchmark].hub
    assert name is not None
    log.warning(
        "harness: %s has no %s; running lm-eval's own %r task on its Hugging Face hub dataset",
        root,
        ", ".join(SPECS[benchmark].files),
        name,
    )
    try:
        folder = Path(lm_eval.tasks.__file__).parent / name
        manager = TaskManager(include_path=str(folder), include_defaults=False)
        return manager.load(name)["tasks"][name]
    except Exception as e:  # noqa: BLE001 - offline, missing, or refused: one message
        raise DataError(
            f"cannot load lm-eval's {name!r} task from the Hugging Face hub "
            f"({type(e).__name__}); put {', '.join(SPECS[benchmark].files)} in {root}"
        ) from None


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
    """One per-sample row from an lm-eval logged sample (a hub task's doc has no ``row`` and no
    gold field: its row is the doc's index and its gold lm-eval's target)."""
    doc = sample["doc"]
    lls = [float(r[0]) for r in sample["filtered_resps"]]
    chosen = max(range(len(lls)), key=lls.__getitem__)
    gold = SPECS[benchmark].gold
    row = {
        "benchmark": benchmark,
        "doc_id": int(sample["doc_id"]),
        "row": int(doc.get("row", sample["doc_id"])),
        "gold": int(doc[gold] if gold in doc else sample["target"]),
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
        data_dir: The folder holding arc/, piqa/, winogrande/, hellaswag/, mmlu/ (and race/;
            without it RACE runs as lm-eval's own task on the hub).
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
    chosen, root = check_benchmarks(benchmarks, data_dir)
    from lm_eval.evaluator import evaluate

    training = model.training
    try:
        with _quiet():
            tasks = _build_tasks(chosen, root, limit)
            lm = _hflm(model, tokenizer, batch_size)
            out: dict[str, Any] = {"results": {}, "samples": {}}
            hub = {b for b in chosen if _from_hub(b, root)}
            for group, group_limit in (
                (set(chosen) - hub, None),  # the datasets hold the first `limit` rows
                (hub, limit),  # lm-eval's own task: its `limit`, the first rows
            ):
                if not group:
                    continue
                got = evaluate(
                    lm,
                    {
                        "tasks": {tasks[b].task_name: tasks[b] for b in chosen if b in group},
                        "groups": {},
                        "group_map": {},
                    },
                    limit=group_limit,
                    bootstrap_iters=0,
                    log_samples=True,
                )
                out["results"].update(got["results"])
                out["samples"].update(got["samples"])
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
        out: list[str] = []
        for b in self.benchmarks:
            texts = SPECS[b].texts or row_texts
            out += [t for r in SPECS[b].load(self.data_dir) for t in texts(r)]
        return out

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


def make_task(t: HarnessTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    benchmarks, root = check_benchmarks(t.benchmarks, t.path)
    return HarnessTask(benchmarks, root, t.limit, e.batch_size)
