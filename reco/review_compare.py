"""The review of a change: headline tables, paired per-user differences, and one decision per row.

:func:`build_review` reads both revisions (:mod:`reco.review_revisions`) and computes everything
the Markdown shows: each block's headline metrics and, on one block, each model's paired per-user
difference ``HEAD - BASE`` with a t test against the users' plus the seeds' variance and Holm's
correction across the rows (:mod:`reco.evaluation.decision`). See docs/selection-and-review.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from reco.evaluation.decision import FAMILY_ALPHA, SeedTerm, Verdict, change_test, holm, seed_terms, user_variance
from reco.evaluation.paired import PairedDifference, paired_revision_differences
from reco.evaluation.uncertainty import CONFIDENCE
from reco.review_revisions import (
    METRICS_PATH,
    PER_USER_TEMPLATE,
    SEED_SPREAD_PATH,
    ReviewError,
    Revision,
    finish_params_diff,
    headline_seed,
    parse_per_user,
    read_git_json,
    read_per_user_bytes,
    resolve_revision,
    start_params_diff,
    workspace_revision,
)

__all__ = [
    "BLOCKS",
    "HeadlineTable",
    "PairedRow",
    "Review",
    "ReviewOptions",
    "RowTest",
    "SeedSide",
    "SeedSpread",
    "build_review",
    "decide",
    "headline_table",
    "metric_key",
    "metric_label",
    "paired_rows",
    "parse_seed_spread",
    "row_seed_terms",
    "seed_side",
]

BLOCKS: Final = ("validation", "test")  # the first is the default: settings are chosen on validation
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
