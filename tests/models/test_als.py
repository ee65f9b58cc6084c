"""Tests of reco.models.als: id maps, confidence matrix, fit, save/load and scoring."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from reco.errors import InputDataError, ParamsError
from reco.io import write_npy
from reco.models.als import (
    AlsModel,
    IdMap,
    build_confidence_matrix,
    fit_als,
    item_scores,
    load_als,
    save_als,
    score_pairs,
    training_loss,
)
from reco.params import parse_section
from reco.schema import Columns

INT32 = np.iinfo(np.int32)
N_GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 3, 10, 10


def interactions(users: list[int], items: list[int], ratios: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {Columns.user: users, Columns.item: items, Columns.watch_ratio: ratios},
        schema={Columns.user: pl.Int32, Columns.item: pl.Int32, Columns.watch_ratio: pl.Float32},
    )


def block_interactions(seed: int = 0) -> pl.DataFrame:
    """3 user groups x 3 item groups: each user watches 6 of its block's 10 items (ratio 3) and 1 other item."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for group in range(N_GROUPS):
        block_items = 1000 + group * ITEMS_PER_GROUP + np.arange(ITEMS_PER_GROUP)
        other_items = np.setdiff1d(1000 + np.arange(N_GROUPS * ITEMS_PER_GROUP), block_items)
        for k in range(USERS_PER_GROUP):
            user = 100 + group * USERS_PER_GROUP + k
            chosen = [*rng.choice(block_items, 6, replace=False), rng.choice(other_items)]
            users += [user] * len(chosen)
            items += [int(i) for i in chosen]
    return interactions(users, items, [3.0] * len(users))


def group_of_user(user: np.ndarray) -> np.ndarray:
    return (np.asarray(user) - 100) // USERS_PER_GROUP


def group_of_item(item: np.ndarray) -> np.ndarray:
    return (np.asarray(item) - 1000) // ITEMS_PER_GROUP


SMALL_ALS = {"factors": 3, "iterations": 10, "regularization": 1.0, "alpha": 1.0, "num_threads": 1, "confidence": "binary"}


# factors = the planted rank (3); with 8 factors and 7 views per user ALS overfits the off-block view.


@pytest.fixture(scope="module")
def block_fit() -> tuple[AlsModel, scipy.sparse.csr_matrix]:
    return fit_als(block_interactions(), parse_section("als", SMALL_ALS), threshold=2.0)


# --- IdMap -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(INT32.min, INT32.max), min_size=1, max_size=50),
    probes=st.lists(st.integers(INT32.min, INT32.max), max_size=20),
)
def test_id_map_round_trip_and_unknown(values: list[int], probes: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    assert id_map.ids.dtype == np.int32
    assert np.all(np.diff(id_map.ids.astype(np.int64)) > 0)
    idx = np.arange(len(id_map), dtype=np.int32)
    np.testing.assert_array_equal(id_map.index_of(id_map.ids[idx]), idx)
    unknown = np.array([p for p in probes if p not in set(values)], dtype=np.int64)
    assert np.all(id_map.index_of(unknown) == -1)


def test_id_map_lookup_table_path_matches_searchsorted() -> None:
    rng = np.random.default_rng(3)
    id_map = IdMap.from_values(rng.choice(np.arange(-50, 10_000), 6000, replace=False))
    probes = rng.integers(-200, 10_200, 50_000)  # >= 4096 look-ups on a compact range: lookup table
    expected = np.array([np.flatnonzero(id_map.ids == p)[0] if p in set(id_map.ids.tolist()) else -1 for p in probes[:500]])
    got = id_map.index_of(probes)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got[:500], expected)
    found = got >= 0
    np.testing.assert_array_equal(id_map.ids[got[found]], probes[found])
    assert not np.isin(probes[~found], id_map.ids).any()


def test_id_map_edge_cases() -> None:
    id_map = IdMap.from_values(np.array([7, 3, 7, 5], dtype=np.int32))
    assert id_map.ids.tolist() == [3, 5, 7]
    assert id_map.index_of(np.array([[7, 3], [4, 99]])).tolist() == [[2, 0], [-1, -1]]
    assert IdMap.from_values(np.array([], dtype=np.int32)).index_of(np.array([1])).tolist() == [-1]
    assert not id_map.ids.flags.writeable
    assert id_map == IdMap(np.array([3, 5, 7], dtype=np.int32))
    with pytest.raises(ValueError, match="strictly increasing"):
        IdMap(np.array([3, 3], dtype=np.int32))
    with pytest.raises(TypeError, match="int32"):
        IdMap(np.array([1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="int32 range"):
        IdMap.from_values(np.array([2**40]))
    with pytest.raises(TypeError, match="integers"):
        id_map.index_of(np.array([1.5]))


# --- confidence matrix -------------------------------------------------------------------------

# user 20 watched item 7 twice (max 3.0), item 5 once (0.5); user 10 watched item 5 (0.0) and item 9 (30).
RAW = interactions([20, 20, 20, 10, 10], [7, 7, 5, 5, 9], [1.0, 3.0, 0.5, 0.0, 30.0])
USERS = IdMap.from_values(np.array([10, 20, 30]))
ITEMS = IdMap.from_values(np.array([5, 7, 9]))


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        ("binary", [[0, 0, 1 + 2 * 1], [0, 1 + 2 * 1, 0], [0, 0, 0]]),
        ("watch_ratio", [[0, 0, 1 + 2 * 10], [1 + 2 * 0.5, 1 + 2 * 3, 0], [0, 0, 0]]),
        ("log1p_watch_ratio", [[0, 0, 1 + 2 * np.log1p(30)], [1 + 2 * np.log1p(0.5), 1 + 2 * np.log1p(3), 0], [0, 0, 0]]),
    ],
)
def test_confidence_matrix_values(confidence: str, expected: list[list[float]]) -> None:
    matrix = build_confidence_matrix(RAW, USERS, ITEMS, confidence, threshold=2.0, alpha=2.0)
    assert isinstance(matrix, scipy.sparse.csr_matrix)
    assert matrix.shape == (3, 3)  # users x items
    assert matrix.dtype == np.float32 and matrix.indices.dtype == np.int32
    assert matrix.has_sorted_indices and matrix.has_canonical_format
    np.testing.assert_allclose(matrix.toarray(), np.array(expected, dtype=np.float32), rtol=1e-6)
    assert np.all(matrix.data > 0)  # v == 0 pairs (watch_ratio 0, or below the binary threshold) are absent


def test_confidence_matrix_drops_unknown_ids_and_keeps_all_seen_pairs() -> None:
    seen = build_confidence_matrix(RAW, IdMap.from_values(np.array([20])), ITEMS, "binary", threshold=-np.inf, alpha=0.0)
    assert seen.shape == (1, 3)
    assert seen.toarray().tolist() == [[1.0, 1.0, 0.0]]


def test_confidence_matrix_rejects_bad_input() -> None:
    with pytest.raises(ParamsError, match="confidence"):
        build_confidence_matrix(RAW, USERS, ITEMS, "squared", threshold=2.0, alpha=1.0)
    with pytest.raises(InputDataError, match="watch_ratio"):
        build_confidence_matrix(interactions([1], [2], [float("nan")]), USERS, ITEMS, "binary", 2.0, 1.0)
    with pytest.raises(InputDataError, match="missing column"):
        build_confidence_matrix(RAW.drop(Columns.watch_ratio), USERS, ITEMS, "binary", 2.0, 1.0)


# --- fit ---------------------------------------------------------------------------------------


def test_fit_recovers_planted_blocks(block_fit: tuple[AlsModel, scipy.sparse.csr_matrix]) -> None:
    model, matrix = block_fit
    assert matrix.shape == (N_GROUPS * USERS_PER_GROUP, N_GROUPS * ITEMS_PER_GROUP)
    assert model.user_factors.dtype == np.float32 and model.user_factors.shape == (30, 3)
    assert model.item_factors.dtype == np.float32 and model.item_factors.shape == (30, 3)
    scores = item_scores(model, model.user_ids.ids, model.item_ids.ids)
    scores[matrix.toarray() > 0] = -np.inf  # unseen items only
    top = model.item_ids.ids[np.argsort(-scores, axis=1, kind="stable")[:, :3]]
    same_block = group_of_item(top) == group_of_user(model.user_ids.ids)[:, None]
    assert same_block.mean() >= 0.9


def test_fit_training_loss_every_fifth_iteration_and_params(block_fit: tuple[AlsModel, scipy.sparse.csr_matrix]) -> None:
    model, _ = block_fit
    assert list(model.training_loss) == [5, 10]  # als.loss_every = 5 (default), 10 iterations
    assert all(np.isfinite(list(model.training_loss.values())))
    assert model.training_loss[10] < model.training_loss[5]
    assert model.params["factors"] == 3 and model.params["threshold"] == 2.0


def test_fit_loss_schedule_records_the_last_iteration_and_leaves_the_factors_alone() -> None:
    dense = parse_section("als", {**SMALL_ALS, "iterations": 7, "loss_every": 1})
    sparse = parse_section("als", {**SMALL_ALS, "iterations": 7, "loss_every": 5})
    every, _ = fit_als(block_interactions(1), dense, threshold=2.0)
    some, _ = fit_als(block_interactions(1), sparse, threshold=2.0)
    assert list(every.training_loss) == list(range(1, 8))
    assert list(some.training_loss) == [5, 7]
    assert {i: every.training_loss[i] for i in (5, 7)} == some.training_loss
    np.testing.assert_array_equal(every.user_factors, some.user_factors)
    np.testing.assert_array_equal(every.item_factors, some.item_factors)


def test_fit_id_maps_only_hold_pairs_kept_by_the_confidence() -> None:
    # user 3 and item 30 only appear in a pair below the binary threshold: unknown to ALS.
    frame = interactions([1, 2, 3, 1], [10, 20, 30, 20], [3.0, 2.5, 1.0, 2.1])
    model, matrix = fit_als(frame, parse_section("als", {**SMALL_ALS, "factors": 2}), threshold=2.0)
    assert model.user_ids.ids.tolist() == [1, 2]
    assert model.item_ids.ids.tolist() == [10, 20]
    assert matrix.nnz == 3


@pytest.mark.parametrize("num_threads", [1, 2])
def test_fit_is_deterministic(num_threads: int) -> None:
    params = parse_section("als", {**SMALL_ALS, "num_threads": num_threads, "random_state": 7})
    first, _ = fit_als(block_interactions(1), params, threshold=2.0)
    second, _ = fit_als(block_interactions(1), params, threshold=2.0)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    assert first.training_loss == second.training_loss
    other, _ = fit_als(block_interactions(1), parse_section("als", {**SMALL_ALS, "random_state": 8}), threshold=2.0)
    assert not np.array_equal(first.user_factors, other.user_factors)


def _random_signed_matrix(seed: int, users: int = 300, items: int = 80) -> scipy.sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((users, items)) < 0.15, rng.choice([-51.0, 51.0], (users, items)), 0.0)
    dense[min(5, users - 1)] = 0.0  # a user without entries
    return scipy.sparse.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_training_loss_matches_implicit_and_ignores_thread_count(seed: int) -> None:
    from implicit.cpu import _als as implicit_cpu_als

    matrix = _random_signed_matrix(seed)
    rng = np.random.default_rng(seed + 10)
    user_factors = rng.normal(0, 0.1, (matrix.shape[0], 6)).astype(np.float32)
    item_factors = rng.normal(0, 0.1, (matrix.shape[1], 6)).astype(np.float32)
    reference = implicit_cpu_als.calculate_loss(matrix, user_factors, item_factors, 3.0, num_threads=1)
    one = training_loss(matrix, user_factors, item_factors, 3.0, num_threads=1)
    two = training_loss(matrix, user_factors, item_factors, 3.0, num_threads=2)
    assert one == two  # same blocks, same summation order
    assert one == pytest.approx(reference, rel=1e-9)
    assert [training_loss(matrix, user_factors, item_factors, 3.0, 2) for _ in range(3)] == [two] * 3


def test_training_loss_with_fewer_users_than_blocks() -> None:
    from implicit.cpu import _als as implicit_cpu_als

    matrix = _random_signed_matrix(3, users=3, items=10)
    user_factors = np.full((3, 2), 0.1, dtype=np.float32)
    item_factors = np.full((10, 2), 0.2, dtype=np.float32)
    reference = implicit_cpu_als.calculate_loss(matrix, user_factors, item_factors, 1.0, num_threads=1)
    assert training_loss(matrix, user_factors, item_factors, 1.0, 2) == pytest.approx(reference, rel=1e-9)


def test_fit_rejects_gpu_without_cuda() -> None:
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("CUDA is available here")
    with pytest.raises(ParamsError, match="use_gpu"):
        fit_als(block_interactions(), parse_section("als", {**SMALL_ALS, "use_gpu": True}), threshold=2.0)


def test_fit_rejects_empty_input() -> None:
    with pytest.raises(InputDataError, match="no \\(user, item\\) pair"):
        fit_als(interactions([1], [2], [0.5]), parse_section("als", SMALL_ALS), threshold=2.0)


# --- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip(block_fit: tuple[AlsModel, scipy.sparse.csr_matrix], tmp_path: Path) -> None:
    model, _ = block_fit
    out = tmp_path / "als"
    save_als(model, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["user_factors.npy", "item_factors.npy", "user_ids.npy", "item_ids.npy", "loss.json", "meta.json"]
    )
    for name in ("user_factors.npy", "item_factors.npy", "user_ids.npy", "item_ids.npy"):
        np.load(out / name, allow_pickle=False)  # no object arrays
    loss_rows = json.loads((out / "loss.json").read_text())
    assert [row["iteration"] for row in loss_rows] == [5, 10]
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["n_users"], meta["n_items"], meta["factors"]) == (30, 30, 3)
    loaded = load_als(out)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.user_factors.dtype == np.float32
    assert loaded.user_ids == model.user_ids and loaded.item_ids == model.item_ids
    assert loaded.training_loss == model.training_loss
    assert loaded.params == model.params


def test_load_reports_missing_and_mismatched_files(block_fit: tuple[AlsModel, scipy.sparse.csr_matrix], tmp_path: Path) -> None:
    model, _ = block_fit
    with pytest.raises(InputDataError, match="not found"):
        load_als(tmp_path / "nowhere")
    out = tmp_path / "als"
    save_als(model, out)
    write_npy(model.user_ids.ids[:-1], out / "user_ids.npy")
    with pytest.raises(InputDataError, match="30 factor rows but 29 ids"):
        load_als(out)
    (out / "item_factors.npy").unlink()
    with pytest.raises(InputDataError, match="item_factors.npy"):
        load_als(out)


def test_load_refuses_pickled_arrays(block_fit: tuple[AlsModel, scipy.sparse.csr_matrix], tmp_path: Path) -> None:
    model, _ = block_fit
    out = tmp_path / "als"
    save_als(model, out)
    np.save(out / "user_ids.npy", np.array([object()] * 30, dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="pickle"):
        load_als(out)


# --- scoring -----------------------------------------------------------------------------------


def tiny_model() -> AlsModel:
    return AlsModel(
        user_factors=np.array([[1, 2], [3, 4]], dtype=np.float32),
        item_factors=np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32),
        user_ids=IdMap.from_values(np.array([5, 6])),
        item_ids=IdMap.from_values(np.array([50, 60, 70])),
        training_loss={},
    )


def test_score_pairs_matches_dot_products_and_marks_unknown() -> None:
    scores = score_pairs(tiny_model(), np.array([5, 6, 6, 9, 5]), np.array([70, 50, 60, 50, 99]))
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores[:3], [3.0, 3.0, 4.0])
    assert np.isnan(scores[3:]).all()


def test_item_scores_dense_matrix() -> None:
    model = tiny_model()
    scores = item_scores(model, np.array([6, 9, 5]), np.array([99, 50, 70]))
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores[[0, 2]][:, 1:], [[3.0, 7.0], [1.0, 3.0]])
    assert np.isnan(scores[1]).all() and np.isnan(scores[:, 0]).all()
    full = item_scores(model, model.user_ids.ids, model.item_ids.ids)
    np.testing.assert_array_equal(full, model.user_factors @ model.item_factors.T)


def test_signed_confidence_marks_non_positive_views_as_negative_feedback() -> None:
    from reco.models.als import IdMap, build_confidence_matrix

    frame = pl.DataFrame(
        {"user_id": [1, 1, 2], "video_id": [10, 20, 10], "watch_ratio": [2.5, 0.4, 1.0]},
        schema={"user_id": pl.Int32, "video_id": pl.Int32, "watch_ratio": pl.Float32},
    )
    users, items = IdMap.from_values(np.array([1, 2])), IdMap.from_values(np.array([10, 20]))
    matrix = build_confidence_matrix(frame, users, items, "signed", threshold=2.0, alpha=1.0, negative_weight=4.0)
    # positive: 1 + alpha = 2; shown but not positive: -(1 + negative_weight) = -5 (implicit's negative feedback)
    np.testing.assert_array_equal(matrix.toarray(), np.array([[2.0, -5.0], [-5.0, 0.0]], dtype=np.float32))


def test_factors_near_zero_are_stored_as_positive_zero_whatever_their_sign() -> None:
    from reco.models.als import FACTOR_GRID_BITS, quantise_factors

    half_step = 2.0 ** -(FACTOR_GRID_BITS + 1)
    noise = np.array([[-1e-12, 1e-12, -half_step * 0.99, -0.0, 0.25, -0.25]])
    quantised = quantise_factors(noise)
    assert quantised.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.25, -0.25]]
    # the bytes, not only the values: no -0.0 survives (its sign bit was BLAS rounding noise)
    assert not np.signbit(quantised[0, :4]).any()
    assert quantise_factors(-noise[:, :4]).tobytes() == quantised[:, :4].tobytes()


# --- bounded memory: a user-sorted scan read in chunks -------------------------------------------


def logged_views(seed: int = 4, n_users: int = 40, n_items: int = 25, n_views: int = 700) -> pl.DataFrame:
    """Random views with re-watches and a label_ratio column (as split writes), sorted by user."""
    rng = np.random.default_rng(seed)
    ratio = rng.gamma(1.0, 1.5, n_views).astype(np.float32)
    ratio[rng.random(n_views) < 0.05] = 0.0
    frame = pl.DataFrame(
        {
            Columns.user: rng.integers(0, n_users, n_views) * 7 + 3,
            Columns.item: rng.integers(0, n_items, n_views) * 11 - 5,
            Columns.watch_ratio: ratio,
            Columns.label_ratio: ratio * np.float32(1.3),
        },
        schema={
            Columns.user: pl.Int32,
            Columns.item: pl.Int32,
            Columns.watch_ratio: pl.Float32,
            Columns.label_ratio: pl.Float32,
        },
    )
    return frame.sort(Columns.user, maintain_order=True)


@pytest.mark.parametrize("confidence", ["signed", "binary", "watch_ratio", "log1p_watch_ratio"])
def test_fit_on_a_scan_read_in_chunks_equals_the_fit_in_memory(confidence: str, tmp_path: Path) -> None:
    frame = logged_views()
    frame.write_parquet(tmp_path / "views.parquet", row_group_size=64)
    params = parse_section("als", {**SMALL_ALS, "confidence": confidence, "iterations": 4, "num_threads": 2})
    expected, expected_matrix = fit_als(frame, params, threshold=2.0)
    for chunk_rows in (1, 37, 10**6):
        scan = pl.scan_parquet(tmp_path / "views.parquet")
        model, matrix = fit_als(scan, params, threshold=2.0, chunk_rows=chunk_rows)
        assert matrix.shape == expected_matrix.shape and matrix.nnz == expected_matrix.nnz > 0
        for name in ("data", "indices", "indptr"):
            got, want = getattr(matrix, name), getattr(expected_matrix, name)
            assert got.dtype == want.dtype and np.array_equal(got, want), name
        assert matrix.has_sorted_indices and matrix.has_canonical_format
        assert model.user_ids == expected.user_ids and model.item_ids == expected.item_ids
        assert np.array_equal(model.user_factors, expected.user_factors)
        assert np.array_equal(model.item_factors, expected.item_factors)
        assert model.training_loss == expected.training_loss and model.params == expected.params


def test_fit_on_a_scan_uses_the_default_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reco.models.als as als_module

    frame = logged_views(seed=5)
    frame.write_parquet(tmp_path / "views.parquet")
    params = parse_section("als", {**SMALL_ALS, "iterations": 2})
    expected, _ = fit_als(frame, params, threshold=2.0)
    chunks: list[int] = []
    real_chunks = als_module.iter_user_chunks

    def counted(*args: Any, **kwargs: Any) -> Iterator[pl.DataFrame]:
        for chunk in real_chunks(*args, **kwargs):
            chunks.append(chunk.height)
            yield chunk

    monkeypatch.setattr(als_module, "CHUNK_ROWS", 50)
    monkeypatch.setattr(als_module, "iter_user_chunks", counted)
    model, _ = fit_als(pl.scan_parquet(tmp_path / "views.parquet"), params, threshold=2.0)
    assert len(chunks) > 5 and sum(chunks) == frame.height
    assert np.array_equal(model.user_factors, expected.user_factors)


def test_fit_on_a_scan_rejects_bad_input(tmp_path: Path) -> None:
    params = parse_section("als", SMALL_ALS)
    frame = logged_views(seed=6)
    frame.drop(Columns.watch_ratio).write_parquet(tmp_path / "no_ratio.parquet")
    with pytest.raises(InputDataError, match="missing column"):
        fit_als(pl.scan_parquet(tmp_path / "no_ratio.parquet"), params, threshold=2.0)
    frame.reverse().write_parquet(tmp_path / "unsorted.parquet")
    with pytest.raises(InputDataError, match="sorted by user_id"):
        fit_als(pl.scan_parquet(tmp_path / "unsorted.parquet"), params, threshold=2.0, chunk_rows=100)
    no_positive = frame.with_columns(pl.lit(0.5, dtype=pl.Float32).alias(Columns.label_ratio))
    no_positive.write_parquet(tmp_path / "none.parquet")
    with pytest.raises(InputDataError, match=f"no \\(user, item\\) pair left to fit ALS on \\({frame.height} rows"):
        fit_als(pl.scan_parquet(tmp_path / "none.parquet"), params, threshold=2.0, chunk_rows=100)
    frame.with_columns(pl.lit(float("nan"), dtype=pl.Float32).alias(Columns.watch_ratio)).write_parquet(
        tmp_path / "nan.parquet"
    )
    with pytest.raises(InputDataError, match="NaN"):
        fit_als(pl.scan_parquet(tmp_path / "nan.parquet"), params, threshold=2.0, chunk_rows=100)
