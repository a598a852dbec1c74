"""Benchmark: does the mixing law's recommendation beat the grid and stratified sampling?

On the embedded default (search_quickstart's three built-in sources and mixture space, everything
but the mixture fixed: ``AMOUNT`` examples, multi-task, one epoch, no scheduler, no generation
task), in one Ray session:

1. a random-search sweep of ``N`` trials over the simplex (general at least 0.1, as the space
   says);
2. ``raymix recommend``'s fit on it (Ye et al.'s law per source's held-out loss, equal weights,
   the sources' pools as bounds), and one trial of the recommended mixture;
3. the full grid: every mixture on the simplex in steps of 1/4 with general at least 1/4
   (10 trials);
4. stratified sampling: the uniform mixture (1/3 each), one trial.

Printed: each one's final ``eval/loss/weighted`` (the mean of the three held-out losses), the
recommendation's ratio to the grid's best and to stratified (below 1: lower loss), the random
search's own best, and the law's leave-one-out R² per source. One seed: the figures are single
trials, and the machine's noise is not in them (a trial's loss is deterministic from its seed).

Aioli (Chen et al., ICLR 2025) found no published mixing method that consistently beats
stratified sampling; Li et al. 2025 report SFT mixtures within 0.66 % of the grid's best.
``--smoke``: 8 random trials, a 3-point grid.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from search import mixture_only  # noqa: E402  (bench/search.py, beside this file)

from raymix.analysis.mixing_law import Target, recommend  # noqa: E402
from raymix.analysis.trials import read_trials  # noqa: E402
from raymix.config import ExperimentConfig, load  # noqa: E402
from raymix.sweep.tuner import init_ray, run_sweep  # noqa: E402
from raymix.tracking import MlflowTracker, resolve_uri  # noqa: E402

N = 12
AMOUNT = 1500
SOURCES = ("math", "code", "general")
METRIC = "eval/loss/weighted"
TARGETS = [Target(f"eval/loss/{s}", "min", 1.0) for s in SOURCES]


def _config(tmp: str, name: str, weights: str, n: int) -> ExperimentConfig:
    overrides = [f"name={name}", f"mixture.space.weights={weights}"]
    overrides += mixture_only(tmp, n, AMOUNT)
    overrides.append("sweep.search={algorithm: random, seed: 0}")
    return load(ROOT / "experiments" / "search_quickstart.yaml", overrides)


def _pinned(shares: dict[str, float]) -> str:
    """Weights pinned to one point (ranges of zero width; no min_share to move it)."""
    return "{ranges: {" + ", ".join(f"{s}: [{v:.6f}, {v:.6f}]" for s, v in shares.items()) + "}}"


def _run(cfg: ExperimentConfig) -> list[tuple[dict[str, float], float]]:
    """(shares, final metric) of each trial of one sweep."""
    outcome = run_sweep(cfg)
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} trial(s) failed")
    runs = MlflowTracker(outcome.tracking_uri).trial_runs(outcome.parent_run_id)
    return [
        ({s: float(r.data.params[f"mixture.weight.{s}"]) for s in SOURCES}, r.data.metrics[METRIC])
        for r in runs
    ]


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    smoke = "--smoke" in sys.argv[1:]
    n = 8 if smoke else N
    quarters = [
        dict(zip(SOURCES, (a / 4, b / 4, (4 - a - b) / 4), strict=True))
        for a, b in itertools.product(range(4), repeat=2)
        if a + b <= 3
    ]  # general >= 1/4: 10 points
    grid_points = quarters[:3] if smoke else quarters
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        searched = _config(
            tmp, "bench_rec_random", "{dirichlet: 1.0, min_share: {general: 0.1}}", n
        )
        uri = resolve_uri(searched.tracking.uri)
        init_ray(searched, uri, None)
        random_trials = _run(searched)
        trials = read_trials(uri, "bench_rec_random")
        bounds = [min(1.0, trials.pools[s] / AMOUNT) for s in trials.sources]
        values = {t.name: trials.metrics[t.name] for t in TARGETS}
        rec = recommend(trials.sources, trials.shares, values, TARGETS, upper=bounds,
                        min_r2=-np.inf, bootstrap=0)  # fmt: skip
        recommended = _run(_config(tmp, "bench_rec_law", _pinned(rec.shares), 1))[0]
        grid = [_run(_config(tmp, f"bench_rec_grid{i}", _pinned(p), 1))[0]
                for i, p in enumerate(grid_points)]  # fmt: skip
        uniform = dict.fromkeys(SOURCES, 1 / 3)
        stratified = _run(_config(tmp, "bench_rec_uniform", _pinned(uniform), 1))[0]
    wall = time.perf_counter() - start
    best_grid = min(grid, key=lambda x: x[1])
    best_random = min(random_trials, key=lambda x: x[1])

    def fmt(shares: dict[str, float]) -> str:
        return "/".join(f"{shares[s]:.2f}" for s in SOURCES)

    print()
    print(f"bench/recommend{' --smoke (figures meaningless)' if smoke else ''}: search_quickstart's "
          f"sources at {AMOUNT} examples, 1 epoch, multi-task; {METRIC} (min), one trial each; "
          f"{wall / 60:.1f} min in all")  # fmt: skip
    print(
        f"  law fitted on {n} random trials; leave-one-out R²: "
        + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in rec.loo_r2.items())
    )
    print(
        f"  recommended   m/c/g {fmt(rec.shares)}: {recommended[1]:.4f} (predicted mean "
        f"{np.mean(list(rec.predicted.values())):.4f})"
    )
    print(f"  grid best     m/c/g {fmt(best_grid[0])}: {best_grid[1]:.4f} (of {len(grid)} points)")
    print(f"  stratified    m/c/g {fmt(stratified[0])}: {stratified[1]:.4f}")
    print(f"  random best   m/c/g {fmt(best_random[0])}: {best_random[1]:.4f} (of {n})")
    print(
        f"  recommended / grid best {recommended[1] / best_grid[1]:.4f} "
        f"({100 * (recommended[1] / best_grid[1] - 1):+.2f} %); recommended / stratified "
        f"{recommended[1] / stratified[1]:.4f} ({100 * (recommended[1] / stratified[1] - 1):+.2f} %)"
    )
    print("  grid:")
    for shares, v in sorted(grid, key=lambda x: x[1]):
        print(f"    m/c/g {fmt(shares)}: {v:.4f}")


if __name__ == "__main__":
    main()
