"""A Tune callback that closes the MLflow child run of a trial Tune ended from outside: a
scheduler's stop or a crash of the trial actor. Such runs would otherwise stay RUNNING forever,
and a stopped trial must say so (RAY260: nothing after the stopping report runs in the trial)."""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback

from raymix.tracking import MlflowTracker
from raymix.tracking.mlflow_tracker import STOPPED_AT_TAG, STOPPED_TAG
from raymix.train.loop import TRAINED

log = logging.getLogger("raymix.sweep")


class CloseTrialRuns(Callback):
    """FAILED on error. When a trial completes while its run is still RUNNING, its driver was
    cut off: by a scheduler before the last step (tagged ``raymix.stopped_early`` and
    ``raymix.stopped_at_step``, status KILLED), or after its last report (FINISHED)."""

    def __init__(self, tracking_uri: str, parent_run_id: str) -> None:
        self._uri = tracking_uri
        self._parent = parent_run_id

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        _unless_unreachable(self._complete, trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        _unless_unreachable(self._error, trial)

    def _complete(self, trial: Any) -> None:
        last = trial.last_result or {}
        # FAILED too: a stopped driver's fit may raise as Tune tears it down, and mark its run
        # failed before or after this callback runs; Tune completed the trial, so it was stopped
        run_id = self._open_run(trial.trial_id, ("RUNNING", "FAILED"))
        if run_id is None:
            return
        tracker = MlflowTracker(self._uri)
        if last.get(TRAINED):
            tracker.finish(run_id)
            return
        tracker.set_tag(run_id, STOPPED_TAG, "true")
        tracker.set_tag(run_id, STOPPED_AT_TAG, str(last.get("step", "?")))
        tracker.finish(run_id, "KILLED")

    def _error(self, trial: Any) -> None:
        run_id = self._open_run(trial.trial_id, ("RUNNING",))
        if run_id is not None:
            MlflowTracker(self._uri).finish(run_id, "FAILED")

    def _open_run(self, trial_id: str, statuses: tuple[str, ...]) -> str | None:
        for run in MlflowTracker(self._uri).trial_runs(self._parent):
            if run.data.tags.get("raymix.trial_id") == trial_id and run.info.status in statuses:
                return str(run.info.run_id)
        return None


def _unless_unreachable(close: Any, trial: Any) -> None:
    """Close the trial's run; with MLflow unreachable, say so and go on (the sweep must not
    die of an outage: ``raymix sweep --resume`` closes what stayed open)."""
    from raymix.tracking.delivery import transient

    try:
        close(trial)
    except Exception as error:
        if not transient(error):
            raise
        log.warning("raymix: could not close the MLflow run of trial %s (%s); "
                    "`raymix sweep --resume` closes it", trial.trial_id, error)  # fmt: skip
