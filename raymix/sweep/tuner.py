"""Run one experiment as a Ray Tune sweep: MLflow parent run, Ray start-up, Tuner, results.

Everything that can fail on bad input (sources, mixtures, tokenizer) is checked before Ray starts,
so a user error costs a second, not a cluster start.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymix.config import ExperimentConfig, dump
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data
from raymix.sweep.contamination import find_contamination
from raymix.sweep.driver import run_trial
from raymix.sweep.preflight import check_experiment
from raymix.sweep.space import param_space
from raymix.tracking import MlflowTracker, resolve_uri

DRIVER_CPU = 0.01  # the trial driver only waits on its TorchTrainer; its workers hold the CPUs
TRAIN_POLL_S = "0.5"  # Ray Train's report poll; the 2 s default throttles reporting


@dataclass(frozen=True)
class SweepOutcome:
    """Where a finished sweep's results are."""

    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    num_errors: int
    result_grid: Any


def run_sweep(cfg: ExperimentConfig, address: str | None = None) -> SweepOutcome:
    """Run every trial of ``cfg`` and return where the results are."""
    from ray import tune

    from raymix.sweep.callbacks import CloseTrialRuns

    check_experiment(cfg, read_sources=False)  # eval sets and judges; prepare_data reads sources
    tokenizer, _, sources = prepare_data(cfg)  # tokenize every source once, into the cache
    contamination = find_contamination(cfg, sources)
    for mixture in cfg.mixture.grid:  # fail fast on a bad mixture, before Ray starts
        build_plan(cfg, mixture, sources, contamination)

    uri = resolve_uri(cfg.tracking.uri)
    storage = _storage_path(cfg.sweep.storage_path)
    name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker = MlflowTracker(uri)
    experiment_id = tracker.experiment_id(cfg.tracking.experiment or cfg.name)
    parent = tracker.start_sweep(experiment_id, name, dump(cfg))
    tracker.set_tag(parent, "raymix.tune_path", f"{storage}/{name}")

    init_ray(cfg, uri, address)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            experiment_json=cfg.model_dump_json(),
            experiment_id=experiment_id,
            parent_run_id=parent,
            tracking_uri=uri,
            storage_path=storage,
            tokenizer=tokenizer,
            contamination=contamination,
        ),
        {"CPU": DRIVER_CPU},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(cfg),
        tune_config=tune.TuneConfig(
            metric=cfg.sweep.metric,
            mode=cfg.sweep.mode,
            num_samples=cfg.sweep.num_samples,
            max_concurrent_trials=cfg.sweep.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            callbacks=[CloseTrialRuns(uri, parent)],
            verbose=1,
        ),
    )
    try:
        grid = tuner.fit()
    except BaseException:
        tracker.finish(parent, "FAILED")
        raise
    tracker.finish(parent, "FAILED" if grid.num_errors else "FINISHED")
    return SweepOutcome(name, uri, experiment_id, parent, storage, grid.num_errors, grid)


def init_ray(cfg: ExperimentConfig, tracking_uri: str, address: str | None) -> None:
    """Connect to a cluster (``address`` or $RAY_ADDRESS) or start a local one big enough for
    ``max_concurrent_trials`` trials (logical CPUs may exceed the cores: a trial's driver needs a
    sliver on top of its workers)."""
    import ray

    if ray.is_initialized():
        return
    env = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get(
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_S
        )
    }
    runtime_env = {"env_vars": env}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], runtime_env=runtime_env)
        return
    s = cfg.scaling
    per_trial = s.num_workers * s.cpus_per_worker + DRIVER_CPU
    needed = math.ceil(per_trial * cfg.sweep.max_concurrent_trials)
    num_cpus = max(os.cpu_count() or 1, needed)
    os.environ.update(env)  # the Train controller runs in the trial actor, started from here
    ray.init(num_cpus=num_cpus, runtime_env=runtime_env, log_to_driver=True)


def _storage_path(path: str | None) -> str:
    if path and "://" in path:
        return path
    return str(Path(path or "raymix_runs").resolve())
