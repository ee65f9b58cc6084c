"""Elementary functions and random variates that give the same bits on every CPU.

``exp``, ``log``, ``ndtr`` and their kin, and normal, Gumbel, exponential, Poisson and binomial variates
drawn from integer draws of numpy's generator, are built only from exactly rounded IEEE operations applied
one numpy ufunc at a time in a fixed order, so no SIMD kernel, libm, FMA or thread count can change a bit
of their results; :func:`fsum` and :func:`stable_argsort` do the same for sums and orderings. See
docs/same-results.md and docs/design/core.md.

Examples
--------
>>> import numpy as np
>>> float(exp(np.array([0.0]))[0]), float(log(np.array([1.0]))[0])
(1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import numpy as np

__all__ = [
    "binomial",
    "exp",
    "expit",
    "exponential",
    "fsum",
    "geomspace",
    "gumbel",
    "log",
    "ndtr",
    "ndtri",
    "normal",
    "poisson",
    "stable_argsort",
    "uniform",
]

_CHUNK: Final = 1 << 16  # elements per block: keeps the temporaries of a Horner chain in cache

# Cody-Waite split of ln 2 (fdlibm): LN2_HI has 32 significant bits, so k * LN2_HI is exact for |k| < 2**21.
_LN2_HI: Final = 6.93147180369123816490e-01
_LN2_LO: Final = 1.90821492927058770002e-10
_INV_LN2: Final = 1.44269504088896338700e00
_SQRT_HALF: Final = 0.70710678118654752440
_EXP_MAX: Final = 709.782712893384  # exp overflows above
_EXP_MIN: Final = -745.1332191019412  # exp is 0 below
# 1/n! for the Taylor series of exp on |r| <= ln2/2 (truncation error < 5e-18 relative).
_EXP_TAYLOR: Final = tuple(1.0 / math.factorial(n) for n in range(14))
# 1/(2k+1) for atanh's series on |s| <= 0.1716 (log of the mantissa; truncation error < 1e-18).
_ATANH_SERIES: Final = tuple(1.0 / (2 * k + 1) for k in range(1, 13))
_INV_SQRT_2PI: Final = 0.39894228040143267794
_NDTR_SERIES_TERMS: Final = 70  # Taylor series of Phi for |x| < _NDTR_SPLIT
_NDTR_SPLIT: Final = 3.0
_NDTR_CF_DEPTH: Final = 90  # Laplace's continued fraction for the tail, |x| >= _NDTR_SPLIT


def _blockwise(function: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    """Apply an elementwise ``function`` on float64 blocks of ``values`` (same shape out)."""
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    out = np.empty_like(flat)
    for start in range(0, flat.size, _CHUNK):
        out[start : start + _CHUNK] = function(flat[start : start + _CHUNK])
    return out.reshape(np.shape(values))


def _horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """``sum(c[i] * x**i)`` by Horner's rule, one exactly rounded ufunc per step."""
    acc = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        np.multiply(acc, x, out=acc)
        np.add(acc, c, out=acc)
    return acc


def _exp_series_block(x: np.ndarray) -> np.ndarray:
    """exp by Cody-Waite reduction to |r| <= ln2/2 and a 13th-order Taylor series (builds the table)."""
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return np.ldexp(_horner(r, _EXP_TAYLOR), k.astype(np.int32))


def _log_series_block(x: np.ndarray) -> np.ndarray:
    """log of positive finite x via atanh's series on the mantissa (builds the table)."""
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2**exponent, mantissa in [0.5, 1)
    low = mantissa < _SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # now in [sqrt(1/2), sqrt(2))
    e = (exponent - low).astype(np.float64)
    f = mantissa - 1.0  # exact (Sterbenz)
    s = f / (f + 2.0)
    series = _horner(s * s, (0.0, *_ATANH_SERIES))  # z/3 + z^2/5 + ...
    two_s = s * 2.0
    return e * _LN2_HI + (e * _LN2_LO + (two_s + two_s * series))


# Table-driven forms (as in libm): the tables are built once with the series above, so they are
# the same bits everywhere, and each call needs only a short polynomial.
_EXP_TABLE_BITS: Final = 8
_EXP_N: Final = 1 << _EXP_TABLE_BITS
_EXP_TABLE: Final = _exp_series_block(np.arange(_EXP_N, dtype=np.float64) * (_LN2_HI / _EXP_N) + np.arange(_EXP_N) * (_LN2_LO / _EXP_N))
_EXP_POLY: Final = tuple(1.0 / math.factorial(n) for n in range(6))  # |r| <= ln2/512: error < 1e-20
_LOG_TABLE_BITS: Final = 10
_LOG_N: Final = 1 << _LOG_TABLE_BITS
_LOG_CENTRES: Final = 0.5 + (np.arange(_LOG_N, dtype=np.float64) + 0.5) / _LOG_N  # covers [0.5, 1.5)
_LOG_TABLE: Final = _log_series_block(_LOG_CENTRES)
_LOG1P_POLY: Final = (0.0, 1.0, -1.0 / 2, 1.0 / 3, -1.0 / 4, 1.0 / 5, -1.0 / 6)  # |r| < 2**-10: error < 1e-22


def _exp_block(x: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.where(np.isnan(x), 0.0, x), _EXP_MIN - 1.0, _EXP_MAX + 1.0)
    k = np.rint(clipped * (_INV_LN2 * _EXP_N))
    r = (clipped - k * (_LN2_HI / _EXP_N)) - k * (_LN2_LO / _EXP_N)
    k_int = k.astype(np.int64)
    index = k_int & (_EXP_N - 1)
    with np.errstate(over="ignore"):
        result = np.ldexp(_EXP_TABLE[index] * _horner(r, _EXP_POLY), (k_int >> _EXP_TABLE_BITS).astype(np.int32))
    result = np.where(x > _EXP_MAX, np.inf, result)
    result = np.where(x < _EXP_MIN, 0.0, result)
    return np.where(np.isnan(x), np.nan, result)


def exp(x: np.ndarray | float) -> np.ndarray:
    """``e**x`` (float64), identical bits on every CPU; ~1 ulp from the correctly rounded value.

    Examples
    --------
    >>> exp(np.array([0.0, -1.0, 710.0])).tolist()
    [1.0, 0.3678794411714423, inf]
    """
    return _blockwise(_exp_block, np.asarray(x, dtype=np.float64))


def _log_block(x: np.ndarray) -> np.ndarray:
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2**exponent, mantissa in [0.5, 1)
    low = mantissa < _SQRT_HALF
    m = np.where(low, mantissa * 2.0, mantissa)  # in [sqrt(1/2), sqrt(2)), exact
    e = (exponent - low).astype(np.float64)
    index = np.clip(((m - 0.5) * _LOG_N).astype(np.int64), 0, _LOG_N - 1)
    centre = _LOG_CENTRES[index]
    r = (m - centre) / centre  # |r| < 2**-10
    log_m = _LOG_TABLE[index] + _horner(r, _LOG1P_POLY)
    # Next to 1 the table's log(centre) and log1p(r) nearly cancel: there the series of atanh on
    # f = m - 1 (exact) keeps the relative accuracy.
    near = np.flatnonzero(np.abs(m - 1.0) < 1.0 / 32)
    if near.size:
        f = m[near] - 1.0
        s = f / (f + 2.0)
        two_s = s * 2.0
        log_m[near] = two_s + two_s * _horner(s * s, (0.0, *_ATANH_SERIES[:6]))
    result = e * _LN2_HI + (e * _LN2_LO + log_m)
    result = np.where(x == 0.0, -np.inf, result)
    result = np.where(x < 0.0, np.nan, result)
    return np.where(np.isinf(x) & (x > 0), np.inf, np.where(np.isnan(x), np.nan, result))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm (float64), identical bits on every CPU; ``log(0) = -inf``, negative -> NaN.

    Examples
    --------
    >>> log(np.array([1.0, 2.0, 0.0])).tolist()
    [0.0, 0.6931471805599453, -inf]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return _blockwise(_log_block, np.asarray(x, dtype=np.float64))


def expit(x: np.ndarray | float) -> np.ndarray:
    """Logistic function ``1 / (1 + e**-x)``."""
    return 1.0 / (1.0 + exp(-np.asarray(x, dtype=np.float64)))


def geomspace(start: float, stop: float, num: int) -> np.ndarray:
    """``num`` log-spaced numbers from ``start`` to ``stop`` (both > 0), ends exact.

    Examples
    --------
    >>> geomspace(1.0, 100.0, 3).tolist()
    [1.0, 10.000000000000004, 100.0]
    """
    if start <= 0 or stop <= 0 or num < 2:
        raise ValueError(f"geomspace needs start, stop > 0 and num >= 2, got {start}, {stop}, {num}")
    lo, hi = log(np.array([start, stop], dtype=np.float64))
    steps = np.arange(num, dtype=np.float64) / float(num - 1)
    out = exp(lo + steps * (hi - lo))
    out[0], out[-1] = start, stop
    return out


def _ndtr_block(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    density = exp(x * x * -0.5) * _INV_SQRT_2PI
    result = np.empty_like(x)
    central = np.flatnonzero(a < _NDTR_SPLIT)
    if central.size:  # Phi(x) = 1/2 + density * (x + x^3/3 + x^5/(3*5) + ...)
        xc = x[central]
        x2 = xc * xc
        term = xc.copy()
        total = xc.copy()
        for n in range(1, _NDTR_SERIES_TERMS):
            term = term * x2 / (2.0 * n + 1.0)
            total = total + term
        result[central] = 0.5 + density[central] * total
    tail = np.flatnonzero(~(a < _NDTR_SPLIT))
    if tail.size:  # Phi(-a) = density / (a + 1/(a + 2/(a + 3/(a + ...)))), evaluated bottom-up
        at = np.where(np.isnan(a[tail]), _NDTR_SPLIT, a[tail])
        fraction = at.copy()
        for k in range(_NDTR_CF_DEPTH, 0, -1):
            fraction = at + k / fraction
        lower_tail = density[tail] / fraction
        result[tail] = np.where(x[tail] < 0, lower_tail, 1.0 - lower_tail)
    return np.where(np.isnan(x), np.nan, result)


def ndtr(x: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF ``P(Z <= x)`` (float64), identical bits on every CPU.

    Absolute error below 1e-15; relative error below 1e-12 in the lower tail.

    Examples
    --------
    >>> round(float(ndtr(np.array([1.96]))[0]), 6)
    0.975002
    """
    return _blockwise(_ndtr_block, np.asarray(x, dtype=np.float64))


# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9).
_Q_A: Final = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
               1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_Q_B: Final = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
               6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
_Q_C: Final = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
               -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_Q_D: Final = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_Q_LOW: Final = 0.02425


def _poly_desc(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """Polynomial with coefficients from the highest power down (Horner)."""
    acc = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + c
    return acc


def _ndtri_block(p: np.ndarray) -> np.ndarray:
    q = p - 0.5
    in_tail = ~(np.abs(q) <= 0.5 - _Q_LOW)  # NaN counts as tail and is fixed below
    central_q = np.where(in_tail, 0.0, q)
    r = central_q * central_q
    result = _poly_desc(r, _Q_A) * central_q / (_poly_desc(r, _Q_B) * r + 1.0)
    tail = np.flatnonzero(in_tail)
    if tail.size:  # ~5% of uniform draws: the log and sqrt only run there
        pt = p[tail]
        tail_p = np.clip(np.where(pt < 0.5, pt, 1.0 - pt), 1e-300, _Q_LOW)  # 1 - p is exact here
        t = np.sqrt(log(tail_p) * -2.0)
        lower = _poly_desc(t, _Q_C) / (_poly_desc(t, _Q_D) * t + 1.0)
        result[tail] = np.where(pt < 0.5, lower, -lower)
    result = np.where(p <= 0.0, -np.inf, np.where(p >= 1.0, np.inf, result))
    return np.where(np.isnan(p), np.nan, result)


def ndtri(p: np.ndarray | float) -> np.ndarray:
    """Standard normal quantile (inverse CDF), relative error < 1.2e-9, identical bits on every CPU.

    Examples
    --------
    >>> round(float(ndtri(np.array([0.975]))[0]), 6)
    1.959964
    """
    return _blockwise(_ndtri_block, np.asarray(p, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# random variates from exact integer draws
# ----------------------------------------------------------------------------------------------
_U_BITS: Final = 52


def uniform(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Uniforms on the open interval (0, 1): ``(2k + 1) / 2**53`` for a uniform 52-bit ``k`` (exact).

    Examples
    --------
    >>> u = uniform(np.random.default_rng(0), 1000)
    >>> bool((u > 0).all() and (u < 1).all())
    True
    """
    k = rng.integers(0, 1 << _U_BITS, size=size, dtype=np.int64)
    return (k * 2 + 1).astype(np.float64) * (2.0 ** -(_U_BITS + 1))


def normal(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Standard normal draws: :func:`ndtri` of :func:`uniform` draws."""
    return ndtri(uniform(rng, size))


def exponential(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Standard exponential draws ``-log(U)``."""
    return -log(uniform(rng, size))


def gumbel(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel draws ``-log(-log(U))``."""
    return -log(-log(uniform(rng, size)))


_POISSON_INVERSION_MAX: Final = 30.0
_BINOMIAL_INVERSION_MAX_VAR: Final = 25.0


def poisson(rng: np.random.Generator, lam: np.ndarray | float) -> np.ndarray:
    """Poisson counts (int64) with means ``lam`` (>= 0).

    Means up to 30 are drawn exactly, by inverting the CDF; larger means by a rounded normal
    ``round(lam + sqrt(lam) * Z)`` (clipped at 0), whose error is irrelevant for simulated counters.
    One uniform and one normal are drawn per element whatever the mean, so the stream does not
    depend on the values.
    """
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), np.shape(lam)).ravel()
    if np.any(~np.isfinite(lam) | (lam < 0)):
        raise ValueError("poisson means must be finite and >= 0")
    u = uniform(rng, lam.size)
    z = normal(rng, lam.size)
    small = lam <= _POISSON_INVERSION_MAX
    lam_small = np.where(small, lam, 0.0)

    def step(active: np.ndarray) -> np.ndarray:
        return lam_small[active] / (k_small[active] + 1.0)

    k_small = np.zeros(lam.size, dtype=np.int64)
    prob = exp(-lam_small)
    cdf = prob.copy()
    active = np.flatnonzero(small & (u > cdf))
    for _ in range(200):  # P(k > 200 | lam <= 30) is far below 1e-50
        if active.size == 0:
            break
        prob[active] = prob[active] * step(active)
        k_small[active] += 1
        cdf[active] = cdf[active] + prob[active]
        active = active[u[active] > cdf[active]]
    large = np.maximum(np.rint(lam + np.sqrt(lam) * z), 0.0).astype(np.int64)
    return np.where(small, k_small, large).reshape(np.shape(lam))


def binomial(rng: np.random.Generator, n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """Binomial counts (int64) of ``n`` trials with success probability ``p`` (clipped to [0, 1]).

    Exact CDF inversion when the variance ``n p (1 - p)`` is at most 25 (drawing the failures
    when ``p > 1/2``), a rounded normal clipped to ``[0, n]`` above. One uniform and one normal
    per element.
    """
    n_arr, p_arr = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(p, dtype=np.float64))
    shape = n_arr.shape
    trials = n_arr.ravel().astype(np.float64)
    prob = np.clip(p_arr.ravel(), 0.0, 1.0)
    if np.any(trials < 0):
        raise ValueError("binomial trial counts must be >= 0")
    u = uniform(rng, trials.size)
    z = normal(rng, trials.size)
    flip = prob > 0.5
    q = np.where(flip, 1.0 - prob, prob)  # <= 1/2
    variance = trials * q * (1.0 - q)
    small = variance <= _BINOMIAL_INVERSION_MAX_VAR
    q_small = np.where(small, q, 0.0)
    n_small = np.where(small, trials, 0.0)
    odds = q_small / (1.0 - q_small)
    k = np.zeros(trials.size, dtype=np.int64)
    pk = exp(n_small * log(1.0 - q_small))  # P(0) = (1-q)^n
    cdf = pk.copy()
    active = np.flatnonzero(small & (u > cdf) & (q_small > 0))
    # mean n q <= variance / (1 - q) <= 50 here, so 400 steps leave a negligible tail.
    for _ in range(400):
        if active.size == 0:
            break
        ka = k[active].astype(np.float64)
        pk[active] = pk[active] * ((n_small[active] - ka) / (ka + 1.0)) * odds[active]
        k[active] += 1
        cdf[active] = cdf[active] + pk[active]
        active = active[(u[active] > cdf[active]) & (k[active] < n_small[active])]
    mean = trials * q
    large = np.clip(np.rint(mean + np.sqrt(variance) * z), 0.0, trials).astype(np.int64)
    draws = np.where(small, k, large)
    return np.where(flip, trials.astype(np.int64) - draws, draws).reshape(shape)


# ----------------------------------------------------------------------------------------------
# order-free reductions and stable orderings
# ----------------------------------------------------------------------------------------------
def fsum(values: np.ndarray) -> float:
    """Correctly rounded sum (``math.fsum``): the same float whatever the order or the CPU."""
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")``: ties keep their input order on every CPU.

    numpy's default ``argsort`` (introsort, or x86-simd-sort on AVX2/AVX-512 machines) orders
    equal keys differently from one CPU to the next.
    """
    return np.argsort(keys, kind="stable")
