"""Stage train_ranker: LightGBM LambdaRank on the ranker's training feature table.

``compute.engine: local`` fits in this process; ``dask`` with LightGBM's distributed training on
a Dask cluster (:mod:`reco.models.ranker_dask`); both save the same LightGBM text format.
"""

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

    params, compute = load_section("ranker"), load_section("compute")
    spec = json.loads((FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    table = pl.read_parquet(FEATURES_DIR / "table.parquet")
    if compute.engine == "dask":
        from reco.models.ranker_dask import train_ranker_dask

        ranker = train_ranker_dask(table, spec["features"], spec["categorical"], params, compute)
    else:
        ranker = train_ranker(table, spec["features"], spec["categorical"], params)
    save_ranker(ranker, MODEL_DIR)
    write_json(ranker.curve, PLOTS_DIR / "ranker_validation.json")
    write_json(ranker.importance, PLOTS_DIR / "feature_importance.json")
    write_json(ranker.summary, SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("train_ranker", main)
