"""Stage candidates: top-N candidates for every user of an evaluation block, from the block's videos.

Usage: ``python -m stages.candidates BLOCK [--seed N]`` (``validation`` or ``test``; ``--seed``: a seed
run's files under ``data/seeds/N/``). Writes
``data/candidates/BLOCK.parquet`` (ALS's pairs, with the quotas of the popularity and favourite-tag
sources merged in, plus the block's label and view date where the cell is observed) and
``metrics/candidates/BLOCK.json`` (recall@N of the lists, the ranker's ceiling on that block, and of each
source's own top N), one user partition at a time, in this process or with ``compute.engine: dask``; the
output is the same either way. See docs/design/stages.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, seed_run_root, stage_args_with_seed

USAGE = "python -m stages.candidates BLOCK [--seed N]"
ALS_DIR = Path("models/als/test")  # these three: relative to the run root (a seed run's data/seeds/N)
OUT_DIR = Path("data/candidates")
STATS_DIR = Path("metrics/candidates")
SPLIT_DIR = Path("data/split")
ITEMS_FILE = Path("data/prepared/items.parquet")  # the videos' tags, for the favourite-tag source
LOCAL_THREADS = 2  # implicit's top-k threads in this process (the result does not depend on them)


def main() -> None:
    import polars as pl

    from reco.compute import compute_client
    from reco.errors import UsageError
    from reco.io import write_json, write_parquet
    from reco.models.als import load_als
    from reco.models.candidate_sources import SourceMix
    from reco.models.candidates import block_candidates
    from reco.params import load_section
    from reco.partitions import UserRowIndex, partition_count
    from reco.progress import report
    from reco.schema import EVALUATION_BLOCKS, Columns

    (block_arg,), seed = stage_args_with_seed(USAGE, ["BLOCK"])
    block = str(block_arg)
    run_root = seed_run_root(seed)
    if block not in EVALUATION_BLOCKS:
        raise UsageError(f"BLOCK must be one of {list(EVALUATION_BLOCKS)}, got {block!r}; usage: {USAGE}")
    params, compute = load_section("candidates"), load_section("compute")
    label, evaluate = load_section("label"), load_section("evaluate")
    # Every source is scored for the report; the quotas say which fill the lists (0, 0: ALS's list alone).
    mix = SourceMix(
        popularity=params.popularity_quota,
        tag_popularity=params.tag_popularity_quota,
        threshold=label.threshold,  # positive views, for the popularity baseline and the favourite tags
        smoothing=evaluate.popularity_smoothing,  # the popularity baseline's, as evaluate scores it
        items=pl.read_parquet(ITEMS_FILE, columns=[Columns.item, Columns.tags]),
    )
    report("loading ALS, indexing the training views")
    model = load_als(run_root / ALS_DIR)
    train = UserRowIndex(SPLIT_DIR / "train.parquet")
    block_rows = UserRowIndex(SPLIT_DIR / f"{block}.parquet")
    with compute_client(compute) as client:
        candidates, summary = block_candidates(
            model,
            train,
            block_rows,
            params.n,
            num_threads=LOCAL_THREADS if client is None else compute.threads_per_worker,
            client=client,
            n_partitions=partition_count(train.rows_of(block_rows.users), compute),
            mix=mix,
        )
    write_parquet(candidates, run_root / OUT_DIR / f"{block}.parquet")
    write_json(summary, run_root / STATS_DIR / f"{block}.json")


if __name__ == "__main__":
    run_stage("candidates", main)
