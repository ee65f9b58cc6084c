"""Reference rankers scored by the same evaluator as the models.

``random``
    Uniform random scores (seeded): the floor.
``popularity``
    Each video's positive rate in training, smoothed toward the global rate with ``m``
    pseudo-views: ``(positives + m * global_rate) / (views + m)``. Non-personalised.
``oracle``
    The simulator's expected watch ratio of every test cell: the ceiling a model could reach
    knowing the generative model (only when the source is the simulator).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from reco.data.labels import labelled_ratio
from reco.schema import Columns


def random_scores(n_users: int, n_items: int, seed: int) -> np.ndarray:
    """Seeded uniform scores of shape (n_users, n_items), float32."""
    return np.random.default_rng(seed).random((n_users, n_items), dtype=np.float32)


def popularity_item_scores(train: pl.DataFrame, items: np.ndarray, threshold: float, smoothing: float) -> np.ndarray:
    """Smoothed positive rate of each of ``items`` in ``train`` (global rate for unseen items)."""
    positive = (labelled_ratio(train) > threshold).cast(pl.Float64)
    global_rate = float(train.select(positive.mean()).item())
    per_item = train.group_by(Columns.item).agg(positive.sum().alias("pos"), pl.len().alias("views"))
    scored = (
        pl.DataFrame({Columns.item: pl.Series(items, dtype=pl.Int32)})
        .join(per_item, on=Columns.item, how="left", maintain_order="left")
        .select(
            ((pl.col("pos").fill_null(0) + smoothing * global_rate) / (pl.col("views").fill_null(0) + smoothing)).alias(
                Columns.score
            )
        )
    )
    return scored[Columns.score].to_numpy().astype(np.float32)


def grid_scores(
    pairs: pl.DataFrame, users: np.ndarray, items: np.ndarray, column: str, fill: float = np.nan
) -> np.ndarray:
    """Scatter a (user, video, ``column``) frame into a dense (users x items) float32 matrix."""
    matrix = np.full((len(users), len(items)), fill, dtype=np.float32)
    rows = np.searchsorted(users, pairs[Columns.user].to_numpy())
    cols = np.searchsorted(items, pairs[Columns.item].to_numpy())
    inside = (rows < len(users)) & (cols < len(items))
    inside[inside] &= (users[rows[inside]] == pairs[Columns.user].to_numpy()[inside]) & (
        items[cols[inside]] == pairs[Columns.item].to_numpy()[inside]
    )
    matrix[rows[inside], cols[inside]] = pairs[column].to_numpy()[inside]
    return matrix
