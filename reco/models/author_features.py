"""Author features: how a video's author fares in the history, overall and with the user.

A platform logs each video's author (KuaiRec: ``author_id`` in ``item_daily_features``), and viewers
follow authors. These features count, from the history a model may know, the author's positive rate
over all of the author's videos and the user's own rate and share of views on that author. They are
smoothed rates of integer counts (the same bits on every CPU), like the tag affinity in
:mod:`reco.models.features`. See docs/design/models.md.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from reco.models.history_stats import smoothed_rate, user_rate_aggs
from reco.schema import Columns

AUTHOR: Final = "author_id"
PAIR_AUTHOR_FEATURES: Final[tuple[str, ...]] = ("ux_author_pos_rate", "ux_author_view_share")
_ROW: Final = "_row"


def video_authors(item_daily: pl.DataFrame) -> pl.DataFrame:
    """Each video's author: the ``author_id`` of its earliest daily row (KuaiRec logs one per video).

    Examples
    --------
    >>> import datetime as dt
    >>> daily = pl.DataFrame({"video_id": [7, 7, 3], "date": [dt.date(2020, 7, 6), dt.date(2020, 7, 5), dt.date(2020, 7, 5)],
    ...                       "author_id": [11, 10, 12]})
    >>> video_authors(daily).rows()
    [(3, 12), (7, 10)]
    """
    return (
        item_daily.select(pl.col(Columns.item).cast(pl.Int32), Columns.date, pl.col(AUTHOR).cast(pl.Int64))
        .drop_nulls(AUTHOR)
        .sort(Columns.item, Columns.date)
        .group_by(Columns.item, maintain_order=True)
        .agg(pl.col(AUTHOR).first())
    )


def author_history(item_totals: pl.DataFrame, authors: pl.DataFrame, global_rate: float, smoothing: float) -> pl.DataFrame:
    """Per video of ``authors``: ``i_author_pos_rate``, its author's smoothed positive rate in the history.

    ``item_totals`` holds each video's history views ``n`` and positive views ``pos`` (integers, see
    :class:`reco.models.history_stats.HistoryStats`); the rate is smoothed toward ``global_rate`` with
    ``smoothing`` pseudo-views, so an author the history never saw gets the global rate.

    Examples
    --------
    >>> totals = pl.DataFrame({"video_id": [1, 2], "n": [3, 1], "pos": [2, 1]})
    >>> authors = pl.DataFrame({"video_id": [1, 2, 3], "author_id": [5, 5, 6]})
    >>> author_history(totals, authors, 0.5, 1.0).rows()
    [(1, 0.7), (2, 0.7), (3, 0.5)]
    """
    per_author = (
        item_totals.select(Columns.item, "n", "pos")
        .join(authors, on=Columns.item, how="inner")
        .group_by(AUTHOR)
        .agg(pl.col("n").sum(), pl.col("pos").sum())
    )
    return (
        authors.join(per_author, on=AUTHOR, how="left", maintain_order="left")
        .select(
            Columns.item,
            smoothed_rate(
                pl.col("pos").fill_null(0).cast(pl.Float64), pl.col("n").fill_null(0).cast(pl.Float64), global_rate, smoothing
            ).alias("i_author_pos_rate"),
        )
        .sort(Columns.item)
    )


def author_pair_features(
    views: pl.LazyFrame, pair_keys: pl.LazyFrame, by_user: pl.LazyFrame, smoothing: float
) -> pl.LazyFrame:
    """Per pair row (``_row``): the user's smoothed positive rate on the video's author and share of views of it.

    ``views`` holds the users' history views with ``author_id`` and ``_pos`` (1.0 for a positive view),
    ``pair_keys`` the pairs' ``_row``, user and ``author_id``, and ``by_user`` each user's own rate and
    views (:func:`reco.models.history_stats.user_rate_aggs`), which the tag and duration affinities
    share. The rate is smoothed toward the user's own rate with ``smoothing`` pseudo-views; both are
    null for a user without history.
    """
    by_author = views.drop_nulls(AUTHOR).group_by(Columns.user, AUTHOR).agg(
        pl.col("_pos").sum().alias("_author_pos"), pl.len().alias("_author_n")
    )
    author_n = pl.col("_author_n").fill_null(0).cast(pl.Float64)
    return (
        pair_keys.select(_ROW, Columns.user, AUTHOR)
        .join(by_author, on=[Columns.user, AUTHOR], how="left", maintain_order="left")
        .join(by_user, on=Columns.user, how="left", maintain_order="left")
        .select(
            _ROW,
            smoothed_rate(pl.col("_author_pos").fill_null(0.0), author_n, pl.col("_user_rate"), smoothing)
            .cast(pl.Float32)
            .alias("ux_author_pos_rate"),
            (author_n / pl.col("_user_n")).cast(pl.Float32).alias("ux_author_view_share"),
        )
    )


def user_author_affinity(marked: pl.LazyFrame, pairs: pl.LazyFrame, authors: pl.LazyFrame, smoothing: float) -> pl.LazyFrame:
    """:func:`author_pair_features` of ``pairs`` (``_row``, user, video) from a marked history and the videos' authors.

    The feature tables get the same values from :mod:`reco.models.features`, whose affinity pass
    joins the authors and counts the users' own rates once for every per-user feature.
    """
    views = marked.select(Columns.user, Columns.item, "_pos").join(authors, on=Columns.item, how="left")
    by_user = views.group_by(Columns.user).agg(*user_rate_aggs())
    pair_keys = pairs.select(_ROW, Columns.user, Columns.item).join(authors, on=Columns.item, how="left", maintain_order="left")
    return author_pair_features(views, pair_keys, by_user, smoothing)
