"""Search spaces: sampled points are valid, seeded and conditional; the searchers get what the
schema says; grids expand conditional parameters only where they apply; bad spaces get one
clear error each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymix.config import load, validate
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data
from raymix.errors import ConfigError
from raymix.sweep.space import grid_points, sample_points, trial_setup
from raymix.sweep.tuner import scheduler, search_algorithm
from tests.conftest import ROOT, tiny_experiment

SPACE = {
    "space": {
        "weights": {"dirichlet": 0.7, "min_share": {"code": 0.1}},
        "amount": {"unit": "examples", "loguniform": [100, 400]},
    }
}
SEARCH = {
    "search": {"algorithm": "random"},
    "space": {
        "train.lr": {"loguniform": [1e-4, 1e-2]},
        "strategy.name": {"choice": ["multitask", "dmt"]},
        "strategy.k": {"loguniform": [0.01, 0.5], "when": {"strategy.name": ["dmt"]}},
    },
}


def _cfg(tmp_path: Path, seed: int = 0, **extra: Any):  # type: ignore[no-untyped-def]
    raw = tiny_experiment(mixture=SPACE, sweep={**SEARCH, **extra}, seed=seed)
    raw["sweep"]["search"] = {**SEARCH["search"], "seed": seed}
    return validate(raw, origin="x.yaml")


def test_a_dirichlet_space_samples_valid_plans_with_the_requested_seed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    _, _, sources = prepare_data(cfg)
    points = sample_points(cfg, 12)
    assert points == sample_points(cfg, 12)  # the same seed, the same points
    assert points != sample_points(_cfg(tmp_path, seed=1), 12)
    for point in points:
        trial_cfg, mixture, _ = trial_setup(cfg, point)
        plan = build_plan(trial_cfg, mixture, sources)
        rec = plan.spec["space"]
        assert abs(sum(rec["weights"].values()) - 1) < 1e-9
        assert rec["weights"]["code"] >= 0.1 - 1e-12
        assert 100 <= rec["amount"] <= 400 and rec["total"] == round(rec["amount"])
        assert sum(plan.stages[0].sources[n].count for n in plan.stages[0].sources) <= rec["total"]
        counts = plan.rows_per_source()
        replayed = sum(counts.values()) - rec["total"]  # dmt's second stage replays rows
        assert replayed == 0 if trial_cfg.strategy.name == "multitask" else replayed >= 0
        assert plan.hash == build_plan(trial_cfg, mixture, sources).hash  # reproducible


def test_conditional_k_appears_only_for_dmt(tmp_path: Path) -> None:
    points = sample_points(_cfg(tmp_path), 40)
    dmt = [p for p in points if p["strategy.name"] == "dmt"]
    assert 0 < len(dmt) < len(points)
    assert all(("strategy.k" in p) == (p["strategy.name"] == "dmt") for p in points)
    for p in dmt:
        cfg, _, searched = trial_setup(_cfg(tmp_path), p)
        assert cfg.strategy.k == p["strategy.k"] == searched["strategy.k"]


def test_data_mix_sample_is_what_a_random_search_tries(tmp_path: Path) -> None:
    """`raymix data mix --sample N` and Tune's OptunaSearch with the random sampler draw the same
    points, in the same order."""
    cfg = _cfg(tmp_path)
    searcher, space = search_algorithm(cfg)
    assert space == {}
    suggested = [searcher.suggest(f"t{i}") for i in range(5)]
    expected = sample_points(cfg, 5)
    assert [{k: v for k, v in s.items()} for s in suggested] == expected


def test_cli_sample_json_lists_n_plans_the_same_for_the_same_seed(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(mixture=SPACE, sweep=SEARCH)))

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raymix", "data", "mix", str(path), "--json", *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    first, again, other = (
        run("--sample", "3"),
        run("--sample", "3"),
        run("--sample", "3", "--set", "seed=5"),
    )
    assert first.returncode == 0, first.stderr
    plans = yaml.safe_load(first.stdout)
    assert isinstance(plans, list) and len(plans) == 3
    assert all(p["mixture"] == "sampled" and "weights" in p["spec"]["space"] for p in plans)
    assert first.stdout == again.stdout != other.stdout
    bad = run("--sample", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr and "Traceback" not in bad.stderr


def test_grid_points_expand_conditional_grids_only_where_they_apply() -> None:
    raw = tiny_experiment(
        sweep={
            "space": {
                "strategy.name": {"grid": ["multitask", "dmt"]},
                "strategy.k": {"grid": [0.1, 0.2], "when": {"strategy.name": ["dmt"]}},
            }
        }
    )
    points = grid_points(validate(raw, origin="x.yaml"))
    assert points == [{"mixture": m, "strategy.name": "multitask"} for m in ("math",)] + [
        {"mixture": "math", "strategy.name": "dmt", "strategy.k": k} for k in (0.1, 0.2)
    ] + [{"mixture": "both", "strategy.name": "multitask"}] + [
        {"mixture": "both", "strategy.name": "dmt", "strategy.k": k} for k in (0.1, 0.2)
    ]


def test_conditions_chain_and_may_name_the_grid_mixture() -> None:
    """Dong et al. in one sweep: the strategies only on the full mixture, DMT's k only for DMT;
    grid search and the Optuna searchers give the same conditional structure."""
    import optuna

    from raymix.sweep.space import DefineByRun

    raw = tiny_experiment(
        sweep={
            "space": {
                "strategy.name": {"grid": ["multitask", "dmt"], "when": {"mixture": ["both"]}},
                "strategy.k": {"grid": [0.1, 0.2], "when": {"strategy.name": ["dmt"]}},
            }
        }
    )
    cfg = validate(raw, origin="x.yaml")
    assert grid_points(cfg) == [{"mixture": "math"}, {"mixture": "both", "strategy.name": "multitask"}] + [
        {"mixture": "both", "strategy.name": "dmt", "strategy.k": k} for k in (0.1, 0.2)
    ]  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        const = DefineByRun(cfg)(trial)
        p = {**trial.params, **const}
        seen.add(tuple(sorted(p)))
        assert ("strategy.name" in p) == (p["mixture"] == "both")
        assert ("strategy.k" in p) == (p.get("strategy.name") == "dmt")
        study.tell(trial, 0.0)
    assert len(seen) == 3, seen


def test_a_finite_space_is_a_grid_of_amounts() -> None:
    raw = tiny_experiment(
        mixture={
            "space": {
                "weights": {"natural": True},
                "amount": {"unit": "data", "log2_grid": {"high": 1.0, "halvings": 3}},
            }
        }
    )
    cfg = validate(raw, origin="x.yaml")
    assert grid_points(cfg) == [{"mixture.amount": a} for a in (1.0, 0.5, 0.25, 0.125)]
    _, _, sources = prepare_data(cfg)
    for point in grid_points(cfg):
        trial_cfg, mixture, _ = trial_setup(cfg, point)
        counts = build_plan(trial_cfg, mixture, sources).rows_per_source()
        pools = {n: len(s.train_ids) for n, s in sources.items()}
        share = point["mixture.amount"]
        assert sum(counts.values()) == round(share * sum(pools.values()))
        assert all(abs(counts[n] - share * pools[n]) <= 1 for n in pools)


def test_searchers_and_schedulers_are_what_the_schema_says() -> None:
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    raw = tiny_experiment(
        mixture=SPACE,
        train={"eval_every": 10},
        eval={"loss_weights": {"math": 2, "code": 1}},
        sweep={
            "search": {
                "algorithm": "nsga2",
                "metrics": ["eval/loss/math", "eval/loss/code"],
                "modes": ["min", "min"],
            },
            "scheduler": {"name": "asha", "grace_period": 20, "reduction_factor": 2},
        },
    )
    cfg = validate(raw, origin="x.yaml")
    searcher, _ = search_algorithm(cfg)
    assert isinstance(searcher, OptunaSearch)
    assert type(searcher._sampler).__name__ == "NSGAIISampler"
    assert searcher.metric == ["eval/loss/math", "eval/loss/code"]
    asha = scheduler(cfg)
    assert isinstance(asha, ASHAScheduler)
    assert (asha._time_attr, asha.metric, asha._reduction_factor) == (
        "step",
        "eval/loss/weighted",
        2,
    )
    rungs = sorted(milestone for milestone, _ in asha._brackets[0]._rungs)
    assert rungs[:3] == [20, 40, 80]  # grace period, then x reduction factor
    raw["sweep"]["scheduler"] = {"name": "median", "time_attr": "tokens", "grace_period": 5000}
    median = scheduler(validate(raw, origin="x.yaml"))
    assert isinstance(median, MedianStoppingRule)
    assert (median._time_attr, median._grace_period) == ("tokens", 5000)


@pytest.mark.parametrize(
    ("mixture", "sweep", "expected"),
    [
        (
            {"space": {"weights": {"dirichlet": -1.0}, "amount": {"fixed": 100}}},
            {},
            r"mixture.space.weights.dirichlet: Input should be greater than 0",
        ),
        (
            {"space": {"sources": [], "amount": {"fixed": 100}}},
            {},
            r"mixture.space.sources: the simplex is empty",
        ),
        (
            {
                "space": {
                    "weights": {"ranges": {"math": [0, 0], "code": [0, 0]}},
                    "amount": {"fixed": 100},
                }
            },
            {},
            r"ranges: the simplex is empty",
        ),
        (
            {
                "space": {
                    "weights": {"dirichlet": 1.0, "min_share": {"math": 0.7, "code": 0.5}},
                    "amount": {"fixed": 100},
                }
            },
            {},
            r"min_share: the shares sum to 1.2, above 1",
        ),
        (
            {
                "space": {
                    "weights": {"dirichlet": {"math": 1.0, "nope": 1.0}},
                    "amount": {"fixed": 100},
                }
            },
            {},
            r"mixture.space.weights.dirichlet: unknown source\(s\) nope; allowed: math, code",
        ),
        (
            {"space": {"amount": {"fixed": 100, "choice": [1, 2]}}},
            {},
            r"give exactly one of fixed, choice, loguniform, log2_grid \(got fixed, choice\)",
        ),
        (
            {"space": {"amount": {"fixed": 100}}},
            {"search": {"algorithm": "grid"}},
            r"grid needs a finite mixture.space",
        ),
        (
            {"grid": {"m": {"math": 10}}},
            {"scheduler": {"name": "asha"}},
            r"sweep.scheduler: asha compares held-out losses during training; set train.eval_every",
        ),
        (
            {"grid": {"m": {"math": 10}}},
            {"scheduler": {"name": "median", "time_attr": "tokens"}},
            r"set train.eval_every",
        ),
        (
            {"grid": {"m": {"math": 10}}, "space": {"amount": {"fixed": 1}}},
            {},
            r"give exactly one of grid \(named mixtures\) or space",
        ),
        (
            {"grid": {"m": {"math": 10}}},
            {"space": {"strategy.k": {"uniform": [0, 1], "when": {"strategy.name": ["dmt"]}}}},
            r"'strategy.name' must be another searched parameter or 'mixture'; searched: none",
        ),
        (
            {"grid": {"m": {"math": 10}}},
            {
                "space": {
                    "train.lr": {"grid": [1e-3], "when": {"train.epochs": [1]}},
                    "train.epochs": {"grid": [1, 2], "when": {"train.lr": [1e-3]}},
                }
            },
            r"the conditions \(when\) go round in a circle: train.epochs -> train.lr -> train.epochs",
        ),
        (
            {"grid": {"m": {"math": 10}}},
            {"space": {"train.lr": {"grid": [1e-3], "when": {"mixture": ["nope"]}}}},
            r"sweep.space.train.lr.when.mixture: \['nope'\] not among mixture.grid's names \['m'\]",
        ),
    ],
)
def test_bad_spaces_get_one_clear_error(
    tmp_path: Path, mixture: dict[str, Any], sweep: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(mixture=mixture, sweep=sweep)))
    with pytest.raises(ConfigError, match=rf"bad.yaml: .*{expected}"):
        load(path)


def test_a_token_clock_needs_a_grace_period_in_tokens() -> None:
    raw = tiny_experiment(
        train={"eval_every": 10}, sweep={"scheduler": {"name": "asha", "time_attr": "tokens"}}
    )
    with pytest.raises(ConfigError, match=r"grace_period: with time_attr tokens, give the grace"):
        validate(raw, origin="x.yaml")


def test_scheduler_metric_is_a_heldout_loss_never_the_training_loss() -> None:
    raw = tiny_experiment(
        train={"eval_every": 10}, sweep={"scheduler": {"name": "asha", "metric": "train/loss"}}
    )
    with pytest.raises(
        ConfigError,
        match=r"'train/loss' is not reported during training; allowed: eval/loss/math, eval/loss/code, eval/loss/mean",
    ):
        validate(raw, origin="x.yaml")


def test_sweep_with_a_bad_space_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    raw = tiny_experiment(
        mixture={
            "space": {
                "weights": {"dirichlet": 1.0, "min_share": {"math": 0.9, "code": 0.3}},
                "amount": {"fixed": 50},
            }
        }
    )
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 2
    assert "min_share: the shares sum to 1.2, above 1" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("raymix: error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_an_amount_beyond_the_pools_fails_before_ray_starts(tmp_path: Path) -> None:
    from raymix.sweep.tuner import check_mixtures

    raw = tiny_experiment(mixture={"space": {"amount": {"choice": [100, 5000]}}}, sweep=SEARCH)
    cfg = validate(raw, origin="x.yaml")
    _, _, sources = prepare_data(cfg)
    with pytest.raises(ConfigError, match=r"5000 asked of sources that hold 536 together"):
        check_mixtures(cfg, sources, None)


def test_the_optuna_searcher_saves_and_restores_with_its_space(tmp_path: Path) -> None:
    """Tune pickles the searcher (with its define-by-run space) into the sweep's state."""
    cfg = _cfg(tmp_path)
    searcher, _ = search_algorithm(cfg)
    first = [searcher.suggest(f"t{i}") for i in range(2)]
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored, _ = search_algorithm(cfg)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t2") == searcher.suggest("t2") and first


def test_a_grid_search_starts_no_more_trials_than_max_concurrent_trials() -> None:
    """Tune ignores max_concurrent_trials for a SearchGenerator: the generator carries it."""
    raw = tiny_experiment(sweep={"max_concurrent_trials": 2})
    generator, _ = search_algorithm(validate(raw, origin="x.yaml"))
    assert generator.max_concurrent == 2  # what its next_trial gate reads
