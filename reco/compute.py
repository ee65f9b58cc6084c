"""The compute engine: per-user work run over user partitions, here or as Dask tasks, with deterministic results.

``params.yaml``'s ``compute`` section picks the engine: :func:`compute_client` gives ``None``
(``engine: local``, run in this process) or a Dask client (:func:`dask_client`: a LocalCluster
or an existing scheduler, with worker thread pools pinned by :func:`worker_environment`).
:func:`map_user_partitions` and :func:`iter_user_partitions` call the same polars function once
per user partition (:func:`reco.partitions.user_partitions`) and give the results in partition
order, shared objects are broadcast once, and :func:`tree_reduce` combines partial aggregates in
a fixed tree, so no output depends on scheduling. See docs/scaling.md.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import polars as pl

from reco.errors import PipelineError
from reco.params import ComputeParams
from reco.partitions import user_partitions
from reco.progress import report
from reco.schema import Columns

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

# How often the scheduler reruns a task whose worker died before giving up (KilledWorker).
DEFAULT_LOST_WORKER_RETRIES = 3
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# A scatter that meets a worker killed a moment ago is tried again this often, this far apart.
_SCATTER_TRIES = 20
_SCATTER_PAUSE_S = 0.5

# Names are the engine's, keep them stable: tests and the stage wiring refer to them.
__all__ = [
    "ComputeError",
    "PartitionError",
    "compute_client",
    "concat_user_partitions",
    "dask_client",
    "iter_user_partitions",
    "map_user_partitions",
    "tree_reduce",
    "worker_environment",
]


class ComputeError(PipelineError):
    """The Dask cluster could not be reached, lost its workers, or could not finish a partition.

    A :class:`~reco.errors.PipelineError`, so a stage exits with code 2 and a one-line message
    (see :func:`reco.cli.run_stage`).
    """


class PartitionError(ComputeError):
    """A :class:`~reco.errors.PipelineError` raised inside a task, carried back by its message.

    Subclasses such as :class:`~reco.errors.InputDataError` take extra constructor arguments and
    so do not survive pickling; the worker re-raises them as this error with the same text.
    """


def worker_environment(threads_per_worker: int) -> dict[str, str]:
    """Environment variables that pin each worker's native thread pools.

    ``OPENBLAS_NUM_THREADS=1``: implicit parallelises ALS and ``recommend`` itself and asks for a
    single-threaded BLAS (it warns and slows down otherwise). ``OMP_NUM_THREADS`` (LightGBM,
    implicit's OpenMP loops), ``MKL_NUM_THREADS`` and ``POLARS_MAX_THREADS`` equal the worker's
    task threads, so ``workers`` x ``threads_per_worker`` is all the cluster ever runs. They are
    read once, when each library loads, hence set before the worker process starts.

    Parameters
    ----------
    threads_per_worker
        ``compute.threads_per_worker``.

    Returns
    -------
    dict[str, str]
        Variable name to value.

    Examples
    --------
    >>> worker_environment(2)["POLARS_MAX_THREADS"]
    '2'
    """
    threads = str(threads_per_worker)
    return {
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "POLARS_MAX_THREADS": threads,
    }


@contextmanager
def _environ(values: Mapping[str, str], restore: Collection[str] = ()) -> Iterator[None]:
    """Set ``values`` for the block; afterwards restore them and the ``restore`` names as they were."""
    previous = {name: os.environ.get(name) for name in {*restore, *values}}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def dask_client(
    params: ComputeParams,
    *,
    lost_worker_retries: int = DEFAULT_LOST_WORKER_RETRIES,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Iterator[Client]:
    """A ``distributed.Client`` for the stage: a fresh LocalCluster or an existing scheduler.

    ``compute.scheduler: null`` starts a ``distributed.LocalCluster`` of ``compute.workers``
    processes with ``compute.threads_per_worker`` threads each, listening on 127.0.0.1 only, with
    no dashboard; its workers get :func:`worker_environment`. An address connects to that
    scheduler and nothing else; its workers must have been started with the same variables
    (``OMP_NUM_THREADS=1 POLARS_MAX_THREADS=1 OPENBLAS_NUM_THREADS=1 dask worker ADDRESS
    --nthreads 1``) and be able to import ``reco``. Whatever the block does, the client and a
    cluster it started are closed on exit; an existing cluster is left running.

    Parameters
    ----------
    params
        The ``compute`` section (its ``engine`` is not checked: the caller asked for a client).
    lost_worker_retries
        LocalCluster only: how many times a task whose worker died is rerun before it fails
        (``distributed.scheduler.allowed-failures``; an existing scheduler keeps its own setting).
    connect_timeout_s
        How long to try to reach ``compute.scheduler`` and to wait for its first worker.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ComputeError
        The scheduler cannot be reached or has no worker, or the LocalCluster does not start.

    Examples
    --------
    >>> from reco.params import parse_section
    >>> with dask_client(parse_section("compute", {"engine": "dask", "workers": 2})) as client:  # doctest: +SKIP
    ...     len(client.scheduler_info()["workers"])
    2
    """
    import dask
    from distributed import Client, LocalCluster

    if params.scheduler is None:
        env = worker_environment(params.threads_per_worker)
        pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **env}
        config: dict[str, Any] = {
            "distributed.scheduler.allowed-failures": lost_worker_retries,
            # Set before the worker process is spawned: numpy loads OpenBLAS while distributed
            # itself is imported in the child, before a Nanny's `env` would be applied.
            "distributed.nanny.pre-spawn-environ": pre_spawn,
        }
        # The parent's own variables override pre-spawn-environ (see distributed.nanny), so they
        # are set for the block too (libraries already loaded here are unaffected); each Nanny
        # also writes its pre-spawn variables into this process, so all of them are restored.
        touched = {*pre_spawn, "PYTHONHASHSEED", "__DASK_PARENT_PID"}
        with _environ(env, restore=touched), dask.config.set(config):
            try:
                cluster = LocalCluster(
                    n_workers=params.workers,
                    threads_per_worker=params.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # No dashboard; the scheduler's small HTTP server (health, metrics) on loopback.
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                    env=env,
                    silence_logs=logging.ERROR,
                )
            except Exception as error:  # a cluster that cannot start is an environment problem
                raise ComputeError(
                    f"compute: cannot start a LocalCluster of {params.workers} workers ({error})"
                ) from error
            try:
                with Client(cluster) as client:
                    yield client
            finally:
                cluster.close()
        return

    try:
        client = Client(params.scheduler, timeout=connect_timeout_s)
    except (OSError, TimeoutError) as error:
        raise ComputeError(
            f"compute.scheduler = {params.scheduler}: cannot connect ({error}); start the scheduler "
            "or set compute.scheduler: null to start a local cluster"
        ) from error
    try:
        try:
            client.wait_for_workers(1, timeout=connect_timeout_s)
        except TimeoutError as error:
            raise ComputeError(
                f"compute.scheduler = {params.scheduler}: no worker joined within {connect_timeout_s:g} s"
            ) from error
        yield client
    finally:
        client.close()


@contextmanager
def compute_client(params: ComputeParams, **options: Any) -> Iterator[Client | None]:
    """``None`` for ``engine: local``, else :func:`dask_client`'s client: one ``with`` for both engines.

    The helpers here take ``client=None`` as "run in this process", so a stage reads the same
    either way.

    Examples
    --------
    >>> from reco.params import parse_section
    >>> with compute_client(parse_section("compute", {"engine": "local"})) as client:
    ...     print(client)
    None
    """
    if params.engine == "local":
        yield None
        return
    with dask_client(params, **options) as client:
        yield client


def _slice_per_user(
    frames: Mapping[str, pl.DataFrame], partitions: Sequence[np.ndarray], user_column: str
) -> list[dict[str, pl.DataFrame]]:
    """Each frame's rows of each partition's id range, in the frame's row order (one pass per frame)."""
    firsts = np.array([part[0] for part in partitions])
    lasts = np.array([part[-1] for part in partitions])
    sliced: list[dict[str, pl.DataFrame]] = [{} for _ in partitions]
    for name, frame in frames.items():
        if user_column not in frame.columns:
            raise ValueError(f"per_user frame {name!r} has no {user_column!r} column")
        users = frame[user_column].to_numpy()
        index = np.searchsorted(firsts, users, side="right") - 1
        inside = (index >= 0) & (users <= lasts[np.clip(index, 0, None)])
        groups = (
            frame.with_columns(pl.Series("__partition", np.where(inside, index, -1), dtype=pl.Int64))
            .filter(pl.col("__partition") >= 0)
            .partition_by("__partition", as_dict=True, maintain_order=True, include_key=False)
        )
        for i in range(len(partitions)):
            sliced[i][name] = groups.get((i,), frame.clear())
    return sliced


def _run_partition(fn: Callable[..., T], users: np.ndarray, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """The task body on the worker: call ``fn`` and make its PipelineErrors picklable."""
    try:
        return fn(users, *args, **kwargs)
    except PipelineError as error:
        raise PartitionError(f"{type(error).__name__}: {error}") from None


class _PartitionJob:
    """The tasks of one :func:`map_user_partitions` call, able to resubmit a partition whose input was lost.

    Per-partition slices are scattered to one worker each (client to worker, not through the
    scheduler). Scattered data has no lineage: if its worker dies, the scheduler cannot recompute
    it and cancels the task. The client still holds the slice, so it scatters it again and
    resubmits, as often as the scheduler itself reruns a task whose worker died.
    """

    def __init__(
        self,
        client: Client,
        fn: Callable[..., Any],
        partitions: list[np.ndarray],
        slices: list[dict[str, pl.DataFrame]],
        broadcast: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.client, self.fn, self.partitions, self.slices = client, fn, partitions, slices
        self.broadcast, self.args, self.kwargs = broadcast, args, kwargs
        self.shared: dict[str, Future] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.name = getattr(fn, "__name__", "map_user_partitions")

    def _scatter(self, values: list[Any], broadcast: bool) -> list[Future]:
        """``client.scatter``, tried again while the scheduler still lists a worker that just died."""
        from distributed.comm import CommClosedError

        for _ in range(_SCATTER_TRIES - 1):
            try:
                return self.client.scatter(values, broadcast=broadcast, hash=False)
            except (CommClosedError, OSError):
                time.sleep(_SCATTER_PAUSE_S)  # the scheduler drops the dead worker within moments
        return self.client.scatter(values, broadcast=broadcast, hash=False)

    def _shared(self) -> dict[str, Future]:
        """The broadcast objects' futures, scattered again only if every copy was lost."""
        for name, value in self.broadcast.items():
            if name not in self.shared or self.shared[name].status != "finished":
                # One copy per worker, sent once: tasks refer to it by key and find it locally.
                self.shared[name] = self._scatter([value], broadcast=True)[0]
        return self.shared

    def submit(self, i: int, attempt: int = 0) -> Future:
        """Scatter partition ``i``'s slices (to one worker) and submit its task."""
        frames = self.slices[i]
        scattered = self._scatter(list(frames.values()), broadcast=False) if frames else []
        return self.client.submit(
            _run_partition,
            self.fn,
            self.partitions[i],
            self.args,
            {**self.kwargs, **dict(zip(frames, scattered, strict=True)), **self._shared()},
            key=f"{self.name}-{self.run_id}-partition-{i}-try-{attempt}",
            pure=False,
        )

    def describe(self, i: int) -> str:
        users = self.partitions[i]
        where = f"user partition {i + 1} of {len(self.partitions)}"
        return f"{self.name}: {where} (users {users[0]}..{users[-1]}, {len(users)} users)"

    def result(self, futures: list[Future], i: int, lost_input_retries: int) -> Any:
        """Partition ``i``'s result; a partition whose input died with its worker is resubmitted.

        ``futures[i]`` is replaced by each resubmission. Lost workers are retried, then become a
        :class:`ComputeError`; an exception raised by ``fn`` itself propagates unchanged (a
        :class:`PartitionError` for pipeline errors, the original type for bugs).
        """
        from distributed import KilledWorker
        from distributed.comm import CommClosedError

        attempt = 0
        while True:
            try:
                return futures[i].result()
            except KilledWorker as error:
                raise ComputeError(
                    f"{self.describe(i)}: its worker died on every try ({error}); the scheduler's "
                    "distributed.scheduler.allowed-failures retries are used up "
                    "(check the workers' memory limit and logs)"
                ) from error
            except (concurrent.futures.CancelledError, CommClosedError) as error:
                if attempt >= lost_input_retries:
                    raise ComputeError(
                        f"{self.describe(i)}: its worker died and took the partition's input with it "
                        f"({type(error).__name__}: {error}); {lost_input_retries} resubmission(s) did not "
                        "help (check the workers' memory limit and logs)"
                    ) from error
                attempt += 1
                futures[i] = self.submit(i, attempt)

    def gather(self, futures: list[Future], lost_input_retries: int) -> list[Any]:
        """Results in partition order (see :meth:`result`).

        On a failure the remaining futures are cancelled, so the cluster stops working for a result
        nobody will read.
        """
        try:
            return [self.result(futures, i, lost_input_retries) for i in range(len(futures))]
        except BaseException:
            self.client.cancel([f for f in futures if not f.done()])
            raise


def _allowed_failures(dask_scheduler: Any) -> int:
    """Run on the scheduler: how often it reruns a task whose worker died."""
    return int(dask_scheduler.allowed_failures)


def map_user_partitions(
    client: Client | None,
    fn: Callable[..., T],
    user_ids: np.ndarray | pl.Series | Sequence[int],
    n_partitions: int,
    *args: Any,
    per_user: Mapping[str, pl.DataFrame] | None = None,
    broadcast: Mapping[str, Any] | None = None,
    user_column: str = Columns.user,
    lost_input_retries: int | None = None,
    progress: str | None = None,
    **kwargs: Any,
) -> list[T]:
    """Run ``fn`` once per user partition as Dask tasks; return the results in partition order.

    ``fn`` is called on a worker as ``fn(users, *args, **per_user_slices, **broadcast, **kwargs)``
    where ``users`` are the sorted ids of its partition (:func:`~reco.partitions.user_partitions`).
    It must be importable by the workers (a module-level function of ``reco``), and it is the same
    function the local engine calls on all users at once.

    Parameters
    ----------
    client
        From :func:`dask_client`, or ``None`` to run the partitions one after the other in this
        process (same slices, same order; errors are raised as ``fn`` raised them).
    fn
        The per-partition work.
    user_ids
        The users to cover (repeats allowed).
    n_partitions
        ``compute.user_partitions``.
    *args
        Small positional arguments, sent with every task.
    per_user
        Frames with a ``user_column``: each task gets only its partition's rows, as a keyword
        argument of the same name (rows outside every partition's id range are dropped). Sort
        them by user first (``maintain_order=True``) if ``fn`` sums floats per user: polars sums a
        group whose rows are scattered in an order that depends on the other rows (docs/scaling.md).
    broadcast
        Large objects every task reads (item factors, item tables): scattered to every worker
        once and passed as keyword arguments.
    user_column
        The user id column of the ``per_user`` frames.
    lost_input_retries
        How often a partition whose scattered slice died with its worker is resubmitted;
        ``None``: as often as the scheduler reruns a task whose worker died
        (``distributed.scheduler.allowed-failures``, see :func:`dask_client`).
    progress
        What a partition is, for the line ``<progress> i/n`` reported before each partition runs
        (locally) or is awaited (Dask) (:mod:`reco.progress`); ``None``: no line.
    **kwargs
        Small keyword arguments, sent with every task.

    Returns
    -------
    list
        ``fn``'s result for each partition, in partition (= user id) order, whichever worker
        finished first.

    Raises
    ------
    ComputeError
        A partition's worker kept dying (the retries are used up).
    PartitionError
        ``fn`` raised a :class:`~reco.errors.PipelineError` (bad input) on a worker.

    Examples
    --------
    >>> def n_users(users):
    ...     return len(users)
    >>> map_user_partitions(client, n_users, [1, 2, 3, 4, 5], 2)  # doctest: +SKIP
    [3, 2]
    """
    return list(
        iter_user_partitions(
            client,
            fn,
            user_ids,
            n_partitions,
            *args,
            per_user=per_user,
            broadcast=broadcast,
            user_column=user_column,
            lost_input_retries=lost_input_retries,
            max_in_flight=None,
            progress=progress,
            **kwargs,
        )
    )


def iter_user_partitions(
    client: Client | None,
    fn: Callable[..., T],
    user_ids: np.ndarray | pl.Series | Sequence[int],
    n_partitions: int,
    *args: Any,
    per_user: Mapping[str, pl.DataFrame] | None = None,
    broadcast: Mapping[str, Any] | None = None,
    user_column: str = Columns.user,
    lost_input_retries: int | None = None,
    max_in_flight: int | None = None,
    progress: str | None = None,
    **kwargs: Any,
) -> Iterator[T]:
    """:func:`map_user_partitions` one result at a time, in partition order: bounded memory for large results.

    The caller handles (writes, reduces) each partition's result before the next is fetched, so
    only one result is held here. Locally, partitions are computed when the caller asks for them.
    On a cluster at most ``max_in_flight`` partitions are submitted or waiting to be fetched, so
    the workers hold a bounded number of finished results too; ``None`` submits every partition
    at once.

    Examples
    --------
    >>> def n_users(users):
    ...     return len(users)
    >>> list(iter_user_partitions(None, n_users, [1, 2, 3, 4, 5], 2))
    [3, 2]
    """
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    partitions = user_partitions(user_ids, n_partitions)
    if not partitions:
        return
    slices = _slice_per_user(per_user or {}, partitions, user_column)
    if client is None:
        for i, (users, frames) in enumerate(zip(partitions, slices, strict=True)):
            if progress is not None:
                report(f"{progress} {i + 1}/{len(partitions)}")
            yield fn(users, *args, **kwargs, **frames, **(broadcast or {}))
        return
    job = _PartitionJob(client, fn, partitions, slices, broadcast or {}, args, kwargs)
    if lost_input_retries is None:
        lost_input_retries = client.run_on_scheduler(_allowed_failures)
    window = len(partitions) if max_in_flight is None else max_in_flight
    futures: list[Future] = [job.submit(i) for i in range(min(window, len(partitions)))]
    try:
        for i in range(len(partitions)):
            if progress is not None:
                report(f"{progress} {i + 1}/{len(partitions)}")
            result = job.result(futures, i, lost_input_retries)
            futures[i].release()
            if len(futures) < len(partitions):  # keep the window full
                futures.append(job.submit(len(futures)))
            yield result
    except BaseException:
        job.client.cancel([f for f in futures if not f.done()])
        raise
    finally:
        for future in [*futures, *job.shared.values()]:
            future.release()


def concat_user_partitions(
    client: Client | None,
    fn: Callable[..., pl.DataFrame],
    user_ids: np.ndarray | pl.Series | Sequence[int],
    n_partitions: int,
    *args: Any,
    **kwargs: Any,
) -> pl.DataFrame:
    """:func:`map_user_partitions` for a function returning polars frames: one frame, in partition order.

    Examples
    --------
    >>> def users_frame(users):
    ...     return pl.DataFrame({"user_id": users})
    >>> concat_user_partitions(client, users_frame, [4, 2, 9], 2)["user_id"].to_list()  # doctest: +SKIP
    [2, 4, 9]
    """
    frames = map_user_partitions(client, fn, user_ids, n_partitions, *args, **kwargs)
    if not frames:
        raise ValueError("concat_user_partitions: no users, so no partition to run")
    return pl.concat(frames, how="vertical", rechunk=True)


def tree_reduce(partials: Sequence[Any], combine: Callable[[T, T], T], client: Client | None = None) -> T:
    """Combine partial aggregates pairwise in a fixed binary tree: ((p0+p1)+(p2+p3))+p4 ...

    The tree depends only on ``len(partials)``, so floating-point sums are identical from run to
    run and between the engines: the local engine reduces its per-partition partials (same
    :func:`~reco.partitions.user_partitions`) with the same call. Partials gathered by
    :func:`map_user_partitions` are usually small (one row per item) and reduced here; with a
    ``client`` each pair is combined by a task instead (partials may then be futures; nothing is
    gathered until the root).

    Parameters
    ----------
    partials
        Per-partition aggregates in partition order (values or futures of them).
    combine
        Associative combination of two partials, e.g. joining two item count tables and adding.
    client
        Run the combinations on the cluster; ``None`` runs them in this process.

    Returns
    -------
    The combined aggregate.

    Examples
    --------
    >>> tree_reduce([0.1, 0.2, 0.3, 0.4, 0.5], lambda a, b: a + b)  # ((0.1+0.2)+(0.3+0.4))+0.5
    1.5
    """
    level = list(partials)
    if not level:
        raise ValueError("tree_reduce needs at least one partial aggregate")
    while len(level) > 1:
        pairs = [(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        combined = [
            client.submit(combine, left, right, pure=False) if client is not None else combine(left, right)
            for left, right in pairs
        ]
        level = combined + ([level[-1]] if len(level) % 2 else [])
    root = level[0]
    if client is not None:
        from distributed import Future

        if isinstance(root, Future):
            return root.result()
    return root
