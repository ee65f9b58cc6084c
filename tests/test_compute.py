"""reco.compute: the engine's cluster, per-partition tasks, broadcast, tree reduction and lost workers.

Every cluster here listens on 127.0.0.1 only and is started and stopped by the tests: a
LocalCluster of 2 worker processes (through :func:`reco.compute.dask_client`) and a scheduler plus
two workers started as separate ``dask scheduler`` / ``dask worker`` processes
(:class:`ProcessCluster`, also used by tests/models/test_ranker_dask.py).
"""

from __future__ import annotations

import concurrent.futures
import json
import operator
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import pytest
from distributed import Client
from test_partitions import views_table

from reco.compute import (
    ComputeError,
    PartitionError,
    _environ,
    compute_client,
    concat_user_partitions,
    dask_client,
    iter_user_partitions,
    map_user_partitions,
    tree_reduce,
    worker_environment,
)
from reco.errors import InputDataError, PipelineError
from reco.io import atomic_path, sweep_stale_temporaries, visible_files, write_parquet
from reco.params import ComputeParams, parse_section
from reco.schema import Columns

START_TIMEOUT_S = 120.0  # generous: two cores shared with other work start processes slowly


class ProcessCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each in its own process group.

    Workers get :func:`reco.compute.worker_environment` and this interpreter's ``sys.path`` (so they
    import ``reco`` and the test modules); :meth:`stop` ends every process it started.

    Examples
    --------
    >>> with ProcessCluster(tmp_path, n_workers=2) as cluster:  # doctest: +SKIP
    ...     cluster.address
    'tcp://127.0.0.1:40123'
    """

    def __init__(self, folder: Path, n_workers: int = 2, scheduler_env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.n_workers = n_workers
        self.scheduler_env = scheduler_env or {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def _start(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", *args],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() reaches the nannies' children
            )
        self.processes.append(process)
        return process

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **worker_environment(1)}
        scheduler_file = self.folder / "scheduler.json"
        self._start(
            [
                "distributed.cli.dask_scheduler",
                "--host", "127.0.0.1",
                "--port", "0",
                "--no-dashboard",
                "--dashboard-address", "127.0.0.1:0",  # its health/metrics HTTP server: loopback too
                "--scheduler-file", str(scheduler_file),
                "--idle-timeout", "900",  # a scheduler orphaned by a killed test run goes away by itself
            ],
            {**env, **self.scheduler_env},
            "scheduler.log",
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError(
                    f"dask scheduler did not start: {(self.folder / 'scheduler.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:"), self.address
        for i in range(self.n_workers):
            self._start(
                [
                    "distributed.cli.dask_worker", self.address,
                    "--host", "127.0.0.1",
                    "--nworkers", "1",
                    "--nthreads", "1",
                    "--no-dashboard",
                    "--dashboard-address", "127.0.0.1:0",
                    "--death-timeout", "60",
                    "--local-directory", str(self.folder / f"worker-{i}"),
                ],
                env,
                f"worker-{i}.log",
            )  # fmt: skip

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)

    def __enter__(self) -> Self:
        try:
            self.start()
            return self
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dask_params(**values: object) -> ComputeParams:
    params: ComputeParams = parse_section(
        "compute", {"engine": "dask", "workers": 2, "threads_per_worker": 1, **values}
    )
    return params


@pytest.fixture(scope="module")
def local_client() -> Iterator[Client]:
    """A LocalCluster of 2 worker processes; a lost task is not retried (lost_worker_retries=0)."""
    with dask_client(dask_params(), lost_worker_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def process_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with ProcessCluster(tmp_path_factory.mktemp("dask-processes"), n_workers=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def process_client(process_cluster: ProcessCluster) -> Iterator[Client]:
    with dask_client(dask_params(scheduler=process_cluster.address), connect_timeout_s=START_TIMEOUT_S) as client:
        client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield client


# --- functions the workers run (module level, so workers import them by name) -------------------


def items_table() -> pl.DataFrame:
    return pl.DataFrame({Columns.item: np.arange(40, dtype=np.int32), "weight": np.linspace(0.1, 4.0, 40)})


def user_profile(users: np.ndarray | None, views: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """A per-user feature as the pipeline writes them (polars, float sums included).

    Sorting by user first makes each user's rows one contiguous run, so the per-user float sums
    do not depend on which other users share the frame (polars sums a scattered group otherwise
    in an order that does): the rule for every per-user aggregate run per partition.
    """
    return (
        views.sort(Columns.user, maintain_order=True)
        .join(items, on=Columns.item, how="left", maintain_order="left")
        .group_by(Columns.user, maintain_order=True)
        .agg(
            pl.len().alias("views"),
            (pl.col(Columns.watch_ratio) * pl.col("weight")).sum().alias("weighted_watch"),
            pl.col(Columns.item).n_unique().alias("distinct_items"),
        )
        .sort(Columns.user)
    )


def slow_first_partition(users: np.ndarray) -> int:
    """Finish the first partition last, so completion order differs from partition order."""
    if users[0] == 0:
        time.sleep(1.0)
    return int(users[0])


class Payload:
    """A large shared object that counts how often it is pickled (here) and unpickled (on a worker)."""

    pickled = 0

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __getstate__(self) -> dict[str, object]:
        Payload.pickled += 1
        return {"values": self.values}

    def __setstate__(self, state: dict[str, object]) -> None:
        global UNPICKLED
        UNPICKLED += 1
        self.values = state["values"]  # type: ignore[assignment]


UNPICKLED = 0


def payload_reader(users: np.ndarray, payload: Payload) -> tuple[int, int, float]:
    return os.getpid(), UNPICKLED, float(payload.values[users].sum())


def thread_settings(users: np.ndarray) -> dict[str, object]:
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS")
    return {**{name: os.environ.get(name) for name in names}, "polars_threads": pl.thread_pool_size()}


def fails_on_bad_input(users: np.ndarray) -> int:
    if users[0] > 0:
        raise InputDataError("data/features/train", f"user {users[0]} has no history")
    return 0


def slow_partition_writer(
    users: np.ndarray, views: pl.DataFrame, items: pl.DataFrame, out_dir: str, marker_dir: str
) -> str:
    """Write this partition's profile atomically, slowly: a kill lands while the file is being written."""
    target = Path(out_dir) / f"part-{users[0]:05d}.parquet"
    with atomic_path(target) as tmp:
        user_profile(users, views, items).write_parquet(tmp)
        Path(marker_dir, f"{users[0]}-{os.getpid()}").touch()
        time.sleep(3.0)
    return target.name


def slow_profile(users: np.ndarray, views: pl.DataFrame, items: pl.DataFrame, marker_dir: str) -> pl.DataFrame:
    Path(marker_dir, f"{users[0]}-{os.getpid()}").touch()
    time.sleep(3.0)
    return user_profile(users, views, items)


def kill_first_running_task(marker_dir: Path, timeout_s: float = START_TIMEOUT_S) -> tuple[str, int]:
    """Wait for a task's marker, SIGKILL the worker process running it; return (its first user, pid)."""
    deadline = time.monotonic() + timeout_s
    while not (markers := sorted(marker_dir.iterdir())):
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.05)
    first_user, pid = markers[0].name.split("-")
    os.kill(int(pid), signal.SIGKILL)
    return first_user, int(pid)


# --- in this process ------------------------------------------------------------------------------


def test_tree_reduce_combines_in_a_fixed_tree() -> None:
    partials = [1e16, 1.0, -1e16, 1.0, 3.0]
    # ((1e16 + 1) + (-1e16 + 1)) + 3: the tree, not left to right (which gives 4.0)
    assert tree_reduce(partials, lambda a, b: a + b) == ((1e16 + 1.0) + (-1e16 + 1.0)) + 3.0
    assert tree_reduce([5], lambda a, b: a + b) == 5
    with pytest.raises(ValueError):
        tree_reduce([], lambda a, b: a + b)


def test_environ_is_restored_after_the_block() -> None:
    before = dict(os.environ)
    os.environ.pop("RECO_TEST_TOUCHED", None)
    with _environ({"POLARS_MAX_THREADS": "3"}, restore=["RECO_TEST_TOUCHED"]):
        assert os.environ["POLARS_MAX_THREADS"] == "3"
        os.environ["RECO_TEST_TOUCHED"] = "x"  # as a Nanny's pre-spawn variables do
    assert dict(os.environ) == before


def test_without_a_client_the_partitions_run_here_with_the_same_slices() -> None:
    views, items = views_table(), items_table()
    expected = user_profile(None, views, items)
    for n_partitions in (1, 7):
        got = concat_user_partitions(
            None, user_profile, views[Columns.user], n_partitions, per_user={"views": views}, broadcast={"items": items}
        )
        assert got.equals(expected)
    with compute_client(parse_section("compute", {"engine": "local"})) as client:
        assert client is None
    with pytest.raises(InputDataError):  # the original error, not a PartitionError, in this process
        map_user_partitions(None, fails_on_bad_input, [0, 5], 2)


def test_unreachable_scheduler_is_a_clear_compute_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with (
        pytest.raises(ComputeError, match=rf"compute.scheduler = {address}: cannot connect") as raised,
        dask_client(dask_params(scheduler=address), connect_timeout_s=2),
    ):
        pass
    assert isinstance(raised.value, PipelineError)  # a stage exits with code 2


def test_iterating_partitions_locally_computes_them_one_at_a_time() -> None:
    calls: list[int] = []

    def record(users: np.ndarray) -> int:
        calls.append(int(users[0]))
        return int(users[0])

    results = iter_user_partitions(None, record, np.arange(10), 5)
    assert next(results) == 0 and calls == [0]  # the second partition waits for the caller
    assert list(results) == [2, 4, 6, 8]


# --- a LocalCluster of 2 worker processes ------------------------------------------------------


@pytest.mark.parametrize("n_partitions", [1, 3, 8, 500])
def test_map_user_partitions_gives_the_local_result_whatever_the_partition_count(
    local_client: Client, n_partitions: int
) -> None:
    views, items = views_table(), items_table()
    expected = user_profile(None, views, items)
    got = concat_user_partitions(
        local_client,
        user_profile,
        views[Columns.user],
        n_partitions,
        per_user={"views": views},
        broadcast={"items": items},
    )
    assert got.equals(expected)  # bit for bit, float sums included


def test_results_come_back_in_partition_order_not_finishing_order(local_client: Client) -> None:
    users = np.arange(0, 40)
    firsts = map_user_partitions(local_client, slow_first_partition, users, 4)
    assert firsts == [0, 10, 20, 30]


def test_iterated_partitions_come_back_in_order_with_a_bounded_window(local_client: Client) -> None:
    users = np.arange(0, 40)
    assert list(iter_user_partitions(local_client, slow_first_partition, users, 4, max_in_flight=2)) == [0, 10, 20, 30]
    partial = iter_user_partitions(local_client, slow_first_partition, users, 4, max_in_flight=1)
    assert next(partial) == 0
    partial.close()  # the caller stops early: the rest is cancelled, nothing raises


def test_broadcast_object_is_sent_once_not_with_every_task(local_client: Client) -> None:
    Payload.pickled = 0
    payload = Payload(np.arange(1000, dtype=np.float64))
    results = map_user_partitions(
        local_client, payload_reader, np.arange(0, 1000, 7), 12, broadcast={"payload": payload}
    )
    assert Payload.pickled == 1  # serialised once here, for 12 tasks
    unpickled_per_worker: dict[int, int] = {}
    for pid, unpickled, _ in results:
        unpickled_per_worker[pid] = max(unpickled_per_worker.get(pid, 0), unpickled)
    assert all(count == 1 for count in unpickled_per_worker.values())  # and received once per worker
    assert sum(r[2] for r in results) == float(np.arange(0, 1000, 7).sum())


def test_tree_reduce_on_the_cluster_is_the_local_tree(local_client: Client) -> None:
    partials = [1e16, 1.0, -1e16, 1.0, 3.0, 0.1, 0.2]
    futures = local_client.scatter(partials)  # partials left on the workers
    assert tree_reduce(futures, operator.add, client=local_client) == tree_reduce(partials, operator.add)
    assert tree_reduce(partials, operator.add, client=local_client) == tree_reduce(partials, operator.add)


def test_workers_run_with_pinned_thread_counts(local_client: Client) -> None:
    settings = map_user_partitions(local_client, thread_settings, [1, 2], 2)
    expected = {**worker_environment(1), "polars_threads": 1}
    assert all({k: s[k] for k in expected} == expected for s in settings)


def test_pipeline_error_in_a_partition_comes_back_with_its_message(local_client: Client) -> None:
    with pytest.raises(PartitionError, match=r"InputDataError: data/features/train: user 5 has no history"):
        map_user_partitions(local_client, fails_on_bad_input, [0, 5], 2)


def test_worker_killed_mid_task_without_retries_fails_clearly_and_writes_nothing(
    local_client: Client, tmp_path: Path
) -> None:
    """lost_worker_retries=0: the kill is final; the error names the partition, no output exists."""
    local_client.wait_for_workers(2, timeout=START_TIMEOUT_S)
    views, items = views_table(), items_table()
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out" / "profile.parquet"

    def stage() -> None:
        profile = concat_user_partitions(
            local_client,
            slow_profile,
            views[Columns.user],
            2,
            per_user={"views": views},
            broadcast={"items": items},
            marker_dir=str(markers),
        )
        write_parquet(profile, out)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(stage)
        kill_first_running_task(markers)
        # KilledWorker, or its slice lost with the worker: both name the partition and the death.
        with pytest.raises(
            ComputeError,
            match=r"slow_profile: user partition \d of 2 \(users .*\): its worker died",
        ):
            running.result(timeout=START_TIMEOUT_S)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())


# --- a scheduler and two workers started as separate processes ----------------------------------


def test_separate_process_cluster_is_reached_through_compute_scheduler(
    process_cluster: ProcessCluster, process_client: Client
) -> None:
    assert process_client.scheduler.address == process_cluster.address
    workers = process_client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    views, items = views_table(), items_table()
    got = concat_user_partitions(
        process_client, user_profile, views[Columns.user], 5, per_user={"views": views}, broadcast={"items": items}
    )
    assert got.equals(user_profile(None, views, items))
    assert all(s["POLARS_MAX_THREADS"] == "1" for s in map_user_partitions(process_client, thread_settings, [1, 2], 2))


def test_worker_killed_mid_write_is_retried_and_every_output_is_whole(process_client: Client, tmp_path: Path) -> None:
    """The scheduler's default 3 retries: the killed partition is rerun elsewhere; its stale temporary is swept."""
    process_client.wait_for_workers(2, timeout=START_TIMEOUT_S)
    views, items = views_table(), items_table()
    markers, out_dir = tmp_path / "markers", tmp_path / "profiles"
    markers.mkdir()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            map_user_partitions,
            process_client,
            slow_partition_writer,
            views[Columns.user],
            4,
            per_user={"views": views},
            broadcast={"items": items},
            out_dir=str(out_dir),
            marker_dir=str(markers),
        )
        killed_user, killed_pid = kill_first_running_task(markers)
        names = running.result(timeout=4 * START_TIMEOUT_S)
    runs_of_killed = {int(m.name.split("-")[1]) for m in markers.iterdir() if m.name.split("-")[0] == killed_user}
    assert killed_pid in runs_of_killed and len(runs_of_killed) == 2  # it was run again, by another process
    assert [p.name for p in visible_files(out_dir)] == sorted(names) and len(names) == 4
    written = pl.concat([pl.read_parquet(out_dir / name) for name in names])
    assert written.equals(user_profile(None, views, items))
    for name in names:  # the killed writer's temporary, if the rerun has not swept it already
        sweep_stale_temporaries(out_dir / name)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)
