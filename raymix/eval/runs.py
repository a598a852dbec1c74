"""``raymix eval TASK --run RUN_ID``: evaluate an existing trial's final checkpoint (the Hugging
Face export in its MLflow artifacts) and log the scores to that same run. ``heldout`` also
recomputes each source's held-out loss (``eval/loss/<source>``, ``eval/loss/mean``) with the
function the trial's workers use."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from raymix.config.loader import format_validation_error, validate
from raymix.config.schema import ExperimentConfig, parse_eval_task
from raymix.data.batches import encode
from raymix.data.sources import heldout_records
from raymix.errors import ConfigError
from raymix.eval.generate import answer_sharded
from raymix.eval.loss import heldout_loss
from raymix.eval.protocol import ModelTask, Task, answer_all
from raymix.eval.registry import task_factory
from raymix.tracking import MetricLogger, MlflowTracker, resolve_uri


def evaluate_run(task_name: str, run_id: str, args: argparse.Namespace) -> dict[str, float]:
    """Run ``task_name`` on the checkpoint of MLflow run ``run_id``; log and return ``eval/...``."""
    factory = task_factory(task_name)
    uri = resolve_uri(getattr(args, "tracking_uri", None))
    client = MlflowTracker(uri).client
    try:
        client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own exception types per store
        raise ConfigError(f"--run {run_id}: no such run in {uri}") from None
    with tempfile.TemporaryDirectory(prefix="raymix-eval-") as tmp:
        try:
            cfg_path = client.download_artifacts(run_id, "config.yaml", tmp)
            manifest = json.loads(
                Path(client.download_artifacts(run_id, "manifest.json", tmp)).read_text()
            )
            ckpt = client.download_artifacts(run_id, "checkpoint", tmp)
        except Exception:  # noqa: BLE001
            raise ConfigError(
                f"--run {run_id}: the run has no config.yaml, manifest.json and checkpoint/ "
                "artifacts (is it a raymix trial run with tracking.log_checkpoint on?)"
            ) from None
        cfg = validate(
            yaml.safe_load(Path(cfg_path).read_text()), origin=f"run {run_id} config.yaml"
        )
        raw = next(
            (t.model_dump(mode="json") for t in cfg.eval.tasks if t.name == task_name),
            {"name": task_name},
        )
        path = (
            getattr(args, "path", None)
            or (args.problems if task_name == "humaneval" else None)
            or (args.references if task_name == "gsm8k" else None)
        )
        if path:
            raw["path"] = path
        if getattr(args, "limit", None):
            raw["limit"] = args.limit
        try:
            task_cfg = parse_eval_task(raw)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"raymix eval {task_name}")) from None
        heldout = heldout_records(cfg.sources, manifest["heldout"], cfg.seed)
        task = factory(task_cfg, cfg.eval, heldout)
        metrics, rows = run_task(task, cfg, ckpt)
        losses = heldout_losses(cfg, heldout, ckpt) if task_name == "heldout" else {}
    step = max((m.step for m in client.get_metric_history(run_id, "train/loss")), default=0)
    logger = MetricLogger(uri, run_id)
    logged = {**losses, **{f"eval/{k}": v for k, v in metrics.items()}}
    logger.log(logged, step)
    logger.log_rows(rows, f"eval/{task.name}.jsonl")
    logger.close()
    return logged


def _load(checkpoint: str) -> tuple[Any, Any]:
    """The tokenizer and model of a Hugging Face export (on the GPU when there is one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    if torch.cuda.is_available():
        model = model.cuda()  # type: ignore[call-arg]
    return tokenizer, model


def heldout_losses(
    cfg: ExperimentConfig, heldout: dict[str, list[Any]], checkpoint: str
) -> dict[str, float]:
    """Each source's token-level held-out loss of the model in ``checkpoint``: the run's held-out
    records tokenized with the checkpoint's tokenizer, ``cfg``'s template and max length, as the
    trial's workers evaluated them."""
    tokenizer, model = _load(checkpoint)
    t = cfg.train
    examples = {
        name: encode(records, tokenizer, cfg.template, t.max_length)
        for name, records in heldout.items()
    }
    device = next(model.parameters()).device
    return heldout_loss(
        model,
        examples,
        pad_id=tokenizer.pad_token_id,
        batch_size=t.eval_batch_size,
        device=device,
    )


def run_task(
    task: Task, cfg: ExperimentConfig, checkpoint: str
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Generate answers to every request of ``task`` with the model in ``checkpoint``; score."""
    tokenizer, model = _load(checkpoint)
    if task.kind == "loglikelihood":  # the harness scores the model itself
        return cast(ModelTask, task).run_on_model(model, tokenizer)
    outputs, requests = answer_all(task, lambda reqs: answer_sharded(model, tokenizer, reqs, cfg))
    return task.score(outputs, requests)
