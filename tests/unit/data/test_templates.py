"""The alpaca and vicuna templates against their references: Stanford Alpaca's two prompts and
FastChat 0.2.36's ``vicuna_v1.1`` conversation (the test extra), byte for byte; and every
generation prompt is the start of the training render of the conversation it continues."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from fastchat.conversation import get_conv_template  # the test extra: fschat==0.2.36
from hypothesis import given, settings
from hypothesis import strategies as st

from raymix.data.records import Message
from raymix.data.templates import alpaca_prompt, prompt, render

# PROMPT_DICT of tatsu-lab/stanford_alpaca's train.py, as published
STANFORD_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

COUNTS: Counter[str] = Counter()
_TEXT = st.text(max_size=30)
_CONVERSATION = st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=4)


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Any:
    """Prints how many cases were compared byte for byte (run with -s to see it)."""
    yield
    print("\nbyte-equality cases:", dict(COUNTS))


def _messages(pairs: list[tuple[str, str]], system: str | None) -> list[Message]:
    msgs = [Message(role="system", content=system)] if system is not None else []
    for user, assistant in pairs:
        msgs += [Message(role="user", content=user), Message(role="assistant", content=assistant)]
    return msgs


@settings(max_examples=300, deadline=None)
@given(instruction=_TEXT, input=_TEXT, output=_TEXT)
def test_an_alpaca_row_with_input_renders_as_stanford_prompt_input(
    instruction: str, input: str, output: str
) -> None:
    """An alpaca-format row through the real converter and cleaning, then the template: Stanford's
    ``prompt_input`` (with ``### Input:``) when the input is non-empty, its ``prompt_no_input``
    otherwise, then the output and EOS, as its train.py builds an example (parts stripped, as the
    source's cleaning strips them)."""
    from raymix.config.schema import SourceConfig
    from raymix.data.sources import _clean

    row = {"instruction": instruction, "input": input, "output": output}
    src = SourceConfig(name="s", path="x.jsonl", format="alpaca", drop_empty=False)
    records, _, _ = _clean(src, "x.jsonl", [("line 1", row)])  # type: ignore[list-item]
    if not records:  # an empty instruction is a bad turn
        return
    msgs = records[0]["messages"]
    example = {"instruction": instruction.strip(), "input": input.strip()}
    reference = STANFORD_PROMPT_INPUT if input.strip() else STANFORD_PROMPT_NO_INPUT
    stanford = reference.format_map(example)
    assert prompt("alpaca", msgs[:1]) == stanford
    segments = render("alpaca", msgs, eos="</s>")
    assert "".join(t for t, _ in segments) == stanford + output.strip() + "</s>"
    COUNTS["alpaca_input"] += 2


@settings(max_examples=300, deadline=None)
@given(instruction=_TEXT, input=_TEXT, output=_TEXT)
def test_alpaca_is_stanford_alpacas_prompts(instruction: str, input: str, output: str) -> None:
    example = {"instruction": instruction, "input": input, "output": output}
    reference = (
        STANFORD_PROMPT_INPUT.format_map(example)
        if example.get("input", "") != ""
        else STANFORD_PROMPT_NO_INPUT.format_map(example)
    )
    assert alpaca_prompt(instruction, input) == reference
    # a record holds the instruction alone: prompt_no_input, then the target as train.py adds it
    no_input = STANFORD_PROMPT_NO_INPUT.format_map(example)
    msgs = [Message(role="user", content=instruction), Message(role="assistant", content=output)]
    assert prompt("alpaca", msgs[:1]) == no_input
    segments = render("alpaca", msgs, eos="</s>")
    assert "".join(t for t, _ in segments) == no_input + output + "</s>"
    assert [t for t, trained in segments if trained] == [output + "</s>"]
    COUNTS["alpaca"] += 3


@settings(max_examples=300, deadline=None)
@given(
    pairs=_CONVERSATION,
    system=st.none() | _TEXT,
    last=_TEXT,
)
def test_vicuna_is_fastchats_vicuna_v1_1(
    pairs: list[tuple[str, str]], system: str | None, last: str
) -> None:
    conv = get_conv_template("vicuna_v1.1")
    if system is not None:
        conv.set_system_message(system)
    for user, assistant in pairs:
        conv.append_message(conv.roles[0], user)
        conv.append_message(conv.roles[1], assistant)
    msgs = _messages(pairs, system)
    segments = render("vicuna", msgs, eos="</s>")
    assert "".join(t for t, _ in segments) == conv.get_prompt()  # the whole training text
    trained = [t for t, is_trained in segments if is_trained]
    assert trained == [f" {a}</s>" for _, a in pairs if a]  # FastChat: "ASSISTANT: " + a + sep2

    conv.append_message(conv.roles[0], last)
    conv.append_message(conv.roles[1], None)
    assert prompt("vicuna", [*msgs, Message(role="user", content=last)]) == conv.get_prompt()
    COUNTS["vicuna"] += 2


@pytest.mark.parametrize("template", ["alpaca", "vicuna"])
@pytest.mark.parametrize("eos", ["</s>", "<|endoftext|>"])
@settings(max_examples=100, deadline=None)
@given(pairs=_CONVERSATION, system=st.none() | _TEXT)
def test_each_generation_prompt_starts_the_training_render(
    template: str, eos: str, pairs: list[tuple[str, str]], system: str | None
) -> None:
    """A model generates after exactly the text it was trained to continue, EOS included."""
    msgs = _messages(pairs, system)
    full = "".join(t for t, _ in render(template, msgs, eos=eos))
    tokenizer = SimpleNamespace(eos_token=eos)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = prompt(template, msgs[:i], tokenizer)
        assert full.startswith(before)
        if m["content"]:
            assert full[len(before) :].startswith(
                (" " if template == "vicuna" else "") + m["content"] + eos
            )
        COUNTS[f"consistency-{template}"] += 1


def test_vicuna_generation_prompt_ends_at_the_assistant_colon() -> None:
    msgs = [
        Message(role="user", content="Hello!"),
        Message(role="assistant", content="Hi!"),
        Message(role="user", content="How are you?"),
    ]
    assert prompt("vicuna", msgs).endswith(
        "USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"
    )
    tokenizer = SimpleNamespace(eos_token="<|endoftext|>")
    assert "Hi!<|endoftext|>USER:" in prompt("vicuna", msgs, tokenizer)
