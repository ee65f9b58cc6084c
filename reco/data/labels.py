"""What counts as a positive view: the plain threshold or the duration-debiased label.

People watch a roughly fixed number of seconds whatever a video's length, so ``watch_ratio`` falls
with duration and a plain ``watch_ratio > label.threshold`` marks most views of the shortest
videos positive and almost none of the longest. ``label.kind`` chooses:

``threshold``
    positive when ``watch_ratio > label.threshold`` (the KuaiRec authors' suggestion, 2.0).
``duration_debiased``
    positive when ``watch_ratio`` is above the ``label.debiased_quantile`` of the *training* views
    of videos of similar length: ``label.duration_buckets`` log-spaced buckets between the 1st and
    99th percentile of training video durations, one watch-ratio quantile per bucket. The positive
    rate is then about ``1 - debiased_quantile`` in every bucket.

Both kinds are expressed as one number per view, the **label ratio**: ``watch_ratio`` scaled so
that the kind's cut-off lands on ``label.threshold`` (``watch_ratio * threshold / cut(bucket)``;
for ``threshold`` it is ``watch_ratio`` itself). ``split`` writes it as a ``label_ratio`` column on
every interaction set, and every consumer (labels, graded relevance, ALS positives, history
positive rates, the popularity baseline) compares ``label_ratio`` with ``label.threshold``. The
rule is fitted on training views only, so no test outcome shapes a label.

Example
-------
>>> import polars as pl
>>> rule = LabelRule(kind="duration_debiased", threshold=2.0, edges_ms=(10_000.0,), cutoffs=(4.0, 1.0))
>>> frame = pl.DataFrame({"video_duration": [5_000, 60_000], "watch_ratio": [3.0, 1.5]})
>>> frame.select(label_ratio_expr(rule))["label_ratio"].to_list()
[1.5, 3.0]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from reco import portable_math
from reco.params import LabelParams
from reco.schema import Columns

LABEL_KINDS: tuple[str, ...] = ("threshold", "duration_debiased")


@dataclass(frozen=True)
class LabelRule:
    """A fitted labelling rule (see the module docstring).

    ``edges_ms`` are the inner bucket edges (``len(cutoffs) - 1`` of them); ``cutoffs`` are the
    watch-ratio cut-offs per bucket (all equal to ``threshold`` for the ``threshold`` kind).
    """

    kind: str
    threshold: float
    edges_ms: tuple[float, ...]
    cutoffs: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def duration_bucket_edges(durations_ms: np.ndarray, n_buckets: int) -> tuple[float, ...]:
    """Inner edges of ``n_buckets`` log-spaced buckets between the 1st and 99th percentile.

    The spacing uses :func:`reco.portable_math.geomspace` (numpy's ``geomspace`` goes through
    SIMD ``log10``/``power`` kernels that round differently per CPU, and an edge is rounded to
    3 decimals and compared with every duration).
    """
    low, high = np.percentile(durations_ms.astype(np.float64), [1.0, 99.0])
    low = max(float(low), 1.0)
    high = max(float(high), low * 1.0001)
    return tuple(float(round(e, 3)) for e in portable_math.geomspace(low, high, n_buckets + 1)[1:-1])


def bucket_index_expr(edges_ms: tuple[float, ...]) -> pl.Expr:
    """Bucket of each view's ``video_duration`` (0 .. len(edges)), as Int8."""
    index = pl.lit(0, dtype=pl.Int8)
    for edge in edges_ms:
        index = index + (pl.col(Columns.video_duration).cast(pl.Float64) > edge).cast(pl.Int8)
    return index


def fit_label_rule(train: pl.DataFrame, label: LabelParams, kind: str | None = None) -> LabelRule:
    """Fit the rule of ``label.kind`` (or ``kind``) on training views only."""
    kind = kind or label.kind
    edges = duration_bucket_edges(train[Columns.video_duration].to_numpy(), label.duration_buckets)
    if kind == "threshold":
        return LabelRule(kind=kind, threshold=label.threshold, edges_ms=edges, cutoffs=(label.threshold,) * (len(edges) + 1))
    per_bucket = (
        train.lazy()
        .select(bucket_index_expr(edges).alias("_bucket"), pl.col(Columns.watch_ratio).cast(pl.Float64))
        .group_by("_bucket")
        .agg(pl.col(Columns.watch_ratio).quantile(label.debiased_quantile, interpolation="linear").alias("_cut"))
        .collect()
    )
    found = dict(zip(per_bucket["_bucket"].to_list(), per_bucket["_cut"].to_list(), strict=True))
    overall = float(train[Columns.watch_ratio].cast(pl.Float64).quantile(label.debiased_quantile, "linear") or 0.0)
    # A bucket without training views (possible on tiny data) falls back to the overall quantile.
    cutoffs = tuple(max(float(found.get(b, overall)), 1e-6) for b in range(len(edges) + 1))
    return LabelRule(kind=kind, threshold=label.threshold, edges_ms=edges, cutoffs=tuple(round(c, 6) for c in cutoffs))


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


def positive_rate_by_bucket(frame: pl.DataFrame, rule: LabelRule, edges_ms: tuple[float, ...]) -> list[dict[str, Any]]:
    """Views, positive rate under ``rule`` and duration range per bucket of ``edges_ms``."""
    bounds = (0.0, *edges_ms, float("inf"))
    rates = (
        frame.lazy()
        .select(
            bucket_index_expr(edges_ms).alias("_bucket"),
            (label_ratio_expr(rule).cast(pl.Float64) > rule.threshold).cast(pl.Float64).alias("_pos"),
        )
        .group_by("_bucket")
        .agg(pl.len().alias("views"), pl.col("_pos").mean().alias("positive_rate"))
        .sort("_bucket")
        .collect()
    )
    return [
        {
            "bucket": int(row["_bucket"]),
            "duration_s_from": round(bounds[row["_bucket"]] / 1000.0, 3),
            "duration_s_to": None if row["_bucket"] == len(edges_ms) else round(bounds[row["_bucket"] + 1] / 1000.0, 3),
            "views": int(row["views"]),
            "positive_rate": round(float(row["positive_rate"]), 6),
        }
        for row in rates.iter_rows(named=True)
    ]
