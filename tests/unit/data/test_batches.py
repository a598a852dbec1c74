"""Tokenization with templates: loss only on responses; sharding keeps ranks in step."""

from __future__ import annotations

import pytest

from raymix.data import synthetic
from raymix.data.batches import IGNORE, collate, encode, shard_with_padding
from raymix.data.records import Message, Record
from raymix.data.templates import TEMPLATES, prompt
from raymix.data.tokenizer import train_builtin
from raymix.errors import ConfigError


def test_builtin_tokenizer_is_deterministic_and_round_trips(tokenizer) -> None:  # type: ignore[no-untyped-def]
    texts = ["Ava has 3 apples.\n#### 3", "def f(x):\n    return x"]
    assert train_builtin(texts * 10, 300) == train_builtin(texts * 10, 300)
    ids = tokenizer("Ben has 12 coins?\n#### 12", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "Ben has 12 coins?\n#### 12"


_CONVERSATION = [
    Message(role="system", content="Be brief."),
    Message(role="user", content="What is 2 + 2?"),
    Message(role="assistant", content="2 + 2 = 4\n#### 4"),
    Message(role="user", content="And doubled?"),
    Message(role="assistant", content="8"),
]
_TRAINED = {
    "plain": "2 + 2 = 4\n#### 4{eos}8{eos}",
    "alpaca": "2 + 2 = 4\n#### 4{eos}8{eos}",
    "vicuna": " 2 + 2 = 4\n#### 4{eos} 8{eos}",  # FastChat: "ASSISTANT: " + answer + "</s>"
    "llama2": " 2 + 2 = 4\n#### 4 {eos} 8 {eos}",
    "chatml": "2 + 2 = 4\n#### 4<|im_end|>8<|im_end|>",
    "tokenizer": "2 + 2 = 4\n#### 4<|im_end|>\n8<|im_end|>\n",
}
_CHATML_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.mark.parametrize("template", TEMPLATES)
def test_unmasked_tokens_are_exactly_the_responses(tokenizer, template: str) -> None:  # type: ignore[no-untyped-def]
    tokenizer.chat_template = _CHATML_JINJA if template == "tokenizer" else None
    record = Record(messages=_CONVERSATION, source="t", row_id=0, meta={})
    (ex,) = encode([record], tokenizer, template, max_length=512)
    trained = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE]
    decoded = tokenizer.decode(trained, skip_special_tokens=False)
    assert decoded == _TRAINED[template].format(eos=tokenizer.eos_token)
    assert ex.input_ids[0] == tokenizer.bos_token_id
    full = tokenizer.decode(ex.input_ids[1:], skip_special_tokens=False)
    assert full.startswith(prompt(template, _CONVERSATION[:2], tokenizer))
    assert "Be brief." in full, "the system prompt is rendered"


def test_llama2_multi_turn_layout(tokenizer) -> None:  # type: ignore[no-untyped-def]
    (ex,) = encode(
        [Record(messages=_CONVERSATION, source="t", row_id=0, meta={})], tokenizer, "llama2", 512
    )
    text = tokenizer.decode(ex.input_ids, skip_special_tokens=False)
    assert text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2 + 2? [/INST] 2 + 2 = 4\n#### 4 </s>"
        "<s>[INST] And doubled? [/INST] 8 </s>"
    )


def test_tokenizer_template_needs_a_chat_template(tokenizer) -> None:  # type: ignore[no-untyped-def]
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="needs a tokenizer with a chat_template"):
        encode(
            [Record(messages=_CONVERSATION, source="t", row_id=0, meta={})],
            tokenizer,
            "tokenizer",
            64,
        )


def test_truncation_keeps_masks_aligned(tokenizer) -> None:  # type: ignore[no-untyped-def]
    rec = synthetic.generate("math", 0, 3, "math")
    (ex,) = encode([rec], tokenizer, "alpaca", max_length=20)
    assert len(ex.input_ids) == len(ex.labels) == 20


def test_collate_pads_and_masks_padding_copies(tokenizer) -> None:  # type: ignore[no-untyped-def]
    exs = encode(
        [synthetic.generate("general", 0, i, "g") for i in range(3)], tokenizer, "plain", 64
    )
    batch = collate(exs, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert int(batch["attention_mask"].sum()) == sum(len(e.input_ids) for e in exs)


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 2), (7, 3), (1, 4)])
def test_eval_shards_cover_everything_once_with_equal_lengths(n: int, world: int) -> None:
    shards = [shard_with_padding(n, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    real = [i for s in shards for i, ok in s if ok]
    assert sorted(real) == list(range(n))
