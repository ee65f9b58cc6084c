"""Evaluation glue: the block grid, the two-stage ordering, the recommendations file and the per-user table."""

from __future__ import annotations

import numpy as np
import polars as pl

from reco.evaluation.evaluate import (
    PER_USER_SCHEMA,
    build_block_grid,
    evaluate_models,
    metrics_payload,
    per_user_frame,
    top_k_frame,
    two_stage_scores,
)
from reco.evaluation.metrics import METRIC_NAMES
from reco.schema import Columns


def small_test() -> pl.DataFrame:
    # users 7 and 9; videos 1, 2, 3; cell (9, 3) unobserved
    return pl.DataFrame(
        {
            Columns.user: [7, 7, 7, 9, 9],
            Columns.item: [1, 2, 3, 1, 2],
            Columns.label: [True, False, False, False, True],
        },
        schema_overrides={Columns.user: pl.Int32, Columns.item: pl.Int32},
    )


def test_grid_marks_relevant_and_observed_cells() -> None:
    grid = build_block_grid(small_test())
    assert grid.users.tolist() == [7, 9] and grid.items.tolist() == [1, 2, 3]
    assert grid.relevant.tolist() == [[True, False, False], [False, True, False]]
    assert grid.observed.tolist() == [[True, True, True], [True, True, False]]


def test_two_stage_puts_reranked_candidates_first_then_first_stage_order() -> None:
    grid = build_block_grid(small_test())
    als = np.array([[0.9, 0.5, 0.1], [0.3, 0.2, 0.8]], dtype=np.float32)
    # user 7's candidates are videos 3 and 2 only; the ranker prefers 3 over 2
    reranked = pl.DataFrame(
        {Columns.user: [7, 7], Columns.item: [2, 3], Columns.score: [-1.0, 4.0]},
        schema_overrides={Columns.user: pl.Int32, Columns.item: pl.Int32},
    )
    combined = two_stage_scores(grid, reranked, als)
    top = top_k_frame(grid, combined, k=3)
    user7 = top.filter(pl.col(Columns.user) == 7)[Columns.item].to_list()
    assert user7 == [3, 2, 1]  # candidates by ranker score, then the non-candidate by ALS
    user9 = top.filter(pl.col(Columns.user) == 9)[Columns.item].to_list()
    assert user9 == [1, 2]  # no candidates: ALS order over observed cells only (3 is unobserved)


def test_models_are_scored_on_the_same_users() -> None:
    grid = build_block_grid(small_test())
    perfect = grid.relevant.astype(np.float32)
    worst = 1.0 - perfect
    results = evaluate_models(grid, {"perfect": perfect, "worst": worst}, [1, 2])
    assert results["perfect"].summary["ndcg_at_1"] == 1.0
    assert results["worst"].summary["hit_rate_at_1"] == 0.0
    np.testing.assert_array_equal(results["perfect"].evaluated_users, results["worst"].evaluated_users)


def test_per_user_frame_has_one_row_per_evaluated_user_model_metric_and_k() -> None:
    grid = build_block_grid(small_test())
    scores = {"perfect": grid.relevant.astype(np.float32), "worst": 1.0 - grid.relevant.astype(np.float32)}
    results = evaluate_models(grid, scores, [1, 2])
    frame = per_user_frame(grid, results)
    assert frame.schema == PER_USER_SCHEMA
    assert frame.height == 2 * len(METRIC_NAMES) * 2 * 2  # models x metrics x ks x evaluated users
    assert frame.equals(frame.sort("model", "metric", "k", Columns.user))
    assert set(frame["metric"].unique()) == set(METRIC_NAMES)  # coverage is not a per-user metric
    worst_ndcg = frame.filter((pl.col("model") == "worst") & (pl.col("metric") == "ndcg") & (pl.col("k") == 1))
    assert worst_ndcg.select(Columns.user, "value").rows() == [(7, 0.0), (9, 0.0)]


def test_per_user_means_are_the_reported_metrics() -> None:
    rng = np.random.default_rng(4)
    n_users, n_items = 40, 25
    test = pl.DataFrame(
        {
            Columns.user: np.repeat(np.arange(n_users), n_items),
            Columns.item: np.tile(np.arange(n_items), n_users),
            Columns.label: rng.random(n_users * n_items) < 0.1,
        },
        schema_overrides={Columns.user: pl.Int32, Columns.item: pl.Int32},
    )
    grid = build_block_grid(test)
    noisy = grid.relevant + rng.random(grid.relevant.shape).astype(np.float32)
    scores = {"noisy": noisy, "random": rng.random(grid.relevant.shape)}
    results = evaluate_models(grid, scores, [3, 10])
    frame = per_user_frame(grid, results)
    payload = metrics_payload(results)["models"]
    means = frame.group_by("model", "metric", "k").agg(pl.col("value").mean(), pl.len())
    assert means.height == 2 * len(METRIC_NAMES) * 2
    for model, metric, k, mean, users in means.iter_rows():
        assert users == len(results[model].evaluated_users) < n_users  # users without a positive are left out
        assert abs(payload[model][f"{metric}_at_{k}"] - mean) <= 5e-7
