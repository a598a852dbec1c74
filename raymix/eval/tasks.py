"""Transitional: the protocol lives in :mod:`raymix.eval.protocol`, the registry in
:mod:`raymix.eval.registry`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raymix.eval.protocol import Request, Task, TaskFactory, answer_all
from raymix.eval.registry import build_tasks, task_factory

__all__ = ["Request", "Task", "answer_all", "build_tasks", "register", "task_factory"]


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """No-op: tasks are listed in :data:`raymix.eval.registry.TASKS`."""

    def deco(factory: Any) -> Any:
        return factory

    return deco
