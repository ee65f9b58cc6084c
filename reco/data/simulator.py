"""KuaiRec 2.0 simulator: writes the official files from a latent-factor model with known truth.

The simulator lets the pipeline run offline and lets the evaluation report an oracle ceiling.
It writes ``big_matrix.csv``, ``small_matrix.csv``, ``user_features.csv``,
``item_categories.csv``, ``item_daily_features.csv`` and ``social_network.csv`` with the exact
names, column order and text formats of KuaiRec 2.0, plus ``simulator_ground_truth.parquet``:
the model's expected watch ratio of every cell of the fully observed test grid.

Generative story
----------------
* Users have an activity level (log-normal: number of views, ``user_active_degree``), a watch
  bias, a latent taste vector and a Dirichlet preference over the 31 category tags.
* Videos have 1-4 tags, a latent vector, a duration (log-normal mixture: a bulk around 9 s, a
  tail of minute-long videos and a few 1-5 s loops), a feed popularity, an appeal correlated
  with that popularity (but not equal to it) that drifts day by day (AR(1) plus a novelty boost
  after upload) and an upload date.
* A view lasts ``T = exp(eta + noise)`` seconds with
  ``eta = log(7.5) + user bias + appeal(day) + taste . latent + tag affinity + 0.1 log(D / 9 s)``;
  a share of views are quick skips (less likely when ``eta`` is high). A viewer who reaches
  the end keeps looping with a probability that falls with the duration ``D`` (short clips
  loop, long videos stop at their end). ``watch_ratio = play_duration / video_duration``, so
  the duration effect emerges: people watch a similar number of seconds whatever the length.
* ``big_matrix``: each user's views are drawn without replacement by a feed policy (Gumbel
  top-k over popularity, half of the taste dimensions and the tag affinity, discounted for
  videos uploaded late), on days within the three collection windows (weighted by traffic and
  the video's daily appeal) with a daily rhythm; then ~7.7% of rows are re-logged as exact
  duplicates. ``small_matrix``: the most active users x popular videos, each cell viewed
  once at a random time, ~0.4% of cells missing and ~3.9% with null time fields.
* ``item_daily_features``: platform-wide counters per video and day from the same model
  (expected counts plus Poisson/binomial noise); they never use ``small_matrix`` outcomes.

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

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl
from scipy.special import expit, ndtr

from reco.errors import ParamsError
from reco.io import atomic_path, write_parquet
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

__all__ = ["PROFILES", "SimulatorProfile", "expected_watch_ratio", "simulate"]


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
    duplicate_share, small_missing_share, small_null_time_share
        Shares of re-logged duplicate rows (big), missing grid cells and rows with null
        time fields (small); defaults are KuaiRec's published counts.
    social_share
        Share of users listed in ``social_network.csv``.
    user_chunk
        Users simulated at once (bounds memory: ``user_chunk x n_items`` float32 scores).
    """

    n_users: int
    n_items: int
    n_small_users: int
    n_small_items: int
    n_big_rows: int
    duplicate_share: float = 968_004 / 12_530_806
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

# --- watch model ----------------------------------------------------------------------------
N_FACTORS: Final = 16
LOG_BASE_WATCH: Final = float(np.log(7.5))  # seconds: the typical watch whatever the length
USER_BIAS_SD: Final = 0.2
APPEAL_SD: Final = 0.2
APPEAL_POP_CORR: Final = 0.5  # appeal vs feed popularity: related, not the same
DRIFT_SD: Final = 0.12  # stationary sd of the daily appeal drift
DRIFT_AR: Final = 0.93
NOVELTY_BOOST: Final = 0.1  # extra appeal right after upload, decaying over ~10 days
TASTE_SD: Final = 0.35  # sd of the user x video latent interaction
TAG_SD: Final = 0.18  # sd of the user x tag affinity effect
DURATION_ELASTICITY: Final = 0.1  # watch seconds grow only slightly with length
NOISE_SD: Final = 0.35
SKIP_BASE: Final = -1.05  # logit of a quick skip at an average eta
SKIP_SLOPE: Final = 1.5
SKIP_RANGE_S: Final = (0.2, 1.6)
LOOP_PIVOT_S: Final = 7.0  # videos shorter than this are mostly replayed on reaching the end
LOOP_SLOPE: Final = 2.5
END_JITTER: Final = 0.02  # viewers who stop at the end are logged up to 2% past it
MAX_WATCH_S: Final = 600.0
# --- feed policy ---------------------------------------------------------------------------
FEED_POP: Final = 0.8
FEED_TASTE: Final = 0.4  # weight on the half of the taste dimensions the feed can see
FEED_TAG: Final = 0.3
FEED_DRIFT: Final = 0.3  # on which window days a chosen video is shown
FRESH_APPEAL_PENALTY: Final = 0.3  # videos uploaded during the logs are on average less appealing
SMALL_APPEAL_WEIGHT: Final = 3.0  # small-matrix videos are chosen by popularity and appeal
# --- side data -----------------------------------------------------------------------------
PRE_PERIOD_SHARE: Final = 0.42  # videos uploaded before the logs; the rest during them
# Real item_categories tag frequencies (counts of each tag 0..30), used as sampling weights.
TAG_FREQ: Final = np.array(
    [24, 463, 216, 104, 164, 964, 912, 503, 1112, 696, 170, 2027, 534, 245, 63, 374,
     214, 350, 131, 686, 265, 29, 20, 39, 12, 468, 490, 31, 1360, 5, 22], dtype=np.float64,
)  # fmt: skip
N_TAGS_P: Final = np.array([8970, 1562, 185, 11], dtype=np.float64)  # videos with 1..4 tags


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
        ``"tiny"`` (tests, ~1 s), ``"small"`` or ``"full"`` (KuaiRec's published shape).
    seed
        Seed of every random draw: the same seed gives byte-identical files.
    scale
        Multiplies the number of logged views in ``big_matrix`` (users and videos stay the
        same, and so does the simulated world: only the logs change).

    Returns
    -------
    dict
        Summary statistics: row counts, duplicates, null timestamps, watch-ratio quantiles,
        positive rates, item_daily rows. Deterministic (no timings), so it can go into a manifest.

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

    # BLAS sums in a thread-count-dependent order, and a last-bit difference can move a rounded
    # play duration: one BLAS thread gives the same files however the caller's BLAS is set up
    # (the stages already pin OPENBLAS_NUM_THREADS=1; a notebook or a test may not).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate_files(out_dir, prof, profile, int(seed), float(scale))


def _simulate_files(out_dir: Path, prof: SimulatorProfile, profile: str, seed: int, scale: float) -> dict[str, Any]:
    # Independent streams: the world does not depend on `scale`, the logs do.
    world_ss, feed_ss, small_ss, daily_ss, side_ss = np.random.SeedSequence(seed).spawn(5)
    world = _make_world(prof, np.random.default_rng(world_ss))

    # Files are written by one background thread while the next table is drawn: the draws are
    # single-threaded numpy and polars formats CSV without the GIL, so the two overlap on 2 cores
    # (full profile: ~17 s -> ~15.5 s). Every file's bytes are the same as when written in line.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-writer") as writer:
        written: list[Future[None]] = []
        big = _simulate_big(world, prof, scale, np.random.default_rng(feed_ss))
        written.append(writer.submit(_write_csv, _interaction_frame(big, date_as_float=False), out_dir / RawFiles.big_matrix))
        big_stats = _interaction_stats(big, world)
        del big

        small, truth = _simulate_small(world, prof, np.random.default_rng(small_ss))
        written.append(writer.submit(_write_csv, _interaction_frame(small, date_as_float=True), out_dir / RawFiles.small_matrix))
        written.append(writer.submit(write_parquet, truth, out_dir / RawFiles.ground_truth))
        small_stats = _interaction_stats(small, world)
        del small

        daily = _item_daily(world, np.random.default_rng(daily_ss))
        written.append(writer.submit(_write_csv, daily, out_dir / RawFiles.item_daily_features))
        side_rng = np.random.default_rng(side_ss)
        _write_csv(_user_features(world, side_rng), out_dir / RawFiles.user_features)
        _write_csv(_item_categories(world), out_dir / RawFiles.item_categories)
        _write_csv(_social_network(world, prof, side_rng), out_dir / RawFiles.social_network)
        for future in written:
            future.result()  # re-raises a failed write here

    return {
        "profile": profile,
        "seed": int(seed),
        "scale": float(scale),
        "users": prof.n_users,
        "items": prof.n_items,
        "big_matrix": big_stats,
        "small_matrix": small_stats,
        "ground_truth_rows": truth.height,
        "ground_truth_mean_expected_watch_ratio": float(truth[Columns.expected_watch_ratio].mean()),
        "item_daily_rows": daily.height,
    }


def expected_watch_ratio(eta: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """Expected watch ratio of a view under the model, given ``eta`` and the duration.

    ``eta`` is the log-seconds location of the watch time (all effects but the noise).
    The expectation covers the skip mixture, the log-normal noise and the loop-or-stop
    choice at the end (the 600 s cap is ignored: its probability is negligible).

    Examples
    --------
    >>> r = expected_watch_ratio(np.array([np.log(7.5)] * 2), np.array([3.0, 60.0]))
    >>> bool(r[0] > 1 > r[1])
    True
    """
    eta = np.asarray(eta, dtype=np.float64)
    dur = np.asarray(duration_s, dtype=np.float64)
    p_skip = _skip_probability(eta)
    e_skip = _uniform_min_mean(SKIP_RANGE_S[0], SKIP_RANGE_S[1], dur)
    e_normal = _lognormal_play_mean(eta, NOISE_SD, dur)
    return (p_skip * e_skip + (1.0 - p_skip) * e_normal) / dur


# ==============================================================================================
# the world: users, videos and their latent parameters
# ==============================================================================================
@dataclass
class _World:
    n_users: int
    n_items: int
    activity: np.ndarray  # f64 (users,)
    user_bias: np.ndarray  # f32 (users,)
    theta: np.ndarray  # f32 (users, F), scaled so that theta . phi has sd TASTE_SD
    tag_aff: np.ndarray  # f32 (users, 31), scaled so that the tag effect has sd TAG_SD
    tag_lists: np.ndarray  # i16 (items, 4), -1 padded
    tag_matrix: np.ndarray  # f32 (items, 31), each row sums to 1
    duration_ms: np.ndarray  # i64 (items,)
    pop: np.ndarray  # f32 (items,) feed popularity (z-score)
    phi: np.ndarray  # f32 (items, F)
    appeal_base: np.ndarray  # f32 (items,)
    drift: np.ndarray  # f32 (items, N_DAYS): AR(1) drift plus novelty boost
    upload_day: np.ndarray  # i64 (items,), day offset from 2020-07-05 (negative: before)
    small_users: np.ndarray  # i64 sorted
    small_items: np.ndarray  # i64 sorted

    def duration_s(self, items: np.ndarray) -> np.ndarray:
        return self.duration_ms[items] / 1000.0


def _profile(name: str) -> SimulatorProfile:
    if name not in PROFILES:
        raise ParamsError(
            f"params.yaml: data.profile = {name!r} is invalid; expected one of {', '.join(map(repr, PROFILES))}"
        )
    return PROFILES[name]


def _make_world(prof: SimulatorProfile, rng: np.random.Generator) -> _World:
    n_u, n_i = prof.n_users, prof.n_items
    activity = rng.lognormal(0.0, 0.6, n_u)
    user_bias = (USER_BIAS_SD * (0.2 * _z(np.log(activity)) + np.sqrt(1 - 0.04) * rng.standard_normal(n_u))).astype(
        np.float32
    )
    # Taste factors with decaying importance, so a few dimensions carry most of the signal.
    weights = np.sqrt(np.linspace(1.6, 0.4, N_FACTORS))
    theta = rng.standard_normal((n_u, N_FACTORS)) * weights
    phi = rng.standard_normal((n_i, N_FACTORS)) * weights
    norm = np.sqrt(np.sum(weights**4))  # sd of theta . phi
    theta = (theta * (TASTE_SD / norm)).astype(np.float32)
    phi = phi.astype(np.float32)

    # Tags: 1-4 distinct tags drawn by Gumbel top-k with the real frequencies.
    n_tags = rng.choice(4, size=n_i, p=N_TAGS_P / N_TAGS_P.sum()) + 1
    keys = np.log(TAG_FREQ)[None, :] + rng.gumbel(size=(n_i, N_CATEGORY_TAGS))
    top = np.argsort(-keys, axis=1)[:, :4].astype(np.int16)
    tag_lists = np.where(np.arange(4)[None, :] < n_tags[:, None], top, -1).astype(np.int16)
    tag_matrix = np.zeros((n_i, N_CATEGORY_TAGS), dtype=np.float32)
    rows = np.repeat(np.arange(n_i), 4)
    flat = tag_lists.ravel()
    ok = flat >= 0
    tag_matrix[rows[ok], flat[ok]] = 1.0
    tag_matrix /= tag_matrix.sum(axis=1, keepdims=True)
    # User tag preference: Dirichlet around the platform mix; affinity = log lift over it.
    base = TAG_FREQ / TAG_FREQ.sum()
    pref = rng.dirichlet(base * 8.0, size=n_u)
    lift = np.log(pref / base[None, :] + 0.3)
    lift -= (lift * base[None, :]).sum(axis=1, keepdims=True)
    sample_u = rng.integers(0, n_u, 20_000)
    sample_i = rng.integers(0, n_i, 20_000)
    raw = np.einsum("ij,ij->i", lift[sample_u], tag_matrix[sample_i])
    tag_aff = (lift * (TAG_SD / raw.std())).astype(np.float32)

    # Duration: bulk around 9 s, a tail of longer videos, a few short loops (ms, >= 1 s).
    kind = rng.choice(3, size=n_i, p=[0.89, 0.09, 0.02])
    dur_s = np.where(
        kind == 0,
        rng.lognormal(np.log(9.0), 0.25, n_i),
        np.where(kind == 1, rng.lognormal(np.log(25.0), 0.8, n_i), rng.uniform(1.5, 5.0, n_i)),
    )
    duration_ms = np.clip(np.round(dur_s * 1000), 1000, 600_000).astype(np.int64)

    pop = _z(rng.standard_normal(n_i)).astype(np.float32)
    appeal_base = (
        APPEAL_SD * (APPEAL_POP_CORR * pop + np.sqrt(1 - APPEAL_POP_CORR**2) * rng.standard_normal(n_i))
    ).astype(np.float32)

    # Upload dates: a third before the logs (the pool of small-matrix videos), the rest during
    # them, skewed late so that the item_daily row count resembles the real 343k.
    n_pre = min(n_i, max(round(PRE_PERIOD_SHARE * n_i), int(np.ceil(1.05 * prof.n_small_items))))
    pre = np.zeros(n_i, dtype=bool)
    pre[rng.choice(n_i, n_pre, replace=False)] = True
    upload_day = np.where(
        pre,
        -rng.integers(1, 120, n_i),
        np.minimum((rng.beta(5.0, 1.0, n_i) * N_DAYS).astype(np.int64), N_DAYS - 1),
    ).astype(np.int64)
    # Survivorship: older videos still in circulation are the good ones; fresh uploads are mixed.
    appeal_base = np.where(pre, appeal_base, appeal_base - FRESH_APPEAL_PENALTY).astype(np.float32)

    # Daily drift: stationary AR(1) plus a novelty boost that decays after upload.
    eps = rng.standard_normal((n_i, N_DAYS)) * (DRIFT_SD * np.sqrt(1 - DRIFT_AR**2))
    eps[:, 0] = rng.standard_normal(n_i) * DRIFT_SD
    drift = np.empty((n_i, N_DAYS), dtype=np.float64)
    drift[:, 0] = eps[:, 0]
    for d in range(1, N_DAYS):  # 63 vectorised steps over all videos
        drift[:, d] = DRIFT_AR * drift[:, d - 1] + eps[:, d]
    age = np.arange(N_DAYS)[None, :] - upload_day[:, None]
    drift += np.where(age >= 0, NOVELTY_BOOST * np.exp(-np.maximum(age, 0) / 10.0), 0.0)

    small_users = np.sort(np.argsort(-activity, kind="stable")[: prof.n_small_users])
    pre_ids = np.flatnonzero(pre)
    # "Popular" as the platform sees it: exposure plus quality (appeal), among older videos.
    popular = pop + SMALL_APPEAL_WEIGHT * appeal_base / APPEAL_SD
    small_items = np.sort(pre_ids[np.argsort(-popular[pre_ids], kind="stable")[: prof.n_small_items]])

    return _World(
        n_users=n_u,
        n_items=n_i,
        activity=activity,
        user_bias=user_bias,
        theta=theta,
        tag_aff=tag_aff,
        tag_lists=tag_lists,
        tag_matrix=tag_matrix,
        duration_ms=duration_ms,
        pop=pop,
        phi=phi,
        appeal_base=appeal_base,
        drift=drift.astype(np.float32),
        upload_day=upload_day,
        small_users=small_users,
        small_items=small_items,
    )


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


# ==============================================================================================
# views
# ==============================================================================================
def _eta(world: _World, users: np.ndarray, items: np.ndarray, days: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """Log-seconds location of a view; ``inter`` is taste . latent + tag affinity of the pair."""
    return (
        LOG_BASE_WATCH
        + world.user_bias[users]
        + world.appeal_base[items]
        + world.drift[items, days]
        + inter
        + DURATION_ELASTICITY * np.log(world.duration_s(items) / 9.0)
    ).astype(np.float64)


def _skip_probability(eta: np.ndarray) -> np.ndarray:
    return expit(SKIP_BASE - SKIP_SLOPE * (eta - LOG_BASE_WATCH))


def _loop_probability(dur_s: np.ndarray) -> np.ndarray:
    return expit(LOOP_SLOPE * (np.log(LOOP_PIVOT_S) - np.log(dur_s)))


def _uniform_min_mean(a: float, b: float, d: np.ndarray) -> np.ndarray:
    """E[min(U, d)] for U ~ Uniform(a, b)."""
    inside = ((d * d - a * a) / 2 + d * (b - d)) / (b - a)
    return np.where(d <= a, d, np.where(d >= b, (a + b) / 2, inside))


def _lognormal_play_mean(eta: np.ndarray, sd: float | np.ndarray, dur: np.ndarray) -> np.ndarray:
    """E[play] when T ~ LogNormal(eta, sd): min(T, D) plus the overshoot of those who loop."""
    log_d = np.log(dur)
    mean_t = np.exp(eta + 0.5 * sd * sd)
    over = mean_t * ndtr((eta + sd * sd - log_d) / sd) - dur * ndtr((eta - log_d) / sd)  # E[(T-D)+]
    p_end = ndtr((eta - log_d) / sd)
    loop = _loop_probability(dur)
    return (mean_t - over) + loop * over + (1 - loop) * p_end * dur * (END_JITTER / 2)


def _sample_play_ms(eta: np.ndarray, duration_ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw milliseconds played for views with location ``eta`` (see :func:`expected_watch_ratio`)."""
    n = eta.shape[0]
    dur = duration_ms / 1000.0
    skip = rng.random(n) < _skip_probability(eta)
    watch = np.exp(eta + NOISE_SD * rng.standard_normal(n))
    watch = np.where(skip, np.minimum(rng.uniform(*SKIP_RANGE_S, n), dur), np.minimum(watch, MAX_WATCH_S))
    reached_end = watch > dur
    loops = rng.random(n) < _loop_probability(dur)
    stop_at_end = dur * (1 + END_JITTER * rng.random(n))
    play = np.where(reached_end & ~loops & ~skip, stop_at_end, watch)
    return np.floor(play * 1000).astype(np.int64)


def _day_rhythm_ms(n: int, rng: np.random.Generator) -> np.ndarray:
    """Milliseconds since local midnight, following the daily rhythm."""
    cum = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
    hour = np.searchsorted(cum, rng.random(n), side="right")
    return hour * 3_600_000 + rng.integers(0, 3_600_000, n)


def _views_per_user(world: _World, n_views: int) -> np.ndarray:
    """Split ``n_views`` over users in proportion to activity, each within [1, 80% of items]."""
    cap = max(1, int(0.8 * world.n_items))
    n_views = min(n_views, cap * world.n_users)
    weights = world.activity / world.activity.sum()
    counts = np.zeros(world.n_users, dtype=np.int64)
    free = np.ones(world.n_users, dtype=bool)
    remaining = n_views
    for _ in range(20):  # a few vectorised rounds: redistribute what the capped users could not take
        share = weights * free
        share = share / share.sum() * remaining
        add = np.floor(share).astype(np.int64)
        # largest remainders get the leftover views, so the total is exact
        left = remaining - add.sum()
        order = np.argsort(-(share - add), kind="stable")[:left]
        add[order] += 1
        counts = np.minimum(counts + add, cap)
        remaining = n_views - counts.sum()
        free = counts < cap
        if remaining == 0:
            break
    return np.maximum(counts, 1)


def _simulate_big(
    world: _World, prof: SimulatorProfile, scale: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n_total = max(1, round(prof.n_big_rows * scale))
    n_dup = round(n_total * prof.duplicate_share)
    counts = _views_per_user(world, n_total - n_dup)
    n_unique = int(counts.sum())
    n_dup = n_total - n_unique

    # Day weights per video over the window days: traffic x appeal drift, zero before upload.
    traffic = np.exp(0.15 * rng.standard_normal(WINDOW_DAYS.size))
    day_w = traffic[None, :] * np.exp(FEED_DRIFT * world.drift[:, WINDOW_DAYS].astype(np.float64))
    day_w *= WINDOW_DAYS[None, :] >= world.upload_day[:, None]
    available = day_w.sum(axis=1)
    day_cum = np.cumsum(day_w, axis=1) / available[:, None]
    # Feed prior per video: popularity, discounted by the share of window traffic it can get.
    avail_share = (traffic[None, :] * (WINDOW_DAYS[None, :] >= world.upload_day[:, None])).sum(1) / traffic.sum()
    prior = (FEED_POP * world.pop + np.log(np.maximum(avail_share, 1e-9))).astype(np.float32)
    half = N_FACTORS // 2
    phi_seen = np.ascontiguousarray(world.phi[:, :half])

    users_out, items_out, inter_out = [], [], []
    for start in range(0, world.n_users, prof.user_chunk):
        users = np.arange(start, min(start + prof.user_chunk, world.n_users))
        k = counts[users]
        taste_seen = world.theta[users, :half] @ phi_seen.T
        tag = world.tag_aff[users] @ world.tag_matrix.T
        logits = prior[None, :] + (FEED_TASTE / TASTE_SD) * taste_seen + (FEED_TAG / TAG_SD) * tag
        # Gumbel top-k: the k largest of logits + Gumbel noise are a draw without replacement.
        expo = rng.standard_exponential(logits.shape, dtype=np.float32)
        np.maximum(expo, np.float32(1e-30), out=expo)  # float32 draws can be exactly 0
        keys = logits - np.log(expo)
        chosen = _top_k_rows(keys, k)
        rows, cols = np.nonzero(chosen)
        u = users[rows]
        full_inter = world.theta[users] @ world.phi.T + tag
        users_out.append(u.astype(np.int32))
        items_out.append(cols.astype(np.int32))
        inter_out.append(full_inter[rows, cols])
    user = np.concatenate(users_out)
    item = np.concatenate(items_out)
    inter = np.concatenate(inter_out)
    del users_out, items_out, inter_out

    # Which window day each view happens on (inverse CDF over the video's day weights).
    # One searchsorted over all videos' CDFs laid end to end (offset by the video id).
    n_wd = WINDOW_DAYS.size
    day_cum[:, -1] = 1.0
    flat_cdf = (day_cum + np.arange(world.n_items)[:, None]).ravel()
    pos = np.searchsorted(flat_cdf, item + rng.random(user.size), side="right")
    day = WINDOW_DAYS[np.minimum(pos - item.astype(np.int64) * n_wd, n_wd - 1)]
    ts_ms = (DAY0_EPOCH_S * 1000 + day * DAY_MS + _day_rhythm_ms(user.size, rng)).astype(np.int64)
    eta = _eta(world, user, item, day, inter)
    play_ms = _sample_play_ms(eta, world.duration_ms[item], rng)

    order = _user_time_order(user, ts_ms)
    dup = np.zeros(n_unique, dtype=np.int64)
    dup[rng.choice(n_unique, n_dup, replace=False)] = 1
    reps = 1 + dup  # a re-logged row sits right after its original
    return {
        "user": np.repeat(user[order], reps),
        "item": np.repeat(item[order], reps),
        "play_ms": np.repeat(play_ms[order], reps),
        "ts_ms": np.repeat(ts_ms[order], reps),
        "duration_ms": np.repeat(world.duration_ms[item[order]], reps),
        "null_time": np.zeros(n_total, dtype=bool),
        "n_duplicates": np.int64(n_dup),
    }


def _user_time_order(user: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Row order by user, then time (one int64 key: faster than a two-key lexsort)."""
    offset = ts_ms - DAY0_EPOCH_S * 1000  # < 63 days < 2**33 ms
    return np.argsort(user.astype(np.int64) * (1 << 33) + offset)


def _top_k_rows(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``k[r]`` largest entries of each row of ``keys``."""
    n_rows, n_cols = keys.shape
    k = np.minimum(k, n_cols)
    k_lo, k_hi = int(k.min()), int(k.max())
    mask = np.zeros(keys.shape, dtype=bool)
    part = np.argpartition(-keys, [k_lo - 1, k_hi - 1] if k_hi > k_lo else [k_hi - 1], axis=1)
    rows = np.arange(n_rows)[:, None]
    mask[rows, part[:, :k_lo]] = True
    if k_hi > k_lo:
        # Only the band between the smallest and largest k needs ordering.
        band = part[:, k_lo:k_hi]
        band_order = np.argsort(-np.take_along_axis(keys, band, axis=1), axis=1)
        band_sorted = np.take_along_axis(band, band_order, axis=1)
        take = np.arange(k_hi - k_lo)[None, :] < (k - k_lo)[:, None]
        mask[np.broadcast_to(rows, band_sorted.shape)[take], band_sorted[take]] = True
    return mask


def _simulate_small(
    world: _World, prof: SimulatorProfile, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    su, si = world.small_users, world.small_items
    n_cells = su.size * si.size
    user = np.repeat(su, si.size)
    item = np.tile(si, su.size)
    inter = (world.theta[su] @ world.phi[si].T + world.tag_aff[su] @ world.tag_matrix[si].T).ravel()
    # Every cell gets a view time (also the cells that end up missing: the truth needs a day).
    day = WINDOW_DAYS[rng.integers(0, WINDOW_DAYS.size, n_cells)]
    ts_ms = (DAY0_EPOCH_S * 1000 + day * DAY_MS + _day_rhythm_ms(n_cells, rng)).astype(np.int64)
    eta = _eta(world, user, item, day, inter)
    truth = pl.DataFrame(
        {
            Columns.user: user.astype(np.int32),
            Columns.item: item.astype(np.int32),
            Columns.expected_watch_ratio: expected_watch_ratio(eta, world.duration_s(item)).astype(np.float32),
        }
    )
    play_ms = _sample_play_ms(eta, world.duration_ms[item], rng)

    n_missing = round(n_cells * prof.small_missing_share)
    keep = np.ones(n_cells, dtype=bool)
    keep[rng.choice(n_cells, n_missing, replace=False)] = False
    user, item, play_ms, ts_ms = user[keep], item[keep], play_ms[keep], ts_ms[keep]
    order = _user_time_order(user, ts_ms)
    n_null = round(user.size * prof.small_null_time_share)
    null_time = np.zeros(user.size, dtype=bool)
    null_time[rng.choice(user.size, n_null, replace=False)] = True
    return (
        {
            "user": user[order].astype(np.int32),
            "item": item[order].astype(np.int32),
            "play_ms": play_ms[order],
            "ts_ms": ts_ms[order],
            "duration_ms": world.duration_ms[item[order]],
            "null_time": null_time,
            "n_duplicates": np.int64(0),
        },
        truth,
    )


def _interaction_frame(views: dict[str, np.ndarray], *, date_as_float: bool) -> pl.DataFrame:
    """The KuaiRec text layout: local time string, yyyymmdd date, epoch seconds with ms."""
    world_duration = views["duration_ms"]
    null = pl.Series(views["null_time"])
    local = pl.from_epoch(pl.Series(views["ts_ms"] + UTC8_MS), time_unit="ms")
    date = pl.Series(_yyyymmdd((views["ts_ms"] + UTC8_MS) // DAY_MS - (DAY0_EPOCH_S * 1000 + UTC8_MS) // DAY_MS))
    frame = pl.DataFrame(
        {
            Columns.user: views["user"].astype(np.int32),
            Columns.item: views["item"].astype(np.int32),
            Columns.play_duration: views["play_ms"],
            Columns.video_duration: world_duration,
            Columns.time: local.dt.strftime("%Y-%m-%d %H:%M:%S%.3f"),
            Columns.date: date.cast(pl.Float64) if date_as_float else date,
            Columns.timestamp: views["ts_ms"] / 1000.0,
            Columns.watch_ratio: views["play_ms"] / world_duration,
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


def _interaction_stats(views: dict[str, np.ndarray], world: _World) -> dict[str, Any]:
    ratio = views["play_ms"] / views["duration_ms"]
    dur = views["duration_ms"]
    edges = np.quantile(dur, [0.2, 0.8])
    q = np.quantile(ratio, [0.5, 0.9, 0.99])
    return {
        "rows": int(ratio.size),
        "users": int(np.unique(views["user"]).size),
        "items": int(np.unique(views["item"]).size),
        "exact_duplicates": int(views["n_duplicates"]),
        "null_timestamps": int(views["null_time"].sum()),
        "watch_ratio_median": float(q[0]),
        "watch_ratio_p90": float(q[1]),
        "watch_ratio_p99": float(q[2]),
        "watch_ratio_max": float(ratio.max()),
        "share_watch_ratio_ge_1": float((ratio >= 1).mean()),
        "positive_rate_gt_2": float((ratio > 2).mean()),
        "positive_rate_gt_2_shortest_quintile": float((ratio[dur <= edges[0]] > 2).mean()),
        "positive_rate_gt_2_longest_quintile": float((ratio[dur > edges[1]] > 2).mean()),
        "median_play_seconds": float(np.median(views["play_ms"]) / 1000),
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
    drift = world.drift[item, day].astype(np.float64)
    appeal = world.appeal_base[item] + drift
    # Population watch time: user bias, taste and tag effects are noise around the video's eta.
    eta = LOG_BASE_WATCH + appeal + DURATION_ELASTICITY * np.log(dur_s / 9.0)
    sd = np.sqrt(NOISE_SD**2 + USER_BIAS_SD**2 + TASTE_SD**2 + TAG_SD**2)
    p_skip = _skip_probability(eta)
    watched_at_least = lambda s: (1 - p_skip) * (1 - ndtr((np.log(s) - eta) / sd))  # noqa: E731
    complete_rate = watched_at_least(dur_s)
    valid_rate = watched_at_least(np.minimum(dur_s, 7.0))
    long_rate = watched_at_least(np.minimum(dur_s, 18.0))
    short_rate = 1 - watched_at_least(np.minimum(dur_s, 3.0))
    e_play = p_skip * _uniform_min_mean(*SKIP_RANGE_S, dur_s) + (1 - p_skip) * _lognormal_play_mean(eta, sd, dur_s)
    log_d = np.log(dur_s)
    mean_t = np.exp(eta + 0.5 * sd * sd)
    e_min = mean_t - (mean_t * ndtr((eta + sd * sd - log_d) / sd) - dur_s * ndtr((eta - log_d) / sd))
    progress = (p_skip * _uniform_min_mean(*SKIP_RANGE_S, dur_s) + (1 - p_skip) * e_min) / dur_s

    age = day - world.upload_day[item]
    weekday_traffic = 1 + 0.1 * ((day + 6) % 7 >= 5)  # Jul 5 2020 was a Sunday
    show_mean = 400.0 * weekday_traffic * np.exp(FEED_POP * world.pop[item] + FEED_DRIFT * drift - 0.01 * age)
    show = rng.poisson(show_mean)
    play = rng.poisson(show * expit(1.0 + 1.5 * drift))
    boost = np.exp(appeal)

    def binom(count: np.ndarray, p: float | np.ndarray) -> np.ndarray:
        return rng.binomial(count, np.clip(p, 0.0, 1.0))

    def pois(lam: np.ndarray) -> np.ndarray:
        return rng.poisson(np.maximum(lam, 0.0))

    like = pois(play * 0.03 * boost * (0.3 + complete_rate))
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
    video_type = np.where(rng.random(n_i) < 0.995, "NORMAL", "AD")
    upload_types = np.array(["ShortImport", "ShortCamera", "PictureSet", "Kmovie", "LongImport", "LongCamera"])
    upload_type = upload_types[rng.choice(6, n_i, p=[0.38, 0.2, 0.12, 0.12, 0.13, 0.05])]
    sizes = np.array([[720, 1280], [1080, 1920], [576, 1024], [720, 720], [886, 1015], [1280, 720], [368, 640]])
    size = sizes[rng.choice(len(sizes), n_i, p=[0.55, 0.1, 0.1, 0.08, 0.05, 0.07, 0.05])]
    music = np.where(rng.random(n_i) < 0.25, 0, rng.integers(100_000, 4_000_000_000, n_i))
    tag_ids = rng.choice(3_000, size=(N_CATEGORY_TAGS, 3), replace=False)  # 3 fine-grained ids per tag
    video_tag_id = tag_ids[world.tag_lists[:, 0], rng.integers(0, 3, n_i)]
    duration_known = rng.random(n_i) >= 0.17  # the real file leaves some durations empty
    upload_dt = pl.from_epoch(
        pl.Series(DAY0_EPOCH_S * 1000 + world.upload_day * DAY_MS + UTC8_MS), time_unit="ms"
    ).dt.strftime("%Y-%m-%d")

    dur_col = pl.Series(world.duration_ms[item].astype(np.float64)).set(pl.Series(~duration_known[item]), None)
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
        "play_progress": np.where(
            play > 0, np.clip(progress + rng.standard_normal(n) * 0.3 / np.sqrt(play + 1), 0.0, 1.0), 0.0
        ),
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


def _range_label(
    values: np.ndarray, ranges: tuple[tuple[int | None, str], ...], rng: np.random.Generator
) -> np.ndarray:
    """Bucket labels from a slightly different snapshot of the value (as in the real file)."""
    snapshot = np.where(rng.random(values.size) < 0.1, np.round(values * rng.lognormal(0, 0.4, values.size)), values)
    uppers = np.array([u for u, _ in ranges[:-1]])
    labels = np.array([label for _, label in ranges])
    return labels[np.searchsorted(uppers, snapshot, side="left")]


def _draw_table(table: dict[int | None, int], n: int, rng: np.random.Generator) -> pl.Series:
    values = list(table)
    p = np.array([table[v] for v in values], dtype=np.float64)
    idx = rng.choice(len(values), n, p=p / p.sum())
    codes = np.array([-1 if v is None else v for v in values])[idx]
    return pl.Series(codes, dtype=pl.Int64).set(pl.Series(codes == -1), None)


def _user_features(world: _World, rng: np.random.Generator) -> pl.DataFrame:
    n = world.n_users
    # Activity drives the degree: the least active are middle/high_active, a few are UNKNOWN.
    rank = np.argsort(np.argsort(world.activity, kind="stable"), kind="stable") / max(n - 1, 1)
    degree = np.where(
        rank < 28 / 7176, "middle_active", np.where(rank < (28 + 938) / 7176, "high_active", "full_active")
    )
    degree = np.where(rng.random(n) < 118 / 7176, "UNKNOWN", degree)
    follow = np.minimum(np.floor(rng.lognormal(np.log(33), 1.9, n)), 2100).astype(np.int64)
    follow[rng.random(n) < 0.002] = 0
    fans = np.where(rng.random(n) < 0.3, 0, np.floor(rng.lognormal(np.log(4), 1.3, n))).astype(np.int64)
    friends = np.where(rng.random(n) < 0.6, 0, np.ceil(rng.lognormal(np.log(2), 1.1, n))).astype(np.int64)
    register = np.clip(np.round(rng.lognormal(np.log(240), 0.75, n)), 15, 2245).astype(np.int64)
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
        p = 1.0 / np.arange(1, n_values + 1) ** 0.8
        values = rng.permutation(n_values)[rng.choice(n_values, n, p=p / p.sum())]
        columns[name] = values.astype(np.int64)
    return pl.DataFrame(columns).select(USER_FEATURE_COLUMNS)


def _item_categories(world: _World) -> pl.DataFrame:
    tags = pl.Series(world.tag_lists.astype(np.int64).tolist(), dtype=pl.List(pl.Int64))
    feat = tags.list.eval(pl.element().filter(pl.element() >= 0).cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.item: np.arange(world.n_items, dtype=np.int32), Columns.feat: "[" + feat + "]"}
    ).select(ITEM_CATEGORY_COLUMNS)


def _social_network(world: _World, prof: SimulatorProfile, rng: np.random.Generator) -> pl.DataFrame:
    """A small symmetric friendship graph among a few users (KuaiRec lists 472)."""
    n_social = min(world.n_users, max(2, round(prof.social_share * world.n_users)))
    members = np.sort(rng.choice(world.n_users, n_social, replace=False))
    src = np.repeat(np.arange(n_social), rng.geometric(0.6, n_social))  # each member names >= 1 friend
    dst = (src + rng.integers(1, n_social, src.size)) % n_social  # never oneself
    edges = pl.DataFrame(
        {"a": members[np.concatenate([src, dst])], "b": members[np.concatenate([dst, src])]}
    ).unique(maintain_order=True)  # friendship is symmetric
    grouped = edges.group_by("a", maintain_order=True).agg(pl.col("b")).sort("a")
    friend_lists = grouped["b"].list.eval(pl.element().cast(pl.String)).list.join(", ")
    return pl.DataFrame(
        {Columns.user: grouped["a"].cast(pl.Int32), Columns.friend_list: "[" + friend_lists + "]"}
    ).select(SOCIAL_NETWORK_COLUMNS)


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, include_header=True, line_terminator="\n")
