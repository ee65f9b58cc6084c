"""Stage ``prepare``: KuaiRec 2.0 CSVs -> typed, validated, cleaned parquet + a data-quality report.

:func:`prepare_all` reads the side tables (:mod:`reco.data.side_tables`), cleans both interaction
matrices one user range at a time (:mod:`reco.data.interactions`), adds the videos' durations and
writes every table atomically, returning the report of ``metrics/data_quality.json``. Unusable
data raises an :class:`~reco.errors.InputDataError` naming the file, column and example rows.
See docs/design/data.md and docs/bad-input.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from reco.data.interactions import PARTITION_ROWS, clean_interactions
from reco.data.raw_csv import check_report
from reco.data.side_tables import build_items, read_item_categories, read_item_daily, read_social_network, read_users
from reco.errors import InputDataError
from reco.io import write_parquet
from reco.progress import report as report_progress
from reco.schema import Columns, PreparedFiles, RawFiles

__all__ = ["prepare_all"]


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
        check_report(table, entry)
    return report
