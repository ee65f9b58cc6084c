"""Tests of reco.models.candidates: ALS top-N candidates, popularity fallback, candidate recall, block partitions.

The block tests also merge the other sources (reco.models.candidate_sources) by quotas, locally and on Dask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse

from reco.compute import compute_client
from reco.io import write_parquet
from reco.models.als import AlsModel, IdMap
from reco.models.candidate_sources import SourceMix, source_inputs, source_lists
from reco.models.candidates import (
    CANDIDATE_SCHEMA,
    RANK_COLUMN,
    block_candidates,
    candidate_recall,
    popularity_fallback,
    recommend_candidates,
)
from reco.params import parse_section
from reco.partitions import UserRowIndex
from reco.schema import Columns

N_USERS, N_ITEMS, FACTORS = 20, 50, 4
USER_IDS = 1000 + 2 * np.arange(N_USERS)  # external ids are not positions
ITEM_IDS = 5000 + 3 * np.arange(N_ITEMS)


@pytest.fixture(scope="module")
def model() -> AlsModel:
    rng = np.random.default_rng(0)
    return AlsModel(
        user_factors=rng.normal(size=(N_USERS, FACTORS)).astype(np.float32),
        item_factors=rng.normal(size=(N_ITEMS, FACTORS)).astype(np.float32),
        user_ids=IdMap.from_values(USER_IDS),
        item_ids=IdMap.from_values(ITEM_IDS),
        training_loss={},
    )


@pytest.fixture(scope="module")
def seen() -> scipy.sparse.csr_matrix:
    """Training matrix: each user saw ~30% of the items (users x items, float32)."""
    rng = np.random.default_rng(1)
    mask = rng.random((N_USERS, N_ITEMS)) < 0.3
    return scipy.sparse.csr_matrix(np.where(mask, 1 + rng.random(mask.shape), 0).astype(np.float32))


def seen_pairs(matrix: scipy.sparse.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return set(zip(USER_IDS[coo.row].tolist(), ITEM_IDS[coo.col].tolist(), strict=True))


def pairs_of(frame: pl.DataFrame) -> list[tuple[int, int]]:
    return list(zip(frame[Columns.user].to_list(), frame[Columns.item].to_list(), strict=True))


def test_matches_brute_force_top_n(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    frame, stats = recommend_candidates(model, seen, USER_IDS, n=10)
    assert frame.schema == CANDIDATE_SCHEMA
    assert stats == {"users": N_USERS, "users_unknown_to_als": 0, "n": 10, "rows": N_USERS * 10}
    scores = model.user_factors @ model.item_factors.T
    scores[seen.toarray() > 0] = -np.inf
    expected_items = ITEM_IDS[np.argsort(-scores, axis=1, kind="stable")[:, :10]]
    got = frame[Columns.item].to_numpy().reshape(N_USERS, 10)
    np.testing.assert_array_equal(got, expected_items)
    np.testing.assert_allclose(
        frame["als_score"].to_numpy().reshape(N_USERS, 10), np.take_along_axis(scores, np.argsort(-scores, axis=1)[:, :10], 1), rtol=1e-5
    )
    assert frame["als_rank"].to_list() == list(range(1, 11)) * N_USERS
    assert frame["source"].unique().to_list() == ["als"]


def test_filter_seen_removes_every_training_pair(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    training = seen_pairs(seen)
    filtered, _ = recommend_candidates(model, seen, USER_IDS, n=N_ITEMS)
    assert not training & set(pairs_of(filtered))
    assert filtered.height == N_ITEMS * N_USERS - seen.nnz  # everything else is a candidate
    unfiltered, _ = recommend_candidates(model, seen, USER_IDS, n=N_ITEMS, filter_seen=False)
    assert training <= set(pairs_of(unfiltered))


def test_catalogue_restriction_and_n_larger_than_catalogue(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    catalogue = np.array([ITEM_IDS[7], ITEM_IDS[3], ITEM_IDS[40], ITEM_IDS[3], 1, ITEM_IDS[11], ITEM_IDS[25]])
    allowed = set(ITEM_IDS[[3, 7, 11, 25, 40]].tolist())  # 1 is unknown to the model: never an ALS candidate
    frame, _ = recommend_candidates(model, seen, USER_IDS, n=200, catalogue=catalogue)
    assert set(frame[Columns.item].to_list()) <= allowed
    assert not seen_pairs(seen) & set(pairs_of(frame))
    per_user = frame.group_by(Columns.user).agg(pl.len(), pl.col("als_rank").max().alias("max_rank"))
    dense = seen.toarray()[:, [3, 7, 11, 25, 40]] > 0
    expected = dict(zip(USER_IDS.tolist(), (5 - dense.sum(axis=1)).tolist(), strict=True))
    assert {u: c for u, c in per_user.select(Columns.user, "len").iter_rows()} == {u: c for u, c in expected.items() if c}
    assert (per_user["len"] == per_user["max_rank"]).all()  # ranks 1..k with no gaps, no padding rows
    assert frame.select(pl.struct(Columns.user, Columns.item).is_unique().all()).item()


def test_n_larger_than_all_items_without_catalogue(model: AlsModel) -> None:
    empty = scipy.sparse.csr_matrix((N_USERS, N_ITEMS), dtype=np.float32)
    frame, _ = recommend_candidates(model, empty, USER_IDS[:3], n=N_ITEMS + 25)
    assert frame.height == 3 * N_ITEMS  # no padding rows (implicit pads with item 0, score 0)
    assert frame.group_by(Columns.user).agg(pl.col(Columns.item).n_unique())[Columns.item].to_list() == [N_ITEMS] * 3


def test_unknown_users_fall_back_to_popularity(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    catalogue = ITEM_IDS[:10]
    fallback = np.array([ITEM_IDS[40], ITEM_IDS[2], 77, ITEM_IDS[5], ITEM_IDS[2], ITEM_IDS[9], ITEM_IDS[0]])
    users = np.array([7, USER_IDS[0], 3, 7])  # 3 and 7 unknown to ALS; 7 requested twice
    frame, stats = recommend_candidates(model, seen, users, n=3, catalogue=catalogue, fallback_items=fallback)
    assert stats["users"] == 3 and stats["users_unknown_to_als"] == 2
    popular = frame.filter(pl.col("source") == "popularity")
    assert sorted(set(popular[Columns.user].to_list())) == [3, 7]
    for user in (3, 7):
        rows = popular.filter(pl.col(Columns.user) == user)
        # outside the catalogue (ITEM_IDS[40], 77) dropped, duplicate kept at first position, cut at n
        assert rows[Columns.item].to_list() == [ITEM_IDS[2], ITEM_IDS[5], ITEM_IDS[9]]
        assert rows["als_rank"].to_list() == [1, 2, 3]
        assert rows["als_score"].is_nan().all()
    als_rows = frame.filter(pl.col("source") == "als")
    assert set(als_rows[Columns.user].to_list()) == {USER_IDS[0]}
    assert not als_rows["als_score"].is_nan().any()
    assert frame[Columns.user].to_list() == sorted(frame[Columns.user].to_list())


def test_unknown_users_without_fallback_get_no_rows(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    frame, stats = recommend_candidates(model, seen, np.array([1, 2, USER_IDS[4]]), n=5)
    assert stats["users_unknown_to_als"] == 2
    assert frame[Columns.user].unique().to_list() == [USER_IDS[4]]


def test_deterministic_and_leaves_input_untouched(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    before = seen.copy()
    catalogue = ITEM_IDS[::2]
    first, _ = recommend_candidates(model, seen, USER_IDS, n=7, catalogue=catalogue, num_threads=1)
    second, _ = recommend_candidates(model, seen, USER_IDS[::-1], n=7, catalogue=catalogue, num_threads=2)
    assert first.equals(second)
    assert (seen != before).nnz == 0 and np.array_equal(seen.indices, before.indices)
    ordered = first.with_columns((-pl.col("als_score")).alias("neg"))
    assert ordered.equals(ordered.sort([Columns.user, "neg", Columns.item]))  # score desc, ties by item id


def test_ties_are_ordered_by_item_id() -> None:
    model = AlsModel(
        user_factors=np.ones((1, 2), dtype=np.float32),
        item_factors=np.ones((5, 2), dtype=np.float32),  # every item scores 2.0
        user_ids=IdMap.from_values(np.array([1])),
        item_ids=IdMap.from_values(np.array([50, 10, 40, 20, 30])),
        training_loss={},
    )
    frame, _ = recommend_candidates(model, scipy.sparse.csr_matrix((1, 5), dtype=np.float32), np.array([1]), n=5)
    assert frame[Columns.item].to_list() == [10, 20, 30, 40, 50]


def test_rejects_wrong_orientation_and_bad_n(model: AlsModel, seen: scipy.sparse.csr_matrix) -> None:
    with pytest.raises(ValueError, match="transpose"):
        recommend_candidates(model, seen.T.tocsr(), USER_IDS, n=5)
    with pytest.raises(TypeError, match="CSR"):
        recommend_candidates(model, seen.tocsc(), USER_IDS, n=5)
    with pytest.raises(ValueError, match="n must be"):
        recommend_candidates(model, seen, USER_IDS, n=0)


def test_candidate_recall_is_micro_averaged_over_distinct_pairs() -> None:
    candidates = pl.DataFrame(
        {Columns.user: [1, 1, 1, 2], Columns.item: [10, 11, 12, 10]}, schema={Columns.user: pl.Int32, Columns.item: pl.Int32}
    )
    # user 1: 3 of 3 found; user 2: 0 of 1; user 3 (no candidates): 0 of 1; the duplicate counts once
    positives = pl.DataFrame({Columns.user: [1, 1, 1, 1, 2, 3], Columns.item: [10, 11, 12, 12, 99, 10]})
    assert candidate_recall(candidates, positives) == pytest.approx(3 / 5)  # a per-user mean would be 1/3
    assert candidate_recall(candidates, positives.head(1)) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        candidate_recall(candidates, positives.head(0))


# --- a block's candidates, one user partition at a time ------------------------------------------


def block_world(model: AlsModel) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training views (known and unknown users) and a block of cells over a third of the items."""
    rng = np.random.default_rng(4)
    train_users = np.concatenate([USER_IDS, [3, 5]])  # 3 and 5 are unknown to ALS
    train = pl.DataFrame(
        {
            Columns.user: rng.choice(train_users, 600).astype(np.int32),
            Columns.item: rng.choice(ITEM_IDS, 600).astype(np.int32),
            Columns.watch_ratio: rng.gamma(1.0, 1.0, 600).astype(np.float32),
        }
    ).sort(Columns.user, maintain_order=True)
    block_users, block_items = np.concatenate([USER_IDS[::2], [5, 7]]), ITEM_IDS[::3]  # 7 has no training view
    cells = pl.DataFrame(
        {
            Columns.user: np.repeat(block_users, len(block_items)).astype(np.int32),
            Columns.item: np.tile(block_items, len(block_users)).astype(np.int32),
        }
    ).with_columns(pl.Series(Columns.label, rng.random(len(block_users) * len(block_items)) < 0.3))
    return train, cells


def test_block_candidates_are_the_same_for_any_partitioning_in_memory_or_from_files(
    model: AlsModel, tmp_path: Path
) -> None:
    train, cells = block_world(model)
    expected, summary = block_candidates(model, train, cells, 6)
    assert expected.select(Columns.user, RANK_COLUMN).equals(expected.select(Columns.user, RANK_COLUMN).sort(Columns.user, RANK_COLUMN))
    assert summary["users"] == 12 and summary["users_unknown_to_als"] == 2
    write_parquet(train, tmp_path / "train.parquet")
    write_parquet(cells, tmp_path / "block.parquet")
    files = UserRowIndex(tmp_path / "train.parquet"), UserRowIndex(tmp_path / "block.parquet")
    for n_partitions in (3, 7):
        for source in ((train, cells), files):
            frame, stats = block_candidates(model, *source, 6, n_partitions=n_partitions)
            assert frame.equals(expected) and stats == summary


def test_popularity_fallback_reads_a_lazy_scan_like_a_frame(model: AlsModel, tmp_path: Path) -> None:
    train, cells = block_world(model)
    catalogue = np.unique(cells[Columns.item].to_numpy())
    write_parquet(train, tmp_path / "train.parquet")
    lazy = popularity_fallback(pl.scan_parquet(tmp_path / "train.parquet"), catalogue)
    np.testing.assert_array_equal(lazy, popularity_fallback(train, catalogue))
    assert sorted(lazy.tolist()) == catalogue.tolist()


# --- a block's candidates from several sources -----------------------------------------------------


def tagged_items() -> pl.DataFrame:
    """Every video's tags (0 to 2 of 5), and an untagged video outside the model."""
    rng = np.random.default_rng(9)
    tags = [sorted(set(rng.integers(0, 5, rng.integers(0, 3)).tolist())) for _ in ITEM_IDS]
    return pl.DataFrame(
        {Columns.item: np.r_[ITEM_IDS, [1]].astype(np.int32), Columns.tags: [*tags, []]},
        schema={Columns.item: pl.Int32, Columns.tags: pl.List(pl.Int8)},
    )


def source_mix(popularity: int, tag_popularity: int) -> SourceMix:
    return SourceMix(popularity=popularity, tag_popularity=tag_popularity, threshold=1.0, smoothing=3.0, items=tagged_items())


def test_with_quotas_zero_the_candidates_are_als_alone_to_the_byte(model: AlsModel, tmp_path: Path) -> None:
    train, cells = block_world(model)
    als_alone, als_summary = block_candidates(model, train, cells, 6)
    mixed, summary = block_candidates(model, train, cells, 6, mix=source_mix(0, 0), n_partitions=3)
    write_parquet(als_alone, tmp_path / "als.parquet")
    write_parquet(mixed, tmp_path / "mixed.parquet")
    assert (tmp_path / "als.parquet").read_bytes() == (tmp_path / "mixed.parquet").read_bytes()
    assert mixed.schema == als_alone.schema
    # every source is scored for the report even when it places nothing
    assert {k: v for k, v in summary.items() if k != "sources"} == {k: v for k, v in als_summary.items() if k != "sources"}
    assert list(summary["sources"]) == ["als", "popularity", "tag_popularity"]
    assert summary["sources"]["als"] == {"quota": 6, "recall_at_6": summary["recall_at_6"], "in_merged_list": mixed.height}
    assert [s["quota"] for s in summary["sources"].values()] == [6, 0, 0]


def test_recall_of_each_source_and_of_the_merged_list(model: AlsModel) -> None:
    train, cells = block_world(model)
    merged, summary = block_candidates(model, train, cells, 6, mix=source_mix(2, 1))
    positives = cells.filter(pl.col(Columns.label))
    assert summary["recall_at_6"] == round(candidate_recall(merged, positives), 6)
    # each source's own top 6, built here without the block machinery
    catalogue = np.unique(cells[Columns.item].to_numpy())
    users = np.unique(cells[Columns.user].to_numpy()).astype(np.int32)
    # ALS's seen matrix: the training views of the users ALS knows (3 and 5 are not in the model)
    known = train.filter(pl.col(Columns.user).is_in(USER_IDS.tolist()))
    matrix = scipy.sparse.csr_matrix(
        (np.ones(known.height, dtype=np.float32),
         (model.user_ids.index_of(known[Columns.user].to_numpy()), model.item_ids.index_of(known[Columns.item].to_numpy()))),
        shape=(N_USERS, N_ITEMS),
    )  # fmt: skip
    own = {"als": recommend_candidates(model, matrix, users, 6, catalogue=catalogue, fallback_items=popularity_fallback(train, catalogue))[0]}
    mix = source_mix(2, 1)
    own |= source_lists(users, train.filter(pl.col(Columns.user).is_in(users.tolist())), catalogue, source_inputs(train, catalogue, mix), 6)
    for name, rows in own.items():
        reported = summary["sources"][name]
        assert reported["recall_at_6"] == round(candidate_recall(rows, positives), 6), name
        assert reported["in_merged_list"] == rows.join(merged, on=[Columns.user, Columns.item], how="semi").height
        assert reported["quota"] == {"als": 3, "popularity": 2, "tag_popularity": 1}[name]
    # 6 distinct videos per user (there are enough unwatched ones), placed by quota
    per_user = merged.group_by(Columns.user).agg(pl.len(), pl.col(Columns.item).n_unique().alias("distinct"))
    assert per_user["len"].to_list() == [6] * 12 and per_user["distinct"].to_list() == [6] * 12
    placed = merged.filter(pl.col(Columns.user).is_in(USER_IDS.tolist())).group_by("source").len()
    assert dict(placed.iter_rows()) == {"als": 3 * 10, "popularity": 2 * 10, "tag_popularity": 1 * 10}


def test_mixed_candidates_are_the_same_for_any_partitioning_and_on_dask(model: AlsModel, tmp_path: Path) -> None:
    train, cells = block_world(model)
    expected, summary = block_candidates(model, train, cells, 6, mix=source_mix(2, 2))
    assert set(expected["source"].unique().to_list()) == {"als", "popularity", "tag_popularity"}
    write_parquet(train, tmp_path / "train.parquet")
    write_parquet(cells, tmp_path / "block.parquet")
    files = UserRowIndex(tmp_path / "train.parquet"), UserRowIndex(tmp_path / "block.parquet")
    for n_partitions in (3, 7):
        frame, stats = block_candidates(model, *files, 6, n_partitions=n_partitions, mix=source_mix(2, 2))
        assert frame.equals(expected) and stats == summary
    compute = parse_section("compute", {"engine": "dask", "workers": 2, "threads_per_worker": 1})
    with compute_client(compute) as client:
        frame, stats = block_candidates(model, *files, 6, n_partitions=4, client=client, mix=source_mix(2, 2), num_threads=1)
    assert frame.equals(expected) and stats == summary
