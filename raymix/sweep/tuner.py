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
from raymix.config.schema import WeightsSpace, scheduler_metric
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data, source_index
from raymix.data.simplex import MixturePoint
from raymix.sweep.contamination import find_contamination
from raymix.sweep.driver import run_trial
from raymix.sweep.preflight import check_experiment
from raymix.sweep.space import DefineByRun, objectives, param_space, sampler, search_seed
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
    check_mixtures(cfg, sources, contamination)  # fail fast on a bad mixture, before Ray starts

    uri = resolve_uri(cfg.tracking.uri)
    storage = _storage_path(cfg.sweep.storage_path)
    name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker = MlflowTracker(uri)
    experiment_id = tracker.experiment_id(cfg.tracking.experiment or cfg.name)
    parent = tracker.start_sweep(experiment_id, name, dump(cfg))
    tracker.set_tag(parent, "raymix.tune_path", f"{storage}/{name}")

    init_ray(cfg, uri, address)
    trainable = trial_trainable(
        run_trial,
        experiment_json=cfg.model_dump_json(),
        experiment_id=experiment_id,
        parent_run_id=parent,
        tracking_uri=uri,
        storage_path=storage,
        tokenizer=tokenizer,
        contamination=contamination,
        source_index=source_index(sources),
    )
    searcher, space = search_algorithm(cfg)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler(cfg),
            num_samples=cfg.sweep.num_samples,
            max_concurrent_trials=cfg.sweep.max_concurrent_trials,
            # A trial's driver actor serves the next trial, except under a scheduler: a stopped
            # trial's driver is cut off mid-fit, and its actor must die with its workers.
            reuse_actors=cfg.sweep.scheduler.name == "none",
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


def trial_trainable(driver: Any, **params: Any) -> Any:
    """A trial driver as Tune runs it: ``params`` put in the object store once for all trials,
    and a sliver of CPU for the driver (its TorchTrainer's workers hold the CPUs)."""
    from ray import tune

    return tune.with_resources(tune.with_parameters(driver, **params), {"CPU": DRIVER_CPU})


def search_algorithm(cfg: ExperimentConfig) -> tuple[Any, dict[str, Any]]:
    """The Tune searcher of ``sweep.search`` and the param space it is handed (empty for
    Optuna, which samples the define-by-run space itself). Tune wraps a Searcher in its
    concurrency limiter for ``max_concurrent_trials``; the variant generator is a
    SearchGenerator, which Tune does not wrap, so it is given the limit itself."""
    from ray.tune.search import BasicVariantGenerator

    if cfg.sweep.search.algorithm == "grid":
        limit = cfg.sweep.max_concurrent_trials
        generator = BasicVariantGenerator(random_state=search_seed(cfg), max_concurrent=limit)
        return generator, param_space(cfg)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = objectives(cfg)
    return OptunaSearch(DefineByRun(cfg), metric=metric, mode=mode, sampler=sampler(cfg)), {}


def scheduler(cfg: ExperimentConfig) -> Any:
    """The Tune trial scheduler of ``sweep.scheduler`` (None: first in, first out)."""
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    s = cfg.sweep.scheduler
    if s.name == "none":
        return None
    metric = scheduler_metric(cfg)
    grace = s.grace_period or cfg.train.eval_every or 1
    if s.name == "asha":
        return ASHAScheduler(
            time_attr=s.time_attr,
            metric=metric,
            mode=s.mode,
            max_t=max(s.max_t, grace),
            grace_period=grace,
            reduction_factor=s.reduction_factor,
        )
    return MedianStoppingRule(
        time_attr=s.time_attr,
        metric=metric,
        mode=s.mode,
        grace_period=grace,
        min_samples_required=s.min_samples_required,
    )


def check_mixtures(
    cfg: ExperimentConfig,
    sources: dict[str, Any],
    contamination: dict[str, dict[str, list[int]]] | None,
) -> None:
    """Compile every mixture a trial could ask for that can be named in advance: each grid
    mixture, each point of a grid over a finite space, and a space's largest amount (natural
    weights: if it fits, every point fits, since counts are capped and redistributed)."""
    if cfg.mixture.space is None:
        for mixture in cfg.mixture.names:
            build_plan(cfg, mixture, sources, contamination)
        return
    space = cfg.mixture.space
    largest = MixturePoint({}, space.amount.largest())
    natural = space.model_copy(update={"weights": WeightsSpace(natural=True)})
    build_plan(
        cfg.model_copy(update={"mixture": cfg.mixture.model_copy(update={"space": natural})}),
        largest,
        sources,
        contamination,
    )


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
    runtime_env = {"env_vars": env, "worker_process_setup_hook": pin_ray_address}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], runtime_env=runtime_env)
        return
    s = cfg.scaling
    per_trial = s.num_workers * s.cpus_per_worker + DRIVER_CPU
    needed = math.ceil(per_trial * cfg.sweep.max_concurrent_trials)
    num_cpus = max(os.cpu_count() or 1, needed)
    os.environ.update(env)  # the Train controller runs in the trial actor, started from here
    ray.init(num_cpus=num_cpus, runtime_env=runtime_env, log_to_driver=True)


def pin_ray_address() -> None:
    """Every Ray worker process of the sweep (trial drivers, Train controllers, their
    placement-group cleaners, workers) names its own cluster in $RAY_ADDRESS. Ray's state API,
    which Train's placement-group cleaner calls, otherwise looks the cluster up by scanning the
    machine and fails when it finds two (another sweep, a test's in-process Ray): the cleaner
    dies, a stopped trial's worker group leaks its CPUs, and the next trial never starts."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def _storage_path(path: str | None) -> str:
    if path and "://" in path:
        return path
    return str(Path(path or "raymix_runs").resolve())
