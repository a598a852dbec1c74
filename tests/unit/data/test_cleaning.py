"""Cleaning never loses rows without a word: emptied sub-tasks and large drops are warned about,
and the rows dropped per reason and the tokens cut by truncation reach the plan (manifest),
``raymix data mix`` (text and JSON) and each trial's MLflow params."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymix.cli import main
from raymix.config import validate
from raymix.config.schema import SourceConfig
from raymix.data.batches import encode
from raymix.data.mixture import build_plan
from raymix.data.pipeline import prepare_data
from raymix.data.sources import drop_warnings, load_records
from raymix.data.tokenizer import load_tokenizer
from tests.conftest import tiny_experiment

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _p3_rows(empty_task: str = "trec", n_ok: int = 100, n_empty: int = 4) -> list[dict[str, Any]]:
    """P3-style rows: sub-tasks ag_news and imdb answered, ``empty_task`` with every completion
    empty (only whitespace or the end-of-text marker), spread over two templates."""
    rows = []
    for i in range(n_ok):
        task = "ag_news" if i % 2 else "imdb"
        rows.append({"dataset": task, "template": f"t{i % 3}", "task_type": "x",
                     "prompt": f"{WORDS[i % 15]} question {i}?", "completion": f"answer {i}"})  # fmt: skip
    for i in range(n_empty):
        rows.append({"dataset": empty_task, "template": f"q{i % 2}", "task_type": "x",
                     "prompt": f"what kind of question is {i}?",
                     "completion": " <|endoftext|>" if i % 2 else "  "})  # fmt: skip
    return rows


def _source(path: Path, **kw: Any) -> SourceConfig:
    return SourceConfig(name="nlp", path=str(path), **kw)


def _cfg(tmp_path: Path, rows: list[dict[str, Any]], **train: Any):  # type: ignore[no-untyped-def]
    path = _jsonl(tmp_path / "data.jsonl", rows)
    raw = tiny_experiment(
        sources=[{"name": "nlp", "path": str(path), "ability": "nlp", "heldout": 4}],
        mixture={"grid": {"m": {"nlp": 1.0}}},
        train={"max_length": 64, **train},
    )
    return validate(raw, origin="test")


def test_an_emptied_sub_task_is_named(tmp_path: Path) -> None:
    out = load_records(_source(_jsonl(tmp_path / "p3.jsonl", _p3_rows()), format="p3"))
    assert out.cleaning == {
        "rows_read": 104,
        "dropped_bad_turns": 0,
        "dropped_empty": 4,
        "kept": 100,
    }
    assert out.lost_subtasks == {"trec": {"dropped_empty": 4}}  # not its templates again
    (warning,) = drop_warnings("nlp", out.cleaning, out.lost_subtasks)  # 4 % of the rows: no more
    assert "sub-task 'trec'" in warning and "4 rows: 4 empty response" in warning


def test_an_emptied_template_of_a_surviving_sub_task_is_named(tmp_path: Path) -> None:
    rows = _p3_rows(n_empty=0)
    rows += [{**r, "completion": ""} for r in rows[:3] if r["template"] == "t0"]
    rows += [{"dataset": "imdb", "template": "gone", "prompt": "p", "completion": " "}]
    out = load_records(_source(_jsonl(tmp_path / "p3.jsonl", rows)))  # auto-detected as p3
    assert out.lost_subtasks == {"imdb/gone": {"dropped_empty": 1}}


def test_an_emptied_flan_task_is_named(tmp_path: Path) -> None:
    # the FLAN collection's export: inputs/targets with _task_name and _template_idx
    rows = [
        {"inputs": f"q{i}", "targets": "" if i % 3 == 0 else f"a{i}", "_template_idx": i % 3,
         "_task_name": "cosmos_qa" if i % 3 == 0 else "anli_r1", "_task_source": "Flan2021"}
        for i in range(60)
    ]  # fmt: skip
    out = load_records(_source(_jsonl(tmp_path / "flan.jsonl", rows)))
    assert out.lost_subtasks == {"cosmos_qa": {"dropped_empty": 20}}
    assert out.records[0]["meta"]["_task_name"] == "anli_r1"


def test_the_sub_task_warning_is_printed_on_every_prepare(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(tmp_path, _p3_rows())
    for _ in range(2):  # the second time the token cache is only opened
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raymix"):
            _, _, sources = prepare_data(cfg)
        assert [r.getMessage() for r in caplog.records] == [
            "source 'nlp': cleaning dropped every row of sub-task 'trec' (4 rows: 4 empty "
            "response); it is not in the training data"
        ]
    assert sources["nlp"].lost_subtasks == {"trec": {"dropped_empty": 4}}
    plan = build_plan(cfg, "m", sources)
    assert plan.lost_subtasks == {"nlp": {"trec": {"dropped_empty": 4}}}
    assert plan.dropped == {"nlp": {"bad_turns": 0, "empty": 4, "overlong": 0, "contamination": 0}}


def test_more_than_five_percent_dropped_is_warned(tmp_path: Path) -> None:
    # 1 of 20 rows (5 %) is not above the line; 2 of 20 is
    rows = [{"instruction": f"say {i}", "output": f"{i}"} for i in range(20)]
    for empties, warned in ((1, False), (2, True)):
        path = _jsonl(
            tmp_path / f"a{empties}.jsonl",
            rows[: 20 - empties] + [{"instruction": "x", "output": " "}] * empties,
        )
        out = load_records(_source(path))
        msgs = drop_warnings("nlp", out.cleaning, out.lost_subtasks)
        assert bool(msgs) is warned
    assert msgs == [
        "source 'nlp': 2 of its 20 rows (10.0%) are dropped before sampling (2 empty response)"
    ]
    # rows dropped for being overlong count too, with their reason
    (msg,) = drop_warnings("nlp", {"rows_read": 100, "dropped_empty": 3}, {}, dropped_overlong=3)
    assert msg.endswith(
        "6 of its 100 rows (6.0%) are dropped before sampling (3 empty response, 3 longer than train.max_length)"
    )


def test_truncated_tokens_are_counted_exactly(tmp_path: Path) -> None:
    rows = [
        {"instruction": " ".join(WORDS[: 1 + i]) * (1 + i // 4), "output": f"ok {i}"}
        for i in range(15)
    ]
    cfg = _cfg(tmp_path, rows, max_length=48)
    spec, _, sources = prepare_data(cfg)
    tok = load_tokenizer(spec)
    records = load_records(cfg.sources[0]).records
    full = [len(e.input_ids) for e in encode(records, tok, cfg.template, max_length=sys.maxsize)]
    cut = [max(0, n - 48) for n in full]
    assert 0 < sum(cut) < sum(full) and 0 < sum(1 for c in cut if c) < len(rows)
    src = sources["nlp"]
    assert src.cache.meta["truncated_tokens"] == sum(cut)
    assert src.truncation() == {
        "tokens": sum(full),
        "truncated_tokens": sum(cut),
        "share": sum(cut) / sum(full),
    }
    plan = build_plan(cfg, "m", sources)
    assert plan.truncation["nlp"] == src.truncation()
    (part,) = plan.stages[0].sources.values()
    assert part.truncated_tokens == sum(cut[i] for i in part.row_ids)
    assert part.tokens == sum(full[i] - cut[i] for i in part.row_ids)

    dropped = build_plan(_cfg(tmp_path, rows, max_length=48, overlong="drop"), "m", sources)
    src2 = prepare_data(_cfg(tmp_path, rows, max_length=48, overlong="drop"))[2]["nlp"]
    assert src2.truncation()["truncated_tokens"] == 0  # dropped, not cut
    assert src2.dropped()["overlong"] == sum(1 for c in cut if c)
    assert dropped.max_length == 48


def test_data_mix_shows_drops_and_truncation(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(tmp_path, _p3_rows())
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["data", "mix", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    plan = build_plan(cfg, "m", prepare_data(cfg)[2])
    assert out["dropped"] == {
        "nlp": {"bad_turns": 0, "empty": 4, "overlong": 0, "contamination": 0}
    }
    assert out["lost_subtasks"] == {"nlp": {"trec": {"dropped_empty": 4}}}
    assert out["truncation"] == plan.truncation and out["truncation"]["nlp"]["tokens"] > 0
    assert main(["data", "mix", str(path)]) == 0
    text = capsys.readouterr().out
    t = plan.truncation["nlp"]
    assert (
        f"  nlp: dropped bad_turns 0, empty 4, overlong 0, contamination 0; truncated "
        f"{t['truncated_tokens']} of {t['tokens']} tokens ({100 * t['share']:.1f}%)\n"
        "    lost sub-task trec: dropped_empty 4\n"
    ) in text


def test_trial_params_carry_drops_and_truncation(tmp_path: Path) -> None:
    from raymix.sweep.driver import trial_params

    cfg = _cfg(tmp_path, _p3_rows())
    plan = build_plan(cfg, "m", prepare_data(cfg)[2])
    params = trial_params(cfg, plan)
    assert {k: v for k, v in params.items() if k.startswith("data.nlp.dropped.")} == {
        "data.nlp.dropped.bad_turns": 0,
        "data.nlp.dropped.empty": 4,
        "data.nlp.dropped.overlong": 0,
        "data.nlp.dropped.contamination": 0,
    }
    assert params["data.nlp.lost_subtasks"] == "trec"
    t = plan.truncation["nlp"]
    assert params["data.nlp.tokens"] == t["tokens"]
    assert params["data.nlp.truncated_tokens"] == t["truncated_tokens"]
    assert params["data.nlp.truncated_share"] == round(t["share"], 4)


# --- the real files in ../shared/data ------------------------------------------------------------


@pytest.mark.shared_data
def test_real_p3_subset_names_trec(shared_data: Path) -> None:
    path = shared_data / "p3_t0_train/p3_t0_train_subset_3700.jsonl"
    out = load_records(_source(path, format="p3"))
    assert out.lost_subtasks == {"trec": {"dropped_empty": 100}}
    (msg,) = drop_warnings("p3", out.cleaning, out.lost_subtasks)
    assert "sub-task 'trec' (100 rows: 100 empty response)" in msg


@pytest.mark.shared_data
def test_real_sharegpt_subset_reports_its_truncated_share(shared_data: Path) -> None:
    """ShareGPT's conversations are long: at max length 1024 with the builtin BPE (512 tokens,
    vicuna template) truncation cuts 69 % of its tokens (12,578,203 of 18,196,089), which the plan
    now says."""
    raw = tiny_experiment(
        sources=[
            {
                "name": "sharegpt",
                "path": str(shared_data / "sharegpt/sharegpt_v3_cleaned_subset_6k.json.gz"),
                "format": "sharegpt",
                "heldout": 64,
            }
        ],
        template="vicuna",
        mixture={"grid": {"m": {"sharegpt": 100}}},
        train={"max_length": 1024},
    )
    cfg = validate(raw, origin="test")
    plan = build_plan(cfg, "m", prepare_data(cfg)[2])
    t = plan.truncation["sharegpt"]
    assert t["truncated_tokens"] == prepare_data(cfg)[2]["sharegpt"].cache.meta["truncated_tokens"]
    assert 0.6 < t["share"] < 0.8, t
