"""What a fine-tuning run is asked to do and what it reports (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class FinetuneOptions:
    """Choices of :func:`~c2s_desktop.core.finetune.finetune` (all but ``label_key`` optional)."""

    label_key: str
    cells: str | None = None
    """``COLUMN=VALUE`` or a file of cell ids (as every command parses it); None: all cells."""
    holdout: float = 0.2
    epochs: int = 3
    rank: int = 8
    alpha: int = 16
    lr: float = 1e-3
    n_genes: int | None = None
    """Genes per cell sentence; None: the model's default (200), fewer if the context is short."""
    device: str = "auto"
    seed: int = 0
    batch_size: int = 8
    balance: bool = True
    """Sample every label equally often (weighted sampling of the training cells)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: ``epochs`` passes over the training cells)."""
    template_index: int = 0
    threads: int | None = None
    """CPU threads for torch (None: its default)."""
    checkpoint_every: int = 20
    """Steps between resumable checkpoints (one is also written on cancel and at each epoch)."""


@dataclass(frozen=True)
class SplitPlan:
    """The stratified split of the labelled cells: per label, training and held-out counts."""

    labels: tuple[str, ...]
    train_counts: tuple[int, ...]
    holdout_counts: tuple[int, ...]
    train_rows: tuple[int, ...] = field(repr=False, default=())
    holdout_rows: tuple[int, ...] = field(repr=False, default=())
    unlabelled: int = 0
    """Selected cells without a label (left out)."""

    @property
    def n_train(self) -> int:
        return sum(self.train_counts)

    @property
    def n_holdout(self) -> int:
        return sum(self.holdout_counts)

    def summary(self) -> str:
        """``'120 training / 30 held-out cells, 3 labels (B cell 40/10, ...)'``."""
        parts = ", ".join(
            f"{lab} {t}/{h}"
            for lab, t, h in zip(self.labels, self.train_counts, self.holdout_counts, strict=True)
        )
        return (
            f"{self.n_train:,} training / {self.n_holdout:,} held-out cells, "
            f"{len(self.labels)} labels ({parts})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "labels": list(self.labels),
            "train": dict(zip(self.labels, self.train_counts, strict=True)),
            "holdout": dict(zip(self.labels, self.holdout_counts, strict=True)),
            "unlabelled": self.unlabelled,
        }


@dataclass(frozen=True)
class StepReport:
    """One optimizer step (``heldout_accuracy`` is set at the end of an epoch)."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    seconds_per_step: float
    heldout_accuracy: float | None = None


@dataclass(frozen=True)
class FinetuneResult:
    """What a finished run wrote and measured."""

    adapter_path: Path
    accuracy_before: float
    accuracy_after: float
    split: SplitPlan
    seconds: float
    steps: int
    adapter_bytes: int
    merged_dir: Path | None = None
    resumed_step: int = 0
    """The step an interrupted run's checkpoint resumed from (0: started afresh)."""
    losses: tuple[float, ...] = ()
    """Mean training loss of each epoch."""
    device: str = "cpu"
    warnings: tuple[str, ...] = ()
