"""Workers open the token caches the driver compiled the plan from, by key: no source is read
or hashed again; a machine without them tokenizes, and a changed source is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from raymix.config import validate
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data
from raymix.errors import DataError
from raymix.train.worker import open_caches
from tests.conftest import tiny_experiment


@pytest.fixture
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """(experiment, its source file, tokenizer, prepared sources) in a private token cache."""
    monkeypatch.setenv("RAYMIX_CACHE", str(tmp_path / "cache"))
    cfg, rows = _cfg(tmp_path)
    _, tok, sources = prepare_data(cfg)
    return cfg, rows, tok, sources


def _cfg(tmp_path: Path):  # type: ignore[no-untyped-def]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(40))
    )
    raw = tiny_experiment(
        sources=[{"name": "s", "path": str(rows), "heldout": 4}],
        mixture={"grid": {"m": {"s": 20}}},
    )
    return validate(raw, origin="x.yaml"), rows


def test_workers_open_the_plans_caches_without_reading_the_sources(prepared) -> None:  # type: ignore[no-untyped-def]
    cfg, rows, tok, sources = prepared
    plan = build_plan(cfg, "m", sources)
    rows.unlink()  # nothing to read: the caches are all a worker needs
    caches = open_caches(cfg, plan, tok)
    assert caches["s"].key == plan.token_caches["s"]
    assert caches["s"].example(3) == sources["s"].cache.example(3)


def test_a_source_that_changed_under_the_plan_is_refused(prepared) -> None:  # type: ignore[no-untyped-def]
    cfg, _, tok, sources = prepared
    plan = replace(build_plan(cfg, "m", sources), token_caches={"s": "0" * 32})  # not on disk
    with pytest.raises(DataError, match="differs from the one the plan was built from"):
        open_caches(cfg, plan, tok)


def test_a_sweeps_sources_reopen_by_key_in_its_trials(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What a sweep hands its trials: plain data and cache keys; a trial reopens the same
    sources without the tokenizer, and gets None on a machine without the caches."""
    import pickle

    from raymix.data.pipeline import reopen_sources, source_index

    cfg, rows, _, sources = prepared
    index = pickle.loads(pickle.dumps(source_index(sources)))
    rows.unlink()
    again = reopen_sources(index)
    assert again is not None
    for name, s in sources.items():
        r = again[name]
        assert (r.train_ids, r.heldout_ids, r.fingerprint, r.cleaning) == (
            s.train_ids,
            s.heldout_ids,
            s.fingerprint,
            s.cleaning,
        )
        assert r.cache.key == s.cache.key and r.cache.example(5) == s.cache.example(5)
    assert build_plan(cfg, "m", again).hash == build_plan(cfg, "m", sources).hash
    assert reopen_sources(index, tmp_path / "elsewhere") is None
