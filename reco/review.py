"""``python -m reco.review BASE [HEAD]``: a Markdown review of the change between two revisions.

It prints ``dvc params diff``, the headline metrics of both blocks and, on one block (``--block``,
default ``validation``; ``test`` only when asked), each model's paired per-user difference
``HEAD - BASE`` with one decision rule per row: a t test of the difference against its full
standard error (the users' bootstrap variance plus the seeds' variance of two runs, the headline
runs counted among the seeds), with Holm's correction across the rows of the table at family-wise
``--alpha`` (0.05) (:mod:`reco.evaluation.decision`). Bad input exits with code 2 and one line
``error: review: ...``. See docs/selection-and-review.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
import yaml

from reco.cli import EXIT_BAD_INPUT
from reco.errors import PipelineError, UsageError
from reco.evaluation.decision import FAMILY_ALPHA, SeedTerm, Verdict, change_test, holm, seed_terms, user_variance
from reco.evaluation.paired import PairedDifference, paired_revision_differences
from reco.evaluation.uncertainty import CONFIDENCE

__all__ = [
    "HeadlineTable",
    "PairedRow",
    "Review",
    "ReviewError",
    "ReviewOptions",
    "Revision",
    "RowTest",
    "build_review",
    "main",
    "render_markdown",
]

METRICS_PATH: Final = "metrics/metrics.json"
SEED_SPREAD_PATH: Final = "metrics/seed_spread.json"
PARAMS_PATH: Final = "params.yaml"
PER_USER_TEMPLATE: Final = "data/evaluation/{block}/per_user.parquet"
BLOCKS: Final = ("validation", "test")  # the first is the default: settings are chosen on validation
PER_USER_SCHEMA: Final[dict[str, type[pl.DataType]]] = {
    "user_id": pl.Int32,
    "model": pl.String,
    "metric": pl.String,
    "k": pl.Int16,
    "value": pl.Float64,
}
PER_USER_KEYS: Final = ("user_id", "model", "metric", "k")
METRIC_LABELS: Final = {
    "ndcg": "NDCG",
    "map": "MAP",
    "precision": "Precision",
    "recall": "Recall",
    "hit_rate": "HitRate",
}
# Settings that make two revisions' metrics incomparable when they differ.
COMPARABILITY_KEYS: Final = ("protocol", "label_kind")
DEFAULT_SAMPLES: Final = 2000
DEFAULT_SEED: Final = 0
DIGITS: Final = 4
MISSING: Final = "—"
WORKSPACE: Final = "workspace"


class ReviewError(PipelineError):
    """A revision, file or option given to the review is unknown, missing or malformed (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Revisions and reading their files
# --------------------------------------------------------------------------------------------


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


def _one_line(text: str) -> str:
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
            why = _one_line(result.stderr) or f"git exited with {result.returncode}"
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
        raise ReviewError(f"{where}: not a readable parquet file ({_one_line(str(error))})") from error
    missing = [name for name in PER_USER_SCHEMA if name not in frame.columns]
    if missing:
        expected = list(PER_USER_SCHEMA)
        raise ReviewError(f"{where}: missing column(s) {missing}; found {frame.columns}, expected {expected}")
    try:
        frame = frame.select(pl.col(name).cast(dtype, strict=True) for name, dtype in PER_USER_SCHEMA.items())
    except pl.exceptions.PolarsError as error:
        expected = ", ".join(f"{name} {dtype}" for name, dtype in PER_USER_SCHEMA.items())
        raise ReviewError(f"{where}: columns do not cast to {expected} ({_one_line(str(error))})") from error
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


# --------------------------------------------------------------------------------------------
# Options and the review itself
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewOptions:
    """What to compare and how.

    Attributes
    ----------
    block
        Block of the paired differences and seed spread: ``"validation"`` (default, where
        settings are chosen) or ``"test"`` (for the record).
    metrics
        Per-user metric names (``ndcg``, ``map``, ...), in display order.
    ks
        Cut-offs K, in display order.
    samples, seed, confidence
        Bootstrap resamples, their seed and the coverage of the users' interval (shown).
    alpha
        Family-wise error rate of the rows' tests (Holm).
    """

    block: str = BLOCKS[0]
    metrics: tuple[str, ...] = ("ndcg", "map")
    ks: tuple[int, ...] = (10,)
    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED
    confidence: float = CONFIDENCE
    alpha: float = FAMILY_ALPHA

    @property
    def series(self) -> list[tuple[str, int]]:
        """``(metric, k)`` pairs in display order (metric-major)."""
        return [(metric, k) for metric in self.metrics for k in self.ks]


def metric_key(metric: str, k: int) -> str:
    """Key of a metric in metrics.json / seed_spread.json.

    Examples
    --------
    >>> metric_key("ndcg", 10)
    'ndcg_at_10'
    """
    return f"{metric}_at_{k}"


def metric_label(metric: str, k: int) -> str:
    """Display name.

    Examples
    --------
    >>> metric_label("ndcg", 10), metric_label("hit_rate", 5)
    ('NDCG@10', 'HitRate@5')
    """
    return f"{METRIC_LABELS.get(metric, metric.upper())}@{k}"


@dataclass(frozen=True)
class HeadlineTable:
    """Headline metrics of one block for both revisions.

    Attributes
    ----------
    block
        ``"test"`` or ``"validation"``.
    keys
        Metric keys shown (``ndcg_at_10``, ...), in display order.
    values
        ``{model: {key: (base, head)}}``; ``None`` where a revision lacks the model or key.
    notes
        Lines printed under the table (a block missing in one revision, ...).
    """

    block: str
    keys: tuple[str, ...]
    values: dict[str, dict[str, tuple[float | None, float | None]]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowTest:
    """The test of one row (:mod:`reco.evaluation.decision`).

    Attributes
    ----------
    user_var, seed_var
        The users' bootstrap variance of the mean difference and the seeds' variance of a
        difference between two runs; ``se = sqrt(user_var + seed_var)``.
    df
        Degrees of freedom of the t quantile (Welch-Satterthwaite over the seed terms).
    t, p
        ``mean / se`` and its two-sided p-value.
    p_holm
        Holm-adjusted p-value over the rows of the table.
    """

    user_var: float
    seed_var: float
    se: float
    df: float
    t: float
    p: float
    p_holm: float

    @property
    def seed_sd(self) -> float:
        """The std of one run over seeds (``sqrt(seed_var / 2)``)."""
        return float(np.sqrt(self.seed_var / 2.0))


@dataclass(frozen=True)
class PairedRow:
    """Paired difference of one model and metric, with its test and verdict.

    ``difference`` and ``verdict`` are ``None`` when the model has no user in both revisions;
    ``test`` is ``None`` also when no seed spread is known for the row.
    """

    model: str
    metric: str
    k: int
    difference: PairedDifference | None
    test: RowTest | None
    verdict: Verdict | None


@dataclass(frozen=True)
class Review:
    """Everything the Markdown shows; built by :func:`build_review`, printed by :func:`render_markdown`."""

    base: Revision
    head: Revision
    options: ReviewOptions
    params_markdown: str
    headline: tuple[HeadlineTable, ...]
    paired: tuple[PairedRow, ...]
    paired_notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def row(self, model: str, metric: str = "ndcg", k: int = 10) -> PairedRow:
        """The paired row of ``model`` / ``metric`` / ``k`` (``KeyError`` if absent)."""
        for paired_row in self.paired:
            if (paired_row.model, paired_row.metric, paired_row.k) == (model, metric, k):
                return paired_row
        raise KeyError((model, metric, k))


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
        raise ReviewError(f"{command} failed: {_one_line(stderr or stdout)}")
    table = stdout.strip()
    # With nothing changed DVC still prints the header and separator rows.
    return table if len(table.splitlines()) > 2 else ""


def _block_models(metrics: Mapping[str, Any], block: str, where: str) -> dict[str, dict[str, Any]] | None:
    section = metrics.get(block)
    if section is None:
        return None
    models = section.get("models") if isinstance(section, dict) else None
    if not isinstance(models, dict) or not all(isinstance(values, dict) for values in models.values()):
        raise ReviewError(f"{where}: '{block}.models' must map each model to its metrics, got {type(models).__name__}")
    return models


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def headline_table(
    base_metrics: Mapping[str, Any],
    head_metrics: Mapping[str, Any],
    block: str,
    keys: Sequence[str],
    base: Revision,
    head: Revision,
) -> HeadlineTable:
    """Headline table of ``block`` (no rows, and a note, when neither revision has that block).

    Examples
    --------
    >>> a = {"test": {"models": {"als": {"ndcg_at_10": 0.5}}}}
    >>> b = {"test": {"models": {"als": {"ndcg_at_10": 0.4}}}}
    >>> headline_table(a, b, "test", ["ndcg_at_10"], Revision("a", "a1"), Revision("b", "b1")).values
    {'als': {'ndcg_at_10': (0.5, 0.4)}}
    """
    base_models = _block_models(base_metrics, block, f"{METRICS_PATH} at {base.title()}")
    head_models = _block_models(head_metrics, block, f"{METRICS_PATH} at {head.title()}")
    if base_models is None and head_models is None:
        return HeadlineTable(block, tuple(keys), {}, (f"Neither revision has a '{block}' block in {METRICS_PATH}.",))
    notes = [
        f"{side} {revision.title()} has no '{block}' block in {METRICS_PATH}."
        for side, revision, models in (("BASE", base, base_models), ("HEAD", head, head_models))
        if models is None
    ]
    base_models, head_models = base_models or {}, head_models or {}
    values = {
        model: {
            key: (
                _number(base_models.get(model, {}).get(key)),
                _number(head_models.get(model, {}).get(key)),
            )
            for key in keys
        }
        for model in sorted(set(base_models) | set(head_models))
    }
    return HeadlineTable(block=block, keys=tuple(keys), values=values, notes=tuple(notes))


@dataclass(frozen=True)
class SeedSpread:
    """``metrics/seed_spread.json`` of one revision (each model's metric over seeds: ``values``, ``std``)."""

    seeds: tuple[Any, ...]
    block: str | None
    models: dict[str, dict[str, Any]]

    def std(self, model: str, key: str) -> float | None:
        """The std of ``model``'s ``key``, or ``None`` when not recorded."""
        entry = self.models.get(model, {}).get(key)
        return _number(entry.get("std")) if isinstance(entry, dict) else None

    def values(self, model: str, key: str) -> tuple[float, ...] | None:
        """The per-seed values of ``model``'s ``key``, or ``None`` when not recorded."""
        entry = self.models.get(model, {}).get(key)
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(values, list):
            return None
        numbers = [_number(value) for value in values]
        return None if any(number is None for number in numbers) else tuple(numbers)  # type: ignore[misc]


def parse_seed_spread(payload: Mapping[str, Any] | None, where: str, block: str | None = None) -> SeedSpread | None:
    """Parse a seed spread file (``None`` stays ``None``).

    A file with per-block sections (``"blocks": {"validation": {"models": ...}, "test": ...}``, as
    ``stages/seed_spread.py`` writes) gives the spread of ``block`` when it has one; otherwise the
    top-level ``models`` (and ``block``) are used.

    Raises
    ------
    ReviewError
        ``models`` is not an object of objects.
    """
    if payload is None:
        return None
    per_block = payload.get("blocks")
    if block is not None and isinstance(per_block, dict) and isinstance(per_block.get(block), dict):
        payload = {"seeds": payload.get("seeds", []), "block": block, "models": per_block[block].get("models", {})}
    models = payload.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(entry, dict) for entry in models.values()):
        raise ReviewError(f"{where}: 'models' must map each model to its metrics")
    seeds = payload.get("seeds", [])
    return SeedSpread(
        seeds=tuple(seeds) if isinstance(seeds, list) else (),
        block=payload.get("block") if isinstance(payload.get("block"), str) else None,
        models=models,
    )


def _wide_per_user(frame: pl.DataFrame, model: str, options: ReviewOptions) -> pl.DataFrame:
    """``user_id`` plus one column per (metric, k) of ``model``; users lacking any of them dropped."""
    columns = [metric_key(metric, k) for metric, k in options.series]
    rows = frame.filter(pl.col("model") == model).with_columns(
        series=pl.col("metric") + "_at_" + pl.col("k").cast(pl.String)
    ).filter(pl.col("series").is_in(columns))
    if rows.is_empty():
        return pl.DataFrame(schema={"user_id": pl.Int32, **{column: pl.Float64 for column in columns}})
    wide = rows.pivot(on="series", index="user_id", values="value")
    wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in wide.columns)
    return wide.select("user_id", *columns).drop_nulls()


def _check_series_present(frame: pl.DataFrame, options: ReviewOptions, where: str) -> None:
    available = frame.select("metric", "k").unique()
    present = set(available.iter_rows())
    absent = [metric_label(metric, k) for metric, k in options.series if (metric, k) not in present]
    if absent:
        found = sorted({metric_label(metric, int(k)) for metric, k in present})
        raise ReviewError(f"{where}: no rows for {absent}; the file has {found}")


@dataclass(frozen=True)
class SeedSide:
    """What one revision knows of its seed noise: its seed spread and its own (headline) run.

    Attributes
    ----------
    spread
        The revision's ``metrics/seed_spread.json`` for the block, or ``None``.
    headline
        ``{model: {key: value}}`` of the block in the revision's ``metrics/metrics.json``.
    headline_seed
        The headline run's training seed (:func:`headline_seed`); when it is one of the spread's
        seeds, the headline run is already in the spread and is not counted twice.
    """

    spread: SeedSpread | None
    headline: Mapping[str, Mapping[str, Any]]
    headline_seed: int | None = None

    @property
    def headline_in_spread(self) -> bool:
        """True when the headline run is one of the spread's seeds."""
        return self.spread is not None and self.headline_seed is not None and self.headline_seed in self.spread.seeds

    def runs(self, model: str, key: str) -> tuple[np.ndarray | None, float | None]:
        """The spread's values of ``model``'s ``key`` and the headline value to add to them (or ``None``)."""
        values = self.spread.values(model, key) if self.spread is not None else None
        if values is None:
            return None, None
        headline = None if self.headline_in_spread else _number(self.headline.get(model, {}).get(key))
        return np.asarray(values, dtype=np.float64), headline


def row_seed_terms(base: SeedSide, head: SeedSide, model: str, key: str) -> list[SeedTerm] | None:
    """The seeds' variance terms of one row (:func:`reco.evaluation.decision.seed_terms`)."""
    base_spread, base_headline = base.runs(model, key)
    head_spread, head_headline = head.runs(model, key)
    return seed_terms(base_spread, base_headline, head_spread, head_headline)


def decide(
    differences: Sequence[PairedDifference | None],
    user_vars: Sequence[float | None],
    terms: Sequence[list[SeedTerm] | None],
    alpha: float = FAMILY_ALPHA,
) -> list[tuple[RowTest | None, Verdict | None]]:
    """The test and verdict of every row; Holm's correction runs over the rows that have a test.

    A row without users in both revisions has neither; a row without a known seed spread has no
    test and is never called real: *unknown* when its users' interval excludes 0, else *within
    noise*.
    """
    tested = [i for i, (d, t) in enumerate(zip(differences, terms, strict=True)) if d is not None and t is not None]
    results: list[tuple[RowTest | None, Verdict | None]] = [
        (None, None if difference is None else Verdict.UNKNOWN if difference.excludes_zero else Verdict.WITHIN_NOISE)
        for difference in differences
    ]
    if not tested:
        return results
    statistics = []
    for i in tested:
        difference, row_terms = differences[i], terms[i]
        assert difference is not None and row_terms is not None
        user_var = float(user_vars[i] or 0.0)
        se, df, t, p = change_test(np.array(difference.mean), np.array(user_var), row_terms)
        seed_var = float(sum(np.asarray(term.variance, dtype=np.float64) for term in row_terms))
        statistics.append((user_var, seed_var, float(se), float(df), float(t), float(p)))
    adjusted, rejected = holm(np.array([row[-1] for row in statistics]), alpha)
    for i, row, p_holm, reject in zip(tested, statistics, adjusted, rejected, strict=True):
        test = RowTest(*row, p_holm=float(p_holm))
        results[i] = (test, Verdict.REAL if reject else Verdict.WITHIN_NOISE)
    return results


def paired_rows(
    base_frame: pl.DataFrame,
    head_frame: pl.DataFrame,
    base_seed: SeedSide,
    head_seed: SeedSide,
    options: ReviewOptions,
) -> tuple[list[PairedRow], list[str]]:
    """Paired differences of every model in both per-user frames, their tests, and notes on users and models.

    Each model is compared over the users that have all of ``options.series`` in both frames,
    sorted by ``user_id`` (so the same users and seed give the same resamples).
    """
    base_models = set(base_frame.get_column("model").unique().to_list())
    head_models = set(head_frame.get_column("model").unique().to_list())
    notes = [
        f"Only in {side}: {', '.join(sorted(models))}."
        for side, models in (("BASE", base_models - head_models), ("HEAD", head_models - base_models))
        if models
    ]
    columns = [metric_key(metric, k) for metric, k in options.series]
    keys: list[tuple[str, str, int]] = []
    differences: list[PairedDifference | None] = []
    user_vars: list[float | None] = []
    terms: list[list[SeedTerm] | None] = []
    user_counts: dict[tuple[int, int, int], list[str]] = {}
    for model in sorted(base_models & head_models):
        base_wide = _wide_per_user(base_frame, model, options)
        head_wide = _wide_per_user(head_frame, model, options)
        joined = base_wide.join(head_wide, on="user_id", how="inner", suffix="_head").sort("user_id")
        counts = (joined.height, base_wide.height - joined.height, head_wide.height - joined.height)
        user_counts.setdefault(counts, []).append(model)
        model_differences: list[PairedDifference | None] = [None] * len(columns)
        model_user_vars: list[float | None] = [None] * len(columns)
        if joined.height:
            base_values = joined.select(columns).to_numpy().astype(np.float64)
            head_values = joined.select(f"{column}_head" for column in columns).to_numpy().astype(np.float64)
            try:
                model_differences = list(
                    paired_revision_differences(
                        base_values, head_values, options.samples, options.seed, options.confidence
                    )
                )
            except ValueError as error:  # e.g. samples x users too large for the count matrix
                raise ReviewError(f"bootstrap of {model}: {error}; lower --samples") from error
            model_user_vars = [float(v) for v in user_variance(head_values - base_values)]
        for (metric, k), key, difference, user_var in zip(
            options.series, columns, model_differences, model_user_vars, strict=True
        ):
            keys.append((model, metric, k))
            differences.append(difference)
            user_vars.append(user_var)
            terms.append(row_seed_terms(base_seed, head_seed, model, key))
    decided = decide(differences, user_vars, terms, options.alpha)
    rows = [
        PairedRow(model, metric, k, difference, test, verdict)
        for (model, metric, k), difference, (test, verdict) in zip(keys, differences, decided, strict=True)
    ]
    for (common, base_only, head_only), models in sorted(user_counts.items(), reverse=True):
        scope = "every model" if len(user_counts) == 1 else ", ".join(models)
        notes.insert(
            0,
            f"Users in both revisions: {common:,} ({scope}); "
            f"only in BASE: {base_only:,}, only in HEAD: {head_only:,}.",
        )
    return rows, notes


def _seed_spread_notes(base: SeedSide, head: SeedSide, block: str) -> list[str]:
    present = [(side, seeds) for side, seeds in (("BASE", base), ("HEAD", head)) if seeds.spread is not None]
    if not present:
        return [
            f"No `{SEED_SPREAD_PATH}` in either revision: seed noise cannot be told apart from a real change, "
            "so nothing is flagged real."
        ]
    described = []
    for side, seeds in present:
        spread = seeds.spread
        assert spread is not None
        listed = ", ".join(str(seed) for seed in spread.seeds) or "?"
        if seeds.headline_in_spread:
            own = f"its headline run (seed {seeds.headline_seed}) among them"
        else:
            seed = f"seed {seeds.headline_seed}" if seeds.headline_seed is not None else "its own seeds"
            own = f"plus its headline run ({seed})"
        described.append(f"{side} (block {spread.block or '?'}, seeds {listed}, {own})")
    notes = [f"Seed spread: `{SEED_SPREAD_PATH}` of {' and '.join(described)}."]
    notes += [
        f"{side}'s seed spread was measured on the {seeds.spread.block} block and is used here for {block}."
        for side, seeds in present
        if seeds.spread is not None and seeds.spread.block is not None and seeds.spread.block != block
    ]
    if len(present) == 1:
        missing_side = "HEAD" if present[0][0] == "BASE" else "BASE"
        notes.append(f"{missing_side} has no `{SEED_SPREAD_PATH}`; {present[0][0]}'s is used for both.")
    return notes


def _comparability_warnings(base_metrics: Mapping[str, Any], head_metrics: Mapping[str, Any]) -> list[str]:
    return [
        f"`{key}` differs (BASE {base_metrics.get(key)!r}, HEAD {head_metrics.get(key)!r}): "
        "the metrics measure different things and are not directly comparable."
        for key in COMPARABILITY_KEYS
        if base_metrics.get(key) != head_metrics.get(key)
    ]


def seed_side(root: Path, revision: Revision, metrics: Mapping[str, Any], block: str) -> SeedSide:
    """``revision``'s seed spread for ``block``, its headline values and its headline seed.

    The headline values are taken from the block the spread was measured on (a spread of another
    block is used with a note, never mixed with this block's headline run).
    """
    spread = parse_seed_spread(
        read_git_json(root, revision, SEED_SPREAD_PATH, required=False),
        f"{SEED_SPREAD_PATH} at {revision.title()}",
        block,
    )
    measured_on = spread.block if spread is not None and spread.block is not None else block
    headline = _block_models(metrics, measured_on, f"{METRICS_PATH} at {revision.title()}") or {}
    return SeedSide(spread=spread, headline=headline, headline_seed=headline_seed(root, revision))


def build_review(root: Path, base_name: str, head_name: str | None, options: ReviewOptions) -> Review:
    """Read both revisions and compute everything :func:`render_markdown` prints.

    Parameters
    ----------
    root
        The DVC project (a git repository or a folder of one).
    base_name
        BASE revision: commit, branch, tag or DVC experiment name/ref.
    head_name
        HEAD revision, or ``None`` for the workspace.
    options
        Block, metrics, K and bootstrap settings.

    Raises
    ------
    ReviewError
        Unknown revision, missing or malformed file, ``dvc params diff`` failure.

    Examples
    --------
    >>> review = build_review(Path("."), "main", None, ReviewOptions())  # doctest: +SKIP
    >>> review.row("ranker", "ndcg", 10).verdict  # doctest: +SKIP
    <Verdict.WITHIN_NOISE: 'within noise'>
    """
    if options.block not in BLOCKS:
        raise ReviewError(f"unknown block {options.block!r}; choose one of {list(BLOCKS)}")
    base = resolve_revision(root, base_name)
    head = workspace_revision(root) if head_name is None else resolve_revision(root, head_name)

    base_metrics = read_git_json(root, base, METRICS_PATH, required=True) or {}
    head_metrics = read_git_json(root, head, METRICS_PATH, required=True) or {}
    keys = [metric_key(metric, k) for metric, k in options.series]
    headline = [headline_table(base_metrics, head_metrics, block, keys, base, head) for block in BLOCKS]

    params_process = start_params_diff(root, base, head)
    try:
        per_user_path = PER_USER_TEMPLATE.format(block=options.block)
        frames = []
        for revision in (base, head):
            where = f"{per_user_path} at {revision.title()}"
            frame = parse_per_user(read_per_user_bytes(root, revision, per_user_path), where)
            _check_series_present(frame, options, where)
            frames.append(frame)
        base_seed, head_seed = (
            seed_side(root, revision, metrics, options.block)
            for revision, metrics in ((base, base_metrics), (head, head_metrics))
        )
        rows, notes = paired_rows(frames[0], frames[1], base_seed, head_seed, options)
        params_markdown = finish_params_diff(params_process)
    finally:
        if params_process.poll() is None:  # an error above: do not leave DVC running
            params_process.kill()
            params_process.communicate()
    return Review(
        base=base,
        head=head,
        options=options,
        params_markdown=params_markdown,
        headline=tuple(headline),
        paired=tuple(rows),
        paired_notes=tuple(notes + _seed_spread_notes(base_seed, head_seed, options.block)),
        warnings=tuple(_comparability_warnings(base_metrics, head_metrics)),
    )


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def format_value(value: float | None) -> str:
    """A metric value with :data:`DIGITS` decimals, or "—".

    Examples
    --------
    >>> format_value(0.61234), format_value(None)
    ('0.6123', '—')
    """
    return MISSING if value is None else f"{value:.{DIGITS}f}"


def format_delta(value: float | None) -> str:
    """A signed difference; rounding never shows ``-0.0000``.

    Examples
    --------
    >>> format_delta(-0.05), format_delta(-0.00001), format_delta(None)
    ('-0.0500', '+0.0000', '—')
    """
    if value is None:
        return MISSING
    rounded = round(value, DIGITS) + 0.0  # + 0.0: -0.0 -> 0.0
    return f"{rounded:+.{DIGITS}f}"


def markdown_table(headers: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; ``align`` has one ``l`` or ``r`` per column.

    Examples
    --------
    >>> print(markdown_table(["Model", "x"], "lr", [["als", "1"]]))
    | Model | x |
    |:--|--:|
    | als | 1 |
    """
    separator = "|" + "|".join(":--" if side == "l" else "--:" for side in align) + "|"
    lines = ["| " + " | ".join(headers) + " |", separator]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _headline_markdown(table: HeadlineTable) -> str:
    headers = ["Model"]
    for key in table.keys:
        name, _, k = key.rpartition("_at_")
        label = metric_label(name, int(k))
        headers += [f"{label} BASE", f"{label} HEAD", f"{label} Δ"]
    rows = []
    for model, by_key in table.values.items():
        cells = [model]
        for key in table.keys:
            base_value, head_value = by_key[key]
            delta = None if base_value is None or head_value is None else head_value - base_value
            cells += [format_value(base_value), format_value(head_value), format_delta(delta)]
        rows.append(cells)
    parts = [f"### Headline metrics ({table.block})", ""]
    if rows:
        parts += [markdown_table(headers, "l" + "r" * (len(headers) - 1), rows), ""]
    parts += list(table.notes)
    return "\n".join(parts)


def _verdict_text(row: PairedRow) -> str:
    if row.verdict is None or row.difference is None:
        return "n/a (no common users)"
    if row.verdict is Verdict.REAL:
        return "**real** (" + ("better" if row.difference.mean > 0 else "worse") + ")"
    if row.verdict is Verdict.UNKNOWN:
        return "unknown (no seed spread)"
    return row.verdict.value


def format_p(value: float) -> str:
    """A p-value with 2 significant digits (``<0.0001`` below that).

    Examples
    --------
    >>> format_p(0.0312), format_p(1.0), format_p(3e-9)
    ('0.031', '1', '<0.0001')
    """
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"


def _test_cells(test: RowTest | None) -> list[str]:
    if test is None:
        return [MISSING] * 4
    df = "∞" if not np.isfinite(test.df) else f"{test.df:.1f}"
    t = "∞" if not np.isfinite(test.t) else f"{test.t:+.2f}"
    return [format_value(test.seed_sd), format_value(test.se), f"{t} ({df})", format_p(test.p_holm)]


def _paired_markdown(review: Review) -> str:
    options = review.options
    headers = ["Model", "Metric", "Users", "BASE", "HEAD", "Δ HEAD−BASE",
               f"Users' {options.confidence:.0%} interval", "Seed sd", "SE", "t (df)", "p (Holm)",
               "Verdict"]  # fmt: skip
    rows = []
    for row in review.paired:
        diff = row.difference
        rows.append(
            [
                row.model,
                metric_label(row.metric, row.k),
                f"{diff.users:,}" if diff else "0",
                format_value(diff.base_mean if diff else None),
                format_value(diff.head_mean if diff else None),
                format_delta(diff.mean if diff else None),
                f"[{format_delta(diff.low)}, {format_delta(diff.high)}]" if diff else MISSING,
                *_test_cells(row.test),
                _verdict_text(row),
            ]
        )
    method = (
        f"Mean over users evaluated in both revisions of HEAD − BASE; {options.confidence:.0%} percentile bootstrap "
        f"over users ({options.samples:,} resamples, seed {options.seed}). Test: t = Δ / SE with "
        "SE² = users' bootstrap variance + the seeds' variance of a difference of two runs; Holm's correction "
        f"over the {sum(row.test is not None for row in review.paired)} tested rows at family-wise "
        f"α = {options.alpha:g}."
    )
    parts = [f"### Paired differences ({options.block}, same users)", "", method, ""]
    parts += [f"- {note}" for note in review.paired_notes]
    table = markdown_table(headers, "llrrrrlrrrrl", rows) if rows else "No model is present in both revisions."
    parts += ["", table]
    return "\n".join(parts)


def legend(options: ReviewOptions) -> str:
    """The one-line explanation of the verdict.

    Examples
    --------
    >>> legend(ReviewOptions()).startswith("Legend: **real**")
    True
    """
    return (
        f"Legend: **real** = Holm-adjusted p ≤ {options.alpha:g}, where p is the two-sided p-value of t = Δ / SE "
        "against a Student t whose degrees of freedom come from the seeds (Welch–Satterthwaite); *seed sd* = the std "
        "of one run over seeds (the headline runs counted among the seeds); otherwise *within noise*; *unknown* = "
        "no seed spread is recorded for the row and its users' interval excludes 0 (never called real)."
    )


def render_markdown(review: Review) -> str:
    """The Markdown a reviewer pastes into the pull request (ends with a newline).

    Examples
    --------
    >>> print(render_markdown(build_review(Path("."), "main", None, ReviewOptions())))  # doctest: +SKIP
    ## Review: `main` (8a1fbf8) → workspace (on 8a1fbf8)
    ...
    """
    parts = [f"## Review: BASE {review.base.title()} → HEAD {review.head.title()}", ""]
    if review.warnings:
        parts += [f"> **Warning:** {warning}" for warning in review.warnings] + [""]
    parts += ["### Params", "", review.params_markdown or "No params changed.", ""]
    for table in review.headline:
        parts += [_headline_markdown(table).rstrip("\n"), ""]
    parts += [_paired_markdown(review), "", legend(review.options)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """Raise :class:`UsageError` instead of printing usage and exiting, for the one-line error."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn
        raise UsageError(f"{message}; usage: {' '.join(self.format_usage().split()[1:])}")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = _ArgumentParser(prog="python -m reco.review", description=__doc__.split("\n", 1)[0])
    parser.add_argument("base", metavar="BASE", help="git revision or DVC experiment to compare against")
    parser.add_argument("head", metavar="HEAD", nargs="?", default=None, help="revision to review (default: workspace)")
    parser.add_argument(
        "--block", choices=BLOCKS, default=BLOCKS[0], help="block of the paired differences (default validation)"
    )
    parser.add_argument("--metrics", type=_names, default=("ndcg", "map"), help="comma-separated, default ndcg,map")
    parser.add_argument("--k", type=_positive_ints, default=(10,), help="cut-off(s) K, comma-separated, default 10")
    parser.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the bootstrap resampling")
    parser.add_argument("--alpha", type=_probability, default=FAMILY_ALPHA, help="family-wise error rate (Holm)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC project (default: current folder)")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the review; return the exit code (0, or 2 with ``error: review: ...`` on stderr).

    Examples
    --------
    >>> main(["main", "--block", "validation"])  # doctest: +SKIP
    0
    """
    from reco.io import write_text

    try:
        args = parse_args(argv)
        options = ReviewOptions(
            block=args.block, metrics=args.metrics, ks=args.k, samples=args.samples, seed=args.seed, alpha=args.alpha
        )
        text = render_markdown(build_review(args.repo, args.base, args.head, options))
        if args.out is not None:
            try:
                write_text(text, args.out)
            except OSError as error:
                raise ReviewError(f"cannot write {args.out}: {error.strerror or error}") from error
    except PipelineError as error:
        print(f"error: review: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
