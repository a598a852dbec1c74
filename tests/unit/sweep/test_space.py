"""The schema's search space becomes Tune's param space, and the Tune callback closes the MLflow
runs of trials Tune ended from outside (on a real MLflow store)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ray import tune

from raymix.config import validate
from raymix.sweep.callbacks import CloseTrialRuns
from raymix.sweep.space import param_space
from raymix.tracking import MlflowTracker
from tests.conftest import tiny_experiment


def test_every_space_kind_becomes_its_tune_domain() -> None:
    raw = tiny_experiment(
        sweep={
            "space": {
                "train.lr": {"loguniform": [1e-4, 1e-2]},
                "train.warmup_ratio": {"uniform": [0.0, 0.1]},
                "train.epochs": {"randint": [1, 4]},
                "train.scheduler": {"choice": ["linear", "cosine"]},
                "train.grad_accum": {"grid": [1, 2]},
            }
        }
    )
    cfg = validate(raw, origin="x.yaml")
    space = param_space(cfg)
    assert space["mixture"] == tune.grid_search(list(cfg.mixture.grid))
    p = space["params"]
    assert list(p) == sorted(p)  # stable order, so sampling is reproducible
    assert isinstance(p["train.lr"], tune.search.sample.Float)
    assert isinstance(p["train.lr"].sampler, tune.search.sample.LogUniform)
    assert (p["train.lr"].lower, p["train.lr"].upper) == (1e-4, 1e-2)
    assert isinstance(p["train.warmup_ratio"].sampler, tune.search.sample.Uniform)
    assert isinstance(p["train.epochs"], tune.search.sample.Integer)
    assert (p["train.epochs"].lower, p["train.epochs"].upper) == (1, 4)
    assert p["train.scheduler"].categories == ["linear", "cosine"]
    assert p["train.grad_accum"] == tune.grid_search([1, 2])


def test_callback_closes_the_runs_tune_ended(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = MlflowTracker(uri)
    exp = t.experiment_id("e")
    parent = t.start_sweep(exp, "s", "")
    stopped, crashed, done = (t.trial_run(exp, parent, i, i) for i in ("a", "b", "c"))
    t.finish(done, "FINISHED")
    cb = CloseTrialRuns(uri, parent)
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="a"))
    cb.on_trial_error(0, [], SimpleNamespace(trial_id="b"))
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="c"))
    status = {r.data.tags["raymix.trial_id"]: r.info.status for r in t.trial_runs(parent)}
    assert status == {"a": "KILLED", "b": "FAILED", "c": "FINISHED"}
    assert stopped and crashed
