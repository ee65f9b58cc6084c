"""Bootstrap intervals and paired comparisons over users (reco.evaluation.uncertainty)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from reco.errors import ParamsError
from reco.evaluation.metrics import ranking_metrics
from reco.evaluation.uncertainty import (
    bootstrap_means,
    bootstrap_weights,
    metric_intervals,
    paired_differences,
    paired_plot_rows,
    uncertainty_report,
)
from reco.params import parse_section


def test_weights_are_the_counts_of_the_seeded_index_matrix() -> None:
    weights = bootstrap_weights(n_users=7, samples=5, seed=3)
    draws = np.random.default_rng(3).integers(0, 7, size=(5, 7))
    expected = np.stack([np.bincount(row, minlength=7) for row in draws])
    np.testing.assert_array_equal(weights, expected)
    assert (weights.sum(axis=1) == 7).all()


def test_constant_values_give_a_zero_width_interval() -> None:
    weights = bootstrap_weights(50, 300, seed=0)
    out = metric_intervals({"ndcg_at_10": np.full(50, 0.3)}, weights)["ndcg_at_10"]
    assert out["low"] == pytest.approx(0.3, abs=1e-12) and out["high"] == pytest.approx(0.3, abs=1e-12)
    same = paired_differences({"m": np.full(50, 0.3)}, {"m": np.full(50, 0.3)}, weights)["m"]
    assert (same["mean"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert same["tie_rate"] == 1.0 and same["win_rate"] == 0.0


def test_interval_of_a_binary_metric_matches_the_exact_bootstrap_distribution() -> None:
    # Resampling n users of which 30% are hits: the resampled mean is exactly Binomial(n, 0.3) / n,
    # so the ideal percentile interval is known; 4000 resamples must land within ~3 binomial steps.
    n, hits = 2000, 600
    values = np.zeros(n)
    values[np.random.default_rng(1).permutation(n)[:hits]] = 1.0
    out = metric_intervals({"hit_rate_at_10": values}, bootstrap_weights(n, 4000, seed=7))["hit_rate_at_10"]
    low_exact = stats.binom.ppf(0.025, n, hits / n) / n
    high_exact = stats.binom.ppf(0.975, n, hits / n) / n
    assert out["mean"] == pytest.approx(0.3)
    assert abs(out["low"] - low_exact) <= 3 / n
    assert abs(out["high"] - high_exact) <= 3 / n
    # and the width is the normal-theory 2 * 1.96 * SE to within 5%
    se = np.sqrt(0.3 * 0.7 / n)
    assert (out["high"] - out["low"]) == pytest.approx(2 * 1.959964 * se, rel=0.05)


def _reference_bootstrap(values: dict[str, np.ndarray], other: dict[str, np.ndarray], samples: int, seed: int):
    """Slow, obvious implementation: loop over resamples, index the users, average."""
    n = len(next(iter(values.values())))
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    intervals, paired = {}, {}
    for key in values:
        means, diffs = [], []
        for row in draws:
            means.append(sum(values[key][i] for i in row) / n)
            diffs.append(sum(values[key][i] - other[key][i] for i in row) / n)
        intervals[key] = np.quantile(means, [0.025, 0.975])
        paired[key] = np.quantile(diffs, [0.025, 0.975])
    return intervals, paired


def test_vectorised_bootstrap_equals_a_reference_loop_with_the_same_seed() -> None:
    rng = np.random.default_rng(5)
    a = {"ndcg_at_5": rng.random(37), "recall_at_5": rng.integers(0, 2, 37).astype(float)}
    b = {"ndcg_at_5": rng.random(37), "recall_at_5": rng.integers(0, 2, 37).astype(float)}
    weights = bootstrap_weights(37, 200, seed=11)
    fast = metric_intervals(a, weights)
    fast_paired = paired_differences(a, b, weights)
    ref, ref_paired = _reference_bootstrap(a, b, 200, 11)
    for key in a:
        np.testing.assert_allclose([fast[key]["low"], fast[key]["high"]], ref[key], rtol=0, atol=1e-12)
        paired = [fast_paired[key]["low"], fast_paired[key]["high"]]
        np.testing.assert_allclose(paired, ref_paired[key], rtol=0, atol=1e-12)


def test_paired_difference_and_win_rate_on_a_hand_case() -> None:
    a = {"ndcg_at_1": np.array([1.0, 0.0, 0.5, 0.2])}
    b = {"ndcg_at_1": np.array([0.0, 0.0, 1.0, 0.2])}
    # one "resample" that is the sample itself: the interval collapses onto the observed difference
    out = paired_differences(a, b, np.ones((1, 4), dtype=np.int64))["ndcg_at_1"]
    assert out["mean"] == pytest.approx(0.125)
    assert out["low"] == pytest.approx(0.125) and out["high"] == pytest.approx(0.125)
    assert (out["win_rate"], out["tie_rate"], out["loss_rate"]) == (0.25, 0.5, 0.25)
    # two resamples: user 0 twice + user 2 twice (mean 0.25), users 1 and 3 twice (mean 0.0)
    two = paired_differences(a, b, np.array([[2, 0, 2, 0], [0, 2, 0, 2]]), confidence=0.5)["ndcg_at_1"]
    assert two["low"] == pytest.approx(0.0625) and two["high"] == pytest.approx(0.1875)


def test_pairing_gives_a_narrower_interval_than_the_models_own_intervals() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(500)
    b = a - 0.01 + rng.normal(0, 0.005, 500)  # B tracks A closely, 0.01 worse
    weights = bootstrap_weights(500, 1000, seed=0)
    own = metric_intervals({"m": a}, weights)["m"]
    diff = paired_differences({"m": a}, {"m": b}, weights)["m"]
    assert diff["low"] > 0  # a clear, consistent gain is detected...
    assert (diff["high"] - diff["low"]) < 0.1 * (own["high"] - own["low"])  # ...that two separate intervals would hide


def test_bootstrap_means_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        bootstrap_means(np.ones(3), np.ones((2, 4)))


def _results() -> dict:
    rng = np.random.default_rng(0)
    relevant = rng.random((40, 30)) < 0.2
    relevant[3] = False  # a user without positives: excluded from every model alike
    out = {}
    for name, noise in (("ranker", 0.5), ("als", 1.0), ("popularity", 2.0)):
        scores = relevant + noise * rng.random((40, 30))
        rec = np.argsort(-scores, axis=1, kind="stable")[:, :5].astype(np.int32)
        out[name] = ranking_metrics(rec, relevant, [1, 5], 30)
    return out


def test_report_covers_every_model_metric_and_comparison_and_is_reproducible() -> None:
    results = _results()
    report = uncertainty_report(results, samples=200, seed=42)
    assert set(report["intervals"]) == {"ranker", "als", "popularity"}
    for name, result in results.items():
        assert set(report["intervals"][name]) == set(result.per_user)  # every headline metric at every K
        for key, interval in report["intervals"][name].items():
            assert interval["mean"] == pytest.approx(result.summary[key], abs=1e-6)
            assert interval["low"] <= interval["mean"] <= interval["high"]
    assert set(report["paired"]) == {"ranker-als", "ranker-popularity", "als-popularity"}
    assert report["method"]["users"] == 39 and report["method"]["samples"] == 200
    assert uncertainty_report(results, samples=200, seed=42) == report
    assert uncertainty_report(results, samples=200, seed=43) != report
    # a comparison naming a model that was not evaluated is skipped
    partial = uncertainty_report({"ranker": results["ranker"], "als": results["als"]}, samples=50, seed=1)
    assert set(partial["paired"]) == {"ranker-als"}


def test_report_refuses_models_evaluated_on_different_users() -> None:
    rel = np.array([[True, False], [False, True]])
    a = ranking_metrics(np.array([[0], [1]]), rel, [1], 2)
    b = ranking_metrics(np.array([[0]]), rel[:1], [1], 2)
    with pytest.raises(ValueError, match="different users"):
        uncertainty_report({"a": a, "b": b}, samples=20, seed=0)


def test_plot_rows_hold_every_paired_metric_in_k_order() -> None:
    report = uncertainty_report(_results(), samples=50, seed=0)
    rows = paired_plot_rows(report)
    assert len(rows) == 3 * 10  # 3 comparisons x 5 metrics x 2 cut-offs
    assert set(rows[0]) == {"comparison", "metric", "mean", "low", "high"}
    ndcg = [r["metric"] for r in rows if r["comparison"] == "ranker-als" and r["metric"].startswith("ndcg")]
    assert ndcg == ["ndcg_at_1", "ndcg_at_5"]
    first = report["paired"]["ranker-als"]["ndcg_at_5"]
    row = next(r for r in rows if r["comparison"] == "ranker-als" and r["metric"] == "ndcg_at_5")
    assert (row["mean"], row["low"], row["high"]) == (first["mean"], first["low"], first["high"])


def test_bootstrap_samples_param_is_validated() -> None:
    assert parse_section("evaluate", {}).bootstrap_samples == 1000
    with pytest.raises(ParamsError, match="bootstrap_samples"):
        parse_section("evaluate", {"bootstrap_samples": 5})
