"""ROUGE-L equals the rouge-score package's; held-out rows are scored by what each carries."""

from __future__ import annotations

import random
import string

import pytest
from rouge_score import rouge_scorer

from raymix.config.schema import EvalConfig
from raymix.data.records import Message
from raymix.eval.heldout import HeldoutTask, row_scorer
from raymix.eval.protocol import Request
from raymix.eval.text import rouge_l

WORDS = ["the", "The", "cat", "cat,", "sat.", "on", "mat", "MAT!", "a", "42", "x-y", "é", "don't"]


def _sentence(rng: random.Random) -> str:
    n = rng.randint(0, 12)
    words = [
        rng.choice(WORDS + ["".join(rng.choices(string.ascii_letters, k=3))]) for _ in range(n)
    ]
    return rng.choice([" ", "  ", "\n"]).join(words)


def test_rouge_l_is_the_rouge_score_packages() -> None:
    assert rouge_l("hello, world", "Hello world") == 1.0  # its tokenizer drops punctuation
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    worst = 0.0
    for _ in range(1000):
        out, ref = _sentence(rng), _sentence(rng)
        worst = max(worst, abs(rouge_l(out, ref) - reference.score(ref, out)["rougeL"].fmeasure))
    assert worst == 0.0


def _req(source: str, meta: dict[str, str], reference: str) -> Request:
    return Request(
        [Message(role="user", content="q")],
        {"source": source, **meta, "reference_text": reference},
    )


def test_heldout_rows_are_scored_by_what_each_carries() -> None:
    """A GSM8K-style source where one row has no ``####`` answer: that row is scored against
    its reference text, the others by their final number (today: KeyError after training)."""
    reqs = [
        _req("math", {"answer": "18"}, "9 + 9 = 18\n#### 18"),
        _req("math", {"answer": "7"}, "#### 7"),
        _req("math", {}, "Seven."),
    ]
    outs = ["so #### 18", "it is 6", "seven"]
    metrics, rows = HeldoutTask({}, EvalConfig()).score(outs, reqs)
    assert [r["scorer"] for r in rows] == ["answer", "answer", "reference"]
    assert metrics["math/strict_match"] == pytest.approx(1 / 2)  # answer rows only
    assert metrics["math/rouge_l"] == pytest.approx(1.0)  # the reference row only
    assert metrics["math/exact_match"] == pytest.approx(2 / 3)  # every row that has one
    assert row_scorer({"test": "assert f()"}) == "test"
    assert row_scorer({"answer": "1", "test": "x"}) == "answer"
