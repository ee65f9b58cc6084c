"""RESULTS.md sections of the experiments beside the runs: engines side by side, parallel runs, CPU paths."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .markdown import failure_summary, mebibytes, render_failure, seconds, table
from .targets import PARALLEL_MAX_FAIR_SHARE_RATIO


def _status(passed: bool | None) -> str:
    return "–" if passed is None else "PASS" if passed else "**FAIL**"


def by_env_var(cpu_paths: Mapping[str, Any], name: str) -> bool:
    """Whether the CPU-path setting ``name`` changes numpy's dispatch (``NPY_DISABLE_CPU_FEATURES``)."""
    setting: Mapping[str, Any] = next((s for s in cpu_paths.get("settings") or [] if s["name"] == name), {})
    return bool((setting.get("env") or {}).get("NPY_DISABLE_CPU_FEATURES"))


def render_engines(engines: Mapping[str, Any]) -> list[str]:
    """Per (profile, scale): each stage's time and memory under every engine, side by side."""
    names = engines["engines"]
    lines = [
        "## Engines side by side",
        "",
        "Each engine is a complete run with `compute.engine` set in the copy's params.yaml (its own section "
        "above). Memory per stage: *wait4* = the largest single process (DVC included); *stage* = the stage "
        "process alone; *tree Σ* = the stage process plus its worker processes, summed (sampled every 0.2 s; "
        "shared pages count once per process). *procs* = most processes seen in the stage's tree at once.",
        "",
    ]
    per_engine = ["wall s", "wait4 MiB", "stage MiB", "tree Σ MiB", "procs"]
    for group in engines["groups"]:
        lines += [f"### Profile `{group['profile']}`, scale {group['scale']:g}", ""]
        for engine in names:
            run = group["runs"][engine]
            if run.get("failed"):
                lines += [
                    f"> Engine `{engine}` **failed** at {failure_summary(run['failed'])} (details in its run above).",
                    "",
                ]
        others = names[1:]
        header = [
            "stage",
            *(f"{e} {col}" for e in names for col in per_engine),
            *(f"{e}/{names[0]} wall" for e in others),
            *(f"{e}/{names[0]} tree Σ" for e in others),
        ]
        rows = []
        for row in group["rows"]:
            cells = []
            for engine in names:
                cell = row["cells"][engine]
                if cell is None:
                    cells += ["not run", "", "", "", ""]
                    continue
                wall = seconds(cell["wall_s"]) + ("" if cell["returncode"] == 0 else f" (exit {cell['returncode']})")
                cells += [
                    wall,
                    mebibytes(cell["peak_rss_bytes"]),
                    mebibytes(cell["stage_process_peak_rss_bytes"]),
                    mebibytes(cell["stage_tree_peak_rss_bytes"]),
                    cell["stage_tree_max_processes"] or "–",
                ]
            rows.append(
                [
                    f"`{row['stage']}`",
                    *cells,
                    *(seconds(row["wall_ratio"][e]) for e in others),
                    *(seconds(row["tree_rss_ratio"][e]) for e in others),
                ]
            )
        lines += table(header, rows)
        wholes = [f"`{e}` {seconds(group['runs'][e]['whole_s'])} s" for e in names if group["runs"][e].get("whole_s")]
        if wholes:
            lines += [f"Whole `dvc repro --force`: {', '.join(wholes)}.", ""]
    return lines


def render_parallel(parallel: Mapping[str, Any]) -> list[str]:
    """The parallel experiments: thread settings, each run against alone and against its fair share."""
    setup = ", ".join(f"`{s}`" for s in parallel.get("setup_stages") or [])
    lines = [
        "## Parallel experiments",
        "",
        f"Profile `{parallel['profile']}`, scale {parallel['scale']:g}: k independent copies of the project "
        "run the same stages at the same moment (each stage `dvc repro --force --single-item`, outputs and DVC "
        "cache deleted before each round"
        + (f"; upstream stages prepared beforehand, untimed: {setup}" if setup else "")
        + ").",
        "",
    ]
    if parallel.get("failed"):
        return lines + render_failure(parallel["failed"])
    settings = parallel.get("thread_settings") or {}
    env = {k: v for k, v in (settings.get("env") or {}).items()}
    sources = ", ".join(f"{k} {v}" for k, v in (parallel.get("threads_per_run_sources") or {}).items())
    lines += [
        f"Stages: {', '.join(f'`{s}`' for s in parallel['stages'])}. Cores: {parallel['cores']}. "
        f"Threads per run: {parallel['threads_per_run']}"
        + (
            " (set with --parallel-threads-per-run)"
            if parallel.get("threads_per_run_overridden")
            else f" (the most of: {sources}; capped at the cores)"
        )
        + ".",
        "",
        f"Thread settings: ALS `num_threads` {settings.get('als_num_threads')}, ranker `num_threads` "
        f"{settings.get('ranker_num_threads')}, `compute.engine` {settings.get('compute_engine') or 'unset (local)'}; "
        f"environment: `{json.dumps(env)}` (null = unset: polars and OpenMP then use every core).",
        "",
    ]
    summary = parallel.get("summary") or {}
    lines += [
        f"Fair share of k runs = alone × max(1, k × {parallel['threads_per_run']} / {parallel['cores']}); "
        f"target: every run ≤ {PARALLEL_MAX_FAIR_SHARE_RATIO:g} × its fair share. Alone: "
        f"{seconds(summary.get('alone_s'))} s (compare with earlier results: a thread setting must not slow "
        "the run alone).",
        "",
    ]
    raw_rounds = {rnd["k"]: rnd for rnd in parallel["rounds"]}
    rows = []
    for rnd in summary.get("rounds") or []:
        for copy in rnd["copies"]:
            if copy.get("failed"):
                rows.append(
                    [rnd["k"], copy["copy"], f"failed at {failure_summary(copy['failed'])}", "", "", "", "", ""]
                )
                continue
            ratio = copy["fair_share_ratio"]
            rows.append(
                [
                    rnd["k"],
                    copy["copy"],
                    seconds(copy["wall_s"]),
                    seconds(copy["cpu_s"]),
                    seconds(copy["slowdown_vs_alone"]),
                    seconds(rnd["fair_share_s"]),
                    seconds(ratio),
                    _status(ratio <= PARALLEL_MAX_FAIR_SHARE_RATIO if ratio is not None else None),
                ]
            )
    lines += table(["k", "run", "wall s", "CPU s", "× alone", "fair share s", "× fair share", "result"], rows)
    loads = [f"k={k}: {rnd['loadavg_before']} / {rnd['loadavg_after']}" for k, rnd in raw_rounds.items()]
    lines += [f"Load average (1, 5, 15 min) before / after each round: {'; '.join(loads)}.", ""]
    highest = max(
        (load[0] for rnd in raw_rounds.values() for load in (rnd["loadavg_before"], rnd["loadavg_after"])), default=0.0
    )
    if highest >= parallel["cores"]:
        lines += [
            f"> **Busy machine**: 1-minute load average up to {highest:.1f} on {parallel['cores']} cores: "
            "other processes took part of the cores, so the times above include their load.",
            "",
        ]
    target = summary.get("target")
    if target:
        lines += [
            f"Target **{target['name']}**: {seconds(target['measured'])}x against {target['limit']:g}x: "
            f"{_status(target['passed']) if target['applies'] else 'not applicable (no round ran more than one run)'}"
            f" ({target['detail']}).",
            "",
        ]
        if target.get("missed"):
            lines += [f"- Why: {target['missed']['reason']} *What would fix it:* {target['missed']['would_fix']}", ""]
    return lines


def render_cpu_paths(cpu_paths: Mapping[str, Any]) -> list[str]:
    """The CPU-path settings, which of them changed numpy's path here, and the output hashes compared."""
    numpy = cpu_paths.get("numpy") or {}
    lines = [
        "## CPU paths: same bytes on every code path?",
        "",
        f"Profile `{cpu_paths['profile']}`, scale {cpu_paths['scale']:g}: the stages "
        f"{', '.join(f'`{s}`' for s in cpu_paths.get('stages') or [])} rerun under each setting in one copy; the "
        "sha256 of every file they output is compared with the default setting's. numpy "
        f"{numpy.get('numpy') or '?'}: baseline {', '.join(numpy.get('baseline') or []) or '?'}; "
        f"dispatch targets {', '.join(numpy.get('dispatch') or []) or 'none'}; this CPU has "
        f"{', '.join(t for t, has in (numpy.get('cpu_has') or {}).items() if has) or 'none of them'}. "
        f"Environment as found: `{json.dumps(cpu_paths.get('env_found') or {})}` "
        "(`OPENBLAS_CORETYPE` is never changed; the numpy settings reach numpy only, not polars or pyarrow).",
        "",
    ]
    if cpu_paths.get("failed"):
        return lines + render_failure(cpu_paths["failed"])
    comparison = cpu_paths.get("comparison") or {}
    by_name = {s["name"]: s for s in comparison.get("settings") or []}
    rows = []
    for setting in cpu_paths["settings"]:
        compared = by_name.get(setting["name"], {})
        probe = setting.get("probe") or {}
        same_path = compared.get("same_numpy_path")
        path_cell = "error" if "error" in probe else ", ".join(probe.get("enabled") or []) or "none (baseline)"
        if setting["name"] != "default" and same_path is not None and setting["env"].get("NPY_DISABLE_CPU_FEATURES"):
            path_cell += (
                " — same as default here (the CPU lacks what it turns off)" if same_path else " — differs from default"
            )
        if setting.get("failed"):
            result = f"failed at {failure_summary(setting['failed'])}"
        elif setting["name"] == "default":
            result = "reference"
        else:
            differing = len(compared.get("differing_files") or [])
            result = (
                "identical"
                if compared.get("identical")
                else f"**{differing} of {comparison.get('files')} files differ**"
            )
        total = sum((setting.get("wall_s") or {}).values())
        rows.append(
            [
                f"`{setting['name']}`",
                setting["description"],
                f"`{json.dumps(setting['env'])}`",
                path_cell,
                seconds(total) if setting.get("wall_s") else "–",
                result,
            ]
        )
    lines += table(
        ["setting", "what", "environment", "numpy dispatch targets enabled", "stages wall s", "outputs"], rows
    )
    numpy_settings = [
        s for s in comparison.get("settings") or [] if s["name"] != "default" and by_env_var(cpu_paths, s["name"])
    ]
    changed = [s["name"] for s in numpy_settings if s["same_numpy_path"] is False]
    unchanged = [s["name"] for s in numpy_settings if s["same_numpy_path"] is True]
    if numpy_settings:
        lines += [
            "numpy settings that took a different path on this machine: "
            + (", ".join(f"`{n}`" for n in changed) or "none")
            + "; the same path as default here: "
            + (", ".join(f"`{n}`" for n in unchanged) or "none")
            + (" (this CPU lacks every target they switch off, so they measure nothing new here)" if unchanged else "")
            + ".",
            "",
        ]
    identical = comparison.get("identical")
    if identical is None:
        lines += ["Nothing to compare (fewer than two settings completed).", ""]
    elif identical:
        lines += [f"All {comparison['files']} output files are byte-identical across the settings that completed.", ""]
    else:
        names = [s["name"] for s in cpu_paths["settings"] if not s.get("failed")]
        lines += [f"{len(comparison['differences'])} of {comparison['files']} output files differ:", ""]
        lines += table(
            ["file", *(f"`{n}` sha256" for n in names)],
            [
                [f"`{d['path']}`", *((d["hashes"].get(n) or "missing")[:12] for n in names)]
                for d in comparison["differences"]
            ],
        )
    return lines
