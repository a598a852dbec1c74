"""FLASK fine-grained skill scores (Ye et al. 2023, kaistAI/FLASK) by a judge behind any
OpenAI-compatible endpoint.

Every FLASK instance names 3 of its 12 skills. The model answers the instruction; the judge gets
FLASK's review prompt (``review_prompt.jsonl``: prompt 2, with the ground-truth answer, which
FLASK's ``gpt_review/gpt4_eval.py`` uses; prompt 1 for an instance without one), with each of the
instance's skills written in as ``gen_prompt`` writes it: ``<Skill>: <Criteria>`` then ``Score 1:``
to ``Score 5:`` from ``skillset_description.json``. The prompt asks for feedback per skill and,
lastly, "a Python dictionary object that has skillset names as keys and the corresponding scores
as values"; :func:`parse_scores` reads it as FLASK's ``parse_score`` does, and more robustly.

The judge's sampling settings are FLASK's reviewer file's (temperature 0.2, max_tokens 1024: the
defaults of the task's ``judge``), and each instance is judged ``judge.runs`` times. Metrics, with
each skill named as FLASK's ``aggregate_skill.py`` names it (``robustness``, ``correctness``,
``efficiency``, ``factuality``, ``commonsense``, ``comprehension``, ``insightfulness``,
``completeness``, ``metacognition``, ``readability``, ``conciseness``, ``harmlessness``):
``flask/<skill>`` the mean 1-5 score of the instances that have that skill, ``flask/score`` the
mean over every (instance, skill) score (each a mean over runs of that run's mean, as MT-Bench's);
``flask/unparsable`` the (instance, skill, run) scores the judgement did not give (left out of the
means, never read as 0) and ``flask/not_applicable`` those it gave as N/A (left out, as FLASK
leaves them out).
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymix.config.eval_schema import FlaskTaskConfig
from raymix.config.schema import EvalConfig
from raymix.data.files import read_jsonl, read_text
from raymix.data.records import Message, Record
from raymix.errors import DataError
from raymix.eval.judge_client import Chat, JudgeClient, client_for
from raymix.eval.protocol import Request, Task, TaskKind

__all__ = [
    "NOT_APPLICABLE",
    "SKILL_KEYS",
    "FlaskTask",
    "Instance",
    "load_instances",
    "parse_scores",
    "skill_key",
    "skills_text",
]

HARD_FILE = "flask_hard_evaluation.jsonl"
PROMPT_FILE = "review_prompt.jsonl"
SKILLSET_FILE = "skillset_description.json"
WITHOUT_REFERENCE, WITH_REFERENCE = 1, 2
"""``prompt_id`` of FLASK's review prompts without and with the ground-truth answer."""

SKILL_KEYS = (
    "robustness",
    "correctness",
    "efficiency",
    "factuality",
    "commonsense",
    "comprehension",
    "insightfulness",
    "completeness",
    "metacognition",
    "readability",
    "conciseness",
    "harmlessness",
)
"""The 12 skills as FLASK's ``aggregate_skill.py`` names and orders them."""

NOT_APPLICABLE = "N/A"
"""A skill the judge scored as not applicable (FLASK's ``parse_score`` reads n/a, na and not
applicable so)."""

_NA_WORDS = frozenset({"n/a", "na", "not applicable"})
_DICT = re.compile(r"{[^}]+}")  # FLASK's parse_score
_VALUE = r"""["']?\s*(\d+(?:\.\d+)?|n/?a\b|not applicable)\s*(?:/\s*5)?\s*["']?"""
_PAIR = re.compile(r"""["']?([A-Za-z][A-Za-z _-]*?)["']?\s*:\s*""" + _VALUE, re.IGNORECASE)
_LINE = re.compile(
    r"""[\s\-*#>'"`]*([A-Za-z][A-Za-z _-]*?)[\s*'"`]*:\s*\**""" + _VALUE + r"""\**\.?""",
    re.IGNORECASE,
)

_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")  # what MLflow refuses in a metric name

Score = float | str | None
"""A skill's score: 1-5, :data:`NOT_APPLICABLE`, or None where the judgement gave none."""


def skill_key(name: str) -> str:
    """A skill's short name as FLASK's ``aggregate_skill.py`` keys it: lowercased, ``_`` read as
    a space, the second word of a "logical" skill and the first word of any other."""
    words = name.replace("_", " ").replace("-", " ").lower().split()
    if len(words) > 1 and words[0] == "logical":
        return words[1]
    return words[0] if words else ""


def _as_score(value: Any) -> Score:
    """A dictionary value as a score: a number in 1-5, N/A, or None (anything else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NA_WORDS:
            return NOT_APPLICABLE
        try:
            value = float(text)
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 1.0 <= number <= 5.0 else None


def _judged_values(judgment: str) -> dict[str, Any]:
    """The judgement's skill -> value pairs, keyed by :func:`skill_key`.

    FLASK's ``parse_score``: the last ``{...}``, newlines dropped, ``_`` as a space, lowercased,
    read by :func:`ast.literal_eval`. Where that is no dictionary (unquoted keys, ``4/5``), its
    ``key: value`` pairs are read one by one; where there are no braces at all, lines that are a
    skill and a score alone (``Readability: 4``, ``- **Conciseness**: 5/5``).
    """
    spans = _DICT.findall(judgment)
    if spans:
        text = spans[-1].replace("\n", "").replace("_", " ").lower()
        try:
            got = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            got = None
        if isinstance(got, dict):
            return {skill_key(str(k)): v for k, v in got.items()}
        pairs = _PAIR.findall(spans[-1])
    else:
        lines = judgment.splitlines()
        pairs = [m.groups() for line in lines if (m := _LINE.fullmatch(line.strip()))]
    return {skill_key(k): v for k, v in pairs}


def parse_scores(judgment: str, skills: Sequence[str]) -> dict[str, Score]:
    """Each of ``skills`` (FLASK skill names) scored in ``judgment``: 1-5, :data:`NOT_APPLICABLE`,
    or None where the judgement gives it no score (missing, unreadable, outside 1-5).

    A key matches a skill by :func:`skill_key` (``"logical_correctness"``, ``"Correctness"`` and
    ``"Logical Correctness"`` all match Logical Correctness); keys of other skills are ignored.
    """
    values = _judged_values(judgment)
    return {s: _as_score(values[skill_key(s)]) if skill_key(s) in values else None for s in skills}


# ------------------------------------------------------------------------------ FLASK's files


@dataclass(frozen=True)
class Instance:
    """One FLASK instance: its id, instruction, reference answer and the skills it is scored on
    (FLASK's skill names, as ``skillset_description.json`` spells them)."""

    idx: Any
    instruction: str
    reference: str
    skills: list[str]
    task: str = ""
    domain: list[str] | None = None
    difficulty: str = ""


def load_rubrics(folder: Path) -> dict[str, dict[str, Any]]:
    """``skillset_description.json``: each skill's Skill, Criteria and Scoring (1-5), by name."""
    path = folder / SKILLSET_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no {SKILLSET_FILE} (FLASK's skill rubrics)")
    try:
        skills = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    rubrics = {}
    for i, s in enumerate(skills if isinstance(skills, list) else [], 1):
        scoring = s.get("Scoring") if isinstance(s, dict) else None
        if not (
            isinstance(s, dict)
            and isinstance(s.get("Skill"), str)
            and isinstance(s.get("Criteria"), str)
            and isinstance(scoring, dict)
            and all(isinstance(scoring.get(k), str) for k in "12345")
        ):
            raise DataError(f"{path}: skill {i}: expected Skill, Criteria and Scoring '1'..'5'")
        rubrics[s["Skill"]] = s
    if not rubrics:
        raise DataError(f"{path}: expected a JSON list of skills")
    return rubrics


def load_prompts(folder: Path) -> dict[int, dict[str, Any]]:
    """``review_prompt.jsonl`` by ``prompt_id`` (1 without, 2 with the ground-truth answer)."""
    path = folder / PROMPT_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no {PROMPT_FILE} (FLASK's judge prompts)")
    prompts = {p["prompt_id"]: p for p in read_jsonl(path) if isinstance(p.get("prompt_id"), int)}
    for pid in (WITHOUT_REFERENCE, WITH_REFERENCE):
        p = prompts.get(pid)
        if p is None or not all(
            isinstance(p.get(k), str) for k in ("system_prompt", "prompt_template")
        ):
            raise DataError(f"{path}: no prompt_id {pid} with system_prompt and prompt_template")
    return prompts


def _resolve_skill(label: str, rubrics: dict[str, dict[str, Any]]) -> str | None:
    """The rubric a skill label names: exact, else the first whose name contains it (FLASK's
    ``gen_prompt`` matches ``label in skill["Skill"]``)."""
    if label in rubrics:
        return label
    return next((name for name in rubrics if label in name), None)


def load_instances(
    path: Path, limit: int | None, rubrics: dict[str, dict[str, Any]]
) -> list[Instance]:
    """The first ``limit`` instances of a FLASK evaluation file, skills resolved to rubrics."""
    if not path.is_file():
        raise DataError(f"{path}: no such FLASK evaluation file")
    instances = []
    for i, row in enumerate(read_jsonl(path)[:limit], 1):
        labels = row.get("skill")
        if "idx" not in row or not isinstance(row.get("instruction"), str):
            raise DataError(f"{path}: row {i}: a FLASK instance needs idx and instruction")
        if (
            not labels
            or not isinstance(labels, list)
            or not all(isinstance(s, str) for s in labels)
        ):
            raise DataError(f"{path}: row {i}: skill must be a list of skill names")
        skills = [_resolve_skill(s, rubrics) for s in labels]
        unknown = [s for s, r in zip(labels, skills, strict=True) if r is None]
        if unknown:
            raise DataError(
                f"{path}: row {i}: unknown skill {', '.join(map(repr, unknown))}; "
                f"{SKILLSET_FILE} has {', '.join(rubrics)}"
            )
        reference = row.get("answer")
        instances.append(
            Instance(
                idx=row["idx"],
                instruction=row["instruction"],
                reference=reference if isinstance(reference, str) else "",
                skills=[s for s in skills if s is not None],
                task=str(row.get("task", "")),
                domain=row.get("domain") if isinstance(row.get("domain"), list) else None,
                difficulty=str(row.get("difficulty", "")),
            )
        )
    if not instances:
        raise DataError(f"{path}: no instances")
    if len({inst.idx for inst in instances}) != len(instances):
        raise DataError(f"{path}: idx repeats; every FLASK instance needs its own idx")
    return instances


def skills_text(skills: Sequence[str], rubrics: dict[str, dict[str, Any]]) -> str:
    """The ``{skills}`` part of FLASK's prompt, as ``gen_prompt`` writes it."""
    text = ""
    for name in skills:
        skill = rubrics[name]
        text += f"\n{skill['Skill']}: {skill['Criteria']}"
        for k in "12345":
            text += f"\nScore {k}: {skill['Scoring'][k]}"
        text += "\n\n"
    return text


def review_prompt(
    prompts: dict[int, dict[str, Any]],
    rubrics: dict[str, dict[str, Any]],
    inst: Instance,
    response: str,
) -> tuple[int, Chat]:
    """FLASK's review chat for one response: the prompt id used and the system + user messages."""
    pid = WITH_REFERENCE if inst.reference.strip() else WITHOUT_REFERENCE
    prompt = prompts[pid]
    user = prompt["prompt_template"].format(
        question=inst.instruction,
        response=response,
        skills=skills_text(inst.skills, rubrics),
        num=3,
        sample_answer=inst.reference,
        **prompt.get("defaults", {}),
    )
    return pid, [
        {"role": "system", "content": prompt["system_prompt"]},
        {"role": "user", "content": user},
    ]


# ------------------------------------------------------------------------------------ the task


@dataclass
class FlaskTask:
    """FLASK skill scoring: one answer per instance, each judged ``runs`` times."""

    instances: list[Instance]
    prompts: dict[int, dict[str, Any]]
    rubrics: dict[str, dict[str, Any]]
    judge: JudgeClient
    runs: int = 1
    name: str = "flask"
    kind: TaskKind = "judged"

    def requests(self) -> list[Request]:
        """Every instruction, as the user's one turn."""
        return [
            Request(
                [Message(role="user", content=inst.instruction)],
                {"idx": inst.idx, "skills": inst.skills, "reference": inst.reference},
            )
            for inst in self.instances
        ]

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Scores per skill and overall; one row per judgement."""
        by_idx = {inst.idx: inst for inst in self.instances}
        answered = [
            (by_idx[req.meta["idx"]], out.strip())
            for out, req in zip(outputs, requests, strict=True)
        ]
        jobs = [(inst, answer, run) for inst, answer in answered for run in range(self.runs)]
        prompts = [
            review_prompt(self.prompts, self.rubrics, inst, answer) for inst, answer, _ in jobs
        ]
        got = self.judge.judge_many(
            [(chat, run) for (_, chat), (*_, run) in zip(prompts, jobs, strict=True)]
        )
        rows = []
        for (inst, answer, run), (pid, _), judgement in zip(jobs, prompts, got, strict=True):
            scores = parse_scores(judgement.text, inst.skills)
            rows.append(
                {
                    "idx": inst.idx,
                    "task": inst.task,
                    "domain": inst.domain,
                    "difficulty": inst.difficulty,
                    "skills": inst.skills,
                    "run": run,
                    "instruction": inst.instruction,
                    "answer": answer,
                    "reference": inst.reference,
                    "judge_prompt": pid,
                    "judgment": judgement.text,
                    "scores": scores,
                    "unparsable": [s for s, v in scores.items() if v is None],
                }
            )
        return _flask_metrics(rows), rows


def _mean_of_runs(scores: Sequence[tuple[int, float]]) -> float:
    by_run: dict[int, list[float]] = defaultdict(list)
    for run, score in scores:
        by_run[run].append(score)
    return float(np.mean([np.mean(v) for v in by_run.values()]))


def _flask_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
    unparsable = not_applicable = 0
    for r in rows:
        for skill, score in r["scores"].items():
            if score is None:
                unparsable += 1
            elif score == NOT_APPLICABLE:
                not_applicable += 1
            else:
                for key in ("score", skill_key(skill)):
                    groups[key].append((r["run"], float(score)))
    order = {k: i for i, k in enumerate(("score", *SKILL_KEYS))}
    metrics = {
        f"flask/{_METRIC_UNSAFE.sub('_', k)}": _mean_of_runs(groups[k])
        for k in sorted(groups, key=lambda k: (order.get(k, len(order)), k))
    }
    metrics["flask/unparsable"] = float(unparsable)
    metrics["flask/not_applicable"] = float(not_applicable)
    return metrics


def make_task(t: FlaskTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    """The ``flask`` task (listed in :data:`raymix.eval.registry.TASKS`)."""
    path = Path(t.path).expanduser()  # FLASK's flask_evaluation.jsonl
    folder = path.parent
    rubrics = load_rubrics(folder)
    prompts = load_prompts(folder)
    instances = load_instances(path if t.subset == "all" else folder / HARD_FILE, t.limit, rubrics)
    judge, runs = client_for(t)
    return FlaskTask(instances, prompts, rubrics, judge, runs)
