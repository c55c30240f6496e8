"""GlobalAveragePooling2D + Dense(softmax): the classic Keras bottleneck head.

Recipes:
- `classic` reproduces the well-known dog-breed notebook: raw (unscaled) features, RMSprop with
  Keras defaults, 20 epochs, batch 20, reshuffled every epoch, keeping the weights of the epoch
  with the lowest validation loss (what its `ModelCheckpoint(save_best_only=True)` did).
- `default` is better: standardised features, dropout on the input, AdamW, up to
  `RECIPES["default"].epochs` epochs with early stopping on validation loss, keeping the best.

`MLPHead` (kind `mlp`) adds one ReLU hidden layer to the default recipe.

Because GAP is linear, the Dense layer is trained on average-pooled rows (identical maths, far
less work), then saved inside a model that takes the full (h, w, c) maps: `<stem>.keras`, a
standard Keras model loadable with `safe_mode=True`.

Training uses Keras layers, losses and optimizers in the tool's one training loop
(`pipeline.heads.training`), which runs one whole epoch per compiled call: `model.fit`'s per-epoch
bookkeeping costs more than the maths on these tiny batches (measured there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.heads.diagnosis import missing_split_error
from pipeline.heads.kinds.base import train_and_valid
from pipeline.heads.kinds.keras_file import load_keras_model, save_keras_model
from pipeline.heads.training import RowEpochs, Stopping, run_epochs


@dataclass(frozen=True)
class Recipe:
    """Training settings of a GAP+Dense head."""

    standardise: bool
    optimizer: str
    learning_rate: float
    weight_decay: float
    epochs: int
    batch_size: int
    dropout: float
    patience: int | None  # None: run every epoch, keep the best
    min_delta: float = 0.0  # a validation loss must drop by more than this to count as better
    min_steps_per_epoch: int = 1  # small datasets get smaller batches, so each epoch still learns
    hidden_units: int = 0  # > 0 adds a ReLU hidden layer (the `mlp` head)


RECIPES = {
    "classic": Recipe(standardise=False, optimizer="rmsprop", learning_rate=0.001, weight_decay=0.0, epochs=20,
                      batch_size=20, dropout=0.0, patience=None),
    "default": Recipe(standardise=True, optimizer="adamw", learning_rate=0.001, weight_decay=0.05, epochs=200,
                      batch_size=64, dropout=0.5, patience=10, min_delta=1e-3, min_steps_per_epoch=8),
    "mlp": Recipe(standardise=True, optimizer="adamw", learning_rate=0.001, weight_decay=0.05, epochs=200,
                  batch_size=64, dropout=0.5, patience=10, min_delta=1e-3, min_steps_per_epoch=8, hidden_units=512),
}
SEED = 0
_VARIANCE_FLOOR = 1e-6  # keeps dead (always-zero) channels from dividing by zero
#: What to change when training a Keras head produced no finite loss.
NON_FINITE_REMEDY = ("check the features for non-finite or huge values (`cache verify`), or fit a head that "
                     "standardises them (the default recipe rather than classic, or logreg)")


class GapDenseHead:
    """See the module docstring. `recipe` is "classic" or "default"."""

    kind = "gap-dense"

    def __init__(self, recipe: str = "default"):
        self.recipe = recipe

    def fit(self, features) -> GapDenseHead:
        keras = import_keras()
        recipe = RECIPES[self.recipe]  # a registered name: `registry.check_recipe` is the one check
        train, valid = train_and_valid(features)
        if valid is None:
            raise missing_split_error(features, "valid", f"{self.kind} keeps the best epoch on the validation split")
        keras.utils.set_random_seed(SEED)
        layers = _head_layers(recipe, features.num_classes, train.x)
        inputs = keras.Input(shape=(train.x.shape[1],))
        trainer = keras.Model(inputs, _apply(layers, inputs))
        history, best_epoch = _train(trainer, recipe, train, valid)
        # Average pooling is GAP, so the saved model takes the full maps; other poolings take pooled rows.
        pooled_by_average = getattr(features, "pooling", "avg") == "avg"
        shape = tuple(features.info.feature_shape) if pooled_by_average else (train.x.shape[1],)
        self.model_ = _full_model(shape, layers)
        self._pooled_model = trainer
        self.valid_probabilities_ = self.predict_proba(valid.x)
        self.search_ = history
        self.params_ = {"recipe": self.recipe, **asdict(recipe), "batch_size": batch_size_for(recipe, len(train.y)),
                        "best_epoch": best_epoch,
                        "epochs_run": len(history), "selected_by": "lowest validation loss"}
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for pooled (n, c) rows, or full (n, h, w, c) maps."""
        if x.ndim == 2 and len(self.model_.input_shape) > 2:
            if getattr(self, "_pooled_model", None) is None:
                self._pooled_model = _pooled_view(self.model_)
            return np.asarray(self._pooled_model(x, training=False))
        return np.asarray(self.model_.predict(x, verbose=0, batch_size=256))

    def keras_layers(self) -> list:
        """The trained layers that follow global average pooling (they map pooled features to probabilities)."""
        layers = self.model_.layers
        start = layers.index(self.model_.get_layer("gap")) + 1 if len(self.model_.input_shape) > 2 else 1
        return layers[start:]

    def save(self, stem: Path) -> str:
        return save_keras_model(self.model_, stem)

    @classmethod
    def load(cls, stem: Path, record) -> GapDenseHead:
        head = cls(record.hyperparameters.get("recipe", "default"))
        head.model_ = load_keras_model(stem, record)
        head.params_ = record.hyperparameters
        return head


class MLPHead(GapDenseHead):
    """GAP -> standardise -> dropout -> Dense(512, ReLU) -> dropout -> Dense(softmax): one hidden
    layer, trained and saved like gap-dense's default recipe (see `RECIPES["mlp"]`)."""

    kind = "mlp"

    def __init__(self, recipe: str = "mlp"):
        super().__init__(recipe)


def _train(model, recipe: Recipe, train, valid) -> tuple[list[dict], int]:
    """Train `model` (pooled rows -> probabilities) and restore the lowest-validation-loss weights
    (`pipeline.heads.training`). Returns (per-epoch history, best epoch counted from 1)."""
    keras = import_keras()
    tf = import_tensorflow()

    optimizer = _optimizer(recipe)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    x, y = tf.constant(train.x), tf.constant(train.y)
    x_valid, y_valid = tf.constant(valid.x), tf.constant(valid.y)

    @tf.function
    def scores():
        probabilities = model(x_valid, training=False)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probabilities, axis=1), y_valid), tf.float32))
        return loss_fn(y_valid, probabilities), accuracy

    def validate() -> dict:
        valid_loss, valid_accuracy = (float(v) for v in scores())
        return {"valid_loss": valid_loss, "valid_top1": valid_accuracy}

    trainee = RowEpochs(lambda rows: loss_fn(tf.gather(y, rows), model(tf.gather(x, rows), training=True)),
                        model.trainable_variables, optimizer, len(train.y), batch_size_for(recipe, len(train.y)),
                        SEED, validate, model.get_weights, model.set_weights)
    state = run_epochs(trainee, Stopping(recipe.epochs, recipe.patience, recipe.min_delta), NON_FINITE_REMEDY)
    return list(state.history), state.best_epoch


def batch_size_for(recipe: Recipe, rows: int) -> int:
    """The recipe's batch size, reduced so an epoch has at least `recipe.min_steps_per_epoch` steps."""
    return max(1, min(recipe.batch_size, -(-rows // recipe.min_steps_per_epoch)))


def _head_layers(recipe: Recipe, num_classes: int, train_x: np.ndarray) -> list:
    keras = import_keras()

    layers = []
    if recipe.standardise:
        layers.append(keras.layers.Normalization(mean=train_x.mean(axis=0),
                                                 variance=train_x.var(axis=0) + _VARIANCE_FLOOR, name="standardise"))
    if recipe.dropout:
        layers.append(keras.layers.Dropout(recipe.dropout, seed=SEED, name="dropout"))
    if recipe.hidden_units:
        layers.append(keras.layers.Dense(recipe.hidden_units, activation="relu", name="hidden"))
        layers.append(keras.layers.Dropout(recipe.dropout, seed=SEED, name="hidden_dropout"))
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="classifier"))
    return layers


def _apply(layers, tensor):
    for layer in layers:
        tensor = layer(tensor)
    return tensor


def _full_model(shape: tuple[int, ...], layers):
    """The saved model: full feature maps -> GlobalAveragePooling2D -> the trained layers."""
    keras = import_keras()

    inputs = keras.Input(shape=shape, name="features")
    tensor = keras.layers.GlobalAveragePooling2D(name="gap")(inputs) if len(shape) == 3 else inputs
    return keras.Model(inputs, _apply(layers, tensor), name="gap_dense_head")


def _pooled_view(model):
    """The layers after GAP of a saved full model, as a model on pooled rows."""
    keras = import_keras()

    gap = model.get_layer("gap")
    inputs = keras.Input(shape=(gap.output.shape[-1],))
    return keras.Model(inputs, _apply(model.layers[model.layers.index(gap) + 1:], inputs))


def _optimizer(recipe: Recipe):
    keras = import_keras()

    if recipe.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=recipe.learning_rate)
    return keras.optimizers.AdamW(learning_rate=recipe.learning_rate, weight_decay=recipe.weight_decay)
