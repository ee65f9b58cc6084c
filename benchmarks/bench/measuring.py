"""Run a command in a subprocess and measure it: exit code, wall time, CPU time, peak RSS.

``os.wait4`` gives the CPU time and ``ru_maxrss`` of the process and every descendant it reaped;
on Linux ``ru_maxrss`` is the largest peak of any single process of that tree, not their sum (the
sum over the tree comes from :mod:`.tree_memory`, sampled while the command runs). DVC runs a
stage's ``cmd`` through ``$SHELL``; :data:`SHELL_WRAPPER` measures the command alone the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .config import DEFAULT_TIMEOUT_S, LOG_TAIL_CHARS
from .tree_memory import TreeMemorySampler

GIT_ENV: Final = {
    "GIT_AUTHOR_NAME": "pipeline-benchmark",
    "GIT_AUTHOR_EMAIL": "pipeline-benchmark@example.invalid",
    "GIT_COMMITTER_NAME": "pipeline-benchmark",
    "GIT_COMMITTER_EMAIL": "pipeline-benchmark@example.invalid",
}


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed (the message says which, with the log's tail)."""


@dataclass(frozen=True)
class Measured:
    """One reaped subprocess: exit code, wall time, CPU time and peak RSS.

    ``tree`` holds the process-tree memory sampled while it ran (see
    :meth:`.tree_memory.TreeMemorySampler.result`), or None when it was not sampled.
    """

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    log: str
    tree: dict[str, Any] | None = None


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for every subprocess: this venv first on PATH, a git identity, no DVC analytics."""
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }
    env.update(extra or {})
    return env


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_measured(
    argv: Sequence[str],
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    sample_tree: bool = False,
    command_marker: str | None = None,
) -> Measured:
    """Run ``argv`` (stdout + stderr to ``log_path``), reap it with ``os.wait4`` and measure it.

    The child gets its own process group, which is killed with SIGKILL after ``timeout_s`` or when
    the benchmark itself is interrupted.

    Parameters
    ----------
    sample_tree
        Also sample the RSS of the child's whole process tree every
        :data:`.tree_memory.SAMPLE_INTERVAL_S` (``Measured.tree``).
    command_marker
        With ``sample_tree``: a string in the command line of the measuring shell wrapper, under
        which the stage command runs (see :class:`.tree_memory.TreeMemorySampler`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sampler: TreeMemorySampler | None = None
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env or child_env()), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if sample_tree:
            sampler = TreeMemorySampler(proc.pid, command_marker)
            sampler.start()
        timer = threading.Timer(timeout_s, _kill_group, args=(proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
            if sampler is not None:
                sampler.stop()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=int(usage.ru_maxrss) * 1024,  # Linux reports KiB
        log=str(log_path),
        tree=sampler.result() if sampler is not None else None,
    )


def log_tail(path: str | Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of a log file ('' if unreadable)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def check(result: Measured, what: str) -> Measured:
    """Raise :class:`BenchmarkError` with the log's tail if ``result`` failed."""
    if result.returncode != 0:
        raise BenchmarkError(
            f"{what} failed with exit code {result.returncode} ({' '.join(result.argv)}); "
            f"log {result.log}:\n{log_tail(result.log)}"
        )
    return result


def run_quiet(argv: Sequence[str], cwd: Path) -> str:
    """Run a short helper command (git, dvc config/dag); return stdout or raise with its output."""
    done = subprocess.run(list(argv), cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def dvc_argv(*args: str) -> list[str]:
    """``python -m dvc ARGS`` with this interpreter (the venv's DVC)."""
    return [sys.executable, "-m", "dvc", *args]


# DVC runs a stage's cmd as ``$SHELL -c CMD`` with ``DVC_STAGE`` set to the stage's name. Pointing
# SHELL at this wrapper measures the command alone (its own wait4) without touching dvc.yaml: it
# runs the real shell, appends one JSON line to $RECO_BENCH_RUSAGE and exits with the command's code.
SHELL_WRAPPER: Final = """\
import json, os, sys, time
shell = os.environ.get("RECO_BENCH_SHELL") or "/bin/sh"
opts = ["--noprofile", "--norc"] if os.path.basename(shell) == "bash" else []
started = time.perf_counter()
pid = os.posix_spawn(shell, [shell, *opts, *sys.argv[1:]], os.environ)
_, status, usage = os.wait4(pid, 0)
record = {
    "stage": os.environ.get("DVC_STAGE"),
    "wall_s": time.perf_counter() - started,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_rss_bytes": usage.ru_maxrss * 1024,
    "returncode": os.waitstatus_to_exitcode(status),
}
with open(os.environ["RECO_BENCH_RUSAGE"], "a", encoding="utf-8") as out:
    out.write(json.dumps(record) + "\\n")
code = record["returncode"]
sys.exit(code if code >= 0 else 128 - code)
"""
SHELL_WRAPPER_NAME: Final = "bench-shell"


def write_shell_wrapper(root: Path) -> Path:
    """Write the measuring shell wrapper (see ``SHELL_WRAPPER``) into ``root``; return its path."""
    path = root / SHELL_WRAPPER_NAME
    path.write_text(f"#!{sys.executable} -S\n{SHELL_WRAPPER}", encoding="utf-8")
    path.chmod(0o755)
    return path


def dvc_env(wrapper: Path, rusage_file: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a measured ``dvc repro``: stage commands run through ``wrapper``.

    ``extra`` (e.g. ``NPY_DISABLE_CPU_FEATURES``) reaches DVC and, through it, the stage commands.
    """
    real_shell = os.environ.get("SHELL") or "/bin/sh"
    if Path(real_shell).resolve() == wrapper.resolve():
        real_shell = "/bin/sh"
    return child_env(
        {"SHELL": str(wrapper), "RECO_BENCH_SHELL": real_shell, "RECO_BENCH_RUSAGE": str(rusage_file), **(extra or {})}
    )


def read_commands(rusage_file: Path) -> list[dict[str, Any]]:
    """The wrapper's records (one per stage command run), in order; [] if none ran."""
    if not rusage_file.is_file():
        return []
    return [json.loads(line) for line in rusage_file.read_text(encoding="utf-8").splitlines() if line.strip()]
