"""The mixing law recovers a known optimum from noisy synthetic trials, keeps within the sources'
bounds, and refuses too few trials or a poor fit."""

from __future__ import annotations

import numpy as np
import pytest

from raymix.analysis.mixing_law import (
    Law,
    PoorFit,
    Target,
    TooFewTrials,
    fit_law,
    loo_r2,
    min_trials,
    optimum,
    recommend,
)

SOURCES = ("math", "code", "general")
TRUE = {  # each ability's held-out loss falls as its own source's share grows
    "eval/loss/math": Law(1.2, 2.0, (-3.0, 0.0, 0.0)),
    "eval/loss/code": Law(0.9, 1.5, (0.0, -4.0, 0.0)),
    "eval/loss/general": Law(1.5, 1.0, (0.0, 0.0, -2.5)),
}
TARGETS = [Target("eval/loss/math", "min", 1.0), Target("eval/loss/code", "min", 0.7),
           Target("eval/loss/general", "min", 1.3)]  # fmt: skip


def _trials(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(3), size=n)
    values = {k: law(shares) + rng.normal(0.0, noise, size=n) for k, law in TRUE.items()}
    return shares, values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_trials_from_a_known_law_recover_its_optimum_within_002(seed: int) -> None:
    shares, values = _trials(30, noise=0.005, seed=seed)
    truth = optimum(list(TRUE.values()), TARGETS)
    assert truth.min() > 0.05 and truth.max() < 0.9, "an interior optimum, not a vertex"
    rec = recommend(SOURCES, shares, values, TARGETS, bootstrap=40, seed=seed)
    got = np.array([rec.shares[s] for s in SOURCES])
    assert np.abs(got - truth).max() < 0.02, (got, truth)
    assert sum(rec.shares.values()) == pytest.approx(1.0)
    for t in TARGETS:
        assert rec.loo_r2[t.name] > 0.95
        lo, hi = rec.interval[t.name]
        assert lo <= rec.predicted[t.name] <= hi
        assert rec.predicted[t.name] == pytest.approx(float(TRUE[t.name](truth)[0]), abs=0.02)


def test_a_fit_predicts_the_law_it_was_drawn_from() -> None:
    shares, values = _trials(20, noise=0.0)
    law = fit_law(shares, values["eval/loss/code"])
    probe = np.random.default_rng(9).dirichlet(np.ones(3), size=50)
    assert np.allclose(law(probe), TRUE["eval/loss/code"](probe), atol=1e-6)
    assert loo_r2(shares, values["eval/loss/code"]) > 0.999


def test_the_recommendation_keeps_within_each_sources_rows() -> None:
    shares, values = _trials(30, noise=0.005)
    upper = (0.15, 1.0, 0.3)  # math has rows for 15 % of the amount, general for 30 %
    rec = recommend(SOURCES, shares, values, TARGETS, upper=upper, bootstrap=0)
    assert rec.shares["math"] <= 0.15 + 1e-9 and rec.shares["general"] <= 0.3 + 1e-9
    assert rec.shares["math"] == pytest.approx(0.15, abs=1e-6), "math wanted more than it has"
    with pytest.raises(ValueError, match="cannot make a whole mixture"):
        optimum(list(TRUE.values()), TARGETS, upper=(0.2, 0.2, 0.2))


def test_a_score_to_maximise_pulls_towards_its_source() -> None:
    shares, _ = _trials(30, noise=0.0)
    accuracy = Law(0.8, -0.6, (-4.0, 0.0, 0.0))  # rises with the math share
    rec = recommend(SOURCES, shares, {"eval/math/exact_match": accuracy(shares)},
                    [Target("eval/math/exact_match", "max")], bootstrap=0)  # fmt: skip
    assert rec.shares["math"] == pytest.approx(1.0, abs=1e-4)


def test_too_few_trials_or_a_poor_fit_are_refused() -> None:
    assert min_trials(3) == 10
    shares, values = _trials(9, noise=0.005)
    with pytest.raises(TooFewTrials, match="9 finished trials for 3 sources; .* at least 10"):
        recommend(SOURCES, shares, values, TARGETS)
    shares, _ = _trials(20, noise=0.0)
    noise = {t.name: np.random.default_rng(3).normal(size=20) for t in TARGETS}
    with pytest.raises(PoorFit, match="leave-one-out R² below 0.5: eval/loss/math"):
        recommend(SOURCES, shares, noise, TARGETS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regmix_recovers_the_optimum_from_30_trials_and_keeps_within_bounds(seed: int) -> None:
    from raymix.analysis import regmix

    shares, values = _trials(30, noise=0.005, seed=seed)
    truth = optimum(list(TRUE.values()), TARGETS)
    got = regmix.recommend(SOURCES, shares, values, TARGETS, seed=seed)
    r = np.array([got.shares[s] for s in SOURCES])
    assert np.abs(r - truth).max() < 0.05, (r, truth)
    again = regmix.recommend(SOURCES, shares, values, TARGETS, seed=seed)
    assert again.shares == got.shares, "deterministic from its seed"
    capped = regmix.recommend(SOURCES, shares, values, TARGETS, upper=[0.3, 1, 1], seed=seed)
    assert capped.shares["math"] <= 0.3 + 1e-9
    with pytest.raises(TooFewTrials, match="needs at least 15"):
        regmix.recommend(SOURCES, shares[:14], {k: v[:14] for k, v in values.items()}, TARGETS)


def test_regmix_predictions_are_lightgbms() -> None:
    """The regression is LightGBM's own: refitted directly with the same settings, it predicts
    the same values."""
    from lightgbm import LGBMRegressor

    from raymix.analysis import regmix

    shares, values = _trials(30, noise=0.005)
    ours = regmix.fit(shares, values["eval/loss/math"], seed=3)
    theirs = LGBMRegressor(random_state=3, **regmix.PARAMS).fit(shares, values["eval/loss/math"])
    probe = np.random.default_rng(1).dirichlet(np.ones(3), size=20)
    assert np.allclose(ours.predict(probe), theirs.predict(probe))
