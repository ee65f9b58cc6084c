"""Tests of prepare's bounded-memory path: the interaction matrices are cleaned by ``user_id`` range.

The partition size only bounds the memory: the tables and the report must be exactly those of a
single partition, whatever the size. Tiny ``partition_rows`` force many partitions (and the exact
re-split of the first, estimated ones) on small data. A failure in the middle must leave neither
an output nor a temporary file behind.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from types import ModuleType

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco.data import interactions, side_tables
from reco.data.prepare import prepare_all
from reco.errors import InputDataError
from reco.schema import INTERACTION_COLUMNS, INTERACTION_SCHEMA, Columns, PreparedFiles, RawFiles
from tests.data.test_prepare import _item_daily_lines, _small_matrix_lines, _write

HEADER = ",".join(INTERACTION_COLUMNS)
KNOWN_USERS = (0, 1, 2, 3, 7, 42, 100, 555, 1000, 1001, 2500, 3333, 4000, 5000, 6000, 7000, 7175)


def _shuffled_matrix_lines(seed: int, *, n_unknown: int = 2) -> list[str]:
    """A big_matrix of many users in random order, with every kind of defect spread over the users.

    Ties on (user, timestamp) and on (user, timestamp, video) exercise the full sort order;
    exact duplicates sit far apart in the file; rows without a user_id (and a duplicated one)
    and ``n_unknown`` rows of an unknown user are unknown ids.
    """
    rng = random.Random(seed)
    body = []
    for user in KNOWN_USERS:
        for _ in range(rng.randint(5, 60)):
            video = rng.randrange(0, 10_728)
            duration = rng.choice(["8000", "12000.0", "30500", "0", "-5"])
            play = rng.choice(["4000", "15000.5", "-1", "", "1e12"])
            ts = rng.choice([f"{1_593_878_903 + rng.randrange(5_000)}.{rng.randrange(1000):03d}", "", "1593878999.5"])
            date = rng.choice(["20200705", "", "20200706.0"])
            ratio = rng.choice(["0.5", "1.25", "0", "NaN", "-0.5", "inf", ""])
            body.append(f"{user},{video},{play},{duration},2020-07-05 00:00:00.000,{date},{ts},{ratio}")
        # Same user and timestamp, videos in reverse order; then the same video twice, other play
        body.append(f"{user},20,4000,8000,,20200705,1593878000.0,0.5")
        body.append(f"{user},10,4000,8000,,20200705,1593878000.0,0.5")
        body.append(f"{user},10,3000,8000,,20200705,1593878000.0,0.375")
    body += rng.sample(body, 40)  # exact duplicates
    body += [",5,4000,8000,,20200705,1593878000.0,0.5"] * 2  # null user_id, duplicated
    body += [f"99999,{v},4000,8000,,20200705,1593878000.0,0.5" for v in range(n_unknown)]
    rng.shuffle(body)
    return [HEADER, *body]


@pytest.fixture()
def raw_dir(tmp_path: Path, kuairec_real_dir: Path) -> Path:
    """Real side files, shuffled many-user matrices, hand-made item_daily and social network."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(kuairec_real_dir / RawFiles.user_features, raw / RawFiles.user_features)
    shutil.copy(kuairec_real_dir / RawFiles.item_categories, raw / RawFiles.item_categories)
    _write(raw / RawFiles.big_matrix, _shuffled_matrix_lines(seed=1))
    _write(raw / RawFiles.small_matrix, _small_matrix_lines() + _shuffled_matrix_lines(seed=2)[1:])
    _write(raw / RawFiles.item_daily_features, _item_daily_lines([0, 1, 2]))
    _write(raw / RawFiles.social_network, [f"{Columns.user},{Columns.friend_list}", '0,"[1, 2]"', "5,[3]"])
    return raw


class _CallCounter:
    """Wrap a function of a module that :func:`prepare_all` uses; count the calls, optionally fail at the n-th."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, fail_at: int | None = None
    ) -> None:
        self.calls = 0
        self._wrapped = getattr(module, name)
        self._fail_at = fail_at
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.calls == self._fail_at:
            raise RuntimeError(f"injected failure at call {self.calls}")
        return self._wrapped(*args, **kwargs)


def _everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ----------------------------------------------------------------------------------------------
# Same output for every partition size
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partition_rows", [1, 9, 120])
def test_partition_size_changes_nothing(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partition_rows: int
) -> None:
    whole = prepare_all(raw_dir, tmp_path / "whole")  # one partition per matrix at this size
    partitions = _CallCounter(monkeypatch, interactions, "_clean_partition")
    resplits = _CallCounter(monkeypatch, interactions, "_exact_ranges")
    split = prepare_all(raw_dir, tmp_path / "split", partition_rows=partition_rows)

    assert partitions.calls > 2  # the multi-partition path did run, for both matrices
    if partition_rows < 100:
        assert resplits.calls > 0  # and some estimated ranges were split again exactly
    assert split == whole
    big = whole["big_matrix"]
    # the null-user pair counts once as a duplicate and once as unknown, with the 2 unknown users
    assert big["dropped"]["exact_duplicate"] >= 40 and big["dropped"]["unknown_id"] == 1 + 2
    for name in (PreparedFiles.big, PreparedFiles.small):
        expected = pl.read_parquet(tmp_path / "whole" / name)
        found = pl.read_parquet(tmp_path / "split" / name)
        assert found.schema == INTERACTION_SCHEMA
        assert found.equals(expected), name
    for name in (PreparedFiles.users, PreparedFiles.items, PreparedFiles.item_daily, PreparedFiles.social):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert _everything_in(tmp_path / "split") == _everything_in(tmp_path / "whole")  # no temporaries left


def test_partitioned_output_bytes_are_stable(raw_dir: Path, tmp_path: Path) -> None:
    prepare_all(raw_dir, tmp_path / "a", partition_rows=40)
    prepare_all(raw_dir, tmp_path / "b", partition_rows=40)
    for name in (PreparedFiles.big, PreparedFiles.small):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert pq.ParquetFile(tmp_path / "a" / PreparedFiles.big).metadata.num_row_groups > 1  # a group per partition


@pytest.mark.parametrize("n_unknown", [0, 40])
def test_refusals_do_not_depend_on_partitions(raw_dir: Path, tmp_path: Path, n_unknown: int) -> None:
    if n_unknown:  # more than 1 % unknown ids, spread over many partitions: the same examples
        _write(raw_dir / RawFiles.big_matrix, _shuffled_matrix_lines(seed=1, n_unknown=n_unknown))
    else:  # nothing left after cleaning
        lines = [HEADER] + [f"{u},1,1,0,,20200705,1593878903.0,inf" for u in KNOWN_USERS for _ in range(3)]
        _write(raw_dir / RawFiles.big_matrix, lines)
    messages = []
    for partition_rows in (interactions.PARTITION_ROWS, 1, 40):
        with pytest.raises(InputDataError) as info:
            prepare_all(raw_dir, tmp_path / f"out{partition_rows}", partition_rows=partition_rows)
        messages.append(str(info.value))
        assert _everything_in(tmp_path / f"out{partition_rows}") == []
    assert messages[0] == messages[1] == messages[2]
    assert ("user_id=None" in messages[0]) if n_unknown else ("no rows left" in messages[0])


# ----------------------------------------------------------------------------------------------
# Failures leave nothing behind
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "function", "fail_at"),
    [
        (interactions, "_clean_partition", 2),  # while cleaning the second partition of big_matrix
        (interactions, "_sink_ranges", 2),  # while splitting an oversized partition again
        (side_tables, "_median_by_video", 1),  # after both matrices were written
    ],
)
def test_failure_in_the_middle_leaves_no_output(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: ModuleType, function: str, fail_at: int
) -> None:
    _CallCounter(monkeypatch, module, function, fail_at=fail_at)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected failure"):
        prepare_all(raw_dir, out, partition_rows=40)
    left = _everything_in(out)
    assert not [name for name in left if name.startswith(".")], left  # no temporaries
    if function != "_median_by_video":
        assert left == []  # big_matrix is written only once all its partitions are


def test_failure_while_writing_a_partition_leaves_no_output(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_table = pq.ParquetWriter.write_table
    calls = []

    def failing_write_table(self: pq.ParquetWriter, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("injected: disk full")
        real_write_table(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write_table)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        prepare_all(raw_dir, out, partition_rows=40)
    assert _everything_in(out) == []


def test_temporaries_of_a_killed_run_are_swept(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead_pid = 2**22 + 1  # above Linux's largest pid: no such process
    stale = out / f".{PreparedFiles.big}.{dead_pid}.abc123.tmp"
    stale.mkdir(parents=True)
    (stale / "partition-00000.parquet").write_bytes(b"half written")
    prepare_all(raw_dir, out, partition_rows=40)
    assert not stale.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------
# The pieces: user ranges, the exact re-split, the streamed median
# ----------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.none() | st.integers(-5, 30), max_size=60),
    bounds=st.lists(st.integers(-3, 28), max_size=6, unique=True).map(sorted),
    nulls_apart=st.booleans(),
)
def test_user_ranges_cover_every_row_once_in_order(
    users: list[int | None], bounds: list[int], nulls_apart: bool
) -> None:
    frame = pl.DataFrame({Columns.user: users}, schema={Columns.user: pl.Int32})
    ranges = interactions._UserRanges(tuple(bounds), nulls_apart)
    filters = ranges.filters()
    assert len(filters) == len(ranges)
    member = frame.select(f.fill_null(False).cast(pl.Int8).alias(str(i)) for i, f in enumerate(filters))
    assert (member.sum_horizontal() == 1).all()  # every row in exactly one range
    pieces = [frame.filter(f) for f in filters]
    assert pl.concat(pieces).sort(Columns.user, nulls_last=True).equals(frame.sort(Columns.user, nulls_last=True))
    ordered = pl.concat(piece.sort(Columns.user, nulls_last=True) for piece in pieces)
    assert ordered.equals(frame.sort(Columns.user, nulls_last=True))  # concatenation is the global order


def test_exact_ranges_bound_the_rows_per_range(tmp_path: Path) -> None:
    users = [1] * 5 + [2] * 2 + [3] * 9 + [4] * 1 + [5] * 3 + [None] * 4
    path = tmp_path / "partition.parquet"
    pl.DataFrame({Columns.user: users}, schema={Columns.user: pl.Int32}).write_parquet(path)
    ranges = interactions._exact_ranges(path, partition_rows=6)
    assert ranges == interactions._UserRanges(bounds=(3, 4), nulls_apart=True)
    frame = pl.read_parquet(path)
    sizes = [frame.filter(f).height for f in ranges.filters()]
    assert sizes == [7, 9, 4, 4]  # at most 6 rows plus those of the range's last user; nulls apart
    assert interactions._exact_ranges(path, partition_rows=100) == interactions._UserRanges()


@settings(max_examples=60, deadline=None)
@given(
    views=st.lists(
        st.tuples(st.integers(0, 4), st.none() | st.sampled_from([0, 1, 7, 1000, 2**31 - 1, 3, 4])), max_size=80
    )
)
def test_streamed_median_equals_polars_median(views: list[tuple[int, int | None]]) -> None:
    frame = pl.DataFrame(views, schema={Columns.item: pl.Int32, Columns.video_duration: pl.Int32}, orient="row")
    expected = (
        frame.group_by(Columns.item)
        .agg(pl.col(Columns.video_duration).median().alias("_big"))
        .filter(pl.col("_big").is_not_null())
        .sort(Columns.item)
    )
    found = side_tables._median_by_video(frame.lazy()).sort(Columns.item)
    assert found.equals(expected)


def test_scratch_folder_is_hidden_beside_the_output_and_removed(tmp_path: Path) -> None:
    target = tmp_path / PreparedFiles.big
    with interactions._scratch_dir(target) as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(f".{target.name}.{os.getpid()}.")
        assert scratch.name.endswith(".tmp")
        (scratch / "x.parquet").write_bytes(b"")
    assert not scratch.exists()
    with pytest.raises(ValueError, match="boom"), interactions._scratch_dir(target) as scratch:
        raise ValueError("boom")
    assert not scratch.exists()
