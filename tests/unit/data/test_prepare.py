"""Dolly-style preparation: counts add up, 80/10/10 by largest remainder, seeded order, rendered
{"text"} lines, and outputs that appear all together or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raymix.data import prepare as prepare_module
from raymix.data.prepare import SPLIT_NAMES, prepare, split_sizes
from raymix.errors import ConfigError, DataError

HEADER = "Below is an instruction that describes a task."


def _dolly(tmp_path: Path, n: int = 50, empty: int = 3) -> Path:
    blank = {"instruction": "blank", "context": "", "response": "  ", "category": "qa"}
    rows = [
        {"instruction": f"Task {i}", "context": "ctx" if i % 2 else "", "response": f"Answer {i}"}
        for i in range(n)
    ] + [blank] * empty
    path = tmp_path / "dolly.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lines(out: Path) -> dict[str, list[str]]:
    return {
        n: [json.loads(line)["text"] for line in (out / f"{n}.jsonl").read_text().splitlines()]
        for n in SPLIT_NAMES
    }


def test_counts_add_up_and_split_80_10_10(tmp_path: Path) -> None:
    counts = prepare(_dolly(tmp_path), tmp_path / "out")
    assert counts == {
        "read": 53, "dropped_bad_turns": 0, "dropped_empty": 3,
        "train": 40, "validation": 5, "test": 5,
    }  # fmt: skip
    lines = _lines(tmp_path / "out")
    assert {n: len(v) for n, v in lines.items()} == {"train": 40, "validation": 5, "test": 5}
    assert len(set(sum(lines.values(), []))) == 50
    assert sorted((tmp_path / "out").iterdir()) == [tmp_path / "out" / f"{n}.jsonl" for n in
                                                   ("test", "train", "validation")]  # fmt: skip


def test_lines_are_text_rendered_with_the_template(tmp_path: Path) -> None:
    prepare(_dolly(tmp_path, n=10, empty=0), tmp_path / "out", seed=0)
    raw = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    assert all(list(json.loads(line)) == ["text"] for line in raw)
    texts = sum(_lines(tmp_path / "out").values(), [])
    one = next(t for t in texts if "Task 1\n" in t)
    assert one == (
        HEADER + " Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTask 1\n\nctx\n\n### Response:Answer 1"  # as Stanford's train.py joins
    )
    prepare(_dolly(tmp_path, n=10, empty=0), tmp_path / "plain", template="plain")
    assert "Task 2\nAnswer 2" in sum(_lines(tmp_path / "plain").values(), [])


def test_same_seed_same_files_other_seed_other_order(tmp_path: Path) -> None:
    src = _dolly(tmp_path)
    prepare(src, tmp_path / "a", seed=7)
    prepare(src, tmp_path / "b", seed=7)
    prepare(src, tmp_path / "c", seed=8)
    for n in SPLIT_NAMES:
        assert (tmp_path / "a" / f"{n}.jsonl").read_bytes() == (
            tmp_path / "b" / f"{n}.jsonl"
        ).read_bytes()
    a, c = _lines(tmp_path / "a"), _lines(tmp_path / "c")
    assert a["train"] != c["train"]
    assert sorted(sum(a.values(), [])) == sorted(sum(c.values(), []))


@pytest.mark.parametrize(
    ("n", "fractions", "sizes"),
    [
        (4998, (0.8, 0.1, 0.1), [3998, 500, 500]),
        (50, (0.8, 0.1, 0.1), [40, 5, 5]),
        (7, (0.8, 0.1, 0.1), [5, 1, 1]),
        (10, (1 / 3, 1 / 3, 1 / 3), [4, 3, 3]),
        (3, (1.0, 0.0, 0.0), [3, 0, 0]),
    ],
)
def test_split_sizes_are_largest_remainder(n: int, fractions: tuple, sizes: list[int]) -> None:
    exact = prepare_module._check_splits(fractions)
    assert split_sizes(n, exact) == sizes and sum(sizes) == n


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ((0.8, 0.1), "give 3 fractions"),
        ((0.8, 0.3, -0.1), "non-negative"),
        ((0.5, 0.1, 0.1), "must sum to 1"),
        ((float("nan"), 0.5, 0.5), "non-negative"),
    ],
)
def test_bad_splits_are_config_errors(tmp_path: Path, splits: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        prepare(_dolly(tmp_path), tmp_path / "out", splits=splits)
    assert not (tmp_path / "out").exists()


def test_bad_template_format_and_field_map(tmp_path: Path) -> None:
    src = _dolly(tmp_path)
    with pytest.raises(ConfigError, match="template 'chatgpt' is unknown; allowed: plain"):
        prepare(src, tmp_path / "out", template="chatgpt")
    with pytest.raises(ConfigError, match="format 'csv' is unknown; allowed: auto"):
        prepare(src, tmp_path / "out", fmt="csv")
    with pytest.raises(ConfigError, match="needs a field map"):
        prepare(src, tmp_path / "out", fmt="fields")
    assert not (tmp_path / "out").exists()


def test_field_map_input(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("q,a\nWhy?,Because.\nHow?,Like so.\n")
    fmap = {"instruction": "q", "output": "a"}
    counts = prepare(
        path, tmp_path / "out", fmt="fields", template="plain", fields=fmap, splits=(0.5, 0.5, 0)
    )
    assert counts["train"] == 1 and counts["validation"] == 1 and counts["test"] == 0
    assert sorted(sum(_lines(tmp_path / "out").values(), [])) == [
        "How?\nLike so.",
        "Why?\nBecause.",
    ]


def test_bad_data_is_a_data_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "response": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        prepare(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    src, out = _dolly(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("keep me")
    prepare(src, out, seed=1)
    before = (out / "train.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="train.jsonl.*already exist.*overwrite=True"):
        prepare(src, out, seed=2)
    assert (out / "train.jsonl").read_bytes() == before
    prepare(src, out, seed=2, overwrite=True)
    assert (out / "train.jsonl").read_bytes() != before
    assert (out / "notes.md").read_text() == "keep me"


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert prepare(_dolly(tmp_path), tmp_path / "out")["train"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dolly.jsonl", "out"]


def test_a_failure_while_writing_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = prepare_module._write_lines
    calls: list[Path] = []

    def fail_on_second(path: Path, texts: list[str]) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, texts)

    monkeypatch.setattr(prepare_module, "_write_lines", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        prepare(_dolly(tmp_path), tmp_path / "out")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dolly.jsonl"]


@pytest.mark.shared_data
def test_real_alpaca_subset(shared_data: Path, tmp_path: Path) -> None:
    counts = prepare(shared_data / "alpaca/alpaca_5000_random_subset.json", tmp_path / "out")
    assert counts == {
        "read": 5000, "dropped_bad_turns": 0, "dropped_empty": 2,
        "train": 3998, "validation": 500, "test": 500,
    }  # fmt: skip
    first = json.loads((tmp_path / "out" / "test.jsonl").read_text().splitlines()[0])["text"]
    assert "\n\n### Response:" in first
    if "\n\n### Input:\n" in first:  # Stanford Alpaca's prompt_input for a row with an input
        assert first.startswith(
            HEADER[:-1] + ", paired with an input that provides further context."
        )
    else:
        assert first.startswith(HEADER)
    texts = [
        json.loads(line)["text"]
        for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    ]
    assert sum("\n\n### Input:\n" in t for t in texts) > 1000  # the subset's rows with an input
