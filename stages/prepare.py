"""Stage prepare: typed, validated, cleaned parquet tables + metrics/data_quality.json.

See docs/design/data.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
QUALITY_FILE = Path("metrics/data_quality.json")


def main() -> None:
    from reco.data.prepare import prepare_all
    from reco.io import atomic_dir, write_json

    with atomic_dir(PREPARED_DIR) as tmp:
        report = prepare_all(RAW_DIR, tmp)
    write_json(report, QUALITY_FILE)


if __name__ == "__main__":
    run_stage("prepare", main)
