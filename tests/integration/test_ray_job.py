"""The README's cluster path on one machine: a real ``ray start --head`` on 127.0.0.1 with token
authentication on, a real ``mlflow server`` over PostgreSQL (cluster.yaml's durable store), and the README's ``ray job submit`` command run as
written from a user's clone. A second job is stopped mid-trial with ``ray job stop``: its MLflow
runs end KILLED, none RUNNING."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, shutdown_in_process_ray
from tests.integration.sweeps import small_experiment
from tests.mlflow_server import MlflowServer, free_port
from tests.postgres import Postgres, postgres_bin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
NAME = "jobtest"
DASHBOARD = "http://127.0.0.1:8265"


def readme_submit() -> list[str]:
    """The README's ``ray job submit`` command (its "On a cluster" section), as argv."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## On a cluster") : text.index("## The experiment file")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    (command,) = [b for b in blocks if b.startswith("ray job submit")]
    return shlex.split(command.replace("\\\n", " "))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    shutdown_in_process_ray()  # the teardown's `ray stop --force` would take it down
    tmp = tmp_path_factory.mktemp("job")
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # the durable store cluster.yaml's head runs: PostgreSQL (sqlite where it is not installed)
    pg = Postgres() if postgres_bin() else None
    if pg is not None:
        pg.start()
    server = MlflowServer(tmp, backend_store_uri=pg.uri if pg else None)
    server.start()
    home = tmp / "home"
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    path = f"{BIN}{os.pathsep}{base['PATH']}"
    # what the head node's `ray start` has (cluster.yaml): the token, where MLflow is
    head_env = {**base, **auth, "PATH": path, "MLFLOW_TRACKING_URI": server.uri,
                "RAYMIX_HOME": str(home)}  # fmt: skip
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
             f"--port={free_port()}", "--dashboard-host=127.0.0.1", "--dashboard-port=8265",
             "--num-cpus=3", "--disable-usage-stats"]  # fmt: skip
    subprocess.run(start, env=head_env, check=True, capture_output=True, timeout=180)
    clone = tmp / "clone"  # the user's clone: the working dir the job uploads
    (clone / "experiments").mkdir(parents=True)
    grid = {"both": {"math": 240, "code": 240}}
    raw = small_experiment(NAME, grid, epochs=3, log_every=2, eval_every=30)
    (clone / "experiments" / "quickstart.yaml").write_text(yaml.safe_dump(raw))
    client_env = {**base, **auth, "PATH": path}  # the user's machine: the token only
    try:
        yield {"server": server, "home": home, "clone": clone, "env": client_env, "tmp": tmp}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
        server.stop()
        if pg is not None:
            pg.stop()


def _sweeps(server: MlflowServer) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(NAME)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return [r for r in runs if r.data.tags.get("raymix.role") == "sweep"]


def _trials(server: MlflowServer, parent: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(NAME)
    return client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )


def test_the_cluster_refuses_a_client_without_the_token(cluster: dict) -> None:
    env = {k: v for k, v in cluster["env"].items() if not k.startswith("RAY_AUTH")}
    out = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", DASHBOARD],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert re.search(r"auth|401|unauthori", out.stdout + out.stderr, re.I), out.stderr[-2000:]


def test_the_readme_submit_command_runs_a_sweep_as_written(cluster: dict) -> None:
    argv = readme_submit()
    assert argv[:3] == ["ray", "job", "submit"] and DASHBOARD in argv
    done = subprocess.run(
        argv, cwd=cluster["clone"], env=cluster["env"], capture_output=True, text=True,
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-5000:], done.stderr[-3000:])
    assert "succeeded" in done.stdout.lower(), done.stdout[-3000:]
    (parent,) = _sweeps(cluster["server"])
    assert parent.info.status == "FINISHED"
    trials = _trials(cluster["server"], parent.info.run_id)
    assert [t.info.status for t in trials] == ["FINISHED"]
    assert "eval/loss/mean" in trials[0].data.metrics
    # the run folder and its checkpoints persist under $RAYMIX_HOME, not in the job's
    # temporary working directory
    runs = cluster["home"] / "raymix_runs"
    folders = [p for p in runs.iterdir() if p.name.startswith(f"{NAME}-")]
    assert len(folders) == 1, list(runs.iterdir())
    assert list(folders[0].rglob("checkpoint_*")), "Ray Train checkpoints in the run folder"
    assert not list(cluster["clone"].rglob("raymix_runs")), "nothing written into the clone"


def test_ray_job_stop_mid_trial_leaves_every_run_killed(cluster: dict) -> None:
    argv = readme_submit()
    argv.insert(3, "--no-wait")
    before = {r.info.run_id for r in _sweeps(cluster["server"])}
    out = subprocess.run(
        argv, cwd=cluster["clone"], env=cluster["env"], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (job_id,) = set(re.findall(r"raysubmit_\w+", out.stdout + out.stderr))
    deadline = time.monotonic() + 600
    parent = None
    while time.monotonic() < deadline:
        fresh = [r for r in _sweeps(cluster["server"]) if r.info.run_id not in before]
        if fresh:
            parent = fresh[0].info.run_id
            if any("train/loss" in t.data.metrics for t in _trials(cluster["server"], parent)):
                break
        time.sleep(2)
    else:
        raise AssertionError("the second job never started training")
    ray = str(BIN / "ray")
    stopped_at = time.monotonic()
    subprocess.run(
        [ray, "job", "stop", "--address", DASHBOARD, job_id],
        env=cluster["env"], check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    status = ""
    while time.monotonic() < stopped_at + 300:
        out = subprocess.run(
            [ray, "job", "status", "--address", DASHBOARD, job_id],
            env=cluster["env"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        status = out.stdout + out.stderr  # the CLI logs the status line to stderr
        if re.search(r"\bstopped\b", status, re.I):
            break
        time.sleep(2)
    assert re.search(r"\bstopped\b", status, re.I), status
    print(f"ray job stop: the job stopped in {time.monotonic() - stopped_at:.1f} s")
    assert parent is not None
    (run,) = [r for r in _sweeps(cluster["server"]) if r.info.run_id == parent]
    trials = _trials(cluster["server"], parent)
    assert run.info.status == "KILLED", run.info.status
    assert trials and {t.info.status for t in trials} == {"KILLED"}, [t.info.status for t in trials]
