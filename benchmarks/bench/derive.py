"""Everything computed from the stored measurements: targets, breakdowns, scaling, comparisons.

:func:`derive` runs after a benchmark and again on ``--report-only``, so a change to a target or a
summary applies to stored measurements without rerunning anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .breakdown import time_breakdown
from .cpu_paths import compare_cpu_paths
from .engines import build_engine_comparison
from .parallel import summarize_parallel
from .scaling import build_scaling
from .targets import evaluate_targets


def scaling_of(runs: Sequence[Mapping[str, Any]], engine: str | None = None) -> dict[str, Any] | None:
    """The scaling table of ``runs`` (one engine's), or None with fewer than two completed scales."""
    complete = [run for run in runs if not run.get("failed")]
    if len({float(run["scale"]) for run in complete}) < 2:
        return None
    return build_scaling(complete, [run for run in runs if run.get("failed")], engine)


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Recompute, in place, every derived part of ``results``; return it.

    Complete runs get ``breakdown`` and ``targets``; ``scaling`` (runs without an engine) or
    ``scaling_by_engine``; ``engines`` (runs that set an engine); ``parallel.summary``;
    ``cpu_paths.comparison``. Keys of parts that were not measured are left out.
    """
    runs = results["runs"]
    for run in runs:
        if run.get("failed"):
            continue
        run["breakdown"] = time_breakdown(run)
        run["targets"] = evaluate_targets(run, run["breakdown"])
    engines = list(dict.fromkeys(run["engine"] for run in runs if run.get("engine")))
    if engines:
        results["scaling"] = None
        results["scaling_by_engine"] = {e: scaling_of([r for r in runs if r.get("engine") == e], e) for e in engines}
    else:
        results["scaling"] = scaling_of(runs)
        results.pop("scaling_by_engine", None)
    comparison = build_engine_comparison(runs)
    if comparison:
        results["engines"] = comparison
    else:
        results.pop("engines", None)
    if results.get("parallel"):
        results["parallel"]["summary"] = (
            None if results["parallel"].get("failed") else summarize_parallel(results["parallel"])
        )
    if results.get("cpu_paths"):
        results["cpu_paths"]["comparison"] = compare_cpu_paths(results["cpu_paths"])
    return results


def failures(results: Mapping[str, Any]) -> list[str]:
    """One line per failed run, parallel copy or CPU-path setting (empty: everything completed)."""
    lines = []
    for run in results["runs"]:
        if run.get("failed"):
            engine = f", engine {run['engine']}" if run.get("engine") else ""
            lines.append(
                f"run profile {run['profile']}, scale {float(run['scale']):g}{engine}: {run['failed']['step']}"
            )
    parallel = results.get("parallel") or {}
    if parallel.get("failed"):
        lines.append(f"parallel experiments: {parallel['failed']['step']}")
    for rnd in parallel.get("rounds") or []:
        lines += [
            f"parallel k={rnd['k']} run {c['copy']}: {c['failed']['step']}" for c in rnd["copies"] if c.get("failed")
        ]
    cpu_paths = results.get("cpu_paths") or {}
    if cpu_paths.get("failed"):
        lines.append(f"CPU paths: {cpu_paths['failed']['step']}")
    lines += [
        f"CPU path {s['name']}: {s['failed']['step']}" for s in cpu_paths.get("settings") or [] if s.get("failed")
    ]
    return lines
