"""Sweeps read back from MLflow for a report: every trial run (finished, stopped early, failed or
still running) with its params, final metrics, tags and times; metric histories on demand.

A sweep is named the way a user names it: a sweep's parent run id, or an MLflow experiment
name (every sweep in it). Nothing here reads Ray's run folder: MLflow is the record.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from raymix.errors import ConfigError
from raymix.tracking import MlflowTracker
from raymix.tracking.mlflow_tracker import PARENT, ROLE, STOPPED_AT_TAG, STOPPED_TAG, TRIAL_ID

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Trial:
    """One trial run."""

    run_id: str
    sweep: str
    trial_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    start_ms: int
    end_ms: int | None
    client: Any = field(repr=False)
    _history: dict[str, list[tuple[int, float]]] = field(default_factory=dict, repr=False)

    @property
    def stopped(self) -> bool:
        """The scheduler stopped it before its last step (no final evaluation)."""
        return self.tags.get(STOPPED_TAG) == "true"

    @property
    def stopped_at(self) -> int | None:
        v = self.tags.get(STOPPED_AT_TAG)
        return int(v) if v and v.isdigit() else None

    @property
    def complete(self) -> bool:
        """Finished every step and its final evaluation."""
        return self.status == "FINISHED" and not self.stopped

    @property
    def total_steps(self) -> int | None:
        v = self.metrics.get("train/total_steps")
        return None if v is None or math.isnan(v) else int(v)

    def history(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of a metric, in step order (one point per step: the last logged)."""
        if key not in self._history:
            points = {m.step: m.value for m in self.client.get_metric_history(self.run_id, key)}
            self._history[key] = sorted(points.items())
        return self._history[key]

    @cached_property
    def steps_run(self) -> int:
        """The last training step it logged (0 before its first)."""
        hist = self.history("train/loss")
        return max((s for s, _ in hist), default=0)

    @property
    def seconds(self) -> float:
        end = self.end_ms if self.end_ms else time.time() * 1000
        return max(0.0, (end - self.start_ms) / 1000)

    def rows(self, source: str) -> int:
        v = self.params.get(f"mixture.{source}", "0")
        return int(v) if v.isdigit() else 0


@dataclass
class Sweep:
    """The trials of one sweep reference, and the parent runs behind it."""

    ref: str
    name: str
    parents: list[Any]
    trials: list[Trial]

    @property
    def sources(self) -> list[str]:
        """The experiment's sources, from its trials' ``sources.<name>.path`` params."""
        return sorted(
            {
                k[len("sources.") : -len(".path")]
                for t in self.trials
                for k in t.params
                if k.startswith("sources.") and k.endswith(".path")
            }
        )

    def ability(self, source: str) -> str:
        for t in self.trials:
            if f"sources.{source}.ability" in t.params:
                return t.params[f"sources.{source}.ability"]
        return source

    @property
    def wall_seconds(self) -> float:
        """From the first parent's start to the last one's end (now while one runs)."""
        if not self.parents:
            return 0.0
        start = min(p.info.start_time for p in self.parents)
        ends = [p.info.end_time or time.time() * 1000 for p in self.parents]
        return max(0.0, (max(ends) - start) / 1000)


def load_sweeps(uri: str, refs: list[str]) -> list[Sweep]:
    """Each reference's sweep; several references to compare. Raises ConfigError naming a
    reference that is neither a sweep's parent run id nor an experiment in the store."""
    client = MlflowTracker(uri).client
    sweeps = []
    for ref in refs:
        parents, runs, name = resolve(client, uri, ref)
        if not parents and not runs:
            raise ConfigError(f"{ref!r}: MLflow experiment {ref!r} in {uri} holds no sweep")
        trials = [
            Trial(
                run_id=r.info.run_id,
                sweep=name,
                trial_id=r.data.tags.get(TRIAL_ID, r.info.run_id[:8]),
                status=r.info.status,
                params=dict(r.data.params),
                metrics=dict(r.data.metrics),
                tags=dict(r.data.tags),
                start_ms=r.info.start_time,
                end_ms=r.info.end_time,
                client=client,
            )
            for r in sorted(runs, key=lambda r: r.info.start_time)
        ]
        sweeps.append(Sweep(ref, name, parents, trials))
    names = [s.name for s in sweeps]
    for s in sweeps:  # the same experiment twice (two parent ids): tell them apart
        if names.count(s.name) > 1 and s.parents:
            s.name = f"{s.name}@{s.parents[0].info.run_id[:6]}"
            for t in s.trials:
                t.sweep = s.name
    return sweeps


def resolve(client: Any, uri: str, ref: str) -> tuple[list[Any], list[Any], str]:
    """What a user's sweep reference names: a sweep's parent run id (that parent and its trial
    runs) or an experiment name (every sweep's parent and trial run in it); and the experiment's
    name. Raises ConfigError when it is neither."""
    if _RUN_ID.match(ref):
        try:
            parent = client.get_run(ref)
        except Exception:  # noqa: BLE001 - MLflow says RESOURCE_DOES_NOT_EXIST in many ways
            parent = None
        if parent is not None and parent.data.tags.get(ROLE) == "sweep":
            exp = client.get_experiment(parent.info.experiment_id)
            runs = client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{PARENT}` = '{ref}' and tags.`{ROLE}` = 'trial'",
                max_results=10_000,
            )
            return [parent], list(runs), exp.name
    exp = client.get_experiment_by_name(ref)
    if exp is None:
        raise ConfigError(
            f"{ref!r}: neither a sweep's parent run id nor an MLflow experiment in {uri} "
            "(the sweep printed its parent run id; the experiment is the config's name)"
        )
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    parents = [r for r in runs if r.data.tags.get(ROLE) == "sweep"]
    trials = [r for r in runs if r.data.tags.get(ROLE) == "trial"]
    return parents, trials, exp.name
