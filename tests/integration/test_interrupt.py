"""Ctrl-C and SIGTERM during a real sweep: the trials stop, every MLflow run is closed KILLED (none
stays RUNNING), the exit status is 128 + the signal, and the printed command resumes the sweep
into the same parent and child runs."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start(tmp: Path) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    raw = tiny_experiment(
        name="stopme",
        mixture={"grid": {"math": {"math": 240}, "both": {"math": 120, "code": 120}}},
        train={
            "lr": 3e-3,
            "micro_batch_size": 8,
            "max_length": 128,
            "epochs": 3,
            "log_every": 2,
            "report_every": 5,
            "eval_every": 30,
        },  # fmt: skip
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [{"name": "heldout", "limit": 8}], "max_new_tokens": 16},
        sweep={"storage_path": str(tmp / "runs"), "max_concurrent_trials": 1},
    )
    (tmp / "exp.yaml").write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymix", "sweep", "exp.yaml"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, uri, env


def _runs(uri: str) -> list:  # type: ignore[type-arg]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("stopme")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=100)


def _wait_for_training(proc: subprocess.Popen[str], uri: str, timeout: float = 600) -> None:
    """Until a trial's run has logged training steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for run in _runs(uri):
            if run.data.tags.get("raymix.role") == "trial" and "train/loss" in run.data.metrics:
                return
        time.sleep(2)
    raise AssertionError("no trial started training")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_trial_closes_every_run_and_the_sweep_resumes(
    sig: signal.Signals, tmp_path: Path
) -> None:
    proc, uri, env = _start(tmp_path)
    try:
        _wait_for_training(proc, uri)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-5000:]
    runs = _runs(uri)
    assert [r.info.status for r in runs if r.data.tags.get("raymix.role") == "sweep"] == ["KILLED"]
    trials = [r for r in runs if r.data.tags.get("raymix.role") == "trial"]
    assert trials and all(r.info.status != "RUNNING" for r in trials), [
        r.info.status for r in trials
    ]
    assert "KILLED" in {r.info.status for r in trials}
    resume = [line for line in err.splitlines() if line.startswith("Resume it with:")]
    assert len(resume) == 1, err[-3000:]
    # raymix's own process prints no traceback (Ray's actors may log their teardown)
    assert not [line for line in err.splitlines() if line.startswith("Traceback")], err[-5000:]
    if sig != signal.SIGINT:
        return

    argv = shlex.split(resume[0].removeprefix("Resume it with:"))
    assert argv[:2] == ["raymix", "sweep"]
    done = subprocess.run(
        [sys.executable, "-m", "raymix", *argv[1:]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    runs = _runs(uri)
    parents = [r for r in runs if r.data.tags.get("raymix.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("raymix.role") == "trial"]
    assert [p.info.status for p in parents] == ["FINISHED"], "resumed into the same parent run"
    assert len(trials) == 2, "one child run per trial, none duplicated by the resume"
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.params["mixture.name"] for r in trials} == {"math", "both"}
