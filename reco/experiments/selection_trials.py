"""The selection's trials: DVC experiments of the seed runs, their per-seed validation metrics, and the rule
that a gain must pass (a one-sided t test paired by seed). Both searches of :mod:`reco.experiments.selection`
(coordinate passes and successive halving) run their configurations through :func:`run_trials`. See
docs/selection-and-review.md.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reco.experiments.selection_space import Space

__all__ = [
    "CANDIDATES", "CANDIDATE_METRICS", "REPORTED_MODELS", "SEED_SPREAD", "Trial", "best_accepted", "candidate_recalls",
    "gain_text", "judge_metric", "mean_sd_cell", "paired_gain", "reported_models", "run_trials", "seed_paired_gain",
    "spread_values",
]  # fmt: skip

SEED_SPREAD = "metrics/seed_spread.json"
REPORTED_MODELS = ("ranker", "als")  # the models whose figures a log keeps for every trial
# The candidate generator's judge: the recall@N of the validation candidates (the union of the sources, and
# ALS's own share), read from each seed run's ``metrics/candidates/validation.json`` (stage seed_candidates).
CANDIDATES = "candidates"
CANDIDATE_METRICS = ("recall", "als_recall")
SEED_CANDIDATES_METRICS = "data/seeds/{seed}/metrics/candidates/validation.json"


def judge_metric(judge: str, space: Space) -> str:
    """The metric a judge decides on: the candidates' union ``recall`` (at the list's N), else the space's metric.

    Examples
    --------
    >>> from reco.experiments.selection_space import parse_space
    >>> space = parse_space({"seeds": [1, 2, 3], "start": {}, "steps": []})
    >>> judge_metric("candidates", space), judge_metric("ranker", space)
    ('recall', 'ndcg_at_10')
    """
    return "recall" if judge == CANDIDATES else space.metric


@dataclass
class Trial:
    """One experiment: the full set of overrides and each model's metric per seed (in the space's seed order)."""

    overrides: dict[str, Any]
    name: str = ""
    rev: str = ""  # the experiment's commit
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> metric -> per-seed values
    error: str | None = None
    seeds: tuple[int, ...] = ()  # the seeds of ``results`` (empty until run)

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


def run_trials(
    trials: list[Trial], space: Space, jobs: int, seeds: Sequence[int] | None = None, judge: str = "ranker"
) -> None:
    """Queue every trial as a DVC experiment of the seed runs with ``seeds`` (default: the space's), run the
    queue, read each trial's per-seed validation metrics.

    The judge ``candidates`` targets ``seed_candidates`` (ALS and the candidate lists only, no ranker) and
    reads each seed's ``metrics/candidates/validation.json`` (:func:`candidate_recalls`); any other judge
    targets ``seed_spread`` and reads its ``metrics/seed_spread.json``. A seed run that an earlier experiment
    already made with the same settings comes from DVC's run cache, so adding seeds to a screened
    configuration costs only the new seeds.
    """
    seeds = list(space.seeds if seeds is None else seeds)
    target = "seed_candidates" if judge == CANDIDATES else "seed_spread"
    for trial in trials:
        args = ["dvc", "exp", "run", "--queue", target, "-S", f"seed_spread.seeds={_yaml_value(seeds)}"]
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
        if judge == CANDIDATES:
            trial.results = {CANDIDATES: candidate_recalls(_read_outputs([SEED_CANDIDATES_METRICS.format(seed=s) for s in seeds], rev))}
        else:
            trial.results = spread_values(json.loads(_run(["git", "show", f"{rev}:{SEED_SPREAD}"]).stdout), space, seeds)
        trial.seeds = tuple(seeds)


def _read_outputs(paths: Sequence[str], rev: str) -> list[dict[str, Any]]:
    """DVC-tracked JSON outputs of an experiment's commit, through one view of that commit (not a repository
    opened per file); from the local cache, never the network."""
    from dvc.api import DVCFileSystem

    commit = DVCFileSystem(rev=rev)
    return [json.loads(commit.read_text(path, encoding="utf-8")) for path in paths]


def candidate_recalls(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """``{"recall": [...], "als_recall": [...]}``: the union's and ALS's recall@N, one value per seed's
    ``metrics/candidates/validation.json`` (N: that file's list size ``n``).

    Examples
    --------
    >>> candidate_recalls([{"n": 200, "recall_at_200": 0.5, "sources": {"als": {"recall_at_200": 0.4}}}])
    {'recall': [0.5], 'als_recall': [0.4]}
    """
    recall, als_recall = [], []
    for report in per_seed:
        key = f"recall_at_{int(report['n'])}"
        recall.append(float(report[key]))
        als_recall.append(float(report["sources"]["als"][key]))
    return {"recall": recall, "als_recall": als_recall}


def spread_values(
    spread: Mapping[str, Any], space: Space, seeds: Sequence[int] | None = None
) -> dict[str, dict[str, list[float]]]:
    """``model -> metric -> per-seed values`` of the space's block from a ``metrics/seed_spread.json``.

    Raises
    ------
    ValueError
        The file's seeds are not ``seeds`` (default: the space's): the experiment did not run the seeds
        it was asked to.
    """
    expected = list(space.seeds if seeds is None else seeds)
    if [int(s) for s in spread.get("seeds", [])] != expected:
        raise ValueError(f"{SEED_SPREAD} has seeds {spread.get('seeds')}, expected {expected}")
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


def paired_gain(trial: Trial, reference: Trial, judge: str, space: Space) -> dict[str, Any] | None:
    """:func:`seed_paired_gain` of ``trial`` over ``reference`` on the judge's metric; ``None`` when either
    failed, lacks the metric, or is the reference itself."""
    if trial is reference or trial.error or reference.error:
        return None
    metric = judge_metric(judge, space)
    mine, theirs = trial.results.get(judge, {}).get(metric), reference.results.get(judge, {}).get(metric)
    return seed_paired_gain(theirs, mine, space.alpha) if mine and theirs else None


def best_accepted(candidates: Sequence[Trial], gains: Sequence[dict[str, Any] | None], reference: Trial) -> Trial:
    """The candidate whose gain (``gains``, in the same order) passes the test and is the largest; else ``reference``."""
    best, best_gain = reference, None
    for trial, gain in zip(candidates, gains, strict=True):
        if gain and gain["accepted"] and (best_gain is None or gain["mean"] > best_gain):
            best, best_gain = trial, gain["mean"]
    return best


def reported_models(trial: Trial, space: Space) -> dict[str, dict[str, list[float] | None]]:
    """The per-seed NDCG and MAP of :data:`REPORTED_MODELS` that a log keeps for a trial, and the candidates'
    recalls when the trial was judged on them."""
    metrics = (space.metric, space.metric.replace("ndcg", "map"))
    reported = {model: {metric: trial.results.get(model, {}).get(metric) for metric in metrics} for model in REPORTED_MODELS}
    if CANDIDATES in trial.results:
        reported[CANDIDATES] = {metric: trial.results[CANDIDATES].get(metric) for metric in CANDIDATE_METRICS}
    return reported


def mean_sd_cell(values: Sequence[float] | None) -> str:
    """A log table's cell: ``mean ± sd`` over seeds, the value alone for one seed, ``failed`` for none."""
    if not values:
        return "failed"
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4f}"
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.4f} ± {sd:.4f}"


def gain_text(gain: Mapping[str, Any]) -> str:
    """A gain's table text: mean, sd, t against the critical t, and the verdict.

    Only a gain beyond the noise is accepted (the one-sided test); a change whose t is below minus the
    critical t is named a loss beyond the noise, which in an ablation says the left-out group helps.

    Examples
    --------
    >>> gain_text({"mean": -0.02, "sd": 0.001, "t": -34.6, "critical_t": 2.92, "accepted": False})
    '-0.0200 (sd 0.0010; t -34.6 vs 2.92): a loss beyond noise'
    """
    if gain["accepted"]:
        verdict = "beyond noise"
    elif float(gain["t"]) < -float(gain["critical_t"]):
        verdict = "a loss beyond noise"
    else:
        verdict = "within noise"
    return f"{gain['mean']:+.4f} (sd {gain['sd']:.4f}; t {gain['t']} vs {gain['critical_t']}): {verdict}"
