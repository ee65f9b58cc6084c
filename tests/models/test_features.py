"""Feature tables: no daily counter from on or after a row's view date, correct ALS ranks, stable row order,
the same table for any user partitioning (in memory and written by partition), the ranker's rows read lazily."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from reco.errors import InputDataError
from reco.io import write_parquet
from reco.models.als import AlsModel, IdMap
from reco.models.features import (
    FeatureSources,
    als_pair_features,
    build_feature_table,
    duration_bucket,
    item_daily_window_features,
    seen_matrix,
    temporal_serving_date,
    write_feature_table,
)
from reco.models.ranker import prepare_training_parts, sample_users
from reco.models.training_rows import ranker_training_table
from reco.params import parse_section
from reco.partitions import UserRowIndex
from reco.schema import INTERACTION_SCHEMA, Columns

N_USERS, N_ITEMS = 12, 15


def history_rows(rng: np.random.Generator, n: int, first: dt.date, last: dt.date) -> pl.DataFrame:
    days = rng.integers(0, (last - first).days + 1, size=n)
    dates = [first + dt.timedelta(days=int(d)) for d in days]
    duration = rng.integers(3_000, 90_000, size=n)
    ratio = rng.lognormal(-0.3, 1.0, size=n)
    return pl.DataFrame(
        {
            Columns.user: rng.integers(0, N_USERS, size=n),
            Columns.item: rng.integers(0, N_ITEMS, size=n),
            Columns.play_duration: (duration * ratio).astype(np.int64),
            Columns.video_duration: duration,
            Columns.timestamp: [dt.datetime(d.year, d.month, d.day, 12, tzinfo=dt.UTC) for d in dates],
            Columns.date: dates,
            Columns.watch_ratio: ratio,
        }
    ).cast(dict(INTERACTION_SCHEMA))


def side_tables(rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    users = pl.DataFrame(
        {
            Columns.user: np.arange(N_USERS, dtype=np.int32),
            Columns.user_active_degree: pl.Series(rng.choice(["full_active", "high_active"], N_USERS)).cast(
                pl.Enum(["full_active", "high_active"])
            ),
            **{c: rng.integers(0, 5, N_USERS) for c in ("is_lowactive_period", "is_live_streamer", "is_video_author")},
            **{c: rng.integers(0, 500, N_USERS) for c in ("follow_user_num", "fans_user_num", "friend_user_num")},
            "register_days": rng.integers(10, 2000, N_USERS),
            **{f"onehot_feat{i}": rng.integers(0, 9, N_USERS) for i in range(18)},
        }
    )
    items = pl.DataFrame(
        {
            Columns.item: np.arange(N_ITEMS, dtype=np.int32),
            Columns.tags: [[int(t) for t in rng.choice(31, size=rng.integers(1, 4), replace=False)] for _ in range(N_ITEMS)],
            Columns.video_duration: rng.integers(3_000, 90_000, N_ITEMS).astype(np.int32),
        }
    ).with_columns(pl.col(Columns.tags).cast(pl.List(pl.Int8)), pl.col(Columns.tags).list.len().cast(pl.Int8).alias("n_tags"))
    return users, items


def daily(rng: np.random.Generator, first: dt.date, last: dt.date) -> pl.DataFrame:
    days = [first + dt.timedelta(days=d) for d in range((last - first).days + 1)]
    rows = len(days) * N_ITEMS
    shows = rng.integers(100, 1000, rows)
    plays = (shows * rng.uniform(0.2, 0.9, rows)).astype(np.int64)
    return pl.DataFrame(
        {
            Columns.item: np.repeat(np.arange(N_ITEMS, dtype=np.int32), len(days)),
            Columns.date: days * N_ITEMS,
            "author_id": np.repeat(np.arange(N_ITEMS, dtype=np.int64) % 5, len(days)),  # 5 authors
            "upload_dt": pl.Series([first - dt.timedelta(days=i % 3) for i in range(N_ITEMS) for _ in days], dtype=pl.Date),
            "show_cnt": shows,
            "play_cnt": plays,
            "complete_play_cnt": (plays * rng.uniform(0.1, 0.8, rows)).astype(np.int64),
            "like_cnt": (plays * rng.uniform(0.0, 0.1, rows)).astype(np.int64),
            "play_progress": rng.uniform(0.1, 1.0, rows).astype(np.float32),
        }
    )


def model(rng: np.random.Generator) -> AlsModel:
    return AlsModel(
        user_factors=rng.normal(size=(N_USERS, 4)).astype(np.float32),
        item_factors=rng.normal(size=(N_ITEMS - 2, 4)).astype(np.float32),  # the last 2 items are unknown
        user_ids=IdMap.from_values(np.arange(N_USERS, dtype=np.int32)),
        item_ids=IdMap.from_values(np.arange(N_ITEMS - 2, dtype=np.int32)),
        training_loss={},
    )


VIEW_DATE = dt.date(2020, 8, 10)  # every pair below was viewed on this day


@pytest.fixture
def world() -> dict:
    rng = np.random.default_rng(3)
    users, items = side_tables(rng)
    pairs = (
        pl.DataFrame({Columns.user: rng.integers(0, N_USERS, 60), Columns.item: rng.integers(0, N_ITEMS, 60)})
        .cast(pl.Int32)
        .unique(maintain_order=True)
        .with_columns(pl.lit(True).alias(Columns.label), pl.lit(VIEW_DATE).alias(Columns.date))
    )
    history = history_rows(rng, 800, dt.date(2020, 7, 5), dt.date(2020, 9, 5))
    return {
        # the whole period: other views of the period are fair under the fully observed protocol
        "history": history.join(pairs.select(Columns.user, Columns.item), on=[Columns.user, Columns.item], how="anti"),
        "users": users,
        "items": items,
        "daily": daily(rng, dt.date(2020, 7, 5), dt.date(2020, 9, 5)),
        "pairs": pairs,
        "model": model(rng),
    }


def build(world: dict, history: pl.DataFrame, item_daily: pl.DataFrame, pairs: pl.DataFrame | None = None,
          **kwargs: object) -> pl.DataFrame:  # fmt: skip
    sources = FeatureSources(
        pairs=world["pairs"] if pairs is None else pairs, history=history, users=world["users"], items=world["items"],
        item_daily=item_daily, als_model=world["model"], catalogue=world["model"].item_ids.ids,
    )  # fmt: skip
    return build_feature_table(
        sources,
        threshold=2.0,
        smoothing=5.0,
        daily_window_days=7,
        label_columns=[Columns.label],
        **kwargs,
    ).frame


def _scramble_counters(item_daily: pl.DataFrame, on_or_after: dt.date) -> pl.DataFrame:
    """The daily counters of days on or after ``on_or_after`` replaced by very different ones."""
    later = pl.col(Columns.date) >= on_or_after
    return item_daily.with_columns(
        pl.when(later).then(pl.col(c) * 7 + 13).otherwise(pl.col(c)).alias(c)
        for c in ("show_cnt", "play_cnt", "complete_play_cnt", "like_cnt")
    ).with_columns(pl.when(later).then(1.0 - pl.col("play_progress")).otherwise(pl.col("play_progress")).alias("play_progress"))


def test_daily_counters_on_or_after_the_view_date_change_nothing(world: dict) -> None:
    # Point in time: a row may only see the platform counters of days before its own view.
    baseline = build(world, world["history"], world["daily"])
    shifted = build(world, world["history"], _scramble_counters(world["daily"], VIEW_DATE))
    assert_frame_equal(baseline, shifted)
    assert baseline["d_play_rate"].null_count() < baseline.height  # the daily features are there


def test_daily_counters_before_the_view_date_do_change_features(world: dict) -> None:
    # The control for the test above: the same change one week earlier reaches the window.
    baseline = build(world, world["history"], world["daily"])
    shifted = build(world, world["history"], _scramble_counters(world["daily"], VIEW_DATE - dt.timedelta(days=7)))
    with pytest.raises(AssertionError):
        assert_frame_equal(baseline, shifted)


def test_each_row_sees_its_own_window_and_the_temporal_cut_caps_it(world: dict) -> None:
    early, late = VIEW_DATE, VIEW_DATE + dt.timedelta(days=20)
    pairs = pl.concat([world["pairs"], world["pairs"].with_columns(pl.lit(late).alias(Columns.date))])
    scrambled = _scramble_counters(world["daily"], early)  # after the early rows, before the late ones
    before, after = build(world, world["history"], world["daily"], pairs), build(world, world["history"], scrambled, pairs)
    n = world["pairs"].height
    assert_frame_equal(before.head(n), after.head(n))  # the early rows do not see it
    assert not before.tail(n).equals(after.tail(n))  # the late rows do
    # temporal protocol: nothing after the cut exists when the model serves, whatever the view date
    capped = [build(world, world["history"], d, pairs, latest_serving_date=early) for d in (world["daily"], scrambled)]
    assert_frame_equal(capped[0], capped[1])


def test_the_temporal_protocol_serves_the_day_after_the_history_and_no_other_protocol_is_capped(
    world: dict, tmp_path: Path
) -> None:
    write_parquet(world["history"], tmp_path / "history.parquet")
    last_view = world["history"][Columns.date].max()
    assert temporal_serving_date("temporal", tmp_path / "history.parquet") == last_view + dt.timedelta(days=1)
    assert temporal_serving_date("fully_observed", tmp_path / "no-such-file.parquet") is None  # the file is not read
    write_parquet(world["history"].with_columns(pl.lit(None, dtype=pl.Date).alias(Columns.date)), tmp_path / "undated.parquet")
    with pytest.raises(InputDataError, match="serving window"):
        temporal_serving_date("temporal", tmp_path / "undated.parquet")


def test_rows_without_a_view_date_get_no_daily_features(world: dict) -> None:
    pairs = world["pairs"].with_columns(pl.lit(None, dtype=pl.Date).alias(Columns.date))
    frame = build(world, world["history"], world["daily"], pairs)
    assert frame["d_play_rate"].null_count() == frame.height
    assert frame["u_views_rel"].null_count() < frame.height  # the other features are still there


def test_row_order_and_labels_are_kept(world: dict) -> None:
    frame = build(world, world["history"], world["daily"])
    assert frame.select(Columns.user, Columns.item).equals(world["pairs"].select(Columns.user, Columns.item))
    assert frame[Columns.label].all()
    assert frame.height == world["pairs"].height


def test_als_rank_percentile_matches_brute_force_over_the_unwatched(world: dict) -> None:
    als = world["model"]
    pairs = world["pairs"].select(Columns.user, Columns.item)
    seen = seen_matrix(als, world["history"])
    result = als_pair_features(als, pairs, als.item_ids.ids, seen=seen, chunk_users=5)
    scores = als.user_factors.astype(np.float64) @ als.item_factors.T.astype(np.float64)
    for (user, item), rank, score in zip(pairs.iter_rows(), result["als_rank_pct"], result["als_score"], strict=True):
        if item >= N_ITEMS - 2:  # unknown to ALS
            assert rank is None and score is None
            continue
        watched = set(seen[user].indices.tolist())
        unwatched = np.array([j for j in range(len(als.item_ids)) if j not in watched])
        row = scores[user]
        expected = (1 + np.sum(row[unwatched] > row[item])) / len(unwatched)
        assert rank == pytest.approx(expected)
        assert score == pytest.approx(float(row[item]), rel=1e-6)


def test_duration_buckets_are_fixed_and_ordered() -> None:
    frame = pl.DataFrame({"ms": [1_000, 5_000, 9_000, 59_999, 500_000, None]})
    buckets = frame.select(duration_bucket(pl.col("ms")).alias("bucket"))["bucket"]
    # edges 5s, 8s, 12s, 20s, 35s, 60s, 120s: 1s -> 0, 5s -> 1, 9s -> 2, 59.999s -> 5, 500s -> 7
    assert buckets.to_list() == [0, 1, 2, 5, 7, None]


def test_residual_features_isolate_what_the_user_adds_to_the_videos_appeal() -> None:
    # Video 0 (tag 1) is liked by everyone; user 0 watches video 1 (tag 2) e^1 times longer than
    # user 1 does, so user 0's tag-2 residual is +0.5 and user 1's is -0.5 (the video mean is between).
    def view(user: int, item: int, ratio: float) -> dict:
        return {Columns.user: user, Columns.item: item, Columns.watch_ratio: ratio, Columns.play_duration: 1000,
                Columns.video_duration: 1000, Columns.date: dt.date(2020, 8, 24),
                Columns.timestamp: dt.datetime(2020, 8, 1, tzinfo=dt.UTC)}

    e = float(np.exp(1.0))
    history = pl.DataFrame([view(0, 0, 3.0), view(1, 0, 3.0), view(0, 1, e - 0.01), view(1, 1, 1.0 - 0.01)]).cast(
        dict(INTERACTION_SCHEMA)
    )
    items = pl.DataFrame({Columns.item: [0, 1], Columns.tags: [[1], [2]]}).cast(
        {Columns.item: pl.Int32, Columns.tags: pl.List(pl.Int8)}
    )
    pairs = pl.DataFrame({Columns.user: [0, 1, 0], Columns.item: [1, 1, 0]}).cast(pl.Int32)
    from reco.models.features import user_affinity_features

    out = user_affinity_features(
        history, items.with_columns(pl.lit(1000).cast(pl.Int32).alias(Columns.video_duration)), pairs, 2.0, 0.0
    )
    assert out.select(PAIR_COLUMNS).rows() == pairs.rows()  # row order kept
    tag_residual = out["ux_tag_lwr_resid"].to_list()
    assert tag_residual[0] == pytest.approx(0.5, abs=1e-5) and tag_residual[1] == pytest.approx(-0.5, abs=1e-5)
    assert tag_residual[2] == pytest.approx(0.0, abs=1e-5)  # everyone watched video 0 alike
    assert out["u_lwr_resid"].to_list()[:2] == pytest.approx([0.25, -0.25], abs=1e-5)


PAIR_COLUMNS = [Columns.user, Columns.item]


# --- bounded memory: user partitions, the written table, the ranker's rows ------------------------


@pytest.mark.parametrize("n_partitions", [3, 7])
def test_any_user_partitioning_gives_the_same_table(world: dict, n_partitions: int) -> None:
    # every per-user float is an exact sum and every cross-user one is global: bit for bit
    whole = build(world, world["history"], world["daily"])
    parts = build(world, world["history"], world["daily"], n_partitions=n_partitions)
    assert parts.equals(whole) and parts.height == world["pairs"].height


def test_history_rows_in_another_order_give_the_same_table(world: dict) -> None:
    shuffled = world["history"].sample(fraction=1.0, shuffle=True, seed=11)
    assert build(world, shuffled, world["daily"], n_partitions=3).equals(build(world, world["history"], world["daily"]))


def test_als_ranks_do_not_depend_on_which_users_share_a_chunk(world: dict) -> None:
    als, pairs = world["model"], world["pairs"].select(Columns.user, Columns.item)
    seen = seen_matrix(als, world["history"])
    results = [als_pair_features(als, pairs, als.item_ids.ids, seen=seen, chunk_users=c) for c in (1, 5, 512)]
    assert results[0].equals(results[1]) and results[0].equals(results[2])


@pytest.mark.parametrize(("sort_pairs", "user_partitions"), [(True, 1), (True, 3), (True, 7), (False, 3)])
def test_the_table_written_by_partition_has_the_bytes_of_the_in_memory_one(
    world: dict, tmp_path: Path, sort_pairs: bool, user_partitions: int
) -> None:
    # sorted pairs stream partition by partition; unsorted ones are put back in order in memory
    pairs = world["pairs"].sort(Columns.user, maintain_order=True) if sort_pairs else world["pairs"]
    history = world["history"].sort(Columns.user, maintain_order=True)
    write_parquet(pairs, tmp_path / "pairs.parquet")
    write_parquet(history, tmp_path / "history.parquet")
    sources = FeatureSources(
        pairs=tmp_path / "pairs.parquet", history=tmp_path / "history.parquet", users=world["users"],
        items=world["items"], item_daily=world["daily"], als_model=world["model"], catalogue=world["model"].item_ids.ids,
    )  # fmt: skip
    table = write_feature_table(
        sources, tmp_path / "table.parquet", threshold=2.0, smoothing=5.0, daily_window_days=7,
        compute=parse_section("compute", {"user_partitions": user_partitions}),
    )  # fmt: skip
    expected = build(world, history, world["daily"], pairs)
    write_parquet(expected, tmp_path / "expected.parquet")
    assert (tmp_path / "table.parquet").read_bytes() == (tmp_path / "expected.parquet").read_bytes()
    assert table.features == [c for c in expected.columns if c not in (Columns.user, Columns.item, Columns.label)]


def training_table(n_users: int = 40, per_user: int = 25, seed: int = 1) -> pl.DataFrame:
    """A training feature table: every user has labelled rows, some users none with a low ALS rank."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    rank = rng.random(n).astype(np.float32)
    rank[rng.random(n) < 0.05] = np.nan  # unknown to ALS: always kept
    users = np.repeat(np.arange(0, 3 * n_users, 3, dtype=np.int32), per_user)
    rank[users == 6] = 0.9  # a user without any candidate-like row
    relevance = rng.integers(0, 4, n).astype(np.int8)
    return pl.DataFrame(
        {
            Columns.user: users,
            Columns.item: np.tile(np.arange(per_user, dtype=np.int32), n_users),
            Columns.label: relevance >= 2,
            Columns.relevance: relevance,
            "signal": rng.normal(size=n).astype(np.float32),
            "als_rank_pct": pl.Series(rank).fill_nan(None),
        }
    )


@pytest.mark.parametrize(
    ("train_users", "candidate_rank_pct", "user_partitions"), [(30, 0.3, 1), (30, 0.3, 4), (100, 0.5, 3), (20, 1.0, 5)]
)
def test_the_ranker_reads_only_its_rows_and_gets_the_same_training_parts(
    tmp_path: Path, train_users: int, candidate_rank_pct: float, user_partitions: int
) -> None:
    table = training_table()
    write_parquet(table, tmp_path / "table.parquet")
    params = parse_section(
        "ranker", {"train_users": train_users, "candidate_rank_pct": candidate_rank_pct, "valid_fraction": 0.25}
    )
    compute = parse_section("compute", {"user_partitions": user_partitions})
    index = UserRowIndex(tmp_path / "table.parquet")
    train, valid = sample_users(index.users, params.train_users, params.valid_fraction, params.seed)
    reduced = ranker_training_table(index, np.union1d(train, valid), params.candidate_rank_pct, compute=compute)
    assert index.n_rows == table.height
    if candidate_rank_pct < 1:
        assert reduced.height < table.height
    # only the sampled users' rows are read; the ranker draws its users from the whole table's list
    assert set(reduced[Columns.user].unique().to_list()) <= set(np.union1d(train, valid).tolist())
    whole = prepare_training_parts(table, ["signal"], params)
    part = prepare_training_parts(reduced, ["signal"], params, users=index.users)
    for name in ("train", "valid"):
        assert part.frames[name].equals(whole.frames[name])
        np.testing.assert_array_equal(part.labels[name], whole.labels[name])
    np.testing.assert_array_equal(part.train_users, whole.train_users)
    np.testing.assert_array_equal(part.valid_users, whole.valid_users)


def test_video_age_is_the_days_since_upload_on_each_serving_date() -> None:
    days = [dt.date(2020, 7, 5), dt.date(2020, 7, 6)]
    counters = {c: [10, 10] for c in ("show_cnt", "play_cnt", "complete_play_cnt", "like_cnt")}
    item_daily = pl.DataFrame(
        {Columns.item: [1, 1], Columns.date: days, "upload_dt": [dt.date(2020, 7, 1)] * 2, **counters,
         "play_progress": [0.5, 0.5]}
    )  # fmt: skip
    out = item_daily_window_features(item_daily, 3)
    assert dict(zip(out[Columns.date].to_list(), out["d_age_days"].to_list())) == {
        dt.date(2020, 7, 5): 4.0,
        dt.date(2020, 7, 6): 5.0,
        dt.date(2020, 7, 7): 6.0,  # the day after the last counter day is a serving date too
    }
