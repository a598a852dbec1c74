"""Shared fixtures: the repository root, the optional ../shared/data folder, and tiny experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_token_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests tokenize into their own cache folder, never the user's ~/.cache/raymix."""
    import os

    os.environ["RAYMIX_CACHE"] = str(tmp_path_factory.mktemp("raymix-cache"))


def shutdown_in_process_ray() -> None:
    """Shut down a Ray this pytest process started (in-process sweeps and evaluations). Tests
    that end their own cluster with ``ray stop --force`` call it first: that command stops
    every Ray process on the machine, and a driver whose cluster dies exits its process."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True, scope="session")
def _stop_ray_before_the_summary():  # type: ignore[no-untyped-def]
    """Shut down a Ray started in this process so its workers' last log lines print before
    pytest's summary, not after it."""
    yield
    shutdown_in_process_ray()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when a fresh clone has no such folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"optional data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    """A builtin BPE (vocab 400) trained on 200 rows of each built-in source."""
    from raymix.data import synthetic
    from raymix.data.tokenizer import load_tokenizer, train_builtin

    texts = [
        m["content"]
        for kind in synthetic.KINDS
        for i in range(200)
        for m in synthetic.generate(kind, 0, i, kind)["messages"]
    ]
    return load_tokenizer(train_builtin(texts, 400))


def tiny_experiment(**overrides: Any) -> dict[str, Any]:
    """A small valid experiment as a plain dict (what a YAML file would hold)."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "sources": [
            {
                "name": "math",
                "path": "synthetic:math",
                "ability": "math",
                "size": 300,
                "heldout": 32,
            },
            {
                "name": "code",
                "path": "synthetic:code",
                "ability": "code",
                "size": 300,
                "heldout": 32,
            },
        ],
        "mixture": {"grid": {"math": {"math": 200}, "both": {"math": 100, "code": 0.5}}},
    }
    raw.update(overrides)
    return raw


def run_cli_sweep(
    path: Path, cwd: Path, tracking_uri: str, timeout: int, clean_stderr: bool = False
) -> str:
    """``raymix sweep PATH`` as a user runs it (a subprocess, MLflow chosen through
    $MLFLOW_TRACKING_URI); its stdout, once it has exited 0 (else its output's tails print).
    With ``clean_stderr``, its stderr must carry no traceback and no error line (Python's
    ``ERROR`` or Ray's C++ ``E`` level), from raymix or from Ray."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-10000:])
    assert proc.returncode == 0
    if clean_stderr:
        cpp_error = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ E \d+ \d+\]")
        lines = proc.stderr.splitlines()
        bad = [
            i
            for i, line in enumerate(lines)
            if "Traceback" in line or " ERROR " in line or cpp_error.search(line)
        ]
        context = "\n".join(lines[bad[0] : bad[0] + 40]) if bad else ""  # the whole traceback
        assert bad == [], context
    return proc.stdout
