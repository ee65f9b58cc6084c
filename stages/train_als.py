"""Stage train_als: fit implicit ALS on one training set (``ranker``: history; ``test``: all training).

Usage: ``python -m stages.train_als INTERACTIONS OUT_DIR``. The set is scanned, a chunk of whole users at
a time (:func:`reco.models.als.fit_als`), so memory grows with the distinct (user, video) pairs, not with
the logged views. See docs/design/stages.md.
"""

from __future__ import annotations

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.train_als INTERACTIONS OUT_DIR"


def main() -> None:
    import polars as pl

    from reco.models.als import INPUT_COLUMNS, fit_als, save_als
    from reco.params import load_section

    interactions_path, out_dir = stage_args(USAGE, ["INTERACTIONS", "OUT_DIR"])
    als, label = load_section("als"), load_section("label")
    interactions = pl.scan_parquet(interactions_path).select(INPUT_COLUMNS)
    model, _ = fit_als(interactions, als, threshold=label.threshold)
    save_als(model, out_dir)


if __name__ == "__main__":
    run_stage("train_als", main)
