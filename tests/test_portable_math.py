"""reco.portable_math: accurate (against numpy/scipy), and the same bits on every numpy CPU path."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from cpu_paths import cpu_path_settings

from reco import portable_math as pm


def _ulps(got: np.ndarray, want: np.ndarray) -> float:
    finite = np.isfinite(want) & (want != 0)
    return float((np.abs(got - want)[finite] / np.spacing(np.abs(want[finite]))).max())


def test_exp_and_log_are_within_two_ulps_and_handle_edges() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-700, 700, 50_000), rng.uniform(-3, 3, 50_000), rng.normal(0, 1e-6, 1_000)])
    assert _ulps(pm.exp(x), np.exp(x)) <= 2
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 50_000)), 1 + rng.normal(0, 0.01, 50_000), [5e-324, 1e-310]])
    assert _ulps(pm.log(y), np.log(y)) <= 2
    assert pm.exp(np.array([0.0, 800.0, -800.0, np.nan])).tolist()[:3] == [1.0, np.inf, 0.0]
    assert np.isnan(pm.exp(np.array([np.nan]))[0])
    logs = pm.log(np.array([1.0, 0.0, -1.0, np.inf]))
    assert logs[0] == 0.0 and logs[1] == -np.inf and np.isnan(logs[2]) and logs[3] == np.inf


def test_normal_cdf_and_quantile_match_scipy() -> None:
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.uniform(-37, 37, 20_000), rng.uniform(-4, 4, 20_000)])
    got, want = pm.ndtr(z), scipy.special.ndtr(z)
    assert np.abs(got - want).max() < 1e-15
    lower = (z < 0) & (want > 1e-290)
    assert (np.abs(got - want)[lower] / want[lower]).max() < 1e-11
    p = np.concatenate([rng.random(20_000), 10.0 ** -rng.uniform(0, 300, 1_000)])
    assert (np.abs(pm.ndtri(p) - scipy.special.ndtri(p)) / np.abs(scipy.special.ndtri(p))).max() < 2e-9


def test_geomspace_has_exact_ends_and_log_spacing() -> None:
    values = pm.geomspace(3.0, 300.0, 5)
    assert values[0] == 3.0 and values[-1] == 300.0
    assert np.allclose(np.diff(np.log(values)), np.log(100.0) / 4, rtol=1e-12)


@pytest.mark.parametrize("lam", [0.3, 4.0, 29.0, 80.0, 5_000.0])
def test_poisson_has_the_right_mean_and_variance(lam: float) -> None:
    draws = pm.poisson(np.random.default_rng(2), np.full(200_000, lam))
    assert draws.min() >= 0
    assert abs(draws.mean() - lam) < 5 * np.sqrt(lam / draws.size)
    assert draws.var() == pytest.approx(lam, rel=0.03)


@pytest.mark.parametrize(("n", "p"), [(10, 0.3), (40, 0.95), (5_000, 0.02), (100_000, 0.5)])
def test_binomial_has_the_right_mean_and_stays_in_range(n: int, p: float) -> None:
    draws = pm.binomial(np.random.default_rng(3), np.full(100_000, n), p)
    assert draws.min() >= 0 and draws.max() <= n
    variance = n * p * (1 - p)
    assert abs(draws.mean() - n * p) < 5 * np.sqrt(variance / draws.size)
    assert draws.var() == pytest.approx(variance, rel=0.05)


def test_uniform_is_open_and_variates_are_reproducible() -> None:
    u = pm.uniform(np.random.default_rng(4), 1_000_000)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 1e-3
    for draw in (pm.normal, pm.gumbel, pm.exponential):
        assert np.array_equal(draw(np.random.default_rng(5), 1_000), draw(np.random.default_rng(5), 1_000))
    z = pm.normal(np.random.default_rng(6), 400_000)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)


def test_fsum_is_order_free() -> None:
    values = np.random.default_rng(7).normal(size=10_000) * 10.0 ** np.random.default_rng(8).integers(-8, 8, 10_000)
    assert pm.fsum(values) == pm.fsum(values[::-1]) == pm.fsum(np.random.default_rng(9).permutation(values))


_DIGEST = """
import hashlib, numpy as np
from reco import portable_math as pm
rng = np.random.default_rng(11)
x = np.concatenate([rng.uniform(-700, 700, 100_000), rng.normal(0, 3, 100_000)])
parts = [pm.exp(x), pm.log(np.abs(x) + 1e-300), pm.ndtr(x / 10), pm.ndtri(pm.uniform(rng, 100_000)),
         pm.gumbel(rng, 100_000), pm.poisson(rng, np.abs(x[:50_000])).astype(np.float64),
         pm.binomial(rng, (np.abs(x[:50_000]) * 10).astype(np.int64), 0.3).astype(np.float64),
         pm.geomspace(1.0, 1e6, 1000)]
print(hashlib.sha256(b"".join(p.tobytes() for p in parts)).hexdigest())
"""


def test_the_same_bits_on_every_numpy_cpu_path(repo_root: Path) -> None:
    digests = {}
    for name, env in cpu_path_settings().items():
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(repo_root), **env},
        )  # fmt: skip
        digests[name] = result.stdout.strip()
    assert len(set(digests.values())) == 1, digests
    assert len(next(iter(digests.values()))) == len(hashlib.sha256().hexdigest())
