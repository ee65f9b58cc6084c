"""Disk footprint of a copy after a run, and which pipeline outputs are stored twice.

Sizes are apparent sizes like ``du -sb`` (each inode counted once) of ``data/``, ``models/`` and
``.dvc/cache``; ``duplicated_bytes`` is what is stored both in the workspace and in the cache as
separate files (cache type ``copy``; with ``reflink`` such files share blocks on disk).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Final

from .config import MIB
from .measuring import dvc_argv, run_quiet

LARGE_FILE_BYTES: Final = 1 * MIB  # files at least this big are listed when stored twice
DISK_PARTS: Final = ("data", "models", "dvc_cache")  # the keys of disk_report()["bytes"]


def tree_bytes(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Apparent size like ``du -sb``: files, directories and symlinks (not followed), each inode once."""
    seen = set() if seen is None else seen
    total = 0
    if not os.path.lexists(path):
        return 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            continue
        ident = (info.st_dev, info.st_ino)
        if ident not in seen:
            seen.add(ident)
            total += info.st_size
        if stat.S_ISDIR(info.st_mode):
            with os.scandir(current) as entries:
                stack.extend(Path(entry.path) for entry in entries)
    return total


def _cache_object(work: Path, md5: str) -> Path:
    return work / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def output_storage(work: Path) -> list[dict[str, Any]]:
    """Every cached output file: size and how the workspace copy relates to the cache object.

    ``link`` is ``hardlink`` (same inode), ``symlink``, ``copy`` (a separate file: stored twice,
    unless the filesystem shares blocks through a reflink) or ``not-in-cache``.
    """
    import yaml

    lock = yaml.safe_load((work / "dvc.lock").read_text(encoding="utf-8"))
    files: list[tuple[str, str]] = []
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            md5 = out.get("md5")
            if not md5:
                continue
            if md5.endswith(".dir"):
                manifest = _cache_object(work, md5)
                if manifest.is_file():
                    for entry in json.loads(manifest.read_text(encoding="utf-8")):
                        files.append((f"{out['path']}/{entry['relpath']}", entry["md5"]))
            else:
                files.append((out["path"], md5))
    rows = []
    for rel, md5 in sorted(files):
        workspace, cached = work / rel, _cache_object(work, md5)
        if not os.path.lexists(workspace):
            continue
        if workspace.is_symlink():
            link = "symlink"
        elif not cached.is_file():
            link = "not-in-cache"
        elif os.path.samefile(workspace, cached):
            link = "hardlink"
        else:
            link = "copy"
        rows.append({"path": rel, "bytes": os.stat(workspace).st_size, "link": link})
    return rows


def dvc_cache_config(work: Path) -> dict[str, Any]:
    """``cache.type`` as configured, and what ``dvc doctor`` says the cache filesystem supports."""
    listing = run_quiet(dvc_argv("config", "--list"), cwd=work)
    configured = next((line.split("=", 1)[1] for line in listing.splitlines() if line.startswith("cache.type=")), None)
    doctor = run_quiet(dvc_argv("doctor"), cwd=work)
    supported = re.search(r"^Cache types:\s*(.+)$", doctor, re.MULTILINE)
    filesystem = re.search(r"^Cache directory:\s*(.+)$", doctor, re.MULTILINE)
    return {
        "cache_type_configured": configured,
        "cache_type_effective_setting": configured or "reflink,copy (DVC's default)",
        "link_types_supported": [t.strip() for t in supported.group(1).split(",")] if supported else [],
        "cache_filesystem": filesystem.group(1).strip() if filesystem else None,
    }


def disk_report(work: Path) -> dict[str, Any]:
    """Sizes of data/, models/, .dvc/cache (and all three, each inode once) and duplicated outputs."""
    shared: set[tuple[int, int]] = set()
    parts = dict(zip(DISK_PARTS, (work / "data", work / "models", work / ".dvc" / "cache"), strict=True))
    sizes = {name: tree_bytes(path) for name, path in parts.items()}
    combined = sum(tree_bytes(path, shared) for path in parts.values())
    storage = output_storage(work)
    links: dict[str, int] = {}
    for row in storage:
        links[row["link"]] = links.get(row["link"], 0) + 1
    duplicated = [row for row in storage if row["link"] == "copy"]
    return {
        "bytes": sizes,
        "combined_unique_bytes": combined,
        "output_files": len(storage),
        "output_links": links,
        "duplicated_bytes": sum(row["bytes"] for row in duplicated),
        "large_duplicates": sorted(
            (row for row in duplicated if row["bytes"] >= LARGE_FILE_BYTES), key=lambda r: -r["bytes"]
        )[:15],
        **dvc_cache_config(work),
    }
