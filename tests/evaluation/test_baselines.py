"""The reference rankers of reco.models.baselines: duration, duration buckets, popularity within them."""

from __future__ import annotations

import numpy as np
import polars as pl

from reco.data.labels import bucket_index_expr
from reco.evaluation.metrics import top_k_items
from reco.models.baselines import (
    duration_popularity_scores,
    duration_scores,
    item_durations,
    popularity_item_scores,
)
from reco.schema import Columns

EDGES = (6_000.0, 15_000.0)


def views(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    """Training views (video, duration in ms, watch ratio)."""
    item, duration, ratio = zip(*rows, strict=True)
    return pl.DataFrame(
        {Columns.item: list(item), Columns.video_duration: list(duration), Columns.watch_ratio: list(ratio)},
        schema_overrides={Columns.item: pl.Int32, Columns.video_duration: pl.Int32},
    )


def test_duration_ranks_the_shortest_videos_first_and_unknown_lengths_last() -> None:
    items_table = pl.DataFrame(
        {Columns.item: [10, 11, 12, 13], Columns.video_duration: [45_000, 3_000, None, 9_000]},
        schema_overrides={Columns.item: pl.Int32},
    )
    catalogue = np.array([10, 11, 12, 13, 14])  # 14 is not in the items table
    scores = duration_scores(item_durations(items_table, catalogue))
    order = top_k_items(scores[None, :], 5)[0]
    assert catalogue[order].tolist() == [11, 13, 10, 12, 14]  # 3 s, 9 s, 45 s, then the unknown lengths


def test_duration_popularity_gives_every_video_of_a_bucket_its_bucket_rate() -> None:
    # bucket 0 (<= 6 s): 3 of 4 views positive; bucket 1: 1 of 4; bucket 2 (> 15 s): 0 of 2
    train = views(
        [(1, 3_000, 3.0), (1, 3_000, 2.5), (2, 5_000, 4.0), (2, 5_000, 0.5),
         (3, 9_000, 2.5), (3, 9_000, 0.2), (4, 12_000, 0.3), (4, 12_000, 0.1),
         (5, 40_000, 0.1), (5, 40_000, 0.2)]
    )  # fmt: skip
    catalogue = np.array([1, 2, 3, 4, 5, 6])
    durations = np.array([3_000.0, 5_000.0, 9_000.0, 12_000.0, 40_000.0, 4_000.0])  # 6: unseen, bucket 0
    out = duration_popularity_scores(train, durations, catalogue, EDGES, threshold=2.0, smoothing=4.0)
    assert out.bucket.tolist() == [0, 0, 1, 1, 2, 0]
    global_rate = 4 / 10
    expected_rates = [(3 + 4 * global_rate) / (4 + 4), (1 + 4 * global_rate) / (4 + 4), (0 + 4 * global_rate) / (2 + 4)]
    np.testing.assert_allclose(out.rates, expected_rates)
    # equal scores within a bucket, whatever each video's own record
    assert out.bucket_rate[0] == out.bucket_rate[1] == out.bucket_rate[5]
    assert out.bucket_rate[2] == out.bucket_rate[3]
    np.testing.assert_allclose(out.bucket_rate, np.array(expected_rates)[out.bucket])


def test_buckets_are_the_label_rules_buckets() -> None:
    # One definition: a duration equal to an edge stays in the lower bucket, as in reco.data.labels.
    durations = np.array([6_000.0, 6_001.0, 15_000.0, 15_001.0])
    train = views([(1, 6_000, 3.0)])
    out = duration_popularity_scores(train, durations, np.array([1, 2, 3, 4]), EDGES, threshold=2.0, smoothing=1.0)
    expected = pl.DataFrame({Columns.video_duration: durations}).select(bucket_index_expr(EDGES)).to_series()
    assert out.bucket.tolist() == expected.to_list() == [0, 1, 1, 2]


def test_popularity_within_duration_removes_the_duration_effect() -> None:
    # Short videos are positive far more often; within each bucket video A beats video B by the same factor.
    rows = []
    for item, duration, rate in ((1, 3_000, 0.8), (2, 3_000, 0.4), (3, 40_000, 0.2), (4, 40_000, 0.1)):
        n = 100
        rows += [(item, duration, 3.0)] * int(rate * n) + [(item, duration, 0.5)] * (n - int(rate * n))
    train = views(rows)
    catalogue = np.array([1, 2, 3, 4, 5])
    durations = np.array([3_000.0, 3_000.0, 40_000.0, 40_000.0, 40_000.0])  # 5: never seen
    out = duration_popularity_scores(train, durations, catalogue, EDGES, threshold=2.0, smoothing=0.0)
    popularity = popularity_item_scores(train, catalogue, threshold=2.0, smoothing=0.0)
    # popularity puts both short videos first; removing the duration effect ranks each video within its length
    assert catalogue[np.argsort(-popularity[:4], kind="stable")].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(out.within_bucket[:4], [0.8 / 0.6, 0.4 / 0.6, 0.2 / 0.15, 0.1 / 0.15])
    assert out.within_bucket[0] == out.within_bucket[2]  # the better video of each bucket: the same score
    assert out.within_bucket[4] == 1.0  # unseen: exactly its bucket's rate, neither better nor worse


def test_smoothing_pulls_rare_videos_toward_their_bucket_not_the_global_rate() -> None:
    rows = [(1, 3_000, 3.0)] * 90 + [(1, 3_000, 0.5)] * 10 + [(2, 40_000, 0.5)] * 100 + [(3, 40_000, 3.0)]
    out = duration_popularity_scores(views(rows), np.array([3_000.0, 40_000.0, 40_000.0]), np.array([1, 2, 3]),
                                     EDGES, threshold=2.0, smoothing=20.0)  # fmt: skip
    # video 3's single positive view moves it above 1 (its bucket's level), not to the global rate's level
    assert out.within_bucket[2] > 1.0 > out.within_bucket[1]
    assert np.isfinite(out.within_bucket).all()
