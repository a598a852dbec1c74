"""Benchmark: what ASHA saves on a grid of mixtures, and whether it still finds the best one.

The embedded default (experiments/quickstart.yaml: three built-in sources, the tiny Llama, CPU
DeepSpeed ZeRO-2 on 2 Ray Train workers, evaluation as configured) with ``mixture.grid``
replaced by the 12 mixtures of the simplex's 4-lattice that are not a vertex: {math: a, code: b,
general: c} with a + b + c = 4 parts of ``ROWS / 4`` rows each, so every mixture has the same
total and the same number of optimizer steps. The grid runs in a seeded shuffled order (the
order in which trials arrive matters to asynchronous successive halving; the same order on both
sides).

Two sweeps, one after the other in one Ray session, one trial at a time:

(a) the full grid: search algorithm grid, no scheduler, every trial to its last step;
(b) the same 12 mixtures under ASHA (``sweep.scheduler: asha``, time in optimizer steps, grace
    ``GRACE``, reduction factor ``REDUCTION``: rungs at 5, 15 and 45 of 120 steps), with an
    evaluation every ``EVAL_EVERY`` steps so every rung falls on one, and reports only there.

Both rank trials by ``eval/loss/mean`` (the quickstart's metric; the scheduler's too, since it
sets no ``eval.loss_weights``). Everything is read back from MLflow: a trial's steps are the last
step it logged (the largest step of its ``train/loss`` and ``eval/loss/mean`` histories), a
stopped trial is one tagged ``raymix.stopped_early``, a trial's final metric is its last
``eval/loss/mean``. Printed: ASHA's trial-steps ÷ the grid's, whether ASHA's best finished trial
is the grid's best mixture or within 1 % of its metric, both sweeps' wall (``run_sweep``, Ray
already up), and per mixture what each side did. The step ratio does not depend on the
machine's load; the walls are one run each (a sweep of 24 trials does not fit three times), so
they are a single pair, not medians.

Then a replay, which costs no training: the grid's trials are deterministic (the ASHA run's
finished trials end on the grid's metric exactly; printed), so feeding the grid's evaluation
histories, in trial order, to Tune's own ASHA bracket (``ray.tune.schedulers.async_hyperband.
_Bracket``, as ``ASHAScheduler`` calls it) gives the decisions a real ASHA run would take. It
checks itself against the real run (same stops), then prints, for other grace periods and
reduction factors with at least 3 rungs, the step ratio and whether the best survives in this
order and over ``ORDERS`` shuffled orders. The replay counts a stopped trial's steps up to its
stopping report; the real run's count is the last step it logged (its workers keep training
until Tune's stop reaches them).

A watchdog gives up after ``LIMIT_S`` seconds rather than hold the machine for ever (a stopped
trial whose workers keep their CPUs leaves the next trial waiting: that happened beside another
Ray instance before raymix pinned each worker's $RAY_ADDRESS), and the bench prints whether it
saw another Ray instance during the run.

``--smoke`` runs the 3 mixtures of the 2-lattice (same rows and steps a trial) to check the code
path and time a trial (its figures mean nothing).
"""

from __future__ import annotations

import _thread
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.config import ExperimentConfig, load  # noqa: E402
from raymix.sweep.tuner import init_ray, run_sweep  # noqa: E402
from raymix.tracking import MlflowTracker, resolve_uri  # noqa: E402
from raymix.tracking.mlflow_tracker import STOPPED_AT_TAG, STOPPED_TAG  # noqa: E402

SOURCES = ("math", "code", "general")
PARTS = 4  # the lattice: shares in quarters; its 15 points less the 3 vertices
ROWS = 960  # a mixture: 240 rows a part, 30 steps of 32 an epoch
EPOCHS = 4  # the quickstart's: 120 optimizer steps a trial
GRACE = 5  # ASHA's first rung: 5 (the replay of a grace-10 run chose it: 0.39 vs 0.46)
REDUCTION = 3  # rungs at 5, 15 and 45 steps; a trial that passes all three ends at 120
EVAL_EVERY = 5  # every rung of GRACE x REDUCTION^k falls on an evaluation, and the replay's too
ORDER_SEED = 0
METRIC = "eval/loss/mean"
GOAL_RATIO = 0.40
TOLERANCE = 0.01
REPLAY = [(g, r) for g in (5, 10, 15, 20) for r in (2, 3, 4)]  # those with >= 3 rungs are shown
ORDERS = 200  # shuffled trial orders in the replay
LIMIT_S = 60 * 60

SMOKE_PARTS = 2  # --smoke: the 3 mixtures of the 2-lattice, trials of the same length


@dataclass
class Trial:
    """One trial as MLflow recorded it."""

    mixture: str
    steps: int
    final: float
    stopped: bool
    stopped_at: str | None
    wall: float  # the MLflow run's end - start, seconds
    history: dict[int, float] = field(default_factory=dict)  # step -> METRIC


def mixtures(parts: int, rows: int) -> dict[str, dict[str, int]]:
    """The non-vertex points of the ``parts``-lattice on the simplex, ``rows`` rows in all,
    named by their parts (m2c1g1: math 2, code 1, general 1), in a seeded shuffled order."""
    points = [
        (a, b, parts - a - b)
        for a in range(parts + 1)
        for b in range(parts + 1 - a)
        if max(a, b, parts - a - b) < parts
    ]
    random.Random(ORDER_SEED).shuffle(points)
    return {
        "m{}c{}g{}".format(*p): {s: n * rows // parts for s, n in zip(SOURCES, p, strict=True) if n}
        for p in points
    }


def _flow(grid: dict[str, dict[str, int]]) -> str:
    """The grid as a YAML flow mapping, for a ``--set`` override."""
    inner = ", ".join(
        f"{name}: {{{', '.join(f'{s}: {n}' for s, n in mix.items())}}}"
        for name, mix in grid.items()
    )
    return "{" + inner + "}"


def _config(tmp: str, grid: dict[str, dict[str, int]], asha: bool) -> ExperimentConfig:
    overrides = [
        f"mixture.grid={_flow(grid)}",
        f"train.epochs={EPOCHS}",
        f"train.eval_every={EVAL_EVERY}",
        "train.report_every=100000",  # report at evaluations only: each rung sees a fresh loss
        f"sweep.metric={METRIC}",
        "sweep.max_concurrent_trials=1",
        f"sweep.storage_path={tmp}/runs",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "tracking.log_checkpoint=false",
        "sweep.search.algorithm=grid",
    ]
    if asha:
        overrides.append(
            f"sweep.scheduler={{name: asha, metric: {METRIC}, grace_period: {GRACE}, "
            f"reduction_factor: {REDUCTION}}}"
        )
    return load(ROOT / "experiments" / "quickstart.yaml", overrides)


def run(cfg: ExperimentConfig, watchdog: Watchdog) -> tuple[dict[str, Trial], float]:
    """One sweep: {mixture: Trial} from MLflow in the order the trials started, and
    ``run_sweep``'s wall seconds."""
    start = time.perf_counter()
    outcome = run_sweep(cfg)
    wall = time.perf_counter() - start
    if watchdog.fired:
        raise SystemExit(watchdog.message())
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} trial(s) failed; see the Tune output above")
    tracker = MlflowTracker(outcome.tracking_uri)
    trials: dict[str, Trial] = {}
    for r in tracker.trial_runs(outcome.parent_run_id):
        run_id = r.info.run_id
        hist = tracker.client.get_metric_history(run_id, METRIC)
        train = tracker.client.get_metric_history(run_id, "train/loss")
        name = r.data.params["mixture.name"]
        trials[name] = Trial(
            name,
            max(m.step for m in [*hist, *train]),
            max(hist, key=lambda m: (m.step, m.timestamp)).value,
            r.data.tags.get(STOPPED_TAG) == "true",
            r.data.tags.get(STOPPED_AT_TAG),
            (r.info.end_time - r.info.start_time) / 1000,
            {m.step: m.value for m in sorted(hist, key=lambda m: m.timestamp)},
        )
    missing = set(cfg.mixture.names) - set(trials)
    if missing:
        raise RuntimeError(f"no MLflow run for mixture(s) {', '.join(sorted(missing))}")
    return trials, wall


class Watchdog(threading.Thread):
    """Interrupts the bench after ``limit_s`` (see the module docstring) and notes whether
    another Ray instance (a second ``gcs_server``) ran on the machine meanwhile."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.limit_s, self.fired, self.others = limit_s, False, 0
        self._done = threading.Event()

    def run(self) -> None:
        import psutil

        deadline = time.monotonic() + self.limit_s
        while not self._done.wait(10):
            gcs = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "gcs_server"]
            self.others = max(self.others, len(gcs) - 1)
            if time.monotonic() > deadline:
                self.fired = True
                print(self.message(), file=sys.stderr, flush=True)
                _thread.interrupt_main()  # Tune stops its trials on SIGINT, run_sweep returns
                return

    def stop(self) -> None:
        self._done.set()

    def message(self) -> str:
        return (
            f"bench/asha: gave up after {self.limit_s:.0f} s; another Ray instance ran on this "
            f"machine: {'yes' if self.others else 'not seen'}"
        )


def replay(
    histories: list[dict[int, float]], grace: int, reduction: float, total: int
) -> tuple[list[int], list[bool]]:
    """Tune's ASHA bracket fed each trial's reported results in turn: per trial, the steps it
    ran (up to its stopping report) and whether it was stopped."""
    from ray.tune.schedulers.async_hyperband import _Bracket
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    bracket = _Bracket(min_t=grace, max_t=10**9, reduction_factor=reduction, s=0)
    steps, stopped = [], []
    for i, history in enumerate(histories):
        trial = type("T", (), {"trial_id": str(i)})()
        ran, stop = total, False
        for step in range(EVAL_EVERY, total + 1, EVAL_EVERY):  # every report; the last, final
            action = bracket.on_result(trial, step, -history[step])  # ASHA maximises -metric
            if action == TrialScheduler.STOP and step < total:
                ran, stop = step, True
                break
        steps.append(ran)
        stopped.append(stop)
    return steps, stopped


def _replay_outcome(
    full: dict[str, Trial], order: list[str], grace: int, reduction: float, total: int
) -> tuple[float, bool, list[bool]]:
    """(step ratio, best kept, stopped per trial) of a replay in ``order``."""
    steps, stopped = replay([full[n].history for n in order], grace, reduction, total)
    grid_best = min(full[n].final for n in order)
    kept = min(full[n].final for n, s in zip(order, stopped, strict=True) if not s)
    return sum(steps) / (total * len(order)), kept <= grid_best * (1 + TOLERANCE), stopped


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    smoke = "--smoke" in sys.argv[1:]
    grid = mixtures(SMOKE_PARTS if smoke else PARTS, ROWS)
    watchdog = Watchdog(LIMIT_S)
    watchdog.start()
    with tempfile.TemporaryDirectory() as tmp:
        full_cfg = _config(tmp, grid, asha=False)
        asha_cfg = _config(tmp, grid, asha=True)
        init_ray(full_cfg, resolve_uri(full_cfg.tracking.uri), None)  # one session for both
        full, full_wall = run(full_cfg, watchdog)
        asha, asha_wall = run(asha_cfg, watchdog)
    watchdog.stop()
    report(full, full_wall, asha, asha_wall, smoke, watchdog.others)


def report(
    full: dict[str, Trial],
    full_wall: float,
    asha: dict[str, Trial],
    asha_wall: float,
    smoke: bool,
    other_rays: int,
) -> None:
    names = list(full)
    total = max(t.steps for t in full.values())
    if any(t.steps != total for t in full.values()):
        raise RuntimeError(
            f"grid trials ended at different steps: {[t.steps for t in full.values()]}"
        )
    full_steps = sum(t.steps for t in full.values())
    asha_steps = sum(t.steps for t in asha.values())
    ratio = asha_steps / full_steps
    grid_best = min(names, key=lambda n: full[n].final)
    finished = [n for n in names if not asha[n].stopped]
    asha_best = min(finished, key=lambda n: asha[n].final)
    gap = asha[asha_best].final / full[grid_best].final - 1
    repro = max(abs(asha[n].final - full[n].final) for n in finished)
    ok = asha_best == grid_best or gap <= TOLERANCE
    print()
    print(
        f"bench/asha{' --smoke (code path only, figures meaningless)' if smoke else ''}: "
        f"{len(names)} mixtures of the quickstart's 3 sources ({ROWS} rows each, {total} steps a "
        f"trial), one trial at a time, one Ray session; metric {METRIC} (min)"
    )
    print(
        f"  ASHA: grace {GRACE}, reduction factor {REDUCTION}, rungs at steps "
        f"{', '.join(map(str, _rungs(GRACE, REDUCTION, total)))}; evaluation every {EVAL_EVERY} "
        f"steps, reports only there"
    )
    print(
        f"  trial-steps   grid {full_steps}, ASHA {asha_steps}: ratio {ratio:.2f}   "
        f"goal <= {GOAL_RATIO:.2f} {'(met)' if ratio <= GOAL_RATIO else '(MISSED)'}"
    )
    print(
        f"  trials run to the end: grid {len(names)}, ASHA {len(finished)} "
        f"({len(names) - len(finished)} stopped early)"
    )
    print(
        f"  best mixture  grid {grid_best} ({full[grid_best].final:.4f}), ASHA {asha_best} "
        f"({asha[asha_best].final:.4f}): "
        f"{'same mixture' if asha_best == grid_best else 'different mixture'}, "
        f"{gap * 100:+.2f} % of the grid's best metric   goal: same or within "
        f"{TOLERANCE * 100:.0f} % {'(met)' if ok else '(MISSED)'}"
    )
    print(
        f"  reproducibility: largest |final {METRIC} ASHA - grid| over the {len(finished)} "
        f"mixture(s) both ran to the end: {repro:.2e}"
    )
    print(
        f"  wall (run_sweep, Ray up)  grid {full_wall:.0f} s, ASHA {asha_wall:.0f} s: ratio "
        f"{asha_wall / full_wall:.2f} (one run each; another Ray instance on the machine: "
        f"{'yes' if other_rays else 'not seen'})"
    )
    print(
        f"  trial wall (MLflow run)   grid median {statistics.median(t.wall for t in full.values()):.0f}"
        f" s, ASHA median {statistics.median(t.wall for t in asha.values()):.0f} s"
        f" ({_spread([t.wall for t in asha.values()])})"
    )
    print(f"  per mixture, in ASHA's trial order (grid's: {' '.join(names)}):")
    print(f"    {'mixture':8} {'grid final':>10} {'ASHA steps':>10} {'ASHA final':>10} {'wall':>5}")
    for n, a in asha.items():
        mark = f"stopped (tagged at step {a.stopped_at})" if a.stopped else "ran to the end"
        best = ", grid's best" if n == grid_best else ""
        print(
            f"    {n:8} {full[n].final:10.4f} {a.steps:10d} {a.final:10.4f} {a.wall:5.0f}  "
            f"{mark}{best}"
        )
    order = list(asha)
    _, _, stopped = _replay_outcome(full, order, GRACE, REDUCTION, total)
    same = stopped == [asha[n].stopped for n in order]
    print(
        f"  replay of Tune's ASHA bracket on the grid's evaluation histories, in ASHA's trial "
        f"order: {'the same stops as the real run' if same else 'DIFFERENT stops from the real run'}"
        f"; other settings (trial-steps ratio up to the stopping report; best kept: the best "
        f"finished trial within {TOLERANCE * 100:.0f} % of the grid's best):"
    )
    print(
        f"    {'grace':>5} {'R':>2} {'rungs':14} {'this order':>10} {'best':>5}   "
        f"{ORDERS} shuffled orders: median ratio (min-max), best kept"
    )
    shuffles = [random.Random(i).sample(names, len(names)) for i in range(ORDERS)]
    for g, r in REPLAY:
        rungs = _rungs(g, r, total)
        if len(rungs) < 3 or any(x % EVAL_EVERY for x in rungs):
            continue
        here, kept, _ = _replay_outcome(full, order, g, r, total)
        outcomes = [_replay_outcome(full, o, g, r, total)[:2] for o in shuffles]
        ratios = [x for x, _ in outcomes]
        mark = "  <- the real run's" if (g, r) == (GRACE, REDUCTION) else ""
        print(
            f"    {g:5d} {r:2d} {','.join(map(str, rungs)):14} {here:10.2f} "
            f"{'yes' if kept else 'no':>5}   {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}), "
            f"{sum(k for _, k in outcomes) / len(outcomes) * 100:.0f} %{mark}"
        )


def _rungs(grace: int, reduction: float, total: int) -> list[int]:
    out, t = [], float(grace)
    while t < total:
        out.append(round(t))
        t *= reduction
    return out


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} s"


if __name__ == "__main__":
    main()
