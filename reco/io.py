"""Atomic writers: every output is written to a temporary sibling and renamed into place.

A stage killed mid-write therefore never leaves a file that a later stage could mistake for a finished
one; the temporaries a killed process left behind are swept by the next write to the same path, and
:class:`StreamedParquetWriter` writes a table chunk by chunk with the bytes it would have whole. See
docs/design/core.md.
"""

from __future__ import annotations

import hashlib
import io
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


def write_parquet_rows(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` exactly as :func:`write_parquet` does, but not atomically (into a temporary folder)."""
    frame.write_parquet(path, compression="zstd", statistics=False)


def polars_row_group_sizes(n_rows: int) -> list[int]:
    """Rows of each row group that :func:`write_parquet` gives an ``n_rows``-row frame held in one chunk.

    ``DataFrame.write_parquet`` streams the frame through polars' parquet sink, which cuts it
    into row groups by a rule of polars' own (with polars 2.1: about ``n_rows / 122_880`` groups
    of near-equal size, the larger ones first). The rule is not public and may change between
    versions, so it is asked of polars itself: a frame of ``n_rows`` nulls (no buffers, so no
    memory per row) is written to memory and its row groups are read back. (Checked against the
    full-profile sets, whose row groups it gives exactly.)

    Examples
    --------
    >>> sum(polars_row_group_sizes(300_000))
    300000
    >>> polars_row_group_sizes(0)
    []
    """
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pl.select(pl.repeat(None, n_rows, dtype=pl.Null, eager=True)).write_parquet(buffer, statistics=False)
    buffer.seek(0)
    metadata = pq.ParquetFile(buffer).metadata
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]


class StreamedParquetWriter:
    """Write a table that arrives in chunks with the bytes that :func:`write_parquet` gives the whole table.

    polars cannot append to a parquet file, and its row groups (hence the bytes) depend on how
    the written frame is cut. :meth:`write` spills each chunk to a scratch parquet file in
    ``scratch_dir``; :meth:`close` learns the row groups that ``write_parquet`` would cut the
    concatenated table (in one chunk) into (:func:`polars_row_group_sizes`), and feeds polars'
    parquet sink, through an IO-source plugin, exactly those row groups, one at a time, read back
    from the scratch files. The file is then byte for byte the one ``write_parquet`` writes from
    the whole table, while memory holds one scratch file and one row group.

    Parameters
    ----------
    path
        The output file (write it into a temporary folder, e.g. :func:`atomic_dir`'s).
    scratch_dir
        An existing folder for the scratch files; they are removed by :meth:`close` and
        :meth:`abort`.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> frame = pl.DataFrame({"a": range(10)})
    >>> writer = StreamedParquetWriter(folder / "a.parquet", folder)
    >>> writer.write(frame.head(4)); writer.write(frame.tail(6)); writer.close()
    >>> write_parquet(frame, folder / "b.parquet")
    >>> (folder / "a.parquet").read_bytes() == (folder / "b.parquet").read_bytes()
    True
    """

    def __init__(self, path: str | os.PathLike[str], scratch_dir: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._scratch = Path(scratch_dir)
        self._spills: list[Path] = []
        self._schema: pl.Schema | None = None
        self._rows = 0

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return self._rows

    def write(self, frame: pl.DataFrame) -> None:
        """Add ``frame``'s rows after those already written (same schema as the first frame)."""
        if self._schema is None:
            self._schema = frame.schema
        elif frame.schema != self._schema:
            raise ValueError(f"{self.path.name}: schema {frame.schema} differs from the first chunk's {self._schema}")
        if frame.height == 0:
            return
        spill = self._scratch / f".{self.path.stem}.{len(self._spills):06d}.parquet"
        frame.write_parquet(spill, compression="lz4", statistics=False)
        self._spills.append(spill)
        self._rows += frame.height

    def _row_groups(self) -> Iterator[pl.DataFrame]:
        """The table in the row groups of ``write_parquet``, each one contiguous chunk."""
        pending: list[pl.DataFrame] = []
        pending_rows = 0
        spills = iter(self._spills)
        for size in polars_row_group_sizes(self._rows):
            while pending_rows < size:
                spill = next(spills)
                part = pl.read_parquet(spill)
                spill.unlink()
                pending.append(part)
                pending_rows += part.height
            rows = pl.concat(pending, rechunk=False)
            yield rows.slice(0, size).rechunk()
            rest = rows.slice(size)
            pending, pending_rows = [rest], rest.height
        if pending_rows or next(spills, None) is not None:
            raise AssertionError(f"{self.path.name}: the row groups do not add up to the {self._rows} rows written")

    def close(self) -> None:
        """Write the file (an empty frame if only empty frames came) and remove the scratch files."""
        if self._schema is None:
            raise ValueError(f"{self.path.name}: nothing was written, not even an empty frame")
        schema = self._schema
        try:
            if self._rows == 0:
                write_parquet_rows(pl.DataFrame(schema=schema), self.path)
                return
            from polars.io.plugins import register_io_source

            groups = self._row_groups()

            def source(
                with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
            ) -> Iterator[pl.DataFrame]:
                # The sink reads every row, unfiltered: each batch becomes one row group as it is.
                if predicate is not None or n_rows is not None:
                    raise AssertionError(f"{self.path.name}: the streamed writer's rows must be read whole")
                for group in groups:
                    yield group if with_columns is None else group.select(with_columns)

            table = register_io_source(source, schema=schema, validate_schema=True)
            table.sink_parquet(self.path, compression="zstd", statistics=False)
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the scratch files (after an error, or once closed)."""
        for spill in self._spills:
            spill.unlink(missing_ok=True)
        self._spills = []


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
