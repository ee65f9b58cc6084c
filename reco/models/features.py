"""Feature tables for the ranker: one row per (user, video) pair to score.

What a model may know when it scores a pair (point-in-time rules)
-----------------------------------------------------------------
``fully_observed`` (default protocol: the test asks about the same period the models learn from,
an interpolation)
    * the *history* passed in: for the ranker's training rows, the training views without the
      held-out label pairs; for a block's candidates, all training views. Other users' views of
      the whole period are fair (that is what interpolation means), and no history row is ever a
      view of a pair being scored (split guarantees it);
    * ``item_daily_features`` only of days **strictly before the row's own view date** (the
      ``date`` of the logged view for training rows, of the block's cell for candidates): a
      platform counter of a later day describes the future of that view. A row without a view
      date (a block cell with no logged time, or an unobserved cell) gets no daily features
      (null);
    * the ALS model fitted on that history and the static side tables (profiles, tags, lengths).
``temporal`` (the notebooks' chronological cut)
    the same, but the daily window ends at the cut at the latest (the serving date is the day
    after the last history date): nothing after the cut exists yet when the model serves.
``tests/models/test_features.py`` shifts item_daily rows on and after the rows' view dates and
checks that no feature moves.

Groups of features
------------------
user profile
    ``user_features.csv`` columns; ``user_active_degree`` kept as a category.
user history
    views, smoothed positive rate, mean log watch ratio, median seconds watched.
item
    duration, number of tags, primary tag (category), views / smoothed positive rate / mean log
    watch ratio in the history, and ``item_daily_features`` aggregated over the
    ``features.daily_window_days`` days before the row's serving date (play, completion, like
    rates, the last such day's completion rate and its change: the appeal drift).
user x item
    ALS score and its rank percentile among the user's *unwatched* catalogue videos (the same
    quantity for training rows and candidates: a candidate's rank among the block's unwatched
    videos over their number), the user's smoothed positive rate on the video's tags and on its
    duration bucket, and the user's median watch time over the video's duration (people watch a
    roughly fixed number of seconds, so this predicts the watch ratio).
user taste beyond the video's own appeal
    Residuals of the user's log watch ratio against each watched video's mean: over all their
    views (``u_lwr_resid``; also of the positive label, ``u_pos_resid``) and over their views of
    the video's tags (``ux_tag_lwr_resid`` mean and max over the tags, smoothed toward the user's
    overall residual). Raw per-tag rates mix taste with the appeal of whatever the feed showed;
    the residual keeps only what the user adds to it.

Rates are smoothed toward a global rate with ``features.popularity_smoothing`` pseudo-views so that
rare users and videos do not get extreme values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse

from reco import portable_math
from reco.data.labels import labelled_ratio
from reco.models.als import AlsModel, item_scores
from reco.schema import Columns

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

PAIR = [Columns.user, Columns.item]
_LOG_EPS = 0.01  # watch ratios can be 0; log(wr + eps) keeps the mean finite


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


def _smoothed(positives: pl.Expr, views: pl.Expr, prior: pl.Expr | float, strength: float) -> pl.Expr:
    return (positives + strength * prior) / (views + strength)


def _portable_log1p(column: str) -> pl.Expr:
    """``log(1 + x)`` of a column through :mod:`reco.portable_math` (the same bits on every CPU).

    polars' ``log``/``log1p`` call the platform's libm, whose last bit differs between CPU
    families (FMA and non-FMA code, x86 and ARM builds); a feature value that moves by one bit
    can land in another LightGBM bin.
    """
    return pl.col(column).map_batches(
        lambda s: pl.Series(s.name, portable_math.log(s.cast(pl.Float64).to_numpy() + 1.0)), return_dtype=pl.Float64
    )


def _history_with_marks(history: pl.DataFrame, threshold: float) -> pl.LazyFrame:
    log_wr = portable_math.log(history[Columns.watch_ratio].cast(pl.Float64).to_numpy() + _LOG_EPS)
    return history.lazy().select(
        Columns.user,
        Columns.item,
        Columns.play_duration,
        # Float64 for every aggregate: polars' parallel group-by may sum in a different order run to
        # run; in float64 that moves only bits that the final float32 cast drops (byte-identical output).
        (labelled_ratio(history) > threshold).cast(pl.Float64).alias("_pos"),
        pl.lit(pl.Series("_log_wr", log_wr)),
    )


def user_history_features(history: pl.DataFrame, threshold: float, smoothing: float) -> pl.DataFrame:
    """Per-user aggregates of the history: views, smoothed positive rate, log watch ratio, seconds."""
    marked = _history_with_marks(history, threshold)
    global_rate = marked.select(pl.col("_pos").mean()).collect().item()
    return (
        marked.group_by(Columns.user)
        .agg(
            pl.len().alias("u_views"),
            pl.col("_pos").sum().alias("_pos_sum"),
            pl.col("_log_wr").mean().alias("u_log_wr_mean"),
            (pl.col(Columns.play_duration).median() / 1000.0).alias("u_play_s_median"),
        )
        .with_columns(
            _smoothed(pl.col("_pos_sum"), pl.col("u_views"), global_rate, smoothing).alias("u_pos_rate"),
            _portable_log1p("u_views").alias("u_views"),
        )
        .drop("_pos_sum")
        .sort(Columns.user)
        .collect()
    )


def item_history_features(history: pl.DataFrame, threshold: float, smoothing: float) -> pl.DataFrame:
    """Per-video aggregates of the history (popularity and smoothed positive rate)."""
    marked = _history_with_marks(history, threshold)
    global_rate = marked.select(pl.col("_pos").mean()).collect().item()
    global_log = marked.select(pl.col("_log_wr").mean()).collect().item()
    return (
        marked.group_by(Columns.item)
        .agg(
            pl.len().alias("i_views"),
            pl.col("_pos").sum().alias("_pos_sum"),
            pl.col("_log_wr").sum().alias("_log_sum"),
        )
        .with_columns(
            _smoothed(pl.col("_pos_sum"), pl.col("i_views"), global_rate, smoothing).alias("i_pos_rate"),
            _smoothed(pl.col("_log_sum"), pl.col("i_views"), global_log, smoothing).alias("i_log_wr_mean"),
            _portable_log1p("i_views").alias("i_views"),
        )
        .drop("_pos_sum", "_log_sum")
        .sort(Columns.item)
        .collect()
    )


DAILY_FEATURES: tuple[str, ...] = (
    "d_show_log", "d_play_rate", "d_complete_rate", "d_like_rate", "d_play_progress",
    "d_last_complete_rate", "d_complete_trend",
)  # fmt: skip


def item_daily_window_features(item_daily: pl.DataFrame, window_days: int) -> pl.DataFrame:
    """Daily-counter features of every video for every serving date, from the ``window_days`` days before it.

    Returns one row per (video, date) of a complete calendar (each video's first counter day to
    the day after the last one), where the features of ``date`` aggregate the counters of days
    ``date - window_days`` to ``date - 1`` only: joining a row on its serving date can never
    show it a counter of that day or later. Days without a counter row count as zero traffic.
    """
    counters = ["show_cnt", "play_cnt", "complete_play_cnt", "like_cnt"]
    daily = item_daily.select(
        Columns.item, Columns.date, *(pl.col(c).cast(pl.Int64) for c in counters),
        pl.col("play_progress").cast(pl.Float64), pl.lit(1, dtype=pl.Int64).alias("_days"),
    )  # fmt: skip
    spans = daily.group_by(Columns.item).agg(pl.col(Columns.date).min().alias("_first"), pl.col(Columns.date).max().alias("_last"))
    calendar = (
        spans.select(Columns.item, pl.date_ranges("_first", pl.col("_last") + dt.timedelta(days=1)).alias(Columns.date))
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
            pl.col("_w__days"),
        )
        .with_columns((pl.col("d_last_complete_rate") - pl.col("d_complete_rate")).alias("d_complete_trend"))
        .with_columns(  # no counter day in the window at all (before upload): unknown rather than zero
            pl.when(pl.col("_w__days") > 0).then(pl.col(c)).alias(c) for c in DAILY_FEATURES
        )
        .drop("_w__days")
    )


def user_affinity_features(
    history: pl.DataFrame, items: pl.DataFrame, pairs: pl.DataFrame, threshold: float, smoothing: float
) -> pl.DataFrame:
    """Per pair: the user's affinity to the video's tags and duration bucket, and the taste residuals.

    One pass over the history exploded by tag serves both the tag rates and the tag residuals, and
    one explode of the pairs serves every per-tag feature (see the module docstring for their
    meaning). Rates are smoothed toward the user's own rate, residuals toward the user's own
    residual, with ``smoothing`` pseudo-views.

    Returns
    -------
    polars.DataFrame
        One row per pair of ``pairs`` (same order): ``ux_tag_pos_rate``, ``ux_tag_view_share``,
        ``ux_duration_pos_rate``, ``u_lwr_resid``, ``u_pos_resid``, ``ux_tag_lwr_resid``,
        ``ux_tag_lwr_resid_max`` (float32; null for users without history).
    """
    item_keys = items.lazy().select(
        Columns.item, Columns.tags, duration_bucket(pl.col(Columns.video_duration)).alias("duration_bucket")
    )
    marked = _history_with_marks(history, threshold)
    global_log = marked.select(pl.col("_log_wr").mean()).collect().item()
    item_means = marked.group_by(Columns.item).agg(
        pl.col("_pos").mean().alias("_item_pos"),
        _smoothed(pl.col("_log_wr").sum(), pl.len(), global_log, smoothing).alias("_item_log"),
    )
    views = (
        marked.join(item_means, on=Columns.item, how="left")
        .join(item_keys, on=Columns.item, how="left")
        .with_columns(
            (pl.col("_log_wr") - pl.col("_item_log")).alias("_res"),
            (pl.col("_pos") - pl.col("_item_pos")).alias("_pos_res"),
        )
    )
    by_user = views.group_by(Columns.user).agg(
        pl.col("_pos").mean().alias("_user_rate"),
        pl.len().alias("_user_n"),
        pl.col("_res").mean().alias("u_lwr_resid"),
        pl.col("_pos_res").mean().alias("u_pos_resid"),
    )
    by_tag = (
        views.select(Columns.user, Columns.tags, "_pos", "_res")
        .explode(Columns.tags)
        .group_by(Columns.user, Columns.tags)
        .agg(pl.col("_pos").sum().alias("_tag_pos"), pl.len().alias("_tag_n"), pl.col("_res").sum().alias("_tag_res"))
    )
    by_bucket = views.group_by(Columns.user, "duration_bucket").agg(
        pl.col("_pos").sum().alias("_bucket_pos"), pl.len().alias("_bucket_n")
    )
    pair_keys = pairs.lazy().select(PAIR).join(item_keys, on=Columns.item, how="left")
    tag_n = pl.col("_tag_n").fill_null(0)
    per_tag = (
        pair_keys.select(*PAIR, Columns.tags)
        .explode(Columns.tags)
        .join(by_tag, on=[Columns.user, Columns.tags], how="left")
        .join(by_user, on=Columns.user, how="left")
        .with_columns(
            _smoothed(pl.col("_tag_pos").fill_null(0), tag_n, pl.col("_user_rate"), smoothing).alias("_tag_rate"),
            (tag_n / pl.col("_user_n")).alias("_tag_share"),
            _smoothed(pl.col("_tag_res").fill_null(0), tag_n, pl.col("u_lwr_resid"), smoothing).alias("_tag_resid"),
        )
        .group_by(PAIR)
        .agg(
            pl.col("_tag_rate").mean().alias("ux_tag_pos_rate"),
            pl.col("_tag_share").max().alias("ux_tag_view_share"),
            pl.col("_tag_resid").mean().alias("ux_tag_lwr_resid"),
            pl.col("_tag_resid").max().alias("ux_tag_lwr_resid_max"),
        )
    )
    per_bucket = (
        pair_keys.select(*PAIR, "duration_bucket")
        .join(by_bucket, on=[Columns.user, "duration_bucket"], how="left")
        .join(by_user, on=Columns.user, how="left")
        .select(
            *PAIR,
            _smoothed(
                pl.col("_bucket_pos").fill_null(0), pl.col("_bucket_n").fill_null(0), pl.col("_user_rate"), smoothing
            ).alias("ux_duration_pos_rate"),
        )
    )
    columns = ["ux_tag_pos_rate", "ux_tag_view_share", "ux_duration_pos_rate", "u_lwr_resid", "u_pos_resid",
               "ux_tag_lwr_resid", "ux_tag_lwr_resid_max"]  # fmt: skip
    return (
        pairs.lazy()
        .select(PAIR)
        .join(per_tag, on=PAIR, how="left", maintain_order="left")
        .join(per_bucket, on=PAIR, how="left", maintain_order="left")
        .join(by_user.select(Columns.user, "u_lwr_resid", "u_pos_resid"), on=Columns.user, how="left", maintain_order="left")
        .select(*PAIR, *(pl.col(c).cast(pl.Float32) for c in columns))
        .collect()
    )


def seen_matrix(model: AlsModel, history: pl.DataFrame) -> scipy.sparse.csr_matrix:
    """Users x items (model positions) 0/1 CSR of the pairs in ``history``: what each user has watched."""
    pairs = history.select(Columns.user, Columns.item).unique()
    rows = model.user_ids.index_of(pairs[Columns.user].to_numpy())
    cols = model.item_ids.index_of(pairs[Columns.item].to_numpy())
    known = (rows >= 0) & (cols >= 0)
    matrix = scipy.sparse.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=(len(model.user_ids), len(model.item_ids)),
    )
    matrix.sort_indices()
    return matrix


def als_pair_features(
    model: AlsModel,
    pairs: pl.DataFrame,
    catalogue: np.ndarray,
    seen: scipy.sparse.csr_matrix | None = None,
    chunk_users: int = 512,
) -> pl.DataFrame:
    """ALS score of each pair and its rank percentile among the user's unwatched catalogue videos.

    ``als_rank_pct`` = (1 + number of unwatched catalogue items scored higher) / number of
    unwatched catalogue items, so 0 is the top. ``seen`` (:func:`seen_matrix` of the history)
    marks the watched videos, which are left out of both counts (as are catalogue videos unknown
    to ALS), exactly as the candidates stage leaves them out of its list: a candidate at rank r
    of the block's unwatched videos has ``als_rank_pct = r / n_unwatched``, and a training row
    gets the same quantity over the whole catalogue. Unknown users/items give null.
    """
    users = pairs[Columns.user].to_numpy()
    items = pairs[Columns.item].to_numpy()
    catalogue = np.unique(np.asarray(catalogue, dtype=np.int32))
    pos_of_item = np.searchsorted(catalogue, items).clip(max=len(catalogue) - 1)
    pos_of_item = np.where(catalogue[pos_of_item] == items, pos_of_item, -1)
    catalogue_cols = model.item_ids.index_of(catalogue)
    score = np.full(len(pairs), np.nan, dtype=np.float32)
    rank_pct = np.full(len(pairs), np.nan, dtype=np.float32)
    order = np.argsort(users, kind="stable")
    unique_users, starts = np.unique(users[order], return_index=True)
    bounds = np.append(starts, len(order))
    for chunk_start in range(0, len(unique_users), chunk_users):
        chunk = unique_users[chunk_start : chunk_start + chunk_users]
        lo, hi = bounds[chunk_start], bounds[min(chunk_start + chunk_users, len(unique_users))]
        rows = order[lo:hi]
        matrix = item_scores(model, chunk, catalogue)  # (len(chunk), n_catalogue), NaN for unknown
        row_of = np.searchsorted(chunk, users[rows])
        cols = pos_of_item[rows]
        known = cols >= 0
        pair_scores = np.full(len(rows), np.nan, dtype=np.float32)
        pair_scores[known] = matrix[row_of[known], cols[known]]
        filled = matrix.astype(np.float64)  # NaN: unknown to ALS, left out like a watched video
        if seen is not None:  # watched videos leave the ranking (and its denominator)
            model_rows = model.user_ids.index_of(chunk)
            known_rows, known_cols = np.flatnonzero(model_rows >= 0), np.flatnonzero(catalogue_cols >= 0)
            if known_rows.size and known_cols.size:
                watched = seen[model_rows[known_rows]][:, catalogue_cols[known_cols]].toarray() > 0
                block = filled[np.ix_(known_rows, known_cols)]
                block[watched] = np.nan
                filled[np.ix_(known_rows, known_cols)] = block
        finite = np.isfinite(filled)
        available = finite.sum(axis=1)
        # Rank by sorted rows + one flattened searchsorted: offset each row so rows never interleave.
        span = np.abs(filled[finite]).max() * 4 + 1 if finite.any() else 1.0
        offsets = np.arange(len(chunk), dtype=np.float64)[:, None] * span
        sorted_rows = np.sort(np.where(finite, filled, -span / 2), axis=1) + offsets  # left-out ones sort last
        ok = known & ~np.isnan(pair_scores)
        keys = pair_scores[ok].astype(np.float64) + offsets[row_of[ok], 0]
        n_cat = matrix.shape[1]
        higher = (row_of[ok] + 1) * n_cat - np.searchsorted(sorted_rows.ravel(), keys, side="right")
        pair_ranks = np.full(len(rows), np.nan, dtype=np.float32)
        pair_ranks[ok] = (higher + 1) / np.maximum(available[row_of[ok]], 1)
        score[rows] = pair_scores
        rank_pct[rows] = pair_ranks
    return pl.DataFrame(
        {
            Columns.user: users,
            Columns.item: items,
            "als_score": pl.Series(score).fill_nan(None),
            "als_rank_pct": pl.Series(rank_pct).fill_nan(None),
        },
        schema_overrides={Columns.user: pl.Int32, Columns.item: pl.Int32},
    )


def build_feature_table(
    pairs: pl.DataFrame,
    *,
    history: pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    item_daily: pl.DataFrame,
    als_model: AlsModel,
    catalogue: np.ndarray,
    threshold: float,
    smoothing: float,
    daily_window_days: int,
    label_columns: Sequence[str] = (),
    latest_serving_date: dt.date | None = None,
) -> FeatureTable:
    """Join every feature group onto ``pairs`` (row order kept) and return the ordered feature list.

    Parameters
    ----------
    pairs
        (user, video) pairs to describe with their view ``date`` (null when unknown), plus
        optional ``label_columns`` carried through untouched.
    history
        The views a model may know (see the module docstring); never a view of a pair in ``pairs``.
    catalogue
        The videos the ALS rank percentile is taken over (minus each user's watched ones).
    latest_serving_date
        ``temporal`` protocol: the day after the cut; a row's daily features then end there even
        if its view came later. ``None`` (``fully_observed``): each row's own view date.
    """
    if Columns.date not in pairs.columns:
        raise ValueError(f"pairs need a {Columns.date!r} column (the view date; null when unknown)")
    serving = pl.col(Columns.date)
    if latest_serving_date is not None:
        serving = pl.min_horizontal(serving, pl.lit(latest_serving_date))
    base = pairs.select(*PAIR, *label_columns, serving.alias("_serving_date")).with_row_index("_row")
    user_profile = users.select(
        Columns.user,
        pl.col(Columns.user_active_degree).to_physical().cast(pl.Int16).alias("user_active_degree"),
        *(pl.col(c).cast(pl.Float32) for c in USER_PROFILE_NUMERIC),
    )
    item_static = items.select(
        Columns.item,
        (pl.col(Columns.video_duration) / 1000.0).cast(pl.Float32).alias("duration_s"),
        duration_bucket(pl.col(Columns.video_duration)).alias("duration_bucket"),
        pl.col("n_tags").cast(pl.Float32),
        pl.col(Columns.tags).list.first().cast(pl.Int16).alias("primary_tag"),
    )
    daily = item_daily_window_features(item_daily, daily_window_days).rename({Columns.date: "_serving_date"})
    als = als_pair_features(als_model, pairs.select(PAIR), catalogue, seen=seen_matrix(als_model, history))
    frame = (
        base.join(user_profile, on=Columns.user, how="left", maintain_order="left")
        .join(user_history_features(history, threshold, smoothing), on=Columns.user, how="left", maintain_order="left")
        .join(item_static, on=Columns.item, how="left", maintain_order="left")
        .join(item_history_features(history, threshold, smoothing), on=Columns.item, how="left", maintain_order="left")
        .join(daily, on=[Columns.item, "_serving_date"], how="left", maintain_order="left")
        .join(user_affinity_features(history, items, pairs, threshold, smoothing), on=PAIR, how="left", maintain_order="left")
        .join(als, on=PAIR, how="left", maintain_order="left")
        .with_columns(
            (pl.col("u_play_s_median") / pl.col("duration_s")).cast(pl.Float32).alias("ux_expected_watch_ratio")
        )
        .sort("_row")
        .drop("_row", "_serving_date")
    )
    features = [c for c in frame.columns if c not in (*PAIR, *label_columns)]
    numeric = [c for c in features if c not in CATEGORICAL_FEATURES]
    frame = frame.with_columns(pl.col(numeric).cast(pl.Float32), pl.col(list(CATEGORICAL_FEATURES)).cast(pl.Int16))
    return FeatureTable(frame=frame, features=features, categorical=list(CATEGORICAL_FEATURES))
