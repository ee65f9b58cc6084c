"""Bootstrap uncertainty of the ranking metrics, and paired model comparisons, over users.

The evaluated user is the unit of resampling: :func:`bootstrap_weights` draws one seeded matrix of
resample counts, every metric's resampled means are one matrix product, :func:`metric_intervals` gives
percentile intervals, and paired differences apply the same resamples to per-user differences, with win,
tie and loss rates. See docs/design/evaluation.md.

Examples
--------
>>> import numpy as np
>>> weights = bootstrap_weights(n_users=4, samples=3, seed=0)
>>> weights.shape, weights.sum(axis=1).tolist()
((3, 4), [4, 4, 4])
>>> constant = {"ndcg_at_10": np.full(4, 0.5)}
>>> metric_intervals(constant, weights)["ndcg_at_10"]
{'mean': 0.5, 'low': 0.5, 'high': 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from reco.evaluation.metrics import RankingResult, common_evaluated_users

__all__ = [
    "CONFIDENCE",
    "DEFAULT_COMPARISONS",
    "bootstrap_means",
    "bootstrap_weights",
    "comparison_name",
    "metric_intervals",
    "paired_differences",
    "paired_plot_rows",
    "percentile_interval",
    "uncertainty_report",
]

CONFIDENCE: Final = 0.95
# (A, B) pairs reported as A - B; a pair is skipped when either model was not evaluated.
# popularity - duration_popularity: what popularity knows beyond the duration effect;
# oracle - oracle_watch_ratio: what ranking by the label's probability gains over the mean ratio.
DEFAULT_COMPARISONS: Final[tuple[tuple[str, str], ...]] = (
    ("ranker", "als"),
    ("ranker", "popularity"),
    ("als", "popularity"),
    ("popularity", "duration_popularity"),
    ("oracle", "oracle_watch_ratio"),
)
# Beyond this many (samples x users) cells the count matrix would take gigabytes.
_MAX_CELLS: Final = 200_000_000


def comparison_name(a: str, b: str) -> str:
    """Key of the paired comparison ``a - b``.

    Examples
    --------
    >>> comparison_name("ranker", "als")
    'ranker-als'
    """
    return f"{a}-{b}"


def bootstrap_weights(n_users: int, samples: int, seed: int) -> np.ndarray:
    """Draw ``samples`` bootstrap resamples of ``n_users`` users as a matrix of counts.

    Row ``b`` counts how many times each user is drawn in resample ``b``. The draws are
    ``np.random.default_rng(seed).integers(0, n_users, size=(samples, n_users))`` (row ``b`` lists
    the users of resample ``b``), so a reference implementation can regenerate them.

    Parameters
    ----------
    n_users
        Number of users to resample, ``>= 1``.
    samples
        Number of bootstrap resamples, ``>= 1``.
    seed
        Seed of the numpy generator.

    Returns
    -------
    np.ndarray
        ``(samples, n_users)`` int64 counts; every row sums to ``n_users``.

    Examples
    --------
    >>> w = bootstrap_weights(3, 2, seed=1)
    >>> w.shape, bool((w.sum(axis=1) == 3).all())
    ((2, 3), True)
    """
    if n_users < 1 or samples < 1:
        raise ValueError(f"n_users and samples must be >= 1, got n_users={n_users}, samples={samples}")
    if n_users * samples > _MAX_CELLS:
        raise ValueError(f"samples x users = {samples} x {n_users} is too large (limit {_MAX_CELLS:,} cells)")
    draws = np.random.default_rng(seed).integers(0, n_users, size=(samples, n_users))
    flat = draws + (np.arange(samples, dtype=np.int64) * n_users)[:, None]
    return np.bincount(flat.ravel(), minlength=samples * n_users).reshape(samples, n_users)


_GRID = float(2**40)


def bootstrap_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Means of ``values`` under each resample of ``weights``.

    Parameters
    ----------
    values
        ``(n_users,)`` or ``(n_users, n_metrics)`` per-user values.
    weights
        ``(samples, n_users)`` counts from :func:`bootstrap_weights`.

    Returns
    -------
    np.ndarray
        ``(samples,)`` or ``(samples, n_metrics)`` float64 resampled means.

    Examples
    --------
    >>> import numpy as np
    >>> bootstrap_means(np.array([0.0, 1.0]), np.array([[2, 0], [1, 1]])).tolist()
    [0.0, 0.5]
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights)
    if weights.ndim != 2 or values.shape[0] != weights.shape[1]:
        raise ValueError(f"weights {weights.shape} do not match values {values.shape}: need (samples, n_users)")
    totals = weights.sum(axis=1, dtype=np.float64)
    # Values on a 2**-40 grid and integer counts: every product and partial sum of the matrix
    # product is exact in float64 (below 2**53 grid units for up to ~8,000 users of values <= 1),
    # so the result does not depend on the BLAS kernel's summation order (the same on every CPU).
    grid = np.rint(values * _GRID) / _GRID
    means = weights.astype(np.float64) @ grid
    return means / (totals[:, None] if means.ndim == 2 else totals)


def percentile_interval(resampled: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along axis 0.

    Parameters
    ----------
    resampled
        ``(samples, ...)`` resampled statistics.
    confidence
        Coverage of the interval, in (0, 1).

    Returns
    -------
    tuple of np.ndarray
        ``(low, high)``: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles.

    Examples
    --------
    >>> import numpy as np
    >>> low, high = percentile_interval(np.arange(5.0), 0.5)
    >>> float(low), float(high)
    (1.0, 3.0)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(resampled, dtype=np.float64), [alpha, 1.0 - alpha], axis=0)
    return low, high


def _stack(per_user: Mapping[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    return np.column_stack([np.asarray(per_user[key], dtype=np.float64) for key in keys])


def metric_intervals(
    per_user: Mapping[str, np.ndarray],
    weights: np.ndarray,
    confidence: float = CONFIDENCE,
    ndigits: int | None = None,
) -> dict[str, dict[str, float]]:
    """Mean and percentile bootstrap interval of every per-user metric.

    Parameters
    ----------
    per_user
        Metric key -> ``(n_users,)`` per-user values (e.g. :attr:`RankingResult.per_user`).
    weights
        ``(samples, n_users)`` resample counts from :func:`bootstrap_weights`.
    confidence
        Coverage of the interval.
    ndigits
        Round every value to this many digits (``None``: no rounding).

    Returns
    -------
    dict
        ``{key: {"mean": ..., "low": ..., "high": ...}}``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[2, 0], [0, 2], [1, 1]])
    >>> metric_intervals({"hit_rate_at_1": np.array([0.0, 1.0])}, w, confidence=0.5)["hit_rate_at_1"]
    {'mean': 0.5, 'low': 0.25, 'high': 0.75}
    """
    keys = sorted(per_user)
    if not keys:
        return {}
    values = _stack(per_user, keys)
    low, high = percentile_interval(bootstrap_means(values, weights), confidence)
    means = values.mean(axis=0)
    return {key: _rounded({"mean": means[j], "low": low[j], "high": high[j]}, ndigits) for j, key in enumerate(keys)}


def paired_differences(
    per_user_a: Mapping[str, np.ndarray],
    per_user_b: Mapping[str, np.ndarray],
    weights: np.ndarray,
    confidence: float = CONFIDENCE,
    ndigits: int | None = None,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of ``A - B`` on the same users, plus win, tie and loss rates.

    Parameters
    ----------
    per_user_a, per_user_b
        Metric key -> per-user values of models A and B over the *same* users in the same order;
        only keys present in both are compared.
    weights
        ``(samples, n_users)`` resample counts from :func:`bootstrap_weights`.
    confidence
        Coverage of the interval.
    ndigits
        Round every value to this many digits (``None``: no rounding).

    Returns
    -------
    dict
        ``{key: {"mean", "low", "high", "win_rate", "tie_rate", "loss_rate"}}`` where ``mean`` is
        the observed mean of ``A - B`` and ``win_rate`` the share of users with ``A > B``.

    Examples
    --------
    >>> import numpy as np
    >>> a = {"ndcg_at_1": np.array([1.0, 0.0, 1.0, 0.5])}
    >>> b = {"ndcg_at_1": np.array([0.0, 0.0, 1.0, 1.0])}
    >>> d = paired_differences(a, b, np.ones((1, 4), dtype=np.int64))["ndcg_at_1"]
    >>> d["mean"], d["win_rate"], d["tie_rate"], d["loss_rate"]
    (0.125, 0.25, 0.5, 0.25)
    """
    keys = sorted(set(per_user_a) & set(per_user_b))
    if not keys:
        return {}
    a, b = _stack(per_user_a, keys), _stack(per_user_b, keys)
    if a.shape != b.shape:
        raise ValueError(f"paired models must be scored on the same users: shapes {a.shape} and {b.shape}")
    diff = a - b
    low, high = percentile_interval(bootstrap_means(diff, weights), confidence)
    means = diff.mean(axis=0)
    wins = (a > b).mean(axis=0)
    ties = (a == b).mean(axis=0)
    return {
        key: _rounded(
            {
                "mean": means[j],
                "low": low[j],
                "high": high[j],
                "win_rate": wins[j],
                "tie_rate": ties[j],
                "loss_rate": 1.0 - wins[j] - ties[j],
            },
            ndigits,
        )
        for j, key in enumerate(keys)
    }


def _rounded(values: dict[str, Any], ndigits: int | None) -> dict[str, float]:
    if ndigits is None:
        return {k: float(v) for k, v in values.items()}
    # + 0.0 turns a rounded -0.0 into 0.0 so the JSON bytes do not depend on the sign of a tiny value.
    return {k: round(float(v), ndigits) + 0.0 for k, v in values.items()}


def uncertainty_report(
    results: Mapping[str, RankingResult],
    samples: int,
    seed: int,
    comparisons: Sequence[tuple[str, str]] = DEFAULT_COMPARISONS,
    confidence: float = CONFIDENCE,
    ndigits: int = 6,
) -> dict[str, Any]:
    """Bootstrap intervals of every model's per-user metrics and the paired comparisons.

    Parameters
    ----------
    results
        Model name -> :class:`RankingResult`, all computed on the same users (same
        ``evaluated_users``).
    samples
        Number of bootstrap resamples.
    seed
        Seed of the resampling (one set of resamples is shared by every model and comparison).
    comparisons
        ``(A, B)`` pairs reported as ``A - B``; pairs naming a missing model are skipped.
    confidence
        Coverage of the intervals.
    ndigits
        Digits kept in the output (stable bytes).

    Returns
    -------
    dict
        ``{"method": {...}, "intervals": {model: {metric: {mean, low, high}}},
        "paired": {"A-B": {metric: {mean, low, high, win_rate, tie_rate, loss_rate}}}}``.

    Raises
    ------
    ValueError
        If ``results`` is empty or the models were evaluated on different users.

    Examples
    --------
    >>> import numpy as np
    >>> from reco.evaluation.metrics import ranking_metrics
    >>> rel = np.array([[True, False], [False, True]])
    >>> r = {"a": ranking_metrics(np.array([[0], [1]]), rel, [1], 2),
    ...      "b": ranking_metrics(np.array([[1], [1]]), rel, [1], 2)}
    >>> report = uncertainty_report(r, samples=50, seed=0, comparisons=[("a", "b")])
    >>> report["paired"]["a-b"]["hit_rate_at_1"]["win_rate"]
    0.5
    """
    users = common_evaluated_users(results, "bootstrap")
    weights = bootstrap_weights(len(users), samples, seed)
    intervals = {
        name: metric_intervals(result.per_user, weights, confidence, ndigits) for name, result in results.items()
    }
    paired = {
        comparison_name(a, b): paired_differences(
            results[a].per_user, results[b].per_user, weights, confidence, ndigits
        )
        for a, b in comparisons
        if a in results and b in results
    }
    return {
        "method": {
            "interval": "percentile bootstrap",
            "confidence": confidence,
            "resampled_unit": "evaluated user",
            "samples": int(samples),
            "seed": int(seed),
            "users": int(len(users)),
            "paired": "A - B on the same resampled users; win_rate = share of users with A > B",
        },
        "intervals": intervals,
        "paired": paired,
    }


def paired_plot_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{comparison, metric, mean, low, high}`` of a report's paired differences (for ``dvc plots``).

    Examples
    --------
    >>> paired_plot_rows({"paired": {"a-b": {"ndcg_at_1": {"mean": 0.1, "low": 0.0, "high": 0.2, "win_rate": 0.5}}}})
    [{'comparison': 'a-b', 'metric': 'ndcg_at_1', 'mean': 0.1, 'low': 0.0, 'high': 0.2}]
    """
    return [
        {"comparison": comparison, "metric": metric, **{k: stats[k] for k in ("mean", "low", "high")}}
        for comparison, per_metric in report["paired"].items()
        for metric, stats in sorted(per_metric.items(), key=lambda kv: _metric_order(kv[0]))
    ]


def _metric_order(key: str) -> tuple[str, int]:
    """Sort ``"ndcg_at_10"`` by (name, K numerically) so ``_at_5`` comes before ``_at_10``."""
    name, _, k = key.rpartition("_at_")
    return (name, int(k)) if k.isdigit() else (key, 0)
