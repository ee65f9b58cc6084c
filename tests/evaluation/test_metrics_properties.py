"""Property tests of ``reco.evaluation.metrics`` against a slow pure-Python reference written here.

Properties: every metric lies in [0, 1]; a perfect ranking scores 1 (recall and hit rate once
K >= the user's positives, NDCG and MAP at any K); results do not depend on the order of the
users; the vectorised code agrees with a per-user loop over the written definitions, and with
itself for dense and sparse relevance.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from reco.evaluation.metrics import (
    METRIC_NAMES,
    _top_k_partition,
    _top_k_stable_sort,
    metric_key,
    ranking_metrics,
    top_k_items,
)

SETTINGS = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------------------------
# The reference: one user at a time, straight from the definitions in the module docstring.
# --------------------------------------------------------------------------------------------


def slow_user_metrics(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """precision, recall, ndcg, map, hit_rate of one user (|relevant| >= 1); -1 is an empty slot."""
    rel = [1 if item in relevant else 0 for item in ranked[:k]]
    rel += [0] * (k - len(rel))
    hits = sum(rel)
    dcg = 0.0
    for i, r in enumerate(rel, start=1):
        dcg += r / math.log2(i + 1)
    idcg = 0.0
    for i in range(1, min(k, len(relevant)) + 1):
        idcg += 1 / math.log2(i + 1)
    ap = 0.0
    for i in range(1, k + 1):
        if rel[i - 1]:
            ap += sum(rel[:i]) / i
    return {
        "precision": hits / k,
        "recall": hits / len(relevant),
        "ndcg": dcg / idcg,
        "map": ap / min(k, len(relevant)),
        "hit_rate": 1.0 if hits else 0.0,
    }


def slow_summary(recommended: np.ndarray, relevant: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Means over users with >= 1 relevant item, plus coverage over all users."""
    sums: dict[str, float] = {}
    evaluated = 0
    for u in range(recommended.shape[0]):
        positives = {int(j) for j in np.flatnonzero(relevant[u])}
        if not positives:
            continue
        evaluated += 1
        for k in ks:
            for name, value in slow_user_metrics([int(x) for x in recommended[u]], positives, k).items():
                sums[metric_key(name, k)] = sums.get(metric_key(name, k), 0.0) + value
    summary = {key: total / evaluated for key, total in sums.items()}
    n_items = relevant.shape[1]
    for k in ks:
        shown = {int(x) for row in recommended for x in row[:k] if x >= 0}
        summary[metric_key("coverage", k)] = len(shown) / n_items
    return summary


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(recommended, relevant, ks): lists without repeats, some padded with -1; >= 1 positive."""
    n_users = draw(st.integers(1, 7))
    n_items = draw(st.integers(1, 25))
    max_k = draw(st.integers(1, n_items + 3))
    relevant = np.array(
        draw(st.lists(st.lists(st.booleans(), min_size=n_items, max_size=n_items), min_size=n_users, max_size=n_users))
    )
    relevant[draw(st.integers(0, n_users - 1)), draw(st.integers(0, n_items - 1))] = True
    rows = []
    for _ in range(n_users):
        order = draw(st.permutations(list(range(n_items))))
        length = draw(st.integers(0, min(max_k, n_items)))
        rows.append(list(order[:length]) + [-1] * (max_k - length))
    ks = sorted(set(draw(st.lists(st.integers(1, max_k), min_size=1, max_size=4))))
    return np.array(rows, dtype=np.int32).reshape(n_users, max_k), relevant, ks


def _all_values(result: object) -> list[float]:
    values = list(result.summary.values())  # type: ignore[attr-defined]
    for array in result.per_user.values():  # type: ignore[attr-defined]
        values.extend(array.tolist())
    return values


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(problems())
def test_every_metric_is_between_0_and_1(problem: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    recommended, relevant, ks = problem
    result = ranking_metrics(recommended, relevant, ks, relevant.shape[1])
    assert all(0.0 <= value <= 1.0 for value in _all_values(result))


@SETTINGS
@given(problems())
def test_agrees_with_the_slow_reference(problem: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    recommended, relevant, ks = problem
    result = ranking_metrics(recommended, relevant, ks, relevant.shape[1])
    expected = slow_summary(recommended, relevant, ks)
    assert set(result.summary) == set(expected)
    for key, value in expected.items():
        assert math.isclose(result.summary[key], value, rel_tol=1e-9, abs_tol=1e-12), key


@SETTINGS
@given(problems())
def test_dense_and_sparse_relevance_agree(problem: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    recommended, relevant, ks = problem
    dense = ranking_metrics(recommended, relevant, ks, relevant.shape[1])
    sparse = ranking_metrics(recommended, sp.csr_array(relevant), ks, relevant.shape[1])
    assert dense.summary == sparse.summary


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_invariant_to_user_order(problem: tuple[np.ndarray, np.ndarray, list[int]], rnd: object) -> None:
    recommended, relevant, ks = problem
    order = list(range(recommended.shape[0]))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    before = ranking_metrics(recommended, relevant, ks, relevant.shape[1])
    after = ranking_metrics(recommended[order], relevant[order], ks, relevant.shape[1])
    for key, value in before.summary.items():
        assert math.isclose(after.summary[key], value, rel_tol=1e-12, abs_tol=1e-15), key
    # per-user values move with their users
    evaluated_before = {int(u): i for i, u in enumerate(before.evaluated_users)}
    for i_after, u_after in enumerate(after.evaluated_users):
        i_before = evaluated_before[order[int(u_after)]]
        for key in before.per_user:
            assert after.per_user[key][i_after] == before.per_user[key][i_before], key


@SETTINGS
@given(problems())
def test_a_perfect_ranking_scores_one(problem: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    _, relevant, ks = problem
    n_users, n_items = relevant.shape
    max_k = max(ks)
    # Relevant items first (by index), then the others: the ideal list of every user.
    rows = [sorted(range(n_items), key=lambda j, u=u: (not relevant[u, j], j)) for u in range(n_users)]
    recommended = np.array([(row + [-1] * max_k)[:max_k] for row in rows], dtype=np.int32)
    result = ranking_metrics(recommended, relevant, ks, n_items)
    positives = relevant[result.evaluated_users].sum(axis=1)
    for k in ks:
        assert np.allclose(result.per_user[metric_key("ndcg", k)], 1.0)
        assert np.allclose(result.per_user[metric_key("map", k)], 1.0)
        assert np.all(result.per_user[metric_key("hit_rate", k)] == 1.0)
        recall = result.per_user[metric_key("recall", k)]
        assert np.allclose(recall[positives <= k], 1.0)  # K >= positives: every positive is found
        assert np.allclose(recall[positives > k], k / positives[positives > k])
        precision = result.per_user[metric_key("precision", k)]
        assert np.allclose(precision, np.minimum(positives, k) / k)


@SETTINGS
@given(problems())
def test_recall_and_hit_rate_never_fall_as_k_grows(problem: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    recommended, relevant, _ = problem
    ks = list(range(1, recommended.shape[1] + 1))
    result = ranking_metrics(recommended, relevant, ks, relevant.shape[1])
    for name in ("recall", "hit_rate"):
        curve = np.array([result.per_user[metric_key(name, k)] for k in ks])
        assert np.all(np.diff(curve, axis=0) >= -1e-12), name


SCORE = st.one_of(st.floats(-1e6, 1e6, width=32), st.just(math.nan))


@st.composite
def score_matrices(draw: st.DrawFn) -> tuple[list[list[float]], int]:
    """(scores with ties and NaNs, k), k possibly above the number of items."""
    n_users, n_items = draw(st.integers(1, 6)), draw(st.integers(1, 20))
    rows = draw(st.lists(st.lists(SCORE, min_size=n_items, max_size=n_items), min_size=n_users, max_size=n_users))
    return rows, draw(st.integers(1, n_items + 2))


@SETTINGS
@given(score_matrices())
def test_top_k_matches_a_sort_by_score_then_index(case: tuple[list[list[float]], int]) -> None:
    rows, k = case
    scores = np.array(rows, dtype=np.float32)
    got = top_k_items(scores, k)
    for u, row in enumerate(scores.tolist()):
        valid = [j for j, s in enumerate(row) if not math.isnan(s)]
        best = sorted(valid, key=lambda j: (-row[j], j))[:k]
        assert got[u].tolist() == best + [-1] * (k - len(best))


# float64 values that float32 cannot tell apart, infinities and both zeros: ties of every kind.
SCORE64 = st.sampled_from([0.0, -0.0, 1.0, 1.0 + 1e-12, -1.0, 2.5, math.inf, -math.inf, math.nan, 1e300, -1e-300])


@SETTINGS
@given(st.data())
def test_float64_partition_path_equals_the_full_stable_sort(data: st.DataObject) -> None:
    n_users, n_items = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 25))
    scores = np.array(
        data.draw(st.lists(st.lists(SCORE64, min_size=n_items, max_size=n_items), min_size=n_users, max_size=n_users))
    )
    masked = np.array(data.draw(st.lists(st.booleans(), min_size=n_users * n_items, max_size=n_users * n_items)))
    invalid = np.isnan(scores) | masked.reshape(n_users, n_items)
    k = data.draw(st.integers(1, n_items + 2))
    expected = _top_k_stable_sort(scores, k, invalid)
    np.testing.assert_array_equal(_top_k_partition(scores, k, invalid), expected)


def test_metric_names_are_covered() -> None:
    assert set(METRIC_NAMES) == set(slow_user_metrics([0], {0}, 1))
