"""tools/story_results.py: a story's headline read from a pipeline's metrics, and its README table row."""

from __future__ import annotations

import json
from pathlib import Path

from tools import render_readme, story_results


def write(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_a_story_headline_comes_from_the_metrics_files(tmp_path: Path) -> None:
    models = {"ranker": {"ndcg_at_10": 0.8}, "als": {"ndcg_at_10": 0.7}, "popularity": {"ndcg_at_10": 0.5},
              "oracle": {"ndcg_at_10": 0.9}}  # fmt: skip
    write(tmp_path / "metrics" / "metrics.json", {b: {"models": models} for b in ("validation", "test")})
    paired = {"ranker-als": {"ndcg_at_10": {"mean": 0.1, "low": 0.09, "high": 0.11, "win_rate": 0.7}}}
    candidates = {"n": 200, "recall_at_200": 0.46, "sources": {"als": {"recall_at_200": 0.46}, "popularity": {"recall_at_200": 0.33}}}
    for block in ("validation", "test"):
        write(tmp_path / "metrics" / "blocks" / block / "uncertainty.json", {"paired": paired})
        write(tmp_path / "metrics" / "candidates" / f"{block}.json", candidates)
    summary = story_results.summarise(tmp_path, "sessions", "c" * 40)
    test = summary["blocks"]["test"]
    assert test["ranker_share_of_oracle"] == round(0.8 / 0.9, 4)
    assert test["paired_ndcg_at_10"] == {"ranker-als": {"mean": 0.1, "low": 0.09, "high": 0.11}}
    assert test["candidates_recall_at_200"] == {"merged_list": 0.46, "als": 0.46, "popularity": 0.33}
    row = render_readme.render_stories([summary | {"params": "p"}]).splitlines()[2]
    assert row == "| `sessions` | 0.8000 | 0.7000 | 0.5000 | 0.9000 | 0.889 | +0.1000 [+0.090, +0.110] | 0.460 | p |"
