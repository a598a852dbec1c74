"""AlpacaEval end to end through the real openai client against a local endpoint, compared with
what alpaca_eval 0.6.6 computes on the same judgements (tests/assets/alpaca_eval, made by its
make_fixtures.py: alpaca_eval does not import beside setuptools 81+)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymix.config.schema import EvalConfig, JudgeConfig, parse_eval_task
from raymix.eval.alpaca_eval import alpaca_eval_chat, trial_first
from raymix.eval.alpaca_metrics import head_to_head, length_controlled_minimal_win_rate
from raymix.eval.protocol import Request, answer_all
from raymix.eval.registry import task_factory
from tests.unit.eval.conftest import KEY_ENV, FakeJudge

ASSETS = Path(__file__).parents[2] / "assets" / "alpaca_eval"
DATASETS = json.loads((ASSETS / "datasets.json").read_text())
PROMPTS = json.loads((ASSETS / "prompts.json").read_text())
_INSTRUCTION = re.compile(r'"instruction": """(.*?)""",', re.DOTALL)


def _text(tag: str, i: int, n: int) -> str:
    """make_fixtures.py's output text of length ``n``."""
    head = f"{tag}{i}:"
    return head + "x" * max(n - len(head), 0)


def _build(url: str, path: Path, **kw: Any) -> Any:
    judge = JudgeConfig(base_url=url, model="judge-test", api_key_env=KEY_ENV)
    cfg = parse_eval_task(
        {"name": "alpaca_eval", "path": str(path), "judge": judge.model_dump(), "limit": None, **kw}
    )
    return task_factory("alpaca_eval")(cfg, EvalConfig(), {})


@pytest.mark.parametrize("case", PROMPTS, ids=range(len(PROMPTS)))
def test_judge_messages_and_order_are_alpaca_evals(case: dict[str, Any]) -> None:
    got = alpaca_eval_chat(case["instruction"], case["output_1"], case["output_2"])
    assert got == case["messages"]
    assert trial_first(case["instruction"]) == case["switched"]


@pytest.mark.parametrize(
    "data", DATASETS, ids=[f"seed{d['seed']}-{d['kind']}-{len(d['rows'])}" for d in DATASETS]
)
def test_metrics_equal_alpaca_evals(
    server: tuple[FakeJudge, str], tmp_path: Path, data: dict[str, Any]
) -> None:
    judge, url = server
    rows = data["rows"]
    replies = {r["instruction"]: r["reply"] for r in rows}

    def reply(system: str, user: str, seen: int) -> Any:
        got = replies[_INSTRUCTION.search(user).group(1)]  # type: ignore[union-attr]
        top = got["top_logprobs"]
        return got["text"] if top is None else (got["text"], top)

    judge.reply = reply
    file = tmp_path / "alpaca_eval.json"
    file.write_text(
        json.dumps(
            [
                {"instruction": r["instruction"], "output": _text("B", i, r["baseline_len"])}
                for i, r in enumerate(rows)
            ]
        )
    )
    outputs = {
        r["instruction"]: _text("B" if r["identical"] else "T", i, r["output_len"])
        for i, r in enumerate(rows)
    }
    task = _build(url, file)
    metrics, got = task.score(
        *answer_all(task, lambda reqs: [outputs[q.messages[-1]["content"]] for q in reqs])
    )

    assert len(judge.received) == sum(not r["identical"] for r in rows)  # ties are not asked
    for body in judge.received:  # the order shown is AlpacaEval's
        instruction = _INSTRUCTION.search(body["messages"][1]["content"]).group(1)  # type: ignore[union-attr]
        user = body["messages"][1]["content"]
        switched = next(r["switched"] for r in rows if r["instruction"] == instruction)
        assert (user.index('"output": """T') < user.index('"output": """B')) == switched
        assert body["logprobs"] is True and body["top_logprobs"] == 5
    for r, row in zip(rows, got, strict=True):
        expected = r["alpaca_eval_preference"]
        if expected is None:
            assert row["preference"] is None and row["preference_source"] == "unparsable"
        else:
            assert row["preference"] == pytest.approx(expected - 1, abs=1e-12)
    ae = data["alpaca_eval"]
    for name in ("win_rate", "standard_error", "discrete_win_rate"):
        assert metrics[f"alpaca_eval/{name}"] == pytest.approx(ae[name], abs=1e-9), name
    for name in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert metrics[f"alpaca_eval/{name}"] == ae[name], name
    lc = metrics["alpaca_eval/length_controlled_minimal_win_rate"]
    assert lc == pytest.approx(ae["length_controlled_winrate"], abs=1e-6)
    sources = {"logprobs": 0.0, "discrete": 0.0}
    sources[data["kind"]] = float(sum(r["alpaca_eval_preference"] is not None for r in rows))
    sources[data["kind"]] -= sum(r["identical"] for r in rows)
    assert metrics["alpaca_eval/logprob_preferences"] == sources["logprobs"]
    assert metrics["alpaca_eval/discrete_preferences"] == sources["discrete"]
    assert metrics["alpaca_eval/unparsable"] == sum(
        r["alpaca_eval_preference"] is None for r in rows
    )


def test_metric_functions_equal_alpaca_evals_on_its_preferences() -> None:
    for data in DATASETS:
        rows = data["rows"]
        prefs = [math.nan if r["alpaca_eval_preference"] is None else r["alpaca_eval_preference"] - 1
                 for r in rows]  # fmt: skip
        ours = head_to_head(prefs)
        ae = data["alpaca_eval"]
        assert ours["win_rate"] == pytest.approx(ae["win_rate"], abs=1e-9)
        lc = length_controlled_minimal_win_rate(
            prefs, [r["output_len"] for r in rows], [r["baseline_len"] for r in rows]
        )
        assert lc == pytest.approx(ae["length_controlled_winrate"], abs=1e-6)


def test_length_control_needs_five_rows_and_a_spread_of_lengths() -> None:
    assert length_controlled_minimal_win_rate([1, 0, 1, 1], [5, 9, 7, 8], [6, 6, 6, 6]) is None
    assert length_controlled_minimal_win_rate([1, 0, 1, 1, 0], [9] * 5, [6] * 5) is None
    lc = length_controlled_minimal_win_rate([1, 0, 1, 1, 0], [9, 1, 7, 8, 3], [5] * 5)
    assert lc is not None and 0 < lc < 100


def test_length_control_discounts_wins_that_length_explains() -> None:
    """The trial wins exactly when its output is the longer one: the GLM moves toward 50 %."""
    rng = np.random.default_rng(0)
    out_len = rng.integers(50, 800, 60)
    base_len = np.full(60, 400)
    prefs = (out_len > base_len).astype(float)
    raw = 100 * prefs.mean()
    lc = length_controlled_minimal_win_rate(prefs, out_len, base_len)
    assert lc is not None and abs(lc - 50) < 0.5 * abs(raw - 50), (raw, lc)


def test_alpaca_eval_reads_a_separate_baseline_file(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    judge.reply = lambda system, user, seen: (
        "m" if user.index("TRIAL") < user.index("BASE") else "M"
    )
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text(json.dumps({"instruction": "task 0"}) + "\n")
    baseline = tmp_path / "base.jsonl"
    baseline.write_text(json.dumps({"instruction": "task 0", "output": "BASE text"}) + "\n")
    task = _build(url, instructions, baseline=str(baseline))
    metrics, rows = task.score(*answer_all(task, lambda reqs: ["TRIAL text" for _ in reqs]))
    assert metrics["alpaca_eval/win_rate"] == 100.0
    assert metrics["alpaca_eval/discrete_preferences"] == 1.0
    assert rows[0]["baseline_output"] == "BASE text" and rows[0]["preference_source"] == "discrete"
    assert "alpaca_eval/length_controlled_minimal_win_rate" not in metrics  # one row: no fit


def test_runs_average_each_examples_preference(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    # first run prefers the first output shown, second run the second one
    judge.reply = lambda system, user, seen: ("m" if seen == 0 else "M", None)
    file = tmp_path / "rows.jsonl"
    file.write_text(json.dumps({"instruction": "only", "output": "BASE"}) + "\n")
    judge_cfg = JudgeConfig(base_url=url, model="judge-test", api_key_env=KEY_ENV, runs=2)
    cfg = parse_eval_task(
        {"name": "alpaca_eval", "path": str(file), "judge": judge_cfg.model_dump()}
    )
    task = task_factory("alpaca_eval")(cfg, EvalConfig(), {})
    metrics, rows = task.score(
        ["TRIAL"], [Request([{"role": "user", "content": "only"}], {"index": 0})]
    )
    assert [r["run"] for r in rows] == [0, 1] and len(judge.received) == 2
    assert metrics["alpaca_eval/win_rate"] == 50.0 and metrics["alpaca_eval/n_total"] == 1
