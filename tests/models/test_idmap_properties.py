"""Property tests of ``reco.models.als.IdMap``: external id <-> matrix row round trips.

Checked against a plain dict: positions are the ranks of the sorted distinct ids, known ids map
back to themselves, unknown ids give -1, both look-up paths (``searchsorted`` for few queries, a
lookup table for many queries over a compact id range) agree, and the map survives the ``.npy``
round trip that ``save_als`` / ``load_als`` use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco.io import read_npy, write_npy
from reco.models.als import IdMap

SETTINGS = settings(max_examples=80, deadline=None)
INT32 = np.iinfo(np.int32)
LUT_MIN_QUERIES = 4096  # reco.models.als._LUT_MIN_QUERIES: from this many queries the table path may run

ids_int32 = st.lists(st.integers(INT32.min, INT32.max), max_size=60)
ids_compact = st.lists(st.integers(-50, 300), max_size=200)  # dense, like KuaiRec's 0..n ids


def reference(values: list[int]) -> dict[int, int]:
    return {value: position for position, value in enumerate(sorted(set(values)))}


def expected_positions(table: dict[int, int], queries: np.ndarray) -> list[int]:
    return [table.get(int(q), -1) for q in queries]


@SETTINGS
@given(st.one_of(ids_int32, ids_compact))
def test_ids_are_the_sorted_distinct_values(values: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    assert id_map.ids.dtype == np.int32
    assert id_map.ids.tolist() == sorted(set(values))
    assert len(id_map) == len(set(values))


@SETTINGS
@given(st.one_of(ids_int32, ids_compact).filter(bool))
def test_round_trip_external_to_row_to_external(values: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    queries = np.array(values, dtype=np.int32)
    rows = id_map.index_of(queries)
    assert rows.dtype == np.int32 and rows.shape == queries.shape
    assert np.all(rows >= 0)
    assert np.array_equal(id_map.ids[rows], queries)  # external -> row -> external
    assert np.array_equal(id_map.index_of(id_map.ids), np.arange(len(id_map)))  # row -> external -> row


@SETTINGS
@given(st.one_of(ids_int32, ids_compact), st.lists(st.integers(INT32.min, INT32.max), max_size=40))
def test_matches_a_dict_including_unknown_ids(values: list[int], queries: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    asked = np.array(queries + values, dtype=np.int64)
    assert id_map.index_of(asked).tolist() == expected_positions(reference(values), asked)


@SETTINGS
@given(ids_compact.filter(bool), st.integers(0, 2**32 - 1))
def test_lookup_table_and_searchsorted_paths_agree(values: list[int], seed: int) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    rng = np.random.default_rng(seed)
    low, high = min(values) - 20, max(values) + 20  # includes unknown ids on both sides and in gaps
    many = rng.integers(low, high + 1, size=LUT_MIN_QUERIES + 10)
    few = many[:50]
    table = reference(values)
    assert id_map.index_of(many).tolist() == expected_positions(table, many)  # lookup-table path
    assert id_map.index_of(few).tolist() == expected_positions(table, few)  # searchsorted path


@SETTINGS
@given(st.one_of(ids_int32, ids_compact), st.lists(st.integers(INT32.min, INT32.max), max_size=10))
def test_shape_is_kept_for_2d_queries(values: list[int], extra: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    flat = np.array((values + extra) * 2, dtype=np.int64)
    grid = flat.reshape(2, -1)
    assert id_map.index_of(grid).shape == grid.shape
    assert id_map.index_of(grid).ravel().tolist() == id_map.index_of(flat).tolist()


@SETTINGS
@given(values=st.one_of(ids_int32, ids_compact))
def test_survives_the_npy_round_trip(tmp_path_factory: pytest.TempPathFactory, values: list[int]) -> None:
    id_map = IdMap.from_values(np.array(values, dtype=np.int64))
    path = Path(tmp_path_factory.mktemp("idmap")) / "ids.npy"
    write_npy(id_map.ids, path)
    loaded = IdMap(read_npy(path))
    assert loaded == id_map
    assert loaded.index_of(np.array(values, dtype=np.int64)).tolist() == id_map.index_of(
        np.array(values, dtype=np.int64)
    ).tolist()


@SETTINGS
@given(st.one_of(st.integers(INT32.max + 1, 2**62), st.integers(-(2**62), INT32.min - 1)), ids_compact)
def test_ids_outside_int32_are_refused(outside: int, values: list[int]) -> None:
    with pytest.raises(ValueError, match="int32"):
        IdMap.from_values(np.array([*values, outside], dtype=np.int64))


def test_unsorted_or_repeated_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        IdMap(np.array([3, 1], dtype=np.int32))
    with pytest.raises(ValueError, match="strictly increasing"):
        IdMap(np.array([1, 1], dtype=np.int32))
