"""AlpacaEval 0.6's metrics over per-example preferences: head-to-head win rates and the
length-controlled GLM.

A preference is the probability that the trial's output is better than the baseline's, in
[0, 1] (0.5 is a tie); NaN marks an unparsable judgement, which every metric leaves out (the
length scale still counts its row, as AlpacaEval's does). :func:`head_to_head` is
``alpaca_eval.metrics.get_winrate`` on the same preferences (AlpacaEval's scale is ours plus 1).

:func:`length_controlled_minimal_win_rate` is AlpacaEval's ``length_controlled_minimal`` GLM, the
one of its three that needs nothing downloaded: the preference modelled as
``sigmoid(w1 * tanh(d / std(d)) + w2)`` with ``d`` the baseline's output length minus the
trial's (characters) and ``std`` its sample standard deviation (not centred), fitted on soft labels
by scikit-learn's ``LogisticRegressionCV`` (liblinear, L1, 5 group folds, no intercept column
besides ``w2``, ``random_state=123``) and read at ``d = 0``. AlpacaEval's leaderboard number,
``length_controlled_v1``, adds a per-instruction difficulty term and a regularisation toward its
"gamed" baselines, both fitted on its leaderboard and downloaded from the Hugging Face hub; they
exist only for AlpacaEval's own 805 instructions, so they are not computed here and this metric
carries the name of the GLM it equals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MIN_ROWS_FOR_LC",
    "head_to_head",
    "length_controlled_minimal_win_rate",
    "preference_from_logprobs",
]

MIN_ROWS_FOR_LC = 5
"""Fewest parsed examples the GLM is fitted on (it cross-validates over 5 folds)."""

_N_SPLITS = 5
_RANDOM_STATE = 123


def preference_from_logprobs(
    top_logprobs: dict[str, float], first: str = "m", second: str = "M"
) -> float | None:
    """Probability that the first-shown output is preferred, from the judge's first token.

    AlpacaEval's ``logprob_parser`` (``is_binarize=False``): ``p(first) / (p(first) + p(second))``
    over the two identifier tokens among the top log-probabilities, a missing one counting as
    probability 0; None when neither is there.
    """
    found = {t: lp for t, lp in top_logprobs.items() if t in (first, second)}
    if not found:
        return None
    lp_first = found.get(first, -np.inf)
    lp_second = found.get(second, -np.inf)
    return float(np.exp(lp_first - np.logaddexp(lp_first, lp_second)))


def head_to_head(preferences: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Win rate (ties half), its standard error, the discrete win rate and the counts, in
    percent where rates; AlpacaEval's ``get_winrate`` on the same preferences.

    ``discrete_win_rate`` rounds each preference to a win or a loss (exact ties stay ties) before
    averaging. Rates need at least one parsed preference, the standard error two.
    """
    p = np.asarray(preferences, dtype=float)
    n_draws = int(np.sum(p == 0.5))
    p = p[~np.isnan(p)]
    out: dict[str, float] = {
        "n_wins": float(np.sum(p > 0.5)),
        "n_wins_base": float(np.sum(p < 0.5)),
        "n_draws": float(n_draws),
        "n_total": float(len(p)),
    }
    if len(p):
        out["win_rate"] = float(100 * p.mean())
        # AlpacaEval rounds on its 1..2 scale, half to even (pandas' round)
        discrete = np.where(p == 0.5, 0.5, np.round(p + 1) - 1)
        out["discrete_win_rate"] = float(100 * discrete.mean())
    if len(p) > 1:
        out["standard_error"] = float(100 * p.std(ddof=1) / np.sqrt(len(p)))
    return out


def length_controlled_minimal_win_rate(
    preferences: Sequence[float] | np.ndarray,
    output_lengths: Sequence[float] | np.ndarray,
    baseline_lengths: Sequence[float] | np.ndarray,
) -> float | None:
    """AlpacaEval's ``length_controlled_minimal`` win rate, in percent (see the module doc).

    Args:
        preferences: Per example, the probability the trial's output is preferred; NaN where
            the judgement could not be read (left out of the fit, kept in the length scale).
        output_lengths: The trial's output lengths in characters.
        baseline_lengths: The baseline's output lengths in characters.

    Returns:
        The predicted win rate at equal lengths, or None when it cannot be fitted: fewer than
        :data:`MIN_ROWS_FOR_LC` parsed examples, or no spread of length differences.
    """
    y = np.asarray(preferences, dtype=float)
    delta = np.asarray(baseline_lengths, dtype=float) - np.asarray(output_lengths, dtype=float)
    scale = float(delta.std(ddof=1)) if len(delta) > 1 else 0.0
    keep = ~np.isnan(y)
    if int(keep.sum()) < MIN_ROWS_FOR_LC or not scale > 0:
        return None
    design = np.column_stack([np.tanh(delta / scale), np.ones_like(delta)])[keep]
    model = _fit_soft_logistic_cv(design, y[keep])
    at_equal_length = np.array([[0.0, 1.0]])
    return float(100 * model.predict_proba(at_equal_length)[0, 1])


def _fit_soft_logistic_cv(design: np.ndarray, y: np.ndarray) -> Any:
    """AlpacaEval's ``fit_LogisticRegressionCV(is_ytrue_proba=True)``: each row twice, labelled 1
    with weight ``y`` and 0 with weight ``1 - y``; C chosen by the soft log loss over group folds
    that keep a row's two copies together."""
    from sklearn import config_context
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(y)
    features = np.vstack([design, design])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    true_prob = np.concatenate([y, 1 - y])
    groups = np.concatenate([np.arange(n), np.arange(n)])
    with config_context(enable_metadata_routing=True):
        scorer = make_scorer(
            _soft_log_loss, response_method="predict_proba", greater_is_better=False
        ).set_score_request(true_prob=True, true_sample_weight=True)
        model = LogisticRegressionCV(
            cv=GroupKFold(n_splits=_N_SPLITS),
            scoring=scorer,
            l1_ratios=(1.0,),  # penalty="l1" before scikit-learn 1.8
            solver="liblinear",
            dual=False,
            fit_intercept=False,
            random_state=_RANDOM_STATE,
            use_legacy_attributes=False,
        )
        model.set_fit_request(sample_weight=True)
        model.fit(
            features,
            labels,
            sample_weight=true_prob,
            groups=groups,
            true_prob=true_prob,
            true_sample_weight=None,
        )
    return model


def _soft_log_loss(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    true_prob: np.ndarray,
    true_sample_weight: np.ndarray | None = None,
) -> float:
    """AlpacaEval's ``logloss_continuous``: the log loss against the soft label of each copy."""
    target = np.where(y_true == 1, true_prob, 1 - true_prob)
    pred = np.clip(y_pred, 1e-15, 1 - 1e-15)
    losses = target * np.log(pred) + (1 - target) * np.log(1 - pred)
    if true_sample_weight is not None:
        losses = losses * true_sample_weight
    return float(-np.mean(losses))
