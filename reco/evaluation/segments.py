"""Headline metrics per user segment: activity degree and quartile of training-history length.

A model can win on average and lose on a segment; each segment of the evaluated users (by
``user_active_degree`` and by :func:`history_quartiles`) reports its number of users and, per model, the
mean ``ndcg``, ``map`` and ``recall`` at one cut-off. See docs/design/evaluation.md.

Example
-------
>>> import numpy as np
>>> codes, edges = history_quartiles(np.array([1, 2, 3, 4, 5, 6, 7, 8]))
>>> codes.tolist(), edges.tolist()
([0, 0, 1, 1, 2, 2, 3, 3], [2.75, 4.5, 6.25])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import polars as pl

from reco.evaluation.metrics import RankingResult, common_evaluated_users, metric_key
from reco.schema import Columns

__all__ = [
    "HISTORY_LENGTH",
    "MISSING_SEGMENT",
    "SEGMENT_METRICS",
    "group_means",
    "history_quartiles",
    "nearest_cutoff",
    "segments_report",
    "user_segments",
]

SEGMENT_METRICS: Final[tuple[str, ...]] = ("ndcg", "map", "recall")
HISTORY_LENGTH: Final = "history_length"
MISSING_SEGMENT: Final = "missing"


def nearest_cutoff(ks: Sequence[int], target: int = 10) -> int:
    """The cut-off in ``ks`` closest to ``target`` (the smaller one on a tie).

    Examples
    --------
    >>> nearest_cutoff([5, 10, 20]), nearest_cutoff([5, 15]), nearest_cutoff([1, 3])
    (10, 5, 3)
    """
    if not ks:
        raise ValueError("ks must contain at least one cut-off")
    return int(min(ks, key=lambda k: (abs(int(k) - target), int(k))))


def user_segments(users: np.ndarray, profiles: pl.DataFrame, train: pl.DataFrame) -> pl.DataFrame:
    """Activity degree and training-history length of each of ``users``, in their order.

    Parameters
    ----------
    users
        Test user ids (the rows of the test grid).
    profiles
        The prepared users table (user id and ``user_active_degree`` columns).
    train
        Training interactions (one row per interaction, with a user column).

    Returns
    -------
    pl.DataFrame
        Columns user id, ``user_active_degree`` (string; ``"missing"`` without a profile) and
        ``history_length`` (int64; 0 for a user absent from training).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> profiles = pl.DataFrame({"user_id": [1, 2], "user_active_degree": ["full_active", "high_active"]})
    >>> train = pl.DataFrame({"user_id": [2, 2, 1]})
    >>> user_segments(np.array([2, 3]), profiles, train).rows()
    [(2, 'high_active', 2), (3, 'missing', 0)]
    """
    frame = pl.DataFrame({Columns.user: pl.Series(np.asarray(users), dtype=pl.Int64)})
    degree = profiles.select(
        pl.col(Columns.user).cast(pl.Int64), pl.col(Columns.user_active_degree).cast(pl.String)
    ).unique(Columns.user, keep="first", maintain_order=True)
    lengths = (
        train.select(pl.col(Columns.user).cast(pl.Int64)).group_by(Columns.user).agg(pl.len().alias(HISTORY_LENGTH))
    )
    return (
        frame.join(degree, on=Columns.user, how="left", maintain_order="left")
        .join(lengths, on=Columns.user, how="left", maintain_order="left")
        .with_columns(
            pl.col(Columns.user_active_degree).fill_null(MISSING_SEGMENT),
            pl.col(HISTORY_LENGTH).fill_null(0).cast(pl.Int64),
        )
    )


def history_quartiles(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quartile code (0..3) of each history length, and the three cut points.

    Examples
    --------
    >>> import numpy as np
    >>> codes, edges = history_quartiles(np.array([5, 5, 5, 5, 9]))
    >>> codes.tolist(), edges.tolist()
    ([0, 0, 0, 0, 3], [5.0, 5.0, 5.0])
    """
    x = np.asarray(lengths, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(3)
    edges = np.quantile(x, [0.25, 0.5, 0.75])
    return np.searchsorted(edges, x, side="left").astype(np.int64), edges


def group_means(codes: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sizes and column means of ``values`` (``(n, m)``) by integer ``codes``.

    Sequential ``np.bincount`` sums, so the result does not depend on threading. A group with
    no member gets NaN means.

    Examples
    --------
    >>> import numpy as np
    >>> sizes, means = group_means(np.array([0, 1, 1]), np.array([[1.0], [2.0], [4.0]]), 3)
    >>> sizes.tolist(), means[:2].tolist()
    ([1, 2, 0], [[1.0], [3.0]])
    """
    codes = np.asarray(codes, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(len(codes), -1)
    sizes = np.bincount(codes, minlength=n_groups)
    sums = np.stack(
        [np.bincount(codes, weights=values[:, j], minlength=n_groups) for j in range(values.shape[1])], axis=1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / sizes[:, None]
    return sizes, means


def segments_report(
    results: Mapping[str, RankingResult],
    segments: pl.DataFrame,
    k: int,
    metric_names: Sequence[str] = SEGMENT_METRICS,
    ndigits: int = 6,
) -> dict[str, Any]:
    """Mean metrics at ``k`` per activity degree and per history-length quartile.

    Parameters
    ----------
    results
        Model name -> ranking result over the test grid's users (all with the same evaluated users).
    segments
        :func:`user_segments` of the grid's users, in grid order (row ``i`` = grid user ``i``).
    k
        Cut-off of the reported metrics (must be one of the evaluated Ks).
    metric_names
        Per-user metrics reported.
    ndigits
        Digits kept (stable bytes).

    Returns
    -------
    dict
        ``{"k", "metrics", "history_quartile_edges", "user_active_degree": {segment: {"users",
        "models": {model: {metric: mean}}}}, "history_quartile": {"q1": {"users", "history_min",
        "history_max", "models"}, ...}}``.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from reco.evaluation.metrics import ranking_metrics
    >>> rel = np.array([[True, False], [False, True]])
    >>> res = {"m": ranking_metrics(np.array([[0], [0]]), rel, [1], 2)}
    >>> seg = pl.DataFrame({"user_id": [1, 2], "user_active_degree": ["a", "b"], "history_length": [3, 9]})
    >>> out = segments_report(res, seg, k=1, metric_names=["ndcg"])
    >>> out["user_active_degree"]["a"]["models"]["m"], out["user_active_degree"]["b"]["models"]["m"]
    ({'ndcg_at_1': 1.0}, {'ndcg_at_1': 0.0})
    """
    evaluated = common_evaluated_users(results, "segment")
    names = list(results)
    keys = [metric_key(name, k) for name in metric_names]
    missing = [key for key in keys if key not in results[names[0]].per_user]
    if missing:
        raise ValueError(f"metrics {missing} were not evaluated (is K={k} among the evaluated cut-offs?)")
    if evaluated.size and int(evaluated.max()) >= segments.height:
        raise ValueError(f"segments has {segments.height} rows but the results index user row {int(evaluated.max())}")
    rows = segments[evaluated.tolist()]
    # (n_evaluated, n_models * n_metrics), columns model-major
    values = np.column_stack([results[name].per_user[key] for name in names for key in keys])

    def block(codes: np.ndarray, labels: Sequence[str], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
        sizes, means = group_means(codes, values, len(labels))
        out = {}
        for g, label in enumerate(labels):
            if sizes[g] == 0:
                continue
            per_model = {
                name: {key: round(float(means[g, m * len(keys) + j]), ndigits) + 0.0 for j, key in enumerate(keys)}
                for m, name in enumerate(names)
            }
            out[label] = {"users": int(sizes[g]), **extra.get(label, {}), "models": per_model}
        return out

    degrees = rows[Columns.user_active_degree].to_numpy().astype(str)
    degree_labels, degree_codes = np.unique(degrees, return_inverse=True)
    lengths = rows[HISTORY_LENGTH].to_numpy()
    quartile_codes, edges = history_quartiles(lengths)
    quartile_labels = [f"q{q + 1}" for q in range(4)]
    ranges = {
        quartile_labels[q]: {
            "history_min": int(lengths[quartile_codes == q].min()),
            "history_max": int(lengths[quartile_codes == q].max()),
        }
        for q in range(4)
        if (quartile_codes == q).any()
    }
    return {
        "k": int(k),
        "metrics": keys,
        "history_quartile_edges": [round(float(e), ndigits) for e in edges],
        "user_active_degree": block(degree_codes.ravel(), [str(x) for x in degree_labels], {}),
        "history_quartile": block(quartile_codes, quartile_labels, ranges),
    }
