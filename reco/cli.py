"""Entry-point helper for stage scripts: clean error messages and exit codes, no tracebacks for bad input.

:func:`run_stage` exits with 0 on success, 2 on bad input (a :class:`~reco.errors.PipelineError` or a
missing input file) and keeps the traceback of anything else (a bug, exit 1); :func:`stage_args` checks a
stage's positional arguments. See docs/design/stages.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


def stage_args(usage: str, names: Sequence[str]) -> list[Path]:
    """Return the stage's positional arguments as paths, or raise a usage error.

    Parameters
    ----------
    usage
        The command line to show, e.g. ``"python -m stages.train_als INTERACTIONS OUT_DIR"``.
    names
        One name per expected argument (only their number is checked).

    Raises
    ------
    reco.errors.UsageError
        The number of arguments differs from ``len(names)``.

    Examples
    --------
    Run as ``python -m stages.train_als data/split/train.parquet models/als/test``:

    >>> stage_args("python -m stages.train_als INTERACTIONS OUT_DIR", ["INTERACTIONS", "OUT_DIR"])  # doctest: +SKIP
    [PosixPath('data/split/train.parquet'), PosixPath('models/als/test')]
    """
    from reco.errors import UsageError

    args = sys.argv[1:]
    if len(args) != len(names):
        raise UsageError(f"expected {len(names)} argument(s) {list(names)}, got {len(args)} {args}; usage: {usage}")
    return [Path(arg) for arg in args]


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run ``main``; on bad input print ``error: stage <name>: ...`` to stderr and exit with 2.

    Bad input is a :class:`~reco.errors.PipelineError` or a :class:`FileNotFoundError` (a declared
    input that does not exist yet); other exceptions propagate with their traceback. While ``main``
    runs, :mod:`reco.progress` reports its steps as ``<name>: <step>`` lines on stderr.
    """
    from reco.errors import PipelineError
    from reco.progress import stage

    started = time.perf_counter()
    try:
        with stage(name):
            main()
    except PipelineError as error:
        print(f"error: stage {name}: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except FileNotFoundError as error:
        # polars puts the path in the message only; open() sets filename and strerror.
        detail = str(error) if error.filename is None else f"{error.filename} ({error.strerror})"
        hint = "run the upstream stages first (dvc repro)"
        print(f"error: stage {name}: missing input: {detail}; {hint}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(f"stage {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
