"""Score every model on the same fully observed grid of one evaluation block; per-user and mean metrics.

The grid is every user x every video of the block (``validation`` or ``test``, two disjoint sets
of ``small_matrix`` users); a cell is *observed* when ``small_matrix`` has it (99.6% of cells in
KuaiRec). Every model ranks only the observed cells of each user, so no model is rewarded or
punished for the few unobserved ones. Relevance is the binary ``label``. (``TestGrid`` and
``build_test_grid`` keep their names from when the test was the only block.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from reco.evaluation.metrics import DEFINITIONS, METRIC_NAMES, RankingResult, ranking_metrics, top_k_items
from reco.models.baselines import grid_scores
from reco.schema import Columns


@dataclass(frozen=True)
class TestGrid:
    """Dense view of one evaluation block: sorted users and items, relevance and observed masks."""

    users: np.ndarray  # int32, sorted
    items: np.ndarray  # int32, sorted
    relevant: np.ndarray  # bool (n_users, n_items)
    observed: np.ndarray  # bool (n_users, n_items)


def build_test_grid(test: pl.DataFrame) -> TestGrid:
    """Build the grid from a block frame with user, video and ``label`` columns (one row per pair)."""
    users = np.unique(test[Columns.user].to_numpy()).astype(np.int32)
    items = np.unique(test[Columns.item].to_numpy()).astype(np.int32)
    marked = test.select(Columns.user, Columns.item, pl.col(Columns.label).cast(pl.Float32), pl.lit(1.0).alias("_obs"))
    relevant = grid_scores(marked, users, items, Columns.label, fill=0.0) > 0.5
    observed = grid_scores(marked, users, items, "_obs", fill=0.0) > 0.5
    return TestGrid(users=users, items=items, relevant=relevant, observed=observed)


def two_stage_scores(grid: TestGrid, reranked: pl.DataFrame, first_stage: np.ndarray) -> np.ndarray:
    """Grid scores of a two-stage model: re-ranked candidates first, then the first stage's order.

    ``reranked`` has user, video and ``score`` (the ranker's) for each candidate; every other cell
    keeps its first-stage score, shifted below the lowest candidate so candidates always come first.
    """
    first = np.where(np.isnan(first_stage), -np.inf, first_stage).astype(np.float64)
    finite = first[np.isfinite(first)]
    ranker = reranked[Columns.score].to_numpy().astype(np.float64)
    if len(ranker) == 0:
        return first.astype(np.float32)
    # Map both into disjoint ranges: candidates in [2, 3], the rest in [0, 1].
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    base = np.where(np.isfinite(first), (first - lo) / max(hi - lo, 1e-12), -np.inf)
    r_lo, r_hi = ranker.min(), ranker.max()
    cand = reranked.with_columns(pl.Series(Columns.score, 2.0 + (ranker - r_lo) / max(r_hi - r_lo, 1e-12)))
    scattered = grid_scores(cand, grid.users, grid.items, Columns.score, fill=np.nan).astype(np.float64)
    return np.where(np.isnan(scattered), base, scattered)


def top_k_lists(grid: TestGrid, scores: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Each model's top-``k`` catalogue indices per grid user over the observed cells (``-1`` = padding)."""
    return {
        name: top_k_items(np.asarray(matrix, dtype=np.float64), k, valid=grid.observed)
        for name, matrix in scores.items()
    }


def evaluate_models(
    grid: TestGrid,
    scores: dict[str, np.ndarray],
    ks: list[int],
    recommended: dict[str, np.ndarray] | None = None,
) -> dict[str, RankingResult]:
    """Rank the observed cells of each user by each model's scores and compute the metrics.

    ``recommended`` (from :func:`top_k_lists` with ``k >= max(ks)``) skips the top-K selection when
    the caller already has the lists.
    """
    lists = recommended if recommended is not None else top_k_lists(grid, scores, max(ks))
    return {
        name: ranking_metrics(lists[name], grid.relevant, ks, n_catalogue_items=len(grid.items)) for name in scores
    }


def top_k_frame(grid: TestGrid, matrix: np.ndarray, k: int, recommended: np.ndarray | None = None) -> pl.DataFrame:
    """The product's output: top-``k`` (user_id, video_id, rank, score) per grid user.

    ``recommended`` (this matrix's list from :func:`top_k_lists` with at least ``k`` columns) skips
    the selection: top-K lists are nested, so its first ``k`` columns are the top-``k``.
    """
    if recommended is None or recommended.shape[1] < k:
        recommended = top_k_items(np.asarray(matrix, dtype=np.float64), k, valid=grid.observed)
    else:
        recommended = recommended[:, :k]
    n_users = len(grid.users)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int16), n_users)
    flat = recommended.ravel()
    rows = np.repeat(np.arange(n_users), k)
    keep = flat >= 0
    return pl.DataFrame(
        {
            Columns.user: grid.users[rows[keep]],
            Columns.item: grid.items[flat[keep]],
            Columns.rank: ranks[keep],
            Columns.score: np.asarray(matrix, dtype=np.float32)[rows[keep], flat[keep]],
        }
    )


def metrics_payload(results: dict[str, RankingResult], ndigits: int = 6) -> dict[str, Any]:
    """``{"definitions": ..., "models": {name: {metric_at_k: value}}}`` with rounded values."""
    return {
        "definitions": dict(DEFINITIONS),
        "models": {name: {k: round(float(v), ndigits) for k, v in sorted(r.summary.items())} for name, r in results.items()},
    }


PER_USER_SCHEMA: pl.Schema = pl.Schema(
    {
        Columns.user: pl.Int32,
        "model": pl.String,
        "metric": pl.String,
        "k": pl.Int16,
        "value": pl.Float64,
    }
)


def per_user_frame(grid: TestGrid, results: dict[str, RankingResult]) -> pl.DataFrame:
    """Every evaluated user's value of every metric at every K, long format (:data:`PER_USER_SCHEMA`).

    One row per (evaluated user, model, metric, K) for the metrics of
    :data:`reco.evaluation.metrics.METRIC_NAMES` (coverage is not per user), sorted by model,
    metric, K and user id; the mean of a (model, metric, K) group is the value in ``metrics.json``.

    Examples
    --------
    >>> test = pl.DataFrame({"user_id": [7, 7, 9], "video_id": [1, 2, 1], "label": [True, False, False]})
    >>> grid = build_test_grid(test)
    >>> frame = per_user_frame(grid, evaluate_models(grid, {"m": grid.relevant.astype(np.float32)}, [1]))
    >>> frame.filter(pl.col("metric") == "ndcg").rows()
    [(7, 'm', 'ndcg', 1, 1.0)]
    """
    parts = []
    for model in sorted(results):
        result = results[model]
        users = grid.users[result.evaluated_users].astype(np.int32)
        keys = sorted(
            (name, int(key.rpartition("_at_")[2]))
            for key in result.per_user
            for name in METRIC_NAMES
            if key.rpartition("_at_")[0] == name
        )
        for name, k in keys:
            parts.append(
                pl.DataFrame(
                    {
                        Columns.user: users,
                        "model": pl.Series([model] * len(users), dtype=pl.String),
                        "metric": pl.Series([name] * len(users), dtype=pl.String),
                        "k": pl.Series(np.full(len(users), k, dtype=np.int16)),
                        "value": np.asarray(result.per_user[f"{name}_at_{k}"], dtype=np.float64),
                    },
                    schema=PER_USER_SCHEMA,
                )
            )
    if not parts:
        return pl.DataFrame(schema=PER_USER_SCHEMA)
    return pl.concat(parts, rechunk=True)
