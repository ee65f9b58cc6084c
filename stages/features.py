"""Stage features: one feature table per pair set (``train``: the ranker's labels; a block: its candidates).

Usage: ``python -m stages.features PAIRS HISTORY ALS_DIR CATALOGUE OUT_DIR``; CATALOGUE is a parquet
file whose ``video_id`` values are the videos the ALS rank percentile is taken over (all videos
for the ranker's training rows, the block's videos for its candidates). Features see only HISTORY,
the ALS model fitted on it, the static side tables and item_daily counters of days before each
row's view date (before the cut at the latest under the temporal protocol): see
``reco.models.features`` for what a model may know.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.features PAIRS HISTORY ALS_DIR CATALOGUE OUT_DIR"
PREPARED_DIR = Path("data/prepared")
SPLIT_SUMMARY_FILE = Path("metrics/split_summary.json")


def main() -> None:
    import datetime as dt
    import json

    import polars as pl

    from reco.io import atomic_dir, write_parquet
    from reco.models.als import load_als
    from reco.models.features import build_feature_table
    from reco.params import load_section
    from reco.schema import Columns, PreparedFiles

    pairs_path, history_path, als_dir, catalogue_path, out_dir = stage_args(
        USAGE, ["PAIRS", "HISTORY", "ALS_DIR", "CATALOGUE", "OUT_DIR"]
    )
    features, label = load_section("features"), load_section("label")
    split_summary = json.loads(SPLIT_SUMMARY_FILE.read_text(encoding="utf-8"))
    pairs = pl.read_parquet(pairs_path)
    history = pl.read_parquet(history_path)
    # Temporal protocol: nothing after the cut exists when the model serves.
    latest_serving_date = None
    if split_summary["protocol"] == "temporal":
        latest_serving_date = history[Columns.date].max() + dt.timedelta(days=1)
    model = load_als(als_dir)
    label_columns = [c for c in (Columns.label, Columns.relevance, Columns.watch_ratio) if c in pairs.columns]
    table = build_feature_table(
        pairs,
        history=history,
        users=pl.read_parquet(PREPARED_DIR / PreparedFiles.users),
        items=pl.read_parquet(PREPARED_DIR / PreparedFiles.items),
        item_daily=pl.read_parquet(PREPARED_DIR / PreparedFiles.item_daily),
        als_model=model,
        catalogue=pl.read_parquet(catalogue_path, columns=[Columns.item])[Columns.item].unique().to_numpy(),
        threshold=label.threshold,
        smoothing=features.popularity_smoothing,
        daily_window_days=features.daily_window_days,
        label_columns=label_columns,
        latest_serving_date=latest_serving_date,
    )
    with atomic_dir(out_dir) as tmp:
        write_parquet(table.frame, tmp / "table.parquet")
        spec = {
            "features": table.features,
            "categorical": table.categorical,
            "serving_date": "each row's view date" if latest_serving_date is None else latest_serving_date.isoformat(),
        }
        (tmp / "features.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_stage("features", main)
