"""MT-Bench against FastChat 0.2.36 itself (the ``test`` extra): judge prompts and the parsing of
ratings and verdicts through FastChat's own ``run_judge_single``/``run_judge_pair`` (only their
call to the paid judge replaced), and multi-turn generation prompts through its ``vicuna_v1.1``
conversation, on many generated inputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import fastchat.llm_judge.common as fc  # the test extra: fschat==0.2.36
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymix.data.templates import prompt
from raymix.eval.mt_bench import (
    MTBenchTask,
    Question,
    pair_prompt,
    parse_pair_verdict,
    parse_rating,
    single_prompt,
)
from raymix.eval.protocol import answer_all

COUNTS: Counter[str] = Counter()
"""Inputs compared with FastChat, per kind (printed at the end of the module's tests)."""

_TEXT = st.text(
    alphabet=st.sampled_from(list("[]0123456789.,: ABCabc\n") * 4 + ["٣", "１", "\u00b2"]),
    max_size=24,
)
_ASCII_NUMBER = st.from_regex(r"[1-9][0-9]{0,2}(\.[0-9]{0,2})?", fullmatch=True)
_NUMBER = st.one_of(
    _ASCII_NUMBER,
    _ASCII_NUMBER,
    _ASCII_NUMBER,
    st.from_regex(r"\d{1,3}\.?\d?", fullmatch=True),  # leading zeros, digits of other scripts
)
_JUDGMENT = st.one_of(
    _TEXT,
    st.builds(lambda a, b, c: f"{a}[[{b}]]{c}", _TEXT, _NUMBER | st.sampled_from("ABC"), _TEXT),
    st.builds(lambda a, b, c: f"{a}[{b}]{c}", _TEXT, _NUMBER | st.sampled_from("ABC"), _TEXT),
    st.builds(  # two verdicts or ratings: which one wins
        lambda a, b, c, d: f"{a}[[{b}]]{c}[[{d}]]",
        _TEXT,
        _NUMBER | st.sampled_from("ABC"),
        _TEXT,
        _NUMBER | st.sampled_from("ABC"),
    ),
)
_ANY = st.text(max_size=40)
_FIELDS = (
    "question",
    "answer",
    "question_1",
    "question_2",
    "answer_1",
    "answer_2",
    "answer_a",
    "answer_b",
    "answer_a_1",
    "answer_a_2",
    "answer_b_1",
    "answer_b_2",
    "ref_answer_1",
    "ref_answer_2",
)


def _uses(name: str, field: str) -> bool:
    multi, math, pair = "multi-turn" in name, "math" in name, name.startswith("pair")
    if field.startswith("ref_answer"):
        return math and (field.endswith("1") or multi)
    plain = {"question", "answer", "answer_a", "answer_b"}
    if field in plain:
        return not multi and (field.startswith("answer_") == pair or field == "question")
    is_pair_field = field.startswith("answer_a") or field.startswith("answer_b")
    return multi and (field.startswith("question") or is_pair_field == pair)


PROMPTS = {
    name: {
        "name": name,
        "type": "pairwise" if name.startswith("pair") else "single",
        "system_prompt": f"judge:{name}",
        "prompt_template": "|".join(f"{f}={{{f}}}" for f in _FIELDS if _uses(name, f)),
        "output_format": "[[A]]" if name.startswith("pair") else "[[rating]]",
    }
    for name in (
        "single-v1",
        "single-math-v1",
        "single-v1-multi-turn",
        "single-math-v1-multi-turn",
        "pair-v2",
        "pair-math-v1",
        "pair-v2-multi-turn",
        "pair-math-v1-multi-turn",
    )
}


def _fastchat(call: Callable[..., Any], judgment: str, *args: Any, **kw: Any) -> tuple[Any, Any]:
    """FastChat's function with its call to the paid judge answered by ``judgment``; returns its
    result and the messages it would have sent."""
    sent: list[Any] = []

    def reply(model: str, conv: Any, temperature: float, max_tokens: int, api_dict: Any = None):  # type: ignore[no-untyped-def]
        sent.append(conv.to_openai_api_messages())
        return judgment

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fc, "chat_completion_openai", reply)
        out = call(*args, **kw)
    return out, sent[0]


def _single(judgment: str) -> Any:
    q = {"turns": ["q"]}
    answer = {"choices": [{"turns": ["a"]}]}
    judge = fc.Judge("gpt-4", PROMPTS["single-v1"])
    return _fastchat(fc.run_judge_single, judgment, q, answer, judge, None)[0][0]


@settings(max_examples=1500, deadline=None)
@given(_JUDGMENT)
def test_ratings_parse_as_fastchat_parses_them(judgment: str) -> None:
    try:
        expected = float(_single(judgment))
    except (SyntaxError, ValueError):  # FastChat's literal_eval raises: we count it unparsable
        COUNTS["rating_fastchat_raises"] += 1
        assert parse_rating(judgment) == -1.0
        return
    COUNTS["rating"] += 1
    assert parse_rating(judgment) == expected


@settings(max_examples=1000, deadline=None)
@given(_JUDGMENT)
def test_verdicts_parse_as_fastchat_parses_them(judgment: str) -> None:
    q = {"turns": ["q"]}
    answer = {"choices": [{"turns": ["a"]}]}
    judge = fc.Judge("gpt-4", PROMPTS["pair-v2"])
    (winner, _, _), _ = _fastchat(fc.run_judge_pair, judgment, q, answer, answer, judge, None)
    COUNTS["verdict"] += 1
    assert parse_pair_verdict(judgment) == winner


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=st.lists(_ANY, min_size=2, max_size=2),
    a=st.lists(_ANY, min_size=2, max_size=2),
    b=st.lists(_ANY, min_size=2, max_size=2),
    ref=st.lists(_ANY, min_size=2, max_size=2),
    category=st.sampled_from(["writing", "math", "reasoning", "coding", "roleplay"]),
    turn=st.sampled_from([1, 2]),
)
def test_judge_prompts_are_fastchats(
    turns: list[str], a: list[str], b: list[str], ref: list[str], category: str, turn: int
) -> None:
    q = Question(1, category, turns, ref)
    question = {"turns": turns}
    ref_answer = (
        {"choices": [{"turns": ref}]} if category in ("math", "reasoning", "coding") else None
    )

    name, ours = single_prompt(PROMPTS, q, {1: a[0], 2: a[1]}, turn)
    judge = fc.Judge("gpt-4", PROMPTS[name])
    answer = {"choices": [{"turns": a}]}
    _, sent = _fastchat(
        fc.run_judge_single, "[[1]]", question, answer, judge, ref_answer, turn == 2
    )
    assert ours == sent

    name, ours = pair_prompt(PROMPTS, q, a, b, turn)
    judge = fc.Judge("gpt-4", PROMPTS[name])
    answer_b = {"choices": [{"turns": b}]}
    _, sent = _fastchat(
        fc.run_judge_pair, "[[A]]", question, answer, answer_b, judge, ref_answer, turn == 2
    )
    assert ours == sent
    COUNTS["judge_prompt_pairs"] += 1


@settings(max_examples=300, deadline=None)
@given(questions=st.lists(st.lists(_ANY, min_size=2, max_size=2), min_size=1, max_size=3))
def test_multi_turn_generation_prompts_are_fastchats_vicuna(questions: list[list[str]]) -> None:
    """Each turn's prompt as FastChat's gen_model_answer builds it for a Vicuna model."""
    task = MTBenchTask(
        [Question(i, "writing", turns, None) for i, turns in enumerate(questions)],
        {},
        judge=None,  # type: ignore[arg-type]  # generation only
    )
    ours: dict[tuple[int, int], str] = {}

    def answer(requests: list[Any]) -> list[str]:
        outs = []
        for r in requests:
            ours[r.meta["question_id"], r.meta["turn"]] = prompt("vicuna", r.messages)
            outs.append(f" answer {r.meta['question_id']}.{r.meta['turn']}\n")  # as generated
        return outs

    answer_all(task, answer)
    for i, turns in enumerate(questions):
        conv = fc.get_conversation_template("vicuna-7b-v1.5")
        for turn, text in enumerate(turns, 1):
            conv.append_message(conv.roles[0], text)
            conv.append_message(conv.roles[1], None)
            assert ours[i, turn] == conv.get_prompt()
            COUNTS["generation_prompts"] += 1
            conv.update_last_message(f" answer {i}.{turn}\n".strip())  # gen_model_answer strips


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Any:
    """Prints how many inputs were compared with FastChat (run with -s to see it)."""
    yield
    print("\ncompared with FastChat 0.2.36:", dict(COUNTS))
