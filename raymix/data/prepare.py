"""Dolly-style data preparation (seed study S3): one instruction file in, train / validation /
test JSONL files of rendered ``{"text": ...}`` lines out.

Rows are read and cleaned exactly as a configured source is (``raymix.data.sources``: strip
whitespace, drop malformed conversations and empty responses, all counted), rendered with a prompt
template, shuffled with a seeded ``random.Random`` and split by largest-remainder counts. The three
files appear in ``out_dir`` together or not at all: they are written into a temporary folder next
to it and then renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

from pydantic import ValidationError

from raymix.config.schema import SourceConfig
from raymix.data.formats import ALLOWED_FORMATS
from raymix.data.records import Record
from raymix.data.rounding import largest_remainder
from raymix.data.sources import load_records
from raymix.data.templates import TEMPLATES, render
from raymix.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "validation", "test")
_SUM_TOLERANCE = 1e-6


DATA_SUFFIXES = (".json", ".jsonl", ".gz", ".parquet", ".csv", ".tsv")


def prepare(
    path: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "auto",
    template: str = "alpaca",
    seed: int = 42,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    fields: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Load, clean, render, shuffle and split one file into train/validation/test JSONL.

    The shuffle is ``random.Random(seed).shuffle`` over the cleaned records in file order, so the
    same file, options and seed always give byte-identical outputs. Split sizes are
    largest-remainder counts of ``n * fraction``: each split gets the floor of its share, and the
    rows left over go one each to the splits with the largest fractional parts (ties to the
    earlier split). With 4998 rows and 80/10/10 that is 3998 / 500 / 500. Each output line is
    ``{"text": prompt + response}`` rendered with ``template`` and no end-of-sequence marker.

    Args:
        path: A local data file (or hub dataset id) in any format a source accepts.
        out_dir: Folder for train.jsonl, validation.jsonl and test.jsonl (created if missing).
        fmt: Row format, as ``SourceConfig.format`` (``auto`` detects it from the first row).
        template: Prompt template name from ``raymix.data.templates.TEMPLATES``.
        seed: Seed of the shuffle.
        splits: Fractions of (train, validation, test); non-negative and summing to 1.
        fields: For ``fmt="fields"``: instruction / input / output / system -> column name.
        overwrite: Replace output files that already exist and are not empty.

    Returns:
        Counts: read, dropped_bad_turns, dropped_empty, train, validation, test (read equals the
        sum of the others).

    Raises:
        ConfigError: bad splits, format, template or field map, or outputs exist without
            ``overwrite``.
        DataError: the file is unreadable, malformed or has no usable rows.
    """
    fractions = _check_splits(splits)
    if template not in TEMPLATES:
        raise ConfigError(f"template {template!r} is unknown; allowed: {', '.join(TEMPLATES)}")
    out = Path(out_dir)
    _check_outputs(out, overwrite)
    if Path(path).suffix in DATA_SUFFIXES and not Path(path).exists():
        raise DataError(f"{path}: no such file")
    loaded = load_records(_source_config(path, fmt, fields))
    texts = [_text(template, rec) for rec in loaded.records]
    random.Random(seed).shuffle(texts)
    sizes = split_sizes(len(texts), fractions)
    parts, start = {}, 0
    for name, size in zip(SPLIT_NAMES, sizes, strict=True):
        parts[name] = texts[start : start + size]
        start += size
    _write_atomically(out, parts)
    c = loaded.cleaning
    return {
        "read": c["rows_read"],
        "dropped_bad_turns": c["dropped_bad_turns"],
        "dropped_empty": c["dropped_empty"],
        **{name: len(rows) for name, rows in parts.items()},
    }


def split_sizes(n: int, fractions: Sequence[Fraction]) -> list[int]:
    """Largest-remainder counts of ``n`` rows for fractions summing to 1 (ties: earlier first)."""
    sizes = largest_remainder(n, dict(enumerate(fractions)))
    return [sizes[i] for i in range(len(fractions))]


def _check_splits(splits: Sequence[float]) -> list[Fraction]:
    values = list(splits)
    if len(values) != len(SPLIT_NAMES):
        raise ConfigError(
            f"splits: give {len(SPLIT_NAMES)} fractions ({', '.join(SPLIT_NAMES)}), got {values}"
        )
    if any(not _non_negative(v) for v in values):
        raise ConfigError(f"splits: fractions must be non-negative numbers, got {values}")
    total = sum(values)
    if abs(total - 1) > _SUM_TOLERANCE:
        raise ConfigError(f"splits: fractions must sum to 1, got {values} (sum {total:g})")
    exact = [Fraction(str(v)) for v in values]
    return [f / sum(exact) for f in exact]


def _non_negative(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _check_outputs(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir: {out} exists and is not a folder")
    if overwrite:
        return
    taken = [out / f"{n}.jsonl" for n in SPLIT_NAMES if _non_empty(out / f"{n}.jsonl")]
    if taken:
        raise ConfigError(
            f"out_dir: {', '.join(str(p) for p in taken)} already exist(s) and is not empty; "
            "choose another folder, or overwrite (--overwrite, overwrite=True)"
        )


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _source_config(path: str | Path, fmt: str, fields: Mapping[str, str] | None) -> SourceConfig:
    if fmt not in ALLOWED_FORMATS:
        raise ConfigError(f"format {fmt!r} is unknown; allowed: {', '.join(ALLOWED_FORMATS)}")
    stem = Path(str(path)).name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", stem) or "data"
    try:
        return SourceConfig(
            name=name,
            path=str(path),
            format=fmt,  # type: ignore[arg-type]  # checked against ALLOWED_FORMATS above
            fields=dict(fields) if fields is not None else None,
            heldout=0,
        )
    except ValidationError as e:
        raise ConfigError(f"prepare {path}: {e.errors()[0]['msg']}") from None


def _text(template: str, rec: Record) -> str:
    return "".join(text for text, _ in render(template, rec["messages"], eos=""))


def _write_atomically(out: Path, parts: Mapping[str, list[str]]) -> None:
    """Write every part into a temporary folder beside ``out``, then move it into place.

    A new or empty ``out`` is replaced by the temporary folder in one rename; an ``out`` that holds
    other files gets each output file by an atomic ``os.replace``. On any error the temporary
    folder is removed and ``out`` is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, texts in parts.items():
            _write_lines(tmp / f"{name}.jsonl", texts)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists():
            for name in parts:
                os.replace(tmp / f"{name}.jsonl", out / f"{name}.jsonl")
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_lines(path: Path, texts: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
