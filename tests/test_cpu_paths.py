"""The reproducibility contract across CPU code paths (docs/same-results.md).

The tiny pipeline runs from scratch under numpy's default SIMD path, with the widest targets off
(AVX-512 on x86) and with every dispatch target off (no AVX2/FMA on x86), and once more with one
polars thread. ``ingest``, ``prepare`` and ``split`` must give byte-identical outputs under every
setting; so must the models and metrics on this machine (the settings change numpy's kernels, not
OpenBLAS's, which only the ALS fit uses: see reco/models/als.py for why its factors agree anyway).
Where a model output differs, every headline metric must stay within ``METRIC_TOLERANCE``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cpu_paths import cpu_path_settings, describe_settings
from project_copy import copy_project, dvc, init_repo
from test_pipeline import TINY_OVERRIDES

DATA_OUTPUTS = ("data/raw", "data/prepared", "data/split", "metrics/data_quality.json", "metrics/split_summary.json")
METRIC_TOLERANCE = 0.002  # docs/same-results.md's bound on any model's NDCG@10 and MAP@10 across machines
SETTINGS = {**cpu_path_settings(), "one_polars_thread": {"POLARS_MAX_THREADS": "1"}}


def digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/ and metrics/."""
    found = {}
    for top in ("data", "models", "metrics"):
        for path in sorted((workdir / top).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                found[path.relative_to(workdir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    workdirs = {}
    for name, env in SETTINGS.items():
        workdir = copy_project(tmp_path_factory.mktemp(name), overrides=TINY_OVERRIDES, extra_dirs=("plots",))
        init_repo(workdir, f"tiny pipeline, {name}")
        dvc("repro", cwd=workdir, env=env)
        workdirs[name] = workdir
    return workdirs


def test_the_settings_reach_other_numpy_paths() -> None:
    described = describe_settings()
    assert set(described) == {"default", "widest_off", "baseline_only"}
    # on any machine with a dispatch target, switching them all off is a different path
    assert described["baseline_only"]["env"] or not described["widest_off"]["env"]


def test_data_stages_are_byte_identical_on_every_path(runs: dict[str, Path]) -> None:
    reference = digests(runs["default"])
    data = {name: h for name, h in reference.items() if name.startswith(DATA_OUTPUTS)}
    assert any(n.startswith("data/raw/") for n in data) and any(n.startswith("data/split/") for n in data)
    for setting, workdir in runs.items():
        other = digests(workdir)
        differing = sorted(n for n in data if other.get(n) != data[n])
        assert differing == [], f"{setting}: {differing}"


def test_models_and_metrics_are_identical_or_within_the_tolerance(runs: dict[str, Path]) -> None:
    reference = digests(runs["default"])
    ref_metrics = json.loads((runs["default"] / "metrics" / "metrics.json").read_text())
    for setting, workdir in runs.items():
        other = digests(workdir)
        differing = sorted(n for n in set(reference) | set(other) if reference.get(n) != other.get(n))
        if not differing:
            continue
        metrics = json.loads((workdir / "metrics" / "metrics.json").read_text())
        for block in ("validation", "test"):
            for model, values in ref_metrics[block]["models"].items():
                for key in ("ndcg_at_10", "map_at_10"):
                    gap = abs(values[key] - metrics[block]["models"][model][key])
                    assert gap <= METRIC_TOLERANCE, f"{setting}: {block} {model} {key} moved {gap:.4f} ({differing[:5]})"


def test_dvc_lock_is_the_same_on_every_path(runs: dict[str, Path]) -> None:
    locks = {setting: (workdir / "dvc.lock").read_text() for setting, workdir in runs.items()}
    assert len(set(locks.values())) == 1, sorted(locks)
