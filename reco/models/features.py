"""Feature tables for the ranker: one row per (user, video) pair to score, from what a model may know then.

Features describe the user (profile, history), the video (static columns, history, the daily
counters of the days before the row's serving date), the pair (ALS score and rank among the user's
unwatched videos of the serving catalogue, tag and duration affinity, taste residuals). They see
only the history passed in, the ALS model fitted on it and no platform counter of the row's view
day or later, and none depends on the history's size (shares and rates, not raw counts), so the
ranker's training rows and the blocks' rows are on one scale; a table is built one user partition
at a time with exact sums, so its bytes do not depend on the partitioning or the compute engine.
See docs/protocol.md (point-in-time rules), docs/design/models.md (features) and docs/scaling.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from reco.compute import iter_user_partitions, map_user_partitions
from reco.errors import InputDataError
from reco.exact_sums import exact_mean, exact_sum, from_units
from reco.models.als import AlsModel
from reco.models.als_features import als_pair_features, seen_matrix
from reco.models.author_features import AUTHOR, PAIR_AUTHOR_FEATURES, author_history, author_pair_features, video_authors
from reco.models.history_stats import (
    HistoryStats,
    history_stats,
    history_with_marks,
    item_partials,
    portable_log,
    relative_views,
    smoothed_rate,
    user_rate_aggs,
)
from reco.params import ComputeParams
from reco.partitions import FrameRows, UserRowIndex, partition_count, write_parquet_partitions
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

# Fixed, log-spaced duration bucket edges in milliseconds (not fitted, so they carry no data).
DURATION_EDGES_MS: tuple[int, ...] = (5_000, 8_000, 12_000, 20_000, 35_000, 60_000, 120_000)

USER_PROFILE_NUMERIC: tuple[str, ...] = (
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "register_days",
    *(f"onehot_feat{i}" for i in range(18)),
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("user_active_degree", "primary_tag", "duration_bucket")
AFFINITY_FEATURES: tuple[str, ...] = (
    "ux_tag_pos_rate", "ux_tag_view_share", "ux_duration_pos_rate", "u_lwr_resid", "u_pos_resid",
    "ux_tag_lwr_resid", "ux_tag_lwr_resid_max",
)  # fmt: skip

PAIR = [Columns.user, Columns.item]
ROW = "_row"  # the pair's row in its input: the output keeps that order
_SERVING = "_serving_date"


@dataclass(frozen=True)
class FeatureTable:
    """A feature frame with the ordered feature list the ranker must use."""

    frame: pl.DataFrame
    features: list[str]
    categorical: list[str]


def duration_bucket(duration_ms: pl.Expr) -> pl.Expr:
    """Index of the fixed duration bucket (0..len(DURATION_EDGES_MS)) as Int8; null stays null."""
    bucket = pl.lit(0, dtype=pl.Int8)
    for edge in DURATION_EDGES_MS:
        bucket = bucket + (duration_ms >= edge).cast(pl.Int8)
    return pl.when(duration_ms.is_null()).then(None).otherwise(bucket)


def _portable_log1p(column: str) -> pl.Expr:
    """``log(1 + x)`` of a column through :mod:`reco.portable_math`."""
    return portable_log(pl.col(column).cast(pl.Float64) + 1.0)


def history_columns(schema: pl.Schema) -> list[str]:
    """The history columns the features read (``label_ratio`` when split wrote it)."""
    wanted = (Columns.user, Columns.item, Columns.play_duration, Columns.watch_ratio, Columns.label_ratio)
    return [c for c in wanted if c in schema]


DAILY_FEATURES: tuple[str, ...] = (
    "d_show_log", "d_play_rate", "d_complete_rate", "d_like_rate", "d_play_progress",
    "d_last_complete_rate", "d_complete_trend",
)  # fmt: skip
# The video's age on the serving date (days since upload_dt): known whether or not the window had traffic.
AGE_FEATURE = "d_age_days"


def item_daily_window_features(item_daily: pl.DataFrame, window_days: int) -> pl.DataFrame:
    """Daily-counter features of every video for every serving date, from the ``window_days`` days before it.

    Returns one row per (video, date) of a complete calendar (each video's first counter day to
    the day after the last one), where the features of ``date`` aggregate the counters of days
    ``date - window_days`` to ``date - 1`` only: joining a row on its serving date can never
    show it a counter of that day or later. Days without a counter row count as zero traffic.
    ``d_age_days`` is the video's age on ``date`` (days since its earliest ``upload_dt``).
    """
    counters = ["show_cnt", "play_cnt", "complete_play_cnt", "like_cnt"]
    daily = item_daily.select(
        Columns.item, Columns.date, *(pl.col(c).cast(pl.Int64) for c in counters),
        pl.col("play_progress").cast(pl.Float64), pl.lit(1, dtype=pl.Int64).alias("_days"),
    )  # fmt: skip
    spans = item_daily.group_by(Columns.item).agg(
        pl.col(Columns.date).min().alias("_first"),
        pl.col(Columns.date).max().alias("_last"),
        pl.col("upload_dt").min().alias("_upload"),
    )
    calendar = (
        spans.select(
            Columns.item, "_upload", pl.date_ranges("_first", pl.col("_last") + dt.timedelta(days=1)).alias(Columns.date)
        )
        .explode(Columns.date)
        .join(daily, on=[Columns.item, Columns.date], how="left")
        .with_columns(pl.col(*counters, "play_progress", "_days").fill_null(0))
        .sort(Columns.item, Columns.date)
    )
    window = {
        c: pl.col(c).rolling_sum(window_days, min_samples=1).shift(1).over(Columns.item).fill_null(0)
        for c in (*counters, "play_progress", "_days")
    }
    # The most recent completion rate within the window: yesterday's, else the last day with plays.
    day_rate = pl.when(pl.col("play_cnt") > 0).then(pl.col("complete_play_cnt") / pl.col("play_cnt"))
    last_rate = day_rate.shift(1).forward_fill(limit=window_days - 1).over(Columns.item)
    return (
        calendar.with_columns(last_rate.alias("d_last_complete_rate"), **{f"_w_{c}": e for c, e in window.items()})
        .select(
            Columns.item,
            Columns.date,
            _portable_log1p("_w_show_cnt").cast(pl.Float32).alias("d_show_log"),
            (pl.col("_w_play_cnt") / pl.col("_w_show_cnt").clip(lower_bound=1)).cast(pl.Float32).alias("d_play_rate"),
            (pl.col("_w_complete_play_cnt") / pl.col("_w_play_cnt").clip(lower_bound=1)).cast(pl.Float32).alias("d_complete_rate"),
            (pl.col("_w_like_cnt") / pl.col("_w_play_cnt").clip(lower_bound=1)).cast(pl.Float32).alias("d_like_rate"),
            pl.when(pl.col("_w__days") > 0)
            .then(pl.col("_w_play_progress") / pl.col("_w__days"))
            .cast(pl.Float32)
            .alias("d_play_progress"),
            pl.col("d_last_complete_rate").cast(pl.Float32),
            (pl.col(Columns.date) - pl.col("_upload")).dt.total_days().cast(pl.Float32).alias(AGE_FEATURE),
            pl.col("_w__days"),
        )
        .with_columns((pl.col("d_last_complete_rate") - pl.col("d_complete_rate")).alias("d_complete_trend"))
        .with_columns(  # no counter day in the window at all (before upload): unknown rather than zero
            pl.when(pl.col("_w__days") > 0).then(pl.col(c)).alias(c) for c in DAILY_FEATURES
        )
        .drop("_w__days")
    )


# ------------------------------------------------------------------------------------------------
# Global quantities: per-video counts and sums of the whole history (exact partials, tree-reduced)
def _item_history_frame(stats: HistoryStats, smoothing: float, n_items: int) -> pl.DataFrame:
    """Per video: the item history features and the means the residuals subtract."""
    n = pl.col("n")
    log_mean = smoothed_rate(from_units(pl.col("log_units")), n, stats.global_log, smoothing)
    return stats.items.lazy().select(
        Columns.item,
        relative_views(n, n_items, stats.views).alias("i_views_rel"),
        smoothed_rate(pl.col("pos"), n, stats.global_rate, smoothing).alias("i_pos_rate"),
        log_mean.alias("i_log_wr_mean"),
        (pl.col("pos") / n).alias("_item_pos"),
        log_mean.alias("_item_log"),
    ).collect()


# ------------------------------------------------------------------------------------------------
# Per-user groups (run on the history rows of one user partition)
# ------------------------------------------------------------------------------------------------


def _user_history(marked: pl.LazyFrame, context: FeatureContext) -> pl.LazyFrame:
    """Per user: relative views, smoothed positive rate, mean log watch ratio, median seconds watched."""
    return (
        marked.group_by(Columns.user)
        .agg(
            pl.len().alias("u_views_rel"),  # the count first (the column keeps its place), made relative below
            pl.col("_pos").sum().alias("_pos_sum"),
            exact_mean(pl.col("_log_wr")).alias("u_log_wr_mean"),
            (pl.col(Columns.play_duration).median() / 1000.0).alias("u_play_s_median"),
        )
        .with_columns(
            smoothed_rate(pl.col("_pos_sum"), pl.col("u_views_rel"), context.global_rate, context.smoothing).alias(
                "u_pos_rate"
            ),
            relative_views(pl.col("u_views_rel"), context.n_users, context.history_views).alias("u_views_rel"),
        )
        .drop("_pos_sum")
        .sort(Columns.user)
    )


def _affinity(
    marked: pl.LazyFrame, pairs: pl.LazyFrame, item_means: pl.LazyFrame, item_keys: pl.LazyFrame, smoothing: float
) -> pl.LazyFrame:
    """Per pair row (``_row``): the user's tag, duration and author affinity and the taste residuals.

    One pass over the history exploded by tag serves both the tag rates and the tag residuals, and
    one explode of the pairs serves every per-tag feature. Rates are smoothed toward the user's own
    rate, residuals toward the user's own residual, with ``smoothing`` pseudo-views.
    """
    views = (
        marked.join(item_means, on=Columns.item, how="left")
        .join(item_keys, on=Columns.item, how="left")
        .with_columns(
            (pl.col("_log_wr") - pl.col("_item_log")).alias("_res"),
            (pl.col("_pos") - pl.col("_item_pos")).alias("_pos_res"),
        )
    )
    by_user = views.group_by(Columns.user).agg(
        *user_rate_aggs(),
        exact_mean(pl.col("_res")).alias("u_lwr_resid"),
        exact_mean(pl.col("_pos_res")).alias("u_pos_resid"),
    )
    by_tag = (
        views.select(Columns.user, Columns.tags, "_pos", "_res")
        .explode(Columns.tags)
        .group_by(Columns.user, Columns.tags)
        .agg(pl.col("_pos").sum().alias("_tag_pos"), pl.len().alias("_tag_n"), exact_sum(pl.col("_res")).alias("_tag_res"))
    )
    by_bucket = views.group_by(Columns.user, "duration_bucket").agg(
        pl.col("_pos").sum().alias("_bucket_pos"), pl.len().alias("_bucket_n")
    )
    pair_keys = pairs.select(ROW, *PAIR).join(item_keys, on=Columns.item, how="left", maintain_order="left")
    tag_n = pl.col("_tag_n").fill_null(0)
    per_tag = (
        pair_keys.select(ROW, Columns.user, Columns.tags)
        .explode(Columns.tags)
        .join(by_tag, on=[Columns.user, Columns.tags], how="left")
        .join(by_user, on=Columns.user, how="left")
        .with_columns(
            smoothed_rate(pl.col("_tag_pos").fill_null(0), tag_n, pl.col("_user_rate"), smoothing).alias("_tag_rate"),
            (tag_n / pl.col("_user_n")).alias("_tag_share"),
            smoothed_rate(pl.col("_tag_res").fill_null(0), tag_n, pl.col("u_lwr_resid"), smoothing).alias("_tag_resid"),
        )
        .group_by(ROW)
        .agg(
            exact_mean(pl.col("_tag_rate")).alias("ux_tag_pos_rate"),
            pl.col("_tag_share").max().alias("ux_tag_view_share"),
            exact_mean(pl.col("_tag_resid")).alias("ux_tag_lwr_resid"),
            pl.col("_tag_resid").max().alias("ux_tag_lwr_resid_max"),
        )
    )
    per_bucket = (
        pair_keys.select(ROW, Columns.user, "duration_bucket")
        .join(by_bucket, on=[Columns.user, "duration_bucket"], how="left")
        .join(by_user, on=Columns.user, how="left")
        .select(
            ROW,
            smoothed_rate(
                pl.col("_bucket_pos").fill_null(0), pl.col("_bucket_n").fill_null(0), pl.col("_user_rate"), smoothing
            ).alias("ux_duration_pos_rate"),
        )
    )
    per_author = author_pair_features(
        views.select(Columns.user, AUTHOR, "_pos"), pair_keys, by_user.select(Columns.user, "_user_rate", "_user_n"), smoothing
    )
    return (
        pairs.select(ROW, Columns.user)
        .join(per_tag, on=ROW, how="left", maintain_order="left")
        .join(per_bucket, on=ROW, how="left", maintain_order="left")
        .join(by_user.select(Columns.user, "u_lwr_resid", "u_pos_resid"), on=Columns.user, how="left", maintain_order="left")
        .join(per_author, on=ROW, how="left", maintain_order="left")
        .select(ROW, *(pl.col(c).cast(pl.Float32) for c in AFFINITY_FEATURES), *PAIR_AUTHOR_FEATURES)
    )


def _item_keys(items: pl.DataFrame, authors: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per video: its tags, duration bucket and author (null without ``authors``, or for a video without one)."""
    keys = items.select(
        Columns.item, Columns.tags, duration_bucket(pl.col(Columns.video_duration)).alias("duration_bucket")
    )
    if authors is None:
        return keys.with_columns(pl.lit(None, dtype=pl.Int64).alias(AUTHOR))
    return keys.join(authors, on=Columns.item, how="full", coalesce=True)


def user_affinity_features(
    history: pl.DataFrame, items: pl.DataFrame, pairs: pl.DataFrame, threshold: float, smoothing: float
) -> pl.DataFrame:
    """Per pair: the user's affinity to the video's tags and duration bucket, and the taste residuals.

    Returns
    -------
    polars.DataFrame
        One row per row of ``pairs`` (same order): ``ux_tag_pos_rate``, ``ux_tag_view_share``,
        ``ux_duration_pos_rate``, ``u_lwr_resid``, ``u_pos_resid``, ``ux_tag_lwr_resid``,
        ``ux_tag_lwr_resid_max`` (float32; null for users without history).
    """
    stats = HistoryStats.from_partials(item_partials(history, threshold))
    item_frame = _item_history_frame(stats, smoothing, items.height)
    rows = pairs.lazy().select(PAIR).with_row_index(ROW)
    affinity = _affinity(
        history_with_marks(history, threshold),
        rows,
        item_frame.lazy().select(Columns.item, "_item_pos", "_item_log"),
        _item_keys(items).lazy(),
        smoothing,
    )
    return rows.join(affinity, on=ROW, how="left", maintain_order="left").drop(ROW, *PAIR_AUTHOR_FEATURES).collect()


# ------------------------------------------------------------------------------------------------
# The whole table: global context once, then one function per user partition
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureContext:
    """What every partition of a feature table reads: computed once, broadcast to the workers once.

    Attributes
    ----------
    user_profile, item_static, item_history, item_keys, item_means, daily
        Per-user and per-video tables (the daily one per video and serving date).
    author_rates
        Each video's author's rate in the history (:mod:`reco.models.author_features`); ``item_keys``
        holds the author.
    als_model, catalogue
        The ALS model and the serving catalogue its rank percentile is taken over.
    global_rate
        The history's positive rate (the prior of the users' smoothed rates).
    n_users, history_views
        The platform's number of users (the users side table) and the history's number of views:
        ``u_views_rel`` is a user's views over ``history_views / n_users``.
    threshold, smoothing
        ``label.threshold`` and ``features.popularity_smoothing``.
    label_columns
        Pair columns carried through untouched.
    latest_serving_date
        ``temporal`` protocol: the day after the cut (see :func:`build_feature_table`).
    """

    user_profile: pl.DataFrame
    item_static: pl.DataFrame
    item_history: pl.DataFrame
    item_keys: pl.DataFrame
    item_means: pl.DataFrame
    daily: pl.DataFrame
    author_rates: pl.DataFrame
    als_model: AlsModel
    catalogue: np.ndarray
    global_rate: float
    threshold: float
    smoothing: float
    n_users: int
    history_views: int
    label_columns: tuple[str, ...] = ()
    latest_serving_date: dt.date | None = None
    history_columns: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class FeatureSources:
    """What a feature table is built from: the pairs, the history a model may know, side tables, ALS, catalogue.

    ``pairs`` and ``history`` are parquet files (read one user partition at a time, as the features
    stage does) or frames already in memory; the history may also be a
    :class:`reco.partitions.UserRowIndex`.
    """

    pairs: Path | pl.DataFrame
    history: Path | pl.DataFrame | UserRowIndex
    users: pl.DataFrame
    items: pl.DataFrame
    item_daily: pl.DataFrame
    als_model: AlsModel
    catalogue: np.ndarray


def _user_rows(source: Path | pl.DataFrame | UserRowIndex) -> UserRowIndex:
    """A file's :class:`UserRowIndex`, or the frame behind the same interface (:class:`FrameRows`)."""
    if isinstance(source, UserRowIndex):
        return source
    if isinstance(source, pl.DataFrame):
        return FrameRows(source)
    return UserRowIndex(source)


def feature_context(
    stats: HistoryStats,
    sources: FeatureSources,
    *,
    threshold: float,
    smoothing: float,
    daily_window_days: int,
    label_columns: Sequence[str] = (),
    latest_serving_date: dt.date | None = None,
    history_columns: Sequence[str] = (),
) -> FeatureContext:
    """The :class:`FeatureContext` of a history's :class:`HistoryStats` and the side tables of ``sources``."""
    users, items = sources.users, sources.items
    item_frame = _item_history_frame(stats, smoothing, items.height)
    authors = video_authors(sources.item_daily)
    return FeatureContext(
        user_profile=users.select(
            Columns.user,
            pl.col(Columns.user_active_degree).to_physical().cast(pl.Int16).alias("user_active_degree"),
            *(pl.col(c).cast(pl.Float32) for c in USER_PROFILE_NUMERIC),
        ),
        item_static=items.select(
            Columns.item,
            (pl.col(Columns.video_duration) / 1000.0).cast(pl.Float32).alias("duration_s"),
            duration_bucket(pl.col(Columns.video_duration)).alias("duration_bucket"),
            pl.col("n_tags").cast(pl.Float32),
            pl.col(Columns.tags).list.first().cast(pl.Int16).alias("primary_tag"),
        ),
        item_history=item_frame.select(Columns.item, "i_views_rel", "i_pos_rate", "i_log_wr_mean"),
        item_keys=_item_keys(items, authors),
        item_means=item_frame.select(Columns.item, "_item_pos", "_item_log"),
        daily=item_daily_window_features(sources.item_daily, daily_window_days).rename({Columns.date: _SERVING}),
        author_rates=author_history(stats.items, authors, stats.global_rate, smoothing),
        als_model=sources.als_model,
        catalogue=np.unique(np.asarray(sources.catalogue, dtype=np.int32)),
        global_rate=stats.global_rate,
        threshold=threshold,
        smoothing=smoothing,
        n_users=users.height,
        history_views=stats.views,
        label_columns=tuple(label_columns),
        latest_serving_date=latest_serving_date,
        history_columns=tuple(history_columns),
    )


def describe_pairs(pairs: pl.DataFrame, history: pl.DataFrame, context: FeatureContext) -> pl.DataFrame:
    """Every feature of ``pairs`` (with a ``_row`` column) from their users' ``history`` rows.

    ``history`` must hold every history row of the pairs' users (other users' rows change
    nothing); the result has ``_row``, the pair, the label columns and the features, in the
    order of ``pairs``.
    """
    serving = pl.col(Columns.date)
    if context.latest_serving_date is not None:
        serving = pl.min_horizontal(serving, pl.lit(context.latest_serving_date))
    base = pairs.lazy().select(ROW, *PAIR, *context.label_columns, serving.alias(_SERVING))
    marked = history_with_marks(history, context.threshold)
    affinity = _affinity(
        marked, base.select(ROW, *PAIR), context.item_means.lazy(), context.item_keys.lazy(), context.smoothing
    )
    als = als_pair_features(
        context.als_model, pairs.select(PAIR), context.catalogue, seen=seen_matrix(context.als_model, history)
    )
    frame = (
        base.join(context.user_profile.lazy(), on=Columns.user, how="left", maintain_order="left")
        .join(_user_history(marked, context), on=Columns.user, how="left", maintain_order="left")
        .join(context.item_static.lazy(), on=Columns.item, how="left", maintain_order="left")
        .join(context.item_history.lazy(), on=Columns.item, how="left", maintain_order="left")
        .join(context.author_rates.lazy(), on=Columns.item, how="left", maintain_order="left")
        .join(context.daily.lazy(), on=[Columns.item, _SERVING], how="left", maintain_order="left")
        .join(affinity, on=ROW, how="left", maintain_order="left")
        .collect()
        .hstack(als.select("als_score", "als_rank_pct"))  # als_pair_features keeps the row order
        .with_columns(
            (pl.col("u_play_s_median") / pl.col("duration_s")).cast(pl.Float32).alias("ux_expected_watch_ratio")
        )
        .drop(_SERVING)
    )
    features = _feature_names(frame.columns, context.label_columns)
    numeric = [c for c in features if c not in CATEGORICAL_FEATURES]
    return frame.with_columns(pl.col(numeric).cast(pl.Float32), pl.col(list(CATEGORICAL_FEATURES)).cast(pl.Int16))


def _feature_names(columns: Sequence[str], label_columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c not in (ROW, *PAIR, *label_columns)]


def feature_partition(
    users: np.ndarray, *, pairs: UserRowIndex, history: UserRowIndex, context: FeatureContext
) -> pl.DataFrame:
    """:func:`describe_pairs` of one user partition: its pairs and history rows read from their files.

    A Dask task with ``compute.engine: dask``; called partition after partition in-process otherwise.
    """
    pair_columns = [*PAIR, Columns.date, *context.label_columns]
    pair_rows = pairs.scan(users, pair_columns, row_index=ROW).collect()
    history_rows = history.scan(users, list(context.history_columns) or history_columns(history.schema)).collect()
    return describe_pairs(pair_rows, history_rows, context)


def _check_pairs(schema: pl.Schema) -> None:
    if Columns.date not in schema:
        raise ValueError(f"pairs need a {Columns.date!r} column (the view date; null when unknown)")


def build_feature_table(
    sources: FeatureSources,
    *,
    threshold: float,
    smoothing: float,
    daily_window_days: int,
    label_columns: Sequence[str] = (),
    latest_serving_date: dt.date | None = None,
    client: Client | None = None,
    n_partitions: int = 1,
    history_stats_cache: HistoryStats | None = None,
) -> FeatureTable:
    """Join every feature group onto the pairs (row order kept) and return the ordered feature list.

    The in-memory form of :func:`write_feature_table` (the same functions; the table is returned,
    not written): the result is the same for any ``n_partitions`` and ``client``.

    Parameters
    ----------
    sources
        The (user, video) pairs to describe with their view ``date`` (null when unknown), plus
        optional ``label_columns`` carried through untouched (a frame, or a file read whole); the
        history a model may know (docs/protocol.md), never a view of a pair being described (a
        frame, or a file read one user partition at a time); the side tables, the ALS model and
        the catalogue its rank percentile is taken over (minus each user's watched videos).
    latest_serving_date
        ``temporal`` protocol: the day after the cut (:func:`temporal_serving_date`); a row's
        daily features then end there even if its view came later. ``None``
        (``fully_observed``): each row's own view date.
    client, n_partitions
        Where the user partitions run (``None``: in this process) and how many there are.
    history_stats_cache
        The history's :class:`HistoryStats` when the caller already has them.
    """
    pairs = sources.pairs if isinstance(sources.pairs, pl.DataFrame) else pl.read_parquet(sources.pairs)
    _check_pairs(pairs.schema)
    history_rows = _user_rows(sources.history)
    stats = history_stats_cache or history_stats(history_rows, threshold, client=client, n_partitions=n_partitions)
    context = feature_context(
        stats, sources, threshold=threshold, smoothing=smoothing, daily_window_days=daily_window_days,
        label_columns=label_columns, latest_serving_date=latest_serving_date,
        history_columns=history_columns(history_rows.schema),
    )  # fmt: skip
    pair_rows = FrameRows(pairs)
    parts = map_user_partitions(
        client, feature_partition, pair_rows.users, n_partitions,
        broadcast={"pairs": pair_rows, "history": history_rows, "context": context},
    )  # fmt: skip
    if parts:
        frame = pl.concat(parts).sort(ROW).drop(ROW)
    else:
        empty_history = pl.DataFrame(schema={c: history_rows.schema[c] for c in context.history_columns})
        frame = describe_pairs(pairs.clear().with_row_index(ROW), empty_history, context).drop(ROW)
    if frame.height != pairs.height:
        raise ValueError(f"{pairs.height - frame.height} pair(s) without a user id: every pair needs one")
    features = _feature_names(frame.columns, label_columns)
    return FeatureTable(frame=frame, features=features, categorical=list(CATEGORICAL_FEATURES))


def write_feature_table(
    sources: FeatureSources,
    out_file: Path,
    *,
    threshold: float,
    smoothing: float,
    daily_window_days: int,
    compute: ComputeParams,
    client: Client | None = None,
    label_columns: Sequence[str] | None = None,
    latest_serving_date: dt.date | None = None,
    history_stats_cache: HistoryStats | None = None,
) -> FeatureTable:
    """Build the feature table of a pairs file and write it to ``out_file``, one user partition at a time.

    Reads the pairs and history files with sliced lazy scans (:class:`reco.partitions.UserRowIndex`);
    never holds more than one partition's pairs, history rows and features (plus the per-video
    tables), on this process or on a worker. The file has the bytes :func:`reco.io.write_parquet`
    gives the whole table (:func:`reco.partitions.write_parquet_partitions`).

    Parameters
    ----------
    sources
        Pairs and history files, side tables, ALS model and catalogue.
    out_file
        The parquet file to write (atomically).
    threshold, smoothing, daily_window_days, latest_serving_date
        As :func:`build_feature_table`.
    compute
        The ``compute`` section: partitions (:func:`reco.partitions.partition_count`) and engine.
    client
        From :func:`reco.compute.compute_client` (``None``: in this process).
    label_columns
        Pair columns carried through; ``None``: ``label``, ``relevance``, ``watch_ratio`` if present.
    history_stats_cache
        The history's :class:`HistoryStats` when the caller already has them (several tables on one history).

    Returns
    -------
    FeatureTable
        The feature list, with an empty ``frame`` of the table's schema (the rows are on disk).
    """
    pairs = _user_rows(sources.pairs)
    history = _user_rows(sources.history)
    _check_pairs(pairs.schema)
    if label_columns is None:
        label_columns = [c for c in (Columns.label, Columns.relevance, Columns.watch_ratio) if c in pairs.schema]
    stats = history_stats_cache or history_stats(
        history, threshold, client=client, n_partitions=partition_count(history.n_rows, compute)
    )
    context = feature_context(
        stats, sources, threshold=threshold, smoothing=smoothing, daily_window_days=daily_window_days,
        label_columns=label_columns, latest_serving_date=latest_serving_date,
        history_columns=history_columns(history.schema),
    )  # fmt: skip
    n_partitions = partition_count(history.rows_of(pairs.users) + pairs.n_rows, compute)
    broadcast = {"pairs": pairs, "history": history, "context": context}
    in_flight = None if client is None else 2 * max(1, len(client.nthreads()))
    parts: Iterator[pl.DataFrame] = iter_user_partitions(
        client, feature_partition, pairs.users, n_partitions, broadcast=broadcast, max_in_flight=in_flight
    )
    n_rows = int(pairs.counts.sum())
    frames: Iterator[pl.DataFrame]
    if pairs.grouped:  # the partitions' rows, one after the other, are the file's order
        frames = (part.drop(ROW) for part in parts)
    else:  # rows of a user are scattered: restore the file's order in memory
        whole = pl.concat(list(parts)).sort(ROW).drop(ROW)
        frames = iter([whole])
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{sources.pairs}: no pair to describe")
    write_parquet_partitions(_chain(first, frames), n_rows, first.schema, out_file)
    features = _feature_names(first.columns, label_columns)
    return FeatureTable(frame=first.clear(), features=features, categorical=list(CATEGORICAL_FEATURES))


def _chain(first: pl.DataFrame, rest: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    yield first
    yield from rest


def temporal_serving_date(protocol: str, history: Path) -> dt.date | None:
    """The latest serving date a protocol allows: the day after the history's last view under ``temporal``.

    Under the temporal protocol nothing after the cut exists when the model serves, so every row's
    daily features end there (the ``latest_serving_date`` of :func:`write_feature_table`); under
    any other protocol each row serves at its own view date (``None``).

    Raises
    ------
    InputDataError
        ``temporal`` and the history has no view date.
    """
    if protocol != "temporal":
        return None
    return scan_history_max_date(history) + dt.timedelta(days=1)


def scan_history_max_date(path: Path) -> dt.date:
    """The last view date of a history file (one streaming pass over its ``date`` column).

    Raises
    ------
    InputDataError
        The file has no view date.
    """
    value = pl.scan_parquet(path).select(pl.col(Columns.date).max()).collect(engine="streaming").item()
    if not isinstance(value, dt.date):
        raise InputDataError(path, f"no {Columns.date!r} to end the temporal protocol's serving window at")
    return value
