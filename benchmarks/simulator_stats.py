"""Run the simulator's ``full`` profile, time it and compare its statistics with KuaiRec's.

Writes ``benchmarks/simulator_stats.json`` and prints a markdown table (simulated vs published).

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

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reco.data.simulator import simulate  # noqa: E402
from reco.io import write_json  # noqa: E402
from reco.schema import Columns, RawFiles  # noqa: E402

# Published KuaiRec 2.0 figures (paper, data summary and ARCHITECTURE.md); text where only a range is known.
PUBLISHED: dict[str, Any] = {
    "users": 7_176,
    "items": 10_728,
    "big rows": 12_530_806,
    "big exact duplicates": 968_004,
    "small rows": 4_676_570,
    "small users x items": "1,411 x 3,327",
    "small density": 0.996,
    "small null timestamps": 181_992,
    "item_daily rows": 343_341,
    "big watch_ratio median": 0.73,
    "small watch_ratio median": 0.77,
    "big watch_ratio p99": 4.8,
    "small watch_ratio p99": 3.6,
    "max watch_ratio": "~570",
    "small share watch_ratio >= 1": "~1/3",
    "big positive rate (watch_ratio > 2)": "a few % to ~10%",
    "big positive rate, shortest-duration quintile": "~2/3",
    "big positive rate, longest-duration quintile": "~0",
    "median seconds played": 7.5,
    "user_active_degree full_active share": round(6_092 / 7_176, 3),
}


def _simulated(stats: dict[str, Any], out: Path) -> dict[str, Any]:
    big, small = stats["big_matrix"], stats["small_matrix"]
    users = pl.read_csv(out / RawFiles.user_features, columns=[Columns.user_active_degree])
    full_share = (users[Columns.user_active_degree] == "full_active").mean()
    return {
        "users": stats["users"],
        "items": stats["items"],
        "big rows": big["rows"],
        "big exact duplicates": big["exact_duplicates"],
        "small rows": small["rows"],
        "small users x items": f"{small['users']:,} x {small['items']:,}",
        "small density": round(small["rows"] / (small["users"] * small["items"]), 4),
        "small null timestamps": small["null_timestamps"],
        "item_daily rows": stats["item_daily_rows"],
        "big watch_ratio median": round(big["watch_ratio_median"], 3),
        "small watch_ratio median": round(small["watch_ratio_median"], 3),
        "big watch_ratio p99": round(big["watch_ratio_p99"], 2),
        "small watch_ratio p99": round(small["watch_ratio_p99"], 2),
        "max watch_ratio": round(max(big["watch_ratio_max"], small["watch_ratio_max"]), 1),
        "small share watch_ratio >= 1": round(small["share_watch_ratio_ge_1"], 3),
        "big positive rate (watch_ratio > 2)": round(big["positive_rate_gt_2"], 3),
        "big positive rate, shortest-duration quintile": round(big["positive_rate_gt_2_shortest_quintile"], 3),
        "big positive rate, longest-duration quintile": round(big["positive_rate_gt_2_longest_quintile"], 4),
        "median seconds played": round(big["median_play_seconds"], 2),
        "user_active_degree full_active share": round(float(full_share), 3),
    }


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


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
        simulated = _simulated(stats, out)

    report = {
        "profile": args.profile,
        "seed": args.seed,
        "scale": args.scale,
        "wall_seconds": round(wall, 2),
        "peak_rss_gib": round(peak_rss_gib, 3),
        "file_bytes": sizes,
        "simulated": simulated,
        "published": PUBLISHED,
        "summary": stats,
    }
    write_json(report, args.json)

    print(f"profile `{args.profile}`, seed {args.seed}, scale {args.scale}: "
          f"{wall:.1f} s wall, peak RSS {peak_rss_gib:.2f} GiB\n")  # fmt: skip
    print("| statistic | simulated | KuaiRec (published) |")
    print("|---|---:|---:|")
    for key, published in PUBLISHED.items():
        print(f"| {key} | {_fmt(simulated[key])} | {_fmt(published)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
