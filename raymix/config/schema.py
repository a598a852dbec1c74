"""The experiment schema: one YAML file describes sources, the mixture space, strategy,
training, scaling, DeepSpeed, tracking and the sweep.

Pydantic v2 models with ``extra="forbid"`` and strict types; every field carries a docstring that
``raymix validate --help-keys`` shows. No Ray, torch or MLflow import here: the schema is pure data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True, frozen=True)

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = _MODEL_CONFIG


class TinyModelConfig(_Strict):
    """A small Llama-architecture model built from scratch (random init, no download)."""

    hidden_size: PositiveInt = 64
    """Width of the residual stream."""
    num_layers: PositiveInt = 2
    """Number of decoder layers."""
    num_heads: PositiveInt = 4
    """Attention heads per layer (hidden_size must be divisible by it)."""
    intermediate_size: PositiveInt = 176
    """Width of the SwiGLU feed-forward block."""
    max_position_embeddings: PositiveInt = 1024
    """Longest sequence the rotary embedding is set up for."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class ModelConfig(_Strict):
    """Which model a trial fine-tunes."""

    name: str = "tiny"
    """'tiny' builds the embedded Llama from `tiny`; anything else is a Hugging Face hub id or a
    local directory loaded with AutoModelForCausalLM."""
    tiny: TinyModelConfig = TinyModelConfig()
    """Shape of the embedded model when name is 'tiny'."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for a hub model."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Parameter dtype: 'auto' is bfloat16 on GPU and float32 on CPU."""


class TokenizerConfig(_Strict):
    """Which tokenizer encodes the data; it is saved with every checkpoint."""

    name: str = "builtin"
    """'builtin' trains a byte-level BPE on the experiment's built-in data (no download); anything
    else is a hub id or local directory loaded with AutoTokenizer (default: the model's)."""
    vocab_size: Annotated[int, Field(ge=260, le=65536)] = 512
    """Vocabulary size of the builtin tokenizer."""


SourceFormat = Literal[
    "auto", "alpaca", "dolly", "gsm8k", "sharegpt", "messages", "p3", "flan_cot", "fields"
]


class SourceConfig(_Strict):
    """One instruction data source, tagged with the ability it teaches."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]
    """Short name used in mixtures, metrics (eval/loss/<name>) and the manifest."""
    path: str
    """Where the rows come from: 'synthetic:math', 'synthetic:code', 'synthetic:general' (built
    in); a local .json, .jsonl, .json.gz, .jsonl.gz, .parquet, .csv or .tsv file; or a Hugging
    Face hub dataset id (loaded with datasets.load_dataset)."""
    ability: str = "general"
    """The ability this source teaches (math, code, general, nlp, ...), used in reports."""
    size: PositiveInt | None = None
    """For synthetic sources: how many rows to generate (train pool plus held-out)."""
    heldout: NonNegInt = 64
    """Rows held out (seeded) for per-source eval loss and the heldout task."""
    heldout_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None
    """Hold out this fraction of the source's rows instead of a count of `heldout` rows."""
    format: SourceFormat = "auto"
    """How rows map to chat messages: alpaca / code-alpaca (instruction, input, output), dolly
    (instruction, context, response), gsm8k (question, answer), sharegpt (conversations of
    from/value), messages (OpenAI role/content), p3 (inputs/targets or prompt/completion),
    flan_cot (tsv: question, answer, rationale), fields (use `fields`); 'auto' tells them apart."""
    fields: dict[str, str] | None = None
    """For format 'fields': which column holds each part, keys among instruction, input, output,
    system (e.g. {instruction: prompt, output: completion})."""
    subset: str | None = None
    """Hub dataset configuration name (load_dataset's `name`)."""
    split: str = "train"
    """Hub dataset split."""
    revision: str | None = None
    """Hub dataset revision (branch, tag or commit); recorded in the manifest."""
    drop_empty: bool = True
    """Drop rows whose response is empty after stripping (counted in the manifest)."""
    strip: bool = True
    """Strip leading and trailing whitespace from every message."""

    @model_validator(mode="after")
    def _one_heldout_size(self) -> SourceConfig:
        if self.heldout_fraction is not None and "heldout" in self.model_fields_set:
            raise ValueError("give heldout (rows) or heldout_fraction, not both")
        return self

    @property
    def heldout_size(self) -> int | float:
        """Rows to hold out: the count, or the fraction when ``heldout_fraction`` is set."""
        return self.heldout if self.heldout_fraction is None else self.heldout_fraction


MixtureValue = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)]
Amounts = dict[str, MixtureValue]


class RatioSpec(_Strict):
    """Dong et al.'s normalised ratio: ``fixed`` sources as given, ``scaled`` sources at k times
    their amount. With fixed = general at 1.0 and scaled = specialised at 1.0, k is the ratio of
    specialised to general data normalised so that k = 1 is the ratio of the full datasets; swap
    the roles for "all specialised + k general", or fix general at 1/64 for the third setting."""

    fixed: Amounts
    """Sources kept at their amount (int rows, or float fraction of the source)."""
    scaled: Amounts
    """Sources multiplied by k (int rows, or float fraction of the source, before scaling)."""
    k: Annotated[float, Field(ge=0)]
    """The normalised ratio."""


class SpecialisedRatioSpec(_Strict):
    """Wang et al.'s specialised : general ratio: the general sources as given, then
    ``ratio`` x (general rows) specialised rows split evenly over the specialised sources."""

    general: Amounts
    """General sources and their amounts."""
    specialised: list[str]
    """Specialised sources sharing ratio x general rows (largest-remainder split)."""
    ratio: Annotated[float, Field(ge=0)]
    """Specialised rows per general row."""


class BudgetSpec(_Strict):
    """A total budget in examples or tokens, split by proportions on the simplex (normalised,
    largest-remainder rounding)."""

    total: PositiveInt
    """Examples or tokens in the whole mixture."""
    unit: Literal["examples", "tokens"] = "examples"
    """What `total` counts. Tokens are counted after the template and truncation."""
    proportions: dict[str, Annotated[float, Field(ge=0)]]
    """Weight per source; normalised to sum to 1 (negative or all-zero is an error)."""
    allow_upsampling: bool = False
    """Allow a source's share to exceed its train pool (repeats); otherwise that is an error."""

    @model_validator(mode="after")
    def _some_weight(self) -> BudgetSpec:
        if not self.proportions or not any(v > 0 for v in self.proportions.values()):
            raise ValueError("proportions must give at least one source a positive weight")
        return self


class RatioMixture(_Strict):
    """A mixture given by Dong's normalised ratio."""

    ratio: RatioSpec
    """The ratio spec."""


class SpecialisedRatioMixture(_Strict):
    """A mixture given by Wang's specialised : general ratio."""

    specialised_ratio: SpecialisedRatioSpec
    """The specialised-ratio spec."""


class BudgetMixture(_Strict):
    """A mixture given by a total budget and proportions."""

    budget: BudgetSpec
    """The budget spec."""


def _mixture_kind(value: Any) -> str:
    keys = value if isinstance(value, dict) else type(value).model_fields
    for kind in ("ratio", "specialised_ratio", "budget"):
        if kind in keys and len(keys) == 1:
            return kind
    return "amounts"


MixtureSpec = Annotated[
    Annotated[Amounts, Tag("amounts")]
    | Annotated[RatioMixture, Tag("ratio")]
    | Annotated[SpecialisedRatioMixture, Tag("specialised_ratio")]
    | Annotated[BudgetMixture, Tag("budget")],
    Discriminator(_mixture_kind),
]


def mixture_sources(spec: Any) -> set[str]:
    """Every source a mixture spec names."""
    if isinstance(spec, RatioMixture):
        return set(spec.ratio.fixed) | set(spec.ratio.scaled)
    if isinstance(spec, SpecialisedRatioMixture):
        return set(spec.specialised_ratio.general) | set(spec.specialised_ratio.specialised)
    if isinstance(spec, BudgetMixture):
        return set(spec.budget.proportions)
    return set(spec)


class MixtureConfig(_Strict):
    """The mixture search space: a grid of named mixtures, each trial trains on one."""

    grid: dict[str, MixtureSpec]
    """Named mixtures. Each is either {source: amount} (an int is a count of rows, a float a
    fraction of the source's train pool, above 1 upsampling), or {ratio: ...} (Dong's normalised
    ratio k), {specialised_ratio: ...} (Wang's specialised : general) or {budget: ...} (a total in
    examples or tokens split by proportions)."""

    @model_validator(mode="after")
    def _not_empty(self) -> MixtureConfig:
        if not self.grid:
            raise ValueError("grid needs at least one named mixture")
        for name, spec in self.grid.items():
            if isinstance(spec, dict) and not any(v > 0 for v in spec.values()):
                raise ValueError(f"mixture {name!r} has no source with a positive amount")
        return self


class StrategyConfig(_Strict):
    """How the mixture is scheduled over training: each strategy compiles to stages, each stage
    with its own epochs and lr schedule (warmup and decay restart per stage)."""

    name: Literal["multitask", "sequential", "mixed_sequential", "dmt"] = "multitask"
    """multitask: everything in one stage. sequential: one stage per group of `order`.
    mixed_sequential: the specialised sources, then the general ones. dmt: the specialised
    sources, then the general ones plus a k fraction of the specialised rows (Dong et al.)."""
    order: list[list[str]] | None = None
    """sequential: the groups of sources, one stage each, in order (e.g. [[code], [math],
    [general]]); default: one stage per source in the mixture's order."""
    specialised: list[str] | None = None
    """mixed_sequential / dmt: the specialised sources; default: every source whose ability is
    not 'general'."""
    k: Annotated[float, Field(ge=0, le=1)] = 1 / 256
    """dmt: fraction of each specialised source's rows replayed in the second stage."""
    epochs: list[PositiveInt] | None = None
    """Epochs per stage (default: train.epochs for every stage)."""
    reset_optimizer: bool = True
    """Restart the optimizer state (Adam moments) at each stage boundary."""


class TrainConfig(_Strict):
    """Optimisation hyper-parameters of one trial."""

    lr: PositiveFloat = 1e-3
    """Peak learning rate."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup: linear to 0, cosine to 0, or constant."""
    warmup: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, lt=1)] = 0.03
    """Warmup: an int is a number of steps, a float a fraction of the total steps."""
    epochs: PositiveInt = 1
    """Passes over the trial's mixture."""
    max_steps: PositiveInt | None = None
    """Stop after this many optimizer steps (overrides epochs when reached first)."""
    micro_batch_size: PositiveInt = 8
    """Examples per worker per forward pass."""
    grad_accum: PositiveInt = 1
    """Micro-batches accumulated per optimizer step (global batch = micro x accum x workers)."""
    max_length: PositiveInt = 256
    """Longest tokenized example (prompt + response after the template)."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """Examples longer than max_length: truncate them, or drop them before sampling (either way
    counted in the manifest)."""
    packing: bool = False
    """Pack several examples into each max_length row (best-fit decreasing; examples never attend
    to each other); micro_batch_size then counts packed rows."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    grad_clip: Annotated[float, Field(ge=0)] = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    log_every: PositiveInt = 5
    """Log train/* metrics to MLflow every this many optimizer steps (rank 0, asynchronous)."""
    report_every: PositiveInt = 25
    """Call ray.train.report every this many steps; it is a throttled collective, keep it rare."""
    eval_every: PositiveInt | None = None
    """Evaluate held-out loss per source every this many steps (None: only at the end)."""
    eval_batch_size: PositiveInt = 16
    """Examples per worker per eval forward pass."""


class ScalingConfig(_Strict):
    """How many Ray Train workers one trial uses, and what each gets."""

    num_workers: PositiveInt = 2
    """Ray Train workers (DeepSpeed ranks) per trial."""
    use_gpu: bool = False
    """Give each worker a GPU (NCCL); False runs DeepSpeed on the CPU accelerator over gloo."""
    cpus_per_worker: PositiveFloat = 1.0
    """CPUs reserved per worker; also its torch thread count (at least 1)."""
    gpus_per_worker: PositiveFloat = 1.0
    """GPUs per worker when use_gpu is true."""


class DeepSpeedConfig(_Strict):
    """DeepSpeed engine settings for every worker."""

    zero_stage: Literal[0, 1, 2, 3] = 2
    """ZeRO stage: 0 (plain DDP), 1, 2 (optimizer + gradients sharded) or 3 (parameters too)."""
    offload_optimizer: bool = False
    """Keep optimizer state in CPU memory (ZeRO 2/3)."""
    offload_param: bool = False
    """Keep parameters in CPU memory (ZeRO 3 only)."""

    @model_validator(mode="after")
    def _offload_param_needs_zero3(self) -> DeepSpeedConfig:
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("offload_param needs zero_stage 3")
        return self


class TrackingConfig(_Strict):
    """Where MLflow records the sweep."""

    uri: str | None = None
    """MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    experiment: str | None = None
    """MLflow experiment name; default: the experiment's `name`."""
    log_checkpoint: bool = True
    """Also upload the final model (Hugging Face format) as the artifact 'checkpoint/'. The
    checkpoint location is always recorded; turn this off for large models."""


class JudgeConfig(_Strict):
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


class _EvalTaskBase(_Strict):
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
    judge_prompts.jsonl and reference answers), or AlpacaEval's instructions."""
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


class HarnessTaskConfig(_EvalTaskBase):
    """lm-evaluation-harness multiple-choice benchmarks on local files, zero-shot."""

    name: Literal["harness"]
    """The task."""
    path: str
    """The folder holding arc/, piqa/, winogrande/, hellaswag/ and mmlu/."""
    benchmarks: list[str] = []
    """Which benchmarks (arc_easy, arc_challenge, piqa, winogrande, hellaswag, mmlu); empty
    for all."""


EVAL_TASKS = (
    HeldoutTaskConfig,
    GSM8KTaskConfig,
    HumanEvalTaskConfig,
    MTBenchTaskConfig,
    MTBenchPairwiseTaskConfig,
    AlpacaEvalTaskConfig,
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
    | HarnessTaskConfig,
    Field(discriminator="name"),
]
"""One evaluation run on the final checkpoint: its `name` picks the task and which keys it has."""

JudgedTaskConfig = MTBenchTaskConfig | MTBenchPairwiseTaskConfig | AlpacaEvalTaskConfig


def parse_eval_task(raw: dict[str, Any]) -> EvalTaskConfig:
    """The task config of a plain dict (``{"name": "gsm8k", ...}``)."""
    from pydantic import TypeAdapter

    return TypeAdapter(EvalTaskConfig).validate_python(raw)


class ContaminationConfig(_Strict):
    """13-gram overlap of the training data with every configured evaluation set."""

    check: bool = True
    """Compute the overlap once per sweep (logged per trial as contamination/<task>/<source>)."""
    ngram: Annotated[int, Field(ge=4)] = 13
    """Words per n-gram."""
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Warn when more than this fraction of a source's training pool overlaps an eval set."""
    drop: bool = False
    """Drop overlapping rows from the training pools before sampling (counted in the manifest)."""


class EvalConfig(_Strict):
    """Per-ability evaluation after training (metrics ``eval/<task or source>/<metric>``)."""

    tasks: list[EvalTaskConfig] = []
    """The tasks to run on the final model."""
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


class SpaceParam(_Strict):
    """One searched hyper-parameter: exactly one of grid, choice, uniform, loguniform, randint."""

    grid: list[Any] | None = None
    """Try every value (combined with the mixture grid)."""
    choice: list[Any] | None = None
    """Sample one value per trial."""
    uniform: tuple[float, float] | None = None
    """Sample uniformly from [low, high]."""
    loguniform: tuple[float, float] | None = None
    """Sample log-uniformly from [low, high]."""
    randint: tuple[int, int] | None = None
    """Sample an int from [low, high)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SpaceParam:
        given = [
            k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k)
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of grid, choice, uniform, loguniform, randint"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class SweepConfig(_Strict):
    """How Ray Tune runs the trials."""

    num_samples: PositiveInt = 1
    """Repeats of the grid (each repeat samples the non-grid parameters anew)."""
    max_concurrent_trials: PositiveInt = 1
    """Trials running at once; size it to the cluster (a trial that cannot get its workers waits)."""
    metric: str = "eval/loss/mean"
    """The Tune metric that ranks trials."""
    mode: Literal["min", "max"] = "min"
    """Whether lower or higher `metric` is better."""
    storage_path: str | None = None
    """Where Ray Tune and Train keep results and checkpoints (shared storage on a cluster);
    default ./raymix_runs."""
    space: dict[str, SpaceParam] = {}
    """Searched hyper-parameters by dotted key, e.g. {'train.lr': {'grid': [1e-3, 3e-4]}}."""
    max_failures: NonNegInt = 1
    """Times a crashed trial is retried (Tune) and a crashed worker group restarted (Train)."""


class ExperimentConfig(_Strict):
    """One experiment: everything `raymix sweep` needs to run and track a study."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    """Experiment name: the MLflow experiment and the Tune run folder."""
    seed: NonNegInt = 0
    """Seeds data generation, mixture sampling, model init and shuffling."""
    model: ModelConfig = ModelConfig()
    """The model to fine-tune."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """The tokenizer."""
    template: Literal["plain", "alpaca", "vicuna", "llama2", "chatml", "tokenizer"] = "alpaca"
    """Prompt template; loss falls only on assistant turns: plain, alpaca, vicuna (FastChat
    vicuna_v1.1), llama2 (Llama-2 chat), chatml, or tokenizer (the tokenizer's chat_template)."""
    sources: list[SourceConfig]
    """The instruction data sources."""
    mixture: MixtureConfig
    """The grid of mixtures to try."""
    strategy: StrategyConfig = StrategyConfig()
    """Training strategy."""
    train: TrainConfig = TrainConfig()
    """Optimisation hyper-parameters."""
    scaling: ScalingConfig = ScalingConfig()
    """Workers per trial."""
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    """DeepSpeed engine."""
    eval: EvalConfig = EvalConfig()
    """Per-ability evaluation of the final model."""
    tracking: TrackingConfig = TrackingConfig()
    """MLflow."""
    sweep: SweepConfig = SweepConfig()
    """Ray Tune."""

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        names = [s.name for s in self.sources]
        if not names:
            raise ValueError("sources: at least one source is needed")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: duplicate source name(s) {', '.join(dup)}")
        for mix, spec in self.mixture.grid.items():
            unknown = sorted(mixture_sources(spec) - set(names))
            if unknown:
                raise ValueError(
                    f"mixture.grid.{mix}: unknown source(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(names)}"
                )
        if self.template == "tokenizer" and self.tokenizer.name == "builtin":
            raise ValueError(
                "template: 'tokenizer' uses the tokenizer's chat_template, and the builtin "
                "tokenizer has none; set tokenizer.name or pick plain, alpaca, vicuna, llama2, chatml"
            )
        st = self.strategy
        named = [n for group in st.order or [] for n in group] + list(st.specialised or [])
        unknown = sorted(set(named) - set(names))
        if unknown:
            raise ValueError(
                f"strategy: unknown source(s) {', '.join(unknown)}; allowed: {', '.join(names)}"
            )
        return self
