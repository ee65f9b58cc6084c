"""Thin DVC stage scripts; run from the repository root as ``python -m stages.<name>``.

This package's import runs before any stage imports numpy, implicit or LightGBM, so it sets what their
native libraries read once: ``OPENBLAS_NUM_THREADS=1`` (implicit parallelises ALS itself) and
``OMP_WAIT_POLICY=PASSIVE`` (a waiting OpenMP thread sleeps instead of spinning on cores that other
processes share), unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. Neither changes a result;
thread counts stay as ``params.yaml`` sets them. What was measured is in docs/design/stages.md, the numbers
in benchmarks/PARALLEL.md.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
