"""The ranker trained by lightgbm.dask: same preparation, same file format, local-mode quality.

Tolerance: the dask model's NDCG@10 on held-out users must be within 0.02 of the local model's.
Distributed LightGBM is not bit-identical to local training (each machine bins its share of the
features from its own rows; see reco/models/ranker_dask.py), so the two models rank slightly
differently. 0.02 is about 2.5 standard errors of NDCG@10 over the ~200 held-out users here
(per-user NDCG@10 has a standard deviation near 0.11, 0.11 / sqrt(199) = 0.008): a smaller gap
cannot be told from noise, a larger one would mean the distributed fit learns something else.
Observed gaps on three seeds: 0.005, 0.001, 0.001. The planted signal is strong (both models
reach NDCG@10 > 0.85), so the check is not vacuous."""

from __future__ import annotations

import dataclasses
import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from distributed import Client
from test_compute import START_TIMEOUT_S, ProcessCluster

from models.test_ranker import FEATURES, PARAMS, planted_table
from reco.compute import dask_client
from reco.errors import InputDataError
from reco.evaluation.metrics import ranking_metrics, top_k_items
from reco.models.ranker import (
    _group_sizes,
    _matrix,
    import_lightgbm,
    lightgbm_params,
    load_ranker,
    prepare_training_parts,
    save_ranker,
    train_ranker_local,
)
from reco.models.ranker_dask import (
    DISTRIBUTED_ONLY_PARAMETERS,
    early_stopping_point,
    row_balanced_group_cuts,
    train_ranker_dask,
    validation_curve,
)
from reco.models.ranker_engine import train_ranker
from reco.params import parse_section
from reco.schema import Columns

NDCG_TOLERANCE = 0.02  # see the module docstring
HELD_OUT_USERS = 200
PER_USER = 30  # planted_table gives every user the same 30 items
TRAIN_PARAMS = dataclasses.replace(PARAMS, train_users=300, n_estimators=60)
COMPUTE = parse_section("compute", {"engine": "dask", "workers": 2, "threads_per_worker": 1})


@pytest.fixture(scope="module")
def local_client() -> Iterator[Client]:
    with dask_client(COMPUTE) as client:
        yield client


@pytest.fixture(scope="module")
def tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    """300 training users and 200 held-out users (never seen in training or validation)."""
    table = planted_table(n_users=300 + HELD_OUT_USERS, per_user=PER_USER, seed=1)
    train = table.filter(pl.col(Columns.user) < 300)
    held_out = table.filter(pl.col(Columns.user) >= 300).sort([Columns.user, Columns.item])
    return train, held_out


def held_out_ndcg_at_10(model_dir: Path, held_out: pl.DataFrame) -> float:
    """NDCG@10 (reco.evaluation.metrics, binary relevance) of the saved model on held-out users."""
    scores = load_ranker(model_dir).predict(held_out).reshape(-1, PER_USER)
    relevant = held_out[Columns.label].to_numpy().reshape(-1, PER_USER)
    result = ranking_metrics(top_k_items(scores, k=10), relevant, ks=[10], n_catalogue_items=PER_USER)
    return float(result.summary["ndcg_at_10"])


def parameter_lines(model_file: Path) -> dict[str, str]:
    return dict(re.findall(r"^\[([a-z_]+): (.*)\]$", model_file.read_text(), flags=re.MULTILINE))


# --- no cluster needed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"early_stopping_rounds": 5, "learning_rate": 0.3},
        {"objective": "binary", "label": "binary", "early_stopping_rounds": 5, "learning_rate": 0.3},
        {"early_stopping_rounds": 80},  # never stops early
    ],
    ids=["lambdarank", "binary", "no-stop"],
)
def test_posthoc_curve_and_stopping_point_are_what_lightgbm_records_locally(overrides: dict[str, object]) -> None:
    """validation_curve == lgb.record_evaluation, early_stopping_point == lgb.early_stopping."""
    lgb = import_lightgbm()
    table = planted_table(n_users=200, per_user=PER_USER)
    params = dataclasses.replace(PARAMS, n_estimators=80, **overrides)
    parts = prepare_training_parts(table, FEATURES, params)
    groups = {name: _group_sizes(frame[Columns.user].to_numpy()) for name, frame in parts.frames.items()}
    datasets: dict[str, object] = {}
    for name, frame in parts.frames.items():
        datasets[name] = lgb.Dataset(
            _matrix(frame, FEATURES),
            label=parts.labels[name],
            group=groups[name] if params.objective == "lambdarank" else None,
            feature_name=FEATURES,
            categorical_feature=["category"],
            reference=datasets.get("train"),
        )
    recorded: dict[str, dict[str, list[float]]] = {}
    full = lgb.train(
        lightgbm_params(params),
        datasets["train"],
        num_boost_round=params.n_estimators,
        valid_sets=[datasets["valid"]],
        valid_names=["valid"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    name, values = validation_curve(
        full, _matrix(parts.frames["valid"], FEATURES), parts.labels["valid"], groups["valid"], params
    )
    assert (name, len(values)) == (next(iter(recorded["valid"])), params.n_estimators)
    np.testing.assert_allclose(values, recorded["valid"][name], rtol=0, atol=1e-12)

    early_stopped = train_ranker_local(table, FEATURES, ["category"], params)  # local mode, real early stopping
    best, stopped = early_stopping_point(values, params.early_stopping_rounds)
    assert best == early_stopped.best_iteration
    assert [row[name] for row in early_stopped.curve] == pytest.approx(values[:stopped], abs=1e-12)


def test_early_stopping_point_follows_lightgbms_rule() -> None:
    assert early_stopping_point([0.5, 0.7, 0.6, 0.7, 0.65, 0.8], 3) == (2, 5)  # ties do not count as better
    assert early_stopping_point([0.1, 0.2, 0.3], 1) == (3, 3)  # never stopped: every round trained
    assert early_stopping_point([0.9, 0.1], 1) == (1, 2)


def test_partitions_cut_between_users_and_balance_rows() -> None:
    sizes = np.array([5, 1, 1, 1, 2, 30, 3, 3, 3, 3])
    cuts = row_balanced_group_cuts(sizes, 3)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))  # contiguous, no user split
    assert len(cuts) <= 3 and all(hi > lo for lo, hi in cuts)
    assert row_balanced_group_cuts(np.array([4, 4, 4, 4]), 2) == [(0, 2), (2, 4)]
    assert row_balanced_group_cuts(np.array([7]), 4) == [(0, 1)]  # never more parts than users


def test_bad_input_fails_before_any_cluster_is_contacted() -> None:
    unreachable = parse_section("compute", {"engine": "dask", "scheduler": "tcp://127.0.0.1:9"})
    with pytest.raises(InputDataError, match="missing columns"):
        train_ranker_dask(planted_table().drop(Columns.relevance), FEATURES, ["category"], PARAMS, unreachable)


def test_lightgbm_dask_loads_after_the_lean_lightgbm_import() -> None:
    """import_lightgbm() hides scikit-learn and pandas from lightgbm; lightgbm.dask needs them back."""
    code = (
        "from reco.models.ranker import import_lightgbm\n"
        "lean = import_lightgbm()\n"
        "assert not lean.compat.SKLEARN_INSTALLED\n"
        "from reco.models.ranker_dask import import_lightgbm_dask\n"
        "module = import_lightgbm_dask()\n"
        "import sys\n"
        "print(module.DaskLGBMRanker.__name__, sys.modules['lightgbm.compat'].SKLEARN_INSTALLED)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["DaskLGBMRanker", "True"]


# --- a LocalCluster of 2 worker processes ----------------------------------------------------


def test_dask_ranker_is_saved_in_lightgbm_text_format_with_local_quality(
    local_client: Client, tables: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    train, held_out = tables
    local = train_ranker_local(train, FEATURES, ["category"], TRAIN_PARAMS)
    distributed = train_ranker_dask(train, FEATURES, ["category"], TRAIN_PARAMS, COMPUTE, client=local_client)
    save_ranker(local, tmp_path / "local")
    save_ranker(distributed, tmp_path / "dask")

    # The same LightGBM text format, read back by the same loader; only the distributed settings differ.
    model_file = tmp_path / "dask" / "model.txt"
    assert model_file.read_text().startswith("tree\nversion=")
    assert load_ranker(tmp_path / "dask").features == FEATURES
    local_lines, dask_lines = parameter_lines(tmp_path / "local" / "model.txt"), parameter_lines(model_file)
    assert local_lines.keys() == dask_lines.keys()
    differing = {key for key in local_lines if local_lines[key] != dask_lines[key]}
    assert differing <= set(DISTRIBUTED_ONLY_PARAMETERS), differing
    assert (dask_lines["tree_learner"], dask_lines["num_machines"]) == ("data", "2")
    assert dask_lines["machines"] == "" and dask_lines["local_listen_port"] == "12400"  # no run's ports in the file

    # The same rows, users and split as local mode (the preparation is shared in spirit, checked here).
    shared = (
        "train_users",
        "valid_users",
        "labelled_rows",
        "train_rows",
        "valid_rows",
        "train_positive_rate",
        "valid_metric",
    )
    assert {k: distributed.summary[k] for k in shared} == {k: local.summary[k] for k in shared}
    assert (
        distributed.summary["engine"] == "dask"
        and distributed.summary["trained_iterations"] == TRAIN_PARAMS.n_estimators
    )
    assert 1 <= distributed.best_iteration <= len(distributed.curve) <= TRAIN_PARAMS.n_estimators
    assert distributed.summary["best_valid_score"] == max(row["ndcg@10"] for row in distributed.curve)

    local_ndcg = held_out_ndcg_at_10(tmp_path / "local", held_out)
    dask_ndcg = held_out_ndcg_at_10(tmp_path / "dask", held_out)
    assert local_ndcg > 0.85 and dask_ndcg > 0.85
    assert abs(dask_ndcg - local_ndcg) <= NDCG_TOLERANCE, (local_ndcg, dask_ndcg)


# --- a scheduler and two workers started as separate processes ------------------------------------


def test_train_ranker_against_a_separately_started_scheduler(
    tmp_path: Path, tables: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, held_out = tables
    with ProcessCluster(tmp_path / "cluster", n_workers=2) as cluster:
        compute = parse_section("compute", {"engine": "dask", "scheduler": cluster.address})
        with dask_client(compute, connect_timeout_s=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        # the entry point with compute.engine dask and no client opens its own client to the scheduler
        ranker = train_ranker(train, FEATURES, ["category"], TRAIN_PARAMS, compute=compute)
    assert ranker.summary["engine"] == "dask" and ranker.summary["workers"] == 2
    save_ranker(ranker, tmp_path / "ranker")
    assert held_out_ndcg_at_10(tmp_path / "ranker", held_out) > 0.85
