"""Stage ``prepare``: KuaiRec 2.0 CSVs -> typed, validated, cleaned parquet + a data-quality report.

:func:`prepare_all` reads every raw file with an explicit schema, refuses unusable data with an
:class:`~reco.errors.InputDataError` naming the file, column and example rows, drops bad interaction rows
for the first reason that applies (counted per reason in ``metrics/data_quality.json``), cleans the
interaction matrices one user range at a time so memory does not grow with the logs, and writes sorted
tables whose bytes depend only on the data. See docs/design/data.md and docs/bad-input.md.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq
from polars.exceptions import PolarsError

from reco.errors import InputDataError
from reco.io import atomic_path, sweep_stale_temporaries, write_parquet
from reco.progress import report as report_progress
from reco.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_SCHEMA,
    ITEM_CATEGORY_COLUMNS,
    ITEM_DAILY_COLUMNS,
    N_CATEGORY_TAGS,
    SOCIAL_NETWORK_COLUMNS,
    USER_CATEGORICAL_COLUMNS,
    USER_FEATURE_COLUMNS,
    Columns,
    PreparedFiles,
    RawFiles,
)

__all__ = [
    "CAPTION_COLUMNS",
    "INTERACTION_DROP_REASONS",
    "PARTITION_ROWS",
    "UNKNOWN_ID_MAX_FRACTION",
    "build_items",
    "clean_interactions",
    "prepare_all",
    "read_caption_categories",
    "read_item_categories",
    "read_item_daily",
    "read_social_network",
    "read_users",
]

UNKNOWN_ID_MAX_FRACTION: Final = 0.01
N_EXAMPLES: Final = 5
LOCAL_UTC_OFFSET_HOURS: Final = 8  # KuaiRec logs are in China Standard Time (no DST)
_INT32_MAX: Final = 2**31 - 1
_BOM: Final = b"\xef\xbb\xbf"

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

CAPTION_COLUMNS: Final[tuple[str, ...]] = (
    "video_id",
    "manual_cover_text",
    "caption",
    "topic_tag",
    "first_level_category_id",
    "first_level_category_name",
    "second_level_category_id",
    "second_level_category_name",
    "third_level_category_id",
    "third_level_category_name",
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

_ITEM_DAILY_STRINGS: Final = ("video_type", "upload_type", "visible_status", "video_tag_name")
_ITEM_DAILY_FLOATS: Final = ("video_duration", "play_progress")
_ITEM_DAILY_DATES: Final = ("date", "upload_dt")


# --------------------------------------------------------------------------------------------
# Generic helpers: header, field counts, diagnosing parse errors
# --------------------------------------------------------------------------------------------


def _read_header(path: Path) -> list[str]:
    """Column names of a CSV file (BOM and CR stripped)."""
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise InputDataError(path, "the file is empty (no header line)")
    text = first.removeprefix(_BOM).decode("utf-8", errors="replace").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text]))]


def _check_columns(path: Path, found: Sequence[str], expected: Sequence[str]) -> None:
    """Refuse a file whose header lacks an expected column (extra columns are ignored)."""
    missing = [name for name in expected if name not in found]
    if missing:
        raise InputDataError(
            path,
            f"missing column(s) {missing}; expected columns {list(expected)}, found {list(found)}",
        )
    duplicated = sorted({name for name in found if found.count(name) > 1})
    if duplicated:
        raise InputDataError(path, f"duplicated column name(s) {duplicated} in the header {list(found)}")


def _raw_schema(found: Sequence[str], types: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """Explicit parse schema in the file's column order; unknown extra columns as strings."""
    return {name: types.get(name, pl.String()) for name in found}


def _format_examples(frame: pl.DataFrame, column: str, total: int | None = None) -> str:
    """``line 4: 'abc', ...`` for the first rows of ``frame`` and the number of offending rows.

    ``total`` is that number when ``frame`` holds only the first few of them.
    """
    shown = frame.head(N_EXAMPLES)
    rows = ", ".join(f"line {line}: {value!r}" for line, value in zip(shown["_line"], shown[column], strict=True))
    return f"{rows} ({frame.height if total is None else total} row(s) in total)"


def _check_field_counts(path: Path, n_fields: int) -> None:
    """Refuse lines whose number of fields differs from the header's.

    polars pads a short row with nulls and, when only some columns are selected, silently drops
    the surplus of a long one, which would shift or lose values of a row that lost or gained a
    comma. Quoted fields (which may contain commas) are removed before counting separators; the
    regex only runs on lines that contain a quote, and the scan streams, so this costs about one
    extra read of the file.
    """
    text = pl.col("text")
    has_quote = text.str.contains('"', literal=True)
    unquoted = pl.when(has_quote).then(text.str.replace_all(r'"(?:[^"]|"")*"', "")).otherwise(text)
    bad = (
        pl.scan_csv(
            path,
            has_header=False,
            separator="\x1f",
            quote_char=None,
            schema={"text": pl.String},
            truncate_ragged_lines=True,
            encoding="utf8-lossy",
        )
        .with_row_index("_line", offset=1)
        .filter(text.str.strip_chars().str.len_bytes() > 0)
        .with_columns((unquoted.str.count_matches(",", literal=True) + 1).alias("_fields"))
        .filter(pl.col("_fields") != n_fields)
        .collect(engine="streaming")
    )
    if bad.height:
        shown = bad.head(N_EXAMPLES)
        rows = ", ".join(
            f"line {line}: {fields} fields {text[:80]!r}"
            for line, fields, text in zip(shown["_line"], shown["_fields"], shown["text"], strict=True)
        )
        raise InputDataError(
            path, f"{bad.height} line(s) do not have the header's {n_fields} fields (columns shifted?): {rows}"
        )


def _diagnose_parse_error(
    path: Path,
    found: Sequence[str],
    converters: Mapping[str, tuple[str, Callable[[pl.Expr], pl.Expr]]],
    error: Exception,
    encoding: str = "utf8",
) -> InputDataError:
    """Re-read ``path`` as text to name the column and rows that made the typed read fail.

    ``converters`` maps a column to (expected type in words, non-strict conversion of the text
    column that is null where the text is invalid). The file is streamed twice at most (the
    number of invalid values per column, then the first few of the first such column), so a
    diagnosis needs no more memory than the typed read.
    """
    text = pl.scan_csv(
        path,
        schema={name: pl.String for name in found},
        encoding=encoding,  # type: ignore[arg-type]
        truncate_ragged_lines=True,
    ).with_row_index("_line", offset=2)
    invalid: dict[str, pl.Expr] = {}
    for column, (_, convert) in converters.items():
        raw = pl.col(column).str.strip_chars()
        invalid[column] = raw.is_not_null() & (raw != "") & convert(raw).is_null()
    try:
        counts = text.select(flag.sum().alias(column) for column, flag in invalid.items()).collect(engine="streaming")
        for column, n_invalid in (counts.row(0, named=True) if invalid else {}).items():
            if n_invalid:
                bad = text.filter(invalid[column]).select("_line", column).head(N_EXAMPLES).collect(engine="streaming")
                expected = converters[column][0]
                return InputDataError(
                    path,
                    f"column {column!r} must be {expected}; offending values: "
                    f"{_format_examples(bad, column, n_invalid)}",
                )
    except PolarsError as reread:  # the file is not even readable as text
        return InputDataError(path, f"unreadable CSV: {reread}")
    return InputDataError(path, f"could not parse the file: {str(error).splitlines()[0]}")


def _as_int32(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.Int64, strict=False).cast(pl.Int32, strict=False)


def _as_float(text: pl.Expr) -> pl.Expr:
    return text.cast(pl.Float64, strict=False)


def _yyyymmdd_text_to_date(text: pl.Expr) -> pl.Expr:
    """Non-strict ``yyyymmdd`` (int or float text) -> Date, null where invalid."""
    as_int = text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    return as_int.cast(pl.String).str.to_date("%Y%m%d", strict=False)


def _yyyymmdd_to_date(number: pl.Expr) -> pl.Expr:
    """``20200705`` or ``20200705.0`` -> Date (raises on an impossible date; NaN -> null)."""
    value = pl.when(number.is_finite()).then(number).cast(pl.Int64)
    return pl.date(value // 10_000, value // 100 % 100, value % 100)


def _collect(
    path: Path,
    frame: pl.LazyFrame,
    found: Sequence[str],
    converters: Mapping[str, tuple[str, Callable[[pl.Expr], pl.Expr]]],
    encoding: str = "utf8",
) -> pl.DataFrame:
    """Collect a typed scan; on a parse/cast error, explain it with file, column and rows."""
    try:
        return frame.collect(engine="streaming")
    except PolarsError as error:
        raise _diagnose_parse_error(path, found, converters, error, encoding) from error


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputDataError(path, f"missing file {path.name!r} in folder {str(path.parent)!r}")


def _count(frame: pl.DataFrame, predicate: pl.Expr) -> int:
    return int(frame.select(predicate.sum()).item())


def _check_report(table: str, entry: Mapping[str, Any]) -> None:
    dropped = sum(entry["dropped"].values())
    if entry["rows_read"] - dropped != entry["kept"]:
        raise AssertionError(f"{table}: rows_read {entry['rows_read']} - dropped {dropped} != kept {entry['kept']}")


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


def _scan_interactions(path: Path) -> tuple[pl.LazyFrame, list[str]]:
    """Lazy typed scan: ids int32, durations/ratio float64, timestamp Datetime(ms, UTC), date Date."""
    _require_file(path)
    found = _read_header(path)
    _check_columns(path, found, INTERACTION_COLUMNS)
    _check_field_counts(path, len(found))
    ts = pl.col(Columns.timestamp)
    ts_ms = pl.when(ts.is_finite()).then((ts * 1000.0).round()).cast(pl.Int64)
    timestamp = ts_ms.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    frame = pl.scan_csv(path, schema=_raw_schema(found, _INTERACTION_RAW)).select(
        pl.col(Columns.user).cast(pl.Int32),
        pl.col(Columns.item).cast(pl.Int32),
        pl.col(Columns.play_duration),
        pl.col(Columns.video_duration),
        timestamp.alias(Columns.timestamp),
        _yyyymmdd_to_date(pl.col(Columns.date)).alias(Columns.date),
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
    Columns.user: ("an int32 integer", _as_int32),
    Columns.item: ("an int32 integer", _as_int32),
    Columns.play_duration: ("a number (milliseconds)", _as_float),
    Columns.video_duration: ("a number (milliseconds)", _as_float),
    Columns.date: ("a yyyymmdd date", _yyyymmdd_text_to_date),
    Columns.timestamp: ("a number (epoch seconds)", _as_float),
    Columns.watch_ratio: ("a number", _as_float),
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
        raise _diagnose_parse_error(path, found, _INTERACTION_CONVERTERS, error) from error
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
    tally.date_from_timestamp += _count(kept, pl.col(Columns.date).is_null() & pl.col(Columns.timestamp).is_not_null())
    if keep_null_timestamp:
        tally.null_timestamp_kept += _count(kept, pl.col(Columns.timestamp).is_null())
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
    _check_report(path.name, report)
    return report


# --------------------------------------------------------------------------------------------
# Side tables
# --------------------------------------------------------------------------------------------


def _read_side_csv(
    path: Path,
    expected: Sequence[str],
    types: Mapping[str, pl.DataType],
    converters: Mapping[str, tuple[str, Callable[[pl.Expr], pl.Expr]]],
) -> pl.DataFrame:
    """Read a small CSV with an explicit schema after checking its header and field counts.

    Stray CR characters inside text values (a quoted field edited on Windows; the real caption
    file has such CRs) are removed, as :func:`read_caption_categories` does: otherwise
    ``"(50,\r100]"`` would become a category of its own.
    """
    _require_file(path)
    found = _read_header(path)
    _check_columns(path, found, expected)
    _check_field_counts(path, len(found))
    lazy = pl.scan_csv(path, schema=_raw_schema(found, types), encoding="utf8-lossy").select(list(expected))
    frame = _collect(path, lazy, found, converters, encoding="utf8-lossy")
    return frame.with_columns(pl.col(pl.String).str.replace_all("\r", "", literal=True))


def _dedupe_by_id(path: Path, frame: pl.DataFrame, id_column: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """Drop exact duplicates and null ids; refuse two different rows for one id."""
    rows_read = frame.height
    unique = frame.unique(maintain_order=True)
    no_null = unique.filter(pl.col(id_column).is_not_null())
    clashes = no_null.filter(pl.col(id_column).is_duplicated())
    if clashes.height:
        ids = clashes[id_column].unique().sort().head(N_EXAMPLES).to_list()
        raise InputDataError(
            path, f"column {id_column!r}: {clashes[id_column].n_unique()} id(s) have different rows, e.g. {ids}"
        )
    dropped = {"exact_duplicate": rows_read - unique.height, "null_id": unique.height - no_null.height}
    return no_null.sort(id_column), dropped


def read_users(path: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``user_features.csv``: ids/counters int32, range columns as sorted ``pl.Enum``.

    Examples
    --------
    >>> users, report = read_users(Path("data/raw/user_features.csv"))  # doctest: +SKIP
    >>> users.schema["user_active_degree"]  # doctest: +SKIP
    Enum(categories=['UNKNOWN', 'full_active', 'high_active', 'middle_active'])
    """
    types = {c: (pl.String() if c in USER_CATEGORICAL_COLUMNS else pl.Int64()) for c in USER_FEATURE_COLUMNS}
    converters = {c: ("an int32 integer", _as_int32) for c in USER_FEATURE_COLUMNS if c not in USER_CATEGORICAL_COLUMNS}
    raw = _read_side_csv(path, USER_FEATURE_COLUMNS, types, converters)
    numeric = [c for c in USER_FEATURE_COLUMNS if c not in USER_CATEGORICAL_COLUMNS]
    try:
        typed = raw.with_columns(pl.col(numeric).cast(pl.Int32))
    except PolarsError as error:
        raise _diagnose_parse_error(path, _read_header(path), converters, error, "utf8-lossy") from error
    typed = typed.with_columns(
        pl.col(c).str.strip_chars().cast(pl.Enum(sorted(typed[c].drop_nulls().str.strip_chars().unique().to_list())))
        for c in USER_CATEGORICAL_COLUMNS
    )
    users, dropped = _dedupe_by_id(path, typed, Columns.user)
    nulls = {c: n for c, n in users.null_count().row(0, named=True).items() if n}
    report = {"rows_read": raw.height, "dropped": dropped, "kept": users.height, "nulls": nulls}
    _check_report(path.name, report)
    return users, report


def _parse_int_list(path: Path, frame: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Series:
    """Parse a Python-list string column (``"[27, 9]"``, ``"[]"``) to ``list[dtype]``; refuse bad ones."""
    text = pl.col(column).str.strip_chars()
    well_formed = text.str.starts_with("[") & text.str.ends_with("]")
    tokens = (
        text.str.strip_prefix("[")
        .str.strip_suffix("]")
        .str.split(",")
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    parsed = frame.with_row_index("_line", offset=2).with_columns(
        tokens.alias("_tokens"),
        tokens.list.eval(pl.element().cast(dtype, strict=False)).alias("_parsed"),
        well_formed.fill_null(False).alias("_ok"),
    )
    bad = parsed.filter(
        ~pl.col("_ok") | (pl.col("_parsed").list.eval(pl.element().is_null()).list.any().fill_null(False))
    )
    if bad.height:
        raise InputDataError(
            path,
            f"column {column!r} must be a list of {dtype} like '[27, 9]'; offending values: "
            f"{_format_examples(bad, column)}",
        )
    return parsed["_parsed"].alias(column)


def read_item_categories(path: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``item_categories.csv`` -> ``video_id`` i32, ``tags`` list[i8] (file order), ``n_tags`` i8."""
    raw = _read_side_csv(
        path,
        ITEM_CATEGORY_COLUMNS,
        {Columns.item: pl.Int64(), Columns.feat: pl.String()},
        {Columns.item: ("an int32 integer", _as_int32)},
    )
    unique, dropped = _dedupe_by_id(path, raw, Columns.item)
    tags = _parse_int_list(path, unique, Columns.feat, pl.Int8())
    items = unique.select(pl.col(Columns.item).cast(pl.Int32)).with_columns(
        tags.alias(Columns.tags), tags.list.len().cast(pl.Int8).alias("n_tags")
    )
    out_of_range = items.with_row_index("_line").filter(
        pl.col(Columns.tags).list.eval((pl.element() < 0) | (pl.element() >= N_CATEGORY_TAGS)).list.any()
    )
    if out_of_range.height:
        shown = out_of_range.head(N_EXAMPLES)
        examples = ", ".join(f"video_id {v}: {t}" for v, t in shown.select(Columns.item, Columns.tags).iter_rows())
        raise InputDataError(
            path, f"column {Columns.feat!r}: tags must be in 0..{N_CATEGORY_TAGS - 1}; found {examples}"
        )
    report = {"rows_read": raw.height, "dropped": dropped, "kept": items.height}
    _check_report(path.name, report)
    return items, report


def read_item_daily(path: Path, known_items: pl.Series) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``item_daily_features.csv``: counters int64, ratios float32, dates, no free text."""
    types: dict[str, pl.DataType] = {}
    converters: dict[str, tuple[str, Callable[[pl.Expr], pl.Expr]]] = {}
    for column in ITEM_DAILY_COLUMNS:
        if column in _ITEM_DAILY_STRINGS or column == "upload_dt":
            types[column] = pl.String()
        elif column in _ITEM_DAILY_FLOATS or column == "date":
            types[column] = pl.Float64()
            converters[column] = ("a number", _as_float)
        else:
            # Integers are parsed as floats: the real file writes counters with missing values
            # as "2.0" (pandas' float columns); they are checked to be whole numbers below.
            types[column] = pl.Float64()
            converters[column] = ("a number", _as_float)
    raw = _read_side_csv(path, ITEM_DAILY_COLUMNS, types, converters).drop("video_tag_name")
    rows_read = raw.height
    integers = [c for c, t in types.items() if t == pl.Float64() and c not in (*_ITEM_DAILY_FLOATS, "date")]
    for column in integers:
        value = pl.col(column)
        bad = raw.with_row_index("_line", offset=2).filter(
            (value != value.round()) | ~value.is_finite() | (value.abs() > 2.0**53)
        )
        if bad.height:
            raise InputDataError(
                path, f"column {column!r} must hold whole numbers; offending values: {_format_examples(bad, column)}"
            )
    raw = raw.with_columns(pl.col(integers).cast(pl.Int64))

    upload = pl.col("upload_dt").str.strip_chars()
    typed = raw.with_row_index("_line", offset=2).with_columns(
        pl.col(Columns.item).cast(pl.Int32, strict=False).alias("_id"),  # int64 -> int32 range check
        _yyyymmdd_text_to_date(pl.col(Columns.date).cast(pl.String)).alias("_date"),
        upload.str.to_date("%Y-%m-%d", strict=False).alias("_upload"),
    )
    for column, parsed in ((Columns.item, "_id"), (Columns.date, "_date"), ("upload_dt", "_upload")):
        bad = typed.filter(pl.col(column).is_not_null() & pl.col(parsed).is_null())
        if bad.height:
            raise InputDataError(path, f"column {column!r} has invalid values: {_format_examples(bad, column)}")
    typed = typed.with_columns(
        pl.col("_id").alias(Columns.item), pl.col("_date").alias(Columns.date), pl.col("_upload").alias("upload_dt")
    ).drop("_line", "_id", "_date", "_upload")
    typed = typed.with_columns(pl.col(list(_ITEM_DAILY_FLOATS)).cast(pl.Float32))

    unique = typed.unique(maintain_order=True)
    no_null = unique.filter(pl.col(Columns.item).is_not_null() & pl.col(Columns.date).is_not_null())
    known = no_null.filter(pl.col(Columns.item).is_in(known_items.implode()))
    unknown = no_null.height - known.height
    if rows_read and unknown / rows_read > UNKNOWN_ID_MAX_FRACTION:
        ids = no_null.filter(~pl.col(Columns.item).is_in(known_items.implode()))[Columns.item].unique().sort()
        raise InputDataError(
            path,
            f"{unknown} of {rows_read} rows have a video_id absent from {RawFiles.item_categories}, "
            f"e.g. {ids.head(N_EXAMPLES).to_list()}",
        )
    daily = known.sort(Columns.item, Columns.date, *(c for c in known.columns if c not in (Columns.item, Columns.date)))
    dropped = {
        "exact_duplicate": rows_read - unique.height,
        "null_id": unique.height - no_null.height,
        "unknown_id": unknown,
    }
    report = {
        "rows_read": rows_read,
        "dropped": dropped,
        "kept": daily.height,
        "duplicate_key": int(daily.select(pl.struct(Columns.item, Columns.date).is_duplicated().sum()).item()),
    }
    _check_report(path.name, report)
    return daily, report


def read_social_network(path: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``social_network.csv`` -> ``user_id`` i32, ``friend_list`` list[i32], one row per user."""
    raw = _read_side_csv(
        path,
        SOCIAL_NETWORK_COLUMNS,
        {Columns.user: pl.Int64(), Columns.friend_list: pl.String()},
        {Columns.user: ("an int32 integer", _as_int32)},
    )
    unique, dropped = _dedupe_by_id(path, raw, Columns.user)
    friends = _parse_int_list(path, unique, Columns.friend_list, pl.Int32())
    social = unique.select(pl.col(Columns.user).cast(pl.Int32)).with_columns(friends)
    report = {"rows_read": raw.height, "dropped": dropped, "kept": social.height}
    _check_report(path.name, report)
    return social, report


def _median_by_video(views: pl.LazyFrame) -> pl.DataFrame:
    """``video_id`` -> median ``video_duration`` (float64, as ``Expr.median``), in bounded memory.

    A streamed count of (video, duration) pairs replaces the values themselves: a video's views
    share one or a few durations, so memory grows with the videos, not with the views. The
    median is the middle value of the sorted counts (the mean of the two middle ones for an even
    count, which is exact in float64 for int32 values, as polars computes it).
    """
    duration = pl.col(Columns.video_duration)
    counts = (
        views.filter(duration.is_not_null())
        .group_by(Columns.item, duration)
        .len()
        .collect(engine="streaming")
        .sort(Columns.item, Columns.video_duration)
    )
    n_views = pl.col("len").sum().over(Columns.item)
    rows_up_to = pl.col("len").cum_sum().over(Columns.item)  # views with a duration <= this one
    low_position, high_position = (n_views - 1) // 2, n_views // 2  # 0-based, in duration order
    middle = counts.group_by(Columns.item).agg(
        duration.filter(rows_up_to > low_position).first().alias("_low"),
        duration.filter(rows_up_to > high_position).first().alias("_high"),
    )
    low, high = pl.col("_low").cast(pl.Float64), pl.col("_high").cast(pl.Float64)
    return middle.select(Columns.item, ((low + high) / 2).alias("_big"))


def build_items(
    categories: pl.DataFrame, big: pl.DataFrame | pl.LazyFrame, item_daily: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add ``video_duration`` (ms, int32) to the item table: big_matrix median, else item_daily median.

    ``big`` is the cleaned big_matrix, preferably a scan of its parquet file: only the counts of
    its (video_id, video_duration) pairs are held in memory.

    Examples
    --------
    >>> cats = pl.DataFrame({"video_id": [0, 1, 2]}, schema={"video_id": pl.Int32})
    >>> big = pl.DataFrame({"video_id": [0, 0], "video_duration": [1000, 3000]},
    ...                    schema={"video_id": pl.Int32, "video_duration": pl.Int32})
    >>> daily = pl.DataFrame({"video_id": [1], "video_duration": [500.0]},
    ...                      schema={"video_id": pl.Int32, "video_duration": pl.Float32})
    >>> build_items(cats, big, daily)[0]["video_duration"].to_list()
    [2000, 500, None]
    """
    from_big = _median_by_video(big.lazy().select(Columns.item, Columns.video_duration))
    from_daily = item_daily.group_by(Columns.item).agg(pl.col(Columns.video_duration).median().alias("_daily"))
    joined = categories.join(from_big, on=Columns.item, how="left", maintain_order="left").join(
        from_daily, on=Columns.item, how="left", maintain_order="left"
    )
    sources = {
        "big_matrix": _count(joined, pl.col("_big").is_not_null()),
        "item_daily": _count(joined, pl.col("_big").is_null() & pl.col("_daily").is_not_null()),
        "unknown": _count(joined, pl.col("_big").is_null() & pl.col("_daily").is_null()),
    }
    duration = pl.coalesce("_big", "_daily").round().cast(pl.Int32).alias(Columns.video_duration)
    return joined.with_columns(duration).drop("_big", "_daily").sort(Columns.item), sources


def read_caption_categories(path: Path) -> pl.DataFrame:
    """Read ``kuairec_caption_category.csv`` robustly (BOM, CRLF and stray CR inside captions).

    The real file has 4 bare CR characters inside (unquoted) captions; a reader that treats CR as a
    line break sees 10,732 rows. Line endings are normalised to LF and the remaining bare CRs are
    removed before parsing, which gives exactly 10,728 rows x 10 columns.

    Examples
    --------
    >>> read_caption_categories(Path("kuairec_caption_category.csv")).shape  # doctest: +SKIP
    (10728, 10)
    """
    _require_file(path)
    data = path.read_bytes().removeprefix(_BOM).replace(b"\r\n", b"\n").replace(b"\r", b"")
    header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", errors="replace")]))
    _check_columns(path, header, CAPTION_COLUMNS)
    ids = ("video_id", "first_level_category_id", "second_level_category_id", "third_level_category_id")
    schema = {c: (pl.Int32 if c in ids else pl.String) for c in header}
    try:
        frame = pl.read_csv(io.BytesIO(data), schema=schema, encoding="utf8-lossy")
    except PolarsError as error:
        raise InputDataError(path, f"could not parse: {str(error).splitlines()[0]}") from error
    return frame.select(CAPTION_COLUMNS)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def prepare_all(raw_dir: Path, out_dir: Path, *, partition_rows: int = PARTITION_ROWS) -> dict[str, Any]:
    """Prepare every KuaiRec table of ``raw_dir`` into typed parquet files in ``out_dir``.

    Parameters
    ----------
    raw_dir
        Folder with the files in :attr:`reco.schema.RawFiles.required`.
    out_dir
        Folder to write the files of :class:`reco.schema.PreparedFiles` into (created; each file
        is written atomically).
    partition_rows
        Target rows per partition of the interaction matrices (:data:`PARTITION_ROWS`): it bounds
        the memory; the files' content and the report do not depend on it.

    Returns
    -------
    dict
        The data-quality report, one entry per raw table (see docs/design/data.md).

    Raises
    ------
    InputDataError
        A file is missing, malformed or violates the data contract.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    missing = [name for name in RawFiles.required if not (raw_dir / name).is_file()]
    if missing:
        raise InputDataError(raw_dir, f"missing file(s) {missing} in folder {str(raw_dir)!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}

    report_progress("user_features, item_categories")
    users, report["user_features"] = read_users(raw_dir / RawFiles.user_features)
    categories, report["item_categories"] = read_item_categories(raw_dir / RawFiles.item_categories)
    known_users, known_items = users[Columns.user], categories[Columns.item]

    for table, raw_name, out_name, keep_null_timestamp in (
        ("big_matrix", RawFiles.big_matrix, PreparedFiles.big, False),
        ("small_matrix", RawFiles.small_matrix, PreparedFiles.small, True),
    ):
        report[table] = clean_interactions(
            raw_dir / raw_name,
            out_dir / out_name,
            known_users,
            known_items,
            keep_null_timestamp=keep_null_timestamp,
            partition_rows=partition_rows,
        )

    report_progress("item_daily_features, video durations, social_network")
    item_daily, report["item_daily_features"] = read_item_daily(raw_dir / RawFiles.item_daily_features, known_items)
    items, report["item_categories"]["video_duration_source"] = build_items(
        categories, pl.scan_parquet(out_dir / PreparedFiles.big), item_daily
    )
    social, report["social_network"] = read_social_network(raw_dir / RawFiles.social_network)

    write_parquet(users, out_dir / PreparedFiles.users)
    write_parquet(items, out_dir / PreparedFiles.items)
    write_parquet(item_daily, out_dir / PreparedFiles.item_daily)
    write_parquet(social, out_dir / PreparedFiles.social)
    for table, entry in report.items():
        _check_report(table, entry)
    return report
