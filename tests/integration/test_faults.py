"""Faults injected into real sweeps (local Ray, CPU DeepSpeed, a real MLflow store): a train worker
SIGKILLed mid-stage resumes from the mid-stage checkpoint and ends exactly where an uninterrupted
twin ends; a SIGKILLed driver's sweep is finished by ``--resume`` without running a trial twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.sweeps import runs, start_sweep, write_sweep
from tests.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = {"math": 240, "code": 240}
CHECKPOINT_EVERY = 10
OUTAGE_S = 20


def _experiment(tmp: Path, name: str, grid: dict[str, Any], epochs: int) -> dict[str, str]:
    return write_sweep(
        tmp, name, grid,
        epochs=epochs, log_every=1, eval_every=15, checkpoint_every=CHECKPOINT_EVERY,
    )  # fmt: skip


def _client(env: dict[str, str]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def _wait_for_step(
    proc: subprocess.Popen[str], env: dict[str, str], name: str, mixture: str, step: int
) -> None:
    """Until the trial of ``mixture`` has logged train/loss at ``step`` or later."""
    client = _client(env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-5000:]
        for run in runs(env, name, "trial"):
            if run.data.params.get("mixture.name") != mixture:
                continue
            history = client.get_metric_history(run.info.run_id, "train/loss")
            if history and max(m.step for m in history) >= step:
                return
        time.sleep(0.2)
    raise AssertionError(f"trial {mixture} never reached step {step}")


def _train_workers() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::RayTrainWorker"):
            found.append(p)
    return found


def _one_point_per_step(client: Any, run: Any) -> dict[str, list[tuple[int, float]]]:
    """Every metric series of ``run`` as (step, value), asserting no step appears twice."""
    series = {}
    for key in run.data.metrics:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        steps = [s for s, _ in history]
        assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {steps}"
        series[key] = history
    return series


def test_a_worker_killed_mid_stage_resumes_from_its_checkpoint_and_ends_identical(
    tmp_path: Path,
) -> None:
    """Two trials with the same plan, one after the other; the second loses a worker to SIGKILL
    between two mid-stage checkpoints. Ray Train restarts its workers, they resume from the
    latest checkpoint, and every logged value (train loss per step, held-out losses) equals the
    untouched twin's: the resume restored model, optimizer, schedule, RNG and data position."""
    name = "workerkill"
    env = _experiment(tmp_path, name, {"first": SPEC, "again": SPEC}, epochs=3)
    proc = start_sweep(tmp_path, env)
    kill_after = 2 * CHECKPOINT_EVERY + 3  # replays 3 logged steps after the resume
    try:
        _wait_for_step(proc, env, name, "again", kill_after)
        workers = _train_workers()
        assert len(workers) == 2, [w.cmdline() for w in workers]
        killed_at = time.monotonic()
        workers[-1].send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=900)
        finished_at = time.monotonic()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-8000:]
    client = _client(env)
    trials = {r.data.params["mixture.name"]: r for r in runs(env, name, "trial")}
    assert sorted(trials) == ["again", "first"], "one child run per trial after the restart"
    assert {r.info.status for r in trials.values()} == {"FINISHED"}
    first = _one_point_per_step(client, trials["first"])
    again = _one_point_per_step(client, trials["again"])
    resumed = again.pop("train/resumed_at_step")
    assert len(resumed) == 1 and resumed[0][1] % CHECKPOINT_EVERY == 0, resumed
    assert CHECKPOINT_EVERY <= resumed[0][1] <= kill_after, "resumed mid-stage, not from step 0"
    for key, points in first.items():
        if key.startswith(("time/", "train/tokens_per_s")):
            continue
        assert key in again, key
        assert [s for s, _ in again[key]] == [s for s, _ in points], key
        for (step, a), (_, b) in zip(points, again[key], strict=True):
            assert b == pytest.approx(a, rel=1e-6, abs=1e-6), (key, step, a, b)
    # train.keep_checkpoints (2): of the untouched trial's 9 checkpoints, Ray Train keeps the
    # latest 2 (its checkpoint manager's record; a checkpoint it never registered can be left
    # on disk beside them)
    trial_id = trials["first"].data.tags["raymix.trial_id"]
    (snapshot,) = (tmp_path / "runs").glob(f"{name}-*/train_runs/{trial_id}/*snapshot.json")
    kept = json.loads(snapshot.read_text())["checkpoint_results"]
    assert [c["metrics"]["step"] for c in kept] == [80, 90]
    assert all((snapshot.parent / c["checkpoint_dir_name"]).is_dir() for c in kept)
    print(f"worker kill: recovered and finished in {finished_at - killed_at:.1f} s")


def test_a_killed_driver_is_finished_by_resume_without_running_a_trial_twice(
    tmp_path: Path,
) -> None:
    name = "driverkill"
    env = _experiment(tmp_path, name, {"one": SPEC, "two": {"math": 240}}, epochs=2)
    proc = start_sweep(tmp_path, env)
    try:
        _wait_for_step(proc, env, name, "two", CHECKPOINT_EVERY + 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    _wait_for_ray_to_exit()
    (parent,) = runs(env, name, "sweep")
    assert parent.info.status == "RUNNING", "a killed driver cannot close its runs"

    started = time.monotonic()
    resume = start_sweep(tmp_path, env, "--resume")
    out, err = resume.communicate(timeout=1200)
    assert resume.returncode == 0, err[-8000:]
    client = _client(env)
    (parent,) = runs(env, name, "sweep")
    assert parent.info.status == "FINISHED", "resumed into the same parent run"
    trials = {r.data.params["mixture.name"]: r for r in runs(env, name, "trial")}
    assert sorted(trials) == ["one", "two"], "no trial ran twice"
    assert {r.info.status for r in trials.values()} == {"FINISHED"}
    one = _one_point_per_step(client, trials["one"])
    assert "train/resumed_at_step" not in one, "the finished trial was not run again"
    two = _one_point_per_step(client, trials["two"])
    (resumed,) = two["train/resumed_at_step"]
    assert resumed[1] >= CHECKPOINT_EVERY, "the unfinished trial went on from its checkpoint"
    print(f"driver kill: --resume finished the sweep in {time.monotonic() - started:.1f} s")


def _wait_for_ray_to_exit(timeout: float = 60) -> None:
    """The killed driver's local Ray cluster is reaped (Ray's process reaper) before resuming."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _train_workers():
        time.sleep(1)


def test_an_mlflow_server_down_longer_than_its_retries_loses_no_metric_point(
    tmp_path: Path,
) -> None:
    """The real tracking server stops mid-trial for 20 s, far past MLflow's own HTTP retries
    (one retry, about 1 s, here), and comes back: training goes on meanwhile, and at the end the
    trial's run holds every step's train/loss exactly once, and is FINISHED."""
    name = "outage"
    server = MlflowServer(tmp_path)
    server.start()
    env = _experiment(tmp_path, name, {"only": SPEC}, epochs=8)
    env |= {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    proc = start_sweep(tmp_path, env)
    try:
        _wait_for_step(proc, env, name, "only", 3)
        server.stop()
        down_ms = time.time() * 1000
        time.sleep(OUTAGE_S)
        up_ms = time.time() * 1000
        assert proc.poll() is None, proc.communicate()[1][-5000:]
        server.start()
        back_at = time.monotonic()
        out, err = proc.communicate(timeout=900)
        done_at = time.monotonic()
    finally:
        proc.kill()
        server.stop()
    assert proc.returncode == 0, err[-8000:]
    server.start()
    try:
        client = _client(env)
        (run,) = runs(env, name, "trial")
        assert run.info.status == "FINISHED"
        series = _one_point_per_step(client, run)
        total = int(run.data.metrics["train/total_steps"])
        assert [s for s, _ in series["train/loss"]] == list(range(1, total + 1)), "none lost"
        during = [m for m in client.get_metric_history(run.info.run_id, "train/loss")
                  if down_ms < m.timestamp < up_ms]  # fmt: skip
        assert len(during) >= 5, "training went on while MLflow was down"
        assert "spool" not in err or "raymix sync" not in err, "everything was delivered"
    finally:
        server.stop()
    print(f"mlflow outage: {OUTAGE_S} s down, nothing lost; the sweep ended "
          f"{done_at - back_at:.1f} s after the server came back")  # fmt: skip
