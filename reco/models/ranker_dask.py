"""The ranker trained by LightGBM's own distributed training (``lightgbm.dask.DaskLGBMRanker``).

The same rows and parameters as the local fit (:func:`reco.models.ranker.prepare_training_parts`),
cut into one contiguous user range per worker and trained data-parallel; the result is the same
:class:`~reco.models.ranker.TrainedRanker`, saved in the same text format. lightgbm.dask cannot
stop early, so every round is trained and the early-stopping point is found afterwards on the
validation users with LightGBM's own metric; a fit that loses a worker is restarted. Not
bit-reproducible (ranking quality matches the local fit within noise).
:func:`reco.models.ranker_engine.train_ranker` routes ``compute.engine: dask`` here. See docs/scaling.md.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import itertools
import re
import sys
import time
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from reco import portable_math
from reco.compute import DEFAULT_LOST_WORKER_RETRIES, ComputeError, dask_client
from reco.errors import InputDataError
from reco.models.ranker import (
    TrainedRanker,
    TrainingParts,
    _group_sizes,
    _matrix,
    gain_importance,
    lightgbm_params,
    prepare_training_parts,
    training_summary,
)
from reco.params import ComputeParams, RankerParams
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DISTRIBUTED_ONLY_PARAMETERS",
    "early_stopping_point",
    "import_lightgbm_dask",
    "lightgbm_ndcg_at",
    "train_ranker_dask",
    "validation_curve",
]

# Parameter lines of the saved model that differ from local mode by design: the distributed setup
# (num_threads is each worker's thread count) and one run's network addresses (reset before saving).
DISTRIBUTED_ONLY_PARAMETERS = ("tree_learner", "num_machines", "num_threads", "machines", "local_listen_port")
_RESET_PARAMETERS = {"machines": "", "local_listen_port": "12400"}  # LightGBM's defaults
# Seconds to wait for the scheduler to notice a worker whose loss made the fit fail.
_LOST_WORKER_GRACE_S = 5


def import_lightgbm_dask() -> ModuleType:
    """``lightgbm.dask``, with lightgbm's scikit-learn and pandas integrations loaded.

    :func:`reco.models.ranker.import_lightgbm` hides scikit-learn and pandas from lightgbm's first
    import to save a second per stage; ``lightgbm.dask`` needs both. If lightgbm was loaded that
    way in this process, it is loaded again (existing boosters keep working: the native library
    is the same).

    Examples
    --------
    >>> import_lightgbm_dask().DaskLGBMRanker.__name__
    'DaskLGBMRanker'
    """
    loaded = sys.modules.get("lightgbm")
    compat = sys.modules.get("lightgbm.compat")
    if loaded is not None and compat is not None and not (compat.SKLEARN_INSTALLED and compat.PANDAS_INSTALLED):
        for name in [n for n in sys.modules if n == "lightgbm" or n.startswith("lightgbm.")]:
            del sys.modules[name]
    try:
        importlib.import_module("dask.array")
        importlib.import_module("distributed")
    except ImportError as error:
        raise ComputeError(
            f"compute.engine = dask needs dask and distributed ({error}); pip install -r requirements.txt"
        ) from error
    return importlib.import_module("lightgbm.dask")


def _ensure_lightgbm_dask_on_worker() -> bool:
    """Run on every worker before training: a worker that imported lightgbm the lean way reloads it."""
    import_lightgbm_dask()
    return True


# ----------------------------------------------------------------------------------------------
# Validation curve with LightGBM's metric definitions (lightgbm.dask cannot stop early, see the docstring)
# ----------------------------------------------------------------------------------------------


def iteration_scores(booster: Any, matrix: np.ndarray, num_threads: int = 1) -> Iterator[np.ndarray]:
    """Raw scores after each boosting iteration, one tree added at a time (as LightGBM's valid scores).

    Examples
    --------
    >>> scores = list(iteration_scores(booster, X))  # doctest: +SKIP
    >>> np.allclose(scores[-1], booster.predict(X, raw_score=True))  # doctest: +SKIP
    True
    """
    total = np.zeros(matrix.shape[0], dtype=np.float64)
    for iteration in range(booster.current_iteration()):
        total = total + booster.predict(
            matrix, start_iteration=iteration, num_iteration=1, raw_score=True, num_threads=num_threads
        )
        yield total


def lightgbm_ndcg_at(scores: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, k: int) -> float:
    """Mean NDCG@k over queries, exactly as LightGBM's ``ndcg`` metric defines it.

    Gain ``2**label - 1``, discount ``1 / log2(2 + position)``, rows ordered by descending score
    with ties kept in row order (LightGBM's stable sort), the cut ``min(k, query size)``, and a
    query without any positive label counts as 1.

    Examples
    --------
    >>> round(lightgbm_ndcg_at(np.array([0.9, 0.1, 0.5, 0.2]), np.array([0, 2, 1, 0]), np.array([2, 2]), 10), 12)
    0.815464876786

    The logarithms go through :mod:`reco.portable_math` and the mean is an exact sum, so the value
    (which picks the best iteration) has the same bits on every CPU; numpy's ``log2`` may differ in
    the last bit between SIMD code paths.
    """
    n_queries = len(group_sizes)
    query = np.repeat(np.arange(n_queries), group_sizes)
    starts = np.concatenate(([0], np.cumsum(group_sizes)[:-1]))
    gain_of = np.ldexp(1.0, labels.astype(np.int64)) - 1.0  # 2**label - 1, exact
    log_two = float(portable_math.log(np.array([2.0]))[0])
    places = min(k, int(np.max(group_sizes, initial=0)))
    log_of_place = portable_math.log(2.0 + np.arange(places, dtype=np.float64))  # each place's log, once per call

    def dcg(order: np.ndarray) -> np.ndarray:
        position = np.arange(len(order)) - starts[query[order]]
        kept = position < k
        discounted = gain_of[order][kept] * log_two / log_of_place[position[kept]]
        return np.bincount(query[order][kept], weights=discounted, minlength=n_queries)

    rows = np.arange(len(scores))
    actual = dcg(np.lexsort((rows, -scores, query)))
    ideal = dcg(np.lexsort((rows, -labels, query)))
    per_query = np.ones(n_queries, dtype=np.float64)
    positive = ideal > 0
    per_query[positive] = actual[positive] / ideal[positive]
    return portable_math.fsum(per_query) / n_queries


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC with ties counted one half, as LightGBM's ``auc`` metric (1.0 without both classes)."""
    from scipy.stats import rankdata

    positive = labels > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 1.0
    ranks = rankdata(scores, method="average")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def validation_curve(
    booster: Any, matrix: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, params: RankerParams
) -> tuple[str, list[float]]:
    """The validation metric after every iteration: what ``lgb.record_evaluation`` records locally.

    Returns
    -------
    tuple[str, list[float]]
        LightGBM's metric name (``ndcg@10`` or ``auc``) and one value per iteration.
    """
    lgb_params = lightgbm_params(params)
    if params.objective == "lambdarank":
        (k,) = lgb_params["eval_at"]
        name = f"ndcg@{k}"
        values = [
            lightgbm_ndcg_at(s, labels, group_sizes, k) for s in iteration_scores(booster, matrix, params.num_threads)
        ]
    else:
        name = "auc"
        values = [_auc(s, labels) for s in iteration_scores(booster, matrix, params.num_threads)]
    return name, values


def early_stopping_point(values: list[float], stopping_rounds: int) -> tuple[int, int]:
    """Where ``lgb.early_stopping`` would have stopped on this (higher-is-better) curve.

    Returns
    -------
    tuple[int, int]
        The best iteration (1-based; the first to reach the best value) and the number of
        iterations an early-stopped run would have trained (its recorded curve length).

    Examples
    --------
    >>> early_stopping_point([0.5, 0.7, 0.6, 0.7, 0.65, 0.8], stopping_rounds=3)
    (2, 5)
    >>> early_stopping_point([0.5, 0.7, 0.6], stopping_rounds=3)
    (2, 3)
    """
    best, best_value = 0, -np.inf
    for iteration, value in enumerate(values):
        if value > best_value:  # strictly better, as lightgbm's min_delta=0
            best, best_value = iteration, value
        elif iteration - best >= stopping_rounds:
            return best + 1, iteration + 1
    return best + 1, len(values)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def row_balanced_group_cuts(group_sizes: np.ndarray, n_parts: int) -> list[tuple[int, int]]:
    """Cut consecutive groups into at most ``n_parts`` runs of near-equal row counts.

    Returns
    -------
    list[tuple[int, int]]
        ``(first_group, end_group)`` of each non-empty part, in order; cuts fall between groups.

    Examples
    --------
    >>> row_balanced_group_cuts(np.array([5, 1, 1, 1, 2]), 2)
    [(0, 1), (1, 5)]
    """
    n_parts = max(1, min(n_parts, len(group_sizes)))
    ends = np.cumsum(group_sizes)
    targets = ends[-1] * np.arange(1, n_parts) / n_parts
    cuts = np.unique(np.clip(np.searchsorted(ends, targets, side="left") + 1, 1, len(group_sizes)))
    bounds = [0, *cuts.tolist(), len(group_sizes)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _distributed_data(
    client: Client, matrix: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, workers: list[str]
) -> tuple[Any, Any, Any, list[Any]]:
    """Dask arrays X, y, group with one chunk per worker, each chunk a whole number of groups.

    Each chunk is scattered to its own worker (sorted addresses), so LightGBM finds one part per
    worker and trains where the data already is. Returns the arrays and the futures to release.
    """
    import dask
    import dask.array as da

    row_ends = np.concatenate(([0], np.cumsum(group_sizes)))
    chunks: dict[str, list[Any]] = {"X": [], "y": [], "group": []}
    futures = []
    for (first, end), worker in zip(row_balanced_group_cuts(group_sizes, len(workers)), workers, strict=False):
        rows = slice(row_ends[first], row_ends[end])
        for name, values in (("X", matrix[rows]), ("y", labels[rows]), ("group", group_sizes[first:end])):
            future = client.scatter(np.ascontiguousarray(values), workers=[worker], hash=False)
            futures.append(future)
            chunks[name].append(da.from_delayed(dask.delayed(future), shape=values.shape, dtype=values.dtype))
    return da.concatenate(chunks["X"]), da.concatenate(chunks["y"]), da.concatenate(chunks["group"]), futures


def _estimator_params(params: RankerParams) -> dict[str, Any]:
    """``lightgbm_params`` under the scikit-learn names where the estimator has them (no alias clashes)."""
    native = lightgbm_params(params)
    native.pop("num_threads")  # lightgbm.dask sets each worker's thread count itself
    native.pop("eval_at", None)  # a fit() argument of the estimator
    renamed = {
        "min_data_in_leaf": "min_child_samples",
        "feature_fraction": "colsample_bytree",
        "bagging_fraction": "subsample",
        "bagging_freq": "subsample_freq",
        "seed": "random_state",
    }
    estimator = {renamed.get(key, key): value for key, value in native.items()}
    estimator["n_estimators"] = params.n_estimators
    estimator["tree_learner"] = "data"
    return estimator


def _normalized_booster(lgb: ModuleType, booster: Any) -> Any:
    """The booster with one run's network addresses reset to LightGBM's defaults."""
    text = booster.model_to_string()
    for name, default in _RESET_PARAMETERS.items():
        text = re.sub(rf"^\[{name}: [^\]\n]*\]$", f"[{name}: {default}]", text, flags=re.MULTILINE)
    return lgb.Booster(model_str=text)


def _workers(client: Client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def _lost_workers(client: Client, workers: list[str], error: BaseException) -> list[str]:
    """Which of ``workers`` left the cluster, if ``error`` looks like the fallout of losing one.

    A killed worker's peers fail at once (socket error) and its scattered data is reported lost,
    but the scheduler may take a moment to remove it: look again for a few seconds.
    """
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    network = isinstance(error, (KilledWorker, CommClosedError, concurrent.futures.CancelledError)) or (
        "socket" in str(error).lower()
    )
    for _ in range(_LOST_WORKER_GRACE_S * 2 if network else 1):
        lost = sorted(set(workers) - set(_workers(client)))
        if lost or not network:
            return lost
        time.sleep(0.5)
    return []


def _fit_once(
    client: Client,
    lgb_dask: ModuleType,
    parts: TrainingParts,
    features: list[str],
    categorical: list[str],
    params: RankerParams,
    workers: list[str],
) -> Any:
    """One distributed fit on ``workers``; returns the trained booster (all rounds)."""
    if not workers:
        raise ComputeError("compute: the Dask cluster has no worker to train the ranker on")
    try:
        client.run(_ensure_lightgbm_dask_on_worker)
    except ImportError as error:
        raise ComputeError(
            f"compute: a Dask worker cannot import this project's code ({error}); start the workers with the "
            "pinned requirements installed and the repository on their PYTHONPATH"
        ) from error
    train = parts.frames["train"]
    groups = _group_sizes(train[Columns.user].to_numpy())
    X, y, group, futures = _distributed_data(client, _matrix(train, features), parts.labels["train"], groups, workers)
    estimator = lgb_dask.DaskLGBMRanker(client=client, **_estimator_params(params))
    fit_kwargs: dict[str, Any] = {"group": group, "feature_name": features, "categorical_feature": categorical}
    if params.objective == "lambdarank":
        fit_kwargs["eval_at"] = lightgbm_params(params)["eval_at"]
    try:
        with warnings.catch_warnings():
            # The estimator's n_jobs is always dropped by lightgbm.dask (threads = the worker's).
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            estimator.fit(X, y, **fit_kwargs)
    finally:
        for future in futures:  # the partitions are no longer needed (lost ones included)
            future.release()
    return estimator.booster_


def train_ranker_dask(
    table: pl.DataFrame,
    features: list[str],
    categorical: list[str],
    params: RankerParams,
    compute: ComputeParams,
    client: Client | None = None,
    *,
    users: np.ndarray | None = None,
    lost_worker_retries: int = DEFAULT_LOST_WORKER_RETRIES,
) -> TrainedRanker:
    """Fit the ranker with ``lightgbm.dask.DaskLGBMRanker``; same inputs and result as the local fit.

    Parameters
    ----------
    table, features, categorical, params
        As :func:`reco.models.ranker.train_ranker_local`.
    compute
        The ``compute`` section; a cluster is opened with :func:`reco.compute.dask_client`
        unless ``client`` is given.
    client
        An open client to train on (it is not closed).
    lost_worker_retries
        How many times the whole fit is restarted after a worker was lost during it.

    Returns
    -------
    TrainedRanker
        ``booster`` trained for ``n_estimators`` rounds (saved at ``best_iteration``), the
        post-hoc validation curve up to where early stopping would have stopped, gain importance
        at the best iteration and the local summary plus ``engine``, ``workers`` and
        ``trained_iterations``.

    Raises
    ------
    InputDataError
        As local mode (missing columns, no positive label in a part).
    ComputeError
        No worker, or workers kept being lost during training.

    Examples
    --------
    >>> compute = parse_section("compute", {"engine": "dask"})  # doctest: +SKIP
    >>> ranker = train_ranker_dask(table, features, [], params, compute)  # doctest: +SKIP
    >>> save_ranker(ranker, Path("models/ranker"))  # doctest: +SKIP
    """
    lgb_dask = import_lightgbm_dask()
    parts = prepare_training_parts(table, features, params, users)  # bad input fails before any cluster is contacted
    if client is None:
        with dask_client(compute) as own_client:
            booster = _fit_with_retries(own_client, lgb_dask, parts, features, categorical, params, lost_worker_retries)
            n_workers = len(_workers(own_client))
    else:
        booster = _fit_with_retries(client, lgb_dask, parts, features, categorical, params, lost_worker_retries)
        n_workers = len(_workers(client))
    return _trained_ranker(
        _normalized_booster(sys.modules["lightgbm"], booster), parts, features, categorical, params, n_workers
    )


def _fit_with_retries(
    client: Client,
    lgb_dask: ModuleType,
    parts: TrainingParts,
    features: list[str],
    categorical: list[str],
    params: RankerParams,
    lost_worker_retries: int,
) -> Any:
    """:func:`_fit_once`, restarted from scratch when a worker was lost during it."""
    for attempt in range(lost_worker_retries + 1):
        workers = _workers(client)
        try:
            return _fit_once(client, lgb_dask, parts, features, categorical, params, workers)
        except Exception as error:
            lost = _lost_workers(client, workers, error)
            if not lost:
                raise
            if attempt == lost_worker_retries:
                raise ComputeError(
                    f"train_ranker (compute.engine = dask): worker(s) {', '.join(lost)} left during training "
                    f"({type(error).__name__}: {error}); distributed LightGBM cannot continue without them and was "
                    f"restarted {lost_worker_retries} time(s) (check the workers' memory limit and logs)"
                ) from error
            print(
                f"train_ranker: worker(s) {', '.join(lost)} lost during training ({type(error).__name__}); "
                f"restarting the distributed fit ({attempt + 1} of {lost_worker_retries})",
                file=sys.stderr,
            )
            # A LocalCluster's nanny (or `dask worker`'s) restarts a killed worker: wait for it a little.
            try:
                client.wait_for_workers(len(workers), timeout=_LOST_WORKER_GRACE_S * 6)
            except TimeoutError:
                pass  # go on with the workers that are left
    raise AssertionError("unreachable: the last attempt returns or raises")


def _trained_ranker(
    booster: Any, parts: TrainingParts, features: list[str], categorical: list[str], params: RankerParams, n_workers: int
) -> TrainedRanker:
    """The post-hoc curve, early-stopping point, importance and summary of a fully trained booster."""
    valid = parts.frames["valid"]
    valid_groups = _group_sizes(valid[Columns.user].to_numpy())
    metric_name, values = validation_curve(
        booster, _matrix(valid, features), parts.labels["valid"], valid_groups, params
    )
    best, stopped = early_stopping_point(values, params.early_stopping_rounds)
    return TrainedRanker(
        booster=booster,
        features=list(features),
        categorical=list(categorical),
        best_iteration=best,
        curve=[{"iteration": i + 1, metric_name: float(v)} for i, v in enumerate(values[:stopped])],
        importance=gain_importance(booster, features, best),
        summary={
            **training_summary(parts, params, metric_name, values, best),
            "engine": "dask",
            "workers": n_workers,
            "trained_iterations": int(booster.current_iteration()),
        },
    )
