"""Row formats: turn one raw row (a dict read from a file or the hub) into chat messages.

Each format is a small function ``(row, where) -> Parsed`` registered in ``FORMATS`` together with
the fields it needs; ``to_messages`` checks those fields (a missing one is a ``DataError`` naming
the row, the field and the format) and converts. ``detect_format`` picks a format from a row's
fields for ``format: auto``; ``check_turns`` says whether a conversation has the shape training
expects. Formats only reshape: stripping whitespace and dropping empty responses are the source
loader's cleaning rules (``raymix.data.sources``), so they are explicit and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from raymix.data.records import Message
from raymix.errors import ConfigError, DataError

Row = Mapping[str, Any]

FIELD_KEYS = ("instruction", "input", "output", "system")
"""Keys a ``fields`` map may use (each maps to a column of the row)."""

FLAN_COT_COLUMNS = ("question", "answer", "rationale")
"""The columns of a FLAN v2 chain-of-thought TSV file, which has no header row."""

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}
_MESSAGE_ROLES = ("system", "user", "assistant")
_P3_META = ("dataset", "template", "task_type", "_task_name", "_template_idx", "_task_source")
SUBTASK_KEYS = ("dataset", "_task_name")
"""Meta keys naming a row's sub-task, first found wins: P3/T0's ``dataset`` (the PromptSource
dataset, e.g. ``trec``) and the FLAN collection's ``_task_name``."""
TEMPLATE_KEYS = ("template", "_template_idx")
"""Meta keys naming the prompt template a row was written with (P3/T0, FLAN)."""
_EOT_MARKERS = ("<|endoftext|>", "</s>")


class Parsed(NamedTuple):
    """A converted row: its chat messages and checkable facts (e.g. a math answer)."""

    messages: list[Message]
    meta: dict[str, Any]


@dataclass(frozen=True)
class RowFormat:
    """A registered format: its converter and the fields a row must have."""

    name: str
    convert: Callable[[Row, str], Parsed]
    required: tuple[tuple[str, ...], ...]
    """Alternative sets of required fields; a row needs every field of at least one set."""
    optional: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """The fields, as an error message shows them: ``instruction, input (optional), output``."""
        sets = [", ".join(s) for s in self.required]
        text = " or ".join(sets)
        if self.optional:
            text += ", optional: " + ", ".join(self.optional)
        return f"{self.name} ({text})"


def alpaca(row: Row, where: str) -> Parsed:
    """Alpaca / Code Alpaca: ``instruction``, optional ``input``, ``output``.

    A non-empty input is appended to the instruction after a blank line, and also kept as the
    user message's ``input`` (the alpaca template renders it as Stanford Alpaca does).
    """
    instruction, given = _text(row, "instruction", where), _text(row, "input", where)
    messages = _pair(_join(instruction, given), _text(row, "output", where))
    if given.strip():
        messages[0]["input"] = given.strip()
    return Parsed(messages, {})


def dolly(row: Row, where: str) -> Parsed:
    """Databricks Dolly: ``instruction``, optional ``context``, ``response``, ``category``.

    A non-empty context is appended to the instruction after a blank line; the category goes to
    ``meta["category"]``.
    """
    user = _join(_text(row, "instruction", where), _text(row, "context", where))
    meta = {"category": _text(row, "category", where)} if row.get("category") else {}
    return Parsed(_pair(user, _text(row, "response", where)), meta)


def gsm8k(row: Row, where: str) -> Parsed:
    """GSM8K: ``question`` and ``answer``; the text after ``####`` goes to ``meta["answer"]``."""
    answer = _text(row, "answer", where)
    meta = {"answer": answer.rsplit("####", 1)[1].strip()} if "####" in answer else {}
    return Parsed(_pair(_text(row, "question", where), answer), meta)


def sharegpt(row: Row, where: str) -> Parsed:
    """ShareGPT / Vicuna: ``conversations``, a list of ``{from, value}`` turns (multi-turn).

    ``human``/``user`` become user turns, ``gpt``/``assistant``/``chatgpt``/``bard``/``model``
    assistant turns, ``system`` a system turn; a top-level ``system`` string is prepended. Any
    other speaker is an error. Whether the turns alternate is checked by ``check_turns``.
    """
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise DataError(f"{where}: 'conversations' should be a list of {{from, value}} turns")
    messages = _system(row, where)
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where}: conversations[{i}] should be an object with from and value")
        speaker = str(turn["from"]).lower()
        if speaker not in _SHAREGPT_ROLES:
            raise DataError(
                f"{where}: conversations[{i}].from is {turn['from']!r}; "
                f"allowed: {', '.join(_SHAREGPT_ROLES)}"
            )
        content = _text(turn, "value", f"{where} conversations[{i}]")
        messages.append(Message(role=_SHAREGPT_ROLES[speaker], content=content))
    return Parsed(messages, {})


def messages(row: Row, where: str) -> Parsed:
    """OpenAI chat: ``messages``, a list of ``{role, content}`` with roles system/user/assistant."""
    items = row["messages"]
    if not isinstance(items, list):
        raise DataError(f"{where}: 'messages' should be a list of {{role, content}} objects")
    out: list[Message] = []
    for i, m in enumerate(items):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: messages[{i}] should be an object with role and content")
        if m["role"] not in _MESSAGE_ROLES:
            allowed = ", ".join(_MESSAGE_ROLES)
            raise DataError(f"{where}: messages[{i}].role is {m['role']!r}; allowed: {allowed}")
        out.append(Message(role=m["role"], content=_text(m, "content", f"{where} messages[{i}]")))
    return Parsed(out, {})


def p3(row: Row, where: str) -> Parsed:
    """P3 / T0: ``inputs``/``targets`` (or their ``*_pretokenized`` text), or ``prompt``/
    ``completion`` as in the self-instruct T0 export.

    A trailing ``<|endoftext|>`` (a GPT-3 fine-tuning marker) is removed from the target; the
    ``dataset``, ``template`` and ``task_type`` fields (P3/T0) and ``_task_name``,
    ``_template_idx`` and ``_task_source`` (the FLAN collection's export, whose rows also hold
    ``inputs``/``targets``), when present, go to ``meta``: they name the row's sub-task and
    template (``subtask``).
    """
    for src, tgt in (
        ("inputs_pretokenized", "targets_pretokenized"),
        ("prompt", "completion"),
        ("inputs", "targets"),
    ):
        if src in row and tgt in row:
            target = _text(row, tgt, where)
            for marker in _EOT_MARKERS:
                target = target.removesuffix(marker)
            meta = {k: row[k] for k in _P3_META if k in row}
            return Parsed(_pair(_text(row, src, where), target), meta)
    raise AssertionError("unreachable: to_messages checked the fields")  # pragma: no cover


def flan_cot(row: Row, where: str) -> Parsed:
    """FLAN v2 chain of thought: ``question``, ``answer``, ``rationale``.

    The response is the rationale followed by ``So the answer is {answer}.``; the two-character
    sequence backslash-n, which the FLAN TSV files use for newlines, becomes a newline. The answer
    goes to ``meta["answer"]``.
    """
    question, answer, rationale = (
        _text(row, k, where).replace("\\n", "\n") for k in FLAN_COT_COLUMNS
    )
    final = answer.strip()
    stop = "" if final.endswith((".", "!", "?")) else "."
    response = " ".join(p for p in (rationale.strip(), f"So the answer is {final}{stop}") if p)
    return Parsed(_pair(question, response), {"answer": final})


def fields(row: Row, where: str, field_map: Mapping[str, str]) -> Parsed:
    """A user field map: ``{instruction, input, output, system}`` -> column names.

    Converts like alpaca (input appended to the instruction after a blank line), with an
    optional system message.
    """
    missing = [col for col in field_map.values() if col not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(repr(c) for c in missing)} for format 'fields' "
            f"(mapped as {_describe_map(field_map)}); the row has fields {_names(row)}"
        )
    get = {k: _text(row, col, where) for k, col in field_map.items()}
    msgs = [Message(role="system", content=get["system"])] if get.get("system") else []
    user = _join(get["instruction"], get.get("input", ""))
    return Parsed(msgs + _pair(user, get["output"]), {})


def check_field_map(field_map: Mapping[str, str] | None, key: str = "fields") -> dict[str, str]:
    """The field map for format ``fields``, checked: keys among ``FIELD_KEYS``, with instruction
    and output. Raises ``ConfigError`` naming ``key`` otherwise."""
    if not field_map:
        raise ConfigError(
            f"{key}: format 'fields' needs a field map, "
            "e.g. {instruction: prompt, output: answer}"
        )
    unknown = sorted(set(field_map) - set(FIELD_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)}; allowed: {_keys()}")
    missing = [k for k in ("instruction", "output") if k not in field_map]
    if missing:
        raise ConfigError(f"{key}: missing key(s) {', '.join(missing)}; allowed: {_keys()}")
    return dict(field_map)


FORMATS: dict[str, RowFormat] = {
    f.name: f
    for f in (
        RowFormat("alpaca", alpaca, (("instruction", "output"),), ("input",)),
        RowFormat("dolly", dolly, (("instruction", "response"),), ("context", "category")),
        RowFormat("gsm8k", gsm8k, (("question", "answer"),)),
        RowFormat("sharegpt", sharegpt, (("conversations",),), ("system",)),
        RowFormat("messages", messages, (("messages",),)),
        RowFormat(
            "p3",
            p3,
            (
                ("inputs", "targets"),
                ("inputs_pretokenized", "targets_pretokenized"),
                ("prompt", "completion"),
            ),
        ),
        RowFormat("flan_cot", flan_cot, (FLAN_COT_COLUMNS,)),
    )
}
"""Every row format but ``fields`` (which needs a field map; see ``to_messages``)."""

ALLOWED_FORMATS = ("auto", *FORMATS, "fields")
"""What ``SourceConfig.format`` accepts."""


def detect_format(row: Row, where: str = "row") -> str:
    """The format a row's fields point to (for ``format: auto``).

    Raises:
        DataError: no format matches; the message lists the row's fields and the formats.
    """
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object with named fields, found {_kind(row)}")
    keys = set(row)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    for name in ("alpaca", "dolly", "flan_cot", "gsm8k", "p3"):
        if any(set(req) <= keys for req in FORMATS[name].required):
            return name
    raise DataError(
        f"{where}: cannot tell the format from the fields {_names(row)}; set the source's format "
        "to one of: "
        + "; ".join(f.describe() for f in FORMATS.values())
        + "; or 'fields' with a field map (instruction, input, output, system -> column)"
    )


def to_messages(
    row: Row, fmt: str, where: str, field_map: Mapping[str, str] | None = None
) -> Parsed:
    """Convert ``row`` with format ``fmt`` (not ``auto``: call ``detect_format`` first).

    Args:
        row: One raw row.
        fmt: A key of ``FORMATS``, or ``fields`` (then ``field_map`` is needed).
        where: The row's location for error messages, e.g. ``data.jsonl:12``.
        field_map: For ``fields``: instruction / input / output / system -> column name.

    Raises:
        DataError: the row is not an object, misses fields, or holds values of the wrong type.
    """
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object with named fields, found {_kind(row)}")
    if fmt == "fields":
        return fields(row, where, check_field_map(field_map))
    spec = FORMATS.get(fmt)
    if spec is None:
        raise ConfigError(f"format {fmt!r} is unknown; allowed: {', '.join(ALLOWED_FORMATS)}")
    _require(row, spec, where)
    return spec.convert(row, where)


def check_turns(msgs: list[Message]) -> bool:
    """Whether a conversation has the shape training expects: an optional system message first,
    then user and assistant turns alternating, starting with user and ending with assistant."""
    roles = [m["role"] for m in msgs]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if len(roles) < 2 or len(roles) % 2:
        return False
    return all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles))


def subtask(meta: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(sub-task, template or None) of a converted row's ``meta``, or None when the row's format
    has no sub-task field (see ``SUBTASK_KEYS`` and ``TEMPLATE_KEYS``)."""
    task = next((meta[k] for k in SUBTASK_KEYS if meta.get(k) not in (None, "")), None)
    if task is None:
        return None
    template = next((meta[k] for k in TEMPLATE_KEYS if meta.get(k) not in (None, "")), None)
    return str(task), None if template is None else str(template)


def _require(row: Row, spec: RowFormat, where: str) -> None:
    gaps = [[f for f in req if f not in row] for req in spec.required]
    if any(not gap for gap in gaps):
        return
    closest = min(gaps, key=len)
    raise DataError(
        f"{where}: missing field(s) {', '.join(repr(f) for f in closest)} for format "
        f"{spec.name!r}; expected {spec.describe()}; the row has fields {_names(row)}"
    )


def _text(row: Row, key: str, where: str) -> str:
    """The field as text: a missing or null optional field is empty, a number becomes text."""
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{where}: field {key!r} should be text, found {_kind(value)}")


def _join(first: str, second: str) -> str:
    """Instruction and input (or context) separated by a blank line; the input only if given."""
    return f"{first.strip()}\n\n{second.strip()}" if second.strip() else first


def _pair(user: str, assistant: str) -> list[Message]:
    return [Message(role="user", content=user), Message(role="assistant", content=assistant)]


def _system(row: Row, where: str) -> list[Message]:
    text = _text(row, "system", where) if "system" in row else ""
    return [Message(role="system", content=text)] if text.strip() else []


def _names(row: Row) -> str:
    return "[" + ", ".join(sorted(str(k) for k in row)) + "]"


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "text"}
    return names.get(type(value), type(value).__name__)


def _describe_map(field_map: Mapping[str, str]) -> str:
    return ", ".join(f"{k} <- {v!r}" for k, v in field_map.items())


def _keys() -> str:
    return ", ".join(FIELD_KEYS)
