"""Atomic writers: every output is written to a temporary sibling and renamed into place.

A stage killed mid-write therefore never leaves a file that a later stage could mistake for a
finished one; ``dvc repro`` simply reruns the stage.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
    """Yield an empty temporary folder beside ``path``; swap it in for ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
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
