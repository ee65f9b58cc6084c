"""Choose ALS settings on the ranker's labels (ALS fitted on ``history``), never on the test set.

Each setting is fitted with the pipeline's own :func:`reco.models.als.fit_als` on
``data/split/history.parquet`` and ranks, for a seeded sample of users, the logged views held out
in ``data/split/ranker_labels.parquet`` (every one of them has a real label). The smoothed
popularity of the same history is printed as the bar to clear. Run after ``dvc repro split``::

    python benchmarks/als_validation.py signed:1:10:100:32 binary:1:0:100:32 log1p_watch_ratio:1:0:10:64

A setting is ``CONFIDENCE:ALPHA:NEGATIVE_WEIGHT:REGULARIZATION:FACTORS``; iterations, seed and
threads come from ``params.yaml``. Prints validation NDCG@10 and MAP@10 per setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS (implicit's speed)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from reco.evaluation.evaluate import build_test_grid, evaluate_models  # noqa: E402
from reco.models.als import fit_als, item_scores  # noqa: E402
from reco.models.baselines import popularity_item_scores  # noqa: E402
from reco.params import load_section  # noqa: E402
from reco.schema import Columns  # noqa: E402

SPLIT_DIR = Path("data/split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", help="CONFIDENCE:ALPHA:NEGATIVE_WEIGHT:REGULARIZATION:FACTORS")
    parser.add_argument("--users", type=int, default=1500, help="validation users sampled (seeded)")
    args = parser.parse_args()

    label, base = load_section("label"), load_section("als")
    history = pl.read_parquet(SPLIT_DIR / "history.parquet")
    labels = pl.read_parquet(SPLIT_DIR / "ranker_labels.parquet")
    users = np.unique(labels[Columns.user].to_numpy())
    chosen = np.sort(np.random.default_rng(0).choice(users, min(args.users, len(users)), replace=False))
    labels = labels.join(pl.DataFrame({Columns.user: chosen.astype(np.int32)}), on=Columns.user, how="semi")
    grid = build_test_grid(labels)
    popularity = popularity_item_scores(history, grid.items, label.threshold, 50.0)
    baseline = evaluate_models(grid, {"popularity": np.broadcast_to(popularity, grid.relevant.shape)}, [10])
    print(f"popularity          val ndcg@10={baseline['popularity'].summary['ndcg_at_10']:.4f}", flush=True)
    for setting in args.settings:
        confidence, alpha, negative_weight, regularization, factors = setting.split(":")
        params = dataclasses.replace(
            base,
            confidence=confidence,
            alpha=float(alpha),
            negative_weight=float(negative_weight),
            regularization=float(regularization),
            factors=int(factors),
        )
        started = time.perf_counter()
        model, _ = fit_als(history, params, threshold=label.threshold)
        scores = item_scores(model, grid.users, grid.items)
        summary = evaluate_models(grid, {"als": scores}, [10])["als"].summary
        print(
            f"{setting:<20} val ndcg@10={summary['ndcg_at_10']:.4f} map@10={summary['map_at_10']:.4f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
