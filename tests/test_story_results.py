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


REPO = Path(__file__).resolve().parents[1]


def test_each_committed_story_followed_its_own_committed_selection() -> None:
    import hashlib

    stories = sorted((REPO / "metrics" / "stories").glob("*.json"))
    assert stories, "metrics/stories/ has no story"
    for path in stories:
        summary = json.loads(path.read_text(encoding="utf-8"))
        log = REPO / "selection" / summary["story"] / "log.json"
        record = summary.get("selection")
        assert record is not None, f"{path.name} has no selection record; re-run python -m tools.story_results"
        assert log.is_file(), f"{path.name} followed {record.get('log')}, which is not committed"
        assert record["log_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest(), (
            f"{path.name} was computed with another {log.relative_to(REPO)}; re-run python -m tools.story_results"
        )
        assert record["params_match_selection"] is True and record["mismatches"] == [], record["mismatches"]
        assert record.get("log_complete") is True and record.get("chosen_on") == "validation"


def test_a_story_run_takes_that_storys_choice(tmp_path: Path) -> None:
    log = tmp_path / "selection" / "sessions" / "log.json"
    write(log, {"chosen": {"als.factors": 64, "ranker.exclude_groups": ["tags"]}, "complete": True})
    params = {"data": {"story": "sessions"}, "als": {"factors": 32, "alpha": 1.0}, "ranker": {"exclude_groups": []}}
    described = story_results.apply_story_choice(params, log)
    assert params["als"] == {"factors": 64, "alpha": 1.0} and params["ranker"]["exclude_groups"] == ["tags"]
    assert "selection/sessions/log.json" in described
    assert "no selection log" in story_results.apply_story_choice({}, tmp_path / "missing.json")
