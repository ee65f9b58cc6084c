"""Sharing results through a DVC remote, as docs/remote.md documents.

A copy of the session's tiny-profile pipeline (``tiny_pipeline``) has its results committed and pushed to
a temporary local remote set up with docs/remote.md's commands (``dvc remote add -d``, ``dvc remote
modify ... verify true``, ``dvc push``). The tests prove that:

- a fresh ``git clone`` plus ``dvc pull``, and nothing else, gives a clean ``dvc status``, a
  ``dvc repro`` that runs no stage, an empty ``dvc metrics diff`` and outputs byte-identical to the
  originals;
- with ``verify = true`` (the documented setting) a remote object whose first bytes were
  overwritten makes ``dvc pull`` fail, and neither the workspace nor the clone's cache keeps the
  corrupted bytes; once the remote is repaired, ``dvc pull`` in the same clone succeeds;
- without it (DVC's default) the same corruption is pulled silently and ``dvc status`` calls the
  clone up to date, which is why docs/remote.md asks for the setting.

Nothing here depends on the particular stages of ``dvc.yaml``: stages and outputs are read from
``dvc stage list`` and ``dvc.lock``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from project_copy import copy_built, dvc, run

REMOTE_NAME = "storage"
MARKER = b"CORRUPTED-BY-TEST"  # same length overwrite: the object's size does not change


@dataclass(frozen=True)
class Shared:
    """The repository whose results were pushed, and the local remote they were pushed to."""

    repo: Path
    remote: Path


@dataclass
class Corruption:
    """One object of the remote whose first bytes were overwritten with :data:`MARKER`."""

    remote_object: Path
    original: bytes
    md5: str
    output: str  # the DVC output (a path in dvc.lock) that holds the file
    file: str  # the file's path in the workspace

    def restore(self) -> None:
        """Put the original bytes back (the remote's objects are read-only: lift that, then restore it)."""
        mode = self.remote_object.stat().st_mode
        self.remote_object.chmod(mode | stat.S_IWUSR)
        self.remote_object.write_bytes(self.original)
        self.remote_object.chmod(mode)


def lock_outputs(workdir: Path) -> dict[str, dict]:
    """Every output recorded in ``dvc.lock`` (all stages, ``foreach`` variants included), by path."""
    lock = yaml.safe_load((workdir / "dvc.lock").read_text(encoding="utf-8"))
    return {out["path"]: out for stage in lock["stages"].values() for out in stage.get("outs", [])}


def output_files(workdir: Path, outputs: dict[str, dict]) -> dict[str, str]:
    """sha256 of every file of ``outputs`` found under ``workdir`` (directories walked), by relative path."""
    digests = {}
    for path in outputs:
        target = workdir / path
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for file in files:
            if file.is_file():
                digests[file.relative_to(workdir).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def object_path(odb: Path, md5: str) -> Path:
    """Where DVC 3 stores the object ``md5`` in a cache or a remote: ``files/md5/<2 chars>/<rest>``."""
    return odb / "files" / "md5" / md5[:2] / md5[2:]


def clone(shared: Shared, dest: Path) -> Path:
    """``git clone`` the shared repository: what a colleague starts from (no DVC cache, no local config)."""
    run(["git", "clone", "-q", str(shared.repo), str(dest)], cwd=dest.parent, check=True)
    return dest


def output_text(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def bad_cache_objects(workdir: Path) -> list[str]:
    """Objects in ``workdir``'s DVC cache whose content does not hash to their name."""
    root = workdir / ".dvc" / "cache" / "files" / "md5"
    bad = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            name = path.parent.name + path.name
            if hashlib.md5(path.read_bytes()).hexdigest() != name.removesuffix(".dir"):
                bad.append(name)
    return bad


def files_starting_with(workdir: Path, prefix: bytes) -> list[str]:
    """Files under ``workdir`` (``.git`` excluded, the DVC cache included) that begin with ``prefix``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(workdir):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            with open(path, "rb") as fh:
                if fh.read(len(prefix)) == prefix:
                    found.append(path.relative_to(workdir).as_posix())
    return found


@pytest.fixture(scope="module")
def shared(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    """The tiny pipeline, run and committed, then pushed to a local remote set up as docs/remote.md says.

    The run is a copy of the session's ``tiny_pipeline`` (built with ``dvc repro`` in a fresh git +
    DVC repository, exactly what this module used to build itself): the remote's contract does not
    depend on who ran the stages, only on what ``dvc.lock`` and the cache hold.
    """
    workdir = copy_built(tiny_pipeline, tmp_path_factory.mktemp("origin") / "repo")
    # core.autostage has staged dvc.lock and the .gitignore files; the uncached metrics go to git.
    run(["git", "add", "dvc.lock", "metrics"], cwd=workdir, check=True)
    run(["git", "commit", "-qm", "tiny results"], cwd=workdir, check=True)
    remote = tmp_path_factory.mktemp("remote") / "dvc-storage"
    dvc("remote", "add", "-d", REMOTE_NAME, str(remote), cwd=workdir)
    dvc("remote", "modify", REMOTE_NAME, "verify", "true", cwd=workdir)
    run(["git", "add", ".dvc/config"], cwd=workdir, check=True)
    run(["git", "commit", "-qm", "DVC remote"], cwd=workdir, check=True)
    dvc("push", cwd=workdir)
    return Shared(workdir, remote)


@pytest.fixture
def corruption(shared: Shared) -> Iterator[Corruption]:
    """Overwrite the first bytes of an ALS ``user_factors.npy`` in the remote; restored afterwards.

    The object is found through ``dvc.lock`` and the ``.dir`` manifests in the remote; if no
    directory output holds a ``user_factors.npy``, the first file of any directory output is used.
    """
    candidates = []
    for path, out in sorted(lock_outputs(shared.repo).items()):
        if out.get("md5", "").endswith(".dir"):
            manifest = json.loads(object_path(shared.remote, out["md5"]).read_text(encoding="utf-8"))
            for entry in manifest:
                preferred = path.startswith("models/als") and entry["relpath"] == "user_factors.npy"
                candidates.append((not preferred, path, entry["relpath"], entry["md5"]))
    assert candidates, "dvc.lock has no directory output to corrupt"
    _, output, relpath, md5 = min(candidates)
    remote_object = object_path(shared.remote, md5)
    original = remote_object.read_bytes()
    assert len(original) > len(MARKER) and not original.startswith(MARKER)
    damaged = Corruption(remote_object, original, md5, output, f"{output}/{relpath}")
    mode = remote_object.stat().st_mode
    remote_object.chmod(mode | stat.S_IWUSR)
    with open(remote_object, "r+b") as fh:
        fh.write(MARKER)
    remote_object.chmod(mode)
    try:
        yield damaged
    finally:
        damaged.restore()


def test_push_sent_every_cached_output(shared: Shared) -> None:
    status = dvc("status", "--cloud", cwd=shared.repo)
    assert f"Cache and remote '{REMOTE_NAME}' are in sync" in status.stdout, status.stdout
    in_git = set(run(["git", "ls-files"], cwd=shared.repo, check=True).stdout.split())
    cached = [out["md5"] for path, out in lock_outputs(shared.repo).items() if path not in in_git]  # not cache: false
    assert any(md5.endswith(".dir") for md5 in cached)
    missing = [md5 for md5 in cached if not object_path(shared.remote, md5).is_file()]
    assert missing == []


def test_fresh_clone_pulls_exactly_the_pushed_results(shared: Shared, tmp_path: Path) -> None:
    workdir = clone(shared, tmp_path / "clone")
    pulled = dvc("pull", cwd=workdir)
    assert "files fetched" in pulled.stdout, pulled.stdout

    status = dvc("status", cwd=workdir)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    stages = set(dvc("stage", "list", "--name-only", cwd=workdir).stdout.split())
    repro = dvc("repro", cwd=workdir).stdout
    assert "Running stage" not in repro, repro
    assert set(re.findall(r"Stage '([^']+)' didn't change, skipping", repro)) == stages
    diff = dvc("metrics", "diff", cwd=workdir)
    assert diff.stdout.strip() == "" and diff.stderr.strip() == "", diff.stdout + diff.stderr

    outputs = lock_outputs(shared.repo)
    original, copy = output_files(shared.repo, outputs), output_files(workdir, outputs)
    assert len(original) > len(outputs)  # directory outputs were walked, not just listed
    assert copy == original


def test_verify_refuses_a_corrupted_object(shared: Shared, corruption: Corruption, tmp_path: Path) -> None:
    workdir = clone(shared, tmp_path / "clone")
    pulled = dvc("pull", cwd=workdir, check=False)
    assert pulled.returncode != 0, output_text(pulled)
    assert "failed to pull data from the cloud" in pulled.stderr, output_text(pulled)
    assert corruption.output in pulled.stderr  # the error names the output that could not be checked out
    # The verbose log says why: the downloaded object did not hash to its name and was deleted.
    again = dvc("pull", "-v", cwd=workdir, check=False)
    assert again.returncode != 0
    assert re.search(rf"corrupted cache file '[^']*{corruption.md5[:2]}/{corruption.md5[2:]}'", output_text(again))

    assert files_starting_with(workdir, MARKER) == []  # neither in the workspace nor in .dvc/cache
    assert bad_cache_objects(workdir) == []
    assert not object_path(workdir / ".dvc" / "cache", corruption.md5).exists()
    status = dvc("status", cwd=workdir)
    assert "up to date" not in status.stdout and corruption.output in status.stdout, status.stdout

    # Once the remote holds the right bytes again, the same clone recovers with a plain pull.
    corruption.restore()
    dvc("pull", cwd=workdir)
    assert (workdir / corruption.file).read_bytes() == corruption.original
    assert "Data and pipelines are up to date." in dvc("status", cwd=workdir).stdout


def test_without_verify_a_corrupted_object_enters_silently(
    shared: Shared, corruption: Corruption, tmp_path: Path
) -> None:
    """DVC's default (``verify = false``): documents why docs/remote.md asks for the setting.

    If this fails, DVC now verifies downloads by default; docs/remote.md should say so.
    """
    workdir = clone(shared, tmp_path / "clone")
    dvc("remote", "modify", "--local", REMOTE_NAME, "verify", "false", cwd=workdir)
    dvc("pull", cwd=workdir)  # exits 0
    assert (workdir / corruption.file).read_bytes()[: len(MARKER)] == MARKER
    assert bad_cache_objects(workdir) == [corruption.md5]
    assert "Data and pipelines are up to date." in dvc("status", cwd=workdir).stdout
    assert "Running stage" not in dvc("repro", cwd=workdir).stdout
