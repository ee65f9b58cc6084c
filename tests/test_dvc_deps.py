"""Dependencies that cannot drift: dvc.yaml must declare every project module a stage imports.

For each stage, the script named in ``cmd`` is parsed with ``ast``; its imports of project modules
(``reco.*``, ``stages.*``) are followed transitively, including the ``__init__.py`` of every package
on the way (Python executes them). The declared code deps must equal that set exactly: a missing
module means stale results, an extra one means needless reruns. Likewise every params section the
code reads through ``load_section("...")`` must be declared, and nothing else.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from dvc_stages import commands, declared_params, load_stages

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("reco", "stages")


def module_path(module: str) -> Path | None:
    """The file of a project module (``reco.data.split`` -> ``reco/data/split.py``), or None."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def package_inits(module: str) -> set[Path]:
    """``__init__.py`` files Python runs before importing ``module``."""
    parts = module.split(".")
    inits = set()
    for i in range(1, len(parts)):
        init = REPO.joinpath(*parts[:i], "__init__.py")
        if init.is_file():
            inits.add(init)
    return inits


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from reco.data import split` imports the submodule reco.data.split
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def closure(script: Path) -> set[Path]:
    """Project files executed when running ``script`` (the script, its imports, transitively)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            target = module_path(module)
            if target is not None:
                todo.append(target)
                todo.extend(package_inits(module))
    return seen


def params_sections(files: set[Path]) -> set[str]:
    pattern = re.compile(r"""load_section\(\s*["'](\w+)["']""")
    return {m for f in files for m in pattern.findall(f.read_text(encoding="utf-8"))}


def scripts_of(stage: dict) -> list[Path]:
    """The stage scripts its command(s) run (``python -m stages.<name>``)."""
    found = []
    for command in commands(stage):
        match = re.search(r"python -m (stages\.\w+)", command)
        assert match, f"stage cmd should run `python -m stages.<name>`: {command}"
        path = module_path(match.group(1))
        assert path is not None
        found.append(path)
    return found


def code_closure(stage: dict) -> set[Path]:
    """Every project file the stage's commands execute (their scripts, imports and package inits)."""
    files: set[Path] = set()
    for script in scripts_of(stage):
        files |= closure(script) | package_inits(f"stages.{script.stem}")
    return files


STAGES = load_stages(REPO)
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
# A seed run sets these keys itself (`--seed N`), so its stages list every other key of the section.
SEED_KEYS = {"als.random_state", "ranker.seed"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_exactly_the_imported_project_modules(name: str) -> None:
    stage = STAGES[name]
    needed = {p.relative_to(REPO).as_posix() for p in code_closure(stage)}
    declared = {d for d in stage.get("deps", []) if d.endswith(".py")}
    assert sorted(needed - declared) == [], f"{name}: imported but not declared in dvc.yaml deps"
    assert sorted(declared - needed) == [], f"{name}: declared in dvc.yaml but never imported"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_sections_are_exactly_those_read(name: str) -> None:
    stage = STAGES[name]
    read = params_sections(code_closure(stage))
    # entries are sections ("als") or single keys ("als.factors"); {file: [keys]} mappings are not used
    entries = declared_params(stage)
    declared = {entry.split(".")[0] for entry in entries}
    assert read == declared, f"{name}: code reads params sections {sorted(read)}, dvc.yaml declares {sorted(declared)}"
    for section in {entry.split(".")[0] for entry in entries if "." in entry}:
        assert section not in entries, f"{name}: declares both the section {section!r} and single keys of it"
        keys = {entry for entry in entries if entry.startswith(section + ".")}
        every = {f"{section}.{key}" for key in PARAMS[section]}
        assert keys <= every, f"{name}: declares keys that params.yaml lacks: {sorted(keys - every)}"
        # listing keys is only for leaving out the seed a seed run sets itself; the rest must all be there
        assert every - keys <= SEED_KEYS, f"{name}: reads {section!r} but leaves out {sorted(every - keys - SEED_KEYS)}"


def test_seed_runs_leave_out_only_their_seed_keys() -> None:
    # The point of listing single keys: a change of the headline's seed reruns no seed run.
    seed_names = ("seed_als", "seed_als_ranker", "seed_candidates", "seed_features", "seed_ranker")
    seed_stages = {name: stage for name, stage in STAGES.items() if name.split("@")[0] in seed_names}
    assert seed_stages, "no seed run stages in dvc.yaml"
    for name, stage in seed_stages.items():
        assert not declared_params(stage) & SEED_KEYS, name
        assert all(command.rstrip().split()[-2:][0] == "--seed" for command in commands(stage) if "stages.features" not in command), name


def test_closure_follows_imports_inside_functions(tmp_path: Path) -> None:
    # The checker itself must see lazy imports, or a stage could hide a dependency from it.
    assert REPO / "reco" / "errors.py" in closure(REPO / "reco" / "cli.py")
