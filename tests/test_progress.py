"""Tests of reco.progress: one ``<stage>: <step>`` line per step on stderr, only while a stage runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from reco.cli import run_stage
from reco.compute import iter_user_partitions, map_user_partitions
from reco.progress import current_stage, quiet, report, stage, steps
from reco.schema import Columns


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # never a redraw
    return captured.err.splitlines()


def test_a_step_is_one_line_prefixed_with_the_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with stage("prepare"):
        report("user range 4/16")
        report("two\nlines,  one\r line")
    assert stderr_lines(capsys) == ["prepare: user range 4/16", "prepare: two lines, one line"]
    assert capsys.readouterr().out == ""  # stdout stays the stage's own


def test_silent_outside_a_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert current_stage() is None
    report("ALS iteration 1/15")
    assert list(steps([1, 2], "chunk")) == [1, 2]
    assert capsys.readouterr().err == ""


def test_stage_restores_the_previous_state_also_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    with stage("outer"):
        with pytest.raises(RuntimeError), stage("inner"):
            report("a")
            raise RuntimeError("boom")
        report("b")
    assert current_stage() is None
    assert stderr_lines(capsys) == ["inner: a", "outer: b"]


def test_quiet_silences_the_nested_steps_only(capsys: pytest.CaptureFixture[str]) -> None:
    with stage("seed_spread"):
        report("seed 1/2, ALS 1/2")
        with quiet():
            assert current_stage() is None
            report("ALS iteration 1/15 fitted")
        report("seed 1/2, ALS 2/2")
    assert stderr_lines(capsys) == ["seed_spread: seed 1/2, ALS 1/2", "seed_spread: seed 1/2, ALS 2/2"]


def test_steps_reports_before_each_item_is_fetched(capsys: pytest.CaptureFixture[str]) -> None:
    def lazy() -> Iterator[int]:
        for value in (10, 20, 30):
            print(f"computing {value}", file=sys.stderr)
            yield value

    with stage("split"):
        assert list(steps(lazy(), "user chunk", total=3)) == [10, 20, 30]
        assert list(steps(["a", "b"], "file")) == ["a", "b"]  # total from len()
    assert stderr_lines(capsys) == [
        "split: user chunk 1/3",
        "computing 10",
        "split: user chunk 2/3",
        "computing 20",
        "split: user chunk 3/3",
        "computing 30",
        "split: file 1/2",
        "split: file 2/2",
    ]


def test_steps_needs_a_total_for_an_iterator() -> None:
    with pytest.raises(TypeError, match="total"):
        list(steps(iter([1]), "chunk"))


def test_run_stage_reports_under_the_stage_name(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        assert current_stage() == "demo"
        report("step 1/1")

    run_stage("demo", main)
    assert current_stage() is None
    lines = stderr_lines(capsys)
    assert lines[0] == "demo: step 1/1"
    assert lines[1].startswith("stage demo: done in ") and len(lines) == 2


def _partition_size(users: np.ndarray) -> int:
    return len(users)


def test_user_partitions_report_each_partition_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    users = np.arange(10)
    with stage("evaluate"):
        assert map_user_partitions(None, _partition_size, users, 3, progress="user partition") == [4, 3, 3]
        assert list(iter_user_partitions(None, _partition_size, users, 2, progress="scores: user partition")) == [5, 5]
        assert map_user_partitions(None, _partition_size, users, 2) == [5, 5]  # no label: no line
    assert stderr_lines(capsys) == [
        "evaluate: user partition 1/3",
        "evaluate: user partition 2/3",
        "evaluate: user partition 3/3",
        "evaluate: scores: user partition 1/2",
        "evaluate: scores: user partition 2/2",
    ]


def _views(n_users: int = 30, n_items: int = 20, n_views: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    ratio = rng.gamma(1.0, 1.5, n_views).astype(np.float32)
    frame = pl.DataFrame(
        {
            Columns.user: rng.integers(0, n_users, n_views),
            Columns.item: rng.integers(0, n_items, n_views),
            Columns.watch_ratio: ratio,
            Columns.label_ratio: ratio,
        },
        schema={
            Columns.user: pl.Int32,
            Columns.item: pl.Int32,
            Columns.watch_ratio: pl.Float32,
            Columns.label_ratio: pl.Float32,
        },
    )
    return frame.sort(Columns.user, maintain_order=True)


def test_the_train_als_stage_prints_its_steps_and_writes_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reco.models.als import fit_als, save_als
    from reco.params import parse_section
    from stages import train_als

    als = {"factors": 2, "iterations": 3, "num_threads": 1, "regularization": 1.0, "alpha": 1.0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"als": als, "label": {"threshold": 2.0}}), encoding="utf-8")
    _views().write_parquet(tmp_path / "train.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_als", "train.parquet", "stage_model"])

    run_stage("train_als", train_als.main)
    lines = stderr_lines(capsys)
    assert lines[0] == "train_als: confidence matrix: user chunk 1"
    assert lines[1:4] == [  # the loss after every als.loss_every-th (5) iteration and the last
        "train_als: ALS iteration 1/3 fitted",
        "train_als: ALS iteration 2/3 fitted",
        "train_als: ALS iteration 3/3 fitted; its training loss",
    ]
    assert lines[4].startswith("stage train_als: done in ") and len(lines) == 5

    # The same fit outside a stage: silent, and the saved files are byte for byte the stage's.
    model, _ = fit_als(pl.scan_parquet("train.parquet"), parse_section("als", als), threshold=2.0)
    save_als(model, tmp_path / "library_model")
    assert capsys.readouterr().err == ""
    stage_files = sorted(p.name for p in (tmp_path / "stage_model").iterdir())
    assert stage_files == sorted(p.name for p in (tmp_path / "library_model").iterdir()) and stage_files
    for name in stage_files:
        assert (tmp_path / "stage_model" / name).read_bytes() == (tmp_path / "library_model" / name).read_bytes()
