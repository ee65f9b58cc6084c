"""The measured pipeline runs in a copy: every stage alone, the whole pipeline, a no-op repro.

Each stage runs as ``python -m dvc repro --force --single-item STAGE`` in its own subprocess,
reaped with ``os.wait4`` (wall time, CPU time, peak RSS of the largest single process), with its
process tree's memory sampled meanwhile (``sampled``: see :mod:`.tree_memory`), and the stage's
command measured alone through the measuring ``$SHELL`` (``command``).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import MIB
from .measuring import (
    SHELL_WRAPPER_NAME,
    BenchmarkError,
    Measured,
    check,
    dvc_argv,
    dvc_env,
    log_tail,
    read_commands,
    run_measured,
)
from .workspace import topological_stages


class StageFailed(BenchmarkError):
    """A stage failed; ``row`` holds what was measured of it (its exit code included)."""

    def __init__(self, message: str, row: dict[str, Any]) -> None:
        super().__init__(message)
        self.row = row


def stage_row(name: str, result: Measured, command: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One table row: the dvc subprocess's measures, plus the stage command's own (or None).

    ``sampled`` (the process-tree memory) is present only when the tree was sampled.
    """
    row = {
        "stage": name,
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "peak_rss_bytes": result.peak_rss_bytes,
        "returncode": result.returncode,
        "command": dict(command) if command else None,
    }
    if result.tree is not None:
        row["sampled"] = result.tree
    return row


def run_stage(
    work: Path, logs: Path, wrapper: Path, name: str, timeout_s: float,
    env_extra: Mapping[str, str] | None = None, label: str = "", sample_tree: bool = True,
    live: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """``dvc repro --force --single-item NAME``, measured; returns its :func:`stage_row`.

    ``env_extra`` is added to the environment of DVC and the stage command; ``sample_tree`` samples
    the process tree's memory; ``live`` prints the stage's name before it runs (off when several
    stages run at once, whose lines would interleave). Raises :class:`StageFailed` (with the row)
    when the stage fails or the wrapper's record is missing.
    """
    if live:
        print(f"  {label}stage {name} ...", end="", flush=True, file=sys.stderr)
    rusage = logs / f"stage-{name}.commands.jsonl"
    rusage.unlink(missing_ok=True)  # a stage may run more than once in one copy
    result = run_measured(
        dvc_argv("repro", "--force", "--single-item", name), work, logs / f"stage-{name}.log",
        env=dvc_env(wrapper, rusage, env_extra), timeout_s=timeout_s, sample_tree=sample_tree,
        command_marker=str(wrapper.parent / SHELL_WRAPPER_NAME),
    )  # fmt: skip
    commands = read_commands(rusage)
    print(
        ("" if live else f"  {label}stage {name}")
        + f" {result.wall_s:.1f} s, peak RSS {result.peak_rss_bytes / MIB:.0f} MiB"
        + (f" (command {commands[0]['wall_s']:.1f} s, {commands[0]['peak_rss_bytes'] / MIB:.0f} MiB)" if commands else ""),
        file=sys.stderr,
    )
    row = stage_row(name, result, commands[0] if commands else None)
    try:
        check(result, f"stage {name}")
    except BenchmarkError as error:
        raise StageFailed(str(error), row) from None
    if len(commands) != 1 or commands[0]["stage"] != name:
        raise StageFailed(f"stage {name}: expected one command record from the shell wrapper, got {commands}", row)
    return row


def run_stages(
    work: Path, logs: Path, wrapper: Path, timeout_s: float, rows: list[dict[str, Any]] | None = None,
    stages: Sequence[str] | None = None, env_extra: Mapping[str, str] | None = None, label: str = "",
    sample_tree: bool = True, live: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every stage (or ``stages``) once, in topological order, each as ``dvc repro --force --single-item``.

    Rows are appended to ``rows`` (a new list by default) as they come, the failed stage's row
    included, so a caller keeps the measurements made before a failure. The other options are
    :func:`run_stage`'s.
    """
    rows = [] if rows is None else rows
    for name in stages if stages is not None else topological_stages(work):
        try:
            rows.append(run_stage(work, logs, wrapper, name, timeout_s, env_extra, label, sample_tree, live))
        except StageFailed as failed:
            rows.append(failed.row)
            raise
    return rows


def stages_in_log(path: str | Path) -> list[str]:
    """Stages DVC ran (or restored from its run cache) according to a ``dvc repro`` log."""
    text = log_tail(path, chars=10**8)
    return [ran or cached for ran, cached in re.findall(r"Running stage '([^']+)'|Stage '([^']+)' is cached", text)]


def lock_outputs(work: Path, stages: Sequence[str] | None = None) -> list[str]:
    """Every output path recorded in ``dvc.lock`` (cached or not), of every stage or only of ``stages``."""
    import yaml

    lock_path = work / "dvc.lock"
    if not lock_path.is_file():
        return []
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    return [
        out["path"]
        for name, stage in (lock.get("stages") or {}).items()
        if stages is None or name in stages
        for out in stage.get("outs") or []
    ]


def wipe_outputs(work: Path, stages: Sequence[str] | None = None) -> None:
    """Delete the pipeline's outputs (per ``dvc.lock``; only ``stages``' if given) and the DVC cache: a cold start."""
    for name in lock_outputs(work, stages):
        path = work / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(work / ".dvc" / "cache", ignore_errors=True)


def run_whole_repro(work: Path, logs: Path, wrapper: Path, timeout_s: float) -> dict[str, Any]:
    """One ``dvc repro --force`` of the whole pipeline after wiping outputs and cache.

    ``commands`` holds each stage command's own measures; ``commands_wall_s`` their sum (the rest
    of ``wall_s`` is DVC: start-up, hashing, caching, lock files).
    """
    wipe_outputs(work)
    print("  whole dvc repro --force ...", end="", flush=True, file=sys.stderr)
    rusage = logs / "whole-repro.commands.jsonl"
    result = check(
        run_measured(dvc_argv("repro", "--force"), work, logs / "whole-repro.log", env=dvc_env(wrapper, rusage), timeout_s=timeout_s),
        "whole dvc repro",
    )
    commands = read_commands(rusage)
    print(f" {result.wall_s:.1f} s (stage commands {sum(c['wall_s'] for c in commands):.1f} s)", file=sys.stderr)
    return {
        **stage_row("dvc repro --force", result),
        "stages_run": stages_in_log(result.log),
        "commands": commands,
        "commands_wall_s": sum(c["wall_s"] for c in commands),
    }


def run_noop_repro(work: Path, logs: Path, wrapper: Path) -> dict[str, Any]:
    """A ``dvc repro`` with nothing to do; ``stages_run`` must be empty."""
    rusage = logs / "noop-repro.commands.jsonl"
    result = check(
        run_measured(dvc_argv("repro"), work, logs / "noop-repro.log", env=dvc_env(wrapper, rusage), timeout_s=600),
        "no-op dvc repro",
    )
    print(f"  no-op dvc repro {result.wall_s:.2f} s", file=sys.stderr)
    ran = stages_in_log(result.log) or [c["stage"] for c in read_commands(rusage)]
    return {**stage_row("dvc repro (no-op)", result), "stages_run": ran}
