"""A table of bad inputs, each given to the real command line as a user would: every one is one
clear error (exit code 2, one message naming the file, key or line and what is allowed, no
traceback) that comes before any compute and leaves no new file in the token cache, the run
folder or next to the inputs.

Each row runs ``python -m raymix`` in a folder of its own with its own ``$RAYMIX_CACHE``; the
rows run two at a time in one fixture (none starts Ray, trains or runs generated code), and each
row is its own test. Add rows to ``CASES``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymix.data.files import MAX_LINE_CHARS
from tests.conftest import ROOT, tiny_experiment

Files = dict[str, str | Callable[[], str]]


@dataclass(frozen=True)
class Case:
    """One bad input: the arguments after ``raymix``, the files the folder holds first, and the
    words the error message must carry (the file, key or line, and what is allowed)."""

    id: str
    argv: list[str]
    files: Files = field(default_factory=dict)
    expect: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _jsonl(*rows: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _yaml(**overrides: Any) -> str:
    return yaml.safe_dump(tiny_experiment(**overrides))


def _strategy(strategy: dict[str, Any], **overrides: Any) -> str:
    return _yaml(strategy=strategy, **overrides)


def _huge_line() -> str:
    return json.dumps({"instruction": "x" * (MAX_LINE_CHARS + 10), "output": "y"}) + "\n"


REFS = _jsonl(*({"question": f"q{i}", "answer": f"w\n#### {i}"} for i in range(4)))
PROBLEMS = _jsonl(
    *(
        {
            "task_id": f"t/{i}",
            "prompt": "def f(x):\n",
            "test": "def check(f):\n    assert f(1) == 2\n",
            "entry_point": "f",
        }
        for i in range(3)
    )
)
GSM = ["eval", "gsm8k", "--predictions", "preds.jsonl", "--references", "refs.jsonl"]
HE = ["eval", "humaneval", "--samples", "samples.jsonl", "--problems", "problems.jsonl"]


def _preds(*idx: Any) -> str:
    return _jsonl(*({"idx": i, "output": "#### 1"} for i in idx))


def _samples(*task_ids: str) -> str:
    return _jsonl(*({"task_id": t, "completion": "    return x + 1\n"} for t in task_ids))


ALL_GENERAL = [
    {"name": "a", "path": "synthetic:math", "size": 60, "heldout": 8},
    {"name": "b", "path": "synthetic:general", "size": 60, "heldout": 8},
]
SMALL = [
    {"name": "math", "path": "synthetic:math", "ability": "math", "size": 60, "heldout": 8},
    {"name": "chat", "path": "synthetic:general", "ability": "general", "size": 60, "heldout": 8},
]
SMALL_GRID = {"grid": {"both": {"math": 40, "chat": 40}}}

CASES = [
    # --- eval files: gsm8k -------------------------------------------------------------------
    Case(
        "gsm8k-missing-references",
        GSM,
        {"preds.jsonl": _preds(0, 2), "refs.jsonl": REFS},
        ("preds.jsonl", "2 of the 4 references", "idx 1, 3", "--allow-partial"),
    ),
    Case(
        "gsm8k-empty-file",
        GSM,
        {"preds.jsonl": "", "refs.jsonl": REFS},
        ("preds.jsonl", "empty file", "idx 0..3"),
    ),
    Case(
        "gsm8k-empty-file-allow-partial",
        [*GSM, "--allow-partial"],
        {"preds.jsonl": "\n\n", "refs.jsonl": REFS},
        ("preds.jsonl", "empty file"),
    ),
    Case(
        "gsm8k-duplicate-idx",
        [*GSM, "--allow-partial"],
        {"preds.jsonl": _preds(0, 1, 1, 2, 3), "refs.jsonl": REFS},
        ("preds.jsonl:3", "idx 1 repeats line 2"),
    ),
    Case(
        "gsm8k-idx-out-of-range",
        GSM,
        {"preds.jsonl": _preds(0, 9), "refs.jsonl": REFS},
        ("preds.jsonl:2", "idx 9", "0..3"),
    ),
    Case(
        "gsm8k-idx-not-an-int",
        GSM,
        {"preds.jsonl": _preds("0"), "refs.jsonl": REFS},
        ("preds.jsonl:1", "idx '0'", "0..3"),
    ),
    Case(
        "gsm8k-no-output",
        GSM,
        {"preds.jsonl": _jsonl({"idx": 0, "text": "1"}), "refs.jsonl": REFS},
        ("preds.jsonl:1", "'output'"),
    ),
    Case(
        "gsm8k-malformed-json",
        GSM,
        {"preds.jsonl": '{"idx": 0, "output": "1"}\n{"idx": 1, \n', "refs.jsonl": REFS},
        ("preds.jsonl:2", "malformed JSON", "one JSON object per line"),
    ),
    Case(
        "gsm8k-row-not-an-object",
        GSM,
        {"preds.jsonl": "[0, 1]\n", "refs.jsonl": REFS},
        ("preds.jsonl:1", "expected a JSON object"),
    ),
    Case(
        "gsm8k-huge-line",
        GSM,
        {"preds.jsonl": _huge_line, "refs.jsonl": REFS},
        ("preds.jsonl:1", f"at most {MAX_LINE_CHARS:,}"),
    ),
    Case(
        "gsm8k-empty-references",
        GSM,
        {"preds.jsonl": _preds(0), "refs.jsonl": ""},
        ("refs.jsonl", "no references"),
    ),
    Case(
        "gsm8k-no-such-predictions-file",
        GSM,
        {"refs.jsonl": REFS},
        ("preds.jsonl", "cannot read"),
    ),
    Case(
        "gsm8k-without-predictions-flag",
        ["eval", "gsm8k", "--references", "refs.jsonl"],
        {"refs.jsonl": REFS},
        ("--predictions",),
    ),
    # --- eval files: humaneval (all refused before any sample runs) -------------------------
    Case(
        "humaneval-missing-problems",
        HE,
        {"samples.jsonl": _samples("t/0", "t/2"), "problems.jsonl": PROBLEMS},
        ("samples.jsonl", "1 of the 3 problems", "t/1", "--allow-partial"),
    ),
    Case(
        "humaneval-uneven-samples",
        HE,
        {"samples.jsonl": _samples("t/0", "t/0", "t/1", "t/2"), "problems.jsonl": PROBLEMS},
        ("samples.jsonl", "uneven samples", "t/1 (1)", "t/2 (1)", "--allow-partial"),
    ),
    Case(
        "humaneval-empty-file",
        HE,
        {"samples.jsonl": "", "problems.jsonl": PROBLEMS},
        ("samples.jsonl", "empty file", "3 problems"),
    ),
    Case(
        "humaneval-unknown-task",
        [*HE, "--allow-partial"],
        {"samples.jsonl": _samples("t/0", "HumanEval/7"), "problems.jsonl": PROBLEMS},
        ("samples.jsonl:2", "'HumanEval/7'", "t/0"),
    ),
    Case(
        "humaneval-no-completion",
        HE,
        {"samples.jsonl": _jsonl({"task_id": "t/0", "code": "x"}), "problems.jsonl": PROBLEMS},
        ("samples.jsonl:1", "'completion'"),
    ),
    Case(
        "humaneval-problem-without-test",
        HE,
        {
            "samples.jsonl": _samples("t/0"),
            "problems.jsonl": _jsonl({"task_id": "t/0", "prompt": "", "entry_point": "f"}),
        },
        ("problems.jsonl", "test"),
    ),
    Case(
        "humaneval-empty-problems",
        HE,
        {"samples.jsonl": _samples("t/0"), "problems.jsonl": ""},
        ("problems.jsonl", "no problems"),
    ),
    Case(
        "eval-unknown-task-without-run",
        ["eval", "mmlu"],
        {},
        ("mmlu", "--run", "gsm8k"),
    ),
    # --- data files ---------------------------------------------------------------------------
    Case(
        "prepare-huge-line",
        ["data", "prepare", "big.jsonl", "--out", "out"],
        {"big.jsonl": _huge_line},
        ("big.jsonl:1", "characters", f"at most {MAX_LINE_CHARS:,}"),
    ),
    Case(
        "validate-source-with-huge-line",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                sources=[{"name": "big", "path": "big.jsonl", "format": "alpaca", "heldout": 1}],
                mixture={"grid": {"all": {"big": 1.0}}},
            ),
            "big.jsonl": lambda: _jsonl({"instruction": "hi", "output": "yo"}) + _huge_line(),
        },
        ("big.jsonl:2", f"at most {MAX_LINE_CHARS:,}"),
    ),
    # --- configs: strategies that would do nothing --------------------------------------------
    Case(
        "sequential-one-source",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"name": "sequential"}, mixture={"grid": {"m": {"math": 100}}})},
        ("exp.yaml", "sequential over one source (math)", "multitask"),
    ),
    Case(
        "sequential-order-one-group",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"name": "sequential", "order": [["math", "code"]]})},
        ("exp.yaml", "strategy.order", "two or more groups"),
    ),
    Case(
        "sequential-order-misses-a-source",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"name": "sequential", "order": [["math"]]})},
        ("exp.yaml", "strategy.order", "code", "in no stage"),
    ),
    Case(
        "dmt-every-source-specialised",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"name": "dmt"})},
        ("exp.yaml", "every source", "math: math, code: code", "replay", "strategy.specialised"),
    ),
    Case(
        "dmt-no-source-specialised",
        ["validate", "--schema-only", "exp.yaml"],
        {
            "exp.yaml": _strategy(
                {"name": "dmt"}, sources=ALL_GENERAL, mixture={"grid": {"x": {"a": 10, "b": 10}}}
            )
        },
        ("exp.yaml", "no source", "a: general", "replay"),
    ),
    Case(
        "mixed-sequential-specialised-everything",
        ["validate", "--schema-only", "exp.yaml", "--set", "strategy.specialised=[math, chat]"],
        {"exp.yaml": _strategy({"name": "mixed_sequential"}, sources=SMALL, mixture=SMALL_GRID)},
        ("exp.yaml", "strategy.specialised", "mixed_sequential is one stage"),
    ),
    Case(
        "dmt-k-zero",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"name": "dmt", "k": 0}, sources=SMALL, mixture=SMALL_GRID)},
        ("exp.yaml", "strategy.k", "0 < k <= 1", "mixed_sequential"),
    ),
    Case(
        "multitask-with-stage-epochs",
        ["validate", "--schema-only", "exp.yaml"],
        {"exp.yaml": _strategy({"epochs": [1, 2]})},
        ("exp.yaml", "strategy.epochs", "one stage"),
    ),
    Case(
        "searched-sequential-order-misses-a-source",
        ["validate", "--schema-only", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                strategy={"order": [["code"]]},
                sweep={"space": {"strategy.name": {"choice": ["multitask", "sequential"]}}},
            )
        },
        ("exp.yaml", "strategy.order", "math", "in no stage"),
    ),
    # --- nothing before the first error: the token cache stays empty --------------------------
    Case(
        "data-mix-unknown-mixture",
        ["data", "mix", "exp.yaml", "--mixture", "nosuch"],
        {"exp.yaml": _yaml()},
        ("exp.yaml", "--mixture 'nosuch'", "allowed: both, math"),
    ),
    Case(
        "data-mix-max-length-too-small",
        ["data", "mix", "exp.yaml", "--set", "train.max_length=4"],
        {"exp.yaml": _yaml(sources=SMALL, mixture=SMALL_GRID)},
        ("train.max_length", "4 tokens", "at least"),
    ),
    Case(
        "data-mix-max-length-too-small-drop",
        ["data", "mix", "exp.yaml", "--set", "train.max_length=2", "--set", "train.overlong=drop"],
        {"exp.yaml": _yaml(sources=SMALL, mixture=SMALL_GRID)},
        ("train.max_length", "at least"),
    ),
    Case(
        "data-mix-heldout-above-builtin-size",
        ["data", "mix", "exp.yaml", "--set", "sources.1.heldout=60"],
        {"exp.yaml": _yaml(sources=SMALL, mixture=SMALL_GRID)},
        ("sources.chat.heldout", "60 held-out rows", "of the 60"),
    ),
    Case(
        "data-mix-heldout-above-file-rows",
        ["data", "mix", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                sources=[
                    SMALL[0],
                    {"name": "f", "path": "f.jsonl", "format": "alpaca", "heldout": 3},
                ],
                mixture={"grid": {"x": {"math": 10, "f": 1}}},
            ),
            "f.jsonl": _jsonl(*({"instruction": f"i{i}", "output": "o"} for i in range(3))),
        },
        ("sources.f.heldout", "3 held-out rows", "of the 3"),
    ),
    # --- checked before the sweep starts: model, tokenizer, judge key, tracking server ---------
    Case(
        "sweep-model-path-missing",
        ["sweep", "exp.yaml"],
        {"exp.yaml": _yaml(model={"name": "./models/nope"})},
        ("model.name", "no such folder './models/nope'", "hub id"),
    ),
    Case(
        "validate-model-folder-without-config",
        ["validate", "exp.yaml", "--set", "model.name=."],
        {"exp.yaml": _yaml()},
        ("model.name", "has no config.json", "local folder"),
    ),
    Case(
        "sweep-model-hub-id-not-cached-offline",
        ["sweep", "exp.yaml", "--set", "model.name=raymix-test/no-such-model"],
        {"exp.yaml": _yaml()},
        ("model.name", "raymix-test/no-such-model", "HF_HUB_OFFLINE"),
    ),
    Case(
        "validate-model-hub-unreachable",
        ["validate", "exp.yaml", "--set", "model.name=raymix-test/no-such-model"],
        {"exp.yaml": _yaml()},
        ("model.name", "the hub could not be asked", "local folder"),
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
    ),
    Case(
        "sweep-tokenizer-path-missing",
        ["sweep", "exp.yaml", "--set", "tokenizer.name=~/no-such-tokenizer"],
        {"exp.yaml": _yaml()},
        ("tokenizer.name", "no such folder", "hub id"),
    ),
    Case(
        "sweep-judge-key-unset",
        ["sweep", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                eval={
                    "tasks": [
                        {
                            "name": "mt_bench",
                            "path": "question.jsonl",
                            "judge": {
                                "base_url": "http://127.0.0.1:9/v1",
                                "model": "judge",
                                "api_key_env": "RAYMIX_TEST_UNSET_KEY",
                            },
                        }
                    ]
                }
            )
        },
        ("eval.tasks.0.judge.api_key_env", "RAYMIX_TEST_UNSET_KEY", "not set"),
    ),
    Case(
        "sweep-tracking-server-down",
        ["sweep", "exp.yaml", "--set", "tracking.uri=http://127.0.0.1:9"],
        {"exp.yaml": _yaml()},
        ("tracking.uri http://127.0.0.1:9", "no MLflow tracking server answers", "mlflow server"),
    ),
    Case(
        "validate-tracking-server-down",
        ["validate", "exp.yaml", "--set", "tracking.uri=https://127.0.0.1:9/"],
        {"exp.yaml": _yaml()},
        ("tracking.uri", "no MLflow tracking server answers"),
    ),
    Case(
        "eval-humaneval-repeated-problem",
        HE,
        {
            "problems.jsonl": PROBLEMS + PROBLEMS.splitlines(keepends=True)[1],
            "samples.jsonl": _samples("t/0", "t/1", "t/2"),
        },
        ("problems.jsonl:4", "t/1", "line 2"),
    ),
    # --- experiment files and --set ---------------------------------------------------------
    Case(
        "validate-unknown-top-level-key",
        ["validate", "exp.yaml"],
        {"exp.yaml": _yaml(trian={"lr": 1})},
        ("trian", "unknown key"),
    ),
    Case(
        "validate-wrong-type",
        ["validate", "exp.yaml", "--set", "train.lr=fast"],
        {"exp.yaml": _yaml()},
        ("train.lr",),
    ),
    Case(
        "validate-negative-lr",
        ["validate", "exp.yaml", "--set", "train.lr=-1"],
        {"exp.yaml": _yaml()},
        ("train.lr",),
    ),
    Case(
        "validate-set-without-equals",
        ["validate", "exp.yaml", "--set", "train.lr"],
        {"exp.yaml": _yaml()},
        ("--set 'train.lr'", "dotted.key=value"),
    ),
    Case(
        "validate-set-unknown-key",
        ["validate", "exp.yaml", "--set", "train.nosuch=1"],
        {"exp.yaml": _yaml()},
        ("train.nosuch",),
    ),
    Case("validate-no-such-file", ["validate", "nosuch.yaml"], {}, ("nosuch.yaml", "no such file")),
    Case(
        "validate-yaml-syntax",
        ["validate", "exp.yaml"],
        {"exp.yaml": "name: [unclosed\nseed: 0\n"},
        ("exp.yaml", "line 2", "invalid YAML"),
    ),
    Case(
        "validate-mixture-unknown-source",
        ["validate", "exp.yaml"],
        {"exp.yaml": _yaml(mixture={"grid": {"x": {"nosuch": 10}}})},
        ("mixture.grid.x", "nosuch", "allowed: math, code"),
    ),
    Case(
        "validate-source-file-missing",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                sources=[{"name": "f", "path": "missing.jsonl", "format": "alpaca"}],
                mixture={"grid": {"x": {"f": 10}}},
            )
        },
        ("sources.f.path", "missing.jsonl", "no such file"),
    ),
    Case(
        "validate-source-malformed-json",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                sources=[{"name": "f", "path": "f.jsonl", "format": "alpaca", "heldout": 0}],
                mixture={"grid": {"x": {"f": 1}}},
            ),
            "f.jsonl": _jsonl({"instruction": "a", "output": "b"}) + "{bad\n",
        },
        ("f.jsonl:2", "malformed JSON"),
    ),
    Case(
        "validate-dirichlet-negative",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                mixture={"space": {"weights": {"dirichlet": -1}, "amount": {"fixed": 100}}}
            )
        },
        ("mixture.space",),
    ),
    Case(
        "validate-min-shares-above-one",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                mixture={
                    "space": {
                        "weights": {"dirichlet": 1},
                        "min_share": {"math": 0.7, "code": 0.6},
                        "amount": {"fixed": 100},
                    }
                }
            )
        },
        ("mixture.space",),
    ),
    Case(
        "validate-grid-and-space",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                mixture={
                    "grid": {"a": {"math": 10}},
                    "space": {"weights": {"dirichlet": 1}, "amount": {"fixed": 100}},
                }
            )
        },
        ("mixture",),
    ),
    Case(
        "validate-scheduler-on-training-loss",
        ["validate", "exp.yaml"],
        {
            "exp.yaml": _yaml(
                train={"eval_every": 5},
                sweep={"scheduler": {"name": "asha", "metric": "train/loss"}},
            )
        },
        ("sweep.scheduler", "train/loss"),
    ),
    Case(
        "validate-scheduler-without-evaluations",
        ["validate", "exp.yaml"],
        {"exp.yaml": _yaml(sweep={"scheduler": {"name": "asha"}})},
        ("sweep.scheduler", "train.eval_every"),
    ),
    Case(
        "validate-unknown-eval-task",
        ["validate", "exp.yaml"],
        {"exp.yaml": _yaml(eval={"tasks": [{"name": "nosuch"}]})},
        ("eval",),
    ),
    Case(
        "validate-unknown-flag",
        ["validate", "exp.yaml", "--nosuch"],
        {"exp.yaml": _yaml()},
        ("unrecognized arguments: --nosuch",),
    ),
    Case(
        "data-mix-sample-zero",
        ["data", "mix", "exp.yaml", "--sample", "0"],
        {"exp.yaml": _yaml()},
        ("--sample", "at least 1", "'0'"),
    ),
    # --- data prepare flags --------------------------------------------------------------------
    Case(
        "prepare-no-such-file",
        ["data", "prepare", "nope.jsonl", "--out", "o"],
        {},
        ("nope.jsonl: no such file",),
    ),
    Case(
        "prepare-bad-splits",
        ["data", "prepare", "f.jsonl", "--out", "o", "--splits", "0.5,0.5"],
        {"f.jsonl": _jsonl({"instruction": "a", "output": "b"})},
        ("--splits '0.5,0.5'", "three fractions"),
    ),
    Case(
        "prepare-unknown-format",
        ["data", "prepare", "f.jsonl", "--out", "o", "--format", "nosuch"],
        {"f.jsonl": _jsonl({"instruction": "a", "output": "b"})},
        ("format 'nosuch'", "allowed: auto, alpaca"),
    ),
    Case(
        "prepare-unknown-template",
        ["data", "prepare", "f.jsonl", "--out", "o", "--template", "nosuch"],
        {"f.jsonl": _jsonl({"instruction": "a", "output": "b"})},
        ("template 'nosuch'", "allowed: plain, alpaca"),
    ),
    # --- sweep flags and environment ----------------------------------------------------------
    Case(
        "sweep-resume-without-state",
        ["sweep", "exp.yaml", "--resume", "runs/nope"],
        {"exp.yaml": _yaml()},
        ("--resume", "runs/nope", "no Tune experiment state"),
    ),
    Case(
        "sweep-tracking-server-down-from-environment",
        ["sweep", "exp.yaml"],
        {"exp.yaml": _yaml()},
        ("tracking.uri http://127.0.0.1:9", "mlflow server"),
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    ),
    Case(
        "data-mix-sample-with-grid",
        ["data", "mix", "exp.yaml", "--sample", "2"],
        {"exp.yaml": _yaml()},
        ("exp.yaml", "--sample", "mixture.grid"),
    ),
]


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess[str]
    before: set[str]
    after: set[str]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run(case: Case, folder: Path) -> Outcome:
    work, cache = folder / "work", folder / "cache"
    work.mkdir(parents=True)
    cache.mkdir()
    for name, body in case.files.items():
        (work / name).write_text(body() if callable(body) else body)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAYMIX_CACHE": str(cache),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **case.env,
    }
    before = _files(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", *case.argv],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Outcome(proc, before, _files(folder))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every row run once, two at a time (each a cheap process that must stop before compute)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(_run, c, root / c.id) for c in CASES}
        return {k: f.result() for k, f in futures.items()}


def test_the_table_has_distinct_rows() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, outcomes: dict[str, Outcome]) -> None:
    out = outcomes[case.id]
    err = out.proc.stderr
    assert out.proc.returncode == 2, (out.proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert out.proc.stdout == ""
    lines = [line for line in err.splitlines() if re.match(r"raymix( [a-z]+)*: error:", line)]
    assert len(lines) == 1, err
    for word in case.expect:
        assert word in lines[0], (word, lines[0])
    assert out.after == out.before, sorted(out.after - out.before)
