"""Shared fixtures: the repository root, the real KuaiRec side files in ``../shared``, the tiny pipeline.

``tiny_pipeline`` is the tiny simulator profile (``project_copy.TINY_OVERRIDES``) built once per test
session with ``dvc repro`` in a temporary git + DVC repository; tests only read it.
``tiny_pipeline_copy`` is a fresh ``cp -a`` of it (git, DVC cache and outputs included, so
``dvc status`` is clean) for a test that edits params, code or outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before numpy loads OpenBLAS: implicit wants a single-threaded BLAS (and warns otherwise).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
from project_copy import build_tiny_pipeline, copy_built  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("RECO_SHARED_DIR", REPO_ROOT.parent / "shared"))
KUAIREC_REAL_DIR = SHARED_DIR / "kuairec-real"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def kuairec_real_dir() -> Path:
    """Real KuaiRec side files (user_features, item_categories, captions, a big_matrix head)."""
    if not KUAIREC_REAL_DIR.is_dir():
        pytest.fail(f"real KuaiRec fixtures not found at {KUAIREC_REAL_DIR}; CI provides ../shared beside the repo")
    return KUAIREC_REAL_DIR


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline, built once per session (git + DVC, ``dvc repro`` done). Read-only: never edit it.

    Under pytest-xdist the workers share one build: the first to take the lock builds it in the
    session's common temporary folder, the others wait for it and read the same folder.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline") / "repo")
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this session
    repo, built = shared / "tiny_pipeline" / "repo", shared / "tiny_pipeline" / "built"
    with open(shared / "tiny_pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.exists():
            build_tiny_pipeline(repo)
            built.touch()
    return repo


@pytest.fixture
def tiny_pipeline_copy(tiny_pipeline: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built tiny pipeline (git, DVC cache, outputs), for a test that modifies it."""
    return copy_built(tiny_pipeline, tmp_path / "repo")


# The slowest test files, slowest first (from `pytest --durations`): under pytest-xdist (`--dist loadfile
# --no-loadscope-reorder`) files are handed to the workers in collection order, so starting with the long
# ones lets the short ones fill in at the end and the workers finish together. The second one needs no tiny
# pipeline, so its worker does not wait for the first worker's build.
SLOWEST_FILES: tuple[str, ...] = (
    "tests/test_docs.py",
    "tests/data/test_interrupted_runs.py",
    "tests/test_cpu_paths.py",
    "tests/test_pipeline.py",
    "tests/test_dask_pipeline.py",
    "tests/test_dvc_remote.py",
    "tests/test_compute.py",
    "tests/test_review.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.partition("::")[0]  # relative to the rootdir: "tests/test_docs.py"
        return SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept
