"""Interrupted runs: a stage killed with SIGKILL leaves no partial output and ``dvc repro`` recovers.

A tiny-profile git + DVC repository is made once per module. A stage is then killed in the middle
of ``dvc repro`` in two ways:

- deterministically, at a chosen write: a ``sitecustomize.py`` that exists only in this test's
  temporary folder (put on ``PYTHONPATH``) wraps ``os.replace`` in the stage process and sends
  itself SIGKILL just before a chosen rename (inside the temporary folder, between the two
  renames of the folder swap, before the metrics file). No test hook lives in the product code;
- from outside, as a user or the OOM killer would: the test waits for the stage's temporary
  folder to appear (its name carries the writer's pid) and kills that process.

Afterwards every declared output is either absent or byte-identical to a clean run, the only
debris are hidden ``*.tmp`` temporaries, ``dvc repro`` brings back the clean run's bytes, and the
next run of the stage removes the debris.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project_copy import copy_project, dvc, init_repo, run, subprocess_env

TINY = {"data": {"profile": "tiny"}}
OUTPUTS = ("data/raw", "data/prepared", "metrics/data_quality.json")

# Loaded by every Python process started with this folder on PYTHONPATH; active only in the
# prepare stage (not in dvc itself) and only when RECO_TEST_SIGKILL_BEFORE_REPLACE is set.
SITECUSTOMIZE = '''
import os
import signal
import sys

_TARGET = os.environ.get("RECO_TEST_SIGKILL_BEFORE_REPLACE")
if _TARGET and "stages.prepare" in getattr(sys, "orig_argv", []):
    _real_replace = os.replace

    def _replace(src, dst, *args, **kwargs):
        if os.fspath(dst).endswith(_TARGET):
            os.kill(os.getpid(), signal.SIGKILL)
        return _real_replace(src, dst, *args, **kwargs)

    os.replace = _replace
'''


def digests(repo: Path) -> dict[str, str]:
    """sha256 of every visible file of the prepare pipeline's outputs (hidden temporaries excluded)."""
    found = {}
    for rel in OUTPUTS:
        path = repo / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files:
            if not any(part.startswith(".") for part in file.relative_to(repo).parts):
                found[str(file.relative_to(repo))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def hidden_temporaries(repo: Path) -> list[str]:
    return sorted(
        str(p.relative_to(repo)) for top in ("data", "metrics") if (repo / top).is_dir() for p in (repo / top).iterdir()
        if p.name.endswith(".tmp")
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository on the tiny profile with ingest and prepare run once."""
    root = copy_project(tmp_path_factory.mktemp("interrupted"), overrides=TINY)
    init_repo(root, "tiny")
    dvc("repro", "prepare", cwd=root)
    hooks = root.parent / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return root


@pytest.fixture(scope="module")
def clean(repo: Path) -> dict[str, str]:
    """The outputs of the uninterrupted run."""
    found = digests(repo)
    assert set(OUTPUTS[2:]) <= set(found) and any(name.startswith("data/prepared/") for name in found)
    return found


def assert_no_partial_output(repo: Path, clean: dict[str, str]) -> None:
    """Each output is absent or whole: every visible file present has the clean run's bytes."""
    now = digests(repo)
    assert {name: digest for name, digest in now.items() if clean.get(name) != digest} == {}
    for folder in ("data/raw", "data/prepared"):  # a folder is there as a whole or not at all
        expected = {name for name in clean if name.startswith(folder + "/")}
        present = {name for name in now if name.startswith(folder + "/")}
        assert present in (set(), expected), folder


def assert_recovered(repo: Path, clean: dict[str, str], stage: str) -> None:
    """``dvc repro`` brings back the clean outputs; the next real run of the stage removes the debris.

    DVC may restore the stage from its run cache without running it (``--no-run-cache`` did not
    prevent that with DVC 3.67), so the debris of the kill can outlive the first repro; the
    forced run shows that the stage itself copes with it and sweeps it.
    """
    dvc("repro", "prepare", cwd=repo)
    status = dvc("status", "prepare", cwd=repo).stdout
    assert "up to date" in status.lower(), status
    assert digests(repo) == clean
    assert all(Path(name).name.startswith(".") for name in hidden_temporaries(repo))
    dvc("repro", "--force", "--single-item", stage, cwd=repo)
    assert digests(repo) == clean
    assert hidden_temporaries(repo) == []


@pytest.mark.parametrize(
    "before_rename_of",
    [
        "big_matrix.parquet",  # the first table inside the temporary folder
        "data/prepared",  # between the two renames that swap the folder in
        "data_quality.json",  # the folder is in place, the metrics file is not
    ],
)
def test_sigkill_mid_stage_leaves_no_partial_output(repo: Path, clean: dict[str, str], before_rename_of: str) -> None:
    env = {"PYTHONPATH": str(repo.parent / "hooks"), "RECO_TEST_SIGKILL_BEFORE_REPLACE": before_rename_of}
    killed = dvc("repro", "--force", "--single-item", "prepare", cwd=repo, env=env, check=False)
    # DVC reports "-9" when the stage's process is the shell's own (exec), "137" when the shell
    # forked it and turned the signal into an exit status (dash vs bash, CI vs here): both are SIGKILL.
    output = killed.stdout + killed.stderr
    assert killed.returncode != 0 and re.search(r"exited with (-9|137)\b", output), output

    assert_no_partial_output(repo, clean)
    assert hidden_temporaries(repo), "the killed writer should have left its temporary behind"
    status = dvc("status", "prepare", cwd=repo).stdout
    assert "up to date" not in status.lower(), status  # DVC knows the stage did not finish

    assert_recovered(repo, clean, "prepare")


def test_sigkill_between_the_renames_of_a_folder_swap(repo: Path, clean: dict[str, str]) -> None:
    # Run the script directly, so data/prepared exists (dvc removes outputs before a run) and
    # atomic_dir really swaps: old folder parked aside, then killed before the new one moves in.
    assert (repo / "data" / "prepared").is_dir()
    env = {"PYTHONPATH": str(repo.parent / "hooks"), "RECO_TEST_SIGKILL_BEFORE_REPLACE": "data/prepared"}
    killed = run([sys.executable, "-m", "stages.prepare"], cwd=repo, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    assert not (repo / "data" / "prepared").exists()  # absent, never half old and half new
    assert_no_partial_output(repo, clean)
    parked = [name for name in hidden_temporaries(repo) if name.endswith(".old.tmp")]
    assert len(parked) == 1, hidden_temporaries(repo)
    assert_recovered(repo, clean, "prepare")


def test_external_sigkill_of_ingest_then_repro_recovers(repo: Path, clean: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", "ingest"],
        cwd=repo, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    pattern = re.compile(r"^\.raw\.(\d+)\.\w+\.tmp$")
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and time.monotonic() < deadline and process.poll() is None:
        for entry in (repo / "data").iterdir():
            if match := pattern.match(entry.name):
                pid = int(match.group(1))
                break
        else:
            time.sleep(0.005)
    assert pid is not None, "the ingest stage never started writing"
    os.kill(pid, signal.SIGKILL)  # the stage's python process, named by its temporary folder
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output

    assert_no_partial_output(repo, clean)
    assert not (repo / "data" / "raw").exists()  # DVC removed it before the run; nothing half-written appeared
    assert_recovered(repo, clean, "ingest")
