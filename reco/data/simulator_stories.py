"""The simulator's generative stories and their registry (``data.story``).

``latent_drift`` (the default, :class:`~reco.data.simulator_model.LatentDrift`: log seconds are a sum of
user bias, drifting appeal, taste and tags) and ``sessions`` (:class:`Sessions`: a soft minimum of the
viewer's interest and an attention budget that runs down within a session, with author, hour-of-day and
taste-by-length effects) place each view in the shared watch-time law of
:mod:`reco.data.simulator_model`, so the ground truth's ``watch_eta`` and ``skip_shift`` give the exact
label probability under either. See docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

from reco import portable_math as pm
from reco.data.simulator_model import (
    _LOG_T0,
    DAY0_EPOCH_S,
    DAY_MS,
    N_DAYS,
    UTC8_MS,
    LatentDrift,
    Story,
    _day_rhythm_ms,
    _standardise,
    _user_time_order,
    _World,
)
from reco.errors import ParamsError

__all__ = ["STORIES", "Sessions", "story_named"]

# --- the sessions story ----------------------------------------------------------------------
SESSION_GAP_MS: Final = 10 * 60_000  # a pause longer than this starts a new session
SESSION_VIEWS: Final = 8.0  # a user's views of a day come in sessions of this many views on average ...
VIEW_GAP_S: Final = 25.0  # ... one after another, with exponential gaps of this mean between their starts
INTEREST_OFFSET: Final = 0.42  # interest's log seconds above log T0 (the budget's soft minimum pulls it down)
QUALITY_WEIGHT: Final = 0.7  # share of the world's appeal that is the video's quality here
AUTHOR_SD: Final = 0.18  # sd of an author's effect, shared by all their videos
VIDEOS_PER_AUTHOR: Final = 3.0  # on average
TASTE_GAIN: Final = 2.2  # taste + tags, times a weight that grows with the length ...
TASTE_LENGTH_S: Final = (3.0, 30.0)  # ... from 0.25 at 3 s to 1 from 30 s on (log-linear)
BUDGET_S: Final = 35.0  # median attention budget per view at a session's start
BUDGET_USER_SD: Final = 0.25  # sd of the users' log budgets (heavy users have more)
FATIGUE: Final = 1.2  # the budget's log falls by up to this much along a session ...
FATIGUE_VIEWS: Final = 8.0  # ... as 1 - exp(-position / FATIGUE_VIEWS)
SKIP_FATIGUE: Final = 0.3  # tired viewers skip more: skip logit shift at full fatigue
NOVELTY: Final = 0.12  # a fresh upload's extra interest, falling as 1 / (1 + age / NOVELTY_DAYS)
NOVELTY_DAYS: Final = 3.0
# Interest shift per local hour: longer at night and in the evening, shorter on the morning commute.
HOUR_EFFECT: Final = np.array(
    [0.10, 0.10, 0.08, 0.05, 0.0, -0.05, -0.10, -0.12, -0.12, -0.08, -0.05, -0.03,
     0.0, 0.0, -0.03, -0.03, -0.02, 0.0, 0.03, 0.06, 0.08, 0.10, 0.10, 0.10], dtype=np.float64,
)  # fmt: skip


@dataclass(frozen=True)
class Sessions:
    """Watch time limited by attention: ``eta = softmin(interest, budget)`` (log seconds).

    ``interest = log T0 + offset + user bias + quality + author + taste x w(length) + hour + novelty + g(length)``;
    ``budget = the user's log budget - FATIGUE (1 - exp(-position / FATIGUE_VIEWS))``, with
    ``softmin(a, b) = -log(exp(-a) + exp(-b))``: a viewer deep into a session stops sooner whatever the
    video, and interest saturates against the budget. Skips grow with fatigue too. Call :meth:`bind`
    before use (the registry's instance has no parameters yet).

    Examples
    --------
    >>> Sessions().name
    'sessions'
    """

    name: str = "sessions"
    author: np.ndarray | None = None
    author_effect: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (items,)
    taste_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (items,)
    log_budget: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (users,)

    def bind(self, world: _World, rng: np.random.Generator) -> Sessions:
        """Draw the authors, their effects and the users' budgets for ``world``."""
        n_authors = max(1, round(world.n_items / VIDEOS_PER_AUTHOR))
        author = rng.integers(0, n_authors, world.n_items)
        effect = pm.normal(rng, n_authors) * AUTHOR_SD
        activity_z = _standardise(pm.log(world.activity))
        log_budget = float(pm.log(np.array([BUDGET_S]))[0]) + (
            activity_z * 0.4 + pm.normal(rng, world.n_users) * np.sqrt(1 - 0.16)
        ) * BUDGET_USER_SD
        lo, hi = pm.log(np.array(TASTE_LENGTH_S))
        length = (pm.log(world.duration_ms / 1000.0) - lo) / (hi - lo)
        weight = np.clip(length * 0.75 + 0.25, 0.25, 1.0) * TASTE_GAIN
        return Sessions(author=author, author_effect=effect[author], taste_weight=weight, log_budget=log_budget)

    def times(self, user: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Epoch ms of views on ``day``: each user's views of a day, in random order, form sessions of
        geometric length (mean SESSION_VIEWS) that start at times drawn from the daily rhythm."""
        n = day.size
        key = (user.astype(np.int64) * N_DAYS + day) * (1 << 20) + rng.integers(0, 1 << 20, n)
        order = np.argsort(key, kind="stable")  # by user and day, random within (ties: input order)
        group = (user.astype(np.int64) * N_DAYS + day)[order]
        first_of_day = np.ones(n, dtype=bool)
        first_of_day[1:] = group[1:] != group[:-1]
        starts = first_of_day | (pm.uniform(rng, n) < 1.0 / SESSION_VIEWS)
        session = np.cumsum(starts) - 1
        session_start_ms = _day_rhythm_ms(int(starts.sum()), rng)
        gap_ms = np.floor(pm.exponential(rng, n) * (VIEW_GAP_S * 1000.0)).astype(np.int64)
        gap_ms[starts] = 0
        elapsed = np.cumsum(gap_ms)
        first = np.flatnonzero(starts)
        since_start = elapsed - elapsed[first][session]
        # a session that would run past midnight starts early enough to end before it (re-watches
        # later on the same day need a millisecond after it)
        length_ms = np.maximum.reduceat(since_start, first) if n else since_start
        session_start_ms = np.maximum(np.minimum(session_start_ms, DAY_MS - 2 - length_ms), 0)
        time_of_day = np.minimum(session_start_ms[session] + since_start, DAY_MS - 2)
        ts_ms = np.empty(n, dtype=np.int64)
        ts_ms[order] = DAY0_EPOCH_S * 1000 + day[order] * DAY_MS + time_of_day
        return ts_ms

    def interest(
        self, world: _World, user: np.ndarray, item: np.ndarray, day: np.ndarray, hour_effect: np.ndarray | float,
        inter: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Log seconds the viewer would give the video with an unlimited budget."""
        quality = world.appeal_base[item] * QUALITY_WEIGHT + self.author_effect[item]
        age = (day - world.upload_day[item]).astype(np.float64)
        novelty = np.where(age >= 0, NOVELTY / (1.0 + np.maximum(age, 0.0) / NOVELTY_DAYS), 0.0)
        return (
            ((((world.user_bias[user] + (_LOG_T0 + INTEREST_OFFSET)) + quality) + inter * self.taste_weight[item])
             + hour_effect) + novelty
        ) + world.duration_term[item]  # fmt: skip

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
        if self.log_budget.size != world.n_users:
            raise RuntimeError("Sessions.location needs a story bound to the world (Sessions().bind(world, rng))")
        if position is None:
            position = session_positions(user, ts_ms)
        hour = ((ts_ms + UTC8_MS) // 3_600_000) % 24
        interest = self.interest(world, user, item, day, HOUR_EFFECT[hour], inter)
        tired = 1.0 - pm.exp(np.asarray(position, dtype=np.float64) / -FATIGUE_VIEWS)
        budget = self.log_budget[user] - tired * FATIGUE
        low = np.minimum(interest, budget)
        eta = low - pm.log(1.0 + pm.exp(-np.abs(interest - budget)))
        return eta, world.skip_shift[user] + tired * SKIP_FATIGUE

    def enjoyment(
        self, world: _World, user: np.ndarray, item: np.ndarray, day: np.ndarray, inter: np.ndarray
    ) -> np.ndarray:
        return pm.exp(self.interest(world, user, item, day, 0.0, inter) - (_LOG_T0 + INTEREST_OFFSET))


def session_positions(user: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """0-based place of each view in its user's session (a new one after a pause over SESSION_GAP_MS).

    Examples
    --------
    >>> session_positions(np.array([1, 1, 1, 2]), np.array([0, 60_000, 4_000_000, 0])).tolist()
    [0, 1, 0, 0]
    """
    order = _user_time_order(user, ts_ms)
    u, t = user[order], ts_ms[order]
    start = np.ones(u.size, dtype=bool)
    start[1:] = (u[1:] != u[:-1]) | (t[1:] - t[:-1] > SESSION_GAP_MS)
    index = np.arange(u.size)
    session_start = np.maximum.accumulate(np.where(start, index, 0))
    position = np.empty(u.size, dtype=np.int64)
    position[order] = index - session_start
    return position


STORIES: Final[dict[str, Story]] = {"latent_drift": LatentDrift(), "sessions": Sessions()}


def story_named(name: str) -> Story:
    """The story called ``name`` (``data.story``), or a :class:`~reco.errors.ParamsError` naming the choices.

    Examples
    --------
    >>> story_named("sessions").name
    'sessions'
    """
    if name not in STORIES:
        raise ParamsError(
            f"params.yaml: data.story = {name!r} is invalid; expected one of {', '.join(map(repr, STORIES))}"
        )
    return STORIES[name]
