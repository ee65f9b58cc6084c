"""Stage split: train / history / ranker-label sets and the validation and test blocks (`split.protocol`)."""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

PREPARED_DIR = Path("data/prepared")
SPLIT_DIR = Path("data/split")
SUMMARY_FILE = Path("metrics/split_summary.json")


def main() -> None:
    import polars as pl

    from reco.data.split import split_interactions
    from reco.io import atomic_dir, write_json, write_parquet
    from reco.params import load_section
    from reco.schema import PreparedFiles

    split, label = load_section("split"), load_section("label")
    big = pl.read_parquet(PREPARED_DIR / PreparedFiles.big)
    small = pl.read_parquet(PREPARED_DIR / PreparedFiles.small)
    result = split_interactions(big, small, split, label, source=str(PREPARED_DIR / PreparedFiles.big))
    with atomic_dir(SPLIT_DIR) as tmp:
        for name, frame in result.sets().items():
            write_parquet(frame, tmp / f"{name}.parquet")
    write_json(result.summary, SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("split", main)
