"""The registry names every task the schema allows, each loaded lazily by name, and the kind it
declares is the kind the task's own class declares."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

from raymix.config.schema import EVAL_TASK_NAMES
from raymix.errors import ConfigError
from raymix.eval.registry import TASKS, task_factory


def test_the_registry_has_every_schema_task() -> None:
    assert tuple(TASKS) == EVAL_TASK_NAMES


@pytest.mark.parametrize("name", sorted(TASKS))
def test_declared_kind_is_the_tasks_own(name: str) -> None:
    module = importlib.import_module(TASKS[name].target.partition(":")[0])
    classes = [
        c
        for c in vars(module).values()
        if dataclasses.is_dataclass(c)
        and isinstance(c, type)
        and {f.name: f.default for f in dataclasses.fields(c)}.get("name") == name
    ]
    assert len(classes) == 1, classes
    kinds = {f.name: f.default for f in dataclasses.fields(classes[0])}
    assert kinds["kind"] == TASKS[name].kind
    assert callable(task_factory(name))


def test_unknown_task_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="eval task 'bleu' is not available; allowed: heldout"):
        task_factory("bleu")


def test_task_modules_load_only_when_asked_for() -> None:
    code = (
        "import sys; import raymix.eval.registry; "
        "print(any(m.startswith(('raymix.eval.mt_bench', 'raymix.eval.harness', "
        "'raymix.eval.alpaca_eval')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
