"""`raymix validate --help-keys` shows every key's type, default, allowed values and doc; errors
about a key point to it; validate and sweep check the eval sets before any training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raymix.config.keys import key_docs, render_keys
from tests.conftest import ROOT, tiny_experiment


def _raymix(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": "", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "raymix", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_every_key_has_a_doc_line() -> None:
    docs = key_docs()
    assert len(docs) > 100
    assert [d.key for d in docs if not d.doc] == []
    keys = {d.key: d for d in docs}
    assert keys["train.lr"].type == "float" and keys["train.lr"].allowed == "> 0"
    assert keys["sources[].name"].default == "(required)"
    assert "'cosine'" in keys["train.scheduler"].allowed
    assert "eval.tasks[mt_bench].judge.base_url" in keys
    assert keys["eval.tasks[gsm8k].shots"].allowed == ">= 0"


def test_help_keys_prints_the_keys_under_a_prefix() -> None:
    proc = _raymix("validate", "--help-keys", "train")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render_keys("train")
    assert "train.lr: float = 0.001\n    allowed: > 0\n    Peak learning rate." in proc.stdout
    assert "sweep." not in proc.stdout
    bad = _raymix("validate", "--help-keys", "trian")
    assert bad.returncode == 2 and "no such key; top-level keys: name, seed" in bad.stderr


def test_a_key_error_points_to_help_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(train={"lrr": 1})))
    proc = _raymix("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train.lrr: unknown key" in proc.stderr
    assert "raymix validate --help-keys train" in proc.stderr


def _with_gsm8k_eval(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    refs = tmp_path / "test.jsonl"
    refs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "x.yaml"
    raw = tiny_experiment(eval={"tasks": [{"name": "gsm8k", "path": str(refs)}]})
    path.write_text(yaml.safe_dump(raw))
    return path


def test_validate_checks_eval_sets_before_training(tmp_path: Path) -> None:
    good = _with_gsm8k_eval(tmp_path, [{"question": "1+1?", "answer": "#### 2"}])
    proc = _raymix("validate", str(good))
    assert proc.returncode == 0, proc.stderr
    bad = _with_gsm8k_eval(tmp_path, [{"question": "1+1?", "solution": "2"}])
    proc = _raymix("validate", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "eval.tasks.0 (gsm8k):" in proc.stderr and "question and answer" in proc.stderr
    assert _raymix("validate", "--schema-only", str(bad)).returncode == 0


def test_sweep_with_a_bad_eval_set_fails_before_anything_is_written(tmp_path: Path) -> None:
    bad = _with_gsm8k_eval(tmp_path, [{"q": "x"}])
    proc = _raymix("sweep", str(bad), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "eval.tasks.0 (gsm8k):" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "raymix_runs").exists()


def test_heldout_is_a_count_or_an_explicit_fraction() -> None:
    from raymix.config import validate
    from raymix.errors import ConfigError

    def source(**kw: object) -> dict[str, object]:
        return tiny_experiment(
            sources=[{"name": "m", "path": "synthetic:math", **kw}],
            mixture={"grid": {"a": {"m": 10}}},
        )

    assert validate(source(), "x.yaml").sources[0].heldout_size == 64
    assert validate(source(heldout=5), "x.yaml").sources[0].heldout_size == 5
    assert validate(source(heldout_fraction=0.1), "x.yaml").sources[0].heldout_size == 0.1
    both = validate(source(heldout=5, heldout_fraction=0.1), "x.yaml")
    assert both.sources[0].heldout_size == 0.1  # the fraction overrides the count
    again = validate(both.model_dump(mode="json"), "trial")  # trials re-validate the dump
    assert again.sources[0].heldout_size == 0.1
    with pytest.raises(ConfigError, match=r"sources.0.heldout: .*int"):
        validate(source(heldout=0.5), "x.yaml")


def test_each_eval_task_has_its_own_keys() -> None:
    from raymix.config import validate
    from raymix.errors import ConfigError

    raw = tiny_experiment(eval={"tasks": [{"name": "humaneval", "shots": 5}]})
    with pytest.raises(
        ConfigError, match=r"eval.tasks.0.shots: unknown key; allowed: limit, name, path, samples"
    ):
        validate(raw, "x.yaml")
    raw = tiny_experiment(eval={"tasks": [{"name": "gsm8k", "shots": 5}]})
    assert validate(raw, "x.yaml").eval.tasks[0].shots == 5  # type: ignore[union-attr]
    with pytest.raises(
        ConfigError, match=r"eval.tasks.0: Input tag 'bleu' .* expected tags: 'heldout', 'gsm8k'"
    ):
        validate(tiny_experiment(eval={"tasks": [{"name": "bleu"}]}), "x.yaml")


def test_validate_says_where_output_goes_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(name="where")))
    (tmp_path / "work").mkdir()
    proc = _raymix("validate", str(path), cwd=tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "work"
    assert f"# run folder: {work}/raymix_runs/where-<date>-<time>" in proc.stderr
    assert f"# tracking URI: sqlite:///{work}/mlflow.db" in proc.stderr
    assert f"# artifacts: {work}/mlruns/<experiment id>" in proc.stderr
    assert list(work.iterdir()) == [], "validate creates no store, run folder or artifact"
