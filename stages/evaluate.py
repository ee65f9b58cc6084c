"""Stage evaluate@BLOCK: every model ranks the same block users x block videos; writes the block's results.

Usage: ``python -m stages.evaluate BLOCK`` (``validation`` or ``test``). Models: random,
popularity, duration, duration_popularity, popularity_within_duration, als, ranker and, with the
simulator, the oracles (:mod:`reco.evaluation.pipeline`). Writes ``metrics/blocks/BLOCK/``
(``metrics.json``, ``uncertainty.json``, ``beyond_accuracy.json``, ``segments.json``) and
``data/evaluation/BLOCK/`` (``per_user.parquet``, the served ``top_k.parquet``); the ``report``
stage merges the blocks into ``metrics/`` (:mod:`reco.evaluation.layout`).
"""

from __future__ import annotations

from reco.cli import run_stage, stage_args

USAGE = "python -m stages.evaluate BLOCK"


def main() -> None:
    from reco.evaluation.layout import BlockFiles
    from reco.evaluation.pipeline import evaluate_block, load_block_inputs, write_block_evaluation
    from reco.params import load_section

    (block,) = stage_args(USAGE, ["BLOCK"])
    files = BlockFiles.of(str(block))
    params = load_section("evaluate")
    write_block_evaluation(evaluate_block(load_block_inputs(files, params.ks), params), files)


if __name__ == "__main__":
    run_stage("evaluate", main)
