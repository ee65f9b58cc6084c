"""The pipeline benchmark as a package; ``benchmarks/pipeline_benchmark.py`` is its entry point.

Modules, one concept each:

* :mod:`.config`: paths, file names, units, the results schema version.
* :mod:`.measuring`: a subprocess measured (wall time, CPU time, peak RSS via ``os.wait4``), the
  measuring ``$SHELL`` wrapper for stage commands, helpers for short commands.
* :mod:`.tree_memory`: the RSS of a process tree sampled while it runs (stage process alone,
  stage + worker processes summed).
* :mod:`.workspace`: the temporary copy of the project, its params overrides, the stage graph.
* :mod:`.pipeline_runs`: every stage alone, the whole ``dvc repro``, the no-op ``dvc repro``.
* :mod:`.bare_fits`: the bare ALS and LightGBM fits (subprocess workers).
* :mod:`.disk`: disk footprint and outputs stored twice.
* :mod:`.machine`: machine, source revision and thread settings.
* :mod:`.breakdown`: where a run's time goes beyond the engine fits.
* :mod:`.targets`: the targets, their evaluation and the explanations of missed ones.
* :mod:`.scaling`: per-scale tables and growth ratios (time, memory, disk).
* :mod:`.engines`: the same stages under each ``compute.engine``, side by side.
* :mod:`.parallel`: k parallel experiments against one alone and the fair share of the cores.
* :mod:`.cpu_paths`: output hashes under several numpy CPU paths and thread counts.
* :mod:`.derive`: every derived part recomputed from stored measurements (``--report-only``).
* :mod:`.markdown`, :mod:`.report`, :mod:`.report_experiments`: RESULTS.md.
* :mod:`.driver`: one run in a fresh copy and the plan of runs and experiments.
* :mod:`.cli`: the command line.
"""
