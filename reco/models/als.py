"""Implicit-feedback ALS (the first stage): confidence matrix, fit, save/load and scoring.

:func:`fit_als` builds the users x items confidence matrix (``als.confidence``; by default logged views
that are not positive count as negative feedback) one chunk of users at a time, fits implicit's ALS in
float64 and rounds the factors to a fixed grid, so the saved factors, and every score computed from them,
are the same on every CPU whatever the BLAS kernel. See docs/same-results.md and docs/design/models.md.

Examples
--------
>>> import polars as pl
>>> from reco.params import parse_section
>>> frame = pl.DataFrame(
...     {"user_id": [1, 1, 2, 3], "video_id": [10, 20, 10, 30], "watch_ratio": [2.5, 0.4, 3.0, 1.2]},
...     schema={"user_id": pl.Int32, "video_id": pl.Int32, "watch_ratio": pl.Float32},
... )
>>> params = parse_section("als", {"factors": 4, "iterations": 2, "num_threads": 1})
>>> model, matrix = fit_als(frame, params, threshold=2.0)
>>> matrix.shape, model.user_factors.shape, model.item_ids.ids.tolist()
((3, 3), (3, 4), [10, 20, 30])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import scipy.sparse  # noqa: E402

from reco.data.labels import CHUNK_ROWS, iter_user_chunks, labelled_ratio  # noqa: E402
from reco.errors import InputDataError, ParamsError  # noqa: E402
from reco.io import atomic_dir, read_npy, write_json, write_npy  # noqa: E402
from reco.params import AlsParams, as_dict  # noqa: E402
from reco.progress import report  # noqa: E402
from reco.schema import Columns  # noqa: E402

CONFIDENCE_KINDS: Final[tuple[str, ...]] = ("binary", "watch_ratio", "log1p_watch_ratio", "signed")
# The columns of a training set that ALS reads (the train_als stage and the seed spread scan these).
INPUT_COLUMNS: Final[tuple[str, ...]] = (Columns.user, Columns.item, Columns.watch_ratio, Columns.label_ratio)
WATCH_RATIO_CAP: Final = 10.0  # cap of ``v`` for the ``watch_ratio`` confidence

USER_FACTORS_FILE: Final = "user_factors.npy"
ITEM_FACTORS_FILE: Final = "item_factors.npy"
USER_IDS_FILE: Final = "user_ids.npy"
ITEM_IDS_FILE: Final = "item_ids.npy"
LOSS_FILE: Final = "loss.json"
META_FILE: Final = "meta.json"
MODEL_FILES: Final[tuple[str, ...]] = (
    USER_FACTORS_FILE,
    ITEM_FACTORS_FILE,
    USER_IDS_FILE,
    ITEM_IDS_FILE,
    LOSS_FILE,
    META_FILE,
)

FACTOR_GRID_BITS: Final = 16  # factors are stored as multiples of 2**-16 (see docs/design/models.md)
FACTOR_LIMIT: Final = 8.0  # |factor| < 8 keeps every score an exact float64 (2**-32 units below 2**53)
LOSS_DIGITS: Final = 10  # significant digits of the recorded training loss

_INT32 = np.iinfo(np.int32)
_PAIR_CHUNK = 1 << 20  # pairs scored per chunk in score_pairs (bounds the gathered factor rows)
_LUT_MIN_QUERIES = 4096  # IdMap.index_of: below this many look-ups, searchsorted is cheap enough
_LUT_MAX_SPAN_RATIO = 4  # ... and a lookup table is used only if the id range is this compact


@dataclass(frozen=True, eq=False)
class IdMap:
    """Sorted unique int32 external ids; position in ``ids`` = row/column in the matrices.

    Parameters
    ----------
    ids
        Strictly increasing int32 external ids (stored read-only).

    Examples
    --------
    >>> m = IdMap.from_values(np.array([30, 10, 20, 10]))
    >>> m.ids.tolist(), m.index_of(np.array([20, 99, 10])).tolist()
    ([10, 20, 30], [1, -1, 0])
    """

    ids: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.dtype != np.int32:
            raise TypeError(f"IdMap ids must be a 1-D int32 array, got {ids.dtype} with shape {ids.shape}")
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError("IdMap ids must be strictly increasing (sorted and unique); use IdMap.from_values")
        ids = ids.copy()
        ids.setflags(write=False)
        object.__setattr__(self, "ids", ids)

    @classmethod
    def from_values(cls, values: np.ndarray | pl.Series) -> IdMap:
        """Build the map of the distinct values (any integer dtype within the int32 range)."""
        array = np.asarray(values)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {array.dtype}")
        unique = np.unique(array.ravel())
        if unique.size and (unique[0] < _INT32.min or unique[-1] > _INT32.max):
            raise ValueError(f"ids out of the int32 range: min {unique[0]}, max {unique[-1]}")
        return cls(unique.astype(np.int32))

    def __len__(self) -> int:
        return int(self.ids.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]

    def index_of(self, external: np.ndarray | pl.Series) -> np.ndarray:
        """Positions (int32, same shape as ``external``) of external ids; ``-1`` where unknown.

        Uses ``np.searchsorted``; when the ids span a compact range (KuaiRec's are ``0..n``), a
        lookup table is used instead (same result, O(n) instead of O(n log m) for big inputs).
        """
        ext = np.asarray(external)
        if ext.size and not np.issubdtype(ext.dtype, np.integer):
            raise TypeError(f"external ids must be integers, got dtype {ext.dtype}")
        if ext.size == 0 or self.ids.size == 0:
            return np.full(ext.shape, -1, dtype=np.int32)
        ext = ext.astype(np.int64, copy=False)
        low = int(self.ids[0])
        span = int(self.ids[-1]) - low + 1
        if ext.size >= _LUT_MIN_QUERIES and span <= _LUT_MAX_SPAN_RATIO * max(self.ids.size, ext.size):
            table = np.full(span, -1, dtype=np.int32)
            table[self.ids.astype(np.int64) - low] = np.arange(self.ids.size, dtype=np.int32)
            offset = ext - low
            inside = (offset >= 0) & (offset < span)
            return np.where(inside, table[np.where(inside, offset, 0)], -1).astype(np.int32, copy=False)
        pos = np.minimum(np.searchsorted(self.ids, ext), self.ids.size - 1)
        return np.where(self.ids[pos] == ext, pos, -1).astype(np.int32)


@dataclass
class AlsModel:
    """Fitted ALS factors with the id maps of their rows.

    ``user_factors[i]`` belongs to external user ``user_ids.ids[i]`` (same for items).
    ``params`` holds the fit's settings (written to ``meta.json``).
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_ids: IdMap
    item_ids: IdMap
    training_loss: dict[int, float]  # iteration (1-based) -> training loss, every ``als.loss_every`` iterations
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, factors, ids in (
            ("user", self.user_factors, self.user_ids),
            ("item", self.item_factors, self.item_ids),
        ):
            if factors.ndim != 2 or factors.dtype != np.float32:
                raise TypeError(f"{name}_factors must be a 2-D float32 array, got {factors.dtype} {factors.shape}")
            if factors.shape[0] != len(ids):
                raise ValueError(f"{name}_factors has {factors.shape[0]} rows but {name}_ids has {len(ids)} ids")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError(
                f"user and item factors differ in width: {self.user_factors.shape[1]} != {self.item_factors.shape[1]}"
            )

    @property
    def factors(self) -> int:
        """Number of latent factors."""
        return int(self.user_factors.shape[1])


def _check_interactions(interactions: pl.DataFrame) -> None:
    needed = (Columns.user, Columns.item, Columns.watch_ratio)
    missing = [c for c in needed if c not in interactions.columns]
    if missing:
        raise InputDataError(
            "interactions", f"missing column(s) {missing}; expected {list(needed)}, got {interactions.columns}"
        )
    for column in (Columns.user, Columns.item):
        if not interactions.schema[column].is_integer():
            raise InputDataError("interactions", f"column {column!r} must be integer, got {interactions.schema[column]}")
    ratio = pl.col(Columns.watch_ratio).cast(pl.Float64)
    bad = interactions.filter(
        pl.any_horizontal(pl.col(Columns.user, Columns.item).is_null())
        | ratio.is_null()
        | ratio.is_nan()
        | ratio.is_infinite()
        | (ratio < 0)
    )
    if bad.height:
        raise InputDataError(
            "interactions",
            f"{bad.height} row(s) with a null id or a null/NaN/infinite/negative {Columns.watch_ratio!r}; "
            f"first rows:\n{bad.head(5)}",
        )


def _confidence_pairs(
    interactions: pl.DataFrame, confidence: str, threshold: float, alpha: float, negative_weight: float = 0.0
) -> pl.DataFrame:
    """Aggregated (user, item, confidence) pairs kept in the matrix (``v != 0``), unordered."""
    if confidence not in CONFIDENCE_KINDS:
        raise ParamsError(f"params.yaml: als.confidence = {confidence!r} is invalid; expected one of {CONFIDENCE_KINDS}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ParamsError(f"params.yaml: als.alpha = {alpha!r} is invalid; expected a number >= 0")
    _check_interactions(interactions)
    # One aggregate per pair, of the only ratio the kind reads: binary/signed positives follow the
    # label rule (split's label_ratio; plain watch_ratio for raw frames), the others the watch ratio.
    if confidence in ("binary", "signed"):
        per_pair = labelled_ratio(interactions).max()
        negative = 0.0 if confidence == "binary" else -1.0
        value = pl.when(pl.col("_ratio") > threshold).then(pl.lit(1.0)).otherwise(pl.lit(negative))
    else:
        per_pair = pl.col(Columns.watch_ratio).cast(pl.Float64).max()
        ratio = pl.col("_ratio")
        value = pl.min_horizontal(ratio, pl.lit(WATCH_RATIO_CAP)) if confidence == "watch_ratio" else ratio.log1p()
    return (
        interactions.lazy()
        .group_by(Columns.user, Columns.item)
        .agg(per_pair.alias("_ratio"))
        .with_columns(value.alias("v"))
        .filter(pl.col("v") != 0)
        .select(
            pl.col(Columns.user),
            pl.col(Columns.item),
            pl.when(pl.col("v") > 0)
            .then(1.0 + alpha * pl.col("v"))
            .otherwise(-(1.0 + negative_weight))
            .cast(pl.Float32)
            .alias(Columns.score),
        )
        .collect()
    )


def _pairs_to_csr(pairs: pl.DataFrame, user_ids: IdMap, item_ids: IdMap) -> scipy.sparse.csr_matrix:
    rows = user_ids.index_of(pairs[Columns.user].to_numpy())
    cols = item_ids.index_of(pairs[Columns.item].to_numpy())
    data = pairs[Columns.score].to_numpy().astype(np.float32, copy=False)
    known = (rows >= 0) & (cols >= 0)
    # COO -> CSR is an O(nnz) counting sort in scipy (cheaper than a lexsort of the pairs).
    matrix = scipy.sparse.coo_matrix(
        (data[known], (rows[known], cols[known])), shape=(len(user_ids), len(item_ids)), dtype=np.float32
    ).tocsr()
    matrix.sort_indices()
    return matrix


def _confidence_matrix_by_user(
    interactions: pl.LazyFrame,
    confidence: str,
    threshold: float,
    alpha: float,
    negative_weight: float,
    chunk_rows: int,
) -> tuple[scipy.sparse.csr_matrix, IdMap, IdMap, int]:
    """The confidence matrix of a lazy, user-sorted interaction table, read a chunk of whole users at a time.

    Returns the matrix, its id maps (the users and items of the kept pairs) and the number of
    rows read. Memory holds one chunk of views and the kept pairs (12 bytes each), never all
    the views.
    """
    names = interactions.collect_schema().names()
    needed = (Columns.user, Columns.item, Columns.watch_ratio)
    if missing := [c for c in needed if c not in names]:
        raise InputDataError("interactions", f"missing column(s) {missing}; expected {list(needed)}, got {names}")
    columns = [*needed, *([Columns.label_ratio] if Columns.label_ratio in names else [])]
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    n_rows = 0
    for number, chunk in enumerate(iter_user_chunks(interactions.select(columns), chunk_rows), 1):
        report(f"confidence matrix: user chunk {number}")
        n_rows += chunk.height
        # A pair's views all lie in its user's chunk, so the chunk's pairs are final.
        pairs = _confidence_pairs(chunk, confidence, threshold, alpha, negative_weight).sort(Columns.user, Columns.item)
        users.append(pairs[Columns.user].to_numpy().astype(np.int32))
        items.append(pairs[Columns.item].to_numpy().astype(np.int32))
        scores.append(pairs[Columns.score].to_numpy().astype(np.float32))
        del chunk, pairs
    all_users = np.concatenate(users) if users else np.array([], dtype=np.int32)
    users.clear()
    # Pairs arrive sorted by (user, item) (chunks follow the users), so they already are the CSR
    # arrays: no COO -> CSR conversion, which would sort them and hold them twice more.
    starts = np.flatnonzero(np.concatenate(([True], all_users[1:] != all_users[:-1]))) if all_users.size else all_users
    user_ids = IdMap(all_users[starts])
    del all_users
    distinct_items = [np.unique(part) for part in items]
    item_ids = IdMap.from_values(np.concatenate(distinct_items) if items else np.array([], np.int32))
    indices = np.concatenate([item_ids.index_of(part) for part in items]) if items else np.array([], np.int32)
    items.clear()
    data = np.concatenate(scores) if scores else np.array([], np.float32)
    scores.clear()
    index_dtype = np.int32 if data.size < np.iinfo(np.int32).max else np.int64
    indptr = np.append(starts, data.size).astype(index_dtype)
    matrix = scipy.sparse.csr_matrix(
        (data, indices.astype(index_dtype, copy=False), indptr), shape=(len(user_ids), len(item_ids)), copy=False
    )
    matrix.sort_indices()  # already sorted: only checked and flagged, as _pairs_to_csr leaves it
    return matrix, user_ids, item_ids, n_rows


def build_confidence_matrix(
    interactions: pl.DataFrame,
    user_ids: IdMap,
    item_ids: IdMap,
    confidence: str,
    threshold: float,
    alpha: float,
    negative_weight: float = 0.0,
) -> scipy.sparse.csr_matrix:
    """Users x items float32 CSR of confidences ``1 + alpha * v`` (see docs/design/models.md).

    Parameters
    ----------
    interactions
        Columns ``Columns.user``, ``Columns.item`` (integers) and ``Columns.watch_ratio``
        (finite, >= 0); several rows per pair allowed (aggregated with max watch ratio).
    user_ids, item_ids
        Row and column maps. Pairs whose user or item is not in the maps are dropped.
    confidence
        ``"binary"``, ``"watch_ratio"``, ``"log1p_watch_ratio"`` or ``"signed"``.
    threshold
        Only used by ``binary``: pairs with ``watch_ratio > threshold`` are kept (``-inf``
        keeps every observed pair, e.g. to build a "seen" matrix with ``alpha=0``).
    alpha
        Confidence slope, >= 0.
    negative_weight
        Only used by ``signed``: confidence of a logged non-positive view (stored negated).

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(len(user_ids), len(item_ids))``, float32, sorted int32 indices, no duplicates.

    Examples
    --------
    >>> frame = pl.DataFrame({"user_id": [5, 5, 7], "video_id": [1, 1, 2], "watch_ratio": [0.5, 3.0, 1.0]})
    >>> users, items = IdMap.from_values(np.array([5, 7])), IdMap.from_values(np.array([1, 2]))
    >>> build_confidence_matrix(frame, users, items, "binary", threshold=2.0, alpha=4.0).toarray()
    array([[5., 0.],
           [0., 0.]], dtype=float32)
    """
    pairs = _confidence_pairs(interactions, confidence, threshold, alpha, negative_weight)
    return _pairs_to_csr(pairs, user_ids, item_ids)


def _require_cuda() -> None:
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        raise ParamsError(
            "params.yaml: als.use_gpu = true but implicit has no usable CUDA support on this machine "
            "(implicit.gpu.HAS_CUDA is False: no GPU, or the GPU extension failed to load; implicit 0.7.3 "
            "needs rmm-cu13==26.4.*). Set als.use_gpu: false to fit on the CPU."
        )


LOSS_BLOCKS: Final = 8  # fixed, so the summation order (and loss.json) does not depend on num_threads


def blocked_training_loss(
    matrix: scipy.sparse.csr_matrix, regularization: float, num_threads: int
) -> Callable[[np.ndarray, np.ndarray], float]:
    """implicit's CPU training loss of ``matrix`` as a function of the factors, summed in a fixed order.

    ``implicit.cpu._als.calculate_loss`` accumulates over OpenMP threads in a timing-dependent
    order, so with several threads its value changes in the last digits from run to run. Here the
    users are cut into ``LOSS_BLOCKS`` row blocks of about equal non-zeros; each block is scored
    single-threaded (the kernel releases the GIL, so ``num_threads`` blocks run at once) and the
    block sums are added in block order: the same value on every run and for any thread count.
    It equals implicit's single-threaded loss up to float64 rounding (~1e-13 relative).

    ``calculate_loss`` returns ``(loss_b + reg * (|Y|^2 + |X_b|^2)) / (C_b + n_b * m - nnz_b)``
    for a block (``C_b``: its total |confidence|); the numerators without the shared ``reg * |Y|^2``
    and the denominators add up across blocks. The blocks and their denominators depend on the
    matrix only, so they are built once here and reused at every iteration.
    """
    from concurrent.futures import ThreadPoolExecutor

    from implicit.cpu import _als as implicit_cpu_als

    cuts = np.searchsorted(matrix.indptr, np.linspace(0, matrix.nnz, LOSS_BLOCKS + 1)[1:-1])
    edges = [0, *cuts.tolist(), matrix.shape[0]]
    blocks = [
        (start, stop, rows, float(np.abs(rows.data).sum(dtype=np.float64)) + rows.shape[0] * rows.shape[1] - rows.nnz)
        for start, stop in zip(edges[:-1], edges[1:], strict=True)
        if stop > start
        for rows in [matrix[start:stop]]
    ]
    denominator = sum(block[3] for block in blocks)

    def loss(user_factors: np.ndarray, item_factors: np.ndarray) -> float:
        item_norm = float(np.einsum("ij,ij->", item_factors, item_factors, dtype=np.float64))

        def block_numerator(block: tuple[int, int, scipy.sparse.csr_matrix, float]) -> float:
            start, stop, rows, block_denominator = block
            value = implicit_cpu_als.calculate_loss(
                rows, user_factors[start:stop], item_factors, regularization, num_threads=1
            )
            return value * block_denominator - regularization * item_norm

        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            numerators = list(pool.map(block_numerator, blocks))
        return (sum(numerators) + regularization * item_norm) / denominator

    return loss


def training_loss(
    matrix: scipy.sparse.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    regularization: float,
    num_threads: int,
) -> float:
    """One evaluation of :func:`blocked_training_loss` (deterministic for any ``num_threads``)."""
    return blocked_training_loss(matrix, regularization, num_threads)(user_factors, item_factors)


def quantise_factors(factors: np.ndarray) -> np.ndarray:
    """Round factors to multiples of ``2**-FACTOR_GRID_BITS`` (float32, exact); refuse ``|f| >= FACTOR_LIMIT``.

    Examples
    --------
    >>> quantise_factors(np.array([[0.1, -3e-17]])).tolist()
    [[0.100006103515625, 0.0]]

    A value within half a grid step of zero becomes +0.0 whatever its sign: the sign of such a
    value is BLAS rounding noise (OpenBLAS's Prescott kernels gave -1e-12 where Haswell's gave
    +1e-12), and a -0.0 would change the file's bytes though not one score.
    """
    values = np.asarray(factors, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("ALS produced non-finite factors; lower als.alpha or raise als.regularization")
    peak = float(np.abs(values).max(initial=0.0))
    if peak >= FACTOR_LIMIT:
        raise ValueError(
            f"ALS factor of size {peak:.3g} >= {FACTOR_LIMIT}: scores would no longer be exact; "
            "raise als.regularization"
        )
    scale = float(2**FACTOR_GRID_BITS)
    # "+ 0.0" turns -0.0 into +0.0 (IEEE round-to-nearest), so the bytes do not keep the noise's sign.
    return np.ascontiguousarray(np.rint(values * scale) / scale + 0.0, dtype=np.float32)


def _round_loss(value: float) -> float:
    return float(f"{value:.{LOSS_DIGITS}g}") if np.isfinite(value) else value


def fit_als(
    interactions: pl.DataFrame | pl.LazyFrame, params: AlsParams, threshold: float, *, chunk_rows: int | None = None
) -> tuple[AlsModel, scipy.sparse.csr_matrix]:
    """Fit implicit ALS on ``interactions``; return the model and its training confidence matrix.

    The id maps hold the users and items of the pairs kept in the confidence matrix (so, with
    ``binary`` confidence, a user without a positive view is unknown to ALS rather than given a
    meaningless factor). The training loss is recorded through ``fit``'s callback after every
    ``params.loss_every``-th iteration and the last one (a CPU loss pass costs about a fifth of an
    iteration, so computing it every iteration made the fit slower for a curve nobody reads densely).

    ``interactions`` is a frame in memory, or a lazy scan of a table sorted by user (the split's
    sets), which is read about ``chunk_rows`` rows (whole users; default
    :data:`reco.data.labels.CHUNK_ROWS`) at a time: only the aggregated pairs are held (see
    docs/design/models.md). Both give the same matrix and the same model.

    Raises
    ------
    ParamsError
        ``params.use_gpu`` is set but implicit has no CUDA support (never falls back to CPU).
    InputDataError
        Missing columns, invalid watch ratios, or no pair left after the confidence filter.
    """
    if params.use_gpu:
        _require_cuda()
    confidence = (params.confidence, threshold, params.alpha, params.negative_weight)
    if isinstance(interactions, pl.LazyFrame):
        rows_per_chunk = CHUNK_ROWS if chunk_rows is None else chunk_rows  # read now: tests lower it
        matrix, user_ids, item_ids, n_rows = _confidence_matrix_by_user(interactions, *confidence, rows_per_chunk)
    else:
        n_rows = interactions.height
        pairs = _confidence_pairs(interactions, *confidence)
        user_ids = IdMap.from_values(pairs[Columns.user].to_numpy())
        item_ids = IdMap.from_values(pairs[Columns.item].to_numpy())
        matrix = _pairs_to_csr(pairs, user_ids, item_ids)
        del pairs  # the matrix holds them now
    if matrix.nnz == 0:
        raise InputDataError(
            "interactions",
            f"no (user, item) pair left to fit ALS on ({n_rows} rows, confidence={params.confidence!r}, "
            f"threshold={threshold})",
        )

    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    losses: dict[int, float] = {}
    # implicit's own CPU loss is summed in a timing-dependent order (see blocked_training_loss).
    cpu_loss = None if params.use_gpu else blocked_training_loss(matrix, params.regularization, params.num_threads)

    def record(iteration: int, elapsed: float, loss: float | None) -> None:
        done = iteration + 1
        wanted = done % params.loss_every == 0 or done == params.iterations
        progress = f"ALS iteration {done}/{params.iterations} fitted"
        report(f"{progress}; its training loss" if wanted and cpu_loss is not None else progress)
        if not wanted:
            return
        if cpu_loss is not None:
            loss = cpu_loss(model.user_factors, model.item_factors)
        losses[done] = float("nan") if loss is None else _round_loss(float(loss))

    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,  # the matrix already holds 1 + alpha * v
            dtype=np.float32 if params.use_gpu else np.float64,  # float64 on the CPU: see docs/design/models.md
            use_gpu=params.use_gpu,
            iterations=params.iterations,
            calculate_training_loss=params.use_gpu,  # CPU: computed by cpu_loss in `record`
            num_threads=params.num_threads,
            random_state=params.random_state,
        )
        model.fit(matrix if params.use_gpu else matrix.astype(np.float64), show_progress=False, callback=record)
        if params.use_gpu:
            model = model.to_cpu()  # numpy factors (constructs a CPU model: inside the BLAS limit)
    fitted = AlsModel(
        user_factors=quantise_factors(model.user_factors),
        item_factors=quantise_factors(model.item_factors),
        user_ids=user_ids,
        item_ids=item_ids,
        training_loss=losses,
        params={**as_dict(params), "threshold": float(threshold)},
    )
    return fitted, matrix


def save_als(model: AlsModel, out_dir: Path) -> None:
    """Write the model into ``out_dir`` atomically (the folder is replaced as a whole).

    Files: ``user_factors.npy``, ``item_factors.npy``, ``user_ids.npy``, ``item_ids.npy`` (no
    pickle), ``loss.json`` (``[{"iteration": 5, "loss": ...}, ...]``, a ``dvc plots`` source) and
    ``meta.json`` (shapes, params).
    """
    losses = {int(i): float(x) for i, x in sorted(model.training_loss.items())}
    if not all(np.isfinite(list(losses.values()))):
        raise ValueError(f"non-finite training loss, refusing to save: {losses}")
    meta = {
        "n_users": len(model.user_ids),
        "n_items": len(model.item_ids),
        "factors": model.factors,
        "final_loss": losses[max(losses)] if losses else None,
        "params": model.params,
    }
    with atomic_dir(out_dir) as tmp:
        write_npy(model.user_factors, tmp / USER_FACTORS_FILE)
        write_npy(model.item_factors, tmp / ITEM_FACTORS_FILE)
        write_npy(model.user_ids.ids, tmp / USER_IDS_FILE)
        write_npy(model.item_ids.ids, tmp / ITEM_IDS_FILE)
        write_json([{"iteration": i, "loss": x} for i, x in losses.items()], tmp / LOSS_FILE)
        write_json(meta, tmp / META_FILE)


def _read_array(path: Path, dtype: type, ndim: int) -> np.ndarray:
    try:
        array = read_npy(path)
    except (OSError, ValueError, EOFError) as error:
        raise InputDataError(path, f"not a readable pickle-free .npy file: {error}") from error
    if array.dtype != dtype or array.ndim != ndim:
        raise InputDataError(path, f"expected a {ndim}-D {np.dtype(dtype)} array, got {array.dtype} {array.shape}")
    return array


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputDataError(path, f"not readable JSON: {error}") from error


def load_als(model_dir: Path) -> AlsModel:
    """Load a model written by :func:`save_als` (``allow_pickle=False``), checking consistency.

    Raises
    ------
    InputDataError
        A file is missing, unreadable, of the wrong dtype, or shapes disagree (e.g. factor rows
        != number of ids).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputDataError(model_dir, "ALS model folder not found (run the train_als stage first)")
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise InputDataError(model_dir, f"missing file(s) {missing}; an ALS model folder holds {list(MODEL_FILES)}")
    user_factors = _read_array(model_dir / USER_FACTORS_FILE, np.float32, 2)
    item_factors = _read_array(model_dir / ITEM_FACTORS_FILE, np.float32, 2)
    raw_user_ids = _read_array(model_dir / USER_IDS_FILE, np.int32, 1)
    raw_item_ids = _read_array(model_dir / ITEM_IDS_FILE, np.int32, 1)
    try:
        user_ids, item_ids = IdMap(raw_user_ids), IdMap(raw_item_ids)
    except ValueError as error:
        raise InputDataError(model_dir, f"id file not sorted/unique: {error}") from error
    for name, factors, ids in (("user", user_factors, user_ids), ("item", item_factors, item_ids)):
        if factors.shape[0] != len(ids):
            raise InputDataError(
                model_dir / f"{name}_factors.npy",
                f"{factors.shape[0]} factor rows but {len(ids)} ids in {name}_ids.npy",
            )
    if user_factors.shape[1] != item_factors.shape[1]:
        raise InputDataError(
            model_dir, f"user factors have {user_factors.shape[1]} columns, item factors {item_factors.shape[1]}"
        )
    loss_rows = _read_json(model_dir / LOSS_FILE)
    if not isinstance(loss_rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("iteration"), int) and "loss" in r for r in loss_rows
    ):
        raise InputDataError(model_dir / LOSS_FILE, 'expected a list of {"iteration": i, "loss": x} rows')
    meta = _read_json(model_dir / META_FILE)
    if not isinstance(meta, dict):
        raise InputDataError(model_dir / META_FILE, "expected a JSON object")
    shapes = {"n_users": len(user_ids), "n_items": len(item_ids), "factors": user_factors.shape[1]}
    stated = {key: meta.get(key) for key in shapes}
    if stated != shapes:
        raise InputDataError(model_dir / META_FILE, f"shapes {stated} disagree with the arrays {shapes}")
    return AlsModel(
        user_factors=user_factors,
        item_factors=item_factors,
        user_ids=user_ids,
        item_ids=item_ids,
        training_loss={int(r["iteration"]): float(r["loss"]) for r in loss_rows},
        params=dict(meta.get("params") or {}),
    )


def score_pairs(model: AlsModel, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """ALS scores (exact float64 dot products, cast to float32) of external (user, item) pairs; NaN where unknown.

    Examples
    --------
    >>> m = AlsModel(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32),
    ...              IdMap.from_values(np.array([1, 2])), IdMap.from_values(np.array([7, 8])), [])
    >>> score_pairs(m, np.array([1, 1, 3]), np.array([7, 8, 7])).tolist()
    [1.0, 0.0, nan]
    """
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users and items must be 1-D arrays of equal length, got {users.shape} and {items.shape}")
    u, i = model.user_ids.index_of(users), model.item_ids.index_of(items)
    out = np.full(users.shape, np.nan, dtype=np.float32)
    known = np.flatnonzero((u >= 0) & (i >= 0))
    for start in range(0, known.size, _PAIR_CHUNK):
        rows = known[start : start + _PAIR_CHUNK]
        products = model.user_factors[u[rows]].astype(np.float64) * model.item_factors[i[rows]]
        out[rows] = products.sum(axis=1)  # exact for grid factors (see docs/design/models.md)
    return out


def item_scores(model: AlsModel, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Dense float32 score matrix ``(len(users), len(items))`` for external ids.

    Rows of unknown users and columns of unknown items are NaN. Memory is
    ``4 * len(users) * len(items)`` bytes: chunk the users for large catalogues.
    """
    users, items = np.asarray(users), np.asarray(items)
    if users.ndim != 1 or items.ndim != 1:
        raise ValueError(f"users and items must be 1-D arrays, got {users.shape} and {items.shape}")
    u, i = model.user_ids.index_of(users), model.item_ids.index_of(items)
    known_u, known_i = np.flatnonzero(u >= 0), np.flatnonzero(i >= 0)
    # float64 product of grid factors: exact, so the same on every BLAS kernel; one cast to float32.
    block = model.user_factors[u[known_u]].astype(np.float64) @ model.item_factors[i[known_i]].astype(np.float64).T
    if known_u.size == users.size and known_i.size == items.size:
        return np.ascontiguousarray(block, dtype=np.float32)
    out = np.full((users.size, items.size), np.nan, dtype=np.float32)
    out[np.ix_(known_u, known_i)] = block
    return out


__all__ = [
    "CONFIDENCE_KINDS",
    "AlsModel",
    "IdMap",
    "build_confidence_matrix",
    "fit_als",
    "quantise_factors",
    "item_scores",
    "load_als",
    "save_als",
    "score_pairs",
]
