"""Mixture plans: exact counts, seeded row ids, stable hashes, held-out rows kept out."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raymix.config import validate
from raymix.data.mixture import build_plan, draw_rows
from raymix.data.pipeline import prepare_data
from raymix.data.sources import rng_for
from raymix.errors import ConfigError
from tests.conftest import tiny_experiment


def load_sources(cfg):  # type: ignore[no-untyped-def]
    return prepare_data(cfg)[2]


def _cfg(seed: int = 0, grid: dict | None = None):  # type: ignore[no-untyped-def]
    raw = tiny_experiment(seed=seed)
    if grid is not None:
        raw["mixture"] = {"grid": grid}
    return validate(raw, origin="test")


def test_counts_are_exact_for_counts_and_fractions() -> None:
    cfg = _cfg()
    plan = build_plan(cfg, "both", load_sources(cfg))
    pool = 300 - 32
    assert plan.rows_per_source() == {"math": 100, "code": round(0.5 * pool)}
    part = plan.stages[0].sources["code"]
    assert len(part.row_ids) == part.count


def test_same_seed_same_plan_other_seed_other_rows() -> None:
    a = build_plan(_cfg(0), "both", load_sources(_cfg(0)))
    b = build_plan(_cfg(0), "both", load_sources(_cfg(0)))
    c = build_plan(_cfg(1), "both", load_sources(_cfg(1)))
    assert a == b and a.hash == b.hash
    assert a.hash != c.hash
    assert a.stages[0].sources["math"].row_ids != c.stages[0].sources["math"].row_ids


def test_heldout_rows_never_train() -> None:
    cfg = _cfg(grid={"all": {"math": 2.0, "code": 1.0}})
    sources = load_sources(cfg)
    plan = build_plan(cfg, "all", sources)
    for name, part in plan.stages[0].sources.items():
        assert not set(part.row_ids) & set(plan.heldout[name])
        assert len(plan.heldout[name]) == 32


def test_upsampling_repeats_the_pool_then_samples_the_rest() -> None:
    cfg = _cfg(grid={"up": {"math": 2.5}})
    plan = build_plan(cfg, "up", load_sources(cfg))
    ids = plan.stages[0].sources["math"].row_ids
    counts = Counter(ids)
    assert len(ids) == round(2.5 * 268)
    assert set(counts.values()) == {2, 3}
    assert sum(1 for v in counts.values() if v == 3) == round(2.5 * 268) - 2 * 268


def test_unknown_mixture_is_a_config_error() -> None:
    cfg = _cfg()
    with pytest.raises(ConfigError, match="allowed: math, both"):
        build_plan(cfg, "nope", load_sources(cfg))


@settings(max_examples=60, deadline=None)
@given(
    pool=st.lists(st.integers(0, 10_000), min_size=1, max_size=50, unique=True),
    count=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_draw_rows_exact_count_and_reproducible(pool: list[int], count: int, seed: int) -> None:
    a = draw_rows(pool, count, rng_for(seed, "mixture", "s"))
    b = draw_rows(pool, count, rng_for(seed, "mixture", "s"))
    assert a == b and len(a) == count and set(a) <= set(pool)
    counts = Counter(a)
    if counts:
        assert max(counts.values()) - min(counts.values()) <= 1 or count < len(pool)
