"""13-gram contamination: found, counted in the manifest, and dropped when asked."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from raymix.config import validate
from raymix.data.contamination import contaminated_rows, ngrams
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data
from raymix.data.records import chat
from raymix.data.sources import load_records
from raymix.sweep.contamination import find_contamination
from raymix.sweep.driver import contamination_metrics
from tests.conftest import tiny_experiment

LEAK = "natalia sold clips to forty eight of her friends in april and then she sold half as many"


def test_ngrams_ignore_case_and_punctuation() -> None:
    assert ngrams("A, b. C d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert ngrams("too short", 13) == set()


def test_rows_sharing_a_13_gram_are_found() -> None:
    grams = ngrams(LEAK.upper() + "!", 13)
    rows = [chat("Natalia sold clips to forty-eight of her friends in April, and then", "x", "s", 0),
            chat(LEAK[:40], "unrelated words entirely here", "s", 1),
            chat("q", LEAK, "s", 2)]  # fmt: skip
    # row 0 shares the first 13 words once case, hyphen and comma are ignored; row 1 is too short
    assert contaminated_rows(rows, grams, 13) == [0, 2]


def _cfg(drop: bool):  # type: ignore[no-untyped-def]
    raw = tiny_experiment(
        sources=[
            {
                "name": "code",
                "path": "synthetic:code",
                "ability": "code",
                "size": 300,
                "heldout": 30,
            }
        ],
        mixture={"grid": {"m": {"code": 200}}},
        eval={"tasks": [{"name": "heldout"}], "contamination": {"drop": drop}},
    )
    return validate(raw, origin="test")


def test_heldout_duplicates_are_counted_and_dropped_on_request() -> None:
    # the built-in code source repeats its templates, so held-out rows have twins in training
    cfg = _cfg(drop=False)
    _, _, sources = prepare_data(cfg)
    flagged = find_contamination(cfg, sources)
    assert flagged is not None and flagged["heldout"]["code"]
    counted = build_plan(cfg, "m", sources, flagged)
    assert counted.contamination is not None
    c = counted.contamination["tasks"]["heldout"]["code"]
    assert 0 < c["plan_rows"] <= c["plan_total"] == 200 and counted.contamination["dropped"] == {}

    cfg = _cfg(drop=True)
    dropped = build_plan(cfg, "m", sources, flagged)
    d = dropped.contamination
    assert d is not None and d["dropped"]["code"] == c["pool_rows"] > 0
    assert d["tasks"]["heldout"]["code"]["plan_rows"] == 0
    assert dropped.rows_per_source() == {"code": 200}  # still exact, drawn from the clean rows


def test_no_check_without_eval_tasks() -> None:
    cfg = validate(tiny_experiment(), origin="test")
    assert find_contamination(cfg, prepare_data(cfg)[2]) is None


# --- the whole eval set is checked, whatever the task's limit ------------------------------------

VOCAB = ["apple", "river", "stone", "cloud", "marble", "lantern", "violet", "copper", "meadow",
         "harbor", "falcon", "ember", "willow", "canyon", "saddle", "quartz", "thistle", "orchid"]  # fmt: skip
BACKGROUND = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _sentence(rng: random.Random, words: list[str], n: int = 20) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def _planted(tmp_path: Path, questions: list[str], planted: list[int]) -> Path:
    """An alpaca training file: 200 unrelated rows with the questions ``planted`` copied in."""
    rng = random.Random(1)
    rows = [{"instruction": _sentence(rng, BACKGROUND), "output": "ok"} for _ in range(200)]
    for k, i in enumerate(planted):
        rows.insert(7 * k + 3, {"instruction": f"Solve: {questions[i]}", "output": "42"})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _experiment(train: Path, tasks: list[dict[str, Any]], drop: bool = False):  # type: ignore[no-untyped-def]
    raw = tiny_experiment(
        sources=[{"name": "train", "path": str(train), "ability": "math", "heldout": 0}],
        mixture={"grid": {"m": {"train": 1.0}}},
        eval={"tasks": tasks, "contamination": {"drop": drop}},
    )
    return validate(raw, origin="test")


# 4 of the planted test questions are among the first 64 (the default limit), 20 are beyond it
PLANTED = [0, 10, 40, 63, *range(64, 400, 17)]


def test_planted_test_questions_beyond_the_limit_are_all_found(tmp_path: Path) -> None:
    rng = random.Random(0)
    questions = [_sentence(rng, VOCAB) + "?" for _ in range(400)]
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in questions)
    )
    assert len(PLANTED) == 24 and sum(i >= 64 for i in PLANTED) == 20
    cfg = _experiment(
        _planted(tmp_path, questions, PLANTED), [{"name": "gsm8k", "path": str(test)}]
    )
    assert cfg.eval.tasks[0].limit == 64  # trials score 64 questions; the check uses all 400
    _, _, sources = prepare_data(cfg)
    flagged = find_contamination(cfg, sources)
    assert flagged is not None
    train = load_records(cfg.sources[0]).records
    found = [
        train[i]["messages"][0]["content"].removeprefix("Solve: ")
        for i in flagged["gsm8k"]["train"]
    ]
    assert found == [questions[i] for i in PLANTED]

    plan = build_plan(cfg, "m", sources, flagged)
    m = contamination_metrics(plan)
    assert m["contamination/gsm8k/train/rows"] == 24 == m["contamination/gsm8k/train/pool_rows"]
    assert m["contamination/gsm8k/train"] == pytest.approx(24 / 224)

    # with drop: true the figures before the drop are still logged, next to the plan's 0
    cfg = _experiment(Path(cfg.sources[0].path), [{"name": "gsm8k", "path": str(test)}], drop=True)
    m = contamination_metrics(build_plan(cfg, "m", sources, flagged))
    assert m["contamination/gsm8k/train"] == 0.0 and m["contamination/gsm8k/train/rows"] == 0
    assert m["contamination/gsm8k/train/pool_rows"] == 24 == m["contamination/gsm8k/train/dropped"]
    assert m["contamination/gsm8k/train/pool_share"] == pytest.approx(24 / 224)


@pytest.mark.shared_data
def test_planted_real_gsm8k_test_questions_are_all_found(shared_data: Path, tmp_path: Path) -> None:
    test = shared_data / "gsm8k/test.jsonl"
    questions = [json.loads(x)["question"] for x in test.read_text().splitlines() if x.strip()]
    planted = [0, 10, 40, 63, *range(100, 1319, 61)]
    cfg = _experiment(
        _planted(tmp_path, questions, planted), [{"name": "gsm8k", "path": str(test)}]
    )
    flagged = find_contamination(cfg, prepare_data(cfg)[2])
    assert flagged is not None and len(flagged["gsm8k"]["train"]) == len(planted) == 24


def _harness_files(root: Path) -> tuple[list[str], list[str]]:
    """A tiny ARC-Easy and MMLU in the local formats; their questions."""
    rng = random.Random(2)
    arc = [f"Question: {_sentence(rng, VOCAB)}?" for _ in range(6)]
    mmlu = [_sentence(rng, VOCAB) + "?" for _ in range(6)]
    (root / "arc").mkdir()
    (root / "arc/arc_easy_test.jsonl").write_text(
        "".join(json.dumps({"query": q, "choices": ["a", "b"], "gold": 0}) + "\n" for q in arc)
    )
    (root / "mmlu").mkdir()
    (root / "mmlu/mmlu_test.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "subject": f"s{i % 2}",
                    "question": q,
                    "choices": ["1", "2", "3", "4"],
                    "answer": 0,
                }
            )
            + "\n"
            for i, q in enumerate(mmlu)
        )
    )
    return arc, mmlu


def test_harness_benchmarks_are_compared(tmp_path: Path) -> None:
    arc, mmlu = _harness_files(tmp_path)
    questions = [q.removeprefix("Question: ") for q in arc] + mmlu
    train = _planted(tmp_path, questions, [0, 5, 6, 11])  # the first and last of each
    task = {
        "name": "harness",
        "path": str(tmp_path),
        "benchmarks": ["arc_easy", "mmlu"],
        "limit": 1,
    }
    cfg = _experiment(train, [task])
    flagged = find_contamination(cfg, prepare_data(cfg)[2])
    assert flagged is not None and len(flagged["harness"]["train"]) == 4
