"""The temporary copy of the repository every run works in, its params overrides and stage order.

Nothing runs in the repository itself. A copy holds the repository's tracked and
untracked-but-not-ignored files (``git ls-files -co --exclude-standard``; ``dvc.lock`` is left out
so the copy starts from scratch), its ``params.yaml`` gets the run's overrides, and it becomes a
git repository with one commit and a DVC cache of its own.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .measuring import BenchmarkError, dvc_argv, run_quiet

# Parameters a profile cannot run without (everything else stays as in params.yaml). The tiny
# test catalogue has 80 videos, so evaluate.ks cannot reach 100 (evaluate rejects it).
PROFILE_OVERRIDES: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "tiny": {"evaluate": {"ks": [5, 10, 20, 50]}},
}


def release_scratch(root: Path, keep: bool, note: str = "") -> None:
    """Remove a benchmark's scratch folder, or keep it and say where (``--keep`` or a failed run)."""
    if keep:
        print(f"  kept {root}{note}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def list_source_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of ``repo`` (``git ls-files -co --exclude-standard``)."""
    out = run_quiet(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo)
    return sorted({name for name in out.split("\0") if name})


def set_params(params_path: Path, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Apply ``{section: {key: value}}`` to a params.yaml; return the resulting params."""
    import yaml

    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def merge_overrides(*sources: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` mappings merged left to right (a later value wins)."""
    merged: dict[str, dict[str, Any]] = {}
    for source in sources:
        for section, values in (source or {}).items():
            merged.setdefault(section, {}).update(values)
    return merged


def run_overrides(
    profile: str, scale: float, extra: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The params overrides of one run: data.profile/data.scale, the profile's must-haves, ``extra``."""
    return merge_overrides({"data": {"profile": profile, "scale": float(scale)}}, PROFILE_OVERRIDES.get(profile), extra)


def make_workspace(
    source: Path, root: Path, overrides: Mapping[str, Mapping[str, Any]], cache_type: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Copy ``source`` into ``root/repo``, override params, git init + commit, configure DVC.

    Returns the copy's path and its full params. DVC's cache is pinned to the copy's own
    ``.dvc/cache`` and its site cache goes to ``root/site-cache`` (both in ``.dvc/config.local``, so
    the repository's ``.dvc/config`` is used as it is); ``cache_type`` sets ``cache.type`` there too.
    """
    work = root / "repo"
    work.mkdir(parents=True)
    for name in list_source_files(source):
        if name == "dvc.lock":  # the copy starts from scratch
            continue
        src, dst = source / name, work / name
        if not src.is_file():  # deleted since git listed it (someone is working in the repo)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    params = set_params(work / "params.yaml", overrides)
    run_quiet(["git", "init", "-q"], cwd=work)
    if not (work / ".dvc").is_dir():
        run_quiet(dvc_argv("init", "-q"), cwd=work)
    run_quiet(dvc_argv("config", "--local", "core.site_cache_dir", str(root / "site-cache")), cwd=work)
    run_quiet(dvc_argv("config", "--local", "cache.dir", str(work / ".dvc" / "cache")), cwd=work)
    if cache_type:
        run_quiet(dvc_argv("config", "--local", "cache.type", cache_type), cwd=work)
    run_quiet(["git", "add", "-A"], cwd=work)
    run_quiet(["git", "commit", "-q", "--no-verify", "-m", "pipeline benchmark"], cwd=work)
    return work, params


def stage_graph(work: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Stage names (foreach expanded, dvc.yaml order) and the (upstream, downstream) edges of ``dvc dag``."""
    names = [n for n in run_quiet(dvc_argv("stage", "list", "--name-only"), cwd=work).split() if n]
    dot = run_quiet(dvc_argv("dag", "--dot"), cwd=work)
    return names, re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dot)


def topological_stages(work: Path) -> list[str]:
    """Stage names (foreach expanded) in DVC's dependency order, ties kept in dvc.yaml order."""
    return topological_order(*stage_graph(work))


def topological_order(names: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm; among ready nodes the one listed first in ``names`` goes first.

    >>> topological_order(["c", "a", "b"], [("a", "c"), ("b", "c")])
    ['a', 'b', 'c']
    """
    position = {name: i for i, name in enumerate(names)}
    parents: dict[str, set[str]] = {name: set() for name in names}
    for upstream, downstream in edges:
        if upstream in position and downstream in position:
            parents[downstream].add(upstream)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in done and parents[n] <= done]
        if not ready:
            raise BenchmarkError(f"the stage graph has a cycle among {sorted(set(names) - done)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


def select_stages(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The stages of ``names`` that ``wanted`` names, in ``names``' order (``train_als``: every ``train_als@KEY``).

    >>> select_stages(["ingest", "train_als@a", "train_als@b", "train_ranker"], ["train_ranker", "train_als"])
    ['train_als@a', 'train_als@b', 'train_ranker']
    """
    unknown = [w for w in wanted if not any(n == w or n.startswith(f"{w}@") for n in names)]
    if unknown:
        raise BenchmarkError(f"unknown stage(s) {unknown}; the pipeline has {list(names)}")
    return [n for n in names if any(n == w or n.startswith(f"{w}@") for w in wanted)]


def upstream_stages(order: Sequence[str], edges: Iterable[tuple[str, str]], targets: Sequence[str]) -> list[str]:
    """Every stage ``targets`` depend on, directly or not (``targets`` excluded), in ``order``.

    >>> upstream_stages(["a", "b", "c", "d"], [("a", "b"), ("b", "d"), ("c", "d")], ["b"])
    ['a']
    """
    parents: dict[str, set[str]] = {}
    for upstream, downstream in edges:
        parents.setdefault(downstream, set()).add(upstream)
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    return [name for name in order if name in needed and name not in targets]
