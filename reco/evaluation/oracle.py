"""Oracles: rankings that read the simulator's ground truth (ceilings and diagnostics, not models).

``oracle`` ranks each user's cells by the exact probability of the label (no model can beat it on
average), ``oracle_watch_ratio`` by the expected watch ratio, and ``oracle_item`` /
``oracle_item_watch_ratio`` by per-video means, the best list shown to everyone; the orderings are the same
on every machine. See docs/design/evaluation.md.

Example
-------
>>> import numpy as np
>>> item_means(np.array([[0.2, 0.8], [0.4, np.nan]]), np.array([[True, True], [True, False]])).tolist()
[0.30000000000000004, 0.8]
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from reco.data.labels import LabelRule, bucket_index_expr
from reco.data.simulator import probability_watch_ratio_above
from reco.errors import InputDataError
from reco.evaluation.evaluate import BlockGrid
from reco.models.baselines import grid_scores
from reco.schema import Columns

__all__ = ["ORACLE_MODELS", "TRUTH_COLUMNS", "item_means", "label_cutoffs", "label_probability", "oracle_scores"]

ORACLE_MODELS: Final[tuple[str, ...]] = ("oracle", "oracle_watch_ratio", "oracle_item", "oracle_item_watch_ratio")
_PROBABILITY: Final = "_label_probability"
# The ground-truth columns the oracles read.
TRUTH_COLUMNS: Final[tuple[str, ...]] = (
    Columns.user,
    Columns.item,
    Columns.video_duration,
    Columns.watch_eta,
    Columns.skip_shift,
    Columns.expected_watch_ratio,
)


def label_cutoffs(durations_ms: pl.Series, rule: LabelRule) -> np.ndarray:
    """Watch-ratio cut-off of the label for views of videos of these durations (ms), float64.

    ``threshold`` kind: ``rule.threshold`` everywhere. ``duration_debiased``: ``rule.cutoffs`` of the
    duration's bucket.

    Examples
    --------
    >>> rule = LabelRule("duration_debiased", 2.0, (10_000.0,), (4.0, 1.0))
    >>> label_cutoffs(pl.Series([5_000, 10_000, 60_000]), rule).tolist()
    [4.0, 4.0, 1.0]
    >>> label_cutoffs(pl.Series([5_000]), LabelRule("threshold", 2.0, (10_000.0,), (2.0, 2.0))).tolist()
    [2.0]
    """
    if rule.kind == "threshold":
        return np.full(len(durations_ms), float(rule.threshold))
    if len(rule.cutoffs) != len(rule.edges_ms) + 1:
        raise ValueError(
            f"a label rule needs len(edges_ms) + 1 cut-offs, "
            f"got {len(rule.edges_ms)} edges and {len(rule.cutoffs)} cut-offs"
        )
    if durations_ms.null_count():
        raise ValueError("every duration must be known to place a view in its duration bucket")
    bucket = pl.DataFrame({Columns.video_duration: durations_ms}).select(bucket_index_expr(rule.edges_ms))
    return np.asarray(rule.cutoffs, dtype=np.float64)[bucket.to_series().to_numpy().astype(np.int64)]


def label_probability(truth: pl.DataFrame, rule: LabelRule) -> np.ndarray:
    """``P(label)`` of every ground-truth row: ``P(watch_ratio > cut-off)`` under the generative model.

    Examples
    --------
    >>> truth = pl.DataFrame({"video_duration": [3_000, 60_000], "watch_eta": [2.15, 2.15], "skip_shift": [0.0, 0.0]})
    >>> p = label_probability(truth, LabelRule("threshold", 2.0, (), (2.0,)))
    >>> bool(p[0] > 0.5 > p[1] > 0)
    True
    """
    durations = truth[Columns.video_duration]
    return probability_watch_ratio_above(
        truth[Columns.watch_eta].to_numpy().astype(np.float64),
        durations.to_numpy().astype(np.float64) / 1000.0,
        label_cutoffs(durations, rule),
        truth[Columns.skip_shift].to_numpy().astype(np.float64),
    )


def item_means(scores: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Mean of ``scores`` over each column's observed cells (NaN for a column without one), float64.

    Sequential ``np.bincount`` sums: the same bits whatever the CPU or thread count.
    """
    rows, cols = np.nonzero(observed)
    values = np.asarray(scores, dtype=np.float64)[rows, cols]
    n_items = observed.shape[1]
    sums = np.bincount(cols, weights=values, minlength=n_items)
    counts = np.bincount(cols, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def oracle_scores(
    truth: pl.DataFrame, grid: BlockGrid, rule: LabelRule, source: str = "ground truth"
) -> dict[str, np.ndarray]:
    """The four oracle score matrices of ``grid`` (see docs/design/evaluation.md), float64.

    Parameters
    ----------
    truth
        The simulator's ground truth (:data:`reco.data.simulator.TRUTH_SCHEMA`); rows outside the
        grid are ignored.
    grid
        The block's grid.
    rule
        The fitted label rule (``split_summary.json`` -> ``label_rule``).
    source
        Name of the truth file in error messages.

    Raises
    ------
    InputDataError
        A column is missing, or an observed cell of the grid has no ground-truth row (the truth
        does not belong to this data).
    """
    missing = [column for column in TRUTH_COLUMNS if column not in truth.columns]
    if missing:
        raise InputDataError(source, f"missing ground-truth column(s) {missing}; expected {list(TRUTH_COLUMNS)}")
    in_grid = pl.col(Columns.user).is_in(pl.Series(grid.users).implode())
    cells = truth.filter(in_grid & pl.col(Columns.item).is_in(pl.Series(grid.items).implode()))
    if cells[Columns.video_duration].null_count() or cells[Columns.watch_eta].null_count():
        raise InputDataError(source, "null video_duration or watch_eta in the block's ground-truth rows")
    cells = cells.with_columns(pl.Series(_PROBABILITY, label_probability(cells, rule)))
    probability = grid_scores(cells, grid.users, grid.items, _PROBABILITY, dtype=np.float64)
    watch_ratio = grid_scores(cells, grid.users, grid.items, Columns.expected_watch_ratio, dtype=np.float64)
    uncovered = int((grid.observed & np.isnan(probability)).sum())
    if uncovered:
        raise InputDataError(
            source, f"{uncovered} observed cells of the block have no ground-truth row; the truth must cover every cell"
        )
    shape = grid.observed.shape
    return {
        "oracle": probability,
        "oracle_watch_ratio": watch_ratio,
        "oracle_item": np.broadcast_to(item_means(probability, grid.observed), shape),
        "oracle_item_watch_ratio": np.broadcast_to(item_means(watch_ratio, grid.observed), shape),
    }
