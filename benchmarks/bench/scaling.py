"""The scaling table: each stage's time, peak RSS and the disk footprint per ``data.scale``, and their growth.

Growth = value at the high scale / value at the low scale (:func:`growth_scales`): a stage that
grows linearly with the data shows the ratio of the scales (exponent 1), a constant cost 1
(exponent 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .disk import DISK_PARTS

# The disk rows of the scaling table: disk_report()["bytes"] parts, then all three (each inode once).
DISK_ROWS: Final = (*DISK_PARTS, "combined_unique")


def growth_scales(scales: Sequence[float]) -> tuple[float, float]:
    """The pair of scales the growth ratio compares: 1 and the largest scale above 1 when 1 ran, else the two largest.

    Examples
    --------
    >>> growth_scales([0.25, 0.5, 1, 2])
    (1.0, 2.0)
    >>> growth_scales([1, 2, 5, 10])
    (1.0, 10.0)
    >>> growth_scales([0.25, 0.5])
    (0.25, 0.5)
    """
    ordered = sorted(set(float(s) for s in scales))
    if len(ordered) < 2:
        raise ValueError(f"a scaling table needs at least two scales, got {list(scales)}")
    if 1.0 in ordered and ordered[-1] > 1.0:
        return 1.0, ordered[-1]
    return ordered[-2], ordered[-1]


def _ratio(values: Mapping[str, float | None], low: float, high: float) -> float | None:
    a, b = values.get(str(low)), values.get(str(high))
    return b / a if a and b is not None else None


def _exponent(ratio: float | None, low: float, high: float) -> float | None:
    return math.log(ratio) / math.log(high / low) if ratio and ratio > 0 else None


def scaling_series(run: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{row name: {wall_s, peak_rss_bytes, command_wall_s, command_peak_rss_bytes}}`` of one run."""
    rows: dict[str, dict[str, float | None]] = {}
    for row in run["stages"]:
        cmd = row.get("command") or {}
        rows[row["stage"]] = {"wall_s": row["wall_s"], "peak_rss_bytes": row["peak_rss_bytes"],
                              "command_wall_s": cmd.get("wall_s"), "command_peak_rss_bytes": cmd.get("peak_rss_bytes")}  # fmt: skip
    whole = run.get("whole_repro")
    if whole:
        rows["whole dvc repro --force"] = {
            "wall_s": whole["wall_s"],
            "peak_rss_bytes": whole["peak_rss_bytes"],
            "command_wall_s": whole.get("commands_wall_s"),
            "command_peak_rss_bytes": max((c["peak_rss_bytes"] for c in whole.get("commands") or []), default=None),
        }
    fits = [*run["bare"]["als"], *([run["bare"]["lightgbm"]] if run["bare"].get("lightgbm") else [])]
    for row in fits:
        rows[f"bare {row['fit']} fit"] = {"wall_s": row["fit_s"], "peak_rss_bytes": row["peak_rss_bytes"],
                                          "command_wall_s": None, "command_peak_rss_bytes": None}  # fmt: skip
    return rows


SCALING_MEASURES: Final = ("wall_s", "command_wall_s", "peak_rss_bytes", "command_peak_rss_bytes")




def disk_series(run: Mapping[str, Any]) -> dict[str, int | None]:
    """``{part: bytes}`` of one run's disk report (:data:`DISK_ROWS`; None where not measured)."""
    disk = run.get("disk") or {}
    sizes = dict(disk.get("bytes") or {})
    sizes["combined_unique"] = disk.get("combined_unique_bytes")
    return {part: sizes.get(part) for part in DISK_ROWS}


def build_scaling(
    runs: Sequence[Mapping[str, Any]], failed: Sequence[Mapping[str, Any]] = (), engine: str | None = None
) -> dict[str, Any]:
    """Per stage (plus whole repro and bare fits): each measure at each scale and its growth; disk per scale.

    For every measure in ``SCALING_MEASURES`` a row holds ``{measure: {scale: value}}`` and
    ``{measure}_ratio`` = value(high) / value(low) for the scales of :func:`growth_scales`; time
    measures also get ``{measure}_exponent`` = log(ratio) / log(high / low) (1 = linear in the
    data, 0 = constant). For bare fits, ``wall_s`` is the fit time. ``disk`` has one row per
    :data:`DISK_ROWS` entry with ``bytes`` per scale and ``ratio``.

    ``runs`` are the complete runs (one per scale); ``failed`` the runs that failed, listed in
    ``failed_scales`` with the step that failed; ``engine`` is recorded when the runs compared engines.
    """
    by_scale = {float(run["scale"]): scaling_series(run) for run in runs}
    disk_by_scale = {float(run["scale"]): disk_series(run) for run in runs}
    scales = sorted(by_scale)
    low, high = growth_scales(scales)
    names = list(dict.fromkeys(name for scale in scales for name in by_scale[scale]))
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name}
        for measure in SCALING_MEASURES:
            values = {str(s): by_scale[s].get(name, {}).get(measure) for s in scales}
            row[measure] = values
            row[f"{measure}_ratio"] = _ratio(values, low, high)
            if "wall" in measure:
                row[f"{measure}_exponent"] = _exponent(row[f"{measure}_ratio"], low, high)
        rows.append(row)
    disk_rows = []
    for part in DISK_ROWS:
        values = {str(s): disk_by_scale[s][part] for s in scales}
        disk_rows.append({"name": part, "bytes": values, "ratio": _ratio(values, low, high)})
    scaling: dict[str, Any] = {"scales": scales, "ratio_from_scale": low, "ratio_to_scale": high, "rows": rows,
                               "disk": disk_rows}  # fmt: skip
    if failed:
        scaling["failed_scales"] = [
            {"scale": float(run["scale"]), "step": (run.get("failed") or {}).get("step")} for run in failed
        ]
    if engine is not None:
        scaling["engine"] = engine
    return scaling
