"""``sweep.search.algorithm: mixing_law``: an Optuna sampler whose next mixture is the optimum of
Ye et al.'s mixing law fitted to the finished trials (in the spirit of RegMix's and CLIMB's
iterative predictors), so it runs through Tune's ``OptunaSearch`` like tpe: the same
define-by-run space, conditions, seeds, concurrency and saved state.

- Until ``n_startup_trials`` trials have finished (default 2 × (sources + 2); never fewer than
  sources + 2, the law's free parameters plus one), and afterwards with
  probability ``explore``, every value is drawn by Optuna's RandomSampler.
- Otherwise the law ``L(r) = c + k·exp(Σ t_j r_j)`` is fitted to ``sweep.metric`` against the
  finished trials' shares; its optimum within ``min_share``/``max_share`` is perturbed by a
  Dirichlet of ``concentration`` around it and turned back into the uniform draws the space
  maps to shares (the inverse of the inverse-Gamma-CDF map, exact within the share bounds).
  The amount and every other searched parameter are still drawn at random: the law models
  shares only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from raymix.analysis.mixing_law import Target, fit_law, into_bounds, optimum
from raymix.analysis.mixing_law import min_trials as law_min_trials
from raymix.config.schema import ExperimentConfig
from raymix.data.simplex import DRAW_EPS, shares
from raymix.data.simplex import DRAW_PREFIX as DRAW


class MixingLawSampler(BaseSampler):
    """The mixing-law searcher as an Optuna sampler (see the module)."""

    def __init__(self, cfg: ExperimentConfig, seed: int) -> None:
        space = cfg.mixture.space
        assert space is not None and space.weights.dirichlet is not None
        self.space = space
        self.simplex = space.simplex([s.name for s in cfg.sources])
        d = space.weights.dirichlet
        self.alpha = np.array([d[n] if isinstance(d, dict) else d for n in self.simplex], float)
        self.lower = np.array([space.weights.min_share.get(n, 0.0) for n in self.simplex])
        self.upper = np.array([space.weights.max_share.get(n, 1.0) for n in self.simplex])
        s = cfg.sweep.search
        # the law has M + 1 free parameters: at least M + 2 trials to fit it; by default the
        # 2 x (M + 2) that recommend asks for, fewer only when n_startup_trials says so
        m = len(self.simplex)
        wanted = s.n_startup_trials if "n_startup_trials" in s.model_fields_set else 0
        self.startup = max(m + 2, wanted or law_min_trials(m))
        # a weighted held-out loss is a sum of per-source losses, each with its own law (Ye et
        # al. fit one per domain and optimise the weighted sum); one law for the sum would put
        # its optimum on a vertex of the simplex
        self.parts: dict[str, float] = {}
        if cfg.sweep.metric in ("eval/loss/mean", "eval/loss/weighted"):
            weights = cfg.eval.loss_weights if cfg.sweep.metric.endswith("weighted") else None
            names = [src.name for src in cfg.sources]
            self.parts = {
                f"eval/loss/{n}": float((weights or {}).get(n, 0.0 if weights else 1.0))
                for n in names
            }
            self.parts = {k: w for k, w in self.parts.items() if w > 0}
        self.explore = s.explore
        self.concentration = s.concentration
        self.seed = seed
        self._random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()
        self.proposals: dict[int, dict[str, float]] = {}
        """Per trial number, the shares the law proposed (none: drawn at random)."""

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {k: v for k, v in self._space.calculate(study).items() if k.startswith(DRAW)}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        keys = [DRAW + n for n in self.simplex]
        if not all(k in search_space for k in keys):
            return {}
        done = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and all(k in t.params for k in keys)
        ]  # fmt: skip
        rng = np.random.default_rng([self.seed, trial.number])
        if len(done) < self.startup or rng.random() < self.explore:
            return {}
        try:
            best = self._law_optimum(study, done)
        except (ValueError, np.linalg.LinAlgError):
            return {}
        near = rng.dirichlet(self.concentration * best + 1e-3)
        proposal = into_bounds(near, self.upper, self.lower)
        self.proposals[trial.number] = dict(zip(self.simplex, proposal.tolist(), strict=True))
        return dict(zip(keys, self.draws_for(proposal).tolist(), strict=True))

    def _law_optimum(self, study: Study, done: list[FrozenTrial]) -> np.ndarray:
        """The optimum of the laws fitted to the finished trials: one per source's held-out
        loss, weighted, where the trials carry them (``metrics`` user attribute); else one law
        for the searched metric itself."""
        parts = [t for t in done if all(k in t.user_attrs.get("metrics", {}) for k in self.parts)]
        if self.parts and len(parts) >= self.startup:
            r = np.array([self.shares_of(t.params) for t in parts])
            laws = [fit_law(r, np.array([t.user_attrs["metrics"][k] for t in parts]), self.seed)
                    for k in self.parts]  # fmt: skip
            targets = [Target(k, "min", w) for k, w in self.parts.items()]
        else:
            r = np.array([self.shares_of(t.params) for t in done])
            laws = [fit_law(r, np.array([t.value for t in done], dtype=float), self.seed)]
            mode = "min" if study.direction == StudyDirection.MINIMIZE else "max"
            targets = [Target("metric", mode)]
        return optimum(laws, targets, upper=self.upper.tolist(), lower=self.lower.tolist(),
                       seed=self.seed)  # fmt: skip

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def shares_of(self, params: dict[str, Any]) -> list[float]:
        """A trial's shares (what its plan trains on) from its draws."""
        draws = {n: float(params[DRAW + n]) for n in self.simplex}
        point = shares(self.space, self.simplex, draws, {})
        return [point[n] for n in self.simplex]

    def draws_for(self, target: np.ndarray) -> np.ndarray:
        """The uniform draws whose shares are ``target`` (within the share bounds): undo the
        minima's affine map, scale to Gamma variates, and take their CDF."""
        from scipy.special import gammainc

        base = (target - self.lower) / max(1e-12, 1.0 - self.lower.sum())
        raw = np.maximum(base, 0.0) * self.alpha.sum()
        return np.clip(gammainc(self.alpha, raw), DRAW_EPS, 1 - DRAW_EPS)


def law_sampler(cfg: ExperimentConfig, seed: int) -> optuna.samplers.BaseSampler:
    return MixingLawSampler(cfg, seed)
