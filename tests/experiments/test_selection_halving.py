"""Successive halving without DVC: trials are scored per seed by a known function of their settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reco.experiments import selection_halving
from reco.experiments.selection_halving import draw_configurations, halving_select, render_halving
from reco.experiments.selection_space import Search, SearchStage, Space, Step
from reco.experiments.selection_trials import Trial

SEEDS = (1, 2, 3)
SEED_EFFECT = {1: 0.004, 2: -0.003, 3: 0.001}
STEPS = (
    Step("als.factors", (32, 64, 100), "als"),
    Step("ranker.num_leaves", (15, 31, 63), "ranker"),
    Step("ranker.learning_rate", (0.05, 0.1), "ranker"),
    Step("ranker.exclude_groups", ([], ["tags"], ["daily"]), "ranker"),
)
START = {"als.factors": 100, "ranker.num_leaves": 31, "ranker.learning_rate": 0.1, "ranker.exclude_groups": []}


def halving_space(configurations: int = 6, keep: int = 2) -> Space:
    return Space(
        block="validation", metric="ndcg_at_10", seeds=SEEDS, alpha=0.05, max_passes=1, start=START,
        start_reasons={key: "test" for key in START}, steps=STEPS,
        search=Search(method="halving", configurations=configurations, screen_seeds=(1,), keep=keep, judge="ranker", draw_seed=0),
    )  # fmt: skip


def score(overrides: dict[str, Any], seed: int) -> float:
    """The ranker's NDCG: best with 63 leaves and 64 factors; leaving out tags costs, leaving out daily helps."""
    value = 0.6 + SEED_EFFECT[seed] + {15: -0.02, 31: 0.0, 63: 0.03}[overrides["ranker.num_leaves"]]
    value += {32: -0.01, 64: 0.01, 100: 0.0}[overrides["als.factors"]]
    value += {"[]": 0.0, '["tags"]': -0.01, '["daily"]': 0.005}[json.dumps(overrides["ranker.exclude_groups"])]
    return value


def candidate_recall(overrides: dict[str, Any], seed: int) -> float:
    """The candidates' union recall: best with 64 factors (as the ranker) and a popularity quota of 20."""
    value = 0.4 + SEED_EFFECT[seed] + {32: -0.02, 64: 0.03, 100: 0.0}[overrides["als.factors"]]
    return value + {0: 0.0, 20: 0.01, 50: -0.01}[overrides.get("candidates.popularity_quota", 0)]


def fake_runner(runs: list[tuple[str, tuple[int, ...]]], judges: list[str] | None = None):
    def run_trials(
        trials: list[Trial], space: Space, jobs: int, seeds: tuple[int, ...] | None = None, judge: str = "ranker"
    ) -> None:
        seeds = tuple(space.seeds if seeds is None else seeds)
        for trial in trials:
            runs.append((trial.key, seeds))
            if judges is not None:
                judges.append(judge)
            trial.name, trial.seeds = f"exp-{len(runs)}", seeds
            if judge == "candidates":  # what seed_candidates gives: no ranker, no NDCG
                recalls = [candidate_recall(trial.overrides, s) for s in seeds]
                trial.results = {"candidates": {"recall": recalls, "als_recall": [r - 0.01 for r in recalls]}}
                continue
            trial.results = {
                "ranker": {"ndcg_at_10": [score(trial.overrides, s) for s in seeds]},
                "als": {"ndcg_at_10": [0.5 + SEED_EFFECT[s] for s in seeds]},
            }

    return run_trials


def test_draws_are_distinct_reproducible_and_never_the_start() -> None:
    steps = [step for step in STEPS if step.key != "ranker.exclude_groups"]
    first, again = draw_configurations(START, steps, 10, 7), draw_configurations(START, steps, 10, 7)
    assert first == again and START not in first
    assert len({json.dumps(c, sort_keys=True) for c in first}) == 10
    with pytest.raises(ValueError, match="distinct configurations"):
        draw_configurations(START, steps, 18, 0)  # 3 x 3 x 2 = 18 configurations, one of them the start


def test_screen_confirm_ablate(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner(runs))
    rounds: list[str] = []
    chosen, log = halving_select(halving_space(), jobs=1, on_round=lambda chosen, log: rounds.append(log[-1]["round"]))
    assert rounds == ["screen", "final", "ablation"]
    screen, final, ablation = log
    # the screen runs the start and every draw on the screening seed only; the ablation key is never drawn
    assert screen["seeds"] == [1] and len(screen["trials"]) == 7
    assert all(t["overrides"]["ranker.exclude_groups"] == [] for t in screen["trials"])
    # the final runs the start and the best 2 of the screen on every seed
    assert final["seeds"] == [1, 2, 3] and len(final["trials"]) == 3
    screened = sorted(screen["trials"][1:], key=lambda t: -t["models"]["ranker"]["ndcg_at_10"][0])
    assert [t["overrides"] for t in final["trials"][1:]] == [t["overrides"] for t in screened[:2]]
    # the best finalist wins over the start beyond the noise (the seed effect is shared, so sd 0)
    best = max(final["trials"][1:], key=lambda t: sum(t["models"]["ranker"]["ndcg_at_10"]))
    assert final["chosen"] == best["overrides"] and best["gain_over_reference"]["accepted"]
    # the ablation leaves out daily (a gain), keeps tags, and runs the chosen configuration no second time
    assert ablation["chosen"] == ["daily"] and chosen["ranker.exclude_groups"] == ["daily"]
    assert {k: v for k, v in chosen.items() if k != "ranker.exclude_groups"} == {
        k: v for k, v in best["overrides"].items() if k != "ranker.exclude_groups"
    }
    assert len(runs) == len(set(runs))
    text = "\n".join(render_halving(log, "ndcg_at_10"))
    assert "## Screen: seeds [1]" in text and "**(chosen)**" in text and "## Feature-group ablation" in text


def test_the_start_stays_when_no_finalist_beats_it_beyond_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_trials(trials: list[Trial], space: Space, jobs: int, seeds: tuple[int, ...] | None = None, judge: str = "ranker") -> None:
        seeds = tuple(space.seeds if seeds is None else seeds)
        wobble = {1: 0.01, 2: -0.012, 3: 0.0}  # a gain on the screening seed that the other seeds undo
        for trial in trials:
            trial.seeds = seeds
            bonus = 0.0 if trial.overrides == START else 1.0
            trial.results = {"ranker": {"ndcg_at_10": [0.6 + bonus * wobble[s] for s in seeds]}}

    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", run_trials)
    chosen, log = halving_select(halving_space(), jobs=1)
    assert chosen == START and log[1]["chosen"] == START


def test_a_start_that_cannot_run_leaves_the_best_finalist_by_its_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, tuple[int, ...]]] = []
    inner = fake_runner(runs)

    def run_trials(trials: list[Trial], space: Space, jobs: int, seeds: tuple[int, ...] | None = None, judge: str = "ranker") -> None:
        inner(trials, space, jobs, seeds, judge)
        for trial in trials:
            if trial.overrides == START:
                trial.results, trial.error = {}, "ALS factor of size 10.4 >= 8.0"

    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", run_trials)
    chosen, log = halving_select(halving_space(), jobs=1)
    final = log[1]
    assert final["trials"][0]["error"].startswith("the start failed on the screen")
    assert sum(1 for key, _ in runs if key == json.dumps(START, sort_keys=True)) == 1  # not run again
    best = max(final["trials"][1:], key=lambda t: sum(t["models"]["ranker"]["ndcg_at_10"]))
    assert final["chosen"] == best["overrides"] and "start failed" in final["rule"]


def test_a_resumed_search_reads_what_it_already_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner(runs))
    first_chosen, first_log = halving_select(halving_space(), jobs=1)
    interrupted = json.loads(json.dumps(first_log[:2]))  # the screen and the final, through the log's JSON
    again: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner(again))
    chosen, log = halving_select(halving_space(), jobs=1, previous=interrupted)
    assert chosen == first_chosen
    assert [entry["round"] for entry in log] == ["screen", "final", "ablation"]
    assert {round_["round"]: [t["models"] for t in round_["trials"]] for round_ in log[:2]} == {
        round_["round"]: [t["models"] for t in round_["trials"]] for round_ in first_log[:2]
    }
    assert again and all(seeds == SEEDS for _, seeds in again)  # only the ablation's new variants ran
    assert len(again) == 2


def test_no_ablation_round_when_the_space_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner([]))
    space = halving_space()
    space = dataclasses.replace(space, search=dataclasses.replace(space.search, ablate=False))
    chosen, log = halving_select(space, jobs=1)
    assert [entry["round"] for entry in log] == ["screen", "final"] and chosen["ranker.exclude_groups"] == []


STAGED_STEPS = (
    Step("als.factors", (32, 64, 100), "candidates"),
    Step("candidates.popularity_quota", (0, 20, 50), "candidates"),
    Step("ranker.num_leaves", (15, 31, 63), "ranker"),
    Step("ranker.learning_rate", (0.05, 0.1), "ranker"),
    Step("ranker.exclude_groups", ([], ["tags"], ["daily"]), "ranker"),
)
STAGED_START = {**START, "candidates.popularity_quota": 0}


def staged_space() -> Space:
    stages = (SearchStage("candidates", configurations=8, keep=2), SearchStage("ranker", configurations=5, keep=2))
    return Space(
        block="validation", metric="ndcg_at_10", seeds=SEEDS, alpha=0.05, max_passes=1, start=STAGED_START,
        start_reasons={key: "test" for key in STAGED_START}, steps=STAGED_STEPS,
        search=Search(method="staged", screen_seeds=(1,), draw_seed=0, stages=stages),
    )  # fmt: skip


def test_a_staged_search_chooses_the_generator_on_recall_then_the_ranker_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, tuple[int, ...]]] = []
    judges: list[str] = []
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner(runs, judges))
    chosen, log = halving_select(staged_space(), jobs=1)
    assert [(entry["round"], entry["judge"]) for entry in log] == [
        ("screen", "candidates"), ("final", "candidates"), ("screen", "ranker"), ("final", "ranker"), ("ablation", "ranker"),
    ]  # fmt: skip
    generator_screen, generator_final, ranker_screen, ranker_final, _ = log
    # the generator's stage varies only its own settings and is judged on recall (no ranker trained for it)
    ranker_keys = {"ranker.num_leaves", "ranker.learning_rate", "ranker.exclude_groups"}
    assert all({k: t["overrides"][k] for k in ranker_keys} == {k: START[k] for k in ranker_keys} for t in generator_screen["trials"])
    generator_runs = len(generator_screen["trials"]) + len(generator_final["trials"])
    assert set(judges[:generator_runs]) == {"candidates"} and set(judges[generator_runs:]) == {"ranker"}
    assert generator_final["chosen"]["als.factors"] == 64 and generator_final["chosen"]["candidates.popularity_quota"] == 20
    assert "recall" in generator_final["trials"][1]["models"]["candidates"]
    # the ranker's stage starts from that choice and never changes it
    assert ranker_screen["trials"][0]["overrides"] == generator_final["chosen"]
    assert all(t["overrides"]["als.factors"] == 64 and t["overrides"]["candidates.popularity_quota"] == 20 for t in ranker_screen["trials"])
    assert ranker_final["chosen"]["ranker.num_leaves"] == 63 and chosen["ranker.exclude_groups"] == ["daily"]
    # the ranker's start is the generator's choice, run again for the ranker's judge (other results)
    assert runs.count((json.dumps(generator_final["chosen"], sort_keys=True), (1,))) == 2
    text = "\n".join(render_halving(log, "ndcg_at_10"))
    assert "judged on the candidates' union recall@N" in text and "differing from the previous stage's choice" in text


def test_a_resumed_staged_search_keeps_the_judges_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner([]))
    first_chosen, first_log = halving_select(staged_space(), jobs=1)
    again: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(selection_halving.selection_trials, "run_trials", fake_runner(again))
    chosen, log = halving_select(staged_space(), jobs=1, previous=json.loads(json.dumps(first_log[:3])))

    def without_cost(rounds: list[dict]) -> list[dict]:
        return [{k: v for k, v in entry.items() if k != "cost"} for entry in rounds]

    assert chosen == first_chosen and without_cost(log[:3]) == without_cost(first_log[:3])
    # each round says what it ran and what it read: the resumed rounds ran nothing
    assert all(entry["cost"]["experiments_run"] > 0 for entry in first_log)
    assert [entry["cost"]["experiments_run"] for entry in log[:3]] == [0, 0, 0]
    assert all(entry["cost"]["read_from_earlier_log"] == len(entry["trials"]) for entry in log[:2])
    assert "experiments run in" in "\n".join(render_halving(log, "ndcg_at_10"))
    # the ranker's final and the ablation run again; the generator's choice, screened for the ranker, is read
    assert again and all(seeds == SEEDS for _, seeds in again)
