"""The pipeline benchmark's report logic on hand-made results (no pipeline run, no DVC).

Checks target evaluation (a missed target fails and carries its measured value), the markdown
rendering of ``RESULTS.md``, the scaling growth ratios, the stage ordering and the disk accounting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench.bare_fits import median_run
from benchmarks.bench.breakdown import time_breakdown
from benchmarks.bench.cli import main
from benchmarks.bench.disk import output_storage, tree_bytes
from benchmarks.bench.measuring import BenchmarkError
from benchmarks.bench.report import format_status, render_markdown
from benchmarks.bench.scaling import build_scaling, growth_scales
from benchmarks.bench.targets import evaluate_targets
from benchmarks.bench.workspace import topological_order

GIB = 1024**3
MIB = 1024**2


STAGES = ("ingest", "prepare", "split", "train_als@ranker", "train_als@test", "train_ranker", "evaluate")


def make_run(
    profile: str = "full",
    scale: float = 1.0,
    stage_s: float = 10.0,
    stage_rss: int = 1 * GIB,
    whole_s: float | None = 60.0,
    noop_s: float = 0.8,
    als_fit_s: float = 20.0,
    lgbm_fit_s: float = 10.0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A run dict shaped like the benchmark's (every stage takes ``stage_s`` and ``stage_rss``)."""
    stages = [
        {"stage": name, "wall_s": stage_s, "cpu_s": stage_s * 1.5, "peak_rss_bytes": stage_rss, "returncode": 0,
         "command": {"stage": name, "wall_s": stage_s - 1.0, "cpu_s": stage_s, "peak_rss_bytes": stage_rss, "returncode": 0}}
        for name in STAGES
    ]  # fmt: skip
    run: dict[str, Any] = {
        "profile": profile,
        "scale": scale,
        "overrides": overrides or {"data": {"profile": profile, "scale": scale}},
        "loadavg_before": [0.1, 0.1, 0.1],
        "loadavg_after": [0.5, 0.2, 0.1],
        "stages": stages,
        "stage_sum_s": stage_s * len(stages),
        "bare": {
            "als": [
                {"fit": f"als@{key}", "fit_s": als_fit_s / 2, "peak_rss_bytes": 900 * MIB, "n_users": 7176,
                 "n_items": 10728, "nnz": 12_000_000, "factors": 32, "iterations": 15, "num_threads": 2,
                 "factors_max_abs_diff": 0.0}
                for key in ("ranker", "test")
            ],
            "lightgbm": {"fit": "lightgbm", "fit_s": lgbm_fit_s, "peak_rss_bytes": 1100 * MIB, "train_rows": 80_000,
                         "valid_rows": 20_000, "n_features": 50, "rounds_trained": 120, "early_stopping_rounds": 30,
                         "best_iteration": 90, "pipeline_best_iteration": 90, "matches_pipeline": True, "num_threads": 2},
        },  # fmt: skip
        "whole_repro": None
        if whole_s is None
        else {"stage": "dvc repro --force", "wall_s": whole_s, "cpu_s": whole_s, "peak_rss_bytes": stage_rss,
              "returncode": 0, "stages_run": list(STAGES), "commands": [], "commands_wall_s": whole_s - 8.0},  # fmt: skip
        "noop_repro": {"stage": "dvc repro (no-op)", "wall_s": noop_s, "cpu_s": noop_s, "peak_rss_bytes": 70 * MIB,
                       "returncode": 0, "stages_run": []},  # fmt: skip
        "disk": {
            "bytes": {"data": 900 * MIB, "models": 10 * MIB, "dvc_cache": 910 * MIB},
            "combined_unique_bytes": 1820 * MIB,
            "output_files": 40,
            "output_links": {"copy": 40},
            "duplicated_bytes": 900 * MIB,
            "large_duplicates": [{"path": "data/raw/big_matrix.csv", "bytes": 600 * MIB, "link": "copy"}],
            "cache_type_configured": None,
            "cache_type_effective_setting": "reflink,copy (DVC's default)",
            "link_types_supported": ["hardlink", "symlink"],
            "cache_filesystem": "ext4 on /dev/vda",
        },
    }
    return run


def with_targets(run: dict[str, Any]) -> dict[str, Any]:
    run["targets"] = evaluate_targets(run)
    run["breakdown"] = time_breakdown(run)
    return run


def make_results(runs: list[dict[str, Any]], scaling: bool = False) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "generated_at": "2026-01-01T00:00:00+00:00",
        "command": "python benchmarks/pipeline_benchmark.py --profile full",
        "machine": {"cpu_count": 2, "ram_bytes": 24 * GIB, "cpu_model": "Test CPU", "python": "3.11.7",
                    "packages": {"polars": "2.1.0", "implicit": "0.7.3", "lightgbm": "4.7.0", "numpy": "2.4.6",
                                 "dvc": "3.67.1"}},  # fmt: skip
        "source": {"commit": "0123456789abcdef", "dirty": False},
        "runs": [with_targets(run) for run in runs],
        "scaling": build_scaling(runs) if scaling else None,
    }


def target(targets: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    matches = [t for t in targets if t["name"].startswith(prefix)]
    assert len(matches) == 1, [t["name"] for t in targets]
    return matches[0]


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r} in:\n{markdown}")


def test_a_fast_full_run_passes_every_target() -> None:
    # whole 36 s <= 1.3 x (20 + 10) = 39 s; stages 5 s; RSS 1 GiB; no-op 0.8 s.
    targets = evaluate_targets(make_run(stage_s=5.0, whole_s=36.0))
    assert {t["name"] for t in targets} >= {
        "whole pipeline wall time", "largest stage peak RSS", "no-op dvc repro", "stage prepare", "stage ingest",
    }  # fmt: skip
    assert all(t["passed"] and t["applies"] for t in targets), targets
    assert target(targets, "whole pipeline /")["measured"] == pytest.approx(36.0 / 30.0)


def test_missed_ratio_target_fails_and_shows_its_measured_value() -> None:
    results = make_results([make_run(whole_s=90.0)])  # 90 s vs 30 s of bare fits: 3.00x > 1.30x
    ratio = target(results["runs"][0]["targets"], "whole pipeline /")
    assert ratio["passed"] is False and ratio["measured"] == pytest.approx(3.0)
    markdown = render_markdown(results)
    row = table_row(markdown, "whole pipeline / (bare ALS fits + bare LightGBM fit)")
    assert row[1:4] == ["3.00x", "1.30x", "**FAIL**"]
    assert "90.00 s" in row[4] and "30.00 s" in row[4]
    # the targets that were met still read PASS
    assert table_row(markdown, "no-op dvc repro")[1:4] == ["0.80 s", "2.00 s", "PASS"]


def test_time_and_memory_limits_are_inclusive_and_name_the_culprit() -> None:
    run = make_run(stage_s=20.0, whole_s=240.0, noop_s=2.0)
    run["stages"][3]["peak_rss_bytes"] = int(3.5 * GIB)
    targets = evaluate_targets(run)
    assert target(targets, "stage prepare")["passed"]  # exactly 20 s
    assert target(targets, "whole pipeline wall time")["passed"]  # exactly 240 s
    assert target(targets, "no-op dvc repro")["passed"]  # exactly 2 s
    rss = target(targets, "largest stage peak RSS")
    assert not rss["passed"] and rss["measured"] == pytest.approx(3.5) and "train_als@ranker" in rss["detail"]
    slow = evaluate_targets(make_run(stage_s=61.0, whole_s=241.0, noop_s=2.5))
    for name in ("stage prepare", "stage ingest", "whole pipeline wall time", "no-op dvc repro"):
        assert not target(slow, name)["passed"], name


def test_absolute_targets_are_informational_outside_full_scale_1() -> None:
    for profile, scale in (("tiny", 1.0), ("full", 2.0)):
        targets = evaluate_targets(make_run(profile=profile, scale=scale, stage_s=70.0, whole_s=700.0))
        for name in ("whole pipeline wall time", "stage prepare", "stage ingest"):
            t = target(targets, name)
            assert not t["passed"] and not t["applies"], (profile, scale, t)
            assert format_status(t).startswith("**FAIL** (informational")
        assert target(targets, "whole pipeline /")["applies"]
        assert target(targets, "largest stage peak RSS")["applies"]


def test_noop_that_ran_stages_lists_them_and_whole_falls_back_to_stage_sum() -> None:
    run = make_run(whole_s=None, stage_s=5.0)
    run["noop_repro"]["stages_run"] = ["evaluate"]
    targets = evaluate_targets(run)
    assert "evaluate" in target(targets, "no-op dvc repro")["detail"]
    whole = target(targets, "whole pipeline wall time")
    assert whole["measured"] == pytest.approx(5.0 * len(STAGES)) and "sum" in whole["detail"]


def test_markdown_names_the_profile_and_has_well_formed_tables() -> None:
    tiny = make_results([make_run(profile="tiny", overrides={"data": {"profile": "tiny"}, "evaluate": {"ks": [5]}})])
    markdown = render_markdown(tiny)
    assert markdown.splitlines()[0] == "# Pipeline benchmark: profile tiny"
    assert "**tiny** profile only" in markdown and '{"evaluate": {"ks": [5]}}' in markdown
    full = render_markdown(make_results([make_run()]))
    assert "profile only" not in full
    row = table_row(full, "`train_ranker`")
    assert row[1:7] == ["10.00", "15.00", "1024", "9.00", "1024", "1.00"]  # dvc wall, CPU, RSS, command, RSS, overhead
    assert table_row(full, "`data/raw/big_matrix.csv`")[1] == "600.0"
    # every table row has as many cells as its header
    for markdown_text in (markdown, full):
        table: list[int] = []
        for line in [*markdown_text.splitlines(), ""]:
            if line.startswith("|"):
                table.append(line.count("|"))
            elif table:
                assert len(set(table)) == 1, table
                table = []


def test_time_breakdown_subtracts_each_engine_from_its_own_stage() -> None:
    # Every stage: 10 s dvc wall, 9 s command; ALS fits 10 s each (20 s in all), LightGBM 4 s.
    breakdown = time_breakdown(make_run(als_fit_s=20.0, lgbm_fit_s=4.0, whole_s=70.0))
    rows = {row["stage"]: row for row in breakdown["rows"]}
    assert rows["train_als@ranker"]["engine_s"] == 10.0 and rows["train_als@ranker"]["other_s"] == -1.0
    assert rows["train_ranker"]["engine_s"] == 4.0 and rows["train_ranker"]["other_s"] == 5.0
    assert rows["prepare"]["engine_s"] == 0.0 and rows["prepare"]["other_s"] == 9.0 and rows["prepare"]["dvc_s"] == 1.0
    assert breakdown["engine_s"] == 24.0 and breakdown["beyond_engines_s"] == 46.0
    assert breakdown["without_ingest_ratio"] == pytest.approx((70.0 - 10.0) / 24.0)
    markdown = render_markdown(make_results([make_run(als_fit_s=20.0, lgbm_fit_s=4.0, whole_s=70.0)]))
    assert "Without data acquisition the ratio would be 2.50x" in markdown


def test_bare_fits_report_the_median_repeat() -> None:
    runs = [{"fit_s": 7.0, "peak_rss_bytes": 1}, {"fit_s": 10.7, "peak_rss_bytes": 2}, {"fit_s": 6.9, "peak_rss_bytes": 3}]
    row = median_run(runs)
    assert row["fit_s"] == 7.0 and row["peak_rss_bytes"] == 1 and row["fit_s_runs"] == [7.0, 10.7, 6.9]
    assert median_run(runs[:2])["fit_s"] == 7.0  # even count: the lower middle, never an average
    run = make_run()
    run["bare"]["lightgbm"] = {**run["bare"]["lightgbm"], **row}
    markdown = render_markdown(make_results([run]))
    assert table_row(markdown, "LightGBM `lightgbm.train`")[1] == "7.00 (median of 7.00, 10.70, 6.90)"


def test_a_missed_target_carries_its_reason_and_fix_and_a_met_one_none() -> None:
    # whole 70 s against engines 24 s: 46 s beyond them where 0.3 x 24 = 7.2 s is allowed.
    run = make_run(als_fit_s=20.0, lgbm_fit_s=4.0, whole_s=70.0, stage_rss=int(3.5 * GIB))
    targets = evaluate_targets(run)
    ratio = target(targets, "whole pipeline / ")
    assert ratio["missed"]["reason"].startswith("46.0 s of the whole 70.0 s is outside the engine fits (24.0 s)")
    assert "the limit allows 7.2 s" in ratio["missed"]["reason"] and "without it the ratio would be 2.50x" in ratio["missed"]["reason"]
    assert ratio["missed"]["would_fix"]
    memory = target(targets, "largest stage peak RSS")
    assert "prepare 3.50 GiB (the parsed big_matrix (0.9 GiB at 1x)" in memory["missed"]["reason"]
    informational = evaluate_targets(make_run(scale=2.0, stage_s=30.0))
    assert target(informational, "stage prepare")["passed"] is False and target(informational, "stage prepare")["missed"] is None
    assert memory["missed"]["would_fix"].startswith("Stream the stage")
    assert target(targets, "no-op dvc repro")["missed"] is None
    markdown = render_markdown(make_results([run]))
    assert "- **whole pipeline / (bare ALS fits + bare LightGBM fit)** (2.92x): 46.0 s of the whole" in markdown
    assert "*What would fix it:* Stream the stage" in markdown


def test_report_only_reevaluates_stored_measurements(tmp_path: Path) -> None:
    results = make_results([make_run(als_fit_s=20.0, lgbm_fit_s=4.0, whole_s=70.0)])
    for run in results["runs"]:
        del run["targets"], run["breakdown"]  # as written by an older version of the script
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert main(["--report-only", "--out-dir", str(tmp_path)]) == 0
    rewritten = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert target(rewritten["runs"][0]["targets"], "whole pipeline / ")["missed"]["would_fix"]
    assert rewritten["runs"][0]["breakdown"]["engine_s"] == 24.0
    assert "Missed targets: why, and what would fix them." in (tmp_path / "RESULTS.md").read_text(encoding="utf-8")


def test_busy_machine_is_flagged() -> None:
    run = make_run()
    run["loadavg_after"] = [3.4, 2.0, 1.0]
    results = make_results([run])
    assert "**Busy machine**" in render_markdown(results)
    assert "**Busy machine**" not in render_markdown(make_results([make_run()]))


def test_scaling_growth_ratio_is_2_for_linear_and_1_for_constant_costs() -> None:
    runs = []
    for scale in (0.25, 0.5, 1.0, 2.0):
        run = make_run(scale=scale, stage_s=10.0 * scale, whole_s=60.0 * scale, als_fit_s=20.0 * scale)
        run["stages"][0]["wall_s"] = 3.0  # ingest: constant
        run["stages"][0]["peak_rss_bytes"] = int(GIB * scale)
        runs.append(run)
    results = make_results(runs, scaling=True)
    scaling = results["scaling"]
    assert (scaling["ratio_from_scale"], scaling["ratio_to_scale"]) == (1.0, 2.0)
    rows = {row["name"]: row for row in scaling["rows"]}
    assert rows["prepare"]["wall_s_ratio"] == pytest.approx(2.0) and rows["prepare"]["wall_s_exponent"] == pytest.approx(1.0)
    assert rows["ingest"]["wall_s_ratio"] == pytest.approx(1.0) and rows["ingest"]["wall_s_exponent"] == pytest.approx(0.0)
    assert rows["ingest"]["peak_rss_bytes_ratio"] == pytest.approx(2.0)
    assert rows["whole dvc repro --force"]["wall_s_ratio"] == pytest.approx(2.0)
    assert rows["bare als@test fit"]["wall_s_ratio"] == pytest.approx(2.0)
    assert rows["bare lightgbm fit"]["wall_s_ratio"] == pytest.approx(1.0)
    assert rows["prepare"]["wall_s"] == {"0.25": 2.5, "0.5": 5.0, "1.0": 10.0, "2.0": 20.0}
    markdown = render_markdown(results)
    assert "## Scaling" in markdown
    cells = table_row(markdown.split("## Scaling", 1)[1], "`prepare`")  # the time table comes first
    assert cells[1:7] == ["2.50", "5.00", "10.00", "20.00", "2.00", "1.00"]
    # without scales 1 and 2 the two largest are compared
    assert growth_scales([0.5, 0.25]) == (0.25, 0.5)
    with pytest.raises(ValueError):
        growth_scales([1.0])


def test_topological_order_follows_edges_then_dvc_yaml_order() -> None:
    names = ["ingest", "prepare", "split", "train_als@ranker", "train_als@test", "candidates", "features@train"]
    edges = [("ingest", "prepare"), ("prepare", "split"), ("split", "train_als@ranker"), ("split", "train_als@test"),
             ("train_als@test", "candidates"), ("train_als@ranker", "features@train"), ("candidates", "features@train")]  # fmt: skip
    assert topological_order(list(reversed(names)), edges)[:3] == ["ingest", "prepare", "split"]
    order = topological_order(names, edges)
    assert order == names
    for upstream, downstream in edges:
        assert order.index(upstream) < order.index(downstream)
    with pytest.raises(BenchmarkError):
        topological_order(["a", "b"], [("a", "b"), ("b", "a")])


def test_disk_accounting_counts_hardlinks_once_and_finds_copies(tmp_path: Path) -> None:
    work = tmp_path
    payload, other = b"x" * 5000, b"y" * 3000
    md5_a, md5_b = "aa" + "0" * 30, "bb" + "1" * 30
    (work / "data").mkdir()
    cache = work / ".dvc" / "cache" / "files" / "md5"
    for md5, data in ((md5_a, payload), (md5_b, other)):
        (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
        (cache / md5[:2] / md5[2:]).write_bytes(data)
    os.link(cache / md5_a[:2] / md5_a[2:], work / "data" / "linked.bin")  # hardlink: stored once
    (work / "data" / "copied.bin").write_bytes(other)  # copy: stored twice
    (work / "dvc.lock").write_text(json.dumps({"schema": "2.0", "stages": {"s": {"outs": [
        {"path": "data/linked.bin", "md5": md5_a}, {"path": "data/copied.bin", "md5": md5_b}]}}}))  # fmt: skip
    rows = {row["path"]: row["link"] for row in output_storage(work)}
    assert rows == {"data/linked.bin": "hardlink", "data/copied.bin": "copy"}
    seen: set[tuple[int, int]] = set()
    data_bytes = tree_bytes(work / "data", seen)
    cache_bytes = tree_bytes(work / ".dvc" / "cache", seen)
    dir_sizes = os.lstat(work / "data").st_size
    assert data_bytes == dir_sizes + len(payload) + len(other)
    # the cache's copy of the hardlinked file was already counted under data/
    assert cache_bytes == tree_bytes(work / ".dvc" / "cache") - len(payload)
