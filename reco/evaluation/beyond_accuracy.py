"""Beyond-accuracy metrics of top-K lists: coverage, concentration, popularity bias, novelty, diversity.

Computed from the recommended lists alone (no relevance), over every evaluated user's list at every
cut-off K: ``coverage``, ``gini``, ``popularity_percentile``, ``novelty`` and intra-list diversity
``ild``, defined in :data:`DEFINITIONS`. See docs/design/evaluation.md.

Example
-------
>>> import numpy as np
>>> gini(np.array([5, 5, 5, 5]))
0.0
>>> gini(np.array([0, 0, 0, 8]))
0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl

from reco import portable_math
from reco.evaluation.metrics import RankingResult, metric_key
from reco.schema import N_CATEGORY_TAGS, Columns

__all__ = [
    "BEYOND_ACCURACY_NAMES",
    "DEFINITIONS",
    "ItemStats",
    "beyond_accuracy_metrics",
    "beyond_accuracy_report",
    "gini",
    "intra_list_diversity",
    "item_stats",
    "popularity_percentiles",
    "self_information",
    "tag_matrix",
]

BEYOND_ACCURACY_NAMES: Final[tuple[str, ...]] = ("coverage", "gini", "popularity_percentile", "novelty", "ild")

DEFINITIONS: Final[dict[str, str]] = {
    "coverage": "coverage@K = |union over users of top-K items| / n_catalogue_items",
    "gini": "Gini coefficient of per-item top-K recommendation counts over the whole test catalogue (0 = equal)",
    "popularity_percentile": (
        "mean over users of the mean mid-rank percentile (0-100) of the listed items' training interaction "
        "counts within the test catalogue"
    ),
    "novelty": (
        "mean over users of the mean self-information -log2(u_i / U) of the listed items; u_i = distinct "
        "training users of item i (at least 1), U = distinct training users"
    ),
    "ild": (
        "intra-list diversity: mean over users (>= 2 listed items) of the mean pairwise 1 - cosine "
        "similarity of the items' multi-hot category-tag vectors"
    ),
}


@dataclass(frozen=True)
class ItemStats:
    """Per-catalogue-item inputs of the beyond-accuracy metrics, aligned with the catalogue order.

    Attributes
    ----------
    interactions
        ``(n_items,)`` int64 training interaction count of each catalogue item.
    users
        ``(n_items,)`` int64 number of distinct training users of each item.
    n_train_users
        Number of distinct users in training (``U`` of the novelty).
    tags
        ``(n_items, n_tags)`` bool multi-hot category tags.
    """

    interactions: np.ndarray
    users: np.ndarray
    n_train_users: int
    tags: np.ndarray


def item_stats(
    train: pl.DataFrame, items: pl.DataFrame, catalogue: np.ndarray, n_tags: int = N_CATEGORY_TAGS
) -> ItemStats:
    """Training popularity and category tags of every catalogue item.

    Parameters
    ----------
    train
        Training interactions with user and video columns (one row per interaction).
    items
        The prepared items table with video and ``tags`` (``list[int]``) columns.
    catalogue
        Sorted video ids of the test catalogue (the column order of the recommended indices).
    n_tags
        Number of category tags (tags are ``0 .. n_tags - 1``).

    Returns
    -------
    ItemStats

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> train = pl.DataFrame({"user_id": [1, 1, 2], "video_id": [10, 10, 11]})
    >>> items = pl.DataFrame({"video_id": [10, 11, 12], "tags": [[0], [1, 2], []]})
    >>> s = item_stats(train, items, np.array([10, 11, 12]), n_tags=3)
    >>> s.interactions.tolist(), s.users.tolist(), s.n_train_users, s.tags.sum(axis=1).tolist()
    ([2, 1, 0], [1, 1, 0], 2, [1, 2, 0])
    """
    catalogue_frame = pl.DataFrame({Columns.item: pl.Series(np.asarray(catalogue), dtype=pl.Int64)})
    # Only the catalogue's rows are aggregated (a block's catalogue is a fraction of the training videos).
    counts = (
        train.lazy()
        .select(pl.col(Columns.user), pl.col(Columns.item).cast(pl.Int64))
        .filter(pl.col(Columns.item).is_in(catalogue_frame[Columns.item].implode()))
        .group_by(Columns.item)
        .agg(pl.len().alias("interactions"), pl.col(Columns.user).n_unique().alias("users"))
        .collect()
    )
    aligned = catalogue_frame.join(counts, on=Columns.item, how="left", maintain_order="left").fill_null(0)
    return ItemStats(
        interactions=aligned["interactions"].to_numpy().astype(np.int64),
        users=aligned["users"].to_numpy().astype(np.int64),
        n_train_users=int(train[Columns.user].n_unique()),
        tags=tag_matrix(items, catalogue, n_tags),
    )


def tag_matrix(items: pl.DataFrame, catalogue: np.ndarray, n_tags: int = N_CATEGORY_TAGS) -> np.ndarray:
    """Multi-hot ``(len(catalogue), n_tags)`` bool matrix of the catalogue's category tags.

    Items missing from ``items`` (or with an empty tag list) get an all-False row.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> items = pl.DataFrame({"video_id": [3, 5], "tags": [[0, 2], [1]]})
    >>> tag_matrix(items, np.array([5, 3, 9]), n_tags=3).astype(int).tolist()
    [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    """
    catalogue = np.asarray(catalogue)
    pairs = (
        items.select(pl.col(Columns.item).cast(pl.Int64), pl.col(Columns.tags))
        .explode(Columns.tags)
        .drop_nulls(Columns.tags)
    )
    video = pairs[Columns.item].to_numpy()
    tag = pairs[Columns.tags].to_numpy().astype(np.int64)
    if tag.size and (tag.min() < 0 or tag.max() >= n_tags):
        raise ValueError(f"category tags must lie in [0, {n_tags}), got range [{tag.min()}, {tag.max()}]")
    order = np.argsort(catalogue, kind="stable")
    pos = np.searchsorted(catalogue[order], video)
    pos = np.minimum(pos, max(len(catalogue) - 1, 0))
    known = (catalogue[order][pos] == video) if len(catalogue) else np.zeros(len(video), bool)
    out = np.zeros((len(catalogue), n_tags), dtype=bool)
    out[order[pos[known]], tag[known]] = True
    return out


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal; ``(n - 1) / n``: all on one).

    ``G = sum_i (2 i - n - 1) x_(i) / (n * sum x)`` with ``x_(i)`` sorted ascending, ``i = 1..n``;
    0 when every count is 0.

    Examples
    --------
    >>> import numpy as np
    >>> gini(np.array([1, 1, 1])), gini(np.array([0, 0, 3])), gini(np.array([0, 1]))
    (0.0, 0.6666666666666666, 0.5)
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    if x[0] < 0:
        raise ValueError("gini needs non-negative counts")
    rank = np.arange(1, n + 1, dtype=np.float64)
    return float(((2.0 * rank - n - 1.0) * x).sum() / (n * total))


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Mid-rank percentile (0-100) of each value within ``popularity``.

    ``100 * (#values below + #values equal / 2) / n`` (the item itself counts among the equal).

    Examples
    --------
    >>> import numpy as np
    >>> popularity_percentiles(np.array([10, 0, 5, 5])).tolist()
    [87.5, 12.5, 50.0, 50.0]
    """
    x = np.asarray(popularity)
    srt = np.sort(x)
    below = np.searchsorted(srt, x, side="left")
    equal = np.searchsorted(srt, x, side="right") - below
    return 100.0 * (below + 0.5 * equal) / max(x.size, 1)


def self_information(users: np.ndarray, n_train_users: int) -> np.ndarray:
    """``-log2(max(u_i, 1) / U)`` per item: the novelty of recommending it.

    Examples
    --------
    >>> import numpy as np
    >>> self_information(np.array([8, 2, 0]), 8).tolist()
    [-0.0, 2.0, 3.0]
    """
    if n_train_users < 1:
        raise ValueError(f"n_train_users must be >= 1, got {n_train_users}")
    share = np.maximum(np.asarray(users, dtype=np.float64), 1.0) / n_train_users
    return -(portable_math.log(share) / 0.6931471805599453)  # log2 the same on every CPU


def _list_means(recommended: np.ndarray, item_values: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Per K: mean over users (with >= 1 item) of the mean ``item_values`` of their top-K items."""
    is_item = recommended >= 0
    values = np.where(is_item, item_values[np.where(is_item, recommended, 0)], 0.0)
    cum = np.cumsum(values, axis=1)
    count = np.cumsum(is_item, axis=1)
    out = {}
    for k in ks:
        n = count[:, k - 1]
        has = n > 0
        out[k] = float((cum[has, k - 1] / n[has]).mean()) if has.any() else float("nan")
    return out


def intra_list_diversity(recommended: np.ndarray, tags: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Mean pairwise ``1 - cosine`` tag dissimilarity within each top-K list, averaged over users.

    Parameters
    ----------
    recommended
        ``(n_users, max_k)`` catalogue indices, ``-1`` for padding.
    tags
        ``(n_items, n_tags)`` multi-hot tag matrix (any numeric or bool dtype).
    ks
        Cut-offs, each ``<= max_k``.

    Returns
    -------
    dict
        ``{K: ILD@K}``; NaN for a K where no user has 2 items (e.g. K = 1).

    Examples
    --------
    >>> import numpy as np
    >>> tags = np.array([[1, 0], [1, 0], [0, 1], [1, 1]])
    >>> {k: round(v, 4) for k, v in intra_list_diversity(np.array([[0, 1, 2]]), tags, [2, 3]).items()}
    {2: 0.0, 3: 0.6667}
    """
    vectors = np.asarray(tags, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 0)
    is_item = recommended >= 0
    listed = unit[np.where(is_item, recommended, 0)] * is_item[..., None]  # (users, K, tags)
    summed = np.cumsum(listed, axis=1)
    sq_norm_of_sum = np.einsum("ukt,ukt->uk", summed, summed)
    sum_of_sq_norms = np.cumsum(np.einsum("ukt,ukt->uk", listed, listed), axis=1)
    count = np.cumsum(is_item, axis=1).astype(np.float64)
    out = {}
    for k in ks:
        m = count[:, k - 1]
        has_pairs = m >= 2
        if not has_pairs.any():
            out[k] = float("nan")
            continue
        similarity = (sq_norm_of_sum[has_pairs, k - 1] - sum_of_sq_norms[has_pairs, k - 1]) / 2.0
        pairs = m[has_pairs] * (m[has_pairs] - 1.0) / 2.0
        out[k] = float((1.0 - similarity / pairs).mean())
    return out


def beyond_accuracy_metrics(recommended: np.ndarray, ks: Sequence[int], stats: ItemStats) -> dict[str, float]:
    """Gini, popularity percentile, novelty and ILD at every K for one model's lists.

    Parameters
    ----------
    recommended
        ``(n_users, max_k)`` catalogue indices, best first, ``-1`` for padding; ``max_k >= max(ks)``.
    ks
        Cut-offs.
    stats
        Per-item inputs aligned with the catalogue indices.

    Returns
    -------
    dict
        ``{"<name>_at_<K>": value}`` for ``gini``, ``popularity_percentile``, ``novelty``, ``ild``
        (ILD is NaN where undefined).

    Examples
    --------
    >>> import numpy as np
    >>> stats = ItemStats(np.array([3, 1]), np.array([2, 1]), 2, np.array([[True], [True]]))
    >>> m = beyond_accuracy_metrics(np.array([[0, 1], [0, 1]]), [2], stats)
    >>> m["gini_at_2"], m["popularity_percentile_at_2"], m["novelty_at_2"], m["ild_at_2"]
    (0.0, 50.0, 0.5, 0.0)
    """
    rec = np.asarray(recommended).astype(np.int64, copy=False)
    ks = sorted({int(k) for k in ks})
    n_items = stats.interactions.size
    if rec.ndim != 2 or rec.shape[1] < ks[-1]:
        raise ValueError(f"recommended must be (n_users, >= {ks[-1]}), got {rec.shape}")
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(f"recommended indices must lie in [-1, {n_items})")
    out: dict[str, float] = {}
    for k in ks:
        top = rec[:, :k]
        counts = np.bincount(top[top >= 0], minlength=n_items)
        out[metric_key("gini", k)] = gini(counts)
    for name, item_values in (
        ("popularity_percentile", popularity_percentiles(stats.interactions)),
        ("novelty", self_information(stats.users, stats.n_train_users)),
    ):
        for k, value in _list_means(rec, item_values, ks).items():
            out[metric_key(name, k)] = value
    for k, value in intra_list_diversity(rec, stats.tags, ks).items():
        out[metric_key("ild", k)] = value
    return out


def beyond_accuracy_report(
    recommended: Mapping[str, np.ndarray],
    results: Mapping[str, RankingResult],
    ks: Sequence[int],
    stats: ItemStats,
    ndigits: int = 6,
) -> dict[str, Any]:
    """Beyond-accuracy metrics of every model, with coverage reused from its :class:`RankingResult`.

    Parameters
    ----------
    recommended
        Model name -> ``(n_users, max_k)`` lists (all test users).
    results
        Model name -> ranking result (its ``coverage_at_K`` is copied).
    ks
        Cut-offs.
    stats
        Per-item inputs.
    ndigits
        Digits kept (stable bytes); an undefined value (ILD@1) is written as ``null``.

    Returns
    -------
    dict
        ``{"definitions": {...}, "models": {model: {"<name>_at_<K>": value}}}``.

    Examples
    --------
    >>> import numpy as np
    >>> from reco.evaluation.metrics import ranking_metrics
    >>> rec = np.array([[0, 1]])
    >>> res = ranking_metrics(rec, np.array([[True, False]]), [1, 2], 2)
    >>> stats = ItemStats(np.array([3, 1]), np.array([2, 1]), 2, np.array([[True], [False]]))
    >>> out = beyond_accuracy_report({"m": rec}, {"m": res}, [1, 2], stats)["models"]["m"]
    >>> out["coverage_at_2"], out["ild_at_1"], out["ild_at_2"]
    (1.0, None, 1.0)
    """
    models: dict[str, dict[str, float | None]] = {}
    for name, rec in recommended.items():
        values: dict[str, float] = beyond_accuracy_metrics(rec, ks, stats)
        for k in ks:
            key = metric_key("coverage", k)
            values[key] = results[name].summary[key]
        models[name] = {
            key: None if not np.isfinite(value) else round(float(value), ndigits) + 0.0
            for key, value in sorted(values.items())
        }
    return {"definitions": dict(DEFINITIONS), "models": models}
