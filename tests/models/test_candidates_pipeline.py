"""The candidates stage with other sources in the list: candidates -> features -> evaluate@validation still work.

A copy of the built tiny pipeline (ALS's lists alone, the default quotas) gets nonzero
``candidates.popularity_quota`` and ``candidates.tag_popularity_quota``; the three stages of the
validation block then rerun from dvc.yaml's commands. Rows that the other sources place have no ALS
score from ALS's list; the features stage scores every pair with the ALS model itself, and evaluate
re-ranks whatever the list holds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import polars as pl
import yaml
from project_copy import merge_params, run

QUOTAS = {"popularity_quota": 8, "tag_popularity_quota": 6}
BLOCK = "validation"


def stage_command(workdir: Path, name: str, key: str) -> list[str]:
    """The argv of dvc.yaml's ``name@key`` (a ``foreach`` stage), run with this interpreter."""
    stage = yaml.safe_load((workdir / "dvc.yaml").read_text(encoding="utf-8"))["stages"][name]
    command = stage["do"]["cmd"].replace("${key}", key)
    for field, value in stage["foreach"][key].items():
        command = command.replace("${item." + field + "}", str(value))
    argv = command.split()
    assert argv[0] == "python", command
    return [sys.executable, *argv[1:]]


def test_other_sources_flow_through_features_and_evaluate(tiny_pipeline_copy: Path) -> None:
    workdir = tiny_pipeline_copy
    als_only = json.loads((workdir / "metrics" / "candidates" / f"{BLOCK}.json").read_text())
    params_file = workdir / "params.yaml"
    params = merge_params(yaml.safe_load(params_file.read_text(encoding="utf-8")), {"candidates": QUOTAS})
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    n = params["candidates"]["n"]

    run(stage_command(workdir, "candidates", BLOCK), cwd=workdir, check=True)
    summary = json.loads((workdir / "metrics" / "candidates" / f"{BLOCK}.json").read_text())
    sources = summary["sources"]
    assert {name: s["quota"] for name, s in sources.items()} == {
        "als": n - sum(QUOTAS.values()), "popularity": QUOTAS["popularity_quota"],
        "tag_popularity": QUOTAS["tag_popularity_quota"],
    }  # fmt: skip
    # ALS's own top n is what the default list was; every source's recall is a share
    assert sources["als"][f"recall_at_{n}"] == als_only[f"recall_at_{n}"]
    assert all(0 < s[f"recall_at_{n}"] <= 1 for s in sources.values())
    assert summary["users"] == als_only["users"]

    candidates = pl.read_parquet(workdir / "data" / "candidates" / f"{BLOCK}.parquet")
    assert candidates.select(pl.struct("user_id", "video_id").is_unique().all()).item()
    placed = dict(candidates.group_by("source").len().iter_rows())
    assert set(placed) == {"als", "popularity", "tag_popularity"}, placed
    outside_als = candidates.filter(pl.col("source_rank_als").is_null())
    assert outside_als.height > 0 and outside_als["als_score"].is_nan().all()

    run(stage_command(workdir, "features", BLOCK), cwd=workdir, check=True)
    table = pl.read_parquet(workdir / "data" / "features" / BLOCK / "table.parquet")
    assert table.height == candidates.height
    assert table.select(pl.col("als_score", "als_rank_pct").null_count()).row(0) == (0, 0)  # ALS scores every pair

    run(stage_command(workdir, "evaluate", BLOCK), cwd=workdir, check=True)
    metrics = json.loads((workdir / "metrics" / "blocks" / BLOCK / "metrics.json").read_text())
    assert metrics["candidates"] == {"n": n, f"recall_at_{n}": summary[f"recall_at_{n}"]}
    ranker = metrics["models"]["ranker"]["ndcg_at_10"]
    assert math.isfinite(ranker) and 0 < ranker <= 1
