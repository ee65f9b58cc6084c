"""The reproducibility contract across CPU code paths (docs/same-results.md).

The tiny pipeline runs under numpy's default SIMD path, with the widest targets off (AVX-512 on
x86) and with every dispatch target off (no AVX2/FMA on x86), and once more with one polars thread.
``ingest``, ``prepare`` and ``split`` must give byte-identical outputs under every setting; so must
the models and metrics on this machine (the settings change numpy's kernels, not OpenBLAS's, which
only the ALS fit uses: see reco/models/als.py for why its factors agree anyway). Where a model
output differs, every headline metric must stay within ``METRIC_TOLERANCE``.

Each setting is a copy of the session's ``tiny_pipeline`` (built from scratch under the default
path) with ``seed_spread.seeds: []``: the default setting keeps the build's outputs (only
``seed_spread`` and ``report`` rerun, for the empty spread), every other setting reruns every stage
with ``dvc repro --force`` under its environment. Leaving out the seed runs loses no code path: they
are the same stage scripts with another ``--seed`` (test_pipeline.py shows a seed run with the
headline's seed is the headline, byte for byte), and ``seed_spread`` only sums with ``math.fsum``
and takes a correctly rounded square root, which no SIMD target changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cpu_paths import cpu_path_settings, describe_settings
from project_copy import copy_built, dvc, merge_params, subprocess_env

DATA_OUTPUTS = ("data/raw", "data/prepared", "data/split", "metrics/data_quality.json", "metrics/split_summary.json")
METRIC_TOLERANCE = 0.002  # docs/same-results.md's bound on any model's NDCG@10 and MAP@10 across machines
SETTINGS = {**cpu_path_settings(), "one_polars_thread": {"POLARS_MAX_THREADS": "1"}}
NO_SEED_RUNS = {"seed_spread": {"seeds": []}}
SEED_RUNS = "data/seeds"  # where the seed runs write (dvc.yaml's seed_als and seed_ranker)
REPRO_LOG = "repro.log"  # beside each setting's copy: what its `dvc repro` printed


def digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/ and metrics/."""
    found = {}
    for top in ("data", "models", "metrics"):
        for path in sorted((workdir / top).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                found[path.relative_to(workdir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def seed_run_folders(workdir: Path) -> list[Path]:
    """``data/seeds/N`` for each seed run found (``data/seeds`` itself holds a README, seed_spread's dep)."""
    return sorted(path for path in (workdir / SEED_RUNS).iterdir() if path.is_dir())


def without_seed_runs(workdir: Path) -> None:
    """Set ``seed_spread.seeds: []`` and delete the seed runs' folders (no stage writes them any more)."""
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(merge_params(yaml.safe_load(path.read_text()), NO_SEED_RUNS), sort_keys=False))
    for run in seed_run_folders(workdir):
        shutil.rmtree(run)


@pytest.fixture(scope="module")
def runs(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each setting's copy, its ``dvc repro`` done; the settings' runs are independent, so they run at once."""
    workdirs = {name: copy_built(tiny_pipeline, tmp_path_factory.mktemp(name) / "repo") for name in SETTINGS}
    started = []
    for name, env in SETTINGS.items():
        without_seed_runs(workdirs[name])
        # the build ran under the default path: its outputs are the reference; the others rerun everything
        args = [sys.executable, "-m", "dvc", "repro", *(() if name == "default" else ("--force",))]
        with open(workdirs[name].parent / REPRO_LOG, "w") as log:
            env_for_run = subprocess_env(env)
            process = subprocess.Popen(args, cwd=workdirs[name], env=env_for_run, stdout=log, stderr=subprocess.STDOUT)
        started.append((name, process))
    for name, process in started:
        returncode = process.wait(timeout=1800)
        assert returncode == 0, f"{name}: dvc repro failed:\n{(workdirs[name].parent / REPRO_LOG).read_text()[-4000:]}"
    return workdirs


def test_every_setting_ran_every_stage_but_the_seed_runs(runs: dict[str, Path]) -> None:
    # Guards the fixture: the forced runs reran every stage, the default one only what the empty spread
    # changed, and no seed run is left.
    for setting, workdir in runs.items():
        stages = set(dvc("stage", "list", "--name-only", cwd=workdir).stdout.split())
        assert {"ingest", "split", "train_ranker", "evaluate@test", "report"} <= stages, setting
        assert not any(stage.startswith(("seed_als", "seed_ranker")) for stage in stages), stages
        ran = set(re.findall(r"Running stage '([^']+)'", (workdir.parent / REPRO_LOG).read_text()))
        assert ran == ({"seed_spread", "report"} if setting == "default" else stages), setting
        assert json.loads(dvc("status", "--json", cwd=workdir).stdout) == {}, setting
        assert seed_run_folders(workdir) == [], setting
        assert json.loads((workdir / "metrics" / "seed_spread.json").read_text())["seeds"] == [], setting


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
