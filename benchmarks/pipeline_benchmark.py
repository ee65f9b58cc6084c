"""Benchmark the whole DVC pipeline, stage by stage, against bare ALS and LightGBM fits.

How to run (from the repository root, with the project's venv active)::

    python benchmarks/pipeline_benchmark.py                      # params.yaml's profile and scale
    python benchmarks/pipeline_benchmark.py --profile tiny --out-dir /tmp/bench_tiny
    python benchmarks/pipeline_benchmark.py --profile full --scale 2
    python benchmarks/pipeline_benchmark.py --scales 0.25,0.5,1,2  # scaling table (profile full)
    python benchmarks/pipeline_benchmark.py --scales 1,5,10         # up to ~125M logged views
    python benchmarks/pipeline_benchmark.py --engines local,dask --scales 1,2
    python benchmarks/pipeline_benchmark.py --parallel 1,2 --parallel-stages train_ranker --experiments-only
    python benchmarks/pipeline_benchmark.py --profile tiny --scales 1 --cpu-paths --out /tmp/bench-tiny

Other options: ``--out-dir DIR`` / ``--out DIR`` (where the results go), ``--keep`` (keep the temporary copies and
their logs), ``--tmp-dir DIR`` (parent of the copies), ``--no-whole-repro``, ``--set
SECTION.KEY=VALUE`` (an extra params override in the copy), ``--cache-type TYPES`` (DVC
``cache.type`` in the copy only, e.g. ``hardlink,symlink``, to compare with ``copy``),
``--timeout S`` (per subprocess), ``--bare-repeats N``, ``--report-only`` (re-derive targets, tables
and comparisons from ``OUT_DIR/results.json`` and rewrite it and RESULTS.md; nothing runs). The
experiments (below): ``--engines``, ``--parallel K,K`` with ``--parallel-stages`` and
``--parallel-threads-per-run``, ``--cpu-paths`` with ``--cpu-path-stages``; ``--experiments-only``
skips the main runs. The machine should be otherwise idle: every figure is wall time
on shared cores, and the load average before and after each run is recorded.

Nothing runs in the repository itself. Each run copies the repository's tracked and
untracked-but-not-ignored files (``git ls-files -co --exclude-standard``; ``dvc.lock`` is left out
so the copy starts from scratch) into a fresh temporary folder, sets ``data.profile`` and
``data.scale`` in its ``params.yaml`` (every other parameter stays as in the repository, except the
few a profile cannot run without: see ``PROFILE_OVERRIDES``), makes it a git repository with one
commit, points DVC's site cache into the temporary folder, and then:

1. runs every stage in DVC's topological order (``dvc stage list`` + ``dvc dag --dot``), each as
   ``python -m dvc repro --force --single-item STAGE`` in its own subprocess;
2. runs the bare fits (below), each in its own subprocess;
3. deletes every pipeline output and the DVC cache and times one whole ``dvc repro --force`` from
   scratch (skip with ``--no-whole-repro``), then a no-op ``dvc repro``;
4. measures the disk footprint and whether outputs are stored twice (workspace + cache).

Results go to ``OUT_DIR/results.json`` and ``OUT_DIR/RESULTS.md`` (default ``benchmarks/``).

What each number means
----------------------
Every stage gets two sets of numbers:

*dvc repro* (``wall_s``, ``cpu_s``, ``peak_rss_bytes``)
    The whole ``python -m dvc repro --force --single-item STAGE`` subprocess, reaped with
    ``os.wait4``. Wall time runs from starting it to reaping it: DVC's start-up (≈ 1 s), the stage
    command, hashing the outputs and copying them into the DVC cache, writing ``dvc.lock``. This is
    what the targets use (what a user waits for).
*command* (``command.wall_s``, ``command.cpu_s``, ``command.peak_rss_bytes``)
    The stage's ``cmd`` from ``dvc.yaml`` alone. DVC runs a command as ``$SHELL -c CMD``; the
    benchmark points ``SHELL`` at a small wrapper (``SHELL_WRAPPER``) that starts the real shell and
    reaps it with its own ``os.wait4``. ``wall_s - command.wall_s`` is DVC's overhead for the stage.

``cpu_s``
    User + system CPU seconds of the process and all its reaped descendants. ``cpu_s / wall_s`` near
    the thread count means the work kept its cores busy.
``peak_rss_bytes``
    ``ru_maxrss`` from ``os.wait4``. On Linux this is the **largest peak resident set of any single
    process** in the tree (the process and every descendant it reaped), **not the sum** over the
    tree. For the *dvc repro* figure it is ``max(DVC's own peak, the stage command's peak)``, so it
    never falls below DVC's own footprint (the no-op ``dvc repro`` row shows that floor; DVC's own
    peak while hashing and caching outputs can be somewhat higher). The *command* figure is the
    stage's own peak (largest process under its shell). The RSS target uses the *dvc repro* figure.
``bare ALS fit``
    The confidence matrix is rebuilt from the split file the pipeline used with the project's own
    ``reco.models.als.build_confidence_matrix`` and the id maps of the pipeline's saved model (so the
    matrix is the one ``fit_als`` built), then only ``AlternatingLeastSquares(...).fit`` is timed,
    with the repository's ``als`` params (factors, regularization, iterations, threads, seed),
    ``OPENBLAS_NUM_THREADS=1`` and a BLAS limit of 1 as in the pipeline, but implicit's default
    ``calculate_training_loss=False`` (the pipeline also computes the loss every iteration).
    ``factors_max_abs_diff`` compares the factors with the pipeline's saved ones (0 = same fit).
    Every bare fit runs ``--bare-repeats`` times (default 3, each in a fresh process); the run with
    the median fit time is reported, all times in ``fit_s_runs``.
    The process's peak RSS includes reading the parquet file and building the matrix.
``bare LightGBM fit``
    Only ``lightgbm.train`` is timed, inside the project's own ``reco.models.ranker_engine.train_ranker``
    (same datasets, params, ``num_boost_round`` and the **same early-stopping setup**; LightGBM's
    lazy dataset binning happens inside ``lightgbm.train`` and is included). ``best_iteration`` is
    checked against the pipeline's ``metrics/ranker_training.json``.
``disk``
    Apparent sizes like ``du -sb`` (each inode counted once) of ``data/``, ``models/`` and
    ``.dvc/cache``; ``duplicated_bytes`` is what is stored both in the workspace and in the cache
    as separate files (cache type ``copy``; with ``reflink`` such files share blocks on disk).

Targets (``evaluate_targets``): whole pipeline ≤ 1.3 × (bare ALS fits + bare LightGBM fit), whole
pipeline ≤ 240 s, every stage's peak RSS ≤ 3 GiB, no-op ``dvc repro`` ≤ 2 s, ``prepare`` ≤ 20 s,
``ingest`` ≤ 60 s. "Whole pipeline" is the from-scratch ``dvc repro --force`` (or the sum of the
stages with ``--no-whole-repro``). The absolute-time targets are defined for the full profile at
scale 1; on other runs they are still evaluated but marked informational.

The scaling mode (``--scales``, values in [0.01, 10]) repeats the run per scale and reports each
stage's time and peak RSS and the disk footprint (``data/``, ``models/``, ``.dvc/cache``) per scale,
plus the growth ratio from scale 1 to the largest scale (or between the two largest when 1 is not
among them): a stage that grows linearly with the data shows the ratio of the scales (exponent 1).

Experiments
-----------
``--engines local,dask``
    One complete run per engine and scale with ``compute.engine`` set in the copy; the report lines
    their stages up: wall time, wait4 peak, the stage process alone and the sum over its process tree
    (the dask engine's ``LocalCluster`` workers are child processes), sampled every 0.2 s. A run that
    fails (e.g. an engine not implemented yet) is recorded with its failure; the others go on.
``--parallel 1,2``
    k copies of the project run the same stages (``--parallel-stages``, default the whole pipeline)
    at the same moment; each run's wall time against running alone and against its fair share of
    the cores, alone × max(1, k × threads per run / cores) (target: ≤ 1.5 × the fair share), with
    the thread settings found (ALS / ranker ``num_threads``, ``OMP_WAIT_POLICY``,
    ``POLARS_MAX_THREADS``, ...).
``--cpu-paths``
    ingest, prepare and split (``--cpu-path-stages``) rerun under numpy's default path, the widest
    dispatch targets off (AVX-512 on x86), every dispatch target off (no AVX2/FMA3 on x86), and
    ``POLARS_MAX_THREADS=1``; the sha256 of every output file is compared. The settings come from
    numpy at run time and the report says which of them actually changed numpy's path here.

Experiments run at the profile and the first scale of the plan, with the ``--set`` overrides.
Failed runs and experiments are written to the results too; the exit status is then 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The package lives beside this file (benchmarks/bench); the repository root makes it importable as
# benchmarks.bench, the name the tests use too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
