"""The trial plan: what a mixture compiles to, typed. Every room that reads a plan (the trial
driver, the workers' schedule, the held-out evaluation, ``raymix data mix``) gets a :class:`Plan`;
its JSON form (:meth:`Plan.to_json`) is the trial's ``manifest.json`` and what its hash covers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class StageSource:
    """One source's part of a stage: the exact row ids (repeats for upsampling) and their size."""

    count: int
    tokens: int
    """Tokens of these rows after truncation to ``max_length``."""
    truncated_tokens: int
    """Tokens of these rows that truncation cut."""
    row_ids: list[int]


@dataclass(frozen=True)
class PlanStage:
    """One stage of a strategy: its rows per source and how many epochs it runs."""

    name: str
    epochs: int
    sources: dict[str, StageSource]


@dataclass(frozen=True)
class Plan:
    """A trial's plan (its manifest). The report sections (cleaning, overlong, dropped,
    lost_subtasks, truncation, contamination) are JSON records logged as they are."""

    version: int
    experiment: str
    mixture: str
    spec: dict[str, Any]
    seed: int
    strategy: dict[str, Any]
    template: str
    max_length: int
    stages: list[PlanStage]
    heldout: dict[str, list[int]]
    """Held-out row ids per source (disjoint from every stage's rows)."""
    fingerprints: dict[str, str]
    """Each source's content hash (file sha256 or hub revision)."""
    token_caches: dict[str, str]
    """Each source's token-cache key: workers check they open the same data."""
    cleaning: dict[str, dict[str, int]]
    overlong: dict[str, dict[str, Any]]
    dropped: dict[str, dict[str, int]]
    lost_subtasks: dict[str, dict[str, dict[str, int]]]
    truncation: dict[str, dict[str, Any]]
    contamination: dict[str, Any] | None = None
    hash: str = field(default="")
    """sha256 of the canonical JSON of everything else (see :func:`plan_hash`)."""

    def rows_per_source(self) -> dict[str, int]:
        """Rows per source over all stages (for params and tables)."""
        out: dict[str, int] = {}
        for stage in self.stages:
            for name, part in stage.sources.items():
                out[name] = out.get(name, 0) + part.count
        return out

    def to_json(self) -> dict[str, Any]:
        """The manifest: plain JSON types, ``contamination`` only when it was checked."""
        out = asdict(self)
        if out["contamination"] is None:
            del out["contamination"]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan of a manifest written by :meth:`to_json`."""
        stages = [
            PlanStage(
                s["name"],
                s["epochs"],
                {n: StageSource(**part) for n, part in s["sources"].items()},
            )
            for s in data["stages"]
        ]
        return cls(**{**data, "stages": stages})

    def with_hash(self) -> Plan:
        """This plan with its content hash filled in."""
        return replace(self, hash=plan_hash(self.to_json()))


def plan_hash(plan: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of a manifest, all but its ``hash``."""
    body = {k: v for k, v in plan.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
