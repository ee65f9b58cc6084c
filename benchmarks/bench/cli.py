"""The command line: parse options, run the plan (or re-render stored results), write the results."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bare_fits import worker_als, worker_lightgbm
from .config import DEFAULT_OUT_DIR, DEFAULT_TIMEOUT_S, REPO_ROOT, RESULTS_JSON
from .cpu_paths import DEFAULT_STAGES as CPU_PATH_DEFAULT_STAGES
from .derive import derive, failures
from .driver import ExperimentOptions, RunOptions, RunSpec, plan_runs, run_benchmark
from .engines import parse_engines
from .parallel import parse_levels
from .report import render_markdown, write_results

SCALE_RANGE = (0.01, 10.0)  # params' data.scale range (reco/params.py)


def parse_set(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set section.key=YAML`` options to ``{section: {key: value}}``."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot or not section or not key:
            raise SystemExit(f"--set expects section.key=value, got {item!r}")
        out.setdefault(section, {})[key] = yaml.safe_load(raw)
    return out


def parse_scales(text: str) -> list[float]:
    """``"0.25,0.5,1,2"`` -> ``[0.25, 0.5, 1.0, 2.0]`` (distinct, each in params' range [0.01, 10]).

    >>> parse_scales("1,5,10")
    [1.0, 5.0, 10.0]
    """
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        scales = []
    low, high = SCALE_RANGE
    if not scales or any(not low <= s <= high for s in scales) or len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"expects distinct numbers in [{low:g}, {high:g}], got {text!r}")
    return scales


def _list_of(parse: Any) -> Any:
    """An argparse type from a parser that raises ValueError (argparse then reports the message)."""

    def parse_option(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse_option


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"expects comma-separated stage names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """Every option of ``benchmarks/pipeline_benchmark.py`` (see its docstring)."""
    parser = argparse.ArgumentParser(
        description="Time and measure the DVC pipeline stage by stage in a temporary copy of the repository.",
    )
    parser.add_argument(
        "--profile",
        choices=("tiny", "small", "full"),
        default=None,
        help="data.profile (default: params.yaml's; with --scales: full)",
    )
    parser.add_argument("--scale", type=float, default=None, help="data.scale (default: params.yaml's)")
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=None,
        help="comma-separated data.scale values in [0.01, 10]: one run each, plus a scaling "
        "table when two or more complete",
    )
    parser.add_argument(
        "--engines",
        type=_list_of(parse_engines),
        default=None,
        metavar="ENGINES",
        help="comma-separated compute.engine values (local,dask): one run per engine and scale, reported side by side",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra params override in the copy (repeatable)",
    )
    parser.add_argument(
        "--cache-type",
        default=None,
        metavar="TYPES",
        help="set DVC cache.type in the copy only, e.g. hardlink,symlink (default: the repo's)",
    )
    parser.add_argument(
        "--parallel",
        type=_list_of(parse_levels),
        default=None,
        metavar="K,K",
        help="k parallel experiments for each k (e.g. 1,2): k copies run the same stages at once",
    )
    parser.add_argument(
        "--parallel-stages",
        type=_list_of(_names),
        default=None,
        metavar="STAGES",
        help="the stage set of --parallel (default: the whole pipeline); e.g. train_ranker",
    )
    parser.add_argument(
        "--parallel-threads-per-run",
        type=int,
        default=None,
        metavar="N",
        help="threads one run uses, for the fair share (default: from params and environment)",
    )
    parser.add_argument(
        "--cpu-paths",
        action="store_true",
        help="rerun the data stages under several numpy CPU paths and POLARS_MAX_THREADS=1; compare hashes",
    )
    parser.add_argument(
        "--cpu-path-stages",
        type=_list_of(_names),
        default=list(CPU_PATH_DEFAULT_STAGES),
        metavar="STAGES",
        help="the stages of --cpu-paths (default: ingest,prepare,split)",
    )
    parser.add_argument(
        "--experiments-only",
        dest="main_runs",
        action="store_false",
        help="skip the main runs: only --parallel / --cpu-paths",
    )
    parser.add_argument(
        "--out-dir",
        "--out",
        dest="out_dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="where results.json and RESULTS.md go (default: benchmarks/)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (printed on stderr)")
    parser.add_argument("--tmp-dir", default=None, help="parent folder of the temporary copies (default: system temp)")
    parser.add_argument(
        "--no-whole-repro",
        dest="whole_repro",
        action="store_false",
        help="skip the from-scratch whole dvc repro (targets then use the sum of stages)",
    )
    parser.add_argument(
        "--bare-repeats",
        type=int,
        default=3,
        metavar="N",
        help="run each bare fit N times and report the median (default: 3)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-evaluate the targets of OUT_DIR/results.json and rewrite it and RESULTS.md (no run)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per subprocess (default: 3600)"
    )
    # Internal: the bare fits re-run the entry script in a subprocess.
    parser.add_argument("--worker", choices=("als", "lightgbm"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--interactions", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def report_only(args: argparse.Namespace) -> int:
    """Recompute every derived part of OUT_DIR/results.json from its measurements; rewrite it and RESULTS.md."""
    results = json.loads((args.out_dir / RESULTS_JSON).read_text(encoding="utf-8"))
    json_path, md_path = write_results(derive(results), args.out_dir)
    print(f"rewrote {json_path} and {md_path} from the stored measurements", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or a bare-fit worker, or ``--report-only``); 1 when anything failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scales and args.scale is not None:
        parser.error("--scale and --scales exclude each other")
    if args.worker:
        payload = (
            worker_als(args.workdir, args.key, args.interactions)
            if args.worker == "als"
            else worker_lightgbm(args.workdir)
        )
        args.result.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return 0
    if args.report_only:
        return report_only(args)

    import yaml

    extra = parse_set(args.overrides)
    if args.engines and "engine" in extra.get("compute", {}):
        parser.error("--engines and --set compute.engine=... exclude each other")
    if not args.main_runs and not (args.parallel or args.cpu_paths):
        parser.error("--experiments-only needs --parallel or --cpu-paths")
    repo_data = (yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
    if args.scales:
        profile, scales = args.profile or "full", args.scales
    else:
        profile = args.profile or repo_data.get("profile", "full")
        scales = [float(args.scale if args.scale is not None else repo_data.get("scale", 1.0))]
    plan = plan_runs(profile, scales, args.engines) if args.main_runs else []
    options = RunOptions(
        extra=extra,
        cache_type=args.cache_type,
        timeout_s=args.timeout,
        bare_repeats=args.bare_repeats,
        whole_repro=args.whole_repro,
        keep=args.keep,
        tmp_dir=args.tmp_dir,
    )
    experiments = ExperimentOptions(
        parallel_levels=args.parallel,
        parallel_stages=args.parallel_stages,
        parallel_threads_per_run=args.parallel_threads_per_run,
        cpu_paths=args.cpu_paths,
        cpu_path_stages=args.cpu_path_stages,
    )
    command = " ".join(["python benchmarks/pipeline_benchmark.py", *(argv if argv is not None else sys.argv[1:])])
    results = run_benchmark(command, plan, options, experiments, RunSpec(profile, scales[0]))
    json_path, md_path = write_results(results, args.out_dir)
    print(render_markdown(results))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    for run in results["runs"]:
        failed = [t["name"] for t in run.get("targets") or [] if t["applies"] and not t["passed"]]
        if failed:
            print(
                f"targets missed (profile {run['profile']}, scale {run['scale']:g}): {'; '.join(failed)}",
                file=sys.stderr,
            )
    failed_parts = failures(results)
    for line in failed_parts:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed_parts else 0
