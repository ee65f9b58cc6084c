"""Reading the JSON inputs of the evaluation stages: a clear error for a malformed file, the fitted label rule.

See docs/design/evaluation.md.

Example
-------
>>> rule = label_rule_from_summary({"label_rule": {"kind": "threshold", "threshold": 2.0,
...                                                "edges_ms": [5000.0], "cutoffs": [2.0, 2.0]}})
>>> rule.kind, rule.edges_ms
('threshold', (5000.0,))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reco.data.labels import LabelRule
from reco.errors import InputDataError

__all__ = ["label_rule_from_summary", "read_json"]


def read_json(path: Path) -> Any:
    """Parse a JSON input; a missing file raises :class:`FileNotFoundError` (an upstream stage has not run).

    Raises
    ------
    InputDataError
        The file is not valid JSON.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as error:
        raise InputDataError(path, f"not valid JSON: {error}") from error


def label_rule_from_summary(summary: Mapping[str, Any], source: object = "metrics/split_summary.json") -> LabelRule:
    """The fitted :class:`~reco.data.labels.LabelRule` that ``split`` recorded (``label_rule``).

    Raises
    ------
    InputDataError
        ``label_rule`` is missing, incomplete, or its cut-offs do not match its edges.
    """
    recorded = summary.get("label_rule") if isinstance(summary, Mapping) else None
    keys = ("kind", "threshold", "edges_ms", "cutoffs")
    if not isinstance(recorded, Mapping) or any(key not in recorded for key in keys):
        raise InputDataError(source, f"expected a 'label_rule' object with {list(keys)} (written by the split stage)")
    edges = tuple(float(e) for e in recorded["edges_ms"])
    cutoffs = tuple(float(c) for c in recorded["cutoffs"])
    if len(cutoffs) != len(edges) + 1:
        raise InputDataError(
            source, f"label_rule has {len(edges)} edges but {len(cutoffs)} cut-offs; expected one more cut-off"
        )
    kind, threshold = str(recorded["kind"]), float(recorded["threshold"])
    return LabelRule(kind=kind, threshold=threshold, edges_ms=edges, cutoffs=cutoffs)
