"""What is checked before a sweep's first trial, against real services: a real ``mlflow server``
answers the tracking check and a stopped one is refused at once; a local Ray cluster without GPUs
refuses ``scaling.use_gpu`` with one clear error before any MLflow run exists."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from raymix.errors import ConfigError
from raymix.sweep.preflight import check_tracking
from tests.conftest import ROOT, tiny_experiment

pytestmark = [pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_mlflow_server_passes_and_a_stopped_one_is_refused_at_once(tmp_path: Path) -> None:
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(uri + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        check_tracking(uri)  # answers: no error
    finally:
        os.killpg(server.pid, 9)
        server.wait()
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"tracking.uri {uri}: no MLflow tracking server"):
        check_tracking(uri)
    assert time.monotonic() - start < 30  # not MLflow's minutes of retries


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_use_gpu_without_gpus_is_one_clear_error_before_any_run(tmp_path: Path) -> None:
    raw = tiny_experiment(name="nogpu", scaling={"num_workers": 2, "use_gpu": True})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", "exp.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("raymix: error:")]
    assert len(errors) == 1 and "scaling" in errors[0] and "2 GPU" in errors[0], proc.stderr[-3000:]
    assert "scaling.use_gpu: false" in errors[0]
    assert not (tmp_path / "m.db").exists(), "no MLflow run before the check"
    assert not (tmp_path / "raymix_runs").exists()
