"""User-partitioned parquet access: users in contiguous id ranges, each range's rows read or written alone.

:func:`user_partitions` splits the users into contiguous sorted id ranges and
:func:`partition_count` says how many a stage uses, so that a partition's memory does not grow
with the logs. :class:`UserRowIndex` records where each user's rows lie in a parquet file and
reads one partition's rows (a slice of a file sorted by user); :class:`FrameRows` gives an
in-memory frame the same interface. :func:`write_parquet_partitions` streams partition results
into one parquet file with the bytes :func:`reco.io.write_parquet` gives the whole frame. See
docs/scaling.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import polars as pl

from reco.io import atomic_path
from reco.params import ComputeParams
from reco.schema import Columns

__all__ = [
    "PARTITION_ROWS",
    "FrameRows",
    "UserRowIndex",
    "parquet_row_groups",
    "partition_count",
    "user_partitions",
    "write_parquet_partitions",
]

PARTITION_ROWS = 2_000_000
"""Input rows (logged views) a user partition holds at most, about: the per-partition memory bound.

Stages use at least ``compute.user_partitions`` partitions, more when their input is larger
(:func:`partition_count`): memory then grows with the users and videos, not the logged views."""


def user_partitions(user_ids: np.ndarray | pl.Series | Sequence[int], n_partitions: int) -> list[np.ndarray]:
    """Split the distinct users into at most ``n_partitions`` contiguous, sorted id ranges.

    The split depends only on the set of ids and ``n_partitions`` (equal user counts, the first
    partitions one user larger when it does not divide), never on the cluster. Fewer users
    than partitions give one partition per user.

    Parameters
    ----------
    user_ids
        User ids, repeated and unsorted allowed.
    n_partitions
        ``compute.user_partitions``.

    Returns
    -------
    list[numpy.ndarray]
        The sorted distinct ids of each partition, in id order; none is empty.

    Examples
    --------
    >>> [p.tolist() for p in user_partitions([5, 1, 3, 3, 9, 7], 2)]
    [[1, 3, 5], [7, 9]]
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, got {n_partitions}")
    unique = np.unique(np.asarray(user_ids))
    if len(unique) == 0:
        return []
    return [part for part in np.array_split(unique, min(n_partitions, len(unique))) if len(part)]


def partition_count(n_rows: int, params: ComputeParams, rows_per_partition: int = PARTITION_ROWS) -> int:
    """Number of user partitions for ``n_rows`` input rows: ``compute.user_partitions``, more for large inputs.

    Outputs never depend on it (every per-user result is the same whatever the partitioning);
    it bounds the rows one partition reads.

    Examples
    --------
    >>> from reco.params import parse_section
    >>> partition_count(25_000_000, parse_section("compute", {"user_partitions": 8}))
    13
    """
    return max(params.user_partitions, -(-int(n_rows) // rows_per_partition))


class UserRowIndex:
    """Where each user's rows lie in a parquet file, from one streaming pass over its user column.

    Interaction files are written sorted by user (prepare, split, candidates), so the rows of a
    user range are one contiguous slice: :meth:`scan` then reads only the row groups holding it.
    A file whose users are not grouped is still read correctly, by a filtered full scan.

    Parameters
    ----------
    path
        The parquet file.
    user_column
        Its user id column.

    Attributes
    ----------
    users
        Sorted distinct user ids (nulls are never part of a partition).
    counts
        Rows of each user (int64).
    starts
        First row of each user (int64).
    grouped
        True when the rows of each user are contiguous and the users ascending.
    n_rows
        Rows in the file.

    Examples
    --------
    >>> index = UserRowIndex("data/split/train.parquet")  # doctest: +SKIP
    >>> index.scan(index.users[:10], [Columns.user, Columns.item]).collect().height  # doctest: +SKIP
    15233
    """

    def __init__(self, path: str | os.PathLike[str], user_column: str = Columns.user) -> None:
        self.path = os.path.abspath(path)  # workers may run elsewhere in the tree
        self.user_column = user_column
        self.schema = pl.scan_parquet(self.path).collect_schema()
        self.user_dtype = self.schema[user_column]
        lazy = pl.scan_parquet(self.path, row_index_name="_row").select(user_column, "_row")
        per_user, total = pl.collect_all(
            [
                lazy.drop_nulls(user_column)
                .group_by(user_column)
                .agg(pl.len().alias("n"), pl.col("_row").min().alias("first"))
                .sort(user_column),
                lazy.select(pl.len()),
            ],
            engine="streaming",
        )
        self.users = per_user[user_column].to_numpy()
        self.counts = per_user["n"].to_numpy().astype(np.int64)
        self.starts = per_user["first"].to_numpy().astype(np.int64)
        self.n_rows = int(total.item())
        expected_starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)
        self.grouped = bool(self.counts.sum() == self.n_rows and np.array_equal(self.starts, expected_starts))

    def rows_of(self, users: np.ndarray) -> int:
        """Number of rows of ``users`` (ids absent from the file count 0)."""
        position = np.searchsorted(self.users, users)
        inside = position < len(self.users)
        inside[inside] &= self.users[position[inside]] == np.asarray(users)[inside]
        return int(self.counts[position[inside]].sum())

    def scan(self, users: np.ndarray, columns: Sequence[str] | None = None, row_index: str | None = None) -> pl.LazyFrame:
        """The rows of ``users`` (sorted ids), in file order; ``row_index`` names a column of file row numbers.

        Reads only the slice of the file between the first and the last of ``users`` when the
        file is grouped by user; filters a full scan otherwise.
        """
        users = np.asarray(users)
        lazy = pl.scan_parquet(self.path, row_index_name=row_index)
        if self.grouped and len(users) and len(self.users):
            first, last = np.searchsorted(self.users, [users[0], users[-1]])
            first = min(int(first), len(self.users) - 1)
            last = min(int(last), len(self.users) - 1)
            start = int(self.starts[first])
            stop = int(self.starts[last] + self.counts[last])
            lazy = lazy.slice(start, max(stop - start, 0))
        wanted = pl.Series(users, dtype=self.user_dtype).implode()
        selected = lazy.filter(pl.col(self.user_column).is_in(wanted))
        if columns is not None:
            selected = selected.select(*([row_index] if row_index else []), *columns)
        return selected

    def __repr__(self) -> str:
        return f"UserRowIndex({self.path!r}, users={len(self.users)}, rows={self.n_rows}, grouped={self.grouped})"


class FrameRows(UserRowIndex):
    """An in-memory frame behind :class:`UserRowIndex`'s interface: the same per-partition code for both.

    For inputs that are already in memory (tests, small tables); ``scan`` filters the frame.

    Examples
    --------
    >>> rows = FrameRows(pl.DataFrame({"user_id": [2, 1, 2], "video_id": [7, 8, 9]}))
    >>> rows.users.tolist(), rows.scan(np.array([2]), ["video_id"], row_index="_row").collect().rows()
    ([1, 2], [(0, 7), (2, 9)])
    """

    def __init__(self, frame: pl.DataFrame, user_column: str = Columns.user) -> None:
        self.frame = frame
        self.path = "<memory>"
        self.user_column = user_column
        self.schema = frame.schema
        self.user_dtype = frame.schema[user_column]
        per_user = frame.lazy().drop_nulls(user_column).group_by(user_column).agg(pl.len().alias("n")).sort(user_column)
        counts = per_user.collect()
        self.users = counts[user_column].to_numpy()
        self.counts = counts["n"].to_numpy().astype(np.int64)
        self.starts = np.full(len(self.users), -1, dtype=np.int64)
        self.n_rows = frame.height
        self.grouped = False

    def scan(self, users: np.ndarray, columns: Sequence[str] | None = None, row_index: str | None = None) -> pl.LazyFrame:
        lazy = self.frame.lazy()
        if row_index is not None:
            lazy = lazy.with_row_index(row_index)
        wanted = pl.Series(np.asarray(users), dtype=self.user_dtype).implode()
        selected = lazy.filter(pl.col(self.user_column).is_in(wanted))
        if columns is not None:
            selected = selected.select(*([row_index] if row_index else []), *columns)
        return selected

    def __repr__(self) -> str:
        return f"FrameRows(users={len(self.users)}, rows={self.n_rows})"


def parquet_row_groups(n_rows: int) -> list[int]:
    """The row-group sizes :func:`reco.io.write_parquet` gives a frame of ``n_rows`` rows (one chunk).

    polars splits a frame into row groups by its height only (not its columns or dtypes); this
    asks polars itself, by writing a column of ``n_rows`` zero bytes to memory.

    Examples
    --------
    >>> parquet_row_groups(100), parquet_row_groups(200_000)
    ([100], [100000, 100000])
    """
    import io

    import pyarrow.parquet as pq

    if n_rows == 0:
        return []
    buffer = io.BytesIO()
    pl.DataFrame({"_": pl.zeros(n_rows, pl.Int8, eager=True)}).write_parquet(
        buffer, compression="uncompressed", statistics=False
    )
    buffer.seek(0)
    metadata = pq.ParquetFile(buffer).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def _row_groups(frames: Iterable[pl.DataFrame], sizes: Sequence[int]) -> Iterator[pl.DataFrame]:
    """Re-cut a stream of frames into frames of exactly ``sizes`` rows (the last partial frame included)."""
    pending: list[pl.DataFrame] = []
    held = 0
    targets = iter(sizes)
    target = next(targets, None)
    for frame in frames:
        pending.append(frame)
        held += frame.height
        while target is not None and held >= target:
            merged = pl.concat(pending, how="vertical", rechunk=False)
            yield merged.slice(0, target).rechunk()
            rest = merged.slice(target)
            pending, held = ([rest] if rest.height else []), rest.height
            target = next(targets, None)
    if held or target is not None:
        raise ValueError(f"the partitions gave {sum(sizes) - (target or 0) + held} rows, {sum(sizes)} were announced")


def write_parquet_partitions(
    frames: Iterable[pl.DataFrame], n_rows: int, schema: pl.Schema, path: str | os.PathLike[str]
) -> None:
    """Write a stream of frames (e.g. partition results) as one parquet file, holding one partition at a time.

    The bytes are those :func:`reco.io.write_parquet` writes for the frames' concatenation: the
    stream is re-cut into that call's row groups (:func:`parquet_row_groups` of ``n_rows``) and
    streamed through polars' parquet sink with the same settings. Written atomically.

    Parameters
    ----------
    frames
        Frames of ``schema``, in output order (a generator: each is consumed before the next is asked for).
    n_rows
        Their total number of rows (a :class:`ValueError` if they give another number).
    schema
        Their schema.
    path
        The output file.

    Examples
    --------
    >>> parts = (pl.DataFrame({"a": [i, i + 1]}) for i in range(0, 6, 2))
    >>> write_parquet_partitions(parts, 6, pl.Schema({"a": pl.Int64}), "out.parquet")  # doctest: +SKIP
    """
    from polars.io.plugins import register_io_source

    sizes = parquet_row_groups(n_rows)

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, limit: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        for group in _row_groups(frames, sizes):
            if group.schema != schema:
                raise ValueError(f"a partition's schema {group.schema} differs from the announced {schema}")
            yield group if with_columns is None else group.select(with_columns)

    with atomic_path(path) as tmp:
        if not sizes:
            pl.DataFrame(schema=schema).write_parquet(tmp, compression="zstd", statistics=False)
            if any(frame.height for frame in frames):
                raise ValueError("the partitions gave rows, 0 were announced")
            return
        register_io_source(source, schema=schema).sink_parquet(tmp, compression="zstd", statistics=False)
