"""Do the data stages write the same bytes on every CPU code path? Hashes under several settings.

numpy picks a SIMD kernel per CPU at run time; ``NPY_DISABLE_CPU_FEATURES`` switches dispatch
targets off, which reaches on one machine the paths other CPUs take. The settings come from numpy
itself (``__cpu_dispatch__``: the dispatchable targets, in numpy's order):

``default``
    the environment as found;
``widest_off``
    the widest target group off (x86: ``X86_V4`` and ``AVX512_*``, i.e. no AVX-512; ARM: ``SVE*``;
    else the last target numpy lists);
``baseline_only``
    every dispatch target off (x86-64 with numpy 2.4: the ``X86_V2`` baseline, no AVX2/FMA3);
``polars_threads_1``
    ``POLARS_MAX_THREADS=1`` (numpy as found): does the thread count change the bytes?

A probe subprocess under each setting reports which dispatch targets numpy actually enables, so
the report says which settings took a different path on this machine (disabling a target the CPU
lacks changes nothing). ``OPENBLAS_CORETYPE`` is never touched (some machines set it for
correctness). The settings reach numpy only: polars and pyarrow dispatch on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .config import REPO_ROOT
from .measuring import BenchmarkError, child_env, write_shell_wrapper
from .pipeline_runs import StageFailed, lock_outputs, run_stages
from .workspace import make_workspace, release_scratch, select_stages, topological_stages

NUMPY_ENV_VAR: Final = "NPY_DISABLE_CPU_FEATURES"
DEFAULT_STAGES: Final = ("ingest", "prepare", "split")
# Prefixes of the widest dispatch target groups: AVX-512 on x86 (numpy ≥ 2.4 groups it as X86_V4
# plus AVX512_ICL / AVX512_SPR; older numpy names AVX512F, AVX512_SKX, ...), SVE on ARM.
WIDEST_PREFIXES: Final = ("X86_V4", "AVX512", "SVE")
# Environment variables recorded as found, never changed.
RECORDED_ENV: Final = (NUMPY_ENV_VAR, "NPY_ENABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "POLARS_MAX_THREADS")

PROBE_SCRIPT: Final = """\
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import numpy
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
dispatch = list(getattr(umath, "__cpu_dispatch__", []))
features = dict(getattr(umath, "__cpu_features__", {}))
print(json.dumps({
    "numpy": numpy.__version__,
    "baseline": list(getattr(umath, "__cpu_baseline__", [])),
    "dispatch": dispatch,
    "cpu_has": {name: bool(features.get(name)) for name in dispatch},
    "enabled": [name for name in dispatch if features.get(name)],
    "warnings": [str(w.message).strip() for w in caught],
}))
"""


def probe_numpy(env_extra: Mapping[str, str]) -> dict[str, Any]:
    """What numpy enables under ``env_extra``: its dispatch targets, the enabled ones, warnings.

    A setting numpy rejects (e.g. switching the baseline off) gives ``{"error": ...}``.
    """
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT],
        env=child_env(dict(env_extra)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip()[-1000:]}
    return json.loads(done.stdout)


def cpu_path_settings(dispatch: Sequence[str]) -> list[dict[str, Any]]:
    """The settings to compare (see the module docstring), from numpy's dispatch targets.

    Examples
    --------
    >>> settings = cpu_path_settings(["X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR"])
    >>> [s["name"] for s in settings]
    ['default', 'widest_off', 'baseline_only', 'polars_threads_1']
    >>> settings[1]["env"]
    {'NPY_DISABLE_CPU_FEATURES': 'X86_V4,AVX512_ICL,AVX512_SPR'}
    >>> settings[2]["env"]
    {'NPY_DISABLE_CPU_FEATURES': 'X86_V3,X86_V4,AVX512_ICL,AVX512_SPR'}
    """
    widest = [t for t in dispatch if t.startswith(WIDEST_PREFIXES)] or list(dispatch[-1:])
    widest_is = (
        " = AVX-512 off"
        if any(t.startswith(("X86_V4", "AVX512")) for t in widest)
        else (" = SVE off" if any(t.startswith("SVE") for t in widest) else "")
    )
    all_is = " = AVX2/FMA3 off" if any(t in ("X86_V3", "AVX2", "FMA3") for t in dispatch) else ""
    return [
        {"name": "default", "description": "the environment as found", "env": {}},
        {
            "name": "widest_off",
            "description": f"widest numpy dispatch targets off ({', '.join(widest) or 'none'}){widest_is}",
            "env": {NUMPY_ENV_VAR: ",".join(widest)} if widest else {},
        },
        {
            "name": "baseline_only",
            "description": f"every numpy dispatch target off (numpy's baseline only){all_is}",
            "env": {NUMPY_ENV_VAR: ",".join(dispatch)} if dispatch else {},
        },
        {
            "name": "polars_threads_1",
            "description": "POLARS_MAX_THREADS=1 (numpy as found)",
            "env": {"POLARS_MAX_THREADS": "1"},
        },
    ]


def file_sha256(path: Path) -> str:
    """The file's sha256, hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hash_outputs(work: Path, stages: Sequence[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of every file ``stages`` output (per ``dvc.lock``; directories walked)."""
    hashes = {}
    for out in lock_outputs(work, stages):
        path = work / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            hashes[file.relative_to(work).as_posix()] = file_sha256(file)
    return dict(sorted(hashes.items()))


def run_cpu_paths(
    profile: str,
    scale: float,
    overrides: Mapping[str, Mapping[str, Any]],
    wanted: Sequence[str],
    timeout_s: float,
    tmp_dir: str | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Run ``wanted`` stages under every setting in one copy, hashing their outputs after each.

    Every setting reruns all the stages (``--force``, in order), so each stage reads inputs made
    under the same setting. A setting that fails is recorded with its failure; the others go on.
    """
    root = Path(tempfile.mkdtemp(prefix=f"reco-bench-cpu-paths-{profile}-{scale:g}-", dir=tmp_dir))
    print(f"CPU paths: profile {profile}, scale {scale:g}, in {root}", file=sys.stderr)
    found = probe_numpy({})
    result: dict[str, Any] = {
        "profile": profile,
        "scale": float(scale),
        "overrides": dict(overrides),
        "numpy": found,
        "env_found": {name: os.environ.get(name) for name in RECORDED_ENV},
        "settings": [],
        "failed": None,
    }
    ok = False
    try:
        work, _ = make_workspace(REPO_ROOT, root, overrides)
        wrapper = write_shell_wrapper(root)
        stages = select_stages(topological_stages(work), wanted)
        result["stages"] = stages
        for setting in cpu_path_settings(found.get("dispatch") or []):
            record: dict[str, Any] = {**setting, "probe": probe_numpy(setting["env"]), "failed": None}
            result["settings"].append(record)
            if "error" in record["probe"]:
                record["failed"] = {"step": "numpy rejects the setting", "error": record["probe"]["error"]}
                continue
            rows: list[dict[str, Any]] = []
            try:
                run_stages(
                    work,
                    root / "logs" / setting["name"],
                    wrapper,
                    timeout_s,
                    rows,
                    stages,
                    env_extra=setting["env"],
                    label=f"{setting['name']}: ",
                    sample_tree=False,
                )
            except StageFailed as error:
                record["failed"] = {"step": f"stage {error.row['stage']}", "error": str(error)}
            record["wall_s"] = {row["stage"]: row["wall_s"] for row in rows}
            record["hashes"] = hash_outputs(work, stages) if not record["failed"] else {}
        ok = True
    except BenchmarkError as error:
        result["failed"] = {"step": "setup", "error": str(error)}
    finally:
        release_scratch(root, keep or not ok)
    return result


def compare_cpu_paths(cpu_paths: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting's output hashes against ``default``'s, and whether numpy took a different path.

    Returns ``identical`` (every completed setting wrote the same bytes as default; None when
    fewer than two settings completed), ``files`` (count), per setting ``same_numpy_path`` (its enabled
    dispatch targets equal default's; None if unknown), ``identical`` and ``differing_files``, and
    ``differences``: ``[{path, hashes: {setting: sha256 or None}}]`` for every file that differs.
    """
    settings = cpu_paths.get("settings") or []
    reference = next((s for s in settings if s["name"] == "default" and not s.get("failed")), None)
    if reference is None:
        return {"reference": "default", "identical": None, "files": 0, "settings": [], "differences": []}
    completed = [s for s in settings if not s.get("failed")]
    paths = sorted({path for s in completed for path in s.get("hashes") or {}})
    per_setting = []
    for setting in settings:
        enabled = (setting.get("probe") or {}).get("enabled")
        same_path = enabled == reference["probe"].get("enabled") if enabled is not None else None
        if setting.get("failed"):
            per_setting.append(
                {
                    "name": setting["name"],
                    "same_numpy_path": same_path,
                    "identical": None,
                    "differing_files": [],
                    "failed": setting["failed"],
                }
            )
            continue
        differing = [p for p in paths if (setting.get("hashes") or {}).get(p) != reference["hashes"].get(p)]
        per_setting.append(
            {
                "name": setting["name"],
                "same_numpy_path": same_path,
                "identical": not differing,
                "differing_files": differing,
                "failed": None,
            }
        )
    differences = [
        {"path": p, "hashes": {s["name"]: (s.get("hashes") or {}).get(p) for s in completed}}
        for p in paths
        if len({(s.get("hashes") or {}).get(p) for s in completed}) > 1
    ]
    return {
        "reference": "default",
        "identical": not differences if len(completed) > 1 else None,
        "files": len(paths),
        "settings": per_setting,
        "differences": differences,
    }
