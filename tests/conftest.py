"""Shared fixtures: the repository root and the real KuaiRec side files in ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path

# Before numpy loads OpenBLAS: implicit wants a single-threaded BLAS (and warns otherwise).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

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
