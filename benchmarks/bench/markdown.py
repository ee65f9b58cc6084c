"""Markdown building blocks of RESULTS.md: tables and number formats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from .config import MIB

FAILED_LOG_LINES: Final = 25  # lines of a failed step's log shown in RESULTS.md


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table (header, rule, rows) followed by a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def seconds(value: float | None) -> str:
    """Seconds (or a ratio) with 2 decimals; an en dash when missing."""
    return "–" if value is None else f"{value:.2f}"


def mebibytes(value: float | None) -> str:
    """Bytes as whole MiB; an en dash when missing."""
    return "–" if value is None else f"{value / MIB:.0f}"


def fit_cell(row: Mapping[str, Any]) -> str:
    """A bare fit's time, with every repeat when there were several (the reported one is the median)."""
    runs = row.get("fit_s_runs") or []
    return seconds(row["fit_s"]) + (f" (median of {', '.join(seconds(x) for x in runs)})" if len(runs) > 1 else "")


def failure_summary(failed: Mapping[str, Any]) -> str:
    """``STEP: first line of the error`` without the log path (the run's own section shows the log)."""
    first = str(failed.get("error") or "").partition("\n")[0]
    return f"{failed.get('step') or 'an unknown step'}: {first.split('; log ')[0]}"


def render_failure(failed: Mapping[str, Any]) -> list[str]:
    """A failed step: what failed, the error's first line, the end of its log."""
    message = str(failed.get("error") or "")
    first, _, rest = message.partition("\n")
    tail = rest.strip().splitlines()[-FAILED_LOG_LINES:]
    lines = [f"> **Failed** at {failed.get('step') or 'an unknown step'}: {first}", ""]
    if tail:
        lines += ["```", *tail, "```", ""]
    return lines
