"""A sweep's table read from a real MLflow store: one row per trial, losses and scores in their
columns, the best of each marked (lowest loss, highest score), missing values as '-'."""

from __future__ import annotations

from pathlib import Path

from raymix.analysis.tables import Table, render_table, sweep_table
from raymix.tracking import MlflowTracker
from raymix.tracking.delivery import metrics_record, params_record


def _sweep(tmp_path: Path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = MlflowTracker(uri)
    exp = t.experiment_id("tables")
    parent = t.start_sweep(exp, "sweep", "name: x\n")
    trials = [
        ("t1", "all", {"mixture.math": 100, "mixture.code": 50}, {"eval/loss/math": 1.5, "eval/loss/mean": 1.5, "eval/math/exact_match": 0.25}),
        ("t2", "math", {"mixture.math": 100, "mixture.code": 0}, {"eval/loss/math": 0.5, "eval/loss/mean": 0.5, "eval/math/exact_match": 0.125}),
        ("t3", "code", {"mixture.math": 0, "mixture.code": 50}, {"eval/loss/math": 2.0, "eval/loss/mean": 2.0}),
    ]  # fmt: skip
    paths = {"sources.math.path": "synthetic:math", "sources.code.path": "synthetic:code"}
    for trial_id, name, counts, metrics in trials:
        run = t.trial_run(exp, parent, trial_id, trial_id)
        t.log(params_record(run, {"mixture.name": name, "mixture.hash": "abc", **paths, **counts}))
        t.log(metrics_record(run, {**metrics, "train/loss": 9.0}, step=3))
        t.finish(run)
    return uri, parent


def test_trials_a_scheduler_stopped_are_marked(tmp_path: Path) -> None:
    from raymix.tracking.mlflow_tracker import STOPPED_AT_TAG, STOPPED_TAG

    uri, parent = _sweep(tmp_path)
    t = MlflowTracker(uri)
    run = t.trial_run(t.experiment_id("tables"), parent, "t4", "t4")
    shares = {"mixture.weight.math": 0.25, "mixture.weight.code": 0.75}
    params = {"mixture.name": "sampled", "sources.math.path": "x", "mixture.math": 7, **shares}
    t.log(params_record(run, params))
    t.log(metrics_record(run, {"eval/loss/math": 3.0, "train/total_steps": 120}, step=1))
    t.set_tag(run, STOPPED_TAG, "true")
    t.set_tag(run, STOPPED_AT_TAG, "40")
    t.finish(run, "KILLED")
    text = render_table(sweep_table(uri, parent))
    assert "t4     code .75 math .25  math 7              stopped@40/120  3.0000" in text
    assert "stopped@N/M: stopped early by the scheduler at step N of M" in text


def test_sweep_table_reads_every_trial(tmp_path: Path) -> None:
    table = sweep_table(*_sweep(tmp_path))
    assert table.columns == ["eval/loss/math", "eval/loss/mean", "eval/math/exact_match"]
    assert [r["trial"] for r in table.rows] == ["t1", "t2", "t3"]
    assert [r["rows"] for r in table.rows] == ["code 50 + math 100", "math 100", "code 50"]
    assert table.rows[2]["eval/math/exact_match"] is None
    assert table.best("eval/loss/mean") == 0.5 and table.best("eval/math/exact_match") == 0.25
    assert table.lower_is_better == {
        "eval/loss/math": True,
        "eval/loss/mean": True,
        "eval/math/exact_match": False,
    }


def test_render_table_marks_the_best_of_each_column(tmp_path: Path) -> None:
    text = render_table(sweep_table(*_sweep(tmp_path)))
    assert text.splitlines() == [
        "trial  mixture  rows                status    loss/math  loss/mean  math/exact_match",
        "-----  -------  ------------------  --------  ---------  ---------  ----------------",
        "t1     all      code 50 + math 100  FINISHED  1.5000     1.5000     0.2500*         ",
        "t2     math     math 100            FINISHED  0.5000*    0.5000*    0.1250          ",
        "t3     code     code 50             FINISHED  2.0000     2.0000     -               ",
        "",
        "* best in column (lowest loss, highest score)",
    ]


def test_nan_is_never_best() -> None:
    table = Table(
        ["eval/x/acc"], [{"eval/x/acc": float("nan")}, {"eval/x/acc": 0.1}], {"eval/x/acc": False}
    )
    assert table.best("eval/x/acc") == 0.1
    rows = [
        {"trial": "a", "mixture": "m", "rows": "", "eval/x/acc": v} for v in (float("nan"), 0.1)
    ]
    lines = render_table(Table(["eval/x/acc"], rows, {"eval/x/acc": False})).splitlines()
    assert lines[2].split()[-1] == "-" and lines[3].split()[-1] == "0.1000*"
