"""Seed spread: the headline models' metrics over seed runs, to see how much of a gap is noise.

Each seed of ``seed_spread.seeds`` is a seed run of the pipeline's own stages (``seed_als@N`` and
``seed_ranker@N`` in dvc.yaml: ALS with ``als.random_state`` N, the ranker with ``ranker.seed`` N, on
the validation block, files under ``data/seeds/N/``); :func:`seed_spread` gathers their block
metrics into ``metrics/seed_spread.json`` (mean, standard deviation, range and values per model and
metric), which ``python -m reco.review`` compares a change against. See docs/selection-and-review.md.

Examples
--------
>>> summarise([0.70, 0.72, 0.71])["std"], summarise([0.70])["std"]
(0.01, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from reco.errors import InputDataError

__all__ = ["SEED_BLOCK", "SEED_MODELS", "seed_spread", "summarise"]

SEED_MODELS: Final = ("als", "ranker")  # the models a seed changes (the baselines have no seed)
SEED_BLOCK: Final = "validation"  # where settings are chosen; the test block is for the record
VARIED: Final = {"als": "random_state (both fits)", "ranker": "seed (user sample, bagging, feature fraction)"}


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (``None`` for one value: one run has no spread), min, max and the values."""
    array = np.asarray(values, dtype=np.float64)
    mean = math.fsum(array.tolist()) / array.size
    std = math.sqrt(math.fsum(((array - mean) ** 2).tolist()) / (array.size - 1)) if array.size > 1 else None
    return {
        "mean": round(mean, 6),
        "std": None if std is None else round(std, 6),
        "min": round(float(array.min()), 6),
        "max": round(float(array.max()), 6),
        "values": [round(float(v), 6) for v in array],
    }


def seed_spread(runs: Mapping[int, Mapping[str, Any]], where: Mapping[int, str] | None = None) -> dict[str, Any]:
    """``metrics/seed_spread.json`` from each seed run's block ``metrics.json``.

    Parameters
    ----------
    runs
        Seed -> that seed run's ``metrics.json`` of the validation block (``{"models": {model:
        {metric: value}}}``), in the order of ``seed_spread.seeds``.
    where
        Seed -> the file it was read from, for error messages.

    Returns
    -------
    dict
        ``{"seeds", "varied", "blocks": {"validation": {"models": {model: {metric: summarise(...)}}}},
        "block", "models"}`` over every metric the runs share; empty models without seeds.

    Raises
    ------
    InputDataError
        A run without the models' metrics.

    Examples
    --------
    >>> runs = {1: {"models": {"als": {"ndcg_at_10": 0.70}, "ranker": {"ndcg_at_10": 0.80}}},
    ...         2: {"models": {"als": {"ndcg_at_10": 0.72}, "ranker": {"ndcg_at_10": 0.82}}}}
    >>> seed_spread(runs)["models"]["ranker"]["ndcg_at_10"]["mean"]
    0.81
    """
    where = where or {}
    models: dict[str, dict[str, Any]] = {}
    for model in SEED_MODELS:
        per_seed = []
        for seed, metrics in runs.items():
            entry = metrics.get("models", {}).get(model) if isinstance(metrics, Mapping) else None
            if not isinstance(entry, Mapping) or not entry:
                raise InputDataError(where.get(seed, f"seed {seed}"), f"expected the metrics of model {model!r} under 'models'")
            per_seed.append(entry)
        shared = sorted(set.intersection(*(set(entry) for entry in per_seed))) if per_seed else []
        models[model] = {metric: summarise([float(entry[metric]) for entry in per_seed]) for metric in shared}
    if not runs:
        models = {}
    return {
        "seeds": [int(seed) for seed in runs],
        "varied": VARIED,
        "blocks": {SEED_BLOCK: {"models": models}},
        # the block at the top level too, as older readers of this file expect
        "block": SEED_BLOCK,
        "models": models,
    }
