"""Stage features: one feature table per pair set (``train``: the ranker's labels; ``test``: candidates).

Usage: ``python -m stages.features PAIRS HISTORY ALS_DIR OUT_DIR``. Features see only HISTORY
(rows dated before the cut = the day after HISTORY's last date) and item_daily rows before the cut.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.features PAIRS HISTORY ALS_DIR OUT_DIR"
PREPARED_DIR = Path("data/prepared")


def main() -> None:
    import datetime as dt
    import json

    import polars as pl

    from reco.io import atomic_dir, write_parquet
    from reco.models.als import load_als
    from reco.models.features import build_feature_table
    from reco.params import load_section
    from reco.schema import Columns, PreparedFiles

    pairs_path, history_path, als_dir, out_dir = stage_args(USAGE, ["PAIRS", "HISTORY", "ALS_DIR", "OUT_DIR"])
    features, label = load_section("features"), load_section("label")
    pairs = pl.read_parquet(pairs_path)
    history = pl.read_parquet(history_path)
    cut_date = history[Columns.date].max() + dt.timedelta(days=1)
    model = load_als(als_dir)
    label_columns = [c for c in (Columns.label, Columns.relevance, Columns.watch_ratio) if c in pairs.columns]
    table = build_feature_table(
        pairs,
        history=history,
        users=pl.read_parquet(PREPARED_DIR / PreparedFiles.users),
        items=pl.read_parquet(PREPARED_DIR / PreparedFiles.items),
        item_daily=pl.read_parquet(PREPARED_DIR / PreparedFiles.item_daily),
        als_model=model,
        catalogue=model.item_ids.ids,
        cut_date=cut_date,
        threshold=label.threshold,
        smoothing=features.popularity_smoothing,
        daily_window_days=features.daily_window_days,
        label_columns=label_columns,
    )
    with atomic_dir(out_dir) as tmp:
        write_parquet(table.frame, tmp / "table.parquet")
        spec = {"features": table.features, "categorical": table.categorical, "cut_date": cut_date.isoformat()}
        (tmp / "features.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_stage("features", main)
