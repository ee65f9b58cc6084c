"""Where the benchmark lives, where its results go, and the units it reports in."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# The bare fits re-run the entry script in a subprocess (``--worker``).
ENTRY_SCRIPT: Final = REPO_ROOT / "benchmarks" / "pipeline_benchmark.py"
DEFAULT_OUT_DIR: Final = REPO_ROOT / "benchmarks"
RESULTS_JSON: Final = "results.json"
RESULTS_MD: Final = "RESULTS.md"
# 2 adds optional keys (run.engine, run.failed, stage.sampled, scaling.disk, scaling_by_engine,
# parallel, cpu_paths); a schema-1 file still renders as before.
SCHEMA_VERSION: Final = 2

MIB: Final = 1024**2
GIB: Final = 1024**3

DEFAULT_TIMEOUT_S: Final = 3600.0
LOG_TAIL_CHARS: Final = 3000
