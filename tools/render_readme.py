"""Render the README's headline results table from the committed metrics files.

The block between ``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md is written by
this script from ``metrics/metrics.json`` (NDCG@10 and MAP@10 per model and block),
``metrics/uncertainty.json`` (95% bootstrap intervals) and ``metrics/seed_spread.json`` (spread over
training seeds), so the README never holds a hand-copied figure. ``tests/test_docs.py`` checks that
the committed block is what this script renders. See docs/protocol.md for what the models are.

Usage: ``python -m tools.render_readme`` (rewrite the block in place) or
``python -m tools.render_readme --check`` (exit 1 if the block is stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START = "<!-- results:start -->"
END = "<!-- results:end -->"
METRICS = ("ndcg_at_10", "map_at_10")
LABELS = {"ndcg_at_10": "NDCG@10", "map_at_10": "MAP@10"}
BLOCKS = ("test", "validation")
SPREAD_BLOCK = "validation"  # the seed spread is measured where settings are chosen


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON document at ``path``, or None when the file does not exist."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _cell(value: float, interval: Mapping[str, float] | None) -> str:
    """``0.1234 [0.120, 0.127]``, or the value alone without an interval."""
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _spread_cell(spread: Mapping[str, Any] | None, block: str, model: str, metric: str) -> str:
    """``mean ± std`` of ``metric`` over the seeds of ``seed_spread.json``, or an empty cell."""
    if spread is None:
        return ""
    entry = spread.get("blocks", {}).get(block, {}).get("models", {}).get(model, {}).get(metric)
    if entry is None:
        return ""
    return f"{entry['mean']:.4f} ± {entry['std']:.4f}"


def render_results(
    metrics: Mapping[str, Any],
    uncertainty: Mapping[str, Any] | None = None,
    seed_spread: Mapping[str, Any] | None = None,
) -> str:
    """The Markdown of the headline results block (without the start and end markers).

    Parameters
    ----------
    metrics
        ``metrics/metrics.json``: ``{"test": {"models": {...}, "data": {...}}, "validation": {...}, ...}``.
    uncertainty
        ``metrics/uncertainty.json`` (``{block: {"intervals": {model: {metric: {"low", "high"}}}}}``), or None.
    seed_spread
        ``metrics/seed_spread.json`` (``{"seeds": [...], "blocks": {block: {"models": ...}}}``), or None.

    Returns
    -------
    str
        A caption, one table row per model (ordered by test NDCG@10, best first) and the files'
        names, ending with a newline.
    """
    test = metrics["test"]
    models = sorted(test["models"], key=lambda name: (-test["models"][name]["ndcg_at_10"], name))
    header = ["model"]
    for block in BLOCKS:
        header += [f"{block}: {LABELS[metric]} [95% CI]" for metric in METRICS]
    seeds = seed_spread.get("seeds") if seed_spread else None
    if seeds:
        header.append(f"validation: NDCG@10 over seeds {', '.join(str(s) for s in seeds)} (mean ± sd)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        row = [f"`{model}`"]
        for block in BLOCKS:
            values = metrics[block]["models"].get(model, {})
            intervals = (uncertainty or {}).get(block, {}).get("intervals", {}).get(model, {})
            for metric in METRICS:
                row.append(_cell(values[metric], intervals.get(metric)) if metric in values else "—")
        if seeds:
            row.append(_spread_cell(seed_spread, SPREAD_BLOCK, model, "ndcg_at_10"))
        lines.append("| " + " | ".join(row) + " |")
    data = {block: metrics[block]["data"] for block in BLOCKS}
    caption = (
        f"Data: source `{data['test']['source']}`, profile `{data['test']['profile']}`; protocol "
        f"`{metrics.get('protocol')}`, label `{metrics.get('label_kind')}` (threshold {metrics.get('label_threshold')}). "
        f"Test block: {data['test']['users_evaluated']} users evaluated, validation block: "
        f"{data['validation']['users_evaluated']}, each over {data['test']['items']} videos."
    )
    sources = (
        "Rendered by `python -m tools.render_readme` from `metrics/metrics.json`"
        + (", `metrics/uncertainty.json` (95% percentile bootstrap over users)" if uncertainty else "")
        + (" and `metrics/seed_spread.json`" if seeds else "")
        + "; do not edit by hand."
    )
    return "\n".join([caption, "", *lines, "", sources]) + "\n"


def render_stories(stories: list[Mapping[str, Any]]) -> str:
    """A table of each simulator story's test headline (``metrics/stories/<story>.json``), or ``""``.

    Examples
    --------
    >>> story = {"story": "s", "params": "p", "blocks": {"test": {"ndcg_at_10": {"ranker": 0.8, "als": 0.7,
    ...     "popularity": 0.5, "oracle": 0.9}, "ranker_share_of_oracle": 0.8889, "paired_ndcg_at_10":
    ...     {"ranker-als": {"mean": 0.1, "low": 0.09, "high": 0.11}}, "candidates_recall_at_200": {"merged_list": 0.4}}}}
    >>> render_stories([story]).splitlines()[2]
    '| `s` | 0.8000 | 0.7000 | 0.5000 | 0.9000 | 0.889 | +0.1000 [+0.090, +0.110] | 0.400 | p |'
    """
    if not stories:
        return ""
    lines = [
        "| story (test block) | ranker | als | popularity | oracle | ranker / oracle | ranker - als [95% CI] | "
        "candidates recall@N | params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for story in stories:
        test = story["blocks"]["test"]
        ndcg, gap = test["ndcg_at_10"], test["paired_ndcg_at_10"].get("ranker-als")
        recall = next((v["merged_list"] for k, v in test.items() if k.startswith("candidates_recall_at_")), None)
        gap_text = "" if gap is None else f"{gap['mean']:+.4f} [{gap['low']:+.3f}, {gap['high']:+.3f}]"
        cells = [f"{ndcg.get(model, float('nan')):.4f}" for model in ("ranker", "als", "popularity", "oracle")]
        lines.append(
            f"| `{story['story']}` | {' | '.join(cells)} | {test['ranker_share_of_oracle']:.3f} | {gap_text} | "
            f"{'' if recall is None else f'{recall:.3f}'} | {story['params']} |"
        )
    return "\n".join(lines) + "\n"


def render_from_files(root: Path = REPO) -> str:
    """:func:`render_results` of the metrics files under ``root``, then the stories' table if any."""
    metrics = _read_json(root / "metrics" / "metrics.json")
    if metrics is None:
        raise FileNotFoundError(f"{root / 'metrics' / 'metrics.json'} not found; run `dvc repro` first")
    block = render_results(
        metrics,
        _read_json(root / "metrics" / "uncertainty.json"),
        _read_json(root / "metrics" / "seed_spread.json"),
    )
    stories = [_read_json(path) for path in sorted((root / "metrics" / "stories").glob("*.json"))]
    table = render_stories([story for story in stories if story is not None])
    if table:
        block += (
            "\nNDCG@10 on each simulator story (`data.story`), from `metrics/stories/*.json` "
            "(`python -m tools.story_results`):\n\n" + table
        )
    return block


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between the start and end markers replaced by ``block``.

    Raises
    ------
    ValueError
        When the markers are missing, repeated or out of order.
    """
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one {START} line followed by one {END} line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}{END}{tail}"


def current_block(text: str) -> str:
    """The text between the markers (what :func:`replace_block` would replace)."""
    replace_block(text, "")  # validates the markers
    return text.split(START, 1)[1].split(END, 1)[0].removeprefix("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's block differs, write nothing")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--root", type=Path, default=REPO, help="folder holding metrics/")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    block = render_from_files(args.root)
    if args.check:
        if current_block(text) != block:
            print(f"{args.readme}: results block is stale; run `python -m tools.render_readme`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(replace_block(text, block), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
