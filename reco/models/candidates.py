"""Candidate generation: each user's top-N of a block's videos, from ALS and, by quota, other sources.

:func:`block_candidates` gives every user of an evaluation block ``candidates.n`` of the block's videos
they have not watched, labelled with the block's cells, one user partition at a time: ALS's top list (a
popularity list for users ALS does not know), merged by quota with the sources of
:mod:`reco.models.candidate_sources`; :func:`recommend_candidates` wraps implicit's batched ``recommend``
and makes its output deterministic. See docs/design/models.md.

Examples
--------
>>> from reco.models.als import AlsModel, IdMap
>>> users_f = np.array([[1, 0.25], [0.25, 1]], dtype=np.float32)
>>> model = AlsModel(users_f, np.array([[1, 0], [0.5, 0], [0, 1]], dtype=np.float32),
...                  IdMap.from_values(np.array([1, 2])), IdMap.from_values(np.array([10, 11, 12])), [])
>>> seen = scipy.sparse.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32))
>>> frame, stats = recommend_candidates(model, seen, np.array([1, 2, 3]), n=2, fallback_items=np.array([12, 10]))
>>> frame.rows()
[(1, 11, 0.5, 1, 'als'), (1, 12, 0.25, 2, 'als'), (2, 12, 1.0, 1, 'als'), (2, 10, 0.25, 2, 'als'), (3, 12, nan, 1, 'popularity'), (3, 10, nan, 2, 'popularity')]
>>> stats
{'users': 3, 'users_unknown_to_als': 1, 'n': 2, 'rows': 6}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl
import scipy.sparse

from reco.compute import map_user_partitions
from reco.models.als import AlsModel, build_confidence_matrix
from reco.models.candidate_sources import (
    RANK_COLUMN,
    SCORE_COLUMN,
    SOURCE_COLUMN,
    SOURCES,
    SourceInputs,
    SourceMix,
    merge_sources,
    source_inputs,
    source_lists,
)
from reco.partitions import FrameRows, UserRowIndex
from reco.progress import report
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

SOURCE_DTYPE: Final = pl.Enum(["als", "popularity"])
CANDIDATE_SCHEMA: Final = pl.Schema(
    {
        Columns.user: pl.Int32,
        Columns.item: pl.Int32,
        SCORE_COLUMN: pl.Float32,
        RANK_COLUMN: pl.Int16,
        SOURCE_COLUMN: SOURCE_DTYPE,
    }
)
MAX_N: Final = int(np.iinfo(np.int16).max)  # als_rank is int16

_FILTERED_SCORE64: Final = float(np.finfo(np.float64).min)  # implicit's mark for a filtered item (float64 model)


def _check_user_items(model: AlsModel, user_items: scipy.sparse.csr_matrix) -> None:
    expected = (len(model.user_ids), len(model.item_ids))
    if not isinstance(user_items, scipy.sparse.csr_matrix | scipy.sparse.csr_array):
        raise TypeError(f"user_items must be a users x items scipy.sparse CSR matrix, got {type(user_items).__name__}")
    if user_items.shape != expected:
        hint = (
            " (it looks like items x users: pass the users x items matrix, i.e. transpose it)"
            if user_items.shape == expected[::-1]
            else ""
        )
        raise ValueError(
            f"user_items has shape {user_items.shape} but the model has {expected[0]} users x {expected[1]} items"
            f"{hint}; pass the training matrix whose rows follow model.user_ids"
        )


def _frame(users: np.ndarray, items: np.ndarray, scores: np.ndarray, ranks: np.ndarray, source: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            Columns.user: pl.Series(users, dtype=pl.Int32),
            Columns.item: pl.Series(items, dtype=pl.Int32),
            SCORE_COLUMN: pl.Series(scores, dtype=pl.Float32),
            RANK_COLUMN: pl.Series(ranks, dtype=pl.Int16),
            SOURCE_COLUMN: pl.Series([source] * len(users), dtype=SOURCE_DTYPE),
        },
        schema=CANDIDATE_SCHEMA,
    )


def _ranks_within_users(sorted_users: np.ndarray) -> np.ndarray:
    """1-based position of each row within its run of equal users (input sorted by user)."""
    if sorted_users.size == 0:
        return np.zeros(0, dtype=np.int16)
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, sorted_users.size]))
    return (np.arange(sorted_users.size) - run_start + 1).astype(np.int16)


def _als_candidates(
    model: AlsModel,
    user_items: scipy.sparse.csr_matrix,
    users: np.ndarray,
    rows: np.ndarray,
    catalogue_idx: np.ndarray,
    n: int,
    filter_seen: bool,
    num_threads: int,
) -> pl.DataFrame:
    """Top-n candidates of known users (model rows ``rows``) over model item positions ``catalogue_idx``."""
    import implicit.cpu.als
    from threadpoolctl import threadpool_limits

    seen = user_items[rows]
    seen.eliminate_zeros()  # filter_seen removes the nonzeros (structure) of the training matrix
    seen.data = np.ones_like(seen.data, dtype=np.float32)
    whole_catalogue = catalogue_idx.size == len(model.item_ids)
    n_eff = min(n, int(catalogue_idx.size))
    with threadpool_limits(limits=1, user_api="blas"):
        # float64 scores of the grid factors are exact (reco.models.als): the same candidates on every CPU
        recommender = implicit.cpu.als.AlternatingLeastSquares(
            factors=model.factors, dtype=np.float64, num_threads=num_threads
        )
        recommender.user_factors = model.user_factors.astype(np.float64)
        recommender.item_factors = model.item_factors.astype(np.float64)
        ids, scores = recommender.recommend(
            rows,
            seen,
            N=n_eff,
            filter_already_liked_items=filter_seen,
            items=None if whole_catalogue else catalogue_idx,
        )
    ids = np.asarray(ids).reshape(rows.size, -1)
    scores64 = np.asarray(scores, dtype=np.float64).reshape(rows.size, -1)
    keep = scores64 > _FILTERED_SCORE64
    scores = np.where(keep, scores64, 0.0).astype(np.float32)  # filtered marks would overflow float32
    flat_users = np.repeat(users, ids.shape[1])[keep.ravel()]
    flat_items = model.item_ids.ids[ids[keep]]
    flat_scores = scores[keep]
    order = np.lexsort((flat_items, -flat_scores, flat_users))
    flat_users, flat_items, flat_scores = flat_users[order], flat_items[order], flat_scores[order]
    return _frame(flat_users, flat_items, flat_scores, _ranks_within_users(flat_users), "als")


def _fallback_candidates(users: np.ndarray, fallback: np.ndarray, n: int) -> pl.DataFrame:
    items = fallback[:n]
    return _frame(
        np.repeat(users, items.size),
        np.tile(items, users.size),
        np.full(users.size * items.size, np.nan, dtype=np.float32),
        np.tile(np.arange(1, items.size + 1, dtype=np.int16), users.size),
        "popularity",
    )


def recommend_candidates(
    model: AlsModel,
    user_items: scipy.sparse.csr_matrix,
    users: np.ndarray,
    n: int,
    catalogue: np.ndarray | None = None,
    filter_seen: bool = True,
    fallback_items: np.ndarray | None = None,
    *,
    num_threads: int = 2,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Up to ``n`` candidates per user: ALS top-n, or a popularity list for users unknown to ALS.

    Parameters
    ----------
    model
        Fitted ALS factors.
    user_items
        Users x items CSR training matrix, rows aligned with ``model.user_ids``; its nonzeros are
        the pairs removed when ``filter_seen``.
    users
        External user ids to serve (duplicates are served once).
    n
        Candidates per user (1..32767). Fewer come back when the catalogue minus the user's seen
        items is smaller.
    catalogue
        External item ids allowed; ``None`` = every model item. Catalogue items unknown to the
        model cannot be ALS candidates (they can still come from the fallback list).
    filter_seen
        Remove each user's training pairs from their ALS candidates.
    fallback_items
        Popularity order of external item ids for users unknown to ALS, restricted to the
        catalogue (to the model's items when ``catalogue`` is None); duplicates keep their first
        position. ``None``: unknown users get no rows (they are still counted).
    num_threads
        Threads of implicit's top-k (results do not depend on it).

    Returns
    -------
    frame
        ``user_id`` i32, ``video_id`` i32, ``als_score`` f32 (NaN for fallback rows), ``als_rank``
        i16 (1-based; ties broken by item id), ``source`` enum {"als", "popularity"}; sorted by
        (user_id, als_rank).
    stats
        ``users`` served, ``users_unknown_to_als``, ``n`` and ``rows``.
    """
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be in [1, {MAX_N}], got {n}")
    _check_user_items(model, user_items)
    users = np.unique(np.asarray(users)).astype(np.int32)
    user_rows = model.user_ids.index_of(users)
    known = user_rows >= 0

    if catalogue is None:
        catalogue_ext = model.item_ids.ids
        catalogue_idx = np.arange(len(model.item_ids), dtype=np.int32)
    else:
        catalogue_ext = np.unique(np.asarray(catalogue)).astype(np.int32)
        catalogue_idx = model.item_ids.index_of(catalogue_ext)
        catalogue_idx = catalogue_idx[catalogue_idx >= 0]  # increasing, as both arrays are sorted

    parts = [pl.DataFrame(schema=CANDIDATE_SCHEMA)]
    if known.any() and catalogue_idx.size:
        parts.append(
            _als_candidates(
                model, user_items, users[known], user_rows[known], catalogue_idx, n, filter_seen, num_threads
            )
        )
    if fallback_items is not None and not known.all():
        fallback = np.asarray(fallback_items).astype(np.int32)
        fallback = fallback[np.isin(fallback, catalogue_ext)]
        _, first = np.unique(fallback, return_index=True)
        parts.append(_fallback_candidates(users[~known], fallback[np.sort(first)], n))
    frame = pl.concat(parts).sort([Columns.user, RANK_COLUMN])
    stats = {
        "users": int(users.size),
        "users_unknown_to_als": int((~known).sum()),
        "n": int(n),
        "rows": int(frame.height),
    }
    return frame, stats


def _recall_counts(candidates: pl.DataFrame, positives: pl.DataFrame) -> tuple[int, int]:
    """(positive pairs found among the candidates, distinct positive pairs)."""
    keys = [Columns.user, Columns.item]
    cast = [pl.col(c).cast(pl.Int64) for c in keys]
    pos = positives.lazy().select(cast).unique()
    total = pos.select(pl.len()).collect().item()
    found = pos.join(candidates.lazy().select(cast).unique(), on=keys, how="semi").select(pl.len()).collect().item()
    return int(found), int(total)


def candidate_recall(candidates: pl.DataFrame, positives: pl.DataFrame) -> float:
    """Share of positive (user, item) pairs found among the candidates, micro-averaged over pairs.

    Every distinct positive pair counts once, whichever user it belongs to (users with many
    positives weigh more than in a per-user average). Users without candidates count as misses.

    Raises
    ------
    ValueError
        ``positives`` holds no pair (recall is undefined).

    Examples
    --------
    >>> cand = pl.DataFrame({"user_id": [1, 1, 2], "video_id": [10, 11, 10]})
    >>> pos = pl.DataFrame({"user_id": [1, 2, 2, 3], "video_id": [11, 10, 12, 10]})
    >>> candidate_recall(cand, pos)
    0.5
    """
    found, total = _recall_counts(candidates, positives)
    if total == 0:
        raise ValueError("no positive pairs: candidate recall is undefined")
    return float(found) / float(total)


def popularity_fallback(train: pl.DataFrame | pl.LazyFrame, catalogue: np.ndarray) -> np.ndarray:
    """Catalogue videos by training views (most first, ties by id), then the never-viewed ones by id.

    ``train`` may be a lazy scan: the counts are a streaming group-by (one row per video in memory).

    Examples
    --------
    >>> train = pl.DataFrame({"video_id": [5, 7, 7, 9]})
    >>> popularity_fallback(train, np.array([3, 5, 7])).tolist()
    [7, 5, 3]
    """
    catalogue = np.asarray(catalogue)
    by_views = (
        train.lazy()
        .select(pl.col(Columns.item))
        .join(pl.LazyFrame({Columns.item: pl.Series(catalogue).cast(train.collect_schema()[Columns.item])}), on=Columns.item, how="semi")
        .group_by(Columns.item)
        .len()
        .sort(["len", Columns.item], descending=[True, False])
        .collect(engine="streaming")
    )
    viewed = by_views[Columns.item].to_numpy()
    return np.concatenate([viewed, np.setdiff1d(catalogue, viewed)]).astype(np.int32)


# --- a block, one user partition at a time ---------------------------------------------------------

_TRAIN_COLUMNS = (Columns.user, Columns.item, Columns.watch_ratio)
_LABEL_RATIO_COLUMNS = (Columns.label_ratio,)
_CARRIED = (Columns.label, Columns.relevance, Columns.watch_ratio, Columns.date)


def candidate_partition(
    users: np.ndarray,
    *,
    train: UserRowIndex,
    block: UserRowIndex,
    model: AlsModel,
    catalogue: np.ndarray,
    fallback: np.ndarray,
    n: int,
    num_threads: int,
    sources: SourceInputs | None = None,
    quotas: Mapping[str, int] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Candidates of one user partition of a block, with the block's labels (a Dask task, or in-process).

    The seen matrix holds only the partition's training views (every watched pair); ALS's
    ``recommend`` ranks each user on their own, and so do the other sources, so a user's list
    does not depend on the partition. Without ``sources`` only ALS's list is made.

    Returns
    -------
    frame, counts
        The labelled candidate rows (by user, then rank) and ``{"users", "users_unknown_to_als",
        "rows", "positives", "positives_found", "sources": {name: {"found", "listed"}}}``: each
        source's positives found in its own top ``n`` and its pairs in the merged list.
    """
    quotas = dict(quotas) if quotas is not None else {"als": n}
    columns = [*_TRAIN_COLUMNS, *(c for c in _LABEL_RATIO_COLUMNS if sources is not None and c in train.schema)]
    views = train.scan(users, columns).collect()
    # Structure only (every watched pair), so that filtering removes everything the user has seen.
    seen = build_confidence_matrix(
        views.select(_TRAIN_COLUMNS), model.user_ids, model.item_ids, "binary", threshold=-np.inf, alpha=0.0
    )
    als, stats = recommend_candidates(
        model, seen, users, n, catalogue=catalogue, filter_seen=True, fallback_items=fallback, num_threads=num_threads
    )
    lists = {"als": als}
    if sources is not None:
        lists |= source_lists(np.unique(np.asarray(users)).astype(np.int32), views, catalogue, sources, n)
    candidates = merge_sources(lists, quotas)
    carried = [c for c in _CARRIED if c in block.schema]
    cells = block.scan(users, [Columns.user, Columns.item, *carried]).collect()
    labelled = candidates.join(cells, on=[Columns.user, Columns.item], how="left", maintain_order="left")
    positives = cells.filter(pl.col(Columns.label))
    found, total = _recall_counts(candidates, positives)
    keys = [Columns.user, Columns.item]
    per_source = {
        name: {"found": _recall_counts(rows, positives)[0], "listed": rows.join(candidates, on=keys, how="semi").height}
        for name, rows in lists.items()
    }
    counts = {key: int(stats[key]) for key in ("users", "users_unknown_to_als")}
    counts |= {"rows": candidates.height, "positives": total, "positives_found": found}
    return labelled, {**counts, "sources": per_source}


def block_candidates(
    model: AlsModel,
    train: pl.DataFrame | UserRowIndex,
    block: pl.DataFrame | UserRowIndex,
    n: int,
    *,
    num_threads: int = 2,
    client: Client | None = None,
    n_partitions: int = 1,
    fallback: np.ndarray | None = None,
    mix: SourceMix | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Candidates for every user of an evaluation block, over the block's videos, with the block's labels.

    Each user gets ``n`` of the block's videos they have not watched in ``train``: ALS's top
    ``n`` (a popularity list if ALS does not know them), or, with a :class:`SourceMix`, ALS's
    best videos merged with the other sources' quotas (:func:`merge_sources`). Candidate rows
    carry the block cell's ``label``, ``relevance``, ``watch_ratio`` and view ``date`` where the
    cell was observed (null otherwise), so the features stage can date them and the metrics can
    score them.

    The block's users are served one user partition at a time (:func:`candidate_partition`, Dask
    tasks with a ``client``), each reading only its users' training views; the popularity lists
    are counted once. The result is the same for any partitioning.

    Parameters
    ----------
    model
        The ALS model (broadcast once to the workers).
    train, block
        Training views and the block's cells: frames, or :class:`reco.partitions.UserRowIndex` of
        their files (read one partition at a time).
    n
        Candidates per user.
    num_threads
        Threads of implicit's top-k (the result does not depend on them).
    client, n_partitions
        Where the partitions run (``None``: in this process) and how many there are.
    fallback
        :func:`popularity_fallback` of ``train`` over the block's videos, when the caller has it.
    mix
        The sources and their quotas; ``None``: ALS alone, and no other source is scored.

    Returns
    -------
    frame, stats
        The candidate rows and ``{"n", "recall_at_<n>" (of the merged list), "users",
        "catalogue_items", ..., "sources": {name: {"quota", "recall_at_<n>" (of the source's own
        top n), "in_merged_list" (pairs of that list in the merged list)}}}``.
    """
    train_rows = train if isinstance(train, UserRowIndex) else FrameRows(train)
    block_rows = block if isinstance(block, UserRowIndex) else FrameRows(block)
    users = block_rows.users.astype(np.int32)
    catalogue = _block_catalogue(block)
    quotas = mix.quotas(n) if mix is not None else {"als": n}
    if fallback is None:
        report("popularity fallback")
        fallback = popularity_fallback(_lazy(train), catalogue)
    sources = source_inputs(_lazy(train), catalogue, mix) if mix is not None else None
    parts = map_user_partitions(
        client,
        candidate_partition,
        users,
        n_partitions,
        broadcast={"train": train_rows, "block": block_rows, "model": model, "fallback": fallback, "sources": sources},
        catalogue=catalogue,
        n=n,
        num_threads=num_threads,
        quotas=quotas,
        progress="user partition",
    )
    frames = [frame for frame, _ in parts] or [pl.DataFrame(schema=CANDIDATE_SCHEMA)]
    labelled = pl.concat(frames, how="vertical", rechunk=True)
    counts = {key: sum(part[key] for _, part in parts) for key in ("users", "users_unknown_to_als", "rows")}
    positives = sum(part["positives"] for _, part in parts)
    if positives == 0:
        raise ValueError("no positive pairs: candidate recall is undefined")
    recall = sum(part["positives_found"] for _, part in parts) / positives
    per_source = {
        name: {
            "quota": int(quotas.get(name, 0)),
            f"recall_at_{n}": round(sum(part["sources"][name]["found"] for _, part in parts) / positives, 6),
            "in_merged_list": int(sum(part["sources"][name]["listed"] for _, part in parts)),
        }
        for name in SOURCES
        if all(name in part["sources"] for _, part in parts)
    }
    summary = {
        "n": int(n),
        f"recall_at_{n}": round(recall, 6),
        "block_users": len(users),
        "block_catalogue_items": len(catalogue),
        "catalogue_items_unknown_to_als": int(np.sum(model.item_ids.index_of(catalogue) < 0)),
        "users": counts["users"],
        "users_unknown_to_als": counts["users_unknown_to_als"],
        "rows": counts["rows"],
        "sources": per_source,
    }
    return labelled, summary


def _lazy(rows: pl.DataFrame | UserRowIndex) -> pl.LazyFrame:
    return rows.lazy() if isinstance(rows, pl.DataFrame) else pl.scan_parquet(rows.path)


def _block_catalogue(block: pl.DataFrame | UserRowIndex) -> np.ndarray:
    """The block's distinct videos, sorted (a streaming pass over a file)."""
    items = _lazy(block).select(pl.col(Columns.item).unique()).collect(engine="streaming")
    return np.unique(items[Columns.item].to_numpy()).astype(np.int32)


__all__ = [
    "CANDIDATE_SCHEMA",
    "block_candidates",
    "candidate_partition",
    "candidate_recall",
    "popularity_fallback",
    "recommend_candidates",
]
