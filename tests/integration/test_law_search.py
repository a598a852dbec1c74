"""The mixing-law searcher in a real sweep: Tune's OptunaSearch with the MixingLawSampler, real
Ray, CPU DeepSpeed and MLflow. After its random start-up trials, the next trial's mixture is the
optimum of the laws fitted to the start-up trials' held-out losses (as MLflow recorded them),
within the Dirichlet perturbation the searcher adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from raymix.analysis.mixing_law import Target, fit_law, optimum
from tests.conftest import run_cli_sweep, tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STARTUP = 4


def test_the_law_proposes_the_next_mixture(tmp_path: Path) -> None:
    raw = tiny_experiment(
        name="law_itest",
        mixture={"space": {"weights": {"dirichlet": 1.0, "min_share": {"code": 0.1}},
                           "amount": {"unit": "examples", "fixed": 160}}},
        train={"lr": 3e-3, "epochs": 2, "micro_batch_size": 8, "max_length": 128,
               "log_every": 2, "report_every": 50},
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [], "loss_weights": {"math": 1, "code": 1}},
        sweep={"storage_path": str(tmp_path / "runs"), "num_samples": STARTUP + 1,
               "metric": "eval/loss/weighted",
               "search": {"algorithm": "mixing_law", "n_startup_trials": STARTUP,
                          "explore": 0.0, "concentration": 400}},
    )  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_cli_sweep(path, tmp_path, uri, timeout=1500)
    from raymix.tracking import MlflowTracker

    tracker = MlflowTracker(uri)
    exp = tracker.client.get_experiment_by_name("law_itest")
    parent = tracker.client.search_runs(
        [exp.experiment_id], filter_string="tags.`raymix.role` = 'sweep'"
    )[0]
    runs = tracker.trial_runs(parent.info.run_id)
    assert [r.info.status for r in runs] == ["FINISHED"] * (STARTUP + 1)
    sources = ("math", "code")

    def shares(run) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array([float(run.data.params[f"mixture.weight.{s}"]) for s in sources])

    first = runs[:STARTUP]
    r = np.array([shares(x) for x in first])
    laws = [fit_law(r, np.array([x.data.metrics[f"eval/loss/{s}"] for x in first]))
            for s in sources]  # fmt: skip
    targets = [Target(f"eval/loss/{s}", "min") for s in sources]
    expected = optimum(laws, targets, lower=[0.0, 0.1])
    got = shares(runs[STARTUP])
    assert np.abs(got - expected).max() < 0.12, (got, expected, r)
