"""The split in bounded memory: any partition size gives the same sets, files and summary.

``partition_rows`` is forced down to a few rows so that the multi-partition path (chunks of whole
users, per-chunk anti-join, holdout, first views and leakage checks, counts added up across
chunks) runs on small data, and every result is compared with the one-partition result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

import reco.data.split as split_module
from reco.data.split import SET_NAMES, SplitResult, split_interactions, write_split
from reco.errors import InputDataError
from reco.io import write_parquet
from reco.params import LabelParams, SplitParams, parse_section
from reco.schema import INTERACTION_SCHEMA, Columns, PreparedFiles

REPO = Path(__file__).resolve().parents[2]
ONE_PARTITION = 10**9
PREPARED_ORDER = [
    Columns.user, Columns.timestamp, Columns.item, Columns.date, Columns.play_duration, Columns.video_duration,
    Columns.watch_ratio,
]  # fmt: skip


def prepared_logs(
    seed: int = 0, n_users: int = 60, n_items: int = 40, n_views: int = 4_000
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A prepared-like big_matrix (sorted, re-watches, ties in time) and small_matrix (shares pairs with it)."""
    rng = np.random.default_rng(seed)
    durations = rng.choice([800, 5_000, 9_000, 12_000, 30_000, 95_000, 240_000], n_items).astype(np.int64)
    users = rng.integers(0, n_users, n_views)
    items = rng.integers(0, n_items, n_views)
    start = dt.datetime(2020, 7, 5, tzinfo=dt.UTC)
    seconds = rng.integers(0, 62 * 86_400, n_views)
    millis = rng.integers(0, 1000, n_views)
    # 200 views tied with another on (user, time, video) but watched for a different time
    for column in (users, items, seconds, millis):
        column[:200] = column[200:400]
    play = rng.integers(0, 60_000, n_views)
    play[rng.random(n_views) < 0.05] = 0
    times = [start + dt.timedelta(seconds=int(s), milliseconds=int(ms)) for s, ms in zip(seconds, millis, strict=True)]
    big = pl.DataFrame(
        {
            Columns.user: users,
            Columns.item: items,
            Columns.play_duration: play,
            Columns.video_duration: durations[items],
            Columns.timestamp: times,
            Columns.date: [(t + dt.timedelta(hours=8)).date() for t in times],
            Columns.watch_ratio: play / durations[items],
        }
    ).cast(dict(INTERACTION_SCHEMA))
    big = big.sort(PREPARED_ORDER, maintain_order=True)
    # small_matrix: the first 20 users x videos 25..39 (some of these pairs were also logged in big)
    cells = [(u, i) for u in range(20) for i in range(25, n_items)]
    small_rows = len(cells)
    small_times = [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 62 * 86_400, small_rows)]
    small_play = rng.integers(0, 60_000, small_rows)
    small = pl.DataFrame(
        {
            Columns.user: [u for u, _ in cells],
            Columns.item: [i for _, i in cells],
            Columns.play_duration: small_play,
            Columns.video_duration: durations[[i for _, i in cells]],
            Columns.timestamp: small_times,
            Columns.date: [(t + dt.timedelta(hours=8)).date() for t in small_times],
            Columns.watch_ratio: small_play / durations[[i for _, i in cells]],
        }
    ).cast(dict(INTERACTION_SCHEMA))
    # a few cells without a time, as in the real small_matrix
    small = small.with_columns(
        pl.when(pl.int_range(pl.len()) % 37 == 0)
        .then(None)
        .otherwise(pl.col(Columns.timestamp))
        .alias(Columns.timestamp)
    ).sort(PREPARED_ORDER, nulls_last=True, maintain_order=True)
    return big, small


BIG, SMALL = prepared_logs()

VARIANTS = {
    "holdout-threshold": ({}, {}),
    "holdout-debiased": ({"holdout_fraction": 0.3, "seed": 5}, {"kind": "duration_debiased", "duration_buckets": 4}),
    "last_days-threshold": ({"ranker_labels": "last_days", "label_window_days": 9}, {"threshold": 1.0}),
    "last_days-debiased": (
        {"ranker_labels": "last_days", "label_window_days": 20},
        {"kind": "duration_debiased", "debiased_quantile": 0.8},
    ),
    "temporal": ({"protocol": "temporal", "temporal_test_fraction": 0.3}, {"threshold": 1.0}),
}


def params(variant: str) -> tuple[SplitParams, LabelParams]:
    split, label = VARIANTS[variant]
    return parse_section("split", split), parse_section("label", label)


def assert_same_split(a: SplitResult, b: SplitResult) -> None:
    for name in SET_NAMES:
        assert a.sets()[name].equals(b.sets()[name]), name
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_any_partition_size_gives_the_same_sets_and_summary(variant: str) -> None:
    split, label = params(variant)
    whole = split_interactions(BIG, SMALL, split, label, partition_rows=ONE_PARTITION)
    assert whole.train.height > 0 and whole.ranker_labels.height > 0 and whole.test.height > 0
    for partition_rows in (13, 500):
        assert_same_split(split_interactions(BIG, SMALL, split, label, partition_rows=partition_rows), whole)


@pytest.mark.parametrize("variant", ["holdout-debiased", "last_days-threshold"])
def test_one_row_partitions_give_the_same_split(variant: str) -> None:
    big, small = prepared_logs(seed=1, n_users=25, n_items=30, n_views=500)
    split, label = params(variant)
    # every window holds one row: each chunk is one user, gathered over several windows
    assert_same_split(
        split_interactions(big, small, split, label, partition_rows=1),
        split_interactions(big, small, split, label, partition_rows=ONE_PARTITION),
    )


@pytest.mark.parametrize("variant", ["holdout-threshold", "last_days-debiased"])
def test_partitioned_split_keeps_the_contract(variant: str) -> None:
    split, label = params(variant)
    result = split_interactions(BIG, SMALL, split, label, partition_rows=7)
    test_pairs = set(SMALL.select(Columns.user, Columns.item).iter_rows())
    removed = BIG.join(SMALL.select(Columns.user, Columns.item).unique(), on=[Columns.user, Columns.item], how="semi")
    assert removed.height > 0  # the fixture does share pairs with small_matrix
    assert result.train.height == BIG.height - removed.height
    for frame in (result.train, result.history, result.ranker_labels):
        assert not set(frame.select(Columns.user, Columns.item).iter_rows()) & test_pairs
    assert result.train.equals(result.train.sort(Columns.user, Columns.timestamp, Columns.item, maintain_order=True))
    assert result.ranker_labels.equals(result.ranker_labels.sort(Columns.user, Columns.item))
    assert result.summary["rows"]["train"] == result.train.height
    assert result.summary["users"]["train"] == result.train[Columns.user].n_unique()
    assert result.summary["items"]["train"] == result.train[Columns.item].n_unique()
    assert result.summary["positive_rate"]["ranker_labels"] == float(result.ranker_labels[Columns.label].mean())


def test_unsorted_input_is_sorted_in_memory_and_refused_from_a_file(tmp_path: Path) -> None:
    split, label = params("holdout-threshold")
    shuffled = BIG.sample(fraction=1.0, shuffle=True, seed=3)
    # in memory the frame is sorted first; only rows tied on (user, time, video) may come out in another order
    assert (
        split_interactions(shuffled, SMALL, split, label, partition_rows=50).summary
        == split_interactions(BIG, SMALL, split, label).summary
    )
    shuffled.write_parquet(tmp_path / "big.parquet")
    with pytest.raises(InputDataError, match="sorted by user_id"):
        split_interactions(pl.scan_parquet(tmp_path / "big.parquet"), SMALL, split, label, partition_rows=50)


@pytest.mark.parametrize("variant", ["holdout-debiased", "last_days-threshold", "temporal"])
def test_written_files_are_the_bytes_of_the_in_memory_sets_for_any_partition_size(variant: str, tmp_path: Path) -> None:
    split, label = params(variant)
    BIG.write_parquet(tmp_path / "big.parquet", row_group_size=300)
    expected = split_interactions(BIG, SMALL, split, label)
    for name, frame in expected.sets().items():  # what the unchunked stage wrote: write_parquet of each set
        write_parquet(frame, tmp_path / "expected" / f"{name}.parquet")
    for partition_rows in (ONE_PARTITION, 11):
        out = tmp_path / f"split-{partition_rows}"
        out.mkdir()
        summary = write_split(
            pl.scan_parquet(tmp_path / "big.parquet"), SMALL, split, label, out, partition_rows=partition_rows
        )
        assert summary == expected.summary
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in SET_NAMES)  # no scratch
        for name in SET_NAMES:
            assert (out / f"{name}.parquet").read_bytes() == (tmp_path / "expected" / f"{name}.parquet").read_bytes()


# --- the stage: atomic output, same bytes for any thread count ----------------------------------


def stage_folder(tmp_path: Path) -> Path:
    """A working folder with params.yaml and data/prepared for ``python -m stages.split``."""
    work = tmp_path / "work"
    (work / "data" / "prepared").mkdir(parents=True)
    params_yaml = yaml.safe_load((REPO / "params.yaml").read_text())
    params_yaml["label"]["kind"] = "duration_debiased"
    (work / "params.yaml").write_text(yaml.safe_dump(params_yaml))
    BIG.write_parquet(work / "data" / "prepared" / PreparedFiles.big, row_group_size=500)
    SMALL.write_parquet(work / "data" / "prepared" / PreparedFiles.small)
    return work


def test_stage_failure_in_the_middle_leaves_no_output_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stages import split as stage

    work = stage_folder(tmp_path)
    monkeypatch.chdir(work)
    monkeypatch.setattr(split_module, "PARTITION_ROWS", 500)
    calls = []
    cut_chunk = split_module._Splitter._split_chunk

    def failing_split_chunk(self: split_module._Splitter, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:  # two chunks already appended to the files
            raise RuntimeError("killed in the middle")
        return cut_chunk(self, *args, **kwargs)

    monkeypatch.setattr(split_module._Splitter, "_split_chunk", failing_split_chunk)
    with pytest.raises(RuntimeError, match="killed in the middle"):
        stage.main()
    assert len(calls) == 3
    assert not (work / "data" / "split").exists() and not (work / "metrics").exists()
    assert sorted(p.name for p in (work / "data").iterdir()) == ["prepared"]  # no temporary left

    monkeypatch.setattr(split_module._Splitter, "_split_chunk", cut_chunk)
    stage.main()
    assert sorted(p.name for p in (work / "data" / "split").iterdir()) == sorted(f"{n}.parquet" for n in SET_NAMES)
    assert (
        json.loads((work / "metrics" / "split_summary.json").read_text())["label_rule"]["kind"] == "duration_debiased"
    )
    assert sorted(p.name for p in (work / "data").iterdir()) == ["prepared", "split"]


RUN_STAGE_IN_CHUNKS = "import reco.data.split as s; s.PARTITION_ROWS = 700; from stages.split import main; main()"


def test_stage_in_chunks_writes_the_bytes_of_the_in_memory_split(tmp_path: Path) -> None:
    work = stage_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", RUN_STAGE_IN_CHUNKS], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    written_params = yaml.safe_load((work / "params.yaml").read_text())
    split, label = parse_section("split", written_params["split"]), parse_section("label", written_params["label"])
    expected = split_interactions(BIG, SMALL, split, label, partition_rows=ONE_PARTITION)
    for name, frame in expected.sets().items():
        write_parquet(frame, tmp_path / "expected" / f"{name}.parquet")
        written = work / "data" / "split" / f"{name}.parquet"
        assert written.read_bytes() == (tmp_path / "expected" / f"{name}.parquet").read_bytes(), name
    summary = json.loads((work / "metrics" / "split_summary.json").read_text())
    assert summary == json.loads(json.dumps(expected.summary))


# --- the streamed writer: write_parquet's bytes, several row groups ---------------------------


@pytest.mark.parametrize("n_rows", [0, 1, 61_441, 184_319, 400_000])
def test_streamed_writer_gives_write_parquet_bytes_whatever_the_chunks(n_rows: int, tmp_path: Path) -> None:
    from reco.io import StreamedParquetWriter, polars_row_group_sizes

    rng = np.random.default_rng(n_rows)
    frame = pl.DataFrame(
        {
            Columns.user: np.sort(rng.integers(0, 5_000, n_rows)).astype(np.int32),
            Columns.item: rng.integers(-5, 3_000, n_rows).astype(np.int32),
            Columns.watch_ratio: rng.gamma(1.0, 1.5, n_rows).astype(np.float32),
            Columns.label: rng.random(n_rows) < 0.2,
        }
    )
    write_parquet(frame, tmp_path / "whole.parquet")
    writer = StreamedParquetWriter(tmp_path / "streamed.parquet", tmp_path)
    cuts = sorted({0, n_rows, *rng.integers(0, n_rows + 1, 6).tolist()})
    writer.write(frame.head(0))  # an empty chunk first, as a chunk without training rows gives
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        writer.write(frame.slice(start, stop - start))
    writer.close()
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.parquet", "whole.parquet"]  # scratch removed
    if n_rows >= 184_319:  # the file has several row groups, cut where write_parquet cuts them
        assert len(polars_row_group_sizes(n_rows)) > 1


def test_stage_writes_the_same_bytes_with_one_or_two_threads(tmp_path: Path) -> None:
    work = stage_folder(tmp_path)
    digests = []
    for threads in ("1", "2"):
        env = {**os.environ, "POLARS_MAX_THREADS": threads, "PYTHONPATH": str(REPO)}
        run = subprocess.run(
            [sys.executable, "-c", RUN_STAGE_IN_CHUNKS], cwd=work, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        files = [
            *(work / "data" / "split" / f"{name}.parquet" for name in SET_NAMES),
            work / "metrics" / "split_summary.json",
        ]
        digests.append([path.read_bytes() for path in files])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("n_rows", [184_319, 11_562_802])
def test_row_group_sizes_do_not_depend_on_the_thread_count(n_rows: int) -> None:
    code = f"from reco.io import polars_row_group_sizes as f; print(f({n_rows}))"
    printed = set()
    for threads in ("1", "3"):
        env = {**os.environ, "POLARS_MAX_THREADS": threads, "PYTHONPATH": str(REPO)}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        printed.add(run.stdout)
    assert len(printed) == 1 and sum(json.loads(printed.pop())) == n_rows
