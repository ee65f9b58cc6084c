"""k parallel experiments: the same stages in k independent copies at once, against one copy alone.

Every copy is prepared the same way (the stages upstream of the measured set run first, serially,
untimed). Then, for each k of the levels (ascending, 1 always included), the measured stages' outputs
and every copy's DVC cache are deleted and k copies run the stage set at the same moment, each
stage as ``dvc repro --force --single-item``. The fair share of k runs on C cores is
``alone × max(1, k × threads_per_run / C)``: the time each run should take if the cores were split
evenly; the target (:data:`.targets.PARALLEL_MAX_FAIR_SHARE_RATIO`) bounds wall / fair share.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import REPO_ROOT
from .machine import thread_settings
from .measuring import BenchmarkError, child_env, write_shell_wrapper
from .pipeline_runs import StageFailed, run_stages, wipe_outputs
from .targets import evaluate_parallel_target
from .workspace import make_workspace, release_scratch, select_stages, stage_graph, topological_order, upstream_stages


def parse_levels(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``: distinct numbers of simultaneous runs, each at least 1, ascending.

    >>> parse_levels("2,1,4")
    [1, 2, 4]
    """
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        levels = []
    if not levels or levels[0] < 1:
        raise ValueError(f"--parallel expects comma-separated counts of at least 1, got {text!r}")
    return levels


def threads_per_run(settings: Mapping[str, Any], stages: Sequence[str], cores: int) -> tuple[int, dict[str, int]]:
    """Threads one run of ``stages`` uses at most, capped at ``cores``, and where each count comes from.

    Polars runs in every stage (``POLARS_MAX_THREADS``, else one thread per core); ``train_als``
    stages add ALS's ``num_threads``, ``train_ranker`` the ranker's; the dask engine its workers ×
    threads per worker.

    >>> threads_per_run({"als_num_threads": 2, "ranker_num_threads": 4, "env": {"POLARS_MAX_THREADS": "1"}},
    ...                 ["train_ranker"], 8)
    (4, {'polars': 1, 'ranker': 4})
    """
    env = settings.get("env") or {}
    sources = {"polars": int(env["POLARS_MAX_THREADS"]) if env.get("POLARS_MAX_THREADS") else cores}
    if any(s.split("@")[0] == "train_als" for s in stages) and settings.get("als_num_threads"):
        sources["als"] = int(settings["als_num_threads"])
    if "train_ranker" in stages and settings.get("ranker_num_threads"):
        sources["ranker"] = int(settings["ranker_num_threads"])
    if settings.get("compute_engine") == "dask":
        sources["dask"] = int(settings.get("compute_workers") or 1) * int(
            settings.get("compute_threads_per_worker") or 1
        )
    return min(cores, max(sources.values())), sources


def _run_copy(
    work: Path,
    logs: Path,
    wrapper: Path,
    stages: Sequence[str],
    timeout_s: float,
    label: str,
    barrier: threading.Barrier,
    out: dict[str, Any],
) -> None:
    """One copy's run of ``stages`` (a thread's body): fills ``out`` with its measures or its failure."""
    rows: list[dict[str, Any]] = []
    barrier.wait()
    started = time.perf_counter()
    try:
        run_stages(work, logs, wrapper, timeout_s, rows, stages, label=label, sample_tree=False, live=False)
    except Exception as error:  # noqa: BLE001 - a thread must record its failure, never lose it
        step = f"stage {rows[-1]['stage']}" if isinstance(error, StageFailed) and rows else "running the stages"
        out["failed"] = {"step": step, "error": f"{type(error).__name__}: {error}"}
    out.update(
        wall_s=time.perf_counter() - started,
        cpu_s=sum(row["cpu_s"] for row in rows),
        peak_rss_bytes=max((row["peak_rss_bytes"] for row in rows), default=None),
        stages=rows,
    )


def run_parallel(
    profile: str,
    scale: float,
    overrides: Mapping[str, Mapping[str, Any]],
    wanted: Sequence[str] | None,
    levels: Sequence[int],
    timeout_s: float,
    tmp_dir: str | None = None,
    keep: bool = False,
    threads_override: int | None = None,
) -> dict[str, Any]:
    """Measure k parallel experiments for every k in ``levels`` (see the module docstring).

    ``wanted`` names the stage set (None: the whole pipeline; ``train_als`` = every
    ``train_als@KEY``); ``threads_override`` replaces the derived threads per run. Returns the raw
    measurements; a failure is recorded in ``failed`` (setup) or in the copy that failed.
    """
    levels = sorted({1, *levels})
    root = Path(tempfile.mkdtemp(prefix=f"reco-bench-parallel-{profile}-{scale:g}-", dir=tmp_dir))
    print(f"parallel experiments: profile {profile}, scale {scale:g}, k in {levels}, in {root}", file=sys.stderr)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    result: dict[str, Any] = {
        "profile": profile,
        "scale": float(scale),
        "overrides": dict(overrides),
        "levels": levels,
        "cores": cores,
        "rounds": [],
        "failed": None,
    }
    ok = False
    try:
        copies = []
        for index in range(levels[-1]):
            work, params = make_workspace(REPO_ROOT, root / f"copy-{index}", overrides)
            copies.append((work, root / f"copy-{index}" / "logs", write_shell_wrapper(root / f"copy-{index}")))
        names, edges = stage_graph(copies[0][0])
        order = topological_order(names, edges)
        stages = select_stages(order, wanted) if wanted else order
        setup = upstream_stages(order, edges, stages)
        # A measured stage that a setup stage needs (train_als@ranker under features@train when
        # the set is train_als@ranker,train_ranker) runs in the setup too, before it.
        prerequisites = set(upstream_stages(order, edges, setup))
        setup = [name for name in order if name in setup or name in prerequisites]
        settings = thread_settings(params, child_env())
        derived, sources = threads_per_run(settings, stages, cores)
        result.update(
            stages=stages,
            setup_stages=setup,
            thread_settings=settings,
            threads_per_run_sources=sources,
            threads_per_run=threads_override or derived,
            threads_per_run_overridden=threads_override is not None,
        )
        for index, (work, logs, wrapper) in enumerate(copies):
            if setup:
                run_stages(
                    work,
                    logs / "setup",
                    wrapper,
                    timeout_s,
                    stages=setup,
                    label=f"setup copy {index}: ",
                    sample_tree=False,
                )
        for k in levels:
            for work, _, _ in copies[:k]:
                wipe_outputs(work, stages)
            barrier = threading.Barrier(k)
            outs: list[dict[str, Any]] = [{"copy": index, "failed": None} for index in range(k)]
            threads = [
                threading.Thread(
                    target=_run_copy,
                    args=(
                        work,
                        logs / f"k{k}",
                        wrapper,
                        stages,
                        timeout_s,
                        f"k={k} copy {index}: ",
                        barrier,
                        outs[index],
                    ),
                )
                for index, (work, logs, wrapper) in enumerate(copies[:k])
            ]
            loadavg_before = [round(x, 2) for x in os.getloadavg()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            result["rounds"].append(
                {
                    "k": k,
                    "loadavg_before": loadavg_before,
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    "copies": outs,
                }
            )
        ok = True
    except BenchmarkError as error:
        step = f"setup, stage {error.row['stage']}" if isinstance(error, StageFailed) else "setup"
        result["failed"] = {"step": step, "error": str(error)}
    finally:
        release_scratch(root, keep or not ok)
    return result


def summarize_parallel(parallel: Mapping[str, Any]) -> dict[str, Any]:
    """Each run's wall time against running alone and against its fair share; the target.

    The alone run is copy 0 of the k=1 round. For every round: ``fair_share_s`` = alone ×
    max(1, k × threads_per_run / cores); for every copy ``slowdown_vs_alone`` = wall / alone,
    ``fair_share_ratio`` = wall / fair share (None for a failed copy or without an alone time).
    """
    cores, threads = parallel["cores"], parallel.get("threads_per_run") or parallel["cores"]
    alone_round = next((rnd for rnd in parallel["rounds"] if rnd["k"] == 1), None)
    alone = alone_round["copies"][0] if alone_round else None
    if alone is not None and alone.get("failed"):
        alone = None
    rounds = []
    for rnd in parallel["rounds"]:
        k = rnd["k"]
        share = alone["wall_s"] * max(1.0, k * threads / cores) if alone else None
        copies = []
        for copy in rnd["copies"]:
            measured = alone is not None and not copy.get("failed")
            copies.append(
                {
                    "copy": copy["copy"],
                    "wall_s": copy.get("wall_s"),
                    "cpu_s": copy.get("cpu_s"),
                    "failed": copy.get("failed"),
                    "slowdown_vs_alone": copy["wall_s"] / alone["wall_s"] if alone is not None and measured else None,
                    "fair_share_ratio": copy["wall_s"] / share if measured and share else None,
                }
            )
        rounds.append({"k": k, "fair_share_s": share, "copies": copies})
    return {
        "alone_s": alone["wall_s"] if alone else None,
        "rounds": rounds,
        "target": evaluate_parallel_target(rounds, alone),
    }
