"""Stages → per-rank micro-batches: every example trained exactly as often as the plan says,
every rank running the same number of steps, and ``train.max_steps`` capping the stages."""

from __future__ import annotations

from collections import Counter

import pytest

from raymix.data.batches import epoch_order
from raymix.train.schedule import Stage, cap_steps, epoch_micro_batches


def _lengths(n: int) -> list[int]:
    return [3 + (7 * i) % 29 for i in range(n)]  # uneven, all <= 32


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize(("n", "micro", "accum"), [(37, 2, 3), (8, 4, 1), (1, 2, 2), (101, 3, 2)])
def test_each_example_once_per_epoch_and_ranks_in_step(
    n: int, micro: int, accum: int, world: int, packing: bool
) -> None:
    lengths = _lengths(n)
    for epoch in range(2):
        order = [int(i) for i in epoch_order(n, 11, epoch)]
        per_rank = [
            epoch_micro_batches(
                order,
                lengths,
                r,
                world,
                micro_batch_size=micro,
                grad_accum=accum,
                packing=packing,
                max_length=32,
            )  # fmt: skip
            for r in range(world)
        ]
        assert len({len(mbs) for mbs in per_rank}) == 1, "every rank runs as many micro-batches"
        assert len(per_rank[0]) % accum == 0, "whole optimizer steps"
        assert all(len(mb) == micro for mbs in per_rank for mb in mbs)
        trained = Counter(i for mbs in per_rank for mb in mbs for row in mb for i in row)
        assert trained == Counter(range(n)), "the plan's examples, each exactly once"
        if packing:
            rows = [row for mbs in per_rank for mb in mbs for row in mb if row]
            assert all(sum(lengths[i] for i in row) <= 32 for row in rows)
        steps = len(per_rank[0]) // accum
        rows_max = max(sum(1 for mb in mbs for row in mb if row) for mbs in per_rank)
        assert steps == max(1, -(-rows_max // (micro * accum))), "no step of padding only"


def _stage(index: int, micro_batches_per_epoch: list[int], accum: int) -> Stage:
    epochs = [[[[0]] for _ in range(m)] for m in micro_batches_per_epoch]
    return Stage(index, f"s{index}", [], epochs, accum)


def test_max_steps_caps_over_stages_and_epochs() -> None:
    stages = [_stage(0, [6, 6], 2), _stage(1, [8], 2)]  # 6 + 4 steps
    assert [s.steps for s in stages] == [6, 4]
    assert cap_steps(stages, None) == stages
    capped = cap_steps(stages, 4)
    assert [s.steps for s in capped] == [4] and [len(e) for e in capped[0].epochs] == [6, 2]
    capped = cap_steps(stages, 8)
    assert [s.steps for s in capped] == [6, 2] and [s.index for s in capped] == [0, 1]
    assert [s.steps for s in cap_steps(stages, 100)] == [6, 4]
