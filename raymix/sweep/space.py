"""The experiment's search space → what Tune's searcher samples, and a trial's sampled config →
its experiment config and mixture.

A trial's config is flat, keyed by dotted names: ``mixture`` (a name of ``mixture.grid``) or
``mixture.draw.<source>`` and ``mixture.amount`` (a point of ``mixture.space``), and every
searched key of ``sweep.space`` that applies (``train.lr``, ``strategy.name``, ...).

- ``grid`` search runs Tune's ``BasicVariantGenerator`` over one ``grid_search`` of the grid's
  points (mixture names or the finite space's amounts, crossed with grid parameters; conditional
  grid parameters only where their condition holds), with the other parameters as Tune domains.
- ``random``, ``tpe`` and ``nsga2`` run Tune's ``OptunaSearch`` over :class:`DefineByRun`, with
  Optuna's RandomSampler, TPESampler or NSGAIISampler: conditional parameters are sampled only
  when their condition holds, and ``raymix data mix --sample N`` draws the first N points of the
  random searcher with the same function.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from raymix.config import with_params
from raymix.config.schema import ExperimentConfig, SpaceParam, condition_depths
from raymix.data.simplex import DRAW_EPS, DRAW_PREFIX, MixturePoint

MIXTURE = "mixture"
DRAW = DRAW_PREFIX
AMOUNT = "mixture.amount"
POINT = "point"  # grid search: the grid point, one dict


def search_seed(cfg: ExperimentConfig) -> int:
    """The searcher's seed: ``sweep.search.seed``, else the experiment's."""
    seed = cfg.sweep.search.seed
    return cfg.seed if seed is None else seed


def trial_setup(
    cfg: ExperimentConfig, config: Mapping[str, Any]
) -> tuple[ExperimentConfig, str | MixturePoint, dict[str, Any]]:
    """A trial's experiment config (its searched parameters applied), its mixture (a grid name
    or a point of the space) and the searched values it was given."""
    flat = {**config.get(POINT, {}), **{k: v for k, v in config.items() if k != POINT}}
    searched = {k: v for k, v in flat.items() if k in cfg.sweep.space}
    mixture: str | MixturePoint
    if cfg.mixture.grid is not None:
        mixture = flat[MIXTURE]
    else:
        mixture = MixturePoint(
            {k.removeprefix(DRAW): float(v) for k, v in sorted(flat.items()) if k.startswith(DRAW)},
            float(flat[AMOUNT]),
        )
    return with_params(cfg, searched), mixture, searched


class DefineByRun:
    """The space as an Optuna define-by-run function: called on a trial, it suggests every
    searched value and returns the constants (a fixed amount, a single mixture). A class, not
    a closure: Tune pickles the searcher with its space when it saves the sweep's state."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg

    def __call__(self, trial: Any) -> dict[str, Any]:
        cfg = self.cfg
        space = cfg.mixture.space
        const: dict[str, Any] = {}
        const_mixture = None
        if space is None:
            grid = cfg.mixture.names
            if len(grid) == 1:
                const[MIXTURE] = grid[0]
            else:
                const_mixture = trial.suggest_categorical(MIXTURE, grid)
        else:
            w = space.weights
            for n in space.simplex([s.name for s in cfg.sources]):
                if w.dirichlet is not None:
                    trial.suggest_float(DRAW + n, DRAW_EPS, 1 - DRAW_EPS)
                elif w.ranges is not None:
                    lo, hi = w.ranges[n]
                    if lo == hi:
                        const[DRAW + n] = lo
                    else:
                        trial.suggest_float(DRAW + n, lo, hi)
            a = space.amount
            values = a.values()
            if values is not None and len(values) == 1:
                const[AMOUNT] = values[0]
            elif values is not None:
                const[AMOUNT] = trial.suggest_categorical(AMOUNT, values)
            else:
                assert a.loguniform is not None
                trial.suggest_float(AMOUNT, *a.loguniform, log=True)
        chosen: dict[str, Any] = {}
        if space is None:  # conditions may name the trial's mixture
            chosen[MIXTURE] = const.get(MIXTURE) or const_mixture
        for key, p in _ordered(cfg.sweep.space):
            if p.when and not all(chosen.get(d) in allowed for d, allowed in p.when.items()):
                continue
            chosen[key] = _suggest(trial, key, p, const)
        return const


def _ordered(space: Mapping[str, SpaceParam]) -> list[tuple[str, SpaceParam]]:
    """Each parameter after those its conditions name, each depth sorted by key."""
    depth = condition_depths(space)
    return sorted(space.items(), key=lambda kv: (depth[kv[0]], kv[0]))


def _suggest(trial: Any, key: str, p: SpaceParam, const: dict[str, Any]) -> Any:
    values = p.values()
    if values is not None:
        if all(v is None or isinstance(v, bool | int | float | str) for v in values):
            return trial.suggest_categorical(key, values)
        # Optuna's categoricals hold plain values only: pick an index, pass the value on
        const[key] = values[trial.suggest_categorical(f"{key}#index", list(range(len(values))))]
        return const[key]
    if p.uniform is not None:
        return trial.suggest_float(key, *p.uniform)
    if p.loguniform is not None:
        return trial.suggest_float(key, *p.loguniform, log=True)
    assert p.randint is not None
    return trial.suggest_int(key, p.randint[0], p.randint[1] - 1)


def grid_points(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Grid search: every point of the grid (mixtures or the finite space's amounts, crossed
    with the unconditional grid parameters, then each with the conditional grid parameters
    whose condition holds)."""
    if cfg.mixture.grid is not None:
        base: list[dict[str, Any]] = [{MIXTURE: n} for n in cfg.mixture.names]
    else:
        assert cfg.mixture.space is not None
        amounts = cfg.mixture.space.amount.values() or []
        base = [{AMOUNT: a} for a in amounts]
    # each conditional grid parameter expands the points where its condition holds, in the
    # order of its conditions' depth (k on strategy.name on mixture)
    points = base
    for key, p in _ordered(cfg.sweep.space):
        if p.grid is None:
            continue
        out = []
        for point in points:
            holds = not p.when or all(point.get(d) in allowed for d, allowed in p.when.items())
            out += [{**point, key: v} for v in p.grid] if holds else [point]
        points = out
    return points


def param_space(cfg: ExperimentConfig) -> dict[str, Any]:
    """Grid search's Tune param space: one grid over :func:`grid_points`, the non-grid
    parameters as Tune domains (sampled per trial, seeded by the searcher)."""
    from ray import tune

    out: dict[str, Any] = {POINT: tune.grid_search(grid_points(cfg))}
    for key, p in sorted(cfg.sweep.space.items()):
        if p.grid is None:
            out[key] = _domain(p)
    return out


def _domain(p: SpaceParam) -> Any:
    from ray import tune

    if p.choice is not None:
        return tune.choice(list(p.choice))
    if p.uniform is not None:
        return tune.uniform(*p.uniform)
    if p.loguniform is not None:
        return tune.loguniform(*p.loguniform)
    assert p.randint is not None
    return tune.randint(*p.randint)


def sampler(cfg: ExperimentConfig) -> Any:
    """The Optuna sampler of ``sweep.search`` (random, tpe, nsga2 or mixing_law), seeded."""
    import optuna

    s, seed = cfg.sweep.search, search_seed(cfg)
    if s.algorithm == "mixing_law":
        from raymix.sweep.law_sampler import MixingLawSampler

        return MixingLawSampler(cfg, seed)
    if s.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    with warnings.catch_warnings():  # multivariate/group TPE is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=s.n_startup_trials, multivariate=True, group=True
        )


def objectives(cfg: ExperimentConfig) -> tuple[str | list[str], str | list[str]]:
    """The searcher's metric(s) and mode(s)."""
    s = cfg.sweep.search
    if s.metrics is not None:
        assert s.modes is not None
        return list(s.metrics), list(s.modes)
    return cfg.sweep.metric, cfg.sweep.mode


def sample_points(cfg: ExperimentConfig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` points a ``random`` search of ``cfg`` tries (Optuna's RandomSampler with
    the searcher's seed, through :class:`DefineByRun`, as ``OptunaSearch`` asks them)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=search_seed(cfg)))
    define = DefineByRun(cfg)
    points = []
    for _ in range(n):
        trial = study.ask()
        const = define(trial)
        points.append({**trial.params, **const})
    return points
