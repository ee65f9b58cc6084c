"""Refit both ALS models under other OpenBLAS kernels and compare them with the pipeline's.

implicit's CPU solver runs on BLAS, and OpenBLAS picks its kernel by CPU (Haswell on AMD Zen and
Intel AVX2 machines, SkylakeX with AVX-512, Sandybridge/Nehalem/Prescott on older x86, NEON on
ARM). On one machine ``OPENBLAS_CORETYPE`` forces another x86 kernel; this benchmark (never the
tests or CI: some machines set that variable for correctness) refits ``train_als@ranker`` and
``train_als@test`` from the pipeline's own split under each kernel the machine can run and
reports, per output file, whether its bytes equal the pipeline's, and the largest difference of the
factors before the rounding to the 2**-16 grid (reco/models/als.py) would hide it.

Run from the repository root after ``dvc repro`` (it reads ``data/split`` and ``models/als``)::

    .venv/bin/python benchmarks/blas_kernels.py [--cores Haswell,Sandybridge,Prescott]

Writes ``benchmarks/blas_kernels.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FITS = {"ranker": "data/split/history.parquet", "test": "data/split/train.parquet"}
FILES = ("user_factors.npy", "item_factors.npy", "user_ids.npy", "item_ids.npy", "loss.json", "meta.json")

_RAW_FACTORS = """
import os, sys, numpy as np, polars as pl
sys.path.insert(0, sys.argv[3])
from implicit.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits
from reco.models.als import _confidence_pairs, _pairs_to_csr, IdMap
from reco.params import load_section
als, label = load_section("als"), load_section("label")
frame = pl.read_parquet(sys.argv[1], columns=["user_id", "video_id", "watch_ratio", "label_ratio"])
pairs = _confidence_pairs(frame, als.confidence, label.threshold, als.alpha, als.negative_weight)
matrix = _pairs_to_csr(pairs, IdMap.from_values(pairs["user_id"].to_numpy()), IdMap.from_values(pairs["video_id"].to_numpy()))
with threadpool_limits(1, "blas"):
    model = AlternatingLeastSquares(factors=als.factors, regularization=als.regularization, alpha=1.0, dtype=np.float64,
                                    iterations=als.iterations, num_threads=als.num_threads, random_state=als.random_state)
    model.fit(matrix.astype(np.float64), show_progress=False)
np.save(sys.argv[2] + "_u.npy", model.user_factors); np.save(sys.argv[2] + "_i.npy", model.item_factors)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="Haswell,Sandybridge,Prescott")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("blas_kernels.json"))
    args = parser.parse_args(argv)
    report: dict[str, object] = {"kernels": {}}
    with tempfile.TemporaryDirectory(prefix="blas-kernels-") as tmp:
        raw: dict[str, dict[str, np.ndarray]] = {}
        for core in args.cores.split(","):
            env = {**os.environ, "OPENBLAS_CORETYPE": core, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
            entry: dict[str, object] = {}
            for key, interactions in FITS.items():
                out = Path(tmp) / core / key
                subprocess.run([sys.executable, "-m", "stages.train_als", interactions, str(out)], cwd=ROOT, env=env, check=True)
                entry[key] = {name: sha256(out / name) == sha256(ROOT / "models" / "als" / key / name) for name in FILES}
                stem = str(Path(tmp) / f"{core}_{key}")
                subprocess.run([sys.executable, "-c", _RAW_FACTORS, interactions, stem, str(ROOT)], cwd=ROOT, env=env, check=True)
                raw.setdefault(key, {})[core] = np.concatenate([np.load(stem + "_u.npy").ravel(), np.load(stem + "_i.npy").ravel()])
            report["kernels"][core] = entry  # type: ignore[index]
        cores = args.cores.split(",")
        report["float64_max_abs_difference_before_rounding"] = {
            key: {core: float(np.abs(values[core] - values[cores[0]]).max()) for core in cores[1:]} for key, values in raw.items()
        }
    from threadpoolctl import threadpool_info

    report["default_kernel"] = next((p.get("architecture") for p in threadpool_info() if p.get("user_api") == "blas"), None)
    args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
