"""Beyond-accuracy metrics on hand cases (reco.evaluation.beyond_accuracy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from reco.evaluation.beyond_accuracy import (
    ItemStats,
    beyond_accuracy_metrics,
    beyond_accuracy_report,
    gini,
    intra_list_diversity,
    item_stats,
    popularity_percentiles,
    self_information,
    tag_matrix,
)
from reco.evaluation.metrics import ranking_metrics
from reco.schema import Columns


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_gini_is_zero_for_equal_counts_and_n_minus_one_over_n_for_one_item(n: int) -> None:
    assert gini(np.full(n, 7)) == pytest.approx(0.0)
    concentrated = np.zeros(n)
    concentrated[n // 2] = 42
    assert gini(concentrated) == pytest.approx((n - 1) / n)


def test_gini_hand_case_ignores_order_and_handles_no_recommendation() -> None:
    # sorted x = (0, 1, 3): sum (2i - n - 1) x_i = (-2)*0 + 0*1 + 2*3 = 6; n * sum = 12
    assert gini(np.array([3, 0, 1])) == pytest.approx(0.5)
    assert gini(np.array([1, 3, 0])) == pytest.approx(0.5)
    assert gini(np.zeros(4)) == 0.0


def test_popularity_percentile_is_the_mid_rank_within_the_catalogue() -> None:
    np.testing.assert_allclose(popularity_percentiles(np.array([10, 0, 5, 5])), [87.5, 12.5, 50.0, 50.0])
    np.testing.assert_allclose(popularity_percentiles(np.array([3, 3, 3])), [50.0, 50.0, 50.0])


def test_novelty_is_the_mean_self_information_of_the_listed_items() -> None:
    # 8 training users; items seen by 8, 4, 2 and 0 of them -> 0, 1, 2 and (counted as 1 user) 3 bits
    np.testing.assert_allclose(self_information(np.array([8, 4, 2, 0]), 8), [0.0, 1.0, 2.0, 3.0])
    stats = ItemStats(
        interactions=np.array([40, 30, 20, 10]),
        users=np.array([8, 4, 2, 0]),
        n_train_users=8,
        tags=np.ones((4, 1), bool),
    )
    out = beyond_accuracy_metrics(np.array([[0, 1], [2, 3]]), [1, 2], stats)
    assert out["novelty_at_1"] == pytest.approx((0.0 + 2.0) / 2)
    assert out["novelty_at_2"] == pytest.approx((0.5 + 2.5) / 2)
    # popularity percentiles of items 0..3 are 87.5, 62.5, 37.5, 12.5
    assert out["popularity_percentile_at_2"] == pytest.approx(((87.5 + 62.5) / 2 + (37.5 + 12.5) / 2) / 2)
    # each item recommended once at K=2 -> equal exposure; at K=1 two items share everything
    assert out["gini_at_2"] == pytest.approx(0.0)
    assert out["gini_at_1"] == pytest.approx(0.5)


def _brute_force_ild(lists: list[list[int]], tags: np.ndarray) -> float:
    per_user = []
    for items in lists:
        items = [i for i in items if i >= 0]
        if len(items) < 2:
            continue
        distances = []
        for i, j in itertools.combinations(items, 2):
            a, b = tags[i].astype(float), tags[j].astype(float)
            norm = np.linalg.norm(a) * np.linalg.norm(b)
            distances.append(1.0 - (a @ b / norm if norm > 0 else 0.0))
        per_user.append(np.mean(distances))
    return float(np.mean(per_user))


def test_ild_uses_one_minus_cosine_of_tag_vectors() -> None:
    # item 0 {0}, item 1 {0}, item 2 {1}, item 3 {0, 1}, item 4 no tags
    tags = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    # pairs of [0, 1, 2, 3]: cos = 1, 0, 1/sqrt2, 0, 1/sqrt2, 1/sqrt2 -> mean distance 1 - (1 + 3/sqrt2)/6
    out = intra_list_diversity(np.array([[0, 1, 2, 3]]), tags, [2, 4])
    assert out[2] == pytest.approx(0.0)
    assert out[4] == pytest.approx(1.0 - (1.0 + 3.0 / math.sqrt(2.0)) / 6.0)
    # padding is not an item; an untagged item is dissimilar to everything; a 1-item list is skipped
    lists = [[0, -1, 2, 4], [1, 3, 0, 2], [4, -1, -1, -1]]
    out = intra_list_diversity(np.array(lists), tags, [4])
    assert out[4] == pytest.approx(_brute_force_ild(lists, tags))
    assert math.isnan(intra_list_diversity(np.array([[0, 1]]), tags, [1])[1])


def test_ild_matches_brute_force_on_random_lists() -> None:
    rng = np.random.default_rng(4)
    tags = rng.random((25, 31)) < 0.1
    lists = np.stack([rng.permutation(25)[:8] for _ in range(12)])
    for k in (2, 5, 8):
        assert intra_list_diversity(lists, tags, [k])[k] == pytest.approx(_brute_force_ild(lists[:, :k].tolist(), tags))


def test_item_stats_counts_training_interactions_users_and_tags() -> None:
    train = pl.DataFrame({Columns.user: [1, 1, 2, 3, 3], Columns.item: [10, 10, 10, 11, 99]})
    items = pl.DataFrame(
        {Columns.item: [10, 11, 12, 99], Columns.tags: [[0, 30], [5], [], [1]]},
        schema_overrides={Columns.tags: pl.List(pl.Int8)},
    )
    stats = item_stats(train, items, np.array([10, 11, 12]))
    assert stats.interactions.tolist() == [3, 1, 0]  # interaction count, repeats included
    assert stats.users.tolist() == [2, 1, 0]  # distinct users
    assert stats.n_train_users == 3
    assert stats.tags.shape == (3, 31)
    assert np.flatnonzero(stats.tags[0]).tolist() == [0, 30] and not stats.tags[2].any()


def test_tag_matrix_refuses_out_of_range_tags() -> None:
    items = pl.DataFrame({Columns.item: [1], Columns.tags: [[31]]})
    with pytest.raises(ValueError, match="category tags"):
        tag_matrix(items, np.array([1]))


def test_report_reuses_ranking_coverage_and_writes_undefined_as_null() -> None:
    rec = np.array([[0, 1], [0, 2]], dtype=np.int32)
    relevant = np.array([[True, False, False, False], [False, False, True, False]])
    result = ranking_metrics(rec, relevant, [1, 2], n_catalogue_items=4)
    stats = ItemStats(np.array([4, 3, 2, 1]), np.array([2, 2, 1, 1]), 2, np.eye(4, dtype=bool))
    report = beyond_accuracy_report({"m": rec}, {"m": result}, [1, 2], stats)
    values = report["models"]["m"]
    assert values["coverage_at_1"] == result.summary["coverage_at_1"] == 0.25
    assert values["coverage_at_2"] == 0.75
    assert values["ild_at_1"] is None and values["ild_at_2"] == 1.0  # distinct one-hot tags
    # item 0 twice, items 1 and 2 once, item 3 never: sorted (0, 1, 1, 2) -> G = (0 - 1 + 1 + 6) / 16
    assert values["gini_at_2"] == pytest.approx(6 / 16)
    assert set(report["definitions"]) == {"coverage", "gini", "popularity_percentile", "novelty", "ild"}
