"""Tests of reco.models.candidate_sources: the popularity and favourite-tag sources, and the merge by quotas.

Each source is checked against a brute-force loop over users and videos; the merge against its rules
(quotas, no repeated pair, source order); the scoring in chunks of users against one chunk.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import reco.models.candidate_sources as sources_module
from reco.errors import ParamsError
from reco.models.baselines import popularity_item_scores
from reco.models.candidate_sources import (
    SOURCE_RANK_PREFIX,
    SourceMix,
    merge_sources,
    source_inputs,
    source_lists,
    tag_shares,
)
from reco.params import parse_section
from reco.schema import Columns

THRESHOLD, SMOOTHING = 2.0, 5.0
CATALOGUE = np.arange(100, 160, 2, dtype=np.int32)  # 30 videos; the views also hit videos outside it
USERS = np.array([3, 8, 9, 15, 21, 40, 41, 77], dtype=np.int32)


def world() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training views (with a label ratio that differs from the watch ratio) and the videos' tags."""
    rng = np.random.default_rng(7)
    size = 400
    views = pl.DataFrame(
        {
            Columns.user: rng.choice(np.r_[USERS, [5, 6]], size).astype(np.int32),
            Columns.item: rng.integers(96, 170, size).astype(np.int32),
            Columns.watch_ratio: rng.gamma(1.0, 1.0, size).astype(np.float32),
        }
    ).with_columns((pl.col(Columns.watch_ratio) * 1.5).cast(pl.Float32).alias(Columns.label_ratio))
    tags = [sorted(set(rng.integers(0, 6, rng.integers(0, 3)).tolist())) for _ in range(96, 170)]
    items = pl.DataFrame({Columns.item: np.arange(96, 170, dtype=np.int32), Columns.tags: tags}).with_columns(
        pl.col(Columns.tags).cast(pl.List(pl.Int8))
    )
    return views.sort(Columns.user, maintain_order=True), items


def mix(**quotas: int) -> SourceMix:
    return SourceMix(**quotas, threshold=THRESHOLD, smoothing=SMOOTHING, items=world()[1])


def brute_force_lists(views: pl.DataFrame, items: pl.DataFrame, n: int) -> dict[str, dict[int, list[int]]]:
    """Each user's top n of both sources, one user and one video at a time."""
    popularity = popularity_item_scores(views, CATALOGUE, THRESHOLD, SMOOTHING).astype(np.float64)
    tags_of = {v: set(t) for v, t in items.select(Columns.item, Columns.tags).iter_rows()}
    pop_key = {v: (np.isnan(p), 0.0 if np.isnan(p) else -p, v) for v, p in zip(CATALOGUE.tolist(), popularity, strict=True)}
    pop_value = {v: 0.0 if np.isnan(p) else p for v, p in zip(CATALOGUE.tolist(), popularity, strict=True)}
    lists: dict[str, dict[int, list[int]]] = {"popularity": {}, "tag_popularity": {}}
    for user in USERS.tolist():
        mine = views.filter(pl.col(Columns.user) == user)
        seen = set(mine[Columns.item].to_list())
        liked = mine.filter(pl.col(Columns.label_ratio) > THRESHOLD)[Columns.item].to_list()
        share = {t: sum(t in tags_of[v] for v in liked) / len(liked) for t in range(6)} if liked else {}
        unseen = [v for v in CATALOGUE.tolist() if v not in seen]
        by_popularity = sorted(unseen, key=pop_key.__getitem__)
        lists["popularity"][user] = by_popularity[:n]
        affinity = {v: max((share.get(t, 0.0) for t in tags_of[v]), default=0.0) for v in unseen}
        # a stable sort of the popularity order: ties keep it
        lists["tag_popularity"][user] = sorted(by_popularity, key=lambda v: -(affinity[v] * pop_value[v]))[:n]
    return lists


def as_lists(frame: pl.DataFrame) -> dict[int, list[int]]:
    return {u: frame.filter(pl.col(Columns.user) == u)[Columns.item].to_list() for u in frame[Columns.user].unique().to_list()}


def test_popularity_is_the_popularity_baseline_and_reads_the_label_ratio() -> None:
    views, _ = world()
    inputs = source_inputs(views, CATALOGUE, mix())
    expected = popularity_item_scores(views, CATALOGUE, THRESHOLD, SMOOTHING).astype(np.float64)
    np.testing.assert_array_equal(inputs.popularity, expected)
    by_watch_ratio = source_inputs(views.drop(Columns.label_ratio), CATALOGUE, mix())
    assert not np.array_equal(inputs.popularity, by_watch_ratio.popularity)  # label_ratio = 1.5 x watch_ratio
    lazy = source_inputs(views.lazy(), CATALOGUE, mix())
    np.testing.assert_array_equal(lazy.popularity, inputs.popularity)


def test_tag_shares_count_positive_views_per_tag() -> None:
    views, items = world()
    inputs = source_inputs(views, CATALOGUE, mix())
    shares = tag_shares(views, USERS, inputs.item_tags, inputs.catalogue_tags.shape[1], THRESHOLD)
    tags_of = {v: set(t) for v, t in items.select(Columns.item, Columns.tags).iter_rows()}
    for row, user in enumerate(USERS.tolist()):
        liked = views.filter((pl.col(Columns.user) == user) & (pl.col(Columns.label_ratio) > THRESHOLD))
        for tag in range(6):
            expected = sum(tag in tags_of[v] for v in liked[Columns.item].to_list()) / liked.height if liked.height else 0.0
            assert shares[row, tag] == expected


@pytest.mark.parametrize("n", [1, 7, 30])
def test_source_lists_match_brute_force(n: int) -> None:
    views, items = world()
    inputs = source_inputs(views, CATALOGUE, mix())
    lists = source_lists(USERS, views.filter(pl.col(Columns.user).is_in(USERS.tolist())), CATALOGUE, inputs, n)
    expected = brute_force_lists(views, items, n)
    for name, frame in lists.items():
        assert as_lists(frame) == {u: v for u, v in expected[name].items() if v}, name
        assert frame.select(Columns.user, "als_rank").equals(frame.select(Columns.user, "als_rank").sort(Columns.user, "als_rank"))
        assert frame.group_by(Columns.user).agg((pl.col("als_rank").max() == pl.len()).alias("dense"))["dense"].all()
    assert as_lists(lists["tag_popularity"]) != as_lists(lists["popularity"])  # the tags do reorder


def test_source_lists_do_not_depend_on_the_chunks_or_other_users(monkeypatch: pytest.MonkeyPatch) -> None:
    views, _ = world()
    inputs = source_inputs(views, CATALOGUE, mix())
    whole = source_lists(USERS, views, CATALOGUE, inputs, 12)
    monkeypatch.setattr(sources_module, "_CHUNK_CELLS", 3 * len(CATALOGUE))  # chunks of 3 users
    chunked = source_lists(USERS, views, CATALOGUE, inputs, 12)
    alone = source_lists(USERS[2:3], views.filter(pl.col(Columns.user) == USERS[2]), CATALOGUE, inputs, 12)
    for name in whole:
        assert chunked[name].equals(whole[name])
        assert alone[name].equals(whole[name].filter(pl.col(Columns.user) == USERS[2]))


def test_without_tags_the_tag_source_is_the_popularity_list() -> None:
    views, _ = world()
    inputs = source_inputs(views, CATALOGUE, SourceMix(threshold=THRESHOLD, smoothing=SMOOTHING))
    lists = source_lists(USERS, views, CATALOGUE, inputs, 10)
    assert as_lists(lists["tag_popularity"]) == as_lists(lists["popularity"])


def frame(rows: list[tuple[int, int]], source: str, with_score: bool = False) -> pl.DataFrame:
    users = [u for u, _ in rows]
    ranks = [sum(1 for v, _ in rows[: i + 1] if v == u) for i, (u, _) in enumerate(rows)]
    data = {Columns.user: users, Columns.item: [i for _, i in rows], "als_rank": ranks, "source": [source] * len(rows)}
    if with_score:
        data["als_score"] = [1.0 / r for r in ranks]
    return pl.DataFrame(data).with_columns(pl.col(Columns.user, Columns.item).cast(pl.Int32), pl.col("als_rank").cast(pl.Int16))


def test_merge_fills_each_quota_with_videos_not_yet_listed() -> None:
    als = frame([(1, 10), (1, 11), (1, 12), (1, 13), (2, 20), (2, 21), (2, 22), (2, 23)], "als", with_score=True)
    pop = frame([(1, 10), (1, 14), (1, 11), (1, 15), (2, 24), (2, 25), (2, 26), (2, 27)], "popularity")
    tag = frame([(1, 14), (1, 16), (1, 17), (1, 18), (2, 20), (2, 24), (2, 28), (2, 29)], "tag_popularity")
    lists = {"als": als, "popularity": pop, "tag_popularity": tag}
    merged = merge_sources(lists, {"als": 2, "popularity": 1, "tag_popularity": 1})
    assert merged.select(Columns.user, Columns.item, "als_rank", "source").rows() == [
        (1, 10, 1, "als"), (1, 11, 2, "als"), (1, 14, 3, "popularity"), (1, 16, 4, "tag_popularity"),
        (2, 20, 1, "als"), (2, 21, 2, "als"), (2, 24, 3, "popularity"), (2, 28, 4, "tag_popularity"),
    ]  # fmt: skip
    assert merged["als_score"].is_nan().to_list() == [False, False, True, True] * 2
    assert merged[SOURCE_RANK_PREFIX + "tag_popularity"].to_list() == [None, None, 1, 2, 1, None, 2, 3]
    # a source with quota 0 is left out; ALS's list alone is returned as it is, cut at its quota
    assert merge_sources(lists, {"als": 4, "popularity": 0, "tag_popularity": 0}).equals(als)
    assert merge_sources(lists, {"als": 3}).equals(als.filter(pl.col("als_rank") <= 3))
    only_tags = merge_sources(lists, {"als": 0, "popularity": 0, "tag_popularity": 4})
    assert only_tags[Columns.item].to_list() == tag[Columns.item].to_list()
    assert only_tags.columns == [Columns.user, Columns.item, "als_score", "als_rank", "source", "source_rank_tag_popularity"]


def test_quotas_share_the_list() -> None:
    assert mix(popularity=3, tag_popularity=2).quotas(10) == {"als": 5, "popularity": 3, "tag_popularity": 2}
    assert mix(popularity=6, tag_popularity=4).quotas(10)["als"] == 0
    with pytest.raises(ValueError, match="at most n = 10"):
        mix(popularity=6, tag_popularity=5).quotas(10)
    with pytest.raises(ValueError, match=">= 0"):
        mix(popularity=-1).quotas(10)
    params = parse_section("candidates", {"n": 10, "popularity_quota": 3, "tag_popularity_quota": 2})
    assert params.als_quota == 5
    with pytest.raises(ParamsError, match="tag_popularity_quota"):
        parse_section("candidates", {"n": 10, "popularity_quota": 6, "tag_popularity_quota": 5})
    with pytest.raises(ParamsError, match="popularity_quota"):
        parse_section("candidates", {"n": 10, "popularity_quota": 11})
