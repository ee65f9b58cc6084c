"""Rewrite the code deps of every stage in dvc.yaml to exactly the project modules its commands import.

``python -m tools.sync_dvc_deps`` (``--check``: only report, exit 1 when a list differs). The import
closure is the one ``tests/test_dvc_deps.py`` checks (the scripts, their ``reco.*`` / ``stages.*``
imports, transitively, and the packages' ``__init__.py``); the lines of dvc.yaml that are not ``.py``
deps (data deps, comments, params, outs) are kept as they are. See docs/design/stages.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dvc_stages import load_stages  # noqa: E402
from test_dvc_deps import code_closure, scripts_of  # noqa: E402

_STAGE = re.compile(r"^  ([\w-]+):\s*$")
_CODE_DEP = re.compile(r"^(\s+)- ((?:reco|stages)/[\w/]+\.py)\s*$")


def wanted_deps(repo: Path) -> dict[str, list[str]]:
    """Stage name (as written in dvc.yaml, before ``@``) -> its code deps: its scripts, then the rest sorted."""
    wanted: dict[str, list[str]] = {}
    for name, stage in load_stages(repo).items():
        scripts = [p.relative_to(repo).as_posix() for p in scripts_of(stage)]
        rest = sorted({p.relative_to(repo).as_posix() for p in code_closure(stage)} - set(scripts))
        wanted.setdefault(name.split("@")[0], list(dict.fromkeys(scripts)) + rest)  # the scripts first
    return wanted


def synced(text: str, wanted: dict[str, list[str]]) -> str:
    """``text`` (dvc.yaml) with each stage's run of ``.py`` deps replaced by ``wanted``'s list."""
    out: list[str] = []
    stage = None
    done: set[str] = set()  # a stage's first run of .py deps gets the whole list; later runs are dropped
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _STAGE.match(line)
        if match:
            stage = match.group(1)
        dep = _CODE_DEP.match(line)
        if dep and stage in wanted:
            indent = dep.group(1)
            while i < len(lines) and _CODE_DEP.match(lines[i]):
                i += 1
            if stage not in done:
                out.extend(f"{indent}- {path}\n" for path in wanted[stage])
                done.add(stage)
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stages whose code deps differ; change nothing")
    args = parser.parse_args()
    path = REPO / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    new = synced(text, wanted_deps(REPO))
    if new == text:
        print("dvc.yaml: code deps already match the imports")
        return
    if args.check:
        print("dvc.yaml: code deps differ from the imports; run `python -m tools.sync_dvc_deps`", file=sys.stderr)
        sys.exit(1)
    path.write_text(new, encoding="utf-8")
    print("dvc.yaml: code deps rewritten from the imports")


if __name__ == "__main__":
    main()
