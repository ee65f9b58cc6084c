"""``python -m reco.review BASE [HEAD]``: a Markdown review of the change between two revisions.

The command line and the Markdown it prints: ``dvc params diff``, the headline metrics of both
blocks and, on one block (``--block``, default ``validation``; ``test`` only when asked), each
model's paired per-user difference ``HEAD - BASE`` with its test and verdict, computed by
:mod:`reco.review_compare` from the files :mod:`reco.review_revisions` reads. Bad input exits with
code 2 and one line ``error: review: ...``. See docs/selection-and-review.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from reco.cli import EXIT_BAD_INPUT
from reco.errors import PipelineError, UsageError
from reco.evaluation.decision import FAMILY_ALPHA, Verdict
from reco.review_compare import (
    BLOCKS,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    HeadlineTable,
    PairedRow,
    Review,
    ReviewOptions,
    RowTest,
    build_review,
    metric_label,
)
from reco.review_revisions import ReviewError, one_line

__all__ = ["main", "render_markdown"]

DIGITS: Final = 4
MISSING: Final = "—"


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def format_value(value: float | None) -> str:
    """A metric value with :data:`DIGITS` decimals, or "—".

    Examples
    --------
    >>> format_value(0.61234), format_value(None)
    ('0.6123', '—')
    """
    return MISSING if value is None else f"{value:.{DIGITS}f}"


def format_delta(value: float | None) -> str:
    """A signed difference; rounding never shows ``-0.0000``.

    Examples
    --------
    >>> format_delta(-0.05), format_delta(-0.00001), format_delta(None)
    ('-0.0500', '+0.0000', '—')
    """
    if value is None:
        return MISSING
    rounded = round(value, DIGITS) + 0.0  # + 0.0: -0.0 -> 0.0
    return f"{rounded:+.{DIGITS}f}"


def markdown_table(headers: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; ``align`` has one ``l`` or ``r`` per column.

    Examples
    --------
    >>> print(markdown_table(["Model", "x"], "lr", [["als", "1"]]))
    | Model | x |
    |:--|--:|
    | als | 1 |
    """
    separator = "|" + "|".join(":--" if side == "l" else "--:" for side in align) + "|"
    lines = ["| " + " | ".join(headers) + " |", separator]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _headline_markdown(table: HeadlineTable) -> str:
    headers = ["Model"]
    for key in table.keys:
        name, _, k = key.rpartition("_at_")
        label = metric_label(name, int(k))
        headers += [f"{label} BASE", f"{label} HEAD", f"{label} Δ"]
    rows = []
    for model, by_key in table.values.items():
        cells = [model]
        for key in table.keys:
            base_value, head_value = by_key[key]
            delta = None if base_value is None or head_value is None else head_value - base_value
            cells += [format_value(base_value), format_value(head_value), format_delta(delta)]
        rows.append(cells)
    parts = [f"### Headline metrics ({table.block})", ""]
    if rows:
        parts += [markdown_table(headers, "l" + "r" * (len(headers) - 1), rows), ""]
    parts += list(table.notes)
    return "\n".join(parts)


def _verdict_text(row: PairedRow) -> str:
    if row.verdict is None or row.difference is None:
        return "n/a (no common users)"
    if row.verdict is Verdict.REAL:
        return "**real** (" + ("better" if row.difference.mean > 0 else "worse") + ")"
    if row.verdict is Verdict.UNKNOWN:
        return "unknown (no seed spread)"
    return row.verdict.value


def format_p(value: float) -> str:
    """A p-value with 2 significant digits (``<0.0001`` below that).

    Examples
    --------
    >>> format_p(0.0312), format_p(1.0), format_p(3e-9)
    ('0.031', '1', '<0.0001')
    """
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"


def _test_cells(test: RowTest | None) -> list[str]:
    if test is None:
        return [MISSING] * 4
    df = "∞" if not np.isfinite(test.df) else f"{test.df:.1f}"
    t = "∞" if not np.isfinite(test.t) else f"{test.t:+.2f}"
    return [format_value(test.seed_sd), format_value(test.se), f"{t} ({df})", format_p(test.p_holm)]


def _paired_markdown(review: Review) -> str:
    options = review.options
    headers = ["Model", "Metric", "Users", "BASE", "HEAD", "Δ HEAD−BASE",
               f"Users' {options.confidence:.0%} interval", "Seed sd", "SE", "t (df)", "p (Holm)",
               "Verdict"]  # fmt: skip
    rows = []
    for row in review.paired:
        diff = row.difference
        rows.append(
            [
                row.model,
                metric_label(row.metric, row.k),
                f"{diff.users:,}" if diff else "0",
                format_value(diff.base_mean if diff else None),
                format_value(diff.head_mean if diff else None),
                format_delta(diff.mean if diff else None),
                f"[{format_delta(diff.low)}, {format_delta(diff.high)}]" if diff else MISSING,
                *_test_cells(row.test),
                _verdict_text(row),
            ]
        )
    method = (
        f"Mean over users evaluated in both revisions of HEAD − BASE; {options.confidence:.0%} percentile bootstrap "
        f"over users ({options.samples:,} resamples, seed {options.seed}). Test: t = Δ / SE with "
        "SE² = users' bootstrap variance + the seeds' variance of a difference of two runs; Holm's correction "
        f"over the {sum(row.test is not None for row in review.paired)} tested rows at family-wise "
        f"α = {options.alpha:g}."
    )
    parts = [f"### Paired differences ({options.block}, same users)", "", method, ""]
    parts += [f"- {note}" for note in review.paired_notes]
    table = markdown_table(headers, "llrrrrlrrrrl", rows) if rows else "No model is present in both revisions."
    parts += ["", table]
    return "\n".join(parts)


def legend(options: ReviewOptions) -> str:
    """The one-line explanation of the verdict.

    Examples
    --------
    >>> legend(ReviewOptions()).startswith("Legend: **real**")
    True
    """
    return (
        f"Legend: **real** = Holm-adjusted p ≤ {options.alpha:g}, where p is the two-sided p-value of t = Δ / SE "
        "against a Student t whose degrees of freedom come from the seeds (Welch–Satterthwaite); *seed sd* = the std "
        "of one run over seeds (the headline runs counted among the seeds); otherwise *within noise*; *unknown* = "
        "no seed spread is recorded for the row and its users' interval excludes 0 (never called real)."
    )


def render_markdown(review: Review) -> str:
    """The Markdown a reviewer pastes into the pull request (ends with a newline).

    Examples
    --------
    >>> print(render_markdown(build_review(Path("."), "main", None, ReviewOptions())))  # doctest: +SKIP
    ## Review: `main` (8a1fbf8) → workspace (on 8a1fbf8)
    ...
    """
    parts = [f"## Review: BASE {review.base.title()} → HEAD {review.head.title()}", ""]
    if review.warnings:
        parts += [f"> **Warning:** {warning}" for warning in review.warnings] + [""]
    parts += ["### Params", "", review.params_markdown or "No params changed.", ""]
    for table in review.headline:
        parts += [_headline_markdown(table).rstrip("\n"), ""]
    parts += [_paired_markdown(review), "", legend(review.options)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """Raise :class:`UsageError` instead of printing usage and exiting, for the one-line error."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn
        raise UsageError(f"{message}; usage: {' '.join(self.format_usage().split()[1:])}")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = _ArgumentParser(prog="python -m reco.review", description=__doc__.split("\n", 1)[0])
    parser.add_argument("base", metavar="BASE", help="git revision or DVC experiment to compare against")
    parser.add_argument("head", metavar="HEAD", nargs="?", default=None, help="revision to review (default: workspace)")
    parser.add_argument(
        "--block", choices=BLOCKS, default=BLOCKS[0], help="block of the paired differences (default validation)"
    )
    parser.add_argument("--metrics", type=_names, default=("ndcg", "map"), help="comma-separated, default ndcg,map")
    parser.add_argument("--k", type=_positive_ints, default=(10,), help="cut-off(s) K, comma-separated, default 10")
    parser.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the bootstrap resampling")
    parser.add_argument("--alpha", type=_probability, default=FAMILY_ALPHA, help="family-wise error rate (Holm)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC project (default: current folder)")
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the review; return the exit code (0, or 2 with ``error: review: ...`` on stderr).

    Examples
    --------
    >>> main(["main", "--block", "validation"])  # doctest: +SKIP
    0
    """
    from reco.io import write_text

    try:
        args = parse_args(argv)
        options = ReviewOptions(
            block=args.block, metrics=args.metrics, ks=args.k, samples=args.samples, seed=args.seed, alpha=args.alpha
        )
        text = render_markdown(build_review(args.repo, args.base, args.head, options))
        if args.out is not None:
            try:
                write_text(text, args.out)
            except OSError as error:
                raise ReviewError(f"cannot write {args.out}: {error.strerror or error}") from error
    except PipelineError as error:
        print(f"error: review: {one_line(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
