"""Local data files into raw rows, each with where it came from (``line 12`` or ``row 3``) for
error messages: JSON arrays (or an object holding one under ``data``/``rows``), JSON lines,
Parquet, CSV and TSV (a FLAN-CoT TSV has no header), any of them gzipped."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from raymix.data.files import decode_text, gunzip, iter_jsonl
from raymix.data.formats import FLAN_COT_COLUMNS
from raymix.errors import DataError

FILE_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".parquet", ".csv", ".tsv")
"""Local file types a source can read (csv and tsv may also be gzipped)."""

_HEADER_CELL = re.compile(r"^[A-Za-z_][\w.\-]{0,63}$")
_CSV_FIELD_LIMIT = 2**31 - 1


class RawRow(NamedTuple):
    """One row as read, and where it came from (``line 12``: 1-based; ``row 3``: 0-based)."""

    origin: str
    row: Any


def parse_file(path: Path, raw: bytes, fmt: str) -> list[RawRow]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _parquet_rows(path, raw)
    if name.endswith(".gz"):
        raw = gunzip(path, raw)
        name = name.removesuffix(".gz")
    text = decode_text(path, raw)
    if name.endswith(".jsonl"):
        return list(_jsonl_rows(path, text))
    if name.endswith(".json"):
        return _json_rows(path, text)
    if name.endswith(".csv"):
        return _table_rows(path, text, fmt, tab=False)
    if name.endswith(".tsv"):
        return _table_rows(path, text, fmt, tab=True)
    raise DataError(f"{path}: unknown file type; allowed: {', '.join(FILE_SUFFIXES)}")


def _jsonl_rows(path: Path, text: str) -> Iterator[RawRow]:
    for lineno, row in iter_jsonl(path, text):
        yield RawRow(f"line {lineno}", row)


def _json_rows(path: Path, text: str) -> list[RawRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return list(_jsonl_rows(path, text))  # a .json file holding JSON lines
        raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("data", "rows") if isinstance(data.get(k), list)), data)
    if not isinstance(data, list):
        found = f"an object with keys {sorted(data)}" if isinstance(data, dict) else "a scalar"
        raise DataError(
            f"{path}: expected a JSON array of rows (or an object with a 'data' or 'rows' "
            f"array), found {found}"
        )
    return [RawRow(f"row {i}", row) for i, row in enumerate(data)]


def _parquet_rows(path: Path, raw: bytes) -> list[RawRow]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading parquet needs pyarrow (pip install 'raymix[data]')"
        ) from None
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    return [RawRow(f"row {i}", row) for i, row in enumerate(table.to_pylist())]


def _table_rows(path: Path, text: str, fmt: str, *, tab: bool) -> list[RawRow]:
    """CSV (quoted, RFC 4180) or TSV (unquoted: one row a line, cells split at tabs).

    The first row is a header, except for format ``flan_cot`` or ``auto`` when the first row does
    not look like one (names of letters, digits, ``_ . -``): then the columns are FLAN's
    question, answer, rationale.
    """
    lines = _tsv_lines(text) if tab else _csv_lines(path, text)
    if not lines:
        return []
    first_line, first = lines[0]
    if fmt in ("auto", "flan_cot") and not all(_HEADER_CELL.match(c) for c in first):
        header, body = list(FLAN_COT_COLUMNS), lines
        if len(first) != len(header):
            raise DataError(
                f"{path}:{first_line}: no header row and not the {len(header)} FLAN columns "
                f"({', '.join(header)}): found {len(first)} columns; add a header row"
            )
    else:
        header, body = first, lines[1:]
    kind = "tab-separated" if tab else "comma-separated"
    rows = []
    for lineno, cells in body:
        if len(cells) != len(header):
            raise DataError(
                f"{path}:{lineno}: expected {len(header)} {kind} columns "
                f"({', '.join(header)}), found {len(cells)}"
            )
        rows.append(RawRow(f"line {lineno}", dict(zip(header, cells, strict=True))))
    return rows


def _tsv_lines(text: str) -> list[tuple[int, list[str]]]:
    return [
        (n, line.removesuffix("\r").split("\t"))
        for n, line in enumerate(text.split("\n"), 1)
        if line.strip()
    ]


def _csv_lines(path: Path, text: str) -> list[tuple[int, list[str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                out.append((reader.line_num, cells))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None
    return out


# --- the Hugging Face hub ------------------------------------------------------------------------
