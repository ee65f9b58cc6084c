"""KuaiRec 2.0 simulator: writes the official files from a latent-factor model with known truth.

:func:`simulate` writes the six KuaiRec 2.0 CSV files with their exact names, columns and text formats,
plus ``simulator_ground_truth.parquet`` for the fully observed block (from which
:func:`probability_watch_ratio_above` gives the probability of any label), so the pipeline runs offline and
the evaluation can report an oracle ceiling. Every written value is computed with exact or portable
arithmetic, so the files are the same bytes on every CPU. See docs/simulator.md and docs/design/data.md.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     stats = simulate(Path(tmp), profile="tiny", seed=1)
...     sorted(p.name for p in Path(tmp).iterdir())[:2]
['big_matrix.csv', 'item_categories.csv']
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import polars as pl

from reco import portable_math as pm
from reco.errors import ParamsError
from reco.io import atomic_path, write_parquet
from reco.progress import report as report_progress
from reco.schema import (
    INTERACTION_COLUMNS,
    ITEM_CATEGORY_COLUMNS,
    ITEM_DAILY_COLUMNS,
    N_CATEGORY_TAGS,
    SOCIAL_NETWORK_COLUMNS,
    USER_FEATURE_COLUMNS,
    Columns,
    RawFiles,
)

__all__ = [
    "PROFILES",
    "TRUTH_SCHEMA",
    "SimulatorProfile",
    "expected_watch_ratio",
    "probability_watch_ratio_above",
    "simulate",
]


@dataclass(frozen=True)
class SimulatorProfile:
    """Shape of one simulated data set.

    Parameters
    ----------
    n_users, n_items
        Users and videos of the whole platform sample (ids ``0..n-1``).
    n_small_users, n_small_items
        The fully observed grid of ``small_matrix`` (most active users x popular videos).
    n_big_rows
        Rows of ``big_matrix`` at ``scale=1``, exact duplicates included.
    duplicate_share, rewatch_share, small_missing_share, small_null_time_share
        Shares of re-logged duplicate rows (of all big rows), of re-watch rows (of the
        deduplicated big rows), of missing grid cells and of small rows with null time fields;
        defaults are KuaiRec's published counts (11,562,802 deduplicated rows over ~10.30M
        distinct pairs).
    social_share
        Share of users listed in ``social_network.csv``.
    user_chunk
        Users simulated at once (bounds memory: a few ``user_chunk x n_items`` float64 arrays,
        and the chunk's views, are held at a time; files are written chunk by chunk).
    """

    n_users: int
    n_items: int
    n_small_users: int
    n_small_items: int
    n_big_rows: int
    duplicate_share: float = 968_004 / 12_530_806
    rewatch_share: float = (11_562_802 - 10_300_600) / 11_562_802
    small_missing_share: float = 17_827 / 4_694_397
    small_null_time_share: float = 181_992 / 4_676_570
    social_share: float = 472 / 7_176
    user_chunk: int = 512


PROFILES: Final[dict[str, SimulatorProfile]] = {
    "tiny": SimulatorProfile(n_users=300, n_items=400, n_small_users=60, n_small_items=80, n_big_rows=30_000),
    "small": SimulatorProfile(
        n_users=1_500, n_items=2_000, n_small_users=300, n_small_items=620, n_big_rows=500_000
    ),
    "full": SimulatorProfile(
        n_users=7_176, n_items=10_728, n_small_users=1_411, n_small_items=3_327, n_big_rows=12_530_806
    ),
}

TRUTH_SCHEMA: Final = pl.Schema(
    {
        Columns.user: pl.Int32,
        Columns.item: pl.Int32,
        Columns.video_duration: pl.Int32,
        Columns.watch_eta: pl.Float64,
        Columns.skip_shift: pl.Float64,
        Columns.expected_watch_ratio: pl.Float32,
    }
)

# --- calendar ------------------------------------------------------------------------------
DAY0_EPOCH_S: Final = 1_593_878_400  # 2020-07-05 00:00:00 at UTC+8
N_DAYS: Final = 63  # 2020-07-05 .. 2020-09-05
UTC8_MS: Final = 8 * 3_600_000
DAY_MS: Final = 86_400_000
WINDOWS: Final = ((0, 8), (27, 37), (53, 63))  # day offsets [start, stop): Jul 5-12, Aug 1-10, Aug 27-Sep 5
WINDOW_DAYS: Final = np.concatenate([np.arange(a, b) for a, b in WINDOWS])
COLLECT_FROM_DAY: Final = 23  # 2020-07-28: collect_* counters are empty before (as in the real file)
# Relative traffic per local hour: quiet 2-7 h, peaks at lunch and in the evening.
HOUR_WEIGHTS: Final = np.array(
    [6, 4, 2.5, 1.5, 1, 1, 1.5, 2.5, 3.5, 4, 4.5, 5, 6, 6, 5, 5, 5, 5.5, 6.5, 7.5, 8.5, 9, 9, 8], dtype=np.float64
)

# --- users ---------------------------------------------------------------------------------
# Activity: a quantile function through KuaiRec's plays per user relative to its median
# (min 100, p25 883, p50 1,846, p75 2,461, max 16,015), log-linear between the knots.
ACTIVITY_KNOTS: Final = (
    (0.0, 100 / 1846),
    (0.25, 883 / 1846),
    (0.5, 1.0),
    (0.75, 2461 / 1846),
    (0.97, 1.8),
    (0.998, 3.5),
    (1.0, 16015 / 1846),
)
# --- watch model ----------------------------------------------------------------------------
N_FACTORS: Final = 16
QUANT_BITS: Final = 12  # latent vectors are held as integers of at most 12 bits (exact products)
WATCH_T0_S: Final = 7.5  # typical seconds watched (eta's reference point)
USER_BIAS_SD: Final = 0.13
APPEAL_SD: Final = 0.16
APPEAL_POP_CORR: Final = 0.5  # appeal vs feed popularity: related, not the same
DRIFT_SD: Final = 0.09  # stationary sd of the daily appeal drift
DRIFT_AR: Final = 0.93
NOVELTY_BOOST: Final = 0.1  # extra appeal right after upload, decaying over ~10 days
TASTE_SD: Final = 0.27  # sd of the user x video latent interaction
TAG_SD: Final = 0.13  # sd of the user x tag affinity effect
NOISE_SD: Final = 0.20
SHORT_PIVOT_S: Final = 6.0  # clips shorter than this are swiped away sooner ...
SHORT_ELASTICITY: Final = 0.5  # ... T scales like length**0.3 below the pivot
LONG_PIVOT_S: Final = 60.0
LONG_ELASTICITY: Final = -0.03  # a slight decline for very long videos
SKIP_BASE: Final = -0.75  # logit of a quick skip at eta = log(T0)
SKIP_SLOPE: Final = 1.6
SKIP_ACTIVITY: Final = 1.1  # heavy users skip less: logit shift per sd of log activity
SKIP_RANGE_S: Final = (0.3, 2.2)
LONG_SHARE: Final = 0.009  # long sessions: the viewer loops the clip or leaves it playing ...
LONG_RANGE_S: Final = (12.0, 3600.0)  # ... for a log-uniform time up to an hour
LOOP_CAP: Final = 573.0  # the app stops replaying after this many loops (KuaiRec: largest ratios 573.5 and 571.5)
# --- feed policy ---------------------------------------------------------------------------
FEED_POP: Final = 0.8
FEED_TASTE: Final = 0.8  # weight on the half of the taste dimensions the feed can see
FEED_TAG: Final = 0.5
FEED_DRIFT: Final = 0.3  # on which window days a chosen video is shown
FRESH_APPEAL_PENALTY: Final = 0.3  # videos uploaded during the logs are on average less appealing
FRESH_FEED_PENALTY: Final = 5.0  # ... and the feed shows them less (log-scale)
SMALL_APPEAL_WEIGHT: Final = 1.0  # small-matrix videos are chosen by popularity and appeal
SMALL_MIN_DURATION_MS: Final = 3_000  # KuaiRec's small_matrix videos are at least 3.067 s long
MAX_PAIR_SHARE: Final = 0.8  # a user's distinct videos are at most this share of those on offer
REWATCH_ENJOYMENT: Final = 1.0  # re-watch weight exp(this * (eta - log T0))
REWATCH_LATENESS: Final = 0.3  # re-watch position among the later window days: U**this
# --- side data -----------------------------------------------------------------------------
PRE_PERIOD_SHARE: Final = 0.405  # videos uploaded before the logs; the rest during them
# Real item_categories tag frequencies (counts of each tag 0..30), used as sampling weights.
TAG_FREQ: Final = np.array(
    [24, 463, 216, 104, 164, 964, 912, 503, 1112, 696, 170, 2027, 534, 245, 63, 374,
     214, 350, 131, 686, 265, 29, 20, 39, 12, 468, 490, 31, 1360, 5, 22], dtype=np.float64,
)  # fmt: skip
N_TAGS_P: Final = np.array([8970, 1562, 185, 11], dtype=np.float64)  # videos with 1..4 tags
# Video length mixture: (share, kind, a, b): lognormal(median a s, sd b) or log-uniform [a, b] s.
DURATION_MIXTURE: Final = (
    (0.877, "lognormal", 9.5, 0.30),
    (0.090, "lognormal", 28.0, 0.85),
    (0.030, "loguniform", 1.8, 7.0),
    (0.003, "loguniform", 0.14, 1.8),
)
MAX_DURATION_MS: Final = 315_072  # KuaiRec's longest video

_LOG_T0: Final = float(pm.log(np.array([WATCH_T0_S]))[0])


# ==============================================================================================
# public API
# ==============================================================================================
def simulate(out_dir: Path, profile: str = "full", seed: int = 20200705, scale: float = 1.0) -> dict[str, Any]:
    """Simulate KuaiRec 2.0 and write its files (and the ground truth) into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write into (created if missing). Each file is written atomically.
    profile
        ``"tiny"`` (tests), ``"small"`` or ``"full"`` (KuaiRec's published shape).
    seed
        Seed of every random draw: the same seed gives byte-identical files on any machine.
    scale
        Multiplies the number of logged views in ``big_matrix`` (users and videos stay the
        same, and so does the simulated world: only the logs change).

    Returns
    -------
    dict
        Summary statistics: row counts, duplicates, re-watches, null timestamps, watch-ratio
        quantiles, positive rates, item_daily rows. Deterministic (no timings), so it can go
        into a manifest.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stats = simulate(Path(tmp), profile="tiny")
    >>> stats["small_matrix"]["users"], stats["small_matrix"]["items"]
    (60, 80)
    """
    prof = _profile(profile)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.01 <= float(scale) <= 10:
        raise ParamsError(f"params.yaml: data.scale = {scale!r} is invalid; expected a number in [0.01, 10]")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParamsError(f"params.yaml: data.seed = {seed!r} is invalid; expected an integer >= 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _simulate_files(out_dir, prof, profile, int(seed), float(scale))


def expected_watch_ratio(eta: np.ndarray, duration_s: np.ndarray, skip_shift: np.ndarray | float = 0.0) -> np.ndarray:
    """Expected watch ratio of a view under the model, given ``eta``, the length in seconds and the
    viewer's ``skip_shift`` (ground truth columns ``watch_eta``, ``video_duration``, ``skip_shift``).

    The expectation covers the skip, long-session and normal parts of the watch-time mixture and
    the loop cap (``play = min(T, LOOP_CAP * length)``).

    Examples
    --------
    >>> r = expected_watch_ratio(np.array([np.log(8.6)] * 2), np.array([3.0, 60.0]))
    >>> bool(r[0] > 1 > r[1])
    True
    """
    eta = np.asarray(eta, dtype=np.float64)
    dur = np.asarray(duration_s, dtype=np.float64)
    cap = dur * LOOP_CAP
    p_skip = _skip_probability(eta, skip_shift)
    p_normal = 1.0 - p_skip - LONG_SHARE
    e_skip = _uniform_min_mean(SKIP_RANGE_S[0], SKIP_RANGE_S[1], cap)
    e_long = _loguniform_min_mean(LONG_RANGE_S[0], LONG_RANGE_S[1], cap)
    e_normal = _lognormal_min_mean(eta, NOISE_SD, cap)
    return (p_skip * e_skip + LONG_SHARE * e_long + p_normal * e_normal) / dur


def probability_watch_ratio_above(
    eta: np.ndarray, duration_s: np.ndarray, cutoff: np.ndarray | float, skip_shift: np.ndarray | float = 0.0
) -> np.ndarray:
    """``P(watch_ratio > cutoff)`` of a view under the model (the probability of a label).

    ``watch_ratio > c`` means ``min(T, LOOP_CAP * length) > c * length``: impossible for
    ``c >= LOOP_CAP``, otherwise ``P(T > c * length)`` under the skip / long-session / normal mixture.
    Ranking a user's videos by this probability is the best any model can do on average for a
    label with that cut-off (it is the label's conditional expectation).

    Examples
    --------
    >>> p = probability_watch_ratio_above(np.array([np.log(8.6)] * 2), np.array([3.0, 60.0]), 2.0)
    >>> bool(p[0] > 0.5 > p[1] > 0)
    True
    """
    eta = np.asarray(eta, dtype=np.float64)
    dur = np.asarray(duration_s, dtype=np.float64)
    c = np.broadcast_to(np.asarray(cutoff, dtype=np.float64), eta.shape)
    s = c * dur  # seconds that must be exceeded
    p_skip = _skip_probability(eta, skip_shift)
    p_normal = 1.0 - p_skip - LONG_SHARE
    lo, hi = SKIP_RANGE_S
    skip_above = np.clip((hi - s) / (hi - lo), 0.0, 1.0)
    ilo, ihi = LONG_RANGE_S
    log_s = pm.log(np.maximum(s, 1e-300))
    long_above = np.clip((pm.log(np.array([ihi]))[0] - log_s) / (pm.log(np.array([ihi / ilo]))[0]), 0.0, 1.0)
    normal_above = pm.ndtr((eta - log_s) / NOISE_SD)
    p = p_skip * skip_above + LONG_SHARE * long_above + p_normal * normal_above
    return np.where(c >= LOOP_CAP, 0.0, p)


# ==============================================================================================
# the world: users, videos and their latent parameters
# ==============================================================================================
@dataclass
class _World:
    n_users: int
    n_items: int
    activity: np.ndarray  # f64 (users,)
    user_bias: np.ndarray  # f64 (users,)
    skip_shift: np.ndarray  # f64 (users,): added to the skip logit (heavy users skip less)
    theta_q: np.ndarray  # f64 integers (users, F): quantised taste vectors
    phi_q: np.ndarray  # f64 integers (items, F)
    taste_scale: float  # theta_q . phi_q * taste_scale = taste effect (sd TASTE_SD)
    tag_aff_q: np.ndarray  # f64 integers (users, 31)
    tag_scale: float  # (sum over a video's tags of tag_aff_q) / n_tags * tag_scale = tag effect
    tag_lists: np.ndarray  # i16 (items, 4), -1 padded
    tag_incidence: np.ndarray  # f64 0/1 (items, 31)
    n_tags: np.ndarray  # f64 (items,)
    duration_ms: np.ndarray  # i64 (items,)
    duration_term: np.ndarray  # f64 (items,): g(length)
    pop: np.ndarray  # f64 (items,) feed popularity (z-score)
    appeal_base: np.ndarray  # f64 (items,)
    drift: np.ndarray  # f64 (items, N_DAYS): AR(1) drift plus novelty boost
    upload_day: np.ndarray  # i64 (items,), day offset from 2020-07-05 (negative: before)
    small_users: np.ndarray  # i64 sorted
    small_items: np.ndarray  # i64 sorted

    def duration_s(self, items: np.ndarray) -> np.ndarray:
        return self.duration_ms[items] / 1000.0

    def interaction(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Dense taste + tag effect of ``users`` x ``items`` (all items when None), exact."""
        phi = self.phi_q if items is None else self.phi_q[items]
        incidence = self.tag_incidence if items is None else self.tag_incidence[items]
        n_tags = self.n_tags if items is None else self.n_tags[items]
        taste = (self.theta_q[users] @ phi.T) * self.taste_scale
        tag = ((self.tag_aff_q[users] @ incidence.T) / n_tags[None, :]) * self.tag_scale
        return taste + tag


def _profile(name: str) -> SimulatorProfile:
    if name not in PROFILES:
        raise ParamsError(
            f"params.yaml: data.profile = {name!r} is invalid; expected one of {', '.join(map(repr, PROFILES))}"
        )
    return PROFILES[name]


def _standardise(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / sd`` with correctly rounded sums (the same bits whatever the summation order)."""
    mean = pm.fsum(x) / x.size
    centred = x - mean
    sd = float(np.sqrt(pm.fsum(centred * centred) / x.size))
    return centred / sd


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Integers (as float64) of at most QUANT_BITS bits proportional to ``values``, and the step."""
    peak = float(np.max(np.abs(values)))
    step = peak / (2 ** (QUANT_BITS - 1) - 1) if peak > 0 else 1.0
    return np.rint(values / step), step


def _piecewise_log_linear(u: np.ndarray, knots: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Monotone quantile function: log-linear interpolation between ``(probability, value)`` knots."""
    probs = np.array([p for p, _ in knots])
    log_values = pm.log(np.array([v for _, v in knots]))
    seg = np.clip(np.searchsorted(probs, u, side="right") - 1, 0, len(knots) - 2)
    frac = (u - probs[seg]) / (probs[seg + 1] - probs[seg])
    return pm.exp(log_values[seg] + frac * (log_values[seg + 1] - log_values[seg]))


def _durations_ms(rng: np.random.Generator, n: int) -> np.ndarray:
    shares = np.array([share for share, *_ in DURATION_MIXTURE])
    kind = np.searchsorted(np.cumsum(shares) / shares.sum(), pm.uniform(rng, n), side="right")
    z, u = pm.normal(rng, n), pm.uniform(rng, n)
    seconds = np.zeros(n)
    for index, (_, family, a, b) in enumerate(DURATION_MIXTURE):
        log_a, log_b = pm.log(np.array([a, b]))
        if family == "lognormal":
            value = pm.exp(log_a + b * z)
        else:
            value = pm.exp(log_a + u * (log_b - log_a))
        seconds = np.where(kind == index, value, seconds)
    return np.clip(np.rint(seconds * 1000.0), 140, MAX_DURATION_MS).astype(np.int64)


def _duration_term(duration_ms: np.ndarray) -> np.ndarray:
    """g(length): clips shorter than SHORT_PIVOT_S are watched for fewer seconds."""
    log_d = pm.log(duration_ms / 1000.0)
    short = np.minimum(log_d - pm.log(np.array([SHORT_PIVOT_S]))[0], 0.0) * SHORT_ELASTICITY
    long = np.maximum(log_d - pm.log(np.array([LONG_PIVOT_S]))[0], 0.0) * LONG_ELASTICITY
    return short + long


def _make_world(prof: SimulatorProfile, rng: np.random.Generator) -> _World:
    n_u, n_i = prof.n_users, prof.n_items
    activity = _piecewise_log_linear(pm.uniform(rng, n_u), ACTIVITY_KNOTS)
    activity_z = _standardise(pm.log(activity))
    user_bias = (activity_z * 0.2 + pm.normal(rng, n_u) * np.sqrt(1 - 0.04)) * USER_BIAS_SD
    skip_shift = activity_z * -SKIP_ACTIVITY
    # Taste factors with decaying importance, so a few dimensions carry most of the signal.
    weights = np.sqrt(np.linspace(1.6, 0.4, N_FACTORS))
    theta_q, theta_step = _quantise(pm.normal(rng, (n_u, N_FACTORS)) * weights)
    phi_q, phi_step = _quantise(pm.normal(rng, (n_i, N_FACTORS)) * weights)
    taste_scale = theta_step * phi_step * TASTE_SD / float(np.sqrt(pm.fsum(weights**4)))

    # Tags: 1-4 distinct tags drawn by Gumbel top-k with the real frequencies.
    n_tags_int = np.searchsorted(np.cumsum(N_TAGS_P) / N_TAGS_P.sum(), pm.uniform(rng, n_i), side="right") + 1
    keys = pm.log(TAG_FREQ)[None, :] + pm.gumbel(rng, (n_i, N_CATEGORY_TAGS))
    top = np.argsort(-keys, axis=1, kind="stable")[:, :4].astype(np.int16)
    tag_lists = np.where(np.arange(4)[None, :] < n_tags_int[:, None], top, -1).astype(np.int16)
    incidence = np.zeros((n_i, N_CATEGORY_TAGS))
    rows = np.repeat(np.arange(n_i), 4)
    flat = tag_lists.ravel()
    incidence[rows[flat >= 0], flat[flat >= 0]] = 1.0
    n_tags = n_tags_int.astype(np.float64)
    # User tag affinity: a normal lift per (user, tag), centred on the platform's tag mix, scaled
    # so that the effect on a random (user, video) pair has sd TAG_SD.
    base = TAG_FREQ / TAG_FREQ.sum()
    lift = pm.normal(rng, (n_u, N_CATEGORY_TAGS))
    centre = np.zeros(n_u)
    for t in range(N_CATEGORY_TAGS):  # fixed order of additions
        centre = centre + lift[:, t] * base[t]
    tag_aff_q, _ = _quantise(lift - centre[:, None])
    sample_u = rng.integers(0, n_u, 20_000)
    sample_i = rng.integers(0, n_i, 20_000)
    raw = np.zeros(20_000)
    for t in range(N_CATEGORY_TAGS):  # integers: exact in any order
        raw = raw + tag_aff_q[sample_u, t] * incidence[sample_i, t]
    raw = raw / n_tags[sample_i]
    raw_centred = raw - pm.fsum(raw) / raw.size
    tag_scale = TAG_SD / float(np.sqrt(pm.fsum(raw_centred * raw_centred) / raw.size))

    duration_ms = _durations_ms(rng, n_i)
    pop = _standardise(pm.normal(rng, n_i))
    appeal_base = (pop * APPEAL_POP_CORR + pm.normal(rng, n_i) * np.sqrt(1 - APPEAL_POP_CORR**2)) * APPEAL_SD

    # Upload dates: a share before the logs (the pool of small-matrix videos), the rest during
    # them, skewed late (Beta(5, 1) = U**(1/5)) so that the item_daily row count resembles the real 343k.
    n_pre = min(n_i, max(round(PRE_PERIOD_SHARE * n_i), int(np.ceil(1.05 * prof.n_small_items))))
    pre = np.zeros(n_i, dtype=bool)
    pre[rng.permutation(n_i)[:n_pre]] = True
    late = np.minimum(np.floor(pm.exp(pm.log(pm.uniform(rng, n_i)) / 5.0) * N_DAYS), N_DAYS - 1)
    upload_day = np.where(pre, -rng.integers(1, 120, n_i), late.astype(np.int64)).astype(np.int64)
    # Survivorship: older videos still in circulation are the good ones; fresh uploads are mixed.
    appeal_base = np.where(pre, appeal_base, appeal_base - FRESH_APPEAL_PENALTY)

    # Daily drift: stationary AR(1) plus a novelty boost that decays after upload.
    eps = pm.normal(rng, (n_i, N_DAYS)) * (DRIFT_SD * np.sqrt(1 - DRIFT_AR**2))
    drift = np.empty((n_i, N_DAYS))
    drift[:, 0] = pm.normal(rng, n_i) * DRIFT_SD
    for d in range(1, N_DAYS):  # 63 vectorised steps over all videos
        drift[:, d] = drift[:, d - 1] * DRIFT_AR + eps[:, d]
    age = (np.arange(N_DAYS)[None, :] - upload_day[:, None]).astype(np.float64)
    boost = pm.exp(np.maximum(age, 0.0) / -10.0) * NOVELTY_BOOST
    drift = drift + np.where(age >= 0, boost, 0.0)

    small_users = np.sort(np.argsort(-activity, kind="stable")[: prof.n_small_users])
    pool = np.flatnonzero(pre & (duration_ms >= SMALL_MIN_DURATION_MS))
    # "Popular" as the platform sees it: exposure plus quality (appeal), among established videos.
    popular = pop + appeal_base * (SMALL_APPEAL_WEIGHT / APPEAL_SD)
    small_items = np.sort(pool[np.argsort(-popular[pool], kind="stable")[: prof.n_small_items]])

    return _World(
        n_users=n_u,
        n_items=n_i,
        activity=activity,
        user_bias=user_bias,
        skip_shift=skip_shift,
        theta_q=theta_q,
        phi_q=phi_q,
        taste_scale=taste_scale,
        tag_aff_q=tag_aff_q,
        tag_scale=tag_scale,
        tag_lists=tag_lists,
        tag_incidence=incidence,
        n_tags=n_tags,
        duration_ms=duration_ms,
        duration_term=_duration_term(duration_ms),
        pop=pop,
        appeal_base=appeal_base,
        drift=drift,
        upload_day=upload_day,
        small_users=small_users,
        small_items=small_items,
    )


# ==============================================================================================
# the watch model
# ==============================================================================================
def _eta(world: _World, users: np.ndarray, items: np.ndarray, days: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """Log-seconds location of a view; ``inter`` is taste . latent + tag affinity of the pair."""
    return (
        ((((world.user_bias[users] + _LOG_T0) + world.appeal_base[items]) + world.drift[items, days]) + inter)
        + world.duration_term[items]
    )


def _skip_probability(eta: np.ndarray, skip_shift: np.ndarray | float = 0.0) -> np.ndarray:
    return pm.expit(((eta - _LOG_T0) * -SKIP_SLOPE + SKIP_BASE) + skip_shift)


def _uniform_min_mean(a: float, b: float, cap: np.ndarray) -> np.ndarray:
    """E[min(U, cap)] for U ~ Uniform(a, b)."""
    inside = ((cap * cap - a * a) / 2 + cap * (b - cap)) / (b - a)
    return np.where(cap <= a, cap, np.where(cap >= b, (a + b) / 2, inside))


def _loguniform_min_mean(a: float, b: float, cap: np.ndarray) -> np.ndarray:
    """E[min(T, cap)] for log T ~ Uniform(log a, log b)."""
    log_ratio = float(pm.log(np.array([b / a]))[0])
    c = np.clip(cap, a, b)
    below = (c - a) / log_ratio  # integral of t * 1/(t log(b/a)) from a to c
    above = cap * (pm.log(b / c) / log_ratio)  # P(T > c) * cap
    return np.where(cap <= a, cap, below + above)


def _lognormal_min_mean(eta: np.ndarray, sd: float | np.ndarray, cap: np.ndarray) -> np.ndarray:
    """E[min(T, cap)] for T ~ LogNormal(eta, sd)."""
    log_c = pm.log(cap)
    mean_t = pm.exp(eta + sd * sd * 0.5)
    return mean_t * pm.ndtr((log_c - eta - sd * sd) / sd) + cap * pm.ndtr((eta - log_c) / sd)


def _sample_play_ms(
    eta: np.ndarray, skip_shift: np.ndarray, duration_ms: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw milliseconds played for views with location ``eta`` (see :func:`expected_watch_ratio`)."""
    n = eta.shape[0]
    dur = duration_ms / 1000.0
    u_kind = pm.uniform(rng, n)
    u_skip = pm.uniform(rng, n)
    u_long = pm.uniform(rng, n)
    z = pm.normal(rng, n)
    p_skip = _skip_probability(eta, skip_shift)
    lo, hi = SKIP_RANGE_S
    skip_t = u_skip * (hi - lo) + lo
    ilo, ihi = pm.log(np.array(LONG_RANGE_S))
    long_t = pm.exp(u_long * (ihi - ilo) + ilo)
    normal_t = pm.exp(z * NOISE_SD + eta)
    watch = np.where(u_kind < p_skip, skip_t, np.where(u_kind < p_skip + LONG_SHARE, long_t, normal_t))
    play = np.minimum(watch, dur * LOOP_CAP)
    return np.floor(play * 1000.0).astype(np.int64)


# ==============================================================================================
# big_matrix: the logged feed, one chunk of users at a time
# ==============================================================================================
def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` that add up to ``total`` exactly (ties by index)."""
    share = weights / pm.fsum(weights) * total
    counts = np.floor(share).astype(np.int64)
    left = int(total - counts.sum())
    if left > 0:
        counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return counts


@dataclass(frozen=True)
class _BigPlan:
    """Per-user numbers of distinct videos, re-watches and duplicates (exact totals)."""

    first: np.ndarray
    rewatch: np.ndarray
    duplicate: np.ndarray

    @property
    def total(self) -> int:
        return int(self.first.sum() + self.rewatch.sum() + self.duplicate.sum())


def _plan_big(world: _World, prof: SimulatorProfile, scale: float) -> _BigPlan:
    n_total = max(world.n_users, round(prof.n_big_rows * scale))
    n_dup = round(n_total * prof.duplicate_share)
    views = np.maximum(_largest_remainder(world.activity, n_total - n_dup), 1)
    offered = np.full(world.n_users, world.n_items, dtype=np.int64)
    offered[world.small_users] -= world.small_items.size
    cap = np.maximum((offered * MAX_PAIR_SHARE).astype(np.int64), 1)
    first = np.clip(np.rint(views * (1.0 - prof.rewatch_share)).astype(np.int64), 1, cap)
    rewatch = views - first
    duplicate = _largest_remainder(views.astype(np.float64), n_total - int(views.sum())) if n_total > views.sum() else np.zeros_like(views)
    return _BigPlan(first=first, rewatch=rewatch, duplicate=duplicate)


def _day_cdf(world: _World, traffic: np.ndarray) -> np.ndarray:
    """Per video, the CDF over window days of the day a view happens (traffic x drift, after upload)."""
    weight = pm.exp(world.drift[:, WINDOW_DAYS] * FEED_DRIFT) * traffic[None, :]
    weight = weight * (WINDOW_DAYS[None, :] >= world.upload_day[:, None])
    cdf = np.cumsum(weight, axis=1)
    total = cdf[:, -1:]
    cdf = cdf / np.where(total > 0, total, 1.0)
    cdf[:, -1] = 1.0
    return cdf


def _draw_days(cdf: np.ndarray, items: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Window-day index of each view of ``items`` by inverting the video's day CDF."""
    n_wd = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    pos = np.searchsorted(flat, items + u, side="right")
    return np.minimum(pos - items.astype(np.int64) * n_wd, n_wd - 1)


def _day_rhythm_ms(n: int, rng: np.random.Generator) -> np.ndarray:
    """Milliseconds since local midnight, following the daily rhythm."""
    cum = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
    hour = np.searchsorted(cum, pm.uniform(rng, n), side="right")
    return hour * 3_600_000 + rng.integers(0, 3_600_000, n)


def _top_k_mask(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``k[r]`` largest entries of each row (ties: lower column first).

    The k-th largest value of a row is unique as a value, whatever algorithm finds it; taking
    every entry above it and then the equal ones in column order gives one answer on every CPU.
    """
    n_rows, n_cols = keys.shape
    k = np.clip(k, 0, n_cols)
    mask = np.zeros(keys.shape, dtype=bool)
    for row in range(n_rows):
        kr = int(k[row])
        if kr == 0:
            continue
        values = keys[row]
        kth = np.partition(values, n_cols - kr)[n_cols - kr]
        above = values > kth
        ties = np.flatnonzero(values == kth)[: kr - int(above.sum())]
        mask[row] = above
        mask[row, ties] = True
    return mask


def _big_chunk(
    world: _World,
    plan: _BigPlan,
    users: np.ndarray,
    prior: np.ndarray,
    day_cdf: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """All big_matrix rows of ``users`` (a contiguous id range), sorted by user then time."""
    half = N_FACTORS // 2
    taste_seen = (world.theta_q[users, :half] @ world.phi_q[:, :half].T) * world.taste_scale
    tag = ((world.tag_aff_q[users] @ world.tag_incidence.T) / world.n_tags[None, :]) * world.tag_scale
    logits = ((taste_seen * (FEED_TASTE / TASTE_SD)) + prior[None, :]) + tag * (FEED_TAG / TAG_SD)
    # The fully observed block is never part of its users' logged feed (KuaiRec shares no pair).
    in_block = np.isin(users, world.small_users)
    if in_block.any():
        logits[np.ix_(np.flatnonzero(in_block), world.small_items)] = -np.inf
    # Gumbel top-k: the k largest of logits + Gumbel noise are a draw without replacement.
    keys = logits + pm.gumbel(rng, logits.shape)
    rows, items = np.nonzero(_top_k_mask(keys, plan.first[users]))
    inter = world.interaction(users)[rows, items]
    user = users[rows]

    # Re-watches: each user re-watches some of their videos, the enjoyed ones more often.
    n_first = rows.size
    day_index = _draw_days(day_cdf, items, pm.uniform(rng, n_first))
    first_eta = _eta(world, user, items, WINDOW_DAYS[day_index], inter)
    enjoy = pm.exp((first_eta - _LOG_T0) * REWATCH_ENJOYMENT)
    starts = np.concatenate([[0], np.cumsum(plan.first[users])])
    n_re = plan.rewatch[users]
    re_src = np.empty(int(n_re.sum()), dtype=np.int64)
    cum = np.cumsum(enjoy)
    u_pick = pm.uniform(rng, re_src.size)
    pos = 0
    for local, count in enumerate(n_re):
        if count == 0:
            continue
        lo, hi = starts[local], starts[local + 1]
        base = cum[lo - 1] if lo > 0 else 0.0
        targets = base + u_pick[pos : pos + count] * (cum[hi - 1] - base)
        re_src[pos : pos + count] = np.minimum(np.searchsorted(cum, targets, side="right"), hi - 1)
        pos += count
    # The feed shows a watched video again on any later window day (the same day included).
    remaining = WINDOW_DAYS.size - day_index[re_src]
    # Later days are likelier (the feed re-shows watched videos more as they age).
    late = pm.exp(pm.log(pm.uniform(rng, re_src.size)) * REWATCH_LATENESS)
    re_day_index = day_index[re_src] + np.floor(late * remaining).astype(np.int64)

    src = np.concatenate([np.arange(n_first), re_src])
    all_day_index = np.concatenate([day_index, re_day_index])
    day = WINDOW_DAYS[all_day_index]
    ts_ms = (DAY0_EPOCH_S * 1000 + day * DAY_MS + _day_rhythm_ms(src.size, rng)).astype(np.int64)
    # A re-watch on the day of its first view comes after it.
    first_ts = ts_ms[:n_first][re_src]
    re_ts = ts_ms[n_first:]
    same_day = re_ts <= first_ts
    day0_ms = DAY0_EPOCH_S * 1000
    end_of_day = day0_ms + ((first_ts - day0_ms) // DAY_MS + 1) * DAY_MS - 1
    later = first_ts + 1 + np.floor(pm.uniform(rng, re_src.size) * (end_of_day - first_ts)).astype(np.int64)
    ts_ms[n_first:] = np.where(same_day, later, re_ts)
    view_user, view_item = user[src], items[src]
    eta = _eta(world, view_user, view_item, day, inter[src])
    play_ms = _sample_play_ms(eta, world.skip_shift[view_user], world.duration_ms[view_item], rng)

    order = _user_time_order(view_user, ts_ms)
    view_user, view_item, play_ms, ts_ms = view_user[order], view_item[order], play_ms[order], ts_ms[order]
    # Exact duplicates: a re-logged row sits right after its original.
    reps = np.ones(view_user.size, dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(plan.first[users] + plan.rewatch[users])])
    for local, n_dup in enumerate(plan.duplicate[users]):
        if n_dup:
            lo, hi = row_starts[local], row_starts[local + 1]
            reps[lo + rng.permutation(hi - lo)[:n_dup]] += 1
    return {
        "user": np.repeat(view_user, reps).astype(np.int32),
        "item": np.repeat(view_item, reps).astype(np.int32),
        "play_ms": np.repeat(play_ms, reps),
        "ts_ms": np.repeat(ts_ms, reps),
        "duration_ms": world.duration_ms[np.repeat(view_item, reps)],
        "null_time": np.zeros(int(reps.sum()), dtype=bool),
        "n_duplicates": np.int64(int(reps.sum()) - view_user.size),
        "n_rewatches": np.int64(re_src.size),
    }


def _user_time_order(user: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Row order by user, then time, ties in input order (one int64 key, stable sort)."""
    offset = ts_ms - DAY0_EPOCH_S * 1000  # < 63 days < 2**33 ms
    return np.argsort(user.astype(np.int64) * (1 << 33) + offset, kind="stable")


def _feed_prior(world: _World, traffic: np.ndarray) -> np.ndarray:
    """Feed prior per video: popularity, discounted by the share of window traffic it can get."""
    available = np.zeros(world.n_items)
    for j, day in enumerate(WINDOW_DAYS):  # fixed order of additions
        available = available + np.where(world.upload_day <= day, traffic[j], 0.0)
    share = available / pm.fsum(traffic)
    fresh = np.where(world.upload_day >= 0, FRESH_FEED_PENALTY, 0.0)
    return (world.pop * FEED_POP + pm.log(np.maximum(share, 1e-9))) - fresh


# ==============================================================================================
# small_matrix: the fully observed block
# ==============================================================================================
def _simulate_small(
    world: _World, prof: SimulatorProfile, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    su, si = world.small_users, world.small_items
    n_cells = su.size * si.size
    user = np.repeat(su, si.size)
    item = np.tile(si, su.size)
    inter = world.interaction(su, si).ravel()
    # Every cell gets a view time (also the cells that end up missing: the truth needs a day).
    day = rng.integers(0, N_DAYS, n_cells)
    ts_ms = (DAY0_EPOCH_S * 1000 + day * DAY_MS + _day_rhythm_ms(n_cells, rng)).astype(np.int64)
    eta = _eta(world, user, item, day, inter)
    truth = pl.DataFrame(
        {
            Columns.user: user.astype(np.int32),
            Columns.item: item.astype(np.int32),
            Columns.video_duration: world.duration_ms[item].astype(np.int32),
            Columns.watch_eta: eta,
            Columns.skip_shift: world.skip_shift[user],
            Columns.expected_watch_ratio: expected_watch_ratio(eta, world.duration_s(item), world.skip_shift[user]).astype(
                np.float32
            ),
        },
        schema=TRUTH_SCHEMA,
    )
    play_ms = _sample_play_ms(eta, world.skip_shift[user], world.duration_ms[item], rng)

    n_missing = round(n_cells * prof.small_missing_share)
    keep = np.ones(n_cells, dtype=bool)
    keep[rng.permutation(n_cells)[:n_missing]] = False
    user, item, play_ms, ts_ms = user[keep], item[keep], play_ms[keep], ts_ms[keep]
    order = _user_time_order(user, ts_ms)
    n_null = round(user.size * prof.small_null_time_share)
    null_time = np.zeros(user.size, dtype=bool)
    null_time[rng.permutation(user.size)[:n_null]] = True
    return (
        {
            "user": user[order].astype(np.int32),
            "item": item[order].astype(np.int32),
            "play_ms": play_ms[order],
            "ts_ms": ts_ms[order],
            "duration_ms": world.duration_ms[item[order]],
            "null_time": null_time,
            "n_duplicates": np.int64(0),
            "n_rewatches": np.int64(0),
        },
        truth,
    )


# ==============================================================================================
# writing
# ==============================================================================================
def _interaction_frame(views: dict[str, np.ndarray], *, date_as_float: bool) -> pl.DataFrame:
    """The KuaiRec text layout: local time string, yyyymmdd date, epoch seconds with ms."""
    duration = views["duration_ms"]
    null = pl.Series(views["null_time"])
    local = pl.from_epoch(pl.Series(views["ts_ms"] + UTC8_MS), time_unit="ms")
    date = pl.Series(_yyyymmdd((views["ts_ms"] + UTC8_MS) // DAY_MS - (DAY0_EPOCH_S * 1000 + UTC8_MS) // DAY_MS))
    frame = pl.DataFrame(
        {
            Columns.user: views["user"].astype(np.int32),
            Columns.item: views["item"].astype(np.int32),
            Columns.play_duration: views["play_ms"],
            Columns.video_duration: duration,
            Columns.time: local.dt.strftime("%Y-%m-%d %H:%M:%S%.3f"),
            Columns.date: date.cast(pl.Float64) if date_as_float else date,
            Columns.timestamp: views["ts_ms"] / 1000.0,
            Columns.watch_ratio: views["play_ms"] / duration,
        }
    )
    if null.any():
        frame = frame.with_columns(
            pl.when(null).then(None).otherwise(pl.col(c)).alias(c)
            for c in (Columns.time, Columns.date, Columns.timestamp)
        )
    return frame.select(INTERACTION_COLUMNS)


def _yyyymmdd(day: np.ndarray) -> np.ndarray:
    """Local date as the integer yyyymmdd of day offsets from 2020-07-05 (July to September)."""
    d = np.arange(N_DAYS)
    table = np.where(d < 27, 20200705 + d, np.where(d < 58, 20200801 + d - 27, 20200901 + d - 58))
    return table[day].astype(np.int32)


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, include_header=True, line_terminator="\n")


@contextmanager
def _csv_appender(path: Path) -> Iterator[IO[bytes]]:
    """An open binary handle on a temporary sibling of ``path``, renamed onto it on success."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        yield handle


def _append_csv(frame: pl.DataFrame, handle: IO[bytes], header: bool) -> None:
    frame.write_csv(handle, include_header=header, line_terminator="\n")


# ==============================================================================================
# statistics (deterministic: counts, order statistics and exact quotients only)
# ==============================================================================================
class _RatioSample:
    """Rows kept for the summary statistics: every row up to scale 1, every k-th row above."""

    def __init__(self, stride: int) -> None:
        self.stride = max(1, stride)
        self.parts: dict[str, list[np.ndarray]] = {"ratio": [], "duration_ms": [], "play_ms": []}
        self.rows = 0
        self.users: set[int] = set()
        self.items = np.zeros(0, dtype=np.int64)
        self.max_ratio = 0.0
        self.duplicates = 0
        self.rewatches = 0
        self.null_timestamps = 0

    def add(self, views: dict[str, np.ndarray]) -> None:
        ratio = views["play_ms"] / views["duration_ms"]
        self.rows += ratio.size
        self.max_ratio = max(self.max_ratio, float(ratio.max()) if ratio.size else 0.0)
        self.users.update(np.unique(views["user"]).tolist())
        self.items = np.union1d(self.items, views["item"])
        self.duplicates += int(views["n_duplicates"])
        self.rewatches += int(views["n_rewatches"])
        self.null_timestamps += int(views["null_time"].sum())
        take = slice(None, None, self.stride)
        self.parts["ratio"].append(ratio[take])
        self.parts["duration_ms"].append(views["duration_ms"][take])
        self.parts["play_ms"].append(views["play_ms"][take])

    def stats(self) -> dict[str, Any]:
        ratio = np.concatenate(self.parts["ratio"])
        dur = np.concatenate(self.parts["duration_ms"])
        play = np.concatenate(self.parts["play_ms"])
        edges = np.quantile(dur, [0.2, 0.8])
        q = np.quantile(ratio, [0.5, 0.9, 0.99])

        def share(mask: np.ndarray) -> float:
            return int(mask.sum()) / max(int(mask.size), 1)

        return {
            "rows": self.rows,
            "users": len(self.users),
            "items": int(self.items.size),
            "exact_duplicates": self.duplicates,
            "rewatch_rows": self.rewatches,
            "null_timestamps": self.null_timestamps,
            "sampled_every": self.stride,
            "watch_ratio_median": float(q[0]),
            "watch_ratio_p90": float(q[1]),
            "watch_ratio_p99": float(q[2]),
            "watch_ratio_max": self.max_ratio,
            "share_watch_ratio_ge_1": share(ratio >= 1),
            "positive_rate_gt_2": share(ratio > 2),
            "positive_rate_gt_2_shortest_quintile": share(ratio[dur <= edges[0]] > 2),
            "positive_rate_gt_2_longest_quintile": share(ratio[dur > edges[1]] > 2),
            "median_play_seconds": float(np.median(play) / 1000),
        }


# ==============================================================================================
# orchestration
# ==============================================================================================
def _simulate_files(out_dir: Path, prof: SimulatorProfile, profile: str, seed: int, scale: float) -> dict[str, Any]:
    # Independent streams: the world does not depend on `scale`, the logs do.
    world_ss, feed_ss, small_ss, daily_ss, side_ss = np.random.SeedSequence(seed).spawn(5)
    report_progress("world (users, videos, daily appeal)")
    world = _make_world(prof, np.random.default_rng(world_ss))
    plan = _plan_big(world, prof, scale)
    feed_rng = np.random.default_rng(feed_ss)
    traffic = pm.exp(pm.normal(feed_rng, WINDOW_DAYS.size) * 0.15)
    prior = _feed_prior(world, traffic)
    day_cdf = _day_cdf(world, traffic)
    chunk_streams = feed_ss.spawn(-(-world.n_users // prof.user_chunk))

    # Files are written by one background thread while the next chunk is drawn: the draws are
    # numpy and polars formats CSV without the GIL, so the two overlap. Chunks are written in
    # order, so the bytes do not depend on the overlap.
    big_stats = _RatioSample(stride=int(np.ceil(scale)) if scale > 1 else 1)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-writer") as writer:
        written: list[Future[None]] = []
        with _csv_appender(out_dir / RawFiles.big_matrix) as handle:
            for index, start in enumerate(range(0, world.n_users, prof.user_chunk)):
                report_progress(f"big_matrix user chunk {index + 1}/{len(chunk_streams)}")
                users = np.arange(start, min(start + prof.user_chunk, world.n_users))
                views = _big_chunk(world, plan, users, prior, day_cdf, np.random.default_rng(chunk_streams[index]))
                big_stats.add(views)
                frame = _interaction_frame(views, date_as_float=False)
                written.append(writer.submit(_append_csv, frame, handle, index == 0))
                del views, frame
                if len(written) > 2:  # at most two chunks waiting to be written
                    written.pop(0).result()
            for future in written:
                future.result()
            written.clear()

        report_progress("small_matrix and ground truth")
        small, truth = _simulate_small(world, prof, np.random.default_rng(small_ss))
        written.append(writer.submit(_write_csv, _interaction_frame(small, date_as_float=True), out_dir / RawFiles.small_matrix))
        written.append(writer.submit(write_parquet, truth, out_dir / RawFiles.ground_truth))
        small_stats = _RatioSample(stride=1)
        small_stats.add(small)
        del small

        report_progress("item_daily_features")
        daily = _item_daily(world, np.random.default_rng(daily_ss))
        written.append(writer.submit(_write_csv, daily, out_dir / RawFiles.item_daily_features))
        report_progress("side files (user_features, item_categories, social_network)")
        side_rng = np.random.default_rng(side_ss)
        _write_csv(_user_features(world, side_rng), out_dir / RawFiles.user_features)
        _write_csv(_item_categories(world), out_dir / RawFiles.item_categories)
        _write_csv(_social_network(world, prof, side_rng), out_dir / RawFiles.social_network)
        for future in written:
            future.result()  # re-raises a failed write here

    truth_mean = pm.fsum(truth[Columns.expected_watch_ratio].to_numpy()) / max(truth.height, 1)
    return {
        "profile": profile,
        "seed": int(seed),
        "scale": float(scale),
        "users": prof.n_users,
        "items": prof.n_items,
        "big_matrix": big_stats.stats(),
        "small_matrix": small_stats.stats(),
        "ground_truth_rows": truth.height,
        "ground_truth_mean_expected_watch_ratio": float(truth_mean),
        "item_daily_rows": daily.height,
    }


# ==============================================================================================
# side files
# ==============================================================================================
def _item_daily(world: _World, rng: np.random.Generator) -> pl.DataFrame:
    """Platform-wide daily counters per video from the model's expectations plus noise."""
    n_i = world.n_items
    first = np.maximum(world.upload_day, 0)
    n_rows_v = N_DAYS - first
    item = np.repeat(np.arange(n_i), n_rows_v)
    offsets = np.arange(item.size) - np.repeat(np.cumsum(n_rows_v) - n_rows_v, n_rows_v)
    day = first[item] + offsets
    n = item.size

    dur_s = world.duration_s(item)
    drift = world.drift[item, day]
    appeal = world.appeal_base[item] + drift
    # Population watch time: user bias, taste and tag effects are noise around the video's eta.
    eta = (appeal + _LOG_T0) + world.duration_term[item]
    sd = float(np.sqrt(NOISE_SD**2 + USER_BIAS_SD**2 + TASTE_SD**2 + TAG_SD**2))
    p_skip = _skip_probability(eta)

    def watched_at_least(seconds: np.ndarray) -> np.ndarray:
        return (1.0 - p_skip - LONG_SHARE) * pm.ndtr((eta - pm.log(seconds)) / sd) + LONG_SHARE

    complete_rate = watched_at_least(dur_s)
    valid_rate = watched_at_least(np.minimum(dur_s, 7.0))
    long_rate = watched_at_least(np.minimum(dur_s, 18.0))
    short_rate = 1.0 - watched_at_least(np.minimum(dur_s, 3.0))
    cap = dur_s * LOOP_CAP
    e_play = p_skip * _uniform_min_mean(*SKIP_RANGE_S, cap) + (1.0 - p_skip) * _lognormal_min_mean(eta, sd, cap)
    # play_progress: the share of the video seen, E[min(play, length)] / length.
    progress = (p_skip * _uniform_min_mean(*SKIP_RANGE_S, dur_s) + (1.0 - p_skip) * _lognormal_min_mean(eta, sd, dur_s)) / dur_s

    age = (day - world.upload_day[item]).astype(np.float64)
    weekend = ((day + 6) % 7 >= 5).astype(np.float64)  # Jul 5 2020 was a Sunday
    show_mean = pm.exp(world.pop[item] * FEED_POP + drift * FEED_DRIFT + age * -0.01) * (400.0 * (1.0 + weekend * 0.1))
    show = pm.poisson(rng, show_mean)
    play = pm.binomial(rng, show, pm.expit(drift * 1.5 + 1.0))
    boost = pm.exp(appeal)

    def binom(count: np.ndarray, p: float | np.ndarray) -> np.ndarray:
        return pm.binomial(rng, count, np.clip(p, 0.0, 1.0))

    def pois(lam: np.ndarray) -> np.ndarray:
        return pm.poisson(rng, np.maximum(lam, 0.0))

    like = pois(play * 0.03 * boost * (complete_rate + 0.3))
    click_like = binom(like, 0.55)
    cancel_like = binom(like, 0.1)
    comment = pois(play * 0.002 * boost)
    direct = binom(comment, 0.75)
    delete_comment = binom(comment, 0.05)
    comment_like = pois(play * 0.008 * boost)
    follow = pois(play * 0.004 * boost)
    share = pois(play * 0.0008 * boost)
    download = pois(play * 0.0006 * boost)
    report = pois(play * 0.00005 / boost)
    reduce_similar = pois(play * 0.001 / boost)
    collect = pois(play * 0.001 * boost)
    cancel_collect = binom(collect, 0.3)
    complete = binom(play, complete_rate)
    valid = binom(play, valid_rate)
    long_play = binom(play, long_rate)
    short_play = binom(play, short_rate)
    has_collect = day >= COLLECT_FROM_DAY

    def collect_col(values: np.ndarray) -> pl.Series:
        return pl.Series(values.astype(np.float64)).set(pl.Series(~has_collect), None)

    # Static video attributes: drawn per video from a dedicated stream, then repeated per day.
    author = rng.integers(0, max(1, int(0.7 * n_i)), n_i)
    video_type = np.where(pm.uniform(rng, n_i) < 0.995, "NORMAL", "AD")
    upload_types = np.array(["ShortImport", "ShortCamera", "PictureSet", "Kmovie", "LongImport", "LongCamera"])
    upload_type = upload_types[rng.choice(6, n_i, p=[0.38, 0.2, 0.12, 0.12, 0.13, 0.05])]
    sizes = np.array([[720, 1280], [1080, 1920], [576, 1024], [720, 720], [886, 1015], [1280, 720], [368, 640]])
    size = sizes[rng.choice(len(sizes), n_i, p=[0.55, 0.1, 0.1, 0.08, 0.05, 0.07, 0.05])]
    music = np.where(pm.uniform(rng, n_i) < 0.25, 0, rng.integers(100_000, 4_000_000_000, n_i))
    tag_ids = np.stack([rng.permutation(3_000)[:3] for _ in range(N_CATEGORY_TAGS)])  # 3 fine-grained ids per tag
    video_tag_id = tag_ids[world.tag_lists[:, 0], rng.integers(0, 3, n_i)]
    duration_known = pm.uniform(rng, n_i) >= 0.17  # the real file leaves some durations empty
    upload_dt = pl.from_epoch(
        pl.Series(DAY0_EPOCH_S * 1000 + world.upload_day * DAY_MS + UTC8_MS), time_unit="ms"
    ).dt.strftime("%Y-%m-%d")
    noise = pm.normal(rng, n)

    dur_col = pl.Series(world.duration_ms[item].astype(np.float64)).set(pl.Series(~duration_known[item]), None)
    # Rates written as floats are rounded to 6 decimals: a short exact decimal for every value.
    progress_noisy = np.where(play > 0, np.clip(progress + noise * 0.3 / np.sqrt(play + 1.0), 0.0, 1.0), 0.0)
    columns: dict[str, Any] = {
        Columns.item: item.astype(np.int32),
        Columns.date: _yyyymmdd(day),
        "author_id": author[item],
        "video_type": video_type[item],
        "upload_dt": upload_dt.gather(item),
        "upload_type": upload_type[item],
        "visible_status": np.full(n, "public"),
        Columns.video_duration: dur_col,
        "video_width": size[item, 0],
        "video_height": size[item, 1],
        "music_id": music[item],
        "video_tag_id": video_tag_id[item],
        "video_tag_name": "tag_" + pl.Series(video_tag_id[item]).cast(pl.String),
        "show_cnt": show,
        "show_user_num": binom(show, 0.8),
        "play_cnt": play,
        "play_user_num": binom(play, 0.78),
        Columns.play_duration: pois(play * e_play * 1000.0),
        "complete_play_cnt": complete,
        "complete_play_user_num": binom(complete, 0.85),
        "valid_play_cnt": valid,
        "valid_play_user_num": binom(valid, 0.87),
        "long_time_play_cnt": long_play,
        "long_time_play_user_num": binom(long_play, 0.87),
        "short_time_play_cnt": short_play,
        "short_time_play_user_num": binom(short_play, 0.8),
        "play_progress": np.rint(progress_noisy * 1e6) / 1e6,
        "comment_stay_duration": pois(play * 0.05 * boost * 20_000.0),
        "like_cnt": like,
        "like_user_num": binom(like, 0.97),
        "click_like_cnt": click_like,
        "double_click_cnt": like - click_like,
        "cancel_like_cnt": cancel_like,
        "cancel_like_user_num": binom(cancel_like, 0.95),
        "comment_cnt": comment,
        "comment_user_num": binom(comment, 0.9),
        "direct_comment_cnt": direct,
        "reply_comment_cnt": comment - direct,
        "delete_comment_cnt": delete_comment,
        "delete_comment_user_num": binom(delete_comment, 0.9),
        "comment_like_cnt": comment_like,
        "comment_like_user_num": binom(comment_like, 0.6),
        "follow_cnt": follow,
        "follow_user_num": binom(follow, 0.99),
        "cancel_follow_cnt": np.zeros(n, dtype=np.int64),
        "cancel_follow_user_num": np.zeros(n, dtype=np.int64),
        "share_cnt": share,
        "share_user_num": binom(share, 0.9),
        "download_cnt": download,
        "download_user_num": binom(download, 0.9),
        "report_cnt": report,
        "report_user_num": binom(report, 0.9),
        "reduce_similar_cnt": reduce_similar,
        "reduce_similar_user_num": binom(reduce_similar, 0.9),
        "collect_cnt": collect_col(collect),
        "collect_user_num": collect_col(binom(collect, 0.95)),
        "cancel_collect_cnt": collect_col(cancel_collect),
        "cancel_collect_user_num": collect_col(binom(cancel_collect, 0.95)),
    }
    return pl.DataFrame(columns).select(ITEM_DAILY_COLUMNS)


# Value frequencies of the real user_features.csv columns with few values ({value: count});
# None is an empty field.
_USER_CATEGORICAL: Final[dict[str, dict[int | None, int]]] = {
    "is_lowactive_period": {0: 7173, 1: 3},
    "is_live_streamer": {0: 7127, 1: 49},
    "is_video_author": {0: 5959, 1: 1217},
    "onehot_feat0": {0: 4361, 1: 2815},
    "onehot_feat1": {1: 3082, 4: 1096, 3: 949, 6: 825, 2: 736, 5: 483, 0: 3, 7: 2},
    "onehot_feat4": {1: 3257, 0: 2055, 2: 1195, 3: 314, None: 201, 4: 78, 5: 44, 6: 20, 7: 8, 8: 1, 9: 1, 11: 1},
    "onehot_feat5": {0: 7160, 6: 5, 8: 2, 3: 2, 5: 2, 9: 1, 2: 1, 4: 1, 7: 1, 1: 1},
    "onehot_feat6": {1: 4040, 0: 3120, 2: 16},
    "onehot_feat9": {6: 1728, 3: 1352, 5: 1250, 4: 1138, 1: 1108, 2: 582, 0: 18},
    "onehot_feat10": {2: 3761, 3: 1682, 4: 920, 0: 812, 1: 1},
    "onehot_feat11": {0: 6665, 2: 473, 1: 38},
    "onehot_feat12": {0: 4978, 1: 2121, None: 77},
    "onehot_feat13": {0: 6358, 1: 743, None: 75},
    "onehot_feat14": {0: 6428, 1: 673, None: 75},
    "onehot_feat15": {0: 6970, 1: 132, None: 74},
    "onehot_feat16": {0: 6975, 1: 127, None: 74},
    "onehot_feat17": {0: 6999, 1: 103, None: 74},
}
# Many-valued columns: value range 0..n-1 with a Zipf-like popularity over a shuffled order.
_USER_MANY_VALUED: Final[dict[str, int]] = {
    "onehot_feat2": 30, "onehot_feat3": 1076, "onehot_feat7": 47, "onehot_feat8": 340
}  # fmt: skip
_FOLLOW_RANGES: Final = ((0, "0"), (10, "(0,10]"), (50, "(10,50]"), (100, "(50,100]"), (150, "(100,150]"),
                         (250, "(150,250]"), (500, "(250,500]"), (None, "500+"))  # fmt: skip
_FANS_RANGES: Final = ((0, "0"), (9, "[1,10)"), (99, "[10,100)"), (999, "[100,1k)"), (4999, "[1k,5k)"),
                       (9999, "[5k,1w)"), (99_999, "[1w,10w)"), (None, "10w+"))  # fmt: skip
_FRIEND_RANGES: Final = ((0, "0"), (4, "[1,5)"), (29, "[5,30)"), (59, "[30,60)"), (119, "[60,120)"),
                         (249, "[120,250)"), (None, "250+"))  # fmt: skip
_REGISTER_RANGES: Final = ((14, "0-14"), (30, "15-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"),
                           (365, "181-365"), (730, "366-730"), (None, "730+"))  # fmt: skip


def _lognormal(rng: np.random.Generator, median: float, sd: float, n: int) -> np.ndarray:
    return pm.exp(pm.normal(rng, n) * sd + float(pm.log(np.array([median]))[0]))


def _range_label(
    values: np.ndarray, ranges: tuple[tuple[int | None, str], ...], rng: np.random.Generator
) -> np.ndarray:
    """Bucket labels from a slightly different snapshot of the value (as in the real file)."""
    changed = pm.uniform(rng, values.size) < 0.1
    snapshot = np.where(changed, np.rint(values * _lognormal(rng, 1.0, 0.4, values.size)), values)
    uppers = np.array([u for u, _ in ranges[:-1]])
    labels = np.array([label for _, label in ranges])
    return labels[np.searchsorted(uppers, snapshot, side="left")]


def _draw_table(table: dict[int | None, int], n: int, rng: np.random.Generator) -> pl.Series:
    values = list(table)
    p = np.array([table[v] for v in values], dtype=np.float64)
    idx = np.searchsorted(np.cumsum(p) / p.sum(), pm.uniform(rng, n), side="right")
    codes = np.array([-1 if v is None else v for v in values])[idx]
    return pl.Series(codes, dtype=pl.Int64).set(pl.Series(codes == -1), None)


def _user_features(world: _World, rng: np.random.Generator) -> pl.DataFrame:
    n = world.n_users
    # Activity drives the degree: the least active are middle/high_active, a few are UNKNOWN.
    rank = np.argsort(np.argsort(world.activity, kind="stable"), kind="stable") / max(n - 1, 1)
    degree = np.where(
        rank < 28 / 7176, "middle_active", np.where(rank < (28 + 938) / 7176, "high_active", "full_active")
    )
    degree = np.where(pm.uniform(rng, n) < 118 / 7176, "UNKNOWN", degree)
    follow = np.minimum(np.floor(_lognormal(rng, 33.0, 1.9, n)), 2100).astype(np.int64)
    follow[pm.uniform(rng, n) < 0.002] = 0
    fans = np.where(pm.uniform(rng, n) < 0.3, 0, np.floor(_lognormal(rng, 4.0, 1.3, n))).astype(np.int64)
    friends = np.where(pm.uniform(rng, n) < 0.6, 0, np.ceil(_lognormal(rng, 2.0, 1.1, n))).astype(np.int64)
    register = np.clip(np.rint(_lognormal(rng, 240.0, 0.75, n)), 15, 2245).astype(np.int64)
    columns: dict[str, Any] = {
        Columns.user: np.arange(n, dtype=np.int32),
        Columns.user_active_degree: degree,
        "follow_user_num": follow,
        "follow_user_num_range": _range_label(follow, _FOLLOW_RANGES, rng),
        "fans_user_num": fans,
        "fans_user_num_range": _range_label(fans, _FANS_RANGES, rng),
        "friend_user_num": friends,
        "friend_user_num_range": _range_label(friends, _FRIEND_RANGES, rng),
        "register_days": register,
        "register_days_range": _range_label(register, _REGISTER_RANGES, rng),
    }
    for name, table in _USER_CATEGORICAL.items():
        columns[name] = _draw_table(table, n, rng)
    for name, n_values in _USER_MANY_VALUED.items():
        p = 1.0 / pm.exp(pm.log(np.arange(1, n_values + 1, dtype=np.float64)) * 0.8)
        order = rng.permutation(n_values)
        columns[name] = order[np.searchsorted(np.cumsum(p) / p.sum(), pm.uniform(rng, n), side="right")].astype(np.int64)
    return pl.DataFrame(columns).select(USER_FEATURE_COLUMNS)


def _item_categories(world: _World) -> pl.DataFrame:
    tags = pl.Series(world.tag_lists.astype(np.int64).tolist(), dtype=pl.List(pl.Int64))
    feat = tags.list.eval(pl.element().filter(pl.element() >= 0).cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.item: np.arange(world.n_items, dtype=np.int32), Columns.feat: "[" + feat + "]"}
    ).select(ITEM_CATEGORY_COLUMNS)


def _social_network(world: _World, prof: SimulatorProfile, rng: np.random.Generator) -> pl.DataFrame:
    """A small symmetric friendship graph among a few users (KuaiRec lists 472, 1.42 friends on average, at most 5)."""
    n_social = min(world.n_users, max(2, round(prof.social_share * world.n_users)))
    members = np.sort(rng.permutation(world.n_users)[:n_social])
    # Everyone listed has a friend: a random pairing of the members (a triple if their number is
    # odd), plus a few extra friendships, for ~1.4 friends on average.
    order = rng.permutation(n_social)
    src = order[0 : n_social - 1 : 2]
    dst = order[1:n_social:2]
    if n_social % 2:
        src, dst = np.append(src, order[-1]), np.append(dst, order[0])
    extra = round(0.2 * n_social)
    extra_src = rng.integers(0, n_social, extra)
    extra_dst = (extra_src + rng.integers(1, n_social, extra)) % n_social  # never oneself
    src, dst = np.concatenate([src, extra_src]), np.concatenate([dst, extra_dst])
    edges = pl.DataFrame(
        {"a": members[np.concatenate([src, dst])], "b": members[np.concatenate([dst, src])]}
    ).unique(maintain_order=True)
    grouped = edges.group_by("a", maintain_order=True).agg(pl.col("b")).sort("a")
    friend_lists = grouped["b"].list.eval(pl.element().cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.user: grouped["a"].cast(pl.Int32), Columns.friend_list: "[" + friend_lists + "]"}
    ).select(SOCIAL_NETWORK_COLUMNS)
