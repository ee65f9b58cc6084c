"""The speed targets of issue #20, side by side with a baseline commit, in one run on one machine.

``python benchmarks/speed_vs_baseline.py [--baseline 8a1fbf8] [--tmp-dir DIR]`` clones the baseline and
HEAD (committed, as a new user gets them) into temporary folders, each with its own DVC cache, and times:

- T0: the baseline's ``dvc repro --force`` (each stage from DVC's "Running stage" lines);
- HEAD: ``dvc repro`` on the fresh clone (does ``dvc.lock`` come out unchanged?), then ``dvc repro
  --force``, then a ranker-only experiment (``dvc exp run -S ranker.num_leaves=63``) and an ALS-only
  one (``-S als.factors=64``), each from the committed state, each with the seed runs it reruns;

and writes the ratios to T0 into ``benchmarks/RESULTS.md`` between the ``speed-vs-baseline`` markers
(and ``benchmarks/speed.json``). Peak memory is the largest resident set of any process of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
JSON_OUT = REPO / "benchmarks" / "speed.json"
START, END = "<!-- speed-vs-baseline:start -->", "<!-- speed-vs-baseline:end -->"
RUNNING = re.compile(r"Running stage '([^']+)'")
TARGETS = {  # run -> the most it may take, in units of T0 (issue #20)
    "fresh clone dvc repro": 1.0,
    "dvc repro --force (with the seed runs)": 2.0,
    "ranker-only experiment": 0.5,
    "ALS-only experiment": 2.0,
}


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _peak_children_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def timed(args: list[str], cwd: Path, log: Path) -> dict[str, Any]:
    """Run ``args``, streaming its output to ``log``; the wall time, each stage's, and the exit status."""
    started = time.monotonic()
    stages: list[list[Any]] = []
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(args)}\n")
        process = subprocess.Popen(args, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            match = RUNNING.search(line)
            if match:
                now = time.monotonic() - started
                if stages:
                    stages[-1][2] = now
                stages.append([match.group(1), now, None])
        code = process.wait()
    wall = time.monotonic() - started
    if stages:
        stages[-1][2] = wall
    if code != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({code}) in {cwd}; see {log}")
    return {"wall_s": round(wall, 1), "stages": {name: round(end - start, 1) for name, start, end in stages}}


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def clone(rev: str, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=dest, check=True)
    return dest


def restore(work: Path) -> None:
    """Back to the committed params, lock and outputs (from this clone's cache)."""
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=work, check=True)
    subprocess.run(dvc("checkout", "-q", "--force"), cwd=work, env=_env(), check=True)


def run(baseline: str, tmp: Path) -> dict[str, Any]:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    base_rev = subprocess.run(["git", "rev-parse", baseline], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    log = tmp / "speed.log"
    runs: dict[str, Any] = {}
    print(f"speed: baseline {base_rev[:7]} dvc repro --force", file=sys.stderr)
    base = clone(base_rev, tmp / "baseline")
    runs["T0: baseline dvc repro --force"] = timed(dvc("repro", "--force"), base, log)
    shutil.rmtree(base, ignore_errors=True)
    work = clone(head, tmp / "head")
    print("speed: HEAD dvc repro on a fresh clone", file=sys.stderr)
    runs["fresh clone dvc repro"] = timed(dvc("repro"), work, log)
    changed = subprocess.run(["git", "status", "--porcelain", "dvc.lock"], cwd=work, capture_output=True, text=True).stdout
    runs["fresh clone dvc repro"]["dvc.lock reproduced"] = not changed.strip()
    print("speed: HEAD dvc repro --force", file=sys.stderr)
    runs["dvc repro --force (with the seed runs)"] = timed(dvc("repro", "--force"), work, log)
    restore(work)
    print("speed: ranker-only experiment", file=sys.stderr)
    runs["ranker-only experiment"] = timed(dvc("exp", "run", "-S", "ranker.num_leaves=63"), work, log)
    restore(work)
    print("speed: ALS-only experiment", file=sys.stderr)
    runs["ALS-only experiment"] = timed(dvc("exp", "run", "-S", "als.factors=64"), work, log)
    return {
        "baseline": base_rev,
        "head": head,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "peak_rss_mib_any_process": round(_peak_children_mib(), 1),
        "runs": runs,
    }


def render(result: dict[str, Any]) -> str:
    """The Markdown section: the runs against T0 and their targets, then every stage's seconds."""
    runs = result["runs"]
    t0 = runs["T0: baseline dvc repro --force"]["wall_s"]
    lines = [
        START,
        "## Speed against the baseline (issue #20)",
        "",
        f"Generated by `python benchmarks/speed_vs_baseline.py` from `benchmarks/speed.json`: baseline "
        f"`{result['baseline'][:7]}`, HEAD `{result['head'][:7]}`, one run each on the same machine "
        f"({result['machine']['cpu']}, {result['machine']['cores']} cores); T0 = the baseline's `dvc repro --force` = {t0:.1f} s. "
        f"Largest resident set of any process: {result['peak_rss_mib_any_process']:.0f} MiB.",
        "",
        "| run | wall s | × T0 | target × T0 | met |",
        "|---|---|---|---|---|",
    ]
    for name, entry in runs.items():
        ratio = entry["wall_s"] / t0
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if ratio <= target else "**no**")
        extra = "" if "dvc.lock reproduced" not in entry else f" (dvc.lock reproduced: {entry['dvc.lock reproduced']})"
        lines.append(f"| {name}{extra} | {entry['wall_s']:.1f} | {ratio:.2f} | {'' if target is None else target} | {met} |")
    lines += ["", "Seconds per stage (from DVC's `Running stage` lines to the next):", ""]
    names = list(dict.fromkeys(stage for entry in runs.values() for stage in entry["stages"]))
    header = list(runs)
    lines += ["| stage | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for stage in names:
        cells = [str(runs[run]["stages"].get(stage, "")) for run in header]
        lines.append(f"| `{stage}` | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any]) -> None:
    JSON_OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    section = render(result)
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = section + "\n" + text
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="8a1fbf8", help="the commit T0 is measured on")
    parser.add_argument("--tmp-dir", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="re-render RESULTS.md from benchmarks/speed.json")
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(json.loads(JSON_OUT.read_text(encoding="utf-8")))
        return 0
    with tempfile.TemporaryDirectory(prefix="speed-", dir=args.tmp_dir) as scratch:
        result = run(args.baseline, Path(scratch))
    write_report(result)
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
