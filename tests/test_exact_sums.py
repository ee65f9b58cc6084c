"""reco.exact_sums: float sums that are the same in any row order, partitioning or engine, and correctly rounded."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from reco.exact_sums import exact_mean, exact_sum


def test_exact_sums_do_not_depend_on_the_order_or_the_partitioning() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.lognormal(0.0, 3.0, 5000) * rng.choice([-1, 1], 5000), [1e15, -1e15]])
    frame = pl.DataFrame({"g": rng.integers(0, 7, values.size), "x": values})
    expected = frame.group_by("g").agg(exact_sum(pl.col("x")), exact_mean(pl.col("x")).alias("m")).sort("g")
    for seed in range(3):  # other row orders, in memory and in the streaming engine (which sums floats otherwise)
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed).lazy()
        summed = shuffled.group_by("g").agg(exact_sum(pl.col("x")), exact_mean(pl.col("x")).alias("m")).sort("g")
        assert summed.collect().equals(expected)
        assert summed.collect(engine="streaming").equals(expected)
    for g, total in expected.select("g", "x").iter_rows():  # correctly rounded: math.fsum of the group
        assert total == math.fsum(frame.filter(pl.col("g") == g)["x"].to_list())
    assert pl.DataFrame({"x": [None, None]}, schema={"x": pl.Float64}).select(exact_mean(pl.col("x"))).item() is None
