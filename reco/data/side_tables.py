"""Reading the KuaiRec side tables: users, item categories, item daily features, social network, captions.

Each reader returns a typed table with exact duplicates dropped and a report entry
(``rows_read``, ``dropped``, ``kept``); two different rows for one id are refused.
:func:`build_items` adds each video's duration from the cleaned ``big_matrix`` in bounded memory.
See docs/design/data.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl
from polars.exceptions import PolarsError

from reco.data.raw_csv import (
    BOM,
    N_EXAMPLES,
    UNKNOWN_ID_MAX_FRACTION,
    as_float,
    as_int32,
    check_columns,
    check_field_counts,
    check_report,
    collect_or_explain,
    count_true,
    diagnose_parse_error,
    format_examples,
    raw_schema,
    read_header,
    require_file,
    yyyymmdd_text_to_date,
)
from reco.errors import InputDataError
from reco.schema import (
    ITEM_CATEGORY_COLUMNS,
    ITEM_DAILY_COLUMNS,
    N_CATEGORY_TAGS,
    SOCIAL_NETWORK_COLUMNS,
    USER_CATEGORICAL_COLUMNS,
    USER_FEATURE_COLUMNS,
    Columns,
    RawFiles,
)

__all__ = [
    "CAPTION_COLUMNS",
    "build_items",
    "read_caption_categories",
    "read_item_categories",
    "read_item_daily",
    "read_social_network",
    "read_users",
]

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

_ITEM_DAILY_STRINGS: Final = ("video_type", "upload_type", "visible_status", "video_tag_name")
_ITEM_DAILY_FLOATS: Final = ("video_duration", "play_progress")
_ITEM_DAILY_DATES: Final = ("date", "upload_dt")


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
    require_file(path)
    found = read_header(path)
    check_columns(path, found, expected)
    check_field_counts(path, len(found))
    lazy = pl.scan_csv(path, schema=raw_schema(found, types), encoding="utf8-lossy").select(list(expected))
    frame = collect_or_explain(path, lazy, found, converters, encoding="utf8-lossy")
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
    converters = {c: ("an int32 integer", as_int32) for c in USER_FEATURE_COLUMNS if c not in USER_CATEGORICAL_COLUMNS}
    raw = _read_side_csv(path, USER_FEATURE_COLUMNS, types, converters)
    numeric = [c for c in USER_FEATURE_COLUMNS if c not in USER_CATEGORICAL_COLUMNS]
    try:
        typed = raw.with_columns(pl.col(numeric).cast(pl.Int32))
    except PolarsError as error:
        raise diagnose_parse_error(path, read_header(path), converters, error, "utf8-lossy") from error
    typed = typed.with_columns(
        pl.col(c).str.strip_chars().cast(pl.Enum(sorted(typed[c].drop_nulls().str.strip_chars().unique().to_list())))
        for c in USER_CATEGORICAL_COLUMNS
    )
    users, dropped = _dedupe_by_id(path, typed, Columns.user)
    nulls = {c: n for c, n in users.null_count().row(0, named=True).items() if n}
    report = {"rows_read": raw.height, "dropped": dropped, "kept": users.height, "nulls": nulls}
    check_report(path.name, report)
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
            f"{format_examples(bad, column)}",
        )
    return parsed["_parsed"].alias(column)


def read_item_categories(path: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``item_categories.csv`` -> ``video_id`` i32, ``tags`` list[i8] (file order), ``n_tags`` i8."""
    raw = _read_side_csv(
        path,
        ITEM_CATEGORY_COLUMNS,
        {Columns.item: pl.Int64(), Columns.feat: pl.String()},
        {Columns.item: ("an int32 integer", as_int32)},
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
    check_report(path.name, report)
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
            converters[column] = ("a number", as_float)
        else:
            # Integers are parsed as floats: the real file writes counters with missing values
            # as "2.0" (pandas' float columns); they are checked to be whole numbers below.
            types[column] = pl.Float64()
            converters[column] = ("a number", as_float)
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
                path, f"column {column!r} must hold whole numbers; offending values: {format_examples(bad, column)}"
            )
    raw = raw.with_columns(pl.col(integers).cast(pl.Int64))

    upload = pl.col("upload_dt").str.strip_chars()
    typed = raw.with_row_index("_line", offset=2).with_columns(
        pl.col(Columns.item).cast(pl.Int32, strict=False).alias("_id"),  # int64 -> int32 range check
        yyyymmdd_text_to_date(pl.col(Columns.date).cast(pl.String)).alias("_date"),
        upload.str.to_date("%Y-%m-%d", strict=False).alias("_upload"),
    )
    for column, parsed in ((Columns.item, "_id"), (Columns.date, "_date"), ("upload_dt", "_upload")):
        bad = typed.filter(pl.col(column).is_not_null() & pl.col(parsed).is_null())
        if bad.height:
            raise InputDataError(path, f"column {column!r} has invalid values: {format_examples(bad, column)}")
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
    check_report(path.name, report)
    return daily, report


def read_social_network(path: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read ``social_network.csv`` -> ``user_id`` i32, ``friend_list`` list[i32], one row per user."""
    raw = _read_side_csv(
        path,
        SOCIAL_NETWORK_COLUMNS,
        {Columns.user: pl.Int64(), Columns.friend_list: pl.String()},
        {Columns.user: ("an int32 integer", as_int32)},
    )
    unique, dropped = _dedupe_by_id(path, raw, Columns.user)
    friends = _parse_int_list(path, unique, Columns.friend_list, pl.Int32())
    social = unique.select(pl.col(Columns.user).cast(pl.Int32)).with_columns(friends)
    report = {"rows_read": raw.height, "dropped": dropped, "kept": social.height}
    check_report(path.name, report)
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
        "big_matrix": count_true(joined, pl.col("_big").is_not_null()),
        "item_daily": count_true(joined, pl.col("_big").is_null() & pl.col("_daily").is_not_null()),
        "unknown": count_true(joined, pl.col("_big").is_null() & pl.col("_daily").is_null()),
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
    require_file(path)
    data = path.read_bytes().removeprefix(BOM).replace(b"\r\n", b"\n").replace(b"\r", b"")
    header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", errors="replace")]))
    check_columns(path, header, CAPTION_COLUMNS)
    ids = ("video_id", "first_level_category_id", "second_level_category_id", "third_level_category_id")
    schema = {c: (pl.Int32 if c in ids else pl.String) for c in header}
    try:
        frame = pl.read_csv(io.BytesIO(data), schema=schema, encoding="utf8-lossy")
    except PolarsError as error:
        raise InputDataError(path, f"could not parse: {str(error).splitlines()[0]}") from error
    return frame.select(CAPTION_COLUMNS)
