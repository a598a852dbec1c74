"""Benchmark: the fixed cost of one raymix trial against two floors, measured in one Ray session.

Three kinds of trial, run interleaved over ``ROUNDS`` rounds (the order alternates) and compared
by their medians, with the min-max over rounds:

(a) no-op floor: a Tune function trainable with raymix's resources (``{"CPU": DRIVER_CPU}``,
    ``tune.with_parameters``) that builds raymix's ``TorchTrainer`` (2 gloo workers, the same
    scaling, worker environment and run config, through ``build_trainer``) whose per-worker
    function returns at once: what Tune + Ray Train cost with nothing to do;
(b) DeepSpeed floor: the same, each worker importing DeepSpeed, building the quickstart's tiny
    model and running ``deepspeed.initialize`` (``build_engine``), then returning;
(c) the real quickstart trial: ``run_sweep`` on experiments/quickstart.yaml with one mixture,
    evaluation as configured, MLflow and storage in a temporary folder.

Each figure is the duration of ``Tuner.fit`` (timed from outside by wrapping the method): for
(c) that leaves out what ``run_sweep`` does before Ray (config checks, opening the token cache,
the contamination check), which is printed apart. The quickstart's "fixed part" is its wall
minus the time its workers spent in optimizer steps (``time/train_s`` from the trial's MLflow
run when the trial logs phase timings; else estimated from ``train/tokens_per_s``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner_timing import timed_tuner_fits  # noqa: E402  (bench/, the script's folder)

from raymix.config import ExperimentConfig, load  # noqa: E402
from raymix.data.mixture import build_plan  # noqa: E402
from raymix.data.pipeline import prepare_data  # noqa: E402
from raymix.sweep.tuner import init_ray, run_sweep, trial_trainable  # noqa: E402
from raymix.tracking import MlflowTracker, resolve_uri  # noqa: E402
from raymix.train.launch import build_trainer  # noqa: E402

ROUNDS = 3
MIXTURE = "all"
PHASES = [  # the trial's phase timings, in order (MLflow metrics of its child run)
    ("time/trial_setup_s", "driver: plan, MLflow child run, trainer built"),
    ("time/worker_start_s", "fit called -> rank 0 worker function entered"),
    ("time/worker_setup_s", "tokenizer, sources, stages, model"),
    ("time/engine_init_s", "deepspeed.initialize"),
    ("time/train_s", "optimizer steps"),
    ("time/eval_s", "held-out loss + generation eval"),
    ("time/checkpoint_s", "saves + reports"),
    ("time/trial_s", "driver entered -> fit returned"),
]


def _config(tmp: str) -> ExperimentConfig:
    return load(
        ROOT / "experiments" / "quickstart.yaml",
        [
            f"mixture.grid={{{MIXTURE}: {{math: 1000, code: 1000, general: 1000}}}}",
            f"sweep.storage_path={tmp}/runs",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        ],
    )


def noop_worker(config: dict[str, Any]) -> None:
    """(a): a worker with nothing to do."""


def deepspeed_worker(config: dict[str, Any]) -> None:
    """(b): import DeepSpeed, build the tiny model, ``deepspeed.initialize``, return."""
    import deepspeed  # noqa: F401
    import torch

    from raymix.data.tokenizer import load_tokenizer
    from raymix.train.engine import build_engine
    from raymix.train.model import build_model, resolve_dtype

    cfg = ExperimentConfig.model_validate_json(config["experiment"])
    if not cfg.scaling.use_gpu:
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    tokenizer = load_tokenizer(config["tokenizer"], cfg.model.revision)
    dtype = resolve_dtype(cfg.model, cfg.scaling.use_gpu)
    model = build_model(cfg.model, tokenizer, cfg.seed, dtype)
    build_engine(cfg, model, [config["steps"]], dtype)


def floor_trial(
    params: dict[str, Any],
    *,
    experiment_json: str,
    storage_path: str,
    tracking_uri: str,
    tokenizer: str,
    steps: int,
    deepspeed: bool,
) -> None:
    """A trial driver like raymix's ``run_trial`` without the plan and MLflow: build the trainer
    (with a stand-in worker function) and fit it."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = tune.get_context()
    cfg = ExperimentConfig.model_validate_json(experiment_json)
    trainer = build_trainer(
        cfg,
        {"experiment": experiment_json, "tokenizer": tokenizer, "steps": steps},
        name=f"{ctx.get_experiment_name()}/train_runs/{ctx.get_trial_id()}",
        storage_path=storage_path,
        tracking_uri=tracking_uri,
        callbacks=[TuneReportCallback()],
        train_fn=deepspeed_worker if deepspeed else noop_worker,
    )
    trainer.fit()


def run_floor(
    cfg: ExperimentConfig, tokenizer: str, steps: int, storage: str, *, deepspeed: bool
) -> float:
    """One floor trial in its own Tuner; its ``Tuner.fit`` seconds."""
    from ray import tune

    uri = resolve_uri(cfg.tracking.uri)
    trainable = trial_trainable(
        floor_trial,
        experiment_json=cfg.model_dump_json(),
        storage_path=storage,
        tracking_uri=uri,
        tokenizer=tokenizer,
        steps=steps,
        deepspeed=deepspeed,
    )
    name = f"floor-{'deepspeed' if deepspeed else 'noop'}-{time.strftime('%H%M%S')}"
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            verbose=1,
        ),
    )
    with timed_tuner_fits() as fits:
        grid = tuner.fit()
    if grid.num_errors:
        raise RuntimeError(f"the {name} trial failed; see the Tune output above")
    return fits[0]


def run_quickstart(cfg: ExperimentConfig) -> tuple[float, float, dict[str, float]]:
    """One real quickstart trial: (Tuner.fit seconds, seconds of run_sweep before and after
    the fit, the child run's metrics) ."""
    start = time.perf_counter()
    with timed_tuner_fits() as fits:
        outcome = run_sweep(cfg)
    total = time.perf_counter() - start
    if outcome.num_errors:
        raise RuntimeError("the quickstart trial failed; see the Tune output above")
    tracker = MlflowTracker(outcome.tracking_uri)
    (run,) = tracker.trial_runs(outcome.parent_run_id)
    metrics = dict(run.data.metrics)
    if "time/train_s" not in metrics:
        metrics["estimate/train_s"] = _estimate_train_s(tracker, run)
    return fits[0], total - fits[0], metrics


def _estimate_train_s(tracker: MlflowTracker, run: Any) -> float:
    """Without phase timings: the plan's training tokens ÷ the median logged tokens/s (windows
    that contain an evaluation are slower, and the median leaves them out)."""
    manifest = tracker.client.download_artifacts(run.info.run_id, "manifest.json")
    plan = json.loads(Path(manifest).read_text())
    tokens = sum(
        stage["epochs"] * sum(part["tokens"] for part in stage["sources"].values())
        for stage in plan["stages"]
    )
    hist = tracker.client.get_metric_history(run.info.run_id, "train/tokens_per_s")
    return tokens / statistics.median(m.value for m in hist)


def _line(label: str, values: list[float], unit: str = "s", note: str = "") -> str:
    med = statistics.median(values)
    fmt = ".2f" if unit == "" else ".1f"
    spread = f"{min(values):{fmt}}-{max(values):{fmt}}"
    return f"  {label:34s} {med:7{fmt}} {unit:1s}  ({spread}){note}"


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    times: dict[str, list[float]] = {"a": [], "b": [], "c": [], "prep": []}
    runs: list[dict[str, float]] = []
    loadavg: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(tmp)
        tokenizer, _, sources = prepare_data(cfg)  # the token cache, before any timing
        plan = build_plan(cfg, MIXTURE, sources)
        batch = cfg.train.micro_batch_size * cfg.train.grad_accum * cfg.scaling.num_workers
        rows = sum(st.epochs * sum(p.count for p in st.sources.values()) for st in plan.stages)
        steps = -(-rows // batch)  # the engine's schedule length, as the real trial's
        init_ray(cfg, resolve_uri(cfg.tracking.uri), None)  # one Ray session, raymix's settings
        storage = f"{tmp}/floors"
        # The session's first Tune run pays one-time costs (imports, worker pool): not counted.
        warmup = run_floor(cfg, tokenizer, steps, storage, deepspeed=False)

        def a() -> None:
            times["a"].append(run_floor(cfg, tokenizer, steps, storage, deepspeed=False))

        def b() -> None:
            times["b"].append(run_floor(cfg, tokenizer, steps, storage, deepspeed=True))

        def c() -> None:
            fit, prep, metrics = run_quickstart(cfg)
            times["c"].append(fit)
            times["prep"].append(prep)
            runs.append(metrics)

        for r in range(ROUNDS):
            for kind in (a, b, c) if r % 2 == 0 else (c, b, a):
                kind()
            loadavg.append(os.getloadavg()[0])

    phases = "time/train_s" in runs[0]
    train = [m["time/train_s" if phases else "estimate/train_s"] for m in runs]
    fixed = [w - t for w, t in zip(times["c"], train, strict=True)]
    print()
    print(
        f"bench/trial_overhead: per-trial fixed cost, quickstart (mixture {MIXTURE!r}, "
        f"{cfg.scaling.num_workers} gloo workers x {cfg.scaling.cpus_per_worker:g} CPU, ZeRO-"
        f"{cfg.deepspeed.zero_stage}); {ROUNDS} interleaved rounds in one Ray session, "
        f"Tuner.fit seconds, median (min-max)"
    )
    print(f"  (first Tune run of the session, a no-op trial, not counted: {warmup:.1f} s)")
    print(_line("(a) no-op floor", times["a"], note="  Tune trial + TorchTrainer, workers return"))
    print(_line("(b) DeepSpeed floor", times["b"], note="  + import, tiny model, ds.initialize"))
    print(_line("(c) quickstart trial, wall", times["c"], note="  Tuner.fit of run_sweep"))
    how = "time/train_s" if phases else "train_s estimated: plan tokens / median tokens/s"
    print(_line("    fixed part (wall - train)", fixed, note=f"  {how}"))
    print(_line("    train (optimizer steps)", train))
    for floor, goal in (("b", "  goal <= 1.15"), ("a", "")):
        per_round = [f / x for f, x in zip(fixed, times[floor], strict=True)]
        ratio = statistics.median(fixed) / statistics.median(times[floor])
        print(
            f"  ratio fixed/({floor})                     {ratio:7.2f}    (ratio of medians; "
            f"per-round {min(per_round):.2f}-{max(per_round):.2f}){goal}"
        )
    print(
        _line("run_sweep outside Tuner.fit", times["prep"], note="  checks, cache, contamination")
    )
    for r in range(ROUNDS):
        print(
            f"  round {r + 1}: (a) {times['a'][r]:.1f} s, (b) {times['b'][r]:.1f} s, "
            f"(c) {times['c'][r]:.1f} s, fixed {fixed[r]:.1f} s; machine load (1 min) "
            f"{loadavg[r]:.1f} on {os.cpu_count()} cores (this run included)"
        )
    if not phases:
        print("  phase metrics not available (no time/* metrics on the trial's MLflow run)")
        return
    print("  phase breakdown of (c), from its MLflow run (medians, min-max):")
    for key, meaning in PHASES:
        values = [m[key] for m in runs if key in m]
        if values:
            print(_line(f"  {key}", values, note=f"  {meaning}"))
        else:
            print(f"    {key:32s}     n/a    {meaning}")
    if all("time/trial_s" in m for m in runs):
        rest = [w - m["time/trial_s"] for w, m in zip(times["c"], runs, strict=True)]
        print(_line("  Tuner.fit - time/trial_s", rest, note="  Tune: trial actor, bookkeeping"))


if __name__ == "__main__":
    main()
