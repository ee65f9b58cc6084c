"""The model card (reco.evaluation.model_card): sections, numbers read from the inputs, stable bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from reco.evaluation.beyond_accuracy import ItemStats, beyond_accuracy_report
from reco.evaluation.evaluate import metrics_payload
from reco.evaluation.metrics import ranking_metrics
from reco.evaluation.model_card import ModelCardInputs, lightgbm_card_params, raw_data_fingerprint, render_model_card
from reco.evaluation.segments import segments_report
from reco.evaluation.uncertainty import uncertainty_report
from reco.schema import Columns

SECTIONS = (
    "# Model card",
    "## Data",
    "## Protocol",
    "## Label",
    "## Models",
    "## Results on the test block at K=10",
    "### Candidate recall",
    "## Results on the validation block at K=10",
    "## Beyond accuracy at K=10 (test block)",
    "## Segments (ndcg@10, test block)",
    "## Known limitations",
)


def block_payloads(als_beats_popularity: bool, seed: int) -> dict[str, Any]:
    """One block's payloads (metrics, uncertainty, beyond accuracy, segments) from a known truth."""
    rng = np.random.default_rng(seed)
    n_users, n_items, ks = 60, 40, [5, 10]
    relevant = rng.random((n_users, n_items)) < 0.2
    truth = relevant + 0.1 * rng.random((n_users, n_items))
    noise = rng.random((n_users, n_items))
    # a strong model ranks by the truth; a weak one by noise
    strong, weak = truth, noise
    scores = {
        "ranker": truth + 0.3 * noise,
        "als": strong if als_beats_popularity else weak,
        "popularity": weak if als_beats_popularity else strong,
        "duration_popularity": weak,
    }
    recommended = {m: np.argsort(-s, axis=1, kind="stable")[:, :10].astype(np.int32) for m, s in scores.items()}
    results = {m: ranking_metrics(r, relevant, ks, n_items) for m, r in recommended.items()}
    data = {
        "users": n_users, "items": n_items, "pairs": n_users * n_items, "users_evaluated": n_users,
        "users_without_positives": 0, "users_unknown_to_als": 0, "positive_rate": 0.2,
    }  # fmt: skip
    stats = ItemStats(rng.integers(0, 50, n_items), rng.integers(1, 20, n_items), 20, rng.random((n_items, 31)) < 0.1)
    segments = pl.DataFrame(
        {
            Columns.user: np.arange(n_users),
            Columns.user_active_degree: ["full_active"] * 40 + ["high_active"] * 20,
            "history_length": rng.integers(5, 500, n_users),
        }
    )
    candidates = {"n": 30, "recall_at_30": 0.42 + seed / 100}
    return {
        "metrics": {"data": data, "candidates": candidates, **metrics_payload(results)},
        "uncertainty": uncertainty_report(results, samples=200, seed=0),
        "beyond_accuracy": beyond_accuracy_report(recommended, results, ks, stats),
        "segments": segments_report(results, segments, 10),
    }


def card_inputs(
    als_beats_popularity: bool, tmp_path: Path, seed_spread: dict[str, Any] | None = None
) -> ModelCardInputs:
    blocks = {"test": block_payloads(als_beats_popularity, 0), "validation": block_payloads(als_beats_popularity, 1)}
    metrics = {
        "protocol": "fully_observed",
        "label_threshold": 2.0,
        "label_kind": "threshold",
        **{name: {k: v for k, v in b["metrics"].items() if k != "definitions"} for name, b in blocks.items()},
    }
    (tmp_path / "big_matrix.csv").write_text("user_id,video_id\n1,2\n")
    return ModelCardInputs(
        metrics=metrics,
        uncertainty={name: b["uncertainty"] for name, b in blocks.items()},
        beyond_accuracy={name: b["beyond_accuracy"] for name, b in blocks.items()},
        segments={name: b["segments"] for name, b in blocks.items()},
        raw=raw_data_fingerprint(tmp_path),
        manifest={"source": "simulate", "profile": "tiny", "seed": 7, "scale": 1.0},
        label={"threshold": 2.0, "graded_edges": [1.0, 2.0, 3.0, 5.0]},
        model_params={
            "als": {"factors": 32, "regularization": 100.0},
            "candidates": {"n": 30},
            "ranker": {"objective": "lambdarank", "label": "graded", "num_leaves": 31},
        },
        k=10,
        ranker_features=("als_score", "i_pos_rate"),
        seed_spread=seed_spread,
    )


def test_card_has_every_section_in_order_and_the_run_numbers(tmp_path: Path) -> None:
    inputs = card_inputs(als_beats_popularity=False, tmp_path=tmp_path)
    card = render_model_card(inputs)
    positions = [card.find(title) for title in SECTIONS]
    assert -1 not in positions, [t for t, p in zip(SECTIONS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert inputs.raw["fingerprint"] in card
    assert "`factors=32`" in card and "`n=30`" in card and "`num_leaves=31`" in card  # saved model params
    assert "test block: recall@30 of the ALS candidates = 0.4200" in card
    assert "validation block: recall@30 of the ALS candidates = 0.4300" in card
    assert "`watch_ratio > 2.00`" in card and "graded relevance" in card
    assert "Settings chosen on validation; the test block read once" in card
    # each block's K=10 table shows each model's mean and interval from that block's inputs
    test_part, validation_part = card.split("## Results on the validation block")
    for part, block in ((test_part, "test"), (validation_part, "validation")):
        ndcg = inputs.uncertainty[block]["intervals"]["ranker"]["ndcg_at_10"]
        row = next(line for line in part.splitlines() if line.startswith("| **ranker** |") and "[" in line)
        assert f"{ndcg['mean']:.4f} [{ndcg['low']:.4f}, {ndcg['high']:.4f}]" in row
    assert card.endswith("\n") and not card.endswith("\n\n")


def test_limitations_are_read_from_the_numbers(tmp_path: Path) -> None:
    weak_als = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path))
    strong_als = render_model_card(card_inputs(als_beats_popularity=True, tmp_path=tmp_path))
    limitation = "ALS alone is weaker than the non-personalised popularity baseline"
    assert limitation in weak_als.split("## Known limitations")[1]
    assert limitation not in strong_als
    for card in (weak_als, strong_als):
        assert "The data are simulated" in card
        assert "hold 42.0% of the test block's positives" in card


def test_card_bytes_are_deterministic_and_carry_no_timestamp(tmp_path: Path) -> None:
    first = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path))
    second = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path))
    assert first == second
    assert not re.search(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}", first)
    assert str(tmp_path) not in first  # no absolute paths


def test_raw_fingerprint_is_the_sha256_of_the_sha256sum_listing(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"2\n")
    (tmp_path / "a.csv").write_bytes(b"1\n")
    (tmp_path / ".a.csv.123.tmp").write_bytes(b"half written")  # hidden temporaries are not data
    fp = raw_data_fingerprint(tmp_path)
    assert list(fp["files"]) == ["a.csv", "b.csv"]
    digests = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("a.csv", "b.csv")}
    listing = "".join(f"{digests[name]}  {name}\n" for name in ("a.csv", "b.csv"))
    assert fp["fingerprint"] == hashlib.sha256(listing.encode()).hexdigest()
    assert fp["files"]["a.csv"] == {"bytes": 2, "sha256": digests["a.csv"]}
    (tmp_path / "b.csv").write_bytes(b"3\n")
    assert raw_data_fingerprint(tmp_path)["fingerprint"] != fp["fingerprint"]


def test_raw_fingerprint_reuses_recorded_checksums_only_where_the_size_matches(tmp_path: Path) -> None:
    from reco.io import folder_checksums

    (tmp_path / "a.csv").write_bytes(b"1\n")
    (tmp_path / "b.csv").write_bytes(b"2\n")
    recorded = folder_checksums(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")  # written after the record: hashed by the card itself
    assert raw_data_fingerprint(tmp_path, recorded=recorded) == raw_data_fingerprint(tmp_path)
    # A recorded digest is taken as is when the size matches (it is not re-read) ...
    planted = {**recorded, "a.csv": {"bytes": 2, "sha256": "0" * 64}}
    assert raw_data_fingerprint(tmp_path, recorded=planted)["files"]["a.csv"]["sha256"] == "0" * 64
    # ... and ignored when the file's size no longer matches the record.
    (tmp_path / "b.csv").write_bytes(b"22\n")
    fresh = raw_data_fingerprint(tmp_path, recorded=recorded)
    assert fresh["files"]["b.csv"]["sha256"] == hashlib.sha256(b"22\n").hexdigest()
    assert fresh == raw_data_fingerprint(tmp_path)


def test_lightgbm_card_params_keeps_only_the_shown_settings() -> None:
    booster = {"objective": "lambdarank", "learning_rate": 0.05, "verbosity": -1, "gpu_device_id": -1}
    shown = lightgbm_card_params(booster)
    assert shown == {"objective": "lambdarank", "learning_rate": 0.05}


def test_label_section_names_the_label_kind(tmp_path: Path) -> None:
    inputs = card_inputs(als_beats_popularity=False, tmp_path=tmp_path)
    debiased = dataclasses.replace(
        inputs, label={**inputs.label, "kind": "duration_debiased", "debiased_quantile": 0.95, "duration_buckets": 8}
    )
    label_part = render_model_card(debiased).split("## Label")[1].split("## Models")[0]
    assert "duration-debiased" in label_part and "0.95 quantile" in label_part and "8 log-spaced" in label_part
    assert "`watch_ratio > 2.00`" not in label_part


def test_models_section_explains_the_honest_oracle_and_the_duration_baselines(tmp_path: Path) -> None:
    inputs = card_inputs(als_beats_popularity=False, tmp_path=tmp_path)
    models = dict(inputs.metrics["test"]["models"])
    models["oracle"] = models["oracle_watch_ratio"] = dict(models["ranker"])
    test = {**inputs.metrics["test"], "models": models}
    card = render_model_card(dataclasses.replace(inputs, metrics={**inputs.metrics, "test": test}))
    models_part = card.split("## Models")[1].split("## Results")[0]
    assert "true probability of the label" in models_part and "no model can beat this order on average" in models_part
    assert "Not the best order for a binary label" in models_part
    assert "the duration effect alone, learned" in models_part
    limitations = card.split("## Known limitations")[1]
    assert "`duration_popularity` (the positive rate of the video's duration bucket alone)" in limitations


def test_seed_spread_sits_next_to_the_intervals_or_its_absence_is_said(tmp_path: Path) -> None:
    missing = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path))
    assert "`metrics/seed_spread.json` not found" in missing and "over seeds" not in missing.split("## Known")[0]
    spread = {"seeds": [0, 1], "blocks": {"validation": {"models": {"ranker": {
        "ndcg_at_10": {"mean": 0.5, "std": 0.01, "min": 0.49, "max": 0.51, "values": [0.49, 0.51]},
        "map_at_10": {"mean": 0.4, "std": 0.02, "min": 0.38, "max": 0.42, "values": [0.38, 0.42]}}}}}}  # fmt: skip
    card = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path, seed_spread=spread))
    # the spread is measured on the validation block: the test block's table says it has no entry
    test_part, validation_part = card.split("## Results on the validation block")
    assert "The file has no entry for the test block." in test_part
    ranker = next(line for line in validation_part.splitlines() if line.startswith("| **ranker** |"))
    assert ranker.endswith("| 0.5000 ± 0.0100 [0.4900, 0.5100] | 0.4000 ± 0.0200 [0.3800, 0.4200] |")
    als = next(line for line in validation_part.splitlines() if line.startswith("| **als** |"))
    assert als.endswith("| not measured | not measured |")  # a seed-dependent model the file does not cover
    assert "seed columns (validation block) add training randomness for `ranker`" in card


def test_an_empty_seed_spread_is_reported_as_skipped(tmp_path: Path) -> None:
    skipped = {"seeds": [], "blocks": {}, "block": "test", "models": {}, "note": "seed_spread.seeds is empty"}
    card = render_model_card(card_inputs(als_beats_popularity=False, tmp_path=tmp_path, seed_spread=skipped))
    assert "`metrics/seed_spread.json` lists no seed (the seed spread was skipped)" in card
    assert "over seeds |" not in card
