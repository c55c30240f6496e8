"""Stage 6, export: a fitted head with its backbone and preprocessing as one deployable model, verified.

`artifact` builds the model (RGB pixels in [0, 255] -> the backbone's own preprocessing -> the
backbone cut -> pooling -> the head -> class probabilities) and the metadata that travels with it;
`formats` writes it as `.keras`, a SavedModel folder, `.tflite` or `.onnx`, atomically, with the
metadata inside; `verify` loads the written file back with its own runtime and compares its
probabilities with `predict`'s on sample photos; `run` is the command's body (docs/export.md).
"""
