"""The one normalised record every source loads into: chat messages, source name, row id."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Message(TypedDict):
    """One chat turn."""

    role: str  # "system", "user" or "assistant"
    content: str
    input: NotRequired[str]
    """Alpaca's ``input`` of a user turn, already in ``content`` after a blank line; kept apart
    so the alpaca template can use Stanford Alpaca's ``prompt_input`` for it."""


class Record(TypedDict):
    """One training example, whatever file or generator it came from."""

    messages: list[Message]
    source: str
    row_id: int
    meta: dict[str, Any]  # checkable facts: a math answer, a code test, a reference


def chat(user: str, assistant: str, source: str, row_id: int, **meta: Any) -> Record:
    """A single-turn record."""
    return Record(
        messages=[Message(role="user", content=user), Message(role="assistant", content=assistant)],
        source=source,
        row_id=row_id,
        meta=dict(meta),
    )
