"""Seed spread: the headline models retrained with other seeds, to see how much of a gap is noise.

Each seed of ``seed_spread.seeds`` retrains ALS (both fits, ``als.random_state``) and the ranker
(``ranker.seed``) on exactly the pipeline's data and settings, rebuilds the candidates and features
that depend on them, and scores ``als`` and ``ranker`` on both evaluation blocks;
``metrics/seed_spread.json`` holds the mean, standard deviation, range and values per block, model
and metric, which ``python -m reco.review`` compares a change against. See docs/selection-and-review.md.

Examples
--------
>>> summarise([0.70, 0.72, 0.71])["std"]
0.01
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse

from reco.evaluation.evaluate import BlockGrid, build_block_grid, evaluate_models, two_stage_scores
from reco.io import write_parquet
from reco.models.als import INPUT_COLUMNS, AlsModel, fit_als, item_scores
from reco.models.baselines import popularity_scores, view_counts
from reco.models.candidates import block_candidates, popularity_fallback
from reco.models.features import (
    ROW,
    FeatureSources,
    HistoryStats,
    als_pair_features,
    history_stats,
    seen_matrix,
    training_rows,
    write_feature_table,
)
from reco.models.ranker import sample_users
from reco.models.ranker_engine import train_ranker
from reco.params import (
    AlsParams,
    CandidatesParams,
    ComputeParams,
    EvaluateParams,
    FeaturesParams,
    LabelParams,
    RankerParams,
)
from reco.partitions import UserRowIndex, partition_count, user_partitions
from reco.schema import Columns

REPORTED_METRICS: tuple[str, ...] = ("ndcg_at_10", "map_at_10")
SEED_MODELS: tuple[str, ...] = ("als", "ranker")
# The partitions every file is read by (the results do not depend on them; see reco.partitions).
LOCAL_COMPUTE = ComputeParams()


@dataclass(frozen=True)
class SeedSpreadInputs:
    """The pipeline's files and settings, as the stages read them.

    The views and the training feature table are files, read one user chunk or partition at a
    time (never whole), so the seed spread's memory does not grow with the logged views.
    """

    history: Path  # data/split/history.parquet
    train: Path  # data/split/train.parquet
    blocks: Mapping[str, Path]  # block name -> data/split/<block>.parquet
    train_table: Path  # features@train's table.parquet (only its ALS columns change with the seed)
    features_list: Sequence[str]
    categorical: Sequence[str]
    users: pl.DataFrame
    items: pl.DataFrame
    item_daily: pl.DataFrame
    label: LabelParams
    als: AlsParams
    ranker: RankerParams
    features: FeaturesParams
    candidates: CandidatesParams
    evaluate: EvaluateParams
    latest_serving_date: Any = None


@dataclass(frozen=True)
class _Block:
    """What a block's evaluation needs that no seed changes."""

    rows: UserRowIndex
    grid: BlockGrid
    popularity: np.ndarray  # popularity score of each grid item (served to users ALS does not know)
    fallback: np.ndarray  # the candidates' popularity list over the block's videos
    catalogue: np.ndarray


@dataclass(frozen=True)
class _Shared:
    """Seed-independent data, computed once: where each user's history lies, training statistics, the blocks."""

    history: UserRowIndex  # the history's rows by user: what a partition's users have watched
    train: UserRowIndex  # the training views by user: the candidates' and the block features' history
    train_table: UserRowIndex  # features@train's table by user: the ranker's rows and its users
    train_stats: HistoryStats
    blocks: Mapping[str, _Block]


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


def _scan_views(path: Path) -> pl.LazyFrame:
    """The columns ALS reads, as the train_als stage scans them (read by user chunks)."""
    return pl.scan_parquet(path).select(INPUT_COLUMNS)


def _shared(inputs: SeedSpreadInputs) -> _Shared:
    train = UserRowIndex(inputs.train)
    # popularity's per-video positive and total views: one aggregation of the training views, for both blocks
    counts = view_counts(pl.scan_parquet(inputs.train), inputs.label.threshold)
    blocks = {}
    for name, path in inputs.blocks.items():
        block = pl.read_parquet(path)  # one block: its users x videos, a fixed size whatever the logs
        grid = build_block_grid(block)
        rows = UserRowIndex(path)
        catalogue = np.unique(block[Columns.item].to_numpy()).astype(np.int32)
        blocks[name] = _Block(
            rows=rows,
            grid=grid,
            popularity=popularity_scores(counts, grid.items, inputs.evaluate.popularity_smoothing),
            fallback=popularity_fallback(pl.scan_parquet(inputs.train), catalogue),
            catalogue=catalogue,
        )
    stats = history_stats(
        train, inputs.label.threshold, n_partitions=partition_count(train.n_rows, LOCAL_COMPUTE)
    )
    return _Shared(
        history=UserRowIndex(inputs.history),
        train=train,
        train_table=UserRowIndex(inputs.train_table),
        train_stats=stats,
        blocks=blocks,
    )


def _with_als_columns(rows: pl.DataFrame, model: AlsModel, items: np.ndarray, seen: scipy.sparse.csr_matrix) -> pl.DataFrame:
    """``rows`` (features@train rows) with their ALS columns recomputed from ``model``."""
    als = als_pair_features(model, rows.select(Columns.user, Columns.item), items, seen=seen)
    replaced = [c for c in als.columns if c not in (Columns.user, Columns.item)]
    return rows.drop(replaced).join(als, on=[Columns.user, Columns.item], how="left", maintain_order="left").select(rows.columns)


def _ranker_rows(inputs: SeedSpreadInputs, shared: _Shared, model: AlsModel, seed: int) -> Iterator[pl.DataFrame]:
    """features@train with the seed's ALS columns, reduced to the rows the ranker with ``seed`` learns from.

    One user partition at a time: its ALS columns are recomputed (watched videos from the
    partition users' own history rows, as the features stage reads them), then
    :func:`reco.models.features.training_rows` keeps the sampled users' candidate-like rows (by
    the new ALS rank), exactly as the train_ranker stage reduces the table; given the table's
    users, the ranker sees the rows it would see in the whole recomputed table.
    """
    table = shared.train_table
    train_users, valid_users = sample_users(table.users, inputs.ranker.train_users, inputs.ranker.valid_fraction, seed)
    chosen = np.union1d(train_users, valid_users)
    items = inputs.items[Columns.item].to_numpy()
    for users in user_partitions(table.users, partition_count(table.n_rows, LOCAL_COMPUTE)):
        rows = table.scan(users, row_index=ROW).collect()
        # only these users' rows of the seen matrix are read: the whole history's pairs never in memory
        seen = seen_matrix(model, shared.history.scan(users, [Columns.user, Columns.item]).collect())
        yield training_rows(_with_als_columns(rows, model, items, seen), chosen, inputs.ranker.candidate_rank_pct)


def _block_features(
    inputs: SeedSpreadInputs, shared: _Shared, model: AlsModel, candidates: pl.DataFrame, block: _Block, scratch: Path
) -> pl.DataFrame:
    """The block candidates' feature table, built as the features stage builds it (by user partition)."""
    pairs_file, table_file = scratch / "candidates.parquet", scratch / "features.parquet"
    write_parquet(candidates, pairs_file)
    write_feature_table(
        FeatureSources(
            pairs=pairs_file,
            history=inputs.train,
            users=inputs.users,
            items=inputs.items,
            item_daily=inputs.item_daily,
            als_model=model,
            catalogue=block.catalogue,
        ),
        table_file,
        threshold=inputs.label.threshold,
        smoothing=inputs.features.popularity_smoothing,
        daily_window_days=inputs.features.daily_window_days,
        compute=LOCAL_COMPUTE,
        latest_serving_date=inputs.latest_serving_date,
        history_stats_cache=shared.train_stats,
    )
    return pl.read_parquet(table_file)


def seed_run(inputs: SeedSpreadInputs, seed: int, shared: _Shared | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Retrain ALS (both fits) and the ranker with ``seed``; ``{block: {model: {metric: value}}}``."""
    shared = shared or _shared(inputs)
    als_params = dataclasses.replace(inputs.als, random_state=seed)
    als_history, _ = fit_als(_scan_views(inputs.history), als_params, threshold=inputs.label.threshold)
    als_train, _ = fit_als(_scan_views(inputs.train), als_params, threshold=inputs.label.threshold)
    features = list(inputs.features_list)
    ranker = train_ranker(
        pl.concat(list(_ranker_rows(inputs, shared, als_history, seed)), how="vertical", rechunk=True),
        features,
        list(inputs.categorical),
        dataclasses.replace(inputs.ranker, seed=seed),
        users=shared.train_table.users,
        compute=LOCAL_COMPUTE,
    )
    ks = [10]
    train_rows = shared.train
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, block in shared.blocks.items():
        grid = block.grid
        als = item_scores(als_train, grid.users, grid.items)
        unknown = np.isnan(als).all(axis=1)  # served by popularity, as the candidates stage does
        als = np.where(unknown[:, None], block.popularity[None, :], als)
        candidates, _ = block_candidates(
            als_train,
            train_rows,
            block.rows,
            inputs.candidates.n,
            n_partitions=partition_count(train_rows.rows_of(block.rows.users), LOCAL_COMPUTE),
            fallback=block.fallback,
        )
        with tempfile.TemporaryDirectory(prefix="seed-spread-") as scratch:
            table = _block_features(inputs, shared, als_train, candidates, block, Path(scratch))
        reranked = table.select(Columns.user, Columns.item).with_columns(
            pl.Series(Columns.score, ranker.booster.predict(
                table.select(pl.col(features).cast(pl.Float32)).to_numpy(),
                num_iteration=ranker.best_iteration, num_threads=inputs.ranker.num_threads,
            ))
        )  # fmt: skip
        scores = {"als": als, "ranker": two_stage_scores(grid, reranked, als)}
        evaluated = evaluate_models(grid, scores, ks)
        results[name] = {model: {m: float(r.summary[m]) for m in REPORTED_METRICS} for model, r in evaluated.items()}
    return results


def seed_spread(inputs: SeedSpreadInputs, seeds: Sequence[int]) -> dict[str, Any]:
    """Every seed's run and, per block, model and metric, :func:`summarise` of the values."""
    shared = _shared(inputs)
    runs = {int(seed): seed_run(inputs, int(seed), shared) for seed in seeds}
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
