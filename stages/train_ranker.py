"""Stage train_ranker: the LightGBM ranker on the ranker's training feature table (models/ranker).

Reads only the rows the ranker learns from, one user partition at a time
(:func:`reco.models.training_rows.ranker_training_table`), and trains on the engine ``compute`` names
(:func:`reco.models.ranker_engine.train_ranker`). Usage: ``python -m stages.train_ranker [--seed N]``
(``--seed``: ``ranker.seed`` is N and the files are a seed run's, under ``data/seeds/N/``). See
docs/scaling.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, seed_run_root, stage_args_with_seed

USAGE = "python -m stages.train_ranker [--seed N]"
# relative to the run root (the repository, or a seed run's data/seeds/N)
FEATURES_DIR = Path("data/features/train")
MODEL_DIR = Path("models/ranker")
PLOTS_DIR = Path("metrics/plots")
SUMMARY_FILE = Path("metrics/ranker_training.json")


def main() -> None:
    import dataclasses
    import json

    import numpy as np

    from reco.compute import compute_client
    from reco.io import write_json
    from reco.models.feature_groups import ranker_features
    from reco.models.training_rows import ranker_training_table
    from reco.models.ranker import sample_users, save_ranker
    from reco.models.ranker_engine import train_ranker
    from reco.params import load_section
    from reco.partitions import UserRowIndex

    _, seed = stage_args_with_seed(USAGE, [])
    root = seed_run_root(seed)
    params, compute = load_section("ranker"), load_section("compute")
    if seed is not None:
        params = dataclasses.replace(params, seed=seed)
    spec = json.loads((root / FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    index = UserRowIndex(root / FEATURES_DIR / "table.parquet")
    features, categorical = ranker_features(spec["features"], spec["categorical"], params.exclude_groups)
    # the users prepare_training_parts draws from the whole table (it draws them again from index.users)
    train_users, valid_users = sample_users(index.users, params.train_users, params.valid_fraction, params.seed)
    chosen = np.union1d(train_users, valid_users)
    with compute_client(compute) as client:
        table = ranker_training_table(index, chosen, params.candidate_rank_pct, compute=compute, client=client)
        ranker = train_ranker(
            table, features, categorical, params, users=index.users, compute=compute, client=client
        )
    # The ranker saw the reduced table; the labelled rows are those of the whole table.
    ranker.summary["labelled_rows"] = index.n_rows
    save_ranker(ranker, root / MODEL_DIR)
    write_json(ranker.curve, root / PLOTS_DIR / "ranker_validation.json")
    write_json(ranker.importance, root / PLOTS_DIR / "feature_importance.json")
    write_json(ranker.summary, root / SUMMARY_FILE)


if __name__ == "__main__":
    run_stage("train_ranker", main)
