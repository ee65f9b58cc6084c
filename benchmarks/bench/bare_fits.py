"""Bare ALS and LightGBM fits: the engines alone, the denominator of the pipeline's main target.

Each fit runs in its own subprocess (the entry script re-run with ``--worker``) in the copy, with
the pipeline's own data and params:

* ALS: the confidence matrix is rebuilt with ``reco.models.als.build_confidence_matrix`` and the id
  maps of the pipeline's saved model, then only ``AlternatingLeastSquares(...).fit`` is timed (BLAS
  limited to 1 thread as in the pipeline; implicit's default ``calculate_training_loss=False``),
  in the pipeline's dtype (float64 on the CPU, as ``fit_als``);
  ``factors_max_abs_diff`` compares the factors, quantised as the pipeline saves them, with the
  pipeline's (0 = same fit).
* LightGBM: only ``lightgbm.train`` is timed, inside the project's ``train_ranker`` (same datasets,
  params and early stopping); ``best_iteration`` is checked against the pipeline's.

Every fit runs ``repeats`` times; the run with the median fit time is reported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import ENTRY_SCRIPT, MIB
from .measuring import check, child_env, run_measured


def als_training_sets(work: Path) -> dict[str, str]:
    """``{key: interactions path}`` of the ``train_als`` foreach in the copy's dvc.yaml."""
    import yaml

    spec = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["train_als"]["foreach"]
    return {key: item["interactions"] for key, item in spec.items()}


def _worker_setup(work: Path) -> None:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy loads OpenBLAS, as in the pipeline
    os.chdir(work)
    sys.path.insert(0, str(work))
    import stages  # noqa: F401  (the pipeline's OpenMP wait policy, before implicit/LightGBM load)


def _maxrss_bytes() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worker_als(work: Path, key: str, interactions_path: str) -> dict[str, Any]:
    """Rebuild the pipeline's ALS matrix for ``key`` and time only ``AlternatingLeastSquares.fit``."""
    _worker_setup(work)
    import numpy as np
    import polars as pl
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from reco.models.als import build_confidence_matrix, load_als, quantise_factors
    from reco.params import load_section
    from reco.schema import Columns

    als, label = load_section("als"), load_section("label")
    interactions = pl.read_parquet(interactions_path, columns=[Columns.user, Columns.item, Columns.watch_ratio])
    pipeline_model = load_als(Path("models/als") / key)
    matrix = build_confidence_matrix(
        interactions, pipeline_model.user_ids, pipeline_model.item_ids,
        als.confidence, label.threshold, als.alpha, als.negative_weight,
    )  # fmt: skip
    rss_before_fit = _maxrss_bytes()
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=als.factors,
            regularization=als.regularization,
            alpha=1.0,  # the matrix already holds 1 + alpha * v (as in fit_als)
            dtype=np.float32 if als.use_gpu else np.float64,  # as fit_als: float64 on the CPU
            use_gpu=als.use_gpu,
            iterations=als.iterations,
            num_threads=als.num_threads,
            random_state=als.random_state,
        )
        fit_matrix = matrix if als.use_gpu else matrix.astype(np.float64)  # converted outside the timing
        started = time.perf_counter()
        model.fit(fit_matrix, show_progress=False)
        fit_s = time.perf_counter() - started
        if als.use_gpu:
            model = model.to_cpu()
    diff = max(
        float(np.max(np.abs(quantise_factors(model.user_factors) - pipeline_model.user_factors), initial=0.0)),
        float(np.max(np.abs(quantise_factors(model.item_factors) - pipeline_model.item_factors), initial=0.0)),
    )
    return {
        "fit": f"als@{key}",
        "fit_s": fit_s,
        "interactions": interactions_path,
        "n_users": int(matrix.shape[0]),
        "n_items": int(matrix.shape[1]),
        "nnz": int(matrix.nnz),
        "factors": als.factors,
        "iterations": als.iterations,
        "num_threads": als.num_threads,
        "calculate_training_loss": False,
        "rss_before_fit_bytes": rss_before_fit,
        "factors_max_abs_diff": diff,
    }


def worker_lightgbm(work: Path) -> dict[str, Any]:
    """Run the project's ``train_ranker`` on the pipeline's feature table, timing only ``lightgbm.train``."""
    _worker_setup(work)
    import lightgbm
    import polars as pl

    from reco.models.ranker_engine import train_ranker
    from reco.params import load_section
    from stages.train_ranker import FEATURES_DIR, SUMMARY_FILE

    params = load_section("ranker")
    spec = json.loads((FEATURES_DIR / "features.json").read_text(encoding="utf-8"))
    table = pl.read_parquet(FEATURES_DIR / "table.parquet")
    timing: dict[str, Any] = {}
    real_train = lightgbm.train

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        timing["rss_before_fit_bytes"] = _maxrss_bytes()
        started = time.perf_counter()
        booster = real_train(*args, **kwargs)
        timing["fit_s"] = time.perf_counter() - started
        timing["num_boost_round"] = kwargs.get("num_boost_round")
        return booster

    lightgbm.train = timed_train  # train_ranker imports lightgbm inside and calls lightgbm.train
    try:
        ranker = train_ranker(table, spec["features"], spec["categorical"], params)
    finally:
        lightgbm.train = real_train
    pipeline_best = json.loads(Path(SUMMARY_FILE).read_text(encoding="utf-8")).get("best_iteration")
    return {
        "fit": "lightgbm",
        **timing,
        "rounds": "same early stopping as the pipeline",
        "early_stopping_rounds": params.early_stopping_rounds,
        "rounds_trained": len(ranker.curve),  # one validation score per boosting round run
        "best_iteration": ranker.best_iteration,
        "pipeline_best_iteration": pipeline_best,
        "matches_pipeline": ranker.best_iteration == pipeline_best,
        "train_rows": ranker.summary["train_rows"],
        "valid_rows": ranker.summary["valid_rows"],
        "n_features": len(spec["features"]),
        "num_threads": params.num_threads,
    }


def median_run(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run with the median ``fit_s`` (the lower middle one for an even count), plus every run's time.

    Examples
    --------
    >>> median_run([{"fit_s": 3.0}, {"fit_s": 9.0}, {"fit_s": 4.0}])
    {'fit_s': 4.0, 'fit_s_runs': [3.0, 9.0, 4.0]}
    """
    ordered = sorted(rows, key=lambda row: row["fit_s"])
    return {**ordered[(len(ordered) - 1) // 2], "fit_s_runs": [row["fit_s"] for row in rows]}


def run_bare_fits(work: Path, logs: Path, timeout_s: float, repeats: int = 1) -> dict[str, Any]:
    """Each bare fit ``repeats`` times, each in its own subprocess (this script with ``--worker``).

    The run with the median fit time is reported (peak RSS via wait4 of that process), with every
    run's time in ``fit_s_runs``: the fits are the targets' denominator, and one slow burst on a
    shared machine would otherwise flatter the ratio.
    """
    env = child_env({"OPENBLAS_NUM_THREADS": "1"})
    jobs: list[tuple[str, list[str]]] = [
        (f"als@{key}", ["als", "--key", key, "--interactions", path]) for key, path in als_training_sets(work).items()
    ]
    jobs.append(("lightgbm", ["lightgbm"]))
    als_rows, lgbm_row = [], None
    for name, worker_args in jobs:
        runs = []
        for attempt in range(1, repeats + 1):
            result_path = logs / f"bare-{name}-{attempt}.json"
            argv = [sys.executable, str(ENTRY_SCRIPT), "--worker", *worker_args,
                    "--workdir", str(work), "--result", str(result_path)]  # fmt: skip
            result = check(
                run_measured(argv, work, logs / f"bare-{name}-{attempt}.log", env=env, timeout_s=timeout_s), f"bare {name} fit"
            )
            runs.append({**json.loads(result_path.read_text(encoding="utf-8")), "process_wall_s": result.wall_s,
                         "process_cpu_s": result.cpu_s, "peak_rss_bytes": result.peak_rss_bytes})  # fmt: skip
        row = median_run(runs)
        print(
            f"  bare {name}: fit {row['fit_s']:.2f} s (median of {', '.join(f'{x:.2f}' for x in row['fit_s_runs'])}), "
            f"process peak RSS {row['peak_rss_bytes'] / MIB:.0f} MiB",
            file=sys.stderr,
        )
        if name == "lightgbm":
            lgbm_row = row
        else:
            als_rows.append(row)
    return {"als": als_rows, "lightgbm": lgbm_row}
