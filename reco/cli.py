"""Entry-point helper for stage scripts: clean error messages and exit codes, no tracebacks for bad input."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run ``main``; on a :class:`~reco.errors.PipelineError` print ``error: ...`` and exit with 2."""
    from reco.errors import PipelineError

    started = time.perf_counter()
    try:
        main()
    except PipelineError as error:
        print(f"error: stage {name}: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"stage {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
