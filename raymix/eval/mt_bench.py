"""MT-Bench single-answer grading (FastChat 0.2.36 ``llm_judge``) by a judge behind any
OpenAI-compatible endpoint, and the helpers the pairwise variant shares.

Questions are answered in two rounds (the second question is asked after the model's own first
answer, via ``next_round``); each turn is graded 1-10 with the prompts of ``judge_prompts.jsonl``
(``single-v1``; ``single-math-v1`` with the GPT-4 reference answer for math, reasoning and
coding; their ``-multi-turn`` forms for turn 2, which show the whole conversation). The rating is
read as FastChat's ``run_judge_single`` reads it (:func:`parse_rating`), and unparsable
judgements (-1) are left out and counted; a metric is the mean over ``judge.runs`` runs of the
mean of that run's ratings.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymix.config.schema import EvalConfig, MTBenchTaskConfig
from raymix.data.files import read_jsonl
from raymix.data.records import Message, Record
from raymix.errors import DataError
from raymix.eval.judge_client import Chat, JudgeClient, client_for
from raymix.eval.protocol import Request, Task, TaskKind

__all__ = [
    "NEED_REF_CATS",
    "MTBenchTask",
    "Question",
    "load_questions",
    "parse_pair_verdict",
    "parse_rating",
]

NEED_REF_CATS = ("math", "reasoning", "coding")
"""MT-Bench categories graded against a reference answer (FastChat's ``NEED_REF_CATS``, less
``arena-hard-200``, which MT-Bench has no question of)."""

SINGLE_PROMPTS = (
    "single-v1",
    "single-math-v1",
    "single-v1-multi-turn",
    "single-math-v1-multi-turn",
)
# FastChat's one_score_pattern and one_score_pattern_backup (fastchat/llm_judge/common.py)
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")


def parse_rating(judgment: str) -> float:
    """The rating in a single-answer judgement, as FastChat's ``run_judge_single`` reads it.

    The first ``[[x]]``, else the first ``[x]``, evaluated with :func:`ast.literal_eval`; -1 when
    there is neither. Where FastChat's ``literal_eval`` raises (a leading zero as in ``[[07]]``,
    digits of other scripts) or the number overflows a float, the rating is -1 too: FastChat stops
    with an exception there, and here the judgement counts as unparsable.
    """
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    if not match:
        return -1.0
    try:
        return float(ast.literal_eval(match.group(1)))
    except (ValueError, SyntaxError, OverflowError):
        return -1.0


def parse_pair_verdict(judgment: str) -> str:
    """FastChat's pairwise verdict (``run_judge_pair``, output format ``[[A]]``).

    "A" if ``[[A]]`` occurs anywhere, else "B" for ``[[B]]``, else "tie" for ``[[C]]``, else
    "error". FastChat 0.2.36 reads no other form: a single-bracket ``[A]`` is "error" there too.
    """
    for tag, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if tag in judgment:
            return verdict
    return "error"


# ----------------------------------------------------------------------------- MT-Bench questions


@dataclass(frozen=True)
class Question:
    """One MT-Bench question: id, category, its (at most two) turns and reference answers."""

    qid: Any
    category: str
    turns: list[str]
    reference: list[str] | None


def answer_turns(row: dict[str, Any], where: str) -> list[str]:
    """The turns of an answer row: ``turns`` or FastChat's ``choices[0].turns``."""
    turns = row.get("turns")
    if turns is None and isinstance(row.get("choices"), list) and row["choices"]:
        turns = row["choices"][0].get("turns")
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise DataError(f"{where}: expected 'turns' (a list of strings) or choices[0].turns")
    return turns


def _reference_answers(question_path: Path) -> dict[Any, list[str]]:
    """GPT-4 reference answers next to the questions (this layout or FastChat's), by id."""
    folder = question_path.parent
    for path in (
        folder / "reference_answer_gpt-4.jsonl",
        folder / "reference_answer" / "gpt-4.jsonl",
    ):
        if path.is_file():
            rows = read_jsonl(path)
            return {
                r.get("question_id"): answer_turns(r, f"{path}: row {i}")
                for i, r in enumerate(rows, 1)
            }
    return {}


def load_questions(path: Path, limit: int | None) -> list[Question]:
    refs = _reference_answers(path)
    questions = []
    for i, row in enumerate(read_jsonl(path)[:limit], 1):
        turns = row.get("turns")
        if "question_id" not in row or not turns or not isinstance(turns, list):
            raise DataError(f"{path}: row {i}: an MT-Bench question needs question_id and turns")
        if not all(isinstance(t, str) for t in turns):
            raise DataError(f"{path}: row {i}: turns must be strings")
        ref = refs.get(row["question_id"]) or row.get("reference")
        category = str(row.get("category", "general"))
        questions.append(Question(row["question_id"], category, turns[:2], ref or None))
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


def judge_prompts(question_path: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """FastChat's judge prompts, from ``judge_prompts.jsonl`` beside the questions or one up."""
    places = [
        question_path.parent / "judge_prompts.jsonl",
        question_path.parent.parent / "judge_prompts.jsonl",
    ]
    path = next((p for p in places if p.is_file()), None)
    if path is None:
        raise DataError(
            f"{question_path}: no judge_prompts.jsonl in {places[0].parent} or {places[1].parent}"
        )
    prompts = {str(p.get("name")): p for p in read_jsonl(path)}
    missing = [n for n in names if n not in prompts]
    if missing:
        raise DataError(f"{path}: missing judge prompts {', '.join(missing)}")
    return prompts


def reference_for(q: Question, turn: int) -> list[str] | None:
    """The reference answers a turn is graded against (FastChat: math, reasoning, coding)."""
    if q.category not in NEED_REF_CATS or not q.reference or len(q.reference) < turn:
        return None
    return q.reference


def _turn_request(q: Question, history: list[Message], turn: int) -> Request:
    messages = [*history, Message(role="user", content=q.turns[turn - 1])]
    return Request(messages, {"question_id": q.qid, "category": q.category, "turn": turn})


def first_turns(questions: Sequence[Question]) -> list[Request]:
    return [_turn_request(q, [], 1) for q in questions]


def next_turns(
    questions: Sequence[Question], outputs: Sequence[str], requests: Sequence[Request]
) -> list[Request]:
    """Each question's next turn, asked after the conversation so far and the model's answer
    (stripped, as FastChat's ``gen_model_answer`` keeps it)."""
    by_id = {q.qid: q for q in questions}
    follow = []
    for out, req in zip(outputs, requests, strict=True):
        q, turn = by_id[req.meta["question_id"]], req.meta["turn"]
        if turn < len(q.turns):
            history = [*req.messages, Message(role="assistant", content=out.strip())]
            follow.append(_turn_request(q, history, turn + 1))
    return follow


def answers_by_question(
    outputs: Sequence[str], requests: Sequence[Request]
) -> dict[Any, dict[int, str]]:
    """Every round's answers by question id and turn, stripped (FastChat's ``gen_model_answer``
    strips what the model generated before it is judged or shown again)."""
    got: dict[Any, dict[int, str]] = defaultdict(dict)
    for out, req in zip(outputs, requests, strict=True):
        got[req.meta["question_id"]][req.meta["turn"]] = out.strip()
    return got


def turn_jobs(
    questions: Sequence[Question], answers: dict[Any, dict[int, str]], runs: int
) -> list[tuple[Question, int, int]]:
    """(question, turn, run) for every answered turn of every question, ``runs`` times."""
    return [
        (q, turn, run)
        for q in questions
        for turn in _judged_turns(answers.get(q.qid, {}))
        for run in range(runs)
    ]


def _judged_turns(answers: dict[int, str]) -> list[int]:
    return [t for t in (1, 2) if t in answers and 1 in answers]


def _system_user(prompt: dict[str, Any], **fields: str) -> Chat:
    user = prompt["prompt_template"].format(**fields)
    return [
        {"role": "system", "content": prompt["system_prompt"]},
        {"role": "user", "content": user},
    ]


def _ref_fields(ref: list[str] | None, turn: int) -> dict[str, str]:
    if ref is None:
        return {}
    return {"ref_answer_1": ref[0]} | ({"ref_answer_2": ref[1]} if turn == 2 else {})


def _prompt_name(base: str, ref: list[str] | None, turn: int) -> str:
    math_name = {"single": "single-math-v1", "pair": "pair-math-v1"}[base]
    plain = {"single": "single-v1", "pair": "pair-v2"}[base]
    return (math_name if ref else plain) + ("-multi-turn" if turn == 2 else "")


def single_prompt(
    prompts: dict[str, dict[str, Any]], q: Question, answers: dict[int, str], turn: int
) -> tuple[str, Chat]:
    """FastChat's single-answer grading prompt (``run_judge_single``) for one turn."""
    ref = reference_for(q, turn)
    name = _prompt_name("single", ref, turn)
    if turn == 1:
        fields = {"question": q.turns[0], "answer": answers[1]}
    else:
        fields = {
            "question_1": q.turns[0],
            "question_2": q.turns[1],
            "answer_1": answers[1],
            "answer_2": answers[2],
        }
    return name, _system_user(prompts[name], **fields, **_ref_fields(ref, turn))


def pair_prompt(
    prompts: dict[str, dict[str, Any]],
    q: Question,
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    turn: int,
) -> tuple[str, Chat]:
    """FastChat's pairwise prompt (``run_judge_pair``) with answer A then answer B."""
    ref = reference_for(q, turn)
    name = _prompt_name("pair", ref, turn)
    if turn == 1:
        fields = {"question": q.turns[0], "answer_a": answers_a[0], "answer_b": answers_b[0]}
    else:
        fields = {
            "question_1": q.turns[0],
            "question_2": q.turns[1],
            "answer_a_1": answers_a[0],
            "answer_b_1": answers_b[0],
            "answer_a_2": answers_a[1],
            "answer_b_2": answers_b[1],
        }
    return name, _system_user(prompts[name], **fields, **_ref_fields(ref, turn))


def _metric_name(text: str) -> str:
    """``text`` with every character MLflow refuses in a metric name replaced by ``_``."""
    return _METRIC_UNSAFE.sub("_", text)


def _mean_of_runs(ratings: Sequence[tuple[int, float]]) -> float | None:
    """Mean over runs of each run's mean rating, ratings of -1 left out; None if none is left."""
    by_run: dict[int, list[float]] = defaultdict(list)
    for run, rating in ratings:
        if rating != -1:
            by_run[run].append(rating)
    means = [float(np.mean(v)) for v in by_run.values()]
    return float(np.mean(means)) if means else None


# ------------------------------------------------------------------------------ MT-Bench single


@dataclass
class MTBenchTask:
    """MT-Bench single-answer grading (FastChat llm_judge), two turns per question."""

    questions: list[Question]
    prompts: dict[str, dict[str, Any]]
    judge: JudgeClient
    runs: int = 1
    name: str = "mt_bench"
    kind: TaskKind = "judged"

    def requests(self) -> list[Request]:
        """Every question's first turn."""
        return first_turns(self.questions)

    def next_round(self, outputs: Sequence[str], requests: Sequence[Request]) -> list[Request]:
        """The second turns, each after its question's first turn and answer."""
        return next_turns(self.questions, outputs, requests)

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Ratings per turn, per category and overall; one row per judgement."""
        answers = answers_by_question(outputs, requests)
        jobs = turn_jobs(self.questions, answers, self.runs)
        prompts = [single_prompt(self.prompts, q, answers[q.qid], turn) for q, turn, _ in jobs]
        got = self.judge.judge_many(
            [(chat, run) for (_, chat), (*_, run) in zip(prompts, jobs, strict=True)]
        )
        texts = [g.text for g in got]
        rows = [
            {
                "question_id": q.qid,
                "category": q.category,
                "turn": turn,
                "run": run,
                "questions": q.turns[:turn],
                "answers": [answers[q.qid][t] for t in range(1, turn + 1)],
                "reference": reference_for(q, turn),
                "judge_prompt": name,
                "judgment": text,
                "score": parse_rating(text),
            }
            for (q, turn, run), (name, _), text in zip(jobs, prompts, texts, strict=True)
        ]
        return _mt_bench_metrics(rows), rows


def _mt_bench_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        for key in ("score", f"turn_{r['turn']}", _metric_name(r["category"])):
            groups[key].append((r["run"], r["score"]))
    metrics = {f"mt_bench/{k}": m for k, v in groups.items() if (m := _mean_of_runs(v)) is not None}
    metrics["mt_bench/unparsable"] = float(sum(r["score"] == -1 for r in rows))
    return metrics


def make_task(t: MTBenchTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    """The ``mt_bench`` task (listed in :data:`raymix.eval.registry.TASKS`)."""
    path = Path(t.path).expanduser()  # MT-Bench's question.jsonl
    judge, runs = client_for(t)
    questions = load_questions(path, t.limit)
    return MTBenchTask(questions, judge_prompts(path, SINGLE_PROMPTS), judge, runs)
