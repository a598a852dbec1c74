"""Tokenize once: each (source content, tokenizer, template, max length) is tokenized once per
machine into a content-hashed folder of memory-mapped arrays that every trial of every sweep
reuses.

Layout of ``<cache_dir>/tokens/<key>/``: ``ids.npy`` (int32, every example's tokens end to end,
truncated to max length), ``trainable.npy`` (bool, True where the token counts toward the loss),
``offsets.npy`` (int64, n + 1 boundaries), ``overlong.npy`` (bool, the example was longer than max
length), ``full_lengths.npy`` (int64, each example's tokens before truncation) and ``meta.json``
(with ``tokens``, kept after truncation, and ``truncated_tokens``, cut by it). A folder is written under a temporary name and renamed into place, so
readers never see half a cache and concurrent writers on one machine are harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymix.data.batches import IGNORE, Example, encode
from raymix.data.records import Record

CACHE_VERSION = 4  # 4: alpaca rows with an input render with prompt_input
_CHUNK = 2000


def cache_dir() -> Path:
    """$RAYMIX_CACHE, else ~/.cache/raymix (node-local on a cluster: once per machine)."""
    return Path(os.environ.get("RAYMIX_CACHE") or Path.home() / ".cache" / "raymix")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Content hash of a fast tokenizer (vocabulary, merges, normaliser) and its special tokens."""
    h = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode())
    h.update(json.dumps([tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token]).encode())
    return h.hexdigest()[:32]


def cache_key(source_fingerprint: str, tokenizer_fp: str, template: str, max_length: int) -> str:
    """The folder name of a tokenized source."""
    body = json.dumps([CACHE_VERSION, source_fingerprint, tokenizer_fp, template, max_length])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TokenCache:
    """A tokenized source, memory-mapped."""

    key: str
    ids: np.ndarray
    trainable: np.ndarray
    offsets: np.ndarray
    overlong: np.ndarray
    full_lengths: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example after truncation."""
        return np.diff(self.offsets)

    def truncated_tokens(self, ids: Sequence[int] | None = None) -> int:
        """Tokens that truncation to max length cut from examples ``ids`` (all when None)."""
        cut = np.asarray(self.full_lengths) - self.lengths
        if ids is None:
            return int(cut.sum())
        return int(cut[np.asarray(ids, dtype=np.int64)].sum()) if len(ids) else 0

    def example(self, i: int) -> Example:
        """Example ``i`` with its labels (-100 outside assistant turns)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.ids[a:b]
        labels = np.where(self.trainable[a:b], ids, IGNORE)
        return Example(ids.tolist(), labels.tolist())


def open_cache(root: Path, key: str) -> TokenCache | None:
    """The cache folder ``key`` memory-mapped, or None when it is not on this machine."""
    folder = root / "tokens" / key
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
    except (FileNotFoundError, ValueError):
        return None
    return TokenCache(key=key, meta=meta, **arrays)


_ARRAYS = ("ids", "trainable", "offsets", "overlong", "full_lengths")


def build_cache(
    root: Path,
    key: str,
    load: Callable[[], tuple[Sequence[Record], dict[str, Any]]],
    tokenizer: Any,
    template: str,
    max_length: int,
    meta: dict[str, Any],
    label: str = "",
) -> TokenCache:
    """Open ``key`` if present, else tokenize the rows ``load()`` returns into it (with a progress
    bar); ``load`` also returns facts about the source that go into meta.json."""
    found = open_cache(root, key)
    if found is not None:
        return found
    rows, facts = load()
    ids, trainable, lengths, overlong, full_lengths = [], [], [], [], []
    for start in _progress(range(0, len(rows), _CHUNK), len(rows), label):
        chunk = rows[start : start + _CHUNK]
        full = encode(chunk, tokenizer, template, max_length=sys.maxsize)
        for e in full:
            n = min(len(e.input_ids), max_length)
            ids.append(np.asarray(e.input_ids[:n], dtype=np.int32))
            trainable.append(np.asarray(e.labels[:n], dtype=np.int64) != IGNORE)
            lengths.append(n)
            overlong.append(len(e.input_ids) > max_length)
            full_lengths.append(len(e.input_ids))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arrays = {
        "ids": np.concatenate(ids) if ids else np.zeros(0, np.int32),
        "trainable": np.concatenate(trainable) if trainable else np.zeros(0, bool),
        "offsets": offsets,
        "overlong": np.asarray(overlong, dtype=bool),
        "full_lengths": np.asarray(full_lengths, dtype=np.int64),
    }
    meta = {**meta, **facts, "n": len(rows), "template": template, "max_length": max_length,
            "overlong": int(arrays["overlong"].sum()), "tokens": int(offsets[-1]),
            "truncated_tokens": int(arrays["full_lengths"].sum() - offsets[-1])}  # fmt: skip
    _write_atomically(root / "tokens" / key, arrays, meta)
    found = open_cache(root, key)
    assert found is not None
    return found


def _write_atomically(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        try:
            tmp.rename(folder)
        except OSError:  # another process on this machine finished first: keep theirs
            if not (folder / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _progress(chunks: range, total: int, label: str):  # type: ignore[no-untyped-def]
    """Chunk starts, with a progress bar on stderr when there is more than one chunk."""
    if len(chunks) <= 1:
        return chunks
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"tokenizing {label}", unit="rows", file=sys.stderr)

    def gen():  # type: ignore[no-untyped-def]
        for start in chunks:
            yield start
            bar.update(min(_CHUNK, total - start))
        bar.close()

    return gen()
