"""The experiment schema: one YAML file describes sources, the mixture space, strategy,
training, scaling, DeepSpeed, tracking and the sweep.

Pydantic v2 models with ``extra="forbid"`` and strict types; every field carries a docstring that
``raymix validate --help-keys`` shows. No Ray, torch or MLflow import here: the schema is pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from raymix.config.base import NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Strict
from raymix.config.eval_schema import (
    EVAL_TASK_NAMES,
    EVAL_TASKS,
    AlpacaEvalTaskConfig,
    ContaminationConfig,
    EvalConfig,
    EvalTaskConfig,
    FlaskJudgeConfig,
    FlaskTaskConfig,
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
    AmountSpace,
    BudgetMixture,
    BudgetSpec,
    Log2Grid,
    MixtureConfig,
    MixtureSpace,
    MixtureSpec,
    RatioMixture,
    RatioSpec,
    SpecialisedRatioMixture,
    SpecialisedRatioSpec,
    WeightsSpace,
    mixture_sources,
)

__all__ = [
    "AlpacaEvalTaskConfig",
    "FlaskJudgeConfig",
    "FlaskTaskConfig",
    "AmountSpace",
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
    "Log2Grid",
    "MTBenchPairwiseTaskConfig",
    "MTBenchTaskConfig",
    "MixtureConfig",
    "MixtureSpace",
    "MixtureSpec",
    "ModelConfig",
    "NonNegInt",
    "PositiveFloat",
    "PositiveInt",
    "RatioMixture",
    "RatioSpec",
    "ScalingConfig",
    "SchedulerConfig",
    "SearchConfig",
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
    "WeightsSpace",
    "mixture_sources",
    "parse_eval_task",
    "scheduler_metric",
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
    checkpoint_every: PositiveInt | None = None
    """Also checkpoint every this many optimizer steps inside a stage (model, optimizer, lr
    schedule, RNG and the position in the data), so a killed worker or driver resumes from there;
    None: only at each stage's end."""
    keep_checkpoints: PositiveInt = 2
    """Checkpoints kept per trial in the run folder; the latest is always kept (a resume needs it)."""
    keep_checkpoints_by: str = "latest"
    """Which ones: 'latest', or an eval/loss/* metric (a source, mean or weighted; lower is
    better) to keep the best by that metric besides the latest."""


class ScalingConfig(Strict):
    """How many Ray Train workers one trial uses, and what each gets."""

    num_workers: PositiveInt | Literal["auto"] = 2
    """Ray Train workers (DeepSpeed ranks) per trial; 'auto': as many as the largest node of the
    cluster holds (one per gpus_per_worker GPUs with use_gpu, e.g. 8 on a p4d.24xlarge; else one
    per cpus_per_worker CPUs), found once Ray is up. Unset: 'auto' with use_gpu (every GPU of a
    node), else 2."""
    use_gpu: bool = False
    """Give each worker a GPU (NCCL); False runs DeepSpeed on the CPU accelerator over gloo."""
    cpus_per_worker: PositiveFloat = 1.0
    """CPUs reserved per worker; also its torch thread count (at least 1)."""
    gpus_per_worker: PositiveFloat = 1.0
    """GPUs per worker when use_gpu is true."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places one trial's workers on nodes (a placement group's strategy): PACK fills
    as few nodes as it can, SPREAD puts them on as many (both fall back when they cannot);
    the STRICT_ forms wait instead of falling back."""
    wait_for_resources_s: Annotated[float, Field(ge=0)] = 0.0
    """On a Ray cluster that lacks what one trial needs: 0 stops at once with an error (a fixed
    cluster); more waits that many seconds for an autoscaling cluster to add nodes."""

    @model_validator(mode="before")
    @classmethod
    def _every_gpu_unless_told(cls, data: Any) -> Any:
        if isinstance(data, dict) and "num_workers" not in data and data.get("use_gpu") is True:
            return {**data, "num_workers": "auto"}
        return data

    @field_validator("num_workers", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value > 0):
            return value
        raise ValueError(f"should be a positive integer or 'auto' (got {value!r})")

    @property
    def workers(self) -> int:
        """``num_workers`` as a number (a sweep resolves 'auto' once Ray is up)."""
        if self.num_workers == "auto":
            raise RuntimeError("scaling.num_workers: 'auto' is resolved when Ray is up")
        return self.num_workers


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
    report_wait_s: NonNegFloat = 10.0
    """How long a trial waits for its logged metrics to reach MLflow at each report before it
    spools them to the run folder and trains on (delivery is retried in the background); once
    MLflow is known to be down, reports do not wait until a record gets through again."""
    end_wait_s: NonNegFloat = 120.0
    """How long a finished trial waits for MLflow to take what is left; the rest stays in the
    run folder's spool/ for `raymix sync RUN_FOLDER` or `raymix sweep --resume`."""


class SpaceParam(Strict):
    """One searched parameter: exactly one of grid, choice, uniform, loguniform, randint, and
    optionally ``when`` (sample it only for some values of another searched parameter)."""

    grid: list[Any] | None = None
    """Try every value (combined with the mixture grid); a categorical for Optuna."""
    choice: list[Any] | None = None
    """Sample one value per trial."""
    uniform: tuple[float, float] | None = None
    """Sample uniformly from [low, high]."""
    loguniform: tuple[float, float] | None = None
    """Sample log-uniformly from [low, high]."""
    randint: tuple[int, int] | None = None
    """Sample an int from [low, high)."""
    when: dict[str, list[Any]] | None = None
    """Sample this parameter only when other searched parameters (grid or choice) take one of
    the listed values, e.g. {strategy.name: [dmt]} for DMT's k, or when the trial's mixture is
    one of the listed mixture.grid names ({mixture: [all_1]}); otherwise the config's value
    stays. Conditions may chain (k on strategy.name on mixture), never in a circle."""

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
        if self.loguniform and not 0 < self.loguniform[0] <= self.loguniform[1]:
            raise ValueError(f"loguniform: need 0 < low <= high, got {list(self.loguniform)}")
        for rng in (self.uniform, self.randint):
            if rng and rng[0] > rng[1]:
                raise ValueError(f"low {rng[0]} is above high {rng[1]}")
        return self

    def values(self) -> list[Any] | None:
        """The finite values (grid or choice), else None."""
        return self.grid if self.grid is not None else self.choice


class SearchConfig(Strict):
    """Which searcher picks the trials' points."""

    algorithm: Literal["grid", "random", "tpe", "nsga2", "mixing_law"] = "grid"
    """grid: Tune's variant generator, every grid value crossed (mixture.grid names and grid
    parameters), the rest sampled num_samples times; needs mixture.grid or a finite
    mixture.space. random, tpe, nsga2: Optuna's RandomSampler, TPESampler or NSGAIISampler
    through Tune's OptunaSearch with a define-by-run space (conditional parameters sampled only
    when they apply); num_samples is then the number of trials. mixing_law: after
    n_startup_trials random trials (default 2 x (sources + 2)), each next mixture is the
    optimum of Ye et al.'s mixing law fitted to sweep.metric on the finished trials, perturbed
    (Dirichlet around it), or with probability `explore` a random one; needs mixture.space with
    Dirichlet weights; the amount and sweep.space's parameters are drawn at random."""
    seed: NonNegInt | None = None
    """Seed of the searcher (default: the experiment's seed): the same seed tries the same points
    when trials run one at a time."""
    metrics: list[str] | None = None
    """Multi-objective search (tpe or nsga2): several metrics, e.g. [eval/math/exact_match,
    eval/code/pass_at_1]; default: sweep.metric alone."""
    modes: list[Literal["min", "max"]] | None = None
    """min or max per metric of `metrics`."""
    n_startup_trials: PositiveInt = 4
    """tpe, mixing_law: random trials before the model of good points takes over (Optuna's
    default is 10; mixing_law's default is 2 x (sources + 2), and never fewer than sources + 2
    whatever this says)."""
    explore: Annotated[float, Field(ge=0, le=1)] = 0.2
    """mixing_law: the chance that a next trial is drawn at random instead of near the law's
    optimum."""
    concentration: PositiveFloat = 200.0
    """mixing_law: how tightly a next mixture clusters around the law's optimum (the Dirichlet
    concentration; higher is closer)."""

    @model_validator(mode="after")
    def _objectives(self) -> SearchConfig:
        if self.metrics is not None:
            if self.algorithm not in ("tpe", "nsga2"):
                raise ValueError(
                    f"metrics: several objectives need algorithm tpe or nsga2, not {self.algorithm}"
                )
            if not self.metrics or len(self.modes or []) != len(self.metrics):
                raise ValueError("metrics and modes need one mode (min or max) per metric")
        elif self.modes is not None:
            raise ValueError("modes needs metrics")
        return self


class SchedulerConfig(Strict):
    """Early stopping of weak trials, on a held-out loss reported at every evaluation."""

    name: Literal["none", "asha", "median"] = "none"
    """none: every trial runs to the end. asha: Tune's ASHAScheduler (asynchronous successive
    halving). median: Tune's MedianStoppingRule."""
    metric: str | None = None
    """What to compare: an eval/loss/* metric (a source, mean, or weighted); default
    eval/loss/weighted when eval.loss_weights is set, else eval/loss/mean. Never the training
    loss: early training loss misleads (Pareja et al.)."""
    mode: Literal["min", "max"] = "min"
    """Whether lower or higher `metric` is better."""
    time_attr: Literal["step", "tokens"] = "step"
    """The scheduler's clock: optimizer steps, or tokens trained on."""
    grace_period: PositiveInt | None = None
    """No trial stops before this much time_attr (default: train.eval_every steps; required
    in tokens with time_attr tokens)."""
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    """asha: keep the best 1/reduction_factor of the trials at each rung."""
    max_t: PositiveInt = 10**9
    """asha: the most time_attr a trial may use (the last rung)."""
    min_samples_required: PositiveInt = 3
    """median: trials needed at a point before one is compared with their median."""


class SweepConfig(Strict):
    """How Ray Tune runs the trials."""

    num_samples: PositiveInt = 1
    """grid search: repeats of the grid (each samples the non-grid parameters anew); random,
    tpe, nsga2: the number of trials."""
    max_concurrent_trials: PositiveInt = 1
    """Trials running at once (Tune's concurrency limiter); size it to the cluster (a trial that
    cannot get its workers waits)."""
    metric: str = "eval/loss/mean"
    """The Tune metric that ranks trials (the searcher's objective)."""
    mode: Literal["min", "max"] = "min"
    """Whether lower or higher `metric` is better."""
    storage_path: str | None = None
    """Where Ray Tune and Train keep results and checkpoints (shared storage on a cluster);
    default ./raymix_runs."""
    space: dict[str, SpaceParam] = {}
    """Searched parameters by dotted key, e.g. {'train.lr': {'loguniform': [1e-4, 3e-3]},
    'strategy.name': {'choice': [multitask, dmt]}, 'strategy.k': {'loguniform': [0.004, 1],
    'when': {'strategy.name': [dmt]}}}."""
    search: SearchConfig = SearchConfig()
    """The searcher."""
    scheduler: SchedulerConfig = SchedulerConfig()
    """Early stopping."""
    max_failures: NonNegInt = 1
    """Times a crashed trial is retried (Tune) and a crashed worker group restarted (Train)."""

    @model_validator(mode="after")
    def _conditions(self) -> SweepConfig:
        for key, p in self.space.items():
            for dep, allowed in (p.when or {}).items():
                if dep == "mixture":  # the grid's mixture names: checked with the grid
                    continue
                parent = self.space.get(dep)
                if parent is None or dep == key:
                    raise ValueError(
                        f"space.{key}.when: {dep!r} must be another searched parameter or "
                        f"'mixture'; searched: {', '.join(k for k in self.space if k != key) or 'none'}"
                    )
                values = parent.values()
                if values is None:
                    raise ValueError(
                        f"space.{key}.when: {dep!r} must be a grid or choice parameter"
                    )
                bad = [v for v in allowed if v not in values]
                if bad or not allowed:
                    raise ValueError(
                        f"space.{key}.when.{dep}: {bad or allowed} not among its values {values}"
                    )
        condition_depths(self.space)  # no cycle
        return self


def condition_depths(space: Mapping[str, SpaceParam]) -> dict[str, int]:
    """How deep each searched parameter's conditions go: 0 without ``when`` (or only on the
    mixture), else one more than its deepest condition. A parameter is sampled after those it
    depends on. Raises ValueError on a cycle."""
    depth: dict[str, int] = {}

    def visit(key: str, path: tuple[str, ...]) -> int:
        if key in path:
            raise ValueError(
                "space: the conditions (when) go round in a circle: " + " -> ".join((*path, key))
            )
        if key not in depth:
            deps = [d for d in space[key].when or {} if d in space]
            depth[key] = 1 + max((visit(d, (*path, key)) for d in deps), default=-1)
        return depth[key]

    for key in space:
        visit(key, ())
    return depth


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
        for mix, spec in (self.mixture.grid or {}).items():
            unknown = sorted(mixture_sources(spec) - set(names))
            if unknown:
                raise ValueError(
                    f"mixture.grid.{mix}: unknown source(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(names)}"
                )
        if self.mixture.space is not None:
            _check_space(self.mixture.space, names)
        for key, p in self.sweep.space.items():
            wanted = (p.when or {}).get("mixture")
            if wanted is None:
                continue
            if self.mixture.grid is None:
                raise ValueError(
                    f"sweep.space.{key}.when.mixture: conditions on the mixture need "
                    "mixture.grid (named mixtures)"
                )
            bad = [m for m in wanted if m not in self.mixture.grid]
            if bad or not wanted:
                raise ValueError(
                    f"sweep.space.{key}.when.mixture: {bad or wanted} not among mixture.grid's "
                    f"names {list(self.mixture.grid)}"
                )
        _check_search(self)
        _check_keep_by(self)
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


def _check_space(space: MixtureSpace, names: list[str]) -> None:
    """The space's sources exist, and its shares can be met."""
    w = space.weights
    simplex = space.simplex(names)
    if not simplex:
        raise ValueError("mixture.space.sources: the simplex is empty; name at least one source")
    for where, named in (
        ("sources", space.sources or []),
        ("weights.dirichlet", w.dirichlet if isinstance(w.dirichlet, dict) else {}),
        ("weights.ranges", w.ranges or {}),
        ("weights.min_share", w.min_share),
        ("weights.max_share", w.max_share),
    ):
        unknown = sorted(set(named) - set(names))
        if unknown:
            raise ValueError(
                f"mixture.space.{where}: unknown source(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(names)}"
            )
        outside = sorted(set(named) - set(simplex))
        if outside:
            raise ValueError(
                f"mixture.space.{where}: {', '.join(outside)} not on the simplex "
                f"({', '.join(simplex)})"
            )
    missing = [n for n in simplex if isinstance(w.dirichlet, dict) and n not in w.dirichlet]
    missing += [n for n in simplex if w.ranges is not None and n not in w.ranges]
    if missing:
        raise ValueError(
            f"mixture.space.weights: no concentration or range for {', '.join(missing)}"
        )
    if sum(w.max_share.get(n, 1.0) for n in simplex) < 1 - 1e-12:
        raise ValueError("mixture.space.weights.max_share: the shares cannot reach 1 in all")
    if space.amount.unit == "data" and space.amount.largest() > 1 and not space.allow_upsampling:
        raise ValueError(
            f"mixture.space.amount: {space.amount.largest():g} of the data needs "
            "allow_upsampling: true (above 1 repeats rows)"
        )


LOSS_METRICS = "eval/loss/"


def _check_search(cfg: ExperimentConfig) -> None:
    """The searcher can search this space; the scheduler has a held-out loss to compare."""
    sw, names = cfg.sweep, [s.name for s in cfg.sources]
    if sw.search.algorithm == "mixing_law":
        space = cfg.mixture.space
        if space is None or space.weights.dirichlet is None:
            raise ValueError(
                "sweep.search.algorithm: mixing_law proposes shares, so it needs mixture.space "
                "with Dirichlet weights (weights: {dirichlet: 1.0}); use grid, random or tpe "
                "otherwise"
            )
    if sw.search.algorithm == "grid":
        space = cfg.mixture.space
        if space is not None and (space.amount.values() is None or not space.weights.natural):
            raise ValueError(
                "sweep.search.algorithm: grid needs a finite mixture.space (weights.natural and "
                "an amount that is fixed, a choice or a log2_grid); use random, tpe or nsga2 to "
                "sample weights"
            )
        for key, p in sw.space.items():
            if p.when is not None and p.grid is None:
                raise ValueError(
                    f"sweep.space.{key}: under grid search a conditional parameter must be a grid"
                )
    weights = cfg.eval.loss_weights
    if weights is not None:
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(
                f"eval.loss_weights: unknown source(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(names)}"
            )
        if not any(v > 0 for v in weights.values()):
            raise ValueError("eval.loss_weights: give at least one source a positive weight")
    sch = sw.scheduler
    if sch.name == "none":
        return
    if cfg.train.eval_every is None:
        raise ValueError(
            f"sweep.scheduler: {sch.name} compares held-out losses during training; set "
            "train.eval_every (steps between evaluations)"
        )
    if sch.time_attr == "tokens" and sch.grace_period is None:
        raise ValueError(
            "sweep.scheduler.grace_period: with time_attr tokens, give the grace period in tokens"
        )
    metric = scheduler_metric(cfg)
    allowed = loss_metrics(cfg)
    if metric not in allowed:
        raise ValueError(
            f"sweep.scheduler.metric: {metric!r} is not reported during training; allowed: "
            f"{', '.join(allowed)} (the training loss misleads early, so it is not offered)"
        )


def loss_metrics(cfg: ExperimentConfig) -> list[str]:
    """The held-out loss metrics every report during training carries."""
    names = [*(s.name for s in cfg.sources), "mean"]
    if cfg.eval.loss_weights is not None:
        names.append("weighted")
    return [LOSS_METRICS + n for n in names]


def _check_keep_by(cfg: ExperimentConfig) -> None:
    by = cfg.train.keep_checkpoints_by
    allowed = loss_metrics(cfg)
    if by != "latest" and by not in allowed:
        raise ValueError(
            f"train.keep_checkpoints_by: {by!r} is not in every checkpoint's report; allowed: "
            f"latest, {', '.join(allowed)}"
        )


def scheduler_metric(cfg: ExperimentConfig) -> str:
    """The metric the scheduler compares (see ``SchedulerConfig.metric``)."""
    sch = cfg.sweep.scheduler
    if sch.metric:
        return sch.metric
    return LOSS_METRICS + ("weighted" if cfg.eval.loss_weights is not None else "mean")
