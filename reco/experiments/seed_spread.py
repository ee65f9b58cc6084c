"""Seed spread: the headline models retrained with other seeds, to see how much of a gap is noise.

The bootstrap intervals of ``metrics/uncertainty.json`` say how much a metric would move with
other *users*; they say nothing about the randomness of *training*. This module retrains the
seed-dependent models (ALS: ``als.random_state``, both fits; the ranker: ``ranker.seed``, which
also draws its users) with each seed of ``seed_spread.seeds`` on exactly the pipeline's data and
settings, rebuilds the candidates and features that depend on them, and scores ``als`` and
``ranker`` on both evaluation blocks. ``metrics/seed_spread.json`` holds, per block, model and
metric, the mean, standard deviation, minimum, maximum and every value.

A difference between two revisions smaller than this spread is indistinguishable from a change
of seed (``python -m reco.review`` uses it). Everything else (data, splits, other settings) is
the pipeline's own, so the spread measures training randomness only.

Examples
--------
>>> summarise([0.70, 0.72, 0.71])["std"]
0.01
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from reco.evaluation.evaluate import build_test_grid, evaluate_models, two_stage_scores
from reco.models.als import AlsModel, fit_als, item_scores
from reco.models.baselines import popularity_item_scores
from reco.models.candidates import block_candidates
from reco.models.features import FeatureTable, als_pair_features, build_feature_table, seen_matrix
from reco.models.ranker import train_ranker
from reco.params import AlsParams, CandidatesParams, EvaluateParams, FeaturesParams, LabelParams, RankerParams
from reco.schema import Columns

REPORTED_METRICS: tuple[str, ...] = ("ndcg_at_10", "map_at_10")
SEED_MODELS: tuple[str, ...] = ("als", "ranker")


@dataclass(frozen=True)
class SeedSpreadInputs:
    """The pipeline's data and settings, as the stages read them."""

    history: pl.DataFrame
    train: pl.DataFrame
    ranker_labels: pl.DataFrame
    blocks: Mapping[str, pl.DataFrame]
    users: pl.DataFrame
    items: pl.DataFrame
    item_daily: pl.DataFrame
    train_table: FeatureTable  # the pipeline's features@train (only its ALS columns change with the seed)
    label: LabelParams
    als: AlsParams
    ranker: RankerParams
    features: FeaturesParams
    candidates: CandidatesParams
    evaluate: EvaluateParams
    latest_serving_date: Any = None


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation, min, max and the values (rounded to 6 digits)."""
    array = np.asarray(values, dtype=np.float64)
    mean = math.fsum(array.tolist()) / array.size
    std = math.sqrt(math.fsum(((array - mean) ** 2).tolist()) / (array.size - 1)) if array.size > 1 else 0.0
    return {
        "mean": round(mean, 6),
        "std": round(std, 6),
        "min": round(float(array.min()), 6),
        "max": round(float(array.max()), 6),
        "values": [round(float(v), 6) for v in array],
    }


def _block_features(inputs: SeedSpreadInputs, model: AlsModel, candidates: pl.DataFrame, block: pl.DataFrame) -> FeatureTable:
    label_columns = [c for c in (Columns.label, Columns.relevance, Columns.watch_ratio) if c in candidates.columns]
    return build_feature_table(
        candidates,
        history=inputs.train,
        users=inputs.users,
        items=inputs.items,
        item_daily=inputs.item_daily,
        als_model=model,
        catalogue=block[Columns.item].unique().to_numpy(),
        threshold=inputs.label.threshold,
        smoothing=inputs.features.popularity_smoothing,
        daily_window_days=inputs.features.daily_window_days,
        label_columns=label_columns,
        latest_serving_date=inputs.latest_serving_date,
    )


def _train_table(inputs: SeedSpreadInputs, model: AlsModel) -> pl.DataFrame:
    """features@train with its ALS columns recomputed from ``model`` (the others do not depend on the seed)."""
    frame = inputs.train_table.frame
    als = als_pair_features(
        model,
        frame.select(Columns.user, Columns.item),
        inputs.items[Columns.item].to_numpy(),
        seen=seen_matrix(model, inputs.history),
    )
    replaced = [c for c in als.columns if c not in (Columns.user, Columns.item)]
    return frame.drop(replaced).join(als, on=[Columns.user, Columns.item], how="left", maintain_order="left").select(frame.columns)


def seed_run(inputs: SeedSpreadInputs, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Retrain ALS (both fits) and the ranker with ``seed``; ``{block: {model: {metric: value}}}``."""
    als_params = dataclasses.replace(inputs.als, random_state=seed)
    als_history, _ = fit_als(inputs.history, als_params, threshold=inputs.label.threshold)
    als_train, _ = fit_als(inputs.train, als_params, threshold=inputs.label.threshold)
    table = inputs.train_table
    ranker = train_ranker(
        _train_table(inputs, als_history), table.features, table.categorical, dataclasses.replace(inputs.ranker, seed=seed)
    )
    ks = [10]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, block in inputs.blocks.items():
        grid = build_test_grid(block)
        popularity = popularity_item_scores(inputs.train, grid.items, inputs.label.threshold, inputs.evaluate.popularity_smoothing)
        als = item_scores(als_train, grid.users, grid.items)
        unknown = np.isnan(als).all(axis=1)  # served by popularity, as the candidates stage does
        als = np.where(unknown[:, None], popularity[None, :], als)
        candidates, _ = block_candidates(als_train, inputs.train, block, inputs.candidates.n)
        features = _block_features(inputs, als_train, candidates, block)
        reranked = features.frame.select(Columns.user, Columns.item).with_columns(
            pl.Series(Columns.score, ranker.booster.predict(
                features.frame.select(pl.col(table.features).cast(pl.Float32)).to_numpy(),
                num_iteration=ranker.best_iteration, num_threads=inputs.ranker.num_threads,
            ))
        )  # fmt: skip
        scores = {"als": als, "ranker": two_stage_scores(grid, reranked, als)}
        evaluated = evaluate_models(grid, scores, ks)
        results[name] = {model: {m: float(r.summary[m]) for m in REPORTED_METRICS} for model, r in evaluated.items()}
    return results


def seed_spread(inputs: SeedSpreadInputs, seeds: Sequence[int]) -> dict[str, Any]:
    """Every seed's run and, per block, model and metric, :func:`summarise` of the values."""
    runs = {int(seed): seed_run(inputs, int(seed)) for seed in seeds}
    blocks: dict[str, Any] = {}
    for block in inputs.blocks:
        blocks[block] = {
            "models": {
                model: {metric: summarise([runs[s][block][model][metric] for s in runs]) for metric in REPORTED_METRICS}
                for model in SEED_MODELS
            }
        }
    return {
        "seeds": [int(s) for s in seeds],
        "varied": {"als": "random_state (both fits)", "ranker": "seed (user sample, bagging, feature fraction)"},
        "blocks": blocks,
        # the test block at the top level, as reco.review reads it
        "block": "test",
        "models": blocks.get("test", {}).get("models", {}),
    }


__all__ = ["REPORTED_METRICS", "SEED_MODELS", "SeedSpreadInputs", "seed_run", "seed_spread", "summarise"]
