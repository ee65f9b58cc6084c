"""The selection's search logic, without DVC: trials are scored per seed by a known function of their settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from reco.experiments import selection, selection_trials
from reco.experiments.selection import Trial, apply_to_params, seed_paired_gain, select
from reco.experiments.selection_space import MODEL_SECTIONS, Space, Step, load_space, parse_space, uncovered

SEEDS = (1, 2, 3)


def space_of(steps: list[Step], start: dict[str, Any], max_passes: int = 2) -> Space:
    return Space(
        block="validation", metric="ndcg_at_10", seeds=SEEDS, alpha=0.05, max_passes=max_passes,
        start=start, start_reasons={key: "test" for key in start}, steps=tuple(steps),
    )  # fmt: skip


def fake_runner(score: dict[str, Callable[[dict[str, Any], int], float]], runs: list[dict[str, Any]]):
    """A ``run_trials`` that scores each trial and seed with ``score`` and records what it was asked to run."""

    def run_trials(trials: list[Trial], space: Space, jobs: int) -> None:
        assert space.block == "validation" and space.seeds == SEEDS
        for trial in trials:
            runs.append(dict(trial.overrides))
            trial.name = f"exp-{len(runs)}"
            trial.results = {
                model: {"ndcg_at_10": [fn(trial.overrides, seed) for seed in space.seeds]} for model, fn in score.items()
            }

    return run_trials


# seed noise shared by every configuration run with the same seed, plus a small independent part
SEED_EFFECT = {1: 0.004, 2: -0.003, 3: 0.001}


def test_a_value_replaces_the_incumbent_only_beyond_the_seeds_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[dict[str, Any]] = []
    wobble = {1: 0.002, 2: -0.002, 3: 0.0}  # alpha 10: a mean gain of +0.001 that the seeds do not confirm
    score = {
        "als": lambda o, s: 0.5 + SEED_EFFECT[s] + {1.0: 0.0, 10.0: 0.001 + wobble[s], 100.0: 0.01}[o["als.alpha"]],
        "ranker": lambda o, s: 0.6 + SEED_EFFECT[s] + (0.0015 * (s - 2) if o["ranker.num_leaves"] == 63 else 0.0),
    }
    monkeypatch.setattr(selection, "run_trials", fake_runner(score, runs))
    steps = [Step("als.alpha", (10.0, 100.0), "als"), Step("ranker.num_leaves", (15, 63), "ranker")]
    logged: list[int] = []
    chosen, log = select(
        space_of(steps, {"als.alpha": 1.0, "ranker.num_leaves": 31}), jobs=1,
        on_step=lambda chosen, log: logged.append(len(log)),
    )  # fmt: skip
    assert chosen == {"als.alpha": 100.0, "ranker.num_leaves": 31}
    first = log[0]
    gains = {trial["value"]: trial["gain_over_incumbent"] for trial in first["trials"]}
    assert gains[1.0] is None and not gains[10.0]["accepted"] and gains[100.0]["accepted"]
    assert gains[100.0]["mean"] == pytest.approx(0.01) and gains[100.0]["df"] == 2
    # pass 1 changed als.alpha, so pass 2 runs; it changes nothing and the search stops
    assert [entry["pass"] for entry in log] == [1, 1, 2, 2] and logged == [1, 2, 3, 4]
    # a configuration is never run twice (pass 2 reuses pass 1's runs where they match)
    assert len(runs) == len({json.dumps(r, sort_keys=True) for r in runs})


def test_a_second_pass_undoes_what_the_start_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    # a interacts with b: with b = 0 (the start) a = 1 looks best; once b = 1 is chosen, a = 2 is.
    table = {(0, 0): 0.50, (1, 0): 0.52, (2, 0): 0.51, (0, 1): 0.50, (1, 1): 0.53, (2, 1): 0.60}
    runs: list[dict[str, Any]] = []
    score = {"ranker": lambda o, s: table[(o["x.a"], o["x.b"])] + SEED_EFFECT[s]}
    monkeypatch.setattr(selection, "run_trials", fake_runner(score, runs))
    steps = [Step("x.a", (0, 1, 2), "ranker"), Step("x.b", (0, 1), "ranker")]
    one_pass, _ = select(space_of(steps, {"x.a": 0, "x.b": 0}, max_passes=1), jobs=1)
    assert one_pass == {"x.a": 1, "x.b": 1}
    chosen, log = select(space_of(steps, {"x.a": 0, "x.b": 0}, max_passes=3), jobs=1)
    assert chosen == {"x.a": 2, "x.b": 1}
    assert max(entry["pass"] for entry in log) == 3  # pass 2 changed a; pass 3 changed nothing


def test_a_failed_trial_never_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_trials(trials: list[Trial], space: Space, jobs: int) -> None:
        for trial in trials:
            if trial.overrides["als.factors"] == 64:
                trial.error = "experiment failed"
            else:
                trial.results = {"als": {"ndcg_at_10": [0.5, 0.51, 0.49]}}

    monkeypatch.setattr(selection, "run_trials", run_trials)
    chosen, log = select(space_of([Step("als.factors", (64,), "als")], {"als.factors": 32}), jobs=1)
    assert chosen == {"als.factors": 32}
    assert log[0]["trials"][1]["error"] == "experiment failed"


def test_the_rule_accepts_pure_seed_noise_at_most_alpha_of_the_time() -> None:
    # Two configurations with the same expected metric, each run on the same 3 seeds: the seed's
    # shared part cancels in the paired difference; what is left is noise the rule must not call a gain.
    rng = np.random.default_rng(7)
    trials = 4000
    accepted = 0
    for _ in range(trials):
        shared = rng.normal(0.0, 0.003, 3)
        incumbent = 0.8 + shared + rng.normal(0.0, 0.002, 3)
        candidate = 0.8 + shared + rng.normal(0.0, 0.002, 3)
        accepted += seed_paired_gain(incumbent.tolist(), candidate.tolist(), 0.05)["accepted"]
    rate = accepted / trials
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials), rate
    # and a real gain of two noise sd's is found most of the time
    found = sum(
        seed_paired_gain((0.8 + e).tolist(), (0.8 + 0.006 + e + rng.normal(0, 0.002, 3)).tolist(), 0.05)["accepted"]
        for e in (rng.normal(0, 0.002, 3) for _ in range(500))
    )
    assert found / 500 > 0.6


def test_apply_to_params_changes_values_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "als:\n  alpha: 50.0             # a positive view's confidence\n  factors: 32\n"
        "ranker:\n  factors: 7  # not the als key\n  num_leaves: 31\n  exclude_groups: []\n",
        encoding="utf-8",
    )
    changed = apply_to_params(
        {"als.alpha": 10.0, "als.factors": 32, "ranker.num_leaves": 63, "ranker.exclude_groups": ["daily"]}, path
    )
    assert changed == ["als.alpha", "ranker.num_leaves", "ranker.exclude_groups"]
    text = path.read_text(encoding="utf-8")
    assert "  alpha: 10.0             # a positive view's confidence\n" in text
    assert yaml.safe_load(text) == {
        "als": {"alpha": 10.0, "factors": 32}, "ranker": {"factors": 7, "num_leaves": 63, "exclude_groups": ["daily"]}
    }  # fmt: skip


def test_the_test_block_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "target: {block: test}\nseeds: [1, 2, 3]\nstart: {als.alpha: {value: 1.0, reason: default}}\n"
        "steps:\n  - {key: als.alpha, values: [1.0], judge: als}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(selection, "run_trials", lambda *a, **k: pytest.fail("nothing may run"))
    assert selection.main(["--space", str(space)]) == 2
    assert "test block is never used" in capsys.readouterr().err


def test_a_space_that_misses_a_setting_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "target: {block: validation}\nseeds: [1, 2, 3]\nstart: {als.alpha: {value: 1.0, reason: default}}\n"
        "steps:\n  - {key: als.alpha, values: [1.0], judge: als}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(selection, "run_trials", lambda *a, **k: pytest.fail("nothing may run"))
    assert selection.main(["--space", str(space)]) == 2
    error = capsys.readouterr().err
    assert "neither searches nor fixes" in error and "als.factors" in error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"seeds": [1, 2]}, "at least 3 distinct seeds"),
        ({"seeds": [1, 2, 3], "steps": [{"key": "als.alpha", "values": [1.0], "judge": "als"}]}, "without a neutral start"),
        ({"seeds": [1, 2, 3], "start": {"als.alpha": {"value": 1.0}}}, "a neutral value and why"),
        ({"seeds": [1, 2, 3], "steps": [{"key": "als.alpha", "values": [1.0], "judge": "popularity"}]}, "judge"),
    ],
)
def test_malformed_spaces_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_space(spec, "space.yaml")


def test_the_committed_space_covers_every_model_setting_from_a_neutral_start() -> None:
    space = load_space()
    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    assert space.block == "validation" and len(space.seeds) >= 3 and space.max_passes >= 2
    assert uncovered(space, params) == []
    keys = {f"{section}.{key}" for section in MODEL_SECTIONS for key in params[section]}
    for step in space.steps:
        assert step.key in keys, f"{step.key} is not in params.yaml"
        assert space.start_reasons[step.key].strip()
    for key in space.fixed:
        assert key in keys, f"fixed {key} is not in params.yaml"
    ablation = next(step for step in space.steps if step.key == "ranker.exclude_groups")
    from reco.params import FEATURE_GROUPS

    assert sorted(group for value in ablation.values for group in value) == sorted(FEATURE_GROUPS)


def test_trials_run_as_experiments_of_the_seed_spread_with_the_spaces_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    class Done:
        def __init__(self, stdout: str) -> None:
            self.stdout, self.returncode = stdout, 0

    spread = {"seeds": [1, 2, 3], "blocks": {"validation": {"models": {"ranker": {"ndcg_at_10": {"values": [0.8, 0.81, 0.79]}}}}}}

    def fake_run(args: list[str], check: bool = True) -> Done:
        commands.append(list(args))
        if args[:3] == ["dvc", "exp", "run"]:
            return Done("Queued experiment 'exp-a' for future execution.")
        if args[:3] == ["git", "rev-parse", "HEAD"]:
            return Done("b" * 40 + "\n")
        if args[:2] == ["git", "for-each-ref"]:  # DVC's experiment refs: this baseline's, another's, the queue's
            return Done(
                f"{'a' * 40} refs/exps/bb/{'b' * 38}/exp-a\n{'c' * 40} refs/exps/cc/{'c' * 38}/exp-a\n"
                f"{'d' * 40} refs/exps/celery/stash\n"
            )
        if args[:2] == ["git", "show"]:
            assert args[2] == "a" * 40 + ":metrics/seed_spread.json"
            return Done(json.dumps(spread))
        return Done("")

    monkeypatch.setattr(selection_trials, "_run", fake_run)
    monkeypatch.setattr(selection_trials, "_wait_for_queue", lambda: None)
    trial = Trial(overrides={"ranker.exclude_groups": ["daily"]})
    selection_trials.run_trials([trial], space_of([], {}), jobs=1)
    queued = commands[0]
    assert queued[:5] == ["dvc", "exp", "run", "--queue", "seed_spread"]
    assert "seed_spread.seeds=[1, 2, 3]" in queued and 'ranker.exclude_groups=["daily"]' in queued
    assert trial.results == {"ranker": {"ndcg_at_10": [0.8, 0.81, 0.79]}} and trial.mean("ranker", "ndcg_at_10") == pytest.approx(0.8)


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (0.25, "0.25"), ([1, 2], "[1, 2]"), ("holdout", "holdout")])
def test_values_are_written_as_dvc_parses_them(value: Any, text: str) -> None:
    assert selection_trials._yaml_value(value) == text
    assert yaml.safe_load(text) == value
