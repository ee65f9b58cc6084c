"""dvc.yaml's stages expanded as DVC names them (``foreach``: ``name@key``; ``matrix``: ``name@v1-v2``).

Shared by ``test_dvc_deps.py`` (the declared code deps and params) and ``test_pipeline.py`` (which stages a
change reruns). ``matrix`` values may be a list or a ``${section.key}`` reference into ``params.yaml``.

Examples
--------
>>> expand_stages({"s": {"matrix": {"seed": [1, 2]}, "cmd": "run ${item.seed}"}}, {})["s@2"]["cmd"]
'run 2'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"^\$\{([\w.]+)\}$")


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = value[part]
    return value


def _fill(body: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    text = yaml.safe_dump(dict(body))
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    return yaml.safe_load(text)


def expand_stages(spec_stages: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every stage of ``spec_stages`` (dvc.yaml's ``stages``) with its templates filled."""
    stages: dict[str, dict[str, Any]] = {}
    for name, stage in spec_stages.items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                values = {"key": key, **{f"item.{field}": value for field, value in item.items()}}
                stages[f"{name}@{key}"] = _fill(stage["do"], values)
        elif "matrix" in stage:
            axes = {}
            for axis, values in stage["matrix"].items():
                reference = _REFERENCE.match(values) if isinstance(values, str) else None
                axes[axis] = list(_lookup(params, reference.group(1)) if reference else values)
            body = {k: v for k, v in stage.items() if k != "matrix"}
            for combination in itertools.product(*axes.values()):
                values = {f"item.{axis}": value for axis, value in zip(axes, combination, strict=True)}
                stages[f"{name}@{'-'.join(str(v) for v in combination)}"] = _fill(body, values)
        else:
            stages[name] = dict(stage)
    return stages


def load_stages(workdir: Path) -> dict[str, dict[str, Any]]:
    """:func:`expand_stages` of ``workdir``'s dvc.yaml with its params.yaml."""
    spec = yaml.safe_load((workdir / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    return expand_stages(spec["stages"], params)


def commands(stage: Mapping[str, Any]) -> list[str]:
    """The stage's ``cmd`` as a list (DVC accepts one command or a list run in order)."""
    cmd = stage["cmd"]
    return [cmd] if isinstance(cmd, str) else list(cmd)


def declared_params(stage: Mapping[str, Any]) -> set[str]:
    """The stage's params entries from params.yaml: whole sections (``als``) and single keys (``als.factors``)."""
    return {entry for entry in stage.get("params", []) if isinstance(entry, str)}
