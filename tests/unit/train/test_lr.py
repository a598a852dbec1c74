"""The lr schedule of a trial: warmup then linear, cosine or constant, restarting per stage."""

from __future__ import annotations

import pytest

from raymix.config import validate
from raymix.train.engine import staged_lr_factor, warmup_steps
from tests.unit.train import dist


def test_lr_schedules_follow_transformers_after_warmup() -> None:
    """Each scheduler's multiplier: transformers' ``get_scheduler`` curve, except that warmup
    step ``s`` already uses ``(s + 1) / warmup`` (no step at lr 0); stages restart it."""
    import torch
    from transformers import get_scheduler

    total, warm = 20, 4
    for name in ("linear", "cosine", "constant"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        hf_name = "constant_with_warmup" if name == "constant" else name
        sched = get_scheduler(hf_name, opt, num_warmup_steps=warm, num_training_steps=total)
        hf = [sched.lr_lambdas[0](s) for s in range(total + 1)]  # type: ignore[attr-defined]
        ours = [staged_lr_factor(s, [(total, warm)], name) for s in range(total)]
        assert ours[:warm] == pytest.approx(hf[1 : warm + 1])
        assert ours[warm:] == pytest.approx(hf[warm:total])
        two = [staged_lr_factor(s, [(total, warm), (total, warm)], name) for s in range(2 * total)]
        assert two == pytest.approx(ours + ours)
    assert staged_lr_factor(5, [(10, 0)], "cosine") == pytest.approx(0.5)
    assert staged_lr_factor(5, [(10, 0)], "linear") == pytest.approx(0.5)


def test_warmup_fraction_rounds_up() -> None:
    assert warmup_steps(dist.experiment(warmup_ratio=0.25), 10) == 3
    assert warmup_steps(dist.experiment(warmup_steps=3), 10) == 3
    assert warmup_steps(dist.experiment(), 10) == 1  # the default ratio, 0.03, rounded up
    assert warmup_steps(dist.experiment(warmup_steps=3, warmup_ratio=0.5), 10) == 3  # overrides
    cfg = dist.experiment(warmup_steps=3)  # a trial re-validates the dumped config: both present
    assert warmup_steps(validate(cfg.model_dump(mode="json"), "trial"), 10) == 3
