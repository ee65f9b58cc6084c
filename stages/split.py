"""Stage split: train / history / ranker-label sets and the validation and test blocks (`split.protocol`).

``big_matrix`` is scanned a chunk of whole users at a time (:mod:`reco.data.split`), so memory does not
grow with the logs, and the sets replace ``data/split`` only once every file is complete. See
docs/design/stages.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

PREPARED_DIR = Path("data/prepared")
SPLIT_DIR = Path("data/split")
SUMMARY_FILE = Path("metrics/split_summary.json")


def main() -> None:
    import polars as pl

    from reco.data.split import write_split
    from reco.io import atomic_dir, write_json
    from reco.params import load_section
    from reco.schema import PreparedFiles

    split, label = load_section("split"), load_section("label")
    big = pl.scan_parquet(PREPARED_DIR / PreparedFiles.big)
    big.collect_schema()  # reads the footer only: a missing file is named before anything is written
    small = pl.read_parquet(PREPARED_DIR / PreparedFiles.small)  # a fixed size at every scale
    with atomic_dir(SPLIT_DIR) as tmp:
        summary = write_split(big, small, split, label, tmp, source=str(PREPARED_DIR / PreparedFiles.big))
    write_json(summary, SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("split", main)
