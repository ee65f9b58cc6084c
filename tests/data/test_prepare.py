"""Tests of the prepare stage: typing, validation messages, cleaning counts, determinism.

Raw folders are built in ``tmp_path`` from the real KuaiRec side files (copied at test time) plus
small hand-written CSVs whose numbers of duplicates, NaN, inf, negative and zero values are known.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from reco.data.interactions import INTERACTION_DROP_REASONS
from reco.data.prepare import prepare_all
from reco.data.side_tables import read_caption_categories
from reco.errors import InputDataError
from reco.schema import (
    INTERACTION_COLUMNS,
    INTERACTION_SCHEMA,
    ITEM_DAILY_COLUMNS,
    USER_CATEGORICAL_COLUMNS,
    Columns,
    PreparedFiles,
    RawFiles,
)

HEADER = ",".join(INTERACTION_COLUMNS)
REAL_CAPTION_ROWS = 10_728  # PROVENANCE.md: video_id 0..10727, 10 columns
REAL_ONEHOT4_NULLS = 201  # PROVENANCE-checked count of empty onehot_feat4 cells in user_features.csv


def _row(
    user: int, video: int, play: str, duration: str, ts: str, date: str = "20200705", ratio: str | None = None
) -> str:
    """One interaction line; ``ratio`` defaults to play / duration like the real file."""
    if ratio is None:
        ratio = repr(float(play) / float(duration))
    return f"{user},{video},{play},{duration},2020-07-05 00:00:00.000,{date},{ts},{ratio}"


def _small_matrix_lines() -> list[str]:
    """A small_matrix with known defects: 2 extra duplicates, 3 null timestamps (kept), 1 inf ratio."""
    good = [
        _row(u, v, "5000", "10000", f"{1593878903 + 60 * (u * 10 + v)}.5", "20200705.0")
        for u in range(3)
        for v in range(4)
    ]
    return [
        HEADER,
        *good,
        good[0],
        good[5],  # 2 exact duplicates
        "3,1,4000,8000,,,,0.5",  # null time fields: kept in small_matrix
        "3,2,4000,8000,,,,0.5",
        "4,3,4000,8000,,,,0.5",
        _row(4, 4, "4000", "8000", "1593978903.0", "20200706.0", ratio="inf"),
    ]


def _item_daily_lines(video_ids: list[int]) -> list[str]:
    """item_daily_features rows: integer counters (some written as '2.0'), empty trailing counters."""
    lines = [",".join(ITEM_DAILY_COLUMNS)]
    for video in video_ids:
        for day in (5, 6):
            values: dict[str, str] = {c: "1" for c in ITEM_DAILY_COLUMNS}
            values |= {
                "video_id": str(video),
                "date": f"2020070{day}",
                "video_type": "NORMAL",
                "upload_dt": "2020-03-30",
                "upload_type": "ShortImport",
                "visible_status": "public",
                "video_duration": f"{1000 * (video + 5)}.0",
                "video_tag_name": '"a, b"',  # quoted comma: must not count as a field separator
                "play_progress": "0.75",
                "show_cnt": "14665",
                "collect_cnt": "2.0",
                "cancel_collect_user_num": "",
            }
            lines.append(",".join(values[c] for c in ITEM_DAILY_COLUMNS))
    return lines


def _write(path: Path, lines: list[str], *, bom: bool = False, crlf: bool = False) -> None:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


@pytest.fixture()
def raw_dir(tmp_path: Path, kuairec_real_dir: Path) -> Path:
    """A complete raw folder: real side files, the real big_matrix head, hand-made small files."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(kuairec_real_dir / RawFiles.user_features, raw / RawFiles.user_features)
    shutil.copy(kuairec_real_dir / RawFiles.item_categories, raw / RawFiles.item_categories)
    shutil.copy(kuairec_real_dir / "samples" / "big_matrix_1000.csv", raw / RawFiles.big_matrix)
    _write(raw / RawFiles.small_matrix, _small_matrix_lines())
    _write(raw / RawFiles.item_daily_features, _item_daily_lines([0, 1, 2]))
    _write(raw / RawFiles.social_network, [f"{Columns.user},{Columns.friend_list}", '0,"[1, 2]"', "5,[3]", "7,[]"])
    return raw


def _big_with_defects(raw: Path) -> dict[str, int]:
    """Append rows with known defects to the real big_matrix head; return the expected counts."""
    lines = (raw / RawFiles.big_matrix).read_text().splitlines()
    header, body = lines[0], lines[1:]
    extra = [
        *body[:3],  # 3 exact duplicates
        body[10],  # its copy below makes it 2 extra copies in total for this row
        body[10],
        "0,5,1000,2000,,20200705,,0.5",  # null timestamp
        "0,6,1000,2000,2020-07-05 01:00:00.000,20200705,1593882000.0,",  # empty watch_ratio -> null
        _row(0, 7, "1000", "2000", "1593882001.0", ratio="NaN"),
        _row(0, 8, "1000", "2000", "1593882002.0", ratio="inf"),
        _row(0, 9, "1000", "2000", "1593882003.0", ratio="-0.5"),
        _row(0, 10, "0", "0", "1593882004.0", ratio="0.0"),  # zero duration
        _row(0, 11, "500", "-1000", "1593882005.0", ratio="0.5"),  # negative duration
        _row(99_999, 12, "500", "1000", "1593882006.0"),  # unknown user (1 row of ~1000 < 1 %)
    ]
    (raw / RawFiles.big_matrix).write_text("\n".join([header, *body, *extra]) + "\n")
    return {
        "rows_read": len(body) + len(extra),
        "exact_duplicate": 5,
        "null_timestamp": 1,
        "invalid_watch_ratio": 4,
        "non_positive_duration": 2,
        "invalid_play_duration": 0,
        "unknown_id": 1,
    }


def _messages(raw: Path, tmp_path: Path) -> str:
    with pytest.raises(InputDataError) as info:
        prepare_all(raw, tmp_path / "out")
    return str(info.value)


# ----------------------------------------------------------------------------------------------
# Happy path: dtypes, counts, invariants
# ----------------------------------------------------------------------------------------------


def test_prepare_writes_typed_tables(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare_all(raw_dir, out)

    for name in (PreparedFiles.big, PreparedFiles.small):
        frame = pl.read_parquet(out / name)
        assert frame.schema == INTERACTION_SCHEMA
        assert Columns.time not in frame.columns
        keys = frame.select(Columns.user, Columns.timestamp, Columns.item)
        assert keys.equals(keys.sort(Columns.user, Columns.timestamp, Columns.item, nulls_last=True))

    big = pl.read_parquet(out / PreparedFiles.big)
    assert big.height == 1000 == report["big_matrix"]["kept"]
    # timestamp 1593878903.438 s and date 20200705 of the sample's first line, to the millisecond
    first = big.filter((pl.col(Columns.item) == 3649) & (pl.col(Columns.play_duration) == 13838))
    assert first[Columns.timestamp].dt.epoch("ms").item() == 1_593_878_903_438
    assert str(first[Columns.date].item()) == "2020-07-05"

    users = pl.read_parquet(out / PreparedFiles.users)
    assert users.height == 7176 and users[Columns.user].dtype == pl.Int32
    for column in USER_CATEGORICAL_COLUMNS:
        dtype = users.schema[column]
        assert isinstance(dtype, pl.Enum)
        assert list(dtype.categories) == sorted(dtype.categories)  # codes depend on the data only
    assert users.schema["onehot_feat4"] == pl.Int32
    assert users["onehot_feat4"].null_count() == REAL_ONEHOT4_NULLS == report["user_features"]["nulls"]["onehot_feat4"]

    items = pl.read_parquet(out / PreparedFiles.items)
    assert items.schema == pl.Schema(
        {Columns.item: pl.Int32, Columns.tags: pl.List(pl.Int8), "n_tags": pl.Int8, Columns.video_duration: pl.Int32}
    )
    assert items.height == 10_728
    assert items.filter(pl.col(Columns.item) == 1)[Columns.tags].item().to_list() == [27, 9]  # '"[27, 9]"', order kept
    assert (items["n_tags"] == items[Columns.tags].list.len()).all()

    daily = pl.read_parquet(out / PreparedFiles.item_daily)
    assert "video_tag_name" not in daily.columns
    assert daily.schema[Columns.date] == pl.Date and daily.schema["upload_dt"] == pl.Date
    assert daily.schema["collect_cnt"] == pl.Int64 and daily["collect_cnt"].to_list() == [2] * 6
    assert daily.schema["video_duration"] == pl.Float32 and daily.schema["video_type"] == pl.String
    assert daily["cancel_collect_user_num"].null_count() == daily.height

    social = pl.read_parquet(out / PreparedFiles.social)
    assert social.schema == pl.Schema({Columns.user: pl.Int32, Columns.friend_list: pl.List(pl.Int32)})
    assert social[Columns.friend_list].to_list() == [[1, 2], [3], []]


def test_item_video_duration_prefers_big_matrix_then_item_daily(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare_all(raw_dir, out)
    items = pl.read_parquet(out / PreparedFiles.items)
    big = pl.read_csv(raw_dir / RawFiles.big_matrix)
    median_3649 = big.filter(pl.col(Columns.item) == 3649)[Columns.video_duration].median()
    assert items.filter(pl.col(Columns.item) == 3649)[Columns.video_duration].item() == round(median_3649)
    # video 1 is not in the big_matrix head, but in item_daily (duration 6000 ms)
    assert 1 not in big[Columns.item].to_list()
    assert items.filter(pl.col(Columns.item) == 1)[Columns.video_duration].item() == 6000
    sources = report["item_categories"]["video_duration_source"]
    assert sources["big_matrix"] == big[Columns.item].n_unique()
    assert sum(sources.values()) == items.height
    assert sources["unknown"] == items[Columns.video_duration].null_count()


def test_cleaning_counts_each_reason(raw_dir: Path, tmp_path: Path) -> None:
    expected = _big_with_defects(raw_dir)
    report = prepare_all(raw_dir, tmp_path / "out")
    big = report["big_matrix"]
    assert big["rows_read"] == expected["rows_read"]
    assert set(big["dropped"]) == set(INTERACTION_DROP_REASONS)
    for reason in INTERACTION_DROP_REASONS:
        assert big["dropped"][reason] == expected[reason], reason
    assert big["kept"] == 1000

    small = report["small_matrix"]
    assert small["rows_read"] == 12 + 2 + 3 + 1
    assert small["dropped"]["exact_duplicate"] == 2
    assert small["dropped"]["null_timestamp"] == 0
    assert small["null_timestamp_kept"] == 3
    assert small["dropped"]["invalid_watch_ratio"] == 1
    frame = pl.read_parquet(tmp_path / "out" / PreparedFiles.small)
    assert frame[Columns.timestamp].null_count() == 3
    assert frame[Columns.timestamp].tail(3).null_count() == 3  # null timestamps sort last per user
    assert frame[Columns.date].drop_nulls().unique().to_list() == [dt.date(2020, 7, 5)]  # from "20200705.0"


def test_report_invariant_holds_for_every_table(raw_dir: Path, tmp_path: Path) -> None:
    _big_with_defects(raw_dir)
    report = prepare_all(raw_dir, tmp_path / "out")
    assert set(report) == {
        "big_matrix", "small_matrix", "user_features", "item_categories", "item_daily_features", "social_network"
    }  # fmt: skip
    for table, entry in report.items():
        assert entry["rows_read"] - sum(entry["dropped"].values()) == entry["kept"], table
        assert all(isinstance(n, int) and n >= 0 for n in entry["dropped"].values()), table


def test_two_runs_give_identical_bytes(raw_dir: Path, tmp_path: Path) -> None:
    _big_with_defects(raw_dir)
    first, second = tmp_path / "a", tmp_path / "b"
    report_a = prepare_all(raw_dir, first)
    report_b = prepare_all(raw_dir, second)
    assert report_a == report_b
    names = sorted(p.name for p in first.glob("*.parquet"))
    assert names == sorted(vars(PreparedFiles)[k] for k in ("big", "small", "users", "items", "item_daily", "social"))
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_bom_and_crlf_are_tolerated(raw_dir: Path, tmp_path: Path) -> None:
    plain = prepare_all(raw_dir, tmp_path / "plain")
    for name in RawFiles.required:
        lines = (raw_dir / name).read_text(encoding="utf-8").splitlines()
        _write(raw_dir / name, lines, bom=True, crlf=True)
    assert (raw_dir / RawFiles.big_matrix).read_bytes().startswith(b"\xef\xbb\xbfuser_id,")
    report = prepare_all(raw_dir, tmp_path / "bom")
    assert report == plain
    for name in (PreparedFiles.big, PreparedFiles.users, PreparedFiles.items, PreparedFiles.social):
        assert pl.read_parquet(tmp_path / "bom" / name).equals(pl.read_parquet(tmp_path / "plain" / name)), name


def test_date_is_derived_from_timestamp_when_missing(raw_dir: Path, tmp_path: Path) -> None:
    lines = _small_matrix_lines()
    # 2020-07-05 17:00:00 UTC is 2020-07-06 01:00 in UTC+8, the logs' local time
    lines.append("5,1,4000,8000,,,1593968400.0,0.5")
    _write(raw_dir / RawFiles.small_matrix, lines)
    report = prepare_all(raw_dir, tmp_path / "out")
    assert report["small_matrix"]["date_from_timestamp"] == 1
    small = pl.read_parquet(tmp_path / "out" / PreparedFiles.small)
    assert str(small.filter(pl.col(Columns.user) == 5)[Columns.date].item()) == "2020-07-06"


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def test_real_caption_file_with_stray_cr_parses(kuairec_real_dir: Path) -> None:
    path = kuairec_real_dir / RawFiles.caption_category
    assert path.read_bytes().count(b"\r") == 4  # the known stray CRs are still in the fixture
    captions = read_caption_categories(path)
    assert captions.shape == (REAL_CAPTION_ROWS, 10)
    assert captions["video_id"].to_list() == list(range(REAL_CAPTION_ROWS))
    assert not captions["caption"].drop_nulls().str.contains("\r").any()


def test_caption_file_with_bom_and_crlf_parses(kuairec_real_dir: Path, tmp_path: Path) -> None:
    data = (kuairec_real_dir / RawFiles.caption_category).read_bytes()
    path = tmp_path / RawFiles.caption_category
    path.write_bytes(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    converted = read_caption_categories(path)
    assert converted.equals(read_caption_categories(kuairec_real_dir / RawFiles.caption_category))


# ----------------------------------------------------------------------------------------------
# Validation errors: file, column and offending values are named
# ----------------------------------------------------------------------------------------------


def test_missing_file_is_named_with_its_folder(raw_dir: Path, tmp_path: Path) -> None:
    (raw_dir / RawFiles.social_network).unlink()
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.social_network in message and str(raw_dir) in message


def test_renamed_column_lists_expected_and_found(raw_dir: Path, tmp_path: Path) -> None:
    path = raw_dir / RawFiles.big_matrix
    path.write_text(path.read_text().replace("watch_ratio", "watchratio", 1))
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.big_matrix in message
    assert "missing column(s) ['watch_ratio']" in message and "'watchratio'" in message


def test_text_in_watch_ratio_shows_offending_values(raw_dir: Path, tmp_path: Path) -> None:
    lines = _small_matrix_lines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
    lines[7] = lines[7].rsplit(",", 1)[0] + ",n/a"
    _write(raw_dir / RawFiles.small_matrix, lines)
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.small_matrix in message and "'watch_ratio'" in message
    assert "line 4: 'abc'" in message and "line 8: 'n/a'" in message and "2 row(s)" in message


def test_out_of_range_id_is_reported(raw_dir: Path, tmp_path: Path) -> None:
    lines = _small_matrix_lines()
    lines.append(_row(1, 99_999_999_999, "1", "2", "1593878903.0"))
    _write(raw_dir / RawFiles.small_matrix, lines)
    message = _messages(raw_dir, tmp_path)
    assert "'video_id'" in message and "'99999999999'" in message


def test_invalid_date_is_reported(raw_dir: Path, tmp_path: Path) -> None:
    lines = _small_matrix_lines()
    lines.append(_row(1, 1, "1", "2", "1593878903.0", date="20201345"))
    _write(raw_dir / RawFiles.small_matrix, lines)
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.small_matrix in message and "'date'" in message and "'20201345'" in message


def test_too_many_unknown_ids_are_refused(raw_dir: Path, tmp_path: Path) -> None:
    lines = _small_matrix_lines()
    lines += [_row(50_000 + i, 1, "1", "2", f"{1593878903 + i}.0") for i in range(3)]
    _write(raw_dir / RawFiles.small_matrix, lines)
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.small_matrix in message and RawFiles.user_features in message
    assert "user_id=50000" in message


def test_empty_matrix_after_cleaning_is_refused(raw_dir: Path, tmp_path: Path) -> None:
    _write(raw_dir / RawFiles.small_matrix, [HEADER, _row(1, 1, "1", "0", "1593878903.0", ratio="inf")])
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.small_matrix in message and "no rows left" in message


def test_row_with_a_lost_comma_is_refused(raw_dir: Path, tmp_path: Path) -> None:
    lines = _item_daily_lines([0, 1])
    lines[2] = lines[2].replace(",NORMAL,", ",NORMAL", 1)
    _write(raw_dir / RawFiles.item_daily_features, lines)
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.item_daily_features in message and "line 3" in message
    assert f"{len(ITEM_DAILY_COLUMNS)} fields" in message


def test_real_damaged_item_daily_sample_is_refused(raw_dir: Path, kuairec_real_dir: Path, tmp_path: Path) -> None:
    damaged = kuairec_real_dir / "samples" / "damaged" / "item_daily_features_sample.csv"
    shutil.copy(damaged, raw_dir / RawFiles.item_daily_features)
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.item_daily_features in message and "272 line(s)" in message


def test_bad_tag_list_is_reported(raw_dir: Path, tmp_path: Path) -> None:
    path = raw_dir / RawFiles.item_categories
    path.write_text(path.read_text().replace('1,"[27, 9]"', '1,"[27, x]"', 1))
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.item_categories in message and "'feat'" in message and "'[27, x]'" in message


def test_conflicting_rows_for_one_user_are_refused(raw_dir: Path, tmp_path: Path) -> None:
    path = raw_dir / RawFiles.user_features
    lines = path.read_text().splitlines()
    lines.append(lines[1].replace("high_active", "full_active", 1))
    path.write_text("\n".join(lines) + "\n")
    message = _messages(raw_dir, tmp_path)
    assert RawFiles.user_features in message and "'user_id'" in message and "[0]" in message
