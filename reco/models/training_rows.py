"""The ranker's training rows: the sampled users' candidate-like rows of a training feature table, read lazily.

:func:`ranker_training_table` reads ``data/features/train/table.parquet`` one user partition at a time
(Dask tasks with a client) and keeps only the rows the ranker learns from, so the whole table is never
in memory. See docs/design/models.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from reco.compute import map_user_partitions
from reco.models.features import ROW
from reco.params import ComputeParams
from reco.partitions import UserRowIndex, partition_count
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ranker_training_table", "training_partition", "training_rows"]



def training_partition(
    users: np.ndarray,
    *,
    table: UserRowIndex,
    chosen: np.ndarray,
    candidate_rank_pct: float,
) -> pl.DataFrame:
    """The rows of one user partition of a training table that the ranker can use.

    Keeps the rows of the ``chosen`` (sampled) users that pass the candidate cut of
    :func:`reco.models.ranker.prepare_training_parts` (the ALS rank percentile at most
    ``candidate_rank_pct``, or unknown to ALS); every other row is dropped. The ranker then
    draws its users from the whole table's user list (its ``users`` argument), not from these
    rows.
    """
    return training_rows(table.scan(users, row_index=ROW).collect(), chosen, candidate_rank_pct)


def training_rows(rows: pl.DataFrame, chosen: np.ndarray, candidate_rank_pct: float) -> pl.DataFrame:
    """:func:`training_partition` of a partition already read: ``rows`` carry the file's row index ``_row``."""
    keep = pl.col(Columns.user).is_in(pl.Series(chosen, dtype=rows.schema[Columns.user]).implode())
    if candidate_rank_pct < 1 and "als_rank_pct" in rows.columns:
        # the same expression as prepare_training_parts: pairs unknown to ALS (null rank) stay
        rank = pl.col("als_rank_pct")
        keep = keep & (rank.is_null() | (rank <= candidate_rank_pct))
    return rows.filter(keep).sort(ROW).drop(ROW)


def ranker_training_table(
    table: UserRowIndex,
    chosen: np.ndarray,
    candidate_rank_pct: float,
    *,
    compute: ComputeParams,
    client: Client | None = None,
) -> pl.DataFrame:
    """The part of a training feature table the ranker reads, without loading the whole table.

    :func:`reco.models.ranker.prepare_training_parts` samples ``ranker.train_users`` users from
    every user of the table and keeps their candidate-like rows (``ranker.candidate_rank_pct``).
    The caller draws the same users, ``chosen``, with :func:`reco.models.ranker.sample_users` on
    ``table.users``; this reads the table one user partition at a time
    (:func:`training_partition`, Dask tasks with a ``client``) and keeps just those rows. Given
    ``users=table.users``, the ranker then draws the same users and learns from the same rows:
    the same model, from a fraction of the table.

    Parameters
    ----------
    table
        The index of ``data/features/train/table.parquet``.
    chosen
        The sampled users (training and validation parts together).
    candidate_rank_pct
        ``ranker.candidate_rank_pct``.
    compute, client
        Partitions and engine.

    Returns
    -------
    polars.DataFrame
        The reduced table, rows in the file's order (``table.n_rows`` is the whole table's count).

    Examples
    --------
    >>> index = UserRowIndex("data/features/train/table.parquet")  # doctest: +SKIP
    >>> train, valid = sample_users(index.users, params.train_users, params.valid_fraction, params.seed)  # doctest: +SKIP
    >>> rows = ranker_training_table(index, np.union1d(train, valid), 0.06, compute=compute)  # doctest: +SKIP
    >>> ranker = train_ranker(rows, features, categorical, params, users=index.users)  # doctest: +SKIP
    """
    parts = map_user_partitions(
        client,
        training_partition,
        table.users,
        partition_count(table.n_rows, compute),
        broadcast={"table": table, "chosen": np.asarray(chosen)},
        candidate_rank_pct=float(candidate_rank_pct),
    )
    if not parts:
        return pl.scan_parquet(table.path).head(0).collect()
    return pl.concat(parts, how="vertical", rechunk=True)
