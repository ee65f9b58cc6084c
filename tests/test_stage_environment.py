"""The stage package's process-wide settings for native libraries (read when they load)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _stage_environment(**overrides: str) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(overrides)
    code = "import os, stages; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OPENBLAS_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    policy, blas = out.stdout.split()
    return {"OMP_WAIT_POLICY": None if policy == "None" else policy, "OPENBLAS_NUM_THREADS": blas}


def test_stages_make_openmp_threads_sleep_while_waiting() -> None:
    assert _stage_environment() == {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}


def test_a_users_own_wait_setting_wins() -> None:
    assert _stage_environment(OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"
    # GOMP_SPINCOUNT alone tunes libgomp's spinning: the stages must not override it with a policy.
    assert _stage_environment(GOMP_SPINCOUNT="10000")["OMP_WAIT_POLICY"] is None
