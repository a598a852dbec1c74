"""Every mixture spec kind compiles to exact counts; strategies compile to stages; the token
cache is built once and reused; overlong rows are truncated or dropped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymix.config import validate
from raymix.data import pipeline
from raymix.data.mixture import build_plan, largest_remainder
from raymix.data.pipeline import prepare_data
from raymix.errors import ConfigError
from tests.conftest import tiny_experiment

SOURCES = [
    {"name": "math", "path": "synthetic:math", "ability": "math", "size": 400, "heldout": 40},
    {"name": "code", "path": "synthetic:code", "ability": "code", "size": 400, "heldout": 40},
    {"name": "chat", "path": "synthetic:general", "ability": "general", "size": 400, "heldout": 40},
]
POOL = 360


def _plan(mixture: dict, strategy: dict | None = None, template: str = "alpaca", **train):  # type: ignore[no-untyped-def]
    raw = tiny_experiment(sources=SOURCES, mixture={"grid": {"m": mixture}}, template=template)
    if strategy:
        raw["strategy"] = strategy
    if train:
        raw["train"] = train
    cfg = validate(raw, origin="test")
    return build_plan(cfg, "m", prepare_data(cfg)[2])


def test_dong_ratio_scales_the_specialised_sources_by_k() -> None:
    plan = _plan(
        {"ratio": {"fixed": {"chat": 1.0}, "scaled": {"math": 1.0, "code": 200}, "k": 0.25}}
    )
    assert plan.rows_per_source() == {"chat": POOL, "math": round(0.25 * POOL), "code": 50}


def test_wang_specialised_ratio_splits_evenly() -> None:
    plan = _plan(
        {
            "specialised_ratio": {
                "general": {"chat": 100},
                "specialised": ["math", "code"],
                "ratio": 1.5,
            }
        }
    )
    assert plan.rows_per_source() == {"chat": 100, "math": 75, "code": 75}


def test_example_budget_uses_largest_remainder() -> None:
    plan = _plan({"budget": {"total": 101, "proportions": {"math": 1, "code": 1, "chat": 1}}})
    assert sum(plan.rows_per_source().values()) == 101
    assert sorted(plan.rows_per_source().values()) == [33, 34, 34]


def test_token_budget_reaches_each_share_with_the_fewest_rows() -> None:
    plan = _plan(
        {"budget": {"total": 6000, "unit": "tokens", "proportions": {"math": 2, "chat": 1}}}
    )
    parts = plan.stages[0].sources
    for name, target in (("math", 4000), ("chat", 2000)):
        assert parts[name].tokens >= target
        assert parts[name].tokens < target + 200  # at most one example over


def test_budget_needing_upsampling_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="source 'math' needs 1000 rows but has 360"):
        _plan({"budget": {"total": 1000, "proportions": {"math": 1}}})
    plan = _plan({"budget": {"total": 1000, "proportions": {"math": 1}, "allow_upsampling": True}})
    assert plan.rows_per_source() == {"math": 1000}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"budget": {"total": 10, "proportions": {"math": 0, "code": 0}}},
            "at least one source a positive",
        ),
        ({"budget": {"total": 10, "proportions": {"math": -1}}}, "greater than or equal to 0"),
        ({"ratio": {"fixed": {"chat": 1.0}, "scaled": {"math": 1.0}, "k": -2}}, "ratio.k"),
        ({"math": 0}, "no source with a positive amount"),
    ],
)
def test_negative_or_all_zero_ratios_are_config_errors(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _plan(spec)


def test_largest_remainder_always_sums_to_total() -> None:
    for total in (0, 1, 7, 1000):
        parts = largest_remainder(total, {"a": 0.2, "b": 0.3, "c": 0.5, "d": 1e-9})
        assert sum(parts.values()) == total


def test_sequential_stages_follow_the_order() -> None:
    mix = {"math": 100, "code": 50, "chat": 20}
    plan = _plan(mix, {"name": "sequential", "order": [["code"], ["math"], ["chat"]]})
    assert [s.name for s in plan.stages] == ["code", "math", "chat"]
    with pytest.raises(ConfigError, match="source\\(s\\) chat of the mixture are in no stage"):
        _plan(mix, {"name": "sequential", "order": [["code"], ["math"]]})


def test_mixed_sequential_and_dmt() -> None:
    mix = {"math": 100, "code": 60, "chat": 80}
    mixed = _plan(mix, {"name": "mixed_sequential"})
    assert [set(s.sources) for s in mixed.stages] == [{"math", "code"}, {"chat"}]
    dmt = _plan(mix, {"name": "dmt", "k": 0.1, "epochs": [3, 1]})
    first, second = dmt.stages
    assert (first.epochs, second.epochs) == (3, 1)
    assert {n: p.count for n, p in second.sources.items()} == {
        "chat": 80,
        "math": 10,
        "code": 6,
    }
    for n in ("math", "code"):
        assert set(second.sources[n].row_ids) <= set(first.sources[n].row_ids)
    with pytest.raises(ConfigError, match="strategy.epochs: 3 value\\(s\\) for 2 stage"):
        _plan(mix, {"name": "dmt", "epochs": [1, 1, 1]})


def test_overlong_rows_are_truncated_or_dropped_and_counted() -> None:
    truncated = _plan({"code": 1.0}, template="plain", max_length=48)
    dropped = _plan({"code": 1.0}, template="plain", max_length=48, overlong="drop")
    t, d = truncated.overlong["code"], dropped.overlong["code"]
    assert t["rows"] == d["rows"] > 0 and t["dropped"] == 0 and d["dropped"] > 0
    assert dropped.rows_per_source()["code"] < truncated.rows_per_source()["code"] == POOL
    assert truncated.stages[0].sources["code"].tokens <= 48 * POOL


def test_tokenize_once_then_reuse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAYMIX_CACHE", str(tmp_path))
    cfg = validate(tiny_experiment(sources=SOURCES), origin="test")
    spec, _, first = prepare_data(cfg)
    assert len(list((tmp_path / "tokens").iterdir())) == 3

    def no_loading(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a warm cache must not load or tokenize the source again")

    monkeypatch.setattr(pipeline, "load_records", no_loading)
    _, _, again = prepare_data(cfg, spec)
    for name in first:
        assert again[name].cache.key == first[name].cache.key
        assert again[name].cache.example(5) == first[name].cache.example(5)
    assert pipeline.builtin_tokenizer(cfg) == spec  # the tokenizer is cached too
