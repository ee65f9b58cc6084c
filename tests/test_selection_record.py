"""The test cannot come first (issue #21, part 2): ``evaluate@test`` records the committed selection log's
sha256 and whether ``params.yaml`` holds the log's choice (reco.experiments.selection_record), and the
committed test metrics must carry a record that matches the committed log and params.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from evaluation.synthetic_blocks import KS, make_block_inputs, write_models, write_upstream
from project_copy import REPO

from reco.errors import InputDataError
from reco.evaluation.report import BlockPayloads, merge_blocks
from reco.experiments.selection_record import compare_chosen, same_value, selection_log_path, selection_record
from reco.params import read_params_file

TEST_METRICS = Path("metrics/blocks/test/metrics.json")
MERGED_METRICS = Path("metrics/metrics.json")
RERUN = "re-run `dvc repro` (evaluate@test and report) and commit metrics/"
REPO = Path(__file__).resolve().parents[1]
SELECTION_LOG = selection_log_path(read_params_file(REPO / "params.yaml"))  # the committed story's log

PARAMS: dict[str, Any] = {
    "als": {"factors": 32, "alpha": 50.0, "confidence": "signed"},
    "ranker": {"num_leaves": 31, "learning_rate": 0.05},
    "features": {"groups": {"tags": True}},
}


def write_log(path: Path, chosen: dict[str, Any], **extra: Any) -> Path:
    path.write_text(json.dumps({"chosen": chosen, "complete": True, "meta": {"block": "validation"}, **extra}))
    return path


# --------------------------------------------------------------------------------------------
# The matching logic on small synthetic logs
# --------------------------------------------------------------------------------------------


def test_params_holding_every_chosen_value_match(tmp_path: Path) -> None:
    chosen = {"als.factors": 32, "als.alpha": 50, "als.confidence": "signed", "features.groups.tags": True}
    log = write_log(tmp_path / "log.json", chosen)
    record = selection_record(log, PARAMS)
    assert record["params_match_selection"] is True and record["mismatches"] == []
    assert record["log_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert (record["log_complete"], record["chosen_on"], record["settings"]) == (True, "validation", 4)


def test_a_differing_value_is_a_mismatch(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.json", {"als.factors": 64, "ranker.learning_rate": 0.05})
    record = selection_record(log, PARAMS)
    assert record["params_match_selection"] is False
    assert record["mismatches"] == [{"key": "als.factors", "chosen": 64, "params": 32, "reason": "differs"}]


def test_a_chosen_setting_missing_from_params_is_a_mismatch(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.json", {"ranker.objective": "lambdarank", "split.ranker_labels": "holdout"})
    mismatches = selection_record(log, PARAMS)["mismatches"]
    assert [(m["key"], m["reason"], m["params"]) for m in mismatches] == [
        ("ranker.objective", "not in params.yaml", None),
        ("split.ranker_labels", "not in params.yaml", None),
    ]


def test_values_compare_as_settings_not_as_text() -> None:
    assert same_value(50.0, 50) and same_value([0.1, "a"], [0.1, "a"]) and same_value({"a": 1}, {"a": 1.0})
    assert not same_value(True, 1) and not same_value("50", 50) and not same_value([1, 2], [1, 2, 3])
    assert not same_value(None, 0) and same_value(None, None)
    assert compare_chosen({}, PARAMS) == []


def test_a_missing_log_is_recorded_and_a_malformed_one_refused(tmp_path: Path) -> None:
    record = selection_record(tmp_path / "absent.json", PARAMS)
    assert record["log_sha256"] is None and record["params_match_selection"] is False and "not found" in record["error"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputDataError, match="not valid JSON"):
        selection_record(tmp_path / "bad.json", PARAMS)
    (tmp_path / "nochoice.json").write_text(json.dumps({"steps": []}))
    with pytest.raises(InputDataError, match="'chosen' object"):
        selection_record(tmp_path / "nochoice.json", PARAMS)


def test_report_copies_the_test_blocks_record_into_metrics_json() -> None:
    record = {"log_sha256": "ab" * 32, "params_match_selection": True, "mismatches": []}

    def payloads(metrics: dict[str, Any]) -> BlockPayloads:
        return BlockPayloads(metrics=metrics, uncertainty={}, beyond_accuracy={}, segments={})

    block = {"data": {}, "candidates": {}, "models": {"als": {"ndcg_at_10": 0.5}}}
    merged = merge_blocks(
        {"validation": payloads(block), "test": payloads({**block, "selection": record})},
        {"label_rule": {"kind": "threshold", "threshold": 2.0, "edges_ms": [], "cutoffs": [2.0]}},
    )
    assert merged["test"]["selection"] == record and "selection" not in merged["validation"]


def test_the_evaluate_stage_records_the_selection_in_the_test_block_only(tmp_path: Path) -> None:
    inputs = make_block_inputs()
    write_upstream(tmp_path, inputs)
    write_models(tmp_path, inputs)
    evaluate = {"ks": list(KS), "seed": 3, "popularity_smoothing": 10.0, "top_k_output": 5, "bootstrap_samples": 20}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    (tmp_path / "selection" / "latent_drift").mkdir(parents=True)  # no data section: the default story
    log = write_log(tmp_path / "selection" / "latent_drift" / "log.json", {"evaluate.seed": 3, "evaluate.top_k_output": 10})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    for block in ("validation", "test"):
        features = tmp_path / "data" / "features" / block
        features.mkdir(parents=True, exist_ok=True)
        inputs.candidates.write_parquet(features / "table.parquet")
        if block == "validation":  # the synthetic block's cells serve as the validation block too
            (tmp_path / "data" / "split" / "validation.parquet").write_bytes(
                (tmp_path / "data" / "split" / "test.parquet").read_bytes()
            )
            (tmp_path / "metrics" / "candidates" / "validation.json").write_bytes(
                (tmp_path / "metrics" / "candidates" / "test.json").read_bytes()
            )
        done = subprocess.run(
            [sys.executable, "-m", "stages.evaluate", block], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    test = json.loads((tmp_path / "metrics" / "blocks" / "test" / "metrics.json").read_text())
    assert test["selection"] == {
        "log": "selection/latent_drift/log.json",
        "log_sha256": hashlib.sha256(log.read_bytes()).hexdigest(),
        "log_complete": True,
        "chosen_on": "validation",
        "settings": 2,
        "params_match_selection": False,
        "mismatches": [{"key": "evaluate.top_k_output", "chosen": 10, "params": 5, "reason": "differs"}],
    }
    validation = json.loads((tmp_path / "metrics" / "blocks" / "validation" / "metrics.json").read_text())
    assert "selection" not in validation


# --------------------------------------------------------------------------------------------
# The committed files
# --------------------------------------------------------------------------------------------


def committed_json(path: Path) -> dict[str, Any]:
    file = REPO / path
    if not file.is_file():
        pytest.fail(f"{path} not found; {RERUN}")
    return json.loads(file.read_text(encoding="utf-8"))


def test_committed_params_hold_the_committed_choice() -> None:
    record = selection_record(REPO / SELECTION_LOG, read_params_file(REPO / "params.yaml"))
    assert record["log_sha256"] is not None, record.get("error")
    assert record["params_match_selection"], (
        f"params.yaml differs from the choice in {SELECTION_LOG}: {record['mismatches']}; "
        "apply the selection (python -m reco.experiments.selection --apply) or re-run it"
    )


def test_committed_test_metrics_came_from_the_committed_choice() -> None:
    metrics = committed_json(TEST_METRICS)
    if "selection" not in metrics:
        pytest.fail(f"{TEST_METRICS} has no 'selection' record (computed before evaluate@test recorded it); {RERUN}")
    record = metrics["selection"]
    log_hash = hashlib.sha256((REPO / SELECTION_LOG).read_bytes()).hexdigest()
    assert record["log_sha256"] == log_hash, (
        f"{TEST_METRICS} was computed with another {SELECTION_LOG} (sha256 {record['log_sha256']}, committed "
        f"{log_hash}); {RERUN}"
    )
    assert record["params_match_selection"] is True and record["mismatches"] == [], (
        f"{TEST_METRICS} came from params that differ from the committed choice: {record['mismatches']}"
    )
    assert record.get("log_complete") is not False, f"{SELECTION_LOG} is an unfinished selection"
    assert record.get("chosen_on") in (None, "validation"), f"the selection was run on {record.get('chosen_on')!r}"
    merged = committed_json(MERGED_METRICS)
    assert merged.get("test", {}).get("selection") == record, f"{MERGED_METRICS} is older than {TEST_METRICS}; {RERUN}"
