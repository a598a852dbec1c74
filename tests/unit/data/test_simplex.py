"""Sampled points → shares → counts: the Dirichlet transform has the requested distribution
(checked against scipy's Beta marginals), bounds and caps hold, and counts add up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from raymix.config.schema import AmountSpace, MixtureSpace, WeightsSpace
from raymix.data.simplex import bound, fill, shares
from raymix.errors import ConfigError

NAMES = ["math", "code", "general"]


def _space(**weights: object) -> MixtureSpace:
    return MixtureSpace(weights=WeightsSpace(**weights), amount=AmountSpace(fixed=100))


@pytest.mark.parametrize("alpha", [0.5, 1.0, {"math": 2.0, "code": 1.0, "general": 0.5}])
def test_uniform_draws_become_the_requested_dirichlet(alpha: object) -> None:
    """Each share of Dirichlet(a) is Beta(a_i, sum a - a_i): the shares of 2,000 uniform draws
    pass a Kolmogorov-Smirnov test against it, and fail it against another concentration."""
    space = _space(dirichlet=alpha)
    a = alpha if isinstance(alpha, dict) else dict.fromkeys(NAMES, alpha)
    rng = np.random.default_rng(7)
    points = [
        shares(space, NAMES, dict(zip(NAMES, rng.uniform(size=3), strict=True)), {})
        for _ in range(2000)
    ]
    total = sum(a.values())
    for n in NAMES:
        x = [p[n] for p in points]
        assert stats.kstest(x, stats.beta(a[n], total - a[n]).cdf).pvalue > 1e-3
        assert stats.kstest(x, stats.beta(a[n] * 3, (total - a[n]) * 3).cdf).pvalue < 1e-6
    assert all(abs(sum(p.values()) - 1) < 1e-12 for p in points)


def test_ranges_are_normalised_and_natural_follows_the_sizes() -> None:
    ranged = _space(ranges={"math": (1, 3), "code": (0, 1), "general": (2, 2)})
    assert shares(ranged, NAMES, {"math": 2, "code": 1, "general": 2}, {}) == pytest.approx(
        {"math": 0.4, "code": 0.2, "general": 0.4}
    )
    natural = _space(natural=True)
    assert shares(natural, NAMES, {}, {"math": 100, "code": 300, "general": 100}) == (
        pytest.approx({"math": 0.2, "code": 0.6, "general": 0.2})
    )


point_on_simplex = st.lists(st.floats(0.001, 1), min_size=3, max_size=3).map(
    lambda v: dict(zip(NAMES, [x / sum(v) for x in v], strict=True))
)


@settings(max_examples=300, deadline=None)
@given(point_on_simplex, st.floats(0, 0.3), st.floats(0.35, 1))
def test_bounds_hold_and_shares_still_sum_to_one(
    point: dict[str, float], low: float, high: float
) -> None:
    out = bound(point, {"general": low}, {"math": high})
    assert abs(sum(out.values()) - 1) < 1e-9
    assert out["general"] >= low - 1e-12
    assert out["math"] <= high + 1e-12
    assert all(v >= -1e-12 for v in out.values())


@settings(max_examples=300, deadline=None)
@given(
    point_on_simplex,
    st.integers(0, 3000),
    st.lists(st.integers(0, 1500), min_size=3, max_size=3),
)
def test_counts_add_up_and_respect_caps(
    point: dict[str, float], total: int, caps: list[int]
) -> None:
    cap = dict(zip(NAMES, caps, strict=True))
    if total > sum(caps):
        with pytest.raises(ConfigError, match="lower the amount or set"):
            fill(total, point, cap, "mixture.space.amount")
        return
    counts = fill(total, point, cap, "mixture.space.amount")
    assert sum(counts.values()) == total
    assert all(counts[n] <= cap[n] for n in NAMES)
    uncapped = fill(total, point, None, "x")
    assert sum(uncapped.values()) == total
    if all(uncapped[n] <= cap[n] for n in NAMES):  # no cap binds: caps change nothing
        assert counts == uncapped


def test_a_capped_source_hands_its_excess_to_the_others_by_weight() -> None:
    counts = fill(
        1000,
        {"math": 0.8, "code": 0.15, "general": 0.05},
        {"math": 500, "code": 10**6, "general": 10**6},
        "x",
    )
    assert counts == {"math": 500, "code": 375, "general": 125}
