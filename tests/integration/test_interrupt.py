"""Ctrl-C and SIGTERM during a real sweep: the trials stop, every MLflow run is closed KILLED (none
stays RUNNING), the exit status is 128 + the signal, and the printed command resumes the sweep
into the same parent and child runs."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.sweeps import runs, start_sweep, write_sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _start(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    grid = {"math": {"math": 240}, "both": {"math": 120, "code": 120}}
    env = write_sweep(tmp, "stopme", grid, epochs=3, log_every=2, eval_every=30)
    return start_sweep(tmp, env), env


def _wait_for_training(
    proc: subprocess.Popen[str], env: dict[str, str], timeout: float = 600
) -> None:
    """Until a trial's run has logged training steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for run in runs(env, "stopme", "trial"):
            if "train/loss" in run.data.metrics:
                return
        time.sleep(2)
    raise AssertionError("no trial started training")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_trial_closes_every_run_and_the_sweep_resumes(
    sig: signal.Signals, tmp_path: Path
) -> None:
    proc, env = _start(tmp_path)
    try:
        _wait_for_training(proc, env)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-5000:]
    found = runs(env, "stopme")
    assert [r.info.status for r in found if r.data.tags.get("raymix.role") == "sweep"] == ["KILLED"]
    trials = [r for r in found if r.data.tags.get("raymix.role") == "trial"]
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
    found = runs(env, "stopme")
    parents = [r for r in found if r.data.tags.get("raymix.role") == "sweep"]
    trials = [r for r in found if r.data.tags.get("raymix.role") == "trial"]
    assert [p.info.status for p in parents] == ["FINISHED"], "resumed into the same parent run"
    assert len(trials) == 2, "one child run per trial, none duplicated by the resume"
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.params["mixture.name"] for r in trials} == {"math", "both"}
