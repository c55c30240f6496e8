"""Each backbone's `preprocess_input` as built-in Keras layers, so whole models stay plain Keras.

An exported model, an attack or a class visualisation differentiates pixels [0, 255] -> the
backbone's preprocessing -> backbone -> head as one graph. `Lambda` layers would carry Python
bytecode (refused by Keras' safe mode), so each preprocessing mode is expressed with layers
Keras ships:

- `caffe` (VGG, ResNet): RGB -> BGR and minus the ImageNet mean, as one 1x1 `Conv2D` with a fixed
  permutation kernel and the negative mean as bias (every output is one input times 1.0 plus the
  bias, so the result equals Keras' `preprocess_input` bit for bit);
- `tf` (MobileNet, Inception, Xception): `Normalization` dividing by 127.5, then `Rescaling(1,
  offset=-1)` - the same two float operations as `x / 127.5 - 1`, so the same bits;
- `torch` (DenseNet): `Normalization` dividing by 255, then `Normalization` subtracting the
  ImageNet mean and dividing by its standard deviation per channel - the same float32 operations
  as Keras' `x / 255`, `- mean`, `/ std` (the variances are chosen so that their float32 square
  roots are exactly float32(std), which `TORCH_VARIANCE` checks);
- `efficientnet-lite`: `Rescaling(1/128, offset=-127/128)`, exact for 8-bit pixels;
- `none` (Keras' EfficientNet, EfficientNetV2 and ConvNeXt, which rescale inside the model): no layer.

All of them compute in float32 whatever the model's precision policy, and `tests/test_graph.py`
checks each against the family's own `preprocess_input`.
"""

from __future__ import annotations

import numpy as np

from pipeline.backbones.tf_runtime import import_keras
from pipeline.errors import UsageError

#: Keras' caffe-mode ImageNet mean, in BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: RGB input channel that becomes each BGR output channel.
RGB_TO_BGR = (2, 1, 0)
TF_DIVISOR, TF_OFFSET = 127.5, -1.0
LITE_MEAN, LITE_STD = 127.0, 128.0
#: Keras' torch mode: x / 255, then (x - mean) / std per RGB channel.
TORCH_DIVISOR = 255.0
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "efficientnet-lite", "none")
_CHANNELS = 3


def preprocessing_layers(mode: str) -> list:
    """Fresh Keras layers computing `preprocess_input` of `mode` on float pixels in [0, 255]."""
    keras = import_keras()

    if mode == "caffe":
        kernel = np.zeros((1, 1, _CHANNELS, _CHANNELS), dtype=np.float32)
        for out_channel, in_channel in enumerate(RGB_TO_BGR):
            kernel[0, 0, in_channel, out_channel] = 1.0
        bias = -np.array(CAFFE_MEAN_BGR, dtype=np.float32)
        layer = keras.layers.Conv2D(_CHANNELS, 1, name="preprocess_caffe", dtype="float32", trainable=False,
                                    kernel_initializer=keras.initializers.Constant(kernel),
                                    bias_initializer=keras.initializers.Constant(bias))
        return [layer]
    if mode == "tf":
        return [keras.layers.Normalization(mean=0.0, variance=TF_DIVISOR ** 2, name="preprocess_tf_scale",
                                           dtype="float32"),
                keras.layers.Rescaling(1.0, offset=TF_OFFSET, name="preprocess_tf_shift", dtype="float32")]
    if mode == "torch":
        return [keras.layers.Normalization(mean=0.0, variance=TORCH_DIVISOR ** 2, name="preprocess_torch_scale",
                                           dtype="float32"),
                keras.layers.Normalization(mean=list(TORCH_MEAN_RGB), variance=list(torch_variance()),
                                           name="preprocess_torch_normalize", dtype="float32")]
    if mode == "efficientnet-lite":
        return [keras.layers.Rescaling(1 / LITE_STD, offset=-LITE_MEAN / LITE_STD, name="preprocess_lite",
                                       dtype="float32")]
    if mode == "none":
        return []
    raise UsageError(f"unknown preprocessing {mode!r}; expected one of: {', '.join(PREPROCESSING_MODES)}")


def torch_variance() -> tuple[float, ...]:
    """float32 variances whose float32 square roots are exactly float32(std) for each torch-mode std.

    `Normalization` divides by sqrt(variance); the nearest float32 to std**2 has that property for
    the three ImageNet values, and this checks it rather than assuming it.
    """
    variances = []
    for std in TORCH_STD_RGB:
        variance = np.float32(np.float64(np.float32(std)) ** 2)
        if np.sqrt(variance) != np.float32(std):
            raise ValueError(f"no exact float32 variance for std {std}")
        variances.append(float(variance))
    return tuple(variances)


def apply_layers(layers: list, tensor):
    """`tensor` through `layers` in order."""
    for layer in layers:
        tensor = layer(tensor)
    return tensor
