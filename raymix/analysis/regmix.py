"""RegMix (Liu et al., ICLR 2025) for SFT mixtures: a gradient-boosted regression (LightGBM) per
target from the mixture's shares to the metric, fitted on the finished trials, then the mixture
the regressions rank best among many candidates on the simplex.

As in RegMix, the candidates are Dirichlet draws (here within the sources' bounds), and the
recommendation is the mean of the ``top`` best-predicted candidates, not the single best (one
tree ensemble's argmax is noisy). It needs more trials than the mixing law, :func:`min_trials`
(5 per source), and says how far to trust it with each target's leave-one-out R².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymix.analysis.mixing_law import Array, Target, TooFewTrials

PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 2,
    "min_data_in_bin": 1,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1e-3,
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 1,
    "verbose": -1,
}
"""LightGBM settings for tens of trials: shallow trees, small leaves, one thread, deterministic."""


def min_trials(num_sources: int) -> int:
    """5 trials per source: below that a tree ensemble mostly memorises."""
    return 5 * num_sources


@dataclass
class RegMixResult:
    """The shares the regressions rank best, each target's prediction there, and each
    regression's leave-one-out R²."""

    sources: tuple[str, ...]
    shares: dict[str, float]
    predicted: dict[str, float]
    loo_r2: dict[str, float] = field(default_factory=dict)


def fit(shares: Array, values: Array, seed: int = 0) -> Any:
    """One LightGBM regressor from shares to a metric."""
    from lightgbm import LGBMRegressor

    model = LGBMRegressor(random_state=seed, **PARAMS)
    model.fit(np.asarray(shares, dtype=np.float64), np.asarray(values, dtype=np.float64))
    return model


def loo_r2(shares: Array, values: Array, seed: int = 0) -> float:
    """Leave-one-out R² of the regression (1 - PRESS / total sum of squares)."""
    r, y = np.asarray(shares, dtype=np.float64), np.asarray(values, dtype=np.float64)
    pred = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        pred[i] = fit(r[keep], y[keep], seed).predict(r[i : i + 1])[0]
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total > 0 else float("nan")


def candidates(m: int, upper: Array, n: int, seed: int) -> Array:
    """``n`` Dirichlet draws on the simplex over ``m`` sources with every share within
    ``upper`` (draws that break a bound are redrawn; a flat Dirichlet and a sparse one mixed, as
    RegMix samples both dense and sparse mixtures)."""
    rng = np.random.default_rng(seed)
    out: list[Array] = []
    for _ in range(200):
        alpha = np.where(rng.random((n, 1)) < 0.5, 1.0, 0.3) * np.ones((n, m))
        draws = np.array([rng.dirichlet(a) for a in alpha])
        out.extend(draws[np.all(draws <= upper + 1e-12, axis=1)])
        if len(out) >= n:
            break
    if not out:
        raise ValueError(f"no mixture on the simplex keeps within the bounds {upper.tolist()}")
    return np.array(out[:n])


def recommend(
    sources: Sequence[str],
    shares: Array,
    values: dict[str, Array],
    targets: Sequence[Target],
    upper: Sequence[float] | None = None,
    seed: int = 0,
    samples: int = 20_000,
    top: int = 100,
) -> RegMixResult:
    """Fit a regression per target and return the mean of the ``top`` candidates with the
    best weighted objective Σ w · s · prediction (s = +1 to minimise, -1 to maximise)."""
    r = np.asarray(shares, dtype=np.float64)
    n, m = r.shape
    if n < min_trials(m):
        raise TooFewTrials(
            f"{n} finished trials for {m} sources; RegMix's regression needs at least "
            f"{min_trials(m)} (5 per source)"
        )
    hi = np.ones(m) if upper is None else np.minimum(np.asarray(upper, dtype=np.float64), 1.0)
    models = {t.name: fit(r, values[t.name], seed) for t in targets}
    cand = candidates(m, hi, samples, seed)
    objective = sum(t.weight * t.sign * models[t.name].predict(cand) for t in targets)
    best = cand[np.argsort(objective)[:top]].mean(axis=0)
    best = best / best.sum()
    return RegMixResult(
        tuple(sources),
        {s: float(v) for s, v in zip(sources, best, strict=True)},
        {t.name: float(models[t.name].predict(best[None, :])[0]) for t in targets},
        {t.name: loo_r2(r, values[t.name], seed) for t in targets},
    )
