"""Finished trials read back from MLflow as the mixing law needs them: each trial's shares of
the sources (from its params) and its final metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raymix.analysis.sweeps import resolve
from raymix.errors import ConfigError
from raymix.tracking import MlflowTracker
from raymix.tracking.mlflow_tracker import PARENT


@dataclass
class Trials:
    """Finished trials: ``shares`` (n × M, rows on the simplex) over ``sources``, each trial's
    ``rows`` in all, and for each metric its final value per trial (NaN where not logged)."""

    sources: tuple[str, ...]
    shares: np.ndarray
    rows: np.ndarray
    metrics: dict[str, np.ndarray]
    run_ids: tuple[str, ...]
    pools: dict[str, int]
    """Rows each source's training pool holds (``data.<source>.pool_rows``; absent for sweeps
    made before raymix logged it)."""


def trial_runs(uri: str, sweep: str) -> list[Any]:
    """The FINISHED trial runs of ``sweep``: a parent run id (that sweep's trials) or an
    experiment name (the trials of every sweep in it)."""
    _, runs, _ = resolve(MlflowTracker(uri).client, uri, sweep)
    return sorted((r for r in runs if r.info.status == "FINISHED"), key=lambda r: r.info.start_time)


def read_trials(uri: str, sweep: str) -> Trials:
    """:class:`Trials` of ``sweep``. A trial's shares are its sampled weights
    (``mixture.weight.<source>``) when the sweep searched the simplex, else its rows per source
    (``mixture.<source>``) over their total."""
    runs = [r for r in trial_runs(uri, sweep) if r.data.tags.get(PARENT)]
    sources = sorted(
        {k.split(".")[1] for r in runs for k in r.data.params if k.startswith("sources.")}
    )
    rows, totals, kept = [], [], []
    for r in runs:
        p = r.data.params
        counts = [float(p.get(f"mixture.{s}", 0) or 0) for s in sources]
        weights = [p.get(f"mixture.weight.{s}") for s in sources]
        if all(w is not None for w in weights):
            share = np.array([float(w) for w in weights])  # type: ignore[arg-type]
        else:
            share = np.array(counts)
        if share.sum() <= 0:
            continue
        rows.append(share / share.sum())
        totals.append(sum(counts))
        kept.append(r)
    names = sorted({k for r in kept for k in r.data.metrics})
    metrics = {
        name: np.array([r.data.metrics.get(name, np.nan) for r in kept], dtype=np.float64)
        for name in names
    }
    shares = np.array(rows).reshape(len(rows), len(sources))
    pools = {}
    for s in sources:
        seen = [
            int(v) for r in kept if (v := r.data.params.get(f"data.{s}.pool_rows", "")).isdigit()
        ]
        if seen:
            pools[s] = max(seen)
    return Trials(
        tuple(sources), shares, np.array(totals), metrics, tuple(r.info.run_id for r in kept),
        pools,
    )  # fmt: skip


def sweep_config(uri: str, sweep: str) -> str:
    """The experiment a sweep ran (its parent run's ``config.yaml``); for an experiment name,
    that of its latest sweep."""
    import tempfile
    from pathlib import Path

    client = MlflowTracker(uri).client
    parents, _, _ = resolve(client, uri, sweep)
    if not parents:
        raise ConfigError(f"{sweep!r}: no sweep in MLflow experiment {sweep!r} at {uri}")
    parent = max(parents, key=lambda p: p.info.start_time).info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(parent, "config.yaml", tmp)).read_text()
