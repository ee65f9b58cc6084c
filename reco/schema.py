"""Column names, file names and dtypes shared by every stage (the data contracts).

Use :class:`Columns` instead of string literals so that a renamed column is one edit. See
docs/design/core.md.

Examples
--------
>>> from reco.schema import Columns, RawFiles
>>> Columns.user, Columns.item, RawFiles.big_matrix
('user_id', 'video_id', 'big_matrix.csv')
"""

from __future__ import annotations

from typing import Final

import polars as pl


class Columns:
    """Column names used across raw files, prepared tables and outputs."""

    user: Final = "user_id"
    item: Final = "video_id"
    play_duration: Final = "play_duration"  # milliseconds watched
    video_duration: Final = "video_duration"  # milliseconds
    time: Final = "time"  # local (UTC+8) wall-clock string in raw files
    date: Final = "date"  # yyyymmdd in raw files, pl.Date once prepared
    timestamp: Final = "timestamp"  # epoch seconds in raw files, pl.Datetime("ms", "UTC") once prepared
    watch_ratio: Final = "watch_ratio"
    feat: Final = "feat"  # item_categories: Python-list string such as "[27, 9]"
    tags: Final = "tags"  # prepared: list[i8] of category tags
    friend_list: Final = "friend_list"
    user_active_degree: Final = "user_active_degree"
    expected_watch_ratio: Final = "expected_watch_ratio"  # simulator ground truth
    watch_eta: Final = "watch_eta"  # simulator ground truth: location of log seconds watched
    skip_shift: Final = "skip_shift"  # simulator ground truth: the viewer's shift of the skip logit
    label: Final = "label"  # binary relevance (label_ratio > threshold)
    label_ratio: Final = "label_ratio"  # watch_ratio scaled by the label rule (reco/data/labels.py)
    relevance: Final = "relevance"  # graded relevance (watch-ratio buckets)
    score: Final = "score"
    rank: Final = "rank"


class RawFiles:
    """KuaiRec 2.0 file names (``KuaiRec 2.0/data/``) plus the simulator's extras."""

    big_matrix: Final = "big_matrix.csv"
    small_matrix: Final = "small_matrix.csv"
    user_features: Final = "user_features.csv"
    item_categories: Final = "item_categories.csv"
    item_daily_features: Final = "item_daily_features.csv"
    social_network: Final = "social_network.csv"
    caption_category: Final = "kuairec_caption_category.csv"  # optional: not written by the simulator
    ground_truth: Final = "simulator_ground_truth.parquet"  # only when the source is the simulator
    manifest: Final = "manifest.json"  # written by ingest: source, profile/seed or archive checksum

    required: Final = (
        big_matrix,
        small_matrix,
        user_features,
        item_categories,
        item_daily_features,
        social_network,
    )


INTERACTION_COLUMNS: Final[tuple[str, ...]] = (
    Columns.user,
    Columns.item,
    Columns.play_duration,
    Columns.video_duration,
    Columns.time,
    Columns.date,
    Columns.timestamp,
    Columns.watch_ratio,
)

USER_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "user_id",
    "user_active_degree",
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num",
    "follow_user_num_range",
    "fans_user_num",
    "fans_user_num_range",
    "friend_user_num",
    "friend_user_num_range",
    "register_days",
    "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)

ITEM_CATEGORY_COLUMNS: Final[tuple[str, ...]] = (Columns.item, Columns.feat)

SOCIAL_NETWORK_COLUMNS: Final[tuple[str, ...]] = (Columns.user, Columns.friend_list)

ITEM_DAILY_COLUMNS: Final[tuple[str, ...]] = (
    "video_id", "date", "author_id", "video_type", "upload_dt", "upload_type", "visible_status",
    "video_duration", "video_width", "video_height", "music_id", "video_tag_id", "video_tag_name",
    "show_cnt", "show_user_num", "play_cnt", "play_user_num", "play_duration", "complete_play_cnt",
    "complete_play_user_num", "valid_play_cnt", "valid_play_user_num", "long_time_play_cnt",
    "long_time_play_user_num", "short_time_play_cnt", "short_time_play_user_num", "play_progress",
    "comment_stay_duration", "like_cnt", "like_user_num", "click_like_cnt", "double_click_cnt",
    "cancel_like_cnt", "cancel_like_user_num", "comment_cnt", "comment_user_num",
    "direct_comment_cnt", "reply_comment_cnt", "delete_comment_cnt", "delete_comment_user_num",
    "comment_like_cnt", "comment_like_user_num", "follow_cnt", "follow_user_num",
    "cancel_follow_cnt", "cancel_follow_user_num", "share_cnt", "share_user_num", "download_cnt",
    "download_user_num", "report_cnt", "report_user_num", "reduce_similar_cnt",
    "reduce_similar_user_num", "collect_cnt", "collect_user_num", "cancel_collect_cnt",
    "cancel_collect_user_num",
)  # fmt: skip

N_CATEGORY_TAGS: Final = 31  # KuaiRec tags are 0..30

# User-profile columns that are categories (kept as pl.Categorical once prepared).
USER_CATEGORICAL_COLUMNS: Final[tuple[str, ...]] = (
    "user_active_degree",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
)


EVALUATION_BLOCKS: Final[tuple[str, ...]] = ("validation", "test")
"""The two fully observed blocks of ``small_matrix``'s users: settings are chosen on ``validation``,
``test`` is read once, for the chosen configuration."""


class PreparedFiles:
    """Typed parquet tables written by ``prepare`` under ``data/prepared/``."""

    big: Final = "big_matrix.parquet"
    small: Final = "small_matrix.parquet"
    users: Final = "users.parquet"
    items: Final = "items.parquet"
    item_daily: Final = "item_daily.parquet"
    social: Final = "social_network.parquet"


# Dtypes of the prepared interaction tables (big and small matrix).
INTERACTION_SCHEMA: Final = pl.Schema(
    {
        Columns.user: pl.Int32,
        Columns.item: pl.Int32,
        Columns.play_duration: pl.Int32,
        Columns.video_duration: pl.Int32,
        Columns.timestamp: pl.Datetime("ms", "UTC"),
        Columns.date: pl.Date,
        Columns.watch_ratio: pl.Float32,
    }
)
