"""The benchmark's process-tree memory: the stage process found under the measuring shell, worker processes summed.

The first tests use hand-made snapshots; the last one samples a real (small) process tree: a parent
that starts two worker processes, each holding a known amount of memory. Memory is asserted with
generous bounds, never time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.bench.measuring import child_env, run_measured, write_shell_wrapper
from benchmarks.bench.tree_memory import ProcessInfo, summarize_tree

MIB = 1024**2
MARKER = "/tmp/reco-bench-x/bench-shell"


def dask_like_tree(shell_execs: bool) -> list[ProcessInfo]:
    """DVC -> measuring wrapper -> (sh ->) stage -> nanny -> 2 workers, plus a process outside the tree."""
    stage_parent = 2 if shell_execs else 3
    procs = [
        ProcessInfo(1, 0, 90 * MIB, "python", "python -m dvc repro --force --single-item features@train"),
        ProcessInfo(2, 1, 8 * MIB, "python", f"python -S {MARKER} -c python -m stages.features train"),
        ProcessInfo(4, stage_parent, 400 * MIB, "python", "python -m stages.features train"),
        ProcessInfo(5, 4, 60 * MIB, "python", "python -m distributed.cli.dask_worker (nanny)"),
        ProcessInfo(6, 5, 700 * MIB, "python", "dask worker 1"),
        ProcessInfo(7, 5, 650 * MIB, "python", "dask worker 2"),
        ProcessInfo(99, 0, 5000 * MIB, "python", "someone else's job"),
    ]
    if not shell_execs:
        procs.append(ProcessInfo(3, 2, 2 * MIB, "sh", "sh -c python -m stages.features train"))
    return procs


@pytest.mark.parametrize("shell_execs", [False, True])
def test_the_stage_process_is_found_under_the_wrapper_and_its_workers_are_summed(shell_execs: bool) -> None:
    sample = summarize_tree(dask_like_tree(shell_execs), root_pid=1, command_marker=MARKER)
    assert sample.stage_pid == 4
    assert sample.stage_process_rss_bytes == 400 * MIB
    assert sample.stage_tree_rss_bytes == (400 + 60 + 700 + 650) * MIB
    assert sample.stage_tree_processes == 4
    shell = 0 if shell_execs else 2
    assert sample.tree_rss_bytes == (90 + 8 + shell + 400 + 60 + 700 + 650) * MIB  # the other job is not in the tree


def test_without_a_marker_or_before_the_command_starts_only_the_tree_is_summed() -> None:
    procs = dask_like_tree(shell_execs=True)
    no_marker = summarize_tree(procs, root_pid=1, command_marker=None)
    assert no_marker.stage_pid is None and no_marker.stage_tree_rss_bytes is None
    assert no_marker.tree_rss_bytes == (90 + 8 + 400 + 60 + 700 + 650) * MIB
    just_dvc = summarize_tree(procs[:1], root_pid=1, command_marker=MARKER)  # the wrapper has not started yet
    assert just_dvc.stage_pid is None and just_dvc.tree_rss_bytes == 90 * MIB


WORKERS_SCRIPT = """\
import multiprocessing, time

def hold(mib):
    block = bytearray(mib * 2**20)  # bytearray pages are written: resident
    time.sleep(2.0)

if __name__ == "__main__":
    own = bytearray(20 * 2**20)
    workers = [multiprocessing.get_context("spawn").Process(target=hold, args=(80,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
"""


@pytest.mark.skipif(not Path("/proc").is_dir() or sys.platform != "linux", reason="reads /proc")
def test_sampling_a_real_tree_sees_the_worker_processes(tmp_path: Path) -> None:
    wrapper = write_shell_wrapper(tmp_path)
    script = tmp_path / "stage.py"
    script.write_text(WORKERS_SCRIPT, encoding="utf-8")
    env = child_env({"RECO_BENCH_RUSAGE": str(tmp_path / "rusage.jsonl")})
    # The wrapper stands in for DVC's $SHELL -c CMD, as in a measured stage.
    measured = run_measured(
        [str(wrapper), "-c", f"{sys.executable} {script}"],
        tmp_path,
        tmp_path / "log",
        env=env,
        sample_tree=True,
        command_marker=str(wrapper),
    )
    assert measured.returncode == 0, (tmp_path / "log").read_text()
    tree = measured.tree
    assert tree is not None and tree["error"] is None and tree["samples"] > 0
    # wait4 sees the largest single process (a worker); the sampled sum sees both workers and the parent
    assert measured.peak_rss_bytes >= 80 * MIB
    assert tree["stage_tree_max_processes"] >= 3
    assert tree["stage_tree_peak_rss_bytes"] >= tree["stage_process_peak_rss_bytes"] + 2 * 75 * MIB
    assert tree["stage_process_peak_rss_bytes"] < 80 * MIB  # the parent alone holds 20 MiB + the interpreter
    assert tree["tree_peak_rss_bytes"] >= tree["stage_tree_peak_rss_bytes"]
