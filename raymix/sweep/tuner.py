"""Run one experiment as a Ray Tune sweep: MLflow parent run, Ray start-up, Tuner, results.

Everything that can fail on bad input (sources, mixtures, tokenizer) is checked before Ray starts,
so a user error costs a second, not a cluster start.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raymix.config import ExperimentConfig, dump
from raymix.config.schema import WeightsSpace, scheduler_metric
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data, source_index
from raymix.data.simplex import MixturePoint
from raymix.errors import ConfigError
from raymix.sweep.contamination import find_contamination
from raymix.sweep.driver import run_trial
from raymix.sweep.preflight import check_experiment, check_resources, resolve_workers
from raymix.sweep.space import DefineByRun, objectives, param_space, sampler, search_seed
from raymix.tracking import MlflowTracker, output_root, resolve_uri
from raymix.tracking.delivery import deliver_spool, patiently, spooled_runs
from raymix.tracking.mlflow_tracker import artifact_location

DRIVER_CPU = 0.01  # the trial driver only waits on its TorchTrainer; its workers hold the CPUs
TRAIN_POLL_S = "0.5"  # Ray Train's report poll; the 2 s default throttles reporting


@dataclass(frozen=True)
class SweepOutcome:
    """Where a finished (or interrupted) sweep's results are."""

    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    num_errors: int
    result_grid: Any
    interrupted_by: int | None = None
    """The signal (SIGINT, SIGTERM) that stopped the sweep before its end, else None."""
    spooled: tuple[str, ...] = ()
    """Spool folders of runs whose MLflow records are still undelivered (``raymix sync``)."""

    @property
    def run_folder(self) -> str:
        return f"{self.storage_path}/{self.name}"


class SweepInterrupted(Exception):  # noqa: N818 - not an error: the user stopped the sweep
    """A signal stopped the sweep before Tune ran (nothing to resume), or a second signal cut
    Tune's own stop short. Its runs are closed KILLED."""

    def __init__(self, signum: int, run_folder: str | None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.run_folder = signum, run_folder


TUNE_PATH_TAG = "raymix.tune_path"


def run_sweep(
    cfg: ExperimentConfig,
    address: str | None = None,
    resume: str | None = None,
    restart: bool = False,
) -> SweepOutcome:
    """Run every trial of ``cfg`` and return where the results are.

    Args:
        cfg: the experiment.
        address: a Ray cluster to connect to (default: $RAY_ADDRESS, else a local one).
        resume: the run folder of an interrupted sweep of this experiment ("" for the latest
            unfinished sweep with this configuration): Tune restores it (finished trials are
            not run again, unfinished ones continue from their last checkpoint, errored ones
            restart) into the same MLflow parent and child runs.
        restart: start a new sweep although an unfinished one with this configuration exists
            (without it or ``resume``, that is an error: rerunning would duplicate its trials).

    SIGINT and SIGTERM stop the sweep as Tune stops it (trials stopped, experiment state saved
    for a resume); every run still RUNNING is then closed KILLED, and the outcome says which
    signal it was. A second signal stops at once.
    """
    with _StopOnSignal() as stop:
        try:
            return _run_sweep(cfg, address, resume, restart, stop)
        except KeyboardInterrupt:
            raise SweepInterrupted(stop.signum or signal.SIGINT, stop.run_folder) from None


def _run_sweep(
    cfg: ExperimentConfig,
    address: str | None,
    resume: str | None,
    restart: bool,
    stop: _StopOnSignal,
) -> SweepOutcome:
    from raymix.sweep.callbacks import CloseTrialRuns

    if resume:
        resume = _restorable(resume)  # before any data is prepared or any store is opened
    check_experiment(cfg, read_sources=False)  # eval sets, judges, tracking store
    unfinished = unfinished_sweeps(cfg)  # nothing written to the store yet
    if resume == "":
        if not unfinished:
            raise ConfigError(
                f"--resume: no unfinished sweep of experiment {_experiment_name(cfg)!r} with "
                f"this configuration in {resolve_uri(cfg.tracking.uri)}; give its run folder "
                "(--resume RUN_FOLDER) or start a new sweep without --resume"
            )
        resume = unfinished[0].folder
    elif resume is None and unfinished and not restart:
        u = unfinished[0]
        raise ConfigError(
            f"an unfinished sweep of experiment {_experiment_name(cfg)!r} with this "
            f"configuration exists (MLflow parent run {u.run_id}, {u.status}, run folder "
            f"{u.folder}); continue it with --resume, or start a new sweep with --restart"
        )
    tokenizer, _, sources = prepare_data(cfg)  # tokenize every source once, into the cache
    contamination = find_contamination(cfg, sources)
    check_mixtures(cfg, sources, contamination)  # fail fast on a bad mixture, before Ray starts

    uri = resolve_uri(cfg.tracking.uri)
    if (
        resume is not None
        and uri.startswith("sqlite:///")
        and not Path(uri[len("sqlite:///") :]).exists()
    ):
        raise ConfigError(
            f"--resume {resume}: no MLflow store at {uri} (the sweep's tracking URI?)"
        )
    asked = cfg  # the user's file: what the parent run records and its hash identifies
    cfg = init_ray(cfg, uri, address)  # scaling.num_workers resolved; the cluster can hold it
    stop.arm()  # again: Ray's core worker installs its own SIGTERM handler (it aborts)
    if uri.startswith("sqlite:///"):  # e.g. ~/raymix/mlflow.db on a fresh node
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    tracker = MlflowTracker(uri)
    experiment_id = tracker.experiment_id(_experiment_name(cfg), mlflow_artifact_root(cfg))
    if resume is not None:
        storage, name, parent = _resumed_sweep(asked, tracker, experiment_id, resume)
        deliver_spool(f"{storage}/{name}")  # what an outage kept from MLflow, before it goes on
    else:
        for old in unfinished if restart else []:
            close_open_runs(tracker, old.run_id, "KILLED", only_running=True)
        storage = _storage_path(cfg.sweep.storage_path)
        name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        parent = tracker.start_sweep(experiment_id, name, dump(asked))
        tracker.set_tag(parent, TUNE_PATH_TAG, f"{storage}/{name}")
        tracker.set_tag(parent, CONFIG_HASH_TAG, config_hash(asked))
    stop.run_folder = f"{storage}/{name}"
    try:
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
        callback = CloseTrialRuns(uri, parent)
        grid = _tuner(cfg, trainable, name, storage, callback, resume is not None).fit()
    except BaseException:
        close_open_runs(tracker, parent, "KILLED" if stop.signum else "FAILED",
                        stopped_at_ms=stop.at_ms)  # fmt: skip
        raise
    # MLflow may be down as the sweep ends: its runs are closed once it is back (within reason)
    wait = cfg.tracking.end_wait_s
    if stop.signum:
        at = stop.at_ms
        patiently(lambda: close_open_runs(tracker, parent, "KILLED", stopped_at_ms=at), wait)
    else:
        done = "FAILED" if grid.num_errors else "FINISHED"
        patiently(lambda: close_open_runs(tracker, parent, "FAILED", parent_status=done), wait)
    errors, spooled = grid.num_errors, tuple(spooled_runs(f"{storage}/{name}"))
    return SweepOutcome(
        name, uri, experiment_id, parent, storage, errors, grid, stop.signum, spooled
    )


def _tuner(
    cfg: ExperimentConfig,
    trainable: Any,
    name: str,
    storage: str,
    callback: Any,
    resume: bool,
) -> Any:
    """The sweep's Tuner, or (``resume``) the interrupted one restored from its run folder."""
    from ray import tune

    if resume:
        return tune.Tuner.restore(
            f"{storage}/{name}",
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=True,
        )
    searcher, space = search_algorithm(cfg)
    grid = cfg.sweep.search.algorithm == "grid"
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler(cfg),
            num_samples=cfg.sweep.num_samples,
            # the grid's generator holds the limit itself (see search_algorithm)
            max_concurrent_trials=None if grid else cfg.sweep.max_concurrent_trials,
            # A trial's driver actor serves the next trial, except under a scheduler: a stopped
            # trial's driver is cut off mid-fit, and its actor must die with its workers.
            reuse_actors=cfg.sweep.scheduler.name == "none",
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            callbacks=[callback],
            verbose=1,
        ),
    )


def close_open_runs(
    tracker: MlflowTracker,
    parent: str,
    status: str,
    parent_status: str | None = None,
    only_running: bool = False,
    stopped_at_ms: float | None = None,
) -> None:
    """Close every child run of the sweep still RUNNING with ``status`` (a sweep never leaves a
    run RUNNING), then the parent with ``parent_status`` (default: ``status``; with
    ``only_running``, only if the parent is still RUNNING). ``stopped_at_ms``: when a signal
    stopped the sweep; a trial that ended FAILED since then failed because it was stopped, and
    is closed with ``status`` too."""
    for run in tracker.trial_runs(parent):
        stopped_under_it = (
            stopped_at_ms is not None
            and run.info.status == "FAILED"
            and (run.info.end_time or 0) >= stopped_at_ms
        )
        if run.info.status == "RUNNING" or stopped_under_it:
            tracker.finish(str(run.info.run_id), status)
    if not only_running or tracker.client.get_run(parent).info.status == "RUNNING":
        tracker.finish(parent, parent_status or status)


CONFIG_HASH_TAG = "raymix.config_hash"


def config_hash(cfg: ExperimentConfig) -> str:
    """A digest of the resolved experiment: sweeps with the same one would run the same trials."""
    import hashlib

    return hashlib.sha256(dump(cfg).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unfinished:
    """A sweep's parent run that did not finish, and the run folder Tune can restore it from."""

    run_id: str
    status: str
    folder: str


def unfinished_sweeps(cfg: ExperimentConfig) -> list[Unfinished]:
    """Sweeps of this experiment with this configuration that did not finish (a driver killed,
    interrupted, or with failed trials) and can be resumed, newest first. Reads the tracking
    store only if it exists (nothing is created here)."""
    from ray import tune

    uri = resolve_uri(cfg.tracking.uri)
    local = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else None
    if uri.startswith("file:"):
        local = uri[len("file://") :]
    if local is not None and not Path(local).exists():
        return []
    tracker = MlflowTracker(uri)
    exp = tracker.client.get_experiment_by_name(_experiment_name(cfg))
    if exp is None:
        return []
    runs = tracker.client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{CONFIG_HASH_TAG}` = '{config_hash(cfg)}' "
        "and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=100,
    )
    found = []
    for run in runs:
        folder = run.data.tags.get(TUNE_PATH_TAG)
        if folder and tune.Tuner.can_restore(folder):
            found.append(Unfinished(str(run.info.run_id), run.info.status, folder))
    return found


def _experiment_name(cfg: ExperimentConfig) -> str:
    return cfg.tracking.experiment or cfg.name


def _resumed_sweep(
    cfg: ExperimentConfig, tracker: MlflowTracker, experiment_id: str, folder: str
) -> tuple[str, str, str]:
    """(storage path, sweep name, parent run id) of the sweep in run folder ``folder``; its
    parent run is RUNNING again."""
    found = tracker.client.search_runs(
        [experiment_id], filter_string=f"tags.`{TUNE_PATH_TAG}` = '{folder}'", max_results=1
    )
    if not found:
        raise ConfigError(
            f"--resume {folder}: no MLflow parent run of experiment "
            f"{_experiment_name(cfg)!r} in {tracker.uri} has this run folder; "
            "resume with the same experiment file and tracking URI"
        )
    parent = str(found[0].info.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        started = Path(tracker.client.download_artifacts(parent, "config.yaml", tmp)).read_text()
    if started != dump(cfg):
        old, new = yaml.safe_load(started), yaml.safe_load(dump(cfg))
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise ConfigError(
            f"--resume {folder}: the experiment changed since the sweep started (keys: "
            f"{', '.join(keys)}); resume with the file and --set overrides it started with"
        )
    tracker.client.update_run(parent, status="RUNNING")
    storage, name = folder.rstrip("/").rsplit("/", 1)
    return storage, name, parent


def _restorable(folder: str) -> str:
    """The absolute run folder to resume, if Tune can restore it."""
    from ray import tune

    folder = folder if "://" in folder else str(Path(folder).resolve())
    if not tune.Tuner.can_restore(folder):
        raise ConfigError(
            f"--resume {folder}: no Tune experiment state there; give the run folder a sweep "
            "printed (<sweep.storage_path>/<name>-<date>)"
        )
    return folder


class _StopOnSignal:
    """SIGINT and SIGTERM stop a sweep the way Tune stops on Ctrl-C: Tune's own handler (which
    raymix takes over, so that SIGTERM counts too) is reached through SIGUSR1, which Tune
    listens to while it runs; before Tune runs, or at a second signal, KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at_ms: float | None = None  # when the first signal came (ms since the epoch)
        self.run_folder: str | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def arm(self) -> None:
        """Take SIGINT and SIGTERM (back) from whoever installed a handler since."""
        if self._saved:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        self.at_ms = self.at_ms or time.time() * 1000
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (
            signal.SIG_DFL,
            signal.SIG_IGN,
            None,
        )
        if not first or not tune_listens:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        print(f"\nraymix: {name}: stopping the trials and saving the sweep's state "
              "(send it again to stop at once)", file=sys.stderr, flush=True)  # fmt: skip
        os.kill(os.getpid(), signal.SIGUSR1)


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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric, mode = objectives(cfg)
    from raymix.sweep.optuna_search import LossKeepingSearch

    return LossKeepingSearch(DefineByRun(cfg), metric=metric, mode=mode, sampler=sampler(cfg)), {}


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


def init_ray(cfg: ExperimentConfig, tracking_uri: str, address: str | None) -> ExperimentConfig:
    """Connect to a cluster (``address`` or $RAY_ADDRESS) or start a local one big enough for
    ``max_concurrent_trials`` trials (logical CPUs may exceed the cores: a trial's driver needs a
    sliver on top of its workers); returns ``cfg`` with ``scaling.num_workers: auto`` resolved
    for that cluster, once it is checked to hold one trial."""
    import ray

    if ray.is_initialized():
        return resolve_workers(cfg, DRIVER_CPU)
    env = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get(
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_S
        )
    }
    runtime_env = {"env_vars": env, "worker_process_setup_hook": pin_ray_address}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], runtime_env=runtime_env)
        cfg = resolve_workers(cfg, DRIVER_CPU)
        check_resources(cfg, cfg.scaling.wait_for_resources_s)
        return cfg
    s = cfg.scaling
    if s.num_workers == "auto":  # this machine: a worker per cpus_per_worker of its cores
        needed = math.ceil((os.cpu_count() or 1) + DRIVER_CPU)
    else:
        per_trial = s.num_workers * s.cpus_per_worker + DRIVER_CPU
        needed = math.ceil(per_trial * cfg.sweep.max_concurrent_trials)
    num_cpus = max(os.cpu_count() or 1, needed)
    # A local cluster: no watcher of cloud preemptions (its actor's restart settings log a false
    # error), and Ray's notice that it turned token authentication on is not printed as a warning
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    watcher = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
    env[watcher] = os.environ.get(watcher, "0")
    os.environ.update(env)  # the Train controller runs in the trial actor, started from here
    # address="local": a cluster of its own, even where `ray start` left one running
    ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env, log_to_driver=True)
    cfg = resolve_workers(cfg, DRIVER_CPU)
    check_resources(cfg, 0)  # a local cluster is what this machine has: nothing to wait for
    return cfg


def pin_ray_address() -> None:
    """Every Ray worker process of the sweep (trial drivers, Train controllers, their
    placement-group cleaners, workers) names its own cluster in $RAY_ADDRESS. Ray's state API,
    which Train's placement-group cleaner calls, otherwise looks the cluster up by scanning the
    machine and fails when it finds two (another sweep, a test's in-process Ray): the cleaner
    dies, a stopped trial's worker group leaks its CPUs, and the next trial never starts."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def output_locations(cfg: ExperimentConfig) -> dict[str, str]:
    """Where a sweep of ``cfg`` started now would write: its run folder, its MLflow tracking URI
    and its experiment's artifact location (asked of the store when the experiment exists;
    nothing is created)."""
    uri = resolve_uri(cfg.tracking.uri)
    experiment = cfg.tracking.experiment or cfg.name
    run_folder = f"{_storage_path(cfg.sweep.storage_path)}/{cfg.name}-<date>-<time>"
    artifacts = "chosen by the tracking server (its --default-artifact-root)"
    local_db = uri.startswith("sqlite:///") and Path(uri[len("sqlite:///") :]).exists()
    if local_db or uri.startswith(("http://", "https://", "file:")):
        try:
            found = MlflowTracker(uri).client.get_experiment_by_name(experiment)
        except Exception:  # noqa: BLE001 - a description only: the sweep's own checks say why
            found = None
        if found is not None:
            artifacts = str(found.artifact_location)
    if artifacts.startswith("chosen") and uri.startswith(("sqlite:", "file:")):
        location = artifact_location(uri, experiment, mlflow_artifact_root(cfg))
        default = f"{Path('mlruns').resolve()}" if uri.startswith("sqlite:") else uri
        artifacts = location or f"{default}/<experiment id>"  # MLflow's default root
    return {"run folder": run_folder, "tracking URI": uri, "experiment": experiment,
            "artifacts": artifacts}  # fmt: skip


def mlflow_artifact_root(cfg: ExperimentConfig) -> str | None:
    """With ``sweep.storage_path`` on S3 (or another remote file system), a local MLflow
    store keeps its artifacts there too, under ``mlflow/``: nothing a sweep writes stays on
    one machine."""
    path = cfg.sweep.storage_path
    return f"{path.rstrip('/')}/mlflow" if path and "://" in path else None


def _storage_path(path: str | None) -> str:
    """``sweep.storage_path`` as Ray Train needs it: a URI, or an absolute folder (a relative
    one, and the default ``raymix_runs``, under :func:`~raymix.tracking.output_root`)."""
    if path and "://" in path:
        return path
    return str((output_root() / (path or "raymix_runs")).resolve())
