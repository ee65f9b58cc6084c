"""Atomic writers: every output is written to a temporary sibling and renamed into place.

A stage killed mid-write therefore never leaves a file that a later stage could mistake for a
finished one; ``dvc repro`` simply reruns the stage.

Temporaries are hidden siblings named ``.<name>.<pid>.<random>.tmp`` (a replaced folder is parked
as ``.<name>.<pid>.<random>.old.tmp`` for the instant of the swap). A process killed with SIGKILL
cannot clean up after itself, so the next write to the same path removes the temporaries whose
process id is no longer running (:func:`sweep_stale_temporaries`); those of a live process are
left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

_TMP_SUFFIX = ".tmp"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _pid_is_running(pid: int) -> bool:
    """True if ``pid`` names a live (or zombie) process; permission errors count as alive."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``path`` left by writers that no longer run (e.g. killed by SIGKILL).

    Parameters
    ----------
    path
        The output whose hidden siblings ``.<name>.<pid>.*.tmp`` are checked.

    Returns
    -------
    list[Path]
        The temporaries removed.

    Examples
    --------
    >>> sweep_stale_temporaries("data/prepared")  # doctest: +SKIP
    [PosixPath('data/.prepared.4242.k2j1x9_a.tmp')]
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    removed = []
    prefix = f".{target.name}."
    for leftover in target.parent.glob(f"{prefix}*{_TMP_SUFFIX}"):
        pid = leftover.name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or _pid_is_running(int(pid)):
            continue  # not ours, or a writer that is still running
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=_TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; swap it in for ``path`` on success.

    The swap is two renames (old folder aside, new folder in); a kill between them leaves
    ``path`` absent, never half written, and the parked old folder is swept by the next write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=_TMP_SUFFIX, dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if target.exists():
            old = tmp.with_name(tmp.name.removesuffix(_TMP_SUFFIX) + ".old" + _TMP_SUFFIX)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` as zstd parquet, atomically; statistics off so bytes depend on data only."""
    _write_with(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=False))


def write_json(payload: Any, path: str | os.PathLike[str]) -> None:
    """Write ``payload`` as indented, key-sorted JSON (stable bytes for ``dvc metrics diff``)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write UTF-8 text atomically."""
    _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_npy(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a numeric array as ``.npy`` (no pickle), atomically."""
    if array.dtype == object:
        raise TypeError("refusing to write an object array: .npy files are loaded with allow_pickle=False")

    def _save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    _write_with(path, _save)


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a ``.npy`` file without ever unpickling."""
    return np.load(path, allow_pickle=False)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (``hashlib.file_digest``: buffered reads, constant memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def visible_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Files under ``folder``, hidden ones (any dot-part, e.g. temporaries) skipped, sorted by relative path."""
    root = Path(folder)
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def folder_checksums(
    folder: str | os.PathLike[str], known: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": n, "sha256": hex}}`` of :func:`visible_files` (what ``sha256sum`` prints).

    A file listed in ``known`` with the same size and a ``sha256`` keeps that digest instead of
    being read again (a record made when the file was written, e.g. ``manifest.json``'s).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("x\\n")
    >>> folder_checksums(d)["a.csv"]["bytes"]
    2
    >>> folder_checksums(d, known={"a.csv": {"bytes": 2, "sha256": "ab"}})["a.csv"]["sha256"]
    'ab'
    """
    root = Path(folder)
    known = known or {}
    checksums: dict[str, dict[str, Any]] = {}
    for path in visible_files(root):
        name = path.relative_to(root).as_posix()
        size = path.stat().st_size
        record = known.get(name) or {}
        digest = record.get("sha256") if record.get("bytes") == size else None
        checksums[name] = {"bytes": size, "sha256": digest or file_sha256(path)}
    return checksums
