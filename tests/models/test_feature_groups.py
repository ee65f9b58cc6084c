"""Feature groups and the ranker's ablation of them (``ranker.exclude_groups``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from project_copy import dvc

from reco.models.feature_groups import FEATURE_GROUPS, feature_group, ranker_features
from reco.params import parse_section


def test_every_feature_of_the_pipeline_has_a_group_and_every_group_a_feature(tiny_pipeline: Path) -> None:
    spec = json.loads((tiny_pipeline / "data" / "features" / "train" / "features.json").read_text(encoding="utf-8"))
    groups = {name: feature_group(name) for name in spec["features"]}
    assert set(groups.values()) == set(FEATURE_GROUPS)
    assert {name for name, group in groups.items() if group == "als"} == {"als_score", "als_rank_pct"}
    assert all(group == "daily" for name, group in groups.items() if name.startswith("d_"))


def test_excluding_groups_keeps_the_order_of_the_rest() -> None:
    features = ["user_active_degree", "u_views", "als_score", "primary_tag", "d_play_rate", "duration_s"]
    kept, categorical = ranker_features(features, ["user_active_degree", "primary_tag"], ["tags", "daily"])
    assert kept == ["user_active_degree", "u_views", "als_score", "duration_s"]
    assert categorical == ["user_active_degree"]
    assert ranker_features(features, ["primary_tag"], []) == (features, ["primary_tag"])


def test_bad_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature group"):
        ranker_features(["als_score"], [], ["colour"])
    with pytest.raises(ValueError, match="no feature"):
        ranker_features(["als_score"], [], ["als"])
    with pytest.raises(ValueError, match="belongs to no group"):
        feature_group("mystery_feature")
    with pytest.raises(Exception, match="ranker.exclude_groups"):
        parse_section("ranker", {"exclude_groups": list(FEATURE_GROUPS)})


def test_the_ranker_learns_and_scores_without_an_excluded_group(tiny_pipeline_copy: Path) -> None:
    params = yaml.safe_load((tiny_pipeline_copy / "params.yaml").read_text(encoding="utf-8"))
    params["ranker"]["exclude_groups"] = ["daily"]
    (tiny_pipeline_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    dvc("repro", "evaluate@validation", cwd=tiny_pipeline_copy)
    saved = json.loads((tiny_pipeline_copy / "models" / "ranker" / "features.json").read_text(encoding="utf-8"))
    table = json.loads((tiny_pipeline_copy / "data" / "features" / "train" / "features.json").read_text(encoding="utf-8"))
    assert saved["features"] == [name for name in table["features"] if not name.startswith("d_")]
    metrics = json.loads((tiny_pipeline_copy / "metrics" / "blocks" / "validation" / "metrics.json").read_text())
    assert 0.0 <= metrics["models"]["ranker"]["ndcg_at_10"] <= 1.0
