"""Stage evaluate: every model ranks the same test users x test catalogue; writes metrics.json.

Models: random, popularity, als (the candidate generator alone), ranker (ALS candidates re-ranked
by LightGBM) and, when the source is the simulator, oracle (its ground truth).
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
ALS_DIR = Path("models/als/test")
FEATURES_DIR = Path("data/features/test")
RANKER_DIR = Path("models/ranker")
CANDIDATES_FILE = Path("metrics/candidates.json")
METRICS_FILE = Path("metrics/metrics.json")
PLOTS_DIR = Path("metrics/plots")
RECOMMENDATIONS_FILE = Path("data/recommendations/top_k.parquet")


def main() -> None:
    import json

    import numpy as np
    import polars as pl

    from reco.errors import ParamsError
    from reco.evaluation.evaluate import build_test_grid, evaluate_models, metrics_payload, top_k_frame, two_stage_scores
    from reco.io import write_json, write_parquet
    from reco.models.als import item_scores, load_als
    from reco.models.baselines import grid_scores, popularity_item_scores, random_scores
    from reco.models.ranker import load_ranker
    from reco.params import load_section
    from reco.schema import Columns, RawFiles

    params, label = load_section("evaluate"), load_section("label")
    manifest = json.loads((RAW_DIR / RawFiles.manifest).read_text(encoding="utf-8"))
    test = pl.read_parquet(SPLIT_DIR / "test.parquet")
    grid = build_test_grid(test)
    if max(params.ks) > len(grid.items):
        raise ParamsError(
            f"params.yaml: evaluate.ks = {list(params.ks)} is invalid; expected every K <= the test catalogue "
            f"size ({len(grid.items)} videos)"
        )
    train = pl.read_parquet(SPLIT_DIR / "train.parquet", columns=[Columns.user, Columns.item, Columns.watch_ratio])
    popularity = np.broadcast_to(
        popularity_item_scores(train, grid.items, label.threshold, params.popularity_smoothing), grid.relevant.shape
    )
    als = item_scores(load_als(ALS_DIR), grid.users, grid.items)
    # Users unknown to ALS are served by popularity, as the candidate stage does.
    unknown_users = np.isnan(als).all(axis=1)
    als = np.where(unknown_users[:, None], popularity, als)
    candidates = pl.read_parquet(FEATURES_DIR / "table.parquet")
    ranker = load_ranker(RANKER_DIR)
    reranked = candidates.select(Columns.user, Columns.item).with_columns(
        pl.Series(Columns.score, ranker.predict(candidates))
    )
    scores: dict[str, np.ndarray] = {
        "random": random_scores(len(grid.users), len(grid.items), params.seed),
        "popularity": popularity,
        "als": als,
        "ranker": two_stage_scores(grid, reranked, als),
    }
    if manifest["source"] == "simulate":
        truth = pl.read_parquet(RAW_DIR / RawFiles.ground_truth)
        scores["oracle"] = grid_scores(truth, grid.users, grid.items, Columns.expected_watch_ratio)
    results = evaluate_models(grid, scores, list(params.ks))
    candidate_stats = json.loads(CANDIDATES_FILE.read_text(encoding="utf-8"))
    any_result = next(iter(results.values()))
    payload = {
        "protocol": "fully_observed",
        "label_threshold": label.threshold,
        "data": {
            "source": manifest["source"],
            "profile": manifest.get("profile"),
            "test_users": int(len(grid.users)),
            "test_items": int(len(grid.items)),
            "test_pairs": int(grid.observed.sum()),
            "test_positive_rate": round(float(grid.relevant.sum() / grid.observed.sum()), 6),
            "users_evaluated": int(len(any_result.evaluated_users)),
            "users_without_positives": int(any_result.users_without_positives),
            "users_unknown_to_als": int(unknown_users.sum()),
        },
        "candidates": {k: v for k, v in candidate_stats.items() if k.startswith("recall_at_") or k == "n"},
        **metrics_payload(results),
    }
    write_json(payload, METRICS_FILE)
    per_k = [
        {"model": name, "k": k, **{m: payload["models"][name][f"{m}_at_{k}"] for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")}}
        for name in results
        for k in params.ks
    ]
    write_json(per_k, PLOTS_DIR / "metrics_at_k.json")
    write_parquet(top_k_frame(grid, scores["ranker"], params.top_k_output), RECOMMENDATIONS_FILE)


if __name__ == "__main__":
    run_stage("evaluate", main)
