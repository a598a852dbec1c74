"""The DeepSpeed engine of one worker: its JSON config from the schema, optimizer and schedule.

On a machine with no GPU the CPU accelerator is used (``DS_ACCELERATOR=cpu``, set for the
workers by ``launch``); Ray has already initialised torch.distributed (gloo or nccl) and DeepSpeed
reuses that process group.
"""

from __future__ import annotations

import math
from typing import Any

from raymix.config.schema import ExperimentConfig


def deepspeed_config(cfg: ExperimentConfig, dtype: str) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``cfg`` (batch sizes, ZeRO stage, offload, precision)."""
    ds = cfg.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cfg.scaling.use_gpu}
    t = cfg.train
    conf: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.micro_batch_size * t.grad_accum * cfg.scaling.workers,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer:  # DeepSpeed's own CPU Adam is what offload needs
        conf["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": t.lr, "betas": list(t.betas), "weight_decay": t.weight_decay},
        }
    return conf


def warmup_steps(cfg: ExperimentConfig, total_steps: int) -> int:
    """Warmup in steps: ``train.warmup_steps`` as given, else ``train.warmup_ratio`` of
    ``total_steps`` (rounded up)."""
    t = cfg.train
    return t.warmup_steps if t.warmup_steps is not None else math.ceil(t.warmup_ratio * total_steps)


def lr_factor(step: int, warmup: int, total: int, scheduler: str) -> float:
    """Multiplier of the peak lr at ``step``: linear warmup, then linear/cosine decay or constant."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if scheduler == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def staged_lr_factor(step: int, stages: list[tuple[int, int]], scheduler: str) -> float:
    """lr multiplier at global ``step`` when each stage has its own (steps, warmup) schedule."""
    start = 0
    for steps, warm in stages:
        if step < start + steps:
            return lr_factor(step - start, warm, steps, scheduler)
        start += steps
    return lr_factor(stages[-1][0], stages[-1][1], stages[-1][0], scheduler) if stages else 1.0


def build_engine(
    cfg: ExperimentConfig,
    model: Any,
    stage_steps: list[int],
    dtype: str,
    optimizer: Any = None,
) -> Any:
    """``deepspeed.initialize`` with AdamW (or ``optimizer``, a torch optimizer over ``model``'s
    parameters) and one warmup + decay schedule per stage."""
    import deepspeed
    import torch

    conf = deepspeed_config(cfg, dtype)
    t = cfg.train
    if optimizer is not None:
        conf.pop("optimizer", None)
    elif "optimizer" not in conf:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay
        )
    stages = [(n, warmup_steps(cfg, n)) for n in stage_steps]

    def schedule(opt: Any) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: staged_lr_factor(s, stages, t.scheduler)
        )

    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        optimizer=optimizer,
        lr_scheduler=schedule,
        config=conf,
    )
    return engine


def reset_optimizer_state(engine: Any) -> None:
    """Forget Adam's moments (a new stage starts a fresh optimizer). ZeRO wraps the
    torch optimizer; its ``state`` is what holds the moments, recreated lazily on the next step."""
    opt = engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    inner.state.clear()
