"""Thin DVC stage scripts; run from the repository root as ``python -m stages.<name>``.

This package's import runs before any stage imports numpy, so it is the one place to pin the BLAS
thread count: implicit's ALS needs ``OPENBLAS_NUM_THREADS=1`` (it parallelises itself, and a
multi-threaded BLAS under it is slower and makes implicit warn).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
