"""``raymix report`` on a real MLflow store holding a Dong et al.-shaped sweep (amounts individual
and mixed, ratios, four strategies, DMT k, two seeds, a learning rate, a trial stopped early and one
failed): the sections and figures follow what the sweep varied, the numbers are the data's, the
HTML page renders in headless Chromium, and ``--open`` serves it on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from raymix.config import dump, validate
from raymix.tracking import MlflowTracker
from raymix.tracking.delivery import metrics_record, params_record
from tests.conftest import ROOT, tiny_experiment

SOURCES = {"math": "math", "code": "code", "general": "general"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _trials() -> list[dict]:
    """(mixture name, rows per source, strategy, k, lr) of each trial, before seeds."""
    out = []
    for n in (100, 200, 400, 800):
        out.append((f"math_{n}", {"math": n, "code": 0, "general": 0}, "multitask", 0, 1e-4))
        out.append((f"all_{n}", {"math": n, "code": n, "general": n}, "multitask", 0, 1e-4))
    for g in (100, 200, 400):  # math : general 1:1, 1:2, 1:4
        out.append((f"ratio_1_{g // 100}", {"math": 100, "code": 0, "general": g},
                    "multitask", 0, 1e-4))  # fmt: skip
    rows = {"math": 400, "code": 400, "general": 400}
    for strategy in ("sequential", "mixed_sequential"):
        out.append(("all_400", rows, strategy, 0, 1e-4))
    for k in (1 / 256, 1 / 64, 1 / 16):
        out.append(("all_400", rows, "dmt", k, 1e-4))
    for lr in (3e-4, 1e-3):
        out.append(("all_400", rows, "multitask", 0, lr))
    return [dict(zip(("name", "rows", "strategy", "k", "lr"), t, strict=True)) for t in out]


def _scores(rows: dict[str, int], strategy: str, k: float, lr: float, rng) -> dict:  # type: ignore[no-untyped-def]
    lift = {"sequential": -0.05, "mixed_sequential": 0.0, "dmt": 0.03 + k, "multitask": 0.0}
    out = {}
    for s in SOURCES:
        n = rows[s]
        score = 0.1 * np.log2(1 + n / 50) + lift[strategy] - 30 * abs(lr - 3e-4)
        score += 0.02 * (sum(rows.values()) > n) + rng.normal(0, 0.01)
        out[f"eval/{s}/{'pass_at_1' if s == 'code' else 'exact_match'}"] = float(score)
        out[f"eval/loss/{s}"] = float(3 - score * 2)
    out["eval/loss/mean"] = float(np.mean([out[f"eval/loss/{s}"] for s in SOURCES]))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp}/m.db"
    t = MlflowTracker(uri)
    exp = t.experiment_id("dong")
    sources = [{"name": s, "path": f"synthetic:{s}", "ability": a, "size": 1200, "heldout": 32}
               for s, a in SOURCES.items()]  # fmt: skip
    config = tiny_experiment(name="dong", sources=sources,
                             mixture={"grid": {"all": {s: 100 for s in SOURCES}}})  # fmt: skip
    parent = t.start_sweep(exp, "dong-1", dump(validate(config, origin="test")))
    logged = []
    for i, (spec, seed) in enumerate(itertools.product(_trials(), (0, 1))):
        run = t.trial_run(exp, parent, f"t{i:02d}", f"t{i:02d}")
        params = {f"sources.{s}.{k}": v for s, a in SOURCES.items()
                  for k, v in (("path", f"synthetic:{s}"), ("ability", a))}  # fmt: skip
        params |= {f"mixture.{s}": n for s, n in spec["rows"].items()}
        params |= {"mixture.name": spec["name"], "strategy.name": spec["strategy"],
                   "strategy.k": spec["k"] or 1 / 256, "train.lr": spec["lr"], "seed": seed,
                   "train.micro_batch_size": 8, "train.grad_accum": 1, "scaling.num_workers": 2}  # fmt: skip
        t.log(params_record(run, params))
        rng = np.random.default_rng(i)
        final = _scores(spec["rows"], spec["strategy"], spec["k"], spec["lr"], rng)
        start = final["eval/loss/mean"] + 2
        for step in range(0, 101, 10):
            frac = step / 100
            m = {"train/loss": start - frac * 2 + rng.normal(0, 0.02),
                 "train/grad_norm": 1 + rng.random()}  # fmt: skip
            if step % 20 == 0:
                m["eval/loss/mean"] = start - frac * 2 + rng.normal(0, 0.05)
            if step:
                t.log(metrics_record(run, m, step))
            else:
                t.log(metrics_record(run, {"eval/loss/mean": start}, 0))
        stopped, failed = i == 3, i == 5
        if stopped:  # ASHA stopped it at step 40: no final evaluation
            t.set_tag(run, "raymix.stopped_early", "true")
            t.set_tag(run, "raymix.stopped_at_step", "40")
        else:
            t.log(metrics_record(run, final, step=100))
        t.log(metrics_record(run, {"train/total_steps": 100}, step=0))
        t.finish(run, "FAILED" if failed else "FINISHED")
        if not (stopped or failed):
            logged.append((spec, seed, run, final))
    t.finish(parent)
    out = tmp / "out"
    proc = _report(uri, "dong", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"uri": uri, "parent": parent, "out": out, "stdout": proc.stdout, "trials": logged,
            "md": (out / "report.md").read_text(), "tmp": tmp}  # fmt: skip


def _report(uri: str, *args: str, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "raymix", "report", *args], env=env,
                          capture_output=True, text=True, timeout=300, **kw)  # fmt: skip


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else None]


def _table(md: str, title: str) -> tuple[list[str], list[list[str]]]:
    lines = [x for x in _section(md, title).splitlines() if x.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", x)[1:-1]] for x in lines]
    return split[0], split[2:]


def _value(cell: str) -> float:
    return float(re.sub(r"</?u>|\*\*", "", cell).split()[0])


def test_the_figures_follow_what_the_sweep_varied(store: dict) -> None:
    figs = sorted(p.name for p in (store["out"] / "figures").iterdir())
    assert figs == [
        "dmt_k.png", "early_signal.png", "hyper_lr.png", "losses.png",
        "pareto_code_pass_at_1__general_exact_match.png",
        "pareto_code_pass_at_1__math_exact_match.png",
        "pareto_general_exact_match__math_exact_match.png", "ratios.png", "scaling.png",
    ]  # fmt: skip
    md = store["md"]
    for title in ("Sweep and cost", "Settings × abilities", "Strategies", "Scaling with the "
                  "amount of data", "Ratios", "Hyper-parameters", "Pareto front across "
                  "abilities", "Loss curves", "Early signals"):  # fmt: skip
        assert f"## {title}" in md
    for fig in figs:
        assert f"(figures/{fig})" in md


def test_cost_counts_trials_steps_and_the_steps_early_stopping_saved(store: dict) -> None:
    header, rows = _table(store["md"], "Sweep and cost")
    row = dict(zip(header, rows[0], strict=True))
    n = 2 * len(_trials())
    assert (row["trials"], row["finished"], row["stopped early"], row["failed"]) == (
        str(n), str(n - 2), "1", "1",
    )  # fmt: skip
    assert row["steps saved"] == "60", "stopped at 40 of 100"
    assert row["trial-steps"] == str(100 * n)


def test_the_table_pools_seeds_and_marks_the_best_and_second(store: dict) -> None:
    header, rows = _table(store["md"], "Settings × abilities")
    col = header.index("math/exact_match")
    values = [_value(r[col]) for r in rows]
    best = [_value(r[col]) for r in rows if r[col].startswith("**")]
    second = [_value(r[col]) for r in rows if r[col].startswith("<u>")]
    distinct = sorted(set(values), reverse=True)
    assert best == [distinct[0]] and second == [distinct[1]]
    lossc = header.index("loss/mean")
    assert [_value(r[lossc]) for r in rows if r[lossc].startswith("**")] == [
        min(_value(r[lossc]) for r in rows)
    ], "a loss: lower is better"
    # one setting's cell is the mean ± sd of its two seeds, from the data logged
    want = [f["eval/math/exact_match"] for s, _, _, f in store["trials"]
            if s["strategy"] == "dmt" and s["k"] == 1 / 64]  # fmt: skip
    row = next(r for r in rows if "dmt" in r[0] and "k 0.01562" in r[0])
    assert row[1] == "2"
    mean, _, sd = re.sub(r"</?u>|\*\*", "", row[col]).split()[:3]
    assert float(mean) == pytest.approx(np.mean(want), abs=1e-4)
    assert float(sd) == pytest.approx(np.std(want, ddof=1), abs=1e-4)


def test_the_pareto_front_is_the_non_dominated_trials(store: dict) -> None:
    heads = ["eval/code/pass_at_1", "eval/general/exact_match", "eval/math/exact_match"]
    pts = np.array([[f[m] for m in heads] for *_, f in store["trials"]])
    front = [i for i, p in enumerate(pts)
             if not any((q >= p).all() and (q > p).any() for q in pts)]  # fmt: skip
    assert f"{len(front)} of {len(pts)} trials are on the front" in store["md"]
    _, rows = _table(store["md"], "Pareto front across abilities")
    assert len(rows) == len(front)


def test_early_signal_rho_is_spearmans(store: dict) -> None:
    client = MlflowTracker(store["uri"]).client
    early, final = [], []
    for *_, run, f in store["trials"]:
        hist = {m.step: m.value for m in client.get_metric_history(run, "eval/loss/mean")}
        early.append(hist[20])
        final.append(f["eval/loss/mean"])
    rho = spearmanr(early, final).statistic
    assert f"early held-out loss ρ = {rho:.2f}" in _section(store["md"], "Early signals")
    assert "(step 20)" in store["md"]


def test_the_report_is_logged_to_the_parent_run(store: dict) -> None:
    client = MlflowTracker(store["uri"]).client
    got = {a.path for a in client.list_artifacts(store["parent"], "report")}
    assert {"report/report.md", "report/report.html", "report/figures"} <= got
    assert f"logged to MLflow parent run {store['parent']}" in store["stdout"]


def test_the_html_page_renders_every_figure_in_chromium(store: dict) -> None:
    from playwright.sync_api import sync_playwright

    page_file = store["out"] / "report.html"
    shot = store["tmp"] / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_file.as_uri())
        images = page.evaluate(
            "[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        tables = page.evaluate("document.querySelectorAll('table').length")
        bold = page.evaluate("document.querySelectorAll('td strong').length")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    n = len(list((store["out"] / "figures").iterdir()))
    assert len(images) == n
    assert all(done and w > 100 and h > 100 for done, w, h in images), images
    assert tables >= 4 and bold > 0
    assert shot.stat().st_size > 50_000, "a full-page screenshot of tables and figures"


def test_open_serves_the_report_on_localhost(store: dict) -> None:
    import urllib.request

    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "PYTHONPATH": str(ROOT),
           "BROWSER": "true"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymix", "report", "dong", "--out", str(store["tmp"] / "o2"),
         "--no-log", "--open"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("serving the report at "):
                url = line.split()[4]
                break
        else:
            pytest.fail(f"no URL printed: {proc.stderr.read() if proc.stderr else ''}")
        assert url.startswith("http://127.0.0.1:")
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "<img" in body and "Settings × abilities" in body
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_an_unknown_sweep_is_one_error_with_exit_2(store: dict) -> None:
    proc = _report(store["uri"], "nope", "--out", str(store["tmp"] / "o3"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"raymix: error: 'nope': neither a sweep's parent run id nor an MLflow experiment in "
        f"{store['uri']} (the sweep printed its parent run id; the experiment is the config's name)"
    ]
    assert not (store["tmp"] / "o3").exists(), "nothing written"
