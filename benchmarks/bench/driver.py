"""One benchmark run in a fresh copy, and the plan of runs and experiments a command line asks for."""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bare_fits import run_bare_fits
from .config import REPO_ROOT, SCHEMA_VERSION
from .cpu_paths import run_cpu_paths
from .derive import derive
from .disk import disk_report
from .machine import machine_info, source_revision
from .measuring import BenchmarkError, write_shell_wrapper
from .parallel import run_parallel
from .pipeline_runs import StageFailed, run_noop_repro, run_stages, run_whole_repro
from .workspace import make_workspace, merge_overrides, release_scratch, run_overrides


@dataclass(frozen=True)
class RunSpec:
    """What one run measures: a simulator profile and scale, and the ``compute.engine`` (None: params.yaml's)."""

    profile: str
    scale: float
    engine: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """How runs are made (the command line's options that every run shares)."""

    extra: Mapping[str, Mapping[str, Any]]  # --set overrides
    cache_type: str | None = None
    timeout_s: float = 3600.0
    bare_repeats: int = 3
    whole_repro: bool = True
    keep: bool = False
    tmp_dir: str | None = None


@dataclass(frozen=True)
class ExperimentOptions:
    """The experiments beside the runs (None / False: not asked for)."""

    parallel_levels: Sequence[int] | None = None
    parallel_stages: Sequence[str] | None = None
    parallel_threads_per_run: int | None = None
    cpu_paths: bool = False
    cpu_path_stages: Sequence[str] = ("ingest", "prepare", "split")


def plan_runs(profile: str, scales: Sequence[float], engines: Sequence[str] | None) -> list[RunSpec]:
    """One run per scale, and per engine within a scale when engines are compared.

    >>> plan_runs("tiny", [1.0, 2.0], ["local", "dask"])[1]
    RunSpec(profile='tiny', scale=1.0, engine='dask')
    """
    per_scale: Sequence[str | None] = engines or [None]
    return [RunSpec(profile, float(scale), engine) for scale in scales for engine in per_scale]


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def benchmark_run(spec: RunSpec, options: RunOptions) -> dict[str, Any]:
    """One complete benchmark run in a fresh temporary copy of the repository.

    A step that fails does not raise: the run keeps what it measured and gets ``failed``
    (``step``, ``error`` with the log's tail), and its copy is kept for inspection.
    """
    engine_override = {"compute": {"engine": spec.engine}} if spec.engine else None
    overrides = run_overrides(spec.profile, spec.scale, merge_overrides(options.extra, engine_override))
    engine_label = f", engine {spec.engine}" if spec.engine else ""
    root = Path(
        tempfile.mkdtemp(
            prefix=f"reco-bench-{spec.profile}-{spec.scale:g}{'-' + spec.engine if spec.engine else ''}-",
            dir=options.tmp_dir,
        )
    )
    logs = root / "logs"
    print(f"run: profile {spec.profile}, scale {spec.scale:g}{engine_label} in {root}", file=sys.stderr)
    run: dict[str, Any] = {"profile": spec.profile, "scale": float(spec.scale)}
    if spec.engine:
        run["engine"] = spec.engine
    run.update(overrides=overrides, cache_type_override=options.cache_type, loadavg_before=_loadavg())
    step = "preparing the copy"
    try:
        work, _ = make_workspace(REPO_ROOT, root, overrides, options.cache_type)
        wrapper = write_shell_wrapper(root)
        step, run["stages"] = "the per-stage runs", []
        run_stages(work, logs, wrapper, options.timeout_s, run["stages"])
        run["stage_sum_s"] = sum(row["wall_s"] for row in run["stages"])
        step = "the bare fits"
        run["bare"] = run_bare_fits(work, logs, options.timeout_s, options.bare_repeats)
        step = "the whole dvc repro"
        run["whole_repro"] = run_whole_repro(work, logs, wrapper, options.timeout_s) if options.whole_repro else None
        step = "the no-op dvc repro"
        run["noop_repro"] = run_noop_repro(work, logs, wrapper)
        step = "measuring the disk"
        run["disk"] = disk_report(work)
        run["loadavg_after"] = _loadavg()
        run["workdir"] = str(work) if options.keep else None
    except BenchmarkError as error:
        if isinstance(error, StageFailed) and run.get("stages"):
            step = f"stage {run['stages'][-1]['stage']}"
        print(f"  run failed at {step}: {str(error).partition(chr(10))[0]}", file=sys.stderr)
        run["failed"] = {"step": step, "error": str(error)}
        run["loadavg_after"] = _loadavg()
    failed = bool(run.get("failed"))
    release_scratch(root, options.keep or failed, " (failed run: logs in logs/)" if failed else "")
    return run


def new_results(command: str) -> dict[str, Any]:
    """An empty results dict: when, how, on what machine and source."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "source": source_revision(REPO_ROOT),
        "runs": [],
        "scaling": None,
    }


def run_benchmark(
    command: str,
    plan: Sequence[RunSpec],
    options: RunOptions,
    experiments: ExperimentOptions,
    experiment_spec: RunSpec,
) -> dict[str, Any]:
    """Every planned run, then the experiments (at ``experiment_spec``'s profile and scale), derived parts computed."""
    results = new_results(command)
    for spec in plan:
        results["runs"].append(benchmark_run(spec, options))
    overrides = run_overrides(experiment_spec.profile, experiment_spec.scale, options.extra)
    if experiments.parallel_levels:
        results["parallel"] = run_parallel(
            experiment_spec.profile,
            experiment_spec.scale,
            overrides,
            experiments.parallel_stages,
            experiments.parallel_levels,
            options.timeout_s,
            options.tmp_dir,
            options.keep,
            experiments.parallel_threads_per_run,
        )
    if experiments.cpu_paths:
        results["cpu_paths"] = run_cpu_paths(
            experiment_spec.profile,
            experiment_spec.scale,
            overrides,
            experiments.cpu_path_stages,
            options.timeout_s,
            options.tmp_dir,
            options.keep,
        )
    return derive(results)
