"""Ye et al.'s data mixing law, fitted per target on finished trials, and the mixture it
recommends.

Each target metric i (a held-out loss, an ability score) is modelled as a function of the mixture
proportions r (on the simplex, one share per source):

    L_i(r) = c_i + k_i · exp(Σ_j t_ij · r_j)

Only differences of the t_ij are identifiable on the simplex (Σ r_j = 1 moves a common shift into
k_i), so t_i1 is pinned to 0. For fixed t the best c_i, k_i are a linear least-squares solution;
the t are fitted by nonlinear least squares on that projected residual (variable projection),
from several seeded starts. The recommendation minimises Σ_i w_i · s_i · L_i(r) (s_i = +1 for a
metric to minimise, -1 to maximise) over the simplex within per-source bounds (a source cannot
give more rows than it has), by SLSQP from the simplex's vertices, its centre and seeded starts.
Leave-one-out R² says how far each fit can be trusted; bootstrap refits give intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


class TooFewTrials(ValueError):
    """Fewer finished trials than the law needs to be fitted and checked."""


class PoorFit(ValueError):
    """A target's leave-one-out R² is below the threshold: its law cannot be trusted."""


@dataclass(frozen=True)
class Law:
    """One target's fitted law: ``c + k · exp(r @ t)`` (``t[0]`` is 0)."""

    c: float
    k: float
    t: tuple[float, ...]

    def __call__(self, shares: Array) -> Array:
        r = np.atleast_2d(np.asarray(shares, dtype=np.float64))
        return np.asarray(self.c + self.k * np.exp(r @ np.asarray(self.t)), dtype=np.float64)


@dataclass(frozen=True)
class Target:
    """A metric to optimise: its name, ``min`` or ``max``, and its weight in the objective."""

    name: str
    mode: str = "min"
    weight: float = 1.0

    @property
    def sign(self) -> float:
        return 1.0 if self.mode == "min" else -1.0


@dataclass
class Recommendation:
    """The recommended shares (per source, summing to 1), each target's predicted value there
    with a bootstrap interval, and each fit's leave-one-out R²."""

    sources: tuple[str, ...]
    shares: dict[str, float]
    predicted: dict[str, float]
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    loo_r2: dict[str, float] = field(default_factory=dict)
    laws: dict[str, Law] = field(default_factory=dict)


def min_trials(num_sources: int) -> int:
    """The fewest finished trials a fit is attempted on: 2 (M + 2) for M sources."""
    return 2 * (num_sources + 2)


def fit_law(shares: Array, values: Array, seed: int = 0, starts: int = 8) -> Law:
    """Least-squares fit of one target's law to trials at ``shares`` (n × M) with ``values``."""
    from scipy.optimize import least_squares

    r = np.asarray(shares, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    m = r.shape[1]

    def linear(free: Array) -> tuple[Array, Array]:
        e = np.exp(r @ np.concatenate([[0.0], free]))
        design = np.column_stack([np.ones_like(e), e])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return coef, design @ coef - y

    rng = np.random.default_rng(seed)
    candidates = [np.zeros(m - 1), *rng.normal(0.0, 2.0, size=(starts, m - 1))]
    best = None
    for start in candidates:
        found = least_squares(lambda f: linear(f)[1], start, method="lm" if len(y) >= m else "trf")
        cost = float(np.sum(linear(found.x)[1] ** 2))
        if best is None or cost < best[0]:
            best = (cost, found.x)
    assert best is not None
    (c, k), _ = linear(best[1])
    return Law(float(c), float(k), (0.0, *map(float, best[1])))


def loo_r2(shares: Array, values: Array, seed: int = 0) -> float:
    """Leave-one-out R²: each trial predicted by the law fitted on the others."""
    r = np.asarray(shares, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    predicted = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        predicted[i] = fit_law(r[keep], y[keep], seed)(r[i])[0]
    spread = float(np.sum((y - y.mean()) ** 2))
    if spread == 0.0:
        return 1.0 if np.allclose(predicted, y) else 0.0
    return 1.0 - float(np.sum((y - predicted) ** 2)) / spread


def optimum(
    laws: Sequence[Law],
    targets: Sequence[Target],
    upper: Sequence[float] | None = None,
    seed: int = 0,
    lower: Sequence[float] | None = None,
) -> Array:
    """The shares on the simplex minimising Σ w · s · L(r), each share within
    [lower_j, upper_j] (default [0, 1])."""
    from scipy.optimize import minimize

    m = len(laws[0].t)
    hi = np.ones(m) if upper is None else np.minimum(np.asarray(upper, dtype=np.float64), 1.0)
    lo = np.zeros(m) if lower is None else np.maximum(np.asarray(lower, dtype=np.float64), 0.0)
    if hi.sum() < 1.0 - 1e-12 or lo.sum() > 1.0 + 1e-12 or np.any(lo > hi):
        raise ValueError(
            f"the sources' bounds {lo.tolist()} .. {hi.tolist()} cannot make a whole mixture"
        )

    def objective(r: Array) -> float:
        return float(
            sum(t.weight * t.sign * law(r)[0] for law, t in zip(laws, targets, strict=True))
        )

    rng = np.random.default_rng(seed)
    starts = [np.full(m, 1.0 / m), *np.eye(m), *rng.dirichlet(np.ones(m), size=8)]
    best = None
    for start in starts:
        x0 = into_bounds(start, hi, lo)
        found = minimize(
            objective, x0, method="SLSQP", bounds=list(zip(lo, hi, strict=True)),
            constraints=[{"type": "eq", "fun": lambda r: float(np.sum(r) - 1.0)}],
            options={"ftol": 1e-12, "maxiter": 500},
        )  # fmt: skip
        x = into_bounds(np.clip(found.x, lo, hi), hi, lo)
        value = objective(x)
        if best is None or value < best[0] - 1e-12:
            best = (value, x)
    assert best is not None
    return best[1]


def recommend(
    sources: Sequence[str],
    shares: Array,
    values: dict[str, Array],
    targets: Sequence[Target],
    upper: Sequence[float] | None = None,
    min_r2: float = 0.5,
    bootstrap: int = 200,
    seed: int = 0,
) -> Recommendation:
    """Fit every target's law on the trials (``shares``: n × M; ``values[name]``: n) and return
    the mixture that optimises the weighted objective, with predictions, bootstrap intervals
    (2.5 %–97.5 % of refits on resampled trials, evaluated at the recommended shares) and
    leave-one-out R². Raises :class:`TooFewTrials` below :func:`min_trials` and
    :class:`PoorFit` when a target's leave-one-out R² is below ``min_r2``."""
    r = np.asarray(shares, dtype=np.float64)
    n, m = r.shape
    if m != len(sources):
        raise ValueError(f"{m} share columns for {len(sources)} sources")
    if n < min_trials(m):
        raise TooFewTrials(
            f"{n} finished trials for {m} sources; the mixing law needs at least "
            f"{min_trials(m)} (2 × (sources + 2))"
        )
    laws, r2 = {}, {}
    for t in targets:
        y = np.asarray(values[t.name], dtype=np.float64)
        laws[t.name] = fit_law(r, y, seed)
        r2[t.name] = loo_r2(r, y, seed)
    poor = {name: v for name, v in r2.items() if v < min_r2}
    if poor:
        listed = ", ".join(f"{name} {v:.2f}" for name, v in poor.items())
        raise PoorFit(
            f"leave-one-out R² below {min_r2:g}: {listed}; the law does not describe these "
            "trials well enough to recommend from them (more trials, or fewer sources)"
        )
    best = optimum([laws[t.name] for t in targets], targets, upper, seed)
    predicted = {t.name: float(laws[t.name](best)[0]) for t in targets}
    rng = np.random.default_rng(seed + 1)
    draws: dict[str, list[float]] = {t.name: [] for t in targets}
    for _ in range(bootstrap):
        pick = rng.integers(0, n, size=n)
        for t in targets:
            y = np.asarray(values[t.name], dtype=np.float64)[pick]
            draws[t.name].append(float(fit_law(r[pick], y, seed, starts=2)(best)[0]))
    interval = {
        name: (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
        for name, d in draws.items()
        if d
    }
    return Recommendation(
        tuple(sources),
        {s: float(v) for s, v in zip(sources, best, strict=True)},
        predicted,
        interval,
        r2,
        laws,
    )


def into_bounds(r: Array, hi: Array, lo: Array | None = None) -> Array:
    """``r`` moved onto {Σ r = 1, lo ≤ r ≤ hi}: what exceeds a bound goes to the others."""
    low = np.zeros_like(hi) if lo is None else lo
    x = np.clip(np.asarray(r, dtype=np.float64), low, hi)
    for _ in range(len(x) + 1):
        gap = 1.0 - x.sum()
        if abs(gap) < 1e-12:
            break
        room = (hi - x) if gap > 0 else (x - low)
        if room.sum() <= 0:
            break
        x = np.clip(x + gap * room / room.sum(), low, hi)
    return x
