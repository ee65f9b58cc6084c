"""Run the committed pipeline on another simulator story and record its headline: ``metrics/stories/<story>.json``.

``python -m tools.story_results --story sessions`` clones the committed HEAD into a temporary folder, sets
``data.story`` (and ``seed_spread.seeds: []``: the seed runs are not needed for the headline), runs
the settings that story's own selection chose on its validation block (``selection/<story>/log.json``,
when committed), runs ``dvc repro`` there and writes, per block, the NDCG@10 of the ranker, ALS, popularity and the story's
true-probability oracle, the ranker's share of the oracle, the paired ranker - ALS and ranker -
popularity differences with their 95% intervals, the candidates' recall@N per source, and the test block's
record of the selection it followed (the log's sha256, whether the params held its choice). See
docs/simulator.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from reco.experiments.selection_record import selection_log_path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "metrics" / "stories"
MODELS = ("ranker", "als", "popularity", "oracle")
PAIRS = ("ranker-als", "ranker-popularity", "als-popularity")


def summarise(workdir: Path, story: str, commit: str) -> dict[str, Any]:
    """The story's headline from a built pipeline's ``metrics/``."""
    metrics = json.loads((workdir / "metrics" / "metrics.json").read_text(encoding="utf-8"))
    blocks: dict[str, Any] = {}
    for block in ("validation", "test"):
        models = metrics[block]["models"]
        uncertainty = json.loads((workdir / "metrics" / "blocks" / block / "uncertainty.json").read_text(encoding="utf-8"))
        candidates = json.loads((workdir / "metrics" / "candidates" / f"{block}.json").read_text(encoding="utf-8"))
        n = candidates["n"]
        ndcg = {model: models[model]["ndcg_at_10"] for model in MODELS if model in models}
        blocks[block] = {
            "ndcg_at_10": ndcg,
            "ranker_share_of_oracle": round(ndcg["ranker"] / ndcg["oracle"], 4) if "oracle" in ndcg else None,
            "paired_ndcg_at_10": {
                pair: {k: uncertainty["paired"][pair]["ndcg_at_10"][k] for k in ("mean", "low", "high")}
                for pair in PAIRS
                if pair in uncertainty.get("paired", {})
            },
            f"candidates_recall_at_{n}": {
                "merged_list": candidates[f"recall_at_{n}"],
                **{name: entry[f"recall_at_{n}"] for name, entry in candidates.get("sources", {}).items()},
            },
        }
    return {
        "story": story,
        "commit": commit,
        "params": "the committed params.yaml, seed_spread.seeds: []",
        "selection": metrics["test"].get("selection"),
        "blocks": blocks,
    }


def apply_story_choice(params: dict[str, Any], log_path: Path) -> str:
    """Write the story's committed selection choice into ``params`` (in place); what the params are, in words."""
    if not log_path.is_file():
        return "the committed params.yaml (no selection log for this story), seed_spread.seeds: []"
    chosen = json.loads(log_path.read_text(encoding="utf-8"))["chosen"]
    for key, value in chosen.items():
        section, name = key.split(".", 1)
        params.setdefault(section, {})[name] = value
    return f"the committed params.yaml with the choice of the story's own selection (selection/{log_path.parent.name}/log.json), seed_spread.seeds: []"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--story", required=True, help="data.story to run (see docs/simulator.md)")
    parser.add_argument("--tmp-dir", type=Path, default=None)
    parser.add_argument(
        "--from-workspace", action="store_true", help="summarise this repository's own metrics/ (its story) instead"
    )
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    if args.from_workspace:
        own = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["data"].get("story", "latent_drift")
        if own != args.story:
            print(f"error: params.yaml has data.story {own!r}, not {args.story!r}", file=sys.stderr)
            return 2
        return _write(summarise(REPO, args.story, commit) | {"params": "the committed params.yaml and run"}, args.story)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix=f"story-{args.story}-", dir=args.tmp_dir) as scratch:
        work = Path(scratch) / "repo"
        subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
        params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
        params["data"]["story"] = args.story
        params["seed_spread"]["seeds"] = []
        described = apply_story_choice(params, work / selection_log_path(params))
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=work, env=env, check=True)
        summary = summarise(work, args.story, commit) | {"params": described}
    return _write(summary, args.story)


def _write(summary: dict[str, Any], story: str) -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{story}.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
