"""Time the selection on issue #20's committed space (one pass), each candidate judged on 3 seeds.

``python benchmarks/selection_timing.py [--out benchmarks/selection_timing.json]`` rebuilds the space
committed at 6850bb0 (``selection/space.yaml`` then: 12 steps, one greedy pass) in today's format: it
starts from the values that space's log chose (``selection/log.json``), fixes every other setting, and
judges each candidate on seeds [1, 2, 3] with :func:`reco.experiments.selection.select`. It writes the
seconds after each step, the total and the step log (issue #20, part 4, compares it with that space's
single-seed run). It runs DVC experiments in this repository (``dvc exp remove -A`` clears them) and never
touches ``params.yaml`` or ``selection/``. Run it alone on the machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: the package is the repository's
SPACE_COMMIT = "6850bb0"  # the commit issue #20 measured the single-seed selection at
SEEDS = [1, 2, 3]


def issue20_space() -> dict[str, Any]:
    """Issue #20's committed space in today's format (start = that space's chosen values)."""
    from reco.experiments.selection_space import parse_space, uncovered

    def at_commit(path: str) -> Any:
        text = subprocess.run(["git", "show", f"{SPACE_COMMIT}:{path}"], cwd=REPO, capture_output=True, text=True, check=True)
        return yaml.safe_load(text.stdout) if path.endswith(".yaml") else json.loads(text.stdout)

    old = at_commit("selection/space.yaml")
    chosen = at_commit("selection/log.json")["chosen"]
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    steps = [{"key": s["key"], "values": s["values"], "judge": s.get("judge", "ranker")} for s in old["steps"]]
    searched = {s["key"] for s in steps}
    reason = "issue #20's committed space: the value its log chose (timing comparison only)"
    spec = {
        "target": {"block": "validation", "metric": "ndcg_at_10"},
        "seeds": SEEDS,
        "alpha": 0.05,
        "max_passes": 1,
        "start": {key: {"value": chosen[key], "reason": reason} for key in sorted(searched)},
        "steps": steps,
    }
    not_searched = uncovered(parse_space(spec, "issue #20's space"), params)
    return spec | {"fixed": {key: "not in issue #20's committed space (timing comparison only)" for key in not_searched}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "selection_timing.json")
    args = parser.parse_args(argv)
    from reco.experiments.selection import select
    from reco.experiments.selection_space import parse_space
    spec = issue20_space()
    space = parse_space(spec, "issue #20's space")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    started = time.monotonic()
    elapsed: list[float] = []

    def on_step(chosen: dict[str, Any], log: list[dict[str, Any]]) -> None:
        elapsed.append(round(time.monotonic() - started, 1))
        print(f"selection_timing: step {len(log)}/{len(space.steps)} done at {elapsed[-1]} s", file=sys.stderr, flush=True)

    chosen, log = select(space, jobs=1, on_step=on_step)
    result = {
        "head": head,
        "space_commit": SPACE_COMMIT,
        "seeds": SEEDS,
        "total_s": round(time.monotonic() - started, 1),
        "elapsed_after_step_s": elapsed,
        "chosen": chosen,
        "steps": log,
    }
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    print(f"selection_timing: {result['total_s']} s in all; {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
