"""``python -m reco.review``: Markdown comparison of two revisions (reco.review*), and its decision rule
(reco.evaluation.decision) shown by simulation to flag seed noise at most 5% of the time.

One temporary git + DVC repository is built per module, with synthetic metrics (no pipeline run):
each commit holds ``params.yaml``, ``metrics/metrics.json``, ``metrics/seed_spread.json`` (each
revision's spread centred on its own headline value, per block) and the DVC-tracked
``data/evaluation/{validation,test}/per_user.parquet`` (``dvc add``), and is tagged:

==================  ==========================================================================
tag                 content
==================  ==========================================================================
``base``            random per-user values of 4 models, ranker.learning_rate 0.05
``same``            same data (an unrelated file added)
``degraded``        ranker's validation NDCG@10 lowered by 0.05 for 90% of users; learning_rate 0.5
``small``           ranker's validation NDCG@10 raised by 0.005 for every user (within seed noise)
``noseed-base``     ``base`` data without seed_spread.json
``noseed-degraded`` ``degraded`` data without seed_spread.json
``untracked``       the validation per-user file removed from DVC (an older revision)
``uncached``        a new validation per-user file whose content was deleted from the DVC cache
``degraded-exp``    a DVC experiment (``dvc exp save``) of the workspace below
==================  ==========================================================================

The workspace ends with the ``degraded`` files written over the last commit (uncommitted).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from project_copy import REPO, dvc, init_repo, run

from reco.cli import EXIT_BAD_INPUT
from reco.evaluation.decision import FAMILY_ALPHA, SeedTerm, Verdict, change_test, holm, seed_terms, user_variance
from reco.evaluation.paired import PairedDifference, paired_revision_differences
from reco.io import write_json, write_parquet
from reco.review import main, render_markdown
from reco.review_compare import (
    PairedRow,
    Review,
    ReviewOptions,
    SeedSide,
    build_review,
    decide,
    headline_table,
    parse_seed_spread,
    row_seed_terms,
)
from reco.review_revisions import ReviewError, Revision, parse_per_user

MODELS = ("als", "popularity", "random", "ranker")
METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")
KS = (5, 10)
USERS = {"test": 200, "validation": 150}
SEED_STD = {"als": 0.006, "popularity": 0.0, "random": 0.003, "ranker": 0.004}
SEEDS = [1, 2, 3, 4, 5]
HEADLINE_SEED = 42  # als.random_state and ranker.seed of every synthetic revision: not one of SEEDS
# Standardised offsets of the seeds' values from the headline value (mean 0, sample std 1).
SEED_OFFSETS = np.array([-1.2, -0.6, 0.0, 0.5, 1.3])
SEED_OFFSETS = (SEED_OFFSETS - SEED_OFFSETS.mean()) / SEED_OFFSETS.std(ddof=1)
CHANGED = "validation"  # the block the synthetic changes touch (the review's default)
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


def seed_spread_payload(metrics: dict[str, object]) -> dict[str, object]:
    """seed_spread.json as stages/seed_spread.py writes it: per block, each model's values over SEEDS,
    centred on the revision's own headline value with std SEED_STD (0: a deterministic model)."""
    blocks: dict[str, object] = {}
    for block in USERS:
        models = metrics[block]["models"]  # type: ignore[index]
        entries = {}
        for model, std in SEED_STD.items():
            entries[model] = {}
            for key in ("ndcg_at_10", "map_at_10"):
                values = [round(models[model][key] + std * offset, 6) for offset in SEED_OFFSETS]
                entries[model][key] = {"mean": round(float(np.mean(values)), 6), "std": std, "values": values}
        blocks[block] = {"models": entries}
    validation = blocks["validation"]["models"]  # type: ignore[index]
    return {"seeds": SEEDS, "blocks": blocks, "block": "validation", "models": validation}


def write_revision(
    repo: Path, frames: dict[str, pl.DataFrame], *, learning_rate: float, seed_spread: bool
) -> None:
    """Write one revision's params, metrics.json, seed spread (or remove it) and per-user files."""
    params = {"als": {"random_state": HEADLINE_SEED}, "ranker": {"learning_rate": learning_rate, "seed": HEADLINE_SEED}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    metrics = metrics_payload(frames)
    write_json(metrics, repo / "metrics" / "metrics.json")
    if seed_spread:
        write_json(seed_spread_payload(metrics), repo / "metrics" / "seed_spread.json")
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
    degraded = {**base, CHANGED: shifted(base[CHANGED], "ranker", "ndcg", 10, -DEGRADATION, DEGRADED_SHARE)}
    small = {**base, CHANGED: shifted(base[CHANGED], "ranker", "ndcg", 10, SMALL_CHANGE, 1.0)}

    write_revision(root, base, learning_rate=0.05, seed_spread=True)
    base_dvc_files = track(root, USERS)
    commit(root, "base")
    (root / "notes.txt").write_text("unrelated change\n", encoding="utf-8")
    commit(root, "same")
    write_revision(root, degraded, learning_rate=0.5, seed_spread=True)
    degraded_dvc_files = track(root, [CHANGED])
    commit(root, "degraded")
    write_revision(root, small, learning_rate=0.05, seed_spread=True)
    track(root, [CHANGED])
    commit(root, "small")
    write_revision(root, base, learning_rate=0.05, seed_spread=False)
    restore(root, base_dvc_files)
    commit(root, "noseed-base")
    write_revision(root, degraded, learning_rate=0.5, seed_spread=False)
    restore(root, degraded_dvc_files)
    commit(root, "noseed-degraded")

    changed_file = PER_USER.format(block=CHANGED)
    run(["git", "rm", "-q", f"{changed_file}.dvc"], cwd=root, check=True)
    (root / changed_file).unlink()
    commit(root, "untracked")

    write_revision(root, {**base, CHANGED: per_user_frame(CHANGED, seed=99)}, learning_rate=0.05, seed_spread=True)
    md5 = yaml.safe_load(track(root, [CHANGED])[f"{changed_file}.dvc"])["outs"][0]["md5"]
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
    assert result.options.block == "validation"  # the default block: settings are chosen there
    assert {row.model for row in result.paired} == set(MODELS)  # read from the files, not hard-coded
    assert len(result.paired) == len(MODELS) * 2
    for row in result.paired:
        assert row.difference is not None and row.test is not None
        assert (row.difference.mean, row.difference.low, row.difference.high) == (0.0, 0.0, 0.0)
        assert row.difference.users == USERS["validation"]
        assert row.test.p == 1.0 and row.verdict is Verdict.WITHIN_NOISE
    text = render(result)
    assert "**real** (" not in text  # only the legend mentions the flag
    assert "No params changed." in text
    assert "[+0.0000, +0.0000]" in text and "-0.0000" not in text
    assert "### Headline metrics (test)" in text and "### Headline metrics (validation)" in text
    assert "### Paired differences (validation, same users)" in text
    # the headline run (seed 42) is counted with the spread's seeds 1..5
    assert any("seeds 1, 2, 3, 4, 5, plus its headline run (seed 42)" in note for note in result.paired_notes)


def test_planted_degradation_is_flagged_real_and_nothing_else(repo: Path) -> None:
    result = review(repo, "base", "degraded")
    ranker = result.row("ranker", "ndcg", 10)
    assert ranker.difference is not None and ranker.test is not None
    assert ranker.difference.mean == pytest.approx(-DEGRADATION * DEGRADED_SHARE, abs=1e-12)
    assert ranker.difference.low < ranker.difference.mean < ranker.difference.high < 0
    # SE^2 = users' bootstrap variance + both revisions' seed variance (spread values + headline run)
    assert ranker.test.se == pytest.approx(math.sqrt(ranker.test.user_var + ranker.test.seed_var))
    headline_runs = [np.append(np.asarray(SEED_OFFSETS) * SEED_STD["ranker"], 0.0)] * 2  # spread + headline, per side
    assert ranker.test.seed_var == pytest.approx(sum(np.var(runs, ddof=1) for runs in headline_runs), rel=1e-3)
    assert ranker.test.df == pytest.approx(2 * len(SEEDS), rel=1e-3)  # Welch-Satterthwaite of two equal terms
    assert ranker.test.p_holm <= FAMILY_ALPHA and ranker.verdict is Verdict.REAL
    for row in rows_except(result, "ranker", "ndcg"):
        assert row.difference is not None and row.difference.mean == 0.0
        assert row.verdict is Verdict.WITHIN_NOISE
    text = render(result)
    ranker_line = next(line for line in text.splitlines() if line.startswith("| ranker | NDCG@10 |"))
    assert "**real** (worse)" in ranker_line and "-0.0450" in ranker_line
    assert text.count("**real**") == 2  # the ranker row and the legend
    assert "ranker.learning_rate" in text  # dvc params diff table, verbatim


def test_small_change_within_the_seed_noise_is_not_flagged(repo: Path) -> None:
    ranker = review(repo, "base", "small").row("ranker", "ndcg", 10)
    assert ranker.difference is not None and ranker.test is not None
    # Every user moved by the same amount: the user bootstrap alone would call it significant ...
    assert ranker.difference.low == pytest.approx(SMALL_CHANGE) and ranker.difference.excludes_zero
    assert ranker.test.user_var == pytest.approx(0.0, abs=1e-15)
    # ... but a seed change alone moves the metric by as much.
    assert abs(ranker.test.t) < 2 and ranker.verdict is Verdict.WITHIN_NOISE


def test_without_seed_spread_nothing_is_called_real(repo: Path) -> None:
    result = review(repo, "noseed-base", "noseed-degraded")
    ranker = result.row("ranker", "ndcg", 10)
    assert ranker.test is None and ranker.difference is not None and ranker.difference.excludes_zero
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


def test_test_block_only_when_asked(repo: Path) -> None:
    result = review(repo, "base", "degraded", block="test", metrics=("ndcg", "precision"), ks=(5, 10))
    assert {row.metric for row in result.paired} == {"ndcg", "precision"}
    assert all(row.difference is not None and row.difference.users == USERS["test"] for row in result.paired)
    assert all(row.verdict is Verdict.WITHIN_NOISE for row in result.paired)  # only validation was degraded
    # precision has no seed spread recorded: no test, shown as "—", never real
    assert result.row("ranker", "precision", 10).test is None
    assert main(["base", "degraded", "--block", "test", "--repo", str(repo)]) == 0


def test_revision_missing_the_per_user_file_exits_2_with_a_clear_message(repo: Path) -> None:
    result = run(["python", "-m", "reco.review", "base", "untracked"], cwd=repo, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: review: data/evaluation/validation/per_user.parquet at `untracked`")
    assert "not tracked in that commit" in lines[0] and "dvc repro evaluate" in lines[0]


def test_revision_whose_per_user_file_is_not_cached_exits_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["base", "uncached", "--repo", str(repo)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: review: data/evaluation/validation/per_user.parquet at `uncached`")
    assert "neither in the local DVC cache" in captured.err and "dvc fetch" in captured.err
    assert "dvc exp apply uncached" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["base", "no-such-revision"], "unknown revision 'no-such-revision'"),
        (["base", "same", "--metrics", "serendipity"], "no rows for ['SERENDIPITY@10']"),
        (["base", "same", "--block", "train"], "invalid choice: 'train'"),
        (["base", "same", "--k", "0"], "expected integers >= 1"),
        (["base", "same", "--alpha", "1.5"], "expected a number in (0, 1)"),
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
# Paired maths and the decision rule (no repository)
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


def test_users_variance_is_the_bootstrap_variance_of_the_mean() -> None:
    rng = np.random.default_rng(7)
    differences = rng.normal(0.01, 0.05, size=(80, 2))
    draws = np.random.default_rng(1).integers(0, 80, size=(20_000, 80))
    resampled = differences[draws].mean(axis=1)
    assert user_variance(differences) == pytest.approx(resampled.var(axis=0), rel=0.05)


def test_holm_matches_its_step_down_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    adjusted, reject = holm(p, 0.05)
    # sorted: 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.2*1 -> running max 0.025, 0.04, 0.09, 0.09, 0.2
    assert adjusted.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    assert reject.tolist() == [True, False, False, True, False]


def test_the_headline_run_joins_the_seed_spread_unless_it_is_one_of_its_seeds() -> None:
    spread = parse_seed_spread(
        {"seeds": [1, 2, 3], "block": "validation",
         "models": {"als": {"ndcg_at_10": {"std": 0.01, "values": [0.79, 0.80, 0.81]}}}},  # fmt: skip
        "f",
        "validation",
    )
    headline = {"als": {"ndcg_at_10": 0.77}}
    outside = SeedSide(spread, headline, headline_seed=42)
    runs, extra = outside.runs("als", "ndcg_at_10")
    assert runs is not None and runs.tolist() == [0.79, 0.80, 0.81] and extra == 0.77
    inside = SeedSide(spread, headline, headline_seed=2)
    assert inside.headline_in_spread and inside.runs("als", "ndcg_at_10")[1] is None
    # A HEAD whose own spread was measured: s_BASE^2 + s_HEAD^2, each from the spread plus the headline run.
    head_spread = parse_seed_spread(
        {"seeds": [1, 2, 3], "models": {"als": {"ndcg_at_10": {"values": [0.70, 0.72, 0.74]}}}}, "f", "validation"
    )
    terms = row_seed_terms(outside, SeedSide(head_spread, {"als": {"ndcg_at_10": 0.73}}, 42), "als", "ndcg_at_10")
    assert terms is not None
    assert [float(term.variance) for term in terms] == pytest.approx(
        [np.var([0.79, 0.80, 0.81, 0.77], ddof=1), np.var([0.70, 0.72, 0.74, 0.73], ddof=1)]
    )
    assert [term.df for term in terms] == [3, 3]
    # The same spread in both revisions is one measurement: pooled with both headline runs, the tested
    # contrast left out of its own sum of squares (n - 2 degrees of freedom).
    (pooled,) = row_seed_terms(outside, SeedSide(spread, {"als": {"ndcg_at_10": 0.80}}, 42), "als", "ndcg_at_10")
    runs = np.array([0.79, 0.80, 0.81, 0.77, 0.80])
    expected = 2 * (((runs - runs.mean()) ** 2).sum() - (0.80 - 0.77) ** 2 / 2) / 3
    assert float(pooled.variance) == pytest.approx(expected) and pooled.df == 3
    assert row_seed_terms(SeedSide(None, headline), SeedSide(None, headline), "als", "ndcg_at_10") is None


def test_decide_runs_holm_over_the_tested_rows_only() -> None:
    big = PairedDifference(100, 0.60, 0.55, -0.05, -0.06, -0.04)
    zero = PairedDifference(100, 0.60, 0.60, 0.0, 0.0, 0.0)
    terms = [SeedTerm(2 * 0.004**2, 5)]
    decided = decide([big, zero, big, None], [1e-6, 0.0, 1e-6, None], [terms, terms, None, terms])
    (real_test, real), (zero_test, within), (no_test, unknown), (none_test, none) = decided
    assert real is Verdict.REAL and real_test is not None and real_test.p_holm == pytest.approx(2 * real_test.p)
    assert within is Verdict.WITHIN_NOISE and zero_test is not None and zero_test.p == 1.0
    assert unknown is Verdict.UNKNOWN and no_test is None  # no seed spread: never real
    assert none is None and none_test is None  # no common users


# --------------------------------------------------------------------------------------------
# Simulation: A/A tables are flagged at most 5% of the time, today's ranker-ALS gap is flagged
# --------------------------------------------------------------------------------------------

SIM_TABLES = 2000
SIM_ROWS = 20  # e.g. 2 models x 2 metrics x 5 cut-offs
# Monte-Carlo margin on a family-wise rate of 0.05 estimated from SIM_TABLES tables: 2.33 standard
# errors (a one-sided 1% allowance), sqrt(0.05 * 0.95 / 2000) * 2.33 = 0.0114.
MC_MARGIN = 2.33 * math.sqrt(FAMILY_ALPHA * (1 - FAMILY_ALPHA) / SIM_TABLES)


def family_flags(mean: np.ndarray, user_var: np.ndarray, terms: list[SeedTerm] | None) -> np.ndarray:
    """Per table (first axis), whether any row (last axis) is flagged by the review's rule."""
    assert terms is not None
    _, _, _, p = change_test(mean, user_var, terms)
    return holm(p, FAMILY_ALPHA)[1].any(axis=-1)


def model_draw(
    rng: np.random.Generator,
    *,
    same_spread: bool,
    seed_sd: float = 0.002,
    user_sd: np.ndarray | None = None,
    delta: np.ndarray | float = 0.0,
    rows: int = SIM_ROWS,
) -> tuple[np.ndarray, np.ndarray, list[SeedTerm] | None]:
    """Tables drawn from the model the rule assumes: a run = its configuration's mean + N(0, seed_sd^2);
    the observed HEAD - BASE adds N(0, user_sd^2) users' noise (known); five spread seeds per configuration
    plus each headline run. ``user_sd`` per row (default: 0 to 2x the seed sd across the rows); ``delta``
    per row is HEAD's true shift (its spread and its run). With ``same_spread`` HEAD holds BASE's spread."""
    shape = (SIM_TABLES, rows)
    user_sd = seed_sd * np.linspace(0.0, 2.0, rows) if user_sd is None else user_sd
    delta = np.broadcast_to(np.asarray(delta, dtype=np.float64), (rows,))
    base_spread = rng.normal(0.0, seed_sd, (*shape, len(SEEDS)))
    head_spread = base_spread if same_spread else delta[:, None] + rng.normal(0.0, seed_sd, (*shape, len(SEEDS)))
    base_run = rng.normal(0.0, seed_sd, shape)
    head_run = delta + rng.normal(0.0, seed_sd, shape)
    mean = head_run - base_run + rng.normal(0.0, 1.0, shape) * user_sd
    terms = seed_terms(base_spread, base_run, head_spread, head_run)
    return mean, np.broadcast_to(user_sd**2, shape), terms


@pytest.mark.parametrize("same_spread", [False, True], ids=["own-spreads", "shared-spread"])
def test_aa_tables_under_the_rules_model_are_flagged_at_most_alpha(same_spread: bool) -> None:
    rng = np.random.default_rng(2024 + same_spread)
    flagged = family_flags(*model_draw(rng, same_spread=same_spread))
    assert flagged.mean() <= FAMILY_ALPHA + MC_MARGIN, flagged.mean()


def realistic_aa_draw(rng: np.random.Generator, users: int = 200) -> np.ndarray:
    """Per-user runs: skewed per-user quality, a heavy-tailed seed effect (Student t, 3 df) shared by the
    users of a run, per-user noise of the run, values clipped to [0, 1]; two models x two correlated
    metrics (the same run noise, other scales). Seven runs per model: five spread seeds, BASE's and
    HEAD's headline runs (an A/A: only the seed differs; the spread is one measurement for both)."""
    runs = len(SEEDS) + 2
    quality = rng.beta(5.0, 2.0, (SIM_TABLES, 1, users))
    pvalues = []
    for _model in range(2):
        seed_effect = 0.002 * rng.standard_t(3, (SIM_TABLES, runs, 1))
        user_noise = rng.normal(0.0, 0.03, (SIM_TABLES, runs, users))
        for power, scale in ((1.0, 1.0), (1.4, 1.5)):
            values = np.clip(quality**power + scale * (seed_effect + user_noise), 0.0, 1.0)
            means = values.mean(axis=-1)
            differences = values[:, -1, :] - values[:, -2, :]
            spread = means[:, : len(SEEDS)]
            terms = seed_terms(spread, means[:, -2], spread, means[:, -1])
            assert terms is not None
            pvalues.append(change_test(differences.mean(axis=-1), user_variance(differences.T).T, terms)[3])
    return holm(np.stack(pvalues, axis=-1), FAMILY_ALPHA)[1].any(axis=-1)


def test_aa_tables_of_realistic_per_user_runs_are_flagged_at_most_alpha() -> None:
    flagged = realistic_aa_draw(np.random.default_rng(11))
    assert flagged.mean() <= FAMILY_ALPHA + MC_MARGIN, flagged.mean()


def todays_scale() -> tuple[float, float]:
    """Today's validation NDCG@10 gap ranker - ALS and the larger seed sd of the two (seeds + headline run)."""
    metrics_file = REPO / "metrics" / "blocks" / "validation" / "metrics.json"
    spread_file = REPO / "metrics" / "seed_spread.json"
    for file in (metrics_file, spread_file):
        if not file.is_file():
            pytest.fail(f"{file.relative_to(REPO)} not found: re-run `dvc repro` (it is committed with the pipeline)")
    models = json.loads(metrics_file.read_text(encoding="utf-8"))["models"]
    spread = parse_seed_spread(json.loads(spread_file.read_text(encoding="utf-8")), "seed_spread.json", "validation")
    assert spread is not None
    sds = []
    for model in ("ranker", "als"):
        values = spread.values(model, "ndcg_at_10")
        assert values is not None, f"no validation ndcg_at_10 values of {model} in metrics/seed_spread.json"
        sds.append(float(np.std([*values, models[model]["ndcg_at_10"]], ddof=1)))
    return models["ranker"]["ndcg_at_10"] - models["als"]["ndcg_at_10"], max(sds)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known shortfall (issue #21, open): with the settings the halving selection chose, the ranker is not "
        "above ALS on validation (nothing to plant); with the previous settings a planted gap of that size was "
        "flagged in fewer than 95% of tables (the assertion gives the rate); strict, so the suite fails once "
        "the rule, the noise or the gap makes it pass"
    ),
)
def test_a_difference_the_size_of_todays_ranker_als_gap_is_flagged() -> None:
    gap, seed_sd = todays_scale()
    assert gap > 0, "the ranker is not above ALS on validation: nothing to plant"
    # The family of the review's default table: the models with a seed spread (ranker, als) x NDCG, MAP at
    # K = 10. Row 0 carries the gap (HEAD's runs and spread shifted by it), the other rows are A/A; the users'
    # sd of the paired difference equals the seed sd (both were near 0.002 in the real A/A of issue #21).
    rows = 4
    delta = np.zeros(rows)
    delta[0] = gap
    user_sd = np.full(rows, seed_sd)
    rng = np.random.default_rng(3)
    draw = model_draw(rng, same_spread=False, seed_sd=seed_sd, user_sd=user_sd, delta=delta, rows=rows)
    _, _, _, p = change_test(draw[0], draw[1], draw[2] or [])
    flagged = holm(p, FAMILY_ALPHA)[1]
    assert flagged[:, 0].mean() >= 0.95, (gap, seed_sd, flagged[:, 0].mean())
    assert flagged[:, 1:].any(axis=-1).mean() <= FAMILY_ALPHA + MC_MARGIN


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
