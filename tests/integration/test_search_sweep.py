"""A searched sweep, as a user runs it: Optuna TPE over a Dirichlet mixture space and a learning
rate, ASHA on the held-out loss, real Ray, CPU DeepSpeed and a real MLflow store. Half the
learning rates cannot learn (1e-7), so ASHA must stop a trial at its first rung."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raymix.config import validate
from raymix.sweep.space import sample_points
from tests.conftest import run_cli_sweep, tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_LR = 1e-7


def _experiment(tmp: Path) -> dict:
    return tiny_experiment(
        name="search_itest",
        mixture={
            "space": {
                "weights": {"dirichlet": 1.0, "min_share": {"code": 0.2}},
                "amount": {"loguniform": [160, 240]},
            }
        },
        train={
            "lr": 3e-3,
            "epochs": 3,
            "micro_batch_size": 8,
            "max_length": 128,
            "log_every": 2,
            "report_every": 50,
            "eval_every": 6,
        },
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [{"name": "heldout", "limit": 8}], "max_new_tokens": 16,
              "loss_weights": {"math": 1, "code": 2}},
        sweep={
            "storage_path": str(tmp / "runs"),
            "num_samples": 4,
            "metric": "eval/loss/weighted",
            "search": {"algorithm": "tpe", "n_startup_trials": 4},
            "scheduler": {"name": "asha", "grace_period": 6, "reduction_factor": 2},
            "space": {"train.lr": {"choice": [3e-3, BAD_LR]}},
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("search")
    raw = _experiment(tmp)
    lrs = [p["train.lr"] for p in sample_points(validate(raw, origin="x"), 4)]
    # TPE's startup trials are the random sampler's: a good trial comes before a bad one, so a
    # bad trial meets a recorded good one at the first rung
    assert lrs.index(3e-3) < lrs.index(BAD_LR), lrs
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    stdout = run_cli_sweep(path, tmp, uri, timeout=1500)
    from raymix.tracking import MlflowTracker

    tracker = MlflowTracker(uri)
    exp = tracker.client.get_experiment_by_name("search_itest")
    parent = tracker.client.search_runs(
        [exp.experiment_id], filter_string="tags.`raymix.role` = 'sweep'"
    )[0]
    return {
        "stdout": stdout,
        "client": tracker.client,
        "parent": parent,
        "runs": tracker.trial_runs(parent.info.run_id),
    }


def _last_step(client, run) -> int:  # type: ignore[no-untyped-def]
    return max(m.step for m in client.get_metric_history(run.info.run_id, "eval/loss/weighted"))


def test_optuna_tries_four_sampled_mixtures(sweep: dict) -> None:
    runs = sweep["runs"]
    assert len(runs) == 4 and "4 trials, 0 failed" in sweep["stdout"]
    assert sweep["parent"].info.status == "FINISHED"
    for run in runs:
        p = run.data.params
        shares = {n: float(p[f"mixture.weight.{n}"]) for n in ("math", "code")}
        assert abs(sum(shares.values()) - 1) < 1e-4 and shares["code"] >= 0.2 - 1e-6
        assert 160 <= float(p["mixture.amount"]) <= 240
        assert int(p["mixture.math"]) + int(p["mixture.code"]) == int(p["mixture.total"])
        assert p["mixture.name"] == "sampled"


def test_asha_stops_a_weak_trial_which_keeps_its_run(sweep: dict) -> None:
    client, runs = sweep["client"], sweep["runs"]
    stopped = [r for r in runs if r.data.tags.get("raymix.stopped_early") == "true"]
    full = [r for r in runs if r not in stopped]
    assert stopped and full
    # a trial that cannot learn always trails at the first rung; a learning one may be cut
    # later when it trails the trials before it (rung by rung, ASHA keeps the best half)
    bad = [r for r in runs if float(r.data.params["train.lr"]) == BAD_LR]
    assert bad and all(r in stopped for r in bad)
    assert all(r.info.status == "KILLED" for r in stopped)
    assert all(r.info.status == "FINISHED" for r in full)
    for r in stopped:
        # what it logged up to the stopping report landed (flushed before each report); its
        # workers may run a few steps more while Tune kills them
        step = _last_step(client, r)
        assert int(r.data.tags["raymix.stopped_at_step"]) <= step
        assert step < r.data.metrics["train/total_steps"]
        assert "eval/math/exact_match" not in r.data.metrics
    assert all("eval/math/exact_match" in r.data.metrics for r in full)
    assert all(_last_step(client, r) == r.data.metrics["train/total_steps"] for r in full)
    assert "stopped@" in sweep["stdout"] and "stopped early by the scheduler" in sweep["stdout"]
