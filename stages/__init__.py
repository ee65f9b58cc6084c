"""Thin DVC stage scripts; run from the repository root as ``python -m stages.<name>``.

This package's import runs before any stage imports numpy, implicit or LightGBM, so it is the one
place for settings their native libraries read once, when they load:

* ``OPENBLAS_NUM_THREADS=1``: implicit's ALS parallelises itself; a multi-threaded BLAS under it
  is slower and makes implicit warn.
* ``OMP_WAIT_POLICY=PASSIVE``: an OpenMP thread (implicit's ALS and ``recommend``, LightGBM) that
  waits for its peers sleeps instead of spinning. When other processes share the cores (parallel
  experiments, Dask workers), a spinning thread burns the time slice its descheduled peer needs:
  measured on 2 cores with two busy processes beside it, the ranker's fit (2.06M rows, 100
  rounds, 2 threads) took 56.7 s by default and 25.0 s passive (its fair share: about 2 x 12.5 s);
  alone, 11.2-16.7 s by default and 12.4-13.1 s passive, ALS 33.6-37.4 s and 35.8-36.4 s.
  Thread counts stay as params.yaml sets them (LightGBM's result depends on ``num_threads``);
  the wait policy changes no result. A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
