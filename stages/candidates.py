"""Stage candidates: top-N ALS candidates for every user of an evaluation block, from the block's videos.

Usage: ``python -m stages.candidates BLOCK`` (``validation`` or ``test``). Writes
``data/candidates/BLOCK.parquet`` (pairs with ALS score and rank, plus the block's label and view
date where the cell is observed) and ``metrics/candidates/BLOCK.json`` (candidate recall@N: the
ranker's ceiling on that block).
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.candidates BLOCK"
ALS_DIR = Path("models/als/test")
SPLIT_DIR = Path("data/split")
OUT_DIR = Path("data/candidates")
STATS_DIR = Path("metrics/candidates")


def main() -> None:
    import polars as pl

    from reco.errors import UsageError
    from reco.io import write_json, write_parquet
    from reco.models.als import load_als
    from reco.models.candidates import block_candidates
    from reco.params import load_section
    from reco.schema import EVALUATION_BLOCKS, Columns

    (block_arg,) = stage_args(USAGE, ["BLOCK"])
    block = str(block_arg)
    if block not in EVALUATION_BLOCKS:
        raise UsageError(f"BLOCK must be one of {list(EVALUATION_BLOCKS)}, got {block!r}; usage: {USAGE}")
    params = load_section("candidates")
    model = load_als(ALS_DIR)
    train = pl.read_parquet(SPLIT_DIR / "train.parquet", columns=[Columns.user, Columns.item, Columns.watch_ratio])
    block_rows = pl.read_parquet(SPLIT_DIR / f"{block}.parquet")
    candidates, summary = block_candidates(model, train, block_rows, params.n)
    write_parquet(candidates, OUT_DIR / f"{block}.parquet")
    write_json(summary, STATS_DIR / f"{block}.json")


if __name__ == "__main__":
    run_stage("candidates", main)
