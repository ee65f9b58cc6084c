"""The simulator's generative stories and their registry (``data.story``).

``latent_drift`` (the default, :class:`~reco.data.simulator_model.LatentDrift`) and ``sessions``
(:class:`Sessions`) place each view in the shared watch-time law of
:mod:`reco.data.simulator_model` by different functional forms. See docs/simulator.md.
"""

from __future__ import annotations

from typing import Final

from reco.data.simulator_model import LatentDrift, Story
from reco.errors import ParamsError

__all__ = ["STORIES", "story_named"]

STORIES: Final[dict[str, Story]] = {"latent_drift": LatentDrift()}


def story_named(name: str) -> Story:
    """The story called ``name`` (``data.story``), or a :class:`~reco.errors.ParamsError` naming the choices.

    Examples
    --------
    >>> story_named("latent_drift").name
    'latent_drift'
    """
    if name not in STORIES:
        raise ParamsError(
            f"params.yaml: data.story = {name!r} is invalid; expected one of {', '.join(map(repr, STORIES))}"
        )
    return STORIES[name]
