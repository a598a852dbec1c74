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
from raymix.tracking.mlflow_tracker import STOPPED_AT_TAG, STOPPED_TAG
from raymix.train.loop import TRAINED
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
    p = param_space(cfg)
    assert list(p) == ["point", *sorted(k for k in p if k != "point")]  # stable order
    assert p["point"] == tune.grid_search(
        [{"mixture": m, "train.grad_accum": g} for m in ("math", "both") for g in (1, 2)]
    )
    assert isinstance(p["train.lr"], tune.search.sample.Float)
    assert isinstance(p["train.lr"].sampler, tune.search.sample.LogUniform)
    assert (p["train.lr"].lower, p["train.lr"].upper) == (1e-4, 1e-2)
    assert isinstance(p["train.warmup_ratio"].sampler, tune.search.sample.Uniform)
    assert isinstance(p["train.epochs"], tune.search.sample.Integer)
    assert (p["train.epochs"].lower, p["train.epochs"].upper) == (1, 4)
    assert p["train.scheduler"].categories == ["linear", "cosine"]


def test_callback_closes_the_runs_tune_ended(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = MlflowTracker(uri)
    exp = t.experiment_id("e")
    parent = t.start_sweep(exp, "s", "")
    stopped, crashed, done = (t.trial_run(exp, parent, i, i) for i in ("a", "b", "c"))
    t.finish(done, "FINISHED")
    cut_after_training = t.trial_run(exp, parent, "d", "d")
    failed_as_it_stopped = t.trial_run(exp, parent, "e", "e")
    t.finish(failed_as_it_stopped, "FAILED")  # its driver's fit raised as Tune tore it down
    cb = CloseTrialRuns(uri, parent)
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="a", last_result={"step": 50}))
    cb.on_trial_error(0, [], SimpleNamespace(trial_id="b", last_result={}))
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="c", last_result={"step": 90}))
    last = {"step": 90, TRAINED: 1.0}
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="d", last_result=last))
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="e", last_result={"step": 6}))
    runs = {r.data.tags["raymix.trial_id"]: r for r in t.trial_runs(parent)}
    status = {k: r.info.status for k, r in runs.items()}
    assert status == {"a": "KILLED", "b": "FAILED", "c": "FINISHED", "d": "FINISHED", "e": "KILLED"}
    assert runs["e"].data.tags[STOPPED_TAG] == "true"
    assert runs["a"].data.tags[STOPPED_TAG] == "true"
    assert runs["a"].data.tags[STOPPED_AT_TAG] == "50"
    assert all(STOPPED_TAG not in runs[k].data.tags for k in "bcd")
    assert stopped and crashed and cut_after_training and failed_as_it_stopped
