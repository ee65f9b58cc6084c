"""Where a run's time goes: the whole pipeline, the bare engine fits, and per stage what lies beyond them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def whole_pipeline_s(run: Mapping[str, Any]) -> tuple[float, str]:
    """The whole pipeline's wall time and what it is (the whole repro, else the sum of stages)."""
    whole = run.get("whole_repro")
    if whole:
        return float(whole["wall_s"]), "whole dvc repro --force from scratch"
    return float(sum(row["wall_s"] for row in run["stages"])), "sum of the per-stage dvc repro runs"


def bare_total_s(run: Mapping[str, Any]) -> float:
    """Bare ALS fits + bare LightGBM fit, seconds."""
    bare = run["bare"]
    return float(sum(row["fit_s"] for row in bare["als"]) + (bare["lightgbm"] or {}).get("fit_s", 0.0))


def time_breakdown(run: Mapping[str, Any]) -> dict[str, Any]:
    """Where the time beyond the engines goes, per stage (informational; not a target).

    For each per-stage run: ``engine_s`` = the bare fit that runs inside it (``train_als@KEY``: the
    bare ALS fit for KEY; ``train_ranker``: the bare LightGBM fit; else 0), ``dvc_s`` = DVC's own
    time (dvc repro wall - command wall), ``other_s`` = the rest of the command (start-up, I/O,
    data work). ``without_ingest_ratio`` = (whole pipeline - ingest's dvc wall) / bare fits: the
    pipeline from raw files on disk, i.e. without data acquisition (the simulator here, a download
    on real KuaiRec), shown beside the target's ratio, never instead of it.
    """
    engines = {f"train_{row['fit']}": float(row["fit_s"]) for row in run["bare"]["als"]}
    lgbm = run["bare"].get("lightgbm")
    if lgbm:
        engines["train_ranker"] = float(lgbm["fit_s"])
    rows = []
    for stage in run["stages"]:
        command = stage.get("command") or {}
        engine = engines.get(stage["stage"], 0.0)
        dvc_s = stage["wall_s"] - command["wall_s"] if command else None
        rows.append({
            "stage": stage["stage"],
            "wall_s": stage["wall_s"],
            "engine_s": engine,
            "dvc_s": dvc_s,
            "other_s": (command["wall_s"] if command else stage["wall_s"]) - engine,
        })  # fmt: skip
    whole, _ = whole_pipeline_s(run)
    bare = bare_total_s(run)
    ingest = next((row["wall_s"] for row in rows if row["stage"] == "ingest"), 0.0)
    whole_repro = run.get("whole_repro") or {}
    if whole_repro.get("commands_wall_s") is not None:
        dvc_what, dvc_total = "in the whole repro", whole_repro["wall_s"] - whole_repro["commands_wall_s"]
    else:
        dvc_what, dvc_total = "summed over the per-stage runs", sum(row["dvc_s"] or 0.0 for row in rows)
    return {
        "rows": rows,
        "whole_s": whole,
        "engine_s": bare,
        "beyond_engines_s": whole - bare,
        "ingest_s": ingest,
        "without_ingest_ratio": (whole - ingest) / bare if bare > 0 else None,
        "dvc_s": dvc_total,
        "dvc_what": dvc_what,
    }
