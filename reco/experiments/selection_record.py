"""What ``evaluate@test`` records of the selection: the committed log's sha256 and whether ``params.yaml`` holds
the values that log chose, so that a test result can be traced to a choice made on validation before it
(``metrics/blocks/test/metrics.json`` -> ``"selection"``, copied to ``metrics/metrics.json`` by ``report``;
``tests/test_selection_record.py`` checks the committed files). See docs/selection-and-review.md.

Examples
--------
>>> mismatches = compare_chosen({"als.factors": 32, "ranker.objective": "x"}, {"als": {"factors": 64}})
>>> [(m["key"], m["reason"]) for m in mismatches]
[('als.factors', 'differs'), ('ranker.objective', 'not in params.yaml')]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from reco.errors import InputDataError

__all__ = ["SELECTION_DIR", "compare_chosen", "lookup", "same_value", "selection_log_path", "selection_record"]

SELECTION_DIR: Final = Path("selection")
_MISSING: Final = object()


def selection_log_path(params: Mapping[str, Any]) -> Path:
    """The committed selection log of the data that ``params`` describe: ``selection/<data.story>/log.json``.

    Each simulator story has its own choice, made on its own validation block (for real KuaiRec,
    ``data.story`` only names the folder).

    Examples
    --------
    >>> selection_log_path({"data": {"story": "sessions"}}).as_posix()
    'selection/sessions/log.json'
    """
    story = (params.get("data") or {}).get("story") or "latent_drift"
    return SELECTION_DIR / str(story) / "log.json"


def lookup(params: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted ``key`` (``"section.name"``, nested as DVC's ``-S`` reads it) or a sentinel.

    Examples
    --------
    >>> lookup({"als": {"factors": 32}}, "als.factors"), lookup({"als": {}}, "als.factors") is _MISSING
    (32, True)
    """
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def same_value(chosen: Any, current: Any) -> bool:
    """Whether a value from the log (JSON) and one from ``params.yaml`` (YAML) are the same setting.

    Numbers compare by value (``50`` and ``50.0`` are the same), booleans only with booleans,
    lists item by item and mappings key by key.

    Examples
    --------
    >>> same_value(50.0, 50), same_value(True, 1), same_value([1, "a"], [1.0, "a"]), same_value("0.1", 0.1)
    (True, False, True, False)
    """
    if isinstance(chosen, bool) or isinstance(current, bool):
        return isinstance(chosen, bool) and isinstance(current, bool) and chosen == current
    if isinstance(chosen, int | float) and isinstance(current, int | float):
        return float(chosen) == float(current)
    if isinstance(chosen, list | tuple) and isinstance(current, list | tuple):
        return len(chosen) == len(current) and all(same_value(a, b) for a, b in zip(chosen, current, strict=True))
    if isinstance(chosen, Mapping) and isinstance(current, Mapping):
        return set(chosen) == set(current) and all(same_value(chosen[key], current[key]) for key in chosen)
    return type(chosen) is type(current) and chosen == current


def compare_chosen(chosen: Mapping[str, Any], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every setting whose value in ``params`` differs from the log's choice, or is absent, in key order."""
    mismatches = []
    for key in sorted(chosen):
        current = lookup(params, key)
        if current is _MISSING:
            mismatches.append({"key": key, "chosen": chosen[key], "params": None, "reason": "not in params.yaml"})
        elif not same_value(chosen[key], current):
            mismatches.append({"key": key, "chosen": chosen[key], "params": current, "reason": "differs"})
    return mismatches


def selection_record(log_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"selection"`` object of the test block's metrics.

    Returns
    -------
    dict
        ``{"log", "log_sha256", "log_complete", "chosen_on", "settings", "params_match_selection",
        "mismatches"}``: the log's path, the sha256 of its bytes, its ``complete`` flag and
        ``meta.block`` (``None`` when absent), the number of chosen settings, and the comparison
        with ``params``. A missing log gives ``log_sha256: None``, ``params_match_selection:
        False`` and an ``"error"`` (under DVC the log is a declared dependency and cannot be missing).

    Raises
    ------
    InputDataError
        The log is not JSON or has no ``"chosen"`` object of settings.
    """
    path = Path(log_path)
    if not path.is_file():
        return {
            "log": path.as_posix(),
            "log_sha256": None,
            "params_match_selection": False,
            "mismatches": [],
            "error": f"{path.as_posix()} not found: choose the settings on validation first "
            "(python -m reco.experiments.selection) and commit the log",
        }
    data = path.read_bytes()
    try:
        log = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputDataError(path, f"not valid JSON ({error})") from error
    chosen = log.get("chosen") if isinstance(log, dict) else None
    if not isinstance(chosen, dict):
        raise InputDataError(path, "expected an object with a 'chosen' object of settings (key -> value)")
    meta = log.get("meta")
    mismatches = compare_chosen(chosen, params)
    return {
        "log": path.as_posix(),
        "log_sha256": hashlib.sha256(data).hexdigest(),
        "log_complete": log.get("complete"),
        "chosen_on": meta.get("block") if isinstance(meta, dict) else None,
        "settings": len(chosen),
        "params_match_selection": not mismatches,
        "mismatches": mismatches,
    }
