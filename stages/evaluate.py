"""Stage evaluate@BLOCK: every model ranks the same block users x block videos; writes the block's results.

Usage: ``python -m stages.evaluate BLOCK [--seed N]`` (``validation`` or ``test``; ``--seed``: a seed
run's models and outputs, under ``data/seeds/N/``). Models: random,
popularity, duration, duration_popularity, popularity_within_duration, als, ranker and, with the
simulator, the oracles (:mod:`reco.evaluation.pipeline`). Writes ``metrics/blocks/BLOCK/``
(``metrics.json``, ``uncertainty.json``, ``beyond_accuracy.json``, ``segments.json``) and
``data/evaluation/BLOCK/`` (``per_user.parquet``, the served ``top_k.parquet``); the ``report``
stage merges the blocks into ``metrics/`` (:mod:`reco.evaluation.layout`). The test block's
``metrics.json`` also records the selection it follows: the sha256 of ``selection/<data.story>/log.json`` and
whether ``params.yaml`` holds its choice (:mod:`reco.experiments.selection_record`).

Bounded memory: the training views are read one user partition at a time; with
``compute.engine: dask`` the partitions (training aggregates, per-user scores and metrics) run as
Dask tasks, with the same output.
"""

from __future__ import annotations

from reco.cli import run_stage, seed_run_root, stage_args_with_seed

USAGE = "python -m stages.evaluate BLOCK [--seed N]"


def main() -> None:
    import dataclasses

    from reco.compute import compute_client
    from reco.evaluation.layout import BlockFiles
    from reco.evaluation.pipeline import evaluate_block, load_block_inputs, write_block_evaluation
    from reco.experiments.selection_record import selection_log_path, selection_record
    from reco.params import PARAMS_FILE, load_section, read_params_file

    (block_arg,), seed = stage_args_with_seed(USAGE, ["BLOCK"])
    block = str(block_arg)
    files = BlockFiles.of(block, run_root=seed_run_root(seed))
    params, compute = load_section("evaluate"), load_section("compute")
    # The test block records which selection it follows (the log's hash, params.yaml == its choice).
    all_params = read_params_file(PARAMS_FILE)
    record = selection_record(selection_log_path(all_params), all_params) if block == "test" and seed is None else None
    inputs = load_block_inputs(files, params.ks)
    with compute_client(compute) as client:
        evaluation = evaluate_block(inputs, params, client=client, compute=compute)
    if record is not None:
        evaluation = dataclasses.replace(evaluation, metrics={**evaluation.metrics, "selection": record})
    write_block_evaluation(evaluation, files)


if __name__ == "__main__":
    run_stage("evaluate", main)
