"""Reading and writing the project's small files: one JSON-lines reader (plain or gzip), one
atomic writer (a temporary file in the same folder, then ``os.replace``), and rows of a Hugging
Face hub dataset for the eval sets that default to the hub.

A JSON-lines line may hold at most :data:`MAX_LINE_CHARS` characters (16 Mi): a longer one is a
DataError naming the file and line, not a row that the tokenizer would grind on for hours (one
SFT example of a 128k-token context is about 0.5 Mi characters).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from raymix.errors import DataError

MAX_LINE_CHARS = 16 * 2**20
"""The longest JSON-lines line read, in characters."""


def read_text(path: str | Path) -> str:
    """A UTF-8 text file, gunzipped when its name ends in .gz (DataError names the file)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if path.name.lower().endswith(".gz"):
        raw = gunzip(path, raw)
    return decode_text(path, raw)


def gunzip(path: str | Path, raw: bytes) -> bytes:
    """The decompressed bytes of ``path`` (a DataError when they are not gzip)."""
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None


def decode_text(path: str | Path, raw: bytes) -> str:
    """UTF-8 text of ``path``'s bytes, without a byte-order mark (a DataError names the byte)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "of the decompressed data" if str(path).lower().endswith(".gz") else ""
        raise DataError(
            f"{path}: not UTF-8 text: undecodable byte 0x{raw[e.start]:02x} at byte offset "
            f"{e.start} {where}".rstrip()
        ) from None
    return text.removeprefix("\ufeff")


def iter_jsonl(path: str | Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, object) for every non-blank line of ``text``, the contents of ``path``."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                f"{path}:{lineno}: line of {len(line):,} characters; at most {MAX_LINE_CHARS:,} "
                "are allowed (one JSON object per line; split or drop this row)"
            )
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: malformed JSON: {e.msg} (column {e.colno}); "
                "expected one JSON object per line"
            ) from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a .jsonl or .jsonl.gz file (DataError names the file and line)."""
    rows = []
    for lineno, obj in iter_jsonl(path, read_text(path)):
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSON array file or a JSON-lines file, whatever its suffix says."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
        if not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: expected a JSON array of objects")
        return rows
    return read_jsonl(path)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """``rows`` as JSON lines, written atomically."""
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def hub_rows(name: str, subset: str | None, split: str, flag: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face hub dataset; any failure (offline, missing) is one DataError that
    names ``flag``, the option that gives a local file instead."""
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(name, subset, split=split)]
    except Exception as e:  # noqa: BLE001 - offline, missing, or refused: one message
        raise DataError(
            f"cannot load {name} from the Hugging Face hub ({type(e).__name__}); "
            f"use a local file with {flag}"
        ) from None
