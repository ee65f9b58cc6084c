"""Both simulator stories against KuaiRec's published statistics (``../shared/kuairec-real/STATISTICS.md``).

Each story is simulated once on the ``small`` profile (the ``tiny`` one is too small for a 99th
percentile); the tolerances are what the stories reach, stated per statistic, not a claim of a
perfect fit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.data import simulator as sim
from reco.schema import Columns, RawFiles

SEED = 7


def _numbers(cell: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", cell)]


def _published(statistics: str, section: str, figure: str) -> list[float]:
    """The numbers of the row of ``section`` whose figure starts with ``figure``."""
    body = statistics.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith(figure):
            return _numbers(cells[1])
    raise AssertionError(f"STATISTICS.md has no row {figure!r} under {section!r}")


def _duration_curve(statistics: str) -> list[tuple[float, float, float]]:
    """(low s, high s, 80th percentile of watch_ratio) per length bucket of the real big_matrix."""
    rows = []
    for line in statistics.split("## The duration effect", 1)[1].splitlines():
        match = re.fullmatch(r"\|\s*([\d.]+)[–-]([\d.]+|∞)\s*\|\s*([\d.]+)\s*\|", line.strip())
        if match:
            high = float("inf") if match[2] == "∞" else float(match[2])
            rows.append((float(match[1]), high, float(match[3])))
    return rows


@pytest.fixture(scope="module")
def statistics(kuairec_real_dir: Path) -> str:
    return (kuairec_real_dir / "STATISTICS.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=sorted(sim.STORIES))
def simulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    out = tmp_path_factory.mktemp(request.param)
    sim.simulate(out, profile="small", seed=SEED, story=request.param)
    return {
        "big": pl.read_csv(out / RawFiles.big_matrix).unique(),  # the published figures drop exact duplicates
        "small": pl.read_csv(out / RawFiles.small_matrix),
    }


@pytest.mark.parametrize(
    ("matrix", "section", "tolerances"),
    [
        ("big", "big_matrix.csv", (0.08, 0.06, 0.06, 0.08)),
        # the block's lower quartile is the loosest: the simulated block has too many quick skips
        ("small", "small_matrix.csv", (0.1, 0.13, 0.07, 0.07)),
    ],
)
def test_watch_ratio_quartiles(
    simulated: dict[str, pl.DataFrame], statistics: str, matrix: str, section: str, tolerances: tuple[float, ...]
) -> None:
    ratio = simulated[matrix][Columns.watch_ratio].to_numpy()
    body = ratio[ratio <= 5]
    ours = [float(body.mean()), *np.quantile(body, [0.25, 0.5, 0.75]).tolist()]
    real = _published(statistics, section, "watch_ratio ≤ 5")[-4:]  # mean, p25, p50, p75
    for name, a, b, tol in zip(("mean", "p25", "p50", "p75"), ours, real, tolerances, strict=True):
        assert a == pytest.approx(b, abs=tol), f"{matrix} watch_ratio <= 5 {name}: simulated {a:.3f}, real {b}"


@pytest.mark.parametrize(
    ("matrix", "section", "rel"), [("big", "big_matrix.csv", 0.25), ("small", "small_matrix.csv", 0.2)]
)
def test_watch_ratio_median_and_tail(
    simulated: dict[str, pl.DataFrame], statistics: str, matrix: str, section: str, rel: float
) -> None:
    ratio = simulated[matrix][Columns.watch_ratio].to_numpy()
    real_p50, real_p99, _ = _published(statistics, section, "watch_ratio p50 / p99 / max")[-3:]
    assert np.median(ratio) == pytest.approx(real_p50, abs=0.06)
    assert np.quantile(ratio, 0.99) == pytest.approx(real_p99, rel=rel)
    assert ratio.max() <= sim.LOOP_CAP  # the app's loop cap (KuaiRec's largest ratios sit just at it)


def test_duration_curve(simulated: dict[str, pl.DataFrame], statistics: str) -> None:
    big = simulated["big"]
    ratio = big[Columns.watch_ratio].to_numpy()
    seconds = big[Columns.video_duration].to_numpy() / 1000
    videos = big[Columns.item].to_numpy()
    errors = {}
    for low, high, real in _duration_curve(statistics):
        inside = (seconds > low) & (seconds <= high)
        # long buckets hold a handful of videos on this profile: their percentile is one video's
        if inside.sum() >= 200 and np.unique(videos[inside]).size >= 10:
            errors[(low, high)] = float(np.quantile(ratio[inside], 0.8)) / real - 1
    assert len(errors) >= 15, errors
    assert abs(errors[(10.7, 12.3)]) < 0.1  # the 80th percentile crosses 1.0 at about 11 s, as in KuaiRec
    assert float(np.median(np.abs(list(errors.values())))) < 0.15, errors
    # sessions' mid-length videos (20 s to a minute) run highest, up to about a third above KuaiRec
    assert max(abs(e) for e in errors.values()) < 0.4, errors
