"""Temporary copies of the project, for tests that run stage scripts or DVC as subprocesses.

Shared by ``conftest.py`` (the tiny pipeline built once under DVC, :data:`TINY_OVERRIDES`),
``test_bad_inputs.py`` (one stage script at a time) and ``data/test_interrupted_runs.py`` (SIGKILLed
stages under DVC).

Examples
--------
>>> workdir = copy_project(tmp_path / "repo", overrides={"data": {"profile": "tiny"}})  # doctest: +SKIP
>>> init_repo(workdir, "tiny")  # git + DVC with the project's .dvc/config  # doctest: +SKIP
>>> dvc("repro", "prepare", cwd=workdir)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("reco", "stages", "selection")  # selection/: the committed log that evaluate@test depends on
DVC_FILES = ("dvc.yaml", ".dvcignore", "data/seeds/README.md")  # data/seeds/: the seed_spread stage's dep
# The tiny simulator profile every pipeline test runs (test_pipeline.py, the shared ``tiny_pipeline``
# fixture of conftest.py, the Dask, remote and CPU-path tests): small enough for CI, explicit so that a
# change of the committed params does not silently change what the tests run.
TINY_OVERRIDES: dict[str, Any] = {
    "data": {"profile": "tiny"},
    "evaluate": {"ks": [5, 10, 20], "top_k_output": 10},
    "candidates": {"n": 30, "popularity_quota": 0, "tag_popularity_quota": 0},  # ALS's list alone (the sources' test adds quotas)
    # ALS: strong confidences against the regularization, so the tiny data's factors do not shrink to zero
    # (with the full profile's chosen alpha 10 / negative weight 1 they do, and the ALS features go flat)
    "als": {"factors": 16, "iterations": 8, "regularization": 1000.0, "alpha": 50.0, "negative_weight": 50.0},
    "ranker": {"train_users": 200, "n_estimators": 60, "min_data_in_leaf": 20, "num_leaves": 15},
    # 42 is the pipeline's own als.random_state and ranker.seed: that run must reproduce the headline models
    "seed_spread": {"seeds": [1, 42]},
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment plus a git identity, this interpreter's bin first, no DVC analytics, 1 BLAS thread."""
    return {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **(extra or {}),
    }


def run(
    args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None, check: bool = False, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with :func:`subprocess_env`; with ``check``, fail the test on a non-zero exit."""
    result = subprocess.run(list(args), cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m dvc ARGS`` with this interpreter (the test's venv has DVC)."""
    return run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, check=check)


def merge_params(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with each section updated key by key from ``overrides`` (non-dict values replace)."""
    merged = {section: dict(values or {}) for section, values in params.items()}
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def write_params(workdir: Path, overrides: Mapping[str, Any]) -> None:
    """Write ``workdir/params.yaml``: the repository's params merged with ``overrides``."""
    params = merge_params(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")), overrides)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def copy_project(
    dest: Path, *, overrides: Mapping[str, Any], dvc_files: bool = True, extra_dirs: Sequence[str] = ()
) -> Path:
    """Copy the code (``reco/``, ``stages/``, ``extra_dirs``) and, with ``dvc_files``, ``dvc.yaml``.

    ``params.yaml`` is always written, from the repository's with ``overrides`` merged in.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*CODE_DIRS, *extra_dirs):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    if dvc_files:
        for name in DVC_FILES:
            if (REPO / name).exists():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    write_params(dest, overrides)
    return dest


def init_repo(workdir: Path, message: str) -> None:
    """Make ``workdir`` a git + DVC repository with the project's committed ``.dvc/config``, and commit it."""
    run(["git", "init", "-q"], cwd=workdir, check=True)
    dvc("init", "-q", cwd=workdir)
    shutil.copy2(REPO / ".dvc" / "config", workdir / ".dvc" / "config")
    dvc("config", "core.analytics", "false", cwd=workdir)
    dvc("config", "core.check_update", "false", cwd=workdir)
    run(["git", "add", "-A"], cwd=workdir, check=True)
    run(["git", "commit", "-qm", message], cwd=workdir, check=True)


def build_tiny_pipeline(dest: Path, message: str = "tiny pipeline") -> Path:
    """Copy the project with :data:`TINY_OVERRIDES` (and ``plots/``), make it a git + DVC repo, ``dvc repro``."""
    workdir = copy_project(dest, overrides=TINY_OVERRIDES, extra_dirs=("plots",))
    init_repo(workdir, message)
    dvc("repro", cwd=workdir)
    return workdir


def copy_built(src: Path, dest: Path) -> Path:
    """A full copy of a built project (``cp -a``: git, ``.dvc/cache``, outputs and their mtimes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", str(src), str(dest)], cwd=dest.parent, check=True)
    return dest
