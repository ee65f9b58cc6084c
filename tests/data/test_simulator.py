"""Tests of the KuaiRec simulator on the ``tiny`` profile (each run takes well under a second)."""

from __future__ import annotations

import ast
import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from reco.data import simulator as sim
from reco.errors import ParamsError
from reco.schema import SOCIAL_NETWORK_COLUMNS, Columns, RawFiles

TINY = sim.PROFILES["tiny"]
SEED = 7
UTC8 = dt.timezone(dt.timedelta(hours=8))
WINDOW_DATES = (
    [20200705 + d for d in range(8)] + [20200801 + d for d in range(10)] + [20200827 + d for d in range(5)]
    + [20200901 + d for d in range(5)]
)  # fmt: skip
PERIOD_DATES = [20200705 + d for d in range(27)] + [20200801 + d for d in range(31)] + [20200901 + d for d in range(5)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny")
    return out, sim.simulate(out, profile="tiny", seed=SEED)


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=None)


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:  # the real daily sample has a BOM
        return next(csv.reader(handle))


def test_writes_exactly_the_kuairec_files(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*RawFiles.required, RawFiles.ground_truth])


def test_headers_equal_the_real_files(tiny: tuple[Path, dict[str, Any]], kuairec_real_dir: Path) -> None:
    out, _ = tiny
    real_interactions = _header(kuairec_real_dir / "samples" / "big_matrix_1000.csv")
    expected = {
        RawFiles.big_matrix: real_interactions,
        RawFiles.small_matrix: real_interactions,
        RawFiles.user_features: _header(kuairec_real_dir / RawFiles.user_features),
        RawFiles.item_categories: _header(kuairec_real_dir / RawFiles.item_categories),
        RawFiles.item_daily_features: _header(
            kuairec_real_dir / "samples" / "damaged" / "item_daily_features_sample.csv"
        ),
        RawFiles.social_network: list(SOCIAL_NETWORK_COLUMNS),  # no real copy exists offline
    }
    for name, header in expected.items():
        raw = (out / name).read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf"), f"{name} must not start with a BOM"
        assert b"\r" not in raw[:4096], f"{name} must use LF line endings"
        assert _header(out / name) == header, name


def test_interaction_text_formats(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    big_lines = (out / RawFiles.big_matrix).read_text().splitlines()[1:200]
    small_lines = [l for l in (out / RawFiles.small_matrix).read_text().splitlines()[1:] if ",," not in l][:200]
    for line in big_lines:
        user, item, play, dur, time_s, date_s, ts_s, ratio_s = line.split(",")
        assert date_s.isdigit() and len(date_s) == 8
        _check_time_fields(time_s, date_s, ts_s, WINDOW_DATES)  # the feed's three collection windows
        assert float(ratio_s) == int(play) / int(dur)
    for line in small_lines:
        user, item, play, dur, time_s, date_s, ts_s, ratio_s = line.split(",")
        assert date_s.endswith(".0") and len(date_s) == 10  # small_matrix dates are floats
        _check_time_fields(time_s, date_s[:8], ts_s, PERIOD_DATES)  # the block spans the whole period
        assert float(ratio_s) == int(play) / int(dur)


def _check_time_fields(time_s: str, date_s: str, ts_s: str, allowed_dates: list[int]) -> None:
    local = dt.datetime.strptime(time_s, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC8)
    assert len(time_s) == 23  # milliseconds, as in the real files
    seconds, _, millis = ts_s.partition(".")
    assert len(millis) <= 3
    epoch_ms = int(seconds) * 1000 + int(millis.ljust(3, "0"))
    assert round(local.timestamp() * 1000) == epoch_ms
    assert local.strftime("%Y%m%d") == date_s
    assert int(date_s) in allowed_dates


def test_watch_ratio_is_play_over_duration_everywhere(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    for name in (RawFiles.big_matrix, RawFiles.small_matrix):
        frame = _read(out / name)
        ratio = frame[Columns.play_duration].to_numpy() / frame[Columns.video_duration].to_numpy()
        assert np.array_equal(frame[Columns.watch_ratio].to_numpy(), ratio)
        assert frame[Columns.video_duration].min() >= 140  # KuaiRec's shortest video is 140 ms
        # one duration per video
        assert frame.group_by(Columns.item).agg(pl.col(Columns.video_duration).n_unique())[:, 1].max() == 1


def test_big_matrix_rows_duplicates_and_windows(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, stats = tiny
    big = _read(out / RawFiles.big_matrix)
    assert big.height == TINY.n_big_rows
    n_dup = big.height - big.unique().height
    assert n_dup == round(TINY.n_big_rows * TINY.duplicate_share) == stats["big_matrix"]["exact_duplicates"]
    assert big[Columns.user].n_unique() == TINY.n_users
    assert set(big[Columns.date].unique().to_list()) <= set(WINDOW_DATES)
    # sorted by user, then time
    keys = big.select(Columns.user, Columns.timestamp)
    assert keys.equals(keys.sort(Columns.user, Columns.timestamp, maintain_order=True))
    # a daily rhythm: the quietest hours get far fewer views than the busiest ones
    hours = big[Columns.time].str.slice(11, 2).cast(pl.Int32).value_counts()
    assert hours["count"].max() > 3 * hours["count"].min()


def test_small_matrix_density_and_null_times(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, stats = tiny
    small = _read(out / RawFiles.small_matrix)
    cells = TINY.n_small_users * TINY.n_small_items
    assert small.height == cells - round(cells * TINY.small_missing_share)
    assert small.height / cells == pytest.approx(1 - TINY.small_missing_share, abs=1e-3)
    assert small.select(Columns.user, Columns.item).is_unique().all()
    nulls = small.select(pl.col(Columns.time, Columns.date, Columns.timestamp).is_null())
    assert (nulls[Columns.time] == nulls[Columns.date]).all()
    assert (nulls[Columns.time] == nulls[Columns.timestamp]).all()
    n_null = int(nulls[Columns.time].sum())
    assert n_null == round(small.height * TINY.small_null_time_share) == stats["small_matrix"]["null_timestamps"]
    assert small[Columns.date].dtype == pl.Float64


def test_ground_truth_covers_the_small_grid(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    truth = pl.read_parquet(out / RawFiles.ground_truth)
    small = _read(out / RawFiles.small_matrix)
    assert truth.schema == sim.TRUTH_SCHEMA
    users = set(small[Columns.user].unique().to_list())
    items = set(small[Columns.item].unique().to_list())
    assert len(users) == TINY.n_small_users and len(items) == TINY.n_small_items
    assert truth.height == len(users) * len(items)
    assert truth.select(Columns.user, Columns.item).is_unique().all()
    assert set(truth[Columns.user].to_list()) == users and set(truth[Columns.item].to_list()) == items
    assert truth[Columns.expected_watch_ratio].min() > 0
    # the truth predicts the observed outcomes (it is the model behind them); rank correlation,
    # as a few long sessions (ratios up to LOOP_CAP) dominate any linear one
    joined = small.join(truth, on=[Columns.user, Columns.item]).select(
        pl.col(Columns.watch_ratio).rank(), pl.col(Columns.expected_watch_ratio).rank()
    )
    corr = np.corrcoef(joined[Columns.watch_ratio].to_numpy(), joined[Columns.expected_watch_ratio].to_numpy())[0, 1]
    assert corr > 0.3


def test_small_users_have_big_history_but_no_block_pair(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    big = _read(out / RawFiles.big_matrix).select(Columns.user, Columns.item).unique()
    small = _read(out / RawFiles.small_matrix)
    small_items = small[Columns.item].unique()
    hist = big.filter(pl.col(Columns.user).is_in(small[Columns.user].unique().implode()))
    per_user = hist.group_by(Columns.user).agg(
        (~pl.col(Columns.item).is_in(small_items.implode())).sum().alias("other"),
        pl.col(Columns.item).is_in(small_items.implode()).sum().alias("overlap"),
    )
    assert per_user.height == TINY.n_small_users
    assert per_user["other"].min() > 0
    # KuaiRec's big_matrix shares no (user, video) pair with small_matrix; neither does the simulator's
    assert per_user["overlap"].sum() == 0


def test_expected_watch_ratio_and_label_probability_match_monte_carlo() -> None:
    # Independent reference: average many sampled views of the same (eta, length, skip shift).
    rng = np.random.default_rng(0)
    cases = [(np.log(7.5), 3.0, 0.0), (np.log(7.5), 60.0, 0.0), (np.log(3.0), 9.0, 1.0), (np.log(20.0), 9.0, -1.0),
             (np.log(7.5), 0.5, 0.0)]  # fmt: skip
    n = 400_000
    for eta, duration_s, shift in cases:
        ratios = sim._sample_play_ms(
            np.full(n, eta), np.full(n, shift), np.full(n, int(duration_s * 1000)), rng
        ) / (duration_s * 1000)
        expected = sim.expected_watch_ratio(np.array([eta]), np.array([duration_s]), shift)[0]
        assert ratios.mean() == pytest.approx(expected, rel=0.03)
        for cutoff in (0.5, 1.0, 2.0, 5.0):
            probability = sim.probability_watch_ratio_above(np.array([eta]), np.array([duration_s]), cutoff, shift)[0]
            assert (ratios > cutoff).mean() == pytest.approx(probability, abs=0.005)
    # the loop cap bounds the ratio: no label above it is possible
    assert sim.probability_watch_ratio_above(np.array([np.log(7.5)]), np.array([0.2]), sim.LOOP_CAP)[0] == 0.0


def test_big_matrix_repeats_pairs_later_and_caps_loops(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, stats = tiny
    big = _read(out / RawFiles.big_matrix).unique(maintain_order=True)
    per_pair = big.group_by(Columns.user, Columns.item).agg(
        pl.len().alias("views"), (pl.col(Columns.timestamp).max() > pl.col(Columns.timestamp).min()).alias("later")
    )
    # users watch some videos again, later (exact re-logged copies were removed above)
    rewatched = per_pair.filter(pl.col("views") > 1)
    assert rewatched.height > 0 and rewatched["later"].all()
    assert big.height - per_pair.height == stats["big_matrix"]["rewatch_rows"]
    assert stats["big_matrix"]["rewatch_rows"] == pytest.approx(
        (TINY.n_big_rows - stats["big_matrix"]["exact_duplicates"]) * TINY.rewatch_share, rel=0.05
    )
    assert big[Columns.watch_ratio].max() <= sim.LOOP_CAP
    assert _read(out / RawFiles.small_matrix)[Columns.watch_ratio].max() <= sim.LOOP_CAP


def test_duration_effect(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    big = _read(out / RawFiles.big_matrix)
    lo, hi = np.quantile(big[Columns.video_duration].to_numpy(), [0.2, 0.8])
    positive = pl.col(Columns.watch_ratio) > 2
    short_rate = big.filter(pl.col(Columns.video_duration) <= lo).select(positive.mean()).item()
    long_rate = big.filter(pl.col(Columns.video_duration) > hi).select(positive.mean()).item()
    assert short_rate > 3 * long_rate
    # seconds watched vary far less with length than the watch ratio does
    med = big.group_by(pl.col(Columns.video_duration) > hi).agg(
        pl.col(Columns.play_duration).median().alias("play"), pl.col(Columns.watch_ratio).median().alias("ratio")
    )
    play = dict(zip(med[:, 0], med["play"], strict=True))
    ratio = dict(zip(med[:, 0], med["ratio"], strict=True))
    assert ratio[False] / ratio[True] > play[False] / play[True]


def test_labels_are_not_a_function_of_popularity(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny
    truth = pl.read_parquet(out / RawFiles.ground_truth)
    y = np.log(truth[Columns.expected_watch_ratio].to_numpy().astype(np.float64))
    frame = truth.with_columns(y=pl.Series(y))
    additive = frame.with_columns(
        fit=pl.col("y").mean().over(Columns.user) + pl.col("y").mean().over(Columns.item) - pl.col("y").mean()
    )
    resid = (additive["y"] - additive["fit"]).to_numpy()
    # A real share of the variance is user x item interaction (taste, tags) beyond user and item means.
    assert resid.var() / y.var() > 0.1


def test_side_files(tiny: tuple[Path, dict[str, Any]], kuairec_real_dir: Path) -> None:
    out, _ = tiny
    cats = _read(out / RawFiles.item_categories)
    assert cats[Columns.item].to_list() == list(range(TINY.n_items))
    for feat in cats[Columns.feat].to_list():
        tags = ast.literal_eval(feat)
        assert feat == str(tags) and 1 <= len(tags) <= 4 and len(set(tags)) == len(tags)
        assert all(0 <= t <= 30 for t in tags)

    users = _read(out / RawFiles.user_features)
    real = _read(kuairec_real_dir / RawFiles.user_features)
    assert users[Columns.user].to_list() == list(range(TINY.n_users))
    categorical = [
        "user_active_degree", "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
        "register_days_range", "is_video_author", "onehot_feat1", "onehot_feat4", "onehot_feat12",
    ]  # fmt: skip
    for column in categorical:
        assert set(users[column].drop_nulls().to_list()) <= set(real[column].drop_nulls().to_list()), column
    assert users["user_active_degree"].mode().to_list() == ["full_active"]
    for column in users.columns:
        assert users[column].dtype == real[column].dtype, column

    social = _read(out / RawFiles.social_network)
    assert social[Columns.user].is_unique().all()
    friends = {u: ast.literal_eval(f) for u, f in social.iter_rows()}
    for user, lst in friends.items():
        assert lst and user not in lst and all(user in friends[f] for f in lst)  # symmetric


def test_item_daily_one_row_per_video_and_day(tiny: tuple[Path, dict[str, Any]]) -> None:
    out, stats = tiny
    daily = _read(out / RawFiles.item_daily_features)
    assert daily.height == stats["item_daily_rows"]
    assert daily.select(Columns.item, Columns.date).is_unique().all()
    assert daily[Columns.item].n_unique() == TINY.n_items
    dates = daily[Columns.date].cast(pl.String).str.to_date("%Y%m%d")
    upload = daily["upload_dt"].str.to_date("%Y-%m-%d")
    start = pl.select(pl.max_horizontal(upload, pl.lit(dt.date(2020, 7, 5)))).to_series()
    per_video = pl.DataFrame({"v": daily[Columns.item], "d": dates, "s": start}).group_by("v").agg(
        pl.len().alias("n"), pl.col("d").min().alias("first"), pl.col("d").max().alias("last"), pl.col("s").first()
    )
    assert (per_video["first"] == per_video["s"]).all()
    assert (per_video["last"] == dt.date(2020, 9, 5)).all()
    assert (per_video["n"] == (per_video["last"] - per_video["first"]).dt.total_days() + 1).all()
    # counters are consistent with one another
    assert (daily["play_user_num"] <= daily["play_cnt"]).all()
    assert (daily["complete_play_cnt"] <= daily["play_cnt"]).all()
    assert daily["play_progress"].is_between(0, 1).all()
    assert daily.filter(pl.col(Columns.date) < 20200728)["collect_cnt"].null_count() > 0


def test_item_daily_counts_include_every_logged_view(tiny: tuple[Path, dict[str, Any]]) -> None:
    # The daily counters are counted from simulated views: the feed's logged ones (duplicates are
    # re-logged rows, not views) plus a platform audience, so each (video, day) counts at least its
    # big_matrix views (the evaluation block's are left out).
    out, _ = tiny
    big = _read(out / RawFiles.big_matrix).unique(maintain_order=True)
    logged = big.select(Columns.item, pl.col(Columns.date).cast(pl.Int64), Columns.play_duration)
    per_cell = logged.group_by(Columns.item, Columns.date).agg(
        pl.len().alias("views"), pl.col(Columns.play_duration).sum().alias("ms")
    )
    daily = _read(out / RawFiles.item_daily_features).select(
        Columns.item, pl.col(Columns.date).cast(pl.Int64), "play_cnt", "play_user_num", "complete_play_cnt",
        pl.col(Columns.play_duration).alias("daily_ms"),
    )  # fmt: skip
    joined = per_cell.join(daily, on=[Columns.item, Columns.date], how="left")
    assert joined["play_cnt"].null_count() == 0  # every logged view falls on a row of its video
    assert (joined["play_cnt"] >= joined["views"]).all()
    assert (joined["daily_ms"] >= joined["ms"]).all()
    # and the platform audience adds views on the days outside the logged windows as well
    outside = daily.filter(~pl.col(Columns.date).is_in(WINDOW_DATES))
    assert outside["play_cnt"].sum() > 0
    # counts of outcomes are counts of views: completions, viewers and plays agree
    assert (daily["complete_play_cnt"] <= daily["play_cnt"]).all()
    assert (daily["play_user_num"] <= daily["play_cnt"]).all()


def test_item_daily_counters_are_not_a_copy_of_the_latent_appeal(tiny: tuple[Path, dict[str, Any]]) -> None:
    # Completion rates from a few dozen simulated views per day are noisy estimates: within a video,
    # their day-to-day correlation is low (counters read from the latent drift gave about 0.5 here).
    out, _ = tiny
    daily = _read(out / RawFiles.item_daily_features)
    rate = daily.filter(pl.col("play_cnt") >= 5).with_columns(
        (pl.col("complete_play_cnt") / pl.col("play_cnt")).alias("rate")
    ).sort(Columns.item, Columns.date)
    pairs = rate.with_columns(pl.col("rate").shift(1).over(Columns.item).alias("prev")).drop_nulls("prev")
    within = pairs.with_columns(
        (pl.col("rate") - pl.col("rate").mean().over(Columns.item)).alias("r"),
        (pl.col("prev") - pl.col("prev").mean().over(Columns.item)).alias("p"),
    )
    lag1 = np.corrcoef(within["r"].to_numpy(), within["p"].to_numpy())[0, 1]
    assert lag1 < 0.25


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    first, _ = tiny
    again, other = tmp_path / "again", tmp_path / "other"
    again.mkdir()
    other.mkdir()
    sim.simulate(again, profile="tiny", seed=SEED)
    sim.simulate(other, profile="tiny", seed=SEED + 1)
    for name in (*RawFiles.required, RawFiles.ground_truth):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / RawFiles.big_matrix).read_bytes() != (other / RawFiles.big_matrix).read_bytes()


def test_same_bytes_whatever_the_blas_threads(tmp_path: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    # The latent products go through BLAS on integer-valued matrices: exact in any summation order.
    from threadpoolctl import threadpool_limits

    first, _ = tiny
    with threadpool_limits(limits=2, user_api="blas"):
        sim.simulate(tmp_path, profile="tiny", seed=SEED)
    for name in (*RawFiles.required, RawFiles.ground_truth):
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_write_failure_in_the_background_writer_is_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def failing_append(frame: pl.DataFrame, handle: Any, header: bool) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sim, "_append_csv", failing_append)
    with pytest.raises(OSError, match="disk full"):
        sim.simulate(tmp_path, profile="tiny", seed=SEED)
    # nothing half written that a later stage could take for the file
    assert not (tmp_path / RawFiles.big_matrix).exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


_DIGEST_SCRIPT = """
import hashlib, sys
from pathlib import Path
from reco.data.simulator import STORIES, simulate
for story in sorted(STORIES):
    out = Path(sys.argv[1]) / story
    simulate(out, profile="tiny", seed=int(sys.argv[2]), story=story)
    for path in sorted(out.iterdir()):
        print(story, path.name, hashlib.sha256(path.read_bytes()).hexdigest())
"""


def test_same_bytes_on_every_numpy_cpu_path(tmp_path: Path, repo_root: Path) -> None:
    # numpy's SIMD kernels (AVX-512, AVX2, baseline) round exp/log differently and order ties
    # of its default sort differently; the simulator must not depend on either, under any story.
    import os
    import subprocess
    import sys

    from cpu_paths import cpu_path_settings

    digests = {}
    for name, env in cpu_path_settings().items():
        run_env = {**os.environ, "PYTHONPATH": str(repo_root), **env}
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT, str(tmp_path / name), str(SEED)],
            env=run_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        digests[name] = result.stdout
    assert len(set(digests.values())) == 1, digests
    assert digests["default"].count("\n") == (len(RawFiles.required) + 1) * len(sim.STORIES)


def test_scale_changes_only_the_logs(tmp_path: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    first, _ = tiny
    stats = sim.simulate(tmp_path, profile="tiny", seed=SEED, scale=0.5)
    assert stats["big_matrix"]["rows"] == round(TINY.n_big_rows * 0.5)
    for name in (RawFiles.user_features, RawFiles.item_categories, RawFiles.small_matrix, RawFiles.ground_truth):
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"profile": "huge"}, "data.profile"), ({"scale": 0.0}, "data.scale"), ({"story": "epic"}, "data.story")],
)
def test_bad_parameters_are_rejected(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ParamsError, match=needle):
        sim.simulate(tmp_path, **{"profile": "tiny", **kwargs})
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# The second story: sessions
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sessions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny_sessions")
    return out, sim.simulate(out, profile="tiny", seed=SEED, story="sessions")


def test_story_parameter_is_validated_with_its_name() -> None:
    from reco.params import parse_section

    assert parse_section("data", {"story": "sessions"}).story == "sessions"
    assert parse_section("data", {}).story == "latent_drift"
    with pytest.raises(ParamsError, match=r"data\.story.*'latent_drift', 'sessions'"):
        parse_section("data", {"story": "epic"})


def test_sessions_writes_the_same_files_and_formats(
    tiny_sessions: tuple[Path, dict[str, Any]], tiny: tuple[Path, dict[str, Any]]
) -> None:
    out, stats = tiny_sessions
    first, _ = tiny
    assert stats["story"] == "sessions"
    for name in (*RawFiles.required, RawFiles.ground_truth):
        ours, default = _read_any(out / name), _read_any(first / name)
        assert ours.schema == default.schema, name
    # the same world (users, videos, tags), other views and another truth
    for name in (RawFiles.user_features, RawFiles.item_categories, RawFiles.social_network):
        assert (out / name).read_bytes() == (first / name).read_bytes(), name
    assert (out / RawFiles.big_matrix).read_bytes() != (first / RawFiles.big_matrix).read_bytes()
    # the story's authors are the ones item_daily_features lists: several videos each
    daily = _read(out / RawFiles.item_daily_features)
    authors = daily.group_by(Columns.item).agg(pl.col("author_id").n_unique())
    assert authors["author_id"].max() == 1
    assert daily.select("author_id", Columns.item).unique()["author_id"].value_counts()["count"].max() > 2


def _read_any(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.suffix == ".parquet" else _read(path)


def test_sessions_truth_is_the_probability_of_the_logged_outcome(tiny_sessions: tuple[Path, dict[str, Any]]) -> None:
    # The oracle reads watch_eta and skip_shift: under this story they must give the probability of
    # what the block's views actually did (calibration across deciles of that probability).
    out, _ = tiny_sessions
    truth = pl.read_parquet(out / RawFiles.ground_truth)
    small = _read(out / RawFiles.small_matrix).join(truth, on=[Columns.user, Columns.item])
    p = sim.probability_watch_ratio_above(
        small[Columns.watch_eta].to_numpy(), small[Columns.video_duration].to_numpy() / 1000.0, 2.0,
        small[Columns.skip_shift].to_numpy(),
    )  # fmt: skip
    hit = (small[Columns.watch_ratio].to_numpy() > 2.0).astype(np.float64)
    assert hit.mean() == pytest.approx(p.mean(), abs=0.015)
    decile = np.minimum((np.argsort(np.argsort(p, kind="stable"), kind="stable") * 10) // p.size, 9)
    observed = np.array([hit[decile == d].mean() for d in range(10)])
    predicted = np.array([p[decile == d].mean() for d in range(10)])
    assert np.abs(observed - predicted).max() < 0.05
    assert observed[-1] > observed[0] + 0.2


def _positions(out: Path) -> tuple[pl.DataFrame, np.ndarray]:
    from reco.data.simulator_stories import session_positions

    big = _read(out / RawFiles.big_matrix).unique(maintain_order=True)
    ts_ms = np.rint(big[Columns.timestamp].to_numpy() * 1000).astype(np.int64)
    return big, session_positions(big[Columns.user].to_numpy(), ts_ms)


def test_sessions_watch_time_falls_along_a_session(
    tiny_sessions: tuple[Path, dict[str, Any]], tiny: tuple[Path, dict[str, Any]]
) -> None:
    big, position = _positions(tiny_sessions[0])
    seconds = big[Columns.play_duration].to_numpy() / 1000.0
    # the views come in sessions, where the default story scatters a user's views over the day ...
    _, scattered = _positions(tiny[0])
    assert (position >= 8).mean() > 5 * (scattered >= 8).mean()
    # ... and the attention budget runs down along them
    fresh, tired = np.median(seconds[position == 0]), np.median(seconds[position >= 8])
    assert fresh > 1.1 * tired
