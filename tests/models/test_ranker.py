"""The local LightGBM fit: bit-identical refits, the user draw, the candidate cut, the lean lightgbm import.

What every engine must do (learn a planted signal, round-trip through the text file, refuse bad input) is in
test_ranker_contract.py, run against both engines."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reco.errors import InputDataError
from reco.models.ranker import _group_sizes, sample_users, save_ranker, train_ranker_local
from reco.params import parse_section
from reco.schema import Columns

FEATURES = ["signal", "noise", "category"]


def planted_table(n_users: int = 120, per_user: int = 30, seed: int = 0) -> pl.DataFrame:
    """Relevance grows with `signal`; `noise` is unrelated; `category` 3 shifts relevance up."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    signal = rng.normal(size=n).astype(np.float32)
    category = rng.integers(0, 5, size=n)
    latent = signal + 1.5 * (category == 3) + rng.normal(scale=0.3, size=n)
    relevance = np.digitize(latent, [0.5, 1.2, 2.0]).astype(np.int8)
    return pl.DataFrame(
        {
            Columns.user: np.repeat(np.arange(n_users, dtype=np.int32), per_user),
            Columns.item: np.tile(np.arange(per_user, dtype=np.int32), n_users),
            "signal": signal,
            "noise": rng.normal(size=n).astype(np.float32),
            "category": category.astype(np.int16),
            Columns.relevance: relevance,
            Columns.label: relevance >= 2,
        }
    )


PARAMS = parse_section(
    "ranker",
    {"n_estimators": 40, "num_leaves": 7, "min_data_in_leaf": 20, "train_users": 100, "early_stopping_rounds": 10},
)


def test_training_is_deterministic(tmp_path: Path) -> None:
    for run in ("a", "b"):
        save_ranker(train_ranker_local(planted_table(), FEATURES, ["category"], PARAMS), tmp_path / run)
    assert (tmp_path / "a" / "model.txt").read_bytes() == (tmp_path / "b" / "model.txt").read_bytes()


def test_validation_users_are_disjoint_from_training_users() -> None:
    train, valid = sample_users(np.arange(1000), 300, 0.2, seed=7)
    assert len(train) == 240 and len(valid) == 60
    assert not set(train) & set(valid)


def test_group_sizes_follow_contiguous_users() -> None:
    assert _group_sizes(np.array([3, 3, 5, 5, 5, 9])).tolist() == [2, 3, 1]


def test_candidate_rank_pct_trains_only_on_rows_als_would_hand_over() -> None:
    table = planted_table()
    rank_pct = np.random.default_rng(3).random(table.height).astype(np.float32)
    rank_pct[:40] = np.nan  # pairs unknown to ALS: their users are served popularity candidates, so kept
    last_user = table[Columns.user].to_numpy() == table[Columns.user].max()
    rank_pct[last_user] = 0.9  # a user with no row under the cut must not reshuffle the user split
    table = table.with_columns(pl.Series("als_rank_pct", rank_pct).fill_nan(None))
    params = parse_section("ranker", {**{k: getattr(PARAMS, k) for k in PARAMS.__dataclass_fields__}, "candidate_rank_pct": 0.5, "train_users": 10_000})
    ranker = train_ranker_local(table, FEATURES, ["category"], params)
    expected = table.filter(pl.col("als_rank_pct").is_null() | (pl.col("als_rank_pct") <= 0.5)).height
    assert ranker.summary["labelled_rows"] == table.height
    assert ranker.summary["train_rows"] + ranker.summary["valid_rows"] == expected < table.height
    assert ranker.summary["candidate_rank_pct"] == 0.5
    # 1.0 (the default) keeps every row; without ALS ranks a cut below 1 is refused.
    everything = train_ranker_local(table, FEATURES, ["category"], dataclasses.replace(params, candidate_rank_pct=1.0)).summary
    assert everything["train_rows"] + everything["valid_rows"] == table.height
    # The user split is drawn before the cut: the same validation users whatever the cut.
    sampled = dataclasses.replace(params, train_users=60)
    split_cut = train_ranker_local(table, FEATURES, ["category"], sampled).summary
    split_all = train_ranker_local(table, FEATURES, ["category"], dataclasses.replace(sampled, candidate_rank_pct=1.0)).summary
    assert (split_cut["train_users"], split_cut["valid_users"]) == (split_all["train_users"], split_all["valid_users"])
    train_ids, valid_ids = sample_users(table[Columns.user].to_numpy(), 60, sampled.valid_fraction, sampled.seed)
    kept = table.filter(pl.col("als_rank_pct").is_null() | (pl.col("als_rank_pct") <= 0.5))
    assert split_cut["valid_rows"] == kept.filter(pl.col(Columns.user).is_in(valid_ids.tolist())).height
    with pytest.raises(InputDataError, match="candidate_rank_pct"):
        train_ranker_local(planted_table(), FEATURES, ["category"], params)


def test_import_lightgbm_skips_sklearn_and_pandas_but_leaves_them_importable() -> None:
    import subprocess
    import sys

    # A fresh interpreter: in this one lightgbm may already be imported by other tests.
    script = """
import sys
from reco.models.ranker import import_lightgbm, load_ranker
lgb = import_lightgbm()
assert "sklearn" not in sys.modules and "pandas" not in sys.modules, sorted(sys.modules)
assert import_lightgbm() is lgb
import numpy as np
booster = lgb.train({"objective": "regression", "verbosity": -1, "num_threads": 1},
                    lgb.Dataset(np.arange(40, dtype=np.float32).reshape(20, 2), label=np.arange(20.0)), 3)
assert booster.predict(np.zeros((1, 2), dtype=np.float32)).shape == (1,)
import pandas, sklearn.metrics  # still importable afterwards
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
