"""The lm-evaluation-harness task on the real local benchmark files with a tiny random Llama:
metric names, per-sample rows, and every score re-derived here from the raw files by direct
log-likelihoods under the official prompts, so the local task configs are shown to score what
they claim. Also the configuration errors."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from raymix.config.schema import EvalConfig, HarnessTaskConfig, ModelConfig
from raymix.errors import ConfigError
from raymix.eval.harness import BENCHMARKS
from raymix.eval.registry import task_factory

LIMIT = 4
ACC_NORM = {"arc_easy", "arc_challenge", "piqa", "hellaswag"}


@functools.cache
def _run(data_dir: str) -> tuple[Any, Any, Any, dict[str, float], list[dict[str, Any]]]:
    """One harness run over all benchmarks (shared by the tests): model, tokenizer, task, result."""
    from raymix.data.tokenizer import load_tokenizer, train_builtin
    from raymix.train.model import build_model

    texts = [line for line in (Path(data_dir) / "arc/arc_easy_test.jsonl").open()][:300]
    tok = load_tokenizer(train_builtin(texts, 400))
    model = build_model(ModelConfig(), tok, seed=0, dtype="float32")
    t = HarnessTaskConfig(name="harness", path=data_dir, limit=LIMIT)
    task = task_factory("harness")(t, EvalConfig(batch_size=4), {})
    metrics, rows = task.run_on_model(model, tok)
    return model, tok, task, metrics, rows


@functools.cache
def _raw(data_dir: Path, rel: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (data_dir / rel).read_text().split("\n") if x.strip()]


def _official(data_dir: Path, bench: str, row: int) -> tuple[list[tuple[str, str]], int]:
    """(context, continuation) per choice and the gold index, built from the raw file the way
    the official lm-eval task YAML builds them from the hub dataset."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    if bench.startswith("arc"):
        d = _raw(data_dir, f"arc/{bench}_test.jsonl")[row]
        return [(f"{d['query']}\nAnswer:", f" {c}") for c in d["choices"]], d["gold"]
    if bench == "piqa":
        d = _raw(data_dir, "piqa/valid.jsonl")[row]
        gold = int((data_dir / "piqa/valid-labels.lst").read_text().split()[row])
        ctx = f"Question: {d['goal']}\nAnswer:"
        return [(ctx, f" {d['sol1']}"), (ctx, f" {d['sol2']}")], gold
    if bench == "winogrande":
        d = _raw(data_dir, "winogrande/winogrande_dev.jsonl")[row]
        return [(c, f" {d['continuation']}") for c in d["context_options"]], d["gold"]
    if bench == "hellaswag":
        d = _raw(data_dir, "hellaswag/hellaswag_val_1k_subset.jsonl")[row]
        ctx = preprocess(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize())
        return [(ctx, " " + preprocess(e)) for e in d["endings"]], d["label"]
    d = _raw(data_dir, "mmlu/mmlu_test.jsonl")[row]
    head = f"The following are multiple choice questions (with answers) about {d['subject'].replace('_', ' ')}.\n\n"
    opts = "".join(f"{k}. {c}\n" for k, c in zip("ABCD", d["choices"], strict=True))
    ctx = f"{head}{d['question'].strip()}\n{opts}Answer:"
    return [(ctx, f" {k}") for k in "ABCD"], d["answer"]


def _loglikelihood(model: Any, tok: Any, context: str, continuation: str) -> float | None:
    """log p(continuation | context): the whole string encoded, the context's tokens split off;
    None when it is longer than the model's positions (lm-eval then cuts the context's start)."""
    import torch

    whole = tok.encode(context + continuation)
    n_ctx = len(tok.encode(context))
    if len(whole) > model.config.max_position_embeddings:
        return None
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)[n_ctx - 1 :]
    return float(logp.gather(1, torch.tensor(whole[n_ctx:])[:, None]).sum())


@functools.cache
def _subjects(data_dir: Path) -> dict[str, list[int]]:
    """MMLU's rows (file positions) per subject, in file order."""
    out: dict[str, list[int]] = {}
    for i, d in enumerate(_raw(data_dir, "mmlu/mmlu_test.jsonl")):
        out.setdefault(d["subject"], []).append(i)
    return out


@pytest.mark.shared_data
def test_every_benchmark_reports_acc_and_rows(shared_data: Path) -> None:
    _, _, task, metrics, rows = _run(str(shared_data))
    want = {f"harness/{b}/acc" for b in BENCHMARKS} | {"harness/average/acc"}
    want |= {f"harness/{b}/acc_norm" for b in ACC_NORM}
    assert set(metrics) == want
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    accs = [metrics[f"harness/{b}/acc"] for b in BENCHMARKS]
    assert metrics["harness/average/acc"] == pytest.approx(sum(accs) / len(accs))
    per = {b: LIMIT for b in BENCHMARKS} | {"mmlu": LIMIT * len(_subjects(shared_data))}
    assert [r["benchmark"] for r in rows] == [b for b in BENCHMARKS for _ in range(per[b])]
    for r in rows:
        assert r["doc_id"] in range(per[r["benchmark"]])
        assert r["chosen"] in range(len(r["loglikelihoods"]))
        assert r["correct"] == (r["chosen"] == r["gold"])
    assert task.requests() == []
    assert task.score([], []) == (metrics, rows)


@pytest.mark.shared_data
def test_mmlu_limit_applies_per_subject(shared_data: Path) -> None:
    # lm-eval's limit is per task, and MMLU is a group of one task per subject (57 here)
    rows = [r for r in _run(str(shared_data))[4] if r["benchmark"] == "mmlu"]
    subjects = _subjects(shared_data)
    assert len(subjects) == 57
    assert sorted(r["row"] for r in rows) == sorted(i for v in subjects.values() for i in v[:LIMIT])


def test_limit_is_per_subject_on_a_tiny_mmlu(tmp_path: Path) -> None:
    from raymix.data.tokenizer import load_tokenizer, train_builtin
    from raymix.train.model import build_model

    (tmp_path / "mmlu").mkdir()
    rows = [
        {
            "subject": s,
            "question": f"{s} question {i}?",
            "choices": ["w", "x", "y", "z"],
            "answer": i,
        }
        for s in ("anatomy", "astronomy", "virology")
        for i in range(3)
    ]
    (tmp_path / "mmlu/mmlu_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = load_tokenizer(train_builtin([json.dumps(r) for r in rows] * 20, 300))
    model = build_model(ModelConfig(), tok, seed=0, dtype="float32")
    t = HarnessTaskConfig(name="harness", path=str(tmp_path), benchmarks=["mmlu"], limit=2)
    metrics, out = task_factory("harness")(t, EvalConfig(batch_size=4), {}).run_on_model(model, tok)
    assert sorted(r["row"] for r in out) == [0, 1, 3, 4, 6, 7]  # the first 2 of each subject
    assert metrics["harness/mmlu/acc"] == sum(r["correct"] for r in out) / 6


@pytest.mark.shared_data
def test_scores_match_direct_loglikelihoods_under_the_official_prompts(shared_data: Path) -> None:
    model, tok, _, metrics, rows = _run(str(shared_data))
    too_long = 0
    for bench in BENCHMARKS:
        mine = [r for r in rows if r["benchmark"] == bench]
        right = 0
        for r in mine:
            pairs, gold = _official(shared_data, bench, r["row"])
            assert r["gold"] == gold, (bench, r)
            if r["doc_id"] >= 8 * LIMIT:  # MMLU beyond its first 8 subjects: spare the time
                right += r["correct"]
                continue
            lls = [_loglikelihood(model, tok, c, x) for c, x in pairs]
            if None in lls:  # a long passage: lm-eval cut its start, so only its gold is checked
                too_long += 1
                right += r["correct"]
                continue
            assert r["loglikelihoods"] == pytest.approx(lls, rel=1e-4, abs=1e-3), (bench, r)
            chosen = max(range(len(lls)), key=lls.__getitem__)  # type: ignore[arg-type]
            assert r["chosen"] == chosen, (bench, r)
            right += chosen == gold
        assert metrics[f"harness/{bench}/acc"] == right / len(mine)
    assert too_long < 4


def _factory(**kw: Any) -> Any:
    return task_factory("harness")(HarnessTaskConfig(name="harness", **kw), EvalConfig(), {})


def test_missing_path_is_a_config_error() -> None:
    from raymix.config import validate
    from tests.conftest import tiny_experiment

    raw = tiny_experiment(eval={"tasks": [{"name": "harness"}]})
    with pytest.raises(ConfigError, match=r"x.yaml: eval.tasks.0.path: required key is missing"):
        validate(raw, origin="x.yaml")


def test_unknown_benchmark_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown 'boolq'.*allowed: arc_easy, arc_challenge"):
        _factory(path=str(tmp_path), benchmarks=["piqa", "boolq"])


def test_missing_files_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no piqa/valid.jsonl"):
        _factory(path=str(tmp_path), benchmarks=["piqa"])
