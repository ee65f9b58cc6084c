"""The contract every ranker engine keeps, run against each through the one entry point ``train_ranker``.

Whichever engine ``compute`` (or a client) picks, the ranker learns a planted signal, reports the
same training summary, round-trips through LightGBM's text file, refuses bad input and trains the
binary objective. What only one engine does (bit-identical refits locally; distributed settings,
post-hoc early stopping and lost workers with Dask) is tested in test_ranker.py and
test_ranker_dask.py. The dask engine runs on a LocalCluster of 2 single-thread workers on loopback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest

from models.test_ranker import FEATURES, PARAMS, planted_table
from reco.compute import compute_client
from reco.errors import InputDataError
from reco.models.ranker import TrainedRanker, load_ranker, sample_users, save_ranker
from reco.models.ranker_engine import ENGINES, train_ranker
from reco.params import ComputeParams, RankerParams, parse_section
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

# The keys reco.models.ranker.training_summary writes for every engine (the dask one adds its own).
SUMMARY_KEYS = {
    "objective", "label", "valid_metric", "best_iteration", "best_valid_score", "train_users", "valid_users",
    "candidate_rank_pct", "labelled_rows", "train_rows", "valid_rows", "train_positive_rate",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Engine:
    """An engine as the stage hands it to ``train_ranker``: the compute settings and the open client."""

    name: str
    compute: ComputeParams
    client: Client | None

    def train(
        self, table: pl.DataFrame, params: RankerParams = PARAMS, users: np.ndarray | None = None
    ) -> TrainedRanker:
        return train_ranker(
            table, FEATURES, ["category"], params, users=users, compute=self.compute, client=self.client
        )


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    compute = parse_section("compute", {"engine": request.param, "workers": 2, "threads_per_worker": 1})
    with compute_client(compute) as client:  # None for local; a LocalCluster on 127.0.0.1 for dask
        yield Engine(request.param, compute, client)


@pytest.fixture(scope="module")
def trained(engine: Engine) -> TrainedRanker:
    """The engine's ranker on the planted table with the default test params (shared by the read-only tests)."""
    return engine.train(planted_table())


def test_the_entry_trains_on_the_engine_it_is_given(engine: Engine, trained: TrainedRanker) -> None:
    ranker = trained
    assert ranker.summary.get("engine", "local") == engine.name
    assert SUMMARY_KEYS <= set(ranker.summary)


def test_ranker_learns_the_planted_signal_and_ignores_noise(trained: TrainedRanker) -> None:
    ranker = trained
    gains = {row["feature"]: row["gain"] for row in ranker.importance}
    assert gains["signal"] > gains["noise"]
    assert gains["category"] > gains["noise"]
    assert ranker.summary["best_valid_score"] > 0.8  # validation NDCG@10 with a strong planted signal
    assert ranker.summary["train_users"] + ranker.summary["valid_users"] == 100
    assert len(ranker.curve) >= ranker.best_iteration


def test_summary_curve_and_importance_agree(trained: TrainedRanker) -> None:
    ranker = trained
    summary, metric = ranker.summary, ranker.summary["valid_metric"]
    assert (summary["objective"], summary["label"], metric) == ("lambdarank", "graded", "ndcg@10")
    assert summary["best_iteration"] == ranker.best_iteration
    assert 1 <= ranker.best_iteration <= len(ranker.curve) <= PARAMS.n_estimators
    assert [row["iteration"] for row in ranker.curve] == list(range(1, len(ranker.curve) + 1))
    assert summary["best_valid_score"] == ranker.curve[ranker.best_iteration - 1][metric]
    assert summary["best_valid_score"] == max(row[metric] for row in ranker.curve[: ranker.best_iteration])
    # one entry per feature, by descending gain
    assert sorted(row["feature"] for row in ranker.importance) == sorted(FEATURES)
    gains = [row["gain"] for row in ranker.importance]
    assert gains == sorted(gains, reverse=True)


def test_saved_model_loads_back_and_predicts_identical_scores(trained: TrainedRanker, tmp_path: Path) -> None:
    table, ranker = planted_table(), trained
    save_ranker(ranker, tmp_path / "ranker")
    loaded = load_ranker(tmp_path / "ranker")
    assert loaded.features == FEATURES and loaded.categorical == ["category"]
    direct = ranker.booster.predict(table.select(FEATURES).to_numpy().astype(np.float32), num_iteration=ranker.best_iteration)
    np.testing.assert_array_equal(loaded.predict(table), direct)
    assert (tmp_path / "ranker" / "model.txt").read_text().startswith("tree")


def test_prediction_refuses_a_table_without_the_training_features(trained: TrainedRanker, tmp_path: Path) -> None:
    save_ranker(trained, tmp_path / "ranker")
    with pytest.raises(InputDataError, match="missing ranker features"):
        load_ranker(tmp_path / "ranker").predict(planted_table().drop("noise"))


def test_binary_objective_trains(engine: Engine) -> None:
    params = dataclasses.replace(PARAMS, objective="binary", label="binary")
    ranker = engine.train(planted_table(), params)
    assert ranker.summary["valid_metric"] == "auc"
    assert ranker.summary["best_valid_score"] > 0.8


def test_bad_input_is_refused(engine: Engine) -> None:
    with pytest.raises(InputDataError, match="missing columns"):
        engine.train(planted_table().drop(Columns.relevance))
    with pytest.raises(InputDataError, match="no positive labels"):
        engine.train(planted_table().with_columns(pl.lit(0, dtype=pl.Int8).alias(Columns.relevance)))
    with pytest.raises(InputDataError, match="candidate_rank_pct"):  # a cut needs the ALS ranks
        engine.train(planted_table(), dataclasses.replace(PARAMS, candidate_rank_pct=0.5))


def test_candidate_cut_and_user_draw_are_the_same_rows_for_every_engine(engine: Engine) -> None:
    table = planted_table()
    rank_pct = np.random.default_rng(3).random(table.height).astype(np.float32)
    rank_pct[:40] = np.nan  # unknown to ALS: kept
    table = table.with_columns(pl.Series("als_rank_pct", rank_pct).fill_nan(None))
    params = dataclasses.replace(PARAMS, candidate_rank_pct=0.5, train_users=60)
    summary = engine.train(table, params).summary
    kept = table.filter(pl.col("als_rank_pct").is_null() | (pl.col("als_rank_pct") <= 0.5))
    train_ids, valid_ids = sample_users(table[Columns.user].to_numpy(), 60, params.valid_fraction, params.seed)
    assert summary["labelled_rows"] == table.height and summary["candidate_rank_pct"] == 0.5
    assert (summary["train_users"], summary["valid_users"]) == (len(train_ids), len(valid_ids))
    assert summary["train_rows"] == kept.filter(pl.col(Columns.user).is_in(train_ids.tolist())).height
    assert summary["valid_rows"] == kept.filter(pl.col(Columns.user).is_in(valid_ids.tolist())).height
    # users drawn from a given id list (the train_ranker stage's reduced table), not from the table's rows
    subset = table.filter(pl.col(Columns.user).is_in(np.union1d(train_ids, valid_ids).tolist()))
    drawn = engine.train(subset, params, users=table[Columns.user].unique().to_numpy()).summary
    assert {k: drawn[k] for k in ("train_users", "valid_users", "train_rows", "valid_rows")} == {
        k: summary[k] for k in ("train_users", "valid_users", "train_rows", "valid_rows")
    }
