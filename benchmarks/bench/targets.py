"""The benchmark's targets, their evaluation on one run, and why a missed one was missed.

Whole pipeline ≤ 1.3 × (bare ALS fits + bare LightGBM fit), whole pipeline ≤ 240 s, every stage's
peak RSS ≤ 3 GiB, no-op ``dvc repro`` ≤ 2 s, ``prepare`` ≤ 20 s, ``ingest`` ≤ 60 s. "Whole
pipeline" is the from-scratch ``dvc repro --force`` (or the sum of the stages with
``--no-whole-repro``). The absolute-time targets are defined for the full profile at scale 1; on
other runs they are still evaluated but marked informational (``applies`` False).

Parallel experiments have their own target (:data:`PARALLEL_MAX_FAIR_SHARE_RATIO`), evaluated in
:mod:`.parallel`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .breakdown import bare_total_s, time_breakdown, whole_pipeline_s
from .config import GIB

WHOLE_VS_BARE_MAX_RATIO: Final = 1.3
WHOLE_MAX_S: Final = 240.0
STAGE_RSS_MAX_BYTES: Final = 3 * GIB
NOOP_MAX_S: Final = 2.0
PREPARE_MAX_S: Final = 20.0
INGEST_MAX_S: Final = 60.0
# k parallel experiments: none more than 1.5x slower than its fair share of the cores.
PARALLEL_MAX_FAIR_SHARE_RATIO: Final = 1.5
# The absolute-time targets are stated for KuaiRec's shape: the full profile at scale 1.
ABSOLUTE_TARGETS_PROFILE: Final = "full"
ABSOLUTE_TARGETS_SCALE: Final = 1.0


def _target(name: str, measured: float, limit: float, unit: str, applies: bool, detail: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "measured": measured,
        "limit": limit,
        "unit": unit,
        "passed": bool(measured <= limit),
        "applies": applies,
        "detail": detail,
    }


# Why a stage holds what it holds at its peak, for the explanation of a missed memory target.
STAGE_MEMORY_CAUSES: Final[dict[str, str]] = {
    "ingest": "the simulator keeps the drawn views and the formatted big_matrix frame while the CSV is written",
    "prepare": "the parsed big_matrix (0.9 GiB at 1x) plus, in turn, its 7-column sort and the per-row drop-reason expressions (about 1.5 GiB more each at 1x, RSS sampled per phase)",
    "split": "the prepared big_matrix, the training set and its history / held-out parts are in memory together",
    "features@train": "the history exploded by tag (about 2.5 rows per view) is aggregated in memory",
}

RATIO_FIX: Final = (
    "Not tuning but the pipeline's shape: (1) count data acquisition apart (on real KuaiRec it is a "
    "download; here the simulator, which has its own 60 s target): the ratio without it is in the "
    "breakdown above; (2) let the data source write typed parquet next to the KuaiRec CSVs, so prepare "
    "does not parse and validate 1.5 GB of text again; (3) fuse prepare, split and the features into "
    "fewer processes, giving up part of DVC's per-stage caching (an experiment then reruns more); "
    "(4) an order-stable multi-threaded training loss inside implicit (the pipeline computes it per "
    "iteration in fixed blocks, ~0.1 s each). DVC's own time (about 0.6-1 s per stage: start-up, "
    "hashing, linking outputs into the cache) and ~0.5-1 s of interpreter and library start-up per "
    "stage process remain with any such change, so with engines this small (32 ALS factors, a ranker "
    "on 0.19M rows, both chosen on validation) the limit is out of reach for a 10-stage DVC pipeline."
)
MEMORY_FIX: Final = (
    "Stream the stage: scan the input lazily, sort and de-duplicate per range of users, and sink each "
    "range to parquet, so the peak is bounded by one range instead of growing with the logged views."
)


def explain_missed(run: Mapping[str, Any], target: Mapping[str, Any], breakdown: Mapping[str, Any]) -> dict[str, str] | None:
    """Why a missed target was missed (from this run's numbers and its :func:`time_breakdown`) and what would fix it.

    None for a met target and for an informational one (``applies`` False).
    """
    if target["passed"] or not target["applies"]:
        return None
    if target["name"].startswith("whole pipeline / "):
        biggest = sorted(breakdown["rows"], key=lambda row: -row["other_s"])[:4]
        parts = ", ".join(f"{row['stage']} {row['other_s']:.1f} s" for row in biggest)
        allowed = (WHOLE_VS_BARE_MAX_RATIO - 1) * breakdown["engine_s"]
        reason = (
            f"{breakdown['beyond_engines_s']:.1f} s of the whole {breakdown['whole_s']:.1f} s is outside the engine "
            f"fits ({breakdown['engine_s']:.1f} s), where the limit allows {allowed:.1f} s. Largest parts (per-stage "
            f"runs, excluding the fits and DVC): {parts}; DVC's own time {breakdown['dvc_what']} {breakdown['dvc_s']:.1f} s. "
            f"Data acquisition alone (ingest, {breakdown['ingest_s']:.1f} s) exceeds the allowance; without it "
            f"the ratio would be {breakdown['without_ingest_ratio']:.2f}x."
        )
        return {"reason": reason, "would_fix": RATIO_FIX}
    if target["name"] == "largest stage peak RSS":
        over = [row for row in run["stages"] if row["peak_rss_bytes"] > STAGE_RSS_MAX_BYTES]
        causes = "; ".join(
            f"{row['stage']} {row['peak_rss_bytes'] / GIB:.2f} GiB"
            + (f" ({STAGE_MEMORY_CAUSES[row['stage']]})" if row["stage"] in STAGE_MEMORY_CAUSES else "")
            for row in over
        )
        return {"reason": f"over {STAGE_RSS_MAX_BYTES / GIB:g} GiB: {causes}.", "would_fix": MEMORY_FIX}
    return {"reason": f"measured {target['measured']:.2f} {target['unit']} against {target['limit']:.2f}.", "would_fix": ""}


def evaluate_targets(run: Mapping[str, Any], breakdown: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every target of one run: measured value, limit, pass/fail, whether it applies, why it was missed.

    ``missed`` comes from :func:`explain_missed` with ``breakdown`` (default: the run's
    :func:`time_breakdown`).

    The absolute-time targets (whole ≤ 240 s, prepare ≤ 20 s, ingest ≤ 60 s) apply to the full
    profile at scale 1; elsewhere they are evaluated but ``applies`` is False (informational).
    """
    absolute = run["profile"] == ABSOLUTE_TARGETS_PROFILE and float(run["scale"]) == ABSOLUTE_TARGETS_SCALE
    whole, whole_what = whole_pipeline_s(run)
    bare = bare_total_s(run)
    stages = {row["stage"]: row for row in run["stages"]}
    heaviest = max(run["stages"], key=lambda row: row["peak_rss_bytes"])
    targets = [
        _target(
            "whole pipeline / (bare ALS fits + bare LightGBM fit)",
            whole / bare if bare > 0 else math.inf,
            WHOLE_VS_BARE_MAX_RATIO,
            "x",
            True,
            f"{whole_what}: {whole:.2f} s; bare fits: {bare:.2f} s",
        ),
        _target("whole pipeline wall time", whole, WHOLE_MAX_S, "s", absolute, whole_what),
        _target(
            "largest stage peak RSS",
            heaviest["peak_rss_bytes"] / GIB,
            STAGE_RSS_MAX_BYTES / GIB,
            "GiB",
            True,
            f"stage {heaviest['stage']} (max of DVC's and the stage command's peak)",
        ),
    ]
    noop = run.get("noop_repro")
    if noop:
        ran = noop.get("stages_run") or []
        targets.append(
            _target("no-op dvc repro", noop["wall_s"], NOOP_MAX_S, "s", True,
                    f"stages run: {', '.join(ran)}" if ran else "nothing ran")  # fmt: skip
        )
    for stage, limit in (("prepare", PREPARE_MAX_S), ("ingest", INGEST_MAX_S)):
        if stage in stages:
            targets.append(_target(f"stage {stage}", stages[stage]["wall_s"], limit, "s", absolute, "dvc repro --single-item"))
    breakdown = time_breakdown(run) if breakdown is None else breakdown
    for target in targets:
        target["missed"] = explain_missed(run, target, breakdown)
    return targets


# CPU time of a run in parallel against alone: above this, the extra wall time is mostly threads
# burning CPU (spinning or fighting over cores), not the runs waiting on memory or disk.
PARALLEL_CPU_GROWTH_SPIN: Final = 1.2
PARALLEL_SPIN_FIX: Final = (
    "The runs' threads burn CPU time instead of waiting: give each run its share of the cores "
    "(als.num_threads, ranker.num_threads and POLARS_MAX_THREADS = cores / k) and let idle OpenMP "
    "threads sleep (OMP_WAIT_POLICY=PASSIVE), then check that the alone time did not grow."
)
PARALLEL_SHARED_FIX: Final = (
    "CPU time stayed flat, so the runs wait on something besides the cores (memory bandwidth, the "
    "disk, page cache): fewer threads will not help; smaller working sets (streamed stages) or a "
    "faster disk would."
)


def evaluate_parallel_target(
    summary_rounds: Sequence[Mapping[str, Any]], alone: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The parallel-experiments target on a summary's rounds: the worst copy's wall / fair share ≤ 1.5.

    ``summary_rounds`` are :func:`.parallel.summarize_parallel`'s rounds (each copy with
    ``fair_share_ratio``, ``wall_s``, ``cpu_s``); ``alone`` is the copy that ran alone (``wall_s``,
    ``cpu_s``). The rounds with k > 1 are scored (the alone run is the reference, 1x by
    construction); without any, the k = 1 round is shown with ``applies`` False. A missed target says, from CPU time in parallel against alone, whether threads burn CPU
    (spinning / oversubscription) or the runs wait on a shared resource.
    """
    measured = [(rnd, c) for rnd in summary_rounds for c in rnd["copies"] if c.get("fair_share_ratio") is not None]
    applies = any(rnd["k"] > 1 for rnd, _ in measured)
    if applies:
        measured = [(rnd, c) for rnd, c in measured if rnd["k"] > 1]
    if not measured or alone is None:
        return {**_target("parallel experiments: wall / fair share of the cores (worst run)", math.inf,
                          PARALLEL_MAX_FAIR_SHARE_RATIO, "x", False, "nothing measured"), "missed": None}  # fmt: skip
    worst_round, worst = max(measured, key=lambda pair: pair[1]["fair_share_ratio"])
    result = _target(
        "parallel experiments: wall / fair share of the cores (worst run)", worst["fair_share_ratio"],
        PARALLEL_MAX_FAIR_SHARE_RATIO, "x", applies,
        f"k={worst_round['k']}, run {worst['copy']}: {worst['wall_s']:.2f} s against a fair share of "
        f"{worst_round['fair_share_s']:.2f} s (alone {alone['wall_s']:.2f} s)",
    )  # fmt: skip
    result["missed"] = None
    if not result["passed"] and applies:
        cpu_growth = worst["cpu_s"] / alone["cpu_s"] if alone.get("cpu_s") else None
        spinning = cpu_growth is not None and cpu_growth > PARALLEL_CPU_GROWTH_SPIN
        result["missed"] = {
            "reason": (
                f"with {worst_round['k']} runs at once run {worst['copy']} took {worst['wall_s']:.1f} s where its fair "
                f"share is {worst_round['fair_share_s']:.1f} s; its CPU time was "
                + (f"{cpu_growth:.2f}x the alone run's" if cpu_growth is not None else "not measured")
                + "."
            ),
            "would_fix": PARALLEL_SPIN_FIX if spinning else PARALLEL_SHARED_FIX,
        }
    return result
