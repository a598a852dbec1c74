"""Benchmark: tokens/s of a raymix trial against a plain single-process PyTorch loop.

Same tiny model, same tokenizer, same rows, same global batch and optimizer; measured side by
side in one run (the plain loop runs before and after the trial, and their mean is the
reference), because these machines are shared and noisy. The trial's figure is its steady-state
``train/tokens_per_s`` as logged to MLflow; start-up (Ray, worker processes, DeepSpeed init) is
reported separately as the end-to-end ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.config import load  # noqa: E402
from raymix.data.batches import collate, epoch_order  # noqa: E402
from raymix.data.mixture import build_plan  # noqa: E402
from raymix.data.pipeline import prepare_data  # noqa: E402
from raymix.sweep.tuner import run_sweep  # noqa: E402
from raymix.train.engine import lr_factor, warmup_steps  # noqa: E402
from raymix.train.model import build_model  # noqa: E402

MIXTURE = "all"
WARM_STEPS = 5  # excluded from the plain loop's steady-state window


def _config(tmp: str):  # type: ignore[no-untyped-def]
    return load(
        ROOT / "experiments" / "quickstart.yaml",
        [
            f"mixture.grid={{{MIXTURE}: {{math: 600, code: 600, general: 600}}}}",
            "train.eval_every=null",
            "train.report_every=1000",
            f"sweep.storage_path={tmp}/runs",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            "tracking.log_checkpoint=false",
            "train.epochs=1",
            "eval.tasks=[]",
            "sweep.space={deepspeed.zero_stage: {grid: [2, 0]}}",
        ],
    )


def plain_loop(cfg, tokenizer_json: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Single process, ``num_workers`` threads, the trial's global batch; (tokens/s, wall s)."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(cfg.scaling.num_workers)
    _, tok, sources = prepare_data(cfg, tokenizer_json)
    plan = build_plan(cfg, MIXTURE, sources)
    examples = [
        sources[n].cache.example(i)
        for n, part in sorted(plan.stages[0].sources.items())
        for i in part.row_ids
    ]
    order = epoch_order(len(examples), cfg.seed, 0)
    examples = [examples[int(i)] for i in order]
    model = build_model(cfg.model, tok, cfg.seed, "float32")
    t = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    global_batch = t.micro_batch_size * cfg.scaling.num_workers
    total = -(-len(examples) // global_batch)
    warm = warmup_steps(cfg, total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warm, total, t.scheduler))
    tokens, t0 = 0, 0.0
    chunks = [examples[i : i + global_batch] for i in range(0, len(examples), global_batch)]
    for step, batch in enumerate(chunks):
        if step == WARM_STEPS:
            tokens, t0 = 0, time.perf_counter()
        inputs = collate(batch, tok.pad_token_id)
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(inputs["attention_mask"].sum())
    steady = tokens / (time.perf_counter() - t0)
    return steady, time.perf_counter() - start


def raymix_trials(cfg) -> tuple[dict[int, float], float]:  # type: ignore[no-untyped-def]
    """One sweep of two real trials (Ray, TorchTrainer, DeepSpeed ZeRO-2 and ZeRO-0, MLflow):
    ({zero stage: steady tokens/s}, wall seconds per trial)."""
    from mlflow.tracking import MlflowClient

    start = time.perf_counter()
    outcome = run_sweep(cfg)
    wall = (time.perf_counter() - start) / 2
    client = MlflowClient(outcome.tracking_uri)
    runs = client.search_runs(
        [outcome.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'",
    )
    out = {}
    for run in runs:
        hist = client.get_metric_history(run.info.run_id, "train/tokens_per_s")
        steady = [m.value for m in sorted(hist, key=lambda m: m.step) if m.step > WARM_STEPS]
        out[int(run.data.params["deepspeed.zero_stage"])] = statistics.median(steady)
    return out, wall


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(tmp)
        tok_json, _, _ = prepare_data(cfg)
        before, plain_wall = plain_loop(cfg, tok_json)
        trials, trial_wall = raymix_trials(cfg)
        after, _ = plain_loop(cfg, tok_json)
    plain = (before + after) / 2
    zero2, zero0 = trials[2], trials[0]
    n = cfg.scaling.num_workers
    print()
    print(
        f"bench/trial_throughput: tiny Llama, quickstart data, global batch "
        f"{cfg.train.micro_batch_size * n}, {n} CPU workers"
    )
    print(
        f"  plain PyTorch loop       {plain:10.0f} tokens/s  (before {before:.0f}, after {after:.0f})"
    )
    print(
        f"  raymix trial, ZeRO-2     {zero2:10.0f} tokens/s  (steady state, median of logged windows)"
    )
    print(
        f"  raymix trial, ZeRO-0     {zero0:10.0f} tokens/s  (same, DeepSpeed data parallel only)"
    )
    print(f"  ratio raymix/plain       {zero2 / plain:10.2f}   (goal >= 0.90)")
    print(
        f"  ratio ZeRO-0/plain       {zero0 / plain:10.2f}   (the rest is ZeRO-2's sharding work)"
    )
    print(
        f"  end-to-end wall          plain {plain_wall:.1f} s, raymix {trial_wall:.1f} s per trial "
        f"(ratio {plain_wall / trial_wall:.2f}: Ray, worker and DeepSpeed start-up)"
    )


if __name__ == "__main__":
    main()
