"""The README and docs/ cannot rot: their commands run, their output lines hold, their links resolve.

Every command in a ```bash block (each line) or a ```console block (each ``$ `` line) of README.md
and docs/**/*.md is either run here or ends with a ``# needs: ...`` marker naming what CI lacks
(:data:`NEEDS`). The runnable commands of a page run top to bottom, as a reader would type them, in
one shell in a fresh copy of the tiny pipeline (``tiny_pipeline``; the pages run at once, each in
its own copy), with the placeholders of :data:`PLACEHOLDERS` filled in; in a console block the lines after a command are
output, each matched (``...`` = any text, runs of spaces collapsed) in order against what the
command printed. Commands marked ``needs: full profile`` are not run, but their script must exist
and accept every option shown. The README's two install commands are checked piecewise (CI runs the
test command verbatim; nothing is pip-installed here). Also: the README has at most 200 lines,
links every docs page, its annotated tree names real paths, its results block is what
``tools.render_readme`` renders from the committed metrics, and no page copies a measured figure.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from project_copy import REPO, copy_built, subprocess_env

from tools import render_readme

README = REPO / "README.md"
DOCS = REPO / "docs"
INSTALL_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && dvc repro"
)
TEST_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -q -r requirements-dev.txt && python -m pytest"
)
NEEDS = {"real data", "network", "gpu", "cluster", "full profile"}
MARKER = re.compile(r"\s+#\s*needs:\s*(?P<needs>[^#]+?)\s*$")
# The committed search (successive halving) over one setting on the tiny profile: one draw screened on
# seed 1, then confirmed on 3 seeds (the committed space searches every model setting); every other
# setting is fixed (see _setup_selection).
TINY_SPACE = {
    "target": {"block": "validation", "metric": "ndcg_at_10"},
    "seeds": [1, 2, 3],
    "search": {"method": "halving", "configurations": 1, "screen_seeds": [1], "keep": 1, "judge": "ranker"},
    "start": {"ranker.num_leaves": {"value": 15, "reason": "the tiny profile's value"}},
    "steps": [{"key": "ranker.num_leaves", "values": [15, 7], "judge": "ranker"}],
}


@dataclass
class DocCommand:
    """One command of a page: where it is, what it needs, and the output lines the page shows."""

    page: Path
    line: int
    command: str
    needs: frozenset[str] = frozenset()
    output: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def parse_commands(page: Path) -> list[DocCommand]:
    """The commands of ``page``'s ```bash and ```console blocks, in order."""
    commands: list[DocCommand] = []
    fence: str | None = None
    pending = ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip() or "plain")
            continue
        if fence == "bash":
            if not stripped or (stripped.startswith("#") and not pending):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            commands.append(_command(page, number, pending + stripped))
            pending = ""
        elif fence == "console":
            if stripped.startswith("$ "):
                commands.append(_command(page, number, stripped[2:]))
            elif commands and commands[-1].line < number and stripped:
                commands[-1].output.append(stripped)
    return commands


def _command(page: Path, number: int, text: str) -> DocCommand:
    match = MARKER.search(text)
    if match is None:
        return DocCommand(page, number, text.strip())
    needs = frozenset(part.strip() for part in match["needs"].split(","))
    return DocCommand(page, number, text[: match.start()].strip(), needs)


def all_commands() -> list[DocCommand]:
    return [command for page in doc_pages() for command in parse_commands(page)]


def runnable(page: Path) -> list[DocCommand]:
    """The commands of ``page`` this module runs (not marked, not the README's install commands)."""
    return [c for c in parse_commands(page) if not c.needs and c.command not in (INSTALL_COMMAND, TEST_COMMAND)]


def normalise(line: str) -> str:
    return re.sub(r"\s+", " ", line.strip())


def matches_in_order(expected: list[str], printed: str) -> list[str]:
    """The expected lines not found, in order, among the printed lines (``...`` matches any text)."""
    lines = [normalise(line) for line in printed.splitlines()]
    missing, position = [], 0
    for pattern_line in expected:
        if normalise(pattern_line) == "...":
            continue
        parts = normalise(pattern_line).split("...")
        pattern = re.compile(".*".join(re.escape(part.strip()) if len(parts) > 1 else re.escape(part) for part in parts))
        for index in range(position, len(lines)):
            if pattern.fullmatch(lines[index]):
                position = index + 1
                break
        else:
            missing.append(pattern_line)
    return missing


# --------------------------------------------------------------------------------------------
# The README itself
# --------------------------------------------------------------------------------------------


def test_readme_is_one_screenful_and_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    linked = {(README.parent / target).resolve() for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)}
    pages = set(DOCS.rglob("*.md"))
    assert pages, "docs/ has no page"
    assert sorted(str(p.relative_to(REPO)) for p in pages - linked) == []


def test_links_between_pages_resolve() -> None:
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to missing {target}"


def test_readme_results_block_is_rendered_from_the_committed_metrics() -> None:
    text = README.read_text(encoding="utf-8")
    assert render_readme.current_block(text) == render_readme.render_from_files(REPO), (
        "README's results block is stale: run `python -m tools.render_readme`"
    )


def _synthetic_results() -> tuple[dict, dict, dict]:
    """A small metrics.json, uncertainty.json and seed_spread.json in the files' shapes."""

    def block(ranker: float, als: float) -> dict:
        data = {"source": "simulate", "profile": "tiny", "users_evaluated": 3, "items": 9}
        return {"data": data, "models": {"als": {"ndcg_at_10": als, "map_at_10": als / 2},
                                         "ranker": {"ndcg_at_10": ranker, "map_at_10": ranker / 2}}}  # fmt: skip

    metrics = {"protocol": "fully_observed", "label_kind": "threshold", "label_threshold": 2.0,
               "test": block(0.5, 0.6), "validation": block(0.4, 0.3)}  # fmt: skip
    uncertainty = {"test": {"intervals": {"als": {"ndcg_at_10": {"low": 0.55, "high": 0.65}}}}}
    spread = {"seeds": [1, 2], "blocks": {"validation": {"models": {"als": {"ndcg_at_10": {"mean": 0.31, "std": 0.01}}}}}}
    return metrics, uncertainty, spread


def test_renderer_orders_models_and_formats_intervals() -> None:
    metrics, uncertainty, spread = _synthetic_results()
    rendered = render_readme.render_results(metrics, uncertainty, spread)
    rows = [line for line in rendered.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `als` | 0.6000 [0.550, 0.650] | 0.3000 | 0.3000 | 0.1500 | 0.3100 ± 0.0100 |",
        "| `ranker` | 0.5000 | 0.2500 | 0.4000 | 0.2000 |  |",
    ]
    document = f"# T\n\n{render_readme.START}\nold\n{render_readme.END}\nafter\n"
    replaced = render_readme.replace_block(document, rendered)
    assert render_readme.current_block(replaced) == rendered and replaced.endswith(f"{render_readme.END}\nafter\n")
    with pytest.raises(ValueError):
        render_readme.replace_block("no markers", rendered)


def test_render_readme_command_checks_then_rewrites(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    names = ("metrics.json", "uncertainty.json", "seed_spread.json")
    for name, document in zip(names, _synthetic_results(), strict=True):
        (tmp_path / "metrics" / name).write_text(json.dumps(document), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n{render_readme.START}\nstale\n{render_readme.END}\n", encoding="utf-8")
    args = ["--readme", str(readme), "--root", str(tmp_path)]
    assert render_readme.main(["--check", *args]) == 1
    assert render_readme.main(args) == 0
    assert render_readme.main(["--check", *args]) == 0
    assert render_readme.current_block(readme.read_text(encoding="utf-8")) == render_readme.render_from_files(tmp_path)


def test_readme_tree_names_real_paths() -> None:
    text = README.read_text(encoding="utf-8")
    tree = text.split("## Repository", 1)[1].split("```", 2)[1]
    outputs = {str(path).split("/")[0] + "/" for path in _dvc_outputs()}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    tracked_paths = set(tracked.splitlines())
    tops = {path.split("/")[0] for path in tracked_paths}
    named: list[str] = []
    parents: list[str] = []
    for line in tree.splitlines()[1:]:
        match = re.match(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\S+)", line)
        if match is None:
            continue
        depth = len(match["indent"]) // 4
        parents = parents[:depth]
        path = "".join(parents) + match["name"]
        parents.append(match["name"] if match["name"].endswith("/") else match["name"] + "/")
        named.append(path)
        exists = path in tracked_paths or any(p.startswith(path) for p in tracked_paths) or path in outputs
        assert exists, f"README tree names {path}, which is neither tracked nor a DVC output"
    # Every tracked top-level entry but the dot-files is in the tree.
    shown = {path.rstrip("/").split("/")[0] for path in named}
    assert sorted(t for t in tops - shown if not t.startswith(".")) == []


def _dvc_outputs() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    outs: list[str] = []
    for stage in stages.values():
        for entry in stage.get("outs", []) + stage.get("do", {}).get("outs", []):
            outs.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outs


# --------------------------------------------------------------------------------------------
# The two commands
# --------------------------------------------------------------------------------------------


def test_readme_shows_the_two_commands_and_ci_runs_the_test_command_verbatim() -> None:
    commands = [c.command for c in parse_commands(README)]
    assert INSTALL_COMMAND in commands and TEST_COMMAND in commands
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines()


def test_install_command_pieces_hold(tiny_pipeline: Path) -> None:
    # pip install -r requirements.txt: the file pins DVC (whose `dvc repro` follows) and every runtime library
    pins = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^dvc==", pins, flags=re.MULTILINE)
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    # dvc repro, on the tiny profile: the session fixture ran it; the results it promises are there
    assert INSTALL_COMMAND.endswith("&& dvc repro")
    metrics = json.loads((tiny_pipeline / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    assert {"validation", "test"} <= set(metrics)
    for name in ("uncertainty.json", "seed_spread.json", "model_card.md"):
        assert (tiny_pipeline / "metrics" / name).is_file(), name


# --------------------------------------------------------------------------------------------
# Every command: marked, or run
# --------------------------------------------------------------------------------------------


def test_every_marker_is_known() -> None:
    unknown = [(c.where, sorted(c.needs - NEEDS)) for c in all_commands() if c.needs - NEEDS]
    assert unknown == []


def test_every_page_with_commands_is_run_here() -> None:
    pages = {page.relative_to(REPO).as_posix() for page in doc_pages() if runnable(page)}
    assert pages <= set(RUN_PAGES), f"pages with runnable commands not run by this module: {pages - set(RUN_PAGES)}"


def test_full_profile_commands_name_real_scripts_and_options() -> None:
    for command in (c for c in all_commands() if "full profile" in c.needs):
        words = shlex.split(command.command)
        assert words[0] == "python", command.where
        script = REPO / words[1]
        assert script.is_file(), command.where
        usage = subprocess.run(
            ["python", str(script), "--help"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
            timeout=300, check=True,
        ).stdout  # fmt: skip
        for option in (word.split("=")[0] for word in words[2:] if word.startswith("--")):
            assert option in usage, f"{command.where}: {option} is not an option of {words[1]}"


def _setup_selection(workdir: Path) -> None:
    from reco.experiments.selection_space import MODEL_SECTIONS

    params = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    searched = {step["key"] for step in TINY_SPACE["steps"]}
    fixed = {
        f"{section}.{key}": "fixed for the tiny docs test"
        for section in MODEL_SECTIONS
        for key in params[section]
        if f"{section}.{key}" not in searched
    }
    space = {**TINY_SPACE, "fixed": fixed}
    (workdir / "selection").mkdir(exist_ok=True)
    (workdir / "selection" / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")


def _check_protocol(workdir: Path) -> None:
    metrics = json.loads((workdir / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["protocol"] == "temporal" and metrics["label_threshold"] == 1.0


def _check_selection(workdir: Path) -> None:
    from reco.experiments.selection_record import selection_log_path

    params = yaml.safe_load((workdir / "params.yaml").read_text(encoding="utf-8"))
    log = json.loads((workdir / selection_log_path(params)).read_text(encoding="utf-8"))
    assert log["complete"] and set(log["chosen"]) <= {"ranker.num_leaves"}
    assert [entry["round"] for entry in log["steps"]] == ["screen", "final"]
    assert params["ranker"]["num_leaves"] == 63  # the experiment's results are in the workspace


def _check_remote(workdir: Path) -> None:
    clone = workdir.parent / "clone"
    for name in ("metrics/metrics.json", "dvc.lock"):
        assert (clone / name).read_bytes() == (workdir / name).read_bytes(), name
    assert (clone / "data" / "evaluation" / "test" / "top_k.parquet").is_file()


# page -> (set-up before its commands, check after them)
RUN_PAGES = {
    "README.md": (None, None),
    "docs/protocol.md": (None, _check_protocol),
    "docs/selection-and-review.md": (_setup_selection, _check_selection),
    "docs/remote.md": (None, _check_remote),
}


@dataclass
class PageRun:
    """One page's commands run as one shell script in its own copy of the tiny pipeline."""

    workdir: Path
    commands: list[DocCommand]
    log: Path  # the script's stdout and stderr
    process: subprocess.Popen[bytes] | None = None


def start_page(page: str, workdir: Path) -> PageRun:
    """Set the copy up as :data:`RUN_PAGES` says and start the page's commands (placeholders filled)."""
    setup, _ = RUN_PAGES[page]
    run = PageRun(workdir, runnable(REPO / page), workdir.parent / "commands.log")
    if not run.commands:
        return run
    if setup is not None:
        setup(workdir)
    placeholders = {
        "/path/to/dvc-storage": str(workdir.parent / "storage"),
        "<repository URL>": str(workdir),
        "<new folder>": str(workdir.parent / "clone"),
    }
    script = ["exec 2>&1", f"cd {shlex.quote(str(workdir))}"]
    for index, command in enumerate(run.commands):
        text = command.command
        for placeholder, value in placeholders.items():
            text = text.replace(placeholder, value)
        script += [f"echo '@@@ {index}'", f"{{ {text} ; }} || {{ echo \"@@@ failed {index} $?\"; exit 1; }}"]
    with open(run.log, "wb") as log:
        run.process = subprocess.Popen(["bash", "-c", "\n".join(script)], env=subprocess_env(), stdout=log)
    return run


@pytest.fixture(scope="module")
def page_runs(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PageRun]:
    """Every page of :data:`RUN_PAGES` run in a fresh copy of the tiny pipeline; the pages' runs are
    independent (each its own copy, remote and clone), so they run at once and the tests read their results."""
    runs = {}
    for page in sorted(RUN_PAGES):
        folder = tmp_path_factory.mktemp("page")
        runs[page] = start_page(page, copy_built(tiny_pipeline, folder / "repo"))
    for run in runs.values():
        if run.process is not None:
            try:
                run.process.wait(timeout=1200)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
    return runs


@pytest.mark.parametrize("page", sorted(RUN_PAGES))
def test_page_commands_run_on_the_tiny_profile(page: str, page_runs: dict[str, PageRun]) -> None:
    run = page_runs[page]
    commands = run.commands
    assert commands, f"{page} has no runnable command any more: drop it from RUN_PAGES"
    assert run.process is not None
    stdout = run.log.read_text(encoding="utf-8", errors="replace")
    outputs = re.split(r"^@@@ \d+$", stdout, flags=re.MULTILINE)[1:]
    failed = re.search(r"^@@@ failed (\d+) (\d+)$", stdout, flags=re.MULTILINE)
    if failed or run.process.returncode != 0:
        index = int(failed[1]) if failed else len(outputs) - 1
        pytest.fail(f"{commands[index].where}: `{commands[index].command}` failed:\n{outputs[index][-4000:]}")
    for command, printed in zip(commands, outputs, strict=True):
        missing = matches_in_order(command.output, printed)
        assert missing == [], f"{command.where}: `{command.command}` did not print {missing}:\n{printed[-4000:]}"
    _, check = RUN_PAGES[page]
    if check is not None:
        check(run.workdir)


# --------------------------------------------------------------------------------------------
# Numbers from one place
# --------------------------------------------------------------------------------------------

# A measured figure: a value with four or more decimals, or a quantity of time, memory or disk.
MEASURED = re.compile(r"\b\d+\.\d{4,}\b|\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|min|minutes|GiB|MiB|GB|MB)\b")
# Quantities that are not measurements of this project: limits, targets, inputs of the simulator's story.
NOT_MEASURED = {
    "> 8 GiB": "the archive size ingest refuses (reco/data/download.py)",
    "6 GiB target": "the memory target of a stage at 10x",
    "7-13 s clips": "the simulator's story: video lengths it draws",
    "sub-second to 5 s loops": "the simulator's story: video lengths it draws",
    "about 11 s for every length from 6 s": "KuaiRec's published statistic the simulator is calibrated to",
}


def test_no_page_copies_a_measured_figure() -> None:
    found = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        if page == README:
            head, rest = text.split(render_readme.START, 1)
            text = head + rest.split(render_readme.END, 1)[1]
        text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # commands and their shown output
        for phrase in NOT_MEASURED:
            text = text.replace(phrase, "")
        for line in text.splitlines():
            found += [f"{page.relative_to(REPO)}: {hit!r} in {line.strip()[:100]!r}" for hit in MEASURED.findall(line)]
    assert found == []
