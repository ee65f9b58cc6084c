"""``python -m reco.review``: Markdown comparison of two revisions (reco.review, reco.evaluation.paired).

One temporary git + DVC repository is built per module, with synthetic metrics (no pipeline run):
each commit holds ``metrics/metrics.json``, ``metrics/seed_spread.json`` and the DVC-tracked
``data/evaluation/{test,validation}/per_user.parquet`` (``dvc add``), and is tagged:

==================  ==========================================================================
tag                 content
==================  ==========================================================================
``base``            random per-user values of 4 models, ranker.learning_rate 0.05
``same``            same data (an unrelated file added)
``degraded``        ranker's test NDCG@10 lowered by 0.05 for 90% of users; learning_rate 0.5
``small``           ranker's test NDCG@10 raised by 0.005 for every user (< seed spread 0.0113)
``noseed-base``     ``base`` data without seed_spread.json
``noseed-degraded`` ``degraded`` data without seed_spread.json
``untracked``       the test per-user file removed from DVC (an older revision)
``uncached``        a new test per-user file whose content was deleted from the DVC cache
``degraded-exp``    a DVC experiment (``dvc exp save``) of the workspace below
==================  ==========================================================================

The workspace ends with the ``degraded`` test files written over the last commit (uncommitted).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from project_copy import REPO, dvc, init_repo, run

from reco.evaluation.paired import (
    SEED_SPREAD_FACTOR,
    PairedDifference,
    Verdict,
    change_verdict,
    paired_revision_differences,
    seed_noise_threshold,
)
from reco.io import write_json, write_parquet
from reco.review import (
    EXIT_BAD_INPUT,
    PairedRow,
    Review,
    ReviewError,
    ReviewOptions,
    Revision,
    build_review,
    headline_table,
    main,
    parse_per_user,
    render_markdown,
)

MODELS = ("als", "popularity", "random", "ranker")
METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")
KS = (5, 10)
USERS = {"test": 200, "validation": 150}
SEED_STD = {"als": 0.006, "popularity": 0.0, "random": 0.003, "ranker": 0.004}
DEGRADATION = 0.05
DEGRADED_SHARE = 0.9
SMALL_CHANGE = 0.005
PER_USER = "data/evaluation/{block}/per_user.parquet"


# --------------------------------------------------------------------------------------------
# Synthetic revisions
# --------------------------------------------------------------------------------------------


def per_user_frame(block: str, seed: int) -> pl.DataFrame:
    """One row per (user, model, metric, k), values in [0.2, 0.9] so a +-0.05 shift never clips."""
    rng = np.random.default_rng(seed)
    keys = [(model, metric, k) for model in MODELS for metric in METRICS for k in KS]
    n_users = USERS[block]
    users = np.arange(1, n_users + 1, dtype=np.int32)
    return pl.DataFrame(
        {
            "user_id": np.tile(users, len(keys)),
            "model": [model for model, _, _ in keys for _ in users],
            "metric": [metric for _, metric, _ in keys for _ in users],
            "k": np.repeat([k for _, _, k in keys], n_users).astype(np.int16),
            "value": rng.uniform(0.2, 0.9, size=len(keys) * n_users),
        },
        schema={"user_id": pl.Int32, "model": pl.String, "metric": pl.String, "k": pl.Int16, "value": pl.Float64},
    )


def shifted(frame: pl.DataFrame, model: str, metric: str, k: int, delta: float, share: float) -> pl.DataFrame:
    """``frame`` with ``delta`` added to the first ``share`` of users' ``model`` ``metric@k``."""
    last_user = round(share * frame.get_column("user_id").max())
    series = (pl.col("model") == model) & (pl.col("metric") == metric) & (pl.col("k") == k)
    hit = series & (pl.col("user_id") <= last_user)
    return frame.with_columns(pl.when(hit).then(pl.col("value") + delta).otherwise(pl.col("value")).alias("value"))


def metrics_payload(frames: dict[str, pl.DataFrame]) -> dict[str, object]:
    """metrics.json of the contract: per block, each model's mean per-user metric."""
    payload: dict[str, object] = {"protocol": "fully_observed", "label_kind": "threshold"}
    for block, frame in frames.items():
        means = frame.group_by("model", "metric", "k").agg(pl.col("value").mean()).sort("model", "metric", "k")
        models: dict[str, dict[str, float]] = {}
        for model, metric, k, value in means.iter_rows():
            models.setdefault(model, {})[f"{metric}_at_{k}"] = round(value, 6)
        payload[block] = {"models": models, "data": {"users_evaluated": USERS[block]}}
    return payload


def seed_spread_payload() -> dict[str, object]:
    return {
        "seeds": [0, 1, 2],
        "block": "test",
        "models": {
            model: {key: {"mean": 0.5, "std": std, "min": 0.5 - std, "max": 0.5 + std, "values": [0.5] * 3}
                    for key in ("ndcg_at_10", "map_at_10")}  # fmt: skip
            for model, std in SEED_STD.items()
        },
    }


def write_revision(
    repo: Path, frames: dict[str, pl.DataFrame], *, learning_rate: float, seed_spread: bool
) -> None:
    """Write one revision's params, metrics.json, seed spread (or remove it) and per-user files."""
    (repo / "params.yaml").write_text(yaml.safe_dump({"ranker": {"learning_rate": learning_rate}}), encoding="utf-8")
    write_json(metrics_payload(frames), repo / "metrics" / "metrics.json")
    if seed_spread:
        write_json(seed_spread_payload(), repo / "metrics" / "seed_spread.json")
    else:
        (repo / "metrics" / "seed_spread.json").unlink(missing_ok=True)
    for block, frame in frames.items():
        # Atomic rename: never write through a hardlink into the DVC cache.
        write_parquet(frame, repo / PER_USER.format(block=block))


def track(repo: Path, blocks: Iterable[str]) -> dict[str, str]:
    """``dvc add`` the per-user files (in-process: one DVC start-up); return their .dvc files' text."""
    from dvc.repo import Repo

    paths = [PER_USER.format(block=block) for block in blocks]
    with Repo(str(repo)) as dvc_repo:
        dvc_repo.add([str(repo / path) for path in paths])
    return {f"{path}.dvc": (repo / f"{path}.dvc").read_text(encoding="utf-8") for path in paths}


def restore(repo: Path, dvc_files: dict[str, str]) -> None:
    """Point the .dvc files back at content already in the cache (no second ``dvc add`` of the same data)."""
    for path, text in dvc_files.items():
        (repo / path).write_text(text, encoding="utf-8")


def commit(repo: Path, tag: str) -> None:
    run(["git", "add", "-A"], cwd=repo, check=True)
    run(["git", "commit", "-qm", tag], cwd=repo, check=True)
    run(["git", "tag", tag], cwd=repo, check=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("review_repo")
    init_repo(root, "init")
    base = {block: per_user_frame(block, seed) for seed, block in enumerate(USERS)}
    degraded = {**base, "test": shifted(base["test"], "ranker", "ndcg", 10, -DEGRADATION, DEGRADED_SHARE)}
    small = {**base, "test": shifted(base["test"], "ranker", "ndcg", 10, SMALL_CHANGE, 1.0)}

    write_revision(root, base, learning_rate=0.05, seed_spread=True)
    base_dvc_files = track(root, USERS)
    commit(root, "base")
    (root / "notes.txt").write_text("unrelated change\n", encoding="utf-8")
    commit(root, "same")
    write_revision(root, degraded, learning_rate=0.5, seed_spread=True)
    degraded_dvc_files = track(root, ["test"])
    commit(root, "degraded")
    write_revision(root, small, learning_rate=0.05, seed_spread=True)
    track(root, ["test"])
    commit(root, "small")
    write_revision(root, base, learning_rate=0.05, seed_spread=False)
    restore(root, base_dvc_files)
    commit(root, "noseed-base")
    write_revision(root, degraded, learning_rate=0.5, seed_spread=False)
    restore(root, degraded_dvc_files)
    commit(root, "noseed-degraded")

    test_file = PER_USER.format(block="test")
    run(["git", "rm", "-q", f"{test_file}.dvc"], cwd=root, check=True)
    (root / test_file).unlink()
    commit(root, "untracked")

    write_revision(root, {"test": per_user_frame("test", seed=99)}, learning_rate=0.05, seed_spread=True)
    md5 = yaml.safe_load(track(root, ["test"])[f"{test_file}.dvc"])["outs"][0]["md5"]
    commit(root, "uncached")
    (root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()

    # Workspace: the degraded revision's files, not committed, and also saved as a DVC experiment.
    write_revision(root, degraded, learning_rate=0.5, seed_spread=True)
    dvc("exp", "save", "-q", "-n", "degraded-exp", cwd=root)
    yield root


def review(repo: Path, base: str, head: str | None, **options: object) -> Review:
    return build_review(repo, base, head, ReviewOptions(**options))  # type: ignore[arg-type]


def render(result: Review) -> str:
    return render_markdown(result)


def rows_except(result: Review, model: str, metric: str) -> list[PairedRow]:
    return [row for row in result.paired if (row.model, row.metric) != (model, metric)]


# --------------------------------------------------------------------------------------------
# Reviews of the synthetic repository
# --------------------------------------------------------------------------------------------


def test_identical_revisions_show_zero_differences_and_no_flag(repo: Path) -> None:
    result = review(repo, "base", "same")
    assert {row.model for row in result.paired} == set(MODELS)  # read from the files, not hard-coded
    assert len(result.paired) == len(MODELS) * 2
    for row in result.paired:
        assert row.difference is not None
        assert (row.difference.mean, row.difference.low, row.difference.high) == (0.0, 0.0, 0.0)
        assert row.difference.users == USERS["test"]
        assert row.verdict is Verdict.WITHIN_NOISE
    text = render(result)
    assert "**real** (" not in text  # only the legend mentions the flag
    assert "No params changed." in text
    assert "[+0.0000, +0.0000]" in text and "-0.0000" not in text
    assert "### Headline metrics (test)" in text and "### Headline metrics (validation)" in text


def test_planted_degradation_is_flagged_real_and_nothing_else(repo: Path) -> None:
    result = review(repo, "base", "degraded")
    ranker = result.row("ranker", "ndcg", 10)
    assert ranker.difference is not None
    assert ranker.difference.mean == pytest.approx(-DEGRADATION * DEGRADED_SHARE, abs=1e-12)
    assert ranker.difference.low < ranker.difference.mean < ranker.difference.high < 0
    assert ranker.seed_spread == pytest.approx(SEED_SPREAD_FACTOR * SEED_STD["ranker"])
    assert ranker.verdict is Verdict.REAL
    for row in rows_except(result, "ranker", "ndcg"):
        assert row.difference is not None and row.difference.mean == 0.0
        assert row.verdict is Verdict.WITHIN_NOISE
    text = render(result)
    ranker_line = next(line for line in text.splitlines() if line.startswith("| ranker | NDCG@10 |"))
    assert "**real** (worse)" in ranker_line and "-0.0450" in ranker_line
    assert text.count("**real**") == 2  # the ranker row and the legend
    assert "ranker.learning_rate" in text  # dvc params diff table, verbatim


def test_small_change_within_the_seed_spread_is_not_flagged(repo: Path) -> None:
    ranker = review(repo, "base", "small").row("ranker", "ndcg", 10)
    assert ranker.difference is not None and ranker.seed_spread is not None
    # Every user moved by the same amount: the user bootstrap alone would call it significant ...
    assert ranker.difference.low == pytest.approx(SMALL_CHANGE) and ranker.difference.excludes_zero
    # ... but a seed change alone moves the metric by more.
    assert abs(ranker.difference.mean) < ranker.seed_spread
    assert ranker.verdict is Verdict.WITHIN_NOISE


def test_without_seed_spread_nothing_is_called_real(repo: Path) -> None:
    result = review(repo, "noseed-base", "noseed-degraded")
    ranker = result.row("ranker", "ndcg", 10)
    assert ranker.seed_spread is None and ranker.difference is not None and ranker.difference.excludes_zero
    assert ranker.verdict is Verdict.UNKNOWN
    assert all(row.verdict is not Verdict.REAL for row in result.paired)
    text = render(result)
    assert "nothing is flagged real" in text and "unknown (no seed spread)" in text


def test_workspace_as_head_and_out_file(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "review.md"
    assert main(["base", "--repo", str(repo), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == printed
    title = printed.splitlines()[0]
    assert title.startswith("## Review: BASE `base` (") and "→ HEAD workspace (on " in title
    assert "| ranker | NDCG@10 |" in printed and "**real** (worse)" in printed
    assert "| workspace" in printed  # the params table's workspace column


def test_dvc_experiment_name_as_head(repo: Path) -> None:
    result = review(repo, "base", "degraded-exp")
    assert result.head.name == "degraded-exp" and result.head.sha is not None
    assert result.row("ranker", "ndcg", 10).verdict is Verdict.REAL
    assert "| degraded-exp" in result.params_markdown


def test_validation_block_uses_its_own_users(repo: Path) -> None:
    result = review(repo, "base", "degraded", block="validation", metrics=("ndcg", "precision"), ks=(5, 10))
    assert {row.metric for row in result.paired} == {"ndcg", "precision"}
    assert all(row.difference is not None and row.difference.users == USERS["validation"] for row in result.paired)
    assert all(row.verdict is Verdict.WITHIN_NOISE for row in result.paired)  # only the test block was degraded
    assert any("measured on the test block" in note for note in result.paired_notes)
    # precision has no seed spread recorded: unknown threshold, shown as "—"
    assert result.row("ranker", "precision", 10).seed_spread is None


def test_revision_missing_the_per_user_file_exits_2_with_a_clear_message(repo: Path) -> None:
    result = run(["python", "-m", "reco.review", "base", "untracked"], cwd=repo, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: review: data/evaluation/test/per_user.parquet at `untracked`")
    assert "not tracked in that commit" in lines[0] and "dvc repro evaluate" in lines[0]


def test_revision_whose_per_user_file_is_not_cached_exits_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["base", "uncached", "--repo", str(repo)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: review: data/evaluation/test/per_user.parquet at `uncached`")
    assert "neither in the local DVC cache" in captured.err and "dvc fetch" in captured.err
    assert "dvc exp apply uncached" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["base", "no-such-revision"], "unknown revision 'no-such-revision'"),
        (["base", "same", "--metrics", "serendipity"], "no rows for ['SERENDIPITY@10']"),
        (["base", "same", "--block", "train"], "invalid choice: 'train'"),
        (["base", "same", "--k", "0"], "expected integers >= 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    repo: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--repo", str(repo)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: review: ") and err.count("\n") == 1
    assert message in err


# --------------------------------------------------------------------------------------------
# Paired maths and the flag rule (no repository)
# --------------------------------------------------------------------------------------------


def test_paired_interval_matches_a_loop_over_resamples() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(size=(60, 2))
    head = base + rng.normal(0.02, 0.05, size=(60, 2))
    fast = paired_revision_differences(base, head, samples=500, seed=3)
    # Obvious reference: index the users of each resample, average the differences.
    draws = np.random.default_rng(3).integers(0, 60, size=(500, 60))
    resampled = (head - base)[draws].mean(axis=1)
    for j, difference in enumerate(fast):
        assert difference.mean == pytest.approx((head - base)[:, j].mean())
        assert difference.low == pytest.approx(np.quantile(resampled[:, j], 0.025))
        assert difference.high == pytest.approx(np.quantile(resampled[:, j], 0.975))
        assert difference.head_mean - difference.base_mean == pytest.approx(difference.mean)


def test_flag_needs_both_the_interval_and_the_seed_spread() -> None:
    wide = PairedDifference(100, 0.5, 0.4, -0.1, -0.25, 0.05)  # big mean, interval contains 0
    narrow = PairedDifference(100, 0.5, 0.49, -0.01, -0.012, -0.008)
    assert change_verdict(wide, 0.0) is Verdict.WITHIN_NOISE
    assert change_verdict(narrow, 0.02) is Verdict.WITHIN_NOISE
    assert change_verdict(narrow, 0.005) is Verdict.REAL
    assert change_verdict(narrow, None) is Verdict.UNKNOWN
    assert seed_noise_threshold(0.004, 0.001) == pytest.approx(2 * math.sqrt(2) * 0.004)
    assert seed_noise_threshold(None, None) is None


def test_malformed_per_user_files_are_refused() -> None:
    frame = per_user_frame("validation", seed=0).head(3)
    with pytest.raises(ReviewError, match="x: not a readable parquet file"):
        parse_per_user(b"not parquet", "x")
    with pytest.raises(ReviewError, match=r"x: 2 rows share a \(user_id, model, metric, k\) key"):
        parse_per_user(parquet_bytes(pl.concat([frame, frame.head(1)])), "x")
    with pytest.raises(ReviewError, match=r"x: missing column\(s\) \['k'\]"):
        parse_per_user(parquet_bytes(frame.drop("k")), "x")
    with pytest.raises(ReviewError, match="x: 1 non-finite value"):
        parse_per_user(parquet_bytes(frame.with_columns(pl.Series("value", [0.5, float("nan"), 0.1]))), "x")
    # Wider integer types of the writer are accepted and cast to the contract's.
    assert parse_per_user(parquet_bytes(frame.cast({"k": pl.Int64, "user_id": pl.Int64})), "x").schema == frame.schema


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_headline_block_missing_in_one_revision_shows_a_dash_and_a_note() -> None:
    base_metrics = {"test": {"models": {"als": {"ndcg_at_10": 0.5}}}}
    head_metrics = {"test": {"models": {"als": {"ndcg_at_10": 0.4}}}, "validation": {"models": {"als": {}}}}
    base, head = Revision("old", "a" * 40), Revision("new", "b" * 40)
    validation = headline_table(base_metrics, head_metrics, "validation", ["ndcg_at_10"], base, head)
    assert validation.values == {"als": {"ndcg_at_10": (None, None)}}
    assert validation.notes == ("BASE `old` (aaaaaaa) has no 'validation' block in metrics/metrics.json.",)
    test = headline_table(base_metrics, head_metrics, "test", ["ndcg_at_10"], base, head)
    assert test.values["als"]["ndcg_at_10"] == (0.5, 0.4) and test.notes == ()


def test_the_seed_spread_of_the_reviewed_block_is_used() -> None:
    from reco.review import parse_seed_spread

    def block(std: float) -> dict[str, object]:
        return {"models": {"ranker": {"ndcg_at_10": {"mean": 0.8, "std": std}}}}

    payload = {"seeds": [1, 2], "block": "test", "models": block(0.001)["models"],
               "blocks": {"validation": block(0.004), "test": block(0.001)}}  # fmt: skip
    validation = parse_seed_spread(payload, "seed_spread.json", "validation")
    assert validation is not None and validation.block == "validation"
    assert validation.std("ranker", "ndcg_at_10") == 0.004
    test = parse_seed_spread(payload, "seed_spread.json", "test")
    assert test is not None and test.std("ranker", "ndcg_at_10") == 0.001
    # a file without per-block sections: the top-level models, whatever the block asked for
    flat = parse_seed_spread({"seeds": [1], "block": "test", "models": block(0.002)["models"]}, "f", "validation")
    assert flat is not None and flat.block == "test" and flat.std("ranker", "ndcg_at_10") == 0.002
