"""``raymix eval gsm8k|humaneval`` file checks: complete files score as before, partial ones only
with ``--allow-partial`` (scoring what is there, saying how much), ids kept in the per-row
results. The refusals themselves are rows of tests/unit/test_bad_inputs.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raymix.errors import DataError
from raymix.eval.inputs import gsm8k_predictions, humaneval_samples
from tests.conftest import ROOT

REFS = [{"question": f"q{i}", "answer": f"w\n#### {i}"} for i in range(5)]
PROBLEMS = {f"t/{i}": {"task_id": f"t/{i}", "prompt": "", "test": "", "entry_point": "f"}
            for i in range(3)}  # fmt: skip


def _write(path: Path, rows: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_partial_predictions_are_sorted_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = _write(tmp_path / "p.jsonl", [{"idx": 3, "output": "a"}, {"idx": 1, "output": "b"}])
    with pytest.raises(DataError, match=r"3 of the 5 references .* \(idx 0, 2, 4\)"):
        gsm8k_predictions(preds, REFS, "refs.jsonl", allow_partial=False)
    got = gsm8k_predictions(preds, REFS, "refs.jsonl", allow_partial=True)
    assert (got.idx, got.outputs, got.total) == ([1, 3], ["b", "a"], 5)
    assert "scoring 2 of 5 references (3 without a prediction, idx 0, 2, 4)" in (
        capsys.readouterr().err
    )


def test_gsm8k_complete_predictions_print_no_partial_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = _write(tmp_path / "p.jsonl", [{"idx": i, "output": "x"} for i in (4, 3, 2, 1, 0)])
    got = gsm8k_predictions(preds, REFS, "refs.jsonl", allow_partial=True)
    assert got.idx == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_gsm8k_missing_ids_are_listed_a_few_at_a_time(tmp_path: Path) -> None:
    refs = [{"question": "q", "answer": "#### 1"}] * 20
    preds = _write(tmp_path / "p.jsonl", [{"idx": 0, "output": "x"}])
    with pytest.raises(DataError, match=r"idx 1, 2, 3, 4, 5, \.\.\. \(14 more\)"):
        gsm8k_predictions(preds, refs, "refs.jsonl", allow_partial=False)


def test_cli_scores_partial_gsm8k_predictions_and_keeps_their_ids(tmp_path: Path) -> None:
    refs = _write(tmp_path / "test.jsonl", REFS)
    preds = _write(tmp_path / "preds.jsonl", [{"idx": 4, "output": "#### 4"},
                                             {"idx": 2, "output": "so 7"}])  # fmt: skip
    argv = [sys.executable, "-m", "raymix", "eval", "gsm8k", "--predictions", str(preds),
            "--references", str(refs)]  # fmt: skip
    refused = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "--allow-partial" in refused.stderr
    assert not (tmp_path / "preds.jsonl_results.jsonl").exists()
    proc = subprocess.run([*argv, "--allow-partial"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    # scored over the 2 predictions given: one right by both filters
    assert json.loads(proc.stdout) == {"strict_match": 0.5, "flexible_extract": 0.5}
    assert "scoring 2 of 5 references" in proc.stderr
    results = tmp_path / "preds.jsonl_results.jsonl"
    assert f"written to {results}" in proc.stderr
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [(r["idx"], r["target"], r["strict_match"]) for r in rows] == [
        (2, "2", 0.0),
        (4, "4", 1.0),
    ]


def test_humaneval_several_samples_per_task_are_pass_at_k_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"task_id": t, "completion": c} for t in PROBLEMS for c in ("a", "b")]
    samples = _write(tmp_path / "s.jsonl", rows)
    assert humaneval_samples(samples, PROBLEMS, "p.jsonl", allow_partial=False) == rows
    assert capsys.readouterr().err == ""


def test_humaneval_partial_samples_only_with_allow_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"task_id": "t/0", "completion": "a"}, {"task_id": "t/0", "completion": "b"},
            {"task_id": "t/2", "completion": "c"}]  # fmt: skip
    samples = _write(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match=r"1 of the 3 problems of p.jsonl have no sample .*t/1"):
        humaneval_samples(samples, PROBLEMS, "p.jsonl", allow_partial=False)
    assert humaneval_samples(samples, PROBLEMS, "p.jsonl", allow_partial=True) == rows
    err = capsys.readouterr().err
    assert "scoring 3 samples of 2 of the 3 problems (1 without samples" in err
    assert "up to the fewest samples of a task, 1" in err


def test_humaneval_uneven_samples_name_the_short_tasks(tmp_path: Path) -> None:
    rows = [{"task_id": t, "completion": "x"} for t in ("t/0", "t/1", "t/1", "t/2", "t/2")]
    samples = _write(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match=r"2 for most, 1 for t/0 \(1\)"):
        humaneval_samples(samples, PROBLEMS, "p.jsonl", allow_partial=False)
    assert len(humaneval_samples(samples, PROBLEMS, "p.jsonl", allow_partial=True)) == 5
