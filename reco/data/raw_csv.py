"""Reading the raw KuaiRec CSVs safely: header, field counts, explicit types, and errors that name the rows.

The helpers shared by the interaction matrices (:mod:`reco.data.interactions`) and the side tables
(:mod:`reco.data.side_tables`): every file is read with an explicit schema after its header and
field counts are checked, and a value that does not parse raises an
:class:`~reco.errors.InputDataError` naming the file, the column and the first offending lines.
See docs/design/data.md and docs/bad-input.md.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl
from polars.exceptions import PolarsError

from reco.errors import InputDataError

__all__ = [
    "BOM",
    "N_EXAMPLES",
    "UNKNOWN_ID_MAX_FRACTION",
    "as_float",
    "as_int32",
    "check_columns",
    "check_field_counts",
    "check_report",
    "collect_or_explain",
    "count_true",
    "diagnose_parse_error",
    "format_examples",
    "raw_schema",
    "read_header",
    "require_file",
    "yyyymmdd_text_to_date",
    "yyyymmdd_to_date",
]

UNKNOWN_ID_MAX_FRACTION: Final = 0.01
N_EXAMPLES: Final = 5
BOM: Final = b"\xef\xbb\xbf"


def read_header(path: Path) -> list[str]:
    """Column names of a CSV file (BOM and CR stripped)."""
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.strip():
        raise InputDataError(path, "the file is empty (no header line)")
    text = first.removeprefix(BOM).decode("utf-8", errors="replace").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text]))]


def check_columns(path: Path, found: Sequence[str], expected: Sequence[str]) -> None:
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


def raw_schema(found: Sequence[str], types: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """Explicit parse schema in the file's column order; unknown extra columns as strings."""
    return {name: types.get(name, pl.String()) for name in found}


def format_examples(frame: pl.DataFrame, column: str, total: int | None = None) -> str:
    """``line 4: 'abc', ...`` for the first rows of ``frame`` and the number of offending rows.

    ``total`` is that number when ``frame`` holds only the first few of them.
    """
    shown = frame.head(N_EXAMPLES)
    rows = ", ".join(f"line {line}: {value!r}" for line, value in zip(shown["_line"], shown[column], strict=True))
    return f"{rows} ({frame.height if total is None else total} row(s) in total)"


def check_field_counts(path: Path, n_fields: int) -> None:
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


def diagnose_parse_error(
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
                    f"{format_examples(bad, column, n_invalid)}",
                )
    except PolarsError as reread:  # the file is not even readable as text
        return InputDataError(path, f"unreadable CSV: {reread}")
    return InputDataError(path, f"could not parse the file: {str(error).splitlines()[0]}")


def as_int32(text: pl.Expr) -> pl.Expr:
    """Non-strict text -> int32, null where invalid or out of range."""
    return text.cast(pl.Int64, strict=False).cast(pl.Int32, strict=False)


def as_float(text: pl.Expr) -> pl.Expr:
    """Non-strict text -> float64, null where invalid."""
    return text.cast(pl.Float64, strict=False)


def yyyymmdd_text_to_date(text: pl.Expr) -> pl.Expr:
    """Non-strict ``yyyymmdd`` (int or float text) -> Date, null where invalid."""
    as_int = text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    return as_int.cast(pl.String).str.to_date("%Y%m%d", strict=False)


def yyyymmdd_to_date(number: pl.Expr) -> pl.Expr:
    """``20200705`` or ``20200705.0`` -> Date (raises on an impossible date; NaN -> null)."""
    value = pl.when(number.is_finite()).then(number).cast(pl.Int64)
    return pl.date(value // 10_000, value // 100 % 100, value % 100)


def collect_or_explain(
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
        raise diagnose_parse_error(path, found, converters, error, encoding) from error


def require_file(path: Path) -> None:
    """Refuse a missing file, naming it and its folder."""
    if not path.is_file():
        raise InputDataError(path, f"missing file {path.name!r} in folder {str(path.parent)!r}")


def count_true(frame: pl.DataFrame, predicate: pl.Expr) -> int:
    """Number of rows of ``frame`` where ``predicate`` holds."""
    return int(frame.select(predicate.sum()).item())


def check_report(table: str, entry: Mapping[str, Any]) -> None:
    """Assert the report invariant ``rows_read - sum(dropped) == kept`` of one table."""
    dropped = sum(entry["dropped"].values())
    if entry["rows_read"] - dropped != entry["kept"]:
        raise AssertionError(f"{table}: rows_read {entry['rows_read']} - dropped {dropped} != kept {entry['kept']}")
