"""Order-independent exact sums of float64 polars expressions: the same bits whatever the row order.

polars sums floats in an order that depends on the frame's layout, its thread count and the
engine (in memory or streaming). :func:`exact_units` turns a float64 into an Int128 count of
2**-64 units, whose integer sum is the same whatever the row order, partitioning or engine;
:func:`from_units` turns it back into the correctly rounded float64, and :func:`exact_sum` and
:func:`exact_mean` are the aggregations built on them. See docs/same-results.md.
"""

from __future__ import annotations

import polars as pl

__all__ = ["EXACT_SCALE", "exact_mean", "exact_sum", "exact_units", "from_units"]

EXACT_SCALE = 2.0**64
"""Fixed-point unit of :func:`exact_units`: a float64 value is summed as an integer number of 2**-64."""


def exact_units(value: pl.Expr) -> pl.Expr:
    """A float64 expression as an Int128 count of 2**-64 units: sums of it are exact in any order.

    Every float64 of magnitude at least 2**-11 is a whole number of units (smaller ones are
    rounded to the nearest unit, an absolute error below 2**-65); with magnitudes below 2**60 a
    sum of 2**60 values cannot overflow. Integer addition is associative, so the sum is the same
    whatever the row order, the partitioning, the thread count or the engine; :func:`from_units`
    turns it back into the correctly rounded float64 sum.

    Examples
    --------
    >>> frame = pl.DataFrame({"x": [0.1, 0.2, 0.3]})
    >>> frame.select(from_units(exact_units(pl.col("x")).sum())).item() == 0.6
    True
    """
    return (value.cast(pl.Float64) * EXACT_SCALE).round().cast(pl.Int128)


def from_units(units: pl.Expr) -> pl.Expr:
    """Float64 value of an Int128 count of :data:`EXACT_SCALE` units (correctly rounded)."""
    return units.cast(pl.Float64) / EXACT_SCALE


def exact_sum(value: pl.Expr) -> pl.Expr:
    """The sum of a float64 expression, correctly rounded and independent of the order of the rows.

    polars sums floats in an order that depends on the frame's layout and thread count (and
    differently in the streaming engine); this aggregation does not.

    Examples
    --------
    >>> pl.DataFrame({"x": [1e16, 1.0, -1e16, 1.0]}).select(exact_sum(pl.col("x"))).item()
    2.0
    """
    return from_units(exact_units(value).sum())


def exact_mean(value: pl.Expr) -> pl.Expr:
    """:func:`exact_sum` over the number of non-null values; null when there is none (as polars' ``mean``).

    Examples
    --------
    >>> pl.DataFrame({"x": [0.5, None, 1.0]}).select(exact_mean(pl.col("x"))).item()
    0.75
    """
    count = value.count()
    return pl.when(count > 0).then(exact_sum(value) / count.cast(pl.Float64))
