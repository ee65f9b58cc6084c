"""Every row of the "Bad input: what happens" table (docs/bad-input.md), run against the real stage scripts.

Each case lays out a temporary folder like the repository (``reco/`` and ``stages/`` linked, a
``params.yaml`` with the tiny profile, the inputs the stage needs), applies one defect, runs the
stage's ``dvc.yaml`` command as a subprocess and checks the decision of the table:

- *refuse*: exit code 2 (``reco.cli.run_stage``), stderr names the file / column / key and shows
  example rows or the allowed values, and none of the stage's declared outputs (``outs``,
  ``metrics``, ``plots`` in ``dvc.yaml``) nor any temporary is left behind;
- *drop and count*: exit code 0 and exactly the expected rows more under ``dropped`` in
  ``metrics/data_quality.json`` than for the untouched data;
- *repair*: exit code 0 and outputs identical to those of the untouched data.

The tiny simulator data are made once per session by the ingest stage itself.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from project_copy import REPO, copy_project, merge_params, run

from reco.schema import INTERACTION_COLUMNS, USER_CATEGORICAL_COLUMNS, Columns, PreparedFiles, RawFiles

TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"profile": "tiny"},
    "evaluate": {"ks": [5, 10, 20], "top_k_output": 10},
    "candidates": {"n": 30, "popularity_quota": 0, "tag_popularity_quota": 0},  # quotas within the tiny list
    "als": {"factors": 16, "iterations": 8},
    "ranker": {"train_users": 200, "n_estimators": 15, "min_data_in_leaf": 20, "num_leaves": 15},
}
UPSTREAM = ["ingest", "prepare", "split", "train_als@ranker", "train_als@test", "candidates@test", "features@train",
            "features@test", "train_ranker"]  # fmt: skip
EXIT_BAD_INPUT = 2
KUAIREC_PREFIX = "KuaiRec 2.0/data/"


# --------------------------------------------------------------------------------------------
# dvc.yaml: commands and declared outputs of each stage
# --------------------------------------------------------------------------------------------


def _stages() -> dict[str, dict[str, Any]]:
    """dvc.yaml stages with ``foreach`` expanded (``train_als@test``, ...)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    stages: dict[str, dict[str, Any]] = {}
    for name, stage in spec["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        for key, item in stage["foreach"].items():
            text = yaml.safe_dump(stage["do"]).replace("${key}", key)
            for item_key, value in item.items():
                text = text.replace("${item." + item_key + "}", str(value))
            stages[f"{name}@{key}"] = yaml.safe_load(text)
    return stages


STAGES = _stages()


def outputs_of(stage: str) -> list[str]:
    """Every path the stage declares it writes (outs, metrics, plots)."""
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in STAGES[stage].get(kind, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def command_of(stage: str) -> list[str]:
    args = shlex.split(STAGES[stage]["cmd"])
    assert args[0] == "python", args
    return [sys.executable, *args[1:]]


def run_stage(workdir: Path, stage: str, argv: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    args = command_of(stage) if argv is None else [sys.executable, *argv]
    return run(args, cwd=workdir, timeout=300)


def run_ok(workdir: Path, stage: str) -> None:
    result = run_stage(workdir, stage)
    assert result.returncode == 0, f"{stage} failed ({result.returncode}):\n{result.stderr}"


# --------------------------------------------------------------------------------------------
# Work folders laid out like the repository
# --------------------------------------------------------------------------------------------


def make_workdir(
    base: Path,
    path: Path,
    *,
    params: dict[str, Any] | None = None,
    params_text: str | None = None,
    copy: tuple[str, ...] = (),
    link: tuple[str, ...] = (),
) -> Path:
    """A repo-like folder: code linked from ``base``, params merged, inputs copied or linked."""
    path.mkdir(parents=True)
    for name in ("reco", "stages"):
        (path / name).symlink_to(base / name, target_is_directory=True)
    text = params_text
    if text is None:
        merged = merge_params(yaml.safe_load((base / "params.yaml").read_text()), params or {})
        text = yaml.safe_dump(merged, sort_keys=False)
    (path / "params.yaml").write_text(text, encoding="utf-8")
    for rel in copy:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (base / rel).is_dir() else shutil.copy2)(base / rel, path / rel)
    for rel in link:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).symlink_to(base / rel, target_is_directory=(base / rel).is_dir())
    return path


def leftover_temporaries(workdir: Path) -> list[str]:
    """Temporaries of the atomic writers anywhere in the work folder (links not followed)."""
    found = []
    for root, dirs, files in os.walk(workdir):
        for name in (*dirs, *files):
            if name.endswith(".tmp"):
                found.append(str(Path(root, name).relative_to(workdir)))
    return found


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-profile repo copy with data/raw, data/prepared and data/split made by the stages."""
    root = copy_project(tmp_path_factory.mktemp("bad_inputs_base"), overrides=TINY_OVERRIDES, dvc_files=False)
    for stage in UPSTREAM[:3]:
        run_ok(root, stage)
    return root


# --------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().rstrip(b"\n").split(b"\n")


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def _first_new_line(raw: Path, name: str = RawFiles.big_matrix) -> int:
    """1-based line number that the first appended row of ``name`` gets."""
    return len(_lines(raw / name)) + 1


def _with(line: bytes, **values: str) -> bytes:
    """An interaction row (unquoted CSV) with some fields replaced, by column name."""
    fields = line.decode().split(",")
    for column, value in values.items():
        fields[INTERACTION_COLUMNS.index(column)] = value
    return ",".join(fields).encode()


def append_rows(name: str, make: Callable[[bytes], list[bytes]]) -> Callable[[Path], None]:
    """Append ``make(first data row)`` to raw file ``name``."""

    def mutate(raw: Path) -> None:
        lines = _lines(raw / name)
        _write_lines(raw / name, [*lines, *make(lines[1])])

    return mutate


def edit_file(name: str, edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(raw: Path) -> None:
        (raw / name).write_bytes(edit((raw / name).read_bytes()))

    return mutate


def all_files(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(raw: Path) -> None:
        for name in RawFiles.required:
            (raw / name).write_bytes(edit((raw / name).read_bytes()))

    return mutate


def drop_last_column(data: bytes) -> bytes:
    return b"\n".join(line.rsplit(b",", 1)[0] for line in data.rstrip(b"\n").split(b"\n")) + b"\n"


def only_invalid_rows(data: bytes) -> bytes:
    lines = data.rstrip(b"\n").split(b"\n")
    return b"\n".join([lines[0], *(_with(line, watch_ratio="-1") for line in lines[1:])]) + b"\n"


def conflicting_user(data: bytes) -> bytes:
    lines = data.rstrip(b"\n").split(b"\n")
    twin = re.sub(rb"^(\d+),\w+", lambda m: m.group(1) + b",UNKNOWN", lines[1])
    return b"\n".join([*lines, twin]) + b"\n"


def stray_cr_in_quoted_text(data: bytes) -> bytes:
    assert b'"(50,100]"' in data  # a quoted range value of follow_user_num_range
    return data.replace(b'"(50,100]"', b'"(50,\r100]"')


def unparsable_tag_list(data: bytes) -> bytes:
    lines = data.rstrip(b"\n").split(b"\n")
    lines[1] = lines[1].split(b",", 1)[0] + b',"[27, x]"'
    return b"\n".join(lines) + b"\n"


def cold_test_user(raw: Path) -> None:
    """Remove every big_matrix view of the first small_matrix user: a test user with no history."""
    user = min(int(line.split(b",", 1)[0]) for line in _lines(raw / RawFiles.small_matrix)[1:])
    lines = _lines(raw / RawFiles.big_matrix)
    kept = [lines[0], *(line for line in lines[1:] if int(line.split(b",", 1)[0]) != user)]
    assert len(kept) < len(lines)
    _write_lines(raw / RawFiles.big_matrix, kept)


# --------------------------------------------------------------------------------------------
# Archives for the real-KuaiRec ingest path
# --------------------------------------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def kuairec_zip(path: Path, raw: Path, extra: dict[str, bytes] | None = None, big: bytes | None = None) -> Path:
    """A KuaiRec.zip laid out like the real one, with the headers of the tiny files (plus ``extra``)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in RawFiles.required:
            body = _lines(raw / name)[0] + b"\n"
            zf.writestr(KUAIREC_PREFIX + name, big if (big is not None and name == RawFiles.big_matrix) else body)
        for name, body in (extra or {}).items():
            zf.writestr(name, body)
    return path


def archive_params(archive: Path, expected_md5: str) -> dict[str, Any]:
    return {"data": {"source": "kuairec", "kuairec_archive": str(archive), "kuairec_md5": expected_md5}}


def setup_wrong_checksum(inputs: Path, base: Path) -> tuple[dict[str, Any], list[str]]:
    archive = kuairec_zip(inputs / "KuaiRec.zip", base / "data" / "raw")
    return archive_params(archive, "0" * 32), ["0" * 32, md5(archive.read_bytes()), "MD5 mismatch"]


def setup_truncated(inputs: Path, base: Path) -> tuple[dict[str, Any], list[str]]:
    archive = kuairec_zip(inputs / "KuaiRec.zip", base / "data" / "raw")
    full = archive.read_bytes()
    archive.write_bytes(full[: len(full) // 2])  # a download cut short, copied by hand
    return archive_params(archive, md5(full)), [md5(full), md5(full[: len(full) // 2]), "MD5 mismatch"]


def setup_missing_archive(inputs: Path, base: Path) -> tuple[dict[str, Any], list[str]]:
    return archive_params(inputs / "nowhere" / "KuaiRec.zip", "0" * 32), ["kuairec_archive", "file not found"]


def setup_zip_slip(inputs: Path, base: Path) -> tuple[dict[str, Any], list[str]]:
    evil = KUAIREC_PREFIX + "../../evil.csv"
    archive = kuairec_zip(inputs / "KuaiRec.zip", base / "data" / "raw", extra={evil: b"x\n"})
    return archive_params(archive, md5(archive.read_bytes())), ["zip slip", repr(evil)]


def setup_zip_bomb(inputs: Path, base: Path) -> tuple[dict[str, Any], list[str]]:
    header = _lines(base / "data" / "raw" / RawFiles.big_matrix)[0]
    row = b"0,0,0,0,2020-07-05 00:00:00.000,20200705,0.0,0.0\n"
    archive = kuairec_zip(inputs / "KuaiRec.zip", base / "data" / "raw", big=header + b"\n" + row * 20_000)
    return archive_params(archive, md5(archive.read_bytes())), ["compression ratio", "zip bomb", RawFiles.big_matrix]


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the docs/bad-input.md table.

    ``outcome``: ``refuse`` (exit 2, ``messages`` in stderr, no outputs), ``drop`` (exit 0,
    ``dropped`` = extra rows per table and reason in data_quality.json), ``repair`` (exit 0, same
    report as the untouched data, plus ``check``) or ``served`` (the whole chain runs; see
    :func:`check_served`). ``{line}`` in a message is the line number of the first appended row.
    """

    id: str
    stage: str
    outcome: str = "refuse"
    messages: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    params_text: str | None = None
    raw: Callable[[Path], None] | None = None  # mutates a copy of data/raw
    link: tuple[str, ...] = ()  # inputs linked from the base run
    # builds inputs in a folder beside the work folder from ``base``; returns extra params and messages
    setup: Callable[[Path, Path], tuple[dict[str, Any], list[str]]] | None = None
    argv: list[str] | None = None  # instead of the dvc.yaml command
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    check: Callable[[Path, Path], None] | None = None  # extra checks on (workdir, base)
    files: dict[str, str] = field(default_factory=dict)  # extra inputs written into the work folder
    xfail: str | None = None


def _check_cr_removed(workdir: Path, base: Path) -> None:
    users = pl.read_parquet(workdir / "data" / "prepared" / PreparedFiles.users)
    expected = pl.read_parquet(base / "data" / "prepared" / PreparedFiles.users)
    assert users.equals(expected)  # "(50,\r100]" became "(50,100]" again, no category of its own
    for column in USER_CATEGORICAL_COLUMNS:
        assert not any("\r" in c for c in users.schema[column].categories), column


def _check_same_bytes(workdir: Path, base: Path) -> None:
    for name in vars(PreparedFiles).values():
        if isinstance(name, str) and name.endswith(".parquet"):
            got = (workdir / "data" / "prepared" / name).read_bytes()
            assert got == (base / "data" / "prepared" / name).read_bytes(), name


def _bad(name: str, **values: str) -> Callable[[Path], None]:
    """Append to ``name`` one copy of its first row with ``values`` replaced."""
    return append_rows(name, lambda row: [_with(row, **values)])


CASES: list[Case] = [
    # ---- params.yaml: refused by reco/params.py at the start of the stage -------------------
    Case("params-unknown-key", "train_als@test", params={"als": {"factor": 8}},
         messages=("als.factor", "allowed keys in 'als'", "factors")),
    Case("params-unknown-section", "candidates@test", params={"alsx": {"factors": 8}},
         messages=("unknown section(s) alsx", "known:")),
    Case("params-not-yaml", "candidates@test", params_text="als: [factors: 8\n", messages=("params.yaml", "not valid YAML")),
    Case("params-wrong-type", "train_als@test", params={"als": {"factors": "many"}},
         messages=("als.factors = 'many'", "expected an integer")),
    Case("params-factors-not-positive", "train_als@test", params={"als": {"factors": 0}},
         messages=("als.factors = 0", "an integer in [1, 1024]")),
    Case("params-negative-alpha", "train_als@test", params={"als": {"alpha": -1.0}},
         messages=("als.alpha = -1.0", "a number >= 0")),
    Case("params-negative-regularization", "train_als@test", params={"als": {"regularization": -0.5}},
         messages=("als.regularization = -0.5", "a number >= 0")),
    Case("params-ks-empty", "evaluate@test", params={"evaluate": {"ks": []}},
         messages=("evaluate.ks = []", "a non-empty increasing list of integers >= 1")),
    Case("params-ks-non-positive", "evaluate@test", params={"evaluate": {"ks": [0, 5]}},
         messages=("evaluate.ks = [0, 5]", "integers >= 1")),
    Case("params-ks-not-integers", "evaluate@test", params={"evaluate": {"ks": [5, 7.5]}},
         messages=("evaluate.ks[1] = 7.5", "expected an integer")),
    # A K above the catalogue is no bad input (it is reported over the whole catalogue, with a note:
    # tests/evaluation/test_block_pipeline.py). evaluate may read only its own params sections: it
    # compares max(ks) with the `n` that the candidates stage wrote, up front.
    Case("params-candidates-n-below-max-k", "evaluate@test", params={"evaluate": {"ks": [5, 10, 50]}},
         link=("data/raw", "data/split"), files={"metrics/candidates/test.json": '{"n": 30, "recall_at_30": 0.5}'},
         messages=("candidates.n", "30", "max(evaluate.ks)", "50")),
    Case("params-candidates-n-not-positive", "candidates@test", params={"candidates": {"n": 0}},
         messages=("candidates.n = 0", "an integer in [1, 10000]")),
    Case("params-threshold-not-a-number", "split", params={"label": {"threshold": "high"}},
         messages=("label.threshold = 'high'", "a finite number")),
    Case("params-threshold-nan", "split", params={"label": {"threshold": float("nan")}},
         messages=("label.threshold = nan", "a finite number")),
    Case("params-unknown-source", "ingest", params={"data": {"source": "s3"}},
         messages=("data.source = 's3'", "one of 'simulate', 'kuairec'")),
    Case("params-unknown-protocol", "split", params={"split": {"protocol": "leave_one_out"}},
         messages=("split.protocol = 'leave_one_out'", "one of 'fully_observed', 'temporal'")),
    Case("params-unknown-objective", "train_ranker", params={"ranker": {"objective": "xendcg"}},
         messages=("ranker.objective = 'xendcg'", "one of 'lambdarank', 'binary'")),
    Case("params-http-url", "ingest", params={"data": {"kuairec_url": "http://example.com/KuaiRec.zip"}},
         messages=("data.kuairec_url = 'http://example.com/KuaiRec.zip'", "an https:// URL")),
    Case("params-negative-seed", "train_ranker", params={"ranker": {"seed": -1}},
         messages=("ranker.seed = -1", "an integer in [0, 2147483647]")),
    # ---- raw CSV files: checked by reco/data/prepare.py -------------------------------------
    Case("raw-missing-file", "prepare", raw=lambda raw: (raw / RawFiles.social_network).unlink(),
         messages=(RawFiles.social_network, "missing file", "data/raw")),
    Case("raw-empty-file", "prepare", raw=edit_file(RawFiles.user_features, lambda _: b""),
         messages=(RawFiles.user_features, "the file is empty")),
    Case("raw-missing-column", "prepare", raw=edit_file(RawFiles.small_matrix, drop_last_column),
         messages=(RawFiles.small_matrix, "missing column(s) ['watch_ratio']", "found [")),
    Case("raw-renamed-column", "prepare",
         raw=edit_file(RawFiles.big_matrix, lambda d: d.replace(b"video_id", b"item_id", 1)),
         messages=(RawFiles.big_matrix, "missing column(s) ['video_id']", "'item_id'")),
    Case("raw-text-in-watch-ratio", "prepare", raw=_bad(RawFiles.big_matrix, watch_ratio="abc"),
         messages=(RawFiles.big_matrix, "column 'watch_ratio' must be a number", "line {line}: 'abc'")),
    Case("raw-text-in-id", "prepare", raw=_bad(RawFiles.big_matrix, user_id="u42"),
         messages=(RawFiles.big_matrix, "column 'user_id' must be an int32 integer", "line {line}: 'u42'")),
    Case("raw-cr-inside-a-number", "prepare", raw=_bad(RawFiles.big_matrix, watch_ratio="1.5\r7"),
         messages=(RawFiles.big_matrix, "column 'watch_ratio'", "line {line}: '1.5\\r7'")),
    Case("raw-row-lost-a-field", "prepare",
         raw=append_rows(RawFiles.big_matrix, lambda row: [row.rsplit(b",", 1)[0]]),
         messages=(RawFiles.big_matrix, "do not have the header's 8 fields", "line {line}: 7 fields")),
    Case("raw-row-with-extra-field", "prepare", raw=append_rows(RawFiles.big_matrix, lambda row: [row + b",1"]),
         messages=(RawFiles.big_matrix, "do not have the header's 8 fields", "line {line}: 9 fields")),
    Case("raw-invalid-watch-ratio", "prepare", outcome="drop",
         raw=append_rows(RawFiles.big_matrix, lambda row: [
             _with(row, watch_ratio=v) for v in ("NaN", "inf", "-0.5", "")]),
         dropped={"big_matrix": {"invalid_watch_ratio": 4}}),
    Case("raw-non-positive-duration", "prepare", outcome="drop",
         raw=append_rows(RawFiles.big_matrix, lambda row: [
             _with(row, video_duration="0"), _with(row, video_duration="-1000")]),
         dropped={"big_matrix": {"non_positive_duration": 2}}),
    Case("raw-negative-play-duration", "prepare", outcome="drop",
         raw=_bad(RawFiles.big_matrix, play_duration="-5"), dropped={"big_matrix": {"invalid_play_duration": 1}}),
    Case("raw-exact-duplicates", "prepare", outcome="drop",
         raw=append_rows(RawFiles.small_matrix, lambda row: [row, row, row]),
         dropped={"small_matrix": {"exact_duplicate": 3}}),
    Case("raw-null-timestamp", "prepare", outcome="drop", raw=_bad(RawFiles.big_matrix, timestamp=""),
         dropped={"big_matrix": {"null_timestamp": 1}}),
    Case("raw-unknown-ids-few", "prepare", outcome="drop",
         raw=append_rows(RawFiles.big_matrix, lambda row: [
             _with(row, user_id="900001"), _with(row, video_id="900002")]),
         dropped={"big_matrix": {"unknown_id": 2}}),
    Case("raw-unknown-ids-many", "prepare",
         raw=append_rows(RawFiles.big_matrix, lambda row: [_with(row, user_id=str(900_000 + i)) for i in range(400)]),
         messages=(RawFiles.big_matrix, RawFiles.user_features, "the files do not belong together", "user_id=900000")),
    Case("raw-utf8-bom", "prepare", outcome="repair",
         raw=all_files(lambda data: b"\xef\xbb\xbf" + data), check=_check_same_bytes),
    Case("raw-crlf-line-endings", "prepare", outcome="repair",
         raw=all_files(lambda data: data.replace(b"\n", b"\r\n")), check=_check_same_bytes),
    Case("raw-stray-cr-in-quoted-text", "prepare", outcome="repair",
         raw=edit_file(RawFiles.user_features, stray_cr_in_quoted_text), check=_check_cr_removed),
    Case("raw-empty-after-cleaning", "prepare", raw=edit_file(RawFiles.small_matrix, only_invalid_rows),
         messages=(RawFiles.small_matrix, "no rows left after cleaning", "'invalid_watch_ratio'")),
    Case("raw-conflicting-side-rows", "prepare", raw=edit_file(RawFiles.user_features, conflicting_user),
         messages=(RawFiles.user_features, "column 'user_id'", "have different rows")),
    Case("raw-unparsable-list", "prepare", raw=edit_file(RawFiles.item_categories, unparsable_tag_list),
         messages=(RawFiles.item_categories, "column 'feat'", "line 2: '[27, x]'")),
    # ---- later stages ---------------------------------------------------------------------
    Case("test-user-without-history", "evaluate@test", outcome="served", raw=cold_test_user),
    Case("missing-upstream-output", "split", messages=("missing input", "data/prepared/big_matrix.parquet")),
    Case("stage-wrong-arguments", "train_als@test", argv=["-m", "stages.train_als", "data/split/train.parquet"],
         messages=("expected 2 argument(s)", "usage: python -m stages.train_als INTERACTIONS OUT_DIR")),
    # ---- the real KuaiRec archive (data.source: kuairec) -----------------------------------
    Case("archive-wrong-checksum", "ingest", setup=setup_wrong_checksum),
    Case("archive-truncated", "ingest", setup=setup_truncated),
    Case("archive-missing", "ingest", setup=setup_missing_archive),
    Case("archive-zip-slip", "ingest", setup=setup_zip_slip),
    Case("archive-zip-bomb", "ingest", setup=setup_zip_bomb),
]  # fmt: skip


def _params(case: Case) -> list[Any]:
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return [pytest.param(case, id=case.id, marks=marks)]


@pytest.mark.parametrize("case", [p for case in CASES for p in _params(case)])
def test_bad_input(case: Case, base: Path, tmp_path: Path) -> None:
    params, messages = dict(case.params), list(case.messages)
    if case.setup:
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        extra_params, extra_messages = case.setup(inputs, base)
        params, messages = merge_params(params, extra_params), messages + extra_messages
    workdir = make_workdir(
        base,
        tmp_path / "repo",
        params=params,
        params_text=case.params_text,
        copy=("data/raw",) if case.raw else (),
        link=case.link,
    )
    for rel, text in case.files.items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text(text, encoding="utf-8")
    line = None
    if case.raw:
        line = _first_new_line(workdir / "data" / "raw")
        case.raw(workdir / "data" / "raw")

    if case.outcome == "served":
        check_served(workdir)
    elif case.outcome == "refuse":
        result = run_stage(workdir, case.stage, case.argv)
        assert result.returncode == EXIT_BAD_INPUT, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        for message in messages:
            expected = message.format(line=line)
            assert expected in result.stderr, f"{expected!r} not in stderr:\n{result.stderr}"
        declared = outputs_of(case.stage)
        left = [path for path in declared if os.path.lexists(workdir / path) and path not in case.link]
        assert left == [], f"outputs left behind after a refusal: {left}"
    else:
        result = run_stage(workdir, case.stage, case.argv)
        assert result.returncode == 0, result.stderr
        check_quality_report(workdir, base, case)
    assert leftover_temporaries(workdir) == []


def check_quality_report(workdir: Path, base: Path, case: Case) -> None:
    """Exactly ``case.dropped`` more rows dropped than for the untouched data; nothing else changed."""
    report = json.loads((workdir / "metrics" / "data_quality.json").read_text())
    untouched = json.loads((base / "metrics" / "data_quality.json").read_text())
    extra = {
        table: {reason: n - untouched[table]["dropped"][reason] for reason, n in entry["dropped"].items()}
        for table, entry in report.items()
    }
    assert {t: {r: n for r, n in d.items() if n} for t, d in extra.items() if any(d.values())} == case.dropped
    for table in report:  # every appended bad row was dropped, every original row kept
        assert report[table]["kept"] == untouched[table]["kept"], table
    if case.outcome == "repair":
        assert report == untouched
    if case.check:
        case.check(workdir, base)


def check_served(workdir: Path) -> None:
    """The whole chain runs; the user without history gets popularity candidates and is counted."""
    for stage in UPSTREAM[1:3]:
        run_ok(workdir, stage)
    train = pl.read_parquet(workdir / "data" / "split" / "train.parquet")
    # the cold user falls in one of the two blocks (the split is stratified by training views)
    block = next(
        b for b in ("validation", "test")
        if pl.read_parquet(workdir / "data" / "split" / f"{b}.parquet").join(train, on=Columns.user, how="anti").height
    )  # fmt: skip
    for stage in [*UPSTREAM[3:5], f"candidates@{block}", "features@train", f"features@{block}", "train_ranker", f"evaluate@{block}"]:
        run_ok(workdir, stage)
    candidates = json.loads((workdir / "metrics" / "candidates" / f"{block}.json").read_text())
    assert candidates["users_unknown_to_als"] == 1
    metrics = json.loads((workdir / "metrics" / "blocks" / block / "metrics.json").read_text())
    assert metrics["data"]["users_unknown_to_als"] == 1
    cells = pl.read_parquet(workdir / "data" / "split" / f"{block}.parquet")
    cold = cells.join(train, on=Columns.user, how="anti")[Columns.user].unique()
    assert cold.len() == 1
    served = pl.read_parquet(workdir / "data" / "candidates" / f"{block}.parquet").filter(
        pl.col(Columns.user) == cold.item()
    )
    assert served.height == candidates["n"]  # a full list, from the popularity fallback
    top = pl.read_parquet(workdir / "data" / "evaluation" / block / "top_k.parquet")
    assert top.filter(pl.col(Columns.user) == cold.item()).height > 0


def test_every_readme_row_is_a_case() -> None:
    """The table of docs/bad-input.md and CASES list the same ids, so neither drifts from the other."""
    section = (REPO / "docs" / "bad-input.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE))
    assert documented == {case.id for case in CASES}


# --------------------------------------------------------------------------------------------
# Every params rule, in process (the table above runs a sample of them through the stages)
# --------------------------------------------------------------------------------------------

PARAMS_RULES = [
    ("data", "source", "s3", "one of 'simulate', 'kuairec'"),
    ("data", "profile", "huge", "one of 'tiny', 'small', 'full'"),
    ("data", "seed", -1, "an integer in [0, 2147483647]"),
    ("data", "scale", 0.0, "a number in [0.01, 10]"),
    ("data", "kuairec_url", "http://zenodo.org/KuaiRec.zip", "an https:// URL"),
    ("data", "kuairec_md5", "XYZ", "32 lowercase hex digits"),
    ("data", "kuairec_size", 0, "a positive byte count"),
    ("data", "kuairec_archive", 5, "a string or null"),
    ("data", "download_dir", " ", "a non-empty folder path"),
    ("split", "protocol", "leave_one_out", "one of 'fully_observed', 'temporal'"),
    ("split", "label_window_days", 0, "an integer in [1, 60]"),
    ("label", "threshold", "high", "a finite number"),
    ("label", "threshold", -1.0, "a finite number >= 0"),
    ("label", "threshold", float("inf"), "a finite number"),
    ("label", "graded_edges", [2.0, 1.0], "a non-empty increasing list"),
    ("label", "graded_edges", [], "a non-empty increasing list"),
    ("als", "factors", 0, "an integer in [1, 1024]"),
    ("als", "factors", 32.0, "an integer"),
    ("als", "factors", True, "an integer"),
    ("als", "regularization", -1.0, "a number >= 0"),
    ("als", "alpha", -0.1, "a number >= 0"),
    ("als", "negative_weight", -1.0, "a number >= 0"),
    ("als", "iterations", 0, "an integer in [1, 500]"),
    ("als", "confidence", "log", "one of 'binary', 'watch_ratio', 'log1p_watch_ratio', 'signed'"),
    ("als", "random_state", -5, "an integer in [0, 2147483647]"),
    ("als", "num_threads", 0, "an integer >= 1"),
    ("als", "use_gpu", "yes", "true or false"),
    ("candidates", "n", 0, "an integer in [1, 10000]"),
    ("candidates", "n", "200", "an integer"),
    ("features", "daily_window_days", 0, "an integer in [1, 90]"),
    ("features", "popularity_smoothing", -1.0, "a number >= 0"),
    ("ranker", "objective", "xendcg", "one of 'lambdarank', 'binary'"),
    ("ranker", "label", "soft", "one of 'graded', 'binary'"),
    ("ranker", "num_leaves", 1, "an integer in [2, 4096]"),
    ("ranker", "learning_rate", 0.0, "a number in (0, 1]"),
    ("ranker", "feature_fraction", 1.5, "a number in (0, 1]"),
    ("ranker", "valid_fraction", 1.0, "a number in (0, 1)"),
    ("ranker", "train_users", 5, "an integer >= 10"),
    ("ranker", "candidate_rank_pct", 0.0, "a number in (0, 1]"),
    ("ranker", "candidate_rank_pct", 1.5, "a number in (0, 1]"),
    ("ranker", "seed", 2**31, "an integer in [0, 2147483647]"),
    ("evaluate", "ks", [], "a non-empty increasing list of integers >= 1"),
    ("evaluate", "ks", [10, 5], "a non-empty increasing list of integers >= 1"),
    ("evaluate", "ks", [5, 5], "a non-empty increasing list of integers >= 1"),
    ("evaluate", "ks", [-1], "integers >= 1"),
    ("evaluate", "ks", 10, "a list of integers"),
    ("evaluate", "top_k_output", 0, "an integer >= 1"),
]


@pytest.mark.parametrize(("section", "key", "value", "allowed"), PARAMS_RULES)
def test_params_rule_names_key_value_and_what_is_allowed(section: str, key: str, value: Any, allowed: str) -> None:
    from reco.errors import ParamsError
    from reco.params import parse_section

    with pytest.raises(ParamsError) as excinfo:
        parse_section(section, {key: value})
    message = str(excinfo.value)
    assert f"{section}.{key}" in message and allowed in message, message
    assert f"{section}.{key} = {value!r} is invalid" in message, message


def test_the_repository_params_are_valid() -> None:
    from reco.params import SECTIONS, load_section

    for section in SECTIONS:
        load_section(section, REPO / "params.yaml")


# --------------------------------------------------------------------------------------------
# Safety: no pickle anywhere artifacts are read or written
# --------------------------------------------------------------------------------------------


def _python_files() -> list[Path]:
    return sorted(p for top in ("reco", "stages") for p in (REPO / top).rglob("*.py"))


def test_no_pickle_or_joblib_in_the_product() -> None:
    banned = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve"}
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not set(names) & banned, f"{path.relative_to(REPO)}:{node.lineno} imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in {"read_pickle", "to_pickle"}:
                    raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno} uses {node.func.attr}")


def test_every_np_load_refuses_pickles() -> None:
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id in {"np", "numpy"}:
                    flags = {kw.arg: kw.value for kw in node.keywords}
                    value = flags.get("allow_pickle")
                    assert isinstance(value, ast.Constant) and value.value is False, (
                        f"{path.relative_to(REPO)}:{node.lineno}: np.load without allow_pickle=False"
                    )
