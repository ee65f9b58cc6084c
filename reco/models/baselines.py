"""Reference rankers scored by the same evaluator as the models.

``random`` (the floor), ``popularity`` (smoothed positive rate), ``duration`` (shortest first),
``duration_popularity`` (the duration effect alone) and ``popularity_within_duration`` (popularity with the
duration effect removed), in the label rule's duration buckets, from integer counts with ``+ - * /`` only,
so the same inputs give the same orderings on every CPU. See docs/design/models.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from reco.data.labels import bucket_index_expr, labelled_ratio
from reco.schema import Columns

__all__ = [
    "DurationPopularity",
    "ViewCounts",
    "duration_popularity_scores",
    "duration_scores",
    "grid_scores",
    "item_durations",
    "popularity_item_scores",
    "popularity_scores",
    "random_scores",
    "view_counts",
]

_BUCKET = "_bucket"


def random_scores(n_users: int, n_items: int, seed: int) -> np.ndarray:
    """Seeded uniform scores of shape (n_users, n_items), float32."""
    return np.random.default_rng(seed).random((n_users, n_items), dtype=np.float32)


def _positive(train: pl.DataFrame, threshold: float) -> pl.Expr:
    """1.0 for a positive training view (label ratio above ``threshold``), else 0.0."""
    return (labelled_ratio(train) > threshold).cast(pl.Float64)


@dataclass(frozen=True)
class ViewCounts:
    """Positive and total training views per (video, duration bucket): all the popularity baselines read.

    One pass over the training views (:func:`view_counts`) serves ``popularity`` and both duration
    baselines. ``table`` has one row per (video, bucket) seen in training: video id (Int32),
    ``_bucket`` (Int64; null for a view without a duration), ``pos`` (Float64, a whole number) and
    ``views`` (Float64, a whole number); ``edges_ms`` are the inner bucket edges.
    """

    table: pl.DataFrame
    edges_ms: tuple[float, ...]

    @property
    def global_rate(self) -> float:
        """Share of positive views over all training views (0 without views)."""
        views = float(self.table["views"].sum())
        return float(self.table["pos"].sum()) / views if views else 0.0

    def per_item(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positives, views)`` of each of ``items`` (0 for a video without training views), float64."""
        totals = self.table.group_by(Columns.item).agg(pl.col("pos").sum(), pl.col("views").sum())
        aligned = pl.DataFrame({Columns.item: pl.Series(np.asarray(items), dtype=pl.Int32)}).join(
            totals, on=Columns.item, how="left", maintain_order="left"
        )
        return aligned["pos"].fill_null(0.0).to_numpy(), aligned["views"].fill_null(0.0).to_numpy()

    def per_bucket(self) -> tuple[np.ndarray, np.ndarray]:
        """``(positives, views)`` of each bucket ``0 .. len(edges_ms)``, float64 (views without a duration left out)."""
        totals = self.table.drop_nulls(_BUCKET).group_by(_BUCKET).agg(pl.col("pos").sum(), pl.col("views").sum())
        positives, views = np.zeros(len(self.edges_ms) + 1), np.zeros(len(self.edges_ms) + 1)
        index = totals[_BUCKET].to_numpy()
        positives[index], views[index] = totals["pos"].to_numpy(), totals["views"].to_numpy()
        return positives, views


def view_counts(train: pl.DataFrame, threshold: float, edges_ms: tuple[float, ...] = ()) -> ViewCounts:
    """Count positive and total views per (video, duration bucket) in one pass over ``train``.

    Parameters
    ----------
    train
        Training views: video, ``label_ratio`` (or ``watch_ratio``) and, when ``edges_ms`` is not
        empty, ``video_duration`` (the view's, in ms).
    threshold
        A view is positive when its label ratio exceeds it.
    edges_ms
        Inner bucket edges (the label rule's); ``()``: one bucket, no duration needed.

    Examples
    --------
    >>> train = pl.DataFrame({"video_id": [1, 1, 2], "video_duration": [5_000, 5_000, 60_000],
    ...                       "watch_ratio": [3.0, 1.0, 0.5]})
    >>> counts = view_counts(train, 2.0, (10_000.0,))
    >>> counts.per_bucket(), counts.global_rate
    ((array([1., 0.]), array([2., 1.])), 0.3333333333333333)
    """
    bucket = _bucket_expr(edges_ms) if edges_ms else pl.lit(0, dtype=pl.Int64)
    table = (
        train.lazy()
        .select(pl.col(Columns.item).cast(pl.Int32), bucket.alias(_BUCKET), _positive(train, threshold).alias("_pos"))
        .group_by(Columns.item, _BUCKET)
        .agg(pl.col("_pos").sum().alias("pos"), pl.len().cast(pl.Float64).alias("views"))
        .sort(Columns.item, _BUCKET, nulls_last=True)
        .collect()
    )
    return ViewCounts(table=table, edges_ms=tuple(edges_ms))


def popularity_scores(counts: ViewCounts, items: np.ndarray, smoothing: float) -> np.ndarray:
    """``popularity``: the smoothed positive rate of each of ``items`` (global rate when unseen), float32."""
    positives, views = counts.per_item(items)
    prior = smoothing * counts.global_rate
    with np.errstate(invalid="ignore"):  # an unseen video with m = 0: NaN, never ranked
        return ((positives + prior) / (views + smoothing)).astype(np.float32)


def popularity_item_scores(train: pl.DataFrame, items: np.ndarray, threshold: float, smoothing: float) -> np.ndarray:
    """Smoothed positive rate of each of ``items`` in ``train`` (global rate for unseen items), float32.

    Examples
    --------
    >>> train = pl.DataFrame({"video_id": [1, 1, 2, 2], "watch_ratio": [3.0, 3.0, 0.5, 3.0]})
    >>> popularity_item_scores(train, np.array([1, 2, 3]), threshold=2.0, smoothing=2.0).tolist()
    [0.875, 0.625, 0.75]
    """
    return popularity_scores(view_counts(train, threshold), items, smoothing)


def item_durations(items_table: pl.DataFrame, items: np.ndarray) -> np.ndarray:
    """``video_duration`` (ms, float64; NaN when unknown) of each of ``items`` from the prepared items table.

    Examples
    --------
    >>> table = pl.DataFrame({"video_id": [1, 2], "video_duration": [9_000, None]})
    >>> item_durations(table, np.array([2, 1, 5])).tolist()
    [nan, 9000.0, nan]
    """
    known = items_table.select(pl.col(Columns.item).cast(pl.Int32), pl.col(Columns.video_duration).cast(pl.Float64))
    known = known.unique(Columns.item, keep="first", maintain_order=True)
    aligned = pl.DataFrame({Columns.item: pl.Series(np.asarray(items), dtype=pl.Int32)}).join(
        known, on=Columns.item, how="left", maintain_order="left"
    )
    return aligned[Columns.video_duration].fill_null(np.nan).to_numpy().astype(np.float64)


def duration_scores(durations_ms: np.ndarray) -> np.ndarray:
    """Shortest first: ``-duration`` per video (float64, exact for any millisecond count); unknown last.

    Examples
    --------
    >>> duration_scores(np.array([9_000.0, 3_000.0, np.nan])).tolist()
    [-9000.0, -3000.0, -inf]
    """
    durations = np.asarray(durations_ms, dtype=np.float64)
    return np.where(np.isnan(durations), -np.inf, -durations)


@dataclass(frozen=True)
class DurationPopularity:
    """The two duration-bucket baselines of a catalogue (see docs/design/models.md).

    Attributes
    ----------
    bucket
        ``(n_items,)`` int64 bucket of each catalogue video (``-1``: unknown duration).
    bucket_rate
        ``(n_items,)`` float64 ``duration_popularity`` score: the smoothed positive rate of the
        video's bucket (the global rate for an unknown duration).
    within_bucket
        ``(n_items,)`` float64 ``popularity_within_duration`` score.
    rates
        ``(len(edges_ms) + 1,)`` float64 smoothed positive rate of every bucket.
    """

    bucket: np.ndarray
    bucket_rate: np.ndarray
    within_bucket: np.ndarray
    rates: np.ndarray


def _bucket_expr(edges_ms: tuple[float, ...]) -> pl.Expr:
    """Bucket (Int64; null for a null duration) of ``video_duration`` by :func:`reco.data.labels.bucket_index_expr`."""
    duration = pl.col(Columns.video_duration)
    return pl.when(duration.is_null()).then(None).otherwise(bucket_index_expr(edges_ms).cast(pl.Int64))


def duration_popularity_scores(
    train: pl.DataFrame,
    durations_ms: np.ndarray,
    items: np.ndarray,
    edges_ms: tuple[float, ...],
    threshold: float,
    smoothing: float,
    counts: ViewCounts | None = None,
) -> DurationPopularity:
    """``duration_popularity`` and ``popularity_within_duration`` scores of ``items``.

    Parameters
    ----------
    train
        Training views with video, ``video_duration`` (the view's, in ms) and ``label_ratio`` (or
        ``watch_ratio``) columns (not read when ``counts`` is given).
    durations_ms
        Duration (ms, NaN when unknown) of each of ``items`` (:func:`item_durations`).
    items
        Catalogue video ids (the grid's columns).
    edges_ms
        Inner bucket edges (the label rule's ``edges_ms``).
    threshold
        A view is positive when its label ratio exceeds it.
    smoothing
        Pseudo-views ``m`` of the smoothing.
    counts
        :func:`view_counts` of ``train`` with ``edges_ms``, when the caller already has them.

    Returns
    -------
    DurationPopularity

    Examples
    --------
    >>> train = pl.DataFrame({"video_id": [1, 1, 2, 3], "video_duration": [5_000, 5_000, 5_000, 60_000],
    ...                       "watch_ratio": [3.0, 3.0, 0.5, 0.5]})
    >>> out = duration_popularity_scores(train, np.array([5_000.0, 5_000.0, 60_000.0]), np.array([1, 2, 3]),
    ...                                  (10_000.0,), threshold=2.0, smoothing=0.0)
    >>> out.bucket.tolist(), out.bucket_rate.tolist(), out.within_bucket.tolist()
    ([0, 0, 1], [0.6666666666666666, 0.6666666666666666, 0.0], [1.5, 0.0, 0.0])
    """
    if counts is None:
        counts = view_counts(train, threshold, edges_ms)
    elif counts.edges_ms != tuple(edges_ms):
        raise ValueError(f"counts were made with bucket edges {counts.edges_ms}, not {tuple(edges_ms)}")
    global_rate = counts.global_rate
    positives, views = counts.per_bucket()
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (positives + smoothing * global_rate) / (views + smoothing)
    rates = np.where(np.isnan(rates), global_rate, rates)  # a bucket without views, and m = 0
    durations = pl.Series(Columns.video_duration, np.asarray(durations_ms, dtype=np.float64)).fill_nan(None)
    bucket = pl.DataFrame(durations).select(_bucket_expr(edges_ms)).to_series()
    bucket = bucket.fill_null(-1).to_numpy().astype(np.int64)
    prior = np.where(bucket >= 0, rates[np.maximum(bucket, 0)], global_rate)
    item_pos, item_views = counts.per_item(items)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = (item_pos + smoothing * prior) / (item_views + smoothing)
        smoothed = np.where(item_views + smoothing > 0, smoothed, prior)  # unseen video and m = 0
        within = np.where(prior > 0, smoothed / prior, 0.0)  # no positive in the bucket (and m = 0): nothing to scale
    return DurationPopularity(bucket=bucket, bucket_rate=prior, within_bucket=within, rates=rates)


def grid_scores(
    pairs: pl.DataFrame,
    users: np.ndarray,
    items: np.ndarray,
    column: str,
    fill: float = np.nan,
    dtype: type = np.float32,
) -> np.ndarray:
    """Scatter a (user, video, ``column``) frame into a dense (users x items) matrix (float32 by default)."""
    matrix = np.full((len(users), len(items)), fill, dtype=dtype)
    rows = np.searchsorted(users, pairs[Columns.user].to_numpy())
    cols = np.searchsorted(items, pairs[Columns.item].to_numpy())
    inside = (rows < len(users)) & (cols < len(items))
    inside[inside] &= (users[rows[inside]] == pairs[Columns.user].to_numpy()[inside]) & (
        items[cols[inside]] == pairs[Columns.item].to_numpy()[inside]
    )
    matrix[rows[inside], cols[inside]] = pairs[column].to_numpy()[inside]
    return matrix
