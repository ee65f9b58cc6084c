"""KuaiRec 2.0 simulator: writes the official files from a generative story with known truth.

:func:`simulate` writes the six KuaiRec 2.0 CSV files with their exact names, columns and text formats,
plus ``simulator_ground_truth.parquet`` for the fully observed block (from which
:func:`probability_watch_ratio_above` gives the probability of any label under the chosen story), so the
pipeline runs offline and the evaluation can report an oracle ceiling; the files are the same bytes on
every CPU. See docs/simulator.md and docs/design/data.md.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     stats = simulate(Path(tmp), profile="tiny", seed=1)
...     sorted(p.name for p in Path(tmp).iterdir())[:2]
['big_matrix.csv', 'item_categories.csv']
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from reco import portable_math as pm
from reco.data.simulator_files import (
    _append_csv,
    _csv_appender,
    _interaction_frame,
    _item_categories,
    _social_network,
    _user_features,
    _write_csv,
)
from reco.data.simulator_daily import DailyCounts
from reco.data.simulator_model import (  # noqa: F401  (LOOP_CAP, _sample_play_ms: re-exported for tests)
    DAY0_EPOCH_S,
    DAY_MS,
    FEED_DRIFT,
    FEED_POP,
    FEED_TAG,
    FEED_TASTE,
    FRESH_FEED_PENALTY,
    LOOP_CAP,
    MAX_PAIR_SHARE,
    N_DAYS,
    N_FACTORS,
    PROFILES,
    REWATCH_LATENESS,
    TAG_SD,
    TASTE_SD,
    WINDOW_DAYS,
    SimulatorProfile,
    Story,
    _make_world,
    _profile,
    _sample_play_ms,
    _user_time_order,
    _World,
    expected_watch_ratio,
    probability_watch_ratio_above,
)
from reco.data.simulator_stories import STORIES, story_named
from reco.errors import ParamsError
from reco.io import write_parquet
from reco.progress import report as report_progress
from reco.schema import Columns, RawFiles

__all__ = [
    "PROFILES",
    "STORIES",
    "TRUTH_SCHEMA",
    "SimulatorProfile",
    "expected_watch_ratio",
    "probability_watch_ratio_above",
    "simulate",
]


TRUTH_SCHEMA: Final = pl.Schema(
    {
        Columns.user: pl.Int32,
        Columns.item: pl.Int32,
        Columns.video_duration: pl.Int32,
        Columns.watch_eta: pl.Float64,
        Columns.skip_shift: pl.Float64,
        Columns.expected_watch_ratio: pl.Float32,
    }
)


# ==============================================================================================
# public API
# ==============================================================================================
def simulate(
    out_dir: Path, profile: str = "full", seed: int = 20200705, scale: float = 1.0, story: str = "latent_drift"
) -> dict[str, Any]:
    """Simulate KuaiRec 2.0 and write its files (and the ground truth) into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write into (created if missing). Each file is written atomically.
    profile
        ``"tiny"`` (tests), ``"small"`` or ``"full"`` (KuaiRec's published shape).
    seed
        Seed of every random draw: the same seed gives byte-identical files on any machine.
    scale
        Multiplies the number of logged views in ``big_matrix`` (users and videos stay the
        same, and so does the simulated world: only the logs change).
    story
        The generative story (:data:`STORIES`): ``"latent_drift"`` or ``"sessions"``.

    Returns
    -------
    dict
        Summary statistics: row counts, duplicates, re-watches, null timestamps, watch-ratio
        quantiles, positive rates, item_daily rows. Deterministic (no timings), so it can go
        into a manifest.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stats = simulate(Path(tmp), profile="tiny")
    >>> stats["small_matrix"]["users"], stats["small_matrix"]["items"]
    (60, 80)
    """
    prof = _profile(profile)
    chosen = story_named(story)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.01 <= float(scale) <= 10:
        raise ParamsError(f"params.yaml: data.scale = {scale!r} is invalid; expected a number in [0.01, 10]")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParamsError(f"params.yaml: data.seed = {seed!r} is invalid; expected an integer >= 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _simulate_files(out_dir, prof, profile, int(seed), float(scale), chosen)


# ==============================================================================================
# big_matrix: the logged feed, one chunk of users at a time
# ==============================================================================================
def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` that add up to ``total`` exactly (ties by index)."""
    share = weights / pm.fsum(weights) * total
    counts = np.floor(share).astype(np.int64)
    left = int(total - counts.sum())
    if left > 0:
        counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return counts


@dataclass(frozen=True)
class _BigPlan:
    """Per-user numbers of distinct videos, re-watches and duplicates (exact totals)."""

    first: np.ndarray
    rewatch: np.ndarray
    duplicate: np.ndarray

    @property
    def total(self) -> int:
        return int(self.first.sum() + self.rewatch.sum() + self.duplicate.sum())


def _plan_big(world: _World, prof: SimulatorProfile, scale: float) -> _BigPlan:
    n_total = max(world.n_users, round(prof.n_big_rows * scale))
    n_dup = round(n_total * prof.duplicate_share)
    views = np.maximum(_largest_remainder(world.activity, n_total - n_dup), 1)
    offered = np.full(world.n_users, world.n_items, dtype=np.int64)
    offered[world.small_users] -= world.small_items.size
    cap = np.maximum((offered * MAX_PAIR_SHARE).astype(np.int64), 1)
    first = np.clip(np.rint(views * (1.0 - prof.rewatch_share)).astype(np.int64), 1, cap)
    rewatch = views - first
    duplicate = _largest_remainder(views.astype(np.float64), n_total - int(views.sum())) if n_total > views.sum() else np.zeros_like(views)
    return _BigPlan(first=first, rewatch=rewatch, duplicate=duplicate)


def _day_cdf(world: _World, traffic: np.ndarray) -> np.ndarray:
    """Per video, the CDF over window days of the day a view happens (traffic x drift, after upload)."""
    weight = pm.exp(world.drift[:, WINDOW_DAYS] * FEED_DRIFT) * traffic[None, :]
    weight = weight * (WINDOW_DAYS[None, :] >= world.upload_day[:, None])
    cdf = np.cumsum(weight, axis=1)
    total = cdf[:, -1:]
    cdf = cdf / np.where(total > 0, total, 1.0)
    cdf[:, -1] = 1.0
    return cdf


def _draw_days(cdf: np.ndarray, items: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Window-day index of each view of ``items`` by inverting the video's day CDF."""
    n_wd = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    pos = np.searchsorted(flat, items + u, side="right")
    return np.minimum(pos - items.astype(np.int64) * n_wd, n_wd - 1)


def _top_k_mask(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``k[r]`` largest entries of each row (ties: lower column first).

    The k-th largest value of a row is unique as a value, whatever algorithm finds it; taking
    every entry above it and then the equal ones in column order gives one answer on every CPU.
    """
    n_rows, n_cols = keys.shape
    k = np.clip(k, 0, n_cols)
    mask = np.zeros(keys.shape, dtype=bool)
    for row in range(n_rows):
        kr = int(k[row])
        if kr == 0:
            continue
        values = keys[row]
        kth = np.partition(values, n_cols - kr)[n_cols - kr]
        above = values > kth
        ties = np.flatnonzero(values == kth)[: kr - int(above.sum())]
        mask[row] = above
        mask[row, ties] = True
    return mask


def _big_chunk(
    world: _World,
    story: Story,
    plan: _BigPlan,
    users: np.ndarray,
    prior: np.ndarray,
    day_cdf: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """All big_matrix rows of ``users`` (a contiguous id range), sorted by user then time."""
    half = N_FACTORS // 2
    taste_seen = (world.theta_q[users, :half] @ world.phi_q[:, :half].T) * world.taste_scale
    tag = ((world.tag_aff_q[users] @ world.tag_incidence.T) / world.n_tags[None, :]) * world.tag_scale
    logits = ((taste_seen * (FEED_TASTE / TASTE_SD)) + prior[None, :]) + tag * (FEED_TAG / TAG_SD)
    # The fully observed block is never part of its users' logged feed (KuaiRec shares no pair).
    in_block = np.isin(users, world.small_users)
    if in_block.any():
        logits[np.ix_(np.flatnonzero(in_block), world.small_items)] = -np.inf
    # Gumbel top-k: the k largest of logits + Gumbel noise are a draw without replacement.
    keys = logits + pm.gumbel(rng, logits.shape)
    rows, items = np.nonzero(_top_k_mask(keys, plan.first[users]))
    inter = world.interaction(users)[rows, items]
    user = users[rows]

    # Re-watches: each user re-watches some of their videos, the enjoyed ones more often.
    n_first = rows.size
    day_index = _draw_days(day_cdf, items, pm.uniform(rng, n_first))
    enjoy = story.enjoyment(world, user, items, WINDOW_DAYS[day_index], inter)
    starts = np.concatenate([[0], np.cumsum(plan.first[users])])
    n_re = plan.rewatch[users]
    re_src = np.empty(int(n_re.sum()), dtype=np.int64)
    cum = np.cumsum(enjoy)
    u_pick = pm.uniform(rng, re_src.size)
    pos = 0
    for local, count in enumerate(n_re):
        if count == 0:
            continue
        lo, hi = starts[local], starts[local + 1]
        base = cum[lo - 1] if lo > 0 else 0.0
        targets = base + u_pick[pos : pos + count] * (cum[hi - 1] - base)
        re_src[pos : pos + count] = np.minimum(np.searchsorted(cum, targets, side="right"), hi - 1)
        pos += count
    # The feed shows a watched video again on any later window day (the same day included).
    remaining = WINDOW_DAYS.size - day_index[re_src]
    # Later days are likelier (the feed re-shows watched videos more as they age).
    late = pm.exp(pm.log(pm.uniform(rng, re_src.size)) * REWATCH_LATENESS)
    re_day_index = day_index[re_src] + np.floor(late * remaining).astype(np.int64)

    src = np.concatenate([np.arange(n_first), re_src])
    all_day_index = np.concatenate([day_index, re_day_index])
    day = WINDOW_DAYS[all_day_index]
    ts_ms = story.times(user[src], day, rng)
    # A re-watch on the day of its first view comes after it.
    first_ts = ts_ms[:n_first][re_src]
    re_ts = ts_ms[n_first:]
    same_day = re_ts <= first_ts
    day0_ms = DAY0_EPOCH_S * 1000
    end_of_day = day0_ms + ((first_ts - day0_ms) // DAY_MS + 1) * DAY_MS - 1
    later = first_ts + 1 + np.floor(pm.uniform(rng, re_src.size) * (end_of_day - first_ts)).astype(np.int64)
    ts_ms[n_first:] = np.where(same_day, later, re_ts)
    view_user, view_item = user[src], items[src]
    eta, skip_shift = story.location(world, view_user, view_item, day, ts_ms, inter[src])
    play_ms = _sample_play_ms(eta, skip_shift, world.duration_ms[view_item], rng)

    order = _user_time_order(view_user, ts_ms)
    view_user, view_item, play_ms, ts_ms = view_user[order], view_item[order], play_ms[order], ts_ms[order]
    # Exact duplicates: a re-logged row sits right after its original.
    reps = np.ones(view_user.size, dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(plan.first[users] + plan.rewatch[users])])
    for local, n_dup in enumerate(plan.duplicate[users]):
        if n_dup:
            lo, hi = row_starts[local], row_starts[local + 1]
            reps[lo + rng.permutation(hi - lo)[:n_dup]] += 1
    n_rows = int(reps.sum())
    duplicate = np.ones(n_rows, dtype=bool)
    duplicate[np.cumsum(reps) - reps] = False  # the first row of each repeat is the view itself
    return {
        "user": np.repeat(view_user, reps).astype(np.int32),
        "item": np.repeat(view_item, reps).astype(np.int32),
        "play_ms": np.repeat(play_ms, reps),
        "ts_ms": np.repeat(ts_ms, reps),
        "duration_ms": world.duration_ms[np.repeat(view_item, reps)],
        "null_time": np.zeros(n_rows, dtype=bool),
        "duplicate": duplicate,
        "n_duplicates": np.int64(n_rows - view_user.size),
        "n_rewatches": np.int64(re_src.size),
    }


def _feed_prior(world: _World, traffic: np.ndarray) -> np.ndarray:
    """Feed prior per video: popularity, discounted by the share of window traffic it can get."""
    available = np.zeros(world.n_items)
    for j, day in enumerate(WINDOW_DAYS):  # fixed order of additions
        available = available + np.where(world.upload_day <= day, traffic[j], 0.0)
    share = available / pm.fsum(traffic)
    fresh = np.where(world.upload_day >= 0, FRESH_FEED_PENALTY, 0.0)
    return (world.pop * FEED_POP + pm.log(np.maximum(share, 1e-9))) - fresh


# ==============================================================================================
# small_matrix: the fully observed block
# ==============================================================================================
def _simulate_small(
    world: _World, story: Story, prof: SimulatorProfile, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    su, si = world.small_users, world.small_items
    n_cells = su.size * si.size
    user = np.repeat(su, si.size)
    item = np.tile(si, su.size)
    inter = world.interaction(su, si).ravel()
    # Every cell gets a view time (also the cells that end up missing: the truth needs a day).
    day = rng.integers(0, N_DAYS, n_cells)
    ts_ms = story.times(user, day, rng)
    eta, skip_shift = story.location(world, user, item, day, ts_ms, inter)
    truth = pl.DataFrame(
        {
            Columns.user: user.astype(np.int32),
            Columns.item: item.astype(np.int32),
            Columns.video_duration: world.duration_ms[item].astype(np.int32),
            Columns.watch_eta: eta,
            Columns.skip_shift: skip_shift,
            Columns.expected_watch_ratio: expected_watch_ratio(eta, world.duration_s(item), skip_shift).astype(
                np.float32
            ),
        },
        schema=TRUTH_SCHEMA,
    )
    play_ms = _sample_play_ms(eta, skip_shift, world.duration_ms[item], rng)

    n_missing = round(n_cells * prof.small_missing_share)
    keep = np.ones(n_cells, dtype=bool)
    keep[rng.permutation(n_cells)[:n_missing]] = False
    user, item, play_ms, ts_ms = user[keep], item[keep], play_ms[keep], ts_ms[keep]
    order = _user_time_order(user, ts_ms)
    n_null = round(user.size * prof.small_null_time_share)
    null_time = np.zeros(user.size, dtype=bool)
    null_time[rng.permutation(user.size)[:n_null]] = True
    return (
        {
            "user": user[order].astype(np.int32),
            "item": item[order].astype(np.int32),
            "play_ms": play_ms[order],
            "ts_ms": ts_ms[order],
            "duration_ms": world.duration_ms[item[order]],
            "null_time": null_time,
            "n_duplicates": np.int64(0),
            "n_rewatches": np.int64(0),
        },
        truth,
    )


# ==============================================================================================
# statistics (deterministic: counts, order statistics and exact quotients only)
# ==============================================================================================
class _RatioSample:
    """Rows kept for the summary statistics: every row up to scale 1, every k-th row above."""

    def __init__(self, stride: int) -> None:
        self.stride = max(1, stride)
        self.parts: dict[str, list[np.ndarray]] = {"ratio": [], "duration_ms": [], "play_ms": []}
        self.rows = 0
        self.users: set[int] = set()
        self.items = np.zeros(0, dtype=np.int64)
        self.max_ratio = 0.0
        self.duplicates = 0
        self.rewatches = 0
        self.null_timestamps = 0

    def add(self, views: dict[str, np.ndarray]) -> None:
        ratio = views["play_ms"] / views["duration_ms"]
        self.rows += ratio.size
        self.max_ratio = max(self.max_ratio, float(ratio.max()) if ratio.size else 0.0)
        self.users.update(np.unique(views["user"]).tolist())
        self.items = np.union1d(self.items, views["item"])
        self.duplicates += int(views["n_duplicates"])
        self.rewatches += int(views["n_rewatches"])
        self.null_timestamps += int(views["null_time"].sum())
        take = slice(None, None, self.stride)
        self.parts["ratio"].append(ratio[take])
        self.parts["duration_ms"].append(views["duration_ms"][take])
        self.parts["play_ms"].append(views["play_ms"][take])

    def stats(self) -> dict[str, Any]:
        ratio = np.concatenate(self.parts["ratio"])
        dur = np.concatenate(self.parts["duration_ms"])
        play = np.concatenate(self.parts["play_ms"])
        edges = np.quantile(dur, [0.2, 0.8])
        q = np.quantile(ratio, [0.5, 0.9, 0.99])

        def share(mask: np.ndarray) -> float:
            return int(mask.sum()) / max(int(mask.size), 1)

        return {
            "rows": self.rows,
            "users": len(self.users),
            "items": int(self.items.size),
            "exact_duplicates": self.duplicates,
            "rewatch_rows": self.rewatches,
            "null_timestamps": self.null_timestamps,
            "sampled_every": self.stride,
            "watch_ratio_median": float(q[0]),
            "watch_ratio_p90": float(q[1]),
            "watch_ratio_p99": float(q[2]),
            "watch_ratio_max": self.max_ratio,
            "share_watch_ratio_ge_1": share(ratio >= 1),
            "positive_rate_gt_2": share(ratio > 2),
            "positive_rate_gt_2_shortest_quintile": share(ratio[dur <= edges[0]] > 2),
            "positive_rate_gt_2_longest_quintile": share(ratio[dur > edges[1]] > 2),
            "median_play_seconds": float(np.median(play) / 1000),
        }


# ==============================================================================================
# orchestration
# ==============================================================================================
def _simulate_files(
    out_dir: Path, prof: SimulatorProfile, profile: str, seed: int, scale: float, story: Story
) -> dict[str, Any]:
    # Independent streams: the world does not depend on `scale`, the logs do.
    world_ss, feed_ss, small_ss, daily_ss, side_ss, story_ss = np.random.SeedSequence(seed).spawn(6)
    report_progress("world (users, videos, daily appeal)")
    world = _make_world(prof, np.random.default_rng(world_ss))
    story = story.bind(world, np.random.default_rng(story_ss))
    if story.author is not None:  # the story's authors are the ones item_daily_features lists
        world = replace(world, author=story.author)
    plan = _plan_big(world, prof, scale)
    feed_rng = np.random.default_rng(feed_ss)
    traffic = pm.exp(pm.normal(feed_rng, WINDOW_DAYS.size) * 0.15)
    prior = _feed_prior(world, traffic)
    day_cdf = _day_cdf(world, traffic)
    chunk_streams = feed_ss.spawn(-(-world.n_users // prof.user_chunk))

    # Files are written by one background thread while the next chunk is drawn: the draws are
    # numpy and polars formats CSV without the GIL, so the two overlap. Chunks are written in
    # order, so the bytes do not depend on the overlap.
    big_stats = _RatioSample(stride=int(np.ceil(scale)) if scale > 1 else 1)
    daily_counts = DailyCounts(world)  # item_daily_features: the feed's logged views plus a platform audience
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-writer") as writer:
        written: list[Future[None]] = []
        with _csv_appender(out_dir / RawFiles.big_matrix) as handle:
            for index, start in enumerate(range(0, world.n_users, prof.user_chunk)):
                report_progress(f"big_matrix user chunk {index + 1}/{len(chunk_streams)}")
                users = np.arange(start, min(start + prof.user_chunk, world.n_users))
                views = _big_chunk(
                    world, story, plan, users, prior, day_cdf, np.random.default_rng(chunk_streams[index])
                )
                big_stats.add(views)
                daily_counts.add(views)
                frame = _interaction_frame(views, date_as_float=False)
                written.append(writer.submit(_append_csv, frame, handle, index == 0))
                del views, frame
                if len(written) > 2:  # at most two chunks waiting to be written
                    written.pop(0).result()
            for future in written:
                future.result()
            written.clear()

        report_progress("small_matrix and ground truth")
        small, truth = _simulate_small(world, story, prof, np.random.default_rng(small_ss))
        written.append(writer.submit(_write_csv, _interaction_frame(small, date_as_float=True), out_dir / RawFiles.small_matrix))
        written.append(writer.submit(write_parquet, truth, out_dir / RawFiles.ground_truth))
        small_stats = _RatioSample(stride=1)
        small_stats.add(small)
        # The block's views are not counted: on the platform its users are a negligible share, and
        # here they would put the evaluation block's own outcomes into its videos' daily counters.
        del small

        report_progress("item_daily_features")
        daily = daily_counts.frame(story, np.random.default_rng(daily_ss))
        del daily_counts
        written.append(writer.submit(_write_csv, daily, out_dir / RawFiles.item_daily_features))
        report_progress("side files (user_features, item_categories, social_network)")
        side_rng = np.random.default_rng(side_ss)
        _write_csv(_user_features(world, side_rng), out_dir / RawFiles.user_features)
        _write_csv(_item_categories(world), out_dir / RawFiles.item_categories)
        _write_csv(_social_network(world, prof, side_rng), out_dir / RawFiles.social_network)
        for future in written:
            future.result()  # re-raises a failed write here

    truth_mean = pm.fsum(truth[Columns.expected_watch_ratio].to_numpy()) / max(truth.height, 1)
    return {
        "profile": profile,
        "story": story.name,
        "seed": int(seed),
        "scale": float(scale),
        "users": prof.n_users,
        "items": prof.n_items,
        "big_matrix": big_stats.stats(),
        "small_matrix": small_stats.stats(),
        "ground_truth_rows": truth.height,
        "ground_truth_mean_expected_watch_ratio": float(truth_mean),
        "item_daily_rows": daily.height,
    }


