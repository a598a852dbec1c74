"""The training loop of one worker over all stages, and its optimizer step.

The loss of an optimizer step is the mean over every target token of the step, across its
micro-batches (gradient accumulation) and the data-parallel ranks, as Hugging Face transformers
computes it since 4.46 (``num_items_in_batch``): examples with long answers weigh what their
tokens weigh, whatever the micro-batch or rank they land in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymix.config.schema import ExperimentConfig
from raymix.data.batches import IGNORE, Example, collate
from raymix.data.plan import Plan
from raymix.eval.loss import target_tokens, token_loss_sum
from raymix.train.engine import reset_optimizer_state
from raymix.train.evaluation import Evaluator
from raymix.train.model import count_parameters
from raymix.train.schedule import Row, Stage

STATE_FILE = "raymix_state.json"
RESUMED = "train/resumed_at_step"
"""Logged at the step a restarted run resumed from (one point per resume)."""
RANK_STATE = "raymix_rank{rank}.pt"
"""Each rank's own part of a checkpoint: RNG states, train-metric window, tokens trained."""
HF_DIR = "hf"
TRAINED = "raymix/trained"
"""Set to 1 in a trial's last report: it trained every step (a scheduler did not cut it)."""


@dataclass
class StepResult:
    """What one optimizer step returns to the loop."""

    loss: float
    """This rank's share of the step's loss: its summed token losses ÷ the step's target tokens
    over all ranks (all-reduced, the shares sum to the step's per-token mean)."""
    targets: int
    """Target tokens of the step over all ranks."""
    grad_norm: float | None
    """Gradient norm before clipping when the engine does not report one (no ZeRO), else None."""


def optimizer_step(engine: Any, micro_batches: list[dict[str, Any]], world: int) -> StepResult:
    """Forward and backward every micro-batch of one optimizer step, stepping the engine after each.

    The step's target tokens are counted over its micro-batches on this rank and all-reduced over
    the ranks (one all-reduce, before the first forward); each micro-batch's loss is its summed
    token loss ÷ that count. DeepSpeed (like DDP) averages gradients over the ranks, and
    ``engine.backward`` divides by ``gradient_accumulation_steps`` unless ``scale_wrt_gas`` is
    False: so the loss is multiplied by ``world`` and not divided by the accumulation steps, and
    the gradient the optimizer sees is exactly that of the mean over all target tokens. A rank
    whose micro-batch has no target token still runs its forward and backward (zero gradient),
    so collectives line up.

    Args:
        engine: The DeepSpeed engine, configured with ``len(micro_batches)`` accumulation steps.
        micro_batches: Collated inputs (with ``labels``) already on the engine's device.
        world: Number of data-parallel ranks.
    """
    import torch
    import torch.distributed as dist

    count = torch.tensor(
        [sum(target_tokens(b["labels"]) for b in micro_batches)],
        dtype=torch.float64,
        device=engine.device,
    )
    if world > 1:
        dist.all_reduce(count)
    targets = int(count.item())
    scale = world / max(1, targets)
    local, grad_norm = 0.0, None
    for k, batch in enumerate(micro_batches):
        inputs = {n: v for n, v in batch.items() if n != "labels"}
        loss_sum = token_loss_sum(engine(**inputs).logits, batch["labels"])
        engine.backward(loss_sum * scale, scale_wrt_gas=False)
        if k == len(micro_batches) - 1 and engine.zero_optimization_stage() == 0:
            grad_norm = _grad_norm(engine.module)  # DeepSpeed reports none without ZeRO
        engine.step()
        local += float(loss_sum.detach())
    return StepResult(local / max(1, targets), targets, grad_norm)


@dataclass
class _Window:
    """Train metrics accumulated between two log points."""

    loss: float = 0.0  # this rank's shares of the steps' per-token means, summed
    steps: int = 0
    tokens: int = 0
    lr: float = 0.0
    grad_norm: float | None = None
    started: float = field(default_factory=time.perf_counter)


class Loop:
    """The training loop of one worker over all stages (see the module docstring)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        engine: Any,
        tokenizer: Any,
        eval_sets: dict[str, list[Example]],
        plan: Plan,
        rank: int,
        world: int,
        config: dict[str, Any],
        timings: dict[str, float] | None = None,
    ) -> None:
        self.cfg, self.engine, self.tokenizer = cfg, engine, tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.rank, self.world = rank, world
        self.logger = None
        if rank == 0 and config.get("run_id"):
            from raymix.tracking import MetricLogger

            # resume=True: a restarted attempt of this trial replays steps it already logged
            self.logger = MetricLogger(
                config["tracking_uri"],
                config["run_id"],
                resume=True,
                spool_dir=config.get("spool_dir"),
                report_wait_s=cfg.tracking.report_wait_s,
                end_wait_s=cfg.tracking.end_wait_s,
            )
        self.evals = Evaluator(cfg, engine, tokenizer, eval_sets, plan, rank, world)
        self.timings = {"train": 0.0, "eval": 0.0, "checkpoint": 0.0, **(timings or {})}
        self.tokens = 0  # tokens this rank trained on (all-reduced when reported)
        self.window: _Window | None = None  # a resumed stage's partly filled train-metric window

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.logger:
            self.logger.log(metrics, step)

    def eval_loss(self) -> dict[str, float]:
        """Held-out loss per source (timed as evaluation)."""
        started = time.perf_counter()
        try:
            return self.evals.loss()
        finally:
            self.timings["eval"] += time.perf_counter() - started

    def report(self, metrics: dict[str, float], checkpoint: Any = None) -> None:
        """``ray.train.report`` on every rank, with ``tokens`` (all ranks' trained tokens, a
        possible scheduler time attribute). What rank 0 logged is flushed first: a scheduler may
        stop the trial at this report, and nothing after it runs then."""
        import ray.train
        import torch
        import torch.distributed as dist

        total = torch.tensor([float(self.tokens)], dtype=torch.float64, device=self.engine.device)
        if self.world > 1:
            dist.all_reduce(total)
        if self.logger:
            self.logger.flush()
        ray.train.report({**metrics, "tokens": int(total.item())}, checkpoint=checkpoint)

    def run(self, stages: list[Stage]) -> None:
        cfg, engine, t = self.cfg, self.engine, self.cfg.train
        ga = t.grad_accum
        step, last = self.resume()
        total = sum(s.steps for s in stages)
        # Evaluate before training: the start of every eval/loss curve; every report to Tune
        # carries the latest eval metrics (schedulers and searchers rank trials by them), and a
        # report follows every evaluation so a scheduler sees each one at its own step. A resumed
        # run evaluates for its reports but logs only the resume: its series continue as if
        # never interrupted (the points of the steps it replays are already in MLflow).
        latest_eval = self.eval_loss()
        if step == 0:
            size = {"model/parameters": count_parameters(engine.module), "train/total_steps": total}
            self.log({**size, **latest_eval}, step)
        else:
            self.log({RESUMED: float(step)}, step)
        done = 0  # steps of the stages before the current one
        for stage in stages:
            stage_end = done + stage.steps
            if step >= stage_end:
                done = stage_end
                continue
            if stage.index > 0 and step == done and cfg.strategy.reset_optimizer:
                reset_optimizer_state(engine)
            win, self.window = self.window or _Window(), None
            engine.train()
            for epoch, micro_batches in enumerate(stage.epochs):
                first = done + sum(len(e) for e in stage.epochs[:epoch]) // ga
                skip = max(0, step - first) * ga  # resumed mid-epoch
                for start in range(skip, len(micro_batches), ga):
                    started = time.perf_counter()
                    group = [self.collate(stage, b) for b in micro_batches[start : start + ga]]
                    win.lr = float(engine.get_lr()[0])  # the lr this step uses
                    result = optimizer_step(engine, [inputs for inputs, _ in group], self.world)
                    win.loss += result.loss
                    win.steps += 1
                    n_tokens = sum(n for _, n in group)
                    win.tokens += n_tokens
                    self.tokens += n_tokens
                    win.grad_norm = result.grad_norm
                    step += 1
                    self.timings["train"] += time.perf_counter() - started
                    if step % t.log_every == 0 or step == stage_end:
                        last = self.train_metrics(win, epoch, stage.index)
                        self.log(last, step)
                        win = _Window()
                    if step == stage_end:
                        continue
                    if _every(step, t.eval_every):
                        latest_eval = self.eval_loss()
                        self.log(latest_eval, step)
                    metrics = {"step": step, "stage": stage.index, **last, **latest_eval}
                    if _every(step, t.checkpoint_every):  # a mid-stage checkpoint
                        self.window = win
                        self.save_and_report(step, metrics, export=False)
                        self.window = None
                    elif _every(step, t.eval_every) or step % t.report_every == 0:
                        self.report(metrics)
            done = stage_end
            latest_eval = self.eval_loss()
            final = stage is stages[-1]
            if final:  # per-ability scores of the final model
                started = time.perf_counter()
                latest_eval.update(self.evals.generation(self.logger))
                self.timings["eval"] += time.perf_counter() - started
            self.log(latest_eval, step)
            metrics = {**last, **latest_eval, "step": step, "stage": stage.index}
            if final:
                metrics[TRAINED] = 1.0
            self.save_and_report(step, metrics)
        self.log({f"time/{k}_s": v for k, v in self.timings.items()}, step)
        if self.logger:
            self.logger.close()

    def resume(self) -> tuple[int, dict[str, float]]:
        """Restore the latest Ray Train checkpoint if the run restarts: DeepSpeed's model,
        optimizer and lr schedule, then this rank's RNG, train-metric window and tokens. Returns
        the step reached (0 on a fresh start; the data position follows from it, the order being
        fixed by the plan) and the train metrics last logged."""
        import ray.train
        import torch

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return 0, {}
        with ckpt.as_directory() as d:
            self.engine.load_checkpoint(d)
            state = json.loads((Path(d) / STATE_FILE).read_text())
            mine = Path(d, RANK_STATE.format(rank=self.rank))
            if mine.exists():  # absent in checkpoints of an older raymix or another world size
                rank_state = torch.load(mine, weights_only=False)
                _set_rng_state(rank_state["rng"])
                self.tokens, self.window = rank_state["tokens"], rank_state["window"]
                if self.window is not None:
                    self.window.started = time.perf_counter()
        last = {k: float(v) for k, v in state.items() if k.startswith("train/")}
        return int(state["step"]), last

    def collate(self, stage: Stage, batch: list[Row]) -> tuple[dict[str, Any], int]:
        """The micro-batch's tensors on the engine's device, and its count of real tokens.

        Empty (padding) rows are left out; a micro-batch of only empty rows becomes one row of
        a single padding token with no target, which still runs forward and backward.
        """
        rows = [r for r in batch if r]
        if self.cfg.train.packing:
            from raymix.data.packing import collate_packed

            packed = [[stage.example(i) for i in r] for r in rows] or [[self._empty()]]
            out = collate_packed(packed, self.pad_id)
        else:
            out = collate([stage.example(r[0]) for r in rows] or [self._empty()], self.pad_id)
        n_tokens = sum(stage.length(i) for r in rows for i in r)
        return {k: v.to(self.engine.device) for k, v in out.items()}, n_tokens

    def _empty(self) -> Example:
        return Example([self.pad_id], [IGNORE], 0)

    def train_metrics(self, win: _Window, epoch: int, stage: int) -> dict[str, float]:
        """Mean per-token loss of the steps since the last log, grad norm, lr and global
        tokens/s (one all-reduce)."""
        import torch
        import torch.distributed as dist

        sums = torch.tensor(
            [win.loss, float(win.tokens)], dtype=torch.float64, device=self.engine.device
        )
        if self.world > 1:
            dist.all_reduce(sums)
        elapsed = max(1e-9, time.perf_counter() - win.started)
        grad_norm = (
            win.grad_norm if win.grad_norm is not None else self.engine.get_global_grad_norm()
        )
        return {
            "train/loss": float(sums[0]) / max(1, win.steps),
            "train/grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "train/lr": win.lr,
            "train/tokens_per_s": float(sums[1]) / elapsed,
            "train/epoch": float(epoch),
            "train/stage": float(stage),
        }

    def save_and_report(self, step: int, metrics: dict[str, float], export: bool = True) -> None:
        """Every rank saves its DeepSpeed shard (model, optimizer, lr schedule) and its own
        state (RNG, the train-metric window, tokens trained); rank 0 adds the step and, when
        ``export`` (a stage's end), a Hugging Face export; then all ranks report the checkpoint
        together (a collective)."""
        import torch
        from ray.train import Checkpoint

        engine, cfg, tokenizer = self.engine, self.cfg, self.tokenizer
        started = time.perf_counter()
        tmp = tempfile.mkdtemp(prefix="raymix-ckpt-")
        engine.save_checkpoint(tmp, tag=f"step-{step}")
        torch.save(
            {"rng": _rng_state(), "tokens": self.tokens, "window": self.window},
            os.path.join(tmp, RANK_STATE.format(rank=self.rank)),
        )
        state_dict = (
            engine._zero3_consolidated_16bit_state_dict()
            if export and cfg.deepspeed.zero_stage == 3
            else None
        )
        if self.rank == 0 and not export:
            Path(tmp, STATE_FILE).write_text(json.dumps({"step": step, **metrics}))
        elif self.rank == 0:
            hf = os.path.join(tmp, HF_DIR)
            module = engine.module
            module.save_pretrained(hf, state_dict=state_dict or module.state_dict())
            tokenizer.save_pretrained(hf)
            Path(tmp, STATE_FILE).write_text(json.dumps({"step": step, **metrics}))
            if self.logger and cfg.tracking.log_checkpoint:
                self.logger.log_artifacts(hf, "checkpoint")
        self.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        self.timings["checkpoint"] += time.perf_counter() - started


def _every(step: int, n: int | None) -> bool:
    return bool(n) and step % (n or 1) == 0


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _grad_norm(module: Any) -> float:
    """The global L2 norm of the (already all-reduced) gradients, before clipping."""
    import torch

    grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0
