"""Turn a sweep's MLflow runs into a table: one row per trial, its mixture and scores, the best
of each column marked. Reads MLflow only (through tracking/)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from raymix.tracking import MlflowTracker
from raymix.tracking.mlflow_tracker import STOPPED_AT_TAG, STOPPED_TAG

LOSS_PREFIX = "eval/loss/"


@dataclass(frozen=True)
class Table:
    """Rows of a sweep: ``columns`` are metric names; ``lower_is_better`` per column."""

    columns: list[str]
    rows: list[dict[str, Any]]
    lower_is_better: dict[str, bool]

    def best(self, column: str) -> float | None:
        vals = [r[column] for r in self.rows if _is_num(r.get(column))]
        if not vals:
            return None
        return min(vals) if self.lower_is_better[column] else max(vals)


def sweep_table(tracking_uri: str, parent_run_id: str) -> Table:
    """The table of a sweep's trials, read from MLflow."""
    runs = MlflowTracker(tracking_uri).trial_runs(parent_run_id)
    metric_names = sorted({k for r in runs for k in r.data.metrics if k.startswith("eval/")})
    per_source = [
        m for m in metric_names if m.startswith(LOSS_PREFIX) and m != LOSS_PREFIX + "mean"
    ]
    others = [m for m in metric_names if not m.startswith(LOSS_PREFIX)]
    columns = (
        per_source
        + ([LOSS_PREFIX + "mean"] if LOSS_PREFIX + "mean" in metric_names else [])
        + others
    )
    rows = []
    for r in runs:
        p = r.data.params
        counts = {
            n: int(p[f"mixture.{n}"])
            for n in _source_names(p)
            if p.get(f"mixture.{n}", "").isdigit()
        }
        tags = r.data.tags
        stopped = tags.get(STOPPED_TAG) == "true"
        rows.append(
            {
                "trial": tags.get("raymix.trial_id", r.info.run_id[:8]),
                "mixture": mixture_label(p),
                "rows": " + ".join(f"{n} {c}" for n, c in sorted(counts.items()) if c),
                "status": (
                    f"stopped@{tags.get(STOPPED_AT_TAG, '?')}/{_steps(r)}"
                    if stopped
                    else r.info.status
                ),
                "stopped": stopped,
                **{m: r.data.metrics.get(m) for m in columns},
            }
        )
    return Table(columns, rows, {c: c.startswith(LOSS_PREFIX) for c in columns})


def render_table(table: Table) -> str:
    """A plain-text rendering; the best value of each column carries a ``*``."""
    header = ["trial", "mixture", "rows", "status"]
    header += [c.removeprefix("eval/") for c in table.columns]
    lines = [header]
    for r in table.rows:
        cells = [r["trial"], r["mixture"], r["rows"], r.get("status", "")]
        for c in table.columns:
            v = r.get(c)
            mark = "*" if _is_num(v) and v == table.best(c) else " "
            cells.append(f"{v:.4f}{mark}" if _is_num(v) else "-")
        lines.append(cells)
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    notes = ["* best in column (lowest loss, highest score)"]
    if any(r.get("stopped") for r in table.rows):
        notes.append(
            "stopped@N/M: stopped early by the scheduler at step N of M; its scores are those "
            "it reached then (held-out loss only, no final evaluation)"
        )
    return "\n".join(out + [""] + notes)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not math.isnan(v)


def _steps(run: Any) -> str:
    total = run.data.metrics.get("train/total_steps")
    return "?" if total is None else str(int(total))


def mixture_label(params: dict[str, str]) -> str:
    """The grid mixture's name, or a sampled point's shares (``math .24 code .38 ...``)."""
    shares = {
        k.removeprefix("mixture.weight."): float(v)
        for k, v in params.items()
        if k.startswith("mixture.weight.")
    }
    if not shares:
        return params.get("mixture.name", "?")
    return " ".join(f"{n} {w:.2f}".replace(" 0.", " .") for n, w in shares.items())


def _source_names(params: dict[str, str]) -> list[str]:
    """The experiment's sources, from the trial's ``sources.<name>.path`` params."""
    return sorted(
        k[len("sources.") : -len(".path")]
        for k in params
        if k.startswith("sources.") and k.endswith(".path")
    )
