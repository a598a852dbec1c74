"""Sources: every format from the real shared files and tiny written ones, counted cleaning,
fingerprints, and a clear DataError for every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from raymix.config.schema import SourceConfig
from raymix.data import synthetic
from raymix.data.sources import load_records, split_heldout
from raymix.errors import ConfigError, DataError


def _cfg(path: Path | str, **kw: Any) -> SourceConfig:
    return SourceConfig(name=kw.pop("name", "s"), path=str(path), **kw)


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pairs(records: list[Any]) -> list[tuple[str, ...]]:
    return [tuple(m["content"] for m in r["messages"]) for r in records]


# --- the real files in ../shared/data ------------------------------------------------------------

REAL = [
    # (relative path, format, rows read, dropped empty, kept, first user starts, first reply starts)
    ("alpaca/alpaca_5000_random_subset.json", "auto", 5000, 2, 4998,
     "Are the two sentences below grammatically correct? Output yes or no.\n\nSentence 1:", "No"),
    ("code_alpaca/code_alpaca_2k.json", "alpaca", 2017, 2, 2015,
     "What are the distinct values from the given list?\n\ndataList = [3, 9, 3, 5, 7, 9, 5]",
     "The distinct values from the given list are 3, 5, 7 and 9."),
    ("gsm8k/train.jsonl", "auto", 7473, 0, 7473,
     "Natalia sold clips to 48 of her friends in April", "Natalia sold 48/2 = <<48/2=24>>24"),
    ("p3_t0_train/p3_t0_train_subset_3700.jsonl", "auto", 3700, 100, 3600,
     'I know that the answer to the question "What gives us insight', "DNA-based evidence"),
    ("flan_v2_cot/gsm8k_train.tsv", "flan_cot", 7473, 0, 7473,
     "Natalia sold clips to 48 of her friends in April",
     "Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April "
     "and May. So the answer is 72."),
]  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize(("rel", "fmt", "read", "empty", "kept", "user", "reply"), REAL)
def test_real_files_load_with_expected_counts(
    shared_data: Path, rel: str, fmt: str, read: int, empty: int, kept: int, user: str, reply: str
) -> None:
    path = shared_data / rel
    src = load_records(_cfg(path, format=fmt), seed=0)
    assert src.cleaning == {
        "rows_read": read, "dropped_bad_turns": 0, "dropped_empty": empty, "kept": kept
    }  # fmt: skip
    assert len(src.records) == kept
    assert [r["row_id"] for r in src.records] == list(range(kept))
    first = src.records[0]["messages"]
    assert first[0]["role"] == "user" and first[0]["content"].startswith(user)
    assert first[1]["role"] == "assistant" and first[1]["content"].startswith(reply)
    assert src.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.shared_data
def test_real_math_files_keep_the_final_answer(shared_data: Path) -> None:
    gsm = load_records(_cfg(shared_data / "gsm8k/train.jsonl"))
    assert gsm.records[0]["meta"] == {"answer": "72", "origin": "line 1"}
    flan = load_records(_cfg(shared_data / "flan_v2_cot/gsm8k_train.tsv"))  # auto: headerless
    assert flan.cleaning["kept"] == 7473 and flan.records[1]["meta"]["answer"] == "10"


@pytest.mark.shared_data
def test_real_alpaca_keeps_the_origin_of_rows_after_a_dropped_one(shared_data: Path) -> None:
    alpaca = load_records(_cfg(shared_data / "alpaca/alpaca_5000_random_subset.json"))
    assert alpaca.records[2334]["meta"]["origin"] == "row 2334"
    assert alpaca.records[2335]["meta"]["origin"] == "row 2336"  # row 2335 had no output


@pytest.mark.shared_data
def test_real_sharegpt_keeps_every_turn(shared_data: Path) -> None:
    path = shared_data / "sharegpt/sharegpt_v3_cleaned_subset_6k.json.gz"
    share = load_records(_cfg(path))
    assert share.cleaning == {
        "rows_read": 6000, "dropped_bad_turns": 0, "dropped_empty": 0, "kept": 6000
    }  # fmt: skip
    assert share.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    first = share.records[0]["messages"]
    assert len(first) == 16 and [m["role"] for m in first[:2]] == ["user", "assistant"]
    assert first[0]["content"] == "Java add to the arraylist of a class type"
    assert first[1]["content"].startswith("To add an element to an ArrayList")
    assert share.records[0]["meta"] == {"origin": "row 0"}
    assert sum(len(r["messages"]) for r in share.records) == 2 * 20167


@pytest.mark.shared_data
def test_real_p3_drops_empty_targets_and_keeps_the_dataset(shared_data: Path) -> None:
    p3 = load_records(_cfg(shared_data / "p3_t0_train/p3_t0_train_subset_3700.jsonl", format="p3"))
    assert p3.records[0]["meta"]["dataset"] == "adversarial_qa_dbert"
    assert p3.records[0]["meta"]["task_type"] == "extractive_qa"
    kept = load_records(
        _cfg(shared_data / "p3_t0_train/p3_t0_train_subset_3700.jsonl", drop_empty=False)
    )
    assert kept.cleaning["kept"] == 3700


# --- tiny written files ---------------------------------------------------------------------------


def test_dolly_jsonl(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Who?", "context": "Ann met Bo.", "response": "Ann", "category": "qa"},
        {"instruction": "Say hi", "context": "", "response": "hi", "category": "brainstorming"},
    ]
    out = load_records(_cfg(_jsonl(tmp_path / "dolly.jsonl", rows)))
    assert _pairs(out.records) == [("Who?\n\nAnn met Bo.", "Ann"), ("Say hi", "hi")]
    assert out.records[1]["meta"] == {"category": "brainstorming", "origin": "line 2"}


def test_messages_jsonl_gz_with_system(tmp_path: Path) -> None:
    row = {"messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]}  # fmt: skip
    path = tmp_path / "chat.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    out = load_records(_cfg(path))
    assert _pairs(out.records) == [("Be kind.", "hi", "hello")]


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"question": ["1+1?", "2+2?"], "answer": ["2\n#### 2", "4\n#### 4"]})
    pq.write_table(table, tmp_path / "math.parquet")
    out = load_records(_cfg(tmp_path / "math.parquet"))
    assert _pairs(out.records) == [("1+1?", "2\n#### 2"), ("2+2?", "4\n#### 4")]
    assert out.records[1]["meta"] == {"answer": "4", "origin": "row 1"}


def test_csv_with_header_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text('instruction,input,output\n"Add, please","1\n2",3\nSay hi,,hi\n')
    out = load_records(_cfg(path))
    assert _pairs(out.records) == [("Add, please\n\n1\n2", "3"), ("Say hi", "hi")]
    assert out.records[1]["meta"]["origin"] == "line 4"


def test_tsv_with_header_and_field_map(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text('prompt\treply\tsys\nWhy "so"?\tBecause.\tBe brief.\n')
    fmap = {"instruction": "prompt", "output": "reply", "system": "sys"}
    out = load_records(_cfg(path, format="fields", fields=fmap))
    assert _pairs(out.records) == [("Be brief.", 'Why "so"?', "Because.")]


def test_flan_tsv_headerless_or_with_its_header(tmp_path: Path) -> None:
    body = "Is 2 even?\tyes\t2 = 2 * 1.\n"
    (tmp_path / "a.tsv").write_text(body)
    (tmp_path / "b.tsv").write_text("question\tanswer\trationale\n" + body)
    for name in ("a.tsv", "b.tsv"):
        out = load_records(_cfg(tmp_path / name, format="flan_cot"))
        assert _pairs(out.records) == [("Is 2 even?", "2 = 2 * 1. So the answer is yes.")]


def test_json_object_with_data_list_and_json_holding_lines(tmp_path: Path) -> None:
    row = {"instruction": "a", "output": "b"}
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": 1, "data": [row]}))
    assert _pairs(load_records(_cfg(tmp_path / "wrapped.json")).records) == [("a", "b")]
    _jsonl(tmp_path / "lines.json", [row, row])
    assert len(load_records(_cfg(tmp_path / "lines.json")).records) == 2


def test_sharegpt_bad_turns_are_dropped_and_counted(tmp_path: Path) -> None:
    def conv(*speakers: str) -> dict:
        return {"conversations": [{"from": s, "value": f"t{i}"} for i, s in enumerate(speakers)]}

    rows = [
        conv("human", "gpt"),
        conv("gpt", "human"),
        conv("human", "human", "gpt"),
        conv("human", "gpt", "human"),
        conv("system", "human", "gpt", "human", "gpt"),
    ]
    out = load_records(_cfg(_jsonl(tmp_path / "sg.jsonl", rows)))
    assert out.cleaning == {"rows_read": 5, "dropped_bad_turns": 3, "dropped_empty": 0, "kept": 2}
    assert [r["meta"]["origin"] for r in out.records] == ["line 1", "line 5"]
    assert [r["row_id"] for r in out.records] == [0, 1]


def test_strip_and_drop_empty_are_explicit(tmp_path: Path) -> None:
    rows = [{"instruction": "  a ", "output": " b\n"}, {"instruction": "c", "output": "  "}]
    path = _jsonl(tmp_path / "ws.jsonl", rows)
    out = load_records(_cfg(path))
    assert _pairs(out.records) == [("a", "b")]
    assert out.cleaning == {"rows_read": 2, "dropped_bad_turns": 0, "dropped_empty": 1, "kept": 1}
    raw = load_records(_cfg(path, strip=False, drop_empty=False))
    assert _pairs(raw.records) == [("  a ", " b\n"), ("c", "  ")]


def test_heldout_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(20)]
    cfg = _cfg(_jsonl(tmp_path / "m.jsonl", rows), heldout_fraction=0.25)
    src = load_records(cfg, seed=3)
    assert src.cleaning["kept"] == 20 and cfg.heldout_size == 0.25
    train, held = split_heldout(len(src.records), cfg.heldout_size, 3, "s")
    assert len(held) == 5 and sorted(train + held) == list(range(20))
    assert (train, held) == split_heldout(20, 0.25, 3, "s")
    assert held != split_heldout(20, 0.25, 4, "s")[1]


def test_synthetic_sources_are_unchanged_and_counted() -> None:
    src = load_records(_cfg("synthetic:math", size=50), seed=1)
    assert src.fingerprint == "synthetic:math?seed=1&size=50&v=1"
    assert src.cleaning == {"rows_read": 50, "dropped_bad_turns": 0, "dropped_empty": 0, "kept": 50}
    assert src.records == [synthetic.generate("math", 1, i, "s") for i in range(50)]
    assert "origin" not in src.records[0]["meta"] and src.lost_subtasks == {}


# --- bad input ------------------------------------------------------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "a", "output": \n')
    with pytest.raises(DataError, match=rf"^{path}:3: malformed JSON: Expecting value"):
        load_records(_cfg(path))


def test_malformed_json_array_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n {"instruction": "a",\n  "output": }\n]')
    with pytest.raises(DataError, match=rf"^{path}:3: malformed JSON"):
        load_records(_cfg(path))


def test_missing_fields_name_the_row_the_fields_and_the_format(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(DataError) as err:
        load_records(_cfg(path))
    assert str(err.value).startswith(f"{path}:2: missing field(s) 'output' for format 'alpaca'")
    assert "expected alpaca (instruction, output, optional: input)" in str(err.value)


def test_missing_field_of_a_json_array_names_the_row(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(DataError, match=r"a.json row 0: missing field\(s\) 'answer'.*'gsm8k'"):
        load_records(_cfg(tmp_path / "a.json", format="gsm8k"))


def test_empty_after_cleaning_names_the_source_and_counts(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "e.jsonl", [{"instruction": "a", "output": " "}] * 3)
    with pytest.raises(DataError) as err:
        load_records(_cfg(path, name="blank"))
    msg = str(err.value)
    assert "source 'blank'" in msg and "no usable rows after cleaning" in msg
    assert "rows_read 3" in msg and "dropped_empty 3" in msg and "kept 0" in msg


def test_unknown_format_lists_fields_and_formats(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "piqa.jsonl", [{"goal": "g", "sol1": "a", "sol2": "b"}])
    with pytest.raises(
        DataError, match=r"piqa.jsonl:1: cannot tell the format.*\[goal, sol1, sol2\]"
    ):
        load_records(_cfg(path))


def test_undecodable_bytes_name_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=rf"^{path}: not UTF-8 text: .*byte 0xe9 at byte offset 20"):
        load_records(_cfg(path))


def test_bad_gzip_bad_tables_and_bad_roots(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_records(_cfg(tmp_path / "x.jsonl.gz"))
    (tmp_path / "t.tsv").write_text("instruction\toutput\na\tb\tc\n")
    with pytest.raises(DataError, match=r"t.tsv:2: expected 2 tab-separated columns"):
        load_records(_cfg(tmp_path / "t.tsv"))
    (tmp_path / "o.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match=r"expected a JSON array of rows .*keys \['a'\]"):
        load_records(_cfg(tmp_path / "o.json"))
    (tmp_path / "x.parquet").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable parquet file"):
        load_records(_cfg(tmp_path / "x.parquet"))


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sources.s.path: .*nope.jsonl: no such file"):
        load_records(_cfg(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="is a directory, not a file"):
        load_records(_cfg(tmp_path))


def test_field_map_errors_are_config_errors(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "f.jsonl", [{"q": "a", "a": "b"}])
    with pytest.raises(ConfigError, match="sources.s.fields: format 'fields' needs a field map"):
        load_records(_cfg(path, format="fields"))


def test_hub_id_without_network_says_to_use_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_records(_cfg("raymix-test/no-such-dataset", subset="x", split="train"))
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "sources.s.path: 'raymix-test/no-such-dataset' is not a local file" in msg
    assert "hub could not be reached" in msg and "use a local" in msg
