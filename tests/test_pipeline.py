"""End to end: `dvc repro` on the tiny simulator profile in a temporary git repository.

Checks the product's contract rather than numbers: the metrics layout, the model ordering on the
simulator's ground truth, that a second repro does nothing, that a params change or an edited
``reco`` module invalidates exactly the stages dvc.yaml says depend on it (and then their
downstream stages), that a forced rerun reproduces every output and dvc.lock byte for byte, and that
the plots declared in dvc.yaml render from the outputs into an HTML page that needs no network.
The expected stage sets are computed from dvc.yaml, not written out by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dvc_stages import declared_params, load_stages
from project_copy import (  # noqa: F401 (TINY_OVERRIDES: re-exported)
    TINY_OVERRIDES,
    copy_built,
    dvc,
    merge_params,
    subprocess_env,
)

MODELS = {
    "random", "popularity", "duration", "duration_popularity", "popularity_within_duration", "als", "ranker",
    "oracle", "oracle_watch_ratio", "oracle_item", "oracle_item_watch_ratio",
}  # fmt: skip


def set_params(workdir: Path, overrides: dict[str, dict]) -> None:
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(merge_params(yaml.safe_load(path.read_text()), overrides), sort_keys=False))


def digest_outputs(workdir: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/, metrics/ plus dvc.lock."""
    digests = {}
    for top in ("data", "models", "metrics"):
        for path in sorted((workdir / top).rglob("*")):
            if path.is_file() and ".gitignore" not in path.name:
                digests[str(path.relative_to(workdir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    digests["dvc.lock"] = hashlib.sha256((workdir / "dvc.lock").read_bytes()).hexdigest()
    return digests


@dataclass
class ForcedRerun:
    """``dvc repro --force`` of a copy of the tiny pipeline, running beside this module's other tests."""

    workdir: Path
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def forced_rerun(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForcedRerun]:
    # Its own copy, so it shares nothing with the tests that edit `pipeline`: it runs while they do.
    workdir = copy_built(tiny_pipeline, tmp_path_factory.mktemp("forced") / "repo")
    log = workdir.parent / "repro.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "--force"], cwd=workdir, env=subprocess_env(), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield ForcedRerun(workdir, log, process)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline: Path, forced_rerun: ForcedRerun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The tests below edit params and code and rerun stages: a copy of the session's built tiny pipeline.
    # (Asking for `forced_rerun` here starts it with this module's first test.)
    return copy_built(tiny_pipeline, tmp_path_factory.mktemp("pipeline") / "repo")


def test_metrics_layout_and_model_order(pipeline: Path) -> None:
    metrics = json.loads((pipeline / "metrics" / "metrics.json").read_text())
    assert metrics["protocol"] == "fully_observed"
    assert metrics["label_threshold"] == 2.0
    # a validation block (where settings are chosen) and the test block, with the same models and metrics
    for block in ("validation", "test"):
        section = metrics[block]
        assert section["data"]["source"] == "simulate" and section["data"]["profile"] == "tiny"
        assert set(section["models"]) == MODELS
        for model in section["models"].values():
            for k in (5, 10, 20):
                for name in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage"):
                    assert 0.0 <= model[f"{name}_at_{k}"] <= 1.0
        assert "recall_at_30" in section["candidates"]
        ndcg = {name: values["ndcg_at_10"] for name, values in section["models"].items()}
        # The ground truth must beat chance by a wide margin even on the tiny profile.
        assert ndcg["oracle"] > ndcg["random"] + 0.1
    assert metrics["validation"]["models"].keys() == metrics["test"]["models"].keys()
    assert "ndcg" in metrics["definitions"]
    spread = json.loads((pipeline / "metrics" / "seed_spread.json").read_text())
    # the seed spread is measured on the validation block, where settings are chosen
    assert spread["seeds"] == [1, 42] and set(spread["blocks"]) == {"validation"} and spread["block"] == "validation"
    assert len(spread["blocks"]["validation"]["models"]["ranker"]["ndcg_at_10"]["values"]) == 2


def test_seed_run_with_the_pipelines_seed_is_the_pipeline(pipeline: Path) -> None:
    # A seed run is the pipeline's own stages with `--seed N`: with the pipeline's seed (42) its
    # models and validation results must be the pipeline's, byte for byte.
    run = pipeline / "data" / "seeds" / "42"
    pairs = [
        ("models/als/ranker", "models/als/ranker"),
        ("models/als/test", "models/als/test"),
        ("data/features/train", "data/features/train"),
        ("data/candidates/validation.parquet", "data/candidates/validation.parquet"),
        ("metrics/candidates/validation.json", "metrics/candidates/validation.json"),
        ("data/features/validation", "data/features/validation"),
        ("models/ranker", "models/ranker"),
        ("metrics/blocks/validation", "metrics/blocks/validation"),
        ("data/evaluation/validation", "data/evaluation/validation"),
    ]
    for seeded, headline in pairs:
        files = sorted(p.relative_to(run / seeded) for p in (run / seeded).rglob("*") if p.is_file()) if (run / seeded).is_dir() else [Path()]
        assert files, seeded
        for name in files:
            assert (run / seeded / name).read_bytes() == (pipeline / headline / name).read_bytes(), (seeded, name)
    spread = json.loads((pipeline / "metrics" / "seed_spread.json").read_text())
    metrics = json.loads((pipeline / "metrics" / "metrics.json").read_text())
    at_42 = spread["seeds"].index(42)
    for model in ("als", "ranker"):
        for metric in ("ndcg_at_10", "map_at_10"):
            retrained = spread["blocks"]["validation"]["models"][model][metric]["values"][at_42]
            assert retrained == round(metrics["validation"]["models"][model][metric], 6), (model, metric)


def test_recommendations_file_is_the_served_top_k(pipeline: Path) -> None:
    import polars as pl

    top = pl.read_parquet(pipeline / "data" / "evaluation" / "test" / "top_k.parquet")
    assert top.columns == ["user_id", "video_id", "rank", "score"]
    per_user = top.group_by("user_id").agg(pl.len().alias("n"), pl.col("rank").min().alias("first"))
    assert per_user["n"].max() <= 10 and per_user["first"].max() == 1
    assert top.select(["user_id", "video_id"]).is_unique().all()


def test_ingest_records_the_checksum_of_every_raw_file(pipeline: Path) -> None:
    raw = pipeline / "data" / "raw"
    recorded = json.loads((raw / "manifest.json").read_text(encoding="utf-8"))["checksums"]
    on_disk = sorted(p.name for p in raw.iterdir() if p.is_file() and p.name != "manifest.json")
    assert sorted(recorded) == on_disk
    for name, entry in recorded.items():
        data = (raw / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name


def test_second_repro_does_nothing(pipeline: Path) -> None:
    result = dvc("repro", cwd=pipeline)
    assert "Running stage" not in result.stdout, result.stdout
    status = dvc("status", cwd=pipeline)
    assert "up to date" in status.stdout.lower(), status.stdout


def stages_rerun(workdir: Path, *args: str) -> set[str]:
    """Run `dvc repro [args]` and return the stages it executed or restored from the run cache."""
    out = dvc("repro", *args, cwd=workdir).stdout
    return set(re.findall(r"Running stage '([^']+)'", out)) | set(re.findall(r"Stage '([^']+)' is cached", out))


def stale_stages(workdir: Path) -> set[str]:
    """Stages `dvc status` reports as changed (a stage is listed when its own deps, params or outs changed)."""
    return set(json.loads(dvc("status", "--json", cwd=workdir).stdout))


def pipeline_stages(workdir: Path) -> dict[str, dict]:
    """dvc.yaml's stages, expanded as DVC names them, as {"deps", "params", "outs"} path/section sets.

    ``params`` holds each declared entry (``als`` or ``als.factors``) and the section of each key.
    """
    stages: dict[str, dict] = {}
    for full_name, body in load_stages(workdir).items():
        outs = {
            entry if isinstance(entry, str) else next(iter(entry))
            for kind in ("outs", "metrics", "plots")
            for entry in body.get(kind, [])
        }
        entries = declared_params(body)
        params = entries | {entry.split(".")[0] for entry in entries}
        stages[full_name] = {"deps": set(body.get("deps", [])), "params": params, "outs": outs}
    return stages


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def downstream(stages: dict[str, dict], changed: set[str]) -> set[str]:
    """``changed`` plus every stage that depends, transitively, on one of their outputs."""
    result = set(changed)
    grew = True
    while grew:
        grew = False
        for name, stage in stages.items():
            if name in result:
                continue
            produced = {out for other in result for out in stages[other]["outs"]}
            if any(_overlaps(dep, out) for dep in stage["deps"] for out in produced):
                result.add(name)
                grew = True
    return result


def test_dependency_graph_helpers_agree_with_the_pipeline(pipeline: Path) -> None:
    # Guards the helpers the tests below compute their expectations with.
    stages = pipeline_stages(pipeline)
    readers = {name for name, s in stages.items() if "ranker" in s["params"]}
    assert readers == {"train_ranker", "seed_ranker@1", "seed_ranker@42"}
    # the seed runs retrain their own rankers from their own features: not downstream of train_ranker
    assert downstream(stages, {"train_ranker"}) == {"train_ranker", "evaluate@validation", "evaluate@test", "report"}
    assert downstream(stages, {"seed_ranker@1"}) == {"seed_ranker@1", "seed_spread", "report"}
    assert downstream(stages, {"ingest"}) == set(stages)


def test_changing_a_ranker_param_marks_its_readers_then_their_downstream(pipeline: Path) -> None:
    stages = pipeline_stages(pipeline)
    readers = {name for name, s in stages.items() if "ranker" in s["params"]}
    expected = downstream(stages, readers)
    assert {"train_ranker", "evaluate@validation", "evaluate@test", "report"} <= expected
    assert {"seed_ranker@1", "seed_ranker@42", "seed_spread"} <= expected
    # a ranker-only experiment reuses every ALS-side seed run (and the headline's ALS side)
    assert not expected & {
        "ingest", "prepare", "split", "train_als@ranker", "candidates@test", "features@train",
        "seed_als@1", "seed_als@42", "seed_als_ranker@1", "seed_als_ranker@42", "seed_candidates@1", "seed_candidates@42",
        "seed_features@1", "seed_features@42",
    }  # fmt: skip
    original = (pipeline / "params.yaml").read_text()
    try:
        set_params(pipeline, {"ranker": {"num_leaves": 7}})
        # `dvc status` lists the stages whose own deps changed: those reading the `ranker` section...
        assert stale_stages(pipeline) == readers
        assert stages_rerun(pipeline, "--single-item", "train_ranker") == {"train_ranker"}
        # ...and once the ranker is retrained, the stages consuming its outputs.
        consumers = {
            name for name, s in stages.items()
            if any(_overlaps(dep, out) for dep in s["deps"] for out in stages["train_ranker"]["outs"])
        }  # fmt: skip
        assert {"evaluate@validation", "evaluate@test"} <= consumers
        assert stale_stages(pipeline) == (readers - {"train_ranker"}) | consumers
        assert stages_rerun(pipeline) == expected - {"train_ranker"}
        assert stale_stages(pipeline) == set()
    finally:
        (pipeline / "params.yaml").write_text(original)
        dvc("repro", cwd=pipeline)  # back to the committed params (restored from the run cache)
    assert stale_stages(pipeline) == set()


def test_choosing_on_validation_never_builds_the_test_block(pipeline: Path) -> None:
    # What the selection sweep runs: `dvc exp run evaluate@validation` targets the validation block only.
    stages = pipeline_stages(pipeline)
    test_only = {"candidates@test", "features@test", "evaluate@test", "report"}
    upstream_of_validation = {"evaluate@validation"}
    grew = True
    while grew:
        grew = False
        for name, stage in stages.items():
            if name not in upstream_of_validation and any(
                _overlaps(dep, out) for other in upstream_of_validation for dep in stages[other]["deps"] for out in stage["outs"]
            ):
                upstream_of_validation.add(name)
                grew = True
    assert not upstream_of_validation & test_only, upstream_of_validation & test_only
    original = (pipeline / "params.yaml").read_text()
    try:
        set_params(pipeline, {"ranker": {"num_leaves": 5}})
        assert stages_rerun(pipeline, "evaluate@validation") == {"train_ranker", "evaluate@validation"}
    finally:
        (pipeline / "params.yaml").write_text(original)
        dvc("repro", cwd=pipeline)
    assert stale_stages(pipeline) == set()


def test_changing_the_headline_seed_reruns_no_seed_run(pipeline: Path) -> None:
    # The seed runs set their own seeds: they list every ranker/als key but the seed (dvc.yaml).
    original = (pipeline / "params.yaml").read_text()
    try:
        set_params(pipeline, {"ranker": {"seed": 7}, "als": {"random_state": 7}})
        assert stale_stages(pipeline) == {"train_als@ranker", "train_als@test", "train_ranker"}
    finally:
        (pipeline / "params.yaml").write_text(original)
    assert stale_stages(pipeline) == set()


def test_changing_an_upstream_param_reruns_exactly_the_downstream_stages(pipeline: Path) -> None:
    stages = pipeline_stages(pipeline)
    readers = {name for name, s in stages.items() if "als" in s["params"]}
    assert readers == {"train_als@ranker", "train_als@test", "seed_als@1", "seed_als@42", "seed_als_ranker@1", "seed_als_ranker@42"}
    original = (pipeline / "params.yaml").read_text()
    try:
        set_params(pipeline, {"als": {"factors": 8}})
        assert stale_stages(pipeline) == readers
        assert stages_rerun(pipeline) == downstream(stages, readers) == {
            "train_als@ranker", "train_als@test", "candidates@validation", "candidates@test", "features@train",
            "features@validation", "features@test", "train_ranker", "evaluate@validation", "evaluate@test",
            "seed_als@1", "seed_als@42", "seed_als_ranker@1", "seed_als_ranker@42", "seed_candidates@1", "seed_candidates@42",
            "seed_features@1", "seed_features@42", "seed_ranker@1", "seed_ranker@42", "seed_spread", "report",
        }  # fmt: skip
    finally:
        (pipeline / "params.yaml").write_text(original)
        dvc("repro", cwd=pipeline)
    assert stale_stages(pipeline) == set()


@pytest.mark.parametrize("module", ["reco/models/ranker.py", "reco/models/als.py", "reco/evaluation/metrics.py"])
def test_editing_a_module_marks_exactly_the_stages_that_import_it(pipeline: Path, module: str) -> None:
    stages = pipeline_stages(pipeline)
    expected = {name for name, s in stages.items() if module in s["deps"]}
    assert expected, f"no stage declares {module}"
    path = pipeline / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit that changes the file's hash and nothing else\n")
        assert stale_stages(pipeline) == expected
    finally:
        path.write_bytes(original)
    assert stale_stages(pipeline) == set()


def test_forced_rerun_is_byte_identical(pipeline: Path, tiny_pipeline: Path, forced_rerun: ForcedRerun) -> None:
    # Outputs and dvc.lock: those of the first repro (the session's build, untouched), of this module's
    # copy after the tests above edited and restored it, and of a copy after `repro --force` of every stage.
    first = digest_outputs(tiny_pipeline)
    assert "dvc.lock" in first and len(first) > 20
    assert any(name.startswith("data/seeds/42/") for name in first)  # the seed runs are rerun too
    returncode = forced_rerun.process.wait(timeout=1800)
    printed = forced_rerun.log.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, printed[-4000:]
    assert set(re.findall(r"Running stage '([^']+)'", printed)) == set(pipeline_stages(forced_rerun.workdir))
    for label, workdir in (("restored", pipeline), ("--force", forced_rerun.workdir)):
        digests = digest_outputs(workdir)
        changed = sorted(set(first) ^ set(digests) | {n for n in first if first[n] != digests.get(n)})
        assert changed == [], f"outputs differ from the first repro's ({label}): {changed}"


PLOT_IDS = {
    "metrics_at_k",
    "precision_recall_at_k",
    "als_loss",
    "ranker_validation",
    "feature_importance",
    "paired_differences",
}


def test_plots_render_from_the_outputs_without_network(pipeline: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((pipeline / "dvc.yaml").read_text(encoding="utf-8"))
    declared = {next(iter(entry)) for entry in spec["plots"]}
    assert declared == PLOT_IDS
    shown = json.loads(dvc("plots", "show", "--json", cwd=pipeline).stdout)
    assert "errors" not in json.dumps(shown), shown
    for plot_id in PLOT_IDS:
        (rendered,) = shown["data"][plot_id]
        assert rendered["type"] == "vega" and rendered["content"]["data"]["values"], plot_id
    rows = shown["data"]["metrics_at_k"][0]["content"]["data"]["values"]
    assert {row["model"] for row in rows} == MODELS
    assert {row["field"] for row in rows} == {"precision", "recall", "ndcg", "map"}
    # The HTML page (template from .dvc/config) inlines vega, vega-lite and vega-embed: no CDN.
    out = tmp_path / "html"
    dvc("plots", "show", "-o", str(out), cwd=pipeline)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", page), "the plots page loads a script from elsewhere"
    assert "https://cdn." not in page
    for plot_id in PLOT_IDS:
        assert f'id = "{plot_id}"' in page
