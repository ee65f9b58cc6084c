"""``item_daily_features.csv`` counted from simulated views: the feed's logged views plus a platform audience.

A video's counters on a day aggregate the ``big_matrix`` views of that day (not the evaluation block
``small_matrix``: a platform's counters hardly contain its few users) and an audience drawn by the same
per-view process (a user by activity, a time, a session place, the story's location, the shared
watch-time law), exposed by the feed's popularity and the video's age; likes, comments, ... are
per-view events whose rates depend only on each view's outcome. No counter reads the latent appeal or
its drift. See docs/simulator.md.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import polars as pl

from reco import portable_math as pm
from reco.data.simulator_files import _yyyymmdd
from reco.data.simulator_model import (
    COLLECT_FROM_DAY,
    DAY0_EPOCH_S,
    DAY_MS,
    N_DAYS,
    UTC8_MS,
    Story,
    _day_rhythm_ms,
    _sample_play_ms,
    _World,
    pair_interaction,
)
from reco.schema import ITEM_DAILY_COLUMNS, N_CATEGORY_TAGS, Columns

__all__ = ["DailyCounts"]

PLATFORM_PLAYS: Final = 20.0  # median plays per video and day by the platform audience (KuaiRec's sample: 37)
PLATFORM_POP: Final = 1.2  # the platform feed's exposure grows like exp(PLATFORM_POP * popularity): a long tail
PLATFORM_CHUNK: Final = 400_000  # platform views drawn at once (bounds memory)
ADD_SLICE: Final = 1_000_000  # logged views counted at once (bounds memory)
MEAN_SESSION_POSITION: Final = 8.0  # a platform view's place in its session: geometric with this mean
UNPLAYED_SHOWS: Final = 1.5  # impressions that never start playing, per play
VALID_MS: Final = 7_000  # a valid play lasts min(length, 7 s); a long one min(length, 18 s);
LONG_MS: Final = 18_000  # a short one less than min(length, 3 s)
SHORT_MS: Final = 3_000
# Per-view probability of an event by the view's outcome: (complete, valid but not complete, other).
EVENT_RATES: Final[dict[str, tuple[float, float, float]]] = {
    "like": (0.06, 0.02, 0.004),
    "comment": (0.004, 0.0015, 0.0003),
    "comment_like": (0.012, 0.004, 0.001),
    "follow": (0.008, 0.002, 0.0005),
    "share": (0.0015, 0.0004, 0.0001),
    "download": (0.0012, 0.0003, 0.0001),
    "collect": (0.002, 0.0005, 0.0001),
}
# Negative feedback by outcome: (short play, other play).
NEGATIVE_RATES: Final[dict[str, tuple[float, float]]] = {"report": (0.0004, 0.00002), "reduce_similar": (0.004, 0.0002)}
_OUTCOMES: Final = ("play", "complete", "valid", "long", "short")


def _outcomes(play_ms: np.ndarray, duration_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Per view: played at all, complete, valid, long and short plays (booleans)."""
    return {
        "play": np.ones(play_ms.size, dtype=bool),
        "complete": play_ms >= duration_ms,
        "valid": play_ms >= np.minimum(duration_ms, VALID_MS),
        "long": play_ms >= np.minimum(duration_ms, LONG_MS),
        "short": play_ms < np.minimum(duration_ms, SHORT_MS),
    }


class DailyCounts:
    """Per (video, day) counts of the logged views, added chunk by chunk (exact integer sums).

    Chunks must hold disjoint users (the user chunks of ``big_matrix``), so distinct-user counts add up
    across chunks.
    """

    def __init__(self, world: _World) -> None:
        self.world = world
        self.cells = world.n_items * N_DAYS
        self.counts = {name: np.zeros(self.cells, dtype=np.int64) for name in _OUTCOMES}
        self.users = {name: np.zeros(self.cells, dtype=np.int64) for name in _OUTCOMES}
        self.play_ms = np.zeros(self.cells, dtype=np.int64)
        self.seen_ms = np.zeros(self.cells, dtype=np.int64)  # sum of min(play, length)

    def add(self, views: dict[str, np.ndarray]) -> None:
        """Count one chunk of views (``user``, ``item``, ``play_ms``, ``ts_ms``, ``duration_ms``, sorted by
        user; re-logged ``duplicate`` rows, where marked, are not views and are skipped), a few users at a
        time (bounded memory)."""
        user = views["user"]
        if np.any(user[1:] < user[:-1]):
            raise ValueError("DailyCounts.add needs views sorted by user")
        lo = 0
        while lo < user.size:
            hi = min(user.size, lo + ADD_SLICE)
            if hi < user.size:  # end on a user boundary (at least one whole user)
                next_user = int(np.searchsorted(user, user[hi], side="left"))
                hi = max(next_user, int(np.searchsorted(user, user[lo], side="right")))
            self._add_users({k: v[lo:hi] for k, v in views.items() if isinstance(v, np.ndarray) and v.ndim})
            lo = hi

    def _add_users(self, views: dict[str, np.ndarray]) -> None:
        keep = ~views["duplicate"] if "duplicate" in views else np.ones(views["user"].size, dtype=bool)
        user = views["user"][keep].astype(np.int64)
        item = views["item"][keep].astype(np.int64)
        play = views["play_ms"][keep].astype(np.int64)
        dur = views["duration_ms"][keep].astype(np.int64)
        day = (views["ts_ms"][keep] - DAY0_EPOCH_S * 1000) // DAY_MS
        cell = item * N_DAYS + day
        outcomes = _outcomes(play, dur)
        for name, hit in outcomes.items():
            self.counts[name] += np.bincount(cell[hit], minlength=self.cells)
        self.play_ms += _int_sums(cell, play, self.cells)
        self.seen_ms += _int_sums(cell, np.minimum(play, dur), self.cells)
        # Distinct users per cell and outcome: group the views by (user, cell).
        pair = user * self.cells + cell
        order = np.argsort(pair, kind="stable")
        pair = pair[order]
        starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]])) if pair.size else np.zeros(0, np.int64)
        group_cell = pair[starts] % self.cells
        for name, hit in outcomes.items():
            any_hit = np.maximum.reduceat(hit[order].astype(np.int8), starts) > 0 if starts.size else np.zeros(0, bool)
            self.users[name] += np.bincount(group_cell[any_hit], minlength=self.cells)

    def frame(self, story: Story, rng: np.random.Generator) -> pl.DataFrame:
        """The daily counters of every video from its upload day (or the first day) to the last, as
        KuaiRec's ``item_daily_features`` columns."""
        world = self.world
        n_i = world.n_items
        first = np.maximum(world.upload_day, 0)
        n_rows_v = N_DAYS - first
        item = np.repeat(np.arange(n_i), n_rows_v)
        offsets = np.arange(item.size) - np.repeat(np.cumsum(n_rows_v) - n_rows_v, n_rows_v)
        day = first[item] + offsets
        cell = item * N_DAYS + day
        n = item.size
        outside = self.counts["play"].sum() - self.counts["play"][cell].sum()
        if outside:
            raise RuntimeError(f"{outside} logged views fall before their video's upload day")

        # The platform audience: exposure from the feed's popularity, the video's age and the weekday
        # (never from the appeal or its drift: those act only through the views' outcomes), Poisson plays.
        age = (day - world.upload_day[item]).astype(np.float64)
        weekend = ((day + 6) % 7 >= 5).astype(np.float64)  # Jul 5 2020 was a Sunday
        exposure = pm.exp(world.pop[item] * PLATFORM_POP + age * -0.01)
        n_platform = pm.poisson(rng, exposure * (PLATFORM_PLAYS * (1.0 + weekend * 0.1)))
        platform = _platform_views(world, story, item, day, n_platform, rng)

        def total(name: str) -> np.ndarray:
            return self.counts[name][cell] + platform[name]

        def users(name: str) -> np.ndarray:  # the platform audience: one view per viewer
            return self.users[name][cell] + platform[name]

        def binom(count: np.ndarray, p: float) -> np.ndarray:
            return pm.binomial(rng, count, p)

        play, complete, valid = total("play"), total("complete"), total("valid")
        long_play, short_play = total("long"), total("short")
        play_ms = self.play_ms[cell] + platform["play_ms"]
        seen_ms = self.seen_ms[cell] + platform["seen_ms"]
        unplayed = pm.poisson(rng, play * UNPLAYED_SHOWS)
        show = play + unplayed
        events = {
            name: binom(complete, rates[0]) + binom(valid - complete, rates[1]) + binom(play - valid, rates[2])
            for name, rates in EVENT_RATES.items()
        }
        negative = {name: binom(short_play, a) + binom(play - short_play, b) for name, (a, b) in NEGATIVE_RATES.items()}
        like, comment, collect = events["like"], events["comment"], events["collect"]
        click_like = binom(like, 0.55)
        cancel_like = binom(like, 0.1)
        direct = binom(comment, 0.75)
        delete_comment = binom(comment, 0.05)
        cancel_collect = binom(collect, 0.3)
        has_collect = day >= COLLECT_FROM_DAY

        def collect_col(values: np.ndarray) -> pl.Series:
            return pl.Series(values.astype(np.float64)).set(pl.Series(~has_collect), None)

        static = _static_attributes(world, rng)
        duration_known = static.pop("duration_known")
        dur_col = pl.Series(world.duration_ms[item].astype(np.float64)).set(pl.Series(~duration_known[item]), None)
        # play_progress: the share of the video seen, sum of min(play, length) / (plays x length),
        # rounded to 6 decimals (a short exact decimal for every value).
        progress = np.where(play > 0, seen_ms / np.maximum(play * world.duration_ms[item], 1), 0.0)
        columns: dict[str, Any] = {
            Columns.item: item.astype(np.int32),
            Columns.date: _yyyymmdd(day),
            **{name: values[item] for name, values in static.items()},
            Columns.video_duration: dur_col,
            "show_cnt": show,
            "show_user_num": users("play") + binom(unplayed, 0.9),
            "play_cnt": play,
            "play_user_num": users("play"),
            Columns.play_duration: play_ms,
            "complete_play_cnt": complete,
            "complete_play_user_num": users("complete"),
            "valid_play_cnt": valid,
            "valid_play_user_num": users("valid"),
            "long_time_play_cnt": long_play,
            "long_time_play_user_num": users("long"),
            "short_time_play_cnt": short_play,
            "short_time_play_user_num": users("short"),
            "play_progress": np.rint(progress * 1e6) / 1e6,
            "comment_stay_duration": pm.poisson(rng, (comment + events["comment_like"]) * 20_000.0),
            "like_cnt": like,
            "like_user_num": binom(like, 0.97),
            "click_like_cnt": click_like,
            "double_click_cnt": like - click_like,
            "cancel_like_cnt": cancel_like,
            "cancel_like_user_num": binom(cancel_like, 0.95),
            "comment_cnt": comment,
            "comment_user_num": binom(comment, 0.9),
            "direct_comment_cnt": direct,
            "reply_comment_cnt": comment - direct,
            "delete_comment_cnt": delete_comment,
            "delete_comment_user_num": binom(delete_comment, 0.9),
            "comment_like_cnt": events["comment_like"],
            "comment_like_user_num": binom(events["comment_like"], 0.6),
            "follow_cnt": events["follow"],
            "follow_user_num": binom(events["follow"], 0.99),
            "cancel_follow_cnt": np.zeros(n, dtype=np.int64),
            "cancel_follow_user_num": np.zeros(n, dtype=np.int64),
            "share_cnt": events["share"],
            "share_user_num": binom(events["share"], 0.9),
            "download_cnt": events["download"],
            "download_user_num": binom(events["download"], 0.9),
            "report_cnt": negative["report"],
            "report_user_num": binom(negative["report"], 0.9),
            "reduce_similar_cnt": negative["reduce_similar"],
            "reduce_similar_user_num": binom(negative["reduce_similar"], 0.9),
            "collect_cnt": collect_col(collect),
            "collect_user_num": collect_col(binom(collect, 0.95)),
            "cancel_collect_cnt": collect_col(cancel_collect),
            "cancel_collect_user_num": collect_col(binom(cancel_collect, 0.95)),
        }
        frame = pl.DataFrame(columns)
        return frame.with_columns(
            pl.Series("upload_dt", static_upload_dt(world).gather(item)),
            pl.Series("video_tag_name", "tag_" + pl.Series(columns["video_tag_id"]).cast(pl.String)),
        ).select(ITEM_DAILY_COLUMNS)


def _int_sums(cell: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact integer sums of ``values`` (int64, each below 2**31) per cell: two 31-bit halves summed in float64."""
    high, low = values >> 16, values & 0xFFFF
    return (np.rint(np.bincount(cell, weights=high, minlength=size)).astype(np.int64) << 16) + np.rint(
        np.bincount(cell, weights=low, minlength=size)
    ).astype(np.int64)


def _platform_views(
    world: _World, story: Story, item: np.ndarray, day: np.ndarray, n_views: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Counts by outcome (and play / seen milliseconds) of ``n_views[r]`` platform views of row ``r``."""
    n_rows = item.size
    out = {name: np.zeros(n_rows, dtype=np.int64) for name in (*_OUTCOMES, "play_ms", "seen_ms")}
    activity_cdf = np.cumsum(world.activity) / pm.fsum(world.activity)
    activity_cdf[-1] = 1.0
    log_stay = float(pm.log(np.array([1.0 - 1.0 / MEAN_SESSION_POSITION]))[0])
    ends = np.cumsum(n_views)
    start_row = 0
    while start_row < n_rows:
        # Rows whose views fit in one chunk (at least one row).
        base = ends[start_row - 1] if start_row else 0
        stop_row = max(start_row + 1, int(np.searchsorted(ends, base + PLATFORM_CHUNK, side="right")))
        rows = np.repeat(np.arange(start_row, stop_row), n_views[start_row:stop_row])
        n = rows.size
        if n:
            v_item, v_day = item[rows], day[rows]
            v_user = np.minimum(np.searchsorted(activity_cdf, pm.uniform(rng, n), side="right"), world.n_users - 1)
            ts_ms = (DAY0_EPOCH_S * 1000 + v_day * DAY_MS + _day_rhythm_ms(n, rng)).astype(np.int64)
            position = np.floor(pm.log(1.0 - pm.uniform(rng, n)) / log_stay)
            inter = pair_interaction(world, v_user, v_item)
            eta, skip_shift = story.location(world, v_user, v_item, v_day, ts_ms, inter, position)
            dur = world.duration_ms[v_item]
            play = _sample_play_ms(eta, skip_shift, dur, rng)
            local = rows - start_row
            width = stop_row - start_row
            for name, hit in _outcomes(play, dur).items():
                out[name][start_row:stop_row] += np.bincount(local[hit], minlength=width)
            out["play_ms"][start_row:stop_row] += _int_sums(local, play, width)
            out["seen_ms"][start_row:stop_row] += _int_sums(local, np.minimum(play, dur), width)
        start_row = stop_row
    return out


def _static_attributes(world: _World, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-video columns that do not change by day (drawn once per video)."""
    n_i = world.n_items
    author = world.author if world.author is not None else rng.integers(0, max(1, int(0.7 * n_i)), n_i)
    video_type = np.where(pm.uniform(rng, n_i) < 0.995, "NORMAL", "AD")
    upload_types = np.array(["ShortImport", "ShortCamera", "PictureSet", "Kmovie", "LongImport", "LongCamera"])
    upload_type = upload_types[rng.choice(6, n_i, p=[0.38, 0.2, 0.12, 0.12, 0.13, 0.05])]
    sizes = np.array([[720, 1280], [1080, 1920], [576, 1024], [720, 720], [886, 1015], [1280, 720], [368, 640]])
    size = sizes[rng.choice(len(sizes), n_i, p=[0.55, 0.1, 0.1, 0.08, 0.05, 0.07, 0.05])]
    music = np.where(pm.uniform(rng, n_i) < 0.25, 0, rng.integers(100_000, 4_000_000_000, n_i))
    tag_ids = np.stack([rng.permutation(3_000)[:3] for _ in range(N_CATEGORY_TAGS)])  # 3 fine-grained ids per tag
    video_tag_id = tag_ids[world.tag_lists[:, 0], rng.integers(0, 3, n_i)]
    duration_known = pm.uniform(rng, n_i) >= 0.17  # the real file leaves some durations empty
    return {
        "author_id": author,
        "video_type": video_type,
        "upload_type": upload_type,
        "visible_status": np.full(n_i, "public"),
        "video_width": size[:, 0],
        "video_height": size[:, 1],
        "music_id": music,
        "video_tag_id": video_tag_id,
        "duration_known": duration_known,
    }


def static_upload_dt(world: _World) -> pl.Series:
    """Upload date of every video as ``yyyy-mm-dd``."""
    return pl.from_epoch(
        pl.Series(DAY0_EPOCH_S * 1000 + world.upload_day * DAY_MS + UTC8_MS), time_unit="ms"
    ).dt.strftime("%Y-%m-%d")
