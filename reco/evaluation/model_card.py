"""The model card: a deterministic markdown summary of what was trained, on what, and how well.

Everything in the card is read from the run's own artifacts (the raw-data manifest and checksums,
the models' saved parameters, and the metrics payloads written by ``evaluate``); nothing is typed
in by hand, and the statements under *Known limitations* are derived from the numbers. No
timestamps, no absolute paths, fixed float formatting: the same inputs give the same bytes.

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
    "LIGHTGBM_CARD_KEYS",
    "MODEL_ORDER",
    "ModelCardInputs",
    "fmt",
    "lightgbm_card_params",
    "raw_data_fingerprint",
    "render_model_card",
]

# Order of the models in every table; models not listed follow in name order.
MODEL_ORDER: Final[tuple[str, ...]] = ("ranker", "als", "popularity", "random", "oracle", "oracle_item")
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


@dataclass(frozen=True)
class ModelCardInputs:
    """Everything the card shows.

    Attributes
    ----------
    metrics
        The ``metrics.json`` payload (``protocol``, ``label_threshold``, ``data``, ``candidates``,
        ``models``).
    uncertainty
        :func:`reco.evaluation.uncertainty.uncertainty_report` output.
    beyond_accuracy
        :func:`reco.evaluation.beyond_accuracy.beyond_accuracy_report` output.
    segments
        :func:`reco.evaluation.segments.segments_report` output.
    raw
        :func:`raw_data_fingerprint` of the raw data.
    manifest
        ``data/raw/manifest.json`` (``source``, ``profile``/``seed`` or the archive's checksum).
    label
        The ``label`` params (``threshold``, ``graded_edges``).
    model_params
        Model name -> its saved parameters (e.g. ``{"als": ..., "candidates": ..., "ranker": ...}``).
    k
        The cut-off of the headline tables.
    ranker_features
        The ranker's ordered feature list.
    """

    metrics: Mapping[str, Any]
    uncertainty: Mapping[str, Any]
    beyond_accuracy: Mapping[str, Any]
    segments: Mapping[str, Any]
    raw: Mapping[str, Any]
    manifest: Mapping[str, Any]
    label: Mapping[str, Any]
    model_params: Mapping[str, Mapping[str, Any]]
    k: int
    ranker_features: Sequence[str] = field(default_factory=tuple)


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


def _data_section(inputs: ModelCardInputs) -> list[str]:
    manifest, data, raw = inputs.manifest, inputs.metrics.get("data", {}), inputs.raw
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
    lines += [
        f"- Raw data fingerprint ({raw.get('algorithm', 'sha256')} over the `sha256sum` listing of `data/raw`, "
        f"sorted by name): `{raw.get('fingerprint', 'n/a')}`. Check with "
        "`cd data/raw && sha256sum $(ls | LC_ALL=C sort) | sha256sum`.",
        f"- Test grid: {data.get('test_users')} users x {data.get('test_items')} videos, "
        f"{data.get('test_pairs')} observed pairs, positive rate {fmt(data.get('test_positive_rate'))}; "
        f"{data.get('users_evaluated')} users evaluated, {data.get('users_without_positives')} without a "
        f"positive (excluded), {data.get('users_unknown_to_als')} unknown to ALS (served by popularity).",
        "",
    ]
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
            "`fully_observed` (the KuaiRec paper's intended use): models learn from `big_matrix`; the test set is "
            "the nearly fully observed `small_matrix`, and every (user, video) pair present in both matrices is "
            "removed from training. Each model ranks, for every test user, only the observed cells of the test "
            "catalogue, so every recommended item has a real label. The ranker learns from logged views held out "
            "of training (`split.ranker_labels`, recorded in `metrics/split_summary.json`), with ALS and every "
            "feature computed from the rest, keeping the views that ALS ranks within the top "
            "`ranker.candidate_rank_pct` of the user's list (the kind of rows the candidates stage hands it); "
            "for the test, ALS is refitted on all training data."
        )
    else:
        lines.append(f"`{protocol}`.")
    unc = inputs.uncertainty.get("method", {})
    lines += [
        "",
        f"Metrics are per-user means over users with >= 1 positive. Intervals: {unc.get('interval', 'n/a')}, "
        f"{fmt(unc.get('confidence'), 2)} confidence, {unc.get('samples')} resamples of the "
        f"{unc.get('users')} evaluated users (seed {unc.get('seed')}); paired differences use the same resampled "
        "users for both models. Exact definitions are in `metrics/metrics.json` (`definitions`) and "
        "`metrics/beyond_accuracy.json`.",
        "",
    ]
    return lines


def _label_section(inputs: ModelCardInputs) -> list[str]:
    threshold = inputs.label.get("threshold", inputs.metrics.get("label_threshold"))
    if inputs.label.get("kind") == "duration_debiased":
        rule = (
            f"`label_ratio > {fmt(threshold, 2)}`, the duration-debiased label: a view's watch_ratio is above the "
            f"{fmt(inputs.label.get('debiased_quantile'), 2)} quantile of training views of videos of similar length "
            f"({inputs.label.get('duration_buckets')} log-spaced duration buckets fitted on training data)"
        )
        ratio = "label ratio"
    else:
        rule = f"`watch_ratio > {fmt(threshold, 2)}` (watch_ratio = play duration / video duration)"
        ratio = "watch_ratio"
    lines = ["## Label", "", f"- Positive (evaluation, popularity baseline, ALS confidence, features): {rule}."]
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
    models = inputs.metrics.get("models", {})
    descriptions = {
        "random": "uniform random scores (the floor).",
        "popularity": "each video's smoothed positive rate in training; the same list for everyone.",
        "als": "implicit ALS alone (the candidate generator), ranking the whole test catalogue.",
        "ranker": "ALS top-N candidates re-ranked by LightGBM; other videos follow in ALS order.",
        "oracle": "the simulator's expected watch ratio of every test cell (a ceiling, not a model).",
        "oracle_item": (
            "each video's true expected watch ratio averaged over the test users, the same list for everyone: "
            "the ceiling of any non-personalised ranking (a diagnostic, not a model)."
        ),
    }
    lines = ["## Models", ""]
    for name in _ordered(list(models)):
        lines.append(f"- **{name}**: {descriptions.get(name, 'see the pipeline documentation.')}")
        if params.get(name):
            lines.append(f"  - params: {_params_line(params[name])}")
        if name == "ranker" and params.get("candidates"):
            lines.append(f"  - candidates: {_params_line(params['candidates'])}")
        if name == "ranker" and inputs.ranker_features:
            listed = ", ".join(f"`{f}`" for f in inputs.ranker_features)
            lines.append(f"  - features ({len(inputs.ranker_features)}): {listed}")
    lines.append("")
    return lines


def _results_section(inputs: ModelCardInputs) -> list[str]:
    k, models = inputs.k, inputs.metrics.get("models", {})
    intervals = inputs.uncertainty.get("intervals", {})
    rows = []
    for name in _ordered(list(models)):
        cells = [
            _with_interval(intervals.get(name, {}).get(f"{metric}_at_{k}"), models[name].get(f"{metric}_at_{k}"))
            for metric in _HEADLINE
        ]
        rows.append([f"**{name}**", *cells, fmt(models[name].get(f"coverage_at_{k}"))])
    lines = [f"## Results at K={k}", "", "Mean [95% bootstrap interval] over evaluated users.", ""]
    lines += _table(["model", *(f"{m}@{k}" for m in _HEADLINE), f"coverage@{k}"], rows)
    paired = inputs.uncertainty.get("paired", {})
    if paired:
        lines += ["", f"Paired differences at K={k} (A - B on the same users; win/tie/loss = share of users):", ""]
        prow = []
        for comparison, per_metric in paired.items():
            for metric in ("ndcg", "map", "recall"):
                stats = per_metric.get(f"{metric}_at_{k}")
                if stats:
                    prow.append(
                        [
                            f"{comparison}",
                            f"{metric}@{k}",
                            _with_interval(stats, None),
                            f"{fmt(stats['win_rate'], 3)} / {fmt(stats['tie_rate'], 3)} / {fmt(stats['loss_rate'], 3)}",
                        ]
                    )
        lines += _table(["A - B", "metric", "difference [95% CI]", "win / tie / loss"], prow)
    candidates = inputs.metrics.get("candidates", {})
    recall_keys = sorted(key for key in candidates if key.startswith("recall_at_"))
    lines += ["", "### Candidate recall", ""]
    if recall_keys:
        for key in recall_keys:
            n = key.removeprefix("recall_at_")
            lines.append(
                f"- recall@{n} of the ALS candidates = {fmt(candidates[key])}: the share of test positives among "
                f"the {n} candidates the ranker re-ranks (the ranker's ceiling within its candidates)."
            )
    else:
        lines.append("- not available.")
    lines.append("")
    return lines


def _beyond_section(inputs: ModelCardInputs) -> list[str]:
    k, models = inputs.k, inputs.beyond_accuracy.get("models", {})
    if not models:
        return []
    names = ("coverage", "gini", "popularity_percentile", "novelty", "ild")
    rows = [[f"**{name}**", *(fmt(models[name].get(f"{m}_at_{k}")) for m in names)] for name in _ordered(list(models))]
    lines = [f"## Beyond accuracy at K={k}", ""]
    lines += _table(["model", *(f"{m}@{k}" for m in names)], rows)
    lines += [
        "",
        "Gini of recommendation counts over the catalogue (0 = equal exposure); popularity percentile of the "
        "recommended videos' training interaction counts within the test catalogue (0-100); novelty = mean "
        "self-information -log2(share of training users who watched the video); ILD = mean pairwise "
        "1 - cosine similarity of category-tag vectors within a list.",
        "",
    ]
    return lines


def _segments_section(inputs: ModelCardInputs) -> list[str]:
    seg = inputs.segments
    if not seg:
        return []
    metric = f"ndcg_at_{seg.get('k', inputs.k)}"
    lines = [f"## Segments ({metric.replace('_at_', '@')})", ""]
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
    metrics, manifest = inputs.metrics, inputs.manifest
    data = metrics.get("data", {})
    paired = inputs.uncertainty.get("paired", {})
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
            out.append(f"{verdict_if_worse} on this test set ({detail}).")
        elif stats["low"] <= 0:
            out.append(f"No significant difference for {comparison} ({detail}).")
    candidates = metrics.get("candidates", {})
    for rkey in sorted(c for c in candidates if c.startswith("recall_at_")):
        n = rkey.removeprefix("recall_at_")
        out.append(
            f"The ranker only re-orders the top {n} ALS candidates, which hold {fmt(100 * candidates[rkey], 1)}% of "
            "the test positives; the rest are ranked by ALS below every candidate."
        )
    beyond = inputs.beyond_accuracy.get("models", {})
    for name in _ordered(list(beyond)):
        coverage = beyond[name].get(f"coverage_at_{k}")
        if coverage is not None and coverage < 0.05 and not name.startswith("oracle"):
            out.append(
                f"{name} recommends from only {fmt(100 * coverage, 2)}% of the catalogue at K={k} "
                f"(Gini {fmt(beyond[name].get(f'gini_at_{k}'), 3)}): little exposure for most videos."
            )
    stats_small = manifest.get("stats", {}).get("small_matrix", {})
    short = stats_small.get("positive_rate_gt_2_shortest_quintile")
    long_ = stats_small.get("positive_rate_gt_2_longest_quintile")
    threshold = inputs.label.get("threshold", metrics.get("label_threshold"))
    if short is not None and long_ is not None and threshold == 2.0:
        out.append(
            f"The label favours short videos: `watch_ratio > 2` is positive for {fmt(100 * short, 1)}% of views of "
            f"the shortest duration quintile and {fmt(100 * long_, 1)}% of the longest."
        )
    out.append(
        f"The fully observed test covers {data.get('test_users')} users x {data.get('test_items')} videos "
        "(KuaiRec's small_matrix: the most active users and popular videos); cold-start users and long-tail "
        "videos are not measured."
    )
    if data.get("users_without_positives"):
        n = data["users_without_positives"]
        users, verb = ("user", "is") if n == 1 else ("users", "are")
        out.append(f"{n} test {users} without a positive {verb} excluded from every mean.")
    if "oracle" in metrics.get("models", {}):
        out.append("`oracle` reads the simulator's ground truth: it is a ceiling, not a deployable model.")
    out.append(
        "Intervals reflect the sampling of test users only, not training randomness (seeds), drift over time or "
        "the choice of hyper-parameters."
    )
    return ["## Known limitations", "", *(f"- {line}" for line in out), ""]


def render_model_card(inputs: ModelCardInputs) -> str:
    """Render the model card as markdown (deterministic: same inputs, same bytes).

    Sections: Data, Protocol, Label, Models, Results at K (with paired differences and candidate
    recall), Beyond accuracy, Segments, Known limitations.

    Examples
    --------
    >>> card = render_model_card(ModelCardInputs(
    ...     metrics={"protocol": "fully_observed", "models": {"als": {"ndcg_at_10": 0.2}}, "data": {}},
    ...     uncertainty={}, beyond_accuracy={}, segments={}, raw={"fingerprint": "ab"},
    ...     manifest={"source": "simulate"}, label={"threshold": 2.0}, model_params={}, k=10))
    >>> card.splitlines()[0], "## Known limitations" in card
    ('# Model card: two-stage short-video recommender', True)
    """
    lines = [
        "# Model card: two-stage short-video recommender",
        "",
        "ALS candidate generation followed by a LightGBM ranker, evaluated on KuaiRec-format data. Written by the "
        "`evaluate` stage from this run's artifacts; do not edit by hand.",
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
