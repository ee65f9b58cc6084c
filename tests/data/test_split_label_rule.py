"""The label rule from small summaries: the same floats as numpy's and polars' in-memory statistics.

The split fits the rule without holding the training views: bucket edges from views per duration
(:func:`reco.data.labels.percentile_from_counts`), cut-offs by exact radix selection
(:class:`reco.data.labels.ExactQuantiles`). These tests compare both with the in-memory
computation they replace (``np.percentile`` and ``Expr.quantile`` on every view), bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reco import portable_math
from reco.data.labels import (
    ExactQuantiles,
    LabelRule,
    bucket_index_expr,
    bucket_label_counts,
    count_durations,
    fit_label_rule,
    fit_label_rules,
    iter_user_chunks,
    label_ratio_expr,
    merge_duration_counts,
    percentile_from_counts,
    positive_rate_by_bucket,
    positive_rate_by_bucket_from_counts,
)
from reco.errors import InputDataError
from reco.params import LabelParams, parse_section
from reco.schema import Columns


def in_memory_rule(train: pl.DataFrame, label: LabelParams, kind: str) -> LabelRule:
    """The rule as fitted with every view in memory (np.percentile edges, polars quantiles per bucket)."""
    low, high = np.percentile(train[Columns.video_duration].to_numpy().astype(np.float64), [1.0, 99.0])
    low = max(float(low), 1.0)
    high = max(float(high), low * 1.0001)
    edges = tuple(float(round(e, 3)) for e in portable_math.geomspace(low, high, label.duration_buckets + 1)[1:-1])
    if kind == "threshold":
        return LabelRule(
            kind=kind, threshold=label.threshold, edges_ms=edges, cutoffs=(label.threshold,) * (len(edges) + 1)
        )
    ratio = pl.col(Columns.watch_ratio).cast(pl.Float64)
    per_bucket = (
        train.lazy()
        .select(bucket_index_expr(edges).alias("_bucket"), ratio)
        .group_by("_bucket")
        .agg(ratio.quantile(label.debiased_quantile, interpolation="linear").alias("_cut"))
        .collect()
    )
    found = dict(zip(per_bucket["_bucket"].to_list(), per_bucket["_cut"].to_list(), strict=True))
    overall = float(train[Columns.watch_ratio].cast(pl.Float64).quantile(label.debiased_quantile, "linear") or 0.0)
    cutoffs = tuple(max(float(found.get(b, overall)), 1e-6) for b in range(len(edges) + 1))
    return LabelRule(kind=kind, threshold=label.threshold, edges_ms=edges, cutoffs=tuple(round(c, 6) for c in cutoffs))


def in_memory_positive_rates(frame: pl.DataFrame, rule: LabelRule, edges_ms: tuple[float, ...]) -> list[dict]:
    """Positive rate per bucket as the mean of 0/1 values over every view in memory."""
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


def views(seed: int, n: int, dtype: type = np.float32) -> pl.DataFrame:
    """Views of a few videos (durations repeat, as they do per video) with gamma watch ratios and exact zeros."""
    rng = np.random.default_rng(seed)
    durations = rng.integers(300, 300_000, int(rng.integers(1, 40)))
    ratio = rng.gamma(0.6, 1.5, n) * rng.choice([0.01, 1.0, 30.0])
    ratio[rng.random(n) < 0.1] = 0.0
    return pl.DataFrame(
        {
            Columns.video_duration: rng.choice(durations, n).astype(np.int32),
            Columns.watch_ratio: ratio.astype(dtype),
        }
    )


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(st.integers(1, 50) | st.integers(1, 2_000_000), min_size=1, max_size=400),
    percent=st.sampled_from([0.0, 1.0, 5.0, 37.5, 50.0, 99.0, 100.0]) | st.floats(0.0, 100.0),
)
def test_percentile_from_counts_is_numpys_percentile(data: list[int], percent: float) -> None:
    array = np.array(data, dtype=np.float64)
    values, counts = np.unique(array, return_counts=True)
    assert percentile_from_counts(values, counts, percent) == float(np.percentile(array, percent))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, width=32) | st.sampled_from([0.0, -0.0, 1.0, 2.0]), min_size=0, max_size=300),
    n_groups=st.integers(1, 4),
    quantile=st.sampled_from([0.0, 0.5, 0.8, 0.95, 0.99, 1.0]) | st.floats(0.0, 1.0),
    n_batches=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    wide=st.booleans(),
)
def test_exact_quantiles_equal_polars_quantiles_per_group_and_overall(
    values: list[float], n_groups: int, quantile: float, n_batches: int, seed: int, wide: bool
) -> None:
    rng = np.random.default_rng(seed)
    array = np.array(values, dtype=np.float64 if wide else np.float32)
    groups = rng.integers(0, n_groups, array.size)
    cuts = np.sort(rng.integers(0, array.size + 1, n_batches - 1))
    passes = []

    def batches() -> list[tuple[np.ndarray, np.ndarray]]:
        passes.append(1)
        return list(zip(np.split(groups, cuts), np.split(array, cuts), strict=True))

    per_group, overall = ExactQuantiles(n_groups, quantile).fit(batches)
    frame = pl.DataFrame({"group": groups, "value": array}).with_columns(pl.col("value").cast(pl.Float64))
    expected = {g: q for g, q in frame.group_by("group").agg(pl.col("value").quantile(quantile, "linear")).iter_rows()}
    assert per_group == [expected.get(g) for g in range(n_groups)]
    assert overall == frame["value"].quantile(quantile, "linear")
    # one pass per 16 bits of the values, or a single one when there is nothing to select
    assert len(passes) == (1 if array.size == 0 else 2 if not wide else 4)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fitted_rules_equal_the_in_memory_rule(seed: int, dtype: type) -> None:
    frame = views(seed, int(np.random.default_rng(seed).integers(1, 4000)), dtype)
    rng = np.random.default_rng(seed + 100)
    label = parse_section(
        "label",
        {
            "kind": "duration_debiased",
            "debiased_quantile": float(rng.choice([0.5, 0.8, 0.95, 0.99])),
            "duration_buckets": int(rng.integers(2, 12)),
        },
    )
    for kind in ("threshold", "duration_debiased"):
        expected = in_memory_rule(frame, label, kind)
        assert fit_label_rule(frame, label, kind) == expected
        # the same rule from counts and views read in several chunks
        chunks = [frame.slice(start, 333) for start in range(0, frame.height, 333)]
        counts = merge_duration_counts(count_durations(chunk) for chunk in chunks)
        assert fit_label_rules(counts, lambda chunks=chunks: iter(chunks), label, kinds=(kind,))[kind] == expected
    for kind in ("threshold", "duration_debiased"):
        rule = fit_label_rule(frame, label, kind)
        whole = positive_rate_by_bucket(frame, rule, rule.edges_ms)
        assert whole == in_memory_positive_rates(frame, rule, rule.edges_ms)
        by_chunk = [bucket_label_counts(chunk, rule, rule.edges_ms) for chunk in chunks]
        assert positive_rate_by_bucket_from_counts(by_chunk, rule.edges_ms) == whole
        assert sum(bucket["views"] for bucket in whole) == frame.height


def test_empty_training_views_are_refused() -> None:
    empty = views(0, 10).clear()
    with pytest.raises(ValueError, match="no training views"):
        fit_label_rule(empty, parse_section("label", {}))


# --- reading a user-sorted table in chunks of whole users ---------------------------------------


def user_table(seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, 25)
    sizes[3] = 60  # one user larger than most chunks
    users = np.repeat(np.arange(25, dtype=np.int32) * 3, sizes)
    return pl.DataFrame({Columns.user: users, "row": np.arange(users.size)})


@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 50, 10**6])
def test_user_chunks_cover_every_row_once_in_order_and_never_cut_a_user(chunk_rows: int) -> None:
    table = user_table(chunk_rows)
    chunks = list(iter_user_chunks(table.lazy(), chunk_rows))
    assert pl.concat(chunks).equals(table)
    users = [set(chunk[Columns.user].to_list()) for chunk in chunks]
    assert all(not a & b for i, a in enumerate(users) for b in users[i + 1 :])
    largest_user = int(table.group_by(Columns.user).len()["len"].max())
    assert all(chunk.height <= chunk_rows + largest_user for chunk in chunks)


def test_user_chunks_read_a_parquet_scan(tmp_path: Path) -> None:
    table = user_table(1)
    table.write_parquet(tmp_path / "t.parquet", row_group_size=17)
    assert pl.concat(iter_user_chunks(pl.scan_parquet(tmp_path / "t.parquet"), 40)).equals(table)


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_user_chunks_refuse_an_unsorted_table_or_null_users(chunk_rows: int) -> None:
    unsorted = pl.DataFrame({Columns.user: [1, 1, 2, 2, 1, 3], "row": range(6)})
    with pytest.raises(InputDataError, match="sorted by user_id"):
        list(iter_user_chunks(unsorted.lazy(), chunk_rows))
    nulls = pl.DataFrame({Columns.user: [1, None, 2]}, schema={Columns.user: pl.Int32})
    with pytest.raises(InputDataError, match="without nulls"):
        list(iter_user_chunks(nulls.lazy(), chunk_rows))
