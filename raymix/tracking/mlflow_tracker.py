"""MLflow, laid out as the README's "What lands in MLflow" says: one parent run per sweep, one child run per trial.

Only ``MlflowClient`` is used, never the fluent ``mlflow.set_experiment`` (it exports
MLFLOW_EXPERIMENT_ID to every Ray worker). Workers log metrics from rank 0 asynchronously.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROLE, TRIAL_ID, PARENT = "raymix.role", "raymix.trial_id", "mlflow.parentRunId"
CHECKPOINT_TAG = "raymix.checkpoint"
STOPPED_TAG = "raymix.stopped_early"
"""'true' on a trial the scheduler stopped before its last step."""
STOPPED_AT_TAG = "raymix.stopped_at_step"
_MAX_PARAM_LEN = 6000


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use everywhere, made absolute so Ray workers (whose CWD is a session
    folder) reach the same store: the given URI, else $MLFLOW_TRACKING_URI, else
    ``sqlite:///<cwd>/mlflow.db``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if "://" not in uri:  # a plain folder: MLflow's file store
        return Path(uri).resolve().as_uri()
    if uri.startswith("file://"):
        return Path(uri[len("file://") :]).resolve().as_uri()
    return uri


class MlflowTracker:
    """Parent and child runs of one sweep in one MLflow experiment."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        return str(self.client.create_experiment(name))

    def start_sweep(self, experiment_id: str, run_name: str, config_yaml: str) -> str:
        """A parent run with the resolved YAML as ``config.yaml``; returns its id."""
        run = self.client.create_run(experiment_id, run_name=run_name, tags={ROLE: "sweep"})
        self.client.log_text(run.info.run_id, config_yaml, "config.yaml")
        return str(run.info.run_id)

    def trial_run(self, experiment_id: str, parent_id: str, trial_id: str, run_name: str) -> str:
        """The child run of ``trial_id``: the existing one when the trial resumes, else a new one."""
        found = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT}` = '{parent_id}' and tags.`{TRIAL_ID}` = '{trial_id}'",
            max_results=1,
        )
        if found:
            run_id = str(found[0].info.run_id)
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {ROLE: "trial", PARENT: parent_id, TRIAL_ID: trial_id}
        return str(self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params in batches (values stringified, long ones cut to MLflow's limit)."""
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_json(self, run_id: str, obj: Any, name: str) -> None:
        """A JSON artifact (the manifest)."""
        self.client.log_text(run_id, json.dumps(obj, indent=1, sort_keys=True), name)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """A text artifact."""
        self.client.log_text(run_id, text, name)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Synchronous metrics (the driver's final ones)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run with FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)

    def trial_runs(self, parent_id: str) -> list[Any]:
        """Every child run of a sweep, oldest first."""
        parent = self.client.get_run(parent_id)
        return list(
            self.client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.`{PARENT}` = '{parent_id}'",
                order_by=["attributes.start_time ASC"],
                max_results=10_000,
            )
        )


class MetricLogger:
    """Rank 0's asynchronous per-step metrics for one run; ``close`` waits for them to land."""

    def __init__(self, uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = run_id
        self._pending: list[Any] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        op = self.client.log_batch(self.run_id, metrics=batch, synchronous=False)
        if op is not None:
            self._pending.append(op)

    def log_rows(self, rows: list[dict[str, Any]], name: str) -> None:
        """A jsonl artifact (per-sample evaluation results)."""
        text = "".join(json.dumps(r, default=str) + "\n" for r in rows)
        self.client.log_text(self.run_id, text, name)

    def log_artifacts(self, local_dir: str, path: str) -> None:
        self.client.log_artifacts(self.run_id, local_dir, path)

    def flush(self) -> None:
        """Wait until every metric logged so far has landed."""
        for op in self._pending:
            op.wait()
        self._pending.clear()

    def close(self) -> None:
        self.flush()


def _param_str(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."
