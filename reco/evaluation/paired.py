"""Paired comparison of two revisions of the pipeline on the same users, and the "real change" rule.

:func:`paired_revision_differences` measures a metric's change per user, ``HEAD - BASE``, with a bootstrap
interval over users, and :func:`change_verdict` calls it ``real`` only when the interval excludes 0 and the
change exceeds the seed spread (:func:`seed_noise_threshold`). See docs/selection-and-review.md and
docs/design/evaluation.md.

Examples
--------
>>> import numpy as np
>>> base = np.array([[0.5], [0.4], [0.7]])
>>> same = paired_revision_differences(base, base.copy(), samples=100, seed=0)[0]
>>> (same.mean, same.low, same.high)
(0.0, 0.0, 0.0)
>>> change_verdict(same, seed_noise_threshold(0.01, 0.01)).value
'within noise'
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from reco.evaluation.uncertainty import CONFIDENCE, bootstrap_means, bootstrap_weights, percentile_interval

__all__ = [
    "SEED_SPREAD_FACTOR",
    "PairedDifference",
    "Verdict",
    "change_verdict",
    "paired_revision_differences",
    "seed_noise_threshold",
]

# 2 * sqrt(2): ~95% bound on the gap between two runs that differ only in their seeds (see docs/design/evaluation.md).
SEED_SPREAD_FACTOR: Final = 2.0 * math.sqrt(2.0)


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-user difference ``HEAD - BASE`` of one metric and its bootstrap interval.

    Attributes
    ----------
    users
        Number of users evaluated in both revisions (the resampled unit).
    base_mean, head_mean
        Mean of the metric over those users in each revision.
    mean
        Observed mean of ``head - base`` over those users.
    low, high
        Percentile bootstrap interval of ``mean``.
    """

    users: int
    base_mean: float
    head_mean: float
    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies strictly on one side of 0.

        Examples
        --------
        >>> PairedDifference(10, 0.5, 0.4, -0.1, -0.12, -0.08).excludes_zero
        True
        >>> PairedDifference(10, 0.5, 0.5, 0.0, 0.0, 0.0).excludes_zero
        False
        """
        return self.low > 0.0 or self.high < 0.0


class Verdict(enum.Enum):
    """Outcome of :func:`change_verdict`; ``value`` is the text printed in the review."""

    REAL = "real"
    WITHIN_NOISE = "within noise"
    UNKNOWN = "unknown"


def paired_revision_differences(
    base_values: np.ndarray,
    head_values: np.ndarray,
    samples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> list[PairedDifference]:
    """Paired bootstrap of ``HEAD - BASE`` for every metric column, resampling users.

    Parameters
    ----------
    base_values, head_values
        ``(n_users, n_metrics)`` per-user values of the same users in the same order (one column
        per metric); ``n_users >= 1``.
    samples
        Number of bootstrap resamples.
    seed
        Seed of the resampling; the same seed and ``n_users`` give the same resamples.
    confidence
        Coverage of the percentile interval.

    Returns
    -------
    list[PairedDifference]
        One per column, in column order; a ``-0.0`` is returned as ``0.0``.

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-D or there are no users.

    Examples
    --------
    >>> import numpy as np
    >>> base = np.array([[0.5, 0.2], [0.5, 0.2]])
    >>> diff = paired_revision_differences(base, base - 0.1, samples=10, seed=0)
    >>> [round(d.mean, 6) for d in diff], [round(d.high, 6) for d in diff]
    ([-0.1, -0.1], [-0.1, -0.1])
    """
    base = np.asarray(base_values, dtype=np.float64)
    head = np.asarray(head_values, dtype=np.float64)
    if base.shape != head.shape or base.ndim != 2 or base.shape[0] == 0:
        shapes = f"{base.shape} and {head.shape}"
        raise ValueError(f"need two (n_users >= 1, n_metrics) arrays of the same shape, got {shapes}")
    differences = head - base
    weights = _shared_weights(base.shape[0], samples, seed)
    low, high = percentile_interval(bootstrap_means(differences, weights), confidence)
    means = differences.mean(axis=0)
    base_means, head_means = base.mean(axis=0), head.mean(axis=0)
    # + 0.0 turns -0.0 into 0.0: identical revisions then print "+0.0000", never "-0.0000".
    return [
        PairedDifference(
            users=int(base.shape[0]),
            base_mean=float(base_means[j]) + 0.0,
            head_mean=float(head_means[j]) + 0.0,
            mean=float(means[j]) + 0.0,
            low=float(low[j]) + 0.0,
            high=float(high[j]) + 0.0,
        )
        for j in range(base.shape[1])
    ]


@functools.lru_cache(maxsize=2)
def _shared_weights(n_users: int, samples: int, seed: int) -> np.ndarray:
    """:func:`bootstrap_weights`, drawn once for all models scored on the same number of users."""
    weights = bootstrap_weights(n_users, samples, seed)
    weights.flags.writeable = False  # shared between calls: nobody may modify it
    return weights


def seed_noise_threshold(
    base_std: float | None, head_std: float | None, factor: float = SEED_SPREAD_FACTOR
) -> float | None:
    """Seed spread a difference must exceed: ``factor * max(base_std, head_std)``.

    A missing std (``None``: no seed spread file, or the model/metric is not in it) is ignored;
    with both missing the threshold is unknown (``None``).

    Examples
    --------
    >>> round(seed_noise_threshold(0.01, 0.02), 6)
    0.056569
    >>> seed_noise_threshold(None, 0.0)
    0.0
    >>> seed_noise_threshold(None, None) is None
    True
    """
    known = [std for std in (base_std, head_std) if std is not None]
    if not known:
        return None
    return factor * max(known)


def change_verdict(difference: PairedDifference, seed_spread: float | None) -> Verdict:
    """``REAL`` iff the interval excludes 0 and ``|mean|`` exceeds the seed spread.

    Parameters
    ----------
    difference
        The paired difference of one model and metric.
    seed_spread
        Threshold from :func:`seed_noise_threshold`; ``None`` when unknown.

    Returns
    -------
    Verdict
        ``WITHIN_NOISE`` when the interval contains 0 or ``|mean| <= seed_spread``; ``UNKNOWN``
        when the interval excludes 0 but the seed spread is unknown; ``REAL`` otherwise.

    Examples
    --------
    >>> d = PairedDifference(100, 0.60, 0.55, -0.05, -0.06, -0.04)
    >>> change_verdict(d, 0.01).value, change_verdict(d, 0.08).value, change_verdict(d, None).value
    ('real', 'within noise', 'unknown')
    """
    if not difference.excludes_zero:
        return Verdict.WITHIN_NOISE
    if seed_spread is None:
        return Verdict.UNKNOWN
    return Verdict.REAL if abs(difference.mean) > seed_spread else Verdict.WITHIN_NOISE
