"""What several benchmarks share: timing every ``ray.tune.Tuner.fit`` of a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def timed_tuner_fits() -> Iterator[list[float]]:
    """Record the duration of every ``ray.tune.Tuner.fit`` (a timing wrapper, nothing replaced)."""
    from ray import tune

    original: Callable[..., Any] = tune.Tuner.fit
    times: list[float] = []

    def fit(self: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self)
        finally:
            times.append(time.perf_counter() - start)

    tune.Tuner.fit = fit  # type: ignore[method-assign]
    try:
        yield times
    finally:
        tune.Tuner.fit = original  # type: ignore[method-assign]
