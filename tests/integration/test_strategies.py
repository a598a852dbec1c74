"""A dmt trial on real Ray + DeepSpeed + MLflow: two stages, the lr schedule restarting at the
boundary, the stage on every step metric, and a checkpoint handed over at the stage end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raymix.config import validate
from tests.conftest import tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dmt_runs_two_stages_with_a_checkpoint_between(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from raymix.sweep.tuner import run_sweep
    from raymix.tracking import MlflowTracker

    raw = tiny_experiment(
        name="dmt",
        sources=[
            {
                "name": "math",
                "path": "synthetic:math",
                "ability": "math",
                "size": 300,
                "heldout": 32,
            },
            {"name": "general", "path": "synthetic:general", "size": 300, "heldout": 32},
        ],
        mixture={"grid": {"both": {"math": 160, "general": 160}}},
        strategy={"name": "dmt", "k": 0.25, "epochs": [1, 2]},
        train={
            "lr": 3e-3,
            "warmup_steps": 2,
            "micro_batch_size": 8,
            "log_every": 1,
            "report_every": 4,
            "max_length": 128,
        },  # fmt: skip
        deepspeed={"zero_stage": 0},  # the quickstart and test_sweep cover ZeRO-2
        sweep={"storage_path": str(tmp_path / "runs")},
        tracking={"uri": f"sqlite:///{tmp_path}/mlflow.db"},
    )
    outcome = run_sweep(validate(raw, origin="test"))
    assert outcome.num_errors == 0
    client = MlflowClient(outcome.tracking_uri)
    (run,) = MlflowTracker(outcome.tracking_uri).trial_runs(outcome.parent_run_id)
    run_id = run.info.run_id
    manifest = json.loads(
        Path(client.download_artifacts(run_id, "manifest.json", str(tmp_path))).read_text()
    )
    first, second = manifest["stages"]
    assert first["name"] == "specialised" and set(first["sources"]) == {"math"}
    assert second["name"] == "general+replay" and second["epochs"] == 2
    assert second["sources"]["math"]["count"] == 40  # k = 0.25 of 160 math rows replayed
    assert set(second["sources"]["math"]["row_ids"]) <= set(first["sources"]["math"]["row_ids"])

    steps_first = 160 // (8 * 2)  # rows / (micro-batch x workers)
    stage = {m.step: m.value for m in client.get_metric_history(run_id, "train/stage")}
    lr = {m.step: m.value for m in client.get_metric_history(run_id, "train/lr")}
    assert stage[steps_first] == 0 and stage[steps_first + 1] == 1
    norms = [m.value for m in client.get_metric_history(run_id, "train/grad_norm")]
    assert norms and all(0 < v < 100 for v in norms)
    assert max(stage) == steps_first + 2 * ((200 + 15) // 16)
    # stage 1 decays linearly, then stage 2's 2-step warmup climbs again: 1/2, then the peak
    assert lr[steps_first] == pytest.approx(3e-3 * (1 - (steps_first - 1 - 2) / (steps_first - 2)))
    assert lr[steps_first + 1] == pytest.approx(3e-3 / 2)
    assert lr[steps_first + 2] == pytest.approx(3e-3)

    train_runs = Path(outcome.storage_path) / outcome.name / "train_runs"
    checkpoints = sorted(p.name for p in train_runs.rglob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2, checkpoints  # one at each stage end
    states = [json.loads(p.read_text()) for p in train_runs.rglob("raymix_state.json")]
    assert sorted(s["stage"] for s in states) == [0, 1]
