"""``raymix recommend`` on a real MLflow store holding finished trials whose metrics follow a known
mixing law: the recommended shares are the law's optimum; too few trials and bad flags are one
clear error with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raymix.analysis.mixing_law import optimum
from raymix.config import dump, validate
from raymix.tracking import MlflowTracker
from raymix.tracking.delivery import metrics_record, params_record
from tests.conftest import ROOT, tiny_experiment
from tests.unit.analysis.test_mixing_law import SOURCES, TARGETS, TRUE

TARGET = ",".join(f"{t.name}={t.mode}" for t in TARGETS)
WEIGHTS = ",".join(f"{t.name}={t.weight:g}" for t in TARGETS)


def _store(
    tmp: Path, n: int, seed: int = 0, pools: dict[str, int] | None = None
) -> tuple[str, str]:
    """A sweep of ``n`` finished trials at Dirichlet points, plus one trial that failed; with
    ``pools``, each trial says how many rows each source's pool holds."""
    uri = f"sqlite:///{tmp}/m.db"
    t = MlflowTracker(uri)
    exp = t.experiment_id("lawful")
    sources = [{"name": s, "path": f"synthetic:{s}", "ability": s, "size": 1200, "heldout": 32}
               for s in SOURCES]  # fmt: skip
    experiment = tiny_experiment(name="lawful", sources=sources,
                                 mixture={"grid": {"even": {s: 300 for s in SOURCES}}})  # fmt: skip
    parent = t.start_sweep(exp, "lawful-1", dump(validate(experiment, origin="test")))
    rng = np.random.default_rng(seed)
    for i, share in enumerate(rng.dirichlet(np.ones(3), size=n + 1)):
        run = t.trial_run(exp, parent, f"t{i}", f"t{i}")
        params = {f"sources.{s}.path": f"synthetic:{s}" for s in SOURCES}
        for s, w in zip(SOURCES, share, strict=True):
            params[f"mixture.weight.{s}"] = round(float(w), 6)
            params[f"mixture.{s}"] = round(float(w) * 1000)
        params |= {f"data.{s}.pool_rows": v for s, v in (pools or {}).items()}
        t.log(params_record(run, params))
        metrics = {k: float(law(share)[0] + rng.normal(0, 0.003)) for k, law in TRUE.items()}
        t.log(metrics_record(run, metrics, step=90))
        t.finish(run, "FAILED" if i == n else "FINISHED")  # a failed trial is left out
    t.finish(parent)
    return uri, parent


def _recommend(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "raymix", "recommend", *args],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_recommend_finds_the_laws_optimum_from_mlflow(tmp_path: Path) -> None:
    uri, parent = _store(tmp_path, 24)
    truth = optimum(list(TRUE.values()), TARGETS)
    for sweep in (parent, "lawful"):  # a parent run id, or the experiment's name
        out = _recommend(uri, sweep, "--target", TARGET, "--weights", WEIGHTS,
                         "--bootstrap", "10", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        rec = json.loads(out.stdout)
        assert rec["trials"] == 24, "the failed trial is left out"
        got = np.array([rec["shares"][s] for s in SOURCES])
        assert np.abs(got - truth).max() < 0.02, (got, truth)
        assert min(rec["loo_r2"].values()) > 0.95
    text = _recommend(uri, parent, "--target", TARGET, "--bootstrap", "5")
    assert text.returncode == 0 and "recommended shares: code" in text.stdout


def test_too_few_trials_and_bad_flags_are_one_error_with_exit_2(tmp_path: Path) -> None:
    uri, parent = _store(tmp_path, 7)
    cases = {
        ("--target", TARGET): "7 finished trials for 3 sources; the mixing law needs at least 10",
        ("--target", "eval/loss/math=lowest"): "is not METRIC=min or METRIC=max",
        ("--target", "eval/nope=max"): "no finished trial logged eval/nope",
        ("--target", TARGET, "--weights", "eval/x=1"): "is not a --target (allowed:",
    }
    for args, message in cases.items():
        out = _recommend(uri, parent, *args)
        errors = [line for line in out.stderr.splitlines() if line.startswith("raymix: error:")]
        assert out.returncode == 2 and len(errors) == 1, out.stderr[-3000:]
        assert message in errors[0] and "Traceback" not in out.stderr
    out = _recommend(uri, "no-such-sweep", "--target", TARGET)
    assert out.returncode == 2 and "neither a sweep's parent run id nor an MLflow" in out.stderr


def test_the_recommendation_is_written_as_an_experiment_that_validates(tmp_path: Path) -> None:
    import yaml

    uri, parent = _store(tmp_path, 24)
    out = tmp_path / "next.yaml"
    done = _recommend(uri, parent, "--target", TARGET, "--weights", WEIGHTS, "--bootstrap", "0",
                      "--as-experiment", str(out), "--amount", "900", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rec = json.loads(done.stdout)
    assert rec["experiment"] == str(out)
    raw = yaml.safe_load(out.read_text())
    rows = raw["mixture"]["grid"]["recommended"]
    assert sum(rows.values()) == pytest.approx(900, abs=2)
    for s in SOURCES:
        assert rows[s] == round(rec["shares"][s] * 900)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    check = subprocess.run([sys.executable, "-m", "raymix", "validate", str(out), "--schema-only"],
                           env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    again = _recommend(uri, parent, "--target", TARGET, "--bootstrap", "0",
                       "--as-experiment", str(out))  # fmt: skip
    assert again.returncode == 2 and "exists; give a new file" in again.stderr
    median = _recommend(uri, "lawful", "--target", TARGET, "--bootstrap", "0",
                        "--as-experiment", str(tmp_path / "median.yaml"))  # fmt: skip
    assert median.returncode == 0, median.stderr[-2000:]
    grid = yaml.safe_load((tmp_path / "median.yaml").read_text())["mixture"]["grid"]
    assert sum(grid["recommended"].values()) == pytest.approx(1000, abs=4), "the trials' median"


def test_the_sources_pools_bound_the_recommendation(tmp_path: Path) -> None:
    """A math pool of 300 rows caps math at 0.3 of a 1000-row mixture (the unbounded optimum
    wants about 0.45): the recommendation is the bounded optimum; --allow-upsampling lifts it."""
    pools = {"math": 300, "code": 5000, "general": 5000}
    uri, parent = _store(tmp_path, 24, pools=pools)
    upper = [min(1.0, pools[s] / 1000) for s in SOURCES]
    truth = optimum(list(TRUE.values()), TARGETS)
    bounded = optimum(list(TRUE.values()), TARGETS, upper=upper)
    assert truth[0] > 0.4 and bounded[0] == pytest.approx(0.3, abs=1e-6)
    out = _recommend(uri, parent, "--target", TARGET, "--weights", WEIGHTS, "--bootstrap", "0",
                     "--amount", "1000", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rec = json.loads(out.stdout)
    assert rec["upper"] == dict(zip(SOURCES, upper, strict=True)) and rec["amount"] == 1000
    got = np.array([rec["shares"][s] for s in SOURCES])
    assert got[0] <= 0.3 + 1e-9 and np.abs(got - bounded).max() < 0.02, (got, bounded)
    free = json.loads(_recommend(uri, parent, "--target", TARGET, "--weights", WEIGHTS,
                                 "--bootstrap", "0", "--amount", "1000", "--json",
                                 "--allow-upsampling").stdout)  # fmt: skip
    assert free["upper"] is None and free["shares"]["math"] > 0.4
    small = _recommend(uri, parent, "--target", TARGET, "--amount", "20000")
    assert small.returncode == 2 and "the sources' pools hold 10300 rows in all" in small.stderr


def test_regmix_joins_with_five_trials_per_source(tmp_path: Path) -> None:
    """RegMix's LightGBM regression is fitted beside the law from 15 trials for 3 sources; its
    mixture is close to the law's optimum on 30 trials."""
    uri, parent = _store(tmp_path, 30)
    out = _recommend(uri, parent, "--target", TARGET, "--weights", WEIGHTS, "--bootstrap", "0",
                     "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    reg = json.loads(out.stdout)["regmix"]
    truth = optimum(list(TRUE.values()), TARGETS)
    got = np.array([reg["shares"][s] for s in SOURCES])
    assert sum(got) == pytest.approx(1.0) and np.abs(got - truth).max() < 0.06, (got, truth)
    assert min(reg["loo_r2"].values()) > 0.9
    text = _recommend(uri, parent, "--target", TARGET, "--bootstrap", "0")
    assert "RegMix (LightGBM) shares:" in text.stdout
    few_uri, few = _store(tmp_path / "few", 12)
    text = _recommend(few_uri, few, "--target", TARGET, "--bootstrap", "0")
    assert "RegMix (LightGBM): needs 15 finished trials (5 per source), has 12" in text.stdout
