"""The plan's stages cut into this rank's micro-batches, epoch by epoch, and ``train.max_steps``.

Every example of a stage is trained exactly once per epoch over all ranks: each epoch's global
shuffle is dealt round-robin to the ranks (no wrap-around copies), each rank makes its rows (one
example each, or packed), and the ranks with fewer rows are topped up with *empty* rows (no
example, no target token) so that every rank runs the same number of micro-batches and optimizer
steps, which collectives (and ZeRO-3's parameter gathers) need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raymix.config.schema import ExperimentConfig
from raymix.data.batches import Example, epoch_order
from raymix.data.cache import TokenCache
from raymix.data.plan import Plan

Row = list[int]
"""Indices of the examples sharing one row (one unless packing); empty for a padding row."""


@dataclass(frozen=True)
class Stage:
    """One stage of the plan on this rank: its rows (read lazily from the memory-mapped token
    caches, so a stage never holds its tokens as Python lists) and, per epoch, its micro-batches."""

    index: int
    name: str
    refs: list[tuple[TokenCache, int]]  # (source cache, row id) per example of the stage
    epochs: list[list[list[Row]]]  # epoch -> micro-batches -> rows
    grad_accum: int

    def example(self, i: int) -> Example:
        cache, row = self.refs[i]
        return cache.example(row)

    def length(self, i: int) -> int:
        cache, row = self.refs[i]
        return int(cache.offsets[row + 1] - cache.offsets[row])

    @property
    def steps(self) -> int:
        """Optimizer steps (each epoch holds a whole number of accumulation groups)."""
        return sum(len(e) for e in self.epochs) // self.grad_accum


def build_stage(
    cfg: ExperimentConfig,
    plan: Plan,
    index: int,
    caches: Mapping[str, TokenCache],
    rank: int,
    world: int,
) -> Stage:
    """Stage ``index`` of ``plan`` as rank ``rank`` of ``world`` trains it (``caches``: each
    source's token cache)."""
    spec = plan.stages[index]
    refs = [(caches[n], rid) for n, part in sorted(spec.sources.items()) for rid in part.row_ids]
    lengths = [int(c.offsets[r + 1] - c.offsets[r]) for c, r in refs]
    t = cfg.train
    epochs = [
        epoch_micro_batches(
            [int(i) for i in epoch_order(len(refs), cfg.seed + 7919 * index, epoch)],
            lengths,
            rank,
            world,
            micro_batch_size=t.micro_batch_size,
            grad_accum=t.grad_accum,
            packing=t.packing,
            max_length=t.max_length,
        )
        for epoch in range(spec.epochs)
    ]
    return Stage(index, spec.name, refs, epochs, t.grad_accum)


def epoch_micro_batches(
    order: Sequence[int],
    lengths: Sequence[int],
    rank: int,
    world: int,
    *,
    micro_batch_size: int,
    grad_accum: int,
    packing: bool,
    max_length: int,
) -> list[list[Row]]:
    """Rank ``rank``'s micro-batches of one epoch.

    Args:
        order: The epoch's global order of example indices (the same on every rank).
        lengths: Tokens per example, by index.
        rank: This rank.
        world: Number of ranks.
        micro_batch_size: Rows per micro-batch.
        grad_accum: Micro-batches per optimizer step.
        packing: Pack each rank's examples into rows of ``max_length`` tokens (best-fit
            decreasing) instead of one example per row.
        max_length: Row capacity when packing.

    Returns:
        ``steps * grad_accum`` micro-batches of ``micro_batch_size`` rows, ``steps`` being the
        same on every rank (at least 1); rows beyond the rank's share are empty.
    """
    per_rank = [_rows(list(order[r::world]), lengths, packing, max_length) for r in range(world)]
    group = micro_batch_size * grad_accum
    steps = max(1, max(math.ceil(len(rows) / group) for rows in per_rank))
    mine = per_rank[rank]
    mine = mine + [[] for _ in range(steps * group - len(mine))]
    return [mine[i : i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]


def _rows(indices: list[int], lengths: Sequence[int], packing: bool, max_length: int) -> list[Row]:
    """One row per example, or best-fit-decreasing packed rows."""
    if not packing:
        return [[i] for i in indices]
    from raymix.data.packing import pack

    bins = pack([lengths[i] for i in indices], max_length)
    return [[indices[j] for j in b] for b in bins]


def cap_steps(stages: list[Stage], max_steps: int | None) -> list[Stage]:
    """Drop micro-batches beyond ``max_steps`` optimizer steps (counted over all stages)."""
    if not max_steps:
        return stages
    out, left = [], max_steps
    for s in stages:
        epochs = []
        for ep in s.epochs:
            keep = min(len(ep), left * s.grad_accum)
            epochs.append(ep[:keep])
            left -= keep // s.grad_accum
        out.append(Stage(s.index, s.name, s.refs, [e for e in epochs if e], s.grad_accum))
    return [s for s in out if s.epochs]
