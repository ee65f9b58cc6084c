"""Tests for reco.evaluation.metrics: hand-computed cases, sklearn agreement, and property tests
against a slow pure-Python reference written here."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

import reco.evaluation.metrics as metrics_module
from reco.evaluation.metrics import (
    DEFINITIONS,
    METRIC_NAMES,
    RankingResult,
    metric_key,
    ranking_metrics,
    top_k_items,
)

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)


# --------------------------------------------------------------------------------------------
# Slow pure-Python references (one user at a time, straight from the written definitions).
# --------------------------------------------------------------------------------------------


def reference_user_metrics(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Metrics of one user with |relevant| >= 1; -1 entries are non-relevant slots."""
    top = ranked[:k]
    rel = [1 if item in relevant else 0 for item in top]
    n_hits = sum(rel)
    dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rel, start=1))
    idcg = sum(1 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    ap = sum(rel[i - 1] * sum(rel[:i]) / i for i in range(1, len(rel) + 1)) / min(k, len(relevant))
    return {
        "precision": n_hits / k,
        "recall": n_hits / len(relevant),
        "ndcg": dcg / idcg,
        "map": ap,
        "hit_rate": 1.0 if n_hits >= 1 else 0.0,
    }


def reference_ranking_metrics(
    recommended: np.ndarray, relevant: np.ndarray, ks: list[int], n_catalogue_items: int
) -> tuple[dict[str, list[float]], dict[str, float], list[int]]:
    per_user: dict[str, list[float]] = {metric_key(n, k): [] for k in ks for n in METRIC_NAMES}
    evaluated = []
    for u in range(recommended.shape[0]):
        rel_set = {int(j) for j in np.flatnonzero(relevant[u])}
        if not rel_set:
            continue
        evaluated.append(u)
        for k in ks:
            for name, value in reference_user_metrics(recommended[u].tolist(), rel_set, k).items():
                per_user[metric_key(name, k)].append(value)
    summary = {key: sum(vals) / len(vals) for key, vals in per_user.items()}
    for k in ks:
        items = {int(j) for row in recommended for j in row[:k] if j >= 0}
        summary[metric_key("coverage", k)] = len(items) / n_catalogue_items
    return per_user, summary, evaluated


def reference_top_k(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> np.ndarray:
    out = np.full((scores.shape[0], k), -1, dtype=np.int64)
    for u, row in enumerate(scores.tolist()):
        candidates = [
            j for j, s in enumerate(row) if not math.isnan(s) and (valid is None or bool(valid[u, j]))
        ]
        # Python compares -0.0 == 0.0, so those tie and fall back to the index, as specified.
        best = sorted(candidates, key=lambda j: (-row[j], j))[:k]
        out[u, : len(best)] = best
    return out


# --------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------


@st.composite
def ranking_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """(recommended with unique items and -1 anywhere, dense bool relevance, ks, n_catalogue)."""
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 12))
    max_k = draw(st.integers(1, 14))
    flat = draw(st.lists(st.booleans(), min_size=n_users * n_items, max_size=n_users * n_items))
    relevant = np.array(flat, dtype=bool).reshape(n_users, n_items)
    rows = []
    for _ in range(n_users):
        raw = draw(st.lists(st.integers(-1, n_items - 1), min_size=max_k, max_size=max_k))
        seen: set[int] = set()
        row = []
        for j in raw:  # drop repeats to padding so every row is a valid list
            row.append(j if j >= 0 and j not in seen else -1)
            seen.add(j)
        rows.append(row)
    recommended = np.array(rows, dtype=np.int32)
    ks = draw(st.lists(st.integers(1, max_k), min_size=1, max_size=3, unique=True))
    n_catalogue = n_items + draw(st.integers(0, 3))
    return recommended, relevant, sorted(ks), n_catalogue


# Few distinct values (many ties) plus the IEEE edge cases the key trick must order correctly.
tie_heavy_floats = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1e-30, -1e-30, 3.4e38, -3.4e38, math.inf, -math.inf, math.nan]
)


@st.composite
def score_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, np.ndarray | None]:
    n_users = draw(st.integers(1, 5))
    n_items = draw(st.integers(1, 40))
    flat = draw(st.lists(tie_heavy_floats, min_size=n_users * n_items, max_size=n_users * n_items))
    scores = np.array(flat, dtype=np.float32).reshape(n_users, n_items)
    k = draw(st.integers(1, n_items + 3))
    valid = None
    if draw(st.booleans()):
        mask = draw(st.lists(st.booleans(), min_size=n_users * n_items, max_size=n_users * n_items))
        valid = np.array(mask, dtype=bool).reshape(n_users, n_items)
    return scores, k, valid


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


def test_definitions_cover_every_metric_and_match_the_design_doc() -> None:
    assert METRIC_NAMES == ("precision", "recall", "ndcg", "map", "hit_rate")
    assert set(METRIC_NAMES) | {"coverage"} <= set(DEFINITIONS)
    doc = (Path(metrics_module.__file__).parents[2] / "docs" / "design" / "evaluation.md").read_text(encoding="utf-8")
    for name, text in DEFINITIONS.items():
        assert text in doc, f"DEFINITIONS[{name!r}] is out of sync with docs/design/evaluation.md"
    assert DEFINITIONS["ndcg"].endswith("NDCG@K = DCG/IDCG")


# --------------------------------------------------------------------------------------------
# ranking_metrics: hand-computed cases
# --------------------------------------------------------------------------------------------


def test_hand_computed_single_user() -> None:
    # R = {0, 2, 5}; list = [2, 1, 0, 3, 5] -> rel = [1, 0, 1, 0, 1].
    recommended = np.array([[2, 1, 0, 3, 5]], dtype=np.int32)
    relevant = np.zeros((1, 10), dtype=bool)
    relevant[0, [0, 2, 5]] = True
    r = ranking_metrics(recommended, relevant, ks=[1, 3, 5], n_catalogue_items=10)
    s = r.summary
    # K=1: 1 hit. precision 1/1, recall 1/3, DCG = 1/log2(2) = 1 = IDCG, AP = (1/1) * 1.
    assert s["precision_at_1"] == 1.0
    assert s["recall_at_1"] == pytest.approx(1 / 3)
    assert s["ndcg_at_1"] == 1.0
    assert s["map_at_1"] == 1.0
    assert s["hit_rate_at_1"] == 1.0
    # K=3: hits at ranks 1, 3. precision 2/3, recall 2/3.
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.13093 -> 0.70392.
    # AP = (1/min(3,3)) * (1*1/1 + 1*2/3) = (1/3)(5/3) = 5/9.
    assert s["precision_at_3"] == pytest.approx(2 / 3)
    assert s["recall_at_3"] == pytest.approx(2 / 3)
    assert s["ndcg_at_3"] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert s["ndcg_at_3"] == pytest.approx(0.703918, abs=1e-6)
    assert s["map_at_3"] == pytest.approx(5 / 9)
    # K=5: hits at ranks 1, 3, 5. precision 3/5, recall 3/3.
    # DCG = 1 + 0.5 + 1/log2(6) = 1.88685; IDCG as K=3 (min(5, |R|) = 3) -> 0.88546.
    # AP = (1/3)(1 + 2/3 + 3/5) = (1/3)(34/15) = 34/45.
    assert s["precision_at_5"] == pytest.approx(3 / 5)
    assert s["recall_at_5"] == 1.0
    assert s["ndcg_at_5"] == pytest.approx((1.5 + 1 / math.log2(6)) / (1.5 + 1 / math.log2(3)))
    assert s["ndcg_at_5"] == pytest.approx(0.885460, abs=1e-6)
    assert s["map_at_5"] == pytest.approx(34 / 45)
    # Coverage: {2} -> 1/10, {2,1,0} -> 3/10, {2,1,0,3,5} -> 5/10.
    assert (s["coverage_at_1"], s["coverage_at_3"], s["coverage_at_5"]) == (0.1, 0.3, 0.5)
    assert isinstance(r, RankingResult)
    assert r.evaluated_users.tolist() == [0]
    assert r.users_without_positives == 0


def test_padding_and_users_without_positives() -> None:
    # u0: R={1}, list [0, 1, -1]; u1: R={} (excluded, but its list counts for coverage);
    # u2: R={0,3}, list all padding.
    recommended = np.array([[0, 1, -1], [3, 2, 1], [-1, -1, -1]], dtype=np.int32)
    relevant = np.zeros((3, 5), dtype=bool)
    relevant[0, 1] = True
    relevant[2, [0, 3]] = True
    r = ranking_metrics(recommended, relevant, ks=[3, 2], n_catalogue_items=5)
    assert r.evaluated_users.tolist() == [0, 2]
    assert r.users_without_positives == 1
    # u0 at K=2: one hit at rank 2 -> precision 1/2, recall 1, DCG = 1/log2(3), IDCG = 1, AP = (1/1)(1/2).
    # u0 at K=3: padding is a non-relevant slot -> precision 1/3, everything else as K=2.
    # u2: zero everywhere.
    np.testing.assert_allclose(r.per_user["precision_at_2"], [1 / 2, 0.0])
    np.testing.assert_allclose(r.per_user["precision_at_3"], [1 / 3, 0.0])
    np.testing.assert_allclose(r.per_user["recall_at_3"], [1.0, 0.0])
    np.testing.assert_allclose(r.per_user["ndcg_at_2"], [1 / math.log2(3), 0.0])
    np.testing.assert_allclose(r.per_user["map_at_3"], [0.5, 0.0])
    np.testing.assert_allclose(r.per_user["hit_rate_at_2"], [1.0, 0.0])
    # Means over the 2 evaluated users only: (1/2 + 0)/2 = 0.25; (1/log2(3) + 0)/2 = 0.31546.
    assert r.summary["precision_at_2"] == pytest.approx(0.25)
    assert r.summary["ndcg_at_2"] == pytest.approx(0.5 / math.log2(3))
    assert r.summary["hit_rate_at_3"] == 0.5
    # Coverage over all users: K=2 -> {0,1} | {3,2} = 4 of 5; K=3 adds item 1 again -> 4/5.
    assert r.summary["coverage_at_2"] == pytest.approx(0.8)
    assert r.summary["coverage_at_3"] == pytest.approx(0.8)
    # Keys come out in ascending K with the metric order of METRIC_NAMES.
    assert list(r.per_user) == [metric_key(n, k) for k in (2, 3) for n in METRIC_NAMES]
    assert set(r.summary) == set(r.per_user) | {"coverage_at_2", "coverage_at_3"}


def test_ap_uses_min_k_and_relevant_count() -> None:
    # R = {0,1,2,3} (4 items), K = 2, list [0, 9]: AP = (1/min(2,4)) * (1*1/1) = 1/2, recall = 1/4.
    # With |R| = 1, R = {9}, list [0, 9]: AP = (1/1) * (1 * 1/2) = 1/2, NDCG = (1/log2 3)/1.
    recommended = np.array([[0, 9], [0, 9]], dtype=np.int32)
    relevant = np.zeros((2, 10), dtype=bool)
    relevant[0, :4] = True
    relevant[1, 9] = True
    r = ranking_metrics(recommended, relevant, ks=[2], n_catalogue_items=10)
    np.testing.assert_allclose(r.per_user["map_at_2"], [0.5, 0.5])
    np.testing.assert_allclose(r.per_user["recall_at_2"], [0.25, 1.0])
    # u0 NDCG: DCG = 1, IDCG = 1 + 1/log2(3) = 1.63093 -> 0.61315.
    np.testing.assert_allclose(r.per_user["ndcg_at_2"], [1 / (1 + 1 / math.log2(3)), 1 / math.log2(3)])


def test_sparse_input_matches_dense_including_explicit_zeros_and_duplicates() -> None:
    rng = np.random.default_rng(3)
    dense = rng.random((20, 15)) < 0.3
    dense[4] = False  # one user without positives
    recommended = top_k_items(rng.random((20, 15)).astype(np.float32), 6)
    dense[0, recommended[0, 0]] = False  # the explicit zero below sits on u0's top-1 item
    expected = ranking_metrics(recommended, dense, [1, 3, 6], 15)
    rows, cols = np.nonzero(dense)
    # COO holding every positive twice (duplicates) plus an explicit 0 at (0, top-1 item of u0).
    coo = sp.coo_matrix(
        (np.r_[np.ones(2 * rows.size), 0.0], (np.r_[rows, rows, 0], np.r_[cols, cols, recommended[0, 0]])),
        shape=dense.shape,
    )
    csr_with_zero = coo.tocsr()
    assert csr_with_zero.nnz == rows.size + 1  # tocsr sums the duplicates but keeps the explicit zero
    for relevant in (csr_with_zero, coo, sp.csr_array(dense), sp.csr_matrix(dense.astype(np.int8))):
        got = ranking_metrics(recommended, relevant, [1, 3, 6], 15)
        assert got.summary == pytest.approx(expected.summary, rel=1e-15)
        np.testing.assert_array_equal(got.evaluated_users, expected.evaluated_users)
        assert got.users_without_positives == expected.users_without_positives == 1
        for key in expected.per_user:
            np.testing.assert_array_equal(got.per_user[key], expected.per_user[key])
    assert expected.per_user["hit_rate_at_1"][0] == 0.0  # u0's top-1 is not relevant


def test_explicit_false_in_sparse_is_not_relevant() -> None:
    # u0 stores an explicit False for item 2, u1 a real True for item 2.
    csr = sp.csr_matrix((np.array([False, True]), np.array([2, 2]), np.array([0, 1, 2])), shape=(2, 3))
    r = ranking_metrics(np.array([[2], [2]], dtype=np.int32), csr, [1], 3)
    assert r.evaluated_users.tolist() == [1]
    assert r.users_without_positives == 1
    assert r.summary["precision_at_1"] == 1.0


@pytest.mark.parametrize(
    ("recommended", "ks", "n_catalogue", "match"),
    [
        (np.array([[0, 1]]), [3], 4, "max_k >= max"),
        (np.array([[0, 1]]), [0], 4, "positive integer"),
        (np.array([[0, 1]]), [], 4, "at least one"),
        (np.array([[1, 1]]), [2], 4, "repeats an item"),
        (np.array([[0, 4]]), [2], 4, r"\[-1, 4\)"),
        (np.array([[0, -2]]), [2], 4, r"\[-1, 4\)"),
        (np.array([[0, 3]]), [2], 3, r"\[-1, 3\)"),  # item 3 is outside a 3-item catalogue
        (np.array([[0.0, 1.0]]), [2], 4, "integer"),
        (np.array([0, 1]), [2], 4, "2-D"),
    ],
)
def test_ranking_metrics_rejects_bad_input(
    recommended: np.ndarray, ks: list[int], n_catalogue: int, match: str
) -> None:
    relevant = np.array([[True, False, False, True]])
    with pytest.raises(ValueError, match=match):
        ranking_metrics(recommended, relevant, ks, n_catalogue)


def test_ranking_metrics_rejects_no_positives_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="none of the 2 users"):
        ranking_metrics(np.array([[0], [1]]), np.zeros((2, 3), dtype=bool), [1], 3)
    with pytest.raises(ValueError, match="shape"):
        ranking_metrics(np.array([[0], [1]]), np.ones((3, 3), dtype=bool), [1], 3)


def test_result_arrays_are_read_only() -> None:
    r = ranking_metrics(np.array([[0, 1]]), np.array([[True, False]]), [1], 2)
    with pytest.raises(ValueError):
        r.per_user["ndcg_at_1"][0] = 0.0
    with pytest.raises(ValueError):
        r.evaluated_users[0] = 5


# --------------------------------------------------------------------------------------------
# ranking_metrics: independent reference (sklearn) and property tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 10, 40])
def test_ndcg_matches_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    n_users, n_items = 60, 40
    scores = rng.random((n_users, n_items)).astype(np.float32)  # continuous: no ties
    assert all(np.unique(row).size == n_items for row in scores)
    relevant = rng.random((n_users, n_items)) < 0.15
    relevant[::7] = False  # some users without positives: sklearn is only given the others
    result = ranking_metrics(top_k_items(scores, k), sp.csr_matrix(relevant), [k], n_items)
    has_pos = relevant.any(axis=1)
    assert result.users_without_positives == int((~has_pos).sum()) > 0
    expected_per_user = [
        ndcg_score(relevant[u : u + 1].astype(float), scores[u : u + 1], k=k) for u in np.flatnonzero(has_pos)
    ]
    np.testing.assert_allclose(result.per_user[f"ndcg_at_{k}"], expected_per_user, rtol=1e-12)
    assert result.summary[f"ndcg_at_{k}"] == pytest.approx(
        ndcg_score(relevant[has_pos].astype(float), scores[has_pos], k=k), rel=1e-12
    )


@PROPERTY_SETTINGS
@given(ranking_cases())
def test_agrees_with_pure_python_reference(case: tuple[np.ndarray, np.ndarray, list[int], int]) -> None:
    recommended, relevant, ks, n_catalogue = case
    assume(relevant.any())
    ref_per_user, ref_summary, ref_evaluated = reference_ranking_metrics(recommended, relevant, ks, n_catalogue)
    for rel in (relevant, sp.csr_matrix(relevant)):
        got = ranking_metrics(recommended, rel, ks, n_catalogue)
        assert got.evaluated_users.tolist() == ref_evaluated
        assert got.users_without_positives == relevant.shape[0] - len(ref_evaluated)
        assert set(got.per_user) == set(ref_per_user)
        for key, values in ref_per_user.items():
            np.testing.assert_allclose(got.per_user[key], values, rtol=1e-12, atol=1e-15, err_msg=key)
        assert got.summary == pytest.approx(ref_summary, rel=1e-12, abs=1e-15)


@PROPERTY_SETTINGS
@given(ranking_cases())
def test_all_metrics_lie_in_unit_interval(case: tuple[np.ndarray, np.ndarray, list[int], int]) -> None:
    recommended, relevant, ks, n_catalogue = case
    assume(relevant.any())
    r = ranking_metrics(recommended, relevant, ks, n_catalogue)
    for key, values in r.per_user.items():
        assert values.dtype == np.float64
        assert values.shape == r.evaluated_users.shape
        assert np.all((values >= 0.0) & (values <= 1.0)), key
    assert all(0.0 <= v <= 1.0 for v in r.summary.values())


@PROPERTY_SETTINGS
@given(ranking_cases())
def test_perfect_ranking(case: tuple[np.ndarray, np.ndarray, list[int], int]) -> None:
    _, relevant, ks, n_catalogue = case
    assume(relevant.any())
    n_users, n_items = relevant.shape
    # Relevant items first (by index), then the rest: a perfect list of length n_items.
    order = np.argsort(~relevant, axis=1, kind="stable").astype(np.int32)
    max_k = max(max(ks), n_items)
    recommended = np.pad(order, ((0, 0), (0, max_k - n_items)), constant_values=-1)
    r = ranking_metrics(recommended, relevant, ks, n_catalogue)
    n_rel = relevant[r.evaluated_users].sum(axis=1)
    for k in ks:
        np.testing.assert_allclose(r.per_user[f"ndcg_at_{k}"], 1.0, rtol=1e-15)
        np.testing.assert_allclose(r.per_user[f"map_at_{k}"], 1.0, rtol=1e-15)
        np.testing.assert_array_equal(r.per_user[f"hit_rate_at_{k}"], 1.0)
        np.testing.assert_allclose(r.per_user[f"recall_at_{k}"], np.minimum(k, n_rel) / n_rel)
        np.testing.assert_allclose(r.per_user[f"precision_at_{k}"], np.minimum(k, n_rel) / k)


@PROPERTY_SETTINGS
@given(ranking_cases(), st.randoms(use_true_random=False))
def test_invariant_to_user_order(case: tuple[np.ndarray, np.ndarray, list[int], int], rnd: random.Random) -> None:
    recommended, relevant, ks, n_catalogue = case
    assume(relevant.any())
    perm = np.array(rnd.sample(range(relevant.shape[0]), relevant.shape[0]))
    base = ranking_metrics(recommended, relevant, ks, n_catalogue)
    shuffled = ranking_metrics(recommended[perm], relevant[perm], ks, n_catalogue)
    assert shuffled.summary == pytest.approx(base.summary, rel=1e-12, abs=1e-15)
    assert shuffled.users_without_positives == base.users_without_positives
    # New row i is old row perm[i]: map evaluated users back and compare per user.
    old_ids = perm[shuffled.evaluated_users]
    back = np.argsort(old_ids)
    np.testing.assert_array_equal(old_ids[back], base.evaluated_users)
    for key in base.per_user:
        np.testing.assert_allclose(shuffled.per_user[key][back], base.per_user[key], rtol=1e-15)


# --------------------------------------------------------------------------------------------
# top_k_items
# --------------------------------------------------------------------------------------------


def test_top_k_hand_computed_ties() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    # Row 0: the three 3.0s by index (1, 2, 4), then 2.0 (3). Row 1: all tied -> 0, 1, 2, 3.
    out = top_k_items(scores, 4)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[1, 2, 4, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(top_k_items(scores, 2), [[1, 2], [0, 1]])


def test_top_k_ties_at_partition_boundary_many_items() -> None:
    # 1000 items, all tied except items 700 and 900 on top: a plain argpartition would return an
    # arbitrary subset of the tied block; the spec wants the lowest indices.
    scores = np.zeros((3, 1000), dtype=np.float32)
    scores[:, 700] = 2.0
    scores[:, 900] = 1.0
    expected = [700, 900, *range(8)]
    np.testing.assert_array_equal(top_k_items(scores, 10), [expected] * 3)


def test_top_k_matches_stable_sort_at_realistic_size() -> None:
    rng = np.random.default_rng(7)
    # Scores rounded to 2 decimals -> ~200 distinct values over 3,327 items: ties everywhere.
    scores = np.round(rng.standard_normal((150, 3327)), 2).astype(np.float32)
    valid = rng.random((150, 3327)) < 0.9
    fast = top_k_items(scores, 200, valid=valid)
    order = np.lexsort((np.arange(3327)[None, :].repeat(150, 0), -scores, ~valid), axis=1)[:, :200]
    np.testing.assert_array_equal(fast, order)
    # float64 input takes the partition path and must agree with the float32 fast path.
    np.testing.assert_array_equal(top_k_items(scores.astype(np.float64), 200, valid=valid), fast)


def test_top_k_nan_valid_masking_and_padding() -> None:
    nan = np.nan
    scores = np.array([[nan, 5.0, 1.0, nan], [nan, nan, nan, nan], [-np.inf, 0.0, np.inf, -1.0]], dtype=np.float32)
    valid = np.array([[True, True, True, True], [True, True, True, True], [True, True, False, True]])
    # Row 0: NaNs dropped -> [1, 2], padded. Row 1: nothing valid. Row 2: inf masked out -> 0.0, -1.0, -inf.
    np.testing.assert_array_equal(
        top_k_items(scores, 4, valid=valid), [[1, 2, -1, -1], [-1, -1, -1, -1], [1, 3, 0, -1]]
    )
    # k larger than the catalogue pads with -1; a 1-D catalogue mask broadcasts over users.
    out = top_k_items(scores[2:], 6, valid=np.array([False, True, True, True]))
    np.testing.assert_array_equal(out, [[2, 1, 3, -1, -1, -1]])


def test_top_k_negative_zero_ties_positive_zero() -> None:
    scores = np.array([[-0.0, 0.0, -0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k_items(scores, 4), [[0, 1, 2, 3]])


def test_top_k_integer_and_float64_inputs() -> None:
    # int16 casts exactly to float32 (fast path); float64 values 1 + 1e-12 vs 1 would tie in float32.
    np.testing.assert_array_equal(top_k_items(np.array([[3, 7, 7, -2]], dtype=np.int16), 3), [[1, 2, 0]])
    scores64 = np.array([[1.0, 1.0 + 1e-12, 1.0]])
    np.testing.assert_array_equal(top_k_items(scores64, 2), [[1, 0]])


@pytest.mark.parametrize(
    ("scores", "k", "valid", "match"),
    [
        (np.zeros(3, dtype=np.float32), 1, None, "2-D"),
        (np.zeros((2, 3), dtype=np.float32), 0, None, "positive integer"),
        (np.zeros((2, 3), dtype=np.float32), 1.5, None, "positive integer"),
        (np.zeros((2, 3), dtype=np.float32), 1, np.ones((2, 3), dtype=np.int8), "boolean"),
        (np.array([["a", "b"]]), 1, None, "numeric"),
    ],
)
def test_top_k_rejects_bad_input(scores: np.ndarray, k: object, valid: np.ndarray | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        top_k_items(scores, k, valid=valid)  # type: ignore[arg-type]


@PROPERTY_SETTINGS
@given(score_cases())
def test_top_k_agrees_with_reference(case: tuple[np.ndarray, int, np.ndarray | None]) -> None:
    scores, k, valid = case
    got = top_k_items(scores, k, valid=valid)
    assert got.shape == (scores.shape[0], k)
    np.testing.assert_array_equal(got, reference_top_k(scores, k, valid))
    # Same answer from the float64 (partition) path: float32 values are exact in float64.
    np.testing.assert_array_equal(top_k_items(scores.astype(np.float64), k, valid=valid), got)
    # Never a NaN or masked item; no repeats.
    for u, row in enumerate(got):
        items = row[row >= 0]
        assert len(set(items.tolist())) == items.size
        assert not np.isnan(scores[u, items]).any()
        if valid is not None:
            assert valid[u, items].all()
