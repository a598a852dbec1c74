"""A multi-node rehearsal on one machine: a real ``ray start --head`` and a second ``ray start
--address`` node on 127.0.0.1, a sweep whose trial spreads its two workers over both, and the
second node lost mid-trial (its raylet and every process under it SIGKILLed, as a reclaimed spot
instance goes): Ray Train restarts the worker group on what is left, from the last mid-stage
checkpoint, and the trial ends FINISHED with one metric point per step."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.conftest import shutdown_in_process_ray
from tests.integration.sweeps import runs, start_sweep, write_sweep
from tests.mlflow_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
CHECKPOINT_EVERY = 10


@pytest.fixture
def two_nodes(tmp_path: Path):  # type: ignore[no-untyped-def]
    shutdown_in_process_ray()  # the teardown's `ray stop --force` would take it down
    token = tmp_path / "auth_token"  # token authentication on, as cluster.yaml starts nodes
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | auth
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    port, manager_port = free_port(), free_port()
    ray = str(BIN / "ray")
    head = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=3", "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}",
            "--disable-usage-stats"]  # fmt: skip
    second = [ray, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
              "--num-cpus=1", f"--node-manager-port={manager_port}"]  # fmt: skip
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        subprocess.run(second, env=env, check=True, capture_output=True, timeout=180)
        yield {"address": f"127.0.0.1:{port}", "manager_port": manager_port, "auth": auth}
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


def _raylets() -> dict[str, psutil.Process]:
    """Each node's raylet by its node manager port."""
    found = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].endswith("/raylet"):
            port = next(a.split("=", 1)[1] for a in cmd if a.startswith("--node_manager_port="))
            found[port] = p
    return found


def _train_workers_under(raylet: psutil.Process) -> list[psutil.Process]:
    return [
        c
        for c in raylet.children(recursive=True)
        if " ".join(c.cmdline()).startswith("ray::RayTrainWorker")
    ]


def _wait_for_step(proc: subprocess.Popen[str], env: dict[str, str], step: int) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-5000:]
        for run in runs(env, "multinode", "trial"):
            history = client.get_metric_history(run.info.run_id, "train/loss")
            if history and max(m.step for m in history) >= step:
                return run
        time.sleep(0.5)
    raise AssertionError(f"the trial never reached step {step}")


def test_a_trial_spanning_two_nodes_resumes_on_what_is_left_when_one_is_lost(
    two_nodes: dict, tmp_path: Path
) -> None:
    spec = {"math": 240, "code": 240}
    env = write_sweep(tmp_path, "multinode", {"both": spec}, epochs=4, log_every=1,
                      eval_every=30, checkpoint_every=CHECKPOINT_EVERY)  # fmt: skip
    raw = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    raw["scaling"]["placement_strategy"] = "SPREAD"  # one worker on each node
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    env |= two_nodes["auth"]
    proc = start_sweep(tmp_path, env, "--address", two_nodes["address"])
    try:
        _wait_for_step(proc, env, 2 * CHECKPOINT_EVERY + 3)  # well past a registered checkpoint
        raylets = _raylets()
        second = raylets[str(two_nodes["manager_port"])]
        (head,) = [p for port, p in raylets.items() if port != str(two_nodes["manager_port"])]
        assert len(_train_workers_under(second)) == 1, "the trial spans the second node"
        assert len(_train_workers_under(head)) == 1, "and the head"
        lost_at = time.monotonic()
        for p in [*second.children(recursive=True), second]:  # the node goes, all at once
            p.kill()
        out, err = proc.communicate(timeout=1200)
        finished_at = time.monotonic()
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-8000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (trial,) = runs(env, "multinode", "trial")
    assert trial.info.status == "FINISHED"
    resumed = client.get_metric_history(trial.info.run_id, "train/resumed_at_step")
    assert len(resumed) == 1 and resumed[0].value >= CHECKPOINT_EVERY, err[-6000:]
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "train/loss")]
    total = int(trial.data.metrics["train/total_steps"])
    assert sorted(steps) == list(range(1, total + 1)), "one point per step, none lost"
    print(
        f"node lost: the trial resumed on the head and finished {finished_at - lost_at:.1f} s later"
    )
