"""Batched generation: left padding does not change answers, sampling is seeded, stops cut."""

from __future__ import annotations

import pytest

from raymix.config.schema import ModelConfig, TinyModelConfig
from raymix.data import synthetic
from raymix.data.tokenizer import load_tokenizer, train_builtin
from raymix.eval.generate import _cut, generate
from raymix.train.model import build_model


@pytest.fixture(scope="module")
def model_and_tokenizer():  # type: ignore[no-untyped-def]
    texts = [
        m["content"]
        for i in range(100)
        for m in synthetic.generate("general", 0, i, "g")["messages"]
    ]
    tok = load_tokenizer(train_builtin(texts, 300))
    model = build_model(
        ModelConfig(
            tiny=TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
        ),
        tok,
        0,
        "float32",
    )
    return model, tok


def test_batching_and_padding_do_not_change_greedy_answers(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tokenizer
    prompts = [
        "Reverse the word 'apple'.",
        "Hi",
        "Write the word 'river' in capital letters please.",
    ]
    together = generate(model, tok, prompts, max_new_tokens=8, batch_size=3)
    alone = [generate(model, tok, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert together == alone
    assert tok.padding_side == "right", "the tokenizer's padding side is restored"


def test_sampling_is_seeded(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tokenizer
    kw = {"max_new_tokens": 12, "batch_size": 2, "temperature": 1.5}
    a = generate(model, tok, ["Hi", "Yo"], seed=1, **kw)
    assert a == generate(model, tok, ["Hi", "Yo"], seed=1, **kw)
    assert a != generate(model, tok, ["Hi", "Yo"], seed=2, **kw)


def test_stop_strings_cut_the_answer() -> None:
    assert _cut("4\n### Instruction: more", ["### Instruction"]) == "4\n"
    assert _cut("no stop", ["USER:"]) == "no stop"


def _answers(rank: int, world: int) -> list[str]:
    """answer_sharded on rank ``rank`` of ``world`` (greedy, batches of 2, 5 requests)."""
    from raymix.config import validate
    from raymix.eval.generate import answer_sharded
    from raymix.eval.protocol import Request
    from tests.conftest import tiny_experiment
    from tests.unit.train import dist

    cfg = validate(
        tiny_experiment(
            model={"name": "tiny", "tiny": dist.TINY},
            eval={"max_new_tokens": 6, "batch_size": 2},
        ),
        origin="test",
    )
    cfg = cfg.model_copy(update={"template": "tokenizer"})
    tok = dist.tokenizer()
    # prompts end with the user's words, so even the untrained model answers each differently
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    model = build_model(cfg.model, tok, 0, "float32")
    requests = [
        Request([{"role": "user", "content": f"token {i} word {i * 3}" * (1 + i % 3)}])
        for i in range(5)
    ]
    return answer_sharded(model, tok, requests, cfg, rank, world)


@pytest.mark.slow
def test_sharded_answers_on_two_ranks_equal_one_process() -> None:
    from tests.unit.train import dist

    alone = _answers(0, 1)  # one process, no process group
    together = dist.run_ranks(_answers, 2)
    assert len(alone) == 5 and len(set(alone)) > 1
    assert together[0] == together[1] == alone, "every rank gets every answer, in order"
