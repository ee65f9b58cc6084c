"""What counts as a positive view: the plain threshold or the duration-debiased label.

A :class:`LabelRule` turns every view into a **label ratio** (``watch_ratio`` scaled so that the rule's
cut-off, per duration bucket for ``label.kind: duration_debiased``, lands on ``label.threshold``), which every
consumer compares with the threshold; :func:`fit_label_rules` fits it on training views only, from small
summaries read one chunk of users at a time (:func:`iter_user_chunks`), exactly as on the views held in
memory. See docs/design/data.md.

Example
-------
>>> import polars as pl
>>> rule = LabelRule(kind="duration_debiased", threshold=2.0, edges_ms=(10_000.0,), cutoffs=(4.0, 1.0))
>>> frame = pl.DataFrame({"video_duration": [5_000, 60_000], "watch_ratio": [3.0, 1.5]})
>>> frame.select(label_ratio_expr(rule))["label_ratio"].to_list()
[1.5, 3.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import polars as pl

from reco import portable_math
from reco.errors import InputDataError
from reco.params import LabelParams
from reco.schema import Columns

LABEL_KINDS: tuple[str, ...] = ("threshold", "duration_debiased")

CHUNK_ROWS: Final = 3_000_000
"""Rows per chunk of :func:`iter_user_chunks` (plus the rest of the chunk's last user): the memory bound."""

DIGIT_BITS: Final = 16  # bits of the value resolved per pass of the exact quantile selection
_DIGITS: Final = 1 << DIGIT_BITS
_VIEWS: Final = "views"  # count column of the duration and bucket summaries
_BUCKET: Final = "_bucket"


@dataclass(frozen=True)
class LabelRule:
    """A fitted labelling rule (see docs/design/data.md).

    ``edges_ms`` are the inner bucket edges (``len(cutoffs) - 1`` of them); ``cutoffs`` are the
    watch-ratio cut-offs per bucket (all equal to ``threshold`` for the ``threshold`` kind).
    """

    kind: str
    threshold: float
    edges_ms: tuple[float, ...]
    cutoffs: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------
# Duration buckets: percentiles from per-duration counts
# --------------------------------------------------------------------------------------------


def percentile_from_counts(values: np.ndarray, counts: np.ndarray, percent: float) -> float:
    """``np.percentile(data, percent)`` (``linear``) of the data holding ``counts[i]`` copies of ``values[i]``.

    numpy's arithmetic is repeated step by step (virtual index ``(n - 1) * percent / 100``, then
    ``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` when ``g >= 0.5``), so the result is the same
    float as ``np.percentile`` on the expanded data, in memory that grows with ``len(values)`` only.

    Parameters
    ----------
    values
        Strictly increasing float64 values.
    counts
        Positive number of copies of each value.
    percent
        In [0, 100].

    Examples
    --------
    >>> data = np.array([3.0, 1.0, 1.0, 7.0, 3.0, 3.0])
    >>> values, counts = np.unique(data, return_counts=True)
    >>> percentile_from_counts(values, counts, 35.0) == float(np.percentile(data, 35.0))
    True
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("percentile of no values")
    cumulative = np.cumsum(counts)

    def at_rank(rank: int) -> float:  # the value at 0-based position `rank` of the sorted data
        return float(values[int(np.searchsorted(cumulative, rank, side="right"))])

    virtual = float(n - 1) * (float(percent) / 100.0)
    if virtual >= n - 1:
        return at_rank(n - 1)
    previous = math.floor(virtual)
    gamma = virtual - previous
    low, high = at_rank(previous), at_rank(previous + 1)
    difference = high - low
    return high - difference * (1.0 - gamma) if gamma >= 0.5 else low + difference * gamma


def count_durations(views: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Number of ``views`` per ``video_duration`` (as Float64; views without a duration are left out).

    Counts of several chunks are merged by :func:`merge_duration_counts`.
    """
    duration = pl.col(Columns.video_duration).cast(pl.Float64)
    return (
        views.lazy()
        .select(duration)
        .drop_nulls()
        .group_by(Columns.video_duration)
        .agg(pl.len().cast(pl.Int64).alias(_VIEWS))
        .collect()
    )


def merge_duration_counts(counts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Sum :func:`count_durations` results (one row per duration, sorted by duration)."""
    frames = list(counts)
    if not frames:
        return pl.DataFrame(schema={Columns.video_duration: pl.Float64, _VIEWS: pl.Int64})
    return pl.concat(frames).group_by(Columns.video_duration).agg(pl.col(_VIEWS).sum()).sort(Columns.video_duration)


def bucket_edges_from_counts(duration_counts: pl.DataFrame, n_buckets: int) -> tuple[float, ...]:
    """Inner edges of ``n_buckets`` log-spaced buckets between the 1st and 99th percentile of durations.

    ``duration_counts`` are views per duration (:func:`count_durations`). The spacing uses
    :func:`reco.portable_math.geomspace` (numpy's ``geomspace`` goes through SIMD
    ``log10``/``power`` kernels that round differently per CPU, and an edge is rounded to 3
    decimals and compared with every duration).
    """
    ordered = merge_duration_counts([duration_counts])
    if ordered.height == 0:
        raise ValueError("no training views with a video_duration to fit the duration buckets on")
    values = ordered[Columns.video_duration].to_numpy()
    counts = ordered[_VIEWS].to_numpy()
    low = max(percentile_from_counts(values, counts, 1.0), 1.0)
    high = max(percentile_from_counts(values, counts, 99.0), low * 1.0001)
    return tuple(float(round(e, 3)) for e in portable_math.geomspace(low, high, n_buckets + 1)[1:-1])


def duration_bucket_edges(durations_ms: np.ndarray, n_buckets: int) -> tuple[float, ...]:
    """:func:`bucket_edges_from_counts` of an array of view durations (the same edges as for their counts)."""
    frame = pl.DataFrame({Columns.video_duration: np.asarray(durations_ms, dtype=np.float64)})
    return bucket_edges_from_counts(count_durations(frame), n_buckets)


def bucket_index_expr(edges_ms: tuple[float, ...]) -> pl.Expr:
    """Bucket of each view's ``video_duration`` (0 .. len(edges)), as Int8."""
    index = pl.lit(0, dtype=pl.Int8)
    for edge in edges_ms:
        index = index + (pl.col(Columns.video_duration).cast(pl.Float64) > edge).cast(pl.Int8)
    return index


# --------------------------------------------------------------------------------------------
# Exact quantiles by radix selection
# --------------------------------------------------------------------------------------------


def _sortable_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers ordered like the float ``values`` (float32 -> uint32, else float64 -> uint64).

    ``-0.0`` is counted as ``0.0`` (adding ``0.0`` turns it positive): the two compare equal, and
    a quantile cannot tell them apart.
    """
    if values.dtype == np.float32:
        bits = (values + np.float32(0.0)).view(np.uint32)
        sign = np.uint32(1 << 31)
    else:
        bits = (values.astype(np.float64, copy=False) + 0.0).view(np.uint64)
        sign = np.uint64(1 << 63)
    # Negative floats order by their inverted bits, positive ones above them by their bits.
    return np.where((bits & sign) != 0, ~bits, bits | sign)


def _key_to_float(key: int, key_bits: int) -> float:
    """Inverse of :func:`_sortable_keys` for one key."""
    unsigned, floating = (np.uint32, np.float32) if key_bits == 32 else (np.uint64, np.float64)
    sign = 1 << (key_bits - 1)
    bits = key ^ sign if key & sign else ~key & ((1 << key_bits) - 1)
    return float(np.array([bits], dtype=unsigned).view(floating)[0])


@dataclass
class _OrderStatistic:
    """The value at 0-based position ``rank`` of a group's sorted values, narrowed digit by digit."""

    group: int | None  # None: all groups together
    rank: int  # position among the values that share ``prefix`` once a digit is resolved
    prefix: int = 0  # the digits resolved so far: the full sortable key once all are

    def narrow(self, histogram: np.ndarray) -> None:
        """Resolve the next digit from the counts of its values' next digit; keep the rank within it."""
        cumulative = np.cumsum(histogram)
        digit = int(np.searchsorted(cumulative, self.rank, side="right"))
        self.rank -= int(cumulative[digit - 1]) if digit else 0
        self.prefix = (self.prefix << DIGIT_BITS) | digit


class ExactQuantiles:
    """The exact ``quantile`` of float values per group and over all groups, in a few streaming passes.

    The result is what ``pl.Series(values, dtype=pl.Float64).quantile(quantile, "linear")`` gives
    for each group's values (``None`` for an empty group), computed by radix selection on the
    values' bits (see docs/design/data.md): memory is a 2**16-bin histogram per group and one per
    order statistic, whatever the number of values.

    Parameters
    ----------
    n_groups
        Groups are ``0 .. n_groups - 1``.
    quantile
        In [0, 1].

    Examples
    --------
    >>> values = np.array([5.0, 1.0, 3.0, 2.0, 4.0], dtype=np.float32)
    >>> groups = np.array([0, 0, 0, 1, 1])
    >>> ExactQuantiles(2, 0.5).fit(lambda: [(groups, values)])
    ([3.0, 3.0], 3.0)
    """

    def __init__(self, n_groups: int, quantile: float) -> None:
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        self.n_groups = n_groups
        self.quantile = quantile

    def fit(
        self, batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
    ) -> tuple[list[float | None], float | None]:
        """Quantile per group and over all groups of the values that ``batches()`` yields.

        Parameters
        ----------
        batches
            Called once per pass (twice for float32 values, four times for others); each call
            yields ``(group, value)`` array pairs covering every value exactly once, no NaN
            and the same dtype in every batch.

        Returns
        -------
        tuple
            The quantile of every group (``None`` where a group has no values) and of all values.
        """
        key_bits: int | None = None
        top = np.zeros((self.n_groups, _DIGITS), dtype=np.int64)
        for groups, values in batches():
            if key_bits is None:
                key_bits = 32 if values.dtype == np.float32 else 64
            elif key_bits != (32 if values.dtype == np.float32 else 64):
                raise ValueError("every batch must hold values of the same float dtype")
            keys = _sortable_keys(values)
            digit = (keys >> (key_bits - DIGIT_BITS)).astype(np.int64)
            slot = np.asarray(groups, dtype=np.int64) * _DIGITS + digit
            top += np.bincount(slot, minlength=self.n_groups * _DIGITS).reshape(self.n_groups, _DIGITS)
        sizes = [int(n) for n in top.sum(axis=1)]
        total = sum(sizes)
        positions: dict[int | None, tuple[float, int, int]] = {}  # group -> (virtual index, low, high)
        for group, size in [*enumerate(sizes), (None, total)]:
            if size:
                virtual = float(size - 1) * self.quantile  # polars: (n - 1) as f64 * quantile
                positions[group] = (virtual, math.floor(virtual), math.ceil(virtual))
        wanted = {(group, rank) for group, (_, low, high) in positions.items() for rank in (low, high)}
        in_order = sorted(wanted, key=lambda item: (item[0] is None, item[0] or 0, item[1]))
        statistics = {(group, rank): _OrderStatistic(group, rank) for group, rank in in_order}
        for statistic in statistics.values():
            statistic.narrow(top.sum(axis=0) if statistic.group is None else top[statistic.group])
        del top
        if key_bits is not None and statistics:  # else there are no values: nothing to select
            for level in range(2, key_bits // DIGIT_BITS + 1):
                self._next_digit(batches, list(statistics.values()), level, key_bits)
        values_at = {name: _key_to_float(statistic.prefix, key_bits or 32) for name, statistic in statistics.items()}

        def interpolated(group: int | None) -> float | None:
            if group not in positions:
                return None
            virtual, low, high = positions[group]
            low_value, high_value = values_at[(group, low)], values_at[(group, high)]
            if low == high:
                return low_value
            return (virtual - low) * (high_value - low_value) + low_value  # polars' linear interpolation

        return [interpolated(group) for group in range(self.n_groups)], interpolated(None)

    @staticmethod
    def _next_digit(
        batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
        statistics: list[_OrderStatistic],
        level: int,
        key_bits: int,
    ) -> None:
        """One pass: count the ``level``-th digit of the values that share each statistic's prefix."""
        targets = list(dict.fromkeys((s.group, s.prefix) for s in statistics))  # distinct, in a fixed order
        histograms = {target: np.zeros(_DIGITS, dtype=np.int64) for target in targets}
        prefix_shift = key_bits - (level - 1) * DIGIT_BITS
        digit_shift = key_bits - level * DIGIT_BITS
        mask = (1 << DIGIT_BITS) - 1
        for groups, values in batches():
            keys = _sortable_keys(values)
            prefixes = keys >> prefix_shift
            digits = ((keys >> digit_shift) & mask).astype(np.int64)
            groups = np.asarray(groups)
            for group, prefix in targets:
                selected = prefixes == prefix
                if group is not None:
                    selected &= groups == group
                histograms[(group, prefix)] += np.bincount(digits[selected], minlength=_DIGITS)
        for statistic in statistics:
            statistic.narrow(histograms[(statistic.group, statistic.prefix)])


# --------------------------------------------------------------------------------------------
# Fitting the rules
# --------------------------------------------------------------------------------------------


def fit_label_rules(
    duration_counts: pl.DataFrame,
    views: Callable[[], Iterable[pl.DataFrame]],
    label: LabelParams,
    kinds: Sequence[str] = LABEL_KINDS,
) -> dict[str, LabelRule]:
    """Fit the rules of ``kinds`` on training views read in chunks (see docs/design/data.md).

    Parameters
    ----------
    duration_counts
        Training views per ``video_duration`` (:func:`count_durations`, summed over chunks).
    views
        Called once per pass of the quantile selection (``duration_debiased`` only: two passes
        for float32 watch ratios); each call yields the training views (``video_duration``,
        ``watch_ratio``) in chunks, every view exactly once.
    label
        The ``label`` params section.
    kinds
        The kinds to fit.
    """
    edges = bucket_edges_from_counts(duration_counts, label.duration_buckets)
    rules: dict[str, LabelRule] = {}
    if "duration_debiased" in kinds:

        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for chunk in views():
                pairs = (
                    chunk.lazy()
                    .select(bucket_index_expr(edges).alias(_BUCKET), pl.col(Columns.watch_ratio))
                    .drop_nulls()
                    .collect()
                )
                yield pairs[_BUCKET].to_numpy(), pairs[Columns.watch_ratio].to_numpy()

        per_bucket, overall = ExactQuantiles(len(edges) + 1, label.debiased_quantile).fit(batches)
        # A bucket without training views (possible on tiny data) falls back to the overall quantile.
        fallback = 0.0 if overall is None else overall
        cutoffs = tuple(max(fallback if cut is None else cut, 1e-6) for cut in per_bucket)
        rules["duration_debiased"] = LabelRule(
            kind="duration_debiased",
            threshold=label.threshold,
            edges_ms=edges,
            cutoffs=tuple(round(c, 6) for c in cutoffs),
        )
    if "threshold" in kinds:
        rules["threshold"] = LabelRule(
            kind="threshold", threshold=label.threshold, edges_ms=edges, cutoffs=(label.threshold,) * (len(edges) + 1)
        )
    return {kind: rules[kind] for kind in kinds}


def fit_label_rule(train: pl.DataFrame, label: LabelParams, kind: str | None = None) -> LabelRule:
    """Fit the rule of ``label.kind`` (or ``kind``) on training views held in memory."""
    kind = kind or label.kind
    return fit_label_rules(count_durations(train), lambda: [train], label, kinds=(kind,))[kind]


def label_ratio_expr(rule: LabelRule) -> pl.Expr:
    """``label_ratio`` (Float32): ``watch_ratio`` scaled so the rule's cut-off maps to its threshold."""
    ratio = pl.col(Columns.watch_ratio).cast(pl.Float64)
    if rule.kind == "threshold":
        return ratio.cast(pl.Float32).alias(Columns.label_ratio)
    scale = pl.lit(rule.threshold / rule.cutoffs[0])
    bucket = bucket_index_expr(rule.edges_ms)
    for index, cutoff in enumerate(rule.cutoffs[1:], start=1):
        scale = pl.when(bucket == index).then(pl.lit(rule.threshold / cutoff)).otherwise(scale)
    return (ratio * scale).cast(pl.Float32).alias(Columns.label_ratio)


def labelled_ratio(frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    """The ratio that is compared with ``label.threshold``: ``label_ratio`` when split wrote it.

    Interaction sets written by ``split`` always carry ``label_ratio``; raw frames (unit tests,
    ad-hoc use) fall back to ``watch_ratio``, which is the ``threshold`` kind's label ratio.
    """
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    column = Columns.label_ratio if Columns.label_ratio in names else Columns.watch_ratio
    return pl.col(column).cast(pl.Float64)


def bucket_label_counts(frame: pl.DataFrame, rule: LabelRule, edges_ms: tuple[float, ...]) -> pl.DataFrame:
    """Per bucket of ``edges_ms``: views, views with a ratio, and positives under ``rule``.

    Counts of several chunks add up (:func:`positive_rate_by_bucket_from_counts` sums them).
    """
    positive = label_ratio_expr(rule).cast(pl.Float64) > rule.threshold
    return (
        frame.lazy()
        .select(bucket_index_expr(edges_ms).alias(_BUCKET), positive.alias("_positive"))
        .group_by(_BUCKET)
        .agg(
            pl.len().cast(pl.Int64).alias(_VIEWS),
            pl.col("_positive").count().cast(pl.Int64).alias("rated"),
            pl.col("_positive").sum().cast(pl.Int64).alias("positives"),
        )
        .collect()
    )


def positive_rate_by_bucket_from_counts(
    counts: Iterable[pl.DataFrame], edges_ms: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Views, positive rate and duration range per bucket, from :func:`bucket_label_counts` of every chunk."""
    bounds = (0.0, *edges_ms, float("inf"))
    totals = pl.concat(list(counts)).group_by(_BUCKET).agg(pl.col(_VIEWS, "rated", "positives").sum()).sort(_BUCKET)
    return [
        {
            "bucket": int(row[_BUCKET]),
            "duration_s_from": round(bounds[row[_BUCKET]] / 1000.0, 3),
            "duration_s_to": None if row[_BUCKET] == len(edges_ms) else round(bounds[row[_BUCKET] + 1] / 1000.0, 3),
            "views": int(row[_VIEWS]),
            # the mean of 0/1 values: an exact count over an exact count, as polars' mean gives it
            "positive_rate": round(row["positives"] / row["rated"], 6) if row["rated"] else 0.0,
        }
        for row in totals.iter_rows(named=True)
    ]


def positive_rate_by_bucket(frame: pl.DataFrame, rule: LabelRule, edges_ms: tuple[float, ...]) -> list[dict[str, Any]]:
    """Views, positive rate under ``rule`` and duration range per bucket of ``edges_ms``."""
    return positive_rate_by_bucket_from_counts([bucket_label_counts(frame, rule, edges_ms)], edges_ms)


# --------------------------------------------------------------------------------------------
# Reading a table sorted by user, a chunk of whole users at a time
# --------------------------------------------------------------------------------------------


def iter_user_chunks(
    source: pl.LazyFrame, chunk_rows: int = CHUNK_ROWS, *, name: str = "interactions"
) -> Iterator[pl.DataFrame]:
    """Yield the rows of ``source``, in order, in chunks of whole users of about ``chunk_rows`` rows.

    ``source`` must be sorted by ``user_id`` without nulls (the prepared logs and the split's sets
    are). Windows of ``chunk_rows`` rows are read with ``slice`` (a parquet scan then reads only
    the row groups the window touches); the rows of a window's last user wait for the next
    window, so a user's rows are never cut apart. A chunk therefore holds at most ``chunk_rows``
    rows plus the rest of its last user's rows (one user larger than a window fills several).

    Raises
    ------
    InputDataError
        ``source`` is not sorted by ``user_id`` or has a null ``user_id``.

    Examples
    --------
    >>> frame = pl.DataFrame({"user_id": [1, 1, 2, 3, 3, 3], "video_id": [1, 2, 3, 4, 5, 6]})
    >>> [chunk["user_id"].to_list() for chunk in iter_user_chunks(frame.lazy(), chunk_rows=3)]
    [[1, 1], [2], [3, 3, 3]]
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    carried: pl.DataFrame | None = None  # the last user's rows of the previous window
    previous_user: int | None = None
    offset = 0
    while True:
        window = source.slice(offset, chunk_rows).collect()
        offset += window.height
        finished = window.height < chunk_rows
        rows = window if carried is None else pl.concat([carried, window], rechunk=False)
        if rows.height == 0:
            return
        users = rows[Columns.user]
        if users.null_count() or not users.is_sorted() or (previous_user is not None and users[0] <= previous_user):
            raise InputDataError(name, f"rows must be sorted by {Columns.user} without nulls (near row {offset})")
        if finished:
            yield rows
            return
        cut = int(users.search_sorted(users[-1], side="left"))  # the first row of the last user
        if cut == 0:  # one user fills the window so far: read on
            carried = rows
            continue
        yield rows.slice(0, cut)
        previous_user = users[cut - 1]
        carried = rows.slice(cut)
