"""Evaluation inside a trial: each source's held-out loss (every rank its shard) and, at the end,
the configured generation and log-likelihood tasks, with the same functions as
``raymix eval TASK --run``."""

from __future__ import annotations

import warnings
from typing import Any, cast

from raymix.config.schema import ExperimentConfig
from raymix.data.batches import Example
from raymix.data.plan import Plan
from raymix.data.sources import heldout_records
from raymix.eval.generate import answer_sharded
from raymix.eval.loss import heldout_loss
from raymix.eval.protocol import ModelTask, answer_all
from raymix.eval.registry import build_tasks

WEIGHTED = "eval/loss/weighted"


def weighted_loss(losses: dict[str, float], weights: dict[str, float]) -> float:
    """The held-out losses ``eval/loss/<source>`` combined with ``weights`` (normalised over the
    weighted sources that have a held-out set)."""
    have = {n: w for n, w in weights.items() if f"eval/loss/{n}" in losses and w > 0}
    total = sum(have.values())
    if not total:
        return float("nan")
    return sum(w * losses[f"eval/loss/{n}"] for n, w in have.items()) / total


class Evaluator:
    """The evaluations of one worker of a trial."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        engine: Any,
        tokenizer: Any,
        eval_sets: dict[str, list[Example]],
        plan: Plan,
        rank: int,
        world: int,
    ) -> None:
        self.cfg, self.engine, self.tokenizer = cfg, engine, tokenizer
        self.eval_sets, self.plan, self.rank, self.world = eval_sets, plan, rank, world

    def loss(self) -> dict[str, float]:
        """Token-level held-out loss per source, ``eval/loss/<source>``, their mean, and with
        ``eval.loss_weights`` their weighted mean ``eval/loss/weighted`` (the same on every
        rank)."""
        out = heldout_loss(
            self.engine,
            self.eval_sets,
            pad_id=self.tokenizer.pad_token_id,
            batch_size=self.cfg.train.eval_batch_size,
            device=self.engine.device,
            rank=self.rank,
            world=self.world,
        )
        weights = self.cfg.eval.loss_weights
        if weights:
            out[WEIGHTED] = weighted_loss(out, weights)
        return out

    def generation(self, logger: Any = None) -> dict[str, float]:
        """Run the configured tasks: every rank generates its shard of each task's prompts
        (in lockstep under ZeRO-3), rank 0 scores them (code in the sandbox) and logs the
        per-sample rows as ``eval/<task>.jsonl`` with ``logger``; returns ``eval/...`` metrics
        on rank 0."""
        if not self.cfg.eval.tasks:
            return {}
        import torch.distributed as dist

        cfg, module, tok = self.cfg, self.engine.module, self.tokenizer
        synced = cfg.deepspeed.zero_stage == 3

        def answer(requests: list[Any]) -> list[str]:
            return answer_sharded(module, tok, requests, cfg, self.rank, self.world, synced)

        out: dict[str, float] = {}
        for task in build_tasks(cfg, heldout_records(cfg.sources, self.plan.heldout, cfg.seed)):
            if task.kind == "loglikelihood":  # the harness: the whole model on one process
                if synced:
                    warnings.warn(
                        f"eval task {task.name!r} needs the whole model on one process; under "
                        "ZeRO-3 run it afterwards: raymix eval harness --run RUN_ID",
                        stacklevel=1,
                    )
                    continue
                if self.rank == 0:
                    metrics, rows = cast(ModelTask, task).run_on_model(module, tok)
                if self.world > 1:
                    dist.barrier()
                if self.rank != 0:
                    continue
            else:
                outputs, requests = answer_all(task, answer)
                if self.rank != 0:
                    continue
                metrics, rows = task.score(outputs, requests)
            out.update({f"eval/{k}": v for k, v in metrics.items()})
            if logger:
                logger.log_rows(rows, f"eval/{task.name}.jsonl")
        return out
