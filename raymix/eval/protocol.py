"""The evaluation protocol: what a task is, what it asks and what it returns.

A task turns into requests (chat messages to answer, plus what scoring needs) and scores the
generated answers: ``metrics`` named ``<task or source>/<metric>`` (logged as ``eval/...``) and
per-sample rows (logged as a jsonl artifact). Generation is the caller's: in a trial every rank
generates its shard of the requests on the final model; ``raymix eval TASK --run`` does it on a
trial's saved checkpoint. Like lm-evaluation-harness's ``output_type``, every task declares its
:data:`TaskKind`, which tells the caller how to run it.

This module imports no task: tasks import it, and :mod:`raymix.eval.registry` finds them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from raymix.config.schema import EvalConfig, EvalTaskConfig
from raymix.data.records import Message, Record

TaskKind = Literal["generate", "judged", "loglikelihood"]
"""How a task is run. ``generate``: the model answers every request, a rule scores each answer
(exact match, unit tests in the sandbox). ``judged``: the model answers, an LLM judge scores.
``loglikelihood``: the task scores the model itself (lm-evaluation-harness multiple choice) with
``run_on_model(model, tokenizer)`` on one process; it has no requests."""

Metrics = dict[str, float]
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Request:
    """One prompt to answer, and what its score needs."""

    messages: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """What every evaluation task provides. A multi-turn task (MT-Bench) may also define
    ``next_round(outputs, requests) -> list[Request]``: the follow-up requests built from the
    answers so far (empty when done); ``score`` then gets every round's outputs and requests."""

    name: str
    kind: TaskKind

    def requests(self) -> list[Request]: ...

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[Metrics, Rows]: ...


class ModelTask(Task, Protocol):
    """A ``loglikelihood`` task: it scores the model itself, on one process."""

    def run_on_model(self, model: Any, tokenizer: Any) -> tuple[Metrics, Rows]: ...


TaskFactory = Callable[[EvalTaskConfig, EvalConfig, dict[str, list[Record]]], Task]
"""Builds a task from its config, the eval config and each source's held-out records."""

Answer = Callable[[list[Request]], list[str]]


def answer_all(task: Task, answer: Answer) -> tuple[list[str], list[Request]]:
    """Every round of ``task`` answered by ``answer`` (the caller's generation), in order."""
    outputs: list[str] = []
    requests: list[Request] = []
    pending = task.requests()
    while pending:
        got = answer(pending)
        outputs += got
        requests += pending
        follow = getattr(task, "next_round", None)
        pending = follow(got, pending) if follow else []
    return outputs, requests
