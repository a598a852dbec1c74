"""Tune's OptunaSearch, keeping a little more of each finished trial for the samplers.

Imported only when a sweep searches with Optuna (it imports Ray Tune's Optuna integration).
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class LossKeepingSearch(OptunaSearch):  # type: ignore[misc]
    """OptunaSearch that also keeps each finished trial's held-out losses as the Optuna
    trial's ``metrics`` user attribute: the mixing-law sampler fits a law per source's loss,
    not only the one metric Optuna is told."""

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None and result and trial_id not in self._completed_trials:
            losses = {
                k: float(v)
                for k, v in result.items()
                if k.startswith("eval/loss/") and isinstance(v, int | float)
            }
            if losses:
                trial.set_user_attr("metrics", losses)
        super().on_trial_complete(trial_id, result, error)
