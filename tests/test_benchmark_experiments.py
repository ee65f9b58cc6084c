"""The benchmark's experiment reports on hand-made measurement records (no pipeline run, no timings asserted).

Covers engines side by side (the stage process alone vs the sum over its worker processes, a failed
engine recorded rather than raised), the scaling table up to scale 10 with the disk per scale,
parallel experiments against the fair share of the cores, and the CPU-path hash comparison.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from test_benchmark_report import GIB, MIB, STAGES, make_run, table_row

from benchmarks.bench.cli import main, parse_scales
from benchmarks.bench.cpu_paths import compare_cpu_paths, cpu_path_settings
from benchmarks.bench.derive import derive, failures
from benchmarks.bench.engines import parse_engines
from benchmarks.bench.parallel import parse_levels, summarize_parallel, threads_per_run
from benchmarks.bench.report import render_markdown
from benchmarks.bench.targets import PARALLEL_SHARED_FIX, PARALLEL_SPIN_FIX

X86_DISPATCH = ["X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR"]


def results_with(runs: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
    """A results dict around ``runs`` (and experiments), derived like the benchmark does it."""
    results = {
        "schema_version": 2,
        "generated_at": "2026-01-01T00:00:00+00:00",
        "command": "python benchmarks/pipeline_benchmark.py",
        "machine": {
            "cpu_count": 2,
            "ram_bytes": 24 * GIB,
            "cpu_model": "Test CPU",
            "python": "3.11.7",
            "packages": {"numpy": "2.4.6"},
        },
        "source": {"commit": "0123456789abcdef", "dirty": False},
        "runs": runs,
        "scaling": None,
        **parts,
    }
    return derive(results)


def sampled(stage_process: int, tree: int, processes: int) -> dict[str, Any]:
    return {
        "interval_s": 0.2,
        "samples": 50,
        "tree_peak_rss_bytes": tree + 100 * MIB,
        "stage_process_peak_rss_bytes": stage_process,
        "stage_tree_peak_rss_bytes": tree,
        "stage_tree_max_processes": processes,
        "error": None,
    }


def engine_run(engine: str, stage_s: float, stage_process: int, tree: int, processes: int) -> dict[str, Any]:
    run = make_run(
        profile="tiny",
        stage_s=stage_s,
        overrides={"data": {"profile": "tiny", "scale": 1.0}, "compute": {"engine": engine}},
    )
    run["engine"] = engine
    for row in run["stages"]:
        row["sampled"] = sampled(stage_process, tree, processes)
    return run


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table row (header and rule rows included)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def section(markdown: str, title: str) -> str:
    """The markdown from the heading ``title`` to the next heading of the same level."""
    level = title.split(" ")[0]
    after = markdown.split(title, 1)[1]
    return after.split(f"\n{level} ", 1)[0]


# ---------------------------------------------------------------------------------------------
# Engines side by side
# ---------------------------------------------------------------------------------------------


def test_engines_side_by_side_show_the_stage_process_and_the_sum_over_its_workers() -> None:
    local = engine_run("local", stage_s=10.0, stage_process=1 * GIB, tree=1 * GIB, processes=1)
    dask = engine_run("dask", stage_s=15.0, stage_process=GIB // 2, tree=int(2.5 * GIB), processes=3)
    results = results_with([local, dask])
    group = results["engines"]["groups"][0]
    assert results["engines"]["engines"] == ["local", "dask"] and (group["profile"], group["scale"]) == ("tiny", 1.0)
    prepare = next(row for row in group["rows"] if row["stage"] == "prepare")
    assert prepare["cells"]["dask"]["stage_process_peak_rss_bytes"] == GIB // 2
    assert prepare["cells"]["dask"]["stage_tree_peak_rss_bytes"] == int(2.5 * GIB)
    assert prepare["wall_ratio"]["dask"] == pytest.approx(1.5)
    assert prepare["tree_rss_ratio"]["dask"] == pytest.approx(2.5)
    markdown = render_markdown(results)
    assert "## Run: profile `tiny`, scale 1, engine `dask`" in markdown
    # local: wall, wait4, stage, tree, procs | dask: the same | dask/local wall, tree
    cells = table_row(section(markdown, "## Engines side by side"), "`prepare`")
    assert cells[1:] == ["10.00", "1024", "1024", "1024", "1", "15.00", "1024", "512", "2560", "3", "1.50", "2.50"]
    # the runs' own stage tables carry the sampled columns as well
    assert table_row(section(markdown, "## Run: profile `tiny`, scale 1, engine `dask`"), "`prepare`")[-2:] == [
        "512",
        "2560",
    ]
    assert results["scaling_by_engine"] == {"local": None, "dask": None}  # one scale: no scaling table


def test_a_failed_engine_run_is_recorded_and_the_other_engine_still_reported() -> None:
    local = engine_run("local", stage_s=10.0, stage_process=GIB, tree=GIB, processes=1)
    dask = engine_run("dask", stage_s=12.0, stage_process=GIB, tree=2 * GIB, processes=3)
    dask["stages"] = dask["stages"][:3]
    dask["stages"][2]["returncode"] = 1
    for key in ("bare", "whole_repro", "noop_repro", "disk"):
        del dask[key]
    dask["failed"] = {
        "step": "stage split",
        "error": "stage split failed with exit code 1 (...); log /tmp/x.log:\n"
        "ModuleNotFoundError: No module named 'distributed'",
    }
    results = results_with([local, dask])
    assert "targets" not in results["runs"][1] and results["runs"][0]["targets"]
    assert failures(results) == ["run profile tiny, scale 1, engine dask: stage split"]
    group = results["engines"]["groups"][0]
    assert group["runs"]["dask"]["failed"]["step"] == "stage split" and group["runs"]["local"]["failed"] is None
    rows = {row["stage"]: row for row in group["rows"]}
    assert rows["train_ranker"]["cells"]["dask"] is None and rows["train_ranker"]["wall_ratio"]["dask"] is None
    assert rows["split"]["cells"]["dask"]["returncode"] == 1
    markdown = render_markdown(results)
    engines = section(markdown, "## Engines side by side")
    assert "Engine `dask` **failed** at stage split: stage split failed with exit code 1 (...)" in engines
    assert table_row(engines, "`train_ranker`")[6] == "not run"
    assert table_row(engines, "`split`")[6] == "12.00 (exit 1)"
    failed_run = section(markdown, "## Run: profile `tiny`, scale 1, engine `dask` — failed")
    assert "ModuleNotFoundError: No module named 'distributed'" in failed_run  # the log's tail is shown
    assert "### Targets" not in failed_run


def test_engine_list_is_validated() -> None:
    assert parse_engines("local, dask") == ["local", "dask"]
    for bad in ("", "local,local", "spark"):
        with pytest.raises(ValueError):
            parse_engines(bad)


# ---------------------------------------------------------------------------------------------
# Scaling up to 10x
# ---------------------------------------------------------------------------------------------


def scaled_run(scale: float) -> dict[str, Any]:
    run = make_run(scale=scale, stage_s=10.0 * scale, stage_rss=int(0.2 * GIB * scale), whole_s=60.0 * scale)
    run["stages"][0]["wall_s"] = 3.0  # ingest: a constant cost
    run["disk"]["bytes"] = {"data": int(100 * MIB * scale), "models": 10 * MIB, "dvc_cache": int(100 * MIB * scale)}
    run["disk"]["combined_unique_bytes"] = int(200 * MIB * scale) + 10 * MIB
    return run


def test_scaling_to_10x_reports_time_memory_and_disk_per_scale_and_the_1x_to_10x_ratio() -> None:
    results = results_with([scaled_run(s) for s in (1.0, 2.0, 5.0, 10.0)])
    scaling = results["scaling"]
    assert scaling["scales"] == [1.0, 2.0, 5.0, 10.0]
    assert (scaling["ratio_from_scale"], scaling["ratio_to_scale"]) == (1.0, 10.0)
    rows = {row["name"]: row for row in scaling["rows"]}
    assert rows["prepare"]["wall_s"]["5.0"] == pytest.approx(50.0) and rows["prepare"]["wall_s"][
        "10.0"
    ] == pytest.approx(100.0)
    assert rows["prepare"]["wall_s_ratio"] == pytest.approx(10.0) and rows["prepare"][
        "wall_s_exponent"
    ] == pytest.approx(1.0)
    assert rows["ingest"]["wall_s_ratio"] == pytest.approx(1.0) and rows["ingest"]["wall_s_exponent"] == pytest.approx(
        0.0
    )
    assert rows["prepare"]["peak_rss_bytes_ratio"] == pytest.approx(10.0, rel=1e-6)
    disk = {row["name"]: row for row in scaling["disk"]}
    assert disk["data"]["bytes"]["10.0"] == 1000 * MIB and disk["data"]["ratio"] == pytest.approx(10.0)
    assert disk["models"]["ratio"] == pytest.approx(1.0)
    assert disk["dvc_cache"]["bytes"]["5.0"] == 500 * MIB
    markdown = section(render_markdown(results), "## Scaling")
    assert "growth ×10/×1" in markdown and "dvc repro @10" in markdown
    assert table_row(markdown, "`prepare`")[1:7] == ["10.00", "20.00", "50.00", "100.00", "10.00", "1.00"]
    disk_table = markdown.split("### Disk", 1)[1]
    assert table_row(disk_table, "`data/`")[1:] == ["100", "200", "500", "1000", "10.00"]
    assert table_row(disk_table, "`.dvc/cache`")[1:] == ["100", "200", "500", "1000", "10.00"]
    assert table_row(disk_table, "`models/`")[1:] == ["10", "10", "10", "10", "1.00"]


def test_a_failed_scale_is_named_and_left_out_of_the_growth() -> None:
    failed = scaled_run(10.0)
    failed["stages"] = failed["stages"][:2]
    failed["stages"][1]["returncode"] = -9  # killed: out of memory
    failed["failed"] = {"step": "stage prepare", "error": "stage prepare failed with exit code -9"}
    results = results_with([scaled_run(1.0), scaled_run(5.0), failed])
    scaling = results["scaling"]
    assert scaling["scales"] == [1.0, 5.0] and scaling["ratio_to_scale"] == 5.0
    assert scaling["failed_scales"] == [{"scale": 10.0, "step": "stage prepare"}]
    markdown = render_markdown(results)
    assert "> Scale 10 failed at stage prepare" in markdown
    assert "`prepare` (**exit -9**)" in markdown


def test_scales_accept_5_and_10_and_a_single_scale() -> None:
    assert parse_scales("1,5,10") == [1.0, 5.0, 10.0]
    assert parse_scales("1") == [1.0]
    for bad in ("0,1", "1,11", "1,1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_scales(bad)


# ---------------------------------------------------------------------------------------------
# Parallel experiments
# ---------------------------------------------------------------------------------------------


def parallel_record(copies_k2: list[tuple[float, float]], threads: int = 2, cores: int = 2) -> dict[str, Any]:
    """Raw parallel measurements: alone 10 s (15 CPU s), then k=2 with the given (wall, cpu) per copy."""
    return {
        "profile": "full",
        "scale": 1.0,
        "overrides": {},
        "levels": [1, 2],
        "cores": cores,
        "stages": ["train_ranker"],
        "setup_stages": ["ingest", "prepare"],
        "thread_settings": {
            "als_num_threads": 2,
            "ranker_num_threads": 2,
            "compute_engine": None,
            "env": {"POLARS_MAX_THREADS": None, "OMP_WAIT_POLICY": "PASSIVE"},
        },
        "threads_per_run_sources": {"polars": 2, "ranker": 2},
        "threads_per_run": threads,
        "threads_per_run_overridden": False,
        "failed": None,
        "rounds": [
            {
                "k": 1,
                "loadavg_before": [0.1, 0.1, 0.1],
                "loadavg_after": [0.9, 0.2, 0.1],
                "copies": [
                    {"copy": 0, "failed": None, "wall_s": 10.0, "cpu_s": 15.0, "peak_rss_bytes": GIB, "stages": []}
                ],
            },
            {
                "k": 2,
                "loadavg_before": [0.9, 0.2, 0.1],
                "loadavg_after": [1.9, 0.5, 0.2],
                "copies": [
                    {"copy": i, "failed": None, "wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": GIB, "stages": []}
                    for i, (wall, cpu) in enumerate(copies_k2)
                ],
            },
        ],
    }


def test_parallel_runs_are_compared_with_alone_and_with_the_fair_share() -> None:
    # 2 runs x 2 threads on 2 cores: fair share = 10 s x max(1, 2 x 2 / 2) = 20 s.
    summary = summarize_parallel(parallel_record([(19.0, 15.5), (21.0, 15.5)]))
    assert summary["alone_s"] == 10.0
    k2 = summary["rounds"][1]
    assert k2["fair_share_s"] == pytest.approx(20.0)
    assert [c["slowdown_vs_alone"] for c in k2["copies"]] == pytest.approx([1.9, 2.1])
    assert [c["fair_share_ratio"] for c in k2["copies"]] == pytest.approx([0.95, 1.05])
    target = summary["target"]
    assert target["passed"] and target["applies"] and target["measured"] == pytest.approx(1.05)
    assert "k=2, run 1" in target["detail"] and target["missed"] is None
    markdown = render_markdown(results_with([], parallel=parallel_record([(19.0, 15.5), (21.0, 15.5)])))
    parallel = section(markdown, "## Parallel experiments")
    assert table_row(parallel, "2")[1:] == ["0", "19.00", "15.50", "1.90", "20.00", "0.95", "PASS"]
    assert "ALS `num_threads` 2, ranker `num_threads` 2" in parallel and '"OMP_WAIT_POLICY": "PASSIVE"' in parallel
    assert "Fair share of k runs = alone × max(1, k × 2 / 2)" in parallel
    assert markdown.splitlines()[0] == "# Pipeline benchmark: profile full"  # the experiment's profile, no runs


def test_a_missed_parallel_target_says_whether_threads_burn_cpu() -> None:
    # 35 s against a fair share of 20 s: 1.75x > 1.5x.
    spinning = summarize_parallel(parallel_record([(20.0, 15.0), (35.0, 30.0)]))["target"]
    assert not spinning["passed"] and spinning["measured"] == pytest.approx(1.75)
    assert "its CPU time was 2.00x the alone run's" in spinning["missed"]["reason"]
    assert spinning["missed"]["would_fix"] == PARALLEL_SPIN_FIX
    waiting = summarize_parallel(parallel_record([(20.0, 15.0), (35.0, 15.5)]))["target"]
    assert waiting["missed"]["would_fix"] == PARALLEL_SHARED_FIX


def test_one_thread_per_run_makes_the_fair_share_the_alone_time() -> None:
    # 2 runs x 1 thread on 2 cores: each should run as fast as alone; the limit is inclusive.
    summary = summarize_parallel(parallel_record([(15.0, 15.0), (16.0, 15.0)], threads=1))
    k2 = summary["rounds"][1]
    assert k2["fair_share_s"] == pytest.approx(10.0)
    assert [c["fair_share_ratio"] for c in k2["copies"]] == pytest.approx([1.5, 1.6])
    assert not summary["target"]["passed"] and "run 1" in summary["target"]["detail"]


def test_threads_per_run_come_from_the_settings_that_apply_to_the_stage_set() -> None:
    settings = {
        "als_num_threads": 4,
        "ranker_num_threads": 2,
        "compute_engine": "local",
        "env": {"POLARS_MAX_THREADS": "1"},
    }
    assert threads_per_run(settings, ["prepare"], cores=8) == (1, {"polars": 1})
    assert threads_per_run(settings, ["train_ranker"], cores=8) == (2, {"polars": 1, "ranker": 2})
    assert threads_per_run(settings, ["train_als@test", "train_ranker"], cores=8)[0] == 4
    assert threads_per_run(settings, ["train_als@test"], cores=2)[0] == 2  # capped at the cores
    unset = {**settings, "env": {}}
    assert threads_per_run(unset, ["prepare"], cores=8) == (8, {"polars": 8})  # polars: one thread per core
    dask = {**settings, "compute_engine": "dask", "compute_workers": 3, "compute_threads_per_worker": 2}
    assert threads_per_run(dask, ["prepare"], cores=16) == (6, {"polars": 1, "dask": 6})
    assert parse_levels("2,1") == [1, 2]
    with pytest.raises(ValueError):
        parse_levels("0,2")


def test_a_failed_parallel_copy_is_reported_not_scored() -> None:
    record = parallel_record([(19.0, 15.0), (5.0, 2.0)])
    record["rounds"][1]["copies"][1]["failed"] = {"step": "stage train_ranker", "error": "exit code 1"}
    results = results_with([], parallel=record)
    copies = results["parallel"]["summary"]["rounds"][1]["copies"]
    assert copies[1]["fair_share_ratio"] is None and copies[0]["fair_share_ratio"] == pytest.approx(0.95)
    assert failures(results) == ["parallel k=2 run 1: stage train_ranker"]
    k2_rows = [row for row in table_rows(section(render_markdown(results), "## Parallel experiments")) if row[0] == "2"]
    assert [row[1:3] for row in k2_rows] == [["0", "19.00"], ["1", "failed at stage train_ranker: exit code 1"]]


# ---------------------------------------------------------------------------------------------
# CPU paths
# ---------------------------------------------------------------------------------------------


def test_cpu_path_settings_come_from_numpy_dispatch_targets() -> None:
    x86 = {s["name"]: s["env"] for s in cpu_path_settings(X86_DISPATCH)}
    assert x86["default"] == {}
    assert x86["widest_off"] == {"NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"}
    assert x86["baseline_only"] == {"NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"}
    assert x86["polars_threads_1"] == {"POLARS_MAX_THREADS": "1"}
    descriptions = {s["name"]: s["description"] for s in cpu_path_settings(X86_DISPATCH)}
    assert "AVX-512 off" in descriptions["widest_off"] and "AVX2/FMA3 off" in descriptions["baseline_only"]
    arm = {s["name"]: s["env"] for s in cpu_path_settings(["ASIMDHP", "ASIMDDP", "ASIMDFHM", "SVE"])}
    assert arm["widest_off"] == {"NPY_DISABLE_CPU_FEATURES": "SVE"}
    assert arm["baseline_only"] == {"NPY_DISABLE_CPU_FEATURES": "ASIMDHP,ASIMDDP,ASIMDFHM,SVE"}
    old_numpy = {s["name"]: s["env"] for s in cpu_path_settings(["SSE41", "AVX2", "AVX512F", "AVX512_SKX"])}
    assert old_numpy["widest_off"] == {"NPY_DISABLE_CPU_FEATURES": "AVX512F,AVX512_SKX"}
    assert {s["name"]: s["env"] for s in cpu_path_settings([])}["baseline_only"] == {}
    for dispatch in (X86_DISPATCH, ["SVE"], []):
        assert all("OPENBLAS_CORETYPE" not in s["env"] for s in cpu_path_settings(dispatch))


def cpu_paths_record(hashes_by_setting: dict[str, dict[str, str]]) -> dict[str, Any]:
    """CPU-path measurements on a CPU with AVX2 but no AVX-512 (numpy 2.4 target names)."""
    enabled = {"default": ["X86_V3"], "widest_off": ["X86_V3"], "baseline_only": [], "polars_threads_1": ["X86_V3"]}
    settings = []
    for setting in cpu_path_settings(X86_DISPATCH):
        settings.append(
            {
                **setting,
                "probe": {"numpy": "2.4.6", "dispatch": X86_DISPATCH, "enabled": enabled[setting["name"]]},
                "failed": None,
                "wall_s": {"ingest": 1.0, "prepare": 2.0, "split": 3.0},
                "hashes": hashes_by_setting[setting["name"]],
            }
        )
    return {
        "profile": "tiny",
        "scale": 1.0,
        "overrides": {},
        "stages": ["ingest", "prepare", "split"],
        "failed": None,
        "numpy": {
            "numpy": "2.4.6",
            "baseline": ["X86_V2"],
            "dispatch": X86_DISPATCH,
            "cpu_has": {"X86_V3": True, "X86_V4": False, "AVX512_ICL": False, "AVX512_SPR": False},
        },
        "env_found": {"OPENBLAS_CORETYPE": None},
        "settings": settings,
    }


SAME = {
    "data/raw/big_matrix.csv": "a" * 64,
    "data/prepared/big_matrix.parquet": "b" * 64,
    "data/split/train.parquet": "c" * 64,
}


def test_identical_outputs_and_which_settings_changed_numpys_path_here() -> None:
    record = cpu_paths_record(
        {name: dict(SAME) for name in ("default", "widest_off", "baseline_only", "polars_threads_1")}
    )
    comparison = compare_cpu_paths(record)
    assert comparison["identical"] is True and comparison["files"] == 3 and comparison["differences"] == []
    paths = {s["name"]: s["same_numpy_path"] for s in comparison["settings"]}
    assert paths == {"default": True, "widest_off": True, "baseline_only": False, "polars_threads_1": True}
    markdown = section(render_markdown(results_with([], cpu_paths=record)), "## CPU paths")
    assert "All 3 output files are byte-identical" in markdown
    assert (
        "took a different path on this machine: `baseline_only`; the same path as default here: `widest_off`"
        in markdown
    )
    assert "same as default here" in table_row(markdown, "`widest_off`")[3]
    assert table_row(markdown, "`baseline_only`")[3] == "none (baseline) — differs from default"
    assert table_row(markdown, "`polars_threads_1`")[5] == "identical"


def test_a_differing_file_is_named_with_each_settings_hash() -> None:
    differing = {**SAME, "data/prepared/big_matrix.parquet": "d" * 64}
    missing = {k: v for k, v in SAME.items() if k != "data/split/train.parquet"}
    record = cpu_paths_record(
        {"default": dict(SAME), "widest_off": dict(SAME), "baseline_only": differing, "polars_threads_1": missing}
    )
    comparison = compare_cpu_paths(record)
    assert comparison["identical"] is False
    assert [d["path"] for d in comparison["differences"]] == [
        "data/prepared/big_matrix.parquet",
        "data/split/train.parquet",
    ]
    assert comparison["differences"][0]["hashes"]["baseline_only"] == "d" * 64
    assert comparison["differences"][1]["hashes"]["polars_threads_1"] is None
    per_setting = {s["name"]: s for s in comparison["settings"]}
    assert per_setting["baseline_only"]["differing_files"] == ["data/prepared/big_matrix.parquet"]
    assert per_setting["widest_off"]["identical"] is True
    markdown = section(render_markdown(results_with([], cpu_paths=record)), "## CPU paths")
    assert "2 of 3 output files differ" in markdown
    assert table_row(markdown, "`data/prepared/big_matrix.parquet`")[1:] == [
        "bbbbbbbbbbbb",
        "bbbbbbbbbbbb",
        "dddddddddddd",
        "bbbbbbbbbbbb",
    ]
    assert table_row(markdown, "`data/split/train.parquet`")[4] == "missing"
    assert table_row(markdown, "`baseline_only`")[5] == "**1 of 3 files differ**"


def test_a_setting_numpy_rejects_is_recorded_and_left_out_of_the_comparison() -> None:
    record = cpu_paths_record(
        {name: dict(SAME) for name in ("default", "widest_off", "baseline_only", "polars_threads_1")}
    )
    rejected = record["settings"][2]
    rejected.update(
        probe={"error": "RuntimeError: You cannot disable CPU feature 'X86_V2'"},
        hashes={},
        wall_s={},
        failed={"step": "numpy rejects the setting", "error": "RuntimeError: You cannot disable CPU feature 'X86_V2'"},
    )
    results = results_with([], cpu_paths=record)
    comparison = results["cpu_paths"]["comparison"]
    assert comparison["identical"] is True  # the three that ran agree
    assert {s["name"]: s["identical"] for s in comparison["settings"]}["baseline_only"] is None
    assert failures(results) == ["CPU path baseline_only: numpy rejects the setting"]
    assert "failed at numpy rejects the setting: RuntimeError" in render_markdown(results)


# ---------------------------------------------------------------------------------------------
# --report-only with the experiments
# ---------------------------------------------------------------------------------------------


def test_report_only_rederives_engines_parallel_and_cpu_paths(tmp_path: Path) -> None:
    record = cpu_paths_record(
        {name: dict(SAME) for name in ("default", "widest_off", "baseline_only", "polars_threads_1")}
    )
    stored = {
        "schema_version": 2,
        "generated_at": "2026-01-01T00:00:00+00:00",
        "command": "x",
        "machine": {"cpu_count": 2, "ram_bytes": 24 * GIB, "cpu_model": "Test CPU", "python": "3.11.7", "packages": {}},
        "source": {"commit": None, "dirty": None},
        "scaling": None,
        "runs": [engine_run("local", 10.0, GIB, GIB, 1), engine_run("dask", 12.0, GIB, 2 * GIB, 3)],
        "parallel": parallel_record([(19.0, 15.5), (21.0, 15.5)]),
        "cpu_paths": copy.deepcopy(record),
    }
    (tmp_path / "results.json").write_text(json.dumps(stored), encoding="utf-8")
    assert main(["--report-only", "--out", str(tmp_path)]) == 0
    rewritten = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert rewritten["parallel"]["summary"]["target"]["measured"] == pytest.approx(1.05)
    assert rewritten["cpu_paths"]["comparison"]["identical"] is True
    assert [g["scale"] for g in rewritten["engines"]["groups"]] == [1.0]
    assert all(run["targets"] for run in rewritten["runs"])
    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## Engines side by side", "## Parallel experiments", "## CPU paths"):
        assert heading in markdown
    assert len(STAGES) == len(rewritten["engines"]["groups"][0]["rows"])


def test_only_rounds_with_several_runs_are_scored() -> None:
    # The alone run is the reference (1x by construction); k=2 runs well inside their share score below 1.
    target = summarize_parallel(parallel_record([(9.0, 15.0), (9.5, 15.0)]))["target"]
    assert target["applies"] and target["measured"] == pytest.approx(9.5 / 20.0) and "k=2, run 1" in target["detail"]
    alone_only = parallel_record([])
    alone_only["rounds"] = alone_only["rounds"][:1]
    assert summarize_parallel(alone_only)["target"]["applies"] is False
