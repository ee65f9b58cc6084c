"""Stage train_als: fit implicit ALS on one training set (``ranker``: history; ``test``: all training).

Usage: ``python -m stages.train_als INTERACTIONS OUT_DIR [--seed N]`` (``--seed``: ``als.random_state``
is N, for the seed spread). The set is scanned, a chunk of whole users at
a time (:func:`reco.models.als.fit_als`), so memory grows with the distinct (user, video) pairs, not with
the logged views. See docs/design/stages.md.
"""

from __future__ import annotations

from reco.cli import run_stage, stage_args_with_seed

USAGE = "python -m stages.train_als INTERACTIONS OUT_DIR [--seed N]"


def main() -> None:
    import dataclasses

    import polars as pl

    from reco.models.als import INPUT_COLUMNS, fit_als, save_als
    from reco.params import load_section

    (interactions_path, out_dir), seed = stage_args_with_seed(USAGE, ["INTERACTIONS", "OUT_DIR"])
    als, label = load_section("als"), load_section("label")
    if seed is not None:
        als = dataclasses.replace(als, random_state=seed)
    interactions = pl.scan_parquet(interactions_path).select(INPUT_COLUMNS)
    model, _ = fit_als(interactions, als, threshold=label.threshold)
    save_als(model, out_dir)


if __name__ == "__main__":
    run_stage("train_als", main)
