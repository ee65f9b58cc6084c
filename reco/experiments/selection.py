"""Choose settings on the validation block with DVC experiments, each judged on several seeds; never the test.

``python -m reco.experiments.selection [--jobs N] [--apply]`` runs coordinate passes over the committed
``selection/space.yaml`` from its neutral start (:mod:`reco.experiments.selection_space`): each step queues
one DVC experiment per candidate value targeting ``seed_spread`` (the seed runs of ``seeds``, validation
block only), and a value replaces the incumbent only when its gain over the same seeds passes a one-sided
paired t test (:func:`seed_paired_gain`); passes repeat until one changes nothing. Every configuration
goes to ``selection/log.json`` and ``selection/log.md``; ``--apply`` writes the choice into ``params.yaml``
for ``dvc repro`` to compute the test block once. See docs/selection-and-review.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reco.experiments.selection_halving import halving_select, render_halving
from reco.experiments.selection_record import selection_log_path
from reco.experiments.selection_space import HALVING_METHODS, SPACE_FILE, Search, Space, Step, load_space, uncovered
from reco.experiments.selection_trials import (
    Trial, _yaml_value, best_accepted, gain_text, mean_sd_cell, paired_gain, reported_models, run_trials,
    seed_paired_gain,
)  # fmt: skip

__all__ = ["Trial", "apply_to_params", "main", "run_trials", "seed_paired_gain", "select"]

PARAMS_FILE = Path("params.yaml")


def _trial_entry(trial: Trial, incumbent: Trial, step: Step, space: Space) -> dict[str, Any]:
    return {
        "value": trial.overrides[step.key],
        "experiment": trial.name,
        "error": trial.error,
        "gain_over_incumbent": paired_gain(trial, incumbent, step.judge, space),
        "models": reported_models(trial, space),
    }


def select(
    space: Space,
    *,
    jobs: int,
    on_step: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Coordinate passes from the space's neutral start; returns the chosen values and the log of every step.

    Each step runs the incumbent and every other value (a configuration is never run twice) and keeps
    the value with the largest accepted gain (:func:`seed_paired_gain`, on the step's judge); a pass
    that changes nothing ends the search. ``on_step(chosen, log)`` is called after every step (the
    log so far is written, so an interrupted search leaves its finished steps on disk).
    """
    chosen = dict(space.start)
    log: list[dict[str, Any]] = []
    done: dict[str, Trial] = {}
    for pass_number in range(1, space.max_passes + 1):
        changed = False
        for step in space.steps:
            values = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in [chosen[step.key], *step.values]))
            trials = [Trial(overrides={**chosen, step.key: json.loads(value)}) for value in values]
            trials = [done.get(t.key, t) for t in trials]
            run_trials([t for t in trials if t.key not in done], space, jobs)
            done.update({t.key: t for t in trials})
            incumbent = trials[0]
            entries = [_trial_entry(t, incumbent, step, space) for t in trials]
            best = best_accepted(trials[1:], [entry["gain_over_incumbent"] for entry in entries[1:]], incumbent)
            if best is not incumbent:
                chosen[step.key] = best.overrides[step.key]
                changed = True
            log.append(
                {
                    "pass": pass_number,
                    "key": step.key,
                    "judge": step.judge,
                    "incumbent": incumbent.overrides[step.key],
                    "chosen": chosen[step.key],
                    "trials": entries,
                }
            )
            if on_step is not None:
                on_step(dict(chosen), log)
        if not changed:
            break
    return chosen, log


def render_markdown(log: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The selection log as Markdown: the rule, one table per step, the feature-group ablation, the choice."""
    data, label = meta.get("data") or {}, meta.get("label") or {}
    metric = meta["metric"]
    search = meta.get("search") or {"method": "coordinate"}
    if search["method"] == "staged":
        stages = "; then ".join(_stage_text(stage, metric) for stage in search["stages"])
        rule = (
            f"Staged successive halving (`selection/space.yaml`): {stages}. Each stage draws configurations at random "
            f"(draw seed {search['draw_seed']}) from its steps' values around the previous stage's choice (the first: "
            f"the neutral start), runs them and that start on seeds {search['screen_seeds']}, then the best and the "
            f"start on every seed; the best finalist replaces the start only if {_acceptance_text(meta['alpha'])}. "
            f"{_ablation_text(search)}"
        )
    elif search["method"] == "halving":
        rule = (
            f"Successive halving over {search['configurations']} configurations drawn at random (draw seed "
            f"{search['draw_seed']}) from the steps' values of `selection/space.yaml`: the neutral start and every "
            f"draw on seeds {search['screen_seeds']}, the best {search['keep']} by {search['judge']}'s {metric} and "
            f"the start on every seed; the best finalist replaces the start only if {_acceptance_text(meta['alpha'])}. "
            f"{_ablation_text(search)}"
        )
    else:
        rule = (
            f"A value replaces the incumbent only if {_acceptance_text(meta['alpha'])}; among several, the largest "
            f"gain wins. Coordinate passes from the neutral start (`selection/space.yaml`) until one changes nothing "
            f"(at most {meta['max_passes']})."
        )
    lines = [
        "# Selection log (validation block only)",
        "",
        f"Data: source `{data.get('source')}`, profile `{data.get('profile')}`, story `{data.get('story')}`, scale "
        f"`{data.get('scale')}`; label: `{label.get('kind')}` (threshold {label.get('threshold')}); block: "
        f"`{meta['block']}`; judged on {metric}, mean ± sd over seeds {meta['seeds']} (ALS and ranker retrained "
        f"with each). {rule}",
        "",
    ]
    lines += render_halving(log, metric) if search["method"] in HALVING_METHODS else _render_coordinate(log, metric)
    lines += ["## Chosen", "", *(f"- `{k}`: `{json.dumps(v)}`" for k, v in chosen.items()), ""]
    fixed = meta.get("fixed") or {}
    if fixed:
        lines += ["## Fixed (not searched)", "", *(f"- `{k}`: {reason}" for k, reason in fixed.items()), ""]
    return "\n".join(lines)


def _acceptance_text(alpha: float) -> str:
    """The acceptance rule every search method states in its log (:func:`seed_paired_gain`).

    Examples
    --------
    >>> _acceptance_text(0.05)
    'its gain, paired by seed, passes a one-sided t test at 0.05 (t > the critical t with n - 1 df)'
    """
    return f"its gain, paired by seed, passes a one-sided t test at {alpha} (t > the critical t with n - 1 df)"


def _ablation_text(search: Mapping[str, Any]) -> str:
    """The last sentence of a halving search's rule: whether the feature groups were ablated."""
    if search.get("ablate", True):
        return "Then the feature groups are ablated on the chosen configuration with the same rule."
    return f"No ablation round (`ablate: false`): `{search.get('ablation_key')}` stays at its start value."


def _search_meta(search: Search) -> dict[str, Any]:
    """The log's record of how it searched: every field of ``search`` as JSON values (``stages`` when staged)."""
    meta = json.loads(json.dumps(dataclasses.asdict(search)))
    if search.method != "staged":
        del meta["stages"]
    return meta


def _stage_text(stage: Mapping[str, Any], metric: str) -> str:
    """One stage of a staged search in the log's rule: what judges it and how many configurations it draws."""
    if stage["judge"] == "candidates":
        judged = "the candidate generator, judged on the union recall@N of its validation lists"
    else:
        judged = f"{stage['judge']}'s {metric}"
    return f"{judged} over the steps it judges ({stage['configurations']} draws, best {stage['keep']} confirmed)"


def _render_coordinate(log: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    """Markdown lines of the coordinate passes: one table per step, then the last pass's feature-group ablation."""
    lines: list[str] = []
    for step in log:
        lines += [f"## Pass {step['pass']}: `{step['key']}` (judged on {step['judge']})", ""]
        lines += [f"| value | ranker {metric} | ranker {metric.replace('ndcg', 'map')} | als {metric} | "
                  f"gain of {step['judge']} over the incumbent (mean, sd; t vs critical) | experiment |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for trial in step["trials"]:
            models = trial["models"]
            mark = " **(chosen)**" if trial["value"] == step["chosen"] else ""
            gain = trial.get("gain_over_incumbent")
            if trial["value"] == step["incumbent"]:
                gain_cell = "incumbent"
            else:
                gain_cell = "n/a" if gain is None else gain_text(gain)
            lines.append(
                f"| `{json.dumps(trial['value'])}`{mark} | {mean_sd_cell(models['ranker'].get(metric))} | "
                f"{mean_sd_cell(models['ranker'].get(metric.replace('ndcg', 'map')))} | {mean_sd_cell(models['als'].get(metric))} | "
                f"{gain_cell} | {trial['experiment'] or trial.get('error') or ''} |"
            )
        lines.append("")
    ablation = [step for step in log if step["key"] == "ranker.exclude_groups"]
    if ablation:
        last = ablation[-1]
        lines += ["## Feature-group ablation (last pass)", "", f"| left out | ranker {metric} | change vs the incumbent |",
                  "|---|---|---|"]  # fmt: skip
        for trial in last["trials"]:
            gain = trial.get("gain_over_incumbent")
            change = "incumbent" if trial["value"] == last["incumbent"] else ("n/a" if gain is None else f"{gain['mean']:+.4f}")
            lines.append(f"| `{json.dumps(trial['value'])}` | {mean_sd_cell(trial['models']['ranker'].get(metric))} | {change} |")
        lines.append("")
    return lines


def apply_to_params(chosen: Mapping[str, Any], path: Path = PARAMS_FILE) -> list[str]:
    """Write ``chosen`` into ``params.yaml`` line by line, keeping comments; returns the keys changed."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = []
    for key, value in chosen.items():
        section, name = key.split(".", 1)
        in_section = False
        for i, line in enumerate(lines):
            if re.match(r"^\S", line):
                in_section = line.split(":", 1)[0].strip() == section
                continue
            match = re.match(rf"^(\s+{re.escape(name)}:\s*)([^#\n]*?)(\s*#.*)?(\n?)$", line)
            if in_section and match:
                new_value = _yaml_value(value)
                if match.group(2).strip() != new_value:
                    comment = match.group(3) or ""
                    lines[i] = f"{match.group(1)}{new_value}{comment}{match.group(4)}"
                    changed.append(key)
                break
    path.write_text("".join(lines), encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=SPACE_FILE)
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once (dvc queue start -j)")
    parser.add_argument("--apply", action="store_true", help="write the chosen values into params.yaml")
    parser.add_argument(
        "--resume", action="store_true",
        help="halving: read the configurations an interrupted run of this story already ran from its log",
    )  # fmt: skip
    args = parser.parse_args(argv)

    space = load_space(args.space)
    if space.block != "validation":
        print("error: selection: the test block is never used to choose settings", file=sys.stderr)
        return 2
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    missing = uncovered(space, params)
    if missing:
        print(f"error: selection: {args.space} neither searches nor fixes {missing}", file=sys.stderr)
        return 2
    search = space.search
    meta = {
        "block": space.block, "metric": space.metric, "seeds": list(space.seeds), "alpha": space.alpha,
        "max_passes": space.max_passes, "start": space.start, "fixed": space.fixed,
        "data": params.get("data"), "label": params.get("label"),
        "search": _search_meta(search),
    }  # fmt: skip
    log_json = selection_log_path(params)
    log_md = log_json.with_suffix(".md")

    def write_logs(chosen: dict[str, Any], log: list[dict[str, Any]], complete: bool = False) -> None:
        log_json.parent.mkdir(parents=True, exist_ok=True)
        document = {"meta": meta, "steps": log, "chosen": chosen, "complete": complete}
        log_json.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        log_md.write_text(render_markdown(log, chosen, meta), encoding="utf-8")

    if search.method in HALVING_METHODS:
        previous = json.loads(log_json.read_text(encoding="utf-8")).get("steps", []) if args.resume and log_json.is_file() else []
        chosen, log = halving_select(space, jobs=args.jobs, on_round=write_logs, previous=previous)
    else:
        chosen, log = select(space, jobs=args.jobs, on_step=write_logs)
    write_logs(chosen, log, complete=True)
    print(log_md.read_text(encoding="utf-8"))
    if args.apply:
        changed = apply_to_params(chosen)
        print(f"params.yaml: {', '.join(changed) or 'nothing'} changed; now run `dvc repro` (computes the test block once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
