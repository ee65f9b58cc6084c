"""Stage features: one feature table per pair set (``train``: the ranker's labels; a block: its candidates).

Usage: ``python -m stages.features PAIRS HISTORY ALS_DIR CATALOGUE OUT_DIR``; CATALOGUE is a parquet
file whose ``video_id`` values are the videos the ALS rank percentile is taken over: the serving
catalogue (a block's videos), the same for the ranker's training rows as for the blocks. The table is
built and written one user partition at a time (:func:`reco.models.features.write_feature_table`),
on the engine ``compute`` names. See docs/protocol.md (what a feature may see).
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.features PAIRS HISTORY ALS_DIR CATALOGUE OUT_DIR"
PREPARED_DIR = Path("data/prepared")
SPLIT_SUMMARY_FILE = Path("metrics/split_summary.json")


def main() -> None:
    import json

    import polars as pl

    from reco.compute import compute_client
    from reco.io import atomic_dir
    from reco.models.als import load_als
    from reco.models.features import FeatureSources, temporal_serving_date, write_feature_table
    from reco.params import load_section
    from reco.schema import Columns, PreparedFiles

    pairs_path, history_path, als_dir, catalogue_path, out_dir = stage_args(
        USAGE, ["PAIRS", "HISTORY", "ALS_DIR", "CATALOGUE", "OUT_DIR"]
    )
    features, label, compute = load_section("features"), load_section("label"), load_section("compute")
    split_summary = json.loads(SPLIT_SUMMARY_FILE.read_text(encoding="utf-8"))
    latest_serving_date = temporal_serving_date(split_summary["protocol"], history_path)
    catalogue = pl.scan_parquet(catalogue_path).select(pl.col(Columns.item).unique()).collect(engine="streaming")
    sources = FeatureSources(
        pairs=pairs_path,
        history=history_path,
        users=pl.read_parquet(PREPARED_DIR / PreparedFiles.users),
        items=pl.read_parquet(PREPARED_DIR / PreparedFiles.items),
        item_daily=pl.read_parquet(PREPARED_DIR / PreparedFiles.item_daily),
        als_model=load_als(als_dir),
        catalogue=catalogue[Columns.item].to_numpy(),
    )
    with atomic_dir(out_dir) as tmp, compute_client(compute) as client:
        table = write_feature_table(
            sources,
            tmp / "table.parquet",
            threshold=label.threshold,
            smoothing=features.popularity_smoothing,
            daily_window_days=features.daily_window_days,
            compute=compute,
            client=client,
            latest_serving_date=latest_serving_date,
        )
        spec = {
            "features": table.features,
            "categorical": table.categorical,
            "serving_date": "each row's view date" if latest_serving_date is None else latest_serving_date.isoformat(),
        }
        (tmp / "features.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_stage("features", main)
