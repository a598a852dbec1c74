"""Benchmark: Optuna TPE against random search with the same budget of trials on the same space.

experiments/search_quickstart.yaml's space, unchanged (its mixture.space: weights on the simplex
over the three built-in sources, an amount in examples; its sweep.space: the learning rate, the
strategy, DMT's k when the strategy is dmt), without its scheduler, so every trial runs to the
end and its final ``eval/loss/weighted`` (min) counts. Each sweep is ``N`` trials, one at a time,
with ``sweep.search.algorithm`` random or tpe (``n_startup_trials`` = ``STARTUP`` < ``N``: TPE's
first ``STARTUP`` points are random, its model picks the rest), for each of ``SEEDS``
(``sweep.search.seed``), interleaved in one Ray session: random seed 0, tpe seed 0, random seed 1,
and so on. The experiment's own seed (data, model init) stays 0, so a point's trial is the same
whichever searcher proposes it; TPE's start-up points are the random searcher's with the same
seed (checked and printed), so the two sides differ only after them.

The budget: a trial costs about 45 s here whatever it trains (Ray, worker and DeepSpeed
start-up), so 2 searchers x 3 seeds x ``N`` trials must fit in about 25 minutes: ``N`` = 4 with
2 start-up trials (24 trials: 18.5 minutes measured on a quiet machine), not 6 (36 trials, about
28 minutes; 5 would be about 23). Trials are shortened to ``EPOCHS`` epoch (the file's amount, so
``amount / 32`` optimizer steps), with no evaluation during training (no scheduler reads one)
and no generation task at the end (``eval.tasks: []``: the compared metric is the held-out
loss, computed at the end as always). With one epoch, a larger amount also means more steps,
so part of what a searcher can learn here is "more data, higher learning rate".

Everything is read back from MLflow (the sweep's child runs, in start order). Printed: per seed
the best metric after ``N`` trials for each searcher and their ratio, the medians over seeds and
their ratio with the min-max, the median best-so-far after each trial, and the walls.

``--smoke`` runs 3 trials (2 random ones for TPE) of 1 seed, to check the code path and time a
trial (its figures mean nothing).
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

N = 4  # trials per sweep
STARTUP = 2  # TPE's random start-up trials
SEEDS = (0, 1, 2)
ALGORITHMS = ("random", "tpe")
EPOCHS = 1
METRIC = "eval/loss/weighted"

SMOKE = {"n": 3, "startup": 2, "seeds": (0,)}


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


def _config(tmp: str, algorithm: str, seed: int, smoke: bool) -> ExperimentConfig:
    n, startup = (SMOKE["n"], SMOKE["startup"]) if smoke else (N, STARTUP)
    overrides = [
        "sweep.scheduler={name: none}",
        f"sweep.num_samples={n}",
        f"sweep.search={{algorithm: {algorithm}, seed: {seed}, n_startup_trials: {startup}}}",
        f"train.epochs={EPOCHS}",
        "train.eval_every=null",
        "train.report_every=100000",
        "eval.tasks=[]",
        f"sweep.storage_path={tmp}/runs",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "tracking.log_checkpoint=false",
    ]
    cfg = load(ROOT / "experiments" / "search_quickstart.yaml", overrides)
    assert cfg.sweep.metric == METRIC and cfg.sweep.mode == "min"
    return cfg


def _point(params: dict[str, str]) -> str:
    shares = "/".join(
        f"{float(params[f'mixture.weight.{s}']):.2f}" for s in ("math", "code", "general")
    )
    strategy = params["strategy.name"]
    if strategy == "dmt":
        strategy += f"(k={float(params['strategy.k']):.3f})"
    return (
        f"m/c/g {shares} x{params['mixture.total']} {strategy} lr {float(params['train.lr']):.1e}"
    )


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
    smoke = "--smoke" in sys.argv[1:]
    seeds = SMOKE["seeds"] if smoke else SEEDS
    sweeps: dict[tuple[str, int], Sweep] = {}
    with tempfile.TemporaryDirectory() as tmp:
        first = _config(tmp, ALGORITHMS[0], seeds[0], smoke)
        init_ray(first, resolve_uri(first.tracking.uri), None)  # one session for every sweep
        for seed in seeds:
            for algorithm in ALGORITHMS:
                cfg = _config(tmp, algorithm, seed, smoke)
                sweeps[algorithm, seed] = run(cfg, algorithm, seed)
    report(sweeps, seeds, first, smoke)


def report(
    sweeps: dict[tuple[str, int], Sweep], seeds: tuple[int, ...], cfg: ExperimentConfig, smoke: bool
) -> None:
    n, startup = cfg.sweep.num_samples, cfg.sweep.search.n_startup_trials
    assert cfg.mixture.space is not None and cfg.mixture.space.amount.loguniform is not None
    lo, hi = cfg.mixture.space.amount.loguniform
    batch = cfg.train.micro_batch_size * cfg.scaling.num_workers
    amount = f"{lo:g}-{hi:g} examples, about {-(-int(lo) // batch)}-{-(-int(hi) // batch)} steps"
    print()
    print(
        f"bench/search{' --smoke (code path only, figures meaningless)' if smoke else ''}: "
        f"random vs TPE (n_startup_trials {startup}), {n} trials a sweep, seeds "
        f"{', '.join(map(str, seeds))}, interleaved in one Ray session; search_quickstart's "
        f"space (amount {amount}), {EPOCHS} epoch a trial, no scheduler, no "
        f"generation task; "
        f"best {METRIC} (min) after {n} trials"
    )
    for seed in seeds:
        r, t = sweeps["random", seed], sweeps["tpe", seed]
        same = sum(a == b for a, b in zip(r.points[:startup], t.points[:startup], strict=True))
        print(
            f"  seed {seed}: random {r.curve[-1]:.4f}, tpe {t.curve[-1]:.4f}, ratio tpe/random "
            f"{t.curve[-1] / r.curve[-1]:.3f}; TPE start-up points = random's: "
            f"{same}/{startup}; wall random {r.wall:.0f} s, tpe {t.wall:.0f} s"
        )
    best = {a: [sweeps[a, s].curve[-1] for s in seeds] for a in ALGORITHMS}
    med = {a: statistics.median(v) for a, v in best.items()}
    per_seed = [t / r for t, r in zip(best["tpe"], best["random"], strict=True)]
    print(
        f"  median best   random {med['random']:.4f} ({_spread(best['random'])}), tpe "
        f"{med['tpe']:.4f} ({_spread(best['tpe'])}): ratio tpe/random {med['tpe'] / med['random']:.3f}"
        f" (per-seed ratios {_spread(per_seed, '.3f')}; below 1: TPE found a lower loss)"
    )
    print("  median best-so-far after trial k (over seeds):")
    print(f"    {'k':>3} {'random':>8} {'tpe':>8} {'tpe/random':>10}")
    for k in range(n):
        r_k = statistics.median(sweeps["random", s].curve[k] for s in seeds)
        t_k = statistics.median(sweeps["tpe", s].curve[k] for s in seeds)
        note = "  (TPE's random start-up)" if k < startup else ""
        print(f"    {k + 1:>3} {r_k:8.4f} {t_k:8.4f} {t_k / r_k:10.3f}{note}")
    walls = {a: [sweeps[a, s].wall for s in seeds] for a in ALGORITHMS}
    print(
        f"  wall per sweep (run_sweep, Ray up)  random {statistics.median(walls['random']):.0f} s "
        f"({_spread(walls['random'], '.0f')}), tpe {statistics.median(walls['tpe']):.0f} s "
        f"({_spread(walls['tpe'], '.0f')})"
    )
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
                print(f"    {a:6} seed {seed} #{i + 1}: {v:.4f}  {p}")


if __name__ == "__main__":
    main()
