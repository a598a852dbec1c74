"""The tracker on real MLflow stores: absolute URIs for Ray workers, one child run per trial
(a resumed trial continues its own), params batched and cut to MLflow's limit, asynchronous
metrics that land by ``close``, and an HTTP store that comes up late reached through the MLflow
client's own retries."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from raymix.tracking import MetricLogger, MlflowTracker, resolve_uri


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
    t.log_params(run, params)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_an_http_store_that_comes_up_late_is_reached_by_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``mlflow server`` started a few seconds after the first request: the tracker's
    calls go through MLflow's HTTP retries (backoff set by MLFLOW_HTTP_REQUEST_* variables)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []

    def start_late() -> None:
        time.sleep(2)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        with pytest.raises(ConnectionRefusedError):  # no server yet when the first call goes out
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        t = MlflowTracker(f"http://127.0.0.1:{port}")
        exp = t.experiment_id("late")  # the first call finds no server, retries until it is up
        parent = t.start_sweep(exp, "sweep", "name: late\n")
        assert t.client.get_run(parent).data.tags["raymix.role"] == "sweep"
        assert procs, "the server was started by the thread, after the first call"
    finally:
        starter.join()
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
