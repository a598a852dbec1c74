"""Prompt templates: render a chat record into segments, each marked trainable or not.

Loss falls only on assistant turns: the tokenizer encodes segment by segment so the mask is exact
at every boundary, multi-turn included. Templates: ``plain``; ``alpaca`` (Stanford Alpaca's
``PROMPT_DICT["prompt_input"]`` for a user turn with an ``input``, else ``prompt_no_input``,
then the response and EOS with no separator, as its train.py joins them); ``vicuna`` (FastChat's ``vicuna_v1.1`` conversation: ``"{system} USER: {u}
ASSISTANT: {a}</s>USER: ..."``, the generation prompt ending ``" ASSISTANT:"``); ``llama2``
(Llama-2 chat ``[INST]`` with ``<<SYS>>``); ``chatml`` (``<|im_start|>``/``<|im_end|>``); and
``tokenizer``, the tokenizer's own Jinja ``chat_template`` (assistant spans found by rendering the
conversation turn by turn).

A generation prompt (:func:`prompt`) is the training render of the conversation so far: for
``alpaca`` and ``vicuna`` an earlier assistant turn ends with the tokenizer's EOS there too
(``</s>``, FastChat's and Llama's, without a tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raymix.data.records import Message
from raymix.errors import ConfigError

TEMPLATES = ("plain", "alpaca", "vicuna", "llama2", "chatml", "tokenizer")

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
"""Stanford Alpaca's ``PROMPT_DICT["prompt_input"]`` (tatsu-lab/stanford_alpaca train.py)."""
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
"""Stanford Alpaca's ``PROMPT_DICT["prompt_no_input"]``."""
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"

Segment = tuple[str, bool]  # (text, counts toward the loss)


def render(
    template: str, messages: list[Message], eos: str, bos: str = "", tokenizer: Any = None
) -> list[Segment]:
    """Segments of the conversation; each assistant turn ends with ``eos`` (which is trained).

    ``bos`` starts every turn after the first in ``llama2`` (the first comes from the encoder);
    ``tokenizer`` is needed only for the ``tokenizer`` template.
    """
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    turns = [m for m in messages if m["role"] != "system"]
    if template == "plain":
        return _turns(turns, _prefix(system, "\n\n"), lambda u: f"{u}\n", eos, "\n")
    if template == "alpaca":
        return _alpaca(turns, system, eos)
    if template == "vicuna":
        return _vicuna(turns, VICUNA_SYSTEM if system is None else system, eos)
    if template == "llama2":
        return _llama2(turns, system, eos, bos)
    if template == "chatml":
        header = f"{IM_START}system\n{system}{IM_END}\n" if system else ""
        return _turns(
            turns,
            header,
            lambda u: f"{IM_START}user\n{u}{IM_END}\n{IM_START}assistant\n",
            IM_END,
            "\n",
        )
    if template == "tokenizer":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ConfigError("template: 'tokenizer' needs a tokenizer with a chat_template")
        return _from_chat_template(messages, tokenizer.apply_chat_template)
    raise ConfigError(f"template: unknown {template!r}; allowed: {', '.join(TEMPLATES)}")


def prompt(template: str, messages: list[Message], tokenizer: Any = None) -> str:
    """The text a model is given to generate the next assistant turn.

    For ``alpaca`` and ``vicuna`` each earlier assistant turn ends with ``tokenizer``'s EOS, as
    in training (``</s>`` without a tokenizer or EOS).
    """
    if template == "tokenizer" and tokenizer is not None:
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    eos = ""
    if template in ("alpaca", "vicuna"):
        eos = getattr(tokenizer, "eos_token", None) or "</s>"
    return "".join(text for text, _ in render(template, messages, eos=eos, tokenizer=tokenizer))


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """Stanford Alpaca's prompt for one example: ``prompt_input`` when ``input`` is non-empty,
    else ``prompt_no_input`` (its train.py picks by ``example.get("input", "") != ""``)."""
    if input != "":
        return ALPACA_PROMPT_INPUT.format_map({"instruction": instruction, "input": input})
    return ALPACA_PROMPT_NO_INPUT.format_map({"instruction": instruction})


def _prefix(system: str | None, sep: str) -> str:
    return f"{system}{sep}" if system else ""


def _turns(
    messages: list[Message], header: str, user_fmt: Callable[[str], str], eos: str, between: str
) -> list[Segment]:
    segments: list[Segment] = [(header, False)] if header else []
    for m in messages:
        if m["role"] == "user":
            segments.append((user_fmt(m["content"]), False))
        elif m["role"] == "assistant":
            segments.append((m["content"] + eos, True))
            if between:
                segments.append((between, False))
    while segments and not segments[-1][1] and segments[-1][0] == between:
        segments.pop()
    return segments


def _alpaca(turns: list[Message], system: str | None, eos: str) -> list[Segment]:
    """Stanford Alpaca: ``prompt_input`` when the (first) user turn carries an ``input``, else
    ``prompt_no_input``; a system message replaces the header."""
    first_user = next((m for m in turns if m["role"] == "user"), None)
    with_input = first_user is not None and bool(first_user.get("input"))
    prompt_ = ALPACA_PROMPT_INPUT if with_input else ALPACA_PROMPT_NO_INPUT
    header = _prefix(system, "\n\n") or prompt_.split("### Instruction:")[0]
    segments: list[Segment] = [(header, False)]
    for m in turns:
        if m["role"] == "user":
            given = m.get("input", "")
            instruction = m["content"]
            if given and instruction == given:  # an empty instruction: the input alone
                instruction = ""
            elif given and instruction.endswith("\n\n" + given):
                instruction = instruction[: -len(given) - 2]
            else:
                given = ""  # no input of its own: the no-input turn, whatever the header
            fmt = ALPACA_PROMPT_INPUT if given else ALPACA_PROMPT_NO_INPUT
            text = "### Instruction:" + fmt.split("### Instruction:")[1]
            segments.append((text.format_map({"instruction": instruction, "input": given}), False))
        elif m["role"] == "assistant":
            segments += [(m["content"] + eos, True), ("\n\n", False)]
    while segments and not segments[-1][1] and segments[-1][0] == "\n\n":
        segments.pop()
    return segments


def _vicuna(turns: list[Message], system: str, eos: str) -> list[Segment]:
    """FastChat's ``SeparatorStyle.ADD_COLON_TWO`` with ``sep=" "`` and ``sep2=eos``: a message
    is ``"ROLE: text"`` and its separator, an empty one just ``"ROLE:"`` (FastChat's pending
    reply). The space before an answer is trained with it, so a prompt ends at ``"ASSISTANT:"``."""
    segments: list[Segment] = [(system + " ", False)]
    for m in turns:
        if m["role"] == "user":
            text = m["content"]
            segments.append((f"USER: {text} " if text else "USER:", False))
        elif m["role"] == "assistant":
            segments.append(("ASSISTANT:", False))
            if m["content"]:
                segments.append((f" {m['content']}{eos}", True))
    if turns and turns[-1]["role"] == "user":  # the reply is pending
        segments.append(("ASSISTANT:", False))
    return _merge(segments)


def _merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments of the same kind joined, so each prompt part is tokenized whole."""
    out: list[Segment] = []
    for text, trained in segments:
        if out and out[-1][1] == trained:
            out[-1] = (out[-1][0] + text, trained)
        else:
            out.append((text, trained))
    return out


def _llama2(turns: list[Message], system: str | None, eos: str, bos: str) -> list[Segment]:
    segments: list[Segment] = []
    first = True
    for m in turns:
        if m["role"] == "user":
            sys_block = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if first and system else ""
            start = "" if first else bos
            segments.append((f"{start}[INST] {sys_block}{m['content'].strip()} [/INST]", False))
            first = False
        elif m["role"] == "assistant":
            segments.append((f" {m['content'].strip()} {eos}", True))
    return segments


def _from_chat_template(messages: list[Message], apply: Callable[..., Any]) -> list[Segment]:
    """Segments from a Jinja chat template: before each assistant turn render the conversation
    with a generation prompt, after it render it whole; the difference is the trained span."""
    segments: list[Segment] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = str(apply(messages[:i], tokenize=False, add_generation_prompt=True))
        after = str(apply(messages[: i + 1], tokenize=False))
        if not before.startswith(done) or not after.startswith(before):
            raise ConfigError(
                "template: the tokenizer's chat_template does not render turn by turn as a prefix; pick a "
                f"named template ({', '.join(t for t in TEMPLATES if t != 'tokenizer')})"
            )
        segments += [(before[len(done) :], False), (after[len(before) :], True)]
        done = after
    return [(t, trained) for t, trained in segments if t]
