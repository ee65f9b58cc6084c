"""The selection's search space (``selection/space.yaml``): where the search starts, what it varies, what it fixes.

Every model setting of ``params.yaml`` (sections :data:`MODEL_SECTIONS`) is either searched (a step) or
fixed with a reason; the search starts from stated neutral values (a library's documented default or an
a-priori value, each with its reason), never from the committed ``params.yaml``. See
docs/selection-and-review.md.

Examples
--------
>>> space = parse_space({"target": {"block": "validation"}, "seeds": [1, 2, 3],
...     "start": {"als.factors": {"value": 100, "reason": "implicit's default"}},
...     "steps": [{"key": "als.factors", "values": [32, 100], "judge": "als"}], "fixed": {}})
>>> space.start, space.steps[0].values
({'als.factors': 100}, (32, 100))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["HALVING_METHODS", "MODEL_SECTIONS", "SPACE_FILE", "Search", "SearchStage", "Space", "Step", "load_space", "parse_space", "uncovered"]

SPACE_FILE: Final = Path("selection/space.yaml")
# The sections whose every key is a modelling choice the selection must search or fix with a reason.
MODEL_SECTIONS: Final = ("split", "label", "als", "candidates", "features", "ranker")
# candidates: the union recall@N of the validation candidates (the generator's job); als, ranker: the model's NDCG.
JUDGES: Final = ("candidates", "als", "ranker")


@dataclass(frozen=True)
class Step:
    """One coordinate of the search: a setting, its candidate values and the model that judges it."""

    key: str  # "section.name"
    values: tuple[Any, ...]
    judge: str  # model whose validation metric (mean over the seeds) decides


@dataclass(frozen=True)
class SearchStage:
    """One stage of a ``staged`` search: the steps judged on ``judge``, ``configurations`` drawn, ``keep`` confirmed."""

    judge: str
    configurations: int
    keep: int


@dataclass(frozen=True)
class Search:
    """How the space is searched: ``coordinate`` passes over the steps, ``halving`` over random draws, or
    ``staged`` halving.

    ``halving`` (:mod:`reco.experiments.selection_halving`) draws ``configurations`` configurations with
    ``draw_seed``, screens them and the start on ``screen_seeds``, takes the best ``keep`` to every seed
    (judged on ``judge``), then ablates ``ablation_key`` (not drawn) on the chosen configuration.
    ``staged`` runs one such halving per entry of ``stages``, in order, each over the steps of its judge
    and starting from the previous stage's choice (the candidate generator first, judged on its recall,
    then the ranker's settings on the chosen candidates), then the ablation.
    """

    method: str = "coordinate"
    configurations: int = 0
    screen_seeds: tuple[int, ...] = ()
    keep: int = 0
    judge: str = "ranker"
    draw_seed: int = 0
    ablation_key: str = "ranker.exclude_groups"  # never drawn; ablated on the chosen configuration
    ablate: bool = True  # False: no ablation round (the key stays at its start value)
    stages: tuple[SearchStage, ...] = ()  # staged only

    def halving_stages(self) -> tuple[SearchStage, ...]:
        """The screen-and-confirm stages this search runs: ``stages`` when staged, else one over ``judge``."""
        if self.method == "staged":
            return self.stages
        return (SearchStage(judge=self.judge, configurations=self.configurations, keep=self.keep),)


METHODS: Final = ("coordinate", "halving", "staged")
HALVING_METHODS: Final = ("halving", "staged")  # the searches of :mod:`reco.experiments.selection_halving`


@dataclass(frozen=True)
class Space:
    """A parsed search space."""

    block: str
    metric: str
    seeds: tuple[int, ...]
    alpha: float  # one-sided level of the seed-paired test a gain must pass
    max_passes: int
    start: dict[str, Any]
    start_reasons: dict[str, str]
    steps: tuple[Step, ...]
    fixed: dict[str, str] = field(default_factory=dict)  # key -> why it is not searched
    search: Search = field(default_factory=Search)


def _fail(path: Path | str, message: str) -> None:
    raise ValueError(f"{path}: {message}")


def parse_space(spec: Mapping[str, Any], where: Path | str = SPACE_FILE) -> Space:
    """A :class:`Space` from the YAML mapping; a ``ValueError`` naming the file for a malformed one."""
    target = spec.get("target") or {}
    seeds = tuple(int(s) for s in spec.get("seeds", ()))
    if len(set(seeds)) < 3 or len(set(seeds)) != len(seeds):
        _fail(where, f"seeds {list(seeds)}: each candidate is judged on at least 3 distinct seeds")
    steps = []
    for raw in spec.get("steps") or []:
        step = Step(key=str(raw["key"]), values=tuple(raw["values"]), judge=str(raw.get("judge", "ranker")))
        if "." not in step.key or not step.values:
            _fail(where, f"step {step.key!r} needs a 'section.name' key and at least one value")
        if step.judge not in JUDGES:
            _fail(where, f"step {step.key!r}: judge {step.judge!r} is not one of {list(JUDGES)}")
        steps.append(step)
    start_spec = spec.get("start") or {}
    start, reasons = {}, {}
    for key, entry in start_spec.items():
        if not isinstance(entry, Mapping) or "value" not in entry or not str(entry.get("reason", "")).strip():
            _fail(where, f"start {key!r}: expected {{value: ..., reason: ...}} (a neutral value and why)")
        start[str(key)], reasons[str(key)] = entry["value"], str(entry["reason"])
    missing_start = sorted({step.key for step in steps} - set(start))
    if missing_start:
        _fail(where, f"searched settings without a neutral start value: {missing_start}")
    fixed = {str(key): str(reason) for key, reason in (spec.get("fixed") or {}).items()}
    both = sorted(set(fixed) & {step.key for step in steps})
    if both:
        _fail(where, f"settings both searched and fixed: {both}")
    raw_search = spec.get("search") or {}
    search = Search(
        method=str(raw_search.get("method", "coordinate")),
        configurations=int(raw_search.get("configurations", 0)),
        screen_seeds=tuple(int(s) for s in raw_search.get("screen_seeds", ())),
        keep=int(raw_search.get("keep", 0)),
        judge=str(raw_search.get("judge", "ranker")),
        draw_seed=int(raw_search.get("draw_seed", 0)),
        ablation_key=str(raw_search.get("ablation_key", "ranker.exclude_groups")),
        ablate=bool(raw_search.get("ablate", True)),
        stages=tuple(
            SearchStage(judge=str(stage.get("judge")), configurations=int(stage.get("configurations", 0)), keep=int(stage.get("keep", 0)))
            for stage in raw_search.get("stages") or ()
        ),
    )
    if search.method not in METHODS:
        _fail(where, f"search.method {search.method!r} is not one of {list(METHODS)}")
    if search.method in HALVING_METHODS:
        _check_stages(search, steps, where)
        if not search.screen_seeds or not set(search.screen_seeds) <= set(seeds):
            _fail(where, f"search.screen_seeds {list(search.screen_seeds)}: a non-empty subset of seeds {list(seeds)}")
    return Space(
        block=str(target.get("block", "validation")),
        metric=str(target.get("metric", "ndcg_at_10")),
        seeds=seeds,
        alpha=float(spec.get("alpha", 0.05)),
        max_passes=int(spec.get("max_passes", 2)),
        start=start,
        start_reasons=reasons,
        steps=tuple(steps),
        fixed=fixed,
        search=search,
    )


def _check_stages(search: Search, steps: list[Step], where: Path | str) -> None:
    """Each halving stage needs a known judge (distinct ones when staged) and sound sizes; a staged search
    needs a stage for every drawn step's judge."""
    stages = search.halving_stages()
    judges = [stage.judge for stage in stages]
    if not judges or len(set(judges)) != len(judges) or not set(judges) <= set(JUDGES):
        _fail(where, f"search: distinct judges out of {list(JUDGES)} expected, got {judges}")
    for stage in stages:
        if stage.configurations < 1 or not 1 <= stage.keep <= stage.configurations:
            _fail(where, f"search ({search.method}, judge {stage.judge}): configurations >= 1 and 1 <= keep <= configurations expected")
    orphans = sorted(step.key for step in steps if step.key != search.ablation_key and step.judge not in judges)
    if search.method == "staged" and orphans:
        _fail(where, f"search.stages: no stage judges {orphans} (their judges are not among {judges})")


def load_space(path: Path = SPACE_FILE) -> Space:
    """:func:`parse_space` of the YAML file."""
    return parse_space(yaml.safe_load(Path(path).read_text(encoding="utf-8")), path)


def uncovered(space: Space, params: Mapping[str, Any]) -> list[str]:
    """The model settings of ``params`` (``section.key``) that the space neither searches nor fixes."""
    covered = {step.key for step in space.steps} | set(space.fixed)
    keys = [f"{section}.{key}" for section in MODEL_SECTIONS for key in (params.get(section) or {})]
    return [key for key in keys if key not in covered]
