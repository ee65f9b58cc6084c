"""Choose settings on the validation block with DVC experiments; never look at the test block.

``python -m reco.experiments.selection [--jobs N] [--apply]`` runs a greedy coordinate search over the
committed ``selection/space.yaml``: each step queues one DVC experiment per candidate value targeting
``evaluate@validation``, keeps a new value only if it beats the incumbent by more than ``min_gain`` on the
model it serves, and logs every configuration to ``selection/log.json`` and ``selection/log.md``;
``--apply`` writes the choice into ``params.yaml`` for ``dvc repro`` to compute the test block once. See
docs/selection-and-review.md and docs/design/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPACE_FILE = Path("selection/space.yaml")
LOG_JSON = Path("selection/log.json")
LOG_MD = Path("selection/log.md")
PARAMS_FILE = Path("params.yaml")
BLOCK_METRICS = "metrics/blocks/{block}/metrics.json"
BLOCK_UNCERTAINTY = "metrics/blocks/{block}/uncertainty.json"


@dataclass(frozen=True)
class Step:
    """One coordinate of the search: a setting, its candidate values and the model that judges it."""

    key: str  # "section.name"
    values: tuple[Any, ...]
    judge: str  # model whose validation metric decides


@dataclass
class Trial:
    """One experiment: the full set of overrides and its validation results."""

    overrides: dict[str, Any]
    name: str = ""
    rev: str = ""  # the experiment's commit
    results: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metric -> value
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> metric -> [lo, hi]
    error: str | None = None

    @property
    def key(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)


def load_space(path: Path = SPACE_FILE) -> tuple[dict[str, Any], list[Step]]:
    """Read the search space: ``{"target": {...}, "min_gain": f, "steps": [{"key", "values", "judge"}]}``."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = [Step(key=s["key"], values=tuple(s["values"]), judge=s.get("judge", "ranker")) for s in spec["steps"]]
    for step in steps:
        if "." not in step.key or not step.values:
            raise ValueError(f"{path}: step {step.key!r} needs a 'section.name' key and at least one value")
    return spec, steps


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


def run_trials(trials: list[Trial], block: str, jobs: int) -> None:
    """Queue every trial as a DVC experiment targeting ``evaluate@<block>``, run the queue, read the results."""
    for trial in trials:
        args = ["dvc", "exp", "run", "--queue", f"evaluate@{block}"]
        for key, value in trial.overrides.items():
            args += ["-S", f"{key}={_yaml_value(value)}"]
        out = _run(args).stdout
        match = re.search(r"Queued experiment '([^']+)'", out)
        trial.name = match.group(1) if match else ""
    _run(["dvc", "queue", "start", "-j", str(jobs)])
    _wait_for_queue()
    shown = json.loads(_run(["dvc", "exp", "show", "--json", "--all-commits"]).stdout or "[]")
    revs = _experiment_revisions(shown)
    for trial in trials:
        rev = revs.get(trial.name)
        trial.rev = rev or ""
        if rev is None:
            trial.error = "experiment failed or not found (see `dvc queue logs " + trial.name + "`)"
            continue
        metrics = json.loads(_run(["git", "show", f"{rev}:{BLOCK_METRICS.format(block=block)}"]).stdout)
        trial.results = {m: {k: float(v) for k, v in vals.items()} for m, vals in metrics["models"].items()}
        shown_unc = _run(["git", "show", f"{rev}:{BLOCK_UNCERTAINTY.format(block=block)}"], check=False)
        if shown_unc.returncode == 0:
            trial.intervals = _intervals(json.loads(shown_unc.stdout))


def _wait_for_queue() -> None:
    import time

    while True:
        status = _run(["dvc", "queue", "status"]).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return
        time.sleep(5)


def _experiment_revisions(shown: Any) -> dict[str, str]:
    """``{experiment name: commit sha}`` from ``dvc exp show --json``."""
    found: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name, rev = node.get("name"), node.get("rev")
            if isinstance(name, str) and isinstance(rev, str) and len(rev) == 40:
                found[name] = rev
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(shown)
    return found


def _intervals(uncertainty: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """``model -> metric -> [low, high]`` from an uncertainty report (``intervals`` section)."""
    out: dict[str, dict[str, list[float]]] = {}
    for model, metrics in (uncertainty.get("intervals") or {}).items():
        for metric, entry in metrics.items():
            if isinstance(entry, Mapping) and "low" in entry and "high" in entry:
                out.setdefault(model, {})[metric] = [float(entry["low"]), float(entry["high"])]
    return out


def paired_gain(incumbent: Trial, trial: Trial, block: str, model: str, metric: str) -> dict[str, float] | None:
    """Mean per-user difference ``trial - incumbent`` of ``model``'s metric and its 95% bootstrap interval."""
    import io

    import dvc.api
    import numpy as np
    import polars as pl

    from reco.evaluation.paired import paired_revision_differences

    name, k = metric.rsplit("_at_", 1)
    frames = []
    for rev in (incumbent.rev, trial.rev):
        if not rev:
            return None
        with dvc.api.open(f"data/evaluation/{block}/per_user.parquet", rev=rev, mode="rb") as handle:
            frame = pl.read_parquet(io.BytesIO(handle.read()))
        frames.append(frame.filter((pl.col("model") == model) & (pl.col("metric") == name) & (pl.col("k") == int(k))))
    joined = frames[0].join(frames[1], on="user_id", suffix="_new").sort("user_id")
    (difference,) = paired_revision_differences(
        joined["value"].to_numpy()[:, None], joined["value_new"].to_numpy()[:, None], samples=2000, seed=0
    )
    return {"mean": round(float(difference.mean), 6), "low": round(float(difference.low), 6), "high": round(float(difference.high), 6),
            "users": int(np.int64(joined.height))}  # fmt: skip


def select(
    steps: Sequence[Step],
    params: Mapping[str, Any],
    *,
    block: str,
    metric: str,
    min_gain: float,
    jobs: int,
    on_step: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Greedy coordinate search; returns the chosen values and the log of every step.

    ``on_step(chosen, log)`` is called after every step (the log so far is written, so an
    interrupted search leaves its finished steps on disk).
    """
    chosen = {step.key: current_value(params, step.key) for step in steps}
    log: list[dict[str, Any]] = []
    done: dict[str, Trial] = {}  # configurations already run (an incumbent is not run twice)
    for step in steps:
        values = list(dict.fromkeys([chosen[step.key], *step.values]))  # incumbent first, no repeats
        trials = [Trial(overrides={**chosen, step.key: value}) for value in values]
        trials = [done.get(t.key, t) for t in trials]
        run_trials([t for t in trials if t.key not in done], block, jobs)
        done.update({t.key: t for t in trials})
        scored = [(t, t.results.get(step.judge, {}).get(metric)) for t in trials]
        incumbent_score = scored[0][1]
        best_trial, best_score = scored[0]
        for trial, score in scored[1:]:
            if score is not None and (best_score is None or score > best_score + min_gain):
                best_trial, best_score = trial, score
        chosen[step.key] = best_trial.overrides[step.key]
        log.append(
            {
                "key": step.key,
                "judge": step.judge,
                "incumbent": values[0],
                "incumbent_score": incumbent_score,
                "chosen": chosen[step.key],
                "trials": [
                    {
                        "value": t.overrides[step.key],
                        "experiment": t.name,
                        "error": t.error,
                        "gain_over_incumbent": None if t is trials[0] else paired_gain(trials[0], t, block, step.judge, metric),
                        "models": {
                            m: {
                                k: t.results.get(m, {}).get(k)
                                for k in (metric, metric.replace("ndcg", "map"))
                            }
                            | {"interval": t.intervals.get(m, {}).get(metric)}
                            for m in ("ranker", "als", "popularity")
                        },
                    }
                    for t in trials
                ],
            }
        )
        if on_step is not None:
            on_step(dict(chosen), log)
    return chosen, log


def render_markdown(log: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The selection log as Markdown (one table per step)."""
    data, label = meta.get("data") or {}, meta.get("label") or {}
    lines = [
        "# Selection log (validation block only)",
        "",
        f"Data: source `{data.get('source')}`, profile `{data.get('profile')}`, scale `{data.get('scale')}`; "
        f"label: `{label.get('kind')}` (threshold {label.get('threshold')}); block: `{meta['block']}`; "
        f"judged on {meta['metric']}; a value replaces the incumbent only if better by more than "
        f"{meta['min_gain']}. The paired gain is over the same validation users (95% bootstrap interval).",
        "",
    ]
    for step in log:
        lines += [f"## `{step['key']}` (judged on {step['judge']})", ""]
        lines += ["| value | ranker NDCG@10 [95% CI] | ranker MAP@10 | als NDCG@10 [95% CI] | popularity NDCG@10 | "
                  f"gain of the judge ({step['judge']}) over the incumbent, paired [95% CI] | experiment |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for trial in step["trials"]:
            def cell(model: str, key: str) -> str:
                value = trial["models"][model].get(key)
                return "failed" if value is None else f"{value:.4f}"

            def interval(model: str) -> str:
                ci = trial["models"][model].get("interval")
                return f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""

            mark = " **(chosen)**" if trial["value"] == step["chosen"] else ""
            gain = trial.get("gain_over_incumbent")
            gain_text = "incumbent" if gain is None else f"{gain['mean']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]"
            lines.append(
                f"| `{trial['value']}`{mark} | {cell('ranker', meta['metric'])}{interval('ranker')} | "
                f"{cell('ranker', meta['metric'].replace('ndcg', 'map'))} | {cell('als', meta['metric'])}{interval('als')} | "
                f"{cell('popularity', meta['metric'])} | {gain_text} | {trial['experiment']} |"
            )
        lines.append("")
    lines += ["## Chosen", "", *(f"- `{k}`: `{v}`" for k, v in chosen.items()), ""]
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

    spec, steps = load_space(args.space)
    block = spec.get("target", {}).get("block", "validation")
    if block == "test":
        print("error: selection: the test block is never used to choose settings", file=sys.stderr)
        return 2
    metric = spec.get("target", {}).get("metric", "ndcg_at_10")
    min_gain = float(spec.get("min_gain", 0.001))
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    meta = {"block": block, "metric": metric, "min_gain": min_gain, "data": params.get("data"), "label": params.get("label")}

    def write_logs(chosen: dict[str, Any], log: list[dict[str, Any]]) -> None:
        LOG_JSON.parent.mkdir(parents=True, exist_ok=True)
        document = {"meta": meta, "steps": log, "chosen": chosen, "complete": len(log) == len(steps)}
        LOG_JSON.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        LOG_MD.write_text(render_markdown(log, chosen, meta), encoding="utf-8")

    chosen, log = select(
        steps, params, block=block, metric=metric, min_gain=min_gain, jobs=args.jobs, on_step=write_logs
    )
    write_logs(chosen, log)
    print(LOG_MD.read_text(encoding="utf-8"))
    if args.apply:
        changed = apply_to_params(chosen)
        print(f"params.yaml: {', '.join(changed) or 'nothing'} changed; now run `dvc repro` (computes the test block once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
