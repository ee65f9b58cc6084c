"""The same features in training and serving: the ranker's training rows and a block's rows are on one scale.

The training rows are described from the history (the training pairs minus the held-out ones) and the
ranker's ALS; a block's rows from every training pair and the test ALS. A feature must not change its
scale with the history's size, and every table's ALS rank percentile is taken over the same (serving)
catalogue. On the tiny pipeline the two tables hold different populations (every user's held-out views
against the most active users' candidates), so their marginal distributions differ by design; the
comparison is paired instead: the same user (or video) described in both tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.models.als import AlsModel, IdMap, load_als
from reco.models.als_features import als_pair_features, seen_matrix
from reco.models.features import FeatureSources, build_feature_table
from reco.schema import Columns

# A feature's median paired shift (training row minus block row, per user or video) may be at most
# this share of its spread across those users or videos: a small effect (Cohen's 0.2 to 0.3). When
# this test was written, the history features of the tiny profile shifted by at most 0.1 of their
# spread, and the raw view counts they replace (log1p of a count from 80% of the pairs) by 1 to 1.5.
MAX_STANDARDISED_SHIFT = 0.25
ENTITIES = (Columns.user, Columns.item)


def _tables(root: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    features = root / "data" / "features"
    spec = json.loads((features / "train" / "features.json").read_text(encoding="utf-8"))
    train = pl.read_parquet(features / "train" / "table.parquet")
    validation = pl.read_parquet(features / "validation" / "table.parquet")
    return train, validation, spec["features"]


def _constant_per(table: pl.DataFrame, key: str, feature: str) -> bool:
    return bool(table.group_by(key).agg(pl.col(feature).n_unique()).select((pl.col(feature) <= 1).all()).item())


def paired_shifts(train: pl.DataFrame, validation: pl.DataFrame, features: list[str]) -> dict[str, dict[str, float]]:
    """Per feature that is one value per user (or per video) in both tables: the paired shift, standardised.

    The users (videos) described in both tables are paired; ``shift`` is the median of training minus
    validation value, ``spread`` the standard deviation of the validation values across them. Static
    features (profile, duration, tags) are equal in both and left out, as are those that vary within a
    user or video (the daily counters, the pair features).
    """
    out: dict[str, dict[str, float]] = {}
    for key in ENTITIES:
        for feature in features:
            if not (_constant_per(train, key, feature) and _constant_per(validation, key, feature)):
                continue
            paired = (
                train.group_by(key)
                .agg(pl.col(feature).first().cast(pl.Float64).alias("train"))
                .join(validation.group_by(key).agg(pl.col(feature).first().cast(pl.Float64).alias("served")), on=key)
                .drop_nulls()
            )
            diff = (paired["train"] - paired["served"]).to_numpy()
            spread = float(paired["served"].std() or 0.0)
            if paired.height < 10 or spread == 0.0 or not diff.any():
                continue
            shift = float(np.median(diff))
            out[feature] = {
                "key": key, "n": paired.height, "shift": shift, "spread": spread, "standardised": shift / spread
            }  # fmt: skip
    return out


def test_history_features_of_training_and_validation_rows_agree_for_the_same_users_and_videos(
    tiny_pipeline: Path,
) -> None:
    train, validation, features = _tables(tiny_pipeline)
    shifts = paired_shifts(train, validation, features)
    off = {f: round(s["standardised"], 3) for f, s in shifts.items() if abs(s["standardised"]) > MAX_STANDARDISED_SHIFT}
    assert not off, f"features on another scale in the training rows than in the validation rows: {off}"
    # the comparison reaches the history features of both kinds (not vacuous)
    assert {"u_pos_rate", "u_views_rel", "i_pos_rate", "i_views_rel"} <= shifts.keys(), sorted(shifts)
    assert all(s["n"] >= 10 for s in shifts.values())
    # the tolerance could catch what it is for: a raw count from the history moves by log(views ratio)
    history_share = _views(tiny_pipeline, "history") / _views(tiny_pipeline, "train")
    for name in ("u_views_rel", "i_views_rel"):
        assert abs(np.log(history_share)) > 2 * MAX_STANDARDISED_SHIFT * shifts[name]["spread"]


def _views(root: Path, split: str) -> int:
    return pl.scan_parquet(root / "data" / "split" / f"{split}.parquet").select(pl.len()).collect().item()


def _brute_force_rank(
    model: AlsModel, history: pl.DataFrame, catalogue: np.ndarray, user: int, item: int
) -> float | None:
    """The rank percentile of (user, item) among the user's unwatched catalogue videos known to ALS, inserted."""
    u, i = model.user_ids.index_of(np.array([user]))[0], model.item_ids.index_of(np.array([item]))[0]
    if u < 0 or i < 0:
        return None
    watched = set(history.filter(pl.col(Columns.user) == user)[Columns.item].to_list())
    unwatched = [v for v in catalogue.tolist() if v not in watched and model.item_ids.index_of(np.array([v]))[0] >= 0]
    factors = model.user_factors[u].astype(np.float64)
    score = np.float32(factors @ model.item_factors[i].astype(np.float64))
    cols = model.item_ids.index_of(np.array(unwatched, dtype=np.int32))
    others = (model.item_factors[cols].astype(np.float64) @ factors).astype(np.float32)
    return (1 + int(np.sum(others > score))) / (len(unwatched) + (item not in unwatched))


@pytest.mark.parametrize(
    ("table", "history", "als"),
    [("train", "history", "ranker"), ("validation", "train", "test")],
)
def test_every_table_ranks_over_the_serving_catalogue(tiny_pipeline: Path, table: str, history: str, als: str) -> None:
    # the training rows and the validation rows take ALS's rank percentile over the same videos: the
    # validation block's (the videos the ranker orders), not the whole catalogue for the training rows
    root = tiny_pipeline
    catalogue = np.unique(pl.read_parquet(root / "data" / "split" / "validation.parquet")[Columns.item].to_numpy())
    test_videos = np.unique(pl.read_parquet(root / "data" / "split" / "test.parquet")[Columns.item].to_numpy())
    np.testing.assert_array_equal(catalogue, test_videos)  # fully_observed: both blocks hold the same videos
    n_videos = pl.scan_parquet(root / "data" / "prepared" / "items.parquet").select(pl.len()).collect().item()
    assert catalogue.size < n_videos  # a smaller catalogue than the platform's: the test can tell them apart
    rows = pl.read_parquet(root / "data" / "features" / table / "table.parquet")
    ranks = rows["als_rank_pct"].drop_nulls()
    step = 1 / (catalogue.size + 1)  # the percentile's smallest step: one place in the served catalogue
    assert ranks.min() >= step - 1e-7, f"rank percentile {ranks.min():.5f} is finer than the catalogue's {step:.5f}"
    model = load_als(root / "models" / "als" / als)
    views = pl.read_parquet(root / "data" / "split" / f"{history}.parquet", columns=[Columns.user, Columns.item])
    sample = rows.select(Columns.user, Columns.item, "als_rank_pct").sample(n=min(150, rows.height), seed=5)
    in_catalogue = 0
    for user, item, rank in sample.iter_rows():
        expected = _brute_force_rank(model, views, catalogue, user, item)
        assert (rank is None) == (expected is None)
        if expected is not None:
            assert rank == pytest.approx(expected, abs=1e-6), (user, item)
        in_catalogue += int(item in catalogue)
    if table == "train":
        assert in_catalogue < sample.height  # some training rows lie outside the catalogue: ranked as inserted


# --- the definitions on small hand-made inputs -------------------------------------------------------------


def test_a_video_outside_the_catalogue_gets_the_place_it_would_take_if_inserted() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items = 6, 20
    model = AlsModel(
        rng.normal(size=(n_users, 3)).astype(np.float32),
        rng.normal(size=(n_items, 3)).astype(np.float32),
        IdMap.from_values(np.arange(n_users, dtype=np.int32)),
        IdMap.from_values(np.arange(n_items, dtype=np.int32)),
        {},
    )
    history = pl.DataFrame(
        {Columns.user: rng.integers(0, n_users, 30), Columns.item: rng.integers(0, n_items, 30)}
    ).cast(pl.Int32)
    catalogue = np.arange(0, n_items, 2, dtype=np.int32)  # the even videos are served
    pairs = pl.DataFrame(
        {Columns.user: np.repeat(np.arange(n_users), n_items), Columns.item: np.tile(np.arange(n_items), n_users)}
    ).cast(pl.Int32)
    result = als_pair_features(model, pairs, catalogue, seen=seen_matrix(model, history), chunk_users=4)
    for (user, item), rank in zip(pairs.iter_rows(), result["als_rank_pct"], strict=True):
        assert rank == pytest.approx(_brute_force_rank(model, history, catalogue, user, item), rel=1e-6)
    assert result["als_score"].null_count() == 0  # every video known to ALS is scored, in the catalogue or not


def _world(n_users: int = 8, n_items: int = 10, n_views: int = 300) -> dict:
    rng = np.random.default_rng(11)
    users = pl.DataFrame(
        {
            Columns.user: np.arange(n_users, dtype=np.int32),
            Columns.user_active_degree: pl.Series(["full_active"] * n_users).cast(pl.Enum(["full_active"])),
            **{c: np.zeros(n_users) for c in ("is_lowactive_period", "is_live_streamer", "is_video_author")},
            **{c: np.zeros(n_users) for c in ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")},
            **{f"onehot_feat{i}": np.zeros(n_users) for i in range(18)},
        }
    )
    items = pl.DataFrame(
        {
            Columns.item: np.arange(n_items, dtype=np.int32),
            Columns.tags: [[int(i % 3)] for i in range(n_items)],
            Columns.video_duration: np.full(n_items, 10_000, dtype=np.int32),
            "n_tags": np.ones(n_items, dtype=np.int8),
        }
    ).with_columns(pl.col(Columns.tags).cast(pl.List(pl.Int8)))
    history = pl.DataFrame(
        {
            Columns.user: rng.integers(0, n_users, n_views).astype(np.int32),
            Columns.item: rng.integers(0, n_items, n_views).astype(np.int32),
            Columns.play_duration: rng.integers(1_000, 30_000, n_views),
            Columns.watch_ratio: rng.lognormal(-0.3, 1.0, n_views),
        }
    )
    model = AlsModel(
        rng.normal(size=(n_users, 2)).astype(np.float32),
        rng.normal(size=(n_items, 2)).astype(np.float32),
        IdMap.from_values(np.arange(n_users, dtype=np.int32)),
        IdMap.from_values(np.arange(n_items, dtype=np.int32)),
        {},
    )
    pairs = pl.DataFrame(
        {Columns.user: np.arange(n_users, dtype=np.int32), Columns.item: np.arange(n_users, dtype=np.int32) % n_items}
    ).with_columns(pl.lit(None, dtype=pl.Date).alias(Columns.date))
    daily = pl.DataFrame(
        schema={Columns.item: pl.Int32, Columns.date: pl.Date, "author_id": pl.Int64, "upload_dt": pl.Date, "show_cnt": pl.Int64, "play_cnt": pl.Int64,
                "complete_play_cnt": pl.Int64, "like_cnt": pl.Int64, "play_progress": pl.Float32}
    )  # fmt: skip
    return {"users": users, "items": items, "history": history, "model": model, "pairs": pairs, "daily": daily}


def _describe(world: dict, history: pl.DataFrame) -> pl.DataFrame:
    sources = FeatureSources(
        pairs=world["pairs"], history=history, users=world["users"], items=world["items"],
        item_daily=world["daily"], als_model=world["model"], catalogue=world["items"][Columns.item].to_numpy(),
    )  # fmt: skip
    return build_feature_table(sources, threshold=2.0, smoothing=5.0, daily_window_days=7).frame


def test_view_features_do_not_grow_with_the_history() -> None:
    # every view counted twice: twice the history, the same users and videos; a raw count moves by log 2
    world = _world()
    once, twice = _describe(world, world["history"]), _describe(world, pl.concat([world["history"]] * 2))
    for name in ("u_views_rel", "i_views_rel"):
        assert once[name].null_count() == 0
        assert once[name].equals(twice[name]), name
    # 0 is the average user: the users' views, weighted by their number, average to the mean
    counts = world["history"].group_by(Columns.user).len()
    mean = world["history"].height / world["users"].height
    expected = dict(zip(counts[Columns.user], np.log(counts["len"].to_numpy() / mean), strict=True))
    for user, value in once.select(Columns.user, "u_views_rel").iter_rows():
        assert value == pytest.approx(expected[user], abs=1e-6)
