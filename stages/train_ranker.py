"""Stage train_ranker: LightGBM LambdaRank on the label-window feature table."""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

FEATURES_DIR = Path("data/features/train")
MODEL_DIR = Path("models/ranker")
PLOTS_DIR = Path("metrics/plots")
SUMMARY_FILE = Path("metrics/ranker_training.json")


def main() -> None:
    import json

    import polars as pl

    from reco.io import write_json
    from reco.models.ranker import save_ranker, train_ranker
    from reco.params import load_section

    params = load_section("ranker")
    spec = json.loads((FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    table = pl.read_parquet(FEATURES_DIR / "table.parquet")
    ranker = train_ranker(table, spec["features"], spec["categorical"], params)
    save_ranker(ranker, MODEL_DIR)
    write_json(ranker.curve, PLOTS_DIR / "ranker_validation.json")
    write_json(ranker.importance, PLOTS_DIR / "feature_importance.json")
    write_json(ranker.summary, SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("train_ranker", main)
