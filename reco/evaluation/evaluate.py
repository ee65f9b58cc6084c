"""Score every model on the same fully observed grid of one evaluation block; per-user and mean metrics.

The grid (:class:`BlockGrid`) is every user x every video of the block (``validation`` or
``test``, two disjoint sets of ``small_matrix`` users); a cell is *observed* when
``small_matrix`` has it, every model ranks only the observed cells of each user, and relevance
is the binary ``label``. For user partitions (:mod:`reco.evaluation.pipeline`),
:func:`grid_rows` cuts a grid to some of its users, :class:`TwoStageBounds` carries the
two-stage score ranges of the whole block to them, and :func:`training_view_counts` counts the
popularity baselines' views of a training file one partition at a time. See docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from reco.compute import map_user_partitions, tree_reduce
from reco.evaluation.metrics import DEFINITIONS, METRIC_NAMES, RankingResult, ranking_metrics, top_k_items
from reco.models.baselines import ViewCounts, grid_scores, view_counts
from reco.partitions import UserRowIndex
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class BlockGrid:
    """Dense view of one evaluation block: sorted users and items, relevance and observed masks."""

    users: np.ndarray  # int32, sorted
    items: np.ndarray  # int32, sorted
    relevant: np.ndarray  # bool (n_users, n_items)
    observed: np.ndarray  # bool (n_users, n_items)


def build_block_grid(block: pl.DataFrame) -> BlockGrid:
    """Build the grid from a block frame with user, video and ``label`` columns (one row per pair)."""
    users = np.unique(block[Columns.user].to_numpy()).astype(np.int32)
    items = np.unique(block[Columns.item].to_numpy()).astype(np.int32)
    marked = block.select(Columns.user, Columns.item, pl.col(Columns.label).cast(pl.Float32), pl.lit(1.0).alias("_obs"))
    relevant = grid_scores(marked, users, items, Columns.label, fill=0.0) > 0.5
    observed = grid_scores(marked, users, items, "_obs", fill=0.0) > 0.5
    return BlockGrid(users=users, items=items, relevant=relevant, observed=observed)


@dataclass(frozen=True)
class TwoStageBounds:
    """The score ranges :func:`two_stage_scores` maps into disjoint intervals, over every user of a block.

    Computed on the whole grid, or per user partition and combined (:meth:`combine`: min and max,
    exact), so a partition scores its users exactly as the whole grid would.

    Attributes
    ----------
    first
        (min, max) of the finite first-stage scores; ``None`` when there is none.
    ranker
        (min, max) of the ranker's candidate scores; ``None`` when there is no candidate.
    """

    first: tuple[float, float] | None
    ranker: tuple[float, float] | None

    @classmethod
    def of(cls, first_stage: np.ndarray, ranker_scores: np.ndarray) -> TwoStageBounds:
        """The bounds of some users' first-stage score rows and their candidates' ranker scores."""
        first = np.asarray(first_stage, dtype=np.float64)
        finite = first[np.isfinite(first)]
        ranker = np.asarray(ranker_scores, dtype=np.float64)
        return cls(
            first=(float(finite.min()), float(finite.max())) if len(finite) else None,
            ranker=(float(ranker.min()), float(ranker.max())) if len(ranker) else None,
        )

    def combine(self, other: TwoStageBounds) -> TwoStageBounds:
        """The bounds of both sets of users."""

        def union(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[float, float] | None:
            if a is None or b is None:
                return a or b
            return (min(a[0], b[0]), max(a[1], b[1]))

        return TwoStageBounds(first=union(self.first, other.first), ranker=union(self.ranker, other.ranker))


def grid_rows(grid: BlockGrid, start: int, stop: int) -> BlockGrid:
    """The grid of users ``start:stop`` only (a user partition): same videos, those users' rows.

    Examples
    --------
    >>> block = pl.DataFrame({"user_id": [7, 8, 9], "video_id": [1, 1, 2], "label": [True, False, True]})
    >>> grid_rows(build_block_grid(block), 1, 3).users.tolist()
    [8, 9]
    """
    return BlockGrid(
        users=grid.users[start:stop],
        items=grid.items,
        relevant=grid.relevant[start:stop],
        observed=grid.observed[start:stop],
    )


def two_stage_scores(
    grid: BlockGrid, reranked: pl.DataFrame, first_stage: np.ndarray, bounds: TwoStageBounds | None = None
) -> np.ndarray:
    """Grid scores of a two-stage model: re-ranked candidates first, then the first stage's order.

    ``reranked`` has user, video and ``score`` (the ranker's) for each candidate; every other cell
    keeps its first-stage score, shifted below the lowest candidate so candidates always come first.
    ``bounds`` are the score ranges over the whole block when ``grid`` holds only some of its
    users (a user partition); ``None``: those of ``grid`` and ``reranked``.
    """
    first = np.where(np.isnan(first_stage), -np.inf, first_stage).astype(np.float64)
    ranker = reranked[Columns.score].to_numpy().astype(np.float64)
    if bounds is None:
        bounds = TwoStageBounds.of(first, ranker)
    if bounds.ranker is None:
        return first.astype(np.float32)
    # Map both into disjoint ranges: candidates in [2, 3], the rest in [0, 1].
    lo, hi = bounds.first if bounds.first is not None else (0.0, 1.0)
    base = np.where(np.isfinite(first), (first - lo) / max(hi - lo, 1e-12), -np.inf)
    r_lo, r_hi = bounds.ranker
    cand = reranked.with_columns(pl.Series(Columns.score, 2.0 + (ranker - r_lo) / max(r_hi - r_lo, 1e-12)))
    scattered = grid_scores(cand, grid.users, grid.items, Columns.score, fill=np.nan).astype(np.float64)
    return np.where(np.isnan(scattered), base, scattered)


def top_k_lists(grid: BlockGrid, scores: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Each model's top-``k`` catalogue indices per grid user over the observed cells (``-1`` = padding)."""
    return {
        name: top_k_items(np.asarray(matrix, dtype=np.float64), k, valid=grid.observed)
        for name, matrix in scores.items()
    }


def evaluate_models(
    grid: BlockGrid,
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


def top_k_frame(grid: BlockGrid, matrix: np.ndarray, k: int, recommended: np.ndarray | None = None) -> pl.DataFrame:
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


def per_user_frame(grid: BlockGrid, results: dict[str, RankingResult]) -> pl.DataFrame:
    """Every evaluated user's value of every metric at every K, long format (:data:`PER_USER_SCHEMA`).

    One row per (evaluated user, model, metric, K) for the metrics of
    :data:`reco.evaluation.metrics.METRIC_NAMES` (coverage is not per user), sorted by model,
    metric, K and user id; the mean of a (model, metric, K) group is the value in ``metrics.json``.

    Examples
    --------
    >>> block = pl.DataFrame({"user_id": [7, 7, 9], "video_id": [1, 2, 1], "label": [True, False, False]})
    >>> grid = build_block_grid(block)
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


# ------------------------------------------------------------------------------------------------
# The popularity baselines' counts of a training file, one user partition at a time
# ------------------------------------------------------------------------------------------------

_VIEW_COLUMNS = (Columns.item, Columns.video_duration, Columns.watch_ratio, Columns.label_ratio)


def combine_view_counts(left: ViewCounts, right: ViewCounts) -> ViewCounts:
    """The :class:`reco.models.baselines.ViewCounts` of two sets of views (whole-number sums: exact)."""
    table = (
        pl.concat([left.table, right.table])
        .group_by(Columns.item, "_bucket")
        .agg(pl.col("pos").sum(), pl.col("views").sum())
        .sort(Columns.item, "_bucket", nulls_last=True)
    )
    return ViewCounts(table=table, edges_ms=left.edges_ms)


def view_counts_partition(
    users: np.ndarray, *, train: UserRowIndex, threshold: float, edges_ms: tuple[float, ...]
) -> ViewCounts:
    """:func:`reco.models.baselines.view_counts` of one user partition's training views."""
    return view_counts(train.scan(users, [c for c in _VIEW_COLUMNS if c in train.schema]).collect(), threshold, edges_ms)


def training_view_counts(
    train: UserRowIndex,
    threshold: float,
    edges_ms: tuple[float, ...] = (),
    *,
    client: Client | None = None,
    n_partitions: int = 1,
) -> ViewCounts:
    """:func:`reco.models.baselines.view_counts` of a training file, one user partition at a time.

    Examples
    --------
    >>> from reco.partitions import FrameRows
    >>> train = pl.DataFrame({"user_id": [1, 2, 2], "video_id": [5, 5, 6], "watch_ratio": [3.0, 1.0, 2.5]})
    >>> training_view_counts(FrameRows(train), 2.0, n_partitions=2).per_item(np.array([5, 6]))
    (array([1., 1.]), array([2., 1.]))
    """
    partials = map_user_partitions(
        client, view_counts_partition, train.users, n_partitions, broadcast={"train": train},
        threshold=threshold, edges_ms=tuple(edges_ms),
    )  # fmt: skip
    if not partials:
        return view_counts(pl.DataFrame(schema={Columns.item: pl.Int32, Columns.watch_ratio: pl.Float32}), threshold)
    return tree_reduce(partials, combine_view_counts)
