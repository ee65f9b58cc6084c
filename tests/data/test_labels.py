"""Label rules: the plain threshold and the duration-debiased label (fitted on training views only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.data import simulator as sim
from reco.data.labels import (
    LabelRule,
    bucket_index_expr,
    duration_bucket_edges,
    fit_label_rule,
    label_ratio_expr,
    labelled_ratio,
    positive_rate_by_bucket,
)
from reco.params import parse_section
from reco.schema import Columns, RawFiles

# Tolerance of the flatness claim on the tiny simulator: ~1,200 test views per bucket give a
# binomial standard error of ~0.012 around a 20% rate, so +-0.06 is about five standard errors.
FLAT_TOLERANCE = 0.06


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    out: Path = tmp_path_factory.mktemp("tiny_labels")
    sim.simulate(out, profile="tiny", seed=11)
    columns = [Columns.user, Columns.item, Columns.video_duration, Columns.watch_ratio]
    read = lambda name: pl.read_csv(out / name, columns=columns).drop_nulls()  # noqa: E731
    return read(RawFiles.big_matrix), read(RawFiles.small_matrix)


def test_debiased_positive_rate_is_flat_across_durations_on_held_out_simulator_views(
    tiny_logs: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    big, small = tiny_logs
    label = parse_section("label", {"kind": "duration_debiased", "debiased_quantile": 0.8, "duration_buckets": 4})
    rule = fit_label_rule(big, label)  # fitted on big_matrix only; measured on small_matrix
    debiased = [b["positive_rate"] for b in positive_rate_by_bucket(small, rule, rule.edges_ms) if b["views"] >= 300]
    plain_rule = fit_label_rule(big, parse_section("label", {"duration_buckets": 4}))
    plain = [b["positive_rate"] for b in positive_rate_by_bucket(small, plain_rule, rule.edges_ms) if b["views"] >= 300]
    assert len(debiased) >= 3
    assert max(abs(rate - 0.2) for rate in debiased) < FLAT_TOLERANCE, debiased
    # the plain threshold is anything but flat: short videos are positive far more often
    assert plain[0] > 5 * max(plain[-1], 1e-3) and plain[0] - plain[-1] > 0.1, plain


def test_cutoffs_are_per_bucket_quantiles_of_training_views() -> None:
    # Two clean duration groups (5 s and 50 s); watch ratios 1..100 in the first, 0.01..1 in the second.
    frame = pl.DataFrame(
        {
            Columns.video_duration: [5_000] * 100 + [50_000] * 100,
            Columns.watch_ratio: [float(i) for i in range(1, 101)] + [i / 100 for i in range(1, 101)],
        }
    )
    rule = fit_label_rule(frame, parse_section("label", {"kind": "duration_debiased", "debiased_quantile": 0.9, "duration_buckets": 2}))
    assert len(rule.edges_ms) == 1 and 5_000 < rule.edges_ms[0] < 50_000
    assert rule.cutoffs == pytest.approx((90.1, 0.901), rel=1e-6)
    ratio = frame.select(label_ratio_expr(rule))[Columns.label_ratio].to_numpy()
    # the cut-off of each bucket maps onto the threshold: 10% positives in each
    positive = ratio > rule.threshold
    assert positive[:100].sum() == 10 and positive[100:].sum() == 10


def test_threshold_kind_keeps_the_watch_ratio() -> None:
    frame = pl.DataFrame({Columns.video_duration: [3_000, 90_000], Columns.watch_ratio: [2.5, 0.3]}).cast(
        {Columns.watch_ratio: pl.Float32}
    )
    rule = fit_label_rule(frame, parse_section("label", {"threshold": 2.0, "duration_buckets": 3}))
    assert rule.kind == "threshold" and set(rule.cutoffs) == {2.0}
    out = frame.with_columns(label_ratio_expr(rule))
    assert out[Columns.label_ratio].to_list() == out[Columns.watch_ratio].to_list()
    # raw frames without label_ratio are labelled by their watch_ratio
    assert frame.select(labelled_ratio(frame) > 2.0).to_series().to_list() == [True, False]


def test_bucket_edges_are_log_spaced_and_buckets_cover_every_duration() -> None:
    durations = np.geomspace(1_000, 100_000, 1_001)
    edges = duration_bucket_edges(durations, 4)
    ratios = np.diff(np.log(np.array(edges)))
    assert len(edges) == 3 and np.allclose(ratios, ratios[0], rtol=1e-3)
    frame = pl.DataFrame({Columns.video_duration: [1, 20_000, 10**9]})  # edges ~3.2 s, 10 s, 31 s
    assert frame.select(bucket_index_expr(edges)).to_series().to_list() == [0, 2, 3]


def test_rule_round_trips_to_json_ready_dict() -> None:
    rule = LabelRule(kind="duration_debiased", threshold=2.0, edges_ms=(10.0,), cutoffs=(3.0, 1.0))
    assert rule.as_dict() == {"kind": "duration_debiased", "threshold": 2.0, "edges_ms": [10.0], "cutoffs": [3.0, 1.0]}
