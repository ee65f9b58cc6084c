"""``report``: merge the two evaluation blocks and the seed spread into the files reviewers read.

:func:`build_report` reads what ``evaluate@validation`` and ``evaluate@test`` wrote, the seed spread, the
split summary, the raw-data manifest and the models' parameters; :func:`write_report` writes
``metrics/metrics.json`` (flat ``<metric>_at_<k>`` values per block and model, for ``dvc metrics diff``),
the merged uncertainty, beyond-accuracy and segment reports, the model card and the plot data. See
docs/design/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from reco.errors import InputDataError
from reco.evaluation.inputs import label_rule_from_summary, read_json
from reco.evaluation.layout import BlockFiles, ReportFiles
from reco.evaluation.metrics import metric_key
from reco.evaluation.model_card import (
    ModelCardInputs,
    lightgbm_card_params,
    raw_data_fingerprint,
    render_model_card,
)
from reco.evaluation.segments import nearest_cutoff
from reco.evaluation.uncertainty import paired_plot_rows
from reco.io import write_json, write_text
from reco.models.als import load_als
from reco.models.ranker import load_ranker
from reco.params import EvaluateParams, LabelParams, as_dict
from reco.progress import report as report_progress
from reco.schema import EVALUATION_BLOCKS, RawFiles

__all__ = [
    "PLOT_METRICS",
    "SELECTION",
    "BlockPayloads",
    "Report",
    "build_report",
    "merge_blocks",
    "metrics_at_k_rows",
    "read_block_payloads",
    "write_report",
]

SELECTION: Final = "settings chosen on the validation block; the test block is read once"
PLOT_METRICS: Final[tuple[str, ...]] = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
PLOT_BLOCK: Final = "test"
# metrics/ranker_training.json keys shown with the ranker's parameters in the card.
_TRAINING_KEYS: Final = ("label", "candidate_rank_pct", "best_iteration", "train_users", "valid_users", "train_rows")


@dataclass(frozen=True)
class BlockPayloads:
    """The four JSON payloads ``evaluate@<block>`` wrote."""

    metrics: Mapping[str, Any]
    uncertainty: Mapping[str, Any]
    beyond_accuracy: Mapping[str, Any]
    segments: Mapping[str, Any]


@dataclass(frozen=True)
class Report:
    """Everything ``report`` writes (see docs/design/evaluation.md)."""

    metrics: dict[str, Any]
    uncertainty: dict[str, Any]
    beyond_accuracy: dict[str, Any]
    segments: dict[str, Any]
    model_card: str
    metrics_at_k: list[dict[str, Any]]
    paired_differences: list[dict[str, Any]]


def read_block_payloads(files: BlockFiles) -> BlockPayloads:
    """Read one block's payloads; a missing file is a :class:`FileNotFoundError` (run ``evaluate@<block>``)."""
    return BlockPayloads(
        metrics=read_json(files.metrics_file),
        uncertainty=read_json(files.uncertainty_file),
        beyond_accuracy=read_json(files.beyond_accuracy_file),
        segments=read_json(files.segments_file),
    )


def _check_blocks(blocks: Mapping[str, BlockPayloads], sources: Mapping[str, object]) -> None:
    """Refuse blocks that cannot sit side by side: a mislabelled block, other models or other metrics."""
    for name, payloads in blocks.items():
        recorded = payloads.metrics.get("data", {}).get("block")
        if recorded is not None and recorded != name:
            raise InputDataError(sources[name], f"holds the results of block {recorded!r}, expected {name!r}")
        if not isinstance(payloads.metrics.get("models"), Mapping) or not payloads.metrics["models"]:
            raise InputDataError(sources[name], "expected a non-empty 'models' object (written by the evaluate stage)")
    names = list(blocks)
    first = blocks[names[0]].metrics["models"]
    for name in names[1:]:
        other = blocks[name].metrics["models"]
        if set(other) != set(first):
            raise InputDataError(
                sources[name],
                f"block {name!r} has models {sorted(other)} but block {names[0]!r} has {sorted(first)}; "
                "rerun both evaluate stages with the same code",
            )
        differing = sorted(model for model in first if set(first[model]) != set(other[model]))
        if differing:
            raise InputDataError(
                sources[name],
                f"blocks {names[0]!r} and {name!r} report different metrics for {differing} (other evaluate.ks?)",
            )


def merge_blocks(
    blocks: Mapping[str, BlockPayloads], split_summary: Mapping[str, Any], sources: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """The merged ``metrics.json`` payload (see docs/design/evaluation.md).

    Parameters
    ----------
    blocks
        Block name -> its payloads, for every block of :data:`reco.schema.EVALUATION_BLOCKS`.
    split_summary
        ``metrics/split_summary.json`` (protocol, fitted label rule, ranker-label kind).
    sources
        Block name -> the file named in error messages.

    Raises
    ------
    InputDataError
        A block is missing, holds another block's results, or the blocks differ in models or metrics.
    """
    sources = sources or {name: f"metrics/blocks/{name}/metrics.json" for name in blocks}
    missing = [name for name in EVALUATION_BLOCKS if name not in blocks]
    if missing:
        raise InputDataError("metrics/blocks", f"missing evaluation block(s) {missing}")
    _check_blocks(blocks, sources)
    rule = label_rule_from_summary(split_summary)
    ranker_labels = split_summary.get("ranker_labels")
    return {
        "protocol": split_summary.get("protocol"),
        "label_threshold": rule.threshold,
        "label_kind": rule.kind,
        "ranker_labels": ranker_labels.get("kind") if isinstance(ranker_labels, Mapping) else ranker_labels,
        "selection": SELECTION,
        "definitions": dict(blocks["test"].metrics.get("definitions", {})),
        **{
            name: {
                **{field: blocks[name].metrics.get(field, {}) for field in ("data", "candidates", "models")},
                # the test block's record of the selection it follows (evaluate@test), when present
                **{field: blocks[name].metrics[field] for field in ("selection",) if field in blocks[name].metrics},
            }
            for name in EVALUATION_BLOCKS
        },
    }


def metrics_at_k_rows(models: Mapping[str, Mapping[str, float]], ks: list[int]) -> list[dict[str, Any]]:
    """Plot rows ``{"model", "k", <metric>: value}`` of one block, models in name order, K ascending.

    Examples
    --------
    >>> metrics_at_k_rows({"als": {"ndcg_at_5": 0.5, "map_at_5": 0.4}}, [5])
    [{'model': 'als', 'k': 5, 'ndcg': 0.5, 'map': 0.4}]
    """
    return [
        {
            "model": name,
            "k": int(k),
            **{m: models[name][metric_key(m, k)] for m in PLOT_METRICS if metric_key(m, k) in models[name]},
        }
        for name in sorted(models)
        for k in ks
    ]


def _model_params(
    files: ReportFiles, evaluate: EvaluateParams, summary: Mapping[str, Any], n: Any
) -> tuple[dict[str, Any], list[str]]:
    """The models' parameters as they were saved (and the ranker's feature list), for the card."""
    rule = label_rule_from_summary(summary, files.split_summary_file)
    ranker = load_ranker(files.ranker_dir)
    training = read_json(files.ranker_training_file)
    smoothing, threshold = evaluate.popularity_smoothing, rule.threshold
    duration = {"smoothing": smoothing, "threshold": threshold, "bucket_edges_ms": list(rule.edges_ms)}
    params = {
        "random": {"seed": evaluate.seed},
        "popularity": {"smoothing": evaluate.popularity_smoothing, "threshold": rule.threshold},
        "duration_popularity": duration,
        "popularity_within_duration": duration,
        "als": dict(load_als(files.als_dir).params),
        "candidates": {"n": n},
        "ranker": {
            **lightgbm_card_params(ranker.booster.params),
            **{key: training[key] for key in _TRAINING_KEYS if key in training},
        },
    }
    return params, list(ranker.features)


def build_report(files: ReportFiles, label: LabelParams, evaluate: EvaluateParams) -> Report:
    """Read the blocks, the seed spread and the models; build every output of ``report`` (nothing is written)."""
    report_progress("reading the blocks, the seed spread and the models")
    blocks = {name: read_block_payloads(files.block(name)) for name in EVALUATION_BLOCKS}
    summary = read_json(files.split_summary_file)
    metrics = merge_blocks(blocks, summary, {name: files.block(name).metrics_file for name in EVALUATION_BLOCKS})
    seed_spread = read_json(files.seed_spread_file) if files.seed_spread_file.is_file() else None
    if seed_spread is not None and not isinstance(seed_spread, Mapping):
        raise InputDataError(files.seed_spread_file, "expected a JSON object")
    manifest = read_json(files.raw_dir / RawFiles.manifest)
    k = nearest_cutoff(list(evaluate.ks), 10)
    model_params, features = _model_params(files, evaluate, summary, metrics["test"]["candidates"].get("n"))
    per_block = {
        field: {name: dict(getattr(blocks[name], field)) for name in EVALUATION_BLOCKS}
        for field in ("uncertainty", "beyond_accuracy", "segments")
    }
    report_progress("model card (raw data fingerprint)")
    card = ModelCardInputs(
        metrics=metrics,
        uncertainty=per_block["uncertainty"],
        beyond_accuracy=per_block["beyond_accuracy"],
        segments=per_block["segments"],
        raw=raw_data_fingerprint(files.raw_dir, recorded=manifest.get("checksums")),
        manifest=manifest,
        label=as_dict(label),
        model_params=model_params,
        k=k,
        ranker_features=tuple(features),
        seed_spread=seed_spread,
    )
    return Report(
        metrics=metrics,
        uncertainty=per_block["uncertainty"],
        beyond_accuracy=per_block["beyond_accuracy"],
        segments=per_block["segments"],
        model_card=render_model_card(card),
        metrics_at_k=metrics_at_k_rows(metrics[PLOT_BLOCK]["models"], list(evaluate.ks)),
        paired_differences=paired_plot_rows(per_block["uncertainty"][PLOT_BLOCK]),
    )


def write_report(report: Report, files: ReportFiles) -> None:
    """Write every output of ``report`` (each file atomically)."""
    report_progress("writing")
    write_json(report.metrics, files.metrics_file)
    write_json(report.uncertainty, files.uncertainty_file)
    write_json(report.beyond_accuracy, files.beyond_accuracy_file)
    write_json(report.segments, files.segments_file)
    write_text(report.model_card, files.model_card_file)
    write_json(report.metrics_at_k, files.metrics_at_k_file)
    write_json(report.paired_differences, files.paired_differences_file)
