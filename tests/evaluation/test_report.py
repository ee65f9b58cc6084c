"""report (reco.evaluation.report): both blocks merged side by side, the seed spread in the card, the plot data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reco.errors import InputDataError
from reco.evaluation.layout import BlockFiles, ReportFiles
from reco.evaluation.pipeline import evaluate_block, write_block_evaluation
from reco.evaluation.report import (
    SELECTION,
    BlockPayloads,
    build_report,
    merge_blocks,
    read_block_payloads,
    write_report,
)
from reco.io import write_json
from reco.params import LabelParams
from reco.schema import EVALUATION_BLOCKS

from .synthetic_blocks import KS, SPLIT_SUMMARY, evaluate_params, make_block_inputs, write_models, write_upstream

SEED_SPREAD = {
    "seeds": [1, 2, 3],
    "blocks": {
        "validation": {"models": {}},
        "test": {"models": {"als": {"ndcg_at_10": {"mean": 0.4, "std": 0.02, "min": 0.38, "max": 0.42,
                                                   "values": [0.38, 0.4, 0.42]}}}},
    },
}  # fmt: skip


@pytest.fixture
def evaluated(tmp_path: Path) -> ReportFiles:
    """A project folder after evaluate@validation and evaluate@test on synthetic blocks."""
    for seed, block in enumerate(EVALUATION_BLOCKS):
        inputs = make_block_inputs(block, seed=seed)
        write_upstream(tmp_path, inputs)
        write_block_evaluation(evaluate_block(inputs, evaluate_params()), BlockFiles.of(block, tmp_path))
    write_models(tmp_path, inputs)
    write_json({"label": "graded", "best_iteration": 3}, tmp_path / "metrics" / "ranker_training.json")
    return ReportFiles(tmp_path)


def test_report_merges_both_blocks_with_the_same_models(evaluated: ReportFiles) -> None:
    report = build_report(evaluated, LabelParams(), evaluate_params())
    metrics = report.metrics
    assert metrics["selection"] == SELECTION
    assert (metrics["protocol"], metrics["label_kind"]) == ("fully_observed", "threshold")
    assert metrics["label_threshold"] == 2.0
    assert metrics["ranker_labels"] == "holdout"
    for block in EVALUATION_BLOCKS:
        written = json.loads(evaluated.block(block).metrics_file.read_text())
        assert metrics[block] == {key: written[key] for key in ("data", "candidates", "models")}
    assert set(metrics["validation"]["models"]) == set(metrics["test"]["models"])
    assert metrics["validation"]["data"]["users"] == metrics["test"]["data"]["users"] == 24
    assert metrics["validation"]["models"] != metrics["test"]["models"]  # two different sets of users
    for payload in (report.uncertainty, report.beyond_accuracy, report.segments):
        assert list(payload) == list(EVALUATION_BLOCKS)
    # plot data: the test block, one row per model and K, with the metrics the templates plot
    test_models = metrics["test"]["models"]
    assert len(report.metrics_at_k) == len(test_models) * len(KS)
    row = next(r for r in report.metrics_at_k if r["model"] == "oracle" and r["k"] == 10)
    assert row["ndcg"] == test_models["oracle"]["ndcg_at_10"]
    assert row["coverage"] == test_models["oracle"]["coverage_at_10"]
    assert {r["comparison"] for r in report.paired_differences} == set(report.uncertainty["test"]["paired"])


def test_report_refuses_blocks_that_cannot_sit_side_by_side(evaluated: ReportFiles) -> None:
    blocks = {name: read_block_payloads(evaluated.block(name)) for name in EVALUATION_BLOCKS}
    fewer = dict(blocks["validation"].metrics, models={k: v for k, v in blocks["validation"].metrics["models"].items()
                                                         if k != "duration"})  # fmt: skip
    changed = {**blocks, "validation": BlockPayloads(fewer, {}, {}, {})}
    with pytest.raises(InputDataError, match="block 'test' has models .* but block 'validation' has"):
        merge_blocks(changed, SPLIT_SUMMARY)
    swapped = {"validation": blocks["test"], "test": blocks["test"]}
    with pytest.raises(InputDataError, match="holds the results of block 'test', expected 'validation'"):
        merge_blocks(swapped, SPLIT_SUMMARY)
    with pytest.raises(InputDataError, match=r"missing evaluation block\(s\) \['validation'\]"):
        merge_blocks({"test": blocks["test"]}, SPLIT_SUMMARY)


def test_card_shows_the_seed_spread_and_says_when_it_is_missing(evaluated: ReportFiles) -> None:
    without = build_report(evaluated, LabelParams(), evaluate_params()).model_card
    assert "`metrics/seed_spread.json` not found" in without and "over seeds |" not in without
    write_json(SEED_SPREAD, evaluated.seed_spread_file)  # no ranker entry, no validation entries
    card = build_report(evaluated, LabelParams(), evaluate_params()).model_card
    test_part = card.split("## Results on the test block")[1].split("## Results on the validation block")[0]
    als_row = next(line for line in test_part.splitlines() if line.startswith("| **als** |"))
    assert als_row.endswith("| 0.4000 ± 0.0200 [0.3800, 0.4200] | not measured |")  # ndcg over seeds; no map entry
    ranker_row = next(line for line in test_part.splitlines() if line.startswith("| **ranker** |"))
    assert ranker_row.endswith("| not measured | not measured |")
    popularity_row = next(line for line in test_part.splitlines() if line.startswith("| **popularity** |"))
    assert popularity_row.endswith("| n/a | n/a |")  # does not depend on a training seed
    validation_part = card.split("## Results on the validation block")[1]
    assert "The file has no entry for the validation block." in validation_part


def test_report_files_are_byte_identical_across_runs(evaluated: ReportFiles) -> None:
    write_json(SEED_SPREAD, evaluated.seed_spread_file)
    outputs = [
        evaluated.metrics_file, evaluated.uncertainty_file, evaluated.beyond_accuracy_file, evaluated.segments_file,
        evaluated.model_card_file, evaluated.metrics_at_k_file, evaluated.paired_differences_file,
    ]  # fmt: skip
    write_report(build_report(evaluated, LabelParams(), evaluate_params()), evaluated)
    first = {path: path.read_bytes() for path in outputs}
    write_report(build_report(evaluated, LabelParams(), evaluate_params()), evaluated)
    assert {path: path.read_bytes() for path in outputs} == first
    assert json.loads(evaluated.metrics_file.read_text())["test"]["models"]  # written, not empty
