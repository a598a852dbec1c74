"""The mixture part of the experiment schema: either a grid of named mixtures (counts, fractions,
Dong et al.'s normalised ratio, Wang et al.'s specialised : general ratio, or a budget in examples
or tokens), or a search space: weights on the simplex over chosen sources (Dirichlet, per-source
ranges, or the sources' natural sizes, with optional min and max shares) and a total amount
decoupled from them (fixed, a choice, log-uniform, or a log2 grid)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from raymix.config.base import NonNegInt, PositiveFloat, PositiveInt, Strict

MixtureValue = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)]
Amounts = dict[str, MixtureValue]


class RatioSpec(Strict):
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


class SpecialisedRatioSpec(Strict):
    """Wang et al.'s specialised : general ratio: the general sources as given, then
    ``ratio`` x (general rows) specialised rows split evenly over the specialised sources."""

    general: Amounts
    """General sources and their amounts."""
    specialised: list[str]
    """Specialised sources sharing ratio x general rows (largest-remainder split)."""
    ratio: Annotated[float, Field(ge=0)]
    """Specialised rows per general row."""


class BudgetSpec(Strict):
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


class RatioMixture(Strict):
    """A mixture given by Dong's normalised ratio."""

    ratio: RatioSpec
    """The ratio spec."""


class SpecialisedRatioMixture(Strict):
    """A mixture given by Wang's specialised : general ratio."""

    specialised_ratio: SpecialisedRatioSpec
    """The specialised-ratio spec."""


class BudgetMixture(Strict):
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


Share = Annotated[float, Field(ge=0, le=1)]


class WeightsSpace(Strict):
    """Mixture weights on the simplex over the space's sources: exactly one of ``dirichlet``,
    ``ranges`` or ``natural``; then ``min_share`` / ``max_share`` bound each source's share."""

    dirichlet: PositiveFloat | dict[str, PositiveFloat] | None = None
    """Dirichlet concentration: one number for every source (1.0 is uniform on the simplex,
    below 1 favours corners, above 1 the centre) or one per source. Each source's weight is
    the inverse Gamma CDF of a uniform draw, normalised: searchers see one uniform per source."""
    ranges: (
        dict[str, tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]] | None
    ) = None
    """Per source, [low, high]: a uniform draw in the range, then all normalised to sum to 1."""
    natural: bool = False
    """Weights proportional to each source's train pool (only the amount is searched)."""
    min_share: dict[str, Share] = {}
    """Least share per source (the sampled point is rescaled onto the smaller simplex)."""
    max_share: dict[str, Share] = {}
    """Largest share per source (the excess goes to the others, in proportion)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> WeightsSpace:
        given = [k for k in ("dirichlet", "ranges", "natural") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of dirichlet, ranges, natural"
                + (f" (got {', '.join(given)})" if given else "")
            )
        for name, (lo, hi) in (self.ranges or {}).items():
            if lo > hi:
                raise ValueError(f"ranges.{name}: low {lo} is above high {hi}")
        if self.ranges is not None and not any(hi > 0 for _, hi in self.ranges.values()):
            raise ValueError("ranges: the simplex is empty (every range is [0, 0])")
        if sum(self.min_share.values()) > 1 + 1e-12:
            raise ValueError(
                f"min_share: the shares sum to {sum(self.min_share.values()):g}, above 1"
            )
        for name, lo in self.min_share.items():
            if lo > self.max_share.get(name, 1.0):
                raise ValueError(f"min_share.{name} ({lo:g}) is above max_share.{name}")
        return self


class Log2Grid(Strict):
    """Every halving from ``high`` down: high, high/2, ..., high / 2**halvings."""

    high: PositiveFloat
    """The largest amount."""
    halvings: NonNegInt
    """How many times to halve it (8 gives 1 ... 1/256 of the data with high 1)."""

    def values(self) -> list[float]:
        """The grid, largest first."""
        return [self.high / 2**i for i in range(self.halvings + 1)]


class AmountSpace(Strict):
    """The mixture's total amount, decoupled from its weights: exactly one of fixed, choice,
    loguniform, log2_grid."""

    unit: Literal["examples", "tokens", "data"] = "examples"
    """What the amount counts: examples, tokens (after the template and truncation), or data:
    a fraction of the space's sources' train pools together (1 is all of them)."""
    fixed: PositiveFloat | None = None
    """One amount for every trial."""
    choice: list[PositiveFloat] | None = None
    """Amounts to choose from."""
    loguniform: tuple[PositiveFloat, PositiveFloat] | None = None
    """Sample log-uniformly from [low, high]."""
    log2_grid: Log2Grid | None = None
    """A grid of halvings, e.g. {high: 1, halvings: 8} with unit data (Dong et al.'s amounts)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> AmountSpace:
        given = [k for k in ("fixed", "choice", "loguniform", "log2_grid") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of fixed, choice, loguniform, log2_grid"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.loguniform and self.loguniform[0] > self.loguniform[1]:
            raise ValueError(f"loguniform: low {self.loguniform[0]} is above high")
        return self

    def values(self) -> list[float] | None:
        """The finite amounts (fixed, choice, log2_grid), or None for loguniform."""
        if self.fixed is not None:
            return [self.fixed]
        if self.choice is not None:
            return list(self.choice)
        if self.log2_grid is not None:
            return self.log2_grid.values()
        return None

    def largest(self) -> float:
        """The largest amount a trial can ask for."""
        finite = self.values()
        return max(finite) if finite is not None else self.loguniform[1]  # type: ignore[index]


class MixtureSpace(Strict):
    """A mixture search space: weights on the simplex times a total amount. Every sampled point
    compiles to an exact plan (largest-remainder counts, seeded rows)."""

    sources: list[str] | None = None
    """The simplex's vertices; default: the sources named by weights.dirichlet or
    weights.ranges, else every source."""
    weights: WeightsSpace = WeightsSpace(dirichlet=1.0)
    """How the weights are drawn (default: Dirichlet(1), uniform on the simplex)."""
    amount: AmountSpace
    """The total amount."""
    allow_upsampling: bool = False
    """Let a source give more rows than its train pool (repeats). Otherwise a source's count is
    capped at its pool and the rest goes to the other sources, in proportion to their weights."""

    def simplex(self, all_sources: list[str]) -> list[str]:
        """The space's sources, in a fixed order."""
        w = self.weights
        if self.sources is not None:
            return list(self.sources)
        if isinstance(w.dirichlet, dict):
            return list(w.dirichlet)
        if w.ranges is not None:
            return list(w.ranges)
        return list(all_sources)


class MixtureConfig(Strict):
    """The mixtures the sweep tries: a grid of named mixtures, or a search space."""

    grid: dict[str, MixtureSpec] | None = None
    """Named mixtures. Each is either {source: amount} (an int is a count of rows, a float a
    fraction of the source's train pool, above 1 upsampling), or {ratio: ...} (Dong's normalised
    ratio k), {specialised_ratio: ...} (Wang's specialised : general) or {budget: ...} (a total in
    examples or tokens split by proportions)."""
    space: MixtureSpace | None = None
    """A search space over mixtures (weights on the simplex x amount); searched by
    sweep.search."""

    @model_validator(mode="after")
    def _not_empty(self) -> MixtureConfig:
        if (self.grid is None) == (self.space is None):
            raise ValueError("give exactly one of grid (named mixtures) or space (a search space)")
        if self.grid is not None and not self.grid:
            raise ValueError("grid needs at least one named mixture")
        for name, spec in (self.grid or {}).items():
            if isinstance(spec, dict) and not any(v > 0 for v in spec.values()):
                raise ValueError(f"mixture {name!r} has no source with a positive amount")
        return self

    @property
    def names(self) -> list[str]:
        """The grid's mixture names (empty for a space)."""
        return list(self.grid or {})
