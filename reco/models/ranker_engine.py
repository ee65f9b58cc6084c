"""One entry point for training the ranker: it picks the local LightGBM fit or the lightgbm.dask one.

:func:`train_ranker` takes the ``compute`` settings or an open Dask client and calls
:func:`reco.models.ranker.train_ranker_local` (``compute.engine: local``) or
:func:`reco.models.ranker_dask.train_ranker_dask` (``dask``); both learn from the same rows and
return the same :class:`~reco.models.ranker.TrainedRanker`, so the train_ranker stage and the seed
spread call this one function, as implicit's ``als`` factory picks its CPU or GPU model. See docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from reco.models.ranker import TrainedRanker, train_ranker_local
from reco.params import ComputeParams, RankerParams

if TYPE_CHECKING:
    from distributed import Client

ENGINES: tuple[str, ...] = ("local", "dask")


def train_ranker(
    table: pl.DataFrame,
    features: list[str],
    categorical: list[str],
    params: RankerParams,
    *,
    users: np.ndarray | None = None,
    compute: ComputeParams | None = None,
    client: Client | None = None,
) -> TrainedRanker:
    """Fit the ranker on the engine the compute settings or the client name.

    Parameters
    ----------
    table, features, categorical, params
        The training feature table (``label`` and ``relevance`` columns), the ordered feature
        list, the categorical features and the ``ranker`` section.
    users
        The ids the ranker's users are drawn from (see :func:`reco.models.ranker.prepare_training_parts`).
    compute
        The ``compute`` section. ``None`` or ``engine: local``: the fit runs in this process;
        ``engine: dask`` without a ``client``: a cluster is opened for the fit
        (:func:`reco.compute.dask_client`).
    client
        An open Dask client (from :func:`reco.compute.compute_client`): the fit is distributed
        on it, whatever ``compute`` says. ``None``: the engine is ``compute.engine``.

    Returns
    -------
    TrainedRanker
        The booster, its validation curve, gain importance and training summary (the dask fit's
        summary adds ``engine``, ``workers`` and ``trained_iterations``).

    Raises
    ------
    InputDataError
        If the table lacks labels, a feature column, or has no positive in either part.
    ComputeError
        The dask engine has no worker, or kept losing workers during training.

    Examples
    --------
    >>> with compute_client(compute) as client:  # doctest: +SKIP
    ...     ranker = train_ranker(table, features, categorical, params, compute=compute, client=client)
    >>> save_ranker(ranker, Path("models/ranker"))  # doctest: +SKIP
    """
    if client is None and (compute is None or compute.engine == "local"):
        return train_ranker_local(table, features, categorical, params, users=users)
    from reco.models.ranker_dask import train_ranker_dask  # imports dask: only for the dask engine

    if compute is None or compute.engine != "dask":
        compute = dataclasses.replace(compute or ComputeParams(), engine="dask")
    return train_ranker_dask(table, features, categorical, params, compute, client=client, users=users)


__all__ = ["ENGINES", "train_ranker"]
