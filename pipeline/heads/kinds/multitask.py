"""A multi-task head: one shared trunk on pooled features, one softmax per target.

`fit-head --head multitask --targets label,species` learns several labels of the same images at
once (Oxford-IIIT Pet: breed and species; a CSV manifest: any extra columns). The trunk
standardises the pooled features, applies dropout and optionally one ReLU hidden layer
(`hidden_units`); each target gets its own Dense softmax. The loss is a weighted sum of the
targets' cross-entropies: fixed weights (1 each unless `task_weights` says otherwise, e.g.
species=0.3), or learned uncertainty weighting (Kendall, Gal and Cipolla, 2018:
sum_t exp(-s_t) CE_t + s_t with a trainable log-variance s_t per target). Training follows the
gap-dense default recipe (AdamW; `pipeline.heads.training`: early stopping on the validation loss, best epoch kept), the
validation loss being the summed per-target cross-entropy, weighted as in training for fixed
weights and unweighted for learned ones.

The head's first target is its primary one: `predict_proba` returns it (so leaderboards and the
head contract see an ordinary head), `predict_all` returns every target. Saved as a `.keras`
model with one output per target (safe mode), plus the targets' class names in the sidecar.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.backbones.tf_runtime import import_keras, import_tensorflow
from pipeline.errors import UsageError
from pipeline.heads.diagnosis import missing_split_error
from pipeline.heads.kinds.base import train_and_valid
from pipeline.heads.kinds.gap_dense import NON_FINITE_REMEDY, RECIPES, SEED, batch_size_for
from pipeline.heads.kinds.keras_file import load_keras_model, save_keras_model
from pipeline.heads.training import RowEpochs, Stopping, run_epochs

WEIGHTINGS = ("fixed", "uncertainty")
DEFAULT_RECIPE = RECIPES["default"]
_VARIANCE_FLOOR = 1e-6  # keeps dead (always-zero) channels from dividing by zero
_TASK_LAYER = "task_{target}"


class MultitaskHead:
    """See the module docstring. `targets` None means every target the features carry, primary first."""

    kind = "multitask"

    def __init__(self, targets: tuple[str, ...] | None = None, task_weights: dict | None = None,
                 weighting: str = "fixed", hidden_units: int = 0):
        self.targets = tuple(targets) if targets else None
        self.task_weights = dict(task_weights or {})
        self.weighting = weighting
        self.hidden_units = hidden_units

    def fit(self, features) -> MultitaskHead:
        keras = import_keras()

        if self.weighting not in WEIGHTINGS:
            raise UsageError(f"unknown task weighting {self.weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")
        train, valid = train_and_valid(features)
        if valid is None:
            raise missing_split_error(features, "valid", "multitask keeps the best epoch on the validation split")
        self.targets_ = self._targets_of(features)
        classes = dict(getattr(features, "target_classes", {}) or {features.target: features.class_names})
        classes[self.targets_[0]] = features.class_names
        self.class_names_ = {target: tuple(classes[target]) for target in self.targets_}
        unknown = sorted(set(self.task_weights) - set(self.targets_))
        if unknown:
            raise UsageError(f"--task-weight names {', '.join(unknown)}, which this head does not learn; its "
                             f"targets are: {', '.join(self.targets_)}")
        keras.utils.set_random_seed(SEED)
        self.model_ = self._build(train.x)
        history, best_epoch, log_variances = self._train(train, valid)
        self.search_ = history
        self.valid_probabilities_by_target_ = self.predict_all(valid.x)
        self.valid_probabilities_ = self.valid_probabilities_by_target_[self.targets_[0]]
        self.params_ = {"targets": list(self.targets_), "task_weights": self._weights(),
                        "weighting": self.weighting, "hidden_units": self.hidden_units,
                        "learned_log_variances": log_variances, **asdict(DEFAULT_RECIPE),
                        "batch_size": batch_size_for(DEFAULT_RECIPE, len(train.y)), "best_epoch": best_epoch,
                        "epochs_run": len(history), "selected_by": "lowest summed validation loss",
                        "class_names": {t: list(n) for t, n in self.class_names_.items()}}
        return self

    def predict_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """{target: (n, classes) probabilities} for pooled rows `x`."""
        outputs = self.model_(np.asarray(x, dtype=np.float32), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {target: np.asarray(output) for target, output in zip(self.targets_, outputs)}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the primary target."""
        return self.predict_all(x)[self.targets_[0]]

    def keras_layers(self) -> list:
        """The layers from pooled features to the primary target's probabilities: the trunk, then its softmax."""
        return [self.model_.get_layer(name) for name in self._trunk_names()] + [
            self.model_.get_layer(_TASK_LAYER.format(target=self.targets_[0]))]

    def save(self, stem: Path) -> str:
        return save_keras_model(self.model_, stem)

    @classmethod
    def load(cls, stem: Path, record) -> MultitaskHead:
        params = record.hyperparameters
        head = cls(params.get("targets"), params.get("task_weights"), params.get("weighting", "fixed"),
                   params.get("hidden_units", 0))
        head.model_ = load_keras_model(stem, record)
        head.targets_ = tuple(params["targets"])
        head.class_names_ = {t: tuple(n) for t, n in params["class_names"].items()}
        head.params_ = params
        return head

    def _targets_of(self, features) -> tuple[str, ...]:
        primary = features.target
        available = list(getattr(features, "target_classes", {}) or {primary: None})
        wanted = list(self.targets) if self.targets else available
        if primary not in wanted:
            wanted.insert(0, primary)
        wanted = [primary] + [t for t in wanted if t != primary]
        missing = [t for t in wanted if t not in available]
        if missing:
            raise UsageError(f"the cache has no target {', '.join(missing)}; its targets are: {', '.join(available)}")
        return tuple(wanted)

    def _weights(self) -> dict[str, float]:
        return {target: float(self.task_weights.get(target, 1.0)) for target in self.targets_}

    def _trunk_names(self) -> list[str]:
        names = ["standardise", "dropout"]
        if self.hidden_units:
            names += ["hidden", "hidden_dropout"]
        return names

    def _build(self, train_x: np.ndarray):
        keras = import_keras()

        inputs = keras.Input(shape=(train_x.shape[1],), name="features")
        tensor = keras.layers.Normalization(mean=train_x.mean(axis=0), variance=train_x.var(axis=0) + _VARIANCE_FLOOR,
                                            name="standardise")(inputs)
        tensor = keras.layers.Dropout(DEFAULT_RECIPE.dropout, seed=SEED, name="dropout")(tensor)
        if self.hidden_units:
            tensor = keras.layers.Dense(self.hidden_units, activation="relu", name="hidden")(tensor)
            tensor = keras.layers.Dropout(DEFAULT_RECIPE.dropout, seed=SEED, name="hidden_dropout")(tensor)
        outputs = [keras.layers.Dense(len(self.class_names_[t]), activation="softmax",
                                      name=_TASK_LAYER.format(target=t))(tensor) for t in self.targets_]
        return keras.Model(inputs, outputs, name="multitask_head")

    def _train(self, train, valid):
        """Train with early stopping on the summed validation loss; restore the best epoch's weights."""
        keras = import_keras()
        tf = import_tensorflow()

        recipe = DEFAULT_RECIPE
        model = self.model_
        learned = self.weighting == "uncertainty"
        log_variance = tf.Variable(tf.zeros(len(self.targets_)), trainable=learned, name="task_log_variance")
        fixed = tf.constant([self._weights()[t] for t in self.targets_], dtype=tf.float32)
        variables = model.trainable_variables + ([log_variance] if learned else [])
        optimizer = keras.optimizers.AdamW(learning_rate=recipe.learning_rate, weight_decay=recipe.weight_decay)
        optimizer.build(variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        x, x_valid = tf.constant(train.x), tf.constant(valid.x)
        y = [tf.constant(train.targets.get(t, train.y) if t != self.targets_[0] else train.y) for t in self.targets_]
        y_valid = [tf.constant(valid.targets.get(t, valid.y) if t != self.targets_[0] else valid.y)
                   for t in self.targets_]

        def combined(labels, outputs):
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]  # one target: one tensor
            losses = tf.stack([loss_fn(label, output) for label, output in zip(labels, outputs)])
            if learned:
                return tf.reduce_sum(tf.exp(-log_variance) * losses + log_variance), losses
            return tf.reduce_sum(fixed * losses), losses

        def loss_of(rows):
            return combined([tf.gather(label, rows) for label in y], model(tf.gather(x, rows), training=True))[0]

        @tf.function
        def scores():
            _, losses = combined(y_valid, model(x_valid, training=False))
            return tf.reduce_sum(losses) if learned else tf.reduce_sum(fixed * losses), losses

        def validate() -> dict:
            valid_loss, per_target = scores()
            return {"valid_loss": float(valid_loss),
                    **{f"valid_loss_{t}": float(v) for t, v in zip(self.targets_, per_target.numpy())}}

        def set_weights(weights) -> None:
            model.set_weights(weights[0])
            log_variance.assign(weights[1])

        trainee = RowEpochs(loss_of, variables, optimizer, len(train.y), batch_size_for(recipe, len(train.y)), SEED,
                            validate, lambda: (model.get_weights(), log_variance.numpy()), set_weights)
        state = run_epochs(trainee, Stopping(recipe.epochs, recipe.patience, recipe.min_delta), NON_FINITE_REMEDY)
        variances = dict(zip(self.targets_, (float(v) for v in log_variance.numpy()))) if learned else None
        return list(state.history), state.best_epoch, variances
