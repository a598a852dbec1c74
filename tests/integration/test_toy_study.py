"""A study's toy profile end to end, as a user runs it on a fresh clone: Dong et al.'s S2 with
`--profile toy` (cut to 7 trials and 12 steps each by --set), then `raymix report` on it, which
writes every figure the sweep calls for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDY = ROOT / "experiments" / "s2_dong_composition.yaml"
CUT = [
    # two amounts of GSM8K alone and of the three mixed; on the larger mix, three strategies
    # (DMT at two k): 7 trials of 12 steps, the held-out loss every 6
    "mixture.grid={gsm8k_1/16: {gsm8k: 0.0625}, gsm8k_1/4: {gsm8k: 0.25},"
    " all_1/16: {gsm8k: 0.0625, code: 0.0625, sharegpt: 0.0625},"
    " all_1/4: {gsm8k: 0.25, code: 0.25, sharegpt: 0.25}}",
    "sweep.space={strategy.name: {grid: [multitask, sequential, dmt], when: {mixture: [all_1/4]}},"
    " strategy.k: {grid: [0.015625, 0.25], when: {strategy.name: [dmt]}}}",
    "train.max_steps=12",
    "train.eval_every=6",
    "eval.tasks=[{name: heldout, limit: 8}]",
    "eval.max_new_tokens=8",
]


def test_the_s2_toy_profile_runs_and_reports(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # fmt: skip
    argv = [sys.executable, "-m", "raymix", "sweep", str(STUDY), "--profile", "toy"]
    argv += [f"--set={c}" for c in CUT]
    sweep = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=1500)  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    assert "7 trials, 0 failed" in sweep.stdout
    report = subprocess.run(
        [sys.executable, "-m", "raymix", "report", "s2-dong-composition", "--out", "rep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-4000:]
    figures = {p.name for p in (tmp_path / "rep" / "figures").iterdir()}
    # the amounts, the strategies with two DMT k, the loss curves with evaluations before the
    # end; the Pareto front's pairs depend on which scores tell the trials apart (else the
    # held-out losses per source)
    assert {"dmt_k.png", "early_signal.png", "losses.png", "scaling.png"} <= figures, figures
    pareto = {f for f in figures if f.startswith("pareto_")}
    assert pareto and figures == pareto | {"dmt_k.png", "early_signal.png", "losses.png",
                                           "scaling.png"}, figures  # fmt: skip
    md = (tmp_path / "rep" / "report.md").read_text()
    for title in ("Strategies", "Scaling with the amount of data", "Early signals",
                  "Pareto front across abilities"):  # fmt: skip
        assert f"## {title}" in md
    for name in figures:
        assert f"(figures/{name})" in md
    assert "all at all_1/4." in md, "the strategies compared on the same data"
