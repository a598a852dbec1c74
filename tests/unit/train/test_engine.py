"""The real optimizer step on real DeepSpeed engines (CPU, gloo, 1 and 2 spawned ranks).

* Loss per token: the gradient (seen through one SGD step with lr 1) of 4 micro-batches of 2
  equals that of one batch of 8 and of a plain mean over every target token, and 2 ranks (ZeRO-0
  and ZeRO-2) equal 1, on examples of uneven lengths and answer lengths.
* ZeRO-3 checkpoints: save, then load into a fresh engine: the same parameters, Adam moments and
  lr; training on from there ends where an uninterrupted run ends, on the configured lr schedule.
"""

from __future__ import annotations

from typing import Any

import pytest

from raymix.train.engine import staged_lr_factor
from tests.unit.train import dist

pytestmark = pytest.mark.slow

N = 8  # examples of the one-step comparison
SAVE_AT, MORE = 3, 2  # ZeRO-3: steps before the checkpoint, steps after it


def _engine(cfg: Any, tok: Any, steps: int, optimizer: str = "adamw") -> Any:
    import torch

    from raymix.train.engine import build_engine
    from raymix.train.model import build_model

    model = build_model(cfg.model, tok, 0, "float32")
    sgd = torch.optim.SGD(model.parameters(), lr=1.0) if optimizer == "sgd" else None
    return build_engine(cfg, model, [steps], "float32", sgd)


def _global(value: float) -> float:
    import torch
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64)
    tdist.all_reduce(t)
    return float(t)


def _sgd_step(rank: int, world: int, micro: int, accum: int, zero: int) -> dict[str, Any]:
    """One step of the loop's ``optimizer_step`` on rank ``rank``'s slice of the N examples,
    with SGD lr 1 (params - grad)."""
    from raymix.data.batches import collate
    from raymix.train.loop import optimizer_step

    cfg = dist.experiment(
        micro_batch_size=micro, grad_accum=accum, grad_clip=0.0, warmup_steps=0,
        scheduler="constant", zero_stage=zero, num_workers=world,
    )  # fmt: skip
    tok = dist.tokenizer()
    engine = _engine(cfg, tok, 1, "sgd")
    share = dist.examples(N, len(tok))[rank * N // world : (rank + 1) * N // world]
    batches = [collate(share[i : i + micro], tok.pad_token_id) for i in range(0, len(share), micro)]
    assert len(batches) == accum
    before = dist.full_params(engine)
    result = optimizer_step(engine, batches, world)
    return {"before": before, "after": dist.full_params(engine), "loss": _global(result.loss)}


def _reference() -> dict[str, Any]:
    """Plain PyTorch: params - d(mean over every target token of the N examples)/dθ."""
    from raymix.data.batches import collate
    from raymix.train.model import build_model

    cfg = dist.experiment()
    tok = dist.tokenizer()
    model = build_model(cfg.model, tok, 0, "float32")
    loss = model(**collate(dist.examples(N, len(tok)), tok.pad_token_id)).loss  # token mean
    loss.backward()
    return {"after": [(p - p.grad).detach() for p in model.parameters()], "loss": float(loss)}


def _one_rank_job(rank: int, world: int) -> dict[str, Any]:
    return {
        "ref": _reference(),
        "accum": _sgd_step(rank, world, 2, 4, 0),
        "batch": _sgd_step(rank, world, 8, 1, 0),
    }


def _zero3_job(rank: int, world: int, folder: str) -> dict[str, Any]:
    """Uninterrupted SAVE_AT + MORE steps; SAVE_AT steps, save, a fresh engine loads, MORE steps."""
    from deepspeed.utils import safe_get_full_optimizer_state

    from raymix.data.batches import collate
    from raymix.train.loop import optimizer_step

    cfg = dist.experiment(
        micro_batch_size=2, grad_accum=2, lr=1e-2, warmup_steps=2, weight_decay=0.1,
        zero_stage=3, num_workers=world,
    )  # fmt: skip
    tok = dist.tokenizer()
    steps = SAVE_AT + MORE
    data = dist.examples(steps * 4 * world, len(tok), seed=1)

    def step(engine: Any, s: int) -> float:
        mine = data[(s * world + rank) * 4 : (s * world + rank + 1) * 4]
        batches = [collate(mine[i : i + 2], tok.pad_token_id) for i in (0, 2)]
        lr = float(engine.get_lr()[0])
        optimizer_step(engine, batches, world)
        return lr

    def moments(engine: Any) -> list[Any]:
        return [
            safe_get_full_optimizer_state(p, key).clone()
            for p in engine.module.parameters()
            for key in ("exp_avg", "exp_avg_sq")
        ]

    straight = _engine(cfg, tok, steps)
    lrs = [step(straight, s) for s in range(steps)]
    first = _engine(cfg, tok, steps)
    for s in range(SAVE_AT):
        step(first, s)
    first.save_checkpoint(folder, tag="t")
    saved = {"params": dist.full_params(first), "moments": moments(first), "lr": first.get_lr()}
    second = _engine(cfg, tok, steps)
    fresh = dist.full_params(second)
    second.load_checkpoint(folder, tag="t")
    loaded = {"params": dist.full_params(second), "moments": moments(second), "lr": second.get_lr()}
    resumed_lrs = [step(second, s) for s in range(SAVE_AT, steps)]
    return {
        "lrs": lrs,
        "resumed_lrs": resumed_lrs,
        "straight": dist.full_params(straight),
        "resumed": dist.full_params(second),
        "fresh": fresh,
        "saved": saved,
        "loaded": loaded,
    }


def _two_rank_job(rank: int, world: int, folder: str) -> dict[str, Any]:
    return {
        "zero0": _sgd_step(rank, world, 2, 2, 0),
        "zero2": _sgd_step(rank, world, 2, 2, 2),
        "zero3": _zero3_job(rank, world, folder),
    }


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def one_rank() -> dict[str, Any]:
    return dist.run_ranks(_one_rank_job, 1)[0]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return dist.run_ranks(_two_rank_job, 2, str(tmp_path_factory.mktemp("zero3")))


def test_accumulation_equals_one_batch_equals_the_mean_over_tokens(one_rank) -> None:  # type: ignore[no-untyped-def]
    ref, accum, batch = one_rank["ref"], one_rank["accum"], one_rank["batch"]
    assert _max_diff(accum["before"], batch["before"]) == 0
    assert _max_diff(accum["after"], accum["before"]) > 1e-3, "the step moved the parameters"
    diff = _max_diff(accum["after"], batch["after"])
    print(f"max |Δgrad| accumulation 4x2 vs batch 8: {diff:.3g}")
    assert diff < 1e-6
    assert _max_diff(batch["after"], ref["after"]) < 1e-6
    assert accum["loss"] == pytest.approx(ref["loss"], abs=1e-6)
    assert batch["loss"] == pytest.approx(ref["loss"], abs=1e-6)


@pytest.mark.parametrize("zero", [0, 2])
def test_two_ranks_equal_one(one_rank, two_ranks, zero: int) -> None:  # type: ignore[no-untyped-def]
    r0, r1 = two_ranks[0][f"zero{zero}"], two_ranks[1][f"zero{zero}"]
    diff = _max_diff(r0["after"], one_rank["ref"]["after"])
    print(f"max |Δgrad| 2 ranks (ZeRO-{zero}) vs 1 rank: {diff:.3g}")
    assert diff < 1e-6
    assert _max_diff(r1["after"], r0["after"]) == 0
    assert r0["loss"] == pytest.approx(one_rank["ref"]["loss"], abs=1e-6)


def test_zero3_checkpoint_round_trip(two_ranks) -> None:  # type: ignore[no-untyped-def]
    for rank in two_ranks:
        z = rank["zero3"]
        saved, loaded = z["saved"], z["loaded"]
        assert _max_diff(z["fresh"], saved["params"]) > 1e-4, "training moved the parameters"
        assert _max_diff(loaded["params"], saved["params"]) == 0
        assert _max_diff(loaded["moments"], saved["moments"]) == 0
        assert max(float(m.abs().max()) for m in saved["moments"]) > 0
        assert loaded["lr"] == saved["lr"]


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(two_ranks) -> None:  # type: ignore[no-untyped-def]
    z = two_ranks[0]["zero3"]
    assert z["resumed_lrs"] == z["lrs"][SAVE_AT:]
    diff = _max_diff(z["resumed"], z["straight"])
    print(f"max |Δparam| resumed vs uninterrupted (ZeRO-3, 2 ranks): {diff:.3g}")
    assert diff <= 1e-6
    # the engine's lr is the configured schedule: warmup 2, then linear decay over 5 steps
    n = SAVE_AT + MORE
    assert z["lrs"] == pytest.approx(
        [1e-2 * staged_lr_factor(s, [(n, 2)], "linear") for s in range(n)]
    )
