"""The evaluation part of the experiment schema: the tasks run on each trial's final model (a union
discriminated by ``name``: each task has only its own keys), the LLM judge, and the contamination
check."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from raymix.config.base import NonNegInt, PositiveFloat, PositiveInt, Strict


class JudgeConfig(Strict):
    """An LLM judge at any OpenAI-compatible chat-completions endpoint."""

    base_url: str
    """Endpoint base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1."""
    model: str
    """Judge model name, e.g. gpt-4."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never put the key in the file)."""
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """Sampling temperature of the judge."""
    max_tokens: PositiveInt = 2048
    """Longest judgement."""
    runs: PositiveInt = 1
    """Judge each answer this many times and average (Dong et al. use 3)."""


class _EvalTaskBase(Strict):
    limit: PositiveInt | None = 64
    """Evaluate at most this many rows: per source for heldout, per task for harness (so per
    subject for MMLU, as lm-evaluation-harness counts it); None for all. The contamination check
    always compares the whole eval set."""


class HeldoutTaskConfig(_EvalTaskBase):
    """Each source's held-out rows, scored by what they carry: a final number (exact match),
    unit tests (pass@1 in the sandbox) or a reference (exact match and ROUGE-L)."""

    name: Literal["heldout"]
    """The task."""


class GSM8KTaskConfig(_EvalTaskBase):
    """The GSM8K test set, scored with lm-evaluation-harness's extraction."""

    name: Literal["gsm8k"]
    """The task."""
    path: str | None = None
    """The GSM8K test jsonl (question, answer); default: the Hugging Face hub's."""
    shots: NonNegInt = 0
    """Solved examples given before each question (lm-eval uses 5); 0 is zero-shot."""
    fewshot_path: str | None = None
    """Where the examples come from (a train jsonl; default: the hub's train split)."""


class HumanEvalTaskConfig(_EvalTaskBase):
    """HumanEval pass@k, every sample run in the sandbox."""

    name: Literal["humaneval"]
    """The task."""
    path: str | None = None
    """The problem file (HumanEval.jsonl.gz format); default: the Hugging Face hub's."""
    samples: PositiveInt = 1
    """Samples per problem (set eval.temperature > 0 for more than one)."""


class _JudgedTaskBase(_EvalTaskBase):
    path: str
    """The benchmark's local file: MT-Bench's question.jsonl (its folder also holding
    judge_prompts.jsonl and reference answers), AlpacaEval's instructions, or FLASK's
    flask_evaluation.jsonl."""
    judge: JudgeConfig
    """The LLM judge."""


class MTBenchTaskConfig(_JudgedTaskBase):
    """MT-Bench single-answer grading (1-10, reference-guided for math, reasoning and coding)."""

    name: Literal["mt_bench"]
    """The task."""


class MTBenchPairwiseTaskConfig(_JudgedTaskBase):
    """MT-Bench pairwise judging against a baseline's answers, in both orders."""

    name: Literal["mt_bench_pairwise"]
    """The task."""
    baseline: str
    """The baseline's answers (a jsonl of question_id and choices)."""


class AlpacaEvalTaskConfig(_JudgedTaskBase):
    """AlpacaEval-style win rate against baseline outputs, with standard error and the
    length-controlled (minimal GLM) win rate."""

    name: Literal["alpaca_eval"]
    """The task."""
    baseline: str | None = None
    """The baseline's outputs (json / jsonl with instruction and output); default: the `output`
    field of the instruction file."""


class FlaskJudgeConfig(JudgeConfig):
    """The FLASK judge: sampling settings default to FLASK's reviewer file
    (gpt_review/src/reviewer.jsonl: temperature 0.2, max_tokens 1024)."""

    temperature: Annotated[float, Field(ge=0)] = 0.2
    """Sampling temperature of the judge (FLASK's reviewer setting: 0.2)."""
    max_tokens: PositiveInt = 1024
    """Longest judgement (FLASK's reviewer setting: 1024)."""


class FlaskTaskConfig(_JudgedTaskBase):
    """FLASK fine-grained skill scores (Ye et al. 2023): each instance's 3 skills rated 1-5 by
    the judge with FLASK's own prompt and rubrics, against its reference answer."""

    name: Literal["flask"]
    """The task."""
    judge: FlaskJudgeConfig
    """The LLM judge."""
    path: str
    """FLASK's flask_evaluation.jsonl; its folder also holds flask_hard_evaluation.jsonl,
    review_prompt.jsonl, review_reviewer.jsonl and skillset_description.json."""
    subset: Literal["all", "hard"] = "all"
    """All 1,740 instances (the file at path), or FLASK-Hard's 89 (flask_hard_evaluation.jsonl
    beside it)."""


class HarnessTaskConfig(_EvalTaskBase):
    """lm-evaluation-harness multiple-choice benchmarks on local files, zero-shot."""

    name: Literal["harness"]
    """The task."""
    path: str
    """The folder holding arc/, piqa/, winogrande/, hellaswag/, mmlu/ (and race/ when race is
    asked for)."""
    benchmarks: list[str] = []
    """Which benchmarks (arc_easy, arc_challenge, piqa, winogrande, hellaswag, mmlu, race); empty
    for all but race, which runs only when listed. race reads race/race_high_test.jsonl
    (EleutherAI/race rows: article, problems), or without that file lm-eval's own race task
    from the Hugging Face hub."""


EVAL_TASKS = (
    HeldoutTaskConfig,
    GSM8KTaskConfig,
    HumanEvalTaskConfig,
    MTBenchTaskConfig,
    MTBenchPairwiseTaskConfig,
    AlpacaEvalTaskConfig,
    FlaskTaskConfig,
    HarnessTaskConfig,
)
EVAL_TASK_NAMES = tuple(t.model_fields["name"].annotation.__args__[0] for t in EVAL_TASKS)  # type: ignore[union-attr]
"""Every eval task's name, in the order above."""

EvalTaskConfig = Annotated[
    HeldoutTaskConfig
    | GSM8KTaskConfig
    | HumanEvalTaskConfig
    | MTBenchTaskConfig
    | MTBenchPairwiseTaskConfig
    | AlpacaEvalTaskConfig
    | FlaskTaskConfig
    | HarnessTaskConfig,
    Field(discriminator="name"),
]
"""One evaluation run on the final checkpoint: its `name` picks the task and which keys it has."""

JudgedTaskConfig = (
    MTBenchTaskConfig | MTBenchPairwiseTaskConfig | AlpacaEvalTaskConfig | FlaskTaskConfig
)


def parse_eval_task(raw: dict[str, Any]) -> EvalTaskConfig:
    """The task config of a plain dict (``{"name": "gsm8k", ...}``)."""
    from pydantic import TypeAdapter

    return TypeAdapter(EvalTaskConfig).validate_python(raw)


class ContaminationConfig(Strict):
    """13-gram overlap of the training data with every configured evaluation set."""

    check: bool = True
    """Compute the overlap once per sweep (logged per trial as contamination/<task>/<source>)."""
    ngram: Annotated[int, Field(ge=4)] = 13
    """Words per n-gram."""
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Warn when more than this fraction of a source's training pool overlaps an eval set."""
    drop: bool = False
    """Drop overlapping rows from the training pools before sampling (counted in the manifest)."""


class EvalConfig(Strict):
    """Per-ability evaluation after training (metrics ``eval/<task or source>/<metric>``)."""

    tasks: list[EvalTaskConfig] = []
    """The tasks to run on the final model."""
    loss_weights: dict[str, Annotated[float, Field(ge=0)]] | None = None
    """Weights of the sources' held-out losses in eval/loss/weighted (normalised over the listed
    sources), reported at every evaluation: the default metric of sweep.scheduler when given."""
    contamination: ContaminationConfig = ContaminationConfig()
    """Overlap of the training data with the eval sets."""
    max_new_tokens: PositiveInt = 128
    """Longest generated answer."""
    temperature: Annotated[float, Field(ge=0)] = 0.0
    """0 is greedy decoding; above 0 samples (seeded), as pass@k with several samples needs."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Nucleus sampling mass when temperature > 0."""
    batch_size: PositiveInt = 16
    """Prompts per generation batch on each worker."""
    timeout_s: PositiveFloat = 3.0
    """Seconds each generated program may run in the sandbox."""
    allow_unsandboxed: bool = False
    """Run generated code with rlimits only where the machine refuses namespaces (unsafe)."""
