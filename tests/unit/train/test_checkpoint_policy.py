"""train.checkpoint_every / keep_checkpoints / keep_checkpoints_by reach Ray Train's
CheckpointConfig, and a metric that not every checkpoint's report carries is refused."""

from __future__ import annotations

import pytest

from raymix.config.schema import ExperimentConfig
from raymix.train.launch import checkpoint_config
from tests.conftest import tiny_experiment


def _cfg(**train: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate(tiny_experiment(train=train))


def test_the_latest_checkpoints_are_kept_by_default() -> None:
    conf = checkpoint_config(_cfg())
    assert conf.num_to_keep == 2 and conf.checkpoint_score_attribute is None


def test_keep_the_best_by_a_heldout_loss() -> None:
    conf = checkpoint_config(
        _cfg(checkpoint_every=10, keep_checkpoints=3, keep_checkpoints_by="eval/loss/math")
    )
    assert conf.num_to_keep == 3
    assert conf.checkpoint_score_attribute == "eval/loss/math"
    assert conf.checkpoint_score_order == "min"


@pytest.mark.parametrize("by", ["train/loss", "eval/loss/nope", "eval/loss/weighted", "best"])
def test_a_metric_not_in_every_checkpoint_report_is_refused(by: str) -> None:
    with pytest.raises(ValueError, match=r"train\.keep_checkpoints_by: .*allowed: latest, "
                       r"eval/loss/math, eval/loss/code, eval/loss/mean"):  # fmt: skip
        _cfg(keep_checkpoints_by=by)


def test_checkpoint_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="checkpoint_every"):
        _cfg(checkpoint_every=0)
