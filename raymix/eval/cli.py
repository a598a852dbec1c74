"""``raymix eval``: scorer-only entry points on files, and tasks on an existing trial run.

The files are checked first (``raymix.eval.inputs``: every reference or problem covered, no
repeated ids, no empty file, unless ``--allow-partial``); the metrics go to stdout as one JSON
object, the per-row results next to the input (``<file>_results.jsonl``, rows keeping the input's
ids), and where they went to stderr."""

from __future__ import annotations

import argparse
import json
from typing import Any

from raymix.data.files import write_jsonl
from raymix.errors import ConfigError, DataError
from raymix.eval import gsm8k, humaneval
from raymix.eval.inputs import gsm8k_predictions, humaneval_samples, note


def run_eval(args: argparse.Namespace) -> int:
    """Dispatch ``raymix eval``; prints one JSON object of metrics."""
    if args.run:
        from raymix.eval.runs import evaluate_run

        metrics = evaluate_run(args.task, args.run, args)
    elif args.task == "humaneval":
        metrics = _humaneval_file(args)
    elif args.task == "gsm8k":
        metrics = _gsm8k_file(args)
    else:
        raise ConfigError(
            f"raymix eval {args.task}: give --run RUN_ID, or use humaneval --samples / gsm8k "
            "--predictions to score files"
        )
    print(json.dumps(metrics))
    return 0


def _humaneval_file(args: argparse.Namespace) -> dict[str, float]:
    if not args.samples:
        raise ConfigError("raymix eval humaneval: --samples S.jsonl is required (or --run RUN_ID)")
    problems = humaneval.load_humaneval_problems(args.problems)
    samples = humaneval_samples(
        args.samples,
        problems,
        args.problems or humaneval.HUB_HUMANEVAL,
        getattr(args, "allow_partial", False),
    )
    metrics, rows = humaneval.score(
        problems, samples, timeout_s=args.timeout, allow_unsandboxed=args.allow_unsandboxed
    )
    _write_results(f"{args.samples}_results.jsonl", rows)
    return metrics


def _gsm8k_file(args: argparse.Namespace) -> dict[str, float]:
    if not args.predictions:
        raise ConfigError("raymix eval gsm8k: --predictions S.jsonl is required (or --run RUN_ID)")
    refs = gsm8k.load_gsm8k_references(args.references)
    preds = gsm8k_predictions(
        args.predictions,
        refs,
        args.references or gsm8k.HUB_GSM8K,
        getattr(args, "allow_partial", False),
    )
    metrics, rows = gsm8k.score(preds.outputs, [refs[i]["answer"] for i in preds.idx])
    for row, idx in zip(rows, preds.idx, strict=True):
        row["idx"] = idx  # the input's id, not the position among the scored rows
    _write_results(f"{args.predictions}_results.jsonl", rows)
    return metrics


def _write_results(path: str, rows: list[dict[str, Any]]) -> None:
    try:
        write_jsonl(path, rows)
    except OSError as e:
        raise DataError(f"{path}: cannot write the per-row results: {e.strerror or e}") from None
    note(f"per-row results ({len(rows)} rows) written to {path}")
