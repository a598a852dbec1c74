"""Tokenize records with a template into (input_ids, labels) and cut them into padded batches.

Labels are -100 outside assistant turns, so the loss falls only on responses. Evaluation shards
examples across ranks with wrap-around padding copies of weight 0 (no loss), so every rank runs
the same number of forward passes, which collectives (and ZeRO-3) need; training tops ranks up
with empty rows instead (``raymix.train.schedule``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymix.data.records import Record
from raymix.data.templates import render

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One tokenized example; ``weight`` 0 marks a padding copy that must not count in eval."""

    input_ids: list[int]
    labels: list[int]
    weight: int = 1


def encode(
    records: Sequence[Record], tokenizer: Any, template: str, max_length: int
) -> list[Example]:
    """Tokenize each record segment by segment (exact masks), truncate to ``max_length``.

    BOS is prefixed unless the template's text already starts with it (chat templates often do).
    """
    eos, bos_text = tokenizer.eos_token or "", tokenizer.bos_token or ""
    rendered = [
        render(template, r["messages"], eos, bos=bos_text, tokenizer=tokenizer) for r in records
    ]
    flat = [text for segs in rendered for text, _ in segs]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    bos_id = tokenizer.bos_token_id
    out, k = [], 0
    for segs in rendered:
        starts_with_bos = bool(bos_text) and bool(segs) and segs[0][0].startswith(bos_text)
        bos = [bos_id] if bos_id is not None and not starts_with_bos else []
        input_ids, labels = list(bos), [IGNORE] * len(bos)
        for _, trainable in segs:
            piece = ids[k]
            k += 1
            input_ids += piece
            labels += piece if trainable else [IGNORE] * len(piece)
        out.append(Example(input_ids[:max_length], labels[:max_length]))
    return out


def shard_with_padding(n: int, rank: int, world: int) -> list[tuple[int, bool]]:
    """Rank's round-robin share of range(n), topped up by wrap-around to ceil(n / world) items
    so every rank runs as many forward passes; the flag is False for those copies (weight 0)."""
    per_rank = -(-n // world) if n else 0
    return [(j % n, j < n) for j in range(rank, per_rank * world, world)]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The global shuffle of ``n`` examples for ``epoch`` (the same on every rank)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (padding-copy labels masked)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        if e.weight:
            labels[row, :n] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
