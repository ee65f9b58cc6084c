"""The simulator's world and viewing mechanics, shared by both generative stories.

Profiles, the calendar, the users and videos of :func:`_make_world` (activity, taste vectors, tags,
lengths, upload dates, the fully observed block), the per-view watch-time law (skip, long session,
log-normal body, loop cap) with its exact expectation and label probability, and the default story,
``latent_drift``, which places a view's log seconds at a user bias plus a drifting appeal plus taste.
See docs/simulator.md and docs/design/data.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from reco import portable_math as pm
from reco.errors import ParamsError
from reco.schema import N_CATEGORY_TAGS


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
# the watch-time law
# ==============================================================================================
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
    author: np.ndarray | None = None  # i64 (items,): the story's authors (None: drawn as a side attribute)

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


def _day_rhythm_ms(n: int, rng: np.random.Generator) -> np.ndarray:
    """Milliseconds since local midnight, following the daily rhythm."""
    cum = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
    hour = np.searchsorted(cum, pm.uniform(rng, n), side="right")
    return hour * 3_600_000 + rng.integers(0, 3_600_000, n)


def _user_time_order(user: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Row order by user, then time, ties in input order (one int64 key, stable sort)."""
    offset = ts_ms - DAY0_EPOCH_S * 1000  # < 63 days < 2**33 ms
    return np.argsort(user.astype(np.int64) * (1 << 33) + offset, kind="stable")


# ==============================================================================================
# stories: how a view's location (eta) and skip shift are formed
# ==============================================================================================
class Story(Protocol):
    """A generative story: where a view sits in the shared watch-time law.

    ``location`` gives each view's ``eta`` (log-seconds location of the normal part of the watch-time
    law) and ``skip_shift`` (added to the skip logit) from its user, video, day, epoch time (ms) and the
    pair's taste + tag term ``inter``; ``position`` is the view's 0-based place in its session (None:
    derived from the users' times among the given views). ``enjoyment`` weighs a user's watched videos
    for re-watches; ``times`` draws the epoch milliseconds of views on the given days. ``bind`` draws
    the story's own parameters for a world (from its own stream, so the world and the other stories'
    draws do not change); ``author`` is the video's author id when the story has authors (None:
    ``author_id`` is a side attribute).
    """

    name: str
    author: np.ndarray | None

    def bind(self, world: _World, rng: np.random.Generator) -> Story: ...

    def times(self, user: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def location(
        self,
        world: _World,
        user: np.ndarray,
        item: np.ndarray,
        day: np.ndarray,
        ts_ms: np.ndarray,
        inter: np.ndarray,
        position: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def enjoyment(
        self, world: _World, user: np.ndarray, item: np.ndarray, day: np.ndarray, inter: np.ndarray
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class LatentDrift:
    """The default story: log seconds = log T0 + user bias + appeal + daily drift + taste + tags + g(length)."""

    name: str = "latent_drift"
    author: np.ndarray | None = None

    def bind(self, world: _World, rng: np.random.Generator) -> LatentDrift:
        """This story has no parameters of its own beyond the world's: itself, nothing drawn."""
        return self

    def times(self, user: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each view at its own time of day, following the daily rhythm."""
        return (DAY0_EPOCH_S * 1000 + day * DAY_MS + _day_rhythm_ms(day.size, rng)).astype(np.int64)

    def location(
        self,
        world: _World,
        user: np.ndarray,
        item: np.ndarray,
        day: np.ndarray,
        ts_ms: np.ndarray,
        inter: np.ndarray,
        position: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return _eta(world, user, item, day, inter), world.skip_shift[user]

    def enjoyment(
        self, world: _World, user: np.ndarray, item: np.ndarray, day: np.ndarray, inter: np.ndarray
    ) -> np.ndarray:
        return pm.exp((_eta(world, user, item, day, inter) - _LOG_T0) * REWATCH_ENJOYMENT)


def pair_interaction(world: _World, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Taste + tag term of each (user, item) pair, row by row; the same values as :meth:`_World.interaction`.

    Every product and partial sum is an integer below 2**53, so the sums are exact in any order.
    """
    taste = np.einsum("ij,ij->i", world.theta_q[user], world.phi_q[item]) * world.taste_scale
    tag_sum = np.einsum("ij,ij->i", world.tag_aff_q[user], world.tag_incidence[item])
    tag = (tag_sum / world.n_tags[item]) * world.tag_scale
    return taste + tag
