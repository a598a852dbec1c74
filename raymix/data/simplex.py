"""Points of a mixture search space → shares on the simplex → whole counts per source.

A searcher hands a trial one number per source (``draws``) and an amount. The numbers become
shares deterministically: a Dirichlet(α) weight is the inverse Gamma(α) CDF of a uniform draw
(normalised Gamma variates are Dirichlet-distributed, so independent uniforms — what Optuna and
Tune sample — cover the simplex with the requested concentration); a range draw is normalised
as it is; natural weights follow the sources' sizes. ``min_share`` rescales the point onto the
smaller simplex above the minima, ``max_share`` clips and hands the excess to the others. Counts
come from the exact largest-remainder rounding, capped at each source's pool unless upsampling
is allowed (the excess again goes to the others, in proportion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from raymix.config.schema import MixtureSpace
from raymix.data.rounding import largest_remainder
from raymix.errors import ConfigError

DRAW_EPS = 1e-9
"""Uniform draws are kept inside [eps, 1 - eps] so the inverse CDF stays finite."""

DRAW_PREFIX = "mixture.draw."
"""A trial config's key of a source's draw: ``mixture.draw.<source>``."""

POINT_NAME = "sampled"
"""The mixture name of a trial whose mixture was drawn from mixture.space."""


@dataclass(frozen=True)
class MixturePoint:
    """One point of ``mixture.space``: the searcher's draw per source (a uniform in (0, 1) for
    Dirichlet weights, the range draw for ranges, none for natural weights) and the amount."""

    draws: dict[str, float]
    amount: float


def shares(
    space: MixtureSpace,
    simplex: Sequence[str],
    draws: Mapping[str, float],
    sizes: Mapping[str, int],
) -> dict[str, float]:
    """The point's share per source of ``simplex`` (summing to 1), within the min and max
    shares. ``sizes`` are the sources' pools in the amount's unit (for natural weights)."""
    w = space.weights
    if w.natural:
        raw = {n: float(sizes[n]) for n in simplex}
    elif w.dirichlet is not None:
        from scipy.special import gammaincinv

        alpha = (
            w.dirichlet if isinstance(w.dirichlet, dict) else dict.fromkeys(simplex, w.dirichlet)
        )
        raw = {
            n: float(gammaincinv(alpha[n], min(max(draws[n], DRAW_EPS), 1 - DRAW_EPS)))
            for n in simplex
        }
    else:
        raw = {n: float(draws[n]) for n in simplex}
    total = sum(raw.values())
    base = {n: (v / total if total > 0 else 1 / len(simplex)) for n, v in raw.items()}
    return bound(base, w.min_share, w.max_share)


def bound(
    point: Mapping[str, float], mins: Mapping[str, float], maxs: Mapping[str, float]
) -> dict[str, float]:
    """``point`` (on the simplex) moved inside the share bounds: first onto the simplex above
    the minima (``m + (1 - sum m) * point``, which keeps a Dirichlet a Dirichlet there), then
    every share above its maximum clipped and the excess handed to the shares with room, in
    proportion to what they hold above their minima (by their room when none holds any)."""
    lo = {n: mins.get(n, 0.0) for n in point}
    hi = {n: maxs.get(n, 1.0) for n in point}
    free = 1.0 - sum(lo.values())
    out = {n: lo[n] + free * v for n, v in point.items()}
    for _ in range(len(out)):
        over = {n for n, v in out.items() if v > hi[n] + 1e-15}
        if not over:
            break
        excess = sum(out[n] - hi[n] for n in over)
        for n in over:
            out[n] = hi[n]
        room = {n: hi[n] - out[n] for n in out if out[n] < hi[n]}
        above = {n: out[n] - lo[n] for n in room}
        key = above if sum(above.values()) > 0 else room
        weight = sum(key.values())
        for n in room:
            out[n] += excess * key[n] / weight
    return out


def fill(
    total: int, weights: Mapping[str, float], caps: Mapping[str, int] | None, where: str
) -> dict[str, int]:
    """``total`` split by ``weights`` into whole counts (largest remainder); with ``caps``, no
    count exceeds its cap and what a capped source cannot take goes to the others by weight."""
    if caps is not None and total > sum(caps.values()):
        raise ConfigError(
            f"{where}: {total} asked of sources that hold {sum(caps.values())} together; lower "
            "the amount or set mixture.space.allow_upsampling: true"
        )
    plain = largest_remainder(total, weights) if sum(weights.values()) > 0 else None
    if plain is not None and (caps is None or all(plain[n] <= caps[n] for n in plain)):
        return plain  # no cap binds
    counts: dict[str, int] = {}
    active = {n: Fraction(w) for n, w in weights.items()}
    left = total
    while caps is not None and active:
        wsum = sum(active.values())
        exact = {
            n: (left * w / wsum if wsum > 0 else Fraction(left, len(active)))
            for n, w in active.items()
        }
        over = [n for n, x in exact.items() if x > caps[n]]
        if not over:
            break
        for n in over:
            counts[n] = caps[n]
            left -= caps[n]
            del active[n]
    if active:
        if sum(active.values()) <= 0:
            active = dict.fromkeys(active, Fraction(1))
        counts.update(largest_remainder(left, active))
    return {n: counts.get(n, 0) for n in weights}
