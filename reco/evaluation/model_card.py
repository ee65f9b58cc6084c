"""The model card: a deterministic markdown summary of what was trained, on what, and how well.

:func:`render_model_card` builds ``metrics/model_card.md`` from the run's own artifacts only (the raw-data
manifest, the models' saved parameters, both evaluation blocks and the seed spread): the test block's
results with bootstrap intervals and seed spread, the validation table and limitations derived from the
numbers, with no timestamps or absolute paths, so the same inputs give the same bytes. See
docs/design/evaluation.md.

Example
-------
>>> fmt(0.123456), fmt(None), fmt(3)
('0.1235', 'n/a', '3')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reco.io import folder_checksums

__all__ = [
    "BLOCKS",
    "LIGHTGBM_CARD_KEYS",
    "MODEL_DESCRIPTIONS",
    "MODEL_ORDER",
    "SEED_DEPENDENT",
    "ModelCardInputs",
    "fmt",
    "lightgbm_card_params",
    "raw_data_fingerprint",
    "render_model_card",
    "seed_spread_models",
]

# Order of the models in every table; models not listed follow in name order.
MODEL_ORDER: Final[tuple[str, ...]] = (
    "ranker",
    "als",
    "popularity",
    "popularity_within_duration",
    "duration_popularity",
    "duration",
    "random",
    "oracle",
    "oracle_watch_ratio",
    "oracle_item",
    "oracle_item_watch_ratio",
)
BLOCKS: Final[tuple[str, ...]] = ("test", "validation")  # the order of the card: the headline block first
SEED_SPREAD_FILE: Final = "metrics/seed_spread.json"
# Models whose results move with a training seed (ALS's random_state, the ranker's seed): the seed spread's subject.
SEED_DEPENDENT: Final[tuple[str, ...]] = ("als", "ranker")
# What each model is (the Models section).
MODEL_DESCRIPTIONS: Final[dict[str, str]] = {
    "random": "uniform random scores (the floor).",
    "popularity": "each video's smoothed positive rate in training; the same list for everyone.",
    "duration": (
        "shortest videos first (score = -video duration): under a watch-ratio label short videos are positive "
        "far more often, so this list shows what the length alone explains."
    ),
    "duration_popularity": (
        "the smoothed positive rate in training of the video's duration bucket (the label rule's buckets); every "
        "video of a bucket gets its bucket's rate (ties by video id): the duration effect alone, learned."
    ),
    "popularity_within_duration": (
        "the video's positive rate (smoothed toward its bucket's rate) divided by its duration bucket's rate: "
        "popularity with the duration effect removed."
    ),
    "als": "implicit ALS alone (the candidate generator), ranking the whole block catalogue.",
    "ranker": "ALS top-N candidates re-ranked by LightGBM; other videos follow in ALS order.",
    "oracle": (
        "the honest oracle: each user's cells ranked by the true probability of the label under the simulator's "
        "generative model, P(watch_ratio > the cell's cut-off of the fitted label rule). The label is a coin flip "
        "with that probability, so no model can beat this order on average (a ceiling, not a model); on one "
        "draw of the labels it can lose by chance."
    ),
    "oracle_watch_ratio": (
        "the cells ranked by the true expected watch ratio. Not the best order for a binary label: a long looping "
        "session on a short video raises the mean ratio without making a positive more likely, so a model can "
        "beat it (a diagnostic)."
    ),
    "oracle_item": (
        "each video's true label probability averaged over the block's users, the same list for everyone: the best "
        "non-personalised ranking for this label (a diagnostic, not a model)."
    ),
    "oracle_item_watch_ratio": (
        "each video's true expected watch ratio averaged over the block's users, the same list for everyone "
        "(a diagnostic)."
    ),
}
# The LightGBM settings worth showing (the booster carries ~100, most of them defaults).
LIGHTGBM_CARD_KEYS: Final[tuple[str, ...]] = (
    "objective",
    "metric",
    "num_iterations",
    "learning_rate",
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "max_bin",
    "lambdarank_truncation_level",
    "seed",
    "deterministic",
)
_HEADLINE: Final[tuple[str, ...]] = ("ndcg", "map", "precision", "recall", "hit_rate")


def fmt(value: Any, digits: int = 4) -> str:
    """Fixed-width rendering of a number for the card (``n/a`` for ``None``/NaN).

    Examples
    --------
    >>> fmt(0.5), fmt(float("nan")), fmt(True), fmt("x")
    ('0.5000', 'n/a', 'true', 'x')
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


def raw_data_fingerprint(raw_dir: Path, recorded: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """SHA-256 of every raw file and one fingerprint over all of them.

    The fingerprint is the SHA-256 of the ``sha256sum`` listing of the files (``"<hex>  <name>\\n"``
    per file, sorted by relative path; hidden files skipped), so it can be checked with
    ``cd data/raw && sha256sum $(ls | LC_ALL=C sort) | sha256sum`` for a flat folder.

    Parameters
    ----------
    raw_dir
        The raw-data folder (``data/raw``).
    recorded
        Checksums the ingest stage recorded when it wrote the files (``manifest.json`` →
        ``checksums``, :func:`reco.io.folder_checksums`). A file listed there with the same size
        is not read again (DVC reruns ingest whenever ``data/raw`` changes, so the record is the
        folder's); any other file, such as the manifest itself, is hashed here.

    Returns
    -------
    dict
        ``{"algorithm": "sha256", "fingerprint": hex, "files": {relpath: {"bytes": n, "sha256": hex}}}``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("x\\n")
    >>> fp = raw_data_fingerprint(d)
    >>> fp["files"]["a.csv"]["bytes"], fp["fingerprint"] == hashlib.sha256(
    ...     (fp["files"]["a.csv"]["sha256"] + "  a.csv\\n").encode()).hexdigest()
    (2, True)
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: raw-data folder not found")
    files = folder_checksums(raw_dir, known=recorded)
    listing = "".join(f"{entry['sha256']}  {name}\n" for name, entry in files.items())
    return {
        "algorithm": "sha256",
        "fingerprint": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
        "files": files,
    }


def lightgbm_card_params(booster_params: Mapping[str, Any], keys: Sequence[str] = LIGHTGBM_CARD_KEYS) -> dict[str, Any]:
    """The subset of a LightGBM booster's parameters shown in the card.

    Examples
    --------
    >>> lightgbm_card_params({"objective": "lambdarank", "num_leaves": 31, "verbosity": -1})
    {'objective': 'lambdarank', 'num_leaves': 31}
    """
    return {key: booster_params[key] for key in keys if key in booster_params}


def seed_spread_models(seed_spread: Mapping[str, Any] | None, block: str) -> dict[str, Mapping[str, Any]] | None:
    """The per-model entries of ``metrics/seed_spread.json`` for ``block`` (``None``: no file).

    Reads ``{"seeds", "blocks": {block: {"models": {model: {metric_at_k: {"mean", "std", "min",
    "max", "values"}}}}}}``; a flat ``{"seeds", "block", "models"}`` payload is read as the entry of
    its ``block`` (of every block when it names none). A block or model without an entry gives an
    empty mapping or no key.

    Examples
    --------
    >>> spread = {"seeds": [1, 2], "blocks": {"test": {"models": {"als": {"ndcg_at_10": {"std": 0.01}}}}}}
    >>> list(seed_spread_models(spread, "test")), seed_spread_models(spread, "validation")
    (['als'], {})
    >>> seed_spread_models(None, "test") is None
    True
    """
    if seed_spread is None:
        return None
    if isinstance(seed_spread.get("blocks"), Mapping):
        entry = seed_spread["blocks"].get(block)
        models = entry.get("models") if isinstance(entry, Mapping) else None
    elif seed_spread.get("block") in (None, block):
        models = seed_spread.get("models")
    else:
        models = None
    if not isinstance(models, Mapping):
        return {}
    return {name: entry for name, entry in models.items() if isinstance(entry, Mapping)}


@dataclass(frozen=True)
class ModelCardInputs:
    """Everything the card shows.

    Attributes
    ----------
    metrics
        The merged ``metrics/metrics.json`` payload: ``protocol``, ``label_threshold``,
        ``label_kind``, ``ranker_labels``, ``selection``, ``definitions`` and, per block
        (``validation``, ``test``), ``{"data", "candidates", "models"}``.
    uncertainty, beyond_accuracy, segments
        Block -> the block's :func:`~reco.evaluation.uncertainty.uncertainty_report`,
        :func:`~reco.evaluation.beyond_accuracy.beyond_accuracy_report` and
        :func:`~reco.evaluation.segments.segments_report`.
    raw
        :func:`raw_data_fingerprint` of the raw data.
    manifest
        ``data/raw/manifest.json`` (``source``, ``profile``/``seed`` or the archive's checksum).
    label
        The ``label`` params (``kind``, ``threshold``, ``graded_edges``, ...).
    model_params
        Model name -> its saved parameters (e.g. ``{"als": ..., "candidates": ..., "ranker": ...}``).
    k
        The cut-off of the headline tables.
    ranker_features
        The ranker's ordered feature list.
    seed_spread
        ``metrics/seed_spread.json`` (see :func:`seed_spread_models`), or ``None`` when the file is
        missing (the card says so).
    """

    metrics: Mapping[str, Any]
    uncertainty: Mapping[str, Mapping[str, Any]]
    beyond_accuracy: Mapping[str, Mapping[str, Any]]
    segments: Mapping[str, Mapping[str, Any]]
    raw: Mapping[str, Any]
    manifest: Mapping[str, Any]
    label: Mapping[str, Any]
    model_params: Mapping[str, Mapping[str, Any]]
    k: int
    ranker_features: Sequence[str] = field(default_factory=tuple)
    seed_spread: Mapping[str, Any] | None = None

    def block(self, name: str) -> Mapping[str, Any]:
        """The block's ``{"data", "candidates", "models"}`` (empty when the block is missing)."""
        return self.metrics.get(name) or {}


def _ordered(models: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in MODEL_ORDER)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _params_line(params: Mapping[str, Any]) -> str:
    return ", ".join(f"`{key}={json.dumps(value, sort_keys=True)}`" for key, value in sorted(params.items()))


def _with_interval(interval: Mapping[str, Any] | None, fallback: Any) -> str:
    if not interval:
        return fmt(fallback)
    return f"{fmt(interval['mean'])} [{fmt(interval['low'])}, {fmt(interval['high'])}]"


def _seed_cell(entry: Any, model: str) -> str:
    """``mean ± std [min, max]`` of one model's metric over seeds; ``not measured`` / ``n/a`` without an entry."""
    if not isinstance(entry, Mapping) or entry.get("mean") is None:
        return "not measured" if model in SEED_DEPENDENT else "n/a"
    return f"{fmt(entry.get('mean'))} ± {fmt(entry.get('std'))} [{fmt(entry.get('min'))}, {fmt(entry.get('max'))}]"


def _grid_line(title: str, data: Mapping[str, Any]) -> str:
    return (
        f"- {title}: {data.get('users')} users x {data.get('items')} videos, {data.get('pairs')} observed pairs, "
        f"positive rate {fmt(data.get('positive_rate'))}; {data.get('users_evaluated')} users evaluated, "
        f"{data.get('users_without_positives')} without a positive (excluded), {data.get('users_unknown_to_als')} "
        "unknown to ALS (served by popularity)."
    )


def _data_section(inputs: ModelCardInputs) -> list[str]:
    manifest, raw = inputs.manifest, inputs.raw
    source = manifest.get("source", "unknown")
    lines = ["## Data", ""]
    if source == "simulate":
        lines.append(
            f"- Source: the embedded KuaiRec simulator (profile `{manifest.get('profile')}`, seed "
            f"`{manifest.get('seed')}`, scale `{manifest.get('scale')}`): files with KuaiRec 2.0's names and "
            "columns, generated from a latent-factor model with known ground truth."
        )
    else:
        params = manifest.get("params", {})
        lines.append(
            f"- Source: real KuaiRec 2.0 (`{source}`; archive {params.get('kuairec_url', 'n/a')}, "
            f"expected MD5 `{params.get('kuairec_md5', 'n/a')}`)."
        )
    lines.append(
        f"- Raw data fingerprint ({raw.get('algorithm', 'sha256')} over the `sha256sum` listing of `data/raw`, "
        f"sorted by name): `{raw.get('fingerprint', 'n/a')}`. Check with "
        "`cd data/raw && sha256sum $(ls | LC_ALL=C sort) | sha256sum`."
    )
    for block in BLOCKS:
        if inputs.block(block):
            lines.append(_grid_line(f"{block.capitalize()} block", inputs.block(block).get("data", {})))
    lines.append("")
    files = raw.get("files", {})
    if files:
        lines += _table(
            ["raw file", "bytes", "sha256"],
            [[f"`{name}`", str(info["bytes"]), f"`{info['sha256']}`"] for name, info in sorted(files.items())],
        )
        lines.append("")
    return lines


def _protocol_section(inputs: ModelCardInputs) -> list[str]:
    protocol = inputs.metrics.get("protocol", "unknown")
    lines = ["## Protocol", ""]
    if protocol == "fully_observed":
        lines.append(
            "`fully_observed` (the KuaiRec paper's intended use): models learn from `big_matrix`; evaluation uses "
            "the nearly fully observed `small_matrix`, and every (user, video) pair present in both matrices is "
            "removed from training. Each model ranks, for every evaluated user, only the observed cells of the "
            "block's catalogue, so every recommended item has a real label. The ranker learns from logged views "
            "held out of training (`split.ranker_labels`, recorded in `metrics/split_summary.json`), with ALS and "
            "every feature computed from the rest, keeping the views that ALS ranks within the top "
            "`ranker.candidate_rank_pct` of the user's list (the kind of rows the candidates stage hands it); "
            "for evaluation, ALS is refitted on all training data."
        )
    else:
        lines.append(f"`{protocol}`.")
    lines += [
        "",
        "Two evaluation blocks: `small_matrix`'s users are split into a validation block and a test block, "
        "both fully observed and shaped alike (stratified by training activity). Settings chosen on validation; "
        "the test block read once, for the chosen configuration: the test numbers are the unbiased estimate, the "
        "validation numbers are optimistic for whatever was chosen on them.",
    ]
    unc = inputs.uncertainty.get("test", {}).get("method", {})
    lines += [
        "",
        f"Metrics are per-user means over users with >= 1 positive. Intervals: {unc.get('interval', 'n/a')}, "
        f"{fmt(unc.get('confidence'), 2)} confidence, {unc.get('samples')} resamples of the "
        f"{unc.get('users')} evaluated test users (seed {unc.get('seed')}); paired differences use the same "
        "resampled users for both models. Exact definitions are in `metrics/metrics.json` (`definitions`) and "
        "`metrics/beyond_accuracy.json`.",
        "",
    ]
    return lines


def _label_section(inputs: ModelCardInputs) -> list[str]:
    threshold = inputs.label.get("threshold", inputs.metrics.get("label_threshold"))
    if inputs.label.get("kind", inputs.metrics.get("label_kind")) == "duration_debiased":
        rule = (
            f"`label_ratio > {fmt(threshold, 2)}`, the duration-debiased label: a view's watch_ratio is above the "
            f"{fmt(inputs.label.get('debiased_quantile'), 2)} quantile of training views of videos of similar length "
            f"({inputs.label.get('duration_buckets')} log-spaced duration buckets fitted on training data)"
        )
        ratio = "label ratio"
    else:
        rule = f"`watch_ratio > {fmt(threshold, 2)}` (watch_ratio = play duration / video duration)"
        ratio = "watch_ratio"
    lines = ["## Label", "", f"- Positive (evaluation, popularity baselines, ALS confidence, features): {rule}."]
    ranker_label = inputs.model_params.get("ranker", {}).get("label")
    if ranker_label == "graded":
        lines.append(
            "- The ranker trains on graded relevance: the number of edges "
            f"{fmt(list(inputs.label.get('graded_edges', [])), 1)} a view's {ratio} exceeds."
        )
    elif ranker_label is not None:
        lines.append(f"- The ranker trains on the `{ranker_label}` label.")
    lines.append("")
    return lines


def _models_section(inputs: ModelCardInputs) -> list[str]:
    params = inputs.model_params
    models = inputs.block("test").get("models", {})
    lines = ["## Models", ""]
    for name in _ordered(list(models)):
        lines.append(f"- **{name}**: {MODEL_DESCRIPTIONS.get(name, 'see the pipeline documentation.')}")
        if params.get(name):
            lines.append(f"  - params: {_params_line(params[name])}")
        if name == "ranker" and params.get("candidates"):
            lines.append(f"  - candidates: {_params_line(params['candidates'])}")
        if name == "ranker" and inputs.ranker_features:
            listed = ", ".join(f"`{f}`" for f in inputs.ranker_features)
            lines.append(f"  - features ({len(inputs.ranker_features)}): {listed}")
    lines.append("")
    return lines


def _results_table(inputs: ModelCardInputs, block: str) -> list[str]:
    """Means [95% interval] of the block's models at K, with the seed spread of the seed-dependent ones."""
    k, models = inputs.k, inputs.block(block).get("models", {})
    intervals = inputs.uncertainty.get(block, {}).get("intervals", {})
    spread = seed_spread_models(inputs.seed_spread, block)
    seeds = inputs.seed_spread.get("seeds") if inputs.seed_spread else None
    skipped = spread is not None and not seeds  # the stage ran with seed_spread.seeds: []
    if skipped:
        spread = None
    seed_metrics = ("ndcg", "map")
    header = ["model", *(f"{m}@{k}" for m in _HEADLINE), f"coverage@{k}"]
    if spread is not None:
        header += [f"{m}@{k} over seeds" for m in seed_metrics]
    rows = []
    for name in _ordered(list(models)):
        cells = [
            _with_interval(intervals.get(name, {}).get(f"{metric}_at_{k}"), models[name].get(f"{metric}_at_{k}"))
            for metric in _HEADLINE
        ]
        row = [f"**{name}**", *cells, fmt(models[name].get(f"coverage_at_{k}"))]
        if spread is not None:
            row += [_seed_cell(spread.get(name, {}).get(f"{metric}_at_{k}"), name) for metric in seed_metrics]
        rows.append(row)
    lines = ["Mean [95% bootstrap interval] over the block's evaluated users."]
    if spread is None:
        why = "lists no seed (the seed spread was skipped)" if skipped else "not found"
        lines[0] += (
            f" Seed spread: `{SEED_SPREAD_FILE}` {why}, so the variation over training seeds is not shown "
            "(the intervals cover the sampling of users only)."
        )
    else:
        lines[0] += (
            f" Over seeds: mean ± std [min, max] of the model retrained with each of the seeds {fmt(seeds)} "
            f"(`{SEED_SPREAD_FILE}`); n/a: the model does not depend on a training seed; not measured: a "
            "seed-dependent model without an entry in the file."
        )
        if not spread:
            lines[0] += f" The file has no entry for the {block} block."
    return [*lines, "", *_table(header, rows)]


def _paired_table(inputs: ModelCardInputs, block: str) -> list[str]:
    k = inputs.k
    paired = inputs.uncertainty.get(block, {}).get("paired", {})
    if not paired:
        return []
    rows = []
    for comparison, per_metric in paired.items():
        for metric in ("ndcg", "map", "recall"):
            stats = per_metric.get(f"{metric}_at_{k}")
            if stats:
                rows.append(
                    [
                        comparison,
                        f"{metric}@{k}",
                        _with_interval(stats, None),
                        f"{fmt(stats['win_rate'], 3)} / {fmt(stats['tie_rate'], 3)} / {fmt(stats['loss_rate'], 3)}",
                    ]
                )
    lines = ["", f"Paired differences at K={k} (A - B on the same users; win/tie/loss = share of users):", ""]
    return lines + _table(["A - B", "metric", "difference [95% CI]", "win / tie / loss"], rows)


def _results_section(inputs: ModelCardInputs) -> list[str]:
    k = inputs.k
    lines = [f"## Results on the test block at K={k}", "", *_results_table(inputs, "test")]
    lines += _paired_table(inputs, "test")
    lines += ["", "### Candidate recall", ""]
    found = False
    for block in BLOCKS:
        candidates = inputs.block(block).get("candidates", {})
        for key in sorted(c for c in candidates if c.startswith("recall_at_")):
            n = key.removeprefix("recall_at_")
            found = True
            lines.append(
                f"- {block} block: recall@{n} of the ALS candidates = {fmt(candidates[key])}: the share of the block's "
                f"positives among the {n} candidates the ranker re-ranks (the ranker's ceiling within its candidates)."
            )
    if not found:
        lines.append("- not available.")
    lines.append("")
    if inputs.block("validation"):
        lines += [
            f"## Results on the validation block at K={k}",
            "",
            "The block every setting was chosen on (optimistic for the chosen configuration).",
            "",
            *_results_table(inputs, "validation"),
            "",
        ]
    return lines


def _beyond_section(inputs: ModelCardInputs) -> list[str]:
    k, models = inputs.k, inputs.beyond_accuracy.get("test", {}).get("models", {})
    if not models:
        return []
    names = ("coverage", "gini", "popularity_percentile", "novelty", "ild")
    rows = [[f"**{name}**", *(fmt(models[name].get(f"{m}_at_{k}")) for m in names)] for name in _ordered(list(models))]
    lines = [f"## Beyond accuracy at K={k} (test block)", ""]
    lines += _table(["model", *(f"{m}@{k}" for m in names)], rows)
    lines += [
        "",
        "Gini of recommendation counts over the catalogue (0 = equal exposure); popularity percentile of the "
        "recommended videos' training interaction counts within the block's catalogue (0-100); novelty = mean "
        "self-information -log2(share of training users who watched the video); ILD = mean pairwise "
        "1 - cosine similarity of category-tag vectors within a list.",
        "",
    ]
    return lines


def _segments_section(inputs: ModelCardInputs) -> list[str]:
    seg = inputs.segments.get("test", {})
    if not seg:
        return []
    metric = f"ndcg_at_{seg.get('k', inputs.k)}"
    lines = [f"## Segments ({metric.replace('_at_', '@')}, test block)", ""]
    blocks = (("user_active_degree", "user_active_degree"), ("history_quartile", "training-history quartile"))
    for block, title in blocks:
        groups = seg.get(block, {})
        if not groups:
            continue
        models = _ordered(list(next(iter(groups.values()))["models"]))
        rows = []
        for label, info in groups.items():
            name = label
            if "history_min" in info:
                name = f"{label} ({info['history_min']}-{info['history_max']} views)"
            rows.append([name, str(info["users"]), *(fmt(info["models"][m].get(metric)) for m in models)])
        lines += _table([title, "users", *models], rows)
        lines.append("")
    return lines


def _limitations(inputs: ModelCardInputs) -> list[str]:
    k = inputs.k
    manifest, test = inputs.manifest, inputs.block("test")
    data, models = test.get("data", {}), test.get("models", {})
    paired = inputs.uncertainty.get("test", {}).get("paired", {})
    out: list[str] = []
    if manifest.get("source") == "simulate":
        out.append(
            "The data are simulated: the numbers describe the simulator's generative model, not real Kuaishou "
            "users. Set `data.source: kuairec` to evaluate on the real KuaiRec 2.0 logs."
        )
    key = f"ndcg_at_{k}"
    for comparison, verdict_if_worse in (
        ("als-popularity", "ALS alone is weaker than the non-personalised popularity baseline"),
        ("ranker-popularity", "The two-stage ranker is weaker than the non-personalised popularity baseline"),
        ("ranker-als", "Re-ranking makes the ALS ranking worse"),
    ):
        stats = paired.get(comparison, {}).get(key)
        if not stats:
            continue
        detail = (
            f"ndcg@{k} difference {comparison} = {fmt(stats['mean'])} [{fmt(stats['low'])}, {fmt(stats['high'])}], "
            f"better for {fmt(100 * stats['win_rate'], 1)}% of users"
        )
        if stats["high"] < 0:
            out.append(f"{verdict_if_worse} on the test block ({detail}).")
        elif stats["low"] <= 0:
            out.append(f"No significant difference for {comparison} on the test block ({detail}).")
    popularity, by_duration = models.get("popularity", {}).get(key), models.get("duration_popularity", {}).get(key)
    if popularity and by_duration is not None:
        out.append(
            f"Duration effect: `duration_popularity` (the positive rate of the video's duration bucket alone) reaches "
            f"ndcg@{k} {fmt(by_duration)} on the test block, {fmt(100 * by_duration / popularity, 1)}% of "
            f"`popularity`'s {fmt(popularity)}; the rest is what popularity knows beyond a video's length."
        )
    candidates = test.get("candidates", {})
    for rkey in sorted(c for c in candidates if c.startswith("recall_at_")):
        n = rkey.removeprefix("recall_at_")
        out.append(
            f"The ranker only re-orders the top {n} ALS candidates, which hold {fmt(100 * candidates[rkey], 1)}% of "
            "the test block's positives; the rest are ranked by ALS below every candidate."
        )
    beyond = inputs.beyond_accuracy.get("test", {}).get("models", {})
    for name in ("ranker", "als", "popularity"):
        coverage = beyond.get(name, {}).get(f"coverage_at_{k}")
        if coverage is not None and coverage < 0.05:
            out.append(
                f"{name} recommends from only {fmt(100 * coverage, 2)}% of the catalogue at K={k} "
                f"(Gini {fmt(beyond[name].get(f'gini_at_{k}'), 3)}): little exposure for most videos."
            )
    stats_small = manifest.get("stats", {}).get("small_matrix", {})
    short = stats_small.get("positive_rate_gt_2_shortest_quintile")
    long_ = stats_small.get("positive_rate_gt_2_longest_quintile")
    threshold = inputs.label.get("threshold", inputs.metrics.get("label_threshold"))
    if short is not None and long_ is not None and threshold == 2.0:
        out.append(
            f"The label favours short videos: `watch_ratio > 2` is positive for {fmt(100 * short, 1)}% of views of "
            f"the shortest duration quintile and {fmt(100 * long_, 1)}% of the longest."
        )
    out.append(
        f"The fully observed test block covers {data.get('users')} users x {data.get('items')} videos "
        "(from KuaiRec's small_matrix: the most active users and popular videos); cold-start users and long-tail "
        "videos are not measured."
    )
    if data.get("users_without_positives"):
        n = data["users_without_positives"]
        users, verb = ("user", "is") if n == 1 else ("users", "are")
        out.append(f"{n} test {users} without a positive {verb} excluded from every mean.")
    if "oracle" in models:
        out.append(
            "The `oracle` models read the simulator's ground truth: ceilings and diagnostics, not deployable models."
        )
        honest, by_ratio = models["oracle"].get(key), models.get("oracle_watch_ratio", {}).get(key)
        if honest is not None and by_ratio is not None and honest < by_ratio:
            out.append(
                f"On this draw of the test labels `oracle_watch_ratio` beats `oracle` at ndcg@{k} ({fmt(by_ratio)} vs "
                f"{fmt(honest)}): chance, since `oracle` is the best order in expectation."
            )
    spread_blocks = [b for b in ("validation", "test") if seed_spread_models(inputs.seed_spread, b)]
    seeded = sorted({m for b in spread_blocks for m in seed_spread_models(inputs.seed_spread, b) or {}})
    if seeded:
        out.append(
            "Intervals reflect the sampling of users only; the seed columns "
            f"({' and '.join(spread_blocks)} block) add training randomness for "
            f"{', '.join(f'`{m}`' for m in seeded)}. Neither covers drift over time or the choice of hyper-parameters."
        )
    else:
        out.append(
            "Intervals reflect the sampling of test users only, not training randomness (seeds), drift over time or "
            "the choice of hyper-parameters."
        )
    return ["## Known limitations", "", *(f"- {line}" for line in out), ""]


def render_model_card(inputs: ModelCardInputs) -> str:
    """Render the model card as markdown (deterministic: same inputs, same bytes).

    Sections: Data, Protocol, Label, Models, Results on the test block at K (with the paired
    differences and candidate recall), Results on the validation block (with the seed spread), Beyond accuracy,
    Segments, Known limitations.

    Examples
    --------
    >>> card = render_model_card(ModelCardInputs(
    ...     metrics={"protocol": "fully_observed", "test": {"models": {"als": {"ndcg_at_10": 0.2}}, "data": {}}},
    ...     uncertainty={}, beyond_accuracy={}, segments={}, raw={"fingerprint": "ab"},
    ...     manifest={"source": "simulate"}, label={"threshold": 2.0}, model_params={}, k=10))
    >>> card.splitlines()[0], "## Known limitations" in card, "seed_spread.json` not found" in card
    ('# Model card: two-stage short-video recommender', True, True)
    """
    lines = [
        "# Model card: two-stage short-video recommender",
        "",
        "ALS candidate generation followed by a LightGBM ranker, evaluated on KuaiRec-format data. Written by the "
        "`report` stage from this run's artifacts; do not edit by hand.",
        "",
    ]
    for section in (
        _data_section,
        _protocol_section,
        _label_section,
        _models_section,
        _results_section,
        _beyond_section,
        _segments_section,
        _limitations,
    ):
        lines += section(inputs)
    return "\n".join(lines).rstrip("\n") + "\n"
