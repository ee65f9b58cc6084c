"""The speed-vs-baseline report (benchmarks/speed_vs_baseline.py): ratios to T0 and the targets, from a result."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import speed_vs_baseline as speed


def result() -> dict:
    runs = {
        "T0: baseline dvc repro --force": {"wall_s": 100.0, "stages": {"ingest": 20.0, "train_ranker": 10.0}},
        "fresh clone dvc repro": {"wall_s": 90.0, "stages": {"ingest": 21.0}, "dvc.lock reproduced": True},
        "dvc repro --force (with the seed runs)": {"wall_s": 250.0, "stages": {"ingest": 21.0, "seed_als@1": 40.0}},
        "ranker-only experiment": {"wall_s": 60.0, "stages": {"train_ranker": 12.0}},
        "ALS-only experiment": {"wall_s": 150.0, "stages": {}},
    }
    return {"baseline": "a" * 40, "head": "b" * 40, "machine": {"cpu": "x86_64", "cores": 2}, "peak_rss_mib_any_process": 1400.0, "runs": runs}


def test_the_report_gives_each_run_its_ratio_to_t0_and_target() -> None:
    text = speed.render(result())
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["fresh clone dvc repro (dvc.lock reproduced: True)"].endswith("| 90.0 | 0.90 | 1.0 | yes |")
    assert rows["dvc repro --force (with the seed runs)"].endswith("| 250.0 | 2.50 | 2.0 | **no** |")
    assert rows["ranker-only experiment"].endswith("| 60.0 | 0.60 | 0.5 | **no** |")
    assert "| `seed_als@1` |  |  | 40.0 |  |  |" in text
    assert text.startswith(speed.START) and text.rstrip().endswith(speed.END)


def test_the_section_replaces_only_its_own_part_of_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Bench\n\n{speed.START}\nold\n{speed.END}\n\nafter\n", encoding="utf-8")
    monkeypatch.setattr(speed, "RESULTS", results)
    monkeypatch.setattr(speed, "JSON_OUT", tmp_path / "speed.json")
    speed.write_report(result())
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Bench\n\n" + speed.START) and text.endswith("\nafter\n") and "old" not in text
