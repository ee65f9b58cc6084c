"""Leakage-free splits: the ``fully_observed`` protocol (default) and ``temporal``.

:func:`write_split` cuts the logged feed into ``train``, ``history`` and ``ranker_labels`` and the fully
observed ``small_matrix`` into the ``validation`` and ``test`` blocks, with no evaluation pair in any
training set, labels and graded relevance from the fitted label rule on every set, and ``big_matrix`` read
one chunk of whole users at a time, so the files are the same for any chunk size and memory does not grow
with the logs. See docs/protocol.md and docs/design/data.md.

Examples
--------
>>> import polars as pl
>>> graded_relevance(pl.col("watch_ratio"), (1.0, 2.0)).meta.output_name()
'watch_ratio'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from reco.data.labels import (
    CHUNK_ROWS,
    LABEL_KINDS,
    LabelRule,
    bucket_label_counts,
    count_durations,
    fit_label_rules,
    iter_user_chunks,
    label_ratio_expr,
    labelled_ratio,
    merge_duration_counts,
    positive_rate_by_bucket,
    positive_rate_by_bucket_from_counts,
)
from reco.errors import InputDataError
from reco.io import StreamedParquetWriter
from reco.params import LabelParams, SplitParams
from reco.progress import report
from reco.schema import EVALUATION_BLOCKS, Columns

PAIR = [Columns.user, Columns.item]
SET_NAMES: Final[tuple[str, ...]] = ("train", "history", "ranker_labels", *EVALUATION_BLOCKS)
"""The sets of a split, by file name stem, in the order they are listed and written."""

STRATUM_SIZE = 10  # users of similar activity among which the validation users are drawn

PARTITION_ROWS: Final = CHUNK_ROWS
"""Rows of big_matrix per chunk of whole users (the stage's memory bound; outputs do not depend on it)."""
_TRAIN_ORDER: Final = [Columns.user, Columns.timestamp, Columns.item]


@dataclass(frozen=True)
class SplitResult:
    """The training sets, the two fully observed evaluation blocks and a JSON-ready summary."""

    train: pl.DataFrame
    history: pl.DataFrame
    ranker_labels: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    summary: dict[str, Any]

    def sets(self) -> dict[str, pl.DataFrame]:
        """Every set by its file name stem (``train``, ``history``, ``ranker_labels``, ``validation``, ``test``)."""
        return {name: getattr(self, name) for name in SET_NAMES}


def graded_relevance(watch_ratio: pl.Expr, edges: Sequence[float]) -> pl.Expr:
    """Number of ``edges`` that ``watch_ratio`` exceeds, as ``Int8`` (0 = not relevant)."""
    total = (watch_ratio > edges[0]).cast(pl.Int8)  # starts from the input so the name is kept
    for edge in edges[1:]:
        total = total + (watch_ratio > edge).cast(pl.Int8)
    return total


def with_labels(frame: pl.DataFrame, label: LabelParams) -> pl.DataFrame:
    """Attach ``label`` (bool) and ``relevance`` (Int8) from the label ratio (see reco.data.labels)."""
    ratio = labelled_ratio(frame)
    return frame.with_columns(
        (ratio > label.threshold).alias(Columns.label),
        graded_relevance(ratio, label.graded_edges).alias(Columns.relevance),
    )


def pair_key() -> pl.Expr:
    """One ``Int64`` per (user, video) pair that sorts like the pair (user first, then video).

    ``user * 2**32 + (video + 2**31)`` is injective over all ``Int32`` pairs and never overflows.
    Set operations (anti-joins, sorted unique pairs) on this one column are much cheaper than on
    the two columns. A user's keys fill the range ``[user * 2**32, (user + 1) * 2**32)``.

    Examples
    --------
    >>> frame = pl.DataFrame({"user_id": [0, 0, 1], "video_id": [-1, 2, 0]})
    >>> frame.select(pair_key())["_pair"].to_list() == sorted(frame.select(pair_key())["_pair"].to_list())
    True
    """
    user = pl.col(Columns.user).cast(pl.Int64)
    return (user * (1 << 32) + (pl.col(Columns.item).cast(pl.Int64) + (1 << 31))).alias("_pair")


def pair_keys(frame: pl.DataFrame) -> pl.Series:
    """``pair_key()`` of every row of ``frame``."""
    return frame.select(pair_key()).to_series()


def has_pair_in(frame: pl.DataFrame, keys: pl.Series) -> pl.Series:
    """Boolean mask: is the row's (user, video) pair among ``keys`` (a ``pair_keys`` series)."""
    return pair_keys(frame).is_in(keys.implode())


def keys_of_users(sorted_keys: pl.Series, first_user: int, last_user: int) -> pl.Series:
    """The part of the sorted ``pair_keys`` whose user lies in ``[first_user, last_user]`` (a zero-copy slice)."""
    start = sorted_keys.search_sorted(first_user * (1 << 32), side="left")
    stop = sorted_keys.search_sorted((last_user + 1) * (1 << 32), side="left")
    return sorted_keys.slice(start, stop - start)


def first_view_per_pair(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep the earliest view of every (user, video) pair (ties: lower watch ratio, then the input order).

    The result is sorted by (user, video).
    """
    ordered = frame.sort([*PAIR, Columns.timestamp, Columns.watch_ratio], nulls_last=True, maintain_order=True)
    # Sorted by pair, so a pair's first view is the row whose pair differs from the previous row's.
    return ordered.filter((pair_key() != pair_key().shift(1)).fill_null(True))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed uint64 per input, in exact integer arithmetic (same on every CPU)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def holdout_mask(keys: pl.Series | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the pairs (``pair_keys``) held out: ``hash(pair, seed) < fraction`` of the hash range.

    Examples
    --------
    >>> keys = np.arange(100_000, dtype=np.int64)
    >>> round(float(holdout_mask(keys, 0.2, 42).mean()), 2)
    0.2
    """
    salt = splitmix64(np.array([seed], dtype=np.uint64))[0]
    hashed = splitmix64(np.asarray(keys).astype(np.int64).view(np.uint64) ^ salt)
    return (hashed >> np.uint64(11)) < np.uint64(round(fraction * 2**53))


def _holdout_pairs(train: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split ``train`` into (history, held-out views, number of held-out pairs) by a seeded pair hash.

    Every view of a held-out pair leaves the history, so no feature sees the outcome it predicts.
    """
    held = pl.Series(holdout_mask(pair_keys(train).to_numpy(), fraction, seed))
    window = train.filter(held)
    return train.filter(~held), window, int(pair_keys(window).n_unique())


def split_evaluation_users(
    users: np.ndarray, activity: np.ndarray, validation_share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split evaluation users into (validation, test) sorted id arrays, stratified by ``activity``.

    Users are ordered by activity (ties by id) and cut into strata of ``STRATUM_SIZE``; each
    stratum gives its share of validation users (largest remainders, so the total is exactly
    ``round(validation_share * n)``), drawn by a seeded permutation within the stratum. Both
    blocks then have the same mix of light and heavy users.

    Examples
    --------
    >>> val, test = split_evaluation_users(np.arange(100), np.arange(100), 0.5, seed=1)
    >>> len(val), len(test), bool(abs(val.mean() - test.mean()) < 5)
    (50, 50, True)
    """
    users = np.asarray(users)
    order = np.lexsort((users, np.asarray(activity)))
    sorted_users = users[order]
    n = sorted_users.size
    bounds = list(range(0, n, STRATUM_SIZE)) + [n]
    sizes = np.diff(bounds).astype(np.float64)
    share = sizes * validation_share
    per_stratum = np.floor(share).astype(np.int64)
    left = int(round(validation_share * n)) - int(per_stratum.sum())
    if left > 0:
        per_stratum[np.argsort(-(share - per_stratum), kind="stable")[:left]] += 1
    rng = np.random.default_rng(seed)
    chosen = np.zeros(n, dtype=bool)
    for start, stop, k in zip(bounds[:-1], bounds[1:], per_stratum, strict=True):
        chosen[start + rng.permutation(stop - start)[:k]] = True
    return np.sort(sorted_users[chosen]), np.sort(sorted_users[~chosen])


# --------------------------------------------------------------------------------------------
# Sinks: where the sets go (memory or parquet files)
# --------------------------------------------------------------------------------------------

Sink = Callable[[str, pl.DataFrame], None]
"""Receives each set's rows, chunk by chunk and in order: ``sink(set name, rows)``."""


class _CollectingSink:
    """Keeps every chunk in memory (:func:`split_interactions`)."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[pl.DataFrame]] = {name: [] for name in SET_NAMES}

    def __call__(self, name: str, frame: pl.DataFrame) -> None:
        self.chunks[name].append(frame)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {name: pl.concat(chunks, rechunk=True) for name, chunks in self.chunks.items()}


# --------------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------------


_COUNTED_SETS: Final = ("train", "history", "window", "ranker_labels")  # "window": the held-out views


@dataclass
class _ChunkTotals:
    """Counts of the last pass, summed over the chunks."""

    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTED_SETS, 0))
    ranker_label_users: int = 0
    ranker_label_positives: int = 0
    held_out_pairs: int = 0
    train_users: int = 0
    overlap: int = 0
    leaked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("train", "history", "ranker_labels"), 0))
    bucket_counts: dict[str, list[pl.DataFrame]] = field(default_factory=lambda: {kind: [] for kind in LABEL_KINDS})


@dataclass
class _TrainingSummary:
    """What the first pass learns about the training views (all of it small)."""

    source_rows: int = 0
    train_rows: int = 0
    duration_counts: pl.DataFrame | None = None
    views_per_user: list[pl.DataFrame] = field(default_factory=list)
    items: pl.Series | None = None  # the distinct training videos
    last_date: dt.date | None = None


class _Splitter:
    """One split of a user-sorted training source (the passes: docs/design/data.md)."""

    def __init__(
        self,
        big: pl.LazyFrame,
        small: pl.DataFrame,
        split: SplitParams,
        label: LabelParams,
        source: str,
        partition_rows: int,
    ) -> None:
        self.big, self.small, self.split, self.label = big, small, split, label
        self.source, self.partition_rows = source, partition_rows
        self.test_keys = pair_keys(small).unique().sort()

    def chunks(
        self, columns: Sequence[str] | None = None, step: str = "split"
    ) -> Iterator[tuple[pl.DataFrame, pl.Series]]:
        """Each chunk of training views (big_matrix minus the test pairs) with the test keys of its users.

        ``step`` names the pass in the progress line reported for each chunk (:mod:`reco.progress`).
        """
        source = self.big if columns is None else self.big.select(columns)
        for number, chunk in enumerate(iter_user_chunks(source, self.partition_rows, name=self.source), 1):
            report(f"{step}: user chunk {number}")
            keys = keys_of_users(self.test_keys, chunk[Columns.user][0], chunk[Columns.user][-1])
            yield chunk.filter(~has_pair_in(chunk, keys)), keys

    def summarise_training(self) -> _TrainingSummary:
        """First pass: views per duration and per user, distinct videos, last date, row counts."""
        summary = _TrainingSummary()
        columns = [*PAIR, Columns.video_duration, Columns.date]
        for train, _ in self.chunks(columns, "training summary"):
            summary.train_rows += train.height
            so_far = [] if summary.duration_counts is None else [summary.duration_counts]
            summary.duration_counts = merge_duration_counts([*so_far, count_durations(train)])
            summary.views_per_user.append(train.group_by(Columns.user).len())
            videos = train[Columns.item].unique()
            summary.items = videos if summary.items is None else pl.concat([summary.items, videos]).unique()
            last = train[Columns.date].max()
            if last is not None and (summary.last_date is None or last > summary.last_date):  # type: ignore[operator]
                summary.last_date = last  # type: ignore[assignment]
        summary.source_rows = self.big.select(pl.len()).collect().item()
        return summary

    def fit_rules(self, training: _TrainingSummary) -> dict[str, LabelRule]:
        """Both kinds' label rules (the active one labels the sets, both are summarised)."""
        assert training.duration_counts is not None

        passes = 0

        def views() -> Iterator[pl.DataFrame]:
            nonlocal passes
            passes += 1
            step = f"label quantiles, pass {passes}"
            for train, _ in self.chunks([*PAIR, Columns.video_duration, Columns.watch_ratio], step):
                yield train

        return fit_label_rules(training.duration_counts, views, self.label)

    def run(self, sink: Sink) -> dict[str, Any]:
        """Split, hand every set to ``sink`` chunk by chunk, and return the summary."""
        split, label, source = self.split, self.label, self.source
        training = self.summarise_training()
        if training.train_rows == 0:
            raise InputDataError(source, "no training rows left after removing the test pairs")
        rules = self.fit_rules(training)
        rule = rules[label.kind]

        window_start: dt.date | None = None
        if split.ranker_labels == "holdout":
            label_set: dict[str, Any] = {"kind": "holdout", "fraction": split.holdout_fraction}
        else:
            assert training.last_date is not None
            window_start = training.last_date - dt.timedelta(days=split.label_window_days - 1)
            label_set = {
                "kind": "last_days",
                "start": window_start.isoformat(),
                "end": training.last_date.isoformat(),
                "days": split.label_window_days,
            }

        totals = _ChunkTotals()
        for train, test_keys in self.chunks(step="writing the sets"):
            train = train.sort(_TRAIN_ORDER, maintain_order=True)  # stable: ties keep the prepared order
            self._split_chunk(train, test_keys, rules, window_start, totals, sink)

        if totals.rows["history"] == 0 or totals.rows["window"] == 0:
            empty = "history" if totals.rows["history"] == 0 else None
            if split.ranker_labels == "holdout":
                raise InputDataError(
                    source,
                    f"split.holdout_fraction = {split.holdout_fraction} leaves an empty "
                    f"{empty or 'holdout'} ({totals.rows['train']} training rows)",
                )
            raise InputDataError(
                source,
                f"split.label_window_days = {split.label_window_days} leaves an empty "
                f"{empty or 'label window'} (training dates end {training.last_date})",
            )
        if split.ranker_labels == "holdout":
            label_set["pairs"] = totals.held_out_pairs
        # The ranker's labels and its features' history never share a pair.
        if totals.overlap:
            raise InputDataError(source, f"leakage: {totals.overlap} ranker-label pairs also appear in the history")

        report("evaluation blocks")
        small = self.small.with_columns(label_ratio_expr(rule))
        evaluation = with_labels(first_view_per_pair(small), label)  # sorted by pair
        views_per_user = pl.concat(training.views_per_user).group_by(Columns.user).agg(pl.col("len").sum())
        activity = (
            evaluation.select(pl.col(Columns.user).unique())
            .join(views_per_user, on=Columns.user, how="left")
            .sort(Columns.user)
        )
        validation_users, test_users = split_evaluation_users(
            activity[Columns.user].to_numpy(),
            activity["len"].fill_null(0).to_numpy(),
            split.validation_users,
            split.seed,
        )
        blocks = {
            "validation": evaluation.filter(pl.col(Columns.user).is_in(pl.Series(validation_users).implode())),
            "test": evaluation.filter(pl.col(Columns.user).is_in(pl.Series(test_users).implode())),
        }
        if any(totals.leaked.values()):
            raise InputDataError(
                source, f"leakage: evaluation (user, video) pairs found in training sets: {totals.leaked}"
            )
        for name, frame in blocks.items():
            sink(name, frame)

        return {
            "protocol": split.protocol,
            "label_threshold": label.threshold,
            "ranker_labels": label_set,
            "evaluation_blocks": {
                "validation_users_share": split.validation_users,
                "stratified_by": "training views per user",
                "seed": split.seed,
            },
            "rows": {
                "training_source": training.source_rows,
                "removed_evaluation_pairs_from_training_source": training.source_rows - training.train_rows,
                "train": totals.rows["train"],
                "history": totals.rows["history"],
                "ranker_label_views": totals.rows["window"],
                "ranker_labels": totals.rows["ranker_labels"],
                **{name: frame.height for name, frame in blocks.items()},
            },
            "users": {
                "train": totals.train_users,
                "ranker_labels": totals.ranker_label_users,
                **{name: frame[Columns.user].n_unique() for name, frame in blocks.items()},
                "evaluation_without_training_history": int((activity["len"].fill_null(0) == 0).sum()),
            },
            "items": {
                "train": 0 if training.items is None else training.items.len(),
                **{name: frame[Columns.item].n_unique() for name, frame in blocks.items()},
            },
            "positive_rate": {
                # the mean of a boolean column: an exact count over an exact count, as polars computes it
                "ranker_labels": totals.ranker_label_positives / totals.rows["ranker_labels"]
                if totals.rows["ranker_labels"]
                else 0.0,
                **{name: _positive_rate(frame) for name, frame in blocks.items()},
            },
            "leakage_check": {"evaluation_pairs_in_training_sets": totals.leaked, "passed": True},
            "label_rule": rule.as_dict(),
            "positive_rate_by_duration_bucket": {
                kind: {
                    "train": positive_rate_by_bucket_from_counts(totals.bucket_counts[kind], rule.edges_ms),
                    "evaluation": positive_rate_by_bucket(small, kind_rule, rule.edges_ms),
                }
                for kind, kind_rule in rules.items()
            },
        }

    def _split_chunk(
        self,
        train: pl.DataFrame,
        test_keys: pl.Series,
        rules: dict[str, LabelRule],
        window_start: dt.date | None,
        totals: _ChunkTotals,
        sink: Sink,
    ) -> None:
        """Label one chunk of training views, cut it into the training sets and count it."""
        split, label, rule = self.split, self.label, rules[self.label.kind]
        train = train.with_columns(label_ratio_expr(rule))
        if window_start is None:
            history, window, held_out = _holdout_pairs(train, split.holdout_fraction, split.seed)
            totals.held_out_pairs += held_out
            ranker_labels = with_labels(first_view_per_pair(window), label)  # sorted by pair
        else:
            history = train.filter(pl.col(Columns.date) < window_start)
            window = train.filter(pl.col(Columns.date) >= window_start)
            # A pair already seen in history is a re-watch; the ranker predicts new pairs, like the test.
            first_views = first_view_per_pair(window)
            rewatch = has_pair_in(first_views, pair_keys(history).unique())
            ranker_labels = with_labels(first_views.filter(~rewatch), label)
        totals.overlap += int(has_pair_in(ranker_labels, pair_keys(history)).sum())
        for name, frame in (("train", train), ("history", history), ("ranker_labels", ranker_labels)):
            totals.leaked[name] += int(has_pair_in(frame, test_keys).sum())
        totals.rows["train"] += train.height
        totals.rows["history"] += history.height
        totals.rows["window"] += window.height
        totals.rows["ranker_labels"] += ranker_labels.height
        totals.train_users += train[Columns.user].n_unique()  # a user's rows are all in one chunk
        totals.ranker_label_users += ranker_labels[Columns.user].n_unique()
        totals.ranker_label_positives += int(ranker_labels[Columns.label].sum())
        for kind, kind_rule in rules.items():
            totals.bucket_counts[kind].append(bucket_label_counts(train, kind_rule, rule.edges_ms))
        sink("train", train)
        sink("history", history)
        sink("ranker_labels", ranker_labels)


def _positive_rate(frame: pl.DataFrame) -> float:
    return float(frame[Columns.label].mean()) if frame.height else 0.0


def _temporal_cut(
    small: pl.DataFrame, split: SplitParams, source: str
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """``temporal``: small_matrix's earliest timestamped views train, the last ``temporal_test_fraction`` test."""
    # The notebooks' setup: small_matrix alone, cut chronologically (rows without a time can't be placed).
    timed = small.filter(pl.col(Columns.timestamp).is_not_null())
    if timed.height < 2:
        raise InputDataError(
            source, f"split.protocol = 'temporal' needs timestamped small_matrix rows; found {timed.height}"
        )
    cut = timed[Columns.timestamp].sort()[int(round((1 - split.temporal_test_fraction) * (timed.height - 1)))]
    info = {
        "temporal_cut": cut.isoformat(),
        "test_fraction": split.temporal_test_fraction,
        "small_matrix_rows_without_timestamp": small.height - timed.height,
    }
    train, test = timed.filter(pl.col(Columns.timestamp) <= cut), timed.filter(pl.col(Columns.timestamp) > cut)
    if test.height == 0:
        raise InputDataError(
            source, f"split.temporal_test_fraction = {split.temporal_test_fraction} leaves no test rows"
        )
    return train, test, info


def split_to_sink(
    big: pl.LazyFrame | pl.DataFrame,
    small: pl.DataFrame,
    split: SplitParams,
    label: LabelParams,
    sink: Sink,
    *,
    source: str = "big_matrix",
    partition_rows: int | None = None,
) -> dict[str, Any]:
    """Split for ``split.protocol`` (see docs/design/data.md), handing each set's rows to ``sink``.

    Parameters
    ----------
    big
        Prepared ``big_matrix`` (``reco.schema.INTERACTION_SCHEMA``): a lazy scan of the prepared
        file, sorted by user (read a chunk of whole users at a time), or a frame in memory (sorted
        by user here). Unused under ``temporal``.
    small
        Prepared ``small_matrix``, in memory. Under ``temporal`` its earliest
        ``1 - split.temporal_test_fraction`` of timestamped rows train, the rest is the test.
    split, label
        The ``split`` and ``label`` params sections.
    sink
        Called as ``sink(name, rows)`` for each set of :data:`SET_NAMES`, several times for the
        training sets (their chunks, in order) and at least once for each set.
    source
        Name used in error messages.
    partition_rows
        Rows per chunk of ``big`` (the memory bound; default :data:`PARTITION_ROWS`); the sets
        and the summary do not depend on it.

    Returns
    -------
    dict
        The JSON-ready summary.

    Raises
    ------
    InputDataError
        If a set is empty, ``big`` is not sorted by user, or a test pair leaks into any training set.
    """
    partition_rows = PARTITION_ROWS if partition_rows is None else partition_rows  # read now: tests lower it
    if partition_rows < 1:
        raise ValueError(f"partition_rows must be positive, got {partition_rows}")
    protocol_info: dict[str, Any] = {}
    if split.protocol == "temporal":
        big, small, protocol_info = _temporal_cut(small, split, source)
    if isinstance(big, pl.DataFrame):
        big = big.sort(Columns.user, maintain_order=True).lazy()
    summary = _Splitter(big, small, split, label, source, partition_rows).run(sink)
    return {"protocol": summary.pop("protocol"), **protocol_info, **summary}


def split_interactions(
    big: pl.DataFrame | pl.LazyFrame,
    small: pl.DataFrame,
    split: SplitParams,
    label: LabelParams,
    *,
    source: str = "big_matrix",
    partition_rows: int | None = None,
) -> SplitResult:
    """Split prepared interactions in memory (see :func:`split_to_sink` for the parameters).

    Raises
    ------
    InputDataError
        If a set is empty or a test pair leaks into any training set.
    """
    sink = _CollectingSink()
    summary = split_to_sink(big, small, split, label, sink, source=source, partition_rows=partition_rows)
    return SplitResult(**sink.frames(), summary=summary)


def write_split(
    big: pl.LazyFrame | pl.DataFrame,
    small: pl.DataFrame,
    split: SplitParams,
    label: LabelParams,
    out_dir: Path,
    *,
    source: str = "big_matrix",
    partition_rows: int | None = None,
) -> dict[str, Any]:
    """Split (:func:`split_to_sink`) straight into ``out_dir/<set>.parquet``; return the summary.

    Each set is written chunk by chunk (:class:`reco.io.StreamedParquetWriter`: the same bytes
    as :func:`reco.io.write_parquet` of the whole set), so memory does not grow with the number
    of views. ``out_dir`` should be a temporary folder (``reco.io.atomic_dir``): on an error the
    files in it are incomplete.
    """
    out_dir = Path(out_dir)
    writers = {name: StreamedParquetWriter(out_dir / f"{name}.parquet", out_dir) for name in SET_NAMES}
    try:
        summary = split_to_sink(
            big, small, split, label, lambda name, rows: writers[name].write(rows), source=source,
            partition_rows=partition_rows,
        )  # fmt: skip
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return summary
