"""Stage candidates: top-N ALS candidates per test user from the test catalogue.

Writes data/candidates/test.parquet (pairs with ALS score and rank, plus the test label where the
cell is observed) and metrics/candidates.json (candidate recall@N: the ranker's ceiling).
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

ALS_DIR = Path("models/als/test")
SPLIT_DIR = Path("data/split")
OUT_FILE = Path("data/candidates/test.parquet")
STATS_FILE = Path("metrics/candidates.json")


def main() -> None:
    import numpy as np
    import polars as pl

    from reco.io import write_json, write_parquet
    from reco.models.als import build_confidence_matrix, load_als
    from reco.models.candidates import candidate_recall, recommend_candidates
    from reco.params import load_section
    from reco.schema import Columns

    params = load_section("candidates")
    model = load_als(ALS_DIR)
    train = pl.read_parquet(SPLIT_DIR / "train.parquet", columns=[Columns.user, Columns.item, Columns.watch_ratio])
    test = pl.read_parquet(SPLIT_DIR / "test.parquet", columns=[Columns.user, Columns.item, Columns.label, Columns.relevance])
    users = np.unique(test[Columns.user].to_numpy()).astype(np.int32)
    # Structure only (every watched pair), so that filtering removes everything the user has seen.
    # Only the test users' rows are read, so only their views are aggregated (~1/5 of the rows).
    test_users_views = train.filter(pl.col(Columns.user).is_in(pl.Series(users).implode()))
    seen = build_confidence_matrix(
        test_users_views, model.user_ids, model.item_ids, "binary", threshold=-np.inf, alpha=0.0
    )
    catalogue = np.unique(test[Columns.item].to_numpy()).astype(np.int32)
    by_views = (
        train.join(pl.DataFrame({Columns.item: catalogue}), on=Columns.item, how="semi")
        .group_by(Columns.item)
        .len()
        .sort(["len", Columns.item], descending=[True, False])
    )
    fallback = np.concatenate(
        [by_views[Columns.item].to_numpy(), np.setdiff1d(catalogue, by_views[Columns.item].to_numpy())]
    ).astype(np.int32)
    candidates, stats = recommend_candidates(
        model, seen, users, params.n, catalogue=catalogue, filter_seen=True, fallback_items=fallback
    )
    labelled = candidates.join(test, on=[Columns.user, Columns.item], how="left", maintain_order="left")
    positives = test.filter(pl.col(Columns.label))
    recall = candidate_recall(candidates, positives)
    write_parquet(labelled, OUT_FILE)
    write_json(
        {
            "n": params.n,
            f"recall_at_{params.n}": round(recall, 6),
            "test_users": int(len(users)),
            "test_catalogue_items": int(len(catalogue)),
            "catalogue_items_unknown_to_als": int(np.sum(model.item_ids.index_of(catalogue) < 0)),
            **{key: int(value) for key, value in stats.items()},
        },
        STATS_FILE,
    )


if __name__ == "__main__":
    run_stage("candidates", main)
