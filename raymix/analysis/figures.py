"""The report's figures, drawn with matplotlib (Agg: no display) and saved as PNG.

Each function takes plain data (no MLflow) and a path, and writes one figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = Mapping[str, Sequence[tuple[float, float]]]
"""A name per line, and its (x, y) points."""

DPI = 110
GREY = "#b0b0b0"


def _grid(n: int, width: float = 4.2, height: float = 3.2):  # type: ignore[no-untyped-def]
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _style(ax, title: str | None, xlabel: str, ylabel: str | None = None, legend: int = 7) -> None:  # type: ignore[no-untyped-def]
    """One look for every panel: small title and labels, a light grid, a legend."""
    if title is not None:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=legend)


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curves(
    path: Path,
    panels: Mapping[str, Series],
    xlabel: str,
    log2x: bool = False,
    refs: Mapping[str, Mapping[str, float]] | None = None,
    scatter: bool = False,
) -> Path:
    """One panel per metric, a line per series (points sorted by x); ``refs`` draws a dashed
    horizontal line per name in a panel (e.g. the other strategies' means)."""
    fig, axes = _grid(len(panels))
    for ax, (metric, series) in zip(axes, panels.items(), strict=True):
        for name, points in series.items():
            pts = sorted(points)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            style = {"marker": "o", "markersize": 4, "label": name}
            if scatter:
                ax.scatter(xs, ys, s=18, label=name)
            else:
                ax.plot(xs, ys, **style)  # type: ignore[arg-type]
        for i, (name, y) in enumerate((refs or {}).get(metric, {}).items()):
            ax.axhline(y, linestyle="--", linewidth=1, color=f"C{i + 3}", label=name)
        if log2x:
            ax.set_xscale("log", base=2)
        _style(ax, metric, xlabel)
    return _save(fig, path)


def pareto(
    path: Path,
    names: tuple[str, str],
    points: Sequence[tuple[float, float, str, bool]],
    join: bool = True,
) -> Path:
    """Two metrics against each other: the front in colour and labelled (joined with
    ``join``: a front over these two metrics only); the trials off it grey."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    off = [(x, y) for x, y, _, on in points if not on]
    front = sorted((x, y, label) for x, y, label, on in points if on)
    if off:
        ax.scatter(
            [p[0] for p in off], [p[1] for p in off], color=GREY, s=20, label="off the front"
        )
    if front:
        xs, ys = [p[0] for p in front], [p[1] for p in front]
        ax.plot(xs, ys, "-o" if join else "o", color="C3", markersize=5, label="Pareto front")
        for x, y, label in front:
            ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    _style(ax, None, names[0], names[1])
    return _save(fig, path)


def loss_curves(
    path: Path,
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    stopped: Mapping[str, int],
) -> Path:
    """Train and held-out loss per trial against the step; a trial the scheduler stopped ends
    in a cross."""
    fig, axes = _grid(len(panels), width=5.2, height=3.6)
    for ax, (metric, series) in zip(axes, panels.items(), strict=True):
        many = len(series) > 10
        for i, (name, points) in enumerate(series.items()):
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            color = f"C{i % 10}"
            ax.plot(xs, ys, linewidth=0.8 if many else 1.2, color=color,
                    label=None if many else name)  # fmt: skip
            if name in stopped:
                ax.plot(xs[-1], ys[-1], "x", color=color, markersize=8, markeredgewidth=2)
        if stopped:
            ax.plot([], [], "x", color="black", label="stopped early")
        _style(ax, metric, "step", legend=6)
    return _save(fig, path)


def rank_scatter(
    path: Path,
    panels: Mapping[str, tuple[Sequence[tuple[int, int]], float]],
) -> Path:
    """Per early signal, each trial's rank by it against its final rank, with Spearman's ρ."""
    fig, axes = _grid(len(panels), width=4.2, height=4.0)
    for ax, (signal, (ranks, rho)) in zip(axes, panels.items(), strict=True):
        xs, ys = zip(*ranks, strict=True)
        ax.scatter(xs, ys, s=24)
        top = max(max(xs), max(ys)) + 0.5
        ax.plot([0.5, top], [0.5, top], linestyle="--", color=GREY, linewidth=1)
        _style(ax, f"{signal}: Spearman ρ = {rho:.2f}", "rank early", "rank at the end", legend=0)
    return _save(fig, path)
