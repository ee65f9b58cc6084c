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
SEED_RUNS_DIR = Path("data/seeds")  # a seed run's files: the pipeline's layout under data/seeds/<seed>/
SEED_FLAG = "--seed"


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


def stage_args_with_seed(
    usage: str, names: Sequence[str], argv: Sequence[str] | None = None
) -> tuple[list[Path], int | None]:
    """:func:`stage_args` plus an optional trailing ``--seed N`` (a seed run of the stage).

    A seed run retrains with seed ``N`` instead of the one ``params.yaml`` sets and reads and writes
    the model-dependent files under :func:`seed_run_root` (``data/seeds/N/``); the other inputs are
    the pipeline's. See docs/selection-and-review.md (the seed spread).

    Raises
    ------
    reco.errors.UsageError
        A wrong number of arguments, or ``--seed`` without a non-negative integer.

    Examples
    --------
    >>> argv = ["data/split/train.parquet", "out", "--seed", "3"]  # default: sys.argv[1:]
    >>> stage_args_with_seed("python -m stages.train_als INTERACTIONS OUT_DIR [--seed N]", ["IN", "OUT"], argv)
    ([PosixPath('data/split/train.parquet'), PosixPath('out')], 3)
    """
    from reco.errors import UsageError

    args = list(sys.argv[1:] if argv is None else argv)
    seed = None
    if SEED_FLAG in args:
        at = args.index(SEED_FLAG)
        value = args[at + 1] if at + 1 < len(args) else ""
        if not value.isdigit():
            raise UsageError(f"{SEED_FLAG} needs a non-negative integer, got {value!r}; usage: {usage}")
        seed = int(value)
        args = args[:at] + args[at + 2 :]
    if len(args) != len(names):
        raise UsageError(f"expected {len(names)} argument(s) {list(names)}, got {len(args)} {args}; usage: {usage}")
    return [Path(arg) for arg in args], seed


def seed_run_root(seed: int | None) -> Path:
    """Where a stage's model-dependent files live: the repository (``None``) or ``data/seeds/<seed>``.

    Examples
    --------
    >>> str(seed_run_root(None)), str(seed_run_root(3))
    ('.', 'data/seeds/3')
    """
    return Path() if seed is None else SEED_RUNS_DIR / str(int(seed))


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
