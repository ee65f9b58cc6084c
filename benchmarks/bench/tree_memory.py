"""Resident memory of a whole process tree, sampled while a command runs.

``os.wait4`` reports the largest peak of any single process; a stage that starts worker
processes (a ``distributed.LocalCluster`` for ``compute.engine: dask``) needs the sum over the
tree as well. :class:`TreeMemorySampler` reads the tree every :data:`SAMPLE_INTERVAL_S` seconds
from ``/proc`` (``psutil`` where there is no ``/proc``) and keeps the maxima of:

``tree_peak_rss_bytes``
    the sum over every process under the measured one (DVC, the measuring shell, the stage, its
    workers);
``stage_process_peak_rss_bytes``
    the stage process alone: the first process under the measuring shell wrapper that is not a
    shell (``sh -c CMD`` may or may not exec the command);
``stage_tree_peak_rss_bytes``
    the stage process plus all its descendants (its worker processes).

A sum of RSS counts the pages processes share (libraries, copy-on-write memory) once per process,
so it is an upper bound of the memory the tree needs; peaks shorter than the interval can be missed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SAMPLE_INTERVAL_S: Final = 0.2
SHELL_NAMES: Final = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
PROC: Final = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    """One process of a sampled tree."""

    pid: int
    ppid: int
    rss_bytes: int
    name: str  # the executable's short name (changes at exec)
    cmdline: str  # arguments joined by spaces


@dataclass(frozen=True)
class TreeSample:
    """One snapshot of a tree, summed (the ``stage_*`` fields are None when no stage process was found)."""

    tree_rss_bytes: int
    processes: int
    stage_pid: int | None
    stage_process_rss_bytes: int | None
    stage_tree_rss_bytes: int | None
    stage_tree_processes: int | None


def _children_map(processes: Iterable[ProcessInfo]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in sorted(processes, key=lambda p: p.pid):
        children.setdefault(proc.ppid, []).append(proc.pid)
    return children


def _subtree(root: int, children: Mapping[int, list[int]]) -> list[int]:
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


def find_stage_process(
    processes: Mapping[int, ProcessInfo], children: Mapping[int, list[int]], command_marker: str
) -> int | None:
    """The stage process: below the process whose command line holds ``command_marker``, skip shells.

    The wrapper runs ``sh -c CMD``; the shell either execs CMD (same pid, new name) or starts it as
    its only child, so single-child shells are walked through.
    """
    wrapper = next((p.pid for p in processes.values() if command_marker in p.cmdline), None)
    if wrapper is None or not children.get(wrapper):
        return None
    current = children[wrapper][0]
    while processes[current].name in SHELL_NAMES and len(children.get(current, [])) == 1:
        current = children[current][0]
    return current


def summarize_tree(processes: Iterable[ProcessInfo], root_pid: int, command_marker: str | None) -> TreeSample:
    """Sum one snapshot of the processes under ``root_pid`` (root included; others are ignored).

    Examples
    --------
    >>> procs = [ProcessInfo(1, 0, 100, "dvc", "python -m dvc repro"),
    ...          ProcessInfo(2, 1, 10, "python", "python -S /tmp/x/bench-shell -c python -m stages.a"),
    ...          ProcessInfo(3, 2, 5, "sh", "sh -c python -m stages.a"),
    ...          ProcessInfo(4, 3, 400, "python", "python -m stages.a"),
    ...          ProcessInfo(5, 4, 300, "python", "dask worker")]
    >>> s = summarize_tree(procs, 1, "bench-shell")
    >>> (s.tree_rss_bytes, s.stage_pid, s.stage_process_rss_bytes, s.stage_tree_rss_bytes)
    (815, 4, 400, 700)
    """
    by_pid = {p.pid: p for p in processes}
    children = _children_map(by_pid.values())
    tree = [pid for pid in _subtree(root_pid, children) if pid in by_pid]
    by_pid = {pid: by_pid[pid] for pid in tree}
    stage = find_stage_process(by_pid, children, command_marker) if command_marker else None
    stage_tree = [pid for pid in _subtree(stage, children) if pid in by_pid] if stage is not None else None
    return TreeSample(
        tree_rss_bytes=sum(p.rss_bytes for p in by_pid.values()),
        processes=len(by_pid),
        stage_pid=stage,
        stage_process_rss_bytes=by_pid[stage].rss_bytes if stage is not None else None,
        stage_tree_rss_bytes=sum(by_pid[pid].rss_bytes for pid in stage_tree) if stage_tree is not None else None,
        stage_tree_processes=len(stage_tree) if stage_tree is not None else None,
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # the process exited meanwhile
        return None


class _ProcReader:
    """Reads the processes under a root from ``/proc``; parent pids are cached (they do not change at exec)."""

    def __init__(self) -> None:
        self._ppid: dict[int, int] = {}
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _refresh_parents(self) -> None:
        pids = {int(name) for name in os.listdir(PROC) if name.isdigit()}
        self._ppid = {pid: ppid for pid, ppid in self._ppid.items() if pid in pids}
        for pid in pids - self._ppid.keys():
            stat = _read(PROC / str(pid) / "stat")
            if stat:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                self._ppid[pid] = int(stat[stat.rfind(b")") + 2 :].split(None, 2)[1])

    def processes(self, root_pid: int) -> list[ProcessInfo]:
        self._refresh_parents()
        children: dict[int, list[int]] = {}
        for pid, ppid in self._ppid.items():
            children.setdefault(ppid, []).append(pid)
        found = []
        for pid in _subtree(root_pid, children):
            base = PROC / str(pid)
            statm, comm, cmdline = _read(base / "statm"), _read(base / "comm"), _read(base / "cmdline")
            if statm is None or comm is None or cmdline is None:
                continue
            found.append(
                ProcessInfo(
                    pid=pid,
                    ppid=self._ppid[pid],
                    rss_bytes=int(statm.split()[1]) * self._page,
                    name=comm.decode(errors="replace").strip(),
                    cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
                )
            )
        return found


def _psutil_processes(root_pid: int) -> list[ProcessInfo]:
    import psutil

    found = []
    try:
        root = psutil.Process(root_pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    for proc in members:
        try:
            with proc.oneshot():
                found.append(
                    ProcessInfo(proc.pid, proc.ppid(), proc.memory_info().rss, proc.name(), " ".join(proc.cmdline()))
                )
        except psutil.Error:
            continue
    return found


class TreeMemorySampler:
    """Samples a process tree in a background thread until :meth:`stop`; :meth:`result` has the peaks.

    Parameters
    ----------
    root_pid
        The measured process (its whole tree is sampled).
    command_marker
        A string in the command line of the measuring shell wrapper under which the stage command
        runs; None: only the whole tree's sum is kept.
    interval_s
        Seconds between samples.
    """

    def __init__(self, root_pid: int, command_marker: str | None = None, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.root_pid = root_pid
        self.command_marker = command_marker
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tree-memory-{root_pid}", daemon=True)
        self._reader = _ProcReader() if PROC.is_dir() else None
        self._samples = 0
        self._peaks: dict[str, int] = {}
        self._error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        procs = self._reader.processes(self.root_pid) if self._reader else _psutil_processes(self.root_pid)
        if not procs:
            return
        sample = summarize_tree(procs, self.root_pid, self.command_marker)
        self._samples += 1
        for key in ("tree_rss_bytes", "stage_process_rss_bytes", "stage_tree_rss_bytes", "stage_tree_processes"):
            value = getattr(sample, key)
            if value is not None:
                self._peaks[key] = max(self._peaks.get(key, 0), value)

    def _loop(self) -> None:
        try:
            while True:
                self._sample()
                if self._stop.wait(self.interval_s):
                    return
        except Exception as error:  # noqa: BLE001 - a sampling failure must not fail the measured run
            self._error = f"{type(error).__name__}: {error}"

    def result(self) -> dict[str, Any]:
        """The peaks (None where never seen), the sample count and interval, and any sampling error."""
        return {
            "interval_s": self.interval_s,
            "samples": self._samples,
            "tree_peak_rss_bytes": self._peaks.get("tree_rss_bytes"),
            "stage_process_peak_rss_bytes": self._peaks.get("stage_process_rss_bytes"),
            "stage_tree_peak_rss_bytes": self._peaks.get("stage_tree_rss_bytes"),
            "stage_tree_max_processes": self._peaks.get("stage_tree_processes"),
            "error": self._error,
        }
