"""The mixing-law searcher as an Optuna sampler: its draws give exactly the shares it proposes,
it waits for its start-up trials, it is deterministic from its seed, and on an objective that
follows a mixing law it gets closer to the optimum than random search with the same budget."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from raymix.analysis.mixing_law import Law, Target, optimum
from raymix.config import validate
from raymix.sweep.law_sampler import MixingLawSampler
from raymix.sweep.space import DRAW, DefineByRun
from tests.conftest import tiny_experiment

SOURCES = ("math", "code", "general")
LAW = Law(1.0, 2.0, (-2.0, -3.5, -1.0))  # one law: its optimum is a vertex of the bounds
PER_SOURCE = {  # each source's held-out loss falls with its own share: an interior optimum
    "eval/loss/math": Law(1.2, 2.0, (-3.0, 0.0, 0.0)),
    "eval/loss/code": Law(0.9, 1.5, (0.0, -4.0, 0.0)),
    "eval/loss/general": Law(1.5, 1.0, (0.0, 0.0, -2.5)),
}


def _mean_loss(r: np.ndarray) -> float:
    return float(np.mean([law(r)[0] for law in PER_SOURCE.values()]))


def _cfg(algorithm: str = "mixing_law", **search: object):  # type: ignore[no-untyped-def]
    sources = [{"name": s, "path": f"synthetic:{s}", "ability": s, "size": 300, "heldout": 16}
               for s in SOURCES]  # fmt: skip
    raw = tiny_experiment(
        sources=sources,
        mixture={
            "space": {
                "weights": {"dirichlet": 1.0, "min_share": {"general": 0.1}},
                "amount": {"unit": "examples", "fixed": 300},
            }
        },  # fmt: skip
        sweep={"num_samples": 20, "search": {"algorithm": algorithm, "seed": 3, **search}},
    )
    return validate(raw, origin="x.yaml")


def _run(
    cfg, sampler: optuna.samplers.BaseSampler, n: int, per_source: bool = False
) -> list[float]:  # type: ignore[no-untyped-def]
    """A study asked as Tune's OptunaSearch asks it (LossKeepingSearch's ``metrics`` user
    attribute with ``per_source``); the objective is the law (or the mean of the per-source
    laws) at the shares the space maps the draws to. Returns the best-so-far per trial."""
    helper = MixingLawSampler(cfg, 0)
    study = optuna.create_study(sampler=sampler)
    space = DefineByRun(cfg)
    best, out = np.inf, []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        r = np.array(helper.shares_of(trial.params))
        if per_source:
            trial.set_user_attr("metrics", {k: float(law(r)[0]) for k, law in PER_SOURCE.items()})
            value = _mean_loss(r)
        else:
            value = float(LAW(r)[0])
        study.tell(trial, value)
        best = min(best, value)
        out.append(best)
    return out


def test_draws_give_the_shares_proposed() -> None:
    s = MixingLawSampler(_cfg(), 0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        target = rng.dirichlet(np.ones(3)) * 0.9
        target[2] += 0.1  # general's min_share
        draws = s.draws_for(target)
        got = s.shares_of({DRAW + n: u for n, u in zip(s.simplex, draws, strict=True)})
        assert np.allclose(got, target, atol=1e-6), (got, target)


def test_it_waits_for_its_startup_trials_then_follows_the_law() -> None:
    assert MixingLawSampler(_cfg(), 3).startup == 10, "by default 2 x (sources + 2)"
    assert MixingLawSampler(_cfg(n_startup_trials=2), 3).startup == 5, "never below M + 2"
    cfg = _cfg(n_startup_trials=10, explore=0.0)
    sampler = MixingLawSampler(cfg, 3)
    assert sampler.startup == 10
    _run(cfg, sampler, 16)
    assert sorted(sampler.proposals) == list(range(10, 16))
    lo = np.array([0, 0, 0.1])
    truth = optimum([LAW], [Target("m")], lower=lo.tolist())
    for shares in sampler.proposals.values():
        r = np.array([shares[n] for n in SOURCES])
        assert r.sum() == pytest.approx(1.0) and np.all(r >= lo - 1e-9)
        assert np.abs(r - truth).max() < 0.15, "near the law's optimum"


def test_it_is_deterministic_from_its_seed() -> None:
    cfg = _cfg()
    a = _run(cfg, MixingLawSampler(cfg, 3), 14)
    b = _run(cfg, MixingLawSampler(cfg, 3), 14)
    c = _run(cfg, MixingLawSampler(cfg, 4), 14)
    assert a == b != c


def test_it_beats_random_search_at_the_same_budget_on_a_lawful_objective() -> None:
    cfg = _cfg()
    truth = optimum([LAW], [Target("m")], lower=[0, 0, 0.1])
    best = float(LAW(truth)[0])
    law_gap, random_gap = [], []
    for seed in range(5):
        law_gap.append(_run(cfg, MixingLawSampler(cfg, seed), 20)[-1] - best)
        random_gap.append(_run(cfg, optuna.samplers.RandomSampler(seed=seed), 20)[-1] - best)
    assert np.median(law_gap) < np.median(random_gap) / 3, (law_gap, random_gap)


def test_mixing_law_needs_dirichlet_weights() -> None:
    from raymix.errors import ConfigError

    raw = tiny_experiment(sweep={"search": {"algorithm": "mixing_law"}})
    with pytest.raises(ConfigError, match="mixing_law proposes shares, so it needs mixture.space"):
        validate(raw, origin="x.yaml")


def test_a_mean_loss_is_searched_through_one_law_per_source() -> None:
    """With each trial's per-source losses kept (LossKeepingSearch), the sampler fits a law per
    source and proposes mixtures near the interior optimum of their mean, which random search
    with the same budget does not reach."""
    from scipy.optimize import minimize

    cfg = _cfg(explore=0.0)
    cons = [{"type": "eq", "fun": lambda r: r.sum() - 1}]
    found = minimize(_mean_loss, np.full(3, 1 / 3), method="SLSQP", constraints=cons,
                     bounds=[(0, 1), (0, 1), (0.1, 1)])  # fmt: skip
    truth, best = found.x, float(found.fun)
    assert truth.min() > 0.15, "an interior optimum"
    sampler = MixingLawSampler(cfg, 0)
    law_best = _run(cfg, sampler, 16, per_source=True)[-1]
    for shares in sampler.proposals.values():
        r = np.array([shares[n] for n in SOURCES])
        assert np.abs(r - truth).max() < 0.1, (r, truth)
    random_best = [_run(cfg, optuna.samplers.RandomSampler(seed=s), 16, per_source=True)[-1]
                   for s in range(5)]  # fmt: skip
    assert law_best - best < 1e-3 < float(np.median(random_best)) - best
