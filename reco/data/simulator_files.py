"""Writing the KuaiRec files: the interaction text layout, CSV writers and the static side files.

``big_matrix`` / ``small_matrix`` rows in KuaiRec's text formats, and ``user_features``,
``item_categories`` and ``social_network`` drawn with the real files' cardinalities. See docs/simulator.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import polars as pl

from reco import portable_math as pm
from reco.data.simulator_model import DAY0_EPOCH_S, DAY_MS, N_DAYS, UTC8_MS, SimulatorProfile, _World
from reco.io import atomic_path
from reco.schema import (
    INTERACTION_COLUMNS,
    ITEM_CATEGORY_COLUMNS,
    SOCIAL_NETWORK_COLUMNS,
    USER_FEATURE_COLUMNS,
    Columns,
)


# ==============================================================================================
# writing
# ==============================================================================================
def _interaction_frame(views: dict[str, np.ndarray], *, date_as_float: bool) -> pl.DataFrame:
    """The KuaiRec text layout: local time string, yyyymmdd date, epoch seconds with ms."""
    duration = views["duration_ms"]
    null = pl.Series(views["null_time"])
    local = pl.from_epoch(pl.Series(views["ts_ms"] + UTC8_MS), time_unit="ms")
    date = pl.Series(_yyyymmdd((views["ts_ms"] + UTC8_MS) // DAY_MS - (DAY0_EPOCH_S * 1000 + UTC8_MS) // DAY_MS))
    frame = pl.DataFrame(
        {
            Columns.user: views["user"].astype(np.int32),
            Columns.item: views["item"].astype(np.int32),
            Columns.play_duration: views["play_ms"],
            Columns.video_duration: duration,
            Columns.time: local.dt.strftime("%Y-%m-%d %H:%M:%S%.3f"),
            Columns.date: date.cast(pl.Float64) if date_as_float else date,
            Columns.timestamp: views["ts_ms"] / 1000.0,
            Columns.watch_ratio: views["play_ms"] / duration,
        }
    )
    if null.any():
        frame = frame.with_columns(
            pl.when(null).then(None).otherwise(pl.col(c)).alias(c)
            for c in (Columns.time, Columns.date, Columns.timestamp)
        )
    return frame.select(INTERACTION_COLUMNS)


def _yyyymmdd(day: np.ndarray) -> np.ndarray:
    """Local date as the integer yyyymmdd of day offsets from 2020-07-05 (July to September)."""
    d = np.arange(N_DAYS)
    table = np.where(d < 27, 20200705 + d, np.where(d < 58, 20200801 + d - 27, 20200901 + d - 58))
    return table[day].astype(np.int32)


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, include_header=True, line_terminator="\n")


@contextmanager
def _csv_appender(path: Path) -> Iterator[IO[bytes]]:
    """An open binary handle on a temporary sibling of ``path``, renamed onto it on success."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        yield handle


def _append_csv(frame: pl.DataFrame, handle: IO[bytes], header: bool) -> None:
    frame.write_csv(handle, include_header=header, line_terminator="\n")



# Value frequencies of the real user_features.csv columns with few values ({value: count});
# None is an empty field.
_USER_CATEGORICAL: Final[dict[str, dict[int | None, int]]] = {
    "is_lowactive_period": {0: 7173, 1: 3},
    "is_live_streamer": {0: 7127, 1: 49},
    "is_video_author": {0: 5959, 1: 1217},
    "onehot_feat0": {0: 4361, 1: 2815},
    "onehot_feat1": {1: 3082, 4: 1096, 3: 949, 6: 825, 2: 736, 5: 483, 0: 3, 7: 2},
    "onehot_feat4": {1: 3257, 0: 2055, 2: 1195, 3: 314, None: 201, 4: 78, 5: 44, 6: 20, 7: 8, 8: 1, 9: 1, 11: 1},
    "onehot_feat5": {0: 7160, 6: 5, 8: 2, 3: 2, 5: 2, 9: 1, 2: 1, 4: 1, 7: 1, 1: 1},
    "onehot_feat6": {1: 4040, 0: 3120, 2: 16},
    "onehot_feat9": {6: 1728, 3: 1352, 5: 1250, 4: 1138, 1: 1108, 2: 582, 0: 18},
    "onehot_feat10": {2: 3761, 3: 1682, 4: 920, 0: 812, 1: 1},
    "onehot_feat11": {0: 6665, 2: 473, 1: 38},
    "onehot_feat12": {0: 4978, 1: 2121, None: 77},
    "onehot_feat13": {0: 6358, 1: 743, None: 75},
    "onehot_feat14": {0: 6428, 1: 673, None: 75},
    "onehot_feat15": {0: 6970, 1: 132, None: 74},
    "onehot_feat16": {0: 6975, 1: 127, None: 74},
    "onehot_feat17": {0: 6999, 1: 103, None: 74},
}
# Many-valued columns: value range 0..n-1 with a Zipf-like popularity over a shuffled order.
_USER_MANY_VALUED: Final[dict[str, int]] = {
    "onehot_feat2": 30, "onehot_feat3": 1076, "onehot_feat7": 47, "onehot_feat8": 340
}  # fmt: skip
_FOLLOW_RANGES: Final = ((0, "0"), (10, "(0,10]"), (50, "(10,50]"), (100, "(50,100]"), (150, "(100,150]"),
                         (250, "(150,250]"), (500, "(250,500]"), (None, "500+"))  # fmt: skip
_FANS_RANGES: Final = ((0, "0"), (9, "[1,10)"), (99, "[10,100)"), (999, "[100,1k)"), (4999, "[1k,5k)"),
                       (9999, "[5k,1w)"), (99_999, "[1w,10w)"), (None, "10w+"))  # fmt: skip
_FRIEND_RANGES: Final = ((0, "0"), (4, "[1,5)"), (29, "[5,30)"), (59, "[30,60)"), (119, "[60,120)"),
                         (249, "[120,250)"), (None, "250+"))  # fmt: skip
_REGISTER_RANGES: Final = ((14, "0-14"), (30, "15-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"),
                           (365, "181-365"), (730, "366-730"), (None, "730+"))  # fmt: skip


def _lognormal(rng: np.random.Generator, median: float, sd: float, n: int) -> np.ndarray:
    return pm.exp(pm.normal(rng, n) * sd + float(pm.log(np.array([median]))[0]))


def _range_label(
    values: np.ndarray, ranges: tuple[tuple[int | None, str], ...], rng: np.random.Generator
) -> np.ndarray:
    """Bucket labels from a slightly different snapshot of the value (as in the real file)."""
    changed = pm.uniform(rng, values.size) < 0.1
    snapshot = np.where(changed, np.rint(values * _lognormal(rng, 1.0, 0.4, values.size)), values)
    uppers = np.array([u for u, _ in ranges[:-1]])
    labels = np.array([label for _, label in ranges])
    return labels[np.searchsorted(uppers, snapshot, side="left")]


def _draw_table(table: dict[int | None, int], n: int, rng: np.random.Generator) -> pl.Series:
    values = list(table)
    p = np.array([table[v] for v in values], dtype=np.float64)
    idx = np.searchsorted(np.cumsum(p) / p.sum(), pm.uniform(rng, n), side="right")
    codes = np.array([-1 if v is None else v for v in values])[idx]
    return pl.Series(codes, dtype=pl.Int64).set(pl.Series(codes == -1), None)


def _user_features(world: _World, rng: np.random.Generator) -> pl.DataFrame:
    n = world.n_users
    # Activity drives the degree: the least active are middle/high_active, a few are UNKNOWN.
    rank = np.argsort(np.argsort(world.activity, kind="stable"), kind="stable") / max(n - 1, 1)
    degree = np.where(
        rank < 28 / 7176, "middle_active", np.where(rank < (28 + 938) / 7176, "high_active", "full_active")
    )
    degree = np.where(pm.uniform(rng, n) < 118 / 7176, "UNKNOWN", degree)
    follow = np.minimum(np.floor(_lognormal(rng, 33.0, 1.9, n)), 2100).astype(np.int64)
    follow[pm.uniform(rng, n) < 0.002] = 0
    fans = np.where(pm.uniform(rng, n) < 0.3, 0, np.floor(_lognormal(rng, 4.0, 1.3, n))).astype(np.int64)
    friends = np.where(pm.uniform(rng, n) < 0.6, 0, np.ceil(_lognormal(rng, 2.0, 1.1, n))).astype(np.int64)
    register = np.clip(np.rint(_lognormal(rng, 240.0, 0.75, n)), 15, 2245).astype(np.int64)
    columns: dict[str, Any] = {
        Columns.user: np.arange(n, dtype=np.int32),
        Columns.user_active_degree: degree,
        "follow_user_num": follow,
        "follow_user_num_range": _range_label(follow, _FOLLOW_RANGES, rng),
        "fans_user_num": fans,
        "fans_user_num_range": _range_label(fans, _FANS_RANGES, rng),
        "friend_user_num": friends,
        "friend_user_num_range": _range_label(friends, _FRIEND_RANGES, rng),
        "register_days": register,
        "register_days_range": _range_label(register, _REGISTER_RANGES, rng),
    }
    for name, table in _USER_CATEGORICAL.items():
        columns[name] = _draw_table(table, n, rng)
    for name, n_values in _USER_MANY_VALUED.items():
        p = 1.0 / pm.exp(pm.log(np.arange(1, n_values + 1, dtype=np.float64)) * 0.8)
        order = rng.permutation(n_values)
        columns[name] = order[np.searchsorted(np.cumsum(p) / p.sum(), pm.uniform(rng, n), side="right")].astype(np.int64)
    return pl.DataFrame(columns).select(USER_FEATURE_COLUMNS)


def _item_categories(world: _World) -> pl.DataFrame:
    tags = pl.Series(world.tag_lists.astype(np.int64).tolist(), dtype=pl.List(pl.Int64))
    feat = tags.list.eval(pl.element().filter(pl.element() >= 0).cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.item: np.arange(world.n_items, dtype=np.int32), Columns.feat: "[" + feat + "]"}
    ).select(ITEM_CATEGORY_COLUMNS)


def _social_network(world: _World, prof: SimulatorProfile, rng: np.random.Generator) -> pl.DataFrame:
    """A small symmetric friendship graph among a few users (KuaiRec lists 472, 1.42 friends on average, at most 5)."""
    n_social = min(world.n_users, max(2, round(prof.social_share * world.n_users)))
    members = np.sort(rng.permutation(world.n_users)[:n_social])
    # Everyone listed has a friend: a random pairing of the members (a triple if their number is
    # odd), plus a few extra friendships, for ~1.4 friends on average.
    order = rng.permutation(n_social)
    src = order[0 : n_social - 1 : 2]
    dst = order[1:n_social:2]
    if n_social % 2:
        src, dst = np.append(src, order[-1]), np.append(dst, order[0])
    extra = round(0.2 * n_social)
    extra_src = rng.integers(0, n_social, extra)
    extra_dst = (extra_src + rng.integers(1, n_social, extra)) % n_social  # never oneself
    src, dst = np.concatenate([src, extra_src]), np.concatenate([dst, extra_dst])
    edges = pl.DataFrame(
        {"a": members[np.concatenate([src, dst])], "b": members[np.concatenate([dst, src])]}
    ).unique(maintain_order=True)
    grouped = edges.group_by("a", maintain_order=True).agg(pl.col("b")).sort("a")
    friend_lists = grouped["b"].list.eval(pl.element().cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.user: grouped["a"].cast(pl.Int32), Columns.friend_list: "[" + friend_lists + "]"}
    ).select(SOCIAL_NETWORK_COLUMNS)
