"""Progress lines on stderr: one line per major step of a running stage, ``<stage>: <step>``.

Reporting is on only while :func:`stage` (entered by :func:`reco.cli.run_stage`) is active, and
silent otherwise: library calls and tests print nothing unless they enter :func:`stage`
themselves. Lines are never redrawn, so logs stay readable. See docs/design/stages.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["current_stage", "quiet", "report", "stage", "steps"]

T = TypeVar("T")

_current: str | None = None


def current_stage() -> str | None:
    """The name of the stage whose progress is reported, or ``None`` when reporting is off."""
    return _current


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Report progress as stage ``name`` inside the ``with`` block; restore the previous state after.

    Parameters
    ----------
    name
        The stage name that prefixes every line, e.g. ``"prepare"``.

    Examples
    --------
    >>> with stage("prepare"):
    ...     report("user range 4/16")  # doctest: +SKIP
    """
    global _current
    previous, _current = _current, name
    try:
        yield
    finally:
        _current = previous


@contextmanager
def quiet() -> Iterator[None]:
    """Report nothing inside the ``with`` block, for a stage that reports its own coarser steps.

    The seed spread, for example, refits ALS and the ranker for every seed: it reports one line
    per seed and model, not every ALS iteration of every fit.

    Examples
    --------
    >>> with stage("seed_spread"), quiet():
    ...     report("ALS iteration 1/15")  # prints nothing
    """
    global _current
    previous, _current = _current, None
    try:
        yield
    finally:
        _current = previous


def report(step: str) -> None:
    """Print ``<stage>: <step>`` on stderr (flushed) when a stage is running; do nothing otherwise.

    Parameters
    ----------
    step
        Where the stage is, on one line, e.g. ``"ALS iteration 5/15"``.
    """
    if _current is None:
        return
    print(f"{_current}: {' '.join(step.split())}", file=sys.stderr, flush=True)


def steps(items: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` unchanged, reporting ``<what> i/<total>`` before each item is fetched.

    The line comes before the item is fetched, so when ``items`` is a lazy iterator (a partition
    computed on demand) it names the step that is running, not the one that has finished.

    Parameters
    ----------
    items
        The steps' items; consumed lazily, one at a time.
    what
        What one step is, e.g. ``"user partition"``.
    total
        The number of items; ``None``: ``len(items)``.

    Examples
    --------
    >>> with stage("split"):
    ...     list(steps(["a", "b"], "chunk"))  # doctest: +SKIP
    split: chunk 1/2
    split: chunk 2/2
    ['a', 'b']
    """
    if total is None:
        if not isinstance(items, Sized):
            raise TypeError("steps: pass total= for an iterable without len()")
        total = len(items)
    iterator = iter(items)
    i = 0
    while True:
        i += 1
        if i <= total:
            report(f"{what} {i}/{total}")
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item
