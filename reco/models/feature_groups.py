"""Feature groups: which family each ranker feature belongs to, and the ranker's features without some groups.

The selection ablates whole groups (``ranker.exclude_groups``): the ranker then learns, and scores, without
them; the feature tables stay as they are. A feature no rule names is an error, so a new feature must be
given a group here. See docs/design/models.md.

Examples
--------
>>> feature_group("d_play_rate"), feature_group("ux_tag_pos_rate"), feature_group("onehot_feat3")
('daily', 'tags', 'profile')
>>> ranker_features(["als_score", "d_play_rate", "primary_tag"], ["primary_tag"], ["daily"])
(['als_score', 'primary_tag'], ['primary_tag'])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from reco.models.features import USER_PROFILE_NUMERIC
from reco.params import FEATURE_GROUPS

__all__ = ["FEATURE_GROUPS", "feature_group", "ranker_features"]

_PROFILE: Final = frozenset({"user_active_degree", *USER_PROFILE_NUMERIC})
_RULES: Final = (  # first match wins
    (re.compile(r"^als_"), "als"),
    (re.compile(r"^d_"), "daily"),
    (re.compile(r"^(i_author_|ux_author_)"), "author"),
    (re.compile(r"^(ux_tag_|n_tags$|primary_tag$)"), "tags"),
    (re.compile(r"^(duration_|ux_duration_|ux_expected_watch)"), "duration"),
    (re.compile(r"^i_"), "item_history"),
    (re.compile(r"^u_"), "user_history"),
)


def feature_group(name: str) -> str:
    """The group of feature ``name`` (one of :data:`FEATURE_GROUPS`).

    Raises
    ------
    ValueError
        No rule names the feature.
    """
    if name in _PROFILE:
        return "profile"
    for pattern, group in _RULES:
        if pattern.match(name):
            return group
    raise ValueError(f"feature {name!r} belongs to no group of {list(FEATURE_GROUPS)}; add it in {__name__}")


def ranker_features(
    features: Sequence[str], categorical: Sequence[str], exclude_groups: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``features`` and ``categorical`` without the features of ``exclude_groups`` (order kept).

    Raises
    ------
    ValueError
        An unknown group, a feature without a group, or no feature left.
    """
    unknown = sorted(set(exclude_groups) - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; expected some of {list(FEATURE_GROUPS)}")
    kept = [name for name in features if feature_group(name) not in exclude_groups]
    if not kept:
        raise ValueError(f"excluding {list(exclude_groups)} leaves the ranker no feature")
    return kept, [name for name in categorical if name in kept]
