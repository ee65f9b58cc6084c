"""``evaluate@<block>``: score every model on one evaluation block's grid and write the block's results.

:func:`evaluate_block` checks the cut-offs, scores the baselines, ALS, the two-stage ranker and (with the
simulator) the oracles on the observed cells of each of the block's users, one user partition at a time in
this process or as Dask tasks, and computes metrics, intervals, segments and beyond-accuracy reports; every
per-user value depends on that user alone and every cross-user quantity is exact, so the outputs are the
same bytes for any partitioning and either engine. See docs/design/evaluation.md and docs/scaling.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from reco.compute import map_user_partitions, tree_reduce
from reco.data.labels import LabelRule
from reco.errors import InputDataError, ParamsError
from reco.evaluation.beyond_accuracy import ItemStats, beyond_accuracy_report, item_stats
from reco.evaluation.evaluate import (
    BlockGrid,
    TwoStageBounds,
    build_block_grid,
    combine_view_counts,
    evaluate_models,
    grid_rows,
    metrics_payload,
    per_user_frame,
    top_k_frame,
    top_k_lists,
    two_stage_scores,
)
from reco.evaluation.inputs import label_rule_from_summary, read_json
from reco.evaluation.layout import PER_USER_NAME, TOP_K_NAME, BlockFiles
from reco.evaluation.metrics import METRIC_NAMES, RankingResult, metric_key, ranking_summary
from reco.evaluation.oracle import TRUTH_COLUMNS, oracle_scores
from reco.evaluation.segments import nearest_cutoff, segments_report, user_segments
from reco.evaluation.uncertainty import uncertainty_report
from reco.exact_sums import exact_units, from_units
from reco.io import atomic_dir, write_json, write_parquet
from reco.models.als import AlsModel, item_scores, load_als
from reco.models.baselines import (
    DurationPopularity,
    ViewCounts,
    duration_popularity_scores,
    duration_scores,
    item_durations,
    popularity_scores,
    random_scores,
    view_counts,
)
from reco.models.ranker import load_ranker
from reco.params import ComputeParams, EvaluateParams
from reco.partitions import FrameRows, UserRowIndex, partition_count
from reco.progress import report
from reco.schema import Columns, PreparedFiles, RawFiles

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "BlockEvaluation",
    "BlockInputs",
    "check_cutoffs",
    "evaluate_block",
    "evaluate_partition",
    "load_block_inputs",
    "model_scores",
    "training_aggregates",
    "write_block_evaluation",
]

_TRAIN_COLUMNS = (Columns.user, Columns.item, Columns.video_duration, Columns.watch_ratio, Columns.label_ratio)
_TRUTH_SOURCE = f"data/raw/{RawFiles.ground_truth}"

Rows = pl.DataFrame | UserRowIndex


class Scorer(Protocol):
    """What evaluation needs of the ranker: a score per row of a feature table."""

    def predict(self, table: pl.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class BlockInputs:
    """Everything ``evaluate@<block>`` reads, loaded (small tables) or indexed (files read by user partition).

    Attributes
    ----------
    block
        ``validation`` or ``test``.
    rows
        The block's cells (user, video, ``label``; one row per observed cell).
    train
        Training views (user, video, ``video_duration``, ``watch_ratio``, ``label_ratio``): a frame,
        or a :class:`reco.partitions.UserRowIndex` of the file (read one user partition at a time).
    items, profiles
        Prepared items (video, ``tags``, ``video_duration``) and users (user, ``user_active_degree``).
    rule
        The fitted label rule (``split_summary.json`` -> ``label_rule``).
    split_summary, candidate_stats, manifest
        ``metrics/split_summary.json``, ``metrics/candidates/<block>.json``, ``data/raw/manifest.json``.
    als
        The ALS model that serves the block (fitted on all training data).
    candidates
        The block's candidate feature table (``data/features/<block>/table.parquet``), a frame or an index.
    ranker
        The trained ranker (anything with ``predict(table) -> scores``).
    truth
        The simulator's ground truth (a frame or an index); ``None`` for real data.
    """

    block: str
    rows: pl.DataFrame
    train: Rows
    items: pl.DataFrame
    profiles: pl.DataFrame
    rule: LabelRule
    split_summary: Mapping[str, Any]
    candidate_stats: Mapping[str, Any]
    manifest: Mapping[str, Any]
    als: AlsModel
    candidates: Rows
    ranker: Scorer
    truth: Rows | None = None


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


def check_cutoffs(ks: Sequence[int], n_items: int, candidates_n: int | None, block: str) -> str | None:
    """Refuse cut-offs the candidates cannot support; note the ones longer than the catalogue.

    A K above the block's catalogue is allowed (a small profile with the default ``evaluate.ks``):
    its list holds the whole catalogue and is padded with non-relevant slots, so precision@K still
    divides by K and recall@K is the whole catalogue's.

    Returns
    -------
    str or None
        A note for the block's metrics when some K exceeds the catalogue, else ``None``.

    Raises
    ------
    ParamsError
        ``candidates_n`` (when given) is below ``min(max(ks), n_items)``: the two-stage list would be
        ALS's order past the candidates.
    """
    if candidates_n is not None and candidates_n < min(max(ks), n_items):
        raise ParamsError(
            f"params.yaml: candidates.n = {candidates_n} is smaller than max(evaluate.ks) = {max(ks)}; "
            "expected candidates.n >= every K"
        )
    above = [k for k in ks if k > n_items]
    if not above:
        return None
    return (
        f"evaluate.ks {above} exceed the {block} catalogue ({n_items} videos): those lists hold the whole "
        "catalogue, padded with non-relevant slots"
    )


def load_block_inputs(files: BlockFiles, ks: Sequence[int]) -> BlockInputs:
    """Read the block's small inputs and index the large ones; the cut-off checks run before the models are loaded.

    The training views, the candidate feature table and the ground truth are indexed by user
    (:class:`reco.partitions.UserRowIndex`, one streaming pass over their user column), not read.

    Raises
    ------
    ParamsError
        From :func:`check_cutoffs`.
    InputDataError
        A malformed input (JSON, label rule, models).
    FileNotFoundError
        An input is missing (an upstream stage has not run).
    """
    report("reading the block, indexing the training views and candidates")
    rows = pl.read_parquet(files.block_file, columns=[Columns.user, Columns.item, Columns.label])
    n_items = rows[Columns.item].n_unique()
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
        truth = UserRowIndex(files.raw_dir / RawFiles.ground_truth)
    return BlockInputs(
        block=files.block,
        rows=rows,
        train=UserRowIndex(files.train_file),
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
        candidates=UserRowIndex(files.features_dir / "table.parquet"),
        ranker=load_ranker(files.ranker_dir),
        truth=truth,
    )


def _indexed(rows: Rows) -> UserRowIndex:
    return rows if isinstance(rows, UserRowIndex) else FrameRows(rows)


def _present(rows: UserRowIndex, wanted: Sequence[str]) -> list[str]:
    return [column for column in wanted if column in rows.schema]


# ------------------------------------------------------------------------------------------------
# Training aggregates: one pass over the training views, by user partition, partials added up
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingAggregates:
    """What evaluation needs of the training views: the popularity baselines' counts and the item statistics."""

    counts: ViewCounts
    stats: ItemStats

    def combine(self, other: TrainingAggregates) -> TrainingAggregates:
        """The aggregates of both sets of (disjoint) users: every count added (whole numbers: exact)."""
        stats = ItemStats(
            interactions=self.stats.interactions + other.stats.interactions,
            users=self.stats.users + other.stats.users,  # users are disjoint between partitions
            n_train_users=self.stats.n_train_users + other.stats.n_train_users,
            tags=self.stats.tags,
        )
        return TrainingAggregates(combine_view_counts(self.counts, other.counts), stats)


def training_aggregates(
    users: np.ndarray,
    *,
    train: UserRowIndex,
    items: pl.DataFrame,
    catalogue: np.ndarray,
    threshold: float,
    edges_ms: tuple[float, ...],
) -> TrainingAggregates:
    """:class:`TrainingAggregates` of one user partition's training views (a Dask task, or in-process)."""
    views = train.scan(users, _present(train, _TRAIN_COLUMNS)).collect()
    return TrainingAggregates(view_counts(views, threshold, edges_ms), item_stats(views, items, catalogue))


# ------------------------------------------------------------------------------------------------
# Block partitions: every model's scores, top-K lists and per-user metrics of some block users
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockContext:
    """What every block partition reads (broadcast to the workers once)."""

    grid: BlockGrid
    popularity: np.ndarray  # (n_items,) float32
    durations: np.ndarray  # (n_items,) float64 ms
    by_duration: DurationPopularity
    als: AlsModel
    ranker: Scorer
    candidates: UserRowIndex
    truth: UserRowIndex | None
    train: UserRowIndex
    profiles: pl.DataFrame
    rule: LabelRule
    ks: tuple[int, ...]
    seed: int
    top_k_output: int

    def rows_of(self, users: np.ndarray) -> BlockGrid:
        """The sub-grid of a partition's users (a contiguous range of the grid's sorted users)."""
        start, stop = np.searchsorted(self.grid.users, [users[0], users[-1]])
        return grid_rows(self.grid, int(start), int(stop) + 1)


@dataclass(frozen=True)
class OracleMeans:
    """The oracles' per-video means over every observed cell of the block (``None`` without truth)."""

    probability: np.ndarray
    watch_ratio: np.ndarray


def _first_stage(context: BlockContext, grid: BlockGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(popularity, als, unknown users) of a (sub-)grid: ALS, with popularity for users unknown to ALS."""
    shape = grid.relevant.shape
    popularity = np.broadcast_to(context.popularity, shape)
    als = item_scores(context.als, grid.users, grid.items)
    unknown_users = np.isnan(als).all(axis=1)
    return popularity, np.where(unknown_users[:, None], popularity, als), unknown_users


def _reranked(context: BlockContext, grid: BlockGrid) -> pl.DataFrame:
    """The ranker's score of every candidate of the grid's users."""
    table = context.candidates.scan(grid.users).collect()
    scores = context.ranker.predict(table) if table.height else np.zeros(0, dtype=np.float64)
    return table.select(Columns.user, Columns.item).with_columns(pl.Series(Columns.score, scores, dtype=pl.Float64))


def _oracle_partial(truth_scores: Mapping[str, np.ndarray], grid: BlockGrid) -> pl.DataFrame:
    """Per video column of the grid: observed cells, NaN cells and exact sums of the two oracle scores."""
    rows, cols = np.nonzero(grid.observed)
    cells = pl.DataFrame(
        {
            "col": cols.astype(np.int64),
            "p": truth_scores["oracle"][rows, cols],
            "w": truth_scores["oracle_watch_ratio"][rows, cols],
        }
    )
    return (
        cells.group_by("col")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            *(pl.col(c).is_nan().sum().cast(pl.Int64).alias(f"{c}_nan") for c in ("p", "w")),
            *(exact_units(pl.col(c).fill_nan(None)).sum().alias(f"{c}_units") for c in ("p", "w")),
        )
        .sort("col")
    )


def _combine_oracle_partials(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([left, right]).group_by("col").agg(pl.all().sum()).sort("col")


def _oracle_means(partial: pl.DataFrame, n_items: int) -> OracleMeans:
    """Means of the oracle scores per video (NaN without an observed cell, or with a NaN score)."""
    means = {}
    for column in ("p", "w"):
        value = (from_units(pl.col(f"{column}_units")) / pl.col("n")).alias("mean")
        frame = partial.select("col", pl.when(pl.col(f"{column}_nan") == 0).then(value).otherwise(float("nan")))
        out = np.full(n_items, np.nan)
        out[frame["col"].to_numpy()] = frame["mean"].to_numpy()
        means[column] = out
    return OracleMeans(probability=means["p"], watch_ratio=means["w"])


def _oracle_cells(context: BlockContext, grid: BlockGrid) -> dict[str, np.ndarray] | None:
    if context.truth is None:
        return None
    truth = context.truth.scan(grid.users, _present(context.truth, TRUTH_COLUMNS)).collect()
    return oracle_scores(truth, grid, context.rule, source=_TRUTH_SOURCE)


def bounds_partition(
    users: np.ndarray, *, context: BlockContext
) -> tuple[TwoStageBounds, pl.DataFrame | None, pl.DataFrame]:
    """The cross-user quantities of one block partition, and its candidates' ranker scores.

    Returns the two-stage score ranges, the oracles' per-video partials and the re-ranked candidates
    (user, video, score), which :func:`evaluate_partition` takes back so each candidate is predicted once.
    """
    grid = context.rows_of(users)
    _, first, _ = _first_stage(context, grid)
    first = np.where(np.isnan(first), -np.inf, first)
    reranked = _reranked(context, grid)
    bounds = TwoStageBounds.of(first, reranked[Columns.score].to_numpy())
    oracle = _oracle_cells(context, grid)
    return bounds, None if oracle is None else _oracle_partial(oracle, grid), reranked


def score_partition(
    users: np.ndarray,
    context: BlockContext,
    bounds: TwoStageBounds | None,
    oracle_means: OracleMeans | None,
    reranked: pl.DataFrame | None = None,
) -> tuple[BlockGrid, dict[str, np.ndarray], np.ndarray]:
    """Every model's ``(n_users, n_items)`` scores of a partition's users and its users unknown to ALS.

    ``bounds`` and ``oracle_means`` are the whole block's (``None``: those of these users alone,
    right only when they are the whole block). Item-level scores are read-only broadcast views.
    ``reranked``: these users' candidates with their ranker scores, from :func:`bounds_partition`
    (``None``: predicted here).
    """
    grid = context.rows_of(users)
    shape = grid.relevant.shape
    popularity, als, unknown_users = _first_stage(context, grid)
    start = int(np.searchsorted(context.grid.users, grid.users[0]))
    scores: dict[str, np.ndarray] = {
        "random": random_scores(len(context.grid.users), len(context.grid.items), context.seed)[start : start + len(grid.users)],
        "popularity": popularity,
        "als": als,
        "ranker": two_stage_scores(grid, _reranked(context, grid) if reranked is None else reranked, als, bounds),
        "duration": np.broadcast_to(duration_scores(context.durations), shape),
        "duration_popularity": np.broadcast_to(context.by_duration.bucket_rate, shape),
        "popularity_within_duration": np.broadcast_to(context.by_duration.within_bucket, shape),
    }
    oracle = _oracle_cells(context, grid)
    if oracle is not None:
        if oracle_means is not None:  # the per-video means over every user of the block
            oracle["oracle_item"] = np.broadcast_to(oracle_means.probability, shape)
            oracle["oracle_item_watch_ratio"] = np.broadcast_to(oracle_means.watch_ratio, shape)
        scores.update(oracle)
    return grid, scores, unknown_users


@dataclass(frozen=True)
class PartitionEvaluation:
    """One block partition's share of the results: per model its users' top-K lists and per-user metrics."""

    recommended: dict[str, np.ndarray]
    results: dict[str, RankingResult]
    segments: pl.DataFrame
    top_k: pl.DataFrame
    users_unknown_to_als: int


def _partition_metrics(grid: BlockGrid, scores: dict[str, np.ndarray], ks: Sequence[int], recommended: dict[str, np.ndarray]) -> dict[str, RankingResult]:
    """:func:`evaluate_models` of a partition; a partition without any positive gets empty per-user arrays."""
    if grid.relevant.any():
        return evaluate_models(grid, scores, list(ks), recommended=recommended)
    keys = [metric_key(name, k) for k in sorted(set(ks)) for name in METRIC_NAMES]
    empty = RankingResult(
        per_user={key: np.zeros(0) for key in keys},
        summary={},
        evaluated_users=np.zeros(0, dtype=np.int64),
        users_without_positives=len(grid.users),
    )
    return dict.fromkeys(scores, empty)


def evaluate_partition(
    users: np.ndarray,
    *,
    context: BlockContext,
    bounds: TwoStageBounds,
    oracle_means: OracleMeans | None,
    reranked: pl.DataFrame,
) -> PartitionEvaluation:
    """Score one block partition, pick its users' top-K lists, compute their metrics (a Dask task, or in-process).

    ``reranked`` are the partition's candidates as :func:`bounds_partition` scored them.
    """
    grid, scores, unknown_users = score_partition(users, context, bounds, oracle_means, reranked)
    ks = list(context.ks)
    recommended = top_k_lists(grid, scores, max(ks))
    history = context.train.scan(grid.users, [Columns.user]).collect()
    return PartitionEvaluation(
        recommended=recommended,
        results=_partition_metrics(grid, scores, ks, recommended),
        segments=user_segments(grid.users, context.profiles, history),
        top_k=top_k_frame(grid, scores["ranker"], context.top_k_output, recommended["ranker"]),
        users_unknown_to_als=int(unknown_users.sum()),
    )


def _merge_results(
    parts: Sequence[RankingResult], lists: np.ndarray, sizes: Sequence[int], ks: Sequence[int], n_items: int
) -> RankingResult:
    """One block's :class:`RankingResult` from its partitions' (users in order): as on the whole grid.

    Per-user arrays and evaluated users are concatenated and summarised by
    :func:`reco.evaluation.metrics.ranking_summary`, the function :func:`ranking_metrics` uses on
    the whole grid.
    """
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    evaluated = np.concatenate([r.evaluated_users + offset for r, offset in zip(parts, offsets, strict=True)])
    if evaluated.size == 0:
        raise ValueError(f"none of the {int(sum(sizes))} users has a relevant item; metrics are undefined")
    per_user: dict[str, np.ndarray] = {}
    for key in parts[0].per_user:
        values = np.concatenate([r.per_user[key] for r in parts])
        values.setflags(write=False)
        per_user[key] = values
    summary = ranking_summary(per_user, lists, sorted(set(ks)), n_items)
    evaluated = evaluated.astype(np.int64)
    evaluated.setflags(write=False)
    return RankingResult(
        per_user=per_user,
        summary=summary,
        evaluated_users=evaluated,
        users_without_positives=int(sum(r.users_without_positives for r in parts)),
    )


def _block_context(
    inputs: BlockInputs, grid: BlockGrid, params: EvaluateParams, aggregates: TrainingAggregates
) -> BlockContext:
    rule, smoothing = inputs.rule, params.popularity_smoothing
    durations = item_durations(inputs.items, grid.items)
    return BlockContext(
        grid=grid,
        popularity=popularity_scores(aggregates.counts, grid.items, smoothing),
        durations=durations,
        by_duration=duration_popularity_scores(
            pl.DataFrame(), durations, grid.items, rule.edges_ms, rule.threshold, smoothing, counts=aggregates.counts
        ),
        als=inputs.als,
        ranker=inputs.ranker,
        candidates=_indexed(inputs.candidates),
        truth=None if inputs.truth is None else _indexed(inputs.truth),
        train=_indexed(inputs.train),
        profiles=inputs.profiles,
        rule=rule,
        ks=tuple(params.ks),
        seed=params.seed,
        top_k_output=params.top_k_output,
    )


def _training_aggregates(
    inputs: BlockInputs, grid: BlockGrid, client: Client | None, compute: ComputeParams
) -> TrainingAggregates:
    train = _indexed(inputs.train)
    partials = map_user_partitions(
        client,
        training_aggregates,
        train.users,
        partition_count(train.n_rows, compute),
        broadcast={"train": train, "items": inputs.items},
        catalogue=grid.items,
        threshold=inputs.rule.threshold,
        edges_ms=tuple(inputs.rule.edges_ms),
        progress="training aggregates: user partition",
    )
    if not partials:  # no training view at all: the counts of an empty frame
        empty = pl.DataFrame(schema={c: inputs.items.schema.get(c, pl.Float32) for c in (Columns.user, Columns.item, Columns.video_duration, Columns.watch_ratio)})
        return TrainingAggregates(
            view_counts(empty, inputs.rule.threshold, tuple(inputs.rule.edges_ms)), item_stats(empty, inputs.items, grid.items)
        )
    return tree_reduce(partials, TrainingAggregates.combine)


def model_scores(
    inputs: BlockInputs, grid: BlockGrid, params: EvaluateParams
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every model's ``(n_users, n_items)`` scores on ``grid`` and the mask of users unknown to ALS (in this process).

    Item-level scores are read-only broadcast views.
    """
    context = _block_context(inputs, grid, params, _training_aggregates(inputs, grid, None, ComputeParams()))
    _, scores, unknown_users = score_partition(grid.users, context, None, None)
    return scores, unknown_users


def evaluate_block(
    inputs: BlockInputs,
    params: EvaluateParams,
    *,
    client: Client | None = None,
    compute: ComputeParams | None = None,
) -> BlockEvaluation:
    """Score every model on the block's grid and build every payload of the block (nothing is written).

    Parameters
    ----------
    inputs
        From :func:`load_block_inputs` (or built in memory).
    params
        The ``evaluate`` section.
    client
        Run the user partitions as Dask tasks (``None``: in this process).
    compute
        The ``compute`` section: how many user partitions (:func:`reco.partitions.partition_count`);
        ``None``: its defaults. The result does not depend on it.
    """
    compute = compute or ComputeParams()
    grid = build_block_grid(inputs.rows)
    ks = list(params.ks)
    cutoff_note = check_cutoffs(ks, len(grid.items), inputs.candidate_stats.get("n"), inputs.block)
    aggregates = _training_aggregates(inputs, grid, client, compute)
    context = _block_context(inputs, grid, params, aggregates)
    n_partitions = partition_count(context.train.rows_of(grid.users), compute)
    firsts = map_user_partitions(
        client,
        bounds_partition,
        grid.users,
        n_partitions,
        broadcast={"context": context},
        progress="two-stage bounds: user partition",
    )
    bounds = tree_reduce([b for b, _, _ in firsts], TwoStageBounds.combine)
    oracle_partials = [partial for _, partial, _ in firsts if partial is not None]
    # each candidate is predicted once, in the first pass; the second gets its partition's rows back
    reranked = pl.concat([frame for _, _, frame in firsts], how="vertical", rechunk=True)
    oracle_means = (
        _oracle_means(tree_reduce(oracle_partials, _combine_oracle_partials), len(grid.items)) if oracle_partials else None
    )
    parts: list[PartitionEvaluation] = map_user_partitions(
        client,
        evaluate_partition,
        grid.users,
        n_partitions,
        per_user={"reranked": reranked},
        broadcast={"context": context, "bounds": bounds, "oracle_means": oracle_means},
        progress="scores and metrics: user partition",
    )
    sizes = [len(part.segments) for part in parts]
    recommended = {name: np.concatenate([part.recommended[name] for part in parts]) for name in parts[0].recommended}
    results = {
        name: _merge_results([part.results[name] for part in parts], recommended[name], sizes, ks, len(grid.items))
        for name in parts[0].results
    }
    any_result = next(iter(results.values()))
    metrics = {
        "data": {
            "block": inputs.block,
            "source": inputs.manifest.get("source"),
            "profile": inputs.manifest.get("profile"),
            "users": len(grid.users),
            "items": len(grid.items),
            "pairs": int(grid.observed.sum()),
            "positive_rate": round(float(grid.relevant.sum() / grid.observed.sum()), 6),
            "users_evaluated": len(any_result.evaluated_users),
            "users_without_positives": int(any_result.users_without_positives),
            "users_unknown_to_als": int(sum(part.users_unknown_to_als for part in parts)),
        },
        "candidates": {k: v for k, v in inputs.candidate_stats.items() if k.startswith("recall_at_") or k == "n"},
        **metrics_payload(results),
    }
    if cutoff_note is not None:  # only then: the metrics of a block that needs no note keep their bytes
        metrics["data"]["notes"] = [cutoff_note]
    segments = pl.concat([part.segments for part in parts], how="vertical", rechunk=True)
    report("bootstrap intervals, beyond-accuracy, segments")
    return BlockEvaluation(
        block=inputs.block,
        metrics=metrics,
        uncertainty=uncertainty_report(results, params.bootstrap_samples, params.seed),
        beyond_accuracy=beyond_accuracy_report(recommended, results, ks, aggregates.stats),
        segments=segments_report(results, segments, nearest_cutoff(ks, 10)),
        per_user=per_user_frame(grid, results),
        top_k=pl.concat([part.top_k for part in parts], how="vertical", rechunk=True),
        results=results,
    )


def write_block_evaluation(evaluation: BlockEvaluation, files: BlockFiles) -> None:
    """Write the block's JSON payloads (each atomically) and its data folder (swapped in as a whole)."""
    report("writing the results")
    write_json(evaluation.metrics, files.metrics_file)
    write_json(evaluation.uncertainty, files.uncertainty_file)
    write_json(evaluation.beyond_accuracy, files.beyond_accuracy_file)
    write_json(evaluation.segments, files.segments_file)
    with atomic_dir(files.data_dir) as tmp:
        write_parquet(evaluation.per_user, tmp / PER_USER_NAME)
        write_parquet(evaluation.top_k, tmp / TOP_K_NAME)
