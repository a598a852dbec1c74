"""Mixture plans: a named mixture spec compiles to exact per-source row ids from a seeded
generator, then the strategy splits them into stages.

Spec kinds (schema ``MixtureSpec``): absolute counts or fractions of a source (above 1 upsamples:
whole repeats plus a seeded remainder); Dong's normalised ratio k; Wang's specialised : general
ratio; a total budget in examples or tokens split by proportions (largest remainder). The plan is
the trial's manifest: seed, stages with row ids and token counts, held-out ids, source
fingerprints, cleaning and overlong counts, rows dropped per source and reason, emptied sub-tasks,
tokens cut by truncation, and a content hash over all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from raymix.config.schema import (
    BudgetMixture,
    ExperimentConfig,
    RatioMixture,
    SpecialisedRatioMixture,
)
from raymix.data.pipeline import PreparedSource
from raymix.data.plan import Plan, PlanStage, StageSource
from raymix.data.rounding import largest_remainder
from raymix.data.simplex import POINT_NAME, MixturePoint, fill, shares
from raymix.data.sources import rng_for
from raymix.data.strategies import compile_stages, stage_epochs
from raymix.errors import ConfigError

PLAN_VERSION = 3


Flagged = Mapping[str, Mapping[str, Sequence[int]]]  # eval task -> source -> contaminated rows


def build_plan(
    cfg: ExperimentConfig,
    mixture: str | MixturePoint,
    sources: Mapping[str, PreparedSource],
    contamination: Flagged | None = None,
) -> Plan:
    """Compile a named mixture of ``mixture.grid``, or a point of ``mixture.space``, into its
    plan (see the module docstring).

    ``contamination`` names, per eval task and source, the rows that overlap the eval set; with
    ``eval.contamination.drop`` they leave the training pools before sampling.
    """
    if isinstance(mixture, str) and mixture not in cfg.mixture.names:
        raise ConfigError(
            f"mixture {mixture!r} is not in mixture.grid; allowed: "
            + (", ".join(cfg.mixture.names) or "none (the experiment has a mixture.space)")
        )
    flagged = {
        name: set().union(*(set(per.get(name, ())) for per in (contamination or {}).values()))
        for name in sources
    }
    dropped = {n: sum(1 for i in s.train_ids if i in flagged[n]) for n, s in sources.items()}
    before = sources
    if cfg.eval.contamination.drop:
        sources = {
            n: replace(s, train_ids=[i for i in s.train_ids if i not in flagged[n]])
            for n, s in sources.items()
        }
    if isinstance(mixture, MixturePoint):
        rows, record = _point_rows(cfg, mixture, sources)
        name = POINT_NAME
    else:
        spec = (cfg.mixture.grid or {})[mixture]
        rows, name = _rows(cfg, mixture, spec, sources), mixture
        record = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
    stages = compile_stages(cfg, rows, {n: s.ability for n, s in sources.items()})
    epochs = stage_epochs(cfg, len(stages))
    plan = Plan(
        version=PLAN_VERSION,
        experiment=cfg.name,
        mixture=name,
        spec=record,
        seed=cfg.seed,
        strategy=cfg.strategy.model_dump(mode="json"),
        template=cfg.template,
        max_length=cfg.train.max_length,
        stages=[
            PlanStage(
                name,
                e,
                {
                    n: StageSource(
                        count=len(ids),
                        tokens=_tokens(sources[n], ids),
                        truncated_tokens=sources[n].cache.truncated_tokens(ids),
                        row_ids=ids,
                    )
                    for n, ids in sorted(parts.items())
                },
            )
            for (name, parts), e in zip(stages, epochs, strict=True)
        ],
        heldout={n: s.heldout_ids for n, s in sorted(sources.items())},
        fingerprints={n: s.fingerprint for n, s in sorted(sources.items())},
        token_caches={n: s.cache.key for n, s in sorted(sources.items())},
        cleaning={n: s.cleaning for n, s in sorted(sources.items())},
        overlong={
            n: {
                "policy": cfg.train.overlong,
                "rows": int(s.cache.meta.get("overlong", 0)),
                "dropped": s.dropped_overlong,
            }  # fmt: skip
            for n, s in sorted(sources.items())
        },
        dropped={
            n: {**s.dropped(), "contamination": dropped[n] if cfg.eval.contamination.drop else 0}
            for n, s in sorted(sources.items())
        },
        lost_subtasks={n: s.lost_subtasks for n, s in sorted(sources.items()) if s.lost_subtasks},
        truncation={n: s.truncation() for n, s in sorted(sources.items())},
        contamination=(
            None
            if contamination is None
            else _contamination(cfg, contamination, before, rows, dropped)
        ),
    )
    return plan.with_hash()


def _contamination(
    cfg: ExperimentConfig,
    contamination: Flagged,
    sources: Mapping[str, PreparedSource],
    rows: Mapping[str, Sequence[int]],
    dropped: Mapping[str, int],
) -> dict[str, Any]:
    """Per task and source: overlapping rows in the training pool before any drop (``pool_rows``
    of ``pool_total``) and in this plan (``plan_rows`` of ``plan_total``: 0 after a drop)."""
    tasks: dict[str, dict[str, dict[str, int]]] = {}
    for task, per in sorted(contamination.items()):
        tasks[task] = {}
        for n in sorted(sources):
            bad = set(per.get(n, ()))
            pool = [i for i in sources[n].train_ids if i in bad]
            tasks[task][n] = {
                "pool_rows": len(pool),
                "pool_total": len(sources[n].train_ids),
                "plan_rows": sum(1 for i in rows.get(n, ()) if i in bad),
                "plan_total": len(rows.get(n, ())),
            }
    c = cfg.eval.contamination
    return {
        "ngram": c.ngram,
        "drop": c.drop,
        "dropped": dict(sorted(dropped.items())) if c.drop else {},
        "tasks": tasks,
    }


def _rows(
    cfg: ExperimentConfig, mixture: str, spec: Any, sources: Mapping[str, PreparedSource]
) -> dict[str, list[int]]:
    """Row ids per source for one spec."""
    key = f"mixture.grid.{mixture}"

    def pool(n: str) -> list[int]:
        return sources[n].train_ids

    def count(n: str, amount: int | float) -> int:
        return amount if isinstance(amount, int) else int(round(amount * len(pool(n))))

    if isinstance(spec, RatioMixture):
        r = spec.ratio
        counts = {n: count(n, a) for n, a in r.fixed.items()}
        counts.update({n: int(round(r.k * count(n, a))) for n, a in r.scaled.items()})
    elif isinstance(spec, SpecialisedRatioMixture):
        r2 = spec.specialised_ratio
        counts = {n: count(n, a) for n, a in r2.general.items()}
        total = int(round(r2.ratio * sum(counts.values())))
        counts.update(largest_remainder(total, {n: 1.0 for n in r2.specialised}))
    elif isinstance(spec, BudgetMixture):
        b = spec.budget
        shares = largest_remainder(b.total, b.proportions)
        if b.unit == "tokens":
            return {
                n: draw_tokens(
                    pool(n),
                    sources[n].cache.lengths,
                    t,
                    rng_for(cfg.seed, "mixture", n),
                    b.allow_upsampling,
                    f"{key}.budget, source {n!r}",
                )  # fmt: skip
                for n, t in sorted(shares.items())
            }
        for n, c in shares.items():
            if c > len(pool(n)) and not b.allow_upsampling:
                raise ConfigError(
                    f"{key}.budget: source {n!r} needs {c} rows but has {len(pool(n))}; set "
                    "allow_upsampling: true to repeat rows, or lower the total"
                )
        counts = shares
    else:
        counts = {n: count(n, a) for n, a in spec.items()}
    return {
        n: draw_rows(pool(n), c, rng_for(cfg.seed, "mixture", n)) for n, c in sorted(counts.items())
    }


def _point_rows(
    cfg: ExperimentConfig, point: MixturePoint, sources: Mapping[str, PreparedSource]
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Row ids per source for a point of ``mixture.space``, and the point's record for the
    manifest: the draws, the shares, the amount and the total it means, and the counts."""
    space = cfg.mixture.space
    assert space is not None
    simplex = space.simplex([s.name for s in cfg.sources])
    unit = space.amount.unit
    pools = {n: sources[n].train_ids for n in simplex}
    if unit == "tokens":
        sizes = {n: _tokens(sources[n], ids) for n, ids in pools.items()}
        total = int(round(point.amount))
    else:
        sizes = {n: len(ids) for n, ids in pools.items()}
        total = int(round(point.amount * (sum(sizes.values()) if unit == "data" else 1)))
    weights = shares(space, simplex, point.draws, sizes)
    caps = None if space.allow_upsampling else sizes
    counts = fill(total, weights, caps, f"mixture.space.amount ({point.amount:g} {unit})")
    record = {
        "space": {
            "draws": dict(point.draws),
            "weights": weights,
            "amount": point.amount,
            "unit": unit,
            "total": total,
            "counts": counts,
        }
    }
    rng = {n: rng_for(cfg.seed, "mixture", n) for n in simplex}
    if unit == "tokens":
        rows = {
            n: draw_tokens(
                pools[n],
                sources[n].cache.lengths,
                t,
                rng[n],
                space.allow_upsampling,
                f"mixture.space, source {n!r}",
            )  # fmt: skip
            for n, t in sorted(counts.items())
            if t
        }
    else:
        rows = {n: draw_rows(pools[n], c, rng[n]) for n, c in sorted(counts.items()) if c}
    return rows, record


def draw_rows(pool: Sequence[int], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` row ids from ``pool``: whole repeats of the pool, then a seeded sample without
    replacement for the remainder; sorted so the manifest reads as a multiset."""
    if count and not pool:
        raise ConfigError("a mixture asks for rows of a source with an empty train pool")
    repeats, rest = divmod(count, len(pool)) if pool else (0, 0)
    extra = rng.choice(np.asarray(pool, dtype=np.int64), size=rest, replace=False)
    return sorted([int(i) for i in pool] * repeats + [int(i) for i in extra])


def draw_tokens(
    pool: Sequence[int],
    lengths: np.ndarray,
    target: int,
    rng: np.random.Generator,
    allow_upsampling: bool,
    key: str,
) -> list[int]:
    """The shortest prefix of a seeded permutation of ``pool`` (repeated if allowed) whose tokens
    reach ``target``."""
    lens = np.asarray(lengths)[np.asarray(pool, dtype=np.int64)] if pool else np.zeros(0)
    available = int(lens.sum())
    if target > available and not allow_upsampling:
        raise ConfigError(
            f"{key}: {target} tokens asked of a source that has {available}; set "
            "allow_upsampling: true to repeat rows, or lower the total"
        )
    if target and available == 0:
        raise ConfigError(f"{key}: a source with no tokens cannot fill {target} tokens")
    repeats, rest = divmod(target, available) if available else (0, 0)
    order = rng.permutation(len(pool))
    cum = np.cumsum(lens[order])
    take = int(np.searchsorted(cum, rest, side="left")) + 1 if rest else 0
    picked = [int(pool[i]) for i in order[:take]]
    return sorted([int(i) for i in pool] * repeats + picked)


def _tokens(source: PreparedSource, ids: Sequence[int]) -> int:
    return (
        int(np.asarray(source.cache.lengths)[np.asarray(ids, dtype=np.int64)].sum()) if ids else 0
    )
