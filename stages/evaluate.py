"""Stage evaluate: every model ranks the same test users x test catalogue; writes the metrics.

Models: random, popularity, als (the candidate generator alone), ranker (ALS candidates re-ranked
by LightGBM) and, when the source is the simulator, oracle (its ground truth) and oracle_item (each
video's true mean over the test users, the same list for everyone: the non-personalised ceiling).

Outputs: ``metrics/metrics.json`` (flat means, read by ``dvc metrics diff``),
``metrics/uncertainty.json`` (bootstrap intervals and paired differences over users),
``metrics/beyond_accuracy.json`` (coverage, Gini, popularity percentile, novelty, ILD),
``metrics/segments.json`` (per activity degree and history quartile), ``metrics/model_card.md``,
the plot data under ``metrics/plots/`` and the served top-K list.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
ALS_DIR = Path("models/als/test")
FEATURES_DIR = Path("data/features/test")
RANKER_DIR = Path("models/ranker")
PREPARED_DIR = Path("data/prepared")
CANDIDATES_FILE = Path("metrics/candidates.json")
SPLIT_SUMMARY_FILE = Path("metrics/split_summary.json")
RANKER_TRAINING_FILE = Path("metrics/ranker_training.json")
METRICS_FILE = Path("metrics/metrics.json")
UNCERTAINTY_FILE = Path("metrics/uncertainty.json")
BEYOND_ACCURACY_FILE = Path("metrics/beyond_accuracy.json")
SEGMENTS_FILE = Path("metrics/segments.json")
MODEL_CARD_FILE = Path("metrics/model_card.md")
PLOTS_DIR = Path("metrics/plots")
RECOMMENDATIONS_FILE = Path("data/recommendations/top_k.parquet")


def main() -> None:
    import json

    import numpy as np
    import polars as pl

    from reco.errors import ParamsError
    from reco.evaluation.beyond_accuracy import beyond_accuracy_report, item_stats
    from reco.evaluation.evaluate import (
        build_test_grid,
        evaluate_models,
        metrics_payload,
        top_k_frame,
        top_k_lists,
        two_stage_scores,
    )
    from reco.evaluation.model_card import (
        ModelCardInputs,
        lightgbm_card_params,
        raw_data_fingerprint,
        render_model_card,
    )
    from reco.evaluation.segments import nearest_cutoff, segments_report, user_segments
    from reco.evaluation.uncertainty import paired_plot_rows, uncertainty_report
    from reco.io import write_json, write_parquet, write_text
    from reco.models.als import item_scores, load_als
    from reco.models.baselines import grid_scores, popularity_item_scores, random_scores
    from reco.models.ranker import load_ranker
    from reco.params import as_dict, load_section
    from reco.schema import Columns, PreparedFiles, RawFiles

    params, label = load_section("evaluate"), load_section("label")
    manifest = json.loads((RAW_DIR / RawFiles.manifest).read_text(encoding="utf-8"))
    test = pl.read_parquet(SPLIT_DIR / "test.parquet")
    grid = build_test_grid(test)
    if max(params.ks) > len(grid.items):
        raise ParamsError(
            f"params.yaml: evaluate.ks = {list(params.ks)} is invalid; expected every K <= the test catalogue "
            f"size ({len(grid.items)} videos)"
        )
    candidate_stats = json.loads(CANDIDATES_FILE.read_text(encoding="utf-8"))
    if candidate_stats["n"] < max(params.ks):
        # The two-stage list is only re-ranked down to candidates.n; a longer K would be ALS's order.
        raise ParamsError(
            f"params.yaml: candidates.n = {candidate_stats['n']} is smaller than max(evaluate.ks) = {max(params.ks)}; "
            "expected candidates.n >= every K"
        )
    split_summary = json.loads(SPLIT_SUMMARY_FILE.read_text(encoding="utf-8"))
    train = pl.read_parquet(SPLIT_DIR / "train.parquet", columns=[Columns.user, Columns.item, Columns.watch_ratio, Columns.label_ratio])
    popularity = np.broadcast_to(
        popularity_item_scores(train, grid.items, label.threshold, params.popularity_smoothing), grid.relevant.shape
    )
    als_model = load_als(ALS_DIR)
    als = item_scores(als_model, grid.users, grid.items)
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
        # The best any non-personalised ranking can do: every video's true mean over the test users.
        item_truth = np.nanmean(np.where(grid.observed, scores["oracle"], np.nan), axis=0)
        scores["oracle_item"] = np.broadcast_to(item_truth.astype(np.float32), grid.relevant.shape)
    recommended = top_k_lists(grid, scores, max(params.ks))
    results = evaluate_models(grid, scores, list(params.ks), recommended=recommended)
    any_result = next(iter(results.values()))
    payload = {
        "protocol": split_summary["protocol"],
        "label_threshold": label.threshold,
        "label_kind": label.kind,
        "ranker_labels": split_summary["ranker_labels"]["kind"],
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
    write_parquet(top_k_frame(grid, scores["ranker"], params.top_k_output, recommended["ranker"]), RECOMMENDATIONS_FILE)

    uncertainty = uncertainty_report(results, params.bootstrap_samples, params.seed)
    write_json(uncertainty, UNCERTAINTY_FILE)
    write_json(paired_plot_rows(uncertainty), PLOTS_DIR / "paired_differences.json")
    items = pl.read_parquet(PREPARED_DIR / PreparedFiles.items, columns=[Columns.item, Columns.tags])
    beyond = beyond_accuracy_report(recommended, results, list(params.ks), item_stats(train, items, grid.items))
    write_json(beyond, BEYOND_ACCURACY_FILE)
    report_k = nearest_cutoff(list(params.ks), 10)
    profiles = pl.read_parquet(PREPARED_DIR / PreparedFiles.users, columns=[Columns.user, Columns.user_active_degree])
    segments = segments_report(results, user_segments(grid.users, profiles, train), report_k)
    write_json(segments, SEGMENTS_FILE)

    # Model parameters as the models saved them (not params.yaml: evaluate declares only its own sections).
    ranker_training = json.loads(RANKER_TRAINING_FILE.read_text(encoding="utf-8"))
    training_keys = ("label", "candidate_rank_pct", "best_iteration", "train_users", "valid_users", "train_rows")
    model_params = {
        "popularity": {"smoothing": params.popularity_smoothing, "threshold": label.threshold},
        "als": dict(als_model.params),
        "candidates": {"n": candidate_stats.get("n")},
        "ranker": {
            **lightgbm_card_params(ranker.booster.params),
            **{key: ranker_training[key] for key in training_keys if key in ranker_training},
        },
    }
    card = ModelCardInputs(
        metrics=payload,
        uncertainty=uncertainty,
        beyond_accuracy=beyond,
        segments=segments,
        raw=raw_data_fingerprint(RAW_DIR, recorded=manifest.get("checksums")),
        manifest=manifest,
        label=as_dict(label),
        model_params=model_params,
        k=report_k,
        ranker_features=tuple(ranker.features),
    )
    write_text(render_model_card(card), MODEL_CARD_FILE)


if __name__ == "__main__":
    run_stage("evaluate", main)
