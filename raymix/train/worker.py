"""``train_fn_per_worker``: what every Ray Train worker runs for one trial.

Each worker opens the plan's token caches (memory-mapped; built once per machine), builds its
DeepSpeed engine, then trains stage by stage on its shard with loss on responses only
(``schedule`` cuts the stages into this rank's micro-batches, ``loop`` trains on them): per-step
metrics go from rank 0 straight to MLflow (asynchronous), ``ray.train.report`` is called only
every ``report_every`` steps (it is a throttled collective), held-out loss per source is
evaluated at the start, every ``eval_every`` steps and at the end, and a checkpoint (every rank
saves its shard) is reported at every stage end. No Tune import: a worker runs the same under
Tune or a bare TorchTrainer.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

from raymix.config.schema import ExperimentConfig
from raymix.data.cache import TokenCache, cache_dir, open_cache
from raymix.data.pipeline import prepare_sources
from raymix.data.plan import Plan
from raymix.data.tokenizer import load_tokenizer
from raymix.errors import DataError
from raymix.train.engine import build_engine
from raymix.train.loop import HF_DIR, STATE_FILE, Loop
from raymix.train.model import build_model, resolve_dtype
from raymix.train.schedule import build_stage, cap_steps

__all__ = ["HF_DIR", "STATE_FILE", "train_fn_per_worker"]


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Train one trial's model on this worker's shard (see the module docstring)."""
    import ray.train

    entered = time.time()

    # DeepSpeed 0.19 calls torch's deprecated all_gather_into_tensor on every ZeRO step.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    _quiet_report_logs()
    cfg = ExperimentConfig.model_validate_json(config["experiment"])
    plan = Plan.from_json(config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.scaling.use_gpu:
        import torch

        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))

    tokenizer = load_tokenizer(config["tokenizer"], cfg.model.revision)
    caches = open_caches(cfg, plan, tokenizer)
    stages = [build_stage(cfg, plan, i, caches, rank, world) for i in range(len(plan.stages))]
    stages = cap_steps(stages, cfg.train.max_steps)
    eval_sets = {n: [caches[n].example(i) for i in ids] for n, ids in plan.heldout.items() if ids}

    dtype = resolve_dtype(cfg.model, cfg.scaling.use_gpu)
    model = build_model(cfg.model, tokenizer, cfg.seed, dtype)
    if cfg.train.packing:
        from raymix.data.packing import enable_packed_attention

        enable_packed_attention(model)  # no KV cache, so position ids keep examples apart
    timings = {"worker_setup": time.time() - entered}
    if "fit_called_at" in config:  # the driver's clock: one machine locally, close on a cluster
        timings["worker_start"] = max(0.0, entered - config["fit_called_at"])
    started = time.perf_counter()
    engine = build_engine(cfg, model, [s.steps for s in stages], dtype)
    timings["engine_init"] = time.perf_counter() - started
    Loop(cfg, engine, tokenizer, eval_sets, plan, rank, world, config, timings).run(stages)


def _quiet_report_logs() -> None:
    """Ray 2.60 logs every ``ray.train.report`` at INFO from a logger named after its file path,
    which ``LoggingConfig(log_level=...)`` does not reach; raise that one logger to WARNING."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: leave its logging alone
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def open_caches(cfg: ExperimentConfig, plan: Plan, tokenizer: Any) -> dict[str, TokenCache]:
    """The plan's token caches, opened by the keys the driver compiled it from: memory maps,
    no source read or hashed. A machine that lacks one (another node of a cluster with a
    node-local cache) tokenizes its sources once, and they must come out the same."""
    root = cache_dir()
    caches = {n: open_cache(root, key) for n, key in plan.token_caches.items()}
    if all(c is not None for c in caches.values()):
        return {n: c for n, c in caches.items() if c is not None}
    sources = prepare_sources(cfg, tokenizer, root)
    for name, key in plan.token_caches.items():
        if sources[name].cache.key != key:
            raise DataError(
                f"source {name!r} on this worker differs from the one the plan was built from "
                "(its file or tokenizer changed during the sweep)"
            )
    return {n: sources[n].cache for n in plan.token_caches}
