"""Metrics per user segment (reco.evaluation.segments)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from reco.evaluation.metrics import ranking_metrics
from reco.evaluation.segments import history_quartiles, nearest_cutoff, segments_report, user_segments
from reco.schema import Columns


def test_user_segments_joins_profiles_and_history_lengths_in_grid_order() -> None:
    profiles = pl.DataFrame(
        {Columns.user: [1, 2, 3], Columns.user_active_degree: ["full_active", "high_active", "UNKNOWN"]},
        schema_overrides={
            Columns.user: pl.Int32,
            Columns.user_active_degree: pl.Enum(["UNKNOWN", "full_active", "high_active"]),
        },
    )
    train = pl.DataFrame({Columns.user: [3, 3, 3, 1]}, schema_overrides={Columns.user: pl.Int32})
    seg = user_segments(np.array([3, 1, 7], dtype=np.int32), profiles, train)
    assert seg.rows() == [(3, "UNKNOWN", 3), (1, "full_active", 1), (7, "missing", 0)]


def test_history_quartiles_split_at_the_quantiles_and_keep_ties_together() -> None:
    codes, edges = history_quartiles(np.array([8, 1, 2, 3, 4, 5, 6, 7]))
    assert edges.tolist() == [2.75, 4.5, 6.25]
    assert codes.tolist() == [3, 0, 0, 1, 1, 2, 2, 3]
    codes, _ = history_quartiles(np.array([5, 5, 5, 5, 5, 9]))
    assert codes.tolist() == [0, 0, 0, 0, 0, 3]  # equal lengths never straddle a cut


def test_nearest_cutoff_prefers_ten() -> None:
    assert nearest_cutoff([5, 10, 20]) == 10
    assert nearest_cutoff([5, 20]) == 5  # tie: the smaller
    assert nearest_cutoff([50, 100]) == 50


def test_segment_means_on_a_small_frame() -> None:
    # 5 users, item 0 recommended to everyone; users 0, 2 like item 0 (ndcg@1 = 1), users 1, 4 do not,
    # user 3 likes nothing (not evaluated: its segment row must be skipped, not shift the others).
    relevant = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 1]], dtype=bool)
    rec = np.zeros((5, 1), dtype=np.int32)
    results = {"m": ranking_metrics(rec, relevant, [1], 2), "other": ranking_metrics(rec + 1, relevant, [1], 2)}
    segments = pl.DataFrame(
        {
            Columns.user: [10, 11, 12, 13, 14],
            Columns.user_active_degree: ["full_active", "full_active", "high_active", "high_active", "high_active"],
            "history_length": [1, 2, 3, 100, 4],
        }
    )
    report = segments_report(results, segments, k=1, metric_names=["ndcg", "recall"])
    assert report["metrics"] == ["ndcg_at_1", "recall_at_1"]
    full, high = report["user_active_degree"]["full_active"], report["user_active_degree"]["high_active"]
    assert full["users"] == 2 and high["users"] == 2  # user 13 has no positive
    assert full["models"]["m"]["ndcg_at_1"] == 0.5  # users 10 (hit) and 11 (miss)
    assert high["models"]["m"]["ndcg_at_1"] == 0.5  # users 12 (hit) and 14 (miss)
    assert high["models"]["other"]["ndcg_at_1"] == 0.5 and full["models"]["other"]["recall_at_1"] == 0.5
    # history lengths of the evaluated users 1, 2, 3, 4: one user per quartile
    quartiles = report["history_quartile"]
    assert list(quartiles) == ["q1", "q2", "q3", "q4"]
    assert [(q["history_min"], q["history_max"], q["users"]) for q in quartiles.values()] == [
        (1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 4, 1)
    ]  # fmt: skip
    assert [q["models"]["m"]["ndcg_at_1"] for q in quartiles.values()] == [1.0, 0.0, 1.0, 0.0]
    assert report["history_quartile_edges"] == [1.75, 2.5, 3.25]


def test_segments_report_refuses_a_k_that_was_not_evaluated() -> None:
    result = ranking_metrics(np.zeros((1, 1), dtype=np.int32), np.array([[True]]), [1], 1)
    segments = pl.DataFrame({Columns.user: [1], Columns.user_active_degree: ["a"], "history_length": [3]})
    with pytest.raises(ValueError, match="K=10"):
        segments_report({"m": result}, segments, k=10)
