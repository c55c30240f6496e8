"""The epochs of `fine-tune`: discriminative learning rates, early stopping, best weights kept.

The recipe (`pipeline.finetune.recipe.Recipe`, every field a `fine-tune` option): Adam with a low learning rate for the
backbone's tuned layers and a higher one for the head (two optimizers, one per group), batches
of `batch_size` streamed from the boundary cache (`pipeline.finetune.batches`), one view per
image per epoch. The starting model - the backbone's own layers and the fitted head - is scored
on validation as epoch 0; after every epoch the validation log loss decides: a drop of more than
`min_delta` below the best loss so far makes the epoch the best one (its weights are kept),
`patience` epochs without one stop training, and the best weights - possibly epoch 0's, the head
it started from - are the result. So a later epoch with a loss lower by `min_delta` or less is not
chosen; `selection_rule` states the rule and `smaller_drops` names such epochs, for the output.
The epochs run in the tool's one training loop (`pipeline.heads.training`): a non-finite training
loss ends training there and the best finite epoch (at worst epoch 0, the starting head) is kept.
Validation is scored on view 0 and never trained on; test is not touched here.

Every finished epoch is checkpointed (`pipeline.finetune.checkpoint`) before the next one starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.finetune.batches import SplitRows, StreamTimes, epoch_batches, prefetched, scoring_batches
from pipeline.finetune.checkpoint import TrainingState, load_state, save_state
from pipeline.finetune.model import TunedModel
from pipeline.finetune.recipe import Recipe
from pipeline.heads.metrics import classification_metrics
from pipeline.heads.training import LoopState, Stopping, run_epochs

log = logging.getLogger(__name__)

#: Rows per forward pass when scoring (no gradients: larger than training batches).
SCORING_BATCH_SIZE = 64
#: What to change when no epoch (not even the starting head, epoch 0) had a finite loss.
NON_FINITE_REMEDY = "refit the head it starts from (`fit-head`), or lower --backbone-lr and --head-lr"


@dataclass(frozen=True)
class TrainingResult:
    history: list[dict]
    best_epoch: int
    resumed_from: int  # the completed epoch a resumed run started after (0 for a fresh run)


class Trainer:
    """One compiled training step and one compiled forward pass over a `TunedModel`."""

    def __init__(self, tuned: TunedModel, recipe: Recipe):
        keras = import_keras()
        tf = import_tensorflow()

        self.tuned, self.recipe = tuned, recipe
        model = tuned.model
        self.optimizers = (keras.optimizers.Adam(recipe.backbone_learning_rate),
                           keras.optimizers.Adam(recipe.head_learning_rate))
        self.groups = (tuned.backbone_variables, tuned.head_variables)
        for optimizer, variables in zip(self.optimizers, self.groups):
            optimizer.build(variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        split = len(tuned.backbone_variables)
        shape = tuple(model.input_shape[1:])
        signature = [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int64)]

        hinge = tuned.hinge.loss_function() if tuned.hinge is not None else None

        def objective(x, y):
            if hinge is None:
                return loss_fn(y, model(x, training=True))
            return hinge(y, tuned.logits(x, training=True), tuned.kernel)

        @tf.function(input_signature=signature)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = objective(x, y)
            gradients = tape.gradient(loss, [*self.groups[0], *self.groups[1]])
            for optimizer, variables, part in zip(self.optimizers, self.groups, (gradients[:split], gradients[split:])):
                if variables:  # tuning only a pooling layer leaves the backbone group empty
                    optimizer.apply_gradients(zip(part, variables))
            return loss

        @tf.function(input_signature=signature[:1])
        def forward(x):
            return model(x, training=False)

        self.step, self.forward = step, forward

    def train_epoch(self, cache_path: Path, split: SplitRows, epoch: int) -> dict:
        """One epoch over `split`; returns its mean loss and where the time went."""
        times, losses = StreamTimes(), []
        started = time.perf_counter()
        batches = epoch_batches(split, epoch, self.recipe.seed, self.recipe.batch_size)
        for features, labels in prefetched(cache_path, batches, times):
            losses.append(float(self.step(features, labels)) * len(labels))
        seconds = time.perf_counter() - started
        return {"loss": sum(losses) / max(1, times.rows), "seconds": round(seconds, 3),
                "waiting_for_rows_seconds": round(times.waiting_for_rows, 3),
                "reading_seconds": round(times.reading, 3),
                "rows_per_second": round(times.rows / seconds, 2) if seconds else None}

    def probabilities(self, cache_path: Path, split: SplitRows) -> np.ndarray:
        """Class probabilities of a split's images (view 0)."""
        out = [np.asarray(self.forward(features))
               for features, _ in prefetched(cache_path, scoring_batches(split, SCORING_BATCH_SIZE), StreamTimes())]
        return np.concatenate(out) if out else np.zeros((0, self.tuned.model.output_shape[-1]), np.float32)

    def values(self) -> list[np.ndarray]:
        return [np.array(variable) for variable in self.tuned.model.variables]

    def set_values(self, values: list[np.ndarray]) -> None:
        for variable, value in zip(self.tuned.model.variables, values):
            variable.assign(value)

    def optimizer_values(self) -> list[list[np.ndarray]]:
        return [[np.array(v) for v in optimizer.variables] for optimizer in self.optimizers]

    def set_optimizer_values(self, values: list[list[np.ndarray]]) -> None:
        for optimizer, saved in zip(self.optimizers, values):
            for variable, value in zip(optimizer.variables, saved):
                variable.assign(value)


def train(trainer: Trainer, cache_path: Path, train_split: SplitRows, valid_split: SplitRows, class_names,
          checkpoint: tuple[Path, str], progress: Callable[[dict], None] | None = None) -> TrainingResult:
    """Run (or resume) the epochs of `trainer.recipe`; the model ends with the best-validation weights."""
    recipe = trainer.recipe
    folder, key = checkpoint
    saved = load_state(folder, key)
    start, resumed_from = None, 0
    if saved is not None:
        trainer.set_values(saved.model_values)
        trainer.set_optimizer_values(saved.optimizer_values)
        start = LoopState(saved.epoch, tuple(saved.history), saved.best_epoch, saved.best_loss, saved.stale,
                          saved.best_values)
        resumed_from = saved.epoch
        log.info("resuming fine-tuning after epoch %d (checkpoint %s)", saved.epoch, folder)

    def finished(state: LoopState, record: dict) -> None:
        save_state(folder, key, TrainingState(state.epoch, list(state.history), state.best_epoch, state.best_loss,
                                              state.stale, trainer.values(), state.best_weights,
                                              trainer.optimizer_values()))
        if progress is not None:
            progress(record)

    state = run_epochs(_BoundaryEpochs(trainer, cache_path, train_split, valid_split, class_names),
                       Stopping(recipe.epochs, recipe.patience, recipe.min_delta), NON_FINITE_REMEDY,
                       score_start=True, start=start, on_epoch=finished)
    return TrainingResult(list(state.history), state.best_epoch, resumed_from)


def selection_rule(min_delta: float) -> str:
    """How the best epoch is chosen, in words (for the output, the sidecar and --help)."""
    return (f"lowest validation loss, an epoch counting as better only when it lowers the best loss so far by "
            f"more than {min_delta:g} (--min-delta); epoch 0 is the head it started from")


def smaller_drops(history: list[dict], best_epoch: int) -> list[tuple[int, float]]:
    """(epoch, how much lower) for every epoch whose validation loss is below the best epoch's but was
    not chosen, because it did not lower the best loss so far by more than `min_delta`."""
    best = history[best_epoch]["valid_loss"]
    return [(record["epoch"], best - record["valid_loss"]) for record in history if record["valid_loss"] < best]


@dataclass(frozen=True)
class _BoundaryEpochs:
    """A `Trainer` as the training loop's `Trainee`: epochs streamed from the boundary cache."""

    trainer: Trainer
    cache_path: Path
    train_split: SplitRows
    valid_split: SplitRows
    class_names: tuple

    def train_epoch(self, epoch: int) -> dict:
        return self.trainer.train_epoch(self.cache_path, self.train_split, epoch)

    def validate(self) -> dict:
        metrics = classification_metrics(self.valid_split.labels,
                                         self.trainer.probabilities(self.cache_path, self.valid_split),
                                         self.class_names)
        return {"valid_loss": metrics["log_loss"], "valid_top1": metrics["top1"],
                "valid_mean_per_class_accuracy": metrics["mean_per_class_accuracy"]}

    def weights(self) -> list[np.ndarray]:
        return self.trainer.values()

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.trainer.set_values(weights)
