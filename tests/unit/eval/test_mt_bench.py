"""MT-Bench single and pairwise tasks through the real openai client against a local endpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from raymix.config import validate
from raymix.config.schema import EvalConfig, EvalTaskConfig, JudgeConfig, parse_eval_task
from raymix.data.files import read_jsonl
from raymix.errors import ConfigError
from raymix.eval.mt_bench import parse_pair_verdict, parse_rating, reference_for
from raymix.eval.protocol import Request, answer_all
from raymix.eval.registry import task_factory
from tests.conftest import tiny_experiment
from tests.unit.eval.conftest import KEY_ENV, FakeJudge


def _task_cfg(name: str, url: str, path: Path | None, runs: int = 1, **kw: Any) -> EvalTaskConfig:
    judge = JudgeConfig(base_url=url, model="judge-test", api_key_env=KEY_ENV, runs=runs)
    return parse_eval_task({"name": name, "path": str(path), "judge": judge.model_dump(), **kw})


def _build(cfg: EvalTaskConfig) -> Any:
    return task_factory(cfg.name)(cfg, EvalConfig(), {})


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mt_bench_dir(tmp_path: Path, questions: list[dict[str, Any]]) -> Path:
    """question.jsonl, synthetic judge prompts (system "judge:<name>") and a GPT-4 reference."""
    folder = tmp_path / "mt_bench"
    folder.mkdir()
    single = "[Question]\n{question}\n[Answer]\n{answer}"
    multi = "Q1 {question_1}\nA1 {answer_1}\nQ2 {question_2}\nA2 {answer_2}"
    pair = "[Question]\n{question}\n[A]\n{answer_a}\n[B]\n{answer_b}"
    pair_multi = (
        "Q1 {question_1}\nA1 {answer_a_1}\nQ2 {question_2}\nA2 {answer_a_2}\n"
        "B1 {answer_b_1}\nB2 {answer_b_2}"
    )
    templates = {
        "single-v1": single,
        "single-math-v1": "[Reference]\n{ref_answer_1}\n" + single,
        "single-v1-multi-turn": multi,
        "single-math-v1-multi-turn": "[Reference]\n{ref_answer_1}\n{ref_answer_2}\n" + multi,
        "pair-v2": pair,
        "pair-math-v1": "[Reference]\n{ref_answer_1}\n" + pair,
        "pair-v2-multi-turn": pair_multi,
        "pair-math-v1-multi-turn": "[Reference]\n{ref_answer_1}\n{ref_answer_2}\n" + pair_multi,
    }
    _write_jsonl(
        folder / "judge_prompts.jsonl",
        [
            {"name": n, "system_prompt": f"judge:{n}", "prompt_template": t}
            for n, t in templates.items()
        ],
    )
    _write_jsonl(folder / "question.jsonl", questions)
    refs = [{"question_id": 2, "choices": [{"index": 0, "turns": ["REF-ONE", "REF-TWO"]}]}]
    _write_jsonl(folder / "reference_answer_gpt-4.jsonl", refs)
    return folder / "question.jsonl"


QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Q1T1 write", "Q1T2 rewrite"]},
    {"question_id": 2, "category": "math", "turns": ["Q2T1 add 2+2", "Q2T2 times 3"]},
    {"question_id": 3, "category": "roleplay", "turns": ["Q3T1 play", "Q3T2 UNRATEABLE"]},
]


def _echo(requests: list[Request]) -> list[str]:
    """A stand-in model: answers name the question they answer."""
    return [f"answer to {r.messages[-1]['content'].split()[0]}" for r in requests]


def test_mt_bench_scores_turns_categories_and_overall_over_two_runs(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server

    def reply(system: str, user: str, seen: int) -> str:
        if "UNRATEABLE" in user:
            return "I will not rate this."
        if system.endswith("multi-turn"):
            return ["Rating: [[6]]", "Rating: [4]"][seen]  # the backup pattern parses too
        return ["Rating: [[8]]", "Rating: [[9.0]]"][seen]

    judge.reply = reply
    task = _build(_task_cfg("mt_bench", url, _mt_bench_dir(tmp_path, QUESTIONS), runs=2))
    outputs, requests = answer_all(task, _echo)

    assert [r.meta["turn"] for r in requests] == [1, 1, 1, 2, 2, 2]
    assert requests[3].messages == [
        {"role": "user", "content": "Q1T1 write"},
        {"role": "assistant", "content": "answer to Q1T1"},
        {"role": "user", "content": "Q1T2 rewrite"},
    ]
    metrics, rows = task.score(outputs, requests)
    assert metrics == {
        "mt_bench/score": pytest.approx((3 * (8 + 9) + 2 * (6 + 4)) / 10),
        "mt_bench/turn_1": pytest.approx(8.5),
        "mt_bench/turn_2": pytest.approx(5.0),
        "mt_bench/writing": pytest.approx(6.75),
        "mt_bench/math": pytest.approx(6.75),
        "mt_bench/roleplay": pytest.approx(8.5),
        "mt_bench/unparsable": 2.0,
    }
    assert len(judge.received) == len(rows) == 12  # 3 questions x 2 turns x 2 runs
    bad = [r for r in rows if r["score"] == -1]
    assert {(r["question_id"], r["turn"]) for r in bad} == {(3, 2)}
    assert bad[0]["judgment"] == "I will not rate this."
    assert rows[0]["questions"] == ["Q1T1 write"] and rows[0]["answers"] == ["answer to Q1T1"]


def test_mt_bench_grades_math_against_the_reference(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    task = _build(_task_cfg("mt_bench", url, _mt_bench_dir(tmp_path, QUESTIONS[:2])))
    _, rows = task.score(*answer_all(task, _echo))

    (turn1,) = judge.system_of("single-math-v1")
    assert "REF-ONE" in turn1["messages"][1]["content"]
    assert "Q2T1 add 2+2" in turn1["messages"][1]["content"]
    (turn2,) = judge.system_of("single-math-v1-multi-turn")
    user = turn2["messages"][1]["content"]
    assert "REF-ONE" in user and "REF-TWO" in user and "answer to Q2T2" in user
    assert len(judge.system_of("single-v1")) == len(judge.system_of("single-v1-multi-turn")) == 1
    assert all("REF" not in b["messages"][1]["content"] for b in judge.system_of("single-v1"))
    assert turn1["model"] == "judge-test" and turn1["temperature"] == 0.0
    assert {r["judge_prompt"] for r in rows if r["category"] == "math"} == {
        "single-math-v1",
        "single-math-v1-multi-turn",
    }


def test_rescoring_reads_the_cache(server: tuple[FakeJudge, str], tmp_path: Path) -> None:
    judge, url = server
    cfg = _task_cfg("mt_bench", url, _mt_bench_dir(tmp_path, QUESTIONS[:2]), runs=2)
    task = _build(cfg)
    outputs, requests = answer_all(task, _echo)
    first, _ = task.score(outputs, requests)
    assert len(judge.received) == 8
    again = _build(cfg)  # a fresh client: only the disk cache is shared
    second, _ = again.score(outputs, requests)
    assert len(judge.received) == 8 and again.judge.sent == 0
    assert first == second
    assert list((tmp_path / "cache" / "judge").rglob("*.json"))


PAIR_POLICY = {"Q1T1": "trial", "Q1T2": "first", "Q2T1": "baseline", "Q2T2": "trial", "Q3": "none"}


def _pair_reply(system: str, user: str, seen: int) -> str:
    """Verdicts by question and turn; "first" is a judge biased toward position A."""
    qid = re.search(r"Q(\d)T1", user).group(1)  # type: ignore[union-attr]
    turn = 2 if system.endswith("multi-turn") else 1
    policy = PAIR_POLICY.get(f"Q{qid}T{turn}", PAIR_POLICY.get(f"Q{qid}"))
    trial_is_a = user.index("TRIAL") < user.index("BASE")
    verdict = {
        "trial": "A" if trial_is_a else "B",
        "baseline": "B" if trial_is_a else "A",
        "first": "A",
        "none": None,
    }[policy]
    return f"Explanation.\n[[{verdict}]]" if verdict else "Both are fine, I guess."


def test_mt_bench_pairwise_both_orders_and_inconsistent_is_a_tie(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    judge.reply = _pair_reply
    questions = [
        {**q, "turns": [t.replace("UNRATEABLE", "") for t in q["turns"]]} for q in QUESTIONS
    ]
    baseline = _write_jsonl(
        tmp_path / "baseline.jsonl",
        [
            {"question_id": 1, "turns": ["BASE 1.1", "BASE 1.2"]},  # the documented format
            {"question_id": 2, "choices": [{"index": 0, "turns": ["BASE 2.1", "BASE 2.2"]}]},
            {"question_id": 3, "turns": ["BASE 3.1", "BASE 3.2"]},
        ],
    )
    cfg = _task_cfg(
        "mt_bench_pairwise", url, _mt_bench_dir(tmp_path, questions), baseline=str(baseline)
    )
    task = _build(cfg)
    outputs, requests = answer_all(task, lambda reqs: [f"TRIAL {i}" for i in range(len(reqs))])
    metrics, rows = task.score(outputs, requests)

    assert len(judge.received) == 12  # 3 questions x 2 turns x 2 orders
    outcome = {(r["question_id"], r["turn"]): r["outcome"] for r in rows}
    assert outcome == {
        (1, 1): "win",
        (1, 2): "tie",  # position-biased judge: the verdict flips with the order
        (2, 1): "loss",
        (2, 2): "win",
        (3, 1): "error",
        (3, 2): "error",
    }
    assert metrics == {
        "mt_bench_pairwise/win": 2.0,
        "mt_bench_pairwise/loss": 1.0,
        "mt_bench_pairwise/tie": 1.0,
        "mt_bench_pairwise/unparsable": 4.0,
        "mt_bench_pairwise/win_rate": 0.5,
        "mt_bench_pairwise/loss_rate": 0.25,
        "mt_bench_pairwise/win_rate_adjusted": pytest.approx((2 + 0.5) / 4),
    }
    math_rows = [r for r in rows if r["category"] == "math"]
    assert {r["judge_prompt"] for r in math_rows} == {"pair-math-v1", "pair-math-v1-multi-turn"}
    row = rows[1]
    assert row["verdict_trial_first"] == "A" and row["verdict_baseline_first"] == "A"
    assert row["baseline_answers"] == ["BASE 1.1", "BASE 1.2"]
    assert row["judgment_trial_first"].endswith("[[A]]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rating: [[7]]", 7.0),
        ("[[7.5]] and later [[2]]", 7.5),
        ("score [8] only", 8.0),
        ("no rating", -1.0),
        ("[[ten]]", -1.0),
        ("[[5.]]", 5.0),
        ("[[07]]", -1.0),  # FastChat's literal_eval raises on a leading zero
    ],
)
def test_parse_rating_uses_fastchat_patterns(text: str, expected: float) -> None:
    assert parse_rating(text) == expected


def test_parse_verdicts() -> None:
    assert parse_pair_verdict("so [[B]]") == "B"
    assert parse_pair_verdict("[[C]]") == "tie"
    assert parse_pair_verdict("A is better") == "error"
    assert parse_pair_verdict("[A]") == "error"  # FastChat 0.2.36 reads only [[A]]


def _experiment_with(task: dict[str, Any]) -> None:
    validate(tiny_experiment(eval={"tasks": [task]}), origin="x.yaml")


@pytest.mark.parametrize("name", ["mt_bench", "mt_bench_pairwise", "alpaca_eval"])
def test_missing_path_or_judge_is_a_config_error(name: str) -> None:
    judge = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(ConfigError, match=r"x.yaml: eval.tasks.0.path: required key is missing"):
        _experiment_with({"name": name, "judge": judge, "baseline": "b.jsonl"})
    with pytest.raises(ConfigError, match=r"x.yaml: eval.tasks.0.judge: required key is missing"):
        _experiment_with({"name": name, "path": "q.jsonl", "baseline": "b.jsonl"})


def test_pairwise_needs_a_baseline() -> None:
    judge = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(ConfigError, match=r"eval.tasks.0.baseline: required key is missing"):
        _experiment_with({"name": "mt_bench_pairwise", "path": "q.jsonl", "judge": judge})


@pytest.mark.shared_data
def test_real_mt_bench_files(
    server: tuple[FakeJudge, str], tmp_path: Path, shared_data: Path
) -> None:
    """A few real questions (writing, reasoning, math) with FastChat's real prompts and GPT-4
    references; the folder links the shared files, it copies none."""
    judge, url = server
    real = shared_data / "mt_bench"
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("judge_prompts.jsonl", "reference_answer_gpt-4.jsonl"):
        (folder / name).symlink_to(real / name)
    lines = (real / "question.jsonl").read_text().splitlines()
    keep = [line for line in lines if json.loads(line)["question_id"] in (81, 101, 111)]
    (folder / "question.jsonl").write_text("\n".join(keep) + "\n")
    judge.reply = lambda system, user, seen: "Rating: [[7]]"

    task = _build(_task_cfg("mt_bench", url, folder / "question.jsonl"))
    metrics, rows = task.score(*answer_all(task, _echo))

    prompts = {p["name"]: p for p in read_jsonl(real / "judge_prompts.jsonl")}
    refs = {
        r["question_id"]: r["choices"][0]["turns"]
        for r in read_jsonl(real / "reference_answer_gpt-4.jsonl")
    }
    by_key = {(r["question_id"], r["turn"]): r for r in rows}
    assert by_key[81, 1]["judge_prompt"] == "single-v1"
    assert by_key[111, 2]["judge_prompt"] == "single-math-v1-multi-turn"
    math_turn2 = [
        b
        for b in judge.received
        if b["messages"][0]["content"] == prompts["single-math-v1-multi-turn"]["system_prompt"]
    ]
    assert len(math_turn2) == 2  # reasoning and math
    assert any(refs[111][1] in b["messages"][1]["content"] for b in math_turn2)
    assert metrics["mt_bench/score"] == 7.0
    assert {k for k in metrics} >= {"mt_bench/writing", "mt_bench/reasoning", "mt_bench/math"}

    full = _build(_task_cfg("mt_bench", url, real / "question.jsonl", limit=None))
    assert len(full.questions) == 80
    graded_with_reference = [q for q in full.questions if reference_for(q, 2) is not None]
    assert len(graded_with_reference) == 30
