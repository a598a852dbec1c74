"""Strategy settings that would do nothing, found when the experiment file is loaded.

A strategy that can only ever compile to one stage trains exactly like ``multitask`` and a DMT
with nothing to replay is ``mixed_sequential``; a run under such a name would report a study it
did not do. Those are :class:`ConfigError` s naming the key and what would work:

* ``sequential`` over one source, or with a ``strategy.order`` whose groups leave one stage;
* ``strategy.order`` that leaves out a source the mixtures use (today's plan-time error, raised
  before any data is read);
* ``mixed_sequential`` / ``dmt`` where every source the mixtures use is specialised, or none is
  (one stage; DMT's replay stage would be dropped without a word);
* ``dmt`` with ``strategy.k: 0`` (it replays nothing);
* ``multitask`` with ``strategy.epochs`` listing more than one stage.

Keys that are given (in the file, by ``--set`` or searched in ``sweep.space``) but that none of
the experiment's strategies reads (``order`` without ``sequential``, ``specialised`` without
``mixed_sequential`` / ``dmt``, ``k`` without ``dmt``, ``reset_optimizer`` with ``multitask`` only)
get a named warning on the ``raymix`` logger: switching ``strategy.name`` with ``--set`` for a
baseline is legitimate, so those are not errors.

The strategies considered are the values of ``sweep.space['strategy.name']`` when it is
searched, else ``strategy.name``. With several searched values, a value that would do nothing is
a warning (the first found) rather than an error: the others still make a study. Only the loaded file is checked: a trial's own configuration
(one point of the search) is not, so a search over ``strategy.k`` may include 0.
"""

from __future__ import annotations

import logging
from typing import Any

from raymix.config.schema import ExperimentConfig, mixture_sources
from raymix.errors import ConfigError

log = logging.getLogger("raymix")

STRATEGIES = ("multitask", "sequential", "mixed_sequential", "dmt")

_READ_BY = {
    "order": ("sequential",),
    "specialised": ("mixed_sequential", "dmt"),
    "k": ("dmt",),
    "reset_optimizer": ("sequential", "mixed_sequential", "dmt"),
}
"""Strategy keys and the strategies that read them."""


def check_strategy(cfg: ExperimentConfig, origin: str) -> list[str]:
    """Raise a ConfigError for a strategy that cannot do what its name says; return (and log)
    the warnings for strategy keys that no strategy of the experiment reads.

    Args:
        cfg: the validated experiment.
        origin: the experiment file, named in every message.
    """
    st, space = cfg.strategy, cfg.sweep.space
    searched = {k.removeprefix("strategy.") for k in space if k.startswith("strategy.")}
    names = _candidate_names(cfg)
    used = _used_sources(cfg)
    where = "sweep.space.strategy.name" if "name" in searched else f"strategy.name {names[0]!r}"
    order = st.order
    if "sequential" in names and order is not None and "order" not in searched:
        missing = [n for n in used if n not in {n for g in order for n in g}]
        if missing:  # the plan would fail on it: an error even when the name is searched
            raise ConfigError(
                f"{origin}: strategy.order: source(s) {', '.join(missing)} of the mixtures are "
                f"in no stage; every source the mixtures use ({', '.join(used)}) needs a group"
            )
    warnings = []
    try:
        if "sequential" in names and "order" not in searched:
            _check_sequential(cfg, used, origin, where)
        for name in ("mixed_sequential", "dmt"):
            if name in names and "specialised" not in searched:
                _check_two_stages(cfg, name, used, origin, where)
        if "dmt" in names and "k" not in searched and st.k == 0:
            raise ConfigError(
                f"{origin}: strategy.k: 0 makes dmt replay nothing, the same as "
                "mixed_sequential; allowed: 0 < k <= 1 (Dong et al. use 1/256), or "
                "strategy.name: mixed_sequential"
            )
    except ConfigError as e:
        if len(names) == 1:
            raise
        # a searched strategy: its other values still make a study; say which trials won't
        warnings.append(str(e).replace(f"{origin}: ", f"{origin}: warning: ", 1))
    if names == ["multitask"] and "epochs" not in searched and st.epochs and len(st.epochs) != 1:
        raise ConfigError(
            f"{origin}: strategy.epochs: {len(st.epochs)} values, but multitask has one stage; "
            "give one value (or set train.epochs)"
        )
    given = (st.model_fields_set - {"name", "epochs"}) | (searched & set(_READ_BY))
    for key in sorted(given):
        readers = _READ_BY.get(key)
        if readers and not set(readers) & set(names):
            how = "searched in sweep.space" if key in searched else "set"
            warnings.append(
                f"{origin}: warning: strategy.{key} is {how} but does nothing under "
                f"{where} (read only by {', '.join(readers)})"
            )
    for w in warnings:
        log.warning(w)
    return warnings


def _candidate_names(cfg: ExperimentConfig) -> list[str]:
    """The strategies the sweep's trials can use."""
    p = cfg.sweep.space.get("strategy.name")
    values = p.values() if p is not None else None
    if values is None:
        return [cfg.strategy.name]
    return [v for v in STRATEGIES if v in values]


def _used_sources(cfg: ExperimentConfig) -> list[str]:
    """The sources some mixture of the experiment can draw rows from, in the config's order."""
    names = [s.name for s in cfg.sources]
    if cfg.mixture.space is not None:
        used = set(cfg.mixture.space.simplex(names))
    else:
        used = set()
        for spec in (cfg.mixture.grid or {}).values():
            used |= _positive(spec)
    return [n for n in names if n in used]


def _positive(spec: Any) -> set[str]:
    if isinstance(spec, dict):
        return {n for n, v in spec.items() if v > 0}
    return mixture_sources(spec)


def _check_sequential(cfg: ExperimentConfig, used: list[str], origin: str, where: str) -> None:
    order = cfg.strategy.order
    if order is not None:
        stages = [g for g in order if set(g) & set(used)]
        if len(stages) <= 1:
            raise ConfigError(
                f"{origin}: strategy.order: {len(stages)} stage(s) with rows ({order}), so "
                f"sequential ({where}) trains exactly like multitask; give two or more groups "
                "of the sources the mixtures use, or strategy.name: multitask"
            )
    elif len(used) <= 1:
        raise ConfigError(
            f"{origin}: {where}: sequential over one source ({', '.join(used)}) is one stage, "
            "exactly like multitask; use strategy.name: multitask, or mixtures of two or more "
            f"sources (sources: {', '.join(s.name for s in cfg.sources)})"
        )


def _check_two_stages(
    cfg: ExperimentConfig, name: str, used: list[str], origin: str, where: str
) -> None:
    st = cfg.strategy
    if st.specialised is not None:
        specialised, how = set(st.specialised), f"strategy.specialised {st.specialised}"
    else:
        specialised = {s.name for s in cfg.sources if s.ability != "general"}
        how = (
            "the sources' abilities ("
            + ", ".join(f"{s.name}: {s.ability}" for s in cfg.sources if s.name in used)
            + ")"
        )
    spec = [n for n in used if n in specialised]
    if spec and len(spec) < len(used):
        return
    which = "every" if spec else "no"
    dropped = ", and its replay stage (k) is dropped" if name == "dmt" else ""
    raise ConfigError(
        f"{origin}: {where}: {which} source the mixtures use is specialised by {how}, so "
        f"{name} is one stage, exactly like multitask{dropped}; set strategy.specialised to "
        f"some but not all of {', '.join(used)} (the rest are the general stage), or "
        "strategy.name: multitask"
    )
