"""Stage evaluate@BLOCK: every model ranks the same block users x block videos; writes the block's results.

Usage: ``python -m stages.evaluate BLOCK`` (``validation`` or ``test``). Models: random,
popularity, duration, duration_popularity, popularity_within_duration, als, ranker and, with the
simulator, the oracles (:mod:`reco.evaluation.pipeline`). Writes ``metrics/blocks/BLOCK/``
(``metrics.json``, ``uncertainty.json``, ``beyond_accuracy.json``, ``segments.json``) and
``data/evaluation/BLOCK/`` (``per_user.parquet``, the served ``top_k.parquet``); the ``report``
stage merges the blocks into ``metrics/`` (:mod:`reco.evaluation.layout`).

Bounded memory: the training views are read one user partition at a time; with
``compute.engine: dask`` the partitions (training aggregates, per-user scores and metrics) run as
Dask tasks, with the same output.
"""

from __future__ import annotations

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.evaluate BLOCK"


def main() -> None:
    from reco.compute import compute_client
    from reco.evaluation.layout import BlockFiles
    from reco.evaluation.pipeline import evaluate_block, load_block_inputs, write_block_evaluation
    from reco.params import load_section

    (block,) = stage_args(USAGE, ["BLOCK"])
    files = BlockFiles.of(str(block))
    params, compute = load_section("evaluate"), load_section("compute")
    inputs = load_block_inputs(files, params.ks)
    with compute_client(compute) as client:
        evaluation = evaluate_block(inputs, params, client=client, compute=compute)
    write_block_evaluation(evaluation, files)


if __name__ == "__main__":
    run_stage("evaluate", main)
