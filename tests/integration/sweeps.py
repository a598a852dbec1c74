"""Small real sweeps that the integration tests start, interrupt and resume as a user would: the
CLI in a subprocess, two CPU DeepSpeed workers per trial, one trial at a time, and a sqlite MLflow
store chosen through $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, tiny_experiment


def small_experiment(
    name: str, grid: dict[str, Any], storage: str | None = None, **train: Any
) -> dict[str, Any]:
    """A sweep of the mixtures of ``grid``, one trial at a time on two CPU workers (``train``
    overrides the train keys; ``storage``: its sweep.storage_path, else the default)."""
    sweep: dict[str, Any] = {"max_concurrent_trials": 1}
    if storage:
        sweep["storage_path"] = storage
    return tiny_experiment(
        name=name,
        mixture={"grid": grid},
        train={"lr": 3e-3, "micro_batch_size": 8, "max_length": 128, "report_every": 5, **train},
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [{"name": "heldout", "limit": 8}], "max_new_tokens": 16},
        sweep=sweep,
    )


def write_sweep(
    tmp: Path, name: str, grid: dict[str, Any], storage: str | None = None, **train: Any
) -> dict[str, str]:
    """``tmp/exp.yaml`` for :func:`small_experiment` (its run folders in ``storage``, default
    ``tmp/runs``), and the environment its sweep runs in (MLflow in ``tmp/mlflow.db``)."""
    raw = small_experiment(name, grid, storage or str(tmp / "runs"), **train)
    (tmp / "exp.yaml").write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}


def start_sweep(tmp: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``raymix sweep exp.yaml ARGS`` in ``tmp``, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "raymix", "sweep", "exp.yaml", *args],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def runs(env: dict[str, str], name: str, role: str | None = None) -> list[Any]:
    """The MLflow runs of experiment ``name`` (only its ``sweep`` or ``trial`` runs if given)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(name)
    found = [] if exp is None else client.search_runs([exp.experiment_id], max_results=100)
    return [r for r in found if role is None or r.data.tags.get("raymix.role") == role]


def refused_sweep(tmp: Path, env: dict[str, str]) -> str:
    """``raymix sweep exp.yaml`` in ``tmp`` that must be refused as a user error: exit 2, no
    traceback, one ``raymix: error:`` line, which is returned."""
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", "exp.yaml"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("raymix: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]
