"""RACE in the lm-evaluation-harness task: a tiny local file in the hub dataset's row format
(EleutherAI/race: an article and its problems), scored by lm-eval with a tiny random Llama under
lm-eval's own ``race`` prompt functions; every score re-derived here by direct log-likelihoods.
The hub path (no local file) is only checked to be chosen, never run: the hub is not reachable."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from raymix.config.schema import EvalConfig, HarnessTaskConfig, ModelConfig
from raymix.errors import ConfigError, DataError
from raymix.eval.harness import BENCHMARKS, HarnessTask
from raymix.eval.harness_data import RACE_FILE, SPECS, check_benchmarks
from raymix.eval.registry import task_factory
from tests.unit.eval.test_harness import _loglikelihood

ARTICLE = (
    "Tom lives in a small town near the sea. Every morning he walks to the harbour with his "
    "dog and watches the fishing boats come back. His sister Ann works in the bakery."
)
ROWS: list[dict[str, Any]] = [
    {  # two problems: the first is answered in the prompt, the last is asked
        "example_id": "high1.txt",
        "article": ARTICLE,
        "problems": [
            {
                "question": "Where does Tom live?",
                "options": ["In a city", "Near the sea", "On a farm", "In the mountains"],
                "answer": "B",
            },
            {
                "question": "Tom walks to the harbour with his  _  .",
                "options": ["sister", "father", "dog", "cat"],
                "answer": "C",
            },
        ],
    },
    {  # the hub's own form: problems as a string of a Python list
        "example_id": "high2.txt",
        "article": ARTICLE,
        "problems": str(
            [
                {
                    "question": "Where does Ann work?",
                    "options": ["In a bakery", "In a school", "On a boat", "In a shop"],
                    "answer": "A",
                }
            ]
        ),
    },
    {
        "example_id": "high3.txt",
        "article": ARTICLE,
        "problems": [
            {
                "question": "What does Tom watch?",
                "options": ["Birds", "Trains", "Children", "Fishing boats"],
                "answer": "D",
            }
        ],
    },
    {
        "example_id": "high4.txt",
        "article": ARTICLE,
        "problems": [
            {
                "question": "Who is Ann?",
                "options": ["His mother", "His sister", "His teacher", "His friend"],
                "answer": "B",
            }
        ],
    },
]
LIMIT = 3


def _write_race(folder: Path, rows: list[dict[str, Any]]) -> Path:
    (folder / "race").mkdir(parents=True, exist_ok=True)
    (folder / RACE_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@functools.cache
def _run(folder: str) -> tuple[Any, Any, Any, dict[str, float], list[dict[str, Any]]]:
    from raymix.data.tokenizer import load_tokenizer, train_builtin
    from raymix.train.model import build_model

    tok = load_tokenizer(train_builtin([json.dumps(r) for r in ROWS] * 30, 300))
    model = build_model(ModelConfig(), tok, seed=0, dtype="float32")
    t = HarnessTaskConfig(name="harness", path=folder, benchmarks=["race"], limit=LIMIT)
    task = task_factory("harness")(t, EvalConfig(batch_size=4), {})
    metrics, rows = task.run_on_model(model, tok)
    return model, tok, task, metrics, rows


@pytest.fixture(scope="module")
def race_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _run(str(_write_race(tmp_path_factory.mktemp("harness"), ROWS)))


def _official(d: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """(context, continuation) per choice and the gold index, as lm-eval's race.yaml builds them
    from a hub row (problems a string of a Python list)."""
    from lm_eval.tasks.race import preprocess_race as race

    doc = {**d, "problems": d["problems"] if isinstance(d["problems"], str) else str(d["problems"])}
    ctx = race.doc_to_text(doc)
    return [(ctx, f" {c}") for c in race.doc_to_choice(doc)], race.doc_to_target(doc)


def test_race_reports_acc_under_the_harness_names(race_run: Any) -> None:
    _, _, task, metrics, rows = race_run
    assert set(metrics) == {"harness/race/acc", "harness/average/acc"}
    assert metrics["harness/average/acc"] == metrics["harness/race/acc"]
    assert [r["benchmark"] for r in rows] == ["race"] * LIMIT
    assert [r["row"] for r in rows] == list(range(LIMIT))
    assert [r["gold"] for r in rows] == [2, 0, 3]  # the last problem's answer: C, A, D
    assert metrics["harness/race/acc"] == sum(r["correct"] for r in rows) / LIMIT
    assert task.requests() == [] and task.score([], []) == (metrics, rows)


def test_race_scores_match_direct_loglikelihoods_under_lm_evals_prompt(race_run: Any) -> None:
    model, tok, _, metrics, rows = race_run
    right = 0
    for r in rows:
        pairs, gold = _official(ROWS[r["row"]])
        assert r["gold"] == gold
        lls = [_loglikelihood(model, tok, c, x) for c, x in pairs]
        assert None not in lls
        assert r["loglikelihoods"] == pytest.approx(lls, rel=1e-4, abs=1e-3)
        chosen = max(range(4), key=lls.__getitem__)  # type: ignore[arg-type]
        assert r["chosen"] == chosen
        right += chosen == gold
    assert metrics["harness/race/acc"] == right / len(rows)


def test_race_prompt_answers_the_earlier_problems() -> None:
    (pairs, gold) = _official(ROWS[0])
    ctx = pairs[0][0]
    assert ctx.startswith("Article: " + ARTICLE + "\n\n")
    assert "Question: Where does Tom live?\nAnswer: Near the sea\n" in ctx
    assert ctx.endswith("Tom walks to the harbour with his  _  .")
    assert [x for _, x in pairs] == [" sister", " father", " dog", " cat"] and gold == 2


def test_race_texts_for_the_contamination_check(tmp_path: Path) -> None:
    task = HarnessTask(["race"], _write_race(tmp_path, ROWS), limit=1)
    texts = task.texts()
    assert texts.count(ARTICLE) == len(ROWS)  # every row, whatever the limit
    assert "Where does Ann work?" in texts and "Fishing boats" in texts
    assert not any("'answer'" in t for t in texts)  # no Python literal text


def test_race_runs_only_when_listed(tmp_path: Path) -> None:
    assert "race" not in BENCHMARKS
    with pytest.raises(ConfigError, match=r"has no arc/arc_easy_test.jsonl") as e:
        check_benchmarks([], tmp_path)
    assert RACE_FILE not in str(e.value)
    with pytest.raises(ConfigError, match=r"allowed: .*mmlu, race"):
        check_benchmarks(["rcae"], tmp_path)


def test_without_the_local_file_race_is_lm_evals_hub_task(tmp_path: Path) -> None:
    from raymix.eval.harness import _from_hub

    assert check_benchmarks(["race"], tmp_path) == (["race"], tmp_path.resolve())
    assert _from_hub("race", tmp_path) and SPECS["race"].hub == "race"
    assert not _from_hub("race", _write_race(tmp_path, ROWS))
    assert not _from_hub("piqa", tmp_path)  # the others have no hub task: their files are required


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ({"question": "Q?", "options": ["a", "b", "c", "d"], "answer": "E"}, "answer A, B, C or D"),
        ({"question": "Q?", "options": ["a", "b", "c"], "answer": "A"}, "4 options"),
    ],
)
def test_malformed_race_rows_name_the_file_and_row(
    tmp_path: Path, problem: dict[str, Any], message: str
) -> None:
    _write_race(tmp_path, [ROWS[2], {"article": ARTICLE, "problems": [problem]}])
    with pytest.raises(DataError, match=rf"race_high_test.jsonl: row 2: problem 1: .*{message}"):
        SPECS["race"].load(tmp_path)


def test_the_hub_path_asks_lm_evals_race_task_for_its_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the local file, lm-eval's own race task loads EleutherAI/race (high) through
    ``datasets.load_dataset``; here that call fails as it does offline, and the error says which
    file to put where."""
    import datasets

    from raymix.eval.harness import _build_tasks

    asked: list[tuple[Any, Any]] = []

    def offline(path: Any = None, name: Any = None, **kw: Any) -> Any:
        asked.append((path, name))
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=rf"lm-eval's 'race' task .*ConnectionError.*{RACE_FILE}"):
        _build_tasks(["race"], tmp_path, LIMIT)
    assert asked == [("EleutherAI/race", "high")]
