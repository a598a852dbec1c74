"""Integer parts that add up: the one largest-remainder rounding every plan and split uses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import TypeVar

from raymix.errors import ConfigError

K = TypeVar("K", str, int)


def largest_remainder(total: int, weights: Mapping[K, float | Fraction]) -> dict[K, int]:
    """Split ``total`` by normalised ``weights`` (Hamilton's method, in exact arithmetic): each
    part gets the floor of its share, then the largest remainders get +1, ties to the smallest
    key. The parts always sum to ``total``."""
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError(f"proportions must be non-negative and not all zero, got {dict(weights)}")
    wsum = sum(Fraction(w) for w in weights.values())
    exact = {n: total * Fraction(w) / wsum for n, w in weights.items()}
    out = {n: math.floor(x) for n, x in exact.items()}
    short = total - sum(out.values())
    for n in sorted(exact, key=lambda n: (-(exact[n] - out[n]), n))[:short]:
        out[n] += 1
    return out
