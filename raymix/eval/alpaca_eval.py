"""AlpacaEval 2.0 as ``alpaca_eval`` 0.6 runs it with its ``weighted_alpaca_eval_gpt4_turbo``
annotator, judged by a model behind any OpenAI-compatible endpoint.

Each instruction's baseline output and the trial's are shown in an order drawn as AlpacaEval
draws it (seeded on the instruction), in AlpacaEval's own classification prompt, which asks for
the better output's identifier ("m" for the first, "M" for the second). The preference is read
from the judge's first-token log-probabilities when the endpoint returns them (AlpacaEval's
``logprob_parser``: ``p(m) / (p(m) + p(M))``), and from the identifier it wrote otherwise; each
row's ``preference_source`` and the ``logprob_preferences``/``discrete_preferences`` counts say
which. Identical outputs tie without asking. Metrics (:mod:`raymix.eval.alpaca_metrics`): the win
rate, its standard error, the discrete win rate and the length-controlled GLM AlpacaEval calls
``length_controlled_minimal``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymix.config.schema import AlpacaEvalTaskConfig, EvalConfig
from raymix.data.files import read_rows
from raymix.data.records import Message, Record
from raymix.errors import DataError
from raymix.eval.alpaca_metrics import (
    head_to_head,
    length_controlled_minimal_win_rate,
    preference_from_logprobs,
)
from raymix.eval.judge_client import Chat, JudgeClient, Judgement, client_for
from raymix.eval.protocol import Request, Task, TaskKind

__all__ = [
    "ALPACA_EVAL_TEMPLATE",
    "ALPACA_ORDER_SEED",
    "AlpacaEvalTask",
    "alpaca_eval_chat",
    "parse_identifier",
    "trial_first",
]

ALPACA_ORDER_SEED = 123
"""Seed of the per-instruction coin that decides the order (AlpacaEval's processors' default)."""

TOP_LOGPROBS = 5
"""Top log-probabilities asked for per token, as AlpacaEval asks."""

ALPACA_EVAL_TEMPLATE = (
    "<|im_start|>system\n"
    "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on the quality of their responses to a given instruction. This process will be used to create a leaderboard reflecting the most accurate and human-preferred answers.\n"
    "<|im_end|>\n"
    "<|im_start|>user\n"
    "I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.\n"
    "\n"
    "## Instruction\n"
    "\n"
    "{\n"
    '    "instruction": """{instruction}""",\n'
    "}\n"
    "\n"
    "## Model Outputs\n"
    "\n"
    "Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.\n"
    "\n"
    "{\n"
    "    {\n"
    '        "model_identifier": "m",\n'
    '        "output": """{output_1}"""\n'
    "    },\n"
    "    {\n"
    '        "model_identifier": "M",\n'
    '        "output": """{output_2}"""\n'
    "    }\n"
    "}\n"
    "\n"
    "## Task\n"
    "\n"
    "Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.\n"
    "\n"
    "## Best Model Identifier\n"
    "<|im_end|>"
)
"""AlpacaEval's ``alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt`` (Apache-2.0, tatsu-lab), the
prompt of its ``weighted_alpaca_eval_gpt4_turbo`` annotator, verbatim."""

_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"
_FIELDS = ("instruction", "output_1", "output_2")


def alpaca_eval_chat(instruction: str, output_1: str, output_2: str) -> Chat:
    """The judge's messages for one comparison, as AlpacaEval builds them.

    Each placeholder's first occurrence is replaced in turn (``alpaca_eval.utils.make_prompts``)
    and the ChatML text split into messages (``alpaca_eval.utils.prompt_to_chatml``).
    """
    text = ALPACA_EVAL_TEMPLATE
    for name, value in zip(_FIELDS, (instruction, output_1, output_2), strict=True):
        text = text.replace("{" + name + "}", value, 1)
    messages = []
    for part in text.strip().split(_IM_START)[1:]:
        role, _, rest = part.partition("\n")
        messages.append({"role": role.strip(), "content": rest.split(_IM_END, 1)[0].strip()})
    return messages


def trial_first(instruction: str, seed: int = ALPACA_ORDER_SEED) -> bool:
    """Whether the trial's output is shown first: AlpacaEval's ``RandomSwitchTwoColumnsProcessor``
    coin (``random.Random("is_switched_outputs" + instruction + seed)``)."""
    switch = random.Random(f"is_switched_outputs{instruction}{seed}").choices([False, True], k=1)
    return switch[0]


def parse_identifier(judgment: str) -> str | None:
    """The identifier the judge wrote ("m": the first output, "M": the second), or None."""
    text = judgment.strip()
    return text if text in ("m", "M") else None


def load_alpaca(path: Path, baseline: Path | None, limit: int | None) -> list[dict[str, str]]:
    """Instructions and the baseline's outputs (from ``baseline`` or each row's ``output``)."""
    rows = read_rows(path)[:limit]
    outputs: dict[Any, Any] = {}
    if baseline is not None:
        outputs = {r.get("instruction"): r.get("output") for r in read_rows(baseline)}
    examples = []
    for i, row in enumerate(rows, 1):
        instruction = row.get("instruction")
        if not isinstance(instruction, str):
            raise DataError(f"{path}: row {i}: no 'instruction' text")
        output = outputs.get(instruction) if baseline is not None else row.get("output")
        if not isinstance(output, str):
            where = (
                f"{baseline}: no row with the instruction of {path} row {i}"
                if baseline
                else f"{path}: row {i}: no baseline 'output'"
            )
            raise DataError(where)
        examples.append({"instruction": instruction, "baseline": output})
    if not examples:
        raise DataError(f"{path}: no instructions")
    return examples


@dataclass
class AlpacaEvalTask:
    """AlpacaEval: the trial's outputs against a baseline's, pairwise, order drawn per example.

    ``path`` is a JSON array or jsonl of rows with ``instruction`` and the baseline's ``output``
    (AlpacaEval's own files, e.g. ``alpaca_eval_gpt4_1106_preview_outputs.json``); with
    ``baseline`` set, the baseline's outputs come from that file instead (same format), matched by
    instruction. With ``judge.runs`` above 1 an example's preference is the mean of its parsed
    runs (AlpacaEval judges once).
    """

    examples: list[dict[str, str]]
    judge: JudgeClient
    runs: int = 1
    seed: int = ALPACA_ORDER_SEED
    name: str = "alpaca_eval"
    kind: TaskKind = "judged"

    def requests(self) -> list[Request]:
        """Every instruction as a single user turn."""
        return [
            Request([Message(role="user", content=ex["instruction"])], {"index": i})
            for i, ex in enumerate(self.examples)
        ]

    def score(
        self, outputs: Sequence[str], requests: Sequence[Request]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Win rates, standard error, length-controlled win rate and counts; a row per judgement."""
        jobs = [
            (req.meta["index"], out, run)
            for out, req in zip(outputs, requests, strict=True)
            for run in range(self.runs)
        ]
        asked = [(i, out, run) for i, out, run in jobs if out != self.examples[i]["baseline"]]
        got = self.judge.judge_many(
            [(self._chat(i, out), run) for i, out, run in asked], top_logprobs=TOP_LOGPROBS
        )
        judged = {(i, run): g for (i, _, run), g in zip(asked, got, strict=True)}
        rows = [self._row(i, out, run, judged.get((i, run))) for i, out, run in jobs]
        return _alpaca_metrics(rows), rows

    def _chat(self, index: int, output: str) -> Chat:
        ex = self.examples[index]
        if trial_first(ex["instruction"], self.seed):
            return alpaca_eval_chat(ex["instruction"], output, ex["baseline"])
        return alpaca_eval_chat(ex["instruction"], ex["baseline"], output)

    def _row(self, index: int, output: str, run: int, got: Judgement | None) -> dict[str, Any]:
        ex = self.examples[index]
        first = trial_first(ex["instruction"], self.seed)
        picked, source, p_first = None, "identical", None
        if got is None:  # identical outputs: a tie, the judge is not asked
            preference: float | None = 0.5
        else:
            picked = parse_identifier(got.text)
            if got.top_logprobs:
                p_first = preference_from_logprobs(got.top_logprobs[0])
            if p_first is not None:
                source = "logprobs"
            elif picked is not None:
                source, p_first = "discrete", float(picked == "m")
            else:
                source = "unparsable"
            preference = _trial_preference(p_first, first)
        return {
            "index": index,
            "instruction": ex["instruction"],
            "output": output,
            "baseline_output": ex["baseline"],
            "run": run,
            "trial_first": first,
            "judgment": None if got is None else got.text,
            "top_logprobs": None if got is None or not got.top_logprobs else got.top_logprobs[0],
            "picked": picked,
            "preference_source": source,
            "preference": preference,
        }


def _trial_preference(p_first: float | None, trial_is_first: bool) -> float | None:
    """The trial's preference in [0, 1] from the first output's, computed on AlpacaEval's 1..2
    scale as it does (``2 - p`` for the shown order, ``3 - x`` to undo a switch)."""
    if p_first is None:
        return None
    shown = 2 - p_first
    return (3 - shown if trial_is_first else shown) - 1


def _alpaca_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per-example preference = mean of its parsed runs (NaN when none parsed)."""
    by_example: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_example[r["index"]].append(r)
    prefs, out_len, base_len = [], [], []
    for group in by_example.values():
        got = [r["preference"] for r in group if r["preference"] is not None]
        prefs.append(float(np.mean(got)) if got else float("nan"))
        out_len.append(len(group[0]["output"]))
        base_len.append(len(group[0]["baseline_output"]))
    sources = [r["preference_source"] for r in rows]
    metrics = {
        "alpaca_eval/avg_length": float(np.mean(out_len)),
        "alpaca_eval/unparsable": float(sources.count("unparsable")),
        "alpaca_eval/logprob_preferences": float(sources.count("logprobs")),
        "alpaca_eval/discrete_preferences": float(sources.count("discrete")),
    }
    metrics |= {f"alpaca_eval/{k}": v for k, v in head_to_head(prefs).items()}
    lc = length_controlled_minimal_win_rate(prefs, out_len, base_len)
    if lc is not None:
        metrics["alpaca_eval/length_controlled_minimal_win_rate"] = lc
    return metrics


def make_task(t: AlpacaEvalTaskConfig, e: EvalConfig, heldout: dict[str, list[Record]]) -> Task:
    """The ``alpaca_eval`` task (listed in :data:`raymix.eval.registry.TASKS`)."""
    path = Path(t.path).expanduser()  # a json array or jsonl rows with 'instruction'
    judge, runs = client_for(t)
    baseline = Path(t.baseline).expanduser() if t.baseline else None
    return AlpacaEvalTask(load_alpaca(path, baseline, t.limit), judge, runs)
