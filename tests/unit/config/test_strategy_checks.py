"""Strategy settings that would do nothing: errors are rows of tests/unit/test_bad_inputs.py;
here the named warnings, the legitimate set-ups that pass silently, and a trial's own point
(k = 0 in a search over k) that is not refused."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymix.config import load, with_params
from tests.conftest import tiny_experiment

GENERAL = {"name": "chat", "path": "synthetic:general", "ability": "general", "size": 60}


def _load(tmp_path: Path, *overrides: str, **raw: Any):  # type: ignore[no-untyped-def]
    path = tmp_path / "exp.yaml"
    exp = tiny_experiment(**raw)
    exp["sources"].append(GENERAL)
    exp["mixture"]["grid"]["all"] = {"math": 10, "code": 10, "chat": 10}
    path.write_text(yaml.safe_dump(exp))
    return load(path, overrides)


@pytest.mark.parametrize(
    ("strategy", "searched"),
    [
        ({"name": "dmt", "k": 0.1}, {}),
        ({"name": "mixed_sequential"}, {}),
        ({"name": "sequential", "order": [["math", "code"], ["chat"]]}, {}),
        ({"name": "sequential"}, {}),
        ({"name": "multitask", "epochs": [2]}, {}),
        (
            {"name": "multitask", "k": 0.5},
            {
                "strategy.name": {"choice": ["multitask", "dmt"]},
                "strategy.k": {"grid": [0, 0.5], "when": {"strategy.name": ["dmt"]}},
            },
        ),  # fmt: skip
    ],
)
def test_working_strategies_load_without_a_word(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    strategy: dict,
    searched: dict,  # type: ignore[type-arg]
) -> None:
    with caplog.at_level(logging.WARNING, logger="raymix"):
        _load(tmp_path, strategy=strategy, sweep={"space": searched})
    assert caplog.messages == []


@pytest.mark.parametrize(
    ("overrides", "warned"),
    [
        (["strategy.k=0.1"], "strategy.k is set but does nothing under strategy.name 'multitask'"),
        (["strategy.order=[[math], [code]]", "strategy.name=dmt"], "strategy.order is set"),
        (["strategy.specialised=[math]", "strategy.name=sequential"], "strategy.specialised"),
        (["strategy.reset_optimizer=false"], "strategy.reset_optimizer is set"),
        (["sweep.space={strategy.k: {grid: [0.1, 0.2]}}"], "strategy.k is searched in sweep.space"),
    ],
)
def test_keys_no_strategy_reads_get_a_named_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, overrides: list[str], warned: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="raymix"):
        _load(tmp_path, *overrides)
    assert len(caplog.messages) == 1
    assert warned in caplog.messages[0] and "exp.yaml: warning:" in caplog.messages[0]


def test_a_trial_point_is_not_refused(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "strategy.name=dmt")
    assert with_params(cfg, {"strategy.k": 0}).strategy.k == 0


def test_a_searched_strategy_that_would_do_nothing_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "exp.yaml"
    space = {"strategy.name": {"choice": ["multitask", "dmt"]}}  # math and code: all specialised
    path.write_text(yaml.safe_dump(tiny_experiment(sweep={"space": space})))
    with caplog.at_level(logging.WARNING, logger="raymix"):
        load(path)
    (message,) = caplog.messages
    assert message.startswith(f"{path}: warning: sweep.space.strategy.name: every source")
    assert "dmt is one stage" in message and "replay stage (k) is dropped" in message
