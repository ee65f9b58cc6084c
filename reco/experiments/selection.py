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
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reco.experiments.selection_space import SPACE_FILE, Space, Step, load_space, uncovered

__all__ = ["Trial", "apply_to_params", "main", "run_trials", "seed_paired_gain", "select"]

LOG_JSON = Path("selection/log.json")
LOG_MD = Path("selection/log.md")
PARAMS_FILE = Path("params.yaml")
SEED_SPREAD = "metrics/seed_spread.json"
REPORTED_MODELS = ("ranker", "als")


@dataclass
class Trial:
    """One experiment: the full set of overrides and each model's metric per seed (in the space's seed order)."""

    overrides: dict[str, Any]
    name: str = ""
    rev: str = ""  # the experiment's commit
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> metric -> per-seed values
    error: str | None = None

    @property
    def key(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)

    def mean(self, model: str, metric: str) -> float | None:
        values = self.results.get(model, {}).get(metric)
        return math.fsum(values) / len(values) if values else None


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _yaml_value(value: Any) -> str:
    """``-S key=value`` text that DVC parses back to the same YAML value."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value).lower() if isinstance(value, bool) else str(value)


def current_value(params: Mapping[str, Any], key: str) -> Any:
    section, name = key.split(".", 1)
    return (params.get(section) or {}).get(name)


def run_trials(trials: list[Trial], space: Space, jobs: int) -> None:
    """Queue every trial as a DVC experiment targeting ``seed_spread`` with the space's seeds, run the queue,
    read each trial's per-seed validation metrics from its ``metrics/seed_spread.json``."""
    for trial in trials:
        args = ["dvc", "exp", "run", "--queue", "seed_spread", "-S", f"seed_spread.seeds={_yaml_value(list(space.seeds))}"]
        for key, value in trial.overrides.items():
            args += ["-S", f"{key}={_yaml_value(value)}"]
        out = _run(args).stdout
        match = re.search(r"Queued experiment '([^']+)'", out)
        trial.name = match.group(1) if match else ""
    _run(["dvc", "queue", "start", "-j", str(jobs)])
    _wait_for_queue()
    revs = _experiment_revisions(_run(["git", "rev-parse", "HEAD"]).stdout.strip())
    for trial in trials:
        rev = revs.get(trial.name)
        trial.rev = rev or ""
        if rev is None:
            trial.error = "experiment failed or not found (see `dvc queue logs " + trial.name + "`)"
            continue
        spread = json.loads(_run(["git", "show", f"{rev}:{SEED_SPREAD}"]).stdout)
        trial.results = spread_values(spread, space)


def spread_values(spread: Mapping[str, Any], space: Space) -> dict[str, dict[str, list[float]]]:
    """``model -> metric -> per-seed values`` of the space's block from a ``metrics/seed_spread.json``.

    Raises
    ------
    ValueError
        The file's seeds are not the space's (the experiment did not run the seeds it was asked to).
    """
    if [int(s) for s in spread.get("seeds", [])] != list(space.seeds):
        raise ValueError(f"{SEED_SPREAD} has seeds {spread.get('seeds')}, expected {list(space.seeds)}")
    models = spread.get("blocks", {}).get(space.block, {}).get("models", {})
    return {model: {metric: [float(v) for v in entry["values"]] for metric, entry in per.items()} for model, per in models.items()}


def _wait_for_queue() -> None:
    import time

    while True:
        status = _run(["dvc", "queue", "status"]).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return
        time.sleep(5)


def _experiment_revisions(baseline: str) -> dict[str, str]:
    """``{experiment name: commit sha}`` of the experiments based on ``baseline``, from their Git refs.

    DVC keeps each experiment as the ref ``refs/exps/<baseline[:2]>/<baseline[2:]>/<name>``. Reading the
    refs is instant, where ``dvc exp show --json --all-commits`` collects the metrics of every commit of
    the history, which grows with the project.
    """
    refs = _run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"]).stdout
    return _parse_experiment_refs(refs, baseline)


def _parse_experiment_refs(refs: str, baseline: str) -> dict[str, str]:
    r"""``{name: sha}`` from ``git for-each-ref`` lines (``sha ref``), only the experiments of ``baseline``.

    Examples
    --------
    >>> refs = "1e62 refs/exps/af/3d01/agile-mete\n2098 refs/exps/celery/stash\n5a4f refs/exps/bb/0000/other"
    >>> _parse_experiment_refs(refs, "af3d01")
    {'agile-mete': '1e62'}
    """
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
    found: dict[str, str] = {}
    for line in refs.splitlines():
        sha, _, ref = line.partition(" ")
        if ref.startswith(prefix) and "/" not in ref[len(prefix) :]:
            found[ref[len(prefix) :]] = sha
    return found


def seed_paired_gain(incumbent: Sequence[float], candidate: Sequence[float], alpha: float) -> dict[str, Any]:
    """The candidate's gain over the incumbent, paired by seed, and whether it is beyond the seeds' noise.

    The differences of the two configurations' runs with the same seed have a mean ``d`` and a sample
    standard deviation ``s``; the gain is accepted when ``t = d / (s / sqrt(n))`` exceeds the one-sided
    Student t quantile ``1 - alpha`` with ``n - 1`` degrees of freedom (with ``s = 0``: when ``d > 0``).

    Examples
    --------
    >>> seed_paired_gain([0.70, 0.71, 0.72], [0.72, 0.73, 0.74], 0.05)["accepted"]
    True
    >>> seed_paired_gain([0.70, 0.71, 0.72], [0.71, 0.70, 0.73], 0.05)["accepted"]
    False
    """
    from scipy import stats

    if len(incumbent) != len(candidate) or len(incumbent) < 2:
        raise ValueError(f"paired runs needed on the same >= 2 seeds, got {len(incumbent)} and {len(candidate)}")
    differences = [c - i for i, c in zip(incumbent, candidate, strict=True)]
    n = len(differences)
    mean = math.fsum(differences) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    critical = float(stats.t.ppf(1.0 - alpha, n - 1))
    if sd < 1e-12:
        t_value = math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
    else:
        t_value = mean / (sd / math.sqrt(n))
    return {
        "mean": round(mean, 6),
        "sd": round(sd, 6),
        "t": round(t_value, 3) if math.isfinite(t_value) else t_value,
        "df": n - 1,
        "critical_t": round(critical, 3),
        "accepted": bool(t_value > critical),
    }


def _trial_entry(trial: Trial, incumbent: Trial, step: Step, space: Space) -> dict[str, Any]:
    gain = None
    if trial is not incumbent and not trial.error and not incumbent.error:
        mine, theirs = trial.results.get(step.judge, {}).get(space.metric), incumbent.results.get(step.judge, {}).get(space.metric)
        if mine and theirs:
            gain = seed_paired_gain(theirs, mine, space.alpha)
    return {
        "value": trial.overrides[step.key],
        "experiment": trial.name,
        "error": trial.error,
        "gain_over_incumbent": gain,
        "models": {
            model: {metric: trial.results.get(model, {}).get(metric) for metric in (space.metric, space.metric.replace("ndcg", "map"))}
            for model in REPORTED_MODELS
        },
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
            best, best_gain = incumbent, None
            for trial, entry in zip(trials[1:], entries[1:], strict=True):
                gain = entry["gain_over_incumbent"]
                if gain and gain["accepted"] and (best_gain is None or gain["mean"] > best_gain):
                    best, best_gain = trial, gain["mean"]
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


def _mean_cell(values: Sequence[float] | None) -> str:
    if not values:
        return "failed"
    mean = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}"


def render_markdown(log: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The selection log as Markdown: the rule, one table per step, the feature-group ablation, the choice."""
    data, label = meta.get("data") or {}, meta.get("label") or {}
    metric = meta["metric"]
    lines = [
        "# Selection log (validation block only)",
        "",
        f"Data: source `{data.get('source')}`, profile `{data.get('profile')}`, story `{data.get('story')}`, scale "
        f"`{data.get('scale')}`; label: `{label.get('kind')}` (threshold {label.get('threshold')}); block: "
        f"`{meta['block']}`; judged on {metric}, mean ± sd over seeds {meta['seeds']} (ALS and ranker retrained "
        f"with each). A value replaces the incumbent only if its gain, paired by seed, passes a one-sided t test at "
        f"{meta['alpha']} (t > the critical t with n - 1 df); among several, the largest gain wins. Coordinate "
        f"passes from the neutral start (`selection/space.yaml`) until one changes nothing (at most {meta['max_passes']}).",
        "",
    ]
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
                gain_text = "incumbent"
            elif gain is None:
                gain_text = "n/a"
            else:
                verdict = "beyond noise" if gain["accepted"] else "within noise"
                gain_text = f"{gain['mean']:+.4f} (sd {gain['sd']:.4f}; t {gain['t']} vs {gain['critical_t']}): {verdict}"
            lines.append(
                f"| `{json.dumps(trial['value'])}`{mark} | {_mean_cell(models['ranker'].get(metric))} | "
                f"{_mean_cell(models['ranker'].get(metric.replace('ndcg', 'map')))} | {_mean_cell(models['als'].get(metric))} | "
                f"{gain_text} | {trial['experiment'] or trial.get('error') or ''} |"
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
            lines.append(f"| `{json.dumps(trial['value'])}` | {_mean_cell(trial['models']['ranker'].get(metric))} | {change} |")
        lines.append("")
    lines += ["## Chosen", "", *(f"- `{k}`: `{json.dumps(v)}`" for k, v in chosen.items()), ""]
    fixed = meta.get("fixed") or {}
    if fixed:
        lines += ["## Fixed (not searched)", "", *(f"- `{k}`: {reason}" for k, reason in fixed.items()), ""]
    return "\n".join(lines)


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
    meta = {
        "block": space.block, "metric": space.metric, "seeds": list(space.seeds), "alpha": space.alpha,
        "max_passes": space.max_passes, "start": space.start, "fixed": space.fixed,
        "data": params.get("data"), "label": params.get("label"),
    }  # fmt: skip

    def write_logs(chosen: dict[str, Any], log: list[dict[str, Any]], complete: bool = False) -> None:
        LOG_JSON.parent.mkdir(parents=True, exist_ok=True)
        document = {"meta": meta, "steps": log, "chosen": chosen, "complete": complete}
        LOG_JSON.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        LOG_MD.write_text(render_markdown(log, chosen, meta), encoding="utf-8")

    chosen, log = select(space, jobs=args.jobs, on_step=write_logs)
    write_logs(chosen, log, complete=True)
    print(LOG_MD.read_text(encoding="utf-8"))
    if args.apply:
        changed = apply_to_params(chosen)
        print(f"params.yaml: {', '.join(changed) or 'nothing'} changed; now run `dvc repro` (computes the test block once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
