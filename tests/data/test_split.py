"""The fully observed split: no test pair in training, label window after history, labels right."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from reco.data.split import graded_relevance, split_interactions
from reco.errors import InputDataError
from reco.params import parse_section
from reco.schema import INTERACTION_SCHEMA, Columns


def interactions(rows: list[tuple[int, int, str, float]]) -> pl.DataFrame:
    """Rows of (user, video, local date, watch_ratio) in the prepared schema."""
    frame = pl.DataFrame(
        {
            Columns.user: [r[0] for r in rows],
            Columns.item: [r[1] for r in rows],
            Columns.play_duration: [int(r[3] * 10_000) for r in rows],
            Columns.video_duration: [10_000] * len(rows),
            Columns.timestamp: [dt.datetime.fromisoformat(r[2] + "T12:00:00+00:00") for r in rows],
            Columns.date: [dt.date.fromisoformat(r[2]) for r in rows],
            Columns.watch_ratio: [r[3] for r in rows],
        }
    )
    return frame.cast(dict(INTERACTION_SCHEMA))


BIG = interactions(
    [
        (1, 10, "2020-07-05", 0.5),
        (1, 11, "2020-07-06", 2.5),  # (1, 11) is also in small: must leave training
        (1, 12, "2020-09-04", 3.0),  # label window
        (1, 10, "2020-09-05", 1.0),  # re-watch of a history pair: not a ranker label
        (2, 10, "2020-07-05", 0.1),
        (2, 13, "2020-09-05", 0.2),  # label window
        (3, 14, "2020-08-01", 4.0),
    ]
)
SMALL = interactions([(1, 11, "2020-07-07", 2.1), (2, 12, "2020-07-07", 0.3), (3, 10, "2020-07-08", 6.0)])


def run(window_days: int = 2, threshold: float = 2.0):
    return split_interactions(
        BIG,
        SMALL,
        parse_section("split", {"ranker_labels": "last_days", "label_window_days": window_days}),
        parse_section("label", {"threshold": threshold, "graded_edges": [1.0, 2.0, 3.0, 5.0]}),
    )


def pairs(frame: pl.DataFrame) -> set[tuple[int, int]]:
    return set(frame.select(Columns.user, Columns.item).iter_rows())


def evaluation(result) -> pl.DataFrame:  # noqa: ANN001
    """Both fully observed blocks (validation and test), sorted by pair."""
    return pl.concat([result.validation, result.test]).sort(Columns.user, Columns.item)


def test_no_evaluation_pair_in_any_training_set() -> None:
    result = run()
    test_pairs = pairs(evaluation(result))
    for frame in (result.train, result.history, result.ranker_labels):
        assert not pairs(frame) & test_pairs
    # only the overlapping pair is removed: 7 big rows - 1
    assert result.train.height == 6
    assert result.summary["leakage_check"]["passed"] is True


def test_label_window_is_after_history_and_excludes_rewatches() -> None:
    result = run(window_days=2)
    assert result.history[Columns.date].max() < dt.date(2020, 9, 4)
    assert result.summary["ranker_labels"] == {"kind": "last_days", "start": "2020-09-04", "end": "2020-09-05", "days": 2}
    # (1, 10) was seen in history, so the window's re-watch is not a label row
    assert pairs(result.ranker_labels) == {(1, 12), (2, 13)}


def test_labels_and_graded_relevance() -> None:
    result = run(threshold=2.0)
    test = evaluation(result)
    # watch ratios 2.1, 0.3, 6.0 -> label > 2.0: True, False, True; edges 1,2,3,5 exceeded: 2, 0, 4
    assert test[Columns.label].to_list() == [True, False, True]
    assert test[Columns.relevance].to_list() == [2, 0, 4]
    frame = pl.DataFrame({"wr": [0.0, 1.0, 1.5, 5.0, 9.0]})
    # strictly greater than each edge: 1.0 exceeds none; 5.0 exceeds 1, 2, 3 only
    assert frame.select(graded_relevance(pl.col("wr"), (1.0, 2.0, 3.0, 5.0)))["wr"].to_list() == [0, 0, 1, 3, 4]


def test_window_covering_all_training_dates_is_refused() -> None:
    recent = BIG.filter(pl.col(Columns.date) >= dt.date(2020, 8, 1))
    with pytest.raises(InputDataError, match="label_window_days = 60 leaves an empty history"):
        split_interactions(
            recent, SMALL, parse_section("split", {"ranker_labels": "last_days", "label_window_days": 60}), parse_section("label", {})
        )


def _many_views(n_users: int = 40, n_items: int = 30, seed: int = 0) -> pl.DataFrame:
    """A random log over Jul-Sep with repeated views of some pairs."""
    rng = np.random.default_rng(seed)
    n = 2_000
    days = dt.date(2020, 7, 5) + np.array([dt.timedelta(days=int(d)) for d in rng.integers(0, 60, n)])
    rows = [(int(u), int(i), d.isoformat(), float(w)) for u, i, d, w in zip(
        rng.integers(0, n_users, n), rng.integers(0, n_items, n), days, rng.gamma(1.0, 1.0, n))]
    return interactions(rows)


def test_holdout_takes_whole_pairs_from_the_whole_period_and_never_shares_them_with_history() -> None:
    big = _many_views()
    small = interactions([(0, 0, "2020-07-07", 1.0)])
    split = parse_section("split", {"ranker_labels": "holdout", "holdout_fraction": 0.25, "seed": 7})
    result = split_interactions(big, small, split, parse_section("label", {}))
    held, history = pairs(result.ranker_labels), pairs(result.history)
    assert held and not held & history
    # every training view is either history or a view of a held-out pair
    n_train_pairs = len(pairs(result.train))
    # a pair is held out when its seeded hash falls below the fraction: binomial around it
    assert abs(len(held) - 0.25 * n_train_pairs) < 4 * (0.25 * 0.75 * n_train_pairs) ** 0.5
    assert len(held) == result.summary["ranker_labels"]["pairs"]
    assert held | history == pairs(result.train)
    # one label row per held-out pair, and labels spread over the period rather than its end
    assert result.ranker_labels.height == len(held)
    months = set(result.ranker_labels[Columns.date].dt.month().to_list())
    assert months == {7, 8, 9}
    assert (0, 0) not in held | history  # the test pair left training first


def test_holdout_is_seeded() -> None:
    big = _many_views()
    small = interactions([(0, 0, "2020-07-07", 1.0)])
    label = parse_section("label", {})
    draw = [
        pairs(split_interactions(big, small, parse_section("split", {"seed": seed}), label).ranker_labels)
        for seed in (1, 1, 2)
    ]
    assert draw[0] == draw[1] != draw[2]


def test_temporal_protocol_cuts_small_matrix_chronologically() -> None:
    small = interactions(
        [(u, i, f"2020-07-{5 + d:02d}", 0.5 + d) for d, (u, i) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (1, 3)])]
        + [(2, 3, "2020-07-20", 1.5), (1, 4, "2020-07-21", 0.2), (2, 4, "2020-07-22", 3.0), (1, 5, "2020-07-23", 0.9),
           (2, 5, "2020-07-24", 2.0)]
    )
    split = parse_section("split", {"protocol": "temporal", "temporal_test_fraction": 0.2, "ranker_labels": "holdout", "holdout_fraction": 0.5})
    result = split_interactions(BIG, small, split, parse_section("label", {"threshold": 1.0}))
    # big_matrix is not used; the last 20% of the 10 timestamped views are evaluated
    assert pairs(evaluation(result)) == {(1, 5), (2, 5)}
    assert pairs(result.train) == pairs(small) - {(1, 5), (2, 5)}
    assert result.train[Columns.timestamp].max() < evaluation(result)[Columns.timestamp].min()
    assert result.summary["protocol"] == "temporal" and result.summary["temporal_cut"].startswith("2020-07-22")
    # positives: watch_ratio > 1.0 (0.9 is not, 2.0 is)
    assert evaluation(result)[Columns.label].to_list() == [False, True]


def test_duration_debiased_label_is_written_on_every_set_and_summarised_per_bucket() -> None:
    result = split_interactions(
        BIG, SMALL, parse_section("split", {}), parse_section("label", {"kind": "duration_debiased", "duration_buckets": 2})
    )
    for frame in result.sets().values():
        assert Columns.label_ratio in frame.columns
    # labels follow the label ratio, not the raw watch ratio
    test = evaluation(result)
    assert test[Columns.label].to_list() == (test[Columns.label_ratio] > 2.0).to_list()
    by_bucket = result.summary["positive_rate_by_duration_bucket"]
    assert set(by_bucket) == {"threshold", "duration_debiased"} and set(by_bucket["threshold"]) == {"train", "evaluation"}
    assert result.summary["label_rule"]["kind"] == "duration_debiased"


def test_validation_and_test_blocks_split_the_evaluation_users_by_activity() -> None:
    big = _many_views(n_users=200, n_items=30)
    small = interactions([(u, i, "2020-07-07", 0.5 + (u % 3)) for u in range(200) for i in (100, 101)])
    result = split_interactions(big, small, parse_section("split", {"validation_users": 0.3, "seed": 3}), parse_section("label", {}))
    val_users, test_users = set(result.validation[Columns.user]), set(result.test[Columns.user])
    assert not val_users & test_users and val_users | test_users == set(range(200))
    assert len(val_users) == 60 == result.summary["users"]["validation"]
    # every user keeps all of their cells in one block: the blocks are shaped alike
    assert result.validation.height == 120 and result.test.height == 280
    # stratified: the blocks have about the same training activity
    views = result.train.group_by(Columns.user).len()
    mean = lambda users: views.filter(pl.col(Columns.user).is_in(list(users)))["len"].mean()  # noqa: E731
    assert abs(mean(val_users) - mean(test_users)) < 1.0
    again = split_interactions(big, small, parse_section("split", {"validation_users": 0.3, "seed": 3}), parse_section("label", {}))
    assert set(again.validation[Columns.user]) == val_users


def test_holdout_hash_depends_on_the_pair_and_seed_only() -> None:
    from reco.data.split import holdout_mask

    keys = np.arange(50_000, dtype=np.int64) * 7919
    mask = holdout_mask(keys, 0.2, 42)
    assert abs(mask.mean() - 0.2) < 0.01
    # a subset of the pairs gets the same decisions: nothing depends on which rows come together
    assert np.array_equal(holdout_mask(keys[::3], 0.2, 42), mask[::3])
    assert not np.array_equal(holdout_mask(keys, 0.2, 43), mask)
