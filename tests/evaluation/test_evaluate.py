"""Evaluation glue: the test grid, the two-stage ordering, and the recommendations file."""

from __future__ import annotations

import numpy as np
import polars as pl

from reco.evaluation.evaluate import build_test_grid, evaluate_models, top_k_frame, two_stage_scores
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
    grid = build_test_grid(small_test())
    assert grid.users.tolist() == [7, 9] and grid.items.tolist() == [1, 2, 3]
    assert grid.relevant.tolist() == [[True, False, False], [False, True, False]]
    assert grid.observed.tolist() == [[True, True, True], [True, True, False]]


def test_two_stage_puts_reranked_candidates_first_then_first_stage_order() -> None:
    grid = build_test_grid(small_test())
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
    grid = build_test_grid(small_test())
    perfect = grid.relevant.astype(np.float32)
    worst = 1.0 - perfect
    results = evaluate_models(grid, {"perfect": perfect, "worst": worst}, [1, 2])
    assert results["perfect"].summary["ndcg_at_1"] == 1.0
    assert results["worst"].summary["hit_rate_at_1"] == 0.0
    np.testing.assert_array_equal(results["perfect"].evaluated_users, results["worst"].evaluated_users)
