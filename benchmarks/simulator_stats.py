"""Run the simulator's ``full`` profile, time it and hold its files against KuaiRec's published figures.

Every published figure comes from ``../shared/kuairec-real/STATISTICS.md`` (the KuaiRec authors'
statistics notebook, a public pipeline's data summary of the real files, and its per-duration
watch-ratio quantiles). The simulated figures are computed here from the written CSV files, the
way those sources computed them (exact duplicates dropped where they did). Writes
``benchmarks/simulator_stats.json`` and prints a Markdown table.

Usage::

    .venv/bin/python benchmarks/simulator_stats.py [--profile full] [--seed 20200705] [--scale 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reco.data.simulator import simulate  # noqa: E402
from reco.io import write_json  # noqa: E402
from reco.schema import Columns, RawFiles  # noqa: E402

# Bucket edges (s) and 80th percentiles of watch_ratio of the real big_matrix views before
# 2020-08-30 (STATISTICS.md, "The duration effect"); buckets with fewer than MIN_BUCKET_VIEWS
# simulated views are reported but not held to the tolerance.
DURATION_EDGES_S = (3.5, 4.0, 4.6, 5.3, 6.1, 7.0, 8.1, 9.3, 10.7, 12.3, 14.1, 16.2, 18.6, 21.4, 24.7, 28.4, 32.6,
                    37.5, 43.1, 49.6, 57.0, 65.6, 75.4, 86.7, 114.7, 131.9, 151.7, 174.5)  # fmt: skip
REAL_P80 = (3.089, 2.622, 2.307, 2.056, 1.862, 1.690, 1.486, 1.295, 1.143, 1.029, 0.913, 0.784, 0.664, 0.571, 0.488,
            0.423, 0.366, 0.305, 0.276, 0.246, 0.211, 0.191, 0.163, 0.140, 0.109, 0.096, 0.077, 0.072, 0.051)  # fmt: skip
MIN_BUCKET_VIEWS = 5_000
P80_TOLERANCE = 0.25
TRAINING_BEFORE = 20200830

PUBLISHED: dict[str, Any] = {
    "users": 7_176,
    "items": 10_728,
    "big rows": 12_530_806,
    "big exact duplicates": 968_004,
    "big rows after dropping exact duplicates": 11_562_802,
    "big distinct (user, video) pairs": "~10.30M (density 0.1338)",
    "big pairs also in small": 0,
    "big watch_ratio p50 / p99 / max (deduplicated)": "0.7255 / 4.7948 / 573.46",
    "big watch_ratio <= 5: mean, p25, p50, p75": "0.851, 0.311, 0.716, 1.162",
    "big video_duration ms: min, p25, p50, p75, max": "140, 7434, 9636, 12179, 315072",
    "big plays per user: min, p25, p50, mean, p75, max": "100, 883, 1846.5, 1746.2, 2461, 16015",
    "big (user, date) cells": 188_322,
    "big plays per user-day: p25, p50, mean, p75, max": "19, 42, 66.5, 83, 3268",
    "small rows": 4_676_570,
    "small users x items": "1,411 x 3,327",
    "small density": 0.9962,
    "small null timestamps": 181_992,
    "small watch_ratio p50 / p99 / max": "0.7692 / 3.5851 / 571.52",
    "small watch_ratio <= 5: mean, p25, p50, p75": "0.855, 0.466, 0.766, 1.114",
    "small video_duration ms: min, p25, p50, p75, max": "3067, 7523, 9600, 11934, 315072",
    "small (user, date) cells": 86_671,
    "small share watch_ratio >= 1": "about a third",
    "median seconds played": 7.5,
    "item_daily rows": 343_341,
    "tags per video: mean / max": "1.183 / 4",
    "social_network: users, friends mean / max": "472, 1.42 / 5",
    "user_active_degree full_active share": round(6_092 / 7_176, 3),
    "rows from 2020-08-30 repeating a pair seen before": 0.1375,
    "rows from 2020-08-30 of videos not seen before": 0.125,
    "duration curve: worst relative error of the p80 (buckets >= 5,000 views)": f"<= {P80_TOLERANCE} (target)",
}


def _q(series: pl.Series, *quantiles: float) -> list[float]:
    return [round(float(series.quantile(q, "linear")), 4) for q in quantiles]


def _fmt(values: list[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def duration_curve(dedup: pl.DataFrame) -> list[dict[str, Any]]:
    """p80 of watch_ratio per real duration bucket, training views (before 2020-08-30) only."""
    training = dedup.filter(pl.col(Columns.date) < TRAINING_BEFORE)
    bucket = np.searchsorted(np.array(DURATION_EDGES_S) * 1000, training[Columns.video_duration].to_numpy(), side="right")
    table = (
        training.select(Columns.watch_ratio)
        .with_columns(pl.Series("bucket", bucket))
        .group_by("bucket")
        .agg(pl.len().alias("views"), pl.col(Columns.watch_ratio).quantile(0.8, "linear").alias("p80"))
        .sort("bucket")
    )
    rows = []
    for b, views, p80 in table.iter_rows():
        real = REAL_P80[b]
        rows.append({
            "from_s": 0.0 if b == 0 else DURATION_EDGES_S[b - 1], "views": int(views), "p80": round(float(p80), 4),
            "real_p80": real, "relative_error": round(float(p80) / real - 1.0, 4),
        })  # fmt: skip
    return rows


def simulated_figures(out: Path, stats: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The published figures, computed on the simulated files in ``out``."""
    schema = {Columns.time: pl.String}
    big = pl.read_csv(out / RawFiles.big_matrix, schema_overrides=schema)
    small = pl.read_csv(out / RawFiles.small_matrix, schema_overrides=schema)
    dedup = big.unique(maintain_order=True)
    pairs = dedup.select(Columns.user, Columns.item).unique()
    wr = dedup[Columns.watch_ratio]
    le5 = big.filter(pl.col(Columns.watch_ratio) <= 5)[Columns.watch_ratio]
    plays = big.group_by(Columns.user).len()["len"]
    per_day = big.group_by(Columns.user, Columns.date).len()["len"]
    swr = small[Columns.watch_ratio]
    sle5 = small.filter(pl.col(Columns.watch_ratio) <= 5)[Columns.watch_ratio]
    training = dedup.filter(pl.col(Columns.date) < TRAINING_BEFORE)
    window = dedup.filter(pl.col(Columns.date) >= TRAINING_BEFORE)
    repeat = window.join(training.select(Columns.user, Columns.item).unique(), on=[Columns.user, Columns.item], how="semi")
    new_video = window.join(training.select(Columns.item).unique(), on=Columns.item, how="anti")
    users = pl.read_csv(out / RawFiles.user_features, columns=[Columns.user_active_degree])
    social = pl.read_csv(out / RawFiles.social_network)
    friends = social[Columns.friend_list].str.count_matches(",") + 1
    tags = pl.read_csv(out / RawFiles.item_categories)[Columns.feat].str.count_matches(",") + 1
    curve = duration_curve(dedup)
    held = [row for row in curve if row["views"] >= MIN_BUCKET_VIEWS]
    n_small_users, n_small_items = small[Columns.user].n_unique(), small[Columns.item].n_unique()
    figures = {
        "users": stats["users"],
        "items": stats["items"],
        "big rows": big.height,
        "big exact duplicates": big.height - dedup.height,
        "big rows after dropping exact duplicates": dedup.height,
        "big distinct (user, video) pairs": f"{pairs.height / 1e6:.2f}M (density {pairs.height / (stats['users'] * stats['items']):.4f})",
        "big pairs also in small": pairs.join(small.select(Columns.user, Columns.item), on=[Columns.user, Columns.item], how="semi").height,
        "big watch_ratio p50 / p99 / max (deduplicated)": " / ".join(f"{v:g}" for v in [*_q(wr, 0.5, 0.99), round(float(wr.max()), 2)]),
        "big watch_ratio <= 5: mean, p25, p50, p75": _fmt([round(float(le5.mean()), 3), *_q(le5, 0.25, 0.5, 0.75)]),
        "big video_duration ms: min, p25, p50, p75, max": _fmt(
            [int(big[Columns.video_duration].min()), *_q(big[Columns.video_duration], 0.25, 0.5, 0.75), int(big[Columns.video_duration].max())]
        ),
        "big plays per user: min, p25, p50, mean, p75, max": _fmt(
            [int(plays.min()), *_q(plays, 0.25, 0.5), round(float(plays.mean()), 1), *_q(plays, 0.75), int(plays.max())]
        ),
        "big (user, date) cells": per_day.len(),
        "big plays per user-day: p25, p50, mean, p75, max": _fmt(
            [*_q(per_day, 0.25, 0.5), round(float(per_day.mean()), 1), *_q(per_day, 0.75), int(per_day.max())]
        ),
        "small rows": small.height,
        "small users x items": f"{n_small_users:,} x {n_small_items:,}",
        "small density": round(small.height / (n_small_users * n_small_items), 4),
        "small null timestamps": small[Columns.timestamp].null_count(),
        "small watch_ratio p50 / p99 / max": " / ".join(f"{v:g}" for v in [*_q(swr, 0.5, 0.99), round(float(swr.max()), 2)]),
        "small watch_ratio <= 5: mean, p25, p50, p75": _fmt([round(float(sle5.mean()), 3), *_q(sle5, 0.25, 0.5, 0.75)]),
        "small video_duration ms: min, p25, p50, p75, max": _fmt(
            [int(small[Columns.video_duration].min()), *_q(small[Columns.video_duration], 0.25, 0.5, 0.75), int(small[Columns.video_duration].max())]
        ),
        "small (user, date) cells": small.drop_nulls(Columns.date).group_by(Columns.user, Columns.date).len().height,
        "small share watch_ratio >= 1": round(float((swr >= 1).mean()), 3),
        "median seconds played": round(float(big[Columns.play_duration].median()) / 1000, 2),
        "item_daily rows": stats["item_daily_rows"],
        "tags per video: mean / max": f"{float(tags.mean()):.3f} / {int(tags.max())}",
        "social_network: users, friends mean / max": f"{social.height}, {float(friends.mean()):.2f} / {int(friends.max())}",
        "user_active_degree full_active share": round(float((users[Columns.user_active_degree] == "full_active").mean()), 3),
        "rows from 2020-08-30 repeating a pair seen before": round(repeat.height / window.height, 4),
        "rows from 2020-08-30 of videos not seen before": round(new_video.height / window.height, 4),
        "duration curve: worst relative error of the p80 (buckets >= 5,000 views)": round(
            max(abs(row["relative_error"]) for row in held), 3
        ),
    }
    return figures, curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--seed", type=int, default=20200705)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="write the files here instead of a temporary folder")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("simulator_stats.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kuairec-sim-") as tmp:
        out = args.keep or Path(tmp)
        started = time.perf_counter()
        stats = simulate(out, profile=args.profile, seed=args.seed, scale=args.scale)
        wall = time.perf_counter() - started
        peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        simulated, curve = simulated_figures(out, stats)

    report = {
        "profile": args.profile,
        "seed": args.seed,
        "scale": args.scale,
        "wall_seconds": round(wall, 2),
        "peak_rss_gib": round(peak_rss_gib, 3),
        "file_bytes": sizes,
        "simulated": simulated,
        "published": PUBLISHED,
        "duration_curve": curve,
        "summary": stats,
    }
    write_json(report, args.json)

    print(f"profile `{args.profile}`, seed {args.seed}, scale {args.scale}: "
          f"{wall:.1f} s wall (simulation), peak RSS {peak_rss_gib:.2f} GiB\n")  # fmt: skip
    print("| statistic | simulated | KuaiRec (published) |")
    print("|---|---:|---:|")
    for key, published in PUBLISHED.items():
        print(f"| {key} | {simulated[key]} | {published} |")
    print("\n| length from (s) | views | p80 simulated | p80 real | relative error |")
    print("|---:|---:|---:|---:|---:|")
    for row in curve:
        print(f"| {row['from_s']} | {row['views']:,} | {row['p80']} | {row['real_p80']} | {row['relative_error']:+.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
