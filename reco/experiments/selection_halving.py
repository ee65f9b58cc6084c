"""Successive halving over random configurations: the selection's search when coordinate passes cost too much.

Every searched setting of ``selection/space.yaml`` is drawn at random from its step's values (a fixed draw
seed, so the draws are the same on every machine); the neutral start and the drawn configurations run on
the screening seeds, the best ``keep`` by the judge's mean go on to every seed of the space, and the best
finalist replaces the start only when its gain, paired by seed, passes :func:`seed_paired_gain`. The
ablation key (the feature groups) is not drawn: the chosen configuration then runs with each group left
out, and a group goes only on a gain beyond the noise. No setting is tuned from the start's neighbourhood,
so the start cannot decide the result. See docs/selection-and-review.md.

Examples
--------
>>> from reco.experiments.selection_space import Step
>>> draws = draw_configurations({"a.x": 1, "a.y": 2}, [Step("a.x", (1, 3), "ranker"), Step("a.y", (2, 4), "ranker")], 3, 0)
>>> len(draws), all(d != {"a.x": 1, "a.y": 2} for d in draws)
(3, True)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reco.experiments import selection_trials
from reco.experiments.selection_space import SearchStage, Space, Step
from reco.experiments.selection_trials import (
    CANDIDATES, Trial, best_accepted, gain_text, judge_metric, mean_sd_cell, paired_gain, reported_models,
)  # fmt: skip

__all__ = ["draw_configurations", "halving_select", "render_halving"]


def draw_configurations(start: Mapping[str, Any], steps: Sequence[Step], count: int, draw_seed: int) -> list[dict[str, Any]]:
    """``count`` distinct configurations, none equal to ``start``: each step's key drawn uniformly from its values.

    Raises
    ------
    ValueError
        The steps' values cannot make ``count`` distinct configurations besides the start.
    """
    rng = random.Random(draw_seed)
    seen = {json.dumps(dict(start), sort_keys=True)}
    drawn: list[dict[str, Any]] = []
    for _ in range(count * 100):
        if len(drawn) == count:
            break
        configuration = {**start, **{step.key: rng.choice(step.values) for step in steps}}
        key = json.dumps(configuration, sort_keys=True)
        if key not in seen:
            seen.add(key)
            drawn.append(configuration)
    if len(drawn) < count:
        raise ValueError(f"the space's values give only {len(drawn)} distinct configurations besides the start, not {count}")
    return drawn


def _entry(trial: Trial, reference: Trial | None, space: Space, judge: str, start: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "settings": {key: value for key, value in trial.overrides.items() if json.dumps(value) != json.dumps(start.get(key))},
        "overrides": trial.overrides,
        "experiment": trial.name,
        "error": trial.error,
        "seeds": list(trial.seeds),
        "gain_over_reference": None if reference is None else paired_gain(trial, reference, judge, space),
        "models": reported_models(trial, space),
    }


def _reused(entries: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[tuple[str, str, tuple[int, ...]], Trial]:
    """Trials of an earlier log's ``(judge, trial entry)`` pairs (failed ones excluded), keyed by their judge,
    overrides and seeds."""
    found: dict[tuple[str, str, tuple[int, ...]], Trial] = {}
    for judge, entry in entries:
        if entry.get("error") or not entry.get("seeds"):
            continue
        results = {
            model: {metric: list(values) for metric, values in per.items() if values}
            for model, per in (entry.get("models") or {}).items()
        }
        trial = Trial(overrides=dict(entry["overrides"]), name=entry.get("experiment") or "", results=results,
                      seeds=tuple(entry["seeds"]))  # fmt: skip
        found[(judge, trial.key, trial.seeds)] = trial
    return found


def halving_select(
    space: Space,
    *,
    jobs: int,
    on_round: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    previous: Sequence[Mapping[str, Any]] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Screen and confirm (per stage), then ablate; returns the chosen values and the log of every round.

    Rounds of each stage: ``screen`` (the stage's start and its ``configurations`` drawn configurations on
    the screening seeds), ``final`` (the start and the best ``keep`` of the screen, by the judge's mean, on
    every seed; the best accepted gain over the start wins). ``halving`` has one stage over every drawn
    step; ``staged`` one per ``search.stages`` entry over the steps of its judge, each starting from the
    previous stage's choice. Then ``ablation`` (the chosen configuration with each other value of the
    ablation key, on every seed, judged against it; skipped when the space says ``ablate: false``).
    ``on_round(chosen, log)`` is called after each round, so an interrupted search leaves its finished
    rounds on disk; ``previous`` (the rounds of that log) resumes it: a configuration already run for the
    same judge on the same seeds is read from there, not run again.
    """
    earlier = _reused([(entry.get("judge", ""), trial) for entry in previous for trial in entry.get("trials", [])])

    def run(trials: list[Trial], judge: str, seeds: Sequence[int] | None = None) -> dict[str, Any]:
        """Run the trials not found in the earlier log; what this round cost (its log entry's ``cost``)."""
        wanted = tuple(space.seeds if seeds is None else seeds)
        to_run = []
        for trial in trials:
            found = earlier.get((judge, trial.key, wanted))
            if found is None:
                to_run.append(trial)
            else:
                trial.name, trial.results, trial.seeds = found.name, found.results, found.seeds
        started = time.monotonic()
        if to_run:
            selection_trials.run_trials(to_run, space, jobs, seeds=wanted, judge=judge)
        return {"experiments_run": len(to_run), "read_from_earlier_log": len(trials) - len(to_run),
                "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip

    search = space.search
    ablation_step = next((step for step in space.steps if step.key == search.ablation_key), None)
    drawn_steps = [step for step in space.steps if step is not ablation_step]
    stages = search.halving_stages()
    log: list[dict[str, Any]] = []

    def report(chosen: dict[str, Any]) -> None:
        if on_round is not None:
            on_round(dict(chosen), log)

    chosen = dict(space.start)
    chosen_trial = Trial(overrides=chosen)
    for stage in stages:
        steps = drawn_steps if search.method != "staged" else [step for step in drawn_steps if step.judge == stage.judge]
        chosen_trial = _halving_stage(space, stage, steps, chosen, run, log, report)
        chosen = dict(chosen_trial.overrides)

    if ablation_step is not None and search.ablate:
        judge = ablation_step.judge
        values = [v for v in ablation_step.values if json.dumps(v) != json.dumps(chosen[ablation_step.key])]
        judged_alike = chosen_trial.seeds == tuple(space.seeds) and stages[-1].judge == judge
        incumbent = chosen_trial if judged_alike else Trial(overrides=chosen)
        variants = [Trial(overrides={**chosen, ablation_step.key: value}) for value in values]
        cost = run([t for t in [incumbent, *variants] if not t.seeds], judge)
        entries = [_entry(t, incumbent, space, judge, space.start) for t in [incumbent, *variants]]
        winner = best_accepted(variants, [e["gain_over_reference"] for e in entries[1:]], incumbent)
        chosen = dict(winner.overrides)
        log.append({"round": "ablation", "key": ablation_step.key, "judge": judge, "seeds": list(space.seeds),
                    "incumbent": incumbent.overrides[ablation_step.key], "chosen": chosen[ablation_step.key],
                    "trials": entries, "cost": cost})  # fmt: skip
        report(chosen)
    return chosen, log


def _halving_stage(
    space: Space,
    stage: SearchStage,
    steps: Sequence[Step],
    start: dict[str, Any],
    run: Callable[..., None],
    log: list[dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
) -> Trial:
    """One screen-and-confirm over ``steps`` from ``start``, judged on ``stage.judge``; appends its two rounds
    to ``log`` and returns the chosen trial."""
    search, judge = space.search, stage.judge
    metric = judge_metric(judge, space)
    screened = [Trial(overrides=start)] + [
        Trial(overrides=c) for c in draw_configurations(start, steps, stage.configurations, search.draw_seed)
    ]
    cost = run(screened, judge, search.screen_seeds)
    log.append({"round": "screen", "judge": judge, "seeds": list(search.screen_seeds), "start": start,
                "trials": [_entry(t, None, space, judge, start) for t in screened], "cost": cost})  # fmt: skip
    report(start)

    ranked = sorted(
        (t for t in screened[1:] if not t.error and t.mean(judge, metric) is not None),
        key=lambda t: -(t.mean(judge, metric) or 0.0),
    )
    # A start that failed on the screen (e.g. implicit's default regularization gives factors beyond the
    # exact-score bound) is not run again: then there is no null to test against, and the best finalist
    # by its mean over every seed is chosen (the log says so).
    start_failed = screened[0].error
    reference = Trial(overrides=start)
    if start_failed:
        reference.error = f"the start failed on the screen: {start_failed}"
    finalists = [reference] + [Trial(overrides=t.overrides) for t in ranked[: stage.keep]]
    cost = run([t for t in finalists if not t.error], judge)
    entries = [_entry(t, reference, space, judge, start) for t in finalists]
    if start_failed:
        ran = [t for t in finalists[1:] if not t.error and t.mean(judge, metric) is not None]
        chosen_trial = max(ran, key=lambda t: t.mean(judge, metric) or 0.0) if ran else reference
    else:
        chosen_trial = best_accepted(finalists[1:], [e["gain_over_reference"] for e in entries[1:]], reference)
    chosen = dict(chosen_trial.overrides)
    log.append({"round": "final", "judge": judge, "seeds": list(space.seeds), "start": start, "trials": entries,
                "chosen": chosen, "cost": cost,
                "rule": ("the start failed: the best finalist by its mean over every seed" if start_failed
                         else "the best finalist whose gain over the start passes the seed-paired test, else the start")})  # fmt: skip
    report(chosen)
    return chosen_trial


def _cost_text(cost: Mapping[str, Any]) -> str:
    """What a round cost, in words: the experiments it ran and their wall time, and those read from an earlier log.

    Examples
    --------
    >>> _cost_text({"experiments_run": 4, "read_from_earlier_log": 1, "wall_s": 750.0})
    'Cost: 4 experiments run in 12.5 min of wall time; 1 read from the earlier log (`--resume`).'
    """
    text = f"Cost: {cost['experiments_run']} experiments run in {cost['wall_s'] / 60:.1f} min of wall time"
    if cost.get("read_from_earlier_log"):
        text += f"; {cost['read_from_earlier_log']} read from the earlier log (`--resume`)"
    return text + "."


def render_halving(log: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """Markdown lines of the halving rounds: one table per round, each configuration as its settings that
    differ from the round's start (the neutral start, or the previous stage's choice)."""
    lines: list[str] = []
    titles = {"screen": "Screen", "final": "Final", "ablation": "Feature-group ablation"}
    for entry in log:
        judge = entry["judge"]
        what = "the candidates' union recall@N" if judge == CANDIDATES else judge
        lines += [f"## {titles[entry['round']]}: seeds {entry['seeds']}, judged on {what}", ""]
        if entry.get("rule"):
            lines += [f"Rule: {entry['rule']}.", ""]
        if entry.get("cost"):
            lines += [_cost_text(entry["cost"]), ""]
        if judge == CANDIDATES:
            columns = [("candidates", "recall", "union recall@N"), ("candidates", "als_recall", "ALS's recall@N")]
        else:
            columns = [("ranker", metric, f"ranker {metric}"), ("ranker", metric.replace("ndcg", "map"), f"ranker {metric.replace('ndcg', 'map')}"),
                       ("als", metric, f"als {metric}")]  # fmt: skip
        start_name = "the start" if entry.get("start") is None or judge == log[0]["judge"] else "the previous stage's choice"
        lines += [f"| # | settings (differing from {start_name}) | {' | '.join(c[2] for c in columns)} | "
                  f"gain over the reference (mean, sd; t vs critical) | experiment |",
                  "|---|---|" + "---|" * len(columns) + "---|---|"]  # fmt: skip
        for number, trial in enumerate(entry["trials"]):
            models, gain = trial["models"], trial.get("gain_over_reference")
            settings = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(trial["settings"].items())) or "the start"
            if entry["round"] == "ablation":
                settings = f"`{entry['key']}={json.dumps(trial['overrides'][entry['key']])}`"
            chosen = entry.get("chosen")
            mark = ""
            if entry["round"] == "final" and trial["overrides"] == chosen:
                mark = " **(chosen)**"
            elif entry["round"] == "ablation" and json.dumps(trial["overrides"][entry["key"]]) == json.dumps(chosen):
                mark = " **(chosen)**"
            if gain is None:
                gain_cell = "reference" if number == 0 and entry["round"] != "screen" else "n/a"
            else:
                gain_cell = gain_text(gain)
            cells = " | ".join(mean_sd_cell((models.get(model) or {}).get(name)) for model, name, _ in columns)
            lines.append(f"| {number} | {settings}{mark} | {cells} | {gain_cell} | {trial['experiment'] or trial.get('error') or ''} |")
        lines.append("")
    return lines
