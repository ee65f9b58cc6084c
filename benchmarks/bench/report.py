"""RESULTS.md from results.json: the machine, each run (stages, bare fits, disk, targets), the scaling tables.

The experiments beside the runs (engines side by side, parallel experiments, CPU paths) are
rendered by :mod:`.report_experiments`. Everything here is a pure function of the results dict, so
``--report-only`` re-renders stored measurements.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .breakdown import bare_total_s
from .config import GIB, MIB, RESULTS_JSON, RESULTS_MD
from .disk import LARGE_FILE_BYTES
from .markdown import fit_cell, mebibytes, render_failure, seconds, table
from .report_experiments import render_cpu_paths, render_engines, render_parallel
from .targets import ABSOLUTE_TARGETS_PROFILE, ABSOLUTE_TARGETS_SCALE


def format_measured(target: Mapping[str, Any]) -> str:
    """The measured value with its unit, e.g. ``31.52 s`` or ``1.84x``."""
    value = target["measured"]
    number = "inf" if math.isinf(value) else f"{value:.2f}"
    return f"{number}x" if target["unit"] == "x" else f"{number} {target['unit']}"


def format_status(target: Mapping[str, Any]) -> str:
    """``PASS`` / ``**FAIL**``, marked informational when the target is not defined for the run."""
    status = "PASS" if target["passed"] else "**FAIL**"
    if not target["applies"]:
        status += f" (informational: defined for profile {ABSOLUTE_TARGETS_PROFILE}, scale {ABSOLUTE_TARGETS_SCALE:g})"
    return status


def busy_warning(run: Mapping[str, Any], cores: int | None) -> str | None:
    """A warning when the 1-minute load average reached the core count before or after the run."""
    loads = [load[0] for load in (run.get("loadavg_before"), run.get("loadavg_after")) if load]
    if not cores or not loads or max(loads) < cores:
        return None
    return (
        f"> **Busy machine**: 1-minute load average up to {max(loads):.1f} on {cores} cores during this run; "
        "timings (LightGBM's OpenMP threads especially) are inflated by other processes."
    )


def run_title(run: Mapping[str, Any]) -> str:
    """``profile `full`, scale 1`` plus the engine when the run compared engines."""
    title = f"profile `{run['profile']}`, scale {float(run['scale']):g}"
    return title + (f", engine `{run['engine']}`" if run.get("engine") else "")


def _sampled_cells(row: Mapping[str, Any]) -> list[str]:
    sampled = row.get("sampled") or {}
    return [mebibytes(sampled.get("stage_process_peak_rss_bytes")), mebibytes(sampled.get("stage_tree_peak_rss_bytes"))]


def render_stages(run: Mapping[str, Any]) -> list[str]:
    """The per-stage table (plus sum, whole repro and no-op rows) and what its columns mean.

    Runs whose stages were sampled get two more columns: the stage process alone and the sum over
    its process tree (see :mod:`.tree_memory`).
    """
    sampled = any(r.get("sampled") for r in run["stages"])
    extra_blank = ["", ""] if sampled else []
    rows = []
    for r in run["stages"]:
        cmd = r.get("command") or {}
        rows.append([
            f"`{r['stage']}`" + ("" if r.get("returncode", 0) == 0 else f" (**exit {r['returncode']}**)"),
            seconds(r["wall_s"]), seconds(r["cpu_s"]), mebibytes(r["peak_rss_bytes"]),
            seconds(cmd.get("wall_s")), mebibytes(cmd.get("peak_rss_bytes")),
            seconds(r["wall_s"] - cmd["wall_s"]) if cmd else "–",
            *(_sampled_cells(r) if sampled else []),
        ])  # fmt: skip
    commands_sum = sum((r.get("command") or {}).get("wall_s", 0.0) for r in run["stages"])
    stage_sum = sum(r["wall_s"] for r in run["stages"])
    rows.append(["**sum of stages**", seconds(stage_sum), seconds(sum(r["cpu_s"] for r in run["stages"])), "",
                 seconds(commands_sum), "", seconds(stage_sum - commands_sum), *extra_blank])  # fmt: skip
    whole = run.get("whole_repro")
    if whole:
        rows.append([
            "**whole `dvc repro --force` (from scratch)**", seconds(whole["wall_s"]), seconds(whole["cpu_s"]),
            mebibytes(whole["peak_rss_bytes"]), seconds(whole.get("commands_wall_s")),
            mebibytes(max((c["peak_rss_bytes"] for c in whole.get("commands") or []), default=None)),
            seconds(whole["wall_s"] - whole["commands_wall_s"]) if whole.get("commands_wall_s") is not None else "–",
            *extra_blank,
        ])  # fmt: skip
    noop = run.get("noop_repro")
    if noop:
        rows.append(["**no-op `dvc repro`**", seconds(noop["wall_s"]), seconds(noop["cpu_s"]), mebibytes(noop["peak_rss_bytes"]),
                     "", "", seconds(noop["wall_s"]), *extra_blank])  # fmt: skip
    header = ["stage", "dvc repro wall s", "CPU s", "peak RSS MiB (DVC + command)", "command wall s",
              "command peak RSS MiB", "DVC overhead s"]  # fmt: skip
    if sampled:
        header += ["stage process peak MiB (sampled)", "stage process tree Σ peak MiB (sampled)"]
    lines = ["### Stages (each `dvc repro --force --single-item STAGE`, in DVC's order)", ""]
    lines += table(header, rows)
    lines += [
        "*dvc repro* columns measure the whole `dvc repro` subprocess (`os.wait4`): its peak RSS is the "
        "largest single process of the tree, i.e. max(DVC's own peak, the stage command's peak), not their sum; "
        "the no-op row shows DVC's own footprint. *command* columns measure the stage's `cmd` alone (DVC runs it "
        "through a measuring `$SHELL`). DVC overhead = dvc repro wall − command wall (start-up, hashing, caching).",
        "",
    ]
    if sampled:
        lines += [
            "*sampled* columns: the RSS of the stage process alone and the sum over it and its descendants "
            "(worker processes), read from `/proc` every 0.2 s; a sum counts shared pages once per process "
            "(an upper bound) and peaks shorter than the interval can be missed.",
            "",
        ]
    return lines


def render_bare_fits(run: Mapping[str, Any]) -> list[str]:
    """The bare ALS and LightGBM fits of one run."""
    bare_rows = []
    for row in run["bare"]["als"]:
        bare_rows.append([
            f"implicit ALS `{row['fit']}`", fit_cell(row), mebibytes(row["peak_rss_bytes"]),
            f"{row['n_users']}×{row['n_items']}, nnz {row['nnz']}, {row['factors']} factors, {row['iterations']} it, "
            f"{row['num_threads']} threads",
            "yes" if row["factors_max_abs_diff"] == 0 else f"max |Δfactor| {row['factors_max_abs_diff']:.2g}",
        ])  # fmt: skip
    lgbm = run["bare"].get("lightgbm")
    if lgbm:
        bare_rows.append([
            "LightGBM `lightgbm.train`", fit_cell(lgbm), mebibytes(lgbm["peak_rss_bytes"]),
            f"{lgbm['train_rows']} train + {lgbm['valid_rows']} valid rows, {lgbm['n_features']} features, "
            f"{lgbm['rounds_trained']} rounds (early stopping {lgbm['early_stopping_rounds']}, best {lgbm['best_iteration']}), "
            f"{lgbm['num_threads']} threads",
            "yes" if lgbm["matches_pipeline"] else f"no (pipeline best iteration {lgbm['pipeline_best_iteration']})",
        ])  # fmt: skip
    lines = ["### Bare fits (each in its own process)", ""]
    lines += table(["fit", "fit s", "process peak RSS MiB (median run)", "size", "same as pipeline"], bare_rows)
    return lines + [f"Bare fits total: {seconds(bare_total_s(run))} s.", ""]


def render_disk(disk: Mapping[str, Any]) -> list[str]:
    """Disk footprint of one run and the outputs stored twice."""
    lines = ["### Disk", ""]
    lines += table(
        ["`data/` MiB", "`models/` MiB", "`.dvc/cache` MiB", "all three (each inode once) MiB", "stored twice MiB"],
        [[mebibytes(disk["bytes"]["data"]), mebibytes(disk["bytes"]["models"]), mebibytes(disk["bytes"]["dvc_cache"]),
          mebibytes(disk["combined_unique_bytes"]), mebibytes(disk["duplicated_bytes"])]],
    )  # fmt: skip
    links = ", ".join(f"{k}: {v}" for k, v in sorted(disk["output_links"].items()))
    lines += [
        f"DVC `cache.type`: {disk['cache_type_effective_setting']}; link types the cache filesystem "
        f"supports (`dvc doctor`): {', '.join(disk['link_types_supported']) or 'unknown'} "
        f"({disk['cache_filesystem'] or 'filesystem unknown'}). Cached output files by link: {links or 'none'}.",
        "",
    ]
    if disk["duplicated_bytes"] >= LARGE_FILE_BYTES and "hardlink" in disk["link_types_supported"]:
        lines += [
            "Outputs are stored twice (workspace + cache). This filesystem supports hardlinks: "
            "`--cache-type hardlink,symlink` measures the pipeline with DVC linking instead of copying "
            "(with `reflink,hardlink,symlink` DVC 3.67 still copies directory outputs at `dvc repro` on a "
            "filesystem without reflinks, until `dvc checkout --relink`).",
            "",
        ]
    if disk["large_duplicates"]:
        lines += table(
            ["output file stored twice (workspace + cache)", "MiB"],
            [[f"`{r['path']}`", f"{r['bytes'] / MIB:.1f}"] for r in disk["large_duplicates"]],
        )
    return lines


def render_breakdown(breakdown: Mapping[str, Any]) -> list[str]:
    """Where the time beyond the engines goes."""
    lines = ["### Where the time beyond the engines goes (per-stage runs; informational)", ""]
    lines += table(
        ["stage", "dvc repro wall s", "engine (bare fit) s", "DVC s", "rest of the command s"],
        [[f"`{r['stage']}`", seconds(r["wall_s"]), seconds(r["engine_s"]) if r["engine_s"] else "–", seconds(r["dvc_s"]),
          seconds(r["other_s"])] for r in breakdown["rows"]],
    )  # fmt: skip
    return lines + [
        f"Whole pipeline {seconds(breakdown['whole_s'])} s = engines {seconds(breakdown['engine_s'])} s + "
        f"{seconds(breakdown['beyond_engines_s'])} s beyond them, of which data acquisition (`ingest`) "
        f"{seconds(breakdown['ingest_s'])} s. Without data acquisition the ratio would be "
        f"{seconds(breakdown['without_ingest_ratio'])}x (the target below counts it).",
        "",
    ]


def render_targets(targets: list[Mapping[str, Any]]) -> list[str]:
    """The targets table and, for each missed one, why and what would fix it."""
    lines = ["### Targets", ""]
    lines += table(
        ["target", "measured", "limit", "result", "detail"],
        [[t["name"], format_measured(t), format_measured({**t, "measured": t["limit"]}), format_status(t), t["detail"]]
         for t in targets],
    )  # fmt: skip
    missed = [t for t in targets if t.get("missed")]
    if missed:
        lines += ["Missed targets: why, and what would fix them.", ""]
        for t in missed:
            fix = f" *What would fix it:* {t['missed']['would_fix']}" if t["missed"]["would_fix"] else ""
            lines += [f"- **{t['name']}** ({format_measured(t)}): {t['missed']['reason']}{fix}"]
        lines += [""]
    return lines


def render_run(run: Mapping[str, Any], cores: int | None = None) -> list[str]:
    """Markdown of one run: stages, bare fits, disk, targets (a failed run: what it measured and the failure)."""
    failed = run.get("failed")
    lines = [f"## Run: {run_title(run)}" + (" — failed" if failed else ""), ""]
    extra = {s: v for s, v in run.get("overrides", {}).items() if s != "data"}
    if extra:
        lines += [f"Params overridden besides data.profile/data.scale: `{json.dumps(extra)}`.", ""]
    if run.get("cache_type_override"):
        lines += [f"DVC `cache.type` set to `{run['cache_type_override']}` in the copy (not the repository's setting).", ""]
    if run.get("loadavg_before") is not None:
        lines += [f"Load average (1, 5, 15 min) before / after the run: {run['loadavg_before']} / {run.get('loadavg_after')}.", ""]
    warning = busy_warning(run, cores)
    if warning:
        lines += [warning, ""]
    if failed:
        lines += render_failure(failed)
    if run.get("stages"):
        lines += render_stages(run)
    if run.get("bare"):
        lines += render_bare_fits(run)
    if run.get("disk"):
        lines += render_disk(run["disk"])
    if run.get("breakdown"):
        lines += render_breakdown(run["breakdown"])
    if run.get("targets") is not None:
        lines += render_targets(run["targets"])
    return lines


def render_scaling(scaling: Mapping[str, Any]) -> list[str]:
    """Markdown of the scaling tables (time, peak RSS, then disk when measured)."""
    scales = [str(float(s)) for s in scaling["scales"]]
    low, high = scaling["ratio_from_scale"], scaling["ratio_to_scale"]
    growth = f"×{high:g}/×{low:g}"
    at = [f"@{float(s):g}" for s in scales]
    time_rows, rss_rows = [], []
    for row in scaling["rows"]:
        name = f"`{row['name']}`"
        time_rows.append([
            name, *(seconds(row["wall_s"][s]) for s in scales), seconds(row["wall_s_ratio"]), seconds(row["wall_s_exponent"]),
            *(seconds(row["command_wall_s"][s]) for s in scales), seconds(row["command_wall_s_ratio"]),
            seconds(row["command_wall_s_exponent"]),
        ])  # fmt: skip
        rss_rows.append([
            name, *(mebibytes(row["peak_rss_bytes"][s]) for s in scales), seconds(row["peak_rss_bytes_ratio"]),
            *(mebibytes(row["command_peak_rss_bytes"][s]) for s in scales), seconds(row["command_peak_rss_bytes_ratio"]),
        ])  # fmt: skip
    engine = scaling.get("engine")
    lines = [
        "## Scaling" + (f", engine `{engine}`" if engine else ""),
        "",
        f"One run per `data.scale` value (profile as above). Growth = value at scale {high:g} / value at scale "
        f"{low:g}: linear growth gives {high / low:g} (exponent 1), a constant cost 1 (exponent 0). "
        "*dvc repro* = the per-stage `dvc repro --single-item` subprocess; *command* = the stage's cmd alone; "
        "for bare fits the time is the fit alone.",
        "",
    ]
    for failure in scaling.get("failed_scales") or []:
        lines += [f"> Scale {failure['scale']:g} failed at {failure.get('step') or 'an unknown step'}: "
                  "it is left out of the tables (its run above has the details).", ""]  # fmt: skip
    lines += [
        "### Time (s)",
        "",
        *table(["stage", *(f"dvc repro {a}" for a in at), f"growth {growth}", "exponent",
                 *(f"command {a}" for a in at), f"growth {growth}", "exponent"], time_rows),  # fmt: skip
        "### Peak RSS (MiB)",
        "",
        *table(["stage", *(f"dvc repro {a}" for a in at), f"growth {growth}",
                 *(f"command {a}" for a in at), f"growth {growth}"], rss_rows),  # fmt: skip
    ]
    disk_names = {"data": "`data/`", "models": "`models/`", "dvc_cache": "`.dvc/cache`",
                  "combined_unique": "all three (each inode once)"}  # fmt: skip
    if scaling.get("disk"):
        lines += [
            "### Disk (MiB, after the run)",
            "",
            *table(["directory", *at, f"growth {growth}"],
                   [[disk_names.get(row["name"], row["name"]), *(mebibytes(row["bytes"][s]) for s in scales),
                     seconds(row["ratio"])] for row in scaling["disk"]]),  # fmt: skip
        ]
    return lines


def result_profiles(results: Mapping[str, Any]) -> list[str]:
    """Every profile the results measured: the runs' and the experiments'."""
    profiles = {run["profile"] for run in results["runs"]}
    profiles |= {(results.get(key) or {}).get("profile") for key in ("parallel", "cpu_paths")} - {None}
    return sorted(profiles)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The whole RESULTS.md, rendered from a results dict (the content of results.json)."""
    runs = results["runs"]
    profiles = result_profiles(results)
    machine = results["machine"]
    lines = [
        f"# Pipeline benchmark: profile {', '.join(profiles)}",
        "",
        f"Generated {results['generated_at']} by `{results['command']}` from `results.json` "
        f"(source commit {str((results.get('source') or {}).get('commit'))[:12]}"
        f"{', with uncommitted changes' if (results.get('source') or {}).get('dirty') else ''}).",
        "",
    ]
    if ABSOLUTE_TARGETS_PROFILE not in profiles:
        lines += [
            f"> These results are from the **{', '.join(profiles)}** profile only, not the full KuaiRec shape: "
            "the absolute-time targets are informational here. Run "
            "`python benchmarks/pipeline_benchmark.py --profile full` for the real numbers.",
            "",
        ]
    ram = machine.get("ram_bytes")
    lines += ["## Machine", ""]
    lines += table(
        ["CPU", "cores (os.cpu_count)", "RAM GiB", "Python", *machine["packages"]],
        [[machine.get("cpu_model") or "?", machine.get("cpu_count"), f"{ram / GIB:.1f}" if ram else "?",
          machine.get("python"), *(v or "–" for v in machine["packages"].values())]],
    )  # fmt: skip
    for run in runs:
        lines += render_run(run, machine.get("cpu_count"))
    if results.get("scaling"):
        lines += render_scaling(results["scaling"])
    for scaling in (results.get("scaling_by_engine") or {}).values():
        if scaling:
            lines += render_scaling(scaling)
    if results.get("engines"):
        lines += render_engines(results["engines"])
    if results.get("parallel"):
        lines += render_parallel(results["parallel"])
    if results.get("cpu_paths"):
        lines += render_cpu_paths(results["cpu_paths"])
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and RESULTS.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / RESULTS_JSON, out_dir / RESULTS_MD
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(results), encoding="utf-8")
    return json_path, md_path
