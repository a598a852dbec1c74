"""What every schema model shares: strict pydantic v2 models that forbid unknown keys and carry a
docstring on every field (what ``raymix validate --help-keys`` prints), and the number types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True, frozen=True)

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    """Base of every schema model: strict types, unknown keys forbidden, immutable."""

    model_config = MODEL_CONFIG
