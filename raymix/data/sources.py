"""Load a configured source into normalised records, with its seeded held-out split.

A source is a built-in generator (``synthetic:<kind>``), a local file (.json, .jsonl, .json.gz,
.jsonl.gz, .parquet, .csv, .tsv) or a Hugging Face hub dataset id. Rows go through a format
(``raymix.data.formats``) into chat messages, then the explicit, counted cleaning rules: strip
every message, drop conversations whose turns do not alternate, drop rows whose last response is
empty. The fingerprint (generator spec, file sha256, or hub id and revision) and the cleaning
counts go into the manifest, so a plan names exactly the data it was drawn from.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from raymix.config.schema import SourceConfig
from raymix.data import synthetic
from raymix.data.formats import (
    check_field_map,
    check_turns,
    detect_format,
    subtask,
    to_messages,
)
from raymix.data.readers import FILE_SUFFIXES, RawRow, parse_file
from raymix.data.records import Message, Record
from raymix.errors import DataError

SYNTHETIC_PREFIX = "synthetic:"
DEFAULT_SYNTHETIC_SIZE = 1000


class Loaded(NamedTuple):
    """A source's cleaned records (row ids 0..n-1), its fingerprint, its cleaning counts and the
    sub-tasks that cleaning emptied."""

    records: list[Record]
    fingerprint: str
    cleaning: dict[str, int]
    lost_subtasks: dict[str, dict[str, int]] = {}
    """Sub-tasks (P3/T0 ``dataset``, FLAN ``_task_name``; ``dataset/template`` when only one
    template of a surviving sub-task is emptied) of which cleaning dropped every row: the rows
    dropped per reason (``dropped_bad_turns``, ``dropped_empty``)."""


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on the seed and the names (stable across processes)."""
    digest = hashlib.sha256("\0".join(names).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def split_heldout(
    n: int, heldout: int | float, seed: int, name: str
) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids) of a source with ``n`` rows: a seeded permutation's head is
    held out, so the split depends only on (seed, name, n)."""
    k = heldout if isinstance(heldout, int) else int(round(heldout * n))
    if k >= n:
        raise DataError(
            f"sources.{name}.heldout: {k} held-out rows leave none of the {n} to train on"
        )
    perm = rng_for(seed, "heldout", name).permutation(n)
    return sorted(int(i) for i in perm[k:]), sorted(int(i) for i in perm[:k])


def heldout_records(
    sources: Sequence[SourceConfig], heldout: Mapping[str, Sequence[int]], seed: int
) -> dict[str, list[Record]]:
    """Each source's held-out records (texts and checkable facts) in the plan's order, read only
    for sources that have held-out rows."""
    out = {}
    for src in sources:
        ids = heldout.get(src.name, [])
        if ids:
            records = load_records(src, seed).records
            out[src.name] = [records[i] for i in ids]
    return out


def load_records(cfg: SourceConfig, seed: int = 0) -> Loaded:
    """Every cleaned record of a source, without a held-out split.

    Args:
        cfg: The source's configuration.
        seed: Only used by built-in generators.

    Raises:
        DataError: the file or hub dataset is unreadable or malformed, or no row survives cleaning.
        ConfigError: the source's ``fields`` map is wrong.
    """
    if cfg.path.startswith(SYNTHETIC_PREFIX):
        return _load_synthetic(cfg, seed)
    path = Path(cfg.path).expanduser()
    if path.is_file():
        raw = path.read_bytes()
        fingerprint = "sha256:" + hashlib.sha256(raw).hexdigest()
        rows: Iterable[RawRow] = parse_file(path, raw, cfg.format)
        label = str(path)
    else:
        _check_not_local(cfg, path)
        rows, fingerprint = _load_hub(cfg)
        label = f"{cfg.path} (hub, split {cfg.split})"
    records, cleaning, lost = _clean(cfg, label, rows)
    if not records:
        raise DataError(
            f"source {cfg.name!r} ({cfg.path}): no usable rows after cleaning ({_counts(cleaning)})"
        )
    return Loaded(records, fingerprint, cleaning, lost)


def _load_synthetic(cfg: SourceConfig, seed: int) -> Loaded:
    kind = cfg.path[len(SYNTHETIC_PREFIX) :]
    if kind not in synthetic.KINDS:
        raise DataError(
            f"sources.{cfg.name}.path: unknown built-in source {cfg.path!r}; allowed: "
            + ", ".join(SYNTHETIC_PREFIX + k for k in synthetic.KINDS)
        )
    size = cfg.size or DEFAULT_SYNTHETIC_SIZE
    records = [synthetic.generate(kind, seed, i, cfg.name) for i in range(size)]
    cleaning = {"rows_read": size, "dropped_bad_turns": 0, "dropped_empty": 0, "kept": size}
    return Loaded(records, f"{cfg.path}?seed={seed}&size={size}&v=1", cleaning)


# --- cleaning ------------------------------------------------------------------------------------


def _clean(
    cfg: SourceConfig, label: str, rows: Iterable[RawRow]
) -> tuple[list[Record], dict[str, int], dict[str, dict[str, int]]]:
    """Convert, strip and filter rows; row ids are positions in the kept list. Also returns the
    sub-tasks that lost every row (see ``Loaded.lost_subtasks``)."""
    field_map = None
    if cfg.format == "fields":
        field_map = check_field_map(cfg.fields, f"sources.{cfg.name}.fields")
    counts = {"rows_read": 0, "dropped_bad_turns": 0, "dropped_empty": 0, "kept": 0}
    groups = _Groups()
    fmt: str | None = None if cfg.format == "auto" else cfg.format
    records: list[Record] = []
    for origin, row in rows:
        counts["rows_read"] += 1
        where = _where(label, origin)
        if fmt is None:  # auto: the first row decides for the whole source
            fmt = detect_format(row, where)
        msgs, meta = to_messages(row, fmt, where, field_map)
        if cfg.strip:
            msgs = [Message(**{**m, "content": m["content"].strip()}) for m in msgs]
        reason = None
        if not check_turns(msgs):
            reason = "dropped_bad_turns"
        elif cfg.drop_empty and not msgs[-1]["content"].strip():
            reason = "dropped_empty"
        groups.add(subtask(meta), reason)
        if reason is not None:
            counts[reason] += 1
            continue
        meta = {**meta, "origin": origin}
        records.append(Record(messages=msgs, source=cfg.name, row_id=len(records), meta=meta))
    counts["kept"] = len(records)
    return records, counts, groups.lost()


class _Groups:
    """Rows per sub-task and per (sub-task, template): read, and dropped per reason."""

    def __init__(self) -> None:
        self.read: Counter[tuple[str, str | None]] = Counter()
        self.dropped: dict[tuple[str, str | None], Counter[str]] = {}

    def add(self, key: tuple[str, str | None] | None, reason: str | None) -> None:
        if key is None:
            return
        for k in {(key[0], None), key}:
            self.read[k] += 1
            if reason is not None:
                self.dropped.setdefault(k, Counter())[reason] += 1

    def lost(self) -> dict[str, dict[str, int]]:
        """``{sub-task: reasons}`` for emptied sub-tasks, and ``{sub-task/template: reasons}``
        for emptied templates of sub-tasks that keep rows."""
        out: dict[str, dict[str, int]] = {}
        for (task, template), n in self.read.items():
            reasons = self.dropped.get((task, template), Counter())
            if sum(reasons.values()) < n:
                continue
            if template is None:
                out[task] = dict(sorted(reasons.items()))
            elif sum(self.dropped.get((task, None), Counter()).values()) < self.read[(task, None)]:
                out[f"{task}/{template}"] = dict(sorted(reasons.items()))
        return dict(sorted(out.items()))


DROP_WARN_SHARE = 0.05
"""Warn when more than this share of a source's rows is dropped before sampling."""

REASONS = {
    "dropped_bad_turns": "turns that do not alternate",
    "dropped_empty": "empty response",
    "overlong": "longer than train.max_length",
}
"""What each drop reason means, as warnings word it."""


def drop_warnings(
    name: str,
    cleaning: Mapping[str, int],
    lost: Mapping[str, Mapping[str, int]],
    dropped_overlong: int = 0,
) -> list[str]:
    """Warnings for a source whose rows are lost without a word otherwise: one per sub-task that
    cleaning emptied, and one when cleaning plus ``train.overlong: drop`` remove more than
    ``DROP_WARN_SHARE`` of its rows.

    Args:
        name: The source's name.
        cleaning: Its cleaning counts (``Loaded.cleaning``).
        lost: Its emptied sub-tasks (``Loaded.lost_subtasks``).
        dropped_overlong: Rows dropped for being longer than ``train.max_length``.
    """
    out = []
    for task, reasons in lost.items():
        out.append(
            f"source {name!r}: cleaning dropped every row of sub-task {task!r} "
            f"({sum(reasons.values())} rows: {_reasons(reasons)}); it is not in the training data"
        )
    dropped = {k: v for k, v in cleaning.items() if k.startswith("dropped_") and v}
    if dropped_overlong:
        dropped["overlong"] = dropped_overlong
    read = cleaning.get("rows_read", 0)
    total = sum(dropped.values())
    if read and total > DROP_WARN_SHARE * read:
        out.append(
            f"source {name!r}: {total} of its {read} rows ({100 * total / read:.1f}%) are "
            f"dropped before sampling ({_reasons(dropped)})"
        )
    return out


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {REASONS.get(k, k)}" for k, v in counts.items())


def _where(label: str, origin: str) -> str:
    """``file:12`` for a line, ``file row 3`` for a row index."""
    if origin.startswith("line "):
        return f"{label}:{origin.removeprefix('line ')}"
    return f"{label} {origin}"


def _counts(cleaning: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in cleaning.items())


# --- local files ---------------------------------------------------------------------------------


def _check_not_local(cfg: SourceConfig, path: Path) -> None:
    """A missing path that looks local is a missing file, not a hub id."""
    text = cfg.path
    looks_local = (
        text.startswith(("/", "./", "../", "~"))
        or text.lower().endswith(FILE_SUFFIXES + (".csv.gz", ".tsv.gz"))
        or text.count("/") > 1
        or path.exists()
    )
    if looks_local:
        what = "is a directory, not a file" if path.is_dir() else "no such file"
        raise DataError(
            f"sources.{cfg.name}.path: {cfg.path}: {what}; give a local "
            f"{', '.join(FILE_SUFFIXES)} file, a hub dataset id (owner/name) or "
            f"{SYNTHETIC_PREFIX}<kind>"
        )


def _load_hub(cfg: SourceConfig) -> tuple[list[RawRow], str]:
    """Rows of a hub dataset via ``datasets.load_dataset``; failures become one DataError."""
    hint = "use a local .json/.jsonl/.parquet/.csv/.tsv file instead"
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"sources.{cfg.name}.path: {cfg.path!r} is not a local file; loading it from the "
            f"Hugging Face hub needs the datasets package (pip install 'raymix[data]'), or {hint}"
        ) from None
    try:
        ds = datasets.load_dataset(
            cfg.path, name=cfg.subset, split=cfg.split, revision=cfg.revision
        )
    except Exception as e:  # the hub raises many types: connection, not found, bad config...
        raise DataError(
            f"sources.{cfg.name}.path: {cfg.path!r} is not a local file and the Hugging Face hub "
            f"could not be reached or could not serve it ({type(e).__name__}: {e}); check the id, "
            f"subset and split, or {hint}"
        ) from None
    revision = cfg.revision or getattr(ds, "_fingerprint", None) or "unknown"
    fingerprint = f"hf:{cfg.path}@{revision}?name={cfg.subset or ''}&split={cfg.split}"
    return [RawRow(f"row {i}", row) for i, row in enumerate(ds)], fingerprint
