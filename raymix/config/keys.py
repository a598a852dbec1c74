"""Every key of the experiment schema with its type, default, allowed values and doc line: what
``raymix validate --help-keys [PREFIX]`` prints (the docs are the schema's field docstrings)."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from raymix.config.schema import ExperimentConfig


@dataclass(frozen=True)
class KeyDoc:
    """One documented key. ``key`` is dotted; ``[]`` stands for a list item, ``<name>`` for a
    mapping's key."""

    key: str
    type: str
    default: str
    allowed: str
    doc: str


def key_docs(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[KeyDoc]:
    """The keys of ``model`` and of every model nested in it, depth first in schema order."""
    out: list[KeyDoc] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        out.append(_doc(key, field))
        for sub, suffix in _nested(field.annotation):
            out += key_docs(sub, f"{key}{suffix}.")
    return out


def render_keys(prefix: str = "") -> str:
    """The documented keys under ``prefix`` (all when empty), one block per key."""
    docs = [d for d in key_docs() if _under(d.key, prefix)]
    blocks = []
    for d in docs:
        head = f"{d.key}: {d.type}"
        if d.default:
            head += f" = {d.default}"
        lines = [head]
        if d.allowed:
            lines.append(f"    allowed: {d.allowed}")
        if d.doc:
            lines += [f"    {line}" for line in d.doc.splitlines()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + ("\n" if blocks else "")


def known_prefix(prefix: str) -> bool:
    """Whether any documented key starts with ``prefix``."""
    return any(_under(d.key, prefix) for d in key_docs())


def _under(key: str, prefix: str) -> bool:
    plain = re.sub(r"\[\w*\]|\.<name>", "", key)
    return not prefix or any(
        k == prefix or k.startswith(prefix + ".") or k.startswith(prefix + "[")
        for k in (key, plain)
    )


def _doc(key: str, field: FieldInfo) -> KeyDoc:
    doc = " ".join((field.description or "").split())
    return KeyDoc(key, _type_name(field.annotation), _default(field), _allowed(field), doc)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return ""  # a nested section: its keys are listed below it
    return repr(value) if isinstance(value, str) else str(value)


def _allowed(field: FieldInfo) -> str:
    parts = []
    literals = _literals(field.annotation)
    if literals:
        parts.append(", ".join(map(repr, literals)))
    for m in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(m, attr)}")
        if getattr(m, "pattern", None):
            parts.append(f"matches {m.pattern}")
    return "; ".join(parts)


def _literals(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    out: list[Any] = []
    for arg in typing.get_args(annotation):
        out += _literals(arg)
    return out


def _nested(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """Models inside a field's type, with the key suffix that reaches them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _nested(args[0])
    if origin in (list, tuple):
        inner = [found for a in args for found in _nested(a)]
        tags = [_tag(m) for m, s in inner]
        if len(inner) > 1 and all(tags) and all(s == "" for _, s in inner):
            return [(m, f"[{t}]") for (m, _), t in zip(inner, tags, strict=True)]  # by `name`
        return [(m, "[]" + s) for m, s in inner]
    if origin is dict:
        return [(m, ".<name>" + s) for m, s in _nested(args[-1])]
    out: list[tuple[type[BaseModel], str]] = []
    for a in args:  # unions
        for found in _nested(a):
            if found not in out:
                out.append(found)
    return out


def _tag(model: type[BaseModel]) -> str | None:
    """The one value of a model's Literal ``name`` field (a discriminated union's tag)."""
    field = model.model_fields.get("name")
    values = _literals(field.annotation) if field is not None else []
    return str(values[0]) if len(values) == 1 else None


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "|".join(sorted({type(a).__name__ for a in args}))
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(_type_name(a) for a in args))
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "section"
        return annotation.__name__
    return str(annotation)
