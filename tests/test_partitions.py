"""reco.partitions: user id ranges, rows read by user range, partition results written as one parquet file."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.io import write_parquet
from reco.params import parse_section
from reco.partitions import (
    FrameRows,
    UserRowIndex,
    parquet_row_groups,
    partition_count,
    user_partitions,
    write_parquet_partitions,
)
from reco.schema import Columns


def views_table(n_users: int = 60, n_rows: int = 3000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            Columns.user: rng.integers(0, n_users, n_rows).astype(np.int32) * 7,  # gaps between ids
            Columns.item: rng.integers(0, 40, n_rows).astype(np.int32),
            Columns.watch_ratio: rng.gamma(1.5, 1.0, n_rows),
        }
    )


def test_user_partitions_are_contiguous_sorted_ranges_of_every_user() -> None:
    ids = np.array([42, 7, 7, 3, 99, 15, 3, 64, 8])
    parts = user_partitions(ids, 3)
    assert [p.tolist() for p in parts] == [[3, 7, 8], [15, 42], [64, 99]]
    assert [p.tolist() for p in user_partitions(ids[::-1], 3)] == [
        p.tolist() for p in parts
    ]  # input order is irrelevant
    assert [len(p) for p in user_partitions(ids, 50)] == [1] * 7  # never an empty partition
    assert user_partitions(np.array([], dtype=np.int64), 4) == []
    with pytest.raises(ValueError):
        user_partitions(ids, 0)


def test_partition_count_grows_with_the_rows_only_beyond_the_parameter() -> None:
    params = parse_section("compute", {"user_partitions": 8})
    assert partition_count(0, params) == 8 and partition_count(1_000, params) == 8
    assert partition_count(9 * 2_000_000 + 1, params) == 10


def write_views(path: Path, frame: pl.DataFrame) -> Path:
    write_parquet(frame, path)
    return path


@pytest.mark.parametrize("grouped", [True, False])
def test_user_row_index_reads_exactly_the_rows_of_the_users(tmp_path: Path, grouped: bool) -> None:
    views = views_table(n_rows=5000)
    views = views.sort(Columns.user, maintain_order=True) if grouped else views
    index = UserRowIndex(write_views(tmp_path / "views.parquet", views))
    assert index.grouped is grouped and index.n_rows == views.height
    assert index.users.tolist() == sorted(set(views[Columns.user].to_list()))
    numbered = views.with_row_index("_row")
    for part in user_partitions(index.users, 4):
        got = index.scan(part, [Columns.user, Columns.watch_ratio], row_index="_row").collect()
        expected = numbered.filter(pl.col(Columns.user).is_in(part.tolist())).select("_row", Columns.user, Columns.watch_ratio)
        assert got.equals(expected)
        assert index.rows_of(part) == expected.height
    sparse = index.users[::3]  # not a contiguous range of the file's users
    assert index.scan(sparse).collect().equals(views.filter(pl.col(Columns.user).is_in(sparse.tolist())))
    in_memory = FrameRows(views)
    assert in_memory.scan(sparse).collect().equals(index.scan(sparse).collect())
    assert in_memory.rows_of(np.array([index.users[0], -5])) == index.rows_of(np.array([index.users[0], -5]))


@pytest.mark.parametrize("n_rows", [0, 7, 163_840, 163_841, 400_003])
def test_partitions_written_as_one_file_have_the_bytes_of_the_whole_frame(tmp_path: Path, n_rows: int) -> None:
    rng = np.random.default_rng(n_rows)
    frame = pl.DataFrame(
        {
            Columns.user: np.sort(rng.integers(0, 500, n_rows)).astype(np.int32),
            "x": pl.Series(rng.random(n_rows).astype(np.float32)).fill_nan(None),
            "flag": rng.random(n_rows) > 0.5,
        }
    )
    write_parquet(frame, tmp_path / "whole.parquet")
    cuts = np.linspace(0, n_rows, 6).astype(int)  # uneven pieces, unrelated to the row groups
    pieces = (frame.slice(a, b - a) for a, b in itertools.pairwise(cuts))
    write_parquet_partitions(pieces, n_rows, frame.schema, tmp_path / "parts.parquet")
    assert (tmp_path / "parts.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert sum(parquet_row_groups(n_rows)) == n_rows
    with pytest.raises(ValueError, match="were announced"):
        write_parquet_partitions(iter([frame]), n_rows + 1, frame.schema, tmp_path / "wrong.parquet")
    assert not (tmp_path / "wrong.parquet").exists()
