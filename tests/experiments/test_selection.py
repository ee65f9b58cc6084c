"""The selection's search logic, without DVC: trials are scored by a known function of their settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reco.experiments import selection
from reco.experiments.selection import Step, Trial, apply_to_params, select


def fake_runner(score: dict[str, Any], runs: list[dict[str, Any]]):
    """A ``run_trials`` that scores each trial with ``score`` and records what it was asked to run."""

    def run_trials(trials: list[Trial], block: str, jobs: int) -> None:
        assert block == "validation"
        for trial in trials:
            runs.append(dict(trial.overrides))
            trial.name = f"exp-{len(runs)}"
            trial.rev = ""
            trial.results = {model: {"ndcg_at_10": fn(trial.overrides)} for model, fn in score.items()}

    return run_trials


def test_a_value_replaces_the_incumbent_only_beyond_min_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[dict[str, Any]] = []
    # als.alpha 10 -> +0.001 (noise), 100 -> +0.01 (real); ranker.num_leaves 63 -> +0.0015 (noise)
    score = {
        "als": lambda o: 0.5 + {1.0: 0.0, 10.0: 0.001, 100.0: 0.01}[o["als.alpha"]],
        "ranker": lambda o: 0.6 + (0.0015 if o["ranker.num_leaves"] == 63 else 0.0),
    }
    monkeypatch.setattr(selection, "run_trials", fake_runner(score, runs))
    steps = [Step("als.alpha", (10.0, 100.0), "als"), Step("ranker.num_leaves", (15, 63), "ranker")]
    params = {"als": {"alpha": 1.0}, "ranker": {"num_leaves": 31}}
    logged: list[int] = []
    chosen, log = select(
        steps, params, block="validation", metric="ndcg_at_10", min_gain=0.002, jobs=1,
        on_step=lambda chosen, log: logged.append(len(log)),
    )  # fmt: skip
    assert chosen == {"als.alpha": 100.0, "ranker.num_leaves": 31}
    assert [entry["chosen"] for entry in log] == [100.0, 31]
    assert log[0]["incumbent"] == 1.0 and log[0]["incumbent_score"] == pytest.approx(0.5)
    assert logged == [1, 2]  # the log is handed out after every step
    # the second step starts from the first step's winner, and that configuration is not run twice
    assert runs.count({"als.alpha": 100.0, "ranker.num_leaves": 31}) == 1
    assert len(runs) == 3 + 2


def test_a_failed_trial_never_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_trials(trials: list[Trial], block: str, jobs: int) -> None:
        for trial in trials:
            if trial.overrides["als.factors"] == 64:
                trial.error = "experiment failed"
            else:
                trial.results = {"als": {"ndcg_at_10": 0.5}}

    monkeypatch.setattr(selection, "run_trials", run_trials)
    chosen, log = select(
        [Step("als.factors", (64,), "als")], {"als": {"factors": 32}},
        block="validation", metric="ndcg_at_10", min_gain=0.0, jobs=1,
    )  # fmt: skip
    assert chosen == {"als.factors": 32}
    assert log[0]["trials"][1]["error"] == "experiment failed"


def test_apply_to_params_changes_values_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "als:\n  alpha: 50.0             # a positive view's confidence\n  factors: 32\n"
        "ranker:\n  factors: 7  # not the als key\n  num_leaves: 31\n",
        encoding="utf-8",
    )
    changed = apply_to_params({"als.alpha": 10.0, "als.factors": 32, "ranker.num_leaves": 63}, path)
    assert changed == ["als.alpha", "ranker.num_leaves"]
    text = path.read_text(encoding="utf-8")
    assert "  alpha: 10.0             # a positive view's confidence\n" in text
    assert yaml.safe_load(text) == {"als": {"alpha": 10.0, "factors": 32}, "ranker": {"factors": 7, "num_leaves": 63}}


def test_the_test_block_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("target: {block: test}\nsteps:\n  - {key: als.alpha, values: [1.0], judge: als}\n", encoding="utf-8")
    monkeypatch.setattr(selection, "run_trials", lambda *a, **k: pytest.fail("nothing may run"))
    assert selection.main(["--space", str(space)]) == 2
    assert "test block is never used" in capsys.readouterr().err


def test_the_committed_space_is_valid() -> None:
    spec, steps = selection.load_space()
    assert spec["target"]["block"] == "validation"
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    for step in steps:
        assert selection.current_value(params, step.key) is not None, f"{step.key} is not in params.yaml"
        assert step.judge in {"als", "ranker"}


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (0.25, "0.25"), ([1, 2], "[1, 2]"), ("holdout", "holdout")])
def test_values_are_written_as_dvc_parses_them(value: Any, text: str) -> None:
    assert selection._yaml_value(value) == text
    assert yaml.safe_load(text) == value
