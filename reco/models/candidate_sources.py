"""Candidate sources besides ALS (the popularity baseline, the user's favourite tags) and their merge by quotas.

:func:`source_inputs` counts what the sources read once per block, :func:`source_lists` gives each
user's top ``n`` unwatched videos of each source (scored in chunks of users), and
:func:`merge_sources` fills each user's list from the sources in turn, each adding its best videos
not yet listed, up to its quota (:class:`SourceMix`). :mod:`reco.models.candidates` calls them
partition by partition. See docs/design/models.md.

Examples
--------
>>> SourceMix(popularity=20, tag_popularity=30, threshold=2.0, smoothing=50.0).quotas(200)
{'als': 150, 'popularity': 20, 'tag_popularity': 30}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from reco.data.labels import labelled_ratio
from reco.models.baselines import ViewCounts, popularity_scores
from reco.progress import report
from reco.schema import Columns

SCORE_COLUMN: Final = "als_score"
RANK_COLUMN: Final = "als_rank"  # a source's list: the rank in that list; the merged list: the position in it
SOURCE_COLUMN: Final = "source"
SOURCES: Final = ("als", "popularity", "tag_popularity")  # merge order
SOURCE_RANK_PREFIX: Final = "source_rank_"  # + source name: a merged row's rank in that source's own list
MIXED_SOURCE_DTYPE: Final = pl.Enum(list(SOURCES))

_TAGS: Final = "_tags"
_CHUNK_CELLS: Final = 1 << 21  # users x catalogue cells the sources score at once (bounds the memory)


@dataclass(frozen=True, kw_only=True)
class SourceMix:
    """Which sources fill a block's candidate lists, and what the sources other than ALS read.

    Of the ``n`` places of a user's list, ``popularity`` and ``tag_popularity`` come from those
    sources and ALS fills the rest; every source's own top ``n`` is also scored for the recall
    report, whatever its quota.

    Attributes
    ----------
    popularity, tag_popularity
        The two quotas (``candidates.popularity_quota``, ``candidates.tag_popularity_quota``;
        0: the source is only reported).
    threshold
        A training view is positive when its label ratio exceeds it (``label.threshold``).
    smoothing
        The popularity baseline's pseudo-views (``evaluate.popularity_smoothing``).
    items
        ``video_id`` and ``tags`` (a list of tag ids) of the videos (the prepared items table);
        ``None``: no tags, the tag source is the popularity list.
    """

    popularity: int = 0
    tag_popularity: int = 0
    threshold: float
    smoothing: float
    items: pl.DataFrame | None = None

    def quotas(self, n: int) -> dict[str, int]:
        """Each source's places in a list of ``n``, in merge order.

        Raises
        ------
        ValueError
            A quota is negative, or the other sources' quotas add up to more than ``n``.
        """
        others = {"popularity": int(self.popularity), "tag_popularity": int(self.tag_popularity)}
        if min(others.values()) < 0 or sum(others.values()) > n:
            raise ValueError(f"the source quotas {others} must be >= 0 and add up to at most n = {n}")
        return {"als": n - sum(others.values()), **others}


@dataclass(frozen=True)
class SourceInputs:
    """What the popularity and tag sources read, computed once per block and broadcast to the partitions.

    Attributes
    ----------
    popularity
        The popularity baseline's score of each catalogue video (float64; NaN when undefined).
    popularity_order
        Catalogue positions by that score, best first (ties by video id, undefined last).
    item_tags
        ``video_id`` and ``_tags`` (the video's dense tag indices, sorted) of every tagged video.
    catalogue_tags
        (catalogue, tags) boolean: which dense tags each catalogue video carries.
    threshold
        The positive-view threshold (:attr:`SourceMix.threshold`).
    """

    popularity: np.ndarray
    popularity_order: np.ndarray
    item_tags: pl.DataFrame
    catalogue_tags: np.ndarray
    threshold: float


def popularity_order(scores: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Positions of ``catalogue`` by ``scores``, best first; ties by video id, undefined (NaN) scores last.

    Examples
    --------
    >>> popularity_order(np.array([0.2, np.nan, 0.5, 0.2]), np.array([7, 8, 9, 3])).tolist()
    [2, 3, 0, 1]
    """
    scores = np.asarray(scores, dtype=np.float64)
    missing = np.isnan(scores)
    return np.lexsort((np.asarray(catalogue), -np.where(missing, 0.0, scores), missing))


def _view_counts(train: pl.LazyFrame, threshold: float) -> ViewCounts:
    """Positive and total training views per video (one bucket), by a streaming group-by."""
    table = (
        train.select(
            pl.col(Columns.item).cast(pl.Int32),
            pl.lit(0, dtype=pl.Int64).alias("_bucket"),
            (labelled_ratio(train) > threshold).cast(pl.Float64).alias("_pos"),
        )
        .group_by(Columns.item, "_bucket")
        .agg(pl.col("_pos").sum().alias("pos"), pl.len().cast(pl.Float64).alias("views"))
        .sort(Columns.item)
        .collect(engine="streaming")
    )
    return ViewCounts(table=table, edges_ms=())


def source_inputs(train: pl.DataFrame | pl.LazyFrame, catalogue: np.ndarray, mix: SourceMix) -> SourceInputs:
    """The popularity baseline over ``catalogue`` and the videos' tags, for :func:`source_lists`.

    The popularity is :func:`reco.models.baselines.popularity_scores` of the training views (the
    ``popularity`` baseline's smoothed positive rate), counted once by a streaming group-by;
    ``catalogue`` holds sorted video ids.

    Examples
    --------
    >>> train = pl.DataFrame({"user_id": [1, 1, 2], "video_id": [10, 11, 11], "watch_ratio": [3.0, 1.0, 3.0]})
    >>> items = pl.DataFrame({"video_id": [10, 11, 12], "tags": [[4], [4, 7], []]})
    >>> inputs = source_inputs(train, np.array([10, 11, 12]), SourceMix(threshold=2.0, smoothing=0.0, items=items))
    >>> inputs.popularity.tolist(), inputs.popularity_order.tolist(), inputs.catalogue_tags.tolist()
    ([1.0, 0.5, nan], [0, 1, 2], [[True, False], [True, True], [False, False]])
    """
    report("popularity and tag sources")
    catalogue = np.asarray(catalogue)
    scores = popularity_scores(_view_counts(train.lazy(), mix.threshold), catalogue, mix.smoothing).astype(np.float64)
    items = mix.items
    if items is None:
        items = pl.DataFrame(schema={Columns.item: pl.Int32, Columns.tags: pl.List(pl.Int8)})
    exploded = (
        items.select(pl.col(Columns.item).cast(pl.Int32), pl.col(Columns.tags))
        .explode(Columns.tags)
        .drop_nulls()
        .unique(maintain_order=True)
    )
    tag_ids = np.unique(exploded[Columns.tags].to_numpy())
    dense = exploded.with_columns(
        pl.Series(_TAGS, np.searchsorted(tag_ids, exploded[Columns.tags].to_numpy()), dtype=pl.Int32)
    )
    item_tags = dense.group_by(Columns.item).agg(pl.col(_TAGS).sort()).sort(Columns.item)
    catalogue_tags = np.zeros((len(catalogue), len(tag_ids)), dtype=bool)
    videos = dense[Columns.item].to_numpy()
    position = np.searchsorted(catalogue, videos).clip(max=max(len(catalogue) - 1, 0))
    inside = catalogue[position] == videos if len(catalogue) else np.zeros(len(videos), dtype=bool)
    catalogue_tags[position[inside], dense[_TAGS].to_numpy()[inside]] = True
    return SourceInputs(
        popularity=scores,
        popularity_order=popularity_order(scores, catalogue),
        item_tags=item_tags,
        catalogue_tags=catalogue_tags,
        threshold=float(mix.threshold),
    )


def tag_shares(
    views: pl.DataFrame, users: np.ndarray, item_tags: pl.DataFrame, n_tags: int, threshold: float
) -> np.ndarray:
    """Each user's share of positive training views that carry each tag: (users, tags) float64.

    A view is positive when its label ratio (``label_ratio``, else ``watch_ratio``) exceeds
    ``threshold``; a video with several tags counts for each. A user without positive views
    has shares 0. ``users`` are sorted ids; ``item_tags`` is :attr:`SourceInputs.item_tags`.

    Examples
    --------
    >>> views = pl.DataFrame({"user_id": [1, 1, 1, 2], "video_id": [10, 11, 12, 10],
    ...                       "watch_ratio": [3.0, 3.0, 0.5, 1.0]})
    >>> tags = pl.DataFrame({"video_id": [10, 11, 12], "_tags": [[0], [0, 1], [1]]})
    >>> tag_shares(views, np.array([1, 2]), tags, 2, threshold=2.0).tolist()
    [[1.0, 0.5], [0.0, 0.0]]
    """
    users = np.asarray(users)
    shares = np.zeros((len(users), n_tags), dtype=np.float64)
    positive = views.filter(labelled_ratio(views) > threshold).select(
        pl.col(Columns.user).cast(pl.Int64), pl.col(Columns.item).cast(pl.Int32)
    )
    if positive.is_empty() or n_tags == 0 or len(users) == 0:
        return shares
    per_user = positive.group_by(Columns.user).len()
    per_tag = (
        positive.join(item_tags.select(pl.col(Columns.item).cast(pl.Int32), _TAGS), on=Columns.item, how="inner")
        .explode(_TAGS)
        .group_by(Columns.user, _TAGS)
        .len()
        .join(per_user, on=Columns.user, suffix="_user")
    )
    ids = per_tag[Columns.user].to_numpy()
    rows = np.searchsorted(users, ids).clip(max=len(users) - 1)
    ok = users[rows] == ids
    counts, totals = per_tag["len"].to_numpy()[ok], per_tag["len_user"].to_numpy()[ok]
    shares[rows[ok], per_tag[_TAGS].to_numpy()[ok]] = counts.astype(np.float64) / totals.astype(np.float64)
    return shares


def tag_popularity_order(
    shares: np.ndarray, catalogue_tags: np.ndarray, popularity: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """Each user's catalogue positions by ``affinity x popularity``, best first: (users, catalogue).

    A video's affinity for a user is the largest of the user's :func:`tag_shares` over the video's
    tags (0 without a shared tag); its popularity is the baseline's score (0 when undefined). Ties
    follow the popularity ``order`` (:func:`popularity_order`), so a user without positive views
    gets the popularity list.

    Examples
    --------
    >>> tags = np.array([[True, False], [False, True], [False, True]])  # videos 0, 1, 2
    >>> pop = np.array([0.9, 0.3, 0.6])
    >>> tag_popularity_order(np.array([[0.2, 1.0], [0.0, 0.0]]), tags, pop, np.array([0, 2, 1])).tolist()
    [[2, 1, 0], [0, 2, 1]]
    """
    affinity = np.zeros((shares.shape[0], catalogue_tags.shape[0]), dtype=np.float64)
    for tag in range(catalogue_tags.shape[1]):
        np.maximum(affinity, np.multiply.outer(shares[:, tag], catalogue_tags[:, tag]), out=affinity)
    score = affinity[:, order] * np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0)[order]
    return order[np.argsort(-score, axis=1, kind="stable")]


def top_unseen(order: np.ndarray, seen: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` unseen positions of each user's ``order``: (user rows, positions, 1-based ranks).

    ``order`` is (users, catalogue), or one row for every user; ``seen`` is (users, catalogue)
    boolean. The result is sorted by user row, then rank.

    Examples
    --------
    >>> seen = np.array([[True, False, False], [False, False, False]])
    >>> [a.tolist() for a in top_unseen(np.array([[0, 2, 1]]), seen, 2)]
    [[0, 0, 1, 1], [2, 1, 0, 2], [1, 2, 1, 2]]
    """
    order = np.broadcast_to(order, seen.shape)
    unseen = ~np.take_along_axis(seen, order, axis=1)
    rank = np.cumsum(unseen, axis=1)
    rows, cols = np.nonzero(unseen & (rank <= n))
    return rows, order[rows, cols], rank[rows, cols]


def _list_frame(users: np.ndarray, items: np.ndarray, ranks: np.ndarray, source: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            Columns.user: pl.Series(users, dtype=pl.Int32),
            Columns.item: pl.Series(items, dtype=pl.Int32),
            RANK_COLUMN: pl.Series(ranks, dtype=pl.Int16),
            SOURCE_COLUMN: pl.Series([source] * len(users), dtype=MIXED_SOURCE_DTYPE),
        }
    )


def source_lists(
    users: np.ndarray, views: pl.DataFrame, catalogue: np.ndarray, inputs: SourceInputs, n: int
) -> dict[str, pl.DataFrame]:
    """Each user's top ``n`` unwatched catalogue videos of the ``popularity`` and ``tag_popularity`` sources.

    Users are scored in chunks of at most ``_CHUNK_CELLS`` (user, video) cells; a user's lists
    depend only on their own views, so they are the same in any partition or chunk.

    Parameters
    ----------
    users
        Sorted external user ids.
    views
        Their training views (``user_id``, ``video_id``, the label ratio): every watched pair
        leaves the lists; the positive views define the favourite tags.
    catalogue
        Sorted external video ids (the block's).
    inputs
        :func:`source_inputs` of the same catalogue.
    n
        List length.

    Returns
    -------
    dict
        Source name -> ``user_id``, ``video_id``, ``als_rank`` (the rank in that source's list,
        1-based), ``source``; sorted by user, then rank.

    Examples
    --------
    >>> views = pl.DataFrame({"user_id": [1, 2], "video_id": [12, 10], "watch_ratio": [3.0, 1.0]})
    >>> items = pl.DataFrame({"video_id": [10, 11, 12], "tags": [[0], [1], [1]]})
    >>> mix = SourceMix(threshold=2.0, smoothing=0.0, items=items)
    >>> catalogue = np.array([10, 11, 12])
    >>> train = pl.DataFrame({"video_id": [10, 10, 11, 11], "watch_ratio": [3.0, 3.0, 3.0, 1.0]})
    >>> inputs = source_inputs(train, catalogue, mix)
    >>> lists = source_lists(np.array([1, 2]), views, catalogue, inputs, 2)
    >>> lists["popularity"].rows()
    [(1, 10, 1, 'popularity'), (1, 11, 2, 'popularity'), (2, 11, 1, 'popularity'), (2, 12, 2, 'popularity')]
    >>> lists["tag_popularity"].rows()[:2]  # user 1 liked a video of tag 1: video 11 first
    [(1, 11, 1, 'tag_popularity'), (1, 10, 2, 'tag_popularity')]
    """
    users, catalogue = np.asarray(users), np.asarray(catalogue)
    view_users, view_items = views[Columns.user].to_numpy(), views[Columns.item].to_numpy()
    user_rows = np.searchsorted(users, view_users).clip(max=max(len(users) - 1, 0))
    item_positions = np.searchsorted(catalogue, view_items).clip(max=max(len(catalogue) - 1, 0))
    inside = np.zeros(len(view_users), dtype=bool)
    if len(users) and len(catalogue):
        inside = (users[user_rows] == view_users) & (catalogue[item_positions] == view_items)
    user_rows, item_positions = user_rows[inside], item_positions[inside]
    shares = tag_shares(views, users, inputs.item_tags, inputs.catalogue_tags.shape[1], inputs.threshold)
    found: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {"popularity": [], "tag_popularity": []}
    step = max(1, _CHUNK_CELLS // max(len(catalogue), 1))
    for start in range(0, len(users), step):
        stop = min(start + step, len(users))
        in_chunk = (user_rows >= start) & (user_rows < stop)
        seen = np.zeros((stop - start, len(catalogue)), dtype=bool)
        seen[user_rows[in_chunk] - start, item_positions[in_chunk]] = True
        orders = {
            "popularity": inputs.popularity_order[None, :],
            "tag_popularity": tag_popularity_order(
                shares[start:stop], inputs.catalogue_tags, inputs.popularity, inputs.popularity_order
            ),
        }
        for name, order in orders.items():
            rows, positions, ranks = top_unseen(order, seen, n)
            found[name].append((rows + start, positions, ranks))
    lists = {}
    for name, parts in found.items():
        empty = [np.zeros(0, dtype=np.int64)]
        rows, positions, ranks = (np.concatenate([part[i] for part in parts] or empty) for i in range(3))
        lists[name] = _list_frame(users[rows], catalogue[positions], ranks, name)
    return lists


def merge_sources(lists: Mapping[str, pl.DataFrame], quotas: Mapping[str, int]) -> pl.DataFrame:
    """One candidate list per user: each source in turn adds its best ``quota`` videos not already listed.

    ``lists`` are the sources' own lists (``user_id``, ``video_id``, ``als_rank`` = the rank in
    that list, ``source``; ALS's also ``als_score``), sorted by user, then rank; ``quotas`` gives
    each source's places (:meth:`SourceMix.quotas`). A list that only ALS fills is ALS's list
    itself (same columns, same rows). Otherwise the rows are ordered by source (in
    :data:`SOURCES` order), then by their source's rank; ``als_rank`` becomes the position in the
    merged list, ``source`` the source that placed the row (``popularity`` also for ALS's
    fallback list of users unknown to ALS), ``als_score`` the ALS score where the pair is in
    ALS's list (NaN otherwise), and ``source_rank_<name>`` the pair's rank in each merged
    source's own list (null outside it).

    Examples
    --------
    >>> als = pl.DataFrame({"user_id": [1, 1, 1], "video_id": [5, 6, 7], "als_score": [0.9, 0.8, 0.7],
    ...                     "als_rank": [1, 2, 3], "source": ["als"] * 3})
    >>> pop = pl.DataFrame({"user_id": [1, 1, 1], "video_id": [5, 8, 6], "als_rank": [1, 2, 3],
    ...                     "source": ["popularity"] * 3})
    >>> merged = merge_sources({"als": als, "popularity": pop}, {"als": 1, "popularity": 2})
    >>> merged.select("video_id", "als_rank", "source", "source_rank_als", "source_rank_popularity").rows()
    [(5, 1, 'als', 1, 1), (8, 2, 'popularity', None, 2), (6, 3, 'popularity', 2, 3)]
    >>> merged["als_score"].is_nan().to_list()  # 6 is in ALS's own list (its score kept), 8 is not
    [False, True, False]
    """
    merged = [name for name in SOURCES if quotas.get(name, 0) > 0]
    if merged == ["als"]:
        return lists["als"].filter(pl.col(RANK_COLUMN) <= quotas["als"])
    keys = [Columns.user, Columns.item]
    parts: list[pl.DataFrame] = []
    taken = pl.DataFrame(schema={Columns.user: pl.Int32, Columns.item: pl.Int32})
    for index, name in enumerate(merged):
        rows = lists[name].select(
            pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32), RANK_COLUMN,
            pl.col(SOURCE_COLUMN).cast(pl.String),
        )  # fmt: skip
        rows = rows.join(taken, on=keys, how="anti", maintain_order="left")
        rows = rows.filter(pl.int_range(pl.len()).over(Columns.user) < quotas[name])
        taken = pl.concat([taken, rows.select(keys)])
        parts.append(rows.with_columns(pl.lit(index, dtype=pl.Int8).alias("_source")))
    union = (
        pl.concat(parts)
        .sort(Columns.user, "_source", RANK_COLUMN)
        .with_columns(pl.int_range(1, pl.len() + 1).over(Columns.user).cast(pl.Int16).alias(RANK_COLUMN))
        .drop("_source")
    )
    als = lists["als"]
    scores = als.select(pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32), SCORE_COLUMN)
    union = union.join(scores, on=keys, how="left", maintain_order="left").select(
        *keys,
        pl.col(SCORE_COLUMN).cast(pl.Float32).fill_null(float("nan")),
        RANK_COLUMN,
        pl.col(SOURCE_COLUMN).cast(MIXED_SOURCE_DTYPE),
    )
    for name in merged:
        ranks = lists[name].select(
            pl.col(Columns.user).cast(pl.Int32), pl.col(Columns.item).cast(pl.Int32),
            pl.col(RANK_COLUMN).cast(pl.Int16).alias(SOURCE_RANK_PREFIX + name),
        )  # fmt: skip
        union = union.join(ranks, on=keys, how="left", maintain_order="left")
    return union


__all__ = [
    "MIXED_SOURCE_DTYPE",
    "RANK_COLUMN",
    "SCORE_COLUMN",
    "SOURCES",
    "SOURCE_COLUMN",
    "SOURCE_RANK_PREFIX",
    "SourceInputs",
    "SourceMix",
    "merge_sources",
    "popularity_order",
    "source_inputs",
    "source_lists",
    "tag_popularity_order",
    "tag_shares",
    "top_unseen",
]
