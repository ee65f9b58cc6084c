"""Stage train_ranker: the LightGBM ranker on the ranker's training feature table (models/ranker).

Reads only the rows the ranker learns from, one user partition at a time
(:func:`reco.models.features.ranker_training_table`), and trains on the engine ``compute`` names
(:func:`reco.models.ranker_engine.train_ranker`). See docs/scaling.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

FEATURES_DIR = Path("data/features/train")
MODEL_DIR = Path("models/ranker")
PLOTS_DIR = Path("metrics/plots")
SUMMARY_FILE = Path("metrics/ranker_training.json")


def main() -> None:
    import json

    import numpy as np

    from reco.compute import compute_client
    from reco.io import write_json
    from reco.models.features import ranker_training_table
    from reco.models.ranker import sample_users, save_ranker
    from reco.models.ranker_engine import train_ranker
    from reco.params import load_section
    from reco.partitions import UserRowIndex

    params, compute = load_section("ranker"), load_section("compute")
    spec = json.loads((FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    index = UserRowIndex(FEATURES_DIR / "table.parquet")
    # the users prepare_training_parts draws from the whole table (it draws them again from index.users)
    train_users, valid_users = sample_users(index.users, params.train_users, params.valid_fraction, params.seed)
    chosen = np.union1d(train_users, valid_users)
    with compute_client(compute) as client:
        table = ranker_training_table(index, chosen, params.candidate_rank_pct, compute=compute, client=client)
        ranker = train_ranker(
            table, spec["features"], spec["categorical"], params, users=index.users, compute=compute, client=client
        )
    # The ranker saw the reduced table; the labelled rows are those of the whole table.
    ranker.summary["labelled_rows"] = index.n_rows
    save_ranker(ranker, MODEL_DIR)
    write_json(ranker.curve, PLOTS_DIR / "ranker_validation.json")
    write_json(ranker.importance, PLOTS_DIR / "feature_importance.json")
    write_json(ranker.summary, SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("train_ranker", main)
