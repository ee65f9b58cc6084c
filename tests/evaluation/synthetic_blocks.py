"""Synthetic evaluation blocks for the tests: every input of ``evaluate@<block>`` built in memory, in milliseconds.

A small world with known truth: each (user, video) cell has a watch-time location ``eta`` and a
skip shift (the simulator's ground-truth columns), labels are drawn with the probability the
simulator's model gives them, and the ALS model and ranker are stand-ins with fixed scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from reco.data.labels import LabelRule
from reco.data.simulator import expected_watch_ratio, probability_watch_ratio_above
from reco.evaluation.pipeline import BlockInputs
from reco.models.als import AlsModel, IdMap
from reco.params import EvaluateParams
from reco.schema import Columns

KS = (1, 5, 10)
N_CANDIDATES = 12
EDGES_MS = (6_000.0, 15_000.0)
RULE = LabelRule(kind="threshold", threshold=2.0, edges_ms=EDGES_MS, cutoffs=(2.0, 2.0, 2.0))
SPLIT_SUMMARY = {
    "protocol": "fully_observed",
    "label_rule": RULE.as_dict(),
    "ranker_labels": {"kind": "holdout", "fraction": 0.2},
}


@dataclass
class ColumnRanker:
    """A ranker stand-in: the score of a row is its ``column`` (the real one is a LightGBM booster)."""

    column: str = "f_score"

    def predict(self, table: pl.DataFrame) -> np.ndarray:
        return table[self.column].to_numpy().astype(np.float64)


def synthetic_truth(users: np.ndarray, items: np.ndarray, durations_ms: np.ndarray, seed: int) -> pl.DataFrame:
    """Ground truth of every (user, video) cell, in the simulator's columns."""
    rng = np.random.default_rng(seed)
    n_users, n_items = len(users), len(items)
    eta = (
        np.log(8.0)
        + rng.normal(0.0, 0.25, (n_users, 1))
        + rng.normal(0.0, 0.3, (1, n_items))
        + rng.normal(0.0, 0.3, (n_users, n_items))
    )
    skip = np.repeat(rng.normal(0.0, 0.5, n_users), n_items)
    duration = np.tile(durations_ms, n_users)
    return pl.DataFrame(
        {
            Columns.user: np.repeat(users, n_items).astype(np.int32),
            Columns.item: np.tile(items, n_users).astype(np.int32),
            Columns.video_duration: duration.astype(np.int32),
            Columns.watch_eta: eta.ravel(),
            Columns.skip_shift: skip,
            Columns.expected_watch_ratio: expected_watch_ratio(eta.ravel(), duration / 1000.0, skip).astype(np.float32),
        }
    )


def make_block_inputs(block: str = "test", seed: int = 0, source: str = "simulate") -> BlockInputs:
    """A block of 24 users x 40 videos (a few unobserved cells) with everything evaluate reads."""
    rng = np.random.default_rng(seed)
    users = np.arange(1, 25, dtype=np.int32) + (100 if block == "validation" else 0)
    items = np.arange(500, 540, dtype=np.int32)
    durations = rng.choice([3_000, 5_000, 8_000, 12_000, 20_000, 45_000], len(items)).astype(np.int64)
    truth = synthetic_truth(users, items, durations, seed)
    p = probability_watch_ratio_above(
        truth[Columns.watch_eta].to_numpy(),
        truth[Columns.video_duration].to_numpy() / 1000.0,
        RULE.threshold,
        truth[Columns.skip_shift].to_numpy(),
    )
    label = rng.random(truth.height) < p
    observed = rng.random(truth.height) > 0.03
    rows = truth.select(Columns.user, Columns.item, pl.Series(Columns.label, label)).filter(pl.Series(observed))
    # Training views: other days of the same users (and a few users outside the block) on the catalogue.
    train_users = np.concatenate([users, np.arange(900, 906, dtype=np.int32)])
    n_views = 3_000
    view_items = rng.choice(items, n_views)
    view_durations = durations[view_items - items[0]]
    ratio = np.exp(rng.normal(0.0, 0.8, n_views)) * 8_000.0 / view_durations
    train = pl.DataFrame(
        {
            Columns.user: rng.choice(train_users, n_views).astype(np.int32),
            Columns.item: view_items.astype(np.int32),
            Columns.video_duration: view_durations.astype(np.int32),
            Columns.watch_ratio: ratio.astype(np.float32),
            Columns.label_ratio: ratio.astype(np.float32),
        }
    )
    items_table = pl.DataFrame(
        {
            Columns.item: items,
            Columns.tags: [[int(i % 5)] for i in items],
            Columns.video_duration: durations.astype(np.int32),
        },
        schema_overrides={Columns.tags: pl.List(pl.Int8)},
    )
    profiles = pl.DataFrame(
        {
            Columns.user: users,
            Columns.user_active_degree: ["full_active" if u % 3 else "high_active" for u in users],
        }
    )
    # ALS knows every user but the last one (served by popularity) and every video.
    known = users[:-1]
    als = AlsModel(
        user_factors=rng.normal(0, 1, (len(known), 4)).astype(np.float32),
        item_factors=rng.normal(0, 1, (len(items), 4)).astype(np.float32),
        user_ids=IdMap.from_values(known),
        item_ids=IdMap.from_values(items),
        training_loss={1: 1.0},
        params={"factors": 4},
    )
    als_scores = als.user_factors @ als.item_factors.T
    top = np.argsort(-als_scores, axis=1, kind="stable")[:, :N_CANDIDATES]
    candidates = pl.DataFrame(
        {
            Columns.user: np.repeat(known, N_CANDIDATES),
            Columns.item: items[top.ravel()],
            "f_score": rng.random(len(known) * N_CANDIDATES),
        }
    )
    return BlockInputs(
        block=block,
        rows=rows,
        train=train,
        items=items_table,
        profiles=profiles,
        rule=RULE,
        split_summary=SPLIT_SUMMARY,
        candidate_stats={"n": N_CANDIDATES, f"recall_at_{N_CANDIDATES}": 0.5, "users": len(users)},
        manifest={"source": source, "profile": "synthetic"},
        als=als,
        candidates=candidates,
        ranker=ColumnRanker(),
        truth=truth if source == "simulate" else None,
    )


def evaluate_params(**overrides: object) -> EvaluateParams:
    values = {"ks": KS, "seed": 3, "popularity_smoothing": 10.0, "top_k_output": 5, "bootstrap_samples": 50}
    return EvaluateParams(**{**values, **overrides})  # type: ignore[arg-type]


def write_upstream(root: Path, inputs: BlockInputs) -> None:
    """The files ``load_block_inputs`` reads, except the models (tests add them when they need them)."""
    from reco.evaluation.layout import BlockFiles
    from reco.io import write_json, write_parquet
    from reco.schema import PreparedFiles, RawFiles

    files = BlockFiles.of(inputs.block, root)
    write_parquet(inputs.rows, files.block_file)
    write_parquet(inputs.train, files.train_file)
    write_parquet(inputs.items, files.prepared_dir / PreparedFiles.items)
    write_parquet(inputs.profiles, files.prepared_dir / PreparedFiles.users)
    write_json(dict(inputs.candidate_stats), files.candidates_file)
    write_json(dict(inputs.split_summary), files.split_summary_file)
    files.raw_dir.mkdir(parents=True, exist_ok=True)
    (files.raw_dir / RawFiles.manifest).write_text(json.dumps(dict(inputs.manifest)), encoding="utf-8")
    if inputs.truth is not None:
        write_parquet(inputs.truth, files.raw_dir / RawFiles.ground_truth)


def save_column_ranker(out_dir: Path) -> None:
    """A tiny real LightGBM model on the ``f_score`` column, saved like the train_ranker stage does."""
    from reco.models.ranker import TrainedRanker, import_lightgbm, save_ranker

    lgb = import_lightgbm()
    rng = np.random.default_rng(0)
    x = rng.random((200, 1))
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "seed": 0, "deterministic": True,
              "min_data_in_leaf": 5}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(x, x[:, 0], feature_name=["f_score"]), num_boost_round=3)
    save_ranker(
        TrainedRanker(booster=booster, features=["f_score"], categorical=[], best_iteration=3, curve=[],
                      importance=[], summary={}),
        out_dir,
    )  # fmt: skip


def write_models(root: Path, inputs: BlockInputs) -> None:
    """``models/als/test`` (the inputs' ALS) and ``models/ranker`` (:func:`save_column_ranker`)."""
    from reco.evaluation.layout import BlockFiles
    from reco.models.als import save_als

    files = BlockFiles.of(inputs.block, root)
    save_als(inputs.als, files.als_dir)
    save_column_ranker(files.ranker_dir)
