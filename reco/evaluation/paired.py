"""Paired comparison of two revisions of the pipeline on the same users.

:func:`paired_revision_differences` measures a metric's change per user, ``HEAD - BASE``, with a bootstrap
interval over users; whether a change is real is decided by :mod:`reco.evaluation.decision`. See
docs/selection-and-review.md and docs/design/evaluation.md.

Examples
--------
>>> import numpy as np
>>> base = np.array([[0.5], [0.4], [0.7]])
>>> same = paired_revision_differences(base, base.copy(), samples=100, seed=0)[0]
>>> (same.mean, same.low, same.high)
(0.0, 0.0, 0.0)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from reco.evaluation.uncertainty import CONFIDENCE, bootstrap_means, bootstrap_weights, percentile_interval

__all__ = ["PairedDifference", "paired_revision_differences"]


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
