"""Training strategies compile a mixture's rows into stages: multitask = one stage
of everything; sequential = one stage per group in the given order; mixed_sequential =
specialised sources, then general; dmt(k) = specialised, then general + a seeded k fraction of
each specialised source's rows (Dong et al.'s dual-stage mixed fine-tuning)."""

from __future__ import annotations

from raymix.config.schema import ExperimentConfig
from raymix.data.sources import rng_for
from raymix.errors import ConfigError


def compile_stages(
    cfg: ExperimentConfig, rows: dict[str, list[int]], abilities: dict[str, str]
) -> list[tuple[str, dict[str, list[int]]]]:
    """(stage name, {source: row ids}) per stage; sources with no rows are left out, and so are
    stages left empty (a math-only mixture under dmt is one stage)."""
    st = cfg.strategy
    present = [n for n in rows if rows[n]]
    if st.name == "multitask":
        groups = [("multitask", present)]
    elif st.name == "sequential":
        order = st.order or [[n] for n in present]
        missing = sorted(set(present) - {n for g in order for n in g})
        if missing:
            raise ConfigError(
                f"strategy.order: source(s) {', '.join(missing)} of the mixture are in no stage"
            )
        groups = [("+".join(g), [n for n in g if n in present]) for g in order]
    else:
        specialised = set(st.specialised or [n for n, a in abilities.items() if a != "general"])
        spec = [n for n in present if n in specialised]
        general = [n for n in present if n not in specialised]
        groups = [("specialised", spec), ("general", general)]
    stages = [(name, {n: list(rows[n]) for n in members}) for name, members in groups if members]
    if st.name == "dmt" and len(stages) == 2:
        _add_replay(cfg, stages)
    return stages


def _add_replay(cfg: ExperimentConfig, stages: list[tuple[str, dict[str, list[int]]]]) -> None:
    first, (name, second) = stages[0][1], stages[1]
    for src, ids in first.items():
        m = int(round(cfg.strategy.k * len(ids)))
        if m:
            pick = rng_for(cfg.seed, "dmt", src).choice(len(ids), size=m, replace=False)
            second[src] = sorted(ids[int(i)] for i in pick)
    stages[1] = (f"{name}+replay", second)


def stage_epochs(cfg: ExperimentConfig, n_stages: int) -> list[int]:
    """Epochs of each stage: strategy.epochs, else train.epochs for every stage."""
    given = cfg.strategy.epochs
    if given is None:
        return [cfg.train.epochs] * n_stages
    if len(given) != n_stages:
        raise ConfigError(
            f"strategy.epochs: {len(given)} value(s) for {n_stages} stage(s) of strategy "
            f"{cfg.strategy.name!r}"
        )
    return list(given)
