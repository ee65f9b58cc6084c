"""History statistics: per-video view counts and their global rates, summed exactly over user partitions.

The features of :mod:`reco.models.features` describe a pair from a *history* of views; what every
partition must agree on (each video's views, positive views and log watch ratios, the history's
totals) is counted here as integers and exact sums, so the totals have the same bits for any
partitioning, engine or CPU. See docs/design/models.md and docs/scaling.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import polars as pl

from reco import portable_math
from reco.compute import map_user_partitions, tree_reduce
from reco.data.labels import labelled_ratio
from reco.exact_sums import exact_units
from reco.partitions import FrameRows, UserRowIndex
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "HistoryStats", "combine_item_partials", "history_item_partials", "history_stats", "history_with_marks",
    "item_partials", "portable_log", "relative_views", "smoothed_rate", "user_rate_aggs",
]  # fmt: skip

LOG_EPS: Final = 0.01  # watch ratios can be 0; log(wr + eps) keeps the mean finite


def portable_log(values: pl.Expr) -> pl.Expr:
    """``log`` of a float64 expression through :mod:`reco.portable_math` (the same bits on every CPU).

    polars' ``log``/``log1p`` call the platform's libm, whose last bit differs between CPU
    families (FMA and non-FMA code, x86 and ARM builds); a feature value that moves by one bit
    can land in another LightGBM bin. Elementwise, so it streams.
    """
    return values.map_batches(
        lambda s: pl.Series(s.name, portable_math.log(s.to_numpy())), return_dtype=pl.Float64, is_elementwise=True
    )


def smoothed_rate(positives: pl.Expr, views: pl.Expr, prior: pl.Expr | float, strength: float) -> pl.Expr:
    """``(positives + strength * prior) / (views + strength)``: a rate pulled toward ``prior`` by ``strength`` pseudo-views.

    Examples
    --------
    >>> pl.DataFrame({"pos": [0, 3], "n": [0, 4]}).select(smoothed_rate(pl.col("pos"), pl.col("n"), 0.5, 4.0))["pos"].to_list()
    [0.5, 0.625]
    """
    return (positives + strength * prior) / (views + strength)


def user_rate_aggs() -> list[pl.Expr]:
    """Per-user aggregations of a marked history: the user's positive rate ``_user_rate`` and views ``_user_n``.

    The prior every per-user affinity (tags, duration, author) is smoothed toward, defined once.
    """
    return [(pl.col("_pos").sum() / pl.len()).alias("_user_rate"), pl.len().alias("_user_n")]


def history_with_marks(history: pl.DataFrame | pl.LazyFrame, threshold: float) -> pl.LazyFrame:
    """Each view with ``_pos`` (1.0 for a positive label, else 0.0) and ``_log_wr`` (log watch ratio)."""
    names = history.collect_schema().names()
    return history.lazy().select(
        *(c for c in (Columns.user, Columns.item, Columns.play_duration) if c in names),
        (labelled_ratio(history) > threshold).cast(pl.Float64).alias("_pos"),
        portable_log(pl.col(Columns.watch_ratio).cast(pl.Float64) + LOG_EPS).alias("_log_wr"),
    )


_ITEM_PARTIAL_SCHEMA = pl.Schema({Columns.item: pl.Int32, "n": pl.Int64, "pos": pl.Int64, "log_units": pl.Int128})


def item_partials(views: pl.DataFrame | pl.LazyFrame, threshold: float) -> pl.DataFrame:
    """Per video of ``views``: views ``n``, positive views ``pos`` and the log watch ratios' sum in exact units.

    Examples
    --------
    >>> views = pl.DataFrame({"video_id": [3, 3, 4], "watch_ratio": [2.5, 0.5, 1.0]})
    >>> item_partials(views, 2.0).select("video_id", "n", "pos").rows()
    [(3, 2, 1), (4, 1, 0)]
    """
    return (
        history_with_marks(views, threshold)
        .group_by(Columns.item)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("_pos").sum().cast(pl.Int64).alias("pos"),
            exact_units(pl.col("_log_wr")).sum().alias("log_units"),
        )
        .select(pl.col(Columns.item).cast(pl.Int32), "n", "pos", "log_units")
        .sort(Columns.item)
        .collect()
    )


def combine_item_partials(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """Two :func:`item_partials` tables added up (integers: exact, in any order)."""
    return (
        pl.concat([left, right])
        .group_by(Columns.item)
        .agg(pl.col("n").sum(), pl.col("pos").sum(), pl.col("log_units").sum())
        .sort(Columns.item)
    )


def history_item_partials(users: np.ndarray, *, history: UserRowIndex, threshold: float) -> pl.DataFrame:
    """:func:`item_partials` of the history rows of one user partition (a Dask task, or called in-process)."""
    columns = [c for c in (Columns.item, Columns.watch_ratio, Columns.label_ratio) if c in history.schema]
    return item_partials(history.scan(users, columns).collect(), threshold)


@dataclass(frozen=True)
class HistoryStats:
    """The per-video totals of a history and its global rates (what every partition must agree on).

    Attributes
    ----------
    items
        One row per video of the history: ``n`` views, ``pos`` positive views (Int64) and
        ``log_units`` (the log watch ratios' exact sum, :func:`reco.exact_sums.exact_units`), by video id.
    views, positives
        Totals over the history.
    global_rate
        Share of positive views.
    global_log
        Mean log watch ratio (correctly rounded).
    """

    items: pl.DataFrame
    views: int
    positives: int
    global_rate: float
    global_log: float

    @classmethod
    def from_partials(cls, items: pl.DataFrame) -> HistoryStats:
        views, positives = int(items["n"].sum()), int(items["pos"].sum())
        total_units = items.select(pl.col("log_units").sum()).item()
        if views == 0:
            return cls(items, 0, 0, float("nan"), float("nan"))
        return cls(items, views, positives, positives / views, (int(total_units) / 2.0**64) / views)


def history_stats(
    history: UserRowIndex, threshold: float, *, client: Client | None = None, n_partitions: int = 1
) -> HistoryStats:
    """:class:`HistoryStats` of a history: per-partition :func:`item_partials` combined by tree reduction.

    Examples
    --------
    >>> views = pl.DataFrame({"user_id": [1, 2, 2], "video_id": [3, 3, 4], "watch_ratio": [2.5, 0.5, 1.0]})
    >>> stats = history_stats(FrameRows(views), 2.0, n_partitions=2)
    >>> stats.views, stats.positives, round(stats.global_rate, 4)
    (3, 1, 0.3333)
    """
    partials = map_user_partitions(
        client, history_item_partials, history.users, n_partitions, broadcast={"history": history}, threshold=threshold
    )
    if not partials:
        return HistoryStats.from_partials(_ITEM_PARTIAL_SCHEMA.to_frame())
    return HistoryStats.from_partials(tree_reduce(partials, combine_item_partials))


def relative_views(views: pl.Expr, population: int, history_views: int) -> pl.Expr:
    """``log`` of ``views`` over the average member's: ``views * population / history_views`` (0 = average).

    ``population`` is the platform's number of users (or videos), from the side tables, not
    the history's: the value then does not depend on the history's size. Holding out a random
    share of the pairs, or cutting the history's last days, scales a member's views and the
    history's total alike, where a raw count (``log1p(views)``) shrinks with the history. The
    product is an exact integer in float64 and the division is rounded once, so the value has the
    same bits on every CPU. Null when the history is empty.

    Examples
    --------
    >>> whole = pl.DataFrame({"n": [5, 40]})  # 10 users, 400 views: the average user has 40
    >>> whole.select(relative_views(pl.col("n"), 10, 400).round(4))["n"].to_list()
    [-2.0794, 0.0]
    >>> kept = pl.DataFrame({"n": [4, 32]})  # 80% of every user's views: the same values
    >>> kept.select(relative_views(pl.col("n"), 10, 320).round(4))["n"].to_list()
    [-2.0794, 0.0]
    """
    if history_views <= 0 or population <= 0:
        return pl.lit(None, dtype=pl.Float64)
    return portable_log(views.cast(pl.Float64) * float(population) / float(history_views))
