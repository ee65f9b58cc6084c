"""Where the ``evaluate@<block>`` and ``report`` stages read and write: one definition of the file layout.

:class:`BlockFiles` names one block's outputs (``metrics/blocks/<block>/`` and
``data/evaluation/<block>/``) and :class:`ReportFiles` the merged files under ``metrics/``, relative to a
root (the repository for the stages, a temporary folder in tests). See docs/design/evaluation.md.

Examples
--------
>>> files = BlockFiles.of("validation")
>>> str(files.metrics_file), str(files.per_user_file)
('metrics/blocks/validation/metrics.json', 'data/evaluation/validation/per_user.parquet')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reco.errors import UsageError
from reco.schema import EVALUATION_BLOCKS

__all__ = ["PER_USER_NAME", "TOP_K_NAME", "BlockFiles", "ReportFiles"]


@dataclass(frozen=True)
class BlockFiles:
    """Inputs and outputs of ``evaluate@<block>``."""

    block: str
    root: Path = Path()
    run_root: Path = Path()  # below root: where the models, candidates and outputs live (a seed run's data/seeds/N)

    @classmethod
    def of(cls, block: str, root: Path = Path(), run_root: Path = Path()) -> BlockFiles:
        """The files of ``block``; a :class:`~reco.errors.UsageError` for an unknown block.

        ``run_root`` (relative to ``root``) moves what depends on the trained models (ALS, the
        candidates' statistics, the features, the ranker, and every output) to a seed run's folder.

        Examples
        --------
        >>> str(BlockFiles.of("validation", run_root=Path("data/seeds/3")).metrics_file)
        'data/seeds/3/metrics/blocks/validation/metrics.json'
        """
        if block not in EVALUATION_BLOCKS:
            raise UsageError(f"BLOCK must be one of {list(EVALUATION_BLOCKS)}, got {block!r}")
        return cls(block=block, root=Path(root), run_root=Path(run_root))

    @property
    def _run(self) -> Path:
        return self.root / self.run_root

    # --- inputs ---------------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        """``data/raw``: the manifest and, for the simulator, the ground truth."""
        return self.root / "data" / "raw"

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "split" / "train.parquet"

    @property
    def block_file(self) -> Path:
        """The block's cells: ``data/split/<block>.parquet``."""
        return self.root / "data" / "split" / f"{self.block}.parquet"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def split_summary_file(self) -> Path:
        """``metrics/split_summary.json``: the fitted label rule and the protocol."""
        return self.root / "metrics" / "split_summary.json"

    @property
    def candidates_file(self) -> Path:
        """``metrics/candidates/<block>.json``: ``n`` and the candidate recall."""
        return self._run / "metrics" / "candidates" / f"{self.block}.json"

    @property
    def als_dir(self) -> Path:
        """The ALS fitted on all training data (it serves both blocks)."""
        return self._run / "models" / "als" / "test"

    @property
    def features_dir(self) -> Path:
        """The block's candidate feature table (``data/features/<block>``)."""
        return self._run / "data" / "features" / self.block

    @property
    def ranker_dir(self) -> Path:
        return self._run / "models" / "ranker"

    # --- outputs --------------------------------------------------------------------------
    @property
    def metrics_dir(self) -> Path:
        return self._run / "metrics" / "blocks" / self.block

    @property
    def metrics_file(self) -> Path:
        return self.metrics_dir / "metrics.json"

    @property
    def uncertainty_file(self) -> Path:
        return self.metrics_dir / "uncertainty.json"

    @property
    def beyond_accuracy_file(self) -> Path:
        return self.metrics_dir / "beyond_accuracy.json"

    @property
    def segments_file(self) -> Path:
        return self.metrics_dir / "segments.json"

    @property
    def data_dir(self) -> Path:
        """``data/evaluation/<block>``: written as a whole (atomic folder swap)."""
        return self._run / "data" / "evaluation" / self.block

    @property
    def per_user_file(self) -> Path:
        return self.data_dir / PER_USER_NAME

    @property
    def top_k_file(self) -> Path:
        return self.data_dir / TOP_K_NAME


PER_USER_NAME = "per_user.parquet"
TOP_K_NAME = "top_k.parquet"


@dataclass(frozen=True)
class ReportFiles:
    """Inputs and outputs of ``report``."""

    root: Path = Path()

    def block(self, block: str) -> BlockFiles:
        """The files ``evaluate@<block>`` wrote."""
        return BlockFiles.of(block, self.root)

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def split_summary_file(self) -> Path:
        return self.root / "metrics" / "split_summary.json"

    @property
    def seed_spread_file(self) -> Path:
        """``metrics/seed_spread.json`` (optional: the card says so when it is missing)."""
        return self.root / "metrics" / "seed_spread.json"

    @property
    def ranker_training_file(self) -> Path:
        return self.root / "metrics" / "ranker_training.json"

    @property
    def als_dir(self) -> Path:
        return self.root / "models" / "als" / "test"

    @property
    def ranker_dir(self) -> Path:
        return self.root / "models" / "ranker"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics" / "metrics.json"

    @property
    def uncertainty_file(self) -> Path:
        return self.root / "metrics" / "uncertainty.json"

    @property
    def beyond_accuracy_file(self) -> Path:
        return self.root / "metrics" / "beyond_accuracy.json"

    @property
    def segments_file(self) -> Path:
        return self.root / "metrics" / "segments.json"

    @property
    def model_card_file(self) -> Path:
        return self.root / "metrics" / "model_card.md"

    @property
    def metrics_at_k_file(self) -> Path:
        """Plot data of ``metrics_at_k`` (test block)."""
        return self.root / "metrics" / "plots" / "metrics_at_k.json"

    @property
    def paired_differences_file(self) -> Path:
        """Plot data of ``paired_differences`` (test block)."""
        return self.root / "metrics" / "plots" / "paired_differences.json"
