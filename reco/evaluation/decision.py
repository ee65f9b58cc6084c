"""One decision rule for a change between two revisions: a t test of the paired difference against
its full standard error (users' bootstrap variance plus the seeds' variance), with Holm's correction
across the rows of a table. See docs/selection-and-review.md.

Examples
--------
>>> import numpy as np
>>> se, df, t, p = change_test(np.array([0.03]), np.array([1e-6]), [SeedTerm(np.array(2 * 0.002**2), 5)])
>>> round(float(se[0]), 5), round(float(df[0]), 2), bool(p[0] < 0.01)
(0.003, 5.0, True)
>>> holm(np.array([0.01, 0.04, 0.03]), 0.05)[1].tolist()
[True, False, False]
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import stats

__all__ = [
    "FAMILY_ALPHA",
    "SeedTerm",
    "Verdict",
    "change_test",
    "holm",
    "seed_terms",
    "user_variance",
]

# Family-wise error rate of the rows of one review table (models x metrics x K).
FAMILY_ALPHA: Final = 0.05


class Verdict(enum.Enum):
    """Outcome of the rule for one row; ``value`` is the text printed in the review."""

    REAL = "real"
    WITHIN_NOISE = "within noise"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SeedTerm:
    """One estimated variance component of the difference, with its degrees of freedom.

    ``variance`` is already the component's contribution to ``Var(HEAD - BASE)`` (e.g. ``2 s^2``
    for one pooled seed sample); ``df`` is that of the sample variance it comes from.
    """

    variance: np.ndarray | float
    df: np.ndarray | float


def _runs(spread: np.ndarray, headline: np.ndarray | float | None) -> np.ndarray:
    spread = np.asarray(spread, dtype=np.float64)
    if headline is None:
        return spread
    headline = np.broadcast_to(np.asarray(headline, dtype=np.float64), spread.shape[:-1])
    return np.concatenate([spread, headline[..., None]], axis=-1)


def _sum_of_squares(runs: np.ndarray) -> np.ndarray:
    return ((runs - runs.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)


def seed_terms(
    base_spread: np.ndarray | None,
    base_headline: np.ndarray | float | None,
    head_spread: np.ndarray | None,
    head_headline: np.ndarray | float | None,
) -> list[SeedTerm] | None:
    """The seeds' contribution to ``Var(HEAD - BASE)``, as Welch-Satterthwaite terms.

    ``*_spread`` holds a revision's seed spread values (last axis: seeds), ``*_headline`` the
    revision's own run, or ``None`` when that run is already one of the spread's seeds (or is
    unknown). Each headline metric is one run, i.e. one seed draw, so the difference of two runs
    carries the seed variance of both configurations:

    - both revisions measured their own spread: ``s_BASE^2 + s_HEAD^2``, each the sample variance
      of that revision's spread plus its headline run, with ``n - 1`` degrees of freedom;
    - only one revision has a spread: ``2 s^2`` from it (the other is assumed as stable);
    - both hold the same spread values (HEAD did not change what the spread measures): one
      sample of the spread plus both headline runs; the contrast under test, ``(x_HEAD -
      x_BASE)^2 / 2``, is left out of its own sum of squares (as in an externally studentized
      residual), so ``2 s^2`` has ``n - 2`` degrees of freedom.

    Returns
    -------
    list[SeedTerm] | None
        ``None`` when no sample leaves at least one degree of freedom.

    Examples
    --------
    >>> [(float(t.variance), t.df) for t in seed_terms(np.array([1.0, 3.0]), None, None, None)]
    [(4.0, 1)]
    >>> spread = np.array([0.80, 0.81, 0.79])
    >>> [(round(float(t.variance), 6), t.df) for t in seed_terms(spread, 0.78, spread, 0.82)]
    [(0.000133, 3)]
    """
    if base_spread is not None and head_spread is not None and np.array_equal(base_spread, head_spread):
        if base_headline is not None and head_headline is not None:
            runs = _runs(_runs(base_spread, base_headline), head_headline)
            contrast = (np.asarray(head_headline, dtype=np.float64) - np.asarray(base_headline, dtype=np.float64))
            df = runs.shape[-1] - 2
            if df < 1:
                return None
            return [SeedTerm(2.0 * (_sum_of_squares(runs) - contrast**2 / 2.0) / df, df)]
        base_spread, base_headline = _runs(base_spread, base_headline), None
        head_spread, head_headline = None, None
    samples = [
        _runs(spread, headline)
        for spread, headline in ((base_spread, base_headline), (head_spread, head_headline))
        if spread is not None
    ]
    samples = [sample for sample in samples if sample.shape[-1] >= 2]
    if not samples:
        return None
    if len(samples) == 1:
        (sample,) = samples
        return [SeedTerm(2.0 * sample.var(axis=-1, ddof=1), sample.shape[-1] - 1)]
    return [SeedTerm(sample.var(axis=-1, ddof=1), sample.shape[-1] - 1) for sample in samples]


def user_variance(differences: np.ndarray) -> np.ndarray:
    """The users' bootstrap variance of the mean paired difference, per column, in closed form.

    The bootstrap variance of a mean of ``n`` values is ``mean((d - mean(d))^2) / n`` (the
    variance of the mean under resampling users with replacement); computing it exactly avoids
    the Monte-Carlo error of a finite number of resamples.

    Examples
    --------
    >>> user_variance(np.array([[0.0], [0.5]])).tolist()
    [0.03125]
    """
    d = np.asarray(differences, dtype=np.float64)
    return ((d - d.mean(axis=0)) ** 2).mean(axis=0) / d.shape[0]


def change_test(
    mean: np.ndarray, user_var: np.ndarray, terms: Sequence[SeedTerm]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided t test of ``mean`` against ``SE^2 = user_var + sum(term.variance)``.

    Degrees of freedom by Welch-Satterthwaite over the seed terms only, ``(sum V_i)^2 / sum(V_i^2 /
    df_i)``. The users' variance is estimated from hundreds of users (practically exact); counting
    it in the degrees of freedom would let a seed variance that is small by chance push them
    towards infinity exactly when ``t`` is large (too many false flags), while leaving it out
    only makes the quantile conservative. With no seed variance at all the statistic is normal
    (``df = inf``). A zero standard error gives ``p = 1`` for a zero difference and ``p = 0``
    otherwise. Every argument broadcasts (a simulation passes arrays of tables x rows).

    Returns
    -------
    se, df, t, p
        Arrays of the broadcast shape.
    """
    mean = np.asarray(mean, dtype=np.float64)
    variances = [np.asarray(term.variance, dtype=np.float64) for term in terms]
    dfs = [np.asarray(term.df, dtype=np.float64) for term in terms]
    seed_var = sum(variances, start=np.zeros(()))
    total = np.asarray(user_var, dtype=np.float64) + seed_var
    denominator = sum((v * v / d for v, d in zip(variances, dfs, strict=True)), start=np.zeros(()))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0.0, seed_var * seed_var / np.where(denominator > 0.0, denominator, 1.0), np.inf)
        se = np.sqrt(total)
        t = np.where(se > 0.0, mean / np.where(se > 0.0, se, 1.0), np.where(mean == 0.0, 0.0, np.inf))
    t, df = np.broadcast_arrays(t, df)
    p = 2.0 * stats.t.sf(np.abs(t), df)
    return np.broadcast_to(se, t.shape), df, t, np.minimum(p, 1.0)


def holm(p_values: np.ndarray, alpha: float = FAMILY_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction along the last axis: adjusted p-values and the rejections.

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i + 1`` (``i`` from 1), a
    running maximum keeps the adjusted values monotone, and a row is rejected when its adjusted
    p-value is at most ``alpha``; the family-wise error rate is then at most ``alpha`` whatever
    the dependence between rows.

    Examples
    --------
    >>> adjusted, reject = holm(np.array([0.04, 0.001, 0.02]))
    >>> adjusted.round(3).tolist(), reject.tolist()
    ([0.04, 0.003, 0.04], [True, True, True])
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    scaled = np.minimum(1.0, ranked * (m - np.arange(m)))
    monotone = np.maximum.accumulate(scaled, axis=-1)
    adjusted = np.empty_like(monotone)
    np.put_along_axis(adjusted, order, monotone, axis=-1)
    return adjusted, adjusted <= alpha
