"""Schema → ``TorchTrainer``: scaling, run folder, checkpoint policy, failure policy and the
workers' environment (the CPU accelerator for DeepSpeed when there is no GPU)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from raymix.config.schema import ExperimentConfig
from raymix.train.worker import train_fn_per_worker


def worker_env(cfg: ExperimentConfig, tracking_uri: str) -> dict[str, str]:
    """Environment variables every worker needs."""
    threads = str(max(1, int(cfg.scaling.cpus_per_worker)))
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    if tracking_uri.startswith("file:"):
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    for key in ("RAY_TRAIN_COLLECTIVE_TIMEOUT_S",):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def checkpoint_config(cfg: ExperimentConfig) -> Any:
    """Keep ``train.keep_checkpoints`` per trial: the latest ones, or the best by a held-out
    loss (Ray Train always keeps the latest too, which a resume needs)."""
    import ray.train

    t = cfg.train
    if t.keep_checkpoints_by == "latest":
        return ray.train.CheckpointConfig(num_to_keep=t.keep_checkpoints)
    return ray.train.CheckpointConfig(
        num_to_keep=t.keep_checkpoints,
        checkpoint_score_attribute=t.keep_checkpoints_by,
        checkpoint_score_order="min",
    )


def build_trainer(
    cfg: ExperimentConfig,
    loop_config: dict[str, Any],
    *,
    name: str,
    storage_path: str,
    tracking_uri: str,
    callbacks: Sequence[Any] = (),
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker,
) -> Any:
    """One trial's ``TorchTrainer``. ``name`` must be stable per trial so a restarted trial finds
    its Train run folder and resumes from the latest checkpoint. ``train_fn`` is what every
    worker runs (raymix's training by default; the overhead benchmark passes stand-ins)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    s = cfg.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    return TorchTrainer(
        train_fn,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.workers,
            use_gpu=s.use_gpu,
            resources_per_worker=resources,
            placement_strategy=s.placement_strategy,
        ),
        run_config=ray.train.RunConfig(  # type: ignore[call-arg]  # Train V2 (stubs say V1)
            name=name,
            storage_path=storage_path,
            callbacks=list(callbacks),
            checkpoint_config=checkpoint_config(cfg),
            failure_config=ray.train.FailureConfig(max_failures=cfg.sweep.max_failures),
            worker_runtime_env={"env_vars": worker_env(cfg, tracking_uri)},
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
