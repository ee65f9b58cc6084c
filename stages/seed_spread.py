"""Stage seed_spread: the headline models (ALS, ranker) retrained with other seeds; metrics/seed_spread.json.

The views and the training feature table are read by user chunks and partitions, never whole
(:mod:`reco.experiments.seed_spread`). See docs/selection-and-review.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

SPLIT_DIR = Path("data/split")
PREPARED_DIR = Path("data/prepared")
TRAIN_FEATURES_DIR = Path("data/features/train")
SPLIT_SUMMARY_FILE = Path("metrics/split_summary.json")
OUT_FILE = Path("metrics/seed_spread.json")


def main() -> None:
    import json

    import polars as pl

    from reco.experiments.seed_spread import SeedSpreadInputs, seed_spread
    from reco.io import write_json
    from reco.models.features import temporal_serving_date
    from reco.params import load_section
    from reco.schema import EVALUATION_BLOCKS, PreparedFiles

    params = load_section("seed_spread")
    if not params.seeds:
        write_json({"seeds": [], "blocks": {}, "block": "test", "models": {}, "note": "seed_spread.seeds is empty"}, OUT_FILE)
        return
    spec = json.loads((TRAIN_FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    summary = json.loads(SPLIT_SUMMARY_FILE.read_text(encoding="utf-8"))
    inputs = SeedSpreadInputs(
        history=SPLIT_DIR / "history.parquet",
        train=SPLIT_DIR / "train.parquet",
        blocks={name: SPLIT_DIR / f"{name}.parquet" for name in EVALUATION_BLOCKS},
        train_table=TRAIN_FEATURES_DIR / "table.parquet",
        features_list=spec["features"],
        categorical=spec["categorical"],
        users=pl.read_parquet(PREPARED_DIR / PreparedFiles.users),
        items=pl.read_parquet(PREPARED_DIR / PreparedFiles.items),
        item_daily=pl.read_parquet(PREPARED_DIR / PreparedFiles.item_daily),
        label=load_section("label"),
        als=load_section("als"),
        ranker=load_section("ranker"),
        features=load_section("features"),
        candidates=load_section("candidates"),
        evaluate=load_section("evaluate"),
        # the block features' serving date, as the features stage computes it from the same history
        latest_serving_date=temporal_serving_date(summary["protocol"], SPLIT_DIR / "train.parquet"),
    )
    write_json(seed_spread(inputs, params.seeds), OUT_FILE)


if __name__ == "__main__":
    run_stage("seed_spread", main)
