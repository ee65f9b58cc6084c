"""Stage seed_spread: gather the seed runs' validation metrics into metrics/seed_spread.json.

The seed runs themselves are the pipeline's stages run with ``--seed N`` (``seed_als@N``,
``seed_ranker@N`` in dvc.yaml), so DVC caches each seed's ALS work apart from its ranker work
(:mod:`reco.experiments.seed_spread`). See docs/selection-and-review.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage, seed_run_root

OUT_FILE = Path("metrics/seed_spread.json")


def main() -> None:
    from reco.evaluation.inputs import read_json
    from reco.evaluation.layout import BlockFiles
    from reco.experiments.seed_spread import SEED_BLOCK, seed_spread
    from reco.io import write_json
    from reco.params import load_section

    params = load_section("seed_spread")
    files = {seed: BlockFiles.of(SEED_BLOCK, run_root=seed_run_root(seed)).metrics_file for seed in params.seeds}
    runs = {seed: read_json(path) for seed, path in files.items()}
    spread = seed_spread(runs, where={seed: str(path) for seed, path in files.items()})
    if not params.seeds:
        spread["note"] = "seed_spread.seeds is empty"
    write_json(spread, OUT_FILE)


if __name__ == "__main__":
    run_stage("seed_spread", main)
