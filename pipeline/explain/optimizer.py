"""The optimiser of the explain commands: Keras' own Adam on the image parameterisation's `keras.Variable`s.

`adam(learning_rate)` is `keras.optimizers.Adam` with the paper's moment decay rates and epsilon
(Kingma & Ba 2015): `optimizer.apply_gradients(zip(gradients, variables))` moves each variable by
about `learning_rate` per step against its gradient, whatever the gradient's scale. It replaced a
hand-written Adam over `tf.Variable`s because it measured no slower: timed A/B in one run
(benchmarks/explain_adam.py: 3 alternating rounds of 30 `ideal_image` steps at 64 px on a random-weight
VGG16, shared 2-core CPU), a visualize step took 0.92 times as long with Keras' Adam as with the
hand-written one (median 359 vs 389 ms; rounds spread about 20 %, so "no slower" is all it shows).
"""

from __future__ import annotations

from pipeline.backbones.tf_runtime import import_keras

#: Adam's decay rates of the first and second moment estimates (the paper's defaults).
BETA_1 = 0.9
BETA_2 = 0.999
#: Keeps the update finite where a gradient is zero (the paper's value; Keras' default is 1e-7).
EPSILON = 1e-8


def adam(learning_rate: float):
    """A fresh `keras.optimizers.Adam` with `learning_rate` (see the module doc)."""
    return import_keras().optimizers.Adam(learning_rate=float(learning_rate), beta_1=BETA_1, beta_2=BETA_2,
                                          epsilon=EPSILON)
