"""Adam on plain TensorFlow variables, seeded by nothing and stateful only in its moments.

Keras optimizers track Keras variables; the explain commands optimise `tf.Variable`s of an image
parameterisation, so this is the textbook Adam (Kingma & Ba 2015) in a few TensorFlow ops:
`Adam(variables, learning_rate).step(gradients)` moves each variable by about `learning_rate`
per step against its gradient, whatever the gradient's scale.
"""

from __future__ import annotations

from pipeline.backbones.tf_runtime import import_tensorflow

#: Adam's decay rates of the first and second moment estimates (the paper's defaults).
BETA_1 = 0.9
BETA_2 = 0.999
#: Keeps the update finite where a gradient is zero.
EPSILON = 1e-8


class Adam:
    """Adam over `variables` with `learning_rate` (see the module doc)."""

    def __init__(self, variables: list, learning_rate: float):
        tf = import_tensorflow()
        self.variables = list(variables)
        self.learning_rate = float(learning_rate)
        self.moments = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in self.variables]
        self.steps = 0

    def step(self, gradients: list) -> None:
        """Apply one update descending `gradients` (aligned with the variables; None = no gradient)."""
        tf = import_tensorflow()
        self.steps += 1
        correction_1 = 1 - BETA_1 ** self.steps
        correction_2 = 1 - BETA_2 ** self.steps
        for variable, gradient, (first, second) in zip(self.variables, gradients, self.moments):
            if gradient is None:
                continue
            first.assign(BETA_1 * first + (1 - BETA_1) * gradient)
            second.assign(BETA_2 * second + (1 - BETA_2) * tf.square(gradient))
            update = (first / correction_1) / (tf.sqrt(second / correction_2) + EPSILON)
            variable.assign_sub(self.learning_rate * update)
