"""Benchmark: how much of a batch is real tokens (real tokens ÷ slots) on real SFT data, when
examples are padded to max_length, padded to the longest of a random micro-batch of 8, or packed
best-fit-decreasing into rows of max_length (raymix.data.packing).

Alpaca, GSM8K and ShareGPT from ../shared/data are loaded through ``raymix.data.sources``,
tokenized with the builtin byte-level BPE (trained on a sample of their texts) and the vicuna
template, truncated to 1024 tokens; the ratios are printed per source and for the three together,
with the time ``pack`` took. Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.config.schema import SourceConfig  # noqa: E402
from raymix.data.batches import Example, encode  # noqa: E402
from raymix.data.packing import pack, packing_stats  # noqa: E402
from raymix.data.sources import load_records  # noqa: E402
from raymix.data.tokenizer import load_tokenizer, train_builtin  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SOURCES = {
    "alpaca": ("alpaca/alpaca_5000_random_subset.json", "alpaca"),
    "gsm8k": ("gsm8k/train.jsonl", "gsm8k"),
    "sharegpt": ("sharegpt/sharegpt_v3_cleaned_subset_6k.json.gz", "sharegpt"),
}
MAX_LENGTH = 1024
MICRO_BATCH = 8
VOCAB = 8000
TOKENIZER_SAMPLE = 1000  # records per source the tokenizer is trained on
TEMPLATE = "vicuna"
GOAL = 0.97
SEED = 0


def _load() -> dict[str, list]:
    """Every record of each source (train and held-out rows alike)."""
    out = {}
    for name, (rel, fmt) in SOURCES.items():
        cfg = SourceConfig(name=name, path=str(DATA / rel), format=fmt)
        out[name] = load_records(cfg, seed=SEED).records
    return out


def _tokenizer(records: dict[str, list]):  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    texts = [
        m["content"]
        for recs in records.values()
        for r in rng.sample(recs, min(TOKENIZER_SAMPLE, len(recs)))
        for m in r["messages"]
    ]
    return load_tokenizer(train_builtin(texts, VOCAB))


def _ratios(examples: list[Example]) -> tuple[dict[str, float], float, int]:
    """Real tokens ÷ slots for each layout, pack()'s wall time, and the number of packed rows."""
    lengths = [len(e.input_ids) for e in examples]
    shuffled = list(lengths)
    random.Random(SEED).shuffle(shuffled)
    start = time.perf_counter()
    bins = pack(lengths, MAX_LENGTH)
    elapsed = time.perf_counter() - start
    loads = [sum(lengths[i] for i in b) for b in bins]
    random.Random(SEED).shuffle(loads)
    ratios = {
        f"padded to {MAX_LENGTH}": packing_stats(lengths, width=MAX_LENGTH).efficiency,
        f"padded to longest of {MICRO_BATCH}": packing_stats(shuffled, MICRO_BATCH).efficiency,
        f"packed, rows of {MAX_LENGTH}": packing_stats(loads, width=MAX_LENGTH).efficiency,
        f"packed, longest of {MICRO_BATCH} rows": packing_stats(loads, MICRO_BATCH).efficiency,
    }
    return ratios, elapsed, len(bins)


def main() -> int:
    """Print the table; exit status 1 if packing misses the goal on the three sources together."""
    if not DATA.is_dir():
        print(f"packing_efficiency: skipped, data folder {DATA} is absent")
        return 0
    start = time.perf_counter()
    records = _load()
    tok = _tokenizer(records)
    encoded = {name: encode(recs, tok, TEMPLATE, MAX_LENGTH) for name, recs in records.items()}
    encoded["all three"] = [e for exs in encoded.values() for e in exs]
    print(
        f"Real tokens ÷ slots, max_length {MAX_LENGTH}, builtin BPE (vocab {VOCAB}), "
        f"template {TEMPLATE} (setup {time.perf_counter() - start:.1f}s)\n"
    )
    rows = {name: _ratios(exs) for name, exs in encoded.items()}
    layouts = list(next(iter(rows.values()))[0])
    print(f"{'source':<11}{'examples':>9}{'tokens':>11}" + "".join(f"{c:>26}" for c in layouts))
    for name, (ratios, _, _) in rows.items():
        exs = encoded[name]
        tokens = sum(len(e.input_ids) for e in exs)
        cells = "".join(f"{ratios[c]:>26.4f}" for c in layouts)
        print(f"{name:<11}{len(exs):>9}{tokens:>11}{cells}")
    ratios, elapsed, n_rows = rows["all three"]
    packed = ratios[layouts[2]]
    n_examples = len(encoded["all three"])
    print(
        f"\npack(): {n_examples} examples -> {n_rows} rows in {elapsed * 1000:.0f} ms; "
        f"packed {packed:.4f} vs goal {GOAL} ({'met' if packed >= GOAL else 'MISSED'}); "
        f"{packed / ratios[layouts[1]]:.2f}x the real tokens per slot of padding to the longest "
        f"of {MICRO_BATCH}, {packed / ratios[layouts[0]]:.2f}x padding to {MAX_LENGTH}"
    )
    return 0 if packed >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
