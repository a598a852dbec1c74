"""Padding-aware best-fit-decreasing packing of tokenized examples into rows of ``max_length``
tokens, and the collation that keeps packed examples from ever attending to each other.

Boundaries are carried by ``position_ids`` alone: they restart at 0 with every example and are 0
on every pad token, and the batch has no ``attention_mask``. In transformers 5.23,
``masking_utils._preprocess_mask_arguments`` calls ``find_packed_sequence_indices(position_ids)``
(a new segment wherever neighbouring positions do not differ by exactly 1) when the attention
mask is ``None`` *and there is no cache*; ``create_causal_mask`` then ANDs the causal mask with
"same segment" and remaps causality to per-example positions
(``packed_sequence_compatibility_function``). The sdpa and eager backends build their masks from
that function, so the mask is block-diagonal causal, rotary embeddings see each example's own
positions, and a packed example computes exactly what it computes alone (checked on logits and
loss in tests/unit/data/test_packing.py). Two traps make this fail silently, letting examples see
each other: ``LlamaModel.forward`` creates a ``DynamicCache`` whenever ``use_cache`` is true, which
is the config default even in training, and any 2D ``attention_mask`` also turns detection off;
so call :func:`enable_packed_attention` on the model once (or pass ``use_cache=False``) and never
add a mask. Each pad token is a one-token segment: nothing attends to it and it attends only to
itself (no empty softmax row, so no NaN reaches the gradients). The first label of every example
is ignored, so no token learns to predict the next example's start. Flash-attention backends
detect packing only for a flattened batch of one row
(``modeling_flash_attention_utils._is_packed_sequence``) and are refused.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raymix.data.batches import IGNORE, Example
from raymix.errors import ConfigError, DataError

__all__ = [
    "PackingStats",
    "collate_packed",
    "enable_packed_attention",
    "pack",
    "packing_stats",
]

PACKED_ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class PackingStats:
    """How well rows fill the slots they occupy once batched."""

    tokens: int
    """Real (non-padding) tokens."""
    slots: int
    """Token slots the micro-batches take: rows × the width each micro-batch is padded to."""
    rows: int
    """Number of rows (examples when unpacked, bins when packed)."""

    @property
    def efficiency(self) -> float:
        """Real tokens ÷ slots (1.0 when nothing is padding)."""
        return self.tokens / self.slots if self.slots else 1.0


def pack(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Pack example indices into bins of at most ``max_length`` tokens, best-fit decreasing.

    Examples are placed longest first (ties: lower index first), each into the open bin it leaves
    with the least room (ties: the bin opened first), or into a new bin when none fits. Bins come
    back in the order they were opened, their indices in the order they were placed; the result
    depends on ``lengths`` and ``max_length`` only. Open bins are kept in buckets by remaining
    room, the non-empty rooms (at most ``max_length`` of them) in a sorted list searched with
    bisect, so 100k examples take well under a second.

    Args:
        lengths: Token count of each example (at least 1; truncate to ``max_length`` first).
        max_length: Capacity of a bin in tokens.

    Returns:
        The bins, each a list of indices into ``lengths``; every index appears exactly once.

    Raises:
        DataError: if ``max_length`` < 1 or an example is empty or longer than ``max_length``.
    """
    _check_lengths(lengths, max_length)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    rooms: list[int] = []  # sorted remaining capacities that have at least one open bin
    open_bins: dict[int, list[int]] = {}  # remaining capacity -> min-heap of bin numbers
    for i in order:
        need = lengths[i]
        k = bisect.bisect_left(rooms, need)
        if k == len(rooms):
            b, room = len(bins), max_length
            bins.append([])
        else:
            b, room = _take(rooms, open_bins, k)
        bins[b].append(i)
        if room > need:
            _put(rooms, open_bins, room - need, b)
    return bins


def collate_packed(bins_examples: Sequence[Sequence[Example]], pad_id: int) -> dict[str, Any]:
    """Tensors for a micro-batch of packed rows: input_ids, labels and position_ids.

    Each row is its examples back to back, right-padded to the longest row of the batch. Position
    ids restart at 0 with every example and are 0 on every pad token, which is what makes
    transformers' packed-sequence detection give each example (and each pad token) its own
    causal block, provided the model had :func:`enable_packed_attention` (see the module
    docstring). There is deliberately no ``attention_mask``: adding one turns that detection
    off. Labels are ignored on padding, on the first token of every example and on whole examples
    of weight 0 (padding copies), as :func:`~raymix.data.batches.collate` does.

    Args:
        bins_examples: One sequence of examples per row; no row may be empty.
        pad_id: Token id written into padding slots.

    Returns:
        ``{"input_ids", "labels", "position_ids"}``, each a ``(rows, width)`` long tensor.

    Raises:
        DataError: if there are no rows or a row has no tokens.
    """
    import torch

    rows = [_row(examples) for examples in bins_examples]
    if not rows or any(not ids for ids, _, _ in rows):
        raise DataError("collate_packed: every packed row needs at least one non-empty example")
    width = max(len(ids) for ids, _, _ in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    for r, (ids, labs, pos) in enumerate(rows):
        n = len(ids)
        input_ids[r, :n] = torch.tensor(ids)
        labels[r, :n] = torch.tensor(labs)
        position_ids[r, :n] = torch.tensor(pos)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def enable_packed_attention(model: Any) -> None:
    """Make ``model`` honour packed rows from :func:`collate_packed` (call once, before training).

    Turns the model's default ``use_cache`` off, since a cache disables transformers'
    packed-sequence detection (see the module docstring), and checks the attention backend is
    one whose mask that detection feeds.

    Args:
        model: A transformers causal LM (or anything with a transformers ``config``).

    Raises:
        ConfigError: if the model's attention implementation is not sdpa or eager.
    """
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in PACKED_ATTENTION:
        raise ConfigError(
            f"packing needs attention {' or '.join(PACKED_ATTENTION)}, the model uses {impl!r}"
        )
    model.config.use_cache = False


def packing_stats(
    row_lengths: Sequence[int], batch_size: int = 1, width: int | None = None
) -> PackingStats:
    """Real tokens ÷ slots when rows go in consecutive micro-batches of ``batch_size``.

    Args:
        row_lengths: Real tokens of each row (an example's length, or a bin's total).
        batch_size: Rows per micro-batch; each micro-batch is padded to its longest row.
        width: Pad every row to this width instead (e.g. ``max_length``).

    Returns:
        The token and slot counts and their ratio.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    slots = 0
    for start in range(0, len(row_lengths), batch_size):
        chunk = row_lengths[start : start + batch_size]
        slots += len(chunk) * (width if width is not None else max(chunk))
    return PackingStats(tokens=sum(row_lengths), slots=slots, rows=len(row_lengths))


def _check_lengths(lengths: Sequence[int], max_length: int) -> None:
    if max_length < 1:
        raise DataError(f"pack: max_length must be at least 1, got {max_length}")
    for i, n in enumerate(lengths):
        if not 1 <= n <= max_length:
            raise DataError(
                f"pack: example {i} has {n} tokens; each needs 1 to max_length={max_length} "
                "(truncate before packing)"
            )


def _take(rooms: list[int], open_bins: dict[int, list[int]], k: int) -> tuple[int, int]:
    """Remove and return (bin, room) of the first-opened bin whose room is ``rooms[k]``."""
    room = rooms[k]
    heap = open_bins[room]
    b = heapq.heappop(heap)
    if not heap:
        del open_bins[room]
        del rooms[k]
    return b, room


def _put(rooms: list[int], open_bins: dict[int, list[int]], room: int, b: int) -> None:
    heap = open_bins.get(room)
    if heap is None:
        open_bins[room] = heap = []
        bisect.insort(rooms, room)
    heapq.heappush(heap, b)


def _row(examples: Sequence[Example]) -> tuple[list[int], list[int], list[int]]:
    """One packed row's token ids, labels and per-example position ids."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for e in examples:
        n = len(e.input_ids)
        if n == 0:
            continue
        ids += e.input_ids
        labels += [IGNORE, *e.labels[1:]] if e.weight else [IGNORE] * n
        positions += range(n)
    return ids, labels, positions
