"""Author features (reco.models.author_features): counted from the history, smoothed, null without history."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from reco.models.author_features import author_history, user_author_affinity, video_authors
from reco.schema import Columns

# videos 1, 2 by author 10; video 3 by author 20; video 4 by author 10 (never viewed); video 5 by author 30
AUTHORS = pl.DataFrame({Columns.item: [1, 2, 3, 4, 5], "author_id": [10, 10, 20, 10, 30]}).with_columns(
    pl.col(Columns.item).cast(pl.Int32), pl.col("author_id").cast(pl.Int64)
)


def marked_history() -> pl.LazyFrame:
    # user 1: author 10 twice (one positive), author 20 once (not positive): own rate 1/3
    return pl.LazyFrame(
        {Columns.user: [1, 1, 1, 2], Columns.item: [1, 2, 3, 3], "_pos": [1.0, 0.0, 0.0, 1.0]}
    ).with_columns(pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32))


def test_user_author_affinity_counts_the_users_views_of_the_videos_author() -> None:
    pairs = pl.LazyFrame(
        {"_row": [0, 1, 2, 3], Columns.user: [1, 1, 1, 9], Columns.item: [4, 5, 3, 4]}
    ).with_columns(pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32), pl.col("_row").cast(pl.UInt32))
    out = user_author_affinity(marked_history(), pairs, AUTHORS.lazy(), smoothing=2.0).collect().sort("_row")
    rate, share = out["ux_author_pos_rate"].to_list(), out["ux_author_view_share"].to_list()
    own = 1 / 3
    assert rate[0] == pytest.approx((1 + 2 * own) / (2 + 2))  # an unseen video of an author seen twice
    assert share[0] == pytest.approx(2 / 3)
    assert rate[1] == pytest.approx(own) and share[1] == 0.0  # an author the user never watched: their own rate
    assert rate[2] == pytest.approx((0 + 2 * own) / (1 + 2)) and share[2] == pytest.approx(1 / 3)
    assert rate[3] is None and share[3] is None  # no history


def test_author_history_gives_a_cold_video_its_authors_rate() -> None:
    totals = pl.DataFrame({Columns.item: [1, 2, 3], "n": [10, 10, 4], "pos": [6, 2, 0]}).with_columns(
        pl.col(Columns.item).cast(pl.Int32)
    )
    rates = dict(author_history(totals, AUTHORS, global_rate=0.25, smoothing=4.0).rows())
    assert rates[4] == pytest.approx((8 + 4 * 0.25) / (20 + 4))  # never viewed, but its author was
    assert rates[1] == rates[2] == rates[4]
    assert rates[3] == pytest.approx((0 + 1.0) / (4 + 4))
    assert rates[5] == pytest.approx(0.25)  # an author without views: the global rate


def test_video_authors_takes_the_earliest_days_author_and_skips_missing_ones() -> None:
    daily = pl.DataFrame(
        {
            Columns.item: [7, 7, 8],
            Columns.date: [dt.date(2020, 7, 6), dt.date(2020, 7, 5), dt.date(2020, 7, 5)],
            "author_id": [11, 10, None],
        }
    )
    assert video_authors(daily).rows() == [(7, 10)]
