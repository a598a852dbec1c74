"""Packing: best-fit-decreasing bins, and packed rows that compute exactly what each example
computes alone (loss and logits) on the tiny Llama, with controls showing the check can fail."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from raymix.config.schema import ModelConfig
from raymix.data import synthetic
from raymix.data.batches import IGNORE, Example, encode
from raymix.data.packing import (
    collate_packed,
    enable_packed_attention,
    pack,
    packing_stats,
)
from raymix.data.records import chat
from raymix.errors import ConfigError, DataError
from raymix.train.model import build_model

# ---------------------------------------------------------------------------------------------
# pack


def _reference_bfd(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing the obvious O(n²) way: the oracle for :func:`pack`."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    rooms: list[int] = []
    for i in order:
        fits = [(room, b) for b, room in enumerate(rooms) if room >= lengths[i]]
        if fits:
            _, b = min(fits)
        else:
            b = len(bins)
            bins.append([])
            rooms.append(capacity)
        bins[b].append(i)
        rooms[b] -= lengths[i]
    return bins


def _check_bins(bins: list[list[int]], lengths: list[int], capacity: int) -> None:
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    loads = sorted(sum(lengths[i] for i in b) for b in bins)
    assert all(b for b in bins)
    assert all(load <= capacity for load in loads)
    # Any-fit invariant: a bin was opened only because its first item fitted nowhere, so no two
    # bins could be merged.
    if len(loads) > 1:
        assert loads[0] + loads[1] > capacity


def test_pack_is_best_fit_not_first_fit() -> None:
    # Sorted: 10, 7, 4, 4, 2. First fit would put the 2 beside the 7 (room 3); best fit puts it
    # into the bin with room 2, leaving room 3 for a later 3.
    assert pack([10, 2, 7, 4, 4], 10) == [[0], [2], [3, 4, 1]]


def test_pack_fills_bins_perfectly_when_it_can() -> None:
    lengths = [7, 3, 6, 4, 5, 5, 8, 2]
    assert pack(lengths, 10) == [[6, 7], [0, 1], [2, 3], [4, 5]]


def test_pack_ties_are_broken_by_index() -> None:
    assert pack([3, 3, 3, 3], 6) == [[0, 1], [2, 3]]
    assert pack([2, 5, 2, 5], 7) == [[1, 0], [3, 2]]


def test_pack_rejects_what_does_not_fit() -> None:
    with pytest.raises(DataError, match="example 1 has 11 tokens"):
        pack([3, 11], 10)
    with pytest.raises(DataError, match="example 0 has 0 tokens"):
        pack([0], 10)
    with pytest.raises(DataError, match="max_length"):
        pack([1], 0)
    assert pack([], 10) == []


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 64),
    raw=st.lists(st.integers(1, 64), max_size=120),
)
def test_pack_matches_the_reference_on_random_lengths(capacity: int, raw: list[int]) -> None:
    lengths = [min(n, capacity) for n in raw]
    bins = pack(lengths, capacity)
    _check_bins(bins, lengths, capacity)
    assert bins == _reference_bfd(lengths, capacity)
    assert pack(list(lengths), capacity) == bins


def test_pack_handles_100k_examples() -> None:
    # speed is measured in bench/packing_efficiency.py, not here
    rng = random.Random(0)
    lengths = [min(1024, int(rng.lognormvariate(5.0, 0.8)) + 1) for _ in range(100_000)]
    bins = pack(lengths, 1024)
    _check_bins(bins, lengths, 1024)
    assert packing_stats([sum(lengths[i] for i in b) for b in bins], width=1024).efficiency > 0.97


def test_packing_stats_counts_slots_per_micro_batch() -> None:
    assert packing_stats([3, 5, 2], batch_size=2).slots == 2 * 5 + 1 * 2
    stats = packing_stats([3, 5, 2], width=8)
    assert (stats.tokens, stats.slots, stats.rows) == (10, 24, 3)
    assert stats.efficiency == pytest.approx(10 / 24)
    assert packing_stats([]).efficiency == 1.0


# ---------------------------------------------------------------------------------------------
# collate_packed


def _ex(n: int, start: int, weight: int = 1) -> Example:
    ids = list(range(start, start + n))
    return Example(ids, [IGNORE] + ids[1:], weight)


def test_collate_packed_resets_positions_and_masks_boundaries() -> None:
    rows = [[_ex(3, 10), _ex(2, 20), _ex(1, 30)], [_ex(2, 40, weight=0)], [_ex(4, 50)]]
    batch = collate_packed(rows, pad_id=0)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [
        [10, 11, 12, 20, 21, 30],
        [40, 41, 0, 0, 0, 0],
        [50, 51, 52, 53, 0, 0],
    ]
    assert batch["position_ids"].tolist() == [
        [0, 1, 2, 0, 1, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 1, 2, 3, 0, 0],
    ]
    x = IGNORE
    assert batch["labels"].tolist() == [
        [x, 11, 12, x, 21, x],
        [x, x, x, x, x, x],
        [x, 51, 52, 53, x, x],
    ]


def test_first_label_of_each_example_is_ignored_even_if_given() -> None:
    e = Example([5, 6, 7], [5, 6, 7])
    labels = collate_packed([[e, e]], pad_id=0)["labels"].tolist()
    assert labels == [[IGNORE, 6, 7, IGNORE, 6, 7]]


def test_every_example_and_pad_token_is_its_own_segment_for_transformers() -> None:
    from transformers.masking_utils import find_packed_sequence_indices

    batch = collate_packed([[_ex(3, 1), _ex(1, 1), _ex(2, 1)], [_ex(2, 1)]], pad_id=0)
    segments = find_packed_sequence_indices(batch["position_ids"])
    assert segments is not None
    assert segments.tolist() == [[0, 0, 0, 1, 2, 2], [0, 0, 1, 2, 3, 4]]


def test_collate_packed_rejects_empty_rows() -> None:
    with pytest.raises(DataError):
        collate_packed([], pad_id=0)
    with pytest.raises(DataError):
        collate_packed([[_ex(2, 1)], []], pad_id=0)


def test_enable_packed_attention_turns_the_cache_off_and_refuses_flash() -> None:
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa", use_cache=True))
    enable_packed_attention(model)
    assert model.config.use_cache is False
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="flash_attention_2"):
        enable_packed_attention(model)


# ---------------------------------------------------------------------------------------------
# packed rows compute what each example computes alone


@pytest.fixture(scope="module")
def rows(tokenizer) -> list[list[Example]]:  # type: ignore[no-untyped-def]
    """Three rows: four examples, one short example (padded), two examples; all lengths differ."""
    records = [synthetic.generate(k, 1, i, k) for i in range(2) for k in synthetic.KINDS]
    records += [chat("Hi", "Hello there, friend.", "t", 0), chat("2 + 2?", "4", "t", 1)]
    ex = encode(records, tokenizer, "vicuna", 256)
    out = [[ex[0], ex[6], ex[1], ex[7]], [ex[2]], [ex[3], ex[5]]]
    lengths = [len(e.input_ids) for row in out for e in row]
    assert len(set(lengths)) == len(lengths)
    return out


def _model(tokenizer, attn: str):  # type: ignore[no-untyped-def]
    """The tiny Llama in float32, eval mode, with weights sharpened (std 0.1 instead of 0.02)
    so that what a token attends to visibly moves the loss."""
    model = build_model(ModelConfig(), tokenizer, seed=0, dtype="float32").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.1, generator=gen)
    model.set_attn_implementation(attn)
    return model


def _alone(model, rows: list[list[Example]]) -> tuple[list[list[torch.Tensor]], float]:  # type: ignore[no-untyped-def]
    """Each example's logits run alone (unpacked, unpadded) and the token-weighted mean loss."""
    logits, total, count = [], 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits.append([])
            for e in row:
                out = model(input_ids=torch.tensor([e.input_ids])).logits[0]
                labels = torch.tensor(e.labels[1:])
                total += torch.nn.functional.cross_entropy(
                    out[:-1], labels, ignore_index=IGNORE, reduction="sum"
                ).item()
                count += int((labels != IGNORE).sum())
                logits[-1].append(out)
    return logits, total / count


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_equals_examples_alone(tokenizer, rows, attn: str) -> None:  # type: ignore[no-untyped-def]
    model = _model(tokenizer, attn)
    enable_packed_attention(model)
    alone_logits, alone_loss = _alone(model, rows)
    batch = collate_packed(rows, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[1] > len(rows[1][0].input_ids)  # row 1 is padded
    with torch.no_grad():
        out = model(**batch)
    assert abs(out.loss.item() - alone_loss) / alone_loss < 1e-4
    for r, row in enumerate(rows):
        start = 0
        for e, expected in zip(row, alone_logits[r], strict=True):
            n = len(e.input_ids)
            torch.testing.assert_close(
                out.logits[r, start : start + n], expected, atol=1e-5, rtol=1e-5
            )
            start += n


def _relative_gap(tokenizer, rows, **overrides) -> float:  # type: ignore[no-untyped-def]
    model = _model(tokenizer, "sdpa")
    enable_packed_attention(model)
    _, alone_loss = _alone(model, rows)
    batch = {**collate_packed(rows, tokenizer.pad_token_id), **overrides}
    with torch.no_grad():
        loss = model(**batch).loss.item()
    return abs(loss - alone_loss) / alone_loss


def test_control_plain_causal_rows_leak_across_examples(tokenizer, rows) -> None:  # type: ignore[no-untyped-def]
    batch = collate_packed(rows, tokenizer.pad_token_id)
    width = batch["input_ids"].shape[1]
    lengths = torch.tensor([sum(len(e.input_ids) for e in row) for row in rows])
    gap = _relative_gap(
        tokenizer,
        rows,
        position_ids=torch.arange(width).expand(len(rows), -1),
        attention_mask=(torch.arange(width)[None] < lengths[:, None]).long(),
    )
    assert gap > 1e-3


def test_control_a_cache_silently_turns_packing_off(tokenizer, rows) -> None:  # type: ignore[no-untyped-def]
    assert _relative_gap(tokenizer, rows, use_cache=True) > 1e-3


def test_control_an_attention_mask_silently_turns_packing_off(tokenizer, rows) -> None:  # type: ignore[no-untyped-def]
    batch = collate_packed(rows, tokenizer.pad_token_id)
    mask = (batch["input_ids"] != tokenizer.pad_token_id).long()
    assert _relative_gap(tokenizer, rows, attention_mask=mask) > 1e-3
