"""The LightGBM ranker (second stage) fitted in this process, and what both engines share.

It re-ranks ALS candidates and learns from logged views held out of training, cut to the ones the
history's ALS ranks near the top (``ranker.candidate_rank_pct``); groups are users, early stopping
watches a user-disjoint validation part, the fit is deterministic, and the model is saved in
LightGBM's text format next to ``features.json``. :func:`reco.models.ranker_engine.train_ranker`
picks this fit or the distributed one (:mod:`reco.models.ranker_dask`). See docs/protocol.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from reco.errors import InputDataError
from reco.io import atomic_dir
from reco.params import RankerParams
from reco.schema import Columns

MODEL_FILE = "model.txt"
FEATURES_FILE = "features.json"


@dataclass
class TrainedRanker:
    """A fitted booster plus what the plots and the model card need."""

    booster: Any  # lightgbm.Booster (imported lazily, see import_lightgbm)
    features: list[str]
    categorical: list[str]
    best_iteration: int
    curve: list[dict[str, float]]  # per-iteration validation metric
    importance: list[dict[str, Any]]  # gain importance per feature, descending
    summary: dict[str, Any]


def import_lightgbm() -> ModuleType:
    """``import lightgbm`` without its optional scikit-learn and pandas integrations.

    lightgbm's ``compat`` module imports scikit-learn and pandas only to offer ``LGBMRanker`` and
    DataFrame inputs: about 1.0 s of its 1.3 s import, paid by every stage that trains or loads the
    ranker. This package uses the native API (``lgb.train``, ``Booster``) on numpy arrays, so the
    two are marked unimportable for the first import and lightgbm falls back exactly as when they
    are not installed; they stay importable for any other code afterwards. If lightgbm is already
    imported (by a test, a notebook), that module is returned unchanged.

    Examples
    --------
    >>> import_lightgbm().Booster.__name__
    'Booster'
    """
    if "lightgbm" in sys.modules:
        return sys.modules["lightgbm"]
    hidden = [name for name in ("sklearn", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import lightgbm
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return lightgbm


def sample_users(users: np.ndarray, n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``n`` users and split them into user-disjoint (train, valid) sorted id arrays."""
    rng = np.random.default_rng(seed)
    unique = np.unique(users)
    chosen = rng.permutation(unique)[: min(n, len(unique))]
    n_valid = max(1, int(round(len(chosen) * valid_fraction)))
    return np.sort(chosen[n_valid:]), np.sort(chosen[:n_valid])


def _group_sizes(user_column: np.ndarray) -> np.ndarray:
    """Row counts of consecutive equal users (rows must already be sorted by user)."""
    boundaries = np.flatnonzero(np.diff(user_column)) + 1
    return np.diff(np.concatenate(([0], boundaries, [len(user_column)])))


def _matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    return frame.select(pl.col(features).cast(pl.Float32)).to_numpy(order="c").astype(np.float32, copy=False)


def lightgbm_params(params: RankerParams) -> dict[str, Any]:
    """The LightGBM parameter dict (deterministic, fixed threads and seed)."""
    objective_params: dict[str, Any] = (
        {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "lambdarank_truncation_level": params.lambdarank_truncation_level,
        }
        if params.objective == "lambdarank"
        else {"objective": "binary", "metric": "auc"}
    )
    return {
        **objective_params,
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": 1 if params.bagging_fraction < 1 else 0,
        "max_bin": params.max_bin,
        "num_threads": params.num_threads,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


@dataclass
class TrainingParts:
    """The ranker's training and validation rows (sorted by user, then video) and their labels."""

    frames: dict[str, pl.DataFrame]  # "train", "valid"
    labels: dict[str, np.ndarray]
    train_users: np.ndarray
    valid_users: np.ndarray
    labelled_rows: int


def prepare_training_parts(
    table: pl.DataFrame, features: list[str], params: RankerParams, users: np.ndarray | None = None
) -> TrainingParts:
    """Sample the users, cut to candidate-like rows, split users into train and validation parts.

    Shared by the local fit (:func:`train_ranker_local`) and the distributed one
    (:func:`reco.models.ranker_dask.train_ranker_dask`), so both learn from the same rows.
    ``users`` are the ids to draw from (default: the users of ``table``); a table already
    reduced to the sampled users' rows (:func:`reco.models.training_rows.ranker_training_table`)
    passes the whole table's users, so the same users are drawn.

    Raises
    ------
    InputDataError
        If the table lacks labels, a feature column, or has no positive in either part.
    """
    missing = [c for c in (*features, Columns.user, Columns.label, Columns.relevance) if c not in table.columns]
    if missing:
        raise InputDataError("ranker training table", f"missing columns {missing}")
    labelled_rows = table.height
    # Users are split before the cut, so the train/valid split does not move with candidate_rank_pct.
    pool = table[Columns.user].to_numpy() if users is None else np.asarray(users)
    train_users, valid_users = sample_users(pool, params.train_users, params.valid_fraction, params.seed)
    if params.candidate_rank_pct < 1:
        if "als_rank_pct" not in table.columns:
            raise InputDataError(
                "ranker training table",
                f"ranker.candidate_rank_pct = {params.candidate_rank_pct} needs an 'als_rank_pct' column; "
                "set it to 1.0 to train on every labelled pair",
            )
        # Pairs unknown to ALS (null rank) stay: their users get popularity candidates at serving.
        rank = pl.col("als_rank_pct")
        table = table.filter(rank.is_null() | (rank <= params.candidate_rank_pct))
    target = Columns.relevance if params.label == "graded" else Columns.label
    frames, labels = {}, {}
    for name, ids in (("train", train_users), ("valid", valid_users)):
        chosen = pl.DataFrame({Columns.user: pl.Series(ids, dtype=table.schema[Columns.user])})
        part = table.join(chosen, on=Columns.user, how="semi").sort([Columns.user, Columns.item])
        part_labels = part[target].cast(pl.Int32).to_numpy()
        if part.height == 0 or part_labels.max(initial=0) == 0:
            raise InputDataError("ranker training table", f"the {name} part has no positive labels ({part.height} rows)")
        frames[name], labels[name] = part, part_labels
    return TrainingParts(frames, labels, train_users, valid_users, labelled_rows)


def gain_importance(booster: Any, features: list[str], iteration: int) -> list[dict[str, Any]]:
    """Gain importance of each feature over the first ``iteration`` trees, by descending gain then name."""
    gains = booster.feature_importance(importance_type="gain", iteration=iteration)
    return sorted(
        ({"feature": f, "gain": float(g)} for f, g in zip(features, gains, strict=True)),
        key=lambda row: (-row["gain"], row["feature"]),
    )


def training_summary(
    parts: TrainingParts, params: RankerParams, metric_name: str, values: list[float], best: int
) -> dict[str, Any]:
    """The training summary both engines write (``metrics/ranker_training.json``; the dask one adds its own keys).

    ``values`` is the validation curve (one value per iteration) and ``best`` the 1-based best iteration.
    """
    train, valid = parts.frames["train"], parts.frames["valid"]
    return {
        "objective": params.objective,
        "label": params.label,
        "valid_metric": metric_name,
        "best_iteration": best,
        "best_valid_score": float(values[best - 1]),
        "train_users": int(len(parts.train_users)),
        "valid_users": int(len(parts.valid_users)),
        "candidate_rank_pct": float(params.candidate_rank_pct),
        "labelled_rows": int(parts.labelled_rows),
        "train_rows": int(train.height),
        "valid_rows": int(valid.height),
        "train_positive_rate": float(train[Columns.label].mean()),  # type: ignore[arg-type]  # a bool column's mean
    }


def train_ranker_local(
    table: pl.DataFrame,
    features: list[str],
    categorical: list[str],
    params: RankerParams,
    users: np.ndarray | None = None,
) -> TrainedRanker:
    """Fit the ranker in this process on a feature table with ``label`` and ``relevance`` columns.

    ``users``: the ids the ranker's users are drawn from (see :func:`prepare_training_parts`).
    Callers normally go through :func:`reco.models.ranker_engine.train_ranker`, which picks this
    fit or the distributed one.

    Raises
    ------
    InputDataError
        If the table lacks labels, a feature column, or has no positive in either part.
    """
    lgb = import_lightgbm()
    parts = prepare_training_parts(table, features, params, users)
    datasets = {}
    for name in ("train", "valid"):
        part = parts.frames[name]
        datasets[name] = lgb.Dataset(
            _matrix(part, features),
            label=parts.labels[name],
            group=_group_sizes(part[Columns.user].to_numpy()) if params.objective == "lambdarank" else None,
            feature_name=features,
            categorical_feature=categorical,
            reference=datasets.get("train"),
            free_raw_data=True,
        )
    lgb_params = lightgbm_params(params)
    evals: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        lgb_params,
        datasets["train"],
        num_boost_round=params.n_estimators,
        valid_sets=[datasets["valid"]],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(evals),
        ],
    )
    metric_name, values = next(iter(evals["valid"].items()))
    best = int(booster.best_iteration) or len(values)
    return TrainedRanker(
        booster=booster,
        features=list(features),
        categorical=list(categorical),
        best_iteration=best,
        curve=[{"iteration": i + 1, metric_name: float(v)} for i, v in enumerate(values)],
        importance=gain_importance(booster, features, best),
        summary=training_summary(parts, params, metric_name, values, best),
    )


def save_ranker(ranker: TrainedRanker, out_dir: Path) -> None:
    """Write ``model.txt`` (LightGBM text format, best iteration) and ``features.json`` atomically."""
    with atomic_dir(out_dir) as tmp:
        ranker.booster.save_model(str(tmp / MODEL_FILE), num_iteration=ranker.best_iteration)
        (tmp / FEATURES_FILE).write_text(
            json.dumps({"features": ranker.features, "categorical": ranker.categorical}, indent=2) + "\n",
            encoding="utf-8",
        )


@dataclass
class LoadedRanker:
    """A booster read back from ``model.txt`` with its feature list."""

    booster: Any
    features: list[str]
    categorical: list[str]

    def predict(self, table: pl.DataFrame) -> np.ndarray:
        """Score a feature table; refuses tables whose feature columns differ from training."""
        missing = [c for c in self.features if c not in table.columns]
        if missing:
            raise InputDataError("feature table", f"missing ranker features {missing}")
        # Each row's score is its own sum over the trees, so threads do not change a bit of it;
        # use the thread count the model was trained with (ranker.num_threads).
        num_threads = int(self.booster.params.get("num_threads", 1))
        return np.asarray(self.booster.predict(_matrix(table, self.features), num_threads=num_threads), dtype=np.float64)


def load_ranker(model_dir: Path) -> LoadedRanker:
    """Load a ranker saved by :func:`save_ranker` (no pickle: LightGBM text + JSON)."""
    lgb = import_lightgbm()

    model_path, features_path = Path(model_dir) / MODEL_FILE, Path(model_dir) / FEATURES_FILE
    for path in (model_path, features_path):
        if not path.is_file():
            raise InputDataError(path, "ranker artifact not found; run `dvc repro train_ranker`")
    spec = json.loads(features_path.read_text(encoding="utf-8"))
    booster = lgb.Booster(model_file=str(model_path))
    if booster.feature_name() != spec["features"]:
        raise InputDataError(model_path, f"model features {booster.feature_name()} differ from {features_path}")
    return LoadedRanker(booster=booster, features=spec["features"], categorical=spec["categorical"])
