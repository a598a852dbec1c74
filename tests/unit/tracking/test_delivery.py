"""Delivery through MLflow outages, against a real ``mlflow server`` stopped and started again on
the same port and store: records wait (training does not), the run folder's spool grows by
appending, and what the server missed lands once, by retry or by ``raymix sync``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raymix.tracking import MlflowTracker
from raymix.tracking.delivery import (
    Courier,
    Record,
    deliver_spool,
    metrics_record,
    params_record,
    spooled_runs,
    transient,
)
from tests.conftest import ROOT
from tests.mlflow_server import MlflowServer, free_port


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # each attempt fails at once while the server is down: the courier's own backoff retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    s = MlflowServer(tmp_path)
    s.start()
    yield s
    s.stop()


def _run(uri: str) -> str:
    t = MlflowTracker(uri)
    exp = t.experiment_id("outage")
    return t.trial_run(exp, t.start_sweep(exp, "sweep", "name: outage\n"), "t1", "t1")


def _steps(uri: str, run_id: str, key: str = "train/loss") -> list[int]:
    return sorted(m.step for m in MlflowTracker(uri).client.get_metric_history(run_id, key))


def _log(courier: Courier, run_id: str, steps: range) -> None:
    for step in steps:
        courier.put(metrics_record(run_id, {"train/loss": 1.0 / (step + 1)}, step))


@pytest.mark.integration
def test_an_outage_spools_by_appending_and_the_records_land_once_the_server_is_back(
    server: MlflowServer, tmp_path: Path
) -> None:
    run_id = _run(server.uri)
    spool = tmp_path / "runs" / "spool"
    courier = Courier(server.uri, str(spool))
    _log(courier, run_id, range(10))
    assert courier.flush(30) and not spool.exists(), "a healthy server: nothing spooled"

    server.stop()
    _log(courier, run_id, range(10, 20))
    courier.put(Record("text", run_id, {"text": "late\n", "name": "notes/late.txt"}))
    assert not courier.flush(3), "the server is down"
    assert courier.outage and courier.failures >= 1
    (first,) = courier.segments
    first_text = Path(first).read_text()
    assert first_text.count("\n") == 1 + 11, "the uri line, then the 11 undelivered records"

    _log(courier, run_id, range(20, 30))
    started = time.monotonic()
    assert not courier.flush(10)
    assert time.monotonic() - started < 5.0, "during an outage a report does not wait its 10 s"
    assert len(courier.segments) == 2, "the second flush appended a segment"
    assert Path(first).read_text() == first_text, "and left the first one as it was"
    assert [p.name for p in sorted((spool / run_id).iterdir())] == [
        Path(s).name for s in courier.segments
    ]

    server.start()
    assert courier.close(120), "the courier's retries got everything through"
    assert not (spool / run_id).exists(), "delivered: the spool is removed"
    assert _steps(server.uri, run_id) == list(range(30)), "each step once, none lost"
    client = MlflowTracker(server.uri).client
    assert Path(client.download_artifacts(run_id, "notes/late.txt", str(tmp_path))).read_text() == (
        "late\n"
    )


@pytest.mark.integration
def test_records_left_when_the_trial_ends_are_delivered_by_raymix_sync(
    server: MlflowServer, tmp_path: Path
) -> None:
    run_id = _run(server.uri)
    folder = tmp_path / "runs"
    courier = Courier(server.uri, str(folder / "spool"))
    courier.put(params_record(run_id, {"train.lr": 0.001, "sources": ["a", "b"]}))
    _log(courier, run_id, range(5))
    assert courier.flush(30)
    server.stop()
    _log(courier, run_id, range(5, 12))
    art = tmp_path / "ckpt"
    art.mkdir()
    (art / "checkpoint.json").write_text('{"path": "/x"}')
    courier.put(Record("artifacts", run_id, {"local_dir": str(art), "path": "checkpoint"}))
    (art / "checkpoint.json").unlink()  # the caller may delete its folder: the courier copied it
    courier.put(Record("terminate", run_id, {"status": "FINISHED"}))
    assert not courier.close(2), "the trial ended during the outage"
    assert spooled_runs(str(folder)) == [f"{folder}/spool/{run_id}"]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "raymix", "sync", str(folder)]
    down = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 1 and "still unreachable" in down.stderr, down.stderr[-3000:]
    assert "Traceback" not in down.stderr
    assert spooled_runs(str(folder)), "kept for the next try"

    server.start()
    up = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    assert "7 metric point(s)" in up.stdout and "0 already in MLflow" in up.stdout, up.stdout
    assert spooled_runs(str(folder)) == [] and not (folder / "spool" / run_id).exists()
    client = MlflowTracker(server.uri).client
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.lr": "0.001", "sources": '["a", "b"]'}
    assert _steps(server.uri, run_id) == list(range(12))
    path = client.download_artifacts(run_id, "checkpoint/checkpoint.json", str(tmp_path / "dl"))
    assert Path(path).read_text() == '{"path": "/x"}'
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing spooled" in again.stdout


def test_a_spool_written_while_records_got_through_delivers_each_point_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points that reached MLflow before the spool was delivered are skipped (a resumed trial's
    spool may overlap what got through); a spool goes to the store it names, or to another."""
    uri = f"sqlite:///{tmp_path}/m.db"
    run_id = _run(uri)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    courier = Courier(closed, str(tmp_path / "runs" / "spool"))
    _log(courier, run_id, range(8))
    assert not courier.close(0.5)
    tracker = MlflowTracker(uri)
    tracker.log(metrics_record(run_id, {"train/loss": -1.0}, 2))
    tracker.log(metrics_record(run_id, {"train/loss": -1.0}, 3))
    done = deliver_spool(str(tmp_path / "runs"), uri)
    assert (done.runs, done.records, done.points, done.skipped_points) == (1, 8, 6, 2)
    history = {m.step: m.value for m in tracker.client.get_metric_history(run_id, "train/loss")}
    assert sorted(history) == list(range(8)) and history[2] == -1.0


def test_only_failures_retrying_may_cure_are_transient() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2 as codes

    assert transient(ConnectionError("refused"))
    assert transient(MlflowException("busy", error_code=codes.TEMPORARILY_UNAVAILABLE))
    assert transient(MlflowException("500 from the server"))  # INTERNAL_ERROR
    assert not transient(MlflowException("bad value", error_code=codes.INVALID_PARAMETER_VALUE))
    assert not transient(MlflowException("no run", error_code=codes.RESOURCE_DOES_NOT_EXIST))
    assert not transient(KeyboardInterrupt())


def test_the_spools_of_two_writers_of_one_run_are_delivered_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's driver and its rank 0 spool records of the same run side by side (neither
    overwrites the other); sync delivers both, the run's end last."""
    uri = f"sqlite:///{tmp_path}/m.db"
    run_id = _run(uri)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    spool = str(tmp_path / "runs" / "spool")
    driver, rank0 = Courier(closed, spool), Courier(closed, spool)
    driver.put(params_record(run_id, {"train.lr": 0.5}))
    driver.put(Record("terminate", run_id, {"status": "FINISHED"}))
    _log(rank0, run_id, range(6))
    assert not driver.close(0.5) and not rank0.close(0.5)
    assert len(list((tmp_path / "runs" / "spool" / run_id).glob("*.jsonl"))) == 2
    done = deliver_spool(str(tmp_path / "runs"), uri)
    assert (done.runs, done.records, done.points) == (1, 8, 6)
    run = MlflowTracker(uri).client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"train.lr": "0.5"}
    assert _steps(uri, run_id) == list(range(6))
