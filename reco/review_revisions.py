"""The two revisions of a review and their files: git-tracked JSON, DVC-tracked per-user metrics, params diff.

A :class:`Revision` is a commit, branch, tag or DVC experiment, or the workspace; its metrics and
params are read from git (the files on disk for the workspace), its per-user metrics from the DVC
cache, and every file that is missing or malformed raises a :class:`ReviewError` that says how to
get it. Used by :mod:`reco.review_compare`. See docs/selection-and-review.md.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl
import yaml

from reco.errors import PipelineError

__all__ = [
    "METRICS_PATH",
    "PER_USER_TEMPLATE",
    "SEED_SPREAD_PATH",
    "ReviewError",
    "Revision",
    "finish_params_diff",
    "headline_seed",
    "one_line",
    "parse_per_user",
    "read_git_json",
    "read_per_user_bytes",
    "resolve_revision",
    "start_params_diff",
    "workspace_revision",
]

METRICS_PATH: Final = "metrics/metrics.json"
SEED_SPREAD_PATH: Final = "metrics/seed_spread.json"
PARAMS_PATH: Final = "params.yaml"
PER_USER_TEMPLATE: Final = "data/evaluation/{block}/per_user.parquet"
PER_USER_SCHEMA: Final[dict[str, type[pl.DataType]]] = {
    "user_id": pl.Int32,
    "model": pl.String,
    "metric": pl.String,
    "k": pl.Int16,
    "value": pl.Float64,
}
PER_USER_KEYS: Final = ("user_id", "model", "metric", "k")
WORKSPACE: Final = "workspace"


class ReviewError(PipelineError):
    """A revision, file or option given to the review is unknown, missing or malformed (exit code 2)."""


@dataclass(frozen=True)
class Revision:
    """One side of the comparison.

    Attributes
    ----------
    name
        The revision as given on the command line (``"main"``, an experiment name, a hash), or
        ``"workspace"``.
    sha
        Full commit hash; for the workspace, the commit it sits on (``None`` in a repository
        without commits).
    is_workspace
        True for the working tree (files read from disk, not from git / the DVC cache).
    """

    name: str
    sha: str | None
    is_workspace: bool = False

    @property
    def short(self) -> str:
        """Seven-character hash, or ``"?"`` without a commit."""
        return self.sha[:7] if self.sha else "?"

    def title(self) -> str:
        """How the revision is named in the Markdown title.

        Examples
        --------
        >>> Revision("main", "8a1fbf8c3e7281").title()
        '`main` (8a1fbf8)'
        >>> Revision("8a1fbf8", "8a1fbf8c3e7281").title()
        '`8a1fbf8`'
        >>> Revision("workspace", "8a1fbf8c3e7281", is_workspace=True).title()
        'workspace (on 8a1fbf8)'
        """
        if self.is_workspace:
            return f"{WORKSPACE} (on {self.short})"
        if self.sha and self.sha.startswith(self.name.lower()):
            return f"`{self.short}`"
        return f"`{self.name}` ({self.short})"


def resolve_revision(root: Path, name: str) -> Revision:
    """Resolve a git revision or DVC experiment name to its commit.

    Raises
    ------
    ReviewError
        ``root`` is not a git repository or ``name`` is not a revision there.
    """
    from dvc.exceptions import DvcException
    from dvc.scm import SCM, resolve_rev

    try:
        scm = SCM(str(root))
    except DvcException as error:
        message = f"{root.resolve()} is not a git repository ({error}); pass the project with --repo DIR"
        raise ReviewError(message) from error
    try:
        return Revision(name=name, sha=resolve_rev(scm, name))
    except DvcException as error:
        raise ReviewError(f"unknown revision {name!r} in {root.resolve()}: {error}") from error
    finally:
        scm.close()


def workspace_revision(root: Path) -> Revision:
    """The working tree of ``root``, labelled with the commit it is on."""
    try:
        sha = resolve_revision(root, "HEAD").sha
    except ReviewError:
        sha = None  # a repository without commits still has a workspace
    return Revision(name=WORKSPACE, sha=sha, is_workspace=True)


def one_line(text: str) -> str:
    """``text`` on one line: every run of whitespace (newlines included) becomes one space."""
    return " ".join(text.split())


def _read_git_text(root: Path, revision: Revision, path: str, *, required: bool, hint: str) -> str | None:
    """A git-tracked file of ``revision`` as text (the file on disk for the workspace); ``None`` if absent."""
    where = f"{path} at {revision.title()}"
    if revision.is_workspace:
        file = root / path
        if not file.is_file():
            if required:
                raise ReviewError(f"{where}: file not found; {hint}")
            return None
        return file.read_text(encoding="utf-8")
    # "REV:./path" is relative to cwd, so a DVC project in a subfolder of the git repo works too.
    result = subprocess.run(
        ["git", "show", f"{revision.sha}:./{path}"], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        if required:
            why = one_line(result.stderr) or f"git exited with {result.returncode}"
            raise ReviewError(f"{where}: not in that commit ({why}); run the evaluate stage there and commit")
        return None
    return result.stdout


def read_git_json(root: Path, revision: Revision, path: str, *, required: bool) -> dict[str, Any] | None:
    """A git-tracked JSON file of ``revision`` (the file on disk for the workspace).

    Returns ``None`` when the file is absent and not ``required``.

    Raises
    ------
    ReviewError
        The file is absent and ``required``, or it is not a JSON object.
    """
    where = f"{path} at {revision.title()}"
    text = _read_git_text(root, revision, path, required=required, hint="run `dvc repro evaluate` first")
    if text is None:
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReviewError(f"{where}: not valid JSON ({error})") from error
    if not isinstance(payload, dict):
        raise ReviewError(f"{where}: expected a JSON object, got {type(payload).__name__}")
    return payload


def headline_seed(root: Path, revision: Revision) -> int | None:
    """The training seed of ``revision``'s headline run, when ALS and the ranker share one.

    The seed spread retrains both with the same seed, so the headline run is one of its seeds only
    when ``als.random_state == ranker.seed``; ``None`` when they differ or ``params.yaml`` does
    not say (the headline run then counts as a seed of its own).
    """
    text = _read_git_text(root, revision, PARAMS_PATH, required=False, hint="")
    try:
        params = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError:
        return None
    if not isinstance(params, dict):
        return None
    als, ranker = params.get("als"), params.get("ranker")
    seeds = {
        section.get(key) if isinstance(section, dict) else None
        for section, key in ((als, "random_state"), (ranker, "seed"))
    }
    seed = seeds.pop() if len(seeds) == 1 else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _missing_per_user_hint(revision: Revision, path: str) -> str:
    if revision.is_workspace:
        return (
            f"run `dvc repro evaluate` (or, if dvc.lock is current, `dvc checkout {path}` / "
            f"`dvc pull -r <remote> {path}`)"
        )
    return (
        f"fetch it into the cache (`dvc fetch -r <remote> --all-commits {path}`, or `dvc exp pull <git-remote> "
        f"{revision.name}` for an experiment) or regenerate it (`git checkout {revision.name}` or "
        f"`dvc exp apply {revision.name}`, then `dvc repro evaluate`)"
    )


def read_per_user_bytes(root: Path, revision: Revision, path: str) -> bytes:
    """Bytes of a DVC-tracked file of ``revision`` (read from the cache), or of the workspace file.

    Raises
    ------
    ReviewError
        The file is not in the revision, or its content is not in the local cache / remote.
    """
    if revision.is_workspace:
        file = root / path
        if not file.is_file():
            hint = _missing_per_user_hint(revision, path)
            raise ReviewError(f"{path} in the {WORKSPACE}: file not found; {hint}")
        return file.read_bytes()

    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(path, repo=str(root), rev=revision.sha, mode="rb") as handle:
            return handle.read()
    except (DvcException, OSError) as error:
        # Both "not declared in that commit" and "declared but not in the cache" land here; tell them apart.
        if not _declared_in(root, revision, path):
            raise ReviewError(
                f"{path} at {revision.title()}: not tracked in that commit (no .dvc file or dvc.lock entry; "
                f"older than per-user metrics?); run evaluate on it (`git checkout {revision.name}` or "
                f"`dvc exp apply {revision.name}`, then `dvc repro evaluate`)"
            ) from error
        raise ReviewError(
            # DVC's own message ("does not exist ... neither as a DVC output") would mislead here.
            f"{path} at {revision.title()}: tracked, but its content is neither in the local DVC cache nor on a "
            f"default remote; {_missing_per_user_hint(revision, path)}"
        ) from error


def _declared_in(root: Path, revision: Revision, path: str) -> bool:
    """True if ``path`` is a DVC output (or git file) of ``revision``, whether or not it is cached."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    try:
        return bool(DVCFileSystem(str(root), rev=revision.sha).exists(path))
    except (DvcException, OSError):
        return False


def parse_per_user(data: bytes, where: str) -> pl.DataFrame:
    """Validate per-user metrics and cast them to :data:`PER_USER_SCHEMA`.

    Raises
    ------
    ReviewError
        Unreadable parquet, a missing column, values that do not cast, nulls, non-finite values or
        duplicate ``(user_id, model, metric, k)`` rows.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> row = {"user_id": [1], "model": ["als"], "metric": ["ndcg"], "k": [10], "value": [0.5]}
    >>> pl.DataFrame(row).write_parquet(buffer)
    >>> parse_per_user(buffer.getvalue(), "example").schema["k"]
    Int16
    """
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        raise ReviewError(f"{where}: not a readable parquet file ({one_line(str(error))})") from error
    missing = [name for name in PER_USER_SCHEMA if name not in frame.columns]
    if missing:
        expected = list(PER_USER_SCHEMA)
        raise ReviewError(f"{where}: missing column(s) {missing}; found {frame.columns}, expected {expected}")
    try:
        frame = frame.select(pl.col(name).cast(dtype, strict=True) for name, dtype in PER_USER_SCHEMA.items())
    except pl.exceptions.PolarsError as error:
        expected = ", ".join(f"{name} {dtype}" for name, dtype in PER_USER_SCHEMA.items())
        raise ReviewError(f"{where}: columns do not cast to {expected} ({one_line(str(error))})") from error
    nulls = {name: count for name, count in frame.null_count().row(0, named=True).items() if count}
    if nulls:
        raise ReviewError(f"{where}: null values {nulls}")
    bad_values = frame.filter(~pl.col("value").is_finite())
    if bad_values.height:
        raise ReviewError(f"{where}: {bad_values.height} non-finite value(s), e.g. {bad_values.head(3).rows()}")
    duplicated = frame.filter(pl.struct(PER_USER_KEYS).is_duplicated())
    if duplicated.height:
        raise ReviewError(
            f"{where}: {duplicated.height} rows share a (user_id, model, metric, k) key, "
            f"e.g. {duplicated.head(3).rows()}"
        )
    return frame


def _params_diff_command(base: Revision, head: Revision) -> list[str]:
    revisions = [base.name] if head.is_workspace else [base.name, head.name]
    return [sys.executable, "-m", "dvc", "params", "diff", *revisions, "--md"]


def start_params_diff(root: Path, base: Revision, head: Revision) -> subprocess.Popen[str]:
    """Start ``dvc params diff BASE [HEAD] --md`` (it runs while the metrics are read and resampled)."""
    return subprocess.Popen(
        _params_diff_command(base, head),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )


def finish_params_diff(process: subprocess.Popen[str]) -> str:
    """The output of :func:`start_params_diff` verbatim, or ``""`` when no param changed.

    Raises
    ------
    ReviewError
        DVC exits non-zero.
    """
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        command = " ".join(str(arg) for arg in process.args[2:])  # type: ignore[index]
        raise ReviewError(f"{command} failed: {one_line(stderr or stdout)}")
    table = stdout.strip()
    # With nothing changed DVC still prints the header and separator rows.
    return table if len(table.splitlines()) > 2 else ""
