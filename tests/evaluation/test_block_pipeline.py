"""evaluate@<block> (reco.evaluation.pipeline): every model on the block's grid, the checks, the files,
the same bytes for any user partitioning."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from reco.errors import ParamsError
from reco.evaluation.evaluate import PER_USER_SCHEMA
from reco.evaluation.layout import BlockFiles
from reco.evaluation.metrics import METRIC_NAMES
from reco.evaluation.pipeline import evaluate_block, load_block_inputs, write_block_evaluation
from reco.io import write_parquet
from reco.params import parse_section
from reco.schema import Columns

from .synthetic_blocks import KS, N_CANDIDATES, evaluate_params, make_block_inputs, write_models, write_upstream

REPO = Path(__file__).resolve().parents[2]
BASELINES = {"random", "popularity", "als", "ranker", "duration", "duration_popularity", "popularity_within_duration"}
ORACLES = {"oracle", "oracle_watch_ratio", "oracle_item", "oracle_item_watch_ratio"}


def test_every_model_is_scored_and_metrics_json_is_flat() -> None:
    evaluation = evaluate_block(make_block_inputs(), evaluate_params())
    metrics = evaluation.metrics
    assert set(metrics) == {"data", "candidates", "definitions", "models"}
    assert set(metrics["models"]) == BASELINES | ORACLES
    expected_keys = {f"{m}_at_{k}" for m in (*METRIC_NAMES, "coverage") for k in KS}
    for values in metrics["models"].values():
        assert set(values) == expected_keys
        assert all(isinstance(v, float) and v == round(v, 6) for v in values.values())  # dvc metrics diff reads them
    assert metrics["candidates"] == {"n": N_CANDIDATES, f"recall_at_{N_CANDIDATES}": 0.5}
    data = metrics["data"]
    assert (data["block"], data["users"], data["items"]) == ("test", 24, 40)
    assert data["users_unknown_to_als"] == 1
    assert data["users_evaluated"] + data["users_without_positives"] == data["users"]


def test_real_data_has_no_oracles_and_the_unknown_user_gets_popularity() -> None:
    evaluation = evaluate_block(make_block_inputs(source="kuairec"), evaluate_params())
    assert set(evaluation.metrics["models"]) == BASELINES
    per_user = evaluation.per_user.filter((pl.col("metric") == "ndcg") & (pl.col("k") == 10))
    last_user = per_user[Columns.user].max()  # the user ALS does not know
    values = {m: per_user.filter((pl.col("model") == m) & (pl.col(Columns.user) == last_user))["value"].item()
              for m in ("als", "popularity")}  # fmt: skip
    assert values["als"] == values["popularity"]


def test_block_files_hold_per_user_values_whose_means_are_metrics_json(tmp_path: Path) -> None:
    files = BlockFiles.of("validation", tmp_path)
    evaluation = evaluate_block(make_block_inputs("validation"), evaluate_params())
    write_block_evaluation(evaluation, files)
    metrics = json.loads(files.metrics_file.read_text())
    models = set(metrics["models"])
    assert set(json.loads(files.uncertainty_file.read_text())["intervals"]) == models
    assert set(json.loads(files.beyond_accuracy_file.read_text())["models"]) == models
    segments = json.loads(files.segments_file.read_text())
    assert segments["k"] == 10 and set(next(iter(segments["user_active_degree"].values()))["models"]) == models
    per_user = pl.read_parquet(files.per_user_file)
    assert per_user.schema == PER_USER_SCHEMA
    assert per_user.equals(per_user.sort("model", "metric", "k", Columns.user))
    assert per_user.select("model", "metric", "k", Columns.user).is_unique().all()
    means = per_user.group_by("model", "metric", "k").agg(pl.col("value").mean(), pl.col(Columns.user).n_unique())
    assert means.height == len(metrics["models"]) * len(METRIC_NAMES) * len(KS)
    for model, metric, k, mean, users in means.iter_rows():
        assert abs(metrics["models"][model][f"{metric}_at_{k}"] - mean) <= 5e-7
        assert users == metrics["data"]["users_evaluated"]
    top = pl.read_parquet(files.top_k_file)
    assert top.columns == [Columns.user, Columns.item, Columns.rank, Columns.score]
    assert top.group_by(Columns.user).len()["len"].max() == evaluate_params().top_k_output
    # the served list comes from the ranker: the top candidates by the ranker's score, best first
    inputs = make_block_inputs("validation")
    user = int(inputs.candidates[Columns.user][0])
    candidates = inputs.candidates.filter(pl.col(Columns.user) == user)
    observed = set(inputs.rows.filter(pl.col(Columns.user) == user)[Columns.item].to_list())
    expected = [v for v in candidates.sort("f_score", descending=True)[Columns.item].to_list() if v in observed][:5]
    assert top.filter(pl.col(Columns.user) == user).sort(Columns.rank)[Columns.item].to_list() == expected


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        files = BlockFiles.of("test", tmp_path / run)
        write_block_evaluation(evaluate_block(make_block_inputs(), evaluate_params()), files)
        digests.append({p.relative_to(tmp_path / run).as_posix(): p.read_bytes()
                        for p in sorted((tmp_path / run).rglob("*")) if p.is_file()})  # fmt: skip
    assert len(digests[0]) == 6 and digests[0] == digests[1]


def test_cutoff_checks_run_before_any_model_is_loaded(tmp_path: Path) -> None:
    inputs = make_block_inputs()
    write_upstream(tmp_path, inputs)  # no models/ at all: the checks must refuse first
    files = BlockFiles.of("test", tmp_path)
    with pytest.raises(ParamsError, match=rf"candidates.n = {N_CANDIDATES} is smaller than max\(evaluate.ks\) = 20"):
        load_block_inputs(files, (5, 20))


def test_a_k_above_the_catalogue_is_reported_over_the_whole_catalogue_with_a_note() -> None:
    # A small profile with the default evaluate.ks: K = 41 and 60 exceed the 40-video catalogue.
    inputs = make_block_inputs()
    inputs = dataclasses.replace(inputs, candidate_stats={**inputs.candidate_stats, "n": 40})
    n_items = inputs.rows[Columns.item].n_unique()
    assert n_items == 40
    metrics = evaluate_block(inputs, evaluate_params(ks=(5, 41, 60))).metrics
    assert metrics["data"]["notes"] == [
        "evaluate.ks [41, 60] exceed the test catalogue (40 videos): those lists hold the whole catalogue, "
        "padded with non-relevant slots"
    ]
    for name, values in metrics["models"].items():
        # the same whole-catalogue list at both K: every positive is found; precision still divides by K
        assert values["recall_at_41"] == values["recall_at_60"] == pytest.approx(1.0), name
        assert values["ndcg_at_41"] == values["ndcg_at_60"], name
        assert values["precision_at_60"] == pytest.approx(values["precision_at_41"] * 41 / 60, abs=1e-6), name  # 6 decimals
        assert values["coverage_at_41"] == values["coverage_at_60"] == 1.0, name
    # no note where every K fits
    assert "notes" not in evaluate_block(make_block_inputs(), evaluate_params()).metrics["data"]


def run_stage(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_stage_script_evaluates_a_block_from_its_files(tmp_path: Path) -> None:
    inputs = make_block_inputs()
    write_upstream(tmp_path, inputs)
    write_models(tmp_path, inputs)
    features = tmp_path / "data" / "features" / "test"
    features.mkdir(parents=True)
    inputs.candidates.write_parquet(features / "table.parquet")
    evaluate = {"ks": list(KS), "seed": 3, "popularity_smoothing": 10.0, "top_k_output": 5, "bootstrap_samples": 50}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    bad = run_stage(tmp_path, "stages.evaluate", "train")
    assert bad.returncode == 2 and "BLOCK must be one of ['validation', 'test']" in bad.stderr
    done = run_stage(tmp_path, "stages.evaluate", "test")
    assert done.returncode == 0, done.stderr
    files = BlockFiles.of("test", tmp_path)
    in_memory = evaluate_block(inputs, evaluate_params())
    written = json.loads(files.metrics_file.read_text())
    assert written["data"] == in_memory.metrics["data"] and set(written["models"]) == BASELINES | ORACLES
    # everything but the ranker (a real LightGBM model here, a stand-in in memory) is the same
    for model in set(written["models"]) - {"ranker"}:
        assert written["models"][model] == in_memory.metrics["models"][model]
    assert pl.read_parquet(files.per_user_file).filter(pl.col("model") == "ranker").height > 0


def block_files_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("user_partitions", [3, 7])
def test_any_user_partitioning_gives_the_same_bytes(tmp_path: Path, user_partitions: int) -> None:
    # per-user scores, lists and metrics by partition; global bounds and means: the whole grid's files
    digests = []
    for run, partitions in (("one", 1), ("many", user_partitions)):
        files = BlockFiles.of("test", tmp_path / run)
        compute = parse_section("compute", {"user_partitions": partitions})
        write_block_evaluation(evaluate_block(make_block_inputs(), evaluate_params(), compute=compute), files)
        digests.append(block_files_bytes(tmp_path / run))
    assert len(digests[0]) == 6 and digests[0] == digests[1]


def test_inputs_read_from_files_by_partition_give_the_same_bytes(tmp_path: Path) -> None:
    inputs = make_block_inputs()
    write_upstream(tmp_path, inputs)
    write_models(tmp_path, inputs)
    features = tmp_path / "data" / "features" / "test"
    features.mkdir(parents=True)
    write_parquet(inputs.candidates, features / "table.parquet")
    loaded = load_block_inputs(BlockFiles.of("test", tmp_path), KS)
    digests = []
    for run, partitions in (("one", 1), ("five", 5)):
        files = BlockFiles.of("test", tmp_path / run)
        compute = parse_section("compute", {"user_partitions": partitions})
        write_block_evaluation(evaluate_block(loaded, evaluate_params(), compute=compute), files)
        digests.append(block_files_bytes(tmp_path / run))
    assert digests[0] == digests[1]
    # and the files give what the same frames give in memory (the ranker aside: a LightGBM model here)
    in_memory = evaluate_block(dataclasses.replace(inputs, ranker=loaded.ranker), evaluate_params())
    assert json.loads((tmp_path / "one" / "metrics/blocks/test/metrics.json").read_text()) == json.loads(
        json.dumps(in_memory.metrics)
    )


def test_a_partition_without_positives_is_counted_not_refused() -> None:
    inputs = make_block_inputs()
    first = inputs.rows[Columns.user].min()
    rows = inputs.rows.with_columns(pl.when(pl.col(Columns.user) == first).then(False).otherwise(pl.col(Columns.label)).alias(Columns.label))
    inputs = dataclasses.replace(inputs, rows=rows)
    one = evaluate_block(inputs, evaluate_params())
    many = evaluate_block(inputs, evaluate_params(), compute=parse_section("compute", {"user_partitions": 24}))
    assert many.metrics == one.metrics and many.per_user.equals(one.per_user)
    assert one.metrics["data"]["users_without_positives"] >= 1
