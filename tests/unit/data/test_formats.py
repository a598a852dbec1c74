"""Row formats: each turns a raw row into chat messages; auto-detection and its errors."""

from __future__ import annotations

from typing import get_args

import pytest

from raymix.config.schema import SourceFormat
from raymix.data.formats import (
    ALLOWED_FORMATS,
    FORMATS,
    check_field_map,
    check_turns,
    detect_format,
    to_messages,
)
from raymix.errors import ConfigError, DataError


def _roles_and_text(row: dict, fmt: str, **kw: object) -> list[tuple[str, str]]:
    msgs, _ = to_messages(row, fmt, "f.jsonl:1", **kw)  # type: ignore[arg-type]
    return [(m["role"], m["content"]) for m in msgs]


def test_registry_matches_the_schema_formats() -> None:
    # every format the config schema accepts is registered here, and nothing else
    schema = set(get_args(SourceFormat))
    assert set(ALLOWED_FORMATS) == schema
    assert set(FORMATS) | {"auto", "fields"} == schema
    for name, spec in FORMATS.items():
        assert spec.name == name
        row = {f: "x" for f in spec.required[0]}
        if name == "sharegpt":
            row = {
                "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
            }
        elif name == "messages":
            row = {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        assert check_turns(to_messages(row, name, "x").messages), name


def test_alpaca_appends_a_non_empty_input_after_a_blank_line() -> None:
    row = {"instruction": "Sort these.", "input": "3, 1, 2", "output": "1, 2, 3"}
    assert _roles_and_text(row, "alpaca") == [
        ("user", "Sort these.\n\n3, 1, 2"),
        ("assistant", "1, 2, 3"),
    ]
    no_input = {"instruction": "Say hi.", "input": "  ", "output": "hi"}
    assert _roles_and_text(no_input, "alpaca")[0] == ("user", "Say hi.")
    assert _roles_and_text({"instruction": "Say hi.", "output": "hi"}, "alpaca")[0][1] == "Say hi."


def test_dolly_appends_context_and_keeps_the_category() -> None:
    row = {"instruction": "Who?", "context": "Ann met Bo.", "response": "Ann", "category": "qa"}
    msgs, meta = to_messages(row, "dolly", "x")
    assert msgs[0]["content"] == "Who?\n\nAnn met Bo." and msgs[1]["content"] == "Ann"
    assert meta == {"category": "qa"}


def test_gsm8k_final_answer_goes_to_meta() -> None:
    msgs, meta = to_messages({"question": "1+1?", "answer": "1+1=2\n#### 2"}, "gsm8k", "x")
    assert msgs[1]["content"] == "1+1=2\n#### 2" and meta == {"answer": "2"}
    assert to_messages({"question": "q", "answer": "no marker"}, "gsm8k", "x").meta == {}


def test_sharegpt_maps_speakers_and_keeps_every_turn() -> None:
    row = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "gpt", "value": "b"},
            {"from": "user", "value": "c"},
            {"from": "chatgpt", "value": "d"},
        ],
    }
    assert _roles_and_text(row, "sharegpt") == [
        ("system", "Be brief."),
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c"),
        ("assistant", "d"),
    ]


def test_sharegpt_unknown_speaker_names_the_turn_and_the_allowed() -> None:
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "tool", "value": "b"}]}
    with pytest.raises(DataError, match=r"f.jsonl:1: conversations\[1\].from is 'tool'; allowed"):
        to_messages(row, "sharegpt", "f.jsonl:1")


def test_messages_roles_are_checked() -> None:
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert _roles_and_text(row, "messages") == [("user", "a"), ("assistant", "b")]
    bad = {"messages": [{"role": "robot", "content": "a"}]}
    with pytest.raises(DataError, match=r"messages\[0\].role is 'robot'"):
        to_messages(bad, "messages", "x")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"inputs": "Q", "targets": "A"}, "A"),
        ({"inputs_pretokenized": "Q", "targets_pretokenized": "A", "inputs": [1, 2]}, "A"),
        ({"prompt": "Q", "completion": "A<|endoftext|>", "dataset": "imdb"}, "A"),
    ],
)
def test_p3_accepts_its_three_spellings(row: dict, expected: str) -> None:
    msgs, meta = to_messages(row, "p3", "x")
    assert msgs[0]["content"] == "Q" and msgs[1]["content"] == expected
    assert meta == ({"dataset": "imdb"} if "dataset" in row else {})


def test_flan_cot_is_rationale_then_answer_with_real_newlines() -> None:
    row = {"question": "Pick:\\n(A) 1\\n(B) 2", "answer": "(B)", "rationale": "Two is more."}
    msgs, meta = to_messages(row, "flan_cot", "x")
    assert msgs[0]["content"] == "Pick:\n(A) 1\n(B) 2"
    assert msgs[1]["content"] == "Two is more. So the answer is (B)."
    assert meta == {"answer": "(B)"}
    done = {"question": "q", "answer": "It is yes.", "rationale": ""}
    assert (
        to_messages(done, "flan_cot", "x").messages[1]["content"] == "So the answer is It is yes."
    )


def test_fields_map_columns_with_an_optional_system() -> None:
    row = {"q": "Why?", "ctx": "Because.", "a": "That is why.", "sys": "Kind."}
    fmap = {"instruction": "q", "input": "ctx", "output": "a", "system": "sys"}
    assert _roles_and_text(row, "fields", field_map=fmap) == [
        ("system", "Kind."),
        ("user", "Why?\n\nBecause."),
        ("assistant", "That is why."),
    ]


def test_fields_missing_column_names_it_and_the_map() -> None:
    with pytest.raises(
        DataError, match=r"missing field\(s\) 'a' for format 'fields'.*output <- 'a'"
    ):
        to_messages({"q": "x"}, "fields", "x", {"instruction": "q", "output": "a"})


@pytest.mark.parametrize(
    ("fmap", "match"),
    [
        (None, "needs a field map"),
        ({"instruction": "q", "output": "a", "answer": "b"}, "unknown key.*answer; allowed"),
        ({"instruction": "q"}, "missing key.*output"),
    ],
)
def test_bad_field_maps_are_config_errors(fmap: dict | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_field_map(fmap, "sources.s.fields")


def test_missing_fields_name_row_field_and_format() -> None:
    with pytest.raises(DataError) as err:
        to_messages({"instruction": "x", "input": "y"}, "alpaca", "data.jsonl:7")
    msg = str(err.value)
    assert msg.startswith("data.jsonl:7: missing field(s) 'output' for format 'alpaca'")
    assert "instruction, output, optional: input" in msg and "[input, instruction]" in msg


def test_p3_missing_fields_list_the_alternatives() -> None:
    with pytest.raises(DataError, match="inputs, targets or inputs_pretokenized.*prompt, complet"):
        to_messages({"inputs": "q"}, "p3", "x")


def test_non_text_values_and_non_objects_are_errors() -> None:
    with pytest.raises(DataError, match="field 'output' should be text, found a list"):
        to_messages({"instruction": "x", "output": ["y"]}, "alpaca", "x")
    with pytest.raises(DataError, match="expected an object with named fields, found a list"):
        to_messages(["x"], "alpaca", "x")  # type: ignore[arg-type]
    assert to_messages({"question": "q", "answer": 4}, "gsm8k", "x").messages[1]["content"] == "4"


@pytest.mark.parametrize(
    ("keys", "fmt"),
    [
        (("instruction", "input", "output"), "alpaca"),
        (("instruction", "input", "response", "output"), "alpaca"),
        (("instruction", "context", "response", "category"), "dolly"),
        (("question", "answer"), "gsm8k"),
        (("question", "answer", "rationale"), "flan_cot"),
        (("id", "conversations"), "sharegpt"),
        (("messages",), "messages"),
        (("dataset", "prompt", "completion"), "p3"),
        (("inputs", "targets"), "p3"),
    ],
)
def test_detect_format(keys: tuple[str, ...], fmt: str) -> None:
    assert detect_format(dict.fromkeys(keys, "")) == fmt


def test_unknown_format_lists_the_row_fields_and_the_formats() -> None:
    with pytest.raises(DataError) as err:
        detect_format({"goal": "g", "sol1": "a"}, "piqa.jsonl:1")
    msg = str(err.value)
    assert msg.startswith("piqa.jsonl:1: cannot tell the format from the fields [goal, sol1]")
    for name in ALLOWED_FORMATS[1:]:
        assert name in msg


@pytest.mark.parametrize(
    ("roles", "ok"),
    [
        (["user", "assistant"], True),
        (["system", "user", "assistant", "user", "assistant"], True),
        (["assistant", "user"], False),
        (["user", "user", "assistant"], False),
        (["user", "assistant", "user"], False),
        (["user"], False),
        (["system", "system", "user", "assistant"], False),
        ([], False),
    ],
)
def test_check_turns(roles: list[str], ok: bool) -> None:
    assert check_turns([{"role": r, "content": "x"} for r in roles]) is ok  # type: ignore[misc]
