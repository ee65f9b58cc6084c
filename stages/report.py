"""Stage report: merge the validation and test blocks and the seed spread into the files reviewers read.

Reads ``metrics/blocks/{validation,test}/`` (written by ``evaluate@<block>``), ``metrics/seed_spread.json``
(optional: the model card says when it is missing), the split summary, the raw-data manifest and the
saved models. Writes ``metrics/metrics.json``, ``metrics/{uncertainty,beyond_accuracy,segments}.json``
(each ``{"validation": ..., "test": ...}``), ``metrics/model_card.md`` and the plot data
``metrics/plots/{metrics_at_k,paired_differences}.json`` (test block); see :mod:`reco.evaluation.report`.
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
