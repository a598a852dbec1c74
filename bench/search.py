"""Benchmark: the mixture searchers at the same budget of trials on the same space, 3 seeds.

experiments/search_quickstart.yaml's mixture space (weights on the simplex over the three built-in
sources, Dirichlet(1), general at least 0.1) with everything else fixed, so that only the mixture
differs between trials: the amount at ``AMOUNT`` examples, multi-task, its base learning rate,
one epoch (``AMOUNT / 32`` optimizer steps), no scheduler, no generation task; the compared
metric is each trial's final ``eval/loss/weighted`` (the mean of the three held-out losses).

Searchers, each ``N`` trials one at a time, for each of ``SEEDS`` (``sweep.search.seed``),
interleaved in one Ray session (seed 0: every searcher, then seed 1, ...):

- ``stratified``: the uniform mixture (Aioli's baseline: equal shares of the sources), one trial
  (it does not depend on the searcher's seed: the experiment's seed, data and model init, is 0
  for every sweep);
- ``random``: Optuna's RandomSampler;
- ``tpe``: Optuna's multivariate TPE, ``STARTUP`` random trials first;
- ``mixing_law``: raymix's mixing-law sampler, the same ``STARTUP`` random trials, then the
  optimum of the laws fitted per source's held-out loss (explore 0.2).

The start-up trials of tpe and mixing_law are the random searcher's with the same seed (checked
and printed), so the three differ only after them.

Everything is read back from MLflow (the sweep's child runs, in start order). Printed: per seed
the best metric after ``N`` trials of each searcher, the medians over seeds with the min-max and
their ratio to random's, the median best-so-far after each trial, the walls, and every trial.

``--trials N`` and ``--startup S`` change the budget (default 8 and 5); ``--smoke`` runs 6 trials
(5 random) of 1 seed to check the code path (its figures mean nothing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.config import ExperimentConfig, load  # noqa: E402
from raymix.sweep.tuner import init_ray, run_sweep  # noqa: E402
from raymix.tracking import MlflowTracker, resolve_uri  # noqa: E402

N = 8  # trials per sweep
STARTUP = 5  # random start-up trials of tpe and mixing_law (the law needs sources + 2)
SEEDS = (0, 1, 2)
ALGORITHMS = ("stratified", "random", "tpe", "mixing_law")
AMOUNT = 1500
EPOCHS = 1
METRIC = "eval/loss/weighted"

SMOKE = {"n": 6, "startup": 5, "seeds": (0,)}


@dataclass
class Sweep:
    """One sweep as MLflow recorded it."""

    algorithm: str
    seed: int
    finals: list[float]  # each trial's final metric, in start order
    points: list[str]  # each trial's point, short
    wall: float  # run_sweep's seconds
    trial_walls: list[float]  # each trial's MLflow run, end - start
    eval_s: list[float]  # each trial's time/eval_s (held-out loss and generation)

    @property
    def curve(self) -> list[float]:
        """The best metric after each trial."""
        out: list[float] = []
        for v in self.finals:
            out.append(min(v, out[-1]) if out else v)
        return out


def mixture_only(tmp: str, n: int, amount: int = AMOUNT) -> list[str]:
    """search_quickstart's overrides that leave only the mixture to search: ``n`` trials at
    ``amount`` examples, ``EPOCHS`` epoch, multi-task, no scheduler, no evaluation during
    training, no generation task, stored under ``tmp``."""
    return [
        "sweep.scheduler={name: none}",
        "sweep.space={}",
        f"sweep.num_samples={n}",
        f"mixture.space.amount={{unit: examples, fixed: {amount}}}",
        f"train.epochs={EPOCHS}",
        "train.eval_every=null",
        "train.report_every=100000",
        "eval.tasks=[]",
        f"sweep.storage_path={tmp}/runs",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "tracking.log_checkpoint=false",
    ]


def _config(tmp: str, algorithm: str, seed: int, n: int, startup: int) -> ExperimentConfig:
    search = algorithm
    overrides = []
    if algorithm == "stratified":  # equal shares: the space's weights pinned to one point
        search, n = "random", 1
        overrides.append(
            "mixture.space.weights={ranges: {math: [1, 1], code: [1, 1], general: [1, 1]}}"
        )
    overrides += mixture_only(tmp, n)
    overrides.append(
        f"sweep.search={{algorithm: {search}, seed: {seed}, n_startup_trials: {startup}}}"
    )
    cfg = load(ROOT / "experiments" / "search_quickstart.yaml", overrides)
    assert cfg.sweep.metric == METRIC and cfg.sweep.mode == "min"
    return cfg


def _point(params: dict[str, str]) -> str:
    shares = "/".join(
        f"{float(params[f'mixture.weight.{s}']):.2f}" for s in ("math", "code", "general")
    )
    return f"m/c/g {shares} x{params['mixture.total']}"


def run(cfg: ExperimentConfig, algorithm: str, seed: int) -> Sweep:
    """One sweep, read back from MLflow."""
    start = time.perf_counter()
    outcome = run_sweep(cfg)
    wall = time.perf_counter() - start
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} trial(s) failed; see the Tune output above")
    tracker = MlflowTracker(outcome.tracking_uri)
    runs = tracker.trial_runs(outcome.parent_run_id)
    if len(runs) != cfg.sweep.num_samples:
        raise RuntimeError(f"{len(runs)} trial runs, expected {cfg.sweep.num_samples}")
    finals, points, walls, evals = [], [], [], []
    for r in runs:
        walls.append((r.info.end_time - r.info.start_time) / 1000)
        evals.append(r.data.metrics.get("time/eval_s", float("nan")))
        hist = tracker.client.get_metric_history(r.info.run_id, METRIC)
        finals.append(max(hist, key=lambda m: (m.step, m.timestamp)).value)
        points.append(_point(r.data.params))
    return Sweep(algorithm, seed, finals, points, wall, walls, evals)


def _spread(values: list[float], fmt: str = ".4f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    args = sys.argv[1:]
    smoke = "--smoke" in args
    n = int(args[args.index("--trials") + 1]) if "--trials" in args else N
    startup = int(args[args.index("--startup") + 1]) if "--startup" in args else STARTUP
    if smoke:
        n, startup = SMOKE["n"], SMOKE["startup"]
    seeds = SMOKE["seeds"] if smoke else SEEDS
    sweeps: dict[tuple[str, int], Sweep] = {}
    with tempfile.TemporaryDirectory() as tmp:
        first = _config(tmp, "random", seeds[0], n, startup)
        init_ray(first, resolve_uri(first.tracking.uri), None)  # one session for every sweep
        for seed in seeds:
            for algorithm in ALGORITHMS:
                if algorithm == "stratified" and seed != seeds[0]:
                    sweeps[algorithm, seed] = sweeps[algorithm, seeds[0]]  # the same one trial
                    continue
                cfg = _config(tmp, algorithm, seed, n, startup)
                sweeps[algorithm, seed] = run(cfg, algorithm, seed)
    report(sweeps, seeds, n, startup, smoke)


def report(
    sweeps: dict[tuple[str, int], Sweep], seeds: tuple[int, ...], n: int, startup: int,
    smoke: bool,
) -> None:  # fmt: skip
    print()
    print(
        f"bench/search{' --smoke (code path only, figures meaningless)' if smoke else ''}: "
        f"{', '.join(ALGORITHMS)}; {n} trials a sweep ({startup} random start-up trials for tpe "
        f"and mixing_law; stratified: the uniform mixture, 1 trial), seeds "
        f"{', '.join(map(str, seeds))}, interleaved in one Ray session; search_quickstart's "
        f"mixture space at {AMOUNT} examples, {EPOCHS} epoch, multi-task, no scheduler, no "
        f"generation task; best {METRIC} (min)"
    )
    searched = [a for a in ALGORITHMS if a != "stratified"]
    for seed in seeds:
        r = sweeps["random", seed]
        same = {
            a: sum(x == y for x, y in zip(r.points[:startup], sweeps[a, seed].points[:startup],
                                          strict=True))
            for a in ("tpe", "mixing_law")
        }  # fmt: skip
        print(
            f"  seed {seed}: "
            + ", ".join(f"{a} {sweeps[a, seed].curve[-1]:.4f}" for a in ALGORITHMS)
            + "; start-up points = random's: "
            + ", ".join(f"{a} {v}/{startup}" for a, v in same.items())
        )
    best = {a: [sweeps[a, s].curve[-1] for s in seeds] for a in ALGORITHMS}
    med = {a: statistics.median(v) for a, v in best.items()}
    print("  median best over seeds (min-max), and its ratio to random's (below 1: lower loss):")
    for a in ALGORITHMS:
        print(f"    {a:11} {med[a]:.4f} ({_spread(best[a])})  ratio {med[a] / med['random']:.4f}")
    print("  median best-so-far after trial k (over seeds):")
    print("    " + f"{'k':>3} " + " ".join(f"{a:>11}" for a in searched))
    for k in range(n):
        row = [statistics.median(sweeps[a, s].curve[k] for s in seeds) for a in searched]
        note = "  (random start-up)" if k < startup else ""
        print(f"    {k + 1:>3} " + " ".join(f"{v:11.4f}" for v in row) + note)
    walls = {a: [sweeps[a, s].wall for s in seeds] for a in searched}
    print("  wall per sweep (run_sweep, Ray up): " + ", ".join(
        f"{a} {statistics.median(w):.0f} s ({_spread(w, '.0f')})" for a, w in walls.items()))  # fmt: skip
    trial_walls = [w for sw in sweeps.values() for w in sw.trial_walls]
    eval_s = [e for sw in sweeps.values() for e in sw.eval_s]
    print(
        f"  trial wall (MLflow run) median {statistics.median(trial_walls):.0f} s "
        f"({_spread(trial_walls, '.0f')}), of which held-out loss {statistics.median(eval_s):.1f} s"
    )
    print("  trials (final metric, point), in order:")
    for seed in seeds:
        for a in ALGORITHMS:
            sw = sweeps[a, seed]
            for i, (v, p) in enumerate(zip(sw.finals, sw.points, strict=True)):
                print(f"    {a:11} seed {seed} #{i + 1}: {v:.4f}  {p}")


if __name__ == "__main__":
    main()
