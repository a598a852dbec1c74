"""``raymix eval``: scorer-only entry points on files, and tasks on an existing trial run."""

from __future__ import annotations

import argparse
import json

from raymix.data.files import read_jsonl, write_jsonl
from raymix.errors import ConfigError, DataError
from raymix.eval import gsm8k, humaneval


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
    samples = read_jsonl(args.samples)
    metrics, rows = humaneval.score(
        problems, samples, timeout_s=args.timeout, allow_unsandboxed=args.allow_unsandboxed
    )
    write_jsonl(f"{args.samples}_results.jsonl", rows)
    return metrics


def _gsm8k_file(args: argparse.Namespace) -> dict[str, float]:
    if not args.predictions:
        raise ConfigError("raymix eval gsm8k: --predictions S.jsonl is required (or --run RUN_ID)")
    refs = gsm8k.load_gsm8k_references(args.references)
    outputs: list[str | None] = [None] * len(refs)
    for lineno, row in enumerate(read_jsonl(args.predictions), 1):
        idx = row.get("idx")
        if not isinstance(idx, int) or not 0 <= idx < len(refs):
            raise DataError(
                f"{args.predictions}:{lineno}: idx {idx!r} is not a line of the references "
                f"(0..{len(refs) - 1})"
            )
        if not isinstance(row.get("output"), str):
            raise DataError(f"{args.predictions}:{lineno}: missing 'output' text")
        outputs[idx] = row["output"]
    scored = [(o, r["answer"]) for o, r in zip(outputs, refs, strict=True) if o is not None]
    metrics, rows = gsm8k.score([o for o, _ in scored], [r for _, r in scored])
    write_jsonl(f"{args.predictions}_results.jsonl", rows)
    return metrics
