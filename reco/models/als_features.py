"""ALS pair features: a pair's ALS score and its rank percentile among the user's unwatched catalogue videos.

Every feature table (the ranker's training rows and each block's candidates) takes the percentile over the
same catalogue, the videos the ranker is served; a pair whose video lies outside it gets the position it
would take if inserted, so the candidate cut means the same thing in training and serving. See
docs/design/models.md (the features) and docs/protocol.md.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse

from reco.models.als import AlsModel, item_scores, score_pairs
from reco.schema import Columns

__all__ = ["als_pair_features", "seen_matrix"]


def seen_matrix(model: AlsModel, history: pl.DataFrame) -> scipy.sparse.csr_matrix:
    """Users x items (model positions) 0/1 CSR of the pairs in ``history``: what each user has watched."""
    pairs = history.select(Columns.user, Columns.item).unique()
    rows = model.user_ids.index_of(pairs[Columns.user].to_numpy())
    cols = model.item_ids.index_of(pairs[Columns.item].to_numpy())
    known = (rows >= 0) & (cols >= 0)
    matrix = scipy.sparse.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=(len(model.user_ids), len(model.item_ids)),
    )
    matrix.sort_indices()
    return matrix


def _order_keys(scores: np.ndarray) -> np.ndarray:
    """Order-preserving uint64 keys of float32 scores (``-0.0`` as ``+0.0``; NaN not allowed)."""
    bits = (np.asarray(scores, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)


def als_pair_features(
    model: AlsModel,
    pairs: pl.DataFrame,
    catalogue: np.ndarray,
    seen: scipy.sparse.csr_matrix | None = None,
    chunk_users: int = 512,
) -> pl.DataFrame:
    """ALS score of each pair and its rank percentile among the user's unwatched catalogue videos.

    ``als_rank_pct`` = (1 + number of unwatched catalogue videos scored higher) / length of that
    list with the pair's video in it, so 0 is the top. ``seen`` (:func:`seen_matrix` of the
    history) marks the watched videos, which are left out of the list (as are catalogue videos
    unknown to ALS), exactly as the candidates stage leaves them out of its list: a candidate at
    rank r of the block's unwatched videos has ``als_rank_pct = r / n_unwatched``. A pair whose
    video is not in the list (outside the catalogue, or watched) gets the place it would take if
    inserted: ``(1 + higher) / (n_unwatched + 1)``. Unknown users/videos give null.

    Each user's ranks depend on that user's scores only (integer sort keys, not float offsets),
    so the result is the same whichever users share a chunk or a partition.

    Examples
    --------
    >>> from reco.models.als import IdMap
    >>> m = AlsModel(np.ones((1, 1), np.float32), np.array([[3.0], [2.0], [1.0]], np.float32),
    ...              IdMap.from_values(np.array([5])), IdMap.from_values(np.array([7, 8, 9])), [])
    >>> pairs = pl.DataFrame({"user_id": [5, 5], "video_id": [8, 9]})
    >>> als_pair_features(m, pairs, np.array([7, 8]))["als_rank_pct"].to_list()  # 9: inserted after 7 and 8
    [1.0, 1.0]
    >>> [round(r, 3) for r in als_pair_features(m, pairs, np.array([7, 8, 9]))["als_rank_pct"]]
    [0.667, 1.0]
    """
    users = pairs[Columns.user].to_numpy()
    items = pairs[Columns.item].to_numpy()
    catalogue = np.unique(np.asarray(catalogue, dtype=np.int32))
    pos_of_item = np.searchsorted(catalogue, items).clip(max=max(len(catalogue) - 1, 0))
    in_catalogue = catalogue[pos_of_item] == items if len(catalogue) else np.zeros(len(items), dtype=bool)
    pos_of_item = np.where(in_catalogue, pos_of_item, -1)
    catalogue_cols = model.item_ids.index_of(catalogue)
    score = np.full(len(pairs), np.nan, dtype=np.float32)
    rank_pct = np.full(len(pairs), np.nan, dtype=np.float32)
    order = np.argsort(users, kind="stable")
    unique_users, starts = np.unique(users[order], return_index=True)
    bounds = np.append(starts, len(order))
    for chunk_start in range(0, len(unique_users), chunk_users):
        chunk = unique_users[chunk_start : chunk_start + chunk_users]
        lo, hi = bounds[chunk_start], bounds[min(chunk_start + chunk_users, len(unique_users))]
        rows = order[lo:hi]
        matrix = item_scores(model, chunk, catalogue)  # (len(chunk), n_catalogue) float32, NaN for unknown
        row_of = np.searchsorted(chunk, users[rows])
        cols = pos_of_item[rows]
        listed = cols >= 0
        # a catalogue video's score is its matrix entry (so it ties with itself); any other, scored alone
        pair_scores = score_pairs(model, users[rows], items[rows])
        pair_scores[listed] = matrix[row_of[listed], cols[listed]]
        ranked = np.isfinite(matrix)  # NaN: unknown to ALS, left out like a watched video
        if seen is not None:  # watched videos leave the ranking (and its denominator)
            model_rows = model.user_ids.index_of(chunk)
            known_rows, known_cols = np.flatnonzero(model_rows >= 0), np.flatnonzero(catalogue_cols >= 0)
            if known_rows.size and known_cols.size:
                watched = seen[model_rows[known_rows]][:, catalogue_cols[known_cols]].toarray() > 0
                block = ranked[np.ix_(known_rows, known_cols)]
                block[watched] = False
                ranked[np.ix_(known_rows, known_cols)] = block
        available = ranked.sum(axis=1)
        in_list = np.zeros(len(rows), dtype=bool)
        in_list[listed] = ranked[row_of[listed], cols[listed]]
        # Rank by sorted rows + one flattened searchsorted: each row's keys carry the row number in
        # their high 32 bits (exact integers), left-out entries sort first within their row.
        n_cat = matrix.shape[1]
        row_bits = np.arange(len(chunk), dtype=np.uint64)[:, None] << np.uint64(32)
        keys = np.where(ranked, _order_keys(np.where(ranked, matrix, 0.0)), np.uint64(0))
        sorted_keys = (np.sort(keys, axis=1) | row_bits).ravel()
        ok = ~np.isnan(pair_scores)
        pair_keys = _order_keys(pair_scores[ok]) | (row_of[ok].astype(np.uint64) << np.uint64(32))
        higher = (row_of[ok] + 1) * n_cat - np.searchsorted(sorted_keys, pair_keys, side="right")
        length = available[row_of[ok]] + ~in_list[ok]  # the list with the pair's video inserted
        pair_ranks = np.full(len(rows), np.nan, dtype=np.float32)
        pair_ranks[ok] = (higher + 1) / np.maximum(length, 1)
        score[rows] = pair_scores
        rank_pct[rows] = pair_ranks
    return pl.DataFrame(
        {
            Columns.user: users,
            Columns.item: items,
            "als_score": pl.Series(score).fill_nan(None),
            "als_rank_pct": pl.Series(rank_pct).fill_nan(None),
        },
        schema_overrides={Columns.user: pl.Int32, Columns.item: pl.Int32},
    )
