"""MLflow, laid out as the README's "What lands in MLflow" says: one parent run per sweep, one child run per trial.

Only ``MlflowClient`` is used, never the fluent ``mlflow.set_experiment`` (it exports
MLFLOW_EXPERIMENT_ID to every Ray worker). Trials send their records through a
:class:`~raymix.tracking.delivery.Courier` (in the background, through outages).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raymix.tracking.delivery import Record, send

ROLE, TRIAL_ID, PARENT = "raymix.role", "raymix.trial_id", "mlflow.parentRunId"
CHECKPOINT_TAG = "raymix.checkpoint"
STOPPED_TAG = "raymix.stopped_early"
"""'true' on a trial the scheduler stopped before its last step."""
STOPPED_AT_TAG = "raymix.stopped_at_step"


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in the environment of a job's entrypoint."""


def output_root() -> Path:
    """What relative output paths (the run folder, a local MLflow store) are relative to:
    $RAYMIX_HOME if set; else, run as a Ray job (whose working directory is a temporary copy
    that goes with the job), ``~/raymix``; else the current folder."""
    if os.environ.get("RAYMIX_HOME"):
        return Path(os.environ["RAYMIX_HOME"]).expanduser().resolve()
    if os.environ.get(RAY_JOB_ENV):
        return Path("~/raymix").expanduser().resolve()
    return Path.cwd()


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use everywhere, made absolute so Ray workers (whose CWD is a session
    folder) reach the same store: the given URI, else $MLFLOW_TRACKING_URI, else
    ``sqlite:///<output root>/mlflow.db`` (see :func:`output_root`)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(output_root() / uri[len("sqlite:///") :])
    if "://" not in uri:  # a plain folder: MLflow's file store
        return (output_root() / uri).resolve().as_uri()
    if uri.startswith("file://"):
        return (output_root() / uri[len("file://") :]).resolve().as_uri()
    return uri


def artifact_location(uri: str, name: str, artifact_root: str | None = None) -> str | None:
    """Where a new experiment ``name`` in store ``uri`` keeps its artifacts: for a local store
    (sqlite, a folder) under ``artifact_root`` if given, else under :func:`output_root` when
    that is not the current folder; None: MLflow's default (a tracking server decides)."""
    if not uri.startswith(("sqlite:", "file:")):
        return None
    if artifact_root:
        return f"{artifact_root.rstrip('/')}/{name}"
    if output_root() != Path.cwd():
        return (output_root() / "mlruns" / name).as_uri()
    return None


def ui_hint(uri: str) -> str:
    """How to look at the runs in ``uri`` in the MLflow UI: a tracking server is opened in a
    browser (its own UI serves it); a database or file store is served by ``mlflow ui``."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')} in a browser (the tracking server serves the UI)"
    if uri.startswith("databricks"):
        return "open the experiment in your Databricks workspace"
    return f"mlflow ui --backend-store-uri {uri}"


class MlflowTracker:
    """Parent and child runs of one sweep in one MLflow experiment."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str, artifact_root: str | None = None) -> str:
        """The id of experiment ``name``, created if missing. A new experiment in a local store
        (sqlite, a folder) keeps its artifacts under ``artifact_root`` (e.g. the sweep's
        ``s3://`` storage) if given, else where MLflow would (``./mlruns``, or under
        :func:`output_root` when that is not the current folder); a tracking server decides
        for itself."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        return str(
            self.client.create_experiment(
                name, artifact_location=artifact_location(self.uri, name, artifact_root)
            )
        )

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

    def log(self, record: Record) -> None:
        """One record, synchronously (the records trials send through a courier)."""
        send(self.client, record)

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
    """Rank 0's per-step metrics and artifacts for one run, delivered in the background by a
    :class:`~raymix.tracking.delivery.Courier`: retried through MLflow outages while training
    goes on, spooled to ``spool_dir`` when a wait runs out (see that module).

    With ``resume=True`` (a trial that may continue an earlier attempt of the same run) the
    (metric, step) points the run already holds are read once and never logged again, so the
    steps a resumed trial replays from its checkpoint leave one point per step in every series.
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        resume: bool = False,
        spool_dir: str | None = None,
        report_wait_s: float | None = None,
        end_wait_s: float | None = None,
    ) -> None:
        from raymix.tracking.delivery import Courier, held_points

        self.courier = Courier(uri, spool_dir)
        self.client = self.courier.client
        self.run_id = run_id
        self.report_wait_s, self.end_wait_s = report_wait_s, end_wait_s
        self._logged = held_points(self.client, run_id) if resume else set()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from raymix.tracking.delivery import metrics_record

        fresh = {k: v for k, v in metrics.items() if (k, step) not in self._logged}
        if fresh:
            self.courier.put(metrics_record(self.run_id, fresh, step))

    def log_rows(self, rows: list[dict[str, Any]], name: str) -> None:
        """A jsonl artifact (per-sample evaluation results)."""
        from raymix.tracking.delivery import Record

        text = "".join(json.dumps(r, default=str) + "\n" for r in rows)
        self.courier.put(Record("text", self.run_id, {"text": text, "name": name}))

    def log_artifacts(self, local_dir: str, path: str) -> None:
        """A folder's files under ``path`` (copied first: the caller may delete it)."""
        from raymix.tracking.delivery import Record

        self.courier.put(Record("artifacts", self.run_id, {"local_dir": local_dir, "path": path}))

    def flush(self) -> bool:
        """Wait until what was logged so far has landed, at most ``report_wait_s``; past it,
        the rest is spooled (and still retried). True when everything landed."""
        return self.courier.flush(self.report_wait_s)

    def close(self) -> bool:
        """Wait at most ``end_wait_s`` for the rest to land; what did not stays spooled (the
        user is told where). True when everything landed."""
        return self.courier.close(self.end_wait_s)
