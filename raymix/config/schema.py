"""The experiment schema: one YAML file describes sources, the mixture space, strategy,
training, scaling, DeepSpeed, tracking and the sweep.

Pydantic v2 models with ``extra="forbid"`` and strict types; every field carries a docstring that
``raymix validate --help-keys`` shows. No Ray, torch or MLflow import here: the schema is pure data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from raymix.config.base import NonNegInt, PositiveFloat, PositiveInt, Strict
from raymix.config.eval_schema import (
    EVAL_TASK_NAMES,
    EVAL_TASKS,
    AlpacaEvalTaskConfig,
    ContaminationConfig,
    EvalConfig,
    EvalTaskConfig,
    GSM8KTaskConfig,
    HarnessTaskConfig,
    HeldoutTaskConfig,
    HumanEvalTaskConfig,
    JudgeConfig,
    JudgedTaskConfig,
    MTBenchPairwiseTaskConfig,
    MTBenchTaskConfig,
    parse_eval_task,
)
from raymix.config.mixture_schema import (
    BudgetMixture,
    BudgetSpec,
    MixtureConfig,
    MixtureSpec,
    RatioMixture,
    RatioSpec,
    SpecialisedRatioMixture,
    SpecialisedRatioSpec,
    mixture_sources,
)

__all__ = [
    "AlpacaEvalTaskConfig",
    "BudgetMixture",
    "BudgetSpec",
    "ContaminationConfig",
    "DeepSpeedConfig",
    "EVAL_TASKS",
    "EVAL_TASK_NAMES",
    "EvalConfig",
    "EvalTaskConfig",
    "ExperimentConfig",
    "GSM8KTaskConfig",
    "HarnessTaskConfig",
    "HeldoutTaskConfig",
    "HumanEvalTaskConfig",
    "JudgeConfig",
    "JudgedTaskConfig",
    "MTBenchPairwiseTaskConfig",
    "MTBenchTaskConfig",
    "MixtureConfig",
    "MixtureSpec",
    "ModelConfig",
    "NonNegInt",
    "PositiveFloat",
    "PositiveInt",
    "RatioMixture",
    "RatioSpec",
    "ScalingConfig",
    "SourceConfig",
    "SourceFormat",
    "SpaceParam",
    "SpecialisedRatioMixture",
    "SpecialisedRatioSpec",
    "StrategyConfig",
    "Strict",
    "SweepConfig",
    "TinyModelConfig",
    "TokenizerConfig",
    "TrackingConfig",
    "TrainConfig",
    "mixture_sources",
    "parse_eval_task",
]


class TinyModelConfig(Strict):
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


class ModelConfig(Strict):
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


class TokenizerConfig(Strict):
    """Which tokenizer encodes the data; it is saved with every checkpoint."""

    name: str = "builtin"
    """'builtin' trains a byte-level BPE on the experiment's built-in data (no download); anything
    else is a hub id or local directory loaded with AutoTokenizer (default: the model's)."""
    vocab_size: Annotated[int, Field(ge=260, le=65536)] = 512
    """Vocabulary size of the builtin tokenizer."""


SourceFormat = Literal[
    "auto", "alpaca", "dolly", "gsm8k", "sharegpt", "messages", "p3", "flan_cot", "fields"
]


class SourceConfig(Strict):
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
    """Hold out this fraction of the source's rows; when given, it overrides `heldout`."""
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

    @property
    def heldout_size(self) -> int | float:
        """Rows to hold out: the count, or the fraction when ``heldout_fraction`` is set."""
        return self.heldout if self.heldout_fraction is None else self.heldout_fraction


class StrategyConfig(Strict):
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


class TrainConfig(Strict):
    """Optimisation hyper-parameters of one trial."""

    lr: PositiveFloat = 1e-3
    """Peak learning rate."""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup: linear to 0, cosine to 0, or constant."""
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.03
    """Linear warmup over this fraction of each stage's optimizer steps (rounded up), as Hugging
    Face's warmup_ratio."""
    warmup_steps: NonNegInt | None = None
    """Linear warmup over this many optimizer steps per stage; when given, it overrides
    `warmup_ratio` (as in Hugging Face's TrainingArguments)."""
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


class ScalingConfig(Strict):
    """How many Ray Train workers one trial uses, and what each gets."""

    num_workers: PositiveInt = 2
    """Ray Train workers (DeepSpeed ranks) per trial."""
    use_gpu: bool = False
    """Give each worker a GPU (NCCL); False runs DeepSpeed on the CPU accelerator over gloo."""
    cpus_per_worker: PositiveFloat = 1.0
    """CPUs reserved per worker; also its torch thread count (at least 1)."""
    gpus_per_worker: PositiveFloat = 1.0
    """GPUs per worker when use_gpu is true."""


class DeepSpeedConfig(Strict):
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


class TrackingConfig(Strict):
    """Where MLflow records the sweep."""

    uri: str | None = None
    """MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    experiment: str | None = None
    """MLflow experiment name; default: the experiment's `name`."""
    log_checkpoint: bool = True
    """Also upload the final model (Hugging Face format) as the artifact 'checkpoint/'. The
    checkpoint location is always recorded; turn this off for large models."""


class SpaceParam(Strict):
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


class SweepConfig(Strict):
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


class ExperimentConfig(Strict):
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
