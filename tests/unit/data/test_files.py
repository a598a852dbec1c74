"""The one JSON-lines reader and the one atomic writer."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from raymix.data.files import read_jsonl, read_rows, write_atomic, write_jsonl
from raymix.errors import DataError


def test_read_jsonl_plain_and_gzip(tmp_path: Path) -> None:
    text = '\ufeff{"a": 1}\n\n{"a": 2}\n'
    (tmp_path / "x.jsonl").write_text(text)
    (tmp_path / "x.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    assert (
        read_jsonl(tmp_path / "x.jsonl")
        == read_jsonl(tmp_path / "x.jsonl.gz")
        == [{"a": 1}, {"a": 2}]
    )
    (tmp_path / "a.json").write_text('[{"a": 1}]')
    assert read_rows(tmp_path / "a.json") == [{"a": 1}]
    assert read_rows(tmp_path / "x.jsonl") == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bad.jsonl", b'{"a": 1}\n{"a": \n', r"bad.jsonl:2: malformed JSON"),
        ("list.jsonl", b"[1, 2]\n", r"list.jsonl:1: expected a JSON object, got list"),
        ("bin.jsonl", b'{"a": "\xff"}\n', r"bin.jsonl: not UTF-8 text: undecodable byte 0xff"),
        ("z.jsonl.gz", b"not gzip", r"z.jsonl.gz: not a readable gzip file"),
    ],
)
def test_read_jsonl_names_file_and_line(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_jsonl(tmp_path / name)
    with pytest.raises(DataError, match="nope.jsonl: cannot read"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    assert path.read_text() == '{"a": 1}\n'

    with pytest.raises(TypeError):  # fails while writing the temporary file
        write_atomic(path, object())  # type: ignore[arg-type]
    assert path.read_text() == '{"a": 1}\n'  # the old file, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.jsonl"]  # no temp left behind
