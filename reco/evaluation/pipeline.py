"""``evaluate@<block>``: score every model on one evaluation block's grid and write the block's results.

The block (``validation`` or ``test``: disjoint sets of ``small_matrix`` users, see
:mod:`reco.data.split`) is a grid of its users x its videos; every model ranks only the observed
cells of each user (:mod:`reco.evaluation.evaluate`). Settings are chosen on ``validation``; the
``test`` block is read once, for the chosen configuration (``report`` puts both side by side).

Models
------
``random``, ``popularity``, ``duration``, ``duration_popularity``, ``popularity_within_duration``
    Reference rankers (:mod:`reco.models.baselines`), non-personalised except ``random``.
``als``
    The candidate generator alone (``models/als/test``, fitted on all training data), ranking the
    whole block catalogue; users unknown to ALS are served by ``popularity`` (as the candidates
    stage does).
``ranker``
    The product: ALS's top ``candidates.n`` re-ranked by LightGBM, the other videos after them in
    ALS order.
``oracle``, ``oracle_watch_ratio``, ``oracle_item``, ``oracle_item_watch_ratio``
    Only with the simulator: rankings that read its ground truth (:mod:`reco.evaluation.oracle`).

Checks (before any model is loaded): every K must be at most the block's catalogue size, and
``candidates.n`` (read from ``metrics/candidates/<block>.json``) at least ``max(evaluate.ks)``:
below it the ranker's list would be ALS's order past the candidates.

Determinism: every ordering is :func:`reco.evaluation.metrics.top_k_items` (ties by catalogue index);
the baselines' and oracles' scores come from exact arithmetic or :mod:`reco.portable_math` (ALS and
the ranker score as their models do); per-video means are sequential sums; every output is written
with sorted keys or in a fixed row order. The same inputs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from reco.data.labels import LabelRule
from reco.errors import InputDataError, ParamsError
from reco.evaluation.beyond_accuracy import beyond_accuracy_report, item_stats
from reco.evaluation.evaluate import (
    TestGrid,
    build_test_grid,
    evaluate_models,
    metrics_payload,
    per_user_frame,
    top_k_frame,
    top_k_lists,
    two_stage_scores,
)
from reco.evaluation.inputs import label_rule_from_summary, read_json
from reco.evaluation.layout import PER_USER_NAME, TOP_K_NAME, BlockFiles
from reco.evaluation.metrics import RankingResult
from reco.evaluation.oracle import TRUTH_COLUMNS, oracle_scores
from reco.evaluation.segments import nearest_cutoff, segments_report, user_segments
from reco.evaluation.uncertainty import uncertainty_report
from reco.io import atomic_dir, write_json, write_parquet
from reco.models.als import AlsModel, item_scores, load_als
from reco.models.baselines import (
    duration_popularity_scores,
    duration_scores,
    item_durations,
    popularity_scores,
    random_scores,
    view_counts,
)
from reco.models.ranker import load_ranker
from reco.params import EvaluateParams
from reco.schema import Columns, PreparedFiles, RawFiles

__all__ = [
    "BlockEvaluation",
    "BlockInputs",
    "check_cutoffs",
    "evaluate_block",
    "load_block_inputs",
    "model_scores",
    "write_block_evaluation",
]

_TRAIN_COLUMNS = (Columns.user, Columns.item, Columns.video_duration, Columns.watch_ratio, Columns.label_ratio)


class Scorer(Protocol):
    """What evaluation needs of the ranker: a score per row of a feature table."""

    def predict(self, table: pl.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class BlockInputs:
    """Everything ``evaluate@<block>`` reads, loaded.

    Attributes
    ----------
    block
        ``validation`` or ``test``.
    rows
        The block's cells (user, video, ``label``; one row per observed cell).
    train
        Training views (user, video, ``video_duration``, ``watch_ratio``, ``label_ratio``).
    items, profiles
        Prepared items (video, ``tags``, ``video_duration``) and users (user, ``user_active_degree``).
    rule
        The fitted label rule (``split_summary.json`` -> ``label_rule``).
    split_summary, candidate_stats, manifest
        ``metrics/split_summary.json``, ``metrics/candidates/<block>.json``, ``data/raw/manifest.json``.
    als
        The ALS model that serves the block (fitted on all training data).
    candidates
        The block's candidate feature table (``data/features/<block>/table.parquet``).
    ranker
        The trained ranker (anything with ``predict(table) -> scores``).
    truth
        The simulator's ground truth; ``None`` for real data.
    """

    block: str
    rows: pl.DataFrame
    train: pl.DataFrame
    items: pl.DataFrame
    profiles: pl.DataFrame
    rule: LabelRule
    split_summary: Mapping[str, Any]
    candidate_stats: Mapping[str, Any]
    manifest: Mapping[str, Any]
    als: AlsModel
    candidates: pl.DataFrame
    ranker: Scorer
    truth: pl.DataFrame | None = None


@dataclass(frozen=True)
class BlockEvaluation:
    """The results of one block, as written by :func:`write_block_evaluation`.

    ``metrics``, ``uncertainty``, ``beyond_accuracy`` and ``segments`` are the JSON payloads;
    ``per_user`` and ``top_k`` the two parquet tables; ``results`` the per-model ranking results
    they were computed from.
    """

    block: str
    metrics: dict[str, Any]
    uncertainty: dict[str, Any]
    beyond_accuracy: dict[str, Any]
    segments: dict[str, Any]
    per_user: pl.DataFrame
    top_k: pl.DataFrame
    results: dict[str, RankingResult]


def check_cutoffs(ks: Sequence[int], n_items: int, candidates_n: int | None, block: str) -> None:
    """Refuse cut-offs the block cannot support (see the module docstring).

    Raises
    ------
    ParamsError
        ``max(ks)`` exceeds the block's catalogue size or ``candidates_n`` (when given).
    """
    if max(ks) > n_items:
        raise ParamsError(
            f"params.yaml: evaluate.ks = {list(ks)} is invalid; expected every K <= the {block} catalogue "
            f"size ({n_items} videos)"
        )
    if candidates_n is not None and candidates_n < max(ks):
        # The two-stage list is only re-ranked down to candidates.n; a longer K would be ALS's order.
        raise ParamsError(
            f"params.yaml: candidates.n = {candidates_n} is smaller than max(evaluate.ks) = {max(ks)}; "
            "expected candidates.n >= every K"
        )


def _read_columns(path: Path, wanted: Sequence[str]) -> pl.DataFrame:
    """The columns of ``wanted`` that the parquet file has (``label_ratio`` is optional, for instance)."""
    present = pl.read_parquet_schema(path)
    return pl.read_parquet(path, columns=[column for column in wanted if column in present])


def load_block_inputs(files: BlockFiles, ks: Sequence[int]) -> BlockInputs:
    """Read the block's inputs; the cut-off checks run before the models are loaded.

    Raises
    ------
    ParamsError
        From :func:`check_cutoffs`.
    InputDataError
        A malformed input (JSON, label rule, models).
    FileNotFoundError
        An input is missing (an upstream stage has not run).
    """
    rows = pl.read_parquet(files.block_file, columns=[Columns.user, Columns.item, Columns.label])
    n_items = rows[Columns.item].n_unique()
    check_cutoffs(ks, n_items, None, files.block)
    candidate_stats = read_json(files.candidates_file)
    if not isinstance(candidate_stats, Mapping) or not isinstance(candidate_stats.get("n"), int):
        raise InputDataError(
            files.candidates_file, "expected a JSON object with the integer 'n' (written by the candidates stage)"
        )
    check_cutoffs(ks, n_items, candidate_stats["n"], files.block)
    manifest = read_json(files.raw_dir / RawFiles.manifest)
    summary = read_json(files.split_summary_file)
    truth = None
    if manifest.get("source") == "simulate":
        truth = pl.read_parquet(files.raw_dir / RawFiles.ground_truth, columns=list(TRUTH_COLUMNS))
    return BlockInputs(
        block=files.block,
        rows=rows,
        train=_read_columns(files.train_file, _TRAIN_COLUMNS),
        items=pl.read_parquet(
            files.prepared_dir / PreparedFiles.items, columns=[Columns.item, Columns.tags, Columns.video_duration]
        ),
        profiles=pl.read_parquet(
            files.prepared_dir / PreparedFiles.users, columns=[Columns.user, Columns.user_active_degree]
        ),
        rule=label_rule_from_summary(summary, files.split_summary_file),
        split_summary=summary,
        candidate_stats=candidate_stats,
        manifest=manifest,
        als=load_als(files.als_dir),
        candidates=pl.read_parquet(files.features_dir / "table.parquet"),
        ranker=load_ranker(files.ranker_dir),
        truth=truth,
    )


def model_scores(
    inputs: BlockInputs, grid: TestGrid, params: EvaluateParams
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every model's ``(n_users, n_items)`` scores on ``grid`` and the mask of users unknown to ALS.

    Item-level scores are read-only broadcast views (one row for all users).
    """
    shape = grid.relevant.shape
    rule, smoothing = inputs.rule, params.popularity_smoothing
    counts = view_counts(inputs.train, rule.threshold, rule.edges_ms)  # one pass for the three popularity baselines
    popularity = np.broadcast_to(popularity_scores(counts, grid.items, smoothing), shape)
    als = item_scores(inputs.als, grid.users, grid.items)
    unknown_users = np.isnan(als).all(axis=1)
    als = np.where(unknown_users[:, None], popularity, als)
    table = inputs.candidates
    ranker = pl.Series(Columns.score, inputs.ranker.predict(table))
    reranked = table.select(Columns.user, Columns.item).with_columns(ranker)
    durations = item_durations(inputs.items, grid.items)
    by_duration = duration_popularity_scores(
        inputs.train, durations, grid.items, rule.edges_ms, rule.threshold, smoothing, counts=counts
    )
    scores: dict[str, np.ndarray] = {
        "random": random_scores(len(grid.users), len(grid.items), params.seed),
        "popularity": popularity,
        "als": als,
        "ranker": two_stage_scores(grid, reranked, als),
        "duration": np.broadcast_to(duration_scores(durations), shape),
        "duration_popularity": np.broadcast_to(by_duration.bucket_rate, shape),
        "popularity_within_duration": np.broadcast_to(by_duration.within_bucket, shape),
    }
    if inputs.truth is not None:
        scores.update(oracle_scores(inputs.truth, grid, rule, source=f"data/raw/{RawFiles.ground_truth}"))
    return scores, unknown_users


def evaluate_block(inputs: BlockInputs, params: EvaluateParams) -> BlockEvaluation:
    """Score every model on the block's grid and build every payload of the block (nothing is written)."""
    grid = build_test_grid(inputs.rows)
    ks = list(params.ks)
    check_cutoffs(ks, len(grid.items), inputs.candidate_stats.get("n"), inputs.block)
    scores, unknown_users = model_scores(inputs, grid, params)
    recommended = top_k_lists(grid, scores, max(ks))
    results = evaluate_models(grid, scores, ks, recommended=recommended)
    any_result = next(iter(results.values()))
    metrics = {
        "data": {
            "block": inputs.block,
            "source": inputs.manifest.get("source"),
            "profile": inputs.manifest.get("profile"),
            "users": int(len(grid.users)),
            "items": int(len(grid.items)),
            "pairs": int(grid.observed.sum()),
            "positive_rate": round(float(grid.relevant.sum() / grid.observed.sum()), 6),
            "users_evaluated": int(len(any_result.evaluated_users)),
            "users_without_positives": int(any_result.users_without_positives),
            "users_unknown_to_als": int(unknown_users.sum()),
        },
        "candidates": {k: v for k, v in inputs.candidate_stats.items() if k.startswith("recall_at_") or k == "n"},
        **metrics_payload(results),
    }
    stats = item_stats(inputs.train, inputs.items, grid.items)
    segments = user_segments(grid.users, inputs.profiles, inputs.train)
    return BlockEvaluation(
        block=inputs.block,
        metrics=metrics,
        uncertainty=uncertainty_report(results, params.bootstrap_samples, params.seed),
        beyond_accuracy=beyond_accuracy_report(recommended, results, ks, stats),
        segments=segments_report(results, segments, nearest_cutoff(ks, 10)),
        per_user=per_user_frame(grid, results),
        top_k=top_k_frame(grid, scores["ranker"], params.top_k_output, recommended["ranker"]),
        results=results,
    )


def write_block_evaluation(evaluation: BlockEvaluation, files: BlockFiles) -> None:
    """Write the block's JSON payloads (each atomically) and its data folder (swapped in as a whole)."""
    write_json(evaluation.metrics, files.metrics_file)
    write_json(evaluation.uncertainty, files.uncertainty_file)
    write_json(evaluation.beyond_accuracy, files.beyond_accuracy_file)
    write_json(evaluation.segments, files.segments_file)
    with atomic_dir(files.data_dir) as tmp:
        write_parquet(evaluation.per_user, tmp / PER_USER_NAME)
        write_parquet(evaluation.top_k, tmp / TOP_K_NAME)
