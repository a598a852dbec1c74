"""The tracker on real MLflow stores: absolute URIs for Ray workers, one child run per trial
(a resumed trial continues its own), params batched and cut to MLflow's limit, asynchronous
metrics that land by ``close``, and an HTTP store that comes up late reached through the MLflow
client's own retries."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from raymix.tracking import MetricLogger, MlflowTracker, resolve_uri, ui_hint
from raymix.tracking.delivery import params_record
from tests.mlflow_server import MlflowServer


def test_resolve_uri_makes_stores_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path}/rel/x.db"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_uri("runs") == (tmp_path / "runs").as_uri()
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/env.db"


def test_a_resumed_trial_continues_its_own_run(tmp_path: Path) -> None:
    t = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db")
    exp = t.experiment_id("e")
    assert t.experiment_id("e") == exp
    parent = t.start_sweep(exp, "sweep", "name: e\n")
    first = t.trial_run(exp, parent, "trial_1", "trial_1")
    t.finish(first, "FAILED")
    assert t.trial_run(exp, parent, "trial_1", "trial_1") == first  # resumed: same run
    assert t.client.get_run(first).info.status == "RUNNING"
    second = t.trial_run(exp, parent, "trial_2", "trial_2")
    assert [r.info.run_id for r in t.trial_runs(parent)] == [first, second]
    run = t.client.get_run(first)
    assert run.data.tags["raymix.role"] == "trial" and run.data.tags["mlflow.parentRunId"] == parent


def test_params_are_batched_and_cut_to_mlflows_limit(tmp_path: Path) -> None:
    t = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db")
    run = t.trial_run(t.experiment_id("e"), t.start_sweep(t.experiment_id("e"), "s", ""), "a", "a")
    params = {f"p.{i:03d}": i for i in range(250)} | {"long": "x" * 10_000, "list": [1, 2]}
    t.log(params_record(run, params))
    got = t.client.get_run(run).data.params
    assert len(got) == 252 and got["p.249"] == "249" and got["list"] == "[1, 2]"
    assert len(got["long"]) == 6000 and got["long"].endswith("...")


def test_async_metrics_land_by_close(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = MlflowTracker(uri)
    run = t.trial_run(t.experiment_id("e"), t.start_sweep(t.experiment_id("e"), "s", ""), "a", "a")
    logger = MetricLogger(uri, run)
    for step in range(20):
        logger.log({"train/loss": 1.0 / (step + 1)}, step)
    logger.log_rows([{"i": 1}, {"i": 2}], "eval/x.jsonl")
    logger.close()
    history = t.client.get_metric_history(run, "train/loss")
    assert sorted(m.step for m in history) == list(range(20))
    path = t.client.download_artifacts(run, "eval/x.jsonl", str(tmp_path))
    assert Path(path).read_text() == '{"i": 1}\n{"i": 2}\n'


def test_a_resumed_logger_skips_the_points_the_run_holds(tmp_path: Path) -> None:
    """A trial resumed from its step-10 checkpoint replays steps 11..15 it had logged before it
    died: each series keeps one point per step, and the first attempt's values stay."""
    uri = f"sqlite:///{tmp_path}/m.db"
    t = MlflowTracker(uri)
    run = t.trial_run(t.experiment_id("e"), t.start_sweep(t.experiment_id("e"), "s", ""), "a", "a")
    first = MetricLogger(uri, run, resume=True)  # nothing logged yet: logs everything
    for step in range(16):
        first.log({"train/loss": float(step), "eval/loss/code": 2.0 * step}, step)
    first.close()
    again = MetricLogger(uri, run, resume=True)
    for step in range(11, 30):
        again.log(
            {"train/loss": -1.0 if step < 16 else float(step), "train/resumed_at_step": 10}, step
        )
    again.close()
    loss = t.client.get_metric_history(run, "train/loss")
    assert sorted(m.step for m in loss) == list(range(30))
    assert {m.step: m.value for m in loss}[13] == 13.0, "the first attempt's point stays"
    assert len(t.client.get_metric_history(run, "train/resumed_at_step")) == 19
    plain = MetricLogger(uri, run)  # resume=False logs what it is given
    plain.log({"train/loss": 5.0}, 5)
    plain.close()
    assert len([m for m in t.client.get_metric_history(run, "train/loss") if m.step == 5]) == 2


def test_ui_hint_fits_each_kind_of_store() -> None:
    assert ui_hint("http://head:5000/") == (
        "open http://head:5000 in a browser (the tracking server serves the UI)"
    )
    assert ui_hint("https://mlflow.example.org").startswith("open https://mlflow.example.org ")
    for uri in ("sqlite:////tmp/m.db", "file:///tmp/runs", "postgresql://u@127.0.0.1/mlflow"):
        assert ui_hint(uri) == f"mlflow ui --backend-store-uri {uri}"
    assert "--backend-store-uri" not in ui_hint("http://127.0.0.1:5000")


@pytest.mark.integration
def test_an_http_store_that_comes_up_late_is_reached_by_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``mlflow server`` started a few seconds after the first request: the tracker's
    calls go through MLflow's HTTP retries (backoff set by MLFLOW_HTTP_REQUEST_* variables)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    server = MlflowServer(tmp_path)

    def start_late() -> None:
        time.sleep(2)
        server.start(wait=False)

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        with pytest.raises(ConnectionRefusedError):  # no server yet when the first call goes out
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        t = MlflowTracker(server.uri)
        exp = t.experiment_id("late")  # the first call finds no server, retries until it is up
        parent = t.start_sweep(exp, "sweep", "name: late\n")
        assert t.client.get_run(parent).data.tags["raymix.role"] == "sweep"
        assert server.proc is not None, "the server was started by the thread, after the call"
    finally:
        starter.join()
        server.stop()


def test_a_ray_job_keeps_its_outputs_out_of_its_temporary_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as a Ray job (Ray's supervisor sets RAY_JOB_CONFIG_JSON_ENV_VAR), the default run
    folder, MLflow store and artifacts go under ~/raymix ($RAYMIX_HOME), not the job's CWD."""
    from raymix.config import ExperimentConfig
    from raymix.sweep.tuner import output_locations
    from tests.conftest import tiny_experiment

    job_dir, home = tmp_path / "working_dir_files" / "_ray_pkg_abc", tmp_path / "home"
    job_dir.mkdir(parents=True)
    monkeypatch.chdir(job_dir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAYMIX_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    cfg = ExperimentConfig.model_validate(tiny_experiment(name="j"))
    assert output_locations(cfg)["run folder"].startswith(str(job_dir))  # not a job: the CWD
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {}}')
    where = output_locations(cfg)
    assert where["run folder"] == f"{home}/raymix/raymix_runs/j-<date>-<time>"
    assert where["tracking URI"] == f"sqlite:///{home}/raymix/mlflow.db"
    assert where["artifacts"] == (home / "raymix" / "mlruns" / "j").as_uri()
    assert not (home / "raymix").exists(), "saying where creates nothing"
    (home / "raymix").mkdir(parents=True)
    t = MlflowTracker(where["tracking URI"])
    exp = t.client.get_experiment(t.experiment_id("j"))
    assert exp.artifact_location == (home / "raymix" / "mlruns" / "j").as_uri()
    monkeypatch.setenv("RAYMIX_HOME", str(tmp_path / "elsewhere"))
    assert output_locations(cfg)["tracking URI"] == f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
