"""MT-Bench pairwise: the trial's answers against a baseline's, each turn judged in both orders
as FastChat 0.2.36's ``llm_judge`` does it (``pair-v2`` prompts, ``pair-math-v1`` where a
reference exists, their ``-multi-turn`` forms for turn 2). A verdict that flips with the order
is a tie, and ``win_rate_adjusted`` is (win + 0.5 tie) / (win + loss + tie).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymix.config.schema import EvalConfig, MTBenchPairwiseTaskConfig
from raymix.data.files import read_jsonl
from raymix.data.records import Record
from raymix.errors import DataError
from raymix.eval.judge_client import Chat, JudgeClient, client_for
from raymix.eval.mt_bench import (
    Question,
    answer_turns,
    answers_by_question,
    first_turns,
    judge_prompts,
    load_questions,
    next_turns,
    pair_prompt,
    parse_pair_verdict,
    reference_for,
    turn_jobs,
)
from raymix.eval.protocol import Request, Task, TaskKind

__all__ = ["PAIR_PROMPTS", "MTBenchPairwiseTask"]

PAIR_PROMPTS = ("pair-v2", "pair-math-v1", "pair-v2-multi-turn", "pair-math-v1-multi-turn")


def _load_baseline_answers(path: Path, questions: Sequence[Question]) -> dict[Any, list[str]]:
    """The baseline's answers by question id, one per turn of each question."""
    rows = read_jsonl(path)
    answers = {
        r.get("question_id"): answer_turns(r, f"{path}: row {i}") for i, r in enumerate(rows, 1)
    }
    for q in questions:
        if q.qid not in answers:
            raise DataError(f"{path}: no baseline answer for question_id {q.qid!r}")
        if len(answers[q.qid]) < len(q.turns):
            raise DataError(
                f"{path}: question_id {q.qid!r} has {len(answers[q.qid])} turns, needs {len(q.turns)}"
            )
    return answers


def _pair_outcome(g1: str, g2: str) -> str:
    """FastChat's reading of a battle judged twice: g1 with the trial as A, g2 with it as B."""
    if "error" in (g1, g2):
        return "error"
    trial_first = {"A": "trial", "B": "baseline"}.get(g1, g1)
    trial_second = {"A": "baseline", "B": "trial"}.get(g2, g2)
    if trial_first == "tie" or trial_first != trial_second:
        return "tie"
    return "win" if trial_first == "trial" else "loss"


@dataclass
class MTBenchPairwiseTask:
    """MT-Bench answers against a baseline's, each turn judged in both orders (FastChat).

    The baseline file (``baseline``) is jsonl, one line per question:
    ``{"question_id": 81, "turns": ["answer to turn 1", "answer to turn 2"]}``; FastChat's
    model_answer lines (``{"question_id": 81, "choices": [{"index": 0, "turns": [...]}]}``) are
    read too. Every evaluated question needs a line. With ``judge.runs`` > 1 the counts are means
    over the runs.
    """

    questions: list[Question]
    prompts: dict[str, dict[str, Any]]
    baseline: dict[Any, list[str]]
    judge: JudgeClient
    runs: int = 1
    name: str = "mt_bench_pairwise"
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
        """Win, loss and tie counts and the adjusted win rate; one row per battle and run."""
        answers = answers_by_question(outputs, requests)
        jobs = turn_jobs(self.questions, answers, self.runs)
        items: list[tuple[Chat, int]] = []
        names = []
        for q, turn, run in jobs:
            trial = [answers[q.qid][t] for t in range(1, turn + 1)]
            base = self.baseline[q.qid][:turn]
            name, first = pair_prompt(self.prompts, q, trial, base, turn)
            _, second = pair_prompt(self.prompts, q, base, trial, turn)
            items += [(first, run), (second, run)]
            names.append(name)
        texts = [g.text for g in self.judge.judge_many(items)]
        rows = [
            self._row(q, turn, run, name, answers[q.qid], texts[2 * i], texts[2 * i + 1])
            for i, ((q, turn, run), name) in enumerate(zip(jobs, names, strict=True))
        ]
        return _pairwise_metrics(rows, self.runs), rows

    def _row(
        self,
        q: Question,
        turn: int,
        run: int,
        name: str,
        answers: dict[int, str],
        trial_first: str,
        baseline_first: str,
    ) -> dict[str, Any]:
        g1, g2 = parse_pair_verdict(trial_first), parse_pair_verdict(baseline_first)
        return {
            "question_id": q.qid,
            "category": q.category,
            "turn": turn,
            "run": run,
            "questions": q.turns[:turn],
            "answers": [answers[t] for t in range(1, turn + 1)],
            "baseline_answers": self.baseline[q.qid][:turn],
            "reference": reference_for(q, turn),
            "judge_prompt": name,
            "judgment_trial_first": trial_first,
            "judgment_baseline_first": baseline_first,
            "verdict_trial_first": g1,
            "verdict_baseline_first": g2,
            "outcome": _pair_outcome(g1, g2),
        }


def _pairwise_metrics(rows: Sequence[dict[str, Any]], runs: int) -> dict[str, float]:
    counts = Counter(r["outcome"] for r in rows)
    win, loss, tie = (counts[k] / runs for k in ("win", "loss", "tie"))
    unparsable = sum(
        (r["verdict_trial_first"] == "error") + (r["verdict_baseline_first"] == "error")
        for r in rows
    )
    metrics = {
        "mt_bench_pairwise/win": win,
        "mt_bench_pairwise/loss": loss,
        "mt_bench_pairwise/tie": tie,
        "mt_bench_pairwise/unparsable": float(unparsable),
    }
    total = win + loss + tie
    if total:
        metrics["mt_bench_pairwise/win_rate"] = win / total
        metrics["mt_bench_pairwise/loss_rate"] = loss / total
        metrics["mt_bench_pairwise/win_rate_adjusted"] = (win + 0.5 * tie) / total
    return metrics


def make_task(
    t: MTBenchPairwiseTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]
) -> Task:
    """The ``mt_bench_pairwise`` task (listed in :data:`raymix.eval.registry.TASKS`)."""
    path = Path(t.path).expanduser()  # MT-Bench's question.jsonl
    judge, runs = client_for(t)
    questions = load_questions(path, t.limit)
    baseline = _load_baseline_answers(Path(t.baseline).expanduser(), questions)
    return MTBenchPairwiseTask(questions, judge_prompts(path, PAIR_PROMPTS), baseline, judge, runs)
