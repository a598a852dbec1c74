"""What is checked before a sweep's first trial, against real services: a real ``mlflow server``
answers the tracking check and a stopped one is refused at once; a local Ray cluster without GPUs
refuses ``scaling.use_gpu`` with one clear error before any MLflow run exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from raymix.errors import ConfigError
from raymix.sweep.preflight import check_tracking
from tests.conftest import ROOT, shutdown_in_process_ray, tiny_experiment
from tests.integration.sweeps import refused_sweep
from tests.mlflow_server import free_port

pytestmark = [pytest.mark.integration]


def test_a_real_mlflow_server_passes_and_a_stopped_one_is_refused_at_once(tmp_path: Path) -> None:
    port = free_port()
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
    error = refused_sweep(tmp_path, env)
    assert "scaling" in error and "2 GPU" in error and "scaling.use_gpu: false" in error
    assert not (tmp_path / "m.db").exists(), "no MLflow run before the check"
    assert not (tmp_path / "raymix_runs").exists()


def test_auto_workers_fill_the_largest_node_of_a_real_cluster() -> None:
    """``scaling.num_workers: auto`` against a real local Ray node with 3 CPUs and no GPU."""
    import ray

    from raymix.config import ExperimentConfig
    from raymix.sweep.preflight import resolve_workers

    def cfg(**scaling: object) -> ExperimentConfig:
        return ExperimentConfig.model_validate(
            tiny_experiment(scaling={"num_workers": "auto", **scaling})
        )

    shutdown_in_process_ray()
    ray.init(address="local", num_cpus=3, include_dashboard=False)
    try:
        assert resolve_workers(cfg(cpus_per_worker=1), 0.01).scaling.num_workers == 2
        assert resolve_workers(cfg(cpus_per_worker=0.5), 0.01).scaling.num_workers == 5
        fixed = ExperimentConfig.model_validate(tiny_experiment(scaling={"num_workers": 7}))
        assert resolve_workers(fixed, 0.01) is fixed
        with pytest.raises(
            ConfigError, match=r"scaling.num_workers: auto found no node with 1 GPU"
        ):
            resolve_workers(cfg(use_gpu=True), 0.01)
    finally:
        ray.shutdown()
