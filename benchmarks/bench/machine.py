"""The machine and source a run was measured on: cores, RAM, CPU, versions, git revision, thread settings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .measuring import BenchmarkError, run_quiet

VERSION_PACKAGES: Final = ("polars", "implicit", "lightgbm", "numpy", "dvc", "scipy", "pyarrow")
# Environment variables that set how many threads a stage's libraries use, or how they wait.
THREAD_ENV_VARS: Final = (
    "POLARS_MAX_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "GOMP_SPINCOUNT", "OPENBLAS_CORETYPE",
)  # fmt: skip


def machine_info() -> dict[str, Any]:
    """Cores, RAM, CPU model, OS, Python and package versions."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    versions: dict[str, str | None] = {}
    for package in VERSION_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": int(mem.group(1)) * 1024 if mem else None,
        "cpu_model": model.group(1).strip() if model else platform.processor() or None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def source_revision(repo: Path) -> dict[str, Any]:
    """The source repository's HEAD and whether it had uncommitted changes."""
    try:
        head = run_quiet(["git", "rev-parse", "HEAD"], cwd=repo).strip()
        dirty = bool(run_quiet(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo).strip())
    except BenchmarkError:
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": dirty}


def thread_settings(params: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The thread settings a run's stages see: params (ALS, ranker, compute) and the environment.

    ``env`` values are as found (None: unset, the library's default applies: polars and OpenMP use
    every core, OMP's wait policy is the runtime's).
    """
    compute = params.get("compute") or {}
    return {
        "als_num_threads": (params.get("als") or {}).get("num_threads"),
        "ranker_num_threads": (params.get("ranker") or {}).get("num_threads"),
        "compute_engine": compute.get("engine"),
        "compute_workers": compute.get("workers"),
        "compute_threads_per_worker": compute.get("threads_per_worker"),
        "env": {name: env.get(name) for name in THREAD_ENV_VARS},
    }
