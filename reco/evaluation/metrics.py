"""Top-K selection and binary-relevance ranking metrics, vectorised over users.

:func:`top_k_items` picks each user's top K (ties by catalogue index) and :func:`ranking_metrics` computes
precision, recall, hit rate, NDCG, MAP and coverage at every K, per user and then averaged over users with
at least one relevant item; the exact definitions are :data:`DEFINITIONS`, written into ``metrics.json``.
See docs/design/evaluation.md.

Example
-------
>>> import numpy as np
>>> scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.7, 0.2]], dtype=np.float32)
>>> top_k_items(scores, k=2)
array([[1, 2],
       [0, 1]], dtype=int32)
>>> relevant = np.array([[False, False, True], [True, False, False]])
>>> result = ranking_metrics(top_k_items(scores, k=2), relevant, ks=[1, 2], n_catalogue_items=3)
>>> result.summary["hit_rate_at_1"], result.summary["recall_at_2"]
(0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from reco import portable_math

__all__ = [
    "DEFINITIONS",
    "METRIC_NAMES",
    "RankingResult",
    "common_evaluated_users",
    "metric_key",
    "ranking_metrics",
    "ranking_summary",
    "top_k_items",
]

METRIC_NAMES: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate")

DEFINITIONS: dict[str, str] = {
    "precision": "precision@K = |L_u ∩ R_u| / K",
    "recall": "recall@K = |L_u ∩ R_u| / |R_u|",
    "ndcg": (
        "DCG@K = sum_{i=1..K} rel_i / log2(i+1) with binary rel; "
        "IDCG@K = sum_{i=1..min(K,|R_u|)} 1/log2(i+1); NDCG@K = DCG/IDCG"
    ),
    "map": "AP@K = (1/min(K, |R_u|)) * sum_{i=1..K} rel_i * precision@i; MAP@K = mean over users of AP@K",
    "hit_rate": "hit_rate@K = 1 if |L_u ∩ R_u| >= 1 else 0",
    "coverage": "coverage@K = |union over users of top-K items| / n_catalogue_items",
    "averaging": "Metrics are computed per user, then averaged over users with >= 1 relevant item.",
}

# High 32 bits of a composite key that marks an invalid (masked or NaN) item: above every valid score.
_INVALID_HIGH = np.uint64(0xFFFFFFFF)
_LOW_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


_LN2 = 0.6931471805599453  # ln 2 (the float nearest to it)


def metric_key(name: str, k: int) -> str:
    """Return the key used in :class:`RankingResult` for a metric at a cut-off.

    Parameters
    ----------
    name
        One of :data:`METRIC_NAMES` or ``"coverage"``.
    k
        The cut-off K.

    Returns
    -------
    str
        ``f"{name}_at_{k}"``.

    Examples
    --------
    >>> metric_key("ndcg", 10)
    'ndcg_at_10'
    """
    return f"{name}_at_{k}"


@dataclass(frozen=True, eq=False)
class RankingResult:
    """Per-user and averaged ranking metrics.

    Attributes
    ----------
    per_user
        ``"<metric>_at_<K>"`` -> read-only float64 array over the evaluated users, in input order.
    summary
        Mean of every per-user array (same keys), plus ``"coverage_at_<K>"`` for every K.
    evaluated_users
        Indices (into the input rows) of the users with >= 1 relevant item, ascending.
    users_without_positives
        Number of input users with no relevant item (excluded from every mean).

    Examples
    --------
    >>> import numpy as np
    >>> r = ranking_metrics(np.array([[0], [1]]), np.array([[True, False], [False, False]]), [1], 2)
    >>> r.evaluated_users.tolist(), r.users_without_positives, r.summary["coverage_at_1"]
    ([0], 1, 1.0)
    """

    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    evaluated_users: np.ndarray
    users_without_positives: int


def top_k_items(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Return each user's ``k`` best items, best first, with deterministic tie-breaking.

    Items are ordered by descending score, ties by ascending item index (``-0.0`` ties
    ``+0.0``). Items where ``valid`` is False or the score is NaN are never returned; a row
    with fewer than ``k`` valid items is padded with ``-1``.

    Float32 scores (and dtypes that cast to float32 exactly) take the fast path: each score
    is mapped to an order-preserving uint32, packed with the item index into one uint64 key
    (so keys are unique and ties at the partition boundary resolve by index), then
    ``np.partition`` picks the k smallest keys and only that block is sorted. Other dtypes
    (e.g. float64, where a cast to float32 could create ties) find each row's k-th best score
    with ``np.partition`` and sort only the entries at least that good (ties included) by
    (score, index): the same result as a full stable argsort, while sorting only about k entries per row.

    Parameters
    ----------
    scores
        ``(n_users, n_items)`` scores, higher is better.
    k
        Number of items per user, ``k >= 1``.
    valid
        Optional boolean mask broadcastable to ``scores`` (e.g. ``(n_items,)`` for a catalogue
        filter, or ``(n_users, n_items)`` to exclude already-seen items).

    Returns
    -------
    np.ndarray
        ``(n_users, k)`` int32 item indices, ``-1`` for padding.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([[1.0, 3.0, 3.0, np.nan]], dtype=np.float32)
    >>> top_k_items(s, 3)
    array([[1, 2, 0]], dtype=int32)
    >>> top_k_items(s, 4, valid=np.array([True, False, True, True]))
    array([[ 2,  0, -1, -1]], dtype=int32)
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_users, n_items), got shape {scores.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)
            or scores.dtype == np.bool_):
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}")
    n_users, n_items = scores.shape
    if n_items >= 2**31 - 1:
        raise ValueError(f"n_items={n_items} does not fit the int32 output")
    k = int(k)

    invalid = np.isnan(scores) if np.issubdtype(scores.dtype, np.floating) else np.zeros(scores.shape, bool)
    if valid is not None:
        valid_arr = np.asarray(valid)
        if valid_arr.dtype != np.bool_:
            raise ValueError(f"valid must be boolean, got dtype {valid_arr.dtype}")
        invalid |= ~np.broadcast_to(valid_arr, scores.shape)

    if np.can_cast(scores.dtype, np.float32, casting="safe"):
        items = _top_k_composite(scores.astype(np.float32, copy=False), k, invalid)
    else:
        items = _top_k_partition(scores, k, invalid)
    if items.shape[1] < k:  # fewer items than k in the catalogue
        items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
    return items.astype(np.int32, copy=False)


def _descending_keys(scores32: np.ndarray) -> np.ndarray:
    """Map float32 scores to uint32 keys whose ascending order is the descending score order."""
    # + 0.0 turns -0.0 into +0.0 (IEEE round-to-nearest) so the two compare equal, as floats do.
    bits = (scores32 + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    # Standard float -> sortable-integer trick: flip all bits of negatives, set the sign bit of positives.
    ascending = np.where(negative, ~bits, bits | np.uint32(0x80000000))
    return ~ascending


def _top_k_composite(scores32: np.ndarray, k: int, invalid: np.ndarray) -> np.ndarray:
    """Fast path of :func:`top_k_items` for float32 scores (see there)."""
    n_items = scores32.shape[1]
    index = np.arange(n_items, dtype=np.uint64)
    high = _descending_keys(scores32).astype(np.uint64)
    # -inf maps to high = 0xFF800000 < _INVALID_HIGH, so every valid key sorts before every invalid one.
    high[invalid] = _INVALID_HIGH
    keys = (high << _SHIFT) | index
    if k < n_items:
        block = np.partition(keys, k - 1, axis=1)[:, :k]  # keys are unique, so the k smallest are exact
        block.sort(axis=1)
    else:
        block = np.sort(keys, axis=1)
    items = (block & _LOW_MASK).astype(np.int64)
    items[(block >> _SHIFT) == _INVALID_HIGH] = -1
    return items


def _top_k_partition(scores: np.ndarray, k: int, invalid: np.ndarray) -> np.ndarray:
    """Exact path of :func:`top_k_items` for any dtype: partition, then sort the best entries only.

    An entry is kept if its negated score is at most the row's k-th smallest (so every tie of
    the k-th score is kept, and ties resolve by index exactly as in a stable sort); a row with
    fewer than k valid entries keeps everything. Invalid entries are NaN, which numpy sorts last.
    """
    n_users, n_items = scores.shape
    if k >= n_items:
        return _top_k_stable_sort(scores, k, invalid)
    neg = -scores.astype(np.float64)
    neg[invalid] = np.nan
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero((neg <= kth[:, None]) | np.isnan(kth)[:, None])
    order = np.lexsort((cols, neg[rows, cols], rows))  # by row, then score, then index
    rows, cols = rows[order], cols[order]
    row_starts = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_users))[:-1]))
    position = np.arange(rows.size) - row_starts[rows]
    first_k = position < k  # every row holds at least k kept entries
    items = np.empty((n_users, k), dtype=np.int64)
    items[rows[first_k], position[first_k]] = cols[first_k]
    items[np.take_along_axis(invalid, items, axis=1)] = -1
    return items


def _top_k_stable_sort(scores: np.ndarray, k: int, invalid: np.ndarray) -> np.ndarray:
    """Slow exact path of :func:`top_k_items`: stable argsort keeps lower indices first among ties."""
    neg = -scores.astype(np.float64)
    neg[invalid] = np.nan  # NaN sorts last in numpy
    order = np.argsort(neg, axis=1, kind="stable")[:, :k]
    items = order.astype(np.int64)
    items[np.take_along_axis(invalid, order, axis=1)] = -1
    return items


def ranking_metrics(
    recommended: np.ndarray,
    relevant: scipy.sparse.sparray | scipy.sparse.spmatrix | np.ndarray,
    ks: Sequence[int],
    n_catalogue_items: int,
) -> RankingResult:
    """Compute precision, recall, NDCG, MAP and hit rate at each K, plus catalogue coverage.

    See :data:`DEFINITIONS` (docs/design/evaluation.md) for the exact definitions. The
    relevance of the whole ``(n_users, max_k)`` list is gathered once into a boolean matrix;
    every metric at every K is then a column of a cumulative sum along the list.

    Parameters
    ----------
    recommended
        ``(n_users, max_k)`` integer item indices, best first; ``-1`` is padding (a
        non-relevant slot). A row must not repeat an item. ``max_k >= max(ks)``.
    relevant
        ``(n_users, n_items)`` relevance, sparse (any scipy format) or dense; nonzero entries
        are relevant. Row ``u`` belongs to ``recommended[u]``.
    ks
        Cut-offs, each ``1 <= K <= max_k``; duplicates are dropped, output keys are ascending.
    n_catalogue_items
        Denominator of coverage; every recommended index must be below it.

    Returns
    -------
    RankingResult
        Per-user arrays over users with >= 1 relevant item, their means, coverage, and the
        count of excluded users.

    Raises
    ------
    ValueError
        On bad shapes, out-of-range or repeated items, bad ``ks``, or if no user has a
        relevant item (the means would be undefined).

    Examples
    --------
    >>> import numpy as np
    >>> rec = np.array([[2, 0, 1]], dtype=np.int32)
    >>> rel = np.array([[True, True, False]])
    >>> r = ranking_metrics(rec, rel, ks=[2], n_catalogue_items=4)
    >>> r.summary["precision_at_2"], r.summary["map_at_2"], r.summary["coverage_at_2"]
    (0.5, 0.25, 0.5)
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must be a 2-D integer array, got shape {rec.shape} dtype {rec.dtype}")
    n_users, max_k = rec.shape
    ks_sorted = _validate_ks(ks, max_k)
    if isinstance(n_catalogue_items, bool) or not isinstance(n_catalogue_items, (int, np.integer)) \
            or n_catalogue_items < 1:
        raise ValueError(f"n_catalogue_items must be a positive integer, got {n_catalogue_items!r}")
    if not scipy.sparse.issparse(relevant):
        relevant = np.asarray(relevant)
    if relevant.ndim != 2 or relevant.shape[0] != n_users:
        raise ValueError(f"relevant must have shape ({n_users}, n_items), got {relevant.shape}")
    n_items = relevant.shape[1]
    rec = rec.astype(np.int64, copy=False)
    if rec.size and (rec.min() < -1 or rec.max() >= min(n_items, n_catalogue_items)):
        raise ValueError(
            f"recommended item indices must lie in [-1, {min(n_items, n_catalogue_items)}) "
            f"(relevant has {n_items} columns, n_catalogue_items={n_catalogue_items}); "
            f"got range [{rec.min()}, {rec.max()}]"
        )
    _check_no_repeats(rec)

    hits_all, n_relevant_all = _gather_relevance(rec, relevant)
    evaluated = np.flatnonzero(n_relevant_all > 0)
    if evaluated.size == 0:
        raise ValueError(f"none of the {n_users} users has a relevant item; metrics are undefined")

    k_max = ks_sorted[-1]
    hits = hits_all[evaluated, :k_max]
    n_relevant = n_relevant_all[evaluated]
    positions = np.arange(1, k_max + 1, dtype=np.float64)
    # log2 through portable_math: numpy's log2 kernel rounds differently per CPU (AVX-512, AVX2, ARM)
    discounts = 1.0 / (portable_math.log(positions + 1.0) / _LN2)
    cum_hits = np.cumsum(hits, axis=1, dtype=np.int64)
    cum_dcg = np.cumsum(hits * discounts, axis=1)
    # rel_i * precision@i, summed along the list; divided by min(K, |R_u|) below.
    cum_ap = np.cumsum(hits * (cum_hits / positions), axis=1)
    ideal_dcg = np.cumsum(discounts)

    per_user: dict[str, np.ndarray] = {}
    for k in ks_sorted:  # loop over a handful of cut-offs, not users
        col = k - 1
        n_hits = cum_hits[:, col].astype(np.float64)
        n_ideal = np.minimum(k, n_relevant)
        values = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "ndcg": cum_dcg[:, col] / ideal_dcg[n_ideal - 1],
            "map": cum_ap[:, col] / n_ideal,
            "hit_rate": (n_hits > 0).astype(np.float64),
        }
        for name in METRIC_NAMES:
            per_user[metric_key(name, k)] = values[name]
    for arr in per_user.values():
        arr.setflags(write=False)

    evaluated.setflags(write=False)
    return RankingResult(
        per_user=per_user,
        summary=ranking_summary(per_user, rec, ks_sorted, n_catalogue_items),
        evaluated_users=evaluated,
        users_without_positives=int(n_users - evaluated.size),
    )


def ranking_summary(
    per_user: Mapping[str, np.ndarray], recommended: np.ndarray, ks: Sequence[int], n_catalogue_items: int
) -> dict[str, float]:
    """The summary of :func:`ranking_metrics`: each per-user metric's mean and catalogue coverage@K.

    Also used on per-user arrays computed one user partition at a time and concatenated in user
    order (:mod:`reco.evaluation.pipeline`), so both give the same floats.

    Parameters
    ----------
    per_user
        Metric key to the per-user values of the evaluated users.
    recommended
        ``(n_users, >= max(ks))`` item indices of *every* user's list (-1 = padding).
    ks
        Validated, sorted cut-offs.
    n_catalogue_items
        Catalogue size (the coverage denominator).

    Returns
    -------
    dict[str, float]
        ``<metric>_at_<k>`` means and ``coverage_at_<k>``.

    Examples
    --------
    >>> ranking_summary({"precision_at_1": np.array([1.0, 0.0])}, np.array([[0], [0]]), [1], 2)
    {'precision_at_1': 0.5, 'coverage_at_1': 0.5}
    """
    summary: dict[str, float] = {key: float(arr.mean()) for key, arr in per_user.items()}
    k_max = max(ks)
    first_rank = _first_rank_per_item(np.asarray(recommended)[:, :k_max].astype(np.int64, copy=False), n_catalogue_items)
    for k in ks:
        summary[metric_key("coverage", k)] = float(np.count_nonzero(first_rank < k)) / n_catalogue_items
    return summary


def _validate_ks(ks: Sequence[int], max_k: int) -> list[int]:
    """Return the sorted unique cut-offs, or raise ``ValueError``."""
    ks_list = list(ks)
    if not ks_list:
        raise ValueError("ks must contain at least one cut-off")
    for k in ks_list:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every K must be a positive integer, got {k!r} in {ks_list}")
    out = sorted({int(k) for k in ks_list})
    if out[-1] > max_k:
        raise ValueError(f"recommended has only {max_k} columns but max(ks) = {out[-1]}; need max_k >= max(ks)")
    return out


def _check_no_repeats(rec: np.ndarray) -> None:
    """Raise ``ValueError`` if a row lists the same item twice (it would count a hit twice)."""
    if rec.shape[1] < 2:
        return
    srt = np.sort(rec, axis=1)
    repeated = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"recommended row {row} repeats an item: {rec[row].tolist()}")


def _gather_relevance(
    rec: np.ndarray, relevant: scipy.sparse.sparray | scipy.sparse.spmatrix | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``hits[u, j] = rec[u, j] in R_u`` (False for padding) and ``|R_u|`` per user."""
    n_users = rec.shape[0]
    is_item = rec >= 0
    if scipy.sparse.issparse(relevant):
        csr = scipy.sparse.csr_matrix(relevant)
        if not csr.has_canonical_format or np.any(csr.data == 0):
            csr = csr.copy()
            csr.sum_duplicates()
            csr.eliminate_zeros()  # an explicitly stored False/0 is not relevant
        n_items = csr.shape[1]
        n_relevant = np.diff(csr.indptr).astype(np.int64)
        # Canonical CSR => (row, col) keys are already ascending, so one searchsorted gathers all.
        pos_keys = np.repeat(np.arange(n_users, dtype=np.int64), n_relevant) * n_items + csr.indices
        rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + rec
        if pos_keys.size == 0:
            return np.zeros(rec.shape, dtype=bool), n_relevant
        where = np.minimum(np.searchsorted(pos_keys, rec_keys), pos_keys.size - 1)
        return (pos_keys[where] == rec_keys) & is_item, n_relevant
    dense = np.asarray(relevant)
    if np.issubdtype(dense.dtype, np.floating) and np.isnan(dense).any():
        raise ValueError("relevant contains NaN")
    mask = dense if dense.dtype == np.bool_ else dense != 0
    hits = mask[np.arange(n_users)[:, None], np.where(is_item, rec, 0)] & is_item
    return hits, mask.sum(axis=1).astype(np.int64)


def _first_rank_per_item(rec: np.ndarray, n_catalogue_items: int) -> np.ndarray:
    """0-based best rank at which each catalogue item appears in any list (``rec.shape[1]`` if never)."""
    first = np.full(n_catalogue_items, rec.shape[1], dtype=np.int64)
    cols = np.broadcast_to(np.arange(rec.shape[1]), rec.shape)
    is_item = rec >= 0
    np.minimum.at(first, rec[is_item], cols[is_item])
    return first


def common_evaluated_users(results: Mapping[str, RankingResult], what: str) -> np.ndarray:
    """The evaluated users shared by every model of ``results`` (for per-user comparisons).

    Raises
    ------
    ValueError
        If ``results`` is empty (``what`` names the caller's task) or two models were evaluated on
        different users.
    """
    if not results:
        raise ValueError(f"no model results to {what}")
    names = list(results)
    users = results[names[0]].evaluated_users
    for name in names[1:]:
        if not np.array_equal(results[name].evaluated_users, users):
            raise ValueError(f"models {names[0]!r} and {name!r} were evaluated on different users")
    return users
