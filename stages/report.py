"""Stage report: merge the validation and test blocks and the seed spread into the files reviewers read.

Reads ``metrics/blocks/{validation,test}/``, ``metrics/seed_spread.json`` (optional), the split summary,
the raw-data manifest and the saved models; writes ``metrics/metrics.json``, the merged reports, the model
card and the plot data (:mod:`reco.evaluation.report`). See docs/design/evaluation.md.
"""

from __future__ import annotations

from reco.cli import run_stage


def main() -> None:
    from reco.evaluation.layout import ReportFiles
    from reco.evaluation.report import build_report, write_report
    from reco.params import load_section

    files = ReportFiles()
    write_report(build_report(files, load_section("label"), load_section("evaluate")), files)


if __name__ == "__main__":
    run_stage("report", main)
