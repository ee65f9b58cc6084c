"""``compute.engine: dask`` through the stage scripts: candidates, features and evaluate as in local mode.

The local run is the session's ``tiny_pipeline`` (``TINY_OVERRIDES``, built once with ``dvc repro`` in
local mode; read only). A copy of it, with its candidates, features and evaluation outputs deleted,
reruns candidates, features and evaluate with ``compute.engine: dask`` on a LocalCluster of 2 worker
processes (``scheduler: null``, loopback only) and the same ``compute.user_partitions`` as the local
run (several, so every partitioned step has several): the engine is the only difference. Both
evaluate the same ranker (the one trained in local mode: ``lightgbm.dask`` may differ, and is tested
in test_ranker_dask.py), so every output of those stages must be byte-identical between the engines.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_built, merge_params, run

COMPUTE = {"engine": "dask", "scheduler": None, "workers": 2, "threads_per_worker": 1}
ON_ENGINE = ("candidates", "features", "evaluate")  # the stages rerun with engine dask
COMPARED = ("data/candidates", "data/features", "data/evaluation", "metrics/candidates", "metrics/blocks")


def stage_commands(workdir: Path, names: tuple[str, ...]) -> list[list[str]]:
    """The argv of dvc.yaml's stages ``names``, in file order (a topological order), ``foreach`` expanded."""
    spec = yaml.safe_load((workdir / "dvc.yaml").read_text(encoding="utf-8"))
    commands = []
    for name, stage in spec["stages"].items():
        if name not in names:
            continue
        cmds = [stage["cmd"]] if "foreach" not in stage else []
        for key, item in stage.get("foreach", {}).items():
            cmd = stage["do"]["cmd"].replace("${key}", key)
            for field, value in item.items():
                cmd = cmd.replace("${item." + field + "}", str(value))
            cmds.append(cmd)
        for cmd in cmds:
            argv = cmd.split()
            assert argv[0] == "python", cmd
            commands.append([sys.executable, *argv[1:]])
    return commands


def run_stages(workdir: Path, names: tuple[str, ...]) -> None:
    for argv in stage_commands(workdir, names):
        run(argv, cwd=workdir, check=True, timeout=600)


def set_compute(workdir: Path) -> None:
    """Switch ``workdir``'s params to :data:`COMPUTE` (``user_partitions`` kept as it is)."""
    path = workdir / "params.yaml"
    params = merge_params(yaml.safe_load(path.read_text(encoding="utf-8")), {"compute": COMPUTE})
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under :data:`COMPARED`, by path relative to ``workdir`` (DVC's .gitignore left out)."""
    return {
        path.relative_to(workdir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for top in COMPARED
        for path in sorted((workdir / top).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


@pytest.fixture(scope="module")
def engines(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny pipeline's candidates, features and evaluation with each engine, on the same upstream outputs."""
    compute = yaml.safe_load((tiny_pipeline / "params.yaml").read_text(encoding="utf-8"))["compute"]
    assert compute["engine"] == "local" and compute["user_partitions"] >= 2, compute
    dask = copy_built(tiny_pipeline, tmp_path_factory.mktemp("engines") / "dask")
    set_compute(dask)
    for top in COMPARED:  # the dask copy recomputes all of it: nothing of local mode's may stay behind
        shutil.rmtree(dask / top)
    run_stages(dask, ON_ENGINE)
    return {"local": tiny_pipeline, "dask": dask}


def test_candidates_features_and_evaluation_are_byte_identical(engines: dict[str, Path]) -> None:
    local, dask = digests(engines["local"]), digests(engines["dask"])
    assert {
        "data/candidates/test.parquet",
        "data/features/train/table.parquet",
        "data/evaluation/test/per_user.parquet",
        "metrics/blocks/validation/metrics.json",
    } <= set(local)
    assert local.keys() == dask.keys()
    assert [name for name in local if local[name] != dask[name]] == []
