"""Cleaning one KuaiRec interaction matrix (``big_matrix``, ``small_matrix``) in bounded memory.

:func:`clean_interactions` types the CSV, splits it into contiguous ``user_id`` ranges on disk,
then sorts, deduplicates and classifies one range at a time (each dropped row counted under the
first of :data:`INTERACTION_DROP_REASONS` that applies) and appends the kept rows to one sorted
parquet file whose bytes depend only on the data, whatever the partition size. See
docs/design/data.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq
from polars.exceptions import PolarsError

from reco.data.raw_csv import (
    N_EXAMPLES,
    UNKNOWN_ID_MAX_FRACTION,
    as_float,
    as_int32,
    check_columns,
    check_field_counts,
    check_report,
    count_true,
    diagnose_parse_error,
    raw_schema,
    read_header,
    require_file,
    yyyymmdd_text_to_date,
    yyyymmdd_to_date,
)
from reco.errors import InputDataError
from reco.io import atomic_path, sweep_stale_temporaries
from reco.progress import report as report_progress
from reco.schema import INTERACTION_COLUMNS, INTERACTION_SCHEMA, Columns, RawFiles

__all__ = ["INTERACTION_DROP_REASONS", "PARTITION_ROWS", "clean_interactions"]

LOCAL_UTC_OFFSET_HOURS: Final = 8  # KuaiRec logs are in China Standard Time (no DST)
_INT32_MAX: Final = 2**31 - 1

PARTITION_ROWS: Final = 3_000_000
"""Target number of rows per partition of an interaction matrix (the stage's memory bound)."""
# Temporary files are written once and read once: fast compression beats small files.
_SCRATCH_COMPRESSION: Final = "lz4"
_OUTPUT_ROW_GROUP_ROWS: Final = 1_000_000
_MAX_SINKS: Final = 256  # ranges of the first split; larger ones are split again exactly

# Order matters: a row is counted under the first reason that applies.
INTERACTION_DROP_REASONS: Final[tuple[str, ...]] = (
    "exact_duplicate",
    "null_timestamp",
    "invalid_watch_ratio",
    "non_positive_duration",
    "invalid_play_duration",
    "unknown_id",
)

# Raw parse types of the interaction CSVs; durations and date are read as floats because
# small_matrix writes some integers as "20200705.0".
_INTERACTION_RAW: Final[dict[str, pl.DataType]] = {
    Columns.user: pl.Int64(),
    Columns.item: pl.Int64(),
    Columns.play_duration: pl.Float64(),
    Columns.video_duration: pl.Float64(),
    Columns.time: pl.String(),
    Columns.date: pl.Float64(),
    Columns.timestamp: pl.Float64(),
    Columns.watch_ratio: pl.Float64(),
}


def _scan_interactions(path: Path) -> tuple[pl.LazyFrame, list[str]]:
    """Lazy typed scan: ids int32, durations/ratio float64, timestamp Datetime(ms, UTC), date Date."""
    require_file(path)
    found = read_header(path)
    check_columns(path, found, INTERACTION_COLUMNS)
    check_field_counts(path, len(found))
    ts = pl.col(Columns.timestamp)
    ts_ms = pl.when(ts.is_finite()).then((ts * 1000.0).round()).cast(pl.Int64)
    timestamp = ts_ms.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    frame = pl.scan_csv(path, schema=raw_schema(found, _INTERACTION_RAW)).select(
        pl.col(Columns.user).cast(pl.Int32),
        pl.col(Columns.item).cast(pl.Int32),
        pl.col(Columns.play_duration),
        pl.col(Columns.video_duration),
        timestamp.alias(Columns.timestamp),
        yyyymmdd_to_date(pl.col(Columns.date)).alias(Columns.date),
        pl.col(Columns.watch_ratio),
    )
    return frame, found


# Output order (null timestamps last); the trailing columns only make ties deterministic.
_INTERACTION_SORT: Final[list[str]] = [
    Columns.user,
    Columns.timestamp,
    Columns.item,
    Columns.date,
    Columns.play_duration,
    Columns.video_duration,
    Columns.watch_ratio,
]

_INTERACTION_CONVERTERS: Final[dict[str, tuple[str, Callable[[pl.Expr], pl.Expr]]]] = {
    Columns.user: ("an int32 integer", as_int32),
    Columns.item: ("an int32 integer", as_int32),
    Columns.play_duration: ("a number (milliseconds)", as_float),
    Columns.video_duration: ("a number (milliseconds)", as_float),
    Columns.date: ("a yyyymmdd date", yyyymmdd_text_to_date),
    Columns.timestamp: ("a number (epoch seconds)", as_float),
    Columns.watch_ratio: ("a number", as_float),
}


@contextmanager
def _scratch_dir(target: Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``target``, removed when the block ends (even on error).

    Named like :mod:`reco.io`'s temporaries (``.<name>.<pid>.<random>.tmp``) so that the folder of
    a killed run is swept by the next write of ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _estimate_rows(path: Path) -> int:
    """Number of lines of a text file, estimated from the length of the lines in its first MiB."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    return round(size * max(head.count(b"\n"), 1) / max(len(head), 1))


@dataclass(frozen=True)
class _UserRanges:
    """Contiguous ``user_id`` ranges that cover every row, in ``user_id`` order.

    ``bounds`` are the first ``user_id`` of every range but the first: the ranges are
    ``(-inf, b0), [b0, b1), ..., [b_last, +inf)``. Rows without a ``user_id`` sort last: they
    belong to the last range, or form a range of their own after it if ``nulls_apart``.
    """

    bounds: tuple[int, ...] = ()
    nulls_apart: bool = False

    def __len__(self) -> int:
        return len(self.bounds) + 1 + self.nulls_apart

    def filters(self) -> list[pl.Expr]:
        """One filter per range, in order."""
        user = pl.col(Columns.user)
        lower: list[pl.Expr | None] = [None, *(user >= bound for bound in self.bounds)]
        upper: list[pl.Expr | None] = [*(user < bound for bound in self.bounds), None]
        filters = []
        for low, high in zip(lower, upper, strict=True):
            if low is None and high is None:
                filters.append(user.is_not_null() if self.nulls_apart else pl.lit(True))
            elif high is None:  # the last range: from its bound up, and the null ids unless apart
                filters.append(low if self.nulls_apart else low | user.is_null())
            else:
                filters.append(high if low is None else low & high)
        return filters + ([user.is_null()] if self.nulls_apart else [])


def _estimated_ranges(path: Path, known_users: pl.Series, partition_rows: int) -> _UserRanges:
    """Ranges for the first split of ``path``: equal shares of the known users.

    The number of ranges aims at 3/4 of ``partition_rows`` rows per range (views are spread
    unevenly over users); a range that still holds more rows is split again exactly
    (:func:`_exact_ranges`). The estimate never changes the result, only the balance.
    """
    users = known_users.drop_nulls().unique().sort()
    n_ranges = -(-_estimate_rows(path) * 4 // (3 * partition_rows))
    n_ranges = max(1, min(n_ranges, users.len(), _MAX_SINKS))
    return _UserRanges(tuple(sorted({users[index * users.len() // n_ranges] for index in range(1, n_ranges)})))


def _exact_ranges(partition: Path, partition_rows: int) -> _UserRanges:
    """Ranges of at most ``partition_rows`` rows (plus those of their last user) of ``partition``.

    Users, in ``user_id`` order (null last), are counted from the file; a user starts a new range
    when the rows before it fill a multiple of ``partition_rows``. Memory grows with the number
    of users only.
    """
    counts = (
        pl.scan_parquet(partition)
        .group_by(Columns.user)
        .len()
        .sort(Columns.user, nulls_last=True)
        .collect(engine="streaming")
    )
    part = (pl.col("len").cum_sum() - pl.col("len")) // partition_rows
    starts = counts.filter((part != part.shift(1)).fill_null(True))[Columns.user].to_list()
    nulls_apart = len(starts) > 1 and starts[-1] is None
    return _UserRanges(tuple(starts[1 : len(starts) - nulls_apart]), nulls_apart)


def _sink_ranges(frame: pl.LazyFrame, ranges: _UserRanges, scratch: Path, stem: str) -> list[Path]:
    """Stream ``frame`` into one parquet file per ``user_id`` range; return the files in range order.

    One query with a sink per range (polars reads the source once for all of them), so memory is
    bounded by the sinks' buffers whatever the length of ``frame``.
    """
    files = [scratch / f"{stem}-{index:05d}.parquet" for index in range(len(ranges))]
    sinks = [
        frame.filter(in_range).sink_parquet(file, compression=_SCRATCH_COMPRESSION, statistics=False, lazy=True)
        for in_range, file in zip(ranges.filters(), files, strict=True)
    ]
    pl.collect_all(sinks, engine="streaming")
    return files


def _partitions(
    path: Path,
    frame: pl.LazyFrame,
    found: Sequence[str],
    known_users: pl.Series,
    scratch: Path,
    partition_rows: int,
) -> Iterator[Path]:
    """Split the typed scan ``frame`` of ``path`` into ``user_id``-range files; yield them in order.

    A first streaming pass splits by estimated ranges; a file with more than ``partition_rows``
    rows is split again by exact counts before it is yielded. Each file is removed once the
    caller has read it (at the next step of the iteration).
    """
    report_progress(f"{path.name}: reading into user ranges")
    try:
        first_split = _sink_ranges(frame, _estimated_ranges(path, known_users, partition_rows), scratch, "partition")
    except PolarsError as error:
        raise diagnose_parse_error(path, found, _INTERACTION_CONVERTERS, error) from error
    for number, partition in enumerate(first_split, 1):
        report_progress(f"{path.name}: user range {number}/{len(first_split)}")
        pieces = [partition]
        if pl.scan_parquet(partition).select(pl.len()).collect().item() > partition_rows:
            ranges = _exact_ranges(partition, partition_rows)
            if len(ranges) > 1:  # else one user fills the partition: it cannot be split
                pieces = _sink_ranges(pl.scan_parquet(partition), ranges, scratch, partition.stem)
                partition.unlink()
        for piece in pieces:
            yield piece
            piece.unlink()  # free the disk as we go


@dataclass
class _CleaningTally:
    """Counts of one interaction matrix, summed over its partitions."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INTERACTION_DROP_REASONS, 0))
    kept: int = 0
    date_from_timestamp: int = 0
    null_timestamp_kept: int = 0
    unknown_examples: list[pl.DataFrame] = field(default_factory=list)


def _drop_reason_code(known_users: pl.Series, known_items: pl.Series, *, keep_null_timestamp: bool) -> pl.Expr:
    """Index in :data:`INTERACTION_DROP_REASONS` of the first reason that applies; null if kept.

    Expects rows sorted by :data:`_INTERACTION_SORT`: exact duplicates are equal neighbours.
    """
    same_as_previous = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c).shift(1)) for c in _INTERACTION_SORT)
    duplicate = same_as_previous & (pl.int_range(pl.len()) > 0)
    wr, vdur, play = (pl.col(c) for c in (Columns.watch_ratio, Columns.video_duration, Columns.play_duration))
    user, item = pl.col(Columns.user), pl.col(Columns.item)
    reasons: list[tuple[str, pl.Expr]] = [
        ("exact_duplicate", duplicate),
        ("null_timestamp", pl.col(Columns.timestamp).is_null() & pl.lit(not keep_null_timestamp)),
        ("invalid_watch_ratio", ~(wr.is_finite() & (wr >= 0)).fill_null(False)),
        ("non_positive_duration", ~(vdur.is_finite() & (vdur > 0) & (vdur.round() <= _INT32_MAX)).fill_null(False)),
        ("invalid_play_duration", ~(play.is_finite() & (play >= 0) & (play.round() <= _INT32_MAX)).fill_null(False)),
        (
            "unknown_id",
            ~(user.is_in(known_users.implode()) & item.is_in(known_items.implode())).fill_null(False),
        ),
    ]
    assert tuple(name for name, _ in reasons) == INTERACTION_DROP_REASONS
    # First applicable reason wins: a small integer code per row, null when the row is kept.
    code: pl.Expr = pl.lit(None, dtype=pl.UInt8)
    for index, (_, condition) in reversed(list(enumerate(reasons))):
        code = pl.when(condition).then(pl.lit(index, dtype=pl.UInt8)).otherwise(code)
    return code


def _clean_partition(
    typed: pl.DataFrame, drop_reason: pl.Expr, tally: _CleaningTally, *, keep_null_timestamp: bool
) -> pl.DataFrame:
    """Sort, deduplicate and classify one partition; add its counts to ``tally``; return kept rows.

    The kept rows have exactly :data:`reco.schema.INTERACTION_SCHEMA`, in output order.
    """
    # Sorting on every column gives the deterministic output order *and* puts exact duplicates
    # next to each other, which is much faster and lighter than DataFrame.unique. Stable, so
    # that rows equal to the sort but not bitwise (-0.0 and 0.0) keep their order in the file.
    frame = typed.sort(_INTERACTION_SORT, nulls_last=True, maintain_order=True)
    frame = frame.with_columns(drop_reason.alias("_reason"))
    del typed
    tally.rows_read += frame.height
    for index, count in frame.group_by("_reason").len().drop_nulls("_reason").iter_rows():
        tally.dropped[INTERACTION_DROP_REASONS[index]] += int(count)
    unknown = frame.filter(pl.col("_reason") == INTERACTION_DROP_REASONS.index("unknown_id"))
    if unknown.height:  # the first few per partition are enough to name the first few overall
        tally.unknown_examples.append(unknown.select(Columns.user, Columns.item).sort(Columns.user, Columns.item))
        tally.unknown_examples = [pl.concat(tally.unknown_examples).sort(Columns.user, Columns.item).head(N_EXAMPLES)]

    kept = frame.filter(pl.col("_reason").is_null())
    del frame
    date_from_timestamp = pl.col(Columns.date).is_null() & pl.col(Columns.timestamp).is_not_null()
    tally.date_from_timestamp += count_true(kept, date_from_timestamp)
    if keep_null_timestamp:
        tally.null_timestamp_kept += count_true(kept, pl.col(Columns.timestamp).is_null())
    local = pl.col(Columns.timestamp).dt.replace_time_zone(None) + pl.duration(hours=LOCAL_UTC_OFFSET_HOURS)
    kept = kept.select(
        Columns.user,
        Columns.item,
        pl.col(Columns.play_duration).round().cast(pl.Int32),
        pl.col(Columns.video_duration).round().cast(pl.Int32),
        Columns.timestamp,
        pl.coalesce(Columns.date, local.dt.date()).alias(Columns.date),  # a no-op where date is known
        pl.col(Columns.watch_ratio).cast(pl.Float32),
    )
    tally.kept += kept.height
    assert kept.schema == INTERACTION_SCHEMA, kept.schema
    return kept


def clean_interactions(
    path: Path,
    out_path: Path,
    known_users: pl.Series,
    known_items: pl.Series,
    *,
    keep_null_timestamp: bool,
    partition_rows: int = PARTITION_ROWS,
) -> dict[str, Any]:
    """Read, type, validate and clean one interaction matrix into a parquet file, in bounded memory.

    Parameters
    ----------
    path
        The CSV file with the columns in :data:`reco.schema.INTERACTION_COLUMNS`.
    out_path
        The parquet file to write (atomically): exactly :data:`reco.schema.INTERACTION_SCHEMA`,
        sorted. Temporary files are hidden siblings of it, removed before returning or raising.
    known_users, known_items
        Ids from ``user_features`` and ``item_categories`` (referential integrity).
    keep_null_timestamp
        Keep rows without a timestamp (``small_matrix``) instead of dropping them.
    partition_rows
        Target rows per partition (see docs/design/data.md); the result does not depend on it,
        only the peak memory (and the output's row groups) do.

    Returns
    -------
    dict
        The report entry (``rows_read``, ``dropped`` per reason, ``kept``, ...).

    Raises
    ------
    InputDataError
        Missing file or column, unparsable values, too many unknown ids, nothing left.

    Examples
    --------
    >>> report = clean_interactions(  # doctest: +SKIP
    ...     Path("data/raw/small_matrix.csv"), Path("out/small_matrix.parquet"), users, items,
    ...     keep_null_timestamp=True)
    >>> report["rows_read"] - sum(report["dropped"].values()) == report["kept"]  # doctest: +SKIP
    True
    """
    if partition_rows < 1:
        raise ValueError(f"partition_rows must be positive, got {partition_rows}")
    lazy, found = _scan_interactions(path)
    out_path = Path(out_path)
    drop_reason = _drop_reason_code(known_users, known_items, keep_null_timestamp=keep_null_timestamp)
    tally = _CleaningTally()
    arrow_schema = pl.DataFrame(schema=INTERACTION_SCHEMA).to_arrow().schema
    with _scratch_dir(out_path) as scratch, atomic_path(out_path) as tmp_out:
        # polars cannot append to a parquet file; pyarrow's writer adds each partition as row groups.
        # Dictionary pages only for the low-cardinality columns: smaller and faster to write.
        dictionary_columns = [Columns.user, Columns.item, Columns.video_duration, Columns.date]
        with (
            pq.ParquetWriter(
                tmp_out, arrow_schema, compression="zstd", use_dictionary=dictionary_columns, write_statistics=False
            ) as writer,
            ThreadPoolExecutor(max_workers=1) as background,  # exits first: no write in flight at close
        ):
            # Partition k is compressed and written while k + 1 is cleaned (pyarrow releases the
            # GIL); one write at a time keeps the row groups in order and the memory bounded.
            writing: Future[None] | None = None
            for partition in _partitions(path, lazy, found, known_users, scratch, partition_rows):
                kept = _clean_partition(
                    pl.read_parquet(partition), drop_reason, tally, keep_null_timestamp=keep_null_timestamp
                )
                if writing is not None:
                    writing.result()
                writing = background.submit(writer.write_table, kept.to_arrow(), row_group_size=_OUTPUT_ROW_GROUP_ROWS)
                del kept
            if writing is not None:
                writing.result()

        rows_read, unknown = tally.rows_read, tally.dropped["unknown_id"]
        if rows_read and unknown / rows_read > UNKNOWN_ID_MAX_FRACTION:
            pairs = pl.concat(tally.unknown_examples).iter_rows()
            examples = ", ".join(f"(user_id={u}, video_id={v})" for u, v in pairs)
            raise InputDataError(
                path,
                f"{unknown} of {rows_read} rows ({unknown / rows_read:.1%}) have a user_id absent from "
                f"{RawFiles.user_features} or a video_id absent from {RawFiles.item_categories} "
                f"(more than {UNKNOWN_ID_MAX_FRACTION:.0%}: the files do not belong together); e.g. {examples}",
            )
        if tally.kept == 0:
            raise InputDataError(path, f"no rows left after cleaning (read {rows_read}, dropped {tally.dropped})")

    report: dict[str, Any] = {"rows_read": rows_read, "dropped": tally.dropped, "kept": tally.kept}
    report["date_from_timestamp"] = tally.date_from_timestamp
    if keep_null_timestamp:
        report["null_timestamp_kept"] = tally.null_timestamp_kept
    check_report(path.name, report)
    return report
