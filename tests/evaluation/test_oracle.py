"""The oracles (reco.evaluation.oracle): the probability of the label is exact, and ranking by it is the best.

The honest ``oracle`` ranks by P(label) and must be at least as good as ranking by the expected
watch ratio in *expectation* (expected hits and DCG at every K, for every user); ``oracle_item``
must be the best list shown to everyone. Both are checked on known truths, where the expectation
can be computed exactly instead of estimated from one draw of labels.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.data.labels import LabelRule
from reco.data.simulator import probability_watch_ratio_above, simulate
from reco.errors import InputDataError
from reco.evaluation.evaluate import BlockGrid, build_block_grid
from reco.evaluation.metrics import ranking_metrics, top_k_items
from reco.evaluation.oracle import item_means, label_cutoffs, label_probability, oracle_scores
from reco.schema import Columns, RawFiles

THRESHOLD_RULE = LabelRule("threshold", 2.0, (8_000.0, 15_000.0), (2.0, 2.0, 2.0))
DEBIASED_RULE = LabelRule("duration_debiased", 2.0, (8_000.0, 15_000.0), (3.0, 1.5, 0.8))
World = tuple[pl.DataFrame, pl.DataFrame]  # the tiny simulator's ground truth and small_matrix views


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The tiny simulator's ground truth and its small_matrix views (user, video, duration, watch ratio)."""
    out = tmp_path_factory.mktemp("tiny")
    simulate(Path(out), profile="tiny", seed=11)
    truth = pl.read_parquet(out / RawFiles.ground_truth)
    small = pl.read_csv(out / RawFiles.small_matrix).select(
        pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32), pl.col(Columns.watch_ratio)
    )
    return truth, small


def full_grid(truth: pl.DataFrame) -> BlockGrid:
    """Every ground-truth cell observed (labels are not used by the expectations below)."""
    return build_block_grid(truth.select(Columns.user, Columns.item, pl.lit(False).alias(Columns.label)))


def expected_gains(probability: np.ndarray, order: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user: expected hits in the top k of ``order`` and expected DCG@k, under independent labels."""
    top = np.take_along_axis(probability, order[:, :k], axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    return top.sum(axis=1), (top * discounts).sum(axis=1)


def test_cutoffs_follow_the_label_rule() -> None:
    durations = pl.Series([5_000, 8_000, 8_001, 15_000, 60_000])
    assert label_cutoffs(durations, THRESHOLD_RULE).tolist() == [2.0] * 5
    # an edge belongs to the lower bucket, as in reco.data.labels.bucket_index_expr
    assert label_cutoffs(durations, DEBIASED_RULE).tolist() == [3.0, 3.0, 1.5, 1.5, 0.8]


def test_label_probability_is_the_simulators_probability_at_the_cells_cutoff() -> None:
    truth = pl.DataFrame(
        {
            Columns.video_duration: [5_000, 10_000, 30_000],
            Columns.watch_eta: [2.0, 2.5, 3.0],
            Columns.skip_shift: [0.0, -0.5, 0.3],
        }
    )
    got = label_probability(truth, DEBIASED_RULE)
    want = probability_watch_ratio_above(
        np.array([2.0, 2.5, 3.0]), np.array([5.0, 10.0, 30.0]), np.array([3.0, 1.5, 0.8]), np.array([0.0, -0.5, 0.3])
    )
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rule", [THRESHOLD_RULE, DEBIASED_RULE], ids=["threshold", "duration_debiased"])
def test_label_probability_is_calibrated_on_the_simulated_views(
    tiny_world: World, rule: LabelRule
) -> None:
    # The simulator's real small_matrix labels are draws with exactly these probabilities: the count of
    # positives must match their sum within binomial noise (a unit slip, s vs ms, or a wrong bucket would not).
    truth, small = tiny_world
    cells = small.join(truth, on=[Columns.user, Columns.item], how="inner")
    assert cells.height == small.height
    p = label_probability(cells, rule)
    cutoffs = label_cutoffs(cells[Columns.video_duration], rule)
    positives = int((cells[Columns.watch_ratio].to_numpy() > cutoffs).sum())
    assert abs(positives - p.sum()) < 4.0 * np.sqrt((p * (1 - p)).sum()), (positives, p.sum())


def test_honest_oracle_beats_the_watch_ratio_oracle_in_expectation(tiny_world: World) -> None:
    truth, _ = tiny_world
    grid = full_grid(truth)
    scores = oracle_scores(truth, grid, THRESHOLD_RULE)
    probability = scores["oracle"]
    by_probability = top_k_items(scores["oracle"], 20)
    by_watch_ratio = top_k_items(scores["oracle_watch_ratio"], 20)
    for k in (5, 10, 20):
        hits, dcg = expected_gains(probability, by_probability, k)
        hits_wr, dcg_wr = expected_gains(probability, by_watch_ratio, k)
        # the best order for every single user, not only on average
        assert (hits >= hits_wr - 1e-12).all() and (dcg >= dcg_wr - 1e-12).all()
    # ... and strictly better overall: the two orders differ (a long session inflates the mean ratio)
    hits, dcg = expected_gains(probability, by_probability, 10)
    hits_wr, dcg_wr = expected_gains(probability, by_watch_ratio, 10)
    assert hits.mean() > hits_wr.mean() and dcg.mean() > dcg_wr.mean()
    # The same seen through the evaluator on simulated labels: mean NDCG@10 and precision@10 over 200 draws.
    rng = np.random.default_rng(0)
    means: dict[str, list[tuple[float, float]]] = {"oracle": [], "oracle_watch_ratio": []}
    for _ in range(200):
        labels = rng.random(probability.shape) < probability
        for name, order in (("oracle", by_probability), ("oracle_watch_ratio", by_watch_ratio)):
            summary = ranking_metrics(order, labels, [10], grid.relevant.shape[1]).summary
            means[name].append((summary["ndcg_at_10"], summary["precision_at_10"]))
    honest, by_ratio = np.mean(means["oracle"], axis=0), np.mean(means["oracle_watch_ratio"], axis=0)
    assert (honest > by_ratio).all(), (honest, by_ratio)


def test_item_oracle_is_the_best_list_shown_to_everyone() -> None:
    # A known truth: item appeal plus personal taste; "popularity"-style lists are estimated from
    # labels drawn from it. No fixed list may beat oracle_item in expected precision at any K.
    rng = np.random.default_rng(1)
    n_users, n_items = 300, 12
    logits = rng.normal(-1.5, 0.8, (1, n_items)) + rng.normal(0.0, 1.2, (n_users, n_items))
    probability = 1.0 / (1.0 + np.exp(-logits))
    observed = np.ones_like(probability, dtype=bool)
    item_oracle = item_means(probability, observed)
    train = rng.random((50, n_items)) < probability[:50]  # 50 logged users' labels
    popularity = (train.sum(axis=0) + 5 * train.mean()) / (train.shape[0] + 5)
    buckets = np.arange(n_items) % 3  # a "duration bucket" estimate: one rate per bucket
    bucket_rate = np.array([train[:, buckets == b].mean() for b in range(3)])[buckets]
    lists = {"popularity": popularity, "duration_popularity": bucket_rate, "first_items": -np.arange(n_items)}

    def expected_precision(item_scores: np.ndarray, k: int) -> float:
        top = top_k_items(np.broadcast_to(item_scores, probability.shape), k)
        return float(np.take_along_axis(probability, top, axis=1).sum(axis=1).mean() / k)

    for k in range(1, n_items + 1):
        best = expected_precision(item_oracle, k)
        for name, scores in lists.items():
            assert best >= expected_precision(scores, k) - 1e-12, (name, k)
    # exhaustive at K = 3: no 3-video list does better than oracle_item's
    column_means = probability.mean(axis=0)
    best_subset = max(column_means[list(c)].sum() for c in itertools.combinations(range(n_items), 3)) / 3
    assert expected_precision(item_oracle, 3) == pytest.approx(best_subset, abs=1e-12)


def test_item_oracles_give_everyone_the_same_scores_from_observed_cells_only(tiny_world: World) -> None:
    truth, small = tiny_world
    grid = build_block_grid(small.with_columns((pl.col(Columns.watch_ratio) > 2.0).alias(Columns.label)))
    scores = oracle_scores(truth, grid, THRESHOLD_RULE)
    for name in ("oracle_item", "oracle_item_watch_ratio"):
        assert (scores[name] == scores[name][0]).all()
    masked = np.where(grid.observed, scores["oracle"], np.nan)
    np.testing.assert_allclose(scores["oracle_item"][0], np.nanmean(masked, axis=0), rtol=1e-12)


def test_truth_must_cover_every_observed_cell(tiny_world: World) -> None:
    truth, small = tiny_world
    grid = build_block_grid(small.with_columns(pl.lit(True).alias(Columns.label)))
    one_user = int(grid.users[0])
    with pytest.raises(InputDataError, match="observed cells of the block have no ground-truth row"):
        oracle_scores(truth.filter(pl.col(Columns.user) != one_user), grid, THRESHOLD_RULE)
    with pytest.raises(InputDataError, match="missing ground-truth column"):
        oracle_scores(truth.drop(Columns.skip_shift), grid, THRESHOLD_RULE)
