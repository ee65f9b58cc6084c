"""Compare ``ranker.candidate_rank_pct`` settings on the ranker's validation users, never on the test set.

Each setting trains the pipeline's own :func:`reco.models.ranker.train_ranker` on
``data/features/train/table.parquet`` (params from ``params.yaml``, only the cut changed) and
scores the validation users' labelled views (the user-disjoint part that ``train_ranker`` holds out
for early stopping), twice: on all of them, and on those that the history's ALS ranks within
``--serving-pct`` of the user's list (what the candidates stage would hand the ranker). ALS's own
score on the same rows is printed as the bar to clear. Run after ``dvc repro features``::

    python benchmarks/ranker_validation.py 1.0 0.06

Prints validation NDCG@10 (binary relevance, the evaluator of ``metrics.json``) per setting. On
the simulator's full profile the two settings score the same on the candidate-like rows; see
README, "Results", for why the default is set by the train-where-you-serve rule instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from reco.evaluation.evaluate import build_test_grid, evaluate_models  # noqa: E402
from reco.models.baselines import grid_scores  # noqa: E402
from reco.models.ranker import sample_users, train_ranker  # noqa: E402
from reco.params import load_section  # noqa: E402
from reco.schema import Columns  # noqa: E402

FEATURES_DIR = Path("data/features/train")


def ndcg_at_10(rows: pl.DataFrame, scores: np.ndarray) -> float:
    """NDCG@10 of ``scores`` over ``rows`` (user, video, relevance), each user ranking only their rows."""
    labelled = rows.select(Columns.user, Columns.item, (pl.col(Columns.relevance) > 0).cast(pl.Int8).alias(Columns.label))
    grid = build_test_grid(labelled)
    matrix = grid_scores(rows.select(Columns.user, Columns.item).with_columns(pl.Series("s", scores)), grid.users, grid.items, "s")
    return float(evaluate_models(grid, {"m": matrix}, [10])["m"].summary["ndcg_at_10"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", type=float, help="candidate_rank_pct values to compare")
    parser.add_argument("--serving-pct", type=float, default=0.06, help="ALS rank percentile of candidate-like rows")
    args = parser.parse_args()

    base = load_section("ranker")
    spec = json.loads((FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    table = pl.read_parquet(FEATURES_DIR / "table.parquet")
    _, valid_users = sample_users(table[Columns.user].to_numpy(), base.train_users, base.valid_fraction, base.seed)
    chosen = pl.DataFrame({Columns.user: pl.Series(valid_users, dtype=table.schema[Columns.user])})
    valid = table.join(chosen, on=Columns.user, how="semi")
    serving = valid.filter(pl.col("als_rank_pct") <= args.serving_pct)
    print(f"validation users {len(valid_users)}: {valid.height} labelled views, {serving.height} in ALS's top {args.serving_pct:g}")
    als = {name: ndcg_at_10(rows, rows["als_score"].fill_null(-np.inf).to_numpy()) for name, rows in (("all", valid), ("serving", serving))}
    print(f"{'ALS score':<28} all rows ndcg@10={als['all']:.4f}  candidate-like rows ndcg@10={als['serving']:.4f}", flush=True)
    for cut in args.settings:
        params = dataclasses.replace(base, candidate_rank_pct=cut)
        started = time.perf_counter()
        # train_ranker draws the same user split before its cut, so `valid` is held out for every setting.
        ranker = train_ranker(table, spec["features"], spec["categorical"], params)
        scored = {
            name: ndcg_at_10(rows, ranker.booster.predict(rows.select(spec["features"]).to_numpy(), num_iteration=ranker.best_iteration))
            for name, rows in (("all", valid), ("serving", serving))
        }
        print(
            f"candidate_rank_pct={cut:<10g} all rows ndcg@10={scored['all']:.4f}  candidate-like rows "
            f"ndcg@10={scored['serving']:.4f}  ({ranker.summary['train_rows']} training rows, "
            f"{time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
