"""``raymix report``: one or more sweeps, read from MLflow, as the seed studies present theirs.

What the report shows is chosen from what the sweeps varied:

- always: the sweep's cost (trials, trial-steps, wall time, steps saved by early stopping), the
  settings × abilities table (mean ± sd over seeds, best in bold, second underlined, the trials
  behind each cell) and the loss curves per trial;
- strategies varied: the strategy table (Dong et al.'s Table 1) and, with several DMT k, the k
  curve beside the other strategies;
- amounts varied: per-ability scaling curves on a log2 axis, individual vs mixed sources;
- shares varied: the ratio curves;
- numeric hyper-parameters varied (lr, warmup, effective batch, Adam β2…): their curves;
- two abilities or more: the Pareto front (Optuna's multi-objective front), others grey;
- three finished trials or more: the early-signal plot (rank by early gradient norm and early
  held-out loss against the final rank, Spearman's ρ from scipy).

It is written as Markdown beside its PNG figures, and as one self-contained HTML page (figures
inlined), in ``out``; :func:`log_report` puts it in the sweeps' parent runs.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymix.analysis import figures
from raymix.analysis.sweeps import Sweep, Trial
from raymix.analysis.tables import mixture_label

# ---------------------------------------------------------------------------- the document


@dataclass
class Cell:
    text: str
    rank: int = 0  # 1: best in its column (bold), 2: second (underlined)


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclass
class Figure:
    path: Path
    caption: str


Block = str | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]
    markdown: Path
    html: Path

    @property
    def figures(self) -> list[Path]:
        return [b.path for s in self.sections for b in s.blocks if isinstance(b, Figure)]


# ---------------------------------------------------------------------------- metrics

SCORE_PREFERENCE = ("pass_at_1", "exact_match", "accuracy", "acc", "score", "win_rate", "rouge_l")
"""Which of an ability's scores heads it in the Pareto front and the curves, first found."""


def lower_is_better(metric: str) -> bool:
    return "loss" in metric


def eval_metrics(trials: Iterable[Trial]) -> list[str]:
    """The ``eval/`` metrics the trials logged: ability scores, then held-out losses per source,
    then their mean and weighted mean."""
    names = sorted({k for t in trials for k in t.metrics if k.startswith("eval/")})
    losses = [m for m in names if m.startswith("eval/loss/")]
    means = [m for m in losses if m in ("eval/loss/mean", "eval/loss/weighted")]
    scores = [m for m in names if m not in losses]
    return scores + [m for m in losses if m not in means] + means


def headline(trials: Sequence[Trial]) -> dict[str, str]:
    """Per ability, the one score that stands for it (``eval/<ability>/<score>``: the first of
    :data:`SCORE_PREFERENCE` with 3 distinct values or more across the trials); where fewer
    than two abilities have such a score, the held-out loss per source instead."""
    by_ability: dict[str, list[str]] = defaultdict(list)
    for m in eval_metrics(trials):
        parts = m.split("/")
        if len(parts) == 3 and parts[1] != "loss":
            by_ability[parts[1]].append(parts[2])
    out = {}
    for ability, scores in by_ability.items():
        # the preferred score that tells trials apart (a score at 0 for every trial, as a toy
        # model's generations can be, says nothing)
        ranked = [s for s in SCORE_PREFERENCE if s in scores] + sorted(scores)
        telling = [s for s in ranked if _distinct(trials, f"eval/{ability}/{s}") >= 3]
        if telling:
            out[ability] = f"eval/{ability}/{telling[0]}"
    if len(out) >= 2:
        return out
    losses = [m for m in eval_metrics(trials) if m.startswith("eval/loss/")]
    per_source = {m.split("/")[2]: m for m in losses if m.split("/")[2] not in ("mean", "weighted")}
    return per_source if len(per_source) >= 2 else out


def _distinct(trials: Sequence[Trial], metric: str) -> int:
    return len(
        {t.metrics[metric] for t in trials if not math.isnan(t.metrics.get(metric, math.nan))}
    )


def heldout_metric(trials: Sequence[Trial]) -> str | None:
    """The held-out loss the report follows over steps: the weighted mean where logged."""
    have = {k for t in trials for k in t.metrics}
    return next((m for m in ("eval/loss/weighted", "eval/loss/mean") if m in have), None)


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:.3g}"


def _fmt_like(v: float, like: float) -> str:
    """``v`` with the decimals ``_fmt`` gives ``like`` (a spread beside its mean)."""
    text = _fmt(like)
    if "e" in text or "." not in text:
        return f"{v:.3g}"
    return f"{v:.{len(text.split('.')[1])}f}"


def _num(text: str | None) -> float | None:
    try:
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# ---------------------------------------------------------------------------- settings

_SETTING_KEYS = {
    "strategy.name": "",
    "train.lr": "lr",
    "train.scheduler": "scheduler",
    "train.warmup_ratio": "warmup",
    "train.warmup_steps": "warmup steps",
    "train.epochs": "epochs",
    "train.max_steps": "steps",
    "train.weight_decay": "wd",
    "train.packing": "packing",
    "train.max_length": "max length",
    "model.name": "model",
}
_BATCH_KEYS = ("train.micro_batch_size", "train.grad_accum", "scaling.num_workers")


def effective_batch(t: Trial) -> int | None:
    """Sequences per optimizer step: micro-batch × accumulation × workers."""
    vals = [_num(t.params.get(k)) for k in _BATCH_KEYS]
    return None if None in vals else int(math.prod(vals))  # type: ignore[arg-type]


def beta2(t: Trial) -> float | None:
    try:
        return float(json.loads(t.params.get("train.betas", "null"))[1])
    except (TypeError, ValueError, IndexError, json.JSONDecodeError):
        return None


def _varies(trials: Sequence[Trial], value: Callable[[Trial], Any]) -> bool:
    return len({value(t) for t in trials}) > 1


@dataclass
class Settings:
    """What the trials differ in, seeds aside, and a label per trial from it."""

    trials: Sequence[Trial]
    several_sweeps: bool

    def __post_init__(self) -> None:
        ts = self.trials
        self.mixture = _varies(ts, _mixture_label_of)
        self.keys = [k for k in _SETTING_KEYS if _varies(ts, functools.partial(_param, key=k))]
        dmt = [t for t in ts if t.params.get("strategy.name") == "dmt"]
        self.k = _varies(dmt, lambda t: t.params.get("strategy.k"))
        self.batch = _varies(ts, effective_batch)
        self.beta2 = _varies(ts, beta2)
        self.seeds = _varies(ts, lambda t: t.params.get("seed"))

    def parts(self, t: Trial) -> dict[str, str]:
        """What sets this trial apart, by kind (``sweep``, ``mixture``, a config key, ``k``,
        ``batch``, ``beta2``), in the order a label shows them."""
        out = {}
        if self.several_sweeps:
            out["sweep"] = f"{t.sweep}:"
        if self.mixture or not (self.keys or self.k or self.batch or self.beta2):
            out["mixture"] = _mixture_label_of(t)
        for k in self.keys:
            short, v = _SETTING_KEYS[k], _short_value(t.params.get(k, "?"))
            out[k] = f"{short} {v}" if short else v
        if self.k and t.params.get("strategy.name") == "dmt":
            out["k"] = f"k {_num(t.params.get('strategy.k')):.4g}"
        if self.batch:
            out["batch"] = f"batch {effective_batch(t)}"
        if self.beta2:
            out["beta2"] = f"β2 {beta2(t)}"
        return out

    def label(self, t: Trial, only: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
        """The trial's setting: every part, or those ``only`` names, less those in ``drop``."""
        parts = self.parts(t)
        return " · ".join(v for k, v in parts.items() if (not only or k in only) and k not in drop)


def _short_value(text: str) -> str:
    """A param as a label shows it: numbers to 3 significant digits (a sampled lr)."""
    v = _num(text)
    if v is None or text.strip().lower() in ("true", "false") or text.isdigit():
        return text
    return f"{v:.3g}"


def _param(t: Trial, key: str) -> str | None:
    return t.params.get(key)


def _mixture_label_of(t: Trial) -> str:
    label = mixture_label(t.params)
    amount = t.params.get("mixture.total") or t.params.get("mixture.amount")
    if "mixture.weight." in " ".join(t.params) and amount:
        label += f" ({float(amount):.4g})"
    return label


# ---------------------------------------------------------------------------- sections


def settings_table(groups: dict[str, list[Trial]], metrics: Sequence[str], seeds: bool) -> Table:
    """Rows: settings; columns: metrics as mean (± sd across its trials) with the best of a
    column in bold and the second underlined; ``trials``: how many trials each row holds (a
    cell built on fewer says so in brackets)."""
    stats: dict[str, dict[str, tuple[float, float | None, int]]] = {}
    for label, ts in groups.items():
        row = {}
        for m in metrics:
            vals = [t.metrics[m] for t in ts if not math.isnan(t.metrics.get(m, math.nan))]
            if vals:
                mean, sd = _mean_sd(vals)
                row[m] = (mean, sd, len(vals))
        stats[label] = row
    ranks: dict[str, dict[float, int]] = {}
    for m in metrics:
        means = sorted({r[m][0] for r in stats.values() if m in r}, reverse=not lower_is_better(m))
        # best and second of the distinct values; the column's worst is never marked (a tie
        # of every row but the best at zero is not "second")
        ranks[m] = {v: i + 1 for i, v in enumerate(means[:2]) if v != means[-1]}
    header = ["setting", "trials"] + [_short(m) for m in metrics]
    rows = []
    for label, ts in groups.items():
        cells = [Cell(label), Cell(str(len(ts)))]
        for m in metrics:
            if m not in stats[label]:
                cells.append(Cell("–"))
                continue
            mean, sd, n = stats[label][m]
            text = _fmt(mean) + (f" ± {_fmt_like(sd, mean)}" if sd is not None and seeds else "")
            text += f" ({n})" if n != len(ts) else ""
            cells.append(Cell(text, ranks[m].get(mean, 0)))
        rows.append(cells)
    return Table(header, rows)


def _short(metric: str) -> str:
    return metric.removeprefix("eval/")


def pareto_front(points: Sequence[Sequence[float]], lower: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated points (Optuna's multi-objective front)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["minimize" if lo else "maximize" for lo in lower],
    )
    for i, values in enumerate(points):
        study.add_trial(
            optuna.trial.create_trial(
                values=list(values), params={}, distributions={}, user_attrs={"i": i}
            )
        )
    return sorted(t.user_attrs["i"] for t in study.best_trials)


def early_signals(trials: Sequence[Trial], final_metric: str) -> dict[str, Any]:
    """Pareja et al.'s early signals: for each complete trial its mean gradient norm and its
    held-out loss at the first evaluation after step 0, against its final ``final_metric``.
    Returns per signal the (early rank, final rank) pairs and Spearman's ρ and p."""
    from scipy.stats import rankdata, spearmanr

    rows = []
    for t in trials:
        final = t.metrics.get(final_metric)
        held = [(s, v) for s, v in t.history(final_metric) if s > 0]
        if final is None or math.isnan(final) or len(held) < 2:
            continue
        early_step = held[0][0]
        grads = [
            v for s, v in t.history("train/grad_norm") if s <= early_step and not math.isnan(v)
        ]
        rows.append((early_step, held[0][1], statistics.fmean(grads) if grads else math.nan, final))
    out: dict[str, Any] = {"trials": len(rows), "steps": sorted({r[0] for r in rows})}
    if len(rows) < 3:
        return out
    finals = [r[3] for r in rows]
    sign = 1 if lower_is_better(final_metric) else -1
    final_rank = rankdata([sign * v for v in finals])
    for name, col in (("early held-out loss", 1), ("early gradient norm", 2)):
        vals = [r[col] for r in rows]
        if any(math.isnan(v) for v in vals) or len(set(vals)) < 2:
            continue
        rho, p = spearmanr(vals, [sign * v for v in finals])
        early_rank = rankdata(vals)
        out[name] = {
            "rho": float(rho),
            "p": float(p),
            "ranks": [(int(a), int(b)) for a, b in zip(early_rank, final_rank, strict=True)],
        }
    return out


# ---------------------------------------------------------------------------- the report


def build_report(sweeps: Sequence[Sweep], out: Path) -> Report:
    """Write the report of ``sweeps`` into ``out`` (``report.md``, ``report.html``,
    ``figures/*.png``) and return what it holds."""
    out.mkdir(parents=True, exist_ok=True)
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    for old in figdir.glob("*.png"):
        old.unlink()
    trials = [t for s in sweeps for t in s.trials]
    done = [t for t in trials if t.complete]
    settings = Settings(trials, several_sweeps=len(sweeps) > 1)
    metrics = eval_metrics(done)
    heads = headline(done)
    title = "raymix report: " + ", ".join(s.name for s in sweeps)
    sections = [_cost(sweeps)]

    if done and metrics:
        groups = _group(done, settings.label)
        sec = Section("Settings × abilities")
        sec.blocks.append(
            f"{len(done)} trials that finished every step, grouped by what they vary"
            + (" (seeds pooled: mean ± sd across them)" if settings.seeds else "")
            + ". Bold: the best of a column; underlined: the second. Losses: lower is better; "
            "scores: higher. A number in brackets: the trials behind that cell, where fewer "
            "than the row's."
        )
        sec.blocks.append(settings_table(groups, metrics, settings.seeds))
        stopped = [t for t in trials if t.stopped]
        if stopped:
            sec.blocks.append(
                f"{len(stopped)} trial(s) stopped early by the scheduler are left out of the "
                "table (no final evaluation); their curves are below."
            )
        sections.append(sec)
    if "strategy.name" in settings.keys and done:
        sections.append(_strategies(done, settings, metrics, heads, figdir))  # empty: dropped
    if done and heads:
        optional = (
            _scaling(sweeps, done, heads, settings, figdir),
            _ratios(sweeps, _modal_context(done, settings), heads, figdir),
            _hyper(done, heads, figdir),
            _pareto(done, heads, settings, figdir),
        )
        sections += [s for s in optional if s is not None]
    sections.append(_losses(trials, settings, figdir))
    signal = _early(done, settings, figdir)
    if signal:
        sections.append(signal)
    sections = [s for s in sections if s.blocks]
    md, page = out / "report.md", out / "report.html"
    report = Report(title, sections, md, page)
    md.write_text(render_markdown(report, out))
    page.write_text(render_html(report))
    return report


def _group(trials: Sequence[Trial], key: Callable[[Trial], str]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        groups[key(t)].append(t)
    return dict(groups)


def _cost(sweeps: Sequence[Sweep]) -> Section:
    sec = Section("Sweep and cost")
    header = ["sweep", "trials", "finished", "stopped early", "failed", "running",
              "trial-steps", "steps saved", "wall time", "trial time"]  # fmt: skip
    rows = []
    for s in sweeps:
        ts = s.trials
        by: dict[str, int] = defaultdict(int)
        for t in ts:
            by["stopped" if t.stopped else t.status] += 1
        saved = sum((t.total_steps or 0) - (t.stopped_at or 0) for t in ts if t.stopped)
        rows.append([Cell(x) for x in (
            s.name, str(len(ts)), str(by["FINISHED"]), str(by["stopped"]),
            str(by["FAILED"] + by["KILLED"]), str(by["RUNNING"]),
            str(sum(t.steps_run for t in ts)), str(saved),
            _duration(s.wall_seconds), _duration(sum(t.seconds for t in ts)),
        )])  # fmt: skip
    sec.blocks.append(
        "Trial-steps: optimizer steps the trials ran. Steps saved: those the scheduler's early "
        "stops spared. Wall time: the sweep's parent run, first start to last end; trial time: "
        "the trials' runs added up."
    )
    sec.blocks.append(Table(header, rows))
    return sec


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _strategies(
    done: Sequence[Trial], settings: Settings, metrics: Sequence[str], heads: dict[str, str],
    figdir: Path,
) -> Section:  # fmt: skip
    """Dong et al.'s Table 1: the strategies side by side where the sweep ran several of them
    on the same everything else (the same data, the same hyper-parameters); and the DMT k
    curve beside the other strategies."""
    sec = Section("Strategies")
    strategy = ("strategy.name", "k")
    contexts = _group(done, lambda t: settings.label(t, drop=strategy))
    compared = {
        c: ts for c, ts in contexts.items() if len({t.params.get("strategy.name") for t in ts}) > 1
    }
    for context, ts in compared.items():
        sec.blocks.append(
            "Multi-task, sequential, mixed sequential and DMT side by side (Dong et al., Table 1)"
            + (f", all at {context}." if context else ".")
        )
        groups = _group(ts, lambda t: settings.label(t, only=strategy))
        sec.blocks.append(settings_table(groups, metrics, True))
        dmt = [t for t in ts if t.params.get("strategy.name") == "dmt"]
        if len({t.params.get("strategy.k") for t in dmt}) < 2:
            continue
        panels, refs = {}, {}
        others = _group([t for t in ts if t not in dmt], lambda t: t.params["strategy.name"])
        for m in list(heads.values()) + [m for m in metrics if m.endswith("/mean")]:
            panels[_short(m)] = {"dmt": _means(dmt, lambda t: _num(t.params["strategy.k"]), m)}
            refs[_short(m)] = {
                name: statistics.fmean(v) for name, ts in others.items()
                if (v := [t.metrics[m] for t in ts if m in t.metrics])
            }  # fmt: skip
        name = "dmt_k.png" if len(compared) == 1 else f"dmt_k_{len(sec.blocks)}.png"
        path = figures.curves(figdir / name, panels, "DMT k (specialised data replayed)",
                              log2x=True, refs=refs)  # fmt: skip
        sec.blocks.append(Figure(path, "DMT's k: the share of the specialised (first-stage) data "
                                       "replayed beside the general data in the second stage; "
                                       "dashed: the other strategies."))  # fmt: skip
    return sec


def _means(
    trials: Sequence[Trial], x: Callable[[Trial], float | None], metric: str
) -> list[tuple[float, float]]:
    by: dict[float, list[float]] = defaultdict(list)
    for t in trials:
        xv, y = x(t), t.metrics.get(metric)
        if xv is not None and y is not None and not math.isnan(y):
            by[xv].append(y)
    return sorted((xv, statistics.fmean(ys)) for xv, ys in by.items())


def _modal_context(done: Sequence[Trial], settings: Settings) -> list[Trial]:
    """The trials sharing the most common setting of everything but the mixture (a strategy, a
    learning rate...): what a curve over the mixture holds fixed."""
    groups = _group(done, lambda t: settings.label(t, drop=("mixture",)))
    return max(groups.values(), key=len)


def _composition(t: Trial, sources: Sequence[str]) -> tuple[float, ...]:
    total = sum(t.rows(s) for s in sources) or 1
    return tuple(round(t.rows(s) / total / 0.02) * 0.02 for s in sources)


def _scaling(
    sweeps: Sequence[Sweep], done: Sequence[Trial], heads: dict[str, str], settings: Settings,
    figdir: Path,
) -> Section | None:  # fmt: skip
    """Dong et al.'s Figure 1: each ability's score against the rows of its own data (log2),
    trained alone (individual) or mixed with the other sources in the sweep's most common
    composition (mixed), everything else at its most common setting."""
    ability = {src: s.ability(src) for s in sweeps for src in s.sources}
    done = _modal_context(done, settings)
    totals = {sum(t.rows(s) for s in ability) for t in done}
    if len(totals) < 2:
        return None
    multi = [t for t in done if sum(t.rows(s) > 0 for s in ability) >= 2]
    if multi:
        counts: dict[tuple[float, ...], int] = defaultdict(int)
        for t in multi:
            counts[_composition(t, list(ability))] += 1
        modal = max(counts, key=counts.__getitem__)
        done = [t for t in done if t not in multi or _composition(t, list(ability)) == modal]
    panels = {}
    for key, metric in heads.items():
        own = [s for s, a in ability.items() if a == key or s == key]
        if not own:
            continue
        series: dict[str, list[tuple[float, float]]] = {}
        for kind in ("individual", "mixed"):
            ts = [
                t for t in done
                if sum(t.rows(s) for s in own) > 0
                and (kind == "mixed") == any(t.rows(s) > 0 for s in ability if s not in own)
            ]  # fmt: skip
            pts = _means(ts, functools.partial(_own_rows, own=own), metric)
            if pts:
                series[kind] = pts
        if any(len(p) >= 2 for p in series.values()):
            panels[_short(metric)] = series
    if not panels:
        return None
    path = figures.curves(figdir / "scaling.png", panels, "rows of the ability's own data",
                          log2x=True)  # fmt: skip
    return Section("Scaling with the amount of data", [
        "Each ability against the amount of its own data (log2 axis), trained on it alone "
        "(individual) or mixed with the other sources in the sweep's most common proportions "
        "(mixed), every other setting at its most common value (Dong et al., Figure 1).",
        Figure(path, "Per-ability scaling: individual vs mixed sources."),
    ])  # fmt: skip


def _own_rows(t: Trial, own: Sequence[str]) -> float:
    return float(sum(t.rows(s) for s in own))


def _ratios(
    sweeps: Sequence[Sweep], done: Sequence[Trial], heads: dict[str, str], figdir: Path
) -> Section | None:
    """Each ability against a source's share, among trials that mix the same sources (two or
    more) in three proportions or more."""
    sources = sorted({src for s in sweeps for src in s.sources})
    general = {src for s in sweeps for src in s.sources if s.ability(src) == "general"}
    by_set = _group(
        [t for t in done if sum(t.rows(s) > 0 for s in sources) >= 2],
        lambda t: "+".join(s for s in sources if t.rows(s) > 0),
    )
    sampled = any(f"mixture.weight.{s}" in t.params for t in done for s in sources)
    series: dict[str, tuple[list[Trial], str]] = {}
    for mix, ts in by_set.items():
        members = mix.split("+")
        if not sampled:
            # a ratio study holds one source's rows fixed and scales the others (Dong et al.:
            # all general data + k of the specialised; Wang et al.: specialised rows per
            # general row): the curve is the fixed source's share
            for s in members:
                for rows, fixed in _group(ts, functools.partial(_rows_of, s=s)).items():
                    if len({_share(t, s, sources) for t in fixed}) >= 3:
                        series[f"{s} fixed at {rows} rows, in {mix}"] = (fixed, s)
            if series:
                continue
        # two sources: one share says it all; show the specialised one's
        shown = [s for s in members if s not in general][:1] if len(members) == 2 else members
        for s in shown or members[:1]:
            if len({_share(t, s, sources) for t in ts}) >= 3:
                series[f"{s} in {mix}"] = (ts, s)
    if not series:
        return None
    panels = {
        _short(m): {
            name: _means(ts, functools.partial(_share, s=s, sources=sources), m)
            for name, (ts, s) in list(series.items())[:6]
        }
        for m in heads.values()
    }
    path = figures.curves(figdir / "ratios.png", panels, "share of the source in the mixture",
                          scatter=sampled)  # fmt: skip
    return Section("Ratios", [
        "Each ability against a source's share of the mixture, among trials that mix the same "
        "sources (Dong et al.'s ratio study; Wang et al.'s specialised : general ratio).",
        Figure(path, "Ability against share, per source and set of sources mixed."),
    ])  # fmt: skip


def _rows_of(t: Trial, s: str) -> str:
    return str(t.rows(s))


def _share(t: Trial, s: str, sources: Sequence[str]) -> float:
    """The source's share of the trial's mixture: its sampled weight, else its rows."""
    w = _num(t.params.get(f"mixture.weight.{s}"))
    if w is not None:
        return round(w, 4)
    total = sum(t.rows(x) for x in sources)
    return round(t.rows(s) / total, 4) if total else 0.0


_HYPER: dict[str, tuple[str, Callable[[Trial], float | None], bool]] = {
    "lr": ("learning rate", lambda t: _num(t.params.get("train.lr")), True),
    "batch": ("effective batch (sequences per step)", effective_batch, True),  # type: ignore[dict-item]
    "warmup": ("warmup ratio", lambda t: _num(t.params.get("train.warmup_ratio")), False),
    "warmup_steps": ("warmup steps", lambda t: _num(t.params.get("train.warmup_steps")), False),
    "epochs": ("epochs", lambda t: _num(t.params.get("train.epochs")), False),
    "beta2": ("Adam β2", beta2, False),
}


def _hyper(done: Sequence[Trial], heads: dict[str, str], figdir: Path) -> Section | None:
    """Pareja et al.'s recipe curves: each ability (and the held-out loss) against each
    numeric hyper-parameter the sweep varied, other settings pooled."""
    metrics = list(heads.values()) + [
        m for m in ("eval/loss/mean",) if any(m in t.metrics for t in done)
    ]
    sec = Section("Hyper-parameters")
    for key, (xlabel, value, log2x) in _HYPER.items():
        if len({value(t) for t in done} - {None}) < 2:
            continue
        panels = {_short(m): {"mean over trials": _means(done, value, m)} for m in metrics}
        path = figures.curves(figdir / f"hyper_{key}.png", panels, xlabel, log2x=log2x)
        sec.blocks.append(Figure(path, f"Abilities against the {xlabel}."))
    return sec if sec.blocks else None


def _pareto(
    done: Sequence[Trial], heads: dict[str, str], settings: Settings, figdir: Path
) -> Section | None:
    if len(heads) < 2:
        return None
    metrics = list(heads.values())
    rows = [t for t in done if all(not math.isnan(t.metrics.get(m, math.nan)) for m in metrics)]
    if len(rows) < 3:
        return None
    lower = [lower_is_better(m) for m in metrics]
    front = set(pareto_front([[t.metrics[m] for m in metrics] for t in rows], lower))
    sec = Section("Pareto front across abilities")
    sec.blocks.append(
        f"{len(front)} of {len(rows)} trials are on the front over "
        + ", ".join(_short(m) for m in metrics)
        + " (no other trial is at least as good on every one and better on one)."
    )
    pairs = [
        (metrics[i], metrics[j]) for i in range(len(metrics)) for j in range(i + 1, len(metrics))
    ]
    for a, b in pairs[:3]:
        pts = [
            (t.metrics[a], t.metrics[b], settings.label(t), i in front) for i, t in enumerate(rows)
        ]
        name = f"pareto_{_slug(a)}__{_slug(b)}.png"
        path = figures.pareto(figdir / name, (_short(a), _short(b)), pts, join=len(metrics) == 2)
        sec.blocks.append(Figure(path, f"{_short(a)} against {_short(b)}: the front in colour "
                                       "(over every ability), others grey."))  # fmt: skip
    header = ["on the front"] + [_short(m) for m in metrics]
    sec.blocks.append(Table(header, [
        [Cell(settings.label(t))] + [Cell(_fmt(t.metrics[m])) for m in metrics]
        for i, t in enumerate(rows) if i in front
    ]))  # fmt: skip
    return sec


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", _short(metric)).strip("_")


def _losses(trials: Sequence[Trial], settings: Settings, figdir: Path) -> Section:
    sec = Section("Loss curves")
    held = heldout_metric(trials)
    names = {t.run_id: f"{t.trial_id} {settings.label(t)}" for t in trials}
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {"train/loss": {}}
    if held:
        panels[held] = {}
    for t in trials:
        for metric in panels:
            panels[metric][names[t.run_id]] = [(float(s), v) for s, v in t.history(metric)]
    if not any(p for series in panels.values() for p in series.values()):
        return sec
    stopped = {names[t.run_id]: t.stopped_at or 0 for t in trials if t.stopped}
    path = figures.loss_curves(figdir / "losses.png", panels, stopped)
    sec.blocks.append(Figure(path, "Training loss and held-out loss per trial; a cross: stopped "
                                   "early by the scheduler."))  # fmt: skip
    return sec


def _early(done: Sequence[Trial], settings: Settings, figdir: Path) -> Section | None:
    held = heldout_metric(done)
    if held is None:
        return None
    sig = early_signals(done, held)
    found = {k: v for k, v in sig.items() if isinstance(v, dict)}
    if not found:
        return None
    steps = sig["steps"]
    step = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]}"
    path = figures.rank_scatter(
        figdir / "early_signal.png", {k: (v["ranks"], v["rho"]) for k, v in found.items()}
    )
    lines = ", ".join(f"{k} ρ = {v['rho']:.2f} (p = {v['p']:.2g})" for k, v in found.items())
    return Section("Early signals", [
        f"Do the first steps tell which trials will end best (Pareja et al.)? Over {sig['trials']} "
        f"finished trials, each trial's rank at its first evaluation ({step}) against its "
        f"rank by the final {_short(held)}, Spearman's rank correlation: {lines}.",
        Figure(path, "Rank early against rank at the end; on the dashed line the early signal "
                     "predicted the final order."),
    ])  # fmt: skip


# ---------------------------------------------------------------------------- rendering


def render_markdown(report: Report, root: Path) -> str:
    out = [f"# {report.title}", ""]
    for sec in report.sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Figure):
                out += [
                    f"![{b.caption}]({b.path.relative_to(root).as_posix()})",
                    "",
                    f"*{b.caption}*",
                    "",
                ]
            else:
                out += _md_table(b) + [""]
    return "\n".join(out)


def _md_table(table: Table) -> list[str]:
    def cell(c: Cell) -> str:
        text = c.text.replace("|", "\\|")
        return f"**{text}**" if c.rank == 1 else f"<u>{text}</u>" if c.rank == 2 else text

    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    return lines


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def render_html(report: Report) -> str:
    """One self-contained page: the figures are inlined as base64 PNG."""
    esc = html.escape
    body = [f"<h1>{esc(report.title)}</h1>"]
    for sec in report.sections:
        body.append(f"<h2>{esc(sec.title)}</h2>")
        for b in sec.blocks:
            if isinstance(b, str):
                body.append(f"<p>{esc(b)}</p>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.path.read_bytes()).decode()
                body.append(
                    f'<figure><img alt="{esc(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(b.caption)}</figcaption></figure>"
                )
            else:
                body.append(_html_table(b))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(report.title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_table(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = html.escape(c.text)
        return (
            f"<strong>{text}</strong>" if c.rank == 1 else f"<u>{text}</u>" if c.rank == 2 else text
        )

    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def log_report(sweeps: Sequence[Sweep], out: Path, client: Any) -> list[str]:
    """Log the report folder to each sweep's latest parent run as ``report/``."""
    logged = []
    for s in sweeps:
        if not s.parents:
            continue
        parent = max(s.parents, key=lambda p: p.info.start_time)
        client.log_artifacts(parent.info.run_id, str(out), "report")
        logged.append(parent.info.run_id)
    return logged
