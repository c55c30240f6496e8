"""The training settings of `fine-tune` (what `pipeline.finetune.train` runs), as one value.

Defaults follow the fine-tuning recipes the teaching material and Keras' transfer-learning guide
use: the pretrained layers move slowly (Adam at 1e-5), the head ten times faster; a few epochs
with early stopping on validation loss, since the data that reaches this rung is usually small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    """Training settings of `fine-tune` (see the module doc)."""

    backbone_learning_rate: float = 1e-5
    head_learning_rate: float = 1e-4
    batch_size: int = 16
    epochs: int = 10
    patience: int = 3
    min_delta: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 1:
            raise UsageError(f"batch size, epochs and patience must be at least 1, got {self.batch_size}, "
                             f"{self.epochs}, {self.patience}")
        if self.min_delta < 0:
            raise UsageError(f"the minimum validation-loss drop must be 0 or more, got {self.min_delta}")
        if self.backbone_learning_rate <= 0 or self.head_learning_rate <= 0:
            raise UsageError("learning rates must be positive, got "
                             f"{self.backbone_learning_rate} (backbone) and {self.head_learning_rate} (head)")

    def to_dict(self) -> dict:
        return asdict(self)
