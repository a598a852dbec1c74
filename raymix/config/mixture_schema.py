"""The mixture part of the experiment schema: named mixtures of counts, fractions, Dong et al.'s
normalised ratio, Wang et al.'s specialised : general ratio, or a budget in examples or tokens."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from raymix.config.base import PositiveInt, Strict

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


class MixtureConfig(Strict):
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
