"""The evaluation tasks by name, each loaded only when it is asked for.

Every entry names the module and factory that build the task and the task's kind; nothing here
imports a task module until :func:`task_factory` is called, and no task module imports this one,
so the registry and the tasks never import each other.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from raymix.config.schema import ExperimentConfig
from raymix.data.records import Record
from raymix.errors import ConfigError
from raymix.eval.protocol import Task, TaskFactory, TaskKind


@dataclass(frozen=True)
class TaskEntry:
    """Where a task's factory lives (``module:function``) and what kind of task it builds."""

    target: str
    kind: TaskKind


TASKS: dict[str, TaskEntry] = {
    "heldout": TaskEntry("raymix.eval.heldout:make_task", "generate"),
    "gsm8k": TaskEntry("raymix.eval.gsm8k:make_task", "generate"),
    "humaneval": TaskEntry("raymix.eval.humaneval:make_task", "generate"),
    "mt_bench": TaskEntry("raymix.eval.mt_bench:make_task", "judged"),
    "mt_bench_pairwise": TaskEntry("raymix.eval.mt_bench_pairwise:make_task", "judged"),
    "alpaca_eval": TaskEntry("raymix.eval.alpaca_eval:make_task", "judged"),
    "flask": TaskEntry("raymix.eval.flask_judge:make_task", "judged"),
    "harness": TaskEntry("raymix.eval.harness:make_task", "loglikelihood"),
}


def task_factory(name: str) -> TaskFactory:
    """The factory of task ``name``, imported now."""
    entry = TASKS.get(name)
    if entry is None:
        raise ConfigError(f"eval task {name!r} is not available; allowed: {', '.join(TASKS)}")
    module, _, attr = entry.target.partition(":")
    factory: TaskFactory = getattr(importlib.import_module(module), attr)
    return factory


def build_tasks(cfg: ExperimentConfig, heldout: dict[str, list[Record]]) -> list[Task]:
    """The configured tasks; ``heldout`` holds each source's held-out records."""
    return [task_factory(t.name)(t, cfg.eval, heldout) for t in cfg.eval.tasks]
