"""Data preparation for a sweep and for each trial: fingerprint each source, tokenize it once
into the cache (or open the cache), split off its held-out rows, and train the builtin tokenizer
once. Trials 2..N of a sweep, and every later sweep on the machine, only open memory maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raymix.config.schema import ExperimentConfig, SourceConfig
from raymix.data.batches import IGNORE, encode
from raymix.data.cache import (
    TokenCache,
    build_cache,
    cache_dir,
    cache_key,
    open_cache,
    tokenizer_fingerprint,
)
from raymix.data.files import write_atomic
from raymix.data.records import Message, Record
from raymix.data.sources import (
    DEFAULT_SYNTHETIC_SIZE,
    SYNTHETIC_PREFIX,
    drop_warnings,
    load_records,
    split_heldout,
)
from raymix.data.templates import render
from raymix.data.tokenizer import BUILTIN, EOS, load_tokenizer, train_builtin
from raymix.errors import ConfigError, DataError

log = logging.getLogger("raymix")

_CORPUS_ROWS = 5000  # rows per source the builtin tokenizer learns from
TOKENIZER_VERSION = 1


@dataclass(frozen=True)
class PreparedSource:
    """A source ready for planning and training: its token cache and its row pools."""

    name: str
    ability: str
    fingerprint: str
    cache: TokenCache
    train_ids: list[int]
    heldout_ids: list[int]
    dropped_overlong: int
    cleaning: dict[str, int]
    lost_subtasks: dict[str, dict[str, int]] = field(default_factory=dict)
    """Sub-tasks that cleaning emptied, with their rows per reason (``Loaded.lost_subtasks``)."""

    def dropped(self) -> dict[str, int]:
        """Rows dropped before sampling, by reason: ``bad_turns`` and ``empty`` (cleaning),
        ``overlong`` (``train.overlong: drop``)."""
        return {
            "bad_turns": int(self.cleaning.get("dropped_bad_turns", 0)),
            "empty": int(self.cleaning.get("dropped_empty", 0)),
            "overlong": self.dropped_overlong,
        }

    def truncation(self) -> dict[str, Any]:
        """Tokens of the rows kept for training and held-out loss (before truncation) and the
        tokens that truncation to ``train.max_length`` cuts from them, with its share."""
        ids = sorted(self.train_ids + self.heldout_ids)
        full = int(np.asarray(self.cache.full_lengths)[np.asarray(ids, dtype=np.int64)].sum())
        cut = self.cache.truncated_tokens(ids)
        return {"tokens": full, "truncated_tokens": cut, "share": cut / full if full else 0.0}


DATA_KEYS = (
    "seed",
    "template",
    "model.",
    "tokenizer.",
    "sources.",
    "train.max_length",
    "train.overlong",
)
"""Config keys that change what a source tokenizes to or how it splits: a trial that searches
one of them prepares its own sources instead of reopening the sweep's."""


def source_index(sources: dict[str, PreparedSource]) -> dict[str, dict[str, Any]]:
    """The prepared sources as plain data, their token caches by key (what a sweep hands its
    trials, so a trial reopens memory maps instead of loading the tokenizer and sources)."""
    out = {}
    for name, s in sources.items():
        fields = {k: v for k, v in s.__dict__.items() if k != "cache"}
        out[name] = {**fields, "cache_key": s.cache.key}
    return out


def reopen_sources(
    index: dict[str, dict[str, Any]], root: Path | None = None
) -> dict[str, PreparedSource] | None:
    """The sources of :func:`source_index`, their caches reopened by key on this machine; None
    when one is not here (another node of a cluster: prepare them there)."""
    root = root or cache_dir()
    out = {}
    for name, fields in index.items():
        cache = open_cache(root, fields["cache_key"])
        if cache is None:
            return None
        out[name] = PreparedSource(
            cache=cache, **{k: v for k, v in fields.items() if k != "cache_key"}
        )
    return out


def fingerprint(cfg: SourceConfig, seed: int) -> str | None:
    """What a source's rows depend on, without parsing it: the generator spec, or the local
    file's sha256 plus the loading options. None for hub datasets (known only once loaded)."""
    if cfg.path.startswith(SYNTHETIC_PREFIX):
        size = cfg.size or DEFAULT_SYNTHETIC_SIZE
        return f"{cfg.path}?seed={seed}&size={size}&v=1"
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    opts = json.dumps([cfg.format, cfg.fields, cfg.strip, cfg.drop_empty], sort_keys=True)
    return f"sha256:{h.hexdigest()}#{hashlib.sha256(opts.encode()).hexdigest()[:12]}"


def prepare_sources(
    cfg: ExperimentConfig, tokenizer: Any, root: Path | None = None
) -> dict[str, PreparedSource]:
    """Every source of ``cfg`` tokenized (cached) and split."""
    root = root or cache_dir()
    tok_fp = tokenizer_fingerprint(tokenizer)
    out = {}
    for src in cfg.sources:
        out[src.name] = _prepare_one(cfg, src, tokenizer, tok_fp, root)
    return out


def _prepare_one(
    cfg: ExperimentConfig, src: SourceConfig, tokenizer: Any, tok_fp: str, root: Path
) -> PreparedSource:
    fp = fingerprint(src, cfg.seed)
    loaded = None
    if fp is None:  # a hub dataset: load it (the datasets library caches it) to learn its content
        loaded = load_records(src, cfg.seed)
        fp = loaded.fingerprint

    def load() -> tuple[list[Any], dict[str, Any]]:
        s = loaded or load_records(src, cfg.seed)
        split_heldout(len(s.records), src.heldout_size, cfg.seed, src.name)  # before tokenizing
        return s.records, {
            "fingerprint": s.fingerprint,
            "cleaning": s.cleaning,
            "lost_subtasks": s.lost_subtasks,
        }

    key = cache_key(fp, tok_fp, cfg.template, cfg.train.max_length)
    cache = build_cache(
        root, key, load, tokenizer, cfg.template, cfg.train.max_length, {}, src.name
    )
    train_ids, heldout_ids = split_heldout(len(cache), src.heldout_size, cfg.seed, src.name)
    dropped = 0
    if cfg.train.overlong == "drop":
        over = np.asarray(cache.overlong)
        dropped = int(over.sum())
        train_ids = [i for i in train_ids if not over[i]]
        heldout_ids = [i for i in heldout_ids if not over[i]]
        if not train_ids:
            raise DataError(
                f"sources.{src.name}: every training row is longer than train.max_length "
                f"({cfg.train.max_length}) and train.overlong is 'drop'"
            )
    return PreparedSource(
        name=src.name,
        ability=src.ability,
        fingerprint=cache.meta["fingerprint"],
        cache=cache,
        train_ids=train_ids,
        heldout_ids=heldout_ids,
        dropped_overlong=dropped,
        cleaning=dict(cache.meta.get("cleaning", {})),
        lost_subtasks=dict(cache.meta.get("lost_subtasks", {})),
    )


def builtin_tokenizer(cfg: ExperimentConfig, root: Path | None = None) -> str:
    """The builtin BPE for ``cfg``'s sources and template, trained once and cached (JSON)."""
    spec, pending = _builtin_tokenizer(cfg, root or cache_dir())
    if pending is not None:
        write_atomic(pending, spec)
    return spec


def _builtin_tokenizer(cfg: ExperimentConfig, root: Path) -> tuple[str, Path | None]:
    """(the builtin BPE's JSON, the cache file to write it to when it was trained just now and
    can be cached), so a caller can check the experiment before it writes anything."""
    fps = [fingerprint(s, cfg.seed) for s in cfg.sources]
    body = json.dumps([TOKENIZER_VERSION, fps, cfg.template, cfg.tokenizer.vocab_size])
    path = root / "tokenizers" / f"{hashlib.sha256(body.encode()).hexdigest()[:32]}.json"
    if None not in fps and path.exists():
        return path.read_text(), None
    texts = []
    for s in cfg.sources:
        records = load_records(s, cfg.seed).records
        split_heldout(len(records), s.heldout_size, cfg.seed, s.name)  # before anything is written
        for rec in records[:_CORPUS_ROWS]:
            texts.append("".join(t for t, _ in render(cfg.template, rec["messages"], EOS)))
    spec = train_builtin(texts, cfg.tokenizer.vocab_size)
    return spec, (path if None not in fps else None)


def tokenizer_spec(cfg: ExperimentConfig) -> str:
    """What workers load the tokenizer from: the builtin BPE's JSON, or a hub id / directory."""
    return builtin_tokenizer(cfg) if cfg.tokenizer.name == BUILTIN else cfg.tokenizer.name


def check_sizes(cfg: ExperimentConfig) -> None:
    """The sizes the config alone decides, checked before anything is read or written: each
    built-in source's held-out rows leave rows to train on."""
    for src in cfg.sources:
        if src.path.startswith(SYNTHETIC_PREFIX):
            split_heldout(src.size or DEFAULT_SYNTHETIC_SIZE, src.heldout_size, cfg.seed, src.name)


_PROBES = (
    [Message(role="user", content=""), Message(role="assistant", content="")],
    [
        Message(role="system", content="."),
        Message(role="user", content=""),
        Message(role="assistant", content=""),
    ],
)


def template_overhead(template: str, tokenizer: Any) -> int | None:
    """Tokens every row spends before its first answer token under ``template``: the shortest
    prompt of an empty conversation, with and without a system message. None when the template
    cannot render one (a chat template that refuses empty turns)."""
    found = []
    for messages in _PROBES:
        try:
            (ex,) = encode([Record(messages=messages, source="", row_id=0, meta={})],
                           tokenizer, template, max_length=sys.maxsize)  # fmt: skip
        except Exception:  # noqa: BLE001 - a user's Jinja template: the rows will tell
            return None
        first = next((i for i, label in enumerate(ex.labels) if label != IGNORE), None)
        if first is not None:
            found.append(first)
    return min(found) if found else None


def check_max_length(cfg: ExperimentConfig, tokenizer: Any) -> None:
    """``train.max_length`` leaves room for an answer token after the template's prompt.

    Raises:
        ConfigError: when truncation to ``train.max_length`` would leave no row of any source a
            token to train on (or, with ``train.overlong: drop``, no row at all).
    """
    overhead = template_overhead(cfg.template, tokenizer)
    if overhead is not None and cfg.train.max_length <= overhead:
        raise ConfigError(
            f"train.max_length: {cfg.train.max_length} tokens cannot reach the answer of any row: "
            f"the {cfg.template!r} template's prompt alone is {overhead} tokens with this "
            f"tokenizer, before any instruction text; allowed: at least {overhead + 1}, plus "
            "room for the instruction and the answer (default 256)"
        )


def prepare_data(
    cfg: ExperimentConfig, spec: str | None = None, *, warn: bool = True
) -> tuple[str, Any, dict[str, PreparedSource]]:
    """(tokenizer spec, tokenizer, prepared sources) of ``cfg``: everything a plan needs.

    Nothing is written to the cache before the checks that need no tokenized data pass: the
    built-in sources' held-out sizes, then ``train.max_length`` against the template's prompt
    (with the tokenizer, whose cache file is written after that); a file source's held-out size
    is checked when it is read, before it is tokenized.

    With ``warn``, each source that lost a whole sub-task, or more than 5 % of its rows, before
    sampling gets a warning on the ``raymix`` logger (every time, also when the cache is reused).
    """
    check_sizes(cfg)
    pending = None
    if spec is None and cfg.tokenizer.name == BUILTIN:
        spec, pending = _builtin_tokenizer(cfg, cache_dir())
    spec = spec or tokenizer_spec(cfg)
    tokenizer = load_tokenizer(spec, cfg.model.revision)
    check_max_length(cfg, tokenizer)
    if pending is not None:  # written once the config's sizes are known to work
        write_atomic(pending, spec)
    sources = prepare_sources(cfg, tokenizer)
    if warn:
        for s in sources.values():
            for message in drop_warnings(s.name, s.cleaning, s.lost_subtasks, s.dropped_overlong):
                log.warning(message)
    return spec, tokenizer, sources
