"""``raymix eval heldout --run`` recomputes each source's held-out loss of a finished trial (a
real 2-worker packed trial on Ray + CPU DeepSpeed + MLflow): the values equal those the trial's
workers logged at its final step."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from raymix.config import validate
from tests.conftest import tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_recomputed_heldout_loss_equals_the_trial_s(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from raymix.eval.runs import evaluate_run
    from raymix.sweep.tuner import run_sweep
    from raymix.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    raw = tiny_experiment(
        name="recompute",
        mixture={"grid": {"both": {"math": 60, "code": 50}}},
        train={
            "lr": 3e-3,
            "micro_batch_size": 4,
            "grad_accum": 2,
            "max_length": 128,
            "packing": True,
            "log_every": 1,
            "max_steps": 4,
            "eval_batch_size": 5,
        },  # fmt: skip
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [{"name": "heldout", "limit": 1}], "max_new_tokens": 4},
        sweep={"storage_path": str(tmp_path / "runs")},
        tracking={"uri": uri},
    )
    outcome = run_sweep(validate(raw, origin="test"))
    assert outcome.num_errors == 0
    client = MlflowClient(outcome.tracking_uri)
    (run,) = MlflowTracker(outcome.tracking_uri).trial_runs(outcome.parent_run_id)
    run_id = run.info.run_id
    keys = ("eval/loss/math", "eval/loss/code", "eval/loss/mean")
    final = {k: max(client.get_metric_history(run_id, k), key=lambda m: m.step) for k in keys}
    assert {m.step for m in final.values()} == {4}
    losses = [m.value for m in client.get_metric_history(run_id, "train/loss")]
    assert len(losses) == 4 and all(math.isfinite(v) and 0 < v < 10 for v in losses)

    args = argparse.Namespace(tracking_uri=uri, limit=1, path=None)
    scores = evaluate_run("heldout", run_id, args)
    for k in keys:
        delta = abs(scores[k] - final[k].value)
        print(f"{k}: trial {final[k].value:.8f} recomputed {scores[k]:.8f} |Δ| {delta:.2g}")
        assert delta < 1e-5
