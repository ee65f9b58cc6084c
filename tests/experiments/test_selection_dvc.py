"""A generator trial of the staged selection through real DVC on the tiny profile: ALS and the candidates only."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from project_copy import subprocess_env

from reco.experiments import selection_trials
from reco.experiments.selection_space import parse_space
from reco.experiments.selection_trials import Trial


def lock_at(rev: str) -> dict[str, Any]:
    """The stages of ``dvc.lock`` as committed at ``rev``."""
    text = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(text)["stages"]


def test_a_generator_trial_runs_only_als_and_the_candidates(tiny_pipeline_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in subprocess_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tiny_pipeline_copy)
    space = parse_space({"seeds": [1, 2, 3], "start": {}, "steps": []})
    trial = Trial(overrides={"candidates.popularity_quota": 5})
    selection_trials.run_trials([trial], space, jobs=1, seeds=[1], judge="candidates")
    assert trial.error is None, trial.error
    # the union's and ALS's recall@N of seed 1's validation candidates, read from the experiment's outputs
    assert set(trial.results) == {"candidates"} and trial.seeds == (1,)
    recall, als_recall = trial.results["candidates"]["recall"], trial.results["candidates"]["als_recall"]
    assert len(recall) == len(als_recall) == 1 and 0.0 < recall[0] <= 1.0 and 0.0 <= als_recall[0] <= recall[0]
    after = lock_at(trial.rev)
    before = yaml.safe_load(Path("dvc.lock").read_text(encoding="utf-8"))["stages"]  # the built copy's workspace
    # seed 1's ALS and candidates ran with the trial's quota (the candidates' lock entry records it) ...
    assert after["seed_candidates@1"]["params"]["params.yaml"]["candidates"]["popularity_quota"] == 5
    assert after["seed_candidates@1"] != before["seed_candidates@1"]
    # ... and nothing after them: the ranker's side of seed 1 is the baseline's, untouched
    for stage in ("seed_features@1", "seed_ranker@1"):
        assert after[stage] == before[stage], stage
