"""One typed definition of ``params.yaml``, validated at the start of every stage.

Each section is a frozen dataclass; :func:`load_section` reads one section and rejects unknown keys, wrong
types and out-of-range values with a :class:`~reco.errors.ParamsError` that names the key, the value and
what is allowed. Stage scripts read only the sections they declare in ``dvc.yaml``. See
docs/design/core.md.

Examples
--------
>>> als = parse_section("als", {"factors": 32})
>>> als.factors, als.confidence
(32, 'signed')
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from reco.errors import ParamsError

PARAMS_FILE = "params.yaml"


def _fail(section: str, key: str, value: object, allowed: str) -> typing.NoReturn:
    raise ParamsError(f"params.yaml: {section}.{key} = {value!r} is invalid; expected {allowed}")


# numpy's SeedSequence refuses negative seeds and LightGBM stores its seed in a C int32.
SEED_MAX = 2**31 - 1


def _check_seed(section: str, key: str, value: int) -> None:
    if not 0 <= value <= SEED_MAX:
        _fail(section, key, value, f"an integer in [0, {SEED_MAX}]")


@dataclass(frozen=True)
class DataParams:
    """Where the raw KuaiRec files come from (stage ``ingest``)."""

    source: Literal["simulate", "kuairec"] = "simulate"
    profile: Literal["tiny", "small", "full"] = "full"
    seed: int = 20200705
    scale: float = 1.0  # multiplies the simulator's number of logged views (scaling benchmarks)
    story: Literal["latent_drift", "sessions"] = "latent_drift"  # the simulator's generative story
    kuairec_url: str = "https://zenodo.org/records/18164998/files/KuaiRec.zip"
    kuairec_md5: str = "261550d472c48eff4990fb13c0e5bcf7"
    kuairec_size: int = 431_964_858
    kuairec_archive: str | None = None  # an already downloaded KuaiRec.zip
    kuairec_dir: str | None = None  # an already extracted "KuaiRec 2.0/data" folder
    download_dir: str = "data/download"

    def validate(self) -> None:
        _check_seed("data", "seed", self.seed)
        if not 0.01 <= self.scale <= 10:
            _fail("data", "scale", self.scale, "a number in [0.01, 10]")
        # https only: MD5 catches damage, not a deliberate swap (it is not collision-resistant), so
        # the transport must be authenticated. Tests serving 127.0.0.1 over http bypass this with
        # dataclasses.replace; reco.data.download re-checks the scheme itself (loopback excepted).
        try:
            url = urllib.parse.urlsplit(self.kuairec_url)
            secure = url.scheme == "https" and bool(url.hostname)
        except ValueError:  # malformed, e.g. an unclosed IPv6 bracket
            secure = False
        if not secure:
            _fail("data", "kuairec_url", self.kuairec_url, "an https:// URL with a host name")
        if not self.download_dir.strip():
            _fail("data", "download_dir", self.download_dir, "a non-empty folder path")
        if len(self.kuairec_md5) != 32 or any(c not in "0123456789abcdef" for c in self.kuairec_md5):
            _fail("data", "kuairec_md5", self.kuairec_md5, "32 lowercase hex digits")
        if self.kuairec_size <= 0:
            _fail("data", "kuairec_size", self.kuairec_size, "a positive byte count")


@dataclass(frozen=True)
class SplitParams:
    """How interactions are split into training, ranker-label and test sets (stage ``split``)."""

    protocol: Literal["fully_observed", "temporal"] = "fully_observed"
    temporal_test_fraction: float = 0.2  # temporal: the last share of small_matrix views is the test
    # Which logged views become the ranker's labels: `holdout` (a random share of training pairs
    # across the whole period, like the test) or `last_days` (the last label_window_days).
    ranker_labels: Literal["holdout", "last_days"] = "holdout"
    holdout_fraction: float = 0.2  # `holdout`: share of training (user, video) pairs held out
    label_window_days: int = 5  # `last_days`: the last days of big_matrix whose views train the ranker
    seed: int = 42  # `holdout`: which pairs are held out; also the validation/test user draw
    # Share of small_matrix's users in the fully observed *validation* block (stratified by
    # activity); the rest are the test block. Every setting is chosen on validation.
    validation_users: float = 0.5

    def validate(self) -> None:
        if not 0.1 <= self.validation_users <= 0.9:
            _fail("split", "validation_users", self.validation_users, "a number in [0.1, 0.9]")
        if not 0.05 <= self.temporal_test_fraction <= 0.5:
            _fail("split", "temporal_test_fraction", self.temporal_test_fraction, "a number in [0.05, 0.5]")
        if not 0.01 <= self.holdout_fraction <= 0.5:
            _fail("split", "holdout_fraction", self.holdout_fraction, "a number in [0.01, 0.5]")
        if not 1 <= self.label_window_days <= 60:
            _fail("split", "label_window_days", self.label_window_days, "an integer in [1, 60]")
        _check_seed("split", "seed", self.seed)


@dataclass(frozen=True)
class LabelParams:
    """What counts as a positive view."""

    # threshold: positive when watch_ratio > threshold; duration_debiased: above the
    # debiased_quantile of training views of similar length (see reco/data/labels.py).
    kind: Literal["threshold", "duration_debiased"] = "threshold"
    threshold: float = 2.0  # positive: watch_ratio > threshold (the KuaiRec authors' suggestion)
    # Graded relevance: the number of these edges a view's label ratio exceeds (0..len(edges)).
    graded_edges: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    debiased_quantile: float = 0.95  # duration_debiased: per-bucket quantile of training watch ratios
    duration_buckets: int = 8  # log-spaced duration buckets (fitted on training data)

    def validate(self) -> None:
        if not math.isfinite(self.threshold) or self.threshold < 0:
            _fail("label", "threshold", self.threshold, "a finite number >= 0")
        if not 0.5 <= self.debiased_quantile < 1.0:
            _fail("label", "debiased_quantile", self.debiased_quantile, "a number in [0.5, 1)")
        if not 2 <= self.duration_buckets <= 50:
            _fail("label", "duration_buckets", self.duration_buckets, "an integer in [2, 50]")
        edges = list(self.graded_edges)
        if not edges or edges != sorted(set(edges)) or edges[0] < 0:
            _fail("label", "graded_edges", edges, "a non-empty increasing list of numbers >= 0")


@dataclass(frozen=True)
class AlsParams:
    """implicit ALS (stage ``train_als``)."""

    factors: int = 32
    regularization: float = 1000.0
    alpha: float = 50.0  # confidence of a positive view = 1 + alpha * value
    negative_weight: float = 250.0  # `signed` only: confidence of a shown-but-not-positive view
    iterations: int = 15
    confidence: Literal["binary", "watch_ratio", "log1p_watch_ratio", "signed"] = "signed"
    random_state: int = 42
    num_threads: int = 2
    use_gpu: bool = False
    loss_every: int = 5  # record the training loss every this many iterations (and after the last)

    def validate(self) -> None:
        if not 1 <= self.factors <= 1024:
            _fail("als", "factors", self.factors, "an integer in [1, 1024]")
        if self.regularization < 0:
            _fail("als", "regularization", self.regularization, "a number >= 0")
        if self.alpha < 0:
            _fail("als", "alpha", self.alpha, "a number >= 0")
        if self.negative_weight < 0:
            _fail("als", "negative_weight", self.negative_weight, "a number >= 0")
        if not 1 <= self.iterations <= 500:
            _fail("als", "iterations", self.iterations, "an integer in [1, 500]")
        if self.num_threads < 1:
            _fail("als", "num_threads", self.num_threads, "an integer >= 1")
        if self.loss_every < 1:
            _fail("als", "loss_every", self.loss_every, "an integer >= 1")
        _check_seed("als", "random_state", self.random_state)


@dataclass(frozen=True)
class CandidatesParams:
    """Candidate generation (stage ``candidates``): ``n`` per user, from ALS and the other sources' quotas.

    ``popularity_quota`` and ``tag_popularity_quota`` of the ``n`` come from those sources (videos
    not already in the list); ALS fills the rest (:attr:`als_quota`). See docs/design/models.md.
    """

    n: int = 200
    popularity_quota: int = 0  # from the popularity baseline's list
    tag_popularity_quota: int = 0  # from the user's favourite tags' popular videos

    @property
    def als_quota(self) -> int:
        """The list's places ALS fills: ``n`` minus the other sources' quotas."""
        return self.n - self.popularity_quota - self.tag_popularity_quota

    def validate(self) -> None:
        if not 1 <= self.n <= 10_000:
            _fail("candidates", "n", self.n, "an integer in [1, 10000]")
        for key in ("popularity_quota", "tag_popularity_quota"):
            if not 0 <= getattr(self, key) <= self.n:
                _fail("candidates", key, getattr(self, key), f"an integer in [0, candidates.n = {self.n}]")
        if self.als_quota < 0:
            _fail(
                "candidates",
                "tag_popularity_quota",
                self.tag_popularity_quota,
                f"at most candidates.n - candidates.popularity_quota = {self.n - self.popularity_quota} "
                "(the quotas share the list's n places)",
            )


@dataclass(frozen=True)
class FeaturesParams:
    """Feature building (stage ``features``)."""

    daily_window_days: int = 7  # item_daily_features aggregated over this many days before the cut
    popularity_smoothing: float = 50.0  # pseudo-views pulling item rates toward the global rate

    def validate(self) -> None:
        if not 1 <= self.daily_window_days <= 90:
            _fail("features", "daily_window_days", self.daily_window_days, "an integer in [1, 90]")
        if self.popularity_smoothing < 0:
            _fail("features", "popularity_smoothing", self.popularity_smoothing, "a number >= 0")


# The ranker's feature families (reco.models.feature_groups says which feature is in which); the selection
# ablates them through ranker.exclude_groups.
FEATURE_GROUPS: tuple[str, ...] = ("als", "user_history", "item_history", "daily", "tags", "duration", "profile", "author")


@dataclass(frozen=True)
class RankerParams:
    """LightGBM ranker (stage ``train_ranker``)."""

    objective: Literal["lambdarank", "binary"] = "lambdarank"
    label: Literal["graded", "binary"] = "graded"
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    early_stopping_rounds: int = 30
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambdarank_truncation_level: int = 20
    max_bin: int = 63
    train_users: int = 3000  # users sampled from the ranker labels (cost grows with rows)
    # Keep only labelled pairs ranked this high by the history ALS (rank percentile, 0 = top):
    # the ranker then learns on the kind of rows the candidates stage hands it. 1.0 keeps all.
    candidate_rank_pct: float = 1.0
    valid_fraction: float = 0.2  # user-disjoint validation share for early stopping
    seed: int = 42
    num_threads: int = 2
    exclude_groups: tuple[str, ...] = ()  # feature groups the ranker leaves out (an ablation)

    def validate(self) -> None:
        if not set(self.exclude_groups) <= set(FEATURE_GROUPS) or len(set(self.exclude_groups)) == len(FEATURE_GROUPS):
            _fail("ranker", "exclude_groups", list(self.exclude_groups), f"a list of some (not all) of {list(FEATURE_GROUPS)}")
        if not 2 <= self.num_leaves <= 4096:
            _fail("ranker", "num_leaves", self.num_leaves, "an integer in [2, 4096]")
        if not 0 < self.learning_rate <= 1:
            _fail("ranker", "learning_rate", self.learning_rate, "a number in (0, 1]")
        if self.n_estimators < 1:
            _fail("ranker", "n_estimators", self.n_estimators, "an integer >= 1")
        if self.early_stopping_rounds < 1:
            _fail("ranker", "early_stopping_rounds", self.early_stopping_rounds, "an integer >= 1")
        if self.min_data_in_leaf < 1:
            _fail("ranker", "min_data_in_leaf", self.min_data_in_leaf, "an integer >= 1")
        for key in ("feature_fraction", "bagging_fraction"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                _fail("ranker", key, value, "a number in (0, 1]")
        if self.lambdarank_truncation_level < 1:
            _fail("ranker", "lambdarank_truncation_level", self.lambdarank_truncation_level, "an integer >= 1")
        if not 2 <= self.max_bin <= 1024:
            _fail("ranker", "max_bin", self.max_bin, "an integer in [2, 1024]")
        if self.train_users < 10:
            _fail("ranker", "train_users", self.train_users, "an integer >= 10")
        if not 0 < self.candidate_rank_pct <= 1:
            _fail("ranker", "candidate_rank_pct", self.candidate_rank_pct, "a number in (0, 1]")
        if not 0 < self.valid_fraction < 1:
            _fail("ranker", "valid_fraction", self.valid_fraction, "a number in (0, 1)")
        if self.num_threads < 1:
            _fail("ranker", "num_threads", self.num_threads, "an integer >= 1")
        _check_seed("ranker", "seed", self.seed)


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluation (stage ``evaluate``)."""

    ks: tuple[int, ...] = (5, 10, 20, 50, 100)
    seed: int = 42  # for the random baseline and the bootstrap resampling
    popularity_smoothing: float = 50.0
    top_k_output: int = 50  # length of each user's list in the recommendations file
    bootstrap_samples: int = 1000  # resamples of the test users for the 95% intervals

    def validate(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            _fail("evaluate", "ks", list(self.ks), "a non-empty increasing list of integers >= 1")
        _check_seed("evaluate", "seed", self.seed)
        if not 10 <= self.bootstrap_samples <= 20_000:
            _fail("evaluate", "bootstrap_samples", self.bootstrap_samples, "an integer in [10, 20000]")
        if self.popularity_smoothing < 0:
            _fail("evaluate", "popularity_smoothing", self.popularity_smoothing, "a number >= 0")
        if self.top_k_output < 1:
            _fail("evaluate", "top_k_output", self.top_k_output, "an integer >= 1")


@dataclass(frozen=True)
class SeedSpreadParams:
    """The seeds the headline models are retrained with (stage ``seed_spread``); empty: skip.

    One seed is allowed (the selection screens configurations on one seed run); its spread has no std.
    """

    seeds: tuple[int, ...] = (1, 2, 3)

    def validate(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            _fail("seed_spread", "seeds", list(self.seeds), "a list of distinct seeds (empty: skip the seed runs)")
        for seed in self.seeds:
            _check_seed("seed_spread", "seeds", seed)


@dataclass(frozen=True)
class ComputeParams:
    """Where the per-user work and the ranker's training run (read only by the stages that use it).

    ``engine: local`` runs in the stage's own process. ``engine: dask`` runs the per-user work as
    Dask tasks over ``user_partitions`` user partitions and trains the ranker with LightGBM's own
    distributed training; ``scheduler: null`` starts a ``distributed.LocalCluster`` of
    ``workers`` processes x ``threads_per_worker`` threads for the stage, an address such as
    ``tcp://10.0.0.5:8786`` uses an existing cluster.
    """

    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    user_partitions: int = 8

    def validate(self) -> None:
        if not 1 <= self.workers <= 1024:
            _fail("compute", "workers", self.workers, "an integer in [1, 1024]")
        if not 1 <= self.threads_per_worker <= 256:
            _fail("compute", "threads_per_worker", self.threads_per_worker, "an integer in [1, 256]")
        if not 1 <= self.user_partitions <= 4096:
            _fail("compute", "user_partitions", self.user_partitions, "an integer in [1, 4096]")
        if self.scheduler is not None:
            try:
                url = urllib.parse.urlsplit(self.scheduler)
                valid = url.scheme in ("tcp", "tls", "inproc", "ucx") and bool(url.hostname or url.scheme == "inproc")
            except ValueError:
                valid = False
            if not valid:
                _fail("compute", "scheduler", self.scheduler, "null (start a LocalCluster) or an address such as tcp://host:8786")


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "split": SplitParams,
    "label": LabelParams,
    "als": AlsParams,
    "candidates": CandidatesParams,
    "features": FeaturesParams,
    "ranker": RankerParams,
    "evaluate": EvaluateParams,
    "seed_spread": SeedSpreadParams,
    "compute": ComputeParams,
}


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(item, _describe(item))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}.get(
        hint, str(hint)
    )


def _coerce(section: str, key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to the type ``hint`` or raise a ParamsError naming the key."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value in typing.get_args(hint):
            return value
        _fail(section, key, value, _describe(hint))
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(section, key, value, option)
            except ParamsError:
                continue
        _fail(section, key, value, _describe(hint))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(section, key, value, _describe(hint))
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(section, f"{key}[{i}]", item, item_hint) for i, item in enumerate(value))
    if hint is type(None):
        if value is None:
            return None
        _fail(section, key, value, "null")
    if hint is bool:
        if isinstance(value, bool):
            return value
        _fail(section, key, value, "true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        _fail(section, key, value, "an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        _fail(section, key, value, "a finite number")
    if hint is str:
        if isinstance(value, str):
            return value
        _fail(section, key, value, "a string")
    raise TypeError(f"unsupported params type {hint!r} for {section}.{key}")  # a bug, not bad input


def parse_section(section: str, values: Mapping[str, Any] | None) -> Any:
    """Build and validate the dataclass of ``section`` from a mapping (missing keys take defaults)."""
    if section not in SECTIONS:
        raise ParamsError(f"params.yaml: unknown section {section!r}; known sections: {', '.join(SECTIONS)}")
    cls = SECTIONS[section]
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ParamsError(f"params.yaml: section {section!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"allowed keys in {section!r}: {', '.join(sorted(known))}"
        )
    kwargs = {key: _coerce(section, key, value, hints[key]) for key, value in values.items()}
    parsed = cls(**kwargs)
    parsed.validate()
    return parsed


def read_params_file(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read ``params.yaml`` as a mapping of sections."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    unknown = sorted(set(loaded) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return loaded


def load_section(section: str, path: str | Path = PARAMS_FILE) -> Any:
    """Read and validate one section of ``params.yaml``."""
    return parse_section(section, read_params_file(path).get(section))


def as_dict(params: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a params dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


__all__ = [
    "AlsParams",
    "CandidatesParams",
    "ComputeParams",
    "DataParams",
    "EvaluateParams",
    "FeaturesParams",
    "LabelParams",
    "RankerParams",
    "SeedSpreadParams",
    "SplitParams",
    "as_dict",
    "load_section",
    "parse_section",
    "read_params_file",
]
