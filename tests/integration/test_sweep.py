"""A real sweep, as a user runs it: the CLI on a local Ray cluster, CPU DeepSpeed with 2 workers
per trial, and a real MLflow sqlite store chosen through $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raymix.data.plan import plan_hash
from tests.conftest import ROOT, run_cli_sweep, tiny_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("sweep")
    raw = tiny_experiment(
        name="itest",
        mixture={"grid": {"both": {"math": 120, "code": 120}}},
        train={
            "lr": 3e-3,
            "micro_batch_size": 8,
            "max_length": 128,
            "log_every": 2,
            "report_every": 5,
            "eval_every": 6,
        },
        scaling={"num_workers": 2, "cpus_per_worker": 1},
        eval={"tasks": [{"name": "heldout", "limit": 12}], "max_new_tokens": 24},
        sweep={
            "storage_path": str(tmp / "runs"),
            "space": {"train.packing": {"grid": [False, True]}},
        },
    )
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    (tmp / "store").mkdir()
    stdout = run_cli_sweep(path, tmp, uri, timeout=1200, clean_stderr=True)
    from mlflow.tracking import MlflowClient

    return {"stdout": stdout, "uri": uri, "client": MlflowClient(uri), "tmp": tmp}


def _runs(sweep: dict):  # type: ignore[no-untyped-def]
    client = sweep["client"]
    exp = client.get_experiment_by_name("itest")
    assert exp is not None, "the experiment is named after the config's name"
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("raymix.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("raymix.role") == "trial"]
    return client, parents, children


def test_cli_prints_the_table_and_the_ui_command(sweep: dict) -> None:
    out = sweep["stdout"]
    assert "2 trials, 0 failed" in out
    assert "loss/math" in out and "loss/code" in out and "loss/mean" in out and "*" in out
    assert f"mlflow ui --backend-store-uri {sweep['uri']}" in out
    assert not (sweep["tmp"] / "mlflow.db").exists(), (
        "$MLFLOW_TRACKING_URI must win over ./mlflow.db"
    )


def test_mlflow_layout_parent_and_children(sweep: dict) -> None:
    client, parents, children = _runs(sweep)
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.params["train.packing"] for c in children} == {"False", "True"}
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "config.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert len({c.data.tags["raymix.trial_id"] for c in children}) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        p = child.data.params
        assert p["train.lr"] == "0.003" and p["deepspeed.zero_stage"] == "2"
        assert p["mixture.name"] == "both"
        assert int(p["mixture.math"]) == int(p["mixture.code"]) == 120
        for key in (
            "train/loss",
            "train/grad_norm",
            "train/lr",
            "train/tokens_per_s",
            "eval/loss/mean",
        ):
            assert key in child.data.metrics, key


def test_manifest_and_checkpoint_artifacts(sweep: dict, tmp_path: Path) -> None:
    client, _, children = _runs(sweep)
    for child in children:
        run_id = child.info.run_id
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"manifest.json", "config.yaml", "checkpoint", "checkpoint.json"} <= names
        manifest = json.loads(
            Path(client.download_artifacts(run_id, "manifest.json", str(tmp_path))).read_text()
        )
        assert manifest["hash"] == plan_hash(manifest) == child.data.params["mixture.hash"]
        counts = {k: v["count"] for k, v in manifest["stages"][0]["sources"].items()}
        assert sum(counts.values()) == 240
        assert all(
            len(v["row_ids"]) == v["count"] for v in manifest["stages"][0]["sources"].values()
        )

        ckpt = Path(child.data.tags["raymix.checkpoint"])
        assert (ckpt / "hf" / "model.safetensors").exists()
        assert any(ckpt.rglob("*optim_states.pt")), (
            "every rank's DeepSpeed shard is in the checkpoint"
        )

        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = client.download_artifacts(run_id, "checkpoint", str(tmp_path / run_id))
        model = AutoModelForCausalLM.from_pretrained(local)
        tok = AutoTokenizer.from_pretrained(local)
        ids = tok("Ava has 3 apples", return_tensors="pt")["input_ids"]
        assert model(ids).logits.shape[-1] == len(tok)


def test_each_trained_source_eval_loss_goes_down(sweep: dict) -> None:
    client, _, children = _runs(sweep)
    for child in children:
        run_id = child.info.run_id
        trained = [s for s in ("math", "code") if int(child.data.params[f"mixture.{s}"]) > 0]
        for source in trained:
            hist = sorted(
                client.get_metric_history(run_id, f"eval/loss/{source}"), key=lambda m: m.step
            )
            assert hist[0].step == 0 and len(hist) >= 3
            assert hist[-1].value < hist[0].value - 0.1, (source, [(m.step, m.value) for m in hist])
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        assert steps == sorted(steps) and len(steps) >= 5 and all(s % 2 == 0 for s in steps[:-1])


def test_per_ability_scores_are_logged_with_their_samples(sweep: dict, tmp_path: Path) -> None:
    client, _, children = _runs(sweep)
    for child in children:
        m = child.data.metrics
        for key in ("eval/math/exact_match", "eval/math/strict_match", "eval/code/pass_at_1"):
            assert 0.0 <= m[key] <= 1.0, key
        rows = Path(
            client.download_artifacts(child.info.run_id, "eval/heldout.jsonl", str(tmp_path))
        )
        samples = [json.loads(x) for x in rows.read_text().splitlines()]
        assert sorted({r["source"] for r in samples}) == ["code", "math"]
        assert sum(r["source"] == "code" for r in samples) == 12
        assert all(
            r["result"] in ("passed", "failed", "timeout") for r in samples if r["source"] == "code"
        )
        assert (
            sum(r["passed"] for r in samples if r["source"] == "code") / 12
            == m["eval/code/pass_at_1"]
        )


def test_eval_a_finished_run_from_the_cli(sweep: dict) -> None:
    client, _, children = _runs(sweep)
    run_id = children[0].info.run_id
    env = {**os.environ, "MLFLOW_TRACKING_URI": sweep["uri"], "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "heldout", "--run", run_id],
        cwd=sweep["tmp"], env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    logged = client.get_run(run_id).data.metrics
    # the same greedy model and prompts: the standalone scores match the in-trial ones (up to
    # one sample of 12, for float ties between 2 DeepSpeed ranks and one process)
    for key in ("eval/math/exact_match", "eval/code/pass_at_1"):
        assert key in scores and abs(scores[key] - logged[key]) <= 1 / 12 + 1e-9
    bad = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "heldout", "--run", "0" * 32],
        cwd=sweep["tmp"], env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode == 2 and "no such run" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.shared_data
def test_harness_benchmarks_on_a_finished_run(sweep: dict, shared_data: Path) -> None:
    client, _, children = _runs(sweep)
    run_id = children[0].info.run_id
    env = {**os.environ, "MLFLOW_TRACKING_URI": sweep["uri"], "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "harness", "--run", run_id,
         "--path", str(shared_data), "--limit", "4"],
        cwd=sweep["tmp"], env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    for bench in ("arc_easy", "arc_challenge", "piqa", "winogrande", "hellaswag", "mmlu"):
        assert 0.0 <= scores[f"eval/harness/{bench}/acc"] <= 1.0
    logged = client.get_run(run_id).data.metrics
    assert logged["eval/harness/average/acc"] == scores["eval/harness/average/acc"]


def test_report_on_the_real_sweep(sweep: dict) -> None:
    """`raymix report` on the sweep's MLflow store: the packing grid's two trials in the table,
    their loss curves from every logged step, and the report logged to the parent run."""
    out = sweep["tmp"] / "report"
    env = {**os.environ, "MLFLOW_TRACKING_URI": sweep["uri"], "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "raymix", "report", "itest", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "report.md").read_text()
    header = "| setting | trials |"
    assert header in md and "| packing False | 1 |" in md and "| packing True | 1 |" in md
    assert (out / "figures" / "losses.png").stat().st_size > 10_000
    client, parents, _ = _runs(sweep)
    got = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/report.html" in got
