"""Engines side by side: the same stages under each ``compute.engine``, per scale.

Each engine gets its own complete run per scale (``compute.engine`` set in the copy's params.yaml);
this module lines their stages up. Memory is compared three ways: ``peak_rss_bytes`` (wait4: the
largest single process, DVC included), the stage process alone and the sum over the stage's process
tree (sampled, see :mod:`.tree_memory`): with ``dask`` the stage starts a ``distributed.LocalCluster``
whose workers are child processes, so only the sum shows what the stage needs in all.
A run that failed for one engine keeps the stages it measured and its failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

ENGINES: Final = ("local", "dask")


def parse_engines(text: str) -> list[str]:
    """``"local,dask"`` -> ``["local", "dask"]`` (each a ``compute.engine`` value, no repeats).

    >>> parse_engines("local,dask")
    ['local', 'dask']
    """
    engines = [part.strip() for part in text.split(",") if part.strip()]
    if not engines or len(set(engines)) != len(engines) or any(e not in ENGINES for e in engines):
        raise ValueError(f"--engines expects distinct values among {', '.join(ENGINES)}, got {text!r}")
    return engines


def engine_cell(row: Mapping[str, Any]) -> dict[str, Any]:
    """One stage under one engine: time, wait4 peak, and the sampled stage-process / tree peaks."""
    sampled = row.get("sampled") or {}
    return {
        "wall_s": row["wall_s"],
        "returncode": row.get("returncode", 0),
        "peak_rss_bytes": row["peak_rss_bytes"],
        "stage_process_peak_rss_bytes": sampled.get("stage_process_peak_rss_bytes"),
        "stage_tree_peak_rss_bytes": sampled.get("stage_tree_peak_rss_bytes"),
        "stage_tree_max_processes": sampled.get("stage_tree_max_processes"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return b / a if a and b is not None else None


def build_engine_comparison(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Line up the runs that set an engine: per (profile, scale), per stage, one cell per engine.

    Each stage row holds ``cells`` ``{engine: engine_cell or None}`` (None: that engine's run never
    reached the stage) and, against the first engine, ``wall_ratio`` and ``tree_rss_ratio``
    ``{engine: other / first}``. Each group lists every engine's ``failed`` step (None when it
    completed) and whole-pipeline time. None when no run set an engine.
    """
    engine_runs = [run for run in runs if run.get("engine")]
    if not engine_runs:
        return None
    engines = list(dict.fromkeys(run["engine"] for run in engine_runs))
    groups: dict[tuple[str, float], dict[str, Mapping[str, Any]]] = {}
    for run in engine_runs:
        groups.setdefault((run["profile"], float(run["scale"])), {})[run["engine"]] = run
    comparison = []
    for (profile, scale), by_engine in groups.items():
        names = list(dict.fromkeys(row["stage"] for e in engines if e in by_engine for row in by_engine[e]["stages"]))
        rows = []
        for name in names:
            cells: dict[str, dict[str, Any] | None] = {}
            for engine in engines:
                row = next((r for r in (by_engine.get(engine) or {}).get("stages", []) if r["stage"] == name), None)
                cells[engine] = engine_cell(row) if row else None
            first = cells[engines[0]] or {}
            rows.append(
                {
                    "stage": name,
                    "cells": cells,
                    "wall_ratio": {e: _ratio(first.get("wall_s"), (c or {}).get("wall_s")) for e, c in cells.items()},
                    "tree_rss_ratio": {
                        e: _ratio(first.get("stage_tree_peak_rss_bytes"), (c or {}).get("stage_tree_peak_rss_bytes"))
                        for e, c in cells.items()
                    },
                }
            )
        comparison.append(
            {
                "profile": profile,
                "scale": scale,
                "runs": {
                    engine: (
                        {
                            "failed": by_engine[engine].get("failed"),
                            "whole_s": (by_engine[engine].get("whole_repro") or {}).get("wall_s"),
                        }
                        if engine in by_engine
                        else {"failed": {"step": "not run", "error": ""}, "whole_s": None}
                    )
                    for engine in engines
                },
                "rows": rows,
            }
        )
    return {"engines": engines, "groups": comparison}
