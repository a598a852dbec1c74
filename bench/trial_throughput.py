"""Benchmark: tokens/s of a raymix trial against a plain single-process PyTorch loop.

Same tiny model, same tokenizer, same rows, same global batch and optimizer. The two sides are
measured side by side in one process and one Ray session, interleaved over ``ROUNDS`` rounds
(the order alternates), because these machines are shared and noisy; the ratio is that of the
medians, and the spread of each side and of the per-round ratios is printed with it. Threads are
pinned equally: the plain loop uses ``num_workers`` threads, each of the trial's ``num_workers``
Ray workers one (``cpus_per_worker``).

The trial's figure is its steady-state ``train/tokens_per_s`` as logged to MLflow (the median
of the logged windows after the first ``WARM_STEPS`` steps); each round runs one sweep of two
trials, ZeRO-2 and ZeRO-0. Start-up (Ray workers, DeepSpeed init, checkpoint) is reported
separately as the end-to-end wall; ``bench/trial_overhead.py`` breaks it down.
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

from tuner_timing import timed_tuner_fits  # noqa: E402  (bench/, the script's folder)

from raymix.config import ExperimentConfig, load  # noqa: E402
from raymix.data.batches import collate, epoch_order  # noqa: E402
from raymix.data.mixture import build_plan  # noqa: E402
from raymix.data.pipeline import prepare_data  # noqa: E402
from raymix.sweep.tuner import init_ray, run_sweep  # noqa: E402
from raymix.tracking import MlflowTracker, resolve_uri  # noqa: E402
from raymix.train.engine import lr_factor, warmup_steps  # noqa: E402
from raymix.train.model import build_model  # noqa: E402

MIXTURE = "all"
ROWS = 600  # per source: 1800 rows, 57 steps of 32, so 10 full log windows after the warm steps
WARM_STEPS = 5  # excluded from both sides' steady-state window
ROUNDS = 3
STAGES = (2, 0)  # the ZeRO stages of each round's sweep


def _config(tmp: str) -> ExperimentConfig:
    return load(
        ROOT / "experiments" / "quickstart.yaml",
        [
            f"mixture.grid={{{MIXTURE}: {{math: {ROWS}, code: {ROWS}, general: {ROWS}}}}}",
            "train.eval_every=null",
            "train.report_every=1000",
            f"sweep.storage_path={tmp}/runs",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            "tracking.log_checkpoint=false",
            "train.epochs=1",
            "eval.tasks=[]",
            f"sweep.space={{deepspeed.zero_stage: {{grid: {list(STAGES)}}}}}",
        ],
    )


def plain_loop(cfg: ExperimentConfig, tokenizer_json: str) -> tuple[float, float]:
    """Single process, ``num_workers`` threads, the trial's global batch; (steady tokens/s, wall
    seconds from data opening to the last step)."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(cfg.scaling.num_workers * int(cfg.scaling.cpus_per_worker))
    _, tok, sources = prepare_data(cfg, tokenizer_json, warn=False)
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
    end = time.perf_counter()
    return tokens / (end - t0), end - start


def raymix_trials(cfg: ExperimentConfig) -> tuple[dict[int, float], dict[int, int], float]:
    """One sweep of two real trials (Ray, TorchTrainer, DeepSpeed ZeRO-2 and ZeRO-0, MLflow):
    ({zero stage: steady tokens/s}, {zero stage: windows in it}, Tuner.fit seconds per trial)."""
    with timed_tuner_fits() as fits:
        outcome = run_sweep(cfg)
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} trial(s) failed; see the Tune output above")
    tracker = MlflowTracker(outcome.tracking_uri)
    tps: dict[int, float] = {}
    windows: dict[int, int] = {}
    every = cfg.train.log_every
    for run in tracker.trial_runs(outcome.parent_run_id):
        hist = tracker.client.get_metric_history(run.info.run_id, "train/tokens_per_s")
        # Full windows only: the stage's last window may be a partial one.
        steady = [m.value for m in hist if m.step > WARM_STEPS and m.step % every == 0]
        stage = int(run.data.params["deepspeed.zero_stage"])
        tps[stage], windows[stage] = statistics.median(steady), len(steady)
    return tps, windows, fits[0] / len(STAGES)


def _spread(values: list[float], fmt: str = ".0f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    plain: list[float] = []
    plain_wall: list[float] = []
    trials: dict[int, list[float]] = {s: [] for s in STAGES}
    trial_wall: list[float] = []
    windows: dict[int, int] = {}
    loadavg: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(tmp)
        tok_json, _, _ = prepare_data(cfg)
        # One Ray session for every round, with raymix's settings, started before the first
        # plain run so both sides always run beside the same idle Ray processes.
        init_ray(cfg, resolve_uri(cfg.tracking.uri), None)

        def run_plain() -> None:
            tps, wall = plain_loop(cfg, tok_json)
            plain.append(tps)
            plain_wall.append(wall)

        def run_raymix() -> None:
            tps, n, wall = raymix_trials(cfg)
            for s in STAGES:
                trials[s].append(tps[s])
            windows.update(n)
            trial_wall.append(wall)

        for r in range(ROUNDS):
            for side in (run_plain, run_raymix) if r % 2 == 0 else (run_raymix, run_plain):
                side()
            loadavg.append(os.getloadavg()[0])

    n = cfg.scaling.num_workers
    base = statistics.median(plain)
    med = {s: statistics.median(v) for s, v in trials.items()}
    steps = -(-ROWS * 3 // (cfg.train.micro_batch_size * n))
    print()
    print(
        f"bench/trial_throughput: tiny Llama, quickstart data ({3 * ROWS} rows, {steps} steps), "
        f"global batch {cfg.train.micro_batch_size * n}; {ROUNDS} interleaved rounds in one Ray "
        f"session, medians (min-max)"
    )
    print(
        f"  {f'plain PyTorch loop ({n} threads)':34s} {base:8.0f} tokens/s  ({_spread(plain)}; steady "
        f"state after {WARM_STEPS} steps)"
    )
    notes = {2: "", 0: ", DeepSpeed data parallel only"}
    for s in STAGES:
        print(
            f"  {f'raymix trial ZeRO-{s} ({n}x1 thread)':34s} {med[s]:8.0f} tokens/s  ({_spread(trials[s])}; "
            f"median of {windows[s]} logged windows{notes[s]})"
        )
    for s, goal in ((2, "   goal >= 0.90"), (0, "")):
        per_round = [t / p for t, p in zip(trials[s], plain, strict=True)]
        print(
            f"  ratio ZeRO-{s}/plain      {med[s] / base:5.2f}  (ratio of medians; per-round "
            f"ratios {_spread(per_round, '.2f')}){goal}"
        )
    print(
        f"  end-to-end wall          plain {statistics.median(plain_wall):.1f} s "
        f"({_spread(plain_wall, '.1f')}), raymix {statistics.median(trial_wall):.1f} s per trial "
        f"({_spread(trial_wall, '.1f')}; Tuner.fit / {len(STAGES)}, Ray already up: trial and "
        f"worker start-up, DeepSpeed init, checkpoint; see bench/trial_overhead.py)"
    )
    for r in range(ROUNDS):
        print(
            f"  round {r + 1}: plain {plain[r]:.0f}, "
            + ", ".join(f"ZeRO-{s} {trials[s][r]:.0f}" for s in STAGES)
            + f" tokens/s; machine load (1 min) {loadavg[r]:.1f} on {os.cpu_count()} cores "
            "(this run included)"
        )


if __name__ == "__main__":
    main()
